//! One call (one dialog) from either side, and what both sides do inside it: answering
//! re-INVITE, UPDATE, BYE and INFO; sending BYE and re-INVITE (hold, resume, session refresh)
//! along the route set; session timers (RFC 4028); ending the call.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::events::{CallProgress, CallState, SharedUpdate, SipCounter, SipEvent};
use super::host::MediaChange;
use super::ids::{CallNo, TxId};
use super::reinvite::{VideoChange, MAX_REINVITE_AUTH};
use super::state::{
    Call, ClientKind, Phase, ServerEntry, ServerTx, SipCore, TimerKey, ALLOW, SUPPORTED,
};
use crate::engine::EndReason;
use crate::sdp::{
    parse_answer, reanswer, reoffer, sdes_offer, Answer, AnswerConfig, Direction, Negotiation,
    ReofferConfig, ReofferVideo, SessionDescription,
};
use crate::sip::dialog::Dialog;
use crate::sip::info_dtmf::{parse_info_dtmf, InfoDtmfError};
use crate::sip::session_timer::{
    uac_session_timer, uas_session_timer, Refresher, SessionExpires, SessionTimer,
    SessionTimerAction, SessionTimerPolicy, UasSessionTimer, TIMER_OPTION_TAG,
};
use crate::sip::transaction::TransactionEvent;
use crate::sip::{Method, Outbox, SipMessage, SipPeer};

/// How long a call whose peer left the media with RTCP BYE waits for the peer's SIP BYE before
/// sending its own: 4 × T1, time for a BYE through a few proxies on a loaded path.
pub(super) const MEDIA_LEFT_GRACE: Duration = Duration::from_secs(2);

impl SipCore {
    /// The session timer our settings ask for.
    pub(super) fn timer_policy(&self) -> SessionTimerPolicy {
        SessionTimerPolicy {
            interval: self.cfg.session_expires.max(self.cfg.min_se),
            min_se: self.cfg.min_se,
        }
    }

    /// Schedules call `no`'s timer after a change.
    pub(super) fn schedule_call(&mut self, no: CallNo) {
        let at = self.calls.get(&no).and_then(Call::deadline);
        self.timers.set(TimerKey::Call(no), at);
    }

    /// Adds a call to the tables.
    pub(super) fn insert_call(&mut self, call: Call) {
        let no = call.no;
        self.call_index.insert(call.call_id.clone(), no);
        self.by_session.insert(call.session, no);
        self.calls.insert(no, call);
        self.schedule_call(no);
    }

    /// Reports a dialed call's progress (each state once).
    pub(super) fn progress(&mut self, no: CallNo, state: CallState, status: u16, reason: &str) {
        let Some(c) = self.calls.get_mut(&no) else {
            return;
        };
        if !c.outgoing || c.last_state == Some(state) || c.last_state.is_some_and(|s| s.is_final())
        {
            return;
        }
        c.last_state = Some(state);
        let session = c.session;
        let p = CallProgress {
            state,
            status,
            reason: reason.to_string(),
        };
        self.publish(SharedUpdate::CallProgress(session, p.clone()));
        self.emit(SipEvent::CallState(session, p));
    }

    /// Removes a call: closes its media (firing `on_client_disconnected`) or frees its ports.
    /// A dialed call that was never told how it ended hears `Ended` (or `Failed` when it was
    /// never answered).
    pub(super) fn end_call(&mut self, no: CallNo, reason: &str, why: EndReason) {
        let answered = self
            .calls
            .get(&no)
            .is_some_and(|c| c.phase == Phase::Confirmed || c.media.started);
        if answered {
            self.progress(no, CallState::Ended, 0, reason);
        } else {
            self.progress(no, CallState::Failed, 0, reason);
        }
        let Some(c) = self.calls.remove(&no) else {
            return;
        };
        // Our INVITEs still waiting for a final answer would wait for ever: cancel them.
        for (id, e) in &self.invites {
            if e.call == no && !e.tx.is_terminated() && e.tx.final_status().is_none() {
                self.orphan_invites.push(*id);
            }
        }
        self.timers.set(TimerKey::Call(no), None);
        if self.call_index.get(&c.call_id) == Some(&no) {
            self.call_index.remove(&c.call_id);
        }
        self.by_session.remove(&c.session);
        self.publish(SharedUpdate::CallRemoved(c.session));
        self.count(SipCounter::CallsEnded);
        if c.media.started {
            self.host.close(c.session, why);
        }
        if c.media.starting {
            // Closed when the host reports it started.
            self.starting.ended(c.session, why);
        }
        if let Some(r) = c.media.reservation {
            self.host.release(r);
        }
        // Ports bound for video our unanswered re-INVITE offered.
        if let Some(VideoChange::Add { reservation, .. }) = c.reinvite.pending_video {
            self.host.release(reservation);
        }
    }

    /// An in-dialog request of call `no` (next CSeq, route set, our credentials), and where it
    /// goes. `None` without a dialog.
    fn dialog_request(
        &mut self,
        no: CallNo,
        method: Method,
        headers: &[(&str, String)],
        body: Option<(&str, &[u8])>,
    ) -> Option<(Vec<u8>, SipPeer)> {
        let ua = self.cfg.user_agent.clone();
        let c = self.calls.get(&no)?;
        let dest = SipCore::hop_addr(c.dialog.as_ref().and_then(Dialog::next_hop), c.peer);
        let sent_by = self.sent_by_on(dest.transport);
        let transport = dest.transport.via_token();
        let c = self.calls.get_mut(&no)?;
        let d = c.dialog.as_mut()?;
        let uri = crate::sip::route::route_request(d.remote_target(), d.route_set()).request_uri;
        let mut b = d.request_with_rng(method.clone(), &sent_by, transport, &mut self.rng);
        b = b.header("User-Agent", &ua);
        for (n, v) in headers {
            b = b.header(n, v);
        }
        if let Some(auth) = c.auth.as_mut() {
            for (n, v) in auth.authorize(method.as_str(), &uri) {
                b = b.header(n, &v);
            }
        }
        if let Some((ctype, bytes)) = body {
            b = b.body(ctype, bytes);
        }
        Some((b.build(), dest))
    }

    /// Sends a BYE for call `no` in a client transaction (retransmitted until answered).
    /// The dialog stays known in `closing` until that transaction ends.
    pub(super) fn send_bye(&mut self, no: CallNo, now: Instant, out: &mut Outbox) {
        self.send_bye_with(no, &[], now, out);
    }

    /// [`Self::send_bye`] with extra headers (a `Reason`).
    pub(super) fn send_bye_with(
        &mut self,
        no: CallNo,
        headers: &[(&str, String)],
        now: Instant,
        out: &mut Outbox,
    ) {
        let dialog = self
            .calls
            .get(&no)
            .and_then(|c| c.dialog.as_ref())
            .map(|d| d.id().clone());
        if dialog.is_none() && self.calls.get(&no).is_some_and(|c| c.invite_tx.is_none()) {
            // A session from a WHIP/WHEP offer (`offer.rs`): no dialog, nothing to say in SIP.
            return;
        }
        let sent = self
            .dialog_request(no, Method::Bye, headers, None)
            .and_then(|(req, dest)| self.send_non_invite(req, dest, ClientKind::Bye, now, out));
        if let (Some(id), Some(dialog)) = (sent, dialog) {
            if let Some(e) = self.clients.get_mut(&id) {
                e.closes = Some(dialog.call_id.clone());
                self.closing.insert(dialog.call_id.clone(), (dialog, id));
            }
        }
        if sent.is_none() {
            // The dialog checked its parts when it was made: this is a bug if it happens,
            // counted, never silent.
            self.count(SipCounter::ByeFailures);
        }
    }

    /// Ends call `no` from our side: 480 while it rings here, CANCEL while we dial, BYE once
    /// it is up.
    pub(super) fn hang_up(&mut self, no: CallNo, now: Instant, out: &mut Outbox) {
        self.hang_up_with(no, None, now, out);
    }

    /// [`Self::hang_up`], the BYE or CANCEL carrying a `Reason` header value (RFC 3326) when
    /// `reason` is given; the 480 of a call still ringing here carries none.
    pub(super) fn hang_up_with(
        &mut self,
        no: CallNo,
        reason: Option<String>,
        now: Instant,
        out: &mut Outbox,
    ) {
        let Some(c) = self.calls.get(&no) else {
            return;
        };
        match c.phase {
            Phase::Ringing { .. } => {
                if let Some(inv) = c.invite_tx {
                    self.respond(inv, None, 480, &[], None, now, out);
                }
                self.end_call(no, "hung up", EndReason::LocalHangup);
            }
            Phase::Dialing => {
                let tx = c.uac.as_ref().map(|leg| leg.invite_tx);
                if let (Some(reason), Some(e)) = (reason, tx.and_then(|t| self.invites.get_mut(&t)))
                {
                    e.tx.set_cancel_reason(reason);
                }
                self.cancel_dial(no, "cancelled", now, out);
            }
            Phase::Confirmed => {
                let headers: Vec<(&str, String)> =
                    reason.into_iter().map(|r| ("Reason", r)).collect();
                self.send_bye_with(no, &headers, now, out);
                self.end_call(no, "hung up", EndReason::LocalHangup);
            }
        }
    }

    /// The engine ended call `no`'s media because the peer left it. A peer that says BYE in
    /// RTCP usually says it in SIP too, and its SIP BYE may travel through proxies that its
    /// RTCP BYE skipped: a BYE of ours sent at once would cross it (both sides hanging up, and
    /// the peer hearing "the far end hung up" about its own hang-up). So after RTCP BYE the
    /// call waits [`MEDIA_LEFT_GRACE`] for the peer's BYE; after silence it is hung up now.
    pub(super) fn media_ended(
        &mut self,
        no: CallNo,
        why: EndReason,
        now: Instant,
        out: &mut Outbox,
    ) {
        let Some(c) = self.calls.get_mut(&no) else {
            return;
        };
        if why == EndReason::RtcpBye && c.phase == Phase::Confirmed {
            if c.bye_after_media_left.is_none() {
                c.bye_after_media_left = Some(now + MEDIA_LEFT_GRACE);
                self.schedule_call(no);
            }
        } else {
            self.hang_up(no, now, out);
        }
    }

    /// The backend stops: every call ends now.
    pub(super) fn hang_up_for_shutdown(&mut self, no: CallNo, now: Instant, out: &mut Outbox) {
        let Some(c) = self.calls.get(&no) else {
            return;
        };
        match c.phase {
            Phase::Ringing { .. } => {
                if let Some(inv) = c.invite_tx {
                    self.respond(inv, None, 503, &[], None, now, out);
                }
            }
            Phase::Dialing => {
                self.cancel_dial(no, "the backend stopped", now, out);
            }
            Phase::Confirmed => self.send_bye(no, now, out),
        }
        self.end_call(no, "the backend stopped", EndReason::Shutdown);
    }

    /// Call `no`'s own timer fired.
    pub(super) fn call_timeout(&mut self, no: CallNo, now: Instant, out: &mut Outbox) {
        let Some(c) = self.calls.get(&no) else {
            return;
        };
        if let Phase::Ringing { answer_at } = c.phase {
            if answer_at <= now {
                if c.deferred {
                    // The application did not decide in time.
                    self.refuse_deferred(no, 408, "no decision in time", now, out);
                    return;
                }
                self.answer_call(no, now, out);
            }
        }
        if self
            .calls
            .get(&no)
            .and_then(|c| c.uac.as_ref())
            .and_then(|u| u.deadline())
            .is_some_and(|t| t <= now)
        {
            self.dial_timed_out(no, now, out);
        }
        if let Some(c) = self.calls.get_mut(&no) {
            if c.reinvite.retry_at.is_some_and(|t| t <= now) {
                c.reinvite.retry_at = None;
                let refresh = c.reinvite.refresh;
                self.send_reinvite(no, refresh, now, out);
            }
        }
        if self
            .calls
            .get(&no)
            .and_then(|c| c.bye_after_media_left)
            .is_some_and(|t| t <= now)
        {
            self.send_bye(no, now, out);
            self.end_call(no, "the far end left the media", EndReason::RtcpBye);
            return;
        }
        let action = self
            .calls
            .get_mut(&no)
            .and_then(|c| c.timer.as_mut())
            .and_then(|t| t.handle_timeout(now));
        match action {
            Some(SessionTimerAction::Refresh) => self.send_reinvite(no, true, now, out),
            Some(SessionTimerAction::Expired) => {
                self.send_bye(no, now, out);
                self.end_call(no, "session timer expired", EndReason::Error);
            }
            None => {}
        }
        self.schedule_call(no);
    }

    /// The session-timer headers of a 2xx to a request that asked for a timer, and the timer
    /// it starts (we are that request's UAS). `Err` is the refusal: 422 with its headers, or
    /// 400 for malformed values.
    #[allow(clippy::type_complexity)]
    pub(super) fn uas_timer(
        &self,
        req: &SipMessage,
    ) -> Result<
        Option<(SessionExpires, Vec<(&'static str, String)>)>,
        (u16, Vec<(&'static str, String)>),
    > {
        if req.header("Session-Expires").is_none() {
            return Ok(None);
        }
        match uas_session_timer(req, &self.timer_policy()) {
            Ok(UasSessionTimer::TooSmall { min_se }) => {
                Err((422, vec![("Min-SE", min_se.to_string())]))
            }
            Ok(UasSessionTimer::Use {
                session_expires,
                require_timer,
            }) => {
                let mut h = vec![("Session-Expires", session_expires.to_header_value())];
                if require_timer {
                    h.push(("Require", TIMER_OPTION_TAG.to_string()));
                }
                Ok(Some((session_expires, h)))
            }
            Err(_) => Err((400, Vec::new())),
        }
    }

    /// A re-INVITE in a dialog of ours (either side's call).
    pub(super) fn handle_reinvite(
        &mut self,
        id: TxId,
        req: &SipMessage,
        now: Instant,
        out: &mut Outbox,
    ) {
        let Some(no) = self.in_dialog(req) else {
            self.respond(id, None, 481, &[], None, now, out);
            return;
        };
        let outgoing = self.calls.get(&no).is_some_and(|c| c.outgoing);
        // Credentials are asked of callers; the party we called has none to give.
        if !outgoing {
            if let Err(r) = self.authenticate(req, now) {
                self.refuse(id, r, now, out);
                return;
            }
        }
        let c = self.calls.get_mut(&no).expect("in_dialog found it");
        if let Some(Err(e)) = c.dialog.as_mut().map(|d| d.accept_request(req)) {
            let status = e.status();
            self.respond(id, None, status, &[], None, now, out);
            return;
        }
        if c.phase != Phase::Confirmed || c.reinvite.tx.is_some() {
            // An offer while one of ours is unanswered (RFC 3261 §14.2).
            self.respond(id, None, 491, &[], None, now, out);
            return;
        }
        let timer = match self.uas_timer(req) {
            Ok(t) => t,
            Err((status, h)) => {
                let h: Vec<(&str, &str)> = h.iter().map(|(n, v)| (*n, v.as_str())).collect();
                self.respond(id, None, status, &h, None, now, out);
                return;
            }
        };
        let sdp = if req.body().is_empty() {
            // No offer: offer our current session again (answered in the ACK, which we accept
            // as it comes).
            self.calls[&no].media.local.as_ref().map(|a| a.sdp.clone())
        } else {
            match self.answer_offer(no, req.body()) {
                Ok(sdp) => Some(sdp),
                Err(status) => {
                    self.respond(id, None, status, &[], None, now, out);
                    return;
                }
            }
        };
        let mut headers: Vec<(&str, String)> = vec![
            ("Allow", ALLOW.to_string()),
            ("Supported", SUPPORTED.to_string()),
        ];
        let c = self.calls.get_mut(&no).expect("still there");
        apply_uas_timer(c, timer, &mut headers, now);
        c.invite_tx = Some(id);
        let local_tag = c
            .dialog
            .as_ref()
            .map(|d| d.id().local_tag.clone())
            .unwrap_or_default();
        if let Some(ServerEntry {
            tx: ServerTx::Invite { tag, call, .. },
            ..
        }) = self.servers.get_mut(&id)
        {
            *tag = local_tag;
            *call = Some(no);
        }
        let h: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        self.respond(id, None, 200, &h, sdp.as_deref(), now, out);
        self.schedule_call(no);
    }

    /// Answers a new offer in call `no`: moves the media and returns our answer, or the status
    /// to refuse it with (488).
    fn answer_offer(&mut self, no: CallNo, body: &[u8]) -> Result<String, u16> {
        let offer = SessionDescription::parse(body).map_err(|_| 488u16)?;
        let c = self.calls.get(&no).ok_or(481u16)?;
        let has_video = c
            .media
            .local
            .as_ref()
            .ok_or(491u16)?
            .negotiation
            .video
            .is_some();
        // Video offered to a call without it: a port first, so the answer can take it.
        let added = if !has_video
            && self.with_video
            && offer.accepts_video(&self.cfg.supported_video_codecs)
        {
            self.host.reserve_video().ok()
        } else {
            None
        };
        let c = self.calls.get_mut(&no).ok_or(481u16)?;
        let local = c.media.local.as_ref().ok_or(491u16)?;
        // While we hold the far end we keep not receiving, whatever it offers.
        let mut cfg = AnswerConfig {
            direction: if c.reinvite.held_by_us {
                Direction::SendOnly
            } else {
                Direction::SendRecv
            },
            ..c.media.answer_cfg.clone()
        };
        if !has_video {
            cfg.local.video_port = added.and_then(|r| r.video_port).unwrap_or(0);
            cfg.local.video_srflx = added.and_then(|r| r.video_srflx);
            cfg.local.video_relayed = added.and_then(|r| r.video_relayed);
        }
        let re = match reanswer(&offer, local, &cfg) {
            Ok(re) => re,
            Err(_) => {
                if let Some(r) = added {
                    self.host.release(r.id);
                }
                return Err(488);
            }
        };
        let rekeyed = MediaChange::rekeyed(&local.negotiation, &re.answer.negotiation);
        let session = c.session;
        let call_id = c.call_id.clone();
        let started = c.media.started;
        if re.video_removed {
            c.media.answer_cfg.local.video_port = 0;
            if started {
                self.host.remove_video(session);
            }
        }
        if let Some(r) = added {
            match (&re.answer.negotiation.video, started) {
                (Some(_), true) => {
                    let meta = video_metadata(&call_id, &re.answer.negotiation);
                    if self
                        .host
                        .add_video(session, r.id, &re.answer.negotiation, meta)
                        .is_ok()
                    {
                        if let Some(c) = self.calls.get_mut(&no) {
                            c.media.answer_cfg.local.video_port = cfg.local.video_port;
                        }
                    }
                }
                _ => self.host.release(r.id),
            }
        }
        let c = self.calls.get_mut(&no).ok_or(481u16)?;
        let n = &re.answer.negotiation;
        let change = MediaChange {
            audio_remote: re
                .audio_remote_changed
                .then_some((n.audio.remote, n.audio.remote_rtcp)),
            video_remote: match (&n.video, re.video_remote_changed) {
                (Some(v), true) => Some((v.remote, v.remote_rtcp)),
                _ => None,
            },
            held: Some(re.held || n.audio.direction == Direction::Inactive),
            receiving: Some(n.audio.direction.receives()),
            ..rekeyed
        };
        let sdp = re.answer.sdp.clone();
        c.media.local = Some(re.answer);
        if c.media.started {
            self.host.update(session, change);
        }
        Ok(sdp)
    }

    /// The application asks to add or remove video: a re-INVITE as soon as none is in
    /// progress.
    pub(super) fn request_video(&mut self, no: CallNo, on: bool, now: Instant, out: &mut Outbox) {
        let Some(c) = self.calls.get_mut(&no) else {
            return;
        };
        c.reinvite.want_video = Some(on && self.with_video);
        self.send_reinvite(no, false, now, out);
    }

    /// An UPDATE (RFC 3311): a session refresh without a body, a new offer with one.
    pub(super) fn handle_update(
        &mut self,
        id: TxId,
        req: &SipMessage,
        now: Instant,
        out: &mut Outbox,
    ) {
        let Some(no) = self.accept_in_dialog(id, req, now, out) else {
            return;
        };
        let timer = match self.uas_timer(req) {
            Ok(t) => t,
            Err((status, h)) => {
                let h: Vec<(&str, &str)> = h.iter().map(|(n, v)| (*n, v.as_str())).collect();
                self.respond(id, Some(req), status, &h, None, now, out);
                return;
            }
        };
        let sdp = if req.body().is_empty() {
            None
        } else {
            if self.calls[&no].reinvite.tx.is_some() {
                self.respond(id, Some(req), 491, &[], None, now, out);
                return;
            }
            match self.answer_offer(no, req.body()) {
                Ok(sdp) => Some(sdp),
                Err(status) => {
                    self.respond(id, Some(req), status, &[], None, now, out);
                    return;
                }
            }
        };
        let mut headers: Vec<(&str, String)> = vec![("Supported", SUPPORTED.to_string())];
        let c = &self.calls[&no];
        let contact = self.contact_uri(&c.contact_user, c.peer.transport, c.sips);
        headers.push(("Contact", format!("<{contact}>")));
        let c = self.calls.get_mut(&no).expect("still there");
        apply_uas_timer(c, timer, &mut headers, now);
        let h: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        self.respond(id, Some(req), 200, &h, sdp.as_deref(), now, out);
        self.schedule_call(no);
    }

    /// A BYE: the far end ends the call.
    pub(super) fn handle_bye(
        &mut self,
        id: TxId,
        req: &SipMessage,
        now: Instant,
        out: &mut Outbox,
    ) {
        if self.in_dialog(req).is_none() && self.is_closing(req) {
            // Our BYE crossed the peer's: both end the same dialog, which is still there
            // until ours is answered (RFC 3261 §15.1.2). Nothing is left to end here.
            self.respond(id, Some(req), 200, &[], None, now, out);
            return;
        }
        let Some(no) = self.accept_in_dialog(id, req, now, out) else {
            return;
        };
        self.respond(id, Some(req), 200, &[], None, now, out);
        // A BYE before our 200 was sent ends the INVITE too (RFC 3261 §15.1.2).
        let ringing = self
            .calls
            .get(&no)
            .filter(|c| matches!(c.phase, Phase::Ringing { .. }))
            .and_then(|c| c.invite_tx);
        if let Some(inv) = ringing {
            self.respond(inv, None, 487, &[], None, now, out);
        }
        self.end_call(no, "the far end hung up", EndReason::RemoteHangup);
    }

    /// True when `req` comes from the peer of a dialog we sent BYE in and whose BYE is not
    /// finished yet.
    fn is_closing(&self, req: &SipMessage) -> bool {
        self.closing
            .get(req.call_id())
            .is_some_and(|(d, _)| d.matches_request(req))
    }

    /// An INFO: DTMF (`application/dtmf-relay`, `application/dtmf`) goes to the application;
    /// an empty one is a keep-alive.
    pub(super) fn handle_info(
        &mut self,
        id: TxId,
        req: &SipMessage,
        now: Instant,
        out: &mut Outbox,
    ) {
        let Some(no) = self.accept_in_dialog(id, req, now, out) else {
            return;
        };
        let c = self.calls.get_mut(&no).expect("accept_in_dialog found it");
        let (session, started) = (c.session, c.media.started);
        if req.body().is_empty() {
            self.respond(id, Some(req), 200, &[], None, now, out);
            return;
        }
        let ctype = req.content_type().unwrap_or_default();
        match parse_info_dtmf(ctype, req.body()) {
            Ok(ev) => {
                if started {
                    self.host.dtmf(session, ev);
                }
                self.respond(id, Some(req), 200, &[], None, now, out);
            }
            Err(InfoDtmfError::NotDtmf) => self.respond(
                id,
                Some(req),
                415,
                &[("Accept", "application/dtmf-relay, application/dtmf")],
                None,
                now,
                out,
            ),
            Err(InfoDtmfError::Malformed(_)) => {
                self.respond(id, Some(req), 400, &[], None, now, out)
            }
        }
    }

    /// The application asks to hold or resume: a re-INVITE as soon as none is in progress.
    pub(super) fn request_hold(&mut self, no: CallNo, hold: bool, now: Instant, out: &mut Outbox) {
        let Some(c) = self.calls.get_mut(&no) else {
            return;
        };
        c.reinvite.want_hold = Some(hold);
        self.send_reinvite(no, false, now, out);
    }

    /// Sends our re-INVITE: the hold state asked for, or a session refresh with the
    /// description unchanged. Waits (does nothing) while another offer is in progress.
    pub(super) fn send_reinvite(
        &mut self,
        no: CallNo,
        refresh: bool,
        now: Instant,
        out: &mut Outbox,
    ) {
        let session_name = self.cfg.user_agent.clone();
        let contact = self.calls.get(&no).map_or_else(String::new, |c| {
            self.contact_uri(&c.contact_user, c.peer.transport, c.sips)
        });
        let timer_interval = self
            .calls
            .get(&no)
            .and_then(|c| c.timer.as_ref())
            .map(|t| t.interval());
        let Some(c) = self.calls.get_mut(&no) else {
            return;
        };
        if c.phase != Phase::Confirmed || c.reinvite.tx.is_some() || c.reinvite.retry_at.is_some() {
            if refresh {
                c.reinvite.refresh = true;
            }
            return;
        }
        let Some(has_video) = c
            .media
            .local
            .as_ref()
            .map(|l| l.negotiation.video.is_some())
        else {
            return;
        };
        let want_video = c.reinvite.want_video.take().unwrap_or(has_video);
        let video_change = match (has_video, want_video) {
            (false, true) => match self.host.reserve_video() {
                Ok(r) => r.video_port.map(|port| VideoChange::Add {
                    reservation: r.id,
                    port,
                }),
                // No port: the call stays audio-only.
                Err(_) => None,
            },
            (true, false) => Some(VideoChange::Remove),
            _ => None,
        };
        let c = self.calls.get_mut(&no).expect("checked above");
        let Some(local) = c.media.local.as_ref() else {
            return;
        };
        let hold = c.reinvite.want_hold.take().unwrap_or(c.reinvite.held_by_us);
        let changes = hold != c.reinvite.held_by_us || video_change.is_some();
        if !changes && !refresh && !c.reinvite.refresh {
            return;
        }
        let direction = if hold {
            Direction::SendOnly
        } else {
            Direction::SendRecv
        };
        // Video added to a call whose audio is SRTP is offered with SDES keys of its own.
        let crypto = if local.negotiation.audio.srtp.is_some() {
            sdes_offer(&c.media.answer_cfg.local, true)
        } else {
            Vec::new()
        };
        let video = match video_change {
            Some(VideoChange::Add { port, .. }) => ReofferVideo::Add {
                crypto,
                port,
                codecs: self.cfg.supported_video_codecs.clone(),
                nack: self.cfg.resilience.nack.enabled,
            },
            Some(VideoChange::Remove) => ReofferVideo::Remove,
            None => ReofferVideo::Keep,
        };
        let mut offer = reoffer(
            local,
            &ReofferConfig {
                direction,
                session_name,
                video,
            },
        );
        if !changes {
            // A refresh offers the same description again, same version (RFC 4028 §7.4).
            offer.sdp = local.sdp.clone();
            offer.session_version = local.session_version;
        }
        let mut headers: Vec<(&str, String)> = vec![
            ("Contact", format!("<{contact}>")),
            ("Allow", ALLOW.to_string()),
            ("Supported", SUPPORTED.to_string()),
        ];
        if let Some(interval) = timer_interval {
            let se = SessionExpires {
                interval: interval.as_secs().min(u64::from(u32::MAX)) as u32,
                refresher: Some(Refresher::Uac),
            };
            headers.push(("Session-Expires", se.to_header_value()));
        }
        let body = offer.sdp.clone();
        let Some((req, dest)) = self.dialog_request(
            no,
            Method::Invite,
            &headers,
            Some(("application/sdp", body.as_bytes())),
        ) else {
            if let Some(VideoChange::Add { reservation, .. }) = video_change {
                self.host.release(reservation);
            }
            return;
        };
        let c = self.calls.get_mut(&no).expect("checked above");
        c.media.pending_offer = Some(offer);
        c.reinvite.refresh = false;
        c.reinvite.pending_hold = changes.then_some(hold);
        c.reinvite.pending_video = video_change;
        if let Ok(id) = self.send_invite(req, dest, no, true, now, out) {
            if let Some(c) = self.calls.get_mut(&no) {
                c.reinvite.tx = Some(id);
            }
        }
    }

    /// What our re-INVITE's transaction reports.
    pub(super) fn on_reinvite_event(
        &mut self,
        no: CallNo,
        tx: TxId,
        ev: TransactionEvent,
        now: Instant,
        out: &mut Outbox,
    ) {
        let Some(c) = self.calls.get(&no) else {
            return;
        };
        let current = c.reinvite.tx == Some(tx);
        match ev {
            TransactionEvent::Response(resp) => {
                let status = resp.status().unwrap_or_default();
                if status < 200 {
                    return;
                }
                if (200..300).contains(&status) {
                    self.ack_2xx(no, tx, &resp, out);
                    if !current {
                        return;
                    }
                    self.reinvite_answered(no, &resp, now, out);
                    return;
                }
                if !current {
                    return;
                }
                self.reinvite_failed(no, &resp, now, out);
            }
            TransactionEvent::Timeout | TransactionEvent::TransportError(_) if current => {
                self.send_bye(no, now, out);
                self.end_call(no, "no answer to our re-INVITE", EndReason::Error);
            }
            _ => {}
        }
    }

    /// ACKs a 2xx to our INVITE transaction `tx` (again for a retransmitted 2xx).
    pub(super) fn ack_2xx(&mut self, no: CallNo, tx: TxId, resp: &SipMessage, out: &mut Outbox) {
        let (sent_by, transport) = match self.calls.get(&no) {
            Some(c) => {
                let t = SipCore::hop_addr(c.dialog.as_ref().and_then(Dialog::next_hop), c.peer);
                (self.sent_by_on(t.transport), t.transport.via_token())
            }
            None => return,
        };
        let Some(c) = self.calls.get_mut(&no) else {
            return;
        };
        if let Some((t, ack, dest)) = &c.ack {
            if *t == tx {
                out.push(ack.clone(), *dest);
                return;
            }
        }
        let Some(d) = c.dialog.as_ref() else {
            return;
        };
        let dest = SipCore::hop_addr(d.next_hop(), c.peer);
        let mut b = d.ack_with_rng(resp.cseq().number, &sent_by, transport, &mut self.rng);
        if let Some(auth) = c.auth.as_mut() {
            let uri =
                crate::sip::route::route_request(d.remote_target(), d.route_set()).request_uri;
            for (n, v) in auth.authorize("ACK", &uri) {
                b = b.header(n, &v);
            }
        }
        let ack = b.build();
        out.push(ack.clone(), dest);
        c.ack = Some((tx, ack, dest));
    }

    fn reinvite_answered(&mut self, no: CallNo, resp: &SipMessage, now: Instant, out: &mut Outbox) {
        let Some(c) = self.calls.get_mut(&no) else {
            return;
        };
        c.reinvite.tx = None;
        c.reinvite.auth_tries = 0;
        if let Some(h) = c.reinvite.pending_hold.take() {
            c.reinvite.held_by_us = h;
        }
        if let Some(d) = c.dialog.as_mut() {
            // A 2xx to a re-INVITE refreshes the remote target (RFC 3261 §12.2.1.2).
            d.refresh_target(resp);
        }
        let session = c.session;
        let video_change = c.reinvite.pending_video.take();
        if let Some(offer) = c.media.pending_offer.take() {
            match parse_answer(&offer, resp.body()) {
                Ok(neg) => {
                    match video_change {
                        Some(VideoChange::Add { reservation, port }) => {
                            let ok = neg.video.is_some()
                                && c.media.started
                                && self
                                    .host
                                    .add_video(
                                        session,
                                        reservation,
                                        &neg,
                                        video_metadata(&c.call_id, &neg),
                                    )
                                    .is_ok();
                            if ok {
                                c.media.answer_cfg.local.video_port = port;
                            } else {
                                self.host.release(reservation);
                            }
                        }
                        Some(VideoChange::Remove) => {
                            c.media.answer_cfg.local.video_port = 0;
                            if c.media.started {
                                self.host.remove_video(session);
                            }
                        }
                        None => {}
                    }
                    let old = c.media.local.as_ref().map(|a| a.negotiation.clone());
                    let change = MediaChange {
                        audio_remote: (old.as_ref().map(|o| (o.audio.remote, o.audio.remote_rtcp))
                            != Some((neg.audio.remote, neg.audio.remote_rtcp)))
                        .then_some((neg.audio.remote, neg.audio.remote_rtcp)),
                        video_remote: match (
                            &neg.video,
                            old.as_ref().and_then(|o| o.video.as_ref()),
                        ) {
                            (Some(v), Some(o))
                                if (v.remote, v.remote_rtcp) != (o.remote, o.remote_rtcp) =>
                            {
                                Some((v.remote, v.remote_rtcp))
                            }
                            _ => None,
                        },
                        held: Some(!neg.audio.direction.sends()),
                        receiving: Some(neg.audio.direction.receives()),
                        ..old
                            .as_ref()
                            .map(|o| MediaChange::rekeyed(o, &neg))
                            .unwrap_or_default()
                    };
                    c.media.local = Some(Answer {
                        sdp: offer.sdp,
                        negotiation: neg,
                        session_id: offer.session_id,
                        session_version: offer.session_version,
                    });
                    if c.media.started {
                        self.host.update(session, change);
                    }
                }
                Err(_) if resp.body().is_empty() => {
                    if let Some(VideoChange::Add { reservation, .. }) = video_change {
                        self.host.release(reservation);
                    }
                }
                Err(_) => {
                    if let Some(VideoChange::Add { reservation, .. }) = video_change {
                        self.host.release(reservation);
                    }
                    // An answer we cannot use: the call cannot go on as it was agreed.
                    self.send_bye(no, now, out);
                    self.end_call(no, "unusable answer to our re-INVITE", EndReason::Error);
                    return;
                }
            }
        }
        let Some(c) = self.calls.get_mut(&no) else {
            return;
        };
        match (uac_session_timer(resp), c.timer.as_mut()) {
            (Some(se), Some(t)) => t.refreshed(se, Refresher::Uac, now),
            (Some(se), None) => c.timer = Some(SessionTimer::new(se, Refresher::Uac, now)),
            (None, _) => c.timer = None,
        }
        self.after_reinvite(no, now, out);
    }

    fn reinvite_failed(&mut self, no: CallNo, resp: &SipMessage, now: Instant, out: &mut Outbox) {
        let status = resp.status().unwrap_or_default();
        let Some(c) = self.calls.get_mut(&no) else {
            return;
        };
        c.reinvite.tx = None;
        c.media.pending_offer = None;
        let offered = c.reinvite.pending_hold.take();
        let video = c.reinvite.pending_video.take();
        if let Some(v) = video {
            if let VideoChange::Add { reservation, .. } = v {
                self.host.release(reservation);
            }
            // Asked again when the re-INVITE is retried; given up when it was refused.
            if matches!(status, 401 | 407 | 491) {
                let c = self.calls.get_mut(&no).expect("still there");
                c.reinvite
                    .want_video
                    .get_or_insert(matches!(v, VideoChange::Add { .. }));
            }
        }
        let Some(c) = self.calls.get_mut(&no) else {
            return;
        };
        // A challenge (the far end wants credentials in the dialog too, or its nonce went
        // stale): answer it and send the same re-INVITE again, a few times at most.
        if matches!(status, 401 | 407) && c.reinvite.auth_tries < MAX_REINVITE_AUTH {
            if let Some(auth) = c.auth.as_mut() {
                if auth.handle_challenge(resp).is_ok() {
                    c.reinvite.auth_tries += 1;
                    match offered {
                        Some(h) => c.reinvite.want_hold = Some(h),
                        None => c.reinvite.refresh = true,
                    }
                    self.after_reinvite(no, now, out);
                    return;
                }
            }
        }
        c.reinvite.auth_tries = 0;
        match status {
            491 => {
                // Glare: try again later, 2.1-4 s when the Call-ID is ours, 0-2 s otherwise.
                let ms = if c.outgoing {
                    2100 + self.rng.next_u64() % 1900
                } else {
                    self.rng.next_u64() % 2000
                };
                c.reinvite.retry_at = Some(now + Duration::from_millis(ms));
                match offered {
                    Some(h) => {
                        c.reinvite.want_hold.get_or_insert(h);
                    }
                    None => c.reinvite.refresh = true,
                }
            }
            408 | 481 => {
                // The dialog is gone (RFC 3261 §14.1).
                if status == 408 {
                    self.send_bye(no, now, out);
                }
                self.end_call(no, "the far end lost the call", EndReason::Error);
                return;
            }
            // Refused: the session stays as it was.
            _ => {}
        }
        self.after_reinvite(no, now, out);
    }

    /// Sends what waited for the re-INVITE that just finished.
    fn after_reinvite(&mut self, no: CallNo, now: Instant, out: &mut Outbox) {
        let Some(c) = self.calls.get(&no) else {
            return;
        };
        let has_video = c
            .media
            .local
            .as_ref()
            .is_some_and(|l| l.negotiation.video.is_some());
        let pending = c.reinvite.retry_at.is_none()
            && (c.reinvite.refresh
                || c.reinvite
                    .want_hold
                    .is_some_and(|h| h != c.reinvite.held_by_us)
                || c.reinvite.want_video.is_some_and(|v| v != has_video));
        let refresh = c.reinvite.refresh;
        if pending {
            self.send_reinvite(no, refresh, now, out);
        }
        self.schedule_call(no);
    }
}

/// Starts, refreshes or stops call `c`'s session timer after we answered a request that may
/// carry one, and adds its headers to our 2xx.
fn apply_uas_timer(
    c: &mut Call,
    timer: Option<(SessionExpires, Vec<(&'static str, String)>)>,
    headers: &mut Vec<(&'static str, String)>,
    now: Instant,
) {
    match (timer, c.timer.as_mut()) {
        (Some((se, h)), Some(t)) => {
            t.refreshed(se, Refresher::Uas, now);
            headers.extend(h);
        }
        (Some((se, h)), None) => {
            c.timer = Some(SessionTimer::new(se, Refresher::Uas, now));
            headers.extend(h);
        }
        // A refresh request without Session-Expires turns the timer off (RFC 4028 §9).
        (None, _) => c.timer = None,
    }
}

/// The metadata of a call's video session (as `call_metadata` writes it at the start).
pub(super) fn video_metadata(call_id: &str, neg: &Negotiation) -> HashMap<String, String> {
    let mut m = HashMap::new();
    if let Some(v) = &neg.video {
        m.insert("backend".to_string(), "sip-av".to_string());
        m.insert("call_id".into(), call_id.to_string());
        m.insert("video_codec".into(), v.codec.as_str().to_string());
        m.insert("payload_type".into(), v.pt.to_string());
        m.insert("clock_rate".into(), v.clock_rate.to_string());
        m.insert("video_remote_addr".into(), v.remote.to_string());
    }
    m
}
