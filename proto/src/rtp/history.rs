//! The packets a video sender sent recently, kept so that NACKed ones can be sent again, and the
//! limits that stop NACKs from multiplying traffic.
//!
//! [`SendHistory`] is a queue of the packets sent last, in sequence order, found by their
//! sequence number's distance from the oldest. It holds what a repair can still use and no more:
//! packets older than `max_age` (a NACK for them is refused anyway) leave it, and so does the
//! oldest packet when it holds `max_packets` or `max_bytes`. Its memory therefore follows the
//! stream's rate (about a second of it), not the worst case: a 300 kbit/s stream keeps some forty
//! packets, not a thousand. Packets leave from the front, each buffer goes to a short spare list
//! that the next packet takes, so a steady sender stores packets without allocating; when the
//! sender goes quiet the history empties and gives its memory back.
//!
//! [`RetransmitLimiter`] bounds what NACKs can make us send: a packet is not re-sent again within
//! a guard time (about half an RTT: a second NACK that soon was sent before our first answer could
//! arrive), and all retransmissions together draw from a token bucket filled at a share of the
//! stream's recent rate. A storm of NACKs therefore costs at most that share.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::pool::BufPool;

/// How much history a sender keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryConfig {
    /// Packets kept at most (taken as at least 64, at most 32768).
    pub max_packets: usize,
    /// Older packets are not re-sent: the receiver has given up on them anyway.
    pub max_age: Duration,
    /// Bytes of sent packets kept at most (taken as at least 64 KiB). Packets still waiting in
    /// the pacer are never dropped for it, so a picture larger than this still goes out whole.
    pub max_bytes: usize,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            // The count and byte caps only matter above 8 Mbit/s (1,024 full packets): below, a
            // second's worth of packets is less, and age decides.
            max_packets: 1024,
            max_age: Duration::from_secs(1),
            max_bytes: 1 << 20,
        }
    }
}

/// Why a NACKed packet is not re-sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Never sent, or already dropped from the history (too old, or pushed out by newer packets).
    Unknown,
    /// Sent longer than `max_age` ago.
    TooOld,
    /// Re-sent less than the guard time ago.
    TooSoon,
}

#[derive(Debug)]
struct Entry {
    /// False for a sequence number skipped (never stored).
    valid: bool,
    /// The pacer has let it out (until then it must stay: the pacer refers to it by number).
    sent: bool,
    sent_at: Instant,
    resent_at: Option<Instant>,
    resends: u32,
    data: Vec<u8>,
}

/// Sent packets by sequence number; see the module documentation.
#[derive(Debug)]
pub struct SendHistory {
    cfg: HistoryConfig,
    /// Consecutive sequence numbers from `first`, oldest at the front.
    entries: VecDeque<Entry>,
    first: u16,
    /// Bytes in `entries`.
    bytes: usize,
    /// Buffers of packets that left, for the next ones.
    spare: BufPool,
    /// Share of recent packets the receiver asked for (see [`Self::nacked_share`]).
    nacked_share: f64,
}

/// Packets over which [`SendHistory::nacked_share`] averages (an exponential window).
const SHARE_WINDOW: f64 = 256.0;

/// A packet stays this long past `max_age`, so that a repair queued in the pacer just before its
/// packet turned too old still finds it when the pacer lets it out.
const AGE_GRACE: Duration = Duration::from_millis(200);

/// Buffers kept for reuse: a picture's worth of packets arriving at once allocates, a steady
/// stream does not.
const MAX_SPARE: usize = 16;

/// Skipped sequence numbers bridged with empty entries; a larger jump starts the history over.
const MAX_SKIP: usize = 64;

impl SendHistory {
    /// An empty history (entries and their buffers are allocated as packets arrive).
    pub fn new(cfg: HistoryConfig, _now: Instant) -> Self {
        SendHistory {
            cfg: HistoryConfig {
                max_packets: cfg.max_packets.clamp(64, 32768),
                max_bytes: cfg.max_bytes.max(64 * 1024),
                ..cfg
            },
            entries: VecDeque::new(),
            first: 0,
            bytes: 0,
            spare: BufPool::new(MAX_SPARE),
            nacked_share: 0.0,
        }
    }

    /// Packets the history may hold (`max_packets` as taken): the pacer must let a packet out
    /// before this many newer ones are stored.
    pub fn capacity(&self) -> usize {
        self.cfg.max_packets
    }

    /// The configuration in use (`max_packets` and `max_bytes` as taken).
    #[cfg(any(test, feature = "_internals"))]
    pub fn config(&self) -> HistoryConfig {
        self.cfg
    }

    /// Packets held now.
    #[cfg(any(test, feature = "_internals"))]
    pub fn packets(&self) -> usize {
        self.entries.iter().filter(|e| e.valid).count()
    }

    /// Bytes of the packets held now.
    #[cfg(any(test, feature = "_internals"))]
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Heap bytes the history holds, spare buffers and queue included.
    #[cfg(any(test, feature = "_internals"))]
    pub fn allocated(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<Entry>()
            + self
                .entries
                .iter()
                .map(|e| e.data.capacity())
                .sum::<usize>()
            + self.spare.bytes()
    }

    fn index(&self, seq: u16) -> Option<usize> {
        let i = usize::from(seq.wrapping_sub(self.first));
        (i < self.entries.len()).then_some(i)
    }

    fn entry(&self, seq: u16) -> Option<&Entry> {
        self.index(seq)
            .map(|i| &self.entries[i])
            .filter(|e| e.valid)
    }

    fn entry_mut(&mut self, seq: u16) -> Option<&mut Entry> {
        self.index(seq)
            .map(|i| &mut self.entries[i])
            .filter(|e| e.valid)
    }

    fn pop_front(&mut self) {
        if let Some(e) = self.entries.pop_front() {
            self.first = self.first.wrapping_add(1);
            self.bytes -= e.data.len();
            self.spare.give(e.data);
        }
    }

    /// Drops the packets that are too old to be re-sent (once the pacer let them out). When
    /// nothing is left, the queue and the spare buffers are freed too: an idle sender holds no
    /// packet memory.
    pub fn expire(&mut self, now: Instant) {
        self.spare.trim(now);
        let keep = self.cfg.max_age + AGE_GRACE;
        while let Some(e) = self.entries.front() {
            let old = now.saturating_duration_since(e.sent_at) > keep;
            if e.valid && !(e.sent && old) {
                break;
            }
            self.pop_front();
        }
        if self.entries.is_empty() && (self.entries.capacity() > 0 || !self.spare.is_empty()) {
            self.entries = VecDeque::new();
            self.spare = BufPool::new(MAX_SPARE);
        }
    }

    /// Drops the oldest packets while the history holds more than `max_bytes` (sent ones only).
    fn enforce_byte_cap(&mut self) {
        while self.bytes > self.cfg.max_bytes {
            match self.entries.front() {
                Some(e) if e.sent || !e.valid => self.pop_front(),
                _ => break,
            }
        }
    }

    fn push_entry(&mut self, valid: bool, now: Instant) {
        while self.entries.len() >= self.cfg.max_packets {
            self.pop_front();
        }
        let data = if valid { self.spare.take() } else { Vec::new() };
        self.entries.push_back(Entry {
            valid,
            sent: !valid,
            sent_at: now,
            resent_at: None,
            resends: 0,
            data,
        });
    }

    /// Stores packet `seq`, written by `write` into an empty buffer (the oldest packets leave
    /// first, see the module documentation), and returns its length. Sequence numbers are
    /// expected in order: one already held is replaced, a jump of more than a few dozen starts
    /// the history over.
    pub fn store(&mut self, seq: u16, now: Instant, write: impl FnOnce(&mut Vec<u8>)) -> usize {
        self.expire(now);
        if self.index(seq).is_none() {
            let next = self.first.wrapping_add(self.entries.len() as u16);
            let skip = usize::from(seq.wrapping_sub(next));
            if self.entries.is_empty() || skip > MAX_SKIP {
                while !self.entries.is_empty() {
                    self.pop_front();
                }
                self.first = seq;
            } else {
                for _ in 0..skip {
                    self.push_entry(false, now);
                }
            }
            self.push_entry(true, now);
            if self.entries.len() == 1 {
                self.first = seq;
            }
        }
        self.nacked_share *= 1.0 - 1.0 / SHARE_WINDOW;
        let i = usize::from(seq.wrapping_sub(self.first));
        let e = &mut self.entries[i];
        self.bytes -= e.data.len();
        e.valid = true;
        e.sent = false;
        e.sent_at = now;
        e.resent_at = None;
        e.resends = 0;
        e.data.clear();
        write(&mut e.data);
        let len = e.data.len();
        self.bytes += len;
        self.enforce_byte_cap();
        len
    }

    /// Packet `seq` as stored, whatever its age.
    pub fn get(&self, seq: u16) -> Option<&[u8]> {
        self.entry(seq).map(|e| e.data.as_slice())
    }

    /// Whether packet `seq` is kept and has left (not still waiting in the pacer).
    pub fn is_sent(&self, seq: u16) -> bool {
        self.entry(seq).is_some_and(|e| e.sent)
    }

    /// Updates the time packet `seq` actually left (the pacer may have held it).
    pub fn mark_sent(&mut self, seq: u16, now: Instant) {
        if let Some(e) = self.entry_mut(seq) {
            e.sent = true;
            e.sent_at = now;
        }
    }

    /// Checks whether packet `seq` may be re-sent at `now` (known, young enough, not re-sent
    /// within `guard`) and returns its length; [`Self::mark_resent`] records the resend.
    pub fn check_resend(&self, seq: u16, now: Instant, guard: Duration) -> Result<usize, Refusal> {
        let Some(e) = self.entry(seq) else {
            return Err(Refusal::Unknown);
        };
        if now.saturating_duration_since(e.sent_at) > self.cfg.max_age {
            return Err(Refusal::TooOld);
        }
        if e.resent_at
            .is_some_and(|t| now.saturating_duration_since(t) < guard)
        {
            return Err(Refusal::TooSoon);
        }
        Ok(e.data.len())
    }

    /// Records that packet `seq` was queued for a resend at `now`.
    pub fn mark_resent(&mut self, seq: u16, now: Instant) {
        let mut first = false;
        if let Some(e) = self.entry_mut(seq) {
            first = e.resends == 0;
            e.resent_at = Some(now);
            e.resends += 1;
        }
        if first {
            self.nacked_share += 1.0 / SHARE_WINDOW;
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
        self.entry(seq).map_or(0, |e| e.resends)
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

    fn put(h: &mut SendHistory, seq: u16, t: Instant, bytes: &[u8]) {
        h.store(seq, t, |b| b.extend_from_slice(bytes));
    }

    #[test]
    fn stores_and_finds_by_sequence_number_across_the_wrap() {
        let t = Instant::now();
        let mut h = SendHistory::new(
            HistoryConfig {
                max_packets: 100,
                ..HistoryConfig::default()
            },
            t,
        );
        assert_eq!(h.capacity(), 100);
        for seq in (65500u16..=65535).chain(0..10) {
            put(&mut h, seq, t, &seq.to_be_bytes());
            h.mark_sent(seq, t);
        }
        assert_eq!(h.get(65535), Some(&[0xff, 0xff][..]));
        assert_eq!(h.get(3), Some(&[0, 3][..]));
        assert_eq!(h.get(11), None);
        assert_eq!(h.get(65499), None);
        // 100 further packets push them all out.
        for seq in 10u16..110 {
            put(&mut h, seq, t, &[]);
        }
        assert_eq!(h.packets(), 100);
        assert_eq!(h.get(65535), None);
        assert_eq!(h.check_resend(3, t, ms(10)), Err(Refusal::Unknown));
        assert_eq!(h.check_resend(10, t, ms(10)), Ok(0));
    }

    #[test]
    fn resend_checks_age_and_guard() {
        let t = Instant::now();
        let mut h = SendHistory::new(HistoryConfig::default(), t);
        put(&mut h, 5, t, &[1, 2, 3]);
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
    fn storing_reuses_the_buffers_of_packets_that_left() {
        let t = Instant::now();
        let mut h = SendHistory::new(
            HistoryConfig {
                max_packets: 64,
                ..HistoryConfig::default()
            },
            t,
        );
        put(&mut h, 1, t, &[0; 1200]);
        h.mark_sent(1, t);
        let ptr = h.get(1).unwrap().as_ptr();
        for seq in 2..=64 {
            put(&mut h, seq, t, &[]);
        }
        // Packet 1 leaves for the 65th, which writes into its buffer.
        put(&mut h, 65, t, &[9; 1000]);
        assert_eq!(h.get(1), None);
        assert_eq!(h.get(65).unwrap().as_ptr(), ptr);
    }

    #[test]
    fn a_skipped_sequence_number_is_unknown_and_a_jump_starts_over() {
        let t = Instant::now();
        let mut h = SendHistory::new(HistoryConfig::default(), t);
        put(&mut h, 10, t, &[1]);
        put(&mut h, 13, t, &[4]);
        assert_eq!(h.get(10), Some(&[1][..]));
        assert_eq!(h.get(11), None);
        assert_eq!(h.check_resend(12, t, ms(10)), Err(Refusal::Unknown));
        assert_eq!(h.get(13), Some(&[4][..]));
        put(&mut h, 30_000, t, &[7]);
        assert_eq!(h.get(10), None);
        assert_eq!(h.get(13), None);
        assert_eq!(h.get(30_000), Some(&[7][..]));
        assert_eq!(h.packets(), 1);
    }

    #[test]
    fn history_follows_the_rate_and_empties_when_idle() {
        // 45 packets of 1,200 bytes a second (a 300 kbit/s picture stream) for 60 s: the history
        // holds about a second of them, never the 1,024 its count cap allows.
        let t = Instant::now();
        let mut h = SendHistory::new(HistoryConfig::default(), t);
        let mut most = 0;
        for i in 0..45 * 60u32 {
            let now = t + Duration::from_micros(u64::from(i) * 22_222);
            put(&mut h, i as u16, now, &[0; 1200]);
            h.mark_sent(i as u16, now);
            most = most.max(h.allocated());
            assert!(h.packets() <= 45 * 2, "{}", h.packets());
        }
        assert!(most < 200 * 1024, "{most}");
        // The newest packet is still there for a repair; the first long gone.
        let last = (45 * 60 - 1) as u16;
        let end = t + Duration::from_micros(u64::from(last) * 22_222);
        assert_eq!(h.check_resend(last, end, ms(10)), Ok(1200));
        assert_eq!(h.get(0), None);
        // Quiet for two seconds: everything goes, memory included.
        h.expire(end + Duration::from_secs(2));
        assert_eq!(h.packets(), 0);
        assert_eq!(h.allocated(), 0);
    }

    #[test]
    fn history_never_exceeds_its_byte_cap_but_keeps_what_the_pacer_holds() {
        let t = Instant::now();
        let cap = 100 * 1024;
        let mut h = SendHistory::new(
            HistoryConfig {
                max_bytes: cap,
                ..HistoryConfig::default()
            },
            t,
        );
        assert_eq!(h.config().max_bytes, cap);
        // Sent packets: the byte cap holds at every step.
        for seq in 0..500u16 {
            put(&mut h, seq, t, &[1; 1200]);
            h.mark_sent(seq, t);
            assert!(h.bytes() <= cap, "{} at {seq}", h.bytes());
        }
        assert_eq!(h.packets(), cap / 1200);
        assert!(h.get(499).is_some());
        // A picture bigger than the cap, all of it still in the pacer: none of it may go.
        for seq in 500..700u16 {
            put(&mut h, seq, t, &[2; 1200]);
        }
        assert!((500..700).all(|s| h.get(s).is_some()));
        assert!(h.get(499).is_none());
        // Once sent, the next packet brings the history back under the cap.
        for seq in 500..700u16 {
            h.mark_sent(seq, t);
        }
        put(&mut h, 700, t, &[3; 1200]);
        h.mark_sent(700, t);
        assert!(h.bytes() <= cap, "{}", h.bytes());
        assert!(h.get(700).is_some());
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
