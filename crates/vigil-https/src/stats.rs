//! Counters and certificate facts shared by every sink built from one config.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::cert::CertificateInfo;
use crate::error::HttpsError;
use crate::readiness::Facts;

/// The second expiry warning fires this close to notAfter.
pub(crate) const FINAL_WARNING: Duration = Duration::from_secs(7 * 24 * 3600);

/// A handle on the statistics of one [`HttpsSinkConfig`](crate::HttpsSinkConfig)
/// and every [`HttpsSink`](crate::HttpsSink) built from it.
///
/// The batcher builds a fresh sink on every restart; all of them report into
/// the same stats, so the numbers (and the last server certificate seen)
/// survive restarts. Clones share the same numbers.
///
/// Each update takes a short internal lock; [`snapshot`](HttpsStats::snapshot)
/// copies everything out under that lock.
///
/// # Examples
///
/// ```
/// use vigil_https::HttpsSinkConfig;
///
/// let config = HttpsSinkConfig::new("https://127.0.0.1:8443/ingest");
/// let stats = config.stats();
/// let snapshot = stats.snapshot();
/// assert_eq!(snapshot.deliveries.delivered, 0);
/// assert!(snapshot.server_certificate.is_none());
/// // Serializes for a status page or a log line.
/// let json = serde_json::to_string(&snapshot).unwrap();
/// assert!(json.contains("\"certificate_changes\":0"));
/// ```
#[derive(Debug, Clone)]
pub struct HttpsStats {
    pub(crate) inner: Arc<Mutex<State>>,
}

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) snapshot: HttpsStatsSnapshot,
    /// What the readiness report is made of, beyond the snapshot.
    pub(crate) facts: Facts,
    /// (fingerprint, warning level in seconds) pairs already warned about.
    warned: HashSet<(String, u64)>,
}

/// A copy of the [`HttpsStats`] at one moment.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct HttpsStatsSnapshot {
    /// The configured endpoint.
    pub endpoint: String,
    /// The leaf certificate of the last successful handshake.
    pub server_certificate: Option<CertificateInfo>,
    /// The last server certificate that was rejected, with the reason in
    /// [`last_error`](HttpsStatsSnapshot::last_error).
    pub rejected_certificate: Option<CertificateInfo>,
    /// How many times the server's leaf certificate changed between
    /// successful handshakes (rotations seen).
    pub certificate_changes: u64,
    /// Successful TLS handshakes.
    pub handshakes: u64,
    /// Deliveries that failed at the TLS layer (rejected certificate or other TLS error).
    pub tls_failures: u64,
    /// Delivery attempts by outcome.
    pub deliveries: DeliveryCounts,
    /// Events in delivered batches (for a partial success, the ones accepted).
    pub events_delivered: u64,
    /// Events an OTLP receiver refused in a partial success.
    pub events_rejected: u64,
    /// Sinks built from the config (the first build and every restart).
    pub sinks_built: u64,
    /// Trust sets swapped in by a running sink after a file changed.
    pub trust_reloads: u64,
    /// Changed trust or identity files that were refused; the last good set stayed.
    pub trust_reload_failures: u64,
    /// Certificates loaded from trust files in the set in use (webpki roots not counted).
    pub trusted_certificates: usize,
    /// The message of the last error, build or delivery.
    pub last_error: Option<String>,
    /// The HTTP CONNECT proxy the last sink built goes through (credentials
    /// redacted), or `None` for a direct connection.
    pub proxy: Option<String>,
}

/// Delivery attempts counted by [`Delivery`](vigil_events::Delivery) kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct DeliveryCounts {
    /// The server accepted the batch.
    pub delivered: u64,
    /// Transient failures.
    pub retryable: u64,
    /// 413 answers.
    pub too_large: u64,
    /// Refused for good.
    pub rejected: u64,
    /// Fatal failures (TLS, 401/403, configuration).
    pub fatal: u64,
    /// Batches an OTLP receiver accepted in part (`partialSuccess` with
    /// rejected log records).
    pub partially_rejected: u64,
}

impl HttpsStats {
    pub(crate) fn new(endpoint: &str) -> HttpsStats {
        HttpsStats {
            inner: Arc::new(Mutex::new(State {
                snapshot: HttpsStatsSnapshot {
                    endpoint: endpoint.to_string(),
                    server_certificate: None,
                    rejected_certificate: None,
                    certificate_changes: 0,
                    handshakes: 0,
                    tls_failures: 0,
                    deliveries: DeliveryCounts::default(),
                    events_delivered: 0,
                    events_rejected: 0,
                    sinks_built: 0,
                    trust_reloads: 0,
                    trust_reload_failures: 0,
                    trusted_certificates: 0,
                    last_error: None,
                    proxy: None,
                },
                facts: Facts::default(),
                warned: HashSet::new(),
            })),
        }
    }

    /// Copies the current numbers out.
    pub fn snapshot(&self) -> HttpsStatsSnapshot {
        self.inner.lock().snapshot.clone()
    }

    pub(crate) fn sink_built(&self, trusted: usize, proxy: Option<String>) {
        let mut state = self.inner.lock();
        state.snapshot.sinks_built += 1;
        state.snapshot.trusted_certificates = trusted;
        state.snapshot.proxy = proxy;
    }

    pub(crate) fn build_failed(&self, error: &HttpsError) {
        self.inner.lock().snapshot.last_error = Some(error.to_string());
    }

    pub(crate) fn trust_reloaded(&self, trusted: usize) {
        let mut state = self.inner.lock();
        state.snapshot.trust_reloads += 1;
        state.snapshot.trusted_certificates = trusted;
    }

    pub(crate) fn trust_reload_failed(&self, error: &HttpsError) {
        let mut state = self.inner.lock();
        state.snapshot.trust_reload_failures += 1;
        state.snapshot.last_error = Some(error.to_string());
    }

    /// Records a failed [`probe`](crate::HttpsSink::probe): not a delivery.
    pub(crate) fn probe_failed(&self, error: &HttpsError) {
        let mut state = self.inner.lock();
        if error.is_tls() {
            state.facts.handshake_error = Some(error.to_string());
        }
        state.snapshot.last_error = Some(error.to_string());
    }

    pub(crate) fn delivered(&self, events: usize) {
        let mut state = self.inner.lock();
        state.snapshot.deliveries.delivered += 1;
        state.snapshot.events_delivered += events as u64;
    }

    /// An OTLP receiver accepted `accepted` events of a batch and refused `rejected`.
    pub(crate) fn partially_rejected(&self, accepted: u64, rejected: u64, message: &str) {
        let mut state = self.inner.lock();
        let s = &mut state.snapshot;
        s.deliveries.partially_rejected += 1;
        s.events_delivered += accepted;
        s.events_rejected += rejected;
        s.last_error = Some(message.to_string());
    }

    pub(crate) fn failed(&self, error: &HttpsError) {
        self.failed_as(error, error.class());
    }

    /// Counts a failure the sink classified as `class`.
    pub(crate) fn failed_as(&self, error: &HttpsError, class: crate::ErrorClass) {
        let mut state = self.inner.lock();
        let s = &mut state.snapshot;
        match class {
            crate::ErrorClass::Retryable => s.deliveries.retryable += 1,
            crate::ErrorClass::TooLarge => s.deliveries.too_large += 1,
            crate::ErrorClass::Rejected => s.deliveries.rejected += 1,
            crate::ErrorClass::Fatal => s.deliveries.fatal += 1,
        }
        if error.is_tls() {
            s.tls_failures += 1;
        }
        if let HttpsError::Certificate { presented: Some(cert), .. } = error {
            s.rejected_certificate = Some((**cert).clone());
        }
        if error.is_tls() {
            state.facts.handshake_error = Some(error.to_string());
        }
        let s = &mut state.snapshot;
        s.last_error = Some(error.to_string());
    }

    /// Records the leaf of a successful handshake: counts it, notices a
    /// change of certificate and warns about a coming expiry.
    /// Records the chain a server presented in a verified handshake (leaf
    /// first) and the trust anchor that verified it, logs a change of chain,
    /// and warns about any certificate of it close to expiry.
    pub(crate) fn observe_chain(
        &self,
        chain: Vec<CertificateInfo>,
        anchor: Option<CertificateInfo>,
        horizon: Duration,
    ) {
        let mut chain = chain.into_iter();
        let Some(info) = chain.next() else { return };
        let intermediates: Vec<CertificateInfo> = chain.collect();
        let mut state = self.inner.lock();
        state.snapshot.handshakes += 1;
        state.facts.handshake_error = None;
        let endpoint = state.snapshot.endpoint.clone();
        if let Some(old) = &state.snapshot.server_certificate {
            let old_chain = describe_chain(old, &state.facts.intermediates);
            let new_chain = describe_chain(&info, &intermediates);
            if old.sha256 != info.sha256 || old_chain != new_chain {
                log::info!(
                    target: "vigil::https",
                    "server certificate changed for {endpoint}: old sha256 {} (subject {}, issuer {}, notAfter {}) -> new sha256 {} (subject {}, issuer {}, notAfter {}); old chain [{old_chain}] -> new chain [{new_chain}]",
                    old.sha256,
                    old.subject,
                    old.issuer,
                    old.not_after,
                    info.sha256,
                    info.subject,
                    info.issuer,
                    info.not_after,
                );
                state.snapshot.certificate_changes += 1;
            }
        } else {
            log::debug!(
                target: "vigil::https",
                "server certificate for {endpoint}: subject {}, issuer {}, notAfter {}, sha256 {}; chain [{}]",
                info.subject,
                info.issuer,
                info.not_after,
                info.sha256,
                describe_chain(&info, &intermediates),
            );
        }
        state.snapshot.server_certificate = Some(info);
        state.facts.intermediates = intermediates;
        state.facts.anchor = anchor;
        check_expiry(&mut state, horizon, crate::cert::now_unix());
    }

    #[cfg(test)]
    pub(crate) fn observe_certificate(&self, info: CertificateInfo, horizon: Duration) {
        self.observe_chain(vec![info], None, horizon);
    }

    /// Records the client identity's own certificate (the leaf of its chain).
    pub(crate) fn client_certificate(&self, info: Option<CertificateInfo>) {
        self.inner.lock().facts.client = info;
    }

    pub(crate) fn check_expiry(&self, horizon: Duration) {
        check_expiry(&mut self.inner.lock(), horizon, crate::cert::now_unix());
    }
}

/// The warning levels for a horizon: the horizon itself and, when the
/// horizon is longer, [`FINAL_WARNING`].
fn levels(horizon: Duration) -> Vec<u64> {
    let mut levels = vec![horizon.as_secs()];
    if horizon > FINAL_WARNING {
        levels.push(FINAL_WARNING.as_secs());
    }
    levels
}

/// The certificates whose expiry is watched, each with what it is.
fn watched(state: &State) -> Vec<(String, &CertificateInfo)> {
    let mut out = Vec::new();
    if let Some(leaf) = &state.snapshot.server_certificate {
        out.push(("server certificate".to_string(), leaf));
    }
    for (i, cert) in state.facts.intermediates.iter().enumerate() {
        out.push((format!("intermediate certificate #{}", i + 1), cert));
    }
    if let Some(anchor) = &state.facts.anchor {
        out.push(("trust anchor".to_string(), anchor));
    }
    if let Some(client) = &state.facts.client {
        out.push(("client certificate".to_string(), client));
    }
    out
}

fn check_expiry(state: &mut State, horizon: Duration, now_unix: i64) {
    let mut due = Vec::new();
    for (what, cert) in watched(state) {
        let left = cert.seconds_left(now_unix);
        // A horizon beyond i64::MAX seconds (Duration::MAX) saturates: it covers every certificate.
        let level = levels(horizon).into_iter().filter(|level| left <= i64::try_from(*level).unwrap_or(i64::MAX)).min();
        if let Some(level) = level {
            due.push((what, cert.clone(), left, level));
        }
    }
    for (what, cert, left, level) in due {
        if !state.warned.insert((cert.sha256.clone(), level)) {
            continue;
        }
        log::warn!(
            target: "vigil::https",
            "{what} for {} expires in {} (notAfter {}; subject {}, issuer {}, sha256 {}); renew it or prepare the clients' trust for the new one",
            state.snapshot.endpoint,
            describe_left(left),
            cert.not_after,
            cert.subject,
            cert.issuer,
            cert.sha256,
        );
    }
}

/// `subject (sha256 …) <- issuer …` for each certificate of a chain, leaf first.
fn describe_chain(leaf: &CertificateInfo, intermediates: &[CertificateInfo]) -> String {
    std::iter::once(leaf)
        .chain(intermediates)
        .map(|c| format!("{} (sha256 {})", c.subject, c.sha256))
        .collect::<Vec<_>>()
        .join(" <- ")
}

fn describe_left(left: i64) -> String {
    if left <= 0 {
        return "no time: it has expired".to_string();
    }
    let days = left / 86_400;
    let hours = (left % 86_400) / 3600;
    let minutes = (left % 3600) / 60;
    if days > 0 { format!("{days} days {hours} hours") } else { format!("{hours} hours {minutes} minutes") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(fp: &str, not_after_unix: i64) -> CertificateInfo {
        CertificateInfo {
            subject: "CN=server".into(),
            issuer: "CN=ca".into(),
            not_after: crate::cert::rfc3339(not_after_unix),
            not_after_unix,
            sha256: fp.into(),
            spki_sha256: fp.into(),
        }
    }

    const DAY: i64 = 86_400;

    fn warned(stats: &HttpsStats) -> usize {
        stats.inner.lock().warned.len()
    }

    #[test]
    fn levels_follow_the_horizon() {
        assert_eq!(levels(Duration::from_secs(30 * DAY as u64)), vec![30 * DAY as u64, 7 * DAY as u64]);
        assert_eq!(levels(Duration::from_secs(3 * DAY as u64)), vec![3 * DAY as u64]);
        assert_eq!(levels(Duration::ZERO), vec![0]);
    }

    #[test]
    fn expiry_warns_once_per_level() {
        let stats = HttpsStats::new("https://x");
        let horizon = Duration::from_secs(30 * DAY as u64);
        let now = 1_000_000_000;
        stats.inner.lock().snapshot.server_certificate = Some(cert("AA", now + 40 * DAY));
        check_expiry(&mut stats.inner.lock(), horizon, now);
        assert_eq!(warned(&stats), 0, "40 days left is outside the horizon");
        check_expiry(&mut stats.inner.lock(), horizon, now + 11 * DAY);
        assert_eq!(warned(&stats), 1, "29 days left is inside");
        check_expiry(&mut stats.inner.lock(), horizon, now + 12 * DAY);
        assert_eq!(warned(&stats), 1, "same level, no second warning");
        check_expiry(&mut stats.inner.lock(), horizon, now + 34 * DAY);
        assert_eq!(warned(&stats), 2, "6 days left reaches the final level");
        check_expiry(&mut stats.inner.lock(), horizon, now + 35 * DAY);
        assert_eq!(warned(&stats), 2);
        // A new certificate starts over.
        stats.inner.lock().snapshot.server_certificate = Some(cert("BB", now + 36 * DAY));
        check_expiry(&mut stats.inner.lock(), horizon, now + 35 * DAY);
        assert_eq!(warned(&stats), 3);
    }

    #[test]
    fn zero_horizon_never_warns() {
        let stats = HttpsStats::new("https://x");
        stats.inner.lock().snapshot.server_certificate = Some(cert("AA", 100 + DAY));
        check_expiry(&mut stats.inner.lock(), Duration::ZERO, 100);
        assert_eq!(warned(&stats), 0);
    }

    #[test]
    fn certificate_change_is_counted() {
        let stats = HttpsStats::new("https://x");
        let far = crate::cert::now_unix() + 365 * DAY;
        stats.observe_certificate(cert("AA", far), Duration::ZERO);
        stats.observe_certificate(cert("AA", far), Duration::ZERO);
        assert_eq!(stats.snapshot().certificate_changes, 0);
        stats.observe_certificate(cert("BB", far), Duration::ZERO);
        let snap = stats.snapshot();
        assert_eq!(snap.certificate_changes, 1);
        assert_eq!(snap.handshakes, 3);
        assert_eq!(snap.server_certificate.unwrap().sha256, "BB");
    }

    #[test]
    fn a_new_intermediate_under_the_same_leaf_is_a_change_too() {
        let stats = HttpsStats::new("https://x");
        let far = crate::cert::now_unix() + 365 * DAY;
        stats.observe_chain(vec![cert("AA", far), cert("I1", far)], None, Duration::ZERO);
        stats.observe_chain(vec![cert("AA", far), cert("I1", far)], None, Duration::ZERO);
        assert_eq!(stats.snapshot().certificate_changes, 0);
        stats.observe_chain(vec![cert("AA", far), cert("I2", far)], None, Duration::ZERO);
        assert_eq!(stats.snapshot().certificate_changes, 1);
        assert_eq!(
            describe_chain(&cert("AA", far), &[cert("I2", far)]),
            "CN=server (sha256 AA) <- CN=server (sha256 I2)"
        );
    }

    #[test]
    fn failures_are_counted_by_class() {
        let stats = HttpsStats::new("https://x");
        let status = |status| HttpsError::Status {
            endpoint: "https://x".into(),
            status,
            retry_after: None,
            body: String::new(),
        };
        stats.failed(&status(503));
        stats.failed(&status(413));
        stats.failed(&status(400));
        stats.failed(&status(401));
        stats.failed(&HttpsError::Certificate {
            endpoint: "https://x".into(),
            authority: "x:443".into(),
            problem: crate::CertificateProblem::UnknownIssuer,
            presented: Some(Box::new(cert("CC", 0))),
        });
        stats.delivered(7);
        let snap = stats.snapshot();
        assert_eq!(
            snap.deliveries,
            DeliveryCounts { delivered: 1, retryable: 1, too_large: 1, rejected: 1, fatal: 2, partially_rejected: 0 }
        );
        assert_eq!(snap.events_delivered, 7);
        assert_eq!(snap.tls_failures, 1);
        assert_eq!(snap.rejected_certificate.unwrap().sha256, "CC");
        assert!(snap.last_error.unwrap().contains("unknown issuer CN=ca"));
    }

    #[test]
    fn describe_left_reads_well() {
        assert_eq!(describe_left(10 * DAY - 3600), "9 days 23 hours");
        assert_eq!(describe_left(3 * 3600 + 120), "3 hours 2 minutes");
        assert_eq!(describe_left(0), "no time: it has expired");
    }
}
