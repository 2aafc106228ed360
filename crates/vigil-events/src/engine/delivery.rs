//! One delivery attempt and what its result does to the batch in flight:
//! the retry schedule and its backoff, splitting, expiry, acknowledging
//! spooled records.

use super::*;

impl<E> Shared<E> {
    /// A batch read from the spool was resolved: acknowledge its records.
    pub(super) fn resolved(&self, f: &InFlight, now: Instant) {
        if let (Some(spool), Some(upto)) = (&self.spool, f.ack) {
            spool.ack(Some(upto), &self.snapshot(), now, false);
        }
    }

    pub(super) fn backoff(&self, st: &mut State) -> Duration {
        let exp = st.failures.saturating_sub(1).min(31);
        let base = self.config.retry_backoff_min.saturating_mul(1 << exp).min(self.config.retry_backoff_max);
        // "Equal jitter": somewhere in [base/2, base].
        let half = base / 2;
        let span = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX).saturating_add(1);
        half + Duration::from_nanos(st.next_random() % span)
    }

    /// Drops the front batch, counting its events under `reason`.
    pub(super) fn drop_front(&self, st: &mut State, reason: DropReason, now: Instant) {
        if let Some(f) = st.batches.pop_front() {
            self.ledger.batcher_drop(reason, f.batch.len() as u64);
            log::debug!(target: TARGET, "batch {} ({} events) dropped: {reason}", f.batch.idempotency_key(), f.batch.len());
            self.publish(st);
            self.resolved(&f, now);
        }
        self.publish(st);
    }

    /// Looks at the front batch: expires it if too old, else says when it is due.
    pub(super) fn front(&self, st: &mut State, now: Instant, draining: bool) -> Front {
        loop {
            let Some(f) = st.batches.front() else { return Front::None };
            let expires = later(f.created, self.config.max_batch_age);
            if now >= expires {
                self.drop_front(st, DropReason::Expired, now);
                continue;
            }
            let at = if draining && !f.tried_in_drain { f.retry_after_until.unwrap_or(now) } else { f.next_attempt };
            return if at <= now { Front::Due } else { Front::Wait(at.min(expires)) };
        }
    }

    /// Delivers the front batch once and applies the outcome.
    /// Nothing happens, and the sink's answer is ignored, when `token` does
    /// not own the state (before or after the sink ran).
    pub(super) fn attempt(
        &self,
        sink: &mut dyn Sink,
        clock: &dyn Clock,
        budget: Option<Duration>,
        token: u64,
    ) -> Result<(), BoxError> {
        let (batch, retry) = {
            let mut st = self.state.lock();
            if !self.owns(token) {
                return Ok(());
            }
            let Some(f) = st.batches.front_mut() else { return Ok(()) };
            f.tried_in_drain = true;
            let out = (Arc::clone(&f.batch), f.attempts > 0);
            st.attempt_running = true;
            out
        };
        self.ledger.attempt(retry);
        let result = sink.deliver(&batch, budget);
        let now = clock.now();
        let mut st = self.state.lock();
        if !self.owns(token) {
            // Abandoned meanwhile: the state belongs to another incarnation
            // (or the finalizer), which has accounted for this batch.
            return Ok(());
        }
        st.attempt_running = false;
        match st.batches.front() {
            Some(f) if Arc::ptr_eq(&f.batch, &batch) => {}
            _ => return Ok(()),
        }
        let out = self.apply(&mut st, &batch, result, now);
        self.publish(&st);
        out
    }

    pub(super) fn apply(&self, st: &mut State, batch: &Batch, result: Delivery, now: Instant) -> Result<(), BoxError> {
        let key = batch.idempotency_key();
        match result {
            Delivery::Delivered => {
                let f = st.batches.pop_front();
                st.failures = 0;
                self.ledger.delivered(batch.len() as u64);
                log::trace!(target: TARGET, "batch {key} delivered ({} events)", batch.len());
                if let Some(f) = f {
                    self.publish(st);
                    self.resolved(&f, now);
                }
            }
            Delivery::Retryable { error, retry_after } => {
                log::debug!(target: TARGET, "batch {key}: retryable failure: {error}");
                self.ledger.set_last_error("retryable", error.to_string());
                self.schedule_retry(st, now, retry_after);
            }
            Delivery::TooLarge { error } => {
                self.ledger.set_last_error("too_large", error.to_string());
                if batch.len() >= 2 {
                    let Some(f) = st.batches.pop_front() else { return Ok(()) };
                    let halves = split(self.prefix, self.config.framing(), &f.batch, &f.spans);
                    log::debug!(target: TARGET, "batch {key} too large ({} bytes): split in halves", batch.body().len());
                    for (b, spans) in halves.into_iter().rev() {
                        let ack = f.ack.and(b.seqs().last().map(|&l| l + 1));
                        st.batches.push_front(InFlight {
                            ack,
                            batch: Arc::new(b),
                            spans,
                            created: f.created,
                            attempts: 0,
                            next_attempt: now,
                            retry_after_until: None,
                            tried_in_drain: false,
                        });
                    }
                    self.ledger.split();
                } else {
                    self.drop_front(st, DropReason::TooLarge, now);
                }
            }
            Delivery::Rejected { error } => {
                log::debug!(target: TARGET, "batch {key} rejected: {error}");
                self.ledger.set_last_error("rejected", error.to_string());
                self.drop_front(st, DropReason::Rejected, now);
            }
            Delivery::PartiallyRejected { rejected, error } => {
                let rejected = rejected.min(batch.len() as u64);
                log::debug!(target: TARGET, "batch {key}: {rejected} of {} events rejected: {error}", batch.len());
                st.batches.pop_front();
                st.failures = 0;
                self.ledger.delivered(batch.len() as u64 - rejected);
                self.ledger.batcher_drop(DropReason::Rejected, rejected);
                self.ledger.set_last_error("rejected", error.to_string());
            }
            Delivery::Fatal { error } => {
                // DEBUG: the batcher's restart line (WARN, from its
                // supervisor) already names this error; one failure, one WARN.
                log::debug!(target: TARGET, "batch {key}: fatal sink failure, the batcher restarts with a fresh sink: {error}");
                self.ledger.set_last_error("fatal", error.to_string());
                self.schedule_retry(st, now, None);
                return Err(error);
            }
        }
        Ok(())
    }

    /// Keeps the front batch for another attempt after a backoff, or drops it
    /// as expired when that attempt would come too late.
    pub(super) fn schedule_retry(&self, st: &mut State, now: Instant, retry_after: Option<Duration>) {
        st.failures = st.failures.saturating_add(1);
        let delay = self.backoff(st).max(retry_after.unwrap_or_default());
        let max_age = self.config.max_batch_age;
        let Some(f) = st.batches.front_mut() else { return };
        f.attempts += 1;
        f.retry_after_until = retry_after.map(|d| later(now, d));
        f.next_attempt = later(now, delay);
        if f.next_attempt >= later(f.created, max_age) {
            self.drop_front(st, DropReason::Expired, now);
        }
    }
}
