//! The pure tests: codecs, RTP/RTCP, SDP and SIP on virtual time, property tests, the RFC 4475
//! corpus, the fuzz findings and the header check. No socket and no peer (one VP8 test also has
//! ffmpeg decode its stream when ffmpeg is installed): they run anywhere.
//! One binary for the whole area, so that a build links the crate and libopus once, not once per
//! file; each file below is one module, named as the file was before.

#[path = "../fuzz_support/mod.rs"]
mod fuzz_support;
#[path = "../support/rsa.rs"]
mod rsa;

mod bundle;
mod congestion;
mod dtls_engines;
mod fec;
mod framing_props;
mod fuzz_findings;
mod h264_props;
mod header_fresh;
mod ice_dtls;
mod layering;
mod rfc4475;
mod rtcp_props;
mod sdp_bundle;
mod sdp_fuzz;
mod sdp_ice_dtls;
mod sdp_offer_answer;
mod sdp_remb;
mod sdp_srtp;
mod sdp_transport_cc;
mod sip_fuzz;
mod sip_transactions;
mod stream_congestion;
mod stream_core;
mod stream_srtp;
mod stream_voice;
mod vp8_props;
mod webrtc;
mod whip_fuzz;
