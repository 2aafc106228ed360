//! The wait-for graph of [`Addr::call`](crate::Addr::call): which actor is
//! blocked in a call to which. Only calls made from an actor's hook are
//! edges (nothing waits for a thread that is not an actor), and only `call`
//! makes them: `tell` never waits for a reply.
//!
//! An actor waits for at most one other at a time, so the graph is a map
//! from caller to callee, and a new edge closes a cycle exactly when the
//! chain from the callee leads back to the caller. The check and the insert
//! happen under one lock, so of two calls that would close a cycle together,
//! the second fails.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

use parking_lot::Mutex;

/// A caller's edge: the mailbox it waits for, and its own path.
struct Edge {
    to: usize,
    path: Arc<str>,
    /// Tells this call's edge from a later one of the same actor (after a
    /// hang, an abandoned thread may still wait in a call of its own).
    token: u64,
}

static GRAPH: LazyLock<Mutex<HashMap<usize, Edge>>> = LazyLock::new(|| Mutex::new(HashMap::new()));
static TOKENS: AtomicU64 = AtomicU64::new(1);

/// An edge of the graph, removed when dropped.
pub(crate) struct Waiting {
    from: usize,
    token: u64,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let mut graph = GRAPH.lock();
        if graph.get(&self.from).is_some_and(|edge| edge.token == self.token) {
            graph.remove(&self.from);
        }
    }
}

/// Records that the actor `from` (at `path`) waits for the actor `to`, or
/// returns the cycle that edge would close: the paths of every actor in it,
/// starting with `from`, each waiting for the next and the last for `from`.
pub(crate) fn wait(from: usize, path: &Arc<str>, to: usize) -> Result<Waiting, Vec<String>> {
    let mut graph = GRAPH.lock();
    let mut cycle = vec![path.to_string()];
    let mut next = to;
    // Every edge was checked when made, so a chain that does not come back
    // to `from` ends; the bound guards against a bug all the same.
    for _ in 0..=graph.len() {
        if next == from {
            return Err(cycle);
        }
        match graph.get(&next) {
            Some(edge) => {
                cycle.push(edge.path.to_string());
                next = edge.to;
            }
            None => break,
        }
    }
    let token = TOKENS.fetch_add(1, Ordering::Relaxed);
    graph.insert(from, Edge { to, path: Arc::clone(path), token });
    Ok(Waiting { from, token })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> Arc<str> {
        p.into()
    }

    // Ids far from any real mailbox address, distinct per test.
    #[test]
    fn a_chain_back_to_the_caller_is_a_cycle() {
        let (a, b, c) = (1_001, 1_002, 1_003);
        let ab = wait(a, &path("a"), b).unwrap();
        let bc = wait(b, &path("b"), c).unwrap();
        assert_eq!(wait(c, &path("c"), a).err(), Some(vec!["c".into(), "a".into(), "b".into()]));
        drop(ab);
        let ca = wait(c, &path("c"), a).expect("the chain is broken once a's call returns");
        drop((bc, ca));
    }

    #[test]
    fn a_call_to_self_is_a_cycle_of_one() {
        assert_eq!(wait(2_001, &path("me"), 2_001).err(), Some(vec!["me".to_owned()]));
    }

    #[test]
    fn a_later_edge_of_the_same_actor_survives_the_earlier_ones_drop() {
        let (a, b, c) = (3_001, 3_002, 3_003);
        let old = wait(a, &path("a"), b).unwrap();
        let new = wait(a, &path("a"), c).unwrap();
        drop(old);
        assert!(wait(c, &path("c"), a).is_err(), "a still waits for c");
        drop(new);
    }
}
