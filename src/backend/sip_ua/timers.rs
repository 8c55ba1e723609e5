//! One queue for every timer of the SIP core: transactions, calls and registrations each have
//! at most one pending wake-up, kept under a key.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::Hash;
use std::time::Instant;

/// Wake-ups by key. Setting a key's time again replaces the earlier one: the old heap entry
/// stays behind and is skipped when it surfaces, so every operation is O(log n) amortized.
///
/// Stale entries cannot wait for their time to leave: a call's session-timer wake-up is up to
/// `session_expires` (30 min) away, and a call that ends after a second would keep its entry
/// for the rest of the half hour (a churn soak grew by every call's entries). So once the
/// stale entries outnumber the live ones (past a small floor) the heap is rebuilt from the live
/// schedule: O(live) work at most once per as many operations, and never more than
/// `2 × live + STALE_FLOOR` entries held.
#[derive(Debug)]
pub(crate) struct TimerQueue<K: Ord + Hash + Copy> {
    heap: BinaryHeap<Reverse<(Instant, K)>>,
    due: HashMap<K, Instant>,
}

/// Stale heap entries tolerated without a rebuild, whatever the live count.
const STALE_FLOOR: usize = 64;

impl<K: Ord + Hash + Copy> Default for TimerQueue<K> {
    fn default() -> Self {
        TimerQueue {
            heap: BinaryHeap::new(),
            due: HashMap::new(),
        }
    }
}

impl<K: Ord + Hash + Copy> TimerQueue<K> {
    /// Schedules `key` at `at`, or cancels it with `None`.
    pub(crate) fn set(&mut self, key: K, at: Option<Instant>) {
        match at {
            Some(t) => {
                if self.due.insert(key, t) != Some(t) {
                    self.heap.push(Reverse((t, key)));
                }
            }
            None => {
                self.due.remove(&key);
            }
        }
        if self.heap.len() > 2 * self.due.len() + STALE_FLOOR {
            // The order of equal times is the keys', so the rebuild changes no firing order.
            self.heap = self.due.iter().map(|(&k, &t)| Reverse((t, k))).collect();
        }
    }

    /// The earliest live wake-up (stale entries on top are dropped on the way).
    #[must_use]
    pub(crate) fn poll_timeout(&mut self) -> Option<Instant> {
        while let Some(Reverse((t, k))) = self.heap.peek().copied() {
            if self.due.get(&k) == Some(&t) {
                return Some(t);
            }
            self.heap.pop();
        }
        None
    }

    /// Takes the next key due at `now` (its schedule is cleared).
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<K> {
        while let Some(Reverse((t, k))) = self.heap.peek().copied() {
            if t > now {
                return None;
            }
            self.heap.pop();
            if self.due.get(&k) == Some(&t) {
                self.due.remove(&k);
                return Some(k);
            }
        }
        None
    }

    /// Live wake-ups.
    pub(crate) fn len(&self) -> usize {
        self.due.len()
    }

    /// Entries in the heap, stale ones included.
    #[cfg(test)]
    pub(crate) fn entries(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn replaced_and_cancelled_timers_do_not_fire() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut q = TimerQueue::default();
        q.set(1u32, Some(ms(10)));
        q.set(2, Some(ms(20)));
        q.set(1, Some(ms(30)));
        q.set(3, Some(ms(5)));
        q.set(3, None);
        assert_eq!(q.poll_timeout(), Some(ms(20)));
        assert_eq!(q.pop_due(ms(25)), Some(2));
        assert_eq!(q.pop_due(ms(25)), None);
        assert_eq!(q.pop_due(ms(30)), Some(1));
        assert_eq!(q.poll_timeout(), None);
        assert_eq!(q.len(), 0);
    }

    /// Wake-ups cancelled long before their time do not pile up: 100,000 calls each setting a
    /// half-hour timer and ending at once leave a heap of the floor's size, and the timers
    /// still live fire in order.
    #[test]
    fn cancelled_far_timers_do_not_pile_up() {
        let t0 = Instant::now();
        let mut q = TimerQueue::default();
        q.set(u32::MAX, Some(t0 + Duration::from_secs(10)));
        q.set(u32::MAX - 1, Some(t0 + Duration::from_secs(5)));
        for k in 0..100_000u32 {
            q.set(k, Some(t0 + Duration::from_secs(1800)));
            q.set(k, None);
            assert!(
                q.entries() <= 2 * q.len() + STALE_FLOOR,
                "{} entries",
                q.entries()
            );
        }
        assert_eq!(q.len(), 2);
        assert_eq!(q.poll_timeout(), Some(t0 + Duration::from_secs(5)));
        let end = t0 + Duration::from_secs(3600);
        assert_eq!(q.pop_due(end), Some(u32::MAX - 1));
        assert_eq!(q.pop_due(end), Some(u32::MAX));
        assert_eq!(q.pop_due(end), None);
    }
}
