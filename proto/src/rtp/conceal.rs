//! Audio decoding as the jitter buffer needs it: decode what arrived, and stand in for what did not.
//!
//! [`AudioDecoder`] is the hook a codec implements. When the jitter buffer reaches a frame that
//! never arrived it calls [`AudioDecoder::conceal`], handing over the next buffered payload when it
//! has one, so a codec with in-band FEC (Opus) can rebuild the lost frame from it; G.711 has no FEC
//! and synthesises a stand-in. Formats the engine does not decode use [`PassthroughDecoder`]:
//! the application gets the payload and a flagged gap, and conceals itself.
//!
//! [`G711Plc`] is packet-loss concealment in the manner of ITU-T G.711 Appendix I, written from its
//! description: estimate the pitch period from the last 48.75 ms of good speech, repeat the last
//! pitch period (widening to two and then three periods after 10 and 20 ms, to avoid a buzzing
//! tone), attenuate by 20 % per 10 ms after the first 10 ms so the stand-in is silent after 60 ms,
//! and cross-fade into the first good frame over a quarter period.

use crate::codec::g711::G711;
use crate::codec::g722::G722Decoder;
use crate::codec::opus::{parse_packet, OpusDecoder, OpusError, MAX_PACKET_MS};
use crate::codec::voice::VoiceCodec;

/// What a decoder produced for a frame that never arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Concealment {
    /// A synthetic stand-in (packet-loss concealment).
    Synthesised,
    /// The frame rebuilt from forward error correction in the next packet.
    Fec,
    /// Silence (no history to extrapolate from).
    Silence,
    /// Nothing: the application decodes this format and conceals itself.
    None,
}

/// Decoding and concealment for one audio stream; see the module documentation.
///
/// Durations handed in and out (`samples_in`, `conceal`'s `samples`) count RTP timestamp units,
/// which are what the jitter buffer knows; the PCM appended is at the decoder's own rate. The two
/// differ for G.722 (8 kHz clock, 16 kHz audio) and for Opus (48 kHz clock).
pub trait AudioDecoder: Send {
    /// RTP timestamp units in `payload`, when the bytes alone say (G.711 and G.722: one per
    /// byte; Opus: from the packet's header).
    fn samples_in(&self, payload: &[u8]) -> Option<usize>;
    /// Decodes one received payload, appending PCM to `out`. Formats the engine does not decode
    /// append nothing.
    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>);
    /// A frame of `samples` RTP timestamp units never arrived: appends a stand-in to `out`.
    /// `next` is the payload of the packet right after the gap if the jitter buffer already
    /// holds it (for FEC).
    fn conceal(&mut self, samples: usize, next: Option<&[u8]>, out: &mut Vec<i16>) -> Concealment;
    /// Forgets the stream's history (a new source, or a long pause).
    fn reset(&mut self);
}

/// A decoder for formats the application decodes: no PCM, no concealment.
#[derive(Debug, Default, Clone, Copy)]
pub struct PassthroughDecoder;

impl AudioDecoder for PassthroughDecoder {
    fn samples_in(&self, _payload: &[u8]) -> Option<usize> {
        None
    }

    fn decode(&mut self, _payload: &[u8], _out: &mut Vec<i16>) {}

    fn conceal(
        &mut self,
        _samples: usize,
        _next: Option<&[u8]>,
        _out: &mut Vec<i16>,
    ) -> Concealment {
        Concealment::None
    }

    fn reset(&mut self) {}
}

/// The decoder for a stream's codec, producing PCM at `coding_rate` (see
/// [`VoiceCodec::coding_rate`]): G.711 and G.722 with [`G711Plc`], Opus with its FEC and
/// concealment, and anything else (`None`) passed through.
pub fn decoder_for(codec: Option<VoiceCodec>, coding_rate: u32) -> Box<dyn AudioDecoder> {
    match codec {
        Some(VoiceCodec::Pcmu) => Box::new(G711Decoder::new(G711::Pcmu, coding_rate)),
        Some(VoiceCodec::Pcma) => Box::new(G711Decoder::new(G711::Pcma, coding_rate)),
        Some(VoiceCodec::G722) => Box::new(G722WithPlc::new()),
        Some(VoiceCodec::Opus) => match OpusWithFec::new(coding_rate) {
            Ok(d) => Box::new(d),
            Err(_) => Box::new(PassthroughDecoder),
        },
        None => Box::new(PassthroughDecoder),
    }
}

/// G.722 decoding with [`G711Plc`] running on its 16 kHz output (the Appendix I method is not
/// specific to G.711's coding).
#[derive(Debug, Clone)]
pub struct G722WithPlc {
    dec: G722Decoder,
    plc: G711Plc,
}

impl Default for G722WithPlc {
    fn default() -> Self {
        Self::new()
    }
}

impl G722WithPlc {
    /// A decoder at the start of a stream.
    pub fn new() -> Self {
        G722WithPlc {
            dec: G722Decoder::new(),
            plc: G711Plc::new(16_000),
        }
    }
}

impl AudioDecoder for G722WithPlc {
    fn samples_in(&self, payload: &[u8]) -> Option<usize> {
        // One byte codes two 16 kHz samples: one tick of the 8 kHz RTP clock.
        Some(payload.len())
    }

    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) {
        let start = out.len();
        self.dec.decode(payload, out);
        self.plc.on_good(&mut out[start..]);
    }

    fn conceal(&mut self, samples: usize, _next: Option<&[u8]>, out: &mut Vec<i16>) -> Concealment {
        self.plc.conceal(samples * 2, out)
    }

    fn reset(&mut self) {
        self.dec.reset();
        self.plc.reset();
    }
}

/// Opus decoding: lost frames are rebuilt from the next packet's in-band FEC when the jitter
/// buffer holds it, and extrapolated by libopus' concealment otherwise. A packet libopus refuses
/// is concealed too, so the PCM keeps its length.
pub struct OpusWithFec {
    dec: OpusDecoder,
    rate: u32,
    /// PCM samples of the last packet, the length a refused packet is concealed for.
    last_len: usize,
}

impl std::fmt::Debug for OpusWithFec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusWithFec")
            .field("rate", &self.rate)
            .finish_non_exhaustive()
    }
}

impl OpusWithFec {
    /// A mono decoder producing PCM at `rate` (8, 12, 16, 24 or 48 kHz).
    pub fn new(rate: u32) -> Result<Self, OpusError> {
        Ok(OpusWithFec {
            dec: OpusDecoder::new(rate, 1)?,
            rate,
            last_len: rate as usize / 50,
        })
    }

    /// PCM samples at our rate for `ticks` of the 48 kHz RTP clock.
    fn pcm_len(&self, ticks: usize) -> usize {
        VoiceCodec::Opus.samples_for_ticks(ticks.min(u32::MAX as usize) as u32, self.rate)
    }

    /// libopus concealment for `len` samples, in pieces it accepts (whole 2.5 ms units, at most
    /// 120 ms each); a remainder shorter than 2.5 ms is silence.
    fn plc(&mut self, len: usize, out: &mut Vec<i16>) -> Concealment {
        let unit = self.rate as usize / 400;
        let max = unit * (MAX_PACKET_MS as usize * 4 / 10);
        let mut left = len;
        let mut synthesised = false;
        while left >= unit {
            let n = (left / unit * unit).min(max);
            let start = out.len();
            match self.dec.conceal(n, out) {
                Ok(got) if got == n => synthesised = true,
                _ => {
                    out.truncate(start);
                    out.resize(start + n, 0);
                }
            }
            left -= n;
        }
        out.resize(out.len() + left, 0);
        if synthesised {
            Concealment::Synthesised
        } else {
            Concealment::Silence
        }
    }
}

impl AudioDecoder for OpusWithFec {
    fn samples_in(&self, payload: &[u8]) -> Option<usize> {
        parse_packet(payload).ok().map(|i| i.samples_48k)
    }

    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) {
        match self.dec.decode(payload, out) {
            Ok(n) => self.last_len = n,
            Err(_) => {
                let len = self.last_len;
                self.plc(len, out);
            }
        }
    }

    fn conceal(&mut self, samples: usize, next: Option<&[u8]>, out: &mut Vec<i16>) -> Concealment {
        let len = self.pcm_len(samples);
        if let Some(next) = next {
            let start = out.len();
            match self.dec.decode_fec(next, len, out) {
                Ok(got) if got == len => return Concealment::Fec,
                _ => out.truncate(start),
            }
        }
        self.plc(len, out)
    }

    fn reset(&mut self) {
        if let Ok(d) = OpusDecoder::new(self.rate, 1) {
            self.dec = d;
        }
    }
}

/// G.711 decoding with [`G711Plc`].
#[derive(Debug, Clone)]
pub struct G711Decoder {
    law: G711,
    plc: G711Plc,
}

impl G711Decoder {
    /// A decoder for `law` at `clock_rate` (8000 for every real G.711 stream).
    pub fn new(law: G711, clock_rate: u32) -> Self {
        G711Decoder {
            law,
            plc: G711Plc::new(clock_rate),
        }
    }
}

impl AudioDecoder for G711Decoder {
    fn samples_in(&self, payload: &[u8]) -> Option<usize> {
        Some(payload.len())
    }

    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) {
        let start = out.len();
        self.law.decode(payload, out);
        self.plc.on_good(&mut out[start..]);
    }

    fn conceal(&mut self, samples: usize, _next: Option<&[u8]>, out: &mut Vec<i16>) -> Concealment {
        self.plc.conceal(samples, out)
    }

    fn reset(&mut self) {
        self.plc.reset();
    }
}

/// History kept at 8 kHz: 48.75 ms.
const HISTORY_8K: usize = 390;
/// Pitch periods searched at 8 kHz: 5 ms (200 Hz) to 15 ms (66 Hz).
const PITCH_MIN_8K: usize = 40;
const PITCH_MAX_8K: usize = 120;
/// Correlation window at 8 kHz: 20 ms.
const CORR_WINDOW_8K: usize = 160;
/// 10 ms at 8 kHz: the unit of the widening and attenuation schedule.
const TEN_MS_8K: usize = 80;

/// Packet-loss concealment for PCM in the manner of G.711 Appendix I; see the module
/// documentation.
#[derive(Debug, Clone)]
pub struct G711Plc {
    /// Samples per 10 ms.
    ten_ms: usize,
    pitch_min: usize,
    pitch_max: usize,
    window: usize,
    /// Samples of history kept.
    history_cap: usize,
    /// The last good samples, oldest first; the first erased sample follows the last of them.
    history: Vec<i16>,
    /// Samples concealed in the current erasure; 0 outside one.
    erased: usize,
    pitch: usize,
    /// Periods currently repeated (1, 2 or 3), and the count being faded out after a change.
    periods: usize,
    fade: Option<(usize, usize)>,
}

impl G711Plc {
    /// Concealment for PCM at `clock_rate` (the Appendix I constants are for 8 kHz and scale).
    pub fn new(clock_rate: u32) -> Self {
        let scale = |v: usize| (v * clock_rate.max(1) as usize / 8000).max(1);
        let window = scale(CORR_WINDOW_8K);
        G711Plc {
            ten_ms: scale(TEN_MS_8K),
            pitch_min: scale(PITCH_MIN_8K),
            pitch_max: scale(PITCH_MAX_8K),
            window,
            history_cap: scale(HISTORY_8K).max(window + scale(PITCH_MAX_8K)),
            history: Vec::new(),
            erased: 0,
            pitch: 0,
            periods: 1,
            fade: None,
        }
    }

    /// Whether an erasure is in progress.
    #[cfg(any(test, feature = "_internals"))]
    pub fn in_erasure(&self) -> bool {
        self.erased > 0
    }

    /// Forgets everything.
    pub fn reset(&mut self) {
        self.history.clear();
        self.erased = 0;
        self.fade = None;
    }

    /// A good frame was decoded into `pcm`. Right after an erasure its start is cross-faded from
    /// the stand-in so the seam does not click; then it joins the history.
    pub fn on_good(&mut self, pcm: &mut [i16]) {
        if self.erased > 0 {
            let len = (self.pitch / 4).max(1).min(pcm.len());
            for (i, s) in pcm.iter_mut().take(len).enumerate() {
                let w = (i + 1) as f32 / (len + 1) as f32;
                let syn = self.synth(self.erased + i);
                *s = mix(syn, f32::from(*s), w);
            }
            self.erased = 0;
            self.fade = None;
        }
        let cap = self.history_cap;
        if pcm.len() >= cap {
            self.history.clear();
            self.history.extend_from_slice(&pcm[pcm.len() - cap..]);
        } else {
            let keep = cap - pcm.len();
            if self.history.len() > keep {
                self.history.drain(..self.history.len() - keep);
            }
            self.history.extend_from_slice(pcm);
        }
    }

    /// Appends `samples` of stand-in to `out`.
    pub fn conceal(&mut self, samples: usize, out: &mut Vec<i16>) -> Concealment {
        if self.history.len() < self.window + self.pitch_max {
            out.resize(out.len() + samples, 0);
            return Concealment::Silence;
        }
        if self.erased == 0 {
            self.pitch = self.estimate_pitch();
            self.periods = 1;
            self.fade = None;
        }
        let fade_len = (self.pitch / 4).max(1);
        for _ in 0..samples {
            let e = self.erased;
            let want = (1 + e / self.ten_ms).min(3);
            if want != self.periods {
                self.fade = Some((self.periods, fade_len));
                self.periods = want;
            }
            let v = self.synth(e);
            out.push(v.round().clamp(-32768.0, 32767.0) as i16);
            self.fade = match self.fade {
                Some((old, left)) if left > 1 => Some((old, left - 1)),
                _ => None,
            };
            self.erased += 1;
        }
        Concealment::Synthesised
    }

    /// The attenuated stand-in sample `e` samples into the erasure.
    fn synth(&self, e: usize) -> f32 {
        let mut v = self.periodic(self.periods, e);
        if let Some((old, left)) = self.fade {
            let fade_len = (self.pitch / 4).max(1);
            let w = 1.0 - left as f32 / (fade_len + 1) as f32;
            v = self.periodic(old, e) * (1.0 - w) + v * w;
        }
        v * self.gain(e)
    }

    /// The history repeated with a period of `k` pitch periods, continuing from its end.
    fn periodic(&self, k: usize, e: usize) -> f32 {
        let span = (k * self.pitch).min(self.history.len());
        let base = self.history.len() - span;
        // Offset so that every k starts on the sample one period before the end: the sample that
        // follows the end in a periodic signal, and the same for every k.
        let idx = (e + span - self.pitch) % span;
        f32::from(self.history[base + idx])
    }

    /// 1 for the first 10 ms, then 20 % less per 10 ms: silent after 60 ms.
    fn gain(&self, e: usize) -> f32 {
        if e < self.ten_ms {
            1.0
        } else {
            (1.0 - 0.2 * (e - self.ten_ms) as f32 / self.ten_ms as f32).max(0.0)
        }
    }

    /// The period (in samples) whose shift best matches the last `window` samples with the ones
    /// before, by normalised cross-correlation.
    fn estimate_pitch(&self) -> usize {
        let h = &self.history;
        let n = h.len();
        let w = self.window;
        let mut best = (self.pitch_min, f64::MIN);
        for p in self.pitch_min..=self.pitch_max {
            let mut dot = 0.0f64;
            let mut energy = 0.0f64;
            for i in n - w..n {
                let a = f64::from(h[i]);
                let b = f64::from(h[i - p]);
                dot += a * b;
                energy += b * b;
            }
            let score = if energy > 0.0 {
                dot / energy.sqrt()
            } else {
                0.0
            };
            if score > best.1 {
                best = (p, score);
            }
        }
        best.0
    }
}

fn mix(a: f32, b: f32, w: f32) -> i16 {
    (a * (1.0 - w) + b * w).round().clamp(-32768.0, 32767.0) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 100 Hz-ish voiced sound at 8 kHz: period 80 samples.
    fn tone(start: usize, len: usize) -> Vec<i16> {
        (start..start + len)
            .map(|i| {
                let x = i as f64 * 2.0 * std::f64::consts::PI / 80.0;
                (8000.0 * x.sin() + 3000.0 * (2.0 * x).sin()) as i16
            })
            .collect()
    }

    #[test]
    fn finds_the_pitch_and_continues_the_wave() {
        let mut plc = G711Plc::new(8000);
        plc.on_good(&mut tone(0, 400));
        let mut out = Vec::new();
        assert_eq!(plc.conceal(80, &mut out), Concealment::Synthesised);
        assert_eq!(plc.pitch, 80);
        // The first 10 ms continue the tone almost exactly.
        let want = tone(400, 80);
        let err: i64 = out
            .iter()
            .zip(&want)
            .map(|(a, b)| (i64::from(*a) - i64::from(*b)).abs())
            .max()
            .unwrap();
        assert!(err <= 2, "max error {err}");
        assert!(plc.in_erasure());
    }

    #[test]
    fn attenuates_to_silence_after_60_ms() {
        let mut plc = G711Plc::new(8000);
        plc.on_good(&mut tone(0, 400));
        let mut out = Vec::new();
        for _ in 0..5 {
            plc.conceal(160, &mut out);
        }
        let peak = |s: &[i16]| s.iter().map(|v| v.unsigned_abs()).max().unwrap();
        assert!(peak(&out[..80]) > 9000);
        assert!(peak(&out[160..240]) < peak(&out[..80]));
        assert!(peak(&out[320..400]) < peak(&out[160..240]));
        assert_eq!(peak(&out[480..]), 0);
    }

    #[test]
    fn good_frame_after_an_erasure_is_faded_in_then_exact() {
        let mut plc = G711Plc::new(8000);
        plc.on_good(&mut tone(0, 400));
        let mut lost = Vec::new();
        plc.conceal(160, &mut lost);
        let mut good = tone(560, 160);
        let orig = good.clone();
        plc.on_good(&mut good);
        assert!(!plc.in_erasure());
        // Only the first quarter period is touched.
        assert_eq!(good[20..], orig[20..]);
        let mut next = tone(720, 160);
        let orig = next.clone();
        plc.on_good(&mut next);
        assert_eq!(next, orig);
    }

    #[test]
    fn silence_without_history() {
        let mut plc = G711Plc::new(8000);
        plc.on_good(&mut tone(0, 100));
        let mut out = vec![7];
        assert_eq!(plc.conceal(160, &mut out), Concealment::Silence);
        assert_eq!(out.len(), 161);
        assert!(out[1..].iter().all(|&s| s == 0));
    }

    #[test]
    fn g711_decoder_decodes_and_conceals() {
        let mut d = decoder_for(Some(VoiceCodec::Pcmu), 8000);
        let mut enc = Vec::new();
        G711::Pcmu.encode(&tone(0, 400), &mut enc);
        assert_eq!(d.samples_in(&enc), Some(400));
        let mut pcm = Vec::new();
        d.decode(&enc, &mut pcm);
        assert_eq!(pcm.len(), 400);
        let mut out = Vec::new();
        assert_eq!(d.conceal(160, None, &mut out), Concealment::Synthesised);
        assert_eq!(out.len(), 160);
        d.reset();
        assert_eq!(d.conceal(160, None, &mut out), Concealment::Silence);
        let mut p = decoder_for(None, 48000);
        assert_eq!(p.samples_in(&enc), None);
        let mut none = Vec::new();
        p.decode(&enc, &mut none);
        assert_eq!(p.conceal(960, Some(&enc), &mut none), Concealment::None);
        assert!(none.is_empty());
    }
}
