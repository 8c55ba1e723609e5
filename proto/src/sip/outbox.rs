//! What the SIP layers send, and to whom: the [`Outbox`] a sans-IO SIP core fills and the I/O
//! side empties after each input. Plain data, so the pure layers (`sip/`, the user agent core)
//! can name it without depending on the socket thread that sends it.

use std::net::SocketAddr;

/// The transport a SIP message travels on. Exhaustive on purpose: a new transport must be
/// handled wherever a transport is matched (the engine is in another crate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SipTransportKind {
    /// One datagram per message.
    Udp,
    /// A TCP connection; messages framed by Content-Length (`framing`).
    Tcp,
    /// TLS over TCP; framed as TCP.
    Tls,
}

impl SipTransportKind {
    /// The transport token of a Via header (`SIP/2.0/UDP`).
    pub fn via_token(self) -> &'static str {
        match self {
            SipTransportKind::Udp => "UDP",
            SipTransportKind::Tcp => "TCP",
            SipTransportKind::Tls => "TLS",
        }
    }

    /// The value of a URI's `transport` parameter (`udp`, `tcp`, `tls`).
    pub fn param(self) -> &'static str {
        match self {
            SipTransportKind::Udp => "udp",
            SipTransportKind::Tcp => "tcp",
            SipTransportKind::Tls => "tls",
        }
    }

    /// True on a connection (TCP, TLS): the transport delivers or fails, so transactions do
    /// not retransmit (RFC 3261 §17.1.1.2) and messages need a Content-Length.
    pub fn is_reliable(self) -> bool {
        !matches!(self, SipTransportKind::Udp)
    }

    /// The transport a URI asks for: TLS for `sips:` or `;transport=tls`, TCP for
    /// `;transport=tcp`, else `None` (the caller's default: UDP, or the connection a dialog
    /// already uses). `transport` is the URI's lowercased parameter.
    pub fn from_uri_parts(secure: bool, transport: Option<&str>) -> Option<SipTransportKind> {
        match transport {
            _ if secure => Some(SipTransportKind::Tls),
            Some("tls") => Some(SipTransportKind::Tls),
            Some("tcp") => Some(SipTransportKind::Tcp),
            Some("udp") => Some(SipTransportKind::Udp),
            _ => None,
        }
    }
}

/// One TCP or TLS connection of the engine, as the engine numbered it (never reused within a
/// backend). A message received on a connection carries its id, so the answer goes back on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// The other end of a SIP message: its address, the transport, and for TCP/TLS the connection.
///
/// What the I/O side does with a destination: UDP sends a datagram to `addr`. TCP/TLS sends on
/// connection `conn` while it is open; without one (or once it closed) on any open connection
/// of that transport to `addr` (a connection is reused both ways, as RFC 5923 aliases do), and
/// when there is none it opens a client connection to `addr` first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SipPeer {
    /// The address (for UDP, where the datagram came from or goes to).
    pub addr: SocketAddr,
    /// The transport.
    pub transport: SipTransportKind,
    /// The connection a message came on or should go on (TCP/TLS only).
    pub conn: Option<ConnId>,
}

impl SipPeer {
    /// A UDP peer.
    pub fn udp(addr: SocketAddr) -> SipPeer {
        SipPeer::new(addr, SipTransportKind::Udp)
    }

    /// A peer at `addr` over `transport`, on no connection in particular.
    pub fn new(addr: SocketAddr, transport: SipTransportKind) -> SipPeer {
        SipPeer {
            addr,
            transport,
            conn: None,
        }
    }

    /// A peer on connection `conn`.
    pub fn on_conn(addr: SocketAddr, transport: SipTransportKind, conn: ConnId) -> SipPeer {
        SipPeer {
            addr,
            transport,
            conn: Some(conn),
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

    /// The messages queued, in order, without taking them (a trace reads them).
    pub fn queued(&self) -> &[(Vec<u8>, SipPeer)] {
        &self.items
    }

    /// Takes every queued message out, in order.
    pub fn drain(&mut self) -> std::vec::Drain<'_, (Vec<u8>, SipPeer)> {
        self.items.drain(..)
    }

    /// Number of messages queued.
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
