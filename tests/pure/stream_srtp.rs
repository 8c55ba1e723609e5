//! The stream core over SRTP/SRTCP, on virtual time: loss recovery (NACK, RTX), PLI and pacing
//! work unchanged when every packet is protected, and a tampered, replayed or wrongly keyed
//! packet is never delivered, only counted.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use roomkit_media::frame::VideoFrame;
use roomkit_media::rtp::config::{CoreConfig, MediaParams, VideoParams};
use roomkit_media::rtp::pacer::PacerConfig;
use roomkit_media::rtp::packet::parse_rtp;
use roomkit_media::rtp::rtx::RtxConfig;
use roomkit_media::rtp::sim::{h264_picture, play_clip, FileClip, PathConfig, SimPair, SimPath};
use roomkit_media::rtp::srtp::{SrtpKey, SrtpKeys, SrtpSuite};
use roomkit_media::rtp::stream::{StreamCore, StreamEvent, TransmitKind};

fn video(p: VideoParams, srtp: Option<SrtpKeys>) -> CoreConfig {
    CoreConfig {
        media: MediaParams::Video(p),
        rtcp_interval: Duration::from_secs(1),
        srtp,
        ..CoreConfig::default()
    }
}

/// The keys of both sides: A sends with `a`, B with `b`.
fn keys(suite: SrtpSuite) -> (SrtpKeys, SrtpKeys) {
    let (a, b) = (SrtpKey::from_os_rng(suite), SrtpKey::from_os_rng(suite));
    (
        SrtpKeys {
            send: a.clone(),
            recv: b.clone(),
        },
        SrtpKeys { send: b, recv: a },
    )
}

fn with_rtx() -> VideoParams {
    VideoParams {
        rtx: Some(RtxConfig {
            payload_type: 97,
            apt: 96,
            ssrc: None,
        }),
        ..VideoParams::default()
    }
}

#[test]
fn nack_and_rtx_repair_five_percent_loss_both_ways_over_srtp() {
    for (i, suite) in SrtpSuite::ALL.into_iter().enumerate() {
        let (ka, kb) = keys(suite);
        let seed = 300 + i as u64;
        let p = PathConfig::lossy(0.05);
        let mut pair = SimPair::new(
            Instant::now(),
            video(with_rtx(), Some(ka)),
            video(with_rtx(), Some(kb)),
            SimPath::new(p, seed * 2 + 1),
            SimPath::new(p, seed * 2 + 2),
            seed,
        )
        .unwrap();
        assert_eq!(pair.a.core.srtp_suite(), Some(suite));
        let clip = FileClip::new(150, 30, seed);
        let report = play_clip(&mut pair, &clip, Duration::from_secs(2));
        let (a, b) = (pair.a.core.stats(), pair.b.core.stats());
        assert_eq!(report.corrupt, 0, "{suite}: {b:?}");
        assert!(report.in_order);
        assert!(
            report.intact * 100 >= report.sent * 95,
            "{suite}: {} of {} ({b:?})",
            report.intact,
            report.sent
        );
        // Losses were repaired through SRTCP NACKs and SRTP retransmissions on the RTX SSRC.
        assert!(b.nack_sent > 0 && a.nack_received > 0, "{suite}: {a:?}");
        assert!(a.retransmitted > 0 && b.rtx_received > 0 && b.recovered > 0);
        assert!(a.rtcp_received > 0 && b.rtcp_received > 0);
        // Nothing failed authentication; the only replays refused are the duplicates the
        // paths made (which plain RTP would have counted as duplicates).
        for (s, path) in [(&a, pair.ba.stats()), (&b, pair.ab.stats())] {
            assert_eq!((s.srtp_auth_failed, s.malformed), (0, 0), "{suite}: {s:?}");
            assert!(
                s.srtp_replayed <= path.duplicated,
                "{suite}: {s:?} {path:?}"
            );
        }
        assert!(
            a.srtp_replayed + b.srtp_replayed > 0,
            "the paths duplicate 1 %"
        );
    }
}

/// Two unpaced cores fed by hand, so each packet can be altered or repeated.
struct Manual {
    a: StreamCore,
    b: StreamCore,
    a_addr: SocketAddr,
    now: Instant,
}

impl Manual {
    fn new(a_keys: SrtpKeys, b_keys: SrtpKeys) -> Manual {
        let unpaced = VideoParams {
            pacer: PacerConfig {
                enabled: false,
                ..PacerConfig::default()
            },
            ..VideoParams::default()
        };
        let a_addr: SocketAddr = ([10, 0, 0, 1], 5000).into();
        let b_addr: SocketAddr = ([10, 0, 0, 2], 6000).into();
        let cfg = |keys, remote| CoreConfig {
            remote_rtp: remote,
            remote_rtcp: remote,
            rtcp_mux: true,
            ..video(unpaced.clone(), Some(keys))
        };
        let now = Instant::now();
        let wall = SystemTime::now();
        Manual {
            a: StreamCore::new(cfg(a_keys, b_addr), now, wall, 21).unwrap(),
            b: StreamCore::new(cfg(b_keys, a_addr), now, wall, 22).unwrap(),
            a_addr,
            now,
        }
    }

    /// The SRTP packets of one key picture from A.
    fn picture(&mut self, i: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
        let pic = h264_picture(true, 20 * 1_180, i as u64);
        self.a
            .send_video(self.now, &pic, Some(i as f64 * 33.3))
            .unwrap();
        let pkts = std::iter::from_fn(|| self.a.poll_transmit())
            .filter(|t| t.kind == TransmitKind::Rtp)
            .map(|t| t.contents)
            .collect();
        (pic, pkts)
    }

    fn feed(&mut self, pkt: &[u8]) {
        self.b.handle_datagram(self.now, self.a_addr, pkt, false);
    }

    fn b_frames(&mut self) -> Vec<VideoFrame> {
        std::iter::from_fn(|| self.b.poll_event())
            .filter_map(|e| match e {
                StreamEvent::Video(f) => Some(f),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn tampered_replayed_and_wrongly_keyed_packets_are_never_delivered() {
    for suite in SrtpSuite::ALL {
        let (ka, kb) = keys(suite);
        let mut m = Manual::new(ka.clone(), kb.clone());
        let (pic, pkts) = m.picture(0);
        assert!(pkts.len() >= 20);
        // On the wire the payload is not the picture: no 64-byte run of it appears.
        for p in &pkts {
            let (_, range) = parse_rtp(p).unwrap();
            let body = &p[range][..64.min(p.len() - 12)];
            assert!(
                !pic.windows(body.len()).any(|w| w == body),
                "{suite}: cleartext"
            );
        }

        // Every packet with one bit flipped (header or payload or tag): nothing is delivered.
        for (k, p) in pkts.iter().enumerate() {
            let mut bad = p.clone();
            let at = [2, 8, 20, bad.len() - 1][k % 4];
            bad[at] ^= 0x10;
            m.feed(&bad);
        }
        assert!(m.b_frames().is_empty(), "{suite}");
        assert_eq!(
            m.b.stats().srtp_auth_failed,
            pkts.len() as u64,
            "{suite}: {:?}",
            m.b.stats()
        );
        assert_eq!(m.b.stats().packets_received, 0);

        // The genuine packets: the picture, once. Then all of them replayed: nothing more.
        for p in &pkts {
            m.feed(p);
        }
        let got = m.b_frames();
        assert_eq!(got.len(), 1, "{suite}");
        assert_eq!(got[0].data, pic);
        for p in &pkts {
            m.feed(p);
        }
        assert!(m.b_frames().is_empty());
        let st = m.b.stats();
        assert_eq!(st.srtp_replayed, pkts.len() as u64, "{suite}: {st:?}");
        assert_eq!(st.packets_received, pkts.len() as u64);

        // A receiver holding another key (its own by mistake) delivers nothing.
        let mut wrong = Manual::new(
            ka.clone(),
            SrtpKeys {
                send: kb.send.clone(),
                recv: kb.send.clone(),
            },
        );
        let (_, pkts) = wrong.picture(0);
        for p in &pkts {
            wrong.feed(p);
        }
        assert!(wrong.b_frames().is_empty());
        assert_eq!(wrong.b.stats().srtp_auth_failed, pkts.len() as u64);

        // A plain RTP packet sent to a secured stream is refused too.
        let mut plain_sender = Manual::new(ka.clone(), kb.clone());
        plain_sender.a = StreamCore::new(
            CoreConfig {
                remote_rtp: ([10, 0, 0, 2], 6000).into(),
                rtcp_mux: true,
                ..video(VideoParams::default(), None)
            },
            m.now,
            SystemTime::now(),
            5,
        )
        .unwrap();
        let (_, pkts) = plain_sender.picture(0);
        for p in &pkts {
            plain_sender.feed(p);
        }
        assert!(plain_sender.b_frames().is_empty());
        assert_eq!(plain_sender.b.stats().packets_received, 0);
    }
}

/// RFC 4568 §7.1.4 re-keying mid-stream, on a 100 ms path: A's send key and B's receive key
/// change at the same instant, while three pictures protected with the old key are still on
/// their way; B still takes them (the old receive key is kept for `REKEY_GRACE`), and every
/// picture after it under the new key. Nothing fails authentication.
#[test]
fn a_rekey_mid_stream_loses_nothing_in_flight() {
    let suite = SrtpSuite::AesCm128HmacSha1_80;
    let (ka, kb) = keys(suite);
    let path = PathConfig::clean(Duration::from_millis(100));
    let t0 = Instant::now();
    let mut pair = SimPair::new(
        t0,
        video(VideoParams::default(), Some(ka.clone())),
        video(VideoParams::default(), Some(kb.clone())),
        SimPath::new(path, 1),
        SimPath::new(path, 2),
        9,
    )
    .unwrap();
    let clip = FileClip::new(30, 30, 9);
    let fresh = SrtpKey::from_os_rng(suite);
    for (i, (pic, _)) in clip.pictures.iter().enumerate() {
        pair.run_until(t0 + clip.frame * i as u32);
        if i == 15 {
            let a_keys = SrtpKeys {
                send: fresh.clone(),
                recv: ka.recv.clone(),
            };
            let b_keys = SrtpKeys {
                send: kb.send.clone(),
                recv: fresh.clone(),
            };
            assert_eq!(pair.with_a(|c, now| c.rekey_srtp(&a_keys, now)), Ok(true));
            assert_eq!(pair.with_b(|c, now| c.rekey_srtp(&b_keys, now)), Ok(true));
            // The same keys again change nothing.
            assert_eq!(pair.with_b(|c, now| c.rekey_srtp(&b_keys, now)), Ok(false));
        }
        let ts = clip.frame.as_secs_f64() * 1000.0 * i as f64;
        pair.with_a(|c, now| c.send_video(now, pic, Some(ts)))
            .unwrap();
    }
    pair.run_for(Duration::from_secs(1));
    let got = pair
        .b
        .events
        .iter()
        .filter(|(_, e)| matches!(e, StreamEvent::Video(_)))
        .count();
    let b = pair.b.core.stats();
    assert_eq!(got, 30, "{b:?}");
    assert_eq!(b.srtp_auth_failed, 0, "{b:?}");
}
