//! [`CollectorBuilder`]: the configuration, and `start`, which makes the
//! first certificates, binds the socket and spawns the acceptor.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::{Condvar, Mutex, RwLock};

use super::accept::accept_loop;
use super::{CertState, Collector, Served, Shared};
use crate::TARGET;
use crate::certs::{Authority, ClientAuth};
use crate::error::CollectorError;
use crate::fault::{CertMode, FaultPlan};
use crate::ingest::Ledger;

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
    /// [`rejected_connections`](crate::CollectorStats::rejected_connections)).
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

    /// Serves `GET /stats` and `POST /control` (see [`Command`](crate::Command)) on the same
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
            certs: Mutex::new(CertState { ca, leaf, mode: self.cert_mode, next: None }),
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

fn fresh_temp_dir() -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
    std::env::temp_dir().join(format!(
        "vigil-collector-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}
