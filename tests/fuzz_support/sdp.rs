//! One SDP body through both sides of offer/answer: as an offer we answer (our answer must parse
//! back with one m-line per offered one, of the same kind, and carry what we agreed to), and as
//! the answer to our own offer (whatever it agrees to must be something we offered).

use roomkit_media::sdp::{
    answer, build_offer, parse_answer, reanswer, AnswerConfig, MediaKind, OfferConfig,
    SessionDescription,
};
use roomkit_media::VideoCodec;

const AUDIO_PORT: u16 = 10000;
const VIDEO_PORT: u16 = 10002;

fn answer_config() -> AnswerConfig {
    let mut c = AnswerConfig::new("192.0.2.10".parse().expect("IP"), AUDIO_PORT, VIDEO_PORT);
    c.local.video_codecs = vec![VideoCodec::H264, VideoCodec::Vp8];
    c.local.session_id = 42;
    c
}

/// Our answer text must read back as an answer to `offer`.
fn check_answer_text(offer: &SessionDescription, sdp: &str, audio_pt: u8, video_pt: Option<u8>) {
    let back = SessionDescription::parse(sdp.as_bytes())
        .unwrap_or_else(|e| panic!("our answer does not parse ({e}):\n{sdp}"));
    assert!(
        !back.parsed_leniently,
        "our answer needed the lenient reader:\n{sdp}"
    );
    assert_eq!(back.media.len(), offer.media.len(), "m-line count:\n{sdp}");
    for (o, a) in offer.media.iter().zip(&back.media) {
        // A media field that is not a token (control characters, spaces) is written back
        // cleaned, so only a valid one must come back as it was.
        let kind = o.kind.as_str();
        if !kind.is_empty() && kind.bytes().all(|b| b.is_ascii_graphic()) {
            assert_eq!(kind, a.kind.as_str(), "m-line kind:\n{sdp}");
        }
    }
    let audio = back
        .media
        .iter()
        .find(|m| m.kind == MediaKind::Audio && m.port != 0)
        .unwrap_or_else(|| panic!("no accepted audio line in our answer:\n{sdp}"));
    assert_eq!(audio.port, AUDIO_PORT);
    assert!(
        audio.payload(audio_pt).is_some(),
        "agreed audio PT missing:\n{sdp}"
    );
    let video = back
        .media
        .iter()
        .find(|m| m.kind == MediaKind::Video && m.port != 0);
    match (video, video_pt) {
        (Some(v), Some(pt)) => {
            assert_eq!(v.port, VIDEO_PORT);
            assert!(v.payload(pt).is_some(), "agreed video PT missing:\n{sdp}");
        }
        (None, None) => {}
        (v, pt) => panic!("video line {v:?} disagrees with negotiated {pt:?}:\n{sdp}"),
    }
}

/// Runs one body through offer → answer → parse, re-answer, and the UAC's answer reader.
pub fn offer_answer(data: &[u8]) {
    if let Ok(offer) = SessionDescription::parse(data) {
        let cfg = answer_config();
        let _ = offer.accepts_video(&cfg.local.video_codecs);
        match answer(&offer, &cfg) {
            Ok(a) => {
                let n = &a.negotiation;
                check_answer_text(&offer, &a.sdp, n.audio.pt, n.video.as_ref().map(|v| v.pt));
                // The same offer again in the call (a re-INVITE) must be answerable the same way.
                let re = reanswer(&offer, &a, &cfg)
                    .unwrap_or_else(|e| panic!("re-offer of an answered offer refused: {e}"));
                let n = &re.answer.negotiation;
                check_answer_text(
                    &offer,
                    &re.answer.sdp,
                    n.audio.pt,
                    n.video.as_ref().map(|v| v.pt),
                );
            }
            Err(e) => assert_eq!(e.status_code(), 488),
        }
    }
    let mut cfg = OfferConfig::new("192.0.2.1".parse().expect("IP"), 4000, 4002);
    cfg.local.video_codecs = vec![VideoCodec::H264, VideoCodec::Vp8];
    let ours = build_offer(&cfg);
    if let Ok(n) = parse_answer(&ours, data) {
        assert!(
            ours.audio.iter().any(|(_, c)| *c == n.audio.codec),
            "answer agreed to audio we did not offer: {:?}",
            n.audio.codec
        );
        if let Some(v) = &n.video {
            assert!(ours.video.iter().any(|(_, c)| *c == v.codec));
        }
    }
}
