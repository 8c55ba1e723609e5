//! The INVITE client transaction (RFC 3261 §17.1.1 with RFC 6026's Accepted state), and the
//! CANCEL it runs for its INVITE.

use std::time::Instant;

use super::{
    earliest, linger, Backoff, NonInviteClientTransaction, Outbox, Timers, TransactionError,
    TransactionEvent, TransactionKey,
};
use crate::sip::builder::RequestBuilder;
use crate::sip::message::{Method, SipMessage};

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
    /// A `Reason` header value for the CANCEL (RFC 3326), set by [`Self::set_cancel_reason`].
    cancel_reason: Option<String>,
    reliable: bool,
    out: Outbox,
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
            cancel_reason: None,
            reliable: false,
            out: Outbox::default(),
        };
        tx.out.send(request);
        Ok(tx)
    }

    /// The INVITE travels on TCP or TLS: no retransmission (timer A), no lingering after a
    /// non-2xx final (timer D); its CANCEL likewise.
    pub fn over_reliable_transport(mut self) -> Self {
        self.reliable = true;
        self.retransmit = None;
        self
    }

    /// The key responses are matched with ([`TransactionKey::client`]).
    pub fn key(&self) -> &TransactionKey {
        &self.key
    }

    /// The INVITE, parsed (for [`Dialog::uac`](crate::sip::dialog::Dialog::uac) and for building a
    /// retry).
    pub fn invite(&self) -> &SipMessage {
        &self.invite
    }

    /// Where the transaction stands.
    #[cfg(any(test, feature = "_internals"))]
    pub fn state(&self) -> InviteClientState {
        self.state
    }

    /// Status of the first final response, once one arrived.
    pub fn final_status(&self) -> Option<u16> {
        self.final_status
    }

    /// True once [`cancel`](InviteClientTransaction::cancel) was asked for.
    #[cfg(any(test, feature = "_internals"))]
    pub fn is_cancel_requested(&self) -> bool {
        self.cancel_wanted
    }

    /// The final status of the CANCEL's own transaction (200, 481...; 408 when it timed out),
    /// for logs: the outcome of the call is the INVITE's final response.
    #[cfg(any(test, feature = "_internals"))]
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
    /// With the `Reason` of [`Self::set_cancel_reason`], when one was set.
    pub fn cancel_request(&self) -> Vec<u8> {
        let reason = self.cancel_reason.as_deref().map(|r| ("Reason", r));
        self.same_transaction_request(Method::Cancel, self.invite.echo().to.as_deref(), reason)
    }

    /// Gives the CANCEL a `Reason` header (RFC 3326), e.g. from
    /// [`q850_reason`](crate::sip::reason::q850_reason); it must be set before
    /// [`Self::cancel`] sends the CANCEL.
    pub fn set_cancel_reason(&mut self, value: String) {
        self.cancel_reason = Some(value);
    }

    /// The `Reason` given by [`Self::set_cancel_reason`]: the BYE that ends a call answered
    /// while its CANCEL was on the way carries it too.
    pub fn cancel_reason(&self) -> Option<&str> {
        self.cancel_reason.as_deref()
    }

    /// The ACK for a 300-699 `response` (RFC 3261 §17.1.1.3): like the CANCEL, but with the
    /// response's To, which carries the tag.
    fn ack_request(&self, response: &SipMessage) -> Vec<u8> {
        self.same_transaction_request(Method::Ack, response.echo().to.as_deref(), None)
    }

    fn same_transaction_request(
        &self,
        method: Method,
        to: Option<&str>,
        extra: Option<(&str, &str)>,
    ) -> Vec<u8> {
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
        if let Some((name, value)) = extra {
            b = b.header(name, value);
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
            self.cancel_tx = Some(if self.reliable {
                tx.over_reliable_transport()
            } else {
                tx
            });
            self.drain_cancel();
        }
        self.give_up_at = Some(now + self.timers.give_up());
    }

    fn drain_cancel(&mut self) {
        let Some(tx) = self.cancel_tx.as_mut() else {
            return;
        };
        while let Some(d) = tx.poll_transmit() {
            self.out.send(d);
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
                TransactionEvent::TransportError(_) => self.cancel_status = Some(503),
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
                self.out
                    .emit(TransactionEvent::Response(Box::new(response.clone())));
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
                self.out
                    .emit(TransactionEvent::Response(Box::new(response.clone())));
            }
            (InviteClientState::Calling | InviteClientState::Proceeding, _) => {
                self.final_status = Some(status);
                self.state = InviteClientState::Completed;
                self.retransmit = None;
                self.give_up_at = None;
                self.end_at = Some(now + linger(self.reliable, self.timers.timer_d()));
                let ack = self.ack_request(response);
                self.out.send(ack.clone());
                self.ack = Some(ack);
                self.out
                    .emit(TransactionEvent::Response(Box::new(response.clone())));
            }
            (InviteClientState::Accepted, 200..=299) => {
                self.out
                    .emit(TransactionEvent::Response(Box::new(response.clone())));
            }
            (InviteClientState::Completed, 300..) => {
                if let Some(ack) = &self.ack {
                    self.out.send(ack.clone());
                }
            }
            // Provisional responses after a final one, and non-2xx after a 2xx, are absorbed.
            _ => {}
        }
        true
    }

    /// When `handle_timeout` next needs to run.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        earliest(&[
            self.retransmit.map(|b| b.next),
            self.give_up_at,
            self.end_at,
            self.cancel_tx.as_ref().and_then(|tx| tx.poll_timeout()),
        ])
    }

    /// Runs every timer that is due at `now`, in time order.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(due) = self.poll_timeout().filter(|t| *t <= now) {
            if self.give_up_at == Some(due) {
                self.out.emit(TransactionEvent::Timeout);
                self.terminate();
            } else if self.retransmit.map(|b| b.next) == Some(due) {
                self.out.send(self.request.clone());
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

    /// The transport failed to carry the INVITE (RFC 3261 §17.1.1.2): before a final response,
    /// the transaction reports [`TransactionEvent::TransportError`] and ends.
    pub fn transport_failed(&mut self, reason: &str) {
        if matches!(
            self.state,
            InviteClientState::Calling | InviteClientState::Proceeding
        ) {
            self.out
                .emit(TransactionEvent::TransportError(reason.to_string()));
            self.terminate();
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
            self.out.emit(TransactionEvent::Terminated);
        }
    }

    outbox_polls!();
}
