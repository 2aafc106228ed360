//! The service as the incident's system was built: the batcher is a plain
//! background thread, and an unhandled delivery error takes the whole
//! process down, killing the requests in flight on the other threads.
//!
//! It runs in a child process (`--naive-child`), restarted by the parent the
//! way a process manager would restart it.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};

/// The child process: serve until killed, or until delivery fails.
/// Each incarnation numbers its events from `seq_base`, so the collector
/// counts every incarnation's events apart.
pub(crate) fn child_main(port: u16, endpoint: &str, trust: &Path, work: Duration, seq_base: u64) -> ! {
    let server = match crate::service::bind(port) {
        Ok(server) => Arc::new(server),
        Err(e) => {
            eprintln!("naive: cannot listen on {port}: {e}");
            std::process::exit(2);
        }
    };
    let buffer: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    // The trust set is read once, at start, like the incident's hosts.
    let agent = match agent(trust) {
        Ok(agent) => agent,
        Err(e) => {
            eprintln!("naive: bad trust file: {e}");
            std::process::exit(2);
        }
    };
    let batch_buffer = Arc::clone(&buffer);
    let endpoint = endpoint.to_owned();
    std::thread::spawn(move || {
        let mut batch_no = 0u64;
        loop {
            std::thread::sleep(Duration::from_millis(200));
            let batch: Vec<serde_json::Value> = std::mem::take(&mut *batch_buffer.lock());
            if batch.is_empty() {
                continue;
            }
            batch_no += 1;
            let body: String = batch.iter().map(|e| format!("{e}\n")).collect();
            let sent = agent
                .post(&endpoint)
                .header("Content-Type", "application/x-ndjson")
                .header("Idempotency-Key", &format!("naive-{}-{batch_no}", std::process::id()))
                .send(&body);
            if let Err(e) = sent {
                // The unhandled error: the runtime aborts every thread.
                eprintln!("naive: unhandled delivery error, aborting all threads: {e}");
                std::process::exit(70);
            }
        }
    });
    let seq = Arc::new(AtomicU64::new(seq_base));
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (server, buffer, seq) = (Arc::clone(&server), Arc::clone(&buffer), Arc::clone(&seq));
            std::thread::spawn(move || {
                while let Ok(request) = server.recv() {
                    if request.url() != "/charge" {
                        let _ = request.respond(tiny_http::Response::from_string("ok"));
                        continue;
                    }
                    std::thread::sleep(work);
                    let n = seq.fetch_add(1, Ordering::Relaxed);
                    buffer.lock().push(serde_json::json!({ "seq": n, "event": { "route": "/charge", "status": 201 } }));
                    let _ = request.respond(tiny_http::Response::from_string(r#"{"ok":true}"#).with_status_code(201));
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    std::process::exit(0);
}

fn agent(trust: &Path) -> Result<ureq::Agent, Box<dyn std::error::Error>> {
    let mut pem = Vec::new();
    std::fs::File::open(trust)?.read_to_end(&mut pem)?;
    let certs: Vec<Certificate<'static>> = rustls_pki_pem(&pem)?;
    let tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .root_certs(RootCerts::new_with_certs(&certs))
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .build();
    Ok(ureq::Agent::config_builder().tls_config(tls).timeout_global(Some(Duration::from_secs(5))).build().new_agent())
}

/// Every certificate in a PEM bundle.
fn rustls_pki_pem(pem: &[u8]) -> Result<Vec<Certificate<'static>>, Box<dyn std::error::Error>> {
    let text = std::str::from_utf8(pem)?;
    let mut certs = Vec::new();
    for block in text.split_inclusive("-----END CERTIFICATE-----") {
        if block.contains("-----BEGIN CERTIFICATE-----") {
            certs.push(Certificate::from_pem(block.trim().as_bytes())?.to_owned());
        }
    }
    Ok(certs)
}

/// The parent's side: a process manager that restarts the naive service
/// whenever it dies, and counts the crashes.
pub(crate) struct Manager {
    pub(crate) port: u16,
    pub(crate) crashes: Arc<Mutex<Vec<Duration>>>,
    /// When the running incarnation was started, since the epoch.
    pub(crate) started: Arc<Mutex<Duration>>,
    stop: Arc<AtomicBool>,
    child: Arc<Mutex<Option<Child>>>,
    thread: JoinHandle<()>,
}

impl Manager {
    pub(crate) fn start(endpoint: &str, trust: PathBuf, work: Duration, epoch: Instant) -> std::io::Result<Manager> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let exe = std::env::current_exe()?;
        let spawn = {
            let endpoint = endpoint.to_owned();
            let incarnations = AtomicU64::new(0);
            move || {
                let seq_base = incarnations.fetch_add(1, Ordering::Relaxed) * 1_000_000_000;
                Command::new(&exe)
                    .args(["--naive-child", "--port", &port.to_string(), "--endpoint", &endpoint])
                    .arg("--trust")
                    .arg(&trust)
                    .args(["--work-ms", &work.as_millis().to_string()])
                    .args(["--seq-base", &seq_base.to_string()])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
            }
        };
        let started = Arc::new(Mutex::new(epoch.elapsed()));
        let child = Arc::new(Mutex::new(Some(spawn()?)));
        wait_for_port(port);
        let (stop, crashes) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Vec::new())));
        let thread = {
            let (stop, crashes, child) = (Arc::clone(&stop), Arc::clone(&crashes), Arc::clone(&child));
            let started = Arc::clone(&started);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let exited = child.lock().as_mut().and_then(|c| c.try_wait().ok().flatten());
                    if exited.is_some() && !stop.load(Ordering::Relaxed) {
                        crashes.lock().push(epoch.elapsed());
                        // RestartSec: what a process manager waits before a restart.
                        std::thread::sleep(Duration::from_millis(300));
                        *started.lock() = epoch.elapsed();
                        *child.lock() = spawn().ok();
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        };
        Ok(Manager { port, crashes, started, stop, child, thread })
    }

    /// `--crash`: kills the running incarnation with SIGKILL; the manager
    /// restarts it as after any crash. False when none was running.
    pub(crate) fn kill(&self) -> bool {
        self.child.lock().as_mut().is_some_and(|c| c.kill().is_ok())
    }

    pub(crate) fn stop(self) -> Vec<Duration> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        if let Some(mut child) = self.child.lock().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.crashes.lock().clone()
    }
}

pub(crate) fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}
