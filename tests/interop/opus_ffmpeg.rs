//! Opus against ffmpeg, at the codec level: packets ffmpeg's libopus encoder writes (in an Ogg
//! Opus file, RFC 7845) go through our decoder, and packets from our encoder, written as Ogg
//! Opus here, are decoded by ffmpeg, with both its libopus decoder and its own independent
//! `opus` decoder. Each side checks the tone's frequency and level, and the two decodings of one
//! file are compared sample by sample.
//!
//! A missing ffmpeg skips the test, except under CI (`CI=true`), where it fails.

use crate::support;

use support::peers;

use std::path::Path;

use peers::{have_peers, run, TempDir};
use roomkit_media::codec::opus::{
    parse_packet, OpusApplication, OpusDecoder, OpusEncoder, OPUS_RTP_CLOCK_RATE,
};
use roomkit_media::codec::tone::{db, level_at, rms, zero_crossing_frequency, Sine};
use support::ogg;

const RATE: u32 = 48_000;
const FRAME: usize = 960;

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

fn ffmpeg(args: &[&str]) {
    let mut all = vec!["-nostdin", "-v", "error", "-y"];
    all.extend_from_slice(args);
    run(60, "ffmpeg", &all);
}

fn read_s16le(p: &Path) -> Vec<i16> {
    let bytes = std::fs::read(p).expect("read s16le");
    bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

fn write_s16le(p: &Path, pcm: &[i16]) {
    let bytes: Vec<u8> = pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
    std::fs::write(p, bytes).expect("write s16le");
}

/// The tone checks both directions apply: after the first 100 ms, the tone has its frequency
/// and level and carries nearly all the power.
fn assert_tone(what: &str, pcm: &[i16], freq: f64, amplitude: f64) {
    let steady = &pcm[5 * FRAME..pcm.len() - 2 * FRAME];
    let level = level_at(steady, RATE, freq);
    let f = zero_crossing_frequency(steady, RATE).expect("a tone");
    let share = level * level / 2.0 / (rms(steady) * rms(steady));
    println!(
        "{what}: {f:.2} Hz, level {:+.2} dB, tone power {:.1} %",
        db(level, amplitude),
        share * 100.0
    );
    assert!((f - freq).abs() < 2.0, "{what}: frequency {f}");
    assert!(db(level, amplitude).abs() < 1.0, "{what}: level {level}");
    assert!(share > 0.97, "{what}: tone power share {share}");
}

/// Signal-to-difference ratio of two decodings of the same stream, in dB.
fn agreement_db(a: &[i16], b: &[i16]) -> f64 {
    let n = a.len().min(b.len());
    let diff: Vec<i16> = a[..n]
        .iter()
        .zip(&b[..n])
        .map(|(&x, &y)| x.saturating_sub(y))
        .collect();
    db(rms(&a[..n]), rms(&diff).max(1e-3))
}

#[test]
fn ffmpeg_libopus_packets_decode_here() {
    if !have_peers(&["ffmpeg"]) {
        return;
    }
    let dir = TempDir::new("opus-in");
    let (raw, opus_file, theirs) = (
        dir.path("tone.raw"),
        dir.path("tone.opus"),
        dir.path("theirs.raw"),
    );
    write_s16le(
        &raw,
        &Sine::new(1000.0, RATE, 10_000.0).take(2 * RATE as usize),
    );
    ffmpeg(&[
        "-f",
        "s16le",
        "-ar",
        "48000",
        "-ac",
        "1",
        "-i",
        s(&raw),
        "-c:a",
        "libopus",
        "-b:a",
        "32k",
        "-application",
        "voip",
        "-frame_duration",
        "20",
        s(&opus_file),
    ]);
    ffmpeg(&[
        "-c:a",
        "libopus",
        "-i",
        s(&opus_file),
        "-f",
        "s16le",
        "-ac",
        "1",
        s(&theirs),
    ]);

    let packets = ogg::read_packets(&std::fs::read(&opus_file).expect("read ogg"));
    assert!(packets.len() > 100, "{} packets", packets.len());
    let pre_skip = ogg::pre_skip(&packets[0]);
    assert!(packets[1].starts_with(b"OpusTags"));
    let mut dec = OpusDecoder::new(RATE, 1).unwrap();
    let mut ours = Vec::new();
    for p in &packets[2..] {
        let info = parse_packet(p).expect("ffmpeg's packet parses");
        assert_eq!(info.samples_48k, FRAME, "20 ms frames");
        assert_eq!(dec.decode(p, &mut ours).unwrap(), FRAME);
    }
    let ours = ours.split_off(pre_skip);
    assert_tone("ffmpeg libopus -> our decoder", &ours, 1000.0, 10_000.0);
    // ffmpeg decoded the same file with its libopus: both decodings agree closely.
    let agree = agreement_db(&read_s16le(&theirs), &ours);
    println!("our decoding vs ffmpeg's libopus decoding of its file: {agree:.1} dB");
    assert!(agree > 40.0, "decodings differ: {agree:.1} dB");
}

#[test]
fn our_packets_decode_in_ffmpeg() {
    if !have_peers(&["ffmpeg"]) {
        return;
    }
    let dir = TempDir::new("opus-out");
    let mut enc = OpusEncoder::new(RATE, 1, OpusApplication::Voip).unwrap();
    let pre_skip = enc.lookahead().unwrap();
    let mut sine = Sine::new(440.0, RATE, 8000.0);
    let frames = 100;
    let mut w = ogg::Writer::new(1, pre_skip as u16, RATE);
    let mut packets = Vec::new();
    for i in 0..frames {
        let mut pkt = Vec::new();
        enc.encode(&sine.take(FRAME), &mut pkt).unwrap();
        let granule = ((i + 1) * FRAME) as u64;
        w.packet(&pkt, granule, i + 1 == frames);
        packets.push(pkt);
    }
    let ogg_path = dir.path("ours.opus");
    std::fs::write(&ogg_path, w.finish()).expect("write ogg");
    // Our own reader gets back exactly what was written (checks the writer's framing and CRC).
    assert_eq!(
        ogg::read_packets(&std::fs::read(&ogg_path).unwrap())[2..],
        packets[..]
    );

    let mut decodings = Vec::new();
    for decoder in ["libopus", "opus"] {
        let out = dir.path(&format!("{decoder}.raw"));
        ffmpeg(&[
            "-c:a",
            decoder,
            "-i",
            s(&ogg_path),
            "-f",
            "s16le",
            "-ac",
            "1",
            s(&out),
        ]);
        let pcm = read_s16le(&out);
        // Every sample the stream holds, less the pre-skip (the granule of the last page).
        assert_eq!(pcm.len(), frames * FRAME - pre_skip, "{decoder}: length");
        assert_tone(
            &format!("our encoder -> ffmpeg {decoder}"),
            &pcm,
            440.0,
            8000.0,
        );
        decodings.push(pcm);
    }
    let mut dec = OpusDecoder::new(RATE, 1).unwrap();
    let mut ours = Vec::new();
    for p in &packets {
        dec.decode(p, &mut ours).unwrap();
    }
    let ours = ours.split_off(pre_skip);
    // ffmpeg's libopus decodes our packets as we do. (Its own `opus` decoder is a separate
    // implementation, with its own resampler from the speech layer's rate to 48 kHz, so its
    // samples are not expected to match ours one for one; the tone checks above cover it.)
    let agree = agreement_db(&decodings[0], &ours);
    println!("our decoding vs ffmpeg libopus decoding of our packets: {agree:.1} dB");
    assert!(agree > 40.0, "decodings differ: {agree:.1} dB");
    assert_eq!(OPUS_RTP_CLOCK_RATE, RATE);
}
