//! A streaming, band-limited sample-rate converter for mono 16-bit audio between the rates calls
//! use (8, 12, 16, 24, 32 and 48 kHz), block by block with its state carried across blocks.
//!
//! The conversion is by a rational factor L/M (16 → 48 kHz is 3/1, 48 → 32 kHz is 2/3): a
//! polyphase FIR filter does the work of "insert L−1 zeros, low-pass, keep every M-th sample"
//! without computing the samples that would be thrown away. The low-pass is a Kaiser-windowed
//! sinc designed for the lower of the two rates: flat (ripple well under 0.01 dB) up to 90 % of
//! its Nyquist frequency, at least [`STOPBAND_DB`] down from the Nyquist frequency on, so tones
//! that do not fit the lower rate are removed instead of folding back (aliases), and the copies
//! of the spectrum that upsampling creates (images) are removed too. `tests` measures both.
//!
//! Why not `rubato`: its synchronous FFT resampler, the one with a fixed ratio, delays by half
//! its FFT block, 10 ms for 20 ms blocks, and shrinking the block lowers its cut-off; a filter
//! designed for exactly the bands we need delays 2.9 ms (16 ↔ 48 kHz) to 5.9 ms (8 ↔ 16 kHz),
//! gives an exact number of output samples for every 20 ms block, and needs no dependency.
//!
//! The delay is a whole number of output samples ([`Resampler::latency_samples`]): the filter's
//! length is chosen so, which lets a caller line converted audio up exactly.

/// The rates between which [`Resampler`] converts, in Hz.
pub const RESAMPLER_RATES: [u32; 6] = [8_000, 12_000, 16_000, 24_000, 32_000, 48_000];

/// Attenuation of the filter's stop band, from the lower rate's Nyquist frequency up (design
/// target; the tests measure at least 60 dB on the actual 16-bit output).
pub const STOPBAND_DB: f64 = 75.0;

/// End of the pass band, as a fraction of the lower rate's Nyquist frequency.
pub const PASSBAND_EDGE: f64 = 0.9;

/// A rate the resampler does not convert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsupportedRate(pub u32);

impl std::fmt::Display for UnsupportedRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cannot resample at {} Hz; supported: 8000, 12000, 16000, 24000, 32000, 48000",
            self.0
        )
    }
}

impl std::error::Error for UnsupportedRate {}

/// Converts a mono stream from one rate to another, one block at a time.
#[derive(Debug, Clone)]
pub struct Resampler {
    from_hz: u32,
    to_hz: u32,
    /// Upsampling factor L: output rate / gcd.
    up: usize,
    /// Downsampling factor M: input rate / gcd.
    down: usize,
    /// Filter taps per phase, counted in input samples (K).
    taps: usize,
    /// `up` phases of `taps` coefficients each; within a phase, coefficient j multiplies the
    /// j-th of the K input samples ending at the current one (oldest first).
    coeffs: Vec<f32>,
    /// The last K−1 input samples, then the block being converted.
    buf: Vec<f32>,
    /// Where the next output falls, in units of 1/L input sample, counted from the first
    /// sample of the next block.
    next: usize,
    /// Delay from input to output, in output samples.
    latency: usize,
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The modified Bessel function of the first kind, order 0 (its series converges fast for the
/// arguments a Kaiser window uses, below 10).
fn bessel_i0(x: f64) -> f64 {
    let (mut sum, mut term) = (1.0, 1.0);
    let half = x / 2.0;
    for k in 1..64 {
        term *= (half / k as f64) * (half / k as f64);
        sum += term;
        if term < sum * 1e-17 {
            break;
        }
    }
    sum
}

impl Resampler {
    /// A converter from `from_hz` to `to_hz`, both from [`RESAMPLER_RATES`]. Equal rates copy
    /// the input through.
    pub fn new(from_hz: u32, to_hz: u32) -> Result<Self, UnsupportedRate> {
        for rate in [from_hz, to_hz] {
            if !RESAMPLER_RATES.contains(&rate) {
                return Err(UnsupportedRate(rate));
            }
        }
        let g = gcd(from_hz, to_hz);
        let (up, down) = ((to_hz / g) as usize, (from_hz / g) as usize);
        let mut r = Resampler {
            from_hz,
            to_hz,
            up,
            down,
            taps: 1,
            coeffs: vec![1.0],
            buf: Vec::new(),
            next: 0,
            latency: 0,
        };
        if from_hz != to_hz {
            r.design();
        }
        Ok(r)
    }

    /// Designs the low-pass (Kaiser-windowed sinc) at the upsampled rate and splits it into
    /// phases.
    fn design(&mut self) {
        let (l, m) = (self.up, self.down);
        let fast = f64::from(self.from_hz) * l as f64; // the upsampled rate
        let nyquist = f64::from(self.from_hz.min(self.to_hz)) / 2.0;
        let transition = (1.0 - PASSBAND_EDGE) * nyquist;
        let cutoff = (1.0 + PASSBAND_EDGE) / 2.0 * nyquist;
        // Kaiser's estimates of the window's shape and the length the attenuation needs.
        let beta = 0.1102 * (STOPBAND_DB - 8.7);
        let dw = 2.0 * std::f64::consts::PI * transition / fast;
        let needed = ((STOPBAND_DB - 8.0) / (2.285 * dw)).ceil() as usize + 1;
        // Length 2·M·d + 1 puts the filter's centre on an output sample: a delay of d outputs.
        let d = (needed - 1).div_ceil(2 * m);
        let len = 2 * m * d + 1;
        let centre = (m * d) as f64;
        let fc = cutoff / fast;
        let mut h: Vec<f64> = (0..len)
            .map(|n| {
                let x = n as f64 - centre;
                let sinc = if x == 0.0 {
                    2.0 * fc
                } else {
                    (2.0 * std::f64::consts::PI * fc * x).sin() / (std::f64::consts::PI * x)
                };
                let r = x / centre;
                sinc * bessel_i0(beta * (1.0 - r * r).max(0.0).sqrt()) / bessel_i0(beta)
            })
            .collect();
        // Unity gain at DC; the factor L makes up for the L−1 zeros between input samples.
        let sum: f64 = h.iter().sum();
        h.iter_mut().for_each(|c| *c *= l as f64 / sum);

        let taps = len.div_ceil(l);
        let mut coeffs = vec![0f32; l * taps];
        for p in 0..l {
            for j in 0..taps {
                // Tap j of phase p meets input i − (K−1−j), which sits p + L·(K−1−j) behind.
                let n = p + l * (taps - 1 - j);
                coeffs[p * taps + j] = h.get(n).copied().unwrap_or(0.0) as f32;
            }
        }
        self.taps = taps;
        self.coeffs = coeffs;
        self.latency = d;
        self.buf = vec![0.0; taps - 1];
    }

    /// The input rate in Hz.
    pub fn from_hz(&self) -> u32 {
        self.from_hz
    }

    /// The output rate in Hz.
    pub fn to_hz(&self) -> u32 {
        self.to_hz
    }

    /// The delay the conversion adds, in output samples: a tone's phase, or an impulse, comes
    /// out this many samples later than its time in the input.
    pub fn latency_samples(&self) -> usize {
        self.latency
    }

    /// The most samples one call with `input_len` samples appends (the exact count varies by at
    /// most one between calls when `input_len` is not a multiple of M; for 20 ms blocks it is
    /// always exactly 20 ms of output).
    pub fn max_output_len(&self, input_len: usize) -> usize {
        (input_len * self.up).div_ceil(self.down)
    }

    /// Forgets the signal so far, as if newly created.
    pub fn reset(&mut self) {
        self.next = 0;
        if self.from_hz != self.to_hz {
            self.buf.clear();
            self.buf.resize(self.taps - 1, 0.0);
        }
    }

    /// Converts the next block of the stream and appends the result to `out`; returns how many
    /// samples were appended. Blocks may have any length: the output is the same however the
    /// stream is cut into blocks.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) -> usize {
        if self.from_hz == self.to_hz {
            out.extend_from_slice(input);
            return input.len();
        }
        let (l, m, k) = (self.up, self.down, self.taps);
        let history = k - 1;
        self.buf.truncate(history);
        self.buf.extend(input.iter().map(|&s| f32::from(s)));
        let start = out.len();
        let limit = input.len() * l;
        while self.next < limit {
            let (i, phase) = (self.next / l, self.next % l);
            let window = &self.buf[i..i + k];
            let coeffs = &self.coeffs[phase * k..(phase + 1) * k];
            let y = dot(coeffs, window);
            out.push(y.round().clamp(f32::from(i16::MIN), f32::from(i16::MAX)) as i16);
            self.next += m;
        }
        self.next -= limit;
        // Keep the newest K−1 samples as the next block's history.
        let keep_from = self.buf.len() - history;
        self.buf.copy_within(keep_from.., 0);
        self.buf.truncate(history);
        out.len() - start
    }
}

/// The dot product of two equal-length slices, with eight partial sums so the compiler can use
/// vector instructions (one running sum would force strict sequential adds).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for lane in 0..8 {
            acc[lane] += x[lane] * y[lane];
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        sum += x * y;
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::tone::{db, level_at, Sine};

    const AMPLITUDE: f64 = 16_000.0;

    /// Half a second of a tone at `from`, converted in 20 ms blocks; the output after the
    /// filter has filled (twice its delay) and the rate.
    fn convert_tone(from: u32, to: u32, freq: f64) -> Vec<i16> {
        let mut r = Resampler::new(from, to).unwrap();
        let mut sine = Sine::new(freq, from, AMPLITUDE);
        let mut out = Vec::new();
        for _ in 0..25 {
            r.process(&sine.take(from as usize / 50), &mut out);
        }
        out.split_off(2 * r.latency_samples() + 2)
    }

    /// Where a component at `freq` lands once sampled at `rate` (folded into 0..rate/2).
    fn fold(freq: f64, rate: u32) -> f64 {
        let rate = f64::from(rate);
        let f = freq.rem_euclid(rate);
        if f > rate / 2.0 {
            rate - f
        } else {
            f
        }
    }

    struct Figures {
        passband_dev_db: f64,
        worst_spur_db: f64,
        worst_spur: (f64, f64),
    }

    /// Passband flatness up to 0.9 × the lower Nyquist, and the strongest alias or image of any
    /// test tone (tones above the lower Nyquist when downsampling; images of passband tones).
    fn measure(from: u32, to: u32) -> Figures {
        let nyquist = f64::from(from.min(to)) / 2.0;
        let r = Resampler::new(from, to).unwrap();
        let fast = f64::from(from) * r.up as f64;
        let mut fig = Figures {
            passband_dev_db: 0.0,
            worst_spur_db: -200.0,
            worst_spur: (0.0, 0.0),
        };
        let spur = |fig: &mut Figures, out: &[i16], tone: f64, at: f64| {
            // Skip components too close to the tone, to DC or to Nyquist to measure alone.
            if (at - tone).abs() < 50.0 || at < 30.0 || at > f64::from(to) / 2.0 - 30.0 {
                return;
            }
            let level = db(level_at(out, to, at), AMPLITUDE);
            if level > fig.worst_spur_db {
                fig.worst_spur_db = level;
                fig.worst_spur = (tone, at);
            }
        };
        for frac in [0.02, 0.1, 0.3, 0.5, 0.7, 0.85, 0.9] {
            let f = frac * nyquist;
            let out = convert_tone(from, to, f);
            let gain = db(level_at(&out, to, f), AMPLITUDE);
            if gain.abs() > fig.passband_dev_db.abs() {
                fig.passband_dev_db = gain;
            }
            // Images: the zero-stuffed signal repeats the spectrum around multiples of `from`.
            for k in 1..=r.up {
                for g in [
                    k as f64 * f64::from(from) - f,
                    k as f64 * f64::from(from) + f,
                ] {
                    if g < fast / 2.0 {
                        spur(&mut fig, &out, f, fold(g, to));
                    }
                }
            }
        }
        if to < from {
            // Tones the output cannot carry must not fold back into it.
            for frac in [1.02, 1.1, 1.25, 1.5, 1.9, 2.5, 3.7, 5.3] {
                let f = frac * nyquist;
                if f < 0.97 * f64::from(from) / 2.0 {
                    let out = convert_tone(from, to, f);
                    spur(&mut fig, &out, f, fold(f, to));
                }
            }
        }
        fig
    }

    #[test]
    fn passband_is_flat_and_aliases_and_images_are_suppressed() {
        println!(
            "from -> to Hz: passband dev (dB) | worst alias/image (dB, tone -> at Hz) | delay"
        );
        let mut worst = (0.0f64, -200.0f64);
        for from in RESAMPLER_RATES {
            for to in RESAMPLER_RATES {
                if from == to {
                    continue;
                }
                let fig = measure(from, to);
                let delay = Resampler::new(from, to).unwrap().latency_samples();
                println!(
                    "{from:>5} -> {to:>5}: {:+.3} | {:.1} ({:.0} -> {:.0}) | {delay} samples, {:.2} ms",
                    fig.passband_dev_db,
                    fig.worst_spur_db,
                    fig.worst_spur.0,
                    fig.worst_spur.1,
                    delay as f64 * 1000.0 / f64::from(to)
                );
                assert!(
                    fig.passband_dev_db.abs() <= 0.5,
                    "{from} -> {to}: passband deviation {} dB",
                    fig.passband_dev_db
                );
                assert!(
                    fig.worst_spur_db <= -60.0,
                    "{from} -> {to}: alias/image at {} dB ({:?})",
                    fig.worst_spur_db,
                    fig.worst_spur
                );
                worst.0 = worst.0.max(fig.passband_dev_db.abs());
                worst.1 = worst.1.max(fig.worst_spur_db);
            }
        }
        println!(
            "all pairs: passband within ±{:.3} dB, aliases and images at most {:.1} dB",
            worst.0, worst.1
        );
    }

    #[test]
    fn a_sweep_keeps_its_level() {
        // A slow logarithmic sweep from 100 Hz to 0.9 × the lower Nyquist: its envelope, measured
        // in 10 ms windows, stays within ±0.5 dB of the input level.
        for (from, to) in [
            (16_000, 8_000),
            (8_000, 16_000),
            (16_000, 48_000),
            (48_000, 16_000),
        ] {
            let nyquist = f64::from(from.min(to)) / 2.0;
            let (f0, f1, seconds) = (100.0f64, 0.9 * nyquist, 2.0);
            let n = (f64::from(from) * seconds) as usize;
            let k = (f1 / f0).ln() / seconds;
            let sweep: Vec<i16> = (0..n)
                .map(|i| {
                    let t = i as f64 / f64::from(from);
                    let phase = 2.0 * std::f64::consts::PI * f0 * ((k * t).exp() - 1.0) / k;
                    (AMPLITUDE * phase.sin()).round() as i16
                })
                .collect();
            let mut r = Resampler::new(from, to).unwrap();
            let mut out = Vec::new();
            for block in sweep.chunks(from as usize / 50) {
                r.process(block, &mut out);
            }
            let win = to as usize / 100;
            let skip = 2 * r.latency_samples() + win;
            let (mut lo, mut hi) = (f64::MAX, f64::MIN);
            for w in out[skip..out.len() - win].chunks_exact(win) {
                let peak = w.iter().map(|&s| f64::from(s).abs()).fold(0.0, f64::max);
                let level = db(peak, AMPLITUDE);
                lo = lo.min(level);
                hi = hi.max(level);
            }
            println!("sweep {from} -> {to}: envelope {lo:+.3} .. {hi:+.3} dB");
            // The peak of a window can fall between samples: at 0.9 × Nyquist a sine is sampled
            // about 2.2 times per period, so allow the sampling loss at the top of the sweep.
            assert!(hi <= 0.5, "{from} -> {to}: envelope up to {hi} dB");
            assert!(
                lo >= -0.5 - sampling_loss_db(f1, to),
                "{from} -> {to}: down to {lo} dB"
            );
        }
    }

    /// The worst-case shortfall of a sampled sine's largest sample below its true peak.
    fn sampling_loss_db(freq: f64, rate: u32) -> f64 {
        let half_step = std::f64::consts::PI * freq / f64::from(rate);
        -db(half_step.cos(), 1.0)
    }

    #[test]
    fn blocks_give_the_same_output_as_one_call() {
        // A tone plus pseudo-random noise, converted whole and in blocks of awkward sizes: the
        // results are identical, so block boundaries leave no trace (no clicks, no drift).
        let mut x: u32 = 99;
        let signal: Vec<i16> = Sine::new(1234.5, 48_000, 9000.0)
            .take(48_000)
            .into_iter()
            .map(|s| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                s.saturating_add((x >> 20) as i16 - 2048)
            })
            .collect();
        for (from, to) in [
            (48_000, 16_000),
            (16_000, 48_000),
            (32_000, 48_000),
            (48_000, 8_000),
        ] {
            let input = &signal[..from as usize / 2];
            let mut whole = Vec::new();
            Resampler::new(from, to).unwrap().process(input, &mut whole);
            let mut pieces = Vec::new();
            let mut r = Resampler::new(from, to).unwrap();
            let mut rest = input;
            for size in [1usize, 7, 160, 333, 2, 959, 4000].iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (head, tail) = rest.split_at((*size).min(rest.len()));
                r.process(head, &mut pieces);
                rest = tail;
            }
            assert_eq!(whole.len(), input.len() * to as usize / from as usize);
            assert!(whole == pieces, "{from} -> {to}: block-wise output differs");
        }
    }

    #[test]
    fn twenty_ms_in_is_twenty_ms_out() {
        for from in RESAMPLER_RATES {
            for to in RESAMPLER_RATES {
                let mut r = Resampler::new(from, to).unwrap();
                let mut out = Vec::new();
                for _ in 0..10 {
                    out.clear();
                    let n = r.process(&vec![100; from as usize / 50], &mut out);
                    assert_eq!(n, to as usize / 50, "{from} -> {to}");
                    assert_eq!(n, r.max_output_len(from as usize / 50));
                }
            }
        }
    }

    #[test]
    fn an_impulse_comes_out_after_the_stated_delay() {
        for (from, to) in [
            (8_000, 16_000),
            (16_000, 8_000),
            (16_000, 48_000),
            (48_000, 32_000),
        ] {
            let mut r = Resampler::new(from, to).unwrap();
            let (l, m) = (r.up, r.down);
            let at = 60 * m; // an input index that falls on an output sample
            let mut input = vec![0i16; 4000];
            input[at] = 20_000;
            let mut out = Vec::new();
            r.process(&input, &mut out);
            let peak = (0..out.len())
                .max_by_key(|&i| out[i].unsigned_abs())
                .unwrap();
            assert_eq!(peak, at * l / m + r.latency_samples(), "{from} -> {to}");
        }
    }

    #[test]
    fn equal_rates_pass_through() {
        let mut r = Resampler::new(16_000, 16_000).unwrap();
        let input: Vec<i16> = (0..320).map(|i| i as i16 * 7).collect();
        let mut out = Vec::new();
        assert_eq!(r.process(&input, &mut out), 320);
        assert_eq!(out, input);
        assert_eq!(r.latency_samples(), 0);
    }

    #[test]
    fn full_scale_input_saturates_instead_of_wrapping() {
        // A full-scale square wave overshoots after filtering (Gibbs); the output clamps.
        let square: Vec<i16> = (0..4800)
            .map(|i| {
                if (i / 24) % 2 == 0 {
                    i16::MAX
                } else {
                    i16::MIN
                }
            })
            .collect();
        let mut r = Resampler::new(48_000, 8_000).unwrap();
        let mut out = Vec::new();
        r.process(&square, &mut out);
        assert_eq!(out.len(), 800);
        let late = &out[2 * r.latency_samples()..];
        // A wrap would put a large value of the wrong sign next to its neighbours.
        for w in late.windows(2) {
            assert!((i32::from(w[0]) - i32::from(w[1])).abs() < 40_000, "{w:?}");
        }
        r.reset();
        out.clear();
        r.process(&[0; 160], &mut out);
        assert!(out.iter().all(|&s| s == 0), "reset forgets the signal");
    }

    #[test]
    fn unsupported_rates_are_refused() {
        assert_eq!(
            Resampler::new(44_100, 48_000).unwrap_err(),
            UnsupportedRate(44_100)
        );
        assert!(Resampler::new(16_000, 0).is_err());
        assert!(Resampler::new(96_000, 48_000).is_err());
    }
}
