//! `init()`: the line at the top of `main` where a worker process will enter.

/// Call first in `main`. In the program itself it checks the task registry and returns;
/// in a worker process of a process pool it is where the worker enters and never returns.
///
/// Everything before `init()` runs in every worker too, so put nothing before it, as with
/// Python's `if __name__ == "__main__":`.
///
/// # Panics
///
/// If two `#[task]` functions share a name (see [`check_task_names`](crate::check_task_names)):
/// a worker could not tell them apart, so the program stops before any task runs.
pub fn init() {
    if let Err(duplicate) = crate::task::check_task_names() {
        panic!("{duplicate}");
    }
}
