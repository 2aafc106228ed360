//! Driving the engine: the batcher's step, and the drains (flush, the final
//! flush at shutdown, and the finalizer's settlement without a sink).

use super::*;

impl<E: Serialize> Shared<E> {
    /// Does whatever is due: retries a batch whose backoff is over, ships a
    /// batch when a full one is queued or the oldest queued event may have
    /// waited `max_delay`. Returns when to call again.
    ///
    /// One step pops at most what was queued when it began (plus one batch),
    /// so the actor gets back to its mailbox regularly under load; it then
    /// returns `now`. It also returns `now` as soon as `stop()` is true or
    /// `token` no longer owns the state.
    ///
    /// # Errors
    ///
    /// A fatal delivery; the batch is kept and the actor must fail.
    pub(crate) fn step(
        &self,
        sink: &mut dyn Sink,
        clock: &dyn Clock,
        stop: &dyn Fn() -> bool,
        token: u64,
    ) -> Result<Instant, BoxError> {
        let max_delay = self.config.max_delay;
        let mut budget = self.backlog().saturating_add(self.config.max_batch_events as u64);
        loop {
            let now = clock.now();
            if stop() || !self.owns(token) {
                return Ok(now);
            }
            let mut st = self.state.lock();
            self.summarize(&mut st, now);
            match self.front(&mut st, now, false) {
                Front::Wait(at) => return Ok(at),
                Front::Due => {
                    drop(st);
                    self.attempt(sink, clock, self.config.delivery_timeout, token)?;
                    continue;
                }
                Front::None => {}
            }
            if self.backlog() == 0 && st.staged() == 0 {
                st.last_empty = Some(now);
                return Ok(later(now, max_delay));
            }
            // Never having seen the buffer empty, the batcher cannot tell how
            // long events have waited: they are due.
            let due_at = st.last_empty.map(|t| later(t, max_delay));
            let due = self.holds_full_batch() || due_at.is_none_or(|at| now >= at);
            if let (false, Some(at)) = (due, due_at) {
                return Ok(at);
            }
            if budget == 0 {
                return Ok(now);
            }
            if self.assemble(&mut st, &mut budget, now) == 0 && st.batches.is_empty() {
                // Queued but not readable yet: the spool writer has it, and
                // wakes the batcher when it is written.
                return Ok(later(now, crate::spool::POLL));
            }
        }
    }

    /// Delivers what is queued and in flight until done, the deadline or a
    /// stop request (`until`).
    ///
    /// Events queued after the drain began are taken too while the drain is
    /// at it, but it does not wait for them. The first attempt of each batch
    /// skips the batcher's own backoff (not the receiver's retry-after); the
    /// sink gets what is left of the time as its budget. Between attempts,
    /// and every [`STOP_POLL`] while it waits, it checks the stop request and that
    /// `token` still owns the state, and ends with [`DrainEnd::Stopped`]
    /// otherwise.
    pub(super) fn drain(&self, sink: &mut dyn Sink, clock: &dyn Clock, until: Until<'_>, token: u64) -> DrainEnd {
        let (deadline, stop) = until;
        let mut target = self.backlog();
        self.state.lock().batches.iter_mut().for_each(|b| b.tried_in_drain = false);
        loop {
            if stop() || !self.owns(token) {
                return DrainEnd::Stopped;
            }
            let now = clock.now();
            let mut st = self.state.lock();
            match self.front(&mut st, now, true) {
                Front::Wait(at) => {
                    if at >= deadline {
                        return DrainEnd::Deadline;
                    }
                    drop(st);
                    clock.sleep(at.saturating_duration_since(now).min(STOP_POLL));
                    continue;
                }
                Front::Due => {
                    drop(st);
                    if now >= deadline {
                        return DrainEnd::Deadline;
                    }
                    let left = deadline - now;
                    let budget = self.config.delivery_timeout.map_or(left, |t| t.min(left));
                    if let Err(e) = self.attempt(sink, clock, Some(budget), token) {
                        return DrainEnd::Fatal(e);
                    }
                    continue;
                }
                Front::None => {}
            }
            if st.staged() == 0 && (target == 0 || self.backlog() == 0) {
                if self.backlog() == 0 {
                    st.last_empty = Some(now);
                }
                return DrainEnd::Complete;
            }
            if now >= deadline {
                return DrainEnd::Deadline;
            }
            if self.assemble(&mut st, &mut target, now) == 0 && st.batches.is_empty() {
                // The spool writer has it and has not written it yet.
                drop(st);
                clock.sleep(STOP_POLL);
            }
        }
    }

    /// Flushes until `deadline`: [`drain`](Shared::drain) and its report.
    pub(crate) fn flush(
        &self,
        sink: &mut dyn Sink,
        clock: &dyn Clock,
        deadline: Instant,
        stop: &dyn Fn() -> bool,
        token: u64,
    ) -> (FlushReport, DrainEnd) {
        let start = clock.now();
        let before = self.snapshot();
        let end = self.drain(sink, clock, (deadline, stop), token);
        (self.report(&before, start, clock), end)
    }

    /// The final flush, when the batcher stops: delivers what it can within
    /// `budget`, then settles the pipeline (see [`conclude`](Shared::conclude)).
    /// Without a sink (it could not be built) nothing is delivered.
    ///
    /// Returns `None`, having changed nothing, when `token` no longer owns
    /// the state: an abandoned incarnation that came back.
    pub(crate) fn final_flush(
        &self,
        sink: Option<&mut dyn Sink>,
        clock: &dyn Clock,
        budget: Duration,
        token: u64,
    ) -> Option<FlushReport> {
        let start = clock.now();
        let before = self.snapshot();
        let end = match sink {
            Some(sink) => self.drain(sink, clock, (later(start, budget), &|| false), token),
            None => DrainEnd::Deadline,
        };
        let outcome = match &end {
            DrainEnd::Complete => "complete",
            DrainEnd::Deadline => "budget exhausted",
            DrainEnd::Stopped => "superseded",
            DrainEnd::Fatal(e) => {
                log::warn!(target: TARGET, "fatal sink failure during the final flush: {e}");
                "sink failed"
            }
        };
        let mut st = self.state.lock();
        if !self.owns(token) {
            return None;
        }
        Some(self.conclude(&mut st, &before, start, clock, outcome))
    }

    /// Settles the pipeline after its batcher stopped for good or was
    /// abandoned, unless the batcher's own final flush did: takes the state
    /// over (so an abandoned incarnation that comes back leaves it alone) and
    /// concludes without a sink. Returns the report when it concluded.
    pub(crate) fn settle(&self, clock: &dyn Clock) -> Option<FlushReport> {
        let start = clock.now();
        let before = self.snapshot();
        let mut st = self.state.lock();
        self.owner.store(self.new_token(), Ordering::SeqCst);
        if st.settled {
            return None;
        }
        Some(self.conclude(&mut st, &before, start, clock, "no batcher running"))
    }

    /// The end of a final flush: what was not delivered stays pending — the
    /// batcher may be started again (a supervisor restarting a group, say) —
    /// unless the buffer is closed: then nothing will deliver it any more,
    /// and it is dropped with the reason `shutdown`. Logs the tally and keeps
    /// the report.
    pub(super) fn conclude(
        &self,
        st: &mut State,
        before: &LedgerSnapshot,
        start: Instant,
        clock: &dyn Clock,
        outcome: &str,
    ) -> FlushReport {
        if self.buffer.is_closed() {
            // Records read from the spool stay there, unacknowledged: the
            // next run on the same spool delivers them. They stay pending.
            let mut on_disk = st.batches.iter().filter(|b| b.ack.is_some()).map(|b| b.batch.len() as u64).sum::<u64>();
            on_disk += u64::from(matches!(st.carry, Some((_, _, true))));
            if st.staging_disk == Some(true) {
                on_disk += st.staging.len() as u64;
            }
            let mut left = st.in_flight() - u64::from(st.encoding.is_some()) - on_disk;
            st.staging = Staging::default();
            st.staging_disk = None;
            st.carry = None;
            st.batches.clear();
            while self.buffer.pop().is_some() {
                left += 1;
            }
            if let Some(spool) = &self.spool {
                self.ledger.spool().spooled.fetch_add(on_disk, Ordering::Relaxed);
                left += spool.drain_handoff(&self.ledger);
            }
            self.ledger.batcher_drop(DropReason::Shutdown, left);
            self.publish(st);
        }
        if let Some(spool) = &self.spool {
            // The counters as they stand, whatever the last acknowledgement wrote.
            spool.ack(None, &self.snapshot(), clock.now(), true);
        }
        let report = self.report(before, start, clock);
        if report.pending > 0 || report.ledger.dropped.total() > 0 {
            log::warn!(target: TARGET, "event pipeline stopped ({outcome}): {report}");
        } else {
            log::info!(target: TARGET, "event pipeline stopped ({outcome}): {report}");
        }
        *self.final_report.lock() = Some(report.clone());
        st.settled = true;
        report
    }
}
