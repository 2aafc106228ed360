//! Certificate visibility: expiry warnings and certificate changes, asserted
//! on the captured log.

use std::time::Duration;

use vigil_collector::{CertMode, Collector};

use crate::support::*;

const DAY: u64 = 86_400;

fn collector_serving(mode: CertMode) -> Collector {
    capture_logs();
    Collector::builder().cert_mode(mode).start().expect("collector starts")
}

fn expiry_warnings(endpoint: &str) -> Vec<Record> {
    https_logs(endpoint).into_iter().filter(|r| r.message.contains("expires in")).collect()
}

#[test]
fn a_certificate_expiring_in_ten_days_is_warned_about_once() {
    let collector = collector_serving(CertMode::ExpiresIn(Duration::from_secs(10 * DAY)));
    let endpoint = collector.endpoint();
    let config = config_for(&collector, &collector.ca_pem_path());
    let mut sink = config.build().expect("sink builds");
    deliver_ok(&mut sink, &batch("ex-0", 0..1));
    deliver_ok(&mut sink, &batch("ex-1", 1..2));

    let cert = config.stats().snapshot().server_certificate.expect("recorded");
    let warnings = expiry_warnings(&endpoint);
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    let warning = &warnings[0];
    assert_eq!(warning.level, log::Level::Warn);
    // notAfter is ten days after issue, give or take the seconds the test took.
    let prefix = format!("server certificate for {endpoint} expires in ");
    assert!(
        warning.message.starts_with(&format!("{prefix}9 days 23 hours"))
            || warning.message.starts_with(&format!("{prefix}10 days 0 hours")),
        "{}",
        warning.message
    );
    assert!(warning.message.contains(&cert.sha256), "{}", warning.message);
    assert!(warning.message.contains(&cert.not_after), "{}", warning.message);

    // A rebuilt sink shares the stats and does not repeat the warning.
    let mut rebuilt = config.build().expect("sink builds");
    deliver_ok(&mut rebuilt, &batch("ex-2", 2..3));
    assert_eq!(expiry_warnings(&endpoint).len(), 1);
}

#[test]
fn within_seven_days_is_a_single_final_warning() {
    let collector = collector_serving(CertMode::ExpiresIn(Duration::from_secs(3 * DAY)));
    let endpoint = collector.endpoint();
    let mut sink = config_for(&collector, &collector.ca_pem_path()).build().expect("sink builds");
    deliver_ok(&mut sink, &batch("ex7-0", 0..1));
    let warnings = expiry_warnings(&endpoint);
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    let message = &warnings[0].message;
    assert!(
        message.contains("expires in 2 days 23 hours") || message.contains("expires in 3 days 0 hours"),
        "{message}"
    );
}

#[test]
fn a_shorter_horizon_stays_quiet_and_zero_turns_warnings_off() {
    let collector = collector_serving(CertMode::ExpiresIn(Duration::from_secs(10 * DAY)));
    let endpoint = collector.endpoint();
    for horizon in [Duration::from_secs(5 * DAY), Duration::ZERO] {
        let mut sink =
            config_for(&collector, &collector.ca_pem_path()).expiry_warning(horizon).build().expect("sink builds");
        deliver_ok(&mut sink, &batch(&format!("quiet-{}", horizon.as_secs()), 0..1));
        assert!(expiry_warnings(&endpoint).is_empty(), "horizon {horizon:?}");
    }
}

#[test]
fn a_changed_server_certificate_is_logged_with_both_fingerprints() {
    let collector = collector_with_short_idle();
    let endpoint = collector.endpoint();
    let config = config_for(&collector, &collector.ca_pem_path());
    let stats = config.stats();
    let mut sink = config.build().expect("sink builds");
    deliver_ok(&mut sink, &batch("cc-0", 0..1));
    let old = stats.snapshot().server_certificate.expect("recorded");

    // Same CA, new leaf: trusted, but a different certificate.
    collector.serve(CertMode::Valid).expect("new leaf");
    wait_idle(&collector);
    deliver_ok(&mut sink, &batch("cc-1", 1..2));
    let snap = stats.snapshot();
    let new = snap.server_certificate.expect("recorded");
    assert_ne!(old.sha256, new.sha256);
    assert_eq!(snap.certificate_changes, 1);
    assert_eq!(snap.handshakes, 2);

    let changes: Vec<Record> =
        https_logs(&endpoint).into_iter().filter(|r| r.message.contains("server certificate changed")).collect();
    assert_eq!(changes.len(), 1, "{changes:#?}");
    let message = &changes[0].message;
    assert!(message.contains(&format!("old sha256 {}", old.sha256)), "{message}");
    assert!(message.contains(&format!("new sha256 {}", new.sha256)), "{message}");
}
