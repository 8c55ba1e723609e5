//! `roomkit-media call` against `roomkit-media serve --echo --record`: the caller's H.264 clip and
//! tone come back (echo), the recording holds the clip's pictures, and the WAV is mono 16-bit
//! PCM with the call's audio at the codec's own rate: both sides prefer Opus, so 48 kHz.

mod support;

use support::peers;

use std::io::{BufRead, BufReader};
use std::time::Duration;

#[test]
fn call_to_serve_with_echo_and_record() {
    if !peers::have_peers(&["ffmpeg"]) {
        return;
    }
    let dir = peers::TempDir::new("sip-cli");
    let clip = dir.path("clip.h264");
    peers::make_h264_clip(
        &clip,
        "testsrc=size=320x240:rate=30",
        2,
        &["-profile:v", "baseline", "-g", "30"],
    );
    let port = peers::free_udp_port();
    let sip = format!("127.0.0.1:{port}");
    let rec = dir.path("rec");
    let bin = peers::bin();
    let mut serve = peers::spawn(
        60,
        bin.to_str().unwrap(),
        &[
            "serve",
            "--sip",
            &sip,
            "--rtp-ip",
            "127.0.0.1",
            "--rtp-ports",
            "39200-39399",
            "--echo",
            "--record",
            rec.to_str().unwrap(),
            "--max-calls",
            "1",
        ],
    );
    let mut lines = BufReader::new(serve.stdout.take().unwrap()).lines();
    assert!(lines.next().unwrap().unwrap().contains("listening"));
    let uri = format!("sip:echo@{sip}");
    let out = peers::run(
        60,
        bin.to_str().unwrap(),
        &[
            "call",
            &uri,
            "--video",
            clip.to_str().unwrap(),
            "--seconds",
            "2.5",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let stats = peers::json_stats(&out.stdout);
    let sent = peers::stat(&stats, "pictures_sent");
    assert!((70..=76).contains(&sent), "{text}");
    assert!(
        peers::stat(&stats, "frames_received") >= 70,
        "echoed video: {text}"
    );
    assert!(
        peers::stat(&stats, "audio_frames_received") >= 100,
        "echoed audio: {text}"
    );
    let served = peers::wait_bounded(serve, Duration::from_secs(20));
    assert!(served.status.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(
        rest.iter().any(|l| l.contains("\"event\":\"hangup\"")),
        "{rest:?}"
    );
    let files: Vec<_> = std::fs::read_dir(&rec)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let h264 = files
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "h264"))
        .unwrap();
    let wav = std::fs::read(h264.with_extension("wav")).unwrap();
    assert_eq!(&wav[0..4], b"RIFF");
    assert_eq!(u16::from_le_bytes([wav[22], wav[23]]), 1, "mono");
    assert_eq!(
        u32::from_le_bytes([wav[24], wav[25], wav[26], wav[27]]),
        48_000
    );
    assert_eq!(u16::from_le_bytes([wav[34], wav[35]]), 16);
    let data = u32::from_le_bytes([wav[40], wav[41], wav[42], wav[43]]) as usize;
    assert_eq!(data, wav.len() - 44, "sizes patched at close");
    assert!(
        data >= 2 * 48_000 * 2,
        "two seconds of audio or more: {data} bytes"
    );
    // The recording decodes to the clip's pictures (looped: about 75 sent from a 60-picture clip).
    let want = peers::frame_md5s(&clip, &["-framerate", "30"]);
    let got = peers::frame_md5s(h264, &["-framerate", "30"]);
    assert_eq!(got.len() as i64, sent);
    assert_eq!(&got[..60], &want[..]);
}
