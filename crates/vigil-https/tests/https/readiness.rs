//! Rotation readiness (issue 14): the whole chain's expiry, announced
//! rotations, the readiness report, and recovery the moment the trust file
//! is fixed, whatever the restart backoff.

use std::time::{Duration, Instant};

use vigil_collector::Collector;
use vigil_core::{Backoff, Supervisor};
use vigil_events::{Config, EventPipeline};
use vigil_https::{HttpsError, HttpsSinkConfig, NewCa, PemProblem, PemRole};

use crate::support::*;

fn expiry_warnings(endpoint: &str, what: &str) -> Vec<Record> {
    https_logs(endpoint)
        .into_iter()
        .filter(|r| r.message.starts_with(&format!("{what} for {endpoint} expires in")))
        .collect()
}

#[test]
fn an_intermediate_expiring_within_the_horizon_is_warned_about() {
    capture_logs();
    let dir = TempDir::new("intermediate");
    let root = TestCa::new("vigil test root");
    let intermediate = root.intermediate("vigil test intermediate", days_from_now(10));
    let (leaf, key) = intermediate.server();
    let server = ChainServer::start(&[&leaf, &intermediate.cert], &key);
    let endpoint = server.endpoint();
    let trust = dir.write("root.pem", root.cert.pem());
    let config = HttpsSinkConfig::new(&endpoint).trust_file(&trust).timeout_global(Some(DEADLINE));
    let mut sink = config.build().expect("sink builds");
    deliver_ok(&mut sink, &batch("int-0", 0..1));

    let warnings = expiry_warnings(&endpoint, "intermediate certificate #1");
    assert_eq!(warnings.len(), 1, "{:#?}", https_logs(&endpoint));
    assert_eq!(warnings[0].level, log::Level::Warn);
    assert!(warnings[0].message.contains("CN=vigil test intermediate"), "{}", warnings[0].message);
    assert!(expiry_warnings(&endpoint, "server certificate").is_empty(), "the leaf is not near expiry");

    // The report shows the chain as served and the anchor that verified it.
    let report = config.stats().readiness();
    let subjects: Vec<&str> = report.served_chain.iter().map(|c| c.certificate.subject.as_str()).collect();
    assert_eq!(subjects, ["CN=127.0.0.1", "CN=vigil test intermediate"]);
    assert!((9..=10).contains(&report.served_chain[1].days_left), "{report:#?}");
    assert_eq!(report.anchor.as_ref().map(|a| a.certificate.subject.as_str()), Some("CN=vigil test root"));
    assert!(report.ready, "10 days is beyond the 7-day alarm: {report:#?}");
}

#[test]
fn an_expiring_client_certificate_is_warned_about() {
    capture_logs();
    let dir = TempDir::new("client-expiry");
    let ca = TestCa::new("vigil test client CA");
    let ca_pem = dir.write("client-ca.pem", ca.cert.pem());
    let collector = Collector::builder().client_auth(&ca_pem).start().expect("collector starts");
    let endpoint = collector.endpoint();
    let (cert, key) = ca.client_until("vigil expiring client", days_from_now(5));
    let chain = dir.write("chain.pem", cert.pem());
    let key_path = dir.write("key.pem", key.serialize_pem());
    let config = config_for(&collector, &collector.ca_pem_path()).client_identity(&chain, &key_path);
    let mut sink = config.build().expect("sink builds");
    deliver_ok(&mut sink, &batch("cli-0", 0..1));

    let warnings = expiry_warnings(&endpoint, "client certificate");
    assert_eq!(warnings.len(), 1, "{:#?}", https_logs(&endpoint));
    assert!(warnings[0].message.contains("CN=vigil expiring client"), "{}", warnings[0].message);
    let report = config.stats().readiness();
    let client = report.client_identity.as_ref().expect("recorded");
    assert!((4..=5).contains(&client.days_left), "{report:#?}");
    assert!(!report.ready, "5 days is within the 7-day alarm");
    assert!(report.reasons.iter().any(|r| r.starts_with("client certificate CN=vigil expiring client")), "{report:#?}");
}

#[test]
fn a_missing_announced_ca_warns_then_flips_to_ready_within_one_poll() {
    let collector = collector();
    let endpoint = collector.endpoint();
    let dir = TempDir::new("announced");
    let current = std::fs::read_to_string(collector.ca_pem_path()).expect("collector CA");
    let trust = dir.write("trust.pem", &current);
    let new_ca = TestCa::new("Ingest CA 2");
    let new_ca_pem = dir.write("new-ca.pem", new_ca.cert.pem());
    let poll = Duration::from_millis(100);
    let config =
        config_for(&collector, &trust).trust_poll_interval(poll).announced_rotation(new_ca_pem.as_path(), "2099-10-05");
    let mut sink = config.build().expect("sink builds");
    deliver_ok(&mut sink, &batch("ann-0", 0..1));

    let report = config.stats().readiness();
    assert!(!report.ready, "{report:#?}");
    assert_eq!(report.rotations.len(), 1);
    assert!(!report.rotations[0].ready);
    assert_eq!(report.rotations[0].new_ca, "CN=Ingest CA 2");
    assert!(report.reasons[0].contains("this host does not trust it yet"), "{report:#?}");
    let warned: Vec<Record> = https_logs(&endpoint).into_iter().filter(|r| r.message.contains("Ingest CA 2")).collect();
    assert_eq!(warned.len(), 1, "{warned:#?}");
    assert_eq!(warned[0].level, log::Level::Warn);
    let message = &warned[0].message;
    for needle in [
        endpoint.as_str(),
        "\"CN=Ingest CA 2\"",
        "announced for 2099-10-05",
        "days left",
        &report.rotations[0].spki_sha256,
    ] {
        assert!(message.contains(needle), "{needle:?} missing from {message}");
    }

    // The operator adds the new CA beside the current one.
    let written = Instant::now();
    dir.write("trust.pem", format!("{current}{}", new_ca.cert.pem()));
    assert!(eventually(|| config.stats().readiness().ready), "{:#?}", config.stats().readiness());
    let flipped = written.elapsed();
    let report = config.stats().readiness();
    assert_eq!(report.rotations[0].trusted_in.as_deref(), Some(trust.display().to_string().as_str()));
    assert!(
        https_logs(&endpoint).iter().any(|r| r.level == log::Level::Info && r.message.contains("this host trusts it"))
    );
    // Generous: a loaded machine may be late, but never by a poll's multiple of a minute.
    assert!(flipped < DEADLINE, "{flipped:?}");
}

#[test]
fn an_announced_ca_that_is_not_a_valid_ca_is_a_typed_error() {
    let collector = collector();
    let dir = TempDir::new("announced-bad");
    let ca = TestCa::new("issuer");
    let (leaf, _) = ca.client("not a CA");
    let leaf_pem = dir.write("leaf.pem", leaf.pem());
    let expired_pem = dir.write("expired.pem", TestCa::expired("old CA").pem());
    let base = config_for(&collector, &collector.ca_pem_path());

    let err = base.clone().announced_rotation(leaf_pem.as_path(), "2099-01-01").build().unwrap_err();
    assert!(
        matches!(
            &err,
            HttpsError::Pem { role: PemRole::AnnouncedCa, problem: PemProblem::NotACertificateAuthority { .. }, .. }
        ),
        "{err:?}"
    );
    let err = base.clone().announced_rotation(expired_pem.as_path(), "2099-01-01").build().unwrap_err();
    assert!(
        matches!(&err, HttpsError::Pem { role: PemRole::AnnouncedCa, problem: PemProblem::Expired { .. }, .. }),
        "{err:?}"
    );
    assert!(err.to_string().starts_with(&format!("announced CA {} certificate #0 expired at", expired_pem.display())));
    let err = base.announced_rotation(NewCa::SpkiSha256("12:34".into()), "2099-01-01").build().unwrap_err();
    assert!(matches!(err, HttpsError::InvalidAnnouncement { .. }), "{err:?}");
}

#[test]
fn writing_the_trust_file_ends_a_sixty_second_backoff() {
    let collector = collector();
    let dir = TempDir::new("backoff");
    let other = TestCa::new("a CA the collector does not use");
    let trust = dir.write("trust.pem", other.cert.pem());
    let poll = Duration::from_millis(200);
    let config = config_for(&collector, &trust).trust_poll_interval(poll);
    let factory = config.clone();
    let (emitter, events, handle) = EventPipeline::builder(Config::default())
        .sink(move || factory.build())
        .restart_backoff(Backoff::exponential(Duration::from_secs(60), Duration::from_secs(60)))
        .build()
        .expect("pipeline builds");
    config.wake_pipeline(&handle);
    let system = Supervisor::builder().child(events).start().expect("tree starts");
    emitter.emit(serde_json::json!({"seq": 1})).expect("accepted");
    assert!(eventually(|| config.stats().snapshot().deliveries.fatal >= 1), "{:?}", config.stats().snapshot());

    // The batcher now waits 60 s. The operator fixes the trust file.
    let written = Instant::now();
    write_atomically(&trust, &std::fs::read(collector.ca_pem_path()).expect("collector CA"));
    assert!(collector.wait_for_events(1, DEADLINE), "not delivered: {:?}", handle.ledger());
    let took = written.elapsed();
    assert!(took < Duration::from_secs(60), "the backoff was waited out: {took:?}");
    assert_eq!(handle.ledger().restarts, 1, "{:?}", handle.ledger());
    system.shutdown().expect("clean shutdown");
}

#[test]
fn pooled_connections_are_closed_on_a_trust_change() {
    let collector = collector();
    let dir = TempDir::new("pool");
    let current = std::fs::read_to_string(collector.ca_pem_path()).expect("collector CA");
    let trust = dir.write("trust.pem", &current);
    let config = config_for(&collector, &trust).trust_poll_interval(Duration::from_millis(50));
    let stats = config.stats();
    let mut sink = config.build().expect("sink builds");
    deliver_ok(&mut sink, &batch("pool-0", 0..1));
    deliver_ok(&mut sink, &batch("pool-1", 1..2));
    assert_eq!(collector.stats().connections, 1, "the second request reused the pooled connection");

    dir.write("trust.pem", format!("{current}{}", TestCa::new("another CA").cert.pem()));
    let mut i = 2;
    assert!(
        eventually(|| {
            deliver_ok(&mut sink, &batch(&format!("pool-{i}"), i..i + 1));
            i += 1;
            stats.snapshot().trust_reloads >= 1
        }),
        "{:?}",
        stats.snapshot()
    );
    // The reload dropped the pool: the request after it opened a new connection
    // (a new, fully verified handshake), and the old one was closed.
    assert_eq!(collector.stats().connections, 2, "{:?}", collector.stats());
    assert!(collector.wait_for(DEADLINE, |s| s.active_connections == 1), "{:?}", collector.stats());
    assert_eq!(stats.snapshot().handshakes, 2);
}
