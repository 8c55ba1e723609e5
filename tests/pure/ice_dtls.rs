//! ICE and DTLS-SRTP inside the stream core (issue 19), on virtual time: two `StreamCore`s
//! with `CoreConfig::ice_dtls` joined by two `netem` paths (`rtp::sim::SimPair`) run the ICE
//! checks, the handshake and then SRTP media on one muxed address each. Full controlling
//! against lite, full against full, and DTLS without ICE; a wrong fingerprint, consent
//! expiring on a blackholed path, junk on the socket, media made before the keys, and 10 %
//! loss during set-up.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use roomkit_media::frame::VideoCodec;
use roomkit_media::rtp::config::{AudioParams, CoreConfig, MediaParams, VideoParams};
use roomkit_media::rtp::sim::{h264_picture, Datagram, PathConfig, SimPair, SimPath};
use roomkit_media::rtp::srtp::{SrtpKey, SrtpKeys, SrtpSuite};
use roomkit_media::rtp::stream::{StreamCore, StreamEvent};
use roomkit_media::webrtc::{
    demux, Demux, DtlsError, DtlsIdentity, IceAgent, IceConfig, IceDtlsParams, IceParams,
    TransportDtlsState, TransportFailure, TransportIceState,
};

const A: &str = "10.0.0.1:5000";
const B: &str = "10.0.0.2:6000";

/// The bytes every audio payload carries: if they ever show on the path, media left in the
/// clear.
const MARKER: &[u8] = b"plaintext-audio-marker-0123456789";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// How one side runs ICE: `None` no ICE; `Some((lite, controlling))`.
pub(crate) type IceRole = Option<(bool, bool)>;

/// The two sides' parameters, as SDP negotiation would give them: A is the DTLS client.
/// `spoil`: B expects another fingerprint than A's certificate has.
pub(crate) fn params(
    a_ice: IceRole,
    b_ice: IceRole,
    spoil: bool,
) -> (IceDtlsParams, IceDtlsParams) {
    let ids = [
        DtlsIdentity::generate().unwrap(),
        DtlsIdentity::generate().unwrap(),
    ];
    let creds = [
        IceConfig::random_credentials(),
        IceConfig::random_credentials(),
    ];
    let roles = [a_ice, b_ice];
    let addrs = [addr(A), addr(B)];
    // Each side's host candidate as its SDP would carry it.
    let cand = |i: usize| {
        let (lite, controlling) = roles[i].unwrap();
        IceAgent::new(IceConfig {
            lite,
            controlling,
            credentials: creds[i].clone(),
        })
        .add_host_candidate(addrs[i])
        .unwrap()
    };
    let side = |i: usize| {
        let other = 1 - i;
        let mut fps = vec![ids[other].fingerprint().clone()];
        if spoil && i == 1 {
            fps[0].hash[3] ^= 0x10;
        }
        IceDtlsParams {
            ice: roles[i].map(|(lite, controlling)| IceParams {
                config: IceConfig {
                    lite,
                    controlling,
                    credentials: creds[i].clone(),
                },
                host_candidates: vec![addrs[i]],
                srflx_candidates: Vec::new(),
                remote_credentials: creds[other].clone(),
                remote_candidates: vec![cand(other)],
                relay: None,
            }),
            identity: ids[i].clone(),
            remote_fingerprints: fps,
            dtls_client: i == 0,
        }
    };
    (side(0), side(1))
}

fn audio() -> MediaParams {
    MediaParams::Audio(AudioParams {
        payload_type: 111,
        clock_rate: 48_000,
        dtmf_payload_type: None,
        ..AudioParams::default()
    })
}

fn video() -> MediaParams {
    MediaParams::Video(VideoParams {
        codec: VideoCodec::H264,
        ..VideoParams::default()
    })
}

fn config(media: MediaParams, p: IceDtlsParams) -> CoreConfig {
    CoreConfig {
        media,
        rtcp_interval: Duration::from_secs(1),
        ice_dtls: Some(p),
        ..CoreConfig::default()
    }
}

/// What a path saw: datagrams by RFC 7983 kind, and how many carried the marker or a known
/// piece of a picture in the clear.
#[derive(Default)]
struct Tap {
    stun: AtomicU64,
    dtls: AtomicU64,
    media: AtomicU64,
    plain: AtomicU64,
    cut: AtomicBool,
}

/// A 16-byte piece of every picture's slice (pictures are filled from a fixed seed).
fn picture_probe() -> Vec<u8> {
    h264_picture(true, 3000, 7)[200..216].to_vec()
}

fn tapped(cfg: PathConfig, seed: u64, tap: &Arc<Tap>) -> SimPath {
    let mut p = SimPath::new(cfg, seed);
    let tap = tap.clone();
    let probe = picture_probe();
    p.set_filter(Box::new(move |d: &Datagram| {
        match demux(&d.data) {
            Demux::Stun => &tap.stun,
            Demux::Dtls => &tap.dtls,
            _ => &tap.media,
        }
        .fetch_add(1, Ordering::Relaxed);
        let has = |m: &[u8]| d.data.windows(m.len()).any(|w| w == m);
        if has(MARKER) || has(&probe) {
            tap.plain.fetch_add(1, Ordering::Relaxed);
        }
        tap.cut.load(Ordering::Relaxed)
    }));
    p
}

struct Run {
    pair: SimPair,
    tap: Arc<Tap>,
    video: bool,
    /// Events of A already looked at for key-frame requests.
    seen_a: usize,
    seen_b: usize,
    n: u64,
}

impl Run {
    fn new(video_stream: bool, a: IceDtlsParams, b: IceDtlsParams, path: PathConfig) -> Run {
        let tap = Arc::new(Tap::default());
        let media = if video_stream { video() } else { audio() };
        let pair = SimPair::new(
            Instant::now(),
            config(media.clone(), a),
            config(media, b),
            tapped(path, 11, &tap),
            tapped(path, 12, &tap),
            5,
        )
        .unwrap();
        Run {
            pair,
            tap,
            video: video_stream,
            seen_a: 0,
            seen_b: 0,
            n: 0,
        }
    }

    /// Both sides send media every 20 ms (audio) or 33 ms (video; a key picture when the
    /// peer or the transport asked for one) for `d`.
    fn media_for(&mut self, d: Duration) {
        let step = if self.video { 33 } else { 20 };
        let end = self.pair.now() + d;
        while self.pair.now() < end {
            self.n += 1;
            if self.video {
                let key_a = asked_key(&self.pair.a.events, &mut self.seen_a) || self.n == 1;
                let key_b = asked_key(&self.pair.b.events, &mut self.seen_b) || self.n == 1;
                let (pa, pb) = (picture(key_a), picture(key_b));
                // A closed (failed) stream refuses media: that is its answer.
                let _ = self.pair.with_a(|c, now| c.send_video(now, &pa, None));
                let _ = self.pair.with_b(|c, now| c.send_video(now, &pb, None));
            } else {
                let _ = self
                    .pair
                    .with_a(|c, now| c.send_audio_payload(now, MARKER, 20));
                let _ = self
                    .pair
                    .with_b(|c, now| c.send_audio_payload(now, MARKER, 20));
            }
            self.pair.run_for(Duration::from_millis(step));
        }
    }

    /// Media frames B and A received.
    fn received(&self) -> (usize, usize) {
        let count = |evs: &[(Instant, StreamEvent)]| {
            evs.iter()
                .filter(|(_, e)| match e {
                    StreamEvent::Audio(f) => f.payload == MARKER,
                    StreamEvent::Video(f) => f.data.len() > 100,
                    _ => false,
                })
                .count()
        };
        (count(&self.pair.b.events), count(&self.pair.a.events))
    }

    fn failures(evs: &[(Instant, StreamEvent)]) -> Vec<(Instant, TransportFailure)> {
        evs.iter()
            .filter_map(|(t, e)| match e {
                StreamEvent::TransportFailed(f) => Some((*t, f.clone())),
                _ => None,
            })
            .collect()
    }

    fn keyed(&self) -> bool {
        [&self.pair.a.core, &self.pair.b.core]
            .iter()
            .all(|c| c.stats().dtls_state == TransportDtlsState::Connected as u32)
    }
}

/// Whether events after `seen` hold a key-frame request; moves `seen` on.
fn asked_key(evs: &[(Instant, StreamEvent)], seen: &mut usize) -> bool {
    let asked = evs[*seen..]
        .iter()
        .any(|(_, e)| matches!(e, StreamEvent::KeyframeRequested(_)));
    *seen = evs.len();
    asked
}

fn picture(key: bool) -> Vec<u8> {
    if key {
        h264_picture(true, 3000, 7)
    } else {
        h264_picture(false, 800, 9)
    }
}

/// Both ways, media flows as SRTP once the handshake is done; nothing made before the keys
/// and nothing after left in the clear.
fn flows_both_ways(a_ice: IceRole, b_ice: IceRole) {
    for video_stream in [false, true] {
        let (a, b) = params(a_ice, b_ice, false);
        let mut run = Run::new(
            video_stream,
            a,
            b,
            PathConfig::clean(Duration::from_millis(10)),
        );
        // Media from the first instant: before ICE and DTLS are done it must be dropped.
        run.media_for(Duration::from_secs(4));
        let what = format!("{a_ice:?}/{b_ice:?} video={video_stream}");
        assert!(run.keyed(), "{what}: {:?}", run.pair.a.core.stats());
        let (sa, sb) = (run.pair.a.core.stats(), run.pair.b.core.stats());
        for s in [&sa, &sb] {
            let want_ice = if a_ice.is_some() {
                TransportIceState::Connected
            } else {
                TransportIceState::Off
            };
            assert_eq!(s.ice_state, want_ice as u32, "{what}: {s:?}");
            assert!(s.ice_remote.is_some(), "{what}");
            assert_eq!(s.srtp_auth_failed, 0, "{what}");
            assert!(s.media_dropped_unkeyed > 0, "{what}: made before the keys");
        }
        if a_ice.is_some() {
            assert!(sa.stun_accepted > 0 && sb.stun_accepted > 0, "{what}");
            assert_eq!(sa.ice_local, Some(addr(A)), "{what}");
            assert_eq!(sa.ice_remote, Some(addr(B)), "{what}");
            assert_eq!(sb.ice_remote, Some(addr(A)), "{what}");
        } else {
            assert_eq!(run.tap.stun.load(Ordering::Relaxed), 0, "{what}");
        }
        assert_eq!(
            run.pair.a.core.srtp_suite(),
            run.pair.b.core.srtp_suite(),
            "{what}"
        );
        assert!(run.pair.a.core.srtp_suite().is_some());
        let (to_b, to_a) = run.received();
        // 4 s of media at 50 (audio) or 30 (video) a second, less the set-up: well over half.
        let floor = if video_stream { 40 } else { 80 };
        assert!(to_b >= floor && to_a >= floor, "{what}: {to_b} {to_a}");
        assert!(run.tap.dtls.load(Ordering::Relaxed) >= 4, "{what}");
        assert!(run.tap.media.load(Ordering::Relaxed) > 0, "{what}");
        assert_eq!(
            run.tap.plain.load(Ordering::Relaxed),
            0,
            "{what}: plaintext"
        );
        if video_stream {
            // The keys made both senders ask their application for a key picture.
            for evs in [&run.pair.a.events, &run.pair.b.events] {
                assert!(evs
                    .iter()
                    .any(|(_, e)| matches!(e, StreamEvent::KeyframeRequested(_))));
            }
        }
    }
}

#[test]
fn full_controlling_and_lite_connect_and_carry_srtp() {
    flows_both_ways(Some((false, true)), Some((true, false)));
}

#[test]
fn two_full_agents_connect_and_carry_srtp() {
    flows_both_ways(Some((false, true)), Some((false, false)));
}

#[test]
fn dtls_srtp_without_ice_connects_and_carries_srtp() {
    flows_both_ways(None, None);
}

#[test]
fn a_wrong_fingerprint_ends_the_stream_without_media() {
    for (a_ice, b_ice) in [
        (Some((false, true)), Some((true, false))),
        (None::<(bool, bool)>, None),
    ] {
        let (a, b) = params(a_ice, b_ice, true);
        let mut run = Run::new(false, a, b, PathConfig::clean(Duration::from_millis(10)));
        run.media_for(Duration::from_secs(5));
        assert_eq!(run.received(), (0, 0));
        assert_eq!(run.tap.plain.load(Ordering::Relaxed), 0);
        let fails = Run::failures(&run.pair.b.events);
        assert_eq!(
            fails.iter().map(|(_, f)| f.clone()).collect::<Vec<_>>(),
            vec![TransportFailure::Dtls(DtlsError::FingerprintMismatch)],
            "{a_ice:?}"
        );
        let sb = run.pair.b.core.stats();
        assert_eq!(sb.dtls_state, TransportDtlsState::Failed as u32);
        assert!(run.pair.b.core.is_closed() && run.pair.b.core.peer_gone());
        assert!(run.pair.b.core.srtp_suite().is_none());
        // (A, the client, may have finished its side: with DTLS 1.3 the server's Finished
        // comes before the client's certificate. What it sends goes nowhere.)
    }
}

#[test]
fn consent_expiry_on_a_blackholed_path_ends_the_stream() {
    for b_lite in [true, false] {
        let (a, b) = params(Some((false, true)), Some((b_lite, false)), false);
        let mut run = Run::new(false, a, b, PathConfig::clean(Duration::from_millis(10)));
        // Healthy for longer than consent lasts (30 s): a core that never renewed it would
        // fail here.
        run.media_for(Duration::from_secs(45));
        assert!(run.keyed());
        for evs in [&run.pair.a.events, &run.pair.b.events] {
            let fails = Run::failures(evs);
            assert!(
                fails.is_empty(),
                "lite={b_lite}: {fails:?} on a healthy path"
            );
        }
        let cut = run.pair.now();
        run.tap.cut.store(true, Ordering::Relaxed);
        run.media_for(Duration::from_secs(45));
        for (side, evs, core) in [
            ("A", &run.pair.a.events, &run.pair.a.core),
            ("B", &run.pair.b.events, &run.pair.b.core),
        ] {
            let fails = Run::failures(evs);
            assert_eq!(fails.len(), 1, "{side} lite={b_lite}: {fails:?}");
            let (at, why) = &fails[0];
            assert_eq!(*why, TransportFailure::ConsentExpired, "{side}");
            let after = *at - cut;
            // 30 s after the last consent, which came at most a keep-alive before the cut.
            assert!(
                after >= Duration::from_secs(25) && after <= Duration::from_secs(40),
                "{side} lite={b_lite}: ended {after:?} after the cut"
            );
            let s = core.stats();
            assert_eq!(s.ice_state, TransportIceState::ConsentExpired as u32);
            assert!(core.is_closed() && core.peer_gone());
            // Consent ended the stream, not the inactivity check.
            assert!(!evs
                .iter()
                .any(|(_, e)| matches!(e, StreamEvent::Inactive { .. })));
        }
    }
}

/// A peer that never sends anything: the passive DTLS server (B) would wait for a ClientHello
/// forever, and with ICE no consent check runs before a nomination. The transport ends the
/// stream 30 s after its start.
#[test]
fn a_transport_never_keyed_fails_after_the_set_up_timeout() {
    for (a_ice, b_ice) in [
        (None::<(bool, bool)>, None),
        (Some((false, true)), Some((true, false))),
    ] {
        let (a, b) = params(a_ice, b_ice, false);
        let mut run = Run::new(false, a, b, PathConfig::clean(Duration::from_millis(10)));
        let start = run.pair.now();
        run.tap.cut.store(true, Ordering::Relaxed);
        run.media_for(Duration::from_secs(25));
        assert!(
            Run::failures(&run.pair.b.events).is_empty(),
            "{b_ice:?}: {:?}",
            Run::failures(&run.pair.b.events)
        );
        run.media_for(Duration::from_secs(15));
        let fails = Run::failures(&run.pair.b.events);
        assert_eq!(fails.len(), 1, "{b_ice:?}: {fails:?}");
        let (at, why) = &fails[0];
        assert_eq!(*why, TransportFailure::SetupTimeout, "{b_ice:?}");
        let after = *at - start;
        assert!(
            after >= Duration::from_secs(30) && after <= Duration::from_secs(32),
            "{b_ice:?}: ended {after:?} after the start"
        );
        let core = &run.pair.b.core;
        assert_eq!(core.stats().dtls_state, TransportDtlsState::Failed as u32);
        assert!(core.is_closed() && core.peer_gone());
        assert_eq!(run.tap.plain.load(Ordering::Relaxed), 0);
    }
}

#[test]
fn junk_and_strangers_are_counted_not_fatal() {
    let (a, b) = params(Some((false, true)), Some((true, false)), false);
    let mut run = Run::new(false, a, b, PathConfig::clean(Duration::from_millis(10)));
    let stranger = addr("10.9.9.9:999");
    let a_addr = addr(A);
    let junk = |i: usize| -> Vec<u8> {
        let first = [0u8, 1, 3, 20, 22, 63, 64, 127, 128, 191, 200, 255][i % 12];
        let mut v = vec![first];
        v.extend((0..(i % 40)).map(|k| (k * 37 + i) as u8));
        v
    };
    let inject = |run: &mut Run, from: SocketAddr| {
        for i in 0..300 {
            let d = junk(i);
            run.pair
                .with_b(|c, now| c.handle_datagram(now, from, &d, false));
        }
        // A real RTP header (plain) from the peer's address: not keyed, or not SRTP.
        let rtp = [0x80u8, 111, 0, 1, 0, 0, 0, 1, 1, 2, 3, 4, 9, 9, 9, 9];
        run.pair
            .with_b(|c, now| c.handle_datagram(now, from, &rtp, false));
    };
    // Before the handshake, from a stranger and from the peer's own address.
    inject(&mut run, stranger);
    inject(&mut run, a_addr);
    run.media_for(Duration::from_secs(3));
    assert!(run.keyed());
    // After it too.
    inject(&mut run, stranger);
    inject(&mut run, a_addr);
    run.media_for(Duration::from_secs(2));
    let s = run.pair.b.core.stats();
    assert!(s.stun_malformed > 0 && s.transport_dropped > 0, "{s:?}");
    assert!(s.dtls_dropped > 0, "a stranger's DTLS: {s:?}");
    assert!(Run::failures(&run.pair.b.events).is_empty());
    assert!(!run.pair.b.core.is_closed());
    let (to_b, to_a) = run.received();
    assert!(to_b > 100 && to_a > 100, "{to_b} {to_a}");
}

#[test]
fn ten_percent_loss_during_set_up_still_connects() {
    for (seed_off, b_lite) in [(0u64, false), (1, true)] {
        let (a, b) = params(Some((false, true)), Some((b_lite, false)), false);
        let lossy = PathConfig {
            loss: 0.10,
            ..PathConfig::clean(Duration::from_millis(20))
        };
        let tap = Arc::new(Tap::default());
        let mut run = Run {
            pair: SimPair::new(
                Instant::now(),
                config(audio(), a),
                config(audio(), b),
                tapped(lossy, 21 + seed_off, &tap),
                tapped(lossy, 31 + seed_off, &tap),
                7,
            )
            .unwrap(),
            tap,
            video: false,
            seen_a: 0,
            seen_b: 0,
            n: 0,
        };
        run.media_for(Duration::from_secs(15));
        assert!(run.keyed(), "lite={b_lite}: {:?}", run.pair.b.core.stats());
        let (to_b, to_a) = run.received();
        assert!(to_b > 200 && to_a > 200, "{to_b} {to_a}");
        assert_eq!(run.tap.plain.load(Ordering::Relaxed), 0);
    }
}

#[test]
fn ice_dtls_needs_rtcp_mux_and_no_sdes_keys() {
    let (a, _) = params(None, None, false);
    let now = Instant::now();
    let wall = std::time::SystemTime::UNIX_EPOCH;
    let no_mux = CoreConfig {
        remote_rtp: addr(B),
        remote_rtcp: addr(B),
        rtcp_mux: false,
        ..config(audio(), a.clone())
    };
    let e = StreamCore::new(no_mux, now, wall, 1).unwrap_err();
    assert!(e.to_string().contains("rtcp-mux"), "{e}");
    let key = SrtpKey::from_os_rng(SrtpSuite::AesCm128HmacSha1_80);
    let both = CoreConfig {
        rtcp_mux: true,
        srtp: Some(SrtpKeys {
            send: key.clone(),
            recv: key,
        }),
        ..config(audio(), a)
    };
    let e = StreamCore::new(both, now, wall, 1).unwrap_err();
    assert!(e.to_string().contains("srtp"), "{e}");
}

#[test]
fn a_trickled_candidate_starts_the_checks() {
    let (mut a, mut b) = params(Some((false, true)), Some((false, false)), false);
    let ice =
        |p: &mut IceDtlsParams| std::mem::take(&mut p.ice.as_mut().unwrap().remote_candidates);
    let b_candidate = ice(&mut a).pop().unwrap();
    ice(&mut b);
    let mut run = Run::new(false, a, b, PathConfig::clean(Duration::from_millis(10)));
    run.media_for(Duration::from_secs(1));
    // Nobody knows where the other is: no check, no handshake, no media.
    assert_eq!(run.tap.stun.load(Ordering::Relaxed), 0);
    assert!(!run.keyed());
    assert_eq!(run.received(), (0, 0));
    run.pair
        .with_a(|c, now| c.add_remote_candidate(now, b_candidate));
    // B learns A's address from A's checks (a peer-reflexive candidate).
    run.media_for(Duration::from_secs(3));
    assert!(run.keyed(), "{:?}", run.pair.a.core.stats());
    let (to_b, to_a) = run.received();
    assert!(to_b > 50 && to_a > 50, "{to_b} {to_a}");
}

#[test]
fn without_ice_the_dtls_peer_is_latched_only_when_latching() {
    use roomkit_media::rtp::config::SourcePolicy;
    for latch in [true, false] {
        let (a, b) = params(None, None, false);
        let tap = Arc::new(Tap::default());
        let path = PathConfig::clean(Duration::from_millis(10));
        let b_cfg = CoreConfig {
            source_policy: if latch {
                SourcePolicy::LatchFirst
            } else {
                SourcePolicy::RemoteOnly
            },
            ..config(audio(), b)
        };
        let mut run = Run {
            pair: SimPair::new(
                Instant::now(),
                config(audio(), a),
                b_cfg,
                tapped(path, 41, &tap),
                tapped(path, 42, &tap),
                9,
            )
            .unwrap(),
            tap,
            video: false,
            seen_a: 0,
            seen_b: 0,
            n: 0,
        };
        // B's SDP named an address A does not send from (A is behind a NAT, say).
        let elsewhere = addr("10.0.0.9:7000");
        run.pair.with_b(|c, _| c.set_remote(elsewhere, elsewhere));
        run.media_for(Duration::from_secs(3));
        let sb = run.pair.b.core.stats();
        if latch {
            assert!(run.keyed(), "{sb:?}");
            assert_eq!(sb.ice_remote, Some(addr(A)));
            let (to_b, to_a) = run.received();
            assert!(to_b > 50 && to_a > 50, "{to_b} {to_a}");
        } else {
            assert!(!run.keyed());
            assert!(sb.dtls_dropped > 0, "{sb:?}");
            assert_eq!(sb.ice_remote, Some(elsewhere));
            assert_eq!(run.received().0, 0);
        }
        assert_eq!(run.tap.plain.load(Ordering::Relaxed), 0);
    }
}

/// Without ICE, a latching DTLS server (B) hears a spoofed DTLS datagram from a stranger before
/// the peer's ClientHello: it latches onto the stranger, but DTLS from the SDP's address (A)
/// takes the transport back before keys, and the call is keyed with A.
#[test]
fn without_ice_a_spoofed_dtls_datagram_does_not_take_the_call() {
    use roomkit_media::rtp::config::SourcePolicy;
    let (a, b) = params(None, None, false);
    let tap = Arc::new(Tap::default());
    let path = PathConfig::clean(Duration::from_millis(10));
    let b_cfg = CoreConfig {
        source_policy: SourcePolicy::LatchFirst,
        ..config(audio(), b)
    };
    let mut run = Run {
        pair: SimPair::new(
            Instant::now(),
            config(audio(), a),
            b_cfg,
            tapped(path, 51, &tap),
            tapped(path, 52, &tap),
            13,
        )
        .unwrap(),
        tap,
        video: false,
        seen_a: 0,
        seen_b: 0,
        n: 0,
    };
    // A handshake record header and junk, from elsewhere, before A's ClientHello lands.
    let stranger = addr("10.0.0.66:9999");
    let mut spoof = vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 40];
    spoof.extend([0x5a; 40]);
    run.pair
        .with_b(|c, now| c.handle_datagram(now, stranger, &spoof, false));
    run.media_for(Duration::from_secs(3));
    let sb = run.pair.b.core.stats();
    assert!(run.keyed(), "{sb:?}");
    assert_eq!(sb.ice_remote, Some(addr(A)));
    assert!(Run::failures(&run.pair.b.events).is_empty());
    let (to_b, to_a) = run.received();
    assert!(to_b > 50 && to_a > 50, "{to_b} {to_a}");
    assert_eq!(run.tap.plain.load(Ordering::Relaxed), 0);
}

#[test]
fn random_datagrams_never_panic_nor_end_the_stream() {
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};
    let (a, b) = params(Some((false, true)), Some((true, false)), false);
    let mut run = Run::new(false, a, b, PathConfig::clean(Duration::from_millis(10)));
    let mut rng = SmallRng::seed_from_u64(19);
    let sources = [addr(A), addr("10.9.9.9:999")];
    let spray = |run: &mut Run, rng: &mut SmallRng| {
        for i in 0..5000 {
            let len = rng.random_range(0..300);
            let mut d: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            if let Some(first) = d.first_mut() {
                // Every RFC 7983 range often: STUN, DTLS (handshake, alert, app data), RTP.
                *first = [0, 1, 20, 21, 22, 23, 128, 144, 200, *first][i % 10];
            }
            if d.len() > 20 && d[0] < 4 {
                // The STUN magic cookie, so parsing goes past the header.
                d[4..8].copy_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
            } else if d.len() > 13 && (20..=23).contains(&d[0]) {
                // A DTLS 1.2 record header with a plausible length.
                d[1] = 0xfe;
                d[2] = 0xfd;
                let n = (d.len() - 13) as u16;
                d[11..13].copy_from_slice(&n.to_be_bytes());
            }
            let from = sources[i % 2];
            run.pair
                .with_b(|c, now| c.handle_datagram(now, from, &d, false));
            run.pair
                .with_a(|c, now| c.handle_datagram(now, addr(B), &d, false));
        }
    };
    spray(&mut run, &mut rng);
    run.media_for(Duration::from_secs(3));
    assert!(run.keyed(), "{:?}", run.pair.b.core.stats());
    spray(&mut run, &mut rng);
    run.media_for(Duration::from_secs(2));
    for (side, evs) in [("A", &run.pair.a.events), ("B", &run.pair.b.events)] {
        assert!(
            Run::failures(evs).is_empty(),
            "{side}: {:?}",
            Run::failures(evs)
        );
    }
    let (to_b, to_a) = run.received();
    assert!(to_b > 150 && to_a > 150, "{to_b} {to_a}");
}

#[test]
fn closing_sends_bye_then_close_notify() {
    for ice in [Some((false, true)), None] {
        let b_ice = ice.map(|_| (true, false));
        let (a, b) = params(ice, b_ice, false);
        let mut run = Run::new(false, a, b, PathConfig::clean(Duration::from_millis(10)));
        run.media_for(Duration::from_secs(2));
        assert!(run.keyed());
        run.pair.with_a(|c, now| c.close(now));
        run.pair.run_for(Duration::from_secs(1));
        let evs = &run.pair.b.events;
        let bye = evs
            .iter()
            .position(|(_, e)| matches!(e, StreamEvent::RemoteBye { .. }));
        let closed = evs.iter().position(|(_, e)| {
            matches!(
                e,
                StreamEvent::TransportFailed(TransportFailure::DtlsClosed)
            )
        });
        assert!(
            bye.is_some() && closed.is_some() && bye < closed,
            "{ice:?}: BYE at {bye:?}, close_notify at {closed:?}"
        );
        assert_eq!(
            run.pair.a.core.stats().dtls_state,
            TransportDtlsState::Closed as u32
        );
        assert!(run.pair.b.core.is_closed());
    }
}
