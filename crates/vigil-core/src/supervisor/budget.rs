//! The shutdown budget: how long a tree takes, at worst, to stop in order,
//! to compare with the time an orchestrator gives a process to stop
//! (Kubernetes' `terminationGracePeriodSeconds`, systemd's `TimeoutStopSec`).
//!
//! A supervisor stops its children one at a time, in reverse start order,
//! each within its shutdown timeout, after which the child is abandoned and
//! the next one is stopped. So the worst case is a sum:
//!
//! - a worker costs its shutdown timeout (`Duration::MAX`: unbounded);
//! - a nested supervisor costs its subtree's worst case, capped by its own
//!   shutdown timeout when that is finite (its parent abandons it then). A
//!   supervisor's default timeout is infinite, as OTP's: it then costs its
//!   subtree's sum, which is its real worst case, not infinity;
//! - each child stopped also costs [`SHUTDOWN_SLACK_PER_CHILD`], for the
//!   wake-up, the report and the join of its thread.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::builder::SupervisorBuilder;
use crate::error::ConfigError;
use crate::format::human;
use crate::spec::Body;

/// What each child stopped adds to a [`ShutdownBudget`] on top of its
/// timeout: waking it, receiving its exit report and joining its thread. A
/// few microseconds on an idle machine; 2 ms leaves room for a loaded one.
pub const SHUTDOWN_SLACK_PER_CHILD: Duration = Duration::from_millis(2);

/// The worst-case time a tree takes to shut down in order: see
/// [`System::shutdown_budget`](crate::System::shutdown_budget) and
/// [`SupervisorBuilder::shutdown_budget`]. It may gain fields: read them by
/// name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct ShutdownBudget {
    /// The worst case, slack included; `None` when a child waits forever
    /// (a worker with a `Duration::MAX` shutdown timeout, not capped by a
    /// supervisor above it). `total_ms` in JSON, `null` for unbounded.
    #[serde(serialize_with = "crate::format::as_millis_opt", rename = "total_ms")]
    pub total: Option<Duration>,
    /// What each child contributes, largest first (unbounded first): its
    /// path and its shutdown timeout. A nested supervisor appears in place
    /// of its children when its own timeout caps them. The contributions
    /// and the slack add up to the total.
    pub children: Vec<(String, Option<Duration>)>,
    /// [`SHUTDOWN_SLACK_PER_CHILD`] times the children stopped.
    #[serde(serialize_with = "crate::format::as_millis", rename = "slack_ms")]
    pub slack: Duration,
}

impl fmt::Display for ShutdownBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.total {
            Some(total) => write!(f, "worst case {}", human(total))?,
            None => f.write_str("unbounded")?,
        }
        f.write_str(" (")?;
        for (path, timeout) in &self.children {
            write!(f, "{path} {}, ", timeout.map_or_else(|| "forever".to_owned(), human))?;
        }
        write!(f, "slack {})", human(self.slack))
    }
}

/// The contributions of one subtree, in stop order, and how many children
/// they stop.
#[derive(Default)]
struct Plan {
    entries: Vec<(String, Option<Duration>)>,
    stopped: u32,
}

impl Plan {
    fn slack(&self) -> Duration {
        SHUTDOWN_SLACK_PER_CHILD.saturating_mul(self.stopped)
    }

    fn total(&self) -> Option<Duration> {
        sum(self.entries.iter().map(|(_, timeout)| *timeout)).map(|sum| sum.saturating_add(self.slack()))
    }

    fn into_budget(self) -> ShutdownBudget {
        let (total, slack) = (self.total(), self.slack());
        let mut children = self.entries;
        // Stable: equal contributions keep their stop order.
        children.sort_by_key(|(_, timeout)| std::cmp::Reverse(timeout.unwrap_or(Duration::MAX)));
        ShutdownBudget { total, children, slack }
    }
}

/// A saturating sum; `None` if any term is unbounded.
fn sum(mut terms: impl Iterator<Item = Option<Duration>>) -> Option<Duration> {
    terms.try_fold(Duration::ZERO, |acc, term| term.map(|t| acc.saturating_add(t)))
}

/// A child as the budget sees it: its path, its shutdown timeout, its body.
type Member = (String, Duration, Arc<dyn Body>);

/// The plan of `builder`'s subtree, its path `path`. `live` reads the
/// children a running supervisor has now (dynamic ones included); otherwise,
/// or when it is not running, the children of its spec.
fn plan(builder: &SupervisorBuilder, path: &str, live: bool) -> Plan {
    let running: Option<Vec<Member>> = live
        .then(|| {
            let node = builder.node.inner.lock();
            node.running.then(|| {
                node.rows.iter().map(|row| (row.path.clone(), row.common.shutdown, Arc::clone(&row.body))).collect()
            })
        })
        .flatten();
    let members = running.unwrap_or_else(|| {
        builder
            .children
            .iter()
            .map(|c| (format!("{path}/{}", c.common.id), c.common.shutdown, Arc::clone(&c.body)))
            .collect()
    });
    let mut out = Plan::default();
    for (path, shutdown, body) in members.into_iter().rev() {
        out.stopped = out.stopped.saturating_add(1);
        let timeout = (shutdown != Duration::MAX).then_some(shutdown);
        let Some(nested) = body.as_any().downcast_ref::<SupervisorBuilder>() else {
            out.entries.push((path, timeout));
            continue;
        };
        let subtree = plan(nested, &path, live);
        match timeout {
            Some(cap) if subtree.total().is_none_or(|total| total > cap) => out.entries.push((path, Some(cap))),
            _ => {
                out.stopped = out.stopped.saturating_add(subtree.stopped);
                out.entries.extend(subtree.entries);
            }
        }
    }
    out
}

/// The budget of a running tree, its root `root`.
pub(crate) fn live(root: &SupervisorBuilder) -> ShutdownBudget {
    plan(root, &root.id, true).into_budget()
}

/// Refuses `builder` at `path` if its worst case exceeds `grace_period`,
/// naming the largest contributions until the rest fits.
pub(super) fn check(builder: &SupervisorBuilder, path: &str, grace_period: Duration) -> Result<(), ConfigError> {
    let budget = plan(builder, path, false).into_budget();
    if budget.total.is_some_and(|total| total <= grace_period) {
        return Ok(());
    }
    let mut over = Vec::new();
    let mut rest = budget.children.iter();
    loop {
        let remaining = sum(rest.clone().map(|(_, timeout)| *timeout)).map(|sum| sum.saturating_add(budget.slack));
        if remaining.is_some_and(|remaining| remaining <= grace_period) {
            break;
        }
        match rest.next() {
            Some((path, _)) => over.push(path.clone()),
            None => break,
        }
    }
    Err(ConfigError::ShutdownBudget { supervisor: path.to_owned(), budget: budget.total, grace_period, over })
}

impl SupervisorBuilder {
    /// The worst-case time this tree takes to shut down in order, from its
    /// spec: every child listed, as at start. (A running tree's
    /// [`System::shutdown_budget`](crate::System::shutdown_budget) also
    /// counts the children added since.) See [`ShutdownBudget`] for how it
    /// is counted; a worker with a `Duration::MAX` shutdown timeout makes it
    /// unbounded unless a supervisor with a finite timeout caps it.
    ///
    /// # Examples
    ///
    /// ```
    /// # use vigil_core::*;
    /// # use std::time::Duration;
    /// # struct W; impl Actor for W { type Msg = (); fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> { Ok(()) } }
    /// let pool = Supervisor::builder()
    ///     .child(ChildSpec::worker("a", || W).shutdown(Duration::from_secs(2)))
    ///     .child(ChildSpec::worker("b", || W).shutdown(Duration::from_secs(3)));
    /// let tree = Supervisor::builder()
    ///     .child(ChildSpec::worker("api", || W).shutdown(Duration::from_secs(1)))
    ///     .child(ChildSpec::supervisor("pool", pool)); // infinite timeout: costs its children's sum
    /// let budget = tree.shutdown_budget();
    /// let slack = SHUTDOWN_SLACK_PER_CHILD * 4;
    /// assert_eq!(budget.total, Some(Duration::from_secs(6) + slack));
    /// assert_eq!(budget.children[0], ("root/pool/b".to_owned(), Some(Duration::from_secs(3))));
    /// ```
    pub fn shutdown_budget(&self) -> ShutdownBudget {
        plan(self, &self.id, false).into_budget()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actor::{Actor, Context};
    use crate::error::BoxError;
    use crate::spec::ChildSpec;
    use crate::supervisor::Supervisor;

    struct W;
    impl Actor for W {
        type Msg = ();
        fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> {
            Ok(())
        }
    }

    fn worker(id: &str, ms: u64) -> ChildSpec {
        ChildSpec::worker(id, || W).shutdown(Duration::from_millis(ms)).into()
    }

    const SLACK: Duration = SHUTDOWN_SLACK_PER_CHILD;

    #[test]
    fn a_finite_supervisor_timeout_caps_its_subtree() {
        let inner = Supervisor::builder().child(worker("a", 300)).child(worker("b", 300));
        let tree = Supervisor::builder()
            .child(worker("x", 100))
            .child(ChildSpec::supervisor("inner", inner).shutdown(Duration::from_millis(200)));
        let budget = tree.shutdown_budget();
        assert_eq!(
            budget.children,
            [
                ("root/inner".to_owned(), Some(Duration::from_millis(200))),
                ("root/x".to_owned(), Some(Duration::from_millis(100)))
            ]
        );
        assert_eq!(budget.total, Some(Duration::from_millis(300) + SLACK * 2));
    }

    #[test]
    fn an_infinite_worker_is_unbounded_unless_a_supervisor_caps_it() {
        let forever = || {
            Supervisor::builder().child(worker("w", 10)).child(ChildSpec::worker("stuck", || W).shutdown(Duration::MAX))
        };
        let open = Supervisor::builder().child(ChildSpec::supervisor("s", forever()));
        let budget = open.shutdown_budget();
        assert_eq!(budget.total, None);
        assert_eq!(budget.children[0], ("root/s/stuck".to_owned(), None));
        let capped =
            Supervisor::builder().child(ChildSpec::supervisor("s", forever()).shutdown(Duration::from_secs(1)));
        assert_eq!(capped.shutdown_budget().total, Some(Duration::from_secs(1) + SLACK));
    }

    #[test]
    fn sums_saturate_instead_of_overflowing() {
        let huge = Duration::MAX - Duration::from_secs(1);
        let tree = Supervisor::builder()
            .child(ChildSpec::worker("a", || W).shutdown(huge))
            .child(ChildSpec::worker("b", || W).shutdown(huge));
        assert_eq!(tree.shutdown_budget().total, Some(Duration::MAX));
    }

    #[test]
    fn the_check_names_the_largest_contributions_until_the_rest_fits() {
        let tree = Supervisor::builder().child(worker("a", 4000)).child(worker("b", 3000)).child(worker("c", 1000));
        let refused = check(&tree, "root", Duration::from_secs(5));
        let Err(ConfigError::ShutdownBudget { over, budget, .. }) = refused else { panic!("{refused:?}") };
        assert_eq!(over, ["root/a"]);
        assert_eq!(budget, Some(Duration::from_secs(8) + SLACK * 3));
        assert_eq!(check(&tree, "root", Duration::from_secs(9)), Ok(()));
        let stuck =
            Supervisor::builder().child(worker("a", 10)).child(ChildSpec::worker("s", || W).shutdown(Duration::MAX));
        let Err(ConfigError::ShutdownBudget { over, budget: None, .. }) = check(&stuck, "root", Duration::from_secs(5))
        else {
            panic!("an unbounded tree fits no grace period")
        };
        assert_eq!(over, ["root/s"]);
    }
}
