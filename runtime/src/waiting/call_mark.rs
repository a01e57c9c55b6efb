//! `CallMark`: how a future tells whether the `wait`/`as_completed` call that last saw it may
//! still be running, from a number it keeps in its state word instead of a pointer.

use std::sync::Mutex;

/// Marks fit in the bits of a future's state word above its phase and flags.
pub(crate) const MARK_BITS: u32 = 56;

/// The ids of the calls that hold a mark now, in increasing order, and the next id to give.
/// Ids are given under this lock, so that every call with a smaller id is either listed here
/// or has ended when a new call copies the list.
static LIVE: Mutex<Live> = Mutex::new(Live {
    ids: Vec::new(),
    next: 1,
});

struct Live {
    ids: Vec<u64>,
    next: u64,
}

fn live() -> std::sync::MutexGuard<'static, Live> {
    // No code that can panic runs under this lock; a poisoned one still holds a valid list.
    LIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One call's id, and the ids of the calls that were running when it began. Two locks of a
/// global list per call, none per future.
#[derive(Debug)]
pub(crate) struct CallMark {
    id: u64,
    /// Sorted: the calls that began before this one and may not have ended.
    earlier: Box<[u64]>,
}

/// What a call may do with a future marked by some call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The mark is this call's: it has seen the future already.
    Seen,
    /// No call, or one that has ended, marked it: this call may put its own mark there.
    Claim,
    /// A call that may still be running marked it: leave its mark, or it could not find its
    /// own duplicates.
    Foreign,
}

impl CallMark {
    /// A new call's mark, never 0 (a future's mark before any call saw it).
    pub(crate) fn begin() -> Self {
        let mut live = live();
        let id = live.next;
        // 2^56 calls: at ten million a second, two hundred years of one process.
        assert!(id < 1 << MARK_BITS, "wait/as_completed call ids exhausted");
        live.next += 1;
        let earlier = live.ids.clone().into_boxed_slice();
        live.ids.push(id);
        Self { id, earlier }
    }

    /// The id to mark futures with.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// What this call may do with a future whose mark is `mark`.
    pub(crate) fn judge(&self, mark: u64) -> Verdict {
        if mark == self.id {
            Verdict::Seen
        } else if mark == 0 || (mark < self.id && self.earlier.binary_search(&mark).is_err()) {
            // Began before this call, and had ended by then.
            Verdict::Claim
        } else {
            // Began later than this call, or was running when it began.
            Verdict::Foreign
        }
    }
}

impl Drop for CallMark {
    fn drop(&mut self) {
        let mut live = live();
        if let Ok(at) = live.ids.binary_search(&self.id) {
            live.ids.remove(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_sees_its_own_mark_and_claims_unmarked_futures() {
        let call = CallMark::begin();
        assert_eq!(call.judge(call.id()), Verdict::Seen);
        assert_eq!(call.judge(0), Verdict::Claim);
    }

    #[test]
    fn an_ended_call_s_mark_may_be_claimed_a_running_one_s_may_not() {
        let ended = CallMark::begin();
        let ended_id = ended.id();
        drop(ended);
        let running = CallMark::begin();
        let call = CallMark::begin();
        assert_eq!(call.judge(ended_id), Verdict::Claim);
        assert_eq!(call.judge(running.id()), Verdict::Foreign);
        // A call that began after this one may be running whatever the list says.
        let later = CallMark::begin();
        assert_eq!(call.judge(later.id()), Verdict::Foreign);
        drop(later);
        assert_eq!(
            call.judge(running.id()),
            Verdict::Foreign,
            "listed when `call` began"
        );
    }
}
