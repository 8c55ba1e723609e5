//! The non-INVITE client transaction (RFC 3261 §17.1.2): our BYE, OPTIONS, REGISTER, CANCEL...

use std::time::Instant;

use super::{
    earliest, linger, Backoff, Outbox, Timers, TransactionError, TransactionEvent, TransactionKey,
};
use crate::sip::message::{Method, SipMessage};

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
    reliable: bool,
    out: Outbox,
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
            reliable: false,
            out: Outbox::default(),
        };
        tx.out.send(request);
        Ok(tx)
    }

    /// The request travels on TCP or TLS: no retransmission (timer E), no lingering (timer K).
    pub fn over_reliable_transport(mut self) -> Self {
        self.reliable = true;
        self.retransmit = None;
        self
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
                self.out
                    .emit(TransactionEvent::Response(Box::new(response.clone())));
                if status < 200 {
                    self.state = NonInviteClientState::Proceeding;
                } else {
                    self.state = NonInviteClientState::Completed;
                    self.retransmit = None;
                    self.timeout_at = None;
                    self.end_at = Some(now + linger(self.reliable, self.timers.t4));
                }
            }
            // Retransmitted responses are absorbed.
            NonInviteClientState::Completed | NonInviteClientState::Terminated => {}
        }
        true
    }

    /// When `handle_timeout` next needs to run.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        earliest(&[
            self.retransmit.map(|b| b.next),
            self.timeout_at,
            self.end_at,
        ])
    }

    /// Runs every timer that is due at `now`, in time order.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(due) = self.poll_timeout().filter(|t| *t <= now) {
            if self.timeout_at == Some(due) {
                self.out.emit(TransactionEvent::Timeout);
                self.terminate();
            } else if self.retransmit.map(|b| b.next) == Some(due) {
                self.out.send(self.request.clone());
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

    /// The transport failed to carry the request (RFC 3261 §17.1.2.2): before a final
    /// response, the transaction reports [`TransactionEvent::TransportError`] and ends.
    pub fn transport_failed(&mut self, reason: &str) {
        if matches!(
            self.state,
            NonInviteClientState::Trying | NonInviteClientState::Proceeding
        ) {
            self.out
                .emit(TransactionEvent::TransportError(reason.to_string()));
            self.terminate();
        }
    }

    fn terminate(&mut self) {
        if self.state != NonInviteClientState::Terminated {
            self.state = NonInviteClientState::Terminated;
            self.retransmit = None;
            self.timeout_at = None;
            self.end_at = None;
            self.out.emit(TransactionEvent::Terminated);
        }
    }

    outbox_polls!();
}
