//! Every shape of function `#[task]` accepts builds without a warning and runs in-process.
#![deny(warnings, unused_qualifications, unused_results, unreachable_pub)]

use std::borrow::Cow;
use std::collections::BTreeMap;

use concurrent_futures::{Task, task};

/// No arguments, no result.
#[task]
pub fn nothing() {}

/// A `mut` argument, a raw identifier and an argument the body ignores on purpose.
#[task]
#[inline]
pub fn countdown(mut n: u32, r#type: String, #[allow(unused_variables)] unused: u8) -> Vec<String> {
    let mut steps = Vec::new();
    while n > 0 {
        steps.push(format!("{type}{n}", type = r#type));
        n -= 1;
    }
    steps
}

/// Owned `'static` data, nested generic types and tuples are fine.
#[task(name = "shapes::summary", timeout = "250ms")]
pub(crate) fn summary(
    label: Cow<'static, str>,
    table: BTreeMap<String, Vec<(u8, i64)>>,
) -> Result<(String, usize), String> {
    if table.is_empty() {
        return Err(format!("{label}: empty"));
    }
    Ok((label.into_owned(), table.values().map(Vec::len).sum()))
}

/// Marked safe to run again after a lost worker, alone or with a bool.
#[task(idempotent)]
fn retried(x: u8) -> u8 {
    x
}

#[task(idempotent = false, timeout = "1s")]
fn not_retried() {}

/// A `const fn` task keeps a `const` constructor.
#[task]
pub const fn double(x: u64) -> u64 {
    x * 2
}

const FOUR: Double = double(2);

#[cfg(all())]
#[task]
fn configured(flag: bool) -> bool {
    !flag
}

fn main() {
    concurrent_futures::init();
    nothing().run();
    assert_eq!(countdown(2, "t".to_owned(), 0).run(), ["t2", "t1"]);
    let mut table = BTreeMap::new();
    let _ = table.insert("a".to_owned(), vec![(1, -1), (2, -2)]);
    assert_eq!(
        summary(Cow::Borrowed("sum"), table).run(),
        Ok(("sum".to_owned(), 2))
    );
    assert_eq!(FOUR.run(), 4);
    assert!(configured(false).run());
    assert!(retried(1).idempotent());
    assert!(!not_retried().idempotent());
    assert!(!nothing().idempotent());

    #[task]
    fn local(x: i8) -> i8 {
        -x
    }
    assert_eq!(local(3).run(), -3);
    assert_eq!(<Local as Task>::NAME, concat!(module_path!(), "::local"));
    concurrent_futures::check_task_names().unwrap();
}
