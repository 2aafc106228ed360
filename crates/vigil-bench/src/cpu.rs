//! CPU time spent by the whole process (user + system, every thread), for
//! the CPU cost of a figure next to its latency.

use std::time::Duration;

use rustix::time::{ClockId, clock_gettime};

/// The CPU time this process has used so far, all its threads (including
/// those that ended) together: `CLOCK_PROCESS_CPUTIME_ID`, in nanoseconds
/// (unlike `/proc/self/stat`, which counts 10 ms ticks).
pub(crate) fn process_cpu() -> Duration {
    let t = clock_gettime(ClockId::ProcessCPUTime);
    let secs = u64::try_from(t.tv_sec).unwrap_or(0);
    let nanos = u32::try_from(t.tv_nsec).unwrap_or(0);
    Duration::new(secs, nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_work_shows_up_as_cpu_time() {
        let before = process_cpu();
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(20) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        // At least some of the 20 ms of spinning ran on a CPU, however
        // loaded the machine.
        assert!(process_cpu() > before);
    }
}
