//! Service errors as gRPC statuses: the code comes from the one table in
//! [`crate::services::status`]; rules that do not load also carry their positions as details.

use tonic::{Code, Status};

use crate::feed::FeedError;
use crate::services::control::ControlError;
use crate::services::ingest::IngestError;
use crate::services::status::{self as table, ServiceError};
use crate::services::tokens::TokenError;
use crate::store::StoreError;

/// The status for any service error, by its kind.
pub fn status(e: &(impl ServiceError + ?Sized)) -> Status {
    table::log(e);
    Status::new(Code::from_i32(e.kind().grpc_code()), e.to_string())
}

macro_rules! by_kind {
    ($($error:ty),*) => {$(
        impl From<$error> for Status {
            fn from(e: $error) -> Status {
                status(&e)
            }
        }
    )*};
}

by_kind!(FeedError, IngestError, StoreError, TokenError);

impl From<ControlError> for Status {
    fn from(e: ControlError) -> Status {
        let ControlError::Invalid { error, warnings } = &e else {
            return status(&e);
        };
        // The details carry an encoded falco.rules.validate_response, so clients get the file,
        // line and column without parsing the message.
        let details = crate::proto::rules::ValidateResponse {
            ok: false,
            errors: vec![diagnostic(error)],
            warnings: warnings.iter().map(diagnostic).collect(),
        };
        Status::with_details(
            Code::from_i32(e.kind().grpc_code()),
            error.to_string(),
            prost::Message::encode_to_vec(&details).into(),
        )
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
