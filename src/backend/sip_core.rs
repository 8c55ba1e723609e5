//! The UAS core that runs on the SIP thread: it owns every transaction and call, turns requests
//! into engine sessions and answers, and keeps the retransmission timers.
//!
//! Nothing here blocks on the network: the transport thread feeds datagrams, wake-ups and
//! timeouts in, and sends what the core leaves in the outbox. The core does create and close
//! engine sessions (binding sockets, joining stream threads), which is quick and keeps a call's
//! media and signalling changes in one order.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Sender};
use parking_lot::RwLock;

use super::sip_config::{CallDecision, IncomingCall, InviteFilter, SipBackendConfig, SipStats};
use crate::codec::h264::PacketizationMode;
use crate::engine::dispatch::Dispatcher;
use crate::engine::{
    AudioParams, MediaEngine, MediaParams, Outbox, PortLease, PortPool, SessionId, SessionInfo,
    SessionSpec, SipHandler, SourcePolicy, StreamConfig, VideoParams,
};
use crate::sdp::{
    answer, reanswer, Answer, AnswerConfig, Direction, Negotiation, SessionDescription,
};
use crate::sip::auth::{AuthOutcome, DigestAuthenticator};
use crate::sip::dialog::Dialog;
use crate::sip::transaction::{
    CancelOutcome, InviteServerTransaction, NonInviteClientTransaction, NonInviteServerTransaction,
    Timers, TransactionEvent, TransactionKey,
};
use crate::sip::{new_tag, EchoHeaders, Method, ParseError, ResponseBuilder, SipMessage};

/// Methods we answer, for `Allow`.
pub(crate) const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO";
/// Port pairs a new call tries when binding fails (another program holds the port: binding
/// without address reuse is the check) before it is refused with 503.
const MAX_BIND_RETRIES: usize = 16;
/// How long a digest nonce stays valid.
const NONCE_TTL: Duration = Duration::from_secs(30);

/// Work queued for the SIP thread by application threads.
#[derive(Debug)]
pub(crate) enum Command {
    /// End the call of this session with a BYE (its media is already closed by the caller).
    Hangup(SessionId),
}

/// Events for the application's SIP callbacks (run on the SIP dispatcher thread).
pub(crate) enum SipEvent {
    Call(Box<SessionInfo>),
}

/// Counters of the signalling side, readable from any thread.
#[derive(Debug, Default)]
pub struct SipCounters {
    /// Datagrams received on the SIP socket.
    pub received: AtomicU64,
    /// Requests answered with 400/416/505 by the parser's checks.
    pub rejected: AtomicU64,
    /// Datagrams dropped as unanswerable (garbage, bad responses, stray ACKs).
    pub dropped: AtomicU64,
    /// INVITEs that became calls (answered 200).
    pub calls_answered: AtomicU64,
    /// Calls that ended (any reason).
    pub calls_ended: AtomicU64,
    /// INVITEs refused with a final error (488, 486, 503, 403, filter...).
    pub calls_refused: AtomicU64,
    /// Our BYEs that got no answer (timer F).
    pub bye_timeouts: AtomicU64,
}

impl SipCounters {
    fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// A snapshot for the application.
    pub fn snapshot(&self) -> SipStats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SipStats {
            received: g(&self.received),
            rejected: g(&self.rejected),
            dropped: g(&self.dropped),
            calls_answered: g(&self.calls_answered),
            calls_ended: g(&self.calls_ended),
            calls_refused: g(&self.calls_refused),
            bye_timeouts: g(&self.bye_timeouts),
        }
    }
}

/// What the application side of the backend can see of a call.
#[derive(Debug, Clone)]
pub(crate) struct CallView {
    pub call_id: String,
}

/// The application's `on_call` callback.
pub(crate) type CallCallback = Arc<dyn Fn(&SessionInfo) + Send + Sync>;

/// State shared by the backend handle and the SIP thread.
pub(crate) struct Shared {
    pub engine: MediaEngine,
    pub pool: PortPool,
    pub counters: SipCounters,
    pub views: RwLock<HashMap<SessionId, CallView>>,
    pub filter: RwLock<Option<InviteFilter>>,
    pub on_call: RwLock<Option<CallCallback>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallState {
    /// Sessions exist, 180 sent; the 200 goes out at `answer_at`.
    Ringing { answer_at: Instant },
    /// 200 sent (ACK may still be outstanding).
    Answered,
}

/// One call (one dialog) and everything that has to be released with it.
struct Call {
    state: CallState,
    dialog: Dialog,
    local_tag: String,
    /// The server transaction of the INVITE currently answered (initial or re-INVITE).
    invite_tx: u64,
    /// Where the far end sends from: our responses and requests go there.
    peer: SipAddr,
    session: SessionId,
    info: SessionInfo,
    answer: Answer,
    answer_cfg: AnswerConfig,
    /// Ports held for the call's life; returned to the pool when the call is dropped.
    leases: (PortLease, Option<PortLease>),
}

type SipAddr = SocketAddr;

// Transactions live in a map and are few per call; boxing the INVITE one buys nothing.
#[allow(clippy::large_enum_variant)]
enum ServerTx {
    Invite {
        tx: InviteServerTransaction,
        echo: EchoHeaders,
        /// Our To tag for every response of this INVITE.
        tag: String,
        call_id: String,
    },
    NonInvite(NonInviteServerTransaction),
}

struct ServerEntry {
    key: TransactionKey,
    dest: SocketAddr,
    tx: ServerTx,
}

struct ClientEntry {
    dest: SocketAddr,
    tx: NonInviteClientTransaction,
}

/// Why a new INVITE did not become a call.
struct Refusal {
    status: u16,
    challenge: Option<String>,
    /// Why, for a `Warning` header (RFC 3261 §20.43, code 399).
    warning: Option<String>,
}

impl Refusal {
    fn status(status: u16) -> Refusal {
        Refusal {
            status,
            challenge: None,
            warning: None,
        }
    }
}

/// The UAS state machine run by the SIP thread.
pub(crate) struct SipCore {
    cfg: SipBackendConfig,
    with_video: bool,
    shared: Arc<Shared>,
    commands: Receiver<Command>,
    dispatcher: Arc<Dispatcher<SipEvent>>,
    timers: Timers,
    auth: Option<DigestAuthenticator>,
    /// Our `host:port` for Via and Contact.
    sent_by: String,
    contact: String,
    cname: String,
    next_id: u64,
    servers: HashMap<u64, ServerEntry>,
    server_index: HashMap<TransactionKey, u64>,
    clients: HashMap<u64, ClientEntry>,
    calls: HashMap<String, Call>,
    by_session: HashMap<SessionId, String>,
    /// Timer entries: when, and which transaction (or ringing call) to look at. Stale entries
    /// are skipped when popped.
    heap: BinaryHeap<Reverse<(Instant, u64, Slot)>>,
    ring_ids: HashMap<u64, String>,
    /// Closes ended calls' sessions off the SIP thread (joining stream threads takes a while
    /// under load), then returns their ports.
    reaper: Option<(Sender<Reap>, std::thread::JoinHandle<()>)>,
}

/// A session to close and the ports to return once it is closed.
type Reap = (SessionId, (PortLease, Option<PortLease>));

impl Drop for SipCore {
    /// Lets the reaper finish what is queued and joins it.
    fn drop(&mut self) {
        if let Some((tx, handle)) = self.reaper.take() {
            drop(tx);
            let _ = handle.join();
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Slot {
    Server,
    Client,
    Ring,
}

impl SipCore {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        cfg: SipBackendConfig,
        with_video: bool,
        shared: Arc<Shared>,
        commands: Receiver<Command>,
        dispatcher: Arc<Dispatcher<SipEvent>>,
        local: SocketAddr,
        cname: String,
    ) -> SipCore {
        let host = if local.ip().is_unspecified() {
            cfg.advertised_ip.unwrap_or(cfg.local_rtp_ip)
        } else {
            local.ip()
        };
        let sent_by = match host {
            IpAddr::V4(ip) => format!("{ip}:{}", local.port()),
            IpAddr::V6(ip) => format!("[{ip}]:{}", local.port()),
        };
        let auth = (!cfg.auth_users.is_empty())
            .then(|| DigestAuthenticator::new(&cfg.auth_realm, NONCE_TTL));
        let (reap_tx, reap_rx) = unbounded::<Reap>();
        let s = shared.clone();
        // Without the reaper thread, calls are closed inline on the SIP thread.
        let reaper = std::thread::Builder::new()
            .name("rkm-sip-reaper".into())
            .spawn(move || {
                for (id, leases) in reap_rx {
                    let _ = s.engine.disconnect(id);
                    drop(leases);
                }
            })
            .ok()
            .map(|h| (reap_tx, h));
        SipCore {
            reaper,
            timers: cfg.timers,
            contact: format!("sip:roomkit@{sent_by}"),
            sent_by,
            auth,
            cfg,
            with_video,
            shared,
            commands,
            dispatcher,
            cname,
            next_id: 0,
            servers: HashMap::new(),
            server_index: HashMap::new(),
            clients: HashMap::new(),
            calls: HashMap::new(),
            by_session: HashMap::new(),
            heap: BinaryHeap::new(),
            ring_ids: HashMap::new(),
        }
    }

    fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn server_agent(&self) -> &str {
        &self.cfg.user_agent
    }

    /// Sends what a server transaction queued and schedules its next timer.
    fn flush_server(&mut self, id: u64, now: Instant, out: &mut Outbox) {
        let mut events = Vec::new();
        let mut terminated = false;
        if let Some(e) = self.servers.get_mut(&id) {
            match &mut e.tx {
                ServerTx::Invite { tx, .. } => {
                    while let Some(d) = tx.poll_transmit() {
                        out.push(d, e.dest);
                    }
                    while let Some(ev) = tx.poll_event() {
                        events.push(ev);
                    }
                    terminated = tx.is_terminated();
                    if let Some(t) = tx.next_timeout() {
                        self.heap.push(Reverse((t, id, Slot::Server)));
                    }
                }
                ServerTx::NonInvite(tx) => {
                    while let Some(d) = tx.poll_transmit() {
                        out.push(d, e.dest);
                    }
                    while tx.poll_event().is_some() {}
                    terminated = tx.is_terminated();
                    if let Some(t) = tx.next_timeout() {
                        self.heap.push(Reverse((t, id, Slot::Server)));
                    }
                }
            }
        }
        for ev in events {
            if let TransactionEvent::AckTimeout { status } = ev {
                if (200..300).contains(&status) {
                    // No ACK for our 2xx: the call is dead (RFC 3261 §13.3.1.4).
                    let call_id = match self.servers.get(&id).map(|e| &e.tx) {
                        Some(ServerTx::Invite { call_id, .. }) => Some(call_id.clone()),
                        _ => None,
                    };
                    if let Some(cid) = call_id {
                        if self.calls.get(&cid).is_some_and(|c| c.invite_tx == id) {
                            self.send_bye(&cid, now, out);
                            self.end_call(&cid);
                        }
                    }
                }
            }
        }
        if terminated {
            if let Some(e) = self.servers.remove(&id) {
                self.server_index.remove(&e.key);
            }
        }
    }

    fn flush_client(&mut self, id: u64, out: &mut Outbox) {
        let mut done = false;
        if let Some(e) = self.clients.get_mut(&id) {
            while let Some(d) = e.tx.poll_transmit() {
                out.push(d, e.dest);
            }
            while let Some(ev) = e.tx.poll_event() {
                if matches!(ev, TransactionEvent::Timeout) {
                    SipCounters::inc(&self.shared.counters.bye_timeouts);
                }
            }
            done = e.tx.is_terminated();
            if let Some(t) = e.tx.next_timeout() {
                self.heap.push(Reverse((t, id, Slot::Client)));
            }
        }
        if done {
            self.clients.remove(&id);
        }
    }

    /// Creates a server transaction for `req` and returns its id.
    fn new_server(&mut self, req: &SipMessage, from: SocketAddr, now: Instant) -> u64 {
        let id = self.new_id();
        let key = TransactionKey::server(req);
        let tx = if matches!(req.method(), Method::Invite) {
            let tag = match req.to().tag() {
                Some(t) => t.to_string(),
                None => new_tag(),
            };
            ServerTx::Invite {
                tx: InviteServerTransaction::new(req, now, self.timers),
                echo: req.echo().clone(),
                tag,
                call_id: req.call_id().to_string(),
            }
        } else {
            ServerTx::NonInvite(NonInviteServerTransaction::new(req, now, self.timers))
        };
        self.server_index.insert(key.clone(), id);
        self.servers.insert(
            id,
            ServerEntry {
                key,
                dest: from,
                tx,
            },
        );
        id
    }

    /// Answers server transaction `id` with `status` (plus headers and an optional SDP body).
    #[allow(clippy::too_many_arguments)]
    fn respond(
        &mut self,
        id: u64,
        req: Option<&SipMessage>,
        status: u16,
        extra: &[(&str, &str)],
        sdp: Option<&str>,
        now: Instant,
        out: &mut Outbox,
    ) {
        let ua = self.cfg.user_agent.clone();
        let contact = self.contact.clone();
        let Some(e) = self.servers.get_mut(&id) else {
            return;
        };
        match &mut e.tx {
            ServerTx::Invite { tx, echo, tag, .. } => {
                let mut b = ResponseBuilder::new(echo, status).server(&ua);
                if status > 100 {
                    b = b.to_tag(tag);
                }
                if (101..300).contains(&status) {
                    b = b.contact(&contact);
                }
                for (n, v) in extra {
                    b = b.header(n, v);
                }
                if let Some(body) = sdp {
                    b = b.body("application/sdp", body.as_bytes());
                }
                let _ = tx.respond(status, b.build(), now);
            }
            ServerTx::NonInvite(tx) => {
                let Some(req) = req else { return };
                let tag = new_tag();
                let mut b = ResponseBuilder::new(req.echo(), status)
                    .server(&ua)
                    .to_tag(&tag);
                for (n, v) in extra {
                    b = b.header(n, v);
                }
                let _ = tx.respond(status, b.build(), now);
            }
        }
        self.flush_server(id, now, out);
    }

    fn handle_request(
        &mut self,
        req: SipMessage,
        from: SocketAddr,
        now: Instant,
        out: &mut Outbox,
    ) {
        let key = TransactionKey::server(&req);
        if matches!(req.method(), Method::Ack) {
            self.handle_ack(&req, &key, now, out);
            return;
        }
        if let Some(&id) = self.server_index.get(&key) {
            // A retransmission: the transaction resends its last response or absorbs it.
            if let Some(e) = self.servers.get_mut(&id) {
                match &mut e.tx {
                    ServerTx::Invite { tx, .. } => tx.handle_retransmission(),
                    ServerTx::NonInvite(tx) => tx.handle_retransmission(),
                }
            }
            self.flush_server(id, now, out);
            return;
        }
        let id = self.new_server(&req, from, now);
        match req.method() {
            Method::Invite if req.to().tag().is_none() => {
                self.flush_server(id, now, out); // 100 Trying
                self.handle_invite(id, &req, from, now, out);
            }
            Method::Invite => {
                self.flush_server(id, now, out);
                self.handle_reinvite(id, &req, now, out);
            }
            Method::Cancel => self.handle_cancel(id, &req, &key, now, out),
            Method::Bye => self.handle_bye(id, &req, now, out),
            Method::Options => {
                self.respond(
                    id,
                    Some(&req),
                    200,
                    &[("Allow", ALLOW), ("Accept", "application/sdp")],
                    None,
                    now,
                    out,
                );
            }
            Method::Info => {
                let status = if self.in_dialog(&req).is_some() {
                    200
                } else {
                    481
                };
                self.respond(id, Some(&req), status, &[], None, now, out);
            }
            Method::Other(_) => {
                self.respond(id, Some(&req), 501, &[("Allow", ALLOW)], None, now, out)
            }
            _ => self.respond(id, Some(&req), 405, &[("Allow", ALLOW)], None, now, out),
        }
    }

    /// The call an in-dialog request belongs to.
    fn in_dialog(&self, req: &SipMessage) -> Option<String> {
        let c = self.calls.get(req.call_id())?;
        c.dialog
            .matches_request(req)
            .then(|| req.call_id().to_string())
    }

    fn handle_ack(
        &mut self,
        ack: &SipMessage,
        key: &TransactionKey,
        now: Instant,
        out: &mut Outbox,
    ) {
        // ACK for a non-2xx final shares the INVITE's branch (same key).
        let id = self.server_index.get(key).copied().or_else(|| {
            // ACK for a 2xx is its own transaction: find the INVITE through the dialog.
            let cid = self.in_dialog(ack)?;
            self.calls.get(&cid).map(|c| c.invite_tx)
        });
        match id {
            Some(id) => {
                if let Some(ServerEntry {
                    tx: ServerTx::Invite { tx, .. },
                    ..
                }) = self.servers.get_mut(&id)
                {
                    tx.handle_ack(now);
                }
                self.flush_server(id, now, out);
            }
            None => SipCounters::inc(&self.shared.counters.dropped),
        }
    }

    /// Checks digest credentials when users are configured: `Ok` to go on, `Err` with the
    /// refusal (401 with a challenge, or 403).
    fn authenticate(&mut self, req: &SipMessage, now: Instant) -> Result<(), Refusal> {
        let Some(auth) = self.auth.as_mut() else {
            return Ok(());
        };
        let Some(value) = req.header("Authorization") else {
            return Err(Refusal {
                status: 401,
                challenge: Some(auth.challenge(now, false)),
                warning: None,
            });
        };
        let users = &self.cfg.auth_users;
        match auth.verify(value, req.method().as_str(), now, |u| users.get(u).cloned()) {
            AuthOutcome::Authorized { .. } => Ok(()),
            AuthOutcome::Stale => Err(Refusal {
                status: 401,
                challenge: Some(auth.challenge(now, true)),
                warning: None,
            }),
            AuthOutcome::Rejected(_) => Err(Refusal::status(403)),
        }
    }

    fn refuse(&mut self, id: u64, r: Refusal, now: Instant, out: &mut Outbox) {
        SipCounters::inc(&self.shared.counters.calls_refused);
        let ch;
        let mut extra: Vec<(&str, &str)> = match r.challenge {
            Some(c) => {
                ch = c;
                vec![("WWW-Authenticate", ch.as_str())]
            }
            None if r.status == 488 => vec![("Accept", "application/sdp")],
            None => vec![],
        };
        let warning = r
            .warning
            .map(|w| format!("399 {} \"{}\"", self.sent_by, w.replace(['"', '\\'], "'")));
        if let Some(w) = &warning {
            extra.push(("Warning", w.as_str()));
        }
        self.respond(id, None, r.status, &extra, None, now, out);
    }

    fn answer_config(&self, audio_port: u16, video_port: u16) -> AnswerConfig {
        let mut a = AnswerConfig::new(
            self.cfg.advertised_ip.unwrap_or(self.cfg.local_rtp_ip),
            audio_port,
            video_port,
        );
        a.audio_codecs = self.cfg.supported_codecs.clone();
        a.video_codecs = if self.with_video {
            self.cfg.supported_video_codecs.clone()
        } else {
            Vec::new()
        };
        a.session_id = rand::random::<u32>() as u64;
        a.session_version = a.session_id;
        a.session_name = self.cfg.user_agent.clone();
        a.rtcp_mux = true;
        a.telephone_event = true;
        // Retransmission streams are accepted once the media streams send and take them.
        a.video_rtx = false;
        a
    }

    fn handle_invite(
        &mut self,
        id: u64,
        req: &SipMessage,
        from: SocketAddr,
        now: Instant,
        out: &mut Outbox,
    ) {
        match self.setup_call(id, req, from, now) {
            Ok(()) => {
                let cid = req.call_id().to_string();
                self.respond(id, None, 180, &[], None, now, out);
                let answer_at = now + self.cfg.answer_after;
                if self.cfg.answer_after.is_zero() {
                    self.answer_call(&cid, now, out);
                } else {
                    if let Some(c) = self.calls.get_mut(&cid) {
                        c.state = CallState::Ringing { answer_at };
                    }
                    let rid = self.new_id();
                    self.ring_ids.insert(rid, cid);
                    self.heap.push(Reverse((answer_at, rid, Slot::Ring)));
                }
            }
            Err(r) => self.refuse(id, r, now, out),
        }
    }

    /// Everything between the INVITE and the 180: checks, ports, negotiation, sessions.
    fn setup_call(
        &mut self,
        id: u64,
        req: &SipMessage,
        from: SocketAddr,
        now: Instant,
    ) -> Result<(), Refusal> {
        if self.calls.contains_key(req.call_id()) {
            // A second INVITE with a live call's Call-ID and no To tag (a fork or a confused
            // peer): the id is taken.
            return Err(Refusal::status(486));
        }
        self.authenticate(req, now)?;
        let offer_video = req.body().windows(8).any(|w| w == b"m=video ");
        let mut x_headers: Vec<(String, String)> = req
            .x_headers()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        x_headers.sort();
        let incoming = IncomingCall {
            call_id: req.call_id().to_string(),
            caller: req.from().uri().as_str().to_string(),
            callee: req.to().uri().as_str().to_string(),
            caller_display_name: req.from().display_name().map(str::to_string),
            x_headers: x_headers.clone(),
            source: from,
            offers_video: offer_video,
        };
        let filter = self.shared.filter.read().clone();
        if let Some(f) = filter {
            if let CallDecision::Reject(code) = f(&incoming) {
                let code = if (300..=699).contains(&code) {
                    code
                } else {
                    603
                };
                return Err(Refusal::status(code));
            }
        }
        if self.cfg.max_sessions > 0 && self.calls.len() >= self.cfg.max_sessions {
            return Err(Refusal::status(486));
        }
        if req.body().is_empty() {
            return Err(Refusal::status(488));
        }
        let offer = SessionDescription::parse(req.body()).map_err(|_| Refusal::status(488))?;
        // Ports come from the pool; one another program holds fails the bind (no address reuse),
        // and the call then tries other ports. Ports that failed stay out of the pool until the
        // call is set up.
        let mut busy: Vec<(PortLease, Option<PortLease>)> = Vec::new();
        let (ans, cfg, info, audio_lease, video_lease, dialog, tag) = loop {
            // Ports: audio always; video only when the offer can have video with us.
            let audio_lease = self.shared.pool.acquire().ok_or(Refusal::status(503))?;
            let video_lease =
                if self.with_video && offer.accepts_video(&self.cfg.supported_video_codecs) {
                    self.shared.pool.acquire()
                } else {
                    None
                };
            let cfg = self.answer_config(
                audio_lease.port(),
                video_lease.as_ref().map_or(0, PortLease::port),
            );
            // Errors from here on drop the leases, which returns the ports.
            let ans = answer(&offer, &cfg).map_err(|e| Refusal::status(e.status_code()))?;
            let video_lease = if ans.has_video() { video_lease } else { None };
            let cfg = AnswerConfig {
                video_port: video_lease.as_ref().map_or(0, PortLease::port),
                ..cfg
            };
            let tag = match &self.servers.get(&id).map(|e| &e.tx) {
                Some(ServerTx::Invite { tag, .. }) => tag.clone(),
                _ => new_tag(),
            };
            let dialog = Dialog::uas(req, &tag).map_err(|e| Refusal::status(e.status()))?;
            let room_id = x_headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("X-Room-ID"))
                .map_or_else(|| req.call_id().to_string(), |(_, v)| v.clone());
            let mut meta: HashMap<String, String> = HashMap::new();
            meta.insert("backend".into(), "sip".into());
            meta.insert("call_id".into(), incoming.call_id.clone());
            meta.insert("caller".into(), incoming.caller.clone());
            meta.insert("callee".into(), incoming.callee.clone());
            meta.insert(
                "caller_display_name".into(),
                incoming
                    .caller_display_name
                    .clone()
                    .unwrap_or_default()
                    .trim_matches('"')
                    .to_string(),
            );
            if let Some(u) = req.from().uri().user() {
                meta.insert("caller_user".into(), u);
            }
            meta.insert("room_id".into(), room_id.clone());
            meta.insert("has_video".into(), ans.has_video().to_string());
            let neg = &ans.negotiation;
            meta.insert("payload_type".into(), neg.audio.pt.to_string());
            meta.insert("clock_rate".into(), neg.audio.clock_rate.to_string());
            meta.insert("audio_codec".into(), neg.audio.codec.to_string());
            meta.insert("remote_addr".into(), neg.audio.remote.to_string());
            meta.insert(
                "video_codec".into(),
                neg.video
                    .as_ref()
                    .map_or(String::new(), |v| v.codec.as_str().to_string()),
            );
            for (n, v) in &x_headers {
                meta.insert(n.clone(), v.clone());
            }
            let mut video_meta = HashMap::new();
            if let Some(v) = &neg.video {
                video_meta.insert("backend".to_string(), "sip-av".to_string());
                video_meta.insert("call_id".into(), incoming.call_id.clone());
                video_meta.insert("video_codec".into(), v.codec.as_str().to_string());
                video_meta.insert("payload_type".into(), v.pt.to_string());
                video_meta.insert("clock_rate".into(), v.clock_rate.to_string());
                video_meta.insert("video_remote_addr".into(), v.remote.to_string());
            }
            let spec = SessionSpec {
                room_id,
                participant_id: req
                    .from()
                    .uri()
                    .user()
                    .unwrap_or_else(|| incoming.caller.clone()),
                metadata: meta,
                video_metadata: video_meta,
                audio: self.audio_stream(neg, audio_lease.port()),
                video: match (&video_lease, &neg.video) {
                    (Some(l), Some(_)) => Some(self.video_stream(neg, l.port())),
                    _ => None,
                },
            };
            match self.shared.engine.create_session(spec) {
                Ok(info) => break (ans, cfg, info, audio_lease, video_lease, dialog, tag),
                Err(_) if busy.len() < MAX_BIND_RETRIES => busy.push((audio_lease, video_lease)),
                Err(e) => {
                    return Err(Refusal {
                        status: 503,
                        challenge: None,
                        warning: Some(format!("media: {e}")),
                    })
                }
            }
        };
        drop(busy);
        let neg = &ans.negotiation;
        let session = info.id;
        if let Ok(s) = self.shared.engine.session(session) {
            s.set_held(!neg.audio.direction.sends());
        }
        self.shared.views.write().insert(
            session,
            CallView {
                call_id: incoming.call_id.clone(),
            },
        );
        self.by_session.insert(session, incoming.call_id.clone());
        self.calls.insert(
            incoming.call_id,
            Call {
                state: CallState::Answered,
                dialog,
                local_tag: tag,
                invite_tx: id,
                peer: from,
                session,
                info: (*info).clone(),
                answer: ans,
                answer_cfg: cfg,
                leases: (audio_lease, video_lease),
            },
        );
        Ok(())
    }

    fn audio_stream(&self, neg: &Negotiation, port: u16) -> StreamConfig {
        let a = &neg.audio;
        StreamConfig {
            media: MediaParams::Audio(AudioParams {
                payload_type: a.pt,
                clock_rate: a.clock_rate,
                dtmf_payload_type: a.dtmf_pt,
            }),
            local_addr: SocketAddr::new(self.cfg.local_rtp_ip, port),
            remote_addr: a.remote,
            remote_rtcp_addr: Some(a.remote_rtcp),
            rtcp_mux: a.rtcp_mux,
            source_policy: self.source_policy(),
            rtcp_interval: self.cfg.rtcp_interval,
            cname: self.cname.clone(),
            session: SessionId::nil(),
        }
    }

    fn source_policy(&self) -> SourcePolicy {
        if self.cfg.symmetric_rtp {
            SourcePolicy::LatchFirst
        } else {
            SourcePolicy::RemoteOnly
        }
    }

    fn video_stream(&self, neg: &Negotiation, port: u16) -> StreamConfig {
        let v = neg.video.as_ref().expect("caller checked video");
        StreamConfig {
            media: MediaParams::Video(VideoParams {
                payload_type: v.pt,
                clock_rate: v.clock_rate,
                codec: v.codec,
                delivery: self.cfg.delivery,
                wait_for_keyframe: self.cfg.wait_for_keyframe,
                deliver_incomplete: false,
                mtu: self.cfg.mtu,
                packetization_mode: if v.packetization_mode == Some(0) {
                    PacketizationMode::SingleNal
                } else {
                    PacketizationMode::NonInterleaved
                },
            }),
            local_addr: SocketAddr::new(self.cfg.local_rtp_ip, port),
            remote_addr: v.remote,
            remote_rtcp_addr: Some(v.remote_rtcp),
            rtcp_mux: v.rtcp_mux,
            source_policy: self.source_policy(),
            rtcp_interval: self.cfg.rtcp_interval,
            cname: self.cname.clone(),
            session: SessionId::nil(),
        }
    }

    /// Sends the 200 with the answer and tells the application about the call.
    fn answer_call(&mut self, cid: &str, now: Instant, out: &mut Outbox) {
        let Some(c) = self.calls.get_mut(cid) else {
            return;
        };
        c.state = CallState::Answered;
        let (id, sdp, info) = (c.invite_tx, c.answer.sdp.clone(), c.info.clone());
        self.respond(id, None, 200, &[("Allow", ALLOW)], Some(&sdp), now, out);
        SipCounters::inc(&self.shared.counters.calls_answered);
        let key = crate::engine::event::dispatch_key(info.id);
        // A call must not go unannounced: when the application's callbacks are this far behind,
        // wait for room rather than drop the event.
        if let Err(ev) = self.dispatcher.post(key, SipEvent::Call(Box::new(info))) {
            self.dispatcher.post_wait(key, ev);
        }
    }

    fn handle_reinvite(&mut self, id: u64, req: &SipMessage, now: Instant, out: &mut Outbox) {
        let Some(cid) = self.in_dialog(req) else {
            self.respond(id, None, 481, &[], None, now, out);
            return;
        };
        if let Err(r) = self.authenticate(req, now) {
            self.refuse(id, r, now, out);
            return;
        }
        let call = self.calls.get_mut(&cid).expect("in_dialog found it");
        if let Err(e) = call.dialog.accept_request(req) {
            let status = e.status();
            self.respond(id, None, status, &[], None, now, out);
            return;
        }
        if matches!(call.state, CallState::Ringing { .. }) {
            // An offer while ours is still unanswered (RFC 3261 §14.2).
            self.respond(id, None, 491, &[], None, now, out);
            return;
        }
        let sdp = if req.body().is_empty() {
            // No offer: offer our current session again (answered in the ACK, which we accept
            // as it comes).
            call.answer.sdp.clone()
        } else {
            let Ok(offer) = SessionDescription::parse(req.body()) else {
                self.respond(id, None, 488, &[], None, now, out);
                return;
            };
            match reanswer(&offer, &call.answer, &call.answer_cfg) {
                Ok(re) => {
                    if let Ok(s) = self.shared.engine.session(call.session) {
                        let n = &re.answer.negotiation;
                        if re.audio_remote_changed {
                            s.audio().set_remote(n.audio.remote, n.audio.remote_rtcp);
                        }
                        if let (true, Some(v), Some(nv)) =
                            (re.video_remote_changed, s.video(), n.video.as_ref())
                        {
                            v.set_remote(nv.remote, nv.remote_rtcp);
                        }
                        s.set_held(
                            re.held || re.answer.negotiation.audio.direction == Direction::Inactive,
                        );
                    }
                    call.answer = re.answer;
                    call.answer.sdp.clone()
                }
                Err(_) => {
                    self.respond(id, None, 488, &[], None, now, out);
                    return;
                }
            }
        };
        call.invite_tx = id;
        if let Some(ServerEntry {
            tx: ServerTx::Invite { tag, .. },
            ..
        }) = self.servers.get_mut(&id)
        {
            *tag = call.local_tag.clone();
        }
        self.respond(id, None, 200, &[("Allow", ALLOW)], Some(&sdp), now, out);
    }

    fn handle_cancel(
        &mut self,
        id: u64,
        req: &SipMessage,
        key: &TransactionKey,
        now: Instant,
        out: &mut Outbox,
    ) {
        let Some(&inv) = self.server_index.get(&key.with_method(Method::Invite)) else {
            self.respond(id, Some(req), 481, &[], None, now, out);
            return;
        };
        self.respond(id, Some(req), 200, &[], None, now, out);
        let (outcome, cid) = match self.servers.get(&inv).map(|e| &e.tx) {
            Some(ServerTx::Invite { tx, call_id, .. }) => (tx.cancel(), call_id.clone()),
            _ => return,
        };
        if outcome == CancelOutcome::Cancelled {
            self.respond(inv, None, 487, &[], None, now, out);
            if self.calls.get(&cid).is_some_and(|c| c.invite_tx == inv) {
                self.end_call(&cid);
            }
        }
    }

    fn handle_bye(&mut self, id: u64, req: &SipMessage, now: Instant, out: &mut Outbox) {
        let Some(cid) = self.in_dialog(req) else {
            self.respond(id, Some(req), 481, &[], None, now, out);
            return;
        };
        let accepted = self
            .calls
            .get_mut(&cid)
            .map(|c| c.dialog.accept_request(req));
        if let Some(Err(e)) = accepted {
            self.respond(id, Some(req), e.status(), &[], None, now, out);
            return;
        }
        self.respond(id, Some(req), 200, &[], None, now, out);
        // A BYE before our 200 was sent ends the INVITE too (RFC 3261 §15.1.2).
        let ringing = self
            .calls
            .get(&cid)
            .filter(|c| matches!(c.state, CallState::Ringing { .. }))
            .map(|c| c.invite_tx);
        if let Some(inv) = ringing {
            self.respond(inv, None, 487, &[], None, now, out);
        }
        self.end_call(&cid);
    }

    /// Sends a BYE for call `cid` in a client transaction (retransmitted until answered).
    fn send_bye(&mut self, cid: &str, now: Instant, out: &mut Outbox) {
        let sent_by = self.sent_by.clone();
        let ua = self.cfg.user_agent.clone();
        let Some(c) = self.calls.get_mut(cid) else {
            return;
        };
        let dest = target_addr(c.dialog.remote_target()).unwrap_or(c.peer);
        let req = c
            .dialog
            .request(Method::Bye, &sent_by, "UDP")
            .header("User-Agent", &ua)
            .build();
        if let Ok(tx) = NonInviteClientTransaction::new(req, now, self.timers) {
            let id = self.new_id();
            self.clients.insert(id, ClientEntry { dest, tx });
            self.flush_client(id, out);
        }
    }

    /// Removes a call: closes its media (firing `on_client_disconnected`) and returns its ports.
    fn end_call(&mut self, cid: &str) {
        let Some(c) = self.calls.remove(cid) else {
            return;
        };
        self.by_session.remove(&c.session);
        self.shared.views.write().remove(&c.session);
        SipCounters::inc(&self.shared.counters.calls_ended);
        // The application may have closed the media already (hangup); that is fine.
        match &self.reaper {
            Some((tx, _)) => {
                if let Err(e) = tx.send((c.session, c.leases)) {
                    let (id, leases) = e.into_inner();
                    let _ = self.shared.engine.disconnect(id);
                    drop(leases);
                }
            }
            None => {
                let _ = self.shared.engine.disconnect(c.session);
            }
        }
    }

    fn handle_response(&mut self, resp: &SipMessage, now: Instant, out: &mut Outbox) {
        let _ = now;
        let ids: Vec<u64> = self
            .clients
            .iter()
            .filter(|(_, e)| e.tx.matches(resp))
            .map(|(id, _)| *id)
            .collect();
        if ids.is_empty() {
            SipCounters::inc(&self.shared.counters.dropped);
        }
        for id in ids {
            if let Some(e) = self.clients.get_mut(&id) {
                e.tx.handle_response(resp, now);
            }
            self.flush_client(id, out);
        }
    }
}

/// `sip:user@1.2.3.4:5060;...` → the socket address, when the host is an IP literal.
fn target_addr(uri: &str) -> Option<SocketAddr> {
    let u = crate::sip::Uri::parse(uri).ok()?;
    let host = u.host()?;
    let ip: IpAddr = host.trim_matches(['[', ']']).parse().ok()?;
    Some(SocketAddr::new(ip, u.port().unwrap_or(5060)))
}

impl SipHandler for SipCore {
    fn on_datagram(&mut self, data: &[u8], from: SocketAddr, now: Instant, out: &mut Outbox) {
        SipCounters::inc(&self.shared.counters.received);
        match SipMessage::parse(data) {
            Ok(msg) if msg.is_request() => self.handle_request(msg, from, now, out),
            Ok(msg) => self.handle_response(&msg, now, out),
            Err(ParseError::Reject(r)) => {
                SipCounters::inc(&self.shared.counters.rejected);
                // No transaction: a retransmission of a broken request gets the same answer.
                let tag = new_tag();
                out.push(
                    ResponseBuilder::rejection(&r)
                        .to_tag(&tag)
                        .server(self.server_agent())
                        .build(),
                    from,
                );
            }
            Err(ParseError::Drop { .. }) => SipCounters::inc(&self.shared.counters.dropped),
        }
    }

    fn on_wake(&mut self, now: Instant, out: &mut Outbox) {
        while let Ok(cmd) = self.commands.try_recv() {
            match cmd {
                Command::Hangup(session) => {
                    let Some(cid) = self.by_session.get(&session).cloned() else {
                        continue;
                    };
                    let ringing = self
                        .calls
                        .get(&cid)
                        .filter(|c| matches!(c.state, CallState::Ringing { .. }))
                        .map(|c| c.invite_tx);
                    match ringing {
                        // Not answered yet: refuse the INVITE instead of a BYE.
                        Some(inv) => self.respond(inv, None, 480, &[], None, now, out),
                        None => self.send_bye(&cid, now, out),
                    }
                    self.end_call(&cid);
                }
            }
        }
    }

    fn on_timeout(&mut self, now: Instant, out: &mut Outbox) {
        while let Some(Reverse((t, id, slot))) = self.heap.peek().copied() {
            if t > now {
                break;
            }
            self.heap.pop();
            match slot {
                Slot::Server => {
                    let due = self.servers.get_mut(&id).is_some_and(|e| match &mut e.tx {
                        ServerTx::Invite { tx, .. } => {
                            let due = tx.next_timeout().is_some_and(|n| n <= now);
                            if due {
                                tx.handle_timeout(now);
                            }
                            due
                        }
                        ServerTx::NonInvite(tx) => {
                            let due = tx.next_timeout().is_some_and(|n| n <= now);
                            if due {
                                tx.handle_timeout(now);
                            }
                            due
                        }
                    });
                    if due {
                        self.flush_server(id, now, out);
                    }
                }
                Slot::Client => {
                    let due = self.clients.get_mut(&id).is_some_and(|e| {
                        let due = e.tx.next_timeout().is_some_and(|n| n <= now);
                        if due {
                            e.tx.handle_timeout(now);
                        }
                        due
                    });
                    if due {
                        self.flush_client(id, out);
                    }
                }
                Slot::Ring => {
                    if let Some(cid) = self.ring_ids.remove(&id) {
                        let ringing = self
                            .calls
                            .get(&cid)
                            .is_some_and(|c| c.state == CallState::Ringing { answer_at: t });
                        if ringing {
                            self.answer_call(&cid, now, out);
                        }
                    }
                }
            }
        }
    }

    fn next_timeout(&mut self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((t, _, _))| *t)
    }

    fn on_shutdown(&mut self, now: Instant, out: &mut Outbox) {
        let cids: Vec<String> = self.calls.keys().cloned().collect();
        for cid in cids {
            let ringing = self
                .calls
                .get(&cid)
                .filter(|c| matches!(c.state, CallState::Ringing { .. }))
                .map(|c| c.invite_tx);
            match ringing {
                Some(inv) => self.respond(inv, None, 503, &[], None, now, out),
                None => self.send_bye(&cid, now, out),
            }
            self.end_call(&cid);
        }
    }
}
