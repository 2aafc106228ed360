//! Interleaved repetitions and the panics the benchmarks induce on purpose.

use std::sync::Once;

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
    for variant in variants.iter_mut() {
        variant()?;
    }
    let n = variants.len();
    let mut samples = vec![Vec::with_capacity(reps); n];
    for rep in 0..reps {
        let order: Vec<usize> = if rep % 2 == 0 { (0..n).collect() } else { (0..n).rev().collect() };
        for i in order {
            samples[i].push(variants[i]()?);
        }
    }
    samples
        .into_iter()
        .map(|s| Summary::of(s).ok_or_else(|| BenchError::check(figure, "a repetition gave no finite value")))
        .collect()
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
