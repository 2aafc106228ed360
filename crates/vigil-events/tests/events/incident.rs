//! The incident this crate exists for: the event shipper's sink fails with a
//! certificate error, over and over. Request threads and the rest of the
//! application's tree must not notice; once the certificate is fixed, the
//! backlog is delivered.

use crate::support;

use std::time::Duration;

use support::*;
use vigil_core::{Actor, Backoff, BoxError, ChildSpec, Context, Reply, Supervisor};
use vigil_events::EventPipeline;

/// Stands in for the application's request handling.
struct Api;

impl Actor for Api {
    type Msg = Reply<&'static str>;
    fn handle(&mut self, reply: Reply<&'static str>, _: &mut Context<'_, Self::Msg>) -> Result<(), BoxError> {
        let _ = reply.send("200 OK");
        Ok(())
    }
}

#[test]
fn a_sink_failing_fatally_forever_never_reaches_the_application() {
    let control = Control::new();
    control.set_default(Step::Fatal);
    let (emitter, events, handle) = EventPipeline::builder(fast_config())
        .sink(control.factory())
        .restart_backoff(Backoff::exponential(Duration::from_millis(1), Duration::from_millis(5)))
        .build()
        .unwrap();
    let api = ChildSpec::worker("api", || Api);
    let api_addr = api.addr();
    // OTP's default intensity: one restart in five seconds, then the root gives up.
    let system = Supervisor::builder().child(events).child(api).start().unwrap();

    let mut id = 0;
    wait_until("the batcher has failed 20 times", || {
        emitter.emit(Ev { id }).expect("request threads keep emitting");
        id += 1;
        handle.ledger().restarts >= 20
    });
    assert_eq!(api_addr.call(|r| r, DEADLINE), Ok("200 OK"), "the application is still serving");
    assert_eq!(handle.ledger().last_error.map(|e| e.kind), Some("fatal".to_owned()));

    // The certificate is fixed; the next restart's sink delivers the backlog.
    control.set_default(Step::Deliver);
    wait_until("the backlog is delivered", || handle.ledger().delivered == id);
    let report = system.shutdown().expect("the root never gave up");
    assert!(report.is_clean(), "{report:?}");
    assert_balanced(&handle.ledger());
    assert_each_delivered_once(&control, 0..id);
}
