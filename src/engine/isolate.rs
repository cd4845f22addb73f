//! Running engine work on untrusted input so that it cannot take the process down: on a thread of
//! its own with a large stack (recursion is bounded, but at the bounds a debug build's frames are
//! big) and with panics caught and reported as errors.

use std::panic::{catch_unwind, AssertUnwindSafe};

/// The stack of an engine thread. Only the pages touched are ever committed.
pub const STACK_BYTES: usize = 256 << 20;

/// A panic caught inside engine work.
#[derive(Debug, thiserror::Error)]
#[error("internal error in the rules engine ({what}): {message}")]
pub struct Panicked {
    pub what: String,
    pub message: String,
}

/// The message a panic carried.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// Runs `f` on a fresh thread with [`STACK_BYTES`] of stack and waits for it; a panic becomes
/// [`Panicked`] (and a log line).
pub fn run<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Panicked> {
    let handle = std::thread::Builder::new()
        .name("engine".into())
        .stack_size(STACK_BYTES)
        .spawn(move || catch_unwind(AssertUnwindSafe(f)));
    let outcome = match handle {
        Ok(handle) => handle.join().unwrap_or_else(Err),
        Err(e) => {
            return Err(Panicked {
                what: what.to_string(),
                message: format!("cannot start an engine thread: {e}"),
            })
        }
    };
    outcome.map_err(|payload| {
        let message = panic_message(payload.as_ref());
        tracing::error!(
            what,
            message,
            "the rules engine panicked; the request failed"
        );
        Panicked {
            what: what.to_string(),
            message,
        }
    })
}
