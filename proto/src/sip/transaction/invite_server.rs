//! The INVITE server transaction (RFC 3261 §17.2.1), which also retransmits a 2xx until its ACK
//! and absorbs INVITE retransmissions afterwards (RFC 6026's Accepted state).

use std::time::Instant;

use super::{
    earliest, linger, Backoff, Outbox, Timers, TransactionError, TransactionEvent, TransactionKey,
};
use crate::sip::builder::ResponseBuilder;
use crate::sip::message::SipMessage;

/// Result of asking an INVITE server transaction to honour a CANCEL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// No final response yet: answer the INVITE with 487 now.
    Cancelled,
    /// A final response was already sent; the CANCEL changes nothing (answer it 200 anyway).
    TooLate,
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
    // Read only by its accessor, which exists for tests and `_internals`.
    #[cfg_attr(not(any(test, feature = "_internals")), allow(dead_code))]
    key: TransactionKey,
    timers: Timers,
    state: InviteServerState,
    last_response: Option<Vec<u8>>,
    final_status: Option<u16>,
    acked: bool,
    retransmit: Option<Backoff>,
    give_up_at: Option<Instant>,
    end_at: Option<Instant>,
    reliable: bool,
    out: Outbox,
}

impl InviteServerTransaction {
    /// Starts the transaction for a received INVITE and queues `100 Trying` at once.
    pub fn new(invite: &SipMessage, now: Instant, timers: Timers) -> Self {
        let _ = now;
        let trying = ResponseBuilder::new(invite.echo(), 100).build();
        let mut tx = InviteServerTransaction {
            // Read only by its accessor, which exists for tests and `_internals`.
            #[cfg_attr(not(any(test, feature = "_internals")), allow(dead_code))]
            key: TransactionKey::server(invite),
            timers,
            state: InviteServerState::Proceeding,
            last_response: Some(trying.clone()),
            final_status: None,
            acked: false,
            retransmit: None,
            give_up_at: None,
            end_at: None,
            reliable: false,
            out: Outbox::default(),
        };
        tx.out.send(trying);
        tx
    }

    /// The key this transaction answers to.
    #[cfg(any(test, feature = "_internals"))]
    pub fn key(&self) -> &TransactionKey {
        &self.key
    }

    /// Status of the final response sent, if any.
    #[cfg(any(test, feature = "_internals"))]
    pub fn final_status(&self) -> Option<u16> {
        self.final_status
    }

    /// True when the transaction has ended and can be dropped.
    pub fn is_terminated(&self) -> bool {
        self.state == InviteServerState::Terminated
    }

    /// Feeds a request that belongs to this transaction: a retransmitted INVITE (answered with
    /// the last response, or absorbed) or an ACK.
    #[cfg(any(test, feature = "_internals"))]
    pub fn handle_request(&mut self, request: &SipMessage, now: Instant) {
        match request.method() {
            crate::sip::message::Method::Ack => self.handle_ack(now),
            crate::sip::message::Method::Invite => self.handle_retransmission(),
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
                self.out.send(r.clone());
            }
        }
    }

    /// The INVITE came on TCP or TLS: a non-2xx final is not retransmitted (timer G) and the
    /// transaction ends at its ACK (timer I).
    pub fn over_reliable_transport(mut self) -> Self {
        self.reliable = true;
        self
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
                self.end_at = Some(now + linger(self.reliable, self.timers.t4));
                self.out.emit(TransactionEvent::AckReceived);
            }
            InviteServerState::Accepted if !self.acked => {
                self.acked = true;
                self.retransmit = None;
                self.give_up_at = None;
                self.out.emit(TransactionEvent::AckReceived);
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
        self.out.send(response.clone());
        self.last_response = Some(response);
        if status < 200 {
            return Ok(());
        }
        self.final_status = Some(status);
        let give_up = now + self.timers.give_up();
        // A 2xx is retransmitted until its ACK whatever the transport (RFC 3261 §13.3.1.4: a
        // proxy on the way may use UDP); other finals only over UDP (timer G).
        self.retransmit = (status < 300 || !self.reliable)
            .then(|| Backoff::start(now, self.timers.t1, self.timers.t2));
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
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        earliest(&[
            self.retransmit.map(|b| b.next),
            self.give_up_at,
            self.end_at,
        ])
    }

    /// Runs every timer that is due at `now`, in time order.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(due) = self.poll_timeout().filter(|t| *t <= now) {
            if self.give_up_at == Some(due) {
                self.give_up_at = None;
                self.retransmit = None;
                self.out.emit(TransactionEvent::AckTimeout {
                    status: self.final_status.unwrap_or_default(),
                });
                self.terminate();
            } else if self.retransmit.map(|b| b.next) == Some(due) {
                if let Some(r) = &self.last_response {
                    self.out.send(r.clone());
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
            self.out.emit(TransactionEvent::Terminated);
        }
    }

    outbox_polls!();
}
