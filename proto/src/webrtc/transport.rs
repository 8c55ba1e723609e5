//! What one stream needs to run DTLS-SRTP, with or without ICE, on its one socket (RTP and RTCP
//! muxed, STUN and DTLS beside them, told apart by [`super::demux`]). SDP negotiation (SIP
//! offers and answers, WHIP) fills an [`IceDtlsParams`]; the stream core takes it in
//! `CoreConfig::ice_dtls` and runs the agent and the handshake itself, keying its SRTP from the
//! handshake.

use std::net::SocketAddr;

use super::{Candidate, DtlsIdentity, IceConfig};
use crate::sdp::{Fingerprint, IceCredentials};

/// DTLS-SRTP settings of one transport, and its ICE settings when ICE was negotiated.
#[derive(Clone, Debug)]
pub struct IceDtlsParams {
    /// ICE, when both sides agreed to it; `None` runs DTLS straight to the address the peer's
    /// SDP gave (RFC 5763 without ICE, as SIP peers without ICE do it).
    pub ice: Option<IceParams>,
    /// The certificate we present (one per backend).
    pub identity: DtlsIdentity,
    /// The peer's `a=fingerprint` lines: its certificate must match one.
    pub remote_fingerprints: Vec<Fingerprint>,
    /// We are the DTLS client (our `a=setup` is `active`).
    pub dtls_client: bool,
}

/// The ICE half of [`IceDtlsParams`].
#[derive(Clone, Debug)]
pub struct IceParams {
    /// Our agent: lite or full, controlling or controlled, our `a=ice-ufrag`/`a=ice-pwd`.
    pub config: IceConfig,
    /// Our host candidates: the address(es) the stream's socket is bound to, as written in our
    /// SDP (an unspecified address is not a candidate).
    pub host_candidates: Vec<SocketAddr>,
    /// Our server-reflexive candidates and their bases, as written in our SDP.
    pub srflx_candidates: Vec<(SocketAddr, SocketAddr)>,
    /// The peer's `a=ice-ufrag`/`a=ice-pwd`.
    pub remote_credentials: IceCredentials,
    /// The peer's candidates known at set-up (more may trickle in later).
    pub remote_candidates: Vec<Candidate>,
}
