//! The acceptor thread: registers each connection (so certificate changes
//! and shutdown can reach it), enforces `max_connections`, and gives it a
//! thread of its own.

use std::net::{Shutdown, TcpListener};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::connection::{Conn, serve_connection};
use super::{ConnEntry, Shared};
use crate::TARGET;

pub(super) fn accept_loop(shared: &Arc<Shared>, listener: TcpListener) {
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
