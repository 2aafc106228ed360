//! Parsing the `Retry-After` response header.

use std::time::{Duration, SystemTime};

/// The longest `Retry-After` the sink passes on to the batcher: 10 minutes.
///
/// A server that asks for more (say, a day) gets this instead; the batcher
/// keeps backing off on its own if the server is still unavailable then.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(600);

/// Parses a `Retry-After` value relative to `now`.
///
/// - delay-seconds (`"120"`): that many seconds;
/// - an HTTP date (`"Wed, 21 Oct 2015 07:28:00 GMT"`): the time until then,
///   zero if it has passed;
/// - anything else (negative or fractional numbers, other date formats,
///   garbage): `None`, the header is ignored.
///
/// The result is clamped to [`RETRY_AFTER_CAP`].
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        // Digits only: delay-seconds. Too many digits for u64 is still "huge".
        let secs = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs).min(RETRY_AFTER_CAP));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    let wait = when.duration_since(now).unwrap_or(Duration::ZERO);
    Some(wait.min(RETRY_AFTER_CAP))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn seconds() {
        assert_eq!(parse_retry_after("0", at(0)), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("3", at(0)), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 120 ", at(0)), Some(Duration::from_secs(120)));
    }

    #[test]
    fn http_date_in_the_future_and_past() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now), Some(Duration::ZERO));
        // The obsolete RFC 850 form is part of HTTP-date too.
        assert_eq!(parse_retry_after("Wednesday, 21-Oct-15 07:28:05 GMT", now), Some(Duration::from_secs(5)));
    }

    #[test]
    fn malformed_is_ignored() {
        for bad in ["", "   ", "soon", "1.5", "1e3", "+5", "0x10", "2015-10-21T07:28:00Z", "3 s"] {
            assert_eq!(parse_retry_after(bad, at(0)), None, "{bad:?}");
        }
    }

    #[test]
    fn negative_is_ignored() {
        assert_eq!(parse_retry_after("-1", at(0)), None);
        assert_eq!(parse_retry_after("-86400", at(0)), None);
    }

    #[test]
    fn huge_is_clamped() {
        assert_eq!(parse_retry_after("86400", at(0)), Some(RETRY_AFTER_CAP));
        assert_eq!(parse_retry_after("18446744073709551615", at(0)), Some(RETRY_AFTER_CAP));
        assert_eq!(parse_retry_after("99999999999999999999999999999", at(0)), Some(RETRY_AFTER_CAP));
        assert_eq!(parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", at(0)), Some(RETRY_AFTER_CAP));
        assert_eq!(parse_retry_after("600", at(0)), Some(RETRY_AFTER_CAP));
        assert_eq!(parse_retry_after("599", at(0)), Some(Duration::from_secs(599)));
    }
}
