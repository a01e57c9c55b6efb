use concurrent_futures::task;

#[task(timeout = "10 seconds")]
fn spaced() {}

#[task(timeout = "1.5")]
fn unitless() {}

#[task(timeout = "3d")]
fn days() {}

#[task(timeout = 10)]
fn not_a_string() {}

fn main() {}
