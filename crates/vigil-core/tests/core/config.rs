//! Invalid configuration gets a typed error that names the problem; nothing starts.
use crate::support;

use std::time::Duration;

use support::*;
use vigil_core::*;

fn config_error(builder: SupervisorBuilder) -> (ConfigError, String) {
    match builder.start() {
        Err(StartError::Config(e)) => {
            let text = e.to_string();
            (e, text)
        }
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

#[test]
fn zero_mailbox_capacity() {
    let (tx, _) = crossbeam_channel::unbounded();
    let (e, text) = config_error(Supervisor::builder().child(probe("w", &tx).mailbox(0)));
    assert_eq!(e, ConfigError::ZeroCapacity { child: "root/w".into() });
    assert_eq!(text, "root/w: mailbox capacity must be at least 1");
}

#[test]
fn a_mailbox_too_large_to_allocate() {
    let (tx, _) = crossbeam_channel::unbounded();
    let (e, text) = config_error(Supervisor::builder().child(probe("w", &tx).mailbox(usize::MAX)));
    assert_eq!(e, ConfigError::CapacityTooLarge { child: "root/w".into(), capacity: usize::MAX, max: MAX_MAILBOX });
    assert!(
        text.starts_with(&format!("root/w: mailbox capacity {} exceeds the maximum of 16777216", usize::MAX)),
        "{text}"
    );
}

#[test]
fn zero_intensity_and_zero_period() {
    let (tx, _) = crossbeam_channel::unbounded();
    let (e, text) = config_error(Supervisor::builder().intensity(0, Duration::from_secs(1)).child(probe("w", &tx)));
    assert_eq!(e, ConfigError::ZeroIntensity { supervisor: "root".into() });
    assert!(text.starts_with("root: restart intensity must be at least 1"), "{text}");
    let (e, _) = config_error(Supervisor::builder().intensity(1, Duration::ZERO).child(probe("w", &tx)));
    assert_eq!(e, ConfigError::ZeroPeriod { supervisor: "root".into() });
}

#[test]
fn backoff_min_greater_than_max() {
    let (tx, _) = crossbeam_channel::unbounded();
    let spec = probe("w", &tx).backoff(Backoff::exponential(Duration::from_secs(2), Duration::from_secs(1)));
    let (e, text) = config_error(Supervisor::builder().child(spec));
    assert!(matches!(e, ConfigError::Backoff { .. }));
    assert_eq!(text, "root/w: backoff min 2s is greater than max 1s");
}

#[test]
fn duplicate_child_ids_even_when_nested() {
    let (tx, _) = crossbeam_channel::unbounded();
    let inner = Supervisor::builder().child(probe("x", &tx)).child(probe("x", &tx));
    let (e, text) = config_error(Supervisor::builder().child(ChildSpec::supervisor("inner", inner)));
    assert_eq!(e, ConfigError::DuplicateId { supervisor: "root/inner".into(), id: "x".into() });
    assert_eq!(text, "root/inner: duplicate child id \"x\"");
}

#[test]
fn an_empty_tree() {
    let (e, text) = config_error(Supervisor::builder());
    assert_eq!(e, ConfigError::EmptyTree { supervisor: "root".into() });
    assert!(text.contains("Supervisor::dynamic()"), "{text}");
}

#[test]
fn zero_timeouts_and_bad_ids() {
    let (tx, _) = crossbeam_channel::unbounded();
    let (e, _) = config_error(Supervisor::builder().child(probe("w", &tx).shutdown(Duration::ZERO)));
    assert_eq!(e, ConfigError::ZeroTimeout { child: "root/w".into(), which: "shutdown" });
    let (e, _) = config_error(Supervisor::builder().child(probe("", &tx)));
    assert_eq!(e, ConfigError::InvalidId { id: String::new() });
}

#[test]
fn mailbox_capacity_changed_after_addr() {
    let (tx, _) = crossbeam_channel::unbounded();
    let spec = probe("w", &tx);
    let _addr = spec.addr();
    let (e, _) = config_error(Supervisor::builder().child(spec.mailbox(8)));
    assert_eq!(e, ConfigError::MailboxAfterAddr { child: "root/w".into() });
}

#[test]
fn a_dynamic_supervisor_refuses_any_strategy_but_one_for_one() {
    let (tx, _) = crossbeam_channel::unbounded();
    let pool = Supervisor::dynamic().strategy(Strategy::OneForAll);
    let (e, text) =
        config_error(Supervisor::builder().child(probe("w", &tx)).child(ChildSpec::supervisor("pool", pool)));
    assert_eq!(e, ConfigError::DynamicStrategy { supervisor: "root/pool".into(), strategy: Strategy::OneForAll });
    assert!(text.contains("always one-for-one"), "{text}");
    let pool = Supervisor::dynamic().strategy(Strategy::OneForOne);
    let system = Supervisor::builder().child(ChildSpec::supervisor("pool", pool)).start().unwrap();
    system.shutdown().unwrap();
}
