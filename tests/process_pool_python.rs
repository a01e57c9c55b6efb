//! The CPython cases of `ProcessPoolExecutor` (PYTHON.md 1.7) that apply here: argument
//! validation, workers started on demand, and a worker per blocked task up to `max_workers`.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};

use concurrent_futures::{Error, ProcessPoolExecutor, task};

concurrent_futures::enable_test_support!();

#[task]
fn worker_pid() -> u32 {
    std::process::id()
}

/// Connects to the test's socket, says which process it is, and blocks until released.
#[task]
fn block_on_socket(path: String) -> u32 {
    let mut stream = UnixStream::connect(path).expect("the test listens");
    stream
        .write_all(&std::process::id().to_le_bytes())
        .expect("the test reads");
    let mut release = [0_u8; 1];
    stream.read_exact(&mut release).expect("the test releases");
    std::process::id()
}

#[test]
fn zero_max_workers_is_rejected() {
    let error = ProcessPoolExecutor::builder()
        .max_workers(0)
        .build()
        .unwrap_err();
    assert_eq!(
        error,
        Error::InvalidArgument {
            message: "max_workers must be greater than 0".to_owned()
        }
    );
}

#[test]
#[should_panic(expected = "max_workers must be greater than 0")]
fn new_with_zero_max_workers_panics() {
    let _ = ProcessPoolExecutor::new(0);
}

#[test]
fn zero_max_tasks_per_child_is_rejected() {
    let error = ProcessPoolExecutor::builder()
        .max_tasks_per_child(0)
        .build()
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("max_tasks_per_child must be >= 1"),
        "{error}"
    );
}

#[test]
fn default_max_workers_is_the_available_parallelism() {
    let cores = std::thread::available_parallelism().unwrap().get();
    assert_eq!(ProcessPoolExecutor::default().max_workers(), cores);
}

#[test]
fn no_worker_starts_before_the_first_submit() {
    let executor = ProcessPoolExecutor::new(2);
    assert!(executor.worker_pids().is_empty());
}

#[test]
fn sequential_submit_and_result_reuses_one_process() {
    let executor = ProcessPoolExecutor::new(4);
    let pids: Vec<u32> = (0..3)
        .map(|_| executor.submit(worker_pid()).result().unwrap())
        .collect();
    assert_eq!(pids, [pids[0]; 3]);
    assert_eq!(executor.worker_pids(), [pids[0]]);
}

#[test]
fn three_blocked_tasks_start_exactly_three_processes() {
    let dir = std::env::temp_dir().join(format!("cf-blocked-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("gate.sock");
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).unwrap();

    let executor = ProcessPoolExecutor::new(5);
    let futures: Vec<_> = (0..3)
        .map(|_| executor.submit(block_on_socket(path.to_string_lossy().into_owned())))
        .collect();
    // All three run at once: each has connected and said which process it is.
    let mut streams = Vec::new();
    let mut pids = Vec::new();
    for _ in 0..3 {
        let (mut stream, _) = listener.accept().unwrap();
        let mut pid = [0_u8; 4];
        stream.read_exact(&mut pid).unwrap();
        pids.push(u32::from_le_bytes(pid));
        streams.push(stream);
    }
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), 3, "three tasks, three processes");
    assert_eq!(executor.worker_pids(), pids, "and no more");

    for stream in &mut streams {
        stream.write_all(&[1]).unwrap();
    }
    let mut finished: Vec<u32> = futures.iter().map(|f| f.result().unwrap()).collect();
    finished.sort_unstable();
    assert_eq!(finished, pids);
    let _ = std::fs::remove_dir_all(&dir);
}

#[task]
fn initializer_that_aborts() {
    std::process::abort()
}

#[test]
fn initializer_that_kills_its_worker_breaks_the_pool_instead_of_respawning() {
    let executor = ProcessPoolExecutor::builder()
        .max_workers(1)
        .initializer(initializer_that_aborts())
        .build()
        .unwrap();
    let error = executor.submit(worker_pid()).result().unwrap_err();
    match &error {
        Error::Broken { reason } => {
            assert!(reason.contains("initializer"), "{reason}");
            assert!(reason.contains("signal: 6"), "{reason}");
        }
        other => panic!("expected Broken, got {other:?}"),
    }
    // Later submits fail the same way, at once.
    assert_eq!(executor.submit(worker_pid()).result().unwrap_err(), error);
}
