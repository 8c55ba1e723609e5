//! GStreamer's `srtpenc` (libsrtp) protects an H.264 stream with a fixed SDES-style key and our
//! RTP video backend, given the same key, unprotects it: every picture arrives and decodes to
//! the same frames as the source clip (ffmpeg framemd5), under each suite both support.

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
