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
//! measured here on the core's clock). Either one older than `max_backlog` refuses new
//! INVITEs. A retransmitted INVITE of a call being set up meets its server transaction, which
//! sends the 180 again: it creates no work.
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

/// The core's overload state: a leaf the core asks (it counts and sends what this decides).
#[derive(Debug)]
pub(super) struct Overload {
    cfg: OverloadConfig,
    load: SipLoad,
    limiter: Option<SourceRateLimiter>,
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
        }
    }

    /// True while new calls are to be refused for a backlog: the SIP thread's, or
    /// `setup`, how long the oldest session being started off the thread has waited.
    pub(super) fn backed_up(&self, setup: Duration) -> bool {
        let max = self.cfg.max_backlog;
        !max.is_zero() && (self.load.backlog >= max || setup >= max)
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

/// Sessions the media host is starting off the SIP thread, oldest first.
#[derive(Debug, Default)]
pub(super) struct PendingStarts {
    /// Each pending session, with why its call ended meanwhile (then the host closes the
    /// session once it reports).
    sessions: HashMap<SessionId, Option<EndReason>>,
    /// When each was handed over, in order (entries already reported are skipped lazily).
    queue: VecDeque<(Instant, SessionId)>,
}

impl PendingStarts {
    /// `session` was handed to the host at `now`.
    pub(super) fn add(&mut self, session: SessionId, now: Instant) {
        self.sessions.insert(session, None);
        self.queue.push_back((now, session));
    }

    /// The call of a pending session ended for `why`.
    pub(super) fn ended(&mut self, session: SessionId, why: EndReason) {
        if let Some(e) = self.sessions.get_mut(&session) {
            *e = Some(why);
        }
    }

    /// The host reported `session`: `None` when it was not pending, else why its call ended
    /// meanwhile, if it did.
    pub(super) fn finish(&mut self, session: SessionId) -> Option<Option<EndReason>> {
        let r = self.sessions.remove(&session);
        self.trim();
        r
    }

    /// How long the oldest pending session has waited at `now` (zero when none is).
    pub(super) fn backlog(&self, now: Instant) -> Duration {
        self.queue
            .front()
            .map_or(Duration::ZERO, |(at, _)| now.saturating_duration_since(*at))
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
