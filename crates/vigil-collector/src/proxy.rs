//! [`ConnectProxy`]: a small, real HTTP CONNECT proxy on loopback, for tests
//! of clients that must reach the collector through a proxy.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use crate::TARGET;
use crate::error::CollectorError;

/// The longest request head the proxy reads before giving up on a client.
const MAX_HEAD: usize = 8 * 1024;
/// How long the proxy waits to connect to a CONNECT target.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A real HTTP CONNECT proxy on a loopback port: real TCP, a thread per
/// client, bytes forwarded both ways, every `CONNECT` target recorded.
///
/// It answers `CONNECT host:port` with `200 Connection established` and then
/// forwards bytes until either side closes; a target it cannot reach gets
/// `502`, any other method `405`. It never looks inside the tunnel, so TLS
/// runs end to end between the client and the target.
///
/// # About threads
///
/// One acceptor thread, and two threads per tunnel (one per direction).
/// [`shutdown`](ConnectProxy::shutdown) (also run on drop) closes every
/// socket and joins every thread.
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
///
/// let proxy = vigil_collector::ConnectProxy::start()?;
/// let target = std::net::TcpListener::bind("127.0.0.1:0")?;
/// let target_addr = target.local_addr()?;
///
/// let mut client = std::net::TcpStream::connect(proxy.addr())?;
/// write!(client, "CONNECT {target_addr} HTTP/1.1\r\nHost: {target_addr}\r\n\r\n")?;
/// let (mut server, _) = target.accept()?;
/// let mut answer = [0u8; 39];
/// client.read_exact(&mut answer)?;
/// assert!(answer.starts_with(b"HTTP/1.1 200"));
///
/// // Bytes go through the tunnel untouched.
/// client.write_all(b"ping")?;
/// let mut got = [0u8; 4];
/// server.read_exact(&mut got)?;
/// assert_eq!(&got, b"ping");
/// assert_eq!(proxy.connects(), vec![target_addr.to_string()]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ConnectProxy {
    addr: SocketAddr,
    shared: Arc<ProxyShared>,
    acceptor: Mutex<Option<JoinHandle<()>>>,
}

struct ProxyShared {
    stopping: AtomicBool,
    /// Every socket the proxy holds, so shutdown can close them.
    sockets: Mutex<HashMap<u64, TcpStream>>,
    next_id: AtomicU64,
    /// The `CONNECT` targets seen, in order, and a signal for waiters.
    connects: Mutex<Vec<String>>,
    connected: Condvar,
}

impl ProxyShared {
    fn register(&self, stream: &TcpStream) -> Option<u64> {
        let clone = stream.try_clone().ok()?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.sockets.lock().insert(id, clone);
        Some(id)
    }

    fn unregister(&self, id: u64) {
        self.sockets.lock().remove(&id);
    }
}

impl ConnectProxy {
    /// Starts a proxy on `127.0.0.1` on a free port.
    ///
    /// # Errors
    ///
    /// [`CollectorError::Bind`] when no loopback port can be bound,
    /// [`CollectorError::Spawn`] when the acceptor thread cannot start.
    pub fn start() -> Result<ConnectProxy, CollectorError> {
        let bind = |source| CollectorError::Bind { addr: "127.0.0.1:0".into(), source };
        let listener = TcpListener::bind("127.0.0.1:0").map_err(bind)?;
        let addr = listener.local_addr().map_err(bind)?;
        let shared = Arc::new(ProxyShared {
            stopping: AtomicBool::new(false),
            sockets: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            connects: Mutex::new(Vec::new()),
            connected: Condvar::new(),
        });
        let acceptor = {
            let shared = shared.clone();
            thread::Builder::new()
                .name("vigil-proxy-accept".into())
                .spawn(move || accept_loop(&shared, &listener))
                .map_err(|source| CollectorError::Spawn { what: "proxy acceptor", source })?
        };
        log::info!(target: TARGET, "CONNECT proxy listening on {addr}");
        Ok(ConnectProxy { addr, shared, acceptor: Mutex::new(Some(acceptor)) })
    }

    /// The address the proxy listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The proxy as a URL, `http://127.0.0.1:PORT`, as `HTTPS_PROXY` takes it.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The `host:port` of every `CONNECT` request so far, in order.
    pub fn connects(&self) -> Vec<String> {
        self.shared.connects.lock().clone()
    }

    /// Waits until at least `n` `CONNECT` requests arrived, or `timeout`
    /// passed; returns whether they did.
    pub fn wait_for_connects(&self, n: usize, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now().checked_add(timeout);
        let mut connects = self.shared.connects.lock();
        while connects.len() < n {
            match deadline {
                Some(deadline) => {
                    if self.shared.connected.wait_until(&mut connects, deadline).timed_out() {
                        return connects.len() >= n;
                    }
                }
                None => self.shared.connected.wait(&mut connects),
            }
        }
        true
    }

    /// Stops accepting, closes every tunnel and joins all threads. Calling
    /// it again does nothing; dropping the proxy calls it.
    pub fn shutdown(&self) {
        let Some(acceptor) = self.acceptor.lock().take() else {
            return;
        };
        self.shared.stopping.store(true, Ordering::Release);
        // Wake the acceptor with a connection it will drop.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if acceptor.join().is_err() {
            log::error!(target: TARGET, "the proxy's acceptor thread panicked");
        }
    }
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl fmt::Debug for ConnectProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectProxy")
            .field("addr", &self.addr)
            .field("connects", &self.shared.connects.lock().len())
            .finish_non_exhaustive()
    }
}

fn accept_loop(shared: &Arc<ProxyShared>, listener: &TcpListener) {
    let mut handles: Vec<JoinHandle<()>> = Vec::new();
    for accepted in listener.incoming() {
        if shared.stopping.load(Ordering::Acquire) {
            break;
        }
        let Ok(client) = accepted else { continue };
        handles.retain(|h| !h.is_finished());
        let shared2 = shared.clone();
        match thread::Builder::new().name("vigil-proxy-conn".into()).spawn(move || serve(&shared2, client)) {
            Ok(handle) => handles.push(handle),
            Err(e) => log::warn!(target: TARGET, "proxy: cannot spawn a connection thread: {e}"),
        }
    }
    for socket in shared.sockets.lock().values() {
        let _ = socket.shutdown(Shutdown::Both);
    }
    for handle in handles {
        if handle.join().is_err() {
            log::error!(target: TARGET, "a proxy connection thread panicked");
        }
    }
}

/// Reads the request head: bytes up to and including the blank line.
fn read_head(client: &mut TcpStream) -> io::Result<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_HEAD || client.read(&mut byte)? == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "no complete request head"));
        }
        head.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

fn serve(shared: &Arc<ProxyShared>, mut client: TcpStream) {
    let Some(client_id) = shared.register(&client) else { return };
    // Shutdown may have swept the sockets before this one was registered.
    if shared.stopping.load(Ordering::Acquire) {
        shared.unregister(client_id);
        return;
    }
    let head = match read_head(&mut client) {
        Ok(head) => head,
        Err(_) => {
            shared.unregister(client_id);
            return;
        }
    };
    let mut words = head.split_whitespace();
    let (method, target) = (words.next().unwrap_or_default(), words.next().unwrap_or_default().to_string());
    if method != "CONNECT" {
        let _ = client.write_all(b"HTTP/1.1 405 Method Not Allowed\r\nAllow: CONNECT\r\nContent-Length: 0\r\n\r\n");
        shared.unregister(client_id);
        return;
    }
    {
        let mut connects = shared.connects.lock();
        connects.push(target.clone());
        shared.connected.notify_all();
    }
    let upstream = target
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .and_then(|addr| TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).ok());
    let Some(upstream) = upstream else {
        log::info!(target: TARGET, "proxy: cannot reach {target}");
        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
        shared.unregister(client_id);
        return;
    };
    let Some(upstream_id) = shared.register(&upstream) else {
        shared.unregister(client_id);
        return;
    };
    if client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").is_ok() {
        log::debug!(target: TARGET, "proxy: tunnel to {target}");
        tunnel(client, upstream);
    }
    shared.unregister(client_id);
    shared.unregister(upstream_id);
}

/// Forwards bytes both ways until either side closes, then closes both.
fn tunnel(client: TcpStream, upstream: TcpStream) {
    let (Ok(mut client_read), Ok(mut upstream_write)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let (mut upstream_read, mut client_write) = (upstream, client);
    let up = thread::Builder::new().name("vigil-proxy-up".into()).spawn(move || {
        let _ = io::copy(&mut client_read, &mut upstream_write);
        let _ = upstream_write.shutdown(Shutdown::Both);
        let _ = client_read.shutdown(Shutdown::Both);
    });
    let _ = io::copy(&mut upstream_read, &mut client_write);
    let _ = client_write.shutdown(Shutdown::Both);
    let _ = upstream_read.shutdown(Shutdown::Both);
    if let Ok(up) = up {
        let _ = up.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_methods_are_refused_and_dead_targets_get_502() {
        let proxy = ConnectProxy::start().unwrap();
        let mut client = TcpStream::connect(proxy.addr()).unwrap();
        client.write_all(b"GET http://example.invalid/ HTTP/1.1\r\n\r\n").unwrap();
        let mut answer = String::new();
        client.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");

        let dead = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let mut client = TcpStream::connect(proxy.addr()).unwrap();
        write!(client, "CONNECT {dead} HTTP/1.1\r\n\r\n").unwrap();
        let mut answer = String::new();
        client.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
        assert_eq!(proxy.connects(), vec![dead.to_string()]);
        assert!(proxy.wait_for_connects(1, Duration::from_secs(10)));
        proxy.shutdown();
        proxy.shutdown();
    }
}
