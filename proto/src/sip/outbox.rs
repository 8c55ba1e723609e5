//! What the SIP layers send, and to whom: the [`Outbox`] a sans-IO SIP core fills and the I/O
//! side empties after each input. Plain data, so the pure layers (`sip/`, the user agent core)
//! can name it without depending on the socket thread that sends it.

use std::net::SocketAddr;

/// The transport a SIP message travels on. Only UDP today; the variants to come (TCP, TLS) are
/// why messages name their transport at all. Exhaustive on purpose: a new transport must be
/// handled wherever a transport is matched (the engine is in another crate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SipTransportKind {
    /// One datagram per message.
    Udp,
}

impl SipTransportKind {
    /// The transport token of a Via header (`SIP/2.0/UDP`).
    pub fn via_token(self) -> &'static str {
        match self {
            SipTransportKind::Udp => "UDP",
        }
    }
}

/// The other end of a SIP message: its address and the transport it came or goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SipPeer {
    /// The address (for UDP, where the datagram came from or goes to).
    pub addr: SocketAddr,
    /// The transport.
    pub transport: SipTransportKind,
}

impl SipPeer {
    /// A UDP peer.
    pub fn udp(addr: SocketAddr) -> SipPeer {
        SipPeer {
            addr,
            transport: SipTransportKind::Udp,
        }
    }
}

/// Messages to send, each with its destination, in the order they were queued.
#[derive(Debug, Default)]
pub struct Outbox {
    items: Vec<(Vec<u8>, SipPeer)>,
}

impl Outbox {
    /// Queues `data` for `dest`.
    pub fn push(&mut self, data: Vec<u8>, dest: SipPeer) {
        self.items.push((data, dest));
    }

    /// Takes every queued message out, in order.
    pub fn drain(&mut self) -> std::vec::Drain<'_, (Vec<u8>, SipPeer)> {
        self.items.drain(..)
    }

    /// Number of datagrams queued.
    #[cfg(any(test, feature = "_internals"))]
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when nothing is queued.
    #[cfg(any(test, feature = "_internals"))]
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}
