//! A long-lived pool that replaces its workers must not keep what each replaced worker's
//! connection thread held: an unjoined finished thread keeps its stack mapped. Alone in its
//! binary so that no other test maps or unmaps memory meanwhile.

use concurrent_futures::{ProcessPoolExecutor, task};

concurrent_futures::enable_test_support!();

#[task]
fn square_number(x: u64) -> u64 {
    x * x
}

fn mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .count()
}

#[test]
fn replacing_workers_does_not_grow_the_address_space_per_replacement() {
    let executor = ProcessPoolExecutor::builder()
        .max_workers(2)
        .max_tasks_per_child(1)
        .build()
        .unwrap();
    // Warm up: the first threads, malloc's arenas, the deadline thread.
    for i in 0..20 {
        assert_eq!(executor.submit(square_number(i)).result().unwrap(), i * i);
    }
    let before = mappings();
    let replaced = 200;
    for i in 0..replaced {
        assert_eq!(executor.submit(square_number(i)).result().unwrap(), i * i);
    }
    let after = mappings();
    // Unjoined, each replaced worker's thread kept two mappings (stack and guard page):
    // some 400 more here. A few can come from the allocator.
    assert!(
        after < before + 50,
        "{replaced} workers replaced: mappings {before} -> {after}"
    );
}
