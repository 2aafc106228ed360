//! Loading the trust set and the client identity from PEM files.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{PemObject, SectionKind};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::cert::{CertificateInfo, KeyIds};
use crate::error::{HttpsError, PemProblem, PemRole};

/// A validated set of trust anchors, and where it came from.
#[derive(Debug, Clone)]
pub(crate) struct TrustSet {
    pub(crate) roots: Arc<RootCertStore>,
    /// Certificates loaded from each file, in configuration order.
    pub(crate) per_file: Vec<(PathBuf, usize)>,
    /// Whether the webpki roots were added.
    pub(crate) webpki: bool,
    /// The certificates from the trust files, in file order (not the webpki roots).
    pub(crate) anchors: Vec<Anchor>,
}

/// One CA certificate from a trust file.
#[derive(Debug, Clone)]
pub(crate) struct Anchor {
    pub(crate) file: PathBuf,
    pub(crate) info: CertificateInfo,
    pub(crate) ids: KeyIds,
}

impl TrustSet {
    /// Certificates loaded from files (not counting webpki roots).
    pub(crate) fn file_certificates(&self) -> usize {
        self.per_file.iter().map(|(_, n)| n).sum()
    }

    /// A one-line summary for logs: `3 certificates from a.pem (2), b.pem (1)`.
    pub(crate) fn describe(&self) -> String {
        let files: Vec<String> = self.per_file.iter().map(|(p, n)| format!("{} ({n})", p.display())).collect();
        let mut out = format!("{} certificates from {}", self.file_certificates(), files.join(", "));
        if files.is_empty() {
            out = "no trust files".to_string();
        }
        if self.webpki {
            out.push_str(&format!(" plus {} webpki roots", webpki_roots::TLS_SERVER_ROOTS.len()));
        }
        out
    }
}

/// Reads every PEM section of `path`.
fn read_sections(path: &Path, role: PemRole) -> Result<Vec<(SectionKind, Vec<u8>)>, HttpsError> {
    let pem_err = |problem| HttpsError::Pem { path: path.to_path_buf(), role, problem };
    let bytes =
        std::fs::read(path).map_err(|e| pem_err(PemProblem::Unreadable { kind: e.kind(), reason: e.to_string() }))?;
    <(SectionKind, Vec<u8>)>::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(PemProblem::Malformed { reason: e.to_string() }))
}

/// A human name for a PEM section kind, for error messages.
fn kind_name(kind: SectionKind) -> &'static str {
    match kind {
        SectionKind::Certificate => "certificate",
        SectionKind::PublicKey => "public key",
        SectionKind::RsaPrivateKey | SectionKind::PrivateKey | SectionKind::EcPrivateKey => "private key",
        SectionKind::Crl => "certificate revocation list",
        SectionKind::Csr => "certificate signing request",
        SectionKind::EchConfigList => "ECH configuration",
        _ => "non-certificate item",
    }
}

/// Loads the certificates of one trust file, validating each: every one must
/// be an X.509 CA certificate (basicConstraints CA:TRUE).
/// The certificates of a PEM file, in order; other items are skipped.
pub(crate) fn read_certificates(path: &Path, role: PemRole) -> Result<Vec<CertificateDer<'static>>, HttpsError> {
    Ok(read_sections(path, role)?
        .into_iter()
        .filter(|(kind, _)| *kind == SectionKind::Certificate)
        .map(|(_, der)| CertificateDer::from(der))
        .collect())
}

fn load_trust_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, HttpsError> {
    let pem_err = |problem| HttpsError::Pem { path: path.to_path_buf(), role: PemRole::Trust, problem };
    let mut certs = Vec::new();
    for (kind, der) in read_sections(path, PemRole::Trust)? {
        if kind != SectionKind::Certificate {
            return Err(pem_err(PemProblem::WrongItem { found: kind_name(kind) }));
        }
        let index = certs.len();
        let (_, cert) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| pem_err(PemProblem::InvalidCertificate { index, reason: e.to_string() }))?;
        // An end-entity certificate as an anchor would let its key vouch for
        // any name; webpki does not check anchors, so it is checked here.
        let is_ca = cert.basic_constraints().ok().flatten().is_some_and(|bc| bc.value.ca);
        if !is_ca {
            return Err(pem_err(PemProblem::NotACertificateAuthority { index, subject: cert.subject().to_string() }));
        }
        certs.push(CertificateDer::from(der));
    }
    if certs.is_empty() {
        return Err(pem_err(PemProblem::Empty));
    }
    Ok(certs)
}

/// Loads and validates the trust set from `files`, optionally with the webpki roots.
///
/// Fails on the first bad file; the caller keeps its last good set.
pub(crate) fn load_trust(files: &[PathBuf], webpki: bool) -> Result<TrustSet, HttpsError> {
    let mut roots = RootCertStore::empty();
    let mut per_file = Vec::with_capacity(files.len());
    let mut anchors = Vec::new();
    for path in files {
        let certs = load_trust_file(path)?;
        let count = certs.len();
        for (index, cert) in certs.into_iter().enumerate() {
            // load_trust_file parsed every certificate already.
            if let Ok(info) = CertificateInfo::from_der(&cert) {
                anchors.push(Anchor { file: path.clone(), info, ids: KeyIds::of(&cert) });
            }
            roots.add(cert).map_err(|e| HttpsError::Pem {
                path: path.clone(),
                role: PemRole::Trust,
                problem: PemProblem::InvalidCertificate { index, reason: e.to_string() },
            })?;
        }
        per_file.push((path.clone(), count));
    }
    if webpki {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    Ok(TrustSet { roots: Arc::new(roots), per_file, webpki, anchors })
}

/// A client certificate chain and the matching private key, checked.
#[derive(Debug)]
pub(crate) struct ClientIdentity {
    pub(crate) chain: Vec<CertificateDer<'static>>,
    pub(crate) key: PrivateKeyDer<'static>,
}

impl Clone for ClientIdentity {
    fn clone(&self) -> Self {
        ClientIdentity { chain: self.chain.clone(), key: self.key.clone_key() }
    }
}

/// Loads the client chain and key and checks that the key belongs to the leaf.
pub(crate) fn load_identity(
    chain_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<ClientIdentity, HttpsError> {
    // The chain file may also hold the key (a combined PEM); keys there are skipped.
    let mut chain = Vec::new();
    for (kind, der) in read_sections(chain_path, PemRole::ClientChain)? {
        if kind == SectionKind::Certificate {
            chain.push(CertificateDer::from(der));
        }
    }
    let chain_err = |problem| HttpsError::Pem { path: chain_path.to_path_buf(), role: PemRole::ClientChain, problem };
    if chain.is_empty() {
        return Err(chain_err(PemProblem::Empty));
    }
    for (index, cert) in chain.iter().enumerate() {
        if let Err(reason) = x509_parser::parse_x509_certificate(cert) {
            return Err(chain_err(PemProblem::InvalidCertificate { index, reason: reason.to_string() }));
        }
    }

    // The key file may also hold certificates (a combined PEM); those are skipped.
    let key_err = |problem| HttpsError::Pem { path: key_path.to_path_buf(), role: PemRole::ClientKey, problem };
    let mut keys: Vec<PrivateKeyDer<'static>> = read_sections(key_path, PemRole::ClientKey)?
        .into_iter()
        .filter_map(|(kind, der)| PrivateKeyDer::from_pem(kind, der))
        .collect();
    let key = match keys.len() {
        0 => return Err(key_err(PemProblem::Empty)),
        1 => keys.remove(0),
        count => return Err(key_err(PemProblem::SeveralKeys { count })),
    };
    let signing_key = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| key_err(PemProblem::UnsupportedKey { reason: e.to_string() }))?;
    let certified = CertifiedKey::new(chain.clone(), signing_key);
    match certified.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(HttpsError::KeyMismatch { chain: chain_path.to_path_buf(), key: key_path.to_path_buf() });
        }
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            // The key cannot tell its public half; rustls checks again when it signs.
            log::debug!(
                target: "vigil::https",
                "client key {} cannot be checked against {}",
                key_path.display(),
                chain_path.display()
            );
        }
        Err(e) => {
            return Err(chain_err(PemProblem::InvalidCertificate { index: 0, reason: e.to_string() }));
        }
    }
    Ok(ClientIdentity { chain, key })
}

/// What a file looked like the last time it was read: enough to notice a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileStamp {
    modified: Option<SystemTime>,
    len: Option<u64>,
}

impl FileStamp {
    /// Stats `path`. A missing or unreadable file gets a stamp of its own, so
    /// its reappearance counts as a change.
    pub(crate) fn of(path: &Path) -> FileStamp {
        match std::fs::metadata(path) {
            Ok(meta) => FileStamp { modified: meta.modified().ok(), len: Some(meta.len()) },
            Err(_) => FileStamp { modified: None, len: None },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    use vigil_testkit::{TempDir, TestCa};

    fn ring() -> CryptoProvider {
        rustls::crypto::ring::default_provider()
    }

    fn pem_problem(err: HttpsError) -> (PathBuf, PemRole, PemProblem) {
        match err {
            HttpsError::Pem { path, role, problem } => (path, role, problem),
            other => panic!("expected a PEM error, got {other:?}"),
        }
    }

    #[test]
    fn loads_several_trust_files() {
        let dir = TempDir::new("several");
        let a = TestCa::new("CA A").cert;
        let b = TestCa::new("CA B").cert;
        let c = TestCa::new("CA C").cert;
        let one = dir.write("one.pem", a.pem());
        let two = dir.write("two.pem", format!("{}\n{}", b.pem(), c.pem()));
        let set = load_trust(&[one.clone(), two.clone()], false).unwrap();
        assert_eq!(set.roots.len(), 3);
        assert_eq!(set.file_certificates(), 3);
        assert_eq!(set.per_file, vec![(one.clone(), 1), (two.clone(), 2)]);
        let described = set.describe();
        assert!(described.starts_with("3 certificates from "), "{described}");
        assert!(described.contains(&format!("{} (2)", two.display())), "{described}");
    }

    #[test]
    fn webpki_roots_are_added_on_request() {
        let dir = TempDir::new("webpki");
        let a = TestCa::new("CA A").cert;
        let one = dir.write("one.pem", a.pem());
        let set = load_trust(std::slice::from_ref(&one), true).unwrap();
        assert_eq!(set.roots.len(), 1 + webpki_roots::TLS_SERVER_ROOTS.len());
        assert!(set.describe().contains("webpki roots"));
        let only_webpki = load_trust(&[], true).unwrap();
        assert_eq!(only_webpki.roots.len(), webpki_roots::TLS_SERVER_ROOTS.len());
    }

    #[test]
    fn empty_trust_file_is_an_error() {
        let dir = TempDir::new("empty");
        let path = dir.write("empty.pem", "");
        let (p, role, problem) = pem_problem(load_trust(std::slice::from_ref(&path), false).unwrap_err());
        assert_eq!((p.as_path(), role, problem), (path.as_path(), PemRole::Trust, PemProblem::Empty));
        let text = load_trust(std::slice::from_ref(&path), false).unwrap_err().to_string();
        assert_eq!(text, format!("trust file {} contains no usable item", path.display()));

        // Text without any PEM section is just as empty.
        let prose = dir.write("prose.pem", "this is not a certificate\n");
        let (_, _, problem) = pem_problem(load_trust(&[prose], false).unwrap_err());
        assert_eq!(problem, PemProblem::Empty);
    }

    #[test]
    fn malformed_trust_file_is_an_error() {
        let dir = TempDir::new("malformed");
        let bad_base64 =
            dir.write("bad.pem", "-----BEGIN CERTIFICATE-----\nnot*base64*at*all!\n-----END CERTIFICATE-----\n");
        let err = load_trust(std::slice::from_ref(&bad_base64), false).unwrap_err();
        let text = err.to_string();
        let (_, role, problem) = pem_problem(err);
        assert_eq!(role, PemRole::Trust);
        assert!(matches!(problem, PemProblem::Malformed { .. }), "{problem:?}");
        assert!(text.contains("is not valid PEM"), "{text}");
        assert!(text.contains(&bad_base64.display().to_string()), "{text}");

        let a = TestCa::new("CA A").cert;
        let truncated_pem = a.pem();
        let truncated = dir.write("truncated.pem", &truncated_pem[..truncated_pem.len() - 30]);
        let (_, _, problem) = pem_problem(load_trust(&[truncated], false).unwrap_err());
        assert!(matches!(problem, PemProblem::Malformed { .. }), "{problem:?}");
    }

    #[test]
    fn certificate_that_is_not_x509_is_an_error() {
        let dir = TempDir::new("notx509");
        // Valid base64 of bytes that are not DER.
        let path = dir.write("junk.pem", "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n");
        let err = load_trust(std::slice::from_ref(&path), false).unwrap_err();
        let text = err.to_string();
        let (_, _, problem) = pem_problem(err);
        assert!(matches!(problem, PemProblem::InvalidCertificate { index: 0, .. }), "{problem:?}");
        assert!(text.contains("certificate #0 is not a valid X.509 certificate"), "{text}");
    }

    #[test]
    fn key_in_trust_file_is_an_error() {
        let dir = TempDir::new("wrongitem");
        let a = TestCa::new("CA A").cert;
        let key = rcgen::KeyPair::generate().unwrap();
        let path = dir.write("mixed.pem", format!("{}\n{}", a.pem(), key.serialize_pem()));
        let err = load_trust(std::slice::from_ref(&path), false).unwrap_err();
        let text = err.to_string();
        let (_, _, problem) = pem_problem(err);
        assert_eq!(problem, PemProblem::WrongItem { found: "private key" });
        assert_eq!(text, format!("trust file {} contains a private key, which does not belong there", path.display()));
    }

    #[test]
    fn unreadable_trust_file_is_an_error() {
        let dir = TempDir::new("unreadable");
        let missing = dir.path("missing.pem");
        let err = load_trust(std::slice::from_ref(&missing), false).unwrap_err();
        let text = err.to_string();
        let (path, _, problem) = pem_problem(err);
        assert_eq!(path, missing);
        assert!(matches!(problem, PemProblem::Unreadable { kind: io::ErrorKind::NotFound, .. }), "{problem:?}");
        assert!(text.starts_with(&format!("trust file {} cannot be read", missing.display())), "{text}");

        // A directory cannot be read as a file either.
        let (_, _, problem) =
            pem_problem(load_trust(std::slice::from_ref(&dir.root().to_path_buf()), false).unwrap_err());
        assert!(matches!(problem, PemProblem::Unreadable { .. }), "{problem:?}");
    }

    #[test]
    fn end_entity_certificates_are_not_anchors() {
        let dir = TempDir::new("notca");
        let issuer = TestCa::new("Issuer CA");
        let (leaf, _) = issuer.client("vigil client");
        let path = dir.write("mixed.pem", format!("{}\n{}", issuer.cert.pem(), leaf.pem()));
        let err = load_trust(std::slice::from_ref(&path), false).unwrap_err();
        let text = err.to_string();
        let (_, role, problem) = pem_problem(err);
        assert_eq!(role, PemRole::Trust);
        assert_eq!(problem, PemProblem::NotACertificateAuthority { index: 1, subject: "CN=vigil client".into() });
        assert!(text.contains("certificate #1 (CN=vigil client) is not a CA certificate"), "{text}");
        // A CA alone is fine.
        let ca_only = dir.write("ca.pem", issuer.cert.pem());
        assert_eq!(load_trust(&[ca_only], false).unwrap().roots.len(), 1);
    }

    #[test]
    fn first_bad_file_fails_the_whole_set() {
        let dir = TempDir::new("firstbad");
        let a = TestCa::new("CA A").cert;
        let good = dir.write("good.pem", a.pem());
        let bad = dir.write("bad.pem", "");
        let (path, _, _) = pem_problem(load_trust(&[good, bad.clone()], false).unwrap_err());
        assert_eq!(path, bad);
    }

    #[test]
    fn client_identity_loads_when_key_matches() {
        let dir = TempDir::new("identity");
        let client_ca = TestCa::new("Client CA");
        let (leaf, key) = client_ca.client("vigil client");
        let chain = dir.write("chain.pem", format!("{}\n{}", leaf.pem(), client_ca.cert.pem()));
        let key_path = dir.write("key.pem", key.serialize_pem());
        let identity = load_identity(&chain, &key_path, &ring()).unwrap();
        assert_eq!(identity.chain.len(), 2);

        // A combined file works for both roles.
        let combined = dir.write("combined.pem", format!("{}\n{}", leaf.pem(), key.serialize_pem()));
        let identity = load_identity(&combined, &combined, &ring()).unwrap();
        assert_eq!(identity.chain.len(), 1);
    }

    #[test]
    fn client_key_mismatch_names_both_files() {
        let dir = TempDir::new("mismatch");
        let client_ca = TestCa::new("Client CA");
        let (leaf, _right_key) = client_ca.client("vigil client");
        let wrong_key = rcgen::KeyPair::generate().unwrap();
        let chain = dir.write("chain.pem", leaf.pem());
        let key_path = dir.write("key.pem", wrong_key.serialize_pem());
        let err = load_identity(&chain, &key_path, &ring()).unwrap_err();
        assert_eq!(err, HttpsError::KeyMismatch { chain: chain.clone(), key: key_path.clone() });
        assert_eq!(
            err.to_string(),
            format!("client key {} does not match the leaf certificate of {}", key_path.display(), chain.display())
        );
    }

    #[test]
    fn client_identity_file_errors() {
        let dir = TempDir::new("identityerrors");
        let client_ca = TestCa::new("Client CA");
        let (leaf, key) = client_ca.client("vigil client");
        let chain = dir.write("chain.pem", leaf.pem());
        let key_path = dir.write("key.pem", key.serialize_pem());

        // No certificate in the chain file.
        let (p, role, problem) = pem_problem(load_identity(&key_path, &key_path, &ring()).unwrap_err());
        assert_eq!((p, role, problem), (key_path.clone(), PemRole::ClientChain, PemProblem::Empty));

        // No key in the key file.
        let (p, role, problem) = pem_problem(load_identity(&chain, &chain, &ring()).unwrap_err());
        assert_eq!((p, role, problem), (chain.clone(), PemRole::ClientKey, PemProblem::Empty));

        // Two keys.
        let other = rcgen::KeyPair::generate().unwrap();
        let two = dir.write("two.pem", format!("{}\n{}", key.serialize_pem(), other.serialize_pem()));
        let (_, _, problem) = pem_problem(load_identity(&chain, &two, &ring()).unwrap_err());
        assert_eq!(problem, PemProblem::SeveralKeys { count: 2 });

        // Missing key file.
        let missing = dir.path("nope.pem");
        let (p, role, problem) = pem_problem(load_identity(&chain, &missing, &ring()).unwrap_err());
        assert_eq!((p, role), (missing, PemRole::ClientKey));
        assert!(matches!(problem, PemProblem::Unreadable { kind: io::ErrorKind::NotFound, .. }));

        // A key that is valid PEM but garbage inside.
        let junk_key =
            dir.write("junk-key.pem", "-----BEGIN PRIVATE KEY-----\naGVsbG8gd29ybGQ=\n-----END PRIVATE KEY-----\n");
        let (_, role, problem) = pem_problem(load_identity(&chain, &junk_key, &ring()).unwrap_err());
        assert_eq!(role, PemRole::ClientKey);
        assert!(matches!(problem, PemProblem::UnsupportedKey { .. }), "{problem:?}");
    }

    #[test]
    fn file_stamp_notices_changes_and_disappearance() {
        let dir = TempDir::new("stamp");
        let path = dir.write("f.pem", "a");
        let first = FileStamp::of(&path);
        assert_eq!(first, FileStamp::of(&path));
        std::fs::write(&path, "ab").unwrap();
        assert_ne!(first, FileStamp::of(&path));
        std::fs::remove_file(&path).unwrap();
        assert_eq!(FileStamp::of(&path), FileStamp { modified: None, len: None });
    }
}
