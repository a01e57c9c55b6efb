//! `JobQueue`: the thread pool's unbounded FIFO, built so that the threads taking jobs never
//! free memory the submitting thread allocated.
//!
//! An unbounded crossbeam channel keeps its messages in linked blocks that the receiving side
//! frees. With glibc's allocator a block freed by a pool thread goes back to the submitter's
//! arena under that arena's lock, which the submitter holds for each of its own allocations:
//! on a 1,000,000-task run the pool threads slept in `free` and the submitter spent 8-10% of
//! its time waking them. Here jobs pass through a fixed ring (a bounded channel: no allocation
//! per message, and crossbeam's spin-then-park receiving), and only when the ring is full do
//! they wait in an overflow list, which the pool threads move into the ring as it empties.

use std::collections::VecDeque;
use std::sync::TryLockError;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::sync::{Mutex, lock};

/// How many jobs the ring holds before the overflow list takes them: a few hundred
/// microseconds of short tasks, 16-32 KiB per pool.
const RING: usize = 1024;

/// An unbounded multi-producer multi-consumer FIFO. Each producing thread's items come out
/// in the order it pushed them.
pub(crate) struct JobQueue<T> {
    ring_in: Sender<T>,
    ring_out: Receiver<T>,
    /// Items that found the ring full, oldest first.
    overflow: Mutex<VecDeque<T>>,
    /// Whether `overflow` may hold items: set by a producer under its lock, cleared under it
    /// when the list is found empty. Once set, producers append to the list, not the ring, so
    /// that nothing overtakes what waits there.
    overflowing: AtomicBool,
}

impl<T> JobQueue<T> {
    pub(crate) fn new() -> Self {
        let (ring_in, ring_out) = crossbeam_channel::bounded(RING);
        Self {
            ring_in,
            ring_out,
            overflow: Mutex::new(VecDeque::new()),
            overflowing: AtomicBool::new(false),
        }
    }

    /// Appends `item`; never blocks on consumers.
    pub(crate) fn push(&self, item: T) {
        let item = if self.overflowing.load(Ordering::SeqCst) {
            item
        } else {
            match self.ring_in.try_send(item) {
                Ok(()) => return,
                Err(TrySendError::Full(item) | TrySendError::Disconnected(item)) => item,
            }
        };
        let mut overflow = lock(&self.overflow);
        self.overflowing.store(true, Ordering::SeqCst);
        overflow.push_back(item);
        // The ring may have emptied since it was found full, with every consumer asleep on it:
        // move what fits now rather than leave it to a consumer that may not come.
        self.refill(&mut overflow);
    }

    /// Takes the oldest item, blocking until there is one.
    pub(crate) fn pop(&self) -> T {
        let item = self
            .ring_out
            .recv()
            .expect("the queue holds both ends of its ring");
        self.after_take();
        item
    }

    /// Takes the oldest item if there is one.
    pub(crate) fn try_pop(&self) -> Option<T> {
        let item = match self.ring_out.try_recv() {
            Ok(item) => item,
            // The ring can be empty while the list is not only while a producer is between
            // its push and its refill; take from the list then.
            Err(_) => lock(&self.overflow).pop_front()?,
        };
        self.after_take();
        Some(item)
    }

    /// How many items wait, for `Debug`.
    pub(crate) fn len(&self) -> usize {
        self.ring_out.len() + lock(&self.overflow).len()
    }

    /// A slot in the ring was freed: move the oldest waiting items into it, once the ring is
    /// half empty, so that a burst the threads cannot keep up with costs a lock per half ring
    /// and not per job. The one who empties the ring always refills; short of that, a thread
    /// that finds the list locked leaves it to the holder, who refills before unlocking.
    fn after_take(&self) {
        if !self.overflowing.load(Ordering::SeqCst) {
            return;
        }
        let left = self.ring_out.len();
        if left == 0 {
            self.refill(&mut lock(&self.overflow));
        } else if left <= RING / 2 {
            match self.overflow.try_lock() {
                Ok(mut overflow) => self.refill(&mut overflow),
                Err(TryLockError::Poisoned(poisoned)) => self.refill(&mut poisoned.into_inner()),
                Err(TryLockError::WouldBlock) => {}
            }
        }
    }

    fn refill(&self, overflow: &mut VecDeque<T>) {
        while let Some(item) = overflow.pop_front() {
            match self.ring_in.try_send(item) {
                Ok(()) => {}
                Err(TrySendError::Full(item) | TrySendError::Disconnected(item)) => {
                    overflow.push_front(item);
                    return;
                }
            }
        }
        self.overflowing.store(false, Ordering::SeqCst);
        // Drained: give back what a burst grew the list to, once per burst, keeping room
        // for a ring's worth so that a queue hovering at the ring's size does not reallocate.
        if overflow.capacity() > RING {
            overflow.shrink_to(RING);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn keeps_order_through_the_overflow() {
        let queue = JobQueue::new();
        for i in 0..RING * 3 + 7 {
            queue.push(i);
        }
        assert_eq!(queue.len(), RING * 3 + 7);
        for i in 0..RING * 2 {
            assert_eq!(queue.pop(), i);
        }
        // Pushed while the overflow still holds items: after them, not into the ring.
        queue.push(usize::MAX);
        let rest: Vec<usize> = std::iter::from_fn(|| queue.try_pop()).collect();
        let expected: Vec<usize> = (RING * 2..RING * 3 + 7).chain([usize::MAX]).collect();
        assert_eq!(rest, expected);
        assert_eq!(queue.len(), 0);
    }

    /// A burst far larger than the ring leaves no list of its size behind once it drained:
    /// a pool that once queued a million tasks does not hold their slots for the rest of its
    /// life.
    #[test]
    fn a_drained_overflow_gives_its_memory_back() {
        let queue = JobQueue::new();
        for i in 0..RING * 64 {
            queue.push(i);
        }
        assert!(lock(&queue.overflow).capacity() >= RING * 63);
        for i in 0..RING * 64 {
            assert_eq!(queue.pop(), i);
        }
        assert_eq!(queue.len(), 0);
        let kept = lock(&queue.overflow).capacity();
        assert!(kept <= RING, "the drained list keeps room for {kept} items");
    }

    /// Two producers, two consumers, far more items than the ring holds: every item comes out
    /// once, and each producer's items in its order.
    #[test]
    fn many_producers_and_consumers_lose_nothing() {
        const EACH: usize = 50_000;
        let queue = Arc::new(JobQueue::new());
        let producers: Vec<_> = (0..2)
            .map(|p| {
                let queue = Arc::clone(&queue);
                std::thread::spawn(move || {
                    for i in 0..EACH {
                        queue.push(Some((p, i)));
                    }
                })
            })
            .collect();
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let queue = Arc::clone(&queue);
                std::thread::spawn(move || {
                    let mut seen = Vec::new();
                    while let Some(item) = queue.pop() {
                        seen.push(item);
                    }
                    seen
                })
            })
            .collect();
        for producer in producers {
            producer.join().unwrap();
        }
        queue.push(None);
        queue.push(None);
        let mut all = Vec::new();
        for consumer in consumers {
            let seen = consumer.join().unwrap();
            for p in 0..2 {
                let mine: Vec<usize> = seen.iter().filter(|s| s.0 == p).map(|s| s.1).collect();
                assert!(mine.windows(2).all(|w| w[0] < w[1]), "out of order");
            }
            all.extend(seen);
        }
        all.sort_unstable();
        let expected: Vec<(usize, usize)> = (0..2)
            .flat_map(|p| (0..EACH).map(move |i| (p, i)))
            .collect();
        assert_eq!(all, expected);
    }
}
