//! `SipVoiceBackend` and `SipVideoBackend`: a SIP user agent whose calls, incoming and dialed,
//! become engine sessions, and which registers with registrars.
//!
//! `new` checks the configuration and starts the callback threads; `start` binds the SIP socket
//! and starts the SIP thread, which runs the user agent core ([`sip_ua`](super::sip_ua)). Register
//! callbacks in between, and no call can be answered before they are in place. This handle
//! talks to the core only with commands (dial, hang up, hold, register...) and reads what the
//! core publishes about its calls. Sessions live on a [`MediaEngine`] like the RTP backends',
//! so every session operation is the shared [`MediaBackend`] one. `SipVideoBackend` is the
//! voice backend with video negotiation switched on (composition: `Deref` to the voice
//! backend).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crossbeam_channel::{unbounded, Sender};
use parking_lot::{Mutex, RwLock};

use super::api::{sealed, MediaBackend};
use super::sip_config::{CallDecision, IncomingCall, SipBackendConfig, SipCredentials, SipStats};
use super::sip_ua::{
    CallDirectory, CallProgress, Command, DialRequest, EngineHost, OfferRequest, RegisterRequest,
    RegistrationEvent, RegistrationId, SipCore, SipCounters, SipEvent, SipHooks, SipThread,
    StartNotifier, MAX_REGISTRATIONS,
};
use crate::engine::dispatch::Dispatcher;
use crate::engine::sip_stream::{StreamLimits, StreamTransports, TlsContext, TlsNames, TlsVerify};
use crate::engine::{
    EngineConfig, MediaEngine, MediaSocket, PortPool, SessionId, SessionInfo, SipPeer,
    SipTransport, StopSignal,
};
use crate::error::{Error, Result};
use crate::sip::auth::Credentials;
use crate::sip::route::NextHop;
use crate::sip::{new_call_id, SipRng, SipTransportKind, Uri};

/// The SIP thread and the handles to reach it, once the backend is started.
struct Running {
    transport: SipTransport,
    /// Host names of TLS targets, for certificate checks.
    tls_names: TlsNames,
    wake: StopSignal,
    commands: Sender<Command>,
    local: SocketAddr,
}

impl Running {
    fn send(&self, cmd: Command) {
        let _ = self.commands.send(cmd);
        self.wake.wake();
    }
}

/// Options of one dialed call; `Default` takes everything from the backend's configuration.
#[derive(Debug, Clone, Default)]
pub struct DialOptions {
    /// Send the INVITE through this proxy (a loose route) instead of the configured
    /// `outbound_proxy`, or straight to the target's host.
    pub proxy: Option<SocketAddr>,
    /// Credentials for 401/407 challenges, instead of the configured ones.
    pub credentials: Option<SipCredentials>,
    /// Our From URI. Default: the address of record of the backend's first registration, else
    /// `sip:USER@OUR_ADDRESS` with the configured `user`.
    pub from: Option<String>,
    /// The display name of From.
    pub display_name: Option<String>,
    /// Extra request headers (`X-Room-ID`, ...).
    pub headers: Vec<(String, String)>,
    /// On a video backend, offer audio only.
    pub audio_only: bool,
    /// How long the call may ring before it is cancelled (default: the configured
    /// `ring_timeout`).
    pub ring_timeout: Option<Duration>,
    /// The session's room (default: the Call-ID).
    pub room_id: Option<String>,
    /// The audio codecs this call offers, in order of preference (roomkit's `dial(codec=...)`
    /// offers one); empty (default): the configured `supported_codecs`.
    pub audio_codecs: Vec<crate::sdp::AudioCodec>,
}

/// Options of one registration; `Default` registers for an hour with the configured
/// credentials, straight with the AOR's host (or through the configured outbound proxy).
#[derive(Debug, Clone)]
pub struct RegisterOptions {
    /// The registrar's Request-URI (`sip:example.com`); default: the AOR's host and port.
    pub registrar: Option<String>,
    /// Where REGISTERs are sent (a loose route) instead of the configured `outbound_proxy`
    /// or the registrar's host.
    pub proxy: Option<SocketAddr>,
    /// Credentials instead of the configured ones.
    pub credentials: Option<SipCredentials>,
    /// The lifetime asked for, in seconds (a registrar may grant less, or ask for more).
    pub expires: u32,
}

impl Default for RegisterOptions {
    fn default() -> Self {
        RegisterOptions {
            registrar: None,
            proxy: None,
            credentials: None,
            expires: 3600,
        }
    }
}

type CallCallback = Arc<dyn Fn(&SessionInfo) + Send + Sync>;
type CallStateCallback = Arc<dyn Fn(SessionId, &CallProgress) + Send + Sync>;
type RegistrationCallback = Arc<dyn Fn(RegistrationId, &RegistrationEvent) + Send + Sync>;

/// The SIP callbacks, and what the SIP callback thread records for queries.
#[derive(Default)]
struct SipCallbacks {
    on_call: RwLock<Option<CallCallback>>,
    on_call_state: RwLock<Option<CallStateCallback>>,
    on_registration: RwLock<Option<RegistrationCallback>>,
    /// Registrations: their AOR and latest event.
    registrations: Mutex<HashMap<RegistrationId, (String, Option<RegistrationEvent>)>>,
}

impl SipCallbacks {
    fn deliver(&self, ev: SipEvent) {
        match ev {
            SipEvent::Call(info) => {
                let cb = self.on_call.read().clone();
                if let Some(cb) = cb {
                    cb(&info);
                }
            }
            SipEvent::CallState(session, p) => {
                let cb = self.on_call_state.read().clone();
                if let Some(cb) = cb {
                    cb(session, &p);
                }
            }
            SipEvent::Registration(id, ev) => {
                {
                    let mut regs = self.registrations.lock();
                    if ev == RegistrationEvent::Unregistered {
                        regs.remove(&id);
                    } else if let Some(r) = regs.get_mut(&id) {
                        r.1 = Some(ev.clone());
                    }
                }
                let cb = self.on_registration.read().clone();
                if let Some(cb) = cb {
                    cb(id, &ev);
                }
            }
        }
    }
}

/// SIP audio calls. Video offers are answered `m=video 0`; dialed calls offer audio only.
pub struct SipVoiceBackend {
    // Field order is drop order: the SIP thread stops (sending BYEs and un-REGISTERs, closing
    // sessions) before the SIP callback thread and the engine go.
    running: OnceLock<Running>,
    /// Held while starting, so two concurrent `start` calls cannot both bind.
    starting: Mutex<()>,
    dispatcher: Arc<Dispatcher<SipEvent>>,
    callbacks: Arc<SipCallbacks>,
    hooks: Arc<SipHooks>,
    directory: Arc<CallDirectory>,
    counters: Arc<SipCounters>,
    engine: Arc<MediaEngine>,
    pool: PortPool,
    next_registration: AtomicU64,
    with_video: bool,
    cfg: SipBackendConfig,
}

impl std::fmt::Debug for SipVoiceBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SipVoiceBackend")
            .field("sip", &self.local_sip_addr())
            .field("video", &self.with_video)
            .finish_non_exhaustive()
    }
}

fn credentials(c: &SipCredentials) -> Credentials {
    Credentials::new(&c.username, &c.password)
}

/// Records the host name a TLS target was resolved from (nothing for an IP address).
fn remember_tls_name(names: &TlsNames, uri: &str, addr: SocketAddr) {
    let host = Uri::parse(uri).ok().as_ref().and_then(NextHop::from_uri);
    if let Some(h) = host.filter(|h| h.socket_addr().is_none()) {
        names.insert(addr, &h.host);
    }
}

/// The address of a URI's host (names resolved here, on the caller's thread).
fn resolve_uri(uri: &str) -> Result<SocketAddr> {
    let u = Uri::parse(uri)
        .ok()
        .filter(|u| u.is_sip())
        .ok_or_else(|| Error::InvalidArgument(format!("`{uri}` is not a sip: URI")))?;
    let hop = NextHop::from_uri(&u)
        .ok_or_else(|| Error::InvalidArgument(format!("`{uri}` has no host")))?;
    if let Some(a) = hop.socket_addr() {
        return Ok(a);
    }
    (hop.host.as_str(), hop.port_or_default())
        .to_socket_addrs()
        .map_err(|e| Error::Io(format!("resolving {}", hop.host), e))?
        .next()
        .ok_or_else(|| Error::NotFound(format!("no address for {}", hop.host)))
}

/// The transport a `sip:`/`sips:` URI asks for (`sips:`, `;transport=tcp|tls`); UDP when it
/// names none.
fn uri_transport(uri: &str) -> SipTransportKind {
    Uri::parse(uri)
        .ok()
        .as_ref()
        .and_then(NextHop::from_uri)
        .and_then(|h| h.transport_kind())
        .unwrap_or(SipTransportKind::Udp)
}

/// A loose route to a proxy.
fn route_to(proxy: SocketAddr) -> String {
    match proxy.ip() {
        IpAddr::V4(ip) => format!("<sip:{ip}:{};lr>", proxy.port()),
        IpAddr::V6(ip) => format!("<sip:[{ip}]:{};lr>", proxy.port()),
    }
}

impl SipVoiceBackend {
    /// Checks the configuration and starts the callback threads. Nothing is bound yet: register
    /// the callbacks, then call [`SipVoiceBackend::start`].
    pub fn new(cfg: SipBackendConfig) -> Result<SipVoiceBackend> {
        Self::build(cfg, false)
    }

    fn build(cfg: SipBackendConfig, with_video: bool) -> Result<SipVoiceBackend> {
        if cfg.supported_codecs.is_empty() {
            return Err(Error::InvalidArgument(
                "supported_codecs must name at least one codec".into(),
            ));
        }
        cfg.audio_sample_rate
            .validate()
            .map_err(Error::InvalidArgument)?;
        let pool = PortPool::new(cfg.rtp_port_start, cfg.rtp_port_end)?;
        let engine = Arc::new(MediaEngine::new(EngineConfig {
            callback_threads: cfg.callback_threads,
            callback_queue: cfg.callback_queue,
            io_threads: cfg.io_threads,
        })?);
        let callbacks = Arc::new(SipCallbacks::default());
        let cb = callbacks.clone();
        let dispatcher = Arc::new(
            Dispatcher::new(
                1,
                cfg.callback_queue.max(64),
                "rkm-sip-cb",
                Arc::new(move |ev: SipEvent| cb.deliver(ev)),
            )
            .map_err(|e| Error::Io("starting the SIP callback thread".into(), e))?,
        );
        Ok(SipVoiceBackend {
            running: OnceLock::new(),
            starting: Mutex::new(()),
            dispatcher,
            callbacks,
            hooks: Arc::new(SipHooks::default()),
            directory: Arc::new(CallDirectory::default()),
            counters: Arc::new(SipCounters::default()),
            engine,
            pool,
            next_registration: AtomicU64::new(1),
            with_video,
            cfg,
        })
    }

    /// Binds the SIP socket and starts the SIP thread: from now on calls are answered, with the
    /// callbacks registered so far. Returns the bound address (the port chosen when the
    /// configuration asked for port 0). Fails with [`Error::State`] when already started.
    pub fn start(&self) -> Result<SocketAddr> {
        let _guard = self.starting.lock();
        if self.running.get().is_some() {
            return Err(Error::State("the SIP backend is already started".into()));
        }
        let sock = MediaSocket::bind(self.cfg.local_sip_addr)
            .map_err(|e| Error::Io(format!("binding SIP {}", self.cfg.local_sip_addr), e))?;
        let local = sock.local_addr();
        let tls_names = TlsNames::default();
        let streams = self.bind_streams(tls_names.clone())?;
        let (tx, rx) = unbounded();
        let cname = format!("{}@roomkit-media", uuid::Uuid::new_v4().simple());
        // Incoming calls' sessions start on the host's setup thread, which reports each as a
        // command; the wake-up exists once the SIP thread does (set just below; a report
        // queued before is taken with the first wake-up).
        let wake_slot: Arc<OnceLock<StopSignal>> = Arc::default();
        let notify: StartNotifier = {
            let (tx, slot) = (tx.clone(), wake_slot.clone());
            Box::new(move |session, result| {
                if tx.send(Command::MediaStarted(session, result)).is_ok() {
                    if let Some(w) = slot.get() {
                        w.wake();
                    }
                }
            })
        };
        // One certificate per backend: every DTLS-SRTP stream presents it.
        let dtls_identity = match self.cfg.dtls_srtp {
            crate::DtlsSrtpPolicy::Off => None,
            _ => Some(
                crate::webrtc::DtlsIdentity::generate()
                    .map_err(|e| Error::State(format!("making the DTLS-SRTP certificate: {e}")))?,
            ),
        };
        let host = EngineHost::new(
            self.engine.clone(),
            self.pool.clone(),
            &self.cfg,
            cname,
            Some(notify),
            dtls_identity,
        )
        .count_into(self.counters.clone());
        let mut core = SipCore::new(
            self.cfg.clone(),
            self.with_video,
            Box::new(host),
            self.hooks.clone(),
            local,
            SipRng::from_os(),
        );
        for kind in [SipTransportKind::Tcp, SipTransportKind::Tls] {
            if let Some(a) = streams.local_addr(kind) {
                core.listen_on(kind, a.port());
            }
        }
        let thread = SipThread::new(
            core,
            rx,
            self.dispatcher.clone(),
            self.directory.clone(),
            self.counters.clone(),
        );
        let transport = SipTransport::spawn_with_streams(sock, Some(streams), "rkm-sip", thread)
            .map_err(|e| Error::Io("starting the SIP thread".into(), e))?;
        let _ = wake_slot.set(transport.signal());
        transport.signal().wake();
        let running = Running {
            tls_names,
            wake: transport.signal(),
            transport,
            commands: tx,
            local,
        };
        // A call whose peer left its media (RTCP BYE, or silence for the inactivity timeout)
        // is hung up with BYE (the engine has closed its media already), unless the peer's own
        // BYE comes first.
        let (commands, wake) = (running.commands.clone(), running.wake.clone());
        self.engine.set_end_hook(move |session, why| {
            if commands.send(Command::MediaEnded(session, why)).is_ok() {
                wake.wake();
            }
        });
        // Cannot fail: `starting` is held and `running` was empty.
        let _ = self.running.set(running);
        Ok(local)
    }

    /// The TCP and TLS listeners the configuration asks for, and the TLS context (also for
    /// calling TLS peers without a listener).
    fn bind_streams(&self, names: TlsNames) -> Result<StreamTransports> {
        let tls = &self.cfg.tls;
        let server_pem = match (&tls.cert, &tls.key) {
            (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
            (None, None) => None,
            _ => {
                return Err(Error::InvalidArgument(
                    "TLS needs both a certificate and a key".into(),
                ))
            }
        };
        let verify = match (&tls.ca, tls.verify) {
            (_, false) => TlsVerify::NoVerify,
            (Some(ca), true) => TlsVerify::CaFile(ca.clone()),
            (None, true) => TlsVerify::SystemRoots,
        };
        let ctx = TlsContext::new(server_pem, verify)
            .map_err(|e| Error::Io("loading the TLS certificates".into(), e))?;
        let t = self.cfg.stream_timeouts;
        let limits = StreamLimits {
            idle: t.idle,
            handshake: t.handshake,
            message: t.message,
            keepalive: t.keepalive,
            keepalive_pong: t.keepalive_pong,
            ..StreamLimits::default()
        };
        StreamTransports::bind(
            self.cfg.local_sip_tcp_addr,
            self.cfg.local_sip_tls_addr,
            ctx,
            names,
            limits,
        )
        .map_err(|e| Error::Io("binding the SIP TCP/TLS listeners".into(), e))
    }

    /// Where the SIP listener of `transport` (TCP, TLS) is bound; `None` before `start` or
    /// without one.
    pub fn local_sip_stream_addr(&self, transport: SipTransportKind) -> Option<SocketAddr> {
        self.running
            .get()
            .and_then(|r| r.transport.stream_addr(transport))
    }

    fn running(&self) -> Result<&Running> {
        self.running.get().ok_or_else(|| {
            Error::State("the SIP backend is not started (call start() first)".into())
        })
    }

    /// Whether [`SipVoiceBackend::start`] has run.
    pub fn is_started(&self) -> bool {
        self.running.get().is_some()
    }

    /// The configuration in use.
    pub fn config(&self) -> &SipBackendConfig {
        &self.cfg
    }

    /// The address the SIP socket is bound to; `None` before `start`.
    pub fn local_sip_addr(&self) -> Option<SocketAddr> {
        self.running.get().map(|r| r.transport.local_addr())
    }

    /// The RTP port pool (free count goes back to capacity when every call has ended).
    pub fn port_pool(&self) -> &PortPool {
        &self.pool
    }

    /// Signalling counters.
    pub fn sip_stats(&self) -> SipStats {
        let mut s = self.counters.snapshot();
        s.rtp_ports_busy = self.pool.busy_skipped();
        if let Some(c) = self
            .running
            .get()
            .and_then(|r| r.transport.stream_counters())
        {
            let g = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
            s.connections_opened = g(&c.opened);
            s.connections_idle_closed = g(&c.closed_idle);
            s.connections_cut = g(&c.cut);
            s.tls_failures = g(&c.tls_failed);
            s.connections_refused = g(&c.refused);
            s.stream_send_failures = g(&c.send_failed);
            s.keepalive_pings = g(&c.pings_sent);
            s.keepalive_failures = g(&c.keepalive_failed);
            if let Some((version, suite)) = *c.last_tls.lock() {
                s.tls_version = Some(version);
                s.tls_cipher_suite = Some(suite);
            }
        }
        s
    }

    /// Screens new INVITEs before any port is taken (replaces an earlier filter). Runs on the
    /// SIP thread: it must return quickly. A filter that needs longer (a database, an async
    /// application) returns [`CallDecision::Defer`] and decides later with
    /// [`decide_call`](SipVoiceBackend::decide_call).
    pub fn set_invite_filter<F>(&self, f: F)
    where
        F: Fn(&IncomingCall) -> CallDecision + Send + Sync + 'static,
    {
        *self.hooks.filter.write() = Some(Arc::new(f));
    }

    /// Looks up inbound digest passwords with `f` (user name → password, `None`: unknown),
    /// instead of `auth_users`; setting one turns authentication on. Runs on the SIP thread: it
    /// must return quickly.
    pub fn set_auth_resolver<F>(&self, f: F)
    where
        F: Fn(&str) -> Option<String> + Send + Sync + 'static,
    {
        *self.hooks.resolver.write() = Some(Arc::new(f));
    }

    /// Shows every SIP message to `f` as it is received (`outbound` false) or sent (true,
    /// retransmissions included), with the peer's address: a protocol trace. Runs on the SIP
    /// thread: it must return quickly. Replaces an earlier one.
    pub fn set_sip_trace<F>(&self, f: F)
    where
        F: Fn(bool, &[u8], SocketAddr) + Send + Sync + 'static,
    {
        *self.hooks.trace.write() = Some(Arc::new(f));
    }

    /// Removes the SIP trace.
    pub fn clear_sip_trace(&self) {
        *self.hooks.trace.write() = None;
    }

    /// Removes the auth resolver: `auth_users` (if any) is checked again.
    pub fn clear_auth_resolver(&self) {
        *self.hooks.resolver.write() = None;
    }

    /// An incoming call was answered (200 sent): metadata has `caller`, `callee`,
    /// `caller_display_name`, `call_id`, `has_video`, `video_codec`, `room_id`, `direction`
    /// (`inbound`) and the `X-` headers. Runs on the SIP callback thread.
    pub fn on_call<F>(&self, f: F)
    where
        F: Fn(&SessionInfo) + Send + Sync + 'static,
    {
        *self.callbacks.on_call.write() = Some(Arc::new(f));
    }

    /// A dialed call moved on ([`CallProgress`]: trying, ringing, early media, answered,
    /// failed with its status, ended). Runs on the SIP callback thread, in order per call.
    pub fn on_call_state<F>(&self, f: F)
    where
        F: Fn(SessionId, &CallProgress) + Send + Sync + 'static,
    {
        *self.callbacks.on_call_state.write() = Some(Arc::new(f));
    }

    /// A registration moved on (registered, failed, unregistered). Runs on the SIP callback
    /// thread.
    pub fn on_registration<F>(&self, f: F)
    where
        F: Fn(RegistrationId, &RegistrationEvent) + Send + Sync + 'static,
    {
        *self.callbacks.on_registration.write() = Some(Arc::new(f));
    }

    /// Ends a call: its media closes now (firing `on_client_disconnected`), and the SIP thread
    /// sends BYE (retransmitted until answered or timer F), a 480 while it rings here, or a
    /// CANCEL while we dial. The same as [`MediaBackend::disconnect`].
    pub fn hangup(&self, session: SessionId) -> Result<()> {
        self.end_call(session, Command::Hangup(session))
    }

    /// Closes a live call's media now and has the SIP thread end the call with `cmd`.
    fn end_call(&self, session: SessionId, cmd: Command) -> Result<()> {
        let running = self
            .running
            .get()
            .filter(|_| self.directory.contains(session))
            .ok_or_else(|| Error::NotFound(format!("call with session {session}")))?;
        let _ = self.engine.disconnect(session);
        running.send(cmd);
        Ok(())
    }

    /// [`hangup`](Self::hangup) saying why: the BYE (or the CANCEL of a call we dial) carries
    /// `Reason: Q.850;cause=N;text="..."` (RFC 3326), as roomkit's `disconnect(cause=, text=)`.
    /// `cause` `None` sends no `Reason` (and ignores `text`), like `hangup`. A cause outside
    /// 1..=127, or a text with a line break or another control character or longer than
    /// [`MAX_REASON_TEXT`](crate::sip::reason::MAX_REASON_TEXT) bytes, is
    /// [`Error::InvalidArgument`] and leaves the call up.
    pub fn hangup_with(
        &self,
        session: SessionId,
        cause: Option<u16>,
        text: Option<&str>,
    ) -> Result<()> {
        let Some(reason) = crate::sip::reason::q850_reason(cause, text)? else {
            return self.hangup(session);
        };
        self.end_call(session, Command::HangupWithReason(session, reason))
    }

    /// Answers (`Accept`) or refuses (`Reject(status)`) the incoming call with this Call-ID
    /// whose decision the invite filter deferred ([`CallDecision::Defer`]). Returns at once;
    /// the SIP thread answers when the call's media is up. A call that is not waiting for a
    /// decision (unknown, already decided, refused for lack of one after `decision_timeout`,
    /// or cancelled by the caller) is left alone.
    pub fn decide_call(&self, call_id: &str, decision: CallDecision) -> Result<()> {
        self.running()?
            .send(Command::Decide(call_id.to_string(), decision));
        Ok(())
    }

    /// Answers an SDP offer that came without SIP (a WHIP client publishing, a WHEP client
    /// playing: `kind`; `client` is where it came from) and starts its session on the same
    /// ports, answer and media path as an incoming call's. From then on it is an ordinary
    /// call of this backend with no dialog: `on_call` and the session callbacks fire, its
    /// stats and metadata (`signalling`: `whip`/`whep`) are there, and [`hangup`](Self::hangup)
    /// ends it (there is no BYE to send). Returns its session id and our SDP answer; an offer
    /// we cannot take is [`Error::Unsupported`], a full backend [`Error::State`].
    pub fn accept_offer(
        &self,
        offer: &str,
        kind: roomkit_media_proto::webrtc::WhipKind,
        client: SocketAddr,
    ) -> Result<(SessionId, String)> {
        let running = self.running()?;
        let session = SessionId::new_v4();
        let (reply, answer) = crossbeam_channel::bounded(1);
        // Listed from now on, as a dialed call is, so that `hangup` right after the answer
        // finds it (the SIP thread's own listing may come a moment later).
        self.directory.insert(
            session,
            super::sip_ua::CallView {
                call_id: format!("{kind}-{session}"),
                progress: None,
            },
        );
        running.send(Command::AcceptOffer(Box::new(OfferRequest {
            session,
            kind,
            offer: offer.to_string(),
            client,
            room_id: format!("{kind}-{session}"),
            reply,
        })));
        // The SIP thread answers within one turn of its loop; a stopped one drops the sender.
        let result = match answer.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(sdp)) => return Ok((session, sdp)),
            Ok(Err(e)) if e.status == 503 => Error::State(e.reason),
            Ok(Err(e)) if (400..500).contains(&e.status) => Error::Unsupported(e.reason),
            Ok(Err(e)) => Error::State(e.reason),
            Err(_) => Error::State("the SIP thread did not answer".into()),
        };
        self.directory.remove(session);
        Err(result)
    }

    /// The Call-ID of a session's call.
    pub fn call_id(&self, session: SessionId) -> Option<String> {
        self.directory.get(session).map(|v| v.call_id)
    }

    /// True while the far end holds the call (what we send is discarded).
    pub fn is_held(&self, session: SessionId) -> bool {
        self.engine.session(session).is_ok_and(|s| s.is_held())
    }

    /// Places a call to `to` (`sip:user@host[:port]`) and returns its session id at once; the
    /// call's progress arrives through [`on_call_state`](SipVoiceBackend::on_call_state)
    /// (or [`wait_call`](SipVoiceBackend::wait_call)). The session's media exists from the
    /// answer (or early media) on and is then an ordinary session: send, receive, stats,
    /// `disconnect`. Fails at once when the backend is not started or `to` is unusable.
    pub fn dial(&self, to: &str, options: DialOptions) -> Result<SessionId> {
        let running = self.running()?;
        let target_uri = Uri::parse(to)
            .ok()
            .filter(|u| u.is_sip() && !u.has_headers())
            .ok_or_else(|| Error::InvalidArgument(format!("`{to}` is not a sip: URI")))?;
        let proxy = options.proxy.or(self.cfg.outbound_proxy);
        // A proxy is an address: UDP. Straight to the target: what its URI asks for.
        let (hop, transport) = match proxy {
            Some(p) => (p, SipTransportKind::Udp),
            None => (resolve_uri(to)?, uri_transport(to)),
        };
        if transport == SipTransportKind::Tls {
            remember_tls_name(&running.tls_names, to, hop);
        }
        let session = SessionId::new_v4();
        let local_host = running.local.ip();
        let call_id = new_call_id(&local_host.to_string());
        let from_uri = match options.from {
            Some(f) => {
                Uri::parse(&f).ok().filter(|u| u.is_sip()).ok_or_else(|| {
                    Error::InvalidArgument(format!("from: `{f}` is not a sip: URI"))
                })?;
                f
            }
            None => self.first_aor().unwrap_or_default(),
        };
        let contact_user = Uri::parse(&from_uri)
            .ok()
            .and_then(|u| u.user())
            .filter(|u| {
                !u.is_empty()
                    && u.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.!~*'()&=+$,;?/".contains(c))
            })
            .unwrap_or_else(|| self.cfg.user.clone());
        for (n, v) in &options.headers {
            if n.is_empty() || n.contains([':', '\r', '\n']) || v.contains(['\r', '\n']) {
                return Err(Error::InvalidArgument(format!(
                    "header `{n}` is not usable"
                )));
            }
        }
        // Registered as the call starts: hangup() and call_id() work at once.
        self.directory.insert(
            session,
            super::sip_ua::CallView {
                call_id: call_id.clone(),
                progress: None,
            },
        );
        let req = DialRequest {
            session,
            room_id: options.room_id.unwrap_or_else(|| call_id.clone()),
            call_id,
            target: target_uri.as_str().to_string(),
            from_uri,
            display_name: options.display_name,
            contact_user,
            next_hop: SipPeer::new(hop, transport),
            route: proxy.map(route_to),
            credentials: options
                .credentials
                .as_ref()
                .or(self.cfg.credentials.as_ref())
                .map(credentials),
            headers: options.headers,
            video: self.with_video && !options.audio_only,
            ring_timeout: options.ring_timeout.unwrap_or(self.cfg.ring_timeout),
            audio_codecs: options.audio_codecs,
        };
        running.send(Command::Dial(Box::new(req)));
        Ok(session)
    }

    /// The latest progress of a dialed call (`None` for an unknown or incoming call).
    pub fn call_state(&self, session: SessionId) -> Option<CallProgress> {
        self.directory.latest(session)
    }

    /// Waits until the dialed call `session` is answered, fails or ends, at most `timeout`,
    /// and returns that progress. [`Error::NotFound`] for an unknown call, [`Error::State`]
    /// when it is still ringing after `timeout`.
    pub fn wait_call(&self, session: SessionId, timeout: Duration) -> Result<CallProgress> {
        match self.directory.wait_settled(session, timeout) {
            Some(p) => Ok(p),
            None if self.directory.contains(session) => Err(Error::State(format!(
                "call {session} still unanswered after {timeout:?}"
            ))),
            None => Err(Error::NotFound(format!("dialed call {session}"))),
        }
    }

    /// Puts the far end of an established call on hold (a re-INVITE offering `sendonly`).
    /// What we send still goes out. Returns at once; the re-INVITE follows.
    pub fn hold(&self, session: SessionId) -> Result<()> {
        self.set_hold(session, true)
    }

    /// Takes the far end off hold (a re-INVITE offering `sendrecv`).
    pub fn resume(&self, session: SessionId) -> Result<()> {
        self.set_hold(session, false)
    }

    /// Adds video to an established call (`true`: a re-INVITE offering our video codecs on a
    /// new port; the session's video stream starts when the far end accepts, with
    /// `on_video_session_ready`) or removes it (`false`: `m=video 0`; the video stream stops).
    /// Returns at once. A voice backend cannot add video ([`Error::Unsupported`]).
    pub fn set_video(&self, session: SessionId, on: bool) -> Result<()> {
        let running = self.running()?;
        if on && !self.with_video {
            return Err(Error::Unsupported(
                "a voice backend carries no video (use SipVideoBackend)".into(),
            ));
        }
        if !self.directory.contains(session) {
            return Err(Error::NotFound(format!("call with session {session}")));
        }
        running.send(Command::Video(session, on));
        Ok(())
    }

    fn set_hold(&self, session: SessionId, hold: bool) -> Result<()> {
        let running = self.running()?;
        if !self.directory.contains(session) {
            return Err(Error::NotFound(format!("call with session {session}")));
        }
        running.send(Command::Hold(session, hold));
        Ok(())
    }

    /// Registers `aor` (`sip:alice@example.com`) with its registrar: REGISTER with digest
    /// authentication (401 and 407), refreshed before it expires, retried with back-off after
    /// failures, removed (`Expires: 0`) by [`unregister`](SipVoiceBackend::unregister) and
    /// when the backend stops. Progress arrives through
    /// [`on_registration`](SipVoiceBackend::on_registration). A backend may hold up to 64
    /// ([`Error::State`] beyond).
    pub fn register(&self, aor: &str, options: RegisterOptions) -> Result<RegistrationId> {
        let running = self.running()?;
        let aor_uri = Uri::parse(aor)
            .ok()
            .filter(|u| u.is_sip() && u.user().is_some())
            .ok_or_else(|| Error::InvalidArgument(format!("`{aor}` is not a sip:user@host URI")))?;
        let registrar = options.registrar.unwrap_or_default();
        let proxy = options.proxy.or(self.cfg.outbound_proxy);
        let (hop, transport) = match proxy {
            Some(p) => (p, SipTransportKind::Udp),
            None if registrar.is_empty() => (
                resolve_uri(aor_uri.as_str())?,
                uri_transport(aor_uri.as_str()),
            ),
            None => (resolve_uri(&registrar)?, uri_transport(&registrar)),
        };
        if transport == SipTransportKind::Tls {
            let uri = if registrar.is_empty() {
                aor_uri.as_str()
            } else {
                registrar.as_str()
            };
            remember_tls_name(&running.tls_names, uri, hop);
        }
        let id = self.next_registration.fetch_add(1, Ordering::Relaxed);
        {
            let mut regs = self.callbacks.registrations.lock();
            if regs.len() >= MAX_REGISTRATIONS {
                return Err(Error::State(format!(
                    "this backend holds {MAX_REGISTRATIONS} registrations already"
                )));
            }
            regs.insert(id, (aor.to_string(), None));
        }
        running.send(Command::Register(
            id,
            Box::new(RegisterRequest {
                aor: aor.to_string(),
                registrar,
                next_hop: SipPeer::new(hop, transport),
                route: proxy.map(route_to),
                credentials: options
                    .credentials
                    .as_ref()
                    .or(self.cfg.credentials.as_ref())
                    .map(credentials),
                expires: options.expires,
            }),
        ));
        Ok(id)
    }

    /// Removes a registration: one REGISTER with `Expires: 0`, then `Unregistered`.
    pub fn unregister(&self, id: RegistrationId) -> Result<()> {
        let running = self.running()?;
        if !self.callbacks.registrations.lock().contains_key(&id) {
            return Err(Error::NotFound(format!("registration {id}")));
        }
        running.send(Command::Unregister(id));
        Ok(())
    }

    /// The latest event of a registration: `None` before the first answer, and once it is
    /// unregistered.
    pub fn registration_state(&self, id: RegistrationId) -> Option<RegistrationEvent> {
        self.callbacks
            .registrations
            .lock()
            .get(&id)
            .and_then(|r| r.1.clone())
    }

    /// The address of record of the oldest live registration.
    fn first_aor(&self) -> Option<String> {
        let regs = self.callbacks.registrations.lock();
        regs.iter()
            .min_by_key(|(id, _)| **id)
            .map(|(_, r)| r.0.clone())
    }
}

impl sealed::Engine for SipVoiceBackend {
    fn engine(&self) -> &MediaEngine {
        &self.engine
    }

    fn end_session(&self, session: SessionId) -> Result<()> {
        self.hangup(session)
    }

    fn sip_metrics(&self) -> Option<crate::metrics::SipMetrics> {
        Some(crate::metrics::SipMetrics {
            stats: self.sip_stats(),
            ports_free: self.pool.available() as u64,
            setup_incoming: self.counters.setup_incoming.snapshot(),
            setup_outgoing: self.counters.setup_outgoing.snapshot(),
        })
    }
}

impl MediaBackend for SipVoiceBackend {}

/// SIP audio + video calls: INVITEs with a usable `m=video` get a video stream with the same
/// session id; others are audio-only calls (`has_video=false`); dialed calls offer video.
/// Everything else is [`SipVoiceBackend`]'s (through `Deref`) and [`MediaBackend`]'s.
#[derive(Debug)]
pub struct SipVideoBackend {
    voice: SipVoiceBackend,
}

impl Deref for SipVideoBackend {
    type Target = SipVoiceBackend;

    fn deref(&self) -> &SipVoiceBackend {
        &self.voice
    }
}

impl SipVideoBackend {
    /// Checks the configuration and starts the callback threads; calls are answered from
    /// [`SipVoiceBackend::start`] on.
    pub fn new(cfg: SipBackendConfig) -> Result<SipVideoBackend> {
        if cfg.supported_video_codecs.is_empty() {
            return Err(Error::InvalidArgument(
                "supported_video_codecs must name at least one codec (H264, VP8)".into(),
            ));
        }
        Ok(SipVideoBackend {
            voice: SipVoiceBackend::build(cfg, true)?,
        })
    }
}

impl sealed::Engine for SipVideoBackend {
    fn engine(&self) -> &MediaEngine {
        &self.voice.engine
    }

    fn end_session(&self, session: SessionId) -> Result<()> {
        self.voice.hangup(session)
    }

    fn sip_metrics(&self) -> Option<crate::metrics::SipMetrics> {
        self.voice.sip_metrics()
    }
}

impl MediaBackend for SipVideoBackend {}
