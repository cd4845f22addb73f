//! Versioned control of the running server: rules files and rule toggles ([`rules`]) and runtime
//! configuration ([`config`], keys in [`keys`]), stored with history in the store's versioned
//! state and applied live.

pub mod config;
pub mod keys;
pub mod rules;

use crate::engine::Diagnostic;
use crate::store::StoreError;

/// Outcomes of a control request that are not success.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    InvalidArgument(String),
    /// The change does not compile: the first error, and the warnings.
    #[error("{}", .error)]
    Invalid {
        error: Diagnostic,
        warnings: Vec<Diagnostic>,
    },
    /// The revision asked for is older than the retained history.
    #[error("{0}")]
    Compacted(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}
