//! `call_rtt`: a request and its reply, from a plain OS thread (a request
//! thread in a sync service).
//!
//! - Vigil: `Addr::call` to a worker that echoes a number back.
//! - Baseline: a thread pair over a crossbeam `bounded(1024)` request
//!   channel, with a fresh `bounded(1)` reply channel per request, as
//!   `call` does.
//! - Peer: ractor `call` from an OS thread, driven by `Runtime::block_on`.
//!
//! Each repetition is the mean round trip over its calls.

use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use ractor::{ActorProcessingErr, ActorRef, RpcReplyPort};
use serde_json::json;
use tokio::runtime::Runtime;
use vigil_core::{Actor, BoxError, ChildSpec, Context, DEFAULT_MAILBOX, Reply, Supervisor};

use crate::error::BenchError;
use crate::harness::{Variant, interleave};
use crate::report::{Bound, Figure, Reference, Role};
use crate::stats::ns_per;

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
    let mut s = interleave(KEY, config.reps, &mut variants)?.into_iter();
    let (Some(baseline), Some(value), Some(peer)) = (s.next(), s.next(), s.next()) else {
        return Err(BenchError::check(KEY, "missing variant"));
    };
    Ok(Figure {
        key: KEY,
        what: "Addr::call round trip from a plain OS thread to an echoing actor",
        unit: "ns",
        value,
        references: vec![
            Reference {
                name: "raw_thread_rpc",
                what: "thread pair: bounded(1024) requests, a fresh bounded(1) reply channel per call",
                role: Role::Baseline,
                summary: baseline,
            },
            Reference {
                name: "ractor_call",
                what: "ractor call from an OS thread via Runtime::block_on (2-worker tokio runtime)",
                role: Role::Peer,
                summary: peer,
            },
        ],
        target: vec![Bound::BaselineRatioAtMost(1.2), Bound::PeerRatioAtMost(0.1)],
        facts: vec![("calls", json!(n)), ("peer_calls", json!(peer_n))],
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
        assert!(matches!(check(1, 1), Err(BenchError::Check { .. })));
    }
}
