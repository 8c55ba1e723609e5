//! The SIP user agent core: every transaction, call and registration of one backend, driven by
//! datagrams, commands and time, with no socket, thread or clock of its own.
//!
//! How to drive it (the kinds of method, the order to drain its outputs after an input, the
//! rule on time) is written on [`SipCore`]. This file holds the inputs, the outputs and the
//! transactions; the state itself is in `state.rs`.
//!
//! Incoming calls (`uas.rs`), dialed calls (`dial.rs`), what both do inside a dialog
//! (`call.rs`) and registrations (`register.rs`) are `impl SipCore` blocks over the same state, so
//! one socket serves every direction.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use super::command::Command;
use super::events::{SharedUpdate, SipCounter, SipEvent};
use super::host::MediaHost;
use super::ids::{CallNo, TxId};
use super::overload::{Overload, Shed, SipLoad};
use super::state::{
    ClientEntry, ClientKind, ClientRef, InviteEntry, ServerEntry, ServerTx, SipCore, SipHooks,
    TimerKey, ALLOW, SUPPORTED,
};
use super::timers::TimerQueue;
use crate::backend::sip_config::SipBackendConfig;
use crate::engine::EndReason;
use crate::sip::extensions::{unsupported_header, unsupported_requirements, SUPPORTED_OPTION_TAGS};
use crate::sip::route::NextHop;
use crate::sip::transaction::{
    InviteClientTransaction, InviteServerTransaction, NonInviteClientTransaction,
    NonInviteServerTransaction, TransactionEvent, TransactionKey,
};
use crate::sip::{
    Method, Outbox, ParseError, ResponseBuilder, SipMessage, SipPeer, SipRng, SipTransportKind,
};

/// `ip:port`, IPv6 in brackets.
pub(super) fn host_port(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v) => format!("{v}:{port}"),
        IpAddr::V6(v) => format!("[{v}]:{port}"),
    }
}

/// `tx`, told it runs over TCP/TLS when `reliable`.
fn reliably<T>(tx: T, reliable: bool, over_reliable: fn(T) -> T) -> T {
    if reliable {
        over_reliable(tx)
    } else {
        tx
    }
}

impl SipCore {
    /// A core for a backend bound at `local` (what Via and Contact name).
    pub fn new(
        cfg: SipBackendConfig,
        with_video: bool,
        host: Box<dyn MediaHost>,
        hooks: Arc<SipHooks>,
        local: SocketAddr,
        rng: SipRng,
    ) -> SipCore {
        let host_ip = match cfg.advertised_ip {
            Some(ip) => ip,
            None if local.ip().is_unspecified() => cfg.local_rtp_ip,
            None => local.ip(),
        };
        SipCore {
            overload: Overload::new(&cfg.overload),
            starting: super::overload::PendingStarts::default(),
            sent_by: host_port(host_ip, local.port()),
            host_ip,
            tcp_port: None,
            tls_port: None,
            auth: None,
            cfg,
            with_video,
            host,
            hooks,
            rng,
            next_id: 0,
            servers: HashMap::new(),
            server_index: HashMap::new(),
            clients: HashMap::new(),
            invites: BTreeMap::new(),
            client_index: HashMap::new(),
            calls: BTreeMap::new(),
            call_index: HashMap::new(),
            by_session: HashMap::new(),
            registrations: BTreeMap::new(),
            closing: HashMap::new(),
            ended_forks: HashMap::new(),
            orphan_invites: Vec::new(),
            timers: TimerQueue::default(),
            events: VecDeque::new(),
            updates: VecDeque::new(),
            stopping: false,
        }
    }

    /// A new transaction id (one counter for calls and transactions, as ever).
    pub(super) fn new_tx_id(&mut self) -> TxId {
        self.next_id += 1;
        TxId(self.next_id)
    }

    /// A new call number.
    pub(super) fn new_call_no(&mut self) -> CallNo {
        self.next_id += 1;
        CallNo(self.next_id)
    }

    /// Says that the engine also listens for `transport` (TCP, TLS) on `port`, so that Via
    /// and Contact on that transport name it. Without it they name the UDP port (a peer still
    /// answers on the connection we opened). Call before the first input.
    pub fn listen_on(&mut self, transport: SipTransportKind, port: u16) {
        match transport {
            SipTransportKind::Udp => self.sent_by = host_port(self.host_ip, port),
            SipTransportKind::Tcp => self.tcp_port = Some(port),
            SipTransportKind::Tls => self.tls_port = Some(port),
        }
    }

    /// Our `host:port` for a Via (and Contact) on `transport`.
    pub(super) fn sent_by_on(&self, transport: SipTransportKind) -> String {
        let port = match transport {
            SipTransportKind::Tcp => self.tcp_port,
            SipTransportKind::Tls => self.tls_port,
            SipTransportKind::Udp => None,
        };
        match port {
            Some(p) => host_port(self.host_ip, p),
            None => self.sent_by.clone(),
        }
    }

    /// Our Contact URI with `user`, reached over `transport`: `sip:user@host:port` on UDP,
    /// with `;transport=tcp` on TCP; on TLS `sips:` when the request that set the dialog up
    /// named a `sips:` URI (`sips`; RFC 3261 §8.1.1.8 and §12.1.1 require it then), else
    /// `sip:...;transport=tls` — a peer that dialled `sip:...;transport=tls` may not route to a
    /// `sips:` Contact at all (baresip 1.0 fails its ACK with ENOSYS).
    pub(super) fn contact_uri(
        &self,
        user: &str,
        transport: SipTransportKind,
        sips: bool,
    ) -> String {
        let sent_by = self.sent_by_on(transport);
        match transport {
            SipTransportKind::Udp => format!("sip:{user}@{sent_by}"),
            SipTransportKind::Tls if sips => format!("sips:{user}@{sent_by}"),
            t => format!("sip:{user}@{sent_by};transport={}", t.param()),
        }
    }

    /// Queues an event for the application.
    pub(super) fn emit(&mut self, ev: SipEvent) {
        self.events.push_back(ev);
    }

    /// Queues a change for the shared directory and counters.
    pub(super) fn publish(&mut self, update: SharedUpdate) {
        self.updates.push_back(update);
    }

    /// Counts one `counter`.
    pub(super) fn count(&mut self, counter: SipCounter) {
        self.publish(SharedUpdate::Counted(counter));
    }

    /// The next event for the application's callbacks. Drain after
    /// [`poll_update`](SipCore::poll_update).
    #[must_use]
    pub fn poll_event(&mut self) -> Option<SipEvent> {
        self.events.pop_front()
    }

    /// The next change for the [`CallDirectory`](super::CallDirectory) and
    /// [`SipCounters`](super::SipCounters) other threads read. Drain before
    /// [`poll_event`](SipCore::poll_event), so a callback finds its call already there.
    #[must_use]
    pub fn poll_update(&mut self) -> Option<SharedUpdate> {
        self.updates.pop_front()
    }

    /// Live calls (ringing, dialing and established).
    #[cfg(any(test, feature = "_internals"))]
    pub fn call_count(&self) -> usize {
        self.calls.len()
    }

    /// Live transactions of every kind (for bounds checks).
    #[cfg(any(test, feature = "_internals"))]
    pub fn transaction_count(&self) -> usize {
        self.servers.len() + self.clients.len() + self.invites.len()
    }

    /// Live registrations.
    #[cfg(any(test, feature = "_internals"))]
    pub fn registration_count(&self) -> usize {
        self.registrations.len()
    }

    /// Entries in every map and queue the core keeps, by name (a test checks that ended calls
    /// leave none behind).
    #[cfg(test)]
    pub(super) fn table_sizes(&self) -> Vec<(&'static str, usize)> {
        vec![
            ("servers", self.servers.len()),
            ("server_index", self.server_index.len()),
            ("clients", self.clients.len()),
            ("invites", self.invites.len()),
            ("client_index", self.client_index.len()),
            ("calls", self.calls.len()),
            ("call_index", self.call_index.len()),
            ("by_session", self.by_session.len()),
            ("registrations", self.registrations.len()),
            ("closing", self.closing.len()),
            ("ended_forks", self.ended_forks.len()),
            ("orphan_invites", self.orphan_invites.len()),
            ("events", self.events.len()),
            ("updates", self.updates.len()),
            ("timers", self.timers.len()),
            ("starting", self.starting.len()),
        ]
    }

    /// Where a request for `hop` goes: its address when it names an IP, else `fallback` (the
    /// core resolves no names; the application side resolved the first hop of every call).
    /// The transport is the one the hop's URI asks for, else the fallback's (a dialog set up
    /// over TCP stays on TCP). On the same transport the fallback's connection is kept (one
    /// connection per peer, used both ways as RFC 5923 aliases are): the engine sends on it
    /// while it is open, and to the hop's address (the peer's listening one, not the
    /// connection's source port) once it is not.
    pub(super) fn hop_addr(hop: Option<NextHop>, fallback: SipPeer) -> SipPeer {
        let Some(hop) = hop else { return fallback };
        let transport = hop.transport_kind().unwrap_or(fallback.transport);
        let addr = hop.socket_addr().unwrap_or(fallback.addr);
        SipPeer {
            addr,
            transport,
            conn: fallback.conn.filter(|_| transport == fallback.transport),
        }
    }

    // ---- inputs -------------------------------------------------------------------------

    /// One datagram arrived from `from`.
    pub fn handle_datagram(&mut self, data: &[u8], from: SipPeer, now: Instant, out: &mut Outbox) {
        self.count(SipCounter::Received);
        match SipMessage::parse(data) {
            Ok(msg) if msg.is_request() => self.handle_request(msg, from, now, out),
            Ok(msg) => self.handle_response(&msg, now, out),
            Err(ParseError::Reject(r)) => {
                self.count(SipCounter::Rejected);
                // No transaction: a retransmission of a broken request gets the same answer.
                let tag = self.rng.tag();
                out.push(
                    ResponseBuilder::rejection(&r)
                        .to_tag(&tag)
                        .server(&self.cfg.user_agent)
                        .build(),
                    from,
                );
            }
            Err(ParseError::Drop { .. }) => self.count(SipCounter::Dropped),
        }
        self.cancel_orphans(now, out);
    }

    /// Cancels the INVITE transactions whose calls ended meanwhile.
    fn cancel_orphans(&mut self, now: Instant, out: &mut Outbox) {
        // Bounded: each id is handled once and cancelling adds none.
        while let Some(id) = self.orphan_invites.pop() {
            if let Some(e) = self.invites.get_mut(&id) {
                e.tx.cancel(now);
            }
            self.flush_invite(id, now, out);
        }
    }

    /// Does what the application asked.
    pub fn handle_command(&mut self, cmd: Command, now: Instant, out: &mut Outbox) {
        if self.stopping {
            return;
        }
        match cmd {
            Command::Hangup(session) => {
                if let Some(&no) = self.by_session.get(&session) {
                    self.hang_up(no, now, out);
                }
            }
            Command::HangupWithReason(session, reason) => {
                if let Some(&no) = self.by_session.get(&session) {
                    self.hang_up_with(no, Some(reason), now, out);
                }
            }
            Command::Decide(call_id, decision) => {
                if let Some(&no) = self.call_index.get(&call_id) {
                    self.decide(no, decision, now, out);
                }
            }
            Command::MediaEnded(session, why) => {
                if let Some(&no) = self.by_session.get(&session) {
                    self.media_ended(no, why, now, out);
                }
            }
            Command::Dial(req) => self.dial(*req, now, out),
            Command::Hold(session, hold) => {
                if let Some(&no) = self.by_session.get(&session) {
                    self.request_hold(no, hold, now, out);
                }
            }
            Command::Video(session, on) => {
                if let Some(&no) = self.by_session.get(&session) {
                    self.request_video(no, on, now, out);
                }
            }
            Command::Register(id, req) => self.register(id, *req, now, out),
            Command::Unregister(id) => self.unregister(id, now, out),
            Command::MediaStarted(session, result) => {
                self.media_started(session, result, now, out);
            }
            Command::AcceptOffer(req) => self.accept_offer(*req, now),
        }
        self.cancel_orphans(now, out);
    }

    /// How far behind the thread driving the core is (overload control): it applies to the
    /// inputs that follow, until the next call.
    pub fn set_load(&mut self, load: SipLoad) {
        self.overload.set_load(load);
    }

    /// When [`handle_timeout`](SipCore::handle_timeout) next needs to run; `None` when
    /// nothing is pending. Ask after draining the other polls.
    #[must_use]
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.timers.poll_timeout()
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut Outbox) {
        // Bounded: each pass takes one key; a key that reschedules itself at `now` or earlier
        // waits for the next call.
        let mut budget = self.timers.len() + 16;
        while budget > 0 {
            budget -= 1;
            let Some(key) = self.timers.pop_due(now) else {
                break;
            };
            match key {
                TimerKey::Server(id) => {
                    if let Some(e) = self.servers.get_mut(&id) {
                        match &mut e.tx {
                            ServerTx::Invite { tx, .. } => tx.handle_timeout(now),
                            ServerTx::NonInvite(tx) => tx.handle_timeout(now),
                        }
                        self.flush_server(id, now, out);
                    }
                }
                TimerKey::Client(id) => {
                    if let Some(e) = self.clients.get_mut(&id) {
                        e.tx.handle_timeout(now);
                        self.flush_client(id, out);
                    }
                }
                TimerKey::Invite(id) => {
                    if let Some(e) = self.invites.get_mut(&id) {
                        e.tx.handle_timeout(now);
                        self.flush_invite(id, now, out);
                    }
                }
                TimerKey::Call(no) => self.call_timeout(no, now, out),
                TimerKey::Registration(id) => self.registration_timeout(id, now, out),
            }
        }
        self.cancel_orphans(now, out);
    }

    /// The backend is stopping: calls end (BYE, CANCEL, or 503 while ringing) and every
    /// registration is removed. Keep feeding datagrams and timeouts while
    /// [`is_lingering`](SipCore::is_lingering) so the un-REGISTERs can be answered.
    pub fn shutdown(&mut self, now: Instant, out: &mut Outbox) {
        self.stopping = true;
        let calls: Vec<CallNo> = self.calls.keys().copied().collect();
        for no in calls {
            self.hang_up_for_shutdown(no, now, out);
        }
        let regs: Vec<u64> = self.registrations.keys().copied().collect();
        for id in regs {
            self.unregister(id, now, out);
        }
        self.cancel_orphans(now, out);
    }

    /// True after `shutdown` while registrations still await their un-REGISTER's answer.
    pub fn is_lingering(&self) -> bool {
        !self.registrations.is_empty()
    }

    // ---- transactions -------------------------------------------------------------------

    /// Creates a server transaction for `req` and returns its id.
    fn new_server(&mut self, req: &SipMessage, from: SipPeer, now: Instant) -> TxId {
        let id = self.new_tx_id();
        let key = TransactionKey::server(req);
        let reliable = from.transport.is_reliable();
        let sips = req
            .request_uri()
            .is_some_and(|u| u.scheme().eq_ignore_ascii_case("sips"));
        let tx = if matches!(req.method(), Method::Invite) {
            let tag = match req.to().tag() {
                Some(t) => t.to_string(),
                None => self.rng.tag(),
            };
            ServerTx::Invite {
                tx: reliably(
                    InviteServerTransaction::new(req, now, self.cfg.timers),
                    reliable,
                    InviteServerTransaction::over_reliable_transport,
                ),
                echo: req.echo().clone(),
                tag,
                call: None,
                record_route: req
                    .record_routes()
                    .iter()
                    .map(|r| r.raw().to_string())
                    .collect(),
            }
        } else {
            ServerTx::NonInvite(reliably(
                NonInviteServerTransaction::new(req, now, self.cfg.timers),
                reliable,
                NonInviteServerTransaction::over_reliable_transport,
            ))
        };
        self.server_index.insert(key.clone(), id);
        self.servers.insert(
            id,
            ServerEntry {
                key,
                dest: from,
                tx,
                sips,
            },
        );
        id
    }

    /// Answers server transaction `id` with `status`, extra headers and an optional SDP body.
    /// `req` is needed for non-INVITE transactions (their responses echo it).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn respond(
        &mut self,
        id: TxId,
        req: Option<&SipMessage>,
        status: u16,
        extra: &[(&str, &str)],
        sdp: Option<&str>,
        now: Instant,
        out: &mut Outbox,
    ) {
        let ua = self.cfg.user_agent.clone();
        let Some((transport, sips)) = self.servers.get(&id).map(|e| (e.dest.transport, e.sips))
        else {
            return;
        };
        let contact = self.contact_uri("roomkit", transport, sips);
        let Some(e) = self.servers.get_mut(&id) else {
            return;
        };
        match &mut e.tx {
            ServerTx::Invite {
                tx,
                echo,
                tag,
                record_route,
                ..
            } => {
                let mut b = ResponseBuilder::new(echo, status).server(&ua);
                if status > 100 {
                    b = b.to_tag(tag);
                }
                if (101..300).contains(&status) {
                    for rr in record_route.iter() {
                        b = b.header("Record-Route", rr);
                    }
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
                let tag = self.rng.tag();
                let mut b = ResponseBuilder::new(req.echo(), status)
                    .server(&ua)
                    .to_tag(&tag);
                for (n, v) in extra {
                    b = b.header(n, v);
                }
                if let Some(body) = sdp {
                    b = b.body("application/sdp", body.as_bytes());
                }
                let _ = tx.respond(status, b.build(), now);
            }
        }
        self.flush_server(id, now, out);
    }

    /// Sends what a server transaction queued, acts on its events and schedules its timer.
    pub(super) fn flush_server(&mut self, id: TxId, now: Instant, out: &mut Outbox) {
        let mut ack_timeout_2xx = None;
        let mut terminated = false;
        let mut next = None;
        if let Some(e) = self.servers.get_mut(&id) {
            match &mut e.tx {
                ServerTx::Invite { tx, call, .. } => {
                    while let Some(d) = tx.poll_transmit() {
                        out.push(d, e.dest);
                    }
                    while let Some(ev) = tx.poll_event() {
                        if let TransactionEvent::AckTimeout { status } = ev {
                            if (200..300).contains(&status) {
                                ack_timeout_2xx = *call;
                            }
                        }
                    }
                    terminated = tx.is_terminated();
                    next = tx.poll_timeout();
                }
                ServerTx::NonInvite(tx) => {
                    while let Some(d) = tx.poll_transmit() {
                        out.push(d, e.dest);
                    }
                    while tx.poll_event().is_some() {}
                    terminated = tx.is_terminated();
                    next = tx.poll_timeout();
                }
            }
        }
        if let Some(no) = ack_timeout_2xx {
            // No ACK for our 2xx: the call is dead (RFC 3261 §13.3.1.4).
            if self.calls.get(&no).is_some_and(|c| c.invite_tx == Some(id)) {
                self.send_bye(no, now, out);
                self.end_call(no, "no ACK for our 200", EndReason::Error);
            }
        }
        if terminated {
            if let Some(e) = self.servers.remove(&id) {
                self.server_index.remove(&e.key);
            }
            self.timers.set(TimerKey::Server(id), None);
        } else {
            self.timers.set(TimerKey::Server(id), next);
        }
    }

    /// Starts a non-INVITE client transaction for `request` towards `dest`.
    pub(super) fn send_non_invite(
        &mut self,
        request: Vec<u8>,
        dest: SipPeer,
        kind: ClientKind,
        now: Instant,
        out: &mut Outbox,
    ) -> Option<TxId> {
        let tx = reliably(
            NonInviteClientTransaction::new(request, now, self.cfg.timers).ok()?,
            dest.transport.is_reliable(),
            NonInviteClientTransaction::over_reliable_transport,
        );
        let id = self.new_tx_id();
        self.client_index
            .insert(tx.key().clone(), ClientRef::NonInvite(id));
        self.clients.insert(
            id,
            ClientEntry {
                dest,
                tx,
                kind,
                closes: None,
            },
        );
        self.flush_client(id, out);
        Some(id)
    }

    pub(super) fn flush_client(&mut self, id: TxId, out: &mut Outbox) {
        let Some(e) = self.clients.get_mut(&id) else {
            return;
        };
        while let Some(d) = e.tx.poll_transmit() {
            out.push(d, e.dest);
        }
        while let Some(ev) = e.tx.poll_event() {
            match (ev, e.kind) {
                (
                    TransactionEvent::Timeout | TransactionEvent::TransportError(_),
                    ClientKind::Bye,
                ) => {
                    // `e` borrows the clients: queue the count on the field itself.
                    self.updates
                        .push_back(SharedUpdate::Counted(SipCounter::ByeTimeouts))
                }
                (TransactionEvent::Response(r), ClientKind::Bye)
                    if r.status().is_some_and(|s| s >= 200) =>
                {
                    self.updates
                        .push_back(SharedUpdate::Counted(SipCounter::ByesAnswered))
                }
                _ => {}
            }
        }
        if e.tx.is_terminated() {
            let key = e.tx.key().clone();
            if let Some(call_id) = e.closes.take() {
                if self.closing.get(&call_id).is_some_and(|(_, t)| *t == id) {
                    self.closing.remove(&call_id);
                }
            }
            self.clients.remove(&id);
            self.client_index.remove(&key);
            self.timers.set(TimerKey::Client(id), None);
        } else {
            let next = e.tx.poll_timeout();
            self.timers.set(TimerKey::Client(id), next);
        }
    }

    /// Starts an INVITE client transaction for call `call`.
    pub(super) fn send_invite(
        &mut self,
        request: Vec<u8>,
        dest: SipPeer,
        call: CallNo,
        reinvite: bool,
        now: Instant,
        out: &mut Outbox,
    ) -> Result<TxId, String> {
        let tx = reliably(
            InviteClientTransaction::new(request, now, self.cfg.timers)
                .map_err(|e| e.to_string())?,
            dest.transport.is_reliable(),
            InviteClientTransaction::over_reliable_transport,
        );
        let id = self.new_tx_id();
        self.client_index
            .insert(tx.key().clone(), ClientRef::Invite(id));
        self.invites.insert(
            id,
            InviteEntry {
                dest,
                tx,
                call,
                reinvite,
            },
        );
        self.flush_invite(id, now, out);
        Ok(id)
    }

    /// Sends what an INVITE client transaction queued and hands its events to the call.
    pub(super) fn flush_invite(&mut self, id: TxId, now: Instant, out: &mut Outbox) {
        let Some(e) = self.invites.get_mut(&id) else {
            return;
        };
        while let Some(d) = e.tx.poll_transmit() {
            out.push(d, e.dest);
        }
        let mut events = Vec::new();
        while let Some(ev) = e.tx.poll_event() {
            events.push(ev);
        }
        let (call, reinvite) = (e.call, e.reinvite);
        if e.tx.is_terminated() {
            let key = e.tx.key().clone();
            self.invites.remove(&id);
            self.client_index.remove(&key);
            self.ended_forks.remove(&id);
            self.timers.set(TimerKey::Invite(id), None);
        } else {
            let next = e.tx.poll_timeout();
            self.timers.set(TimerKey::Invite(id), next);
        }
        for ev in events {
            if reinvite {
                self.on_reinvite_event(call, id, ev, now, out);
            } else {
                self.on_dial_event(call, id, ev, now, out);
            }
        }
    }

    /// The engine could not carry messages to `dest` (a TCP/TLS connection refused, reset or
    /// closed, whose handshake failed, or whose keep-alive went unanswered; `reason` says which):
    /// every client transaction waiting on that connection ends as if it had been answered 503
    /// (RFC 3261 §8.1.3.1), instead of waiting for timer B or F, and the registrations sent
    /// there fail or re-register (see [`Registration::handle_transport_error`]). A transaction
    /// is on it when it was sent on that connection, or to that address over that transport on
    /// no connection in particular.
    ///
    /// [`Registration::handle_transport_error`]: crate::sip::register::Registration::handle_transport_error
    pub fn handle_transport_error(
        &mut self,
        dest: SipPeer,
        reason: &str,
        now: Instant,
        out: &mut Outbox,
    ) {
        let on_it = |d: &SipPeer| {
            d.transport == dest.transport
                && match (d.conn, dest.conn) {
                    (Some(a), Some(b)) if a == b => true,
                    (Some(_), Some(_)) => false,
                    _ => d.addr == dest.addr,
                }
        };
        let clients: Vec<TxId> = self
            .clients
            .iter()
            .filter(|(_, e)| on_it(&e.dest))
            .map(|(id, _)| *id)
            .collect();
        for id in clients {
            if let Some(e) = self.clients.get_mut(&id) {
                e.tx.transport_failed(reason);
            }
            self.flush_client(id, out);
        }
        let invites: Vec<TxId> = self
            .invites
            .iter()
            .filter(|(_, e)| on_it(&e.dest))
            .map(|(id, _)| *id)
            .collect();
        for id in invites {
            if let Some(e) = self.invites.get_mut(&id) {
                e.tx.transport_failed(reason);
            }
            self.flush_invite(id, now, out);
        }
        let regs: Vec<u64> = self
            .registrations
            .iter()
            .filter(|(_, e)| on_it(&e.dest))
            .map(|(id, _)| *id)
            .collect();
        for id in regs {
            self.registration_transport_error(id, reason, now, out);
        }
        self.cancel_orphans(now, out);
    }

    fn handle_response(&mut self, resp: &SipMessage, now: Instant, out: &mut Outbox) {
        let key = TransactionKey::client(resp);
        // An INVITE client transaction also takes the responses to its CANCEL.
        let invite_key = if resp.cseq().method == Method::Cancel {
            key.with_method(Method::Invite)
        } else {
            key.clone()
        };
        if let Some(ClientRef::Invite(id)) = self.client_index.get(&invite_key).copied() {
            if let Some(e) = self.invites.get_mut(&id) {
                e.tx.handle_response(resp, now);
            }
            self.flush_invite(id, now, out);
            return;
        }
        if let Some(ClientRef::NonInvite(id)) = self.client_index.get(&key).copied() {
            if let Some(e) = self.clients.get_mut(&id) {
                e.tx.handle_response(resp, now);
            }
            self.flush_client(id, out);
            return;
        }
        let reg = self
            .registrations
            .iter()
            .find(|(_, r)| r.reg.matches(resp))
            .map(|(id, _)| *id);
        match reg {
            Some(id) => self.registration_response(id, resp, now, out),
            None => self.count(SipCounter::Dropped),
        }
    }

    // ---- requests -----------------------------------------------------------------------

    fn handle_request(&mut self, req: SipMessage, from: SipPeer, now: Instant, out: &mut Outbox) {
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
        let ua = &self.cfg.user_agent;
        let ip = from.addr.ip();
        if let Some(refusal) = self
            .overload
            .over_source_rate(&req, ip, now, &mut self.rng, ua)
        {
            // Answered without a transaction: a flood keeps no state (see overload.rs).
            self.count(SipCounter::RequestsRateLimited);
            if matches!(req.method(), Method::Invite) {
                self.count(SipCounter::CallsRefused);
                self.count(SipCounter::CallsRefusedOverload);
            }
            out.push(refusal, from);
            return;
        }
        let id = self.new_server(&req, from, now);
        // An extension we do not implement that the request insists on: 420 (RFC 3261
        // §8.2.2.3). CANCEL is never refused for this.
        let unknown = unsupported_requirements(&req, SUPPORTED_OPTION_TAGS);
        if !unknown.is_empty() {
            let listed = unsupported_header(&unknown);
            let mut extra = vec![("Supported", SUPPORTED)];
            if !listed.is_empty() {
                extra.push(("Unsupported", listed.as_str()));
            }
            self.respond(id, Some(&req), 420, &extra, None, now, out);
            return;
        }
        match req.method() {
            Method::Invite if req.to().tag().is_none() => {
                if self.stopping {
                    self.respond(id, None, 503, &[], None, now, out);
                    return;
                }
                if let Some(why) = self.overload.shed(&self.starting, now) {
                    // Behind already: a 503 now costs less than the call would, and comes
                    // before the caller retransmits. Its retransmissions get the same 503
                    // from this transaction.
                    let retry = self.overload.retry_after(&mut self.rng);
                    self.count(SipCounter::CallsRefused);
                    self.count(SipCounter::CallsRefusedOverload);
                    self.count(match why {
                        Shed::SipBacklog => SipCounter::RefusedSipBacklog,
                        Shed::SetupQueue => SipCounter::RefusedSetupQueue,
                    });
                    self.respond(id, None, 503, &[("Retry-After", &retry)], None, now, out);
                    return;
                }
                self.flush_server(id, now, out); // 100 Trying
                self.handle_invite(id, &req, from, now, out);
            }
            Method::Invite => {
                self.flush_server(id, now, out);
                self.handle_reinvite(id, &req, now, out);
            }
            Method::Cancel => self.handle_cancel(id, &req, &key, now, out),
            Method::Bye => self.handle_bye(id, &req, now, out),
            Method::Info => self.handle_info(id, &req, now, out),
            Method::Update => self.handle_update(id, &req, now, out),
            Method::Options => {
                self.respond(
                    id,
                    Some(&req),
                    200,
                    &[
                        ("Allow", ALLOW),
                        ("Accept", "application/sdp"),
                        ("Supported", SUPPORTED),
                    ],
                    None,
                    now,
                    out,
                );
            }
            Method::Other(_) => {
                self.respond(id, Some(&req), 501, &[("Allow", ALLOW)], None, now, out)
            }
            _ => self.respond(id, Some(&req), 405, &[("Allow", ALLOW)], None, now, out),
        }
    }

    /// The call an in-dialog request belongs to.
    /// The call an in-dialog request (BYE, INFO, UPDATE) belongs to, once its dialog has
    /// accepted it (CSeq order, target refresh). Otherwise the request is answered here — 481
    /// outside any dialog of ours, or the dialog's refusal — and `None` comes back.
    pub(super) fn accept_in_dialog(
        &mut self,
        id: TxId,
        req: &SipMessage,
        now: Instant,
        out: &mut Outbox,
    ) -> Option<CallNo> {
        let Some(no) = self.in_dialog(req) else {
            self.respond(id, Some(req), 481, &[], None, now, out);
            return None;
        };
        let accepted = self
            .calls
            .get_mut(&no)
            .and_then(|c| c.dialog.as_mut())
            .map(|d| d.accept_request(req));
        if let Some(Err(e)) = accepted {
            self.respond(id, Some(req), e.status(), &[], None, now, out);
            return None;
        }
        Some(no)
    }

    pub(super) fn in_dialog(&self, req: &SipMessage) -> Option<CallNo> {
        let no = *self.call_index.get(req.call_id())?;
        let c = self.calls.get(&no)?;
        c.dialog
            .as_ref()
            .is_some_and(|d| d.matches_request(req))
            .then_some(no)
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
            let no = self.in_dialog(ack)?;
            self.calls.get(&no).and_then(|c| c.invite_tx)
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
            None => self.count(SipCounter::Dropped),
        }
    }
}
