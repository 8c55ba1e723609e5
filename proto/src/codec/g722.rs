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
//! bit. `tests/interop/g722_ffmpeg.rs` checks this one against ffmpeg sample for sample and byte for byte.
//!
//! # Details that decide the last bit
//!
//! Found by comparing with ffmpeg's output (see the tests), and followed here so that we agree:
//!
//! - ffmpeg's encoder runs without trellis search by default (`-trellis 0`); that is the plain
//!   per-sample quantizer coded here. Streams coded with `-trellis N` decode fine, but our encoder
//!   does not reproduce those bytes.
//! - At the end of a stream with an odd number of samples, ffmpeg codes the last sample paired with
//!   a zero (see [`G722Encoder::flush`]).
//! - The decoder limits each band's reconstructed signal to 15 bits (-16384..=16383) before the
//!   synthesis filter, not to 16. With a 16-bit limit, loud noise and random bytes decode a few
//!   units off ffmpeg's output; the tests caught exactly that.
//! - The QMF scaling: the analysis sums are shifted right by 14, the synthesis sums by 11 and then
//!   clamped to 16 bits. In each input pair the earlier sample meets the odd taps; the decoder
//!   emits the sample built from the band difference first, then the one from the band sum.
//! - The predictor's pole and zero sections are added unclamped, and only their sum, the
//!   prediction, is clamped to 16 bits (ffmpeg works in 32 bits there), where 16-bit arithmetic
//!   would saturate each section first. The sections do leave 16 bits under runs of extreme
//!   codes, yet of 60,000 random byte sequences built from such runs, none decoded (or
//!   re-encoded) differently for clamping either section first; we follow ffmpeg's arithmetic
//!   all the same.
//! - Every other clamp is the recommendation's: the prediction errors and predictions to 16 bits,
//!   the pole coefficients to their stability triangle, the log step sizes to 0..=18432 (low band)
//!   and 0..=22528 (high band).
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
/// End-to-end delay of encoder plus decoder, in 16 kHz samples (1.375 ms): input sample `n`
/// comes out of the decoder as output sample `n + 22`. It is all in the two QMF filters; ffmpeg's
/// decoder trims none of it either.
pub const G722_DELAY_SAMPLES: usize = 22;

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
    3, -11, -11, 53, 12, -156, 32, 362, -210, -805, 951, 3876, 3876, 951, -805, -210, 362, 32,
    -156, 12, 53, -11, -11, 3,
];

/// Low-band decision levels, in units of the step size / 4096, between the 30 magnitude classes:
/// a difference at or above `LOW_LEVELS[i]` is in class `i + 2` or beyond (classes count from 1).
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
/// Codes 0..=3 are never sent by an encoder; they decode to a tiny negative level.
const LOW_DEQUANT6: [i32; 64] = [
    -136, -136, -136, -136, -24808, -21904, -19008, -16704, -14984, -13512, -12280, -11192, -10232,
    -9360, -8576, -7856, -7192, -6576, -6000, -5456, -4944, -4464, -4008, -3576, -3168, -2776,
    -2400, -2032, -1688, -1360, -1040, -728, 24808, 21904, 19008, 16704, 14984, 13512, 12280,
    11192, 10232, 9360, 8576, 7856, 7192, 6576, 6000, 5456, 4944, 4464, 4008, 3576, 3168, 2776,
    2400, 2032, 1688, 1360, 1040, 728, 432, 136, -432, -136,
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

/// `a * b / 32768`, rounded down: the recommendation's fixed-point product.
#[inline(always)]
fn mul_q15(a: i32, b: i32) -> i32 {
    (a * b) >> 15
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
}

impl StepRule {
    /// The linear step size for a log step size: 2^(log_step / 2048 - octave_bias) from a table
    /// of 32 fractional powers, times 4.
    #[inline(always)]
    fn linear(self, log_step: i32) -> i32 {
        let mantissa = POW2_FRAC[((log_step >> 6) & 31) as usize];
        let exponent = (log_step >> 11) - self.octave_bias;
        let linear = if exponent < 0 {
            mantissa >> -exponent
        } else {
            mantissa << exponent
        };
        linear << 2
    }
}

const LOW_STEP: StepRule = StepRule {
    log_max: 18432,
    octave_bias: 8,
};

const HIGH_STEP: StepRule = StepRule {
    log_max: 22528,
    octave_bias: 10,
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
            step: rule.linear(0),
            poles: [0; 2],
            zeros: [0; 6],
            diffs: [0; 6],
            recon: [0; 2],
            partial_neg: [false; 2],
            zero_part: 0,
            predicted: 0,
        }
    }

    /// Adapts a low band to the 6-bit code of its current sample (only the top 4 bits count).
    #[inline(always)]
    fn adapt_low(&mut self, code6: u8) {
        let code4 = usize::from(code6 >> 2);
        self.adapt_predictor(mul_q15(self.step, LOW_DEQUANT4[code4]));
        self.adapt_step(LOW_LOG_STEP[code4]);
    }

    /// Adapts a high band to the 2-bit code of its current sample.
    #[inline(always)]
    fn adapt_high(&mut self, code2: u8) {
        let code2 = usize::from(code2 & 3);
        self.adapt_predictor(mul_q15(self.step, HIGH_DEQUANT[code2]));
        self.adapt_step(HIGH_LOG_STEP[code2]);
    }

    /// Moves the step size after a sample coded with a code whose log-step change is `delta`.
    #[inline(always)]
    fn adapt_step(&mut self, delta: i32) {
        // Leak by 127/128 towards the smallest step, then move by the code's weight.
        self.log_step = (((self.log_step * 127) >> 7) + delta).clamp(0, self.rule.log_max);
        self.step = self.rule.linear(self.log_step);
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
        let new_a2 = ((a1_term >> 7) + if same2 { 128 } else { -128 } + mul_q15(a2, 32512))
            .clamp(-12288, 12288);

        // First pole: leak by 255/256 and follow the sign agreement with the last sample, then
        // keep (a1, a2) inside the stability triangle |a1| <= 15360 - a2.
        let limit = 15360 - new_a2;
        let new_a1 =
            sat16(if same1 { 192 } else { -192 } + mul_q15(a1, 32640)).clamp(-limit, limit);

        // Zeros: leak by 255/256, and step by 128 towards agreement of the sign of each past
        // difference with the current one (no step while the difference is zero).
        let step = if d == 0 { 0 } else { 128 };
        let d_neg = d < 0;
        for (b, &past) in self.zeros.iter_mut().zip(&self.diffs) {
            let nudge = if (past < 0) == d_neg { step } else { -step };
            *b = sat16(nudge + mul_q15(*b, 32640));
        }

        // Shift the histories.
        let r = sat16(self.predicted + d);
        self.diffs.copy_within(0..5, 1);
        self.diffs[0] = d;
        self.recon = [r, self.recon[0]];
        self.partial_neg = [neg, self.partial_neg[0]];
        self.poles = [new_a1, new_a2];

        // Predict the next sample: the pole section from the reconstructed signal, the zero
        // section from the differences. Coefficients are Q14: each signal is doubled, and the
        // product shifted right by 15.
        let pole_part =
            mul_q15(new_a1, sat16(self.recon[0] << 1)) + mul_q15(new_a2, sat16(self.recon[1] << 1));
        let mut zero_part = 0;
        for (&b, &past) in self.zeros.iter().zip(&self.diffs) {
            zero_part += mul_q15(b, past << 1);
        }
        // Neither section is clamped on its own, only the prediction (as in ffmpeg; see the
        // module docs).
        self.zero_part = zero_part;
        self.predicted = sat16(pole_part + zero_part);
    }
}

/// The QMF taps met by every second value, oldest first: `PHASE_TAPS[0]` are the even taps of
/// [`QMF_TAPS`], for the earlier value of each pair, and `PHASE_TAPS[1]` the odd ones, for the
/// later value.
const PHASE_TAPS: [[i16; 12]; 2] = {
    let mut t = [[0i16; 12]; 2];
    let mut i = 0;
    while i < 12 {
        t[0][i] = QMF_TAPS[2 * i] as i16;
        t[1][i] = QMF_TAPS[2 * i + 1] as i16;
        i += 1;
    }
    t
};

/// How many sample pairs the QMF delay line holds before it slides back to its start.
const QMF_SPAN: usize = 256;

/// The QMF delay line, shared by the encoder's analysis and the decoder's synthesis.
///
/// Values come in pairs, and the earlier and later value of each pair meet different halves of
/// the taps, so the line keeps them in two rows: each 12-tap product is then a dot product of
/// contiguous 16-bit values, which the compiler turns into a few vector multiply-adds. The rows
/// slide back (copying 11 values) once every [`QMF_SPAN`] pairs instead of shifting on every pair.
#[derive(Debug, Clone)]
struct QmfLine {
    rows: [[i16; 11 + QMF_SPAN]; 2],
    end: usize,
}

impl QmfLine {
    fn new() -> QmfLine {
        QmfLine {
            rows: [[0; 11 + QMF_SPAN]; 2],
            end: 11,
        }
    }

    /// Appends a pair, and returns the two 12-tap halves of the filter over the last 12 pairs,
    /// `(aligned, offset)`. Counting taps from the newest value (tap 0 on `newer`), `aligned`
    /// sums the even taps, over `newer` and every second value before it, and `offset` the odd
    /// taps, over `older` and every second value before it.
    #[inline(always)]
    fn push(&mut self, older: i16, newer: i16) -> (i32, i32) {
        if self.end == self.rows[0].len() {
            for row in &mut self.rows {
                row.copy_within(QMF_SPAN.., 0);
            }
            self.end = 11;
        }
        self.rows[0][self.end] = older;
        self.rows[1][self.end] = newer;
        self.end += 1;
        // The taps are symmetric (tap `k` equals tap `23 - k`), so counting from the newest value
        // or from the oldest picks the same tap: the rows and the tap table line up unreversed.
        let dot = |row: &[i16], taps: &[i16; 12]| -> i32 {
            row.iter()
                .zip(taps)
                .map(|(&v, &h)| i32::from(v) * i32::from(h))
                .sum()
        };
        let offset = dot(&self.rows[0][self.end - 12..self.end], &PHASE_TAPS[0]);
        let aligned = dot(&self.rows[1][self.end - 12..self.end], &PHASE_TAPS[1]);
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
        let (aligned, offset) = self.qmf.push(first, second);
        let low_in = (aligned + offset) >> 14;
        let high_in = (aligned - offset) >> 14;

        // Low band: 6-bit quantization of the prediction error, by magnitude class.
        let err = sat16(low_in - self.low.predicted);
        // The recommendation's magnitude takes the ones' complement of a negative error
        // (-err - 1), so -1 ranks with 0 and -32768 stays in 16 bits.
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

        self.low.adapt_low(low_code);
        self.high.adapt_high(high_code);
        high_code << 6 | low_code
    }
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

    /// Appends the 16 kHz samples of `bytes` to `out`, two per byte. Nothing is trimmed: the
    /// first two samples belong to the first byte, as in ffmpeg's decoder, and the audio comes
    /// out [`G722_DELAY_SAMPLES`] later than it went into the encoder.
    pub fn decode(&mut self, bytes: &[u8], out: &mut Vec<i16>) {
        let start = out.len();
        out.resize(start + 2 * bytes.len(), 0);
        for (pair, &byte) in out[start..].chunks_exact_mut(2).zip(bytes) {
            pair.copy_from_slice(&self.decode_byte(byte));
        }
    }

    #[inline(always)]
    fn decode_byte(&mut self, byte: u8) -> [i16; 2] {
        let low_code = byte & 0x3f;
        let high_code = byte >> 6;

        // The output uses all 6 low-band bits; the adaptation only the top 4. Both band signals
        // are limited to 15 bits before synthesis, so their sum and difference fit 16 bits.
        let low_d = mul_q15(self.low.step, LOW_DEQUANT6[usize::from(low_code)]);
        let low = sat15(self.low.predicted + low_d);
        self.low.adapt_low(low_code);

        let high_d = mul_q15(self.high.step, HIGH_DEQUANT[usize::from(high_code)]);
        let high = sat15(self.high.predicted + high_d);
        self.high.adapt_high(high_code);

        // 15-bit band signals: their sum and difference fit 16 bits.
        let (aligned, offset) = self.qmf.push((low + high) as i16, (low - high) as i16);
        [sat16(aligned >> 11) as i16, sat16(offset >> 11) as i16]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_step_sizes_are_the_recommendations() {
        assert_eq!(Band::new(LOW_STEP).step, 32);
        assert_eq!(Band::new(HIGH_STEP).step, 8);
        // The largest steps, at the top of each log range.
        assert_eq!(LOW_STEP.linear(18432), 16384);
        assert_eq!(HIGH_STEP.linear(22528), 16384);
    }

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
        // Timestamps wrap like RTP's 32-bit clock.
        assert_eq!(rtp_ticks_for_samples(2 * (u64::from(u32::MAX) + 1) + 10), 5);
    }

    fn tone(freq: f64, amplitude: f64, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                let t = i as f64 / f64::from(G722_SAMPLE_RATE);
                (amplitude * 32767.0 * (2.0 * std::f64::consts::PI * freq * t).sin()).round() as i16
            })
            .collect()
    }

    fn round_trip(pcm: &[i16]) -> Vec<i16> {
        let mut coded = Vec::new();
        let mut enc = G722Encoder::new();
        enc.encode(pcm, &mut coded);
        enc.flush(&mut coded);
        assert_eq!(coded.len(), bytes_for_samples(pcm.len()));
        let mut out = Vec::new();
        G722Decoder::new().decode(&coded, &mut out);
        assert_eq!(out.len(), samples_for_bytes(coded.len()));
        out
    }

    /// Signal-to-noise ratio in dB of `out` against `input` delayed by `lag` samples, skipping
    /// the first 100 ms while the step sizes settle.
    fn snr_db(input: &[i16], out: &[i16], lag: usize) -> f64 {
        let skip = 1600;
        let (mut sig, mut err) = (0f64, 0f64);
        for i in skip..input.len() - lag {
            let x = f64::from(input[i]);
            let e = f64::from(out[i + lag]) - x;
            sig += x * x;
            err += e * e;
        }
        10.0 * (sig / err.max(1.0)).log10()
    }

    #[test]
    fn delay_is_22_samples_and_noise_survives() {
        // Broadband noise (a first-order low-pass of white noise, about -15 dBFS) has one clear
        // best alignment, unlike a tone.
        let mut x: u32 = 99;
        let mut prev = 0f64;
        let pcm: Vec<i16> = (0..16000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                prev = 0.7 * prev + f64::from(x as i32 >> 20);
                prev as i16
            })
            .collect();
        let out = round_trip(&pcm);
        let best = (0..64)
            .max_by(|&a, &b| snr_db(&pcm, &out, a).total_cmp(&snr_db(&pcm, &out, b)))
            .unwrap();
        assert_eq!(best, G722_DELAY_SAMPLES);
        // Half of this noise's power is above 4 kHz, where the high band has 2 bits per sample.
        let snr = snr_db(&pcm, &out, G722_DELAY_SAMPLES);
        assert!(snr > 14.0, "noise SNR {snr:.1} dB");
    }

    #[test]
    fn tones_survive_a_round_trip() {
        // (frequency, amplitude as a fraction of full scale, least SNR in dB). Measured with this
        // code: 47.6, 41.2, 66.8, 56.9, 41.2, 25.4, 23.0 dB; the bounds leave a margin of 5-7 dB.
        for (freq, amplitude, min_snr) in [
            (1000.0, 0.5, 42.0),
            (1000.0, 0.02, 35.0),
            (200.0, 0.9, 60.0),
            (300.0, 0.1, 50.0),
            (3000.0, 0.25, 35.0),
            // The high band has only 2 bits per sample: coarser, but still a clean tone.
            (5500.0, 0.25, 20.0),
            (7000.0, 0.25, 18.0),
        ] {
            let pcm = tone(freq, amplitude, 16000);
            let out = round_trip(&pcm);
            let snr = snr_db(&pcm, &out, G722_DELAY_SAMPLES);
            assert!(
                snr > min_snr,
                "{freq} Hz at {amplitude}: SNR {snr:.1} dB, want > {min_snr}"
            );
        }
    }

    #[test]
    fn silence_stays_near_silent() {
        // The low-band quantizer has no zero level, so silence decodes to a faint idle noise
        // (within +-4 here); it must not grow.
        let out = round_trip(&[0; 16000]);
        let peak = out.iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!(peak <= 8, "idle noise peaks at {peak}");
    }

    #[test]
    fn any_input_is_safe() {
        // Extremes and noise, through every path, in debug builds (overflow checks on).
        let mut x: u32 = 0x1234_5678;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        let mut pcm: Vec<i16> = (0..20_000).map(|_| next() as i16).collect();
        pcm.extend(std::iter::repeat_n(i16::MAX, 2000));
        pcm.extend(std::iter::repeat_n(i16::MIN, 2000));
        pcm.extend((0..4000).map(|i| if i % 2 == 0 { i16::MAX } else { i16::MIN }));
        let out = round_trip(&pcm);
        assert_eq!(out.len(), pcm.len());

        let mut bytes: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
        bytes.extend((0..20_000).map(|_| next() as u8));
        for b in [0x00u8, 0x20, 0x3f, 0xff, 0x04, 0xc4] {
            bytes.extend(std::iter::repeat_n(b, 2000));
        }
        let mut out = Vec::new();
        G722Decoder::new().decode(&bytes, &mut out);
        assert_eq!(out.len(), 2 * bytes.len());
    }

    #[test]
    fn pieces_of_any_size_code_like_one_call() {
        let pcm = tone(700.0, 0.4, 4001);
        let mut whole = Vec::new();
        let mut enc = G722Encoder::new();
        enc.encode(&pcm, &mut whole);
        assert!(enc.has_pending_sample());
        enc.flush(&mut whole);
        assert!(!enc.has_pending_sample());

        let mut pieces = Vec::new();
        let mut enc = G722Encoder::new();
        let mut rest = &pcm[..];
        for n in [0, 1, 1, 3, 0, 7, 320, 1, 2, 5].iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (now, later) = rest.split_at((*n).min(rest.len()));
            enc.encode(now, &mut pieces);
            rest = later;
        }
        enc.flush(&mut pieces);
        assert_eq!(pieces, whole);

        let mut one = Vec::new();
        G722Decoder::new().decode(&whole, &mut one);
        let mut split = Vec::new();
        let mut dec = G722Decoder::new();
        for chunk in whole.chunks(37) {
            dec.decode(chunk, &mut split);
        }
        assert_eq!(split, one);
    }

    #[test]
    fn odd_sample_is_paired_with_zero_at_flush() {
        let mut a = Vec::new();
        let mut enc = G722Encoder::new();
        enc.encode(&[1000, -2000, 3000], &mut a);
        assert_eq!(a.len(), 1);
        enc.flush(&mut a);
        let mut b = Vec::new();
        G722Encoder::new().encode(&[1000, -2000, 3000, 0], &mut b);
        assert_eq!(a, b);
        // Flushing with nothing held adds nothing.
        enc.flush(&mut a);
        assert_eq!(a.len(), 2);
    }

    #[test]
    fn reset_starts_a_new_stream() {
        let pcm = tone(440.0, 0.3, 3201);
        let mut fresh = Vec::new();
        G722Encoder::new().encode(&pcm[..3200], &mut fresh);

        let mut enc = G722Encoder::new();
        let mut used = Vec::new();
        enc.encode(&pcm, &mut used);
        assert!(enc.has_pending_sample());
        enc.reset();
        assert!(!enc.has_pending_sample());
        let mut again = Vec::new();
        enc.encode(&pcm[..3200], &mut again);
        assert_eq!(again, fresh);

        let mut dec = G722Decoder::new();
        let mut first = Vec::new();
        dec.decode(&fresh, &mut first);
        dec.reset();
        let mut second = Vec::new();
        dec.decode(&fresh, &mut second);
        assert_eq!(first, second);
    }
}
