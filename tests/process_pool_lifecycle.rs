//! `ProcessPoolExecutor`'s life and end: `shutdown` (idempotent, waiting, cancelling), `Drop`,
//! `terminate_workers` and `kill_workers`, nothing left behind after shutdown (processes,
//! zombies, descriptors, threads), and workers that exit when their parent is SIGKILLed.
//!
//! Nothing here sleeps. A task that must be running before the test acts reports its start
//! on a Unix socket (a [`Gate`]) and waits there until the test releases it. Checks that need
//! a process of their own (descriptor and thread counts, a parent to kill) run an ignored
//! helper test in a copy of this binary.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use concurrent_futures::{Error, Future, ProcessPoolExecutor, State, task};

concurrent_futures::enable_test_support!();

#[task]
fn square_number(x: u64) -> u64 {
    x * x
}

#[task]
fn my_pid() -> u32 {
    std::process::id()
}

#[task(timeout = "60s")]
fn square_with_timeout(x: u64) -> u64 {
    x * x
}

#[task]
fn panic_now() -> u32 {
    panic!("a panic before shutdown")
}

/// Connects to the test's gate, says it started, and waits until the test releases it (or
/// closes its end, or its listener is gone); returns this worker's pid.
#[task]
fn wait_at_gate(gate: String) -> u32 {
    let mut stream = UnixStream::connect(&gate).expect("the test's gate");
    stream.write_all(b"s").expect("report the start");
    let mut byte = [0u8; 1];
    let _ = stream.read(&mut byte);
    std::process::id()
}

/// Connects to the test's gate, says it started, and then blocks forever, whatever happens to
/// the gate: only the end of its worker ends it.
#[task]
fn report_start_then_hang(gate: String) -> u32 {
    let mut stream = UnixStream::connect(&gate).expect("the test's gate");
    stream.write_all(b"s").expect("report the start");
    loop {
        std::thread::park();
    }
}

/// Generous: only there so that a hang fails the test instead of blocking it.
const WATCHDOG: Duration = Duration::from_secs(60);

/// A Unix socket that tasks connect to when they start. Each connection is a started task,
/// held until [`Started::release`] or until dropped, so a failing test cannot leave a task
/// blocked.
struct Gate {
    path: PathBuf,
    started: mpsc::Receiver<UnixStream>,
}

impl Gate {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        Self::at(std::env::temp_dir().join(format!("cf-gate-{}-{n}.sock", std::process::id())))
    }

    fn at(path: PathBuf) -> Self {
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).expect("bind the gate");
        let (tx, started) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut byte = [0u8; 1];
                if stream.read_exact(&mut byte).is_ok() && tx.send(stream).is_err() {
                    return;
                }
            }
        });
        Self { path, started }
    }

    /// What the task needs to find the gate.
    fn address(&self) -> String {
        self.path.to_str().expect("a UTF-8 temp dir").to_owned()
    }

    /// Blocks until one more task has started.
    fn wait_started(&self) -> Started {
        Started(
            self.started
                .recv_timeout(WATCHDOG)
                .expect("a task reported its start"),
        )
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A task that is running, held at its gate.
struct Started(UnixStream);

impl Started {
    fn release(mut self) {
        let _ = self.0.write_all(b"r");
    }
}

fn pool(max_workers: usize) -> ProcessPoolExecutor {
    ProcessPoolExecutor::builder()
        .max_workers(max_workers)
        .build()
        .expect("valid options")
}

/// `(state, parent pid)` from `/proc/<pid>/stat`, or `None` if there is no such process.
fn proc_stat(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// The worker `pid` is not a child of ours any more: neither running nor a zombie. (The pid
/// may have been reused by an unrelated process.)
fn assert_no_child(pid: u32) {
    if let Some((state, ppid)) = proc_stat(pid) {
        assert_ne!(
            ppid,
            std::process::id(),
            "worker {pid} is still our child, in state {state}"
        );
    }
}

#[test]
fn submit_after_shutdown_fails_with_shut_down() {
    let executor = pool(1);
    assert_eq!(executor.submit(square_number(2)).result(), Ok(4));
    executor.shutdown(true, false);
    let future = executor.submit(square_number(3));
    assert!(future.done(), "fails at once");
    assert_eq!(future.result(), Err(Error::ShutDown));
}

#[test]
fn shutdown_is_idempotent() {
    let executor = pool(1);
    assert_eq!(executor.submit(square_number(2)).result(), Ok(4));
    executor.shutdown(false, false);
    executor.shutdown(true, false);
    executor.shutdown(true, true);
    executor.shutdown(false, true);
    assert_eq!(
        executor.submit(square_number(3)).result(),
        Err(Error::ShutDown)
    );
    drop(executor); // and Drop's own shutdown
}

#[test]
fn shutdown_with_wait_waits_for_queued_work() {
    let executor = pool(1);
    let gate = Gate::new();
    let first = executor.submit(wait_at_gate(gate.address()));
    let started = gate.wait_started();
    let queued: Vec<_> = (0..4).map(|i| executor.submit(square_number(i))).collect();

    executor.shutdown(false, false);
    assert_eq!(first.state(), State::Running, "held at the gate");
    assert_eq!(
        executor.submit(square_number(9)).result(),
        Err(Error::ShutDown)
    );

    started.release();
    executor.shutdown(true, false);
    // Everything queued before the shutdown ran to completion before it returned.
    assert!(first.done() && queued.iter().all(Future::done));
    assert!(first.result().is_ok());
    let results: Vec<_> = queued.iter().map(Future::result).collect();
    assert_eq!(results, [Ok(0), Ok(1), Ok(4), Ok(9)]);
}

#[test]
fn shutdown_with_cancel_futures_cancels_queued_futures() {
    // Depth 1: a busy worker holds no queue, so the squares stay in the pool's queue.
    let executor = ProcessPoolExecutor::builder()
        .max_workers(1)
        .pipeline_depth(1)
        .build()
        .unwrap();
    let gate = Gate::new();
    let running = executor.submit(wait_at_gate(gate.address()));
    let started = gate.wait_started();
    let queued: Vec<_> = (0..3).map(|i| executor.submit(square_number(i))).collect();

    executor.shutdown(false, true);
    for future in &queued {
        assert!(future.cancelled(), "{future:?}");
        assert_eq!(future.result(), Err(Error::Cancelled));
    }
    assert!(!running.cancelled());
    started.release();
    assert!(running.result().is_ok(), "the running task finishes");
    executor.shutdown(true, false);
}

#[test]
fn dropping_the_pool_waits_for_its_work_and_its_workers() {
    let executor = pool(2);
    let gate = Gate::new();
    let held = executor.submit(wait_at_gate(gate.address()));
    let started = gate.wait_started();
    let queued: Vec<_> = (0..6).map(|i| executor.submit(square_number(i))).collect();
    let pids = executor.worker_pids();
    assert!(!pids.is_empty());

    let (dropped_tx, dropped_rx) = mpsc::channel();
    let dropper = std::thread::spawn(move || {
        drop(executor);
        dropped_tx.send(()).unwrap();
    });
    assert!(
        matches!(dropped_rx.try_recv(), Err(mpsc::TryRecvError::Empty)),
        "drop cannot return while a task is held"
    );
    started.release();
    dropped_rx.recv().unwrap();
    dropper.join().unwrap();

    assert!(held.result().is_ok());
    let results: Vec<_> = queued.iter().map(Future::result).collect();
    assert_eq!(results, [Ok(0), Ok(1), Ok(4), Ok(9), Ok(16), Ok(25)]);
    for pid in pids {
        assert_no_child(pid);
    }
}

/// A pool of one worker running a task that blocks forever, and two tasks queued in the pool
/// behind it (pipeline depth 1: a busy worker is sent nothing more); `stop` ends it. The
/// blocked task fails with `WorkerDied` by `signal`, the two behind it are cancelled, later
/// submits fail with `ShutDown`, and the worker is gone.
fn stop_workers(stop: fn(&ProcessPoolExecutor), signal: i32) {
    let executor = ProcessPoolExecutor::builder()
        .max_workers(1)
        .pipeline_depth(1)
        .build()
        .unwrap();
    let gate = Gate::new();
    let running = executor.submit(report_start_then_hang(gate.address()));
    let _started = gate.wait_started();
    let pid = executor.worker_pids()[0];
    let behind: Vec<_> = (0..2).map(|i| executor.submit(square_number(i))).collect();

    stop(&executor);
    assert_eq!(
        running.result(),
        Err(Error::WorkerDied {
            pid,
            exit_code: None,
            signal: Some(signal)
        })
    );
    for future in &behind {
        assert_eq!(future.result(), Err(Error::Cancelled), "{future:?}");
    }
    assert_eq!(
        executor.submit(square_number(3)).result(),
        Err(Error::ShutDown)
    );
    drop(executor);
    assert_no_child(pid);
}

#[test]
fn terminate_workers_sends_sigterm_and_cancels_the_rest() {
    stop_workers(ProcessPoolExecutor::terminate_workers, 15);
}

#[test]
fn kill_workers_sends_sigkill_and_cancels_the_rest() {
    stop_workers(ProcessPoolExecutor::kill_workers, 9);
}

/// Polls `condition`, a state that no event announces, for up to 5 s.
fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !condition() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        // The polling interval, not a synchronisation: the condition is checked again.
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn terminate_and_kill_do_not_run_tasks_already_sent_to_the_worker() {
    for (stop, signal) in [
        (
            ProcessPoolExecutor::terminate_workers as fn(&ProcessPoolExecutor),
            15,
        ),
        (ProcessPoolExecutor::kill_workers, 9),
    ] {
        // The default pipeline depth: the worker is sent the tasks behind the one it runs.
        let executor = pool(1);
        let gate = Gate::new();
        let running = executor.submit(report_start_then_hang(gate.address()));
        let _started = gate.wait_started();
        let pid = executor.worker_pids()[0];
        let behind: Vec<_> = (0..2).map(|i| executor.submit(square_number(i))).collect();
        // With one worker and the default depth, the pool sends these behind the running
        // task; a future is running once sent, as in Python's call queue.
        eventually("the tasks behind are sent to the worker", || {
            behind.iter().all(Future::running)
        });

        stop(&executor);
        assert_eq!(
            running.result(),
            Err(Error::WorkerDied {
                pid,
                exit_code: None,
                signal: Some(signal)
            })
        );
        let results: Vec<_> = behind.iter().map(Future::result).collect();
        assert_eq!(
            results,
            [Err(Error::Cancelled), Err(Error::Cancelled)],
            "signal {signal}: tasks that had not started ran after the pool was stopped"
        );
        assert!(
            executor.worker_pids().is_empty(),
            "signal {signal}: workers started after the pool was stopped: {:?}",
            executor.worker_pids()
        );
    }
}

/// Runs `helper` (an ignored test of this binary) alone in a copy of this binary, with
/// `envs` set.
fn helper_command(helper: &str, envs: &[(&str, &str)]) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            helper,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CF_TEST_HELPER", helper)
        .envs(envs.iter().copied())
        .stdin(Stdio::null());
    command
}

/// True in the copy of this binary started for `helper`: the helpers are ignored tests that
/// do nothing when run any other way (`cargo test -- --ignored`).
fn is_helper(helper: &str) -> bool {
    std::env::var("CF_TEST_HELPER").is_ok_and(|h| h == helper)
}

fn count_entries(dir: &str) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

/// The processes whose parent is this one, from `/proc/*/stat`.
fn children() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| proc_stat(pid).is_some_and(|(_, ppid)| ppid == std::process::id()))
        .collect()
}

#[test]
#[ignore = "helper of shutdown_leaves_no_process_zombie_descriptor_or_thread; does nothing on its own"]
fn helper_shutdown_leaves_nothing() {
    if !is_helper("helper_shutdown_leaves_nothing") {
        return;
    }
    let fds = count_entries("/proc/self/fd");
    let threads = count_entries("/proc/self/task");
    assert!(children().is_empty());

    let executor = pool(2);
    let futures: Vec<_> = (0..8).map(|i| executor.submit(square_number(i))).collect();
    // A task with a timeout (the pool's timeout thread starts) and a panic.
    assert_eq!(executor.submit(square_with_timeout(3)).result(), Ok(9));
    assert!(executor.submit(panic_now()).result().is_err());
    for future in &futures {
        future.result().unwrap();
    }
    let mut pids = executor.worker_pids();
    pids.push(executor.submit(my_pid()).result().unwrap());
    assert!(!children().is_empty());

    executor.shutdown(true, false);
    assert_eq!(children(), [0u32; 0], "no child process or zombie");
    for pid in pids {
        assert_no_child(pid);
    }
    assert_eq!(count_entries("/proc/self/fd"), fds, "descriptors");
    assert_eq!(count_entries("/proc/self/task"), threads, "threads");
    drop(executor);
    println!("HELPER OK");
}

#[test]
fn shutdown_leaves_no_process_zombie_descriptor_or_thread() {
    let output = helper_command("helper_shutdown_leaves_nothing", &[])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("HELPER OK"),
        "helper failed: {}\nstdout: {stdout}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
#[ignore = "helper of workers_exit_when_the_parent_is_killed; does nothing on its own"]
fn helper_pool_owner_blocks_forever() {
    if !is_helper("helper_pool_owner_blocks_forever") {
        return;
    }
    let gate = Gate::at(std::env::var("CF_TEST_GATE").unwrap().into());
    let executor = pool(2);
    let _held: Vec<_> = (0..2)
        .map(|_| executor.submit(report_start_then_hang(gate.address())))
        .collect();
    let _started = [gate.wait_started(), gate.wait_started()];
    let pids: Vec<String> = executor.worker_pids().iter().map(u32::to_string).collect();
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "WORKERS {}", pids.join(" ")).unwrap();
    stdout.flush().unwrap();
    drop(stdout);
    // Blocks until killed.
    loop {
        std::thread::park();
    }
}

#[test]
fn workers_exit_when_the_parent_is_killed() {
    let gate_path =
        std::env::temp_dir().join(format!("cf-parent-death-{}.sock", std::process::id()));
    let gate_path = gate_path.to_str().unwrap().to_owned();
    let mut owner = helper_command(
        "helper_pool_owner_blocks_forever",
        &[("CF_TEST_GATE", gate_path.as_str())],
    )
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    // Its workers write to the same pipe: it reaches its end once the owner and every
    // worker are gone, which is the event to wait for.
    let mut stdout = BufReader::new(owner.stdout.take().unwrap());
    let pids: Vec<u32> = loop {
        let mut line = String::new();
        if stdout.read_line(&mut line).unwrap() == 0 {
            let status = owner.wait().unwrap();
            panic!("the pool owner ended ({status}) before naming its workers");
        }
        if let Some(pids) = line.strip_prefix("WORKERS ") {
            break pids
                .split_whitespace()
                .map(|p| p.parse().unwrap())
                .collect();
        }
    };
    assert_eq!(pids.len(), 2, "{pids:?}");
    for &pid in &pids {
        let (state, ppid) = proc_stat(pid).expect("the worker runs");
        assert_eq!(ppid, owner.id(), "worker {pid} in state {state}");
    }

    owner.kill().unwrap(); // SIGKILL: no destructor, no shutdown
    owner.wait().unwrap();
    let (eof_tx, eof_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut stdout, &mut std::io::sink());
        let _ = eof_tx.send(());
    });
    let ended = eof_rx.recv_timeout(WATCHDOG);
    let _ = std::fs::remove_file(Path::new(&gate_path));
    assert!(ended.is_ok(), "the workers kept the owner's stdout open");
    // Their descriptors are closed; the processes finish exiting (gone, or zombies of the
    // process that inherited them) a moment later.
    let alive = || -> Vec<_> {
        pids.iter()
            .filter_map(|&pid| proc_stat(pid).map(|stat| (pid, stat)))
            .filter(|(_, (state, _))| !matches!(state, 'Z' | 'X'))
            .collect()
    };
    eventually("the workers exit after their parent was killed", || {
        alive().is_empty()
    });
}
