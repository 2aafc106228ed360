//! The trust watcher: one thread per config (shared by its clones) that
//! polls the trust and identity files, wakes the pipeline when they change,
//! and checks the announced rotations against the trust set.
//!
//! Why a thread, and not only the sink's own poll: after a trust failure the
//! batcher waits out its restart backoff (up to a minute) with no sink at
//! all, so nothing would notice the fix until then. The watcher notices it
//! within one poll interval and ends the backoff
//! ([`EventsHandle::wake`](vigil_events::EventsHandle::wake)).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use vigil_events::EventsHandle;

use crate::cert::now_unix;
use crate::pem::{FileStamp, TrustSet, load_trust};
use crate::readiness::{AnchorStatus, CertificateStatus, TrustStatus};
use crate::rotation::{self, Announced, RotationFacts, Said};
use crate::stats::HttpsStats;

/// The shortest pause between two polls of the watcher thread: a zero
/// [`trust_poll_interval`](crate::HttpsSinkConfig::trust_poll_interval)
/// polls this often.
const MIN_POLL: Duration = Duration::from_millis(50);

/// Shared by every clone of a config.
#[derive(Debug, Clone, Default)]
pub(crate) struct TrustWatch {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Bumped on every change of a watched file; a sink reloads when it differs.
    generation: AtomicU64,
    /// The pipelines to wake on a change.
    wake: Mutex<Vec<EventsHandle>>,
    /// Whether the thread was started.
    started: Mutex<bool>,
}

/// What the thread needs, none of which keeps the config alive.
pub(crate) struct Plan {
    pub(crate) endpoint: String,
    pub(crate) files: Vec<PathBuf>,
    pub(crate) trust_files: Vec<PathBuf>,
    pub(crate) webpki: bool,
    pub(crate) interval: Duration,
    pub(crate) announced: Vec<Announced>,
    pub(crate) alarm: Duration,
    pub(crate) stats: HttpsStats,
}

impl TrustWatch {
    /// How many changes the watcher has seen.
    pub(crate) fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    /// Wakes `handle` on every later change.
    pub(crate) fn wake(&self, handle: &EventsHandle) {
        self.inner.wake.lock().push(handle.clone());
    }

    /// Checks the trust set and the rotations now, then starts the thread if
    /// it is not running. The file stamps are taken before anything is
    /// loaded, so a change during a sink's build is not missed.
    pub(crate) fn start(&self, plan: Plan) {
        let mut started = self.inner.started.lock();
        if *started {
            return;
        }
        let said = vec![Said::default(); plan.announced.len()];
        let mut state = Watcher { stamps: stamps(&plan.files), said, rotations: None, plan };
        state.check(true);
        let weak = Arc::downgrade(&self.inner);
        let spawned = std::thread::Builder::new().name("vigil-https-trust".to_owned()).spawn(move || state.run(&weak));
        match spawned {
            Ok(_) => *started = true,
            // Sinks still poll on their own; a later build tries again.
            Err(e) => log::warn!(target: "vigil::https", "cannot start the trust watcher thread: {e}"),
        }
    }
}

fn stamps(files: &[PathBuf]) -> Vec<FileStamp> {
    files.iter().map(|p| FileStamp::of(p)).collect()
}

struct Watcher {
    plan: Plan,
    stamps: Vec<FileStamp>,
    said: Vec<Said>,
    /// The rotations as checked against the last trust set that loaded.
    rotations: Option<Vec<RotationFacts>>,
}

impl Watcher {
    /// Polls until every config clone is gone.
    fn run(mut self, weak: &Weak<Inner>) {
        loop {
            std::thread::sleep(self.plan.interval.max(MIN_POLL));
            let Some(inner) = weak.upgrade() else { return };
            let now = stamps(&self.plan.files);
            let changed = now != self.stamps;
            if changed {
                self.stamps = now;
                inner.generation.fetch_add(1, Ordering::AcqRel);
                let handles = inner.wake.lock().clone();
                // Outside the lock: a wake waits up to a second for its supervisor.
                for handle in handles {
                    handle.wake();
                }
            }
            drop(inner);
            self.check(changed);
        }
    }

    /// When the files changed (or were never loaded), loads the trust set,
    /// records it and checks each announced rotation against it; then logs
    /// what is due (a missing CA is said again daily). A trust set that does
    /// not load is left to the sink to report; the last good one stays in
    /// the report.
    fn check(&mut self, changed: bool) {
        let plan = &self.plan;
        if plan.trust_files.is_empty() && !plan.webpki {
            return;
        }
        let now = now_unix();
        if (changed || self.rotations.is_none())
            && let Ok(trust) = load_trust(&plan.trust_files, plan.webpki)
        {
            let rotations = rotation::evaluate(&plan.announced, &trust);
            plan.stats.trust_checked(trust_status(&trust, now), rotations.clone());
            self.rotations = Some(rotations);
        }
        for (facts, said) in self.rotations.iter().flatten().zip(&mut self.said) {
            let days = facts.announced.days_left(now);
            if let Some(level) = said.due(facts.trusted_in.is_some(), days, plan.alarm, now) {
                rotation::log(&plan.endpoint, facts, level, now);
            }
        }
    }
}

/// The trust set as the readiness report shows it.
pub(crate) fn trust_status(trust: &TrustSet, now: i64) -> TrustStatus {
    TrustStatus {
        files: trust.per_file.iter().map(|(p, _)| p.display().to_string()).collect(),
        webpki_roots: trust.webpki,
        anchors: trust
            .anchors
            .iter()
            .map(|a| AnchorStatus {
                file: a.file.display().to_string(),
                status: CertificateStatus { days_left: a.info.days_left(now), certificate: a.info.clone() },
            })
            .collect(),
    }
}
