//! Helpers shared by the scenario tests: real rustls clients (ureq and raw).
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject as _;
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};
use vigil_collector::Collector;

pub use vigil_testkit::{DEADLINE, TempDir, TestCa};

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub fn start() -> Collector {
    vigil_testkit::init_logging();
    Collector::builder().start().expect("collector starts")
}

/// A ureq agent trusting exactly the CAs in these PEM files.
pub fn agent(cas: &[&Path]) -> ureq::Agent {
    agent_with_response_timeout(cas, Some(DEADLINE))
}

/// An agent that gives up when the response head has not arrived `timeout`
/// after the request was sent (connecting and the handshake are not
/// counted, so a loaded machine does not time out early).
pub fn agent_with_response_timeout(cas: &[&Path], timeout: Option<Duration>) -> ureq::Agent {
    let certs: Vec<Certificate<'static>> = cas
        .iter()
        .map(|p| Certificate::from_pem(&std::fs::read(p).expect("read CA PEM")).expect("parse CA PEM"))
        .collect();
    let tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .root_certs(RootCerts::new_with_certs(&certs))
        .unversioned_rustls_crypto_provider(provider())
        .build();
    ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .timeout_global(Some(DEADLINE))
        .timeout_recv_response(timeout)
        .build()
        .new_agent()
}

/// NDJSON records for these sequence numbers.
pub fn ndjson(seqs: impl IntoIterator<Item = u64>) -> String {
    seqs.into_iter().map(|s| format!("{{\"seq\":{s},\"msg\":\"event {s}\"}}\n")).collect()
}

/// POSTs an NDJSON batch under `key`.
pub fn post_ndjson(
    agent: &ureq::Agent,
    collector: &Collector,
    key: &str,
    seqs: impl IntoIterator<Item = u64>,
) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
    agent
        .post(&collector.endpoint())
        .header("Content-Type", "application/x-ndjson")
        .header("Idempotency-Key", key)
        .send(ndjson(seqs))
}

/// The rustls error inside a ureq error, wherever ureq put it.
pub fn rustls_error(err: &ureq::Error) -> Option<&rustls::Error> {
    match err {
        ureq::Error::Rustls(e) => Some(e),
        ureq::Error::Io(e) => e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        _ => None,
    }
}

/// A raw rustls client configuration trusting the CAs in these PEM files.
pub fn client_config(cas: &[&Path]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for path in cas {
        for cert in rustls::pki_types::CertificateDer::pem_file_iter(path).expect("read CA PEM") {
            roots.add(cert.expect("parse CA PEM")).expect("add root");
        }
    }
    Arc::new(
        ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Connects with a raw rustls client and completes the handshake.
pub fn handshake(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    name: &str,
) -> Result<StreamOwned<ClientConnection, TcpStream>, rustls::Error> {
    let tcp = TcpStream::connect(addr).expect("TCP connect");
    tcp.set_read_timeout(Some(DEADLINE)).unwrap();
    let server_name = ServerName::try_from(name.to_owned()).expect("server name");
    let conn = ClientConnection::new(config, server_name)?;
    let mut tls = StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
            let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()).cloned();
            return Err(inner.unwrap_or_else(|| rustls::Error::General(format!("I/O during handshake: {e}"))));
        }
    }
    Ok(tls)
}

/// Writes raw bytes over a raw TLS stream and reads until the peer closes
/// or `until` matches; returns what was read.
pub fn exchange(tls: &mut StreamOwned<ClientConnection, TcpStream>, request: &[u8], until: &[u8]) -> Vec<u8> {
    tls.write_all(request).unwrap();
    tls.flush().unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(until.len().max(1)).any(|w| w == until) {
        match tls.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    got
}
