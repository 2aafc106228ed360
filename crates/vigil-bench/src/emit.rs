//! `emit_cost` and `emit_blocked_p999`: what `Emitter::emit` costs a request
//! thread, and how long it can take while the sink hangs.
//!
//! `emit_cost`, 4 producers:
//! - Vigil: `Emitter::emit` of a small request event into a pipeline whose
//!   buffer holds every event of the repetition; the batcher is not
//!   started, so nothing but the producers runs and nothing is dropped.
//! - Baseline: `crossbeam_queue::ArrayQueue::push` of the same entry
//!   (sequence number, timestamp, event), same capacity, same producers.
//!
//!   The value is the wall time from the producers' common start until the
//!   last one finishes, divided by the events of all producers.
//!
//! `emit_blocked_p999`, 8 producers, the batcher running and its sink hung
//! (blocked inside `deliver` until released, which happens only after every
//! producer has finished):
//! - Vigil: the 99.9th percentile of the latency of single `emit` calls.
//!   The buffer fills, so most calls take the `Full` path, as they would in
//!   production.
//! - Baseline: the same percentile of raw `ArrayQueue::push` calls on a
//!   queue of the same capacity that nobody drains.
//!
//!   `never_blocked` holds when every producer finished while the sink was
//!   still hung and no single emit took as long as [`BLOCKED`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use crossbeam_queue::ArrayQueue;
use serde::Serialize;
use serde_json::json;
use vigil_core::Supervisor;
use vigil_events::{Batch, Config as EventsConfig, Delivery, EventPipeline, Sink};

use crate::error::BenchError;
use crate::harness::{Variant, interleave};
use crate::report::{Bound, Figure, Reference, Role};
use crate::stats::quantile;

const COST: &str = "emit_cost";
const BLOCKED_KEY: &str = "emit_blocked_p999";
const PRODUCERS: usize = 4;
const BLOCKED_PRODUCERS: usize = 8;
/// An emit that takes this long is counted as blocked. The sink hangs for the
/// whole measurement, so an emit that waited for it would not return before
/// the 30 s deadline at all; this bound only has to sit above what the
/// scheduler alone can do to one call on a loaded 2-core machine (the raw
/// `ArrayQueue::push`, which cannot block, has been seen to take 40 ms when
/// preempted), and it is reported next to the raw maximum.
pub(crate) const BLOCKED: Duration = Duration::from_millis(100);
const WAIT: Duration = Duration::from_secs(30);

/// The event every benchmark emits: what a request thread would record.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct RequestEvent {
    route: &'static str,
    status: u16,
    micros: u64,
}

pub(crate) fn event(i: u64) -> RequestEvent {
    RequestEvent { route: "/v1/charges", status: 200 + (i % 3) as u16, micros: i % 10_000 }
}

/// What the raw queue carries: the entry `emit` builds.
type RawEntry = (u64, u64, RequestEvent);

/// Runs `producers` threads that start together; returns the wall time from
/// the first one starting until the last one finished.
fn race(producers: usize, work: impl Fn(usize) -> Result<(), BenchError> + Sync) -> Result<Duration, BenchError> {
    let barrier = Barrier::new(producers);
    thread::scope(|s| {
        let threads: Vec<_> = (0..producers)
            .map(|p| {
                let (barrier, work) = (&barrier, &work);
                s.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    let r = work(p);
                    (r, start, Instant::now())
                })
            })
            .collect();
        let mut span: Option<(Instant, Instant)> = None;
        for t in threads {
            let (r, start, end) = t.join().map_err(|_| BenchError::check(COST, "a producer panicked"))?;
            r?;
            span = Some(span.map_or((start, end), |(s, e)| (s.min(start), e.max(end))));
        }
        span.map(|(start, end)| end - start).ok_or_else(|| BenchError::check(COST, "no producers"))
    })
}

fn raw_cost(per: u64) -> Result<f64, BenchError> {
    let total = per * PRODUCERS as u64;
    let queue = ArrayQueue::<RawEntry>::new(total as usize);
    let elapsed = race(PRODUCERS, |p| {
        for i in 0..per {
            if queue.push((p as u64 * per + i, 0, event(i))).is_err() {
                return Err(BenchError::check(COST, "the raw queue was full"));
            }
        }
        Ok(())
    })?;
    if queue.len() as u64 != total {
        return Err(BenchError::check(COST, format!("{} of {total} raw entries queued", queue.len())));
    }
    Ok(elapsed.as_nanos() as f64 / total as f64)
}

/// A sink that is never reached in `emit_cost` (the batcher is not started).
struct Unreached;

impl Sink for Unreached {
    fn deliver(&mut self, _: &Batch, _: Option<Duration>) -> Delivery {
        Delivery::Delivered
    }
}

fn vigil_cost(per: u64) -> Result<f64, BenchError> {
    let total = per * PRODUCERS as u64;
    let config = EventsConfig::default().capacity(total as usize).max_batch_events((total as usize).min(1000));
    let (emitter, _spec, handle) = EventPipeline::builder(config)
        .sink(|| Ok::<_, std::io::Error>(Unreached))
        .build()
        .map_err(|e| BenchError::setup(COST, e))?;
    let elapsed = race(PRODUCERS, |_| {
        for i in 0..per {
            if emitter.emit(event(i)).is_err() {
                return Err(BenchError::check(COST, "emit dropped an event the buffer had room for"));
            }
        }
        Ok(())
    })?;
    let accepted = handle.ledger().accepted;
    if accepted != total {
        return Err(BenchError::check(COST, format!("ledger accepted {accepted} of {total}")));
    }
    Ok(elapsed.as_nanos() as f64 / total as f64)
}

pub(crate) fn cost_figure(config: &crate::Config) -> Result<Figure, BenchError> {
    let per = config.emits_per_producer;
    let mut variants: Vec<Variant<'_>> = vec![Box::new(|| raw_cost(per)), Box::new(|| vigil_cost(per))];
    let mut s = interleave(COST, config.reps, &mut variants)?.into_iter();
    let (Some(baseline), Some(value)) = (s.next(), s.next()) else {
        return Err(BenchError::check(COST, "missing variant"));
    };
    Ok(Figure {
        key: COST,
        what: "Emitter::emit, 4 producer threads, wall time per event over all producers",
        unit: "ns",
        cpu_ns_per_op: None,
        value,
        references: vec![Reference {
            name: "raw_arrayqueue_push_4p",
            what: "crossbeam ArrayQueue::push of the same (seq, ts, event) entry, 4 producers",
            role: Role::Baseline,
            cpu_ns_per_op: None,
            summary: baseline,
        }],
        target: vec![Bound::BaselineRatioAtMost(1.5)],
        facts: vec![("producers", json!(PRODUCERS)), ("events_per_producer", json!(per))],
    })
}

/// A sink that blocks inside `deliver` until its release channel is dropped.
struct HangingSink {
    entered: Arc<AtomicBool>,
    release: Receiver<()>,
}

impl Sink for HangingSink {
    fn deliver(&mut self, _: &Batch, _: Option<Duration>) -> Delivery {
        self.entered.store(true, Ordering::SeqCst);
        let _ = self.release.recv();
        Delivery::Delivered
    }
}

/// Latencies of single calls by `BLOCKED_PRODUCERS` producers, in ns, sorted.
/// If they do not all finish within [`WAIT`], `unstick` runs (to release
/// whatever holds them) before the producers are joined.
fn timed_calls(per: u64, call: impl Fn(u64) + Sync, unstick: impl FnOnce()) -> Result<Vec<u64>, BenchError> {
    let barrier = Barrier::new(BLOCKED_PRODUCERS);
    let (done_tx, done) = crossbeam_channel::unbounded();
    let mut all = thread::scope(|s| {
        for _ in 0..BLOCKED_PRODUCERS {
            let (barrier, call, done_tx) = (&barrier, &call, done_tx.clone());
            s.spawn(move || {
                let mut lat = Vec::with_capacity(per as usize);
                barrier.wait();
                for i in 0..per {
                    let start = Instant::now();
                    call(i);
                    lat.push(start.elapsed().as_nanos() as u64);
                }
                let _ = done_tx.send(lat);
            });
        }
        drop(done_tx);
        let mut all = Vec::with_capacity(per as usize * BLOCKED_PRODUCERS);
        for _ in 0..BLOCKED_PRODUCERS {
            match done.recv_timeout(WAIT) {
                Ok(lat) => all.extend(lat),
                Err(_) => {
                    unstick();
                    return Err(BenchError::check(BLOCKED_KEY, "emit blocked: producers did not finish within 30 s"));
                }
            }
        }
        Ok(all)
    })?;
    all.sort_unstable();
    Ok(all)
}

/// One repetition's outcome.
#[derive(Debug, Clone, Copy)]
struct Tail {
    p999_ns: f64,
    max_ns: u64,
    never_blocked: bool,
}

fn tail(sorted: &[u64], finished_while_hung: bool) -> Result<Tail, BenchError> {
    let p999 = quantile(sorted, 0.999).ok_or_else(|| BenchError::check(BLOCKED_KEY, "no emits timed"))?;
    let max_ns = sorted.last().copied().unwrap_or(0);
    Ok(Tail { p999_ns: p999 as f64, max_ns, never_blocked: finished_while_hung && max_ns < BLOCKED.as_nanos() as u64 })
}

fn raw_blocked(per: u64, capacity: usize) -> Result<Tail, BenchError> {
    let queue = ArrayQueue::<RawEntry>::new(capacity);
    let lat = timed_calls(
        per,
        |i| {
            let _ = queue.push((i, 0, event(i)));
        },
        || {},
    )?;
    tail(&lat, true)
}

fn vigil_blocked(per: u64) -> Result<(Tail, u64), BenchError> {
    let config = EventsConfig::default();
    let entered = Arc::new(AtomicBool::new(false));
    let (release_tx, release) = crossbeam_channel::bounded::<()>(0);
    let sink_entered = Arc::clone(&entered);
    let (emitter, spec, handle) = EventPipeline::builder(config)
        .sink(move || {
            Ok::<_, std::io::Error>(HangingSink { entered: Arc::clone(&sink_entered), release: release.clone() })
        })
        .build()
        .map_err(|e| BenchError::setup(BLOCKED_KEY, e))?;
    let system = Supervisor::builder().child(spec).start().map_err(|e| BenchError::setup(BLOCKED_KEY, e))?;
    // Hang the sink: emit until the batcher is inside `deliver`.
    let deadline = Instant::now() + WAIT;
    let mut i = 0;
    while !entered.load(Ordering::SeqCst) {
        if Instant::now() > deadline {
            return Err(BenchError::setup(BLOCKED_KEY, "the sink was never called"));
        }
        let _ = emitter.emit(event(i));
        i += 1;
        if i % 1024 == 0 {
            thread::yield_now();
        }
    }
    let release_tx = std::cell::RefCell::new(Some(release_tx));
    let unstick = || drop(release_tx.borrow_mut().take());
    let lat = timed_calls(
        per,
        |i| {
            let _ = emitter.emit(event(i));
        },
        unstick,
    );
    let lat = match lat {
        Ok(lat) => lat,
        Err(e) => {
            handle.close();
            let _ = system.shutdown();
            return Err(e);
        }
    };
    // Every producer is done; the sink has not been released, so it is still hung.
    let ledger = handle.ledger();
    let finished_while_hung = entered.load(Ordering::SeqCst) && ledger.delivered == 0;
    let dropped_full = ledger.dropped.queue_full;
    drop(release_tx.borrow_mut().take());
    handle.close();
    system.shutdown().map_err(|e| BenchError::setup(BLOCKED_KEY, e))?;
    Ok((tail(&lat, finished_while_hung)?, dropped_full))
}

pub(crate) fn blocked_figure(config: &crate::Config) -> Result<Figure, BenchError> {
    let per = config.blocked_emits_per_producer;
    let capacity = 65_536;
    let tails = std::cell::RefCell::new(Vec::new());
    let dropped = std::cell::Cell::new(0u64);
    let raw_max = std::cell::Cell::new(0u64);
    let mut variants: Vec<Variant<'_>> = vec![
        Box::new(|| {
            let t = raw_blocked(per, capacity)?;
            raw_max.set(raw_max.get().max(t.max_ns));
            Ok(t.p999_ns)
        }),
        Box::new(|| {
            let (t, d) = vigil_blocked(per)?;
            tails.borrow_mut().push(t);
            dropped.set(dropped.get() + d);
            Ok(t.p999_ns)
        }),
    ];
    let mut s = interleave(BLOCKED_KEY, config.reps, &mut variants)?.into_iter();
    drop(variants);
    let (Some(baseline), Some(value)) = (s.next(), s.next()) else {
        return Err(BenchError::check(BLOCKED_KEY, "missing variant"));
    };
    let tails = tails.into_inner();
    let never_blocked = tails.iter().all(|t| t.never_blocked);
    let max_ns = tails.iter().map(|t| t.max_ns).max().unwrap_or(0);
    Ok(Figure {
        key: BLOCKED_KEY,
        what: "p99.9 latency of single Emitter::emit calls, 8 producers, while the sink hangs in deliver",
        unit: "ns",
        cpu_ns_per_op: None,
        value,
        references: vec![Reference {
            name: "raw_arrayqueue_push_8p_p999",
            what: "p99.9 of single ArrayQueue::push calls, 8 producers, a full queue nobody drains",
            role: Role::Baseline,
            cpu_ns_per_op: None,
            summary: baseline,
        }],
        target: vec![Bound::ValueBelow(5_000.0), Bound::Holds("never_blocked")],
        facts: vec![
            ("producers", json!(BLOCKED_PRODUCERS)),
            ("emits_per_producer", json!(per)),
            ("never_blocked", json!(never_blocked)),
            ("max_ns", json!(max_ns)),
            ("raw_max_ns", json!(raw_max.get())),
            ("blocked_if_at_least_ns", json!(BLOCKED.as_nanos() as u64)),
            ("dropped_full_total", json!(dropped.get())),
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emit_cost_counts_every_event() {
        assert!(raw_cost(500).unwrap() > 0.0);
        assert!(vigil_cost(500).unwrap() > 0.0);
    }

    #[test]
    fn emits_finish_while_the_sink_hangs() {
        let (t, dropped) = vigil_blocked(10_000).unwrap();
        assert!(t.never_blocked, "{t:?}");
        assert!(t.p999_ns > 0.0);
        // 80,000 emits into a 65,536-event buffer that nobody drains.
        assert!(dropped > 0);
        assert!(raw_blocked(100, 64).unwrap().p999_ns > 0.0);
    }

    #[test]
    fn a_slow_emit_counts_as_blocked() {
        let slow = [1, 2, BLOCKED.as_nanos() as u64];
        assert!(!tail(&slow, true).unwrap().never_blocked);
        assert!(!tail(&[1, 2, 3], false).unwrap().never_blocked);
        assert!(tail(&[1, 2, 3], true).unwrap().never_blocked);
    }
}
