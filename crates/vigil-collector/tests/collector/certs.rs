//! Certificate modes, CA rotation and client authentication, seen by real
//! rustls clients.

use crate::support as common;

use std::time::{Duration, SystemTime};

use common::{DEADLINE, TempDir, TestCa, agent, client_config, handshake, post_ndjson, start};
use rustls::{CertificateError, Error as TlsError};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use vigil_collector::{CertMode, Collector};

fn cert_error(err: &TlsError) -> &CertificateError {
    match err {
        TlsError::InvalidCertificate(e) => e,
        other => panic!("expected a certificate error, got {other:?}"),
    }
}

#[test]
fn rotation_makes_clients_of_the_old_ca_fail_with_unknown_issuer() {
    let collector = start();
    let old_ca = collector.ca_pem_path();
    let old_only = agent(&[&old_ca]);
    assert_eq!(post_ndjson(&old_only, &collector, "before", [1]).unwrap().status(), 200);

    let new_ca = collector.rotate_ca().unwrap();
    assert_ne!(new_ca, old_ca);
    assert_eq!(collector.ca_pem_path(), new_ca);
    assert_eq!(collector.stats().rotations, 1);

    // A raw rustls client names the problem exactly.
    let err = handshake(collector.addr(), client_config(&[&old_ca]), "127.0.0.1").unwrap_err();
    assert_eq!(cert_error(&err), &CertificateError::UnknownIssuer);

    // So does ureq, on a fresh agent (no pooled connection to reuse).
    let err = post_ndjson(&agent(&[&old_ca]), &collector, "after", [2]).unwrap_err();
    let tls = common::rustls_error(&err).unwrap_or_else(|| panic!("expected a TLS error, got {err:?}"));
    assert_eq!(cert_error(tls), &CertificateError::UnknownIssuer);

    // Trusting both CAs (the rotation window) works, as does the new one alone.
    let both = agent(&[&old_ca, &new_ca]);
    assert_eq!(post_ndjson(&both, &collector, "after", [2]).unwrap().status(), 200);
    assert_eq!(post_ndjson(&agent(&[&new_ca]), &collector, "after-2", [3]).unwrap().status(), 200);
    assert!(handshake(collector.addr(), client_config(&[&new_ca]), "localhost").is_ok());

    assert!(collector.wait_for(DEADLINE, |s| s.tls_handshake_failures >= 2));
    assert_eq!(collector.seqs().into_iter().collect::<Vec<_>>(), [1, 2, 3]);
}

#[test]
fn rotation_closes_pooled_connections_so_the_next_request_sees_the_new_ca() {
    let collector = start();
    let old_ca = collector.ca_pem_path();
    let old_only = agent(&[&old_ca]);
    for (i, key) in ["a", "b"].into_iter().enumerate() {
        let mut response = post_ndjson(&old_only, &collector, key, [i as u64]).unwrap();
        assert_eq!(response.status(), 200);
        // Reading the body to the end hands the connection back to ureq's pool.
        response.body_mut().read_to_string().unwrap();
    }
    assert_eq!(collector.stats().connections, 1, "keep-alive reused the connection");
    collector.rotate_ca().unwrap();
    assert!(collector.wait_for(DEADLINE, |s| s.active_connections == 0), "the idle connection is closed");
    let err = post_ndjson(&old_only, &collector, "c", [3]).unwrap_err();
    let tls = common::rustls_error(&err).unwrap_or_else(|| panic!("expected a TLS error, got {err:?}"));
    assert_eq!(cert_error(tls), &CertificateError::UnknownIssuer);
}

#[test]
fn without_close_on_cert_change_an_open_connection_keeps_its_certificate() {
    vigil_testkit::init_logging();
    let collector = Collector::builder().close_on_cert_change(false).start().unwrap();
    let old_only = agent(&[&collector.ca_pem_path()]);
    let mut first = post_ndjson(&old_only, &collector, "a", [1]).unwrap();
    assert_eq!(first.status(), 200);
    first.body_mut().read_to_string().unwrap();
    collector.rotate_ca().unwrap();
    collector.serve(CertMode::Expired).unwrap();
    // ureq reuses its pooled connection, established under the old CA.
    assert_eq!(post_ndjson(&old_only, &collector, "b", [2]).unwrap().status(), 200);
    assert_eq!(collector.stats().connections, 1);
    // A new connection gets the new certificate.
    let err = handshake(collector.addr(), client_config(&[&collector.ca_pem_path()]), "localhost").unwrap_err();
    assert!(matches!(cert_error(&err), CertificateError::Expired | CertificateError::ExpiredContext { .. }));
}

#[test]
fn a_busy_connection_finishes_its_request_then_closes_after_a_rotation() {
    let collector = start();
    let ca = collector.ca_pem_path();
    let mut tls = handshake(collector.addr(), client_config(&[&ca]), "localhost").unwrap();
    collector.fail_next(1, vigil_collector::Fault::Slow(Duration::from_secs(2)));
    let body = common::ndjson([1]);
    let request = format!("POST /ingest HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    use std::io::Write as _;
    tls.write_all(request.as_bytes()).unwrap();
    tls.flush().unwrap();
    // Rotate while the request is being served.
    assert!(collector.wait_for(DEADLINE, |s| s.requests == 1));
    collector.rotate_ca().unwrap();
    let mut answer = Vec::new();
    use std::io::Read as _;
    tls.read_to_end(&mut answer).unwrap();
    let text = String::from_utf8(answer).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("Connection: close\r\n"), "{text}");
    assert_eq!(collector.seqs().len(), 1);
}

#[test]
fn every_rotation_writes_a_new_pem() {
    let collector = start();
    let mut paths = vec![collector.ca_pem_path()];
    for _ in 0..3 {
        paths.push(collector.rotate_ca().unwrap());
    }
    let names: Vec<_> = paths.iter().map(|p| p.file_name().unwrap().to_str().unwrap().to_owned()).collect();
    assert_eq!(names, ["ca-0.pem", "ca-1.pem", "ca-2.pem", "ca-3.pem"]);
    let pems: std::collections::HashSet<_> = paths.iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert_eq!(pems.len(), 4, "every CA is different");
    assert_eq!(collector.stats().rotations, 3);
    // Only the newest is trusted by the served certificate.
    for old in &paths[..3] {
        let err = handshake(collector.addr(), client_config(&[old]), "127.0.0.1").unwrap_err();
        assert_eq!(cert_error(&err), &CertificateError::UnknownIssuer);
    }
    assert!(handshake(collector.addr(), client_config(&[&paths[3]]), "127.0.0.1").is_ok());
}

#[test]
fn an_expired_certificate_is_refused_as_expired() {
    let collector = start();
    let ca = collector.ca_pem_path();
    collector.serve(CertMode::Expired).unwrap();
    assert_eq!(collector.cert_mode(), CertMode::Expired);
    let err = handshake(collector.addr(), client_config(&[&ca]), "127.0.0.1").unwrap_err();
    assert!(matches!(cert_error(&err), CertificateError::Expired | CertificateError::ExpiredContext { .. }), "{err:?}");
    let err = post_ndjson(&agent(&[&ca]), &collector, "k", [1]).unwrap_err();
    let tls = common::rustls_error(&err).unwrap_or_else(|| panic!("expected a TLS error, got {err:?}"));
    assert!(matches!(cert_error(tls), CertificateError::Expired | CertificateError::ExpiredContext { .. }));

    collector.serve(CertMode::Valid).unwrap();
    assert_eq!(post_ndjson(&agent(&[&ca]), &collector, "k", [1]).unwrap().status(), 200);
}

#[test]
fn a_certificate_for_another_name_is_refused_as_not_valid_for_name() {
    let collector = start();
    let ca = collector.ca_pem_path();
    collector.serve(CertMode::WrongName).unwrap();
    for name in ["127.0.0.1", "localhost"] {
        let err = handshake(collector.addr(), client_config(&[&ca]), name).unwrap_err();
        assert!(
            matches!(
                cert_error(&err),
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
            ),
            "{name}: {err:?}"
        );
    }
    // The certificate is otherwise fine: a client asking for its name accepts it.
    assert!(handshake(collector.addr(), client_config(&[&ca]), "wrong-name.invalid").is_ok());
    collector.serve(CertMode::Valid).unwrap();
    assert!(handshake(collector.addr(), client_config(&[&ca]), "localhost").is_ok());
}

#[test]
fn expires_in_serves_a_valid_certificate_that_ends_soon() {
    init_and_check_expires_in(Duration::from_secs(10 * 86_400));
}

fn init_and_check_expires_in(d: Duration) {
    vigil_testkit::init_logging();
    let collector = Collector::builder().cert_mode(CertMode::ExpiresIn(d)).start().unwrap();
    let ca = collector.ca_pem_path();
    let tls = handshake(collector.addr(), client_config(&[&ca]), "127.0.0.1").unwrap();
    let presented = tls.conn.peer_certificates().unwrap()[0].clone();
    let served = CertificateDer::from_pem_slice(collector.served_cert_pem().as_bytes()).unwrap();
    assert_eq!(presented, served, "the handshake presents the certificate the collector reports");
    let left = collector.served_not_after().duration_since(SystemTime::now()).unwrap();
    assert!(left <= d && left > d - Duration::from_secs(3600), "{left:?}");
    assert_eq!(post_ndjson(&agent(&[&ca]), &collector, "k", [1]).unwrap().status(), 200);
}

#[test]
fn client_auth_requires_a_certificate_from_the_given_ca() {
    vigil_testkit::init_logging();
    // A client CA and a client certificate, made with rcgen.
    let dir = TempDir::new("collector-mtls");
    let ca = TestCa::new("test client CA");
    let (client_cert, client_key) = ca.client("shipper");
    let client_ca_path = dir.write("client-ca.pem", ca.cert.pem());

    let collector = Collector::builder().client_auth(&client_ca_path).start().unwrap();
    let server_ca = collector.ca_pem_path();

    // Without a client certificate the request fails.
    let err = post_ndjson(&agent(&[&server_ca]), &collector, "anon", [1]).unwrap_err();
    assert!(!matches!(err, ureq::Error::StatusCode(_)), "{err:?}");

    // With one, it succeeds.
    let identity = ureq::tls::ClientCert::new_with_certs(
        &[ureq::tls::Certificate::from_der(client_cert.der()).to_owned()],
        ureq::tls::PrivateKey::from_pem(client_key.serialize_pem().as_bytes()).unwrap(),
    );
    let tls = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .root_certs(ureq::tls::RootCerts::new_with_certs(&[ureq::tls::Certificate::from_pem(
            &std::fs::read(&server_ca).unwrap(),
        )
        .unwrap()]))
        .client_cert(Some(identity))
        .unversioned_rustls_crypto_provider(common::provider())
        .build();
    let mtls = ureq::Agent::config_builder().tls_config(tls).http_status_as_error(false).build().new_agent();
    assert_eq!(post_ndjson(&mtls, &collector, "mtls", [1]).unwrap().status(), 200);
    assert_eq!(collector.seqs().into_iter().collect::<Vec<_>>(), [1]);
    assert!(collector.stats().tls_handshake_failures >= 1);

    // Rotation keeps requiring client certificates.
    let new_ca = collector.rotate_ca().unwrap();
    let err = post_ndjson(&agent(&[&new_ca]), &collector, "anon-2", [2]).unwrap_err();
    assert!(!matches!(err, ureq::Error::StatusCode(_)), "{err:?}");
}

#[test]
fn a_bad_client_auth_bundle_is_a_start_error() {
    vigil_testkit::init_logging();
    let dir = TempDir::new("collector-bad-bundle");
    let bundle = dir.write("empty.pem", "no certificates here\n");
    let err = Collector::builder().client_auth(&bundle).start().unwrap_err();
    assert!(matches!(err, vigil_collector::CollectorError::Certificate { .. }), "{err:?}");
    assert!(err.to_string().contains("empty.pem"), "{err}");
}

#[test]
fn a_busy_address_is_a_bind_error_naming_it() {
    let first = start();
    let taken = first.addr().to_string();
    let err = Collector::builder().listen(taken.clone()).start().unwrap_err();
    match &err {
        vigil_collector::CollectorError::Bind { addr, .. } => assert_eq!(addr, &taken),
        other => panic!("expected Bind, got {other:?}"),
    }
    assert!(err.to_string().contains(&taken));
}
