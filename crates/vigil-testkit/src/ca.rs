//! Certificates for tests, made with rcgen: CAs, intermediates, server and
//! client certificates, with the validity a test needs.

use std::time::{Duration, SystemTime};

/// `days` from now, for a validity bound.
///
/// # Panics
///
/// Panics if the time is out of `SystemTime`'s range.
///
/// ```
/// assert!(vigil_testkit::days_from_now(1) > std::time::SystemTime::now());
/// ```
pub fn days_from_now(days: u64) -> SystemTime {
    SystemTime::now()
        .checked_add(Duration::from_secs(days.saturating_mul(86_400)))
        .expect("a validity bound within SystemTime's range")
}

/// `days` ago.
fn days_ago(days: u64) -> SystemTime {
    SystemTime::now()
        .checked_sub(Duration::from_secs(days.saturating_mul(86_400)))
        .expect("a validity bound within SystemTime's range")
}

/// A CA made with rcgen, able to sign intermediates, server and client
/// certificates.
#[derive(Debug)]
pub struct TestCa {
    /// The CA's own certificate (`cert.pem()` for a trust file).
    pub cert: rcgen::Certificate,
    key: rcgen::KeyPair,
    params: rcgen::CertificateParams,
}

impl TestCa {
    /// A self-signed CA whose common name is `name`.
    ///
    /// # Panics
    ///
    /// Panics if rcgen cannot make the key or the certificate.
    ///
    /// ```
    /// let ca = vigil_testkit::TestCa::new("doc CA");
    /// assert!(ca.cert.pem().starts_with("-----BEGIN CERTIFICATE-----"));
    /// ```
    pub fn new(name: &str) -> TestCa {
        let key = rcgen::KeyPair::generate().expect("key");
        let params = ca_params(name);
        let cert = params.self_signed(&key).expect("self-signed CA");
        TestCa { cert, key, params }
    }

    /// A client certificate (clientAuth) for `name` and its key, signed by
    /// this CA.
    ///
    /// # Panics
    ///
    /// Panics if rcgen cannot make the key or sign the certificate.
    ///
    /// ```
    /// let ca = vigil_testkit::TestCa::new("doc CA");
    /// let (cert, key) = ca.client("shipper");
    /// assert!(cert.pem().starts_with("-----BEGIN CERTIFICATE-----"));
    /// assert!(key.serialize_pem().contains("PRIVATE KEY"));
    /// ```
    pub fn client(&self, name: &str) -> (rcgen::Certificate, rcgen::KeyPair) {
        self.sign_client(name, None)
    }

    /// A CA signed by this one (an intermediate), valid until `not_after`.
    ///
    /// # Panics
    ///
    /// Panics if rcgen cannot make the key or sign the certificate.
    ///
    /// ```
    /// let root = vigil_testkit::TestCa::new("doc root");
    /// let intermediate = root.intermediate("doc intermediate", vigil_testkit::days_from_now(10));
    /// let (leaf, _key) = intermediate.server();
    /// assert_ne!(leaf.der(), intermediate.cert.der());
    /// ```
    pub fn intermediate(&self, name: &str, not_after: SystemTime) -> TestCa {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = ca_params(name);
        params.not_after = not_after.into();
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).expect("intermediate");
        TestCa { cert, key, params }
    }

    /// A server certificate for 127.0.0.1 (serverAuth) and its key, signed by
    /// this CA.
    ///
    /// # Panics
    ///
    /// Panics if rcgen cannot make the key or sign the certificate.
    pub fn server(&self) -> (rcgen::Certificate, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.subject_alt_names = vec![rcgen::SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into())];
        params.distinguished_name.push(rcgen::DnType::CommonName, "127.0.0.1");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        (params.signed_by(&key, &issuer).expect("server cert"), key)
    }

    /// A client certificate like [`TestCa::client`], valid until `not_after`.
    ///
    /// # Panics
    ///
    /// Panics if rcgen cannot make the key or sign the certificate.
    pub fn client_until(&self, name: &str, not_after: SystemTime) -> (rcgen::Certificate, rcgen::KeyPair) {
        self.sign_client(name, Some(not_after))
    }

    /// A client certificate (clientAuth) for `name`, valid until `not_after`
    /// if given, and its key.
    fn sign_client(&self, name: &str, not_after: Option<SystemTime>) -> (rcgen::Certificate, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        if let Some(not_after) = not_after {
            params.not_after = not_after.into();
        }
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        (params.signed_by(&key, &issuer).expect("client cert"), key)
    }

    /// A self-signed CA certificate that expired yesterday (valid from 30
    /// days ago).
    ///
    /// # Panics
    ///
    /// Panics if rcgen cannot make the key or the certificate.
    pub fn expired(name: &str) -> rcgen::Certificate {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.not_before = days_ago(30).into();
        params.not_after = days_ago(1).into();
        params.self_signed(&key).expect("expired CA")
    }
}

/// The parameters of a CA whose common name is `name` (it signs
/// certificates and CRLs).
fn ca_params(name: &str) -> rcgen::CertificateParams {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    params
}
