//! BUNDLE in offers and answers (RFC 9143, issue 19 item 3): with `LocalMedia::bundle` and
//! ICE + DTLS-SRTP we offer `a=group:BUNDLE 0 1`, `a=mid` and the MID header extension on each
//! m-line (each on its own port), and accept an offered group: both m-lines on the audio port
//! with the same transport lines, video running on the audio transport. Without the flag, or
//! when the other side declines, every m-line keeps its own transport. Real Chrome and Chromium
//! offers answered; re-offers and re-answers keep the group.

use std::net::{IpAddr, SocketAddr};

use roomkit_media::sdp::{
    answer, build_offer, parse_answer, reanswer, reoffer, AnswerConfig, AudioCodec, DtlsSrtpPolicy,
    IcePolicy, LocalMedia, NegotiatedTransport, OfferConfig, ReofferConfig, ReofferVideo,
    SessionDescription, SetupRole,
};
use roomkit_media::webrtc::DtlsIdentity;
use roomkit_media::VideoCodec;

const MID_EXTMAP: &str = "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn setup(local: &mut LocalMedia, ice: IcePolicy, bundle: bool, id: &DtlsIdentity) {
    local.audio_codecs = vec![AudioCodec::Opus, AudioCodec::Pcmu];
    local.video_codecs = vec![VideoCodec::H264, VideoCodec::Vp8];
    local.dtls_srtp = DtlsSrtpPolicy::Mandatory;
    local.dtls_fingerprint = Some(id.fingerprint().clone());
    local.ice = ice;
    local.bundle = bundle;
}

fn answerer(ice: IcePolicy, bundle: bool, id: &DtlsIdentity) -> AnswerConfig {
    let mut c = AnswerConfig::new(ip("192.0.2.10"), 10000, 10002);
    setup(&mut c.local, ice, bundle, id);
    c
}

fn offerer(ice: IcePolicy, bundle: bool, id: &DtlsIdentity) -> OfferConfig {
    let mut c = OfferConfig::new(ip("192.0.2.20"), 20000, 20002);
    setup(&mut c.local, ice, bundle, id);
    c
}

fn parse(text: &str) -> SessionDescription {
    SessionDescription::parse(text.as_bytes()).unwrap()
}

fn lines_of<'a>(sdp: &'a str, prefix: &str) -> Vec<&'a str> {
    sdp.lines().filter(|l| l.starts_with(prefix)).collect()
}

fn data(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// The two streams run one transport: the same agent, peer and DTLS role.
fn assert_one_transport(a: &NegotiatedTransport, v: &NegotiatedTransport) {
    assert_eq!(a.ice, v.ice);
    assert!(a.ice.is_some());
    assert_eq!(a.remote_fingerprints, v.remote_fingerprints);
    assert_eq!(a.dtls_client, v.dtls_client);
}

fn ids() -> (DtlsIdentity, DtlsIdentity) {
    (
        DtlsIdentity::generate().unwrap(),
        DtlsIdentity::generate().unwrap(),
    )
}

#[test]
fn bundle_offer_has_group_mids_and_mid_extension_on_own_ports() {
    let (id, _) = ids();
    let offer = build_offer(&offerer(IcePolicy::On, true, &id));
    let sdp = &offer.sdp;
    assert_eq!(lines_of(sdp, "a=group:BUNDLE 0 1"), ["a=group:BUNDLE 0 1"]);
    assert_eq!(lines_of(sdp, "a=mid:0").len(), 1, "{sdp}");
    assert_eq!(lines_of(sdp, "a=mid:1").len(), 1, "{sdp}");
    assert_eq!(lines_of(sdp, MID_EXTMAP).len(), 2, "{sdp}");
    // Each m-line its own port, for a peer that declines (RFC 9143 §7.2.1).
    assert_eq!(lines_of(sdp, "m=audio 20000 ").len(), 1, "{sdp}");
    assert_eq!(lines_of(sdp, "m=video 20002 ").len(), 1, "{sdp}");
    // The group reads back.
    assert_eq!(
        parse(sdp).bundle,
        vec![vec!["0".to_string(), "1".to_string()]]
    );

    // Audio only: a group of one.
    let mut cfg = offerer(IcePolicy::On, true, &id);
    cfg.local.video_port = 0;
    let sdp = build_offer(&cfg).sdp;
    assert_eq!(lines_of(&sdp, "a=group:"), ["a=group:BUNDLE 0"], "{sdp}");

    // No BUNDLE without the flag, or without ICE.
    for cfg in [
        offerer(IcePolicy::On, false, &id),
        offerer(IcePolicy::Off, true, &id),
    ] {
        let sdp = build_offer(&cfg).sdp;
        assert!(lines_of(&sdp, "a=group").is_empty(), "{sdp}");
        assert!(lines_of(&sdp, "a=mid").is_empty(), "{sdp}");
        assert!(!sdp.contains("sdes:mid"), "{sdp}");
    }
}

#[test]
fn bundle_round_trip_shares_the_audio_transport() {
    let (id_a, id_b) = ids();
    let offer = build_offer(&offerer(IcePolicy::On, true, &id_a));
    let ans = answer(&parse(&offer.sdp), &answerer(IcePolicy::On, true, &id_b)).unwrap();
    let text = &ans.sdp;
    assert_eq!(lines_of(text, "a=group:BUNDLE 0 1").len(), 1, "{text}");
    // One port and identical transport lines in both m-lines (RFC 9143 §7.3.1).
    assert_eq!(lines_of(text, "m=audio 10000 ").len(), 1, "{text}");
    assert_eq!(lines_of(text, "m=video 10000 ").len(), 1, "{text}");
    for prefix in [
        "a=ice-ufrag:",
        "a=ice-pwd:",
        "a=fingerprint:",
        "a=setup:",
        "a=candidate:",
    ] {
        let l = lines_of(text, prefix);
        assert_eq!(l.len(), 2, "{prefix}: {text}");
        assert_eq!(l[0], l[1], "{prefix}: {text}");
    }
    assert!(lines_of(text, "a=candidate:")[0].contains("192.0.2.10 10000 typ host"));
    assert_eq!(lines_of(text, MID_EXTMAP).len(), 2, "{text}");
    assert_eq!(lines_of(text, "a=mid:0").len(), 1);
    assert_eq!(lines_of(text, "a=mid:1").len(), 1);

    // The answerer's side.
    let b = &ans.negotiation;
    assert!(b.bundled());
    let (ba, bv) = (
        b.audio.transport.as_ref().unwrap(),
        b.video.as_ref().unwrap().transport.as_ref().unwrap(),
    );
    let bvid = b.video.as_ref().unwrap();
    assert_eq!(
        bvid.remote, b.audio.remote,
        "bundled video goes to the tagged address"
    );
    assert_eq!(b.audio.remote, addr("192.0.2.20:20000"));
    // Payload types name one m-line each in the group (audio clear of video's RTX type).
    let (ar, vr) = b.bundle_routes().unwrap();
    assert!(
        !ar.payload_types
            .iter()
            .any(|p| vr.payload_types.contains(p)),
        "{ar:?} {vr:?}"
    );
    assert_eq!(vr.payload_types.len(), 2, "media and RTX: {vr:?}");
    assert_eq!((ar.mid_ext, vr.mid_ext), (Some(4), Some(4)));
    assert_eq!(ba.mid.as_deref(), Some("0"));
    assert_eq!(bv.mid.as_deref(), Some("1"));
    let bundle = bv.bundle.as_ref().unwrap();
    assert_eq!(bundle.group, ["0", "1"]);
    assert_eq!(bundle.mid_ext, Some(4));
    assert_one_transport(ba, bv);

    // The offerer's side reads the same group.
    let a = parse_answer(&offer, text.as_bytes()).unwrap();
    assert!(a.bundled());
    let (aa, av) = (
        a.audio.transport.as_ref().unwrap(),
        a.video.as_ref().unwrap().transport.as_ref().unwrap(),
    );
    assert_one_transport(aa, av);
    assert_eq!(
        (aa.mid.as_deref(), av.mid.as_deref()),
        (Some("0"), Some("1"))
    );
    assert_eq!(av.bundle.as_ref().unwrap().mid_ext, Some(4));
    let ia = aa.ice.as_ref().unwrap();
    assert_eq!(ia.local_candidates.host, [addr("192.0.2.20:20000")]);
    assert_eq!(ia.remote_candidates[0].addr(), addr("192.0.2.10:10000"));
    assert!(ia.controlling);
    assert_eq!(aa.dtls_client, !ba.dtls_client);
}

#[test]
fn a_peer_that_does_not_bundle_keeps_one_transport_per_m_line() {
    let (id_a, id_b) = ids();
    let offer = build_offer(&offerer(IcePolicy::On, true, &id_a));
    let ans = answer(&parse(&offer.sdp), &answerer(IcePolicy::On, false, &id_b)).unwrap();
    let text = &ans.sdp;
    assert!(lines_of(text, "a=group").is_empty(), "{text}");
    assert!(!text.contains("sdes:mid"), "{text}");
    assert_eq!(lines_of(text, "m=video 10002 ").len(), 1, "{text}");
    assert!(!ans.negotiation.bundled());
    let a = parse_answer(&offer, text.as_bytes()).unwrap();
    assert!(!a.bundled());
    let v = a.video.as_ref().unwrap().transport.as_ref().unwrap();
    assert!(v.bundle.is_none());
    let ice = v.ice.as_ref().unwrap();
    assert_eq!(ice.local_candidates.host, [addr("192.0.2.20:20002")]);
    assert_eq!(ice.remote_candidates[0].addr(), addr("192.0.2.10:10002"));

    // An answer whose group leaves video out does not bundle it either.
    let both = answer(&parse(&offer.sdp), &answerer(IcePolicy::On, true, &id_b))
        .unwrap()
        .sdp
        .replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 0");
    assert!(!parse_answer(&offer, both.as_bytes()).unwrap().bundled());
    // Nor does an answer that moves the mids around.
    let swapped = answer(&parse(&offer.sdp), &answerer(IcePolicy::On, true, &id_b))
        .unwrap()
        .sdp
        .replace("a=mid:1", "a=mid:7");
    assert!(!parse_answer(&offer, swapped.as_bytes()).unwrap().bundled());
}

#[test]
fn an_offered_group_without_video_is_not_bundled() {
    let (id_a, id_b) = ids();
    let offer = build_offer(&offerer(IcePolicy::On, true, &id_a));
    let text = offer.sdp.replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 0");
    let ans = answer(&parse(&text), &answerer(IcePolicy::On, true, &id_b)).unwrap();
    assert!(!ans.negotiation.bundled());
    assert!(lines_of(&ans.sdp, "a=group").is_empty(), "{}", ans.sdp);
    assert_eq!(lines_of(&ans.sdp, "m=video 10002 ").len(), 1);
}

#[test]
fn chrome_and_chromium_offers_are_answered_bundled() {
    for (file, remote) in [
        ("webrtc/chrome-offer.sdp", "192.0.2.33:50168"),
        ("chromium-offer.sdp", "127.0.0.1:37548"),
    ] {
        let offer = parse(&data(file));
        let id = DtlsIdentity::generate().unwrap();
        let mut cfg = answerer(IcePolicy::Lite, true, &id);
        cfg.local.dtls_answer_setup = SetupRole::Passive;
        let ans = answer(&offer, &cfg).unwrap();
        let sdp = &ans.sdp;
        assert_eq!(
            lines_of(sdp, "a=group:BUNDLE 0 1").len(),
            1,
            "{file}: {sdp}"
        );
        assert_eq!(lines_of(sdp, "a=ice-lite").len(), 1, "{file}: {sdp}");
        assert_eq!(lines_of(sdp, "m=audio 10000 ").len(), 1, "{file}: {sdp}");
        assert_eq!(lines_of(sdp, "m=video 10000 ").len(), 1, "{file}: {sdp}");
        assert_eq!(lines_of(sdp, MID_EXTMAP).len(), 2, "{file}: {sdp}");
        assert_eq!(lines_of(sdp, "a=setup:passive").len(), 2, "{file}: {sdp}");
        let neg = &ans.negotiation;
        assert!(neg.bundled(), "{file}");
        let (a, v) = (
            neg.audio.transport.as_ref().unwrap(),
            neg.video.as_ref().unwrap().transport.as_ref().unwrap(),
        );
        assert_one_transport(a, v);
        // The peer's candidates are those of its tagged (audio) m-line, whatever the video
        // m-line listed.
        let ice = v.ice.as_ref().unwrap();
        assert!(ice.lite && !ice.controlling);
        assert!(
            ice.remote_candidates
                .iter()
                .any(|c| c.addr() == addr(remote)),
            "{file}"
        );
        // The answer reads back with the group and one port.
        let back = parse(sdp);
        assert_eq!(back.bundle, vec![vec!["0".to_string(), "1".to_string()]]);
        assert!(back.media.iter().all(|m| m.port == 10000));
    }
}

/// A `max-bundle` offer whose video m-line is `a=bundle-only` with port 0 (RFC 9143 §6): with
/// BUNDLE it is taken on the audio transport; without, refused as any port-0 m-line.
#[test]
fn a_bundle_only_m_line_is_taken_on_the_group_transport() {
    let text = data("chromium-offer.sdp");
    let bundle_only = text
        .replace("m=video 50804 ", "m=video 0 ")
        .replace("a=mid:1\r\n", "a=mid:1\r\na=bundle-only\r\n")
        .replace("a=mid:1\n", "a=mid:1\na=bundle-only\n");
    let offer = parse(&bundle_only);
    assert!(offer.media[1].bundle_only && offer.media[1].port == 0);
    assert!(offer.accepts_video(&[VideoCodec::H264, VideoCodec::Vp8]));
    let id = DtlsIdentity::generate().unwrap();
    let mut cfg = answerer(IcePolicy::Lite, true, &id);
    cfg.local.dtls_answer_setup = SetupRole::Passive;
    let ans = answer(&offer, &cfg).unwrap();
    let sdp = &ans.sdp;
    assert_eq!(lines_of(sdp, "a=group:BUNDLE 0 1").len(), 1, "{sdp}");
    assert_eq!(lines_of(sdp, "m=video 10000 ").len(), 1, "{sdp}");
    assert!(ans.negotiation.bundled());
    let v = ans.negotiation.video.as_ref().unwrap();
    assert_eq!(v.remote, ans.negotiation.audio.remote);
    assert_eq!(v.transport.as_ref().unwrap().mid.as_deref(), Some("1"));

    let ans = answer(&offer, &answerer(IcePolicy::Lite, false, &id)).unwrap();
    assert!(ans.negotiation.video.is_none());
    assert_eq!(lines_of(&ans.sdp, "m=video 0 ").len(), 1, "{}", ans.sdp);
}

#[test]
fn re_offers_and_re_answers_keep_the_group() {
    let (id_a, id_b) = ids();
    let offer = build_offer(&offerer(IcePolicy::On, true, &id_a));
    let b_cfg = answerer(IcePolicy::On, true, &id_b);
    let ans = answer(&parse(&offer.sdp), &b_cfg).unwrap();

    // The answerer re-offers (a re-INVITE from the side that answered).
    let re = reoffer(
        &ans,
        &ReofferConfig {
            direction: roomkit_media::sdp::Direction::SendRecv,
            session_name: "roomkit-media".into(),
            video: ReofferVideo::Keep,
        },
    );
    let sdp = &re.sdp;
    assert_eq!(lines_of(sdp, "a=group:BUNDLE 0 1").len(), 1, "{sdp}");
    assert_eq!(lines_of(sdp, "m=video 10000 ").len(), 1, "{sdp}");
    assert_eq!(lines_of(sdp, MID_EXTMAP).len(), 2, "{sdp}");

    // The offerer's original offer again, as a re-INVITE: answered with the same text.
    let again = reanswer(&parse(&offer.sdp), &ans, &b_cfg).unwrap();
    assert!(again.answer.negotiation.bundled());
    assert_eq!(again.answer.sdp, ans.sdp);
}
