//! A scriptable test actor, and receiving from a channel with a deadline.
//! Polling and the deadline itself come from `vigil-testkit`.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use vigil_core::*;

// `signals.rs` and `observe.rs` include this module too, without polling.
#[allow(unused_imports)]
pub use vigil_testkit::{DEADLINE, wait_until};

/// What the probe actor reports about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    Started(&'static str, u64),
    Stopped(&'static str, String),
    Handled(&'static str, u64),
}

pub enum Cmd {
    Panic,
    Fail,
    Stop,
    Record(u64),
    Incarnation(Reply<u64>),
    /// Blocks the handler until the sender side is dropped or sends.
    Block(Receiver<()>),
    /// Ignores stop requests forever (until the receiver yields).
    Hang(Receiver<()>),
}

/// How the probe behaves in its hooks.
#[derive(Clone, Default)]
pub struct Script {
    /// Panic in `started` while the incarnation is below this number... or on every start if u64::MAX.
    pub panic_on_start: Option<u64>,
    pub fail_on_start_incarnations: Option<u64>,
    pub panic_in_stopped: bool,
    pub start_delay: Option<Duration>,
}

pub struct Probe {
    pub name: &'static str,
    pub notes: Sender<Note>,
    pub script: Script,
    pub incarnation: u64,
}

impl Actor for Probe {
    type Msg = Cmd;

    fn started(&mut self, ctx: &mut Context<'_, Cmd>) -> Result<(), BoxError> {
        self.incarnation = ctx.incarnation();
        if let Some(d) = self.script.start_delay {
            std::thread::sleep(d); // simulates a slow start hook, not a wait
        }
        if self.script.panic_on_start.is_some_and(|n| ctx.incarnation() < n) {
            panic!("{} refuses to start", self.name);
        }
        if self.script.fail_on_start_incarnations.is_some_and(|n| ctx.incarnation() < n) {
            return Err(format!("{} cannot start yet", self.name).into());
        }
        let _ = self.notes.send(Note::Started(self.name, ctx.incarnation()));
        Ok(())
    }

    fn handle(&mut self, cmd: Cmd, ctx: &mut Context<'_, Cmd>) -> Result<(), BoxError> {
        match cmd {
            Cmd::Panic => panic!("{} was told to panic", self.name),
            Cmd::Fail => return Err(format!("{} was told to fail", self.name).into()),
            Cmd::Stop => ctx.stop(),
            Cmd::Record(n) => {
                let _ = self.notes.send(Note::Handled(self.name, n));
            }
            Cmd::Incarnation(reply) => {
                let _ = reply.send(ctx.incarnation());
            }
            Cmd::Block(until) => {
                let _ = until.recv();
            }
            Cmd::Hang(until) => {
                let _ = until.recv();
            }
        }
        Ok(())
    }

    fn stopped(&mut self, reason: &ExitReason) {
        let _ = self.notes.send(Note::Stopped(self.name, reason.to_string()));
        if self.script.panic_in_stopped {
            panic!("{} panics in stopped", self.name);
        }
    }
}

pub fn probe(name: &'static str, notes: &Sender<Note>) -> WorkerSpec<Probe> {
    probe_with(name, notes, Script::default())
}

pub fn probe_with(name: &'static str, notes: &Sender<Note>, script: Script) -> WorkerSpec<Probe> {
    let notes = notes.clone();
    ChildSpec::worker(name, move || Probe { name, notes: notes.clone(), script: script.clone(), incarnation: 0 })
}

/// Receives until `pred` matches, or panics at the deadline.
pub fn expect<T: std::fmt::Debug>(rx: &Receiver<T>, what: &str, mut pred: impl FnMut(&T) -> bool) -> T {
    let deadline = Instant::now() + DEADLINE;
    let mut seen = Vec::new();
    loop {
        match rx.recv_deadline(deadline) {
            Ok(item) if pred(&item) => return item,
            Ok(item) => seen.push(format!("{item:?}")),
            Err(_) => panic!("timed out waiting for {what}; saw {seen:#?}"),
        }
    }
}

/// Collects everything currently queued without waiting.
pub fn drain<T>(rx: &Receiver<T>) -> Vec<T> {
    rx.try_iter().collect()
}

/// The probes that stopped for a shutdown, in the order they stopped, from
/// what is queued now.
pub fn stopped_for_shutdown(notes: &Receiver<Note>) -> Vec<&'static str> {
    drain(notes)
        .into_iter()
        .filter_map(|n| match n {
            Note::Stopped(name, why) if why == "shutdown" => Some(name),
            _ => None,
        })
        .collect()
}

/// How many of this process's threads are named `name` (a runner is
/// `vigil:` and the end of its child's path).
pub fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task lists this process's threads")
        .flatten()
        .filter(|task| std::fs::read_to_string(task.path().join("comm")).is_ok_and(|comm| comm.trim_end() == name))
        .count()
}

pub fn started(path: &str, incarnation: u64) -> impl FnMut(&SupervisionEvent) -> bool + '_ {
    move |e| matches!(e, SupervisionEvent::Started { path: p, incarnation: i } if p == path && *i == incarnation)
}

pub fn incarnation(addr: &Addr<Cmd>) -> u64 {
    addr.call(Cmd::Incarnation, DEADLINE).expect("probe answers")
}

/// A counter shared between a factory and a test.
#[derive(Clone, Default)]
pub struct Counter(pub Arc<AtomicU64>);

impl Counter {
    pub fn bump(&self) -> u64 {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}
