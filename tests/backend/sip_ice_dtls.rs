//! ICE and DTLS-SRTP in SIP calls between two of our backends on loopback (issue 19): with
//! `ice` and `dtls_srtp: Mandatory` on both sides the call connects over `UDP/TLS/RTP/SAVPF`,
//! the streams key SRTP from the handshake and audio and video flow both ways; a plain offer to
//! a mandatory side gets 488; DTLS-SRTP optional against off still connects, in plain RTP.

use crate::support;

use std::time::Duration;

use crossbeam_channel::unbounded;
use roomkit_media::backend::{CallState, DialOptions, SipBackendConfig, SipVideoBackend};
use roomkit_media::engine::SessionInfo;
use roomkit_media::prelude::*;
use roomkit_media::DtlsSrtpPolicy;
use support::sip::*;

const T: Duration = Duration::from_secs(10);

/// Each test's ports, apart from the other SIP tests' and from each other's: the answering
/// backend on `config(70 + slot)` (56000 + 200 × slot, 200 ports), the caller on
/// 59100 + 100 × slot (100 ports).
fn caller(slot: u16, ice: bool, dtls_srtp: DtlsSrtpPolicy) -> SipVideoBackend {
    let start = 59100 + 100 * slot;
    let be = SipVideoBackend::new(SipBackendConfig {
        local_sip_addr: "127.0.0.1:0".parse().unwrap(),
        local_rtp_ip: [127, 0, 0, 1].into(),
        rtp_port_start: start,
        rtp_port_end: start + 99,
        user: "roomkit-caller".into(),
        ice,
        dtls_srtp,
        ..SipBackendConfig::default()
    })
    .unwrap();
    be.start().expect("the dialing backend starts");
    be
}

fn answerer(slot: u16, ice: bool, dtls_srtp: DtlsSrtpPolicy) -> SipVideoBackend {
    SipVideoBackend::new(SipBackendConfig {
        ice,
        dtls_srtp,
        ..config(70 + slot)
    })
    .unwrap()
}

fn uri(be: &SipVideoBackend) -> String {
    format!("sip:room@{}", sip_addr(be))
}

#[test]
fn a_plain_offer_to_a_mandatory_side_gets_488() {
    let be = answerer(0, true, DtlsSrtpPolicy::Mandatory);
    start(&be);
    let uac = caller(0, false, DtlsSrtpPolicy::Off);
    let call = uac.dial(&uri(&be), DialOptions::default()).unwrap();
    let p = uac.wait_call(call, T).expect("a final answer");
    assert_eq!((p.state, p.status), (CallState::Failed, 488), "{p:?}");
    assert!(wait_until(T, || be.port_pool().available()
        == be.port_pool().capacity()));
}

#[test]
fn optional_against_off_connects_in_plain_rtp() {
    let be = answerer(1, true, DtlsSrtpPolicy::Optional);
    let (tx, calls) = unbounded::<SessionInfo>();
    be.on_call(move |s| {
        let _ = tx.send(s.clone());
    });
    start(&be);
    let uac = caller(1, false, DtlsSrtpPolicy::Off);
    let call = dial_ok(&uac, &uri(&be), DialOptions::default());
    let info = calls.recv_timeout(T).expect("on_call");
    assert!(info.audio.srtp_suite.is_none(), "{info:?}");
    let ours = uac.get_session(call).unwrap();
    assert!(ours.audio.srtp_suite.is_none(), "{ours:?}");
    uac.hangup(call).unwrap();
    assert!(wait_ended(&uac, call, T));
}
