//! Helpers shared by the integration tests: an event and a gate that hold tasks until the
//! test releases them (never a sleep), a task that holds a worker process until the test lets
//! it go, and the smallest executor for `.await`.

// Each test binary compiles this module and uses a part of it.
#![allow(dead_code)]

pub(crate) mod frames;
pub(crate) mod second_shutdown;

use std::future::IntoFuture;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::pin::pin;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;

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

/// The smallest executor for `.await`: poll, park until woken, poll again.
pub(crate) fn block_on<F: IntoFuture>(future: F) -> F::Output {
    struct Unparker(thread::Thread);

    impl Wake for Unparker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }

    let mut future = pin!(future.into_future());
    let waker = Waker::from(Arc::new(Unparker(thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(output) => return output,
            Poll::Pending => thread::park(),
        }
    }
}

/// Connects to `path`, says it started, and blocks until the test writes a byte (or closes):
/// holds a worker process busy for exactly as long as the test wants.
#[concurrent_futures::task]
pub(crate) fn hold(path: String) -> u32 {
    let mut stream = UnixStream::connect(path).expect("the test listens");
    stream.write_all(b"s").expect("the test reads");
    let mut byte = [0_u8; 1];
    let _ = stream.read(&mut byte);
    std::process::id()
}

/// A listener `hold` tasks connect to, and its path; each accepted connection is a task that
/// has started.
pub(crate) fn start_listener(name: &str) -> (UnixListener, String) {
    let path = std::env::temp_dir().join(format!("cf-{name}-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    (
        UnixListener::bind(&path).unwrap(),
        path.to_string_lossy().into_owned(),
    )
}

/// Waits for the next `hold` task to start; write a byte to (or drop) the stream to let it go.
pub(crate) fn accept_started(listener: &UnixListener) -> UnixStream {
    let (mut stream, _) = listener.accept().unwrap();
    let mut byte = [0_u8; 1];
    stream.read_exact(&mut byte).unwrap();
    stream
}

/// A one-worker pool busy with a started `hold` task, with a pipeline of one, so that what is
/// submitted next stays queued in the pool: the pool, the held task, and the stream that lets
/// it go (write a byte or drop it).
pub(crate) fn one_worker_held(
    name: &str,
) -> (
    Arc<concurrent_futures::ProcessPoolExecutor>,
    concurrent_futures::Future<u32>,
    UnixStream,
) {
    let (listener, path) = start_listener(name);
    let executor = Arc::new(
        concurrent_futures::ProcessPoolExecutor::builder()
            .max_workers(1)
            .pipeline_depth(1)
            .build()
            .unwrap(),
    );
    let running = executor.submit(hold(path));
    let started = accept_started(&listener);
    (executor, running, started)
}
