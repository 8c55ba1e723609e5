//! A pool of even RTP port numbers (RTP on the even port, RTCP on the odd one above it).
//!
//! SIP calls need ports from a configured range; a port must come back when the call ends, however
//! it ends, so a lease returns its port when dropped. Freed ports go to the back of the line, so a
//! port is not handed to a new call while packets for the old one may still be in flight.
//!
//! A lease travels with the sockets bound on its port ([`crate::engine::RtpSockets::hold`]) and
//! is dropped after them, so a port is never free in the pool while a socket of ours (a stream
//! still closing, lingering for NACKs) holds it. A port bound by someone else (another process,
//! or the kernel's pick for a port-0 socket) is skipped by the caller and counted here.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::{Error, Result};

/// Even ports in a range, handed out as [`PortLease`]s.
#[derive(Debug, Clone)]
pub struct PortPool {
    free: Arc<Mutex<VecDeque<u16>>>,
    total: usize,
    busy: Arc<AtomicU64>,
}

impl PortPool {
    /// Every even `p` with `start <= p` and `p + 1 <= end` (both RTP and RTCP ports in range).
    pub fn new(start: u16, end: u16) -> Result<PortPool> {
        let first = start.saturating_add(start % 2);
        let free: VecDeque<u16> = (first..end).step_by(2).collect();
        if free.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "rtp_port_start..rtp_port_end ({start}..{end}) holds no even port with room for RTCP"
            )));
        }
        let total = free.len();
        Ok(PortPool {
            free: Arc::new(Mutex::new(free)),
            total,
            busy: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Takes the port that has been free longest, or `None` when all are in use.
    pub fn acquire(&self) -> Option<PortLease> {
        let port = self.free.lock().pop_front()?;
        Some(PortLease {
            port,
            pool: self.free.clone(),
        })
    }

    /// Ports currently free.
    pub fn available(&self) -> usize {
        self.free.lock().len()
    }

    /// Ports in the pool.
    pub fn capacity(&self) -> usize {
        self.total
    }

    /// Counts a port taken from the pool that could not be bound (something else holds it).
    pub fn count_busy(&self) {
        self.busy.fetch_add(1, Ordering::Relaxed);
    }

    /// Ports found bound by someone else and skipped so far.
    pub fn busy_skipped(&self) -> u64 {
        self.busy.load(Ordering::Relaxed)
    }
}

/// One even port taken from a [`PortPool`]; the port returns to the pool on drop.
#[derive(Debug)]
pub struct PortLease {
    port: u16,
    pool: Arc<Mutex<VecDeque<u16>>>,
}

impl PortLease {
    /// The even (RTP) port; RTCP without rtcp-mux uses `port() + 1`.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for PortLease {
    fn drop(&mut self) {
        self.pool.lock().push_back(self.port);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_even_ports_and_takes_them_back() {
        let pool = PortPool::new(10001, 10008).unwrap();
        assert_eq!(pool.capacity(), 3); // 10002, 10004, 10006 (10008 has no room for RTCP)
        let a = pool.acquire().unwrap();
        let b = pool.acquire().unwrap();
        let c = pool.acquire().unwrap();
        assert!(pool.acquire().is_none());
        assert_eq!([a.port(), b.port(), c.port()], [10002, 10004, 10006]);
        drop(b);
        assert_eq!(pool.available(), 1);
        assert_eq!(pool.acquire().unwrap().port(), 10004);
        drop((a, c));
        assert_eq!(pool.available(), 3);
    }

    #[test]
    fn freed_port_goes_to_the_back() {
        let pool = PortPool::new(20000, 20006).unwrap();
        let a = pool.acquire().unwrap();
        assert_eq!(a.port(), 20000);
        drop(a);
        assert_eq!(pool.acquire().unwrap().port(), 20002);
    }

    /// The race the bench's churn soak hit: the application still holds a closed session (a
    /// send or a callback in flight) while signalling ends the call. The sockets stay bound
    /// until the last holder lets go, so the port must not be free in the pool before then.
    #[test]
    fn a_lease_comes_back_only_when_the_last_socket_on_its_port_closes() {
        use crate::engine::StreamConfig;
        use crate::engine::{BoundMedia, EngineConfig, MediaEngine, RtpSockets, SessionSpec};
        let lo = std::net::Ipv4Addr::LOCALHOST;
        // An even RTP/RTCP pair that is free now, as the pool's whole range.
        let port = (0..64)
            .find_map(|_| {
                let s = RtpSockets::bind((lo, 0).into(), false).ok()?;
                let p = s.local_addr().port();
                (p % 2 == 0).then_some(p)
            })
            .expect("a free even port pair on loopback");
        let pool = PortPool::new(port, port + 1).unwrap();
        let lease = pool.acquire().unwrap();
        let sockets = RtpSockets::bind((lo, lease.port()).into(), false)
            .unwrap()
            .hold(lease);
        assert_eq!(pool.available(), 0);
        let engine = MediaEngine::new(EngineConfig::default()).unwrap();
        let id = uuid::Uuid::new_v4();
        let spec = SessionSpec {
            room_id: "r".into(),
            participant_id: "p".into(),
            metadata: Default::default(),
            video_metadata: Default::default(),
            audio: StreamConfig {
                remote_addr: (lo, 9).into(),
                ..StreamConfig::default()
            },
            video: None,
        };
        let bound = BoundMedia {
            audio: sockets,
            video: None,
        };
        engine.create_session_bound(id, spec, bound).unwrap();
        let held = engine.session(id).unwrap();
        engine.disconnect(id).unwrap();
        // Ended, but its sockets are still open through `held`: the port is not free.
        assert_eq!(pool.available(), 0, "lease back while its socket is bound");
        assert!(RtpSockets::bind((lo, port).into(), false).is_err());
        drop(held);
        assert_eq!(pool.available(), 1);
        let again = pool.acquire().unwrap();
        assert!(RtpSockets::bind((lo, again.port()).into(), false).is_ok());
    }

    #[test]
    fn empty_range_is_an_error() {
        assert!(PortPool::new(5000, 5000).is_err());
        assert!(PortPool::new(5001, 5002).is_err());
    }
}
