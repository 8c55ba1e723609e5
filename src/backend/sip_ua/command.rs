//! What the application side asks of the core: the commands the backend handle queues for
//! the SIP thread, with the calls and registrations they describe.

use std::sync::Arc;
use std::time::Duration;

use super::host::MediaError;
use crate::engine::{EndReason, SessionId, SessionInfo};
use crate::sip::auth::Credentials;
use crate::sip::SipPeer;

/// Work queued for the SIP thread by application threads.
#[derive(Debug)]
#[non_exhaustive]
pub enum Command {
    /// End the call of this session: CANCEL while dialing, 480 while ringing, BYE once up.
    /// Its media may already be closed by the caller.
    Hangup(SessionId),
    /// Answer or refuse the incoming call with this Call-ID whose decision the invite filter
    /// deferred (`CallDecision::Defer`); ignored for any other call.
    Decide(String, crate::backend::sip_config::CallDecision),
    /// The engine ended this session's media because the peer left it (RTCP BYE, or silence
    /// for the inactivity timeout): the call is hung up, after a grace for the peer's own BYE
    /// when it announced its leaving with RTCP BYE.
    MediaEnded(SessionId, EndReason),
    /// Place a call.
    Dial(Box<DialRequest>),
    /// Put the far end on hold (`true`) or resume (`false`) with a re-INVITE.
    Hold(SessionId, bool),
    /// Add (`true`) or remove (`false`) video with a re-INVITE.
    Video(SessionId, bool),
    /// Start registering.
    Register(u64, Box<RegisterRequest>),
    /// Remove a registration (REGISTER with `Expires: 0`).
    Unregister(u64),
    /// The media host's setup worker started (or failed to start) an incoming call's session
    /// ([`MediaHost::start_deferred`](super::MediaHost::start_deferred)): the call is
    /// answered now, or refused with the error's status.
    MediaStarted(SessionId, Result<Arc<SessionInfo>, MediaError>),
    /// [`Command::Hangup`] with a `Reason` header value (RFC 3326) on the BYE or CANCEL.
    HangupWithReason(SessionId, String),
    /// Answer an SDP offer that came without SIP (WHIP/WHEP) and start its session.
    AcceptOffer(Box<OfferRequest>),
}

/// An offer to answer outside SIP (`offer.rs`), prepared by the application side.
#[derive(Debug)]
pub struct OfferRequest {
    /// The session id it will have.
    pub session: SessionId,
    /// Which endpoint it came through.
    pub kind: roomkit_media_proto::webrtc::WhipKind,
    /// The client's SDP offer.
    pub offer: String,
    /// Where the offer came from (the HTTP client).
    pub client: std::net::SocketAddr,
    /// The room of the session.
    pub room_id: String,
    /// Where the core sends our SDP answer, or why there is none.
    pub reply: crossbeam_channel::Sender<Result<String, MediaError>>,
}

/// A call to place, prepared by the application side (names resolved, ids chosen).
#[derive(Debug, Clone)]
pub struct DialRequest {
    /// The session id the call will have (the application has it already).
    pub session: SessionId,
    pub call_id: String,
    /// The Request-URI.
    pub target: String,
    /// Our From URI (without tag) and display name.
    pub from_uri: String,
    pub display_name: Option<String>,
    /// The user part of our Contact.
    pub contact_user: String,
    /// Where the INVITE goes first: the outbound proxy, else the target's host.
    pub next_hop: SipPeer,
    /// A Route header value for an outbound proxy (`<sip:ip:port;lr>`).
    pub route: Option<String>,
    /// For 401/407 challenges.
    pub credentials: Option<Credentials>,
    /// Extra headers (`X-...`).
    pub headers: Vec<(String, String)>,
    /// Offer video (a video backend only).
    pub video: bool,
    /// How long to wait for an answer before cancelling.
    pub ring_timeout: Duration,
    /// The room of the session.
    pub room_id: String,
    /// The audio codecs to offer; empty: the configured ones.
    pub audio_codecs: Vec<crate::sdp::AudioCodec>,
}

/// A registration to start, prepared by the application side.
#[derive(Debug, Clone)]
pub struct RegisterRequest {
    /// Address of record (`sip:alice@example.com`).
    pub aor: String,
    /// The Request-URI (the registrar's domain); empty: the AOR's host.
    pub registrar: String,
    /// Where REGISTERs go (the registrar, or the outbound proxy).
    pub next_hop: SipPeer,
    /// A Route header value for an outbound proxy.
    pub route: Option<String>,
    pub credentials: Option<Credentials>,
    /// Seconds asked for.
    pub expires: u32,
}
