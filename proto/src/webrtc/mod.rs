//! The transport of WebRTC-style sessions (issue 19), pure like the other layers: an ICE agent
//! and a DTLS-SRTP endpoint, each a sans-IO core with `handle_*` inputs, drained `poll_*`
//! outputs and time passed in. Their SDP attributes are read and written in `sdp/transport.rs`.
//!
//! - `ice.rs`: [`IceAgent`] over str0m's `is` (full and lite, controlling and controlled, host
//!   and server-reflexive candidates), with RFC 7675 consent freshness on top.
//! - `dtls.rs`: [`DtlsIdentity`] (our ECDSA P-256 certificate, its `a=fingerprint`) and
//!   [`DtlsEndpoint`] on one of two engines ([`DtlsEngine`]): OpenSSL (`dtls_openssl.rs`, the
//!   default; RSA and ECDSA peers) or str0m's `dimpl` (ECDSA only, pure Rust): the
//!   handshake, the peer's fingerprint checked, the exported keys handed over as
//!   `rtp::srtp::SrtpKeys` for the one SRTP layer.
//! - `turn.rs`: [`TurnClient`], a TURN client over UDP (RFC 8656): an allocation with
//!   long-term credentials, permissions, Send/Data indications, refreshes and retransmits.
//! - `whip.rs`: [`WhipEndpoint`], the WHIP/WHEP HTTP decisions (RFC 9725): a request in, the
//!   response out, sessions made and ended through [`WhipSessions`].
//! - `stun.rs`: [`StunBinding`], the STUN Binding client that learns a socket's
//!   server-reflexive address from a STUN server (RFC 8489), before the SDP is written.
//! - `transport.rs`: [`IceDtlsParams`] (what SDP negotiation hands a stream) and
//!   [`IceDtlsTransport`], the agent and the endpoint on one socket behind one sans-IO object
//!   that a stream core owns when `CoreConfig::ice_dtls` is set (RFC 7983 demultiplexing).

// A pure layer: any `unsafe` the engine needs lives in engine/ (or ffi/), never here.
#![forbid(unsafe_code)]

mod bundle;
mod dtls;
mod dtls_openssl;
mod ice;
mod stun;
mod transport;
mod turn;
mod whip;

pub use bundle::{add_one_byte_element, Bundle, BundleError, BundleStats, MemberRoute};
pub use dtls::{fingerprint, DtlsEndpoint, DtlsEngine, DtlsError, DtlsEvent, DtlsIdentity};
pub use ice::{
    IceAgent, IceConfig, IceCounters, IceEvent, IceInput, IceState, IceTransmit, SelectedPair,
    CONSENT_TIMEOUT,
};
/// The candidate type of `a=candidate` lines, as the ICE agent reads and writes them.
pub use is::Candidate;
pub use stun::{BindingConfig, BindingCounters, BindingInput, BindingOutcome, StunBinding};
pub use transport::{
    IceDtlsParams, IceDtlsTransport, IceParams, RelayParams, Route, TransportDtlsState,
    TransportEvent, TransportFailure, TransportIceState, TransportStats,
};
pub use turn::{
    long_term_key, TurnClient, TurnConfig, TurnCounters, TurnError, TurnEvent, TurnState,
};
pub use whip::{CreateError, WhipConfig, WhipEndpoint, WhipKind, WhipSessions};

use crate::rtp::packet::{classify_muxed, MuxedKind};

/// What a datagram on a session's one socket is (RFC 7983 §7, by its first byte), so the
/// engine can hand it to the ICE agent, the DTLS endpoint or the stream core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Demux {
    /// 0–3: STUN (ICE checks, consent, STUN/TURN server replies).
    Stun,
    /// 20–63: a DTLS record.
    Dtls,
    /// 128–191: RTP or RTCP, told apart as on any rtcp-mux port.
    Rtp(MuxedKind),
    /// Anything else (ZRTP, TURN channel data, junk): dropped and counted by the caller.
    Other,
}

/// Classifies a datagram by RFC 7983's first-byte ranges.
pub fn demux(datagram: &[u8]) -> Demux {
    match datagram.first() {
        Some(0..=3) => Demux::Stun,
        Some(20..=63) => Demux::Dtls,
        Some(128..=191) => match classify_muxed(datagram) {
            MuxedKind::Other => Demux::Other,
            kind => Demux::Rtp(kind),
        },
        _ => Demux::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_7983_ranges() {
        assert_eq!(demux(&[0x00, 0x01, 0, 0]), Demux::Stun);
        assert_eq!(demux(&[3]), Demux::Stun);
        assert_eq!(demux(&[22, 0xfe, 0xfd]), Demux::Dtls);
        assert_eq!(demux(&[20]), Demux::Dtls);
        assert_eq!(demux(&[63]), Demux::Dtls);
        assert_eq!(demux(&[0x80, 96]), Demux::Rtp(MuxedKind::Rtp));
        assert_eq!(demux(&[0x80, 200]), Demux::Rtp(MuxedKind::Rtcp));
        // One byte of RTP range is not a packet; ZRTP, TURN channels and the rest are not ours.
        assert_eq!(demux(&[0x80]), Demux::Other);
        for b in [4u8, 16, 19, 64, 79, 127, 192, 255] {
            assert_eq!(demux(&[b, 0, 0, 0]), Demux::Other, "{b}");
        }
        assert_eq!(demux(&[]), Demux::Other);
    }
}
