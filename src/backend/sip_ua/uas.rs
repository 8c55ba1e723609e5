//! Incoming calls: screening, authenticating and answering a new INVITE (ports, negotiation,
//! media, 180 then 200), refusing it, and CANCEL before the answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::events::{CallView, SharedUpdate, SipCounter, SipEvent};
use super::host::{MediaError, MediaStart};
use super::ids::{CallNo, TxId};
use super::metadata::{call_metadata, Parties};
use super::state::{Call, CallMedia, Phase, ServerEntry, ServerTx, SipCore, ALLOW, SUPPORTED};
use crate::backend::sip_config::{CallDecision, IncomingCall};
use crate::engine::{EndReason, SessionId, SessionInfo};
use crate::sdp::{answer, AnswerConfig, SessionDescription};
use crate::sip::auth::{AuthOutcome, DigestAuthenticator};
use crate::sip::dialog::Dialog;
use crate::sip::session_timer::{Refresher, SessionTimer};
use crate::sip::transaction::{CancelOutcome, TransactionKey};
use crate::sip::{retry_after_value, Outbox, SipMessage, SipPeer, SipTransportKind};

/// How long a digest nonce we issue stays valid.
const NONCE_TTL: Duration = Duration::from_secs(30);

/// Why a new INVITE did not become a call.
pub(super) struct Refusal {
    pub status: u16,
    /// Extra headers (a challenge, `Min-SE`, `Retry-After`).
    pub headers: Vec<(&'static str, String)>,
    /// Why, for a `Warning` header (RFC 3261 §20.43, code 399).
    pub warning: Option<String>,
}

impl Refusal {
    pub(super) fn status(status: u16) -> Refusal {
        Refusal {
            status,
            headers: Vec::new(),
            warning: None,
        }
    }
}

/// What `start_incoming` works from.
struct IncomingSetup<'a> {
    /// The INVITE's server transaction.
    id: TxId,
    from: SipPeer,
    incoming: &'a IncomingCall,
    x_headers: Vec<(String, String)>,
    offer: &'a SessionDescription,
    reservation: super::host::Reservation,
    now: Instant,
}

impl SipCore {
    /// Our ports and codecs for answering (or re-answering) offers.
    pub(super) fn answer_config(&mut self, audio_port: u16, video_port: u16) -> AnswerConfig {
        let mut a = AnswerConfig::new(
            self.cfg.advertised_ip.unwrap_or(self.cfg.local_rtp_ip),
            audio_port,
            video_port,
        );
        if a.local.local_ip.is_unspecified() {
            a.local.local_ip = self.host_ip;
        }
        a.local.audio_codecs = self.cfg.supported_codecs.clone();
        a.local.video_codecs = if self.with_video {
            self.cfg.supported_video_codecs.clone()
        } else {
            Vec::new()
        };
        a.local.session_id = u64::from(self.rng.next_u32());
        a.local.session_version = a.local.session_id;
        a.local.session_name = self.cfg.user_agent.clone();
        a.local.rtcp_mux = true;
        a.telephone_event = true;
        a.local.video_nack = self.cfg.resilience.nack.enabled;
        a.local.video_rtx = self.cfg.video_rtx;
        a.local.video_fec = self.cfg.video_fec;
        a.local.video_transport_cc = self.cfg.resilience.congestion.enabled;
        a.local.video_cc_only = self.cfg.resilience.congestion.feedback_only;
        a.local.srtp = self.cfg.srtp;
        a.local.srtp_suites = self.cfg.srtp_suites.clone();
        self.transport_policy(&mut a.local);
        a
    }

    /// DTLS-SRTP and ICE in our offers and answers: the backend's policies, the host's
    /// certificate fingerprint. Without one (a host that runs no DTLS), no fingerprint is
    /// offered and a mandatory policy refuses every call rather than run it in the clear.
    pub(super) fn transport_policy(&self, local: &mut crate::sdp::LocalMedia) {
        local.dtls_srtp = self.cfg.dtls_srtp;
        local.dtls_fingerprint = self.host.dtls_fingerprint();
        local.ice = if self.cfg.ice {
            crate::sdp::IcePolicy::On
        } else {
            crate::sdp::IcePolicy::Off
        };
        // With ICE and DTLS-SRTP the engine runs audio and video as one BUNDLE group when
        // the peer agrees (offered, or accepted when offered; the SDP layer checks the rest).
        local.bundle = self.cfg.ice;
        local.relay_only = self.cfg.turn_relay_only;
    }

    /// Checks digest credentials when users are configured: `Ok` to go on, `Err` with the
    /// refusal (401 with a challenge, or 403).
    pub(super) fn authenticate(&mut self, req: &SipMessage, now: Instant) -> Result<(), Refusal> {
        let resolver = self.hooks.resolver.read().clone();
        if resolver.is_none() && self.cfg.auth_users.is_empty() {
            return Ok(());
        }
        // Made on the first request that needs it (configured users, or a resolver set
        // after start), so that this is the one place an authenticator is built.
        let (realm, rng) = (&self.cfg.auth_realm, &mut self.rng);
        let auth = self
            .auth
            .get_or_insert_with(|| DigestAuthenticator::with_rng(realm, NONCE_TTL, rng.fork()));
        let challenge = |auth: &mut DigestAuthenticator, stale: bool| Refusal {
            status: 401,
            headers: auth
                .challenges(now, stale)
                .into_iter()
                .map(|c| ("WWW-Authenticate", c))
                .collect(),
            warning: None,
        };
        let Some(value) = req.header("Authorization") else {
            return Err(challenge(auth, false));
        };
        let users = &self.cfg.auth_users;
        let lookup = |u: &str| match &resolver {
            Some(r) => r(u),
            None => users.get(u).cloned(),
        };
        match auth.verify(value, req.method().as_str(), now, lookup) {
            AuthOutcome::Authorized { .. } => Ok(()),
            AuthOutcome::Stale => Err(challenge(auth, true)),
            AuthOutcome::Rejected(_) => Err(Refusal::status(403)),
        }
    }

    /// Answers INVITE transaction `id` with a refusal.
    pub(super) fn refuse(&mut self, id: TxId, r: Refusal, now: Instant, out: &mut Outbox) {
        self.count(SipCounter::CallsRefused);
        if r.status == 503 {
            // Overload control's own 503s are sent and counted where it decides.
            self.count(SipCounter::CallsRefusedOverload);
            self.count(SipCounter::RefusedCapacity);
        }
        let mut extra: Vec<(&str, String)> = r.headers.clone();
        if r.status == 488 {
            extra.push(("Accept", "application/sdp".into()));
        }
        if r.status == 420 || r.status == 422 {
            extra.push(("Supported", SUPPORTED.into()));
        }
        if let Some(w) = r.warning {
            extra.push((
                "Warning",
                format!("399 {} \"{}\"", self.sent_by, w.replace(['"', '\\'], "'")),
            ));
        }
        let h: Vec<(&str, &str)> = extra.iter().map(|(n, v)| (*n, v.as_str())).collect();
        self.respond(id, None, r.status, &h, None, now, out);
    }

    /// The application's decision on a deferred incoming call (`Command::Decide`): answer it
    /// (once its media is up) or refuse it. Calls that are not deferred and ringing are left
    /// alone.
    pub(super) fn decide(
        &mut self,
        no: CallNo,
        decision: CallDecision,
        now: Instant,
        out: &mut Outbox,
    ) {
        let Some(c) = self.calls.get_mut(&no) else {
            return;
        };
        if !c.deferred || !matches!(c.phase, Phase::Ringing { .. }) {
            return;
        }
        match decision {
            CallDecision::Accept => {
                c.deferred = false;
                c.phase = Phase::Ringing { answer_at: now };
                // With its media still starting, `media_started` answers it (now due).
                self.answer_call(no, now, out);
            }
            CallDecision::Reject(code) => self.refuse_deferred(
                no,
                final_status(code),
                "refused by the application",
                now,
                out,
            ),
            CallDecision::Defer => {}
        }
    }

    /// Refuses a deferred, ringing call with `status` and ends it.
    pub(super) fn refuse_deferred(
        &mut self,
        no: CallNo,
        status: u16,
        reason: &str,
        now: Instant,
        out: &mut Outbox,
    ) {
        if let Some(inv) = self.calls.get(&no).and_then(|c| c.invite_tx) {
            self.refuse(inv, Refusal::status(status), now, out);
        }
        self.end_call(no, reason, EndReason::LocalHangup);
    }

    /// A new INVITE (no To tag).
    pub(super) fn handle_invite(
        &mut self,
        id: TxId,
        req: &SipMessage,
        from: SipPeer,
        now: Instant,
        out: &mut Outbox,
    ) {
        match self.setup_call(id, req, from, now) {
            Ok(no) => {
                self.respond(id, None, 180, &[], None, now, out);
                if self.cfg.answer_after.is_zero() {
                    self.answer_call(no, now, out);
                }
            }
            Err(r) => self.refuse(id, r, now, out),
        }
    }

    /// Everything between the INVITE and the 180: checks, ports, negotiation, media.
    fn setup_call(
        &mut self,
        id: TxId,
        req: &SipMessage,
        from: SipPeer,
        now: Instant,
    ) -> Result<CallNo, Refusal> {
        if self.call_index.contains_key(req.call_id()) {
            // A second INVITE with a live call's Call-ID and no To tag (a fork or a confused
            // peer): the id is taken.
            return Err(Refusal::status(482));
        }
        self.authenticate(req, now)?;
        let offer_video = req.body().windows(8).any(|w| w == b"m=video ");
        let mut x_headers: Vec<(String, String)> = req
            .x_headers()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        x_headers.sort();
        let incoming = IncomingCall {
            call_id: req.call_id().to_string(),
            caller: req.from().uri().as_str().to_string(),
            callee: req.to().uri().as_str().to_string(),
            caller_display_name: req.from().display_name().map(str::to_string),
            x_headers: x_headers.clone(),
            source: from.addr,
            offers_video: offer_video,
        };
        let filter = self.hooks.filter.read().clone();
        let mut deferred = false;
        if let Some(f) = filter {
            match f(&incoming) {
                CallDecision::Reject(code) => return Err(Refusal::status(final_status(code))),
                CallDecision::Defer => deferred = true,
                CallDecision::Accept => {}
            }
        }
        if self.cfg.max_sessions > 0 && self.calls.len() >= self.cfg.max_sessions {
            // Full: come back later (roomkit answers the same), rather than "busy here".
            let secs = self.cfg.retry_after.as_secs().clamp(1, 3600) as u32;
            return Err(Refusal {
                status: 503,
                headers: vec![("Retry-After", retry_after_value(secs, Some("busy")))],
                warning: None,
            });
        }
        if req.body().is_empty() {
            return Err(Refusal::status(488));
        }
        let timer = self.uas_timer(req).map_err(|(status, headers)| Refusal {
            status,
            headers,
            warning: None,
        })?;
        let offer = SessionDescription::parse(req.body()).map_err(|_| Refusal::status(488))?;
        let want_video = self.with_video && offer.accepts_video(&self.cfg.supported_video_codecs);
        let r = self.host.reserve(want_video).map_err(|e| Refusal {
            status: e.status,
            headers: Vec::new(),
            warning: Some(e.reason),
        })?;
        let incoming_call = IncomingSetup {
            id,
            from,
            incoming: &incoming,
            x_headers,
            offer: &offer,
            reservation: r,
            now,
        };
        let no = match self.start_incoming(req, incoming_call) {
            Ok(no) => no,
            Err(refusal) => {
                // Nothing was started: the reservation goes back.
                self.host.release(r.id);
                return Err(refusal);
            }
        };
        if let Some(c) = self.calls.get_mut(&no) {
            c.uas_timer = timer;
            if deferred {
                // Rings until decided; the deadline refuses it.
                c.deferred = true;
                c.phase = Phase::Ringing {
                    answer_at: now + self.cfg.decision_timeout,
                };
            }
        }
        if deferred {
            self.schedule_call(no);
        }
        Ok(no)
    }

    /// Answers the offer on the reserved ports, creates the dialog and starts the media.
    fn start_incoming(
        &mut self,
        req: &SipMessage,
        s: IncomingSetup<'_>,
    ) -> Result<CallNo, Refusal> {
        let IncomingSetup {
            id,
            from,
            incoming,
            x_headers,
            offer,
            reservation,
            now,
        } = s;
        let mut cfg =
            self.answer_config(reservation.audio_port, reservation.video_port.unwrap_or(0));
        cfg.local.audio_srflx = reservation.audio_srflx;
        cfg.local.video_srflx = reservation.video_srflx;
        cfg.local.audio_relayed = reservation.audio_relayed;
        cfg.local.video_relayed = reservation.video_relayed;
        let ans = answer(offer, &cfg).map_err(|e| Refusal::status(e.status_code()))?;
        if !ans.has_video() {
            cfg.local.video_port = 0;
        }
        let tag = match &self.servers.get(&id).map(|e| &e.tx) {
            Some(ServerTx::Invite { tag, .. }) => tag.clone(),
            _ => self.rng.tag(),
        };
        let dialog = Dialog::uas(req, &tag).map_err(|e| Refusal::status(e.status()))?;
        let room_id = x_headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("X-Room-ID"))
            .map_or_else(|| incoming.call_id.clone(), |(_, v)| v.clone());
        let parties = Parties {
            call_id: incoming.call_id.clone(),
            caller: incoming.caller.clone(),
            callee: incoming.callee.clone(),
            caller_display_name: incoming.caller_display_name.clone(),
            caller_user: req.from().uri().user(),
            x_headers,
            room_id: room_id.clone(),
            direction: "inbound",
            transport: self
                .servers
                .get(&id)
                .map_or(SipTransportKind::Udp, |e| e.dest.transport),
        };
        let (metadata, video_metadata) = call_metadata(&parties, &ans.negotiation);
        // A version 4 UUID as `new_v4` makes, from the core's generator so runs replay.
        let mut bytes = [0; 16];
        self.rng.fill(&mut bytes);
        let session: SessionId = uuid::Builder::from_random_bytes(bytes).into_uuid();
        let info = self
            .host
            .start_deferred(MediaStart {
                session,
                reservation: reservation.id,
                negotiation: ans.negotiation.clone(),
                room_id,
                participant_id: req
                    .from()
                    .uri()
                    .user()
                    .unwrap_or_else(|| incoming.caller.clone()),
                metadata,
                video_metadata,
            })
            .map_err(|e| Refusal {
                status: e.status,
                headers: Vec::new(),
                warning: Some(e.reason),
            })?;
        let no = self.new_call_no();
        if let Some(ServerEntry {
            tx: ServerTx::Invite { call, .. },
            ..
        }) = self.servers.get_mut(&id)
        {
            *call = Some(no);
        }
        self.publish(SharedUpdate::CallAdded(
            session,
            CallView {
                call_id: incoming.call_id.clone(),
                progress: None,
            },
        ));
        let mut call = Call::new(
            no,
            incoming.call_id.clone(),
            session,
            false,
            Phase::Ringing {
                answer_at: now + self.cfg.answer_after,
            },
            from,
            CallMedia {
                reservation: None,
                started: info.is_some(),
                starting: info.is_none(),
                local: Some(ans),
                answer_cfg: cfg,
                pending_offer: None,
            },
            now,
        );
        call.dialog = Some(dialog);
        call.sips = self.servers.get(&id).is_some_and(|e| e.sips);
        call.invite_tx = Some(id);
        if info.is_none() {
            self.starting.add(session, now);
        }
        call.info = info;
        self.insert_call(call);
        Ok(no)
    }

    /// Sends the 200 with the answer and tells the application about the call.
    pub(super) fn answer_call(&mut self, no: CallNo, now: Instant, out: &mut Outbox) {
        let Some(c) = self.calls.get_mut(&no) else {
            return;
        };
        if c.media.starting || c.deferred {
            // Answered when the host reports the media started (`media_started`), or when
            // the application decides (`decide`).
            return;
        }
        c.phase = Phase::Confirmed;
        let Some(id) = c.invite_tx else {
            return;
        };
        let sdp = c.media.local.as_ref().map(|a| a.sdp.clone());
        let info = c.info.clone();
        let mut headers: Vec<(&str, String)> = vec![
            ("Allow", ALLOW.to_string()),
            ("Supported", SUPPORTED.to_string()),
        ];
        if let Some((se, h)) = c.uas_timer.take() {
            // The interval runs from the 2xx (RFC 4028 §10).
            c.timer = Some(SessionTimer::new(se, Refresher::Uas, now));
            headers.extend(h);
        }
        let h: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let took = now.saturating_duration_since(c.began);
        self.respond(id, None, 200, &h, sdp.as_deref(), now, out);
        self.count(SipCounter::CallsAnswered);
        self.publish(SharedUpdate::CallSetUp {
            outgoing: false,
            took,
        });
        if let Some(info) = info {
            self.emit(SipEvent::Call(Box::new((*info).clone())));
        }
        self.schedule_call(no);
    }

    /// The host reports a session it was starting off the SIP thread: the call is answered
    /// (now, or at its answer time), or refused with the host's error. A session whose call
    /// ended meanwhile (CANCEL, shutdown) is closed at once.
    pub(super) fn media_started(
        &mut self,
        session: SessionId,
        result: Result<Arc<SessionInfo>, MediaError>,
        now: Instant,
        out: &mut Outbox,
    ) {
        let ended = self.starting.finish(session, now);
        let call = match ended {
            Some(None) => self.by_session.get(&session).copied(),
            _ => None,
        };
        let Some(no) = call else {
            if result.is_ok() {
                let why = ended.flatten().unwrap_or(EndReason::Error);
                self.host.close(session, why);
            }
            return;
        };
        match result {
            Ok(info) => {
                let Some(c) = self.calls.get_mut(&no) else {
                    return;
                };
                c.media.starting = false;
                c.media.started = true;
                c.info = Some(info);
                let due = matches!(c.phase, Phase::Ringing { answer_at } if answer_at <= now);
                if due && !c.deferred {
                    self.answer_call(no, now, out);
                } else {
                    self.schedule_call(no);
                }
            }
            Err(e) => {
                let invite = self.calls.get_mut(&no).and_then(|c| {
                    c.media.starting = false;
                    c.invite_tx
                });
                if let Some(id) = invite {
                    let refusal = Refusal {
                        status: e.status,
                        headers: Vec::new(),
                        warning: Some(e.reason),
                    };
                    self.refuse(id, refusal, now, out);
                }
                self.end_call(no, "its media did not start", EndReason::Error);
            }
        }
    }

    /// A CANCEL: 200 for it, and 487 for its INVITE while that is unanswered.
    pub(super) fn handle_cancel(
        &mut self,
        id: TxId,
        req: &SipMessage,
        key: &TransactionKey,
        now: Instant,
        out: &mut Outbox,
    ) {
        let Some(&inv) = self
            .server_index
            .get(&key.with_method(crate::sip::Method::Invite))
        else {
            self.respond(id, Some(req), 481, &[], None, now, out);
            return;
        };
        self.respond(id, Some(req), 200, &[], None, now, out);
        let (outcome, call) = match self.servers.get(&inv).map(|e| &e.tx) {
            Some(ServerTx::Invite { tx, call, .. }) => (tx.cancel(), *call),
            _ => return,
        };
        if outcome == CancelOutcome::Cancelled {
            self.respond(inv, None, 487, &[], None, now, out);
            if let Some(no) = call {
                if self
                    .calls
                    .get(&no)
                    .is_some_and(|c| c.invite_tx == Some(inv))
                {
                    self.end_call(no, "cancelled by the caller", EndReason::RemoteHangup);
                }
            }
        }
    }
}

/// A refusal status as the application gave it: 300..=699, anything else becomes 603.
fn final_status(code: u16) -> u16 {
    if (300..=699).contains(&code) {
        code
    } else {
        603
    }
}
