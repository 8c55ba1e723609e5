//! The ids the core hands out, one type each, so a transaction id can never name a call.
//! Plain counters: they never reach the wire.

use std::fmt;

/// One call of the core (incoming or dialed), for its whole life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CallNo(pub(super) u64);

/// One transaction of the core: a server one, a non-INVITE client one or an INVITE client one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TxId(pub(super) u64);

/// Ports a [`MediaHost`](super::MediaHost) bound for a call before its media started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReservationId(pub u64);

impl fmt::Display for ReservationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "reservation {}", self.0)
    }
}
