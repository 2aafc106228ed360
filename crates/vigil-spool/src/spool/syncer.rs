//! The sync thread: runs the interval policy's `fdatasync`s beside the
//! writer, so that writing goes on while the disk flushes.
//!
//! The writer hands it [`Job`]s: a segment as soon as it is sealed (so the
//! disk flushes it while the writer fills the next), and at each interval
//! the files written since, with the sequence number written up to.
//! Everything written before a job was handed over is on the kernel's side
//! of `write`, and jobs run in order, so when every file's `fdatasync`
//! returns, every record below `end` is durable, and the thread publishes
//! `end` in the shared durable position. A few jobs may be in flight; the
//! writer waits when more would be.
//!
//! The thread shares only the durable position and the files with the
//! writer, not the spool (whose lock a late job must not hold). It ends when
//! the writer is dropped, after the job in hand.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};

use crate::error::SpoolError;

/// One round of syncs.
#[derive(Debug)]
pub(super) struct Job {
    /// Files to `fdatasync`, in order, with their paths (for errors).
    pub(super) files: Vec<(Arc<File>, PathBuf)>,
    /// The directory, when a segment was created since the last sync.
    pub(super) dir: Option<PathBuf>,
    /// Every record below this number was written before the job.
    pub(super) end: u64,
}

/// How a job ended: `Err` names the file that could not be synced.
pub(super) type Outcome = Result<(), SpoolError>;

/// The writer's handle on its sync thread.
#[derive(Debug)]
pub(super) struct Syncer {
    jobs: Sender<Job>,
    done: Receiver<Outcome>,
    /// Jobs handed over whose outcome is not collected yet.
    in_flight: usize,
    /// The spool's directory, to name in the error when the thread is gone.
    dir: PathBuf,
}

impl Syncer {
    /// Starts the thread; `None` when no thread can be spawned (the writer
    /// then syncs on its own thread).
    pub(super) fn start(durable_end: Arc<AtomicU64>, dir: PathBuf) -> Option<Syncer> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let (tx, done) = mpsc::channel();
        std::thread::Builder::new()
            .name("vigil-spool-sync".into())
            .spawn(move || {
                // Jobs run in the order handed over, so `end` only grows.
                for job in rx {
                    let outcome = run(&job);
                    if outcome.is_ok() {
                        durable_end.fetch_max(job.end, Ordering::AcqRel);
                    }
                    if tx.send(outcome).is_err() {
                        break;
                    }
                }
            })
            .ok()?;
        Some(Syncer { jobs, done, in_flight: 0, dir })
    }

    /// Hands `job` over; gives it back when the thread is gone.
    pub(super) fn submit(&mut self, job: Job) -> Result<(), Job> {
        self.jobs.send(job).map_err(|e| e.0)?;
        self.in_flight += 1;
        Ok(())
    }

    /// Collects the outcomes of the jobs that have ended, waiting until at
    /// most `keep` are still in flight; the first error among them, if any.
    pub(super) fn collect(&mut self, keep: usize) -> Outcome {
        let mut first = Ok(());
        while self.in_flight > 0 {
            let outcome = if self.in_flight > keep {
                self.done.recv().ok()
            } else {
                match self.done.try_recv() {
                    Ok(outcome) => Some(outcome),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => None,
                }
            };
            self.in_flight -= 1;
            // The thread never panics; were it gone, a job's syncs are not known to have run.
            let outcome = outcome.unwrap_or_else(|| {
                let gone = std::io::Error::other("the sync thread is gone");
                Err(SpoolError::io("sync", &self.dir, &gone))
            });
            if first.is_ok() {
                first = outcome;
            }
        }
        first
    }
}

fn run(job: &Job) -> Outcome {
    for (file, path) in &job.files {
        file.sync_data().map_err(|e| SpoolError::io("sync", path, &e))?;
    }
    if let Some(dir) = &job.dir {
        File::open(dir).and_then(|d| d.sync_all()).map_err(|e| SpoolError::io("sync", dir, &e))?;
    }
    Ok(())
}
