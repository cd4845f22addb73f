//! The wall clock the logs stamp their blocks with. Age retention and time queries read it; tests
//! replace it with one they move by hand.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Nanoseconds since the Unix epoch.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> u64 + Send + Sync>);

impl Clock {
    /// The system's wall clock.
    pub fn system() -> Clock {
        Clock(Arc::new(|| {
            let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
            u64::try_from(now).unwrap_or(0)
        }))
    }

    /// A clock that reads `time` (nanoseconds), which the caller moves.
    pub fn manual(time: Arc<AtomicU64>) -> Clock {
        Clock(Arc::new(move || time.load(Ordering::Relaxed)))
    }

    pub fn now(&self) -> u64 {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Clock({})", self.now())
    }
}
