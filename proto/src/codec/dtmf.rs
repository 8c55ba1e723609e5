//! DTMF as RTP telephone events (RFC 4733).
//!
//! Each packet carries one 4-byte event payload:
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     event     |E|R| volume    |          duration             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! One key press is a series of packets that all carry the RTP timestamp of the moment the tone
//! began: the first with the marker bit, then updates whose duration grows, then the end packet
//! (E = 1), sent three times because it is the one that matters. [`DtmfSender`] plans that series;
//! [`DtmfReceiver`] turns received packets back into one [`DtmfEvent`] per key press. Both are pure:
//! the caller supplies the time and does the sending.

use std::collections::VecDeque;
use std::fmt;

use crate::frame::DtmfEvent;

/// Length of a telephone-event payload.
pub const TELEPHONE_EVENT_LEN: usize = 4;
/// Interval between the packets of one event, in milliseconds.
pub const DTMF_PACKET_INTERVAL_MS: u32 = 20;
/// How many times the end packet is sent.
pub const DTMF_END_PACKETS: usize = 3;
/// A volume of 10 means -10 dBm0, a common level for DTMF.
pub const DEFAULT_DTMF_VOLUME: u8 = 10;
/// How long a receiver waits after the last packet of an event before it reports the event
/// although no end packet arrived.
pub const DEFAULT_DTMF_END_TIMEOUT_MS: u64 = 500;

/// The event code of a DTMF digit: `0`-`9` → 0-9, `*` → 10, `#` → 11, `A`-`D` → 12-15 (`a`-`d`
/// accepted too).
pub fn digit_to_event(digit: char) -> Option<u8> {
    match digit {
        '0'..='9' => Some(digit as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        'A'..='D' => Some(digit as u8 - b'A' + 12),
        'a'..='d' => Some(digit as u8 - b'a' + 12),
        _ => None,
    }
}

/// The DTMF digit of an event code, or `None` for codes above 15 (other telephone events).
pub fn event_to_digit(event: u8) -> Option<char> {
    match event {
        0..=9 => Some(char::from(b'0' + event)),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some(char::from(b'A' + event - 12)),
        _ => None,
    }
}

/// Why a telephone event could not be read or planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DtmfError {
    /// The payload is shorter than the 4 bytes of an event.
    ShortPayload(usize),
    /// The character is not a DTMF digit.
    InvalidDigit(char),
    /// The volume does not fit 6 bits (0..=63).
    InvalidVolume(u8),
    /// The clock rate is zero.
    InvalidClockRate,
    /// The duration is zero, or longer than the 16-bit duration field can carry at this clock rate
    /// (`max_ms` is the longest that fits). Longer tones would need RFC 4733 segments, which we do
    /// not send.
    InvalidDuration {
        /// The duration asked for.
        duration_ms: u32,
        /// The longest duration that fits.
        max_ms: u32,
    },
}

impl fmt::Display for DtmfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DtmfError::ShortPayload(n) => {
                write!(f, "telephone-event payload of {n} bytes, 4 needed")
            }
            DtmfError::InvalidDigit(c) => write!(f, "{c:?} is not a DTMF digit (0-9, *, #, A-D)"),
            DtmfError::InvalidVolume(v) => write!(f, "DTMF volume {v} out of range 0..=63"),
            DtmfError::InvalidClockRate => f.write_str("DTMF clock rate must not be zero"),
            DtmfError::InvalidDuration {
                duration_ms,
                max_ms,
            } => write!(
                f,
                "DTMF duration {duration_ms} ms out of range 1..={max_ms} ms"
            ),
        }
    }
}

impl std::error::Error for DtmfError {}

/// One telephone-event payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// Event code (0-15 are DTMF digits).
    pub event: u8,
    /// E: this is the end of the event.
    pub end: bool,
    /// Power level as -dBm0, 0..=63.
    pub volume: u8,
    /// Duration so far, in RTP clock units since the event's timestamp.
    pub duration: u16,
}

impl TelephoneEvent {
    /// Reads the first 4 bytes of `payload`; the reserved bit is ignored and any further bytes are
    /// left to the caller.
    pub fn parse(payload: &[u8]) -> Result<TelephoneEvent, DtmfError> {
        if payload.len() < TELEPHONE_EVENT_LEN {
            return Err(DtmfError::ShortPayload(payload.len()));
        }
        Ok(TelephoneEvent {
            event: payload[0],
            end: payload[1] & 0x80 != 0,
            volume: payload[1] & 0x3f,
            duration: u16::from_be_bytes([payload[2], payload[3]]),
        })
    }

    /// The 4 payload bytes (reserved bit 0; the volume is masked to 6 bits).
    pub fn to_bytes(&self) -> [u8; TELEPHONE_EVENT_LEN] {
        let d = self.duration.to_be_bytes();
        let e = if self.end { 0x80 } else { 0 };
        [self.event, e | (self.volume & 0x3f), d[0], d[1]]
    }
}

/// One packet [`DtmfSender`] asks to be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfPacket {
    /// The RTP payload.
    pub payload: [u8; TELEPHONE_EVENT_LEN],
    /// The RTP marker bit (set on the first packet of the event only).
    pub marker: bool,
    /// True for the end packets (E bit set).
    pub end: bool,
    /// When to send it, in milliseconds after the first packet.
    pub send_offset_ms: u32,
    /// What to add to the event's RTP timestamp. Always 0: every packet of an event carries the
    /// timestamp of its start (we do not send multi-segment events).
    pub timestamp_offset: u32,
}

/// Plans the packets of one DTMF key press: a first packet with the marker bit, an update every
/// 20 ms with the duration so far, and the end packet three times, 20 ms apart.
///
/// A packet sent at `t` ms after the start reports the duration up to `t + 20` ms (the interval it
/// opens), so the first packet already says 20 ms and the last update falls one interval before the
/// end. Durations must fit the 16-bit field (65535 clock units, about 8.2 s at 8 kHz).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfSender {
    event: u8,
    volume: u8,
    total: u16,
    interval: u32,
    updates: u32,
}

impl DtmfSender {
    /// Plans `digit` held for `duration_ms` on an RTP clock of `clock_rate` Hz at `volume` (-dBm0).
    pub fn new(
        digit: char,
        duration_ms: u32,
        clock_rate: u32,
        volume: u8,
    ) -> Result<DtmfSender, DtmfError> {
        let event = digit_to_event(digit).ok_or(DtmfError::InvalidDigit(digit))?;
        if volume > 63 {
            return Err(DtmfError::InvalidVolume(volume));
        }
        if clock_rate == 0 {
            return Err(DtmfError::InvalidClockRate);
        }
        let max_ms = (u64::from(u16::MAX) * 1000 / u64::from(clock_rate)) as u32;
        let total = u64::from(duration_ms) * u64::from(clock_rate) / 1000;
        if duration_ms == 0 || total == 0 || total > u64::from(u16::MAX) {
            return Err(DtmfError::InvalidDuration {
                duration_ms,
                max_ms,
            });
        }
        let interval = (u64::from(clock_rate) * u64::from(DTMF_PACKET_INTERVAL_MS) / 1000).max(1);
        // Updates report interval, 2*interval, ... while that is short of the total; at least one.
        let updates = ((total - 1) / interval).max(1) as u32;
        Ok(DtmfSender {
            event,
            volume,
            total: total as u16,
            interval: interval as u32,
            updates,
        })
    }

    /// The event's full duration in RTP clock units (what the end packets carry).
    pub fn duration_samples(&self) -> u16 {
        self.total
    }

    /// Number of packets in the plan.
    pub fn packet_count(&self) -> usize {
        self.updates as usize + DTMF_END_PACKETS
    }

    /// The packets to send, in order.
    pub fn packets(&self) -> impl Iterator<Item = DtmfPacket> + '_ {
        (0..self.packet_count() as u32).map(move |i| {
            let end = i >= self.updates;
            let duration = if end {
                self.total
            } else {
                let d = u64::from(i + 1) * u64::from(self.interval);
                d.min(u64::from(self.total)) as u16
            };
            let ev = TelephoneEvent {
                event: self.event,
                end,
                volume: self.volume,
                duration,
            };
            DtmfPacket {
                payload: ev.to_bytes(),
                marker: i == 0,
                end,
                send_offset_ms: i * DTMF_PACKET_INTERVAL_MS,
                timestamp_offset: 0,
            }
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct Ongoing {
    timestamp: u32,
    digit: char,
    duration: u16,
    last_ms: u64,
}

/// How many recently finished events the receiver remembers, to ignore their late packets.
const ENDED_MEMORY: usize = 8;

/// Turns received telephone-event packets into one [`DtmfEvent`] per key press.
///
/// Packets of one event share an RTP timestamp. The event is reported on its first end packet;
/// repeated end packets and late packets of a reported event are ignored. If the end packets are
/// all lost, the event is reported by [`DtmfReceiver::poll`] once no packet has arrived for the
/// timeout, or as soon as a packet of a newer event arrives. Non-DTMF events (codes above 15) are
/// ignored.
#[derive(Debug, Clone)]
pub struct DtmfReceiver {
    clock_rate: u32,
    timeout_ms: u64,
    current: Option<Ongoing>,
    ended: [Option<u32>; ENDED_MEMORY],
    ended_next: usize,
    pending: VecDeque<DtmfEvent>,
}

impl DtmfReceiver {
    /// A receiver for an RTP clock of `clock_rate` Hz (0 is treated as 8000), with the default
    /// end timeout.
    pub fn new(clock_rate: u32) -> DtmfReceiver {
        DtmfReceiver {
            clock_rate: if clock_rate == 0 { 8000 } else { clock_rate },
            timeout_ms: DEFAULT_DTMF_END_TIMEOUT_MS,
            current: None,
            ended: [None; ENDED_MEMORY],
            ended_next: 0,
            pending: VecDeque::new(),
        }
    }

    /// Sets how long to wait for a missing end packet.
    pub fn with_end_timeout(mut self, timeout_ms: u64) -> DtmfReceiver {
        self.timeout_ms = timeout_ms;
        self
    }

    /// Feeds one packet: its RTP timestamp, payload, and the current time in ms. Returns the event
    /// this packet completes, if any. Rarely a packet completes two (it starts a new event while the
    /// previous one never ended, and is itself an end packet); the second is returned by
    /// [`Self::poll`], so call `poll` after `feed` until it returns `None`.
    pub fn feed(
        &mut self,
        timestamp: u32,
        payload: &[u8],
        now_ms: u64,
    ) -> Result<Option<DtmfEvent>, DtmfError> {
        let ev = TelephoneEvent::parse(payload)?;
        let Some(digit) = event_to_digit(ev.event) else {
            return Ok(None);
        };
        if self.ended.contains(&Some(timestamp)) {
            return Ok(self.pending.pop_front());
        }
        match self.current {
            Some(cur) if cur.timestamp == timestamp => {}
            Some(cur) => {
                // A newer event began before the old one's end arrived.
                self.report(cur, cur.duration);
                self.current = None;
            }
            None => {}
        }
        let cur = self.current.get_or_insert(Ongoing {
            timestamp,
            digit,
            duration: 0,
            last_ms: now_ms,
        });
        cur.duration = cur.duration.max(ev.duration);
        cur.last_ms = now_ms;
        if ev.end {
            let cur = *cur;
            let duration = if ev.duration > 0 {
                ev.duration
            } else {
                cur.duration
            };
            self.report(cur, duration);
            self.current = None;
        }
        Ok(self.pending.pop_front())
    }

    /// Returns an event that is ready: one left over from [`Self::feed`], or one whose end packets
    /// never came within the timeout of its last packet.
    pub fn poll(&mut self, now_ms: u64) -> Option<DtmfEvent> {
        if let Some(e) = self.pending.pop_front() {
            return Some(e);
        }
        let cur = self.current?;
        if now_ms.saturating_sub(cur.last_ms) >= self.timeout_ms {
            self.current = None;
            self.report(cur, cur.duration);
            return self.pending.pop_front();
        }
        None
    }

    /// When [`Self::poll`] next needs to be called, if an event is waiting for its end.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<u64> {
        if !self.pending.is_empty() {
            return Some(0);
        }
        self.current
            .map(|c| c.last_ms.saturating_add(self.timeout_ms))
    }

    /// Forgets all state (for example when the sender's SSRC changes).
    pub fn reset(&mut self) {
        self.current = None;
        self.ended = [None; ENDED_MEMORY];
        self.pending.clear();
    }

    fn report(&mut self, cur: Ongoing, duration: u16) {
        self.ended[self.ended_next] = Some(cur.timestamp);
        self.ended_next = (self.ended_next + 1) % ENDED_MEMORY;
        let duration_ms = (u64::from(duration) * 1000 / u64::from(self.clock_rate)) as u32;
        self.pending.push_back(DtmfEvent {
            digit: cur.digit,
            duration_ms,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digit_codes() {
        let all = "0123456789*#ABCD";
        for (code, d) in all.chars().enumerate() {
            assert_eq!(digit_to_event(d), Some(code as u8));
            assert_eq!(event_to_digit(code as u8), Some(d));
        }
        assert_eq!(digit_to_event('c'), Some(14));
        assert_eq!(digit_to_event('E'), None);
        assert_eq!(digit_to_event(' '), None);
        assert_eq!(event_to_digit(16), None);
        assert_eq!(event_to_digit(255), None);
    }

    #[test]
    fn payload_round_trip() {
        let e = TelephoneEvent {
            event: 11,
            end: true,
            volume: 63,
            duration: 0xabcd,
        };
        assert_eq!(e.to_bytes(), [11, 0xbf, 0xab, 0xcd]);
        assert_eq!(TelephoneEvent::parse(&e.to_bytes()), Ok(e));
        // Reserved bit ignored, trailing bytes tolerated.
        let p = TelephoneEvent::parse(&[5, 0x4a, 0x01, 0x40, 0xff]).unwrap();
        assert_eq!(
            p,
            TelephoneEvent {
                event: 5,
                end: false,
                volume: 10,
                duration: 320
            }
        );
    }

    #[test]
    fn short_payloads() {
        for n in 0..4 {
            assert_eq!(
                TelephoneEvent::parse(&[0u8; 4][..n]),
                Err(DtmfError::ShortPayload(n))
            );
        }
        let mut r = DtmfReceiver::new(8000);
        assert_eq!(r.feed(0, &[1, 2], 0), Err(DtmfError::ShortPayload(2)));
    }

    #[test]
    fn sender_sequence_shape() {
        let s = DtmfSender::new('5', 160, 8000, 10).unwrap();
        let p: Vec<_> = s.packets().collect();
        assert_eq!(s.duration_samples(), 1280);
        assert_eq!(p.len(), s.packet_count());
        // Updates at 0..=120 ms reporting 160..=1120, then three end packets of 1280.
        assert_eq!(p.len(), 7 + 3);
        for (i, pk) in p.iter().enumerate() {
            let ev = TelephoneEvent::parse(&pk.payload).unwrap();
            assert_eq!(ev.event, 5);
            assert_eq!(ev.volume, 10);
            assert_eq!(pk.marker, i == 0, "marker on the first packet only");
            assert_eq!(pk.timestamp_offset, 0, "same timestamp throughout");
            assert_eq!(pk.send_offset_ms, i as u32 * 20);
            assert_eq!(ev.end, i >= 7);
            assert_eq!(pk.end, ev.end);
            if i < 7 {
                assert_eq!(ev.duration, 160 * (i as u16 + 1));
            } else {
                assert_eq!(ev.duration, 1280);
            }
        }
        assert_eq!(p.iter().filter(|p| p.end).count(), 3);
    }

    #[test]
    fn sender_short_and_odd_durations() {
        // Shorter than one interval: one update, then the ends.
        let p: Vec<_> = DtmfSender::new('#', 10, 8000, 0)
            .unwrap()
            .packets()
            .collect();
        assert_eq!(p.len(), 4);
        assert!(p[0].marker && !p[0].end);
        assert_eq!(TelephoneEvent::parse(&p[0].payload).unwrap().duration, 80);
        assert!(p[1..].iter().all(|p| p.end && !p.marker));

        // Not a multiple of the interval: the durations still never exceed the total.
        let s = DtmfSender::new('D', 250, 8000, 5).unwrap();
        let durs: Vec<u16> = s
            .packets()
            .map(|p| TelephoneEvent::parse(&p.payload).unwrap().duration)
            .collect();
        assert_eq!(*durs.last().unwrap(), 2000);
        assert!(durs.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(durs.len(), 12 + 3);

        // Wideband clock.
        let s = DtmfSender::new('1', 100, 48000, 10).unwrap();
        assert_eq!(s.duration_samples(), 4800);
        let first = s.packets().next().unwrap();
        assert_eq!(TelephoneEvent::parse(&first.payload).unwrap().duration, 960);
    }

    #[test]
    fn sender_rejects_bad_arguments() {
        assert_eq!(
            DtmfSender::new('x', 100, 8000, 10),
            Err(DtmfError::InvalidDigit('x'))
        );
        assert_eq!(
            DtmfSender::new('1', 100, 8000, 64),
            Err(DtmfError::InvalidVolume(64))
        );
        assert_eq!(
            DtmfSender::new('1', 100, 0, 10),
            Err(DtmfError::InvalidClockRate)
        );
        assert!(matches!(
            DtmfSender::new('1', 0, 8000, 10),
            Err(DtmfError::InvalidDuration { .. })
        ));
        // 65535 samples at 8 kHz is 8191.875 ms.
        assert!(DtmfSender::new('1', 8191, 8000, 10).is_ok());
        let err = DtmfSender::new('1', 8192, 8000, 10).unwrap_err();
        assert_eq!(
            err,
            DtmfError::InvalidDuration {
                duration_ms: 8192,
                max_ms: 8191
            }
        );
        assert!(err.to_string().contains("8191"));
        assert!(DtmfSender::new('1', u32::MAX, 8000, 10).is_err());
    }

    #[test]
    fn receiver_reports_once_on_first_end() {
        let s = DtmfSender::new('7', 200, 8000, 10).unwrap();
        let mut r = DtmfReceiver::new(8000);
        let mut events = Vec::new();
        for p in s.packets() {
            if let Some(e) = r
                .feed(1000, &p.payload, u64::from(p.send_offset_ms))
                .unwrap()
            {
                events.push((p.send_offset_ms, e));
            }
            assert_eq!(r.poll(u64::from(p.send_offset_ms)), None);
        }
        // Retransmitted end packets, much later, are still ignored.
        let last = s.packets().last().unwrap();
        assert_eq!(r.feed(1000, &last.payload, 5000).unwrap(), None);
        assert_eq!(r.poll(10_000), None);
        assert_eq!(r.poll_timeout(), None);
        assert_eq!(
            events,
            vec![(
                180,
                DtmfEvent {
                    digit: '7',
                    duration_ms: 200
                }
            )]
        );
    }

    #[test]
    fn receiver_times_out_when_ends_are_lost() {
        let s = DtmfSender::new('*', 100, 8000, 10).unwrap();
        let mut r = DtmfReceiver::new(8000).with_end_timeout(300);
        for p in s.packets().filter(|p| !p.end) {
            assert_eq!(
                r.feed(42, &p.payload, u64::from(p.send_offset_ms)).unwrap(),
                None
            );
        }
        // Last update at 60 ms reported 80 ms.
        assert_eq!(r.poll_timeout(), Some(360));
        assert_eq!(r.poll(359), None);
        assert_eq!(
            r.poll(360),
            Some(DtmfEvent {
                digit: '*',
                duration_ms: 80
            })
        );
        assert_eq!(r.poll(1000), None);
        // A straggling end packet after the timeout does not report it again.
        let end = s.packets().last().unwrap();
        assert_eq!(r.feed(42, &end.payload, 1000).unwrap(), None);
    }

    #[test]
    fn receiver_new_event_flushes_unended_one() {
        let mut r = DtmfReceiver::new(8000);
        let upd = TelephoneEvent {
            event: 1,
            end: false,
            volume: 10,
            duration: 800,
        };
        assert_eq!(r.feed(0, &upd.to_bytes(), 0).unwrap(), None);
        // The next event arrives as a lone end packet: both events come out, oldest first.
        let end2 = TelephoneEvent {
            event: 2,
            end: true,
            volume: 10,
            duration: 400,
        };
        assert_eq!(
            r.feed(2000, &end2.to_bytes(), 250).unwrap(),
            Some(DtmfEvent {
                digit: '1',
                duration_ms: 100
            })
        );
        assert_eq!(r.poll_timeout(), Some(0));
        assert_eq!(
            r.poll(250),
            Some(DtmfEvent {
                digit: '2',
                duration_ms: 50
            })
        );
        assert_eq!(r.poll(250), None);
    }

    #[test]
    fn receiver_ignores_other_events_and_resets() {
        let mut r = DtmfReceiver::new(8000);
        let flash = TelephoneEvent {
            event: 16,
            end: true,
            volume: 10,
            duration: 800,
        };
        assert_eq!(r.feed(0, &flash.to_bytes(), 0).unwrap(), None);
        let upd = TelephoneEvent {
            event: 9,
            end: false,
            volume: 10,
            duration: 160,
        };
        r.feed(5, &upd.to_bytes(), 0).unwrap();
        r.reset();
        assert_eq!(r.poll(10_000), None);
        assert_eq!(r.poll_timeout(), None);
    }

    #[test]
    fn receiver_uses_longest_duration_when_end_says_zero() {
        let mut r = DtmfReceiver::new(8000);
        let upd = TelephoneEvent {
            event: 0,
            end: false,
            volume: 10,
            duration: 1600,
        };
        r.feed(7, &upd.to_bytes(), 0).unwrap();
        let end = TelephoneEvent {
            end: true,
            duration: 0,
            ..upd
        };
        assert_eq!(
            r.feed(7, &end.to_bytes(), 20).unwrap(),
            Some(DtmfEvent {
                digit: '0',
                duration_ms: 200
            })
        );
    }
}
