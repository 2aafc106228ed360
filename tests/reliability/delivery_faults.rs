//! The fault matrix of `docs/reliability.md`: certificate faults, network
//! faults and HTTP answers on the delivery path, one test per fault.
//!
//! Each test runs a real scenario (see `rig/faults.rs`): request
//! threads emit throughout into a supervised `EventPipeline` whose
//! `HttpsSink` delivers to a `vigil_collector::Collector` over TLS on
//! loopback. The test injects the fault with the collector's runtime
//! controls (or the sink's files, or a TCP proxy that stops listening),
//! waits until the sink and batcher have met it, heals it, and measures the
//! time until the backlog is delivered. `Rig::finish` and `Outcome::check`
//! then check what every row promises: no failed request, the ledger
//! invariant, every emitted event delivered exactly once or dropped for the
//! stated reason, and restart counts that agree.
//!
//! Each test prints its row of the matrix (`ROW | ... |`); run
//! `cargo test --test reliability delivery_faults:: -- --nocapture --test-threads 1 | grep ^ROW`
//! to regenerate the table.
//!
//! The [`otlp`] module runs the matrix once more with the batches encoded as
//! OTLP/HTTP JSON logs and sent to the collector's `/v1/logs` (rows
//! `ROW-OTLP`).

use crate::rig::faults as fault_rig;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use fault_rig::*;
use vigil::https::HttpsError;
use vigil_collector::{CertMode, Fault};

/// The gap between the end of each matching attempt and the start of the
/// attempt after it.
fn retry_gaps(attempts: &[Attempt], matching: impl Fn(&Attempt) -> bool) -> Vec<Duration> {
    attempts
        .windows(2)
        .filter(|pair| matching(&pair[0]))
        .map(|pair| pair[1].start.saturating_duration_since(pair[0].end))
        .collect()
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

// ---------------------------------------------------------------------------
// Certificate faults

/// Waits for `n` batcher restarts and checks that each came from a fatal
/// delivery whose error contains `why`.
///
/// Failed attempts are counted over all attempts, not from the moment the
/// fault was set: an attempt that started just before may meet the fault
/// (none failed before, as [`Rig::fault_begins`] checks).
fn wait_fatal_restarts(rig: &Rig, n: u64, why: &str) -> usize {
    rig.wait("restarts after fatal deliveries", || rig.events.ledger().restarts >= n);
    let fatal = rig.attempts.all().into_iter().filter(|a| a.kind == "fatal").collect::<Vec<_>>();
    assert!(fatal.len() as u64 >= n, "{n} restarts need {n} fatal attempts: {fatal:#?}");
    for a in &fatal {
        assert!(a.error_contains(why), "fatal for another reason than {why:?}: {a:#?}");
    }
    fatal.len()
}

#[test]
fn rotation_to_an_untrusted_ca() {
    let rig = Rig::start(Options::new("rotation_to_an_untrusted_ca"));
    rig.warm_up();
    rig.fault_begins();
    let old_ca = std::fs::read_to_string(&rig.trust).expect("trust file");
    let new_ca = rig.collector.rotate_ca().expect("rotate");
    let fatal = wait_fatal_restarts(&rig, 2, "not trusted: unknown issuer");
    let rejected = rig.https.snapshot().rejected_certificate.expect("the rejected certificate is kept");
    assert!(rejected.issuer.contains("test CA 1"), "the new CA's leaf was shown: {rejected:?}");

    // The operator fix: trust the old and the new CA.
    let heal = rig.heal(|| {
        let both = old_ca + &std::fs::read_to_string(&new_ca).expect("new CA");
        rig.dir.write("trust.pem", both);
    });
    let recover = rig.recovered(heal);
    let outcome = rig.finish();
    outcome.check(&Expected::default());
    assert!(outcome.https.certificate_changes >= 1, "{:?}", outcome.https);
    assert!(outcome.https.tls_failures >= fatal as u64);
    Row::new(
        "rotation to an untrusted CA",
        format!(
            "fatal `certificate … not trusted: unknown issuer` ({}); batcher restarted with a fresh sink each time; \
             the sink built after the trust file was fixed delivered the backlog",
            outcome.failures()
        ),
        &outcome,
        recover,
    )
    .print();
}

#[test]
fn expired_server_certificate() {
    let rig = Rig::start(Options::new("expired_server_certificate"));
    rig.warm_up();
    rig.fault_begins();
    rig.collector.serve(CertMode::Expired).expect("serve expired");
    wait_fatal_restarts(&rig, 2, "expired: notAfter");
    let heal = rig.heal(|| rig.collector.serve(CertMode::Valid).expect("serve valid"));
    let recover = rig.recovered(heal);
    let outcome = rig.finish();
    outcome.check(&Expected::default());
    Row::new(
        "expired server certificate",
        format!(
            "fatal `certificate … expired: notAfter …` ({}); batcher restarted with backoff until a valid \
             certificate was served",
            outcome.failures()
        ),
        &outcome,
        recover,
    )
    .print();
}

#[test]
fn wrong_host_name() {
    let rig = Rig::start(Options::new("wrong_host_name"));
    rig.warm_up();
    rig.fault_begins();
    rig.collector.serve(CertMode::WrongName).expect("serve wrong name");
    wait_fatal_restarts(&rig, 2, "not valid for this name: it names");
    let names = rig.https.snapshot().rejected_certificate.expect("the rejected certificate is kept").subject;
    assert!(names.contains("CN=wrong-name.invalid"), "{names}");
    let heal = rig.heal(|| rig.collector.serve(CertMode::Valid).expect("serve valid"));
    let recover = rig.recovered(heal);
    let outcome = rig.finish();
    outcome.check(&Expected::default());
    Row::new(
        "wrong host name",
        format!(
            "fatal `certificate … not valid for this name: it names … wrong-name.invalid` ({}); batcher restarted \
             with backoff until the right certificate was served",
            outcome.failures()
        ),
        &outcome,
        recover,
    )
    .print();
}

/// A collector that requires client certificates from `ca`, and the files
/// of a client identity it accepts.
struct Mtls {
    options: Options,
    chain: std::path::PathBuf,
    key: std::path::PathBuf,
    good_key: String,
    other_key: String,
}

fn mtls(name: &'static str) -> Mtls {
    let dir = TempDir::new(name);
    let ca = TestCa::new("vigil fault-matrix client CA");
    let client_ca = dir.write("client-ca.pem", ca.cert.pem());
    let (cert, key) = ca.client("vigil payments");
    let chain = dir.write("client-chain.pem", cert.pem());
    let key_path = dir.write("client-key.pem", key.serialize_pem());
    let other_key = rcgen::KeyPair::generate().expect("key").serialize_pem();
    let mut options = Options::new(name);
    options.collector = options.collector.client_auth(&client_ca);
    options.identity = Some((chain.clone(), key_path.clone()));
    options.dir = Some(dir);
    Mtls { options, chain, key: key_path, good_key: key.serialize_pem(), other_key }
}

#[test]
fn mismatched_client_key_at_build() {
    let Mtls { options, chain, key, good_key, other_key } = mtls("mismatched_client_key_at_build");
    // The deploy put a key from another pair next to the certificate.
    std::fs::write(&key, &other_key).expect("write the wrong key");
    let rig = Rig::start(options);
    let fault = Instant::now();

    rig.wait("two restarts of a batcher that cannot build its sink", || rig.events.ledger().restarts >= 2);
    let last = rig.events.ledger().last_error.expect("the factory's error is recorded");
    assert_eq!(last.kind, "sink_factory");
    let mismatch = HttpsError::KeyMismatch { chain, key };
    assert_eq!(last.message, mismatch.to_string());
    assert_eq!(rig.https.snapshot().sinks_built, 0);
    assert_eq!(rig.collector.stats().connections, 0, "nothing was sent");
    assert!(rig.events.ledger().pending > 0, "events wait in the buffer");

    let heal = rig.heal(|| {
        rig.dir.write("client-key.pem", &good_key);
    });
    let recover = rig.recovered(heal);
    let outcome = rig.finish();
    outcome.check(&Expected { fails_from_start: true, ..Expected::default() });
    assert!(outcome.attempts.iter().all(|a| a.kind == "delivered"), "no sink existed to fail");
    assert!(outcome.https.sinks_built >= 1);
    assert!(outcome.ledger.restarts >= 2);
    Row::new(
        "mismatched client key (at build)",
        format!(
            "the child factory failed with `client key … does not match the leaf certificate of …` on every \
             start; events waited in the buffer; the first start after the key was fixed delivered them \
             (no delivery attempt failed; sinks built: {}; {:.1} s in fault)",
            outcome.https.sinks_built,
            heal.at.duration_since(fault).as_secs_f64()
        ),
        &outcome,
        recover,
    )
    .print();
}

/// Makes the sink open new connections: re-serving the certificate makes the
/// collector close the idle keep-alive connections. Waits until the sink has
/// completed `n` more handshakes and delivered more events.
fn force_new_handshakes(rig: &Rig, n: u64) {
    let before = rig.https.snapshot().handshakes;
    let events = rig.collector.stats().unique_events;
    for _ in 0..n {
        let seen = rig.https.snapshot().handshakes;
        rig.collector.serve(CertMode::Valid).expect("re-serve");
        rig.wait("a new handshake", || rig.https.snapshot().handshakes > seen);
    }
    rig.wait("deliveries over the new connections", || rig.collector.stats().unique_events > events + 50);
    assert!(rig.https.snapshot().handshakes >= before + n);
}

/// Checks that no attempt failed fatally and no handshake
/// failed. A retryable failure is allowed: a request can race the collector
/// closing its pooled connection (an artefact of [`force_new_handshakes`]),
/// and a loaded machine may time one out; a lost trust set or identity
/// would fail the handshake, which is fatal.
fn assert_no_tls_failure(rig: &Rig) {
    for a in rig.attempts.all().iter().filter(|a| a.kind != "delivered") {
        assert_eq!(a.kind, "retryable", "a delivery failed: {a:#?}\n{}", rig.describe());
    }
    assert_eq!(rig.https.snapshot().tls_failures, 0, "every handshake succeeded\n{}", rig.describe());
}

#[test]
fn mismatched_client_key_on_reload() {
    let Mtls { options, chain, key, good_key, other_key } = mtls("mismatched_client_key_on_reload");
    let rig = Rig::start(options);
    rig.warm_up();
    rig.fault_begins();
    rig.dir.write("client-key.pem", &other_key);
    rig.wait("the reload to be refused", || rig.https.snapshot().trust_reload_failures >= 1);
    let error = rig.https.snapshot().last_error.expect("the refusal is recorded");
    assert_eq!(error, HttpsError::KeyMismatch { chain, key }.to_string());
    // The last good identity still opens new connections: the collector
    // requires a client certificate on every handshake.
    force_new_handshakes(&rig, 2);
    assert_no_tls_failure(&rig);

    let heal = rig.heal(|| {
        rig.dir.write("client-key.pem", &good_key);
    });
    rig.wait("the fixed identity to be loaded", || rig.https.snapshot().trust_reloads >= 1);
    let recover = rig.recovered(heal);
    let outcome = rig.finish();
    outcome.check(&Expected::default());
    assert_eq!(outcome.ledger.restarts, 0);
    assert_eq!(outcome.https.trust_reload_failures, 1);
    Row::new(
        "mismatched client key (on reload)",
        format!(
            "the running sink refused the changed key file (`client key … does not match …`) and kept the last \
             good identity: new mutual-TLS handshakes (forced twice) and deliveries went on ({}); the fixed file \
             was swapped in at the next poll",
            failures_or_none(&outcome)
        ),
        &outcome,
        recover,
    )
    .print();
}

#[test]
fn empty_or_unreadable_trust_file_on_reload() {
    let rig = Rig::start(Options::new("empty_or_unreadable_trust_file_on_reload"));
    rig.warm_up();
    let good = std::fs::read(&rig.trust).expect("trust file");
    rig.fault_begins();

    // An empty file...
    rig.dir.write("trust.pem", "");
    rig.wait("the empty file to be refused", || rig.https.snapshot().trust_reload_failures >= 1);
    let error = rig.https.snapshot().last_error.expect("recorded");
    assert_eq!(error, format!("trust file {} contains no usable item", rig.trust.display()));
    force_new_handshakes(&rig, 1);

    // ...then one that cannot be read: a symlink to a file that is gone, as
    // when a mounted secret's target disappears. (Permissions would not do:
    // the tests may run as root.)
    let link = rig.dir.path("trust.link");
    std::os::unix::fs::symlink(rig.dir.path("gone.pem"), &link).expect("symlink");
    std::fs::rename(&link, &rig.trust).expect("replace the trust file with the link");
    rig.wait("the unreadable file to be refused", || rig.https.snapshot().trust_reload_failures >= 2);
    let error = rig.https.snapshot().last_error.expect("recorded");
    assert!(error.starts_with(&format!("trust file {} cannot be read:", rig.trust.display())), "{error}");
    force_new_handshakes(&rig, 1);
    assert_no_tls_failure(&rig);
    assert_eq!(rig.https.snapshot().trust_reloads, 0, "no bad set was swapped in");

    // Replaced in one rename, so the sink never sees the path missing.
    let heal = rig.heal(|| {
        rig.dir.write("trust.pem", &good);
    });
    rig.wait("the good file to be loaded again", || rig.https.snapshot().trust_reloads >= 1);
    let recover = rig.recovered(heal);
    let outcome = rig.finish();
    outcome.check(&Expected::default());
    assert_eq!(outcome.ledger.restarts, 0);
    assert_eq!(outcome.https.trust_reload_failures, 2);
    Row::new(
        "empty, then unreadable (dangling symlink) trust file on reload",
        format!(
            "the running sink refused each change (`contains no usable item`, `cannot be read`) and kept the last \
             good trust set: new handshakes (forced after each) verified against it and deliveries went on ({}); \
             the restored file was reloaded",
            failures_or_none(&outcome)
        ),
        &outcome,
        recover,
    )
    .print();
}

/// The failed attempts, or that there were none.
fn failures_or_none(outcome: &Outcome) -> String {
    let failures = outcome.failures();
    if failures.is_empty() { "no failed attempt".to_string() } else { format!("failed attempts: {failures}") }
}

// ---------------------------------------------------------------------------
// Network faults

/// Waits until `n` retryable attempts match `pred`.
fn wait_retryable(rig: &Rig, n: usize, what: &str, pred: impl Fn(&Attempt) -> bool) {
    rig.wait(what, || rig.attempts.all().iter().filter(|a| a.kind == "retryable" && pred(a)).count() >= n);
}

#[test]
fn connection_refused() {
    let mut options = Options::new("connection_refused");
    options.proxy = true;
    let rig = Rig::start(options);
    rig.warm_up();
    let proxy = rig.proxy.as_ref().expect("proxied");
    rig.fault_begins();
    proxy.refuse();
    wait_retryable(&rig, 3, "refused connections", |a| {
        matches!(&a.https_error, Some(HttpsError::Io { kind: std::io::ErrorKind::ConnectionRefused, .. }))
    });
    let heal = rig.heal(|| proxy.resume());
    let recover = rig.recovered(heal);
    let outcome = rig.finish();
    outcome.check(&Expected::default());
    assert_eq!(outcome.ledger.restarts, 0);
    let gaps = retry_gaps(&outcome.attempts, |a| a.kind == "retryable");
    assert!(gaps.iter().all(|g| *g >= RETRY_BACKOFF_MIN / 2), "the batcher's backoff: {gaps:?}");
    Row::new(
        "connection refused",
        format!(
            "retryable `I/O failure … during connect: Connection refused` ({}); same batch retried with \
             exponential backoff ({}–{} ms); no restart",
            outcome.failures(),
            gaps.iter().min().map_or(0, |d| ms(*d)),
            gaps.iter().max().map_or(0, |d| ms(*d)),
        ),
        &outcome,
        recover,
    )
    .print();
}

/// Checks that each timed-out attempt was cut at the sink's timeout.
fn assert_cut_at_timeout(attempts: &[Attempt]) -> usize {
    let timeouts: Vec<&Attempt> =
        attempts.iter().filter(|a| matches!(a.https_error, Some(HttpsError::Timeout { .. }))).collect();
    for a in &timeouts {
        let took = a.end - a.start;
        assert!(took >= TIMEOUT_GLOBAL.mul_f64(0.9), "cut before the timeout: {took:?}");
        assert!(took < TIMEOUT_GLOBAL * 10, "not cut at the timeout: {took:?}");
    }
    timeouts.len()
}

#[test]
fn collector_never_answers() {
    let rig = Rig::start(Options::new("collector_never_answers"));
    rig.warm_up();
    rig.fault_begins();
    rig.collector.set_fault(Fault::NeverAnswer);
    wait_retryable(&rig, 2, "timeouts", |a| matches!(a.https_error, Some(HttpsError::Timeout { .. })));
    let heal = rig.heal(|| rig.collector.set_fault(Fault::Healthy));
    let recover = rig.recovered(heal);
    let outcome = rig.finish();
    outcome.check(&Expected::default());
    assert_eq!(outcome.ledger.restarts, 0);
    let timeouts = assert_cut_at_timeout(&outcome.attempts);
    assert!(timeouts >= 2);
    Row::new(
        "collector accepts and never answers",
        format!(
            "retryable `request timeout … after 500ms` ({}); each attempt cut at `timeout_global`, the batch \
             kept and retried; no restart",
            outcome.failures()
        ),
        &outcome,
        recover,
    )
    .print();
}

#[test]
fn slow_answer_past_the_timeout() {
    let rig = Rig::start(Options::new("slow_answer_past_the_timeout"));
    rig.warm_up();
    rig.fault_begins();
    rig.collector.set_fault(Fault::Slow(Duration::from_secs(2)));
    wait_retryable(&rig, 2, "timeouts", |a| matches!(a.https_error, Some(HttpsError::Timeout { .. })));
    let heal = rig.heal(|| rig.collector.set_fault(Fault::Healthy));
    let recover = rig.recovered(heal);
    // The collector answers each timed-out copy two seconds late and records
    // it: every copy of the batch but one is a duplicate of its key.
    let copies =
        rig.attempts.all().iter().filter(|a| matches!(a.https_error, Some(HttpsError::Timeout { .. }))).count();
    rig.wait("the late copies to be recorded as duplicates", || {
        rig.collector.stats().duplicate_batches >= copies as u64
    });
    let outcome = rig.finish();
    outcome.check(&Expected::default());
    assert_eq!(outcome.ledger.restarts, 0);
    assert_eq!(assert_cut_at_timeout(&outcome.attempts), copies);
    assert_eq!(outcome.collector.duplicate_batches, copies as u64, "one copy accepted, the others recognised");
    Row::new(
        "slow answer (2 s) past the 500 ms timeout",
        format!(
            "retryable `request timeout` ({}); the batch retried under the same idempotency key; the collector \
             recorded the {copies} late copies as duplicates, each event counted once",
            outcome.failures(),
        ),
        &outcome,
        recover,
    )
    .print();
}

/// A transport fault the sink classifies as retryable: the batch is kept and
/// retried, and nothing restarts.
fn retryable_transport_fault(test: &'static str, fault: Fault, what: &str, label: &'static str) {
    let rig = Rig::start(Options::new(test));
    rig.warm_up();
    rig.fault_begins();
    rig.collector.set_fault(fault);
    wait_retryable(&rig, 3, what, |a| a.https_error.is_some());
    let heal = rig.heal(|| rig.collector.set_fault(Fault::Healthy));
    let recover = rig.recovered(heal);
    let outcome = rig.finish();
    outcome.check(&Expected::default());
    assert_eq!(outcome.ledger.restarts, 0);
    let first = outcome.attempts.iter().find(|a| a.kind == "retryable").expect("a retryable attempt");
    Row::new(
        label,
        format!("retryable `{}` ({}); batch kept and retried; no restart", error_kind(first), outcome.failures()),
        &outcome,
        recover,
    )
    .print();
}

#[test]
fn reset_mid_response() {
    retryable_transport_fault("reset_mid_response", Fault::Reset, "resets", "TCP reset instead of a response");
}

#[test]
fn connection_closed_mid_response() {
    let rig = Rig::start(Options::new("connection_closed_mid_response"));
    rig.warm_up();
    rig.fault_begins();
    rig.collector.set_fault(Fault::CloseMidResponse);
    wait_retryable(&rig, 3, "cut responses", |a| a.https_error.is_some());
    // The collector recorded the batch on the first attempt; the retries
    // carried the same idempotency key and were recognised.
    rig.wait("a retried batch to be recognised", || rig.collector.stats().duplicate_batches >= 1);
    let ahead = rig.collector.stats().unique_events > rig.events.ledger().delivered;
    assert!(ahead, "the collector holds events the sink never heard back about\n{}", rig.describe());
    let heal = rig.heal(|| rig.collector.set_fault(Fault::Healthy));
    let recover = rig.recovered(heal);
    let outcome = rig.finish();
    outcome.check(&Expected::default());
    assert_eq!(outcome.ledger.restarts, 0);
    let first = outcome.attempts.iter().find(|a| a.kind == "retryable").expect("a retryable attempt");
    Row::new(
        "connection closed mid-response (batch recorded, answer lost)",
        format!(
            "retryable `{}` ({}); the same batch retried under its idempotency key; the collector counted {} \
             duplicate batch(es) once",
            error_kind(first),
            outcome.failures(),
            outcome.collector.duplicate_batches
        ),
        &outcome,
        recover,
    )
    .print();
}

#[test]
fn garbage_response() {
    retryable_transport_fault("garbage_response", Fault::Garbage, "garbage answers", "garbage response");
}

fn error_kind(a: &Attempt) -> String {
    match &a.https_error {
        Some(HttpsError::Io { phase, kind, .. }) => format!("Io {{ phase: {phase:?}, kind: {kind:?} }}"),
        Some(HttpsError::Protocol { .. }) => "Protocol".to_string(),
        Some(HttpsError::Timeout { phase, .. }) => format!("Timeout {{ phase: {phase:?} }}"),
        Some(HttpsError::Tls { phase, .. }) => format!("Tls {{ phase: {phase:?} }}"),
        Some(other) => format!("{other:?}"),
        None => "none".to_string(),
    }
}

// ---------------------------------------------------------------------------
// HTTP answers

#[test]
fn http_500() {
    let rig = Rig::start(Options::new("http_500"));
    rig.warm_up();
    rig.fault_begins();
    rig.collector.set_fault(Fault::Status(500));
    wait_retryable(&rig, 3, "500 answers", |a| a.error_contains("answered 500"));
    let heal = rig.heal(|| rig.collector.set_fault(Fault::Healthy));
    let recover = rig.recovered(heal);
    let outcome = rig.finish();
    outcome.check(&Expected::default());
    assert_eq!(outcome.ledger.restarts, 0);
    // Without a Retry-After the batcher's own backoff paces the retries: the
    // control for the Retry-After tests below.
    let gaps = retry_gaps(&outcome.attempts, |a| a.error_contains("answered 500"));
    assert!(gaps.len() >= 3);
    for gap in &gaps {
        assert!(*gap >= RETRY_BACKOFF_MIN / 2 && *gap < Duration::from_secs(1), "backoff-paced: {gaps:?}");
    }
    Row::new(
        "HTTP 500",
        format!(
            "retryable ({}); retried after the batcher's own backoff ({}–{} ms); no restart",
            outcome.failures(),
            gaps.iter().min().map_or(0, |d| ms(*d)),
            gaps.iter().max().map_or(0, |d| ms(*d)),
        ),
        &outcome,
        recover,
    )
    .print();
}

/// Answers `status` with `Retry-After: 1` until two retries have waited, and
/// checks that no retry came sooner than the second asked for.
fn retry_after(name: &'static str, status: u16) {
    const ASKED: Duration = Duration::from_secs(1);
    // A retry a second after a failure can only come from the header.
    const { assert!(RETRY_BACKOFF_MAX.as_millis() < ASKED.as_millis()) };
    let rig = Rig::start(Options::new(name));
    rig.warm_up();
    rig.fault_begins();
    rig.collector.set_fault(Fault::RetryAfter { status, value: "1".into() });
    wait_retryable(&rig, 3, "Retry-After answers", |a| a.retry_after.is_some());
    let heal = rig.heal(|| rig.collector.set_fault(Fault::Healthy));
    let recover = rig.recovered(heal);
    let outcome = rig.finish();
    outcome.check(&Expected::default());
    assert_eq!(outcome.ledger.restarts, 0);

    let told: Vec<&Attempt> = outcome.attempts.iter().filter(|a| a.kind == "retryable").collect();
    assert_eq!(told.len() as u64, outcome.collector.faults_served, "every faulted answer reached the batcher");
    for a in &told {
        assert!(a.error_contains(&format!("answered {status}")), "{a:#?}");
        assert_eq!(a.retry_after, Some(ASKED), "the sink parsed the header: {a:#?}");
    }
    // Every attempt after a Retry-After started no sooner than asked. The
    // gap is measured from the sink's return to the next call, both inside
    // the batcher's thread, so scheduling delays can only lengthen it.
    let gaps = retry_gaps(&outcome.attempts, |a| a.retry_after.is_some());
    assert_eq!(gaps.len(), told.len(), "each Retry-After answer was followed by a retry");
    for gap in &gaps {
        assert!(*gap >= ASKED, "retried {gap:?} after a Retry-After of {ASKED:?}: {gaps:?}");
    }
    // And each retry was of the same batch.
    for pair in outcome.attempts.windows(2).filter(|pair| pair[0].retry_after.is_some()) {
        assert_eq!(pair[0].seqs, pair[1].seqs, "the retry carried the same batch");
    }
    let retried: BTreeSet<&[u64]> = told.iter().map(|a| a.seqs.as_slice()).collect();
    assert_eq!(retried.len(), 1, "one batch, retried");
    Row::new(
        if status == 503 { "HTTP 503 with Retry-After: 1" } else { "HTTP 429 with Retry-After: 1" },
        format!(
            "retryable with retry-after 1 s ({}); every retry waited at least 1 s (shortest gap {} ms, against \
             20–200 ms of own backoff); no restart",
            outcome.failures(),
            gaps.iter().min().map_or(0, |d| ms(*d)),
        ),
        &outcome,
        recover,
    )
    .print();
}

#[test]
fn http_503_with_retry_after() {
    retry_after("http_503_with_retry_after", 503);
}

#[test]
fn http_429_with_retry_after() {
    retry_after("http_429_with_retry_after", 429);
}

#[test]
fn http_413() {
    // Ten 413s in a row: the first batch (at most 256 events) is split in
    // halves down to single events within nine answers, so at least one
    // single event is refused, and dropped as `too_large`.
    const ANSWERS: u64 = 10;
    const { assert!(MAX_BATCH_EVENTS <= 1 << (ANSWERS - 2)) };
    let rig = Rig::start(Options::new("http_413"));
    rig.warm_up();
    rig.fault_begins();
    rig.collector.fail_next(ANSWERS, Fault::Status(413));
    rig.wait("every 413 to be answered and handled", || {
        // Counted over all attempts: one that started just before the
        // fault was set may have been answered 413 (none failed before).
        rig.collector.fault().1 == 0
            && rig.attempts.all().iter().filter(|a| a.kind == "too_large").count() as u64 == ANSWERS
    });
    let heal = rig.heal(|| {});
    let recover = rig.recovered(heal);
    let outcome = rig.finish();

    // Exact expectations, from what the collector answered to which batch.
    let refused: Vec<&Attempt> = outcome.attempts.iter().filter(|a| a.kind == "too_large").collect();
    assert_eq!(refused.len() as u64, ANSWERS);
    assert_eq!(outcome.collector.faults_served, ANSWERS);
    let singles: Vec<&Attempt> = refused.iter().copied().filter(|a| a.seqs.len() == 1).collect();
    let splits = refused.len() - singles.len();
    assert!(!singles.is_empty(), "the split reached a single event: {refused:#?}");
    let expected = Expected {
        too_large: singles.iter().map(|a| event_id(a.body.as_deref().expect("kept"))).collect(),
        ..Expected::default()
    };
    let lost = outcome.check(&expected);
    assert_eq!(lost, singles.len() as u64);
    assert_eq!(outcome.ledger.splits, splits as u64, "each 413 on two or more events split the batch");
    for a in &singles {
        assert!(!outcome.seqs.contains(&a.seqs[0]), "a refused event arrived");
    }
    assert_eq!(outcome.ledger.restarts, 0);
    Row::new(
        "HTTP 413 (ten in a row)",
        format!(
            "too large: batches split in halves {splits} times; {} single events refused and dropped as \
             `too_large`, exactly the events the collector answered 413 for; no restart",
            singles.len()
        ),
        &outcome,
        recover,
    )
    .print();
}

#[test]
fn http_401() {
    let rig = Rig::start(Options::new("http_401"));
    rig.warm_up();
    rig.fault_begins();
    rig.collector.set_fault(Fault::Status(401));
    wait_fatal_restarts(&rig, 2, "answered 401");
    assert!(rig.events.ledger().pending > 0, "the refused batch is kept");
    let heal = rig.heal(|| rig.collector.set_fault(Fault::Healthy));
    let recover = rig.recovered(heal);
    let outcome = rig.finish();
    outcome.check(&Expected::default());
    Row::new(
        "HTTP 401",
        format!(
            "fatal ({}): the batch is kept and the batcher restarted with a fresh sink (credentials re-read) \
             and backoff until accepted",
            outcome.failures()
        ),
        &outcome,
        recover,
    )
    .print();
}

/// The matrix once more in OTLP mode: the same tests, each batch one
/// `ExportLogsServiceRequest` POSTed to the collector's strict `/v1/logs`.
/// `http_500` is not among them: OTLP does not retry a 500, it rejects the
/// batch (that row of the OTLP table is tested in vigil-https's `otlp`
/// tests).
mod otlp {
    use vigil::events::Encoding;

    macro_rules! in_otlp_mode {
        ($($test:ident),* $(,)?) => {
            $(
                #[test]
                fn $test() {
                    super::with_encoding(Encoding::OtlpLogsJson, super::$test);
                }
            )*
        };
    }

    in_otlp_mode!(
        rotation_to_an_untrusted_ca,
        expired_server_certificate,
        wrong_host_name,
        mismatched_client_key_at_build,
        mismatched_client_key_on_reload,
        empty_or_unreadable_trust_file_on_reload,
        connection_refused,
        collector_never_answers,
        slow_answer_past_the_timeout,
        reset_mid_response,
        connection_closed_mid_response,
        garbage_response,
        http_503_with_retry_after,
        http_429_with_retry_after,
        http_413,
        http_401,
    );
}
