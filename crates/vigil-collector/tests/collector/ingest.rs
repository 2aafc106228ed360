//! Receiving batches: counting, de-duplication, encodings.

use crate::support as common;

use std::io::Write as _;

use common::{DEADLINE, agent, post_ndjson, start};

fn body_json(response: ureq::http::Response<ureq::Body>) -> serde_json::Value {
    let mut response = response;
    serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap()
}

#[test]
fn a_healthy_post_counts_every_seq() {
    let collector = start();
    let agent = agent(&[&collector.ca_pem_path()]);
    let response = post_ndjson(&agent, &collector, "b-1", 1..=5).unwrap();
    assert_eq!(response.status(), 200);
    let json = body_json(response);
    assert_eq!(json["accepted"], 5);
    assert_eq!(json["duplicate"], false);

    assert!(collector.wait_for_events(5, DEADLINE));
    assert_eq!(collector.seqs().into_iter().collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    let stats = collector.stats();
    assert_eq!(stats.requests, 1);
    assert_eq!(stats.batches_accepted, 1);
    assert_eq!(stats.unique_events, 5);
    assert_eq!(stats.events_received, 5);
    assert_eq!(stats.faults_served, 0);
}

#[test]
fn a_retried_batch_is_a_duplicate_and_not_counted_twice() {
    let collector = start();
    let agent = agent(&[&collector.ca_pem_path()]);
    assert_eq!(post_ndjson(&agent, &collector, "same-key", [10, 11]).unwrap().status(), 200);
    let again = post_ndjson(&agent, &collector, "same-key", [10, 11]).unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(body_json(again)["duplicate"], true);

    let stats = collector.stats();
    assert_eq!(stats.batches_accepted, 1);
    assert_eq!(stats.duplicate_batches, 1);
    assert_eq!(stats.events_received, 2);
    assert_eq!(stats.unique_events, 2);

    // A new key carrying a seq already seen is a new batch, but the seq is
    // counted once.
    assert_eq!(post_ndjson(&agent, &collector, "other-key", [11, 12]).unwrap().status(), 200);
    let stats = collector.stats();
    assert_eq!(stats.batches_accepted, 2);
    assert_eq!(stats.unique_events, 3);
    assert_eq!(stats.duplicate_events, 1);
    assert_eq!(collector.seqs().into_iter().collect::<Vec<_>>(), [10, 11, 12]);
}

#[test]
fn json_arrays_and_gzip_bodies_are_accepted() {
    let collector = start();
    let agent = agent(&[&collector.ca_pem_path()]);

    let array = agent
        .post(&collector.endpoint())
        .header("Content-Type", "application/json")
        .header("Idempotency-Key", "array")
        .send("[{\"seq\":1},{\"seq\":2,\"nested\":{\"a\":[1,2]}}]")
        .unwrap();
    assert_eq!(array.status(), 200);

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(common::ndjson(3..=6).as_bytes()).unwrap();
    let gzipped = agent
        .post(&collector.endpoint())
        .header("Content-Type", "application/x-ndjson")
        .header("Content-Encoding", "gzip")
        .header("Idempotency-Key", "gzip")
        .send(&gz.finish().unwrap()[..])
        .unwrap();
    assert_eq!(gzipped.status(), 200);

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(b"[{\"seq\":7}]").unwrap();
    let gzipped_array = agent
        .post(&collector.endpoint())
        .header("Content-Type", "application/json")
        .header("Content-Encoding", "gzip")
        .header("Idempotency-Key", "gzip-array")
        .send(&gz.finish().unwrap()[..])
        .unwrap();
    assert_eq!(gzipped_array.status(), 200);

    assert!(collector.wait_for_events(7, DEADLINE));
    assert_eq!(collector.seqs().into_iter().collect::<Vec<_>>(), [1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(collector.stats().batches_accepted, 3);
}

#[test]
fn bodies_that_do_not_parse_are_refused_and_nothing_is_recorded() {
    let collector = start();
    let agent = agent(&[&collector.ca_pem_path()]);
    let send = |ct: &str, ce: Option<&str>, body: &[u8]| {
        let mut req = agent.post(&collector.endpoint()).header("Content-Type", ct);
        if let Some(ce) = ce {
            req = req.header("Content-Encoding", ce);
        }
        req.send(body).unwrap()
    };
    let cases: [(&str, Option<&str>, &[u8], u16); 6] = [
        ("application/x-ndjson", None, b"{\"seq\":1}\nnot json\n", 400),
        ("application/json", None, b"[{\"seq\":1},{\"no_seq\":2}]", 400),
        ("application/json", None, b"[1,2,3]", 400),
        ("application/x-ndjson", Some("gzip"), b"definitely not gzip", 400),
        ("text/csv", None, b"seq\n1\n", 415),
        ("application/x-ndjson", Some("zstd"), b"{\"seq\":1}", 415),
    ];
    for (ct, ce, body, status) in cases {
        let mut response = send(ct, ce, body);
        assert_eq!(response.status(), status, "{ct} {ce:?} {:?}", String::from_utf8_lossy(body));
        let text = response.body_mut().read_to_string().unwrap();
        assert!(text.contains("\"error\""), "{text}");
    }
    let stats = collector.stats();
    assert_eq!(stats.bad_requests, 6);
    assert_eq!(stats.requests, 6);
    assert_eq!(stats.batches_accepted, 0);
    assert!(collector.seqs().is_empty());
}

#[test]
fn bodies_over_the_limit_get_413() {
    vigil_testkit::init_logging();
    let collector = vigil_collector::Collector::builder().max_body(64).start().unwrap();
    let agent = agent(&[&collector.ca_pem_path()]);
    let response = post_ndjson(&agent, &collector, "big", 1..=20).unwrap();
    assert_eq!(response.status(), 413);
    // The connection survives: the next small batch goes through.
    assert_eq!(post_ndjson(&agent, &collector, "small", [1]).unwrap().status(), 200);
    assert_eq!(collector.stats().bad_requests, 1);
    assert_eq!(collector.seqs().len(), 1);
}

#[test]
fn the_ndjson_log_holds_each_event_once() {
    vigil_testkit::init_logging();
    let tmp = vigil_testkit::TempDir::new("collector-log");
    let dir = tmp.root();
    let log = tmp.path("events.ndjson");
    let collector = vigil_collector::Collector::builder().dir(dir).ndjson_log(&log).start().unwrap();
    assert_eq!(collector.ca_pem_path(), dir.join("ca-0.pem"));
    let agent = agent(&[&collector.ca_pem_path()]);
    assert_eq!(post_ndjson(&agent, &collector, "a", [1, 2]).unwrap().status(), 200);
    assert_eq!(post_ndjson(&agent, &collector, "a", [1, 2]).unwrap().status(), 200);
    assert_eq!(post_ndjson(&agent, &collector, "b", [2, 3]).unwrap().status(), 200);
    collector.shutdown();

    let text = std::fs::read_to_string(&log).unwrap();
    let seqs: Vec<u64> =
        text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3]);
    // A directory we chose is left in place.
    assert!(dir.join("ca-0.pem").exists());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_default_directory_is_removed_on_shutdown() {
    let collector = start();
    let dir = collector.dir().to_owned();
    assert!(collector.ca_pem_path().starts_with(&dir));
    assert!(collector.ca_pem_path().exists());
    drop(collector);
    assert!(!dir.exists());
}
