//! The dynamic children API: start, terminate, restart, delete, list, count.
use crate::support;

use support::*;
use vigil_core::*;

#[test]
fn a_dynamic_supervisor_starts_empty_and_enforces_max_children() {
    let (tx, notes) = crossbeam_channel::unbounded();
    let pool = Supervisor::dynamic().max_children(2);
    let pool_ref = pool.handle();
    let system = Supervisor::builder().child(ChildSpec::supervisor("pool", pool)).start().unwrap();
    assert_eq!(pool_ref.count_children(), ChildCounts::default());

    let one = probe("one", &tx);
    let one_addr = one.addr();
    pool_ref.start_child(one).unwrap();
    pool_ref.start_child(probe("two", &tx)).unwrap();
    assert_eq!(pool_ref.start_child(probe("two", &tx)), Err(ControlError::AlreadyExists("two".into())));
    assert_eq!(pool_ref.start_child(probe("three", &tx)), Err(ControlError::MaxChildren(2)));
    assert_eq!(pool_ref.count_children(), ChildCounts { specs: 2, active: 2, supervisors: 0, workers: 2 });
    let paths: Vec<String> = pool_ref.which_children().into_iter().map(|c| c.path).collect();
    assert_eq!(paths, ["root/pool/one", "root/pool/two"]);
    expect(&notes, "one started", |n| *n == Note::Started("one", 0));

    // Terminate removes the child, as OTP's simple_one_for_one and Elixir's
    // DynamicSupervisor do; its address refuses messages from then on.
    pool_ref.terminate_child("one").unwrap();
    assert_eq!(pool_ref.count_children(), ChildCounts { specs: 1, active: 1, supervisors: 0, workers: 1 });
    assert!(matches!(one_addr.try_tell(Cmd::Record(1)), Err(TryTellError::Closed(_))));
    assert_eq!(pool_ref.delete_child("two"), Err(ControlError::Running("two".into())));
    assert_eq!(pool_ref.restart_child("one"), Err(ControlError::NotFound("one".into())));
    assert_eq!(pool_ref.delete_child("one"), Err(ControlError::NotFound("one".into())));

    // The id is free for a new child.
    let again = probe("one", &tx);
    let again_addr = again.addr();
    pool_ref.start_child(again).unwrap();
    assert_eq!(incarnation(&again_addr), 0);
    assert_eq!(pool_ref.restart_child("one"), Err(ControlError::Running("one".into())));
    pool_ref.terminate_child("one").unwrap();
    assert_eq!(pool_ref.count_children().specs, 1);
    // Stats of the whole tree include the nested supervisor's children.
    let stats = system.stats();
    assert_eq!(stats.find("root/pool/two").map(|c| c.state), Some(ChildState::Running));
    system.shutdown().unwrap();
}

#[test]
fn a_child_that_fails_to_start_through_the_api_is_not_kept() {
    let (tx, _notes) = crossbeam_channel::unbounded();
    let pool = Supervisor::dynamic();
    let pool_ref = pool.handle();
    let system = Supervisor::builder().child(ChildSpec::supervisor("pool", pool)).start().unwrap();
    let script = Script { fail_on_start_incarnations: Some(u64::MAX), ..Script::default() };
    let error = pool_ref.start_child(probe_with("bad", &tx, script)).unwrap_err();
    assert_eq!(error.to_string(), "child root/pool/bad failed to start: in the start hook: bad cannot start yet");
    assert_eq!(pool_ref.count_children().specs, 0);
    let invalid = pool_ref.start_child(probe("a/b", &tx)).unwrap_err();
    assert_eq!(invalid, ControlError::Config(ConfigError::InvalidId { id: "a/b".into() }));
    system.shutdown().unwrap();
}

#[test]
fn requests_to_a_stopped_supervisor_fail_instead_of_hanging() {
    let (tx, _notes) = crossbeam_channel::unbounded();
    let root = Supervisor::builder().child(probe("w", &tx));
    let handle = root.handle();
    root.start().unwrap().shutdown().unwrap();
    assert_eq!(handle.terminate_child("w"), Err(ControlError::SupervisorGone));
}
