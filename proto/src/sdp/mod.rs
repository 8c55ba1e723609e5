//! SDP offer/answer (RFC 3264) over session descriptions (RFC 4566). Pure: no I/O and no clock;
//! session ids, versions, addresses and ports are passed in.
//!
//! - [`SessionDescription::parse`] reads any body into our model (sdp-types first, a tolerant
//!   reader when sdp-types refuses it) and never panics.
//! - [`answer`] answers an offer as the called party; [`reanswer`] answers a re-INVITE's offer.
//! - `crypto.rs`: SDES `a=crypto` lines (RFC 4568) and the SRTP policy (`off`, `optional`,
//!   `mandatory`) that decides the proto and crypto lines of offers and answers.
//! - `extmap.rs`: `a=extmap` lines (RFC 8285) and what an answer keeps of them.
//! - `transport.rs`: ICE, DTLS-SRTP and BUNDLE attributes (`a=ice-*`, `a=candidate`,
//!   `a=fingerprint`, `a=setup`, `a=mid`, `a=group:BUNDLE`) and an answer's `a=setup` role;
//!   read into every m-line.
//! - `ice_dtls.rs`: the ICE and DTLS-SRTP policies, the transport lines of our offers and
//!   answers, and what a stream agreed to ([`NegotiatedTransport`], which gives the stream
//!   core's `webrtc::IceDtlsParams`). No BUNDLE: each m-line has its own transport.
//! - [`build_offer`] writes our offer as the calling party; [`parse_answer`] reads the reply.

// A pure layer: any `unsafe` the engine needs lives in engine/ (or ffi/), never here.
#![forbid(unsafe_code)]

mod answer;
mod codecs;
mod crypto;
mod extmap;
mod ice_dtls;
mod local;
mod model;
mod offer;
mod parse;
mod transport;
mod write;

// Re-exports for the `_internals` API (fuzz targets, benches, tests); without the feature the
// crate itself may not need every name.
#[cfg_attr(not(feature = "_internals"), allow(unused_imports))]
pub use answer::{
    answer, reanswer, Answer, AnswerConfig, AnswerError, NegotiatedAudio, NegotiatedVideo,
    Negotiation, Reanswer, DEFAULT_PTIME_MS,
};
#[cfg_attr(not(feature = "_internals"), allow(unused_imports))]
pub use codecs::{
    AudioCodec, OpusParams, H264_DEFAULT_PROFILE_LEVEL_ID, H264_OFFER_PROFILE_LEVEL_ID,
};
#[cfg_attr(not(feature = "_internals"), allow(unused_imports))]
pub use crypto::{
    choose_crypto, format_crypto, parse_crypto, CryptoAttr, CryptoError, LocalKeys, SrtpPolicy,
};
#[cfg_attr(not(feature = "_internals"), allow(unused_imports))]
pub use extmap::{answer_extmaps, extmap_id, parse_extmap, ExtMap, MAX_EXTMAPS};
#[cfg_attr(not(feature = "_internals"), allow(unused_imports))]
pub use ice_dtls::{
    is_dtls_proto, DtlsSrtpPolicy, IcePolicy, NegotiatedBundle, NegotiatedIce, NegotiatedTransport,
    OfferedTransport, StreamCandidates, AUDIO_MID, DTLS_PROTO, VIDEO_MID,
};
#[cfg_attr(not(feature = "_internals"), allow(unused_imports))]
pub use local::LocalMedia;
#[cfg_attr(not(feature = "_internals"), allow(unused_imports))]
pub use model::{
    Direction, MediaDescription, MediaKind, Origin, PayloadType, RtcpAttr, RtpMap, SdpError,
    SessionDescription,
};
pub use offer::{
    build_offer, parse_answer, reoffer, sdes_offer, Offer, OfferConfig, ReofferConfig, ReofferVideo,
};
#[cfg_attr(not(feature = "_internals"), allow(unused_imports))]
pub use transport::{
    session_lines, Fingerprint, IceCredentials, SetupRole, TransportAttrs, MAX_CANDIDATES,
};
