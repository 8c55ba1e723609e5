//! The re-INVITE bookkeeping of a call: what the application asked (hold, video) and no
//! re-INVITE carried yet, what the one in progress offers, and when to try again after glare.
//! The re-INVITEs themselves are sent and answered in `call.rs`.

use std::time::Instant;

use super::ids::{ReservationId, TxId};

/// A video change offered in our re-INVITE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum VideoChange {
    /// Video added, on the port of this reservation.
    Add {
        reservation: ReservationId,
        port: u16,
    },
    Remove,
}

/// Challenges one re-INVITE answers before it gives up.
pub(super) const MAX_REINVITE_AUTH: u8 = 2;

/// One call's re-INVITEs: at most one of ours in progress, and what waits for the next.
#[derive(Debug, Default)]
pub(super) struct Reinvites {
    /// Our re-INVITE in progress (its INVITE client transaction).
    pub tx: Option<TxId>,
    /// A session refresh waits to be sent (or is in progress).
    pub refresh: bool,
    /// Challenges answered for the re-INVITE in progress.
    pub auth_tries: u8,
    /// A hold (`true`) or resume the application asked for and no re-INVITE carried yet.
    pub want_hold: Option<bool>,
    /// We hold the far end (our last answered offer was `sendonly`).
    pub held_by_us: bool,
    /// The hold state our re-INVITE in progress offers (`None`: a refresh).
    pub pending_hold: Option<bool>,
    /// Video added (`true`) or removed the application asked for and no re-INVITE carried yet.
    pub want_video: Option<bool>,
    /// The video change our re-INVITE in progress offers.
    pub pending_video: Option<VideoChange>,
    /// When to try the re-INVITE again after a 491 (RFC 3261 §14.1).
    pub retry_at: Option<Instant>,
}
