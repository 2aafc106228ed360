//! The HTTP endpoint (feature `http`): Kubernetes probes, `/stats` and
//! Prometheus `/metrics`, served by one supervised actor on tiny_http.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use vigil_core::{Actor, BoxError, ChildSpec, Context, WorkerSpec};

use crate::error::HealthError;
use crate::monitor::HealthReport;
use crate::watch::Watch;

/// The content type of `/metrics`.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// An HTTP endpoint for the engines outside the process, answering from
/// the latest [`HealthReport`] (it never calls into the tree):
///
/// | path | 200 when | body |
/// |---|---|---|
/// | `/livez` | [`live`](HealthReport::live) | `{"live":…,"health":…}` |
/// | `/readyz` | [`ready`](HealthReport::ready) | `{"ready":…,"health":…}` |
/// | `/startupz` | [`started`](HealthReport::started) | `{"started":…,"health":…}` |
/// | `/stats` | always | the whole report: tree snapshot, events ledger, HTTPS stats |
/// | `/metrics` | always | OpenMetrics text (prometheus-client) |
///
/// Otherwise 503 (or 404 for an unknown path). The health's JSON carries
/// its reasons. [`bind`](HealthEndpoint::bind) listens at once (a bad
/// address is an error before the tree starts);
/// [`child_spec`](HealthEndpoint::child_spec) is the actor that serves,
/// to put in the tree (first, so that `/startupz` answers 503 while the
/// rest starts). Its restarts keep the socket.
#[derive(Clone)]
pub struct HealthEndpoint {
    server: Arc<tiny_http::Server>,
    addr: SocketAddr,
    watch: Watch<HealthReport>,
}

impl fmt::Debug for HealthEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthEndpoint").field("addr", &self.addr).finish()
    }
}

impl HealthEndpoint {
    /// Listens on `addr` (`HOST:PORT`; port 0 picks a free one) and answers
    /// from `watch`.
    ///
    /// # Errors
    ///
    /// [`HealthError::Bind`] when the address is bad or taken.
    ///
    /// # Examples
    ///
    /// ```
    /// let (_publisher, watch) = vigil_health::report_channel();
    /// let endpoint = vigil_health::HealthEndpoint::bind("127.0.0.1:0", watch)?;
    /// assert_ne!(endpoint.local_addr().port(), 0);
    /// # Ok::<(), vigil_health::HealthError>(())
    /// ```
    pub fn bind(addr: &str, watch: Watch<HealthReport>) -> Result<HealthEndpoint, HealthError> {
        let bind_error = |error: String| HealthError::Bind { addr: addr.to_owned(), error };
        let server = tiny_http::Server::http(addr).map_err(|e| bind_error(e.to_string()))?;
        let local = server.server_addr().to_ip().ok_or_else(|| bind_error("not an IP address".to_owned()))?;
        Ok(HealthEndpoint { server: Arc::new(server), addr: local, watch })
    }

    /// The address it listens on.
    ///
    /// # Examples
    ///
    /// ```
    /// let (_publisher, watch) = vigil_health::report_channel();
    /// let endpoint = vigil_health::HealthEndpoint::bind("127.0.0.1:0", watch)?;
    /// assert!(endpoint.local_addr().ip().is_loopback());
    /// # Ok::<(), vigil_health::HealthError>(())
    /// ```
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The actor that serves the endpoint, with the id `health`. It runs its
    /// accept loop in `timeout`, beating the hang watchdog's heart each turn.
    ///
    /// # Examples
    ///
    /// ```
    /// # use vigil_core::*;
    /// let (publisher, watch) = vigil_health::report_channel();
    /// let endpoint = vigil_health::HealthEndpoint::bind("127.0.0.1:0", watch)?;
    /// let system = Supervisor::builder().child(endpoint.child_spec()).start()?;
    /// let _monitor = vigil_health::HealthMonitor::builder(system.observer()).publisher(publisher).start()?;
    /// system.shutdown()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn child_spec(&self) -> WorkerSpec<EndpointActor> {
        let endpoint = self.clone();
        ChildSpec::worker("health", move || EndpointActor { endpoint: endpoint.clone() })
    }
}

/// The actor behind [`HealthEndpoint::child_spec`].
#[derive(Debug)]
pub struct EndpointActor {
    endpoint: HealthEndpoint,
}

impl Actor for EndpointActor {
    type Msg = ();

    fn started(&mut self, ctx: &mut Context<'_, ()>) -> Result<(), BoxError> {
        ctx.set_receive_timeout(Some(Duration::ZERO));
        Ok(())
    }

    fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> {
        Ok(())
    }

    fn timeout(&mut self, ctx: &mut Context<'_, ()>) -> Result<(), BoxError> {
        while !ctx.stop_requested() {
            ctx.heartbeat();
            let Some(request) = self.endpoint.server.recv_timeout(Duration::from_millis(50))? else { continue };
            let (status, content_type, body) = answer(request.url(), &self.endpoint.watch.get());
            let header =
                tiny_http::Header::from_bytes("Content-Type", content_type).map_err(|()| "bad Content-Type header")?;
            // The client may have gone; that is not the endpoint's failure.
            let _ =
                request.respond(tiny_http::Response::from_string(body).with_status_code(status).with_header(header));
        }
        Ok(())
    }
}

/// The answer to a GET of `url`: status, content type, body.
pub(crate) fn answer(url: &str, report: &HealthReport) -> (u16, &'static str, String) {
    const JSON: &str = "application/json";
    let path = url.split('?').next().unwrap_or(url);
    let probe = |name: &str, ok: bool| {
        let body = serde_json::json!({ name: ok, "health": report.health });
        (if ok { 200 } else { 503 }, JSON, body.to_string())
    };
    match path {
        "/livez" => probe("live", report.live),
        "/readyz" => probe("ready", report.ready),
        "/startupz" => probe("started", report.started),
        "/stats" => match serde_json::to_string(report) {
            Ok(body) => (200, JSON, body),
            Err(e) => (500, JSON, serde_json::json!({ "error": e.to_string() }).to_string()),
        },
        "/metrics" => (200, OPENMETRICS, crate::metrics::encode(report)),
        _ => (404, JSON, r#"{"paths":["/livez","/readyz","/startupz","/stats","/metrics"]}"#.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Health, Reason};

    #[test]
    fn probes_answer_by_the_report() {
        let mut report = HealthReport::starting();
        assert_eq!(answer("/livez", &report).0, 200);
        assert_eq!(answer("/readyz", &report).0, 503);
        assert_eq!(answer("/startupz", &report).0, 503);
        report.started = true;
        report.ready = true;
        report.health = Health::Degraded { reasons: vec![Reason::Hung { path: "root/w".into() }] };
        let (status, _, body) = answer("/readyz?verbose", &report);
        assert_eq!(status, 200);
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["health"]["state"], "degraded");
        assert_eq!(body["health"]["reasons"][0]["path"], "root/w");
        report.live = false;
        assert_eq!(answer("/livez", &report).0, 503);
        assert_eq!(answer("/nope", &report).0, 404);
    }
}
