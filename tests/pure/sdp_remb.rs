//! REMB, abs-send-time and RFC 8888 in offer/answer (issue 17): our offers carry `ack ccfb`,
//! `goog-remb` and abs-send-time beside transport-cc; an answer picks one feedback in the order
//! transport-cc, RFC 8888, REMB (with abs-send-time when the peer maps it); the agreement
//! survives a re-offer and reads the same from the answer we get back.

use std::net::IpAddr;

use roomkit_media::rtp::config::{CcAgreement, CcFeedback};
use roomkit_media::sdp::{
    answer, build_offer, parse_answer, reoffer, AnswerConfig, Direction, OfferConfig,
    ReofferConfig, ReofferVideo, SessionDescription,
};

const TWCC: &str = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";
const ABS: &str = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn answer_config(cc: bool) -> AnswerConfig {
    let mut ac = AnswerConfig::new(ip("192.0.2.10"), 10000, 10002);
    ac.local.video_transport_cc = cc;
    ac
}

const BASE: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.5\r\ns=-\r\nc=IN IP4 192.0.2.5\r\nt=0 0\r\n\
                    m=audio 5000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n\
                    m=video 5002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
                    a=fmtp:96 packetization-mode=1\r\n";

#[test]
fn our_offer_carries_remb_and_abs_send_time_beside_transport_cc() {
    let mut oc = OfferConfig::new(ip("192.0.2.1"), 4000, 4002);
    oc.local.video_transport_cc = true;
    let offer = build_offer(&oc);
    for line in [
        "a=rtcp-fb:96 transport-cc\r\n".to_string(),
        "a=rtcp-fb:96 goog-remb\r\n".to_string(),
        "a=rtcp-fb:96 ack ccfb\r\n".to_string(),
        format!("a=extmap:3 {TWCC}\r\n"),
        format!("a=extmap:2 {ABS}\r\n"),
    ] {
        assert!(offer.sdp.contains(&line), "{line} in {}", offer.sdp);
    }
    oc.local.video_transport_cc = false;
    let offer = build_offer(&oc);
    assert!(!offer.sdp.contains("goog-remb") && !offer.sdp.contains(ABS));
}

#[test]
fn the_answer_prefers_transport_cc_then_remb_with_abs_send_time() {
    let cases = [
        // REMB and abs-send-time only (an older WebRTC stack): REMB, with the offered ID.
        (
            format!("a=rtcp-fb:96 goog-remb\r\na=extmap:4 {ABS}\r\n"),
            Some(CcAgreement::remb(Some(4))),
        ),
        // REMB without abs-send-time: REMB against RTP timestamps.
        (
            "a=rtcp-fb:96 goog-remb\r\n".to_string(),
            Some(CcAgreement::remb(None)),
        ),
        // Both: transport-cc wins, and nothing of REMB is answered.
        (
            format!(
                "a=rtcp-fb:96 goog-remb\r\na=rtcp-fb:96 transport-cc\r\n\
                 a=extmap:5 {TWCC}\r\na=extmap:4 {ABS}\r\n"
            ),
            Some(CcAgreement::transport_cc(5)),
        ),
        // RFC 8888 (for every payload type): preferred to REMB, after transport-cc.
        (
            "a=rtcp-fb:* ack ccfb\r\na=rtcp-fb:96 goog-remb\r\n".to_string(),
            Some(CcAgreement::ccfb()),
        ),
        (
            format!("a=rtcp-fb:96 ack ccfb\r\na=rtcp-fb:96 transport-cc\r\na=extmap:5 {TWCC}\r\n"),
            Some(CcAgreement::transport_cc(5)),
        ),
        // abs-send-time alone, or under a two-byte ID with REMB: no REMB / no extension.
        (format!("a=extmap:4 {ABS}\r\n"), None),
        (
            format!("a=rtcp-fb:96 goog-remb\r\na=extmap:20 {ABS}\r\n"),
            Some(CcAgreement::remb(None)),
        ),
    ];
    for (extra, want) in cases {
        let text = format!("{BASE}{extra}");
        let sd = SessionDescription::parse(text.as_bytes()).unwrap();
        let ans = answer(&sd, &answer_config(true)).unwrap();
        let v = ans.negotiation.video.clone().unwrap();
        assert_eq!(v.congestion(), want, "{extra}");
        let remb = want.is_some_and(|w| w.feedback == CcFeedback::Remb);
        let ccfb = want.is_some_and(|w| w.feedback == CcFeedback::Ccfb);
        assert_eq!(
            ans.sdp.contains("a=rtcp-fb:96 ack ccfb\r\n"),
            ccfb,
            "{}",
            ans.sdp
        );
        assert_eq!(
            ans.sdp.contains("a=rtcp-fb:96 goog-remb\r\n"),
            remb,
            "{}",
            ans.sdp
        );
        let abs = want.and_then(|w| w.abs_send_time_id);
        assert_eq!(
            ans.sdp.contains(&format!("a=extmap:4 {ABS}\r\n")),
            abs == Some(4),
            "{}",
            ans.sdp
        );
        // Not running congestion control: nothing agreed, nothing answered.
        let ans = answer(&sd, &answer_config(false)).unwrap();
        assert_eq!(ans.negotiation.video.unwrap().congestion(), None);
        assert!(!ans.sdp.contains("goog-remb") && !ans.sdp.contains(ABS));
        assert!(!ans.sdp.contains("ccfb"));
    }
}

#[test]
fn an_answer_with_remb_only_is_read_as_remb_and_a_reoffer_keeps_it() {
    let mut oc = OfferConfig::new(ip("192.0.2.1"), 4000, 4002);
    oc.local.video_transport_cc = true;
    let offer = build_offer(&oc);
    // The peer answers REMB and abs-send-time only.
    let text = format!(
        "{}a=rtcp-fb:96 goog-remb\r\na=extmap:2 {ABS}\r\n",
        BASE.replace("5002", "5004")
    );
    let neg = parse_answer(&offer, text.as_bytes()).unwrap();
    assert_eq!(
        neg.video.as_ref().unwrap().congestion(),
        Some(CcAgreement::remb(Some(2)))
    );
    // Our answer to a REMB offer, re-offered: the agreement stays.
    let sd = SessionDescription::parse(
        format!("{BASE}a=rtcp-fb:96 goog-remb\r\na=extmap:7 {ABS}\r\n").as_bytes(),
    )
    .unwrap();
    let ans = answer(&sd, &answer_config(true)).unwrap();
    let again = reoffer(
        &ans,
        &ReofferConfig {
            direction: Direction::SendOnly,
            session_name: "-".into(),
            video: ReofferVideo::Keep,
        },
    );
    assert!(
        again.sdp.contains("a=rtcp-fb:96 goog-remb\r\n"),
        "{}",
        again.sdp
    );
    assert!(again.sdp.contains(&format!("a=extmap:7 {ABS}\r\n")));
    assert!(!again.sdp.contains("transport-cc"));
    assert!(again.video_transport_cc);
}
