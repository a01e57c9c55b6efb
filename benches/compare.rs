//! Side-by-side figures: this crate against rayon, the `threadpool` crate, procspawn and
//! Python's `concurrent.futures`, on the workloads of the anchor scripts (shared/anchors/).
//!
//! ```text
//! cargo bench --bench compare 2>&1 | tee /tmp/compare-output.txt
//! ```
//!
//! Prints the machine (cores, CPU model, rustc, date), then ONE table: for each workload (W1 to
//! W8, every one with 2 workers) every system's figure measured in this run and the ratio of
//! ours to that peer, oriented so that a ratio above 1 means ours is better (faster, or
//! leaner for the lower-is-better figures). A peer that cannot run a workload has a row that
//! says why. Python's figures come from `python3 benches/python_peers.py`, run as a
//! subprocess; W8 (memory and descriptors per pending task) runs each system in a fresh copy
//! of this binary (`--child ...`) so that one system's freed memory does not hide another's.
//!
//! `cargo bench --bench compare -- W5 W6` runs only the workloads named (and no Python).
//!
//! Takes about 1 minute on 2 cores (the budget is 10). Without `--bench` (as `cargo test --benches` runs
//! it) it is a smoke run: every workload at 1/1000 of its size, Python skipped.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use concurrent_futures::{
    Executor, MapOptions, ProcessPoolExecutor, ThreadPoolExecutor, as_completed, task,
};
use rayon::prelude::*;

/// Every workload runs with this many workers, threads or processes.
const WORKERS: usize = 2;
/// How long the Python peers may take before they are killed and reported as timed out.
const PYTHON_TIME_LIMIT: Duration = Duration::from_secs(300);

#[task]
fn square_number(x: u64) -> u64 {
    x * x
}

#[task]
fn echo(bytes: Vec<u8>) -> Vec<u8> {
    bytes
}

/// Blocks a worker process until `path` exists: the gate of W8.
#[task]
fn wait_for_file(path: String) {
    while !Path::new(&path).exists() {
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn main() {
    concurrent_futures::init(); // our workers (CONCURRENT_FUTURES_WORKER) enter here
    procspawn::init(); // procspawn's workers (__PROCSPAWN_CONTENT_PROCESS_ID) enter here

    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--echo") {
        echo_stdin_to_stdout();
        return;
    }
    let scale = if args.iter().any(|a| a == "--bench") {
        1
    } else {
        1000
    };
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let name = args.get(i + 1).map(String::as_str).unwrap_or("");
        let child_scale = args
            .iter()
            .position(|a| a == "--scale")
            .and_then(|j| args.get(j + 1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(1);
        run_child(name, child_scale);
        return;
    }
    // `cargo bench --bench compare -- W5 W6` runs only those workloads (and skips Python).
    let only: Vec<String> = args
        .iter()
        .skip(1)
        .filter(|a| a.len() == 2 && a.starts_with('W'))
        .cloned()
        .collect();
    let mut compare = Compare::new(scale);
    compare.only = only;
    compare.run();
}

/// A figure, or why there is none.
#[derive(Clone, Debug)]
enum Figure {
    Value(f64),
    NotApplicable(String),
}

use Figure::{NotApplicable, Value};

fn na(reason: impl Into<String>) -> Figure {
    NotApplicable(reason.into())
}

/// One system's line in the table.
#[derive(Debug)]
struct Entry {
    system: String,
    figure: Figure,
}

/// One workload (or one figure of a workload): our figure and the peers'.
#[derive(Debug)]
struct Row {
    id: &'static str,
    description: String,
    unit: &'static str,
    higher_is_better: bool,
    ours: Entry,
    peers: Vec<Entry>,
}

impl Row {
    fn new(id: &'static str, description: impl Into<String>, unit: &'static str) -> Self {
        Row {
            id,
            description: description.into(),
            unit,
            higher_is_better: true,
            ours: Entry {
                system: String::new(),
                figure: na("not run"),
            },
            peers: Vec::new(),
        }
    }

    fn lower_is_better(mut self) -> Self {
        self.higher_is_better = false;
        self
    }

    fn ours(mut self, system: impl Into<String>, figure: Figure) -> Self {
        self.ours = Entry {
            system: system.into(),
            figure,
        };
        self
    }

    fn peer(mut self, system: impl Into<String>, figure: Figure) -> Self {
        self.peers.push(Entry {
            system: system.into(),
            figure,
        });
        self
    }
}

/// The run: its scale, the Python figures, the rows so far and the notes under the table.
struct Compare {
    scale: u64,
    /// Workload ids to run; empty: all.
    only: Vec<String>,
    python: Result<HashMap<String, f64>, String>,
    python_n: HashMap<String, u64>,
    python_version: String,
    rows: Vec<Row>,
    notes: Vec<String>,
    timings: Vec<(String, Duration)>,
}

impl Compare {
    fn new(scale: u64) -> Self {
        Compare {
            scale,
            only: Vec::new(),
            python: Err("not run".into()),
            python_n: HashMap::new(),
            python_version: String::new(),
            rows: Vec::new(),
            notes: Vec::new(),
            timings: Vec::new(),
        }
    }

    /// `base` at this run's scale (1 for `cargo bench`, 1/1000 for a smoke run).
    fn n(&self, base: u64) -> u64 {
        (base / self.scale).max(10)
    }

    fn run(mut self) {
        let started = Instant::now();
        let header = machine_header();
        println!("{header}");
        if self.scale != 1 {
            println!(
                "SMOKE RUN (no --bench argument): every size divided by {}, Python skipped; \
                 the figures mean nothing. Run `cargo bench --bench compare`.\n",
                self.scale
            );
        }

        self.phase("python peers", Self::run_python);
        self.phase("W1", Self::w1);
        self.phase("W2", Self::w2);
        self.phase("W3", Self::w3);
        self.phase("W4", Self::w4);
        self.phase("W5", Self::w5);
        self.phase("W6", Self::w6);
        self.phase("W7", Self::w7);
        self.phase("W8", Self::w8);

        println!("{}", self.table());
        let mut timing = String::from("time per part:");
        for (name, d) in &self.timings {
            let _ = write!(timing, " {name} {:.1}s;", d.as_secs_f64());
        }
        let _ = write!(timing, " total {:.1}s", started.elapsed().as_secs_f64());
        println!("{timing}");
    }

    fn phase(&mut self, name: &str, f: fn(&mut Self)) {
        if name.starts_with('W') && !self.only.is_empty() && !self.only.iter().any(|w| w == name) {
            return;
        }
        eprintln!("[compare] {name} ...");
        let t = Instant::now();
        f(self);
        let d = t.elapsed();
        eprintln!("[compare] {name} done in {:.1}s", d.as_secs_f64());
        self.timings.push((name.to_owned(), d));
    }

    // ---------------------------------------------------------------------------------------
    // Python

    fn run_python(&mut self) {
        if self.scale != 1 {
            self.python = Err("skipped in a smoke run".into());
            return;
        }
        if !self.only.is_empty() {
            self.python = Err("skipped when workloads are picked".into());
            return;
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/python_peers.py");
        self.python = run_python_peers(&script).map(|(figures, counts, version)| {
            self.python_n = counts;
            self.python_version = version;
            figures
        });
        if let Err(e) = &self.python {
            self.notes.push(format!("Python: {e}"));
        }
    }

    /// Python's figure for `key`, labelled with the task count it used.
    fn python(&self, key: &str, what: &str) -> Entry {
        let version = if self.python_version.is_empty() {
            String::new()
        } else {
            format!(" {}", self.python_version)
        };
        let count = self
            .python_n
            .get(key)
            .map(|n| format!(", {} tasks", thousands(*n)))
            .unwrap_or_default();
        let system = format!("python{version} cf: {what}{count}");
        let figure = match &self.python {
            Ok(figures) => match figures.get(key) {
                Some(v) => Value(*v),
                None => na(format!("python_peers.py printed no {key} line")),
            },
            Err(e) => na(e.clone()),
        };
        Entry { system, figure }
    }

    // ---------------------------------------------------------------------------------------
    // W1: thread pool, submit + as_completed

    fn w1(&mut self) {
        let n = self.n(1_000_000);
        let expected = sum_of_squares(n);

        let ours = tasks_per_s_steady(n, || w1_ours(n));
        let rayon = tasks_per_s_steady(n, || w1_rayon(n));
        let threadpool = tasks_per_s_steady(n, || w1_threadpool(n));

        // What `threadpool` costs once each task keeps a result slot its caller can wait on,
        // as a Future is: the slots stay alive until the end, as the futures do in ours.
        let threadpool_slots = tasks_per_s_steady(n, || {
            type Slot = Arc<(Mutex<Option<u64>>, Condvar)>;
            let pool = threadpool::ThreadPool::new(WORKERS);
            let (tx, rx) = crossbeam_channel::unbounded();
            let slots: Vec<Slot> = (0..n)
                .map(|i| {
                    let slot: Slot = Arc::new((Mutex::new(None), Condvar::new()));
                    let filled = Arc::clone(&slot);
                    let tx = tx.clone();
                    pool.execute(move || {
                        *filled.0.lock().expect("slot lock") = Some(i * i);
                        filled.1.notify_all();
                        tx.send(i as usize).expect("receiver alive");
                    });
                    slot
                })
                .collect();
            drop(tx);
            let sum = rx
                .iter()
                .map(|k| slots[k].0.lock().expect("slot lock").expect("filled"))
                .sum();
            pool.join();
            sum
        });

        let python = self.python("W1", "submit + as_completed");
        self.rows.push(
            Row::new(
                "W1",
                format!(
                    "thread pool: {} square_number submits, results as completed",
                    thousands(n)
                ),
                "tasks/s",
            )
            .ours("ours: submit + as_completed", checked(ours, expected))
            .peer(
                "rayon: ThreadPool::spawn + channel",
                checked(rayon, expected),
            )
            .peer(
                "threadpool: execute + channel",
                checked(threadpool, expected),
            )
            .peer(python.system, python.figure)
            .peer(
                "CONTEXT: threadpool execute + channel, plus a result slot per task \
                 (Arc<(Mutex<Option<u64>>, Condvar)>) kept to the end, as futures are",
                checked(threadpool_slots, expected),
            ),
        );
        // The same, each system once in a fresh process: what a program that runs a million
        // tasks once pays, first-touch page faults included.
        let cold = |name: &str| run_in_child(name, self.scale);
        self.rows.push(
            Row::new(
                "W1",
                "the same, cold: each system's one round in a fresh process",
                "tasks/s",
            )
            .ours("ours: submit + as_completed", cold("w1-ours"))
            .peer("rayon: ThreadPool::spawn + channel", cold("w1-rayon"))
            .peer("threadpool: execute + channel", cold("w1-threadpool")),
        );
    }

    // ---------------------------------------------------------------------------------------
    // W2: thread pool, map

    fn w2(&mut self) {
        let n = self.n(1_000_000);
        let expected = sum_of_squares(n);

        let ours = tasks_per_s_steady(n, || {
            let executor = ThreadPoolExecutor::new(WORKERS);
            let results: Vec<u64> = executor
                .map(square_number, 0..n)
                .map(|r| r.expect("square_number"))
                .collect();
            drop(executor);
            results.iter().sum()
        });

        let rayon = tasks_per_s_steady(n, || {
            let pool = rayon_pool();
            let (tx, rx) = crossbeam_channel::unbounded();
            for i in 0..n {
                let tx = tx.clone();
                pool.spawn(move || tx.send((i, i * i)).expect("receiver alive"));
            }
            drop(tx);
            sum_in_input_order(n, &rx)
        });

        let rayon_par_iter = tasks_per_s_steady(n, || {
            let pool = rayon_pool();
            let results: Vec<u64> =
                pool.install(|| (0..n).into_par_iter().map(|i| i * i).collect());
            results.iter().sum()
        });

        let threadpool = tasks_per_s_steady(n, || {
            let pool = threadpool::ThreadPool::new(WORKERS);
            let (tx, rx) = crossbeam_channel::unbounded();
            for i in 0..n {
                let tx = tx.clone();
                pool.execute(move || tx.send((i, i * i)).expect("receiver alive"));
            }
            drop(tx);
            let sum = sum_in_input_order(n, &rx);
            pool.join();
            sum
        });

        self.notes.push(
            "W2: ours hands the whole map to the pool's threads as one batch (each thread takes \
             calls in input order, in blocks sized to their speed; an outcome slot per call). \
             rayon's into_par_iter() (CONTEXT) splits the range into a few large jobs with no \
             slot or message per input: the parallel-loop bound."
                .into(),
        );
        let python = self.python("W2", "map");
        self.rows.push(
            Row::new(
                "W2",
                format!(
                    "thread pool: map square_number over {} inputs",
                    thousands(n)
                ),
                "tasks/s",
            )
            .ours("ours: executor.map", checked(ours, expected))
            .peer(
                "rayon: ThreadPool::spawn per input + channel, results put in input order",
                checked(rayon, expected),
            )
            .peer(
                "threadpool: execute per input + channel, results put in input order",
                checked(threadpool, expected),
            )
            .peer(python.system, python.figure)
            .peer(
                "CONTEXT: rayon into_par_iter().map().collect() (a parallel loop: a few big \
                 jobs, nothing per input)",
                checked(rayon_par_iter, expected),
            ),
        );
    }

    // ---------------------------------------------------------------------------------------
    // W3: process pool, submit + as_completed

    fn w3(&mut self) {
        let n = self.n(100_000);
        let expected = sum_of_squares(n);

        let ours = tasks_per_s(n, || {
            submit_all_as_completed(ProcessPoolExecutor::new(WORKERS), n)
        });

        let batch = 1_000;
        let procspawn = tasks_per_s_fallible(n, || {
            let pool = procspawn::Pool::new(WORKERS).map_err(|e| e.to_string())?;
            let mut sum = 0;
            let mut start = 0;
            while start < n {
                let end = (start + batch).min(n);
                let handles: Vec<_> = (start..end)
                    .map(|i| pool.spawn(i, procspawn_square as fn(u64) -> u64))
                    .collect();
                for handle in handles {
                    sum += handle.join().map_err(|e| e.to_string())?;
                }
                start = end;
            }
            pool.shutdown();
            Ok(sum)
        });

        let python = self.python("W3", "submit + as_completed");
        self.rows.push(
            Row::new(
                "W3",
                format!(
                    "process pool: {} square_number submits, results as completed",
                    thousands(n)
                ),
                "tasks/s",
            )
            .ours("ours: submit + as_completed", checked(ours, expected))
            .peer(
                format!("procspawn: Pool::spawn, {batch} pending at a time, joined in order"),
                checked_fallible(procspawn, expected),
            )
            .peer(python.system, python.figure),
        );
        self.notes.push(format!(
            "W3: procspawn is fed {batch} tasks at a time: every pending Pool::spawn holds \
             ipc-channel descriptors until joined (W8 counts them), so 100,000 pending would \
             need several times this process's limit (ulimit -n {}) and Pool::spawn panics \
             with EMFILE (\"Too many open files\").",
            open_files_limit()
        ));
    }

    // ---------------------------------------------------------------------------------------
    // W4: process pool, map with chunksize 1000

    fn w4(&mut self) {
        let n = self.n(1_000_000);
        let chunksize = 1_000u64.min(n);
        let expected = sum_of_squares(n);

        let ours = tasks_per_s(n, || {
            let executor = ProcessPoolExecutor::new(WORKERS);
            let options = MapOptions::new().chunksize(chunksize as usize);
            let sum: u64 = executor
                .map_with(square_number, 0..n, options)
                .map(|r| r.expect("square_number"))
                .sum();
            drop(executor);
            sum
        });

        let procspawn = tasks_per_s_fallible(n, || {
            let pool = procspawn::Pool::new(WORKERS).map_err(|e| e.to_string())?;
            let mut handles = Vec::new();
            let mut start = 0;
            while start < n {
                let end = (start + chunksize).min(n);
                let chunk: Vec<u64> = (start..end).collect();
                handles.push(pool.spawn(chunk, procspawn_square_chunk as fn(Vec<u64>) -> Vec<u64>));
                start = end;
            }
            let mut sum = 0;
            for handle in handles {
                sum += handle
                    .join()
                    .map_err(|e| e.to_string())?
                    .iter()
                    .sum::<u64>();
            }
            pool.shutdown();
            Ok(sum)
        });

        let python = self.python("W4", "map chunksize=1000");
        self.rows.push(
            Row::new(
                "W4",
                format!(
                    "process pool: map square_number over {} inputs, chunksize {chunksize}",
                    thousands(n)
                ),
                "tasks/s",
            )
            .ours(
                "ours: map_with(.., MapOptions::new().chunksize(1000))",
                checked(ours, expected),
            )
            .peer(
                format!(
                    "procspawn: {} spawns of a closure over a Vec<u64> chunk of {chunksize}",
                    n.div_ceil(chunksize)
                ),
                checked_fallible(procspawn, expected),
            )
            .peer(python.system, python.figure),
        );
    }

    // ---------------------------------------------------------------------------------------
    // W5: process pool, echo of 1 MiB

    fn w5(&mut self) {
        let n = self.n(200);
        let size = 1usize << 20;
        let payload = vec![b'x'; size];
        let expected = n * size as u64;

        let ours = tasks_per_s(n, || {
            let executor = ProcessPoolExecutor::new(WORKERS);
            let futures: Vec<_> = (0..n)
                .map(|_| executor.submit(echo(payload.clone())))
                .collect();
            let total: u64 = futures
                .into_iter()
                .map(|f| f.into_result().expect("echo").len() as u64)
                .sum();
            drop(executor);
            total
        });

        let procspawn = tasks_per_s_fallible(n, || {
            let pool = procspawn::Pool::new(WORKERS).map_err(|e| e.to_string())?;
            let mut total = 0u64;
            let mut done = 0;
            while done < n {
                let k = (WORKERS as u64).min(n - done);
                let handles: Vec<_> = (0..k)
                    .map(|_| pool.spawn(payload.clone(), procspawn_echo as fn(Vec<u8>) -> Vec<u8>))
                    .collect();
                for handle in handles {
                    total += handle.join().map_err(|e| e.to_string())?.len() as u64;
                }
                done += k;
            }
            pool.shutdown();
            Ok(total)
        });

        let limit = pipe_echo(n, size);

        let mib = |f: &Figure| match f {
            Value(tasks_per_s) => Value(tasks_per_s * size as f64 / (1 << 20) as f64),
            other => other.clone(),
        };
        let ours = checked(ours, expected);
        let procspawn = checked_fallible(procspawn, expected);
        let limit = match limit {
            Ok(v) => Value(v),
            Err(e) => na(e),
        };
        let desc = format!(
            "process pool: {} tasks echoing 1 MiB (Vec<u8> in, same Vec<u8> out)",
            thousands(n)
        );
        let procspawn_label = format!("procspawn: Pool::spawn, {WORKERS} pending at a time");
        let limit_label = "LIMIT: the same bytes echoed by a process over one Unix socket";

        let python = self.python("W5", "submit, results in order");
        self.rows.push(
            Row::new("W5", desc.clone(), "tasks/s")
                .ours("ours: submit, into_result in order", ours.clone())
                .peer(procspawn_label.clone(), procspawn.clone())
                .peer(python.system, python.figure)
                .peer(limit_label, limit.clone()),
        );
        let python = self.python("W5MIB", "submit, results in order");
        self.rows.push(
            Row::new("W5", "the same, as payload MiB/s (one way)", "MiB/s")
                .ours("ours: submit, into_result in order", mib(&ours))
                .peer(procspawn_label, mib(&procspawn))
                .peer(python.system, python.figure)
                .peer(limit_label, mib(&limit)),
        );
        self.notes.push(format!(
            "W5: procspawn is fed {WORKERS} tasks at a time: with all 200 pending it stalls for \
             good at the third Pool::spawn, which blocks writing its 1 MiB argument into a \
             channel that no worker reads yet, while both workers' results wait to be joined."
        ));
    }

    // ---------------------------------------------------------------------------------------
    // W6: cold start

    fn w6(&mut self) {
        let reps = W6_REPS;
        let python = self.python("W6_spawn", "start method spawn, median of 3");
        let fork = self.python("W6_fork", "start method fork, median of 3");
        let forkserver = self.python("W6_forkserver", "start method forkserver, median of 3");
        let ours_label = format!("ours: new + submit + result + drop, median of {reps}");
        let procspawn_label =
            format!("procspawn: Pool::new + spawn + join + shutdown, median of {reps}");
        self.rows.push(
            Row::new(
                "W6",
                format!(
                    "process pool ({WORKERS} workers): construct, first result, shutdown; \
                     in a fresh process"
                ),
                "ms",
            )
            .lower_is_better()
            .ours(ours_label.clone(), run_in_child("w6-ours", self.scale))
            .peer(
                procspawn_label.clone(),
                run_in_child("w6-procspawn", self.scale),
            )
            .peer(python.system, python.figure)
            .peer(fork.system, fork.figure)
            .peer(forkserver.system, forkserver.figure),
        );
        // The same in this process, which the workloads before it (W1 to W5) have grown.
        let rss = rss_bytes().map_or_else(|e| e, |b| format!("{:.0} MiB", b / (1 << 20) as f64));
        self.rows.push(
            Row::new(
                "W6",
                format!(
                    "the same in this process, after the workloads before it (its RSS now: {rss})"
                ),
                "ms",
            )
            .lower_is_better()
            .ours(ours_label, w6_ours())
            .peer(procspawn_label, w6_procspawn())
            .peer("python", na("its figures come from its own process")),
        );
        self.notes.push(
            "W6: 'spawn' is Python's start method closest to a re-executed binary; 'fork' and \
             'forkserver' are shown for reference. Ours starts workers on demand, so one task \
             starts one worker; procspawn's Pool::new starts all of them (so does Python's \
             'fork'; 'spawn' and 'forkserver' start them on demand). The second W6 row shows the cost of starting \
             workers from a process with a large heap: a start method that forks copies the \
             parent's page tables, one that uses posix_spawn (vfork) does not."
                .into(),
        );
    }

    // ---------------------------------------------------------------------------------------
    // W7: warm round trip

    fn w7(&mut self) {
        let n = self.n(2_000) as usize;
        self.notes.push(
            "W7: ours runs with the default idle_spin (a worker that answered a lone small call \
             polls its socket up to 100 µs before sleeping); procspawn's and Python's workers, \
             and the REFERENCE's echo process, sleep between calls."
                .into(),
        );
        let ours = guarded(|| {
            let executor = ProcessPoolExecutor::new(WORKERS);
            for i in 0..50 {
                executor
                    .submit(square_number(i))
                    .result()
                    .map_err(|e| e.to_string())?;
            }
            let mut lat = Vec::with_capacity(n);
            for i in 0..n as u64 {
                let t = Instant::now();
                let v = executor
                    .submit(square_number(i))
                    .result()
                    .map_err(|e| e.to_string())?;
                lat.push(t.elapsed());
                assert_eq!(v, i * i);
            }
            Ok::<_, String>(lat)
        });
        let procspawn = guarded(|| {
            let pool = procspawn::Pool::new(WORKERS).map_err(|e| e.to_string())?;
            for i in 0..50u64 {
                pool.spawn(i, procspawn_square as fn(u64) -> u64)
                    .join()
                    .map_err(|e| e.to_string())?;
            }
            let mut lat = Vec::with_capacity(n);
            for i in 0..n as u64 {
                let t = Instant::now();
                let v = pool
                    .spawn(i, procspawn_square as fn(u64) -> u64)
                    .join()
                    .map_err(|e| e.to_string())?;
                lat.push(t.elapsed());
                assert_eq!(v, i * i);
            }
            pool.shutdown();
            Ok::<_, String>(lat)
        });
        let reference = socket_ping_pong(n);
        for (id, q, key) in [("W7", 50, "W7P50"), ("W7", 99, "W7P99")] {
            let python = self.python(key, "submit().result() in a loop");
            self.rows.push(
                Row::new(
                    id,
                    format!(
                        "warm process pool: one task's round trip, p{q} of {} sequential",
                        thousands(n as u64)
                    ),
                    "µs",
                )
                .lower_is_better()
                .ours("ours: submit(..).result()", percentile_us(&ours, q))
                .peer(
                    "procspawn: pool.spawn(..).join()",
                    percentile_us(&procspawn, q),
                )
                .peer(python.system, python.figure)
                .peer(
                    "REFERENCE: 8 bytes to another process and back over one Unix socket \
                     (no pool; both sleep between messages: two wake-ups)",
                    percentile_us(&reference, q),
                ),
            );
        }
    }

    // ---------------------------------------------------------------------------------------
    // W8: memory and descriptors per pending task, each in a fresh process

    fn w8(&mut self) {
        let n_threads = self.n(1_000_000);
        let n_procs = self.n(100_000);
        let n_procspawn = self.n(1_000);
        let child = |name: &str| run_in_child(name, self.scale);

        let python = self.python("W8RSS", "submit with both threads blocked");
        self.rows.push(
            Row::new(
                "W8",
                format!(
                    "thread pool: RSS per pending task, {} pending behind 2 blocked threads",
                    thousands(n_threads)
                ),
                "bytes",
            )
            .lower_is_better()
            .ours(
                "ours: submit, Future kept in a Vec",
                child("w8-ours-threads"),
            )
            .peer(
                "rayon: ThreadPool::spawn of a closure holding a channel Sender",
                child("w8-rayon"),
            )
            .peer(
                "threadpool: execute of a closure holding a channel Sender",
                child("w8-threadpool"),
            )
            .peer(python.system, python.figure),
        );
        let python = self.python("W8FD", "submit with both workers blocked");
        self.rows.push(
            Row::new(
                "W8",
                format!(
                    "process pool: descriptors per pending task ({} pending; procspawn {})",
                    thousands(n_procs),
                    thousands(n_procspawn)
                ),
                "fds",
            )
            .lower_is_better()
            .ours(
                "ours: submit with both workers blocked",
                child("w8-ours-processes"),
            )
            .peer(
                format!(
                    "procspawn: {} Pool::spawn with both workers blocked",
                    thousands(n_procspawn)
                ),
                child("w8-procspawn"),
            )
            .peer(python.system, python.figure),
        );
        self.notes.push(
            "W8: RSS is VmRSS from /proc/self/status before and after the submits, divided by the \
             count; descriptors are /proc/self/fd entries before and after. Each system runs in \
             a fresh process so that memory freed by an earlier workload does not hide its cost."
                .into(),
        );
    }

    // ---------------------------------------------------------------------------------------
    // The table

    fn table(&self) -> String {
        let mut rows: Vec<[String; 5]> = Vec::new();
        for row in &self.rows {
            let better = if row.higher_is_better {
                "higher"
            } else {
                "lower"
            };
            rows.push([
                row.id.to_owned(),
                format!("{} [{}, {better} is better]", row.description, row.unit),
                row.ours.system.clone(),
                figure_text(&row.ours.figure, row.unit),
                String::new(),
            ]);
            for peer in &row.peers {
                let ratio = match (&row.ours.figure, &peer.figure) {
                    (Value(ours), Value(theirs)) => {
                        ratio_text(*ours, *theirs, row.higher_is_better)
                    }
                    (NotApplicable(_), _) => "n/a: no figure of ours".to_owned(),
                    (_, NotApplicable(_)) => "n/a".to_owned(),
                };
                rows.push([
                    String::new(),
                    String::new(),
                    format!("vs {}", peer.system),
                    figure_text(&peer.figure, row.unit),
                    ratio,
                ]);
            }
        }
        let headers = ["ID", "workload", "system", "figure", "ours vs peer"];
        // Columns wrap at these widths; the figure and ratio columns are right-aligned.
        let limits = [4, 44, 60, 22, 14];
        let mut widths = headers.map(|h| h.chars().count());
        let wrapped: Vec<Vec<Vec<String>>> = rows
            .iter()
            .map(|r| {
                r.iter()
                    .zip(limits)
                    .map(|(cell, limit)| wrap(cell, limit))
                    .collect()
            })
            .collect();
        for r in &wrapped {
            for (w, cell) in widths.iter_mut().zip(r) {
                for part in cell {
                    *w = (*w).max(part.chars().count());
                }
            }
        }
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Ratio: ours / peer for higher-is-better figures (tasks/s, MiB/s); peer / ours for \
             lower-is-better ones (ms, µs, bytes, fds).\nSo a ratio above 1 means this crate \
             is faster (or leaner) than that peer on that row. Every workload uses 2 workers.\n"
        );
        let line = |cells: &[&str]| {
            let mut s = String::new();
            for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
                if i > 0 {
                    s.push_str(" | ");
                }
                let pad = " ".repeat(w.saturating_sub(c.chars().count()));
                if i >= 3 {
                    s.push_str(&pad);
                    s.push_str(c);
                } else {
                    s.push_str(c);
                    s.push_str(&pad);
                }
            }
            s.trim_end().to_owned()
        };
        let rule = widths.map(|w| "-".repeat(w)).join("-+-");
        let _ = writeln!(out, "{}", line(&headers));
        let _ = writeln!(out, "{rule}");
        for (k, r) in wrapped.iter().enumerate() {
            if k > 0 && !rows[k][0].is_empty() {
                let _ = writeln!(out, "{rule}");
            }
            let height = r.iter().map(Vec::len).max().unwrap_or(1);
            for h in 0..height {
                let cells: Vec<&str> = r
                    .iter()
                    .map(|cell| cell.get(h).map_or("", String::as_str))
                    .collect();
                let _ = writeln!(out, "{}", line(&cells));
            }
        }
        let _ = writeln!(out, "\nNotes:");
        let mut notes = vec![
            "Every figure above was measured in this run; each throughput includes creating and \
             shutting down the pool, as Python's `with` block does in the anchor scripts."
                .to_owned(),
            format!(
                "W1 and W2 (every system): one untimed round, then the median of {STEADY_ROUNDS} \
                 timed rounds, so that no system runs on pages another one's round faulted in \
                 and freed (timed once each, the first in the process paid for them)."
            ),
            "Python runs fewer tasks where the anchors do (W1, W2: 100,000; W3: 20,000; W8: \
             200,000 and 20,000): 1,000,000 takes too long in Python. Its task count is in its \
             system label; tasks/s is comparable across counts."
                .to_owned(),
        ];
        notes.extend(self.notes.iter().cloned());
        for note in notes {
            let _ = writeln!(out, "- {note}");
        }
        out
    }
}

// -------------------------------------------------------------------------------------------
// Peers' task functions (procspawn needs plain `fn` pointers)

/// W6's repetitions; the figure is their median.
const W6_REPS: usize = 5;

fn w6_ours() -> Figure {
    median_ms(W6_REPS, || {
        let executor = ProcessPoolExecutor::new(WORKERS);
        let v = executor
            .submit(square_number(3))
            .result()
            .map_err(|e| e.to_string())?;
        assert_eq!(v, 9);
        drop(executor);
        Ok(())
    })
}

fn w6_procspawn() -> Figure {
    median_ms(W6_REPS, || {
        let pool = procspawn::Pool::new(WORKERS).map_err(|e| e.to_string())?;
        let v = pool
            .spawn(3u64, procspawn_square as fn(u64) -> u64)
            .join()
            .map_err(|e| e.to_string())?;
        assert_eq!(v, 9);
        pool.shutdown();
        Ok(())
    })
}

fn procspawn_square(x: u64) -> u64 {
    x * x
}

fn procspawn_square_chunk(xs: Vec<u64>) -> Vec<u64> {
    xs.into_iter().map(|x| x * x).collect()
}

fn procspawn_echo(bytes: Vec<u8>) -> Vec<u8> {
    bytes
}

fn procspawn_wait_for_file(path: String) {
    while !Path::new(&path).exists() {
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn rayon_pool() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(WORKERS)
        .build()
        .expect("a 2-thread rayon pool")
}

// -------------------------------------------------------------------------------------------
// Measuring

fn sum_of_squares(n: u64) -> u64 {
    (0..n).map(|i| i * i).sum()
}

/// Runs `f` once and gives tasks/s with its checksum.
fn tasks_per_s(n: u64, f: impl FnOnce() -> u64) -> (f64, u64) {
    let t = Instant::now();
    let sum = f();
    (n as f64 / t.elapsed().as_secs_f64(), sum)
}

/// Thread-pool throughput: one untimed round, then the median of [`STEADY_ROUNDS`] timed
/// ones. Every system then runs on a heap that this workload has already grown, as in a
/// long-running program; timed once each, the first system in the process paid for the fresh
/// pages (first-touch faults, 27-50 ms per 64 MB on this VM) that the ones after it reused.
fn tasks_per_s_steady(n: u64, mut f: impl FnMut() -> u64) -> (f64, u64) {
    let warm_up = f();
    let mut rates = Vec::with_capacity(STEADY_ROUNDS);
    for _ in 0..STEADY_ROUNDS {
        let (rate, sum) = tasks_per_s(n, &mut f);
        if sum != warm_up {
            return (rate, sum);
        }
        rates.push(rate);
    }
    rates.sort_by(f64::total_cmp);
    (rates[STEADY_ROUNDS / 2], warm_up)
}

/// Timed rounds per thread-pool figure; odd, for a median.
const STEADY_ROUNDS: usize = 3;

fn tasks_per_s_fallible(
    n: u64,
    f: impl FnOnce() -> Result<u64, String>,
) -> Result<(f64, u64), String> {
    let t = Instant::now();
    let sum = guarded(f)?;
    Ok((n as f64 / t.elapsed().as_secs_f64(), sum))
}

/// Runs a peer's measurement, turning a panic into an error for its row.
fn guarded<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(panic) => Err(format!(
            "panicked: {}",
            panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default()
        )),
    }
}

fn checked((value, sum): (f64, u64), expected: u64) -> Figure {
    if sum == expected {
        Value(value)
    } else {
        na(format!(
            "wrong results (checksum {sum}, expected {expected})"
        ))
    }
}

fn checked_fallible(result: Result<(f64, u64), String>, expected: u64) -> Figure {
    match result {
        Ok(r) => checked(r, expected),
        Err(e) => na(format!("failed: {e}")),
    }
}

fn median_ms(reps: usize, mut f: impl FnMut() -> Result<(), String>) -> Figure {
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        if let Err(e) = guarded(&mut f) {
            return na(format!("failed: {e}"));
        }
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Value(times[times.len() / 2])
}

fn percentile_us(latencies: &Result<Vec<Duration>, String>, q: usize) -> Figure {
    match latencies {
        Ok(lat) if !lat.is_empty() => {
            let mut us: Vec<f64> = lat.iter().map(|d| d.as_secs_f64() * 1e6).collect();
            us.sort_by(f64::total_cmp);
            Value(us[((us.len() * q) / 100).min(us.len() - 1)])
        }
        Ok(_) => na("no samples"),
        Err(e) => na(format!("failed: {e}")),
    }
}

/// The LIMIT of W5: `n` × `size` bytes echoed by another process over one Unix socket, the
/// transport our workers use: a copy of this binary (`--echo`) copies its stdin to its stdout,
/// both the socket, in 1 MiB blocks; a writer thread feeds it and this thread reads it back.
/// No framing, no encoding, no task: what the socket and two processes can carry.
fn pipe_echo(n: u64, size: usize) -> Result<f64, String> {
    let payload = vec![b'x'; size];
    let t = Instant::now();
    let (ours, mut child) = start_echo_process()?;
    let mut to_child = ours.try_clone().map_err(|e| e.to_string())?;
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        for _ in 0..n {
            to_child.write_all(&payload)?;
        }
        to_child.shutdown(std::net::Shutdown::Write)
    });
    let mut from_child = ours;
    let mut buf = vec![0u8; size];
    let mut total = 0u64;
    for _ in 0..n {
        from_child.read_exact(&mut buf).map_err(|e| e.to_string())?;
        total += buf.len() as u64;
    }
    writer
        .join()
        .map_err(|_| "writer panicked".to_owned())?
        .map_err(|e| e.to_string())?;
    child.wait().map_err(|e| e.to_string())?;
    let elapsed = t.elapsed();
    if total != n * size as u64 {
        return Err(format!("read {total} bytes"));
    }
    Ok(n as f64 / elapsed.as_secs_f64())
}

/// The REFERENCE of W7: `n` sequential round trips of 8 bytes to the `--echo` process and
/// back over one Unix socket, each timed. Two wake-ups per trip (that process, then this
/// thread): what a pool whose workers sleep between calls pays at least, on this machine, now.
fn socket_ping_pong(n: usize) -> Result<Vec<Duration>, String> {
    let (mut ours, mut child) = start_echo_process()?;
    let mut trip = |i: u64| -> Result<Duration, String> {
        let t = Instant::now();
        ours.write_all(&i.to_le_bytes())
            .map_err(|e| e.to_string())?;
        let mut back = [0u8; 8];
        ours.read_exact(&mut back).map_err(|e| e.to_string())?;
        let elapsed = t.elapsed();
        if u64::from_le_bytes(back) != i {
            return Err(format!("echo of {i} came back as {back:?}"));
        }
        Ok(elapsed)
    };
    // Warm up as the pools are.
    for i in 0..50 {
        trip(i)?;
    }
    let latencies = (0..n as u64)
        .map(&mut trip)
        .collect::<Result<Vec<_>, _>>()?;
    ours.shutdown(std::net::Shutdown::Write)
        .map_err(|e| e.to_string())?;
    child.wait().map_err(|e| e.to_string())?;
    Ok(latencies)
}

/// A copy of this binary in `--echo` mode, its stdin and stdout both the other end of the
/// returned socket.
fn start_echo_process() -> Result<(std::os::unix::net::UnixStream, std::process::Child), String> {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let child = Command::new(exe)
        .arg("--echo")
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(
            theirs.try_clone().map_err(|e| e.to_string())?,
        )))
        .stdout(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
        .spawn()
        .map_err(|e| format!("n/a: cannot start the echo process: {e}"))?;
    Ok((ours, child))
}

/// `--echo`: copies stdin to stdout in 1 MiB blocks until stdin ends (the LIMIT of W5, the
/// REFERENCE of W7).
fn echo_stdin_to_stdout() {
    let mut input = std::io::stdin().lock();
    let mut output = std::io::stdout().lock();
    let mut block = vec![0u8; 1 << 20];
    loop {
        match input.read(&mut block) {
            Ok(0) | Err(_) => return,
            Ok(read) => {
                // Flushed at once: stdout buffers lines, and the W7 reference sends 8 bytes at a time.
                if output
                    .write_all(&block[..read])
                    .and_then(|()| output.flush())
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

// -------------------------------------------------------------------------------------------
// W1's systems, each one round; the sum of the squares

fn w1_ours(n: u64) -> u64 {
    submit_all_as_completed(ThreadPoolExecutor::new(WORKERS), n)
}

/// W1's and W3's workload for ours: `n` submits, the results as they complete, summed, then
/// the executor shut down (dropped, waiting), as Python's `with` block does.
fn submit_all_as_completed(executor: impl Executor, n: u64) -> u64 {
    let futures: Vec<_> = (0..n).map(|i| executor.submit(square_number(i))).collect();
    let sum: u64 = as_completed(&futures)
        .map(|f| f.result().expect("square_number"))
        .sum();
    drop(executor);
    sum
}

fn w1_rayon(n: u64) -> u64 {
    let pool = rayon_pool();
    let (tx, rx) = crossbeam_channel::unbounded();
    for i in 0..n {
        let tx = tx.clone();
        pool.spawn(move || tx.send(i * i).expect("receiver alive"));
    }
    drop(tx);
    rx.iter().sum()
}

fn w1_threadpool(n: u64) -> u64 {
    let pool = threadpool::ThreadPool::new(WORKERS);
    let (tx, rx) = crossbeam_channel::unbounded();
    for i in 0..n {
        let tx = tx.clone();
        pool.execute(move || tx.send(i * i).expect("receiver alive"));
    }
    drop(tx);
    let sum = rx.iter().sum();
    pool.join();
    sum
}

/// W2's peers: the `(input, output)` pairs put in input order, as a map yields them, then
/// summed.
fn sum_in_input_order(n: u64, results: &crossbeam_channel::Receiver<(u64, u64)>) -> u64 {
    let mut ordered = vec![0u64; n as usize];
    for (i, v) in results.iter() {
        ordered[i as usize] = v;
    }
    ordered.iter().sum()
}

/// One W1 round of `system` in this (fresh) process: tasks/s, or why not.
fn w1_cold(n: u64, system: fn(u64) -> u64) -> Result<f64, String> {
    let (rate, sum) = tasks_per_s(n, || system(n));
    if sum == sum_of_squares(n) {
        Ok(rate)
    } else {
        Err(format!("wrong sum {sum}"))
    }
}

// -------------------------------------------------------------------------------------------
// W1, W6 and W8 children: each measurement in a fresh copy of this binary

fn run_in_child(name: &str, scale: u64) -> Figure {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return na(format!("cannot find this binary: {e}")),
    };
    let output = Command::new(exe)
        .args(["--child", name, "--scale", &scale.to_string()])
        .stdin(Stdio::null())
        .output();
    let output = match output {
        Ok(o) => o,
        Err(e) => return na(format!("cannot run child: {e}")),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("VALUE ") {
            if let Ok(v) = rest.trim().parse() {
                return Value(v);
            }
        }
        if let Some(rest) = line.strip_prefix("NA ") {
            return na(rest.trim().to_owned());
        }
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    na(format!(
        "child {name} failed ({}): {}",
        output.status,
        stderr.lines().last().unwrap_or("")
    ))
}

fn run_child(name: &str, scale: u64) {
    let n = |base: u64| (base / scale).max(10);
    let result = match name {
        "w1-ours" => w1_cold(n(1_000_000), w1_ours),
        "w1-rayon" => w1_cold(n(1_000_000), w1_rayon),
        "w1-threadpool" => w1_cold(n(1_000_000), w1_threadpool),
        "w6-ours" => figure_result(w6_ours()),
        "w6-procspawn" => figure_result(w6_procspawn()),
        "w8-ours-threads" => w8_ours_threads(n(1_000_000)),
        "w8-rayon" => w8_channel_peer(n(1_000_000), &rayon_pool()),
        "w8-threadpool" => {
            let pool = threadpool::ThreadPool::new(WORKERS);
            let r = w8_channel_peer(n(1_000_000), &pool);
            pool.join();
            r
        }
        "w8-ours-processes" => w8_ours_processes(n(100_000)),
        "w8-procspawn" => w8_procspawn(n(1_000)),
        other => Err(format!("unknown child {other:?}")),
    };
    match result {
        Ok(v) => println!("VALUE {v}"),
        Err(e) => println!("NA {e}"),
    }
}

/// The soft limit on open files, from /proc/self/limits.
fn open_files_limit() -> String {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3).map(str::to_owned))
        })
        .unwrap_or_else(|| "unknown".into())
}

fn figure_result(figure: Figure) -> Result<f64, String> {
    match figure {
        Value(v) => Ok(v),
        NotApplicable(reason) => Err(reason),
    }
}

fn rss_bytes() -> Result<f64, String> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb * 1024.0)
        .ok_or_else(|| "no VmRSS in /proc/self/status".to_owned())
}

fn fd_count() -> Result<f64, String> {
    Ok(std::fs::read_dir("/proc/self/fd")
        .map_err(|e| e.to_string())?
        .count() as f64)
}

fn gate_path(who: &str) -> PathBuf {
    std::env::temp_dir().join(format!("cf-compare-gate-{who}-{}", std::process::id()))
}

fn w8_ours_threads(n: u64) -> Result<f64, String> {
    let executor = ThreadPoolExecutor::new(WORKERS);
    let (started_tx, started_rx) = crossbeam_channel::unbounded();
    let (gate_tx, gate_rx) = crossbeam_channel::unbounded::<()>();
    let blockers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let started = started_tx.clone();
            let gate = gate_rx.clone();
            executor.spawn(move || {
                started.send(()).ok();
                gate.recv().ok();
            })
        })
        .collect();
    for _ in 0..WORKERS {
        started_rx.recv().map_err(|e| e.to_string())?;
    }
    let before = rss_bytes()?;
    let futures: Vec<_> = (0..n).map(|i| executor.submit(square_number(i))).collect();
    let after = rss_bytes()?;
    drop(gate_tx);
    for b in &blockers {
        b.result().map_err(|e| e.to_string())?;
    }
    let sum: u64 = futures
        .into_iter()
        .map(|f| f.into_result().expect("square_number"))
        .sum();
    if sum != sum_of_squares(n) {
        return Err("wrong results".into());
    }
    Ok((after - before) / n as f64)
}

/// The two channel-based thread-pool peers of W8.
trait Spawner {
    fn spawn_job<F: FnOnce() + Send + 'static>(&self, job: F);
}

impl Spawner for rayon::ThreadPool {
    fn spawn_job<F: FnOnce() + Send + 'static>(&self, job: F) {
        self.spawn(job);
    }
}

impl Spawner for threadpool::ThreadPool {
    fn spawn_job<F: FnOnce() + Send + 'static>(&self, job: F) {
        self.execute(job);
    }
}

/// rayon and threadpool: block the two threads on a gate, then give the pool `n` jobs, each a
/// closure holding a channel `Sender` and its input.
fn w8_channel_peer(n: u64, pool: &impl Spawner) -> Result<f64, String> {
    let (started_tx, started_rx) = crossbeam_channel::unbounded();
    let (gate_tx, gate_rx) = crossbeam_channel::unbounded::<()>();
    for _ in 0..WORKERS {
        let started = started_tx.clone();
        let gate = gate_rx.clone();
        pool.spawn_job(move || {
            started.send(()).ok();
            gate.recv().ok();
        });
    }
    for _ in 0..WORKERS {
        started_rx.recv().map_err(|e| e.to_string())?;
    }
    let (tx, rx) = crossbeam_channel::unbounded();
    let before = rss_bytes()?;
    for i in 0..n {
        let tx = tx.clone();
        pool.spawn_job(move || tx.send(i * i).expect("receiver alive"));
    }
    let after = rss_bytes()?;
    drop(tx);
    drop(gate_tx);
    let sum: u64 = rx.iter().sum();
    if sum != sum_of_squares(n) {
        return Err("wrong results".into());
    }
    Ok((after - before) / n as f64)
}

fn w8_ours_processes(n: u64) -> Result<f64, String> {
    let gate = gate_path("ours");
    let gate_string = gate.to_string_lossy().into_owned();
    let executor = ProcessPoolExecutor::new(WORKERS);
    let blockers: Vec<_> = (0..WORKERS)
        .map(|_| executor.submit(wait_for_file(gate_string.clone())))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !blockers.iter().all(|b| b.running()) {
        if Instant::now() > deadline {
            let _ = std::fs::write(&gate, b"");
            return Err("the blocking tasks did not start within 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let before = fd_count()?;
    let futures: Vec<_> = (0..n).map(|i| executor.submit(square_number(i))).collect();
    let after = fd_count()?;
    std::fs::write(&gate, b"").map_err(|e| e.to_string())?;
    for b in &blockers {
        b.result().map_err(|e| e.to_string())?;
    }
    let sum: u64 = as_completed(&futures)
        .map(|f| f.result().expect("square_number"))
        .sum();
    drop(executor);
    let _ = std::fs::remove_file(&gate);
    if sum != sum_of_squares(n) {
        return Err("wrong results".into());
    }
    Ok((after - before) / n as f64)
}

fn w8_procspawn(n: u64) -> Result<f64, String> {
    let gate = gate_path("procspawn");
    let gate_string = gate.to_string_lossy().into_owned();
    let pool = procspawn::Pool::new(WORKERS).map_err(|e| e.to_string())?;
    let blockers: Vec<_> = (0..WORKERS)
        .map(|_| pool.spawn(gate_string.clone(), procspawn_wait_for_file as fn(String)))
        .collect();
    // procspawn does not say when a task starts: give the workers time to take the blockers.
    let deadline = Instant::now() + Duration::from_secs(2);
    while pool.active_count() < WORKERS && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100));
    let before = fd_count()?;
    let handles: Vec<_> = (0..n)
        .map(|i| pool.spawn(i, procspawn_square as fn(u64) -> u64))
        .collect();
    let after = fd_count()?;
    std::fs::write(&gate, b"").map_err(|e| e.to_string())?;
    for b in blockers {
        b.join().map_err(|e| e.to_string())?;
    }
    let mut sum = 0;
    for h in handles {
        sum += h.join().map_err(|e| e.to_string())?;
    }
    pool.shutdown();
    let _ = std::fs::remove_file(&gate);
    if sum != sum_of_squares(n) {
        return Err("wrong results".into());
    }
    Ok((after - before) / n as f64)
}

// -------------------------------------------------------------------------------------------
// Python

type PythonFigures = (HashMap<String, f64>, HashMap<String, u64>, String);

fn run_python_peers(script: &Path) -> Result<PythonFigures, String> {
    let mut child = Command::new("python3")
        .arg(script)
        .env("WORKERS", WORKERS.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("n/a: python3 is missing or cannot run ({e})"))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + PYTHON_TIME_LIMIT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!(
                    "python_peers.py killed after {} s",
                    PYTHON_TIME_LIMIT.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => break Err(e.to_string()),
        }
    };
    let lines = reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    let mut figures = HashMap::new();
    let mut counts = HashMap::new();
    let mut version = String::new();
    for line in &lines {
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            ["#", ..] => {}
            ["PYVERSION", v] => version = (*v).to_owned(),
            ["N", key, n] => {
                if let Ok(n) = n.parse() {
                    counts.insert((*key).to_owned(), n);
                }
            }
            [key, v] => {
                if let Ok(v) = v.parse() {
                    figures.insert((*key).to_owned(), v);
                }
            }
            _ => {}
        }
    }
    let status = status?;
    if figures.is_empty() {
        return Err(format!(
            "python_peers.py gave no figures ({status}): {}",
            err.lines().last().unwrap_or("")
        ));
    }
    if !status.success() {
        eprintln!("[compare] python_peers.py exited with {status}: {err}");
    }
    Ok((figures, counts, version))
}

// -------------------------------------------------------------------------------------------
// The machine, and formatting

fn machine_header() -> String {
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get().to_string())
        .unwrap_or_else(|e| format!("unknown ({e})"));
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        })
        .unwrap_or_else(|| "unknown (no /proc/cpuinfo)".into());
    let rustc = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown (rustc not found)".into());
    let python = Command::new("python3")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            let mut s = String::from_utf8_lossy(&o.stdout).trim().to_owned();
            if s.is_empty() {
                s = String::from_utf8_lossy(&o.stderr).trim().to_owned();
            }
            s
        })
        .unwrap_or_else(|| "python3 missing: its column says n/a".into());
    format!(
        "concurrent-futures compare ({} profile)\n\
         date:    {}\n\
         machine: nproc {nproc}; CPU {cpu}\n\
         rustc:   {rustc}\n\
         python:  {python}\n\
         workers: {WORKERS} in every workload\n",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        utc_now()
    )
}

/// Now, as `YYYY-MM-DD HH:MM:SS UTC`, from the system clock (no `date` needed).
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn figure_text(figure: &Figure, unit: &str) -> String {
    match figure {
        Value(v) => match unit {
            "tasks/s" => si(*v),
            "MiB/s" | "ms" | "µs" => format!("{v:.1}"),
            "bytes" => format!("{v:.0}"),
            "fds" => format!("{v:.4}"),
            _ => format!("{v:.3}"),
        },
        NotApplicable(reason) => {
            if reason.starts_with("n/a") {
                reason.clone()
            } else {
                format!("n/a: {reason}")
            }
        }
    }
}

fn ratio_text(ours: f64, theirs: f64, higher_is_better: bool) -> String {
    let (num, den) = if higher_is_better {
        (ours, theirs)
    } else {
        (theirs, ours)
    };
    if den == 0.0 && num == 0.0 {
        "1.00 (both 0)".to_owned()
    } else if den == 0.0 {
        "inf".to_owned()
    } else {
        let r = num / den;
        // Two significant digits at least, so a tiny ratio does not print as 0.00.
        let decimals = if r > 0.0 {
            (1 - r.log10().floor() as i32).clamp(2, 6) as usize
        } else {
            2
        };
        format!("{r:.decimals$}")
    }
}

/// 3 significant digits with k/M.
fn si(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.1}")
    }
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    // A peer's label ("vs ...") is indented on its continuation lines.
    let indent = if text.starts_with("vs ") { "   " } else { "" };
    let mut lines = vec![String::new()];
    for word in text.split(' ') {
        let last = lines.last_mut().expect("one line");
        if !last.trim().is_empty() && last.chars().count() + 1 + word.chars().count() > width {
            lines.push(format!("{indent}{word}"));
        } else {
            if !last.is_empty() {
                last.push(' ');
            }
            last.push_str(word);
        }
    }
    lines
}
