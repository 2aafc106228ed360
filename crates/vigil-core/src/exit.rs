//! Why an actor or a supervisor stopped.

use std::fmt;
use std::time::Duration;

/// The lifecycle hook that was running when an incarnation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Hook {
    /// The child spec's factory closure, which builds the actor.
    Factory,
    /// [`Actor::started`](crate::Actor::started).
    Start,
    /// [`Actor::handle`](crate::Actor::handle).
    Handle,
    /// [`Actor::timeout`](crate::Actor::timeout).
    Timeout,
    /// [`Actor::stopped`](crate::Actor::stopped).
    Stopped,
    /// The `Drop` of the actor, or of an error value a hook returned.
    Drop,
    /// The supervisor's own code, or user code it ran on its thread (the
    /// `Drop` of a message or of a child spec's factory, say). The supervisor
    /// stopped its children and reported to its parent like any child.
    Supervisor,
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Hook::Factory => "factory",
            Hook::Start => "start",
            Hook::Handle => "handle",
            Hook::Timeout => "timeout",
            Hook::Stopped => "stopped",
            Hook::Drop => "drop",
            Hook::Supervisor => "supervisor",
        })
    }
}

/// Why an incarnation of a child ended. Every failure reaches the supervisor
/// as one of these values; none of them unwinds into another thread.
///
/// `Normal` and `Shutdown` are *normal* exits (see [`ExitReason::is_normal`]):
/// a [transient](crate::Restart::Transient) child is not restarted after them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ExitReason {
    /// The actor stopped itself with [`Context::stop`](crate::Context::stop).
    Normal,
    /// Its supervisor stopped it (shutdown, a sibling's restart, or the API),
    /// or it stopped itself with [`Context::shutdown`](crate::Context::shutdown)
    /// (OTP's `shutdown` and `{shutdown, Term}` exits). A supervisor that
    /// [shut itself down](crate::SupervisorBuilder::auto_shutdown) exits with it too.
    Shutdown,
    /// The start hook answered "ignore" ([`Context::ignore`](crate::Context::ignore)),
    /// as an OTP child whose start returns `ignore`: the child never ran.
    /// Its supervisor keeps its spec, not running and not restarted (a
    /// temporary child, or one of a dynamic supervisor, is removed), and
    /// [`SupervisorRef::restart_child`](crate::SupervisorRef::restart_child)
    /// can start it again. It is the `last_exit` of such a child; a running
    /// child never exits with it.
    Ignored,
    /// A hook panicked.
    Panicked {
        /// The hook that panicked.
        hook: Hook,
        /// The panic message (the payload if it was a string).
        message: String,
        /// `file:line:column` of the panic, when the panic hook saw it.
        location: Option<String>,
        /// The type of the message being handled, which was dropped.
        message_type: Option<&'static str>,
    },
    /// A hook returned `Err`.
    Failed {
        /// The hook that failed.
        hook: Hook,
        /// The error and its sources, rendered as `error: source: source`.
        error: String,
        /// The type of the message being handled, which was dropped.
        message_type: Option<&'static str>,
    },
    /// The start hook did not return within the child's start timeout.
    /// The thread was abandoned.
    StartTimeout {
        /// The start timeout that passed.
        #[serde(serialize_with = "crate::format::as_millis", rename = "timeout_ms")]
        timeout: Duration,
    },
    /// One hook call (`started`, `handle` or `timeout`) ran longer than the
    /// child's [hang timeout](crate::WorkerSpec::hang_timeout) without a
    /// [heartbeat](crate::Context::heartbeat), or a supervisor's loop
    /// (hook [`Hook::Supervisor`]) past its
    /// [own](crate::SupervisorBuilder::hang_timeout). Its thread was abandoned and
    /// fenced: if the hook ever returns, that thread reads no more messages
    /// and reports nothing. Counts toward the intensity like any failure.
    Hung {
        /// The hook that did not return.
        hook: Hook,
        /// The type of the message being handled, for `handle`.
        message_type: Option<&'static str>,
        /// How long the watchdog saw the hook run without progress (at least
        /// the hang timeout; `elapsed_ms` in JSON).
        #[serde(serialize_with = "crate::format::as_millis", rename = "elapsed_ms")]
        elapsed: Duration,
    },
    /// A hang was detected while more abandoned threads than the system's
    /// [limit](crate::SupervisorBuilder::max_abandoned_threads) were still
    /// running: the supervisor gave up instead of leaking another thread.
    AbandonedLimit {
        /// The path of the supervisor that gave up.
        supervisor: String,
        /// The limit.
        limit: usize,
        /// The path of the child that hung.
        child: String,
        /// That child's exit reason.
        cause: Box<ExitReason>,
    },
    /// A nested supervisor's own loop [hung](crate::SupervisorBuilder::hang_timeout).
    /// Its children still run under it and own their mailboxes, so it cannot
    /// be replaced: its parent stops its other children and ends with this
    /// reason, and so does every supervisor above, up to the root (the
    /// process supervisor, systemd or Kubernetes, restarts the process).
    HungSupervisor {
        /// The path of the supervisor that hung.
        supervisor: String,
        /// Its [`Hung`](ExitReason::Hung) reason.
        cause: Box<ExitReason>,
    },
    /// The OS refused to spawn a thread for the child.
    Spawn {
        /// The I/O error, rendered.
        error: String,
    },
    /// A supervisor's child failed to start, so the supervisor's own start
    /// failed. Children started before it were stopped in reverse order.
    ChildStartFailed {
        /// The path of the child that failed to start.
        child: String,
        /// Why it failed.
        cause: Box<ExitReason>,
    },
    /// A supervisor reached its maximum restart intensity and gave up.
    /// Its parent treats this like any other failure.
    Escalated {
        /// The path of the supervisor that gave up.
        supervisor: String,
        /// Its intensity.
        intensity: u32,
        /// Its period.
        #[serde(serialize_with = "crate::format::as_millis", rename = "period_ms")]
        period: Duration,
        /// The path of the child whose failure broke the limit.
        child: String,
        /// That child's exit reason.
        cause: Box<ExitReason>,
    },
}

impl ExitReason {
    /// Whether this is a normal exit (`Normal` or `Shutdown`).
    ///
    /// # Examples
    ///
    /// ```
    /// use vigil_core::ExitReason;
    /// assert!(ExitReason::Normal.is_normal());
    /// assert!(!ExitReason::StartTimeout { timeout: std::time::Duration::from_secs(1) }.is_normal());
    /// ```
    pub fn is_normal(&self) -> bool {
        matches!(self, ExitReason::Normal | ExitReason::Shutdown)
    }

    /// The chain of failures, outermost first: for an escalation, the
    /// supervisors that gave up and finally the child failure at the bottom.
    pub fn chain(&self) -> Vec<&ExitReason> {
        let mut chain = vec![self];
        let mut current = self;
        while let ExitReason::Escalated { cause, .. }
        | ExitReason::ChildStartFailed { cause, .. }
        | ExitReason::AbandonedLimit { cause, .. }
        | ExitReason::HungSupervisor { cause, .. } = current
        {
            chain.push(cause);
            current = cause;
        }
        chain
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitReason::Normal => f.write_str("normal"),
            ExitReason::Shutdown => f.write_str("shutdown"),
            ExitReason::Ignored => f.write_str("ignored at start"),
            ExitReason::Panicked { hook, message, location, message_type } => {
                f.write_str("panicked")?;
                if let Some(location) = location {
                    write!(f, " at {location}")?;
                }
                write!(f, ": {message} (in {hook}")?;
                if let Some(ty) = message_type {
                    write!(f, ", dropped message of type {ty}")?;
                }
                f.write_str(")")
            }
            ExitReason::Failed { hook, error, message_type } => {
                write!(f, "in the {hook} hook: {error}")?;
                if let Some(ty) = message_type {
                    write!(f, " (dropped message of type {ty})")?;
                }
                Ok(())
            }
            ExitReason::StartTimeout { timeout } => {
                write!(f, "start did not finish within {}; thread abandoned", crate::format::human(*timeout))
            }
            ExitReason::Hung { hook, message_type, elapsed } => {
                write!(f, "hung in {hook}")?;
                if let Some(ty) = message_type {
                    write!(f, " (message {})", short_type(ty))?;
                }
                write!(f, " for {}; thread abandoned", crate::format::human(*elapsed))
            }
            ExitReason::AbandonedLimit { supervisor, limit, child, cause } => write!(
                f,
                "{supervisor} gave up: more than {limit} abandoned threads still running after {child} exited: {cause}"
            ),
            ExitReason::HungSupervisor { supervisor, cause } => {
                write!(f, "supervisor {supervisor} {cause}; not replaced while its children run")
            }
            ExitReason::Spawn { error } => write!(f, "could not spawn thread: {error}"),
            ExitReason::ChildStartFailed { child, cause } => write!(f, "child {child} failed to start: {cause}"),
            ExitReason::Escalated { supervisor, intensity, period, child, cause } => write!(
                f,
                "{supervisor} reached max restart intensity ({intensity} in {}) after {child} exited: {cause}",
                crate::format::human(*period)
            ),
        }
    }
}

/// A type name without its module path: `app::db::QueryMsg` reads
/// `QueryMsg`. Generic arguments keep theirs.
pub(crate) fn short_type(ty: &str) -> &str {
    let head = ty.split('<').next().unwrap_or(ty);
    match head.rfind("::") {
        Some(i) => &ty[i + 2..],
        None => ty,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hang_reads_as_the_hook_the_short_message_type_and_the_time() {
        assert_eq!(short_type("app::db::QueryMsg"), "QueryMsg");
        assert_eq!(short_type("Option<app::Msg>"), "Option<app::Msg>");
        let hung = ExitReason::Hung {
            hook: Hook::Handle,
            message_type: Some("app::db::QueryMsg"),
            elapsed: Duration::from_millis(1500),
        };
        assert_eq!(hung.to_string(), "hung in handle (message QueryMsg) for 1.5s; thread abandoned");
        let limit = ExitReason::AbandonedLimit {
            supervisor: "root".into(),
            limit: 2,
            child: "root/db".into(),
            cause: Box::new(hung.clone()),
        };
        assert_eq!(limit.chain(), vec![&limit, &hung]);
        assert!(limit.to_string().starts_with("root gave up: more than 2 abandoned threads still running"));
        let json = serde_json::to_string(&hung).unwrap();
        assert_eq!(json, r#"{"kind":"hung","hook":"handle","message_type":"app::db::QueryMsg","elapsed_ms":1500}"#);
    }
}
