//! Server-reflexive candidates (issue 19): before a call's SDP is written, each of its media
//! sockets asks a STUN server where it is seen from (the pure [`StunBinding`] decides what to
//! send and what an answer means; this only moves the datagrams and waits).
//!
//! The caller's thread waits, at most the [`BindingConfig`] budget (500 ms by default) however
//! many sockets ask: they ask side by side. A server that does not answer, or answers with an
//! error, leaves that socket with its host candidate only; the call goes on.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use rand::RngCore;

use super::socket::{poll_readable, MediaSocket, RecvBatch, Wait};
use crate::webrtc::{BindingConfig, BindingOutcome, StunBinding};

/// The most sockets one gathering asks for (a call's audio and video).
pub const MAX_SOCKETS: usize = 4;

/// What one gathering learnt and how it went.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Gathered {
    /// Per socket, in the order given: the server-reflexive address, or `None`.
    pub srflx: Vec<Option<SocketAddr>>,
    /// Requests sent (retransmissions included).
    pub requests_sent: u64,
    /// Datagrams received meanwhile that were not our server's answer (dropped).
    pub dropped: u64,
    /// Sockets whose binding timed out, was refused or could not be sent.
    pub failed: u64,
}

/// Asks `server` for the address each of `sockets` (at most [`MAX_SOCKETS`]) is seen from, all
/// at once, and returns when every one has its answer or the budget is spent. Datagrams that
/// arrive meanwhile and are not the answer are dropped (nobody else knows these ports yet).
pub fn gather_srflx(
    sockets: &[&MediaSocket],
    server: SocketAddr,
    config: BindingConfig,
) -> Gathered {
    let sockets = &sockets[..sockets.len().min(MAX_SOCKETS)];
    let start = Instant::now();
    let mut rng = rand::rng();
    let mut bindings: Vec<StunBinding> = sockets
        .iter()
        .map(|_| {
            let mut id = [0u8; 12];
            rng.fill_bytes(&mut id);
            StunBinding::new(server, id, config, start)
        })
        .collect();
    let mut unsendable = vec![false; sockets.len()];
    let fds: Vec<_> = sockets.iter().map(|s| s.as_raw_fd()).collect();
    let mut ready = [false; MAX_SOCKETS];
    let mut batch = RecvBatch::new(4, 2048);
    // Bounded in time by the budget and in rounds (each round sleeps until something is due).
    for _ in 0..1000 {
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        for (i, b) in bindings.iter_mut().enumerate() {
            if let Some(req) = b.poll_transmit(now) {
                // A socket that cannot reach the server (no route) has no srflx; the others go on.
                if sockets[i].send_to(&req, server).is_err() {
                    unsendable[i] = true;
                }
            }
            if !unsendable[i] {
                next = match (next, b.poll_timeout()) {
                    (Some(a), Some(t)) => Some(a.min(t)),
                    (a, t) => a.or(t),
                };
            }
        }
        let Some(next) = next else { break };
        let wait = next
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        if poll_readable(&fds, &mut ready[..fds.len()], wait).unwrap_or(0) > 0 {
            for (i, b) in bindings.iter_mut().enumerate() {
                if !ready[i] {
                    continue;
                }
                let n = batch.recv(sockets[i], Wait::No).unwrap_or(0);
                for k in 0..n {
                    let d = batch.get(k);
                    if let (Some(from), false) = (d.from, d.truncated) {
                        b.handle_datagram(from, d.data);
                    }
                }
            }
        }
        let now = Instant::now();
        for b in &mut bindings {
            b.handle_timeout(now);
        }
    }
    let mut g = Gathered::default();
    for (i, b) in bindings.iter().enumerate() {
        let c = b.counters();
        g.requests_sent += c.requests_sent;
        g.dropped += c.dropped;
        let mapped = match b.outcome() {
            BindingOutcome::Mapped(a) if !unsendable[i] => Some(a),
            _ => None,
        };
        g.failed += u64::from(mapped.is_none());
        g.srflx.push(mapped);
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loopback "server" answering with a fixed address: the address comes back, and a
    /// silent server costs the budget and leaves no candidate.
    #[test]
    fn gathers_from_a_loopback_responder_and_gives_up_on_a_silent_one() {
        let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let server = std::net::UdpSocket::bind(lo).unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let srv = server.local_addr().unwrap();
        let responder = std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            for _ in 0..2 {
                let Ok((n, from)) = server.recv_from(&mut buf) else {
                    return;
                };
                if n < 20 {
                    continue;
                }
                // Binding success with XOR-MAPPED-ADDRESS 203.0.113.7:40000.
                let mut r = vec![0x01, 0x01, 0x00, 0x0c];
                r.extend_from_slice(&buf[4..20]);
                let port = 40000u16 ^ 0x2112;
                let ip = [203 ^ 0x21, 0x12, 113 ^ 0xA4, 7 ^ 0x42];
                r.extend_from_slice(&[0x00, 0x20, 0x00, 0x08, 0x00, 0x01]);
                r.extend_from_slice(&port.to_be_bytes());
                r.extend_from_slice(&ip);
                let _ = server.send_to(&r, from);
            }
        });
        let a = MediaSocket::bind(lo).unwrap();
        let b = MediaSocket::bind(lo).unwrap();
        let g = gather_srflx(&[&a, &b], srv, BindingConfig::default());
        responder.join().unwrap();
        let want: SocketAddr = "203.0.113.7:40000".parse().unwrap();
        assert_eq!(g.srflx, vec![Some(want), Some(want)]);
        assert_eq!(g.failed, 0);

        // Nobody answers on this port: at most the budget (with slack for a loaded machine).
        let silent = std::net::UdpSocket::bind(lo).unwrap();
        let t0 = Instant::now();
        let g = gather_srflx(
            &[&a],
            silent.local_addr().unwrap(),
            BindingConfig::default(),
        );
        let took = t0.elapsed();
        assert_eq!(g.srflx, vec![None]);
        assert_eq!((g.failed, g.requests_sent), (1, 3));
        assert!(took >= Duration::from_millis(450), "{took:?}");
        assert!(took < Duration::from_secs(3), "{took:?}");
    }
}
