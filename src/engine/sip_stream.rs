//! SIP over TCP and TLS, on the SIP thread itself: listeners and connections are non-blocking
//! sockets in the SIP thread's one `ppoll`, and TLS is rustls's sans-IO connection
//! (`read_tls` → `process_new_packets` → plaintext; plaintext → `write_tls`). So N connections
//! cost N descriptors and their buffers, never a thread; a peer that stalls, floods or never
//! finishes its handshake is cut without any other connection waiting on it.
//!
//! Each connection's bytes go through the pure [`StreamFramer`]; whole messages reach the
//! handler as if they were datagrams, with a [`SipPeer`] naming the connection so the answer
//! goes back on it. What the handler sends to a TCP/TLS peer goes on the connection it names,
//! else on an open connection to that address and transport (reused both ways), else on a new
//! client connection opened on demand.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, Connection, DigitallySignedStruct, RootCertStore};
use rustls::{ServerConfig, ServerConnection, SignatureScheme};

use crate::sip::framing::{Frame, FrameLimits, StreamFramer, PONG};
use crate::sip::keepalive::{self, KeepAlive, KeepAliveAction, PING};
use crate::sip::{ConnId, SipPeer, SipRng, SipTransportKind};

/// Timeouts and limits of stream connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    /// A connection with no traffic either way for this long is closed.
    pub idle: Duration,
    /// A TLS handshake (or a TCP connect) must finish within this.
    pub handshake: Duration,
    /// A message, once begun, must be complete within this (slow-loris peers).
    pub message: Duration,
    /// Most connections at once; more are refused (closed at once).
    pub max_connections: usize,
    /// Most bytes waiting to be written to one peer before it is cut as not reading.
    pub max_pending_write: usize,
    /// Header and body limits of the framer.
    pub frame: FrameLimits,
    /// RFC 5626 keep-alive ping interval on connections we open (jittered to 80–100 % of it
    /// per connection); zero: no pings.
    pub keepalive: Duration,
    /// A ping not answered within this closes the connection as dead.
    pub keepalive_pong: Duration,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            idle: Duration::from_secs(600),
            handshake: Duration::from_secs(10),
            message: Duration::from_secs(30),
            max_connections: 4096,
            max_pending_write: 4 * 1024 * 1024,
            frame: FrameLimits::default(),
            keepalive: keepalive::DEFAULT_INTERVAL,
            keepalive_pong: keepalive::DEFAULT_PONG_TIMEOUT,
        }
    }
}

/// Counters of the stream transports, shared with whoever reports them.
#[derive(Debug, Default)]
pub struct StreamCounters {
    /// Connections accepted or opened.
    pub opened: AtomicU64,
    /// Connections closed because they were idle.
    pub closed_idle: AtomicU64,
    /// Connections cut for breaking a limit: oversize headers or body, no Content-Length, a
    /// message not finished in time, a handshake not finished in time, too much unread output.
    pub cut: AtomicU64,
    /// TLS handshakes or records that failed (bad certificate, protocol error).
    pub tls_failed: AtomicU64,
    /// Connections refused over the connection limit, or that could not be opened.
    pub refused: AtomicU64,
    /// Messages to a stream peer that could not be sent (no connection could be had).
    pub send_failed: AtomicU64,
    /// Keep-alive pings sent on connections we opened.
    pub pings_sent: AtomicU64,
    /// Connections closed because a keep-alive ping went unanswered.
    pub keepalive_failed: AtomicU64,
    /// The protocol version and cipher suite of the last TLS handshake that finished (either
    /// side), as rustls names them (`TLSv1_3`, `TLS13_AES_256_GCM_SHA384`).
    pub last_tls: parking_lot::Mutex<Option<(&'static str, &'static str)>>,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// TLS for the SIP thread: a server side (certificate and key) and a client side (how peers
/// are verified). Built once, shared by every connection.
#[derive(Debug, Clone)]
pub struct TlsContext {
    server: Option<Arc<ServerConfig>>,
    verify: TlsVerify,
    /// Built on the first call out over TLS (reading the system roots takes a while).
    client: Option<Arc<ClientConfig>>,
}

/// How our TLS client checks the servers it calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsVerify {
    /// Against the operating system's root certificates.
    SystemRoots,
    /// Against the CA certificates of a PEM file.
    CaFile(std::path::PathBuf),
    /// **Unsafe: no verification at all** (any certificate, any name). For tests against
    /// self-signed peers only; it gives no protection against an active attacker.
    NoVerify,
}

/// ring's algorithms: the choice, as ring builds with a C compiler alone (no OpenSSL,
/// no CMake). rustls 0.23.48 deprecates this provider for its lack of post-quantum key
/// exchange; the classical suites it offers are those SIP peers speak today.
fn provider() -> Arc<CryptoProvider> {
    #[allow(deprecated)]
    Arc::new(ring::default_provider())
}

fn tls_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// A TLS server configuration (1.2 and 1.3, ring's algorithms) from the certificate chain and
/// key of two PEM files: SIP over TLS and the HTTPS of `engine/http.rs` load theirs here.
pub(crate) fn server_config(cert: &Path, key: &Path) -> io::Result<Arc<ServerConfig>> {
    let versions = [&rustls::version::TLS13, &rustls::version::TLS12];
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(tls_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(tls_err)?;
    if chain.is_empty() {
        return Err(tls_err(format!("{}: no certificate", cert.display())));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(tls_err)?;
    let cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&versions)
        .map_err(tls_err)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(tls_err)?;
    Ok(Arc::new(cfg))
}

impl TlsContext {
    /// A context that serves with the certificate chain and key of two PEM files (when given)
    /// and verifies servers as `verify` says. TLS 1.2 and 1.3, ring's algorithms. A CA file is
    /// read now, so that a wrong path fails here rather than at the first call.
    pub fn new(server_pem: Option<(&Path, &Path)>, verify: TlsVerify) -> io::Result<TlsContext> {
        let server = match server_pem {
            Some((cert, key)) => Some(server_config(cert, key)?),
            None => None,
        };
        let mut ctx = TlsContext {
            server,
            verify,
            client: None,
        };
        if matches!(ctx.verify, TlsVerify::CaFile(_)) {
            ctx.client()?;
        }
        Ok(ctx)
    }

    /// The client configuration, built on first use.
    fn client(&mut self) -> io::Result<Arc<ClientConfig>> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let versions = [&rustls::version::TLS13, &rustls::version::TLS12];
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&versions)
            .map_err(tls_err)?;
        let client = match &self.verify {
            TlsVerify::NoVerify => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
                .with_no_client_auth(),
            TlsVerify::CaFile(path) => {
                let mut roots = RootCertStore::empty();
                for c in CertificateDer::pem_file_iter(path).map_err(tls_err)? {
                    roots.add(c.map_err(tls_err)?).map_err(tls_err)?;
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            TlsVerify::SystemRoots => {
                let mut roots = RootCertStore::empty();
                roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
                builder.with_root_certificates(roots).with_no_client_auth()
            }
        };
        let client = Arc::new(client);
        self.client = Some(client.clone());
        Ok(client)
    }

    /// True when this context can serve (it has a certificate).
    pub fn can_serve(&self) -> bool {
        self.server.is_some()
    }
}

/// The verifier of [`TlsVerify::NoVerify`]: accepts any certificate for any name (handshake
/// signatures are still checked, so the peer holds the key of the certificate it sent).
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// One TCP or TLS connection.
struct Conn {
    sock: TcpStream,
    peer: SocketAddr,
    kind: SipTransportKind,
    tls: Option<Connection>,
    framer: StreamFramer,
    /// TCP: bytes not yet written. (TLS keeps its own, in `tls`.)
    pending: Vec<u8>,
    /// A client connection whose non-blocking connect has not completed.
    connecting: bool,
    opened: Instant,
    last_traffic: Instant,
    /// Client connections: the RFC 5626 ping schedule (`None`: keep-alives off).
    keepalive: Option<KeepAlive>,
    /// When the message now arriving began.
    message_since: Option<Instant>,
    /// Its TLS handshake's outcome went into the counters.
    tls_noted: bool,
}

impl Conn {
    fn handshaking(&self) -> bool {
        self.connecting || self.tls.as_ref().is_some_and(|t| t.is_handshaking())
    }

    fn wants_write(&self) -> bool {
        self.connecting
            || !self.pending.is_empty()
            || self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Queues `data` for the peer (TLS encrypts it, even before the handshake ends).
    fn queue(&mut self, data: &[u8]) -> io::Result<()> {
        match &mut self.tls {
            Some(t) => t.writer().write_all(data),
            None => {
                self.pending.extend_from_slice(data);
                Ok(())
            }
        }
    }

    /// Writes what it can without blocking.
    fn flush(&mut self) -> io::Result<()> {
        if self.connecting {
            return Ok(());
        }
        if let Some(t) = &mut self.tls {
            while t.wants_write() {
                match t.write_tls(&mut self.sock) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            return Ok(());
        }
        while !self.pending.is_empty() {
            match self.sock.write(&self.pending) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Why a connection ended, for the counters; the text is what a transaction that waited on it
/// reports (as the reason of its 503).
enum Close {
    /// Refused, EOF, reset, or a write error: nothing to count.
    Gone(String),
    Idle,
    /// A limit broken (size, time, unread output).
    Cut(String),
    TlsFailed(String),
    /// A keep-alive ping went unanswered.
    Dead(String),
}

impl Close {
    /// What a transaction waiting on the connection is told; `None` for an idle close, on
    /// which nothing can be waiting (every transaction gives up well within the idle time).
    fn reason(&self) -> Option<&str> {
        match self {
            Close::Idle => None,
            Close::Gone(r) | Close::Cut(r) | Close::TlsFailed(r) | Close::Dead(r) => Some(r),
        }
    }
}

/// What falls due on a connection.
#[derive(Clone, Copy)]
enum Due {
    /// The TCP connect (`true`) or the TLS handshake did not finish in time.
    Handshake(bool),
    /// A message begun and not finished in time.
    Message,
    Idle,
    KeepAlive,
}

/// The host names the application resolved to addresses, so that a TLS server reached at an
/// address is verified under the name it was called by (`sips:bob@pbx.example.com`). Written
/// by the backend as it resolves a target, read when a client connection opens; without an
/// entry the certificate must name the IP address.
#[derive(Debug, Clone, Default)]
pub struct TlsNames(Arc<parking_lot::Mutex<std::collections::HashMap<SocketAddr, String>>>);

impl TlsNames {
    /// Most names kept; past it the oldest knowledge is dropped (all at once: it is a cache).
    const MAX: usize = 1024;

    /// Records that `addr` was resolved from `host`.
    pub fn insert(&self, addr: SocketAddr, host: &str) {
        let mut m = self.0.lock();
        if m.len() >= Self::MAX {
            m.clear();
        }
        m.insert(addr, host.to_string());
    }

    fn server_name(&self, addr: SocketAddr) -> ServerName<'static> {
        self.0
            .lock()
            .get(&addr)
            .and_then(|h| ServerName::try_from(h.clone()).ok())
            .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()))
    }
}

/// The TCP and TLS side of one SIP thread.
pub struct StreamTransports {
    tcp: Option<TcpListener>,
    tls: Option<TcpListener>,
    ctx: TlsContext,
    names: TlsNames,
    conns: BTreeMap<ConnId, Conn>,
    next_id: u64,
    limits: StreamLimits,
    counters: Arc<StreamCounters>,
    /// Peers whose messages could not be carried, and why, for the handler (`take_failures`).
    failures: Vec<(SipPeer, String)>,
    /// Draws the keep-alive jitter of each connection.
    rng: SipRng,
    /// Scratch for reads.
    buf: Vec<u8>,
}

impl std::fmt::Debug for StreamTransports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamTransports")
            .field("tcp", &self.local_addr(SipTransportKind::Tcp))
            .field("tls", &self.local_addr(SipTransportKind::Tls))
            .field("connections", &self.conns.len())
            .finish_non_exhaustive()
    }
}

/// One descriptor the SIP thread polls for the stream side, and what it stands for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum StreamFd {
    Listener(SipTransportKind),
    Conn(ConnId),
}

impl StreamTransports {
    /// Listens for TCP at `tcp` and TLS at `tls` (either may be absent; TLS needs a context
    /// that can serve). Without listeners the thread can still call TCP and TLS peers.
    pub fn bind(
        tcp: Option<SocketAddr>,
        tls: Option<SocketAddr>,
        ctx: TlsContext,
        names: TlsNames,
        limits: StreamLimits,
    ) -> io::Result<StreamTransports> {
        let listen = |a: SocketAddr| -> io::Result<TcpListener> {
            let l = TcpListener::bind(a)?;
            l.set_nonblocking(true)?;
            Ok(l)
        };
        if tls.is_some() && !ctx.can_serve() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a TLS listener needs a certificate and a key",
            ));
        }
        Ok(StreamTransports {
            tcp: tcp.map(listen).transpose()?,
            tls: tls.map(listen).transpose()?,
            ctx,
            names,
            conns: BTreeMap::new(),
            next_id: 0,
            limits,
            counters: Arc::default(),
            failures: Vec::new(),
            rng: SipRng::from_os(),
            buf: vec![0; 16 * 1024],
        })
    }

    /// The address a listener is bound to.
    pub fn local_addr(&self, kind: SipTransportKind) -> Option<SocketAddr> {
        let l = match kind {
            SipTransportKind::Tcp => self.tcp.as_ref(),
            SipTransportKind::Tls => self.tls.as_ref(),
            _ => None,
        };
        l.and_then(|l| l.local_addr().ok())
    }

    /// The counters, shared.
    pub fn counters(&self) -> Arc<StreamCounters> {
        self.counters.clone()
    }

    /// Open connections.
    #[cfg(any(test, feature = "_internals"))]
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Appends the descriptors to poll, with what each is.
    pub(crate) fn poll_fds(&self, fds: &mut Vec<libc::pollfd>, what: &mut Vec<StreamFd>) {
        for (kind, l) in [
            (SipTransportKind::Tcp, &self.tcp),
            (SipTransportKind::Tls, &self.tls),
        ] {
            if let Some(l) = l {
                fds.push(pollfd(l.as_raw_fd(), libc::POLLIN));
                what.push(StreamFd::Listener(kind));
            }
        }
        for (id, c) in &self.conns {
            let mut ev = libc::POLLIN;
            if c.wants_write() {
                ev |= libc::POLLOUT;
            }
            fds.push(pollfd(c.sock.as_raw_fd(), ev));
            what.push(StreamFd::Conn(*id));
        }
    }

    /// When the next connection deadline falls (handshake, message, idle, keep-alive).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.conns.values().map(|c| self.deadline(c).0).min()
    }

    fn deadline(&self, c: &Conn) -> (Instant, Due) {
        if c.handshaking() {
            return (
                c.opened + self.limits.handshake,
                Due::Handshake(c.connecting),
            );
        }
        let (mut at, mut due) = match c.message_since {
            Some(t) => (t + self.limits.message, Due::Message),
            None => (c.last_traffic + self.limits.idle, Due::Idle),
        };
        if let Some(k) = c.keepalive.as_ref().and_then(KeepAlive::poll_timeout) {
            if k < at {
                (at, due) = (k, Due::KeepAlive);
            }
        }
        (at, due)
    }

    /// Closes every connection whose deadline has passed, and pings those due a keep-alive.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<(ConnId, Due)> = self
            .conns
            .iter()
            .filter_map(|(id, c)| {
                let (t, due) = self.deadline(c);
                (t <= now).then_some((*id, due))
            })
            .collect();
        for (id, due) in due {
            let why = match due {
                Due::Handshake(true) => Close::Cut("TCP connect timed out".into()),
                Due::Handshake(false) => Close::Cut("TLS handshake timed out".into()),
                Due::Message => Close::Cut("a message not finished in time".into()),
                Due::Idle => Close::Idle,
                Due::KeepAlive => {
                    self.keep_alive(id, now);
                    continue;
                }
            };
            self.close(id, why);
        }
    }

    /// Runs connection `id`'s keep-alive: sends a ping, or closes it when the last went
    /// unanswered.
    fn keep_alive(&mut self, id: ConnId, now: Instant) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        match c.keepalive.as_mut().and_then(|k| k.handle_timeout(now)) {
            Some(KeepAliveAction::Ping) => {
                bump(&self.counters.pings_sent);
                c.last_traffic = now;
                if let Err(e) = c.queue(PING).and_then(|()| c.flush()) {
                    self.close(id, Close::Gone(format!("keep-alive not sent: {e}")));
                }
            }
            Some(KeepAliveAction::Dead) => {
                let pong = self.limits.keepalive_pong.as_secs_f64();
                self.close(
                    id,
                    Close::Dead(format!("keep-alive ping not answered within {pong} s")),
                );
            }
            None => {}
        }
    }

    /// Peers whose messages could not be carried since the last call, and why: a connection
    /// that could not be opened, failed its handshake, was reset or closed, broke a limit or
    /// left a keep-alive unanswered (with its id, when it was open). The SIP core fails the
    /// transactions waiting on them at once.
    pub fn take_failures(&mut self) -> Vec<(SipPeer, String)> {
        std::mem::take(&mut self.failures)
    }

    fn close(&mut self, id: ConnId, why: Close) {
        if let Some(mut c) = self.conns.remove(&id) {
            if let Some(reason) = why.reason() {
                self.failures
                    .push((SipPeer::on_conn(c.peer, c.kind, id), reason.to_string()));
            }
            match why {
                Close::Gone(_) => {}
                Close::Idle => bump(&self.counters.closed_idle),
                Close::Cut(_) => bump(&self.counters.cut),
                Close::TlsFailed(_) => bump(&self.counters.tls_failed),
                Close::Dead(_) => bump(&self.counters.keepalive_failed),
            }
            if let Some(t) = &mut c.tls {
                t.send_close_notify();
                let _ = t.write_tls(&mut c.sock);
            }
            let _ = c.sock.shutdown(std::net::Shutdown::Both);
        }
    }

    fn add(
        &mut self,
        sock: TcpStream,
        to: SipPeer,
        tls: Option<Connection>,
        connecting: bool,
        client: bool,
        now: Instant,
    ) -> ConnId {
        let (peer, kind) = (to.addr, to.transport);
        let keepalive = if client {
            let every = keepalive::jittered(self.limits.keepalive, self.rng.next_u32());
            KeepAlive::new(now, every, self.limits.keepalive_pong)
        } else {
            None
        };
        self.next_id += 1;
        let id = ConnId(self.next_id);
        bump(&self.counters.opened);
        self.conns.insert(
            id,
            Conn {
                sock,
                peer,
                kind,
                tls,
                framer: StreamFramer::with_limits(self.limits.frame),
                pending: Vec::new(),
                connecting,
                opened: now,
                last_traffic: now,
                keepalive,
                message_since: None,
                tls_noted: false,
            },
        );
        id
    }

    /// A descriptor was ready (`revents`): accepts, reads, writes; hands every whole message
    /// to `deliver`.
    pub(crate) fn on_ready(
        &mut self,
        fd: StreamFd,
        revents: libc::c_short,
        now: Instant,
        deliver: &mut dyn FnMut(&[u8], SipPeer),
    ) {
        match fd {
            StreamFd::Listener(kind) => self.accept(kind, now),
            StreamFd::Conn(id) => {
                if let Err(why) = self.service(id, revents, now, deliver) {
                    self.close(id, why);
                }
            }
        }
    }

    fn accept(&mut self, kind: SipTransportKind, now: Instant) {
        // A bounded number per wake-up, so a connection flood cannot starve the rest.
        for _ in 0..64 {
            let l = match kind {
                SipTransportKind::Tcp => self.tcp.as_ref(),
                _ => self.tls.as_ref(),
            };
            let Some(l) = l else { return };
            let (sock, peer) = match l.accept() {
                Ok(x) => x,
                Err(_) => return,
            };
            if self.conns.len() >= self.limits.max_connections
                || sock.set_nonblocking(true).is_err()
            {
                bump(&self.counters.refused);
                continue;
            }
            let _ = sock.set_nodelay(true);
            let tls = match kind {
                SipTransportKind::Tls => {
                    let Some(cfg) = self.ctx.server.clone() else {
                        continue;
                    };
                    match ServerConnection::new(cfg) {
                        Ok(s) => Some(Connection::Server(s)),
                        Err(_) => {
                            bump(&self.counters.tls_failed);
                            continue;
                        }
                    }
                }
                _ => None,
            };
            self.add(sock, SipPeer::new(peer, kind), tls, false, false, now);
        }
    }

    fn service(
        &mut self,
        id: ConnId,
        revents: libc::c_short,
        now: Instant,
        deliver: &mut dyn FnMut(&[u8], SipPeer),
    ) -> Result<(), Close> {
        let limits = self.limits;
        let buf = &mut self.buf;
        let Some(c) = self.conns.get_mut(&id) else {
            return Ok(());
        };
        if c.connecting {
            if revents & (libc::POLLOUT | libc::POLLERR | libc::POLLHUP) == 0 {
                return Ok(());
            }
            match c.sock.take_error() {
                Ok(None) => c.connecting = false,
                Ok(Some(e)) | Err(e) => {
                    bump(&self.counters.refused);
                    return Err(Close::Gone(format!("TCP connect failed: {e}")));
                }
            }
        }
        let peer = SipPeer::on_conn(c.peer, c.kind, id);
        let mut eof = false;
        if revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
            // Read until the socket has nothing more, a bounded number of times (a TLS record
            // without SIP, such as a handshake message, counts as one).
            for _ in 0..256 {
                let got = match &mut c.tls {
                    Some(t) => read_tls(t, &mut c.sock, buf)?,
                    None => read_tcp(&mut c.sock, buf)?,
                };
                let n = match got {
                    Got::Eof => {
                        eof = true;
                        break;
                    }
                    Got::Nothing => break,
                    Got::Progress => {
                        c.last_traffic = now;
                        continue;
                    }
                    Got::Data(n) => n,
                };
                c.last_traffic = now;
                if let Some(k) = c.keepalive.as_mut() {
                    k.handle_received(now);
                }
                if let Err(e) = c.framer.handle_input(&buf[..n]) {
                    // Oversize, no Content-Length, contradictory lengths: what was whole before
                    // the fault is delivered, then the connection is cut.
                    while let Some(f) = c.framer.poll_frame() {
                        if let Frame::Message(m) = f {
                            deliver(&m, peer);
                        }
                    }
                    return Err(Close::Cut(e.to_string()));
                }
                while let Some(f) = c.framer.poll_frame() {
                    match f {
                        Frame::Message(m) => deliver(&m, peer),
                        Frame::Ping => {
                            let _ = c.queue(PONG);
                        }
                    }
                }
            }
            c.message_since = match (c.framer.is_mid_message(), c.message_since) {
                (true, None) => Some(now),
                (true, since) => since,
                (false, _) => None,
            };
        }
        if !c.tls_noted && !c.handshaking() {
            if let Some(t) = &c.tls {
                c.tls_noted = true;
                let version = t.protocol_version().and_then(|v| v.as_str());
                let suite = t.negotiated_cipher_suite().and_then(|s| s.suite().as_str());
                if let (Some(v), Some(s)) = (version, suite) {
                    *self.counters.last_tls.lock() = Some((v, s));
                }
            }
        }
        if let Err(e) = c.flush() {
            return Err(Close::Gone(format!("write failed: {e}")));
        }
        if c.pending_len() > limits.max_pending_write {
            return Err(Close::Cut("the peer does not read".into()));
        }
        if eof {
            return Err(Close::Gone("connection closed by the peer".into()));
        }
        Ok(())
    }

    /// Sends `data` to `dest` (a TCP or TLS peer), opening a connection when none fits.
    pub fn send(&mut self, data: &[u8], dest: SipPeer, now: Instant) {
        let id = match self.find(dest) {
            Some(id) => id,
            None => match self.connect(dest, now) {
                Ok(id) => id,
                Err(e) => {
                    bump(&self.counters.send_failed);
                    self.failures.push((
                        SipPeer::new(dest.addr, dest.transport),
                        format!("no connection to {}: {e}", dest.addr),
                    ));
                    return;
                }
            },
        };
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        c.last_traffic = now;
        let result = c.queue(data).and_then(|()| c.flush());
        if let Err(e) = result {
            bump(&self.counters.send_failed);
            self.close(id, Close::Gone(format!("write failed: {e}")));
        } else if c.pending_len() > self.limits.max_pending_write {
            self.close(id, Close::Cut("the peer does not read".into()));
        }
    }

    /// The connection `dest` names while it is open, else any open one to its address.
    fn find(&self, dest: SipPeer) -> Option<ConnId> {
        if let Some(id) = dest.conn.filter(|id| self.conns.contains_key(id)) {
            return Some(id);
        }
        self.conns
            .iter()
            .find(|(_, c)| c.peer == dest.addr && c.kind == dest.transport)
            .map(|(id, _)| *id)
    }

    fn connect(&mut self, dest: SipPeer, now: Instant) -> io::Result<ConnId> {
        if self.conns.len() >= self.limits.max_connections {
            bump(&self.counters.refused);
            return Err(io::ErrorKind::OutOfMemory.into());
        }
        let tls = match dest.transport {
            SipTransportKind::Tls => {
                let client = self.ctx.client()?;
                let name = self.names.server_name(dest.addr);
                let c = ClientConnection::new(client, name).map_err(tls_err)?;
                Some(Connection::Client(c))
            }
            SipTransportKind::Tcp => None,
            _ => return Err(io::ErrorKind::Unsupported.into()),
        };
        let sock = socket2::Socket::new(
            socket2::Domain::for_address(dest.addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        sock.set_nonblocking(true)?;
        let _ = sock.set_tcp_nodelay(true);
        let connecting = match sock.connect(&dest.addr.into()) {
            Ok(()) => false,
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => true,
            Err(e) => {
                bump(&self.counters.refused);
                return Err(e);
            }
        };
        Ok(self.add(
            sock.into(),
            SipPeer::new(dest.addr, dest.transport),
            tls,
            connecting,
            true,
            now,
        ))
    }
}

/// What one read of a connection gave.
enum Got {
    /// Bytes of SIP in the scratch buffer.
    Data(usize),
    /// Records that carried no SIP (handshake, alerts): read again.
    Progress,
    /// Nothing now.
    Nothing,
    /// The peer closed (a TLS close_notify, or the socket closed without one: EOF all the same).
    Eof,
}

fn read_tcp(sock: &mut TcpStream, buf: &mut [u8]) -> Result<Got, Close> {
    match sock.read(buf) {
        Ok(0) => Ok(Got::Eof),
        Ok(n) => Ok(Got::Data(n)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Got::Nothing),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(Got::Progress),
        Err(e) => Err(Close::Gone(format!("read failed: {e}"))),
    }
}

/// Plaintext first (what rustls already decrypted), else TLS records from the socket.
fn read_tls(t: &mut Connection, sock: &mut TcpStream, buf: &mut [u8]) -> Result<Got, Close> {
    match t.reader().read(buf) {
        Ok(0) => return Ok(Got::Eof),
        Ok(n) => return Ok(Got::Data(n)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        // The socket closed without close_notify: EOF all the same.
        Err(_) => return Ok(Got::Eof),
    }
    match t.read_tls(sock) {
        Ok(0) => return Ok(Got::Eof),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Got::Nothing),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(Got::Progress),
        Err(e) => return Err(Close::Gone(format!("read failed: {e}"))),
    }
    if let Err(e) = t.process_new_packets() {
        // Send the alert rustls queued, then give up.
        let _ = t.write_tls(sock);
        return Err(Close::TlsFailed(format!("TLS failed: {e}")));
    }
    Ok(Got::Progress)
}

fn pollfd(fd: std::os::fd::RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}
