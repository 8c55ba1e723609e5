//! SDES (RFC 4568) offer/answer: `RTP/SAVP(F)` offers answered with a fresh key of ours, the
//! `off | optional | mandatory` policy, and our own offers read back through the answer.

use std::net::IpAddr;

use roomkit_media::rtp::srtp::{SrtpKey, SrtpSuite};
use roomkit_media::sdp::{
    answer, build_offer, format_crypto, parse_answer, reanswer, reoffer, sdes_offer, AnswerConfig,
    AnswerError, AudioCodec, Direction, OfferConfig, ReofferConfig, ReofferVideo,
    SessionDescription, SrtpPolicy,
};
use roomkit_media::VideoCodec;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn answerer(policy: SrtpPolicy) -> AnswerConfig {
    let mut c = AnswerConfig::new(ip("192.0.2.10"), 10000, 10002);
    c.local.audio_codecs = vec![AudioCodec::Pcmu];
    c.local.video_codecs = vec![VideoCodec::H264];
    c.local.srtp = policy;
    c
}

fn offerer(policy: SrtpPolicy) -> OfferConfig {
    let mut c = OfferConfig::new(ip("192.0.2.20"), 20000, 20002);
    c.local.audio_codecs = vec![AudioCodec::Pcmu];
    c.local.video_codecs = vec![VideoCodec::H264];
    c.local.srtp = policy;
    c
}

/// A baresip-style offer: `proto` on audio and video, the given crypto lines on each.
fn peer_offer(proto: &str, crypto: &[String]) -> String {
    let lines: String = crypto.iter().map(|c| format!("a=crypto:{c}\r\n")).collect();
    format!(
        "v=0\r\no=- 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n\
         m=audio 4000 {proto} 0\r\na=rtpmap:0 PCMU/8000\r\n{lines}\
         m=video 4002 {proto} 96\r\na=rtpmap:96 H264/90000\r\n\
         a=fmtp:96 packetization-mode=1\r\na=rtcp-fb:96 nack\r\n{lines}"
    )
}

fn answer_text(offer: &str, cfg: &AnswerConfig) -> Result<roomkit_media::sdp::Answer, AnswerError> {
    answer(&SessionDescription::parse(offer.as_bytes()).unwrap(), cfg)
}

#[test]
fn a_savp_offer_gets_a_savp_answer_with_our_first_suite_and_a_fresh_key() {
    let gcm = SrtpKey::from_os_rng(SrtpSuite::AeadAes128Gcm);
    let cm32 = SrtpKey::from_os_rng(SrtpSuite::AesCm128HmacSha1_32);
    let cm80 = SrtpKey::from_os_rng(SrtpSuite::AesCm128HmacSha1_80);
    let offer = peer_offer(
        "RTP/SAVPF",
        &[
            format_crypto(1, &cm32),
            format_crypto(2, &gcm),
            format_crypto(5, &cm80),
        ],
    );
    for policy in [SrtpPolicy::Optional, SrtpPolicy::Mandatory] {
        let cfg = answerer(policy);
        let a = answer_text(&offer, &cfg).unwrap();
        assert!(a.sdp.contains("m=audio 10000 RTP/SAVPF 0\r\n"), "{}", a.sdp);
        assert!(a.sdp.contains("m=video 10002 RTP/SAVPF 96"), "{}", a.sdp);
        // Our first suite (AES_CM_128_HMAC_SHA1_80) under the offer's tag for it, with our key.
        let audio = a.negotiation.audio.srtp.clone().expect("audio secured");
        assert_eq!(audio.recv, cm80);
        assert_eq!(audio.suite(), SrtpSuite::AesCm128HmacSha1_80);
        assert_ne!(audio.send, cm80, "a key of our own");
        assert!(a
            .sdp
            .contains(&format!("a=crypto:{}\r\n", format_crypto(5, &audio.send))));
        let video = a
            .negotiation
            .video
            .clone()
            .unwrap()
            .srtp
            .expect("video secured");
        assert_ne!(video.send, audio.send, "one key per stream");
        assert_eq!(a.sdp.matches("a=crypto:").count(), 2, "one line per stream");
    }
    // A peer preferring GCM only: we take GCM.
    let cfg = answerer(SrtpPolicy::Mandatory);
    let a = answer_text(&peer_offer("RTP/SAVP", &[format_crypto(9, &gcm)]), &cfg).unwrap();
    assert!(a.sdp.contains("m=audio 10000 RTP/SAVP 0"));
    assert_eq!(
        a.negotiation.audio.srtp.unwrap().suite(),
        SrtpSuite::AeadAes128Gcm
    );
}

#[test]
fn the_policy_decides_what_is_refused() {
    let key = format_crypto(1, &SrtpKey::from_os_rng(SrtpSuite::AesCm128HmacSha1_80));
    let savp = peer_offer("RTP/SAVP", std::slice::from_ref(&key));
    let plain = peer_offer("RTP/AVP", &[]);
    let plain_with_crypto = peer_offer("RTP/AVP", std::slice::from_ref(&key));

    // off: SAVP refused (488), plain taken, crypto lines on a plain offer ignored.
    let off = answerer(SrtpPolicy::Off);
    let e = answer_text(&savp, &off).unwrap_err();
    assert_eq!(e.status_code(), 488);
    assert!(answer_text(&plain, &off)
        .unwrap()
        .negotiation
        .audio
        .srtp
        .is_none());
    let a = answer_text(&plain_with_crypto, &off).unwrap();
    assert!(a.negotiation.audio.srtp.is_none() && !a.sdp.contains("crypto"));

    // optional: either; crypto on a plain offer (the SDES "best effort" style) is taken.
    let opt = answerer(SrtpPolicy::Optional);
    assert!(answer_text(&plain, &opt)
        .unwrap()
        .negotiation
        .audio
        .srtp
        .is_none());
    let a = answer_text(&plain_with_crypto, &opt).unwrap();
    assert!(a.sdp.contains("m=audio 10000 RTP/AVP 0") && a.sdp.contains("a=crypto:1 "));
    assert!(a.negotiation.audio.srtp.is_some());

    // mandatory: a plain offer is refused, with or without crypto lines... unless they are
    // usable: then SRTP is what the call gets.
    let man = answerer(SrtpPolicy::Mandatory);
    assert!(matches!(
        answer_text(&plain, &man),
        Err(AnswerError::NotAcceptable(_))
    ));
    assert!(answer_text(&plain_with_crypto, &man).is_err());
    // SAVP with no suite of ours, or only lines we refuse (MKI, bad key), is refused too.
    for bad in [
        "1 AES_256_CM_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVzcyAoc29tZQ",
        "1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4",
        "1 AES_CM_128_HMAC_SHA1_80 inline:short",
    ] {
        let e = answer_text(&peer_offer("RTP/SAVP", &[bad.to_string()]), &man).unwrap_err();
        assert_eq!(e.status_code(), 488, "{bad}");
    }
}

#[test]
fn our_offers_under_each_policy_round_trip_through_our_answers() {
    for (ours, theirs, secured) in [
        (SrtpPolicy::Mandatory, SrtpPolicy::Mandatory, true),
        (SrtpPolicy::Mandatory, SrtpPolicy::Optional, true),
        (SrtpPolicy::Optional, SrtpPolicy::Optional, true),
        (SrtpPolicy::Optional, SrtpPolicy::Off, false),
        (SrtpPolicy::Off, SrtpPolicy::Optional, false),
    ] {
        let offer = build_offer(&offerer(ours));
        let proto = if ours == SrtpPolicy::Mandatory {
            "RTP/SAVP"
        } else {
            "RTP/AVP"
        };
        assert!(
            offer.sdp.contains(&format!("m=audio 20000 {proto} ")),
            "{}",
            offer.sdp
        );
        let lines = if ours == SrtpPolicy::Off { 0 } else { 6 };
        assert_eq!(
            offer.sdp.matches("a=crypto:").count(),
            lines,
            "{}",
            offer.sdp
        );

        let a = answer_text(&offer.sdp, &answerer(theirs)).unwrap();
        let neg = parse_answer(&offer, a.sdp.as_bytes()).unwrap();
        assert_eq!(neg.audio.srtp.is_some(), secured, "{ours} -> {theirs}");
        assert_eq!(neg.video.as_ref().unwrap().srtp.is_some(), secured);
        if secured {
            // Each side's send key is the other's receive key.
            let (mine, peer) = (neg.audio.srtp.unwrap(), a.negotiation.audio.srtp.unwrap());
            assert_eq!(mine.send, peer.recv);
            assert_eq!(mine.recv, peer.send);
            let (mine, peer) = (
                neg.video.unwrap().srtp.unwrap(),
                a.negotiation.video.unwrap().srtp.unwrap(),
            );
            assert_eq!((mine.send, mine.recv), (peer.recv, peer.send));
        }
    }
    // A mandatory answerer takes only SAVP(F): neither a plain offer nor an optional one (plain
    // proto with crypto lines) is answered (SIP: 488).
    for ours in [SrtpPolicy::Off, SrtpPolicy::Optional] {
        let offer = build_offer(&offerer(ours));
        assert!(answer_text(&offer.sdp, &answerer(SrtpPolicy::Mandatory)).is_err());
    }
}

#[test]
fn a_mandatory_offerer_refuses_a_plain_answer() {
    let offer = build_offer(&offerer(SrtpPolicy::Mandatory));
    let plain = "v=0\r\no=- 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n\
                 m=audio 4000 RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    assert!(parse_answer(&offer, plain.as_bytes()).is_err());
    // An answer echoing a tag we never offered is no better.
    let key = format_crypto(42, &SrtpKey::from_os_rng(SrtpSuite::AesCm128HmacSha1_80));
    let odd = format!("{plain}a=crypto:{key}\r\n");
    assert!(parse_answer(&offer, odd.as_bytes()).is_err());
}

/// An audio-only SRTP call (our offer, their answer) and the two sides' views of it.
fn secured_audio_call(
    theirs: &AnswerConfig,
) -> (roomkit_media::sdp::Answer, roomkit_media::sdp::Answer) {
    let mut cfg = offerer(SrtpPolicy::Mandatory);
    cfg.local.video_port = 0;
    let offer = build_offer(&cfg);
    let mut audio_only = theirs.clone();
    audio_only.local.video_port = 0;
    let their_answer = answer_text(&offer.sdp, &audio_only).unwrap();
    let neg = parse_answer(&offer, their_answer.sdp.as_bytes()).unwrap();
    let ours = roomkit_media::sdp::Answer {
        sdp: offer.sdp.clone(),
        negotiation: neg,
        session_id: offer.session_id,
        session_version: offer.session_version,
    };
    (ours, their_answer)
}

/// Video added by a re-INVITE to a call whose audio is SRTP is offered as RTP/SAVP with our
/// crypto lines; the answerer picks one and the video is secured both ways.
#[test]
fn video_added_to_an_srtp_call_is_offered_with_crypto_lines() {
    let theirs = answerer(SrtpPolicy::Optional);
    let (ours, their_view) = secured_audio_call(&theirs);
    let local = offerer(SrtpPolicy::Mandatory).local;
    let add = reoffer(
        &ours,
        &ReofferConfig {
            direction: Direction::SendRecv,
            session_name: "roomkit".into(),
            video: ReofferVideo::Add {
                port: 20002,
                codecs: vec![VideoCodec::H264],
                nack: true,
                crypto: sdes_offer(&local, true),
            },
        },
    );
    let video = &add.sdp[add.sdp.find("m=video").expect("video offered")..];
    assert!(video.starts_with("m=video 20002 RTP/SAVP "), "{}", add.sdp);
    assert_eq!(video.matches("a=crypto:").count(), 3, "{}", add.sdp);
    // The audio keeps its one line, with the key in use.
    let audio_key = ours.negotiation.audio.srtp.as_ref().unwrap();
    assert!(add
        .sdp
        .contains(&format!("a=crypto:{}", format_crypto(1, &audio_key.send))));
    let re = reanswer(
        &SessionDescription::parse(add.sdp.as_bytes()).unwrap(),
        &their_view,
        &theirs,
    )
    .unwrap();
    assert!(re.video_added);
    assert_eq!(
        re.answer.sdp.matches("a=crypto:").count(),
        2,
        "{}",
        re.answer.sdp
    );
    let neg = parse_answer(&add, re.answer.sdp.as_bytes()).unwrap();
    let (mine, peer) = (
        neg.video.unwrap().srtp.expect("video secured"),
        re.answer.negotiation.video.unwrap().srtp.unwrap(),
    );
    assert_eq!((mine.send, mine.recv), (peer.recv, peer.send));
    assert_eq!(
        neg.audio.srtp.as_ref(),
        Some(audio_key),
        "audio keys unchanged"
    );
}

/// RFC 4568 §7.1.4: a re-offer with a new key is answered with our key unchanged and the new
/// one as the peer's; a re-offer that would drop SRTP is refused (488) under every policy
/// that allows SRTP, and a plain re-offer of a plain call is still fine.
#[test]
fn re_offers_re_key_and_never_downgrade() {
    for policy in [SrtpPolicy::Optional, SrtpPolicy::Mandatory] {
        let cfg = answerer(policy);
        let k1 = SrtpKey::from_os_rng(SrtpSuite::AesCm128HmacSha1_80);
        let first = answer_text(&peer_offer("RTP/SAVP", &[format_crypto(1, &k1)]), &cfg).unwrap();
        let offer = |proto: &str, crypto: &[String]| {
            // The same session, one version on.
            let o = peer_offer(proto, crypto).replace("o=- 1 1 ", "o=- 1 2 ");
            SessionDescription::parse(o.as_bytes()).unwrap()
        };
        let k2 = SrtpKey::from_os_rng(SrtpSuite::AesCm128HmacSha1_80);
        let re = reanswer(&offer("RTP/SAVP", &[format_crypto(1, &k2)]), &first, &cfg).unwrap();
        let (old, new) = (
            first.negotiation.audio.srtp.as_ref().unwrap(),
            re.answer.negotiation.audio.srtp.as_ref().unwrap(),
        );
        assert_eq!(new.recv, k2, "{policy}: the new key is the peer's");
        assert_eq!(new.send, old.send, "{policy}: ours stays");
        assert_eq!(
            re.answer
                .negotiation
                .video
                .as_ref()
                .unwrap()
                .srtp
                .as_ref()
                .unwrap()
                .recv,
            k2
        );
        // The same key again: nothing changes.
        let same = reanswer(&offer("RTP/SAVP", &[format_crypto(1, &k1)]), &first, &cfg).unwrap();
        assert_eq!(
            same.answer.negotiation.audio.srtp,
            first.negotiation.audio.srtp
        );
        // Plain RTP, with or without crypto lines we cannot use: refused, 488.
        for (proto, crypto) in [("RTP/AVP", vec![]), ("RTP/SAVP", vec![])] {
            let e = reanswer(&offer(proto, &crypto), &first, &cfg).unwrap_err();
            assert_eq!(e.status_code(), 488, "{policy} {proto}");
        }
        // Audio kept secure but the video made plain: refused as well.
        let mixed = peer_offer("RTP/SAVP", &[format_crypto(1, &k1)])
            .replace("m=video 4002 RTP/SAVP", "m=video 4002 RTP/AVP")
            .replace("o=- 1 1 ", "o=- 1 2 ");
        let mixed = mixed.rsplit_once("a=crypto:").unwrap().0.to_string();
        let e = reanswer(
            &SessionDescription::parse(mixed.as_bytes()).unwrap(),
            &first,
            &cfg,
        )
        .unwrap_err();
        assert_eq!(e.status_code(), 488, "{policy}: video downgrade");
    }
    let optional = answerer(SrtpPolicy::Optional);
    let plain = answer_text(&peer_offer("RTP/AVP", &[]), &optional).unwrap();
    let again = SessionDescription::parse(peer_offer("RTP/AVP", &[]).as_bytes()).unwrap();
    assert!(reanswer(&again, &plain, &optional).is_ok());
}
