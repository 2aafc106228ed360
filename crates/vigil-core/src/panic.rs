//! Turning panics on actor threads into values.
//!
//! A chained panic hook is installed once. On a runner thread it records the
//! panic's location for the exit reason and logs the panic through `log`
//! instead of printing it to stderr. On any other thread it calls the hook
//! that was installed before, so the rest of the program sees no change.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::sync::Once;

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

/// Builds the exit reason of a caught panic.
pub(crate) fn panicked(hook: Hook, payload: Box<dyn Any + Send>, message_type: Option<&'static str>) -> ExitReason {
    let location = LOCATION.with(|slot| slot.borrow_mut().take());
    ExitReason::Panicked { hook, message: payload_text(&*payload), location, message_type }
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
