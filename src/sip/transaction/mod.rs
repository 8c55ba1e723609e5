//! SIP transactions over an unreliable transport (UDP), RFC 3261 §17, without I/O.
//!
//! Each state machine is driven the same way: feed it what arrived (with the current time),
//! then drain [`poll_transmit`](InviteServerTransaction::poll_transmit) and
//! [`poll_event`](InviteServerTransaction::poll_event), and call `handle_timeout` once the
//! instant returned by `next_timeout` has passed. Nothing here reads a clock or touches a socket,
//! so tests run on virtual time.
//!
//! There are four: INVITE and non-INVITE, server and client. The INVITE client transaction also
//! sends the CANCEL for its INVITE (in a non-INVITE client transaction it owns).
//!
//! The INVITE server transaction also retransmits a 2xx until the ACK arrives (RFC 3261 §13.3.1.4
//! gives that job to the UAS core; keeping it here puts every retransmission timer in one place)
//! and absorbs INVITE retransmissions after the 2xx as RFC 6026's "Accepted" state does.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use super::builder::{RequestBuilder, ResponseBuilder};
use super::message::{Method, SipMessage};

/// The RFC 3261 timer base values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// Round-trip estimate, 500 ms.
    pub t1: Duration,
    /// Longest retransmission interval for non-INVITE requests and INVITE responses, 4 s.
    pub t2: Duration,
    /// How long a message may linger in the network, 5 s.
    pub t4: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl Timers {
    /// 64×T1: how long a transaction keeps trying (timers B, F, H, J, M and the 2xx ACK wait).
    pub fn give_up(&self) -> Duration {
        self.t1 * 64
    }

    /// Timer D: how long an INVITE client transaction re-ACKs retransmissions of a non-2xx
    /// final over UDP. RFC 3261 asks for at least 32 s, and it must also cover the server's
    /// 64×T1 of retransmissions.
    pub fn timer_d(&self) -> Duration {
        Duration::from_secs(32).max(self.give_up())
    }
}

/// Identifies a transaction: the top Via branch and sent-by plus the method (RFC 3261
/// §17.2.3). ACK is folded into INVITE so that an ACK for a non-2xx final finds its INVITE.
/// Requests without the RFC 3261 magic cookie (RFC 2543 peers) are keyed by Call-ID, CSeq number,
/// From tag and the raw top Via instead.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TransactionKey {
    branch: String,
    sent_by: String,
    method: Method,
}

impl TransactionKey {
    /// The key of a server transaction for a received request.
    pub fn server(request: &SipMessage) -> TransactionKey {
        let via = request.top_via();
        let branch = if via.has_rfc3261_branch() {
            via.branch().unwrap_or_default().to_string()
        } else {
            format!(
                "rfc2543|{}|{}|{}|{}",
                request.call_id(),
                request.cseq().number,
                request.from().tag().unwrap_or_default(),
                via.raw()
            )
        };
        let method = match request.method() {
            Method::Ack => Method::Invite,
            m => m.clone(),
        };
        TransactionKey {
            branch,
            sent_by: via.sent_by().to_ascii_lowercase(),
            method,
        }
    }

    /// The key of the client transaction a received response belongs to.
    pub fn client(response: &SipMessage) -> TransactionKey {
        let via = response.top_via();
        TransactionKey {
            branch: via.branch().unwrap_or_default().to_string(),
            sent_by: String::new(),
            method: response.cseq().method.clone(),
        }
    }

    /// The same key for another method: a CANCEL's key with `Method::Invite` finds the INVITE
    /// it cancels.
    pub fn with_method(&self, method: Method) -> TransactionKey {
        TransactionKey {
            method,
            ..self.clone()
        }
    }

    /// The method part of the key.
    pub fn method(&self) -> &Method {
        &self.method
    }
}

/// What a transaction reports to the layer above.
#[derive(Debug, Clone)]
pub enum TransactionEvent {
    /// The ACK for our final response arrived.
    AckReceived,
    /// No ACK within 64×T1 of the final response. After a 2xx the call must be torn down (send
    /// BYE); after a non-2xx the transaction simply ends.
    AckTimeout {
        /// Status of the unacknowledged final response.
        status: u16,
    },
    /// A response to our request (client transactions; provisional and final).
    Response(Box<SipMessage>),
    /// No final response to our request within 64×T1 (timer F): treat as 408.
    Timeout,
    /// The transaction is finished and can be forgotten.
    Terminated,
}

/// A response the transaction cannot send in its current state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransactionError {
    /// A final response has already been sent.
    FinalAlreadySent,
    /// The status code is not 100..=699.
    BadStatus(u16),
    /// The transaction has terminated.
    Terminated,
    /// The request we were asked to send does not parse.
    BadRequest(String),
}

impl fmt::Display for TransactionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransactionError::FinalAlreadySent => f.write_str("a final response was already sent"),
            TransactionError::BadStatus(s) => write!(f, "status {s} is not 100..=699"),
            TransactionError::Terminated => f.write_str("the transaction has terminated"),
            TransactionError::BadRequest(e) => write!(f, "request does not parse: {e}"),
        }
    }
}

impl std::error::Error for TransactionError {}

/// Result of asking an INVITE server transaction to honour a CANCEL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// No final response yet: answer the INVITE with 487 now.
    Cancelled,
    /// A final response was already sent; the CANCEL changes nothing (answer it 200 anyway).
    TooLate,
}

/// Retransmission schedule shared by the state machines: an interval that doubles up to a cap.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    next: Instant,
    interval: Duration,
    cap: Duration,
}

impl Backoff {
    fn start(now: Instant, first: Duration, cap: Duration) -> Self {
        Backoff {
            next: now + first,
            interval: first,
            cap,
        }
    }

    fn advance(&mut self) {
        self.interval = (self.interval * 2).min(self.cap);
        self.next += self.interval;
    }
}

fn earliest(times: &[Option<Instant>]) -> Option<Instant> {
    times.iter().flatten().min().copied()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InviteServerState {
    /// No final response yet.
    Proceeding,
    /// A non-2xx final was sent; retransmitting it (timer G) until ACK or timer H.
    Completed,
    /// A 2xx was sent; retransmitting it until ACK, then absorbing retransmissions.
    Accepted,
    /// ACK for a non-2xx received; absorbing ACK retransmissions until timer I.
    Confirmed,
    /// Finished.
    Terminated,
}

/// The server side of an INVITE (RFC 3261 §17.2.1 with the 2xx handling of §13.3.1.4).
#[derive(Debug)]
pub struct InviteServerTransaction {
    key: TransactionKey,
    timers: Timers,
    state: InviteServerState,
    last_response: Option<Vec<u8>>,
    final_status: Option<u16>,
    acked: bool,
    retransmit: Option<Backoff>,
    give_up_at: Option<Instant>,
    end_at: Option<Instant>,
    transmit: VecDeque<Vec<u8>>,
    events: VecDeque<TransactionEvent>,
}

impl InviteServerTransaction {
    /// Starts the transaction for a received INVITE and queues `100 Trying` at once.
    pub fn new(invite: &SipMessage, now: Instant, timers: Timers) -> Self {
        let _ = now;
        let trying = ResponseBuilder::new(invite.echo(), 100).build();
        let mut tx = InviteServerTransaction {
            key: TransactionKey::server(invite),
            timers,
            state: InviteServerState::Proceeding,
            last_response: Some(trying.clone()),
            final_status: None,
            acked: false,
            retransmit: None,
            give_up_at: None,
            end_at: None,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
        };
        tx.transmit.push_back(trying);
        tx
    }

    /// The key this transaction answers to.
    pub fn key(&self) -> &TransactionKey {
        &self.key
    }

    /// Status of the final response sent, if any.
    pub fn final_status(&self) -> Option<u16> {
        self.final_status
    }

    /// True once the ACK for the final response has arrived.
    pub fn is_acked(&self) -> bool {
        self.acked
    }

    /// True when the transaction has ended and can be dropped.
    pub fn is_terminated(&self) -> bool {
        self.state == InviteServerState::Terminated
    }

    /// Feeds a request that belongs to this transaction: a retransmitted INVITE (answered with
    /// the last response, or absorbed) or an ACK.
    pub fn handle_request(&mut self, request: &SipMessage, now: Instant) {
        match request.method() {
            Method::Ack => self.handle_ack(now),
            Method::Invite => self.handle_retransmission(),
            _ => {}
        }
    }

    /// A retransmitted INVITE: resend the last response unless the 2xx was already ACKed.
    pub fn handle_retransmission(&mut self) {
        let resend = match self.state {
            InviteServerState::Proceeding | InviteServerState::Completed => true,
            InviteServerState::Accepted => !self.acked,
            InviteServerState::Confirmed | InviteServerState::Terminated => false,
        };
        if resend {
            if let Some(r) = &self.last_response {
                self.transmit.push_back(r.clone());
            }
        }
    }

    /// The ACK for our final response (for a 2xx it arrives in a new transaction; the dialog
    /// layer routes it here).
    pub fn handle_ack(&mut self, now: Instant) {
        match self.state {
            InviteServerState::Completed => {
                self.acked = true;
                self.state = InviteServerState::Confirmed;
                self.retransmit = None;
                self.give_up_at = None;
                self.end_at = Some(now + self.timers.t4);
                self.events.push_back(TransactionEvent::AckReceived);
            }
            InviteServerState::Accepted if !self.acked => {
                self.acked = true;
                self.retransmit = None;
                self.give_up_at = None;
                self.events.push_back(TransactionEvent::AckReceived);
            }
            _ => {}
        }
    }

    /// Sends a response from the layer above. Provisional responses may be repeated; the first
    /// final response fixes the outcome.
    pub fn respond(
        &mut self,
        status: u16,
        response: Vec<u8>,
        now: Instant,
    ) -> Result<(), TransactionError> {
        if !(100..=699).contains(&status) {
            return Err(TransactionError::BadStatus(status));
        }
        match self.state {
            InviteServerState::Proceeding => {}
            InviteServerState::Terminated => return Err(TransactionError::Terminated),
            _ => return Err(TransactionError::FinalAlreadySent),
        }
        self.transmit.push_back(response.clone());
        self.last_response = Some(response);
        if status < 200 {
            return Ok(());
        }
        self.final_status = Some(status);
        let give_up = now + self.timers.give_up();
        self.retransmit = Some(Backoff::start(now, self.timers.t1, self.timers.t2));
        self.give_up_at = Some(give_up);
        if status < 300 {
            self.state = InviteServerState::Accepted;
            // Timer L: stay to absorb INVITE retransmissions for 64×T1.
            self.end_at = Some(give_up);
        } else {
            self.state = InviteServerState::Completed;
        }
        Ok(())
    }

    /// A CANCEL for this INVITE arrived.
    pub fn cancel(&self) -> CancelOutcome {
        if self.state == InviteServerState::Proceeding {
            CancelOutcome::Cancelled
        } else {
            CancelOutcome::TooLate
        }
    }

    /// When `handle_timeout` next needs to run.
    pub fn next_timeout(&self) -> Option<Instant> {
        earliest(&[
            self.retransmit.map(|b| b.next),
            self.give_up_at,
            self.end_at,
        ])
    }

    /// Runs every timer that is due at `now`, in time order.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(due) = self.next_timeout().filter(|t| *t <= now) {
            if self.give_up_at == Some(due) {
                self.give_up_at = None;
                self.retransmit = None;
                self.events.push_back(TransactionEvent::AckTimeout {
                    status: self.final_status.unwrap_or_default(),
                });
                self.terminate();
            } else if self.retransmit.map(|b| b.next) == Some(due) {
                if let Some(r) = &self.last_response {
                    self.transmit.push_back(r.clone());
                }
                if let Some(b) = self.retransmit.as_mut() {
                    b.advance();
                }
            } else {
                self.terminate();
            }
        }
    }

    fn terminate(&mut self) {
        if self.state != InviteServerState::Terminated {
            self.state = InviteServerState::Terminated;
            self.retransmit = None;
            self.give_up_at = None;
            self.end_at = None;
            self.events.push_back(TransactionEvent::Terminated);
        }
    }

    /// The next datagram to send to the request's source.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }

    /// The next event for the layer above.
    pub fn poll_event(&mut self) -> Option<TransactionEvent> {
        self.events.pop_front()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NonInviteServerState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

/// The server side of a non-INVITE request (BYE, CANCEL, OPTIONS, ...), RFC 3261 §17.2.2.
#[derive(Debug)]
pub struct NonInviteServerTransaction {
    key: TransactionKey,
    timers: Timers,
    state: NonInviteServerState,
    last_response: Option<Vec<u8>>,
    end_at: Option<Instant>,
    transmit: VecDeque<Vec<u8>>,
    events: VecDeque<TransactionEvent>,
}

impl NonInviteServerTransaction {
    /// Starts the transaction for a received request. Nothing is sent until `respond`.
    pub fn new(request: &SipMessage, now: Instant, timers: Timers) -> Self {
        let _ = now;
        NonInviteServerTransaction {
            key: TransactionKey::server(request),
            timers,
            state: NonInviteServerState::Trying,
            last_response: None,
            end_at: None,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The key this transaction answers to.
    pub fn key(&self) -> &TransactionKey {
        &self.key
    }

    /// True when the transaction has ended and can be dropped.
    pub fn is_terminated(&self) -> bool {
        self.state == NonInviteServerState::Terminated
    }

    /// A retransmission of the request: absorbed, or answered with the last response.
    pub fn handle_retransmission(&mut self) {
        if matches!(
            self.state,
            NonInviteServerState::Proceeding | NonInviteServerState::Completed
        ) {
            if let Some(r) = &self.last_response {
                self.transmit.push_back(r.clone());
            }
        }
    }

    /// Sends a response from the layer above.
    pub fn respond(
        &mut self,
        status: u16,
        response: Vec<u8>,
        now: Instant,
    ) -> Result<(), TransactionError> {
        if !(100..=699).contains(&status) {
            return Err(TransactionError::BadStatus(status));
        }
        match self.state {
            NonInviteServerState::Trying | NonInviteServerState::Proceeding => {}
            NonInviteServerState::Completed => return Err(TransactionError::FinalAlreadySent),
            NonInviteServerState::Terminated => return Err(TransactionError::Terminated),
        }
        self.transmit.push_back(response.clone());
        self.last_response = Some(response);
        if status < 200 {
            self.state = NonInviteServerState::Proceeding;
        } else {
            self.state = NonInviteServerState::Completed;
            // Timer J: absorb retransmissions for 64×T1.
            self.end_at = Some(now + self.timers.give_up());
        }
        Ok(())
    }

    /// When `handle_timeout` next needs to run.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.end_at
    }

    /// Runs timer J when due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.end_at.is_some_and(|t| t <= now) {
            self.end_at = None;
            self.state = NonInviteServerState::Terminated;
            self.events.push_back(TransactionEvent::Terminated);
        }
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }

    /// The next event for the layer above.
    pub fn poll_event(&mut self) -> Option<TransactionEvent> {
        self.events.pop_front()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NonInviteClientState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

/// The client side of our own non-INVITE requests (BYE, OPTIONS), RFC 3261 §17.1.2: timer E
/// retransmits (T1 doubling to T2), timer F gives up after 64×T1, timer K absorbs late
/// responses for T4.
#[derive(Debug)]
pub struct NonInviteClientTransaction {
    key: TransactionKey,
    timers: Timers,
    state: NonInviteClientState,
    request: Vec<u8>,
    retransmit: Option<Backoff>,
    timeout_at: Option<Instant>,
    end_at: Option<Instant>,
    transmit: VecDeque<Vec<u8>>,
    events: VecDeque<TransactionEvent>,
}

impl NonInviteClientTransaction {
    /// Starts a transaction for `request` (built by us, with a fresh branch) and queues it.
    pub fn new(request: Vec<u8>, now: Instant, timers: Timers) -> Result<Self, TransactionError> {
        let msg =
            SipMessage::parse(&request).map_err(|e| TransactionError::BadRequest(e.to_string()))?;
        if !msg.is_request() || matches!(msg.method(), Method::Invite | Method::Ack) {
            return Err(TransactionError::BadRequest(
                "not a non-INVITE request".into(),
            ));
        }
        let key = TransactionKey {
            branch: msg.top_via().branch().unwrap_or_default().to_string(),
            sent_by: String::new(),
            method: msg.method().clone(),
        };
        let mut tx = NonInviteClientTransaction {
            key,
            timers,
            state: NonInviteClientState::Trying,
            request: request.clone(),
            retransmit: Some(Backoff::start(now, timers.t1, timers.t2)),
            timeout_at: Some(now + timers.give_up()),
            end_at: None,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
        };
        tx.transmit.push_back(request);
        Ok(tx)
    }

    /// The key responses are matched with ([`TransactionKey::client`]).
    pub fn key(&self) -> &TransactionKey {
        &self.key
    }

    /// True when the transaction has ended and can be dropped.
    pub fn is_terminated(&self) -> bool {
        self.state == NonInviteClientState::Terminated
    }

    /// True when `response` belongs to this transaction.
    pub fn matches(&self, response: &SipMessage) -> bool {
        !response.is_request() && TransactionKey::client(response) == self.key
    }

    /// Feeds a response. Returns false (and ignores it) when it belongs elsewhere.
    pub fn handle_response(&mut self, response: &SipMessage, now: Instant) -> bool {
        if !self.matches(response) {
            return false;
        }
        let status = response.status().unwrap_or_default();
        match self.state {
            NonInviteClientState::Trying | NonInviteClientState::Proceeding => {
                self.events
                    .push_back(TransactionEvent::Response(Box::new(response.clone())));
                if status < 200 {
                    self.state = NonInviteClientState::Proceeding;
                } else {
                    self.state = NonInviteClientState::Completed;
                    self.retransmit = None;
                    self.timeout_at = None;
                    self.end_at = Some(now + self.timers.t4);
                }
            }
            // Retransmitted responses are absorbed.
            NonInviteClientState::Completed | NonInviteClientState::Terminated => {}
        }
        true
    }

    /// When `handle_timeout` next needs to run.
    pub fn next_timeout(&self) -> Option<Instant> {
        earliest(&[
            self.retransmit.map(|b| b.next),
            self.timeout_at,
            self.end_at,
        ])
    }

    /// Runs every timer that is due at `now`, in time order.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(due) = self.next_timeout().filter(|t| *t <= now) {
            if self.timeout_at == Some(due) {
                self.events.push_back(TransactionEvent::Timeout);
                self.terminate();
            } else if self.retransmit.map(|b| b.next) == Some(due) {
                self.transmit.push_back(self.request.clone());
                let proceeding = self.state == NonInviteClientState::Proceeding;
                if let Some(b) = self.retransmit.as_mut() {
                    if proceeding {
                        // Once a provisional response arrived, retransmit every T2.
                        b.interval = b.cap;
                        b.next += b.cap;
                    } else {
                        b.advance();
                    }
                }
            } else {
                self.terminate();
            }
        }
    }

    fn terminate(&mut self) {
        if self.state != NonInviteClientState::Terminated {
            self.state = NonInviteClientState::Terminated;
            self.retransmit = None;
            self.timeout_at = None;
            self.end_at = None;
            self.events.push_back(TransactionEvent::Terminated);
        }
    }

    /// The next datagram to send to the peer.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }

    /// The next event for the layer above.
    pub fn poll_event(&mut self) -> Option<TransactionEvent> {
        self.events.pop_front()
    }
}

/// Where an INVITE client transaction stands (RFC 3261 §17.1.1, with the Accepted state of
/// RFC 6026).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteClientState {
    /// INVITE sent, nothing heard: timer A retransmits it, timer B gives up.
    Calling,
    /// A provisional response arrived; the INVITE is no longer retransmitted and nothing times
    /// out (the TU bounds ringing and cancels). A CANCEL may be sent from here on.
    Proceeding,
    /// A 300-699 arrived and was ACKed; timer D re-ACKs its retransmissions.
    Completed,
    /// A 2xx arrived; until timer M, further 2xx (retransmissions, other forks) are passed up
    /// for the TU to ACK.
    Accepted,
    /// Finished.
    Terminated,
}

/// What [`InviteClientTransaction::cancel`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelProgress {
    /// The CANCEL is queued for sending now (or was already sent).
    Sent,
    /// No provisional response yet, and RFC 3261 §9.1 forbids cancelling before one: the
    /// CANCEL goes out with the first provisional response. Without one, timer B ends the
    /// transaction.
    Deferred,
    /// A final response has arrived: there is nothing left to cancel. After a 2xx the TU ACKs
    /// it and sends BYE.
    TooLate,
}

/// Our side of an INVITE (RFC 3261 §17.1.1) over UDP, with RFC 6026's Accepted state.
///
/// - Timer A retransmits the INVITE at T1, 2·T1, 4·T1... (no cap) until a response; timer B
///   reports [`TransactionEvent::Timeout`] 64·T1 after the start if nothing arrived.
/// - Every provisional response, the first final response and every 2xx that follows it are
///   passed up as [`TransactionEvent::Response`]. A 300-699 final is ACKed here (§17.1.1.3:
///   same branch, Request-URI, Call-ID, From, CSeq number and Route as the INVITE, the
///   response's To); its retransmissions are re-ACKed for timer D and not passed up again.
/// - A 2xx is ACKed by the TU (from the dialog, in its own transaction); its retransmissions
///   and 2xx from other forks keep coming up as `Response` until timer M (64·T1) so the TU can
///   ACK them again (or ACK and BYE an unwanted fork).
/// - [`cancel`](InviteClientTransaction::cancel) runs the CANCEL (§9.1) in a
///   [`NonInviteClientTransaction`] owned here, sent to the same next hop through
///   `poll_transmit`, and held back until a provisional response has arrived. Once a CANCEL
///   is out, a final response is awaited for 64·T1 at most; then `Timeout` ends the
///   transaction (§9.1: consider the INVITE cancelled).
///
/// Everything `poll_transmit` returns goes to the next hop the INVITE was sent to.
#[derive(Debug)]
pub struct InviteClientTransaction {
    key: TransactionKey,
    timers: Timers,
    state: InviteClientState,
    invite: SipMessage,
    request: Vec<u8>,
    final_status: Option<u16>,
    ack: Option<Vec<u8>>,
    /// Timer A.
    retransmit: Option<Backoff>,
    /// Timer B in Calling; the wait for a final response after the CANCEL in Proceeding.
    give_up_at: Option<Instant>,
    /// Timer D (Completed) or timer M (Accepted).
    end_at: Option<Instant>,
    cancel_wanted: bool,
    cancel_tx: Option<NonInviteClientTransaction>,
    cancel_status: Option<u16>,
    transmit: VecDeque<Vec<u8>>,
    events: VecDeque<TransactionEvent>,
}

impl InviteClientTransaction {
    /// Starts a transaction for our INVITE (built by us, with a fresh branch) and queues it.
    pub fn new(request: Vec<u8>, now: Instant, timers: Timers) -> Result<Self, TransactionError> {
        let invite =
            SipMessage::parse(&request).map_err(|e| TransactionError::BadRequest(e.to_string()))?;
        if !invite.is_request() || invite.method() != &Method::Invite {
            return Err(TransactionError::BadRequest("not an INVITE".into()));
        }
        let key = TransactionKey {
            branch: invite.top_via().branch().unwrap_or_default().to_string(),
            sent_by: String::new(),
            method: Method::Invite,
        };
        let mut tx = InviteClientTransaction {
            key,
            timers,
            state: InviteClientState::Calling,
            invite,
            request: request.clone(),
            final_status: None,
            ack: None,
            // Timer A doubles without the T2 cap that non-INVITE requests have.
            retransmit: Some(Backoff::start(now, timers.t1, timers.give_up())),
            give_up_at: Some(now + timers.give_up()),
            end_at: None,
            cancel_wanted: false,
            cancel_tx: None,
            cancel_status: None,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
        };
        tx.transmit.push_back(request);
        Ok(tx)
    }

    /// The key responses are matched with ([`TransactionKey::client`]).
    pub fn key(&self) -> &TransactionKey {
        &self.key
    }

    /// The INVITE, parsed (for [`Dialog::uac`](super::dialog::Dialog::uac) and for building a
    /// retry).
    pub fn invite(&self) -> &SipMessage {
        &self.invite
    }

    /// Where the transaction stands.
    pub fn state(&self) -> InviteClientState {
        self.state
    }

    /// Status of the first final response, once one arrived.
    pub fn final_status(&self) -> Option<u16> {
        self.final_status
    }

    /// True once [`cancel`](InviteClientTransaction::cancel) was asked for.
    pub fn is_cancel_requested(&self) -> bool {
        self.cancel_wanted
    }

    /// The final status of the CANCEL's own transaction (200, 481...; 408 when it timed out),
    /// for logs: the outcome of the call is the INVITE's final response.
    pub fn cancel_status(&self) -> Option<u16> {
        self.cancel_status
    }

    /// True when the transaction has ended and can be dropped.
    pub fn is_terminated(&self) -> bool {
        self.state == InviteClientState::Terminated
    }

    /// True when `response` answers this INVITE or its CANCEL.
    pub fn matches(&self, response: &SipMessage) -> bool {
        if response.is_request() {
            return false;
        }
        let key = TransactionKey::client(response);
        key == self.key || key == self.key.with_method(Method::Cancel)
    }

    /// The CANCEL for this INVITE (RFC 3261 §9.1): the INVITE's Request-URI, Call-ID, From, To
    /// (without a tag), CSeq number, top Via (same branch) and Route headers.
    pub fn cancel_request(&self) -> Vec<u8> {
        self.same_transaction_request(Method::Cancel, self.invite.echo().to.as_deref())
    }

    /// The ACK for a 300-699 `response` (RFC 3261 §17.1.1.3): like the CANCEL, but with the
    /// response's To, which carries the tag.
    fn ack_request(&self, response: &SipMessage) -> Vec<u8> {
        self.same_transaction_request(Method::Ack, response.echo().to.as_deref())
    }

    fn same_transaction_request(&self, method: Method, to: Option<&str>) -> Vec<u8> {
        let inv = &self.invite;
        let uri = inv
            .request_uri()
            .map(|u| u.as_str().to_string())
            .unwrap_or_default();
        let mut b = RequestBuilder::new(method, &uri)
            .via(inv.top_via().raw())
            .from(inv.echo().from.as_deref().unwrap_or_default())
            .to(to.unwrap_or_default())
            .call_id(inv.call_id())
            .cseq(inv.cseq().number);
        for route in inv.routes() {
            b = b.route(route.raw());
        }
        b.build()
    }

    /// Asks for the INVITE to be cancelled (the user hung up, or the TU's ringing limit
    /// passed). Calling it again changes nothing.
    pub fn cancel(&mut self, now: Instant) -> CancelProgress {
        match self.state {
            InviteClientState::Calling => {
                self.cancel_wanted = true;
                CancelProgress::Deferred
            }
            InviteClientState::Proceeding => {
                self.cancel_wanted = true;
                self.start_cancel(now);
                CancelProgress::Sent
            }
            _ => CancelProgress::TooLate,
        }
    }

    fn start_cancel(&mut self, now: Instant) {
        if self.cancel_tx.is_some() || self.cancel_status.is_some() {
            return;
        }
        // Built from a request that parsed, so it parses too; if it somehow did not, the
        // give-up timer below still ends the INVITE.
        if let Ok(tx) = NonInviteClientTransaction::new(self.cancel_request(), now, self.timers) {
            self.cancel_tx = Some(tx);
            self.drain_cancel();
        }
        self.give_up_at = Some(now + self.timers.give_up());
    }

    fn drain_cancel(&mut self) {
        let Some(tx) = self.cancel_tx.as_mut() else {
            return;
        };
        while let Some(d) = tx.poll_transmit() {
            self.transmit.push_back(d);
        }
        let mut ended = false;
        while let Some(ev) = tx.poll_event() {
            match ev {
                TransactionEvent::Response(r) => {
                    if let Some(s) = r.status().filter(|s| *s >= 200) {
                        self.cancel_status = Some(s);
                    }
                }
                TransactionEvent::Timeout => self.cancel_status = Some(408),
                TransactionEvent::Terminated => ended = true,
                TransactionEvent::AckReceived | TransactionEvent::AckTimeout { .. } => {}
            }
        }
        if ended {
            self.cancel_tx = None;
        }
    }

    /// Feeds a response. Returns false (and ignores it) when it belongs elsewhere.
    pub fn handle_response(&mut self, response: &SipMessage, now: Instant) -> bool {
        if !self.matches(response) {
            return false;
        }
        if response.cseq().method == Method::Cancel {
            if let Some(tx) = self.cancel_tx.as_mut() {
                tx.handle_response(response, now);
                self.drain_cancel();
            }
            return true;
        }
        let status = response.status().unwrap_or_default();
        match (self.state, status) {
            (InviteClientState::Calling | InviteClientState::Proceeding, 100..=199) => {
                if self.state == InviteClientState::Calling {
                    self.state = InviteClientState::Proceeding;
                    self.retransmit = None;
                    self.give_up_at = None;
                }
                self.events
                    .push_back(TransactionEvent::Response(Box::new(response.clone())));
                if self.cancel_wanted {
                    self.start_cancel(now);
                }
            }
            (InviteClientState::Calling | InviteClientState::Proceeding, 200..=299) => {
                self.final_status = Some(status);
                self.state = InviteClientState::Accepted;
                self.retransmit = None;
                self.give_up_at = None;
                // Timer M.
                self.end_at = Some(now + self.timers.give_up());
                self.events
                    .push_back(TransactionEvent::Response(Box::new(response.clone())));
            }
            (InviteClientState::Calling | InviteClientState::Proceeding, _) => {
                self.final_status = Some(status);
                self.state = InviteClientState::Completed;
                self.retransmit = None;
                self.give_up_at = None;
                self.end_at = Some(now + self.timers.timer_d());
                let ack = self.ack_request(response);
                self.transmit.push_back(ack.clone());
                self.ack = Some(ack);
                self.events
                    .push_back(TransactionEvent::Response(Box::new(response.clone())));
            }
            (InviteClientState::Accepted, 200..=299) => {
                self.events
                    .push_back(TransactionEvent::Response(Box::new(response.clone())));
            }
            (InviteClientState::Completed, 300..) => {
                if let Some(ack) = &self.ack {
                    self.transmit.push_back(ack.clone());
                }
            }
            // Provisional responses after a final one, and non-2xx after a 2xx, are absorbed.
            _ => {}
        }
        true
    }

    /// When `handle_timeout` next needs to run.
    pub fn next_timeout(&self) -> Option<Instant> {
        earliest(&[
            self.retransmit.map(|b| b.next),
            self.give_up_at,
            self.end_at,
            self.cancel_tx.as_ref().and_then(|tx| tx.next_timeout()),
        ])
    }

    /// Runs every timer that is due at `now`, in time order.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(due) = self.next_timeout().filter(|t| *t <= now) {
            if self.give_up_at == Some(due) {
                self.events.push_back(TransactionEvent::Timeout);
                self.terminate();
            } else if self.retransmit.map(|b| b.next) == Some(due) {
                self.transmit.push_back(self.request.clone());
                if let Some(b) = self.retransmit.as_mut() {
                    b.advance();
                }
            } else if self.end_at == Some(due) {
                self.terminate();
            } else if let Some(tx) = self.cancel_tx.as_mut() {
                tx.handle_timeout(due);
                self.drain_cancel();
            } else {
                break;
            }
        }
    }

    fn terminate(&mut self) {
        if self.state != InviteClientState::Terminated {
            self.state = InviteClientState::Terminated;
            self.retransmit = None;
            self.give_up_at = None;
            self.end_at = None;
            // Whatever the CANCEL had left to do no longer matters once the INVITE is over.
            self.cancel_tx = None;
            self.events.push_back(TransactionEvent::Terminated);
        }
    }

    /// The next datagram to send to the INVITE's next hop.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }

    /// The next event for the layer above.
    pub fn poll_event(&mut self) -> Option<TransactionEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::parse;

    fn invite() -> SipMessage {
        parse(
            b"INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKinv1\r\n\
From: <sip:alice@example.com>;tag=a\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: c@x\r\n\
CSeq: 1 INVITE\r\n\
Content-Length: 0\r\n\r\n",
        )
        .unwrap()
    }

    #[test]
    fn trying_is_sent_at_once() {
        let t0 = Instant::now();
        let mut tx = InviteServerTransaction::new(&invite(), t0, Timers::default());
        let first = String::from_utf8(tx.poll_transmit().unwrap()).unwrap();
        assert!(first.starts_with("SIP/2.0 100 Trying\r\n"));
        assert!(tx.poll_transmit().is_none());
        assert_eq!(tx.next_timeout(), None);
    }

    #[test]
    fn keys_fold_ack_into_invite_and_fall_back_for_rfc2543() {
        let inv = invite();
        let ack = parse(
            b"ACK sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKinv1\r\n\
From: <sip:alice@example.com>;tag=a\r\n\
To: <sip:bob@example.com>;tag=b\r\n\
Call-ID: c@x\r\n\
CSeq: 1 ACK\r\n\
Content-Length: 0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(TransactionKey::server(&inv), TransactionKey::server(&ack));
        let old = parse(
            b"OPTIONS sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=1\r\nFrom: <sip:a@x>;tag=1\r\n\
To: <sip:b@x>\r\nCall-ID: q\r\nCSeq: 4 OPTIONS\r\n\r\n",
        )
        .unwrap();
        assert!(TransactionKey::server(&old)
            .branch
            .starts_with("rfc2543|q|4|1|"));
    }
}
