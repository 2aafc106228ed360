//! The restart policy as pure values: which exits restart a child (OTP's
//! restart types) and which siblings restart with it (OTP's strategies).
//!
//! The rule lives here once. A supervisor applies it to every exit it
//! handles, and a runner applies the same rule before it restarts its child
//! in place; neither writes its own.

use std::ops::Range;

use crate::exit::ExitReason;

/// When a supervisor restarts a child that exited, as OTP's restart types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Restart {
    /// Restarted on any exit, normal or not. The default.
    #[default]
    Permanent,
    /// Restarted only after an abnormal exit (not [`Normal`](crate::ExitReason::Normal)
    /// or [`Shutdown`](crate::ExitReason::Shutdown)).
    Transient,
    /// Never restarted; removed from the supervisor when it exits. Its exits
    /// never count toward the restart intensity.
    Temporary,
}

/// Which children a supervisor restarts when one of them fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Restart only the child that exited. The default.
    #[default]
    OneForOne,
    /// Stop all other children (in reverse start order), then restart all of
    /// them in start order.
    OneForAll,
    /// Stop the children started after the one that exited (in reverse
    /// order), then restart it and them in start order.
    RestForOne,
}

/// When a supervisor shuts itself down because its
/// [significant](crate::ChildSpec::significant) children ended, as OTP's
/// `auto_shutdown` supervisor flag (OTP 24).
///
/// A significant child *ends* when it exits and is not restarted: a
/// transient one after a normal exit ([`Normal`](crate::ExitReason::Normal)
/// or [`Shutdown`](crate::ExitReason::Shutdown)), a temporary one after any
/// exit. A transient child restarted after a failure has not ended. Stopping
/// a child through [`SupervisorRef::terminate_child`](crate::SupervisorRef::terminate_child),
/// stopping it as a sibling of a restarting child, or a start that answers
/// [ignore](crate::Context::ignore), is not ending it either, as OTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AutoShutdown {
    /// Never: the default. Significant children are refused with
    /// [`ConfigError::SignificantWithoutAutoShutdown`](crate::ConfigError::SignificantWithoutAutoShutdown).
    #[default]
    Never,
    /// When any significant child ends.
    AnySignificant,
    /// When a significant child ends and no other significant child is
    /// left running or waiting for its restart.
    AllSignificant,
}

/// What a supervisor does with a child after one of its exits, before the
/// restart intensity is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Restart it (and its strategy's group), if the intensity allows.
    Restart,
    /// It stopped for good: keep its spec, listed as stopped, so that
    /// `restart_child` can start it again.
    Keep,
    /// It stopped for good and its spec goes: a temporary child, or any child
    /// of a dynamic supervisor that is not restarted.
    Remove,
}

/// The decision for one exit of a child with restart type `restart`, as OTP's
/// `supervisor:do_restart/3`: a permanent child always restarts, a transient
/// one unless its exit is normal, a temporary one never. `dynamic` is a
/// dynamic supervisor's (OTP's `simple_one_for_one`), which forgets the
/// children that it does not restart.
pub(crate) fn decide(restart: Restart, reason: &ExitReason, dynamic: bool) -> Decision {
    match restart {
        Restart::Permanent => Decision::Restart,
        Restart::Transient if !reason.is_normal() => Decision::Restart,
        Restart::Temporary => Decision::Remove,
        Restart::Transient if dynamic => Decision::Remove,
        Restart::Transient => Decision::Keep,
    }
}

/// The positions, in start order, of the children that restart when the
/// child at `failed` of `count` children restarts.
pub(crate) fn group(strategy: Strategy, failed: usize, count: usize) -> Range<usize> {
    match strategy {
        Strategy::OneForOne => failed..failed + 1,
        Strategy::OneForAll => 0..count,
        Strategy::RestForOne => failed..count,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ABNORMAL: ExitReason = ExitReason::Spawn { error: String::new() };

    #[test]
    fn permanent_children_restart_on_every_exit() {
        for reason in [ExitReason::Normal, ExitReason::Shutdown, ABNORMAL] {
            assert_eq!(decide(Restart::Permanent, &reason, false), Decision::Restart);
            assert_eq!(decide(Restart::Permanent, &reason, true), Decision::Restart);
        }
    }

    #[test]
    fn transient_children_restart_only_after_an_abnormal_exit() {
        assert_eq!(decide(Restart::Transient, &ABNORMAL, false), Decision::Restart);
        for reason in [ExitReason::Normal, ExitReason::Shutdown] {
            assert_eq!(decide(Restart::Transient, &reason, false), Decision::Keep);
            assert_eq!(decide(Restart::Transient, &reason, true), Decision::Remove);
        }
    }

    #[test]
    fn temporary_children_are_removed_on_every_exit() {
        for reason in [ExitReason::Normal, ExitReason::Shutdown, ABNORMAL] {
            assert_eq!(decide(Restart::Temporary, &reason, false), Decision::Remove);
        }
    }

    #[test]
    fn strategies_pick_their_group_in_start_order() {
        assert_eq!(group(Strategy::OneForOne, 1, 4), 1..2);
        assert_eq!(group(Strategy::OneForAll, 1, 4), 0..4);
        assert_eq!(group(Strategy::RestForOne, 1, 4), 1..4);
        assert_eq!(group(Strategy::RestForOne, 3, 4), 3..4);
    }
}
