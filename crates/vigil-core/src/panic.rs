//! Turning panics on actor threads into values.
//!
//! A chained panic hook is installed once. On a runner thread it records the
//! panic's location for the exit reason and logs the panic through `log`
//! instead of printing it to stderr. On any other thread it calls the hook
//! that was installed before, so the rest of the program sees no change.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;

use crate::error::BoxError;
use crate::exit::{ExitReason, Hook};

thread_local! {
    static ON_RUNNER: Cell<bool> = const { Cell::new(false) };
    static LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

static INSTALL: Once = Once::new();

/// Installs the chained hook. Idempotent.
pub(crate) fn install_hook() {
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if ON_RUNNER.with(Cell::get) {
                let location = info.location().map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
                let thread = std::thread::current();
                log::debug!(
                    target: "vigil",
                    "panic on actor thread {}: {} at {}",
                    thread.name().unwrap_or("?"),
                    payload_text(info.payload()),
                    location.as_deref().unwrap_or("unknown location"),
                );
                LOCATION.with(|slot| *slot.borrow_mut() = location);
            } else {
                previous(info);
            }
        }));
    });
}

/// Marks the current thread as a runner thread.
pub(crate) fn mark_runner_thread() {
    ON_RUNNER.with(|flag| flag.set(true));
}

/// Builds the exit reason of a caught panic. The payload is dropped here,
/// under [`drop_payload`]: a payload whose own `Drop` panics cannot take the
/// runner thread down.
pub(crate) fn panicked(hook: Hook, payload: Box<dyn Any + Send>, message_type: Option<&'static str>) -> ExitReason {
    let location = LOCATION.with(|slot| slot.borrow_mut().take());
    let message = payload_text(&*payload);
    drop_payload(payload);
    ExitReason::Panicked { hook, message, location, message_type }
}

/// The exit reason for an `Err` from a hook. The error is user code: its
/// `Display`, `source()` and `Drop` run under `catch_unwind`, and a long or
/// looping source chain is cut (see [`error_chain`]).
pub(crate) fn failed(hook: Hook, error: BoxError, message_type: Option<&'static str>) -> ExitReason {
    let text = error_chain(&*error);
    if let Err(panic) = drop_guarded(error) {
        log::warn!(target: "vigil", "dropping the error from the {hook} hook panicked: {panic}");
    }
    ExitReason::Failed { hook, error: text, message_type }
}

/// Runs user code under `catch_unwind`; a panic becomes an exit reason
/// naming `hook`.
pub(crate) fn catch<T>(hook: Hook, f: impl FnOnce() -> T) -> Result<T, ExitReason> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| panicked(hook, payload, None))
}

/// The text of a caught panic, and the payload dropped safely.
pub(crate) fn caught_text(payload: Box<dyn Any + Send>) -> String {
    LOCATION.with(|slot| slot.borrow_mut().take());
    let text = payload_text(&*payload);
    drop_payload(payload);
    text
}

/// How many nested panics from dropping payloads are caught before the last
/// payload is leaked instead: a payload whose drop panics with a payload whose
/// drop panics, and so on, must not loop forever.
const MAX_PAYLOAD_DROPS: usize = 8;

/// Drops a panic payload, catching a panic in its `Drop`.
pub(crate) fn drop_payload(mut payload: Box<dyn Any + Send>) {
    for _ in 0..MAX_PAYLOAD_DROPS {
        match catch_unwind(AssertUnwindSafe(move || drop(payload))) {
            Ok(()) => return,
            Err(next) => {
                LOCATION.with(|slot| slot.borrow_mut().take());
                log::warn!(target: "vigil", "dropping a panic payload panicked: {}", payload_text(&*next));
                payload = next;
            }
        }
    }
    std::mem::forget(payload);
}

/// Drops a value of user code, catching a panic in its `Drop`. Gives the
/// panic's message on failure.
pub(crate) fn drop_guarded<T>(value: T) -> Result<(), String> {
    catch_unwind(AssertUnwindSafe(move || drop(value))).map_err(caught_text)
}

/// The most bytes kept of one value's `Display`.
const MAX_DISPLAY: usize = 2048;
/// The most bytes of an error and its sources in an exit reason.
const MAX_CHAIN: usize = 8 * 1024;
/// The most sources followed in an error chain: `source()` may loop.
const MAX_SOURCES: usize = 32;

/// A `fmt::Write` that keeps at most `limit` bytes and then refuses more, so a
/// runaway `Display` stops early instead of growing memory.
struct Capped {
    text: String,
    limit: usize,
    cut: bool,
}

impl fmt::Write for Capped {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.limit.saturating_sub(self.text.len());
        if s.len() <= room {
            self.text.push_str(s);
            return Ok(());
        }
        let mut end = room;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.text.push_str(&s[..end]);
        self.cut = true;
        Err(fmt::Error)
    }
}

/// Renders user code's `Display`, at most [`MAX_DISPLAY`] bytes, catching a
/// panic in it.
pub(crate) fn display(value: &dyn fmt::Display) -> String {
    let mut out = Capped { text: String::new(), limit: MAX_DISPLAY, cut: false };
    match catch_unwind(AssertUnwindSafe(|| {
        let _ = fmt::write(&mut out, format_args!("{value}"));
    })) {
        Ok(()) => {
            if out.cut {
                out.text.push('…');
            }
            out.text
        }
        Err(payload) => format!("<Display panicked: {}>", caught_text(payload)),
    }
}

/// Renders an error and its sources as `error: source: source`, catching
/// panics in `Display` and `source()`, and cutting a chain that is too long
/// or loops.
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = display(error);
    let mut current = error;
    for depth in 0.. {
        let source = match catch_unwind(AssertUnwindSafe(|| current.source())) {
            Ok(source) => source,
            Err(payload) => {
                text.push_str(&format!(": <source() panicked: {}>", caught_text(payload)));
                break;
            }
        };
        let Some(cause) = source else { break };
        if depth >= MAX_SOURCES || text.len() >= MAX_CHAIN {
            text.push_str(": …");
            break;
        }
        text.push_str(": ");
        text.push_str(&display(cause));
        current = cause;
    }
    text
}

fn payload_text(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Endless;
    impl fmt::Display for Endless {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            loop {
                f.write_str("again ")?;
            }
        }
    }

    #[test]
    fn a_display_that_never_ends_is_cut() {
        let text = display(&Endless);
        assert!(text.len() <= MAX_DISPLAY + '…'.len_utf8());
        assert!(text.starts_with("again again") && text.ends_with('…'), "{text}");
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        let long = "é".repeat(MAX_DISPLAY);
        let text = display(&long);
        assert_eq!(text.chars().filter(|&c| c == 'é').count(), MAX_DISPLAY / 2);
    }
}
