//! Typed addresses: the sending side of an actor's mailbox.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, SendTimeoutError, Sender, TrySendError};

use crate::spin;

use crate::error::{CallError, TellError, TellTimeoutError, TryTellError};
use crate::waitfor;
use crate::watchdog::Cancel;

/// What travels through a mailbox: a user message, a request from
/// [`Addr::call`] with the means to fail its caller if the hook handling it
/// hangs, or a wake-up that makes a blocked actor look at its stop flag.
///
/// A call's request is boxed with its cancel handle, so that an envelope is
/// no bigger than its message when the message has a niche for the other
/// variants (an enum's tag), and one word bigger otherwise: the mailbox's
/// slots, and the cache lines a stream of `tell`s crosses, are (nearly)
/// those of a raw channel of `M`.
pub(crate) enum Envelope<M> {
    Msg(M),
    Call(Box<CallRequest<M>>),
    Wake,
}

/// A request from [`Addr::call`] and the means to fail its caller.
pub(crate) struct CallRequest<M> {
    pub(crate) msg: M,
    pub(crate) cancel: Arc<dyn Cancel>,
}

impl<M> Envelope<M> {
    /// The message inside an envelope that [`Addr`] sent. `Addr` only ever
    /// sends `Msg`, so the `Wake` arm yields `None` and is never taken there.
    fn into_msg(self) -> Option<M> {
        match self {
            Envelope::Msg(m) => Some(m),
            Envelope::Call(call) => Some(call.msg),
            Envelope::Wake => None,
        }
    }
}

/// State shared by every address of one mailbox and by its supervisor.
#[derive(Debug, Default)]
pub(crate) struct MailboxShared {
    /// Set while the actor is stopped for good (a temporary child that
    /// exited, a transient child that exited normally, or a child terminated
    /// through the API). Cleared when it is restarted through the API.
    closed: AtomicBool,
}

/// Both ends of a mailbox. The supervisor owns one for as long as the child
/// spec exists, so the address stays valid across restarts.
pub(crate) struct Mailbox<M> {
    pub(crate) addr: Addr<M>,
    pub(crate) rx: Receiver<Envelope<M>>,
}

impl<M> Mailbox<M> {
    pub(crate) fn bounded(capacity: usize) -> Mailbox<M> {
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        Mailbox { addr: Addr { tx, shared: Arc::new(MailboxShared::default()) }, rx }
    }

    /// Marks the actor stopped for good and drops what is queued, so callers
    /// blocked on a reply get [`CallError::Dropped`] at once. A message whose
    /// `Drop` panics is counted and logged; the rest are still dropped.
    pub(crate) fn close(&self) -> usize {
        self.addr.shared.closed.store(true, Ordering::Release);
        let mut dropped = 0;
        for envelope in self.rx.try_iter() {
            let msg = match envelope {
                Envelope::Msg(msg) => Some(msg),
                Envelope::Call(call) => Some(call.msg),
                Envelope::Wake => None,
            };
            if let Some(msg) = msg {
                dropped += 1;
                if let Err(panic) = crate::panic::drop_guarded(msg) {
                    log::warn!(
                        target: "vigil",
                        "dropping a queued message of type {} panicked: {panic}",
                        std::any::type_name::<M>()
                    );
                }
            }
        }
        dropped
    }

    pub(crate) fn reopen(&self) {
        self.addr.shared.closed.store(false, Ordering::Release);
    }
}

/// The actor a runner thread serves: its mailbox's id and its path.
type Current = Option<(usize, Arc<str>)>;

thread_local! {
    /// The mailbox that the current runner thread's incarnation serves, by
    /// the address of its shared state, and the actor's path; `None`
    /// elsewhere. Lets [`Addr::call`] refuse a call that closes a cycle.
    static SERVING: std::cell::RefCell<Current> = const { std::cell::RefCell::new(None) };
}

/// Marks the current thread as serving a mailbox until dropped.
pub(crate) struct Serving(Current);

impl Serving {
    pub(crate) fn enter<M>(addr: &Addr<M>, path: &Arc<str>) -> Serving {
        Serving(SERVING.with(|serving| serving.replace(Some((addr.id(), Arc::clone(path))))))
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        SERVING.with(|serving| *serving.borrow_mut() = self.0.take());
    }
}

/// The typed address of an actor. Cheap to clone; every clone sends to the
/// same mailbox.
///
/// The address stays valid across restarts: the supervisor keeps the mailbox
/// and hands it to each new incarnation, so messages queued while a child
/// restarts are delivered to the next incarnation. Sending fails with
/// `Closed` only once the actor has stopped for good.
///
/// The operations follow crossbeam-channel's family: [`tell`](Addr::tell)
/// blocks while the mailbox is full, [`try_tell`](Addr::try_tell) never
/// blocks, [`tell_timeout`](Addr::tell_timeout) blocks at most a while, and
/// [`call`](Addr::call) sends a request and waits for its reply. A failed send
/// gives the message back.
pub struct Addr<M> {
    tx: Sender<Envelope<M>>,
    shared: Arc<MailboxShared>,
}

impl<M> Clone for Addr<M> {
    fn clone(&self) -> Self {
        Addr { tx: self.tx.clone(), shared: Arc::clone(&self.shared) }
    }
}

impl<M> fmt::Debug for Addr<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Addr")
            .field("message_type", &std::any::type_name::<M>())
            .field("len", &self.tx.len())
            .field("capacity", &self.tx.capacity())
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl<M> Addr<M> {
    /// Sends a message, blocking while the mailbox is full.
    ///
    /// # Errors
    ///
    /// [`TellError::Closed`] with the message if the actor has stopped for good.
    ///
    /// # Examples
    ///
    /// ```
    /// # use vigil_core::*;
    /// struct Counter(u64);
    /// impl Actor for Counter {
    ///     type Msg = u64;
    ///     fn handle(&mut self, n: u64, _: &mut Context<'_, u64>) -> Result<(), BoxError> {
    ///         self.0 += n;
    ///         Ok(())
    ///     }
    /// }
    /// let spec = ChildSpec::worker("counter", || Counter(0));
    /// let addr = spec.addr();
    /// let system = Supervisor::builder().child(spec).start()?;
    /// addr.tell(5).unwrap();
    /// system.shutdown().unwrap();
    /// # Ok::<(), StartError>(())
    /// ```
    pub fn tell(&self, msg: M) -> Result<(), TellError<M>> {
        if self.is_closed() {
            return Err(TellError::Closed(msg));
        }
        match self.tx.send(Envelope::Msg(msg)) {
            Ok(()) => Ok(()),
            Err(e) => match e.into_inner().into_msg() {
                Some(m) => Err(TellError::Closed(m)),
                None => Ok(()),
            },
        }
    }

    /// Sends a message if the mailbox has room. Never blocks.
    ///
    /// # Errors
    ///
    /// [`TryTellError::Full`] or [`TryTellError::Closed`], with the message.
    ///
    /// # Examples
    ///
    /// ```
    /// # use vigil_core::*;
    /// # struct W; impl Actor for W { type Msg = (); fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> { Ok(()) } }
    /// let spec = ChildSpec::worker("w", || W).mailbox(1);
    /// let addr = spec.addr();
    /// addr.try_tell(()).unwrap(); // queued before the tree starts
    /// assert!(addr.try_tell(()).unwrap_err().is_full());
    /// let system = Supervisor::builder().child(spec).start()?;
    /// system.shutdown().unwrap();
    /// assert!(addr.try_tell(()).unwrap_err().is_closed());
    /// # Ok::<(), StartError>(())
    /// ```
    pub fn try_tell(&self, msg: M) -> Result<(), TryTellError<M>> {
        if self.is_closed() {
            return Err(TryTellError::Closed(msg));
        }
        match self.tx.try_send(Envelope::Msg(msg)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(e)) => e.into_msg().map_or(Ok(()), |m| Err(TryTellError::Full(m))),
            Err(TrySendError::Disconnected(e)) => e.into_msg().map_or(Ok(()), |m| Err(TryTellError::Closed(m))),
        }
    }

    /// Sends a message, blocking at most `timeout` while the mailbox is full.
    ///
    /// # Errors
    ///
    /// [`TellTimeoutError::Timeout`] or [`TellTimeoutError::Closed`], with the message.
    ///
    /// # Examples
    ///
    /// ```
    /// # use vigil_core::*;
    /// # struct W; impl Actor for W { type Msg = (); fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> { Ok(()) } }
    /// # use std::time::Duration;
    /// let spec = ChildSpec::worker("w", || W).mailbox(1);
    /// let addr = spec.addr();
    /// addr.tell(()).unwrap();
    /// let full = addr.tell_timeout((), Duration::from_millis(10)).unwrap_err();
    /// assert!(full.is_timeout());
    /// let system = Supervisor::builder().child(spec).start()?;
    /// addr.tell_timeout((), Duration::from_secs(5)).unwrap();
    /// system.shutdown().unwrap();
    /// # Ok::<(), StartError>(())
    /// ```
    pub fn tell_timeout(&self, msg: M, timeout: Duration) -> Result<(), TellTimeoutError<M>> {
        if self.is_closed() {
            return Err(TellTimeoutError::Closed(msg));
        }
        match self.tx.send_timeout(Envelope::Msg(msg), timeout) {
            Ok(()) => Ok(()),
            Err(SendTimeoutError::Timeout(e)) => e.into_msg().map_or(Ok(()), |m| Err(TellTimeoutError::Timeout(m))),
            Err(SendTimeoutError::Disconnected(e)) => e.into_msg().map_or(Ok(()), |m| Err(TellTimeoutError::Closed(m))),
        }
    }

    /// Sends a request built by `make` around a fresh [`Reply`] and waits for
    /// the answer. The whole call, queueing included, takes at most `timeout`.
    ///
    /// A reply that arrives after the timeout is refused: [`Reply::send`]
    /// gives it back to the actor, and it never reaches a later call. The
    /// caller spins briefly for the reply before it sleeps, for as long as
    /// its recent calls show that pays off. Calling an actor
    /// that stopped for good fails at once; calling one that is restarting
    /// waits for the next incarnation to answer, within the timeout. It never
    /// hangs.
    ///
    /// A call from inside an actor's hook that would close a cycle of actors
    /// each waiting for the next (an actor calling itself, A calling B while
    /// B's handler calls A, or a longer chain) fails at once with
    /// [`CallError::Deadlock`] naming the cycle, instead of every party
    /// waiting out its timeout. Only `call` waits for another actor, so only
    /// `call` is tracked: it costs a lock and a walk of the waiting chain when
    /// made from an actor's hook, and nothing from other threads. `tell`
    /// costs nothing extra.
    ///
    /// If the actor's hook handling the request [hangs](crate::WorkerSpec::hang_timeout),
    /// the call fails with [`CallError::Dropped`] when the watchdog replaces
    /// it; a request queued behind the hung one is answered by the
    /// replacement.
    ///
    /// # Errors
    ///
    /// [`CallError::Closed`], [`CallError::Timeout`], [`CallError::Dropped`]
    /// when the actor dropped the request without replying (it panicked or
    /// hung, say), or [`CallError::Deadlock`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use vigil_core::*;
    /// # use std::time::Duration;
    /// enum Msg { Add(u64), Get(Reply<u64>) }
    /// struct Counter(u64);
    /// impl Actor for Counter {
    ///     type Msg = Msg;
    ///     fn handle(&mut self, msg: Msg, _: &mut Context<'_, Msg>) -> Result<(), BoxError> {
    ///         match msg {
    ///             Msg::Add(n) => self.0 += n,
    ///             Msg::Get(reply) => { let _ = reply.send(self.0); }
    ///         }
    ///         Ok(())
    ///     }
    /// }
    /// let spec = ChildSpec::worker("counter", || Counter(0));
    /// let addr = spec.addr();
    /// let system = Supervisor::builder().child(spec).start()?;
    /// addr.tell(Msg::Add(2)).unwrap();
    /// assert_eq!(addr.call(Msg::Get, Duration::from_secs(5)), Ok(2));
    /// system.shutdown().unwrap();
    /// # Ok::<(), StartError>(())
    /// ```
    pub fn call<R: Send + 'static>(&self, make: impl FnOnce(Reply<R>) -> M, timeout: Duration) -> Result<R, CallError> {
        if self.is_closed() {
            return Err(CallError::Closed);
        }
        // Held until the answer comes: this caller's edge in the wait-for graph.
        let _waiting = SERVING
            .with(|serving| match serving.borrow().as_ref() {
                Some((me, path)) => waitfor::wait(*me, path, self.id()).map(Some),
                None => Ok(None),
            })
            .map_err(|cycle| CallError::Deadlock { cycle })?;
        let deadline = Instant::now().checked_add(timeout);
        let slot = Arc::new(ReplySlot::new());
        let msg = make(Reply { slot: Arc::clone(&slot) });
        let msg = Envelope::Call(Box::new(CallRequest { msg, cancel: Arc::clone(&slot) as Arc<dyn Cancel> }));
        let sent = match deadline {
            Some(deadline) => self.tx.send_deadline(msg, deadline),
            None => self.tx.send(msg).map_err(|e| SendTimeoutError::Disconnected(e.into_inner())),
        };
        match sent {
            Ok(()) => {}
            Err(SendTimeoutError::Timeout(_)) => return Err(CallError::Timeout),
            Err(SendTimeoutError::Disconnected(_)) => return Err(CallError::Closed),
        }
        slot.wait(deadline)
    }

    /// The number of messages waiting in the mailbox.
    ///
    /// # Examples
    ///
    /// ```
    /// # use vigil_core::*;
    /// # struct W; impl Actor for W { type Msg = (); fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> { Ok(()) } }
    /// let spec = ChildSpec::worker("w", || W).mailbox(8);
    /// let addr = spec.addr();
    /// assert!(addr.is_empty());
    /// addr.tell(()).unwrap();
    /// assert_eq!((addr.len(), addr.capacity()), (1, 8));
    /// ```
    pub fn len(&self) -> usize {
        self.tx.len()
    }

    /// Whether the mailbox is empty.
    ///
    /// # Examples
    ///
    /// ```
    /// # use vigil_core::*;
    /// # struct W; impl Actor for W { type Msg = (); fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> { Ok(()) } }
    /// let spec = ChildSpec::worker("w", || W);
    /// let addr = spec.addr();
    /// assert!(addr.is_empty());
    /// addr.tell(()).unwrap();
    /// assert!(!addr.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.tx.is_empty()
    }

    /// The mailbox's capacity.
    ///
    /// # Examples
    ///
    /// ```
    /// # use vigil_core::*;
    /// # struct W; impl Actor for W { type Msg = (); fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> { Ok(()) } }
    /// assert_eq!(ChildSpec::worker("w", || W).mailbox(8).addr().capacity(), 8);
    /// assert_eq!(ChildSpec::worker("w", || W).addr().capacity(), DEFAULT_MAILBOX);
    /// ```
    pub fn capacity(&self) -> usize {
        self.tx.capacity().unwrap_or(usize::MAX)
    }

    /// Whether the actor has stopped for good. An actor waiting to be
    /// restarted is not closed.
    ///
    /// # Examples
    ///
    /// ```
    /// # use vigil_core::*;
    /// # struct W; impl Actor for W { type Msg = (); fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> { Ok(()) } }
    /// let spec = ChildSpec::worker("w", || W);
    /// let addr = spec.addr();
    /// let system = Supervisor::builder().child(spec).start()?;
    /// assert!(!addr.is_closed());
    /// system.shutdown().unwrap();
    /// assert!(addr.is_closed()); // a tree that shut down refuses messages
    /// # Ok::<(), StartError>(())
    /// ```
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Relaxed)
    }

    /// Identifies the mailbox: the address of its shared state.
    fn id(&self) -> usize {
        Arc::as_ptr(&self.shared) as usize
    }

    /// Wakes the actor if it is blocked on an empty mailbox. Never blocks.
    pub(crate) fn wake(&self) {
        let _ = self.tx.try_send(Envelope::Wake);
    }
}

/// The reply half of a [`call`](Addr::call). Send exactly one answer.
/// Dropping it unanswered fails the call with [`CallError::Dropped`].
pub struct Reply<R> {
    slot: Arc<ReplySlot<R>>,
}

/// Where one call's answer goes: shared by its caller, its [`Reply`] and its
/// envelope (the watchdog cancels it when the hook holding the request
/// hangs). One per call, so a reply that comes after its caller gave up can
/// never reach a later call.
///
/// The caller spins on `settled` for a while ([`crate::spin`]), then parks;
/// whoever settles the slot unparks it. Unlike a channel, nothing here
/// yields the CPU to other processes before parking.
struct ReplySlot<R> {
    state: parking_lot::Mutex<Answer<R>>,
    /// Set, after `state`, once it is no longer `Waiting`.
    settled: AtomicBool,
    caller: std::thread::Thread,
}

/// The state of one call's answer.
enum Answer<R> {
    /// Nobody answered yet and the caller still waits.
    Waiting,
    /// The answer, not yet taken by the caller.
    Given(R),
    /// The request was dropped or cancelled unanswered.
    Dropped,
    /// The caller stopped waiting (it timed out) or took its answer.
    Closed,
}

impl<R> ReplySlot<R> {
    fn new() -> ReplySlot<R> {
        ReplySlot {
            state: parking_lot::Mutex::new(Answer::Waiting),
            settled: AtomicBool::new(false),
            caller: std::thread::current(),
        }
    }

    /// Locks the slot if nobody answered it yet and its caller still waits.
    fn lock_waiting(&self) -> Option<parking_lot::MutexGuard<'_, Answer<R>>> {
        let state = self.state.lock();
        matches!(*state, Answer::Waiting).then_some(state)
    }

    /// Settles a slot locked by [`lock_waiting`](Self::lock_waiting) with
    /// `answer` and wakes the caller.
    fn settle(&self, mut state: parking_lot::MutexGuard<'_, Answer<R>>, answer: Answer<R>) {
        *state = answer;
        drop(state);
        self.settled.store(true, Ordering::Release);
        self.caller.unpark();
    }

    /// Fails the call with [`CallError::Dropped`] unless it was settled.
    fn drop_unanswered(&self) {
        if let Some(state) = self.lock_waiting() {
            self.settle(state, Answer::Dropped);
        }
    }

    /// The caller's side: waits until the slot is settled or `deadline`
    /// passes, spinning first for as long as this thread's recent calls
    /// suggest pays off.
    fn wait(&self, deadline: Option<Instant>) -> Result<R, CallError> {
        let settled = || self.settled.load(Ordering::Acquire).then_some(true);
        let in_time = spin::wait(settled, || self.park(deadline));
        let mut state = self.state.lock();
        if !in_time && matches!(*state, Answer::Waiting) {
            *state = Answer::Closed;
            return Err(CallError::Timeout);
        }
        match std::mem::replace(&mut *state, Answer::Closed) {
            Answer::Given(value) => Ok(value),
            Answer::Waiting | Answer::Dropped | Answer::Closed => Err(CallError::Dropped),
        }
    }

    /// Parks until the slot is settled (true) or `deadline` passes (false).
    fn park(&self, deadline: Option<Instant>) -> bool {
        while !self.settled.load(Ordering::Acquire) {
            match deadline {
                None => std::thread::park(),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return false;
                    }
                    std::thread::park_timeout(left);
                }
            }
        }
        true
    }
}

impl<R: Send> Cancel for ReplySlot<R> {
    fn cancel(&self) {
        self.drop_unanswered();
    }
}

impl<R> Reply<R> {
    /// Sends the answer.
    ///
    /// # Errors
    ///
    /// Gives the value back if the caller stopped waiting (it timed out, or
    /// the watchdog replaced this hook as hung).
    pub fn send(self, value: R) -> Result<(), R> {
        match self.slot.lock_waiting() {
            Some(state) => {
                self.slot.settle(state, Answer::Given(value));
                Ok(())
            }
            None => Err(value),
        }
    }
}

impl<R> Drop for Reply<R> {
    fn drop(&mut self) {
        self.slot.drop_unanswered();
    }
}

impl<R> fmt::Debug for Reply<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Reply")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_is_no_bigger_than_a_message_with_a_niche() {
        #[expect(dead_code, reason = "only its size matters")]
        enum Msg {
            Add(u64),
            Get(Reply<u64>),
        }
        assert_eq!(std::mem::size_of::<Envelope<Msg>>(), std::mem::size_of::<Msg>());
        // Without a niche, the tag costs a word, not a call's cancel handle.
        assert_eq!(std::mem::size_of::<Envelope<u64>>(), 2 * std::mem::size_of::<u64>());
    }

    #[test]
    fn a_closed_mailbox_gives_messages_back() {
        let mailbox: Mailbox<u32> = Mailbox::bounded(2);
        mailbox.addr.tell(1).unwrap();
        assert_eq!(mailbox.close(), 1);
        assert_eq!(mailbox.addr.tell(2), Err(TellError::Closed(2)));
        assert_eq!(mailbox.addr.try_tell(3), Err(TryTellError::Closed(3)));
        assert_eq!(mailbox.addr.call(|_: Reply<u32>| 4, Duration::from_secs(1)), Err(CallError::Closed));
        mailbox.reopen();
        assert_eq!(mailbox.addr.try_tell(5), Ok(()));
    }

    #[test]
    fn a_full_mailbox_is_reported_with_the_message() {
        let mailbox: Mailbox<u32> = Mailbox::bounded(1);
        mailbox.addr.try_tell(1).unwrap();
        assert_eq!(mailbox.addr.try_tell(2), Err(TryTellError::Full(2)));
        assert_eq!(mailbox.addr.tell_timeout(3, Duration::from_millis(1)), Err(TellTimeoutError::Timeout(3)));
        assert_eq!(TryTellError::Full(2).into_inner(), 2);
    }

    /// Takes the next call's request off a mailbox of `(n, Reply)` pairs.
    fn request(rx: &Receiver<Envelope<(u32, Reply<u32>)>>) -> (u32, Reply<u32>, Arc<dyn Cancel>) {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Envelope::Call(request)) => {
                let CallRequest { msg: (n, reply), cancel } = *request;
                (n, reply, cancel)
            }
            _ => panic!("expected a call's request"),
        }
    }

    #[test]
    fn a_late_reply_is_refused_and_never_reaches_the_next_call() {
        let mailbox: Mailbox<(u32, Reply<u32>)> = Mailbox::bounded(4);
        // Nobody serves yet: the first call times out.
        assert_eq!(mailbox.addr.call(|r| (1, r), Duration::from_millis(20)), Err(CallError::Timeout));
        // Its answer, given late, is handed back to the replier.
        let (n, late, _) = request(&mailbox.rx);
        assert_eq!(late.send(n * 10), Err(10));
        // The next call from the same thread gets its own answer.
        let rx = mailbox.rx.clone();
        let server = std::thread::spawn(move || {
            let (n, reply, _) = request(&rx);
            reply.send(n * 10)
        });
        assert_eq!(mailbox.addr.call(|r| (2, r), Duration::from_secs(30)), Ok(20));
        assert_eq!(server.join().unwrap(), Ok(()));
    }

    #[test]
    fn a_cancelled_call_fails_at_once_and_refuses_the_answer() {
        let mailbox: Mailbox<(u32, Reply<u32>)> = Mailbox::bounded(1);
        let rx = mailbox.rx.clone();
        let server = std::thread::spawn(move || {
            let (n, reply, cancel) = request(&rx);
            // What the watchdog does to a hung hook's request.
            cancel.cancel();
            reply.send(n)
        });
        assert_eq!(mailbox.addr.call(|r| (7, r), Duration::from_secs(30)), Err(CallError::Dropped));
        assert_eq!(server.join().unwrap(), Err(7));
    }

    #[test]
    fn calls_from_many_threads_each_get_their_own_answer() {
        let mailbox: Mailbox<(u32, Reply<u32>)> = Mailbox::bounded(8);
        let rx = mailbox.rx.clone();
        let server = std::thread::spawn(move || {
            // Answers every request, some at once and some after a pause,
            // so that callers both spin and park.
            while let Ok(Envelope::Call(request)) = rx.recv() {
                let CallRequest { msg: (n, reply), .. } = *request;
                if n % 7 == 0 {
                    std::thread::sleep(Duration::from_micros(200));
                }
                let _ = reply.send(n + 1);
            }
        });
        let callers: Vec<_> = (0..4u32)
            .map(|t| {
                let addr = mailbox.addr.clone();
                std::thread::spawn(move || {
                    for i in 0..500 {
                        let n = t * 1000 + i;
                        assert_eq!(addr.call(|r| (n, r), Duration::from_secs(30)), Ok(n + 1));
                    }
                })
            })
            .collect();
        for caller in callers {
            caller.join().unwrap();
        }
        drop(mailbox);
        server.join().unwrap();
    }

    #[test]
    fn a_dropped_request_fails_the_call_at_once() {
        let mailbox: Mailbox<Reply<u32>> = Mailbox::bounded(1);
        let rx = mailbox.rx.clone();
        let t = std::thread::spawn(move || drop(rx.recv()));
        assert_eq!(mailbox.addr.call(|r| r, Duration::from_secs(30)), Err(CallError::Dropped));
        t.join().unwrap();
    }
}
