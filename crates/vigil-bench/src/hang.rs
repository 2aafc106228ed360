//! The watchdog and the deadlock check (issue 13), each against itself
//! switched off, in the same run.
//!
//! - `watchdog_overhead`: `tell_throughput`'s Vigil variant with the summing
//!   child under the watchdog (a hang timeout set), as a ratio to the same
//!   without. The runner pays a plain store entering each hook and one
//!   atomic add leaving it; the watchdog thread samples every tenth of the
//!   timeout.
//! - `hang_detection`: a handler blocks on a channel nothing answers; the
//!   clock runs from the moment it is inside the hook until the replacement
//!   (a fresh thread, same mailbox) answers a `call` queued behind it. The
//!   baseline is the hang timeout itself, the floor: the ratio is how much
//!   later than the timeout a hang is over.
//! - `deadlock_check_cost`: `call` round trips made from inside an actor's
//!   hook (each one checked against the wait-for graph: a lock, a walk of
//!   the waiting chain, an insert and a remove) as a ratio to the same calls
//!   from a plain thread, which are not tracked.

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use serde_json::json;
use vigil_core::{Actor, Addr, BoxError, ChildSpec, Context, Reply, Supervisor};

use crate::call::Echo;
use crate::error::BenchError;
use crate::harness::{Variant, interleave};
use crate::report::{Bound, Figure, Reference, Role};
use crate::stats::{median_us, ns_per};

const WAIT: Duration = Duration::from_secs(60);

pub(crate) fn overhead_figure(config: &crate::Config) -> Result<Figure, BenchError> {
    const KEY: &str = "watchdog_overhead";
    let (n, timeout) = (config.tell_messages, config.hang_timeout);
    let mut variants: Vec<Variant<'_>> = vec![
        Box::new(|| crate::tell::vigil_watched(n, None)),
        Box::new(|| crate::tell::vigil_watched(n, Some(timeout))),
    ];
    let mut s = interleave(KEY, config.reps, &mut variants)?.into_iter();
    let (Some(baseline), Some(value)) = (s.next(), s.next()) else {
        return Err(BenchError::check(KEY, "missing variant"));
    };
    Ok(Figure {
        key: KEY,
        what: "tell_throughput's Vigil variant with the child under the watchdog",
        unit: "msg/s",
        cpu_ns_per_op: None,
        value,
        references: vec![Reference {
            name: "vigil_unwatched",
            what: "the same, without a hang timeout",
            role: Role::Baseline,
            cpu_ns_per_op: None,
            summary: baseline,
        }],
        target: vec![Bound::BaselineRatioAtLeast(0.95)],
        facts: vec![("messages", json!(n)), ("hang_timeout_ms", json!(timeout.as_millis() as u64))],
    })
}

enum Victim {
    /// Blocks until the sender of the first channel goes; says so first.
    Hang(Receiver<()>, Sender<()>),
    Ping(Reply<u64>),
}

struct VictimActor;

impl Actor for VictimActor {
    type Msg = Victim;
    fn handle(&mut self, msg: Victim, ctx: &mut Context<'_, Victim>) -> Result<(), BoxError> {
        match msg {
            Victim::Hang(until, inside) => {
                let _ = inside.send(());
                let _ = until.recv();
            }
            Victim::Ping(reply) => {
                let _ = reply.send(ctx.incarnation());
            }
        }
        Ok(())
    }
}

/// The median time from a hang's start to the replacement's first answer,
/// in ms.
fn detection(key: &'static str, hangs: u64, timeout: Duration) -> Result<f64, BenchError> {
    let spec = ChildSpec::worker("victim", || VictimActor).hang_timeout(timeout);
    let addr = spec.addr();
    let system = Supervisor::builder()
        .intensity(1_000_000, Duration::from_secs(1))
        .child(spec)
        .start()
        .map_err(|e| BenchError::setup(key, e))?;
    let mut blocked = Vec::new();
    let mut samples = Vec::new();
    for i in 1..=hangs {
        let (release, until) = crossbeam_channel::bounded(0);
        let (inside_tx, inside) = crossbeam_channel::bounded(1);
        // Timed from before the tell: the watchdog's clock starts when the
        // handler does, which is after this, so a sample can never be under
        // the hang timeout (timing from `inside` could be, on a loaded host).
        let start = Instant::now();
        addr.tell(Victim::Hang(until, inside_tx)).map_err(|e| BenchError::check(key, e))?;
        inside.recv_timeout(WAIT).map_err(|e| BenchError::check(key, e))?;
        let got = addr.call(Victim::Ping, WAIT).map_err(|e| BenchError::check(key, e))?;
        samples.push(start.elapsed());
        if got != i {
            return Err(BenchError::check(key, format!("answered by incarnation {got}, expected {i}")));
        }
        blocked.push(release);
    }
    // The hung hooks return now and their threads exit quietly.
    drop(blocked);
    system.shutdown().map_err(|e| BenchError::setup(key, e))?;
    Ok(median_us(samples) / 1_000.0)
}

pub(crate) fn detection_figure(config: &crate::Config) -> Result<Figure, BenchError> {
    const KEY: &str = "hang_detection";
    let (hangs, timeout) = (config.hangs, config.hang_timeout);
    let floor = timeout.as_secs_f64() * 1_000.0;
    let mut variants: Vec<Variant<'_>> = vec![Box::new(|| Ok(floor)), Box::new(|| detection(KEY, hangs, timeout))];
    let mut s = interleave(KEY, config.reps, &mut variants)?.into_iter();
    let (Some(baseline), Some(value)) = (s.next(), s.next()) else {
        return Err(BenchError::check(KEY, "missing variant"));
    };
    Ok(Figure {
        key: KEY,
        what: "from a handler blocking forever until its replacement answers the next call",
        unit: "ms",
        cpu_ns_per_op: None,
        value,
        references: vec![Reference {
            name: "hang_timeout",
            what: "the child's hang timeout: no hang can be declared sooner",
            role: Role::Baseline,
            cpu_ns_per_op: None,
            summary: baseline,
        }],
        target: vec![Bound::BaselineRatioAtMost(1.25)],
        facts: vec![("hangs_per_rep", json!(hangs)), ("hang_timeout_ms", json!(timeout.as_millis() as u64))],
    })
}

/// Makes `n` calls to the echo actor from its own hook, answers the time.
struct Caller(Addr<(u64, Reply<u64>)>);

impl Actor for Caller {
    type Msg = (u64, Reply<Result<Duration, String>>);
    fn handle(&mut self, (n, reply): Self::Msg, _: &mut Context<'_, Self::Msg>) -> Result<(), BoxError> {
        let _ = reply.send(calls(&self.0, n));
        Ok(())
    }
}

fn calls(echo: &Addr<(u64, Reply<u64>)>, n: u64) -> Result<Duration, String> {
    let start = Instant::now();
    for i in 0..n {
        let got = echo.call(|reply| (i, reply), WAIT).map_err(|e| e.to_string())?;
        if got != i + 1 {
            return Err(format!("echo answered {got} to {i}"));
        }
    }
    Ok(start.elapsed())
}

/// Nanoseconds per call, from an actor's hook or from this thread.
fn deadlock_variant(key: &'static str, n: u64, from_actor: bool) -> Result<f64, BenchError> {
    let echo = ChildSpec::worker("echo", || Echo);
    let echo_addr = echo.addr();
    let caller_echo = echo_addr.clone();
    let caller = ChildSpec::worker("caller", move || Caller(caller_echo.clone()));
    let caller_addr = caller.addr();
    let system = Supervisor::builder().child(echo).child(caller).start().map_err(|e| BenchError::setup(key, e))?;
    let elapsed = if from_actor {
        caller_addr.call(|reply| (n, reply), WAIT).map_err(|e| BenchError::check(key, e))?
    } else {
        calls(&echo_addr, n)
    };
    let elapsed = elapsed.map_err(|e| BenchError::check(key, e))?;
    system.shutdown().map_err(|e| BenchError::setup(key, e))?;
    Ok(ns_per(elapsed, n))
}

pub(crate) fn deadlock_figure(config: &crate::Config) -> Result<Figure, BenchError> {
    const KEY: &str = "deadlock_check_cost";
    let n = config.calls;
    let mut variants: Vec<Variant<'_>> =
        vec![Box::new(|| deadlock_variant(KEY, n, false)), Box::new(|| deadlock_variant(KEY, n, true))];
    let mut s = interleave(KEY, config.reps, &mut variants)?.into_iter();
    let (Some(baseline), Some(value)) = (s.next(), s.next()) else {
        return Err(BenchError::check(KEY, "missing variant"));
    };
    Ok(Figure {
        key: KEY,
        what: "Addr::call round trip from inside an actor's hook, checked against the wait-for graph",
        unit: "ns/call",
        cpu_ns_per_op: None,
        value,
        references: vec![Reference {
            name: "call_from_a_plain_thread",
            what: "the same calls from a thread that is not an actor (not tracked)",
            role: Role::Baseline,
            cpu_ns_per_op: None,
            summary: baseline,
        }],
        target: vec![Bound::BaselineRatioAtMost(1.1)],
        facts: vec![("calls", json!(n))],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_measures() {
        assert!(detection("test", 1, Duration::from_millis(20)).unwrap() >= 20.0);
        assert!(deadlock_variant("test", 10, true).unwrap() > 0.0);
        assert!(deadlock_variant("test", 10, false).unwrap() > 0.0);
    }
}
