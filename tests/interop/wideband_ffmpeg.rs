//! Wideband audio through the RTP voice backend against ffmpeg, both ways: ffmpeg's libopus and
//! G.722 encoders stream a tone over RTP (`-f rtp`) to our backend, which decodes it (the tone's
//! frequency and level must come out); our backend streams a tone in Opus and G.722 to ffmpeg's
//! RTP demuxer (an SDP file), whose decoding must hold the tone. G.722's RTP clock is 8 kHz for
//! 16 kHz audio: a mismatch on either side would shift the pitch or break the timing.
//!
//! A missing ffmpeg skips the tests, except under CI (`CI=true`), where it fails them.

use crate::support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crossbeam_channel::unbounded;
use roomkit_media::backend::{
    AppRate, AudioCodec, ConnectOptions, RtpBackendConfig, RtpVoiceBackend,
};
use roomkit_media::codec::tone::{db, level_at, zero_crossing_frequency, Sine};
use roomkit_media::prelude::*;
use support::peers::{self, have_peers, TempDir};

const FREQ: f64 = 1000.0;

/// The tone checks: after the first 200 ms, the tone's frequency within 3 Hz and its level
/// within 1.5 dB of `amplitude`.
fn assert_tone(what: &str, pcm: &[i16], rate: u32, amplitude: f64) {
    let skip = rate as usize / 5;
    assert!(
        pcm.len() > skip + rate as usize,
        "{what}: only {} samples",
        pcm.len()
    );
    let steady = &pcm[skip..pcm.len() - rate as usize / 10];
    let f = zero_crossing_frequency(steady, rate).expect("a tone");
    let level = db(level_at(steady, rate, FREQ), amplitude);
    println!("{what}: {f:.2} Hz, level {level:+.2} dB");
    assert!((f - FREQ).abs() < 3.0, "{what}: frequency {f}");
    assert!(level.abs() < 1.5, "{what}: level {level} dB");
}

fn backend(pt: u8, codec: Option<AudioCodec>, rate: AppRate) -> RtpVoiceBackend {
    RtpVoiceBackend::new(RtpBackendConfig {
        local_addr: "127.0.0.1:0".parse().unwrap(),
        payload_type: pt,
        audio_codec: codec,
        audio_sample_rate: rate,
        latch_to_first_source: true,
        ..RtpBackendConfig::default()
    })
    .unwrap()
}

/// ffmpeg encodes three seconds of a 1000 Hz tone with `codec_args` and sends it as RTP to our
/// backend; returns the PCM we decoded and the rate the frames said.
fn ffmpeg_to_us(
    pt: u8,
    codec: Option<AudioCodec>,
    rate: AppRate,
    source_rate: u32,
    codec_args: &[&str],
) -> (Vec<i16>, u32) {
    let be = backend(pt, codec, rate);
    let (tx, rx) = unbounded();
    be.on_audio_received(move |_, f| {
        let _ = tx.send(f.clone());
    });
    // The remote is a placeholder: the session latches to ffmpeg's source.
    let s = be
        .connect(
            "room",
            "ffmpeg",
            ConnectOptions::to("127.0.0.1:9".parse().unwrap(), None),
        )
        .unwrap();
    let url = format!("rtp://127.0.0.1:{}", s.audio.local_addr.port());
    let pt_s = pt.to_string();
    let source = format!("sine=frequency={FREQ}:sample_rate={source_rate}");
    let mut args = vec![
        "-nostdin", "-v", "error", "-re", "-f", "lavfi", "-i", &source, "-t", "3", "-ac", "1",
    ];
    args.extend_from_slice(codec_args);
    args.extend_from_slice(&["-payload_type", &pt_s, "-f", "rtp", &url]);
    let out = peers::run(60, "ffmpeg", &args);
    assert!(
        out.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(Duration::from_millis(300));
    let frames: Vec<_> = rx.try_iter().collect();
    be.disconnect(s.id).unwrap();
    assert!(frames.len() > 100, "{} frames arrived", frames.len());
    let rate = frames[0].sample_rate;
    assert!(frames.iter().all(|f| f.sample_rate == rate));
    (frames.iter().flat_map(|f| f.pcm.clone()).collect(), rate)
}

/// Our backend sends three seconds of a 1000 Hz tone, in real time, to ffmpeg's RTP demuxer
/// reading an SDP whose media section is `media`; returns ffmpeg's decoding as mono PCM at
/// `out_rate`.
fn us_to_ffmpeg(
    pt: u8,
    codec: Option<AudioCodec>,
    rate: AppRate,
    media: &str,
    out_rate: u32,
) -> Vec<i16> {
    let dir = TempDir::new("wideband");
    let raw = dir.path("out.raw");
    let ar = out_rate.to_string();
    let (ff, port) = peers::ffmpeg_rtp_receiver(
        &dir.path("in.sdp"),
        media,
        &["-ac", "1", "-ar", &ar, "-f", "s16le", raw.to_str().unwrap()],
    );
    let be = backend(pt, codec, rate);
    let remote: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let s = be
        .connect("room", "ffmpeg", ConnectOptions::to(remote, None))
        .unwrap();
    let app_rate = s.audio.sample_rate;
    let mut sine = Sine::new(FREQ, app_rate, 8000.0);
    let start = Instant::now();
    for i in 0..150u32 {
        let due = start + Duration::from_millis(20) * i;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        be.send_audio(s.id, &sine.take(app_rate as usize / 50))
            .unwrap();
    }
    be.disconnect(s.id).unwrap();
    let done = peers::wait_bounded(ff, Duration::from_secs(30));
    let bytes = std::fs::read(&raw).unwrap_or_else(|_| {
        panic!(
            "ffmpeg wrote nothing: {}",
            String::from_utf8_lossy(&done.stderr)
        )
    });
    bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// lavfi's sine has an amplitude of 1/8 of full scale.
const LAVFI_AMPLITUDE: f64 = 32768.0 / 8.0;

#[test]
fn ffmpeg_opus_rtp_decodes_here() {
    if !have_peers(&["ffmpeg"]) {
        return;
    }
    let args = ["-c:a", "libopus", "-b:a", "48k", "-application", "voip"];
    // The default app rate on Opus: 16 kHz.
    let (pcm, rate) = ffmpeg_to_us(111, Some(AudioCodec::Opus), AppRate::Auto, 48_000, &args);
    assert_eq!(rate, 16_000);
    assert_tone("ffmpeg libopus -> us (16 kHz)", &pcm, rate, LAVFI_AMPLITUDE);
    let (pcm, rate) = ffmpeg_to_us(111, Some(AudioCodec::Opus), AppRate::Codec, 48_000, &args);
    assert_eq!(rate, 48_000);
    assert_tone("ffmpeg libopus -> us (48 kHz)", &pcm, rate, LAVFI_AMPLITUDE);
}

#[test]
fn ffmpeg_g722_rtp_decodes_here() {
    if !have_peers(&["ffmpeg"]) {
        return;
    }
    let args = ["-ar", "16000", "-c:a", "g722"];
    // Payload type 9 names G.722 by itself.
    let (pcm, rate) = ffmpeg_to_us(9, None, AppRate::Auto, 16_000, &args);
    assert_eq!(rate, 16_000);
    assert_tone("ffmpeg g722 -> us (16 kHz)", &pcm, rate, LAVFI_AMPLITUDE);
    // An application at 8 kHz gets the same tone, converted.
    let (pcm, rate) = ffmpeg_to_us(9, None, AppRate::Hz(8000), 16_000, &args);
    assert_eq!(rate, 8000);
    assert_tone("ffmpeg g722 -> us (8 kHz)", &pcm, rate, LAVFI_AMPLITUDE);
}

#[test]
fn our_opus_rtp_decodes_in_ffmpeg() {
    if !have_peers(&["ffmpeg"]) {
        return;
    }
    let media = "m=audio {port} RTP/AVP 111\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 useinbandfec=1;stereo=0\r\n";
    let pcm = us_to_ffmpeg(111, Some(AudioCodec::Opus), AppRate::Auto, media, 48_000);
    assert_tone("us (16 kHz) -> ffmpeg opus", &pcm, 48_000, 8000.0);
}

#[test]
fn our_g722_rtp_decodes_in_ffmpeg() {
    if !have_peers(&["ffmpeg"]) {
        return;
    }
    let media = "m=audio {port} RTP/AVP 9\r\na=rtpmap:9 G722/8000\r\n";
    let pcm = us_to_ffmpeg(9, Some(AudioCodec::G722), AppRate::Auto, media, 16_000);
    assert_tone("us (16 kHz) -> ffmpeg g722", &pcm, 16_000, 8000.0);
    let pcm = us_to_ffmpeg(9, None, AppRate::Hz(48_000), media, 16_000);
    assert_tone("us (48 kHz) -> ffmpeg g722", &pcm, 16_000, 8000.0);
}
