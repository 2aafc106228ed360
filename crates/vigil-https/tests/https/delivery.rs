//! Batches arrive: NDJSON, JSON arrays, gzip, one pooled connection, and the
//! server certificate recorded from the real handshake.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;

use vigil_events::{Batch, Delivery, Encoding, Sink};
use vigil_https::HttpsSinkConfig;

use crate::support::*;

/// What the collector serves, computed independently of the sink: the
/// SHA-256 of the DER (colon-separated upper-case hex) and notAfter.
fn served_cert(collector: &vigil_collector::Collector) -> (String, i64) {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    use sha2::Digest;
    let der = CertificateDer::from_pem_slice(collector.served_cert_pem().as_bytes()).expect("served cert PEM");
    let sha: Vec<String> = sha2::Sha256::digest(der.as_ref()).iter().map(|b| format!("{b:02X}")).collect();
    let not_after = collector.served_not_after().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_secs();
    (sha.join(":"), not_after as i64)
}

#[test]
fn batches_arrive_over_one_connection() {
    let collector = collector();
    let endpoint = collector.endpoint();
    let ca = collector.ca_pem_path();
    let config = config_for(&collector, &ca);
    let stats = config.stats();
    let mut sink = config.build().expect("sink builds");

    deliver_ok(&mut sink, &batch("d-0", 0..10));
    deliver_ok(&mut sink, &batch("d-1", 10..20));
    deliver_ok(&mut sink, &batch("d-2", 20..25));

    assert_eq!(collector.seqs().into_iter().collect::<Vec<_>>(), (0..25).collect::<Vec<_>>());
    let server = collector.stats();
    assert_eq!(server.batches_accepted, 3);
    assert_eq!(server.connections, 1, "one pooled connection for all three batches");

    let snap = stats.snapshot();
    assert_eq!(snap.deliveries.delivered, 3);
    assert_eq!(snap.events_delivered, 25);
    assert_eq!(snap.handshakes, 1);
    assert_eq!(snap.tls_failures, 0);
    assert_eq!(snap.sinks_built, 1);
    assert_eq!(snap.trusted_certificates, 1);
    assert_eq!(snap.last_error, None);
    let cert = snap.server_certificate.expect("the handshake recorded the leaf");
    assert_eq!((cert.sha256.clone(), cert.not_after_unix), served_cert(&collector));
    assert!(cert.subject.contains("CN="), "{}", cert.subject);
    assert!(cert.issuer.contains("CN=vigil-collector test CA 0"), "{}", cert.issuer);

    // The load was logged with the count and the file.
    let loads = https_logs(&endpoint);
    let expected = format!("trusting 1 certificates from {} (1)", ca.display());
    assert!(loads.iter().any(|r| r.message.contains(&expected)), "no load log {expected:?} in {loads:#?}");
}

#[test]
fn json_arrays_and_gzip_arrive() {
    let collector = collector();
    let mut sink = config_for(&collector, &collector.ca_pem_path()).gzip(true).build().expect("sink builds");

    let ndjson = batch("g-0", 0..200);
    deliver_ok(&mut sink, &ndjson);
    let array = Batch::new("g-1", Encoding::JsonArray, vec![200, 201], br#"[{"seq":200},{"seq":201}]"#.to_vec());
    deliver_ok(&mut sink, &array);

    assert_eq!(collector.seqs().len(), 202);
    assert_eq!(collector.stats().bad_requests, 0);
}

#[test]
fn a_retried_batch_is_counted_once() {
    let collector = collector();
    let mut sink = config_for(&collector, &collector.ca_pem_path()).build().expect("sink builds");

    // The collector records the batch, then cuts the answer off.
    collector.fail_next(1, vigil_collector::Fault::CloseMidResponse);
    let b = batch("dup-0", 0..4);
    let first = sink.deliver(&b, None);
    assert_eq!(first.kind(), "retryable", "{first:?}");

    // The batcher retries with the same idempotency key.
    deliver_ok(&mut sink, &b);
    let server = collector.stats();
    assert_eq!(server.batches_accepted, 1);
    assert_eq!(server.duplicate_batches, 1);
    assert_eq!(server.unique_events, 4);
    assert_eq!(server.duplicate_events, 0);
}

#[test]
fn stats_serialize_with_the_certificate() {
    let collector = collector();
    let config = config_for(&collector, &collector.ca_pem_path());
    let mut sink = config.build().expect("sink builds");
    deliver_ok(&mut sink, &batch("s-0", 0..1));
    let json = serde_json::to_value(config.stats().snapshot()).expect("serializes");
    assert_eq!(json["deliveries"]["delivered"], 1);
    assert_eq!(json["endpoint"], collector.endpoint());
    let sha = json["server_certificate"]["sha256"].as_str().expect("fingerprint");
    assert_eq!(sha, served_cert(&collector).0);
    assert_eq!(sha.len(), 32 * 3 - 1);
    assert!(json["server_certificate"]["not_after"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn plain_http_is_refused_before_any_connection() {
    let collector = collector();
    let endpoint = collector.endpoint().replace("https://", "http://").replace("127.0.0.1", "localhost");
    let config = vigil_https::HttpsSinkConfig::new(&endpoint);
    let err = config.build().unwrap_err();
    assert_eq!(err, vigil_https::HttpsError::InsecureEndpoint { endpoint: endpoint.clone() });
    assert_eq!(collector.stats().connections, 0);

    // Allowed on loopback, plain http reaches the TLS port and fails there, retryably.
    let mut sink = config.allow_http(true).build().expect("loopback http is allowed when asked");
    let delivery = sink.deliver(&batch("h-0", 0..1), Some(DEADLINE));
    assert!(!matches!(delivery, Delivery::Delivered));
    assert_ne!(delivery.kind(), "fatal", "{delivery:?}");
}

/// One request as a plain-HTTP loopback server saw it.
struct Seen {
    head: String,
    body: Vec<u8>,
}

/// A one-shot plain HTTP server on loopback: reads one request, answers 200.
fn one_shot_server() -> (String, std::thread::JoinHandle<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("http://{}/ingest", listener.local_addr().expect("addr"));
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut head = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("read head");
            head.push_str(&line);
            if line == "\r\n" || line.is_empty() {
                break;
            }
        }
        let length: usize = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
            .expect("a content-length");
        let mut body = vec![0; length];
        reader.read_exact(&mut body).expect("read body");
        let mut stream = stream;
        stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").expect("answer");
        Seen { head, body }
    });
    (endpoint, handle)
}

#[test]
fn the_request_carries_the_batch_headers_and_a_gzip_body() {
    capture_logs();
    let (endpoint, server) = one_shot_server();
    let secret = format!("Bearer secret-{}", std::process::id());
    let mut sink = HttpsSinkConfig::new(&endpoint)
        .allow_http(true)
        .authorization(&secret)
        .gzip(true)
        .build()
        .expect("loopback http sink builds");
    let b = batch("wire-key-1", 0..50);
    deliver_ok(&mut sink, &b);
    let seen = server.join().expect("server thread");

    let head = seen.head.to_ascii_lowercase();
    assert!(head.starts_with("post /ingest http/1.1\r\n"), "{head}");
    assert!(head.contains("content-type: application/x-ndjson\r\n"), "{head}");
    assert!(head.contains("idempotency-key: wire-key-1\r\n"), "{head}");
    assert!(head.contains("content-encoding: gzip\r\n"), "{head}");
    assert!(head.contains(&format!("authorization: {}\r\n", secret.to_ascii_lowercase())), "{head}");
    let mut unpacked = Vec::new();
    flate2::read::GzDecoder::new(&seen.body[..]).read_to_end(&mut unpacked).expect("gzip body");
    assert_eq!(unpacked, b.body());

    // The secret is in no log record of any target, and not in Debug.
    assert!(!any_log_contains(&secret));
    assert!(!format!("{sink:?}").contains(&secret));
}
