//! H.264 against real, independently written peers: ffmpeg (`-f rtp`) and GStreamer
//! (`rtph264pay` / `rtph264depay`), in both directions. Pictures are compared decoded
//! (`ffmpeg -f framemd5`), not byte for byte, since each packetizer may carry parameter sets
//! differently.

use crate::support;

use support::peers;

use peers::*;
use std::time::Duration;

const SMALL: &str = "testsrc=size=640x480:rate=30";
const BIG: &str = "testsrc2=size=1920x1080:rate=30";

fn ffmpeg_to_recv(clip_source: &str, seconds: u32, x264: &[&str]) {
    let dir = TempDir::new("ff2rkm");
    let clip = dir.path("clip.h264");
    make_h264_clip(&clip, clip_source, seconds, x264);
    let out = dir.path("out.h264");
    let (recv, port) = start_recv(&out, "h264", None);
    let url = format!("rtp://127.0.0.1:{port}");
    run(
        120,
        "ffmpeg",
        &[
            "-nostdin",
            "-v",
            "error",
            "-re",
            "-framerate",
            "30",
            "-i",
            clip.to_str().unwrap(),
            "-c",
            "copy",
            "-pkt_size",
            "1200",
            "-f",
            "rtp",
            &url,
        ],
    );
    let done = wait_bounded(recv, Duration::from_secs(30));
    assert!(
        done.status.success(),
        "recv failed: {}",
        String::from_utf8_lossy(&done.stderr)
    );
    let stats = json_stats(&done.stdout);
    assert_eq!(stat(&stats, "lost"), 0, "{stats:?}");
    assert_eq!(stat(&stats, "dropped_frames"), 0, "{stats:?}");
    assert!(stat(&stats, "keyframes") >= 1, "{stats:?}");
    assert_same_pictures(&clip, &out, 0);
}

fn gstreamer_to_recv(clip_source: &str, seconds: u32, x264: &[&str]) {
    let dir = TempDir::new("gst2rkm");
    let clip = dir.path("clip.h264");
    make_h264_clip(&clip, clip_source, seconds, x264);
    let out = dir.path("out.h264");
    let (recv, port) = start_recv(&out, "h264", None);
    let pipeline = format!(
        "filesrc location={} ! h264parse ! video/x-h264,framerate=30/1 ! identity sync=true ! \
         rtph264pay config-interval=-1 pt=96 mtu=1200 ! udpsink host=127.0.0.1 port={port}",
        clip.display()
    );
    let args: Vec<&str> = pipeline.split_whitespace().collect();
    let mut full = vec!["-q"];
    full.extend(args);
    run(120, "gst-launch-1.0", &full);
    let done = wait_bounded(recv, Duration::from_secs(30));
    assert!(
        done.status.success(),
        "recv failed: {}",
        String::from_utf8_lossy(&done.stderr)
    );
    let stats = json_stats(&done.stdout);
    assert_eq!(stat(&stats, "lost"), 0, "{stats:?}");
    assert_same_pictures(&clip, &out, 0);
}

fn send_to_gstreamer(clip_source: &str, seconds: u32, x264: &[&str]) {
    let dir = TempDir::new("rkm2gst");
    let clip = dir.path("clip.h264");
    make_h264_clip(&clip, clip_source, seconds, x264);
    let out = dir.path("out.h264");
    let port = free_udp_port();
    let pipeline = format!(
        "udpsrc address=127.0.0.1 port={port} buffer-size=8388608 \
         caps=application/x-rtp,media=video,clock-rate=90000,encoding-name=H264,payload=96 ! \
         rtph264depay ! video/x-h264,stream-format=byte-stream,alignment=au ! filesink buffer-mode=unbuffered location={}",
        out.display()
    );
    let mut args = vec!["-q", "-e"];
    args.extend(pipeline.split_whitespace());
    let gst = spawn(120, "gst-launch-1.0", &args);
    assert!(
        wait_udp_bound(port, Duration::from_secs(20)),
        "GStreamer did not bind its port"
    );
    let to = format!("127.0.0.1:{port}");
    let sent = run(
        120,
        bin().to_str().unwrap(),
        &["send", "--to", &to, clip.to_str().unwrap(), "--fps", "60"],
    );
    let stats = json_stats(&sent.stdout);
    // EOS drops what udpsrc has not read yet: wait until the file stops growing first.
    wait_file_stable(&out, Duration::from_millis(800), Duration::from_secs(30));
    interrupt(&gst);
    let done = wait_bounded(gst, Duration::from_secs(20));
    assert!(
        out.exists(),
        "GStreamer wrote nothing: {}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(stat(&stats, "frames") > 0);
    assert_same_pictures(&clip, &out, 0);
}

fn send_to_ffmpeg(clip_source: &str, seconds: u32, x264: &[&str]) {
    let dir = TempDir::new("rkm2ff");
    let clip = dir.path("clip.h264");
    make_h264_clip(&clip, clip_source, seconds, x264);
    let out = dir.path("out.h264");
    let media =
        "m=video {port} RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1\r\n";
    send_to_ffmpeg_receiver(&clip, &out, media, "h264", &[]);
    // ffmpeg may lose the last picture at the end of the stream (INTEROP.md).
    assert_same_pictures(&clip, &out, 2);
}

const BASELINE: &[&str] = &["-profile:v", "baseline", "-g", "30"];
const HIGH_RATE: &[&str] = &["-crf", "18", "-g", "15"];
const SLICES: &[&str] = &[
    "-profile:v",
    "baseline",
    "-g",
    "30",
    "-x264-params",
    "slices=4",
];

#[test]
fn ffmpeg_sends_h264_to_recv() {
    if have_peers(&["ffmpeg"]) {
        ffmpeg_to_recv(SMALL, 3, BASELINE);
    }
}

#[test]
fn gstreamer_sends_h264_to_recv() {
    if have_peers(&["ffmpeg", "gst-launch-1.0"]) {
        gstreamer_to_recv(SMALL, 3, BASELINE);
    }
}

#[test]
fn send_h264_to_gstreamer() {
    if have_peers(&["ffmpeg", "gst-launch-1.0"]) {
        send_to_gstreamer(SMALL, 3, BASELINE);
    }
}

#[test]
fn send_h264_to_ffmpeg() {
    if have_peers(&["ffmpeg"]) {
        send_to_ffmpeg(SMALL, 3, BASELINE);
    }
}

#[test]
fn big_1080p_idr_pictures_both_ways() {
    if have_peers(&["ffmpeg", "gst-launch-1.0"]) {
        ffmpeg_to_recv(BIG, 2, HIGH_RATE);
        send_to_gstreamer(BIG, 2, HIGH_RATE);
    }
}

#[test]
fn four_slices_per_picture_both_ways() {
    if have_peers(&["ffmpeg", "gst-launch-1.0"]) {
        // Not GStreamer as the sender here: with config-interval=-1 rtph264pay puts SPS/PPS in
        // front of every IDR slice, splitting each key picture for any decoder downstream.
        ffmpeg_to_recv(SMALL, 2, SLICES);
        send_to_gstreamer(SMALL, 2, SLICES);
    }
}
