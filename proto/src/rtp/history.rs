//! The packets a video sender sent recently, kept so that NACKed ones can be sent again, and the
//! limits that stop NACKs from multiplying traffic.
//!
//! [`SendHistory`] is a ring indexed by sequence number, bounded by count (its size, a power of
//! two so that sequence wrap lands on the same slot) and by age. Each slot keeps its byte buffer
//! from one packet to the next, so a warmed-up sender stores packets without allocating.
//!
//! [`RetransmitLimiter`] bounds what NACKs can make us send: a packet is not re-sent again within
//! a guard time (about half an RTT: a second NACK that soon was sent before our first answer could
//! arrive), and all retransmissions together draw from a token bucket filled at a share of the
//! stream's recent rate. A storm of NACKs therefore costs at most that share.

use std::time::{Duration, Instant};

/// How much history a sender keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryConfig {
    /// Packets kept (rounded up to a power of two, at least 64, at most 32768).
    pub max_packets: usize,
    /// Older packets are not re-sent: the receiver has given up on them anyway.
    pub max_age: Duration,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            // About 5 s of 720p at 2 Mbit/s, and several key pictures.
            max_packets: 1024,
            max_age: Duration::from_secs(1),
        }
    }
}

/// Why a NACKed packet is not re-sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Never sent, or already overwritten by newer packets.
    Unknown,
    /// Sent longer than `max_age` ago.
    TooOld,
    /// Re-sent less than the guard time ago.
    TooSoon,
}

#[derive(Debug)]
struct Slot {
    seq: u16,
    valid: bool,
    sent_at: Instant,
    resent_at: Option<Instant>,
    resends: u32,
    data: Vec<u8>,
}

/// Sent packets by sequence number; see the module documentation.
#[derive(Debug)]
pub struct SendHistory {
    cfg: HistoryConfig,
    slots: Vec<Slot>,
    mask: usize,
    /// Share of recent packets the receiver asked for (see [`Self::nacked_share`]).
    nacked_share: f64,
}

/// Packets over which [`SendHistory::nacked_share`] averages (an exponential window).
const SHARE_WINDOW: f64 = 256.0;

impl SendHistory {
    /// An empty history (slot buffers are allocated as packets arrive).
    pub fn new(cfg: HistoryConfig, now: Instant) -> Self {
        let n = cfg.max_packets.clamp(64, 32768).next_power_of_two();
        SendHistory {
            cfg: HistoryConfig {
                max_packets: n,
                ..cfg
            },
            slots: (0..n)
                .map(|_| Slot {
                    seq: 0,
                    valid: false,
                    sent_at: now,
                    resent_at: None,
                    resends: 0,
                    data: Vec::new(),
                })
                .collect(),
            mask: n - 1,
            nacked_share: 0.0,
        }
    }

    /// Packets the ring holds.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// The configuration in use (`max_packets` as rounded).
    #[cfg(any(test, feature = "_internals"))]
    pub fn config(&self) -> HistoryConfig {
        self.cfg
    }

    /// The buffer to write packet `seq` into, emptied; it replaces whatever held the slot.
    pub fn store(&mut self, seq: u16, now: Instant) -> &mut Vec<u8> {
        let slot = &mut self.slots[usize::from(seq) & self.mask];
        slot.seq = seq;
        slot.valid = true;
        slot.sent_at = now;
        slot.resent_at = None;
        slot.resends = 0;
        slot.data.clear();
        self.nacked_share *= 1.0 - 1.0 / SHARE_WINDOW;
        &mut slot.data
    }

    /// Packet `seq` as stored, whatever its age.
    pub fn get(&self, seq: u16) -> Option<&[u8]> {
        let slot = &self.slots[usize::from(seq) & self.mask];
        (slot.valid && slot.seq == seq).then_some(slot.data.as_slice())
    }

    /// Updates the time packet `seq` actually left (the pacer may have held it).
    pub fn mark_sent(&mut self, seq: u16, now: Instant) {
        let slot = &mut self.slots[usize::from(seq) & self.mask];
        if slot.valid && slot.seq == seq {
            slot.sent_at = now;
        }
    }

    /// Checks whether packet `seq` may be re-sent at `now` (known, young enough, not re-sent
    /// within `guard`) and returns its length; [`Self::mark_resent`] records the resend.
    pub fn check_resend(&self, seq: u16, now: Instant, guard: Duration) -> Result<usize, Refusal> {
        let slot = &self.slots[usize::from(seq) & self.mask];
        if !slot.valid || slot.seq != seq {
            return Err(Refusal::Unknown);
        }
        if now.saturating_duration_since(slot.sent_at) > self.cfg.max_age {
            return Err(Refusal::TooOld);
        }
        if slot
            .resent_at
            .is_some_and(|t| now.saturating_duration_since(t) < guard)
        {
            return Err(Refusal::TooSoon);
        }
        Ok(slot.data.len())
    }

    /// Records that packet `seq` was queued for a resend at `now`.
    pub fn mark_resent(&mut self, seq: u16, now: Instant) {
        let slot = &mut self.slots[usize::from(seq) & self.mask];
        if slot.valid && slot.seq == seq {
            if slot.resends == 0 {
                self.nacked_share += 1.0 / SHARE_WINDOW;
            }
            slot.resent_at = Some(now);
            slot.resends += 1;
        }
    }

    /// The share of the last few hundred packets that the receiver asked for at least once: the
    /// loss rate of the path towards it, as the sender sees it (RTCP's fraction lost counts a
    /// repaired packet as received, so it says little while repairs work).
    pub fn nacked_share(&self) -> f64 {
        self.nacked_share.min(1.0)
    }

    /// How often packet `seq` was re-sent.
    pub fn resends(&self, seq: u16) -> u32 {
        let slot = &self.slots[usize::from(seq) & self.mask];
        if slot.valid && slot.seq == seq {
            slot.resends
        } else {
            0
        }
    }
}

/// How much retransmission a sender allows itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetransmitLimits {
    /// Retransmissions may use up to this share of the stream's recent rate...
    pub share_of_rate: f64,
    /// ...but always at least this many bytes per second (a stream that just started has no rate).
    pub min_rate: f64,
    /// The bucket holds this much time's worth of that rate, so a burst of losses (a key picture
    /// hit hard) is answered at once.
    pub burst_time: Duration,
    /// And at least this many bytes.
    pub min_burst: f64,
    /// Copies sent of a packet the receiver asks for again (its first repair, or the NACK,
    /// was lost): a third round trip is what makes a picture very late on a lossy path, and
    /// a packet asked for twice is exactly where the path is losing.
    pub repeat_copies: u8,
    /// When at least this share of recent packets was asked for (the path loses that much),
    /// the first repair goes out in `repeat_copies` copies too: each repair is lost as often as
    /// any packet, and a lost repair costs its picture another round trip. 1.0 or more: never.
    pub copy_first_above: f64,
}

impl Default for RetransmitLimits {
    fn default() -> Self {
        RetransmitLimits {
            share_of_rate: 0.5,
            min_rate: 64_000.0,
            burst_time: Duration::from_millis(500),
            min_burst: 64_000.0,
            repeat_copies: 2,
            copy_first_above: 0.02,
        }
    }
}

/// A token bucket for retransmitted bytes; see the module documentation.
#[derive(Debug, Clone)]
pub struct RetransmitLimiter {
    limits: RetransmitLimits,
    tokens: f64,
    last: Instant,
}

impl RetransmitLimiter {
    /// A full bucket at `now`.
    pub fn new(limits: RetransmitLimits, now: Instant) -> Self {
        RetransmitLimiter {
            tokens: limits.min_burst,
            limits,
            last: now,
        }
    }

    /// The limits it applies.
    pub fn limits(&self) -> RetransmitLimits {
        self.limits
    }

    /// Takes `bytes` from the bucket if there are enough, given the stream's recent media rate
    /// (bytes per second).
    pub fn try_take(&mut self, now: Instant, bytes: usize, media_rate: f64) -> bool {
        let rate = (media_rate * self.limits.share_of_rate).max(self.limits.min_rate);
        let depth = (rate * self.limits.burst_time.as_secs_f64()).max(self.limits.min_burst);
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + rate * dt).min(depth);
        if self.tokens >= bytes as f64 {
            self.tokens -= bytes as f64;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn stores_and_finds_by_sequence_number_across_the_wrap() {
        let t = Instant::now();
        let mut h = SendHistory::new(
            HistoryConfig {
                max_packets: 100,
                max_age: ms(1000),
            },
            t,
        );
        assert_eq!(h.capacity(), 128);
        for seq in (65500u16..=65535).chain(0..10) {
            h.store(seq, t).extend_from_slice(&seq.to_be_bytes());
        }
        assert_eq!(h.get(65535), Some(&[0xff, 0xff][..]));
        assert_eq!(h.get(3), Some(&[0, 3][..]));
        assert_eq!(h.get(11), None);
        // 128 further packets overwrite them all.
        for seq in 10u16..138 {
            h.store(seq, t);
        }
        assert_eq!(h.get(65535), None);
        assert_eq!(h.check_resend(3, t, ms(10)), Err(Refusal::Unknown));
    }

    #[test]
    fn resend_checks_age_and_guard() {
        let t = Instant::now();
        let mut h = SendHistory::new(HistoryConfig::default(), t);
        h.store(5, t).extend_from_slice(&[1, 2, 3]);
        h.mark_sent(5, t + ms(10));
        assert_eq!(h.check_resend(5, t + ms(20), ms(30)), Ok(3));
        h.mark_resent(5, t + ms(20));
        assert_eq!(h.resends(5), 1);
        assert_eq!(h.check_resend(5, t + ms(40), ms(30)), Err(Refusal::TooSoon));
        assert_eq!(h.check_resend(5, t + ms(50), ms(30)), Ok(3));
        assert_eq!(
            h.check_resend(5, t + ms(1011), ms(30)),
            Err(Refusal::TooOld)
        );
        assert_eq!(h.resends(6), 0);
    }

    #[test]
    fn storing_reuses_the_slot_buffer() {
        let t = Instant::now();
        let mut h = SendHistory::new(HistoryConfig::default(), t);
        h.store(1, t).extend_from_slice(&[0; 1200]);
        let cap = h.capacity();
        let ptr = h.get(1).unwrap().as_ptr();
        let buf = h.store(1 + cap as u16, t);
        assert!(buf.is_empty() && buf.capacity() >= 1200);
        assert_eq!(buf.as_ptr(), ptr);
    }

    #[test]
    fn limiter_bounds_a_nack_storm() {
        let t = Instant::now();
        let limits = RetransmitLimits::default();
        let mut l = RetransmitLimiter::new(limits, t);
        // 250 kB/s of media: the budget is 125 kB/s with a 62.5 kB bucket (min 64 kB).
        let media = 250_000.0;
        let mut sent = 0usize;
        for i in 0..10_000u64 {
            // A NACK for 1200 bytes every 100 µs for one second: 12 MB/s asked.
            if l.try_take(t + Duration::from_micros(i * 100), 1200, media) {
                sent += 1200;
            }
        }
        assert!(sent <= 64_000 + 125_000 + 1200, "{sent}");
        assert!(sent >= 125_000, "{sent}");
    }

    #[test]
    fn limiter_floor_for_a_stream_without_rate() {
        let t = Instant::now();
        let mut l = RetransmitLimiter::new(RetransmitLimits::default(), t);
        let n = (0..100).filter(|_| l.try_take(t, 1200, 0.0)).count();
        assert_eq!(n, 53);
        assert!(!l.try_take(t + ms(10), 1200, 0.0));
        assert!(l.try_take(t + ms(30), 1200, 0.0));
    }
}
