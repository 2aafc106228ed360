//! How big each measurement is, per mode.

use std::path::PathBuf;

/// The sizes of one run. [`Config::full`] is the benchmark the targets are
/// judged on; [`Config::quick`] is a shorter run of the same shape;
/// [`Config::smoke`] only proves that every measurement still works.
///
/// # Examples
///
/// ```
/// use vigil_bench::Config;
///
/// let config = Config::full();
/// assert!(config.reps >= 5);
/// assert_eq!(config.tree_supervisors * config.tree_workers, 10_000);
/// assert!(Config::quick().tell_messages < config.tell_messages);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `full`, `quick` or `smoke`.
    pub mode: &'static str,
    /// Timed repetitions per figure, after one untimed warm-up round.
    pub reps: usize,
    /// Messages per `tell_throughput` repetition for Vigil and the raw channel.
    pub tell_messages: u64,
    /// Messages per `tell_throughput` repetition for ractor, which is slower
    /// per message (its rate is steady well before this many).
    pub peer_tell_messages: u64,
    /// Calls per `call_rtt` repetition for Vigil and the raw RPC.
    pub calls: u64,
    /// Calls per `call_rtt` repetition for ractor, which is slower per call.
    pub peer_calls: u64,
    /// Calls per `call_rtt_loaded` repetition (Vigil and the old call
    /// path), each tens of microseconds with busy threads on the cores.
    pub loaded_calls: u64,
    /// Restarts per `restart_latency` repetition.
    pub restarts: u64,
    /// The hang timeout in `watchdog_overhead` and `hang_detection`.
    pub hang_timeout: std::time::Duration,
    /// Hangs per `hang_detection` repetition (each leaves a thread blocked
    /// until the repetition ends).
    pub hangs: u64,
    /// Supervisors under the root in `tree_scale`.
    pub tree_supervisors: usize,
    /// Workers under each of those supervisors.
    pub tree_workers: usize,
    /// Idle actors started for `idle_actor_rss`.
    pub idle_actors: usize,
    /// Events each of the 4 producers emits per `emit_cost` repetition.
    pub emits_per_producer: u64,
    /// Events each of the 8 producers emits per `emit_blocked_p999` repetition.
    pub blocked_emits_per_producer: u64,
    /// Events delivered per `delivery_throughput` repetition.
    pub delivery_events: u64,
    /// Events per batch in `delivery_throughput`.
    pub batch_events: usize,
    /// Events per repetition of `spool_throughput`, `emit_cost_spool` (over
    /// 4 producers) and `spool_recovery`.
    pub spool_events: u64,
    /// The `vigil-bench` executable, run as a fresh process for each
    /// `idle_actor_rss` repetition so earlier figures cannot skew the RSS.
    /// `None` measures in this process instead.
    pub probe_exe: Option<PathBuf>,
}

impl Config {
    /// The full benchmark: at most about 3 minutes on a 2-core machine.
    pub fn full() -> Config {
        Config {
            mode: "full",
            reps: 5,
            tell_messages: 10_000_000,
            peer_tell_messages: 3_000_000,
            calls: 100_000,
            peer_calls: 10_000,
            loaded_calls: 5_000,
            restarts: 1_000,
            hang_timeout: std::time::Duration::from_millis(100),
            hangs: 5,
            tree_supervisors: 100,
            tree_workers: 100,
            idle_actors: 1_000,
            emits_per_producer: 1_000_000,
            blocked_emits_per_producer: 100_000,
            delivery_events: 500_000,
            batch_events: 1_000,
            spool_events: 1_000_000,
            probe_exe: None,
        }
    }

    /// A shorter run of the same shape: under 30 s.
    pub fn quick() -> Config {
        Config {
            mode: "quick",
            reps: 5,
            tell_messages: 1_000_000,
            peer_tell_messages: 300_000,
            calls: 20_000,
            peer_calls: 5_000,
            loaded_calls: 1_000,
            restarts: 100,
            // 2,000 actors; the target is judged per actor (150 µs = 1.5 s / 10,000).
            tree_supervisors: 20,
            emits_per_producer: 100_000,
            blocked_emits_per_producer: 20_000,
            delivery_events: 100_000,
            spool_events: 200_000,
            ..Config::full()
        }
    }

    /// Every measurement at a tiny size, for tests of the benchmark itself
    /// (seconds in a debug build). Its figures mean nothing.
    pub fn smoke() -> Config {
        Config {
            mode: "smoke",
            reps: 2,
            tell_messages: 2_000,
            peer_tell_messages: 2_000,
            calls: 200,
            peer_calls: 100,
            loaded_calls: 100,
            restarts: 5,
            hang_timeout: std::time::Duration::from_millis(20),
            hangs: 2,
            tree_supervisors: 3,
            tree_workers: 4,
            idle_actors: 20,
            emits_per_producer: 1_000,
            blocked_emits_per_producer: 500,
            delivery_events: 3_000,
            batch_events: 1_000,
            spool_events: 2_000,
            probe_exe: None,
        }
    }

    /// The same configuration with the RSS probe executable set. Defaults to
    /// `None`.
    #[must_use]
    pub fn probe_exe(mut self, exe: impl Into<PathBuf>) -> Config {
        self.probe_exe = Some(exe.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mode_repeats_and_the_full_run_has_the_issue_sizes() {
        let full = Config::full();
        assert!(full.reps >= 5);
        assert_eq!(full.tell_messages, 10_000_000);
        assert_eq!(full.tree_supervisors * full.tree_workers, 10_000);
        assert_eq!(full.idle_actors, 1_000);
        assert_eq!(full.batch_events, 1_000);
        assert!(Config::quick().reps >= 5);
        assert!(Config::smoke().reps >= 2);
    }
}
