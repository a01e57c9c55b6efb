//! The prime example of Python's `concurrent.futures` docs, through Redis: with no argument,
//! it starts a `redis-server` of its own on a free loopback port and two workers (this
//! program started again), then prints each result as it completes; with a URL, it uses
//! that server and whatever workers are attached to it.
//!
//! ```text
//! cargo run --release --features redis --example distributed
//! cargo run --release --features redis --example distributed -- redis://host:6379/
//! ```
//!
//! A worker on another host is this same binary:
//!
//! ```text
//! CONCURRENT_FUTURES_REDIS_WORKER=redis://host:6379/ ./distributed
//! ```

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::Instant;

use concurrent_futures::{RedisExecutor, as_completed, task};

/// The numbers of Python's example.
const PRIMES: [u64; 6] = [
    112_272_535_095_293,
    112_582_705_942_171,
    112_272_535_095_293,
    115_280_095_190_773,
    115_797_848_077_099,
    1_099_726_899_285_419,
];

/// Pure, so safe to run again if a worker is lost while it runs.
#[task(idempotent)]
fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    if n % 2 == 0 {
        return n == 2;
    }
    let limit = n.isqrt();
    (3..=limit).step_by(2).all(|d| n % d != 0)
}

/// A child process killed when this program is done with it.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() -> ExitCode {
    concurrent_futures::init(); // the workers enter here and never return
    let mut local = Vec::new();
    let url = match std::env::args().nth(1) {
        Some(url) => {
            println!(
                "using the workers attached to {url}; start one on any host with \
                 CONCURRENT_FUTURES_REDIS_WORKER={url} {}",
                std::env::args().next().unwrap_or_default()
            );
            url
        }
        None => match start_local() {
            Ok((url, children)) => {
                local = children;
                url
            }
            Err(message) => {
                eprintln!("{message}");
                return ExitCode::FAILURE;
            }
        },
    };
    let executor = match RedisExecutor::connect(&url) {
        Ok(executor) => executor,
        Err(error) => {
            eprintln!("cannot use Redis at {url}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let started = Instant::now();
    let futures: Vec<_> = PRIMES
        .iter()
        .map(|&n| executor.submit(is_prime(n)))
        .collect();
    for future in as_completed(&futures) {
        let index = futures
            .iter()
            .position(|f| std::ptr::eq(f, future))
            .expect("one of ours");
        match future.result() {
            Ok(prime) => println!("{} is prime: {prime}", PRIMES[index]),
            Err(error) => println!("{} failed: {error}", PRIMES[index]),
        }
    }
    println!("{} numbers in {:.2?}", PRIMES.len(), started.elapsed());
    drop(executor);
    // The workers first, then the server they use.
    local.into_iter().rev().for_each(drop);
    ExitCode::SUCCESS
}

/// A `redis-server` on a free loopback port, and two workers attached to it.
fn start_local() -> Result<(String, Vec<Killed>), String> {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map_err(|e| format!("cannot find a free port: {e}"))?
        .port();
    let mut server = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--logfile", ""])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| {
            format!(
                "cannot start redis-server ({e}). Install it (Debian/Ubuntu: \
                 `sudo apt-get install -y redis-server`), or pass the URL of a running server: \
                 cargo run --features redis --example distributed -- redis://host:6379/"
            )
        })?;
    let stdout = server.stdout.take().expect("piped");
    let server = Killed(server);
    let mut lines = BufReader::new(stdout).lines();
    if !lines.any(|line| line.is_ok_and(|l| l.contains("Ready to accept connections"))) {
        return Err(format!("redis-server did not start on port {port}"));
    }
    // Keep reading its log so that it never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let url = format!("redis://127.0.0.1:{port}/");
    println!("started redis-server at {url}");
    let mut children = vec![server];
    for _ in 0..2 {
        let worker = concurrent_futures::worker_command(&url, 2)
            .and_then(|mut command| command.spawn())
            .map_err(|e| format!("cannot start a worker: {e}"))?;
        children.push(Killed(worker));
    }
    Ok((url, children))
}
