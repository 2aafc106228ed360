//! Interleaved repetitions and the panics the benchmarks induce on purpose.

use std::sync::Once;

use crate::cpu::process_cpu;
use crate::error::BenchError;
use crate::stats::Summary;

/// The payload of every panic a benchmark induces.
pub(crate) const INDUCED: &str = "vigil-bench: induced panic";

static SILENCE: Once = Once::new();

/// Keeps induced panics off stderr; any other panic still reaches the hook
/// that was installed before. Vigil chains its own hook on top of this one
/// for its runner threads, so its panic handling is measured as it is.
pub(crate) fn silence_induced_panics() {
    SILENCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<&str>() != Some(&INDUCED) {
                previous(info);
            }
        }));
    });
}

/// Panics with [`INDUCED`] as the payload.
pub(crate) fn induce_panic() -> ! {
    std::panic::panic_any(INDUCED)
}

/// One measured variant: a name for errors and a closure that runs one
/// repetition and returns its value.
pub(crate) type Variant<'a> = Box<dyn FnMut() -> Result<f64, BenchError> + 'a>;

/// Runs every variant once untimed (warm-up), then `reps` rounds. The order
/// alternates each round (forward, then backward), so that no variant always
/// runs first or last while the machine's load drifts.
///
/// # Errors
///
/// The first error of any variant; a non-finite value is a
/// [`BenchError::Check`].
pub(crate) fn interleave(
    figure: &'static str,
    reps: usize,
    variants: &mut [Variant<'_>],
) -> Result<Vec<Summary>, BenchError> {
    Ok(interleave_cpu(figure, reps, variants, &[])?.into_iter().map(|(value, _)| value).collect())
}

/// As [`interleave`], and also the process's CPU time per operation of
/// each repetition, in nanoseconds, for the variants that `ops` gives an
/// operation count (by position; `None` for the others). The CPU time is
/// the whole process's over the repetition, so it includes every thread the
/// variant runs (the server's, the runtime's workers) and its setup.
///
/// # Errors
///
/// As [`interleave`].
pub(crate) fn interleave_cpu(
    figure: &'static str,
    reps: usize,
    variants: &mut [Variant<'_>],
    ops: &[u64],
) -> Result<Vec<(Summary, Option<Summary>)>, BenchError> {
    for variant in variants.iter_mut() {
        variant()?;
    }
    let n = variants.len();
    let mut samples = vec![Vec::with_capacity(reps); n];
    let mut cpu = vec![Vec::with_capacity(reps); n];
    for rep in 0..reps {
        let order: Vec<usize> = if rep % 2 == 0 { (0..n).collect() } else { (0..n).rev().collect() };
        for i in order {
            let before = process_cpu();
            samples[i].push(variants[i]()?);
            if let Some(&ops) = ops.get(i) {
                cpu[i].push(process_cpu().saturating_sub(before).as_nanos() as f64 / ops.max(1) as f64);
            }
        }
    }
    let summary =
        |s: Vec<f64>| Summary::of(s).ok_or_else(|| BenchError::check(figure, "a repetition gave no finite value"));
    samples.into_iter().zip(cpu).map(|(s, c)| Ok((summary(s)?, Summary::of(c)))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn rounds_alternate_their_order_after_a_warm_up() {
        let log = RefCell::new(Vec::new());
        let mut variants: Vec<Variant<'_>> = vec![
            Box::new(|| {
                log.borrow_mut().push('a');
                Ok(1.0)
            }),
            Box::new(|| {
                log.borrow_mut().push('b');
                Ok(2.0)
            }),
        ];
        let summaries = interleave("test", 3, &mut variants).unwrap();
        drop(variants);
        assert_eq!(log.into_inner().into_iter().collect::<String>(), "ab".to_owned() + "ab" + "ba" + "ab");
        assert_eq!(summaries[0].samples, vec![1.0; 3]);
        assert_eq!(summaries[1].median, 2.0);
    }

    #[test]
    fn cpu_time_is_taken_per_operation_for_the_variants_given_a_count() {
        let spin = |ms: u64| {
            let start = std::time::Instant::now();
            while start.elapsed() < std::time::Duration::from_millis(ms) {
                std::hint::spin_loop();
            }
            Ok(1.0)
        };
        let mut variants: Vec<Variant<'_>> = vec![Box::new(|| spin(5)), Box::new(|| spin(1))];
        let out = interleave_cpu("test", 2, &mut variants, &[1000]).unwrap();
        let cpu = out[0].1.as_ref().expect("the first variant has a count");
        assert_eq!(cpu.samples.len(), 2);
        assert!(cpu.median > 0.0);
        assert!(out[1].1.is_none());
        assert_eq!(out[1].0.median, 1.0);
    }

    #[test]
    fn a_failing_variant_stops_the_figure() {
        let mut variants: Vec<Variant<'_>> =
            vec![Box::new(|| Ok(1.0)), Box::new(|| Err(BenchError::check("test", "boom")))];
        assert!(matches!(interleave("test", 3, &mut variants), Err(BenchError::Check { .. })));
        let mut nan: Vec<Variant<'_>> = vec![Box::new(|| Ok(f64::NAN))];
        assert!(matches!(interleave("test", 1, &mut nan), Err(BenchError::Check { .. })));
    }

    #[test]
    fn induced_panics_are_caught_as_their_payload() {
        silence_induced_panics();
        let payload = std::panic::catch_unwind(|| induce_panic()).unwrap_err();
        assert_eq!(payload.downcast_ref::<&str>(), Some(&INDUCED));
    }
}
