//! A reorder window for RTP packets, keyed by sequence number: the jitter buffer of a stream.
//!
//! Networks reorder packets a little; waiting a few packets (or a few milliseconds) for a gap to
//! fill saves throwing away a picture that only arrived out of order. With NACK the same window
//! holds everything behind a gap while the missing packet is asked for again, so it spans
//! hundreds of packets (a whole key picture) and waits as long as the NACK policy's deadline
//! ([`ReorderBuffer::set_max_delay`], which follows the measured RTT). A gap that does not fill in
//! time is given up on and reported as a loss to whoever consumes the next packet. Time is passed
//! in; [`ReorderBuffer::next_deadline`] tells the I/O thread when to come back if no packet
//! arrives. Every operation is O(1) amortised except giving up on a gap, which walks it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A jump in sequence number larger than this (either way) is taken as the sender restarting its
/// stream rather than as loss or lateness: no real network delays or loses 3000 packets in a row
/// while the stream continues.
pub const MAX_JUMP: i64 = 3000;

/// Where extended sequence numbers start, so that stepping back up to half the sequence space
/// from the first packet stays positive.
const EXT_BASE: u64 = 1 << 32;

/// Slots made the first time a packet is held: a short gap's worth.
const MIN_SLOTS: usize = 16;

/// How long and how far a gap is waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReorderConfig {
    /// Sequence numbers spanned by the window: a packet this far ahead of a gap gives up on it.
    pub window: usize,
    /// How long a packet held behind a gap may wait before the gap is given up on.
    pub max_delay: Duration,
}

impl Default for ReorderConfig {
    fn default() -> Self {
        ReorderConfig {
            window: 32,
            max_delay: Duration::from_millis(30),
        }
    }
}

/// What the window did with packets it could not use, and how often it had to wait.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReorderStats {
    /// Packets whose sequence number was already delivered or held.
    pub duplicates: u64,
    /// Packets that arrived after their gap had been given up on.
    pub late: u64,
    /// Sequence numbers given up on.
    pub lost: u64,
    /// Packets that arrived after one with a higher sequence number.
    pub reordered: u64,
    /// Sequence number jumps taken as a restart of the stream.
    pub resets: u64,
    /// Tentative starts that ended with nothing showing where the first picture begins and the
    /// packet before the first one missing (sent and lost, or never sent: no way to tell).
    pub uncertain_starts: u64,
}

/// What [`ReorderBuffer::push`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Queued for delivery, now or once the gap before it is settled.
    Accepted,
    /// Dropped: already delivered or held.
    Duplicate,
    /// Dropped: its place in the sequence has already been passed.
    Late,
}

#[derive(Debug)]
struct Slot<P> {
    ext: u64,
    item: P,
}

/// Puts packets back in sequence order; see the module documentation.
#[derive(Debug)]
pub struct ReorderBuffer<P> {
    cfg: ReorderConfig,
    /// Packets held behind a gap, at `ext % slots.len()`: a power of two that grows with the
    /// widest gap held so far, up to the window (a stream that never loses a packet has none).
    slots: Vec<Option<Slot<P>>>,
    held: usize,
    /// Packets in order, waiting to be popped, with their `lost_before` flag.
    ready: VecDeque<(P, bool)>,
    /// Extended sequence number of the next packet to release; `None` before the first packet.
    next: Option<u64>,
    highest: u64,
    /// One bit per sequence number, as a ring over the last `done.len() * 64` passed: set when it
    /// was delivered, clear when it was given up on. Tells a duplicate from a late packet for as
    /// far back as the window reaches (a retransmission of a packet that did arrive is a
    /// duplicate, not a late packet).
    done: Vec<u64>,
    /// Something was given up on since the last packet was released.
    loss_pending: bool,
    /// Held packets in arrival order (arrival time, extended sequence number), pruned lazily of
    /// those no longer held: the front gives the earliest deadline.
    arrivals: VecDeque<(Instant, u64)>,
    /// A tentative start (see [`ReorderBuffer::start_before`]).
    soft: Option<SoftStart>,
    stats: ReorderStats,
}

/// The sequence numbers before a stream's first packet that may or may not have been sent: up
/// to `end` (the first packet), until `until`. Gaps there count as losses only once a packet of
/// the region has been released (before that they may be packets that never existed).
#[derive(Debug, Clone, Copy)]
struct SoftStart {
    end: u64,
    until: Instant,
    released: bool,
    /// A packet showed where the first picture begins (at `end`): gaps before it are not losses.
    settled: bool,
}

impl<P> ReorderBuffer<P> {
    /// An empty window. A `window` below 1 is taken as 1 (no reordering tolerated).
    pub fn new(cfg: ReorderConfig) -> Self {
        let window = cfg.window.max(1);
        let cfg = ReorderConfig { window, ..cfg };
        ReorderBuffer {
            cfg,
            slots: Vec::new(),
            held: 0,
            ready: VecDeque::new(),
            next: None,
            highest: 0,
            done: vec![0; window.div_ceil(64).max(1)],
            loss_pending: false,
            arrivals: VecDeque::new(),
            soft: None,
            stats: ReorderStats::default(),
        }
    }

    /// Starts an empty buffer `back` sequence numbers before `seq`, the first packet about to be
    /// pushed, for a stream whose first packet may not be its first: packets that went before it
    /// are waited for until `until`. Gaps before the first of them that arrives are then given
    /// up on silently (they were most likely never sent); gaps after it are losses. Does nothing
    /// once the buffer has started.
    pub fn start_before(&mut self, seq: u16, back: u16, until: Instant) {
        if self.next.is_some() || back == 0 {
            return;
        }
        let end = EXT_BASE + u64::from(seq);
        let start = end - u64::from(back);
        self.next = Some(start);
        self.highest = start;
        self.done.fill(0);
        self.soft = Some(SoftStart {
            end,
            until,
            released: false,
            settled: false,
        });
    }

    /// A packet of the tentative start region has shown that the first picture begins at
    /// `begins_at`: the region shrinks to end there and is settled at `now` (gaps in it are not
    /// losses); gaps from `begins_at` on are ordinary gaps of the stream.
    pub fn settle_start(&mut self, begins_at: u16, now: Instant) {
        let Some(s) = &mut self.soft else { return };
        let back = (s.end as u16).wrapping_sub(begins_at);
        if back >= 0x8000 {
            return;
        }
        s.end -= u64::from(back);
        s.until = s.until.min(now);
        s.settled = true;
    }

    /// The first packet of a tentative start region still open.
    #[cfg(any(test, feature = "_internals"))]
    pub fn soft_end(&self) -> Option<u16> {
        self.soft.map(|s| s.end as u16)
    }

    /// Settles the tentative start region: held packets go out, gaps are given up on (as losses
    /// only after a released packet of the region). When nothing showed where the first picture
    /// begins and the packet just before the first one never came, that picture's start is
    /// unknown: the first packet goes out marked as following a loss, so the picture is never
    /// taken as whole (its parameter sets, say, may be what was lost).
    fn give_up_soft(&mut self) {
        let Some(soft) = self.soft else { return };
        let mut gap_before_end = false;
        while let Some(next) = self.next.filter(|&n| n < soft.end) {
            match self.take_held(next) {
                Some(item) => {
                    self.accept_next(item);
                    gap_before_end = false;
                }
                None => {
                    if self.soft.is_some_and(|s| s.released && !s.settled) {
                        self.stats.lost += 1;
                        self.loss_pending = true;
                    }
                    self.set_done(next, false);
                    self.next = Some(next + 1);
                    gap_before_end = true;
                }
            }
        }
        if gap_before_end && !soft.settled && !self.loss_pending {
            self.stats.uncertain_starts += 1;
            self.loss_pending = true;
        }
        self.soft = None;
    }

    /// Changes how long a packet held behind a gap may wait (the NACK deadline follows the RTT).
    pub fn set_max_delay(&mut self, max_delay: Duration) {
        self.cfg.max_delay = max_delay;
    }

    /// The sequence number expected next: everything before it was delivered or given up on.
    pub fn next_seq(&self) -> Option<u16> {
        self.next.map(|n| n as u16)
    }

    /// The configuration in use.
    #[cfg(any(test, feature = "_internals"))]
    pub fn config(&self) -> ReorderConfig {
        self.cfg
    }

    /// Counters so far.
    pub fn stats(&self) -> ReorderStats {
        self.stats
    }

    /// Packets held behind a gap.
    #[cfg(any(test, feature = "_internals"))]
    pub fn held(&self) -> usize {
        self.held
    }

    /// Whether a packet with sequence number `seq` would go straight out: it is the one expected
    /// and nothing is waiting. Lets a caller skip making an owned copy of such a packet.
    pub fn is_next(&self, seq: u16) -> bool {
        match self.next {
            None => true,
            Some(next) => self.held == 0 && self.ready.is_empty() && next as u16 == seq,
        }
    }

    /// Offers a packet that arrived at `now`. Whatever it makes ready is returned by [`Self::pop`].
    pub fn push(&mut self, seq: u16, item: P, now: Instant) -> PushOutcome {
        let Some(mut next) = self.next else {
            self.start(seq);
            return self.accept_next(item);
        };
        let mut delta = i64::from(seq.wrapping_sub(next as u16) as i16);
        if delta.abs() > MAX_JUMP {
            // The old stream's held packets are still good; hand them out before starting over.
            self.flush();
            self.stats.resets += 1;
            self.start(seq);
            self.loss_pending = true;
            next = self.next.unwrap_or(EXT_BASE);
            delta = 0;
        }
        if delta < 0 {
            let back = delta.unsigned_abs();
            if back <= self.done_span() && self.was_done(next - back) {
                self.stats.duplicates += 1;
                return PushOutcome::Duplicate;
            }
            self.stats.late += 1;
            return PushOutcome::Late;
        }
        let ext = next + delta as u64;
        if ext < self.highest {
            self.stats.reordered += 1;
        }
        if delta == 0 && self.held == 0 {
            return self.accept_next(item);
        }
        let window = self.cfg.window as u64;
        if ext - next >= window {
            // Too far ahead to keep waiting: give up on whatever the window cannot span.
            self.skip_to(ext + 1 - window);
        }
        let next = self.next.unwrap_or(ext);
        self.make_room(ext + 1 - next);
        let idx = self.slot_of(ext);
        if self.slots[idx].is_some() {
            self.stats.duplicates += 1;
            return PushOutcome::Duplicate;
        }
        self.slots[idx] = Some(Slot { ext, item });
        self.arrivals.push_back((now, ext));
        self.held += 1;
        self.highest = self.highest.max(ext);
        self.drain();
        self.prune();
        PushOutcome::Accepted
    }

    /// The next packet in order with its `lost_before` flag (packets before it were given up on),
    /// giving up on the gap at the head first if a packet behind it has waited `max_delay` by `now`.
    pub fn pop(&mut self, now: Instant) -> Option<(P, bool)> {
        loop {
            if let Some(x) = self.ready.pop_front() {
                return Some(x);
            }
            let deadline = self.next_deadline()?;
            if now < deadline {
                return None;
            }
            if self.soft.is_some_and(|s| now >= s.until) {
                self.give_up_soft();
            } else {
                let lowest = self.lowest_held()?;
                self.skip_to(lowest);
            }
            self.drain();
            self.prune();
        }
    }

    /// When [`Self::pop`] will next give up on a gap, if anything is held.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.held == 0 {
            return None;
        }
        // While the start is tentative, only its own deadline counts: the gaps after it are not
        // known to be gaps yet.
        match self.soft {
            Some(s) => Some(s.until),
            None => self.arrivals.front().map(|&(t, _)| t + self.cfg.max_delay),
        }
    }

    /// Drops arrival records of packets no longer held.
    fn prune(&mut self) {
        while let Some(&(_, ext)) = self.arrivals.front() {
            if self.is_held(ext) {
                return;
            }
            self.arrivals.pop_front();
        }
    }

    /// Gives up on every gap now, making everything held ready (the stream is ending or changing).
    pub fn flush(&mut self) {
        self.give_up_soft();
        while let Some(lowest) = self.lowest_held() {
            self.skip_to(lowest);
            self.drain();
        }
        self.arrivals.clear();
    }

    /// Forgets everything, held and ready packets included, as if nothing had arrived. Counters
    /// are kept.
    pub fn reset(&mut self) {
        self.slots = Vec::new();
        self.held = 0;
        self.ready = VecDeque::new();
        self.next = None;
        self.highest = 0;
        self.done.fill(0);
        self.loss_pending = false;
        self.arrivals.clear();
        self.soft = None;
    }

    /// The slot of sequence number `ext`; `slots` must not be empty.
    fn slot_of(&self, ext: u64) -> usize {
        (ext & (self.slots.len() as u64 - 1)) as usize
    }

    fn is_held(&self, ext: u64) -> bool {
        !self.slots.is_empty() && matches!(&self.slots[self.slot_of(ext)], Some(s) if s.ext == ext)
    }

    /// Takes the packet held with sequence number `ext`, if any.
    fn take_held(&mut self, ext: u64) -> Option<P> {
        if !self.is_held(ext) {
            return None;
        }
        let idx = self.slot_of(ext);
        self.held -= 1;
        self.slots[idx].take().map(|s| s.item)
    }

    /// Grows `slots` to index `span` sequence numbers from `next` without two sharing a slot
    /// (held packets all lie within that span). Packets held move to their new slots.
    fn make_room(&mut self, span: u64) {
        if span <= self.slots.len() as u64 {
            return;
        }
        let most = self.cfg.window.next_power_of_two();
        let len = (span as usize)
            .next_power_of_two()
            .clamp(MIN_SLOTS.min(most), most);
        let old = std::mem::replace(&mut self.slots, (0..len).map(|_| None).collect());
        for slot in old.into_iter().flatten() {
            let idx = self.slot_of(slot.ext);
            self.slots[idx] = Some(slot);
        }
    }

    fn start(&mut self, seq: u16) {
        let ext = EXT_BASE + u64::from(seq);
        self.next = Some(ext);
        self.highest = ext;
        self.done.fill(0);
    }

    fn done_span(&self) -> u64 {
        self.done.len() as u64 * 64
    }

    fn was_done(&self, ext: u64) -> bool {
        let bit = ext % self.done_span();
        self.done[(bit / 64) as usize] & (1 << (bit % 64)) != 0
    }

    fn set_done(&mut self, ext: u64, delivered: bool) {
        let bit = ext % self.done_span();
        let word = &mut self.done[(bit / 64) as usize];
        if delivered {
            *word |= 1 << (bit % 64);
        } else {
            *word &= !(1 << (bit % 64));
        }
    }

    /// Releases the packet with the expected sequence number.
    fn accept_next(&mut self, item: P) -> PushOutcome {
        let lost = std::mem::take(&mut self.loss_pending);
        self.ready.push_back((item, lost));
        self.advance_delivered();
        PushOutcome::Accepted
    }

    fn advance_delivered(&mut self) {
        if let Some(n) = self.next {
            match &mut self.soft {
                Some(s) if n < s.end => s.released = true,
                Some(_) => self.soft = None,
                None => {}
            }
            self.set_done(n, true);
            self.highest = self.highest.max(n);
            self.next = Some(n + 1);
        }
    }

    /// Releases held packets that are now in order.
    fn drain(&mut self) {
        while self.held > 0 {
            let Some(next) = self.next else { return };
            match self.take_held(next) {
                Some(item) => self.accept_next(item),
                None => return,
            };
        }
    }

    /// Moves the expected sequence number up to `target`, releasing held packets on the way and
    /// counting the missing ones as lost.
    fn skip_to(&mut self, target: u64) {
        while let Some(next) = self.next {
            if next >= target {
                return;
            }
            if self.held == 0 {
                let n = target - next;
                self.stats.lost += n;
                self.loss_pending = true;
                if n >= self.done_span() {
                    self.done.fill(0);
                } else {
                    for ext in next..target {
                        self.set_done(ext, false);
                    }
                }
                self.next = Some(target);
                return;
            }
            match self.take_held(next) {
                Some(item) => {
                    self.accept_next(item);
                }
                None => {
                    self.stats.lost += 1;
                    self.loss_pending = true;
                    self.set_done(next, false);
                    self.next = Some(next + 1);
                }
            }
        }
    }

    /// The lowest held sequence number: the first held slot after `next` (held packets all lie
    /// within one window after it).
    fn lowest_held(&self) -> Option<u64> {
        if self.held == 0 {
            return None;
        }
        let next = self.next?;
        (next..next + self.slots.len() as u64).find(|&ext| self.is_held(ext))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buf(window: usize, ms: u64) -> ReorderBuffer<u16> {
        ReorderBuffer::new(ReorderConfig {
            window,
            max_delay: Duration::from_millis(ms),
        })
    }

    fn drain(b: &mut ReorderBuffer<u16>, now: Instant) -> Vec<(u16, bool)> {
        std::iter::from_fn(|| b.pop(now)).collect()
    }

    fn push(b: &mut ReorderBuffer<u16>, seq: u16, now: Instant) -> PushOutcome {
        b.push(seq, seq, now)
    }

    #[test]
    fn in_order_passes_straight_through() {
        let mut b = buf(32, 30);
        let t = Instant::now();
        for s in 10..20u16 {
            assert!(b.is_next(s));
            push(&mut b, s, t);
            assert_eq!(b.pop(t), Some((s, false)));
            assert_eq!(b.held(), 0);
        }
        assert_eq!(b.stats(), ReorderStats::default());
        assert_eq!(b.next_deadline(), None);
    }

    #[test]
    fn slots_grow_with_the_widest_gap_and_no_further() {
        // A NACK-sized window costs nothing while no packet is missing...
        let mut b = buf(1024, 1000);
        let t = Instant::now();
        for s in 0..2000u16 {
            push(&mut b, s, t);
            assert_eq!(b.pop(t), Some((s, false)));
        }
        assert_eq!(b.slots.len(), 0);
        assert!(b.ready.capacity() <= 4, "{}", b.ready.capacity());
        // ...a gap makes room for what is held behind it...
        for s in 2001..2011u16 {
            push(&mut b, s, t);
        }
        assert_eq!(b.slots.len(), MIN_SLOTS);
        for s in 2011..2300u16 {
            push(&mut b, s, t);
        }
        assert_eq!(b.slots.len(), 512);
        assert_eq!(b.held(), 299);
        // ...and the packets moved on the way come out whole and in order.
        push(&mut b, 2000, t);
        let out = drain(&mut b, t);
        assert_eq!(out.len(), 300);
        assert!(out
            .iter()
            .zip(2000u16..)
            .all(|(&(s, lost), e)| s == e && !lost));
        // A gap wider than the window stays bounded by it.
        push(&mut b, 2301, t);
        push(&mut b, 2301 + 2000, t);
        assert_eq!(b.slots.len(), 1024);
        b.reset();
        assert_eq!(b.slots.len(), 0);
    }

    #[test]
    fn swapped_packets_are_put_back_in_order() {
        let mut b = buf(32, 30);
        let t = Instant::now();
        push(&mut b, 1, t);
        push(&mut b, 3, t);
        assert!(!b.is_next(2));
        assert_eq!(drain(&mut b, t), vec![(1, false)]);
        assert_eq!(b.next_deadline(), Some(t + Duration::from_millis(30)));
        push(&mut b, 2, t);
        assert_eq!(drain(&mut b, t), vec![(2, false), (3, false)]);
        assert_eq!(b.stats().reordered, 1);
        assert_eq!(b.stats().lost, 0);
    }

    #[test]
    fn sequence_wrap_at_65535() {
        let mut b = buf(32, 30);
        let t = Instant::now();
        let order = [65533u16, 65535, 65534, 1, 0, 2];
        let mut out = Vec::new();
        for s in order {
            push(&mut b, s, t);
            out.extend(drain(&mut b, t));
        }
        let seqs: Vec<u16> = out.iter().map(|x| x.0).collect();
        assert_eq!(seqs, vec![65533, 65534, 65535, 0, 1, 2]);
        assert!(out.iter().all(|x| !x.1));
    }

    #[test]
    fn gap_is_given_up_after_max_delay() {
        let mut b = buf(32, 30);
        let t = Instant::now();
        push(&mut b, 100, t);
        push(&mut b, 102, t + Duration::from_millis(5));
        push(&mut b, 103, t + Duration::from_millis(10));
        assert_eq!(
            drain(&mut b, t + Duration::from_millis(34)),
            vec![(100, false)]
        );
        assert_eq!(b.next_deadline(), Some(t + Duration::from_millis(35)));
        assert_eq!(
            drain(&mut b, t + Duration::from_millis(35)),
            vec![(102, true), (103, false)]
        );
        assert_eq!(b.stats().lost, 1);
        // The missing one turns up too late.
        assert_eq!(push(&mut b, 101, t), PushOutcome::Late);
        assert_eq!(b.stats().late, 1);
        assert_eq!(b.next_deadline(), None);
    }

    #[test]
    fn window_overflow_gives_up_without_waiting() {
        let mut b = buf(4, 1000);
        let t = Instant::now();
        push(&mut b, 0, t);
        push(&mut b, 2, t);
        push(&mut b, 3, t);
        assert_eq!(drain(&mut b, t), vec![(0, false)]);
        // 5 is 4 ahead of the gap at 1: the window cannot span it.
        push(&mut b, 5, t);
        assert_eq!(drain(&mut b, t), vec![(2, true), (3, false)]);
        push(&mut b, 4, t);
        assert_eq!(drain(&mut b, t), vec![(4, false), (5, false)]);
        assert_eq!(b.stats().lost, 1);
    }

    #[test]
    fn far_ahead_packet_skips_many() {
        let mut b = buf(8, 1000);
        let t = Instant::now();
        push(&mut b, 0, t);
        push(&mut b, 500, t);
        let out = drain(&mut b, t);
        assert_eq!(out, vec![(0, false)]);
        b.flush();
        assert_eq!(drain(&mut b, t), vec![(500, true)]);
        assert_eq!(b.stats().lost, 499);
    }

    #[test]
    fn duplicates_are_dropped() {
        let mut b = buf(32, 30);
        let t = Instant::now();
        push(&mut b, 7, t);
        assert_eq!(push(&mut b, 7, t), PushOutcome::Duplicate);
        push(&mut b, 9, t);
        assert_eq!(push(&mut b, 9, t), PushOutcome::Duplicate);
        push(&mut b, 8, t);
        assert_eq!(push(&mut b, 8, t), PushOutcome::Duplicate);
        assert_eq!(drain(&mut b, t), vec![(7, false), (8, false), (9, false)]);
        assert_eq!(b.stats().duplicates, 3);
        assert_eq!(b.stats().late, 0);
    }

    #[test]
    fn huge_jump_resets_the_stream() {
        let mut b = buf(32, 30);
        let t = Instant::now();
        push(&mut b, 10, t);
        push(&mut b, 12, t);
        push(&mut b, 40000, t);
        push(&mut b, 40001, t);
        assert_eq!(
            drain(&mut b, t),
            vec![(10, false), (12, true), (40000, true), (40001, false)]
        );
        assert_eq!(b.stats().resets, 1);
        // Backwards by more than the limit is a restart too.
        push(&mut b, 30000, t);
        assert_eq!(drain(&mut b, t), vec![(30000, true)]);
        assert_eq!(b.stats().resets, 2);
    }

    #[test]
    fn window_of_one_never_waits() {
        let mut b = buf(0, 1000);
        let t = Instant::now();
        push(&mut b, 1, t);
        push(&mut b, 3, t);
        assert_eq!(drain(&mut b, t), vec![(1, false), (3, true)]);
        assert_eq!(push(&mut b, 2, t), PushOutcome::Late);
    }

    #[test]
    fn tentative_start_waits_for_packets_before_the_first() {
        let t = Instant::now();
        let until = t + Duration::from_millis(100);
        // The packet before the first one turns up: it belongs to the stream.
        let mut b = buf(32, 500);
        b.start_before(10, 3, until);
        push(&mut b, 10, t);
        assert!(drain(&mut b, t).is_empty());
        assert_eq!(b.next_deadline(), Some(until));
        push(&mut b, 9, t);
        assert_eq!(drain(&mut b, until), vec![(9, false), (10, false)]);
        assert_eq!(b.stats().lost, 0);
        // Nothing turns up: no loss is counted (those packets may never have been sent), but the
        // first packet goes out flagged, since its picture's start is unknown.
        let mut b = buf(32, 500);
        b.start_before(10, 3, until);
        push(&mut b, 10, t);
        push(&mut b, 11, t);
        assert!(drain(&mut b, until - Duration::from_millis(1)).is_empty());
        assert_eq!(drain(&mut b, until), vec![(10, true), (11, false)]);
        assert_eq!((b.stats().lost, b.stats().uncertain_starts), (0, 1));
        // 9 turns up but not 8: 9 is the packet before the first, so the start is whole.
        let mut b = buf(32, 500);
        b.start_before(10, 3, until);
        push(&mut b, 10, t);
        push(&mut b, 9, t);
        assert_eq!(drain(&mut b, until), vec![(9, false), (10, false)]);
        assert_eq!((b.stats().lost, b.stats().uncertain_starts), (0, 0));
        // 8 arrives but 9 does not: 9 was sent, and it is a loss.
        let mut b = buf(32, 500);
        b.start_before(10, 3, until);
        push(&mut b, 10, t);
        push(&mut b, 8, t);
        assert!(drain(&mut b, t).is_empty());
        assert_eq!(drain(&mut b, until), vec![(8, false), (10, true)]);
        assert_eq!(b.stats().lost, 1);
        assert_eq!(b.soft_end(), None);
    }

    #[test]
    fn reset_forgets_everything() {
        let mut b = buf(32, 30);
        let t = Instant::now();
        push(&mut b, 1, t);
        push(&mut b, 3, t);
        b.reset();
        assert_eq!(b.pop(t + Duration::from_secs(1)), None);
        assert!(b.is_next(999));
        push(&mut b, 999, t);
        assert_eq!(drain(&mut b, t), vec![(999, false)]);
    }
}
