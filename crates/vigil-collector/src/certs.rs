//! Certificate generation (rcgen) and TLS server configuration (rustls, ring).

use std::fs;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::error::CollectorError;
use crate::fault::CertMode;

const DAY: Duration = Duration::from_secs(86_400);
const HOUR: Duration = Duration::from_secs(3_600);
/// The longest validity we put in a certificate, so date arithmetic cannot overflow.
const MAX_VALIDITY: Duration = Duration::from_secs(100 * 365 * 86_400);

/// The name a `WrongName` leaf is issued for.
pub(crate) const WRONG_NAME: &str = "wrong-name.invalid";

/// The ring provider. The collector never relies on a process-default provider.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A CA that signs the collector's server leaves.
pub(crate) struct Authority {
    issuer: Issuer<'static, KeyPair>,
    generation: u64,
    pem_path: PathBuf,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("generation", &self.generation)
            .field("pem_path", &self.pem_path)
            .finish_non_exhaustive()
    }
}

impl Authority {
    /// Generates CA number `generation` and writes its certificate to
    /// `dir/ca-<generation>.pem`.
    pub(crate) fn generate(dir: &Path, generation: u64) -> Result<Authority, CollectorError> {
        let what = || format!("CA generation {generation}");
        let cert_err = |e: rcgen::Error| CollectorError::Certificate { what: what(), reason: e.to_string() };

        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::OrganizationName, "vigil-collector");
        params
            .distinguished_name
            .push(DnType::CommonName, format!("vigil-collector test CA {generation} ({})", unique_tag()));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let now = SystemTime::now();
        let _ = set_validity(&mut params, now.checked_sub(60 * DAY).unwrap_or(now), now + 3650 * DAY);

        let key = KeyPair::generate().map_err(cert_err)?;
        let cert = params.self_signed(&key).map_err(cert_err)?;
        let pem_path = dir.join(format!("ca-{generation}.pem"));
        write_atomically(&pem_path, cert.pem().as_bytes())?;
        log::info!(
            target: crate::TARGET,
            "generated CA generation {generation}, written to {}",
            pem_path.display()
        );
        Ok(Authority { issuer: Issuer::new(params, key), generation, pem_path })
    }

    /// Where this CA's PEM was written.
    pub(crate) fn pem_path(&self) -> &Path {
        &self.pem_path
    }

    /// Which generation this CA is (0 for the first, +1 per rotation).
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Issues a server leaf for `mode`, signed by this CA.
    pub(crate) fn issue_leaf(&self, mode: CertMode) -> Result<Leaf, CollectorError> {
        let what = || format!("server leaf ({mode}) from CA generation {}", self.generation);
        let cert_err = |e: rcgen::Error| CollectorError::Certificate { what: what(), reason: e.to_string() };

        let now = SystemTime::now();
        let (names, not_before, not_after) = match mode {
            CertMode::Valid => (good_names(), now - HOUR, now + 365 * DAY),
            CertMode::Expired => (good_names(), now - 30 * DAY, now - DAY),
            CertMode::WrongName => {
                (vec![SanType::DnsName(WRONG_NAME.try_into().map_err(cert_err)?)], now - HOUR, now + 365 * DAY)
            }
            CertMode::ExpiresIn(d) => (good_names(), now - HOUR, now + d.min(MAX_VALIDITY)),
        };
        let common_name = match mode {
            CertMode::WrongName => WRONG_NAME,
            _ => "localhost",
        };

        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::OrganizationName, "vigil-collector");
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.subject_alt_names = names;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let not_after = set_validity(&mut params, not_before, not_after);

        let key = KeyPair::generate().map_err(cert_err)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(cert_err)?;
        log::debug!(
            target: crate::TARGET,
            "issued server leaf ({mode}) from CA generation {}",
            self.generation
        );
        Ok(Leaf {
            cert: cert.der().clone(),
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            not_after,
            pem: cert.pem(),
        })
    }
}

/// A server certificate and its key.
pub(crate) struct Leaf {
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    not_after: SystemTime,
    pem: String,
}

impl std::fmt::Debug for Leaf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leaf").field("not_after", &self.not_after).finish_non_exhaustive()
    }
}

impl Leaf {
    /// The end of the validity period (second precision in the certificate).
    pub(crate) fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// The certificate as PEM.
    pub(crate) fn pem(&self) -> &str {
        &self.pem
    }

    /// Builds a TLS server configuration presenting this leaf.
    pub(crate) fn server_config(&self, client_auth: Option<&ClientAuth>) -> Result<Arc<ServerConfig>, CollectorError> {
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| CollectorError::Tls { phase: "protocol versions", reason: e.to_string() })?;
        let builder = match client_auth {
            None => builder.with_no_client_auth(),
            Some(auth) => builder.with_client_cert_verifier(auth.verifier.clone()),
        };
        let config = builder
            .with_single_cert(vec![self.cert.clone()], self.key.clone_key())
            .map_err(|e| CollectorError::Tls { phase: "server certificate", reason: e.to_string() })?;
        Ok(Arc::new(config))
    }
}

/// Client certificate verification (mTLS), from a CA bundle.
#[derive(Clone)]
pub(crate) struct ClientAuth {
    verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    path: PathBuf,
    certificates: usize,
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAuth")
            .field("path", &self.path)
            .field("certificates", &self.certificates)
            .finish_non_exhaustive()
    }
}

impl ClientAuth {
    /// Reads the PEM bundle at `path` and builds a verifier that requires a
    /// client certificate chaining to one of its certificates.
    pub(crate) fn from_pem_file(path: &Path) -> Result<ClientAuth, CollectorError> {
        let bytes = fs::read(path).map_err(|source| CollectorError::ReadFile { path: path.to_owned(), source })?;
        let what = || format!("client-auth CA bundle {}", path.display());
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&bytes) {
            let cert = cert.map_err(|e| CollectorError::Certificate { what: what(), reason: e.to_string() })?;
            roots.add(cert).map_err(|e| CollectorError::Certificate { what: what(), reason: e.to_string() })?;
        }
        let certificates = roots.len();
        if certificates == 0 {
            return Err(CollectorError::Certificate { what: what(), reason: "no certificates in the file".into() });
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| CollectorError::Tls { phase: "client verifier", reason: e.to_string() })?;
        log::info!(
            target: crate::TARGET,
            "requiring client certificates: {certificates} CA certificate(s) from {}",
            path.display()
        );
        Ok(ClientAuth { verifier, path: path.to_owned(), certificates })
    }
}

fn good_names() -> Vec<SanType> {
    vec![
        SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        SanType::DnsName("localhost".try_into().expect("\"localhost\" is a valid IA5 string")),
    ]
}

/// Sets `not_before` and `not_after` from `SystemTime`s, without naming the
/// `time` crate: rcgen's epoch plus a std `Duration`, in whole seconds as
/// X.509 stores them. Returns `not_after` as written.
fn set_validity(params: &mut CertificateParams, not_before: SystemTime, not_after: SystemTime) -> SystemTime {
    let since_epoch = |t: SystemTime| {
        let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().min(MAX_VALIDITY * 2).as_secs();
        Duration::from_secs(secs)
    };
    params.not_before = rcgen::date_time_ymd(1970, 1, 1) + since_epoch(not_before);
    params.not_after = rcgen::date_time_ymd(1970, 1, 1) + since_epoch(not_after);
    UNIX_EPOCH + since_epoch(not_after)
}

/// A tag that tells CAs of different collectors apart in logs and issuer names.
fn unique_tag() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    format!("pid {} #{} {nanos:09}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a
/// reader never sees half a file.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), CollectorError> {
    let err = |source| CollectorError::WriteFile { path: path.to_owned(), source };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = fs::File::create(&tmp).map_err(err)?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(err)?;
    drop(file);
    fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vigil-collector-certs-{name}-{}", unique_tag().replace(' ', "-")));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn ca_pem_is_written_and_parses() {
        let dir = temp_dir("ca");
        let ca = Authority::generate(&dir, 4).unwrap();
        assert_eq!(ca.generation(), 4);
        assert_eq!(ca.pem_path(), dir.join("ca-4.pem"));
        let pem = fs::read(ca.pem_path()).unwrap();
        let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem).collect::<Result<_, _>>().unwrap();
        assert_eq!(certs.len(), 1);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn leaves_carry_the_requested_validity() {
        let dir = temp_dir("leaf");
        let ca = Authority::generate(&dir, 0).unwrap();
        let now = SystemTime::now();
        let expired = ca.issue_leaf(CertMode::Expired).unwrap();
        assert!(expired.not_after() < now);
        let soon = ca.issue_leaf(CertMode::ExpiresIn(10 * DAY)).unwrap();
        let left = soon.not_after().duration_since(now).unwrap();
        assert!(left > 9 * DAY && left <= 10 * DAY + HOUR, "{left:?}");
        let forever = ca.issue_leaf(CertMode::ExpiresIn(Duration::MAX)).unwrap();
        assert!(forever.not_after() > now + 365 * DAY);
        assert!(ca.issue_leaf(CertMode::WrongName).unwrap().pem().starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(expired.server_config(None).is_ok());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn client_auth_rejects_an_empty_bundle() {
        let dir = temp_dir("client-auth");
        let empty = dir.join("empty.pem");
        fs::write(&empty, "not a certificate\n").unwrap();
        let err = ClientAuth::from_pem_file(&empty).unwrap_err();
        assert!(err.to_string().contains("no certificates"), "{err}");
        let missing = ClientAuth::from_pem_file(&dir.join("missing.pem")).unwrap_err();
        assert!(matches!(missing, CollectorError::ReadFile { .. }), "{missing}");
        let ca = Authority::generate(&dir, 0).unwrap();
        assert!(ClientAuth::from_pem_file(ca.pem_path()).is_ok());
        fs::remove_dir_all(dir).unwrap();
    }
}
