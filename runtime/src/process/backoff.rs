//! When to spend a core polling for something about to arrive: after a poll in vain, skip
//! the next chance, after the next in vain two, then four, up to [`MAX_SKIPS`]; a poll that
//! catches what it waited for starts over. A peer that keeps its appointments is polled for
//! every time; one that does not costs a core at most once in `MAX_SKIPS` chances.

/// The most chances skipped after polls in vain.
pub(crate) const MAX_SKIPS: u32 = 64;

#[derive(Debug)]
pub(crate) struct Backoff {
    /// Chances still to skip.
    skip: u32,
    /// How many the next poll in vain skips.
    next: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { skip: 0, next: 1 }
    }
}

impl Backoff {
    /// Whether to poll at this chance; a skipped chance counts down.
    pub(crate) fn poll_now(&mut self) -> bool {
        if self.skip > 0 {
            self.skip -= 1;
            false
        } else {
            true
        }
    }

    /// The poll caught what it waited for.
    pub(crate) fn caught(&mut self) {
        self.next = 1;
    }

    /// The poll was in vain.
    pub(crate) fn missed(&mut self) {
        self.skip = self.next;
        self.next = (self.next * 2).min(MAX_SKIPS);
    }

    /// (chances still to skip, how many the next poll in vain skips), for tests.
    #[cfg(test)]
    pub(crate) fn counts(&self) -> (u32, u32) {
        (self.skip, self.next)
    }
}
