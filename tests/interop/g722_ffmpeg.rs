//! G.722 against ffmpeg: on tones and speech-like noise that ffmpeg generates, at levels from quiet
//! to clipped full scale, our encoder's bytes equal ffmpeg's `g722` encoder's bytes, and our decoder
//! gives ffmpeg's decoder's samples, every one, for the same bytes. Random bytes decode the same
//! too, which drives the decoder's saturation and wrap-around paths that clean audio never reaches.
//!
//! ffmpeg's raw G.722 (`-f g722`) decodes at 16 kHz to exactly two samples per byte, with no delay
//! trimmed; the tests check that count as well.
//!
//! When ffmpeg is missing the test prints a notice and passes, except in CI (`CI=true`), where a
//! missing peer is a failure.

use crate::support;

use support::peers;

use std::path::Path;

use peers::{have_peers, run, TempDir};
use roomkit_media::codec::g722::{G722Decoder, G722Encoder};

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

fn ffmpeg(args: &[&str]) {
    let mut all = vec!["-nostdin", "-v", "error", "-y"];
    all.extend_from_slice(args);
    run(120, "ffmpeg", &all);
}

fn read_s16le(p: &Path) -> Vec<i16> {
    let bytes = std::fs::read(p).expect("read s16le");
    assert_eq!(bytes.len() % 2, 0, "odd byte count in {}", p.display());
    bytes
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect()
}

fn write_s16le(p: &Path, pcm: &[i16]) {
    let bytes: Vec<u8> = pcm.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(p, bytes).expect("write s16le");
}

/// Renders an ffmpeg audio source graph to 16 kHz mono s16le.
fn render(dir: &TempDir, name: &str, graph: &str, seconds: &str) -> Vec<i16> {
    let raw = dir.path(&format!("{name}.raw"));
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        graph,
        "-t",
        seconds,
        "-ar",
        "16000",
        "-ac",
        "1",
        "-f",
        "s16le",
        s(&raw),
    ]);
    let pcm = read_s16le(&raw);
    assert!(!pcm.is_empty(), "{name}: ffmpeg rendered nothing");
    pcm
}

/// ffmpeg's decoding of a raw G.722 file.
fn ffmpeg_decode(dir: &TempDir, name: &str, coded: &Path) -> Vec<i16> {
    let out = dir.path(&format!("{name}.dec.raw"));
    ffmpeg(&["-f", "g722", "-i", s(coded), "-f", "s16le", s(&out)]);
    read_s16le(&out)
}

/// Asserts our decoder turns `bytes` into ffmpeg's samples, sample for sample.
fn assert_decodes_like_ffmpeg(dir: &TempDir, name: &str, coded: &Path, bytes: &[u8]) -> usize {
    let theirs = ffmpeg_decode(dir, name, coded);
    assert_eq!(
        theirs.len(),
        2 * bytes.len(),
        "{name}: ffmpeg decoded {} bytes to {} samples",
        bytes.len(),
        theirs.len()
    );
    let mut ours = Vec::new();
    G722Decoder::new().decode(bytes, &mut ours);
    assert_eq!(ours.len(), theirs.len(), "{name}: decoded length");
    if let Some(i) = ours.iter().zip(&theirs).position(|(a, b)| a != b) {
        panic!(
            "{name}: decoded sample {i} of {} differs: ffmpeg {}, ours {} (byte {} = {:#04x})",
            ours.len(),
            theirs[i],
            ours[i],
            i / 2,
            bytes[i / 2]
        );
    }
    ours.len()
}

/// Encodes `pcm` with ffmpeg and with us and compares the bytes, then compares the decodings of
/// those bytes. Returns (bytes, samples decoded) for the log.
fn compare(dir: &TempDir, name: &str, pcm: &[i16]) -> (usize, usize) {
    let raw = dir.path(&format!("{name}.in.raw"));
    write_s16le(&raw, pcm);
    let coded = dir.path(&format!("{name}.g722"));
    ffmpeg(&[
        "-f",
        "s16le",
        "-ar",
        "16000",
        "-ac",
        "1",
        "-i",
        s(&raw),
        "-c:a",
        "g722",
        "-f",
        "g722",
        s(&coded),
    ]);
    let theirs = std::fs::read(&coded).expect("read ffmpeg's G.722");
    assert_eq!(
        theirs.len(),
        pcm.len().div_ceil(2),
        "{name}: ffmpeg coded {} samples into {} bytes",
        pcm.len(),
        theirs.len()
    );

    let mut ours = Vec::new();
    let mut enc = G722Encoder::new();
    enc.encode(pcm, &mut ours);
    enc.flush(&mut ours);
    assert_eq!(ours.len(), theirs.len(), "{name}: encoded length");
    if let Some(i) = ours.iter().zip(&theirs).position(|(a, b)| a != b) {
        panic!(
            "{name}: encoded byte {i} of {} differs: ffmpeg {:#04x}, ours {:#04x} (input {:?})",
            ours.len(),
            theirs[i],
            ours[i],
            &pcm[2 * i..(2 * i + 2).min(pcm.len())]
        );
    }

    let samples = assert_decodes_like_ffmpeg(dir, name, &coded, &theirs);
    eprintln!(
        "{name}: {} samples -> {} bytes identical, {samples} decoded samples identical",
        pcm.len(),
        ours.len()
    );
    (ours.len(), samples)
}

/// A tiny deterministic generator (xorshift64*), so the random inputs are the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn tones_match_ffmpeg_both_ways() {
    if !have_peers(&["ffmpeg"]) {
        return;
    }
    let dir = TempDir::new("g722-tone");
    for (name, graph) in [
        // ffmpeg's default sine is at 1/8 of full scale.
        ("sine1k", "sine=frequency=1000:sample_rate=16000"),
        ("sine6k", "sine=frequency=6000:sample_rate=16000"),
        (
            "sweep_-40dB",
            "aevalsrc=0.01*sin(2*PI*(100+1000*t)*t):s=16000",
        ),
        (
            "sweep_near_full_scale",
            "aevalsrc=0.99*sin(2*PI*(50+1300*t)*t):s=16000",
        ),
        // Overdriven: half the samples clip at the rails.
        ("clipped_440", "aevalsrc=2*sin(2*PI*440*t):s=16000"),
        // Full-scale square at the Nyquist frequency: everything lands in the high band.
        ("nyquist_square", "aevalsrc=if(mod(n\\,2)\\,1\\,-1):s=16000"),
    ] {
        let pcm = render(&dir, name, graph, "3");
        assert_eq!(pcm.len(), 48000, "{name}: rendered length");
        compare(&dir, name, &pcm);
    }
}

#[test]
fn speech_like_noise_matches_ffmpeg_both_ways() {
    if !have_peers(&["ffmpeg"]) {
        return;
    }
    let dir = TempDir::new("g722-noise");
    for (name, graph) in [
        // Pink noise, band-limited like a voice, with syllable-rate amplitude modulation.
        (
            "pink_voiceband_-20dB",
            "anoisesrc=color=pink:sample_rate=16000:amplitude=0.1:seed=7,\
             highpass=f=120,lowpass=f=3800,tremolo=f=4:d=0.9",
        ),
        (
            "pink_voiceband_loud",
            "anoisesrc=color=pink:sample_rate=16000:amplitude=1:seed=11,\
             highpass=f=120,lowpass=f=6500,tremolo=f=3:d=0.8,volume=2",
        ),
        // A "vowel": harmonics of a wandering pitch, amplitude-modulated at 5 Hz.
        (
            "harmonics_am",
            "aevalsrc=0.5*(0.6+0.4*sin(2*PI*5*t))*(sin(2*PI*(140+20*sin(2*PI*t))*t)\
             +0.5*sin(2*PI*2*(140+20*sin(2*PI*t))*t)+0.3*sin(2*PI*5*(140+20*sin(2*PI*t))*t)):s=16000",
        ),
        (
            "white_full_scale",
            "anoisesrc=color=white:sample_rate=16000:amplitude=1:seed=3",
        ),
    ] {
        let pcm = render(&dir, name, graph, "4");
        assert_eq!(pcm.len(), 64000, "{name}: rendered length");
        compare(&dir, name, &pcm);
    }
}

#[test]
fn random_samples_and_odd_lengths_match_ffmpeg() {
    if !have_peers(&["ffmpeg"]) {
        return;
    }
    let dir = TempDir::new("g722-random-pcm");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // Uniform random 16-bit samples: the most hostile input for the encoder's clamps.
    let pcm: Vec<i16> = (0..40_000).map(|_| rng.next() as i16).collect();
    compare(&dir, "uniform_random", &pcm);
    // An odd count: ffmpeg pairs the last sample with a zero, and so does our flush.
    let odd: Vec<i16> = pcm[..16_001].to_vec();
    compare(&dir, "odd_length", &odd);
}

#[test]
fn random_bytes_decode_like_ffmpeg() {
    if !have_peers(&["ffmpeg"]) {
        return;
    }
    let dir = TempDir::new("g722-random-bytes");
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let bytes: Vec<u8> = (0..64_000).map(|_| (rng.next() >> 56) as u8).collect();
    let path = dir.path("random.g722");
    std::fs::write(&path, &bytes).unwrap();
    let n = assert_decodes_like_ffmpeg(&dir, "random_bytes", &path, &bytes);
    eprintln!(
        "random_bytes: {} bytes -> {n} samples identical",
        bytes.len()
    );

    // Runs of the extreme codes push the step size and predictor to their limits.
    let mut extremes = Vec::new();
    for code in [0x00u8, 0x04, 0x20, 0xff, 0x3f, 0xc4, 0x84] {
        for _ in 0..3000 {
            extremes.push(code);
        }
        for _ in 0..500 {
            extremes.push((rng.next() >> 56) as u8);
        }
    }
    let path = dir.path("extremes.g722");
    std::fs::write(&path, &extremes).unwrap();
    let n = assert_decodes_like_ffmpeg(&dir, "extreme_runs", &path, &extremes);
    eprintln!(
        "extreme_runs: {} bytes -> {n} samples identical",
        extremes.len()
    );
}
