//! BUNDLE on virtual time (issue 19 item 3): two `webrtc::Bundle`s, each one address, one
//! ICE + DTLS transport and one SRTP session above an audio core and a video core (with NACK
//! and RTX), joined by two `netem` paths. Both connect, media flows both ways to the right
//! member (routed by the MID header extension, or by payload type without it), nothing leaves
//! in the clear, NACK/RTX and PLI reach the video core under loss, reports reach the audio
//! core (RTT), a stream the peer does not have is counted and dropped, and junk or mutated
//! datagrams never panic.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rand::{Rng, SeedableRng};
use roomkit_media::frame::VideoCodec;
use roomkit_media::rtp::config::{AudioParams, CoreConfig, MediaParams, VideoParams};
use roomkit_media::rtp::rtx::RtxConfig;
use roomkit_media::rtp::sim::{h264_picture, Datagram, PathConfig, SimPath};
use roomkit_media::rtp::stream::{KeyframeRequest, StreamCore, StreamEvent};
use roomkit_media::webrtc::{Bundle, IceDtlsParams, MemberRoute, TransportDtlsState};

use roomkit_media::sdp::{
    answer, build_offer, parse_answer, AnswerConfig, AudioCodec, DtlsSrtpPolicy, IcePolicy,
    LocalMedia, Negotiation, OfferConfig, SessionDescription,
};
use roomkit_media::webrtc::DtlsIdentity;

use super::ice_dtls::params;

const A: &str = "10.0.0.1:5000";
const B: &str = "10.0.0.2:6000";
const MARKER: &[u8] = b"plaintext-audio-marker-0123456789";
const AUDIO: usize = 0;
const VIDEO: usize = 1;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn core(media: MediaParams, remote: SocketAddr, t0: Instant, seed: u64) -> StreamCore {
    let cfg = CoreConfig {
        media,
        remote_rtp: remote,
        remote_rtcp: remote,
        rtcp_mux: true,
        rtcp_interval: Duration::from_millis(500),
        ..CoreConfig::default()
    };
    let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    StreamCore::new(cfg, t0, wall, seed).unwrap()
}

fn audio(pt: u8) -> MediaParams {
    MediaParams::Audio(AudioParams {
        payload_type: pt,
        clock_rate: 48_000,
        dtmf_payload_type: None,
        ..AudioParams::default()
    })
}

fn video() -> MediaParams {
    MediaParams::Video(VideoParams {
        codec: VideoCodec::H264,
        payload_type: 96,
        rtx: Some(RtxConfig {
            payload_type: 97,
            apt: 96,
            ssrc: None,
        }),
        ..VideoParams::default()
    })
}

fn route(mid: &str, mid_ext: Option<u8>, pts: &[u8], video: bool) -> MemberRoute {
    MemberRoute {
        mid: Some(mid.to_string()),
        mid_ext,
        payload_types: pts.to_vec(),
        remote_ssrcs: Vec::new(),
        video,
    }
}

/// One side: its bundle (audio member 0, video member 1) and what came out of it.
struct Side {
    bundle: Bundle,
    addr: SocketAddr,
    events: Vec<(usize, StreamEvent)>,
}

impl Side {
    fn new(
        p: IceDtlsParams,
        me: &str,
        peer: &str,
        mid_ext: Option<u8>,
        t0: Instant,
        seed: u64,
    ) -> Side {
        let peer = addr(peer);
        let mut bundle = Bundle::new(&p, peer, t0);
        let a = bundle
            .add(
                core(audio(111), peer, t0, seed),
                route("0", mid_ext, &[111], false),
            )
            .unwrap();
        let v = bundle
            .add(
                core(video(), peer, t0, seed + 1),
                route("1", mid_ext, &[96, 97], true),
            )
            .unwrap();
        assert_eq!((a, v), (AUDIO, VIDEO));
        Side {
            bundle,
            addr: addr(me),
            events: Vec::new(),
        }
    }

    fn count(&self, member: usize, f: impl Fn(&StreamEvent) -> bool) -> usize {
        self.events
            .iter()
            .filter(|(i, e)| *i == member && f(e))
            .count()
    }

    fn audio_in(&self) -> usize {
        self.count(
            AUDIO,
            |e| matches!(e, StreamEvent::Audio(f) if f.payload == MARKER),
        )
    }

    fn video_in(&self) -> usize {
        self.count(
            VIDEO,
            |e| matches!(e, StreamEvent::Video(f) if f.data.len() > 100),
        )
    }

    /// Media that reached the wrong member.
    fn misrouted(&self) -> usize {
        self.count(AUDIO, |e| matches!(e, StreamEvent::Video(_)))
            + self.count(VIDEO, |e| matches!(e, StreamEvent::Audio(_)))
    }
}

#[derive(Default)]
struct Tap {
    datagrams: AtomicU64,
    plain: AtomicU64,
    /// Sources other than the two bundle addresses.
    other_source: AtomicU64,
}

fn tapped(cfg: PathConfig, seed: u64, tap: &Arc<Tap>) -> SimPath {
    let mut p = SimPath::new(cfg, seed);
    let tap = tap.clone();
    let probe = h264_picture(true, 3000, 7)[200..216].to_vec();
    p.set_filter(Box::new(move |d: &Datagram| {
        tap.datagrams.fetch_add(1, Ordering::Relaxed);
        let has = |m: &[u8]| d.data.windows(m.len()).any(|w| w == m);
        if has(MARKER) || has(&probe) {
            tap.plain.fetch_add(1, Ordering::Relaxed);
        }
        if d.from != addr(A) && d.from != addr(B) {
            tap.other_source.fetch_add(1, Ordering::Relaxed);
        }
        false
    }));
    p
}

struct Net {
    a: Side,
    b: Side,
    ab: SimPath,
    ba: SimPath,
    tap: Arc<Tap>,
    now: Instant,
    /// Datagrams A sent, kept for the fuzz test (a bounded sample).
    sample: Vec<Vec<u8>>,
    /// Junk to mix into B's input before each real datagram.
    junk: Option<rand::rngs::StdRng>,
}

impl Net {
    fn new(mid_ext: Option<u8>, path: PathConfig) -> Net {
        let t0 = Instant::now();
        let (pa, pb) = params(Some((false, true)), Some((true, false)), false);
        let a = Side::new(pa, A, B, mid_ext, t0, 10);
        let b = Side::new(pb, B, A, mid_ext, t0, 20);
        Net::of(a, b, path, t0)
    }

    fn of(a: Side, b: Side, path: PathConfig, t0: Instant) -> Net {
        let tap = Arc::new(Tap::default());
        Net {
            a,
            b,
            ab: tapped(path, 1, &tap),
            ba: tapped(path, 2, &tap),
            tap,
            now: t0,
            sample: Vec::new(),
            junk: None,
        }
    }

    fn collect(&mut self) {
        let now = self.now;
        for (side, path, from_a) in [
            (&mut self.a, &mut self.ab, true),
            (&mut self.b, &mut self.ba, false),
        ] {
            while let Some(t) = side.bundle.poll_transmit() {
                if from_a && self.sample.len() < 400 {
                    self.sample.push(t.contents.clone());
                }
                let len = t.contents.len();
                let d = Datagram {
                    from: side.addr,
                    to: t.dest,
                    data: t.contents,
                };
                path.handle_input_sized(now, d, len);
            }
            while let Some(e) = side.bundle.poll_event() {
                side.events.push(e);
            }
        }
    }

    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        for _ in 0..1_000_000 {
            let next = [
                self.a.bundle.poll_timeout(),
                self.b.bundle.poll_timeout(),
                self.ab.poll_timeout(),
                self.ba.poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next.filter(|n| *n <= end) else {
                break;
            };
            self.now = self.now.max(next);
            let now = self.now;
            while let Some(d) = self.ab.poll_output(now) {
                if let Some(rng) = self.junk.as_mut() {
                    let mut bad = d.data.clone();
                    let n = rng.random_range(0..4);
                    for _ in 0..n {
                        let i = rng.random_range(0..bad.len());
                        bad[i] ^= rng.random::<u8>() | 1;
                    }
                    bad.truncate(rng.random_range(0..=bad.len()));
                    self.b.bundle.handle_datagram(now, d.from, &bad);
                }
                if d.to == self.b.addr {
                    self.b.bundle.handle_datagram(now, d.from, &d.data);
                }
            }
            while let Some(d) = self.ba.poll_output(now) {
                if d.to == self.a.addr {
                    self.a.bundle.handle_datagram(now, d.from, &d.data);
                }
            }
            for side in [&mut self.a, &mut self.b] {
                if side.bundle.poll_timeout().is_some_and(|t| t <= now) {
                    side.bundle.handle_timeout(now);
                }
            }
            self.collect();
        }
        self.now = self.now.max(end);
    }

    /// Both sides send audio every 20 ms and a picture every 40 ms (a key picture first and
    /// when asked) for `d`.
    fn media_for(&mut self, d: Duration) {
        let end = self.now + d;
        let mut n = 0u64;
        let mut seen = [0usize; 2];
        while self.now < end {
            n += 1;
            let now = self.now;
            for (k, side) in [&mut self.a, &mut self.b].into_iter().enumerate() {
                let _ = side
                    .bundle
                    .core_mut(AUDIO)
                    .send_audio_payload(now, MARKER, 20);
                if n % 2 == 1 {
                    let asked = side.events[seen[k]..].iter().any(|(i, e)| {
                        *i == VIDEO && matches!(e, StreamEvent::KeyframeRequested(_))
                    });
                    seen[k] = side.events.len();
                    let pic = if asked || n == 1 {
                        h264_picture(true, 3000, 7)
                    } else {
                        h264_picture(false, 800, 9)
                    };
                    let _ = side.bundle.core_mut(VIDEO).send_video(now, &pic, None);
                }
            }
            self.collect();
            self.run_for(Duration::from_millis(20));
        }
    }

    fn keyed(&self) -> bool {
        [&self.a, &self.b]
            .iter()
            .all(|s| s.bundle.transport_stats().dtls_state == TransportDtlsState::Connected)
    }
}

fn clean() -> PathConfig {
    PathConfig::clean(Duration::from_millis(10))
}

fn lossy(loss: f64) -> PathConfig {
    PathConfig {
        loss,
        ..PathConfig::clean(Duration::from_millis(20))
    }
}

fn flows(mid_ext: Option<u8>) {
    let mut net = Net::new(mid_ext, clean());
    net.run_for(Duration::from_secs(2));
    assert!(net.keyed(), "both bundles keyed");
    net.media_for(Duration::from_secs(3));
    for (name, s) in [("A", &net.a), ("B", &net.b)] {
        assert!(s.audio_in() >= 100, "{name} audio {}", s.audio_in());
        assert!(s.video_in() >= 40, "{name} video {}", s.video_in());
        assert_eq!(s.misrouted(), 0, "{name}");
        let st = s.bundle.stats();
        assert_eq!(st.unknown_ssrc, 0, "{name} {st:?}");
        assert_eq!(st.srtp_auth_failed, 0, "{name} {st:?}");
        if mid_ext.is_some() {
            assert!(
                st.routed_by_mid > 0 && st.routed_by_pt == 0,
                "{name} {st:?}"
            );
        } else {
            assert!(
                st.routed_by_pt >= 2 && st.routed_by_mid == 0,
                "{name} {st:?}"
            );
            assert!(st.routed_by_ssrc > 100, "{name} {st:?}");
        }
        // Reports reach the audio core through the shared transport.
        assert!(s.bundle.core(AUDIO).rtt().is_some(), "{name}: no RTT");
        assert!(s.bundle.core(VIDEO).rtt().is_some(), "{name}: no video RTT");
    }
    assert_eq!(
        net.tap.plain.load(Ordering::Relaxed),
        0,
        "media in the clear"
    );
    // Each member shows the one transport in its statistics.
    for m in [AUDIO, VIDEO] {
        let st = net.a.bundle.member_stats(m);
        assert_eq!(st.dtls_state, TransportDtlsState::Connected as u32);
        assert_eq!(st.ice_remote, Some(addr(B)));
    }
    // Video alone ends (a re-offer removed it): B's video hears BYE, audio goes on.
    let now = net.now;
    net.a.bundle.close_member(now, VIDEO);
    net.collect();
    let audio_before = net.b.audio_in();
    net.media_for(Duration::from_secs(1));
    let byes = |s: &Side, m| s.count(m, |e| matches!(e, StreamEvent::RemoteBye { .. }));
    assert_eq!(byes(&net.b, VIDEO), 1);
    assert_eq!(byes(&net.b, AUDIO), 0);
    assert!(
        net.b.audio_in() >= audio_before + 30,
        "audio stopped with video"
    );
    assert_eq!(
        net.tap.other_source.load(Ordering::Relaxed),
        0,
        "one address per side"
    );
    // Closing: every member says BYE, then close_notify; the peer's members hear it.
    let now = net.now;
    net.a.bundle.close(now);
    net.collect();
    net.run_for(Duration::from_millis(500));
    for m in [AUDIO, VIDEO] {
        assert!(
            net.b
                .count(m, |e| matches!(e, StreamEvent::RemoteBye { .. }))
                >= 1,
            "member {m} heard no BYE"
        );
    }
}

#[test]
fn bundle_carries_audio_and_video_routed_by_mid() {
    flows(Some(4));
}

#[test]
fn bundle_carries_audio_and_video_routed_by_payload_type() {
    flows(None);
}

#[test]
fn bundle_nack_rtx_and_pli_reach_the_video_core_under_loss() {
    let mut net = Net::new(Some(4), lossy(0.05));
    net.run_for(Duration::from_secs(3));
    assert!(net.keyed());
    net.media_for(Duration::from_secs(6));
    // A's video asks B for a key picture (PLI, then FIR): it reaches B's video core only.
    let now = net.now;
    net.a
        .bundle
        .core_mut(VIDEO)
        .request_keyframe(now, KeyframeRequest::Pli);
    net.collect();
    net.run_for(Duration::from_millis(600));
    let pli = net.b.bundle.core(VIDEO).stats().pli_received;
    assert!(pli >= 1, "PLI never reached B's video core");
    for (name, s, peer) in [("A", &net.a, &net.b), ("B", &net.b, &net.a)] {
        let v = s.bundle.core(VIDEO).stats();
        let pv = peer.bundle.core(VIDEO).stats();
        assert!(v.nack_sent > 0, "{name} sent no NACK");
        assert!(
            pv.nack_received > 0,
            "{name}'s NACKs never reached the peer's video core"
        );
        assert!(v.rtx_received > 0, "{name} got no retransmission");
        assert!(s.video_in() >= 60, "{name} video {}", s.video_in());
        assert!(s.audio_in() >= 200, "{name} audio {}", s.audio_in());
        // Feedback stays with video: the audio core saw no NACK or PLI.
        let pa = peer.bundle.core(AUDIO).stats();
        assert_eq!((pa.nack_received, pa.pli_received), (0, 0), "{name}");
        assert_eq!(s.misrouted(), 0);
    }
}

#[test]
fn bundle_drops_a_stream_it_does_not_know() {
    let mut net = Net::new(Some(4), clean());
    // A has a third member B never heard of (no MID B knows, a payload type of none of B's).
    let t0 = net.now;
    let extra = net
        .a
        .bundle
        .add(
            core(audio(8), addr(B), t0, 99),
            route("2", Some(4), &[8], false),
        )
        .unwrap();
    net.run_for(Duration::from_secs(2));
    assert!(net.keyed());
    let end = net.now + Duration::from_secs(2);
    while net.now < end {
        let now = net.now;
        let _ = net
            .a
            .bundle
            .core_mut(extra)
            .send_audio_payload(now, b"stray", 20);
        let _ = net
            .a
            .bundle
            .core_mut(AUDIO)
            .send_audio_payload(now, MARKER, 20);
        net.collect();
        net.run_for(Duration::from_millis(20));
    }
    let st = net.b.bundle.stats();
    assert!(st.unknown_ssrc >= 50, "{st:?}");
    assert!(net.b.audio_in() >= 50);
    assert_eq!(net.b.misrouted(), 0);
    assert_eq!(
        net.b.count(
            AUDIO,
            |e| matches!(e, StreamEvent::Audio(f) if f.payload == b"stray")
        ),
        0
    );
    // The unknown stream leaving (its BYE) ends nothing of B's.
    let now = net.now;
    net.a.bundle.close_member(now, extra);
    net.collect();
    net.run_for(Duration::from_millis(300));
    assert!(
        net.b.bundle.stats().rtcp_unrouted >= 1,
        "{:?}",
        net.b.bundle.stats()
    );
    for m in [AUDIO, VIDEO] {
        assert_eq!(
            net.b
                .count(m, |e| matches!(e, StreamEvent::RemoteBye { .. })),
            0
        );
    }
    // Members must be plain cores with their own payload types and mids.
    let clash = net.a.bundle.add(
        core(audio(111), addr(B), t0, 5),
        route("9", None, &[111], false),
    );
    assert!(clash.is_err());
}

#[test]
fn bundle_survives_junk_and_mutated_datagrams() {
    let mut net = Net::new(Some(4), clean());
    net.junk = Some(rand::rngs::StdRng::seed_from_u64(7));
    net.run_for(Duration::from_secs(3));
    net.media_for(Duration::from_secs(2));
    // Whatever got through, the real datagrams still connect and carry media.
    assert!(net.keyed());
    assert!(net.b.audio_in() >= 40, "{}", net.b.audio_in());
    // Replays and random bytes of every captured kind, straight in.
    let mut rng = rand::rngs::StdRng::seed_from_u64(8);
    let now = net.now;
    let from = addr(A);
    for d in net.sample.clone() {
        net.b.bundle.handle_datagram(now, from, &d);
        for _ in 0..4 {
            let mut bad = d.clone();
            let i = rng.random_range(0..bad.len());
            bad[i] = rng.random();
            net.b.bundle.handle_datagram(now, from, &bad);
            bad.truncate(rng.random_range(0..bad.len()));
            net.b.bundle.handle_datagram(now, from, &bad);
        }
        let junk: Vec<u8> = (0..rng.random_range(0..1500))
            .map(|_| rng.random())
            .collect();
        net.b.bundle.handle_datagram(now, from, &junk);
    }
    let st = net.b.bundle.stats();
    assert!(st.srtp_replayed > 0 || st.srtp_auth_failed > 0, "{st:?}");
}

fn negotiated_side(neg: &Negotiation, id: &DtlsIdentity, me: &str, t0: Instant, seed: u64) -> Side {
    let (audio_route, video_route) = neg.bundle_routes().expect("bundled");
    assert!(
        !audio_route
            .payload_types
            .iter()
            .any(|pt| video_route.payload_types.contains(pt)),
        "{audio_route:?} {video_route:?}"
    );
    let t = neg.audio.transport.as_ref().unwrap();
    let mut bundle = Bundle::new(&t.params(id), neg.audio.remote, t0);
    let v = neg.video.as_ref().unwrap();
    let remote = neg.audio.remote;
    assert_eq!(v.remote, remote, "one address for both m-lines");
    let video = MediaParams::Video(VideoParams {
        codec: v.codec,
        payload_type: v.pt,
        rtx: v.rtx_pt.map(|r| RtxConfig {
            payload_type: r,
            apt: v.pt,
            ssrc: None,
        }),
        ..VideoParams::default()
    });
    bundle
        .add(core(audio(neg.audio.pt), remote, t0, seed), audio_route)
        .unwrap();
    bundle
        .add(core(video, remote, t0, seed + 1), video_route)
        .unwrap();
    Side {
        bundle,
        addr: addr(me),
        events: Vec::new(),
    }
}

/// What offer, answer and `parse_answer` give each side (BUNDLE, ICE, DTLS-SRTP mandatory)
/// builds two bundles that connect and carry both streams, routed by the negotiated MID.
#[test]
fn negotiated_bundles_connect() {
    let t0 = Instant::now();
    let (id_a, id_b) = (
        DtlsIdentity::generate().unwrap(),
        DtlsIdentity::generate().unwrap(),
    );
    let set = |l: &mut LocalMedia, id: &DtlsIdentity| {
        l.audio_codecs = vec![AudioCodec::Opus, AudioCodec::Pcmu];
        l.video_codecs = vec![VideoCodec::H264];
        l.dtls_srtp = DtlsSrtpPolicy::Mandatory;
        l.dtls_fingerprint = Some(id.fingerprint().clone());
        l.ice = IcePolicy::On;
        l.bundle = true;
    };
    let mut oc = OfferConfig::new("192.0.2.20".parse().unwrap(), 20000, 20002);
    set(&mut oc.local, &id_a);
    let mut ac = AnswerConfig::new("192.0.2.10".parse().unwrap(), 10000, 10002);
    set(&mut ac.local, &id_b);
    let offer = build_offer(&oc);
    let ans = answer(
        &SessionDescription::parse(offer.sdp.as_bytes()).unwrap(),
        &ac,
    )
    .unwrap();
    let neg_a = parse_answer(&offer, ans.sdp.as_bytes()).unwrap();
    let a = negotiated_side(&neg_a, &id_a, "192.0.2.20:20000", t0, 10);
    let b = negotiated_side(&ans.negotiation, &id_b, "192.0.2.10:10000", t0, 20);
    let mut net = Net::of(a, b, clean(), t0);
    net.run_for(Duration::from_secs(2));
    assert!(net.keyed());
    net.media_for(Duration::from_secs(2));
    for (name, s) in [("A", &net.a), ("B", &net.b)] {
        assert!(s.audio_in() >= 60, "{name} audio {}", s.audio_in());
        assert!(s.video_in() >= 25, "{name} video {}", s.video_in());
        assert_eq!(s.misrouted(), 0, "{name}");
        let st = s.bundle.stats();
        assert!(
            st.routed_by_mid > 0 && st.unknown_ssrc == 0,
            "{name} {st:?}"
        );
    }
    assert_eq!(net.tap.plain.load(Ordering::Relaxed), 0);
}
