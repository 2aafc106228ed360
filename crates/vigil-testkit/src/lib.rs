//! The helpers every Vigil test binary shares, in one copy.
//!
//! - [`DEADLINE`] and the polling helpers ([`poll`], [`eventually`],
//!   [`wait_until`]): tests wait on a condition, never on a bare sleep.
//! - [`TempDir`]: a scratch directory removed on drop, with atomic writes for
//!   files a sink polls.
//! - [`TestCa`]: certificates made with rcgen: CAs, intermediates, server and
//!   client certificates, expired ones ([`days_from_now`] for validity bounds).
//! - [`http_get`]: a plain-HTTP GET, as a probe or a scraper sends it.
//! - [`NotifyListener`]: systemd's side of `NOTIFY_SOCKET`, recording the
//!   datagrams a service sends.
//! - [`init_logging`] and [`capture_logs`]: one process-wide logger that
//!   prints through `env_logger` (quiet unless `RUST_LOG` is set) and, once a
//!   test asks for it, records every line so the test can assert on it.
//!
//! The kit depends on no Vigil crate, so that each crate's tests can use it.
//! It is not published.

mod ca;
mod http;
mod logging;
mod notify;
mod poll;
mod temp;

pub use ca::{TestCa, days_from_now};
pub use http::http_get;
pub use logging::{LogRecord, capture_logs, captured_logs, init_logging};
pub use notify::{NotifyListener, count_lines_after, first_line, has_line};
pub use poll::{DEADLINE, eventually, poll, wait_until};
pub use temp::{TempDir, write_atomically};
