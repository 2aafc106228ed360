//! SIGTERM turns into an orderly shutdown (own test binary: signals are
//! process-wide).
#[path = "core/support/mod.rs"]
mod support;

use support::*;
use vigil_core::*;

#[test]
fn sigterm_shuts_the_tree_down_in_order_and_maps_to_exit_code_zero() {
    let (tx, notes) = crossbeam_channel::unbounded();
    let system = Supervisor::builder().child(probe("a", &tx)).child(probe("b", &tx)).start().unwrap();
    system.shutdown_on_signals().unwrap();
    signal_hook::low_level::raise(signal_hook::consts::SIGTERM).unwrap();
    let outcome = system.wait();
    assert!(outcome.as_ref().is_ok_and(ShutdownReport::is_clean), "{outcome:?}");
    assert_eq!(exit_code(&outcome), std::process::ExitCode::SUCCESS);
    let stopped: Vec<&str> = drain(&notes)
        .into_iter()
        .filter_map(|n| match n {
            Note::Stopped(name, _) => Some(name),
            _ => None,
        })
        .collect();
    assert_eq!(stopped, ["b", "a"]);
}
