//! vigil-bench: Vigil measured against the raw limits of this machine and
//! against ractor, in one run.
//!
//! # How the pieces fit
//!
//! [`run`] measures every figure with a [`Config`] (full, quick or smoke
//! sizes) and returns a [`Report`]. A [`Figure`] holds Vigil's repetitions
//! as a [`Summary`] (median, min, max), the [`Reference`]s it is compared
//! with (the raw limit as its baseline, ractor as its peer, and any extra
//! raw limits), each measured in the same process and interleaved with it
//! (the order of variants alternates every round), and its target as a list
//! of [`Bound`]s judged on medians. Where it matters (`call_rtt`), a figure
//! and its references also carry the process's CPU time per operation
//! (`cpu_ns_per_op`), shown in the table's CPU column. [`Report::to_json`] and
//! [`Report::to_table`] render it; the JSON carries every median, so each
//! ratio can be recomputed.
//!
//! The `vigil-bench` binary is the front end:
//! `cargo run --release -p vigil-bench -- [--json] [--quick]`.
//!
//! # Example
//!
//! ```no_run
//! use vigil_bench::{Config, run};
//!
//! let report = run(&Config::quick(), &mut |step| eprintln!("{step}"))?;
//! let tell = report.figure("tell_throughput").unwrap();
//! println!("{:.2}x raw crossbeam, {:.1}x ractor", tell.ratio_to_baseline().unwrap(), tell.ratio_to_peer().unwrap());
//! println!("{}", report.to_json());
//! # Ok::<(), vigil_bench::BenchError>(())
//! ```

mod call;
mod config;
mod cpu;
mod delivery;
mod emit;
mod error;
mod hang;
mod harness;
mod peer;
mod report;
mod restart;
mod rss;
mod spool;
mod stats;
mod tell;
mod tree;

use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub use config::Config;
pub use error::BenchError;
pub use report::{Bound, Figure, Reference, Report, Role, RunInfo};
pub use rss::{ProbeKind, probe_rss};
pub use stats::Summary;

/// Every figure key, in the order [`run`] measures them.
pub const KEYS: [&str; 15] = [
    "tell_throughput",
    "call_rtt",
    "call_rtt_loaded",
    "restart_latency",
    "watchdog_overhead",
    "hang_detection",
    "deadlock_check_cost",
    "emit_cost",
    "emit_blocked_p999",
    "delivery_throughput",
    "tree_scale",
    "idle_actor_rss",
    "spool_throughput",
    "emit_cost_spool",
    "spool_recovery",
];

/// Measures every figure. `progress` hears the name of each figure as it
/// starts.
///
/// # Errors
///
/// The first [`BenchError`] of any figure: a setup failure, or a measured
/// run whose result was wrong (so its time would mean nothing).
pub fn run(config: &Config, progress: &mut dyn FnMut(&str)) -> Result<Report, BenchError> {
    run_figures(config, &KEYS, progress)
}

/// Measures only the figures named in `keys` (in [`KEYS`] order), for
/// profiling one of them.
///
/// # Errors
///
/// [`BenchError::Setup`] for a key that is not in [`KEYS`]; otherwise as
/// [`run`].
pub fn run_figures(config: &Config, keys: &[&str], progress: &mut dyn FnMut(&str)) -> Result<Report, BenchError> {
    if let Some(unknown) = keys.iter().find(|k| !KEYS.contains(k)) {
        return Err(BenchError::setup("run", format!("no figure named {unknown:?}; figures: {}", KEYS.join(", "))));
    }
    let started = utc_now();
    let load_start = loadavg();
    let clock = Instant::now();
    harness::silence_induced_panics();
    let rt = peer::runtime().map_err(|e| BenchError::setup("run", format!("tokio runtime: {e}")))?;
    let mut figures = Vec::new();
    for key in KEYS.into_iter().filter(|k| keys.contains(k)) {
        progress(key);
        let figure = match key {
            "tell_throughput" => tell::figure(config, &rt)?,
            "call_rtt" => call::figure(config, &rt)?,
            "call_rtt_loaded" => call::loaded_figure(config)?,
            "restart_latency" => restart::figure(config, &rt)?,
            "watchdog_overhead" => hang::overhead_figure(config)?,
            "hang_detection" => hang::detection_figure(config)?,
            "deadlock_check_cost" => hang::deadlock_figure(config)?,
            "emit_cost" => emit::cost_figure(config)?,
            "emit_blocked_p999" => emit::blocked_figure(config)?,
            "delivery_throughput" => delivery::figure(config)?,
            "tree_scale" => tree::figure(config, &rt)?,
            "spool_throughput" => spool::throughput_figure(config)?,
            "emit_cost_spool" => spool::emit_figure(config)?,
            "spool_recovery" => spool::recovery_figure(config)?,
            _ => rss::figure(config)?,
        };
        figures.push(figure);
    }
    drop(rt);
    let run = RunInfo {
        mode: config.mode,
        reps: config.reps,
        started,
        seconds: clock.elapsed().as_secs_f64(),
        cpus: std::thread::available_parallelism().map_or(0, usize::from),
        load: (load_start, loadavg()),
        release: !cfg!(debug_assertions),
    };
    Ok(Report { run, figures })
}

/// The 1-minute load average, from `/proc/loadavg`.
fn loadavg() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

/// Now, in UTC, as `YYYY-MM-DDTHH:MM:SSZ`.
fn utc_now() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    utc(secs)
}

/// Seconds since the epoch as a UTC date and time (civil-from-days, proleptic Gregorian).
fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_civil_utc() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_767_225_599), "2025-12-31T23:59:59Z");
    }
}
