//! Starting one worker process: the executable, its socket, and the thread that serves it.

use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::Config;
use super::connection::{self, Doorbell};
use super::link::Link;
use super::scheduler::{Effects, Scheduler, Slot, signal};
use crate::process::entry::{
    WORKER_MARKER, started_as_worker_outside_worker_mode, test_entry_name,
};
use crate::sync::Arc;

/// Starts one worker (the caller counted it in `starting`) and its thread.
pub(super) fn spawn(scheduler: &Arc<Scheduler>) {
    let doorbell = Doorbell::new()
        .map(Arc::new)
        .map_err(|e| format!("cannot create a worker's doorbell: {e}"));
    let started = doorbell.and_then(|doorbell| {
        let (mut child, socket) = start_process(&scheduler.config)?;
        let pid = child.id();
        let direct = socket.try_clone().map_err(|e| {
            let _ = child.kill();
            let _ = child.wait();
            format!("cannot share the socket of worker {pid}: {e}")
        })?;
        let mut state = scheduler.lock();
        let worker = state.next_worker;
        let link = Link::new(socket, &doorbell, Arc::downgrade(scheduler), worker)
            .map(Arc::new)
            .map_err(|e| {
                let _ = child.kill();
                let _ = child.wait();
                format!("cannot watch the socket of worker {pid}: {e}")
            })?;
        state.next_worker += 1;
        let thread = start_thread(
            scheduler,
            worker,
            Arc::clone(&doorbell),
            child,
            Arc::clone(&link),
        )?;
        state.threads.push(thread);
        state.starting -= 1;
        // Enforces the handshake deadline, then task timeouts.
        scheduler.ensure_supervisor(&mut state);
        state.workers.insert(
            worker,
            Slot {
                pid,
                started_at: Instant::now(),
                in_flight: Default::default(),
                front_started: false,
                deadline: None,
                last_task_time: Duration::ZERO,
                ready: false,
                initialized: scheduler.config.initializer.is_none(),
                sent: 0,
                exit_sent: false,
                doom: None,
                doorbell,
                io_sleeping: false,
                socket: direct,
                link,
                leftover: Vec::new(),
            },
        );
        // One more worker changes who may pipeline.
        state.wake_all();
        Ok(())
    });
    match started {
        Ok(()) => {
            // A new handshake deadline to watch.
            scheduler.deadlines.notify_all();
            join_finished(scheduler);
        }
        Err(reason) => {
            let mut state = scheduler.lock();
            state.starting -= 1;
            let effects = if state.workers.is_empty() && state.starting == 0 {
                Effects {
                    fail: scheduler.break_pool(&mut state, reason),
                    ..Effects::default()
                }
            } else {
                tracing::warn!(target: "concurrent_futures", %reason, "cannot start another worker; the running ones go on");
                Effects::default()
            };
            drop(state);
            scheduler.apply(effects);
        }
    }
}

/// Joins the threads of workers that are gone. Each replaced worker leaves its connection
/// thread's handle behind; unjoined, a finished thread keeps its stack mapped, so a
/// long-lived pool that replaces workers (`max_tasks_per_child`, crashes, timeouts) would
/// grow by a stack per replacement until shutdown. Joined outside the lock: a finished
/// thread ends at once, but joining still waits for it.
fn join_finished(scheduler: &Arc<Scheduler>) {
    let finished: Vec<_> = {
        let mut state = scheduler.lock();
        let (finished, running) = std::mem::take(&mut state.threads)
            .into_iter()
            .partition(|thread: &thread::JoinHandle<()>| thread.is_finished());
        state.threads = running;
        finished
    };
    for thread in finished {
        let _ = thread.join();
    }
}

/// The current executable (or the configured one), with the marker naming its end of a
/// fresh socket pair; under `cargo test`, filtered down to the hidden worker test.
fn start_process(config: &Config) -> Result<(Child, UnixStream), String> {
    if started_as_worker_outside_worker_mode() {
        return Err(
            "this process was started as a pool worker but is running main: call \
             concurrent_futures::init() first in main, before creating any pool"
                .to_owned(),
        );
    }
    let executable = match &config.executable {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .map_err(|e| format!("cannot find the current executable to start workers: {e}"))?,
    };
    let (ours, theirs) =
        UnixStream::pair().map_err(|e| format!("cannot create a worker socket: {e}"))?;
    let mut command = Command::new(&executable);
    if config.executable.is_none() {
        if let Some(test) = test_entry_name() {
            command.args([
                test.as_str(),
                "--exact",
                "--nocapture",
                "--quiet",
                "--test-threads=1",
            ]);
        }
    }
    // The worker's end of the socket goes in as its stdin, which the worker moves aside at
    // once (tasks see /dev/null, as Python's workers do): no `pre_exec`, so std can start the
    // worker with posix_spawn instead of copying this process's page tables with fork.
    command
        .env(WORKER_MARKER, "0")
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)));
    let child = command
        .spawn()
        .map_err(|e| format!("cannot start worker {}: {e}", executable.display()))?;
    Ok((child, ours))
}

fn start_thread(
    scheduler: &Arc<Scheduler>,
    worker: u64,
    doorbell: Arc<Doorbell>,
    child: Child,
    link: Arc<Link>,
) -> Result<thread::JoinHandle<()>, String> {
    let pid = child.id();
    let s = Arc::clone(scheduler);
    thread::Builder::new()
        .name(format!("cf-pool-{pid}"))
        .spawn(move || {
            s.mark_current_thread();
            connection::serve(&s, worker, &doorbell, &link, child);
        })
        .map_err(|e| {
            signal(pid, libc::SIGKILL);
            reap(pid);
            format!("cannot start the thread of worker {pid}: {e}")
        })
}

/// Waits for a killed worker whose `Child` went down with the closure of a thread that could
/// not start (dropping a `Child` does not reap it), so that it does not stay a zombie.
fn reap(pid: u32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: waitpid on our own child, with no status pointer; touches no memory of ours.
    #[allow(unsafe_code)]
    unsafe {
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
}
