//! Our side as the calling party: the offer we send in an INVITE, and reading the answer to it.

use std::net::{IpAddr, SocketAddr};

use crate::frame::VideoCodec;

use super::answer::Answer;
use super::answer::{
    answer_direction, congestion_attrs, offered_congestion, usable_stream, with_congestion,
    AnswerError, NegotiatedAudio, NegotiatedVideo, Negotiation, CCFB_FB, DEFAULT_ABS_SEND_TIME_ID,
    GOOG_REMB_FB, TRANSPORT_CC_FB,
};
use super::codecs::{
    fec_payload_types, h264_packetization_mode, h264_profile_level_id, rtx_for, supported_feedback,
    telephone_event, write_fec, AudioCodec, OpusParams, DEFAULT_EVENTS,
    H264_DEFAULT_PROFILE_LEVEL_ID, H264_OFFER_PROFILE_LEVEL_ID, OPUS_FMTP, RTX, TELEPHONE_EVENT,
};
use super::crypto::{format_crypto, SrtpPolicy};
use super::ice_dtls::{
    group_of, is_dtls_proto, join_bundle, mid_ext_id, DtlsSrtpPolicy, IcePolicy,
    NegotiatedTransport, OfferedTransport, StreamCandidates, AUDIO_MID, DTLS_PROTO, VIDEO_MID,
};
use super::local::LocalMedia;
use super::model::{Direction, MediaDescription, MediaKind, PayloadType, SessionDescription};
use super::write::{media, rejected, render, SessionHeader};
use crate::rtp::config::{CcFeedback, DEFAULT_TRANSPORT_CC_ID};
use crate::rtp::hdrext::{ABS_SEND_TIME_URI, TRANSPORT_CC_URI};
use crate::rtp::srtp::{SrtpKey, SrtpKeys};

/// The payload type we offer H.264 under, and its retransmission payload type.
const H264_PT: u8 = 96;
const H264_RTX_PT: u8 = 98;
/// The payload type we offer VP8 under, and its retransmission payload type.
const VP8_PT: u8 = 97;
const VP8_RTX_PT: u8 = 99;
/// The telephone-event payload type we offer beside 48 kHz codecs (Opus).
const DTMF_48K_PT: u8 = 110;

/// What we offer and where we listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferConfig {
    /// Our codecs, addresses and session identity, as an answer would give them (see
    /// [`AnswerConfig`](super::AnswerConfig)).
    pub local: LocalMedia,
    /// The telephone-event payload type to offer at 8 kHz, beside 8 kHz codecs such as G.711
    /// and G.722 (`None`: no RFC 4733 events). When Opus is offered, events at 48 kHz are
    /// offered too, under another payload type.
    pub dtmf_pt: Option<u8>,
    /// The audio packet duration we ask for, in milliseconds.
    pub ptime: u32,
}

impl OfferConfig {
    /// Defaults: those of [`LocalMedia::new`] except rtcp-mux, which is not offered; telephone
    /// events (101 at 8 kHz); ptime 20.
    pub fn new(local_ip: IpAddr, audio_port: u16, video_port: u16) -> OfferConfig {
        OfferConfig {
            local: LocalMedia {
                rtcp_mux: false,
                ..LocalMedia::new(local_ip, audio_port, video_port)
            },
            dtmf_pt: Some(101),
            ptime: 20,
        }
    }
}

/// The offer we sent: its text and the payload types it assigned, needed to read the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// The offer body, CRLF line endings.
    pub sdp: String,
    /// Audio payload types, in the order offered.
    pub audio: Vec<(u8, AudioCodec)>,
    /// Telephone-event payload types offered, with their clock rates.
    pub dtmf: Vec<(u8, u32)>,
    /// Video payload types, in the order offered; empty when no video was offered.
    pub video: Vec<(u8, VideoCodec)>,
    /// Whether NACK and RTX were offered for video.
    pub video_nack: bool,
    pub video_rtx: bool,
    pub rtcp_mux: bool,
    pub ptime: u32,
    pub session_id: u64,
    pub session_version: u64,
    /// The SRTP policy the offer was made under.
    pub srtp: SrtpPolicy,
    /// The `a=crypto` lines offered on audio and on video: tag and our key.
    pub audio_crypto: Vec<(u32, SrtpKey)>,
    pub video_crypto: Vec<(u32, SrtpKey)>,
    /// The (RED, ULPFEC) payload types offered for video, if any.
    pub video_fec: Option<(u8, u8)>,
    /// Whether transport-wide congestion control was offered for video.
    pub video_transport_cc: bool,
    /// The one congestion control feedback offered, if restricted ([`LocalMedia::video_cc_only`]).
    pub video_cc_only: Option<CcFeedback>,
    /// What the offer said about DTLS-SRTP and ICE; `None` when it offered neither.
    pub transport: Option<OfferedTransport>,
}

/// The SDES lines of one offered stream under `local`'s policy: the proto to write, the
/// attributes, and what they offered (tag, our key). Tags count from 1 in suite order.
fn offer_crypto(
    local: &LocalMedia,
    video: bool,
) -> (&'static str, Vec<String>, Vec<(u32, SrtpKey)>) {
    if local.srtp == SrtpPolicy::Off {
        return ("RTP/AVP", Vec::new(), Vec::new());
    }
    let offered = sdes_offer(local, video);
    let attrs = crypto_attrs(&offered);
    // Optional: a plain proto with crypto lines, which a peer without SRTP ignores.
    let proto = if local.srtp == SrtpPolicy::Mandatory {
        "RTP/SAVP"
    } else {
        "RTP/AVP"
    };
    (proto, attrs, offered)
}

/// The keying lines of one offered stream: SDES as [`offer_crypto`] writes it, then the
/// DTLS-SRTP (and ICE) lines when offered. With DTLS-SRTP mandatory the proto is
/// `UDP/TLS/RTP/SAVPF` and there are no SDES lines (RFC 5764 §8).
fn offer_keying(
    local: &LocalMedia,
    transport: Option<&OfferedTransport>,
    video: bool,
) -> (&'static str, Vec<String>, Vec<(u32, SrtpKey)>) {
    let (Some(t), Some(fingerprint)) = (transport, local.dtls_fingerprint.as_ref()) else {
        return offer_crypto(local, video);
    };
    let lines = t.lines(fingerprint, video);
    if t.dtls_srtp == DtlsSrtpPolicy::Mandatory {
        return (DTLS_PROTO, lines, Vec::new());
    }
    let (proto, mut attrs, offered) = offer_crypto(local, video);
    attrs.extend(lines);
    (proto, attrs, offered)
}

/// The SDES keys we offer on a stream (audio, or video when `video`), whatever the policy:
/// one per configured suite, tags from 1 in suite order, our per-call key of each.
pub fn sdes_offer(local: &LocalMedia, video: bool) -> Vec<(u32, SrtpKey)> {
    (1u32..)
        .zip(&local.srtp_suites)
        .map(|(tag, suite)| (tag, local.srtp_keys.key(video, *suite).clone()))
        .collect()
}

/// The `a=crypto` attributes of `offered`.
fn crypto_attrs(offered: &[(u32, SrtpKey)]) -> Vec<String> {
    offered
        .iter()
        .map(|(tag, key)| format!("crypto:{}", format_crypto(*tag, key)))
        .collect()
}

/// Hands out payload types: static ones where the codec has one, dynamic ones (96–127) otherwise,
/// never one already taken.
fn assign_audio(codecs: &[AudioCodec], taken: &mut Vec<u8>) -> Vec<(u8, AudioCodec)> {
    let mut out: Vec<(u8, AudioCodec)> = Vec::new();
    for codec in codecs {
        if out.iter().any(|(_, c)| c == codec) {
            continue;
        }
        let pt = codec
            .static_payload_type()
            .filter(|pt| !taken.contains(pt))
            .or_else(|| (96u8..=127).find(|pt| !taken.contains(pt)));
        if let Some(pt) = pt {
            taken.push(pt);
            out.push((pt, codec.clone()));
        }
    }
    out
}

/// Writes our offer: `m=audio` with the audio codecs and telephone-event, then `m=video` with
/// H.264 (PT 96, packetization-mode 1, profile-level-id 42e01f) and/or VP8 (PT 97) when video is
/// configured.
pub fn build_offer(cfg: &OfferConfig) -> Offer {
    let local = &cfg.local;
    let defaults = AudioCodec::defaults();
    let codecs = if local.audio_codecs.is_empty() {
        &defaults[..]
    } else {
        &local.audio_codecs[..]
    };
    let video_rtx = local.video_nack && local.video_rtx;
    // The payload types a stream core's FEC takes by default, so offer and stream agree.
    let video_fec = (local.video_fec && local.video_port != 0).then(|| {
        let d = crate::rtp::fec::FecConfig::default();
        (d.red_payload_type, d.ulpfec_payload_type)
    });
    let video = if local.video_port != 0 {
        video_payload_types(&local.video_codecs)
    } else {
        Vec::new()
    };
    // Telephone events go with each clock rate an offered codec runs at: 8 kHz always (G.711,
    // G.722), 48 kHz beside Opus.
    let mut dtmf: Vec<(u8, u32)> = Vec::new();
    if let Some(pt) = cfg.dtmf_pt {
        dtmf.push((pt, 8000));
        if codecs.contains(&AudioCodec::Opus) && pt != DTMF_48K_PT {
            dtmf.push((DTMF_48K_PT, 48000));
        }
    }
    let mut taken: Vec<u8> = video.iter().map(|(pt, _)| *pt).collect();
    taken.extend(dtmf.iter().map(|(pt, _)| *pt));
    // In a BUNDLE group a payload type names one m-line's format (the peer may demultiplex by
    // it): audio keeps clear of video's RTX and FEC types too.
    if local.offered_transport().is_some_and(|t| t.bundle) {
        if video_rtx {
            taken.extend(video.iter().map(|(_, c)| rtx_pt_of(*c)));
        }
        taken.extend(video_fec.iter().flat_map(|(red, fec)| [*red, *fec]));
    }
    let audio = assign_audio(codecs, &mut taken);

    let mut fmt: Vec<String> = audio.iter().map(|(pt, _)| pt.to_string()).collect();
    let mut attrs: Vec<String> = Vec::new();
    for (pt, c) in &audio {
        attrs.push(format!("rtpmap:{}", c.rtpmap(*pt)));
        if *c == AudioCodec::Opus {
            attrs.push(format!("fmtp:{pt} {OPUS_FMTP}"));
        }
    }
    for (ev, clock) in &dtmf {
        fmt.push(ev.to_string());
        attrs.push(format!("rtpmap:{ev} {TELEPHONE_EVENT}/{clock}"));
        attrs.push(format!("fmtp:{ev} {DEFAULT_EVENTS}"));
    }
    attrs.push(format!("ptime:{}", cfg.ptime));
    // DTLS-SRTP runs on one socket per stream: RTCP is muxed whenever it is offered.
    let transport = local.offered_transport();
    let rtcp_mux = local.rtcp_mux || transport.is_some();
    if rtcp_mux {
        attrs.push("rtcp-mux".to_string());
    }
    attrs.push("sendrecv".to_string());
    let (audio_proto, crypto, audio_crypto) = offer_keying(local, transport.as_ref(), false);
    attrs.extend(crypto);
    let mut medias = vec![media(
        "audio",
        local.audio_port,
        audio_proto,
        &fmt.join(" "),
        attrs,
    )];
    let (video_proto, video_attrs, mut video_crypto) =
        offer_keying(local, transport.as_ref(), true);

    if !video.is_empty() {
        medias.push(video_offer_media(
            &video,
            local.video_port,
            VideoFeedback {
                nack: local.video_nack,
                rtx: video_rtx,
                fec: video_fec,
                transport_cc: local.video_transport_cc,
                cc_only: local.video_cc_only,
            },
            rtcp_mux,
            Direction::SendRecv,
            (video_proto, video_attrs),
        ));
    } else {
        video_crypto.clear();
    }

    let sdp = render(
        &SessionHeader {
            local_ip: local.local_ip,
            session_id: local.session_id,
            session_version: local.session_version,
            session_name: &local.session_name,
            attributes: transport
                .as_ref()
                .map(|t| t.session_lines(!video.is_empty()))
                .unwrap_or_default(),
        },
        medias,
    );
    let video_transport_cc = local.video_transport_cc && !video.is_empty();
    Offer {
        sdp,
        audio,
        dtmf,
        video,
        video_nack: local.video_nack,
        video_rtx,
        video_transport_cc,
        video_cc_only: local.video_cc_only,
        rtcp_mux,
        ptime: cfg.ptime,
        session_id: local.session_id,
        session_version: local.session_version,
        // DTLS-SRTP mandatory offers no SDES keys: any answer without DTLS is refused.
        srtp: if audio_crypto.is_empty() {
            SrtpPolicy::Off
        } else {
            local.srtp
        },
        audio_crypto,
        video_crypto,
        video_fec,
        transport,
    }
}

/// Our payload types for `codecs`: H.264 on 96, VP8 on 97, each once.
fn video_payload_types(codecs: &[VideoCodec]) -> Vec<(u8, VideoCodec)> {
    let mut video: Vec<(u8, VideoCodec)> = Vec::new();
    for &codec in codecs {
        let pt = match codec {
            VideoCodec::H264 => H264_PT,
            VideoCodec::Vp8 => VP8_PT,
        };
        if !video.iter().any(|(p, _)| *p == pt) {
            video.push((pt, codec));
        }
    }
    video
}

/// What a video offer asks for besides PLI and FIR.
#[derive(Debug, Clone, Copy)]
struct VideoFeedback {
    nack: bool,
    rtx: bool,
    /// The (RED, ULPFEC) payload types to offer, if any.
    fec: Option<(u8, u8)>,
    transport_cc: bool,
    cc_only: Option<CcFeedback>,
}

/// The `m=video` section offering `video` on `port`: H.264 with profile-level-id 42e01f and
/// packetization-mode 1, PLI and FIR feedback, NACK and RTX when asked.
fn video_offer_media(
    video: &[(u8, VideoCodec)],
    port: u16,
    fb: VideoFeedback,
    rtcp_mux: bool,
    direction: Direction,
    (proto, crypto): (&str, Vec<String>),
) -> sdp_types::Media {
    let VideoFeedback {
        nack,
        rtx,
        fec,
        transport_cc,
        cc_only,
    } = fb;
    let offers = |f: CcFeedback| transport_cc && cc_only.is_none_or(|o| o == f);
    let mut fmt: Vec<String> = video.iter().map(|(pt, _)| pt.to_string()).collect();
    let mut attrs = Vec::new();
    for (pt, codec) in video {
        attrs.push(format!("rtpmap:{pt} {}/90000", codec.encoding_name()));
        if *codec == VideoCodec::H264 {
            attrs.push(format!(
                "fmtp:{pt} profile-level-id={H264_OFFER_PROFILE_LEVEL_ID};packetization-mode=1"
            ));
        }
        if nack {
            attrs.push(format!("rtcp-fb:{pt} nack"));
        }
        attrs.push(format!("rtcp-fb:{pt} nack pli"));
        attrs.push(format!("rtcp-fb:{pt} ccm fir"));
        // Transport-cc preferred; RFC 8888, then REMB for a peer that only does those.
        if offers(CcFeedback::TransportCc) {
            attrs.push(format!("rtcp-fb:{pt} {TRANSPORT_CC_FB}"));
        }
        if offers(CcFeedback::Ccfb) {
            attrs.push(format!("rtcp-fb:{pt} {CCFB_FB}"));
        }
        if offers(CcFeedback::Remb) {
            attrs.push(format!("rtcp-fb:{pt} {GOOG_REMB_FB}"));
        }
    }
    if offers(CcFeedback::TransportCc) {
        attrs.push(format!(
            "extmap:{DEFAULT_TRANSPORT_CC_ID} {TRANSPORT_CC_URI}"
        ));
    }
    if offers(CcFeedback::Remb) {
        attrs.push(format!(
            "extmap:{DEFAULT_ABS_SEND_TIME_ID} {ABS_SEND_TIME_URI}"
        ));
    }
    if rtx {
        for (pt, codec) in video {
            let rtx = rtx_pt_of(*codec);
            fmt.push(rtx.to_string());
            attrs.push(format!("rtpmap:{rtx} {RTX}/90000"));
            attrs.push(format!("fmtp:{rtx} apt={pt}"));
        }
    }
    let mut fmt = fmt.join(" ");
    write_fec(fec, &mut fmt, &mut attrs);
    if rtcp_mux {
        attrs.push("rtcp-mux".to_string());
    }
    attrs.push(direction.as_str().to_string());
    attrs.extend(crypto);
    media("video", port, proto, &fmt, attrs)
}

/// What a new offer in an established call changes (RFC 3264 §8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReofferConfig {
    /// The direction we ask for on every stream: `SendOnly` puts the far end on hold,
    /// `SendRecv` resumes.
    pub direction: Direction,
    /// The `s=` line.
    pub session_name: String,
    /// What becomes of video.
    pub video: ReofferVideo,
}

/// Video in a new offer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ReofferVideo {
    /// As agreed last time (or refused, port 0).
    #[default]
    Keep,
    /// Removed: the m-line stays with port 0.
    Remove,
    /// Added on `port`, offering `codecs` (NACK when `nack`); replaces a refused m-line, or
    /// comes after the others when there was none. With `crypto` (tag, our key; see
    /// [`sdes_offer`]) it is offered as `RTP/SAVP` with those `a=crypto` lines — what a call
    /// whose audio is SRTP does — and an answer without one of them refuses the video.
    Add {
        port: u16,
        codecs: Vec<VideoCodec>,
        nack: bool,
        crypto: Vec<(u32, SrtpKey)>,
    },
}

/// A new offer in an established call: the same streams, ports, codecs and payload types as
/// `current` (the description we last sent and what it agreed to), the same session id with
/// the next version, and `cfg.direction` on every stream. A stream that was refused keeps its
/// `m=` line with port 0, so the m-lines stay in place. Read the answer with
/// [`parse_answer`].
pub fn reoffer(current: &Answer, cfg: &ReofferConfig) -> Offer {
    let ours = SessionDescription::parse(current.sdp.as_bytes()).ok();
    let neg = &current.negotiation;
    let local_ip = ours
        .as_ref()
        .and_then(|sd| sd.media.iter().find_map(|m| m.connection))
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let a = &neg.audio;
    let our_media = |kind: MediaKind| {
        ours.as_ref()
            .and_then(|sd| sd.media.iter().find(|m| m.kind == kind))
    };
    let audio_transport = a
        .transport
        .as_ref()
        .map(|t| kept_transport(t, our_media(MediaKind::Audio)));
    // What this offer says about transport: the audio's, kept; video as it runs, or, added
    // now, on its new port with the audio's credentials and role.
    let transport = a.transport.as_ref().map(|t| OfferedTransport {
        dtls_srtp: DtlsSrtpPolicy::Mandatory,
        ice: match &t.ice {
            Some(i) if i.lite => IcePolicy::Lite,
            Some(_) => IcePolicy::On,
            None => IcePolicy::Off,
        },
        ice_credentials: t
            .ice
            .as_ref()
            .map_or_else(crate::webrtc::IceConfig::random_credentials, |i| {
                i.local_credentials.clone()
            }),
        setup: t.our_setup(),
        controlling: t.ice.as_ref().map(|i| i.controlling),
        audio_candidates: candidates_of(Some(t)),
        video_candidates: match &cfg.video {
            ReofferVideo::Add { port, .. } if t.ice.is_some() => {
                StreamCandidates::of(SocketAddr::new(local_ip, *port), None)
            }
            _ => candidates_of(neg.video.as_ref().and_then(|v| v.transport.as_ref())),
        },
        // A running group is kept through the mids and lines of the kept transports.
        bundle: false,
    });
    // Our fingerprint, as our last description wrote it.
    let our_fingerprint = our_media(MediaKind::Audio)
        .and_then(|m| m.transport.fingerprints.first())
        .cloned();
    // Telephone events run at the audio codec's RTP clock rate.
    let dtmf: Vec<(u8, u32)> = a.dtmf_pt.map(|ev| (ev, a.clock_rate)).into_iter().collect();
    let audio_section = |port: u16| {
        let mut fmt = vec![a.pt.to_string()];
        let mut attrs = vec![format!("rtpmap:{}", a.codec.rtpmap(a.pt))];
        if a.codec == AudioCodec::Opus {
            attrs.push(format!("fmtp:{} {OPUS_FMTP}", a.pt));
        }
        for (ev, clock) in &dtmf {
            fmt.push(ev.to_string());
            attrs.push(format!("rtpmap:{ev} {TELEPHONE_EVENT}/{clock}"));
            attrs.push(format!("fmtp:{ev} {DEFAULT_EVENTS}"));
        }
        attrs.push(format!("ptime:{}", a.ptime));
        if a.rtcp_mux {
            attrs.push("rtcp-mux".to_string());
        }
        attrs.push(cfg.direction.as_str().to_string());
        // A secured stream stays secured, with the key already in use (tag 1), or on the
        // DTLS association and ICE session it runs.
        let proto = match (&a.srtp, &audio_transport) {
            (_, Some((proto, lines))) => {
                attrs.extend(lines.iter().cloned());
                *proto
            }
            (Some(keys), None) => {
                attrs.push(format!("crypto:{}", format_crypto(1, &keys.send)));
                "RTP/SAVP"
            }
            (None, None) => "RTP/AVP",
        };
        media("audio", port, proto, &fmt.join(" "), attrs)
    };
    let mut video = Vec::new();
    let mut video_section = |port: u16| match (&neg.video, &cfg.video) {
        (
            _,
            ReofferVideo::Add {
                port,
                codecs,
                nack,
                crypto,
            },
        ) => {
            video = video_payload_types(codecs);
            // Video added to a DTLS-SRTP call gets a transport of its own, offered as the
            // audio's (its proto, fingerprint, role, ICE credentials; its own candidate).
            let (proto, lines) = match (&transport, &our_fingerprint, &audio_transport) {
                (Some(t), Some(fp), Some((proto, _))) => (*proto, t.lines(fp, true)),
                _ if crypto.is_empty() => ("RTP/AVP", Vec::new()),
                _ => ("RTP/SAVP", crypto_attrs(crypto)),
            };
            video_offer_media(
                &video,
                *port,
                VideoFeedback {
                    nack: *nack,
                    rtx: false,
                    fec: None,
                    transport_cc: false,
                    cc_only: None,
                },
                a.rtcp_mux,
                cfg.direction,
                (proto, lines),
            )
        }
        (Some(v), ReofferVideo::Keep) if port != 0 => {
            video.push((v.pt, v.codec));
            let mut attrs = vec![format!(
                "rtpmap:{} {}/{}",
                v.pt,
                v.codec.encoding_name(),
                v.clock_rate
            )];
            if v.codec == VideoCodec::H264 {
                attrs.push(format!(
                    "fmtp:{} profile-level-id={};packetization-mode={}",
                    v.pt,
                    v.profile_level_id
                        .as_deref()
                        .unwrap_or(H264_DEFAULT_PROFILE_LEVEL_ID),
                    v.packetization_mode.unwrap_or(0)
                ));
            }
            if v.nack {
                attrs.push(format!("rtcp-fb:{} nack", v.pt));
            }
            if v.pli {
                attrs.push(format!("rtcp-fb:{} nack pli", v.pt));
            }
            if v.fir {
                attrs.push(format!("rtcp-fb:{} ccm fir", v.pt));
            }
            congestion_attrs(&mut attrs, v.pt, v.congestion());
            let mut fmt = v.pt.to_string();
            if let Some(rtx) = v.rtx_pt {
                fmt.push_str(&format!(" {rtx}"));
                attrs.push(format!("rtpmap:{rtx} {RTX}/{}", v.clock_rate));
                attrs.push(format!("fmtp:{rtx} apt={}", v.pt));
            }
            write_fec(v.fec, &mut fmt, &mut attrs);
            if v.rtcp_mux {
                attrs.push("rtcp-mux".to_string());
            }
            attrs.push(cfg.direction.as_str().to_string());
            let kept = v
                .transport
                .as_ref()
                .map(|t| kept_transport(t, our_media(MediaKind::Video)));
            let proto = match (&v.srtp, kept) {
                (_, Some((proto, lines))) => {
                    attrs.extend(lines);
                    proto
                }
                (Some(keys), None) => {
                    attrs.push(format!("crypto:{}", format_crypto(1, &keys.send)));
                    "RTP/SAVP"
                }
                (None, None) => "RTP/AVP",
            };
            media("video", port, proto, &fmt, attrs)
        }
        // Video refused (or never agreed): the m-line stays, disabled.
        _ => {
            let pt = neg.video.as_ref().map_or(H264_PT, |v| v.pt);
            media("video", 0, "RTP/AVP", &pt.to_string(), Vec::new())
        }
    };
    // Every m-line we sent last stays, in its place (RFC 3264 §8): ours are rewritten, the
    // others stay refused.
    let mut medias = Vec::new();
    let (mut audio_done, mut video_done) = (false, false);
    match &ours {
        Some(sd) => {
            for m in &sd.media {
                if m.kind == MediaKind::Audio && !audio_done {
                    audio_done = true;
                    medias.push(audio_section(m.port));
                } else if m.kind == MediaKind::Video && !video_done {
                    video_done = true;
                    medias.push(video_section(m.port));
                } else {
                    medias.push(rejected(m.kind.as_str(), &m.proto, &m.formats));
                }
            }
        }
        // Our own description always parses; without it only a disabled audio line is left.
        None => medias.push(audio_section(0)),
    }
    if !video_done && matches!(cfg.video, ReofferVideo::Add { .. }) {
        medias.push(video_section(0));
    }
    let version = current.session_version.wrapping_add(1);
    let sdp = render(
        &SessionHeader {
            local_ip,
            session_id: current.session_id,
            session_version: version,
            session_name: &cfg.session_name,
            attributes: super::transport::session_lines(
                a.transport
                    .as_ref()
                    .and_then(|t| t.ice.as_ref())
                    .is_some_and(|i| i.lite),
                reoffered_group(neg, &cfg.video),
            ),
        },
        medias,
    );
    let (video_nack, video_rtx) = match &cfg.video {
        ReofferVideo::Add { nack, .. } => (*nack, false),
        ReofferVideo::Keep => (
            neg.video.as_ref().is_some_and(|v| v.nack),
            neg.video.as_ref().is_some_and(|v| v.rtx_pt.is_some()),
        ),
        ReofferVideo::Remove => (false, false),
    };
    let video_fec = match &cfg.video {
        ReofferVideo::Keep => neg.video.as_ref().and_then(|v| v.fec),
        _ => None,
    };
    Offer {
        sdp,
        audio: vec![(a.pt, a.codec.clone())],
        dtmf,
        video,
        video_nack,
        video_rtx,
        video_transport_cc: matches!(cfg.video, ReofferVideo::Keep)
            && neg.video.as_ref().is_some_and(|v| v.congestion().is_some()),
        // The answer to a re-offer keeps the feedback agreed.
        video_cc_only: neg
            .video
            .as_ref()
            .and_then(|v| v.congestion())
            .map(|c| c.feedback),
        rtcp_mux: a.rtcp_mux,
        ptime: a.ptime,
        session_id: current.session_id,
        session_version: version,
        srtp: if a.srtp.is_some() {
            SrtpPolicy::Mandatory
        } else {
            SrtpPolicy::Off
        },
        audio_crypto: a.srtp.iter().map(|k| (1, k.send.clone())).collect(),
        video_crypto: match &cfg.video {
            ReofferVideo::Keep => neg
                .video
                .iter()
                .filter_map(|v| v.srtp.as_ref())
                .map(|k| (1, k.send.clone()))
                .collect(),
            ReofferVideo::Add { crypto, .. } => crypto.clone(),
            ReofferVideo::Remove => Vec::new(),
        },
        video_fec,
        transport,
    }
}

/// Our candidates on a stream running ICE.
/// The BUNDLE group a re-offer keeps: the running one, without video when video goes.
fn reoffered_group<'n>(neg: &'n Negotiation, video: &ReofferVideo) -> &'n [String] {
    let group = neg
        .audio
        .transport
        .as_ref()
        .map_or(&[][..], |t| t.bundle_group());
    match video {
        ReofferVideo::Keep => group,
        _ => &group[..group.len().min(1)],
    }
}

fn candidates_of(t: Option<&NegotiatedTransport>) -> StreamCandidates {
    t.and_then(|t| t.ice.as_ref())
        .map(|i| i.local_candidates.clone())
        .unwrap_or_default()
}

/// A re-offer's proto and transport lines for a stream that runs DTLS-SRTP: the proto we wrote
/// last (`ours`, our previous m-line), our fingerprint, our established role and our ICE
/// credentials and candidates, so the association and the ICE session go on.
fn kept_transport(
    t: &NegotiatedTransport,
    ours: Option<&MediaDescription>,
) -> (&'static str, Vec<String>) {
    let proto = match ours {
        Some(m) if !is_dtls_proto(&m.proto) && m.is_secure_rtp() => "RTP/SAVP",
        Some(m) if !is_dtls_proto(&m.proto) => "RTP/AVP",
        _ => DTLS_PROTO,
    };
    let lines = ours
        .and_then(|m| m.transport.fingerprints.first())
        .map(|fp| t.lines(fp, t.our_setup()))
        .unwrap_or_default();
    (proto, lines)
}

/// The retransmission payload type we offer beside a video codec's.
fn rtx_pt_of(codec: VideoCodec) -> u8 {
    match codec {
        VideoCodec::H264 => H264_RTX_PT,
        VideoCodec::Vp8 => VP8_RTX_PT,
    }
}

/// Finds which of our offered formats an answered payload type is. The answerer should reuse our
/// payload type; if it renumbered a codec, its rtpmap still names it, and we follow its number.
fn offered<'o, T>(
    p: &PayloadType,
    ours: &'o [(u8, T)],
    is: impl Fn(&T, &PayloadType) -> bool,
) -> Option<&'o T> {
    let by_pt = ours
        .iter()
        .find(|(pt, c)| *pt == p.pt && (p.rtpmap.is_none() || is(c, p)));
    by_pt
        .or_else(|| ours.iter().find(|(_, c)| p.rtpmap.is_some() && is(c, p)))
        .map(|(_, c)| c)
}

/// Reads the answer to our offer into the same [`Negotiation`] that [`answer()`](fn@super::answer)
/// produces. Fails when the body is not SDP or the audio stream was rejected or has nothing we
/// offered; video that was refused, or answered with nothing we offered, leaves the call
/// audio-only.
pub fn parse_answer(offer: &Offer, answer: &[u8]) -> Result<Negotiation, AnswerError> {
    let sd = SessionDescription::parse(answer)?;
    let audio = sd
        .media
        .iter()
        .find(|m| m.kind == MediaKind::Audio)
        .ok_or_else(|| AnswerError::NotAcceptable("no audio stream in the answer".into()))?;
    usable_stream(audio).map_err(AnswerError::NotAcceptable)?;
    let (audio_srtp, audio_transport) =
        answered_keying(offer, audio, false).map_err(AnswerError::NotAcceptable)?;
    let mut audio = read_audio(offer, audio)?;
    audio.srtp = audio_srtp;
    audio.transport = audio_transport;
    let video = if offer.video.is_empty() {
        None
    } else {
        sd.media
            .iter()
            .find(|m| m.kind == MediaKind::Video)
            .filter(|m| usable_stream(m).is_ok())
            .and_then(|m| {
                let (srtp, transport) = answered_keying(offer, m, true).ok()?;
                let mut video = read_video(offer, m)?;
                video.srtp = srtp;
                video.transport = transport;
                Some(video)
            })
    };
    let mut video = video;
    if let Some(v) = video.as_mut() {
        answered_bundle(offer, &sd, &mut audio, v);
    }
    Ok(Negotiation { audio, video })
}

/// When we offered BUNDLE and the answer kept audio and video in its group (both DTLS-SRTP, the
/// answerer's one address on both m-lines), the video stream runs on the audio stream's
/// transport (see `ice_dtls::join_bundle`). Otherwise each keeps its own.
fn answered_bundle(
    offer: &Offer,
    sd: &SessionDescription,
    audio: &mut NegotiatedAudio,
    video: &mut NegotiatedVideo,
) {
    if !offer.transport.as_ref().is_some_and(|t| t.bundle) {
        return;
    }
    let (Some(at), Some(vt)) = (audio.transport.as_mut(), video.transport.as_mut()) else {
        return;
    };
    let Some(group) = group_of(&sd.bundle, AUDIO_MID, VIDEO_MID) else {
        return;
    };
    let m_of = |kind: MediaKind| sd.media.iter().find(|m| m.kind == kind);
    let (Some(am), Some(vm)) = (m_of(MediaKind::Audio), m_of(MediaKind::Video)) else {
        return;
    };
    if am.transport.mid.as_deref() != Some(AUDIO_MID)
        || vm.transport.mid.as_deref() != Some(VIDEO_MID)
    {
        return;
    }
    join_bundle(
        at,
        vt,
        group,
        (mid_ext_id(&am.extmaps), mid_ext_id(&vm.extmaps)),
    );
    video.remote = audio.remote;
    video.remote_rtcp = audio.remote_rtcp;
}

/// How an answered stream is keyed: DTLS-SRTP when the answer took our fingerprint offer,
/// else SDES or plain RTP ([`answered_srtp`]).
fn answered_keying(
    offer: &Offer,
    m: &MediaDescription,
    video: bool,
) -> Result<(Option<SrtpKeys>, Option<NegotiatedTransport>), String> {
    let rtcp_mux = offer.rtcp_mux && m.rtcp_mux;
    let transport = match &offer.transport {
        Some(t) => t.answered(m, rtcp_mux, video)?,
        None if is_dtls_proto(&m.proto) => {
            return Err(format!("{} answered to an offer without DTLS", m.proto))
        }
        None => None,
    };
    if transport.is_some() {
        return Ok((None, transport));
    }
    let ours = if video {
        &offer.video_crypto
    } else {
        &offer.audio_crypto
    };
    Ok((answered_srtp(offer, m, ours)?, None))
}

/// SRTP for an answered stream: the answer's `a=crypto` must echo the tag and suite of one of
/// our lines, and carries the answerer's key. Plain RTP is acceptable unless we made SRTP
/// mandatory or the answer says SAVP without a usable line.
fn answered_srtp(
    offer: &Offer,
    m: &MediaDescription,
    ours: &[(u32, SrtpKey)],
) -> Result<Option<SrtpKeys>, String> {
    if offer.srtp == SrtpPolicy::Off {
        return if m.is_secure_rtp() {
            Err(format!("{} answered to a plain offer", m.proto))
        } else {
            Ok(None)
        };
    }
    let matched = m.crypto.iter().find_map(|theirs| {
        ours.iter()
            .find(|(tag, key)| *tag == theirs.tag && key.suite() == theirs.key.suite())
            .map(|(_, key)| SrtpKeys {
                send: key.clone(),
                recv: theirs.key.clone(),
            })
    });
    match matched {
        Some(keys) => Ok(Some(keys)),
        None if offer.srtp == SrtpPolicy::Mandatory || m.is_secure_rtp() => {
            Err("no usable a=crypto in the answer".to_string())
        }
        None => Ok(None),
    }
}

fn read_audio(offer: &Offer, m: &MediaDescription) -> Result<NegotiatedAudio, AnswerError> {
    let (p, codec) = m
        .payloads
        .iter()
        .filter(|p| !p.is(TELEPHONE_EVENT))
        .find_map(|p| offered(p, &offer.audio, |c, p| c.matches(p)).map(|c| (p, c.clone())))
        .ok_or_else(|| AnswerError::NotAcceptable("no offered audio codec in the answer".into()))?;
    let dtmf_pt = offer
        .dtmf
        .iter()
        .any(|(_, clock)| *clock == codec.clock_rate())
        .then(|| telephone_event(m, codec.clock_rate()))
        .flatten()
        .map(|p| p.pt);
    let opus = (codec == AudioCodec::Opus).then(|| OpusParams::of(p));
    let rtcp_mux = offer.rtcp_mux && m.rtcp_mux;
    let remote = remote_of(m);
    Ok(NegotiatedAudio {
        pt: p.pt,
        clock_rate: codec.clock_rate(),
        channels: codec.channels(),
        codec,
        dtmf_pt,
        ptime: m.ptime.unwrap_or(offer.ptime),
        remote,
        remote_rtcp: m.rtcp_addr(rtcp_mux).unwrap_or(remote),
        direction: answer_direction(m),
        rtcp_mux,
        opus,
        srtp: None,
        transport: None,
    })
}

fn read_video(offer: &Offer, m: &MediaDescription) -> Option<NegotiatedVideo> {
    let is_codec =
        |c: &VideoCodec, p: &PayloadType| p.is(c.encoding_name()) && p.clock_rate() == Some(90000);
    let (p, codec) = m
        .payloads
        .iter()
        .find_map(|p| offered(p, &offer.video, is_codec).map(|c| (p, *c)))?;
    let (mut packetization_mode, mut profile_level_id) = (None, None);
    if codec == VideoCodec::H264 {
        // An answer without fmtp, or without the parameter, means mode 0 (RFC 6184 §8.1).
        let mode = h264_packetization_mode(p).filter(|m| *m <= 1)?;
        packetization_mode = Some(mode);
        profile_level_id = Some(
            h264_profile_level_id(p)
                .unwrap_or(H264_DEFAULT_PROFILE_LEVEL_ID)
                .to_string(),
        );
    }
    let fb = |name: &str| {
        p.rtcp_fb
            .iter()
            .any(|f| supported_feedback(f, offer.video_nack) && f.eq_ignore_ascii_case(name))
    };
    let nack = fb("nack");
    let rtx_pt = rtx_for(m, p.pt)
        .filter(|_| offer.video_rtx && nack)
        .map(|r| r.pt);
    let rtcp_mux = offer.rtcp_mux && m.rtcp_mux;
    let remote = remote_of(m);
    // The answer's own payload types: they are what the peer sends with.
    let fec = fec_payload_types(m).filter(|_| offer.video_fec.is_some());
    let cc = offered_congestion(offer.video_transport_cc, offer.video_cc_only, m, p);
    let v = NegotiatedVideo {
        pt: p.pt,
        codec,
        clock_rate: 90000,
        packetization_mode,
        profile_level_id,
        remote,
        remote_rtcp: m.rtcp_addr(rtcp_mux).unwrap_or(remote),
        direction: answer_direction(m),
        rtcp_mux,
        pli: fb("nack pli"),
        fir: fb("ccm fir"),
        nack,
        rtx_pt,
        srtp: None,
        fec,
        transport_cc: None,
        remb: false,
        abs_send_time: None,
        ccfb: false,
        transport: None,
    };
    Some(with_congestion(v, cc))
}

/// The stream's RTP address; callers have checked that it has a connection address.
fn remote_of(m: &MediaDescription) -> SocketAddr {
    m.rtp_addr()
        .unwrap_or_else(|| SocketAddr::new(IpAddr::from([0, 0, 0, 0]), m.port))
}
