//! What the collector does wrong on purpose: request faults and certificate modes.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

/// How the collector answers an ingest request.
///
/// Faults are real on the wire: a client sees exactly what it would see from a
/// misbehaving server, a timeout, a reset, a truncated response. Set one with
/// [`Collector::set_fault`](crate::Collector::set_fault) (it stays until
/// changed) or [`Collector::fail_next`](crate::Collector::fail_next) (for the
/// next `n` requests only).
///
/// Faults apply to `POST /ingest` only, after the whole request has been read.
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
///
/// `CloseMidResponse` records the batch on purpose: it is the case an
/// idempotency key exists for. A client that retries sees a duplicate, and the
/// collector counts it as one.
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
}

impl Fault {
    /// A short name for the fault, for logs and the control interface:
    /// `healthy`, `never-answer`, `slow`, `status`, `retry-after`, `reset`,
    /// `close-mid`, `garbage`.
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
            Fault::Slow(d) => write!(f, "slow {}", crate::control::format_duration(*d)),
            Fault::Status(s) => write!(f, "status {s}"),
            Fault::RetryAfter { status, value } => write!(f, "status {status} retry-after={value}"),
            other => f.write_str(other.name()),
        }
    }
}

/// Which certificate the collector presents in new TLS handshakes.
///
/// Switch with [`Collector::serve`](crate::Collector::serve). Every leaf is
/// signed by the collector's current CA (see
/// [`Collector::rotate_ca`](crate::Collector::rotate_ca)); connections already
/// established keep the certificate they were opened with.
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
                write!(f, "expires-in {}", crate::control::format_duration(*d))
            }
            other => f.write_str(other.name()),
        }
    }
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
