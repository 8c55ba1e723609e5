//! Forward error correction in SIP calls: with `video_fec` on both sides, RED and ULPFEC are
//! offered and agreed, and a call between two of our backends whose video crosses a lossy path
//! (`roomkit-media netsim`) carries FEC, sized from the callee's reports (so little of it on this
//! short path, where NACK repairs in time), and everything arrives.

use crate::sip_lossy::video_call_through_lossy_netsim;
use crate::support::sip::config;

use roomkit_media::backend::{SipBackendConfig, SipVideoBackend};

/// A video backend with FEC that takes media from the SDP address only (so a test can re-point
/// its video through a relay).
fn backend(slot: u16) -> SipVideoBackend {
    SipVideoBackend::new(SipBackendConfig {
        symmetric_rtp: false,
        video_fec: true,
        user: format!("user{slot}"),
        ..config(slot)
    })
    .unwrap()
}

#[test]
fn video_of_a_sip_call_with_fec_carries_ulpfec_and_arrives() {
    let callee = backend(60);
    let r = video_call_through_lossy_netsim(backend(61), &callee, 11);
    let (tx, rx) = (&r.tx, &r.rx);
    eprintln!(
        "delivered {}/{}; caller fec_sent {} retransmitted {}; callee fec_received {} \
         fec_recovered {} fec_unrecoverable {} nack_sent {}; netsim {}",
        r.delivered,
        r.sent,
        tx.fec_sent,
        tx.retransmitted,
        rx.fec_received,
        rx.fec_recovered,
        rx.fec_unrecoverable,
        rx.nack_sent,
        r.netsim,
    );
    assert!(tx.fec_sent > 0, "FEC agreed and sent");
    assert!(rx.fec_received > 0, "FEC arrived and was understood");
    // FEC and NACK together; real-time deadlines on a loaded machine: 90 %, not all.
    assert!(
        r.delivered * 10 >= r.sent * 9,
        "nearly every picture arrives: {}/{}",
        r.delivered,
        r.sent
    );
    r.caller.hangup(r.call).unwrap();
}
