//! The control language shared by the binary's stdin and the HTTP control
//! endpoint. The faults' and certificate modes' own words are parsed and
//! printed by their types, in fault.rs.

use std::str::FromStr;

use crate::error::ParseCommandError;
use crate::fault::{CertMode, Fault, split_word};

/// One control command, as typed on the binary's stdin or posted to
/// `/control`.
///
/// | line | command |
/// |---|---|
/// | `rotate` | [`Command::Rotate`] |
/// | `valid`, `expired`, `wrong-name`, `expires-in 10d` | [`Command::Serve`] |
/// | `healthy`, `never-answer`, `slow 3s`, `reset`, `close-mid`, `garbage`, `partial-success 2` | [`Command::Fault`] |
/// | `status 500` (or `fault 500`), `status 503 retry-after=2`, `fault 429 retry-after=Wed, 21 Oct 2015 07:28:00 GMT` | [`Command::Fault`] |
/// | `next 3 <fault>` | [`Command::FailNext`] |
/// | `stats` | [`Command::Stats`] |
///
/// Durations are an integer with a unit: `ms`, `s`, `m`, `h` or `d` (a bare
/// integer is seconds). A `retry-after=` value is everything after the `=`,
/// passed verbatim.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use vigil_collector::{CertMode, Command, Fault};
///
/// let cmd: Command = "fault 503 retry-after=2".parse()?;
/// assert_eq!(cmd, Command::Fault(Fault::RetryAfter { status: 503, value: "2".into() }));
/// assert_eq!("slow 3s".parse::<Command>()?, Command::Fault(Fault::Slow(Duration::from_secs(3))));
/// assert_eq!("expires-in 10d".parse::<Command>()?, Command::Serve(CertMode::ExpiresIn(Duration::from_secs(864_000))));
/// assert_eq!("next 2 reset".parse::<Command>()?, Command::FailNext { count: 2, fault: Fault::Reset });
/// assert!("explode".parse::<Command>().is_err());
/// # Ok::<(), vigil_collector::ParseCommandError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// Rotate to a new CA: [`Collector::rotate_ca`](crate::Collector::rotate_ca).
    Rotate,
    /// Serve another certificate: [`Collector::serve`](crate::Collector::serve).
    Serve(CertMode),
    /// Set the persistent fault: [`Collector::set_fault`](crate::Collector::set_fault).
    Fault(Fault),
    /// Fault the next `count` requests: [`Collector::fail_next`](crate::Collector::fail_next).
    FailNext {
        /// How many requests.
        count: u64,
        /// The fault they get.
        fault: Fault,
    },
    /// Report the counters: [`Collector::stats`](crate::Collector::stats).
    Stats,
}

/// A one-line summary of the control language, for `help`.
pub const COMMAND_HELP: &str = "commands: rotate | valid | expired | wrong-name | expires-in DUR | healthy | never-answer | \
slow DUR | status CODE [retry-after=VALUE] | fault CODE [retry-after=VALUE] | reset | close-mid | garbage | \
partial-success N | next N FAULT | stats | quit   (DUR: 500ms, 3s, 2m, 1h, 10d)";

impl FromStr for Command {
    type Err = ParseCommandError;

    fn from_str(line: &str) -> Result<Command, ParseCommandError> {
        let trimmed = line.trim();
        let (word, rest) = split_word(trimmed);
        let err = |reason: &str| ParseCommandError::new(line, reason);
        let no_args = |cmd: Command| if rest.is_empty() { Ok(cmd) } else { Err(err("takes no arguments")) };
        match word.to_ascii_lowercase().as_str() {
            "" => Err(err("empty command")),
            "rotate" | "rotate-ca" => no_args(Command::Rotate),
            "stats" => no_args(Command::Stats),
            "next" => {
                let (count, fault) = rest.split_once(char::is_whitespace).ok_or_else(|| err("usage: next N FAULT"))?;
                let count: u64 = count.parse().map_err(|_| err("N must be a non-negative integer"))?;
                match Fault::parse_words(line, fault.trim())? {
                    Some(fault) => Ok(Command::FailNext { count, fault }),
                    None => Err(err("`next` takes a fault, e.g. `next 2 status 500`")),
                }
            }
            _ => {
                if let Some(mode) = CertMode::parse_words(line, trimmed)? {
                    Ok(Command::Serve(mode))
                } else if let Some(fault) = Fault::parse_words(line, trimmed)? {
                    Ok(Command::Fault(fault))
                } else {
                    Err(err("unknown command; try `help`"))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn parse(line: &str) -> Result<Command, ParseCommandError> {
        line.parse()
    }

    #[test]
    fn parses_every_command() {
        assert_eq!(parse("rotate").unwrap(), Command::Rotate);
        assert_eq!(parse("  STATS ").unwrap(), Command::Stats);
        assert_eq!(parse("wrong-name").unwrap(), Command::Serve(CertMode::WrongName));
        assert_eq!(parse("expired").unwrap(), Command::Serve(CertMode::Expired));
        assert_eq!(parse("valid").unwrap(), Command::Serve(CertMode::Valid));
        assert_eq!(parse("never-answer").unwrap(), Command::Fault(Fault::NeverAnswer));
        assert_eq!(parse("slow 250ms").unwrap(), Command::Fault(Fault::Slow(Duration::from_millis(250))));
        assert_eq!(parse("fault 500").unwrap(), Command::Fault(Fault::Status(500)));
        assert_eq!(parse("status 413").unwrap(), Command::Fault(Fault::Status(413)));
        assert_eq!(
            parse("fault 429 retry-after=Wed, 21 Oct 2015 07:28:00 GMT").unwrap(),
            Command::Fault(Fault::RetryAfter { status: 429, value: "Wed, 21 Oct 2015 07:28:00 GMT".into() })
        );
        assert_eq!(parse("close-mid").unwrap(), Command::Fault(Fault::CloseMidResponse));
        assert_eq!(parse("garbage").unwrap(), Command::Fault(Fault::Garbage));
        assert_eq!(parse("partial-success 2").unwrap(), Command::Fault(Fault::PartialSuccess(2)));
        assert_eq!(parse("reset").unwrap(), Command::Fault(Fault::Reset));
        assert_eq!(parse("healthy").unwrap(), Command::Fault(Fault::Healthy));
        assert_eq!(
            parse("next 3 fault 503 retry-after=1").unwrap(),
            Command::FailNext { count: 3, fault: Fault::RetryAfter { status: 503, value: "1".into() } }
        );
    }

    #[test]
    fn refuses_bad_lines_with_a_reason() {
        for (line, words) in [
            ("", "empty"),
            ("explode", "unknown command"),
            ("rotate now", "no arguments"),
            ("slow", "expected a duration"),
            ("slow 3 weeks", "unknown duration unit"),
            ("slow 99999999999999999999s", "too large"),
            ("expires-in 99999999999999999d", "too large"),
            ("fault", "status must be"),
            ("fault 42", "status must be"),
            ("fault 503 after=2", "retry-after"),
            ("fault 503 retry-after=", "needs a value"),
            ("next", "usage"),
            ("next x reset", "non-negative integer"),
            ("next 2 rotate", "takes a fault"),
        ] {
            let err = parse(line).unwrap_err();
            assert_eq!(err.input(), line);
            assert!(err.reason().contains(words), "{line:?}: {err}");
        }
    }
}
