//! Versioned control of the running server: rules files and rule toggles ([`rules`]) and runtime
//! configuration ([`config`], keys in [`keys`]), stored with history in the store's versioned
//! state and applied live.

pub mod config;
pub mod keys;
pub mod rules;
pub mod target;

use std::sync::{Arc, PoisonError, RwLock};

use crate::engine::Diagnostic;
use crate::store::{Store, StoreError};

pub use config::{LogReloader, RuntimeConfig};
pub use keys::Runtime;
pub use rules::Rules;

/// Who asks for a change, why, and (for compare-and-swap) the revision they expect the target
/// (or, where stated, the whole state) to be at now.
#[derive(Clone, Copy, Debug, Default)]
pub struct Change<'a> {
    pub expected: Option<u64>,
    pub author: &'a str,
    pub comment: &'a str,
}

impl<'a> Change<'a> {
    /// A change with no precondition.
    pub fn by(author: &'a str, comment: &'a str) -> Change<'a> {
        Change {
            expected: None,
            author,
            comment,
        }
    }

    pub fn expecting(self, expected: Option<u64>) -> Change<'a> {
        Change { expected, ..self }
    }
}

/// What was committed: a rules change or a configuration change, at a revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Committed {
    Rules(u64),
    Config(u64),
}

/// Runs after a committed change; returns problems to report to the caller (the change stays).
pub type CommitHook = Box<dyn Fn(Committed) -> Vec<String> + Send + Sync>;

/// What runs after every committed change, shared by [`Rules`] and [`RuntimeConfig`].
#[derive(Clone, Default)]
pub struct Hooks(Arc<RwLock<Vec<CommitHook>>>);

impl Hooks {
    pub fn add(&self, hook: CommitHook) {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(hook);
    }

    /// Tells every hook about a durable change; returns what they report.
    pub fn run(&self, what: Committed) -> Vec<String> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .flat_map(|hook| hook(what))
            .collect()
    }

    /// Drops the hooks (they hold the services that hold them).
    pub fn clear(&self) {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

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
pub fn check_retained(store: &Store, revision: u64) -> Result<(), ControlError> {
    let v = store.versioned();
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
pub fn check_global(store: &Store, expected: Option<u64>) -> Result<(), ControlError> {
    if let Some(e) = expected {
        let now = store.versioned().revision()?;
        if now != e {
            return Err(ControlError::Conflict(format!(
                "the current revision is {now}, not the expected {e}"
            )));
        }
    }
    Ok(())
}
