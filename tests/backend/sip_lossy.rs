//! SIP calls recover lost video: NACK and RTX (RFC 4588) are offered and answered by default,
//! and a call between two of our backends whose video crosses a lossy path
//! (`roomkit-media netsim`) delivers every picture bit-exact, the lost packets repaired from the
//! RTX stream.

use crate::support;

use std::time::Duration;

use crossbeam_channel::unbounded;
use roomkit_media::backend::{DialOptions, SipBackendConfig, SipVideoBackend, StreamStats};
use roomkit_media::prelude::*;
use support::netsim::{Netsim, Path};
use support::sip::{body, config, dial_ok, sip_addr, start, Leg, RawUa, H264_ATTRS};

const T: Duration = Duration::from_secs(5);

/// A video backend that accepts media from the SDP address only (no latching), so a test can
/// re-point its video through a relay.
fn backend(slot: u16, video_rtx: bool) -> SipVideoBackend {
    SipVideoBackend::new(SipBackendConfig {
        symmetric_rtp: false,
        video_rtx,
        user: format!("user{slot}"),
        ..config(slot)
    })
    .unwrap()
}

/// Our H.264 offer with generic NACK and an RTX payload type for it.
fn offer_with_rtx(audio_port: u16) -> String {
    let attrs = format!(
        "{H264_ATTRS}a=rtcp-fb:96 nack\r\na=rtcp-fb:96 nack pli\r\n\
         a=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n"
    );
    support::sip::offer(
        audio_port,
        Some((audio_port + 2, "96 97", &attrs)),
        "sendrecv",
    )
}

#[test]
fn answer_carries_rtx_when_enabled_and_not_when_disabled() {
    for (slot, rtx) in [(46, true), (47, false)] {
        let be = backend(slot, rtx);
        let ua = RawUa::new(start(&be));
        let mut leg = Leg::new();
        let ok = ua.establish(&mut leg, "", &offer_with_rtx(40100 + slot * 4));
        let sdp = body(&ok);
        assert!(
            sdp.contains("a=rtcp-fb:96 nack\r\n"),
            "NACK answered: {sdp}"
        );
        assert_eq!(
            sdp.contains("a=rtpmap:97 rtx/90000") && sdp.contains("a=fmtp:97 apt=96"),
            rtx,
            "video_rtx = {rtx}: {sdp}"
        );
        leg.cseq += 1;
        leg.branch = format!("z9hG4bK{}", support::sip::token());
        ua.send(&ua.request("BYE", &leg, "", ""));
        ua.expect_status(200, "BYE", T);
    }
}

#[test]
fn offer_carries_rtx_when_enabled_and_not_when_disabled() {
    for (slot, rtx) in [(48, true), (49, false)] {
        let be = backend(slot, rtx);
        start(&be);
        // A raw UA that takes the INVITE and never answers: only the offer matters.
        let ua = RawUa::new("127.0.0.1:9".parse().unwrap());
        let s = be
            .dial(&format!("sip:peer@{}", ua.addr()), DialOptions::default())
            .unwrap();
        let invite = ua.expect_request("INVITE", T);
        let sdp = body(&invite);
        assert!(sdp.contains("m=video"), "{sdp}");
        assert!(sdp.contains(" nack\r\n"), "NACK offered: {sdp}");
        assert_eq!(sdp.contains(" rtx/90000"), rtx, "video_rtx = {rtx}: {sdp}");
        be.hangup(s).unwrap();
    }
}

/// A call from `caller` to `callee` whose caller → callee video (and the callee's RTCP back)
/// crosses `roomkit-media netsim` at 5 % loss: 120 pictures (a key picture every 30) sent at
/// ~30 fps, and what arrived, with both ends' video stats.
pub(crate) struct LossyVideoCall {
    pub caller: SipVideoBackend,
    pub call: SessionId,
    /// Pictures sent, and how many distinct ones arrived bit-exact.
    pub sent: usize,
    pub delivered: usize,
    pub tx: StreamStats,
    pub rx: StreamStats,
    /// netsim's closing stats.
    pub netsim: String,
}

pub(crate) fn video_call_through_lossy_netsim(
    caller: SipVideoBackend,
    callee: &SipVideoBackend,
    seed: u64,
) -> LossyVideoCall {
    let (ctx, calls) = unbounded();
    callee.on_call(move |s| {
        let _ = ctx.send(s.id);
    });
    let (vtx, pictures) = unbounded::<Vec<u8>>();
    callee.on_video_received(move |_, f| {
        let _ = vtx.send(f.data.to_vec());
    });
    start(callee);
    start(&caller);
    let call = dial_ok(
        &caller,
        &format!("sip:room@{}", sip_addr(callee)),
        DialOptions::default(),
    );
    let callee_id = calls.recv_timeout(T).expect("the call reaches the callee");
    let ours = caller.get_video_session(call).expect("the call has video");
    let callee_video = ours.video.as_ref().unwrap().remote_addr;

    // Caller video → netsim → callee, and the callee's RTCP (NACKs, reports) back the same way.
    let mut path = Netsim::start(
        &[format!("127.0.0.1:0={callee_video}")],
        &Path::lossy(5.0, seed),
        60,
    );
    let (listen, via) = path.pipes[0];
    caller.update_remote(call, None, Some(listen)).unwrap();
    callee.update_remote(callee_id, None, Some(via)).unwrap();

    let (sent, delivered) = support::send_pictures_and_count(
        |p| caller.send_video(call, p).unwrap(),
        || pictures.recv_timeout(Duration::from_secs(2)).ok(),
    );
    let tx = caller.stats(call).unwrap().video.unwrap();
    let rx = callee.stats(callee_id).unwrap().video.unwrap();
    let netsim = path.stop();
    LossyVideoCall {
        caller,
        call,
        sent,
        delivered,
        tx,
        rx,
        netsim,
    }
}

#[test]
fn video_of_a_sip_call_through_a_lossy_path_is_repaired_with_rtx() {
    let callee = backend(44, true);
    let r = video_call_through_lossy_netsim(backend(45, true), &callee, 7);
    let (tx, rx) = (&r.tx, &r.rx);
    eprintln!(
        "delivered {}/{}; caller retransmitted {}, callee nack_sent {} rtx_received {} \
         recovered {}; netsim {}",
        r.delivered,
        r.sent,
        tx.retransmitted,
        rx.nack_sent,
        rx.rtx_received,
        rx.recovered,
        r.netsim
    );
    assert!(
        rx.nack_sent > 0,
        "the path lost packets and the callee asked"
    );
    assert!(tx.retransmitted > 0, "the caller answered NACKs");
    assert!(rx.rtx_received > 0, "repairs came on the RTX stream");
    assert!(rx.recovered > 0, "repairs filled gaps in time");
    // Repairs race real-time deadlines, which a loaded machine can miss: 90 %, not all but
    // three. Unrepaired, 5 % loss spoils about one 3-packet picture in seven, and more behind it.
    assert!(
        r.delivered * 10 >= r.sent * 9,
        "nearly every picture arrives: {}/{}",
        r.delivered,
        r.sent
    );
    r.caller.hangup(r.call).unwrap();
}
