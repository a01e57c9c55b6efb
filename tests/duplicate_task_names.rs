//! Two `#[task]` functions under one name are reported with both Rust types, never silently.

mod first {
    #[concurrent_futures::task(name = "shared-name")]
    pub fn resize(width: u32) -> u32 {
        width / 2
    }
}

mod second {
    #[concurrent_futures::task(name = "shared-name")]
    pub fn resize(width: u32) -> u32 {
        width * 2
    }
}

#[test]
fn duplicate_task_names_are_reported_with_both_types() {
    let duplicate = concurrent_futures::check_task_names().unwrap_err();
    assert_eq!(duplicate.name, "shared-name");
    assert_eq!(duplicate.first, "duplicate_task_names::first::Resize");
    assert_eq!(duplicate.second, "duplicate_task_names::second::Resize");
    assert_eq!(
        duplicate.to_string(),
        "task name `shared-name` is registered twice, by `duplicate_task_names::first::Resize` \
         and by `duplicate_task_names::second::Resize`; give one of them #[task(name = \"...\")]"
    );
    // Each still runs in-process; only a worker process would be confused.
    assert_eq!(first::resize(8).run(), 4);
    assert_eq!(second::resize(8).run(), 16);
}

#[test]
#[should_panic(expected = "task name `shared-name` is registered twice")]
fn init_refuses_to_start_with_duplicate_task_names() {
    concurrent_futures::init();
}
