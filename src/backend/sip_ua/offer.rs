//! Sessions made from an SDP offer that came without SIP: WHIP (a client publishes to us) and
//! WHEP (a client plays from us), the offer POSTed over HTTP. They are ordinary calls of the
//! core from then on, with no dialog: the same ports, answer, media host, events and
//! `on_call`, ended by the same hangup (which has no BYE to send) or when their media ends.

use std::time::Instant;

use super::command::OfferRequest;
use super::events::{CallView, SharedUpdate, SipCounter, SipEvent};
use super::host::{MediaError, MediaStart};
use super::metadata::{call_metadata, Parties};
use super::state::{Call, CallMedia, Phase, SipCore};
use crate::sdp::{answer, SessionDescription};
use crate::sip::{SipPeer, SipTransportKind};

impl SipCore {
    /// Answers `req`'s offer and starts its session; replies with our SDP answer, or why not
    /// (the status a SIP call would have been refused with, and a reason).
    pub(super) fn accept_offer(&mut self, req: OfferRequest, now: Instant) {
        let result = self.start_offered(&req, now);
        if result.is_err() {
            self.count(SipCounter::CallsRefused);
        }
        let _ = req.reply.send(result);
    }

    fn start_offered(&mut self, req: &OfferRequest, now: Instant) -> Result<String, MediaError> {
        let refused = |status: u16, reason: &str| MediaError {
            status,
            reason: reason.to_string(),
        };
        if self.by_session.contains_key(&req.session) {
            return Err(refused(500, "session id in use"));
        }
        if self.cfg.max_sessions > 0 && self.calls.len() >= self.cfg.max_sessions {
            return Err(refused(503, "busy"));
        }
        let offer = SessionDescription::parse(req.offer.as_bytes())
            .map_err(|e| refused(488, &format!("unreadable offer: {e}")))?;
        let want_video = self.with_video && offer.accepts_video(&self.cfg.supported_video_codecs);
        let r = self.host.reserve(want_video)?;
        let mut cfg = self.answer_config(r.audio_port, r.video_port.unwrap_or(0));
        // WebRTC clients: we are an ICE-lite server and the DTLS server (`a=setup:passive`,
        // what WHIP servers answer), DTLS-SRTP taken whenever offered (it needs the backend's
        // certificate: `dtls_srtp` on).
        cfg.local.ice = crate::sdp::IcePolicy::Lite;
        cfg.local.dtls_answer_setup = crate::sdp::SetupRole::Passive;
        // An offered BUNDLE group is taken (browsers with `max-bundle`, OBS and GStreamer's
        // whipclientsink require it): audio and video then share one socket and handshake.
        cfg.local.bundle = true;
        if cfg.local.dtls_srtp == crate::sdp::DtlsSrtpPolicy::Off {
            cfg.local.dtls_srtp = crate::sdp::DtlsSrtpPolicy::Optional;
        }
        let ans = match answer(&offer, &cfg) {
            Ok(a) => a,
            Err(e) => {
                self.host.release(r.id);
                return Err(refused(e.status_code(), &e.to_string()));
            }
        };
        let mut cfg = cfg;
        if !ans.has_video() {
            cfg.local.video_port = 0;
        }
        let call_id = format!("{}-{}", req.kind, req.session);
        let parties = Parties {
            call_id: call_id.clone(),
            caller: format!("{}:{}", req.kind, req.client),
            callee: req.kind.to_string(),
            caller_display_name: None,
            caller_user: None,
            x_headers: Vec::new(),
            room_id: req.room_id.clone(),
            direction: "inbound",
            transport: SipTransportKind::Tcp,
        };
        let (mut metadata, video_metadata) = call_metadata(&parties, &ans.negotiation);
        // Not SIP: say what carried the offer instead of a SIP transport.
        metadata.remove("sip_transport");
        metadata.insert("signalling".into(), req.kind.to_string());
        let info = self.host.start(MediaStart {
            session: req.session,
            reservation: r.id,
            negotiation: ans.negotiation.clone(),
            room_id: req.room_id.clone(),
            participant_id: parties.caller.clone(),
            metadata,
            video_metadata,
        })?;
        let sdp = ans.sdp.clone();
        let no = self.new_call_no();
        self.publish(SharedUpdate::CallAdded(
            req.session,
            CallView {
                call_id: call_id.clone(),
                progress: None,
            },
        ));
        let mut call = Call::new(
            no,
            call_id,
            req.session,
            false,
            Phase::Confirmed,
            SipPeer::new(req.client, SipTransportKind::Tcp),
            CallMedia {
                reservation: None,
                started: true,
                starting: false,
                local: Some(ans),
                answer_cfg: cfg,
                pending_offer: None,
            },
            now,
        );
        call.info = Some(info.clone());
        self.insert_call(call);
        self.count(SipCounter::CallsAnswered);
        self.publish(SharedUpdate::CallSetUp {
            outgoing: false,
            took: std::time::Duration::ZERO,
        });
        self.emit(SipEvent::Call(Box::new((*info).clone())));
        Ok(sdp)
    }
}
