//! Signals and dying parents: SIGINT, SIGTERM and SIGKILL to a program with a process pool
//! leave none of its workers running a second later, even workers in the middle of a task
//! that never ends; and a task that ignores SIGTERM is gone after `kill_workers()`.
//!
//! The parent is this test binary started again into `parent_helper`, which starts a pool,
//! has each worker print its pid (on the inherited stdout, a pipe this test reads) and hang,
//! and waits for its signal. Workers notice their parent's death by their socket hanging up,
//! which the kernel does for any death, SIGKILL included.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use concurrent_futures::{Error, ProcessPoolExecutor, task};

concurrent_futures::enable_test_support!();

/// Set in the helper's environment: the helper test does its work only when it is present.
const HELPER: &str = "CF_SIGNALS_TEST_PARENT";

/// What a worker prints before it hangs, followed by its pid.
const PID_LINE: &str = "signals-test-worker-pid ";

#[task]
fn report_pid_and_hang() -> u32 {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{PID_LINE}{}", std::process::id());
    let _ = stdout.flush();
    drop(stdout);
    loop {
        std::thread::park();
    }
}

/// The parent the tests signal: a pool of two workers, each running a task that never ends.
#[test]
fn parent_helper() {
    if std::env::var_os(HELPER).is_none() {
        return;
    }
    let executor = ProcessPoolExecutor::builder()
        .max_workers(2)
        // One task per worker: the two hanging tasks run side by side.
        .pipeline_depth(1)
        .build()
        .unwrap();
    let futures: Vec<_> = (0..2)
        .map(|_| executor.submit(report_pid_and_hang()))
        .collect();
    // Never returns: the tasks never end, and the test signals this process.
    let _ = futures[0].result();
    unreachable!("the tasks hang");
}

/// Starts the helper and reads the pids of its two workers once both run their task.
fn start_parent() -> (std::process::Child, Vec<u32>) {
    let mut parent = Command::new(std::env::current_exe().unwrap())
        .args(["parent_helper", "--exact", "--nocapture", "--quiet"])
        .env(HELPER, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = parent.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout);
        let mut line = String::new();
        let mut pids = Vec::new();
        while pids.len() < 2 && lines.read_line(&mut line).is_ok_and(|n| n > 0) {
            if let Some(pid) = line.trim().strip_prefix(PID_LINE) {
                pids.push(pid.parse::<u32>().unwrap());
            }
            line.clear();
        }
        let _ = tx.send(pids);
        // Keep draining, so that nothing the processes print can block them.
        let _ = std::io::copy(&mut lines, &mut std::io::sink());
    });
    // Generous: only there so that a hang fails the test instead of blocking it.
    let pids = rx.recv_timeout(Duration::from_secs(120));
    let pids = match pids {
        Ok(pids) if pids.len() == 2 => pids,
        other => {
            let _ = parent.kill();
            panic!("the helper's workers did not report: {other:?}");
        }
    };
    (parent, pids)
}

/// True while `pid` runs: it exists and is not a zombie (an exited worker that whoever
/// adopted it has not reaped yet is not running).
fn is_running(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, after)| after.split_whitespace().next());
    !matches!(state, Some("Z" | "X"))
}

/// Polls until none of `pids` runs; the time that took, or `None` after `limit`.
fn all_gone_within(pids: &[u32], limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if !pids.iter().any(|&pid| is_running(pid)) {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn kill(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal} {pid}");
}

fn workers_die_with_their_parent(signal: &str, signal_number: i32) {
    use std::os::unix::process::ExitStatusExt;

    let (mut parent, workers) = start_parent();
    assert!(workers.iter().all(|&pid| is_running(pid)), "{workers:?}");
    kill(parent.id(), signal);
    let status = parent.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(signal_number),
        "the parent died of {signal}"
    );
    let gone = all_gone_within(&workers, Duration::from_secs(1));
    if gone.is_none() {
        for &pid in &workers {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
    let gone = gone.unwrap_or_else(|| panic!("workers {workers:?} outlived their parent by 1 s"));
    eprintln!("{signal}: workers {workers:?} gone {gone:?} after their parent's death");
}

#[test]
fn sigint_to_the_parent_leaves_no_worker_running() {
    workers_die_with_their_parent("-INT", 2);
}

#[test]
fn sigterm_to_the_parent_leaves_no_worker_running() {
    workers_die_with_their_parent("-TERM", 15);
}

#[test]
fn sigkill_to_the_parent_leaves_no_worker_running() {
    workers_die_with_their_parent("-KILL", 9);
}

/// Ignores SIGTERM, proves it by sending itself one, then tells the test (through the FIFO at
/// `fifo`) its pid, and hangs.
#[task]
fn ignore_sigterm_and_hang(fifo: String) -> u32 {
    #[allow(unsafe_code)]
    // SAFETY: setting a signal's disposition to SIG_IGN installs no handler code; kill on our
    // own pid only sends the signal.
    unsafe {
        libc::signal(libc::SIGTERM, libc::SIG_IGN);
        libc::kill(libc::getpid(), libc::SIGTERM);
    }
    let mut fifo = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
    let _ = writeln!(fifo, "{}", std::process::id());
    drop(fifo);
    loop {
        std::thread::park();
    }
}

#[test]
fn a_task_that_ignores_sigterm_is_gone_after_kill_workers() {
    let fifo = std::env::temp_dir().join(format!("cf-signals-test-{}", std::process::id()));
    let path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    #[allow(unsafe_code)]
    // SAFETY: mkfifo reads the NUL-terminated path we own.
    let made = unsafe { libc::mkfifo(path.as_ptr(), 0o600) };
    assert_eq!(made, 0, "mkfifo: {}", std::io::Error::last_os_error());

    let executor = ProcessPoolExecutor::builder()
        .max_workers(1)
        .build()
        .unwrap();
    let future = executor.submit(ignore_sigterm_and_hang(fifo.to_str().unwrap().to_owned()));
    // Blocks until the task opens the FIFO: it has survived its own SIGTERM by then.
    let mut reported = String::new();
    std::fs::File::open(&fifo)
        .unwrap()
        .read_to_string(&mut reported)
        .unwrap();
    let _ = std::fs::remove_file(&fifo);
    let pid: u32 = reported.trim().parse().unwrap();
    assert!(is_running(pid));

    executor.terminate_workers(); // SIGTERM: ignored
    executor.kill_workers(); // SIGKILL: cannot be
    let error = future
        .error_timeout(Duration::from_secs(60))
        .expect("the task fails");
    assert_eq!(
        error,
        Error::WorkerDied {
            pid,
            exit_code: None,
            signal: Some(libc::SIGKILL)
        },
        "it died of SIGKILL, not of the SIGTERM it ignores"
    );
    assert!(!is_running(pid));
}
