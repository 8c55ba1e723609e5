//! Relayed candidates (issue 19): before a call's SDP is written, each of its media sockets
//! allocates a relayed address on a TURN server (the pure [`TurnClient`] decides what to send
//! and what an answer means; this only moves the datagrams and waits). The allocated clients
//! are handed to the streams' transports (`IceParams::relay`), which keep them from then on.
//!
//! The caller's thread waits at most `budget` however many sockets allocate: they allocate
//! side by side (a server answering at once costs two round trips: the 401 challenge, then
//! the authenticated Allocate). A server that does not answer, refuses our credentials or
//! fails otherwise leaves that socket without a relayed candidate; the call goes on.

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use super::socket::{poll_readable, MediaSocket, RecvBatch, Wait};
use crate::webrtc::{TurnClient, TurnConfig, TurnState};

/// The most sockets one gathering allocates for (a call's audio and video).
pub const MAX_SOCKETS: usize = 4;

/// How long a call's signalling waits for its allocations by default.
pub const DEFAULT_BUDGET: Duration = Duration::from_millis(1500);

/// Allocates a relayed address for each of `sockets` (at most [`MAX_SOCKETS`]) on the server
/// of `config`, all at once; returns, per socket in order, the allocated client or `None`,
/// when every one is done or `budget` is spent. Datagrams that arrive meanwhile and are not
/// the server's are dropped (nobody else knows these ports yet).
pub fn gather_relayed(
    sockets: &[&MediaSocket],
    config: &TurnConfig,
    budget: Duration,
) -> Vec<Option<TurnClient>> {
    let sockets = &sockets[..sockets.len().min(MAX_SOCKETS)];
    let start = Instant::now();
    let deadline = start + budget;
    let server = config.server;
    let mut clients: Vec<TurnClient> = sockets
        .iter()
        .map(|_| TurnClient::new(config.clone(), start))
        .collect();
    let mut unsendable = vec![false; sockets.len()];
    let fds: Vec<_> = sockets.iter().map(|s| s.as_raw_fd()).collect();
    let mut ready = [false; MAX_SOCKETS];
    let mut batch = RecvBatch::new(4, 2048);
    // Bounded in time by the budget and in rounds (each round sleeps until something is due).
    for _ in 0..1000 {
        for (i, c) in clients.iter_mut().enumerate() {
            while let Some(req) = c.poll_transmit() {
                if sockets[i].send_to(&req, server).is_err() {
                    unsendable[i] = true;
                }
            }
        }
        let pending =
            |i: usize, c: &TurnClient| !unsendable[i] && c.state() == TurnState::Allocating;
        let now = Instant::now();
        if now >= deadline || !clients.iter().enumerate().any(|(i, c)| pending(i, c)) {
            break;
        }
        let next = clients
            .iter()
            .enumerate()
            .filter(|(i, c)| pending(*i, c))
            .filter_map(|(_, c)| c.poll_timeout())
            .min()
            .unwrap_or(deadline)
            .min(deadline);
        let wait = next
            .saturating_duration_since(now)
            .max(Duration::from_millis(1));
        if poll_readable(&fds, &mut ready[..fds.len()], wait).unwrap_or(0) > 0 {
            for (i, c) in clients.iter_mut().enumerate() {
                if !ready[i] {
                    continue;
                }
                let n = batch.recv(sockets[i], Wait::No).unwrap_or(0);
                for k in 0..n {
                    let d = batch.get(k);
                    if let (Some(from), false) = (d.from, d.truncated) {
                        let _ = c.handle_input(Instant::now(), from, d.data);
                    }
                }
            }
        }
        let now = Instant::now();
        for c in &mut clients {
            if c.poll_timeout().is_some_and(|t| t <= now) {
                c.handle_timeout(now);
            }
        }
    }
    clients
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            while c.poll_event().is_some() {}
            (!unsendable[i] && c.state() == TurnState::Allocated && c.relayed().is_some())
                .then_some(c)
        })
        .collect()
}
