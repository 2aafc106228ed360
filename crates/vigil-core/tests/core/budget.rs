//! The shutdown budget against a measured shutdown, and `grace_period`.
use crate::support;

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use support::drain;
use vigil_core::*;

/// How a child behaves when asked to stop.
#[derive(Clone)]
enum Stop {
    /// Its `stopped` hook works for this long (a slow flush, say).
    Takes(Duration),
    /// Its `stopped` hook blocks until the test releases it: it is
    /// abandoned at its shutdown timeout.
    Stuck(Receiver<()>),
}

struct Slow {
    stop: Stop,
}

impl Actor for Slow {
    type Msg = ();
    fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> {
        Ok(())
    }
    fn stopped(&mut self, _: &ExitReason) {
        match &self.stop {
            Stop::Takes(work) => std::thread::sleep(*work), // the work itself, not a wait
            Stop::Stuck(release) => {
                let _ = release.recv();
            }
        }
    }
}

fn slow(id: &str, stop: Stop, timeout: Duration) -> ChildSpec {
    ChildSpec::worker(id, move || Slow { stop: stop.clone() }).shutdown(timeout).into()
}

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A tree whose shutdown takes close to its worst case: each child stops
/// at, or just under, its shutdown timeout. In stop order: `open` (an
/// infinite-timeout supervisor, which costs its children's sum: `s3`
/// abandoned at 100 ms, `f2` done in 85 of 90 ms), `capped` (its own 200 ms
/// caps two children abandoned at 150 ms each), `stuck` (abandoned at
/// 150 ms), `fixed` (done in 100 of 105 ms).
fn tree(release: &Receiver<()>) -> SupervisorBuilder {
    let stuck = || Stop::Stuck(release.clone());
    let capped = Supervisor::builder().child(slow("s1", stuck(), ms(150))).child(slow("s2", stuck(), ms(150)));
    let open = Supervisor::builder().child(slow("f2", Stop::Takes(ms(85)), ms(90))).child(slow("s3", stuck(), ms(100)));
    Supervisor::builder()
        .child(slow("fixed", Stop::Takes(ms(100)), ms(105)))
        .child(slow("stuck", stuck(), ms(150)))
        .child(ChildSpec::supervisor("capped", capped).shutdown(ms(200)))
        .child(ChildSpec::supervisor("open", open))
}

/// What a loaded machine may add to a measured shutdown beyond 10 % of the
/// budget: thread wake-ups, and the `stopped` hooks' sleeps overshooting.
const SCHEDULING_ALLOWANCE: Duration = ms(150);

#[test]
fn the_budget_matches_a_measured_shutdown() {
    let (release_tx, release) = crossbeam_channel::unbounded::<()>();
    let planned = tree(&release).shutdown_budget();
    let entry = |path: &str, d: Duration| (path.to_owned(), Some(d));
    assert_eq!(
        planned.children,
        [
            entry("root/capped", ms(200)),
            entry("root/stuck", ms(150)),
            entry("root/fixed", ms(105)),
            entry("root/open/s3", ms(100)),
            entry("root/open/f2", ms(90)),
        ]
    );
    // Six children stopped: the root's four, and the two of `open`.
    assert_eq!(planned.slack, SHUTDOWN_SLACK_PER_CHILD * 6);
    let budget = planned.total.expect("bounded");
    assert_eq!(budget, ms(645) + planned.slack);

    let mut best = Duration::MAX;
    for _attempt in 0..3 {
        let system = tree(&release).start().unwrap();
        assert_eq!(system.shutdown_budget(), planned, "the running tree has the planned children");
        let events = system.subscribe();
        let began = Instant::now();
        system.shutdown().unwrap();
        let measured = began.elapsed();
        // `stuck`, `s3` and `capped` were abandoned at their timeouts
        // (`capped` abandons its own two on its thread, after its parent
        // moved on); `fixed` and `f2` stopped in time.
        let mut abandoned: Vec<String> = drain(&events)
            .into_iter()
            .filter_map(|e| match e {
                SupervisionEvent::Abandoned { path, .. } => Some(path),
                _ => None,
            })
            .collect();
        abandoned.sort();
        assert!(
            ["root/capped", "root/open/s3", "root/stuck"].iter().all(|p| abandoned.contains(&(*p).to_owned())),
            "{abandoned:?}"
        );
        assert!(!abandoned.iter().any(|p| p == "root/fixed" || p == "root/open/f2"), "{abandoned:?}");
        // A shutdown can only take longer than its parts, never shorter.
        assert!(measured >= budget.mul_f64(0.9), "measured {measured:?} < 90 % of the budget {budget:?}");
        best = best.min(measured);
        if best <= budget.mul_f64(1.1) + SCHEDULING_ALLOWANCE {
            break;
        }
    }
    // Let the abandoned threads end.
    drop(release_tx);
    assert!(
        best <= budget.mul_f64(1.1) + SCHEDULING_ALLOWANCE,
        "the best of 3 shutdowns took {best:?}, more than 110 % of the budget {budget:?} + {SCHEDULING_ALLOWANCE:?}"
    );
}

#[test]
fn grace_period_refuses_a_tree_that_would_overrun_and_names_the_children() {
    let (_release_tx, release): (Sender<()>, _) = crossbeam_channel::unbounded();
    // 657 ms at worst: without `capped` (200 ms) the rest fits in 500 ms.
    let refused = tree(&release).grace_period(ms(500)).start().unwrap_err();
    let StartError::Config(ConfigError::ShutdownBudget { supervisor, budget, grace_period, over }) = &refused else {
        panic!("{refused:?}")
    };
    assert_eq!(
        (supervisor.as_str(), *grace_period, over.as_slice()),
        ("root", ms(500), ["root/capped".to_owned()].as_slice())
    );
    assert_eq!(*budget, Some(ms(645) + SHUTDOWN_SLACK_PER_CHILD * 6));
    assert!(refused.to_string().contains("exceeds the grace period of 500ms; over it: root/capped"), "{refused}");
    // In 320 ms, two must go: 105 + 100 + 90 ms and the slack fit.
    let Err(StartError::Config(ConfigError::ShutdownBudget { over, .. })) =
        tree(&release).grace_period(ms(320)).start()
    else {
        panic!("fits in 320 ms?")
    };
    assert_eq!(over, ["root/capped", "root/stuck"]);
    // A nested supervisor's own grace period is checked too.
    let inner = Supervisor::builder().grace_period(ms(100)).child(slow("w", Stop::Takes(ms(1)), ms(150)));
    let refused = Supervisor::builder().child(ChildSpec::supervisor("inner", inner)).start().unwrap_err();
    assert!(
        matches!(&refused, StartError::Config(ConfigError::ShutdownBudget { supervisor, over, .. }) if supervisor == "root/inner" && over == &["root/inner/w"]),
        "{refused:?}"
    );
    // A child that waits forever never fits.
    let forever = Supervisor::builder().grace_period(Duration::from_secs(30)).child(slow(
        "db",
        Stop::Takes(ms(1)),
        Duration::MAX,
    ));
    let refused = forever.start().unwrap_err();
    assert!(
        matches!(&refused, StartError::Config(ConfigError::ShutdownBudget { budget: None, over, .. }) if over == &["root/db"]),
        "{refused:?}"
    );
    // A tree that fits starts.
    let system = tree(&release).grace_period(Duration::from_secs(1)).start().unwrap();
    drop(_release_tx);
    system.shutdown().unwrap();
}
