use concurrent_futures::task;

#[task]
fn area((width, height): (u32, u32)) -> u32 {
    width * height
}

#[task]
fn ignored(_: u8) -> u8 {
    0
}

#[task]
fn by_ref(ref name: String) -> usize {
    name.len()
}

fn main() {}
