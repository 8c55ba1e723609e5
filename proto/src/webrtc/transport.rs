//! What one stream needs to run DTLS-SRTP, with or without ICE, on its one socket (RTP and RTCP
//! muxed, STUN and DTLS beside them, told apart by [`super::demux`]). SDP negotiation (SIP
//! offers and answers, WHIP) fills an [`IceDtlsParams`]; the stream core takes it in
//! `CoreConfig::ice_dtls` and runs the agent and the handshake itself, keying its SRTP from the
//! handshake.

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{
    demux, Candidate, Demux, DtlsEndpoint, DtlsError, DtlsEvent, DtlsIdentity, IceAgent, IceConfig,
    IceCounters, IceEvent, IceInput, IceState, SelectedPair, TurnClient,
};
use crate::rtp::packet::MuxedKind;
use crate::rtp::srtp::SrtpKeys;
use crate::rtp::stream::same_endpoint;
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
    /// A TURN allocation made from the stream's socket: its relayed address is our relayed
    /// candidate (full agents only), and the transport keeps the allocation from then on.
    pub relay: Option<RelayParams>,
}

/// A TURN allocation handed to the transport (RFC 8656 over UDP, from the stream's socket).
#[derive(Clone, Debug)]
pub struct RelayParams {
    /// An allocated client (its relayed address is the candidate); the transport drives it
    /// from here on: permissions, refreshes, Send and Data indications.
    pub client: TurnClient,
    /// The host address the allocation was made from (the relayed candidate's base).
    pub base: SocketAddr,
}

/// The most authenticated STUN sources remembered as places DTLS may come from.
const MAX_VALIDATED: usize = 16;
/// The most datagrams queued for the caller between two drains (checks and flights are few).
const MAX_QUEUED: usize = 256;
/// How long a transport may take to be keyed from its creation. A peer that never completes
/// ICE or DTLS (a passive DTLS server hears no ClientHello; consent checks start only at
/// nomination; a send-only stream has no inactivity check) would otherwise hold it forever.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// What the transport did with a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route<'a> {
    /// Protected RTP or RTCP from the peer, with keys in place: the caller's SRTP path takes
    /// `data` as from `from`. Both are the datagram's own, or when it came through our TURN
    /// relay the payload of the Data indication and the peer the server saw it from.
    Media {
        kind: MuxedKind,
        from: SocketAddr,
        data: &'a [u8],
    },
    /// STUN or DTLS, taken; or something dropped and counted.
    Done,
}

/// Why a transport stopped for good: the stream must end (no media is sent any more).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransportFailure {
    /// The DTLS handshake failed (a certificate not matching the SDP fingerprint, a fatal
    /// alert, the handshake timed out).
    Dtls(DtlsError),
    /// The peer closed the DTLS association (`close_notify`).
    DtlsClosed,
    /// RFC 7675: the peer stopped answering consent checks for 30 s.
    ConsentExpired,
    /// Not keyed within 30 s of the transport's start: ICE or DTLS never completed.
    SetupTimeout,
}

impl fmt::Display for TransportFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportFailure::Dtls(e) => e.fmt(f),
            TransportFailure::DtlsClosed => f.write_str("the peer closed DTLS"),
            TransportFailure::ConsentExpired => f.write_str("ICE consent expired"),
            TransportFailure::SetupTimeout => {
                f.write_str("ICE and DTLS did not complete within 30 s")
            }
        }
    }
}

/// What the stream core hears from its transport.
#[derive(Debug, PartialEq, Eq)]
pub enum TransportEvent {
    /// The handshake is done: key SRTP with these.
    Keys(SrtpKeys),
    /// The transport is dead; see [`TransportFailure`].
    Failed(TransportFailure),
}

/// ICE's state as the stream's statistics carry it (`StreamStats::ice_state`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(u32)]
pub enum TransportIceState {
    /// No ICE on this stream.
    #[default]
    Off = 0,
    New = 1,
    Checking = 2,
    Connected = 3,
    Disconnected = 4,
    /// Consent expired (RFC 7675): the stream ended.
    ConsentExpired = 5,
}

/// DTLS's state as the stream's statistics carry it (`StreamStats::dtls_state`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(u32)]
pub enum TransportDtlsState {
    /// No DTLS on this stream.
    #[default]
    Off = 0,
    /// Waiting: for ICE (a client), for the ClientHello (a server).
    New = 1,
    Connecting = 2,
    /// Keys exported, SRTP keyed.
    Connected = 3,
    Failed = 4,
    /// Closed: by the peer's `close_notify` (the stream ended), or by our own close.
    Closed = 5,
}

/// What a transport counted, for the stream's statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransportStats {
    pub ice_state: TransportIceState,
    pub dtls_state: TransportDtlsState,
    /// The ICE-selected pair (`None` before selection and without ICE).
    pub selected: Option<SelectedPair>,
    /// Where media goes now ([`IceDtlsTransport::media_remote`]).
    pub remote: Option<SocketAddr>,
    /// STUN messages the agent took, could not read, refused (wrong credentials, bad
    /// integrity); STUN on a stream without ICE counts as refused.
    pub stun: IceCounters,
    /// DTLS records dropped: from a source no check validated, or with no handshake to take
    /// them (over, failed).
    pub dtls_dropped: u64,
    /// Datagrams dropped on arrival: RTP/RTCP before the keys or from another source than
    /// the selected remote, and anything RFC 7983 does not name (ZRTP, TURN channels, junk).
    pub dropped: u64,
}

impl TransportStats {
    /// Copies the transport's state and counters into a stream's statistics (a keyed core's
    /// own, or each member's of a [`Bundle`](super::Bundle)).
    pub fn fill(&self, s: &mut crate::rtp::StreamStats) {
        s.ice_state = self.ice_state as u32;
        s.dtls_state = self.dtls_state as u32;
        s.ice_local = self.selected.map(|p| p.local);
        s.ice_remote = self.remote;
        s.stun_accepted = self.stun.accepted;
        s.stun_malformed = self.stun.malformed;
        s.stun_refused = self.stun.refused;
        s.dtls_dropped = self.dtls_dropped;
        s.transport_dropped = self.dropped;
    }
}

/// ICE (when negotiated) and DTLS-SRTP on one stream's socket, as one sans-IO object: the
/// stream core owns one per stream (later one per BUNDLE group, above several cores).
///
/// Inputs: [`IceDtlsTransport::handle_datagram`] (every datagram of the socket; STUN and
/// DTLS are taken, media is handed back once keyed), [`IceDtlsTransport::handle_timeout`],
/// [`IceDtlsTransport::add_remote_candidate`]. Outputs, drained after every input:
/// [`IceDtlsTransport::poll_transmit`], [`IceDtlsTransport::poll_event`], then
/// [`IceDtlsTransport::poll_timeout`]. Where media goes and whether it may leave:
/// [`IceDtlsTransport::media_remote`], [`IceDtlsTransport::may_send_media`].
pub struct IceDtlsTransport {
    ice: Option<IceAgent>,
    /// The host addresses STUN arrives at (the destination the agent is told).
    locals: Vec<SocketAddr>,
    /// Sources that passed an authenticated STUN exchange: DTLS may come from them.
    validated: Vec<SocketAddr>,
    dtls: Option<DtlsEndpoint>,
    identity: DtlsIdentity,
    remote_fingerprints: Vec<Fingerprint>,
    client: bool,
    /// Without ICE: the peer (the SDP's address, or the first DTLS source when latching).
    peer: SocketAddr,
    may_latch: bool,
    /// Without ICE: the SDP's address, which a latch onto another source gives way to until
    /// keyed.
    sdp_peer: SocketAddr,
    /// With ICE: where the peer's DTLS last came from, for replies before a pair is selected.
    dtls_peer: Option<SocketAddr>,
    keyed: bool,
    /// When the transport fails unless keyed by then ([`SETUP_TIMEOUT`] after its start).
    setup_deadline: Instant,
    failed: bool,
    /// [`IceDtlsTransport::close`] was called.
    closing: bool,
    events: VecDeque<TransportEvent>,
    transmits: VecDeque<(SocketAddr, Vec<u8>)>,
    stats: TransportStats,
    /// Our TURN allocation, when the SDP carried a relayed candidate.
    relay: Option<TurnClient>,
    /// Its relayed address (the candidate); what the agent sends from it goes through `relay`.
    relayed: Option<SocketAddr>,
    /// The peer's DTLS (`dtls_peer`) came through the relay.
    dtls_via_relay: bool,
    /// The last authenticated check came through the relay.
    check_via_relay: bool,
}

impl fmt::Debug for IceDtlsTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IceDtlsTransport")
            .field("stats", &self.stats)
            .field("keyed", &self.keyed)
            .finish_non_exhaustive()
    }
}

impl IceDtlsTransport {
    /// A transport starting at `now`. `remote` is the address the peer's SDP gave (used
    /// without ICE; `latch`: the first DTLS source replaces it, as symmetric RTP does). A DTLS
    /// server waits for the ClientHello from the start; a client sends it once ICE has a
    /// valid pair (at once without ICE).
    pub fn new(params: &IceDtlsParams, remote: SocketAddr, latch: bool, now: Instant) -> Self {
        let mut t = IceDtlsTransport {
            ice: None,
            locals: Vec::new(),
            validated: Vec::new(),
            dtls: None,
            identity: params.identity.clone(),
            remote_fingerprints: params.remote_fingerprints.clone(),
            client: params.dtls_client,
            peer: remote,
            may_latch: latch,
            sdp_peer: remote,
            dtls_peer: None,
            keyed: false,
            setup_deadline: now + SETUP_TIMEOUT,
            failed: false,
            closing: false,
            events: VecDeque::new(),
            transmits: VecDeque::new(),
            stats: TransportStats {
                dtls_state: TransportDtlsState::New,
                ..TransportStats::default()
            },
            relay: None,
            relayed: None,
            dtls_via_relay: false,
            check_via_relay: false,
        };
        if let Some(p) = &params.ice {
            let mut agent = IceAgent::new(p.config.clone());
            for &addr in &p.host_candidates {
                agent.add_host_candidate(addr);
                t.locals.push(addr);
            }
            for &(addr, base) in &p.srflx_candidates {
                agent.add_srflx_candidate(addr, base);
                if !t.locals.contains(&base) {
                    t.locals.push(base);
                }
            }
            if let Some(r) = p.relay.as_ref().filter(|_| !p.config.lite) {
                if let Some(addr) = r.client.relayed() {
                    if agent.add_relayed_candidate(addr, r.base).is_some() {
                        let mut client = r.client.clone();
                        // A permission per remote candidate's address: the server relays
                        // nothing from or to any other.
                        for c in &p.remote_candidates {
                            client.create_permission(c.addr().ip(), now);
                        }
                        t.relay = Some(client);
                        t.relayed = Some(addr);
                    }
                }
            }
            agent.set_remote(&p.remote_credentials, &p.remote_candidates);
            agent.handle_timeout(now);
            t.stats.ice_state = TransportIceState::New;
            t.ice = Some(agent);
        }
        if !t.client {
            t.start_dtls(now);
        }
        t.drive(now);
        t
    }

    /// One more remote candidate (trickle); ignored without ICE.
    pub fn add_remote_candidate(&mut self, now: Instant, candidate: Candidate) {
        if let Some(ice) = self.ice.as_mut() {
            if let Some(relay) = self.relay.as_mut() {
                relay.create_permission(candidate.addr().ip(), now);
            }
            ice.add_remote_candidate(candidate);
            self.drive(now);
        }
    }

    /// A new remote address from the peer's SDP (a re-offer); ICE ignores it.
    pub fn set_remote(&mut self, remote: SocketAddr) {
        if self.ice.is_none() {
            self.peer = remote;
            self.sdp_peer = remote;
        }
    }

    /// Whether RTP or RTCP from `from` is the peer's: the selected remote, or with ICE any
    /// source an authenticated check came from (RFC 8445 §12.1: media may arrive on any valid
    /// pair, e.g. from a peer bound to a wildcard address whose kernel picks another source
    /// address than its candidate's). SRTP authenticates every packet after this.
    pub fn media_source_ok(&self, from: SocketAddr) -> bool {
        self.media_remote().is_some_and(|r| same_endpoint(r, from))
            || (self.ice.is_some() && self.validated.iter().any(|&v| same_endpoint(v, from)))
    }

    /// A datagram from `from` on the stream's socket. Never panics, whatever the bytes.
    pub fn handle_datagram<'a>(
        &mut self,
        now: Instant,
        from: SocketAddr,
        data: &'a [u8],
    ) -> Route<'a> {
        if self.failed || self.closing {
            self.stats.dropped += 1;
            return Route::Done;
        }
        if let (Some(relay), Some(relayed)) = (self.relay.as_mut(), self.relayed) {
            if from == relay.server() {
                // The TURN server's: a Data indication carries the peer's datagram, as
                // received at our relayed address; the rest is the client's business.
                if let Some((peer, inner)) = relay.handle_input(now, from, data) {
                    return self.handle_from(now, peer, relayed, inner, true);
                }
                self.drive(now);
                return Route::Done;
            }
        }
        let local = self.local_for(from);
        self.handle_from(now, from, local, data, false)
    }

    /// A datagram from `from` to our `local` address (`via_relay`: through the TURN relay).
    fn handle_from<'a>(
        &mut self,
        now: Instant,
        from: SocketAddr,
        local: SocketAddr,
        data: &'a [u8],
        via_relay: bool,
    ) -> Route<'a> {
        match demux(data) {
            Demux::Stun => match self.ice.as_mut() {
                Some(ice) => {
                    if ice.handle_input(now, from, local, data) == IceInput::Accepted {
                        self.check_via_relay = via_relay;
                        if !self.validated.contains(&from) {
                            if self.validated.len() == MAX_VALIDATED {
                                self.validated.remove(0);
                            }
                            self.validated.push(from);
                        }
                    }
                }
                None => self.stats.stun.refused += 1,
            },
            Demux::Dtls => {
                if !self.dtls_source_ok(now, from) {
                    self.stats.dtls_dropped += 1;
                    return Route::Done;
                }
                self.dtls_peer = Some(from);
                self.dtls_via_relay = via_relay;
                match self.dtls.as_mut() {
                    Some(d) => {
                        d.handle_input(now, data);
                        if self.stats.dtls_state == TransportDtlsState::New {
                            self.stats.dtls_state = TransportDtlsState::Connecting;
                        }
                    }
                    None => self.stats.dtls_dropped += 1,
                }
            }
            Demux::Rtp(kind) => {
                if self.keyed && self.media_source_ok(from) {
                    return Route::Media { kind, from, data };
                }
                self.stats.dropped += 1;
                return Route::Done;
            }
            Demux::Other => {
                self.stats.dropped += 1;
                return Route::Done;
            }
        }
        self.drive(now);
        Route::Done
    }

    /// Runs the agent's and the handshake's timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.failed || self.closing {
            return;
        }
        if let Some(ice) = self.ice.as_mut() {
            ice.handle_timeout(now);
        }
        if let Some(relay) = self.relay.as_mut() {
            relay.handle_timeout(now);
        }
        if let Some(d) = self.dtls.as_mut() {
            d.handle_timeout(now);
        }
        self.drive(now);
        if !self.keyed && now >= self.setup_deadline {
            self.stats.dtls_state = TransportDtlsState::Failed;
            self.fail(TransportFailure::SetupTimeout);
        }
    }

    /// Ends the transport with the stream: a connected DTLS association sends `close_notify`
    /// (drain [`IceDtlsTransport::poll_transmit`]); media that is still queued may leave
    /// first. Nothing is taken or timed afterwards, and no event follows.
    pub fn close(&mut self, now: Instant) {
        if self.failed {
            return;
        }
        let target = self.dtls_target();
        let via_relay = self.via_relay();
        let mut out = Vec::new();
        if let Some(d) = self.dtls.as_mut() {
            d.close(now);
            while let Some(bytes) = d.poll_transmit() {
                out.push(bytes);
            }
            if self.keyed {
                self.stats.dtls_state = TransportDtlsState::Closed;
            }
        }
        if let Some(to) = target {
            for bytes in out {
                self.queue(now, via_relay, to, bytes);
            }
        }
        if let Some(relay) = self.relay.as_mut() {
            // The allocation goes with the stream (a Refresh with lifetime 0).
            relay.close(now);
            while let Some(bytes) = relay.poll_transmit() {
                if self.transmits.len() < MAX_QUEUED {
                    self.transmits.push_back((relay.server(), bytes));
                }
            }
        }
        // Quiet from now on, but media already made may still go out under the keys.
        self.closing = true;
    }

    /// When to call [`IceDtlsTransport::handle_timeout`] next; `None` once failed.
    #[must_use]
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        if self.failed || self.closing {
            return None;
        }
        let ice = self.ice.as_mut().and_then(IceAgent::poll_timeout);
        let dtls = self.dtls.as_ref().and_then(DtlsEndpoint::poll_timeout);
        let setup = (!self.keyed).then_some(self.setup_deadline);
        let relay = self.relay.as_ref().and_then(TurnClient::poll_timeout);
        [ice, dtls, setup, relay].into_iter().flatten().min()
    }

    /// A STUN or DTLS datagram to send, with its destination (from the stream's one socket).
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.transmits.pop_front()
    }

    #[must_use]
    pub fn poll_event(&mut self) -> Option<TransportEvent> {
        self.events.pop_front()
    }

    /// Where media goes: with ICE the selected pair's remote, or until the controlling side's
    /// nomination reaches us the validated address the handshake came from; without ICE the
    /// peer.
    pub fn media_remote(&self) -> Option<SocketAddr> {
        match &self.ice {
            Some(ice) => ice.selected().map(|p| p.remote).or(self.dtls_peer),
            None => Some(self.peer),
        }
    }

    /// Whether media may leave now: keys are in place, the transport has not failed, and with
    /// ICE consent holds on the selected pair (or no pair is selected yet and the handshake
    /// came over a validated one).
    pub fn may_send_media(&self) -> bool {
        self.keyed
            && !self.failed
            && match &self.ice {
                None => true,
                Some(ice) if ice.selected().is_some() => ice.may_send(),
                Some(_) => self.dtls_peer.is_some(),
            }
    }

    /// Where a protected media datagram for `dest` ([`IceDtlsTransport::media_remote`]) goes
    /// and as what: as it is, or, when the selected pair's local side is our relayed
    /// candidate, wrapped in a Send indication for the TURN server. `None`: dropped (no
    /// permission for that peer yet), counted in `dropped`.
    pub fn route_media(
        &mut self,
        dest: SocketAddr,
        contents: Vec<u8>,
    ) -> Option<(SocketAddr, Vec<u8>)> {
        if !self.via_relay() {
            return Some((dest, contents));
        }
        let relay = self.relay.as_ref()?;
        match relay.wrap_send(dest, &contents) {
            Ok(wrapped) => Some((relay.server(), wrapped)),
            Err(_) => {
                self.stats.dropped += 1;
                None
            }
        }
    }

    /// Whether what goes to the peer now goes through the relay: the selected pair's local
    /// side is the relayed candidate, or before a selection the peer's DTLS (else the last
    /// authenticated check) came through it.
    fn via_relay(&self) -> bool {
        let Some(relayed) = self.relayed else {
            return false;
        };
        match self.ice.as_ref().and_then(IceAgent::selected) {
            Some(p) => p.local == relayed,
            None if self.dtls_peer.is_some() => self.dtls_via_relay,
            None => self.check_via_relay,
        }
    }

    /// Queues a datagram for `to`: as it is, or through the relay in a Send indication (a
    /// peer without a permission gets one asked for; this datagram is lost, as STUN and DTLS
    /// retransmit).
    fn queue(&mut self, now: Instant, via_relay: bool, to: SocketAddr, bytes: Vec<u8>) {
        if self.transmits.len() >= MAX_QUEUED {
            return;
        }
        if !via_relay {
            self.transmits.push_back((to, bytes));
            return;
        }
        let Some(relay) = self.relay.as_mut() else {
            return;
        };
        match relay.wrap_send(to, &bytes) {
            Ok(w) => self.transmits.push_back((relay.server(), w)),
            Err(_) => {
                relay.create_permission(to.ip(), now);
                self.stats.dropped += 1;
            }
        }
    }

    pub fn stats(&self) -> TransportStats {
        let mut s = self.stats;
        s.remote = self.media_remote();
        if let Some(ice) = &self.ice {
            s.stun = ice.counters();
            s.selected = ice.selected();
        }
        s
    }

    /// Our address for STUN from `from`: the first local address of its family.
    fn local_for(&self, from: SocketAddr) -> SocketAddr {
        self.locals
            .iter()
            .copied()
            .find(|l| l.is_ipv4() == from.is_ipv4())
            .or_else(|| self.locals.first().copied())
            .unwrap_or(from)
    }

    /// Whether DTLS from `from` is the peer's: a source an authenticated check came from
    /// (ICE), the SDP's address or the first source when latching (no ICE). Until keyed, DTLS
    /// from the SDP's address takes the transport back from a source latched onto (a spoofed
    /// datagram, say): a fresh endpoint, so what that source sent counts for nothing.
    fn dtls_source_ok(&mut self, now: Instant, from: SocketAddr) -> bool {
        match &self.ice {
            Some(ice) => {
                self.validated.iter().any(|&v| same_endpoint(v, from))
                    || ice
                        .selected()
                        .is_some_and(|p| same_endpoint(p.remote, from))
            }
            None if same_endpoint(self.peer, from) => true,
            None if !self.keyed && same_endpoint(self.sdp_peer, from) => {
                self.peer = from;
                self.dtls_peer = None;
                self.dtls = None;
                self.stats.dtls_state = TransportDtlsState::New;
                self.start_dtls(now);
                true
            }
            None if self.may_latch => {
                self.may_latch = false;
                self.peer = from;
                true
            }
            None => false,
        }
    }

    /// Where DTLS records go: the selected remote, else where the peer's DTLS came from, else
    /// the last source an authenticated check came from.
    fn dtls_target(&self) -> Option<SocketAddr> {
        match &self.ice {
            Some(ice) => ice
                .selected()
                .map(|p| p.remote)
                .or(self.dtls_peer)
                .or(self.validated.last().copied()),
            None => Some(self.peer),
        }
    }

    fn start_dtls(&mut self, now: Instant) {
        self.dtls = Some(DtlsEndpoint::new(
            &self.identity,
            self.client,
            &self.remote_fingerprints,
            now,
        ));
        if self.client {
            self.stats.dtls_state = TransportDtlsState::Connecting;
        }
    }

    /// Moves the agent's and the endpoint's outputs into ours; starts the client when ICE has
    /// a pair.
    fn drive(&mut self, now: Instant) {
        let mut consent_lost = false;
        let mut checks = Vec::new();
        if let Some(ice) = self.ice.as_mut() {
            while let Some(t) = ice.poll_transmit() {
                checks.push(t);
            }
        }
        for t in checks {
            let via_relay = Some(t.source) == self.relayed;
            self.queue(now, via_relay, t.destination, t.payload);
        }
        if let Some(relay) = self.relay.as_mut() {
            while let Some(bytes) = relay.poll_transmit() {
                if self.transmits.len() < MAX_QUEUED {
                    self.transmits.push_back((relay.server(), bytes));
                }
            }
            // A lost allocation only takes the relayed candidate away: ICE's checks and
            // consent on it fail, and another pair (if any) carries on.
            while relay.poll_event().is_some() {}
        }
        if let Some(ice) = self.ice.as_mut() {
            while let Some(e) = ice.poll_event() {
                match e {
                    IceEvent::State(s) => {
                        self.stats.ice_state = match s {
                            IceState::New => TransportIceState::New,
                            IceState::Checking => TransportIceState::Checking,
                            IceState::Connected => TransportIceState::Connected,
                            IceState::Disconnected => TransportIceState::Disconnected,
                        };
                    }
                    IceEvent::Selected(_) => {}
                    IceEvent::ConsentExpired => consent_lost = true,
                }
            }
        }
        if consent_lost {
            self.stats.ice_state = TransportIceState::ConsentExpired;
            return self.fail(TransportFailure::ConsentExpired);
        }
        // A client starts once ICE has a pair, or a valid one: an authenticated check from the
        // peer (a controlled agent, lite above all, may hear of the nomination only later).
        if self.client && self.dtls.is_none() && self.dtls_target().is_some() {
            self.start_dtls(now);
        }
        let target = self.dtls_target();
        let via_relay = self.via_relay();
        let Some(d) = self.dtls.as_mut() else { return };
        let mut failure = None;
        while let Some(e) = d.poll_event() {
            match e {
                DtlsEvent::Connected(keys) => {
                    self.keyed = true;
                    self.stats.dtls_state = TransportDtlsState::Connected;
                    self.events.push_back(TransportEvent::Keys(keys));
                }
                DtlsEvent::Failed(e) => {
                    self.stats.dtls_state = TransportDtlsState::Failed;
                    failure = Some(TransportFailure::Dtls(e));
                }
                DtlsEvent::Closed => {
                    self.stats.dtls_state = TransportDtlsState::Closed;
                    failure = Some(TransportFailure::DtlsClosed);
                }
            }
        }
        let mut flight = Vec::new();
        while let Some(bytes) = d.poll_transmit() {
            flight.push(bytes);
        }
        for bytes in flight {
            match target {
                Some(to) => self.queue(now, via_relay, to, bytes),
                // Nowhere to send it yet: DTLS retransmits its flight.
                None => self.stats.dtls_dropped += 1,
            }
        }
        if let Some(f) = failure {
            if self.ice.is_none() && !self.keyed && !same_endpoint(self.peer, self.sdp_peer) {
                // The handshake failed with a source latched onto (only possible when latching
                // is allowed), perhaps a spoofed one: back to the SDP's address, latching
                // allowed again, with a fresh endpoint. The set-up timeout bounds the retries.
                self.peer = self.sdp_peer;
                self.may_latch = true;
                self.dtls_peer = None;
                self.dtls = None;
                self.stats.dtls_state = TransportDtlsState::New;
                self.start_dtls(now);
                return self.drive(now);
            }
            self.fail(f);
        }
    }

    fn fail(&mut self, failure: TransportFailure) {
        if !self.failed {
            self.failed = true;
            self.events.push_back(TransportEvent::Failed(failure));
        }
    }
}
