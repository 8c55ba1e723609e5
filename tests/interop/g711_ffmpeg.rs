//! G.711 against ffmpeg: our µ-law and A-law encoders and decoders must match ffmpeg's
//! `pcm_mulaw` / `pcm_alaw` byte for byte, on a tone ffmpeg generates and on every 16-bit value.
//!
//! When ffmpeg is missing the test prints a notice and passes, except in CI (`CI=true`), where a
//! missing peer is a failure.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use roomkit_media::codec::g711::{alaw_decode, alaw_encode, ulaw_decode, ulaw_encode};

/// A scratch directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "rkm-g711-{tag}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// True when ffmpeg can be run; otherwise skips (or fails under CI).
fn have_ffmpeg() -> bool {
    let ok = Command::new("timeout")
        .args(["60", "ffmpeg", "-nostdin", "-version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("ffmpeg is required in CI (CI=true) but could not be run");
        }
        eprintln!("SKIP: ffmpeg not found; G.711 interop test not run");
    }
    ok
}

/// Runs ffmpeg (bounded to 60 s) with `args`, failing the test with its stderr on error.
fn ffmpeg(args: &[&str]) {
    let out = Command::new("timeout")
        .args(["60", "ffmpeg", "-nostdin", "-v", "error", "-y"])
        .args(args)
        .output()
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

fn read_s16le(p: &Path) -> Vec<i16> {
    let bytes = std::fs::read(p).expect("read s16le");
    assert_eq!(bytes.len() % 2, 0);
    bytes
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect()
}

fn write_s16le(p: &Path, pcm: &[i16]) {
    let bytes: Vec<u8> = pcm.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(p, bytes).expect("write s16le");
}

fn first_mismatch<T: PartialEq + Copy + std::fmt::Debug>(
    a: &[T],
    b: &[T],
) -> Option<(usize, T, T)> {
    a.iter()
        .zip(b)
        .enumerate()
        .find(|(_, (x, y))| x != y)
        .map(|(i, (x, y))| (i, *x, *y))
}

/// Encodes `raw` (s16le, 8 kHz mono) with ffmpeg and with us, for both laws, and compares; then
/// decodes ffmpeg's encodings with ffmpeg and with us, and compares.
fn compare_both_laws(dir: &TempDir, raw: &Path, pcm: &[i16]) {
    for (codec, format, encode, decode) in [
        (
            "pcm_mulaw",
            "mulaw",
            ulaw_encode as fn(&[i16], &mut Vec<u8>),
            ulaw_decode as fn(&[u8], &mut Vec<i16>),
        ),
        ("pcm_alaw", "alaw", alaw_encode, alaw_decode),
    ] {
        let enc_path = dir.path(&format!("out.{format}"));
        ffmpeg(&[
            "-f",
            "s16le",
            "-ar",
            "8000",
            "-ac",
            "1",
            "-i",
            s(raw),
            "-c:a",
            codec,
            "-f",
            format,
            s(&enc_path),
        ]);
        let theirs = std::fs::read(&enc_path).expect("read ffmpeg output");
        let mut ours = Vec::new();
        encode(pcm, &mut ours);
        assert_eq!(theirs.len(), ours.len(), "{codec}: encoded length");
        if let Some((i, t, o)) = first_mismatch(&theirs, &ours) {
            panic!(
                "{codec} encode differs at sample {i} (input {}): ffmpeg {t:#04x}, ours {o:#04x}",
                pcm[i]
            );
        }

        let dec_path = dir.path(&format!("dec.{format}.raw"));
        ffmpeg(&[
            "-f",
            format,
            "-ar",
            "8000",
            "-ac",
            "1",
            "-i",
            s(&enc_path),
            "-f",
            "s16le",
            s(&dec_path),
        ]);
        let theirs = read_s16le(&dec_path);
        let mut ours = Vec::new();
        decode(
            &std::fs::read(&enc_path).expect("read encoded file"),
            &mut ours,
        );
        assert_eq!(theirs.len(), ours.len(), "{codec}: decoded length");
        if let Some((i, t, o)) = first_mismatch(&theirs, &ours) {
            panic!("{codec} decode differs at sample {i}: ffmpeg {t}, ours {o}");
        }
    }
}

#[test]
fn tone_matches_ffmpeg() {
    if !have_ffmpeg() {
        return;
    }
    let dir = TempDir::new("tone");
    let raw = dir.path("tone.raw");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=8000",
        "-t",
        "2",
        "-f",
        "s16le",
        "-ac",
        "1",
        s(&raw),
    ]);
    let pcm = read_s16le(&raw);
    assert_eq!(pcm.len(), 16000);
    compare_both_laws(&dir, &raw, &pcm);
}

#[test]
fn every_sample_value_matches_ffmpeg() {
    if !have_ffmpeg() {
        return;
    }
    let dir = TempDir::new("sweep");
    let raw = dir.path("sweep.raw");
    let pcm: Vec<i16> = (i16::MIN..=i16::MAX).collect();
    write_s16le(&raw, &pcm);
    compare_both_laws(&dir, &raw, &pcm);
}

#[test]
fn every_code_decodes_like_ffmpeg() {
    if !have_ffmpeg() {
        return;
    }
    let dir = TempDir::new("codes");
    let codes: Vec<u8> = (0..=255u8).collect();
    for (format, decode) in [
        ("mulaw", ulaw_decode as fn(&[u8], &mut Vec<i16>)),
        ("alaw", alaw_decode),
    ] {
        let enc = dir.path(&format!("codes.{format}"));
        std::fs::write(&enc, &codes).expect("write codes");
        let dec = dir.path(&format!("codes.{format}.raw"));
        ffmpeg(&[
            "-f",
            format,
            "-ar",
            "8000",
            "-ac",
            "1",
            "-i",
            s(&enc),
            "-f",
            "s16le",
            s(&dec),
        ]);
        let theirs = read_s16le(&dec);
        let mut ours = Vec::new();
        decode(&codes, &mut ours);
        assert_eq!(theirs, ours, "{format}: decoding all 256 codes");
    }
}
