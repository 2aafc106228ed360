//! The readiness report: is this host ready for the certificates it will be
//! shown, today and after the announced rotations?

use std::fmt;

use crate::cert::{CertificateInfo, now_unix, rfc3339};
use crate::rotation::RotationFacts;
use crate::stats::{FINAL_WARNING, HttpsStats};

/// What the report is made of, kept in the stats beside the counters.
#[derive(Debug, Clone, Default)]
pub(crate) struct Facts {
    /// The served certificates after the leaf, in the order served.
    pub(crate) intermediates: Vec<CertificateInfo>,
    /// The trust anchor that verified the last chain, when it came from a
    /// trust file.
    pub(crate) anchor: Option<CertificateInfo>,
    /// The client identity's own certificate.
    pub(crate) client: Option<CertificateInfo>,
    /// Why the last handshake failed, until one succeeds.
    pub(crate) handshake_error: Option<String>,
    /// The trust set as last loaded.
    pub(crate) trust: Option<TrustStatus>,
    /// The announced rotations, as last checked against the trust set.
    pub(crate) rotations: Vec<RotationFacts>,
}

/// Whether one endpoint's host is ready for its certificates: the served
/// chain, the anchor that verified it, the trust set, the announced rotations
/// and the client identity, each certificate with its days left. Made by
/// [`HttpsStats::readiness`].
///
/// It serializes to JSON for machines (`serde_json::to_string(&report)`) and
/// displays as a short text for people (`println!("{report}")`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Readiness {
    /// The endpoint, userinfo and query values redacted.
    pub endpoint: String,
    /// Whether nothing below needs an operator: `false` when an announced CA
    /// is missing from the trust set, the last handshake was refused, no
    /// handshake succeeded yet, or a certificate expires within 7 days.
    pub ready: bool,
    /// Why [`ready`](Readiness::ready) is false, one line each; empty when ready.
    pub reasons: Vec<String>,
    /// When the report was made, RFC 3339 UTC.
    pub checked_at: String,
    /// The chain the server presented in the last verified handshake, leaf first.
    pub served_chain: Vec<CertificateStatus>,
    /// The trust anchor that verified it, when it came from a trust file.
    pub anchor: Option<CertificateStatus>,
    /// The trust set as last loaded; `None` before the first load.
    pub trust: Option<TrustStatus>,
    /// The announced rotations and whether this host is ready for each.
    pub rotations: Vec<RotationStatus>,
    /// The client identity's certificate, when mTLS is used.
    pub client_identity: Option<CertificateStatus>,
}

/// One certificate and its days left.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct CertificateStatus {
    /// Subject, issuer, notAfter and fingerprints.
    #[serde(flatten)]
    pub certificate: CertificateInfo,
    /// Whole days until notAfter when the report was made; negative once expired.
    pub days_left: i64,
}

/// The trust set: which files, which anchors.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct TrustStatus {
    /// The trust files, in configuration order.
    pub files: Vec<String>,
    /// Whether the webpki roots are trusted too (they are not listed).
    pub webpki_roots: bool,
    /// Every CA certificate from the trust files, with the file it came from.
    pub anchors: Vec<AnchorStatus>,
}

/// One CA certificate of the trust set.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct AnchorStatus {
    /// The trust file holding it.
    pub file: String,
    /// The certificate; `days_left` is filled in when the report is made.
    #[serde(flatten)]
    pub status: CertificateStatus,
}

/// An announced rotation, as checked against the trust set.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct RotationStatus {
    /// The new CA's subject when it was given as a PEM file, else `unknown subject`.
    pub new_ca: String,
    /// The SHA-256 fingerprint of the new CA's subjectPublicKeyInfo.
    pub spki_sha256: String,
    /// The announced date, `YYYY-MM-DD`.
    pub by: String,
    /// Whole days until that date; negative once it has passed.
    pub days_left: i64,
    /// Whether the trust set holds the new CA.
    pub ready: bool,
    /// The trust file that holds it, when ready.
    pub trusted_in: Option<String>,
}

fn status(certificate: &CertificateInfo, now: i64) -> CertificateStatus {
    CertificateStatus { days_left: certificate.days_left(now), certificate: certificate.clone() }
}

impl HttpsStats {
    /// Whether this endpoint's host is ready for its certificates, now and
    /// after the [announced rotations](crate::HttpsSinkConfig::announced_rotation).
    ///
    /// The served chain and anchor come from the last verified handshake;
    /// the trust set and the rotations from the last trust poll. Never blocks
    /// on a delivery.
    ///
    /// # Examples
    ///
    /// ```
    /// use vigil_https::HttpsSinkConfig;
    ///
    /// let collector = vigil_collector::Collector::builder().start()?;
    /// let config = HttpsSinkConfig::new(collector.endpoint()).trust_file(collector.ca_pem_path());
    /// let _sink = config.build()?;
    /// let report = config.stats().readiness();
    /// // No handshake yet: not ready, and the report says why.
    /// assert!(!report.ready);
    /// assert!(report.reasons[0].contains("no verified handshake"));
    /// assert_eq!(report.trust.expect("loaded at build").anchors.len(), 1);
    /// println!("{}", serde_json::to_string(&config.stats().readiness())?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn readiness(&self) -> Readiness {
        self.readiness_at(now_unix())
    }

    pub(crate) fn readiness_at(&self, now: i64) -> Readiness {
        let state = self.inner.lock();
        let facts = &state.facts;
        let served_chain: Vec<CertificateStatus> =
            state.snapshot.server_certificate.iter().chain(&facts.intermediates).map(|c| status(c, now)).collect();
        let anchor = facts.anchor.as_ref().map(|c| status(c, now));
        let client_identity = facts.client.as_ref().map(|c| status(c, now));
        let trust = facts.trust.clone().map(|mut trust| {
            for anchor in &mut trust.anchors {
                anchor.status.days_left = anchor.status.certificate.days_left(now);
            }
            trust
        });
        let rotations: Vec<RotationStatus> = facts.rotations.iter().map(|r| r.status(now)).collect();

        let mut reasons = Vec::new();
        for rotation in rotations.iter().filter(|r| !r.ready) {
            reasons.push(format!(
                "rotation to CA {:?} (spki sha256 {}) announced for {}: this host does not trust it yet",
                rotation.new_ca, rotation.spki_sha256, rotation.by
            ));
        }
        match &facts.handshake_error {
            Some(error) => reasons.push(format!("the last handshake failed: {error}")),
            None if served_chain.is_empty() => reasons.push("no verified handshake with the endpoint yet".to_string()),
            None => {}
        }
        let urgent = FINAL_WARNING.as_secs().div_ceil(86_400) as i64;
        let named = served_chain
            .iter()
            .enumerate()
            .map(|(i, c)| (if i == 0 { "server certificate".to_string() } else { format!("intermediate #{i}") }, c))
            .chain(anchor.iter().map(|c| ("trust anchor".to_string(), c)))
            .chain(client_identity.iter().map(|c| ("client certificate".to_string(), c)));
        for (what, cert) in named {
            if cert.days_left < urgent {
                reasons.push(format!(
                    "{what} {} expires {} ({} days left)",
                    cert.certificate.subject, cert.certificate.not_after, cert.days_left
                ));
            }
        }
        Readiness {
            endpoint: state.snapshot.endpoint.clone(),
            ready: reasons.is_empty(),
            reasons,
            checked_at: rfc3339(now),
            served_chain,
            anchor,
            trust,
            rotations,
            client_identity,
        }
    }

    /// Records the trust set and the rotations checked against it.
    pub(crate) fn trust_checked(&self, trust: TrustStatus, rotations: Vec<RotationFacts>) {
        let mut state = self.inner.lock();
        state.facts.trust = Some(trust);
        state.facts.rotations = rotations;
    }
}

impl fmt::Display for CertificateStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.certificate;
        write!(
            f,
            "{} (issuer {}; notAfter {}, {} days left; sha256 {})",
            c.subject, c.issuer, c.not_after, self.days_left, c.sha256
        )
    }
}

impl fmt::Display for Readiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.ready { "READY" } else { "NOT READY" };
        writeln!(f, "{}: {verdict} (checked {})", self.endpoint, self.checked_at)?;
        for reason in &self.reasons {
            writeln!(f, "  ! {reason}")?;
        }
        for (i, cert) in self.served_chain.iter().enumerate() {
            let what = if i == 0 { "leaf" } else { "intermediate" };
            writeln!(f, "  served {what}: {cert}")?;
        }
        if let Some(anchor) = &self.anchor {
            writeln!(f, "  verified by anchor: {anchor}")?;
        }
        if let Some(trust) = &self.trust {
            let roots = if trust.webpki_roots { " plus the webpki roots" } else { "" };
            writeln!(f, "  trust set: {}{roots}", trust.files.join(", "))?;
            for anchor in &trust.anchors {
                writeln!(f, "    anchor {}: {}", anchor.file, anchor.status)?;
            }
        }
        for r in &self.rotations {
            let state = match &r.trusted_in {
                Some(file) => format!("ready (trusted in {file})"),
                None => "NOT READY: not in the trust set".to_string(),
            };
            writeln!(
                f,
                "  rotation to {:?} (spki sha256 {}) by {}, {} days left: {state}",
                r.new_ca, r.spki_sha256, r.by, r.days_left
            )?;
        }
        if let Some(client) = &self.client_identity {
            writeln!(f, "  client identity: {client}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::rotation::Announced;

    const DAY: i64 = 86_400;

    fn cert(subject: &str, not_after_unix: i64) -> CertificateInfo {
        CertificateInfo {
            subject: subject.into(),
            issuer: "CN=root".into(),
            not_after: rfc3339(not_after_unix),
            not_after_unix,
            sha256: format!("{subject}-fp"),
            spki_sha256: format!("{subject}-spki"),
        }
    }

    #[test]
    fn ready_needs_a_handshake_every_announced_ca_and_a_week_on_every_certificate() {
        let now = 1_500_000_000;
        let stats = HttpsStats::new("https://x/");
        assert_eq!(stats.readiness_at(now).reasons, ["no verified handshake with the endpoint yet"]);

        stats.observe_chain(
            vec![cert("CN=leaf", now + 90 * DAY)],
            Some(cert("CN=root", now + 3 * DAY)),
            Duration::ZERO,
        );
        let announced = Announced {
            subject: "CN=next".into(),
            spki_sha256: "AA".into(),
            by: "2017-07-24".into(),
            by_unix: now + 10 * DAY,
        };
        stats.trust_checked(
            TrustStatus { files: vec!["/t.pem".into()], webpki_roots: false, anchors: Vec::new() },
            vec![RotationFacts { announced, trusted_in: None }],
        );
        let report = stats.readiness_at(now);
        assert!(!report.ready);
        assert_eq!(report.reasons.len(), 2, "{:#?}", report.reasons);
        assert!(report.reasons[0].starts_with("rotation to CA \"CN=next\""), "{}", report.reasons[0]);
        assert!(report.reasons[1].starts_with("trust anchor CN=root expires"), "{}", report.reasons[1]);
        assert_eq!(report.rotations[0].days_left, 10);
        assert_eq!(report.served_chain[0].days_left, 90);
        // A week and a day later the anchor has expired, and the text says so.
        let later = stats.readiness_at(now + 8 * DAY);
        assert_eq!(later.anchor.as_ref().map(|a| a.days_left), Some(-5));
        let text = later.to_string();
        assert!(text.starts_with("https://x/: NOT READY"), "{text}");
        assert!(text.contains("NOT READY: not in the trust set"), "{text}");
    }
}
