//! systemd's side of the `Type=notify` protocol, for tests: a datagram
//! socket that records what a service sends to `NOTIFY_SOCKET`.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// Listens on a datagram socket path and keeps every datagram received,
/// one string each (lines such as `READY=1`, `STATUS=…`). Pass the path to
/// the notifier, or as `NOTIFY_SOCKET` to a child process; never set it in
/// the test binary's own environment.
///
/// ```
/// let dir = vigil_testkit::TempDir::new("notify-doc");
/// let path = dir.path("notify.sock");
/// let listener = vigil_testkit::NotifyListener::bind(&path);
/// std::os::unix::net::UnixDatagram::unbound().unwrap().send_to(b"READY=1\n", &path).unwrap();
/// vigil_testkit::wait_until("the datagram", || listener.first("READY=1").is_some());
/// assert_eq!(listener.finish(), vec!["READY=1\n".to_owned()]);
/// ```
#[derive(Debug)]
pub struct NotifyListener {
    datagrams: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl NotifyListener {
    /// Binds `path` and starts recording.
    ///
    /// # Panics
    ///
    /// If the socket cannot be bound.
    pub fn bind(path: &Path) -> NotifyListener {
        let socket = UnixDatagram::bind(path).expect("bind the notify socket");
        socket.set_read_timeout(Some(Duration::from_millis(50))).expect("set a read timeout");
        let datagrams = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen, done) = (Arc::clone(&datagrams), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !done.load(Ordering::Relaxed) {
                if let Ok(n) = socket.recv(&mut buf) {
                    seen.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(String::from_utf8_lossy(&buf[..n]).into_owned());
                }
            }
        });
        NotifyListener { datagrams, stop, thread: Some(thread) }
    }

    /// Every datagram received so far.
    pub fn datagrams(&self) -> Vec<String> {
        self.datagrams.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The index of the first datagram with the line `line`.
    pub fn first(&self, line: &str) -> Option<usize> {
        first_line(&self.datagrams(), line)
    }

    /// Stops listening and returns every datagram received.
    pub fn finish(mut self) -> Vec<String> {
        self.halt();
        self.datagrams()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for NotifyListener {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Whether `datagram` has the line `line`.
pub fn has_line(datagram: &str, line: &str) -> bool {
    datagram.lines().any(|l| l == line)
}

/// The index of the first of `datagrams` with the line `line`.
pub fn first_line(datagrams: &[String], line: &str) -> Option<usize> {
    datagrams.iter().position(|d| has_line(d, line))
}

/// How many of `datagrams[from..]` have the line `line`.
pub fn count_lines_after(datagrams: &[String], from: usize, line: &str) -> usize {
    datagrams.get(from..).unwrap_or_default().iter().filter(|d| has_line(d, line)).count()
}
