//! Rate limits: a token bucket, and how drops are mirrored into the outputs log as internal
//! alerts (threshold and rate, as Falco's syscall_event_drops).

use std::time::Instant;

/// How drops are mirrored into the outputs log as `Falco internal: event drop` alerts: only when
/// `n_drops / n_evts` exceeds `threshold`, at most `rate` per second with bursts of `max_burst`
/// (Falco's syscall_event_drops defaults: 0.1, one per 30 s, burst 1).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DropAlertSettings {
    pub threshold: f64,
    pub rate: f64,
    pub max_burst: f64,
}

impl Default for DropAlertSettings {
    fn default() -> Self {
        DropAlertSettings {
            threshold: 0.1,
            rate: 1.0 / 30.0,
            max_burst: 1.0,
        }
    }
}

/// A token bucket.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: f64, burst: f64) -> Self {
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    /// Takes `n` tokens if there are enough.
    pub fn take(&mut self, n: f64) -> bool {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }
}
