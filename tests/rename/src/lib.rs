//! Uses `#[task]` and `join_completed!` through the facade renamed to `cf`, with no serde or
//! typetag dependency of its own: everything the generated code names must come through `cf`.

/// Squares a number.
#[cf::task(crate = "cf")]
pub fn square_number(x: u64) -> u64 {
    x * x
}

/// Whether `n` is prime.
#[cf::task(crate = "cf")]
pub fn is_prime(n: u64) -> bool {
    n > 1 && (2..n).take_while(|d| d * d <= n).all(|d| n % d != 0)
}

/// Halves an even number; an odd one is the task's own, typed, error.
#[cf::task(crate = "::cf", name = "rename::halve", timeout = "2s")]
pub fn halve(n: u64) -> Result<u64, String> {
    if n % 2 == 0 {
        Ok(n / 2)
    } else {
        Err(format!("{n} is odd"))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use cf::{Error, Future, Task, ThreadPoolExecutor};

    use super::*;

    // Unit tests serve as process-pool workers too: the hidden entry is `tests::...`.
    cf::enable_test_support!();

    #[test]
    fn task_runs_in_a_worker_process_from_a_unit_test_module() {
        let executor = cf::ProcessPoolExecutor::new(1);
        assert_eq!(executor.submit(square_number(9)).result(), Ok(81));
        assert_eq!(executor.worker_pids().len(), 1);
        assert_ne!(executor.worker_pids()[0], std::process::id());
    }

    #[test]
    fn task_runs_on_a_thread_pool_through_the_renamed_crate() {
        let executor = ThreadPoolExecutor::new(2);
        assert_eq!(executor.submit(square_number(12)).result().unwrap(), 144);
        assert_eq!(
            executor.submit(halve(3)).result().unwrap(),
            Err("3 is odd".to_owned())
        );
    }

    #[test]
    fn options_work_through_the_renamed_crate() {
        assert_eq!(<Halve as Task>::NAME, "rename::halve");
        assert_eq!(halve(4).timeout(), Some(Duration::from_secs(2)));
        assert_eq!(
            <SquareNumber as Task>::NAME,
            "concurrent_futures_rename_test::square_number"
        );
        cf::check_task_names().unwrap();
    }

    #[test]
    fn collection_form_yields_every_result() {
        let executor = ThreadPoolExecutor::new(2);
        let futures: Vec<_> = (1..=4).map(|i| executor.submit(square_number(i))).collect();
        let mut results: Vec<u64> = cf::join_completed!(futures).map(Result::unwrap).collect();
        results.sort_unstable();
        assert_eq!(results, [1, 4, 9, 16]);
    }

    #[test]
    fn collection_form_with_timeout_ends_with_timeout_error() {
        let done = Future::new();
        done.set_result(1_u8).unwrap();
        let pending = Future::new();
        let results: Vec<_> = cf::join_completed!(
            vec![done, pending.clone()],
            timeout = Duration::from_millis(10),
        )
        .collect();
        assert_eq!(results.len(), 2, "{results:?}");
        assert_eq!(results[0].as_ref().unwrap(), &1);
        assert!(results[1].as_ref().unwrap_err().is_timeout(), "{results:?}");
        pending.cancel();
    }

    #[test]
    fn arm_form_gives_values_in_written_order() {
        let executor = ThreadPoolExecutor::new(2);
        let run = || -> Result<(u64, bool), Error> {
            let (sq, prime) = cf::join_completed! {
                s = executor.submit(square_number(4)) => s?,
                p = executor.submit(is_prime(97)) => p?,
            };
            Ok((sq, prime))
        };
        assert_eq!(run().unwrap(), (16, true));
    }

    #[test]
    fn arm_form_runs_bodies_in_completion_order() {
        let first = Future::<&str>::new();
        let second = Future::<&str>::new();
        second.set_result("second").unwrap();
        // `first` completes only once the `second` arm has run.
        let (ran_second, second_ran) = mpsc::channel();
        let completer = first.clone();
        let helper = std::thread::spawn(move || {
            second_ran.recv().unwrap();
            completer.set_result("first").unwrap();
        });
        let mut order = Vec::new();
        let values = cf::join_completed! {
            a = first => {
                order.push(a.unwrap());
                1
            }
            b = second => {
                order.push(b.unwrap());
                ran_second.send(()).unwrap();
                2
            }
        };
        helper.join().unwrap();
        assert_eq!(values, (1, 2));
        assert_eq!(order, ["second", "first"]);
    }

    #[test]
    fn arm_form_question_mark_leaves_the_caller() {
        let run = || -> Result<u64, Error> {
            let cancelled = Future::<u64>::new();
            assert!(cancelled.cancel());
            let (value,) = cf::join_completed! { c = cancelled => c? + 1 };
            Ok(value)
        };
        assert!(run().unwrap_err().is_cancelled());
    }

    #[test]
    fn arm_form_return_leaves_the_caller() {
        fn first_odd(executor: &ThreadPoolExecutor) -> Option<String> {
            let (a, b) = cf::join_completed! {
                a = executor.submit(halve(8)) => match a.unwrap() {
                    Ok(half) => half,
                    Err(odd) => return Some(odd),
                },
                b = executor.submit(halve(5)) => match b.unwrap() {
                    Ok(half) => half,
                    Err(odd) => return Some(odd),
                },
            };
            panic!("both even: {a}, {b}");
        }
        let executor = ThreadPoolExecutor::new(2);
        assert_eq!(first_odd(&executor), Some("5 is odd".to_owned()));
    }

    #[test]
    fn arm_form_with_one_arm_gives_a_one_tuple() {
        let executor = ThreadPoolExecutor::new(1);
        let (sq,) = cf::join_completed! { s = executor.submit(square_number(5)) => s.unwrap() };
        assert_eq!(sq, 25);
    }

    #[test]
    fn arm_form_underscore_discards_the_result() {
        let executor = ThreadPoolExecutor::new(1);
        let ((), n) = cf::join_completed! {
            _ = executor.submit(square_number(2)) => (),
            n = executor.submit(square_number(3)) => n.unwrap(),
        };
        assert_eq!(n, 9);
    }
}
