//! Registrations of a backend (several at once): each is a [`Registration`] state machine
//! whose REGISTERs leave through the core's outbox and whose events reach the application.

use std::time::Instant;

use super::command::RegisterRequest;
use super::events::{RegistrationEvent, SipEvent};
use super::state::{is_sips, RegEntry, SipCore, TimerKey, DEFAULT_CONTACT_USER, MAX_REGISTRATIONS};
use crate::sip::register::{Registration, RegistrationConfig, RegistrationEvent as Step};
use crate::sip::Outbox;
use crate::sip::{SipMessage, Uri};

impl SipCore {
    fn registration_failed_now(&mut self, id: u64, status: u16, reason: String) {
        self.emit(SipEvent::Registration(
            id,
            RegistrationEvent::Failed {
                status,
                reason,
                retry_in: None,
            },
        ));
    }

    /// Starts registration `id`.
    pub(super) fn register(
        &mut self,
        id: u64,
        req: RegisterRequest,
        now: Instant,
        out: &mut Outbox,
    ) {
        if self.registrations.contains_key(&id) {
            return;
        }
        if self.registrations.len() >= MAX_REGISTRATIONS {
            return self.registration_failed_now(
                id,
                500,
                format!("at most {MAX_REGISTRATIONS} registrations per backend"),
            );
        }
        let user = Uri::parse(&req.aor)
            .ok()
            .and_then(|u| u.user())
            .unwrap_or_else(|| DEFAULT_CONTACT_USER.to_string());
        let transport = req.next_hop.transport;
        let mut cfg = RegistrationConfig::new(
            &req.aor,
            &self.contact_uri(&user, transport, is_sips(&req.aor)),
            &self.sent_by_on(transport),
        );
        cfg.registrar = req.registrar;
        cfg.transport = transport.via_token().to_string();
        cfg.expires = req.expires;
        cfg.credentials = req.credentials;
        cfg.outbound_proxy = req.route;
        cfg.user_agent = Some(self.cfg.user_agent.clone());
        cfg.timers = self.cfg.timers;
        let rng = self.rng.fork();
        match Registration::with_rng(cfg, now, rng) {
            Ok(reg) => {
                self.registrations.insert(
                    id,
                    RegEntry {
                        reg,
                        dest: req.next_hop,
                    },
                );
                self.flush_registration(id, out);
            }
            Err(e) => self.registration_failed_now(id, 400, e.to_string()),
        }
    }

    /// Removes registration `id` (REGISTER with `Expires: 0`; the entry goes once answered).
    pub(super) fn unregister(&mut self, id: u64, now: Instant, out: &mut Outbox) {
        if let Some(e) = self.registrations.get_mut(&id) {
            e.reg.unregister(now);
            self.flush_registration(id, out);
        }
    }

    pub(super) fn registration_response(
        &mut self,
        id: u64,
        resp: &SipMessage,
        now: Instant,
        out: &mut Outbox,
    ) {
        if let Some(e) = self.registrations.get_mut(&id) {
            e.reg.handle_response(resp, now);
            self.flush_registration(id, out);
        }
    }

    pub(super) fn registration_timeout(&mut self, id: u64, now: Instant, out: &mut Outbox) {
        if let Some(e) = self.registrations.get_mut(&id) {
            e.reg.handle_timeout(now);
            self.flush_registration(id, out);
        }
    }

    /// The connection registration `id` uses failed (`reason`).
    pub(super) fn registration_transport_error(
        &mut self,
        id: u64,
        reason: &str,
        now: Instant,
        out: &mut Outbox,
    ) {
        if let Some(e) = self.registrations.get_mut(&id) {
            e.reg.handle_transport_error(now, reason);
            self.flush_registration(id, out);
        }
    }

    /// Sends what registration `id` queued, reports its events and schedules its timer.
    fn flush_registration(&mut self, id: u64, out: &mut Outbox) {
        let Some(e) = self.registrations.get_mut(&id) else {
            return;
        };
        while let Some(d) = e.reg.poll_transmit() {
            out.push(d, e.dest);
        }
        let mut events = Vec::new();
        while let Some(ev) = e.reg.poll_event() {
            events.push(match ev {
                Step::Registered { expires } => RegistrationEvent::Registered { expires },
                Step::RegistrationFailed {
                    status,
                    reason,
                    retry_in,
                } => RegistrationEvent::Failed {
                    status,
                    reason,
                    retry_in,
                },
                Step::Unregistered => RegistrationEvent::Unregistered,
            });
        }
        let done = e.reg.is_terminated();
        let next = e.reg.poll_timeout();
        if done {
            self.registrations.remove(&id);
            self.timers.set(TimerKey::Registration(id), None);
        } else {
            self.timers.set(TimerKey::Registration(id), next);
        }
        for ev in events {
            self.emit(SipEvent::Registration(id, ev));
        }
    }
}
