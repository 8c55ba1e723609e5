//! ICE + DTLS-SRTP set-up time through the engine on loopback (issue 19): two engine streams on
//! 127.0.0.1, one a full ICE agent (controlling, the offerer's `a=setup:actpass`, so the DTLS
//! server once the answer says `active`) and one ICE-lite (controlled, `active`, the DTLS client:
//! our answer as a WHIP server makes it). Each round binds two sockets, opens both sessions and
//! waits until both streams report DTLS connected (keys exported, SRTP ready); the time from
//! opening to both keyed, p50/p99 over the rounds. Certificates are made before the clock starts
//! (a server would keep one). ICE paces its checks 50 ms apart (RFC 8445 Ta), which sets the
//! floor. The streams' states are polled every 0.5 ms.
//!
//! Run: `cargo bench --bench webrtc_loopback` (release). Two lines:
//! `engine_loopback_setup n=N failed=F p50_ms=.. p99_ms=.. max_ms=..`, then when each side
//! (full, lite) was keyed, p50.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

#[path = "cpu.rs"]
mod cpu;

use cpu::percentile;
use roomkit_media::engine::{
    BoundMedia, EngineConfig, MediaEngine, RtpSockets, SessionId, SessionSpec, StreamConfig,
};
use roomkit_media::rtp::config::{AudioParams, MediaParams};
use roomkit_media::webrtc::{
    DtlsIdentity, IceAgent, IceConfig, IceDtlsParams, IceParams, TransportDtlsState,
};

const ROUNDS: usize = 50;

/// One side before it opens: its socket, ICE agent settings and certificate.
struct Side {
    sockets: RtpSockets,
    here: SocketAddr,
    ice: IceConfig,
}

fn side(full: bool) -> Side {
    let sockets = RtpSockets::bind("127.0.0.1:0".parse().unwrap(), true).unwrap();
    let here = sockets.local_addr();
    Side {
        sockets,
        here,
        ice: IceConfig {
            lite: !full,
            controlling: full,
            credentials: IceConfig::random_credentials(),
        },
    }
}

/// Opens `me` towards `peer` as one audio session; `client` is its DTLS role.
fn open(
    engine: &MediaEngine,
    me: Side,
    identity: &DtlsIdentity,
    peer: (&IceConfig, SocketAddr, &DtlsIdentity),
    client: bool,
) -> SessionId {
    let (peer_ice, peer_addr, peer_id) = peer;
    let candidate = IceAgent::new(peer_ice.clone())
        .add_host_candidate(peer_addr)
        .unwrap();
    let id = SessionId::new_v4();
    let spec = SessionSpec {
        room_id: "bench".into(),
        participant_id: id.to_string(),
        metadata: HashMap::new(),
        video_metadata: HashMap::new(),
        audio: StreamConfig {
            media: MediaParams::Audio(AudioParams::default()),
            remote_addr: peer_addr,
            rtcp_mux: true,
            ice_dtls: Some(IceDtlsParams {
                ice: Some(IceParams {
                    config: me.ice,
                    host_candidates: vec![me.here],
                    srflx_candidates: Vec::new(),
                    remote_credentials: peer_ice.credentials.clone(),
                    remote_candidates: vec![candidate],
                    relay: None,
                }),
                identity: identity.clone(),
                remote_fingerprints: vec![peer_id.fingerprint().clone()],
                dtls_client: client,
            }),
            ..StreamConfig::default()
        },
        video: None,
    };
    engine
        .create_session_bound(
            id,
            spec,
            BoundMedia {
                audio: me.sockets,
                video: None,
            },
        )
        .unwrap();
    id
}

fn keyed(engine: &MediaEngine, id: SessionId) -> bool {
    engine
        .session(id)
        .is_ok_and(|s| s.stats().audio.dtls_state == TransportDtlsState::Connected as u32)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let engine = MediaEngine::new(EngineConfig::default()).unwrap();
    let (full_id, lite_id) = (
        DtlsIdentity::generate().unwrap(),
        DtlsIdentity::generate().unwrap(),
    );
    let (mut took, mut full_took, mut lite_took) = (Vec::new(), Vec::new(), Vec::new());
    let mut failed = 0;
    for _ in 0..ROUNDS {
        let (full, lite) = (side(true), side(false));
        let (full_ice, full_addr) = (full.ice.clone(), full.here);
        let (lite_ice, lite_addr) = (lite.ice.clone(), lite.here);
        let start = Instant::now();
        let a = open(
            &engine,
            full,
            &full_id,
            (&lite_ice, lite_addr, &lite_id),
            false,
        );
        let b = open(
            &engine,
            lite,
            &lite_id,
            (&full_ice, full_addr, &full_id),
            true,
        );
        let (mut at_full, mut at_lite) = (None, None);
        while start.elapsed() < Duration::from_secs(10) {
            let ms = start.elapsed().as_secs_f64() * 1e3;
            if at_full.is_none() && keyed(&engine, a) {
                at_full = Some(ms);
            }
            if at_lite.is_none() && keyed(&engine, b) {
                at_lite = Some(ms);
            }
            if at_full.is_some() && at_lite.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        match (at_full, at_lite) {
            (Some(f), Some(l)) => {
                took.push(f.max(l));
                full_took.push(f);
                lite_took.push(l);
            }
            _ => failed += 1,
        }
        let _ = engine.disconnect(a);
        let _ = engine.disconnect(b);
    }
    assert!(!took.is_empty(), "no set-up finished");
    println!(
        "engine_loopback_setup n={} failed={failed} p50_ms={:.1} p99_ms={:.1} max_ms={:.1}",
        took.len(),
        percentile(&mut took, 0.5),
        percentile(&mut took, 0.99),
        percentile(&mut took, 1.0),
    );
    println!(
        "engine_loopback_setup full_keyed_p50_ms={:.1} lite_keyed_p50_ms={:.1}",
        percentile(&mut full_took, 0.5),
        percentile(&mut lite_took, 0.5),
    );
}
