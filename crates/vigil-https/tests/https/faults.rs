//! Every collector fault, classified for the batcher as the table says.

use std::io;
use std::time::{Duration, Instant, SystemTime};

use vigil_collector::{CertMode, Collector, Fault};
use vigil_events::{Delivery, Sink};
use vigil_https::{CertificateProblem, HttpsError, HttpsSink, Phase, RETRY_AFTER_CAP};

use crate::support::*;

fn sink_for(collector: &Collector) -> HttpsSink {
    config_for(collector, &collector.ca_pem_path()).build().expect("sink builds")
}

/// Delivers one batch with `fault` served once, and returns the delivery.
fn deliver_with(collector: &Collector, sink: &mut HttpsSink, key: &str, fault: Fault) -> Delivery {
    collector.fail_next(1, fault);
    sink.deliver(&batch(key, 0..3), None)
}

#[test]
fn status_faults_follow_the_table() {
    let collector = collector();
    let endpoint = collector.endpoint();
    let mut sink = sink_for(&collector);
    let cases: Vec<(Fault, &str, u16)> = vec![
        (Fault::Status(500), "retryable", 500),
        (Fault::Status(502), "retryable", 502),
        (Fault::Status(503), "retryable", 503),
        (Fault::Status(413), "too_large", 413),
        (Fault::Status(401), "fatal", 401),
        (Fault::Status(403), "fatal", 403),
        (Fault::Status(400), "rejected", 400),
        (Fault::Status(404), "rejected", 404),
        (Fault::Status(422), "rejected", 422),
    ];
    for (i, (fault, kind, status)) in cases.into_iter().enumerate() {
        let delivery = deliver_with(&collector, &mut sink, &format!("st-{i}"), fault);
        assert_eq!(delivery.kind(), kind, "status {status}: {delivery:?}");
        let err = https_error(&delivery);
        assert!(matches!(err, HttpsError::Status { status: s, .. } if *s == status), "{err:?}");
        let text = err.to_string();
        assert!(text.starts_with(&format!("{endpoint} answered {status}")), "{text}");
        if let Delivery::Retryable { retry_after, .. } = delivery {
            assert_eq!(retry_after, None, "no Retry-After header was sent");
        }
    }
    // The batch itself was never recorded, and the next one goes through.
    assert!(collector.seqs().is_empty());
    deliver_ok(&mut sink, &batch("st-ok", 0..3));
    let snap = sink.stats().snapshot();
    assert_eq!(snap.deliveries.retryable, 3);
    assert_eq!(snap.deliveries.too_large, 1);
    assert_eq!(snap.deliveries.fatal, 2);
    assert_eq!(snap.deliveries.rejected, 3);
    assert_eq!(snap.deliveries.delivered, 1);
    assert_eq!(snap.tls_failures, 0);
}

fn retry_after_of(delivery: &Delivery) -> Option<Duration> {
    match delivery {
        Delivery::Retryable { retry_after, .. } => *retry_after,
        other => panic!("expected retryable, got {other:?}"),
    }
}

#[test]
fn retry_after_is_honoured_in_seconds_and_dates() {
    let collector = collector();
    let mut sink = sink_for(&collector);

    let secs = deliver_with(&collector, &mut sink, "ra-0", Fault::RetryAfter { status: 503, value: "2".into() });
    assert_eq!(retry_after_of(&secs), Some(Duration::from_secs(2)));
    assert!(https_error(&secs).to_string().contains("(retry after 2s)"));

    let secs429 = deliver_with(&collector, &mut sink, "ra-1", Fault::RetryAfter { status: 429, value: "7".into() });
    assert_eq!(retry_after_of(&secs429), Some(Duration::from_secs(7)));

    let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(60));
    let dated = deliver_with(&collector, &mut sink, "ra-2", Fault::RetryAfter { status: 429, value: date });
    let wait = retry_after_of(&dated).expect("a date is honoured");
    assert!(wait > Duration::from_secs(30) && wait <= Duration::from_secs(60), "{wait:?}");

    let past = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(60));
    let passed = deliver_with(&collector, &mut sink, "ra-3", Fault::RetryAfter { status: 503, value: past });
    assert_eq!(retry_after_of(&passed), Some(Duration::ZERO));

    let huge = deliver_with(&collector, &mut sink, "ra-4", Fault::RetryAfter { status: 503, value: "31536000".into() });
    assert_eq!(retry_after_of(&huge), Some(RETRY_AFTER_CAP));

    for (i, bad) in ["soon", "-5", "1.5"].into_iter().enumerate() {
        let ignored = deliver_with(
            &collector,
            &mut sink,
            &format!("ra-bad-{i}"),
            Fault::RetryAfter { status: 503, value: bad.into() },
        );
        assert_eq!(retry_after_of(&ignored), None, "{bad:?} is ignored");
    }

    // 429 is retryable even without the header.
    let bare = deliver_with(&collector, &mut sink, "ra-5", Fault::Status(429));
    assert_eq!(retry_after_of(&bare), None);
    assert!(collector.seqs().is_empty());
}

#[test]
fn connection_faults_are_retryable() {
    let collector = collector();
    let endpoint = collector.endpoint();
    let mut sink = sink_for(&collector);

    let reset = deliver_with(&collector, &mut sink, "cf-0", Fault::Reset);
    assert_eq!(reset.kind(), "retryable", "{reset:?}");
    let err = https_error(&reset);
    assert!(matches!(err, HttpsError::Io { phase: Phase::Exchange, .. }), "{err:?}");
    assert!(err.to_string().contains(&endpoint));

    let cut = deliver_with(&collector, &mut sink, "cf-1", Fault::CloseMidResponse);
    assert_eq!(cut.kind(), "retryable", "{cut:?}");
    let err = https_error(&cut);
    assert!(
        matches!(err, HttpsError::Io { kind: io::ErrorKind::UnexpectedEof, .. } | HttpsError::Protocol { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(&endpoint));

    let garbage = deliver_with(&collector, &mut sink, "cf-2", Fault::Garbage);
    assert_eq!(garbage.kind(), "retryable", "{garbage:?}");
    let err = https_error(&garbage);
    assert!(matches!(err, HttpsError::Protocol { .. }), "{err:?}");
    assert!(err.to_string().starts_with(&format!("invalid HTTP response from {endpoint}")), "{err}");

    // After all that, delivery works again on a fresh connection.
    deliver_ok(&mut sink, &batch("cf-ok", 10..12));
    assert!(collector.seqs().contains(&10));
}

#[test]
fn a_server_that_never_answers_times_out() {
    let collector = collector();
    let mut sink = config_for(&collector, &collector.ca_pem_path())
        .timeout_global(Some(Duration::from_millis(300)))
        .build()
        .expect("sink builds");
    let started = Instant::now();
    let delivery = deliver_with(&collector, &mut sink, "na-0", Fault::NeverAnswer);
    assert_eq!(delivery.kind(), "retryable", "{delivery:?}");
    let err = https_error(&delivery);
    assert_eq!(
        err,
        &HttpsError::Timeout {
            endpoint: collector.endpoint(),
            phase: Phase::Request,
            limit: Some(Duration::from_millis(300)),
        }
    );
    assert!(started.elapsed() < DEADLINE);
}

#[test]
fn the_budget_caps_the_request_timeout() {
    let collector = collector();
    // A generous global timeout: only the budget can end this attempt early.
    let mut sink = config_for(&collector, &collector.ca_pem_path())
        .timeout_global(Some(Duration::from_secs(600)))
        .build()
        .expect("sink builds");
    collector.set_fault(Fault::NeverAnswer);
    let started = Instant::now();
    let delivery = sink.deliver(&batch("bud-0", 0..1), Some(Duration::from_millis(400)));
    let took = started.elapsed();
    let err = https_error(&delivery);
    assert!(
        matches!(err, HttpsError::Timeout { phase: Phase::Request, limit: Some(l), .. } if *l == Duration::from_millis(400)),
        "{err:?}"
    );
    assert!(took >= Duration::from_millis(400) && took < DEADLINE, "{took:?}");
    collector.set_fault(Fault::Healthy);
}

#[test]
fn a_slow_answer_within_the_timeout_is_delivered() {
    let collector = collector();
    let mut sink = sink_for(&collector);
    collector.fail_next(1, Fault::Slow(Duration::from_millis(200)));
    deliver_ok(&mut sink, &batch("slow-0", 0..2));
    assert_eq!(collector.seqs().len(), 2);
}

#[test]
fn connection_refused_is_retryable() {
    let collector = collector();
    let endpoint = collector.endpoint();
    let mut sink = sink_for(&collector);
    collector.shutdown();
    let delivery = sink.deliver(&batch("cr-0", 0..1), None);
    assert_eq!(delivery.kind(), "retryable", "{delivery:?}");
    let err = https_error(&delivery);
    assert!(
        matches!(err, HttpsError::Io { phase: Phase::Connect, kind: io::ErrorKind::ConnectionRefused, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(&endpoint));
}

#[test]
fn an_expired_certificate_is_fatal_and_says_so() {
    capture_logs();
    let collector = Collector::builder().cert_mode(CertMode::Expired).start().expect("collector starts");
    let config = config_for(&collector, &collector.ca_pem_path());
    let mut sink = config.build().expect("sink builds");
    let delivery = sink.deliver(&batch("exp-0", 0..1), None);
    assert_eq!(delivery.kind(), "fatal", "{delivery:?}");
    let err = https_error(&delivery);
    let HttpsError::Certificate {
        problem: CertificateProblem::Expired { not_after: Some(not_after), .. },
        presented,
        ..
    } = err
    else {
        panic!("expected an expired certificate, got {err:?}");
    };
    let served = collector.served_not_after().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    assert_eq!(*not_after, served);
    assert!(presented.is_some());
    let port = collector.addr().port();
    let text = err.to_string();
    assert!(text.starts_with(&format!("certificate for 127.0.0.1:{port} expired: notAfter ")), "{text}");

    let snap = config.stats().snapshot();
    assert_eq!(snap.tls_failures, 1);
    assert_eq!(snap.deliveries.fatal, 1);
    assert!(snap.server_certificate.is_none(), "no handshake succeeded");
    assert_eq!(snap.rejected_certificate.as_ref().map(|c| c.not_after_unix as u64), Some(served));
    assert!(collector.seqs().is_empty());
}

#[test]
fn a_certificate_for_another_name_is_fatal_and_says_so() {
    capture_logs();
    let collector = Collector::builder().cert_mode(CertMode::WrongName).start().expect("collector starts");
    let mut sink = sink_for(&collector);
    let delivery = sink.deliver(&batch("wn-0", 0..1), None);
    assert_eq!(delivery.kind(), "fatal", "{delivery:?}");
    let err = https_error(&delivery);
    assert!(
        matches!(err, HttpsError::Certificate { problem: CertificateProblem::NotValidForName { .. }, .. }),
        "{err:?}"
    );
    let port = collector.addr().port();
    let text = err.to_string();
    assert!(text.starts_with(&format!("certificate for 127.0.0.1:{port} not valid for this name")), "{text}");
    assert!(text.contains("wrong-name.invalid"), "{text}");
}

#[test]
fn a_certificate_from_an_unknown_ca_is_fatal() {
    let collector = collector();
    let other = collector_with_short_idle();
    // Trust the other collector's CA only.
    let mut sink = config_for(&collector, &other.ca_pem_path()).build().expect("sink builds");
    let delivery = sink.deliver(&batch("uk-0", 0..1), None);
    assert_eq!(delivery.kind(), "fatal", "{delivery:?}");
    let err = https_error(&delivery);
    assert!(err.is_tls());
    let port = collector.addr().port();
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "certificate for 127.0.0.1:{port} not trusted: unknown issuer O=vigil-collector, CN=vigil-collector test CA 0"
        )),
        "{text}"
    );
    assert!(collector.wait_for(DEADLINE, |s| s.tls_handshake_failures == 1));
}
