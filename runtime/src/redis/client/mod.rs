//! `RedisExecutor`: the submitting side. Tasks go onto a Redis stream that workers on any host
//! read through a consumer group; a thread of the executor reads the announcements of their
//! results and completes the futures.

mod results;
mod sender;

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use super::conn::Link;
use super::envelope::{self, Key, Settings};
use super::keys::Keys;
use crate::error::Error;
use crate::executor::{__Submitted, Executor};
use crate::future::Future;
use crate::process::call;
use crate::sync::{Arc, Condvar, Mutex, lock};
use crate::task::Task;

/// How many deliveries a task gets before it goes to the dead-letter stream.
const DEFAULT_MAX_DELIVERIES: u32 = 3;

/// How long results stay in Redis for a restarted submitter to find.
const DEFAULT_RESULT_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// How long a submit keeps retrying while Redis is unreachable.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest the result thread blocks on its stream: how often it looks for the results of
/// reattached tasks, which are announced to another executor's stream.
const RESULT_POLL: Duration = Duration::from_millis(200);

/// Runs `#[task]` values on worker processes attached to a Redis server, on this host or any
/// other. The same calls as the local pools: [`submit`](Self::submit), [`map`](Self::map),
/// [`as_completed`](crate::as_completed), [`wait`](crate::wait), `join_completed!`.
///
/// A worker is this program started with `CONCURRENT_FUTURES_REDIS_WORKER` naming the server;
/// [`init`](crate::init) turns it into a worker. See the [module docs](crate#distributed-redis)
/// of the facade for the worker command, delivery guarantees and security.
///
/// Tasks are delivered **at least once**: a task whose worker dies or stops heartbeating is
/// claimed by another worker. There it runs again if it is marked `#[task(idempotent)]`;
/// otherwise its future fails with [`Error::WorkerDied`] and it is not run twice. Each future
/// resolves once, with the first result stored for its task.
///
/// As with the process pool, a future is running from the moment it is sent: `cancel()`
/// returns false after `submit`. Dropping the executor waits for every result, as the local
/// pools do; with no worker attached that is forever, so call `shutdown(false, false)` to
/// leave without waiting, before or at the drop (the results stay in Redis for
/// [`reattach`](Self::reattach)). After that drop, the executor's result thread completes the
/// futures still held (by a handle or a done callback) as their results come, and ends once
/// none is.
///
/// Workers must run a build with the same task signatures as the submitter: a task whose
/// name a worker does not know fails with [`Error::Serialization`], and arguments of a
/// changed type are not detected (the process pool's build check cannot span hosts).
///
/// ```no_run
/// use concurrent_futures::{RedisExecutor, as_completed, task};
///
/// #[task]
/// fn square_number(x: u64) -> u64 {
///     x * x
/// }
///
/// fn main() {
///     concurrent_futures::init(); // workers enter here and never return
///     let executor = RedisExecutor::connect("redis://127.0.0.1:6379/").unwrap();
///     let futures: Vec<_> = (0..10).map(|i| executor.submit(square_number(i))).collect();
///     for future in as_completed(&futures) {
///         println!("{}", future.result().unwrap());
///     }
/// }
/// ```
pub struct RedisExecutor {
    shared: Arc<Shared>,
    /// To the sender thread, which adds tasks to the stream in batches; `None` once shut down.
    outbox: Mutex<Option<Sender<Vec<Outgoing>>>>,
    sender: Mutex<Option<JoinHandle<()>>>,
    results: Mutex<Option<JoinHandle<()>>>,
}

/// Builds a [`RedisExecutor`]: the key prefix, a signing key, delivery and timeout limits.
///
/// ```no_run
/// use std::time::Duration;
/// use concurrent_futures::RedisExecutor;
///
/// let executor = RedisExecutor::builder("rediss://:password@redis.internal:6380/")
///     .prefix("billing")
///     .signing_key(std::env::var("CF_KEY").unwrap())
///     .max_deliveries(5)
///     .task_timeout(Duration::from_secs(60))
///     .build()
///     .unwrap();
/// # drop(executor);
/// ```
#[must_use = "call build() to get the executor"]
pub struct RedisBuilder {
    url: String,
    prefix: String,
    key: Option<Key>,
    max_deliveries: u32,
    task_timeout: Option<Duration>,
    result_ttl: Duration,
    connect_timeout: Duration,
    root_cert: Option<Vec<u8>>,
}

impl fmt::Debug for RedisBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may hold a password.
        f.debug_struct("RedisBuilder")
            .field("prefix", &self.prefix)
            .field("signed", &self.key.is_some())
            .field("max_deliveries", &self.max_deliveries)
            .field("task_timeout", &self.task_timeout)
            .finish_non_exhaustive()
    }
}

impl RedisBuilder {
    /// The prefix of every key (default `cf`); executors and workers must agree on it.
    /// Workers read theirs from `CONCURRENT_FUTURES_REDIS_PREFIX`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Signs every task with HMAC-SHA256 under this shared secret, and accepts only results
    /// signed with it. Workers given the same secret (`CONCURRENT_FUTURES_REDIS_KEY`) reject
    /// unsigned and mis-signed tasks before decoding them.
    pub fn signing_key(mut self, secret: impl Into<Vec<u8>>) -> Self {
        self.key = Some(Key::new(secret));
        self
    }

    /// How many times a task may be delivered (its workers lost, or never finishing) before
    /// it goes to the dead-letter stream and its future fails with [`Error::DeadLetter`];
    /// default 3.
    pub fn max_deliveries(mut self, max: u32) -> Self {
        self.max_deliveries = max;
        self
    }

    /// The timeout of tasks that have none of their own (`#[task(timeout = ...)]`). A worker
    /// kills the local process running a task past it, as the process pool does, and the
    /// future fails with [`Error::TaskTimedOut`].
    pub fn task_timeout(mut self, timeout: Duration) -> Self {
        self.task_timeout = Some(timeout);
        self
    }

    /// For a `rediss://` server whose certificate a private authority signed: that
    /// authority's certificate (PEM), trusted instead of the system's roots. Workers read
    /// theirs from the file named by `CONCURRENT_FUTURES_REDIS_CA_FILE`.
    pub fn tls_root_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_cert = Some(pem.into());
        self
    }

    /// How long results stay in Redis (default one day): the window in which a restarted
    /// submitter can [`reattach`](RedisExecutor::reattach) to them.
    pub fn result_ttl(mut self, ttl: Duration) -> Self {
        self.result_ttl = ttl;
        self
    }

    /// How long connecting, and then each submit, keeps trying while Redis is unreachable
    /// (default 30 s) before failing with [`Error::Broken`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Connects, creates the task stream's consumer group if needed, and starts the thread
    /// that completes futures. Fails with [`Error::Broken`] if Redis cannot be reached within
    /// the connect timeout, and [`Error::InvalidArgument`] for a bad URL or zero deliveries.
    pub fn build(self) -> Result<RedisExecutor, Error> {
        if self.max_deliveries == 0 {
            return Err(Error::InvalidArgument {
                message: "max_deliveries must be >= 1".to_owned(),
            });
        }
        if self.result_ttl.as_secs() == 0 {
            return Err(Error::InvalidArgument {
                message: "result_ttl must be at least one second".to_owned(),
            });
        }
        let client = super::open_client(&self.url, self.root_cert.as_deref())?;
        let keys = Keys::new(&self.prefix);
        let client_id = random_id();
        let reply = keys.reply(&client_id);
        let mut link = Link::new(client.clone(), Duration::from_secs(30))
            .on_connect(super::prepare_hook(&keys));
        let give_up = Some(Instant::now() + self.connect_timeout);
        link.run(give_up, |conn| redis::cmd("PING").query::<()>(conn))
            .map_err(|e| broken("cannot reach Redis", &e))?;
        let shared = Arc::new(Shared {
            keys,
            reply,
            client_id,
            key: self.key,
            max_deliveries: self.max_deliveries,
            task_timeout: self.task_timeout,
            result_ttl: self.result_ttl,
            connect_timeout: self.connect_timeout,
            submit: Mutex::new(link),
            pending: Mutex::new(Pending::default()),
            all_done: Condvar::new(),
            next: AtomicU64::new(0),
            shut_down: AtomicBool::new(false),
            dropped: AtomicBool::new(false),
        });
        let send_link = Link::new(client.clone(), Duration::from_secs(30))
            .on_connect(super::prepare_hook(&shared.keys));
        let (outbox, to_send) = crossbeam_channel::unbounded();
        let sender = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("cf-redis-send".to_owned())
                .spawn(move || sender::send_loop(&shared, send_link, &to_send))
                .map_err(|e| Error::Broken {
                    reason: format!("cannot start the sender thread: {e}"),
                })?
        };
        let results_link = Link::new(client, RESULT_POLL + Duration::from_secs(30));
        let thread_shared = Arc::clone(&shared);
        let results = std::thread::Builder::new()
            .name("cf-redis-results".to_owned())
            .spawn(move || results::read_results(&thread_shared, results_link))
            .map_err(|e| Error::Broken {
                reason: format!("cannot start the result thread: {e}"),
            })?;
        Ok(RedisExecutor {
            shared,
            outbox: Mutex::new(Some(outbox)),
            sender: Mutex::new(Some(sender)),
            results: Mutex::new(Some(results)),
        })
    }
}

/// What the executor handle and its result thread share.
struct Shared {
    keys: Keys,
    /// This executor's reply stream.
    reply: String,
    client_id: String,
    key: Option<Key>,
    max_deliveries: u32,
    task_timeout: Option<Duration>,
    result_ttl: Duration,
    connect_timeout: Duration,
    submit: Mutex<Link>,
    pending: Mutex<Pending>,
    /// Signalled when `pending` empties.
    all_done: Condvar,
    next: AtomicU64,
    shut_down: AtomicBool,
    /// The executor handle is gone: the result thread then works only for the futures that
    /// someone can still see complete, and ends once there are none.
    dropped: AtomicBool,
}

#[derive(Default)]
struct Pending {
    /// The futures waiting for a result, by task id: several for one id (a task submitted
    /// and reattached, or submitted twice under one id) all resolve with its one result.
    futures: HashMap<String, Vec<Box<dyn Resolve>>>,
    /// Reattached tasks: their results are announced to another executor's stream, so the
    /// result thread looks for their keys instead.
    reattached: Vec<String>,
}

impl Pending {
    /// Forgets the futures nobody can see complete any more (their handles dropped, no done
    /// callback), with the reattached ids no future waits on.
    fn forget_abandoned(&mut self) {
        self.futures.retain(|_, waiting| {
            waiting.retain(|future| !future.abandoned());
            !waiting.is_empty()
        });
        let futures = &self.futures;
        self.reattached.retain(|id| futures.contains_key(id));
    }
}

/// A future waiting for its result, with its output type erased.
trait Resolve: Send {
    /// Completes the future from the stored result.
    fn resolve(&self, key: Option<&Key>, id: &str, stored: &[u8]);
    fn fail(&self, error: Error);
    /// True if nothing can see the future complete any more (see [`Future::is_abandoned`]).
    fn abandoned(&self) -> bool;
}

struct Typed<T: Task>(Future<T::Output>);

impl<T: Task> Resolve for Typed<T> {
    fn resolve(&self, key: Option<&Key>, id: &str, stored: &[u8]) {
        let outcome = envelope::decode_result(key, id, stored).and_then(|output| {
            T::__decode_output(output).map_err(|error| Error::Serialization {
                message: format!(
                    "cannot decode the result of task `{}` as `{}`: {error}",
                    T::NAME,
                    std::any::type_name::<T::Output>()
                ),
            })
        });
        let _ = match outcome {
            Ok(value) => self.0.set_result(value),
            Err(error) => self.0.set_exception(error),
        };
    }

    fn fail(&self, error: Error) {
        let _ = self.0.set_exception(error);
    }

    fn abandoned(&self) -> bool {
        self.0.is_abandoned()
    }
}

/// One task ready to go onto the stream.
struct Outgoing {
    id: String,
    body: Vec<u8>,
    sig: Option<String>,
}

impl RedisExecutor {
    /// Connects to the Redis server at `url` with the default options: `redis://host:port/db`,
    /// `redis://:password@host/`, or `rediss://` for TLS. See [`builder`](Self::builder).
    pub fn connect(url: &str) -> Result<Self, Error> {
        Self::builder(url).build()
    }

    /// A builder for the other options.
    pub fn builder(url: &str) -> RedisBuilder {
        RedisBuilder {
            url: url.to_owned(),
            prefix: "cf".to_owned(),
            key: None,
            max_deliveries: DEFAULT_MAX_DELIVERIES,
            task_timeout: None,
            result_ttl: DEFAULT_RESULT_TTL,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            root_cert: None,
        }
    }

    /// Schedules a `#[task]` value on whichever worker takes it first; see
    /// [`Executor::submit`]. Its id is generated; use [`submit_as`](Self::submit_as) to name
    /// it, so that a restarted program can find its result.
    pub fn submit<T: Task>(&self, task: T) -> Future<T::Output> {
        let id = self.next_id();
        self.submit_as(id, task)
    }

    /// Like [`submit`](Self::submit), under a task id of your choosing (unique per task: a
    /// second task with the id of a stored result resolves with that result). A restarted
    /// program gets the result back with [`reattach`](Self::reattach).
    pub fn submit_as<T: Task>(&self, id: impl Into<String>, task: T) -> Future<T::Output> {
        self.submit_all(vec![(id.into(), task)], None)
            .pop()
            .expect("one future per task")
    }

    /// Like [`submit`](Self::submit), with this call's own timeout: once the task has run
    /// this long, the worker kills the local process running it and the future fails with
    /// [`Error::TaskTimedOut`], as in the process pool.
    pub fn submit_with_timeout<T: Task>(&self, task: T, timeout: Duration) -> Future<T::Output> {
        let id = self.next_id();
        self.submit_all(vec![(id, task)], Some(timeout))
            .pop()
            .expect("one future per task")
    }

    /// A future for a task submitted earlier under `id`, by this program before a restart or
    /// by another one: it resolves with the stored result once there is one (within the
    /// result TTL).
    pub fn reattach<T: Task>(&self, id: &str) -> Future<T::Output> {
        let future = Future::new();
        let _ = future.set_running_or_notify_cancel();
        let mut pending = lock(&self.shared.pending);
        pending
            .futures
            .entry(id.to_owned())
            .or_default()
            .push(Box::new(Typed::<T>(future.clone())));
        pending.reattached.push(id.to_owned());
        future
    }

    /// The id the next [`submit`](Self::submit) gets: this executor's random id and a count.
    fn next_id(&self) -> String {
        let n = self.shared.next.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.shared.client_id)
    }

    /// Sends tasks in one round trip and registers their futures first, so that a result
    /// cannot arrive before its future is known.
    fn submit_all<T: Task>(
        &self,
        tasks: Vec<(String, T)>,
        timeout: Option<Duration>,
    ) -> Vec<Future<T::Output>> {
        let shared = &self.shared;
        if shared.shut_down.load(Ordering::Acquire) {
            return tasks
                .iter()
                .map(|_| Future::failed(Error::ShutDown))
                .collect();
        }
        let mut futures = Vec::with_capacity(tasks.len());
        let mut outgoing = Vec::with_capacity(tasks.len());
        {
            let mut pending = lock(&shared.pending);
            for (id, task) in &tasks {
                let mut call = Vec::new();
                if let Err(error) = call::encode(task, &mut call) {
                    futures.push(Future::failed(error));
                    continue;
                }
                let settings = Settings {
                    idempotent: task.idempotent(),
                    max_deliveries: shared.max_deliveries,
                    result_ttl: u32::try_from(shared.result_ttl.as_secs()).unwrap_or(u32::MAX),
                    timeout: timeout.or(task.timeout()).or(shared.task_timeout),
                };
                let body = envelope::encode_body(settings, &call);
                let sig = shared
                    .key
                    .as_ref()
                    .map(|key| key.sign_task(id, &shared.reply, &body));
                let future = Future::new();
                let _ = future.set_running_or_notify_cancel();
                pending
                    .futures
                    .entry(id.clone())
                    .or_default()
                    .push(Box::new(Typed::<T>(future.clone())));
                futures.push(future);
                outgoing.push(Outgoing {
                    id: id.clone(),
                    body,
                    sig,
                });
            }
        }
        if outgoing.is_empty() {
            return futures;
        }
        let unsent = match lock(&self.outbox).as_ref() {
            Some(outbox) => outbox.send(outgoing).err().map(|e| e.into_inner()),
            None => Some(outgoing),
        };
        if let Some(unsent) = unsent {
            sender::fail_unsent(shared, &unsent, &Error::ShutDown);
        }
        futures
    }

    crate::executor::inherent_map!(
        " A `chunksize` sends that many tasks per round trip to Redis; each is still its own stream entry, run by whichever worker takes it."
    );

    /// See [`Executor::shutdown`]. Sent tasks cannot be cancelled (a worker may hold them), so
    /// `cancel_futures` has nothing to cancel; with `wait`, returns once every future of this
    /// executor is resolved.
    pub fn shutdown(&self, wait: bool, _cancel_futures: bool) {
        self.shared.shut_down.store(true, Ordering::Release);
        // The sender sends what was submitted before, then ends.
        drop(lock(&self.outbox).take());
        let on_result_thread = lock(&self.results)
            .as_ref()
            .is_some_and(|handle| handle.thread().id() == std::thread::current().id());
        // From a done callback, which runs on the result thread: waiting would wait for
        // ourselves. The thread ends once the last result is in.
        if !wait || on_result_thread {
            return;
        }
        {
            let mut pending = lock(&self.shared.pending);
            while !pending.futures.is_empty() {
                pending = self
                    .shared
                    .all_done
                    .wait(pending)
                    .unwrap_or_else(|p| p.into_inner());
            }
        }
        if let Some(handle) = lock(&self.sender).take() {
            let _ = handle.join();
        }
        if let Some(handle) = lock(&self.results).take() {
            let _ = handle.join();
        }
    }

    /// The entries of the dead-letter stream (under this executor's prefix): each task no
    /// worker would run, as `(task id, reason)`, oldest first.
    pub fn dead_letters(&self) -> Result<Vec<(String, String)>, Error> {
        let dead = self.shared.keys.dead();
        let give_up = Some(Instant::now() + self.shared.connect_timeout);
        let reply: redis::streams::StreamRangeReply = lock(&self.shared.submit)
            .run(give_up, |conn| {
                redis::cmd("XRANGE")
                    .arg(&dead)
                    .arg("-")
                    .arg("+")
                    .query(conn)
            })
            .map_err(|e| broken("cannot read the dead-letter stream", &e))?;
        Ok(reply
            .ids
            .iter()
            .map(|entry| {
                let field = |name: &str| entry.get::<String>(name).unwrap_or_default();
                (field("id"), field("reason"))
            })
            .collect())
    }
}

impl Executor for RedisExecutor {
    fn submit<T: Task>(&self, task: T) -> Future<T::Output> {
        RedisExecutor::submit(self, task)
    }

    fn __submit_chunk<T: Task>(&self, tasks: Vec<T>, into: &mut Vec<__Submitted<T::Output>>) {
        let named = tasks.into_iter().map(|t| (self.next_id(), t)).collect();
        into.extend(
            self.submit_all(named, None)
                .into_iter()
                .map(__Submitted::One),
        );
    }

    fn shutdown(&self, wait: bool, cancel_futures: bool) {
        RedisExecutor::shutdown(self, wait, cancel_futures);
    }
}

/// Leaving scope waits for every result: `shutdown(wait = true)`, unless the executor was
/// already shut down without waiting, as the type's docs promise.
impl Drop for RedisExecutor {
    fn drop(&mut self) {
        // After `shutdown(false, _)` the caller chose to leave: waiting here would wait
        // forever with no worker attached. The result thread ends once the last result is in.
        let left = self.shared.shut_down.load(Ordering::Acquire);
        self.shutdown(!left, false);
        // The result thread, if it goes on (the caller left without waiting), stops once no
        // future it could complete is still held by anyone.
        self.shared.dropped.store(true, Ordering::Release);
    }
}

impl fmt::Debug for RedisExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisExecutor")
            .field("id", &self.shared.client_id)
            .field(
                "pending",
                &lock(&self.shared.pending)
                    .futures
                    .values()
                    .map(Vec::len)
                    .sum::<usize>(),
            )
            .finish_non_exhaustive()
    }
}

fn broken(what: &str, error: &redis::RedisError) -> Error {
    Error::Broken {
        reason: format!("{what}: {error}"),
    }
}

/// 64 random bits as hex, from the standard library's per-process random hash keys, the
/// clock and the process id: unique per executor across hosts and restarts.
pub(crate) fn random_id() -> String {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    hasher.write_u128(now.as_nanos());
    static COUNT: AtomicU64 = AtomicU64::new(0);
    hasher.write_u64(COUNT.fetch_add(1, Ordering::Relaxed));
    format!("{:016x}", hasher.finish())
}
