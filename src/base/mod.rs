//! The crate's leaves, used by every layer above them: the domain records, reading files within
//! bounds, token buckets, and durations as people write them.

pub mod duration;
pub mod event;
pub mod files;
pub mod throttle;

/// `FALCO_HOSTNAME` if set (as Falco does), else the kernel's host name.
pub fn hostname() -> String {
    if let Ok(name) = std::env::var("FALCO_HOSTNAME") {
        if !name.is_empty() {
            return name;
        }
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string())
}
