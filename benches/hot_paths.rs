//! Micro-benchmarks of the hot paths, with criterion:
//!
//! ```text
//! cargo bench --bench hot_paths             # all of them, under 2 minutes
//! cargo bench --bench hot_paths -- frame    # those whose name contains "frame"
//! ```
//!
//! - `submit/thread_pool_spawn`: `ThreadPoolExecutor::spawn` of a trivial closure (timed in
//!   blocks of 1,000 submits; the pool drains each block untimed, so the queue stays short);
//! - `future/complete`: `Future::new` + `set_result` + `result`;
//! - `as_completed/1000_done`: `as_completed` over 1,000 futures that are already done;
//! - `map/thread_pool_10000`: a warm 2-thread pool's `map` of `square_number` over 10,000
//!   inputs, collected (the batch its threads share);
//! - `frame/encode_task` and `frame/decode_task`: the runtime's wire module is private, so its
//!   public face: `postcard::to_stdvec` of a `&dyn ErasedTask` (typetag adds the task's
//!   name) and `postcard::from_bytes::<Box<dyn ErasedTask>>`, for `square_number(u64)` and for a
//!   1 MiB `echo(Vec<u8>)`;
//! - `process_pool/round_trip`: one `submit(..).result()` on a warm 2-worker process pool.
//!
//! `main` is written out (not `criterion_main!`) because `concurrent_futures::init()` must be
//! its first line: the process pool's workers are this binary started again.

use std::hint::black_box;
use std::time::{Duration, Instant};

use concurrent_futures::__private::ErasedTask;
use concurrent_futures::{Future, ProcessPoolExecutor, ThreadPoolExecutor, as_completed, task};
use criterion::{Criterion, Throughput};

#[task]
fn square_number(x: u64) -> u64 {
    x * x
}

#[task]
fn echo(bytes: Vec<u8>) -> Vec<u8> {
    bytes
}

fn submit(c: &mut Criterion) {
    let executor = ThreadPoolExecutor::new(2);
    let mut group = c.benchmark_group("submit");
    group.bench_function("thread_pool_spawn", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            let mut left = iters;
            let mut futures = Vec::with_capacity(1_000);
            while left > 0 {
                let k = left.min(1_000);
                let t = Instant::now();
                for i in 0..k {
                    futures.push(executor.spawn(move || black_box(i)));
                }
                elapsed += t.elapsed();
                for f in futures.drain(..) {
                    f.into_result().expect("trivial closure");
                }
                left -= k;
            }
            elapsed
        });
    });
    group.finish();
}

fn complete(c: &mut Criterion) {
    let mut group = c.benchmark_group("future");
    group.bench_function("complete", |b| {
        b.iter(|| {
            let future = Future::new();
            future.set_result(black_box(42u64)).expect("pending");
            future.result().expect("done")
        });
    });
    group.finish();
}

fn as_completed_done(c: &mut Criterion) {
    let futures: Vec<Future<u64>> = (0..1_000)
        .map(|i| {
            let f = Future::new();
            f.set_result(i).expect("pending");
            f
        })
        .collect();
    let mut group = c.benchmark_group("as_completed");
    group.throughput(Throughput::Elements(futures.len() as u64));
    group.bench_function("1000_done", |b| {
        b.iter(|| as_completed(black_box(&futures)).count());
    });
    group.finish();
}

fn map(c: &mut Criterion) {
    let executor = ThreadPoolExecutor::new(2);
    let mut group = c.benchmark_group("map");
    group.throughput(Throughput::Elements(10_000));
    group.bench_function("thread_pool_10000", |b| {
        b.iter(|| {
            executor
                .map(square_number, 0..black_box(10_000u64))
                .map(|r| r.expect("square_number"))
                .sum::<u64>()
        });
    });
    group.finish();
}

fn frame(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame");
    let small: Box<dyn ErasedTask> = Box::new(square_number(123_456_789));
    let small_bytes = postcard::to_stdvec(small.as_ref()).expect("encodes");
    group.bench_function("encode_task/square_number", |b| {
        b.iter(|| postcard::to_stdvec(black_box(small.as_ref())).expect("encodes"));
    });
    group.bench_function("decode_task/square_number", |b| {
        b.iter(|| {
            postcard::from_bytes::<Box<dyn ErasedTask>>(black_box(&small_bytes)).expect("decodes")
        });
    });

    let big: Box<dyn ErasedTask> = Box::new(echo(vec![b'x'; 1 << 20]));
    let big_bytes = postcard::to_stdvec(big.as_ref()).expect("encodes");
    group.throughput(Throughput::Bytes(1 << 20));
    group.bench_function("encode_task/echo_1MiB", |b| {
        b.iter(|| postcard::to_stdvec(black_box(big.as_ref())).expect("encodes"));
    });
    group.bench_function("decode_task/echo_1MiB", |b| {
        b.iter(|| {
            postcard::from_bytes::<Box<dyn ErasedTask>>(black_box(&big_bytes)).expect("decodes")
        });
    });
    group.finish();
}

fn process_pool(c: &mut Criterion) {
    let executor = ProcessPoolExecutor::new(2);
    for i in 0..50 {
        executor.submit(square_number(i)).result().expect("warm-up");
    }
    let mut group = c.benchmark_group("process_pool");
    group.bench_function("round_trip", |b| {
        b.iter(|| {
            executor
                .submit(square_number(black_box(7)))
                .result()
                .expect("square_number")
        });
    });
    group.finish();
}

fn main() {
    concurrent_futures::init(); // the process pool's workers enter here and never return

    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
        .configure_from_args();
    submit(&mut criterion);
    complete(&mut criterion);
    as_completed_done(&mut criterion);
    map(&mut criterion);
    frame(&mut criterion);
    process_pool(&mut criterion);
    criterion.final_summary();
}
