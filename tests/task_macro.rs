//! What `#[task]` generates, seen from a user crate: constructor, `run`, `Task` and typetag.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use concurrent_futures::__private::ErasedTask;
use concurrent_futures::{Task, ThreadPoolExecutor, task};
use serde::{Deserialize, Serialize};

/// Squares a number.
#[task]
pub fn square_number(x: u64) -> u64 {
    x * x
}

static COUNTED_RUNS: AtomicUsize = AtomicUsize::new(0);

#[task]
fn counted(x: u64) -> u64 {
    COUNTED_RUNS.fetch_add(1, Ordering::SeqCst);
    x
}

#[task(name = "custom/registered-name")]
fn renamed() -> u8 {
    7
}

#[task(timeout = "1.5s")]
fn slow() {}

#[task]
fn unit_return(message: String) {
    assert!(!message.is_empty());
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum PortError {
    Empty,
    NotANumber(String),
}

#[task]
fn parse_port(text: String) -> Result<u16, PortError> {
    if text.is_empty() {
        return Err(PortError::Empty);
    }
    text.parse().map_err(|_| PortError::NotANumber(text))
}

#[task]
fn countdown(mut n: u32) -> Vec<u32> {
    let mut steps = Vec::new();
    while n > 0 {
        steps.push(n);
        n -= 1;
    }
    steps
}

#[task]
fn describe(name: String, age: u8, tags: Vec<String>) -> String {
    format!("{name} ({age}): {}", tags.join(", "))
}

#[test]
fn constructor_runs_nothing() {
    let task = counted(5);
    assert_eq!(COUNTED_RUNS.load(Ordering::SeqCst), 0);
    assert_eq!(task.run(), 5);
    assert_eq!(COUNTED_RUNS.load(Ordering::SeqCst), 1);
}

#[test]
fn run_executes_the_body_in_process() {
    assert_eq!(square_number(3).run(), 9);
    assert_eq!(Task::run(square_number(4)), 16);
}

#[test]
fn task_type_is_named_after_the_function_and_holds_the_arguments() {
    let task: SquareNumber = square_number(6);
    assert_eq!(task.x, 6);
    assert_eq!(SquareNumber { x: 2 }.run(), 4);
}

#[test]
fn name_defaults_to_module_path_and_function_name() {
    assert_eq!(
        <SquareNumber as Task>::NAME,
        concat!(module_path!(), "::square_number")
    );
}

#[test]
fn name_option_overrides_the_registered_name() {
    assert_eq!(<Renamed as Task>::NAME, "custom/registered-name");
    assert_eq!(renamed().run(), 7);
}

#[test]
fn timeout_option_sets_the_task_timeout() {
    assert_eq!(slow().timeout(), Some(Duration::from_millis(1500)));
}

#[test]
fn timeout_defaults_to_none() {
    assert_eq!(square_number(1).timeout(), None);
}

#[test]
fn unit_return_type_is_supported() {
    let () = unit_return("hello".to_owned()).run();
    fn output_is_unit<T: Task<Output = ()>>(_: &T) {}
    output_is_unit(&unit_return("x".to_owned()));
}

#[test]
fn result_return_type_keeps_the_error_typed() {
    assert_eq!(parse_port("8080".to_owned()).run(), Ok(8080));
    assert_eq!(parse_port(String::new()).run(), Err(PortError::Empty));
    assert_eq!(
        parse_port("http".to_owned()).run(),
        Err(PortError::NotANumber("http".to_owned()))
    );
}

#[test]
fn mut_argument_stays_mutable_in_the_body() {
    assert_eq!(countdown(3).run(), [3, 2, 1]);
}

#[test]
fn multiple_arguments_become_fields_in_order() {
    let task = describe(
        "Ada".to_owned(),
        36,
        vec!["math".to_owned(), "code".to_owned()],
    );
    assert_eq!(task.name, "Ada");
    assert_eq!(task.age, 36);
    assert_eq!(task.run(), "Ada (36): math, code");
}

#[test]
fn debug_shows_the_task_type_only() {
    assert_eq!(format!("{:?}", square_number(3)), "SquareNumber { .. }");
    assert_eq!(format!("{:?}", renamed()), "Renamed");
}

#[test]
fn task_round_trips_through_typetag_as_a_boxed_erased_task() {
    let task: Box<dyn ErasedTask> = Box::new(square_number(7));
    let bytes = postcard::to_stdvec(&task).expect("encode the task");
    let decoded: Box<dyn ErasedTask> = postcard::from_bytes(&bytes).expect("decode the task");
    let output = decoded.run_encoded().expect("run the task");
    assert_eq!(postcard::from_bytes::<u64>(&output).unwrap(), 49);
}

#[test]
fn result_error_round_trips_as_typed_data() {
    let task: Box<dyn ErasedTask> = Box::new(parse_port("http".to_owned()));
    let bytes = postcard::to_stdvec(&task).unwrap();
    let decoded: Box<dyn ErasedTask> = postcard::from_bytes(&bytes).unwrap();
    let output = decoded.run_encoded().unwrap();
    let result: Result<u16, PortError> = postcard::from_bytes(&output).unwrap();
    assert_eq!(result, Err(PortError::NotANumber("http".to_owned())));
}

#[test]
fn registered_task_names_are_unique() {
    concurrent_futures::check_task_names().expect("no two tasks share a name");
}

#[test]
fn task_runs_on_a_thread_pool() {
    let executor = ThreadPoolExecutor::new(2);
    let futures: Vec<_> = (1..=3).map(|i| executor.submit(square_number(i))).collect();
    let results: Vec<u64> = futures.iter().map(|f| f.result().unwrap()).collect();
    assert_eq!(results, [1, 4, 9]);
}
