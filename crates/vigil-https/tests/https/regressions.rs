//! Issue 10 regressions for the HTTPS sink: a bad `Authorization` value,
//! `Duration::MAX` timeouts, credentials in the endpoint URL, and an
//! end-entity certificate offered as a trust anchor.

use std::time::Duration;

use vigil_collector::CertMode;
use vigil_events::{Batch, Encoding, Sink};
use vigil_https::{HttpsError, HttpsSinkConfig, PemProblem, PemRole};

use crate::support::*;

// --- 19. A bad authorization value fails at build() -------------------------

#[test]
fn a_secret_read_from_a_file_with_its_newline_is_delivered() {
    let collector = collector();
    for (i, value) in ["Bearer file-secret\n", "Bearer file-secret\r\n"].into_iter().enumerate() {
        let mut sink =
            config_for(&collector, &collector.ca_pem_path()).authorization(value).build().expect("sink builds");
        let delivery = sink.deliver(&batch(&format!("auth-nl-{i}"), i as u64..i as u64 + 1), None);
        assert_eq!(delivery.kind(), "delivered", "{value:?}: {delivery:?}");
    }
    assert_eq!(collector.seqs().len(), 2);
}

#[test]
fn an_authorization_with_control_characters_fails_at_build() {
    let collector = collector();
    for value in ["Bearer a\nb", "Bearer a\rb\n", "Bearer \u{7}bell", "", "\n"] {
        let config = config_for(&collector, &collector.ca_pem_path()).authorization(value);
        let err = config.build().expect_err("a header value that cannot be sent is refused at build");
        assert!(matches!(err, HttpsError::InvalidAuthorization { .. }), "{value:?}: {err:?}");
        let text = err.to_string();
        assert!(text.contains("authorization"), "{text}");
        assert!(!text.contains("Bearer"), "the value is never shown: {text}");
        assert_eq!(err.class(), vigil_https::ErrorClass::Fatal);
        let last = config.stats().snapshot().last_error.unwrap_or_default();
        assert!(!last.contains("Bearer"), "{last}");
    }
    assert_eq!(collector.stats().connections, 0);
}

#[test]
fn a_request_that_cannot_be_formed_locally_is_never_classed_as_rejected() {
    let collector = collector();
    let mut sink = config_for(&collector, &collector.ca_pem_path()).build().expect("sink builds");
    // An idempotency key that is not a valid header value: the receiver never saw it.
    let bad = Batch::new("key\nwith-newline", Encoding::Ndjson, vec![1], b"{\"seq\":1}\n".to_vec());
    let delivery = sink.deliver(&bad, None);
    assert_ne!(delivery.kind(), "rejected", "{delivery:?}");
    assert_ne!(delivery.kind(), "delivered", "{delivery:?}");
    assert_eq!(sink.stats().snapshot().deliveries.rejected, 0);
}

// --- 20. Durations on the sink ------------------------------------------------

#[test]
fn duration_max_timeouts_deliver_instead_of_panicking() {
    let collector = collector();
    let ca = collector.ca_pem_path();
    let configs = [
        HttpsSinkConfig::new(collector.endpoint()).trust_file(&ca).timeout_global(Some(Duration::MAX)),
        HttpsSinkConfig::new(collector.endpoint()).trust_file(&ca).timeout_connect(Some(Duration::MAX)),
        HttpsSinkConfig::new(collector.endpoint())
            .trust_file(&ca)
            .timeout_connect(Some(Duration::MAX))
            .timeout_global(Some(Duration::MAX)),
    ];
    for (i, config) in configs.into_iter().enumerate() {
        for (j, budget) in [None, Some(Duration::MAX), Some(DEADLINE)].into_iter().enumerate() {
            let mut sink = config.build().expect("sink builds");
            let key = format!("max-{i}-{j}");
            let n = (i * 3 + j) as u64;
            let delivery = std::thread::scope(|s| {
                s.spawn(|| sink.deliver(&batch(&key, n..n + 1), budget))
                    .join()
                    .map(|d| d.kind())
                    .map_err(|_| "panicked")
            });
            assert_eq!(delivery, Ok("delivered"), "config {i}, budget {budget:?}");
        }
    }
}

#[test]
fn an_unbounded_expiry_horizon_still_warns() {
    capture_logs();
    let collector = vigil_collector::Collector::builder()
        .cert_mode(CertMode::ExpiresIn(Duration::from_secs(10 * 86_400)))
        .start()
        .expect("collector starts");
    let endpoint = collector.endpoint();
    let mut sink =
        config_for(&collector, &collector.ca_pem_path()).expiry_warning(Duration::MAX).build().expect("sink builds");
    deliver_ok(&mut sink, &batch("exp-max", 0..1));
    let warnings: Vec<_> = https_logs(&endpoint).into_iter().filter(|r| r.message.contains("expires in")).collect();
    // Since issue 14 the anchor is watched too, and an unbounded horizon covers it.
    let about = |what: &str| warnings.iter().filter(|r| r.message.starts_with(what)).count();
    assert_eq!(about("server certificate for"), 1, "{warnings:#?}");
    assert_eq!(about("trust anchor for"), 1, "{warnings:#?}");
    assert_eq!(warnings.len(), 2, "{warnings:#?}");
}

// --- 21. Credentials in the endpoint URL --------------------------------------

#[test]
fn credentials_in_the_endpoint_are_never_shown() {
    let collector = collector();
    let port = collector.addr().port();
    let user_secret = format!("userpw-{}", std::process::id());
    let query_secret = format!("apikey-{}", std::process::id());
    let endpoint = format!("https://vigil:{user_secret}@127.0.0.1:{port}/ingest?api_key={query_secret}&tenant=t1");
    let redacted = format!("https://***@127.0.0.1:{port}/ingest?api_key=***&tenant=***");
    let config = HttpsSinkConfig::new(&endpoint).trust_file(collector.ca_pem_path()).timeout_global(Some(DEADLINE));
    let stats = config.stats();
    let mut sink = config.build().expect("sink builds");
    deliver_ok(&mut sink, &batch("cred-0", 0..1));

    // A failed delivery: the error, last_error and the stats.
    collector.fail_next(1, vigil_collector::Fault::Status(503));
    let delivery = sink.deliver(&batch("cred-1", 1..2), None);
    let error = https_error(&delivery).clone();
    // A build failure names the endpoint too.
    let build_error = HttpsSinkConfig::new(&endpoint).build().unwrap_err();

    let snapshot = stats.snapshot();
    let shown = [
        error.to_string(),
        format!("{error:?}"),
        error.endpoint().unwrap_or_default().to_string(),
        build_error.to_string(),
        snapshot.last_error.clone().unwrap_or_default(),
        snapshot.endpoint.clone(),
        serde_json::to_string(&snapshot).expect("serializes"),
        format!("{config:?}"),
        format!("{sink:?}"),
        config.endpoint().to_string(),
        sink.endpoint().to_string(),
    ];
    for text in &shown {
        assert!(!text.contains(&user_secret) && !text.contains(&query_secret), "a secret is shown in {text}");
    }
    assert!(error.to_string().contains(&redacted), "{error}");
    assert_eq!(snapshot.endpoint, redacted);

    let logs = https_logs(&format!("127.0.0.1:{port}"));
    assert!(!logs.is_empty(), "the sink logged about its endpoint");
    for record in &logs {
        assert!(
            !record.message.contains(&user_secret) && !record.message.contains(&query_secret),
            "a secret is logged: {record:?}"
        );
    }
    assert!(logs.iter().any(|r| r.level == log::Level::Info && r.message.contains(&redacted)), "{logs:#?}");
}

// --- 22. A trust file that contains an end-entity certificate ---------------

/// An end-entity certificate (basicConstraints CA:FALSE) with its own key,
/// signed by a CA made here.
fn end_entity_pem() -> String {
    let ca = TestCa::new("Leaf Issuer CA");
    let (leaf, _key) = ca.client("not a CA");
    leaf.pem()
}

#[test]
fn an_end_entity_certificate_is_refused_as_a_trust_anchor() {
    let collector = collector();
    let dir = TempDir::new("leaf-anchor");
    let ca = std::fs::read_to_string(collector.ca_pem_path()).expect("CA PEM");
    for (name, contents, index) in [
        ("leaf.pem", end_entity_pem(), 0),
        ("ca-then-leaf.pem", format!("{ca}{}", end_entity_pem()), 1),
        ("served.pem", collector.served_cert_pem(), 0),
    ] {
        let path = dir.write(name, &contents);
        let err = HttpsSinkConfig::new(collector.endpoint()).trust_file(&path).build().expect_err(name);
        let HttpsError::Pem {
            path: p,
            role: PemRole::Trust,
            problem: PemProblem::NotACertificateAuthority { index: i, .. },
        } = &err
        else {
            panic!("{name}: expected a not-a-CA error, got {err:?}");
        };
        assert_eq!((p, *i), (&path, index), "{name}");
        let text = err.to_string();
        assert!(text.contains("not a CA certificate"), "{text}");
    }
}

#[test]
fn a_rotated_trust_file_holding_a_leaf_keeps_the_last_good_set() {
    let collector = collector_with_short_idle();
    let dir = TempDir::new("leaf-reload");
    let good = std::fs::read_to_string(collector.ca_pem_path()).expect("CA PEM");
    let trust = dir.write("trust.pem", &good);
    let config = config_for(&collector, &trust).trust_poll_interval(Duration::from_millis(20));
    let stats = config.stats();
    let mut sink = config.build().expect("sink builds");
    deliver_ok(&mut sink, &batch("leaf-r-0", 0..1));

    dir.write("trust.pem", format!("{good}{}", end_entity_pem()));
    deliver_until_refused(&mut sink, &stats, 1);
    let snap = stats.snapshot();
    assert_eq!((snap.trust_reloads, snap.trust_reload_failures), (0, 1), "{snap:?}");
    assert!(snap.last_error.unwrap_or_default().contains("not a CA certificate"));
    assert_eq!(snap.trusted_certificates, 1, "the last good set stays");
}
