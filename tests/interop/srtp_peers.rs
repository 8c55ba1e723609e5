//! Independent SRTP implementations with fixed SDES-style keys, H.264 both ways, every picture
//! compared decoded against the source clip (ffmpeg framemd5):
//! - GStreamer's `srtpenc` (libsrtp) protects, our RTP video backend unprotects, under each of
//!   our three suites;
//! - our backend protects, ffmpeg's own SRTP (libavformat, from `a=crypto` in an SDP file)
//!   unprotects, under the two AES-CM suites it has.

use crate::support;

use std::net::SocketAddr;
use std::time::Duration;

use roomkit_media::backend::{ConnectOptions, RtpBackendConfig, RtpVideoBackend};
use roomkit_media::prelude::*;
use roomkit_media::{SrtpKey, SrtpKeys, SrtpSuite};
use support::peers::*;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// srtpenc's names for a suite: (rtp-cipher, rtp-auth, rtcp-cipher, rtcp-auth).
fn gst_suite(suite: SrtpSuite) -> [&'static str; 4] {
    match suite {
        SrtpSuite::AesCm128HmacSha1_80 => {
            ["aes-128-icm", "hmac-sha1-80", "aes-128-icm", "hmac-sha1-80"]
        }
        SrtpSuite::AesCm128HmacSha1_32 => {
            ["aes-128-icm", "hmac-sha1-32", "aes-128-icm", "hmac-sha1-80"]
        }
        SrtpSuite::AeadAes128Gcm => ["aes-128-gcm", "null", "aes-128-gcm", "null"],
    }
}

fn gstreamer_srtp_to_backend(suite: SrtpSuite) {
    let dir = TempDir::new("gst-srtp");
    let clip = dir.path("clip.h264");
    make_h264_clip(&clip, "testsrc=size=640x480:rate=30", 3, &[]);
    let key = SrtpKey::from_os_rng(suite);
    // GStreamer sends from a port of its own: take the first source that authenticates.
    let cfg = support::rtp::loopback_config(RtpBackendConfig {
        latch_to_first_source: true,
        ..RtpBackendConfig::default()
    });
    let be = RtpVideoBackend::new(cfg).unwrap();
    let rx = support::rtp::collect(&be);
    let nowhere: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let info = be
        .connect(
            "room",
            "gst",
            ConnectOptions {
                video_srtp: Some(SrtpKeys {
                    send: SrtpKey::from_os_rng(suite),
                    recv: key.clone(),
                }),
                ..ConnectOptions::to(nowhere, Some(nowhere))
            },
        )
        .unwrap();
    let port = info.video.as_ref().unwrap().local_addr.port();
    let [rc, ra, cc, ca] = gst_suite(suite);
    let pipeline = format!(
        "filesrc location={} ! h264parse ! video/x-h264,framerate=30/1 ! identity sync=true ! \
         rtph264pay config-interval=-1 pt=96 mtu=1200 ! srtpenc key={} rtp-cipher={rc} \
         rtp-auth={ra} rtcp-cipher={cc} rtcp-auth={ca} ! udpsink host=127.0.0.1 port={port}",
        clip.display(),
        hex(key.key_and_salt())
    );
    let mut args = vec!["-q"];
    args.extend(pipeline.split_whitespace());
    run(120, "gst-launch-1.0", &args);
    std::thread::sleep(Duration::from_millis(500));
    let frames: Vec<Vec<u8>> = rx.video.try_iter().map(|(_, f)| f.data).collect();
    let st = be.stats(info.id).unwrap().video.unwrap();
    assert!(!frames.is_empty(), "{suite}: nothing delivered: {st:?}");
    assert_eq!(
        (st.srtp_auth_failed, st.srtp_replayed),
        (0, 0),
        "{suite}: {st:?}"
    );
    let out = dir.path("out.h264");
    std::fs::write(&out, frames.concat()).unwrap();
    assert_same_pictures(&clip, &out, 0);
    eprintln!(
        "GStreamer srtpenc -> us, {suite}: {} pictures, bit-exact",
        frames.len()
    );
}

#[test]
fn gstreamer_srtpenc_to_our_backend_is_bit_exact() {
    if !have_peers(&["ffmpeg", "gst-launch-1.0"]) {
        return;
    }
    for suite in SrtpSuite::ALL {
        gstreamer_srtp_to_backend(suite);
    }
}

fn backend_to_ffmpeg_srtp(suite: SrtpSuite) {
    let dir = TempDir::new("srtp-ffmpeg");
    let clip = dir.path("clip.h264");
    make_h264_clip(&clip, "testsrc=size=640x480:rate=30", 3, &[]);
    let key = SrtpKey::from_os_rng(suite);
    let port = free_udp_port();
    let sdp = dir.path("in.sdp");
    std::fs::write(
        &sdp,
        format!(
            "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=srtp\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=video {port} RTP/SAVP 96\r\na=rtpmap:96 H264/90000\r\n\
             a=fmtp:96 packetization-mode=1\r\na=crypto:{}\r\n",
            roomkit_media::sdp::format_crypto(1, &key)
        ),
    )
    .unwrap();
    let out = dir.path("out.h264");
    let ff = spawn(
        120,
        "ffmpeg",
        &[
            "-nostdin",
            "-v",
            "error",
            "-rw_timeout",
            "1500000",
            "-protocol_whitelist",
            "file,udp,rtp,srtp",
            "-buffer_size",
            "8388608",
            "-i",
            sdp.to_str().unwrap(),
            "-c",
            "copy",
            "-f",
            "h264",
            out.to_str().unwrap(),
        ],
    );
    assert!(
        wait_udp_bound(port, Duration::from_secs(20)),
        "ffmpeg bound"
    );
    let be =
        RtpVideoBackend::new(support::rtp::loopback_config(RtpBackendConfig::default())).unwrap();
    let to: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let info = be
        .connect(
            "room",
            "ffmpeg",
            ConnectOptions {
                video_srtp: Some(SrtpKeys {
                    send: key.clone(),
                    recv: SrtpKey::from_os_rng(suite),
                }),
                ..ConnectOptions::to("127.0.0.1:9".parse().unwrap(), Some(to))
            },
        )
        .unwrap();
    let data = std::fs::read(&clip).unwrap();
    // Real time: ffmpeg's RTP demuxer dates pictures by arrival as well as RTP time.
    let start = std::time::Instant::now();
    let mut n = 0u32;
    for au in roomkit_media::codec::annexb::access_units(&data) {
        let due = start + Duration::from_millis(u64::from(n) * 1000 / 30);
        std::thread::sleep(due.saturating_duration_since(std::time::Instant::now()));
        be.send_video(info.id, &data[au]).unwrap();
        n += 1;
    }
    // Let the pacer finish, then stop (our RTCP would keep ffmpeg's read timeout from firing).
    std::thread::sleep(Duration::from_millis(300));
    drop(be);
    let done = wait_bounded(ff, Duration::from_secs(60));
    assert!(
        out.exists(),
        "{suite}: ffmpeg wrote nothing: {}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert_same_pictures(&clip, &out, 0);
    eprintln!("us -> ffmpeg SRTP, {suite}: {n} pictures, bit-exact");
}

#[test]
fn our_backend_to_ffmpeg_srtp_is_bit_exact() {
    if !have_peers(&["ffmpeg"]) {
        return;
    }
    for suite in [
        SrtpSuite::AesCm128HmacSha1_80,
        SrtpSuite::AesCm128HmacSha1_32,
    ] {
        backend_to_ffmpeg_srtp(suite);
    }
}
