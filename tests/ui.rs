//! Compile-time behaviour of `#[task]` and `join_completed!`: one compile-fail case per
//! mistake, with its expected diagnostics in the `.stderr` beside it, and cases that must build
//! and run.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
    cases.pass("tests/ui/pass/*.rs");
}
