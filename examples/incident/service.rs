//! The payments service, built the Vigil way: request handlers are worker
//! actors, and the event batcher is one more supervised actor in the same tree.
//!
//! ```text
//! root (one-for-one)
//! ├── events (the batcher, under its own supervisor; HttpsSink rebuilt on every restart)
//! └── http   (one-for-one)
//!     ├── handler-0 … handler-7   (one tiny_http request per message)
//!     └── acceptor               (takes requests off the socket, hands them to handlers)
//! ```

use std::error::Error;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use vigil::events::{Config, Emitter, EventPipeline, EventsHandle, LogFields, OtlpLogs, Severity, SpoolConfig};
use vigil::https::{HttpsSinkConfig, HttpsStats};
use vigil::{Actor, Addr, Backoff, BoxError, ChildSpec, Context, Strategy, Supervisor, System};

/// The event every request emits.
#[derive(Debug, Serialize)]
pub(crate) struct PaymentEvent {
    pub(crate) request: u64,
    pub(crate) route: &'static str,
    pub(crate) status: u16,
    pub(crate) amount_cents: u64,
    pub(crate) handler: usize,
    pub(crate) micros: u64,
}

/// How the service is set up.
pub(crate) struct ServiceConfig {
    pub(crate) endpoint: String,
    /// Ship OTLP/HTTP JSON logs instead of NDJSON.
    pub(crate) otlp: bool,
    pub(crate) trust_files: Vec<PathBuf>,
    /// Simulated processing time of one payment.
    pub(crate) work: Duration,
    pub(crate) handlers: usize,
    /// An announced rotation: the new CA's PEM file and the date.
    pub(crate) announced: Option<(PathBuf, SystemTime)>,
    /// How often the sink's trust watcher polls the trust files.
    pub(crate) trust_poll: Duration,
    /// The batcher's restart backoff.
    pub(crate) restart_backoff: Backoff,
    /// `--hang`: the batcher under the watchdog, the sink's timeouts longer
    /// than the hang.
    pub(crate) hang: Option<Duration>,
    /// The port to serve on; 0 for any (`--crash`: the same port across a restart).
    pub(crate) port: u16,
    /// `--crash`: the event pipeline's spool directory, if it has one.
    pub(crate) spool: Option<PathBuf>,
}

impl ServiceConfig {
    /// The replay's settings: a 1 s trust poll, and the default restart
    /// backoff (1 s doubling to 60 s), which the trust watcher ends the
    /// moment the trust file is fixed (issue 14).
    pub(crate) fn replay(endpoint: String, trust_files: Vec<PathBuf>, work: Duration) -> ServiceConfig {
        ServiceConfig {
            endpoint,
            trust_files,
            work,
            handlers: 8,
            otlp: false,
            announced: None,
            trust_poll: Duration::from_secs(1),
            restart_backoff: Backoff::exponential(Duration::from_secs(1), Duration::from_secs(60)),
            hang: None,
            port: 0,
            spool: None,
        }
    }
}

/// The batcher's hang timeout with `--hang`: far above a healthy delivery
/// on loopback, far below the sink's own timeouts then.
pub(crate) const BATCHER_HANG_TIMEOUT: Duration = Duration::from_secs(2);

/// The running service.
pub(crate) struct VigilService {
    pub(crate) port: u16,
    pub(crate) system: System,
    pub(crate) events: EventsHandle,
    pub(crate) https: HttpsStats,
}

const REQUEST_BODY: &str = r#"{"ok":true}"#;

/// Handles one request at a time: "processes the payment", emits an event,
/// answers. The emit never blocks and never fails the request.
struct Handler {
    index: usize,
    emitter: Emitter<PaymentEvent>,
    work: Duration,
    served: Arc<AtomicU64>,
}

impl Actor for Handler {
    type Msg = tiny_http::Request;

    fn handle(&mut self, request: tiny_http::Request, _: &mut Context<'_, tiny_http::Request>) -> Result<(), BoxError> {
        if request.url() != "/charge" {
            let _ = request.respond(tiny_http::Response::from_string("ok"));
            return Ok(());
        }
        let started = Instant::now();
        // Stands in for the real work: a call to a payment gateway.
        std::thread::sleep(self.work);
        let id = self.served.fetch_add(1, Ordering::Relaxed);
        // A full buffer drops the event (counted in the ledger); the request
        // succeeds either way.
        let _ = self.emitter.emit(PaymentEvent {
            request: id,
            route: "/charge",
            status: 201,
            amount_cents: 1_000 + id % 9_000,
            handler: self.index,
            micros: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        });
        let response = tiny_http::Response::from_string(REQUEST_BODY).with_status_code(201);
        // The client may have gone away; that is not this actor's failure.
        let _ = request.respond(response);
        Ok(())
    }
}

/// Takes requests off the listening socket and hands them to the handlers,
/// round robin. Its hook runs until the supervisor asks it to stop.
struct Acceptor {
    server: Arc<tiny_http::Server>,
    handlers: Arc<Vec<Addr<tiny_http::Request>>>,
    next: Arc<AtomicUsize>,
}

impl Actor for Acceptor {
    type Msg = ();

    fn started(&mut self, ctx: &mut Context<'_, ()>) -> Result<(), BoxError> {
        // Run `timeout` right away; it loops until a stop is requested.
        ctx.set_receive_timeout(Some(Duration::ZERO));
        Ok(())
    }

    fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> {
        Ok(())
    }

    fn timeout(&mut self, ctx: &mut Context<'_, ()>) -> Result<(), BoxError> {
        while !ctx.stop_requested() {
            let Some(request) = self.server.recv_timeout(Duration::from_millis(50))? else { continue };
            let i = self.next.fetch_add(1, Ordering::Relaxed) % self.handlers.len();
            if let Err(refused) = self.handlers[i].tell(request) {
                let _ = refused.into_inner().respond(tiny_http::Response::empty(503));
            }
        }
        Ok(())
    }
}

/// How a payment event becomes an OTLP log record: the service's name, an
/// event name, the route as an attribute, and WARN for a server error.
fn otlp_logs() -> OtlpLogs {
    OtlpLogs::new().service_name("incident-payments").map(|event| {
        let status = event["status"].as_u64().unwrap_or(0);
        LogFields::new()
            .severity(if status >= 500 { Severity::WARN } else { Severity::INFO })
            .event_name("payment.charged")
            .attribute("http.route", event["route"].clone())
            .attribute("http.response.status_code", status)
    })
}

impl VigilService {
    /// Builds the tree and starts it.
    pub(crate) fn start(config: ServiceConfig) -> Result<VigilService, Box<dyn Error>> {
        let server = Arc::new(bind(config.port).map_err(|e| format!("cannot listen: {e}"))?);
        let port = server.server_addr().to_ip().map(|a| a.port()).ok_or("tiny_http did not bind an IP address")?;

        // The trust watcher notices the operator's fix within one poll and
        // ends the batcher's restart backoff (issue 14).
        let mut https = HttpsSinkConfig::new(&config.endpoint)
            .trust_poll_interval(config.trust_poll)
            .timeout_connect(Some(Duration::from_secs(2)))
            .timeout_global(Some(Duration::from_secs(5)));
        for file in &config.trust_files {
            https = https.trust_file(file);
        }
        if let Some((new_ca, by)) = &config.announced {
            https = https.announced_rotation(new_ca.as_path(), *by);
        }
        if let Some(hang) = config.hang {
            // Only the watchdog may see the hang: no sink timeout ends it.
            https = https.timeout_global(Some(hang.saturating_add(Duration::from_secs(60))));
        }
        let stats = https.stats();
        let watcher = https.clone();
        let mut events_config = Config::default()
            .capacity(500_000)
            .max_batch_events(512)
            .max_delay(Duration::from_millis(200))
            // Retries of one batch may span the whole outage.
            .max_batch_age(Duration::from_secs(3600));
        if config.otlp {
            events_config = events_config.otlp_logs(otlp_logs());
        }
        if let Some(dir) = &config.spool {
            events_config = events_config.spool(SpoolConfig::new(dir));
        }
        let pipeline = EventPipeline::builder(events_config)
            .id("events")
            // Called on every (re)start: a restart re-reads the trust files.
            .sink(move || https.build())
            .restart_backoff(config.restart_backoff);
        let pipeline = match config.hang {
            Some(_) => pipeline.hang_timeout(BATCHER_HANG_TIMEOUT),
            None => pipeline,
        };
        let (emitter, events_spec, events) = pipeline.build()?;
        watcher.wake_pipeline(&events);

        let served = Arc::new(AtomicU64::new(0));
        let mut http = Supervisor::builder().strategy(Strategy::OneForOne).intensity(10, Duration::from_secs(10));
        let mut handlers = Vec::new();
        for index in 0..config.handlers {
            let (emitter, served, work) = (emitter.clone(), Arc::clone(&served), config.work);
            let spec = ChildSpec::worker(format!("handler-{index}"), move || Handler {
                index,
                emitter: emitter.clone(),
                work,
                served: Arc::clone(&served),
            })
            .mailbox(256);
            handlers.push(spec.addr());
            http = http.child(spec);
        }
        let handlers = Arc::new(handlers);
        let next = Arc::new(AtomicUsize::new(0));
        let acceptor_server = Arc::clone(&server);
        http = http.child(ChildSpec::worker("acceptor", move || Acceptor {
            server: Arc::clone(&acceptor_server),
            handlers: Arc::clone(&handlers),
            next: Arc::clone(&next),
        }));

        let system = Supervisor::builder()
            .strategy(Strategy::OneForOne)
            .intensity(10, Duration::from_secs(10))
            .child(events_spec)
            .child(ChildSpec::supervisor("http", http))
            .start()?;
        Ok(VigilService { port, system, events, https: stats })
    }
}

/// Listens on 127.0.0.1:`port` (any port for 0).
pub(crate) fn bind(port: u16) -> Result<tiny_http::Server, Box<dyn std::error::Error + Send + Sync>> {
    // The previous process may still be releasing the port.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match tiny_http::Server::http(("127.0.0.1", port)) {
            Ok(server) => return Ok(server),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}
