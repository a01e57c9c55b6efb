//! Tasks through Redis Streams, with workers on any host (the `redis` feature).
//!
//! - `client`: [`RedisExecutor`], whose sender thread adds tasks to a stream and whose
//!   result thread completes futures from the results its workers announce;
//! - `worker`: what `init()` runs in a process started with [`WORKER_URL_VAR`] (its reader
//!   and finisher; `worker/keeper`: heartbeats and claims);
//! - `envelope`: the bytes of tasks and results, and their HMAC signatures;
//! - `script`: the atomic step that stores a result, announces it and acknowledges the task;
//! - `conn`: a connection that outlives a Redis restart; `keys`: the key names.

mod client;
mod conn;
mod envelope;
mod keys;
mod launch;
mod script;
mod worker;

pub use client::{RedisBuilder, RedisExecutor};
pub(crate) use launch::take_worker_url;
pub use launch::{
    WORKER_CA_FILE_VAR, WORKER_CLAIM_IDLE_VAR, WORKER_CONCURRENCY_VAR, WORKER_KEY_VAR,
    WORKER_PREFETCH_VAR, WORKER_PREFIX_VAR, WORKER_URL_VAR, worker_command,
};
pub(crate) use worker::run as run_worker;

use crate::error::Error;

/// A client for `url`, checked; TLS (`rediss://`) uses rustls with its `ring` provider, and
/// trusts `root_cert` (PEM) if given, else the system's and the webpki roots.
fn open_client(url: &str, root_cert: Option<&[u8]>) -> Result<redis::Client, Error> {
    if url.starts_with("rediss://") {
        // rustls needs a process-wide crypto provider; another part of the program may have
        // installed one already, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    let client = match root_cert {
        Some(pem) => redis::Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.to_vec()),
            },
        ),
        None => redis::Client::open(url),
    };
    client.map_err(|e| Error::InvalidArgument {
        message: format!("invalid Redis URL or certificate: {e}"),
    })
}

/// What every new connection runs first: see [`script::prepare`].
fn prepare_hook(keys: &keys::Keys) -> conn::Hook {
    let tasks = keys.tasks();
    Box::new(move |conn| script::prepare(conn, &tasks))
}
