//! Input that must get a clear error, never a panic: configuration, PEM
//! files, endpoints, `Retry-After` values and events that cannot be
//! serialized. Each test asserts the error's kind (its enum variant) and its
//! message, through the `vigil` facade and across crates: a bad child added
//! to a running tree, a bad pipeline inside a tree, real PEM files, a real
//! collector sending the header.
use crate::rig;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rig::*;
use serde::Serialize;
use vigil::events::{self, Batch, BuildError, Config, Delivery, DropReason, Encoding, EventPipeline, FlushError, Sink};
use vigil::https::{HttpsError, HttpsSinkConfig, PemProblem, PemRole, RETRY_AFTER_CAP};
use vigil::{
    Actor, Backoff, BoxError, ChildSpec, ConfigError, Context, ControlError, StartError, Supervisor, SupervisorBuilder,
};
use vigil_collector::{Collector, Fault};
use vigil_testkit::{TempDir, TestCa};

/// A worker whose factory counts its calls, to prove nothing was started.
struct Idle;

impl Actor for Idle {
    type Msg = ();
    fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> {
        Ok(())
    }
}

fn counted(id: &str, builds: &Arc<AtomicU64>) -> vigil::WorkerSpec<Idle> {
    let builds = Arc::clone(builds);
    ChildSpec::worker(id, move || {
        builds.fetch_add(1, Ordering::SeqCst);
        Idle
    })
}

/// Starts `tree`, expecting a configuration error; checks that no child was built.
fn refused(tree: SupervisorBuilder, builds: &Arc<AtomicU64>) -> (ConfigError, String) {
    match tree.start() {
        Err(StartError::Config(e)) => {
            assert_eq!(builds.load(Ordering::SeqCst), 0, "nothing is started before the error");
            let text = StartError::Config(e.clone()).to_string();
            (e, text)
        }
        Err(other) => panic!("expected a configuration error, got {other:?}"),
        Ok(system) => {
            system.shutdown().unwrap();
            panic!("the tree started");
        }
    }
}

// ---------------------------------------------------------------------------
// Configuration.

#[test]
fn a_zero_mailbox_capacity_is_refused_before_anything_starts() {
    let builds = Arc::new(AtomicU64::new(0));
    let tree = Supervisor::builder().child(counted("first", &builds)).child(counted("api", &builds).mailbox(0));
    let (error, text) = refused(tree, &builds);
    assert_eq!(error, ConfigError::ZeroCapacity { child: "root/api".into() });
    assert_eq!(text, "invalid configuration: root/api: mailbox capacity must be at least 1");
}

#[test]
fn zero_event_buffer_sizes_are_refused_naming_the_field() {
    let null = || Ok::<_, std::io::Error>(NullSink);
    for (config, field) in [
        (Config::default().capacity(0), "capacity"),
        (Config::default().max_batch_events(0), "max_batch_events"),
        (Config::default().max_batch_bytes(0), "max_batch_bytes"),
        (Config::default().max_buffered_bytes(Some(0)), "max_buffered_bytes"),
    ] {
        let error = EventPipeline::builder::<Ev>(config).sink(null).build().unwrap_err();
        assert_eq!(error, BuildError::Config(events::ConfigError::Zero { field }));
        assert_eq!(error.to_string(), format!("event pipeline config: `{field}` must not be zero"));
    }
    let error = EventPipeline::builder::<Ev>(Config::default().capacity(100).max_batch_events(512))
        .sink(null)
        .build()
        .unwrap_err();
    assert_eq!(
        error,
        BuildError::Config(events::ConfigError::BatchAboveCapacity { max_batch_events: 512, capacity: 100 })
    );
    assert_eq!(error.to_string(), "event pipeline config: `max_batch_events` (512) exceeds `capacity` (100)");
    let error = EventPipeline::builder::<Ev>(Config::default()).build().unwrap_err();
    assert_eq!(error, BuildError::MissingSink);
    assert_eq!(error.to_string(), "event pipeline: no sink factory given (call `.sink(..)`)");
}

#[test]
fn an_intensity_of_zero_is_refused_at_any_depth() {
    let builds = Arc::new(AtomicU64::new(0));
    let (error, text) =
        refused(Supervisor::builder().intensity(0, Duration::from_secs(5)).child(counted("w", &builds)), &builds);
    assert_eq!(error, ConfigError::ZeroIntensity { supervisor: "root".into() });
    assert_eq!(
        text,
        "invalid configuration: root: restart intensity must be at least 1 (use Restart::Temporary children for no restarts)"
    );
    let nested = Supervisor::builder().intensity(0, Duration::from_secs(5)).child(counted("w", &builds));
    let tree = Supervisor::builder().child(counted("first", &builds)).child(ChildSpec::supervisor("pool", nested));
    let (error, _) = refused(tree, &builds);
    assert_eq!(error, ConfigError::ZeroIntensity { supervisor: "root/pool".into() });
}

#[test]
fn a_period_of_zero_is_refused() {
    let builds = Arc::new(AtomicU64::new(0));
    let (error, text) =
        refused(Supervisor::builder().intensity(3, Duration::ZERO).child(counted("w", &builds)), &builds);
    assert_eq!(error, ConfigError::ZeroPeriod { supervisor: "root".into() });
    assert_eq!(text, "invalid configuration: root: restart period must be longer than zero");
}

#[test]
fn a_backoff_with_min_above_max_is_refused_for_workers_and_the_batcher() {
    let builds = Arc::new(AtomicU64::new(0));
    let bad = Backoff::exponential(Duration::from_secs(2), Duration::from_secs(1));
    let (error, text) = refused(Supervisor::builder().child(counted("w", &builds).backoff(bad)), &builds);
    assert_eq!(
        error,
        ConfigError::Backoff { child: "root/w".into(), problem: "backoff min 2s is greater than max 1s".into() }
    );
    assert_eq!(text, "invalid configuration: root/w: backoff min 2s is greater than max 1s");

    // The event pipeline's restart backoff is checked by the tree it joins.
    let (_emitter, spec, _handle) = EventPipeline::builder::<Ev>(Config::default())
        .sink(|| Ok::<_, std::io::Error>(NullSink))
        .restart_backoff(Backoff::exponential(Duration::from_millis(500), Duration::from_millis(100)))
        .build()
        .expect("the pipeline's own config is fine");
    let (error, text) = refused(Supervisor::builder().child(counted("api", &builds)).child(spec), &builds);
    assert_eq!(
        error,
        ConfigError::Backoff {
            child: "root/events/batcher".into(),
            problem: "backoff min 500ms is greater than max 100ms".into()
        }
    );
    assert_eq!(text, "invalid configuration: root/events/batcher: backoff min 500ms is greater than max 100ms");

    // The batcher's retry backoff is checked when the pipeline is built.
    let error = EventPipeline::builder::<Ev>(
        Config::default().retry_backoff_min(Duration::from_secs(10)).retry_backoff_max(Duration::from_secs(1)),
    )
    .sink(|| Ok::<_, std::io::Error>(NullSink))
    .build()
    .unwrap_err();
    assert_eq!(
        error,
        BuildError::Config(events::ConfigError::MinAboveMax { min: "retry_backoff_min", max: "retry_backoff_max" })
    );
    assert_eq!(error.to_string(), "event pipeline config: `retry_backoff_min` must not exceed `retry_backoff_max`");
}

#[test]
fn duplicate_child_ids_are_refused_at_start_and_at_run_time() {
    // Two pipelines that both keep the default id `events`.
    let builds = Arc::new(AtomicU64::new(0));
    let pipeline = || {
        EventPipeline::builder::<Ev>(Config::default())
            .sink(|| Ok::<_, std::io::Error>(NullSink))
            .build()
            .expect("a valid pipeline")
            .1
    };
    let (error, text) = refused(Supervisor::builder().child(pipeline()).child(pipeline()), &builds);
    assert_eq!(error, ConfigError::DuplicateId { supervisor: "root".into(), id: "events".into() });
    assert_eq!(text, "invalid configuration: root: duplicate child id \"events\"");

    // At run time the running tree refuses the child and keeps serving.
    let (api_spec, api) = api();
    let system = Supervisor::builder().child(api_spec).start().unwrap();
    let error = system.root().start_child(counted("api", &builds)).unwrap_err();
    assert_eq!(error, ControlError::AlreadyExists("api".into()));
    assert_eq!(error.to_string(), "a child with id \"api\" already exists");
    assert_eq!(builds.load(Ordering::SeqCst), 0);
    assert_eq!(api.call(|r| ApiMsg::Charge(5, r), DEADLINE), Ok(5));
    system.shutdown().unwrap();
}

#[test]
fn an_empty_tree_is_refused_at_start_and_at_run_time() {
    let (error, text) = refused(Supervisor::builder(), &Arc::new(AtomicU64::new(0)));
    assert_eq!(error, ConfigError::EmptyTree { supervisor: "root".into() });
    assert_eq!(
        text,
        "invalid configuration: root: a supervisor needs at least one child (use Supervisor::dynamic() for one that starts empty)"
    );

    let (api_spec, api) = api();
    let system = Supervisor::builder().child(api_spec).start().unwrap();
    let error = system.root().start_child(ChildSpec::supervisor("pool", Supervisor::builder())).unwrap_err();
    assert_eq!(error, ControlError::Config(ConfigError::EmptyTree { supervisor: "root/pool".into() }));
    assert_eq!(
        error.to_string(),
        "invalid child: root/pool: a supervisor needs at least one child (use Supervisor::dynamic() for one that starts empty)"
    );
    let builds = Arc::new(AtomicU64::new(0));
    let error = system.root().start_child(counted("late", &builds).mailbox(0)).unwrap_err();
    assert_eq!(error, ControlError::Config(ConfigError::ZeroCapacity { child: "root/late".into() }));
    assert_eq!(error.to_string(), "invalid child: root/late: mailbox capacity must be at least 1");
    assert_eq!(builds.load(Ordering::SeqCst), 0);
    // A dynamic supervisor may start empty.
    system.root().start_child(ChildSpec::supervisor("pool", Supervisor::dynamic())).expect("an empty dynamic pool");
    assert_eq!(api.call(|r| ApiMsg::Charge(1, r), DEADLINE), Ok(1));
    assert!(system.shutdown().unwrap().is_clean());
}

/// A sink that accepts everything, for pipelines that never run.
struct NullSink;

impl Sink for NullSink {
    fn deliver(&mut self, _: &Batch, _: Option<Duration>) -> Delivery {
        Delivery::Delivered
    }
}

// ---------------------------------------------------------------------------
// PEM files.

/// A CA, a client certificate it signed and the client's key, as PEM.
struct Identity {
    ca: String,
    leaf: String,
    key: String,
    other_key: String,
}

fn identity() -> Identity {
    let ca = TestCa::new("inputs CA");
    let (leaf, key) = ca.client("client.vigil.test");
    Identity {
        ca: ca.cert.pem(),
        leaf: leaf.pem(),
        key: key.serialize_pem(),
        other_key: rcgen::KeyPair::generate().unwrap().serialize_pem(),
    }
}

fn sink_config(trust: &Path) -> HttpsSinkConfig {
    HttpsSinkConfig::new("https://127.0.0.1:9/ingest").trust_file(trust)
}

fn pem_error(config: &HttpsSinkConfig) -> (PathBuf, PemRole, PemProblem, String) {
    match config.build() {
        Err(e @ HttpsError::Pem { .. }) => {
            let text = e.to_string();
            let HttpsError::Pem { path, role, problem } = e else { unreachable!() };
            (path, role, problem, text)
        }
        Err(other) => panic!("expected a PEM error, got {other:?}"),
        Ok(_) => panic!("the sink was built"),
    }
}

#[test]
fn trust_files_that_are_empty_malformed_or_hold_the_wrong_item() {
    let dir = TempDir::new("trust");
    let id = identity();

    let empty = dir.write("empty.pem", "");
    let (path, role, problem, text) = pem_error(&sink_config(&empty));
    assert_eq!((path, role, problem), (empty.clone(), PemRole::Trust, PemProblem::Empty));
    assert_eq!(text, format!("trust file {} contains no usable item", empty.display()));

    let prose = dir.write("prose.pem", "this is the CA, trust me\n");
    let (_, _, problem, _) = pem_error(&sink_config(&prose));
    assert_eq!(problem, PemProblem::Empty, "text without PEM sections holds no certificate");

    let bad_base64 =
        dir.write("bad.pem", "-----BEGIN CERTIFICATE-----\n!!!! not base64 !!!!\n-----END CERTIFICATE-----\n");
    let (_, role, problem, text) = pem_error(&sink_config(&bad_base64));
    assert_eq!(role, PemRole::Trust);
    let PemProblem::Malformed { reason } = &problem else { panic!("{problem:?}") };
    assert_eq!(text, format!("trust file {} is not valid PEM: {reason}", bad_base64.display()));
    assert!(reason.contains("base64"), "{reason}");

    let cut = &id.ca[..id.ca.len() / 2];
    let truncated = dir.write("truncated.pem", cut);
    let (_, _, problem, text) = pem_error(&sink_config(&truncated));
    let PemProblem::Malformed { reason } = &problem else { panic!("{problem:?}") };
    assert_eq!(text, format!("trust file {} is not valid PEM: {reason}", truncated.display()));

    let key = dir.write("key.pem", &id.key);
    let (_, role, problem, text) = pem_error(&sink_config(&key));
    assert_eq!((role, &problem), (PemRole::Trust, &PemProblem::WrongItem { found: "private key" }));
    assert_eq!(text, format!("trust file {} contains a private key, which does not belong there", key.display()));

    // A CA followed by a key: still refused, no partial trust set.
    let mixed = dir.write("mixed.pem", format!("{}{}", id.ca, id.key));
    let (_, _, problem, _) = pem_error(&sink_config(&mixed));
    assert_eq!(problem, PemProblem::WrongItem { found: "private key" });

    // Valid base64 that is not a certificate.
    let garbage = dir.write(
        "garbage.pem",
        "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQsIEkgYW0gbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
    );
    let (_, _, problem, text) = pem_error(&sink_config(&garbage));
    let PemProblem::InvalidCertificate { index: 0, reason } = &problem else { panic!("{problem:?}") };
    assert_eq!(
        text,
        format!("trust file {} certificate #0 is not a valid X.509 certificate: {reason}", garbage.display())
    );

    let missing = dir.path("missing.pem");
    let (_, _, problem, text) = pem_error(&sink_config(&missing));
    assert!(matches!(&problem, PemProblem::Unreadable { kind: std::io::ErrorKind::NotFound, .. }), "{problem:?}");
    assert!(text.starts_with(&format!("trust file {} cannot be read: ", missing.display())), "{text}");

    // The control: the CA alone builds.
    sink_config(&dir.write("ca.pem", &id.ca)).build().expect("a valid trust file");
}

#[test]
fn client_identity_files_that_are_empty_malformed_or_hold_the_wrong_item() {
    let dir = TempDir::new("identity");
    let id = identity();
    let trust = dir.write("ca.pem", &id.ca);
    let chain = dir.write("chain.pem", &id.leaf);
    let key = dir.write("key.pem", &id.key);
    let with = |chain: &Path, key: &Path| sink_config(&trust).client_identity(chain, key);
    with(&chain, &key).build().expect("the valid identity builds");

    let empty = dir.write("empty.pem", "");
    let (path, role, problem, text) = pem_error(&with(&empty, &key));
    assert_eq!((path, role, &problem), (empty.clone(), PemRole::ClientChain, &PemProblem::Empty));
    assert_eq!(text, format!("client certificate chain {} contains no usable item", empty.display()));
    let (_, role, problem, text) = pem_error(&with(&chain, &empty));
    assert_eq!((role, &problem), (PemRole::ClientKey, &PemProblem::Empty));
    assert_eq!(text, format!("client key {} contains no usable item", empty.display()));

    // The wrong item: a key where the chain belongs, a certificate where the key belongs.
    let (_, role, problem, _) = pem_error(&with(&key, &key));
    assert_eq!((role, problem), (PemRole::ClientChain, PemProblem::Empty));
    let (_, role, problem, text) = pem_error(&with(&chain, &chain));
    assert_eq!((role, &problem), (PemRole::ClientKey, &PemProblem::Empty));
    assert_eq!(text, format!("client key {} contains no usable item", chain.display()));

    let bad = dir.write("bad-key.pem", "-----BEGIN PRIVATE KEY-----\n%%%%\n-----END PRIVATE KEY-----\n");
    let (_, role, problem, text) = pem_error(&with(&chain, &bad));
    assert_eq!(role, PemRole::ClientKey);
    let PemProblem::Malformed { reason } = &problem else { panic!("{problem:?}") };
    assert_eq!(text, format!("client key {} is not valid PEM: {reason}", bad.display()));

    let two = dir.write("two-keys.pem", format!("{}{}", id.key, id.other_key));
    let (_, _, problem, text) = pem_error(&with(&chain, &two));
    assert_eq!(problem, PemProblem::SeveralKeys { count: 2 });
    assert_eq!(text, format!("client key {} contains 2 private keys; exactly one is needed", two.display()));

    let not_a_key = dir.write(
        "not-a-key.pem",
        "-----BEGIN PRIVATE KEY-----\naGVsbG8gd29ybGQsIEkgYW0gbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
    );
    let (_, _, problem, text) = pem_error(&with(&chain, &not_a_key));
    let PemProblem::UnsupportedKey { reason } = &problem else { panic!("{problem:?}") };
    assert_eq!(text, format!("client key {} holds a key that cannot be used: {reason}", not_a_key.display()));

    // The other key of a pair that does not match: named with both files.
    let other = dir.write("other-key.pem", &id.other_key);
    let error = with(&chain, &other).build().unwrap_err();
    assert_eq!(error, HttpsError::KeyMismatch { chain: chain.clone(), key: other.clone() });
    assert_eq!(
        error.to_string(),
        format!("client key {} does not match the leaf certificate of {}", other.display(), chain.display())
    );
}

#[test]
fn a_bad_trust_file_fails_the_sink_factory_not_the_service() {
    let dir = TempDir::new("factory");
    let collector = Collector::builder().start().unwrap();
    let trust = dir.write("trust.pem", "");
    let config = HttpsSinkConfig::new(collector.endpoint()).trust_file(&trust);
    let expected = config.build().unwrap_err().to_string();
    let (emitter, spec, handle) = EventPipeline::builder::<Ev>(fast_config())
        .sink(move || config.build())
        .restart_backoff(Backoff::exponential(Duration::from_millis(20), Duration::from_millis(200)))
        .build()
        .unwrap();
    let (api_spec, api) = api();
    let system = Supervisor::builder().child(spec).child(api_spec).start().expect("the tree starts anyway");
    let requests = Requests::charging(2, api, emitter);
    wait_until("the batcher restarted a few times", || handle.ledger().restarts >= 3);
    let ledger = handle.ledger();
    let last = ledger.last_error.clone().expect("the factory's error is recorded");
    assert_eq!(last.kind, "sink_factory");
    assert_eq!(last.message, expected);
    assert_eq!(last.message, format!("trust file {} contains no usable item", trust.display()));
    assert_eq!(ledger.delivered, 0, "{ledger}");

    // Fixed: the next restart builds the sink and the backlog is delivered.
    std::fs::copy(collector.ca_pem_path(), &trust).unwrap();
    wait_until("events delivered", || handle.ledger().delivered > 0);
    let summary = requests.stop();
    handle.flush(DEADLINE).expect("flush");
    handle.close();
    system.shutdown().unwrap();
    assert_eq!(summary.failed, 0, "{summary:?}");
    let ledger = handle.ledger();
    assert_eq!((ledger.delivered, ledger.pending, ledger.dropped.total()), (summary.emitted, 0, 0), "{ledger}");
}

#[test]
fn an_endpoint_without_https_is_refused() {
    let cases: [(&str, HttpsError, &str); 5] = [
        (
            "http://collector.example/ingest",
            HttpsError::InsecureEndpoint { endpoint: "http://collector.example/ingest".into() },
            "refusing plain http endpoint http://collector.example/ingest: use https, or allow_http(true) for loopback tests",
        ),
        (
            "ftp://collector.example/ingest",
            HttpsError::InvalidEndpoint {
                endpoint: "ftp://collector.example/ingest".into(),
                reason: "unsupported scheme \"ftp\"; use https".into(),
            },
            "invalid endpoint \"ftp://collector.example/ingest\": unsupported scheme \"ftp\"; use https",
        ),
        (
            "127.0.0.1:8443",
            HttpsError::InvalidEndpoint { endpoint: "127.0.0.1:8443".into(), reason: "no scheme; use https://".into() },
            "invalid endpoint \"127.0.0.1:8443\": no scheme; use https://",
        ),
        (
            "collector.example:8443/ingest",
            HttpsError::InvalidEndpoint {
                endpoint: "collector.example:8443/ingest".into(),
                reason: "not a URL: invalid format".into(),
            },
            "invalid endpoint \"collector.example:8443/ingest\": not a URL: invalid format",
        ),
        (
            "/ingest",
            HttpsError::InvalidEndpoint { endpoint: "/ingest".into(), reason: "no host".into() },
            "invalid endpoint \"/ingest\": no host",
        ),
    ];
    for (endpoint, expected, text) in cases {
        let error = HttpsSinkConfig::new(endpoint).webpki_roots(true).build().unwrap_err();
        assert_eq!(error, expected, "{endpoint}");
        assert_eq!(error.to_string(), text);
        assert_eq!(error.class(), vigil::https::ErrorClass::Fatal);
    }
    // Even allowed, plain http is for loopback only.
    let error = HttpsSinkConfig::new("http://collector.example/ingest").allow_http(true).build().unwrap_err();
    assert_eq!(error, HttpsError::InsecureEndpoint { endpoint: "http://collector.example/ingest".into() });
}

// ---------------------------------------------------------------------------
// Retry-After.

/// A one-event batch whose record carries `seq`.
fn batch(key: &str, seq: u64) -> Batch {
    Batch::new(key, Encoding::Ndjson, vec![seq], format!("{{\"seq\":{seq},\"ts\":1,\"event\":{{}}}}\n").into_bytes())
}

#[test]
fn retry_after_values_are_parsed_ignored_or_clamped() {
    let collector = Collector::builder().start().unwrap();
    let endpoint = collector.endpoint();
    let mut sink = HttpsSinkConfig::new(&endpoint).trust_file(collector.ca_pem_path()).build().unwrap();
    let cases: [(&str, Option<Duration>); 8] = [
        ("2", Some(Duration::from_secs(2))),
        ("soon", None),
        ("1.5", None),
        ("-5", None),
        ("", None),
        ("86400", Some(RETRY_AFTER_CAP)),
        ("99999999999999999999999", Some(RETRY_AFTER_CAP)),
        ("Fri, 31 Dec 9999 23:59:59 GMT", Some(RETRY_AFTER_CAP)),
    ];
    assert_eq!(RETRY_AFTER_CAP, Duration::from_secs(600));
    for (n, (value, expected)) in cases.into_iter().enumerate() {
        collector.fail_next(1, Fault::RetryAfter { status: 503, value: value.to_owned() });
        let delivery = sink.deliver(&batch(&format!("retry-{n}"), n as u64), Some(DEADLINE));
        let Delivery::Retryable { error, retry_after } = delivery else { panic!("{value:?}: {delivery:?}") };
        assert_eq!(retry_after, expected, "{value:?}");
        let error = error.downcast_ref::<HttpsError>().expect("an HttpsError");
        let HttpsError::Status { status: 503, retry_after: parsed, body, .. } = error else { panic!("{error:?}") };
        assert_eq!(*parsed, expected, "{value:?}");
        let after = expected.map(|d| format!(" (retry after {d:?})")).unwrap_or_default();
        assert_eq!(error.to_string(), format!("{endpoint} answered 503{after}: {body}"), "{value:?}");
    }
    // The collector is healthy again: the same sink delivers.
    assert!(matches!(sink.deliver(&batch("ok", 100), Some(DEADLINE)), Delivery::Delivered));
    assert_eq!(collector.seqs().into_iter().collect::<Vec<_>>(), [100]);
}

/// Starts a pipeline to a collector, for the batcher's side of Retry-After.
fn retry_pipeline(config: Config) -> (Pipeline, vigil::System) {
    let pipeline = Pipeline::start(config);
    let system = Supervisor::builder().child(pipeline.spec.clone()).start().unwrap();
    (pipeline, system)
}

#[test]
fn the_batcher_ignores_a_malformed_or_negative_retry_after() {
    for value in ["soon", "-5"] {
        let (pipeline, system) = retry_pipeline(fast_config());
        pipeline.collector.fail_next(1, Fault::RetryAfter { status: 503, value: value.into() });
        let sent = Instant::now();
        for id in 0..10 {
            pipeline.emitter.emit(Ev { id, thread: 0 }).unwrap();
        }
        // Retried after the batcher's own backoff (10 to 200 ms), not later.
        wait_until("delivered after one retry", || pipeline.ledger().delivered == 10);
        let took = sent.elapsed();
        let ledger = pipeline.ledger();
        assert_eq!((ledger.attempts, ledger.retries, ledger.delivered), (2, 1, 10), "{value:?}: {ledger}");
        let last = ledger.last_error.expect("the 503 is recorded");
        assert_eq!(last.kind, "retryable");
        let body = format!(r#"{{"error":"injected fault: status 503, retry after {value}","status":503}}"#);
        assert_eq!(last.message, format!("{} answered 503: {body}", pipeline.collector.endpoint()));
        pipeline.flush_and_close();
        system.shutdown().unwrap();
        pipeline.assert_nothing_lost();
        println!(
            "ROW | Retry-After: {value} | ignored; retried after the batcher's backoff, delivered in {} |",
            ms(took)
        );
    }
}

#[test]
fn the_batcher_clamps_a_huge_retry_after_to_ten_minutes() {
    // The batch is kept for the next attempt unless that attempt would come
    // after `max_batch_age`. A 24-hour Retry-After clamped to 600 s keeps a
    // batch allowed 605 s and expires one allowed 595 s: the wait is 600 s.
    for (age, expired) in [(605, false), (595, true)] {
        let config = fast_config().max_batch_age(Duration::from_secs(age));
        let (pipeline, system) = retry_pipeline(config);
        pipeline.collector.fail_next(1, Fault::RetryAfter { status: 429, value: "86400".into() });
        for id in 0..10 {
            pipeline.emitter.emit(Ev { id, thread: 0 }).unwrap();
        }
        wait_until("the first attempt is answered", || {
            let l = pipeline.ledger();
            // Balanced: the batcher has finished applying the answer.
            l.is_balanced() && l.attempts == 1 && l.last_error.is_some_and(|e| e.kind == "retryable")
        });
        let ledger = pipeline.ledger();
        if expired {
            assert_eq!((ledger.dropped.expired, ledger.pending), (10, 0), "age {age}: {ledger}");
        } else {
            assert_eq!((ledger.dropped.expired, ledger.pending), (0, 10), "age {age}: {ledger}");
            // Even a flush honours the receiver's wait, and says so in time.
            let asked = Instant::now();
            let flushed = pipeline.handle.flush(Duration::from_millis(500));
            assert!(matches!(&flushed, Err(FlushError::Timeout(r)) if r.pending == 10), "{flushed:?}");
            assert!(asked.elapsed() < Duration::from_secs(5));
            assert_eq!(pipeline.ledger().attempts, 1, "no retry before the 600 s are up");
        }
        assert!(ledger.is_balanced(), "{ledger}");
        pipeline.handle.close();
        system.shutdown().unwrap();
        let end = pipeline.ledger();
        assert!(end.is_balanced() && end.pending == 0, "{end}");
    }
}

// ---------------------------------------------------------------------------
// Events that fail to serialize.

/// An event whose serialization fails for every fifth id.
struct Fragile {
    id: u64,
}

impl Serialize for Fragile {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.id.is_multiple_of(5) {
            return Err(serde::ser::Error::custom(format!("id {} has no JSON form", self.id)));
        }
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Fragile", 1)?;
        st.serialize_field("id", &self.id)?;
        st.end()
    }
}

#[test]
fn events_that_fail_to_serialize_are_dropped_with_reason_encode_and_the_rest_delivered() {
    let dir = TempDir::new("encode");
    let log = dir.path("received.ndjson");
    let collector = Collector::builder().ndjson_log(&log).start().unwrap();
    let config = HttpsSinkConfig::new(collector.endpoint()).trust_file(collector.ca_pem_path());
    let (emitter, spec, handle) =
        EventPipeline::builder::<Fragile>(fast_config()).sink(move || config.build()).build().unwrap();
    let system = Supervisor::builder().child(spec).start().unwrap();
    for id in 1..=100 {
        emitter.emit(Fragile { id }).expect("emit never serializes");
    }
    // The batcher may have shipped everything before the flush: the ledger,
    // not the flush's own report, holds the totals.
    let report = handle.flush(DEADLINE).expect("the rest is delivered");
    assert_eq!(report.pending, 0, "{report}");
    let ledger = handle.ledger();
    assert_eq!((ledger.accepted, ledger.delivered, ledger.pending), (100, 80, 0), "{ledger}");
    assert_eq!(ledger.dropped.total(), 20);
    assert_eq!(ledger.dropped.get(DropReason::Encode), 20);
    assert_eq!(DropReason::Encode.to_string(), "encode");
    assert!(ledger.is_balanced(), "{ledger}");
    assert_eq!(ledger.restarts, 0, "an error (not a panic) needs no restart");
    let last = ledger.last_error.expect("the encode failure is recorded");
    assert_eq!(last.kind, "encode");
    assert!(last.message.starts_with("event with seq "), "{}", last.message);
    assert!(last.message.ends_with(" failed to serialize: id 100 has no JSON form"), "{}", last.message);

    // The collector received exactly the events that serialize.
    let received: Vec<u64> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["event"]["id"].as_u64().unwrap())
        .collect();
    let mut sorted = received.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (1..=100).filter(|id| id % 5 != 0).collect::<Vec<_>>());
    handle.close();
    system.shutdown().unwrap();
    println!("ROW | events that fail to serialize (20 of 100) | dropped with reason `encode`, counted; 80 delivered |");
}

/// An event whose serialization panics for one id.
struct Explosive {
    id: u64,
}

impl Serialize for Explosive {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        assert!(self.id != 7, "serializing id 7 blew up");
        s.serialize_u64(self.id)
    }
}

#[test]
fn an_event_whose_serialization_panics_is_dropped_with_reason_encode() {
    let collector = Collector::builder().start().unwrap();
    let config = HttpsSinkConfig::new(collector.endpoint()).trust_file(collector.ca_pem_path());
    let (emitter, spec, handle) = EventPipeline::builder::<Explosive>(fast_config())
        .sink(move || config.build())
        .restart_backoff(Backoff::exponential(Duration::from_millis(10), Duration::from_millis(100)))
        .build()
        .unwrap();
    let system = Supervisor::builder().child(spec).start().unwrap();
    for id in 0..20 {
        emitter.emit(Explosive { id }).unwrap();
    }
    wait_until("19 delivered", || handle.ledger().delivered == 19);
    assert_eq!(collector.seqs().len(), 19);
    let ledger = handle.ledger();
    assert_eq!((ledger.delivered, ledger.dropped.encode, ledger.pending, ledger.restarts), (19, 1, 0, 1), "{ledger}");
    let last = ledger.last_error.expect("recorded");
    assert_eq!(last.kind, "panic");
    assert!(last.message.contains("panicked; the event is dropped (reason `encode`)"), "{}", last.message);
    handle.close();
    system.shutdown().unwrap();
}

// ---------------------------------------------------------------------------
// Bad input that used to panic (found by these tests, fixed in 2f2152b).

/// Runs `f`, turning a panic into `Err` with its message.
fn no_panic<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default()
    })
}

#[test]
fn backoff_delay_with_min_above_max_does_not_panic() {
    // `delay` is public; called directly with a backoff `start` would refuse,
    // it treats `max` as at least `min` instead of panicking in `f64::clamp`.
    let backoff = Backoff::exponential(Duration::from_secs(2), Duration::from_secs(1));
    let delay = no_panic(|| (backoff.delay(0, 0.5), backoff.delay(40, 0.99)));
    assert_eq!(delay, Ok((Duration::from_secs(2), Duration::from_secs(2))), "Backoff::delay");
    let odd = Backoff::exponential(Duration::from_millis(1), Duration::from_secs(1)).factor(f64::NAN);
    assert_eq!(no_panic(|| odd.delay(10, f64::NAN)), Ok(Duration::from_millis(1)));
}

#[test]
fn a_huge_mailbox_capacity_is_a_config_error_not_a_panic() {
    let builds = Arc::new(AtomicU64::new(0));
    let outcome = no_panic(|| Supervisor::builder().child(counted("w", &builds).mailbox(usize::MAX)).start());
    match outcome {
        Ok(Err(StartError::Config(error))) => {
            assert_eq!(
                error,
                ConfigError::CapacityTooLarge { child: "root/w".into(), capacity: usize::MAX, max: vigil::MAX_MAILBOX }
            );
            assert_eq!(
                error.to_string(),
                format!(
                    "root/w: mailbox capacity {} exceeds the maximum of {} (slots are allocated up front)",
                    usize::MAX,
                    vigil::MAX_MAILBOX
                )
            );
        }
        Ok(Err(other)) => panic!("expected a configuration error, got {other:?}"),
        Ok(Ok(system)) => {
            system.shutdown().unwrap();
            panic!("the tree started with a mailbox of usize::MAX");
        }
        Err(panic) => panic!("building the tree panicked: {panic}"),
    }
    assert_eq!(builds.load(Ordering::SeqCst), 0);
}

#[test]
fn a_huge_event_buffer_capacity_is_a_build_error_not_a_panic() {
    let outcome = no_panic(|| {
        EventPipeline::builder::<Ev>(Config::default().capacity(usize::MAX))
            .sink(|| Ok::<_, std::io::Error>(NullSink))
            .build()
            .map(|_| ())
    });
    let max = events::MAX_CAPACITY;
    match outcome {
        Ok(Err(error)) => {
            assert_eq!(error, BuildError::Config(events::ConfigError::CapacityTooLarge { capacity: usize::MAX, max }));
            assert_eq!(
                error.to_string(),
                format!(
                    "event pipeline config: `capacity` ({}) exceeds the maximum of {max} events (the buffer is allocated up front)",
                    usize::MAX
                )
            );
        }
        Ok(Ok(())) => panic!("a buffer of usize::MAX events was built"),
        Err(panic) => panic!("EventPipeline::build panicked: {panic}"),
    }
}
