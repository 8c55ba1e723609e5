//! The stream core's voice codecs on virtual time: G.722's 8 kHz timestamps for 16 kHz audio,
//! tones through every codec at every application rate (frequency and level kept), Opus FEC
//! rebuilding a lost frame, and DTMF on Opus' 48 kHz clock.

use std::time::{Duration, Instant, SystemTime};

use crate::fuzz_support;

use roomkit_media::codec::tone::{db, level_at, zero_crossing_frequency, Sine};
use roomkit_media::codec::voice::{AppRate, VoiceCodec};
use roomkit_media::frame::AudioFrame;
use roomkit_media::rtp::config::{AudioParams, CoreConfig, MediaParams};
use roomkit_media::rtp::packet::parse_rtp;
use roomkit_media::rtp::sim::{PathConfig, SimPair, SimPath};
use roomkit_media::rtp::stream::{StreamCore, StreamEvent, TransmitKind};

const OPUS_PT: u8 = 111;

fn params(codec: VoiceCodec, app_rate: AppRate, jitter_ms: u32) -> AudioParams {
    AudioParams {
        payload_type: match codec {
            VoiceCodec::Pcmu => 0,
            VoiceCodec::Pcma => 8,
            VoiceCodec::G722 => 9,
            VoiceCodec::Opus => OPUS_PT,
        },
        clock_rate: codec.rtp_clock_rate(),
        dtmf_payload_type: Some(101),
        audio_jitter_ms: jitter_ms,
        codec: Some(codec),
        app_rate,
        ..AudioParams::default()
    }
}

fn core_config(p: AudioParams) -> CoreConfig {
    CoreConfig {
        media: MediaParams::Audio(p),
        ..CoreConfig::default()
    }
}

/// The RTP packets a core sends: timestamp and payload length.
fn sent_rtp(core: &mut StreamCore) -> Vec<(u32, usize)> {
    let mut v = Vec::new();
    while let Some(t) = core.poll_transmit() {
        if t.kind == TransmitKind::Rtp {
            let (meta, payload) = parse_rtp(&t.contents).unwrap();
            v.push((meta.timestamp, payload.len()));
        }
    }
    v
}

#[test]
fn g722_timestamps_advance_160_per_20_ms_of_16_khz_audio() {
    let start = Instant::now();
    for (app, per_frame) in [(AppRate::Auto, 320usize), (AppRate::Hz(8000), 160)] {
        let mut core = StreamCore::new(
            core_config(params(VoiceCodec::G722, app, 0)),
            start,
            SystemTime::now(),
            7,
        )
        .unwrap();
        let mut sine = Sine::new(1000.0, app.resolve(VoiceCodec::G722), 8000.0);
        let mut all = Vec::new();
        for i in 0..10u32 {
            let now = start + Duration::from_millis(20) * i;
            core.send_audio(now, &sine.take(per_frame)).unwrap();
            all.extend(sent_rtp(&mut core));
        }
        assert_eq!(all.len(), 10);
        // One byte per pair of 16 kHz samples, one timestamp tick per byte.
        assert!(all.iter().all(|&(_, len)| len == 160), "{all:?}");
        assert!(
            all.windows(2).all(|w| w[1].0.wrapping_sub(w[0].0) == 160),
            "{all:?}"
        );
        // Several frames in one call too.
        core.send_audio(
            start + Duration::from_millis(200),
            &sine.take(per_frame * 3),
        )
        .unwrap();
        let more = sent_rtp(&mut core);
        assert_eq!(more.len(), 3);
        assert_eq!(more[0].0.wrapping_sub(all[9].0), 160);
        assert_eq!(more[2].0.wrapping_sub(more[0].0), 320);
    }
}

#[test]
fn opus_timestamps_advance_960_per_20_ms() {
    let start = Instant::now();
    let mut core = StreamCore::new(
        core_config(params(VoiceCodec::Opus, AppRate::Auto, 0)),
        start,
        SystemTime::now(),
        3,
    )
    .unwrap();
    let mut sine = Sine::new(440.0, 16_000, 8000.0);
    let mut all = Vec::new();
    for i in 0..5u32 {
        core.send_audio(start + Duration::from_millis(20) * i, &sine.take(320))
            .unwrap();
        all.extend(sent_rtp(&mut core));
    }
    assert_eq!(all.len(), 5);
    assert!(all.windows(2).all(|w| w[1].0.wrapping_sub(w[0].0) == 960));
}

/// A 10 ms path that drops the RTP packets (counted from 1) for which `lose` says so; RTCP
/// always passes.
fn losing_rtp(seed: u64, lose: impl Fn(u32) -> bool + Send + 'static) -> SimPath {
    let mut ab = SimPath::new(PathConfig::clean(Duration::from_millis(10)), seed);
    let mut n = 0u32;
    ab.set_filter(Box::new(move |d| {
        if d.is_rtcp() {
            return false;
        }
        n += 1;
        lose(n)
    }));
    ab
}

/// Two voice cores, A sending to B over `ab`, B answering over `ba`.
fn voice_pair(a: AudioParams, b: AudioParams, ab: SimPath, ba: SimPath, seed: u64) -> SimPair {
    SimPair::new(Instant::now(), core_config(a), core_config(b), ab, ba, seed).unwrap()
}

/// A sends `frames` frames of PCM, frame `i` from `pcm(i)`, one every 20 ms of virtual time.
fn send_frames(pair: &mut SimPair, frames: u32, pcm: impl FnMut(u32) -> Vec<i16>) {
    send_frames_at(pair, frames, None, pcm)
}

/// `send_frames` with the PCM at `rate_hz` (`None`: A's application rate).
fn send_frames_at(
    pair: &mut SimPair,
    frames: u32,
    rate_hz: Option<u32>,
    mut pcm: impl FnMut(u32) -> Vec<i16>,
) {
    let start = pair.now();
    for i in 0..frames {
        pair.run_until(start + Duration::from_millis(20) * i);
        let frame = pcm(i);
        pair.with_a(|c, now| c.send_audio_at(now, &frame, rate_hz))
            .unwrap();
    }
}

/// The audio frames B has received.
fn received_audio(pair: &SimPair) -> Vec<&AudioFrame> {
    pair.b
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            StreamEvent::Audio(f) => Some(f),
            _ => None,
        })
        .collect()
}

/// The concealed frames with a real one after them: the stand-ins for lost packets (concealment
/// after the last packet does not count).
fn inner_gaps<'a>(frames: &[&'a AudioFrame]) -> Vec<&'a AudioFrame> {
    let Some(last_real) = frames.iter().rposition(|f| !f.concealed) else {
        return Vec::new();
    };
    frames[..last_real]
        .iter()
        .copied()
        .filter(|f| f.concealed)
        .collect()
}

/// A second of a tone from A to B over a clean path; B's frames (at B's application rate).
fn tone_through(
    codec: VoiceCodec,
    a_rate: AppRate,
    b_rate: AppRate,
    freq: f64,
    jitter_ms: u32,
) -> Vec<AudioFrame> {
    tone_through_at(codec, a_rate, b_rate, freq, jitter_ms, None)
}

/// `tone_through`, A handing its PCM over at `per_call_hz` (`send_audio_at`) when given.
fn tone_through_at(
    codec: VoiceCodec,
    a_rate: AppRate,
    b_rate: AppRate,
    freq: f64,
    jitter_ms: u32,
    per_call_hz: Option<u32>,
) -> Vec<AudioFrame> {
    let path = PathConfig::clean(Duration::from_millis(10));
    let mut pair = voice_pair(
        params(codec, a_rate, 0),
        params(codec, b_rate, jitter_ms),
        SimPath::new(path, 1),
        SimPath::new(path, 2),
        5,
    );
    let rate = per_call_hz.unwrap_or(a_rate.resolve(codec));
    let mut sine = Sine::new(freq, rate, 8000.0);
    send_frames_at(&mut pair, 50, per_call_hz, |_| {
        sine.take(rate as usize / 50)
    });
    pair.run_for(Duration::from_millis(300));
    received_audio(&pair).into_iter().cloned().collect()
}

fn assert_tone(what: &str, frames: &[AudioFrame], rate: u32, freq: f64) {
    assert!(frames.len() >= 45, "{what}: {} frames", frames.len());
    assert!(
        frames.iter().all(|f| f.sample_rate == rate),
        "{what}: rate {}",
        frames[0].sample_rate
    );
    let pcm: Vec<i16> = frames
        .iter()
        .filter(|f| !f.concealed)
        .flat_map(|f| f.pcm.iter().copied())
        .collect();
    let per_frame = rate as usize / 50;
    assert!(frames
        .iter()
        .filter(|f| !f.concealed)
        .all(|f| f.pcm.len() == per_frame));
    // Skip the codec's and converters' start-up, keep a steady stretch.
    let steady = &pcm[10 * per_frame..40 * per_frame];
    let f = zero_crossing_frequency(steady, rate).expect("a tone");
    let level = db(level_at(steady, rate, freq), 8000.0);
    println!("{what}: {f:.1} Hz at {level:+.2} dB");
    assert!((f - freq).abs() < 3.0, "{what}: frequency {f}");
    assert!(level.abs() < 1.5, "{what}: level {level} dB");
}

#[test]
fn tones_keep_frequency_and_level_through_every_codec_and_rate() {
    let cases = [
        (VoiceCodec::Pcmu, AppRate::Auto, AppRate::Auto, 8000),
        (
            VoiceCodec::Pcma,
            AppRate::Hz(16_000),
            AppRate::Hz(16_000),
            16_000,
        ),
        (
            VoiceCodec::Pcmu,
            AppRate::Hz(48_000),
            AppRate::Hz(48_000),
            48_000,
        ),
        (VoiceCodec::G722, AppRate::Auto, AppRate::Auto, 16_000),
        (VoiceCodec::G722, AppRate::Hz(8000), AppRate::Hz(8000), 8000),
        (
            VoiceCodec::G722,
            AppRate::Hz(48_000),
            AppRate::Codec,
            16_000,
        ),
        (VoiceCodec::Opus, AppRate::Auto, AppRate::Auto, 16_000),
        (VoiceCodec::Opus, AppRate::Hz(8000), AppRate::Hz(8000), 8000),
        (
            VoiceCodec::Opus,
            AppRate::Hz(16_000),
            AppRate::Codec,
            48_000,
        ),
        (
            VoiceCodec::Opus,
            AppRate::Hz(32_000),
            AppRate::Hz(32_000),
            32_000,
        ),
    ];
    for (codec, a, b, b_hz) in cases {
        for jitter in [0, 40] {
            let what = format!("{codec:?} {a:?} -> {b:?}, jitter {jitter} ms");
            let frames = tone_through(codec, a, b, 1000.0, jitter);
            assert_tone(&what, &frames, b_hz, 1000.0);
        }
    }
}

/// PCM handed over at another rate than the stream's (`send_audio_at`) is converted to the
/// codec's: the tone keeps its frequency and level, 20 ms of it is one packet whatever the rate,
/// the rate may change from call to call, and a rate the converter lacks is refused without
/// harm to the stream.
#[test]
fn pcm_at_a_rate_per_call_is_converted() {
    for (codec, hz) in [
        (VoiceCodec::G722, 8000),
        (VoiceCodec::G722, 24_000),
        (VoiceCodec::G722, 48_000),
        (VoiceCodec::Pcmu, 16_000),
        (VoiceCodec::Opus, 24_000),
    ] {
        let what = format!("{codec:?}, PCM at {hz} Hz per call");
        let frames = tone_through_at(codec, AppRate::Auto, AppRate::Auto, 1000.0, 0, Some(hz));
        assert_tone(&what, &frames, AppRate::Auto.resolve(codec), 1000.0);
    }

    let start = Instant::now();
    let mut core = StreamCore::new(
        core_config(params(VoiceCodec::G722, AppRate::Auto, 0)),
        start,
        SystemTime::now(),
        7,
    )
    .unwrap();
    let mut sent = Vec::new();
    for (i, hz) in [48_000u32, 8000, 16_000, 24_000, 48_000]
        .into_iter()
        .enumerate()
    {
        let now = start + Duration::from_millis(20) * i as u32;
        let pcm = Sine::new(1000.0, hz, 8000.0).take(hz as usize / 50);
        core.send_audio_at(now, &pcm, Some(hz)).unwrap();
        sent.extend(sent_rtp(&mut core));
    }
    assert_eq!(sent.len(), 5, "{sent:?}");
    assert!(sent.iter().all(|&(_, len)| len == 160), "{sent:?}");
    assert!(sent.windows(2).all(|w| w[1].0.wrapping_sub(w[0].0) == 160));
    let refused = core.send_audio_at(start + Duration::from_millis(100), &[0; 882], Some(44_100));
    assert!(
        matches!(refused, Err(roomkit_media::Error::InvalidArgument(_))),
        "{refused:?}"
    );
    assert!(sent_rtp(&mut core).is_empty());
    core.send_audio(start + Duration::from_millis(100), &[0; 320])
        .unwrap();
    assert_eq!(sent_rtp(&mut core).len(), 1);
}

#[test]
fn opus_fec_rebuilds_a_lost_frame_from_the_next_packet() {
    // The tone changes pitch exactly at the lost frame: concealment would continue the old
    // pitch, the FEC copy in the next packet carries the new one.
    let lost = 30u32;
    let mut pair = voice_pair(
        params(VoiceCodec::Opus, AppRate::Auto, 0),
        params(VoiceCodec::Opus, AppRate::Auto, 60),
        losing_rtp(1, move |n| n == lost + 1),
        SimPath::new(PathConfig::clean(Duration::from_millis(10)), 2),
        5,
    );
    let (low, high) = (500.0, 1200.0);
    let mut sine_low = Sine::new(low, 16_000, 8000.0);
    let mut sine_high = Sine::new(high, 16_000, 8000.0);
    send_frames(&mut pair, 50, |i| {
        if i < lost {
            sine_low.take(320)
        } else {
            sine_high.take(320)
        }
    });
    pair.run_for(Duration::from_millis(300));
    let frames = received_audio(&pair);
    let concealed = frames.iter().filter(|f| f.concealed).count();
    // One frame is missing and stood in for.
    let inside = inner_gaps(&frames);
    assert_eq!(inside.len(), 1, "{concealed} concealed in all");
    let fec = &inside[0].pcm;
    assert_eq!(fec.len(), 320);
    let (at_high, at_low) = (level_at(fec, 16_000, high), level_at(fec, 16_000, low));
    println!(
        "rebuilt frame: {:+.1} dB at the new pitch, {:+.1} dB at the old",
        db(at_high, 8000.0),
        db(at_low, 8000.0)
    );
    assert!(
        at_high > 4.0 * at_low,
        "the stand-in carries the new pitch (FEC), not the old (concealment)"
    );
    assert!(db(at_high, 8000.0) > -10.0);
}

#[test]
fn opus_without_fec_in_reach_conceals_with_libopus() {
    // Two packets lost in a row: the first gap has no packet right behind it, so libopus
    // conceals; both gaps are flagged and as long as a frame.
    let mut pair = voice_pair(
        params(VoiceCodec::Opus, AppRate::Hz(48_000), 0),
        params(VoiceCodec::Opus, AppRate::Hz(48_000), 60),
        losing_rtp(1, |n| n == 21 || n == 22),
        SimPath::new(PathConfig::clean(Duration::from_millis(10)), 2),
        5,
    );
    let mut sine = Sine::new(700.0, 48_000, 8000.0);
    send_frames(&mut pair, 40, |_| sine.take(960));
    pair.run_for(Duration::from_millis(300));
    let gaps = inner_gaps(&received_audio(&pair));
    assert_eq!(gaps.len(), 2);
    assert!(gaps
        .iter()
        .all(|f| f.pcm.len() == 960 && f.payload.is_empty()));
    // libopus' concealment continues the tone rather than going silent at once.
    assert!(db(level_at(&gaps[0].pcm, 48_000, 700.0), 8000.0) > -12.0);
}

#[test]
fn dtmf_on_an_opus_stream_runs_on_the_48_khz_clock() {
    let path = PathConfig::clean(Duration::from_millis(10));
    let mut pair = voice_pair(
        params(VoiceCodec::Opus, AppRate::Auto, 0),
        params(VoiceCodec::Opus, AppRate::Auto, 0),
        SimPath::new(path, 1),
        SimPath::new(path, 2),
        5,
    );
    pair.with_a(|c, now| c.send_dtmf(now, '7', 200)).unwrap();
    pair.run_for(Duration::from_millis(600));
    let digits: Vec<_> = pair
        .b
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            StreamEvent::Dtmf(d) => Some(*d),
            _ => None,
        })
        .collect();
    assert_eq!(digits.len(), 1);
    assert_eq!(digits[0].digit, '7');
    // 200 ms measured on a 48 kHz clock: a wrong clock would make it 1200 or 33 ms.
    assert!(digits[0].duration_ms.abs_diff(200) <= 20, "{digits:?}");
}

#[test]
fn unsupported_app_rate_is_refused() {
    let r = StreamCore::new(
        core_config(params(VoiceCodec::G722, AppRate::Hz(44_100), 0)),
        Instant::now(),
        SystemTime::now(),
        1,
    );
    assert!(r.is_err());
}

#[test]
fn random_packets_never_break_the_decoders() {
    // The fuzz target's checks over pseudo-random inputs: every codec, rate and buffer setting,
    // real and junk payloads, losses, jumps and repeats.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for conf in 0..32u8 {
        for _ in 0..2 {
            let mut input = vec![conf];
            for _ in 0..100 {
                let r = next();
                let len = (r >> 40) as u8 % 200;
                // ctl, seq delta (mostly 1), ts step, dt, len, payload
                input.push(r as u8);
                input.push(if r & 0x300 == 0 { (r >> 16) as u8 } else { 1 });
                input.extend_from_slice(&((r >> 24) as u16 % 8).to_be_bytes());
                input.push(if r & 0x400 == 0 { 20 } else { (r >> 48) as u8 });
                input.push(len);
                input.extend((0..len).map(|_| next() as u8));
            }
            fuzz_support::voice::rx(&input);
        }
    }
}

#[test]
fn a_lost_g722_frame_is_concealed_for_its_whole_16_khz_length() {
    // The jitter buffer counts the gap in 8 kHz ticks (160); the stand-in must be 320 samples
    // at 16 kHz (or 160 at an 8 kHz application rate), continuing the tone.
    for (app, per_frame) in [(AppRate::Auto, 320usize), (AppRate::Hz(8000), 160)] {
        let mut pair = voice_pair(
            params(VoiceCodec::G722, app, 0),
            params(VoiceCodec::G722, app, 40),
            losing_rtp(1, |n| n == 20),
            SimPath::new(PathConfig::clean(Duration::from_millis(10)), 2),
            5,
        );
        let rate = app.resolve(VoiceCodec::G722);
        let mut sine = Sine::new(600.0, rate, 8000.0);
        send_frames(&mut pair, 40, |_| sine.take(per_frame));
        pair.run_for(Duration::from_millis(300));
        let frames = received_audio(&pair);
        let last_real = frames.iter().rposition(|f| !f.concealed).unwrap();
        let gaps = inner_gaps(&frames);
        assert_eq!(gaps.len(), 1, "{app:?}");
        assert!(frames.iter().all(|f| f.pcm.len() == per_frame), "{app:?}");
        assert!(
            db(level_at(&gaps[0].pcm, rate, 600.0), 8000.0) > -6.0,
            "{app:?}: the stand-in continues the tone"
        );
        // The timestamps of the frames around the gap step by 160 ticks.
        let ts: Vec<u32> = frames[..=last_real]
            .iter()
            .map(|f| f.rtp_timestamp)
            .collect();
        assert!(
            ts.windows(2).all(|w| w[1].wrapping_sub(w[0]) == 160),
            "{ts:?}"
        );
    }
}

#[test]
fn opus_fec_follows_the_loss_the_receiver_reports() {
    // 6 % loss towards the receiver, none back: after a few receiver reports (every ~5 s) the
    // sender's Opus encoder expects about that much loss; on a clean path it drops to 1 %.
    for (loss, range) in [(0.06, 3..=12), (0.0, 1..=1)] {
        let to_b = PathConfig {
            loss,
            ..PathConfig::clean(Duration::from_millis(10))
        };
        let back = PathConfig::clean(Duration::from_millis(10));
        let mut pair = voice_pair(
            params(VoiceCodec::Opus, AppRate::Auto, 0),
            params(VoiceCodec::Opus, AppRate::Auto, 0),
            SimPath::new(to_b, 11),
            SimPath::new(back, 12),
            9,
        );
        assert_eq!(pair.a.core.stats().audio_expected_loss_pct, 0);
        let mut sine = Sine::new(440.0, 16_000, 8000.0);
        send_frames(&mut pair, 1_000, |_| sine.take(320));
        let got = pair.a.core.stats().audio_expected_loss_pct;
        assert!(range.contains(&got), "loss {loss}: expected {got} %");
    }
}

/// A new SSRC on a G.722 stream is decoded as a new stream: the receiver's PCM for the second
/// source is exactly what a receiver that never heard the first one makes of it (G.722's
/// predictor and the concealment's history are per source).
#[test]
fn a_new_source_is_decoded_from_a_fresh_decoder_state() {
    let start = Instant::now();
    let p = params(VoiceCodec::G722, AppRate::Auto, 0);
    let core = |seed| StreamCore::new(core_config(p.clone()), start, SystemTime::now(), seed);
    let (mut first, mut second) = (core(1).unwrap(), core(2).unwrap());
    assert_ne!(first.ssrc(), second.ssrc());
    let mut tone = Sine::new(700.0, 16_000, 9000.0);
    let mut packets = |c: &mut StreamCore, from: u32| {
        let mut v = Vec::new();
        for i in from..from + 10 {
            c.send_audio(start + Duration::from_millis(20) * i, &tone.take(320))
                .unwrap();
            while let Some(t) = c.poll_transmit() {
                if t.kind == TransmitKind::Rtp {
                    v.push((i, t.contents.to_vec()));
                }
            }
        }
        v
    };
    let old = packets(&mut first, 0);
    let new = packets(&mut second, 10);
    let pcm_of = |core: &mut StreamCore, pkts: &[(u32, Vec<u8>)]| {
        let from = core.remote_rtp();
        let mut pcm = Vec::new();
        for (i, p) in pkts {
            core.handle_datagram(start + Duration::from_millis(20) * *i, from, p, false);
            while let Some(e) = core.poll_event() {
                if let StreamEvent::Audio(f) = e {
                    pcm.extend_from_slice(&f.pcm);
                }
            }
        }
        pcm
    };
    let mut heard_both = core(3).unwrap();
    assert!(!pcm_of(&mut heard_both, &old).is_empty());
    let after_switch = pcm_of(&mut heard_both, &new);
    let fresh = pcm_of(&mut core(4).unwrap(), &new);
    assert_eq!(fresh.len(), 10 * 320);
    assert!(
        after_switch == fresh,
        "the old source's state leaked into the new one"
    );
}
