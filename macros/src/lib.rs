//! Procedural macros of `concurrent-futures`: `#[task]` and the code behind `join_completed!`.
//!
//! Use them through the `concurrent-futures` facade, which re-exports `task` and defines
//! `join_completed!`; the generated code names the runtime only through the facade's
//! `__private` module.

use proc_macro::TokenStream;

mod errors;
mod join;
mod main_attr;
mod task;

/// Turns a function into a task: a serializable value that an executor runs, here or in
/// another process.
///
/// ```
/// use concurrent_futures::task;
///
/// /// Squares a number.
/// #[task]
/// pub fn square_number(x: u64) -> u64 {
///     x * x
/// }
///
/// let t = square_number(3); // builds the task, runs nothing
/// assert_eq!(t.run(), 9); // runs the body here, in this thread
/// ```
///
/// # Options
///
/// ```
/// # use concurrent_futures as cf;
/// use std::time::Duration;
/// use cf::Task;
///
/// #[cf::task(name = "squares::square", timeout = "1.5s", crate = "cf")]
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// assert_eq!(<Square as Task>::NAME, "squares::square");
/// assert_eq!(square(2).timeout(), Some(Duration::from_millis(1500)));
/// ```
///
/// - `name = "..."`: the name the task is registered under, which a worker process uses to
///   find its code. Default: `module_path!()` + `::` + the function's name.
/// - `timeout = "..."`: the task's default timeout: a number, integer or decimal, and a unit
///   among `ms`, `s`, `m` and `h` (`"500ms"`, `"1.5s"`, `"2m"`). Checked at compile time.
///   Pools that can stop a running task enforce it (the process pool kills the worker).
/// - `crate = "path"`: where the `concurrent-futures` facade is, for crates that rename the
///   dependency (`crate = "cf"`). Default: `::concurrent_futures`.
///
/// # What it generates
///
/// For `pub fn square_number(x: u64) -> u64`:
///
/// - `pub struct SquareNumber { pub x: u64 }`: the task type, named in UpperCamelCase after
///   the function, one field per argument, with the function's visibility. It derives serde's
///   `Serialize` and `Deserialize`, implements `Debug` (showing the type name only, so the
///   arguments need not be `Debug`) and is `#[must_use]`.
/// - `pub fn square_number(x: u64) -> SquareNumber`: the constructor, with the function's
///   documentation and attributes. It runs nothing. A `const fn` keeps a `const` constructor.
/// - `SquareNumber::run(self) -> u64`: the body, callable in-process. It gets the function's
///   lint attributes (`allow`, `deny`, ...; `expect` goes here only), `inline`, `cold` and
///   `track_caller`; `cfg` goes on every generated item.
/// - `impl Task for SquareNumber` with `type Output = u64`, `NAME` and `timeout()`, and the
///   `typetag` registration that lets a worker process rebuild the task from its name.
///
/// The task type shares the module with everything else: a `fn square_number` and a
/// `struct SquareNumber` of your own cannot live side by side.
///
/// Arguments and the return type must be `Serialize + DeserializeOwned + Send + 'static`; a
/// violation is a compile error pointing at the offending type. A function without `->`
/// returns `()`. A task returning `Result<T, E>` keeps `E` as typed data (`E: Serialize`).
///
/// # What it rejects
///
/// Each with a compile error pointing at the offending tokens, all reported at once:
///
/// - generic functions (type, lifetime or const parameters, `where` clauses, `impl Trait`
///   arguments);
/// - `async fn`, `unsafe fn`, `extern` functions and variadic functions;
/// - `self` receivers: a task is a free function;
/// - borrowed arguments and return types: a reference or a lifetime other than `'static`
///   anywhere in the type (`&str`, `Cow<'a, str>`), and `impl Trait` return types;
/// - argument patterns that cannot name a field: only `x` and `mut x` are accepted;
/// - unknown or duplicate options, and invalid `timeout` values.
///
/// The function itself is still emitted unchanged next to the errors, so the rest of the
/// crate keeps compiling against it.
#[proc_macro_attribute]
pub fn task(args: TokenStream, item: TokenStream) -> TokenStream {
    task::expand(args.into(), item.into()).into()
}

/// Puts `concurrent_futures::init()` first in `main`, where a process-pool worker enters and
/// never returns.
///
/// ```
/// #[concurrent_futures::main]
/// fn main() {
///     // concurrent_futures::init() runs here first
///     let executor = concurrent_futures::ThreadPoolExecutor::new(2);
///     assert_eq!(executor.spawn(|| 6 * 7).result(), Ok(42));
/// }
/// ```
///
/// With an async runtime, put it below the runtime's attribute (`#[tokio::main]` first), so
/// that it sees the plain `fn main` that attribute produces. `crate = "path"` names a renamed
/// facade.
#[proc_macro_attribute]
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    main_attr::expand(args.into(), item.into()).into()
}

/// The code generation behind the facade's `join_completed!`; not for direct use.
///
/// Input: the facade's crate path (`$crate`), `;`, then the user's input: either
/// `collection` and `collection, timeout = duration`, or arms `name = future => body`.
#[doc(hidden)]
#[proc_macro]
pub fn join_completed_impl(input: TokenStream) -> TokenStream {
    join::expand(input.into()).into()
}
