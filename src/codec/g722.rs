//! G.722 wideband speech (ITU-T G.722, the 64 kbit/s mode), encoder and decoder, bit-exact with
//! ffmpeg's `g722` codec (`-c:a g722`, raw files `-f g722`).
//!
//! # How G.722 works
//!
//! G.722 carries 16 kHz audio (50–7000 Hz) in 64 kbit/s: one byte per pair of input samples.
//!
//! 1. **Band split.** A quadrature mirror filter (QMF) pair of 24 taps splits the 16 kHz signal
//!    into a low band (0–4 kHz) and a high band (4–8 kHz), each sampled at 8 kHz. One pair of input
//!    samples gives one low-band and one high-band sample. Both filters share one set of
//!    coefficients: the low band is the sum of the "even-tap" and "odd-tap" halves of the filter
//!    and the high band their difference, which is why the split costs one 24-tap pass per pair.
//!    The decoder runs the mirror image: it rebuilds the sum and difference of the two bands and
//!    feeds them through the same taps, producing two 16 kHz samples per byte.
//! 2. **Two ADPCM coders.** Each band is coded by adaptive differential PCM: a predictor guesses
//!    the next band sample from the past, and only the error of that guess is quantized. The low
//!    band gets 6 bits per sample (60 levels), the high band 2 bits (4 levels); the byte on the
//!    wire is `high << 6 | low`.
//! 3. **Quantizer adaptation.** The quantizer step size follows the signal level. It is kept as a
//!    logarithm that leaks slowly towards zero (multiplied by 127/128 each sample) and is pushed up
//!    by large codes and down by small ones (a fixed table per code), then turned back into a
//!    linear step through a 32-entry table of powers of two.
//! 4. **Adaptive predictors.** Each band's predictor has two poles (fed by the past reconstructed
//!    signal) and six zeros (fed by the past quantized differences). The coefficients are adjusted
//!    after every sample by a sign-sign rule: each one leaks slightly towards zero and is nudged
//!    up or down depending on whether the signs of the recent signals agree. The pole pair is kept
//!    inside a stability triangle so the predictor can never ring on its own.
//! 5. **Embedded low band.** Only the top 4 of the 6 low-band bits drive the predictor and the step
//!    adaptation, in encoder and decoder alike. That is what lets G.722's 56 and 48 kbit/s modes
//!    drop low-band bits in transit; in the 64 kbit/s mode the decoder still uses all 6 bits for
//!    the sample it outputs.
//!
//! All arithmetic is integer, as in the recommendation, so that two implementations agree to the
//! bit. `tests/g722_ffmpeg.rs` checks this one against ffmpeg sample for sample and byte for byte.
//!
//! # Where ffmpeg departs from the letter of the recommendation
//!
//! Found by comparing with ffmpeg's output (see the tests), and followed here so that we agree:
//!
//! - ffmpeg's encoder runs without trellis search by default (`-trellis 0`); that is the plain
//!   per-sample quantizer coded here. Output coded with `-trellis N` decodes fine, but our encoder
//!   does not reproduce those bytes.
//! - At the end of a stream with an odd number of samples, ffmpeg codes the last sample paired with
//!   a zero (see [`G722Encoder::flush`]).
//! - The decoder's synthesis filter is fed `rlow + rhigh` and `rlow - rhigh` stored as 16-bit
//!   values that wrap around, where the recommendation saturates. Only extreme (noise-like or
//!   corrupt) input reaches that range.
//! - The decoder writes `(sum >> 11)` clamped to 16 bits for each output sample.
//!
//! # RTP
//!
//! RFC 3551 §4.5.2: payload type 9, and an RTP clock of 8000 Hz in both SDP (`G722/8000`) and RTP
//! timestamps, although the audio is sampled at 16 kHz. The timestamp therefore advances by one per
//! byte (per sample pair): 20 ms = 320 samples = 160 bytes = 160 RTP ticks. The helpers below do
//! that arithmetic in one place.

/// The static RTP payload type of G.722 (RFC 3551).
pub const G722_PAYLOAD_TYPE: u8 = 9;
/// The RTP clock rate of G.722, in SDP and in RTP timestamps (RFC 3551 §4.5.2: 8000, for
/// historical reasons, although the audio is sampled at 16 kHz).
pub const G722_RTP_CLOCK_RATE: u32 = 8000;
/// The sampling rate of the audio G.722 codes.
pub const G722_SAMPLE_RATE: u32 = 16000;
/// The SDP encoding name.
pub const G722_ENCODING_NAME: &str = "G722";

/// RTP timestamp units for `samples` 16 kHz samples: half of them, since one tick of the 8000 Hz
/// RTP clock is one byte, one sample pair. An odd count rounds down (a half pair cannot be sent).
/// Wraps like RTP timestamps do.
pub const fn rtp_ticks_for_samples(samples: u64) -> u32 {
    (samples / 2) as u32
}

/// 16 kHz samples spanned by `ticks` units of the 8000 Hz RTP clock (twice as many).
pub const fn samples_for_rtp_ticks(ticks: u32) -> u64 {
    ticks as u64 * 2
}

/// RTP timestamp units spanned by a G.722 payload of `bytes` bytes (one per byte).
pub const fn rtp_ticks_for_bytes(bytes: usize) -> u32 {
    bytes as u32
}

/// Payload bytes that code `samples` 16 kHz samples; an odd count needs a last, padded byte.
pub const fn bytes_for_samples(samples: usize) -> usize {
    samples.div_ceil(2)
}

/// 16 kHz samples a payload of `bytes` bytes decodes to (two per byte).
pub const fn samples_for_bytes(bytes: usize) -> usize {
    bytes * 2
}

/// 16 kHz samples in `ms` milliseconds (20 ms → 320).
pub const fn samples_for_ms(ms: u32) -> usize {
    ms as usize * (G722_SAMPLE_RATE as usize / 1000)
}

// ---------------------------------------------------------------------------------------------
// Tables of the recommendation.

/// The 24 QMF taps, symmetric (tap `k` equals tap `23 - k`).
const QMF_TAPS: [i32; 24] = [
    3, -11, -11, 53, 12, -156, 32, 362, -210, -805, 951, 3876, 3876, 951, -805, -210, 362, 32, -156,
    12, 53, -11, -11, 3,
];

/// Low-band decision levels, in units of the step size / 4096, for magnitude classes 1..=29. A
/// difference at or above level `i` falls into class `i + 1` or beyond.
const LOW_LEVELS: [i32; 29] = [
    35, 72, 110, 150, 190, 233, 276, 323, 370, 422, 473, 530, 587, 650, 714, 786, 858, 940, 1023,
    1121, 1219, 1339, 1458, 1612, 1765, 1980, 2195, 2557, 2919,
];

/// Low-band 6-bit code for magnitude class `1..=30` of a negative difference (index 0 unused).
const LOW_CODE_NEG: [u8; 31] = [
    0, 63, 62, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11,
    10, 9, 8, 7, 6, 5, 4,
];

/// Low-band 6-bit code for magnitude class `1..=30` of a non-negative difference.
const LOW_CODE_POS: [u8; 31] = [
    0, 61, 60, 59, 58, 57, 56, 55, 54, 53, 52, 51, 50, 49, 48, 47, 46, 45, 44, 43, 42, 41, 40, 39,
    38, 37, 36, 35, 34, 33, 32,
];

/// Low-band output levels for all 6 bits (64 kbit/s decoder output), times the step size / 32768.
const LOW_DEQUANT6: [i32; 64] = [
    -136, -136, -136, -136, -24808, -21904, -19008, -16704, -14984, -13512, -12280, -11192, -10232,
    -9360, -8576, -7856, -7192, -6576, -6000, -5456, -4944, -4464, -4008, -3576, -3168, -2776,
    -2400, -2032, -1688, -1360, -1040, -728, 24808, 21904, 19008, 16704, 14984, 13512, 12280, 11192,
    10232, 9360, 8576, 7856, 7192, 6576, 6000, 5456, 4944, 4464, 4008, 3576, 3168, 2776, 2400, 2032,
    1688, 1360, 1040, 728, 432, 136, -432, -136,
];

/// Low-band levels for the top 4 bits of the code: what the predictor and adaptation see.
const LOW_DEQUANT4: [i32; 16] = [
    0, -20456, -12896, -8968, -6288, -4240, -2584, -1200, 20456, 12896, 8968, 6288, 4240, 2584,
    1200, 0,
];

/// Change of the low band's log step size per 4-bit code: big codes widen the step.
const LOW_LOG_STEP: [i32; 16] = [
    -60, 3042, 1198, 538, 334, 172, 58, -30, 3042, 1198, 538, 334, 172, 58, -30, -60,
];

/// High-band levels for the 2-bit code.
const HIGH_DEQUANT: [i32; 4] = [-7408, -1616, 7408, 1616];

/// Change of the high band's log step size: codes 0 and 2 are the outer levels.
const HIGH_LOG_STEP: [i32; 4] = [798, -214, 798, -214];

/// 2^(i/32) in Q11, for turning the log step size back into a linear one.
const POW2_FRAC: [i32; 32] = [
    2048, 2093, 2139, 2186, 2233, 2282, 2332, 2383, 2435, 2489, 2543, 2599, 2656, 2714, 2774, 2834,
    2896, 2960, 3025, 3091, 3158, 3228, 3298, 3371, 3444, 3520, 3597, 3676, 3756, 3838, 3922, 4008,
];

// ---------------------------------------------------------------------------------------------
// Shared machinery.

#[inline(always)]
fn sat16(v: i32) -> i32 {
    v.clamp(i16::MIN as i32, i16::MAX as i32)
}

/// The decoder's limit on each band's reconstructed signal: 15 bits.
#[inline(always)]
fn sat15(v: i32) -> i32 {
    v.clamp(-16384, 16383)
}

/// How one band's quantizer step adapts.
#[derive(Debug, Clone, Copy)]
struct StepRule {
    /// Upper bound of the log step size.
    log_max: i32,
    /// Offset, in whole octaves, between the log step and the linear step's exponent.
    octave_bias: i32,
    /// The starting linear step size.
    initial: i32,
}

const LOW_STEP: StepRule = StepRule {
    log_max: 18432,
    octave_bias: 8,
    initial: 32,
};

const HIGH_STEP: StepRule = StepRule {
    log_max: 22528,
    octave_bias: 10,
    initial: 8,
};

/// The ADPCM state of one sub-band: step size and predictor. Encoder and decoder keep identical
/// copies, updated from the same codes.
#[derive(Debug, Clone)]
struct Band {
    rule: StepRule,
    /// Step size, log domain (the recommendation's `nbl` / `nbh`).
    log_step: i32,
    /// Step size, linear (`detl` / `deth`); always a multiple of 4.
    step: i32,
    /// Pole coefficients a1, a2 (Q14).
    poles: [i32; 2],
    /// Zero coefficients b1..b6 (Q14).
    zeros: [i32; 6],
    /// The last six quantized differences, newest first.
    diffs: [i32; 6],
    /// The last two reconstructed band samples, newest first.
    recon: [i32; 2],
    /// Whether the last two partially reconstructed samples (zero-section output plus
    /// difference) were negative, newest first.
    partial_neg: [bool; 2],
    /// The zero section's share of the current prediction.
    zero_part: i32,
    /// The prediction of the current band sample.
    predicted: i32,
}

impl Band {
    fn new(rule: StepRule) -> Band {
        Band {
            rule,
            log_step: 0,
            step: rule.initial,
            poles: [0; 2],
            zeros: [0; 6],
            diffs: [0; 6],
            recon: [0; 2],
            partial_neg: [false; 2],
            zero_part: 0,
            predicted: 0,
        }
    }

    /// Moves the step size after a sample coded with a code whose log-step change is `delta`.
    #[inline(always)]
    fn adapt_step(&mut self, delta: i32) {
        // Leak by 127/128 towards the smallest step, then move by the code's weight.
        self.log_step = ((self.log_step * 127 >> 7) + delta).clamp(0, self.rule.log_max);
        let mantissa = POW2_FRAC[((self.log_step >> 6) & 31) as usize];
        let exponent = (self.log_step >> 11) - self.rule.octave_bias;
        let linear = if exponent < 0 {
            mantissa >> -exponent
        } else {
            mantissa << exponent
        };
        self.step = linear << 2;
    }

    /// Adapts the predictor to the quantized difference `d` of the current sample and predicts
    /// the next one.
    #[inline(always)]
    fn adapt_predictor(&mut self, d: i32) {
        let [a1, a2] = self.poles;

        // The sign of the partial reconstruction (zero section plus difference) drives the pole
        // adaptation. The sum needs no clamp: clamping never changes a sign.
        let neg = self.zero_part + d < 0;
        let same1 = neg == self.partial_neg[0];
        let same2 = neg == self.partial_neg[1];

        // Second pole: leak by 127/128, follow the sign agreement with two samples ago, and
        // pull against the first pole when the last two signs agree.
        let a1_term = sat16(a1 << 2);
        let a1_term = if same1 { -a1_term } else { a1_term }.min(i16::MAX as i32);
        let new_a2 = ((a1_term >> 7) + if same2 { 128 } else { -128 } + (a2 * 32512 >> 15))
            .clamp(-12288, 12288);

        // First pole: leak by 255/256 and follow the sign agreement with the last sample, then
        // keep (a1, a2) inside the stability triangle |a1| <= 15360 - a2.
        let limit = sat16(15360 - new_a2);
        let new_a1 = sat16(if same1 { 192 } else { -192 } + (a1 * 32640 >> 15)).clamp(-limit, limit);

        // Zeros: leak by 255/256, and step by 128 towards agreement of the sign of each past
        // difference with the current one (no step while the difference is zero).
        let step = if d == 0 { 0 } else { 128 };
        let d_neg = d < 0;
        for (b, &past) in self.zeros.iter_mut().zip(&self.diffs) {
            let nudge = if (past < 0) == d_neg { step } else { -step };
            *b = sat16(nudge + (*b * 32640 >> 15));
        }

        // Shift the histories.
        let r = sat16(self.predicted + d);
        self.diffs.copy_within(0..5, 1);
        self.diffs[0] = d;
        self.recon = [r, self.recon[0]];
        self.partial_neg = [neg, self.partial_neg[0]];
        self.poles = [new_a1, new_a2];

        // Predict the next sample: the pole section from the reconstructed signal, the zero
        // section from the differences (both doubled into Q15 before the Q14 multiply).
        let pole_part = sat16(
            (new_a1 * sat16(self.recon[0] << 1) >> 15) + (new_a2 * sat16(self.recon[1] << 1) >> 15),
        );
        let mut zero_part = 0;
        for (&b, &past) in self.zeros.iter().zip(&self.diffs) {
            zero_part += b * (past << 1) >> 15;
        }
        self.zero_part = zero_part;
        self.predicted = sat16(pole_part + self.zero_part);
    }
}

/// How many sample pairs the QMF delay line holds before it slides back to its start.
const QMF_SPAN: usize = 256;

/// The QMF delay line, shared by the encoder's analysis and the decoder's synthesis.
///
/// Values are appended two at a time; the window of the last 24 is always contiguous, so the
/// 24-tap product is a plain slice loop. The line slides back (copying 22 values) once every
/// [`QMF_SPAN`] pairs instead of shifting on every pair.
#[derive(Debug, Clone)]
struct QmfLine {
    buf: [i32; 22 + 2 * QMF_SPAN],
    end: usize,
}

impl QmfLine {
    fn new() -> QmfLine {
        QmfLine {
            buf: [0; 22 + 2 * QMF_SPAN],
            end: 22,
        }
    }

    /// Appends `older` then `newer`, and returns the two 12-tap halves of the filter over the
    /// last 24 values: `(aligned, offset)`, where `aligned` weighs `newer` (and every second
    /// value before it) with the even taps, and `offset` weighs `older` and its every-second
    /// predecessors with the odd taps.
    #[inline(always)]
    fn push(&mut self, older: i32, newer: i32) -> (i32, i32) {
        if self.end == self.buf.len() {
            self.buf.copy_within(self.end - 22.., 0);
            self.end = 22;
        }
        self.buf[self.end] = older;
        self.buf[self.end + 1] = newer;
        self.end += 2;
        let window = &self.buf[self.end - 24..self.end];
        // Taps are symmetric, so weighing value `newest - k` with tap `k` equals weighing window
        // position `m` with tap `m`; odd positions are `newer` and its every-second predecessors.
        let mut aligned = 0;
        let mut offset = 0;
        for (w, h) in window.chunks_exact(2).zip(QMF_TAPS.chunks_exact(2)) {
            offset += w[0] * h[0];
            aligned += w[1] * h[1];
        }
        (aligned, offset)
    }
}

// ---------------------------------------------------------------------------------------------
// Encoder.

/// A G.722 encoder for one stream (64 kbit/s: one byte per two 16 kHz samples).
///
/// Keeps its state between calls, so a stream may be fed in pieces of any size; it allocates
/// nothing itself (only `out` may grow). An odd sample left at the end of a call waits for the
/// next call; [`G722Encoder::flush`] codes it at the end of a stream.
#[derive(Debug, Clone)]
pub struct G722Encoder {
    qmf: QmfLine,
    low: Band,
    high: Band,
    pending: Option<i16>,
}

impl Default for G722Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl G722Encoder {
    /// A new encoder in the initial state of the recommendation.
    pub fn new() -> G722Encoder {
        G722Encoder {
            qmf: QmfLine::new(),
            low: Band::new(LOW_STEP),
            high: Band::new(HIGH_STEP),
            pending: None,
        }
    }

    /// Returns to the initial state, as for a new stream (a held odd sample is dropped).
    pub fn reset(&mut self) {
        *self = G722Encoder::new();
    }

    /// Whether an odd sample from the last call waits for its partner.
    pub fn has_pending_sample(&self) -> bool {
        self.pending.is_some()
    }

    /// Appends the coding of `pcm16k` (16 kHz mono) to `out`, one byte per sample pair.
    ///
    /// A sample held from the previous call is paired with the first one here. When the count
    /// (with any held sample) is odd, the last sample is held for the next call rather than coded:
    /// RTP streams come in even frames (20 ms = 320 samples), and holding keeps the stream
    /// seamless when they do not.
    pub fn encode(&mut self, pcm16k: &[i16], out: &mut Vec<u8>) {
        let mut pcm = pcm16k;
        if let Some(first) = self.pending.take() {
            match pcm.split_first() {
                Some((&second, rest)) => {
                    out.push(self.encode_pair(first, second));
                    pcm = rest;
                }
                None => {
                    self.pending = Some(first);
                    return;
                }
            }
        }
        let pairs = pcm.chunks_exact(2);
        self.pending = pairs.remainder().first().copied();
        out.reserve(pairs.len());
        out.extend(pairs.map(|p| self.encode_pair(p[0], p[1])));
    }

    /// Ends the stream: a held odd sample is coded paired with a zero, as ffmpeg does for a file
    /// with an odd number of samples. Appends nothing when no sample is held.
    pub fn flush(&mut self, out: &mut Vec<u8>) {
        if let Some(last) = self.pending.take() {
            out.push(self.encode_pair(last, 0));
        }
    }

    /// Codes one pair of samples (`first` is the earlier) into one byte.
    #[inline(always)]
    fn encode_pair(&mut self, first: i16, second: i16) -> u8 {
        let (aligned, offset) = self.qmf.push(i32::from(first), i32::from(second));
        let low_in = (aligned + offset) >> 14;
        let high_in = (aligned - offset) >> 14;

        // Low band: 6-bit quantization of the prediction error, by magnitude class.
        let err = sat16(low_in - self.low.predicted);
        // `magnitude` is |err| rounded towards minus infinity of the ones' complement, as the
        // recommendation defines it (-1 counts as 0).
        let magnitude = if err >= 0 { err } else { -(err + 1) };
        let step = self.low.step;
        let class = 1 + LOW_LEVELS.partition_point(|&level| magnitude >= (level * step) >> 12);
        let low_code = if err < 0 {
            LOW_CODE_NEG[class]
        } else {
            LOW_CODE_POS[class]
        };

        // High band: 2 bits, inner or outer level on each side.
        let err = sat16(high_in - self.high.predicted);
        let magnitude = if err >= 0 { err } else { -(err + 1) };
        let outer = magnitude >= (564 * self.high.step) >> 12;
        let high_code: u8 = match (err < 0, outer) {
            (true, false) => 1,
            (true, true) => 0,
            (false, false) => 3,
            (false, true) => 2,
        };

        self.update_low(low_code);
        self.update_high(high_code);
        high_code << 6 | low_code
    }

    fn update_low(&mut self, code6: u8) {
        update_low(&mut self.low, code6);
    }

    fn update_high(&mut self, code2: u8) {
        update_high(&mut self.high, code2);
    }
}

/// Adapts the low band to its 6-bit code (only the top 4 bits count) and returns the quantized
/// difference it used.
#[inline(always)]
fn update_low(band: &mut Band, code6: u8) {
    let code4 = usize::from(code6 >> 2);
    let d = band.step * LOW_DEQUANT4[code4] >> 15;
    band.adapt_predictor(d);
    band.adapt_step(LOW_LOG_STEP[code4]);
}

/// Adapts the high band to its 2-bit code.
#[inline(always)]
fn update_high(band: &mut Band, code2: u8) {
    let code2 = usize::from(code2 & 3);
    let d = band.step * HIGH_DEQUANT[code2] >> 15;
    band.adapt_predictor(d);
    band.adapt_step(HIGH_LOG_STEP[code2]);
}

// ---------------------------------------------------------------------------------------------
// Decoder.

/// A G.722 decoder for one stream (64 kbit/s mode: every byte gives two 16 kHz samples).
///
/// Every byte is a valid code, so any input decodes; state carries across calls, and it allocates
/// nothing itself (only `out` may grow).
#[derive(Debug, Clone)]
pub struct G722Decoder {
    qmf: QmfLine,
    low: Band,
    high: Band,
}

impl Default for G722Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl G722Decoder {
    /// A new decoder in the initial state of the recommendation.
    pub fn new() -> G722Decoder {
        G722Decoder {
            qmf: QmfLine::new(),
            low: Band::new(LOW_STEP),
            high: Band::new(HIGH_STEP),
        }
    }

    /// Returns to the initial state, as for a new stream.
    pub fn reset(&mut self) {
        *self = G722Decoder::new();
    }

    /// Appends the 16 kHz samples of `bytes` to `out`: two per byte, no delay trimmed (the first
    /// output sample belongs to the first byte, as ffmpeg's decoder has it).
    pub fn decode(&mut self, bytes: &[u8], out: &mut Vec<i16>) {
        out.reserve(bytes.len() * 2);
        for &byte in bytes {
            let [a, b] = self.decode_byte(byte);
            out.push(a);
            out.push(b);
        }
    }

    #[inline(always)]
    fn decode_byte(&mut self, byte: u8) -> [i16; 2] {
        let low_code = byte & 0x3f;
        let high_code = byte >> 6;

        // The output uses all 6 low-band bits; the adaptation only the top 4. Both band signals
        // are limited to 15 bits before synthesis, so their sum and difference fit 16 bits.
        let low_d = self.low.step * LOW_DEQUANT6[usize::from(low_code)] >> 15;
        let low = sat15(self.low.predicted + low_d);
        update_low(&mut self.low, low_code);

        let high_d = self.high.step * HIGH_DEQUANT[usize::from(high_code)] >> 15;
        let high = sat15(self.high.predicted + high_d);
        update_high(&mut self.high, high_code);

        let (aligned, offset) = self.qmf.push(low + high, low - high);
        [sat16(aligned >> 11) as i16, sat16(offset >> 11) as i16]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtp_clock_quirk() {
        assert_eq!(G722_PAYLOAD_TYPE, 9);
        assert_eq!(G722_RTP_CLOCK_RATE, 8000);
        assert_eq!(G722_SAMPLE_RATE, 16000);
        let frame = samples_for_ms(20);
        assert_eq!(frame, 320);
        assert_eq!(bytes_for_samples(frame), 160);
        assert_eq!(rtp_ticks_for_samples(frame as u64), 160);
        assert_eq!(rtp_ticks_for_bytes(160), 160);
        assert_eq!(samples_for_rtp_ticks(160), 320);
        assert_eq!(samples_for_bytes(160), 320);
        assert_eq!(bytes_for_samples(321), 161);
    }
}

#[cfg(test)]
mod dbg_tmp {
    use super::*;
    #[test]
    fn dbg_dump() {
        let Ok(bytes) = std::fs::read("/tmp/g722x/r.g722") else { return };
        let theirs: Vec<i16> = std::fs::read("/tmp/g722x/r.dec").unwrap().chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]])).collect();
        let mut d = G722Decoder::new();
        let mut first = None;
        for (i, &b) in bytes.iter().enumerate() {
            let lp = d.low.predicted; let hp = d.high.predicted; let ls = d.low.step; let hs = d.high.step; let lz = d.low.zero_part;
            let low = sat15(lp + (ls * LOW_DEQUANT6[usize::from(b & 0x3f)] >> 15));
            let high = sat15(hp + (hs * HIGH_DEQUANT[usize::from(b >> 6)] >> 15));
            let o = d.decode_byte(b);
            let t = [theirs[2 * i], theirs[2 * i + 1]];
            if o != t && first.is_none() { first = Some(i); }
            if let Some(f) = first { if i > f + 3 { break; } }
            if i + 8 >= first.unwrap_or(usize::MAX).min(1_000_000) || (first.is_none() && i % 1 == 0 && false) {}
            println!("{i} {b:#04x} lp={lp} lz={lz} ls={ls} hp={hp} hs={hs} low={low} high={high} ours={o:?} theirs={t:?}");
        }
    }
}
