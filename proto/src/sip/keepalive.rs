//! RFC 5626 §4.4.1 keep-alives of one connection we opened (TCP, TLS), without I/O: when to
//! send a ping (CRLF CRLF, [`PING`]) and when an unanswered one means the connection is dead.
//!
//! A client sends a ping every interval; RFC 5626 recommends a random value between 80 % and
//! 100 % of 120 s on connections (so that many clients started together do not ping in step:
//! [`jittered`]), and treats the flow as failed when no pong (a CRLF) has come back within 10 s.
//! Any bytes from the peer count as the pong: a peer that sends us a message is alive, and the
//! framer skips a lone CRLF without telling it apart from filler.
//!
//! Drive it like the other machines: [`KeepAlive::handle_received`] when bytes arrive,
//! [`KeepAlive::handle_timeout`] once [`KeepAlive::poll_timeout`] has passed, which says
//! whether to send a ping or to give the connection up.

use std::time::{Duration, Instant};

/// What a keep-alive ping is on a connection: a double CRLF.
pub const PING: &[u8] = b"\r\n\r\n";

/// RFC 5626 §4.4.1's recommended keep-alive interval on connections.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(120);

/// RFC 5626 §4.4.1: a ping not answered within this means the flow failed.
pub const DEFAULT_PONG_TIMEOUT: Duration = Duration::from_secs(10);

/// `interval` scaled into 80 %..=100 % of itself by `draw` (any `u32`, uniformly drawn).
pub fn jittered(interval: Duration, draw: u32) -> Duration {
    let fifth = interval / 5;
    let share = fifth.mul_f64(f64::from(draw) / f64::from(u32::MAX));
    interval - fifth + share
}

/// What [`KeepAlive::handle_timeout`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepAliveAction {
    /// Send [`PING`] now.
    Ping,
    /// The last ping went unanswered: the connection is dead (a transport error for whatever
    /// waits on it).
    Dead,
}

/// The keep-alive schedule of one connection.
#[derive(Debug, Clone)]
pub struct KeepAlive {
    interval: Duration,
    pong_timeout: Duration,
    next_ping: Instant,
    /// Set while a ping waits for its pong.
    pong_by: Option<Instant>,
    dead: bool,
}

impl KeepAlive {
    /// Pings every `interval` from `now` on (already jittered, if wanted), each to be answered
    /// within `pong_timeout`. `None` when `interval` is zero (keep-alives off).
    pub fn new(now: Instant, interval: Duration, pong_timeout: Duration) -> Option<KeepAlive> {
        (!interval.is_zero()).then(|| KeepAlive {
            interval,
            pong_timeout,
            next_ping: now + interval,
            pong_by: None,
            dead: false,
        })
    }

    /// Bytes came from the peer: a ping waiting for its pong is answered.
    pub fn handle_received(&mut self, _now: Instant) {
        self.pong_by = None;
    }

    /// When [`handle_timeout`](Self::handle_timeout) next needs to run; `None` once dead.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.dead {
            return None;
        }
        Some(
            self.pong_by
                .map_or(self.next_ping, |p| p.min(self.next_ping)),
        )
    }

    /// Runs the timers due at `now`: reports a dead connection first, else a ping to send.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<KeepAliveAction> {
        if self.dead {
            return None;
        }
        if self.pong_by.is_some_and(|t| t <= now) {
            self.dead = true;
            return Some(KeepAliveAction::Dead);
        }
        if self.next_ping <= now {
            self.next_ping = now + self.interval;
            // An earlier ping still unanswered keeps its own deadline.
            self.pong_by.get_or_insert(now + self.pong_timeout);
            return Some(KeepAliveAction::Ping);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// Runs the machine from `t0` to `until` on virtual time; the peer answers a ping after
    /// `answer` (never when `None`). Returns what happened, in seconds since `t0`.
    fn run(
        ka: &mut KeepAlive,
        t0: Instant,
        until: Instant,
        answer: impl Fn(u64) -> Option<Duration>,
    ) -> Vec<(u64, KeepAliveAction)> {
        let mut log = Vec::new();
        let mut pong_at: Option<Instant> = None;
        for _ in 0..1000 {
            let due = [ka.poll_timeout(), pong_at].into_iter().flatten().min();
            let Some(t) = due.filter(|t| *t <= until) else {
                break;
            };
            if pong_at == Some(t) {
                pong_at = None;
                ka.handle_received(t);
                continue;
            }
            if let Some(a) = ka.handle_timeout(t) {
                let at = (t - t0).as_secs();
                log.push((at, a));
                if a == KeepAliveAction::Ping {
                    pong_at = answer(at).map(|d| t + d);
                }
            }
        }
        log
    }

    #[test]
    fn answered_pings_go_on_every_interval() {
        let t0 = Instant::now();
        let mut ka = KeepAlive::new(t0, secs(100), secs(10)).unwrap();
        let log = run(&mut ka, t0, t0 + secs(450), |_| Some(secs(1)));
        assert_eq!(
            log,
            [100, 200, 300, 400].map(|s| (s, KeepAliveAction::Ping))
        );
    }

    #[test]
    fn a_pong_missing_for_the_timeout_kills_the_connection_once() {
        let t0 = Instant::now();
        let mut ka = KeepAlive::new(t0, secs(100), secs(10)).unwrap();
        // The first ping is answered late but in time, the second never.
        let log = run(&mut ka, t0, t0 + secs(1000), |at| {
            (at == 100).then_some(secs(9))
        });
        assert_eq!(
            log,
            [
                (100, KeepAliveAction::Ping),
                (200, KeepAliveAction::Ping),
                (210, KeepAliveAction::Dead)
            ]
        );
        assert_eq!(ka.poll_timeout(), None);
    }

    #[test]
    fn a_short_interval_keeps_the_first_unanswered_deadline() {
        let t0 = Instant::now();
        let mut ka = KeepAlive::new(t0, secs(3), secs(10)).unwrap();
        let log = run(&mut ka, t0, t0 + secs(60), |_| None);
        assert_eq!(
            log,
            [
                (3, KeepAliveAction::Ping),
                (6, KeepAliveAction::Ping),
                (9, KeepAliveAction::Ping),
                (12, KeepAliveAction::Ping),
                (13, KeepAliveAction::Dead)
            ]
        );
    }

    #[test]
    fn zero_is_off_and_jitter_stays_in_80_to_100_percent() {
        assert!(KeepAlive::new(Instant::now(), Duration::ZERO, secs(10)).is_none());
        assert_eq!(jittered(secs(120), 0), secs(96));
        assert_eq!(jittered(secs(120), u32::MAX), secs(120));
        let mid = jittered(secs(120), u32::MAX / 2);
        assert!(mid > secs(107) && mid < secs(109), "{mid:?}");
    }
}
