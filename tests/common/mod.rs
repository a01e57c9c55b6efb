//! Synchronisation helpers shared by the integration tests: an event and a gate that hold
//! tasks until the test releases them, never a sleep.

// Each test binary compiles this module and uses a part of it.
#![allow(dead_code)]

use std::sync::{Arc, Condvar, Mutex};

/// Python's `threading.Event`: set once, wait until set.
#[derive(Default)]
pub(crate) struct Event {
    set: Mutex<bool>,
    changed: Condvar,
}

impl Event {
    pub(crate) fn set(&self) {
        *self.set.lock().unwrap() = true;
        self.changed.notify_all();
    }

    pub(crate) fn wait(&self) {
        let mut set = self.set.lock().unwrap();
        while !*set {
            set = self.changed.wait(set).unwrap();
        }
    }
}

/// Holds pool tasks until opened; opens itself when dropped, so that a failed assertion
/// releases the tasks and the executor's drop cannot hang. Declare it after the executor.
pub(crate) struct Gate(pub(crate) Arc<Event>);

impl Gate {
    pub(crate) fn new() -> Self {
        Gate(Arc::new(Event::default()))
    }

    pub(crate) fn handle(&self) -> Arc<Event> {
        Arc::clone(&self.0)
    }

    pub(crate) fn open(&self) {
        self.0.set();
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.0.set();
    }
}
