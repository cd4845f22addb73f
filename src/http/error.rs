//! Errors as HTTP answers: a status from the one table in [`crate::services::status`] and a JSON
//! body `{"error": "…"}` (rules that do not load add `diagnostic` and `warnings`, with file,
//! line and column). Handlers return `Result<_, ApiError>` and use `?`.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::engine::Diagnostic;
use crate::falco::AlertError;
use crate::feed::FeedError;
use crate::services::control::ControlError;
use crate::services::ingest::IngestError;
use crate::services::status::{self as table, Kind, ServiceError};
use crate::services::tokens::TokenError;
use crate::store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    extra: Map<String, Value>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    #[serde(flatten)]
    extra: &'a Map<String, Value>,
}

impl ApiError {
    pub fn new(kind: Kind, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::from_u16(kind.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            message: message.into(),
            extra: Map::new(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(Kind::InvalidArgument, message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(Kind::Internal, message)
    }

    fn of(e: &(impl ServiceError + ?Sized)) -> ApiError {
        table::log(e);
        ApiError::new(e.kind(), e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: &self.message,
            extra: &self.extra,
        };
        let text = serde_json::to_string(&body).unwrap_or_default();
        (
            self.status,
            [(http::header::CONTENT_TYPE, "application/json")],
            text,
        )
            .into_response()
    }
}

macro_rules! by_kind {
    ($($error:ty),*) => {$(
        impl From<$error> for ApiError {
            fn from(e: $error) -> ApiError {
                ApiError::of(&e)
            }
        }
    )*};
}

by_kind!(FeedError, IngestError, StoreError, TokenError, AlertError);

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> ApiError {
        let mut answer = ApiError::of(&e);
        if let ControlError::Invalid { error, warnings } = &e {
            answer.extra.insert("diagnostic".into(), diagnostic(error));
            let warnings = warnings.iter().map(diagnostic).collect();
            answer
                .extra
                .insert("warnings".into(), Value::Array(warnings));
        }
        answer
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> ApiError {
        ApiError::internal(e.to_string())
    }
}

/// A rules diagnostic as the console shows it.
pub fn diagnostic(d: &Diagnostic) -> Value {
    serde_json::json!({
        "file": d.file, "line": d.pos.line, "column": d.pos.col,
        "item": d.item, "message": d.message, "text": d.to_string(),
    })
}
