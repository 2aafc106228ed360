//! What the collector does wrong on purpose: request faults and certificate
//! modes, and their text format (`Display` and `FromStr`, in one place).

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::error::ParseCommandError;

/// How the collector answers an ingest request.
///
/// Faults are real on the wire: a client sees exactly what it would see from a
/// misbehaving server, a timeout, a reset, a truncated response. Set one with
/// [`Collector::set_fault`](crate::Collector::set_fault) (it stays until
/// changed) or [`Collector::fail_next`](crate::Collector::fail_next) (for the
/// next `n` requests only).
///
/// Faults apply to `POST /ingest` and `POST /v1/logs` only, after the whole
/// request has been read.
/// The health and control endpoints always answer normally.
///
/// | fault | what the client sees | is the batch recorded? |
/// |---|---|---|
/// | `Healthy` | `200` | yes |
/// | `NeverAnswer` | nothing: the connection stays open until the client gives up or the collector shuts down | no |
/// | `Slow(d)` | `200` after `d` | yes, after `d` |
/// | `Status(s)` | status `s` | no |
/// | `RetryAfter { status, value }` | status and a `Retry-After: value` header | no |
/// | `Reset` | a TCP reset (`SO_LINGER` 0) | no |
/// | `CloseMidResponse` | the first half of a `200` response head, then EOF without TLS `close_notify` | **yes**: the server committed, the answer was lost |
/// | `Garbage` | bytes that are not HTTP, then the connection closes | no |
/// | `PartialSuccess(n)` | on `/v1/logs`: `200` with an OTLP `partialSuccess` refusing the last `n` log records; on `/ingest`: as `Healthy` | all but the refused records |
///
/// `CloseMidResponse` records the batch on purpose: it is the case an
/// idempotency key exists for. A client that retries sees a duplicate, and the
/// collector counts it as one.
///
/// # Text form
///
/// `Display` writes the form `FromStr` reads, the one the
/// [control language](crate::Command) uses: `healthy`, `never-answer`,
/// `slow 1500ms`, `status 503`, `status 429 retry-after=2`, `reset`,
/// `close-mid`, `garbage`, `partial-success 3`. Parsing also takes `fault CODE` for `status CODE`,
/// any case, a bare number of seconds for a duration, and the aliases `heal`
/// and `close-mid-response`. Durations are written in the largest unit that
/// is exact (`ms`, `s`, `m`, `h`, `d`), so every fault whose duration is whole
/// milliseconds and whose status is from 100 to 999 reads back as itself.
///
/// ```
/// use std::time::Duration;
/// use vigil_collector::Fault;
///
/// let fault: Fault = "status 503 retry-after=2".parse()?;
/// assert_eq!(fault, Fault::RetryAfter { status: 503, value: "2".into() });
/// assert_eq!(Fault::Slow(Duration::from_secs(90)).to_string(), "slow 90s");
/// assert!("explode".parse::<Fault>().is_err());
/// # Ok::<(), vigil_collector::ParseCommandError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Fault {
    /// Answer normally.
    #[default]
    Healthy,
    /// Read the request, then never answer. The connection stays open until
    /// the client closes it or the collector shuts down.
    NeverAnswer,
    /// Wait this long, then process the batch and answer `200`. Shutdown
    /// interrupts the wait (and then nothing is recorded or answered).
    Slow(Duration),
    /// Answer with this status code (e.g. 500, 413, 401) and a small JSON
    /// error body. The code is written as given, even if it is not a valid
    /// HTTP status.
    Status(u16),
    /// Answer with `status` (normally 429 or 503) and a `Retry-After` header.
    RetryAfter {
        /// The status code.
        status: u16,
        /// The header's value, passed verbatim: delay seconds (`"2"`) or an
        /// HTTP date (`"Wed, 21 Oct 2015 07:28:00 GMT"`).
        value: String,
    },
    /// Reset the connection: close the socket with `SO_LINGER` 0, so the
    /// client reads `ECONNRESET`.
    Reset,
    /// Record the batch, write the first half of the `200` response head
    /// (cut inside the headers, so no client can mistake it for a complete
    /// answer), then close the socket without a TLS `close_notify`.
    CloseMidResponse,
    /// Write bytes that are not an HTTP response, then close.
    Garbage,
    /// On the OTLP route: record all but the last `n` log records of the
    /// request and answer `200` with an `ExportLogsServiceResponse` whose
    /// `partialSuccess` says `n` were rejected (at most the request's count).
    /// The NDJSON route has no partial success and answers as
    /// [`Healthy`](Fault::Healthy): refusing records there would lose them
    /// without the client knowing.
    PartialSuccess(u64),
}

impl Fault {
    /// A short name for the fault, for logs and the control interface:
    /// `healthy`, `never-answer`, `slow`, `status`, `retry-after`, `reset`,
    /// `close-mid`, `garbage`, `partial-success`.
    ///
    /// # Examples
    ///
    /// ```
    /// use vigil_collector::Fault;
    /// assert_eq!(Fault::Status(503).name(), "status");
    /// assert_eq!(Fault::CloseMidResponse.name(), "close-mid");
    /// ```
    pub fn name(&self) -> &'static str {
        match self {
            Fault::Healthy => "healthy",
            Fault::NeverAnswer => "never-answer",
            Fault::Slow(_) => "slow",
            Fault::Status(_) => "status",
            Fault::RetryAfter { .. } => "retry-after",
            Fault::Reset => "reset",
            Fault::CloseMidResponse => "close-mid",
            Fault::Garbage => "garbage",
            Fault::PartialSuccess(_) => "partial-success",
        }
    }

    /// Whether this is [`Fault::Healthy`].
    pub fn is_healthy(&self) -> bool {
        matches!(self, Fault::Healthy)
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Slow(d) => write!(f, "slow {}", format_duration(*d)),
            Fault::Status(s) => write!(f, "status {s}"),
            Fault::RetryAfter { status, value } => write!(f, "status {status} retry-after={value}"),
            Fault::PartialSuccess(n) => write!(f, "partial-success {n}"),
            other => f.write_str(other.name()),
        }
    }
}

impl FromStr for Fault {
    type Err = ParseCommandError;

    fn from_str(text: &str) -> Result<Fault, ParseCommandError> {
        match Fault::parse_words(text, text.trim())? {
            Some(fault) => Ok(fault),
            None => Err(ParseCommandError::new(text, "unknown fault")),
        }
    }
}

impl Fault {
    /// Parses a fault from `text`; `Ok(None)` when its first word names no
    /// fault. Errors quote `line`, the whole input.
    pub(crate) fn parse_words(line: &str, text: &str) -> Result<Option<Fault>, ParseCommandError> {
        let (word, rest) = split_word(text);
        let err = |reason: &str| ParseCommandError::new(line, reason);
        let no_args = |fault: Fault| if rest.is_empty() { Ok(Some(fault)) } else { Err(err("takes no arguments")) };
        match word.to_ascii_lowercase().as_str() {
            "healthy" | "heal" => no_args(Fault::Healthy),
            "never-answer" => no_args(Fault::NeverAnswer),
            "reset" => no_args(Fault::Reset),
            "close-mid" | "close-mid-response" => no_args(Fault::CloseMidResponse),
            "garbage" => no_args(Fault::Garbage),
            "slow" => Ok(Some(Fault::Slow(parse_duration(rest).map_err(|r| err(&r))?))),
            "partial-success" | "partial" => {
                let n = rest.parse().map_err(|_| err("partial-success takes a count of rejected records"))?;
                Ok(Some(Fault::PartialSuccess(n)))
            }
            "status" | "fault" => {
                let (code, option) = split_word(rest);
                let status: u16 = code.parse().map_err(|_| err("status must be an integer from 100 to 999"))?;
                if !(100..=999).contains(&status) {
                    return Err(err("status must be an integer from 100 to 999"));
                }
                if option.is_empty() {
                    return Ok(Some(Fault::Status(status)));
                }
                let value = option
                    .strip_prefix("retry-after=")
                    .ok_or_else(|| err("the only option is retry-after=VALUE"))?
                    .trim();
                if value.is_empty() {
                    return Err(err("retry-after needs a value"));
                }
                Ok(Some(Fault::RetryAfter { status, value: value.to_owned() }))
            }
            _ => Ok(None),
        }
    }
}

/// Which certificate the collector presents in new TLS handshakes.
///
/// Switch with [`Collector::serve`](crate::Collector::serve). Every leaf is
/// signed by the collector's current CA (see
/// [`Collector::rotate_ca`](crate::Collector::rotate_ca)); connections already
/// established keep the certificate they were opened with.
///
/// `Display` and `FromStr` use the control language's words: `valid`,
/// `expired`, `wrong-name`, `expires-in 10d`.
///
/// ```
/// use std::time::Duration;
/// use vigil_collector::CertMode;
///
/// let mode: CertMode = "expires-in 10d".parse()?;
/// assert_eq!(mode, CertMode::ExpiresIn(Duration::from_secs(10 * 86_400)));
/// assert_eq!(mode.to_string(), "expires-in 10d");
/// # Ok::<(), vigil_collector::ParseCommandError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum CertMode {
    /// Valid for `127.0.0.1`, `::1` and `localhost`, from an hour ago for a year.
    #[default]
    Valid,
    /// Valid names, but `notAfter` was yesterday (issued 30 days ago).
    Expired,
    /// Currently valid, but only for `wrong-name.invalid`.
    WrongName,
    /// Valid names, expiring this long from the moment it is issued.
    /// For testing expiry warnings. Capped at 100 years.
    ExpiresIn(Duration),
}

impl CertMode {
    /// A short name for the mode: `valid`, `expired`, `wrong-name`, `expires-in`.
    pub fn name(&self) -> &'static str {
        match self {
            CertMode::Valid => "valid",
            CertMode::Expired => "expired",
            CertMode::WrongName => "wrong-name",
            CertMode::ExpiresIn(_) => "expires-in",
        }
    }
}

impl fmt::Display for CertMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertMode::ExpiresIn(d) => {
                write!(f, "expires-in {}", format_duration(*d))
            }
            other => f.write_str(other.name()),
        }
    }
}

impl FromStr for CertMode {
    type Err = ParseCommandError;

    fn from_str(text: &str) -> Result<CertMode, ParseCommandError> {
        match CertMode::parse_words(text, text.trim())? {
            Some(mode) => Ok(mode),
            None => Err(ParseCommandError::new(text, "unknown certificate mode")),
        }
    }
}

impl CertMode {
    /// Parses a certificate mode from `text`; `Ok(None)` when its first word
    /// names no mode. Errors quote `line`, the whole input.
    pub(crate) fn parse_words(line: &str, text: &str) -> Result<Option<CertMode>, ParseCommandError> {
        let (word, rest) = split_word(text);
        let err = |reason: &str| ParseCommandError::new(line, reason);
        let no_args = |mode: CertMode| if rest.is_empty() { Ok(Some(mode)) } else { Err(err("takes no arguments")) };
        match word.to_ascii_lowercase().as_str() {
            "valid" => no_args(CertMode::Valid),
            "expired" => no_args(CertMode::Expired),
            "wrong-name" => no_args(CertMode::WrongName),
            "expires-in" => Ok(Some(CertMode::ExpiresIn(parse_duration(rest).map_err(|r| err(&r))?))),
            _ => Ok(None),
        }
    }
}

/// The first word of `text` and the rest, trimmed.
pub(crate) fn split_word(text: &str) -> (&str, &str) {
    match text.split_once(char::is_whitespace) {
        Some((word, rest)) => (word, rest.trim()),
        None => (text, ""),
    }
}

/// Parses `500ms`, `3s`, `2m`, `1h`, `10d` or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    if number.is_empty() {
        return Err(format!("expected a duration such as 3s or 500ms, found {text:?}"));
    }
    let n: u64 = number.parse().map_err(|_| format!("duration {text:?} is too large"))?;
    let scale: u64 = match unit {
        "ms" => return Ok(Duration::from_millis(n)),
        "" | "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        other => return Err(format!("unknown duration unit {other:?} (use ms, s, m, h or d)")),
    };
    n.checked_mul(scale).map(Duration::from_secs).ok_or_else(|| format!("duration {text:?} is too large"))
}

/// Formats a duration in the largest unit that represents it exactly
/// (milliseconds at the finest).
fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) || ms == 0 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if secs.is_multiple_of(size) {
            return format!("{}{unit}", secs / size);
        }
    }
    format!("{secs}s")
}

/// The persistent fault plus the queue of one-shot faults.
#[derive(Debug, Default)]
pub(crate) struct FaultPlan {
    persistent: Fault,
    queued: VecDeque<(u64, Fault)>,
}

impl FaultPlan {
    /// Replaces the persistent fault and drops anything queued.
    pub(crate) fn set(&mut self, fault: Fault) {
        self.persistent = fault;
        self.queued.clear();
    }

    /// Queues `fault` for the next `n` requests, after anything already queued.
    pub(crate) fn push(&mut self, n: u64, fault: Fault) {
        if n > 0 {
            self.queued.push_back((n, fault));
        }
    }

    /// The fault for the next request.
    pub(crate) fn take(&mut self) -> Fault {
        if let Some((left, fault)) = self.queued.front_mut() {
            let fault = fault.clone();
            *left -= 1;
            if *left == 0 {
                self.queued.pop_front();
            }
            return fault;
        }
        self.persistent.clone()
    }

    /// The persistent fault and how many one-shot faults are still queued.
    pub(crate) fn describe(&self) -> (Fault, u64) {
        (self.persistent.clone(), self.queued.iter().map(|(n, _)| n).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn queued_faults_run_out_then_the_persistent_one_returns() {
        let mut plan = FaultPlan::default();
        plan.set(Fault::Slow(Duration::from_millis(5)));
        plan.push(2, Fault::Status(500));
        plan.push(1, Fault::Reset);
        plan.push(0, Fault::Garbage);
        assert_eq!(plan.describe().1, 3);
        assert_eq!(plan.take(), Fault::Status(500));
        assert_eq!(plan.take(), Fault::Status(500));
        assert_eq!(plan.take(), Fault::Reset);
        assert_eq!(plan.take(), Fault::Slow(Duration::from_millis(5)));
        assert_eq!(plan.take(), Fault::Slow(Duration::from_millis(5)));
    }

    #[test]
    fn set_clears_the_queue() {
        let mut plan = FaultPlan::default();
        plan.push(5, Fault::Garbage);
        plan.set(Fault::Healthy);
        assert_eq!(plan.take(), Fault::Healthy);
        assert_eq!(plan.describe(), (Fault::Healthy, 0));
    }

    #[test]
    fn durations_round_trip() {
        for (text, d) in [
            ("0ms", Duration::ZERO),
            ("1500ms", Duration::from_millis(1500)),
            ("3s", Duration::from_secs(3)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
            ("10d", Duration::from_secs(864_000)),
        ] {
            assert_eq!(parse_duration(text).unwrap(), d);
            assert_eq!(format_duration(d), text);
        }
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
    }

    #[test]
    fn from_str_refuses_what_is_not_a_fault_or_mode() {
        let err = "rotate".parse::<Fault>().unwrap_err();
        assert_eq!((err.input(), err.reason()), ("rotate", "unknown fault"));
        let err = "status 42".parse::<Fault>().unwrap_err();
        assert!(err.reason().contains("status must be"), "{err}");
        let err = "healthy".parse::<CertMode>().unwrap_err();
        assert_eq!(err.reason(), "unknown certificate mode");
        assert_eq!(" Slow 2m ".parse::<Fault>().unwrap(), Fault::Slow(Duration::from_secs(120)));
        assert_eq!("fault 500".parse::<Fault>().unwrap(), Fault::Status(500));
        assert_eq!("partial 4".parse::<Fault>().unwrap(), Fault::PartialSuccess(4));
        let err = "partial-success -1".parse::<Fault>().unwrap_err();
        assert!(err.reason().contains("count"), "{err}");
    }

    fn any_duration() -> impl Strategy<Value = Duration> {
        prop_oneof![
            (0u64..100_000).prop_map(Duration::from_millis),
            (0u64..1_000).prop_map(|n| Duration::from_secs(n * 60)),
            any::<u64>().prop_map(Duration::from_millis),
            any::<u64>().prop_map(Duration::from_secs),
        ]
    }

    fn any_fault() -> impl Strategy<Value = Fault> {
        prop_oneof![
            Just(Fault::Healthy),
            Just(Fault::NeverAnswer),
            any_duration().prop_map(Fault::Slow),
            (100u16..=999).prop_map(Fault::Status),
            // Retry-After values: visible ASCII, inner spaces allowed (an
            // HTTP date has them); the parser trims the ends.
            (100u16..=999, "[!-~]([ -~]{0,30}[!-~])?").prop_map(|(status, value)| Fault::RetryAfter { status, value }),
            Just(Fault::Reset),
            Just(Fault::CloseMidResponse),
            Just(Fault::Garbage),
            any::<u64>().prop_map(Fault::PartialSuccess),
        ]
    }

    fn any_mode() -> impl Strategy<Value = CertMode> {
        prop_oneof![
            Just(CertMode::Valid),
            Just(CertMode::Expired),
            Just(CertMode::WrongName),
            any_duration().prop_map(CertMode::ExpiresIn),
        ]
    }

    proptest! {
        #[test]
        fn every_fault_reads_back_as_itself(fault in any_fault()) {
            let text = fault.to_string();
            prop_assert_eq!(text.parse::<Fault>(), Ok(fault.clone()), "{}", text);
            prop_assert_eq!(text.parse::<crate::Command>(), Ok(crate::Command::Fault(fault.clone())));
            let next = format!("next 3 {text}");
            prop_assert_eq!(next.parse::<crate::Command>(), Ok(crate::Command::FailNext { count: 3, fault }));
        }

        #[test]
        fn every_cert_mode_reads_back_as_itself(mode in any_mode()) {
            let text = mode.to_string();
            prop_assert_eq!(text.parse::<CertMode>(), Ok(mode), "{}", text);
            prop_assert_eq!(text.parse::<crate::Command>(), Ok(crate::Command::Serve(mode)));
        }
    }

    #[test]
    fn display_round_trips_through_the_control_syntax() {
        for fault in [
            Fault::Healthy,
            Fault::NeverAnswer,
            Fault::Slow(Duration::from_millis(1500)),
            Fault::Status(413),
            Fault::RetryAfter { status: 429, value: "Wed, 21 Oct 2015 07:28:00 GMT".into() },
            Fault::Reset,
            Fault::CloseMidResponse,
            Fault::Garbage,
            Fault::PartialSuccess(2),
        ] {
            let parsed: crate::Command = fault.to_string().parse().unwrap();
            assert_eq!(parsed, crate::Command::Fault(fault));
        }
        for mode in [
            CertMode::Valid,
            CertMode::Expired,
            CertMode::WrongName,
            CertMode::ExpiresIn(Duration::from_secs(10 * 86_400)),
        ] {
            let parsed: crate::Command = mode.to_string().parse().unwrap();
            assert_eq!(parsed, crate::Command::Serve(mode));
        }
    }
}
