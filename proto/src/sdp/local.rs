//! Our side of a call's media, as both an offer and an answer describe it.

use std::net::{IpAddr, SocketAddr};

use crate::frame::VideoCodec;

use super::codecs::AudioCodec;
use super::crypto::{LocalKeys, SrtpPolicy};
use super::ice_dtls::{DtlsSrtpPolicy, IcePolicy};
use super::transport::{Fingerprint, IceCredentials, SetupRole};
use crate::rtp::config::CcFeedback;
use crate::rtp::srtp::SrtpSuite;

/// What we can do and where we listen: the part of our session description that does not
/// depend on whether we offer or answer. [`OfferConfig`](super::OfferConfig) and
/// [`AnswerConfig`](super::AnswerConfig) both carry one as `local`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalMedia {
    /// Audio codecs. An offer lists them in this order of preference (empty offers
    /// [`AudioCodec::defaults`]); an answer accepts these, in the offerer's order.
    pub audio_codecs: Vec<AudioCodec>,
    /// Video codecs, as `audio_codecs`; empty offers or accepts no video.
    pub video_codecs: Vec<VideoCodec>,
    /// The address written in `o=` and `c=`: the advertised IP if there is one, else the local
    /// RTP IP.
    pub local_ip: IpAddr,
    /// Our audio RTP port.
    pub audio_port: u16,
    /// Our video RTP port; 0: no video (no `m=video` offered; an offered one answered with
    /// port 0).
    pub video_port: u16,
    /// The `o=` session id (a number chosen once per call).
    pub session_id: u64,
    /// The `o=` session version.
    pub session_version: u64,
    /// The `s=` line.
    pub session_name: String,
    /// Offer RTP/RTCP multiplexing (RFC 5761), or accept it when offered. An offerer must still
    /// take RTCP on port + 1 if the answer declines.
    pub rtcp_mux: bool,
    /// Generic NACK (RFC 4585) on video: offer `a=rtcp-fb:<pt> nack`, or answer `nack` when the
    /// offer has it.
    pub video_nack: bool,
    /// A retransmission payload type (RFC 4588) per video codec: offered, or accepted for the
    /// chosen one; only with `video_nack`, since retransmissions answer NACKs.
    pub video_rtx: bool,
    /// SRTP with SDES keys: off, optional or mandatory (see [`SrtpPolicy`]).
    pub srtp: SrtpPolicy,
    /// The SRTP suites we offer, in this order, and accept, in this order of preference.
    pub srtp_suites: Vec<SrtpSuite>,
    /// Our fresh sending keys for this call (drawn from the OS CSPRNG by [`LocalMedia::new`]).
    pub srtp_keys: LocalKeys,
    /// Forward error correction on video (ULPFEC in RED, RFC 5109/2198): offer `red/90000` and
    /// `ulpfec/90000`, or accept them when offered. Off by default.
    pub video_fec: bool,
    /// Transport-wide congestion control on video: offer `a=rtcp-fb:<pt> transport-cc` and
    /// `a=extmap` of the transport-wide sequence number, or answer them when the offer has both.
    pub video_transport_cc: bool,
    /// With `video_transport_cc`: offer and accept only this feedback. `None`: all three
    /// (transport-cc, RFC 8888 `ack ccfb`, `goog-remb` with abs-send-time), preferred in that
    /// order.
    pub video_cc_only: Option<CcFeedback>,
    /// DTLS-SRTP: off, optional or mandatory (see [`DtlsSrtpPolicy`]); in effect only with
    /// `dtls_fingerprint`.
    pub dtls_srtp: DtlsSrtpPolicy,
    /// The fingerprint of the certificate we present (`DtlsIdentity::fingerprint`).
    pub dtls_fingerprint: Option<Fingerprint>,
    /// Our `a=setup` when answering an `actpass` offer: `Active` (the answerer's ClientHello
    /// leaves with the answer, RFC 8842 §5.3; what browsers answer) or `Passive` (what WHIP
    /// servers commonly answer).
    pub dtls_answer_setup: SetupRole,
    /// ICE on DTLS-SRTP streams: off, full or lite (see [`IcePolicy`]).
    pub ice: IcePolicy,
    /// Our `a=ice-ufrag`/`a=ice-pwd` for this call (fresh from [`LocalMedia::new`]).
    pub ice_credentials: IceCredentials,
    /// The server-reflexive addresses of the audio and video sockets, when a STUN server
    /// reported them: offered as `srflx` candidates beside the host ones.
    pub audio_srflx: Option<SocketAddr>,
    pub video_srflx: Option<SocketAddr>,
    /// BUNDLE (RFC 9143) with ICE and DTLS-SRTP: offer `a=group:BUNDLE` (with `a=mid` and the
    /// MID header extension), or accept an offered group, so that audio and video share the
    /// audio stream's transport. Only for a host that runs both streams on one socket; off by
    /// default (an offered group is then declined).
    pub bundle: bool,
    /// The relayed addresses a TURN server allocated for the audio and video sockets:
    /// offered as `relay` candidates (the transport then relays through that allocation).
    pub audio_relayed: Option<SocketAddr>,
    pub video_relayed: Option<SocketAddr>,
    /// Offer a stream's relayed candidate alone when it has one (no host or srflx
    /// candidates): media then always goes through the TURN server.
    pub relay_only: bool,
}

impl LocalMedia {
    /// Defaults: [`AudioCodec::defaults`], H.264 with NACK and RTX, rtcp-mux, session id and
    /// version 0 (set them per call), session name `roomkit-media`, SRTP off (with fresh keys
    /// drawn for when it is turned on), DTLS-SRTP and ICE off (with fresh ICE credentials).
    pub fn new(local_ip: IpAddr, audio_port: u16, video_port: u16) -> LocalMedia {
        LocalMedia {
            audio_codecs: AudioCodec::defaults(),
            video_codecs: vec![VideoCodec::H264],
            local_ip,
            audio_port,
            video_port,
            session_id: 0,
            session_version: 0,
            session_name: "roomkit-media".to_string(),
            rtcp_mux: true,
            video_nack: true,
            video_rtx: true,
            srtp: SrtpPolicy::Off,
            srtp_suites: SrtpSuite::ALL.to_vec(),
            srtp_keys: LocalKeys::from_os_rng(),
            video_fec: false,
            video_transport_cc: false,
            video_cc_only: None,
            dtls_srtp: DtlsSrtpPolicy::Off,
            dtls_fingerprint: None,
            dtls_answer_setup: SetupRole::Active,
            ice: IcePolicy::Off,
            ice_credentials: crate::webrtc::IceConfig::random_credentials(),
            audio_srflx: None,
            video_srflx: None,
            bundle: false,
            audio_relayed: None,
            video_relayed: None,
            relay_only: false,
        }
    }
}
