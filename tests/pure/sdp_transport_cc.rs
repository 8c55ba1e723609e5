//! Transport-wide congestion control in offer/answer (issue 17): offered and answered only when
//! configured, agreed only when both sides say `transport-cc` and map the transport-wide
//! sequence number with `a=extmap`, kept by a re-offer.

use std::net::IpAddr;

use roomkit_media::sdp::{
    answer, build_offer, parse_answer, reoffer, AnswerConfig, Direction, OfferConfig,
    ReofferConfig, ReofferVideo, SessionDescription,
};

const URI: &str = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn offer_config(cc: bool) -> OfferConfig {
    let mut oc = OfferConfig::new(ip("192.0.2.1"), 4000, 4002);
    oc.local.video_transport_cc = cc;
    oc
}

fn answer_config(cc: bool) -> AnswerConfig {
    let mut ac = AnswerConfig::new(ip("192.0.2.10"), 10000, 10002);
    ac.local.video_transport_cc = cc;
    ac
}

#[test]
fn agreed_only_when_both_sides_want_it() {
    for (ours, theirs) in [(true, true), (true, false), (false, true), (false, false)] {
        let offer = build_offer(&offer_config(ours));
        assert_eq!(
            offer.sdp.contains("a=rtcp-fb:96 transport-cc\r\n"),
            ours,
            "{}",
            offer.sdp
        );
        assert_eq!(offer.sdp.contains(&format!("a=extmap:3 {URI}\r\n")), ours);
        let sd = SessionDescription::parse(offer.sdp.as_bytes()).unwrap();
        let ans = answer(&sd, &answer_config(theirs)).unwrap();
        let both = ours && theirs;
        assert_eq!(ans.sdp.contains("transport-cc"), both, "{}", ans.sdp);
        assert_eq!(ans.sdp.contains(URI), both);
        let uas = ans.negotiation.video.clone().unwrap();
        let uac = parse_answer(&offer, ans.sdp.as_bytes())
            .unwrap()
            .video
            .unwrap();
        let want = both.then_some(3);
        assert_eq!((uac.transport_cc, uas.transport_cc), (want, want));
    }
}

#[test]
fn the_offered_id_is_kept_and_half_an_offer_is_not_enough() {
    let base = "v=0\r\no=- 1 1 IN IP4 192.0.2.5\r\ns=-\r\nc=IN IP4 192.0.2.5\r\nt=0 0\r\n\
                m=audio 5000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n\
                m=video 5002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
                a=fmtp:96 packetization-mode=1\r\n";
    let cases = [
        // Chrome's usual ID, answered as offered.
        (
            format!("a=rtcp-fb:96 transport-cc\r\na=extmap:5 {URI}\r\n"),
            Some(5),
        ),
        // Feedback without the extension, or the extension without feedback: not agreed.
        ("a=rtcp-fb:96 transport-cc\r\n".to_string(), None),
        (format!("a=extmap:5 {URI}\r\n"), None),
        // An ID only the two-byte form carries: our packets use the one-byte form.
        (
            format!("a=rtcp-fb:96 transport-cc\r\na=extmap:20 {URI}\r\n"),
            None,
        ),
    ];
    for (extra, want) in cases {
        let text = format!("{base}{extra}");
        let sd = SessionDescription::parse(text.as_bytes()).unwrap();
        let ans = answer(&sd, &answer_config(true)).unwrap();
        let v = ans.negotiation.video.clone().unwrap();
        assert_eq!(v.transport_cc, want, "{extra}");
        assert_eq!(
            ans.sdp.contains(&format!("a=extmap:5 {URI}\r\n")),
            want.is_some(),
            "{}",
            ans.sdp
        );
    }
}

#[test]
fn a_reoffer_keeps_what_was_agreed() {
    let offer = build_offer(&offer_config(true));
    let sd = SessionDescription::parse(offer.sdp.as_bytes()).unwrap();
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
        again.sdp.contains("a=rtcp-fb:96 transport-cc\r\n"),
        "{}",
        again.sdp
    );
    assert!(again.sdp.contains(&format!("a=extmap:3 {URI}\r\n")));
    assert!(again.video_transport_cc);
}
