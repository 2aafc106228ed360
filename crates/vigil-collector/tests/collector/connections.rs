//! HTTP/1.1 over TLS: keep-alive, `Connection: close`, framing, limits and
//! malformed requests, seen from raw and ureq clients.

use crate::support as common;

use std::io::{Read as _, Write as _};
use std::time::Duration;

use common::{DEADLINE, agent, client_config, exchange, handshake, post_ndjson, start};
use vigil_collector::Collector;

fn raw(collector: &Collector) -> rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
    handshake(collector.addr(), client_config(&[&collector.ca_pem_path()]), "localhost").expect("handshake")
}

fn post(key: &str, seqs: impl IntoIterator<Item = u64>, extra: &str) -> String {
    let body = common::ndjson(seqs);
    format!(
        "POST /ingest HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-ndjson\r\nIdempotency-Key: {key}\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn ureq_reuses_one_connection_for_many_posts() {
    let collector = start();
    let agent = agent(&[&collector.ca_pem_path()]);
    for i in 0..10u64 {
        let mut response = post_ndjson(&agent, &collector, &format!("b{i}"), [i]).unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["connection"], "keep-alive");
        response.body_mut().read_to_string().unwrap();
    }
    let stats = collector.stats();
    assert_eq!(stats.connections, 1);
    assert_eq!(stats.requests, 10);
    assert_eq!(stats.unique_events, 10);
}

#[test]
fn a_raw_client_sends_several_requests_on_one_connection_then_closes() {
    let collector = start();
    let mut tls = raw(&collector);
    for i in 0..3u64 {
        let answer = exchange(&mut tls, post(&format!("k{i}"), [i], "").as_bytes(), b"}");
        let text = String::from_utf8(answer).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("Connection: keep-alive\r\n"), "{text}");
    }
    // `Connection: close` is honoured: the answer says so and the server
    // closes cleanly (with close_notify, so read_to_end returns Ok).
    tls.write_all(post("last", [9], "Connection: close\r\n").as_bytes()).unwrap();
    let mut rest = Vec::new();
    tls.read_to_end(&mut rest).expect("clean TLS close");
    let text = String::from_utf8(rest).unwrap();
    assert!(text.contains("Connection: close\r\n"), "{text}");
    assert_eq!(collector.seqs().into_iter().collect::<Vec<_>>(), [0, 1, 2, 9]);
    assert_eq!(collector.stats().connections, 1);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let collector = start();
    let mut tls = raw(&collector);
    let both = format!("{}{}", post("p1", [1], ""), post("p2", [2], "Connection: close\r\n"));
    tls.write_all(both.as_bytes()).unwrap();
    let mut answers = Vec::new();
    tls.read_to_end(&mut answers).unwrap();
    let text = String::from_utf8(answers).unwrap();
    assert_eq!(text.matches("HTTP/1.1 200 OK\r\n").count(), 2, "{text}");
    assert_eq!(collector.seqs().len(), 2);
}

#[test]
fn http_1_0_closes_unless_asked_to_keep_alive() {
    let collector = start();
    let mut tls = raw(&collector);
    tls.write_all(b"GET /health HTTP/1.0\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer).unwrap();
    let text = String::from_utf8(answer).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n") && text.ends_with("ok\n"), "{text}");
    assert!(text.contains("Connection: close\r\n"), "{text}");
}

#[test]
fn malformed_requests_get_400_and_the_connection_closes() {
    let collector = start();
    for bad in [
        &b"THIS IS NOT HTTP\r\n\r\n"[..],
        b"POST /ingest HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
        b"POST /ingest HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        b"POST /ingest HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"\x16\x03\x01\x00\xff\xff\r\n\r\n",
    ] {
        let mut tls = raw(&collector);
        tls.write_all(bad).unwrap();
        let mut answer = Vec::new();
        tls.read_to_end(&mut answer).unwrap();
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{bad:?} -> {text}");
        assert!(text.contains("\"error\""), "{text}");
    }
    // The server is unharmed.
    let agent = agent(&[&collector.ca_pem_path()]);
    assert_eq!(post_ndjson(&agent, &collector, "after", [1]).unwrap().status(), 200);
}

#[test]
fn chunked_bodies_and_expect_continue_are_understood() {
    let collector = start();
    let mut tls = raw(&collector);
    let chunked = "POST /ingest HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nIdempotency-Key: c\r\n\r\n\
                   a\r\n{\"seq\":1}\n\r\n0\r\n\r\n";
    let text = String::from_utf8(exchange(&mut tls, chunked.as_bytes(), b"}")).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");

    let body = common::ndjson([2]);
    let head = format!(
        "POST /ingest HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let interim = String::from_utf8(exchange(&mut tls, head.as_bytes(), b"\r\n\r\n")).unwrap();
    assert_eq!(interim, "HTTP/1.1 100 Continue\r\n\r\n");
    let text = String::from_utf8(exchange(&mut tls, body.as_bytes(), b"}")).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert_eq!(collector.seqs().into_iter().collect::<Vec<_>>(), [1, 2]);
}

#[test]
fn expect_continue_with_a_body_over_the_limit_is_refused_before_it_is_sent() {
    vigil_testkit::init_logging();
    let collector = Collector::builder().max_body(10).start().unwrap();
    let mut tls = raw(&collector);
    tls.write_all(b"POST /ingest HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1000\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer).unwrap();
    let text = String::from_utf8(answer).unwrap();
    assert!(text.starts_with("HTTP/1.1 413 "), "{text}");
    assert_eq!(collector.stats().bad_requests, 1);
}

#[test]
fn other_endpoints_and_methods() {
    let collector = start();
    let agent = agent(&[&collector.ca_pem_path()]);
    let base = collector.endpoint().replace("/ingest", "");
    assert_eq!(agent.get(&format!("{base}/health")).call().unwrap().status(), 200);
    let head = agent.head(&format!("{base}/health")).call().unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], "3");
    // The connection is still in step after a HEAD (no stray body).
    assert_eq!(agent.get(&format!("{base}/health")).call().unwrap().into_body().read_to_string().unwrap(), "ok\n");
    assert_eq!(agent.get(&format!("{base}/nope")).call().unwrap().status(), 404);
    let wrong_method = agent.get(&collector.endpoint()).call().unwrap();
    assert_eq!(wrong_method.status(), 405);
    assert_eq!(wrong_method.headers()["allow"], "POST");
    // Control endpoints are off unless asked for.
    assert_eq!(agent.get(&format!("{base}/stats")).call().unwrap().status(), 404);
    assert_eq!(collector.stats().requests, 0, "only ingest requests are counted");
}

#[test]
fn connections_over_the_limit_are_closed_at_once() {
    vigil_testkit::init_logging();
    let collector = Collector::builder().max_connections(1).start().unwrap();
    let held = raw(&collector);
    assert!(collector.wait_for(DEADLINE, |s| s.active_connections == 1));
    let refused = handshake(collector.addr(), client_config(&[&collector.ca_pem_path()]), "localhost");
    assert!(refused.is_err(), "the second connection is closed before its handshake");
    assert!(collector.wait_for(DEADLINE, |s| s.rejected_connections == 1));
    drop(held);
    assert!(collector.wait_for(DEADLINE, |s| s.active_connections == 0));
    let agent = agent(&[&collector.ca_pem_path()]);
    assert_eq!(post_ndjson(&agent, &collector, "k", [1]).unwrap().status(), 200);
}

#[test]
fn idle_connections_are_closed_after_the_idle_timeout() {
    vigil_testkit::init_logging();
    let collector = Collector::builder().idle_timeout(Some(Duration::from_millis(200))).start().unwrap();
    let mut tls = raw(&collector);
    let text = String::from_utf8(exchange(&mut tls, post("k", [1], "").as_bytes(), b"}")).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(collector.wait_for(DEADLINE, |s| s.active_connections == 0));
    let mut rest = Vec::new();
    let _ = tls.read_to_end(&mut rest);
    assert!(rest.is_empty());
}

#[test]
fn a_client_that_never_finishes_its_handshake_does_not_block_shutdown() {
    let collector = start();
    let _silent = std::net::TcpStream::connect(collector.addr()).unwrap();
    assert!(collector.wait_for(DEADLINE, |s| s.active_connections == 1));
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        collector.shutdown();
        done.send(()).unwrap();
    });
    finished.recv_timeout(DEADLINE).expect("shutdown returns promptly");
}
