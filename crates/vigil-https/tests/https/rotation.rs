//! The rotation scenario: the collector moves to a new CA, deliveries fail as
//! fatal with "unknown issuer", and the new CA in the trust file brings them
//! back: within one poll interval for a running sink, at once for a rebuilt one.

use std::time::{Duration, Instant};

use vigil_events::{Delivery, Sink};
use vigil_https::{CertificateProblem, HttpsError};

use crate::support::*;

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).expect("read PEM")
}

#[test]
fn a_running_sink_picks_up_the_new_ca_within_one_poll_interval() {
    let collector = collector_with_short_idle();
    let port = collector.addr().port();
    let dir = TempDir::new("rotation-running");
    let old_ca = collector.ca_pem_path();
    let trust = dir.write("trust.pem", read(&old_ca));
    let poll = Duration::from_millis(300);
    let config = config_for(&collector, &trust).trust_poll_interval(poll);
    let stats = config.stats();
    let mut sink = config.build().expect("sink builds");
    deliver_ok(&mut sink, &batch("rot-0", 0..5));
    let first_cert = stats.snapshot().server_certificate.expect("recorded");

    let new_ca = collector.rotate_ca().expect("rotation");
    wait_idle(&collector);

    // 1. Deliveries fail as fatal, naming the untrusted issuer.
    let pending = batch("rot-1", 5..10);
    let failed = sink.deliver(&pending, None);
    assert_eq!(failed.kind(), "fatal", "{failed:?}");
    let err = https_error(&failed);
    assert!(matches!(err, HttpsError::Certificate { problem: CertificateProblem::UnknownIssuer, .. }), "{err:?}");
    let text = err.to_string();
    let prefix = format!("certificate for 127.0.0.1:{port} not trusted: unknown issuer O=vigil-collector, ");
    assert!(text.starts_with(&prefix), "{text}");
    assert!(text[prefix.len()..].starts_with("CN=vigil-collector test CA 1"), "{text}");

    // 2. The new CA joins the trust file (the old one stays for the rotation window).
    dir.write("trust.pem", format!("{}{}", read(&old_ca), read(&new_ca)));
    let written = Instant::now();

    // 3. The running sink picks it up at its next poll.
    let mut last = None;
    let resumed = eventually(|| {
        let delivery = sink.deliver(&pending, None);
        let ok = matches!(delivery, Delivery::Delivered);
        last = Some(delivery);
        ok
    });
    assert!(resumed, "delivery did not resume: {last:?}");
    let took = written.elapsed();
    // One poll interval, plus slack for a loaded machine.
    assert!(took < poll + Duration::from_secs(10), "{took:?}");

    assert_eq!(collector.seqs().into_iter().collect::<Vec<_>>(), (0..10).collect::<Vec<_>>());
    let snap = stats.snapshot();
    assert_eq!(snap.trust_reloads, 1);
    assert_eq!(snap.trust_reload_failures, 0);
    assert_eq!(snap.trusted_certificates, 2);
    assert_eq!(snap.certificate_changes, 1);
    assert!(snap.tls_failures >= 1);
    let cert = snap.server_certificate.expect("recorded");
    assert_ne!(cert.sha256, first_cert.sha256);
    assert!(cert.issuer.contains("CN=vigil-collector test CA 1"), "{}", cert.issuer);

    // The reload was logged with the new count and the file.
    let logs = https_logs(&collector.endpoint());
    let reload = format!("now trusting 2 certificates from {} (2)", trust.display());
    assert!(logs.iter().any(|r| r.message.contains(&reload)), "no {reload:?} in {logs:#?}");
}

#[test]
fn a_rebuilt_sink_picks_up_the_new_ca_at_once() {
    capture_logs();
    let collector = collector_with_short_idle();
    let endpoint = collector.endpoint();
    let dir = TempDir::new("rotation-rebuilt");
    let old_ca = collector.ca_pem_path();
    let trust = dir.write("trust.pem", read(&old_ca));
    // Polling is effectively off: only a rebuild can pick up the change.
    let config = config_for(&collector, &trust).trust_poll_interval(Duration::from_secs(3600));
    let stats = config.stats();
    let mut running = config.build().expect("sink builds");
    deliver_ok(&mut running, &batch("rb-0", 0..3));

    let new_ca = collector.rotate_ca().expect("rotation");
    wait_idle(&collector);
    dir.write("trust.pem", format!("{}{}", read(&old_ca), read(&new_ca)));

    // The running sink has not looked at the file yet.
    let still_failing = running.deliver(&batch("rb-1", 3..6), None);
    assert_eq!(still_failing.kind(), "fatal", "{still_failing:?}");
    // The sink logs the failure once, at DEBUG, with the presented
    // certificate's detail; the one WARN is the supervisor's restart line.
    let logged: Vec<_> =
        https_logs("batch rb-1: certificate for").into_iter().filter(|r| r.message.contains(&endpoint)).collect();
    assert_eq!(logged.len(), 1, "{logged:#?}");
    assert_eq!(logged[0].level, log::Level::Debug, "{logged:#?}");
    assert!(logged[0].message.contains("not trusted: unknown issuer"), "{logged:#?}");
    assert!(logged[0].message.contains("; server presented subject ") && logged[0].message.contains("sha256 "));

    // What the supervisor does: drop the failed sink and build a fresh one.
    drop(running);
    let mut rebuilt = config.build().expect("rebuild reads the new trust file");
    deliver_ok(&mut rebuilt, &batch("rb-1", 3..6));

    assert_eq!(collector.seqs().len(), 6);
    let snap = stats.snapshot();
    assert_eq!(snap.sinks_built, 2);
    assert_eq!(snap.trust_reloads, 0);
    assert_eq!(snap.trusted_certificates, 2);
    assert_eq!(snap.tls_failures, 1);
    assert_eq!(snap.certificate_changes, 1, "the change is seen across the rebuild");
}

#[test]
fn old_and_new_ca_in_two_files_are_both_trusted() {
    let collector = collector_with_short_idle();
    let dir = TempDir::new("rotation-two-files");
    let old = dir.write("old.pem", read(&collector.ca_pem_path()));
    let next = dir.path("next.pem");
    let config = config_for(&collector, &old).trust_file(&next).trust_poll_interval(Duration::from_millis(100));
    // The second file does not exist yet: building fails, naming it.
    let err = config.build().unwrap_err();
    assert!(err.to_string().starts_with(&format!("trust file {} cannot be read", next.display())), "{err}");

    // The operator publishes the next CA before the server rotates.
    let new_ca = collector.rotate_ca().expect("rotation");
    dir.write("next.pem", read(&new_ca));
    let mut sink = config.build().expect("sink builds with both files");
    deliver_ok(&mut sink, &batch("two-0", 0..2));
    assert_eq!(config.stats().snapshot().trusted_certificates, 2);
}
