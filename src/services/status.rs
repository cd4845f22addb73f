//! The one table from service errors to what a client is told: every error a service returns
//! has a [`Kind`], and each kind has one gRPC code and one HTTP status. The gRPC adapters
//! (`grpc::status`) and the HTTP handlers (`http::ApiError`) both read it, so the same failure
//! answers the same way on either transport. Transport-neutral: the gRPC codes are the numbers
//! the gRPC spec gives them, so this module needs no gRPC crate.

use crate::feed::FeedError;
use crate::services::control::ControlError;
use crate::services::ingest::IngestError;
use crate::services::tokens::TokenError;
use crate::store::StoreError;

/// What kind of failure an error is, from the client's side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The request itself is wrong (a bad name, argument or body).
    InvalidArgument,
    /// Rules or settings that do not load; the answer carries where and why.
    Invalid,
    NotFound,
    AlreadyExists,
    /// The state is not the one the request expected (a stale revision).
    Conflict,
    /// A position outside what is retained (a trimmed cursor, compacted history).
    OutOfRange,
    /// A limit was reached (disk space, number of tokens).
    ResourceExhausted,
    /// The client sent faster than its budget allows; retry later.
    RateLimited,
    /// Concurrent changes kept winning; retrying the same request may succeed.
    Aborted,
    /// The service is stopping or cannot take the request now.
    Unavailable,
    Internal,
}

impl Kind {
    /// The gRPC status code (numbers from the gRPC spec's `Code` table).
    pub fn grpc_code(self) -> i32 {
        match self {
            Kind::InvalidArgument | Kind::Invalid => 3,
            Kind::NotFound => 5,
            Kind::AlreadyExists => 6,
            Kind::ResourceExhausted | Kind::RateLimited => 8,
            Kind::Conflict => 9,
            Kind::Aborted => 10,
            Kind::OutOfRange => 11,
            Kind::Internal => 13,
            Kind::Unavailable => 14,
        }
    }

    /// The HTTP status.
    pub fn http_status(self) -> u16 {
        match self {
            Kind::InvalidArgument | Kind::OutOfRange => 400,
            Kind::NotFound => 404,
            Kind::AlreadyExists | Kind::Conflict | Kind::Aborted => 409,
            Kind::Invalid => 422,
            Kind::RateLimited => 429,
            Kind::Internal => 500,
            Kind::ResourceExhausted | Kind::Unavailable => 503,
        }
    }
}

/// An error that knows its [`Kind`].
pub trait ServiceError: std::error::Error {
    fn kind(&self) -> Kind;
}

impl ServiceError for StoreError {
    fn kind(&self) -> Kind {
        match self {
            StoreError::NoSpace(_) => Kind::ResourceExhausted,
            _ => Kind::Internal,
        }
    }
}

impl ServiceError for FeedError {
    fn kind(&self) -> Kind {
        match self {
            FeedError::Trimmed { .. } | FeedError::Ahead { .. } => Kind::OutOfRange,
            FeedError::Closed(_) => Kind::Unavailable,
            FeedError::InvalidConsumer(_)
            | FeedError::AckWithoutConsumer
            | FeedError::AckBeyondHead { .. }
            | FeedError::SeqAndTime
            | FeedError::BadTime(_)
            | FeedError::EndBeforeStart => Kind::InvalidArgument,
            FeedError::Append { .. } | FeedError::Read { .. } => Kind::Internal,
            FeedError::Store(inner) => inner.kind(),
        }
    }
}

impl ServiceError for IngestError {
    fn kind(&self) -> Kind {
        match self {
            IngestError::Closed => Kind::Unavailable,
            IngestError::Feed(f) => f.kind(),
        }
    }
}

impl ServiceError for ControlError {
    fn kind(&self) -> Kind {
        match self {
            ControlError::NotFound(_) => Kind::NotFound,
            ControlError::AlreadyExists(_) => Kind::AlreadyExists,
            ControlError::Conflict(_) => Kind::Conflict,
            ControlError::InvalidArgument(_) => Kind::InvalidArgument,
            ControlError::Compacted(_) => Kind::OutOfRange,
            ControlError::Invalid { .. } => Kind::Invalid,
            ControlError::Internal(_) => Kind::Internal,
            ControlError::Busy(_) => Kind::Aborted,
            ControlError::Store(s) => s.kind(),
        }
    }
}

impl ServiceError for TokenError {
    fn kind(&self) -> Kind {
        match self {
            TokenError::BadName(_) | TokenError::BadRole(_) => Kind::InvalidArgument,
            TokenError::Exists(_) => Kind::AlreadyExists,
            TokenError::NotFound(_) => Kind::NotFound,
            TokenError::TooMany => Kind::ResourceExhausted,
            TokenError::Store(s) => s.kind(),
        }
    }
}

/// Logs a failure the operator must see (storage failing or full) once, where it is answered.
pub fn log(e: &(impl ServiceError + ?Sized)) {
    match e.kind() {
        Kind::Internal => tracing::error!(error = %e, "request failed"),
        Kind::ResourceExhausted => tracing::warn!(error = %e, "request refused"),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Kind; 11] = [
        Kind::InvalidArgument,
        Kind::Invalid,
        Kind::NotFound,
        Kind::AlreadyExists,
        Kind::Conflict,
        Kind::OutOfRange,
        Kind::ResourceExhausted,
        Kind::RateLimited,
        Kind::Aborted,
        Kind::Unavailable,
        Kind::Internal,
    ];

    #[test]
    fn only_internal_failures_are_5xx_except_capacity_and_availability() {
        for k in ALL {
            let server_side = matches!(
                k,
                Kind::Internal | Kind::Unavailable | Kind::ResourceExhausted
            );
            assert_eq!(k.http_status() >= 500, server_side, "{k:?}");
            assert!((1..=16).contains(&k.grpc_code()), "{k:?}");
        }
    }

    #[test]
    fn errors_keep_the_codes_clients_already_see() {
        let trimmed = FeedError::Trimmed {
            log: "outputs",
            requested: 1,
            oldest: 5,
        };
        assert_eq!(trimmed.kind().grpc_code(), 11);
        assert_eq!(TokenError::TooMany.kind().grpc_code(), 8);
        assert_eq!(ControlError::Busy(String::new()).kind().grpc_code(), 10);
        assert_eq!(
            ControlError::Conflict(String::new()).kind().http_status(),
            409
        );
        let full = ControlError::Store(StoreError::NoSpace("disk".into()));
        assert_eq!(full.kind(), Kind::ResourceExhausted);
    }
}
