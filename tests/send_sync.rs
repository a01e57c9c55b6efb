//! Pins the auto traits of the public types, so a change that loses `Send` or `Sync` fails
//! here instead of in a user's build.

use concurrent_futures::{
    AsCompleted, DoneAndNotDone, Error, Future, MapOptions, ReturnWhen, State, ThreadPoolBuilder,
    ThreadPoolExecutor,
};

fn assert_send<T: Send>() {}
fn assert_sync<T: Sync>() {}
fn assert_unpin<T: Unpin>() {}

#[test]
fn future_is_send_and_sync_for_send_values() {
    assert_send::<Future<u64>>();
    assert_sync::<Future<u64>>();
    // Not Sync values are fine too: the value sits behind a mutex.
    assert_sync::<Future<std::cell::Cell<u8>>>();
    assert_unpin::<Future<String>>();
    assert_send::<<Future<String> as std::future::IntoFuture>::IntoFuture>();
}

#[test]
fn executor_can_be_shared_between_threads() {
    assert_send::<ThreadPoolExecutor>();
    assert_sync::<ThreadPoolExecutor>();
    assert_send::<ThreadPoolBuilder>();
}

#[test]
fn errors_and_plain_types_cross_threads() {
    assert_send::<Error>();
    assert_sync::<Error>();
    assert_send::<State>();
    assert_send::<ReturnWhen>();
    assert_send::<MapOptions>();
    assert_send::<DoneAndNotDone<Future<u8>>>();
    assert_send::<AsCompleted<Future<u8>>>();
}

#[test]
fn error_implements_std_error_with_lowercase_display() {
    fn assert_error<E: std::error::Error + Clone + Send + Sync + 'static>() {}
    assert_error::<Error>();
    let shown = Error::ShutDown.to_string();
    assert_eq!(shown, "cannot schedule new futures after shutdown");
    assert!(shown.chars().next().unwrap().is_lowercase());
}

#[cfg(feature = "redis")]
#[test]
fn the_redis_executor_can_be_shared_between_threads() {
    assert_send::<concurrent_futures::RedisExecutor>();
    assert_sync::<concurrent_futures::RedisExecutor>();
    assert_send::<concurrent_futures::RedisBuilder>();
}

/// A future held across `catch_unwind` (as `AssertUnwindSafe` would otherwise be needed for):
/// its state sits behind a mutex, so a panic cannot leave it half-changed.
#[test]
fn future_is_unwind_safe() {
    fn assert_unwind_safe<T: std::panic::UnwindSafe + std::panic::RefUnwindSafe>() {}
    assert_unwind_safe::<Future<u64>>();
    assert_unwind_safe::<Future<std::cell::Cell<u8>>>();
    let future = Future::new();
    future.set_result(7_u64).unwrap();
    assert_eq!(std::panic::catch_unwind(|| future.result()).unwrap(), Ok(7));
}
