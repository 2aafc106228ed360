//! Durations for people and for JSON: `human` writes them in log lines,
//! `as_millis` serialises them as whole milliseconds.

use std::time::Duration;

/// Serialises a duration as whole milliseconds (saturated at `u64::MAX`).
pub(crate) fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Serialises an optional duration as whole milliseconds, or `null`.
pub(crate) fn as_millis_opt<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => as_millis(d, s),
        None => s.serialize_none(),
    }
}

/// A duration as a person reads it in a log line: `5s`, `1.5s`, `40ms`, `250µs`.
pub(crate) fn human(d: Duration) -> String {
    if d == Duration::MAX {
        "forever".to_owned()
    } else if d >= Duration::from_secs(1) {
        let secs = d.as_secs_f64();
        if d.subsec_millis() == 0 { format!("{}s", d.as_secs()) } else { format!("{secs:.1}s") }
    } else if d >= Duration::from_millis(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}µs", d.as_micros())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well_in_log_lines() {
        assert_eq!(human(Duration::from_secs(5)), "5s");
        assert_eq!(human(Duration::from_millis(1500)), "1.5s");
        assert_eq!(human(Duration::from_micros(40_900)), "40ms");
        assert_eq!(human(Duration::from_micros(250)), "250µs");
        assert_eq!(human(Duration::MAX), "forever");
    }
}
