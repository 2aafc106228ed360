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

/// The content type of `/metrics` for a scraper that accepts OpenMetrics
/// (Prometheus does).
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The content type of `/metrics` for any other client: Prometheus's
/// classic text format 0.0.4 (what `promtool check metrics` reads).
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// An HTTP endpoint for the engines outside the process, answering from
/// the latest [`HealthReport`] (it never calls into the tree):
///
/// | path | 200 when | body |
/// |---|---|---|
/// | `/livez` | [`live`](HealthReport::live) | `{"live":…,"health":…}` |
/// | `/readyz` | [`ready`](HealthReport::ready) | `{"ready":…,"health":…}` |
/// | `/startupz` | [`started`](HealthReport::started) | `{"started":…,"health":…}` |
/// | `/stats` | always | the whole report: tree snapshot, events ledger, HTTPS stats |
/// | `/metrics` | always | OpenMetrics text when the `Accept` header asks for it, else the classic text format 0.0.4 (both by prometheus-client) |
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
            let accept =
                request.headers().iter().find(|h| h.field.equiv("Accept")).map(|h| h.value.as_str().to_owned());
            let (status, content_type, body) =
                answer(request.url(), accept.as_deref().unwrap_or(""), &self.endpoint.watch.get());
            let header =
                tiny_http::Header::from_bytes("Content-Type", content_type).map_err(|()| "bad Content-Type header")?;
            // The client may have gone; that is not the endpoint's failure.
            let _ =
                request.respond(tiny_http::Response::from_string(body).with_status_code(status).with_header(header));
        }
        Ok(())
    }
}

/// The answer to a GET of `url` with the `Accept` header `accept`: status,
/// content type, body.
pub(crate) fn answer(url: &str, accept: &str, report: &HealthReport) -> (u16, &'static str, String) {
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
        "/metrics" if accept.contains("application/openmetrics-text") => {
            (200, OPENMETRICS, crate::metrics::encode(report, crate::metrics::Format::OpenMetrics))
        }
        "/metrics" => (200, PROMETHEUS_TEXT, crate::metrics::encode(report, crate::metrics::Format::Prometheus)),
        _ => (404, JSON, r#"{"paths":["/livez","/readyz","/startupz","/stats","/metrics"]}"#.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Health, Reason};

    fn answer_(url: &str, report: &HealthReport) -> (u16, &'static str, String) {
        answer(url, "", report)
    }

    #[test]
    fn metrics_are_openmetrics_only_for_a_client_that_asks() {
        let report = HealthReport::starting();
        let (_, kind, body) = answer("/metrics", "application/openmetrics-text;version=1.0.0,*/*;q=0.1", &report);
        assert_eq!(kind, OPENMETRICS);
        assert!(body.ends_with("# EOF\n"));
        let (_, kind, body) = answer("/metrics", "*/*", &report);
        assert_eq!(kind, PROMETHEUS_TEXT);
        assert!(!body.contains("# EOF"));
    }

    #[test]
    fn probes_answer_by_the_report() {
        let mut report = HealthReport::starting();
        assert_eq!(answer_("/livez", &report).0, 200);
        assert_eq!(answer_("/readyz", &report).0, 503);
        assert_eq!(answer_("/startupz", &report).0, 503);
        report.started = true;
        report.ready = true;
        report.health = Health::Degraded { reasons: vec![Reason::Hung { path: "root/w".into() }] };
        let (status, _, body) = answer_("/readyz?verbose", &report);
        assert_eq!(status, 200);
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["health"]["state"], "degraded");
        assert_eq!(body["health"]["reasons"][0]["path"], "root/w");
        report.live = false;
        assert_eq!(answer_("/livez", &report).0, 503);
        assert_eq!(answer_("/nope", &report).0, 404);
    }
}
