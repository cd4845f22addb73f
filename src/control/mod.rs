//! Versioned control of the running server: rules files and rule toggles ([`rules`]) and runtime
//! configuration ([`config`], keys in [`keys`]), stored with history in the store's versioned
//! state and applied live.

pub mod config;
pub mod keys;
pub mod rules;
pub mod target;

use crate::app::App;
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
    /// The engine failed inside (a panic, caught): the request fails, the server goes on.
    #[error(transparent)]
    Internal(#[from] crate::engine::isolate::Panicked),
    /// Other changes kept landing while this one compiled; the client may try again.
    #[error("{0}")]
    Busy(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `revision` must be one whose state can be rebuilt: not newer than now, not compacted away.
pub fn check_retained(app: &App, revision: u64) -> Result<(), ControlError> {
    let v = app.store.versioned();
    let (oldest, newest) = (v.oldest_revision()?, v.revision()?);
    if revision > newest {
        return Err(ControlError::InvalidArgument(format!(
            "revision {revision} is beyond the newest revision {newest}"
        )));
    }
    if revision < oldest {
        return Err(ControlError::Compacted(format!(
            "revision {revision} has been compacted; the oldest revision retained is {oldest}"
        )));
    }
    Ok(())
}

/// Compare-and-swap on the global revision.
pub fn check_global(app: &App, expected: Option<u64>) -> Result<(), ControlError> {
    if let Some(e) = expected {
        let now = app.store.versioned().revision()?;
        if now != e {
            return Err(ControlError::Conflict(format!(
                "the current revision is {now}, not the expected {e}"
            )));
        }
    }
    Ok(())
}
