//! ICE + DTLS-SRTP through the engine on real loopback sockets (issue 19): two engines, one
//! session each, audio and video streams opened with `StreamConfig::ice_dtls` set by hand (a
//! full controlling agent and DTLS client against a lite controlled agent and DTLS server, as a
//! browser against a WHIP server). Nothing in the engine's receive path may drop STUN or DTLS
//! before the core sees it: the handshake completes on the streams' own sockets and media flows
//! both ways as SRTP.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use roomkit_media::engine::{
    BoundMedia, EngineConfig, MediaEngine, RtpSockets, SessionId, SessionSpec, StreamConfig,
    StreamStats,
};
use roomkit_media::rtp::config::{AudioParams, MediaParams, VideoParams};
use roomkit_media::rtp::sim::h264_picture;
use roomkit_media::webrtc::{
    DtlsIdentity, IceAgent, IceConfig, IceDtlsParams, IceParams, TransportDtlsState,
    TransportIceState,
};

/// The longest the test waits for media, whatever the machine's load.
const DEADLINE: Duration = Duration::from_secs(20);

/// One side's ICE role and DTLS identity.
struct Side {
    lite: bool,
    controlling: bool,
    creds: roomkit_media::sdp::IceCredentials,
    identity: DtlsIdentity,
}

impl Side {
    fn new(lite: bool, controlling: bool) -> Side {
        Side {
            lite,
            controlling,
            creds: IceConfig::random_credentials(),
            identity: DtlsIdentity::generate().unwrap(),
        }
    }

    fn config(&self) -> IceConfig {
        IceConfig {
            lite: self.lite,
            controlling: self.controlling,
            credentials: self.creds.clone(),
        }
    }

    /// What our side of one stream runs: our host candidate `here`, the peer's at `there`.
    fn params(
        &self,
        here: SocketAddr,
        peer: &Side,
        there: SocketAddr,
        client: bool,
    ) -> IceDtlsParams {
        let peer_candidate = IceAgent::new(peer.config())
            .add_host_candidate(there)
            .unwrap();
        IceDtlsParams {
            ice: Some(IceParams {
                config: self.config(),
                host_candidates: vec![here],
                srflx_candidates: Vec::new(),
                remote_credentials: peer.creds.clone(),
                remote_candidates: vec![peer_candidate],
                relay: None,
            }),
            identity: self.identity.clone(),
            remote_fingerprints: vec![peer.identity.fingerprint().clone()],
            dtls_client: client,
        }
    }
}

fn bind() -> (RtpSockets, SocketAddr) {
    let s = RtpSockets::bind("127.0.0.1:0".parse().unwrap(), true).unwrap();
    let a = s.local_addr();
    (s, a)
}

fn stream(media: MediaParams, remote: SocketAddr, p: IceDtlsParams) -> StreamConfig {
    StreamConfig {
        media,
        remote_addr: remote,
        rtcp_mux: true,
        rtcp_interval: Duration::from_millis(500),
        ice_dtls: Some(p),
        ..StreamConfig::default()
    }
}

fn connected(s: &StreamStats) -> bool {
    s.ice_state == TransportIceState::Connected as u32
        && s.dtls_state == TransportDtlsState::Connected as u32
}

#[test]
fn engine_streams_run_ice_and_dtls_srtp_on_their_sockets() {
    let (a, b) = (Side::new(false, true), Side::new(true, false));
    let ((a_audio, a_aa), (a_video, a_va)) = (bind(), bind());
    let ((b_audio, b_aa), (b_video, b_va)) = (bind(), bind());
    let video = || MediaParams::Video(VideoParams::default());
    let audio = || MediaParams::Audio(AudioParams::default());
    let engines: Vec<(MediaEngine, SessionId)> = [
        (
            stream(audio(), b_aa, a.params(a_aa, &b, b_aa, true)),
            stream(video(), b_va, a.params(a_va, &b, b_va, true)),
            BoundMedia {
                audio: a_audio,
                video: Some(a_video),
            },
        ),
        (
            stream(audio(), a_aa, b.params(b_aa, &a, a_aa, false)),
            stream(video(), a_va, b.params(b_va, &a, a_va, false)),
            BoundMedia {
                audio: b_audio,
                video: Some(b_video),
            },
        ),
    ]
    .into_iter()
    .map(|(audio, video, bound)| {
        let engine = MediaEngine::new(EngineConfig::default()).unwrap();
        let id = SessionId::new_v4();
        let spec = SessionSpec {
            room_id: "room".into(),
            participant_id: "p".into(),
            metadata: HashMap::new(),
            video_metadata: HashMap::new(),
            audio,
            video: Some(video),
        };
        engine.create_session_bound(id, spec, bound).unwrap();
        (engine, id)
    })
    .collect();

    let payload = [0xd5u8; 160];
    let started = Instant::now();
    let mut n = 0u32;
    let done = |e: &(MediaEngine, SessionId)| {
        let st = e.0.session(e.1).unwrap().stats();
        let v = st.video.unwrap();
        connected(&st.audio) && connected(&v) && st.audio.packets_received >= 50 && v.frames >= 10
    };
    while started.elapsed() < DEADLINE && !engines.iter().all(done) {
        n += 1;
        for (engine, id) in &engines {
            let s = engine.session(*id).unwrap();
            // Before the keys the core drops what it is given: not an error.
            s.send_audio_payload(&payload, 20).unwrap();
            if n.is_multiple_of(2) {
                s.send_video(&h264_picture(n % 30 == 2, 2500, u64::from(n)), None)
                    .unwrap();
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    for (i, (engine, id)) in engines.iter().enumerate() {
        let s = engine.session(*id).unwrap();
        let st = s.stats();
        let v = st.video.clone().unwrap();
        for (what, x) in [("audio", &st.audio), ("video", &v)] {
            assert!(connected(x), "side {i} {what}: {x:?}");
            assert_eq!(x.srtp_auth_failed, 0, "side {i} {what}");
            assert!(x.stun_accepted > 0, "side {i} {what}: {x:?}");
            assert_eq!(x.ice_local.map(|a| a.ip()), Some([127, 0, 0, 1].into()));
        }
        assert!(st.audio.packets_received >= 50, "side {i}: {:?}", st.audio);
        assert!(v.frames >= 10, "side {i}: {v:?}");
        let info = s.current_info();
        let suite = info.audio.srtp_suite;
        assert!(suite.is_some(), "side {i}: SRTP keyed from DTLS");
        assert_eq!(info.video.unwrap().srtp_suite, suite);
    }
    // Each side's media goes to the other's sockets, as ICE selected.
    let remote = |e: &(MediaEngine, SessionId)| {
        let st = e.0.session(e.1).unwrap().stats();
        (st.audio.ice_remote, st.video.unwrap().ice_remote)
    };
    assert_eq!(remote(&engines[0]), (Some(b_aa), Some(b_va)));
    assert_eq!(remote(&engines[1]), (Some(a_aa), Some(a_va)));
}
