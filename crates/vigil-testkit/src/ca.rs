//! Certificates for mutual TLS, made with rcgen.

/// A CA made with rcgen, able to sign client certificates.
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
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
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
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        (params.signed_by(&key, &issuer).expect("client cert"), key)
    }
}
