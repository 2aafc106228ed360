//! Runner threads: one OS thread per child, reused across restarts.
//!
//! A runner waits for a [`Cmd::Start`], runs one incarnation of its child to
//! the end, reports the exit reason to the supervisor, and waits again. A
//! restart therefore costs no thread spawn. A runner whose incarnation did
//! not stop in time is abandoned: the supervisor drops its command channel and
//! spawns a fresh runner for the next start; the old thread ends on its own
//! whenever its hook returns.

use std::cell::RefCell;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};

use crate::actor::{Actor, Context};
use crate::addr::{self, CallRequest, Envelope, Mailbox};
use crate::error::BoxError;
use crate::exit::{ExitReason, Hook};
use crate::intensity::RestartWindow;
use crate::link::{Link, Parent};
use crate::panic;
use crate::restart::{Decision, Restart, decide};
use crate::spin::{Pace, Spinner};
use crate::watchdog::Pulse;

/// A command from the supervisor to a runner.
pub(crate) enum Cmd {
    Start { generation: u64, incarnation: u64, stop: Arc<AtomicBool>, fast: Option<FastRestart> },
    Quit,
}

/// Lets a runner restart its child in place, without a round trip through
/// the supervisor, when the outcome is already certain: a one-for-one
/// supervisor, no backoff, and a restart the intensity allows. The runner
/// records the restart in the supervisor's own window, so the rule is the
/// same; the supervisor then logs and counts it from a `Restarted` report.
#[derive(Clone)]
pub(crate) struct FastRestart {
    pub(crate) window: Arc<parking_lot::Mutex<RestartWindow>>,
    /// Set once the supervisor is terminating: it restarts nothing then.
    pub(crate) terminating: Arc<AtomicBool>,
    pub(crate) restart: Restart,
}

impl FastRestart {
    /// Records the restart and returns its count in the window, or `None`
    /// when the supervisor must decide (no restart wanted, a stop was
    /// requested, or the intensity would be exceeded).
    fn restart_in_place(&self, reason: &ExitReason, stop: &AtomicBool) -> Option<u32> {
        // Whether the supervisor is dynamic only changes what becomes of a
        // child that is not restarted, which is the supervisor's to do.
        // A supervisor that ended because one below it hung is never
        // restarted: its supervisor gives up (see `Sup::on_exit`).
        let wanted = decide(self.restart, reason, false) == Decision::Restart
            && !matches!(reason, ExitReason::HungSupervisor { .. });
        if !wanted || stop.load(Ordering::Relaxed) || self.terminating.load(Ordering::Acquire) {
            return None;
        }
        let mut window = self.window.lock();
        // Checked again under the lock, which `Sup::stop_all` takes after
        // setting the flag: no in-place restart slips past a terminating
        // supervisor.
        if self.terminating.load(Ordering::Acquire) {
            return None;
        }
        window.admit(Instant::now())
    }
}

/// What a runner thread's current incarnation is doing, for refusing
/// requests to its own supervisor that would wait for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Not inside an incarnation.
    Idle,
    /// In the factory or `started`: the supervisor waits for the start.
    Starting,
    /// In `handle` or `timeout`.
    Serving,
    /// In `stopped` or the actor's drop.
    Stopping,
}

/// Who the current runner thread is, as seen by [`caller`].
struct Me {
    parent: Arc<dyn Parent>,
    key: u64,
    path: Arc<str>,
    phase: Phase,
    stop: Option<Arc<AtomicBool>>,
}

thread_local! {
    static ME: RefCell<Option<Me>> = const { RefCell::new(None) };
}

fn set_phase(phase: Phase, stop: Option<&Arc<AtomicBool>>) {
    ME.with(|me| {
        if let Some(me) = me.borrow_mut().as_mut() {
            me.phase = phase;
            if let Some(stop) = stop {
                me.stop = Some(Arc::clone(stop));
            }
        }
    });
}

/// A request from a child of the supervisor behind `inbox`, made on the
/// child's own runner thread.
pub(crate) enum Caller {
    /// Not a child of that supervisor (or not a runner thread at all).
    Other,
    /// A child in `handle` or `timeout`, or one that stopped by itself: the
    /// supervisor can answer, and answers a request about the caller itself
    /// before it waits for the caller to stop.
    Child(u64),
    /// A child its supervisor is waiting for: answering would deadlock.
    Awaited(Arc<str>),
}

/// Classifies the current thread as a caller of the supervisor `parent`.
pub(crate) fn caller<P: ?Sized>(parent: &Arc<P>) -> Caller {
    ME.with(|me| match me.borrow().as_ref() {
        Some(me) if std::ptr::addr_eq(Arc::as_ptr(&me.parent), Arc::as_ptr(parent)) => {
            // Asked to stop, the caller is being waited for (or was given
            // up on): the supervisor would answer only after the caller ends.
            let stopping = me.stop.as_ref().is_some_and(|stop| stop.load(Ordering::Relaxed));
            match me.phase {
                Phase::Starting => Caller::Awaited(Arc::clone(&me.path)),
                _ if stopping => Caller::Awaited(Arc::clone(&me.path)),
                _ => Caller::Child(me.key),
            }
        }
        _ => Caller::Other,
    })
}

/// One incarnation's worth of work: a worker's actor or a supervisor.
pub(crate) trait Incarnate: Send + 'static {
    /// Runs one incarnation. Calls `link.started(generation)` once started,
    /// and returns why it ended and whether it had started.
    fn run(&mut self, link: &Link, generation: u64, incarnation: u64, stop: &AtomicBool) -> (ExitReason, bool);
}

/// The supervisor's handle on a runner thread.
pub(crate) struct Runner {
    cmds: Sender<Cmd>,
    thread: Option<JoinHandle<()>>,
}

impl Runner {
    pub(crate) fn spawn(body: Box<dyn Incarnate>, link: Link, stack_size: Option<usize>) -> io::Result<Runner> {
        let (cmds, commands) = crossbeam_channel::unbounded();
        let mut builder = std::thread::Builder::new().name(thread_name(&link.path));
        if let Some(size) = stack_size {
            builder = builder.stack_size(size);
        }
        let thread = builder.spawn(move || run_loop(body, link, commands))?;
        Ok(Runner { cmds, thread: Some(thread) })
    }

    /// Tells the runner to start an incarnation. False if the thread is gone.
    pub(crate) fn start(
        &self,
        generation: u64,
        incarnation: u64,
        stop: Arc<AtomicBool>,
        fast: Option<FastRestart>,
    ) -> bool {
        self.cmds.send(Cmd::Start { generation, incarnation, stop, fast }).is_ok()
    }

    /// Asks the runner's thread to end once its current incarnation (if any)
    /// has ended and been reported. Does not wait.
    pub(crate) fn request_quit(&self) {
        let _ = self.cmds.send(Cmd::Quit);
    }

    /// Ends an idle runner's thread and waits for it.
    pub(crate) fn quit(mut self) {
        self.request_quit();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    /// Leaves a runner whose incarnation did not stop in time. Its thread ends
    /// by itself once the incarnation returns, because the command channel
    /// is gone. Gives back the thread's handle, to tell when it has ended.
    pub(crate) fn abandon(mut self) -> Option<JoinHandle<()>> {
        self.thread.take()
    }
}

/// Thread names are limited to 15 bytes on Linux; keep the end of the path,
/// which is the most specific part.
fn thread_name(path: &str) -> String {
    let tail = path.rsplit('/').next().unwrap_or(path);
    let mut name = String::from("vigil:");
    name.extend(tail.chars().take(9));
    name
}

fn run_loop(mut body: Box<dyn Incarnate>, link: Link, commands: Receiver<Cmd>) {
    panic::mark_runner_thread();
    ME.with(|me| {
        *me.borrow_mut() = Some(Me {
            parent: Arc::clone(&link.parent),
            key: link.key,
            path: Arc::clone(&link.path),
            phase: Phase::Idle,
            stop: None,
        });
    });
    while let Ok(Cmd::Start { generation, mut incarnation, stop, fast }) = commands.recv() {
        if let Some(pulse) = &link.pulse {
            pulse.set_generation(generation);
        }
        loop {
            set_phase(Phase::Starting, Some(&stop));
            // The last line of defence: whatever escapes an incarnation (a
            // bug in vigil itself) still reaches the supervisor as a value.
            let outcome = catch_unwind(AssertUnwindSafe(|| body.run(&link, generation, incarnation, &stop)));
            set_phase(Phase::Idle, None);
            if link.fenced() {
                // Declared hung, then returned: the replacement already runs
                // and the watchdog reported for this thread. Exit quietly.
                drop(outcome);
                link.bus.late_return();
                return;
            }
            let (reason, had_started) = outcome.unwrap_or_else(|payload| {
                log::error!(target: "vigil", "{}: a runner panicked outside any hook", link.path);
                (panic::panicked(Hook::Supervisor, payload, None), false)
            });
            link.flush_restart(generation);
            // A failed start is the supervisor's to judge: it fails a tree's
            // start, and counts as a failed restart otherwise.
            let fast = fast.as_ref().filter(|_| had_started);
            if let Some(count) = fast.and_then(|fast| fast.restart_in_place(&reason, &stop)) {
                *link.restarted.borrow_mut() = Some((reason, count));
                incarnation += 1;
                continue;
            }
            if !link.exited(generation, reason) {
                return;
            }
            break;
        }
    }
}

pub(crate) type Factory<A> = Arc<dyn Fn() -> Result<A, BoxError> + Send + Sync>;

/// A worker's incarnation: build the actor, start it, run its message loop.
pub(crate) struct WorkerBody<A: Actor> {
    pub(crate) factory: Factory<A>,
    pub(crate) mailbox: Arc<Mailbox<A::Msg>>,
}

/// What the start hook set on its context, carried into the message loop.
struct Settings {
    receive_timeout: Option<Duration>,
    stop: Option<ExitReason>,
}

impl<A: Actor> Incarnate for WorkerBody<A> {
    fn run(&mut self, link: &Link, generation: u64, incarnation: u64, stop: &AtomicBool) -> (ExitReason, bool) {
        let _serving = addr::Serving::enter(&self.mailbox.addr, &link.path);
        match self.start(link, generation, incarnation, stop) {
            Ok((mut actor, settings)) => {
                let reason = self.serve(&mut actor, settings, link, incarnation, stop);
                if link.fenced() {
                    // Nothing of a fenced incarnation is reported, even a
                    // panic in its drop.
                    let _ = panic::catch(Hook::Drop, move || drop(actor));
                    return (reason, true);
                }
                (drop_actor(actor, reason, &link.path), true)
            }
            Err(reason) => (reason, false),
        }
    }
}

/// Drops an incarnation's actor under `catch_unwind`. A panic in its `Drop`
/// becomes the exit reason after a normal exit, and is logged beside an
/// abnormal one, as a panic in `stopped` is.
fn drop_actor<A>(actor: A, reason: ExitReason, path: &str) -> ExitReason {
    set_phase(Phase::Stopping, None);
    match panic::catch(Hook::Drop, move || drop(actor)) {
        Ok(()) => reason,
        Err(dropped) if reason.is_normal() => dropped,
        Err(dropped) => {
            log::warn!(target: "vigil", "{path}: {dropped} after {reason}");
            reason
        }
    }
}

impl<A: Actor> WorkerBody<A> {
    /// Builds the actor and runs its start hook.
    fn start(
        &self,
        link: &Link,
        generation: u64,
        incarnation: u64,
        stop: &AtomicBool,
    ) -> Result<(A, Settings), ExitReason> {
        let factory = &self.factory;
        let mut actor = match catch_unwind(AssertUnwindSafe(|| factory())) {
            Ok(Ok(actor)) => actor,
            Ok(Err(error)) => return Err(panic::failed(Hook::Factory, error, None)),
            Err(payload) => return Err(panic::panicked(Hook::Factory, payload, None)),
        };
        let mut ctx = self.context(link, incarnation, stop);
        let entered = link.pulse.as_ref().map(|pulse| pulse.enter(Hook::Start));
        let outcome = catch_unwind(AssertUnwindSafe(|| actor.started(&mut ctx)));
        let ignored = ctx.ignore;
        let settings = Settings { receive_timeout: ctx.receive_timeout, stop: ctx.stop.take() };
        if let (Some(pulse), Some(entered)) = (&link.pulse, entered)
            && !pulse.leave(entered)
        {
            drop(outcome);
            let _ = panic::catch(Hook::Drop, move || drop(actor));
            return Err(ExitReason::Shutdown);
        }
        let failure = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(panic::failed(Hook::Start, error, None)),
            Err(payload) => Some(panic::panicked(Hook::Start, payload, None)),
        };
        if let Some(reason) = failure.or(ignored.then_some(ExitReason::Ignored)) {
            return Err(drop_actor(actor, reason, &link.path));
        }
        link.started(generation);
        set_phase(Phase::Serving, None);
        Ok((actor, settings))
    }

    fn context<'a>(&'a self, link: &'a Link, incarnation: u64, stop: &'a AtomicBool) -> Context<'a, A::Msg> {
        Context {
            addr: &self.mailbox.addr,
            path: &link.path,
            incarnation,
            receive_timeout: None,
            stop: None,
            ignore: false,
            stop_requested: stop,
            pulse: link.pulse.as_deref(),
        }
    }

    /// Runs the message loop and the stopped hook.
    fn serve(&self, actor: &mut A, settings: Settings, link: &Link, incarnation: u64, stop: &AtomicBool) -> ExitReason {
        let mut ctx = self.context(link, incarnation, stop);
        ctx.receive_timeout = settings.receive_timeout;
        ctx.stop = settings.stop;

        let hook = std::cell::Cell::new(Hook::Handle);
        let rx = &self.mailbox.rx;
        let pulse = link.pulse.as_deref();
        let reason = match catch_unwind(AssertUnwindSafe(|| message_loop(actor, &mut ctx, rx, stop, &hook, pulse))) {
            Ok(reason) => reason,
            Err(payload) => {
                // A hook that panicked left the pulse inside it.
                if pulse.is_some_and(|pulse| !pulse.settle()) {
                    drop(payload);
                    return ExitReason::Shutdown;
                }
                let message_type = (hook.get() == Hook::Handle).then(std::any::type_name::<A::Msg>);
                panic::panicked(hook.get(), payload, message_type)
            }
        };
        if link.fenced() {
            return reason;
        }
        set_phase(Phase::Stopping, None);
        match catch_unwind(AssertUnwindSafe(|| actor.stopped(&reason))) {
            Ok(()) => reason,
            Err(payload) => {
                let stopped = panic::panicked(Hook::Stopped, payload, None);
                if reason.is_normal() {
                    stopped
                } else {
                    log::warn!(target: "vigil", "{}: stopped hook {stopped} after {reason}", link.path);
                    reason
                }
            }
        }
    }
}

fn message_loop<A: Actor>(
    actor: &mut A,
    ctx: &mut Context<'_, A::Msg>,
    rx: &Receiver<Envelope<A::Msg>>,
    stop: &AtomicBool,
    hook: &std::cell::Cell<Hook>,
    pulse: Option<&Pulse>,
) -> ExitReason {
    let message_type = std::any::type_name::<A::Msg>;
    // Spins for the next message while recent ones came soon after the
    // mailbox ran empty, so a caller waiting on this actor does not pay a
    // wake-up.
    let mut spinner = Spinner::new();
    // How the next wait polls: for another tell of a stream, or for the
    // next request after a call.
    let mut pace = Pace::Answer;
    loop {
        if stop.load(Ordering::Relaxed) {
            return ExitReason::Shutdown;
        }
        if let Some(reason) = ctx.stop.take() {
            return reason;
        }
        let next = match rx.try_recv() {
            Ok(envelope) => Ok(envelope),
            Err(TryRecvError::Empty) => wait_for_envelope(rx, ctx.receive_timeout, &mut spinner, pace),
            Err(TryRecvError::Disconnected) => Err(RecvTimeoutError::Disconnected),
        };
        match next {
            // `hook` says `Handle` except while `timeout` runs, so the
            // message path writes nothing extra.
            Ok(Envelope::Msg(msg)) => {
                pace = Pace::Stream;
                let result = match pulse {
                    None => actor.handle(msg, ctx),
                    Some(pulse) => {
                        let entered = pulse.enter(Hook::Handle);
                        let result = actor.handle(msg, ctx);
                        if !pulse.leave(entered) {
                            return ExitReason::Shutdown;
                        }
                        result
                    }
                };
                if let Err(error) = result {
                    return panic::failed(Hook::Handle, error, Some(message_type()));
                }
            }
            Ok(Envelope::Call(request)) => {
                pace = Pace::Answer;
                let CallRequest { msg, cancel: call } = *request;
                let result = match pulse {
                    None => {
                        drop(call);
                        actor.handle(msg, ctx)
                    }
                    Some(pulse) => {
                        pulse.set_in_flight(Some(call));
                        let entered = pulse.enter(Hook::Handle);
                        let result = actor.handle(msg, ctx);
                        if !pulse.leave(entered) {
                            return ExitReason::Shutdown;
                        }
                        pulse.set_in_flight(None);
                        result
                    }
                };
                if let Err(error) = result {
                    return panic::failed(Hook::Handle, error, Some(message_type()));
                }
            }
            Ok(Envelope::Wake) => {}
            Err(RecvTimeoutError::Timeout) => {
                hook.set(Hook::Timeout);
                let entered = pulse.map(|pulse| pulse.enter(Hook::Timeout));
                let result = actor.timeout(ctx);
                if let (Some(pulse), Some(entered)) = (pulse, entered)
                    && !pulse.leave(entered)
                {
                    return ExitReason::Shutdown;
                }
                if let Err(error) = result {
                    return panic::failed(Hook::Timeout, error, None);
                }
                hook.set(Hook::Handle);
            }
            // The runner holds an address of this mailbox, so it cannot
            // disconnect; treat it as a shutdown all the same.
            Err(RecvTimeoutError::Disconnected) => return ExitReason::Shutdown,
        }
    }
}

/// The next envelope from a mailbox the loop just found empty, or a timeout
/// after `receive_timeout`: spun for at `pace`, then waited for. Kept out of
/// line, so the message loop stays as tight as a plain `recv` while messages
/// queue.
#[inline(never)]
fn wait_for_envelope<M>(
    rx: &Receiver<Envelope<M>>,
    receive_timeout: Option<Duration>,
    spinner: &mut Spinner,
    pace: Pace,
) -> Result<Envelope<M>, RecvTimeoutError> {
    // Fixed before spinning, so the spin counts against the timeout.
    let deadline = receive_timeout.map(|timeout| Instant::now().checked_add(timeout.max(Duration::from_nanos(1))));
    let poll = || match rx.try_recv() {
        Ok(envelope) => Some(Ok(envelope)),
        Err(TryRecvError::Empty) => None,
        Err(TryRecvError::Disconnected) => Some(Err(RecvTimeoutError::Disconnected)),
    };
    spinner.wait_polled(pace, poll, || match deadline {
        Some(Some(deadline)) => rx.recv_deadline(deadline),
        // No timeout, or one too far away to represent.
        None | Some(None) => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_names_keep_the_most_specific_part() {
        assert_eq!(thread_name("root/pool/worker-12345"), "vigil:worker-12");
        assert_eq!(thread_name("root"), "vigil:root");
    }
}
