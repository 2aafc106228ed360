//! `restart_latency`: from a panic in `handle` until the restarted actor
//! answers its first message.
//!
//! Every variant does the same per restart: send `Panic`, then a `Ping`
//! request; the clock runs until the reply arrives from the new incarnation
//! (checked by its incarnation number). The actor's state is a freshly
//! built value each time.
//!
//! - Vigil: a worker under a one-for-one supervisor with a large restart
//!   intensity; `tell(Panic)` then `call(Ping)` on the same address.
//! - Baseline, in place: one thread loops; it catches the panic, builds a
//!   fresh value and answers the next request. No supervisor can do less.
//! - Extra baseline, spawn: the panicking thread ends; the measuring thread
//!   joins it and spawns a replacement that answers.
//! - Peer: ractor's supervised restart. A supervisor actor respawns a linked
//!   child on `SupervisionEvent::ActorFailed` and hands its `ActorRef` over
//!   a channel; the request goes to the new child with `call`.
//!
//! Each repetition is the median of its restarts.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use ractor::{ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use serde_json::json;
use tokio::runtime::Runtime;
use vigil_core::{Actor, BoxError, ChildSpec, Context, DEFAULT_MAILBOX, Reply, Strategy, Supervisor};

use crate::error::BenchError;
use crate::harness::{Variant, induce_panic, interleave};
use crate::report::{Bound, Figure, Reference, Role};
use crate::stats::median_us;

const KEY: &str = "restart_latency";
const WAIT: Duration = Duration::from_secs(30);

/// The state every incarnation builds afresh.
struct Fresh {
    scratch: Vec<u64>,
    incarnation: u64,
}

impl Fresh {
    fn new(incarnation: u64) -> Fresh {
        Fresh { scratch: Vec::with_capacity(16), incarnation }
    }

    fn answer(&mut self) -> u64 {
        self.scratch.push(self.incarnation);
        self.incarnation
    }
}

fn check(expected: u64, got: u64) -> Result<(), BenchError> {
    if got == expected {
        Ok(())
    } else {
        Err(BenchError::check(KEY, format!("answered by incarnation {got}, expected {expected}")))
    }
}

enum RawMsg {
    Panic,
    Ping(Sender<u64>),
}

fn raw_handle(state: &mut Fresh, msg: RawMsg) {
    match msg {
        RawMsg::Panic => induce_panic(),
        RawMsg::Ping(reply) => {
            let _ = reply.try_send(state.answer());
        }
    }
}

fn raw_ping(tx: &Sender<RawMsg>) -> Result<u64, BenchError> {
    let (reply, answer) = crossbeam_channel::bounded(1);
    tx.send(RawMsg::Ping(reply)).map_err(|_| BenchError::check(KEY, "raw worker hung up"))?;
    answer.recv_timeout(WAIT).map_err(|e| BenchError::check(KEY, e))
}

fn in_place(n: u64) -> Result<f64, BenchError> {
    let (tx, rx) = crossbeam_channel::bounded::<RawMsg>(DEFAULT_MAILBOX);
    let worker = thread::Builder::new()
        .name("raw-in-place".into())
        .spawn(move || {
            let mut incarnation = 0;
            'life: loop {
                let mut state = Fresh::new(incarnation);
                for msg in rx.iter() {
                    if catch_unwind(AssertUnwindSafe(|| raw_handle(&mut state, msg))).is_err() {
                        incarnation += 1;
                        continue 'life;
                    }
                }
                return;
            }
        })
        .map_err(|e| BenchError::setup(KEY, e))?;
    check(0, raw_ping(&tx)?)?;
    let mut samples = Vec::with_capacity(n as usize);
    for i in 1..=n {
        let start = Instant::now();
        tx.send(RawMsg::Panic).map_err(|_| BenchError::check(KEY, "raw worker hung up"))?;
        let got = raw_ping(&tx)?;
        samples.push(start.elapsed());
        check(i, got)?;
    }
    drop(tx);
    worker.join().map_err(|_| BenchError::check(KEY, "in-place worker panicked out"))?;
    Ok(median_us(samples))
}

fn spawn_worker(rx: &Receiver<RawMsg>, incarnation: u64) -> Result<JoinHandle<()>, BenchError> {
    let rx = rx.clone();
    thread::Builder::new()
        .name("raw-respawned".into())
        .spawn(move || {
            let mut state = Fresh::new(incarnation);
            for msg in rx {
                raw_handle(&mut state, msg);
            }
        })
        .map_err(|e| BenchError::setup(KEY, e))
}

fn respawn(n: u64) -> Result<f64, BenchError> {
    let (tx, rx) = crossbeam_channel::bounded::<RawMsg>(DEFAULT_MAILBOX);
    let mut worker = spawn_worker(&rx, 0)?;
    check(0, raw_ping(&tx)?)?;
    let mut samples = Vec::with_capacity(n as usize);
    for i in 1..=n {
        let start = Instant::now();
        tx.send(RawMsg::Panic).map_err(|_| BenchError::check(KEY, "raw worker hung up"))?;
        if worker.join().is_ok() {
            return Err(BenchError::check(KEY, "the raw worker did not panic"));
        }
        worker = spawn_worker(&rx, i)?;
        let got = raw_ping(&tx)?;
        samples.push(start.elapsed());
        check(i, got)?;
    }
    drop(tx);
    worker.join().map_err(|_| BenchError::check(KEY, "raw worker panicked out"))?;
    Ok(median_us(samples))
}

enum Victim {
    Panic,
    Ping(Reply<u64>),
}

struct VigilVictim(Fresh);

impl Actor for VigilVictim {
    type Msg = Victim;

    fn started(&mut self, ctx: &mut Context<'_, Victim>) -> Result<(), BoxError> {
        self.0.incarnation = ctx.incarnation();
        Ok(())
    }

    fn handle(&mut self, msg: Victim, _: &mut Context<'_, Victim>) -> Result<(), BoxError> {
        match msg {
            Victim::Panic => induce_panic(),
            Victim::Ping(reply) => {
                let _ = reply.send(self.0.answer());
            }
        }
        Ok(())
    }
}

fn vigil(n: u64) -> Result<f64, BenchError> {
    let spec = ChildSpec::worker("victim", || VigilVictim(Fresh::new(0)));
    let addr = spec.addr();
    let system = Supervisor::builder()
        .strategy(Strategy::OneForOne)
        .intensity(1_000_000, Duration::from_secs(1))
        .child(spec)
        .start()
        .map_err(|e| BenchError::setup(KEY, e))?;
    check(0, addr.call(Victim::Ping, WAIT).map_err(|e| BenchError::check(KEY, e))?)?;
    let mut samples = Vec::with_capacity(n as usize);
    for i in 1..=n {
        let start = Instant::now();
        addr.tell(Victim::Panic).map_err(|e| BenchError::check(KEY, e))?;
        let got = addr.call(Victim::Ping, WAIT).map_err(|e| BenchError::check(KEY, e))?;
        samples.push(start.elapsed());
        check(i, got)?;
    }
    system.shutdown().map_err(|e| BenchError::setup(KEY, e))?;
    Ok(median_us(samples))
}

enum PeerVictim {
    Panic,
    Ping(RpcReplyPort<u64>),
}

struct PeerChild;

impl ractor::Actor for PeerChild {
    type Msg = PeerVictim;
    type State = Fresh;
    type Arguments = u64;

    async fn pre_start(&self, _: ActorRef<PeerVictim>, incarnation: u64) -> Result<Fresh, ActorProcessingErr> {
        Ok(Fresh::new(incarnation))
    }

    async fn handle(
        &self,
        _: ActorRef<PeerVictim>,
        msg: PeerVictim,
        state: &mut Fresh,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            PeerVictim::Panic => induce_panic(),
            PeerVictim::Ping(reply) => {
                let _ = reply.send(state.answer());
            }
        }
        Ok(())
    }
}

/// Respawns its child whenever it fails and hands the new `ActorRef` out.
struct PeerSupervisor;

struct PeerSupervisorState {
    children: Sender<ActorRef<PeerVictim>>,
    incarnation: u64,
}

impl ractor::Actor for PeerSupervisor {
    type Msg = ();
    type State = PeerSupervisorState;
    type Arguments = Sender<ActorRef<PeerVictim>>;

    async fn pre_start(
        &self,
        myself: ActorRef<()>,
        children: Sender<ActorRef<PeerVictim>>,
    ) -> Result<PeerSupervisorState, ActorProcessingErr> {
        let (child, _) = ractor::Actor::spawn_linked(None, PeerChild, 0, myself.get_cell()).await?;
        children.send(child)?;
        Ok(PeerSupervisorState { children, incarnation: 0 })
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<()>,
        event: SupervisionEvent,
        state: &mut PeerSupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(..) = event {
            state.incarnation += 1;
            let (child, _) = ractor::Actor::spawn_linked(None, PeerChild, state.incarnation, myself.get_cell()).await?;
            state.children.send(child)?;
        }
        Ok(())
    }
}

fn ractor_restart(rt: &Runtime, n: u64) -> Result<f64, BenchError> {
    let (children_tx, children) = crossbeam_channel::unbounded();
    let (supervisor, handle) =
        rt.block_on(ractor::Actor::spawn(None, PeerSupervisor, children_tx)).map_err(|e| BenchError::setup(KEY, e))?;
    let next_child = || children.recv_timeout(WAIT).map_err(|e| BenchError::check(KEY, e));
    let ping = |child: &ActorRef<PeerVictim>| {
        let result = rt.block_on(child.call(PeerVictim::Ping, Some(WAIT))).map_err(|e| BenchError::check(KEY, e))?;
        crate::peer::success(KEY, result)
    };
    let mut child = next_child()?;
    check(0, ping(&child)?)?;
    let mut samples = Vec::with_capacity(n as usize);
    for i in 1..=n {
        let start = Instant::now();
        child.cast(PeerVictim::Panic).map_err(|e| BenchError::check(KEY, e))?;
        child = next_child()?;
        let got = ping(&child)?;
        samples.push(start.elapsed());
        check(i, got)?;
    }
    child.stop(None);
    supervisor.stop(None);
    rt.block_on(handle).map_err(|e| BenchError::setup(KEY, e))?;
    Ok(median_us(samples))
}

pub(crate) fn figure(config: &crate::Config, rt: &Runtime) -> Result<Figure, BenchError> {
    let n = config.restarts;
    let mut variants: Vec<Variant<'_>> = vec![
        Box::new(|| in_place(n)),
        Box::new(|| vigil(n)),
        Box::new(|| ractor_restart(rt, n)),
        Box::new(|| respawn(n)),
    ];
    let mut s = interleave(KEY, config.reps, &mut variants)?.into_iter();
    let (Some(baseline), Some(value), Some(peer), Some(spawn)) = (s.next(), s.next(), s.next(), s.next()) else {
        return Err(BenchError::check(KEY, "missing variant"));
    };
    Ok(Figure {
        key: KEY,
        what: "panic in handle until the restarted actor answers a call (one-for-one, large intensity)",
        unit: "µs",
        cpu_ns_per_op: None,
        value,
        references: vec![
            Reference {
                name: "raw_in_place_restart",
                what: "one thread catches the panic, builds a fresh value and answers the next request",
                role: Role::Baseline,
                cpu_ns_per_op: None,
                summary: baseline,
            },
            Reference {
                name: "raw_spawn_restart",
                what: "the panicking thread ends; join it, spawn a replacement, which answers",
                role: Role::ExtraBaseline,
                cpu_ns_per_op: None,
                summary: spawn,
            },
            Reference {
                name: "ractor_supervised_restart",
                what: "ractor supervisor respawns a linked child on ActorFailed; call to the new child",
                role: Role::Peer,
                cpu_ns_per_op: None,
                summary: peer,
            },
        ],
        target: vec![Bound::PeerRatioAtMost(0.6)],
        facts: vec![("restarts_per_rep", json!(n))],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_restarts_and_answers_from_the_new_incarnation() {
        crate::harness::silence_induced_panics();
        let rt = crate::peer::runtime().unwrap();
        assert!(in_place(3).unwrap() > 0.0);
        assert!(respawn(3).unwrap() > 0.0);
        assert!(vigil(3).unwrap() > 0.0);
        assert!(ractor_restart(&rt, 3).unwrap() > 0.0);
    }
}
