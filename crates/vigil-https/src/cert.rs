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
        })
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
    }
}
