//! What the commands that measure media (`demo`, `bench`) share: the test tone, the stamp a
//! picture carries (who sent it, its number and when), and latency percentiles.

/// 20 ms of a 440 Hz tone at `rate`, continuing from sample `n`.
pub fn tone(n: &mut u64, rate: u32) -> Vec<i16> {
    (0..rate / 50)
        .map(|_| {
            let t = *n as f64 / f64::from(rate);
            *n += 1;
            (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16
        })
        .collect()
}

/// What a picture says about itself in its last [`Stamp::LEN`] bytes: the sending session's
/// number, the picture's number in that session and when it was handed to `send_video`
/// (nanoseconds since an epoch both ends share: in-process, one `Instant`; through an echo, our
/// own). Written as nibbles `0x10..=0x1f` after a two-byte mark, so the stamp holds no zero byte
/// and can never form an H.264 start code inside the picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub session: u32,
    pub seq: u32,
    pub sent_ns: u64,
}

const MARK: [u8; 2] = *b"RK";

impl Stamp {
    /// Bytes a stamp takes at the end of a picture.
    pub const LEN: usize = MARK.len() + 2 * (4 + 4 + 8);

    /// Overwrites the last [`Stamp::LEN`] bytes of `picture` (which must be longer than that).
    pub fn write(&self, picture: &mut [u8]) {
        let at = picture.len() - Self::LEN;
        let out = &mut picture[at..];
        out[..2].copy_from_slice(&MARK);
        let mut raw = [0u8; 16];
        raw[..4].copy_from_slice(&self.session.to_be_bytes());
        raw[4..8].copy_from_slice(&self.seq.to_be_bytes());
        raw[8..].copy_from_slice(&self.sent_ns.to_be_bytes());
        for (i, b) in raw.iter().enumerate() {
            out[2 + 2 * i] = 0x10 | (b >> 4);
            out[3 + 2 * i] = 0x10 | (b & 0x0f);
        }
    }

    /// The stamp at the end of `picture`, if it carries one intact.
    pub fn read(picture: &[u8]) -> Option<Stamp> {
        let at = picture.len().checked_sub(Self::LEN)?;
        let s = &picture[at..];
        if s[..2] != MARK {
            return None;
        }
        let mut raw = [0u8; 16];
        for (i, r) in raw.iter_mut().enumerate() {
            let (hi, lo) = (s[2 + 2 * i], s[3 + 2 * i]);
            if hi & 0xf0 != 0x10 || lo & 0xf0 != 0x10 {
                return None;
            }
            *r = (hi & 0x0f) << 4 | (lo & 0x0f);
        }
        let u32_at = |i: usize| u32::from_be_bytes(raw[i..i + 4].try_into().expect("4 bytes"));
        Some(Stamp {
            session: u32_at(0),
            seq: u32_at(4),
            sent_ns: u64::from_be_bytes(raw[8..].try_into().expect("8 bytes")),
        })
    }
}

/// Latencies in milliseconds and their percentiles, in a histogram of fixed size (a run of
/// hours keeps no list of samples): 1 µs buckets below 1 ms, then three significant digits
/// (under 1 % apart) up to 1,000 s; the maximum is kept exactly.
#[derive(Debug, Default, Clone)]
pub struct Latencies {
    /// Samples per bucket; empty until the first sample.
    counts: Vec<u64>,
    total: u64,
    max_ms: f64,
}

/// Buckets of 1 µs below this many µs.
const LINEAR_US: u64 = 1000;
/// Buckets per decade above: 100..=999 times a power of ten.
const PER_DECADE: u64 = 900;
/// Decades above 1 ms (to 1,000 s); longer goes into the last bucket.
const DECADES: u64 = 6;

fn bucket(us: u64) -> usize {
    if us < LINEAR_US {
        return us as usize;
    }
    let (mut v, mut e) = (us, 0u64);
    while v >= 1000 {
        v /= 10;
        e += 1;
    }
    if e > DECADES {
        return (LINEAR_US + DECADES * PER_DECADE - 1) as usize;
    }
    (LINEAR_US + (e - 1) * PER_DECADE + (v - 100)) as usize
}

/// The smallest value in µs that falls into bucket `b`.
fn bucket_floor(b: usize) -> u64 {
    let b = b as u64;
    if b < LINEAR_US {
        return b;
    }
    let k = b - LINEAR_US;
    (k % PER_DECADE + 100) * 10u64.pow((k / PER_DECADE + 1) as u32)
}

impl Latencies {
    pub fn push(&mut self, ms: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; (LINEAR_US + DECADES * PER_DECADE) as usize];
        }
        let ms = ms.max(0.0);
        self.counts[bucket((ms * 1000.0) as u64)] += 1;
        self.total += 1;
        self.max_ms = self.max_ms.max(ms);
    }

    /// The `q` quantile (0.5: the median, 1.0: the maximum), nearest rank, to the floor of its
    /// bucket; `None` without samples.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        if q >= 1.0 {
            return Some(self.max_ms);
        }
        let rank = ((q.max(0.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (b, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some((bucket_floor(b) as f64 / 1000.0).min(self.max_ms));
            }
        }
        Some(self.max_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_reads_back_and_holds_no_zero() {
        let s = Stamp {
            session: 7,
            seq: 0x0100_00ff,
            sent_ns: 0x00ff_0000_1234_5678,
        };
        let mut pic = vec![0xaa; 100];
        s.write(&mut pic);
        assert_eq!(Stamp::read(&pic), Some(s));
        assert!(pic[100 - Stamp::LEN..].iter().all(|&b| b != 0));
        pic[99] = 0;
        assert_eq!(Stamp::read(&pic), None);
        assert_eq!(Stamp::read(&[1, 2, 3]), None);
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let mut l = Latencies::default();
        assert_eq!(l.quantile(0.5), None);
        for x in (1..=100).rev() {
            l.push(f64::from(x));
        }
        assert_eq!(l.quantile(0.5), Some(50.0));
        assert_eq!(l.quantile(0.99), Some(99.0));
        assert_eq!(l.quantile(1.0), Some(100.0));
        assert_eq!(l.quantile(0.0), Some(1.0));
        // Below 1 ms to the µs, above to three digits; the maximum exactly.
        let mut l = Latencies::default();
        for x in [0.1234, 0.5, 12.345, 12.349, 4321.0, 5e9] {
            l.push(x);
        }
        assert_eq!(l.quantile(1.0 / 6.0), Some(0.123));
        assert_eq!(l.quantile(0.5), Some(12.3));
        assert_eq!(l.quantile(0.66), Some(12.3));
        assert_eq!(l.quantile(0.8), Some(4320.0));
        assert_eq!(l.quantile(1.0), Some(5e9));
    }

    #[test]
    fn every_bucket_starts_where_the_last_ended() {
        for b in 1..(LINEAR_US + DECADES * PER_DECADE) as usize {
            let floor = bucket_floor(b);
            assert_eq!(bucket(floor), b);
            assert_eq!(bucket(floor - 1), b - 1);
        }
    }
}
