//! Wideband calls with baresip, a real softphone, both ways:
//! - baresip, with only its G.722 (or only its Opus) module, calls `roomkit-media serve
//!   --record`: the call is answered with that codec and the recording, at the codec's own rate
//!   (16 kHz for G.722, 48 kHz for Opus), holds baresip's 440 Hz tone;
//! - `roomkit-media call --audio-codec g722|opus` calls baresip, which answers, decodes our
//!   440 Hz tone and writes it to a WAV (its `sndfile` module), where the tone must be.
//!
//! A missing baresip, ffmpeg or baresip module skips the tests, except under CI (`CI=true`),
//! where it fails them.

use crate::support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use roomkit_media::codec::tone::{db, level_at, zero_crossing_frequency};
use support::baresip::{have_modules, read_wav, write_audio_config};
use support::peers;

const TONE: f64 = 440.0;

/// The tone checks on a recording: after half a second, 440 Hz within 3 Hz and the level
/// within 2 dB of `amplitude`, over at least two seconds.
fn assert_tone(what: &str, pcm: &[i16], rate: u32, amplitude: f64) {
    let skip = rate as usize / 2;
    assert!(
        pcm.len() > skip + 2 * rate as usize,
        "{what}: only {} samples at {rate} Hz",
        pcm.len()
    );
    let steady = &pcm[skip..pcm.len() - rate as usize / 5];
    let f = zero_crossing_frequency(steady, rate).expect("a tone");
    let level = db(level_at(steady, rate, TONE), amplitude);
    println!("{what}: {f:.2} Hz, level {level:+.2} dB");
    assert!((f - TONE).abs() < 3.0, "{what}: frequency {f}");
    assert!(level.abs() < 2.0, "{what}: level {level} dB");
}

/// A 20 s WAV of the tone at `rate` with `channels` (baresip's file source wants the codec's
/// own format).
fn tone_wav(path: &Path, rate: u32, channels: u32) {
    peers::make_tone_wav(path, TONE, rate, channels, 20);
}

/// The codec under test: baresip's module, the name `serve` reports, the recording's rate, and
/// the channels of baresip's audio source.
struct Case {
    module: &'static str,
    cli_name: &'static str,
    reported: &'static str,
    rate: u32,
    channels: u32,
}

const G722: Case = Case {
    module: "g722.so",
    cli_name: "g722",
    reported: "G722",
    rate: 16_000,
    channels: 1,
};

const OPUS: Case = Case {
    module: "opus.so",
    cli_name: "opus",
    reported: "opus",
    rate: 48_000,
    channels: 1,
};

/// Opus in baresip as a mono call, the way we answer it (its file source is then mono too).
const OPUS_LINES: &[&str] = &["opus_stereo\t\tno", "opus_sprop_stereo\tno"];

fn extra(c: &Case) -> Vec<&'static str> {
    if c.module == "opus.so" {
        OPUS_LINES.to_vec()
    } else {
        Vec::new()
    }
}

fn baresip_calls_serve(c: &Case) {
    if !peers::have_peers(&["baresip", "ffmpeg"]) || !have_modules(&[c.module]) {
        return;
    }
    let dir = peers::TempDir::new(&format!("wb-serve-{}", c.cli_name));
    let wav = dir.path("tone.wav");
    tone_wav(&wav, c.rate, c.channels);
    let bport = peers::free_udp_port();
    let conf = dir.path("baresip");
    write_audio_config(&conf, bport, &wav, &[c.module], &extra(c));

    let served = support::baresip::dial_recording_serve(&dir, &conf, "37000-37999", 7);
    let call = &served.call;
    eprintln!("{call}");
    assert!(
        call.contains(&format!("\"audio_codec\":\"{}", c.reported)),
        "{call}"
    );
    assert!(
        call.contains(&format!("\"sample_rate\":{}", c.rate)),
        "{call}"
    );
    let wavs = served.recorded("wav");
    assert_eq!(wavs.len(), 1);
    let w = read_wav(&wavs[0]);
    assert_eq!((w.rate, w.channels), (c.rate, 1));
    if w.samples.is_empty() {
        panic!(
            "nothing recorded; {}\n--- baresip ---\n{}",
            served.lines.join("\n"),
            served.baresip
        );
    }
    assert_tone(
        &format!("baresip {} -> serve", c.cli_name),
        &w.samples,
        w.rate,
        32768.0 / 8.0,
    );
}

fn call_reaches_baresip(c: &Case) {
    if !peers::have_peers(&["baresip", "ffmpeg"]) || !have_modules(&[c.module, "sndfile.so"]) {
        return;
    }
    let dir = peers::TempDir::new(&format!("wb-call-{}", c.cli_name));
    let wav = dir.path("tone.wav");
    tone_wav(&wav, c.rate, c.channels);
    let bport = peers::free_udp_port();
    let conf = dir.path("baresip");
    let dumps = dir.path("dumps");
    std::fs::create_dir_all(&dumps).unwrap();
    // baresip's sndfile module writes what it decodes to `snd_path`.
    let snd_path = format!("snd_path\t\t{}", dumps.to_str().unwrap());
    let mut lines = extra(c);
    lines.push("module\t\t\tsndfile.so");
    let mut lines: Vec<String> = lines.into_iter().map(String::from).collect();
    lines.push(snd_path);
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    write_audio_config(&conf, bport, &wav, &[c.module], &lines);
    // Without -e baresip answers on its port by itself; -t ends it.
    let baresip = peers::spawn(
        60,
        "baresip",
        &["-4", "-f", conf.to_str().unwrap(), "-t", "12"],
    );
    assert!(
        peers::wait_udp_bound(bport, Duration::from_secs(20)),
        "baresip did not bind its SIP port"
    );
    let uri = format!("sip:baresip@127.0.0.1:{bport}");
    let out = peers::run(
        60,
        peers::bin().to_str().unwrap(),
        &[
            "call",
            &uri,
            "--audio-only",
            "--audio-codec",
            c.cli_name,
            "--seconds",
            "4",
        ],
    );
    let b_out = peers::wait_bounded(baresip, Duration::from_secs(60));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let b_text = format!(
        "{}{}",
        String::from_utf8_lossy(&b_out.stdout),
        String::from_utf8_lossy(&b_out.stderr)
    );
    assert!(
        out.status.success(),
        "call failed: {stdout}{}\n--- baresip ---\n{b_text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = stdout
        .lines()
        .find(|l| l.contains("\"call_id\""))
        .expect("call summary");
    eprintln!("{summary}");
    assert!(
        summary.contains(&format!("\"audio_codec\":\"{}", c.reported)),
        "{summary}"
    );
    assert!(
        summary.contains(&format!("\"sample_rate\":{}", c.rate)),
        "{summary}"
    );
    // Our side decoded baresip's tone too.
    assert!(
        !summary.contains("\"audio_frames_received\":0,"),
        "{summary}"
    );
    let decoded: Vec<PathBuf> = std::fs::read_dir(&dumps)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_str().is_some_and(|s| s.ends_with("-dec.wav")))
        .collect();
    assert_eq!(decoded.len(), 1, "baresip wrote no decoding:\n{b_text}");
    let w = read_wav(&decoded[0]);
    assert_eq!(w.rate, c.rate, "baresip decoded at {} Hz", w.rate);
    assert_tone(
        &format!("call {} -> baresip", c.cli_name),
        &w.mono(),
        w.rate,
        8000.0,
    );
}

#[test]
fn baresip_g722_call_to_serve_is_recorded_at_16_khz() {
    baresip_calls_serve(&G722);
}

#[test]
fn baresip_opus_call_to_serve_is_recorded_at_48_khz() {
    baresip_calls_serve(&OPUS);
}

#[test]
fn our_g722_call_is_decoded_by_baresip() {
    call_reaches_baresip(&G722);
}

#[test]
fn our_opus_call_is_decoded_by_baresip() {
    call_reaches_baresip(&OPUS);
}
