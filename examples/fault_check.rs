//! Fault injection through the public API only, checking the README's "Security and failure
//! model" table claim by claim on both pools.
//!
//! ```text
//! cargo run --release --example fault_check
//! ```
//!
//! Each check prints `ok` or `CONTRADICTED` with what it saw; the program exits with 1 if any
//! claim is contradicted. Nothing waits on a sleep: tasks that must be running before the
//! program acts tell it so over a Unix socket.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use concurrent_futures::{Error, Future, ProcessPoolExecutor, ThreadPoolExecutor, task};
use serde::{Deserialize, Serialize, Serializer};

#[task]
fn square_number(x: u64) -> u64 {
    x * x
}

#[task]
fn panics(x: u64) -> u64 {
    panic!("fault_check panic {x}")
}

#[task]
fn aborts() -> u64 {
    std::process::abort()
}

#[task]
fn hangs() -> u64 {
    loop {
        std::thread::park();
    }
}

/// Connects to `path`, says it started, then hangs until killed or the peer closes.
#[task]
fn hold(path: String) -> u32 {
    let mut stream = UnixStream::connect(path).expect("the checker listens");
    stream.write_all(b"s").expect("the checker reads");
    let mut byte = [0_u8; 1];
    let _ = stream.read(&mut byte);
    std::process::id()
}

#[task]
fn echo_bytes(bytes: Vec<u8>) -> Vec<u8> {
    bytes
}

/// A value whose `Serialize` always fails: an argument (or result) that does not encode.
#[derive(Clone, Debug, Deserialize)]
struct Unencodable(u8);

impl Serialize for Unencodable {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "Unencodable refuses to be encoded",
        ))
    }
}

#[task]
fn takes_unencodable(value: Unencodable) -> u8 {
    value.0
}

#[task]
fn returns_unencodable(x: u8) -> Unencodable {
    Unencodable(x)
}

#[derive(Default)]
struct Report {
    contradicted: usize,
}

impl Report {
    fn check(&mut self, claim: &str, ok: bool, seen: impl std::fmt::Display) {
        if ok {
            println!("ok           {claim}: {seen}");
        } else {
            self.contradicted += 1;
            println!("CONTRADICTED {claim}: {seen}");
        }
    }
}

/// Counts how many times each future's done callbacks ran: exactly once is the claim.
fn count_callbacks<T: Send + 'static>(futures: &[Future<T>]) -> Arc<AtomicUsize> {
    let calls = Arc::new(AtomicUsize::new(0));
    for future in futures {
        let calls = Arc::clone(&calls);
        future.add_done_callback(move |_| {
            calls.fetch_add(1, Ordering::SeqCst);
        });
    }
    calls
}

fn listen(name: &str) -> (UnixListener, String) {
    let path = std::env::temp_dir().join(format!("cf-fault-{name}-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).expect("temp dir is writable");
    (listener, path.to_string_lossy().into_owned())
}

fn accept_started(listener: &UnixListener) -> UnixStream {
    let (mut stream, _) = listener.accept().expect("a task connects");
    let mut byte = [0_u8; 1];
    stream.read_exact(&mut byte).expect("it says it started");
    stream
}

fn alive(pid: u32) -> bool {
    // /proc/<pid> disappears once the process is reaped.
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

fn sigkill(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill(1) runs");
    assert!(status.success(), "kill -9 {pid}");
}

fn count_dir(path: &str) -> usize {
    std::fs::read_dir(path).map_or(0, |d| d.count())
}

/// Live or unreaped children of this process, from every thread's list.
fn children() -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let path = entry.path().join("children");
        if let Ok(text) = std::fs::read_to_string(path) {
            n += text.split_whitespace().count();
        }
    }
    n
}

fn rss_kib() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    concurrent_futures::init();
    if std::env::args().nth(1).as_deref() == Some(PARENT_TO_KILL) {
        parent_to_kill();
    }
    let mut report = Report::default();
    let started = Instant::now();
    let fds_before = count_dir("/proc/self/fd");
    let threads_before = count_dir("/proc/self/task");

    process_pool_panics_aborts_timeouts(&mut report);
    process_pool_kill_from_outside(&mut report);
    process_pool_values(&mut report);
    process_pool_forced_and_drop(&mut report);
    thread_pool(&mut report);
    leaks(&mut report, fds_before, threads_before);
    parent_killed(&mut report);
    replacements(&mut report);

    println!(
        "{} claim(s) contradicted; {:.2} s in all",
        report.contradicted,
        started.elapsed().as_secs_f64()
    );
    if report.contradicted > 0 {
        std::process::exit(1);
    }
}

fn process_pool_panics_aborts_timeouts(report: &mut Report) {
    let executor = ProcessPoolExecutor::new(2);
    let warm = executor.submit(square_number(2)).result();
    let pids_before: HashSet<u32> = executor.worker_pids().into_iter().collect();

    let panicked = executor.submit(panics(7));
    let result = panicked.result();
    let ok = matches!(&result, Err(Error::Panicked { message, location: Some(_), .. })
        if message.contains("fault_check panic 7"));
    report.check(
        "process pool: a panic gives Panicked with message and location",
        ok,
        format!("{result:?}"),
    );
    let same: HashSet<u32> = executor.worker_pids().into_iter().collect();
    report.check(
        "process pool: after a panic the worker lives on",
        warm == Ok(4) && same == pids_before,
        format!("pids {pids_before:?} -> {same:?}"),
    );

    let aborted = executor.submit(aborts());
    let result = aborted.result();
    let ok = matches!(
        result,
        Err(Error::WorkerDied {
            signal: Some(6),
            ..
        })
    );
    report.check(
        "process pool: an abort gives WorkerDied with SIGABRT",
        ok,
        format!("{result:?}"),
    );

    let timeout = Duration::from_millis(200);
    let begun = Instant::now();
    let hung = executor.submit_with_timeout(hangs(), timeout);
    let result = hung.result();
    let took = begun.elapsed();
    let ok = matches!(result, Err(Error::TaskTimedOut { timeout: t }) if t == timeout);
    report.check(
        "process pool: a hang past its timeout gives TaskTimedOut",
        ok,
        format!("{result:?} after {took:?}"),
    );
    let after: Vec<_> = (0..20).map(|i| executor.submit(square_number(i))).collect();
    let values: Vec<_> = after.iter().map(|f| f.result()).collect();
    let ok = values
        .iter()
        .enumerate()
        .all(|(i, v)| *v == Ok((i * i) as u64));
    report.check(
        "process pool: goes on after panic, abort and timeout",
        ok,
        format!("20 tasks after, pids now {:?}", executor.worker_pids()),
    );
}

fn process_pool_kill_from_outside(report: &mut Report) {
    let (listener, path) = listen("kill");
    let executor = ProcessPoolExecutor::builder()
        .max_workers(1)
        .build()
        .expect("valid");
    let running = executor.submit(hold(path));
    let mut held = accept_started(&listener);
    // Sent behind the running task (pipelined) or queued: either way not started.
    let behind: Vec<_> = (0..10).map(|i| executor.submit(square_number(i))).collect();
    let calls = count_callbacks(&behind);
    let pid = executor.worker_pids()[0];
    sigkill(pid);
    let result = running.result();
    let ok = matches!(result, Err(Error::WorkerDied { pid: p, signal: Some(9), .. }) if p == pid);
    report.check(
        "process pool: kill -9 of a worker from outside gives WorkerDied for its task",
        ok,
        format!("{result:?}"),
    );
    let values: Vec<_> = behind.iter().map(|f| f.result()).collect();
    let ok = values
        .iter()
        .enumerate()
        .all(|(i, v)| *v == Ok((i * i) as u64));
    report.check(
        "process pool: what the killed worker had not started runs elsewhere",
        ok,
        format!(
            "{} of 10 right, new pids {:?}",
            values
                .iter()
                .enumerate()
                .filter(|(i, v)| **v == Ok((i * i) as u64))
                .count(),
            executor.worker_pids()
        ),
    );
    drop(executor);
    report.check(
        "process pool: each of those futures resolved once",
        calls.load(Ordering::SeqCst) == 10,
        format!("{} callbacks for 10 futures", calls.load(Ordering::SeqCst)),
    );
    let _ = held.write_all(b"x");
    report.check(
        "process pool: the killed worker is reaped",
        !alive(pid),
        format!("pid {pid}"),
    );
}

fn process_pool_values(report: &mut Report) {
    let executor = ProcessPoolExecutor::new(2);
    let big: Vec<u8> = (0..64 << 20).map(|i: u32| (i % 251) as u8).collect();
    let begun = Instant::now();
    let back = executor.submit(echo_bytes(big.clone())).result();
    report.check(
        "process pool: a 64 MiB value goes and comes back intact",
        back.as_ref().is_ok_and(|b| *b == big),
        format!(
            "{:?} in {:.3} s",
            back.as_ref().map(Vec::len),
            begun.elapsed().as_secs_f64()
        ),
    );

    let result = executor.submit(takes_unencodable(Unencodable(1))).result();
    report.check(
        "process pool: an argument that does not encode gives Serialization",
        matches!(result, Err(Error::Serialization { .. })),
        format!("{result:?}"),
    );
    let result = executor.submit(returns_unencodable(1)).result();
    report.check(
        "process pool: a result that does not encode gives Serialization",
        matches!(result, Err(Error::Serialization { .. })),
        format!("{result:?}"),
    );
    let huge = vec![0_u8; (1 << 30) + 1];
    let result = executor.submit(echo_bytes(huge)).result();
    report.check(
        "process pool: an argument over 1 GiB gives Serialization",
        matches!(result, Err(Error::Serialization { .. })),
        format!("{:?}", result.map(|v| v.len())),
    );
    let result = executor.submit(square_number(9)).result();
    report.check(
        "process pool: goes on after them",
        result == Ok(81),
        format!("{result:?}"),
    );
}

fn process_pool_forced_and_drop(report: &mut Report) {
    // kill_workers: running -> WorkerDied, sent not started -> Cancelled, queued -> cancelled.
    let (listener, path) = listen("forced");
    let executor = ProcessPoolExecutor::new(1);
    let running = executor.submit(hold(path.clone()));
    let _held = accept_started(&listener);
    let behind: Vec<_> = (0..50).map(|i| executor.submit(square_number(i))).collect();
    let calls = count_callbacks(&behind);
    let pid = executor.worker_pids()[0];
    executor.kill_workers();
    let result = running.result();
    report.check(
        "process pool: kill_workers fails the running task with WorkerDied",
        matches!(
            result,
            Err(Error::WorkerDied {
                signal: Some(9),
                ..
            })
        ),
        format!("{result:?}"),
    );
    let outcomes: Vec<_> = behind.iter().map(|f| f.result()).collect();
    let cancelled = outcomes
        .iter()
        .filter(|r| matches!(r, Err(Error::Cancelled)))
        .count();
    report.check(
        "process pool: kill_workers: nothing not started runs; each fails Cancelled",
        cancelled == 50,
        format!("{cancelled} of 50 Cancelled"),
    );
    drop(executor);
    report.check(
        "process pool: kill_workers resolves each future once",
        calls.load(Ordering::SeqCst) == 50 && !alive(pid),
        format!(
            "{} callbacks for 50; worker reaped: {}",
            calls.load(Ordering::SeqCst),
            !alive(pid)
        ),
    );

    // Dropping the executor with work pending waits for it: every future resolves.
    let executor = ProcessPoolExecutor::new(2);
    let pending: Vec<_> = (0..2000)
        .map(|i| executor.submit(square_number(i)))
        .collect();
    let calls = count_callbacks(&pending);
    let pids = executor.worker_pids();
    drop(executor);
    let done = pending.iter().filter(|f| f.done()).count();
    let right = pending
        .iter()
        .enumerate()
        .filter(|(i, f)| f.result() == Ok((i * i) as u64))
        .count();
    report.check(
        "process pool: drop with 2000 tasks pending runs them all, each resolved once, workers reaped",
        done == 2000 && right == 2000 && calls.load(Ordering::SeqCst) == 2000 && pids.iter().all(|p| !alive(*p)),
        format!("done {done}, right {right}, callbacks {}", calls.load(Ordering::SeqCst)),
    );

    // A mix of failures, counted: every future resolves exactly once.
    let executor = ProcessPoolExecutor::new(2);
    let mut futures = Vec::new();
    for i in 0..400_u64 {
        futures.push(match i % 100 {
            1 => executor.submit(panics(i)),
            2 => executor.submit(aborts()),
            3 => executor.submit_with_timeout(hangs(), Duration::from_millis(100)),
            _ => executor.submit(square_number(i)),
        });
    }
    let calls = count_callbacks(&futures);
    let mut wrong = 0;
    let mut kinds = [0_usize; 4];
    for (i, future) in futures.iter().enumerate() {
        let i = i as u64;
        match (i % 100, future.result()) {
            (1, Err(Error::Panicked { .. })) => kinds[0] += 1,
            (2, Err(Error::WorkerDied { .. })) => kinds[1] += 1,
            (3, Err(Error::TaskTimedOut { .. })) => kinds[2] += 1,
            (_, Ok(v)) if v == i * i => kinds[3] += 1,
            (_, other) => {
                wrong += 1;
                println!("  task {i}: {other:?}");
            }
        }
    }
    drop(executor);
    report.check(
        "process pool: 400 mixed tasks, a dead or hung worker fails only its own task",
        wrong == 0 && calls.load(Ordering::SeqCst) == 400,
        format!(
            "panics {}, aborts {}, timeouts {}, values {}, wrong {wrong}, callbacks {}",
            kinds[0],
            kinds[1],
            kinds[2],
            kinds[3],
            calls.load(Ordering::SeqCst)
        ),
    );
}

fn thread_pool(report: &mut Report) {
    let executor = ThreadPoolExecutor::new(2);
    let result = executor.submit(panics(3)).result();
    let ok = matches!(&result, Err(Error::Panicked { message, .. }) if message.contains("fault_check panic 3"));
    report.check(
        "thread pool: a panic gives Panicked",
        ok,
        format!("{result:?}"),
    );
    let big: Vec<u8> = (0..64 << 20).map(|i: u32| (i % 251) as u8).collect();
    let back = executor.submit(echo_bytes(big.clone())).result();
    report.check(
        "thread pool: a 64 MiB value comes back intact",
        back.as_ref().is_ok_and(|b| *b == big),
        format!("{:?}", back.as_ref().map(Vec::len)),
    );
    let pending: Vec<_> = (0..10_000)
        .map(|i| executor.submit(square_number(i)))
        .collect();
    let calls = count_callbacks(&pending);
    drop(executor);
    let right = pending
        .iter()
        .enumerate()
        .filter(|(i, f)| f.done() && f.result() == Ok((i * i) as u64))
        .count();
    report.check(
        "thread pool: drop with 10000 pending runs them all, each resolved once",
        right == 10_000 && calls.load(Ordering::SeqCst) == 10_000,
        format!("right {right}, callbacks {}", calls.load(Ordering::SeqCst)),
    );
}

fn leaks(report: &mut Report, fds_before: usize, threads_before: usize) {
    let rss_start = rss_kib();
    for cycle in 0..200_u64 {
        let executor = ProcessPoolExecutor::new(2);
        let futures = [
            executor.submit(square_number(cycle)),
            executor.submit(square_number(cycle + 1)),
        ];
        for future in &futures {
            let _ = future.result();
        }
        if cycle % 2 == 0 {
            executor.shutdown(true, false);
        }
    }
    let fds = count_dir("/proc/self/fd");
    let threads = count_dir("/proc/self/task");
    let kids = children();
    report.check(
        "200 process-pool cycles leave no descriptor, thread or child behind",
        fds == fds_before && threads == threads_before && kids == 0,
        format!(
            "fds {fds_before} -> {fds}, threads {threads_before} -> {threads}, children {kids}, RSS {rss_start} -> {} KiB",
            rss_kib()
        ),
    );
}

/// The argument that makes this program the parent that `parent_killed` kills.
const PARENT_TO_KILL: &str = "--parent-to-kill";

/// Runs two hanging tasks, prints its workers' pids once both run, and waits to be killed.
fn parent_to_kill() -> ! {
    let (listener, path) = listen("orphans");
    let executor = ProcessPoolExecutor::new(2);
    let _futures = [
        executor.submit(hold(path.clone())),
        executor.submit(hold(path)),
    ];
    let _held = [accept_started(&listener), accept_started(&listener)];
    let pids: Vec<String> = executor.worker_pids().iter().map(u32::to_string).collect();
    println!("{}", pids.join(" "));
    std::io::stdout().flush().expect("the checker reads");
    loop {
        std::thread::park();
    }
}

/// A pidfd for `pid`: readable once it has exited.
fn pidfd(pid: u32) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open takes no pointers; the descriptor it returns is ours alone.
    #[allow(unsafe_code)]
    unsafe {
        let fd = libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0);
        assert!(fd >= 0, "pidfd_open {pid}");
        std::os::fd::OwnedFd::from_raw_fd(fd as i32)
    }
}

/// Waits up to `limit` for the process behind `fd` to exit; whether it did.
fn exited_within(fd: &std::os::fd::OwnedFd, limit: Duration) -> bool {
    use std::os::fd::AsRawFd;
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        // SAFETY: poll writes only the one pollfd we own.
        #[allow(unsafe_code)]
        let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis() as i32) };
        if n == 1 {
            return true;
        }
        if n == 0 {
            return false;
        }
    }
}

/// Claim: the parent dies by SIGKILL, every worker exits at once (within 1 s).
fn parent_killed(report: &mut Report) {
    let mut parent = std::process::Command::new(std::env::current_exe().expect("own path"))
        .arg(PARENT_TO_KILL)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starts");
    let mut line = String::new();
    let mut out = parent.stdout.take().expect("piped");
    let mut byte = [0_u8; 1];
    while out.read(&mut byte).expect("reads") == 1 && byte[0] != b'\n' {
        line.push(byte[0] as char);
    }
    let workers: Vec<u32> = line
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    let fds: Vec<_> = workers.iter().map(|&pid| pidfd(pid)).collect();
    let killed = Instant::now();
    sigkill(parent.id());
    let _ = parent.wait();
    let mut times = Vec::new();
    let all = fds.iter().all(|fd| {
        let gone = exited_within(fd, Duration::from_secs(1));
        times.push(killed.elapsed());
        gone
    });
    report.check(
        "the parent killed with SIGKILL: every worker exits within 1 s",
        workers.len() == 2 && all,
        format!("workers {workers:?} gone after {times:?} (from the kill, kill(1) included)"),
    );
}

fn vm_kib() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmSize:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// One long-lived pool whose workers are replaced often (`max_tasks_per_child(1)`): each
/// replaced worker's connection thread must not stay behind, unjoined, until shutdown.
fn replacements(report: &mut Report) {
    let executor = ProcessPoolExecutor::builder()
        .max_workers(2)
        .max_tasks_per_child(1)
        .build()
        .expect("valid");
    let _ = executor.submit(square_number(1)).result();
    let (vm_before, maps_before) = (vm_kib(), count_lines("/proc/self/maps"));
    let replaced = 300;
    for i in 0..replaced {
        let _ = executor.submit(square_number(i)).result();
    }
    let (vm_after, maps_after) = (vm_kib(), count_lines("/proc/self/maps"));
    report.check(
        "one pool, 300 workers replaced: no mapping left per replacement",
        // Each unjoined thread keeps two mappings (stack, guard page); VmSize alone also
        // moves by 64 MiB when malloc makes an arena for a new thread.
        maps_after < maps_before + 50,
        format!("VmSize {vm_before} -> {vm_after} KiB, mappings {maps_before} -> {maps_after}"),
    );
}

fn count_lines(path: &str) -> usize {
    std::fs::read_to_string(path).map_or(0, |s| s.lines().count())
}
