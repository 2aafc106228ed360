//! Medians, ranges and percentiles of repeated measurements.

use std::time::Duration;

/// The median, minimum and maximum of a set of repetitions, with the
/// repetitions themselves.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// The median repetition (the mean of the two middle ones for an even count).
    pub median: f64,
    /// The smallest repetition.
    pub min: f64,
    /// The largest repetition.
    pub max: f64,
    /// Every repetition, in the order it ran.
    pub samples: Vec<f64>,
}

impl Summary {
    /// Summarises repetitions. `None` when there are none or one is not finite.
    ///
    /// # Examples
    ///
    /// ```
    /// use vigil_bench::Summary;
    ///
    /// let s = Summary::of(vec![3.0, 1.0, 2.0]).unwrap();
    /// assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
    /// assert_eq!(Summary::of(Vec::new()), None);
    /// ```
    pub fn of(samples: Vec<f64>) -> Option<Summary> {
        if samples.is_empty() || samples.iter().any(|s| !s.is_finite()) {
            return None;
        }
        let mut sorted = samples.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 { sorted[n / 2] } else { (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0 };
        Some(Summary { median, min: sorted[0], max: sorted[n - 1], samples })
    }
}

/// The `q`-quantile (0.0..=1.0) of `sorted` by the nearest-rank method, or
/// `None` for an empty slice.
pub(crate) fn quantile<T: Copy>(sorted: &[T], q: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    // Nearest rank: the smallest value with at least q of the samples at or below it.
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Nanoseconds per operation.
pub(crate) fn ns_per(elapsed: Duration, ops: u64) -> f64 {
    elapsed.as_nanos() as f64 / ops.max(1) as f64
}

/// Operations per second.
pub(crate) fn per_second(ops: u64, elapsed: Duration) -> f64 {
    ops as f64 / elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
}

/// The median of unsorted durations, in microseconds.
pub(crate) fn median_us(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    quantile(&samples, 0.5).map_or(f64::NAN, |d| d.as_secs_f64() * 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_even_count_averages_the_middle_pair() {
        let s = Summary::of(vec![4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!(s.median, 2.5);
        assert_eq!(s.samples, vec![4.0, 1.0, 3.0, 2.0]);
    }

    #[test]
    fn a_non_finite_sample_is_refused() {
        assert_eq!(Summary::of(vec![1.0, f64::NAN]), None);
    }

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let v: Vec<u32> = (1..=1000).collect();
        assert_eq!(quantile(&v, 0.999), Some(999));
        assert_eq!(quantile(&v, 0.5), Some(500));
        assert_eq!(quantile(&v, 1.0), Some(1000));
        assert_eq!(quantile(&v, 0.0), Some(1));
        assert_eq!(quantile::<u32>(&[], 0.5), None);
    }

    #[test]
    fn rates_and_per_op_times() {
        assert_eq!(ns_per(Duration::from_micros(1), 10), 100.0);
        assert_eq!(per_second(10, Duration::from_millis(100)), 100.0);
        assert_eq!(median_us(vec![Duration::from_micros(3), Duration::from_micros(1), Duration::from_micros(2)]), 2.0);
    }
}
