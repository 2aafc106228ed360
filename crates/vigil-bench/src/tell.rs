//! `tell_throughput`: messages 1→1 to an actor that sums them.
//!
//! - Vigil: `Addr::tell` of `Add(i)` to a worker with the default mailbox,
//!   then one `call` for the total, which arrives after every `Add`.
//! - Baseline: a crossbeam `bounded` channel of the same capacity carrying
//!   the same message type to a thread that sums, ended the same way.
//! - Peer: ractor `cast` from an OS thread to an actor on tokio, ended with
//!   a ractor `call`.
//!
//! The clock runs from the first send until the total is back.

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
use crate::stats::per_second;

const KEY: &str = "tell_throughput";
const WAIT: Duration = Duration::from_secs(120);

fn expected(n: u64) -> u64 {
    (0..n).fold(0u64, u64::wrapping_add)
}

fn check(n: u64, sum: u64) -> Result<(), BenchError> {
    if sum == expected(n) {
        Ok(())
    } else {
        Err(BenchError::check(KEY, format!("sum of {n} messages was {sum}, expected {}", expected(n))))
    }
}

enum RawSum {
    Add(u64),
    Total(Sender<u64>),
}

fn raw(n: u64) -> Result<f64, BenchError> {
    let (tx, rx) = crossbeam_channel::bounded::<RawSum>(DEFAULT_MAILBOX);
    let summer = thread::Builder::new()
        .name("raw-summer".into())
        .spawn(move || {
            let mut sum = 0u64;
            for msg in rx {
                match msg {
                    RawSum::Add(v) => sum = sum.wrapping_add(v),
                    RawSum::Total(reply) => {
                        let _ = reply.try_send(sum);
                    }
                }
            }
        })
        .map_err(|e| BenchError::setup(KEY, e))?;
    let start = Instant::now();
    for i in 0..n {
        tx.send(RawSum::Add(i)).map_err(|_| BenchError::check(KEY, "raw summer hung up"))?;
    }
    let (reply, answer) = crossbeam_channel::bounded(1);
    tx.send(RawSum::Total(reply)).map_err(|_| BenchError::check(KEY, "raw summer hung up"))?;
    let sum = answer.recv_timeout(WAIT).map_err(|e| BenchError::check(KEY, e))?;
    let elapsed = start.elapsed();
    drop(tx);
    summer.join().map_err(|_| BenchError::check(KEY, "raw summer panicked"))?;
    check(n, sum)?;
    Ok(per_second(n, elapsed))
}

enum SumMsg {
    Add(u64),
    Total(Reply<u64>),
}

struct Summer(u64);

impl Actor for Summer {
    type Msg = SumMsg;
    fn handle(&mut self, msg: SumMsg, _: &mut Context<'_, SumMsg>) -> Result<(), BoxError> {
        match msg {
            SumMsg::Add(v) => self.0 = self.0.wrapping_add(v),
            SumMsg::Total(reply) => {
                let _ = reply.send(self.0);
            }
        }
        Ok(())
    }
}

fn vigil(n: u64) -> Result<f64, BenchError> {
    vigil_watched(n, None)
}

/// The Vigil variant, with the child under the watchdog when `hang_timeout`
/// is set (`watchdog_overhead` compares the two).
pub(crate) fn vigil_watched(n: u64, hang_timeout: Option<Duration>) -> Result<f64, BenchError> {
    let spec = ChildSpec::worker("summer", || Summer(0));
    let spec = match hang_timeout {
        Some(timeout) => spec.hang_timeout(timeout),
        None => spec,
    };
    let addr = spec.addr();
    let system = Supervisor::builder().child(spec).start().map_err(|e| BenchError::setup(KEY, e))?;
    let start = Instant::now();
    for i in 0..n {
        addr.tell(SumMsg::Add(i)).map_err(|e| BenchError::check(KEY, e))?;
    }
    let sum = addr.call(SumMsg::Total, WAIT).map_err(|e| BenchError::check(KEY, e))?;
    let elapsed = start.elapsed();
    system.shutdown().map_err(|e| BenchError::setup(KEY, e))?;
    check(n, sum)?;
    Ok(per_second(n, elapsed))
}

enum PeerSum {
    Add(u64),
    Total(RpcReplyPort<u64>),
}

struct PeerSummer;

impl ractor::Actor for PeerSummer {
    type Msg = PeerSum;
    type State = u64;
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<PeerSum>, _: ()) -> Result<u64, ActorProcessingErr> {
        Ok(0)
    }

    async fn handle(&self, _: ActorRef<PeerSum>, msg: PeerSum, sum: &mut u64) -> Result<(), ActorProcessingErr> {
        match msg {
            PeerSum::Add(v) => *sum = sum.wrapping_add(v),
            PeerSum::Total(reply) => {
                let _ = reply.send(*sum);
            }
        }
        Ok(())
    }
}

fn ractor_cast(rt: &Runtime, n: u64) -> Result<f64, BenchError> {
    let (actor, handle) =
        rt.block_on(ractor::Actor::spawn(None, PeerSummer, ())).map_err(|e| BenchError::setup(KEY, e))?;
    let start = Instant::now();
    for i in 0..n {
        actor.cast(PeerSum::Add(i)).map_err(|e| BenchError::check(KEY, e))?;
    }
    let sum = rt.block_on(actor.call(PeerSum::Total, Some(WAIT))).map_err(|e| BenchError::check(KEY, e))?;
    let elapsed = start.elapsed();
    actor.stop(None);
    rt.block_on(handle).map_err(|e| BenchError::setup(KEY, e))?;
    let sum = crate::peer::success(KEY, sum)?;
    check(n, sum)?;
    Ok(per_second(n, elapsed))
}

pub(crate) fn figure(config: &crate::Config, rt: &Runtime) -> Result<Figure, BenchError> {
    let (n, peer_n) = (config.tell_messages, config.peer_tell_messages);
    let mut variants: Vec<Variant<'_>> =
        vec![Box::new(|| raw(n)), Box::new(|| vigil(n)), Box::new(|| ractor_cast(rt, peer_n))];
    let mut s = interleave(KEY, config.reps, &mut variants)?.into_iter();
    let (baseline, value, peer) = (s.next(), s.next(), s.next());
    let (Some(baseline), Some(value), Some(peer)) = (baseline, value, peer) else {
        return Err(BenchError::check(KEY, "missing variant"));
    };
    Ok(Figure {
        key: KEY,
        what: "Addr::tell 1->1 to an actor that sums them (default mailbox), until its total is back",
        unit: "msg/s",
        cpu_ns_per_op: None,
        value,
        references: vec![
            Reference {
                name: "raw_crossbeam_bounded_1to1",
                what: "crossbeam bounded(1024) channel, same messages, to a summing thread",
                role: Role::Baseline,
                cpu_ns_per_op: None,
                summary: baseline,
            },
            Reference {
                name: "ractor_cast",
                what: "ractor cast from an OS thread to an actor on a 2-worker tokio runtime",
                role: Role::Peer,
                cpu_ns_per_op: None,
                summary: peer,
            },
        ],
        target: vec![Bound::BaselineRatioAtLeast(0.9), Bound::PeerRatioAtLeast(2.0)],
        facts: vec![("messages", json!(n)), ("peer_messages", json!(peer_n)), ("mailbox", json!(DEFAULT_MAILBOX))],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_sums_correctly() {
        let rt = crate::peer::runtime().unwrap();
        assert!(raw(1000).unwrap() > 0.0);
        assert!(vigil(1000).unwrap() > 0.0);
        assert!(ractor_cast(&rt, 1000).unwrap() > 0.0);
    }

    #[test]
    fn a_wrong_sum_is_an_error() {
        assert!(check(3, 3).is_ok());
        assert!(matches!(check(3, 4), Err(BenchError::Check { .. })));
    }
}
