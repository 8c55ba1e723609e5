//! Dialed calls: our INVITE in an INVITE client transaction, its progress (trying, ringing,
//! early media), answering 401/407 challenges, one 3xx redirect, 422 (session interval too
//! small), the ACK for a 2xx, and CANCEL when the application hangs up or nobody answers.

use std::time::Instant;

use super::command::DialRequest;
use super::events::{CallProgress, CallState, CallView, SharedUpdate, SipCounter, SipEvent};
use super::host::{MediaChange, MediaError, MediaStart};
use super::ids::{CallNo, TxId};
use super::metadata::{call_metadata, Parties};
use super::state::{
    is_sips, Call, CallMedia, ClientKind, Phase, SipCore, UacLeg, ALLOW, SUPPORTED,
};
use crate::engine::EndReason;
use crate::sdp::{build_offer, parse_answer, Answer, Negotiation, OfferConfig};
use crate::sip::auth::DigestClient;
use crate::sip::dialog::Dialog;
use crate::sip::redirect::redirect_target;
use crate::sip::route::NextHop;
use crate::sip::session_timer::{
    uac_retry_after_422, uac_session_timer, Refresher, SessionTimer, MIN_SE_FLOOR,
};
use crate::sip::transaction::{CancelProgress, TransactionEvent};
use crate::sip::{Method, Outbox, RequestBuilder, SipMessage, SipPeer};

/// Most INVITEs one dial sends (challenges, a redirect, 422s) before it gives up.
const MAX_ATTEMPTS: u32 = 6;

/// A display name as a quoted string (quotes and backslashes escaped, no line breaks).
fn quoted_display(name: &str) -> String {
    let mut s = String::with_capacity(name.len() + 2);
    s.push('"');
    for c in name.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('"');
    s
}

impl SipCore {
    /// Reports a failure of a call that never made it into the tables.
    fn dial_refused(&mut self, req: &DialRequest, status: u16, reason: &str) {
        let p = CallProgress {
            state: CallState::Failed,
            status,
            reason: reason.to_string(),
        };
        self.publish(SharedUpdate::CallProgress(req.session, p.clone()));
        self.emit(SipEvent::CallState(req.session, p));
    }

    /// Places a call: ports first (our offer names them), then the INVITE.
    pub(super) fn dial(&mut self, mut req: DialRequest, now: Instant, out: &mut Outbox) {
        self.count(SipCounter::CallsDialed);
        if req.from_uri.is_empty() {
            req.from_uri = self.contact_uri(
                &req.contact_user,
                req.next_hop.transport,
                is_sips(&req.target),
            );
        }
        if self.call_index.contains_key(&req.call_id) || self.by_session.contains_key(&req.session)
        {
            return self.dial_refused(&req, 500, "a call with this id exists");
        }
        if self.cfg.dtls_srtp == crate::DtlsSrtpPolicy::Mandatory
            && self.host.dtls_fingerprint().is_none()
        {
            // A mandatory policy never offers a call in the clear.
            return self.dial_refused(
                &req,
                500,
                "DTLS-SRTP is mandatory and there is no certificate",
            );
        }
        let video = req.video && self.with_video;
        let r = match self.host.reserve(video) {
            Ok(r) => r,
            Err(MediaError { status, reason }) => return self.dial_refused(&req, status, &reason),
        };
        let mut oc = OfferConfig::new(self.sdp_ip(), r.audio_port, r.video_port.unwrap_or(0));
        oc.local.audio_codecs = if req.audio_codecs.is_empty() {
            self.cfg.supported_codecs.clone()
        } else {
            req.audio_codecs.clone()
        };
        oc.local.video_codecs = if video {
            self.cfg.supported_video_codecs.clone()
        } else {
            Vec::new()
        };
        oc.local.session_id = u64::from(self.rng.next_u32());
        oc.local.session_version = oc.local.session_id;
        oc.local.session_name = self.cfg.user_agent.clone();
        oc.local.rtcp_mux = true;
        oc.local.video_nack = self.cfg.resilience.nack.enabled;
        oc.local.video_rtx = self.cfg.video_rtx;
        oc.local.video_fec = self.cfg.video_fec;
        oc.local.video_transport_cc = self.cfg.resilience.congestion.enabled;
        oc.local.video_cc_only = self.cfg.resilience.congestion.feedback_only;
        oc.local.srtp = self.cfg.srtp;
        oc.local.srtp_suites = self.cfg.srtp_suites.clone();
        self.transport_policy(&mut oc.local);
        oc.local.audio_srflx = r.audio_srflx;
        oc.local.video_srflx = r.video_srflx;
        oc.local.audio_relayed = r.audio_relayed;
        oc.local.video_relayed = r.video_relayed;
        let offer = build_offer(&oc);
        let mut answer_cfg = self.answer_config(r.audio_port, r.video_port.unwrap_or(0));
        answer_cfg.local.audio_srflx = r.audio_srflx;
        answer_cfg.local.video_srflx = r.video_srflx;
        answer_cfg.local.audio_relayed = r.audio_relayed;
        answer_cfg.local.video_relayed = r.video_relayed;
        let no = self.new_call_no();
        let session = req.session;
        let leg = UacLeg {
            invite_tx: TxId(0), // set when the INVITE goes out (ids start at 1)
            from_tag: self.rng.tag(),
            cseq: 0,
            target: req.target.clone(),
            hop: req.next_hop,
            offer,
            redirected: false,
            attempts: 0,
            session_expires: (self.cfg.session_expires > 0).then(|| self.timer_policy().interval),
            ring_deadline: now + req.ring_timeout,
            cancelled: None,
            request: req,
        };
        let call_id = leg.request.call_id.clone();
        let contact_user = leg.request.contact_user.clone();
        let auth = leg
            .request
            .credentials
            .clone()
            .map(|c| DigestClient::with_rng(c, self.rng.fork()));
        self.publish(SharedUpdate::CallAdded(
            session,
            CallView {
                call_id: call_id.clone(),
                progress: None,
            },
        ));
        let mut call = Call::new(
            no,
            call_id,
            session,
            true,
            Phase::Dialing,
            leg.hop,
            CallMedia {
                reservation: Some(r.id),
                started: false,
                starting: false,
                local: None,
                answer_cfg,
                pending_offer: None,
            },
            now,
        );
        call.contact_user = contact_user;
        call.sips = is_sips(&leg.request.target);
        call.uac = Some(Box::new(leg));
        call.auth = auth;
        self.insert_call(call);
        self.progress(no, CallState::Trying, 0, "");
        self.send_dial_invite(no, now, out);
    }

    /// The address written in our SDP.
    pub(super) fn sdp_ip(&self) -> std::net::IpAddr {
        match self.cfg.advertised_ip {
            Some(ip) => ip,
            None if self.cfg.local_rtp_ip.is_unspecified() => self.host_ip,
            None => self.cfg.local_rtp_ip,
        }
    }

    /// Sends (or sends again, after a challenge, a redirect or a 422) the INVITE of dialed
    /// call `no` in a new transaction.
    fn send_dial_invite(&mut self, no: CallNo, now: Instant, out: &mut Outbox) {
        let ua = self.cfg.user_agent.clone();
        let min_se = self.cfg.min_se.max(MIN_SE_FLOOR);
        let (contact, sent_by, transport) = {
            let Some(c) = self.calls.get(&no) else { return };
            let Some(hop) = c.uac.as_ref().map(|l| l.hop.transport) else {
                return;
            };
            (
                self.contact_uri(&c.contact_user, hop, c.sips),
                self.sent_by_on(hop),
                hop.via_token(),
            )
        };
        let Some(c) = self.calls.get_mut(&no) else {
            return;
        };
        let Some(leg) = c.uac.as_mut() else {
            return;
        };
        leg.attempts += 1;
        leg.cseq += 1;
        let r = &leg.request;
        let from = match &r.display_name {
            Some(d) if !d.is_empty() => {
                format!(
                    "{} <{}>;tag={}",
                    quoted_display(d),
                    r.from_uri,
                    leg.from_tag
                )
            }
            _ => format!("<{}>;tag={}", r.from_uri, leg.from_tag),
        };
        let mut b = RequestBuilder::new(Method::Invite, &leg.target)
            .via(&format!(
                "SIP/2.0/{transport} {sent_by};branch={};rport",
                self.rng.branch()
            ))
            .from(&from)
            .to(&format!("<{}>", r.target))
            .call_id(&r.call_id)
            .cseq(leg.cseq)
            .contact(&contact);
        if let Some(route) = &r.route {
            b = b.route(route);
        }
        b = b
            .header("Allow", ALLOW)
            .header("Supported", SUPPORTED)
            .header("User-Agent", &ua);
        if let Some(se) = leg.session_expires {
            b = b
                .header("Session-Expires", &se.to_string())
                .header("Min-SE", &min_se.to_string());
        }
        for (n, v) in &r.headers {
            b = b.header(n, v);
        }
        if let Some(auth) = c.auth.as_mut() {
            for (n, v) in auth.authorize("INVITE", &leg.target) {
                b = b.header(n, &v);
            }
        }
        let invite = b.body("application/sdp", leg.offer.sdp.as_bytes()).build();
        let hop = leg.hop;
        c.peer = hop;
        match self.send_invite(invite, hop, no, false, now, out) {
            Ok(tx) => {
                if let Some(leg) = self.calls.get_mut(&no).and_then(|c| c.uac.as_mut()) {
                    leg.invite_tx = tx;
                }
            }
            Err(e) => self.fail_dial(no, 500, &format!("our INVITE is not valid: {e}")),
        }
    }

    /// Dialed call `no` failed with `status`: report it and remove the call.
    pub(super) fn fail_dial(&mut self, no: CallNo, status: u16, reason: &str) {
        self.progress(no, CallState::Failed, status, reason);
        self.end_call(no, reason, EndReason::Error);
    }

    /// Cancels dialed call `no` (the application hung up, or nobody answered). The call ends
    /// when the INVITE gets its final answer (487), or when the transaction gives up.
    pub(super) fn cancel_dial(&mut self, no: CallNo, reason: &str, now: Instant, out: &mut Outbox) {
        let Some(leg) = self.calls.get_mut(&no).and_then(|c| c.uac.as_mut()) else {
            return;
        };
        if leg.cancelled.is_none() {
            leg.cancelled = Some(reason.to_string());
        }
        let tx = leg.invite_tx;
        // Deferred (no provisional response yet) or sent, the final answer ends the call; too
        // late means that answer is already in.
        let progress: Option<CancelProgress> = self.invites.get_mut(&tx).map(|e| e.tx.cancel(now));
        self.flush_invite(tx, now, out);
        if progress.is_none() {
            // The transaction is already over: nothing will answer.
            self.fail_dial(no, 487, reason);
        }
        self.schedule_call(no);
    }

    /// Nobody answered within the ring time.
    pub(super) fn dial_timed_out(&mut self, no: CallNo, now: Instant, out: &mut Outbox) {
        let secs = self
            .calls
            .get(&no)
            .and_then(|c| c.uac.as_ref())
            .map_or(0, |l| l.request.ring_timeout.as_secs());
        self.cancel_dial(no, &format!("no answer within {secs} s"), now, out);
    }

    /// Starts the media of dialed call `no` on the answer `neg`.
    fn start_dialed_media(&mut self, no: CallNo, neg: &Negotiation) -> Result<(), MediaError> {
        let Some(c) = self.calls.get(&no) else {
            return Ok(());
        };
        let Some(leg) = c.uac.as_ref() else {
            return Ok(());
        };
        let Some(reservation) = c.media.reservation else {
            return Ok(());
        };
        let r = &leg.request;
        let callee_user = crate::sip::Uri::parse(&r.target)
            .ok()
            .and_then(|u| u.user());
        let parties = Parties {
            call_id: r.call_id.clone(),
            caller: r.from_uri.clone(),
            callee: r.target.clone(),
            caller_display_name: r.display_name.clone(),
            caller_user: crate::sip::Uri::parse(&r.from_uri)
                .ok()
                .and_then(|u| u.user()),
            x_headers: r
                .headers
                .iter()
                .filter(|(n, _)| n.len() > 2 && n[..2].eq_ignore_ascii_case("x-"))
                .cloned()
                .collect(),
            room_id: r.room_id.clone(),
            direction: "outbound",
            transport: leg.hop.transport,
        };
        let (metadata, video_metadata) = call_metadata(&parties, neg);
        let start = MediaStart {
            session: c.session,
            reservation,
            negotiation: neg.clone(),
            room_id: r.room_id.clone(),
            participant_id: callee_user.unwrap_or_else(|| r.target.clone()),
            metadata,
            video_metadata,
        };
        let result = self.host.start(start);
        if let Some(c) = self.calls.get_mut(&no) {
            // Started or failed, the reservation is the host's business now.
            c.media.reservation = None;
            c.media.started = result.is_ok();
        }
        result.map(|_| ())
    }

    /// ACKs and ends a 2xx from a fork we do not keep (another branch answered first, or the
    /// call was cancelled or hung up meanwhile): RFC 3261 §13.2.2.4.
    fn end_fork(&mut self, tx: TxId, resp: &SipMessage, now: Instant, out: &mut Outbox) {
        let Some(e) = self.invites.get(&tx) else {
            return;
        };
        let Ok(mut d) = Dialog::uac(e.tx.invite(), resp) else {
            return;
        };
        let dest = SipCore::hop_addr(d.next_hop(), e.dest);
        let sent_by = self.sent_by_on(dest.transport);
        let transport = dest.transport.via_token();
        out.push(
            d.ack_with_rng(resp.cseq().number, &sent_by, transport, &mut self.rng)
                .build(),
            dest,
        );
        let tag = resp.to().tag().unwrap_or_default().to_string();
        let seen = self.ended_forks.entry(tx).or_default();
        if seen.contains(&tag) {
            return;
        }
        if seen.len() < 8 {
            seen.push(tag);
        }
        let bye = d
            .request_with_rng(Method::Bye, &sent_by, transport, &mut self.rng)
            .build();
        self.send_non_invite(bye, dest, ClientKind::Bye, now, out);
    }

    /// What the INVITE transaction of dialed call `no` reports.
    pub(super) fn on_dial_event(
        &mut self,
        no: CallNo,
        tx: TxId,
        ev: TransactionEvent,
        now: Instant,
        out: &mut Outbox,
    ) {
        let current = self
            .calls
            .get(&no)
            .is_some_and(|c| c.uac.as_ref().is_some_and(|l| l.invite_tx == tx));
        let confirmed = self
            .calls
            .get(&no)
            .is_some_and(|c| c.phase == Phase::Confirmed);
        match ev {
            TransactionEvent::Response(resp) => {
                let status = resp.status().unwrap_or_default();
                if (200..300).contains(&status) {
                    let same_dialog = self.calls.get(&no).is_some_and(|c| {
                        c.dialog.as_ref().is_some_and(|d| d.matches_response(&resp))
                    });
                    if confirmed && same_dialog {
                        // A retransmitted 2xx: our ACK did not reach it.
                        self.ack_2xx(no, tx, &resp, out);
                    } else if current && !confirmed {
                        self.dial_answered(no, tx, &resp, now, out);
                    } else {
                        self.end_fork(tx, &resp, now, out);
                    }
                    return;
                }
                if !current {
                    return;
                }
                if status < 200 {
                    self.dial_provisional(no, tx, &resp);
                } else {
                    self.dial_refused_final(no, &resp, now, out);
                }
            }
            TransactionEvent::TransportError(reason) if current && !confirmed => {
                self.fail_dial(no, 503, &format!("transport error: {reason}"))
            }
            TransactionEvent::Timeout if current && !confirmed => {
                let reason = self
                    .calls
                    .get(&no)
                    .and_then(|c| c.uac.as_ref())
                    .and_then(|l| l.cancelled.clone());
                match reason {
                    Some(r) => self.fail_dial(no, 487, &r),
                    None => self.fail_dial(no, 408, "no response"),
                }
            }
            _ => {}
        }
        if self.calls.contains_key(&no) {
            self.schedule_call(no);
        }
    }

    /// A 1xx: ringing, or early media when it carries the answer.
    fn dial_provisional(&mut self, no: CallNo, tx: TxId, resp: &SipMessage) {
        let status = resp.status().unwrap_or_default();
        let reason = resp.reason().unwrap_or_default().to_string();
        if status == 100 {
            return self.progress(no, CallState::Trying, status, &reason);
        }
        // A tagged 1xx makes an early dialog; the 2xx may still come from another fork.
        if resp.to().tag().is_some() {
            let dialog = self
                .invites
                .get(&tx)
                .and_then(|e| Dialog::uac(e.tx.invite(), resp).ok());
            if let (Some(c), Some(d)) = (self.calls.get_mut(&no), dialog) {
                if c.dialog.is_none() {
                    c.dialog = Some(d);
                }
            }
        }
        let started = self.calls.get(&no).is_some_and(|c| c.media.started);
        if !resp.body().is_empty() && !started {
            let neg = self
                .calls
                .get(&no)
                .and_then(|c| c.uac.as_ref())
                .and_then(|l| parse_answer(&l.offer, resp.body()).ok());
            if let Some(neg) = neg {
                if self.start_dialed_media(no, &neg).is_ok() {
                    self.set_local_answer(no, neg);
                    return self.progress(no, CallState::EarlyMedia, status, &reason);
                }
            }
        }
        if !started {
            self.progress(no, CallState::Ringing, status, &reason);
        }
    }

    /// Records what our offer agreed to.
    fn set_local_answer(&mut self, no: CallNo, neg: Negotiation) {
        let Some(c) = self.calls.get_mut(&no) else {
            return;
        };
        let Some(leg) = c.uac.as_ref() else {
            return;
        };
        if neg.video.is_none() {
            // The video port went back when the media started without video.
            c.media.answer_cfg.local.video_port = 0;
        }
        c.media.local = Some(Answer {
            sdp: leg.offer.sdp.clone(),
            negotiation: neg,
            session_id: leg.offer.session_id,
            session_version: leg.offer.session_version,
        });
    }

    /// A 2xx to our INVITE: ACK, media, answered.
    fn dial_answered(
        &mut self,
        no: CallNo,
        tx: TxId,
        resp: &SipMessage,
        now: Instant,
        out: &mut Outbox,
    ) {
        let dialog = self
            .invites
            .get(&tx)
            .and_then(|e| Dialog::uac(e.tx.invite(), resp).ok());
        let Some(dialog) = dialog else {
            // No To tag or no Contact: we cannot even ACK it properly.
            return self.fail_dial(no, 502, "malformed 2xx (no tag or Contact)");
        };
        let Some(c) = self.calls.get_mut(&no) else {
            return;
        };
        c.dialog = Some(dialog);
        c.phase = Phase::Confirmed;
        self.ack_2xx(no, tx, resp, out);
        let cancelled = self
            .calls
            .get(&no)
            .and_then(|c| c.uac.as_ref())
            .and_then(|l| l.cancelled.clone());
        if let Some(reason) = cancelled {
            // Answered while our CANCEL was on its way (or before it could leave): hang up at
            // once, with the Reason the CANCEL carries.
            let headers: Vec<(&str, String)> = self
                .invites
                .get(&tx)
                .and_then(|e| e.tx.cancel_reason())
                .map(|r| ("Reason", r.to_owned()))
                .into_iter()
                .collect();
            self.send_bye_with(no, &headers, now, out);
            return self.fail_dial(no, 487, &reason);
        }
        let started = self.calls.get(&no).is_some_and(|c| c.media.started);
        let neg = self
            .calls
            .get(&no)
            .and_then(|c| c.uac.as_ref())
            .map(|l| parse_answer(&l.offer, resp.body()));
        match (neg, started) {
            (Some(Ok(neg)), false) => {
                if let Err(e) = self.start_dialed_media(no, &neg) {
                    self.send_bye(no, now, out);
                    return self.fail_dial(no, e.status, &e.reason);
                }
                self.set_local_answer(no, neg);
            }
            (Some(Ok(neg)), true) => {
                // Early media already runs; the 2xx may move it.
                let old = self
                    .calls
                    .get(&no)
                    .and_then(|c| c.media.local.as_ref())
                    .map(|a| a.negotiation.clone());
                if let Some(old) = old.filter(|o| *o != neg) {
                    let change = MediaChange {
                        audio_remote: Some((neg.audio.remote, neg.audio.remote_rtcp)),
                        video_remote: neg.video.as_ref().map(|v| (v.remote, v.remote_rtcp)),
                        held: Some(!neg.audio.direction.sends()),
                        receiving: Some(neg.audio.direction.receives()),
                        ..MediaChange::rekeyed(&old, &neg)
                    };
                    if let Some(session) = self.calls.get(&no).map(|c| c.session) {
                        self.host.update(session, change);
                    }
                    self.set_local_answer(no, neg);
                }
            }
            // The answer came with the early media; a 2xx without a body confirms it.
            (Some(Err(_)), true) if resp.body().is_empty() => {}
            _ => {
                self.send_bye(no, now, out);
                return self.fail_dial(no, 488, "no usable SDP answer");
            }
        }
        let status = resp.status().unwrap_or(200);
        let reason = resp.reason().unwrap_or_default().to_string();
        if let Some(c) = self.calls.get_mut(&no) {
            c.timer = uac_session_timer(resp).map(|se| SessionTimer::new(se, Refresher::Uac, now));
            c.uac = None;
            let took = now.saturating_duration_since(c.began);
            self.publish(SharedUpdate::CallSetUp {
                outgoing: true,
                took,
            });
        }
        self.progress(no, CallState::Answered, status, &reason);
        if self
            .calls
            .get(&no)
            .is_some_and(|c| c.reinvite.want_hold.is_some() || c.reinvite.want_video.is_some())
        {
            self.send_reinvite(no, false, now, out);
        }
        self.schedule_call(no);
    }

    /// A 300-699 to our INVITE: follow a redirect, answer a challenge or a 422, or give up.
    fn dial_refused_final(
        &mut self,
        no: CallNo,
        resp: &SipMessage,
        now: Instant,
        out: &mut Outbox,
    ) {
        let status = resp.status().unwrap_or_default();
        let reason = resp.reason().unwrap_or_default().to_string();
        let Some(c) = self.calls.get_mut(&no) else {
            return;
        };
        let Some(leg) = c.uac.as_mut() else {
            return;
        };
        if let Some(why) = leg.cancelled.clone() {
            return self.fail_dial(no, status, &why);
        }
        if leg.attempts >= MAX_ATTEMPTS {
            return self.fail_dial(no, status, &reason);
        }
        // An early dialog of a fork that refused is over.
        if c.phase != Phase::Confirmed {
            c.dialog = None;
        }
        match status {
            300..=399 if !leg.redirected => {
                let Some(target) = redirect_target(resp).map(|c| c.uri().clone()) else {
                    return self.fail_dial(no, status, "redirect without a usable Contact");
                };
                let hop = if leg.request.route.is_some() {
                    leg.request.next_hop
                } else {
                    let hop = NextHop::from_uri(&target);
                    let transport = hop
                        .as_ref()
                        .and_then(NextHop::transport_kind)
                        .unwrap_or(leg.hop.transport);
                    match hop.and_then(|h| h.socket_addr()) {
                        Some(addr) => SipPeer::new(addr, transport),
                        None => {
                            return self.fail_dial(
                                no,
                                status,
                                &format!("redirect to {target}, which names no IP address"),
                            )
                        }
                    }
                };
                leg.redirected = true;
                leg.target = target.as_str().to_string();
                leg.hop = hop;
                self.send_dial_invite(no, now, out);
            }
            401 | 407 => {
                let Some(auth) = c.auth.as_mut() else {
                    return self.fail_dial(no, status, "authentication required, no credentials");
                };
                match auth.handle_challenge(resp) {
                    Ok(()) => self.send_dial_invite(no, now, out),
                    Err(e) => self.fail_dial(no, status, &e.to_string()),
                }
            }
            422 => match leg
                .session_expires
                .and_then(|asked| uac_retry_after_422(resp, asked))
            {
                Some(interval) => {
                    leg.session_expires = Some(interval);
                    self.send_dial_invite(no, now, out);
                }
                None => self.fail_dial(no, status, &reason),
            },
            _ => self.fail_dial(no, status, &reason),
        }
    }
}
