//! One Redis connection that survives the server going away: a command that fails on a
//! broken or refused connection is retried on a fresh one, with a growing pause, so a Redis
//! restart (or failover) costs a delay, not the work.

use std::time::{Duration, Instant};

use redis::{Client, Connection, RedisError, RedisResult};

/// Longest pause between two reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// How long connecting may take before the attempt counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What a link runs on each new connection.
pub(crate) type Hook = Box<dyn Fn(&mut Connection) -> RedisResult<()> + Send>;

pub(crate) struct Link {
    client: Client,
    conn: Option<Connection>,
    /// The socket read timeout: longer than any `BLOCK` this link sends.
    read_timeout: Duration,
    /// Run on every new connection, before the command is retried (creating the consumer
    /// group, which a server restarted without persistence has lost).
    on_connect: Option<Hook>,
    /// Connections made so far: a caller can tell that a reply may have been lost.
    connects: u64,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The connection info holds the password: show neither.
        f.debug_struct("Link")
            .field("connected", &self.conn.is_some())
            .finish_non_exhaustive()
    }
}

impl Link {
    pub(crate) fn new(client: Client, read_timeout: Duration) -> Self {
        Self {
            client,
            conn: None,
            read_timeout,
            on_connect: None,
            connects: 0,
        }
    }

    /// How many connections this link has made: a change across a call means the call was
    /// retried on a new connection, and a reply to the first attempt may have been lost.
    pub(crate) fn connects(&self) -> u64 {
        self.connects
    }

    pub(crate) fn on_connect(mut self, hook: Hook) -> Self {
        self.on_connect = Some(hook);
        self
    }

    fn connection(&mut self) -> RedisResult<&mut Connection> {
        if self.conn.is_none() {
            let mut conn = self.client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
            conn.set_read_timeout(Some(self.read_timeout))?;
            conn.set_write_timeout(Some(self.read_timeout))?;
            if let Some(hook) = &self.on_connect {
                hook(&mut conn)?;
            }
            self.conn = Some(conn);
            self.connects += 1;
        }
        Ok(self.conn.as_mut().expect("connected just above"))
    }

    /// Runs `command`, reconnecting and retrying while the server is unreachable or loading
    /// its data, until `give_up` (forever with `None`). Other errors return at once.
    ///
    /// A command retried after its connection broke may have run once already: callers send
    /// only commands for which that is harmless (the result script is first-writer-wins; a
    /// task added twice runs at least once, which is the documented contract).
    pub(crate) fn run<T>(
        &mut self,
        give_up: Option<Instant>,
        mut command: impl FnMut(&mut Connection) -> RedisResult<T>,
    ) -> RedisResult<T> {
        let mut backoff = Duration::from_millis(10);
        loop {
            let outcome = self.connection().and_then(&mut command);
            match outcome {
                Ok(value) => return Ok(value),
                Err(error) if is_transient(&error) => {
                    self.conn = None;
                    if give_up.is_some_and(|at| Instant::now() + backoff > at) {
                        return Err(error);
                    }
                    tracing::debug!(%error, "redis unreachable, retrying");
                    // Not synchronisation: a pause before reconnecting to a server that is down.
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(error) => {
                    if error.is_unrecoverable_error() {
                        self.conn = None;
                    }
                    return Err(error);
                }
            }
        }
    }
}

/// Errors that a new connection, later, may not have.
pub(crate) fn is_transient(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || matches!(
            error.kind(),
            redis::ErrorKind::BusyLoadingError | redis::ErrorKind::TryAgain
        )
        // A server restarted without its data has lost the consumer group and the script; a
        // new connection's hook creates them again.
        || matches!(error.code(), Some("MASTERDOWN" | "NOGROUP" | "NOSCRIPT"))
}
