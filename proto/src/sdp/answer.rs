//! Answering an offer (RFC 3264 §6) as the called party, and answering later offers in the same
//! call (re-INVITE, §8).

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use crate::frame::VideoCodec;

use super::codecs::{
    fec_payload_types, h264_packetization_mode, h264_profile_level_id, pick_video_payload, rtx_for,
    supported_feedback, telephone_event, video_codec_of, write_fec, AudioCodec, OpusParams,
    DEFAULT_EVENTS, H264_DEFAULT_PROFILE_LEVEL_ID, OPUS_FMTP, RTX, TELEPHONE_EVENT,
};
use super::crypto::{format_crypto, negotiate_offered};
use super::extmap::extmap_id;
use super::ice_dtls::{
    answer_transport, group_of, is_dtls_proto, join_bundle, mid_ext_id, resolve_bundle_only,
    IcePolicy, NegotiatedTransport,
};
use super::local::LocalMedia;
use super::model::{
    Direction, MediaDescription, MediaKind, PayloadType, SdpError, SessionDescription,
};
use super::write::{media, rejected, render, SessionHeader};
use crate::rtp::config::{CcAgreement, CcFeedback};
use crate::rtp::hdrext::{ABS_SEND_TIME_URI, TRANSPORT_CC_URI};
use crate::rtp::srtp::SrtpKeys;

/// The audio packet duration we use when the offer does not ask for one.
pub const DEFAULT_PTIME_MS: u32 = 20;

/// What we can do and where we listen, for building an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerConfig {
    /// Our codecs, addresses and session identity, as an offer would give them (see
    /// [`OfferConfig`](super::OfferConfig)). The offerer's order decides among the codecs.
    pub local: LocalMedia,
    /// Accept telephone events (RFC 4733) when they are offered.
    pub telephone_event: bool,
    /// The most we want on every stream: `SendRecv` takes what the offer allows; `SendOnly`
    /// while we hold the far end (an offer to send to us then gets `inactive` or `sendonly`).
    pub direction: Direction,
}

impl AnswerConfig {
    /// A configuration with the defaults: those of [`LocalMedia::new`], telephone events
    /// accepted, `SendRecv`.
    pub fn new(local_ip: IpAddr, audio_port: u16, video_port: u16) -> AnswerConfig {
        AnswerConfig {
            local: LocalMedia::new(local_ip, audio_port, video_port),
            telephone_event: true,
            direction: Direction::SendRecv,
        }
    }
}

/// The audio stream both sides agreed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedAudio {
    /// The payload type both sides use for the codec.
    pub pt: u8,
    pub codec: AudioCodec,
    pub clock_rate: u32,
    pub channels: u16,
    /// The telephone-event payload type, when both sides do RFC 4733 events.
    pub dtmf_pt: Option<u8>,
    /// Packet duration in milliseconds.
    pub ptime: u32,
    /// Where we send RTP.
    pub remote: SocketAddr,
    /// Where we send RTCP (the RTP address when muxed).
    pub remote_rtcp: SocketAddr,
    /// Our direction: whether we may send and should expect to receive.
    pub direction: Direction,
    pub rtcp_mux: bool,
    /// For Opus: what the far end asked of the stream we send it (FEC, stereo, bandwidth).
    pub opus: Option<OpusParams>,
    /// SRTP keys (SDES) when the stream is secured; `None`: plain RTP.
    pub srtp: Option<SrtpKeys>,
    /// DTLS-SRTP (and ICE) when agreed: the stream's keys come from the handshake, and `srtp`
    /// is `None`.
    pub transport: Option<NegotiatedTransport>,
}

/// The video stream both sides agreed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedVideo {
    pub pt: u8,
    pub codec: VideoCodec,
    pub clock_rate: u32,
    /// H.264 only: 0 (single NAL units) or 1 (non-interleaved: STAP-A and FU-A allowed).
    pub packetization_mode: Option<u8>,
    /// H.264 only: the agreed profile-level-id (six hex digits).
    pub profile_level_id: Option<String>,
    pub remote: SocketAddr,
    pub remote_rtcp: SocketAddr,
    /// Our direction.
    pub direction: Direction,
    pub rtcp_mux: bool,
    /// The far end takes picture loss indications (`a=rtcp-fb … nack pli`).
    pub pli: bool,
    /// The far end takes full intra requests (`a=rtcp-fb … ccm fir`).
    pub fir: bool,
    /// Both sides do generic NACK (`a=rtcp-fb … nack`): we may send NACKs and answer them.
    pub nack: bool,
    /// The retransmission payload type (RFC 4588, `rtx/90000` with `apt=` the video payload
    /// type) both sides use, when agreed; without it lost packets are resent as they were.
    pub rtx_pt: Option<u8>,
    /// SRTP keys (SDES) when the stream is secured; `None`: plain RTP.
    pub srtp: Option<SrtpKeys>,
    /// Forward error correction both sides agreed on: the (RED, ULPFEC) payload types.
    pub fec: Option<(u8, u8)>,
    /// Transport-wide congestion control, when both sides agreed to it (`transport-cc` feedback
    /// and the transport-wide sequence number's `a=extmap`): the extension's ID (1–14).
    pub transport_cc: Option<u8>,
    /// REMB (`goog-remb`) instead, when both sides said it and transport-cc was not agreed:
    /// the receiver estimates and sends REMB.
    pub remb: bool,
    /// abs-send-time's extension ID (1–14), agreed beside REMB: the send times the receiver's
    /// estimate reads.
    pub abs_send_time: Option<u8>,
    /// RFC 8888 feedback (`a=rtcp-fb:* ack ccfb`), when both said it and not transport-cc.
    pub ccfb: bool,
    /// DTLS-SRTP (and ICE) when agreed, as for audio.
    pub transport: Option<NegotiatedTransport>,
}

impl NegotiatedVideo {
    /// The congestion control feedback agreed on, if any: transport-cc before REMB.
    pub fn congestion(&self) -> Option<CcAgreement> {
        if let Some(id) = self.transport_cc {
            Some(CcAgreement::transport_cc(id))
        } else if self.ccfb {
            Some(CcAgreement::ccfb())
        } else {
            self.remb.then(|| CcAgreement::remb(self.abs_send_time))
        }
    }
}

/// The outcome of offer/answer: one audio stream, and video when both sides agreed on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiation {
    pub audio: NegotiatedAudio,
    pub video: Option<NegotiatedVideo>,
}

impl Negotiation {
    /// Whether the call carries video.
    pub fn has_video(&self) -> bool {
        self.video.is_some()
    }

    /// Whether audio and video share one transport (a BUNDLE group both sides agreed to): the
    /// host then runs them over the audio stream's socket.
    pub fn bundled(&self) -> bool {
        let bundled = |t: Option<&NegotiatedTransport>| t.is_some_and(|t| t.bundle.is_some());
        bundled(self.audio.transport.as_ref())
            && bundled(self.video.as_ref().and_then(|v| v.transport.as_ref()))
    }
}

/// Our answer: the SDP text to send and what it agrees to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The answer body, CRLF line endings.
    pub sdp: String,
    pub negotiation: Negotiation,
    /// The `o=` session id and version written in `sdp`.
    pub session_id: u64,
    pub session_version: u64,
}

impl Answer {
    /// Whether the call carries video.
    pub fn has_video(&self) -> bool {
        self.negotiation.has_video()
    }
}

/// Why no answer could be made. Both are answered with 488 Not Acceptable Here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerError {
    /// The body is not a session description.
    Malformed(SdpError),
    /// No audio stream we can take part in; the text says why.
    NotAcceptable(String),
}

impl AnswerError {
    /// The SIP status code to reject the INVITE with.
    pub fn status_code(&self) -> u16 {
        488
    }
}

impl fmt::Display for AnswerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnswerError::Malformed(e) => write!(f, "malformed SDP: {e}"),
            AnswerError::NotAcceptable(why) => write!(f, "not acceptable: {why}"),
        }
    }
}

impl std::error::Error for AnswerError {}

impl From<SdpError> for AnswerError {
    fn from(e: SdpError) -> Self {
        AnswerError::Malformed(e)
    }
}

/// Answers an offer: the first audio stream with a codec in common becomes the call's audio, the
/// first video stream with a codec in common its video (when `video_port` is not 0), and every
/// other m-line is rejected with port 0. Fails when there is no usable audio stream.
pub fn answer(offer: &SessionDescription, cfg: &AnswerConfig) -> Result<Answer, AnswerError> {
    let resolved = resolve_bundle_only(offer, &cfg.local);
    let plan = plan(resolved.as_ref().unwrap_or(offer), cfg, None)?;
    Ok(plan.finish(cfg, cfg.local.session_id, cfg.local.session_version))
}

/// The result of answering a new offer in an established call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reanswer {
    pub answer: Answer,
    /// The far end's audio RTP or RTCP address changed.
    pub audio_remote_changed: bool,
    /// The far end's video address changed (false when video was added or removed).
    pub video_remote_changed: bool,
    pub video_added: bool,
    pub video_removed: bool,
    /// The far end has put us on hold: we may not send audio.
    pub held: bool,
}

/// Answers an offer received in an established call (re-INVITE). The codecs and payload types
/// already in use are kept while the offer still contains them; the session id stays and the
/// version goes up only when the answer text changes (RFC 3264 §8). A new address of 0.0.0.0 or
/// `::` (hold in the RFC 2543 style) or a multicast address does not replace the address we
/// already send to; the direction of the answer says whether we send at all. `cfg` supplies our
/// ports, codecs and address; its session id and version are not used. An offer that would
/// take SRTP off a stream that has it is refused; one with new keys (RFC 4568 §7.1.4) is
/// answered with them as the peer's, ours unchanged while the suite is.
pub fn reanswer(
    offer: &SessionDescription,
    previous: &Answer,
    cfg: &AnswerConfig,
) -> Result<Reanswer, AnswerError> {
    let prev = &previous.negotiation;
    let resolved = resolve_bundle_only(offer, &cfg.local);
    let offer = resolved.as_ref().unwrap_or(offer);
    let plan = plan(offer, cfg, Some(prev))?;
    // A stream that is SRTP stays SRTP, whatever the policy: dropping the protection of a
    // running call is what an attacker on the signalling path would ask for, and the stream's
    // contexts cannot be taken off it. The call goes on as it was (the caller answers 488).
    // Video still offered (an enabled m-line), and not (or no longer) with SRTP we take.
    let video_offered = offer
        .media
        .iter()
        .any(|m| m.kind == MediaKind::Video && m.port != 0);
    let video_downgraded = prev.video.as_ref().is_some_and(|v| v.srtp.is_some())
        && video_offered
        && plan.video_srtp.is_none();
    // DTLS-SRTP likewise stays (on the association already running: same role, same ICE
    // credentials and candidates; see `ice_dtls::answer_transport`).
    let audio_downgraded = (prev.audio.srtp.is_some() && plan.audio_srtp.is_none())
        || (prev.audio.transport.is_some() && plan.audio_transport.is_none());
    let video_downgraded = video_downgraded
        || (prev.video.as_ref().is_some_and(|v| v.transport.is_some())
            && video_offered
            && plan.video_transport.is_none());
    if audio_downgraded || video_downgraded {
        return Err(AnswerError::NotAcceptable(
            "the offer would turn an SRTP stream into plain RTP".into(),
        ));
    }
    let mut answer = plan.finish(cfg, previous.session_id, previous.session_version);
    if answer.sdp != previous.sdp {
        answer = plan.finish(
            cfg,
            previous.session_id,
            previous.session_version.wrapping_add(1),
        );
    }

    let neg = &mut answer.negotiation;
    if !usable_remote(neg.audio.remote.ip()) {
        neg.audio.remote = prev.audio.remote;
        neg.audio.remote_rtcp = prev.audio.remote_rtcp;
    }
    if let (Some(video), Some(old)) = (neg.video.as_mut(), prev.video.as_ref()) {
        if !usable_remote(video.remote.ip()) {
            video.remote = old.remote;
            video.remote_rtcp = old.remote_rtcp;
        }
    }
    let audio_remote_changed =
        neg.audio.remote != prev.audio.remote || neg.audio.remote_rtcp != prev.audio.remote_rtcp;
    let video_remote_changed = match (&neg.video, &prev.video) {
        (Some(new), Some(old)) => new.remote != old.remote || new.remote_rtcp != old.remote_rtcp,
        _ => false,
    };
    Ok(Reanswer {
        video_added: neg.video.is_some() && prev.video.is_none(),
        video_removed: neg.video.is_none() && prev.video.is_some(),
        held: !neg.audio.direction.sends(),
        audio_remote_changed,
        video_remote_changed,
        answer,
    })
}

/// Whether an offered address is one we can send to (not a hold address, not multicast).
fn usable_remote(ip: IpAddr) -> bool {
    !ip.is_unspecified() && !ip.is_multicast()
}

/// Which streams of the offer we take, and with what.
struct Plan<'a> {
    offer: &'a SessionDescription,
    audio_index: usize,
    audio_media: &'a MediaDescription,
    audio_pt: &'a PayloadType,
    audio_codec: AudioCodec,
    dtmf: Option<&'a PayloadType>,
    audio_srtp: Option<(u32, SrtpKeys)>,
    video: Option<(usize, &'a MediaDescription, &'a PayloadType, VideoCodec)>,
    video_srtp: Option<(u32, SrtpKeys)>,
    /// DTLS-SRTP agreed per stream, and the transport lines our answer writes.
    audio_transport: Option<(NegotiatedTransport, Vec<String>)>,
    video_transport: Option<(NegotiatedTransport, Vec<String>)>,
}

/// How one offered stream is keyed: DTLS-SRTP when `ice_dtls.rs` takes it, else SDES or plain
/// RTP as `crypto.rs` decides.
type Keying = (
    Option<(u32, SrtpKeys)>,
    Option<(NegotiatedTransport, Vec<String>)>,
);

/// A [`Keying`] borrowed, as the section writers take it.
type KeyingRef<'a> = (
    Option<&'a (u32, SrtpKeys)>,
    Option<&'a (NegotiatedTransport, Vec<String>)>,
);

fn stream_keying(
    m: &MediaDescription,
    local: &LocalMedia,
    video: bool,
    keep: Option<&Negotiation>,
) -> Result<Keying, String> {
    let (port, kept_transport, kept_srtp) = if video {
        let v = keep.and_then(|k| k.video.as_ref());
        (
            local.video_port,
            v.and_then(|v| v.transport.as_ref()),
            v.and_then(|v| v.srtp.as_ref()),
        )
    } else {
        let a = keep.map(|k| &k.audio);
        (
            local.audio_port,
            a.and_then(|a| a.transport.as_ref()),
            a.and_then(|a| a.srtp.as_ref()),
        )
    };
    if let Some(t) = answer_transport(m, local, port, video, kept_transport)? {
        return Ok((None, Some(t)));
    }
    let srtp = stream_srtp(m, local, video)?;
    Ok((keep_send_key(srtp, kept_srtp), None))
}

/// In a call, a re-answer keeps the key we already send with (the stream is keyed with it)
/// while the suite stays the same.
fn keep_send_key(srtp: Option<(u32, SrtpKeys)>, old: Option<&SrtpKeys>) -> Option<(u32, SrtpKeys)> {
    let (tag, mut keys) = srtp?;
    if let Some(old) = old.filter(|o| o.suite() == keys.suite()) {
        keys.send = old.send.clone();
    }
    Some((tag, keys))
}

/// SRTP for an offered stream under our policy (see `crypto::negotiate_offered`).
fn stream_srtp(
    m: &MediaDescription,
    local: &LocalMedia,
    video: bool,
) -> Result<Option<(u32, SrtpKeys)>, String> {
    negotiate_offered(
        &m.proto,
        &m.crypto,
        local.srtp,
        &local.srtp_suites,
        &local.srtp_keys,
        video,
    )
}

/// A stream we can carry at all: enabled, RTP or SRTP, and with an address to send to. Whether
/// SRTP is acceptable is the policy's business (`crypto::negotiate_offered`).
pub(crate) fn usable_stream(m: &MediaDescription) -> Result<(), String> {
    if m.port == 0 {
        return Err(format!("{} stream disabled (port 0)", m.kind.as_str()));
    }
    if !m.is_plain_rtp() && !m.is_secure_rtp() && !is_dtls_proto(&m.proto) {
        return Err(format!(
            "{} transport {:?} not supported",
            m.kind.as_str(),
            m.proto
        ));
    }
    if m.connection.is_none() {
        return Err(format!("no connection address for {}", m.kind.as_str()));
    }
    Ok(())
}

fn choose_audio<'a>(
    m: &'a MediaDescription,
    cfg: &AnswerConfig,
    keep: Option<&NegotiatedAudio>,
) -> Option<(&'a PayloadType, AudioCodec)> {
    if let Some(old) = keep {
        if let Some(p) = m.payload(old.pt) {
            if old.codec.matches(p) && cfg.local.audio_codecs.contains(&old.codec) {
                return Some((p, old.codec.clone()));
            }
        }
    }
    m.payloads.iter().find_map(|p| {
        cfg.local
            .audio_codecs
            .iter()
            .find(|c| c.matches(p))
            .map(|c| (p, c.clone()))
    })
}

fn choose_video<'a>(
    m: &'a MediaDescription,
    cfg: &AnswerConfig,
    keep: Option<&NegotiatedVideo>,
) -> Option<(&'a PayloadType, VideoCodec)> {
    if let Some(old) = keep {
        if let Some(p) = m.payload(old.pt) {
            if video_codec_of(p) == Some(old.codec) && cfg.local.video_codecs.contains(&old.codec) {
                return Some((p, old.codec));
            }
        }
    }
    // The offerer's order decides the codec; within H.264 the packetization mode decides the
    // payload type.
    let codec = m
        .payloads
        .iter()
        .filter_map(video_codec_of)
        .find(|c| cfg.local.video_codecs.contains(c))?;
    pick_video_payload(m, codec).map(|p| (p, codec))
}

fn plan<'a>(
    offer: &'a SessionDescription,
    cfg: &AnswerConfig,
    keep: Option<&Negotiation>,
) -> Result<Plan<'a>, AnswerError> {
    let mut audio = None;
    let mut audio_problem = None;
    let mut video = None;
    for (i, m) in offer.media.iter().enumerate() {
        match m.kind {
            MediaKind::Audio if audio.is_none() => {
                let chosen = usable_stream(m)
                    .and_then(|()| stream_keying(m, &cfg.local, false, keep))
                    .and_then(|keying| {
                        choose_audio(m, cfg, keep.map(|k| &k.audio))
                            .map(|(p, codec)| (p, codec, keying))
                            .ok_or_else(|| "no common audio codec".to_string())
                    });
                match chosen {
                    Ok((p, codec, srtp)) => audio = Some((i, m, p, codec, srtp)),
                    Err(why) => {
                        audio_problem.get_or_insert(why);
                    }
                }
            }
            MediaKind::Video
                if video.is_none() && cfg.local.video_port != 0 && usable_stream(m).is_ok() =>
            {
                if let Ok(keying) = stream_keying(m, &cfg.local, true, keep) {
                    video = choose_video(m, cfg, keep.and_then(|k| k.video.as_ref()))
                        .map(|(p, c)| ((i, m, p, c), keying));
                }
            }
            _ => {}
        }
    }
    let Some((audio_index, audio_media, audio_pt, audio_codec, (audio_srtp, audio_transport))) =
        audio
    else {
        return Err(AnswerError::NotAcceptable(
            audio_problem.unwrap_or_else(|| "no audio stream offered".to_string()),
        ));
    };
    let dtmf = if cfg.telephone_event {
        telephone_event(audio_media, audio_codec.clock_rate())
    } else {
        None
    };
    let mut plan = Plan {
        offer,
        audio_index,
        audio_media,
        audio_pt,
        audio_codec,
        dtmf,
        audio_srtp,
        audio_transport,
        video_srtp: video.as_ref().and_then(|(_, (srtp, _))| srtp.clone()),
        video_transport: video.as_ref().and_then(|(_, (_, t))| t.clone()),
        video: video.map(|(v, _)| v),
    };
    plan.bundle(&cfg.local);
    Ok(plan)
}

/// The proto we answer with: the offered one, spelled canonically.
fn answer_proto(m: &MediaDescription) -> &'static str {
    let feedback = m.proto.ends_with(['F', 'f']);
    if is_dtls_proto(&m.proto) {
        return if feedback {
            "UDP/TLS/RTP/SAVPF"
        } else {
            "UDP/TLS/RTP/SAVP"
        };
    }
    match (m.is_secure_rtp(), feedback) {
        (true, true) => "RTP/SAVPF",
        (true, false) => "RTP/SAVP",
        (false, true) => "RTP/AVPF",
        (false, false) => "RTP/AVP",
    }
}

/// Our direction for an offered stream: the mirror of the offerer's, and never sending to a
/// hold address.
pub(crate) fn answer_direction(m: &MediaDescription) -> Direction {
    let ours = m.direction.reverse();
    match m.connection {
        Some(ip) if ip.is_unspecified() => ours.restrict(Direction::RecvOnly),
        _ => ours,
    }
}

impl Plan<'_> {
    /// Accepts the offer's BUNDLE group when we can bundle (RFC 9143 §7.3): the audio and the
    /// video m-line we take are both in it and both keyed by DTLS-SRTP. Video then runs on the
    /// audio transport, and both m-lines carry the same port and transport lines.
    fn bundle(&mut self, local: &LocalMedia) {
        let (true, Some((_, vm, _, _)), Some(fingerprint)) =
            (local.bundle, self.video, local.dtls_fingerprint.as_ref())
        else {
            return;
        };
        let (Some((at, al)), Some((vt, vl))) =
            (self.audio_transport.as_mut(), self.video_transport.as_mut())
        else {
            return;
        };
        let (Some(amid), Some(vmid)) = (at.mid.as_deref(), vt.mid.as_deref()) else {
            return;
        };
        let Some(group) = group_of(&self.offer.bundle, amid, vmid) else {
            return;
        };
        let exts = (
            mid_ext_id(&self.audio_media.extmaps),
            mid_ext_id(&vm.extmaps),
        );
        join_bundle(at, vt, group, exts);
        *al = at.lines(fingerprint, at.our_setup());
        *vl = vt.lines(fingerprint, vt.our_setup());
    }

    fn finish(&self, cfg: &AnswerConfig, session_id: u64, session_version: u64) -> Answer {
        let mut medias: Vec<sdp_types::Media> = self
            .offer
            .media
            .iter()
            .map(|m| rejected(m.kind.as_str(), &m.proto, &m.formats))
            .collect();
        let (section, audio) = self.audio_section(cfg);
        if let Some(slot) = medias.get_mut(self.audio_index) {
            *slot = section;
        }
        let video = self.video.map(|(i, m, pt, codec)| {
            let keying = (self.video_srtp.as_ref(), self.video_transport.as_ref());
            let (section, negotiated) = video_section(m, pt, codec, cfg, keying);
            if let Some(slot) = medias.get_mut(i) {
                *slot = section;
            }
            negotiated
        });
        let sdp = render(
            &SessionHeader {
                local_ip: cfg.local.local_ip,
                session_id,
                session_version,
                session_name: &cfg.local.session_name,
                attributes: super::transport::session_lines(
                    self.ice_lite(cfg),
                    self.audio_transport
                        .as_ref()
                        .map_or(&[][..], |(t, _)| t.bundle_group()),
                ),
            },
            medias,
        );
        let mut video = video;
        // Bundled video goes where audio goes: the offerer's tagged m-line's address.
        if let Some(v) = video
            .as_mut()
            .filter(|v| v.transport.as_ref().is_some_and(|t| t.bundle.is_some()))
        {
            v.remote = audio.remote;
            v.remote_rtcp = audio.remote_rtcp;
        }
        Answer {
            sdp,
            negotiation: Negotiation { audio, video },
            session_id,
            session_version,
        }
    }

    /// Whether our answer says `a=ice-lite`: an ICE-lite policy and ICE agreed on a stream.
    fn ice_lite(&self, cfg: &AnswerConfig) -> bool {
        cfg.local.ice == IcePolicy::Lite
            && [&self.audio_transport, &self.video_transport]
                .into_iter()
                .any(|t| t.as_ref().is_some_and(|(t, _)| t.ice.is_some()))
    }

    fn audio_section(&self, cfg: &AnswerConfig) -> (sdp_types::Media, NegotiatedAudio) {
        let m = self.audio_media;
        let codec = &self.audio_codec;
        let pt = self.audio_pt.pt;
        let rtcp_mux = cfg.local.rtcp_mux && m.rtcp_mux;
        let direction = answer_direction(m).restrict(cfg.direction);
        let ptime = m.ptime.unwrap_or(DEFAULT_PTIME_MS);
        let mut fmt = pt.to_string();
        let mut attrs = vec![format!("rtpmap:{}", codec.rtpmap(pt))];
        let opus = (*codec == AudioCodec::Opus).then(|| OpusParams::of(self.audio_pt));
        if opus.is_some() {
            attrs.push(format!("fmtp:{pt} {OPUS_FMTP}"));
        }
        if let Some(ev) = self.dtmf {
            fmt.push_str(&format!(" {}", ev.pt));
            attrs.push(format!(
                "rtpmap:{} {TELEPHONE_EVENT}/{}",
                ev.pt,
                codec.clock_rate()
            ));
            let events = ev
                .fmtp
                .as_deref()
                .filter(|f| !f.is_empty())
                .unwrap_or(DEFAULT_EVENTS);
            attrs.push(format!("fmtp:{} {events}", ev.pt));
        }
        attrs.push(format!("ptime:{ptime}"));
        if rtcp_mux {
            attrs.push("rtcp-mux".to_string());
        }
        attrs.push(direction.as_str().to_string());
        if let Some((tag, keys)) = &self.audio_srtp {
            attrs.push(format!("crypto:{}", format_crypto(*tag, &keys.send)));
        }
        if let Some((_, lines)) = &self.audio_transport {
            attrs.extend(lines.iter().cloned());
        }
        let remote = m
            .rtp_addr()
            .unwrap_or_else(|| SocketAddr::new(cfg.local.local_ip, 0));
        let negotiated = NegotiatedAudio {
            pt,
            codec: codec.clone(),
            clock_rate: codec.clock_rate(),
            channels: codec.channels(),
            dtmf_pt: self.dtmf.map(|p| p.pt),
            ptime,
            remote,
            remote_rtcp: m.rtcp_addr(rtcp_mux).unwrap_or(remote),
            direction,
            rtcp_mux,
            opus,
            srtp: self.audio_srtp.as_ref().map(|(_, keys)| keys.clone()),
            transport: self.audio_transport.as_ref().map(|(t, _)| t.clone()),
        };
        let section = media("audio", cfg.local.audio_port, answer_proto(m), &fmt, attrs);
        (section, negotiated)
    }
}

/// The H.264 fmtp we answer with for an offered payload type, and the agreed mode and level.
///
/// packetization-mode is the offered one (absent means 0, and we then say 0 explicitly).
/// profile-level-id is echoed: same profile, same level, which RFC 6184 §8.2.2 allows. When the
/// offer has none, RFC 6184 §8.1 says Baseline level 1.0 (`420010`) is meant; we leave it out of
/// the answer as well, which means the same thing, rather than claim a higher level than offered.
fn h264_answer(p: &PayloadType) -> (String, u8, String) {
    let mode = h264_packetization_mode(p).unwrap_or(0);
    let mut params = Vec::new();
    let level = match h264_profile_level_id(p) {
        Some(id) => {
            params.push(format!("profile-level-id={id}"));
            id.to_string()
        }
        None => H264_DEFAULT_PROFILE_LEVEL_ID.to_string(),
    };
    params.push(format!("packetization-mode={mode}"));
    if p.fmtp_param("level-asymmetry-allowed") == Some("1") {
        params.push("level-asymmetry-allowed=1".to_string());
    }
    (params.join(";"), mode, level)
}

/// The `rtcp-fb` value of transport-wide congestion control feedback.
pub const TRANSPORT_CC_FB: &str = "transport-cc";

/// The `rtcp-fb` value of REMB.
pub const GOOG_REMB_FB: &str = "goog-remb";
/// The abs-send-time extension ID we offer (where browsers usually put it).
pub const DEFAULT_ABS_SEND_TIME_ID: u8 = 2;

/// Whether payload type `p` asks for REMB (`a=rtcp-fb:<pt> goog-remb`).
pub(crate) fn offered_remb(p: &PayloadType) -> bool {
    p.rtcp_fb
        .iter()
        .any(|f| f.trim().eq_ignore_ascii_case(GOOG_REMB_FB))
}

/// The `rtcp-fb` value of RFC 8888 feedback (RFC 8888 §6).
pub const CCFB_FB: &str = "ack ccfb";

/// The congestion control `m` and `p` ask for, when `ours` (we run it), in our order of
/// preference: transport-cc, RFC 8888, REMB (with abs-send-time when `m` maps it to a one-byte
/// ID). One rule for answers we write and answers we read.
/// `only` restricts the choice to one feedback.
pub(crate) fn offered_congestion(
    ours: bool,
    only: Option<CcFeedback>,
    m: &MediaDescription,
    p: &PayloadType,
) -> Option<CcAgreement> {
    let may = |f: CcFeedback| ours && only.is_none_or(|o| o == f);
    if let Some(id) = offered_transport_cc(m, p).filter(|_| may(CcFeedback::TransportCc)) {
        return Some(CcAgreement::transport_cc(id));
    }
    let asks = |name: &str| {
        p.rtcp_fb
            .iter()
            .any(|f| f.trim().eq_ignore_ascii_case(name))
    };
    if asks(CCFB_FB) && may(CcFeedback::Ccfb) {
        return Some(CcAgreement::ccfb());
    }
    if !offered_remb(p) || !may(CcFeedback::Remb) {
        return None;
    }
    let abs = extmap_id(&m.extmaps, ABS_SEND_TIME_URI).filter(|id| (1..=14).contains(id));
    Some(CcAgreement::remb(abs))
}

/// The SDP attributes that state an agreement (rtcp-fb on `pt`, extmap): one writer for
/// answers and re-offers.
pub(crate) fn congestion_attrs(attrs: &mut Vec<String>, pt: u8, cc: Option<CcAgreement>) {
    let Some(cc) = cc else {
        return;
    };
    match cc.feedback {
        CcFeedback::TransportCc => attrs.push(format!("rtcp-fb:{pt} {TRANSPORT_CC_FB}")),
        CcFeedback::Ccfb => attrs.push(format!("rtcp-fb:{pt} {CCFB_FB}")),
        CcFeedback::Remb => attrs.push(format!("rtcp-fb:{pt} {GOOG_REMB_FB}")),
    }
    if let Some(id) = cc.transport_cc_id {
        attrs.push(format!("extmap:{id} {TRANSPORT_CC_URI}"));
    }
    if let Some(id) = cc.abs_send_time_id {
        attrs.push(format!("extmap:{id} {ABS_SEND_TIME_URI}"));
    }
}

/// A [`NegotiatedVideo`] with the congestion control agreement `cc` in its fields.
pub(crate) fn with_congestion(v: NegotiatedVideo, cc: Option<CcAgreement>) -> NegotiatedVideo {
    let feedback = cc.map(|c| c.feedback);
    NegotiatedVideo {
        transport_cc: cc.and_then(|c| c.transport_cc_id),
        remb: feedback == Some(CcFeedback::Remb),
        abs_send_time: cc.and_then(|c| c.abs_send_time_id),
        ccfb: feedback == Some(CcFeedback::Ccfb),
        ..v
    }
}

/// The transport-wide sequence number's extension ID in `m`, when `m` also asks for
/// `transport-cc` feedback on payload type `p`: both are needed for congestion control to run.
/// Only IDs of the one-byte header form (1–14), the one our packets use.
pub(crate) fn offered_transport_cc(m: &MediaDescription, p: &PayloadType) -> Option<u8> {
    let fb = p
        .rtcp_fb
        .iter()
        .any(|f| f.trim().eq_ignore_ascii_case(TRANSPORT_CC_FB));
    let id = extmap_id(&m.extmaps, TRANSPORT_CC_URI)?;
    (fb && (1..=14).contains(&id)).then_some(id)
}

fn video_section(
    m: &MediaDescription,
    p: &PayloadType,
    codec: VideoCodec,
    cfg: &AnswerConfig,
    (srtp, transport): KeyingRef<'_>,
) -> (sdp_types::Media, NegotiatedVideo) {
    let pt = p.pt;
    let rtcp_mux = cfg.local.rtcp_mux && m.rtcp_mux;
    let direction = answer_direction(m).restrict(cfg.direction);
    let mut fmt = pt.to_string();
    let mut attrs = vec![format!("rtpmap:{pt} {}/90000", codec.encoding_name())];
    let (mut packetization_mode, mut profile_level_id) = (None, None);
    if codec == VideoCodec::H264 {
        let (fmtp, mode, level) = h264_answer(p);
        attrs.push(format!("fmtp:{pt} {fmtp}"));
        packetization_mode = Some(mode);
        profile_level_id = Some(level);
    }
    let feedback: Vec<&String> = p
        .rtcp_fb
        .iter()
        .filter(|fb| supported_feedback(fb, cfg.local.video_nack))
        .collect();
    for fb in &feedback {
        attrs.push(format!("rtcp-fb:{pt} {}", fb.to_ascii_lowercase()));
    }
    let has_fb = |name: &str| feedback.iter().any(|f| f.eq_ignore_ascii_case(name));
    // A retransmission stream only makes sense where NACKs flow.
    let rtx = rtx_for(m, pt).filter(|_| cfg.local.video_rtx && has_fb("nack"));
    if let Some(r) = rtx {
        fmt.push_str(&format!(" {}", r.pt));
        attrs.push(format!("rtpmap:{} {RTX}/90000", r.pt));
        attrs.push(format!("fmtp:{} apt={pt}", r.pt));
    }
    let fec = fec_payload_types(m).filter(|_| cfg.local.video_fec);
    write_fec(fec, &mut fmt, &mut attrs);
    let cc = offered_congestion(cfg.local.video_transport_cc, cfg.local.video_cc_only, m, p);
    congestion_attrs(&mut attrs, pt, cc);
    if rtcp_mux {
        attrs.push("rtcp-mux".to_string());
    }
    attrs.push(direction.as_str().to_string());
    if let Some((tag, keys)) = srtp {
        attrs.push(format!("crypto:{}", format_crypto(*tag, &keys.send)));
    }
    if let Some((_, lines)) = transport {
        attrs.extend(lines.iter().cloned());
    }
    let remote = m
        .rtp_addr()
        .unwrap_or_else(|| SocketAddr::new(cfg.local.local_ip, 0));
    let negotiated = NegotiatedVideo {
        pt,
        codec,
        clock_rate: 90000,
        packetization_mode,
        profile_level_id,
        remote,
        remote_rtcp: m.rtcp_addr(rtcp_mux).unwrap_or(remote),
        direction,
        rtcp_mux,
        pli: has_fb("nack pli"),
        fir: has_fb("ccm fir"),
        nack: has_fb("nack"),
        rtx_pt: rtx.map(|r| r.pt),
        srtp: srtp.map(|(_, keys)| keys.clone()),
        fec,
        transport_cc: None,
        remb: false,
        abs_send_time: None,
        ccfb: false,
        transport: transport.map(|(t, _)| t.clone()),
    };
    let negotiated = with_congestion(negotiated, cc);
    // A bundled video m-line names the shared (audio) transport's port.
    let port = match transport.and_then(|(t, _)| t.bundle.as_ref()) {
        Some(_) => cfg.local.audio_port,
        None => cfg.local.video_port,
    };
    let section = media("video", port, answer_proto(m), &fmt, attrs);
    (section, negotiated)
}

impl SessionDescription {
    /// Whether answering this offer with `video_codecs` would accept a video stream: lets the
    /// caller reserve a video port only when one will be used.
    pub fn accepts_video(&self, video_codecs: &[VideoCodec]) -> bool {
        self.media.iter().any(|m| {
            m.kind == MediaKind::Video
                // A bundle-only m-line (port 0) is taken when we bundle.
                && (usable_stream(m).is_ok() || (m.bundle_only && m.port == 0))
                && m.payloads
                    .iter()
                    .filter_map(video_codec_of)
                    .any(|c| video_codecs.contains(&c))
        })
    }
}
