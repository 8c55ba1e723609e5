//! Spare byte buffers kept for reuse, given back to the allocator once they stop being needed.
//!
//! A stream takes a buffer for each packet it sends or holds and returns it when the packet is
//! gone, so a warmed-up stream does not allocate. A burst (a key picture, a reordering storm)
//! leaves many spares behind, though, and a pool that only grows keeps the largest burst it ever
//! saw for the life of the call. [`BufPool`] therefore remembers the fewest spares it held since
//! the last [`BufPool::trim`]: that many were not needed during the period, and a trim at least
//! [`TRIM_PERIOD`] later frees them. A steady stream keeps what circulates; an idle one ends
//! with nothing.

use std::time::{Duration, Instant};

/// Spares unused for this long are freed.
pub const TRIM_PERIOD: Duration = Duration::from_secs(1);

/// A bounded stack of spare buffers; see the module documentation.
#[derive(Debug, Default)]
pub struct BufPool {
    bufs: Vec<Vec<u8>>,
    max: usize,
    /// Fewest spares held since the last trim.
    low: usize,
    last_trim: Option<Instant>,
}

impl BufPool {
    /// An empty pool that keeps at most `max` spares.
    pub fn new(max: usize) -> Self {
        BufPool {
            bufs: Vec::new(),
            max,
            low: 0,
            last_trim: None,
        }
    }

    /// An empty buffer, a spare if there is one.
    pub fn take(&mut self) -> Vec<u8> {
        let buf = self.bufs.pop().unwrap_or_default();
        self.low = self.low.min(self.bufs.len());
        buf
    }

    /// Keeps `buf` (emptied) as a spare, unless the pool is full or it has no memory.
    pub fn give(&mut self, mut buf: Vec<u8>) {
        if self.bufs.len() < self.max && buf.capacity() > 0 {
            buf.clear();
            self.bufs.push(buf);
        }
    }

    /// Spares held.
    pub fn len(&self) -> usize {
        self.bufs.len()
    }

    /// Heap bytes the spares hold.
    #[cfg(any(test, feature = "_internals"))]
    pub fn bytes(&self) -> usize {
        self.bufs.iter().map(Vec::capacity).sum()
    }

    /// True when no spare is held.
    pub fn is_empty(&self) -> bool {
        self.bufs.is_empty()
    }

    /// Frees the spares that were not taken since the last trim, if that was at least
    /// [`TRIM_PERIOD`] ago (the first call only starts the period). Cheap enough for every timer.
    pub fn trim(&mut self, now: Instant) {
        let due = self
            .last_trim
            .is_none_or(|t| now.saturating_duration_since(t) >= TRIM_PERIOD);
        if !due {
            return;
        }
        if self.last_trim.is_some() {
            let keep = self.bufs.len() - self.low.min(self.bufs.len());
            self.bufs.truncate(keep);
            if self.bufs.is_empty() {
                self.bufs = Vec::new();
            }
        }
        self.low = self.bufs.len();
        self.last_trim = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(pool: &mut BufPool, n: usize) {
        let bufs: Vec<_> = (0..n)
            .map(|_| {
                let mut b = pool.take();
                b.extend_from_slice(&[0; 1200]);
                b
            })
            .collect();
        for b in bufs {
            pool.give(b);
        }
    }

    #[test]
    fn a_burst_is_freed_once_it_is_not_needed_for_a_period() {
        let t = Instant::now();
        let mut p = BufPool::new(512);
        p.trim(t);
        // A key picture's worth of packets at once leaves 85 spares.
        filled(&mut p, 85);
        assert_eq!(p.len(), 85);
        // Then a steady stream of one packet at a time for two periods.
        for i in 1..=20u64 {
            filled(&mut p, 1);
            p.trim(t + Duration::from_millis(100 * i));
        }
        // The first trim after the burst kept what the burst had used (it was taken during the
        // period); the one after freed all but what circulates.
        assert_eq!(p.len(), 1);
        // Idle for a period: nothing is left, not even the stack's memory.
        p.trim(t + Duration::from_millis(3100));
        p.trim(t + Duration::from_millis(4200));
        assert!(p.is_empty());
        assert_eq!(p.bufs.capacity(), 0);
    }

    #[test]
    fn spares_are_reused_and_bounded() {
        let mut p = BufPool::new(2);
        let mut a = p.take();
        a.extend_from_slice(&[1; 100]);
        let ptr = a.as_ptr();
        p.give(a);
        let b = p.take();
        assert!(b.is_empty());
        assert_eq!(b.as_ptr(), ptr);
        p.give(b);
        p.give(vec![0; 10]);
        p.give(vec![0; 10]);
        assert_eq!(p.len(), 2);
        p.give(Vec::new());
        assert_eq!(p.len(), 2);
    }
}
