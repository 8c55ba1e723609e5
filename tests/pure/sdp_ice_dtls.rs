//! ICE and DTLS-SRTP in offers and answers (issue 19): `UDP/TLS/RTP/SAVPF` offers with our
//! fingerprint, `a=setup:actpass` and ICE credentials and candidates; answers with the RFC 8842
//! role; the `off | optional | mandatory` DTLS-SRTP policy and its refusals (488); a
//! Chromium-style BUNDLE offer answered without bundling; what each side agreed to turned into
//! the stream core's `IceDtlsParams`; re-offers that keep the transport.

use std::net::{IpAddr, SocketAddr};

use proptest::prelude::*;
use roomkit_media::sdp::{
    answer, build_offer, parse_answer, reanswer, reoffer, AnswerConfig, AnswerError, AudioCodec,
    Direction, DtlsSrtpPolicy, IcePolicy, LocalMedia, OfferConfig, ReofferConfig, ReofferVideo,
    SessionDescription, SetupRole, SrtpPolicy,
};
use roomkit_media::webrtc::DtlsIdentity;
use roomkit_media::VideoCodec;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn with_transport(local: &mut LocalMedia, dtls: DtlsSrtpPolicy, ice: IcePolicy, id: &DtlsIdentity) {
    local.audio_codecs = vec![AudioCodec::Opus, AudioCodec::Pcmu];
    local.video_codecs = vec![VideoCodec::H264, VideoCodec::Vp8];
    local.dtls_srtp = dtls;
    local.dtls_fingerprint = Some(id.fingerprint().clone());
    local.ice = ice;
}

fn answerer(dtls: DtlsSrtpPolicy, ice: IcePolicy, id: &DtlsIdentity) -> AnswerConfig {
    let mut c = AnswerConfig::new(ip("192.0.2.10"), 10000, 10002);
    with_transport(&mut c.local, dtls, ice, id);
    c
}

fn offerer(dtls: DtlsSrtpPolicy, ice: IcePolicy, id: &DtlsIdentity) -> OfferConfig {
    let mut c = OfferConfig::new(ip("192.0.2.20"), 20000, 20002);
    with_transport(&mut c.local, dtls, ice, id);
    c
}

fn parse(text: &str) -> SessionDescription {
    SessionDescription::parse(text.as_bytes()).unwrap()
}

fn lines_of<'a>(sdp: &'a str, prefix: &str) -> Vec<&'a str> {
    sdp.lines().filter(|l| l.starts_with(prefix)).collect()
}

#[test]
fn mandatory_with_ice_round_trip_gives_both_sides_matching_params() {
    let (id_a, id_b) = (
        DtlsIdentity::generate().unwrap(),
        DtlsIdentity::generate().unwrap(),
    );
    let offer = build_offer(&offerer(DtlsSrtpPolicy::Mandatory, IcePolicy::On, &id_a));
    let sdp = &offer.sdp;
    assert_eq!(
        lines_of(sdp, "m=")
            .iter()
            .filter(|l| l.contains(" UDP/TLS/RTP/SAVPF "))
            .count(),
        2,
        "{sdp}"
    );
    assert!(
        lines_of(sdp, "a=crypto").is_empty(),
        "no SDES beside DTLS: {sdp}"
    );
    assert_eq!(lines_of(sdp, "a=setup:actpass").len(), 2);
    assert_eq!(lines_of(sdp, "a=rtcp-mux").len(), 2);
    assert_eq!(lines_of(sdp, "a=ice-ufrag:").len(), 2);
    let fp = format!("a=fingerprint:{}", id_a.fingerprint());
    assert_eq!(lines_of(sdp, &fp).len(), 2, "{sdp}");
    let cands = lines_of(sdp, "a=candidate:");
    assert!(cands[0].contains("192.0.2.20 20000 typ host"), "{cands:?}");
    assert!(cands[1].contains("192.0.2.20 20002 typ host"), "{cands:?}");

    let ans = answer(
        &parse(sdp),
        &answerer(DtlsSrtpPolicy::Mandatory, IcePolicy::On, &id_b),
    )
    .unwrap();
    let text = &ans.sdp;
    assert_eq!(lines_of(text, "a=setup:active").len(), 2, "{text}");
    assert!(lines_of(text, "a=group").is_empty());
    assert!(lines_of(text, "a=ice-lite").is_empty());
    let b_audio = ans.negotiation.audio.transport.clone().unwrap();
    assert!(
        b_audio.dtls_client,
        "actpass answered active: the answerer is the client"
    );
    assert_eq!(
        b_audio.remote_fingerprints,
        vec![id_a.fingerprint().clone()]
    );
    assert!(ans.negotiation.audio.srtp.is_none());
    let b_ice = b_audio.ice.clone().unwrap();
    assert!(!b_ice.controlling && !b_ice.lite);
    assert_eq!(b_ice.remote_candidates.len(), 1);
    assert_eq!(
        b_ice.remote_candidates[0].addr(),
        "192.0.2.20:20000".parse::<SocketAddr>().unwrap()
    );

    let neg = parse_answer(&offer, text.as_bytes()).unwrap();
    let a_audio = neg.audio.transport.clone().unwrap();
    assert!(!a_audio.dtls_client);
    assert_eq!(
        a_audio.remote_fingerprints,
        vec![id_b.fingerprint().clone()]
    );
    let a_ice = a_audio.ice.clone().unwrap();
    assert!(a_ice.controlling, "the full offerer controls");
    assert_eq!(a_ice.remote_credentials, b_ice.local_credentials);
    assert_eq!(b_ice.remote_credentials, a_ice.local_credentials);
    let a_video = neg.video.as_ref().unwrap().transport.clone().unwrap();
    assert_eq!(
        a_video.ice.unwrap().remote_candidates[0].addr(),
        "192.0.2.10:10002".parse::<SocketAddr>().unwrap()
    );

    // The stream core's parameters, one per stream and side.
    let pa = a_audio.params(&id_a);
    let pb = b_audio.params(&id_b);
    assert!(pb.dtls_client && !pa.dtls_client);
    assert_eq!(pa.remote_fingerprints[0], *id_b.fingerprint());
    let (ia, ib) = (pa.ice.unwrap(), pb.ice.unwrap());
    assert_eq!(
        ia.host_candidates,
        vec!["192.0.2.20:20000".parse::<SocketAddr>().unwrap()]
    );
    assert!(ia.config.controlling && !ib.config.controlling);
    assert_eq!(ia.remote_credentials, ib.config.credentials);
}

#[test]
fn dtls_without_ice_writes_no_ice_attributes() {
    let (id_a, id_b) = (
        DtlsIdentity::generate().unwrap(),
        DtlsIdentity::generate().unwrap(),
    );
    let offer = build_offer(&offerer(DtlsSrtpPolicy::Mandatory, IcePolicy::Off, &id_a));
    assert!(!offer.sdp.contains("a=ice-") && !offer.sdp.contains("a=candidate"));
    // An answerer with ICE on still answers without it: the offer has none.
    let ans = answer(
        &parse(&offer.sdp),
        &answerer(DtlsSrtpPolicy::Mandatory, IcePolicy::On, &id_b),
    )
    .unwrap();
    assert!(!ans.sdp.contains("a=ice-") && !ans.sdp.contains("a=candidate"));
    let neg = parse_answer(&offer, ans.sdp.as_bytes()).unwrap();
    let t = neg.audio.transport.unwrap();
    assert!(t.ice.is_none());
    assert!(t.params(&id_a).ice.is_none());
    assert_eq!(
        neg.audio.remote,
        "192.0.2.10:10000".parse::<SocketAddr>().unwrap()
    );
}

#[test]
fn refusals_are_488() {
    let id = DtlsIdentity::generate().unwrap();
    // A plain offer to a mandatory side.
    let plain = build_offer(&offerer(DtlsSrtpPolicy::Off, IcePolicy::Off, &id));
    let err = answer(
        &parse(&plain.sdp),
        &answerer(DtlsSrtpPolicy::Mandatory, IcePolicy::On, &id),
    )
    .unwrap_err();
    assert_eq!(err.status_code(), 488);
    assert!(matches!(err, AnswerError::NotAcceptable(ref why) if why.contains("fingerprint")));
    // A UDP/TLS offer to a side with DTLS-SRTP off.
    let dtls = build_offer(&offerer(DtlsSrtpPolicy::Mandatory, IcePolicy::On, &id));
    let err = answer(
        &parse(&dtls.sdp),
        &answerer(DtlsSrtpPolicy::Off, IcePolicy::Off, &id),
    )
    .unwrap_err();
    assert!(matches!(err, AnswerError::NotAcceptable(ref why) if why.contains("DTLS-SRTP is off")));
    // A fingerprint without rtcp-mux cannot share the one socket.
    let no_mux = dtls.sdp.replace("a=rtcp-mux\r\n", "");
    assert!(answer(
        &parse(&no_mux),
        &answerer(DtlsSrtpPolicy::Mandatory, IcePolicy::On, &id)
    )
    .is_err());
    // holdconn is not answerable.
    let hold = dtls.sdp.replace("a=setup:actpass", "a=setup:holdconn");
    assert!(answer(
        &parse(&hold),
        &answerer(DtlsSrtpPolicy::Optional, IcePolicy::On, &id)
    )
    .is_err());
    // Our mandatory offer answered without a fingerprint (a plain answer) is refused.
    let plain_answer = answer(
        &parse(&plain.sdp),
        &answerer(DtlsSrtpPolicy::Off, IcePolicy::Off, &id),
    )
    .unwrap();
    assert!(parse_answer(&dtls, plain_answer.sdp.as_bytes()).is_err());
}

#[test]
fn optional_offers_fingerprint_on_plain_proto_and_falls_back() {
    let (id_a, id_b) = (
        DtlsIdentity::generate().unwrap(),
        DtlsIdentity::generate().unwrap(),
    );
    let offer = build_offer(&offerer(DtlsSrtpPolicy::Optional, IcePolicy::On, &id_a));
    assert!(
        offer.sdp.contains("m=audio 20000 RTP/AVP "),
        "{}",
        offer.sdp
    );
    assert!(offer.sdp.contains("a=fingerprint:sha-256 "));
    // A side without DTLS answers plain RTP; the offerer accepts it.
    let plain = answer(
        &parse(&offer.sdp),
        &answerer(DtlsSrtpPolicy::Off, IcePolicy::Off, &id_b),
    )
    .unwrap();
    assert!(!plain.sdp.contains("a=fingerprint") && !plain.sdp.contains("a=ice-"));
    assert!(plain.negotiation.audio.transport.is_none());
    let neg = parse_answer(&offer, plain.sdp.as_bytes()).unwrap();
    assert!(neg.audio.transport.is_none() && neg.audio.srtp.is_none());
    // An optional side takes DTLS-SRTP.
    let dtls = answer(
        &parse(&offer.sdp),
        &answerer(DtlsSrtpPolicy::Optional, IcePolicy::On, &id_b),
    )
    .unwrap();
    assert!(dtls.sdp.contains("m=audio 10000 RTP/AVP "));
    let neg = parse_answer(&offer, dtls.sdp.as_bytes()).unwrap();
    assert!(neg.audio.transport.is_some());
    // With SDES optional as well, an answerer without DTLS takes the crypto line instead.
    let mut sdes = offerer(DtlsSrtpPolicy::Optional, IcePolicy::Off, &id_a);
    sdes.local.srtp = SrtpPolicy::Optional;
    let offer = build_offer(&sdes);
    let mut b = answerer(DtlsSrtpPolicy::Off, IcePolicy::Off, &id_b);
    b.local.srtp = SrtpPolicy::Optional;
    let ans = answer(&parse(&offer.sdp), &b).unwrap();
    let neg = parse_answer(&offer, ans.sdp.as_bytes()).unwrap();
    assert!(neg.audio.srtp.is_some() && neg.audio.transport.is_none());
    // A RTP/SAVPF offer with a fingerprint (as some SIP peers write it) is DTLS-SRTP.
    let peer = build_offer(&offerer(DtlsSrtpPolicy::Mandatory, IcePolicy::Off, &id_a))
        .sdp
        .replace("UDP/TLS/RTP/SAVPF", "RTP/SAVPF");
    let ans = answer(
        &parse(&peer),
        &answerer(DtlsSrtpPolicy::Mandatory, IcePolicy::Off, &id_b),
    )
    .unwrap();
    assert!(ans.sdp.contains("m=audio 10000 RTP/SAVPF "), "{}", ans.sdp);
    assert!(ans.negotiation.audio.transport.is_some());
}

#[test]
fn setup_roles_rfc_8842() {
    let (id_a, id_b) = (
        DtlsIdentity::generate().unwrap(),
        DtlsIdentity::generate().unwrap(),
    );
    let offer = build_offer(&offerer(DtlsSrtpPolicy::Mandatory, IcePolicy::Off, &id_a)).sdp;
    let cases = [
        ("actpass", SetupRole::Active, "active", true),
        ("actpass", SetupRole::Passive, "passive", false),
        ("active", SetupRole::Active, "passive", false),
        ("passive", SetupRole::Active, "active", true),
    ];
    for (offered, on_actpass, answered, client) in cases {
        let mut cfg = answerer(DtlsSrtpPolicy::Mandatory, IcePolicy::Off, &id_b);
        cfg.local.dtls_answer_setup = on_actpass;
        let text = offer.replace("a=setup:actpass", &format!("a=setup:{offered}"));
        let ans = answer(&parse(&text), &cfg).unwrap();
        assert!(
            ans.sdp.contains(&format!("a=setup:{answered}\r\n")),
            "{offered}: {}",
            ans.sdp
        );
        assert_eq!(ans.negotiation.audio.transport.unwrap().dtls_client, client);
    }
    // No a=setup in the offer: RFC 4145's default (active), so we are passive.
    let text = offer.replace("a=setup:actpass\r\n", "");
    let ans = answer(
        &parse(&text),
        &answerer(DtlsSrtpPolicy::Mandatory, IcePolicy::Off, &id_b),
    )
    .unwrap();
    assert!(ans.sdp.contains("a=setup:passive"));
}

#[test]
fn chromium_offer_is_answered_without_bundle() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/webrtc/chrome-offer.sdp"
    ))
    .unwrap();
    let offer = parse(&text);
    assert_eq!(offer.bundle, vec![vec!["0".to_string(), "1".to_string()]]);
    let id = DtlsIdentity::generate().unwrap();
    let mut cfg = answerer(DtlsSrtpPolicy::Mandatory, IcePolicy::Lite, &id);
    cfg.local.dtls_answer_setup = SetupRole::Passive;
    let ans = answer(&offer, &cfg).unwrap();
    let sdp = &ans.sdp;
    assert!(sdp.contains("a=ice-lite\r\n"), "{sdp}");
    assert!(!sdp.contains("a=group"), "BUNDLE declined: {sdp}");
    assert!(
        sdp.contains("m=audio 10000 UDP/TLS/RTP/SAVPF 111 110"),
        "{sdp}"
    );
    assert!(
        sdp.contains("m=video 10002 UDP/TLS/RTP/SAVPF 96 97"),
        "{sdp}"
    );
    assert_eq!(lines_of(sdp, "a=mid:0").len(), 1);
    assert_eq!(lines_of(sdp, "a=mid:1").len(), 1);
    assert_eq!(lines_of(sdp, "a=setup:passive").len(), 2);
    assert_eq!(lines_of(sdp, "a=rtcp-mux").len(), 2);
    assert_eq!(lines_of(sdp, "a=candidate:").len(), 2);
    let a = ans.negotiation.audio.transport.as_ref().unwrap();
    assert!(!a.dtls_client);
    assert_eq!(a.mid.as_deref(), Some("0"));
    let ice = a.ice.as_ref().unwrap();
    assert!(ice.lite && !ice.controlling);
    assert_eq!(ice.remote_credentials.ufrag, "Wl3F");
    // UDP candidates only reach the agent, but all are in the negotiation.
    assert_eq!(ice.remote_candidates.len(), 3);
    let v = ans.negotiation.video.as_ref().unwrap();
    assert_eq!(
        v.codec,
        VideoCodec::Vp8,
        "the offerer's first codec we have"
    );
    assert_eq!(v.transport.as_ref().unwrap().mid.as_deref(), Some("1"));
    // The answer reads back as a description with the same transport lines.
    let back = parse(sdp);
    assert!(back.media.iter().all(|m| m.transport.ice_lite));
    assert_eq!(
        back.media[0].transport.fingerprints,
        vec![id.fingerprint().clone()]
    );
}

#[test]
fn reinvites_keep_the_transport() {
    let (id_a, id_b) = (
        DtlsIdentity::generate().unwrap(),
        DtlsIdentity::generate().unwrap(),
    );
    let offer = build_offer(&offerer(DtlsSrtpPolicy::Mandatory, IcePolicy::On, &id_a));
    let b_cfg = answerer(DtlsSrtpPolicy::Mandatory, IcePolicy::On, &id_b);
    let first = answer(&parse(&offer.sdp), &b_cfg).unwrap();
    let a_neg = parse_answer(&offer, first.sdp.as_bytes()).unwrap();
    let a_call = roomkit_media::sdp::Answer {
        sdp: offer.sdp.clone(),
        negotiation: a_neg.clone(),
        session_id: offer.session_id,
        session_version: offer.session_version,
    };
    // A puts B on hold: same fingerprint, credentials, candidates; its role now says passive.
    let hold = reoffer(
        &a_call,
        &ReofferConfig {
            direction: Direction::SendOnly,
            session_name: "-".into(),
            video: ReofferVideo::Keep,
        },
    );
    assert!(hold.sdp.contains("a=setup:passive"), "{}", hold.sdp);
    assert!(hold.sdp.contains(" UDP/TLS/RTP/SAVPF "));
    let a_ice = a_neg
        .audio
        .transport
        .as_ref()
        .unwrap()
        .ice
        .as_ref()
        .unwrap();
    assert!(hold
        .sdp
        .contains(&format!("a=ice-ufrag:{}", a_ice.local_credentials.ufrag)));
    // B answers with a fresh configuration (fresh ICE credentials) but keeps its own.
    let b_cfg2 = answerer(DtlsSrtpPolicy::Mandatory, IcePolicy::On, &id_b);
    let re = reanswer(&parse(&hold.sdp), &first, &b_cfg2).unwrap();
    assert!(re.held);
    assert_eq!(
        re.answer.negotiation.audio.transport, first.negotiation.audio.transport,
        "same transport on B's side"
    );
    assert!(re.answer.sdp.contains("a=setup:active"));
    let a_again = parse_answer(&hold, re.answer.sdp.as_bytes()).unwrap();
    assert_eq!(a_again.audio.transport, a_neg.audio.transport);
    // An offer that would drop DTLS-SRTP from the call is refused.
    let plain = build_offer(&offerer(DtlsSrtpPolicy::Off, IcePolicy::Off, &id_a));
    let mut b_opt = b_cfg2.clone();
    b_opt.local.dtls_srtp = DtlsSrtpPolicy::Optional;
    assert!(reanswer(&parse(&plain.sdp), &first, &b_opt).is_err());
}

#[test]
fn video_added_to_a_dtls_call_gets_its_own_transport() {
    let (id_a, id_b) = (
        DtlsIdentity::generate().unwrap(),
        DtlsIdentity::generate().unwrap(),
    );
    let mut a_cfg = offerer(DtlsSrtpPolicy::Mandatory, IcePolicy::On, &id_a);
    a_cfg.local.video_port = 0;
    let offer = build_offer(&a_cfg);
    let b_cfg = answerer(DtlsSrtpPolicy::Mandatory, IcePolicy::On, &id_b);
    let first = answer(&parse(&offer.sdp), &b_cfg).unwrap();
    assert!(!first.has_video());
    let a_neg = parse_answer(&offer, first.sdp.as_bytes()).unwrap();
    let a_call = roomkit_media::sdp::Answer {
        sdp: offer.sdp.clone(),
        negotiation: a_neg.clone(),
        session_id: offer.session_id,
        session_version: offer.session_version,
    };
    let add = reoffer(
        &a_call,
        &ReofferConfig {
            direction: Direction::SendRecv,
            session_name: "-".into(),
            video: ReofferVideo::Add {
                port: 20004,
                codecs: vec![VideoCodec::H264],
                nack: true,
                crypto: Vec::new(),
            },
        },
    );
    assert!(
        add.sdp.contains("m=video 20004 UDP/TLS/RTP/SAVPF "),
        "{}",
        add.sdp
    );
    assert!(add.sdp.contains("192.0.2.20 20004 typ host"), "{}", add.sdp);
    assert_eq!(
        lines_of(&add.sdp, "a=setup:passive").len(),
        2,
        "{}",
        add.sdp
    );
    let re = reanswer(&parse(&add.sdp), &first, &b_cfg).unwrap();
    assert!(re.video_added);
    let b_video = re
        .answer
        .negotiation
        .video
        .clone()
        .unwrap()
        .transport
        .unwrap();
    assert!(b_video.dtls_client, "passive offered, active answered");
    let a_again = parse_answer(&add, re.answer.sdp.as_bytes()).unwrap();
    let a_video = a_again.video.unwrap().transport.unwrap();
    assert!(!a_video.dtls_client);
    let (ia, ib) = (a_video.ice.unwrap(), b_video.ice.unwrap());
    assert_eq!(
        ia.local_candidates.host,
        vec!["192.0.2.20:20004".parse::<SocketAddr>().unwrap()]
    );
    assert_eq!(ia.remote_credentials, ib.local_credentials);
    assert_eq!(ib.remote_credentials, ia.local_credentials);
    assert_eq!(
        ia.controlling,
        a_neg.audio.transport.unwrap().ice.unwrap().controlling
    );
    // The audio transport did not change.
    assert_eq!(
        re.answer.negotiation.audio.transport,
        first.negotiation.audio.transport
    );
}

fn chrome_offer() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/webrtc/chrome-offer.sdp"
    ))
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// A mutated browser offer, answered under DTLS-SRTP and ICE (full and lite): never a
    /// panic; an answer we write reads back with one m-line per offered one, and what it agreed
    /// gives the stream core's parameters. The same bodies read as answers to our DTLS offer:
    /// never a panic.
    #[test]
    fn mutated_dtls_offers_and_answers_never_panic(
        edits in proptest::collection::vec(crate::sdp_fuzz::edit(), 1..8),
        lite in any::<bool>(),
        mandatory in any::<bool>(),
    ) {
        thread_local! {
            static ID: DtlsIdentity = DtlsIdentity::generate().unwrap();
        }
        let mut body = chrome_offer().into_bytes();
        for e in &edits {
            crate::sdp_fuzz::apply(&mut body, e);
        }
        ID.with(|id| {
            let policy = if mandatory {
                DtlsSrtpPolicy::Mandatory
            } else {
                DtlsSrtpPolicy::Optional
            };
            let ice = if lite { IcePolicy::Lite } else { IcePolicy::On };
            if let Ok(sd) = SessionDescription::parse(&body) {
                if let Ok(a) = answer(&sd, &answerer(policy, ice, id)) {
                    let parsed = sdp_types::Session::parse(a.sdp.as_bytes())
                        .unwrap_or_else(|e| panic!("answer does not parse ({e}):\n{}", a.sdp));
                    assert_eq!(parsed.medias.len(), sd.media.len());
                    if let Some(t) = &a.negotiation.audio.transport {
                        let _ = t.params(id);
                    }
                }
            }
            let offer = build_offer(&offerer(policy, ice, id));
            if let Ok(neg) = parse_answer(&offer, &body) {
                if let Some(t) = &neg.audio.transport {
                    let _ = t.params(id);
                }
            }
        });
    }
}
