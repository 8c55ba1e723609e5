//! Test tones and their measurement: a phase-continuous sine generator and the level of one
//! frequency in a signal. Used by the codec and resampler tests, the interop tests and the
//! benchmarks, so that every check measures audio the same way.

use std::f64::consts::PI;

/// A sine tone generated block by block, its phase continuing across blocks.
#[derive(Debug, Clone)]
pub struct Sine {
    step: f64,
    phase: f64,
    amplitude: f64,
}

impl Sine {
    /// A tone of `freq_hz` at `sample_rate`, with peak `amplitude` in sample units.
    pub fn new(freq_hz: f64, sample_rate: u32, amplitude: f64) -> Self {
        Sine {
            step: 2.0 * PI * freq_hz / f64::from(sample_rate),
            phase: 0.0,
            amplitude,
        }
    }

    /// Appends the next `n` samples to `out` (rounded, saturated to i16).
    pub fn fill(&mut self, n: usize, out: &mut Vec<i16>) {
        out.reserve(n);
        for _ in 0..n {
            let v = (self.amplitude * self.phase.sin()).round();
            out.push(v.clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16);
            // Wrapping keeps the phase exact over long runs.
            self.phase = (self.phase + self.step) % (2.0 * PI);
        }
    }

    /// The next `n` samples as a new vector.
    pub fn take(&mut self, n: usize) -> Vec<i16> {
        let mut v = Vec::with_capacity(n);
        self.fill(n, &mut v);
        v
    }
}

/// The 4-term Blackman-Harris window: sidelobes below -92 dB, so a tone 60 dB or more below a
/// strong neighbour a few hundred bins away is still measured cleanly.
fn blackman_harris(i: usize, n: usize) -> f64 {
    let x = 2.0 * PI * i as f64 / (n as f64 - 1.0).max(1.0);
    0.35875 - 0.48829 * x.cos() + 0.14128 * (2.0 * x).cos() - 0.01168 * (3.0 * x).cos()
}

/// The peak amplitude, in sample units, of the component of `samples` at exactly `freq_hz`: a
/// windowed single-frequency Fourier sum, normalised so that a sine of peak A measures A. The
/// frequency need not fall on a DFT bin. Use a few hundred periods or more for a precise figure.
pub fn level_at(samples: &[i16], sample_rate: u32, freq_hz: f64) -> f64 {
    let n = samples.len();
    if n == 0 {
        return 0.0;
    }
    let w = 2.0 * PI * freq_hz / f64::from(sample_rate);
    let (mut re, mut im, mut wsum) = (0.0, 0.0, 0.0);
    for (i, &s) in samples.iter().enumerate() {
        let win = blackman_harris(i, n);
        let arg = w * i as f64;
        re += win * f64::from(s) * arg.cos();
        im -= win * f64::from(s) * arg.sin();
        wsum += win;
    }
    2.0 * (re * re + im * im).sqrt() / wsum
}

/// The root-mean-square value of `samples`, in sample units.
pub fn rms(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let sum: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    (sum / samples.len() as f64).sqrt()
}

/// The frequency of a clean tone, from its rising zero crossings (interpolated between samples).
/// `None` when there are fewer than two crossings.
pub fn zero_crossing_frequency(samples: &[i16], sample_rate: u32) -> Option<f64> {
    let mut first = None;
    let mut last = 0.0;
    let mut count = 0usize;
    for (i, pair) in samples.windows(2).enumerate() {
        let (a, b) = (f64::from(pair[0]), f64::from(pair[1]));
        if a < 0.0 && b >= 0.0 {
            let t = i as f64 + a / (a - b);
            first.get_or_insert(t);
            last = t;
            count += 1;
        }
    }
    let first = first?;
    (count >= 2).then(|| (count - 1) as f64 * f64::from(sample_rate) / (last - first))
}

/// Decibels of `level` relative to `reference` (20·log10).
pub fn db(level: f64, reference: f64) -> f64 {
    20.0 * (level.max(1e-12) / reference).log10()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_what_it_generates() {
        let pcm = Sine::new(1000.0, 48_000, 10_000.0).take(48_000);
        let level = level_at(&pcm, 48_000, 1000.0);
        assert!((level - 10_000.0).abs() < 5.0, "level {level}");
        assert!(level_at(&pcm, 48_000, 1300.0) < 1.0);
        let f = zero_crossing_frequency(&pcm, 48_000).unwrap();
        assert!((f - 1000.0).abs() < 0.1, "frequency {f}");
        assert!((rms(&pcm) - 10_000.0 / 2f64.sqrt()).abs() < 5.0);
        assert!((db(0.001, 1.0) + 60.0).abs() < 1e-9);
    }

    #[test]
    fn blocks_continue_the_phase() {
        let mut a = Sine::new(440.0, 8000, 8000.0);
        let mut blocks = a.take(160);
        a.fill(160, &mut blocks);
        assert_eq!(blocks, Sine::new(440.0, 8000, 8000.0).take(320));
    }
}
