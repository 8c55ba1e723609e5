//! Whatever arrives in an INVITE body, parsing and answering never panic, and every answer we
//! do write is well-formed.

use proptest::prelude::*;

use roomkit_media::sdp::{
    answer, build_offer, parse_answer, AnswerConfig, OfferConfig, SessionDescription,
};
use roomkit_media::VideoCodec;

const OFFER: &str = "v=0\r\n\
o=- 1 1 IN IP4 203.0.113.5\r\n\
s=call\r\n\
c=IN IP4 203.0.113.5\r\n\
t=0 0\r\n\
a=sendrecv\r\n\
m=audio 20000 RTP/AVP 9 0 8 101\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=rtcp:20001 IN IP4 203.0.113.5\r\n\
a=rtcp-mux\r\n\
m=video 20002 RTP/AVPF 97 96 98\r\n\
c=IN IP6 2001:db8::5\r\n\
a=rtpmap:97 VP8/90000\r\n\
a=rtpmap:96 H264/90000\r\n\
a=fmtp:96 profile-level-id=42e01f;packetization-mode=1\r\n\
a=rtpmap:98 H264/90000\r\n\
a=rtcp-fb:* nack pli\r\n\
a=recvonly\r\n\
m=application 5000 UDP/BFCP *\r\n";

fn config() -> AnswerConfig {
    let mut c = AnswerConfig::new("192.0.2.10".parse().unwrap(), 10000, 10002);
    c.local.video_codecs = vec![VideoCodec::H264, VideoCodec::Vp8];
    c
}

/// Parses and answers; when an answer comes out, sdp-types must read it back with one m-line per
/// offered one.
fn exercise(body: &[u8]) {
    let Ok(sd) = SessionDescription::parse(body) else {
        return;
    };
    let _ = sd.accepts_video(&[VideoCodec::H264]);
    if let Ok(a) = answer(&sd, &config()) {
        let parsed = sdp_types::Session::parse(a.sdp.as_bytes())
            .unwrap_or_else(|e| panic!("answer does not parse ({e}):\n{}", a.sdp));
        assert_eq!(parsed.medias.len(), sd.media.len());
    }
    let offer = build_offer(&OfferConfig::new("192.0.2.1".parse().unwrap(), 4000, 4002));
    let _ = parse_answer(&offer, body);
}

/// One edit to a text: replace, insert or delete a byte, or drop, duplicate or swap lines.
#[derive(Debug, Clone)]
pub(crate) enum Edit {
    SetByte(usize, u8),
    InsertByte(usize, u8),
    DeleteByte(usize),
    DropLine(usize),
    DuplicateLine(usize),
    SwapLines(usize, usize),
    InsertLine(usize, String),
}

pub(crate) fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::SetByte(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::InsertByte(i, b)),
        any::<usize>().prop_map(Edit::DeleteByte),
        any::<usize>().prop_map(Edit::DropLine),
        any::<usize>().prop_map(Edit::DuplicateLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
        (
            any::<usize>(),
            prop_oneof![
                Just("m=video 0 RTP/AVP".to_string()),
                Just("c=IN IP4".to_string()),
                Just("a=rtpmap:96 H264".to_string()),
                Just("a=fmtp:96 packetization-mode=99999999999".to_string()),
                Just("m=audio 65535/2 RTP/AVP 127 255 -1".to_string()),
                Just("a=rtcp:99999".to_string()),
                Just("a=rtcp-fb:* ".to_string()),
                Just("a=ptime:1e309".to_string()),
                Just("c=IN IP6 ::".to_string()),
                "[a-z]=[ -~]{0,40}",
            ]
        )
            .prop_map(|(i, l)| Edit::InsertLine(i, l)),
    ]
}

pub(crate) fn apply(text: &mut Vec<u8>, e: &Edit) {
    let len = text.len().max(1);
    match e {
        Edit::SetByte(i, b) => {
            if !text.is_empty() {
                text[i % len] = *b;
            }
        }
        Edit::InsertByte(i, b) => text.insert(i % (text.len() + 1), *b),
        Edit::DeleteByte(i) => {
            if !text.is_empty() {
                text.remove(i % len);
            }
        }
        _ => {
            let mut lines: Vec<Vec<u8>> = text.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
            let n = lines.len();
            match e {
                Edit::DropLine(i) => {
                    lines.remove(i % n);
                }
                Edit::DuplicateLine(i) => {
                    let l = lines[i % n].clone();
                    lines.insert(i % n, l);
                }
                Edit::SwapLines(a, b) => lines.swap(a % n, b % n),
                Edit::InsertLine(i, l) => lines.insert(i % (n + 1), format!("{l}\r").into_bytes()),
                _ => {}
            }
            *text = lines.join(&b'\n');
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn random_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..600)) {
        exercise(&body);
    }

    #[test]
    fn random_sdp_shaped_text_never_panics(lines in proptest::collection::vec("[vocstma]=[ -~]{0,60}", 0..30)) {
        let mut body = String::from("v=0\r\n");
        for l in &lines {
            body.push_str(l);
            body.push_str("\r\n");
        }
        exercise(body.as_bytes());
    }

    #[test]
    fn mutated_offers_never_panic(edits in proptest::collection::vec(edit(), 1..8)) {
        let mut body = OFFER.as_bytes().to_vec();
        for e in &edits {
            apply(&mut body, e);
        }
        exercise(&body);
    }
}

#[test]
fn the_unmutated_offer_is_answered() {
    let sd = SessionDescription::parse(OFFER.as_bytes()).unwrap();
    let a = answer(&sd, &config()).unwrap();
    assert!(a.has_video());
    assert_eq!(a.negotiation.video.unwrap().codec, VideoCodec::Vp8);
}
