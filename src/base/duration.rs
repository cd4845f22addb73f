//! Durations and instants as people write them on a command line or in a config file: `30d`,
//! `12h`, `90m`, `45s`, `2h30m`, and RFC 3339 times.

/// `30d`, `12h`, `90m`, `45s`, `500ms`, `2h30m`, `1w` or a bare number of seconds: the duration in
/// nanoseconds. None when the text is not one, or overflows.
pub fn parse_duration(text: &str) -> Option<u64> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Ok(secs) = text.parse::<u64>() {
        return secs.checked_mul(1_000_000_000);
    }
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let scale: u64 = match &rest[..unit_len] {
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            "d" => 86_400 * 1_000_000_000,
            "w" => 7 * 86_400 * 1_000_000_000,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total = total.checked_add(n.checked_mul(scale)?)?;
    }
    Some(total)
}

/// A point in time for `--since` / `--until`: an RFC 3339 time (`2026-12-01T02:00:00Z`), or a
/// duration before `now_ns` (`2h`). Nanoseconds since the Unix epoch.
pub fn parse_instant(text: &str, now_ns: u64) -> Result<u64, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text.trim()) {
        let ns = t.timestamp_nanos_opt().unwrap_or(0);
        return u64::try_from(ns).map_err(|_| format!("'{text}' is before 1970"));
    }
    match parse_duration(text) {
        Some(ago) => Ok(now_ns.saturating_sub(ago)),
        None => Err(format!(
            "'{text}' is neither an RFC 3339 time (2026-12-01T02:00:00Z) nor a duration ago \
             (90s, 30m, 2h, 7d, 2h30m)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30d"), Some(30 * 86_400 * S));
        assert_eq!(parse_duration("2h30m"), Some(9_000 * S));
        assert_eq!(parse_duration("45"), Some(45 * S));
        assert_eq!(parse_duration("500ms"), Some(S / 2));
        assert_eq!(parse_duration("0"), Some(0));
        for bad in [
            "",
            "d",
            "3 parsecs",
            "-1h",
            "1.5h",
            "99999999999999999999d",
            "h2",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn instants() {
        let now = 1_764_554_400 * S; // 2025-12-01T02:00:00Z
        assert_eq!(parse_instant("2h", now), Ok(now - 7_200 * S));
        assert_eq!(parse_instant("2025-12-01T02:00:00Z", 0), Ok(now));
        assert_eq!(parse_instant("2025-12-01T03:00:00+01:00", 0), Ok(now));
        let err = parse_instant("yesterday", now).unwrap_err();
        assert!(err.contains("RFC 3339"), "{err}");
        assert!(parse_instant("1969-12-31T00:00:00Z", now).is_err());
    }
}
