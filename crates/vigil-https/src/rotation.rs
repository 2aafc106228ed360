//! Announced rotations: the operator says which CA the server will move to
//! and by when; every trust poll checks whether this host trusts it yet.

use std::path::PathBuf;
use std::time::Duration;

use crate::cert::{CertificateInfo, KeyIds, now_unix, parse_date, rfc3339};
use crate::error::{HttpsError, PemProblem, PemRole};
use crate::pem::{TrustSet, read_certificates};
use crate::readiness::RotationStatus;

/// The CA an announced rotation moves to, as given to
/// [`HttpsSinkConfig::announced_rotation`](crate::HttpsSinkConfig::announced_rotation).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NewCa {
    /// A PEM file holding the new CA certificate (the first certificate in
    /// it counts). It must be a CA (basicConstraints CA:TRUE) and not expired.
    Pem(PathBuf),
    /// The SHA-256 fingerprint of the new CA's subjectPublicKeyInfo, in hex
    /// (upper or lower case, with or without colons), as
    /// `openssl x509 -pubkey -noout | openssl pkey -pubin -outform der | sha256sum` prints it.
    SpkiSha256(String),
}

impl From<PathBuf> for NewCa {
    fn from(path: PathBuf) -> NewCa {
        NewCa::Pem(path)
    }
}

impl From<&std::path::Path> for NewCa {
    fn from(path: &std::path::Path) -> NewCa {
        NewCa::Pem(path.to_path_buf())
    }
}

/// The date of an announced rotation: `YYYY-MM-DD` text (UTC), or an instant
/// whose UTC day counts.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use vigil_https::RotationDate;
///
/// let announced: RotationDate = "2017-10-05".into();
/// let in_three_days: RotationDate = (SystemTime::now() + Duration::from_secs(3 * 86_400)).into();
/// assert_ne!(announced, in_three_days);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RotationDate {
    /// `YYYY-MM-DD`, checked at build.
    Text(String),
    /// The UTC day of this instant.
    At(std::time::SystemTime),
}

impl From<&str> for RotationDate {
    fn from(text: &str) -> RotationDate {
        RotationDate::Text(text.to_string())
    }
}

impl From<String> for RotationDate {
    fn from(text: String) -> RotationDate {
        RotationDate::Text(text)
    }
}

impl From<std::time::SystemTime> for RotationDate {
    fn from(at: std::time::SystemTime) -> RotationDate {
        RotationDate::At(at)
    }
}

/// An announced rotation as configured, before it is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Announcement {
    pub(crate) new_ca: NewCa,
    pub(crate) by: RotationDate,
}

/// An announced rotation, checked once at build: what to look for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Announced {
    /// The new CA's subject, or `unknown subject` for a bare fingerprint.
    pub(crate) subject: String,
    /// Colon-separated upper-case hex, as [`CertificateInfo::spki_sha256`].
    pub(crate) spki_sha256: String,
    pub(crate) by: String,
    pub(crate) by_unix: i64,
}

/// An announced rotation and whether the trust set holds the new CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RotationFacts {
    pub(crate) announced: Announced,
    pub(crate) trusted_in: Option<PathBuf>,
}

impl RotationFacts {
    pub(crate) fn status(&self, now: i64) -> RotationStatus {
        RotationStatus {
            new_ca: self.announced.subject.clone(),
            spki_sha256: self.announced.spki_sha256.clone(),
            by: self.announced.by.clone(),
            days_left: self.announced.days_left(now),
            ready: self.trusted_in.is_some(),
            trusted_in: self.trusted_in.as_ref().map(|p| p.display().to_string()),
        }
    }
}

impl Announced {
    /// Whole days from `now` until the announced date (rounded up, so the
    /// day before says 1); negative once it has passed.
    pub(crate) fn days_left(&self, now: i64) -> i64 {
        self.by_unix.saturating_sub(now).saturating_add(86_399).div_euclid(86_400)
    }
}

/// Checks an announcement: the date parses, the fingerprint is 32 bytes of
/// hex, the PEM holds a CA certificate that has not expired.
pub(crate) fn check(endpoint: &str, announcement: &Announcement) -> Result<Announced, HttpsError> {
    let invalid = |reason: String| HttpsError::InvalidAnnouncement { endpoint: endpoint.to_string(), reason };
    let by_unix = match &announcement.by {
        RotationDate::Text(text) => {
            parse_date(text).ok_or_else(|| invalid(format!("the date {text:?} is not a calendar date YYYY-MM-DD")))?
        }
        RotationDate::At(at) => {
            let unix = match at.duration_since(std::time::UNIX_EPOCH) {
                Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
                Err(before) => i64::try_from(before.duration().as_secs()).map_or(i64::MIN, |s| -s),
            };
            unix.saturating_sub(unix.rem_euclid(86_400))
        }
    };
    let by = rfc3339(by_unix).chars().take(10).collect();
    let (subject, spki_sha256) = match &announcement.new_ca {
        NewCa::SpkiSha256(hex) => {
            let digits: String = hex.chars().filter(|c| *c != ':').collect();
            if digits.len() != 64 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(invalid(format!("{hex:?} is not a SHA-256 fingerprint (64 hex digits)")));
            }
            let bytes = digits.to_ascii_uppercase();
            let pairs: Vec<&str> = (0..32).map(|i| &bytes[2 * i..2 * i + 2]).collect();
            ("unknown subject".to_string(), pairs.join(":"))
        }
        NewCa::Pem(path) => {
            let pem_err = |problem| HttpsError::Pem { path: path.clone(), role: PemRole::AnnouncedCa, problem };
            let der =
                read_certificates(path, PemRole::AnnouncedCa)?.into_iter().next().ok_or(pem_err(PemProblem::Empty))?;
            let info = CertificateInfo::from_der(&der)
                .map_err(|reason| pem_err(PemProblem::InvalidCertificate { index: 0, reason }))?;
            if !KeyIds::of(&der).is_ca {
                return Err(pem_err(PemProblem::NotACertificateAuthority { index: 0, subject: info.subject }));
            }
            if info.seconds_left(now_unix()) <= 0 {
                return Err(pem_err(PemProblem::Expired { index: 0, not_after: info.not_after }));
            }
            (info.subject, info.spki_sha256)
        }
    };
    Ok(Announced { subject, spki_sha256, by, by_unix })
}

/// Looks for each announced CA in the trust set.
pub(crate) fn evaluate(announced: &[Announced], trust: &TrustSet) -> Vec<RotationFacts> {
    announced
        .iter()
        .map(|a| RotationFacts {
            announced: a.clone(),
            trusted_in: trust.anchors.iter().find(|t| t.info.spki_sha256 == a.spki_sha256).map(|t| t.file.clone()),
        })
        .collect()
}

/// What was last said about one rotation, so that a missing CA is warned
/// about once a day and a present one announced once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Said {
    /// When the last WARN or ERROR was logged, and at which level.
    missing: Option<(i64, log::Level)>,
    ready: bool,
}

const DAY: i64 = 86_400;

impl Said {
    /// The level to log at now, if any: INFO once when the CA is present,
    /// WARN once a day while it is missing, ERROR (at once, then daily) from
    /// `alarm` before the date.
    pub(crate) fn due(&mut self, ready: bool, days_left: i64, alarm: Duration, now: i64) -> Option<log::Level> {
        if ready {
            let first = !self.ready;
            *self = Said { missing: None, ready: true };
            return first.then_some(log::Level::Info);
        }
        self.ready = false;
        let alarm_days = i64::try_from(alarm.as_secs().div_ceil(DAY as u64)).unwrap_or(i64::MAX);
        let level = if days_left <= alarm_days { log::Level::Error } else { log::Level::Warn };
        let due = match self.missing {
            None => true,
            Some((at, said)) => level < said || now.saturating_sub(at) >= DAY,
        };
        if due {
            self.missing = Some((now, level));
        }
        due.then_some(level)
    }
}

/// Logs what [`Said::due`] decided.
pub(crate) fn log(endpoint: &str, facts: &RotationFacts, level: log::Level, now: i64) {
    let a = &facts.announced;
    let days = a.days_left(now);
    let ca = format!("rotation to CA {:?} (spki sha256 {})", a.subject, a.spki_sha256);
    match &facts.trusted_in {
        Some(file) => log::log!(
            target: "vigil::https",
            level,
            "{endpoint}: {ca} announced for {}: this host trusts it ({}); ready",
            a.by,
            file.display()
        ),
        None if days >= 0 => log::log!(
            target: "vigil::https",
            level,
            "{endpoint}: {ca} announced for {} — this host does not trust it yet; {days} days left: add it to a trust file",
            a.by
        ),
        None => log::log!(
            target: "vigil::https",
            level,
            "{endpoint}: {ca} announced for {} — the date passed {} days ago and this host does not trust it: add it to a trust file",
            a.by,
            -days
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALARM: Duration = Duration::from_secs(7 * 86_400);

    #[test]
    fn missing_warns_daily_then_errors_near_the_date() {
        let mut said = Said::default();
        let t = 1_000_000_000;
        assert_eq!(said.due(false, 20, ALARM, t), Some(log::Level::Warn));
        assert_eq!(said.due(false, 20, ALARM, t + 3600), None, "once a day");
        assert_eq!(said.due(false, 19, ALARM, t + DAY), Some(log::Level::Warn));
        assert_eq!(said.due(false, 7, ALARM, t + DAY + 60), Some(log::Level::Error), "escalates at once");
        assert_eq!(said.due(false, 7, ALARM, t + DAY + 120), None);
        assert_eq!(said.due(true, 6, ALARM, t + 2 * DAY), Some(log::Level::Info));
        assert_eq!(said.due(true, 6, ALARM, t + 3 * DAY), None, "ready is said once");
        assert_eq!(said.due(false, 5, ALARM, t + 3 * DAY), Some(log::Level::Error), "lost again: said again");
    }

    #[test]
    fn announcements_are_checked() {
        let check = |new_ca: NewCa, by: &str| check("https://x/", &Announcement { new_ca, by: by.into() });
        let at = |unix: u64| RotationDate::At(std::time::UNIX_EPOCH + Duration::from_secs(unix));
        let fp = "ab".repeat(32);
        let dated = super::check("https://x/", &Announcement { new_ca: NewCa::SpkiSha256(fp), by: at(1_507_200_000) });
        assert_eq!(dated.map(|a| (a.by, a.by_unix)), Ok(("2017-10-05".to_string(), 1_507_161_600)));
        let fp = "ab".repeat(32);
        let ok = check(NewCa::SpkiSha256(fp.clone()), "2017-10-05").unwrap();
        assert_eq!(ok.spki_sha256, vec!["AB"; 32].join(":"));
        assert_eq!(ok.by_unix, 1_507_161_600);
        assert_eq!(ok.days_left(1_507_161_600 - 86_400 * 12), 12);
        assert_eq!(ok.days_left(1_507_161_600 - 3600), 1);
        assert_eq!(ok.days_left(1_507_161_600 + 86_400), -1);
        for (new_ca, by, needle) in [
            (NewCa::SpkiSha256(fp.clone()), "Oct 5", "not a calendar date"),
            (NewCa::SpkiSha256("abc".into()), "2017-10-05", "not a SHA-256 fingerprint"),
            (NewCa::SpkiSha256("zz".repeat(32)), "2017-10-05", "not a SHA-256 fingerprint"),
        ] {
            let err = check(new_ca, by).unwrap_err();
            assert!(matches!(err, HttpsError::InvalidAnnouncement { .. }), "{err:?}");
            assert!(err.to_string().contains(needle), "{err}");
        }
    }
}
