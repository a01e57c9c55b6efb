//! How a Redis worker is started: the environment variables [`init`](crate::init) reads, and
//! a `Command` that starts this program as a worker.

use std::process::Command;
use std::time::Duration;

use super::envelope::Key;

/// Names the Redis server (`redis://...` or `rediss://...`) and makes [`init`](crate::init)
/// run a worker. The one variable a worker needs.
pub const WORKER_URL_VAR: &str = "CONCURRENT_FUTURES_REDIS_WORKER";

/// How many tasks a worker runs at once, each in a process of its local pool; default: the
/// available parallelism.
pub const WORKER_CONCURRENCY_VAR: &str = "CONCURRENT_FUTURES_REDIS_CONCURRENCY";

/// The key prefix, as given to [`RedisBuilder::prefix`](super::RedisBuilder::prefix);
/// default `cf`.
pub const WORKER_PREFIX_VAR: &str = "CONCURRENT_FUTURES_REDIS_PREFIX";

/// The shared signing secret, as given to
/// [`RedisBuilder::signing_key`](super::RedisBuilder::signing_key). With it, the worker runs
/// only tasks signed with it.
pub const WORKER_KEY_VAR: &str = "CONCURRENT_FUTURES_REDIS_KEY";

/// Milliseconds a task may go without its worker's heartbeat before another worker claims it;
/// default 30000. Workers heartbeat four times in this period, but no more often than every
/// 10 ms: under 40 ms they beat less often, and under 10 ms a live worker's task may be claimed.
pub const WORKER_CLAIM_IDLE_VAR: &str = "CONCURRENT_FUTURES_REDIS_CLAIM_IDLE_MS";

/// A PEM file of the certificate authority that signed the server's TLS certificate, for
/// `rediss://` servers with a private CA, as given to
/// [`RedisBuilder::tls_root_certificate`](super::RedisBuilder::tls_root_certificate).
pub const WORKER_CA_FILE_VAR: &str = "CONCURRENT_FUTURES_REDIS_CA_FILE";

/// How many tasks a worker holds beyond the ones it runs, so that the next is at hand;
/// default: the concurrency. More raises the throughput of tiny tasks; but a worker that is
/// lost takes what it holds with it, and those of its tasks that are not idempotent fail
/// with `WorkerDied`, started or not.
pub const WORKER_PREFETCH_VAR: &str = "CONCURRENT_FUTURES_REDIS_PREFETCH";

const DEFAULT_CLAIM_IDLE: Duration = Duration::from_secs(30);

/// A worker's settings, from its environment.
#[derive(Debug)]
pub(crate) struct WorkerConfig {
    pub(crate) url: String,
    pub(crate) concurrency: usize,
    pub(crate) prefetch: usize,
    pub(crate) prefix: String,
    pub(crate) key: Option<Key>,
    pub(crate) claim_idle: Duration,
    pub(crate) root_cert: Option<Vec<u8>>,
}

/// A command that starts this program as a Redis worker for `url`, running `concurrency`
/// tasks at once: the current executable with [`WORKER_URL_VAR`] and
/// [`WORKER_CONCURRENCY_VAR`] set. Add the other variables with `.env(...)`. In a test binary
/// with `enable_test_support!`, it starts the hidden worker test.
///
/// On another host, the same is `CONCURRENT_FUTURES_REDIS_WORKER=redis://host:6379/
/// ./your-program`.
pub fn worker_command(url: &str, concurrency: usize) -> std::io::Result<Command> {
    let mut command = Command::new(std::env::current_exe()?);
    if let Some(test) = crate::process::entry::test_entry_name() {
        command.args([test.as_str(), "--exact", "--nocapture"]);
    }
    command
        .env(WORKER_URL_VAR, url)
        .env(WORKER_CONCURRENCY_VAR, concurrency.to_string());
    Ok(command)
}

/// The worker settings if this process was started as a Redis worker. The URL variable is
/// removed, so that processes the tasks start are not workers too.
pub(crate) fn take_worker_url() -> Option<Result<WorkerConfig, String>> {
    let url = std::env::var(WORKER_URL_VAR).ok()?;
    // SAFETY: as for the process pool's marker (`entry::take_marker`): `init()` is the first
    // line of `main`, so no other thread of the program reads the environment now.
    #[allow(unsafe_code)]
    unsafe {
        std::env::remove_var(WORKER_URL_VAR);
    }
    Some(config(url))
}

fn config(url: String) -> Result<WorkerConfig, String> {
    let number = |var: &str| -> Result<Option<u64>, String> {
        match std::env::var(var) {
            Ok(text) => text
                .trim()
                .parse::<u64>()
                .map(Some)
                .map_err(|_| format!("{var}={text:?} is not a whole number")),
            Err(_) => Ok(None),
        }
    };
    let concurrency = match number(WORKER_CONCURRENCY_VAR)? {
        Some(0) => return Err(format!("{WORKER_CONCURRENCY_VAR} must be at least 1")),
        Some(n) => {
            usize::try_from(n).map_err(|_| format!("{WORKER_CONCURRENCY_VAR} is too large"))?
        }
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let prefetch = match number(WORKER_PREFETCH_VAR)? {
        Some(n) => usize::try_from(n).map_err(|_| format!("{WORKER_PREFETCH_VAR} is too large"))?,
        None => concurrency,
    };
    let claim_idle = match number(WORKER_CLAIM_IDLE_VAR)? {
        Some(0) => return Err(format!("{WORKER_CLAIM_IDLE_VAR} must be at least 1")),
        Some(ms) => Duration::from_millis(ms),
        None => DEFAULT_CLAIM_IDLE,
    };
    let root_cert = match std::env::var_os(WORKER_CA_FILE_VAR) {
        Some(path) => Some(std::fs::read(&path).map_err(|e| {
            format!(
                "cannot read {WORKER_CA_FILE_VAR}={}: {e}",
                path.to_string_lossy()
            )
        })?),
        None => None,
    };
    Ok(WorkerConfig {
        url,
        root_cert,
        concurrency,
        prefetch,
        prefix: std::env::var(WORKER_PREFIX_VAR).unwrap_or_else(|_| "cf".to_owned()),
        key: std::env::var_os(WORKER_KEY_VAR)
            .map(|k| Key::new(std::os::unix::ffi::OsStringExt::into_vec(k))),
        claim_idle,
    })
}
