//! VP8 (RFC 7741) against ffmpeg's RTP muxer and demuxer, in both directions.

mod common;

use common::*;
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
    let mut recv = spawn(
        120,
        bin().to_str().unwrap(),
        &[
            "recv",
            "--listen",
            "127.0.0.1:0",
            "--out",
            out.to_str().unwrap(),
            "--codec",
            "vp8",
            "--timeout",
            "3",
        ],
    );
    let mut err = stderr_reader(&mut recv);
    let addr =
        read_line_with(&mut err, "listening on", Duration::from_secs(20)).expect("recv address");
    let url = format!("rtp://127.0.0.1:{}", addr.rsplit(':').next().unwrap());
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
    let port = free_udp_port();
    let sdp = dir.path("in.sdp");
    std::fs::write(
        &sdp,
        format!(
            "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=roomkit-media\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=video {port} RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n"
        ),
    )
    .unwrap();
    let ff = spawn(
        120,
        "ffmpeg",
        &[
            "-nostdin",
            "-v",
            "error",
            "-rw_timeout",
            "1000000",
            "-protocol_whitelist",
            "file,udp,rtp",
            "-buffer_size",
            "8388608",
            "-i",
            sdp.to_str().unwrap(),
            "-c",
            "copy",
            "-f",
            "ivf",
            out.to_str().unwrap(),
        ],
    );
    assert!(
        wait_udp_bound(port, Duration::from_secs(20)),
        "ffmpeg did not bind its port"
    );
    let to = format!("127.0.0.1:{port}");
    run(
        120,
        bin().to_str().unwrap(),
        &[
            "send",
            "--to",
            &to,
            "--codec",
            "vp8",
            clip.to_str().unwrap(),
            "--fps",
            "30",
        ],
    );
    // ffmpeg stops by itself once no packet came for a while (-rw_timeout); a SIGINT would race
    // its output flush.
    let done = wait_bounded(ff, Duration::from_secs(60));
    assert!(
        out.exists(),
        "ffmpeg wrote nothing: {}",
        String::from_utf8_lossy(&done.stderr)
    );
    let want = frame_md5s(&clip, &[]);
    let got = frame_md5s(&out, &[]);
    assert!(
        got.len() + 2 >= want.len() && got.len() <= want.len(),
        "got {} of {}",
        got.len(),
        want.len()
    );
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "picture {i} differs");
    }
}
