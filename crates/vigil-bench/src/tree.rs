//! `tree_scale`: start and orderly shutdown of a tree of 10,000 actors
//! under nested supervisors (100 supervisors × 100 workers).
//!
//! - Vigil: build the specs, `start` the root (which returns once every
//!   child has started), then `shutdown` (children stop in reverse order).
//! - Baseline: spawn as many raw threads, each blocked on its own channel,
//!   then wake and join them one by one in reverse order.
//! - Peer: ractor, a root actor spawning linked supervisor actors that each
//!   spawn linked workers in `pre_start`; shutdown stops each level's
//!   children and waits for them in `post_stop`.
//! - Extra baselines: the raw threads put through Vigil's handshakes in
//!   OTP's order (`raw_ordered_spawn_join`), and the same with the next
//!   thread spawned while one starts, as Vigil does
//!   (`raw_ordered_prespawned`).

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use ractor::{ActorProcessingErr, ActorRef, SupervisionEvent};
use serde_json::json;
use tokio::runtime::Runtime;
use vigil_core::{Actor, BoxError, ChildSpec, ChildState, Context, Supervisor};

use crate::error::BenchError;
use crate::harness::{Variant, interleave};
use crate::report::{Bound, Figure, Reference, Role};
use crate::stats::Summary;

const KEY: &str = "tree_scale";

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

struct Idle;

impl Actor for Idle {
    type Msg = ();
    fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> {
        Ok(())
    }
}

/// One Vigil run: (start ms, shutdown ms).
fn vigil(supervisors: usize, workers: usize) -> Result<(f64, f64), BenchError> {
    let start = Instant::now();
    let root = Supervisor::builder().children((0..supervisors).map(|s| {
        let sup = Supervisor::builder().children((0..workers).map(|w| ChildSpec::worker(format!("w{w}"), || Idle)));
        ChildSpec::supervisor(format!("s{s}"), sup)
    }));
    let system = root.start().map_err(|e| BenchError::setup(KEY, e))?;
    let started = start.elapsed();
    let stats = system.stats();
    let running: usize = stats
        .children
        .iter()
        .filter_map(|c| c.supervisor.as_deref())
        .flat_map(|s| &s.children)
        .filter(|c| c.state == ChildState::Running)
        .count();
    if running != supervisors * workers {
        return Err(BenchError::check(KEY, format!("{running} workers running, expected {}", supervisors * workers)));
    }
    let stop = Instant::now();
    let report = system.shutdown().map_err(|e| BenchError::setup(KEY, e))?;
    let stopped = stop.elapsed();
    if !report.is_clean() {
        return Err(BenchError::check(KEY, format!("{} actors abandoned at shutdown", report.abandoned.len())));
    }
    Ok((ms(started), ms(stopped)))
}

fn raw(n: usize) -> Result<f64, BenchError> {
    let start = Instant::now();
    let mut threads = Vec::with_capacity(n);
    for _ in 0..n {
        let (tx, rx) = crossbeam_channel::bounded::<()>(1);
        let thread = thread::Builder::new()
            .spawn(move || {
                let _ = rx.recv();
            })
            .map_err(|e| BenchError::setup(KEY, e))?;
        threads.push((tx, thread));
    }
    for (tx, thread) in threads.into_iter().rev() {
        drop(tx);
        thread.join().map_err(|_| BenchError::check(KEY, "raw thread panicked"))?;
    }
    Ok(ms(start.elapsed()))
}

/// The raw limit under OTP's ordering: each thread is spawned only after
/// the one before it said it started, and each is woken to stop only after
/// the one after it said it stopped (in reverse order); all are joined at
/// the end. Vigil's start and shutdown handshakes, without anything else.
fn raw_ordered(n: usize) -> Result<f64, BenchError> {
    let start = Instant::now();
    let (report, reports) = crossbeam_channel::unbounded::<()>();
    let mut threads = Vec::with_capacity(n);
    for _ in 0..n {
        let (tx, rx) = crossbeam_channel::bounded::<()>(1);
        let report = report.clone();
        let thread = thread::Builder::new()
            .spawn(move || {
                let _ = report.send(());
                let _ = rx.recv();
                let _ = report.send(());
            })
            .map_err(|e| BenchError::setup(KEY, e))?;
        reports.recv().map_err(|_| BenchError::check(KEY, "raw thread did not start"))?;
        threads.push((tx, thread));
    }
    stop_in_reverse(threads, &reports)?;
    Ok(ms(start.elapsed()))
}

/// The ordered shutdown of both raw-ordered baselines: wakes each thread in
/// reverse start order, waiting for it to say it stopped, then joins them all.
fn stop_in_reverse(
    threads: Vec<(crossbeam_channel::Sender<()>, thread::JoinHandle<()>)>,
    reports: &crossbeam_channel::Receiver<()>,
) -> Result<(), BenchError> {
    for (tx, _) in threads.iter().rev() {
        let _ = tx.send(());
        reports.recv().map_err(|_| BenchError::check(KEY, "raw thread did not stop"))?;
    }
    for (_, thread) in threads {
        thread.join().map_err(|_| BenchError::check(KEY, "raw thread panicked"))?;
    }
    Ok(())
}

/// As [`raw_ordered`], with Vigil's overlap: while one thread starts, the
/// next is spawned, waiting for its turn before it says it started. The
/// limit of a thread per actor under OTP's ordering.
fn raw_ordered_prespawned(n: usize) -> Result<f64, BenchError> {
    let start = Instant::now();
    let (report, reports) = crossbeam_channel::unbounded::<()>();
    let spawn = || {
        let (tx, rx) = crossbeam_channel::bounded::<()>(1);
        let report = report.clone();
        let thread = thread::Builder::new()
            .spawn(move || {
                // Its turn to start, then its turn to stop.
                let _ = rx.recv();
                let _ = report.send(());
                let _ = rx.recv();
                let _ = report.send(());
            })
            .map_err(|e| BenchError::setup(KEY, e))?;
        Ok::<_, BenchError>((tx, thread))
    };
    let mut threads = Vec::with_capacity(n);
    let mut next = Some(spawn()?);
    for i in 0..n {
        let current = match next.take() {
            Some(current) => current,
            None => spawn()?,
        };
        let _ = current.0.send(());
        if i + 1 < n {
            next = Some(spawn()?);
        }
        reports.recv().map_err(|_| BenchError::check(KEY, "raw thread did not start"))?;
        threads.push(current);
    }
    stop_in_reverse(threads, &reports)?;
    Ok(ms(start.elapsed()))
}

struct PeerWorker(Arc<AtomicUsize>);

impl ractor::Actor for PeerWorker {
    type Msg = ();
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<()>, _: ()) -> Result<(), ActorProcessingErr> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn post_stop(&self, _: ActorRef<()>, _: &mut ()) -> Result<(), ActorProcessingErr> {
        self.0.fetch_sub(1, Ordering::Relaxed);
        Ok(())
    }
}

/// A ractor supervisor level: spawns `fanout` linked children built by
/// `child`, and stops them (waiting) when it stops.
struct PeerLevel {
    fanout: usize,
    workers: Option<usize>,
    live: Arc<AtomicUsize>,
}

impl ractor::Actor for PeerLevel {
    type Msg = ();
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, myself: ActorRef<()>, _: ()) -> Result<(), ActorProcessingErr> {
        for _ in 0..self.fanout {
            match self.workers {
                Some(workers) => {
                    let level = PeerLevel { fanout: workers, workers: None, live: Arc::clone(&self.live) };
                    ractor::Actor::spawn_linked(None, level, (), myself.get_cell()).await?;
                }
                None => {
                    ractor::Actor::spawn_linked(None, PeerWorker(Arc::clone(&self.live)), (), myself.get_cell())
                        .await?;
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _: ActorRef<()>,
        _: SupervisionEvent,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn post_stop(&self, myself: ActorRef<()>, _: &mut ()) -> Result<(), ActorProcessingErr> {
        myself.stop_children_and_wait(None, None).await;
        Ok(())
    }
}

fn ractor_tree(rt: &Runtime, supervisors: usize, workers: usize) -> Result<f64, BenchError> {
    let live = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let root = PeerLevel { fanout: supervisors, workers: Some(workers), live: Arc::clone(&live) };
    let (root, handle) = rt.block_on(ractor::Actor::spawn(None, root, ())).map_err(|e| BenchError::setup(KEY, e))?;
    let started = live.load(Ordering::Relaxed);
    rt.block_on(root.stop_and_wait(None, None)).map_err(|e| BenchError::setup(KEY, e))?;
    rt.block_on(handle).map_err(|e| BenchError::setup(KEY, e))?;
    let elapsed = start.elapsed();
    if started != supervisors * workers || live.load(Ordering::Relaxed) != 0 {
        return Err(BenchError::check(
            KEY,
            format!("{started} ractor workers started, {} left after shutdown", live.load(Ordering::Relaxed)),
        ));
    }
    Ok(ms(elapsed))
}

pub(crate) fn figure(config: &crate::Config, rt: &Runtime) -> Result<Figure, BenchError> {
    let (sups, workers) = (config.tree_supervisors, config.tree_workers);
    let actors = sups * workers;
    let splits = RefCell::new(Vec::new());
    let mut variants: Vec<Variant<'_>> = vec![
        Box::new(|| raw(actors)),
        Box::new(|| {
            let (start, stop) = vigil(sups, workers)?;
            splits.borrow_mut().push((start, stop));
            Ok(start + stop)
        }),
        Box::new(|| ractor_tree(rt, sups, workers)),
        Box::new(|| raw_ordered(actors)),
        Box::new(|| raw_ordered_prespawned(actors)),
    ];
    let mut s = interleave(KEY, config.reps, &mut variants)?.into_iter();
    drop(variants);
    let (Some(baseline), Some(value), Some(peer), Some(ordered), Some(prespawned)) =
        (s.next(), s.next(), s.next(), s.next(), s.next())
    else {
        return Err(BenchError::check(KEY, "missing variant"));
    };
    // The first split is the warm-up's.
    let splits: Vec<(f64, f64)> = splits.into_inner().into_iter().skip(1).collect();
    let start_ms = Summary::of(splits.iter().map(|s| s.0).collect()).map(|s| s.median);
    let shutdown_ms = Summary::of(splits.iter().map(|s| s.1).collect()).map(|s| s.median);
    let per_actor_us = value.median * 1e3 / actors as f64;
    Ok(Figure {
        key: KEY,
        what: "build, start and orderly shutdown of workers under nested supervisors",
        unit: "ms",
        cpu_ns_per_op: None,
        value,
        references: vec![
            Reference {
                name: "raw_thread_spawn_join",
                what: "spawn as many threads blocked on a channel, then wake and join each in reverse",
                role: Role::Baseline,
                cpu_ns_per_op: None,
                summary: baseline,
            },
            Reference {
                name: "ractor_tree",
                what: "ractor: root -> linked supervisor actors -> linked workers; stop_children_and_wait in post_stop",
                role: Role::Peer,
                cpu_ns_per_op: None,
                summary: peer,
            },
            Reference {
                name: "raw_ordered_spawn_join",
                what: "as the baseline, in OTP's order: spawn the next thread once the last said it started, stop in reverse waiting for each",
                role: Role::ExtraBaseline,
                cpu_ns_per_op: None,
                summary: ordered,
            },
            Reference {
                name: "raw_ordered_prespawned",
                what: "as raw_ordered_spawn_join, spawning the next thread while one starts (it waits for its turn)",
                role: Role::ExtraBaseline,
                cpu_ns_per_op: None,
                summary: prespawned,
            },
        ],
        // Issue 18: within 1.2x of spawning and joining as many raw threads.
        target: vec![Bound::BaselineRatioAtMost(1.2)],
        facts: vec![
            ("actors", json!(actors)),
            ("supervisors", json!(sups)),
            ("per_actor_us", json!(per_actor_us)),
            ("start_ms", json!(start_ms)),
            ("shutdown_ms", json!(shutdown_ms)),
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_starts_and_stops_the_whole_tree() {
        let rt = crate::peer::runtime().unwrap();
        let (start, stop) = vigil(2, 3).unwrap();
        assert!(start > 0.0 && stop > 0.0);
        assert!(raw(6).unwrap() > 0.0);
        assert!(raw_ordered(6).unwrap() > 0.0);
        assert!(raw_ordered_prespawned(6).unwrap() > 0.0);
        assert!(raw_ordered_prespawned(1).unwrap() > 0.0);
        assert!(ractor_tree(&rt, 2, 3).unwrap() > 0.0);
    }
}
