//! Each fault, observed by a real rustls client on the wire.

use crate::support as common;

use std::io::{ErrorKind, Read as _, Write as _};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{DEADLINE, agent, agent_with_response_timeout, post_ndjson, start};
use vigil_collector::Fault;

fn status_and_retry_after(response: &ureq::http::Response<ureq::Body>) -> (u16, Option<String>) {
    let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    (response.status().as_u16(), retry_after)
}

#[test]
fn status_faults_answer_with_that_status_and_record_nothing() {
    let collector = start();
    let agent = agent(&[&collector.ca_pem_path()]);
    for status in [500, 502, 413, 401, 403, 400] {
        collector.set_fault(Fault::Status(status));
        let mut response = post_ndjson(&agent, &collector, &format!("k-{status}"), [1]).unwrap();
        assert_eq!(response.status(), status);
        let body = response.body_mut().read_to_string().unwrap();
        assert!(body.contains("injected fault"), "{body}");
    }
    collector.set_fault(Fault::Healthy);
    assert_eq!(post_ndjson(&agent, &collector, "k-ok", [1]).unwrap().status(), 200);
    let stats = collector.stats();
    assert_eq!(stats.faults_served, 6);
    assert_eq!(stats.requests, 7);
    assert_eq!(stats.batches_accepted, 1);
}

#[test]
fn retry_after_is_passed_verbatim() {
    let collector = start();
    let agent = agent(&[&collector.ca_pem_path()]);
    let date = "Wed, 21 Oct 2015 07:28:00 GMT";
    collector.fail_next(1, Fault::RetryAfter { status: 429, value: "2".into() });
    collector.fail_next(1, Fault::RetryAfter { status: 503, value: date.into() });
    let first = post_ndjson(&agent, &collector, "k", [1]).unwrap();
    assert_eq!(status_and_retry_after(&first), (429, Some("2".into())));
    let second = post_ndjson(&agent, &collector, "k", [1]).unwrap();
    assert_eq!(status_and_retry_after(&second), (503, Some(date.into())));
    let third = post_ndjson(&agent, &collector, "k", [1]).unwrap();
    assert_eq!(status_and_retry_after(&third), (200, None));
    assert_eq!(collector.stats().faults_served, 2);
    assert_eq!(collector.seqs().len(), 1);
}

#[test]
fn fail_next_heals_after_n_requests() {
    let collector = start();
    let agent = agent(&[&collector.ca_pem_path()]);
    collector.fail_next(3, Fault::Status(503));
    let statuses: Vec<u16> =
        (0..5).map(|i| post_ndjson(&agent, &collector, &format!("b{i}"), [i]).unwrap().status().as_u16()).collect();
    assert_eq!(statuses, [503, 503, 503, 200, 200]);
    assert_eq!(collector.fault(), (Fault::Healthy, 0));
    assert_eq!(collector.seqs().into_iter().collect::<Vec<_>>(), [3, 4]);
}

#[test]
fn never_answer_times_the_client_out_and_then_heals() {
    let collector = start();
    let impatient = agent_with_response_timeout(&[&collector.ca_pem_path()], Some(Duration::from_millis(500)));
    collector.set_fault(Fault::NeverAnswer);
    let started = Instant::now();
    let err = post_ndjson(&impatient, &collector, "k", [1]).unwrap_err();
    assert!(matches!(err, ureq::Error::Timeout(ureq::Timeout::RecvResponse)), "{err:?}");
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert!(collector.seqs().is_empty());

    collector.set_fault(Fault::Healthy);
    assert_eq!(post_ndjson(&impatient, &collector, "k", [1]).unwrap().status(), 200);
    assert_eq!(collector.stats().faults_served, 1);
}

#[test]
fn shutdown_interrupts_connections_that_are_never_answered_or_slow() {
    let collector = start();
    let config = common::client_config(&[&collector.ca_pem_path()]);
    let request = |key: &str| {
        let body = common::ndjson([1]);
        format!(
            "POST /ingest HTTP/1.1\r\nHost: 127.0.0.1\r\nIdempotency-Key: {key}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    collector.fail_next(1, Fault::NeverAnswer);
    collector.fail_next(1, Fault::Slow(Duration::from_secs(3600)));
    let mut held = Vec::new();
    for key in ["never", "slow"] {
        let mut tls = common::handshake(collector.addr(), config.clone(), "127.0.0.1").unwrap();
        tls.write_all(request(key).as_bytes()).unwrap();
        tls.flush().unwrap();
        held.push(tls);
    }
    assert!(collector.wait_for(DEADLINE, |s| s.requests == 2 && s.active_connections == 2));

    // Shutdown must not wait an hour, nor until the clients give up.
    let (done, finished) = mpsc::channel();
    let stopper = std::thread::spawn(move || {
        collector.shutdown();
        done.send(collector.stats()).unwrap();
    });
    let stats = finished.recv_timeout(DEADLINE).expect("shutdown returns promptly");
    stopper.join().unwrap();
    assert_eq!(stats.active_connections, 0);
    assert!(stats.unique_events == 0, "the slow request was interrupted before recording");

    // Both clients see the connection end without an answer.
    for mut tls in held {
        let mut buf = Vec::new();
        let read = tls.read_to_end(&mut buf);
        assert!(buf.is_empty() || read.is_err(), "{:?}", String::from_utf8_lossy(&buf));
    }
}

#[test]
fn slow_answers_late_and_records_even_if_the_client_gave_up() {
    let collector = start();
    let ca = collector.ca_pem_path();
    collector.set_fault(Fault::Slow(Duration::from_millis(300)));
    let started = Instant::now();
    let patient = agent(&[&ca]);
    assert_eq!(post_ndjson(&patient, &collector, "slow-1", [1]).unwrap().status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(300));

    collector.set_fault(Fault::Slow(Duration::from_secs(2)));
    let impatient = agent_with_response_timeout(&[&ca], Some(Duration::from_millis(200)));
    let err = post_ndjson(&impatient, &collector, "slow-2", [2]).unwrap_err();
    assert!(matches!(err, ureq::Error::Timeout(ureq::Timeout::RecvResponse)), "{err:?}");
    // The server still processes the batch after its delay...
    assert!(collector.wait_for_events(2, DEADLINE));
    collector.set_fault(Fault::Healthy);
    // ...so the client's retry is a duplicate.
    let mut retry = post_ndjson(&patient, &collector, "slow-2", [2]).unwrap();
    assert_eq!(retry.status(), 200);
    assert!(retry.body_mut().read_to_string().unwrap().contains("\"duplicate\":true"));
    assert_eq!(collector.stats().duplicate_batches, 1);
}

#[test]
fn reset_is_a_connection_reset() {
    let collector = start();
    let agent = agent(&[&collector.ca_pem_path()]);
    collector.fail_next(1, Fault::Reset);
    let err = post_ndjson(&agent, &collector, "k", [1]).unwrap_err();
    match &err {
        ureq::Error::Io(io) => assert_eq!(io.kind(), ErrorKind::ConnectionReset, "{err:?}"),
        other => panic!("expected an I/O reset, got {other:?}"),
    }
    assert!(collector.seqs().is_empty());
    assert_eq!(post_ndjson(&agent, &collector, "k", [1]).unwrap().status(), 200);
}

#[test]
fn close_mid_response_is_a_transport_error_but_the_batch_was_recorded() {
    let collector = start();
    let agent = agent(&[&collector.ca_pem_path()]);
    collector.fail_next(1, Fault::CloseMidResponse);
    let err = post_ndjson(&agent, &collector, "cut", [1, 2]).unwrap_err();
    assert!(!matches!(err, ureq::Error::StatusCode(_) | ureq::Error::Timeout(_)), "{err:?}");
    assert!(common::rustls_error(&err).is_none(), "not a TLS verification problem: {err:?}");
    assert_eq!(collector.seqs().len(), 2);
    // The retry is recognised.
    assert_eq!(post_ndjson(&agent, &collector, "cut", [1, 2]).unwrap().status(), 200);
    let stats = collector.stats();
    assert_eq!((stats.batches_accepted, stats.duplicate_batches, stats.unique_events), (1, 1, 2));
}

#[test]
fn close_mid_response_on_the_wire_is_half_a_head_without_close_notify() {
    let collector = start();
    let mut tls =
        common::handshake(collector.addr(), common::client_config(&[&collector.ca_pem_path()]), "localhost").unwrap();
    collector.set_fault(Fault::CloseMidResponse);
    let body = common::ndjson([5]);
    let request = format!("POST /ingest HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    tls.write_all(request.as_bytes()).unwrap();
    let mut got = Vec::new();
    let end = tls.read_to_end(&mut got).unwrap_err();
    assert_eq!(end.kind(), ErrorKind::UnexpectedEof, "no close_notify: {end}");
    let text = String::from_utf8(got).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text:?}");
    assert!(!text.contains("\r\n\r\n"), "the head is cut short: {text:?}");
}

#[test]
fn garbage_is_not_http() {
    let collector = start();
    let agent = agent(&[&collector.ca_pem_path()]);
    collector.fail_next(1, Fault::Garbage);
    let err = post_ndjson(&agent, &collector, "k", [1]).unwrap_err();
    assert!(matches!(err, ureq::Error::Protocol(_)), "{err:?}");
    assert!(collector.seqs().is_empty());
    assert_eq!(post_ndjson(&agent, &collector, "k", [1]).unwrap().status(), 200);
    assert_eq!(collector.stats().faults_served, 1);
}
