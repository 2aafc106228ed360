//! `idle_actor_rss`: resident memory per idle actor, at 1,000 actors.
//!
//! Each repetition runs in a fresh process (`vigil-bench --probe-rss KIND N`)
//! so that memory kept by earlier figures cannot hide or inflate the growth.
//! The probe warms up (one actor or thread started and stopped), reads
//! `/proc/self/statm`, starts N idle actors, waits until all have started,
//! reads it again, and prints the growth per actor in KiB.
//!
//! - Vigil: N workers under one supervisor, default stack and mailbox.
//! - Baseline: N raw threads (default stack), each blocked on its own channel.
//! - Peer: N ractor actors on a 2-worker tokio runtime.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use ractor::{ActorProcessingErr, ActorRef};
use serde_json::json;
use vigil_core::{Actor, BoxError, ChildSpec, Context, DEFAULT_MAILBOX, Supervisor, SupervisorBuilder};

use crate::error::BenchError;
use crate::harness::{Variant, interleave};
use crate::report::{Bound, Figure, Reference, Role};

const KEY: &str = "idle_actor_rss";

/// What the RSS probe starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    /// Vigil workers under one supervisor.
    Vigil,
    /// Raw threads blocked on a channel.
    Raw,
    /// ractor actors on tokio.
    Ractor,
}

impl ProbeKind {
    /// The name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Vigil => "vigil",
            ProbeKind::Raw => "raw",
            ProbeKind::Ractor => "ractor",
        }
    }

    /// Parses a command-line name.
    ///
    /// # Examples
    ///
    /// ```
    /// use vigil_bench::ProbeKind;
    /// assert_eq!(ProbeKind::parse("raw"), Some(ProbeKind::Raw));
    /// assert_eq!(ProbeKind::parse("erlang"), None);
    /// ```
    pub fn parse(name: &str) -> Option<ProbeKind> {
        [ProbeKind::Vigil, ProbeKind::Raw, ProbeKind::Ractor].into_iter().find(|k| k.as_str() == name)
    }
}

/// Resident memory of this process in KiB, from `/proc/self/statm` (pages)
/// and the kernel page size from `/proc/self/smaps`.
fn resident_kib() -> Result<f64, BenchError> {
    let fail = |problem: String| BenchError::setup(KEY, problem);
    let statm = std::fs::read_to_string("/proc/self/statm").map_err(|e| fail(format!("/proc/self/statm: {e}")))?;
    let pages: f64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| fail(format!("/proc/self/statm: no resident field in {statm:?}")))?;
    Ok(pages * page_kib()?)
}

fn page_kib() -> Result<f64, BenchError> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").map_err(|e| BenchError::setup(KEY, e))?;
    smaps
        .lines()
        .find_map(|l| l.strip_prefix("KernelPageSize:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| BenchError::setup(KEY, "/proc/self/smaps: no KernelPageSize"))
}

struct Idle;

impl Actor for Idle {
    type Msg = ();
    fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> {
        Ok(())
    }
}

struct PeerIdle(Arc<AtomicUsize>);

impl ractor::Actor for PeerIdle {
    type Msg = ();
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<()>, _: ()) -> Result<(), ActorProcessingErr> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

fn vigil_tree(n: usize) -> SupervisorBuilder {
    Supervisor::builder().children((0..n).map(|i| ChildSpec::worker(format!("idle{i}"), || Idle)))
}

/// Starts `n` idle actors of `kind` and returns the growth of this process's
/// resident memory per actor, in KiB. Meant to run in a fresh process (see
/// the module docs); the actors are stopped before it returns.
///
/// # Errors
///
/// [`BenchError::Setup`] if the actors cannot be started or `/proc` cannot
/// be read.
pub fn probe_rss(kind: ProbeKind, n: usize) -> Result<f64, BenchError> {
    let n = n.max(1);
    match kind {
        ProbeKind::Vigil => {
            vigil_tree(1)
                .start()
                .map_err(|e| BenchError::setup(KEY, e))?
                .shutdown()
                .map_err(|e| BenchError::setup(KEY, e))?;
            let before = resident_kib()?;
            let system = vigil_tree(n).start().map_err(|e| BenchError::setup(KEY, e))?;
            let after = resident_kib()?;
            system.shutdown().map_err(|e| BenchError::setup(KEY, e))?;
            Ok((after - before) / n as f64)
        }
        ProbeKind::Raw => {
            let spawn_idle = |ready: crossbeam_channel::Sender<()>| {
                let (tx, rx) = crossbeam_channel::bounded::<()>(1);
                let t = thread::Builder::new().spawn(move || {
                    let _ = ready.send(());
                    let _ = rx.recv();
                });
                t.map(|t| (tx, t)).map_err(|e| BenchError::setup(KEY, e))
            };
            let (ready, started) = crossbeam_channel::unbounded();
            let (tx, t) = spawn_idle(ready.clone())?;
            drop(tx);
            let _ = t.join();
            let before = resident_kib()?;
            let threads = (0..n).map(|_| spawn_idle(ready.clone())).collect::<Result<Vec<_>, _>>()?;
            for _ in 0..=n {
                started.recv_timeout(Duration::from_secs(30)).map_err(|e| BenchError::setup(KEY, e))?;
            }
            let after = resident_kib()?;
            for (tx, t) in threads {
                drop(tx);
                let _ = t.join();
            }
            Ok((after - before) / n as f64)
        }
        ProbeKind::Ractor => {
            let rt = crate::peer::runtime().map_err(|e| BenchError::setup(KEY, e))?;
            let live = Arc::new(AtomicUsize::new(0));
            let spawn = |live: &Arc<AtomicUsize>| {
                rt.block_on(ractor::Actor::spawn(None, PeerIdle(Arc::clone(live)), ()))
                    .map_err(|e| BenchError::setup(KEY, e))
            };
            let (warm, handle) = spawn(&live)?;
            warm.stop(None);
            rt.block_on(handle).map_err(|e| BenchError::setup(KEY, e))?;
            let before = resident_kib()?;
            let actors = (0..n).map(|_| spawn(&live)).collect::<Result<Vec<_>, _>>()?;
            let deadline = Instant::now() + Duration::from_secs(30);
            while live.load(Ordering::Relaxed) < n + 1 && Instant::now() < deadline {
                thread::yield_now();
            }
            let after = resident_kib()?;
            for (actor, handle) in actors {
                actor.stop(None);
                let _ = rt.block_on(handle);
            }
            Ok((after - before) / n as f64)
        }
    }
}

/// One repetition: a fresh probe process when an executable is configured,
/// otherwise this process.
fn sample(config: &crate::Config, kind: ProbeKind) -> Result<f64, BenchError> {
    let n = config.idle_actors;
    let Some(exe) = &config.probe_exe else { return probe_rss(kind, n) };
    let command = format!("{} --probe-rss {} {n}", exe.display(), kind.as_str());
    let fail = |problem: String| BenchError::Probe { command: command.clone(), problem };
    let out = Command::new(exe)
        .args(["--probe-rss", kind.as_str(), &n.to_string()])
        .output()
        .map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        return Err(fail(format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim())));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim().parse().map_err(|_| fail(format!("unparsable output {:?}", text.trim())))
}

pub(crate) fn figure(config: &crate::Config) -> Result<Figure, BenchError> {
    let mut variants: Vec<Variant<'_>> = vec![
        Box::new(|| sample(config, ProbeKind::Raw)),
        Box::new(|| sample(config, ProbeKind::Vigil)),
        Box::new(|| sample(config, ProbeKind::Ractor)),
    ];
    let mut s = interleave(KEY, config.reps, &mut variants)?.into_iter();
    let (Some(baseline), Some(value), Some(peer)) = (s.next(), s.next(), s.next()) else {
        return Err(BenchError::check(KEY, "missing variant"));
    };
    Ok(Figure {
        key: KEY,
        what: "growth of /proc/self/statm resident memory per idle worker (default stack and mailbox)",
        unit: "KiB",
        cpu_ns_per_op: None,
        value,
        references: vec![
            Reference {
                name: "raw_idle_thread",
                what: "a raw thread (default stack) blocked on its own channel",
                role: Role::Baseline,
                cpu_ns_per_op: None,
                summary: baseline,
            },
            Reference {
                name: "ractor_idle_actor",
                what: "an idle ractor actor (a tokio task) on a 2-worker runtime",
                role: Role::Peer,
                cpu_ns_per_op: None,
                summary: peer,
            },
        ],
        target: vec![Bound::ValueAtMost(64.0)],
        facts: vec![
            ("actors", json!(config.idle_actors)),
            ("mailbox", json!(DEFAULT_MAILBOX)),
            ("fresh_process_per_rep", json!(config.probe_exe.is_some())),
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_reads_growth_for_every_kind() {
        assert!(page_kib().unwrap() >= 4.0);
        assert!(resident_kib().unwrap() > 0.0);
        for kind in [ProbeKind::Vigil, ProbeKind::Raw, ProbeKind::Ractor] {
            assert!(probe_rss(kind, 20).unwrap().is_finite());
        }
    }
}
