//! The TLS layer: a recording certificate verifier and a ureq connector that
//! performs the rustls handshake with our own `ClientConfig`.
//!
//! ureq's `TlsConfig` only takes root certificates, not a verifier, and it may
//! fall back to a process-wide crypto provider. So this crate plugs its own
//! connector into ureq's transport chain: TCP from ureq's `TcpConnector`, then
//! a rustls `ClientConnection` built from a `ClientConfig` on the *ring*
//! provider whose verifier wraps a `WebPkiServerVerifier` over the current
//! trust set and remembers the leaf it was shown.

use std::fmt;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct, StreamOwned};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use ureq::unversioned::transport::time::{Duration as UreqDuration, Instant as UreqInstant};
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, LazyBuffers, NextTimeout, Transport, TransportAdapter,
};

use crate::cert::CertificateInfo;
use crate::cert::KeyIds;
use crate::error::{CertificateProblem, HttpsError, Phase};
use crate::pem::{Anchor, ClientIdentity, TrustSet};
use crate::stats::HttpsStats;

/// A server certificate verifier that delegates to webpki and remembers the
/// chain it was shown (leaf first, then the intermediates as served),
/// accepted or not.
#[derive(Debug)]
pub(crate) struct RecordingVerifier {
    inner: Arc<WebPkiServerVerifier>,
    presented: Mutex<Vec<CertificateDer<'static>>>,
}

impl RecordingVerifier {
    /// Takes the chain shown in the last handshake, empty if none.
    fn take_presented(&self) -> Vec<CertificateDer<'static>> {
        std::mem::take(&mut *self.presented.lock())
    }
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.presented.lock() =
            std::iter::once(end_entity).chain(intermediates).map(|c| c.clone().into_owned()).collect();
        self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.inner.requires_raw_public_keys()
    }

    fn root_hint_subjects(&self) -> Option<&[rustls::DistinguishedName]> {
        self.inner.root_hint_subjects()
    }
}

/// Builds the rustls client configuration for a trust set and an optional identity.
///
/// Session resumption is off, so every new connection performs a full
/// handshake and its certificate is verified against the current trust set
/// and recorded.
pub(crate) fn client_config(
    endpoint: &str,
    provider: &Arc<CryptoProvider>,
    trust: &TrustSet,
    identity: Option<&ClientIdentity>,
) -> Result<(Arc<ClientConfig>, Arc<RecordingVerifier>), HttpsError> {
    let setup = |reason: String| HttpsError::TlsSetup { endpoint: endpoint.to_string(), reason };
    let webpki = WebPkiServerVerifier::builder_with_provider(trust.roots.clone(), provider.clone())
        .build()
        .map_err(|e| setup(e.to_string()))?;
    let verifier = Arc::new(RecordingVerifier { inner: webpki, presented: Mutex::new(Vec::new()) });
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| setup(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone());
    let mut config = match identity {
        Some(identity) => builder
            .with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())
            .map_err(|e| setup(format!("client identity refused: {e}")))?,
        None => builder.with_no_client_auth(),
    };
    config.resumption = rustls::client::Resumption::disabled();
    Ok((Arc::new(config), verifier))
}

/// Turns a rustls error into an [`HttpsError`]: certificate problems into
/// [`HttpsError::Certificate`], everything else into [`HttpsError::Tls`].
pub(crate) fn tls_error(
    endpoint: &str,
    authority: &str,
    phase: Phase,
    error: &rustls::Error,
    presented: Option<CertificateInfo>,
) -> HttpsError {
    let rustls::Error::InvalidCertificate(cert_error) = error else {
        let mut reason = error.to_string();
        if let rustls::Error::AlertReceived(alert) = error {
            use rustls::AlertDescription as A;
            if matches!(
                alert,
                A::CertificateRequired
                    | A::BadCertificate
                    | A::UnsupportedCertificate
                    | A::CertificateRevoked
                    | A::CertificateExpired
                    | A::CertificateUnknown
                    | A::UnknownCA
                    | A::AccessDenied
            ) {
                reason.push_str(" (the server refused our client certificate, or its absence)");
            }
        }
        return HttpsError::Tls { endpoint: endpoint.to_string(), phase, reason };
    };
    #[allow(deprecated)] // UnsupportedSignatureAlgorithm falls into `Other` with the rest.
    let problem = match cert_error {
        CertificateError::UnknownIssuer => CertificateProblem::UnknownIssuer,
        CertificateError::Expired => CertificateProblem::Expired { not_after: None, now: None },
        CertificateError::ExpiredContext { time, not_after } => {
            CertificateProblem::Expired { not_after: Some(not_after.as_secs()), now: Some(time.as_secs()) }
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => CertificateProblem::NotYetValid,
        CertificateError::NotValidForName => CertificateProblem::NotValidForName { presented: Vec::new() },
        CertificateError::NotValidForNameContext { presented, .. } => {
            CertificateProblem::NotValidForName { presented: presented.clone() }
        }
        CertificateError::Revoked => CertificateProblem::Revoked,
        CertificateError::BadSignature => CertificateProblem::BadSignature,
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            CertificateProblem::InvalidPurpose
        }
        _ => CertificateProblem::Other(error.to_string()),
    };
    HttpsError::Certificate {
        endpoint: endpoint.to_string(),
        authority: authority.to_string(),
        problem,
        presented: presented.map(Box::new),
    }
}

/// The TLS half of [`VigilConnector`].
pub(crate) struct TlsParts {
    pub(crate) config: Arc<ClientConfig>,
    pub(crate) verifier: Arc<RecordingVerifier>,
    pub(crate) stats: HttpsStats,
    pub(crate) expiry_warning: Duration,
    /// The trust file certificates, to tell which one verified a chain.
    pub(crate) anchors: Arc<Vec<Anchor>>,
}

impl fmt::Debug for TlsParts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsParts").field("expiry_warning", &self.expiry_warning).finish_non_exhaustive()
    }
}

/// ureq connector, last in the chain: takes the connection the connectors
/// before it opened (TCP to the endpoint, or a tunnel through a proxy) and,
/// for https, runs the rustls handshake with our own configuration.
#[derive(Debug)]
pub(crate) struct VigilConnector {
    /// The endpoint, redacted, for messages.
    pub(crate) endpoint: String,
    pub(crate) tls: Option<TlsParts>,
}

impl<In: Transport> Connector<In> for VigilConnector {
    type Out = Box<dyn Transport>;

    fn connect(&self, details: &ConnectionDetails<'_>, chained: Option<In>) -> Result<Option<Self::Out>, ureq::Error> {
        let Some(tcp) = chained else {
            return Ok(None);
        };
        let tcp: Box<dyn Transport> = Box::new(tcp);
        if !details.needs_tls() {
            return Ok(Some(tcp));
        }
        let Some(tls) = &self.tls else {
            return Err(ureq::Error::TlsRequired);
        };

        let host = details.uri.host().unwrap_or_default();
        let port = details.uri.port_u16().unwrap_or(443);
        let authority = format!("{host}:{port}");
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(bare.to_string()).map_err(|e| {
            ureq::Error::Other(Box::new(HttpsError::InvalidEndpoint {
                endpoint: self.endpoint.clone(),
                reason: format!("{bare:?} is not a valid TLS server name: {e}"),
            }))
        })?;

        let mut conn = ClientConnection::new(tls.config.clone(), name).map_err(|e| {
            ureq::Error::Other(Box::new(tls_error(&self.endpoint, &authority, Phase::Handshake, &e, None)))
        })?;
        let mut sock = TransportAdapter::new(tcp, details.current_time.clone());
        sock.set_timeout(remaining(details));
        tls.verifier.take_presented();
        if let Err(e) = conn.complete_io(&mut sock) {
            let presented = tls.verifier.take_presented().first().and_then(|der| CertificateInfo::from_der(der).ok());
            return Err(self.handshake_error(e, &authority, presented));
        }
        let chain = tls.verifier.take_presented();
        match chain.iter().map(|der| CertificateInfo::from_der(der)).collect::<Result<Vec<_>, _>>() {
            Ok(infos) if !infos.is_empty() => {
                let anchor = chain.last().and_then(|top| anchor_of(top, &tls.anchors));
                tls.stats.observe_chain(infos, anchor, tls.expiry_warning);
            }
            Ok(_) => {}
            Err(e) => {
                log::warn!(target: "vigil::https", "cannot parse the server certificate of {}: {e}", self.endpoint)
            }
        }
        let buffers = LazyBuffers::new(details.config.input_buffer_size(), details.config.output_buffer_size());
        Ok(Some(Box::new(TlsTransport { buffers, stream: StreamOwned::new(conn, sock) })))
    }
}

impl VigilConnector {
    fn handshake_error(
        &self,
        error: std::io::Error,
        authority: &str,
        presented: Option<CertificateInfo>,
    ) -> ureq::Error {
        if let Some(tls) = error.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
            return ureq::Error::Other(Box::new(tls_error(
                &self.endpoint,
                authority,
                Phase::Handshake,
                tls,
                presented,
            )));
        }
        match ureq::Error::from(error) {
            // Timeouts keep ureq's own type, which says which limit expired.
            ureq::Error::Io(io) => ureq::Error::Other(Box::new(HttpsError::Io {
                endpoint: self.endpoint.clone(),
                phase: Phase::Handshake,
                kind: io.kind(),
                reason: io.to_string(),
            })),
            other => other,
        }
    }
}

/// The trust file certificate that issued `top`, the last certificate the
/// server sent: same name as its issuer and, when both carry one, the same
/// key identifier. (A served copy of the anchor itself matches too.)
fn anchor_of(top: &CertificateDer<'_>, anchors: &[Anchor]) -> Option<CertificateInfo> {
    let info = CertificateInfo::from_der(top).ok()?;
    let ids = KeyIds::of(top);
    anchors
        .iter()
        .find(|a| {
            let same_key = match (&ids.authority, &a.ids.subject) {
                (Some(aki), Some(ski)) => aki == ski,
                _ => true,
            };
            (a.info.subject == info.issuer && same_key) || a.info.sha256 == info.sha256
        })
        .map(|a| a.info.clone())
}

/// What is left of the connect timeout after the TCP connection was made.
fn remaining(details: &ConnectionDetails<'_>) -> NextTimeout {
    let mut timeout = details.timeout;
    if let (UreqInstant::Exact(start), UreqInstant::Exact(now), UreqDuration::Exact(after)) =
        (details.now, (details.current_time)(), timeout.after)
    {
        timeout.after = UreqDuration::Exact(after.saturating_sub(now.saturating_duration_since(start)));
    }
    timeout
}

/// A rustls stream as a ureq transport.
struct TlsTransport {
    buffers: LazyBuffers,
    stream: StreamOwned<ClientConnection, TransportAdapter>,
}

impl Transport for TlsTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let output = &self.buffers.output()[..amount];
        if let Err(e) = self.stream.write_all(output) {
            return Err(self.explain_io_failure(e).into());
        }
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let input = self.buffers.input_append_buf();
        let amount = match self.stream.read(input) {
            Ok(amount) => amount,
            Err(e) => return Err(self.explain_io_failure(e).into()),
        };
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    fn is_open(&mut self) -> bool {
        self.stream.get_mut().get_mut().is_open()
    }

    fn is_tls(&self) -> bool {
        true
    }
}

impl TlsTransport {
    /// How long to look for a TLS alert after the connection broke.
    const ALERT_PROBE: Duration = Duration::from_secs(1);

    /// I/O failed because the server closed the connection. A TLS server
    /// that refuses the client (say, a missing or untrusted client certificate
    /// under TLS 1.3, which is only judged after the client finished its
    /// handshake) sends an alert first: read what is left, and if it holds an
    /// alert, report that instead of the bare "broken pipe".
    ///
    /// (rustls' stream swallows a failed socket write and reports it on the
    /// next call, which may be a read; so both directions come here.)
    fn explain_io_failure(&mut self, error: std::io::Error) -> std::io::Error {
        use std::io::ErrorKind;
        if !matches!(error.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted) {
            return error;
        }
        self.stream.sock.set_timeout(NextTimeout {
            after: UreqDuration::Exact(Self::ALERT_PROBE),
            reason: ureq::Timeout::Global,
            per_read: None,
            per_write: None,
        });
        // A few records at most: anything the server sent before closing.
        for _ in 0..8 {
            match self.stream.conn.read_tls(&mut self.stream.sock) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if let Err(tls) = self.stream.conn.process_new_packets() {
                        return std::io::Error::new(ErrorKind::InvalidData, tls);
                    }
                }
            }
        }
        error
    }
}

impl fmt::Debug for TlsTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsTransport").field("inner", &self.stream.sock.inner()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(e: rustls::Error) -> HttpsError {
        tls_error("https://127.0.0.1:8443/ingest", "127.0.0.1:8443", Phase::Handshake, &e, None)
    }

    fn problem(e: rustls::Error) -> CertificateProblem {
        match classify(e) {
            HttpsError::Certificate { problem, .. } => problem,
            other => panic!("expected a certificate error, got {other:?}"),
        }
    }

    #[test]
    fn certificate_errors_map_to_problems() {
        assert_eq!(
            problem(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)),
            CertificateProblem::UnknownIssuer
        );
        assert_eq!(
            problem(rustls::Error::InvalidCertificate(CertificateError::ExpiredContext {
                time: UnixTime::since_unix_epoch(Duration::from_secs(2_000_000_000)),
                not_after: UnixTime::since_unix_epoch(Duration::from_secs(1_900_000_000)),
            })),
            CertificateProblem::Expired { not_after: Some(1_900_000_000), now: Some(2_000_000_000) }
        );
        assert_eq!(
            problem(rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
                expected: ServerName::try_from("127.0.0.1").unwrap(),
                presented: vec!["DnsName(\"wrong.example\")".into()],
            })),
            CertificateProblem::NotValidForName { presented: vec!["DnsName(\"wrong.example\")".into()] }
        );
        assert_eq!(
            problem(rustls::Error::InvalidCertificate(CertificateError::NotValidYet)),
            CertificateProblem::NotYetValid
        );
        assert_eq!(
            problem(rustls::Error::InvalidCertificate(CertificateError::BadEncoding)),
            CertificateProblem::Other("invalid peer certificate: BadEncoding".into())
        );
    }

    #[test]
    fn certificate_error_messages_name_endpoint_and_issuer() {
        let presented = CertificateInfo {
            subject: "CN=127.0.0.1".into(),
            issuer: "CN=Vigil Collector CA 2".into(),
            not_after: "2030-01-01T00:00:00Z".into(),
            not_after_unix: 1_893_456_000,
            sha256: "AB:CD".into(),
            spki_sha256: "AB:CD".into(),
        };
        let err = tls_error(
            "https://127.0.0.1:8443/ingest",
            "127.0.0.1:8443",
            Phase::Handshake,
            &rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
            Some(presented),
        );
        let text = err.to_string();
        assert!(
            text.starts_with("certificate for 127.0.0.1:8443 not trusted: unknown issuer CN=Vigil Collector CA 2"),
            "{text}"
        );
        assert!(text.contains("https://127.0.0.1:8443/ingest"), "{text}");
        assert!(!text.contains("sha256"), "the short form keeps the essential cause: {text}");
        let detail = format!("{err:#}");
        assert!(detail.starts_with(&text[..text.find(" (endpoint").unwrap()]), "{detail}");
        assert!(detail.contains("sha256 AB:CD"), "the alternate form has the detail: {detail}");
        assert_eq!(err.class(), crate::ErrorClass::Fatal);

        let expired = classify(rustls::Error::InvalidCertificate(CertificateError::ExpiredContext {
            time: UnixTime::since_unix_epoch(Duration::from_secs(1_700_000_000)),
            not_after: UnixTime::since_unix_epoch(Duration::from_secs(1_600_000_000)),
        }));
        assert_eq!(
            expired.to_string(),
            "certificate for 127.0.0.1:8443 expired: notAfter 2020-09-13T12:26:40Z is before now (2023-11-14T22:13:20Z) (endpoint https://127.0.0.1:8443/ingest)"
        );
    }

    #[test]
    fn a_refused_client_certificate_says_so() {
        let err = classify(rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired));
        assert_eq!(
            err.to_string(),
            "TLS failure with https://127.0.0.1:8443/ingest during TLS handshake: received fatal alert: \
             CertificateRequired (the server refused our client certificate, or its absence)"
        );
        let other = classify(rustls::Error::AlertReceived(rustls::AlertDescription::ProtocolVersion));
        assert!(!other.to_string().contains("client certificate"), "{other}");
    }

    #[test]
    fn other_tls_errors_are_fatal_tls_failures() {
        let err = classify(rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure));
        assert!(matches!(err, HttpsError::Tls { phase: Phase::Handshake, .. }), "{err:?}");
        assert!(err.is_tls());
        assert_eq!(err.class(), crate::ErrorClass::Fatal);
        assert!(err.to_string().contains("https://127.0.0.1:8443/ingest"));
    }
}
