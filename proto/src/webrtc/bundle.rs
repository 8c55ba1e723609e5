//! BUNDLE (RFC 9143) above the stream cores: one socket, one [`IceDtlsTransport`], one SRTP
//! session, several [`StreamCore`]s (audio, video with its RTX) told apart by SSRC.
//!
//! The members are ordinary plain cores (no `ice_dtls`, no SDES keys, rtcp-mux): the bundle
//! does for all of them what a keyed core does for itself. In:
//! - every datagram of the socket goes to the transport (STUN, DTLS, and media only once keyed
//!   and from the selected remote); media is unprotected here, once, with the one SRTP
//!   session (it keeps per-SSRC state, RFC 3711 §3.2.3);
//! - RTP goes to a member by SSRC, RFC 9143 §9.2's order: the MID header extension when a
//!   packet carries one that names a member (which binds its SSRC to it), else an SSRC already
//!   bound (by `a=ssrc` lines given up front, or learned), else the payload type, each
//!   m-line's being distinct. Only authenticated packets bind. A packet no rule places is a
//!   counted drop (`unknown_ssrc`);
//! - an RTCP compound goes to each member it names: by the peer's SSRCs bound to it (sender
//!   reports, BYE) or by our SSRCs (report blocks, NACK, PLI, FIR, REMB); transport-wide
//!   feedback and a compound naming no member go to all, except one with a BYE (a source no
//!   member knows leaving must not end the others: dropped, `rtcp_unrouted`). A core acts only on the parts about
//!   its own SSRCs, so this is the per-SSRC split without rewriting compounds.
//!
//! Out: the transport's STUN and DTLS first, then each member's RTP and RTCP, stamped with the
//! member's mid (when the MID extension was negotiated), protected and sent to the transport's
//! media remote. Nothing leaves before the keys (`unkeyed_dropped`). Keys, failure and the
//! selected remote reach every member; closing sends each member's BYE, then `close_notify`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use crate::rtp::hdrext::{self, ONE_BYTE_PROFILE};
use crate::rtp::packet::MuxedKind;
use crate::rtp::rtcp::{parse_compound_into, RtcpEvent};
use crate::rtp::srtp::{SrtpError, SrtpSession};
use crate::rtp::stream::{KeyframeRequest, StreamCore, StreamEvent, Transmit, TransmitKind};

use super::transport::{IceDtlsParams, IceDtlsTransport, Route, TransportEvent, TransportStats};
use super::Candidate;

/// The most SSRCs bound to members (a few per m-line: media, RTX, FEC); the oldest binding
/// goes when more come.
const MAX_BOUND_SSRCS: usize = 16;

/// How the bundle recognises one member's packets (what SDP said about its m-line).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberRoute {
    /// The m-line's `a=mid`.
    pub mid: Option<String>,
    /// The MID header extension's ID on this m-line (1–14), when both sides mapped it: our
    /// packets carry the mid under it and the peer's are read for it.
    pub mid_ext: Option<u8>,
    /// The payload types of the m-line (media, RTX, RED, FEC, telephone-event).
    pub payload_types: Vec<u8>,
    /// The peer's SSRCs on this m-line when its SDP listed them (`a=ssrc`).
    pub remote_ssrcs: Vec<u32>,
    /// A video member: asked for a key picture when the keys arrive, as a keyed core is.
    pub video: bool,
}

/// Why a core cannot join a bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BundleError {
    /// The core runs its own transport or SDES keys: the bundle's would be bypassed.
    KeyedCore,
    /// Another member already has this mid or one of these payload types.
    Overlap,
}

impl std::fmt::Display for BundleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BundleError::KeyedCore => "a bundled stream core must be plain (the bundle keys it)",
            BundleError::Overlap => "two bundled m-lines share a mid or a payload type",
        })
    }
}

impl std::error::Error for BundleError {}

/// What the bundle itself counted (each core counts its own packets in its stats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BundleStats {
    /// RTP whose SSRC no member claims (no binding, MID or payload type).
    pub unknown_ssrc: u64,
    /// SRTP or SRTCP that failed authentication.
    pub srtp_auth_failed: u64,
    /// SRTP or SRTCP replayed.
    pub srtp_replayed: u64,
    /// Media that could not be unprotected, an unreadable RTCP compound, or a packet of ours
    /// that could not be protected.
    pub malformed: u64,
    /// Our media made before the keys (or without consent): never sent.
    pub unkeyed_dropped: u64,
    /// RTP routed by MID, by bound SSRC and by payload type.
    pub routed_by_mid: u64,
    pub routed_by_ssrc: u64,
    pub routed_by_pt: u64,
    /// RTCP compounds with a BYE that names no member's peer source: dropped.
    pub rtcp_unrouted: u64,
}

struct Member {
    core: StreamCore,
    route: MemberRoute,
}

/// One BUNDLE group's transport and its members; see the module documentation.
pub struct Bundle {
    transport: IceDtlsTransport,
    transport_timeout: Option<Instant>,
    srtp: Option<SrtpSession>,
    members: Vec<Member>,
    /// The peer's SSRCs bound to members (index), oldest first.
    bound: Vec<(u32, usize)>,
    /// The remote the members were last pointed at.
    remote: Option<SocketAddr>,
    events: VecDeque<(usize, StreamEvent)>,
    rtcp_events: Vec<RtcpEvent>,
    stats: BundleStats,
    failed: bool,
    closed: bool,
}

impl std::fmt::Debug for Bundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bundle")
            .field("members", &self.members.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Bundle {
    /// A bundle's transport starting at `now`; `remote` is the peer's address from its SDP
    /// (used without ICE). Members join with [`Bundle::add`].
    pub fn new(params: &IceDtlsParams, remote: SocketAddr, now: Instant) -> Bundle {
        let mut b = Bundle {
            transport: IceDtlsTransport::new(params, remote, params.ice.is_none(), now),
            transport_timeout: None,
            srtp: None,
            members: Vec::new(),
            bound: Vec::new(),
            remote: None,
            events: VecDeque::new(),
            rtcp_events: Vec::new(),
            stats: BundleStats::default(),
            failed: false,
            closed: false,
        };
        b.pump(now);
        b
    }

    /// Adds a plain core (built without `ice_dtls` and SDES keys) as the member for `route`;
    /// returns its index.
    pub fn add(&mut self, core: StreamCore, route: MemberRoute) -> Result<usize, BundleError> {
        if core.transport_stats().is_some() || core.srtp_suite().is_some() {
            return Err(BundleError::KeyedCore);
        }
        let clash = self.members.iter().any(|m| {
            (route.mid.is_some() && m.route.mid == route.mid)
                || route
                    .payload_types
                    .iter()
                    .any(|pt| m.route.payload_types.contains(pt))
        });
        if clash {
            return Err(BundleError::Overlap);
        }
        let i = self.members.len();
        for &ssrc in &route.remote_ssrcs {
            self.bind(ssrc, i);
        }
        let mut member = Member { core, route };
        if let Some(r) = self.remote {
            member.core.set_remote(r, r);
        }
        self.members.push(member);
        Ok(i)
    }

    /// How many members there are.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether there is no member yet.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Member `i`'s core (to send media, read stats).
    ///
    /// # Panics
    /// If `i` is not an index [`Bundle::add`] returned.
    pub fn core(&self, i: usize) -> &StreamCore {
        &self.members[i].core
    }

    /// Member `i`'s core, mutably (sending media and DTMF).
    ///
    /// # Panics
    /// If `i` is not an index [`Bundle::add`] returned.
    pub fn core_mut(&mut self, i: usize) -> &mut StreamCore {
        &mut self.members[i].core
    }

    /// Member `i`'s statistics: its core's, with the shared transport's state and counters
    /// (each member shows the one transport, as a keyed core shows its own).
    ///
    /// # Panics
    /// If `i` is not an index [`Bundle::add`] returned.
    pub fn member_stats(&self, i: usize) -> crate::rtp::StreamStats {
        let mut s = self.members[i].core.stats();
        self.transport.stats().fill(&mut s);
        s
    }

    /// Ends member `i` alone (an m-line a re-offer removed): its core sends its RTCP BYE
    /// through the bundle and takes nothing more; the others and the transport go on.
    ///
    /// # Panics
    /// If `i` is not an index [`Bundle::add`] returned.
    pub fn close_member(&mut self, now: Instant, i: usize) {
        self.members[i].core.close(now);
    }

    /// The SRTP suite the handshake agreed, once keyed.
    pub fn srtp_suite(&self) -> Option<crate::rtp::srtp::SrtpSuite> {
        self.srtp.as_ref().map(SrtpSession::suite)
    }

    /// Gives a transmit buffer back for reuse (to the first member's pool).
    pub fn recycle(&mut self, buf: Vec<u8>) {
        if let Some(m) = self.members.first_mut() {
            m.core.recycle(buf);
        }
    }

    /// The shared transport's state and counters.
    pub fn transport_stats(&self) -> TransportStats {
        self.transport.stats()
    }

    /// What the bundle counted.
    pub fn stats(&self) -> BundleStats {
        self.stats
    }

    /// One more remote ICE candidate (trickle).
    pub fn add_remote_candidate(&mut self, now: Instant, candidate: Candidate) {
        if self.closed {
            return;
        }
        self.transport.add_remote_candidate(now, candidate);
        self.pump(now);
    }

    /// A datagram that arrived at `now` from `from` on the bundle's socket. Never panics,
    /// whatever the bytes.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        if self.closed {
            return;
        }
        match self.transport.handle_datagram(now, from, data) {
            Route::Done => self.pump(now),
            Route::Media { kind, from, data } => {
                let Some(srtp) = self.srtp.as_mut() else {
                    return;
                };
                // The transport vetted the source (the selected pair, or any valid one): to the
                // member cores, whose source check knows only the selected remote, it is the peer.
                let from = self.transport.media_remote().unwrap_or(from);
                let rtcp = kind == MuxedKind::Rtcp;
                let plain = if rtcp {
                    srtp.unprotect_rtcp(data, now)
                } else {
                    srtp.unprotect_rtp(data, now)
                };
                match plain {
                    Ok(p) if rtcp => self.route_rtcp(now, from, &p),
                    Ok(p) => self.route_rtp(now, from, &p),
                    Err(SrtpError::Auth) => self.stats.srtp_auth_failed += 1,
                    Err(SrtpError::Replay) => self.stats.srtp_replayed += 1,
                    Err(_) => self.stats.malformed += 1,
                }
            }
        }
    }

    /// When [`Bundle::handle_timeout`] should next be called; `None` once closed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        self.members
            .iter()
            .filter_map(|m| m.core.poll_timeout())
            .chain(self.transport_timeout)
            .min()
    }

    /// The time from [`Bundle::poll_timeout`] has come (early or late is harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        if self.transport_timeout.is_some_and(|t| t <= now) {
            self.transport.handle_timeout(now);
            self.pump(now);
        }
        for m in &mut self.members {
            if m.core.poll_timeout().is_some_and(|t| t <= now) {
                m.core.handle_timeout(now);
            }
        }
    }

    /// The next datagram to send from the bundle's socket: STUN and DTLS as they are, media
    /// protected. Before the keys (or without consent) members' media is dropped and counted.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if !self.closed {
            if let Some(t) = self.poll_transport_transmit() {
                return Some(t);
            }
        }
        if let Some(t) = self.poll_media_transmit() {
            return Some(t);
        }
        self.poll_transport_transmit()
    }

    /// The next event of a member: its index and the event. Keys, transport failure and the
    /// peer's media arrive as they do for a keyed core.
    pub fn poll_event(&mut self) -> Option<(usize, StreamEvent)> {
        if let Some(e) = self.events.pop_front() {
            return Some(e);
        }
        self.members
            .iter_mut()
            .enumerate()
            .find_map(|(i, m)| m.core.poll_event().map(|e| (i, e)))
    }

    /// Ends every member (each sends its RTCP BYE) and then the DTLS association
    /// (`close_notify`, after the BYEs: see [`Bundle::poll_transmit`]).
    pub fn close(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        for m in &mut self.members {
            m.core.close(now);
        }
        self.transport.close(now);
        self.transport_timeout = None;
        self.closed = true;
    }

    fn poll_transport_transmit(&mut self) -> Option<Transmit> {
        let (dest, contents) = self.transport.poll_transmit()?;
        Some(Transmit {
            dest,
            kind: TransmitKind::Rtp,
            contents,
        })
    }

    fn poll_media_transmit(&mut self) -> Option<Transmit> {
        let ready = self.transport.may_send_media() && self.srtp.is_some() && !self.failed;
        let dest = self.transport.media_remote();
        for m in &mut self.members {
            while let Some(mut t) = m.core.poll_transmit() {
                let (true, Some(dest), Some(srtp)) = (ready, dest, self.srtp.as_mut()) else {
                    self.stats.unkeyed_dropped += 1;
                    m.core.recycle(t.contents);
                    continue;
                };
                let protected = match t.kind {
                    TransmitKind::Rtp => {
                        if let (Some(id), Some(mid)) = (m.route.mid_ext, m.route.mid.as_deref()) {
                            add_one_byte_element(&mut t.contents, id, mid.as_bytes());
                        }
                        srtp.tx.protect_rtp(&t.contents)
                    }
                    TransmitKind::Rtcp => srtp.tx.protect_rtcp(&t.contents),
                };
                match protected {
                    Ok(p) => {
                        let plain = std::mem::replace(&mut t.contents, p);
                        m.core.recycle(plain);
                        // Through our TURN relay when the selected pair starts there.
                        if let Some((dest, contents)) = self.transport.route_media(dest, t.contents)
                        {
                            t.dest = dest;
                            t.contents = contents;
                            return Some(t);
                        }
                    }
                    Err(_) => {
                        self.stats.malformed += 1;
                        m.core.recycle(t.contents);
                    }
                }
            }
        }
        None
    }

    /// Takes the transport's events (keys, failure), points the members at its selected
    /// remote and notes its next timeout.
    fn pump(&mut self, now: Instant) {
        let (mut keys, mut failure) = (None, None);
        while let Some(e) = self.transport.poll_event() {
            match e {
                TransportEvent::Keys(k) => keys = Some(k),
                TransportEvent::Failed(f) => failure = Some(f),
            }
        }
        if let Some(r) = self.transport.media_remote() {
            if self.remote != Some(r) {
                self.remote = Some(r);
                for m in &mut self.members {
                    m.core.set_remote(r, r);
                }
            }
        }
        self.transport_timeout = self.transport.poll_timeout();
        if let Some(k) = keys {
            let keyed = match self.srtp.as_mut() {
                Some(s) => s.rekey(&k, now).map(|_| ()),
                None => SrtpSession::new(&k).map(|s| self.srtp = Some(s)),
            };
            match keyed {
                Ok(()) => {
                    for (i, m) in self.members.iter().enumerate() {
                        if m.route.video {
                            self.events.push_back((
                                i,
                                StreamEvent::KeyframeRequested(KeyframeRequest::Pli),
                            ));
                        }
                    }
                }
                Err(_) => {
                    failure
                        .get_or_insert(super::TransportFailure::Dtls(super::DtlsError::Incomplete));
                }
            }
        }
        if let Some(f) = failure {
            // Every member is over: nothing is sent or taken any more.
            self.failed = true;
            self.closed = true;
            self.transport_timeout = None;
            for (i, m) in self.members.iter_mut().enumerate() {
                m.core.close(now);
                while let Some(t) = m.core.poll_transmit() {
                    self.stats.unkeyed_dropped += 1;
                    m.core.recycle(t.contents);
                }
                self.events
                    .push_back((i, StreamEvent::TransportFailed(f.clone())));
            }
        }
    }

    fn bind(&mut self, ssrc: u32, member: usize) {
        if let Some(b) = self.bound.iter_mut().find(|(s, _)| *s == ssrc) {
            b.1 = member;
            return;
        }
        if self.bound.len() == MAX_BOUND_SSRCS {
            self.bound.remove(0);
        }
        self.bound.push((ssrc, member));
    }

    fn bound_member(&self, ssrc: u32) -> Option<usize> {
        self.bound.iter().find(|(s, _)| *s == ssrc).map(|(_, i)| *i)
    }

    /// The member an (authenticated, plain) RTP packet belongs to, by RFC 9143 §9.2's order.
    fn member_of_rtp(&mut self, packet: &[u8]) -> Option<usize> {
        let ssrc = u32::from_be_bytes(packet.get(8..12)?.try_into().ok()?);
        let pt = packet.get(1)? & 0x7f;
        let by_mid = hdrext::packet_block(packet).and_then(|(profile, block)| {
            self.members.iter().position(|m| {
                let (Some(id), Some(mid)) = (m.route.mid_ext, m.route.mid.as_deref()) else {
                    return false;
                };
                hdrext::find(profile, block, id) == Some(mid.as_bytes())
            })
        });
        if let Some(i) = by_mid {
            self.stats.routed_by_mid += 1;
            self.bind(ssrc, i);
            return Some(i);
        }
        if let Some(i) = self.bound_member(ssrc) {
            self.stats.routed_by_ssrc += 1;
            return Some(i);
        }
        let i = self
            .members
            .iter()
            .position(|m| m.route.payload_types.contains(&pt))?;
        self.stats.routed_by_pt += 1;
        self.bind(ssrc, i);
        Some(i)
    }

    fn route_rtp(&mut self, now: Instant, from: SocketAddr, packet: &[u8]) {
        match self.member_of_rtp(packet) {
            Some(i) => self.members[i].core.handle_rtp(now, from, packet),
            None => self.stats.unknown_ssrc += 1,
        }
    }

    fn route_rtcp(&mut self, now: Instant, from: SocketAddr, compound: &[u8]) {
        let mut events = std::mem::take(&mut self.rtcp_events);
        events.clear();
        if parse_compound_into(compound, &mut events).is_err() {
            self.stats.malformed += 1;
            self.rtcp_events = events;
            return;
        }
        // Which members the compound names: bit i for member i (at most 64 are told apart;
        // more would all get everything).
        let mut named: u64 = 0;
        let mut all = false;
        let mut bye = false;
        let ours = |ssrc: u32| {
            self.members
                .iter()
                .position(|m| m.core.ssrc() == ssrc || m.core.rtx_ssrc() == Some(ssrc))
        };
        let theirs = |ssrc: u32| self.bound_member(ssrc);
        let mut mark = |i: Option<usize>| {
            if let Some(i) = i.filter(|i| *i < 64) {
                named |= 1 << i;
            }
        };
        for ev in &events {
            match ev {
                RtcpEvent::SenderReport { ssrc, reports, .. } => {
                    mark(theirs(*ssrc));
                    reports.iter().for_each(|r| mark(ours(r.ssrc)));
                }
                RtcpEvent::ReceiverReport { reports, .. } => {
                    reports.iter().for_each(|r| mark(ours(r.ssrc)));
                }
                RtcpEvent::Bye { ssrcs, .. } => {
                    bye = true;
                    ssrcs.iter().for_each(|s| mark(theirs(*s)))
                }
                RtcpEvent::Pli { media_ssrc, .. } | RtcpEvent::Nack { media_ssrc, .. } => {
                    mark(ours(*media_ssrc))
                }
                RtcpEvent::Fir { requests, .. } => requests.iter().for_each(|r| mark(ours(r.ssrc))),
                RtcpEvent::Remb(r) => r.ssrcs.iter().for_each(|s| mark(ours(*s))),
                RtcpEvent::TransportCc(_) | RtcpEvent::Ccfb(_) => all = true,
                RtcpEvent::Sdes { .. } | RtcpEvent::Other { .. } => {}
            }
        }
        self.rtcp_events = events;
        if named == 0 && bye && !all {
            // A BYE of sources no member knows (a stream of the peer that never sent, or one
            // being removed): it must not end the streams that did.
            self.stats.rtcp_unrouted += 1;
            return;
        }
        for (i, m) in self.members.iter_mut().enumerate() {
            if all || named == 0 || i >= 64 || named & (1 << i) != 0 {
                m.core.handle_rtcp(now, from, compound);
            }
        }
    }
}

/// Adds a one-byte-form header extension element (`id` 1–14, 1–16 bytes) to an RTP packet we
/// built: a new block when it has none, else appended to its one-byte block (kept padded to
/// 32-bit words). Returns false, leaving the packet as it was, when it cannot (a two-byte
/// block, a packet shorter than its header or block, an element that does not fit).
pub fn add_one_byte_element(packet: &mut Vec<u8>, id: u8, data: &[u8]) -> bool {
    if !(1..=14).contains(&id) || data.is_empty() || data.len() > 16 {
        return false;
    }
    let Some(&first) = packet.first() else {
        return false;
    };
    let at = 12 + 4 * usize::from(first & 0x0f);
    if packet.len() < at {
        return false;
    }
    let (used, old_end) = if first & 0x10 == 0 {
        (Vec::new(), at)
    } else {
        let Some(head) = packet.get(at..at + 4) else {
            return false;
        };
        if u16::from_be_bytes([head[0], head[1]]) != ONE_BYTE_PROFILE {
            return false;
        }
        let end = at + 4 + 4 * usize::from(u16::from_be_bytes([head[2], head[3]]));
        let Some(block) = packet.get(at + 4..end) else {
            return false;
        };
        // The elements' extent: the walk stops at ID 15 or the end; padding is not kept.
        let mut i = 0;
        let mut last = 0;
        while i < block.len() {
            let b = block[i];
            if b == 0 {
                i += 1;
                continue;
            }
            if b >> 4 == 15 {
                break;
            }
            i += 2 + usize::from(b & 0x0f);
            if i > block.len() {
                return false;
            }
            last = i;
        }
        (block[..last].to_vec(), end)
    };
    let mut body = used;
    body.push((id << 4) | (data.len() as u8 - 1));
    body.extend_from_slice(data);
    let words = body.len().div_ceil(4);
    body.resize(words * 4, 0);
    let mut block = Vec::with_capacity(4 + body.len());
    block.extend_from_slice(&ONE_BYTE_PROFILE.to_be_bytes());
    block.extend_from_slice(&(words as u16).to_be_bytes());
    block.extend_from_slice(&body);
    packet.splice(at..old_end, block);
    packet[0] |= 0x10;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(x: bool, block: &[u8]) -> Vec<u8> {
        let mut p = vec![
            0x80 | if x { 0x10 } else { 0 },
            96,
            0,
            1,
            0,
            0,
            0,
            2,
            0,
            0,
            0,
            3,
        ];
        p.extend_from_slice(block);
        p.extend_from_slice(b"payload");
        p
    }

    #[test]
    fn mid_element_is_added_to_a_new_or_an_existing_block() {
        let mut p = rtp(false, &[]);
        assert!(add_one_byte_element(&mut p, 4, b"1"));
        let (profile, block) = hdrext::packet_block(&p).unwrap();
        assert_eq!(hdrext::find(profile, block, 4), Some(&b"1"[..]));
        assert!(p.ends_with(b"payload"));

        // Beside a transport-wide sequence number (ID 3, two bytes ending in 0).
        let mut p = rtp(true, &[0xBE, 0xDE, 0, 1, 0x31, 0x01, 0x00, 0]);
        assert!(add_one_byte_element(&mut p, 4, b"video"));
        let (profile, block) = hdrext::packet_block(&p).unwrap();
        assert_eq!(hdrext::find(profile, block, 3), Some(&[0x01, 0x00][..]));
        assert_eq!(hdrext::find(profile, block, 4), Some(&b"video"[..]));
        assert!(p.ends_with(b"payload"));

        // What cannot carry it is left alone.
        for (mut p, id, data) in [
            (rtp(true, &[0x10, 0x00, 0, 1, 1, 2, 0, 0]), 4, &b"1"[..]),
            (rtp(false, &[]), 15, b"1"),
            (rtp(false, &[]), 4, b""),
            (rtp(false, &[]), 4, &[7u8; 17][..]),
            (rtp(true, &[0xBE, 0xDE, 0, 9]), 4, b"1"),
            (vec![0x8f, 96, 0], 4, b"1"),
        ] {
            let before = p.clone();
            assert!(!add_one_byte_element(&mut p, id, data));
            assert_eq!(p, before);
        }
    }
}
