//! Time as Falco prints it: the clock time of `evt.time` and ISO 8601 for `evt.time.iso8601`
//! and JSON alerts. Shared by the field extractors and the output formatter.

use chrono::{DateTime, Local, TimeZone, Utc};

fn utc(time_ns: i64) -> DateTime<Utc> {
    Utc.timestamp_nanos(time_ns)
}

/// Local `HH:MM:SS.nnnnnnnnn` (or `HH:MM:SS` with `seconds_only`), as Falco prints `evt.time`.
pub fn clock_time(time_ns: i64, seconds_only: bool) -> String {
    let local = utc(time_ns).with_timezone(&Local);
    if seconds_only {
        local.format("%H:%M:%S").to_string()
    } else {
        local.format("%H:%M:%S%.9f").to_string()
    }
}

/// ISO 8601 UTC with nanoseconds: `2024-01-02T03:04:05.000000006Z`.
pub fn iso_time(time_ns: i64) -> String {
    utc(time_ns).format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
}
