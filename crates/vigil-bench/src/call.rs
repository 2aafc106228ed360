//! `call_rtt`: a request and its reply, from a plain OS thread (a request
//! thread in a sync service).
//!
//! - Vigil: `Addr::call` to a worker that echoes a number back.
//! - Baseline: a thread pair over a crossbeam `bounded(1024)` request
//!   channel, with a fresh `bounded(1)` reply channel per request, as
//!   `call` does.
//! - Peer: ractor `call` from an OS thread, driven by `Runtime::block_on`.
//!
//! Each repetition is the mean round trip over its calls; the CPU column is
//! the whole process's CPU time (user + system, both threads) per call.
//!
//! `call_rtt_loaded` is the same round trip while two busy threads compete
//! for the cores, against a frozen copy of the call path before issue 18
//! ([`old_call`]): the spinning that makes `call` fast on idle cores must
//! not make it slower than that on busy ones.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use ractor::{ActorProcessingErr, ActorRef, RpcReplyPort};
use serde_json::json;
use tokio::runtime::Runtime;
use vigil_core::{Actor, BoxError, ChildSpec, Context, DEFAULT_MAILBOX, Reply, Supervisor};

use crate::error::BenchError;
use crate::harness::{Variant, interleave, interleave_cpu};
use crate::report::{Bound, Figure, Reference, Role};
use crate::stats::{Summary, ns_per};

const KEY: &str = "call_rtt";
const WAIT: Duration = Duration::from_secs(30);

fn check(sent: u64, got: u64) -> Result<(), BenchError> {
    if got == sent + 1 {
        Ok(())
    } else {
        Err(BenchError::check(KEY, format!("sent {sent}, got {got} back instead of {}", sent + 1)))
    }
}

fn raw(n: u64) -> Result<f64, BenchError> {
    let (tx, rx) = crossbeam_channel::bounded::<(u64, Sender<u64>)>(DEFAULT_MAILBOX);
    let server = thread::Builder::new()
        .name("raw-rpc-server".into())
        .spawn(move || {
            for (v, reply) in rx {
                let _ = reply.try_send(v + 1);
            }
        })
        .map_err(|e| BenchError::setup(KEY, e))?;
    let start = Instant::now();
    for i in 0..n {
        let (reply, answer) = crossbeam_channel::bounded(1);
        tx.send((i, reply)).map_err(|_| BenchError::check(KEY, "raw server hung up"))?;
        let got = answer.recv_timeout(WAIT).map_err(|e| BenchError::check(KEY, e))?;
        check(i, got)?;
    }
    let elapsed = start.elapsed();
    drop(tx);
    server.join().map_err(|_| BenchError::check(KEY, "raw server panicked"))?;
    Ok(ns_per(elapsed, n))
}

pub(crate) struct Echo;

impl Actor for Echo {
    type Msg = (u64, Reply<u64>);
    fn handle(&mut self, (v, reply): (u64, Reply<u64>), _: &mut Context<'_, Self::Msg>) -> Result<(), BoxError> {
        let _ = reply.send(v + 1);
        Ok(())
    }
}

fn vigil(n: u64) -> Result<f64, BenchError> {
    let spec = ChildSpec::worker("echo", || Echo);
    let addr = spec.addr();
    let system = Supervisor::builder().child(spec).start().map_err(|e| BenchError::setup(KEY, e))?;
    let start = Instant::now();
    for i in 0..n {
        let got = addr.call(|reply| (i, reply), WAIT).map_err(|e| BenchError::check(KEY, e))?;
        check(i, got)?;
    }
    let elapsed = start.elapsed();
    system.shutdown().map_err(|e| BenchError::setup(KEY, e))?;
    Ok(ns_per(elapsed, n))
}

struct PeerEcho;

impl ractor::Actor for PeerEcho {
    type Msg = (u64, RpcReplyPort<u64>);
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<Self::Msg>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(&self, _: ActorRef<Self::Msg>, msg: Self::Msg, _: &mut ()) -> Result<(), ActorProcessingErr> {
        let (v, reply) = msg;
        let _ = reply.send(v + 1);
        Ok(())
    }
}

fn ractor_call(rt: &Runtime, n: u64) -> Result<f64, BenchError> {
    let (actor, handle) =
        rt.block_on(ractor::Actor::spawn(None, PeerEcho, ())).map_err(|e| BenchError::setup(KEY, e))?;
    let start = Instant::now();
    for i in 0..n {
        let got = rt.block_on(actor.call(|reply| (i, reply), Some(WAIT))).map_err(|e| BenchError::check(KEY, e))?;
        check(i, crate::peer::success(KEY, got)?)?;
    }
    let elapsed = start.elapsed();
    actor.stop(None);
    rt.block_on(handle).map_err(|e| BenchError::setup(KEY, e))?;
    Ok(ns_per(elapsed, n))
}

pub(crate) fn figure(config: &crate::Config, rt: &Runtime) -> Result<Figure, BenchError> {
    let (n, peer_n) = (config.calls, config.peer_calls);
    let mut variants: Vec<Variant<'_>> =
        vec![Box::new(|| raw(n)), Box::new(|| vigil(n)), Box::new(|| ractor_call(rt, peer_n))];
    let mut s = interleave_cpu(KEY, config.reps, &mut variants, &[n, n, peer_n])?.into_iter();
    let (Some((baseline, baseline_cpu)), Some((value, cpu)), Some((peer, peer_cpu))) = (s.next(), s.next(), s.next())
    else {
        return Err(BenchError::check(KEY, "missing variant"));
    };
    let median = |s: Option<Summary>| s.map(|s| s.median);
    Ok(Figure {
        key: KEY,
        what: "Addr::call round trip from a plain OS thread to an echoing actor",
        unit: "ns",
        cpu_ns_per_op: median(cpu),
        value,
        references: vec![
            Reference {
                name: "raw_thread_rpc",
                what: "thread pair: bounded(1024) requests, a fresh bounded(1) reply channel per call",
                role: Role::Baseline,
                cpu_ns_per_op: median(baseline_cpu),
                summary: baseline,
            },
            Reference {
                name: "ractor_call",
                what: "ractor call from an OS thread via Runtime::block_on (2-worker tokio runtime)",
                role: Role::Peer,
                cpu_ns_per_op: median(peer_cpu),
                summary: peer,
            },
        ],
        target: vec![Bound::BaselineRatioAtMost(1.0), Bound::PeerRatioAtMost(0.5), Bound::BaselineCpuRatioAtMost(2.0)],
        facts: vec![("calls", json!(n)), ("peer_calls", json!(peer_n))],
    })
}

/// What the frozen server receives, as the runner's mailbox did before
/// issue 18: a call's request beside its cancel handle.
enum OldEnvelope {
    Call(u64, Arc<OldReplySlot>),
}

/// The reply slot before issue 18: a fresh `bounded(1)` channel per call
/// behind a mutex the watchdog could empty.
struct OldReplySlot {
    tx: Mutex<Option<Sender<u64>>>,
}

/// `call` as it was before issue 18, frozen for `call_rtt_loaded`: an
/// `Arc`'d slot holding a fresh `bounded(1)` reply channel per call,
/// `send_deadline` into a `bounded(1024)` mailbox, `recv_deadline` for the
/// answer; the server loop checks a stop flag and blocks in `recv`, as the
/// runner's message loop did. Every wait is crossbeam's own (spin, then
/// `sched_yield`, then park).
fn old_call(n: u64) -> Result<f64, BenchError> {
    let (tx, rx) = crossbeam_channel::bounded::<OldEnvelope>(DEFAULT_MAILBOX);
    let stop = Arc::new(AtomicBool::new(false));
    let server_stop = Arc::clone(&stop);
    let server = thread::Builder::new()
        .name("old-call-server".into())
        .spawn(move || {
            while !server_stop.load(Ordering::Relaxed) {
                let Ok(OldEnvelope::Call(v, slot)) = rx.recv() else { break };
                let reply = slot.tx.lock().ok().and_then(|mut tx| tx.take());
                if let Some(reply) = reply {
                    let _ = reply.try_send(v + 1);
                }
            }
        })
        .map_err(|e| BenchError::setup(KEY_LOADED, e))?;
    let start = Instant::now();
    for i in 0..n {
        let deadline = Instant::now() + WAIT;
        let (reply, answer) = crossbeam_channel::bounded(1);
        let slot = Arc::new(OldReplySlot { tx: Mutex::new(Some(reply)) });
        tx.send_deadline(OldEnvelope::Call(i, slot), deadline)
            .map_err(|_| BenchError::check(KEY_LOADED, "old server hung up"))?;
        let got = answer.recv_deadline(deadline).map_err(|e| BenchError::check(KEY_LOADED, e))?;
        check(i, got)?;
    }
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    drop(tx);
    server.join().map_err(|_| BenchError::check(KEY_LOADED, "old server panicked"))?;
    Ok(ns_per(elapsed, n))
}

const KEY_LOADED: &str = "call_rtt_loaded";

/// Threads that keep every core busy until dropped.
struct Busy {
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Busy {
    fn start(n: usize) -> Result<Busy, BenchError> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut busy = Busy { stop, threads: Vec::with_capacity(n) };
        for i in 0..n {
            let stop = Arc::clone(&busy.stop);
            let thread = thread::Builder::new()
                .name(format!("busy-{i}"))
                .spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        x = std::hint::black_box(x.wrapping_add(1));
                    }
                })
                .map_err(|e| BenchError::setup(KEY_LOADED, e))?;
            busy.threads.push(thread);
        }
        Ok(busy)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Busy threads competing with the caller and the actor for the cores.
const BUSY_THREADS: usize = 2;

pub(crate) fn loaded_figure(config: &crate::Config) -> Result<Figure, BenchError> {
    let n = config.loaded_calls;
    let busy = Busy::start(BUSY_THREADS)?;
    let mut variants: Vec<Variant<'_>> = vec![Box::new(|| old_call(n)), Box::new(|| vigil(n))];
    let mut s = interleave(KEY_LOADED, config.reps, &mut variants)?.into_iter();
    drop(variants);
    drop(busy);
    let (Some(baseline), Some(value)) = (s.next(), s.next()) else {
        return Err(BenchError::check(KEY_LOADED, "missing variant"));
    };
    Ok(Figure {
        key: KEY_LOADED,
        what: "Addr::call round trip, as call_rtt, while 2 busy threads compete for the cores",
        unit: "ns",
        cpu_ns_per_op: None,
        value,
        references: vec![Reference {
            name: "old_call_path",
            what: "the call path before issue 18 (fresh bounded(1) reply, crossbeam waits), frozen, same load",
            role: Role::Baseline,
            cpu_ns_per_op: None,
            summary: baseline,
        }],
        target: vec![Bound::BaselineRatioAtMost(1.0)],
        facts: vec![("calls", json!(n)), ("busy_threads", json!(BUSY_THREADS))],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_gets_its_replies() {
        let rt = crate::peer::runtime().unwrap();
        assert!(raw(100).unwrap() > 0.0);
        assert!(vigil(100).unwrap() > 0.0);
        assert!(ractor_call(&rt, 100).unwrap() > 0.0);
        assert!(old_call(100).unwrap() > 0.0);
        assert!(matches!(check(1, 1), Err(BenchError::Check { .. })));
    }

    #[test]
    fn busy_threads_stop_when_dropped() {
        let busy = Busy::start(2).unwrap();
        assert_eq!(busy.threads.len(), 2);
        let stop = Arc::clone(&busy.stop);
        drop(busy);
        assert!(stop.load(Ordering::Relaxed));
    }
}
