//! A TURN client over UDP (RFC 8656), sans-IO: it allocates a relayed address on a TURN server
//! with long-term credentials, installs permissions for peers, wraps what we send to a peer in
//! Send indications and unwraps the server's Data indications. Nothing here reads a clock or
//! touches a socket: the caller sends [`TurnClient::poll_transmit`]'s datagrams to the server,
//! feeds every datagram from the server to [`TurnClient::handle_input`] and calls
//! [`TurnClient::handle_timeout`] when [`TurnClient::poll_timeout`] says.
//!
//! Authentication (RFC 8489 §9.2): the first Allocate goes without credentials; the server's 401
//! names a realm and a nonce, and every later request carries USERNAME, REALM, NONCE and a
//! MESSAGE-INTEGRITY keyed with MD5(username ":" realm ":" password). A 401 to an authenticated
//! request means the credentials are wrong ([`TurnError::Unauthorized`]); a 438 (stale nonce)
//! gives a new nonce and the request is sent again (twice at most). Success responses to an
//! authenticated request must carry a valid MESSAGE-INTEGRITY, else they are dropped and counted.
//!
//! Lifetimes: the allocation is refreshed a minute before it ends (half-way when it is shorter
//! than two minutes), each permission every 4 minutes (they last 5, RFC 8656 §9). Requests are
//! retransmitted from [`INITIAL_RTO`], doubling up to [`MAX_RTO`], [`MAX_SENDS`] times in all.
//!
//! Channels (ChannelBind, ChannelData) are not used: everything goes in indications, so the RFC
//! 7983 range 64–79 never arrives and is counted as unexpected if it does. Usernames and
//! passwords are used as given (no SASLprep / OpaqueString): keep them ASCII.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use sha1::Sha1;

use super::stun::read_address;

/// The first retransmission interval of a request (RFC 8489 §6.2.1's default RTO).
pub const INITIAL_RTO: Duration = Duration::from_millis(500);
/// The retransmission interval stops doubling here.
pub const MAX_RTO: Duration = Duration::from_secs(8);
/// How many times a request is sent before it fails with [`TurnError::Timeout`] (about 31 s).
pub const MAX_SENDS: u32 = 7;
/// What a permission lasts on the server (RFC 8656 §9); ours are refreshed a minute earlier.
pub const PERMISSION_LIFETIME: Duration = Duration::from_secs(300);
const PERMISSION_REFRESH: Duration = Duration::from_secs(PERMISSION_LIFETIME.as_secs() - 60);
/// How many 438 (stale nonce) answers one request may get before it fails.
const MAX_STALE_RETRIES: u8 = 2;

const MAGIC_COOKIE: u32 = 0x2112_A442;
const HEADER_LEN: usize = 20;
const MI_LEN: usize = 20;

// Methods (RFC 8489 §18.2, RFC 8656 §17).
const ALLOCATE: u16 = 0x003;
const REFRESH: u16 = 0x004;
const SEND: u16 = 0x006;
const DATA: u16 = 0x007;
const CREATE_PERMISSION: u16 = 0x008;

// Attributes (RFC 8489 §18.3, RFC 8656 §18).
const ATTR_USERNAME: u16 = 0x0006;
const ATTR_MESSAGE_INTEGRITY: u16 = 0x0008;
const ATTR_ERROR_CODE: u16 = 0x0009;
const ATTR_LIFETIME: u16 = 0x000D;
const ATTR_XOR_PEER_ADDRESS: u16 = 0x0012;
const ATTR_DATA: u16 = 0x0013;
const ATTR_REALM: u16 = 0x0014;
const ATTR_NONCE: u16 = 0x0015;
const ATTR_XOR_RELAYED_ADDRESS: u16 = 0x0016;
const ATTR_REQUESTED_TRANSPORT: u16 = 0x0019;
const ATTR_XOR_MAPPED_ADDRESS: u16 = 0x0020;
const ATTR_FINGERPRINT: u16 = 0x8028;

/// The STUN message classes (RFC 8489 §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Request,
    Indication,
    Success,
    Error,
}

/// What a client is configured with.
#[derive(Clone, Debug)]
pub struct TurnConfig {
    /// The TURN server (UDP).
    pub server: SocketAddr,
    pub username: String,
    pub password: String,
    /// The allocation lifetime asked for (the server may grant less; RFC 8656 default 600 s).
    pub lifetime: Duration,
}

impl TurnConfig {
    /// A configuration asking for the default 10-minute lifetime.
    pub fn new(server: SocketAddr, username: &str, password: &str) -> Self {
        TurnConfig {
            server,
            username: username.to_owned(),
            password: password.to_owned(),
            lifetime: Duration::from_secs(600),
        }
    }
}

/// Why an allocation or a permission failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TurnError {
    /// 401 to a request that carried our credentials: wrong username or password.
    Unauthorized,
    /// Any other error response (code and reason phrase as the server sent them).
    Refused { code: u16, reason: String },
    /// No answer after [`MAX_SENDS`] sends.
    Timeout,
    /// A response that lacks what it must carry (a 401 without realm or nonce, an Allocate
    /// success without XOR-RELAYED-ADDRESS).
    BadResponse(&'static str),
    /// [`TurnClient::wrap_send`] before the allocation, or to a peer without a permission.
    NotAllowed,
}

impl std::fmt::Display for TurnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TurnError::Unauthorized => write!(f, "TURN server refused our credentials (401)"),
            TurnError::Refused { code, reason } => write!(f, "TURN error {code} {reason}"),
            TurnError::Timeout => write!(f, "TURN server did not answer"),
            TurnError::BadResponse(what) => write!(f, "bad TURN response: {what}"),
            TurnError::NotAllowed => write!(f, "no allocation or no permission for that peer"),
        }
    }
}

impl std::error::Error for TurnError {}

/// What happened, drained with [`TurnClient::poll_event`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TurnEvent {
    /// The allocation exists: `relayed` is the relayed transport address (the candidate),
    /// `mapped` our address as the server saw it (a server-reflexive candidate for free).
    Allocated {
        relayed: SocketAddr,
        mapped: Option<SocketAddr>,
        lifetime: Duration,
    },
    /// The server installed (or refreshed) a permission for this peer address.
    PermissionCreated(IpAddr),
    /// A CreatePermission failed; data from and to that peer stays blocked.
    PermissionFailed { peer: IpAddr, error: TurnError },
    /// The allocation failed or was lost (also when a refresh fails): the client is done.
    Failed(TurnError),
}

/// Where the client is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TurnState {
    Allocating,
    Allocated,
    Failed,
    /// [`TurnClient::close`] was called.
    Closed,
}

/// Datagrams dropped and requests retried, by cause.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TurnCounters {
    /// Not a well-formed STUN message (and not ours to take otherwise).
    pub malformed: u64,
    /// Came from another address than the server.
    pub not_from_server: u64,
    /// A response to no request of ours (unknown transaction, wrong method), or a message we
    /// never expect (requests, ChannelData, other indications).
    pub unmatched: u64,
    /// A response whose MESSAGE-INTEGRITY is missing or wrong.
    pub integrity_failures: u64,
    /// A Data indication from a peer without a permission.
    pub no_permission: u64,
    /// Requests sent again (no answer in time).
    pub retransmits: u64,
    /// 438 answers (a fresh nonce taken, the request sent again).
    pub stale_nonces: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Allocate,
    Refresh(u32),
    Permission(IpAddr),
}

impl Kind {
    fn method(self) -> u16 {
        match self {
            Kind::Allocate => ALLOCATE,
            Kind::Refresh(_) => REFRESH,
            Kind::Permission(_) => CREATE_PERMISSION,
        }
    }
}

#[derive(Clone)]
struct Pending {
    id: [u8; 12],
    kind: Kind,
    bytes: Vec<u8>,
    sends: u32,
    rto: Duration,
    next: Instant,
    authenticated: bool,
    stale_retries: u8,
}

#[derive(Clone)]
struct Auth {
    realm: String,
    nonce: String,
    key: [u8; 16],
}

#[derive(Clone)]
struct Permission {
    peer: IpAddr,
    installed: bool,
    refresh_at: Option<Instant>,
}

/// The client of one allocation on one TURN server. A clone carries the allocation on (the
/// media transport takes over the one the engine allocated before writing the SDP).
#[derive(Clone)]
pub struct TurnClient {
    config: TurnConfig,
    state: TurnState,
    auth: Option<Auth>,
    pending: Vec<Pending>,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<TurnEvent>,
    relayed: Option<SocketAddr>,
    refresh_at: Option<Instant>,
    permissions: Vec<Permission>,
    counters: TurnCounters,
}

impl std::fmt::Debug for TurnClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key or the password.
        f.debug_struct("TurnClient")
            .field("server", &self.config.server)
            .field("state", &self.state)
            .field("relayed", &self.relayed)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

/// The long-term credential key (RFC 8489 §9.2.2): MD5 of `username:realm:password`.
pub fn long_term_key(username: &str, realm: &str, password: &str) -> [u8; 16] {
    let mut h = Md5::new();
    h.update(username.as_bytes());
    h.update(b":");
    h.update(realm.as_bytes());
    h.update(b":");
    h.update(password.as_bytes());
    h.finalize().into()
}

impl TurnClient {
    /// A client that starts allocating at once (its first Allocate is in `poll_transmit`).
    pub fn new(config: TurnConfig, now: Instant) -> Self {
        let mut c = TurnClient {
            config,
            state: TurnState::Allocating,
            auth: None,
            pending: Vec::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            relayed: None,
            refresh_at: None,
            permissions: Vec::new(),
            counters: TurnCounters::default(),
        };
        c.start(Kind::Allocate, 0, now);
        c
    }

    pub fn state(&self) -> TurnState {
        self.state
    }

    /// The TURN server's address (where every transmit goes).
    pub fn server(&self) -> SocketAddr {
        self.config.server
    }

    /// The relayed address, once allocated.
    pub fn relayed(&self) -> Option<SocketAddr> {
        self.relayed
    }

    pub fn counters(&self) -> TurnCounters {
        self.counters
    }

    /// Whether the server has confirmed a permission for this peer address.
    pub fn has_permission(&self, peer: IpAddr) -> bool {
        self.permissions
            .iter()
            .any(|p| p.peer == peer && p.installed)
    }

    /// Asks the server for a permission for `peer` (kept refreshed from then on). Asking again
    /// for a peer we already have does nothing. Before the allocation exists the request waits.
    pub fn create_permission(&mut self, peer: IpAddr, now: Instant) {
        if self.permissions.iter().any(|p| p.peer == peer) {
            return;
        }
        self.permissions.push(Permission {
            peer,
            installed: false,
            refresh_at: None,
        });
        if self.state == TurnState::Allocated {
            self.start(Kind::Permission(peer), 0, now);
        }
    }

    /// Wraps a datagram for `peer` in a Send indication, to be sent to the server. Refused
    /// before the allocation and for a peer without a confirmed permission (the server would
    /// drop it silently).
    pub fn wrap_send(&self, peer: SocketAddr, data: &[u8]) -> Result<Vec<u8>, TurnError> {
        if self.state != TurnState::Allocated || !self.has_permission(peer.ip()) {
            return Err(TurnError::NotAllowed);
        }
        let id: [u8; 12] = rand::random();
        let attrs = [
            (ATTR_XOR_PEER_ADDRESS, xor_address(peer, &id)),
            (ATTR_DATA, data.to_vec()),
        ];
        Ok(encode(Class::Indication, SEND, &id, &attrs, None))
    }

    /// Ends the allocation (a Refresh with lifetime 0, sent once more if lost). Data stops at
    /// once; the client reports nothing more.
    pub fn close(&mut self, now: Instant) {
        // Whatever is in flight is forgotten: a late answer matches nothing.
        self.pending.clear();
        if self.state == TurnState::Allocated {
            self.start(Kind::Refresh(0), 0, now);
        }
        self.state = TurnState::Closed;
        self.refresh_at = None;
    }

    /// The next datagram for the server.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<TurnEvent> {
        self.events.pop_front()
    }

    /// When [`TurnClient::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let retransmit = self.pending.iter().map(|p| p.next).min();
        let perms = self.permissions.iter().filter_map(|p| p.refresh_at).min();
        [retransmit, self.refresh_at, perms]
            .into_iter()
            .flatten()
            .min()
    }

    /// Retransmits what is due, fails what has run out of sends, refreshes what is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut expired = Vec::new();
        for p in self.pending.iter_mut().filter(|p| p.next <= now) {
            if p.sends >= MAX_SENDS {
                expired.push(p.id);
                continue;
            }
            p.sends += 1;
            p.rto = (p.rto * 2).min(MAX_RTO);
            p.next = now + p.rto;
            self.counters.retransmits += 1;
            self.transmits.push_back(p.bytes.clone());
        }
        for id in expired {
            if let Some(i) = self.pending.iter().position(|p| p.id == id) {
                let p = self.pending.remove(i);
                self.fail(p.kind, TurnError::Timeout);
            }
        }
        if self.state != TurnState::Allocated {
            return;
        }
        if self.refresh_at.is_some_and(|t| t <= now) {
            self.refresh_at = None;
            let secs = self.config.lifetime.as_secs().min(u32::MAX as u64) as u32;
            self.start(Kind::Refresh(secs), 0, now);
        }
        let due: Vec<IpAddr> = self
            .permissions
            .iter_mut()
            .filter(|p| p.refresh_at.is_some_and(|t| t <= now))
            .map(|p| {
                p.refresh_at = None;
                p.peer
            })
            .collect();
        for peer in due {
            self.start(Kind::Permission(peer), 0, now);
        }
    }

    /// A datagram that arrived from `from` on the socket the client uses. Returns the payload
    /// of a Data indication (and the peer it came from through the relay); everything else is
    /// the client's own business. Bad or unexpected input is counted and dropped.
    pub fn handle_input<'a>(
        &mut self,
        now: Instant,
        from: SocketAddr,
        data: &'a [u8],
    ) -> Option<(SocketAddr, &'a [u8])> {
        if from != self.config.server {
            self.counters.not_from_server += 1;
            return None;
        }
        let Some(msg) = Message::parse(data) else {
            if matches!(data.first(), Some(64..=79)) {
                // ChannelData: we never bind channels.
                self.counters.unmatched += 1;
            } else {
                self.counters.malformed += 1;
            }
            return None;
        };
        match msg.class {
            Class::Indication if msg.method == DATA => self.on_data(&msg),
            Class::Success | Class::Error => {
                self.on_response(&msg, data, now);
                None
            }
            _ => {
                self.counters.unmatched += 1;
                None
            }
        }
    }

    fn on_data<'a>(&mut self, msg: &Message<'a>) -> Option<(SocketAddr, &'a [u8])> {
        if self.state != TurnState::Allocated {
            self.counters.unmatched += 1;
            return None;
        }
        let (Some(peer), Some(payload)) = (
            msg.attr(ATTR_XOR_PEER_ADDRESS)
                .and_then(|v| read_address(v, Some(&msg.id))),
            msg.attr(ATTR_DATA),
        ) else {
            self.counters.malformed += 1;
            return None;
        };
        if !self.has_permission(peer.ip()) {
            self.counters.no_permission += 1;
            return None;
        }
        Some((peer, payload))
    }

    fn on_response(&mut self, msg: &Message<'_>, data: &[u8], now: Instant) {
        let Some(i) = self
            .pending
            .iter()
            .position(|p| p.id == msg.id && p.kind.method() == msg.method)
        else {
            self.counters.unmatched += 1;
            return;
        };
        let authenticated = self.pending[i].authenticated;
        if msg.class == Class::Success && authenticated {
            let key = self.auth.as_ref().map(|a| a.key);
            if !key.is_some_and(|k| msg.integrity_ok(data, &k)) {
                self.counters.integrity_failures += 1;
                return;
            }
        }
        let p = self.pending.remove(i);
        if msg.class == Class::Error {
            self.on_error(p, msg, now);
            return;
        }
        match p.kind {
            Kind::Allocate => self.on_allocated(msg, now),
            Kind::Refresh(0) => {}
            Kind::Refresh(_) => {
                let lifetime = msg.lifetime().unwrap_or(self.config.lifetime);
                self.schedule_refresh(lifetime, now);
            }
            Kind::Permission(peer) => {
                if let Some(perm) = self.permissions.iter_mut().find(|x| x.peer == peer) {
                    perm.installed = true;
                    perm.refresh_at = Some(now + PERMISSION_REFRESH);
                }
                self.events.push_back(TurnEvent::PermissionCreated(peer));
            }
        }
    }

    fn on_allocated(&mut self, msg: &Message<'_>, now: Instant) {
        let Some(relayed) = msg
            .attr(ATTR_XOR_RELAYED_ADDRESS)
            .and_then(|v| read_address(v, Some(&msg.id)))
        else {
            self.fail(
                Kind::Allocate,
                TurnError::BadResponse("no XOR-RELAYED-ADDRESS"),
            );
            return;
        };
        let mapped = msg
            .attr(ATTR_XOR_MAPPED_ADDRESS)
            .and_then(|v| read_address(v, Some(&msg.id)));
        let lifetime = msg.lifetime().unwrap_or(self.config.lifetime);
        self.state = TurnState::Allocated;
        self.relayed = Some(relayed);
        self.schedule_refresh(lifetime, now);
        self.events.push_back(TurnEvent::Allocated {
            relayed,
            mapped,
            lifetime,
        });
        // Permissions asked for while allocating.
        let waiting: Vec<IpAddr> = self.permissions.iter().map(|p| p.peer).collect();
        for peer in waiting {
            self.start(Kind::Permission(peer), 0, now);
        }
    }

    fn on_error(&mut self, p: Pending, msg: &Message<'_>, now: Instant) {
        let (code, reason) = msg.error_code().unwrap_or((0, String::new()));
        match code {
            401 if !p.authenticated => {
                let (Some(realm), Some(nonce)) = (msg.text(ATTR_REALM), msg.text(ATTR_NONCE))
                else {
                    self.fail(p.kind, TurnError::BadResponse("401 without REALM or NONCE"));
                    return;
                };
                let key = long_term_key(&self.config.username, &realm, &self.config.password);
                self.auth = Some(Auth { realm, nonce, key });
                self.start(p.kind, p.stale_retries, now);
            }
            401 => self.fail(p.kind, TurnError::Unauthorized),
            438 if p.stale_retries < MAX_STALE_RETRIES => {
                let Some(nonce) = msg.text(ATTR_NONCE) else {
                    self.fail(p.kind, TurnError::BadResponse("438 without NONCE"));
                    return;
                };
                self.counters.stale_nonces += 1;
                match self.auth.as_mut() {
                    Some(a) => a.nonce = nonce,
                    None => {
                        self.fail(p.kind, TurnError::BadResponse("438 before any 401"));
                        return;
                    }
                }
                self.start(p.kind, p.stale_retries + 1, now);
            }
            _ => self.fail(p.kind, TurnError::Refused { code, reason }),
        }
    }

    fn fail(&mut self, kind: Kind, error: TurnError) {
        match kind {
            Kind::Permission(peer) => {
                self.permissions.retain(|p| p.peer != peer);
                if self.state == TurnState::Allocated {
                    self.events
                        .push_back(TurnEvent::PermissionFailed { peer, error });
                }
            }
            Kind::Refresh(0) => {}
            Kind::Allocate | Kind::Refresh(_) => {
                if matches!(self.state, TurnState::Allocating | TurnState::Allocated) {
                    self.state = TurnState::Failed;
                    self.relayed = None;
                    self.refresh_at = None;
                    self.pending.clear();
                    self.permissions.clear();
                    self.events.push_back(TurnEvent::Failed(error));
                }
            }
        }
    }

    fn schedule_refresh(&mut self, lifetime: Duration, now: Instant) {
        let before = if lifetime > Duration::from_secs(120) {
            lifetime - Duration::from_secs(60)
        } else {
            lifetime / 2
        };
        self.refresh_at = Some(now + before);
    }

    /// Sends a new transaction of `kind` (with our credentials once we have a realm and nonce).
    fn start(&mut self, kind: Kind, stale_retries: u8, now: Instant) {
        let id: [u8; 12] = rand::random();
        let mut attrs: Vec<(u16, Vec<u8>)> = Vec::new();
        match kind {
            Kind::Allocate => {
                // UDP (protocol 17) in the first byte, three reserved bytes.
                attrs.push((ATTR_REQUESTED_TRANSPORT, vec![17, 0, 0, 0]));
                let secs = self.config.lifetime.as_secs().min(u32::MAX as u64) as u32;
                attrs.push((ATTR_LIFETIME, secs.to_be_bytes().to_vec()));
            }
            Kind::Refresh(secs) => attrs.push((ATTR_LIFETIME, secs.to_be_bytes().to_vec())),
            Kind::Permission(peer) => attrs.push((
                ATTR_XOR_PEER_ADDRESS,
                xor_address(SocketAddr::new(peer, 0), &id),
            )),
        }
        let key = self.auth.as_ref().map(|a| {
            attrs.push((ATTR_USERNAME, self.config.username.as_bytes().to_vec()));
            attrs.push((ATTR_REALM, a.realm.as_bytes().to_vec()));
            attrs.push((ATTR_NONCE, a.nonce.as_bytes().to_vec()));
            a.key
        });
        let bytes = encode(Class::Request, kind.method(), &id, &attrs, key.as_ref());
        self.transmits.push_back(bytes.clone());
        self.pending.push(Pending {
            id,
            kind,
            bytes,
            sends: 1,
            rto: INITIAL_RTO,
            next: now + INITIAL_RTO,
            authenticated: key.is_some(),
            stale_retries,
        });
    }
}

/// A parsed STUN message: its header fields and attributes (up to MESSAGE-INTEGRITY, which
/// closes what it protects; only FINGERPRINT may follow it).
struct Message<'a> {
    class: Class,
    method: u16,
    id: [u8; 12],
    attrs: Vec<(u16, &'a [u8])>,
    /// Where the MESSAGE-INTEGRITY attribute's header starts.
    integrity_at: Option<usize>,
}

impl<'a> Message<'a> {
    fn parse(data: &'a [u8]) -> Option<Message<'a>> {
        if data.len() < HEADER_LEN || data[0] & 0xC0 != 0 {
            return None;
        }
        let typ = u16::from_be_bytes([data[0], data[1]]);
        let len = u16::from_be_bytes([data[2], data[3]]) as usize;
        let cookie = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
        if cookie != MAGIC_COOKIE || !len.is_multiple_of(4) || HEADER_LEN + len != data.len() {
            return None;
        }
        let class = match (typ >> 7 & 0x2) | (typ >> 4 & 0x1) {
            0 => Class::Request,
            1 => Class::Indication,
            2 => Class::Success,
            _ => Class::Error,
        };
        let method = (typ & 0x000F) | (typ >> 1 & 0x0070) | (typ >> 2 & 0x0F80);
        let mut id = [0u8; 12];
        id.copy_from_slice(&data[8..20]);
        let mut attrs = Vec::new();
        let mut integrity_at = None;
        let mut at = HEADER_LEN;
        while at < data.len() {
            let head = data.get(at..at + 4)?;
            let t = u16::from_be_bytes([head[0], head[1]]);
            let l = u16::from_be_bytes([head[2], head[3]]) as usize;
            let value = data.get(at + 4..at + 4 + l)?;
            let padded = 4 + l.div_ceil(4) * 4;
            if at + padded > data.len() {
                return None;
            }
            if integrity_at.is_some() {
                // After MESSAGE-INTEGRITY only FINGERPRINT may come; anything else is ignored.
                if t != ATTR_FINGERPRINT {
                    return None;
                }
            } else if t == ATTR_MESSAGE_INTEGRITY {
                if l != MI_LEN {
                    return None;
                }
                integrity_at = Some(at);
            } else {
                attrs.push((t, value));
            }
            at += padded;
        }
        Some(Message {
            class,
            method,
            id,
            attrs,
            integrity_at,
        })
    }

    fn attr(&self, t: u16) -> Option<&'a [u8]> {
        self.attrs.iter().find(|(k, _)| *k == t).map(|(_, v)| *v)
    }

    fn text(&self, t: u16) -> Option<String> {
        self.attr(t)
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::to_owned)
    }

    fn lifetime(&self) -> Option<Duration> {
        let v: [u8; 4] = self.attr(ATTR_LIFETIME)?.try_into().ok()?;
        Some(Duration::from_secs(u32::from_be_bytes(v) as u64))
    }

    fn error_code(&self) -> Option<(u16, String)> {
        let v = self.attr(ATTR_ERROR_CODE)?;
        if v.len() < 4 {
            return None;
        }
        let code = (v[2] & 0x07) as u16 * 100 + v[3] as u16;
        Some((code, String::from_utf8_lossy(&v[4..]).into_owned()))
    }

    /// RFC 8489 §14.5: HMAC-SHA1 over the message up to MESSAGE-INTEGRITY, with the header's
    /// length counting up to the end of that attribute.
    fn integrity_ok(&self, data: &[u8], key: &[u8]) -> bool {
        let Some(at) = self.integrity_at else {
            return false;
        };
        let mut mac = hmac_sha1(key);
        let len = (at + 4 + MI_LEN - HEADER_LEN) as u16;
        mac.update(&data[..2]);
        mac.update(&len.to_be_bytes());
        mac.update(&data[4..at]);
        mac.verify_slice(&data[at + 4..at + 4 + MI_LEN]).is_ok()
    }
}

fn hmac_sha1(key: &[u8]) -> Hmac<Sha1> {
    // HMAC takes keys of any length.
    match Hmac::<Sha1>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts any key length"),
    }
}

/// Encodes a message; with a key, MESSAGE-INTEGRITY closes it.
fn encode(
    class: Class,
    method: u16,
    id: &[u8; 12],
    attrs: &[(u16, Vec<u8>)],
    key: Option<&[u8; 16]>,
) -> Vec<u8> {
    let class_bits: u16 = match class {
        Class::Request => 0x000,
        Class::Indication => 0x010,
        Class::Success => 0x100,
        Class::Error => 0x110,
    };
    let typ = (method & 0x000F) | ((method & 0x0070) << 1) | ((method & 0x0F80) << 2) | class_bits;
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(&typ.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
    out.extend_from_slice(id);
    for (t, v) in attrs {
        out.extend_from_slice(&t.to_be_bytes());
        out.extend_from_slice(&(v.len() as u16).to_be_bytes());
        out.extend_from_slice(v);
        out.resize(out.len().div_ceil(4) * 4, 0);
    }
    if let Some(key) = key {
        let len = (out.len() + 4 + MI_LEN - HEADER_LEN) as u16;
        out[2..4].copy_from_slice(&len.to_be_bytes());
        let mut mac = hmac_sha1(key);
        mac.update(&out);
        let tag = mac.finalize().into_bytes();
        out.extend_from_slice(&ATTR_MESSAGE_INTEGRITY.to_be_bytes());
        out.extend_from_slice(&(MI_LEN as u16).to_be_bytes());
        out.extend_from_slice(&tag);
    }
    let len = (out.len() - HEADER_LEN) as u16;
    out[2..4].copy_from_slice(&len.to_be_bytes());
    out
}

/// An XOR-*-ADDRESS value (RFC 8489 §14.2); `stun::read_address` reads them.
fn xor_address(addr: SocketAddr, id: &[u8; 12]) -> Vec<u8> {
    let port = addr.port() ^ (MAGIC_COOKIE >> 16) as u16;
    let mut v = vec![0];
    match addr.ip() {
        IpAddr::V4(ip) => {
            v.push(0x01);
            v.extend_from_slice(&port.to_be_bytes());
            v.extend_from_slice(&(u32::from(ip) ^ MAGIC_COOKIE).to_be_bytes());
        }
        IpAddr::V6(ip) => {
            v.push(0x02);
            v.extend_from_slice(&port.to_be_bytes());
            let mask = xor_mask(id);
            v.extend(ip.octets().iter().zip(mask).map(|(a, b)| a ^ b));
        }
    }
    v
}

fn xor_mask(id: &[u8; 12]) -> [u8; 16] {
    let mut mask = [0u8; 16];
    mask[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    mask[4..].copy_from_slice(id);
    mask
}

#[cfg(test)]
mod tests;
