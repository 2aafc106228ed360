//! The collector: builder, acceptor thread, per-connection threads.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::{Condvar, Mutex, RwLock};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

use crate::TARGET;
use crate::certs::{Authority, ClientAuth, Leaf};
use crate::control::Command;
use crate::error::CollectorError;
use crate::fault::{CertMode, Fault, FaultPlan};
use crate::http::{self, Body, Framing, HttpError, RequestHead, Response};
use crate::ingest::{self, Ledger, Outcome};
use crate::stats::CollectorStats;

/// How long a write to a client may block before the connection is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// What [`Fault::Garbage`] writes.
const GARBAGE: &[u8] = b"\x00\x7f\xfe garbage: vigil-collector was told not to speak HTTP \x01\x02\x03\r\n\r\n";

type Tls = StreamOwned<ServerConnection, TcpStream>;

/// Configures and starts a [`Collector`].
///
/// # Examples
///
/// ```
/// use vigil_collector::Collector;
///
/// let collector = Collector::builder().listen("127.0.0.1:0").max_connections(8).start()?;
/// assert!(collector.endpoint().starts_with("https://127.0.0.1:"));
/// # Ok::<(), vigil_collector::CollectorError>(())
/// ```
#[must_use = "a builder does nothing until `start` is called"]
#[derive(Debug, Clone)]
pub struct CollectorBuilder {
    listen: String,
    dir: Option<PathBuf>,
    ndjson_log: Option<PathBuf>,
    max_connections: usize,
    max_body: usize,
    idle_timeout: Option<Duration>,
    control_endpoints: bool,
    client_auth: Option<PathBuf>,
    cert_mode: CertMode,
    close_on_cert_change: bool,
}

impl Default for CollectorBuilder {
    fn default() -> Self {
        CollectorBuilder {
            listen: "127.0.0.1:0".into(),
            dir: None,
            ndjson_log: None,
            max_connections: 64,
            max_body: 16 * 1024 * 1024,
            idle_timeout: Some(Duration::from_secs(30)),
            control_endpoints: false,
            client_auth: None,
            cert_mode: CertMode::Valid,
            close_on_cert_change: true,
        }
    }
}

impl CollectorBuilder {
    /// The address to listen on. Port 0 picks a free port; read it back with
    /// [`Collector::addr`].
    ///
    /// Defaults to `127.0.0.1:0`.
    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.listen = addr.into();
        self
    }

    /// The directory the CA PEM files are written to (`ca-0.pem`, then
    /// `ca-1.pem` after the first rotation, and so on). It is created if
    /// missing and left in place on shutdown.
    ///
    /// Defaults to a fresh directory under the system temporary directory,
    /// removed on shutdown.
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// Appends every newly received event (one per distinct `seq`) to this
    /// file as one line of JSON. Duplicates are not written.
    ///
    /// Defaults to no log.
    pub fn ndjson_log(mut self, path: impl Into<PathBuf>) -> Self {
        self.ndjson_log = Some(path.into());
        self
    }

    /// The most connections served at once. Further connections are accepted
    /// and closed at once (counted in
    /// [`rejected_connections`](CollectorStats::rejected_connections)).
    /// Values below 1 count as 1.
    ///
    /// Defaults to 64.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// The largest request body accepted, before and after gzip
    /// decompression. Larger bodies are read, discarded and answered `413`.
    ///
    /// Defaults to 16 MiB.
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// How long a connection may sit idle (during the handshake, or between
    /// requests) before the collector closes it. `None` waits forever.
    ///
    /// Defaults to 30 seconds.
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Serves `GET /stats` and `POST /control` (see [`Command`]) on the same
    /// port. Faults never apply to them.
    ///
    /// Defaults to `false`.
    pub fn control_endpoints(mut self, enabled: bool) -> Self {
        self.control_endpoints = enabled;
        self
    }

    /// Requires every client to present a certificate that chains to a CA in
    /// this PEM bundle (mutual TLS). The file is read by
    /// [`start`](Self::start).
    ///
    /// Defaults to no client authentication.
    pub fn client_auth(mut self, ca_pem: impl Into<PathBuf>) -> Self {
        self.client_auth = Some(ca_pem.into());
        self
    }

    /// The certificate served from the start; change it later with
    /// [`Collector::serve`].
    ///
    /// Defaults to [`CertMode::Valid`].
    pub fn cert_mode(mut self, mode: CertMode) -> Self {
        self.cert_mode = mode;
        self
    }

    /// Whether [`Collector::rotate_ca`] and [`Collector::serve`] close the
    /// keep-alive connections opened under the previous certificate, the way
    /// a server reload does: idle ones at once, busy ones after their current
    /// response (sent with `Connection: close`). Every client's next request
    /// then handshakes against the new certificate, so a rotation is seen at
    /// once even by clients that pool connections.
    ///
    /// With `false`, open connections keep their certificate until the
    /// client or the [idle timeout](Self::idle_timeout) closes them.
    ///
    /// Defaults to `true`.
    pub fn close_on_cert_change(mut self, close: bool) -> Self {
        self.close_on_cert_change = close;
        self
    }

    /// Generates the first CA and server certificate, binds the socket and
    /// starts accepting connections.
    ///
    /// # Errors
    ///
    /// [`CollectorError::CreateDir`] or [`CollectorError::WriteFile`] when the
    /// directory, a CA PEM or the NDJSON log cannot be written;
    /// [`CollectorError::ReadFile`] or [`CollectorError::Certificate`] for a
    /// bad [`client_auth`](Self::client_auth) bundle;
    /// [`CollectorError::Bind`] when the address cannot be bound;
    /// [`CollectorError::Certificate`], [`CollectorError::Tls`] or
    /// [`CollectorError::Spawn`] when certificate generation, TLS setup or
    /// the acceptor thread fails.
    pub fn start(self) -> Result<Collector, CollectorError> {
        let (dir, owns_dir) = match &self.dir {
            Some(dir) => (dir.clone(), false),
            None => (fresh_temp_dir(), true),
        };
        fs::create_dir_all(&dir).map_err(|source| CollectorError::CreateDir { path: dir.clone(), source })?;
        let cleanup = |result: CollectorError| {
            if owns_dir {
                let _ = fs::remove_dir_all(&dir);
            }
            result
        };

        let client_auth = match &self.client_auth {
            Some(path) => Some(ClientAuth::from_pem_file(path).map_err(cleanup)?),
            None => None,
        };
        let ca = Authority::generate(&dir, 0).map_err(cleanup)?;
        let leaf = ca.issue_leaf(self.cert_mode).map_err(cleanup)?;
        let config = leaf.server_config(client_auth.as_ref()).map_err(cleanup)?;

        let log = match &self.ndjson_log {
            Some(path) => {
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| cleanup(CollectorError::WriteFile { path: path.clone(), source }))?;
                Some((path.clone(), file))
            }
            None => None,
        };

        let listener = TcpListener::bind(self.listen.as_str())
            .map_err(|source| cleanup(CollectorError::Bind { addr: self.listen.clone(), source }))?;
        let addr = listener
            .local_addr()
            .map_err(|source| cleanup(CollectorError::Bind { addr: self.listen.clone(), source }))?;
        let waker = listener
            .try_clone()
            .map_err(|source| cleanup(CollectorError::Bind { addr: self.listen.clone(), source }))?;

        let shared = Arc::new(Shared {
            addr,
            dir: dir.clone(),
            owns_dir,
            max_connections: self.max_connections,
            max_body: self.max_body,
            idle_timeout: self.idle_timeout,
            control: self.control_endpoints,
            client_auth,
            certs: Mutex::new(CertState { ca, leaf, mode: self.cert_mode }),
            tls: RwLock::new(Served { config, generation: 0 }),
            close_on_cert_change: self.close_on_cert_change,
            faults: Mutex::new(FaultPlan::default()),
            ledger: Ledger::new(log),
            conns: Mutex::new(HashMap::new()),
            stopping: Mutex::new(false),
            stop_signal: Condvar::new(),
            stopped: AtomicBool::new(false),
        });
        let acceptor = {
            let shared = shared.clone();
            thread::Builder::new()
                .name("vigil-collector-accept".into())
                .spawn(move || accept_loop(&shared, listener))
                .map_err(|source| cleanup(CollectorError::Spawn { what: "acceptor", source }))?
        };
        let collector = Collector { shared, acceptor: Mutex::new(Some(acceptor)), waker };
        log::info!(
            target: TARGET,
            "collector listening on {}; trust {} (CA generation 0)",
            collector.endpoint(),
            collector.ca_pem_path().display()
        );
        Ok(collector)
    }
}

/// A running loopback HTTPS ingestion server with fault injection.
///
/// See the [crate documentation](crate) for an end-to-end example.
///
/// # About threads and sharing
///
/// `Collector` is `Send + Sync`; share it with `Arc` to drive it from several
/// threads. One acceptor thread hands each connection to a thread of its own
/// (at most [`max_connections`](CollectorBuilder::max_connections)). Every
/// method takes a short internal lock and returns at once, except
/// [`wait_for_events`](Self::wait_for_events) and
/// [`wait_for`](Self::wait_for) (which wait on a condition variable) and
/// [`shutdown`](Self::shutdown) (which joins every thread).
///
/// Certificate changes apply to connections accepted afterwards;
/// connections already open keep the certificate they were opened with.
/// Fault changes apply to the next request on any connection.
pub struct Collector {
    shared: Arc<Shared>,
    acceptor: Mutex<Option<JoinHandle<()>>>,
    waker: TcpListener,
}

impl fmt::Debug for Collector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Collector")
            .field("addr", &self.shared.addr)
            .field("dir", &self.shared.dir)
            .field("stopped", &self.shared.stopped.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

struct Shared {
    addr: SocketAddr,
    dir: PathBuf,
    owns_dir: bool,
    max_connections: usize,
    max_body: usize,
    idle_timeout: Option<Duration>,
    control: bool,
    client_auth: Option<ClientAuth>,
    /// Serializes certificate changes; the config clients get is in `tls`.
    certs: Mutex<CertState>,
    tls: RwLock<Served>,
    close_on_cert_change: bool,
    faults: Mutex<FaultPlan>,
    ledger: Ledger,
    /// Open connections, so shutdown can unblock their threads.
    conns: Mutex<HashMap<u64, ConnEntry>>,
    stopping: Mutex<bool>,
    stop_signal: Condvar,
    stopped: AtomicBool,
}

/// The TLS configuration new connections get, and how many times it changed.
struct Served {
    config: Arc<ServerConfig>,
    generation: u64,
}

/// An open connection, as the acceptor and certificate changes see it.
struct ConnEntry {
    tcp: TcpStream,
    /// Set while the connection waits for its next request.
    idle: Arc<AtomicBool>,
    /// The [`Served`] generation it was opened under.
    generation: u64,
}

struct CertState {
    ca: Authority,
    leaf: Leaf,
    mode: CertMode,
}

impl Shared {
    fn is_stopping(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Sleeps for `d` unless the collector stops first; returns whether the
    /// whole time passed.
    fn sleep(&self, d: Duration) -> bool {
        let deadline = Instant::now().checked_add(d);
        let mut stopping = self.stopping.lock();
        while !*stopping {
            let timed_out = match deadline {
                Some(deadline) => self.stop_signal.wait_until(&mut stopping, deadline).timed_out(),
                None => {
                    self.stop_signal.wait(&mut stopping);
                    false
                }
            };
            if timed_out {
                return !*stopping;
            }
        }
        false
    }

    /// Serves `config` to new connections and, if configured, closes the
    /// idle connections opened under an older one.
    fn install(&self, config: Arc<ServerConfig>) {
        let generation = {
            let mut served = self.tls.write();
            served.config = config;
            served.generation += 1;
            served.generation
        };
        if self.close_on_cert_change {
            let mut closed = 0;
            for entry in self.conns.lock().values() {
                if entry.generation < generation && entry.idle.load(Ordering::Acquire) {
                    let _ = entry.tcp.shutdown(Shutdown::Both);
                    closed += 1;
                }
            }
            if closed > 0 {
                log::info!(target: TARGET, "certificate changed: closed {closed} idle connection(s)");
            }
        }
    }

    /// Whether a connection opened under `generation` should close after
    /// its current exchange.
    fn outdated(&self, generation: u64) -> bool {
        self.close_on_cert_change && self.tls.read().generation != generation
    }

    fn set_fault(&self, fault: Fault) {
        log::info!(target: TARGET, "fault for every request from now on: {fault}");
        self.faults.lock().set(fault);
    }

    fn fail_next(&self, n: u64, fault: Fault) {
        log::info!(target: TARGET, "fault for the next {n} request(s): {fault}");
        self.faults.lock().push(n, fault);
    }

    fn rotate_ca(&self) -> Result<PathBuf, CollectorError> {
        let mut certs = self.certs.lock();
        let generation = certs.ca.generation() + 1;
        let ca = Authority::generate(&self.dir, generation)?;
        let leaf = ca.issue_leaf(certs.mode)?;
        let config = leaf.server_config(self.client_auth.as_ref())?;
        self.install(config);
        let path = ca.pem_path().to_owned();
        certs.ca = ca;
        certs.leaf = leaf;
        drop(certs);
        self.ledger.update(|s| s.rotations += 1);
        log::info!(
            target: TARGET,
            "rotated to CA generation {generation} ({}); clients trusting only older CAs will fail",
            path.display()
        );
        Ok(path)
    }

    fn serve(&self, mode: CertMode) -> Result<(), CollectorError> {
        let mut certs = self.certs.lock();
        let leaf = certs.ca.issue_leaf(mode)?;
        let config = leaf.server_config(self.client_auth.as_ref())?;
        self.install(config);
        certs.leaf = leaf;
        certs.mode = mode;
        log::info!(target: TARGET, "serving a {mode} certificate from CA generation {}", certs.ca.generation());
        Ok(())
    }

    fn apply(&self, command: &Command) -> Result<String, CollectorError> {
        Ok(match command {
            Command::Rotate => format!("rotated; the new CA is {}", self.rotate_ca()?.display()),
            Command::Serve(mode) => {
                self.serve(*mode)?;
                format!("serving a {mode} certificate")
            }
            Command::Fault(fault) => {
                self.set_fault(fault.clone());
                format!("fault for every request: {fault}")
            }
            Command::FailNext { count, fault } => {
                self.fail_next(*count, fault.clone());
                format!("fault for the next {count} request(s): {fault}")
            }
            Command::Stats => status_json(self).to_string(),
        })
    }
}

impl Collector {
    /// Starts configuring a collector.
    ///
    /// # Examples
    ///
    /// ```
    /// let collector = vigil_collector::Collector::builder().start()?;
    /// assert_eq!(collector.stats().requests, 0);
    /// # Ok::<(), vigil_collector::CollectorError>(())
    /// ```
    pub fn builder() -> CollectorBuilder {
        CollectorBuilder::default()
    }

    /// The address the collector listens on.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// The ingest URL, `https://127.0.0.1:PORT/ingest`.
    ///
    /// When listening on an unspecified address (`0.0.0.0`, `::`), the URL
    /// names the loopback address of the same family.
    pub fn endpoint(&self) -> String {
        format!("https://{}/ingest", connect_addr(self.shared.addr))
    }

    /// The directory holding the CA PEM files.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The PEM file of the CA that signs the certificate currently served.
    /// It changes on every [`rotate_ca`](Self::rotate_ca).
    pub fn ca_pem_path(&self) -> PathBuf {
        self.shared.certs.lock().ca.pem_path().to_owned()
    }

    /// The server certificate currently served, as PEM.
    pub fn served_cert_pem(&self) -> String {
        self.shared.certs.lock().leaf.pem().to_owned()
    }

    /// When the server certificate currently served expires (to the second).
    pub fn served_not_after(&self) -> SystemTime {
        self.shared.certs.lock().leaf.not_after()
    }

    /// The certificate mode currently served.
    pub fn cert_mode(&self) -> CertMode {
        self.shared.certs.lock().mode
    }

    /// Sets the fault every following ingest request gets, until changed.
    /// Clears anything queued by [`fail_next`](Self::fail_next).
    ///
    /// # Examples
    ///
    /// ```
    /// use vigil_collector::{Collector, Fault};
    ///
    /// let collector = Collector::builder().start()?;
    /// collector.set_fault(Fault::RetryAfter { status: 503, value: "2".into() });
    /// assert_eq!(collector.fault(), (Fault::RetryAfter { status: 503, value: "2".into() }, 0));
    /// collector.set_fault(Fault::Healthy);
    /// # Ok::<(), vigil_collector::CollectorError>(())
    /// ```
    pub fn set_fault(&self, fault: Fault) {
        self.shared.set_fault(fault);
    }

    /// Gives the next `n` ingest requests `fault`, then returns to the
    /// persistent fault (normally [`Fault::Healthy`]). Calls queue up in order.
    ///
    /// # Examples
    ///
    /// ```
    /// use vigil_collector::{Collector, Fault};
    ///
    /// let collector = Collector::builder().start()?;
    /// collector.fail_next(2, Fault::Status(500));
    /// collector.fail_next(1, Fault::Reset);
    /// assert_eq!(collector.fault(), (Fault::Healthy, 3));
    /// # Ok::<(), vigil_collector::CollectorError>(())
    /// ```
    pub fn fail_next(&self, n: u64, fault: Fault) {
        self.shared.fail_next(n, fault);
    }

    /// The persistent fault, and how many requests are still queued for
    /// one-shot faults.
    pub fn fault(&self) -> (Fault, u64) {
        self.shared.faults.lock().describe()
    }

    /// Rotates to a brand-new CA and a new server certificate signed by it
    /// (in the current [`CertMode`]). Returns the new CA's PEM path.
    ///
    /// New connections are served the new certificate at once: a client
    /// that trusts only the old CA fails its handshake with an
    /// unknown-issuer error; a client that trusts both succeeds.
    ///
    /// # Errors
    ///
    /// [`CollectorError::Certificate`] or [`CollectorError::Tls`] if the new
    /// certificates cannot be made, [`CollectorError::WriteFile`] if the PEM
    /// cannot be written. The old CA stays in service.
    ///
    /// # Examples
    ///
    /// ```
    /// let collector = vigil_collector::Collector::builder().start()?;
    /// let first = collector.ca_pem_path();
    /// let second = collector.rotate_ca()?;
    /// assert_ne!(first, second);
    /// assert_eq!(collector.ca_pem_path(), second);
    /// assert_eq!(collector.stats().rotations, 1);
    /// # Ok::<(), vigil_collector::CollectorError>(())
    /// ```
    pub fn rotate_ca(&self) -> Result<PathBuf, CollectorError> {
        self.shared.rotate_ca()
    }

    /// Serves a new server certificate of the given kind, signed by the
    /// current CA, to connections accepted from now on.
    ///
    /// # Errors
    ///
    /// [`CollectorError::Certificate`] or [`CollectorError::Tls`] if the
    /// certificate cannot be made. The previous certificate stays in service.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use vigil_collector::{CertMode, Collector};
    ///
    /// let collector = Collector::builder().start()?;
    /// collector.serve(CertMode::ExpiresIn(Duration::from_secs(10 * 86_400)))?;
    /// let left = collector.served_not_after().duration_since(SystemTime::now()).unwrap();
    /// assert!(left < Duration::from_secs(10 * 86_400));
    /// collector.serve(CertMode::Expired)?;
    /// assert!(collector.served_not_after() < SystemTime::now());
    /// # Ok::<(), vigil_collector::CollectorError>(())
    /// ```
    pub fn serve(&self, mode: CertMode) -> Result<(), CollectorError> {
        self.shared.serve(mode)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> CollectorStats {
        self.shared.ledger.stats()
    }

    /// Every distinct sequence number received, in order.
    pub fn seqs(&self) -> BTreeSet<u64> {
        self.shared.ledger.seqs()
    }

    /// Waits until at least `n` distinct events have been received, or
    /// `timeout` passes. Returns whether `n` were reached. Wakes on every
    /// change; it does not poll.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let collector = vigil_collector::Collector::builder().start()?;
    /// assert!(collector.wait_for_events(0, Duration::ZERO));
    /// assert!(!collector.wait_for_events(1, Duration::from_millis(10)));
    /// # Ok::<(), vigil_collector::CollectorError>(())
    /// ```
    pub fn wait_for_events(&self, n: usize, timeout: Duration) -> bool {
        self.shared.ledger.wait_until(deadline(timeout), |_, seqs| seqs.len() >= n)
    }

    /// Waits until `pred` holds for the counters, or `timeout` passes.
    /// Returns whether it holds. Wakes on every change; it does not poll.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let collector = vigil_collector::Collector::builder().start()?;
    /// collector.rotate_ca()?;
    /// assert!(collector.wait_for(Duration::from_secs(10), |s| s.rotations == 1));
    /// # Ok::<(), vigil_collector::CollectorError>(())
    /// ```
    pub fn wait_for(&self, timeout: Duration, mut pred: impl FnMut(&CollectorStats) -> bool) -> bool {
        self.shared.ledger.wait_until(deadline(timeout), |stats, _| pred(stats))
    }

    /// Carries out a control [`Command`] and describes the result in one
    /// line (for `stats`, the status as JSON).
    ///
    /// # Errors
    ///
    /// As [`rotate_ca`](Self::rotate_ca) and [`serve`](Self::serve).
    ///
    /// # Examples
    ///
    /// ```
    /// use vigil_collector::{Collector, Command, Fault};
    ///
    /// let collector = Collector::builder().start()?;
    /// let reply = collector.apply(&"fault 503 retry-after=2".parse()?)?;
    /// assert_eq!(reply, "fault for every request: status 503 retry-after=2");
    /// assert_eq!(collector.fault().0, Fault::RetryAfter { status: 503, value: "2".into() });
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn apply(&self, command: &Command) -> Result<String, CollectorError> {
        self.shared.apply(command)
    }

    /// Stops accepting, interrupts every connection (including ones held by
    /// [`Fault::NeverAnswer`] and [`Fault::Slow`]) and joins all threads.
    /// Removes the certificate directory if the collector created it.
    /// Calling it again does nothing; dropping the collector calls it.
    pub fn shutdown(&self) {
        let Some(acceptor) = self.acceptor.lock().take() else {
            return;
        };
        self.shared.stopped.store(true, Ordering::Release);
        *self.shared.stopping.lock() = true;
        self.shared.stop_signal.notify_all();
        // Wake the acceptor: shutting a listening socket down makes accept
        // fail on Linux; a connection works everywhere.
        let _ = socket2::SockRef::from(&self.waker).shutdown(Shutdown::Both);
        let _ = TcpStream::connect_timeout(&connect_addr(self.shared.addr), Duration::from_secs(1));
        if acceptor.join().is_err() {
            log::error!(target: TARGET, "the collector's acceptor thread panicked");
        }
        if let Err(e) = self.shared.ledger.flush_log() {
            log::warn!(target: TARGET, "cannot flush the NDJSON log: {e}");
        }
        if self.shared.owns_dir
            && let Err(e) = fs::remove_dir_all(&self.shared.dir)
        {
            log::warn!(target: TARGET, "cannot remove {}: {e}", self.shared.dir.display());
        }
        log::info!(target: TARGET, "collector on {} shut down", self.shared.addr);
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn status_json(shared: &Shared) -> serde_json::Value {
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

fn deadline(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout).unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400))
}

/// The address a client on this machine connects to.
fn connect_addr(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port()),
        _ => addr,
    }
}

fn fresh_temp_dir() -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
    std::env::temp_dir().join(format!(
        "vigil-collector-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

fn accept_loop(shared: &Arc<Shared>, listener: TcpListener) {
    let mut handles: Vec<JoinHandle<()>> = Vec::new();
    let mut next_id: u64 = 0;
    loop {
        let accepted = listener.accept();
        if shared.is_stopping() {
            break;
        }
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                log::warn!(target: TARGET, "accept failed: {e}");
                // Out of file descriptors and the like: back off briefly,
                // waking at once on shutdown.
                if !shared.sleep(Duration::from_millis(50)) {
                    break;
                }
                continue;
            }
        };
        handles.retain(|h| !h.is_finished());
        next_id += 1;
        let id = next_id;
        let idle = Arc::new(AtomicBool::new(false));
        let Ok(registered) = tcp.try_clone() else {
            log::warn!(target: TARGET, "cannot register the connection from {peer}; closing it");
            continue;
        };
        let (config, generation) = {
            let mut conns = shared.conns.lock();
            if conns.len() >= shared.max_connections {
                drop(conns);
                log::warn!(
                    target: TARGET,
                    "closing the connection from {peer}: {} connections already open",
                    shared.max_connections
                );
                shared.ledger.update(|s| {
                    s.connections += 1;
                    s.rejected_connections += 1;
                });
                continue;
            }
            let (config, generation) = {
                let served = shared.tls.read();
                (served.config.clone(), served.generation)
            };
            conns.insert(id, ConnEntry { tcp: registered, idle: idle.clone(), generation });
            let open = conns.len() as u64;
            shared.ledger.update(|s| {
                s.connections += 1;
                s.active_connections = open;
            });
            (config, generation)
        };
        let spawned = {
            let shared = shared.clone();
            thread::Builder::new().name(format!("vigil-collector-conn-{id}")).spawn(move || {
                let _registration = Registration { shared: &shared, id };
                let conn = Conn { peer, idle, generation };
                serve_connection(&shared, tcp, &conn, config);
            })
        };
        match spawned {
            Ok(handle) => handles.push(handle),
            Err(e) => {
                log::warn!(target: TARGET, "cannot spawn a thread for {peer}: {e}");
                let open = {
                    let mut conns = shared.conns.lock();
                    conns.remove(&id);
                    conns.len() as u64
                };
                shared.ledger.update(|s| s.active_connections = open);
            }
        }
    }
    drop(listener);
    for entry in shared.conns.lock().values() {
        let _ = entry.tcp.shutdown(Shutdown::Both);
    }
    for handle in handles {
        if handle.join().is_err() {
            log::error!(target: TARGET, "a collector connection thread panicked");
        }
    }
}

/// Removes a connection from the table when its thread ends, even by panic.
struct Registration<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let open = {
            let mut conns = self.shared.conns.lock();
            conns.remove(&self.id);
            conns.len() as u64
        };
        self.shared.ledger.update(|s| s.active_connections = open);
    }
}

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
struct Conn {
    peer: SocketAddr,
    idle: Arc<AtomicBool>,
    generation: u64,
}

fn serve_connection(shared: &Shared, tcp: TcpStream, conn: &Conn, config: Arc<ServerConfig>) {
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Ingest,
    Health,
    Stats,
    Control,
    MethodNotAllowed(&'static str),
    NotFound,
}

fn route(shared: &Shared, head: &RequestHead) -> Route {
    let path = head.path();
    match (head.method.as_str(), path) {
        ("POST", "/ingest") => Route::Ingest,
        (_, "/ingest") => Route::MethodNotAllowed("POST"),
        ("GET" | "HEAD", "/health") => Route::Health,
        (_, "/health") => Route::MethodNotAllowed("GET, HEAD"),
        ("GET", "/stats") if shared.control => Route::Stats,
        (_, "/stats") if shared.control => Route::MethodNotAllowed("GET"),
        ("POST", p) if shared.control && (p == "/control" || p.starts_with("/control/")) => Route::Control,
        (_, p) if shared.control && (p == "/control" || p.starts_with("/control/")) => Route::MethodNotAllowed("POST"),
        _ => Route::NotFound,
    }
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
        count_bad_ingest(shared, route);
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
            count_bad_ingest(shared, route);
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

fn count_bad_ingest(shared: &Shared, route: Route) {
    if route == Route::Ingest {
        shared.ledger.update(|s| {
            s.requests += 1;
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
        if !fault.is_healthy() {
            s.faults_served += 1;
        }
    });
    if !fault.is_healthy() {
        log::info!(target: TARGET, "injecting fault {fault} into a request from {peer}");
    }
    let respond =
        |reader: &mut BufReader<Tls>, response: Response| respond(shared, conn, head, reader, &response, true);
    match fault {
        Fault::Healthy => respond(reader, ingest(shared, head, body, peer)),
        Fault::Slow(d) => {
            if shared.sleep(d) {
                respond(reader, ingest(shared, head, body, peer))
            } else {
                Next::Abort
            }
        }
        Fault::Status(status) => respond(reader, Response::error(status, format!("injected fault: status {status}"))),
        Fault::RetryAfter { status, value } => respond(
            reader,
            Response::error(status, format!("injected fault: status {status}, retry after {value}"))
                .with_header("Retry-After", value),
        ),
        Fault::NeverAnswer => {
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
        Fault::Reset => {
            if let Err(e) = socket2::SockRef::from(&reader.get_ref().sock).set_linger(Some(Duration::ZERO)) {
                log::warn!(target: TARGET, "cannot set SO_LINGER 0; closing {peer} without a reset: {e}");
            }
            Next::Abort
        }
        Fault::CloseMidResponse => {
            let response = ingest(shared, head, body, peer);
            let bytes = response.head_bytes(head.keep_alive());
            // Cut inside the headers, so no client can take it for a whole answer.
            let cut = bytes.len() / 2;
            let tls = reader.get_mut();
            let _ = tls.write_all(&bytes[..cut]).and_then(|()| tls.flush());
            Next::Abort
        }
        Fault::Garbage => {
            let tls = reader.get_mut();
            let _ = tls.write_all(GARBAGE).and_then(|()| tls.flush());
            Next::Close
        }
    }
}

/// Decodes and records a batch, and says how it went.
fn ingest(shared: &Shared, head: &RequestHead, body: &[u8], peer: SocketAddr) -> Response {
    let key = head.header("idempotency-key").map(str::trim).filter(|k| !k.is_empty());
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

fn control(shared: &Shared, head: &RequestHead, body: &[u8]) -> Response {
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
