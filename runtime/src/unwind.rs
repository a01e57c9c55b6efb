//! Turns a panic into data: catches it and records its message, location and backtrace.

use std::any::Any;
use std::backtrace::{Backtrace, BacktraceStatus};
use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe, PanicHookInfo};
use std::sync::Once;

use crate::error::Error;

thread_local! {
    /// True while this thread runs a task under [`catch`]: only then does the hook record.
    static CATCHING: Cell<bool> = const { Cell::new(false) };
    /// Where the last caught panic happened, written by the hook, read by [`catch`].
    static LAST_PANIC: RefCell<Option<(Option<String>, Option<String>)>> = const { RefCell::new(None) };
}

/// Runs `f`; a panic becomes [`Error::Panicked`] with its message, location and (when
/// `RUST_BACKTRACE` is set) backtrace.
pub(crate) fn catch<R>(f: impl FnOnce() -> R) -> Result<R, Error> {
    install_hook();
    let was_catching = CATCHING.with(|c| c.replace(true));
    let outcome = panic::catch_unwind(AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(was_catching));
    outcome.map_err(|payload| {
        let (location, backtrace) = LAST_PANIC
            .with(|p| p.borrow_mut().take())
            .unwrap_or_default();
        Error::Panicked {
            message: payload_message(payload.as_ref()),
            location,
            backtrace,
        }
    })
}

/// The text of a panic payload: `panic!("...")` gives `&str` or `String`.
pub(crate) fn payload_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_owned()
    }
}

/// Chains a hook in front of the current one, once per process. The previous hook still runs,
/// so a task's panic is still printed as usual; ours only records where it happened, because
/// `catch_unwind` hands back the payload without its location.
fn install_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info: &PanicHookInfo<'_>| {
            if CATCHING.with(Cell::get) {
                let location = info.location().map(|l| l.to_string());
                let backtrace = Backtrace::capture();
                let backtrace = (backtrace.status() == BacktraceStatus::Captured)
                    .then(|| backtrace.to_string());
                LAST_PANIC.with(|p| *p.borrow_mut() = Some((location, backtrace)));
            }
            previous(info);
        }));
    });
}
