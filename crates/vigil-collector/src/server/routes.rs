//! What a request gets, decided without a socket: the route, the ingest
//! and control responses, the status JSON, and what a fault produces.

use std::net::SocketAddr;
use std::time::Duration;

use super::Shared;
use crate::TARGET;
use crate::control::Command;
use crate::fault::Fault;
use crate::http::{RequestHead, Response};
use crate::ingest::{self, Outcome};
use crate::otlp;

/// The OTLP/HTTP logs path.
pub(super) const OTLP_LOGS: &str = "/v1/logs";

/// Where a request goes. [`Route::Ingest`] covers both `/ingest` and the
/// OTLP route [`OTLP_LOGS`]; [`ingest`] tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    Ingest,
    Health,
    Stats,
    Control,
    MethodNotAllowed(&'static str),
    NotFound,
}

/// The route for `head`; the control endpoints exist only when enabled.
pub(super) fn route(shared: &Shared, head: &RequestHead) -> Route {
    let path = head.path();
    match (head.method.as_str(), path) {
        ("POST", "/ingest" | OTLP_LOGS) => Route::Ingest,
        (_, "/ingest" | OTLP_LOGS) => Route::MethodNotAllowed("POST"),
        ("GET" | "HEAD", "/health") => Route::Health,
        (_, "/health") => Route::MethodNotAllowed("GET, HEAD"),
        ("GET", "/stats") if shared.control => Route::Stats,
        (_, "/stats") if shared.control => Route::MethodNotAllowed("GET"),
        ("POST", p) if shared.control && (p == "/control" || p.starts_with("/control/")) => Route::Control,
        (_, p) if shared.control && (p == "/control" || p.starts_with("/control/")) => Route::MethodNotAllowed("POST"),
        _ => Route::NotFound,
    }
}

/// Decodes and records a batch, and says how it went. On the OTLP route,
/// the last `reject` log records (at most all of them) are refused in a
/// `partialSuccess`; elsewhere `reject` is ignored.
pub(super) fn ingest(shared: &Shared, head: &RequestHead, body: &[u8], peer: SocketAddr, reject: u64) -> Response {
    let key = head.header("idempotency-key").map(str::trim).filter(|k| !k.is_empty());
    if head.path() == OTLP_LOGS {
        return ingest_otlp(shared, head, body, peer, key, reject);
    }
    let records =
        match ingest::decode(head.header("content-type"), head.header("content-encoding"), body, shared.max_body) {
            Ok(records) => records,
            Err(e) => {
                shared.ledger.update(|s| s.bad_requests += 1);
                log::warn!(target: TARGET, "refusing a batch from {peer} (key {key:?}): {e}");
                return Response::error(e.status(), e);
            }
        };
    match shared.ledger.record(key, &records) {
        Outcome::Accepted { events, new } => {
            log::debug!(target: TARGET, "accepted batch {key:?} from {peer}: {events} event(s), {new} new");
            Response::json(200, &serde_json::json!({ "accepted": events, "new": new, "duplicate": false }))
        }
        Outcome::Duplicate { events } => {
            log::info!(target: TARGET, "duplicate batch {key:?} from {peer} ({events} event(s)), not counted again");
            Response::json(200, &serde_json::json!({ "accepted": 0, "new": 0, "duplicate": true }))
        }
    }
}

fn ingest_otlp(
    shared: &Shared,
    head: &RequestHead,
    body: &[u8],
    peer: SocketAddr,
    key: Option<&str>,
    reject: u64,
) -> Response {
    let records = match ingest::decode_otlp(
        head.header("content-type"),
        head.header("content-encoding"),
        body,
        shared.max_body,
    ) {
        Ok(records) => records,
        Err(e) => {
            shared.ledger.update(|s| s.bad_requests += 1);
            log::warn!(target: TARGET, "refusing an OTLP request from {peer} (key {key:?}): {e}");
            return Response::json(e.status(), &otlp::status_body(&e.to_string()));
        }
    };
    let rejected = reject.min(records.len() as u64);
    let kept = &records[..records.len() - rejected as usize];
    let message = format!("injected fault: {rejected} log record(s) rejected");
    match shared.ledger.record_otlp(key, kept, rejected) {
        Outcome::Accepted { events, new } => {
            log::debug!(
                target: TARGET,
                "accepted OTLP request {key:?} from {peer}: {events} log record(s), {new} new, {rejected} rejected"
            );
            Response::json(200, &otlp::response(rejected, &message))
        }
        Outcome::Duplicate { events } => {
            log::info!(target: TARGET, "duplicate OTLP request {key:?} from {peer} ({events} record(s)), not counted again");
            Response::json(200, &otlp::response(rejected, &message))
        }
    }
}

/// Carries out a `POST /control` request.
pub(super) fn control(shared: &Shared, head: &RequestHead, body: &[u8]) -> Response {
    let Ok(body) = std::str::from_utf8(body) else {
        return Response::error(400, "control body is not UTF-8");
    };
    let line = match head.path().strip_prefix("/control/") {
        Some(word) => format!("{} {}", word.replace('/', " "), body.trim()),
        None => body.to_owned(),
    };
    let command: Command = match line.parse() {
        Ok(command) => command,
        Err(e) => return Response::error(400, e),
    };
    match command {
        Command::Stats => Response::json(200, &status_json(shared)),
        other => match shared.apply(&other) {
            Ok(reply) => {
                log::info!(target: TARGET, "control over HTTP: {reply}");
                Response::text(200, reply)
            }
            Err(e) => Response::error(500, e),
        },
    }
}

/// The counters, the fault plan and the certificate state, as `GET /stats` reports them.
pub(super) fn status_json(shared: &Shared) -> serde_json::Value {
    let (fault, queued) = shared.faults.lock().describe();
    let (mode, ca) = {
        let certs = shared.certs.lock();
        (certs.mode, certs.ca.pem_path().display().to_string())
    };
    let mut value = serde_json::to_value(shared.ledger.stats()).unwrap_or_default();
    if let Some(obj) = value.as_object_mut() {
        obj.insert("fault".into(), fault.to_string().into());
        obj.insert("queued_faults".into(), queued.into());
        obj.insert("cert_mode".into(), mode.to_string().into());
        obj.insert("ca_pem_path".into(), ca.into());
    }
    value
}

/// What [`Fault::Garbage`] writes.
pub(super) const GARBAGE: &[u8] =
    b"\x00\x7f\xfe garbage: vigil-collector was told not to speak HTTP \x01\x02\x03\r\n\r\n";

/// What an ingest request gets under a fault: the bytes written and what
/// happens to the socket. The connection carries it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum FaultAction {
    /// Record the batch and answer with the outcome, after `delay` if there
    /// is one. Shutdown cuts the delay short, and then nothing is recorded
    /// or answered.
    Ingest {
        /// How long to wait first.
        delay: Option<Duration>,
    },
    /// Record the batch but the last `n` OTLP log records, and answer with a
    /// `partialSuccess` (on `/ingest`: as [`FaultAction::Ingest`]).
    IngestRejecting(u64),
    /// Answer with this response; record nothing.
    Respond(Response),
    /// Never answer: read and drop whatever the client sends until it
    /// closes or the collector shuts down. Record nothing.
    Hold,
    /// Close with `SO_LINGER` 0, so the client reads a TCP reset. Record
    /// nothing.
    Reset,
    /// Record the batch, write the [`cut_head`] of its `200` answer, and
    /// close without a TLS `close_notify`.
    IngestThenCut,
    /// Write these bytes, then close (with `close_notify`). Record nothing.
    WriteThenClose(&'static [u8]),
}

/// The action for `fault`.
pub(super) fn fault_action(fault: &Fault) -> FaultAction {
    match fault {
        Fault::Healthy => FaultAction::Ingest { delay: None },
        Fault::PartialSuccess(n) => FaultAction::IngestRejecting(*n),
        Fault::Slow(d) => FaultAction::Ingest { delay: Some(*d) },
        Fault::Status(status) => {
            FaultAction::Respond(Response::error(*status, format!("injected fault: status {status}")))
        }
        Fault::RetryAfter { status, value } => FaultAction::Respond(
            Response::error(*status, format!("injected fault: status {status}, retry after {value}"))
                .with_header("Retry-After", value.clone()),
        ),
        Fault::NeverAnswer => FaultAction::Hold,
        Fault::Reset => FaultAction::Reset,
        Fault::CloseMidResponse => FaultAction::IngestThenCut,
        Fault::Garbage => FaultAction::WriteThenClose(GARBAGE),
    }
}

/// What [`Fault::CloseMidResponse`] writes of `response`: the first half of
/// its head, cut inside the headers, so no client can take it for a whole
/// answer.
pub(super) fn cut_head(response: &Response, keep_alive: bool) -> Vec<u8> {
    let mut bytes = response.head_bytes(keep_alive);
    bytes.truncate(bytes.len() / 2);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
        response.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    #[test]
    fn healthy_and_slow_record_and_answer() {
        assert_eq!(fault_action(&Fault::Healthy), FaultAction::Ingest { delay: None });
        let d = Duration::from_millis(1500);
        assert_eq!(fault_action(&Fault::Slow(d)), FaultAction::Ingest { delay: Some(d) });
    }

    #[test]
    fn status_faults_answer_with_that_status_and_record_nothing() {
        let FaultAction::Respond(response) = fault_action(&Fault::Status(500)) else { panic!("not a response") };
        assert_eq!(response.status, 500);
        assert_eq!(header(&response, "retry-after"), None);
        let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(body["error"], "injected fault: status 500");

        // Written as given, even when it is no valid HTTP status.
        let FaultAction::Respond(odd) = fault_action(&Fault::Status(42)) else { panic!("not a response") };
        assert!(odd.head_bytes(true).starts_with(b"HTTP/1.1 42 "));
    }

    #[test]
    fn retry_after_carries_the_value_verbatim() {
        let date = "Wed, 21 Oct 2015 07:28:00 GMT";
        let fault = Fault::RetryAfter { status: 429, value: date.into() };
        let FaultAction::Respond(response) = fault_action(&fault) else { panic!("not a response") };
        assert_eq!(response.status, 429);
        assert_eq!(header(&response, "Retry-After"), Some(date));
        let head = String::from_utf8(response.head_bytes(false)).unwrap();
        assert!(head.contains(&format!("Retry-After: {date}\r\n")), "{head}");
    }

    #[test]
    fn partial_success_records_all_but_the_rejected() {
        assert_eq!(fault_action(&Fault::PartialSuccess(3)), FaultAction::IngestRejecting(3));
    }

    #[test]
    fn socket_faults_are_socket_actions() {
        assert_eq!(fault_action(&Fault::NeverAnswer), FaultAction::Hold);
        assert_eq!(fault_action(&Fault::Reset), FaultAction::Reset);
        assert_eq!(fault_action(&Fault::CloseMidResponse), FaultAction::IngestThenCut);
    }

    #[test]
    fn garbage_is_not_http() {
        let FaultAction::WriteThenClose(bytes) = fault_action(&Fault::Garbage) else { panic!("not a write") };
        assert!(!bytes.starts_with(b"HTTP/"));
        assert!(crate::http::parse_head(bytes).is_err());
    }

    #[test]
    fn a_cut_head_stops_inside_the_headers() {
        let ok = Response::json(200, &serde_json::json!({ "accepted": 2, "new": 2, "duplicate": false }));
        for keep_alive in [true, false] {
            let whole = ok.head_bytes(keep_alive);
            let cut = cut_head(&ok, keep_alive);
            assert!(cut.starts_with(b"HTTP/1.1 200 OK\r\n"), "{:?}", String::from_utf8_lossy(&cut));
            assert!(whole.starts_with(&cut));
            assert!(cut.len() < whole.len());
            // No blank line: the head never ends, so no client reads a response.
            assert!(!cut.windows(4).any(|w| w == b"\r\n\r\n"));
            assert!(!String::from_utf8_lossy(&cut).contains("Connection:"));
        }
    }
}
