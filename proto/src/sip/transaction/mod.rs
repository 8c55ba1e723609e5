//! SIP transactions, RFC 3261 §17, without I/O: over UDP by default, and over a reliable
//! transport (TCP, TLS) once told so (`over_reliable_transport`), which drops the
//! retransmission timers A, E and G and ends the lingering timers D, I, J and K at once.
//!
//! Each state machine is driven the same way: feed it what arrived (with the current time),
//! then drain [`poll_transmit`](InviteServerTransaction::poll_transmit) and
//! [`poll_event`](InviteServerTransaction::poll_event), and call `handle_timeout` once the
//! instant returned by `poll_timeout` has passed. Nothing here reads a clock or touches a socket,
//! so tests run on virtual time.
//!
//! There are four, one per file: INVITE and non-INVITE, server and client
//! (`invite_server.rs`, `non_invite_server.rs`, `non_invite_client.rs`, `invite_client.rs`). The
//! INVITE client transaction also sends the CANCEL for its INVITE (in a non-INVITE client
//! transaction it owns). What they share lives here: the timer values, the key, the events and
//! errors, the retransmission back-off and the `Outbox` every machine queues its output in.
//!
//! The INVITE server transaction also retransmits a 2xx until the ACK arrives (RFC 3261 §13.3.1.4
//! gives that job to the UAS core; keeping it here puts every retransmission timer in one place)
//! and absorbs INVITE retransmissions after the 2xx as RFC 6026's "Accepted" state does.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use super::message::{Method, SipMessage};

/// The two drains every machine offers, written once: each machine keeps its datagrams and
/// events in an [`Outbox`] field named `out`, and this forwards `poll_transmit`/`poll_event` to it.
macro_rules! outbox_polls {
    () => {
        /// The next datagram to send (to the request's source or the next hop).
        #[must_use]
        pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
            self.out.poll_transmit()
        }

        /// The next event for the layer above.
        #[must_use]
        pub fn poll_event(&mut self) -> Option<TransactionEvent> {
            self.out.poll_event()
        }
    };
}

mod invite_client;
mod invite_server;
mod non_invite_client;
mod non_invite_server;

#[cfg_attr(not(feature = "_internals"), allow(unused_imports))]
pub use invite_client::{CancelProgress, InviteClientState, InviteClientTransaction};
pub use invite_server::{CancelOutcome, InviteServerTransaction};
pub use non_invite_client::NonInviteClientTransaction;
pub use non_invite_server::NonInviteServerTransaction;

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

/// How long a transaction lingers to absorb retransmissions (timers D, I, J, K): `wait` over
/// UDP, zero over a reliable transport, where nothing is retransmitted (RFC 3261 §17).
fn linger(reliable: bool, wait: Duration) -> Duration {
    if reliable {
        Duration::ZERO
    } else {
        wait
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
    #[cfg(any(test, feature = "_internals"))]
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
    /// The transport could not carry our request (a TCP/TLS connection refused, reset or
    /// whose handshake failed) before a final response: treat as 503 (RFC 3261 §8.1.3.1).
    /// Carries what the transport said (`connection refused`, the TLS alert...).
    TransportError(String),
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

/// The output of one transaction: the datagrams it wants sent and the events for the layer
/// above, each drained in the order queued. Every machine owns one, so the queues and their
/// `poll_*` are written once; a machine's own `poll_transmit`/`poll_event` hand them out.
#[derive(Debug, Default)]
struct Outbox {
    transmit: VecDeque<Vec<u8>>,
    events: VecDeque<TransactionEvent>,
}

impl Outbox {
    /// Queues a datagram for the transaction's peer.
    fn send(&mut self, datagram: Vec<u8>) {
        self.transmit.push_back(datagram);
    }

    /// Queues an event for the layer above.
    fn emit(&mut self, event: TransactionEvent) {
        self.events.push_back(event);
    }

    #[must_use]
    fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }

    #[must_use]
    fn poll_event(&mut self) -> Option<TransactionEvent> {
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
        assert_eq!(tx.poll_timeout(), None);
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
