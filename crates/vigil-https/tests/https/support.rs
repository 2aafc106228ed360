//! Helpers shared by the scenario tests: collectors, sink configs, batches
//! and deliveries. The recording logger, temp dirs, polling and client PKI
//! come from `vigil-testkit`.

use std::path::Path;
use std::time::Duration;

use vigil_collector::{Collector, CollectorStats};
use vigil_events::{Batch, Delivery, Encoding, Sink};
use vigil_https::{HttpsError, HttpsSink, HttpsSinkConfig, HttpsStats};

pub(crate) use vigil_testkit::{
    DEADLINE, LogRecord as Record, TempDir, TestCa, capture_logs, captured_logs, days_from_now, eventually,
    write_atomically,
};

/// The `vigil::https` records whose message contains `needle` (tests run in
/// parallel, so each filters on its own endpoint).
pub(crate) fn https_logs(needle: &str) -> Vec<Record> {
    captured_logs().into_iter().filter(|r| r.target == "vigil::https" && r.message.contains(needle)).collect()
}

/// Whether any record of any target contains `needle`.
pub(crate) fn any_log_contains(needle: &str) -> bool {
    captured_logs().iter().any(|r| r.message.contains(needle))
}

/// Starts a collector with default settings.
pub(crate) fn collector() -> Collector {
    capture_logs();
    Collector::builder().start().expect("collector starts")
}

/// Starts a collector that closes idle connections quickly, so a test can
/// force the sink onto a new connection (and a new handshake).
pub(crate) fn collector_with_short_idle() -> Collector {
    capture_logs();
    Collector::builder().idle_timeout(Some(Duration::from_millis(200))).start().expect("collector starts")
}

/// Waits until the collector has no open connection, so the sink's next
/// request opens a new one.
pub(crate) fn wait_idle(collector: &Collector) {
    assert!(
        collector.wait_for(DEADLINE, |s: &CollectorStats| s.active_connections == 0),
        "the collector's connections did not close: {:?}",
        collector.stats()
    );
}

/// A config for the collector's endpoint trusting one PEM file.
pub(crate) fn config_for(collector: &Collector, trust: &Path) -> HttpsSinkConfig {
    HttpsSinkConfig::new(collector.endpoint()).trust_file(trust).timeout_global(Some(DEADLINE))
}

/// An NDJSON batch of these sequence numbers, keyed by `key`.
pub(crate) fn batch(key: &str, seqs: std::ops::Range<u64>) -> Batch {
    let seqs: Vec<u64> = seqs.collect();
    let body: String = seqs.iter().map(|s| format!("{{\"seq\":{s},\"msg\":\"event {s}\"}}\n")).collect();
    Batch::new(key, Encoding::Ndjson, seqs, body.into_bytes())
}

/// The [`HttpsError`] inside a failed delivery.
pub(crate) fn https_error(delivery: &Delivery) -> &HttpsError {
    delivery
        .error()
        .unwrap_or_else(|| panic!("expected a failed delivery, got {delivery:?}"))
        .downcast_ref::<HttpsError>()
        .expect("the delivery error is an HttpsError")
}

/// Delivers and asserts success.
pub(crate) fn deliver_ok(sink: &mut HttpsSink, batch: &Batch) {
    let delivery = sink.deliver(batch, None);
    assert!(matches!(delivery, Delivery::Delivered), "expected delivered, got {delivery:?}");
}

/// Delivers inside a polling loop against a collector that closes idle
/// connections quickly. A request can race the collector closing the pooled
/// connection; that is a retryable failure (the batcher would retry), so it is
/// tolerated here. Anything else but success fails the test.
pub(crate) fn deliver_in_loop(sink: &mut HttpsSink, batch: &Batch) {
    match sink.deliver(batch, None) {
        Delivery::Delivered | Delivery::Retryable { .. } => {}
        other => panic!("expected delivered (or a retryable race), got {other:?}"),
    }
}

/// Delivers (successfully, or with a retryable race) until the stats show
/// `n` refused trust reloads.
pub(crate) fn deliver_until_refused(sink: &mut HttpsSink, stats: &HttpsStats, n: u64) {
    let mut i = 0;
    assert!(
        eventually(|| {
            i += 1;
            deliver_in_loop(sink, &batch(&format!("tr-wait-{n}-{i}"), 1000 * n + i..1000 * n + i + 1));
            stats.snapshot().trust_reload_failures >= n
        }),
        "reload failure #{n} was not seen: {:?}",
        stats.snapshot()
    );
}

/// A minimal HTTPS server on loopback that serves a chain of our choosing
/// (leaf, then intermediates), which the collector does not: it answers
/// every request `200` and closes the connection. Stops when dropped.
pub(crate) struct ChainServer {
    addr: std::net::SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl ChainServer {
    pub(crate) fn start(chain: &[&rcgen::Certificate], key: &rcgen::KeyPair) -> ChainServer {
        use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
        use std::io::{Read, Write};
        let chain: Vec<CertificateDer<'static>> = chain.iter().map(|c| c.der().clone()).collect();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let config =
            rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("protocols")
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .expect("server config");
        let config = std::sync::Arc::new(config);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(DEADLINE));
                let Ok(conn) = rustls::ServerConnection::new(config.clone()) else { continue };
                let mut tls = rustls::StreamOwned::new(conn, stream);
                // Read the head and the body, then answer and close.
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                let complete = loop {
                    match tls.read(&mut buf) {
                        Ok(0) | Err(_) => break false,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                    if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&request[..end]).to_ascii_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            break true;
                        }
                    }
                };
                if complete {
                    let _ = tls.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                }
            }
        });
        ChainServer { addr, stop }
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("https://{}/ingest", self.addr)
    }
}

impl Drop for ChainServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = std::net::TcpStream::connect(self.addr);
    }
}
