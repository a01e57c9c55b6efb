use concurrent_futures::{Future, join_completed};

fn missing_arrow(f: Future<u8>) {
    let _ = join_completed! { a = f };
}

fn missing_name(f: Future<u8>, g: Future<u8>) {
    let _ = join_completed! {
        a = f => a,
        g => 2,
    };
}

fn missing_comma(f: Future<u8>, g: Future<u8>) {
    let _ = join_completed! {
        a = f => a
        b = g => b,
    };
}

fn unknown_option(futures: Vec<Future<u8>>) {
    let _ = join_completed!(futures, deadline = std::time::Duration::from_secs(1));
}

fn empty() {
    let _: () = join_completed!();
}

fn main() {}
