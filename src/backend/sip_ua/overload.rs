//! Overload control: refusing new work early and cheaply when the SIP thread is behind, and
//! the per-source rate limit (RFC 6357 §4 and §5: a server that sheds load with 503 keeps
//! its goodput; one that lets requests queue until callers time out loses all of it, as each
//! late answer meets an INVITE retransmission that adds to the queue).
//!
//! What is never refused here: ACK, CANCEL, in-dialog requests (BYE above all: it frees a
//! call) and retransmissions, which the transaction layer answers with what it already sent.
//!
//! Two queues can back up: the SIP thread's own input (the UDP receive queue, measured by the
//! thread) and the sessions the media host is starting off the SIP thread ([`PendingStarts`],
//! measured here on the core's clock). New INVITEs are refused from when the first reaches
//! `max_backlog` until it is back under a quarter of it (hysteresis), and while the second
//! would keep a new call waiting `max_backlog`: its oldest has waited that long, or, at the
//! pace the host has been starting sessions, those queued would take that long. Each refusal
//! is counted under its reason ([`Shed`]). A retransmitted INVITE of a call being set up
//! meets its server transaction, which sends the 180 again: it creates no work.
//!
//! Per-source limit, the choice for non-INVITE requests: an excess request of any method
//! gets a 503 with `Retry-After`, sent without creating a transaction. Dropping it silently
//! would be cheaper once but not in total: an unanswered non-INVITE is retransmitted by its
//! client for 32 s (timer E, up to 11 times, RFC 3261 §17.1.2.2), and an unanswered INVITE
//! for 32 s too, each copy costing a parse again. A final answer ends the client
//! transaction at once. Being stateless, the answer keeps no memory per request, so a flood
//! cannot grow the transaction table; a retransmission of a refused request is looked at
//! again (and let through if its source is back under its rate). The answer is no bigger
//! than the request, so it amplifies nothing toward a spoofed address.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::backend::sip_config::OverloadConfig;
use crate::engine::{EndReason, SessionId};
use crate::sip::rate_limit::SourceRateLimiter;
use crate::sip::{retry_after_value, Method, ResponseBuilder, SipMessage, SipRng};

/// How loaded the thread driving the core is, as that thread measures it (the core has no
/// clock). Given with [`SipCore::set_load`](super::SipCore::set_load) before the inputs it
/// applies to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SipLoad {
    /// How long the oldest input not yet handled has waited: on the SIP socket thread, the
    /// age of the batch's first datagram from its kernel arrival stamp.
    pub backlog: Duration,
}

/// Why overload control refuses a new INVITE (each counted apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shed {
    /// The SIP thread's own input is behind (its receive queue).
    SipBacklog,
    /// The sessions being started off the SIP thread would keep a new call waiting too long.
    SetupQueue,
}

/// The core's overload state: a leaf the core asks (it counts and sends what this decides).
#[derive(Debug)]
pub(super) struct Overload {
    cfg: OverloadConfig,
    load: SipLoad,
    limiter: Option<SourceRateLimiter>,
    /// Set when the SIP thread's backlog reached `max_backlog`, cleared once it is back
    /// under a quarter of it (hysteresis): while set, every new INVITE is refused, which
    /// empties the receive queue fast, instead of letting it hover at the limit, where each
    /// call answered would wait the whole `max_backlog` and any slower turn would reach a
    /// caller's retransmission (T1, 500 ms).
    shedding: bool,
}

impl Overload {
    pub(super) fn new(cfg: &OverloadConfig) -> Overload {
        let limiter = (cfg.source_rate > 0).then(|| {
            let burst = if cfg.source_burst == 0 {
                cfg.source_rate
            } else {
                cfg.source_burst
            };
            SourceRateLimiter::new(cfg.source_rate, burst, cfg.source_table)
        });
        Overload {
            cfg: cfg.clone(),
            load: SipLoad::default(),
            limiter,
            shedding: false,
        }
    }

    /// Whether a new INVITE is to be refused at `now`, and why: the SIP thread's backlog
    /// (with hysteresis), or the setup queue, whose oldest session has waited `max_backlog`
    /// or whose length, at the pace the host has been starting sessions, would make a new
    /// one wait that long (admission before work: a call taken is one that will be answered
    /// in time, not one that times out in a queue).
    pub(super) fn shed(&mut self, starting: &PendingStarts, now: Instant) -> Option<Shed> {
        let max = self.cfg.max_backlog;
        if max.is_zero() {
            return None;
        }
        if self.load.backlog >= max {
            self.shedding = true;
        } else if self.load.backlog < max / 4 {
            self.shedding = false;
        }
        if self.shedding {
            return Some(Shed::SipBacklog);
        }
        (starting.wait(now) >= max).then_some(Shed::SetupQueue)
    }

    pub(super) fn set_load(&mut self, load: SipLoad) {
        self.load = load;
    }

    /// A `Retry-After` value for an overload 503: 1 to `retry_after_max_s` seconds, drawn
    /// at random so that refused callers spread their returns.
    pub(super) fn retry_after(&self, rng: &mut SipRng) -> String {
        let max = self.cfg.retry_after_max_s.clamp(1, 3600);
        retry_after_value(1 + rng.next_u32() % max, None)
    }

    /// The per-source rate limit for a request that would start a new transaction (ACK and
    /// CANCEL never count, nor in-dialog requests, with a To tag): `None` to go on, or the
    /// stateless 503 to send instead when `from` is over its rate.
    pub(super) fn over_source_rate(
        &mut self,
        req: &SipMessage,
        from: IpAddr,
        now: Instant,
        rng: &mut SipRng,
        server: &str,
    ) -> Option<Vec<u8>> {
        if req.to().tag().is_some()
            || matches!(req.method(), Method::Ack | Method::Cancel)
            || self.limiter.as_mut().is_none_or(|l| l.allow(from, now))
        {
            return None;
        }
        let retry = self.retry_after(rng);
        let tag = rng.tag();
        Some(
            ResponseBuilder::new(req.echo(), 503)
                .to_tag(&tag)
                .server(server)
                .header("Retry-After", &retry)
                .build(),
        )
    }
}

/// Sessions the media host is starting off the SIP thread, oldest first, and the pace at
/// which the host gets through them.
#[derive(Debug, Default)]
pub(super) struct PendingStarts {
    /// Each pending session: when it was handed over, and why its call ended meanwhile (then
    /// the host closes the session once it reports).
    sessions: HashMap<SessionId, (Instant, Option<EndReason>)>,
    /// When each was handed over, in order (entries already reported are skipped lazily).
    queue: VecDeque<(Instant, SessionId)>,
    /// The host's pace: its busy time (seconds) and the sessions it reported, both decayed
    /// with time (see [`PACE_MEMORY`]); their ratio is its time per session.
    busy: f64,
    done: f64,
    /// When the host last reported.
    last_report: Option<Instant>,
}

/// How long the pace remembers, in seconds: sums older by this much count half as much. The
/// decay is by time, not by report, because the SIP thread takes the host's reports in
/// batches (one `now` for many): per report, the first of a batch would carry the whole
/// interval and the rest none, and an average over reports would follow the zeros.
const PACE_MEMORY: f64 = 1.0;

impl PendingStarts {
    /// `session` was handed to the host at `now`.
    pub(super) fn add(&mut self, session: SessionId, now: Instant) {
        self.sessions.insert(session, (now, None));
        self.queue.push_back((now, session));
    }

    /// The call of a pending session ended for `why`.
    pub(super) fn ended(&mut self, session: SessionId, why: EndReason) {
        if let Some((_, e)) = self.sessions.get_mut(&session) {
            *e = Some(why);
        }
    }

    /// The host reported `session` at `now`: `None` when it was not pending, else why its
    /// call ended meanwhile, if it did. The host starts sessions one at a time in order, so
    /// one handed over before the host's last report waited for the host, and took from that
    /// report to now: that is the pace. One handed over to an idle host is not counted: its
    /// time is mostly the round trip of the hand-over and the report through the SIP
    /// thread's queues, not work that a queue of them would add up.
    pub(super) fn finish(&mut self, session: SessionId, now: Instant) -> Option<Option<EndReason>> {
        let (handed, why) = self.sessions.remove(&session)?;
        if let Some(last) = self.last_report.filter(|&last| handed <= last) {
            let dt = now.saturating_duration_since(last).as_secs_f64();
            let keep = PACE_MEMORY / (PACE_MEMORY + dt);
            self.busy = self.busy * keep + dt;
            self.done = self.done * keep + 1.0;
        }
        self.last_report = Some(now);
        self.trim();
        Some(why)
    }

    /// How long a session handed over at `now` would wait: the longer of how long the oldest
    /// pending one has waited, and what those pending would take at the host's pace (zero
    /// when none is pending).
    pub(super) fn wait(&self, now: Instant) -> Duration {
        let oldest = self
            .queue
            .front()
            .map_or(Duration::ZERO, |(at, _)| now.saturating_duration_since(*at));
        let queued = if self.done > 0.0 {
            let secs = self.busy / self.done * self.sessions.len() as f64;
            Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
        } else {
            Duration::ZERO
        };
        oldest.max(queued)
    }

    /// Sessions pending.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Drops the queue's head entries already reported, so that its head is the oldest
    /// pending session. (The host reports in order, so this is O(1) per report.)
    fn trim(&mut self) {
        while let Some((_, s)) = self.queue.front() {
            if self.sessions.contains_key(s) {
                break;
            }
            self.queue.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> SessionId {
        uuid::Uuid::from_u128(n)
    }

    /// Reports taken in a batch (one `now` for many, as the SIP thread takes its commands)
    /// give the host's real pace, not the pace of the last report alone.
    #[test]
    fn the_pace_holds_when_reports_come_in_batches() {
        let t0 = Instant::now();
        let mut p = PendingStarts::default();
        for n in 0..11 {
            p.add(id(n), t0);
        }
        // The first, handed to an idle host, says nothing of the pace.
        let first = t0 + Duration::from_millis(10);
        assert_eq!(p.finish(id(0), first), Some(None));
        assert_eq!(
            p.wait(first),
            Duration::from_millis(10),
            "the oldest's wait only"
        );
        // The ten queued behind it reported at once, 100 ms later: 10 ms each.
        let at = first + Duration::from_millis(100);
        for n in 1..11 {
            assert_eq!(p.finish(id(n), at), Some(None));
        }
        assert_eq!(p.finish(id(3), at), None, "reported already");
        for n in 10..15 {
            p.add(id(n), at);
        }
        let wait = p.wait(at);
        assert!(
            wait > Duration::from_millis(45) && wait < Duration::from_millis(55),
            "{wait:?}"
        );
        // The oldest waiting longer than that is what counts then.
        let later = at + Duration::from_millis(80);
        assert_eq!(p.wait(later), Duration::from_millis(80));
        // A call that ended while its session started is told apart.
        p.ended(id(10), EndReason::RemoteHangup);
        assert_eq!(p.finish(id(10), later), Some(Some(EndReason::RemoteHangup)));
    }
}
