//! What an engine stream drives: its own [`StreamCore`], or a [`Bundle`] whose members are the
//! streams of one session sharing one socket and one ICE/DTLS transport (RFC 9143). The I/O
//! side treats both alike; a `MediaStream` names its member (0 for a stream of its own).

use std::net::SocketAddr;
use std::time::Instant;

use crate::rtp::stream::{StreamCore, StreamEvent, Transmit};
use crate::rtp::StreamStats;
use crate::webrtc::{Bundle, Candidate};

pub(super) enum Driven {
    Core(Box<StreamCore>),
    Bundle(Box<Bundle>),
}

impl Driven {
    /// Member `member`'s core (the stream's own core: member 0).
    pub(super) fn core(&self, member: usize) -> &StreamCore {
        match self {
            Driven::Core(c) => c,
            Driven::Bundle(b) => b.core(member),
        }
    }

    pub(super) fn core_mut(&mut self, member: usize) -> &mut StreamCore {
        match self {
            Driven::Core(c) => c,
            Driven::Bundle(b) => b.core_mut(member),
        }
    }

    pub(super) fn poll_transmit(&mut self) -> Option<Transmit> {
        match self {
            Driven::Core(c) => c.poll_transmit(),
            Driven::Bundle(b) => b.poll_transmit(),
        }
    }

    /// The next event and the member it is about.
    pub(super) fn poll_event(&mut self) -> Option<(usize, StreamEvent)> {
        match self {
            Driven::Core(c) => c.poll_event().map(|e| (0, e)),
            Driven::Bundle(b) => b.poll_event(),
        }
    }

    pub(super) fn recycle(&mut self, buf: Vec<u8>) {
        match self {
            Driven::Core(c) => c.recycle(buf),
            Driven::Bundle(b) => b.recycle(buf),
        }
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Driven::Core(c) => c.poll_timeout(),
            Driven::Bundle(b) => b.poll_timeout(),
        }
    }

    pub(super) fn handle_timeout(&mut self, now: Instant) {
        match self {
            Driven::Core(c) => c.handle_timeout(now),
            Driven::Bundle(b) => b.handle_timeout(now),
        }
    }

    pub(super) fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        data: &[u8],
        rtcp_socket: bool,
    ) {
        match self {
            Driven::Core(c) => c.handle_datagram(now, from, data, rtcp_socket),
            // A bundle is always rtcp-mux: one socket.
            Driven::Bundle(b) => b.handle_datagram(now, from, data),
        }
    }

    /// Ends everything: each core's RTCP BYE, then DTLS's close_notify.
    pub(super) fn close(&mut self, now: Instant) {
        match self {
            Driven::Core(c) => c.close(now),
            Driven::Bundle(b) => b.close(now),
        }
    }

    /// Ends one member (a bundle goes on with the others).
    pub(super) fn close_member(&mut self, now: Instant, member: usize) {
        match self {
            Driven::Core(c) => c.close(now),
            Driven::Bundle(b) => b.close_member(now, member),
        }
    }

    /// Member `member`'s counters, with the transport's.
    pub(super) fn stats(&self, member: usize) -> StreamStats {
        match self {
            Driven::Core(c) => c.stats(),
            Driven::Bundle(b) => b.member_stats(member),
        }
    }

    pub(super) fn add_remote_candidate(&mut self, now: Instant, member: usize, c: Candidate) {
        match self {
            Driven::Core(core) => core.add_remote_candidate(now, c),
            Driven::Bundle(b) => {
                let _ = member;
                b.add_remote_candidate(now, c)
            }
        }
    }

    /// The SRTP suite protecting member `member`'s packets.
    pub(super) fn srtp_suite(&self, member: usize) -> Option<crate::rtp::srtp::SrtpSuite> {
        match self {
            Driven::Core(c) => c.srtp_suite(),
            Driven::Bundle(b) => {
                let _ = member;
                b.srtp_suite()
            }
        }
    }

    /// Whether this is a bundle (its SRTP keys come from its DTLS handshake only).
    pub(super) fn is_bundle(&self) -> bool {
        matches!(self, Driven::Bundle(_))
    }
}
