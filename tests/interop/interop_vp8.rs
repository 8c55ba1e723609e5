//! VP8 (RFC 7741) against ffmpeg's RTP muxer and demuxer, in both directions.

use crate::support;

use support::peers;

use peers::*;
use std::time::Duration;

const SOURCE: &str = "testsrc=size=640x480:rate=30";

#[test]
fn ffmpeg_sends_vp8_to_recv() {
    if !have_peers(&["ffmpeg"]) {
        return;
    }
    let dir = TempDir::new("ffvp8");
    let clip = dir.path("clip.ivf");
    make_vp8_clip(&clip, SOURCE, 3);
    let out = dir.path("out.ivf");
    let (recv, port) = start_recv(&out, "vp8", None);
    let url = format!("rtp://127.0.0.1:{port}");
    run(
        120,
        "ffmpeg",
        &[
            "-nostdin",
            "-v",
            "error",
            "-re",
            "-i",
            clip.to_str().unwrap(),
            "-c",
            "copy",
            "-f",
            "rtp",
            &url,
        ],
    );
    let done = wait_bounded(recv, Duration::from_secs(30));
    assert!(done.status.success());
    let stats = json_stats(&done.stdout);
    assert_eq!(stat(&stats, "lost"), 0, "{stats:?}");
    assert!(stat(&stats, "keyframes") >= 1, "{stats:?}");
    let want = frame_md5s(&clip, &[]);
    let got = frame_md5s(&out, &[]);
    assert_eq!(got, want);
}

#[test]
fn send_vp8_to_ffmpeg() {
    if !have_peers(&["ffmpeg"]) {
        return;
    }
    let dir = TempDir::new("vp8ff");
    let clip = dir.path("clip.ivf");
    make_vp8_clip(&clip, SOURCE, 3);
    let out = dir.path("out.ivf");
    let media = "m=video {port} RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n";
    send_to_ffmpeg_receiver(&clip, &out, media, "ivf", &["--codec", "vp8"]);
    assert_same_pictures(&clip, &out, 2);
}
