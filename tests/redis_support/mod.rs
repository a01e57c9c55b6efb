//! A real `redis-server` for the Redis tests, on a free loopback port with a directory of its
//! own, killed on drop; and Redis workers (this test binary started again), killed on drop.
//!
//! Readiness is read from the server's own "Ready to accept connections" line, never waited
//! for with a sleep.

// Each test binary uses a part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

pub(crate) struct RedisServer {
    pub(crate) port: u16,
    pub(crate) dir: PathBuf,
    appendonly: bool,
    /// `requirepass`, and TLS only (`rediss://`) with a certificate of a test authority.
    secure: Option<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// A fresh server; with `appendonly`, every write is fsynced to its append-only file.
    pub(crate) fn start(appendonly: bool) -> Self {
        Self::start_with(appendonly, None)
    }

    /// A server that takes only TLS connections (certificate for 127.0.0.1, signed by
    /// `ca.pem` in [`dir`](Self::dir)) with this password.
    pub(crate) fn start_secure(password: &str) -> Self {
        Self::start_with(false, Some(password.to_owned()))
    }

    fn start_with(appendonly: bool, secure: Option<String>) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "cf-redis-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        if secure.is_some() {
            make_certificates(&dir);
        }
        for _attempt in 0..20 {
            // Another process may take the port between our probe and the server's bind:
            // then the server exits before it is ready, and we try another.
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let mut server = RedisServer {
                port,
                dir: dir.clone(),
                appendonly,
                secure: secure.clone(),
                child: None,
            };
            if server.launch() {
                return server;
            }
        }
        panic!("could not start redis-server on a free port after 20 attempts");
    }

    /// Starts the server process and waits for its ready line; false if it exited first.
    fn launch(&mut self) -> bool {
        let mut command = Command::new("redis-server");
        match &self.secure {
            None => command.args(["--port", &self.port.to_string()]),
            Some(password) => command
                .args(["--port", "0", "--tls-port", &self.port.to_string()])
                .args([
                    "--tls-cert-file",
                    "server.pem",
                    "--tls-key-file",
                    "server.key",
                ])
                .args(["--tls-ca-cert-file", "ca.pem", "--tls-auth-clients", "no"])
                .args(["--requirepass", password]),
        };
        let mut child = command
            .current_dir(&self.dir)
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", if self.appendonly { "yes" } else { "no" }])
            .args(["--appendfsync", "always"])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--logfile", "", "--daemonize", "no"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-server ({e}): install it with `apt-get install -y redis-server` (./scripts/test does)")
            });
        let stdout = child.stdout.take().expect("piped");
        let mut lines = BufReader::new(stdout).lines();
        let ready = lines.any(|line| line.is_ok_and(|l| l.contains("Ready to accept connections")));
        if !ready {
            let _ = child.kill();
            let _ = child.wait();
            return false;
        }
        // Keep draining its log, so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        self.child = Some(child);
        true
    }

    pub(crate) fn url(&self) -> String {
        match &self.secure {
            None => format!("redis://127.0.0.1:{}/", self.port),
            Some(password) => format!("rediss://:{password}@127.0.0.1:{}/", self.port),
        }
    }

    pub(crate) fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection())
            .expect("test connection")
    }

    /// Turns on the keyspace events of `classes` (see Redis's `notify-keyspace-events`) and
    /// returns a connection to subscribe to them with, whose reads give up after `bound`: a
    /// bound that reports an event that never comes as a failure, never paces a test.
    pub(crate) fn keyspace_events(&self, classes: &str, bound: Duration) -> redis::Connection {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("notify-keyspace-events")
            .arg(classes)
            .query(&mut self.connection())
            .unwrap();
        let events = self.connection();
        events.set_read_timeout(Some(bound)).unwrap();
        events
    }

    /// Kills the server (SIGKILL: a crash, no chance to flush anything; with `appendfsync
    /// always` every acknowledged write is on disk already), and starts it again on the same
    /// port and data.
    pub(crate) fn crash_and_restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill redis-server");
            child.wait().expect("redis-server exits");
        }
        assert!(
            self.launch(),
            "redis-server did not come back on port {}",
            self.port
        );
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A test certificate authority (`ca.pem`) and a certificate for 127.0.0.1 that it signed
/// (`server.pem`, `server.key`), made with the `openssl` command.
fn make_certificates(dir: &std::path::Path) {
    let openssl = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl (apt-get install -y openssl)");
        assert!(status.success(), "openssl {args:?} failed");
    };
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .expect("write server.ext");
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=concurrent-futures test CA",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
}

/// Redis worker processes of this test binary; SIGKILLed and reaped on drop.
pub(crate) struct Workers(pub(crate) Vec<Child>);

impl Workers {
    /// `count` workers for `url`, each running `concurrency` tasks at once, with `env` added.
    pub(crate) fn start(url: &str, count: usize, concurrency: usize, env: &[(&str, &str)]) -> Self {
        let mut workers = Workers(Vec::new());
        for _ in 0..count {
            workers.add(url, concurrency, env);
        }
        workers
    }

    pub(crate) fn add(&mut self, url: &str, concurrency: usize, env: &[(&str, &str)]) -> u32 {
        let mut command = concurrent_futures::worker_command(url, concurrency).expect("exe");
        command.envs(env.iter().copied()).stdout(Stdio::null());
        let child = command.spawn().expect("start a worker");
        let pid = child.id();
        self.0.push(child);
        pid
    }

    /// Like [`add`](Self::add), and the worker's stderr, line by line: what it says (its
    /// `say` lines) is how a test sees it fail to reach Redis, without a clock.
    pub(crate) fn add_watched(
        &mut self,
        url: &str,
        concurrency: usize,
        env: &[(&str, &str)],
    ) -> (u32, std::sync::mpsc::Receiver<String>) {
        let mut command = concurrent_futures::worker_command(url, concurrency).expect("exe");
        command
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start a worker");
        let stderr = child.stderr.take().expect("piped");
        let (lines, received) = std::sync::mpsc::channel();
        // Drains the pipe for the worker's whole life, so that it never blocks on stderr.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let pid = child.id();
        self.0.push(child);
        (pid, received)
    }

    /// SIGKILLs the worker with this pid and reaps it.
    pub(crate) fn kill(&mut self, pid: u32) {
        let at = self
            .0
            .iter()
            .position(|c| c.id() == pid)
            .expect("one of ours");
        let mut child = self.0.remove(at);
        child.kill().expect("kill");
        child.wait().expect("reap");
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A TCP proxy in front of a server that can hold back the reply to one request: armed with
/// a test of the bytes a client sends, it lets the first request that passes it reach the
/// server and run, and keeps the server's reply to it until released, as a congested network
/// would. The client acts on that reply only then, on what it said before anything that ran
/// meanwhile.
pub(crate) struct StallProxy {
    pub(crate) port: u16,
    shared: Arc<Trap>,
}

type Matcher = Box<dyn Fn(&[u8]) -> bool + Send>;

#[derive(Default)]
struct Trap {
    state: Mutex<TrapState>,
    released: Condvar,
}

#[derive(Default)]
struct TrapState {
    armed: Option<Matcher>,
    /// The connection whose replies wait, if any.
    holding: Option<u64>,
    closed: bool,
}

impl StallProxy {
    /// A proxy on a free loopback port, forwarding to the server on `upstream`.
    pub(crate) fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = listener.local_addr().expect("bound").port();
        let shared = Arc::new(Trap::default());
        let trap = Arc::clone(&shared);
        std::thread::spawn(move || {
            for (id, client) in (0_u64..).zip(listener.incoming()) {
                if trap.state.lock().unwrap().closed {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                forward(id, client, server, Arc::clone(&trap));
            }
        });
        StallProxy { port, shared }
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Holds back the reply to the next request (one read from a client's socket) for
    /// which `matches` is true, until [`release`](Self::release).
    pub(crate) fn hold_reply_to(&self, matches: impl Fn(&[u8]) -> bool + Send + 'static) {
        self.shared.state.lock().unwrap().armed = Some(Box::new(matches));
    }

    /// Lets the held reply, and everything after it, through.
    pub(crate) fn release(&self) {
        let mut state = self.shared.state.lock().unwrap();
        state.armed = None;
        state.holding = None;
        self.shared.released.notify_all();
    }
}

impl Drop for StallProxy {
    fn drop(&mut self) {
        self.release();
        self.shared.state.lock().unwrap().closed = true;
        // Wakes the accepting thread, which then sees `closed`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Copies client to server, arming the hold on a matching request before it is forwarded
/// (so its reply cannot slip through), and server to client unless this connection's
/// replies are held.
fn forward(id: u64, client: TcpStream, server: TcpStream, trap: Arc<Trap>) {
    let _ = (client.set_nodelay(true), server.set_nodelay(true));
    let (mut from_client, mut to_server) = (
        client.try_clone().expect("clone"),
        server.try_clone().expect("clone"),
    );
    let requests = Arc::clone(&trap);
    std::thread::spawn(move || {
        let mut buffer = vec![0_u8; 64 * 1024];
        loop {
            let n = match from_client.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            {
                let mut state = requests.state.lock().unwrap();
                if state.armed.as_ref().is_some_and(|m| m(&buffer[..n])) {
                    state.armed = None;
                    state.holding = Some(id);
                }
            }
            if to_server.write_all(&buffer[..n]).is_err() {
                break;
            }
        }
        let _ = to_server.shutdown(Shutdown::Both);
    });
    let (mut from_server, mut to_client) = (server, client);
    std::thread::spawn(move || {
        let mut buffer = vec![0_u8; 64 * 1024];
        loop {
            let n = match from_server.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let mut state = trap.state.lock().unwrap();
            while state.holding == Some(id) {
                state = trap.released.wait(state).unwrap();
            }
            drop(state);
            if to_client.write_all(&buffer[..n]).is_err() {
                break;
            }
        }
        let _ = to_client.shutdown(Shutdown::Both);
    });
}
