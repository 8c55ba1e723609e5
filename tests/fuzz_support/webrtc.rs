//! STUN and DTLS input through our wrappers (`webrtc::IceAgent`, `webrtc::StunBinding`,
//! `webrtc::TurnClient`, `webrtc::DtlsEndpoint`), as the RFC 7983 demultiplexer would hand it
//! over: arbitrary datagrams must be a counted drop or a refusal, never a panic; the Binding
//! client takes no answer to another transaction; the TURN client gets no allocation and hands
//! out no relayed data (the fuzzer cannot know its random transaction ids); nothing the fuzzer
//! writes may pass for an authenticated ICE check (it does not know the password) or complete a
//! DTLS handshake (it cannot present a certificate matching the fingerprint we expect).

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use roomkit_media::sdp::{Fingerprint, IceCredentials};
use roomkit_media::webrtc::{
    demux, BindingConfig, BindingInput, Demux, DtlsEndpoint, DtlsEngine, DtlsEvent, DtlsIdentity,
    IceAgent, IceConfig, IceInput, StunBinding, TurnClient, TurnConfig, TurnState,
};

use super::Cursor;

/// One certificate for every run: making one per input would cost more than the input.
fn identity() -> &'static DtlsIdentity {
    static ID: OnceLock<DtlsIdentity> = OnceLock::new();
    ID.get_or_init(|| DtlsIdentity::generate().expect("a certificate"))
}

fn credentials(ufrag: &str) -> IceCredentials {
    IceCredentials {
        ufrag: ufrag.to_string(),
        pwd: "fuzzfuzzfuzzfuzzfuzzfuzz".to_string(),
    }
}

/// The first byte picks the roles (ICE lite or full, DTLS client or server) and the DTLS
/// engine (OpenSSL or dimpl); the rest is a
/// series of datagrams, each a length byte and its bytes, delivered a few milliseconds apart.
pub fn datagrams(data: &[u8]) {
    let mut c = Cursor::new(data);
    let mode = c.u8();
    let start = Instant::now();
    let here: SocketAddr = "10.0.0.1:5000".parse().unwrap();
    let there: SocketAddr = "10.0.0.2:6000".parse().unwrap();
    let mut ice = IceAgent::new(IceConfig {
        lite: mode & 1 != 0,
        controlling: mode & 2 != 0,
        credentials: credentials("here"),
    });
    let _ = ice.add_host_candidate(here);
    let remote = roomkit_media::webrtc::Candidate::from_sdp_string(&format!(
        "candidate:1 1 udp 2130706431 {} {} typ host",
        there.ip(),
        there.port()
    ))
    .unwrap();
    ice.set_remote(&credentials("there"), &[remote]);
    // A fingerprint no certificate the fuzzer sends can have.
    let expected = Fingerprint {
        algorithm: "sha-256".into(),
        hash: vec![0x5a; 32],
    };
    let engine = if mode & 8 != 0 {
        DtlsEngine::Dimpl
    } else {
        DtlsEngine::OpenSsl
    };
    let mut dtls = DtlsEndpoint::with_engine(engine, identity(), mode & 4 != 0, &[expected], start);
    // The server-reflexive Binding client takes the same STUN datagrams as if from its server.
    let transaction_id = [0x42; 12];
    let mut binding = StunBinding::new(there, transaction_id, BindingConfig::default(), start);
    // The TURN client takes every datagram as if from its server (TURN answers are STUN; the
    // RFC 7983 range 64–79 is ChannelData).
    let mut turn = TurnClient::new(TurnConfig::new(there, "u", "p"), start);
    let mut now = start;
    for step in 0..64u32 {
        if c.is_empty() {
            break;
        }
        let len = usize::from(c.u8());
        let datagram = c.bytes(len);
        now = start + Duration::from_millis(u64::from(step) * 7);
        assert!(
            turn.handle_input(now, there, datagram).is_none(),
            "relayed data without an allocation"
        );
        turn.handle_timeout(now);
        while turn.poll_transmit().is_some() {}
        while turn.poll_event().is_some() {}
        assert_ne!(turn.state(), TurnState::Allocated, "a forged allocation");
        match demux(datagram) {
            Demux::Stun => {
                let _ = binding.poll_transmit(now);
                if binding.handle_datagram(there, datagram) == BindingInput::Answer {
                    assert_eq!(
                        datagram.get(8..20),
                        Some(&transaction_id[..]),
                        "an answer to another transaction was taken"
                    );
                }
                let got = ice.handle_input(now, there, here, datagram);
                assert_ne!(
                    got,
                    IceInput::Accepted,
                    "an unauthenticated check was accepted"
                );
            }
            Demux::Dtls => dtls.handle_input(now, datagram),
            Demux::Rtp(_) | Demux::Other => {}
        }
        ice.handle_timeout(now);
        dtls.handle_timeout(now);
        while ice.poll_transmit().is_some() {}
        while dtls.poll_transmit().is_some() {}
        while let Some(e) = dtls.poll_event() {
            assert!(
                !matches!(e, DtlsEvent::Connected(_)),
                "keys from a peer that proved no fingerprint"
            );
        }
        while ice.poll_event().is_some() {}
    }
    assert!(
        !ice.may_send(),
        "no pair can be selected without an authenticated check"
    );
    let _ = (ice.poll_timeout(), dtls.poll_timeout(), now);
}
