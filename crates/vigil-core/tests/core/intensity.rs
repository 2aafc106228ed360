//! The restart-intensity boundary, escalation up to the root, and the main
//! thread carrying on through it all.
use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use support::*;
use vigil_core::*;

#[test]
fn exactly_intensity_restarts_pass_and_one_more_gives_up() {
    let (tx, notes) = crossbeam_channel::unbounded();
    let spec = probe("w", &tx);
    let addr = spec.addr();
    let system = Supervisor::builder().intensity(3, Duration::from_secs(3600)).child(spec).start().unwrap();
    for n in 1..=3 {
        addr.tell(Cmd::Panic).unwrap();
        expect(&notes, &format!("restart {n}"), |note| *note == Note::Started("w", n));
        wait_until("restart counted", || system.stats().restarts_in_window == n as u32);
    }
    addr.tell(Cmd::Panic).unwrap();
    let error = system.wait().expect_err("the fourth failure exceeds the intensity");
    match &error.reason {
        ExitReason::Escalated { supervisor, intensity, child, cause, .. } => {
            assert_eq!((supervisor.as_str(), *intensity, child.as_str()), ("root", 3, "root/w"));
            assert!(matches!(**cause, ExitReason::Panicked { hook: Hook::Handle, .. }), "{cause:?}");
        }
        other => panic!("unexpected reason {other:?}"),
    }
    assert!(
        error.to_string().contains("root reached max restart intensity (3 in 3600s) after root/w exited"),
        "{error}"
    );
    assert_eq!(exit_code(&Err(error)), std::process::ExitCode::from(1));
}

#[test]
fn escalation_three_levels_deep_reaches_main_which_keeps_working() {
    // After its first build, the worker's factory panics on every start: a
    // restart storm that each supervisor level gives up on in turn.
    let builds = Counter::default();
    let factory_builds = builds.clone();
    let (tx, _notes) = crossbeam_channel::unbounded();
    let worker = ChildSpec::worker("worker", move || {
        if factory_builds.bump() > 1 {
            panic!("cannot connect to the database");
        }
        Probe { name: "worker", notes: tx.clone(), script: Script::default(), incarnation: 0 }
    });
    let addr = worker.addr();
    let leaf = Supervisor::builder().intensity(1, Duration::from_secs(3600)).child(worker);
    let mid = Supervisor::builder().intensity(1, Duration::from_secs(3600)).child(ChildSpec::supervisor("leaf", leaf));
    let root = Supervisor::builder().intensity(1, Duration::from_secs(3600)).child(ChildSpec::supervisor("mid", mid));

    // Request threads keep serving while the tree burns down.
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let requests: Vec<_> = (0..4)
        .map(|_| {
            let (stop, served) = (Arc::clone(&stop), Arc::clone(&served));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    served.fetch_add(1, Ordering::Relaxed);
                    std::hint::black_box((0..100u64).sum::<u64>());
                }
            })
        })
        .collect();

    let system = root.start().unwrap();
    let events = system.subscribe();
    addr.tell(Cmd::Panic).unwrap();
    let error = system.wait().expect_err("the root gives up");

    // The chain runs from the root down to the failure at the bottom: the
    // root gave up after restarting `mid` failed, because `leaf` could not
    // start its worker.
    let chain = error.reason.chain();
    assert!(
        matches!(chain[0], ExitReason::Escalated { supervisor, child, .. } if supervisor == "root" && child == "root/mid")
    );
    assert!(
        chain
            .iter()
            .any(|r| matches!(r, ExitReason::ChildStartFailed { child, .. } if child == "root/mid/leaf/worker"))
    );
    assert_eq!(
        error.to_string(),
        format!(
            "the supervision tree gave up: root reached max restart intensity (1 in 3600s) after root/mid exited: \
             child root/mid/leaf failed to start: child root/mid/leaf/worker failed to start: {}",
            chain.last().unwrap()
        )
    );
    let bottom = chain.last().unwrap();
    assert!(
        matches!(bottom, ExitReason::Panicked { hook: Hook::Factory, message, .. } if message == "cannot connect to the database"),
        "{error}"
    );
    let gave_up: Vec<String> = events
        .try_iter()
        .filter_map(|e| match e {
            SupervisionEvent::GaveUp { path, .. } => Some(path),
            _ => None,
        })
        .collect();
    assert!(gave_up.contains(&"root/mid/leaf".to_owned()), "{gave_up:?}");
    assert!(gave_up.contains(&"root/mid".to_owned()), "{gave_up:?}");
    assert_eq!(gave_up.last().map(String::as_str), Some("root"));

    // The main thread is here, unharmed, and the request threads still run.
    let before = served.load(Ordering::Relaxed);
    wait_until("request threads still serving", || served.load(Ordering::Relaxed) > before);
    stop.store(true, Ordering::Relaxed);
    for r in requests {
        r.join().expect("no request thread saw a panic");
    }
    assert!(builds.get() >= 3);
}

#[test]
fn a_healthy_sibling_keeps_serving_while_another_child_restarts() {
    let (tx, notes) = crossbeam_channel::unbounded();
    let flaky = probe("flaky", &tx);
    let steady = probe("steady", &tx);
    let (flaky_addr, steady_addr) = (flaky.addr(), steady.addr());
    let system =
        Supervisor::builder().intensity(50, Duration::from_secs(60)).child(flaky).child(steady).start().unwrap();
    for i in 0..20 {
        flaky_addr.tell(Cmd::Panic).unwrap();
        steady_addr.tell(Cmd::Record(i)).unwrap();
    }
    for i in 0..20 {
        expect(&notes, "steady handled", |n| *n == Note::Handled("steady", i));
    }
    wait_until("20 restarts", || system.stats().restarts_total == 20);
    assert_eq!(incarnation(&steady_addr), 0);
    assert_eq!(incarnation(&flaky_addr), 20);
    system.shutdown().unwrap();
}
