//! No leaks: cycles of create, use, shut down (and as many of create, use, drop without a
//! shutdown call) leave this process's descriptors, threads and child processes at their
//! starting counts and its memory flat, as `/proc/self` reports them.
//!
//! One test does all four runs of 500 cycles (thread pool and process pool, each shut down
//! and dropped), one after another: two tests in this binary would run at once and count
//! each other's threads. `--nocapture` prints each run's counts, time and memory.

use std::time::{Duration, Instant};

use concurrent_futures::{Executor, ProcessPoolExecutor, ThreadPoolExecutor, task};

concurrent_futures::enable_test_support!();

/// Each cycle's results include one value this large, kept inside its future: a pool that
/// leaked its futures (or their results) would grow by this much per cycle.
const LARGE: usize = 256 * 1024;

/// How much resident memory may grow between the end of the warm-up and the end of the run.
/// glibc keeps freed memory in per-thread arenas (up to 8 per core) and in its heap top rather
/// than returning it, and the fragments move as threads come and go; 16 MiB covers that and is
/// far below what a leak shows: one leaked future per cycle with its 256 KiB value is over
/// 100 MiB in 450 cycles.
const RSS_SLACK_KIB: u64 = 16 * 1024;

/// The cycles kept in the warm-up, before the baseline of memory is taken: the allocator's
/// arenas and the pools' lazily built statics (the task registry, the build identity) settle.
const WARM_UP: usize = 20;

#[task]
fn square_number(x: u64) -> u64 {
    x * x
}

#[task]
fn large_value(len: usize) -> Vec<u8> {
    vec![7; len]
}

/// What `/proc` says this process holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Held {
    descriptors: usize,
    threads: usize,
    children: usize,
}

impl Held {
    /// Nothing more than `limit` of each. Fewer is no leak: libtest's hidden worker-entry
    /// test may still be counted in the baseline and end at any time.
    fn within(&self, limit: &Held) -> bool {
        self.descriptors <= limit.descriptors
            && self.threads <= limit.threads
            && self.children <= limit.children
    }
}

fn held() -> Held {
    Held {
        descriptors: count_entries("/proc/self/fd"),
        threads: count_entries("/proc/self/task"),
        children: children().len(),
    }
}

fn count_entries(dir: &str) -> usize {
    // The directory handle read_dir opens is counted both times: the comparison is fair.
    std::fs::read_dir(dir).unwrap().count()
}

/// Processes whose parent is this one, zombies included: a child that was never reaped.
fn children() -> Vec<u32> {
    let me = std::process::id();
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // A process may exit between the listing and the read.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces and parentheses: split after the
        // last `)`.
        let Some((_, after)) = stat.rsplit_once(')') else {
            continue;
        };
        let ppid = after.split_whitespace().nth(1).and_then(|p| p.parse().ok());
        if ppid == Some(me) {
            children.push(pid);
        }
    }
    children
}

/// Resident memory, from `/proc/self/status` (the same figure as `statm`'s second field, in
/// KiB rather than pages of a size the test would have to look up).
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .expect("Linux reports VmRSS");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Waits until `/proc` shows no more than `expected`, or `patience` runs out: a thread that has
/// returned from its join may still be listed for an instant. Polls; returns what it saw last.
fn settle_to(expected: Held, patience: Duration) -> Held {
    let deadline = Instant::now() + patience;
    loop {
        let now = held();
        if now.within(&expected) || Instant::now() >= deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// One cycle's work on any executor: a few tasks, one of them with a large value, every
/// result checked and the futures (with their values) dropped at the end.
fn use_pool(executor: &impl Executor) {
    let futures: Vec<_> = (0..16).map(|i| executor.submit(square_number(i))).collect();
    let large = executor.submit(large_value(LARGE));
    for (i, future) in (0..).zip(&futures) {
        assert_eq!(future.result(), Ok(i * i));
    }
    assert_eq!(large.result().map(|v| v.len()), Ok(LARGE));
}

/// Runs `WARM_UP` cycles of `cycle` (each makes, uses and ends one pool), takes the baseline,
/// runs `cycles` more, and checks that nothing is left: the same descriptors, threads and
/// children as the baseline, memory flat. The baseline is taken after the warm-up, not
/// before it, because libtest runs this binary's hidden worker-entry test at the same time
/// as this one, and its thread may or may not still be counted at the very start.
fn assert_no_leaks(what: &str, cycles: usize, mut cycle: impl FnMut(usize)) {
    let start = held();
    for i in 0..WARM_UP {
        cycle(i);
    }
    let baseline = held();
    assert!(
        baseline.descriptors <= start.descriptors
            && baseline.threads <= start.threads
            && baseline.children <= start.children,
        "{what}: {WARM_UP} warm-up cycles left {baseline:?}, started with {start:?}"
    );
    let rss_warm = rss_kib();
    let began = Instant::now();
    for i in 0..cycles {
        cycle(i);
    }
    let elapsed = began.elapsed();
    let end = settle_to(baseline, Duration::from_secs(30));
    let rss_end = rss_kib();
    eprintln!(
        "{what}: {cycles} cycles in {elapsed:.2?}; held {end:?} (before them: {baseline:?}); \
         RSS {rss_warm} KiB before, {rss_end} KiB after"
    );
    assert!(
        end.within(&baseline),
        "{what}: after {cycles} cycles, {end:?} is more than {baseline:?}"
    );
    assert!(
        rss_end <= rss_warm + RSS_SLACK_KIB,
        "{what}: RSS grew from {rss_warm} KiB to {rss_end} KiB"
    );
}

fn thread_pool_cycles(cycles: usize) {
    assert_no_leaks("thread pool, shutdown(wait = true)", cycles, |_| {
        let executor = ThreadPoolExecutor::new(4);
        use_pool(&executor);
        executor.shutdown(true, false);
    });
    assert_no_leaks("thread pool, dropped without shutdown", cycles, |_| {
        let executor = ThreadPoolExecutor::new(4);
        use_pool(&executor);
    });
}

fn process_pool_cycles(cycles: usize) {
    let pool = || {
        ProcessPoolExecutor::builder()
            .max_workers(2)
            .build()
            .expect("the pool starts")
    };
    assert_no_leaks("process pool, shutdown(wait = true)", cycles, |_| {
        let executor = pool();
        use_pool(&executor);
        executor.shutdown(true, false);
    });
    assert_no_leaks("process pool, dropped without shutdown", cycles, |_| {
        let executor = pool();
        use_pool(&executor);
    });
}

#[test]
fn pools_leave_no_descriptor_thread_child_or_memory_behind() {
    thread_pool_cycles(500);
    process_pool_cycles(500);
}
