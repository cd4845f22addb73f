//! The one table that turns domain errors into gRPC statuses.

use tonic::Status;

use crate::feed::FeedError;
use crate::store::StoreError;

impl From<FeedError> for Status {
    fn from(e: FeedError) -> Status {
        match &e {
            FeedError::Trimmed { .. } | FeedError::Ahead { .. } => {
                Status::out_of_range(e.to_string())
            }
            FeedError::Closed(_) => Status::unavailable(e.to_string()),
            FeedError::InvalidConsumer(_)
            | FeedError::AckWithoutConsumer
            | FeedError::AckBeyondHead { .. } => Status::invalid_argument(e.to_string()),
            FeedError::Append { .. } => Status::internal(e.to_string()),
            FeedError::Store(inner) => store_status(inner),
        }
    }
}

impl From<crate::ingest::IngestError> for Status {
    fn from(e: crate::ingest::IngestError) -> Status {
        match e {
            crate::ingest::IngestError::Closed => Status::unavailable(e.to_string()),
            crate::ingest::IngestError::Feed(f) => f.into(),
        }
    }
}

impl From<StoreError> for Status {
    fn from(e: StoreError) -> Status {
        store_status(&e)
    }
}

fn store_status(e: &StoreError) -> Status {
    if let StoreError::NoSpace(_) = e {
        tracing::warn!(error = %e, "write refused");
        return Status::resource_exhausted(e.to_string());
    }
    tracing::error!(error = %e, "storage failure");
    Status::internal(e.to_string())
}

impl From<crate::control::ControlError> for Status {
    fn from(e: crate::control::ControlError) -> Status {
        use crate::control::ControlError as E;
        match e {
            E::NotFound(m) => Status::not_found(m),
            E::AlreadyExists(m) => Status::already_exists(m),
            E::Conflict(m) => Status::failed_precondition(m),
            E::InvalidArgument(m) => Status::invalid_argument(m),
            E::Compacted(m) => Status::out_of_range(m),
            E::Invalid { error, warnings } => {
                // The details carry an encoded falco.rules.validate_response, so clients get the
                // file, line and column without parsing the message.
                let details = crate::proto::rules::ValidateResponse {
                    ok: false,
                    errors: vec![diagnostic(&error)],
                    warnings: warnings.iter().map(diagnostic).collect(),
                };
                Status::with_details(
                    tonic::Code::InvalidArgument,
                    error.to_string(),
                    prost::Message::encode_to_vec(&details).into(),
                )
            }
            E::Internal(p) => Status::internal(p.to_string()),
            E::Busy(m) => Status::aborted(m),
            E::Store(s) => store_status(&s),
        }
    }
}

pub fn diagnostic(d: &crate::engine::Diagnostic) -> crate::proto::rules::Diagnostic {
    crate::proto::rules::Diagnostic {
        file: d.file.clone(),
        line: d.pos.line as u32,
        column: d.pos.col as u32,
        item: d.item.clone().unwrap_or_default(),
        message: d.message.clone(),
    }
}
