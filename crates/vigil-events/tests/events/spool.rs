//! The spool in one process: what a stop leaves on disk, the next run
//! delivers first; the ledger holds over the spool's life; a second pipeline
//! on the same directory is refused; a vanished directory and a full spool
//! never hurt emit, are counted, and spooling resumes. (The `kill -9` test is
//! in the workspace's tests/spool_crash.rs.)

use crate::support;

use std::time::Duration;

use support::*;
use vigil_events::{BuildError, Config, EventPipeline, SpoolConfig, SpoolError, SyncPolicy};
use vigil_testkit::TempDir;

fn spooled(dir: &TempDir) -> Config {
    fast_config().spool(
        SpoolConfig::new(dir.path("spool")).segment_bytes(4096).sync(SyncPolicy::Interval(Duration::from_millis(20))),
    )
}

/// The (seq, event id) pairs the sink received, in order.
fn record_ids(control: &Control) -> Vec<(u64, u64)> {
    control.delivered().iter().flat_map(|a| a.seqs.iter().copied().zip(a.ids.iter().copied())).collect()
}

#[test]
fn what_a_stop_leaves_on_disk_the_next_run_delivers_first_and_the_ledger_holds_over_both() {
    let dir = TempDir::new("restart");
    // Run 1: the receiver is down (every attempt retryable) and the stop closes the pipeline.
    let control = Control::new();
    control.set_default(Step::Retry(None));
    let mut run = start(spooled(&dir), &control);
    run.emit_all(0..300);
    wait_until("all 300 are durable", || run.handle.durable_seq() == Some(299));
    let id = run.handle.spool_id().expect("a spool").to_owned();
    run.handle.close();
    run.shutdown();
    let first = run.handle.ledger();
    assert_balanced(&first);
    assert_eq!((first.accepted, first.delivered, first.pending, first.dropped.total()), (300, 0, 300, 0), "{first}");
    assert_eq!(first.durable, 300);
    drop(run);

    // Run 2, same directory: the backlog goes first, then new events; numbers continue.
    let control = Control::new();
    control.set_default(Step::Retry(None));
    let mut run = start(spooled(&dir), &control);
    assert_eq!(run.handle.spool_id(), Some(id.as_str()), "the spool id is stable");
    // The batcher is already moving the backlog from disk to its batch (and
    // retrying it): a snapshot is exact only between two such steps (see
    // `LedgerSnapshot`), so wait for one that is, rather than read once.
    wait_until("the recovered backlog is counted as accepted and pending", || {
        let l = run.handle.ledger();
        (l.recovered, l.accepted, l.pending, l.delivered) == (300, 300, 300, 0) && l.is_balanced()
    });
    control.set_default(Step::Deliver);
    run.emit_all(300..400);
    wait_until("everything is delivered", || run.handle.ledger().delivered == 400);
    run.shutdown();
    let ledger = run.handle.ledger();
    assert_balanced(&ledger);
    assert_eq!((ledger.accepted, ledger.delivered, ledger.pending), (400, 400, 0), "{ledger}");
    let got = record_ids(&control);
    let seqs: Vec<u64> = got.iter().map(|p| p.0).collect();
    assert_eq!(seqs, (0..400).collect::<Vec<_>>(), "in order, numbers continue across the restart");
    let ids: Vec<u64> = got.iter().map(|p| p.1).collect();
    assert_eq!(ids, (0..400).collect::<Vec<_>>(), "the backlog first");
    drop(run);

    // Run 3: nothing left, and the lifetime ledger is read back from the checkpoint.
    let control = Control::new();
    let mut run = start(spooled(&dir), &control);
    let ledger = run.handle.ledger();
    assert_eq!((ledger.accepted, ledger.delivered, ledger.recovered, ledger.pending), (400, 400, 0, 0), "{ledger}");
    run.shutdown();
}

#[test]
fn every_record_carries_its_stable_event_id() {
    let dir = TempDir::new("ids");
    let records = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
    let sink_records = std::sync::Arc::clone(&records);
    let spool_id = deliver_five(spooled(&dir), move || Recorder(std::sync::Arc::clone(&sink_records)));
    assert_eq!(spool_id.len(), 32, "128 random bits in hex");
    let records = records.lock();
    assert_eq!(records.len(), 5);
    for (i, v) in records.iter().enumerate() {
        assert_eq!(v["seq"], i as u64);
        assert_eq!(v["id"], format!("{spool_id}-{i}"), "{v}");
        assert_eq!(v["event"]["id"], i as u64);
    }
}

#[test]
fn a_spooled_otlp_pipeline_sends_log_records_that_carry_the_stable_id() {
    let dir = TempDir::new("otlp");
    let bodies = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
    let sink_bodies = std::sync::Arc::clone(&bodies);
    let config = spooled(&dir).otlp_logs(vigil_events::OtlpLogs::new().service_name("spool-test"));
    let spool_id = deliver_five(config, move || BodyRecorder(std::sync::Arc::clone(&sink_bodies)));
    let records: Vec<serde_json::Value> = bodies
        .lock()
        .iter()
        .flat_map(|body| body["resourceLogs"][0]["scopeLogs"][0]["logRecords"].as_array().cloned().unwrap_or_default())
        .collect();
    assert_eq!(records.len(), 5, "one log record per event, read back from disk");
    for (i, record) in records.iter().enumerate() {
        let attribute = |key: &str| {
            record["attributes"]
                .as_array()
                .and_then(|a| a.iter().find(|kv| kv["key"] == key))
                .map(|kv| kv["value"].clone())
        };
        assert_eq!(
            attribute(vigil_events::SEQ_ATTRIBUTE),
            Some(serde_json::json!({"intValue": i.to_string()})),
            "{record}"
        );
        assert_eq!(
            attribute(vigil_events::ID_ATTRIBUTE),
            Some(serde_json::json!({"stringValue": format!("{spool_id}-{i}")})),
            "{record}"
        );
        assert_eq!(record["body"]["kvlistValue"]["values"][0]["key"], "id", "{record}");
    }
}

/// Runs a pipeline on `config` with the sink `make` builds, delivers five
/// events through it, shuts it down, and returns the spool's id.
fn deliver_five<S: vigil_events::Sink + 'static>(
    config: Config,
    make: impl Fn() -> S + Send + Sync + 'static,
) -> String {
    let (emitter, spec, handle) = EventPipeline::builder::<Ev>(config)
        .sink(move || Ok::<_, std::io::Error>(make()))
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let system = vigil_core::Supervisor::builder().child(spec).start().unwrap();
    for id in 0..5 {
        emitter.emit(Ev { id }).unwrap();
    }
    wait_until("delivered", || handle.ledger().delivered == 5);
    system.shutdown().unwrap();
    handle.spool_id().expect("a spool").to_owned()
}

/// A sink that keeps each batch's body as JSON.
struct BodyRecorder(std::sync::Arc<parking_lot::Mutex<Vec<serde_json::Value>>>);

impl vigil_events::Sink for BodyRecorder {
    fn deliver(&mut self, batch: &vigil_events::Batch, _: Option<Duration>) -> vigil_events::Delivery {
        self.0.lock().push(serde_json::from_slice(batch.body()).unwrap());
        vigil_events::Delivery::Delivered
    }
}

/// A sink that keeps the raw records.
struct Recorder(std::sync::Arc<parking_lot::Mutex<Vec<serde_json::Value>>>);

impl vigil_events::Sink for Recorder {
    fn deliver(&mut self, batch: &vigil_events::Batch, _: Option<Duration>) -> vigil_events::Delivery {
        let mut out = self.0.lock();
        for line in batch.body().split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            out.push(serde_json::from_slice(line).unwrap());
        }
        vigil_events::Delivery::Delivered
    }
}

#[test]
fn a_second_pipeline_on_the_same_directory_gets_a_typed_error() {
    let dir = TempDir::new("locked");
    let control = Control::new();
    let mut run = start(spooled(&dir), &control);
    let err = EventPipeline::builder::<Ev>(spooled(&dir)).sink(control.factory()).build().unwrap_err();
    assert_eq!(err, BuildError::Spool(SpoolError::Locked { dir: dir.path("spool") }));
    run.shutdown();
}

#[test]
fn a_vanished_directory_never_hurts_emit_is_counted_and_spooling_resumes() {
    let dir = TempDir::new("vanish");
    let control = Control::new();
    let config =
        fast_config().spool(SpoolConfig::new(dir.path("spool")).segment_bytes(256).sync(SyncPolicy::EveryWrite));
    let mut run = start(config, &control);
    run.emit_all(0..50);
    wait_until("the first 50 are delivered", || run.handle.ledger().delivered == 50);
    // The directory goes away: the next segment cannot be created.
    let gone = dir.path("gone");
    std::fs::rename(dir.path("spool"), &gone).unwrap();
    run.emit_all(50..150);
    wait_until("the rest is resolved, from memory", || {
        let l = run.handle.ledger();
        l.delivered + l.dropped.corrupt == 150
    });
    let ledger = run.handle.ledger();
    assert!(ledger.spool_unavailable > 0, "{ledger}");
    assert_eq!(ledger.last_error.as_ref().map(|e| e.kind.as_str()), Some("spool"), "{ledger}");
    // It comes back: the writer tries again and writes to disk.
    std::fs::create_dir_all(dir.path("spool")).unwrap();
    let durable_before = ledger.durable;
    let mut next = 150;
    wait_until("spooling resumes", || {
        run.emit_all(next..next + 10);
        next += 10;
        run.handle.ledger().durable > durable_before
    });
    wait_until("all resolved", || {
        let l = run.handle.ledger();
        l.delivered + l.dropped.corrupt == next
    });
    run.shutdown();
    let _ = std::fs::remove_dir_all(&gone);
    let ledger = run.handle.ledger();
    assert_balanced(&ledger);
    // Records written to the moved directory and not read back yet are lost
    // with it, counted as corrupt; every other event arrives once.
    let delivered = control.delivered_ids().len() as u64;
    assert_eq!(delivered + ledger.dropped.corrupt, next, "{ledger}");
    assert_eq!(ledger.delivered, delivered);
}

#[test]
fn a_full_spool_goes_from_memory_and_is_counted_as_spool_full() {
    let dir = TempDir::new("full");
    let control = Control::new();
    control.set_default(Step::Retry(None));
    let config = fast_config()
        .max_batch_age(Duration::from_secs(600))
        .spool(SpoolConfig::new(dir.path("spool")).segment_bytes(1024).max_bytes(2048).sync(SyncPolicy::Os));
    let mut run = start(config, &control);
    run.emit_all(0..200);
    wait_until("the spool fills and the rest waits in memory", || {
        let l = run.handle.ledger();
        l.queued == 0 && l.durable > 0
    });
    control.set_default(Step::Deliver);
    wait_until("all delivered", || run.handle.ledger().delivered == 200);
    run.shutdown();
    let ledger = run.handle.ledger();
    assert_balanced(&ledger);
    assert!(ledger.durable < 200 && ledger.durable > 0, "{ledger}");
    assert_eq!(ledger.spool_full + ledger.durable, 200, "each event went one way: {ledger}");
    assert_each_delivered_once(&control, 0..200);
}
