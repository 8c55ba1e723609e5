//! baresip, a real softphone, places an audio + H.264 video call to `roomkit-media serve
//! --record`: its video (libx264 from an MP4 file) is recorded as Annex-B and must decode with
//! ffmpeg to a sensible number of pictures, and its audio (an 8 kHz WAV) lands in the WAV.

mod support;

use support::peers;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::time::Duration;

#[test]
fn baresip_av_call_is_recorded_and_decodes() {
    if !peers::have_peers(&["baresip", "ffmpeg"]) {
        return;
    }
    let dir = peers::TempDir::new("baresip");
    let media = support::baresip::Media::generate(&dir, 20, "640x480", 250);
    // baresip's own SIP port, and its config from the shared headless templates.
    let bport = peers::free_udp_port();
    let accounts = support::baresip::template("accounts").replace("@SIP_PORT@", &bport.to_string());
    let conf = support::baresip::write_config(&dir, bport, "40000-40100", &media, &accounts);

    let port = peers::free_udp_port();
    let sip = format!("127.0.0.1:{port}");
    let rec = dir.path("rec");
    let mut serve = peers::spawn(
        120,
        peers::bin().to_str().unwrap(),
        &[
            "serve",
            "--sip",
            &sip,
            "--rtp-ip",
            "127.0.0.1",
            "--rtp-ports",
            "38000-38999",
            "--record",
            rec.to_str().unwrap(),
            "--max-calls",
            "1",
        ],
    );
    let mut lines = BufReader::new(serve.stdout.take().unwrap()).lines();
    let first = lines.next().expect("serve output").unwrap();
    assert!(first.contains("listening"), "{first}");

    let dial = format!("/dial sip:test@{sip}");
    let baresip = peers::spawn(
        60,
        "baresip",
        &["-4", "-f", conf.to_str().unwrap(), "-e", &dial, "-t", "8"],
    );
    let b_out = peers::wait_bounded(baresip, Duration::from_secs(60));
    let out = peers::wait_bounded(serve, Duration::from_secs(30));
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let all = format!("{first}\n{}", rest.join("\n"));
    assert!(
        out.status.success(),
        "serve failed: {}\n{all}\n--- baresip ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&b_out.stdout)
    );
    let call = rest
        .iter()
        .find(|l| l.contains("\"event\":\"call\""))
        .unwrap_or_else(|| {
            panic!(
                "no call event:\n{all}\n--- baresip ---\n{}{}",
                String::from_utf8_lossy(&b_out.stdout),
                String::from_utf8_lossy(&b_out.stderr)
            )
        });
    assert!(call.contains("\"has_video\":true"), "{call}");
    assert!(call.contains("\"video_codec\":\"h264\""), "{call}");
    let hangup = rest
        .iter()
        .find(|l| l.contains("\"event\":\"hangup\""))
        .expect("hangup event");
    eprintln!("baresip call: {call}\n{hangup}");

    let h264: Vec<PathBuf> = std::fs::read_dir(&rec)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "h264"))
        .collect();
    assert_eq!(h264.len(), 1);
    let pictures = peers::frame_md5s(&h264[0], &["-framerate", "30"]);
    // About 8 s of a 30 fps source minus call setup: anything under two seconds' worth means
    // the video did not really flow.
    assert!(
        pictures.len() >= 60,
        "only {} pictures decoded; {hangup}",
        pictures.len()
    );
    let wav_len = std::fs::metadata(h264[0].with_extension("wav"))
        .unwrap()
        .len();
    assert!(wav_len > 44 + 8000 * 2, "audio recorded: {wav_len} bytes");
}
