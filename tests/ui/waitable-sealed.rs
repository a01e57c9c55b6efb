// `Waitable` is sealed: waiting on a value means registering with a future's state machine,
// which only this crate's futures have.
use concurrent_futures::{State, Waitable};

struct Mine;

impl Waitable for Mine {
    fn state(&self) -> State {
        State::Finished
    }

    fn failed(&self) -> bool {
        false
    }
}

fn main() {}
