//! What the SIP user agent tells the application (call progress, registrations) and what the
//! application can look up about its calls meanwhile (the [`CallDirectory`] and the
//! [`SipCounters`], kept up to date by the SIP thread from the core's [`SharedUpdate`]s).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::backend::sip_config::SipStats;
use crate::engine::{SessionId, SessionInfo};
use crate::metrics::SetupHistogram;

/// Where a dialed call stands. Each change arrives once, in this order (some may be
/// skipped): `Trying`, `Ringing`, `EarlyMedia`, then `Answered` or `Failed`, and `Ended` after
/// `Answered` (or `EarlyMedia`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CallState {
    /// The INVITE is on its way (or a 100 Trying came back).
    Trying,
    /// The far end is alerting (180, or a 18x without SDP).
    Ringing,
    /// A 18x with an SDP answer: the media session is up before the call is answered.
    EarlyMedia,
    /// A 2xx: the call is established.
    Answered,
    /// The call did not happen: a final error response, a timeout (408), or cancelled (487).
    Failed,
    /// The established call ended (BYE from either side, or a session timer).
    Ended,
}

impl CallState {
    /// A lowercase name (`trying`, `ringing`, `early_media`, `answered`, `failed`, `ended`).
    pub fn as_str(self) -> &'static str {
        match self {
            CallState::Trying => "trying",
            CallState::Ringing => "ringing",
            CallState::EarlyMedia => "early_media",
            CallState::Answered => "answered",
            CallState::Failed => "failed",
            CallState::Ended => "ended",
        }
    }

    /// True for `Failed` and `Ended`: nothing follows.
    pub fn is_final(self) -> bool {
        matches!(self, CallState::Failed | CallState::Ended)
    }
}

/// One step of a dialed call, as `on_call_state` receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallProgress {
    /// Where the call is now.
    pub state: CallState,
    /// The SIP status that caused the step (180, 183, 200, 486...); 0 when none did (the
    /// INVITE was just sent, or the call ended).
    pub status: u16,
    /// The reason phrase, or why the call failed or ended.
    pub reason: String,
}

/// Identifies a registration of a backend ([`register`](crate::backend::SipVoiceBackend::register)).
pub type RegistrationId = u64;

/// What happened to a registration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistrationEvent {
    /// The registrar accepted the binding (first time or refresh) for `expires` seconds.
    Registered {
        /// Seconds the registrar granted.
        expires: u32,
    },
    /// A REGISTER failed with `status` (408: no answer); `retry_in` is when the next attempt
    /// goes out, `None` when none will (credentials refused).
    Failed {
        /// The final status of the REGISTER, or 408 when none came.
        status: u16,
        /// The reason phrase, or what went wrong.
        reason: String,
        /// When the next attempt goes out; `None`: no more attempts.
        retry_in: Option<Duration>,
    },
    /// The binding was removed (`unregister`, or the backend stopped).
    Unregistered,
}

/// Events for the application's SIP callbacks (run on the SIP callback thread).
#[derive(Debug, Clone)]
pub enum SipEvent {
    /// An incoming call was answered (200 sent): `on_call`.
    Call(Box<SessionInfo>),
    /// A dialed call moved on: `on_call_state`.
    CallState(SessionId, CallProgress),
    /// A registration moved on: `on_registration`.
    Registration(RegistrationId, RegistrationEvent),
}

/// Counters of the signalling side, readable from any thread.
#[derive(Debug, Default)]
pub struct SipCounters {
    /// Datagrams received on the SIP socket.
    pub received: AtomicU64,
    /// Requests answered with 400/416/505 by the parser's checks.
    pub rejected: AtomicU64,
    /// Datagrams dropped as unanswerable (garbage, bad responses, stray ACKs).
    pub dropped: AtomicU64,
    /// INVITEs that became calls (answered 200).
    pub calls_answered: AtomicU64,
    /// Calls that ended (any reason, either direction).
    pub calls_ended: AtomicU64,
    /// INVITEs refused with a final error (488, 503, 403, filter...).
    pub calls_refused: AtomicU64,
    /// Our BYEs that got no answer (timer F).
    pub bye_timeouts: AtomicU64,
    /// Our BYEs that got a final answer.
    pub byes_answered: AtomicU64,
    /// BYEs we could not build or start a transaction for (none went out; the call still
    /// ends). 0 unless there is a bug.
    pub bye_failures: AtomicU64,
    /// Calls we placed.
    pub calls_dialed: AtomicU64,
    /// INVITEs refused with 503.
    pub calls_refused_overload: AtomicU64,
    /// Out-of-dialog requests answered 503 for their source's rate.
    pub requests_rate_limited: AtomicU64,
    /// INVITEs refused with 503 while the SIP thread's input was backed up.
    pub refused_sip_backlog: AtomicU64,
    /// INVITEs refused with 503 while the sessions being started would make them wait.
    pub refused_setup_queue: AtomicU64,
    /// INVITEs refused with 503 for want of a session or RTP port (`max_sessions`, the port
    /// range, a media start that failed).
    pub refused_capacity: AtomicU64,
    /// Incoming calls: INVITE received → 200 sent.
    pub setup_incoming: SetupHistogram,
    /// Dialed calls: dial → 2xx received.
    pub setup_outgoing: SetupHistogram,
    /// Media sockets that learnt their server-reflexive address from the STUN server.
    pub srflx_gathered: AtomicU64,
    /// Media sockets whose STUN binding failed (no answer in time, an error, no route): they
    /// offered their host candidate only.
    pub srflx_failed: AtomicU64,
}

impl SipCounters {
    /// Adds one to `counter`.
    pub fn inc(&self, counter: SipCounter) {
        let c = match counter {
            SipCounter::Received => &self.received,
            SipCounter::Rejected => &self.rejected,
            SipCounter::Dropped => &self.dropped,
            SipCounter::CallsAnswered => &self.calls_answered,
            SipCounter::CallsEnded => &self.calls_ended,
            SipCounter::CallsRefused => &self.calls_refused,
            SipCounter::ByeTimeouts => &self.bye_timeouts,
            SipCounter::ByesAnswered => &self.byes_answered,
            SipCounter::ByeFailures => &self.bye_failures,
            SipCounter::CallsDialed => &self.calls_dialed,
            SipCounter::CallsRefusedOverload => &self.calls_refused_overload,
            SipCounter::RequestsRateLimited => &self.requests_rate_limited,
            SipCounter::RefusedSipBacklog => &self.refused_sip_backlog,
            SipCounter::RefusedSetupQueue => &self.refused_setup_queue,
            SipCounter::RefusedCapacity => &self.refused_capacity,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Applies what the core published (other updates are ignored).
    pub fn apply(&self, update: &SharedUpdate) {
        match update {
            SharedUpdate::Counted(c) => self.inc(*c),
            SharedUpdate::CallSetUp { outgoing, took } => {
                let h = if *outgoing {
                    &self.setup_outgoing
                } else {
                    &self.setup_incoming
                };
                h.observe(*took);
            }
            _ => {}
        }
    }

    /// A snapshot for the application.
    pub fn snapshot(&self) -> SipStats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SipStats {
            received: g(&self.received),
            rejected: g(&self.rejected),
            dropped: g(&self.dropped),
            calls_answered: g(&self.calls_answered),
            calls_ended: g(&self.calls_ended),
            calls_refused: g(&self.calls_refused),
            bye_timeouts: g(&self.bye_timeouts),
            byes_answered: g(&self.byes_answered),
            bye_failures: g(&self.bye_failures),
            calls_dialed: g(&self.calls_dialed),
            calls_refused_overload: g(&self.calls_refused_overload),
            requests_rate_limited: g(&self.requests_rate_limited),
            calls_refused_sip_backlog: g(&self.refused_sip_backlog),
            calls_refused_setup_queue: g(&self.refused_setup_queue),
            calls_refused_capacity: g(&self.refused_capacity),
            srflx_gathered: g(&self.srflx_gathered),
            srflx_failed: g(&self.srflx_failed),
            // The TCP/TLS counters are the SIP thread's own (`SipTransport::stream_counters`).
            ..SipStats::default()
        }
    }
}

/// One of the [`SipCounters`], named in a [`SharedUpdate::Counted`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SipCounter {
    Received,
    Rejected,
    Dropped,
    CallsAnswered,
    CallsEnded,
    CallsRefused,
    ByeTimeouts,
    ByesAnswered,
    ByeFailures,
    CallsDialed,
    CallsRefusedOverload,
    RequestsRateLimited,
    RefusedSipBacklog,
    RefusedSetupQueue,
    RefusedCapacity,
}

/// A change to the state other threads read while the SIP thread owns the calls: the
/// [`CallDirectory`] and the [`SipCounters`]. The core owns no lock; it queues these like its
/// outbox ([`SipCore::poll_update`](super::SipCore::poll_update)) and the SIP thread applies
/// them, before it hands the input's [`SipEvent`]s to the callbacks, so a callback already
/// finds its call in the directory.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SharedUpdate {
    /// A call became live (dialed, or an incoming one answered).
    CallAdded(SessionId, CallView),
    /// A dialed call moved on.
    CallProgress(SessionId, CallProgress),
    /// A call ended.
    CallRemoved(SessionId),
    /// A counter went up by one.
    Counted(SipCounter),
    /// A call was set up in `took`: an incoming one from its INVITE to our 200, a dialed one
    /// from `dial` to the 2xx.
    CallSetUp { outgoing: bool, took: Duration },
}

/// What the application can see of a call while the SIP thread owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallView {
    pub call_id: String,
    /// The last progress of a dialed call.
    pub progress: Option<CallProgress>,
}

/// Finished dialed calls remembered for late `wait_call`s.
const MAX_FINISHED: usize = 256;

/// The calls of a backend as the application sees them, written by the SIP core and read by
/// the backend handle (a short lock, never held across I/O).
#[derive(Debug, Default)]
pub struct CallDirectory {
    inner: Mutex<Directory>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct Directory {
    live: HashMap<SessionId, CallView>,
    finished: VecDeque<(SessionId, CallProgress)>,
}

impl CallDirectory {
    /// Applies what the core published (counter updates are ignored).
    pub fn apply(&self, update: &SharedUpdate) {
        match update {
            SharedUpdate::CallAdded(s, view) => self.insert(*s, view.clone()),
            SharedUpdate::CallProgress(s, p) => self.progress(*s, p),
            SharedUpdate::CallRemoved(s) => self.remove(*s),
            SharedUpdate::Counted(_) | SharedUpdate::CallSetUp { .. } => {}
        }
    }

    /// Adds (or replaces) a live call.
    pub fn insert(&self, session: SessionId, view: CallView) {
        self.inner.lock().live.insert(session, view);
        self.changed.notify_all();
    }

    /// Records a dialed call's progress; a final state moves it to the finished list.
    pub fn progress(&self, session: SessionId, progress: &CallProgress) {
        let mut d = self.inner.lock();
        if progress.state.is_final() {
            d.live.remove(&session);
            if d.finished.len() >= MAX_FINISHED {
                d.finished.pop_front();
            }
            d.finished.push_back((session, progress.clone()));
        } else if let Some(v) = d.live.get_mut(&session) {
            v.progress = Some(progress.clone());
        }
        drop(d);
        self.changed.notify_all();
    }

    /// Forgets a call (it ended).
    pub fn remove(&self, session: SessionId) {
        self.inner.lock().live.remove(&session);
        self.changed.notify_all();
    }

    /// A live call.
    pub fn get(&self, session: SessionId) -> Option<CallView> {
        self.inner.lock().live.get(&session).cloned()
    }

    /// True while the call is live.
    pub fn contains(&self, session: SessionId) -> bool {
        self.inner.lock().live.contains_key(&session)
    }

    /// Live calls.
    #[cfg(any(test, feature = "_internals"))]
    pub fn len(&self) -> usize {
        self.inner.lock().live.len()
    }

    /// True without live calls.
    #[cfg(any(test, feature = "_internals"))]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The latest progress of a dialed call, live or recently finished.
    pub fn latest(&self, session: SessionId) -> Option<CallProgress> {
        let d = self.inner.lock();
        if let Some(v) = d.live.get(&session) {
            return v.progress.clone();
        }
        d.finished
            .iter()
            .rev()
            .find(|(s, _)| *s == session)
            .map(|(_, p)| p.clone())
    }

    /// Waits until the dialed call `session` is answered, fails or ends, at most `timeout`;
    /// returns its progress then (`None`: still going, or unknown).
    pub fn wait_settled(&self, session: SessionId, timeout: Duration) -> Option<CallProgress> {
        let deadline = Instant::now() + timeout;
        let mut d = self.inner.lock();
        loop {
            let latest = match d.live.get(&session) {
                Some(v) => v.progress.clone(),
                None => d
                    .finished
                    .iter()
                    .rev()
                    .find(|(s, _)| *s == session)
                    .map(|(_, p)| p.clone()),
            };
            if let Some(p) = latest.filter(|p| {
                matches!(
                    p.state,
                    CallState::Answered | CallState::Failed | CallState::Ended
                )
            }) {
                return Some(p);
            }
            if !d.live.contains_key(&session) {
                return None;
            }
            if self.changed.wait_until(&mut d, deadline).timed_out() {
                return None;
            }
        }
    }
}
