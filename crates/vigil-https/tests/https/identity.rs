//! Client identity (mutual TLS): delivery with a client certificate, a
//! mismatched key as a build error, and reloads that keep the last good identity.

use std::time::Duration;

use vigil_collector::Collector;
use vigil_events::Sink;
use vigil_https::{HttpsError, PemRole};

use crate::support::*;

struct Mtls {
    collector: Collector,
    dir: TempDir,
    ca: TestCa,
}

fn mtls(name: &str) -> Mtls {
    capture_logs();
    let dir = TempDir::new(name);
    let ca = TestCa::new("vigil test client CA");
    let ca_pem = dir.write("client-ca.pem", ca.cert.pem());
    let collector = Collector::builder()
        .client_auth(&ca_pem)
        .idle_timeout(Some(Duration::from_millis(200)))
        .start()
        .expect("collector starts");
    Mtls { collector, dir, ca }
}

#[test]
fn a_client_certificate_is_presented() {
    let m = mtls("mtls-ok");
    let (cert, key) = m.ca.client("vigil client");
    let chain = m.dir.write("chain.pem", format!("{}{}", cert.pem(), m.ca.cert.pem()));
    let key_path = m.dir.write("key.pem", key.serialize_pem());
    let mut sink = config_for(&m.collector, &m.collector.ca_pem_path())
        .client_identity(&chain, &key_path)
        .build()
        .expect("sink builds");
    deliver_ok(&mut sink, &batch("mtls-0", 0..3));
    assert_eq!(m.collector.seqs().len(), 3);
    let logs = https_logs(&m.collector.endpoint());
    assert!(
        logs.iter().any(|r| r.message.contains(&format!("client identity {} (2 certificates)", chain.display()))),
        "{logs:#?}"
    );
}

#[test]
fn no_client_certificate_is_a_fatal_tls_failure() {
    let m = mtls("mtls-missing");
    let config = config_for(&m.collector, &m.collector.ca_pem_path());
    let mut sink = config.build().expect("sink builds");
    // Under TLS 1.3 the server judges the client certificate after the
    // client's side of the handshake is done: the refusal arrives as an alert
    // on the first exchange, which the sink must surface as a TLS failure.
    let delivery = sink.deliver(&batch("mtls-none", 0..1), None);
    assert_eq!(delivery.kind(), "fatal", "{delivery:?}");
    let err = https_error(&delivery);
    assert!(matches!(err, HttpsError::Tls { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&m.collector.endpoint()), "{text}");
    assert!(text.contains("CertificateRequired"), "{text}");
    assert!(text.contains("refused our client certificate"), "{text}");
    assert_eq!(config.stats().snapshot().tls_failures, 1);
    assert!(m.collector.seqs().is_empty());
}

#[test]
fn a_mismatched_client_key_is_a_build_error() {
    let m = mtls("mtls-mismatch");
    let (cert, _key) = m.ca.client("vigil client");
    let other = rcgen::KeyPair::generate().expect("key");
    let chain = m.dir.write("chain.pem", cert.pem());
    let key_path = m.dir.write("wrong-key.pem", other.serialize_pem());
    let config = config_for(&m.collector, &m.collector.ca_pem_path()).client_identity(&chain, &key_path);
    let err = config.build().unwrap_err();
    assert_eq!(err, HttpsError::KeyMismatch { chain: chain.clone(), key: key_path.clone() });
    let text = err.to_string();
    assert!(text.contains(&chain.display().to_string()) && text.contains(&key_path.display().to_string()), "{text}");
    assert_eq!(config.stats().snapshot().last_error, Some(text));
    assert_eq!(m.collector.stats().connections, 0, "nothing was sent");

    // A key file without a key is named as such.
    let err = config_for(&m.collector, &m.collector.ca_pem_path()).client_identity(&chain, &chain).build().unwrap_err();
    assert!(matches!(err, HttpsError::Pem { role: PemRole::ClientKey, .. }), "{err:?}");
}

#[test]
fn a_bad_identity_reload_keeps_the_last_good_identity() {
    let m = mtls("mtls-reload");
    let (cert, key) = m.ca.client("vigil client");
    let chain = m.dir.write("chain.pem", cert.pem());
    let key_path = m.dir.write("key.pem", key.serialize_pem());
    let config = config_for(&m.collector, &m.collector.ca_pem_path())
        .client_identity(&chain, &key_path)
        .trust_poll_interval(Duration::from_millis(50));
    let stats = config.stats();
    let mut sink = config.build().expect("sink builds");
    deliver_ok(&mut sink, &batch("idr-0", 0..1));

    // A key that does not match is refused while running...
    let wrong = rcgen::KeyPair::generate().expect("key");
    m.dir.write("key.pem", wrong.serialize_pem());
    let mut i = 0;
    assert!(eventually(|| {
        i += 1;
        deliver_in_loop(&mut sink, &batch(&format!("idr-w-{i}"), 100 + i..101 + i));
        stats.snapshot().trust_reload_failures == 1
    }));
    let last_error = stats.snapshot().last_error.unwrap();
    assert!(last_error.starts_with(&format!("client key {} does not match", key_path.display())), "{last_error}");

    // ...and the last good identity still opens new connections.
    wait_idle(&m.collector);
    deliver_ok(&mut sink, &batch("idr-1", 1..2));

    // A new, matching identity is swapped in.
    let (cert2, key2) = m.ca.client("vigil client 2");
    m.dir.write("key.pem", key2.serialize_pem());
    m.dir.write("chain.pem", cert2.pem());
    let mut j = 0;
    assert!(eventually(|| {
        j += 1;
        deliver_in_loop(&mut sink, &batch(&format!("idr-r-{j}"), 200 + j..201 + j));
        stats.snapshot().trust_reloads >= 1
    }));
    wait_idle(&m.collector);
    deliver_ok(&mut sink, &batch("idr-2", 2..3));
    assert!(m.collector.seqs().contains(&2));
}
