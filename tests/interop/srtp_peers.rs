//! Independent SRTP implementations with fixed SDES-style keys, H.264 both ways, every picture
//! compared decoded against the source clip (ffmpeg framemd5):
//! - GStreamer's `srtpenc` (libsrtp) protects, our RTP video backend unprotects, under each of
//!   our three suites;
//! - our backend protects, ffmpeg's own SRTP (libavformat, from `a=crypto` in an SDP file)
//!   unprotects, under the two AES-CM suites it has;
//! - our backend protects, GStreamer's `srtpdec` (libsrtp) unprotects, under each suite;
//! - a differential test against libsrtp: the same RTP and RTCP packets, key, salt, SSRC and
//!   sequence numbers through `srtpenc` and through our `SrtpSender` give the same bytes, and
//!   each side unprotects the other's.

use crate::support;

use std::net::SocketAddr;
use std::time::Duration;

use roomkit_media::backend::{ConnectOptions, RtpBackendConfig, RtpVideoBackend};
use roomkit_media::prelude::*;
use roomkit_media::rtp::srtp::{SrtpReceiver, SrtpSender};
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
        SrtpSuite::AeadAes256Gcm => ["aes-256-gcm", "null", "aes-256-gcm", "null"],
    }
}

/// srtpdec's caps for one stream (`media` is `srtp` or `srtcp`, `-stream` for RFC 4571
/// framing): the SSRC, the key and the suite, with no blanks (one gst-launch argument).
fn srtpdec_caps(media: &str, ssrc: u32, key: &SrtpKey) -> String {
    let [rc, ra, cc, ca] = gst_suite(key.suite());
    format!(
        "application/x-{media},ssrc=(uint){ssrc},srtp-key=(buffer){},srtp-cipher=(string){rc},\
         srtp-auth=(string){ra},srtcp-cipher=(string){cc},srtcp-auth=(string){ca}",
        hex(key.key_and_salt())
    )
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

fn python_gst_srtp() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench/gst_srtp.py")
}

/// GStreamer with its Python bindings (python3-gst-1.0): missing in CI is a failure.
pub(crate) fn have_python_gst() -> bool {
    if !have_peers(&["ffmpeg", "gst-launch-1.0"]) {
        return false;
    }
    let ok = std::process::Command::new("/usr/bin/python3")
        .args(["-c", "import gi; gi.require_version('Gst','1.0')"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok || !in_ci(),
        "GStreamer's Python bindings are needed (python3-gst-1.0)"
    );
    ok
}

fn backend_to_gstreamer_srtpdec(suite: SrtpSuite) {
    let dir = TempDir::new("srtp-gst-dec");
    let clip = dir.path("clip.h264");
    make_h264_clip(&clip, "testsrc=size=640x480:rate=30", 3, &[]);
    let key = SrtpKey::from_os_rng(suite);
    let port = free_udp_port();
    let out = dir.path("out.h264");
    let script = python_gst_srtp();
    let port_arg = port.to_string();
    let key_hex = hex(key.key_and_salt());
    let gst = spawn(
        120,
        "/usr/bin/python3",
        &[
            script.to_str().unwrap(),
            "--suite",
            suite.sdp_name(),
            "--key",
            &key_hex,
            "--port",
            &port_arg,
            "--out",
            out.to_str().unwrap(),
            "--timeout",
            "60",
        ],
    );
    assert!(
        wait_udp_bound(port, Duration::from_secs(20)),
        "srtpdec bound"
    );
    let be =
        RtpVideoBackend::new(support::rtp::loopback_config(RtpBackendConfig::default())).unwrap();
    let to: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let info = be
        .connect(
            "room",
            "gst",
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
    let start = std::time::Instant::now();
    let mut n = 0u32;
    for au in roomkit_media::codec::annexb::access_units(&data) {
        let due = start + Duration::from_millis(u64::from(n) * 1000 / 30);
        std::thread::sleep(due.saturating_duration_since(std::time::Instant::now()));
        be.send_video(info.id, &data[au]).unwrap();
        n += 1;
    }
    std::thread::sleep(Duration::from_millis(300));
    drop(be);
    let done = wait_bounded(gst, Duration::from_secs(90));
    let said = String::from_utf8_lossy(&done.stdout).trim().to_string();
    assert!(
        done.status.success() && said.starts_with("keyed "),
        "{suite}: srtpdec script failed: {said} {}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert_same_pictures(&clip, &out, 0);
    eprintln!("us -> GStreamer srtpdec, {suite}: {n} pictures sent, bit-exact ({said})");
}

#[test]
fn our_backend_to_gstreamer_srtpdec_is_bit_exact() {
    if !have_python_gst() {
        return;
    }
    for suite in SrtpSuite::ALL {
        backend_to_gstreamer_srtpdec(suite);
    }
}

/// Packets framed as RFC 4571 does it (a 16-bit length before each), which GStreamer's
/// `rtpstreampay`/`rtpstreamdepay` write and read.
fn frame(packets: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in packets {
        out.extend_from_slice(&u16::try_from(p.len()).unwrap().to_be_bytes());
        out.extend_from_slice(p);
    }
    out
}

fn unframe(mut data: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while data.len() >= 2 {
        let n = usize::from(u16::from_be_bytes([data[0], data[1]]));
        assert!(data.len() >= 2 + n, "a truncated record from GStreamer");
        out.push(data[2..2 + n].to_vec());
        data = &data[2 + n..];
    }
    out
}

/// Runs `packets` through libsrtp (GStreamer's srtpenc or srtpdec, RFC 4571 framing in files)
/// and returns what comes out. `rtcp` picks the RTCP pads; `protect` the encoder.
fn libsrtp(
    dir: &TempDir,
    key: &SrtpKey,
    ssrc: u32,
    rtcp: bool,
    protect: bool,
    packets: &[Vec<u8>],
) -> Vec<Vec<u8>> {
    let name = format!(
        "{}-{}-{}",
        key.suite(),
        if rtcp { "rtcp" } else { "rtp" },
        if protect { "enc" } else { "dec" }
    );
    let input = dir.path(&format!("{name}.in"));
    let output = dir.path(&format!("{name}.out"));
    std::fs::write(&input, frame(packets)).unwrap();
    let [rc, ra, cc, ca] = gst_suite(key.suite());
    let element = match (protect, rtcp) {
        (true, false) => format!(
            "application/x-rtp-stream ! rtpstreamdepay ! srtpenc key={} rtp-cipher={rc} \
             rtp-auth={ra} rtcp-cipher={cc} rtcp-auth={ca} !",
            hex(key.key_and_salt())
        ),
        (true, true) => format!(
            "application/x-rtcp-stream ! rtpstreamdepay ! e.rtcp_sink_0 srtpenc name=e key={} \
             rtp-cipher={rc} rtp-auth={ra} rtcp-cipher={cc} rtcp-auth={ca} e.rtcp_src_0 !",
            hex(key.key_and_salt())
        ),
        (false, false) => format!(
            "{} ! rtpstreamdepay ! srtpdec !",
            srtpdec_caps("srtp-stream", ssrc, key)
        ),
        (false, true) => format!(
            "{} ! rtpstreamdepay ! d.rtcp_sink srtpdec name=d d.rtcp_src !",
            srtpdec_caps("srtcp-stream", ssrc, key)
        ),
    };
    let pipeline = format!(
        "filesrc location={} ! {element} rtpstreampay ! filesink location={}",
        input.display(),
        output.display()
    );
    let mut args = vec!["-q"];
    args.extend(pipeline.split_whitespace());
    run(60, "gst-launch-1.0", &args);
    unframe(&std::fs::read(&output).unwrap())
}

/// A deterministic byte stream (xorshift), so that a failure can be replayed.
fn bytes(seed: &mut u64, n: usize) -> Vec<u8> {
    (0..n)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            *seed as u8
        })
        .collect()
}

const DIFF_SSRC: u32 = 0x5eed_cafe;

/// RTP packets of one source whose sequence numbers wrap (the rollover counter goes to 1),
/// with payloads from 1 to 1200 bytes, markers, CSRCs, a header extension and padding.
fn rtp_packets() -> Vec<Vec<u8>> {
    let mut seed = 0x1234_5678_9abc_def0;
    (0..64u32)
        .map(|i| {
            let seq = 65_500u16.wrapping_add(i as u16);
            let csrcs = if i % 7 == 3 { 2 } else { 0 };
            let extension = i % 5 == 1;
            let padding = i % 11 == 4;
            let mut p = vec![0x80 | u8::from(extension) << 4 | u8::from(padding) << 5 | csrcs];
            p.push(96 | if i % 4 == 0 { 0x80 } else { 0 });
            p.extend_from_slice(&seq.to_be_bytes());
            p.extend_from_slice(&(i * 3000).to_be_bytes());
            p.extend_from_slice(&DIFF_SSRC.to_be_bytes());
            for c in 0..u32::from(csrcs) {
                p.extend_from_slice(&(0x1000 + c).to_be_bytes());
            }
            if extension {
                // One-byte header extension (RFC 8285): id 1, 2 bytes, padded to a word.
                p.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x11, 0xab, 0xcd, 0]);
            }
            let len = [1usize, 17, 160, 1200, 333][(i % 5) as usize];
            p.extend(bytes(&mut seed, len));
            if padding {
                p.extend_from_slice(&[0, 0, 3]);
            }
            p
        })
        .collect()
}

/// Compound RTCP packets of the same source: SR + SDES, RR, a PLI and a NACK.
fn rtcp_packets() -> Vec<Vec<u8>> {
    let s = DIFF_SSRC.to_be_bytes();
    let mut sr = vec![0x80, 200, 0, 6];
    sr.extend_from_slice(&s);
    sr.extend_from_slice(&[0x11; 20]);
    // SDES, one chunk: CNAME "rkm", then the end item, padded to a word.
    sr.extend_from_slice(&[0x81, 202, 0, 3]);
    sr.extend_from_slice(&s);
    sr.extend_from_slice(&[1, 3, b'r', b'k', b'm', 0, 0, 0]);
    let mut rr = vec![0x81, 201, 0, 7];
    rr.extend_from_slice(&s);
    rr.extend_from_slice(&[0x22; 24]);
    let mut pli = vec![0x81, 206, 0, 2];
    pli.extend_from_slice(&s);
    pli.extend_from_slice(&0x0bad_f00du32.to_be_bytes());
    let mut nack = vec![0x81, 205, 0, 3];
    nack.extend_from_slice(&s);
    nack.extend_from_slice(&0x0bad_f00du32.to_be_bytes());
    nack.extend_from_slice(&[0x12, 0x34, 0, 5]);
    vec![sr, rr, pli, nack.clone(), nack]
}

fn libsrtp_differential(suite: SrtpSuite) {
    let dir = TempDir::new("srtp-diff");
    let key = SrtpKey::from_os_rng(suite);
    for rtcp in [false, true] {
        let kind = if rtcp { "SRTCP" } else { "SRTP" };
        let plain = if rtcp { rtcp_packets() } else { rtp_packets() };
        let mut ours = SrtpSender::new(&key).unwrap();
        let protected: Vec<Vec<u8>> = plain
            .iter()
            .map(|p| {
                if rtcp {
                    ours.protect_rtcp(p)
                } else {
                    ours.protect_rtp(p)
                }
                .unwrap()
            })
            .collect();
        let theirs = libsrtp(&dir, &key, DIFF_SSRC, rtcp, true, &plain);
        assert_eq!(
            theirs.len(),
            plain.len(),
            "{suite} {kind}: srtpenc dropped packets"
        );
        for (i, (a, b)) in protected.iter().zip(&theirs).enumerate() {
            assert_eq!(
                hex(a),
                hex(b),
                "{suite} {kind} packet {i}: our bytes differ from libsrtp's"
            );
        }
        // Each unprotects the other's (identical bytes, but both directions are checked).
        let mut rx = SrtpReceiver::new(&key).unwrap();
        for (i, (p, want)) in theirs.iter().zip(&plain).enumerate() {
            let got = if rtcp {
                rx.unprotect_rtcp(p)
            } else {
                rx.unprotect_rtp(p)
            };
            assert_eq!(
                got.as_ref(),
                Ok(want),
                "{suite} {kind} packet {i}: we could not unprotect libsrtp's"
            );
        }
        let back = libsrtp(&dir, &key, DIFF_SSRC, rtcp, false, &protected);
        assert_eq!(
            back, plain,
            "{suite} {kind}: libsrtp could not unprotect ours"
        );
        eprintln!(
            "libsrtp differential, {suite} {kind}: {} packets byte-identical, each side unprotects the other's",
            plain.len()
        );
    }
}

#[test]
fn our_srtp_matches_libsrtp_byte_for_byte() {
    if !have_peers(&["gst-launch-1.0"]) {
        return;
    }
    for suite in SrtpSuite::ALL {
        libsrtp_differential(suite);
    }
}
