//! What the sink records about a server certificate.

use sha2::{Digest, Sha256};

/// The facts about one X.509 certificate that matter for operating a sink:
/// who it is for, who issued it, when it expires and its fingerprint.
///
/// Taken from the leaf certificate the server presented in a real TLS
/// handshake.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[non_exhaustive]
pub struct CertificateInfo {
    /// The subject distinguished name, e.g. `CN=127.0.0.1`.
    pub subject: String,
    /// The issuer distinguished name, e.g. `CN=Vigil Collector CA`.
    pub issuer: String,
    /// notAfter as RFC 3339 in UTC, e.g. `2030-01-01T00:00:00Z`.
    pub not_after: String,
    /// notAfter as seconds since the Unix epoch.
    pub not_after_unix: i64,
    /// The SHA-256 fingerprint of the DER encoding: upper-case hex pairs
    /// separated by colons, as `openssl x509 -fingerprint -sha256` prints it.
    pub sha256: String,
    /// The SHA-256 fingerprint of the subjectPublicKeyInfo (the key, not the
    /// certificate: it survives a re-issue of the same key), in the same form.
    pub spki_sha256: String,
}

impl CertificateInfo {
    /// Parses a DER-encoded certificate; the error is the parser's message.
    pub(crate) fn from_der(der: &[u8]) -> Result<CertificateInfo, String> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
        let not_after_unix = cert.validity().not_after.timestamp();
        Ok(CertificateInfo {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            not_after: rfc3339(not_after_unix),
            not_after_unix,
            sha256: fingerprint(der),
            spki_sha256: fingerprint(cert.public_key().raw),
        })
    }

    /// Whole days from `now_unix` until notAfter, rounded down; negative once expired.
    pub fn days_left(&self, now_unix: i64) -> i64 {
        self.seconds_left(now_unix).div_euclid(86_400)
    }

    /// Seconds from `now_unix` until notAfter; negative once expired.
    pub fn seconds_left(&self, now_unix: i64) -> i64 {
        self.not_after_unix.saturating_sub(now_unix)
    }
}

/// The SHA-256 fingerprint of `der`, as colon-separated upper-case hex.
pub(crate) fn fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    let mut out = String::with_capacity(digest.len() * 3);
    for (i, byte) in digest.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push_str(&format!("{byte:02X}"));
    }
    out
}

/// What links a certificate to its issuer, beyond the names: its own
/// subjectKeyIdentifier and its authorityKeyIdentifier, when present.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KeyIds {
    pub(crate) subject: Option<Vec<u8>>,
    pub(crate) authority: Option<Vec<u8>>,
    /// Whether basicConstraints says CA:TRUE.
    pub(crate) is_ca: bool,
}

impl KeyIds {
    /// Reads the key identifiers of a DER certificate (empty if it does not parse).
    pub(crate) fn of(der: &[u8]) -> KeyIds {
        use x509_parser::extensions::ParsedExtension;
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
            return KeyIds::default();
        };
        let mut ids = KeyIds::default();
        for ext in cert.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(id) => ids.subject = Some(id.0.to_vec()),
                ParsedExtension::AuthorityKeyIdentifier(aki) => {
                    ids.authority = aki.key_identifier.as_ref().map(|id| id.0.to_vec());
                }
                ParsedExtension::BasicConstraints(bc) => ids.is_ca = bc.ca,
                _ => {}
            }
        }
        ids
    }
}

/// Parses `YYYY-MM-DD` into seconds since the Unix epoch at 00:00 UTC.
pub(crate) fn parse_date(text: &str) -> Option<i64> {
    let mut parts = text.trim().splitn(3, '-');
    let year: i64 = parts.next()?.parse().ok()?;
    let month: u32 = parts.next()?.parse().ok()?;
    let day: u32 = parts.next()?.parse().ok()?;
    if !(1..=9999).contains(&year) || !(1..=12).contains(&month) || day == 0 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    // Reject 2023-02-30 and the like: the day must round-trip.
    (civil_from_days(days) == (year, month, day)).then_some(days.saturating_mul(86_400))
}

/// Howard Hinnant's `days_from_civil`: (year, month, day) to days since 1970-01-01.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Formats seconds since the Unix epoch as RFC 3339 UTC (`YYYY-MM-DDTHH:MM:SSZ`).
pub(crate) fn rfc3339(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", secs / 3600, (secs / 60) % 60, secs % 60)
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to (year, month, day).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The current time as seconds since the Unix epoch (0 if the clock is before 1970).
pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn rfc3339_agrees_with_httpdate_for_many_days() {
        for day in (0..40_000i64).step_by(37) {
            let unix = day * 86_400 + 3_661;
            let http = httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix as u64));
            let parsed = httpdate::parse_http_date(&http).unwrap();
            let back = parsed.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
            assert_eq!(back, unix);
            // Same calendar day in both renderings.
            let ours = rfc3339(unix);
            let (y, m, d) = civil_from_days(day);
            assert!(ours.starts_with(&format!("{y:04}-{m:02}-{d:02}T01:01:01Z")));
            assert!(http.contains(&format!(" {y:04} ")), "{http} vs {ours}");
        }
    }

    #[test]
    fn dates_parse_and_round_trip() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("2017-10-05"), Some(1_507_161_600));
        assert_eq!(parse_date("2000-02-29").map(rfc3339), Some("2000-02-29T00:00:00Z".into()));
        for bad in ["", "2017-10", "2017-13-01", "2017-02-30", "2017-10-05x", "tomorrow", "0-01-01"] {
            assert_eq!(parse_date(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn fingerprint_is_colon_separated_upper_hex() {
        let fp = fingerprint(b"abc");
        assert_eq!(
            fp,
            "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD"
        );
    }

    #[test]
    fn from_der_rejects_garbage() {
        let err = CertificateInfo::from_der(&[0x30, 0x03, 0x01, 0x01, 0xff]).unwrap_err();
        assert!(!err.is_empty());
    }

    #[test]
    fn from_der_reads_a_generated_certificate() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, "Vigil Test Leaf");
        params.not_after = rcgen::date_time_ymd(2031, 5, 17);
        let cert = params.self_signed(&key).unwrap();
        let info = CertificateInfo::from_der(cert.der()).unwrap();
        assert_eq!(info.subject, "CN=Vigil Test Leaf");
        assert_eq!(info.issuer, "CN=Vigil Test Leaf");
        assert_eq!(info.not_after, "2031-05-17T00:00:00Z");
        assert_eq!(info.sha256, fingerprint(cert.der()));
        assert_eq!(info.seconds_left(info.not_after_unix - 10), 10);
        assert_eq!(info.days_left(info.not_after_unix - 86_400 - 10), 1);
        assert_eq!(info.days_left(info.not_after_unix + 10), -1);
        assert_eq!(info.spki_sha256, fingerprint(&rcgen::PublicKeyData::subject_public_key_info(&key)));
    }
}
