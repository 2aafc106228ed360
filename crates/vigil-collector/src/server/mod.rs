//! The collector: its shared state and the [`Collector`] handle.
//!
//! - [`builder`]: [`CollectorBuilder`] and `start`;
//! - [`accept`]: the acceptor thread, which gives each connection a thread;
//! - [`connection`]: one connection's TLS session, request loop and faults
//!   applied on the socket;
//! - [`routes`]: what each request gets, as values: the route, the
//!   response, and the [`FaultAction`](routes::FaultAction) a fault produces.

mod accept;
mod builder;
mod connection;
mod routes;

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::{Condvar, Mutex, RwLock};
use rustls::ServerConfig;

pub use builder::CollectorBuilder;
use routes::status_json;

use crate::TARGET;
use crate::certs::{Authority, ClientAuth, Leaf};
use crate::control::Command;
use crate::error::CollectorError;
use crate::fault::{CertMode, Fault, FaultPlan};
use crate::ingest::Ledger;
use crate::stats::CollectorStats;

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
    /// The CA announced by [`Collector::announce_next_ca`], which the next
    /// rotation moves to.
    next: Option<Authority>,
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
        let ca = match certs.next.take() {
            Some(next) => next,
            None => Authority::generate(&self.dir, generation)?,
        };
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

    fn announce_next_ca(&self) -> Result<PathBuf, CollectorError> {
        let mut certs = self.certs.lock();
        if certs.next.is_none() {
            let generation = certs.ca.generation() + 1;
            certs.next = Some(Authority::generate(&self.dir, generation)?);
        }
        Ok(certs.next.as_ref().map(|next| next.pem_path().to_owned()).unwrap_or_default())
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

    /// The OTLP/HTTP logs URL, `https://127.0.0.1:PORT/v1/logs`: it takes an
    /// `ExportLogsServiceRequest` in the OTLP JSON encoding, parsed strictly.
    ///
    /// # Examples
    ///
    /// ```
    /// let collector = vigil_collector::Collector::builder().start()?;
    /// assert!(collector.otlp_endpoint().ends_with("/v1/logs"));
    /// # Ok::<(), vigil_collector::CollectorError>(())
    /// ```
    pub fn otlp_endpoint(&self) -> String {
        format!("https://{}{}", connect_addr(self.shared.addr), routes::OTLP_LOGS)
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

    /// Makes the CA the next [`rotate_ca`](Collector::rotate_ca) will move
    /// to, without serving it yet, and returns its PEM file: what a real
    /// service announces ahead of a rotation. Calling it again returns the
    /// same CA until the rotation happens.
    ///
    /// # Errors
    ///
    /// [`CollectorError::Certificate`] if the CA cannot be made,
    /// [`CollectorError::WriteFile`] if its PEM cannot be written.
    ///
    /// # Examples
    ///
    /// ```
    /// let collector = vigil_collector::Collector::builder().start()?;
    /// let next = collector.announce_next_ca()?;
    /// assert_ne!(collector.ca_pem_path(), next, "still serving the old CA");
    /// assert_eq!(collector.rotate_ca()?, next);
    /// # Ok::<(), vigil_collector::CollectorError>(())
    /// ```
    pub fn announce_next_ca(&self) -> Result<PathBuf, CollectorError> {
        self.shared.announce_next_ca()
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
