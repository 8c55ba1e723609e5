//! The non-INVITE server transaction (RFC 3261 §17.2.2): BYE, CANCEL, OPTIONS, INFO... answered
//! once, the answer repeated to retransmissions until timer J.

use std::time::Instant;

use super::{linger, Outbox, Timers, TransactionError, TransactionEvent, TransactionKey};
use crate::sip::message::SipMessage;

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
    // Read only by its accessor, which exists for tests and `_internals`.
    #[cfg_attr(not(any(test, feature = "_internals")), allow(dead_code))]
    key: TransactionKey,
    timers: Timers,
    state: NonInviteServerState,
    last_response: Option<Vec<u8>>,
    end_at: Option<Instant>,
    reliable: bool,
    out: Outbox,
}

impl NonInviteServerTransaction {
    /// Starts the transaction for a received request. Nothing is sent until `respond`.
    pub fn new(request: &SipMessage, now: Instant, timers: Timers) -> Self {
        let _ = now;
        NonInviteServerTransaction {
            // Read only by its accessor, which exists for tests and `_internals`.
            #[cfg_attr(not(any(test, feature = "_internals")), allow(dead_code))]
            key: TransactionKey::server(request),
            timers,
            state: NonInviteServerState::Trying,
            last_response: None,
            end_at: None,
            reliable: false,
            out: Outbox::default(),
        }
    }

    /// The request came on TCP or TLS: no lingering after the final response (timer J).
    pub fn over_reliable_transport(mut self) -> Self {
        self.reliable = true;
        self
    }

    /// The key this transaction answers to.
    #[cfg(any(test, feature = "_internals"))]
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
                self.out.send(r.clone());
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
        self.out.send(response.clone());
        self.last_response = Some(response);
        if status < 200 {
            self.state = NonInviteServerState::Proceeding;
        } else {
            self.state = NonInviteServerState::Completed;
            // Timer J: absorb retransmissions for 64×T1.
            self.end_at = Some(now + linger(self.reliable, self.timers.give_up()));
        }
        Ok(())
    }

    /// When `handle_timeout` next needs to run.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.end_at
    }

    /// Runs timer J when due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.end_at.is_some_and(|t| t <= now) {
            self.end_at = None;
            self.state = NonInviteServerState::Terminated;
            self.out.emit(TransactionEvent::Terminated);
        }
    }

    outbox_polls!();
}
