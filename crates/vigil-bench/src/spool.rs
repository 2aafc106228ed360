//! The durable spool (issue 16): `spool_throughput`, `emit_cost_spool` and
//! `spool_recovery`. Every variant writes under the same directory
//! (`std::env::temp_dir()`), so both sides of a ratio use one filesystem.
//!
//! `spool_throughput`, events per second:
//! - Vigil: `SpoolWriter::write` of pre-encoded record tails in chunks of
//!   1,024 (as the pipeline's spool writer writes them), segments rotating at
//!   the default 32 MiB, synced under the default policy (every 100 ms, plus
//!   each segment as it is sealed), and a final sync.
//! - Baseline: `write_all` of the same framed bytes, in the same chunks, to
//!   one file, `fdatasync` every 100 ms and at the end.
//!
//! `emit_cost_spool`, ns per event: 4 producers emit into a running pipeline
//! whose sink delivers at once, with a spool (its writer moving every event
//! to disk meanwhile) and without (the baseline). The buffer holds every
//! event, so nothing is dropped either way.
//!
//! Its facts add the window from `emit` to durable at the default policy:
//! events emitted one at a time, each timed until `durable_seq()` covers it.
//!
//! `spool_recovery`, ms: opening a spool that holds the events of a
//! repetition (scan, checksums, checkpoint), against reading the same
//! segment files raw with `fs::read`.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;
use vigil_core::Supervisor;
use vigil_events::{Batch, Config as EventsConfig, Delivery, EventPipeline, Sink, SpoolConfig};

use crate::emit::event;
use crate::error::BenchError;
use crate::harness::{Variant, interleave};
use crate::report::{Bound, Figure, Reference, Role};

const THROUGHPUT: &str = "spool_throughput";
const EMIT: &str = "emit_cost_spool";
const RECOVERY: &str = "spool_recovery";
const CHUNK: usize = 1024;
const SYNC_EVERY: Duration = Duration::from_millis(100);
const PRODUCERS: usize = 4;

static DIRS: AtomicU64 = AtomicU64::new(0);

/// A fresh directory under the temp dir, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(what: &str) -> Result<Scratch, BenchError> {
        let n = DIRS.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("vigil-bench-{what}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| BenchError::setup(THROUGHPUT, format!("{}: {e}", dir.display())))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The record tails the pipeline's writer would write for `n` events.
fn tails(n: u64) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let mut t = format!("\"ts\":{},\"event\":", 1_700_000_000_000u64 + i).into_bytes();
            serde_json::to_writer(&mut t, &event(i)).unwrap_or_default();
            t.push(b'}');
            t
        })
        .collect()
}

fn io(figure: &'static str, e: impl std::fmt::Display) -> BenchError {
    BenchError::setup(figure, e.to_string())
}

fn vigil_write(tails: &[Vec<u8>]) -> Result<f64, BenchError> {
    let dir = Scratch::new("spool")?;
    let (mut writer, _reader, status, _) =
        vigil_spool::open(SpoolConfig::new(&dir.0).max_bytes(u64::MAX / 2)).map_err(|e| io(THROUGHPUT, e))?;
    let start = Instant::now();
    for chunk in tails.chunks(CHUNK) {
        let now = Instant::now();
        writer.write(chunk.iter().map(Vec::as_slice), now).map_err(|e| io(THROUGHPUT, e))?;
        writer.maybe_sync(now).map_err(|e| io(THROUGHPUT, e))?;
    }
    writer.sync(Instant::now()).map_err(|e| io(THROUGHPUT, e))?;
    let elapsed = start.elapsed();
    if status.durable_seq() != Some(tails.len() as u64 - 1) {
        return Err(BenchError::check(THROUGHPUT, "not every record became durable"));
    }
    Ok(tails.len() as f64 / elapsed.as_secs_f64())
}

/// The framed bytes of each chunk, as the spool lays them out.
fn framed(tails: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut seq = 0u64;
    tails
        .chunks(CHUNK)
        .map(|chunk| {
            let mut out = Vec::new();
            for t in chunk {
                out.extend_from_slice(b"VGS1");
                out.extend_from_slice(&(t.len() as u32).to_le_bytes());
                out.extend_from_slice(&seq.to_le_bytes());
                out.extend_from_slice(&[0; 4]);
                out.extend_from_slice(t);
                seq += 1;
            }
            out
        })
        .collect()
}

fn raw_write(chunks: &[Vec<u8>], events: u64) -> Result<f64, BenchError> {
    let dir = Scratch::new("raw")?;
    let mut file = File::create(dir.0.join("raw.seg")).map_err(|e| io(THROUGHPUT, e))?;
    let start = Instant::now();
    let mut last_sync = start;
    for chunk in chunks {
        file.write_all(chunk).map_err(|e| io(THROUGHPUT, e))?;
        if last_sync.elapsed() >= SYNC_EVERY {
            file.sync_data().map_err(|e| io(THROUGHPUT, e))?;
            last_sync = Instant::now();
        }
    }
    file.sync_data().map_err(|e| io(THROUGHPUT, e))?;
    Ok(events as f64 / start.elapsed().as_secs_f64())
}

pub(crate) fn throughput_figure(config: &crate::Config) -> Result<Figure, BenchError> {
    let n = config.spool_events;
    let tails = tails(n);
    let chunks = framed(&tails);
    let mut variants: Vec<Variant<'_>> = vec![Box::new(|| raw_write(&chunks, n)), Box::new(|| vigil_write(&tails))];
    let mut s = interleave(THROUGHPUT, config.reps, &mut variants)?.into_iter();
    let (Some(baseline), Some(value)) = (s.next(), s.next()) else {
        return Err(BenchError::check(THROUGHPUT, "missing variant"));
    };
    let bytes: usize = chunks.iter().map(Vec::len).sum();
    Ok(Figure {
        key: THROUGHPUT,
        what: "SpoolWriter::write of 1,024-record chunks, 32 MiB segments, fdatasync every 100 ms (the defaults)",
        unit: "events/s",
        cpu_ns_per_op: None,
        value,
        references: vec![Reference {
            name: "raw_write_all_fdatasync_100ms",
            what: "write_all of the same framed bytes in the same chunks to one file, fdatasync every 100 ms",
            role: Role::Baseline,
            cpu_ns_per_op: None,
            summary: baseline,
        }],
        target: vec![Bound::BaselineRatioAtLeast(0.8)],
        facts: vec![
            ("events", json!(n)),
            ("bytes", json!(bytes)),
            ("dir", json!(std::env::temp_dir().display().to_string())),
        ],
    })
}

/// Delivers at once.
struct Null;

impl Sink for Null {
    fn deliver(&mut self, _: &Batch, _: Option<Duration>) -> Delivery {
        Delivery::Delivered
    }
}

fn emit_run(per: u64, spool: Option<&Path>) -> Result<f64, BenchError> {
    let total = per * PRODUCERS as u64;
    let mut config = EventsConfig::default().capacity(total as usize).max_batch_events(1000.min(total as usize));
    if let Some(dir) = spool {
        config = config.spool(SpoolConfig::new(dir).max_bytes(u64::MAX / 2));
    }
    let (emitter, spec, handle) =
        EventPipeline::builder(config).sink(|| Ok::<_, std::io::Error>(Null)).build().map_err(|e| io(EMIT, e))?;
    let system = Supervisor::builder().child(spec).start().map_err(|e| io(EMIT, e))?;
    let barrier = std::sync::Barrier::new(PRODUCERS);
    let span = thread::scope(|s| {
        let threads: Vec<_> = (0..PRODUCERS)
            .map(|_| {
                let (barrier, emitter) = (&barrier, emitter.clone());
                s.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    let mut refused = 0u64;
                    for i in 0..per {
                        refused += u64::from(emitter.emit(event(i)).is_err());
                    }
                    (start, Instant::now(), refused)
                })
            })
            .collect();
        let mut span: Option<(Instant, Instant)> = None;
        let mut refused = 0;
        for t in threads {
            let (a, b, r) = t.join().map_err(|_| BenchError::check(EMIT, "a producer panicked"))?;
            refused += r;
            span = Some(span.map_or((a, b), |(s, e)| (s.min(a), e.max(b))));
        }
        if refused > 0 {
            return Err(BenchError::check(EMIT, format!("{refused} events refused")));
        }
        span.map(|(a, b)| b - a).ok_or_else(|| BenchError::check(EMIT, "no producers"))
    })?;
    handle.flush(Duration::from_secs(120)).map_err(|e| io(EMIT, e))?;
    handle.close();
    system.shutdown().map_err(|e| io(EMIT, e))?;
    let ledger = handle.ledger();
    if ledger.delivered != total {
        return Err(BenchError::check(EMIT, format!("delivered {} of {total}", ledger.delivered)));
    }
    Ok(span.as_nanos() as f64 / total as f64)
}

/// The time from `emit` until `durable_seq()` covers the event, for `n`
/// events one at a time, at the default sync policy, sorted, in ms.
fn emit_to_durable(n: u64) -> Result<Vec<f64>, BenchError> {
    let dir = Scratch::new("window")?;
    let config = EventsConfig::default().spool(SpoolConfig::new(&dir.0));
    let (emitter, spec, handle) =
        EventPipeline::builder(config).sink(|| Ok::<_, std::io::Error>(Null)).build().map_err(|e| io(EMIT, e))?;
    let system = Supervisor::builder().child(spec).start().map_err(|e| io(EMIT, e))?;
    let mut waits = Vec::new();
    for i in 0..n {
        let start = Instant::now();
        emitter.emit(event(i)).map_err(|_| BenchError::check(EMIT, "emit refused"))?;
        // A fresh spool numbers its events from 0 in emit order (one producer).
        while handle.durable_seq().is_none_or(|d| d < i) {
            if start.elapsed() > Duration::from_secs(10) {
                return Err(BenchError::check(EMIT, "an event did not become durable within 10 s"));
            }
            thread::sleep(Duration::from_micros(100));
        }
        waits.push(start.elapsed().as_secs_f64() * 1e3);
    }
    handle.close();
    system.shutdown().map_err(|e| io(EMIT, e))?;
    waits.sort_by(f64::total_cmp);
    Ok(waits)
}

pub(crate) fn emit_figure(config: &crate::Config) -> Result<Figure, BenchError> {
    let per = config.spool_events / PRODUCERS as u64;
    let mut variants: Vec<Variant<'_>> = vec![
        Box::new(|| emit_run(per, None)),
        Box::new(|| {
            let dir = Scratch::new("emit")?;
            emit_run(per, Some(&dir.0))
        }),
    ];
    let mut s = interleave(EMIT, config.reps, &mut variants)?.into_iter();
    let (Some(baseline), Some(value)) = (s.next(), s.next()) else {
        return Err(BenchError::check(EMIT, "missing variant"));
    };
    let window = emit_to_durable((config.spool_events / 20_000).max(2))?;
    Ok(Figure {
        key: EMIT,
        what: "Emitter::emit, 4 producers, into a running pipeline with a spool (its writer spooling meanwhile)",
        unit: "ns",
        cpu_ns_per_op: None,
        value,
        references: vec![Reference {
            name: "emit_without_spool_4p",
            what: "the same pipeline and producers without a spool",
            role: Role::Baseline,
            cpu_ns_per_op: None,
            summary: baseline,
        }],
        target: vec![Bound::BaselineRatioAtMost(1.05)],
        facts: vec![
            ("producers", json!(PRODUCERS)),
            ("events_per_producer", json!(per)),
            ("emit_to_durable_ms_median", json!(window.get(window.len() / 2))),
            ("emit_to_durable_ms_max", json!(window.last())),
            ("emit_to_durable_events", json!(window.len())),
        ],
    })
}

/// A spool directory holding `n` unacknowledged events, written once.
fn filled_spool(n: u64) -> Result<Scratch, BenchError> {
    let dir = Scratch::new("recovery")?;
    {
        let (mut writer, _, _, _) =
            vigil_spool::open(SpoolConfig::new(&dir.0).max_bytes(u64::MAX / 2)).map_err(|e| io(RECOVERY, e))?;
        for chunk in tails(n).chunks(CHUNK) {
            writer.write(chunk.iter().map(Vec::as_slice), Instant::now()).map_err(|e| io(RECOVERY, e))?;
        }
        writer.sync(Instant::now()).map_err(|e| io(RECOVERY, e))?;
    }
    Ok(dir)
}

fn recover(dir: &Path, n: u64) -> Result<f64, BenchError> {
    let start = Instant::now();
    let (_, _, _, recovery) = vigil_spool::open(SpoolConfig::new(dir)).map_err(|e| io(RECOVERY, e))?;
    let elapsed = start.elapsed();
    if recovery.pending != n || recovery.corrupt != 0 {
        return Err(BenchError::check(
            RECOVERY,
            format!("recovered {} of {n}, {} corrupt", recovery.pending, recovery.corrupt),
        ));
    }
    Ok(elapsed.as_secs_f64() * 1e3)
}

fn raw_read(dir: &Path) -> Result<f64, BenchError> {
    let start = Instant::now();
    let mut bytes = 0;
    for entry in std::fs::read_dir(dir).map_err(|e| io(RECOVERY, e))? {
        let path = entry.map_err(|e| io(RECOVERY, e))?.path();
        if path.extension().is_some_and(|e| e == "seg") {
            bytes += std::fs::read(&path).map_err(|e| io(RECOVERY, e))?.len();
        }
    }
    if bytes == 0 {
        return Err(BenchError::check(RECOVERY, "no segment read"));
    }
    Ok(start.elapsed().as_secs_f64() * 1e3)
}

pub(crate) fn recovery_figure(config: &crate::Config) -> Result<Figure, BenchError> {
    let n = config.spool_events;
    let dir = filled_spool(n)?;
    let mut variants: Vec<Variant<'_>> = vec![Box::new(|| raw_read(&dir.0)), Box::new(|| recover(&dir.0, n))];
    let mut s = interleave(RECOVERY, config.reps, &mut variants)?.into_iter();
    let (Some(baseline), Some(value)) = (s.next(), s.next()) else {
        return Err(BenchError::check(RECOVERY, "missing variant"));
    };
    Ok(Figure {
        key: RECOVERY,
        what: "vigil_spool::open of a spool holding every event unacknowledged: lock, scan, CRC-32C, checkpoint",
        unit: "ms",
        cpu_ns_per_op: None,
        value,
        references: vec![Reference {
            name: "raw_fs_read_segments",
            what: "fs::read of the same segment files",
            role: Role::Baseline,
            cpu_ns_per_op: None,
            summary: baseline,
        }],
        // 1 M events (the full run) in under 5 s on a loaded 2-core machine.
        target: vec![Bound::ValueBelow(5_000.0 * n as f64 / 1e6)],
        facts: vec![("events", json!(n))],
    })
}
