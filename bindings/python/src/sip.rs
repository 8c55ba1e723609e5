//! `SipCore`: the engine's SIP backends (voice, or voice + video) for Python, on the same event
//! queue as [`RtpCore`](crate::RtpCore): the SIP callback thread only pushes events.
//!
//! roomkit names an incoming call's session after its `X-Session-ID` header, or its Call-ID,
//! and answers 486 to a second INVITE that names a live one. That check runs here, in the
//! engine's invite filter (no GIL on the SIP thread): the id is claimed when the INVITE passes
//! the filter, held while the call lives, and released when it ends. A claim whose call never
//! came up (refused later, or the caller cancelled) lapses after [`CLAIM_LAPSE`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use roomkit_media::backend::{
    AppRate, AudioCodec, CallDecision, DialOptions, IncomingCall, MediaBackend, RegisterOptions,
    RegistrationEvent, SipBackendConfig, SipCredentials, SipVideoBackend, SipVoiceBackend,
};
use roomkit_media::VideoCodec;

use crate::{
    addr, err, host_port, info_dict, session_id, wire, Event, EventQueue, Handle, MediaCore, Voice,
};

/// How long an id claimed by an INVITE stays taken when no call comes of it (an INVITE is
/// answered or given up within 64 × T1 = 32 s).
const CLAIM_LAPSE: Duration = Duration::from_secs(64);

/// roomkit's session id of a call: `X-Session-ID` (any case), else the Call-ID.
fn roomkit_id<'a>(
    x_headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    call_id: &str,
) -> String {
    x_headers
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("x-session-id"))
        .map_or_else(|| call_id.to_string(), |(_, v)| v.to_string())
}

/// Session ids taken by calls: `None` while the call lives, `Some(since)` while its INVITE is
/// being set up.
#[derive(Default)]
struct Claims(Mutex<HashMap<String, Option<Instant>>>);

impl Claims {
    /// Takes `id` for a new INVITE; false when a live or recent call has it.
    fn claim(&self, id: &str, now: Instant) -> bool {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() > 4096 {
            m.retain(|_, since| since.is_none_or(|t| now.duration_since(t) < CLAIM_LAPSE));
        }
        match m.get(id) {
            Some(None) => false,
            Some(Some(t)) if now.duration_since(*t) < CLAIM_LAPSE => false,
            _ => {
                m.insert(id.to_string(), Some(now));
                true
            }
        }
    }

    fn live(&self, id: &str) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.insert(id.to_string(), None);
    }

    fn release(&self, id: &str) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.remove(id);
    }
}

enum Backend {
    Voice(SipVoiceBackend),
    Video(SipVideoBackend),
}

impl Voice for Backend {
    type Engine = SipVoiceBackend;

    fn voice(&self) -> &SipVoiceBackend {
        match self {
            Backend::Voice(b) => b,
            Backend::Video(b) => b,
        }
    }
}

fn audio_codec(pt: u8) -> PyResult<AudioCodec> {
    Ok(match pt {
        0 => AudioCodec::Pcmu,
        8 => AudioCodec::Pcma,
        9 => AudioCodec::G722,
        // roomkit has no Opus; ours is dynamic, asked for by this conventional number.
        111 => AudioCodec::Opus,
        other => {
            return Err(PyValueError::new_err(format!(
                "supported_codecs: payload type {other} (0 PCMU, 8 PCMA, 9 G722, 111 Opus)"
            )))
        }
    })
}

fn video_codec(name: &str) -> PyResult<VideoCodec> {
    match name.to_ascii_uppercase().as_str() {
        "H264" => Ok(VideoCodec::H264),
        "VP8" => Ok(VideoCodec::Vp8),
        other => Err(PyValueError::new_err(format!(
            "supported_video_codecs: {other:?} (H264, VP8)"
        ))),
    }
}

fn registration_event(id: u64, ev: &RegistrationEvent) -> Event {
    let (state, status, reason, expires) = match ev {
        RegistrationEvent::Registered { expires } => ("registered", 200, String::new(), *expires),
        RegistrationEvent::Failed { status, reason, .. } => ("failed", *status, reason.clone(), 0),
        RegistrationEvent::Unregistered => ("unregistered", 0, String::new(), 0),
        #[allow(unreachable_patterns)]
        _ => ("other", 0, String::new(), 0),
    };
    Event::Registration {
        id,
        state,
        status,
        reason,
        expires,
    }
}

/// One engine SIP backend (voice, or voice + video) and its event queue; the media methods are
/// [`MediaCore`]'s.
#[pyclass(module = "roomkit_media._native", extends = MediaCore, frozen)]
pub(crate) struct SipCore {
    backend: Handle<Backend>,
    /// The base's queue, for the trace callback.
    queue: Arc<EventQueue>,
    /// Python screens new INVITEs: the native filter defers them and queues an `"invite"`.
    filtering: Arc<AtomicBool>,
}

#[pymethods]
impl SipCore {
    /// Creates an engine SIP backend (its callback threads) with roomkit's settings; `start`
    /// binds the SIP socket.
    #[new]
    #[pyo3(signature = (
        *, video, local_sip_addr, local_rtp_ip, advertised_ip, rtp_port_start, rtp_port_end,
        supported_codecs, supported_video_codecs, user_agent, symmetric_rtp,
        rtp_inactivity_timeout, max_sessions, auth_users, auth_realm,
        audio_sample_rate = None, decision_timeout = 20.0, queue_len = 8192
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        video: bool,
        local_sip_addr: (String, u16),
        local_rtp_ip: &str,
        advertised_ip: Option<&str>,
        rtp_port_start: u16,
        rtp_port_end: u16,
        supported_codecs: Vec<u8>,
        supported_video_codecs: Vec<String>,
        user_agent: Option<String>,
        symmetric_rtp: bool,
        rtp_inactivity_timeout: f64,
        max_sessions: usize,
        auth_users: Option<HashMap<String, String>>,
        auth_realm: String,
        audio_sample_rate: Option<u32>,
        decision_timeout: f64,
        queue_len: usize,
    ) -> PyResult<PyClassInitializer<SipCore>> {
        let ip = |s: &str, what: &str| {
            s.parse()
                .map_err(|_| PyValueError::new_err(format!("{what}: {s:?} is not an IP address")))
        };
        if !(decision_timeout.is_finite() && decision_timeout > 0.0) {
            return Err(PyValueError::new_err("decision_timeout must be above 0"));
        }
        if !(rtp_inactivity_timeout.is_finite() && rtp_inactivity_timeout >= 0.0) {
            return Err(PyValueError::new_err(
                "rtp_inactivity_timeout must be 0 or more",
            ));
        }
        let mut cfg = SipBackendConfig {
            local_sip_addr: addr(local_sip_addr)?,
            local_rtp_ip: ip(local_rtp_ip, "local_rtp_ip")?,
            advertised_ip: advertised_ip.map(|a| ip(a, "advertised_ip")).transpose()?,
            rtp_port_start,
            rtp_port_end,
            supported_codecs: supported_codecs
                .into_iter()
                .map(audio_codec)
                .collect::<PyResult<_>>()?,
            supported_video_codecs: supported_video_codecs
                .iter()
                .map(|c| video_codec(c))
                .collect::<PyResult<_>>()?,
            symmetric_rtp,
            max_sessions,
            auth_users: auth_users.unwrap_or_default(),
            auth_realm,
            audio_sample_rate: audio_sample_rate.map_or(AppRate::Auto, AppRate::Hz),
            decision_timeout: Duration::from_secs_f64(decision_timeout),
            ..SipBackendConfig::default()
        };
        if let Some(ua) = user_agent {
            cfg.user_agent = ua;
        }
        cfg.resilience.inactivity_timeout = Duration::from_secs_f64(rtp_inactivity_timeout);
        let queue = Arc::new(EventQueue::new(queue_len).map_err(PyRuntimeError::new_err)?);
        let backend = py
            .detach(|| -> roomkit_media::Result<Backend> {
                Ok(if video {
                    Backend::Video(SipVideoBackend::new(cfg)?)
                } else {
                    Backend::Voice(SipVoiceBackend::new(cfg)?)
                })
            })
            .map_err(err)?;
        let b = backend.voice();
        let claims = Arc::new(Claims::default());
        let c = claims.clone();
        wire(b, &queue, move |info| {
            let inbound = info
                .metadata
                .get("direction")
                .is_some_and(|d| d == "inbound");
            if let Some(call_id) = info.metadata.get("call_id").filter(|_| inbound) {
                let x = info.metadata.iter().map(|(n, v)| (n.as_str(), v.as_str()));
                c.release(&roomkit_id(x, call_id));
            }
        });
        let (c, q) = (claims.clone(), queue.clone());
        let filtering = Arc::new(AtomicBool::new(false));
        let f = filtering.clone();
        b.set_invite_filter(move |call: &IncomingCall| {
            let x = call.x_headers.iter().map(|(n, v)| (n.as_str(), v.as_str()));
            if !c.claim(&roomkit_id(x, &call.call_id), Instant::now()) {
                return CallDecision::Reject(486);
            }
            if !f.load(Ordering::Relaxed) {
                return CallDecision::Accept;
            }
            // The Python filter decides on the loop (`decide`); a full queue refuses now,
            // rather than leaving the call to ring until the decision timeout.
            if q.push_or_full(Event::Invite {
                call_id: call.call_id.clone(),
                caller: call.caller.clone(),
                callee: call.callee.clone(),
                caller_display_name: call.caller_display_name.clone(),
                x_headers: call.x_headers.clone(),
                source: host_port(call.source),
                offers_video: call.offers_video,
            }) {
                CallDecision::Defer
            } else {
                CallDecision::Reject(503)
            }
        });
        let (q, c) = (queue.clone(), claims);
        b.on_call(move |info| {
            let call_id = info.metadata.get("call_id").map_or("", String::as_str);
            let x = info.metadata.iter().map(|(n, v)| (n.as_str(), v.as_str()));
            let key = roomkit_id(x, call_id);
            c.live(&key);
            q.push(Event::Call(Box::new(info.clone()), key));
        });
        let q = queue.clone();
        b.on_call_state(move |id, p| {
            q.push(Event::CallState {
                id,
                state: p.state.as_str(),
                status: p.status,
                reason: p.reason.clone(),
            });
        });
        let q = queue.clone();
        b.on_registration(move |id, ev| q.push(registration_event(id, ev)));
        let (base, backend) = MediaCore::new(backend, queue.clone());
        Ok(PyClassInitializer::from(base).add_subclass(SipCore {
            backend,
            queue,
            filtering,
        }))
    }

    /// Binds the SIP socket and starts the SIP thread; returns the bound `(host, port)`.
    fn start(&self, py: Python<'_>) -> PyResult<(String, u16)> {
        self.backend.call(py, |b| b.start()).map(host_port)
    }

    /// Places a call; returns `(session id, Call-ID)` at once. Progress comes as
    /// `"call_state"` events. `codecs`: the payload types to offer (None: the configured).
    #[pyo3(signature = (to, from_uri=None, proxy=None, headers=None, room_id=None,
        ring_timeout=None, audio_only=false, credentials=None, codecs=None))]
    #[allow(clippy::too_many_arguments)]
    fn dial(
        &self,
        py: Python<'_>,
        to: String,
        from_uri: Option<String>,
        proxy: Option<(String, u16)>,
        headers: Option<Vec<(String, String)>>,
        room_id: Option<String>,
        ring_timeout: Option<f64>,
        audio_only: bool,
        credentials: Option<(String, String)>,
        codecs: Option<Vec<u8>>,
    ) -> PyResult<(String, String)> {
        let ring_timeout = ring_timeout
            .filter(|t| t.is_finite() && *t > 0.0)
            .map(Duration::from_secs_f64);
        let options = DialOptions {
            proxy: proxy.map(addr).transpose()?,
            credentials: credentials.map(|(u, p)| SipCredentials::new(&u, &p)),
            from: from_uri,
            headers: headers.unwrap_or_default(),
            audio_only,
            ring_timeout,
            room_id,
            audio_codecs: codecs
                .unwrap_or_default()
                .into_iter()
                .map(audio_codec)
                .collect::<PyResult<_>>()?,
            ..DialOptions::default()
        };
        self.backend.call(py, |b| {
            let id = b.dial(&to, options)?;
            Ok((id.to_string(), b.call_id(id).unwrap_or_default()))
        })
    }

    /// Whether new INVITEs wait for `decide` (after an `"invite"` event) instead of being
    /// answered at once.
    fn set_filtering(&self, on: bool) {
        self.filtering.store(on, Ordering::Relaxed);
    }

    /// Decides a call announced by an `"invite"` event: `status` 200 answers it, 300..=699
    /// refuses it with that status.
    fn decide(&self, py: Python<'_>, call_id: String, status: u16) -> PyResult<()> {
        let decision = match status {
            200 => CallDecision::Accept,
            300..=699 => CallDecision::Reject(status),
            _ => return Err(PyValueError::new_err(format!("status {status}"))),
        };
        self.backend.call(py, |b| b.decide_call(&call_id, decision))
    }

    /// Whether every SIP message received and sent is queued as a `"trace"` event
    /// (`(kind, None, outbound, (host, port), bytes)`); a full queue drops and counts.
    fn set_tracing(&self, py: Python<'_>, on: bool) -> PyResult<()> {
        let b = self.backend.backend()?;
        let q = self.queue.clone();
        py.detach(|| {
            if on {
                b.voice().set_sip_trace(move |outbound, data: &[u8], peer| {
                    q.push(Event::Trace {
                        outbound,
                        peer: host_port(peer),
                        data: data.to_vec(),
                    });
                });
            } else {
                b.voice().clear_sip_trace();
            }
        });
        Ok(())
    }

    /// Looks up inbound digest passwords with `resolver(user) -> str | None` (None: unknown
    /// user), instead of `auth_users`; None removes it. The resolver runs on the SIP thread,
    /// which takes the GIL for it (once per authentication attempt, never per frame): it must
    /// be quick and must not wait for the loop.
    fn set_auth_resolver(&self, py: Python<'_>, resolver: Option<Py<PyAny>>) -> PyResult<()> {
        let b = self.backend.backend()?;
        py.detach(|| match resolver {
            Some(r) => b.voice().set_auth_resolver(move |user: &str| {
                Python::attach(|py| {
                    r.call1(py, (user,))
                        .and_then(|v| v.extract::<Option<String>>(py))
                        .unwrap_or_else(|e| {
                            e.print(py);
                            None
                        })
                })
            }),
            None => b.voice().clear_auth_resolver(),
        });
        Ok(())
    }

    /// Ends a call (BYE, CANCEL while dialing, 480 while ringing here) and its media; with
    /// `cause`, the BYE or CANCEL carries `Reason: Q.850;cause=N;text="..."` (RFC 3326).
    /// ValueError for a cause outside 1..=127 or a text with control characters.
    #[pyo3(signature = (session, cause=None, text=None))]
    fn hangup(
        &self,
        py: Python<'_>,
        session: &str,
        cause: Option<i64>,
        text: Option<&str>,
    ) -> PyResult<()> {
        let id = session_id(session)?;
        // Any int: one past the u16 range is refused by the engine's own 1..=127 check, so a
        // negative or huge cause is a ValueError like 300, not an OverflowError.
        let cause = cause.map(|c| u16::try_from(c).unwrap_or(u16::MAX));
        self.backend.call(py, |b| b.hangup_with(id, cause, text))
    }

    /// The session as a dict (see `info_dict`), or None.
    fn session<'py>(&self, py: Python<'py>, session: &str) -> PyResult<Option<Bound<'py, PyDict>>> {
        let id = session_id(session)?;
        let info = self.backend.call(py, |b| Ok(b.get_session(id)))?;
        info.map(|i| info_dict(py, &i)).transpose()
    }

    /// Registers `aor` (`sip:user@domain`); returns the registration's id at once, progress
    /// comes as `"registration"` events.
    #[pyo3(signature = (aor, registrar=None, proxy=None, credentials=None, expires=3600))]
    fn register(
        &self,
        py: Python<'_>,
        aor: String,
        registrar: Option<String>,
        proxy: Option<(String, u16)>,
        credentials: Option<(String, String)>,
        expires: u32,
    ) -> PyResult<u64> {
        let options = RegisterOptions {
            registrar,
            proxy: proxy.map(addr).transpose()?,
            credentials: credentials.map(|(u, p)| SipCredentials::new(&u, &p)),
            expires,
        };
        self.backend.call(py, |b| b.register(&aor, options))
    }

    /// Removes a registration (REGISTER with Expires: 0).
    fn unregister(&self, py: Python<'_>, registration: u64) -> PyResult<()> {
        self.backend.call(py, |b| b.unregister(registration))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_refused_while_claimed_and_free_after() {
        let c = Claims::default();
        let t = Instant::now();
        assert!(c.claim("s1", t));
        assert!(!c.claim("s1", t + Duration::from_secs(1)));
        assert!(
            c.claim("s1", t + CLAIM_LAPSE),
            "a claim with no call lapses"
        );
        c.live("s1");
        assert!(
            !c.claim("s1", t + CLAIM_LAPSE * 3),
            "a live call keeps its id"
        );
        c.release("s1");
        assert!(c.claim("s1", t + CLAIM_LAPSE * 3));
        let x = [("X-Other", "a"), ("x-session-id", "sid")];
        assert_eq!(roomkit_id(x, "cid"), "sid");
        assert_eq!(roomkit_id([("X-Room-ID", "r")], "cid"), "cid");
    }
}
