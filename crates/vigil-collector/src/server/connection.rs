//! One connection: the TLS handshake, the keep-alive request loop, body
//! framing, and the faults carried out on the socket.

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rustls::{ServerConfig, ServerConnection, StreamOwned};

use super::Shared;
use super::routes::{self, FaultAction, Route, control, ingest, route, status_json};
use crate::TARGET;
use crate::http::{self, Body, Framing, HttpError, RequestHead, Response};

/// How long a write to a client may block before the connection is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

type Tls = StreamOwned<ServerConnection, TcpStream>;

/// What to do with the connection after a request.
enum Next {
    /// Read the next request.
    KeepAlive,
    /// Send `close_notify` and close.
    Close,
    /// Close without `close_notify` (the fault already decided how).
    Abort,
}

/// What a connection thread knows about its connection.
pub(super) struct Conn {
    pub(super) peer: SocketAddr,
    pub(super) idle: Arc<AtomicBool>,
    pub(super) generation: u64,
}

pub(super) fn serve_connection(shared: &Shared, tcp: TcpStream, conn: &Conn, config: Arc<ServerConfig>) {
    let peer = conn.peer;
    let _ = tcp.set_nodelay(true);
    let _ = tcp.set_read_timeout(shared.idle_timeout);
    let _ = tcp.set_write_timeout(Some(WRITE_TIMEOUT));
    let session = match ServerConnection::new(config) {
        Ok(session) => session,
        Err(e) => {
            log::error!(target: TARGET, "cannot start a TLS session for {peer}: {e}");
            return;
        }
    };
    let mut tls = StreamOwned::new(session, tcp);
    while tls.conn.is_handshaking() {
        if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
            if !shared.is_stopping() {
                log::info!(target: TARGET, "TLS handshake with {peer} failed: {e}");
                shared.ledger.update(|s| s.tls_handshake_failures += 1);
            }
            return;
        }
    }
    log::debug!(target: TARGET, "TLS session with {peer} established");

    let mut reader = BufReader::with_capacity(16 * 1024, tls);
    loop {
        conn.idle.store(true, Ordering::Release);
        if shared.outdated(conn.generation) {
            log::debug!(target: TARGET, "closing the connection from {peer}: the certificate changed");
            break;
        }
        let head = http::read_head(&mut reader);
        conn.idle.store(false, Ordering::Release);
        let head = match head {
            Ok(Some(head)) => head,
            Ok(None) => break,
            Err(HttpError::Io(e)) => {
                log::debug!(target: TARGET, "connection from {peer} ended: {e}");
                return;
            }
            Err(e) => {
                log::warn!(target: TARGET, "bad request from {peer}: {e}");
                let status = e.status().unwrap_or(400);
                let _ = Response::error(status, &e).write_to(reader.get_mut(), false);
                break;
            }
        };
        match handle_request(shared, &mut reader, &head, conn) {
            Next::KeepAlive if !shared.is_stopping() => {}
            Next::KeepAlive | Next::Close => break,
            Next::Abort => return,
        }
    }
    let tls = reader.get_mut();
    tls.conn.send_close_notify();
    let _ = tls.flush();
}

fn handle_request(shared: &Shared, reader: &mut BufReader<Tls>, head: &RequestHead, conn: &Conn) -> Next {
    let peer = conn.peer;
    let respond = |reader: &mut BufReader<Tls>, response: Response, may_keep_alive: bool| {
        respond(shared, conn, head, reader, &response, may_keep_alive)
    };
    let route = route(shared, head);
    let framing = match head.framing() {
        Ok(framing) => framing,
        Err(e) => return respond(reader, Response::error(e.status().unwrap_or(400), &e), false),
    };
    if let Framing::Length(n) = framing
        && head.expects_continue()
        && n > shared.max_body as u64
    {
        // The client has not sent the body; refuse before it does.
        count_bad_ingest(shared, route, head);
        let msg = format!("body of {n} bytes is larger than the limit of {} bytes", shared.max_body);
        return respond(reader, Response::error(413, msg), false);
    }
    if head.expects_continue() && framing != Framing::Empty {
        let sent = reader.get_mut().write_all(b"HTTP/1.1 100 Continue\r\n\r\n").and_then(|()| reader.get_mut().flush());
        if sent.is_err() {
            return Next::Abort;
        }
    }
    let body = match http::read_body(reader, framing, shared.max_body) {
        Ok(Body::Complete(body)) => body,
        Ok(Body::TooLarge) => {
            count_bad_ingest(shared, route, head);
            let msg = format!("body larger than the limit of {} bytes", shared.max_body);
            return respond(reader, Response::error(413, msg), true);
        }
        Err(HttpError::Io(e)) => {
            log::debug!(target: TARGET, "connection from {peer} ended mid-body: {e}");
            return Next::Abort;
        }
        Err(e) => {
            log::warn!(target: TARGET, "bad request body from {peer}: {e}");
            return respond(reader, Response::error(e.status().unwrap_or(400), &e), false);
        }
    };
    match route {
        Route::Ingest => ingest_with_fault(shared, reader, head, &body, conn),
        Route::Health => respond(reader, Response::text(200, "ok"), true),
        Route::Stats => respond(reader, Response::json(200, &status_json(shared)), true),
        Route::Control => respond(reader, control(shared, head, &body), true),
        Route::MethodNotAllowed(allow) => {
            respond(reader, Response::error(405, "method not allowed").with_header("Allow", allow), true)
        }
        Route::NotFound => respond(reader, Response::error(404, format!("no such endpoint {}", head.path())), true),
    }
}

/// Writes `response`, keeping the connection open if the client and the
/// collector both want that at this moment.
fn respond(
    shared: &Shared,
    conn: &Conn,
    head: &RequestHead,
    reader: &mut BufReader<Tls>,
    response: &Response,
    may_keep_alive: bool,
) -> Next {
    let keep_alive = may_keep_alive && head.keep_alive() && !shared.outdated(conn.generation) && !shared.is_stopping();
    let written = if head.method == "HEAD" {
        let tls = reader.get_mut();
        tls.write_all(&response.head_bytes(keep_alive)).and_then(|()| tls.flush())
    } else {
        response.write_to(reader.get_mut(), keep_alive)
    };
    match written {
        Ok(()) if keep_alive => Next::KeepAlive,
        Ok(()) => Next::Close,
        Err(e) => {
            log::debug!(target: TARGET, "cannot answer {}: {e}", conn.peer);
            Next::Abort
        }
    }
}

fn count_bad_ingest(shared: &Shared, route: Route, head: &RequestHead) {
    if route == Route::Ingest {
        shared.ledger.update(|s| {
            s.requests += 1;
            s.otlp_requests += u64::from(head.path() == routes::OTLP_LOGS);
            s.bad_requests += 1;
        });
    }
}

fn ingest_with_fault(
    shared: &Shared,
    reader: &mut BufReader<Tls>,
    head: &RequestHead,
    body: &[u8],
    conn: &Conn,
) -> Next {
    let peer = conn.peer;
    let fault = shared.faults.lock().take();
    shared.ledger.update(|s| {
        s.requests += 1;
        s.otlp_requests += u64::from(head.path() == routes::OTLP_LOGS);
        if !fault.is_healthy() {
            s.faults_served += 1;
        }
    });
    if !fault.is_healthy() {
        log::info!(target: TARGET, "injecting fault {fault} into a request from {peer}");
    }
    let respond =
        |reader: &mut BufReader<Tls>, response: Response| respond(shared, conn, head, reader, &response, true);
    match routes::fault_action(&fault) {
        FaultAction::Ingest { delay: None } => respond(reader, ingest(shared, head, body, peer, 0)),
        FaultAction::IngestRejecting(n) => respond(reader, ingest(shared, head, body, peer, n)),
        FaultAction::Ingest { delay: Some(delay) } => {
            if shared.sleep(delay) {
                respond(reader, ingest(shared, head, body, peer, 0))
            } else {
                Next::Abort
            }
        }
        FaultAction::Respond(response) => respond(reader, response),
        FaultAction::Hold => {
            // Hold the connection open without answering: read (and drop)
            // whatever arrives until the client gives up or shutdown closes
            // the socket.
            let _ = reader.get_ref().sock.set_read_timeout(None);
            let mut sink = [0u8; 4096];
            while let Ok(n) = reader.read(&mut sink) {
                if n == 0 {
                    break;
                }
            }
            Next::Abort
        }
        FaultAction::Reset => {
            if let Err(e) = socket2::SockRef::from(&reader.get_ref().sock).set_linger(Some(Duration::ZERO)) {
                log::warn!(target: TARGET, "cannot set SO_LINGER 0; closing {peer} without a reset: {e}");
            }
            Next::Abort
        }
        FaultAction::IngestThenCut => {
            let response = ingest(shared, head, body, peer, 0);
            let bytes = routes::cut_head(&response, head.keep_alive());
            let tls = reader.get_mut();
            let _ = tls.write_all(&bytes).and_then(|()| tls.flush());
            Next::Abort
        }
        FaultAction::WriteThenClose(bytes) => {
            let tls = reader.get_mut();
            let _ = tls.write_all(bytes).and_then(|()| tls.flush());
            Next::Close
        }
    }
}
