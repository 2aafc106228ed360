//! Typed addresses: the sending side of an actor's mailbox.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, SendTimeoutError, Sender, TrySendError};

use crate::error::{CallError, TellError, TellTimeoutError, TryTellError};

/// What travels through a mailbox: a user message, or a wake-up that makes a
/// blocked actor look at its stop flag.
pub(crate) enum Envelope<M> {
    Msg(M),
    Wake,
}

impl<M> Envelope<M> {
    /// The message inside an envelope that [`Addr`] sent. `Addr` only ever
    /// sends `Msg`, so the `Wake` arm yields `None` and is never taken there.
    fn into_msg(self) -> Option<M> {
        match self {
            Envelope::Msg(m) => Some(m),
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
            if let Envelope::Msg(msg) = envelope {
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

thread_local! {
    /// The mailbox that the current runner thread's incarnation serves, by
    /// the address of its shared state; 0 elsewhere. Lets
    /// [`Addr::call`] refuse a call to self at once.
    static SERVING: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Marks the current thread as serving a mailbox until dropped.
pub(crate) struct Serving(usize);

impl Serving {
    pub(crate) fn enter<M>(addr: &Addr<M>) -> Serving {
        Serving(SERVING.with(|serving| serving.replace(addr.id())))
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        SERVING.with(|serving| serving.set(self.0));
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
    /// A reply that arrives after the timeout is dropped. Calling an actor
    /// that stopped for good fails at once; calling one that is restarting
    /// waits for the next incarnation to answer, within the timeout. It never
    /// hangs.
    ///
    /// An actor that calls its own address would wait for itself: that call
    /// fails at once with [`CallError::SelfCall`].
    ///
    /// # Errors
    ///
    /// [`CallError::Closed`], [`CallError::Timeout`], [`CallError::Dropped`]
    /// when the actor dropped the request without replying (it panicked, say),
    /// or [`CallError::SelfCall`].
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
    pub fn call<R>(&self, make: impl FnOnce(Reply<R>) -> M, timeout: Duration) -> Result<R, CallError> {
        if self.is_closed() {
            return Err(CallError::Closed);
        }
        if SERVING.with(std::cell::Cell::get) == self.id() {
            return Err(CallError::SelfCall);
        }
        let deadline = Instant::now().checked_add(timeout);
        let (tx, rx) = crossbeam_channel::bounded(1);
        let msg = Envelope::Msg(make(Reply { tx }));
        let sent = match deadline {
            Some(deadline) => self.tx.send_deadline(msg, deadline),
            None => self.tx.send(msg).map_err(|e| SendTimeoutError::Disconnected(e.into_inner())),
        };
        match sent {
            Ok(()) => {}
            Err(SendTimeoutError::Timeout(_)) => return Err(CallError::Timeout),
            Err(SendTimeoutError::Disconnected(_)) => return Err(CallError::Closed),
        }
        let answer = match deadline {
            Some(deadline) => rx.recv_deadline(deadline).map_err(|e| e.is_timeout()),
            None => rx.recv().map_err(|_| false),
        };
        answer.map_err(|timed_out| if timed_out { CallError::Timeout } else { CallError::Dropped })
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
pub struct Reply<R> {
    tx: Sender<R>,
}

impl<R> Reply<R> {
    /// Sends the answer.
    ///
    /// # Errors
    ///
    /// Gives the value back if the caller stopped waiting (it timed out).
    pub fn send(self, value: R) -> Result<(), R> {
        self.tx.try_send(value).map_err(TrySendError::into_inner)
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

    #[test]
    fn a_dropped_request_fails_the_call_at_once() {
        let mailbox: Mailbox<Reply<u32>> = Mailbox::bounded(1);
        let rx = mailbox.rx.clone();
        let t = std::thread::spawn(move || drop(rx.recv()));
        assert_eq!(mailbox.addr.call(|r| r, Duration::from_secs(30)), Err(CallError::Dropped));
        t.join().unwrap();
    }
}
