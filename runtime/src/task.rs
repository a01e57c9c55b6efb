//! The `Task` trait that `#[task]` implements, and the registry of task names.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{DuplicateTaskName, Error};

/// A unit of work that runs in a pool thread or, serialized, in another process.
///
/// Implemented by `#[task]`; write the function and let the macro write this. The value holds
/// the call's arguments; [`run`](Task::run) consumes it and returns the function's result.
///
/// ```
/// use concurrent_futures::{Task, task};
///
/// #[task]
/// fn add(a: i32, b: i32) -> i32 {
///     a + b
/// }
///
/// let t = add(2, 3); // builds the task, runs nothing
/// assert_eq!(<Add as Task>::NAME, concat!(module_path!(), "::add"));
/// assert_eq!(t.run(), 5);
/// ```
pub trait Task: ErasedTask + Serialize + DeserializeOwned + Send + 'static {
    /// What the function returns. Serializable so that it can cross a process boundary.
    type Output: Serialize + DeserializeOwned + Send + 'static;

    /// The registered name: `module_path!()::fn_name`, or `#[task(name = "...")]`.
    const NAME: &'static str;

    /// Runs the function body on the stored arguments.
    fn run(self) -> Self::Output;

    /// The default per-task timeout from `#[task(timeout = "...")]`, enforced by pools that
    /// can stop a running task (the process pool kills the worker).
    fn timeout(&self) -> Option<Duration> {
        None
    }

    /// Whether running the task twice is harmless: `#[task(idempotent)]`. An executor that
    /// redelivers tasks (the `RedisExecutor`, after a worker is lost) runs an idempotent task
    /// again and fails any other with [`Error::WorkerDied`] instead. Local pools never run a
    /// task twice.
    fn idempotent(&self) -> bool {
        false
    }

    /// Appends the wire form of an output to `out`. `#[task]` overrides it for `Vec<u8>`,
    /// which it sends as one byte string.
    #[doc(hidden)]
    fn __encode_output(output: &Self::Output, out: &mut Vec<u8>) -> Result<(), Error> {
        crate::encode::append(
            output,
            format_args!("the result of task `{}`", Self::NAME),
            out,
        )
    }

    /// Reads an output back from its wire form.
    #[doc(hidden)]
    fn __decode_output(bytes: &[u8]) -> Result<Self::Output, postcard::Error> {
        postcard::from_bytes(bytes)
    }

    /// Reads an output back from `body[at..]`, taking `body`: `#[task]` overrides it for
    /// `Vec<u8>`, whose bytes then stay where they arrived instead of being copied out.
    #[doc(hidden)]
    fn __decode_output_owned(body: Vec<u8>, at: usize) -> Result<Self::Output, postcard::Error> {
        Self::__decode_output(body.get(at..).unwrap_or_default())
    }
}

/// The object-safe, serializable face of a [`Task`], registered with `typetag` so a worker
/// process can rebuild a task from its name. Implemented by `#[task]`; not for direct use.
#[typetag::serde]
pub trait ErasedTask: Send {
    /// Runs the task and encodes its output for the trip back to the parent process.
    fn run_encoded(self: Box<Self>) -> Result<Vec<u8>, Error>;
}

/// The body of every generated [`ErasedTask::run_encoded`]: run, then encode the output with
/// the wire format.
#[doc(hidden)]
pub fn run_encoded<T: Task>(task: T) -> Result<Vec<u8>, Error> {
    let output = task.run();
    crate::encode::to_bytes(&output, format_args!("the result of task `{}`", T::NAME))
}

/// How a worker runs a call of one task type: decode the arguments as that very type (no
/// type-erased decoding, which visits a `Vec<u8>` byte by byte through a vtable), run, and
/// append the encoded output to `out`.
pub(crate) type RunFn = fn(&[u8], &mut Vec<u8>) -> Result<(), Error>;

/// The [`RunFn`] of task type `T`, registered by `#[task]`.
#[doc(hidden)]
pub fn run_registered<T: Task>(arguments: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
    let task: T = postcard::from_bytes(arguments).map_err(|e| Error::Serialization {
        message: format!("cannot decode the arguments of task `{}`: {e}", T::NAME),
    })?;
    T::__encode_output(&task.run(), out)
}

/// One `#[task]`'s entry in the registry: its name, the Rust type that claimed it, and how a
/// worker runs it.
#[doc(hidden)]
#[derive(Debug)]
pub struct TaskRegistration {
    name: &'static str,
    type_path: &'static str,
    run: RunFn,
}

impl TaskRegistration {
    #[doc(hidden)]
    pub const fn new(name: &'static str, type_path: &'static str, run: RunFn) -> Self {
        Self {
            name,
            type_path,
            run,
        }
    }

    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    pub(crate) fn type_path(&self) -> &'static str {
        self.type_path
    }

    pub(crate) fn run(&self) -> RunFn {
        self.run
    }
}

inventory::collect!(TaskRegistration);

/// The registration of the task named `name`, looked up in a map built once per process.
pub(crate) fn find(name: &str) -> Option<&'static TaskRegistration> {
    static BY_NAME: OnceLock<HashMap<&'static str, &'static TaskRegistration>> = OnceLock::new();
    BY_NAME
        .get_or_init(|| {
            inventory::iter::<TaskRegistration>
                .into_iter()
                .map(|r| (r.name, r))
                .collect()
        })
        .get(name)
        .copied()
}

/// Checks that no two `#[task]` functions linked into this program share a name.
///
/// A worker process finds a task's code by its name, so a shared name would run the wrong
/// function or none. [`init`](crate::init) calls this and panics with the message; call it
/// yourself to handle the error another way.
///
/// ```
/// concurrent_futures::check_task_names().expect("task names are unique");
/// ```
pub fn check_task_names() -> Result<(), DuplicateTaskName> {
    let mut seen: HashMap<&'static str, &'static str> = HashMap::new();
    for registration in inventory::iter::<TaskRegistration> {
        if let Some(first) = seen.insert(registration.name, registration.type_path) {
            if first != registration.type_path {
                let (first, second) = ordered(first, registration.type_path);
                return Err(DuplicateTaskName {
                    name: registration.name,
                    first,
                    second,
                });
            }
        }
    }
    Ok(())
}

/// Link order is arbitrary; report the pair in a stable order.
fn ordered(a: &'static str, b: &'static str) -> (&'static str, &'static str) {
    if a <= b { (a, b) } else { (b, a) }
}
