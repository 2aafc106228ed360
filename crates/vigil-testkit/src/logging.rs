//! One process-wide logger for a test binary: `env_logger` output, plus an
//! in-memory record of every line once a test asks for it.
//!
//! A process has one logger. Tests that installed their own (`env_logger`
//! here, a capture logger there) could not share a binary; with this one,
//! [`init_logging`] and [`capture_logs`] work in any order, in any test.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// One log line, as [`capture_logs`] keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// The line's level.
    pub level: log::Level,
    /// The line's target, e.g. `vigil::https`.
    pub target: String,
    /// The formatted message.
    pub message: String,
}

struct KitLogger {
    /// Prints what `RUST_LOG` asks for (nothing at all if it is unset, but
    /// errors), through the test harness's capture.
    print: env_logger::Logger,
    /// Whether to keep every line: set by [`capture_logs`].
    capturing: AtomicBool,
    records: Mutex<Vec<LogRecord>>,
}

impl KitLogger {
    fn records(&self) -> MutexGuard<'_, Vec<LogRecord>> {
        // A test that panicked while holding the lock poisons it; the
        // records themselves are still whole.
        self.records.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl log::Log for KitLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.capturing.load(Ordering::Relaxed) || self.print.enabled(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.capturing.load(Ordering::Relaxed) {
            self.records().push(LogRecord {
                level: record.level(),
                target: record.target().to_owned(),
                message: record.args().to_string(),
            });
        }
        if self.print.matches(record) {
            self.print.log(record);
        }
    }

    fn flush(&self) {
        self.print.flush();
    }
}

fn logger() -> &'static KitLogger {
    static LOGGER: OnceLock<&'static KitLogger> = OnceLock::new();
    LOGGER.get_or_init(|| {
        let print = env_logger::Builder::from_default_env().is_test(true).build();
        let max = print.filter();
        let kit: &'static KitLogger = Box::leak(Box::new(KitLogger {
            print,
            capturing: AtomicBool::new(false),
            records: Mutex::new(Vec::new()),
        }));
        log::set_logger(kit).expect("the test kit's logger is the only logger in a test binary");
        log::set_max_level(max);
        kit
    })
}

/// Installs the kit's logger once per process: `env_logger` output, quiet
/// unless `RUST_LOG` is set. Call it from any test; later calls do nothing.
///
/// # Panics
///
/// Panics if something else installed a logger first.
///
/// ```
/// vigil_testkit::init_logging();
/// log::info!("shown with RUST_LOG=info");
/// ```
pub fn init_logging() {
    logger();
}

/// Installs the kit's logger (as [`init_logging`]) and from now on keeps
/// every line of every level and target, for [`captured_logs`].
///
/// Tests in one binary share the record: filter on something only your test
/// logs (its endpoint, its child's name), or give the test a binary of its own
/// when it counts lines any test could write.
///
/// # Panics
///
/// Panics if something else installed a logger first.
///
/// ```
/// vigil_testkit::capture_logs();
/// log::warn!(target: "doc", "first drop");
/// assert!(vigil_testkit::captured_logs().iter().any(|r| r.target == "doc" && r.message == "first drop"));
/// ```
pub fn capture_logs() {
    let kit = logger();
    kit.capturing.store(true, Ordering::Relaxed);
    log::set_max_level(log::LevelFilter::Trace);
}

/// Every line kept since the first [`capture_logs`], oldest first.
pub fn captured_logs() -> Vec<LogRecord> {
    logger().records().clone()
}
