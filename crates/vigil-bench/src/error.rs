//! The one error type of a benchmark run.

use std::fmt;

/// A benchmark could not be measured. Every variant names the figure it
/// happened in.
#[derive(Debug)]
#[non_exhaustive]
pub enum BenchError {
    /// Something the measurement needs failed to start or stop (a Vigil
    /// tree, a ractor actor, a thread, the collector).
    Setup {
        /// The figure's key.
        figure: &'static str,
        /// What failed, with its error rendered.
        what: String,
    },
    /// A measured run produced a wrong result (a sum that does not add up, a
    /// restart that did not happen, an emit that blocked). Its time would
    /// mean nothing, so the run stops.
    Check {
        /// The figure's key.
        figure: &'static str,
        /// What was wrong.
        problem: String,
    },
    /// Running the RSS probe process failed.
    Probe {
        /// The command line.
        command: String,
        /// What went wrong: the I/O error, the exit status or the output that did not parse.
        problem: String,
    },
}

impl BenchError {
    pub(crate) fn setup(figure: &'static str, what: impl fmt::Display) -> BenchError {
        BenchError::Setup { figure, what: what.to_string() }
    }

    pub(crate) fn check(figure: &'static str, problem: impl fmt::Display) -> BenchError {
        BenchError::Check { figure, problem: problem.to_string() }
    }
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchError::Setup { figure, what } => write!(f, "{figure}: setup failed: {what}"),
            BenchError::Check { figure, problem } => write!(f, "{figure}: measured run was wrong: {problem}"),
            BenchError::Probe { command, problem } => write!(f, "RSS probe `{command}` failed: {problem}"),
        }
    }
}

impl std::error::Error for BenchError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_figure() {
        let e = BenchError::check("tell_throughput", "sum 3 != 6");
        assert_eq!(e.to_string(), "tell_throughput: measured run was wrong: sum 3 != 6");
        let e = BenchError::setup("call_rtt", "no runtime");
        assert_eq!(e.to_string(), "call_rtt: setup failed: no runtime");
    }
}
