//! Offer/answer against offers shaped like the ones real peers send.

use std::net::{IpAddr, SocketAddr};

use roomkit_media::sdp::{
    answer, build_offer, parse_answer, reanswer, reoffer, Answer, AnswerConfig, AnswerError,
    AudioCodec, Direction, OfferConfig, ReofferConfig, ReofferVideo, SessionDescription,
};
use roomkit_media::VideoCodec;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sock(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// An answerer taking G.711 only (the negotiation tests below are about everything but the
/// wideband defaults, which have tests of their own).
fn cfg(video: &[VideoCodec]) -> AnswerConfig {
    let mut c = AnswerConfig::new(ip("192.0.2.10"), 10000, 10002);
    c.local.audio_codecs = vec![AudioCodec::Pcmu, AudioCodec::Pcma];
    c.local.video_codecs = video.to_vec();
    c.local.session_id = 1234;
    c.local.session_version = 1;
    c.local.session_name = "roomkit".into();
    c
}

/// Answers `offer` and checks what every answer must satisfy: sdp-types reads it back, CRLF
/// endings, one m-line per offered one, in the same order and with the same media types.
fn answer_ok(offer: &str, cfg: &AnswerConfig) -> Answer {
    let sd = SessionDescription::parse(offer.as_bytes()).expect("offer parses");
    let a = answer(&sd, cfg).expect("offer is acceptable");
    check_answer_text(&sd, &a.sdp);
    a
}

fn check_answer_text(offer: &SessionDescription, text: &str) {
    assert!(text.ends_with("\r\n"));
    assert!(
        !text.replace("\r\n", "").contains('\n'),
        "bare LF in {text}"
    );
    let parsed = sdp_types::Session::parse(text.as_bytes()).expect("answer parses with sdp-types");
    assert_eq!(parsed.medias.len(), offer.media.len(), "{text}");
    for (m, o) in parsed.medias.iter().zip(&offer.media) {
        assert_eq!(m.media, o.kind.as_str());
        assert!(!m.fmt.trim().is_empty());
    }
    assert_eq!(parsed.times.len(), 1);
    assert_eq!(
        (parsed.times[0].start_time, parsed.times[0].stop_time),
        (0, 0)
    );
}

/// The m-line section of `text` that starts with `m=<kind>` (the `nth` one).
fn section(text: &str, nth: usize) -> String {
    let mut parts = text.split("m=").skip(1);
    format!("m={}", parts.nth(nth).unwrap())
}

const REFERENCE: &str = "v=0\r\n\
o=- 1 1 IN IP4 203.0.113.5\r\n\
s=call\r\n\
c=IN IP4 203.0.113.5\r\n\
t=0 0\r\n\
m=audio 20000 RTP/AVP 9 0 8 101\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n\
m=video 20002 RTP/AVP 97 96\r\n\
a=rtpmap:97 VP8/90000\r\n\
a=rtpmap:96 H264/90000\r\n\
a=fmtp:96 profile-level-id=42e01f;packetization-mode=1\r\n\
a=sendrecv\r\n";

#[test]
fn reference_example_pcmu_and_vp8_when_offerer_prefers_it() {
    let a = answer_ok(REFERENCE, &cfg(&[VideoCodec::H264, VideoCodec::Vp8]));
    let n = &a.negotiation;
    assert_eq!(n.audio.pt, 0);
    assert_eq!(n.audio.codec, AudioCodec::Pcmu);
    assert_eq!(n.audio.dtmf_pt, Some(101));
    assert_eq!(n.audio.remote, sock("203.0.113.5:20000"));
    assert_eq!(n.audio.remote_rtcp, sock("203.0.113.5:20001"));
    let v = n.video.as_ref().unwrap();
    assert_eq!(
        (v.pt, v.codec),
        (97, VideoCodec::Vp8),
        "offerer's order wins"
    );
    assert_eq!(v.packetization_mode, None);
    assert!(a.has_video());
    assert_eq!(
        a.sdp,
        "v=0\r\n\
o=- 1234 1 IN IP4 192.0.2.10\r\n\
s=roomkit\r\n\
c=IN IP4 192.0.2.10\r\n\
t=0 0\r\n\
m=audio 10000 RTP/AVP 0 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n\
m=video 10002 RTP/AVP 97\r\n\
a=rtpmap:97 VP8/90000\r\n\
a=sendrecv\r\n"
    );
}

#[test]
fn reference_example_h264_only_keeps_the_offered_fmtp() {
    let a = answer_ok(REFERENCE, &cfg(&[VideoCodec::H264]));
    let v = a.negotiation.video.as_ref().unwrap();
    assert_eq!((v.pt, v.codec, v.clock_rate), (96, VideoCodec::H264, 90000));
    assert_eq!(v.packetization_mode, Some(1));
    assert_eq!(v.profile_level_id.as_deref(), Some("42e01f"));
    assert_eq!(
        section(&a.sdp, 1),
        "m=video 10002 RTP/AVP 96\r\n\
a=rtpmap:96 H264/90000\r\n\
a=fmtp:96 profile-level-id=42e01f;packetization-mode=1\r\n\
a=sendrecv\r\n"
    );
}

#[test]
fn reference_example_with_g722_configured_takes_the_first_offered() {
    let mut c = cfg(&[VideoCodec::H264]);
    c.local.audio_codecs = vec![AudioCodec::Pcma, AudioCodec::from_name("G722").unwrap()];
    let a = answer_ok(REFERENCE, &c);
    assert_eq!(a.negotiation.audio.pt, 9);
    assert!(
        section(&a.sdp, 0).starts_with("m=audio 10000 RTP/AVP 9 101\r\na=rtpmap:9 G722/8000\r\n")
    );
}

const BARESIP: &str = "v=0\r\n\
o=- 3829211203 1617290129 IN IP4 198.51.100.7\r\n\
s=-\r\n\
c=IN IP4 198.51.100.7\r\n\
t=0 0\r\n\
m=audio 31000 RTP/AVP 0 8 101\r\n\
b=AS:64\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=sendrecv\r\n\
a=label:1\r\n\
a=rtcp-rsize\r\n\
a=ssrc:1234 cname:baresip\r\n\
m=video 31002 RTP/AVP 96 97 98 99 100\r\n\
b=AS:1000\r\n\
a=rtpmap:96 H264/90000\r\n\
a=fmtp:96 packetization-mode=0;profile-level-id=42e01f\r\n\
a=rtpmap:97 H264/90000\r\n\
a=fmtp:97 packetization-mode=1;profile-level-id=42e01f\r\n\
a=rtpmap:98 H263-1998/90000\r\n\
a=fmtp:98 CIF=1;CIF4=1\r\n\
a=rtpmap:99 MP4V-ES/90000\r\n\
a=fmtp:99 profile-level-id=3\r\n\
a=rtpmap:100 H265/90000\r\n\
a=rtcp-fb:* ccm fir\r\n\
a=rtcp-fb:* nack\r\n\
a=rtcp-fb:* nack pli\r\n\
a=sendrecv\r\n\
a=label:2\r\n\
a=rtcp-rsize\r\n";

#[test]
fn baresip_h264_mode_1_is_preferred_over_mode_0() {
    let a = answer_ok(BARESIP, &cfg(&[VideoCodec::H264]));
    let v = a.negotiation.video.as_ref().unwrap();
    assert_eq!(v.pt, 97);
    assert_eq!(v.packetization_mode, Some(1));
    assert!(v.pli && v.fir && v.nack);
    assert_eq!(a.negotiation.audio.dtmf_pt, Some(101));
    let video = section(&a.sdp, 1);
    assert!(video.starts_with("m=video 10002 RTP/AVP 97\r\n"), "{video}");
    assert!(video.contains("a=fmtp:97 profile-level-id=42e01f;packetization-mode=1\r\n"));
    assert!(video.contains("a=rtcp-fb:97 nack pli\r\n"));
    assert!(video.contains("a=rtcp-fb:97 ccm fir\r\n"));
    assert!(
        section(&a.sdp, 0).contains("a=fmtp:101 0-15\r\n"),
        "offer's events echoed"
    );
}

#[test]
fn baresip_with_only_mode_0_answers_mode_0() {
    let offer = BARESIP.replace(
        "a=fmtp:97 packetization-mode=1",
        "a=fmtp:97 packetization-mode=2",
    );
    let a = answer_ok(&offer, &cfg(&[VideoCodec::H264]));
    let v = a.negotiation.video.as_ref().unwrap();
    assert_eq!((v.pt, v.packetization_mode), (96, Some(0)));
    assert!(
        section(&a.sdp, 1).contains("a=fmtp:96 profile-level-id=42e01f;packetization-mode=0\r\n")
    );
}

const LINPHONE: &str = "v=0\r\n\
o=alice 1280 3094 IN IP4 192.168.1.20\r\n\
s=Talk\r\n\
c=IN IP4 192.168.1.20\r\n\
t=0 0\r\n\
a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics\r\n\
m=audio 7078 RTP/AVP 96 0 8 101\r\n\
a=rtpmap:96 opus/48000/2\r\n\
a=fmtp:96 useinbandfec=1\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=rtcp-fb:* trr-int 1000\r\n\
m=video 9078 RTP/AVP 96 97\r\n\
a=rtpmap:96 VP8/90000\r\n\
a=rtpmap:97 H264/90000\r\n\
a=fmtp:97 profile-level-id=42801F\r\n\
a=rtcp-fb:* trr-int 1000\r\n\
a=rtcp-fb:* ccm tmmbr\r\n\
a=rtcp-fb:96 nack pli\r\n\
a=rtcp-fb:97 nack pli\r\n";

#[test]
fn linphone_h264_without_packetization_mode_is_answered_mode_0() {
    let a = answer_ok(LINPHONE, &cfg(&[VideoCodec::H264]));
    let n = &a.negotiation;
    assert_eq!((n.audio.pt, n.audio.codec.clone()), (0, AudioCodec::Pcmu));
    let v = n.video.as_ref().unwrap();
    assert_eq!(v.pt, 97);
    assert_eq!(v.packetization_mode, Some(0));
    assert_eq!(v.profile_level_id.as_deref(), Some("42801F"));
    assert!(v.pli && !v.fir);
    let video = section(&a.sdp, 1);
    assert!(video.contains("a=fmtp:97 profile-level-id=42801F;packetization-mode=0\r\n"));
    assert!(!video.contains("packetization-mode=1"));
    assert!(
        !video.contains("tmmbr"),
        "feedback we do not do is not answered"
    );
}

#[test]
fn linphone_opus_when_configured() {
    let mut c = cfg(&[VideoCodec::Vp8]);
    c.local.audio_codecs = vec![
        AudioCodec::Pcmu,
        AudioCodec::from_name("opus/48000/2").unwrap(),
    ];
    let a = answer_ok(LINPHONE, &c);
    let au = &a.negotiation.audio;
    assert_eq!((au.pt, au.clock_rate, au.channels), (96, 48000, 2));
    // The only telephone-event runs at 8 kHz, not the codec's 48 kHz: RFC 4733 events share the
    // audio clock, so it is left out.
    assert_eq!(au.dtmf_pt, None);
    assert!(!a.sdp.contains("telephone-event"));
    assert!(section(&a.sdp, 0).contains("a=rtpmap:96 opus/48000/2\r\n"));
    assert_eq!(a.negotiation.video.as_ref().unwrap().codec, VideoCodec::Vp8);
}

#[test]
fn h264_without_profile_level_id_claims_no_higher_level() {
    let offer = REFERENCE.replace(
        "a=fmtp:96 profile-level-id=42e01f;packetization-mode=1\r\n",
        "",
    );
    let a = answer_ok(&offer, &cfg(&[VideoCodec::H264]));
    let v = a.negotiation.video.as_ref().unwrap();
    assert_eq!(v.packetization_mode, Some(0));
    assert_eq!(v.profile_level_id.as_deref(), Some("420010"));
    assert!(section(&a.sdp, 1).contains("a=fmtp:96 packetization-mode=0\r\n"));
}

#[test]
fn no_common_video_codec_rejects_the_video_line() {
    let a = answer_ok(REFERENCE, &cfg(&[]));
    assert!(!a.has_video());
    assert_eq!(section(&a.sdp, 1), "m=video 0 RTP/AVP 97 96\r\n");

    let offer = REFERENCE
        .replace("VP8/90000", "VP9/90000")
        .replace("H264/90000", "H265/90000");
    let a = answer_ok(&offer, &cfg(&[VideoCodec::H264, VideoCodec::Vp8]));
    assert!(a.negotiation.video.is_none());
    assert_eq!(section(&a.sdp, 1), "m=video 0 RTP/AVP 97 96\r\n");
}

#[test]
fn disabled_video_in_the_offer_stays_disabled() {
    let offer = REFERENCE.replace("m=video 20002", "m=video 0");
    let a = answer_ok(&offer, &cfg(&[VideoCodec::H264]));
    assert!(!a.has_video());
    assert_eq!(section(&a.sdp, 1), "m=video 0 RTP/AVP 97 96\r\n");
    let sd = SessionDescription::parse(offer.as_bytes()).unwrap();
    assert!(!sd.accepts_video(&[VideoCodec::H264]));
}

#[test]
fn no_video_port_reserved_rejects_video() {
    let mut c = cfg(&[VideoCodec::H264]);
    c.local.video_port = 0;
    let a = answer_ok(REFERENCE, &c);
    assert!(!a.has_video());
    let sd = SessionDescription::parse(REFERENCE.as_bytes()).unwrap();
    assert!(sd.accepts_video(&[VideoCodec::H264]));
    assert!(!sd.accepts_video(&[]));
}

#[test]
fn audio_only_offer() {
    let offer = REFERENCE.split("m=video").next().unwrap().to_string();
    let a = answer_ok(&offer, &cfg(&[VideoCodec::H264]));
    assert!(!a.has_video());
    assert!(!a.sdp.contains("m=video"));
}

#[test]
fn no_common_audio_codec_is_not_acceptable() {
    let offer = REFERENCE.replace(
        "m=audio 20000 RTP/AVP 9 0 8 101",
        "m=audio 20000 RTP/AVP 9 101",
    );
    let sd = SessionDescription::parse(offer.as_bytes()).unwrap();
    let err = answer(&sd, &cfg(&[VideoCodec::H264])).unwrap_err();
    assert_eq!(
        err,
        AnswerError::NotAcceptable("no common audio codec".into())
    );
    assert_eq!(err.status_code(), 488);
}

#[test]
fn no_audio_line_is_not_acceptable() {
    let offer = format!(
        "v=0\r\no=- 1 1 IN IP4 203.0.113.5\r\ns=-\r\nc=IN IP4 203.0.113.5\r\nt=0 0\r\n{}",
        section(REFERENCE, 1)
    );
    let sd = SessionDescription::parse(offer.as_bytes()).unwrap();
    let err = answer(&sd, &cfg(&[VideoCodec::H264])).unwrap_err();
    assert_eq!(
        err,
        AnswerError::NotAcceptable("no audio stream offered".into())
    );

    let disabled = REFERENCE.replace("m=audio 20000", "m=audio 0");
    let sd = SessionDescription::parse(disabled.as_bytes()).unwrap();
    assert!(matches!(
        answer(&sd, &cfg(&[])),
        Err(AnswerError::NotAcceptable(_))
    ));
}

#[test]
fn srtp_audio_is_skipped_for_a_plain_rtp_alternative() {
    let offer = "v=0\r\no=- 1 1 IN IP4 203.0.113.5\r\ns=-\r\nc=IN IP4 203.0.113.5\r\nt=0 0\r\n\
m=audio 20000 RTP/SAVP 0 101\r\n\
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
m=audio 20004 RTP/AVP 8 101\r\n\
a=rtpmap:101 telephone-event/8000\r\n";
    let a = answer_ok(offer, &cfg(&[]));
    assert_eq!(section(&a.sdp, 0), "m=audio 0 RTP/SAVP 0 101\r\n");
    assert!(section(&a.sdp, 1).starts_with("m=audio 10000 RTP/AVP 8 101\r\n"));
    assert_eq!(a.negotiation.audio.remote, sock("203.0.113.5:20004"));

    let only_srtp = offer.split("m=audio 20004").next().unwrap();
    let sd = SessionDescription::parse(only_srtp.as_bytes()).unwrap();
    let err = answer(&sd, &cfg(&[])).unwrap_err();
    assert!(err.to_string().contains("RTP/SAVP"), "{err}");
}

#[test]
fn telephone_event_keeps_the_offered_payload_type() {
    let offer = REFERENCE.replace("9 0 8 101", "0 100").replace(
        "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n",
        "a=rtpmap:100 telephone-event/8000\r\n",
    );
    let a = answer_ok(&offer, &cfg(&[]));
    assert_eq!(a.negotiation.audio.dtmf_pt, Some(100));
    let audio = section(&a.sdp, 0);
    assert!(
        audio.starts_with("m=audio 10000 RTP/AVP 0 100\r\n"),
        "{audio}"
    );
    assert!(audio.contains("a=rtpmap:100 telephone-event/8000\r\na=fmtp:100 0-16\r\n"));

    let mut c = cfg(&[]);
    c.telephone_event = false;
    let a = answer_ok(&offer, &c);
    assert_eq!(a.negotiation.audio.dtmf_pt, None);
    assert!(!a.sdp.contains("telephone-event"));
}

#[test]
fn telephone_event_matching_the_codec_clock_is_chosen() {
    let offer = "v=0\r\no=- 1 1 IN IP4 203.0.113.5\r\ns=-\r\nc=IN IP4 203.0.113.5\r\nt=0 0\r\n\
m=audio 20000 RTP/AVP 111 0 110 101\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=rtpmap:110 telephone-event/48000\r\n\
a=rtpmap:101 telephone-event/8000\r\n";
    let a = answer_ok(offer, &cfg(&[]));
    assert_eq!(a.negotiation.audio.pt, 0);
    assert_eq!(a.negotiation.audio.dtmf_pt, Some(101));
    let mut c = cfg(&[]);
    c.local.audio_codecs = vec![AudioCodec::from_name("opus/48000/2").unwrap()];
    let a = answer_ok(offer, &c);
    assert_eq!(a.negotiation.audio.dtmf_pt, Some(110));
    assert!(a.sdp.contains("a=rtpmap:110 telephone-event/48000\r\n"));
}

#[test]
fn ptime_comes_from_the_offer() {
    let offer = REFERENCE.replace("a=ptime:20", "a=ptime:30");
    let a = answer_ok(&offer, &cfg(&[]));
    assert_eq!(a.negotiation.audio.ptime, 30);
    assert!(a.sdp.contains("a=ptime:30\r\n"));
    let offer = REFERENCE.replace("a=ptime:20\r\n", "");
    let a = answer_ok(&offer, &cfg(&[]));
    assert_eq!(a.negotiation.audio.ptime, 20);
}

#[test]
fn rtcp_mux_and_rtcp_port() {
    let offer = REFERENCE
        .replace("a=ptime:20\r\n", "a=ptime:20\r\na=rtcp-mux\r\n")
        .replace(
            "a=rtpmap:97 VP8/90000\r\n",
            "a=rtpmap:97 VP8/90000\r\na=rtcp:30000 IN IP4 203.0.113.9\r\n",
        );
    let a = answer_ok(&offer, &cfg(&[VideoCodec::Vp8]));
    let n = &a.negotiation;
    assert!(n.audio.rtcp_mux);
    assert_eq!(n.audio.remote_rtcp, n.audio.remote);
    assert!(section(&a.sdp, 0).contains("a=rtcp-mux\r\n"));
    let v = n.video.as_ref().unwrap();
    assert!(!v.rtcp_mux);
    assert_eq!(v.remote_rtcp, sock("203.0.113.9:30000"));
    assert!(!section(&a.sdp, 1).contains("rtcp-mux"));

    let mut c = cfg(&[VideoCodec::Vp8]);
    c.local.rtcp_mux = false;
    let a = answer_ok(&offer, &c);
    assert!(!a.negotiation.audio.rtcp_mux);
    assert_eq!(a.negotiation.audio.remote_rtcp, sock("203.0.113.5:20001"));
    assert!(!a.sdp.contains("rtcp-mux"));
}

#[test]
fn direction_is_mirrored() {
    for (offered, answered) in [
        ("sendrecv", Direction::SendRecv),
        ("sendonly", Direction::RecvOnly),
        ("recvonly", Direction::SendOnly),
        ("inactive", Direction::Inactive),
    ] {
        let offer = REFERENCE.replacen("a=sendrecv", &format!("a={offered}"), 1);
        let a = answer_ok(&offer, &cfg(&[VideoCodec::H264]));
        assert_eq!(a.negotiation.audio.direction, answered, "{offered}");
        assert!(section(&a.sdp, 0).contains(&format!("a={answered}\r\n")));
        assert_eq!(a.negotiation.video.unwrap().direction, Direction::SendRecv);
    }
    // A session-level attribute applies to every stream without its own.
    let offer = REFERENCE
        .replace("t=0 0\r\n", "t=0 0\r\na=sendonly\r\n")
        .replace("a=sendrecv\r\n", "");
    let a = answer_ok(&offer, &cfg(&[VideoCodec::H264]));
    assert_eq!(a.negotiation.audio.direction, Direction::RecvOnly);
    assert_eq!(a.negotiation.video.unwrap().direction, Direction::RecvOnly);
}

#[test]
fn hold_address_is_never_sent_to() {
    let offer = REFERENCE.replace("c=IN IP4 203.0.113.5", "c=IN IP4 0.0.0.0");
    let a = answer_ok(&offer, &cfg(&[]));
    assert_eq!(a.negotiation.audio.direction, Direction::RecvOnly);
    assert!(a.sdp.contains("a=recvonly\r\n"));
}

#[test]
fn ipv6_offer_and_ipv6_answer() {
    let offer = REFERENCE.replace("IN IP4 203.0.113.5", "IN IP6 2001:db8::5");
    let mut c = cfg(&[VideoCodec::H264]);
    c.local.local_ip = ip("2001:db8::10");
    let a = answer_ok(&offer, &c);
    assert_eq!(a.negotiation.audio.remote, sock("[2001:db8::5]:20000"));
    assert!(a.sdp.contains("o=- 1234 1 IN IP6 2001:db8::10\r\n"));
    assert!(a.sdp.contains("c=IN IP6 2001:db8::10\r\n"));
}

#[test]
fn media_level_connection_overrides_session_level() {
    let offer = REFERENCE.replace(
        "m=video 20002 RTP/AVP 97 96\r\n",
        "m=video 20002 RTP/AVP 97 96\r\nc=IN IP6 2001:db8::7\r\n",
    );
    let a = answer_ok(&offer, &cfg(&[VideoCodec::H264]));
    assert_eq!(a.negotiation.audio.remote, sock("203.0.113.5:20000"));
    assert_eq!(
        a.negotiation.video.unwrap().remote,
        sock("[2001:db8::7]:20002")
    );
}

#[test]
fn lines_we_do_not_handle_are_rejected_in_place() {
    let offer = format!(
        "{REFERENCE}m=application 5000 UDP/BFCP *\r\na=floorctrl:c-only\r\n{}m=text 6000 RTP/AVP 98\r\n",
        section(REFERENCE, 1).replace("20002", "20010")
    );
    let a = answer_ok(&offer, &cfg(&[VideoCodec::H264]));
    assert_eq!(
        a.negotiation.video.as_ref().unwrap().remote.port(),
        20002,
        "first video taken"
    );
    assert_eq!(section(&a.sdp, 2), "m=application 0 UDP/BFCP *\r\n");
    assert_eq!(section(&a.sdp, 3), "m=video 0 RTP/AVP 97 96\r\n");
    assert_eq!(section(&a.sdp, 4), "m=text 0 RTP/AVP 98\r\n");
}

#[test]
fn avpf_is_answered_as_avpf() {
    let offer = REFERENCE.replace("m=video 20002 RTP/AVP", "m=video 20002 RTP/AVPF");
    let a = answer_ok(&offer, &cfg(&[VideoCodec::H264]));
    assert!(section(&a.sdp, 1).starts_with("m=video 10002 RTP/AVPF 96\r\n"));
}

#[test]
fn sloppy_offer_is_still_answered() {
    // LF endings, two session c= lines (sdp-types refuses), lower-case names, trailing spaces.
    let offer =
        "v=0\no=- 1 1 IN IP4 203.0.113.5\ns=-\nc=IN IP4 203.0.113.5\nc=IN IP4 203.0.113.6\n\
t=0 0\nm=audio 20000 RTP/AVP 8 101 \na=rtpmap:8 pcma/8000 \na=rtpmap:101 Telephone-Event/8000\n\
a=SENDONLY\n";
    let sd = SessionDescription::parse(offer.as_bytes()).unwrap();
    assert!(sd.parsed_leniently);
    let a = answer(&sd, &cfg(&[])).unwrap();
    check_answer_text(&sd, &a.sdp);
    assert_eq!(a.negotiation.audio.codec, AudioCodec::Pcma);
    assert_eq!(a.negotiation.audio.dtmf_pt, Some(101));
    assert_eq!(a.negotiation.audio.direction, Direction::RecvOnly);
}

#[test]
fn our_offer_answered_by_our_answerer_agrees_both_ways() {
    let mut oc = OfferConfig::new(ip("192.0.2.1"), 4000, 4002);
    oc.local.video_codecs = vec![VideoCodec::H264, VideoCodec::Vp8];
    oc.local.rtcp_mux = true;
    oc.local.audio_codecs = vec![
        AudioCodec::Pcmu,
        AudioCodec::Pcma,
        AudioCodec::from_name("opus/48000/2").unwrap(),
    ];
    let offer = build_offer(&oc);
    assert!(
        offer
            .sdp
            .contains("m=audio 4000 RTP/AVP 0 8 98 101 110\r\n"),
        "{}",
        offer.sdp
    );
    assert!(offer
        .sdp
        .contains("a=fmtp:98 useinbandfec=1;stereo=0;sprop-stereo=0\r\n"));
    assert!(offer.sdp.contains("a=rtpmap:110 telephone-event/48000\r\n"));
    assert!(offer.sdp.contains("m=video 4002 RTP/AVP 96 97 98 99\r\n"));
    assert!(offer.sdp.contains("a=rtcp-fb:96 nack\r\n"));
    assert!(offer
        .sdp
        .contains("a=rtpmap:98 rtx/90000\r\na=fmtp:98 apt=96\r\n"));
    assert!(offer
        .sdp
        .contains("a=rtpmap:99 rtx/90000\r\na=fmtp:99 apt=97\r\n"));
    assert!(offer
        .sdp
        .contains("a=fmtp:96 profile-level-id=42e01f;packetization-mode=1\r\n"));
    assert!(offer.sdp.contains("a=rtpmap:97 VP8/90000\r\n"));
    assert!(offer.sdp.contains("a=fmtp:101 0-16\r\n"));
    sdp_types::Session::parse(offer.sdp.as_bytes()).expect("offer parses with sdp-types");

    let mut ac = cfg(&[VideoCodec::Vp8, VideoCodec::H264]);
    ac.local.audio_codecs = vec![AudioCodec::Pcma];
    let sd = SessionDescription::parse(offer.sdp.as_bytes()).unwrap();
    let ans = answer(&sd, &ac).unwrap();
    check_answer_text(&sd, &ans.sdp);
    let uas = &ans.negotiation;
    assert_eq!(
        uas.video.as_ref().unwrap().codec,
        VideoCodec::H264,
        "our offer's order"
    );

    let uac = parse_answer(&offer, ans.sdp.as_bytes()).unwrap();
    assert_eq!(
        (uac.audio.pt, &uac.audio.codec),
        (uas.audio.pt, &uas.audio.codec)
    );
    assert_eq!(uac.audio.dtmf_pt, Some(101));
    assert_eq!(uac.audio.remote, sock("192.0.2.10:10000"));
    assert_eq!(uas.audio.remote, sock("192.0.2.1:4000"));
    assert!(uac.audio.rtcp_mux && uas.audio.rtcp_mux);
    let (v1, v2) = (uac.video.unwrap(), uas.video.clone().unwrap());
    assert_eq!(
        (v1.pt, v1.codec, v1.packetization_mode),
        (v2.pt, v2.codec, v2.packetization_mode)
    );
    assert_eq!(v1.profile_level_id.as_deref(), Some("42e01f"));
    assert_eq!(v1.remote, sock("192.0.2.10:10002"));
    assert!(v1.pli && v1.fir);
    assert!(v1.nack && v2.nack, "NACK agreed both ways");
    assert_eq!(
        (v1.rtx_pt, v2.rtx_pt),
        (Some(98), Some(98)),
        "RTX agreed both ways"
    );
}

#[test]
fn parse_answer_cases() {
    let oc = OfferConfig::new(ip("192.0.2.1"), 4000, 4002);
    let offer = build_offer(&oc);
    assert!(!offer.sdp.contains("rtcp-mux"));
    let head = "v=0\r\no=- 5 5 IN IP4 198.51.100.1\r\ns=-\r\nc=IN IP4 198.51.100.1\r\nt=0 0\r\n";

    // Video refused, audio recvonly, a static payload type without rtpmap.
    let reply = format!(
        "{head}m=audio 5000 RTP/AVP 8\r\na=recvonly\r\na=rtcp-mux\r\nm=video 0 RTP/AVP 96\r\n"
    );
    let n = parse_answer(&offer, reply.as_bytes()).unwrap();
    assert_eq!(n.audio.codec, AudioCodec::Pcma);
    assert_eq!(n.audio.direction, Direction::SendOnly);
    assert_eq!(n.audio.dtmf_pt, None);
    assert!(!n.audio.rtcp_mux, "we did not offer it");
    assert!(!n.has_video());

    // A codec renumbered by the answerer is followed by its rtpmap name.
    let reply = format!("{head}m=audio 5000 RTP/AVP 120\r\na=rtpmap:120 PCMA/8000\r\n");
    let n = parse_answer(&offer, reply.as_bytes()).unwrap();
    assert_eq!((n.audio.pt, n.audio.codec.clone()), (120, AudioCodec::Pcma));

    // H.264 answered without fmtp: mode 0.
    let reply = format!(
        "{head}m=audio 5000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n\
m=video 5002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
    );
    let n = parse_answer(&offer, reply.as_bytes()).unwrap();
    assert_eq!(n.audio.dtmf_pt, Some(101));
    let v = n.video.unwrap();
    assert_eq!((v.pt, v.packetization_mode), (96, Some(0)));

    // Audio rejected or answered with something we never offered.
    let reply = format!("{head}m=audio 0 RTP/AVP 0\r\n");
    assert!(parse_answer(&offer, reply.as_bytes()).is_err());
    let reply = format!("{head}m=audio 5000 RTP/AVP 18\r\n");
    assert!(parse_answer(&offer, reply.as_bytes()).is_err());
    assert!(matches!(
        parse_answer(&offer, b"SIP/2.0 200 OK"),
        Err(AnswerError::Malformed(_))
    ));
}

#[test]
fn reinvite_hold_resume_and_move() {
    let c = cfg(&[VideoCodec::H264]);
    let first = answer_ok(REFERENCE, &c);
    assert_eq!(first.session_version, 1);

    // The same offer again: the same answer, same version.
    let sd = SessionDescription::parse(REFERENCE.as_bytes()).unwrap();
    let same = reanswer(&sd, &first, &c).unwrap();
    assert_eq!(same.answer.sdp, first.sdp);
    assert!(!same.audio_remote_changed && !same.held);

    // Hold with sendonly: we answer recvonly, version goes up, addresses stay.
    let hold = REFERENCE.replacen("a=sendrecv", "a=sendonly", 1);
    let sd = SessionDescription::parse(hold.as_bytes()).unwrap();
    let held = reanswer(&sd, &first, &c).unwrap();
    assert!(held.held);
    assert_eq!(held.answer.session_version, 2);
    assert_eq!(held.answer.session_id, 1234);
    assert!(held.answer.sdp.contains("a=recvonly\r\n"));
    assert!(!held.audio_remote_changed);

    // Hold the old way, c=0.0.0.0: the address we send to is kept for when the call resumes.
    let old_hold = REFERENCE.replace("c=IN IP4 203.0.113.5", "c=IN IP4 0.0.0.0");
    let sd = SessionDescription::parse(old_hold.as_bytes()).unwrap();
    let held2 = reanswer(&sd, &held.answer, &c).unwrap();
    assert!(held2.held);
    assert_eq!(
        held2.answer.negotiation.audio.remote,
        sock("203.0.113.5:20000")
    );
    assert!(!held2.audio_remote_changed && !held2.video_remote_changed);

    // Resume from a new address, video dropped.
    let moved = REFERENCE
        .replace("203.0.113.5", "203.0.113.99")
        .replace("m=video 20002", "m=video 0");
    let sd = SessionDescription::parse(moved.as_bytes()).unwrap();
    let resumed = reanswer(&sd, &held2.answer, &c).unwrap();
    assert!(!resumed.held);
    assert!(resumed.audio_remote_changed);
    assert!(resumed.video_removed);
    assert_eq!(
        resumed.answer.negotiation.audio.remote,
        sock("203.0.113.99:20000")
    );
    assert_eq!(
        resumed.answer.negotiation.audio.direction,
        Direction::SendRecv
    );
    assert_eq!(
        resumed.answer.session_version,
        held2.answer.session_version + 1
    );

    // Video back again.
    let sd = SessionDescription::parse(REFERENCE.as_bytes()).unwrap();
    let back = reanswer(&sd, &resumed.answer, &c).unwrap();
    assert!(back.video_added);
}

#[test]
fn reinvite_keeps_the_codec_in_use() {
    let mut c2 = cfg(&[VideoCodec::H264, VideoCodec::Vp8]);
    c2.local.audio_codecs = vec![AudioCodec::Pcma, AudioCodec::Pcmu];
    let offer = REFERENCE.replace("9 0 8 101", "8 0 101");
    let first = answer_ok(&offer, &c2);
    assert_eq!(first.negotiation.audio.pt, 8);
    // The re-offer puts PCMU first, but PCMA is still offered: it stays.
    let sd = SessionDescription::parse(REFERENCE.as_bytes()).unwrap();
    let re = reanswer(&sd, &first, &c2).unwrap();
    assert_eq!(re.answer.negotiation.audio.pt, 8);
    assert_eq!(
        re.answer.negotiation.video.as_ref().unwrap().codec,
        VideoCodec::Vp8
    );
    // Dropped from the re-offer: the usual choice applies.
    let sd = SessionDescription::parse(REFERENCE.replace("9 0 8 101", "0 101").as_bytes()).unwrap();
    let re = reanswer(&sd, &first, &c2).unwrap();
    assert_eq!(re.answer.negotiation.audio.pt, 0);
}

#[test]
fn default_codecs_answer_g722_like_roomkit_and_opus_with_its_parameters() {
    // roomkit's reference answer to `9 0 8 101`: G.722, under its RTP clock of 8 kHz.
    let mut c = cfg(&[VideoCodec::H264]);
    c.local.audio_codecs = AudioCodec::defaults();
    let a = answer_ok(REFERENCE, &c);
    let au = &a.negotiation.audio;
    assert_eq!((au.pt, au.codec.clone()), (9, AudioCodec::G722));
    assert_eq!((au.clock_rate, au.codec.sample_rate()), (8000, 16000));
    assert_eq!(au.dtmf_pt, Some(101));
    assert!(
        section(&a.sdp, 0).starts_with("m=audio 10000 RTP/AVP 9 101\r\na=rtpmap:9 G722/8000\r\n")
    );

    // A WebRTC-style offer: Opus first, with telephone events at 48 kHz.
    let offer = "v=0\r\no=- 1 1 IN IP4 203.0.113.5\r\ns=-\r\nc=IN IP4 203.0.113.5\r\nt=0 0\r\n\
m=audio 20000 RTP/AVP 111 9 0 110 101\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=fmtp:111 minptime=10;useinbandfec=1;maxplaybackrate=16000\r\n\
a=rtpmap:110 telephone-event/48000\r\n\
a=rtpmap:101 telephone-event/8000\r\n";
    let a = answer_ok(offer, &c);
    let au = &a.negotiation.audio;
    assert_eq!((au.pt, au.codec.clone()), (111, AudioCodec::Opus));
    assert_eq!(au.dtmf_pt, Some(110), "events on the codec's clock");
    let opus = au.opus.expect("Opus parameters");
    assert!(opus.fec && !opus.stereo);
    assert_eq!(opus.max_playback_rate, Some(16000));
    let audio = section(&a.sdp, 0);
    assert!(audio.contains("a=rtpmap:111 opus/48000/2\r\n"), "{audio}");
    assert!(audio.contains("a=fmtp:111 useinbandfec=1;stereo=0;sprop-stereo=0\r\n"));

    // The offerer's order decides among what we take: G.722 when it comes before Opus.
    let reordered = offer.replace("RTP/AVP 111 9 0", "RTP/AVP 9 111 0");
    assert_eq!(
        answer_ok(&reordered, &c).negotiation.audio.codec,
        AudioCodec::G722
    );
}

/// An offer as GStreamer's or libwebrtc's: H.264 96 with NACK and an RTX payload type 97.
const RTX_OFFER: &str =
    "v=0\r\no=- 1 1 IN IP4 203.0.113.5\r\ns=-\r\nc=IN IP4 203.0.113.5\r\nt=0 0\r\n\
m=audio 20000 RTP/AVP 0\r\n\
m=video 20002 RTP/AVPF 96 97\r\n\
a=rtpmap:96 H264/90000\r\n\
a=fmtp:96 profile-level-id=42e01f;packetization-mode=1\r\n\
a=rtcp-fb:96 nack\r\n\
a=rtcp-fb:96 nack pli\r\n\
a=rtpmap:97 rtx/90000\r\n\
a=fmtp:97 apt=96;rtx-time=3000\r\n";

#[test]
fn rtx_and_nack_are_answered_only_when_enabled() {
    let c = cfg(&[VideoCodec::H264]);
    let a = answer_ok(RTX_OFFER, &c);
    let v = a.negotiation.video.as_ref().unwrap();
    assert!(v.nack && v.pli);
    assert_eq!(v.rtx_pt, Some(97));
    let video = section(&a.sdp, 1);
    assert!(
        video.starts_with("m=video 10002 RTP/AVPF 96 97\r\n"),
        "{video}"
    );
    assert!(video.contains("a=rtcp-fb:96 nack\r\n"));
    assert!(video.contains("a=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n"));

    // Without RTX we still NACK, and retransmit packets as they were.
    let mut no_rtx = c.clone();
    no_rtx.local.video_rtx = false;
    let a = answer_ok(RTX_OFFER, &no_rtx);
    let v = a.negotiation.video.as_ref().unwrap();
    assert!(v.nack && v.rtx_pt.is_none());
    assert!(section(&a.sdp, 1).starts_with("m=video 10002 RTP/AVPF 96\r\n"));

    // Without loss recovery we advertise neither: only what we do goes in the answer.
    let mut off = c;
    off.local.video_nack = false;
    let a = answer_ok(RTX_OFFER, &off);
    let v = a.negotiation.video.as_ref().unwrap();
    assert!(!v.nack && v.rtx_pt.is_none() && v.pli);
    let video = section(&a.sdp, 1);
    assert!(
        !video.contains("nack\r\n") && !video.contains("rtx"),
        "{video}"
    );
    assert!(video.contains("a=rtcp-fb:96 nack pli\r\n"));

    // RTX pointing at another payload type is not ours to take.
    let other = RTX_OFFER.replace("apt=96", "apt=100");
    let a = answer_ok(&other, &cfg(&[VideoCodec::H264]));
    assert_eq!(a.negotiation.video.unwrap().rtx_pt, None);
}

/// baresip's kind of offer: PCMU, then H.264 on PT 97 (mode 1), and an application line.
const MIXED_OFFER: &str = "v=0\r\no=peer 9 9 IN IP4 198.51.100.7\r\ns=-\r\n\
c=IN IP4 198.51.100.7\r\nt=0 0\r\n\
m=audio 5000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
m=video 5002 RTP/AVP 97\r\na=rtpmap:97 H264/90000\r\n\
a=fmtp:97 profile-level-id=42e01f;packetization-mode=1\r\na=rtcp-fb:97 nack pli\r\n\
m=application 5004 UDP/BFCP *\r\n";

#[test]
fn a_reoffer_keeps_everything_agreed_and_changes_the_direction() {
    let ours = answer_ok(MIXED_OFFER, &cfg(&[VideoCodec::H264]));
    let hold = reoffer(
        &ours,
        &ReofferConfig {
            direction: Direction::SendOnly,
            session_name: "roomkit".into(),
            video: ReofferVideo::Keep,
        },
    );
    let sd = SessionDescription::parse(hold.sdp.as_bytes()).unwrap();
    // The same three m-lines in place: ours rewritten, the refused one still refused.
    let kinds: Vec<(&str, u16)> = sd.media.iter().map(|m| (m.kind.as_str(), m.port)).collect();
    assert_eq!(
        kinds,
        [("audio", 10000), ("video", 10002), ("application", 0)]
    );
    assert_eq!(
        section(&hold.sdp, 0)
            .matches("m=audio 10000 RTP/AVP 0 101")
            .count(),
        1
    );
    assert!(
        section(&hold.sdp, 1).contains("m=video 10002 RTP/AVP 97"),
        "{}",
        hold.sdp
    );
    assert!(section(&hold.sdp, 1).contains("packetization-mode=1"));
    assert_eq!(hold.sdp.matches("a=sendonly").count(), 2, "{}", hold.sdp);
    assert_eq!((hold.session_id, hold.session_version), (1234, 2));
    // The far end answers recvonly: we may send, it does not.
    let their = MIXED_OFFER
        .replace("o=peer 9 9", "o=peer 9 10")
        .replace("m=application 5004", "m=application 0")
        .replace(
            "a=rtcp-fb:97 nack pli\r\n",
            "a=rtcp-fb:97 nack pli\r\na=recvonly\r\n",
        )
        .replace(
            "telephone-event/8000\r\n",
            "telephone-event/8000\r\na=recvonly\r\n",
        );
    let neg = parse_answer(&hold, their.as_bytes()).unwrap();
    assert_eq!(neg.audio.direction, Direction::SendOnly);
    assert_eq!(neg.video.unwrap().direction, Direction::SendOnly);
    assert_eq!(neg.audio.remote, sock("198.51.100.7:5000"));
}

#[test]
fn an_answer_keeps_our_own_hold() {
    // We hold the far end; it offers sendrecv: we answer sendonly (still not receiving), and
    // when it holds us too, inactive.
    let mut c = cfg(&[]);
    c.direction = Direction::SendOnly;
    let a = answer_ok(MIXED_OFFER, &c);
    assert_eq!(a.negotiation.audio.direction, Direction::SendOnly);
    let held = MIXED_OFFER.replace(
        "telephone-event/8000\r\n",
        "telephone-event/8000\r\na=sendonly\r\n",
    );
    let a = answer_ok(&held, &c);
    assert_eq!(a.negotiation.audio.direction, Direction::Inactive);
    assert!(section(&a.sdp, 0).contains("a=inactive"), "{}", a.sdp);
}

#[test]
fn a_reoffer_adds_and_removes_video() {
    // An audio-only call (video refused at first): adding video fills the refused m-line.
    let ours = answer_ok(MIXED_OFFER, &cfg(&[]));
    assert!(ours.negotiation.video.is_none());
    let add = reoffer(
        &ours,
        &ReofferConfig {
            direction: Direction::SendRecv,
            session_name: "roomkit".into(),
            video: ReofferVideo::Add {
                crypto: Vec::new(),
                port: 10010,
                codecs: vec![VideoCodec::H264, VideoCodec::Vp8],
                nack: true,
            },
        },
    );
    let video = section(&add.sdp, 1);
    assert!(video.contains("m=video 10010 RTP/AVP 96 97"), "{}", add.sdp);
    assert!(video.contains("a=rtcp-fb:96 nack\r\n"), "{video}");
    assert_eq!(add.video.len(), 2);
    let sd = SessionDescription::parse(add.sdp.as_bytes()).unwrap();
    assert_eq!(sd.media.len(), 3, "no m-line added or lost");
    // The far end takes H.264: video is agreed.
    let their = MIXED_OFFER
        .replace("m=video 5002 RTP/AVP 97", "m=video 5002 RTP/AVP 96")
        .replace("rtpmap:97", "rtpmap:96")
        .replace("fmtp:97", "fmtp:96")
        .replace("rtcp-fb:97", "rtcp-fb:96")
        .replace("m=application 5004", "m=application 0");
    let neg = parse_answer(&add, their.as_bytes()).unwrap();
    assert_eq!(neg.video.as_ref().unwrap().codec, VideoCodec::H264);
    // A call with video removes it: port 0, the m-line stays.
    let with_video = answer_ok(MIXED_OFFER, &cfg(&[VideoCodec::H264]));
    let remove = reoffer(
        &with_video,
        &ReofferConfig {
            direction: Direction::SendRecv,
            session_name: "roomkit".into(),
            video: ReofferVideo::Remove,
        },
    );
    assert!(
        section(&remove.sdp, 1).starts_with("m=video 0 "),
        "{}",
        remove.sdp
    );
    assert!(remove.video.is_empty());
    // Without any m=video line before, an added one goes last.
    let audio_only = "v=0\r\no=p 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\n\
                      t=0 0\r\nm=audio 5000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    let ours = answer_ok(audio_only, &cfg(&[VideoCodec::H264]));
    let add = reoffer(
        &ours,
        &ReofferConfig {
            direction: Direction::SendRecv,
            session_name: "roomkit".into(),
            video: ReofferVideo::Add {
                crypto: Vec::new(),
                port: 10012,
                codecs: vec![VideoCodec::Vp8],
                nack: false,
            },
        },
    );
    let sd = SessionDescription::parse(add.sdp.as_bytes()).unwrap();
    assert_eq!(sd.media.len(), 2);
    assert!(
        section(&add.sdp, 1).contains("m=video 10012 RTP/AVP 97"),
        "{}",
        add.sdp
    );
}
