use concurrent_futures::task;

// Every mistake is reported at once, not one per build.
#[task(retries = "3", timeout = "soon")]
async fn fetch<T>(url: &str, (host, port): (String, u16)) -> Vec<T> {
    let _ = (url, host, port);
    Vec::new()
}

fn main() {}
