//! Fuzzer bytes as RTP packets into a stream core's audio receive path for each codec the engine
//! decodes (PCMU, PCMA, G.722, Opus), at various application rates, with or without the jitter
//! buffer: decoders, concealment, Opus FEC and PLC, rate conversion. Every frame that comes out
//! must carry the configured rate and a bounded amount of PCM.
//!
//! Input layout: one configuration byte (codec, rate, jitter buffer), then records of
//! `ctl, seq_delta, ts_step (u16), dt_ms, len` followed by `len` payload bytes. Some payloads
//! are replaced by real packets of the codec (so the decoders get past their parsers and lose
//! frames in earnest).

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use roomkit_media::codec::tone::Sine;
use roomkit_media::codec::voice::{AppRate, VoiceCodec, VoiceEncoder};
use roomkit_media::rtp::config::{AudioParams, CoreConfig, MediaParams};
use roomkit_media::rtp::packet::{write_rtp_header, RTP_HEADER_LEN};
use roomkit_media::rtp::stream::{StreamCore, StreamEvent};

use super::Cursor;

const CODECS: [VoiceCodec; 4] = [
    VoiceCodec::Pcmu,
    VoiceCodec::Pcma,
    VoiceCodec::G722,
    VoiceCodec::Opus,
];
const RATES: [AppRate; 4] = [
    AppRate::Auto,
    AppRate::Codec,
    AppRate::Hz(8000),
    AppRate::Hz(32_000),
];
const PT: u8 = 100;
/// At most this many packets per input, so one input stays quick.
const MAX_PACKETS: usize = 400;

/// Runs fuzzer bytes through an audio stream's receive path.
pub fn rx(data: &[u8]) {
    let mut input = Cursor::new(data);
    let conf = input.u8();
    let codec = CODECS[usize::from(conf & 3)];
    let app_rate = RATES[usize::from((conf >> 2) & 3)];
    let jitter_ms = if conf & 0x10 != 0 { 40 } else { 0 };
    let rate = app_rate.resolve(codec);
    let peer: SocketAddr = ([10, 0, 0, 2], 4000).into();
    let cfg = CoreConfig {
        media: MediaParams::Audio(AudioParams {
            payload_type: PT,
            clock_rate: codec.rtp_clock_rate(),
            dtmf_payload_type: Some(101),
            audio_jitter_ms: jitter_ms,
            codec: Some(codec),
            app_rate,
            ..AudioParams::default()
        }),
        remote_rtp: peer,
        remote_rtcp: peer,
        ..CoreConfig::default()
    };
    let start = Instant::now();
    let mut core = StreamCore::new(cfg, start, SystemTime::UNIX_EPOCH, 1).expect("a valid stream");
    // Real packets of the codec, so that decoding and loss handling run past the parsers.
    let coding_rate = codec.coding_rate(rate);
    let mut enc = VoiceEncoder::new(codec, coding_rate).expect("encoder");
    let mut sine = Sine::new(440.0, coding_rate, 8000.0);
    let ticks_per_frame = codec.rtp_clock_rate() / 50;

    let (mut now, mut seq, mut ts) = (start, 0u16, 0u32);
    let mut packet = Vec::new();
    let mut payload = Vec::new();
    for _ in 0..MAX_PACKETS {
        if input.is_empty() {
            break;
        }
        let ctl = input.u8();
        seq = seq.wrapping_add(u16::from(input.u8()));
        let step = input.u16();
        // Mostly whole frames, sometimes anything.
        ts = ts.wrapping_add(if ctl & 1 != 0 {
            u32::from(step)
        } else {
            ticks_per_frame * u32::from(step % 4)
        });
        now += Duration::from_millis(u64::from(input.u8() % 64));
        let len = usize::from(input.u8());
        let raw = input.bytes(len);
        payload.clear();
        if ctl & 2 != 0 {
            enc.encode(&sine.take(coding_rate as usize / 50), &mut payload)
                .expect("a 20 ms frame encodes");
        } else {
            payload.extend_from_slice(raw);
        }
        let pt = if ctl & 4 != 0 { 101 } else { PT };
        let mut header = [0u8; RTP_HEADER_LEN];
        write_rtp_header(&mut header, pt, ctl & 8 != 0, seq, ts, 0x1234_5678);
        packet.clear();
        packet.extend_from_slice(&header);
        packet.extend_from_slice(&payload);
        core.handle_datagram(now, peer, &packet, false);
        drain(&mut core, rate);
        run_until(&mut core, now, rate);
    }
    // Let the jitter buffer play out what it holds.
    run_until(&mut core, now + Duration::from_secs(1), rate);
}

/// Handles the core's timeouts up to `t`; a core stuck on one instant fails.
fn run_until(core: &mut StreamCore, t: Instant, rate: u32) {
    let (mut last, mut same) = (None, 0u32);
    while let Some(due) = core.poll_timeout().filter(|&d| d <= t) {
        same = if last == Some(due) { same + 1 } else { 0 };
        assert!(same < 1000, "a timeout that does not advance");
        last = Some(due);
        core.handle_timeout(due);
        drain(core, rate);
    }
}

/// Checks every audio frame out of `core`, and throws away its datagrams.
fn drain(core: &mut StreamCore, rate: u32) {
    while let Some(t) = core.poll_transmit() {
        core.recycle(t.contents);
    }
    while let Some(e) = core.poll_event() {
        if let StreamEvent::Audio(f) = e {
            assert_eq!(f.sample_rate, rate, "frames carry the configured rate");
            assert_eq!(f.channels, 1);
            // At most the payload's worth of audio (one tick per byte for G.711 and G.722) or
            // Opus' 120 ms, at the application's rate, plus the converter's rounding.
            let ticks_8k = f.payload.len().max(960);
            let bound = rate as usize * ticks_8k / 8000 + 64;
            assert!(
                f.pcm.len() <= bound,
                "{} samples from a {}-byte payload at {rate} Hz",
                f.pcm.len(),
                f.payload.len()
            );
            if f.concealed {
                assert!(f.payload.is_empty());
            }
        }
    }
}
