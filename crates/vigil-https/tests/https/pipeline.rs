//! End to end with a real supervised batcher: the rotation scenario of the
//! issue. The collector rotates its CA, deliveries fail as fatal, the
//! supervisor restarts the batcher (and so the sink) with backoff while
//! `emit` keeps succeeding; the new CA lands in the trust file and the whole
//! backlog arrives.

use std::time::Duration;

use vigil_core::{Backoff, Supervisor};
use vigil_events::{Config, EventPipeline};

use crate::support::*;

#[test]
fn the_backlog_arrives_after_a_ca_rotation() {
    let collector = collector_with_short_idle();
    let dir = TempDir::new("pipeline-rotation");
    let old_ca = std::fs::read_to_string(collector.ca_pem_path()).expect("CA PEM");
    let trust = dir.write("trust.pem", &old_ca);
    let sink_config = config_for(&collector, &trust).trust_poll_interval(Duration::from_millis(200));
    let stats = sink_config.stats();

    let config = Config::default()
        .max_delay(Duration::from_millis(20))
        .max_batch_events(25)
        .retry_backoff_min(Duration::from_millis(10))
        .retry_backoff_max(Duration::from_millis(200))
        .max_batch_age(Duration::from_secs(120));
    let (emitter, events, handle) = EventPipeline::builder(config)
        .sink(move || sink_config.build())
        .restart_backoff(Backoff::exponential(Duration::from_millis(50), Duration::from_millis(400)))
        .build()
        .expect("pipeline builds");
    let system = Supervisor::builder().child(events).start().expect("tree starts");

    for i in 0..100 {
        emitter.emit(serde_json::json!({ "phase": "before", "i": i })).expect("emit");
    }
    assert!(collector.wait_for_events(100, DEADLINE), "{:?}", collector.stats());

    // 1. The collector rotates to a new CA the client does not trust yet.
    let new_ca = collector.rotate_ca().expect("rotation");
    wait_idle(&collector);

    // 2. Request-side emit keeps succeeding while deliveries fail as fatal
    //    and the supervisor restarts the batcher with backoff.
    for i in 0..100 {
        emitter.emit(serde_json::json!({ "phase": "during", "i": i })).expect("emit never fails");
    }
    // Each restart builds a sink, on a thread of its own once the new
    // incarnation has started: wait for the third build too, not only for
    // the restarts that ask for it.
    assert!(
        eventually(|| {
            let (ledger, snap) = (handle.ledger(), stats.snapshot());
            ledger.restarts >= 2 && snap.tls_failures >= 2 && snap.sinks_built >= 3
        }),
        "no restarts and rebuilt sinks after TLS failures: {:?} / {:?}",
        handle.ledger(),
        stats.snapshot()
    );
    let snap = stats.snapshot();
    assert!(snap.last_error.as_deref().unwrap_or_default().contains("not trusted: unknown issuer"), "{snap:?}");
    assert_eq!(collector.seqs().len(), 100, "nothing new arrives while the CA is untrusted");

    // 3. The new CA is written into the client's trust file.
    dir.write("trust.pem", format!("{old_ca}{}", std::fs::read_to_string(&new_ca).expect("new CA")));

    // 4. Delivery resumes and the whole backlog arrives.
    assert!(collector.wait_for_events(200, DEADLINE), "{:?} / {:?}", collector.stats(), handle.ledger());
    handle.flush(DEADLINE).expect("flush");
    let ledger = handle.ledger();
    assert_eq!(ledger.accepted, 200);
    assert_eq!(ledger.delivered, 200);
    assert_eq!(ledger.dropped.total(), 0);
    assert!(ledger.is_balanced(), "{ledger:?}");
    let server = collector.stats();
    assert_eq!(server.unique_events, 200);
    assert_eq!(server.duplicate_events, 0);
    assert_eq!(stats.snapshot().certificate_changes, 1);

    handle.close();
    system.shutdown().expect("the tree shuts down cleanly");
}
