//! `delivery_throughput`: events per second delivered end to end over one
//! HTTPS connection to a `vigil-collector` on loopback.
//!
//! - Vigil: `Emitter::emit` of every event (the buffer holds them all),
//!   the batcher cutting 1,000-event NDJSON batches, `HttpsSink` POSTing
//!   them; the clock stops when `EventsHandle::flush` has delivered the last.
//! - Baseline: the same events, encoded into the same records
//!   (`{"seq":N,"ts":T,"event":{...}}`, NDJSON) 1,000 at a time by one
//!   thread, each batch POSTed with ureq over rustls (*ring*) and its answer
//!   read before the next batch is encoded. No timeouts are set: the limit.
//! - Extra baseline: the same, with a per-request `timeout_global` of 30 s,
//!   as any production client (and `HttpsSink`) sets. With a timeout, ureq
//!   3.5 resolves the host on a freshly spawned thread for every request,
//!   even one that reuses a pooled connection; this reference shows what
//!   that costs on this machine.
//!
//! Every repetition gets a fresh collector (certificates made at start-up,
//! outside the clock); the TLS handshake of the one connection is inside the
//! clock for both. Each run checks that the collector counted every event.

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};
use vigil_collector::Collector;
use vigil_core::Supervisor;
use vigil_events::{Config as EventsConfig, EventPipeline};
use vigil_https::HttpsSinkConfig;

use crate::emit::event;
use crate::error::BenchError;
use crate::harness::{Variant, interleave};
use crate::report::{Bound, Figure, Reference, Role};
use crate::stats::per_second;

const KEY: &str = "delivery_throughput";
const WAIT: Duration = Duration::from_secs(120);

fn collector() -> Result<Collector, BenchError> {
    Collector::builder().start().map_err(|e| BenchError::setup(KEY, format!("collector: {e}")))
}

fn check_received(collector: &Collector, n: u64) -> Result<(), BenchError> {
    if !collector.wait_for_events(n as usize, Duration::from_secs(10)) {
        let got = collector.stats().events_received;
        return Err(BenchError::check(KEY, format!("the collector received {got} of {n} events")));
    }
    Ok(())
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn raw(n: u64, batch: u64, timeout: Option<Duration>) -> Result<f64, BenchError> {
    let collector = collector()?;
    let pem = std::fs::read(collector.ca_pem_path()).map_err(|e| BenchError::setup(KEY, e))?;
    let ca = Certificate::from_pem(&pem).map_err(|e| BenchError::setup(KEY, e))?;
    let tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .root_certs(RootCerts::new_with_certs(&[ca]))
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .build();
    let agent = ureq::Agent::config_builder().tls_config(tls).timeout_global(timeout).build().new_agent();
    let endpoint = collector.endpoint();
    let mut body = Vec::with_capacity(batch as usize * 128);
    let start = Instant::now();
    let mut seq = 0;
    while seq < n {
        let end = (seq + batch).min(n);
        let ts = unix_ms();
        body.clear();
        for i in seq..end {
            let _ = write!(body, "{{\"seq\":{i},\"ts\":{ts},\"event\":");
            serde_json::to_writer(&mut body, &event(i)).map_err(|e| BenchError::setup(KEY, e))?;
            body.extend_from_slice(b"}\n");
        }
        let mut response = agent
            .post(&endpoint)
            .header("Content-Type", "application/x-ndjson")
            .header("Idempotency-Key", format!("raw-{seq}-{}", end - 1))
            .send(&body[..])
            .map_err(|e| BenchError::check(KEY, format!("raw POST: {e}")))?;
        response.body_mut().read_to_vec().map_err(|e| BenchError::check(KEY, format!("raw answer: {e}")))?;
        seq = end;
    }
    let elapsed = start.elapsed();
    check_received(&collector, n)?;
    let connections = collector.stats().connections;
    collector.shutdown();
    if connections != 1 {
        return Err(BenchError::check(KEY, format!("the raw client used {connections} connections, not 1")));
    }
    Ok(per_second(n, elapsed))
}

fn vigil(n: u64, batch: u64) -> Result<f64, BenchError> {
    let collector = collector()?;
    let sink = HttpsSinkConfig::new(collector.endpoint()).trust_file(collector.ca_pem_path());
    let config = EventsConfig::default().capacity(n.max(batch) as usize).max_batch_events(batch as usize);
    let (emitter, spec, handle) =
        EventPipeline::builder(config).sink(move || sink.build()).build().map_err(|e| BenchError::setup(KEY, e))?;
    let system = Supervisor::builder().child(spec).start().map_err(|e| BenchError::setup(KEY, e))?;
    let start = Instant::now();
    for i in 0..n {
        emitter.emit(event(i)).map_err(|e| BenchError::check(KEY, format!("emit: {e}")))?;
    }
    let report = handle.flush(WAIT).map_err(|e| BenchError::check(KEY, format!("flush: {e}")))?;
    let elapsed = start.elapsed();
    let ledger = handle.ledger();
    handle.close();
    system.shutdown().map_err(|e| BenchError::setup(KEY, e))?;
    if ledger.delivered != n || report.pending != 0 {
        return Err(BenchError::check(
            KEY,
            format!("delivered {} of {n}, {} pending", ledger.delivered, report.pending),
        ));
    }
    check_received(&collector, n)?;
    let connections = collector.stats().connections;
    collector.shutdown();
    if connections != 1 {
        return Err(BenchError::check(KEY, format!("HttpsSink used {connections} connections, not 1")));
    }
    Ok(per_second(n, elapsed))
}

pub(crate) fn figure(config: &crate::Config) -> Result<Figure, BenchError> {
    let (n, batch) = (config.delivery_events, config.batch_events as u64);
    let mut variants: Vec<Variant<'_>> = vec![
        Box::new(|| raw(n, batch, None)),
        Box::new(|| vigil(n, batch)),
        Box::new(|| raw(n, batch, Some(Duration::from_secs(30)))),
    ];
    let mut s = interleave(KEY, config.reps, &mut variants)?.into_iter();
    let (Some(baseline), Some(value), Some(with_timeout)) = (s.next(), s.next(), s.next()) else {
        return Err(BenchError::check(KEY, "missing variant"));
    };
    Ok(Figure {
        key: KEY,
        what: "emit -> batcher -> HttpsSink -> vigil-collector (loopback, rustls/ring, one connection)",
        unit: "events/s",
        cpu_ns_per_op: None,
        value,
        references: vec![
            Reference {
                name: "raw_serialize_and_post",
                what: "one thread encodes each 1,000-event NDJSON batch, POSTs it with ureq+rustls, reads the answer",
                role: Role::Baseline,
                cpu_ns_per_op: None,
                summary: baseline,
            },
            Reference {
                name: "raw_serialize_and_post_timeout",
                what: "the same with ureq timeout_global(30 s) per request, as HttpsSink sets",
                role: Role::ExtraBaseline,
                cpu_ns_per_op: None,
                summary: with_timeout,
            },
        ],
        target: vec![Bound::BaselineRatioAtLeast(0.9)],
        facts: vec![("events", json!(n)), ("batch_events", json!(batch))],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_variants_deliver_every_event_on_one_connection() {
        assert!(raw(2_500, 1_000, None).unwrap() > 0.0);
        assert!(raw(2_500, 1_000, Some(Duration::from_secs(30))).unwrap() > 0.0);
        assert!(vigil(2_500, 1_000).unwrap() > 0.0);
    }
}
