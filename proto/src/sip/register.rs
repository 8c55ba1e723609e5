//! Registration of one contact for one address-of-record with a registrar (RFC 3261 §10), as a
//! sans-IO state machine that owns its REGISTER transactions.
//!
//! Drive it like a transaction: feed responses with [`Registration::handle_response`], call
//! [`Registration::handle_timeout`] once [`Registration::poll_timeout`] has passed, and after
//! either drain [`Registration::poll_transmit`] (datagrams for [`Registration::next_hop`]) and
//! [`Registration::poll_event`].
//!
//! Policies (chosen here, see the constants):
//! - **Refresh** at `max(granted/2, granted − 64·T1)` after a 2xx: with the default T1 that is
//!   32 s before expiry, enough for a whole REGISTER transaction with every retransmission
//!   (timer F is 64·T1) to finish while the binding still holds; short grants refresh at half
//!   time so a refresh never follows the previous one too closely.
//! - **Back-off** after a failure (a 3xx-6xx other than those below, a timeout, a transport
//!   error): retry after `retry_base · 2^(failures−1)`, at most `retry_max` (1 s doubling to
//!   5 min by default: quick recovery from a blip, and a dead registrar is asked at most every
//!   five minutes; RFC 5626 §4.5 suggests up to 30 min for large deployments). A `Retry-After`
//!   in the failure lengthens the wait (up to an hour).
//! - **Challenges** (401/407) are answered at once with [`DigestClient`]; a second challenge to
//!   fresh credentials without `stale=true`, a 403 to credentials, or a challenge with no
//!   credentials configured is final: `RegistrationFailed` without retry (retrying a wrong
//!   password only locks accounts), until [`Registration::register_now`].
//! - **423 Interval Too Brief**: retry at once with the `Min-Expires` asked for (three times in
//!   a row at most).
//! - **A failed connection** (TCP/TLS refused, reset, a keep-alive unanswered; the caller says
//!   so with [`Registration::handle_transport_error`]): a REGISTER on its way fails at once as
//!   a 503 and is retried as above; a binding that holds is refreshed at once on a new
//!   connection (RFC 5626 §4.4.1), but not sooner than [`FLOW_RECOVERY_MIN`] after the last
//!   success.
//! - **Unregister** sends `Expires: 0` once (answering one challenge), then reports
//!   `Unregistered` whatever the answer.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use super::auth::{Credentials, DigestClient};
use super::builder::RequestBuilder;
use super::check;
use super::message::{Method, NameAddr, SipMessage, Uri};
use super::rng::SipRng;
#[cfg(any(test, feature = "_internals"))]
use super::route::{next_hop, NextHop};
use super::transaction::{NonInviteClientTransaction, Timers, TransactionEvent};

/// Default requested binding lifetime (seconds).
pub const DEFAULT_EXPIRES: u32 = 3600;

/// Default first wait after a failure.
pub const DEFAULT_RETRY_BASE: Duration = Duration::from_secs(1);

/// Default longest wait between attempts after failures.
pub const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(300);

/// Longest `Retry-After` honoured; a larger one is cut to this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Most 423 answers in a row followed before the registration counts as failed.
const MAX_INTERVAL_RETRIES: u32 = 3;

/// Least time between a successful REGISTER and the re-REGISTER a failed connection triggers
/// (RFC 5626 §4.5's 30 s base time): a registrar that closes the connection after every answer
/// gets one REGISTER per this, not a loop.
pub const FLOW_RECOVERY_MIN: Duration = Duration::from_secs(30);

/// What a registration needs to know.
#[derive(Debug, Clone)]
pub struct RegistrationConfig {
    /// The address-of-record, e.g. `sip:alice@example.com` (To and From).
    pub aor: String,
    /// The Request-URI, the registrar's domain, e.g. `sip:example.com`. Empty: the AOR's host
    /// and port.
    pub registrar: String,
    /// Our contact URI, where requests for the AOR reach us, e.g. `sip:alice@192.0.2.9:5060`.
    pub contact: String,
    /// Our `host:port` for the Via header.
    pub sent_by: String,
    /// The Via transport token (`UDP`).
    pub transport: String,
    /// Requested binding lifetime in seconds (a registrar may grant less, or ask for more with
    /// 423).
    pub expires: u32,
    /// Credentials for 401/407 challenges.
    pub credentials: Option<Credentials>,
    /// A Route value for an outbound proxy, e.g. `<sip:proxy.example.com;lr>`: the REGISTER
    /// carries it and [`Registration::next_hop`] is the proxy.
    pub outbound_proxy: Option<String>,
    /// A `User-Agent` value.
    pub user_agent: Option<String>,
    /// Transaction timers.
    pub timers: Timers,
    /// First wait after a failure; doubles with each failure in a row.
    pub retry_base: Duration,
    /// Longest wait after failures.
    pub retry_max: Duration,
}

impl RegistrationConfig {
    /// A configuration with the defaults: UDP, 3600 s, no credentials, no outbound proxy, the
    /// registrar taken from the AOR.
    pub fn new(aor: &str, contact: &str, sent_by: &str) -> RegistrationConfig {
        RegistrationConfig {
            aor: aor.to_string(),
            registrar: String::new(),
            contact: contact.to_string(),
            sent_by: sent_by.to_string(),
            transport: "UDP".to_string(),
            expires: DEFAULT_EXPIRES,
            credentials: None,
            outbound_proxy: None,
            user_agent: None,
            timers: Timers::default(),
            retry_base: DEFAULT_RETRY_BASE,
            retry_max: DEFAULT_RETRY_MAX,
        }
    }
}

/// A configuration that cannot produce a valid REGISTER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationError(pub String);

impl fmt::Display for RegistrationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad registration settings: {}", self.0)
    }
}

impl std::error::Error for RegistrationError {}

/// What a registration reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationEvent {
    /// A REGISTER (first or refresh) succeeded; the binding holds for `expires` seconds.
    Registered {
        /// The lifetime the registrar granted.
        expires: u32,
    },
    /// A REGISTER failed.
    RegistrationFailed {
        /// The final status, 408 for no answer, 503 for a transport error.
        status: u16,
        /// Why, for logs and the application.
        reason: String,
        /// When the next attempt is made; `None` when there will be none (refused credentials,
        /// or the end of an unregistration).
        retry_in: Option<Duration>,
    },
    /// The registration is over (after [`Registration::unregister`]); always the last event.
    Unregistered,
}

/// Where a registration stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrationState {
    /// A REGISTER is on its way, and no binding is known to hold.
    Registering,
    /// The binding holds; a refresh is scheduled (or running).
    Registered,
    /// The last attempt failed; the next one is scheduled.
    Retrying,
    /// Refused for good (credentials); nothing more is sent until `register_now`.
    Failed,
    /// The `Expires: 0` REGISTER is on its way.
    Unregistering,
    /// Finished.
    Unregistered,
}

/// One binding of one AOR, kept alive with refreshes; see the module docs for the policies.
#[derive(Debug)]
pub struct Registration {
    config: RegistrationConfig,
    request_uri: String,
    contact_uri: Uri,
    route_set: Vec<NameAddr>,
    call_id: String,
    from_tag: String,
    cseq: u32,
    /// The lifetime we ask for (the configured one, raised by 423).
    expires: u32,
    auth: Option<DigestClient>,
    tx: Option<NonInviteClientTransaction>,
    /// True while a REGISTER awaits its final response.
    awaiting: bool,
    unregistering: bool,
    state: RegistrationState,
    /// When the next refresh or retry is due.
    wake_at: Option<Instant>,
    bound_until: Option<Instant>,
    /// When the last REGISTER succeeded.
    registered_at: Option<Instant>,
    /// The REGISTERs travel on TCP/TLS: no retransmissions.
    reliable: bool,
    failures: u32,
    interval_retries: u32,
    transmit: VecDeque<Vec<u8>>,
    events: VecDeque<RegistrationEvent>,
    /// Draws the branch of every REGISTER.
    rng: SipRng,
}

/// The Request-URI a registration uses when none is configured: the AOR without its user.
fn registrar_of(aor: &Uri) -> Option<String> {
    let host = aor.host()?;
    let scheme = aor.scheme().to_ascii_lowercase();
    Some(match aor.port() {
        Some(p) => format!("{scheme}:{host}:{p}"),
        None => format!("{scheme}:{host}"),
    })
}

/// True when two contact URIs name the same binding (user, host without case, port with the
/// SIP default).
fn same_contact(a: &Uri, b: &Uri) -> bool {
    a.user() == b.user()
        && a.host()
            .zip(b.host())
            .is_some_and(|(x, y)| x.eq_ignore_ascii_case(&y))
        && a.port().unwrap_or(5060) == b.port().unwrap_or(5060)
}

/// When to refresh a binding granted for `granted` seconds: `max(granted/2, granted − 64·T1)`.
pub fn refresh_delay(granted: u32, timers: &Timers) -> Duration {
    let granted = Duration::from_secs(u64::from(granted));
    (granted / 2).max(granted.saturating_sub(timers.give_up()))
}

/// The wait before attempt `failures + 1`: `base · 2^(failures−1)`, at most `max`.
pub fn retry_delay(failures: u32, base: Duration, max: Duration) -> Duration {
    let doublings = failures.saturating_sub(1).min(30);
    base.saturating_mul(1 << doublings).min(max)
}

impl Registration {
    /// Starts registering: the first REGISTER is queued at once. Its Call-ID, tag, branches
    /// and cnonces are drawn from the OS.
    #[cfg(any(test, feature = "_internals"))]
    pub fn new(
        config: RegistrationConfig,
        now: Instant,
    ) -> Result<Registration, RegistrationError> {
        Registration::with_rng(config, now, SipRng::from_os())
    }

    /// [`new`](Registration::new) with every random draw taken from `rng` (a sans-IO core's,
    /// so its runs replay).
    pub fn with_rng(
        config: RegistrationConfig,
        now: Instant,
        mut rng: SipRng,
    ) -> Result<Registration, RegistrationError> {
        let bad = |what: &str| RegistrationError(what.to_string());
        let aor = Uri::parse(&config.aor).map_err(|_| bad("the AOR is not a URI"))?;
        if !aor.is_sip() {
            return Err(bad("the AOR is not a sip: or sips: URI"));
        }
        let request_uri = if config.registrar.is_empty() {
            registrar_of(&aor).ok_or_else(|| bad("the AOR has no host"))?
        } else {
            config.registrar.clone()
        };
        match Uri::parse(&request_uri) {
            Ok(u) if u.is_sip() && !u.has_headers() => {}
            _ => return Err(bad("the registrar is not a sip: or sips: URI")),
        }
        let contact_uri = Uri::parse(&config.contact)
            .ok()
            .filter(|u| u.is_sip())
            .ok_or_else(|| bad("the contact is not a sip: or sips: URI"))?;
        let route_set = match &config.outbound_proxy {
            Some(route) => vec![NameAddr::parse(route)
                .ok()
                .filter(|r| r.uri().is_sip())
                .ok_or_else(|| bad("the outbound proxy is not a SIP name-addr"))?],
            None => Vec::new(),
        };
        let host = config
            .sent_by
            .rsplit_once(':')
            .map_or(config.sent_by.as_str(), |(h, _)| h);
        let mut reg = Registration {
            request_uri,
            contact_uri,
            route_set,
            call_id: rng.call_id(host),
            from_tag: rng.tag(),
            cseq: 0,
            expires: config.expires,
            auth: config
                .credentials
                .clone()
                .map(|c| DigestClient::with_rng(c, rng.fork())),
            tx: None,
            awaiting: false,
            unregistering: false,
            state: RegistrationState::Registering,
            wake_at: None,
            bound_until: None,
            registered_at: None,
            reliable: !config.transport.eq_ignore_ascii_case("UDP"),
            failures: 0,
            interval_retries: 0,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            rng,
            config,
        };
        // Every later REGISTER differs only in CSeq, branch, expiry and credentials: if this
        // one parses, they all do.
        let probe = reg.build_register(0);
        SipMessage::parse(&probe)
            .map_err(|e| RegistrationError(format!("the REGISTER would not parse: {e}")))?;
        reg.send(now);
        Ok(reg)
    }

    /// Where the REGISTERs go: the outbound proxy, else the registrar (name resolution is the
    /// caller's).
    #[cfg(any(test, feature = "_internals"))]
    pub fn next_hop(&self) -> Option<NextHop> {
        next_hop(&self.request_uri, &self.route_set)
    }

    /// Where the registration stands.
    #[cfg(any(test, feature = "_internals"))]
    pub fn state(&self) -> RegistrationState {
        self.state
    }

    /// The address-of-record being registered.
    #[cfg(any(test, feature = "_internals"))]
    pub fn aor(&self) -> &str {
        &self.config.aor
    }

    /// The Call-ID every REGISTER of this registration carries.
    #[cfg(any(test, feature = "_internals"))]
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// The lifetime asked for in the next REGISTER (the configured one, or a registrar's
    /// `Min-Expires`).
    #[cfg(any(test, feature = "_internals"))]
    pub fn requested_expires(&self) -> u32 {
        self.expires
    }

    /// Until when the registrar holds our binding, as far as we know.
    #[cfg(any(test, feature = "_internals"))]
    pub fn registered_until(&self) -> Option<Instant> {
        self.bound_until
    }

    /// True once unregistered: the object can be dropped.
    pub fn is_terminated(&self) -> bool {
        self.state == RegistrationState::Unregistered
    }

    /// True when `response` answers one of our REGISTERs still in a transaction.
    pub fn matches(&self, response: &SipMessage) -> bool {
        self.tx.as_ref().is_some_and(|tx| tx.matches(response))
    }

    /// Replaces the credentials (after a refusal, say); takes effect with the next REGISTER.
    #[cfg(any(test, feature = "_internals"))]
    pub fn set_credentials(&mut self, credentials: Option<Credentials>) {
        self.auth = credentials.clone().map(DigestClient::new);
        self.config.credentials = credentials;
    }

    /// Registers again now: after a refusal, after new credentials, or early on a network
    /// change. Ignored while a REGISTER is on its way or once unregistering.
    #[cfg(any(test, feature = "_internals"))]
    pub fn register_now(&mut self, now: Instant) {
        if self.awaiting || self.unregistering {
            return;
        }
        if self.state == RegistrationState::Failed {
            self.failures = 0;
        }
        if self.bound_until.is_none_or(|t| t <= now) {
            self.state = RegistrationState::Registering;
        }
        self.send(now);
    }

    /// Removes the binding: one `Expires: 0` REGISTER (answering one challenge), then
    /// [`RegistrationEvent::Unregistered`]. A REGISTER on its way is abandoned. Without any
    /// binding to remove (refused, or already unregistered) it ends at once.
    pub fn unregister(&mut self, now: Instant) {
        match self.state {
            RegistrationState::Unregistered | RegistrationState::Unregistering => {}
            RegistrationState::Failed => self.finish_unregister(),
            _ => {
                self.unregistering = true;
                self.state = RegistrationState::Unregistering;
                self.wake_at = None;
                self.send(now);
            }
        }
    }

    fn build_register(&mut self, expires: u32) -> Vec<u8> {
        let c = &self.config;
        let mut b = RequestBuilder::new(Method::Register, &self.request_uri)
            .via(&format!(
                "SIP/2.0/{} {};branch={};rport",
                c.transport,
                c.sent_by,
                self.rng.branch()
            ))
            .from(&format!("<{}>;tag={}", c.aor, self.from_tag))
            .to(&format!("<{}>", c.aor))
            .call_id(&self.call_id)
            .cseq(self.cseq)
            .header("Contact", &format!("<{}>;expires={expires}", c.contact))
            .header("Expires", &expires.to_string());
        for route in &self.route_set {
            b = b.route(route.raw());
        }
        if let Some(ua) = &c.user_agent {
            b = b.header("User-Agent", ua);
        }
        if let Some(auth) = self.auth.as_mut() {
            for (name, value) in auth.authorize("REGISTER", &self.request_uri) {
                b = b.header(name, &value);
            }
        }
        b.build()
    }

    /// Sends the next REGISTER (registering or unregistering) in a new transaction.
    fn send(&mut self, now: Instant) {
        self.cseq = self.cseq.saturating_add(1);
        let expires = if self.unregistering { 0 } else { self.expires };
        let request = self.build_register(expires);
        self.wake_at = None;
        match NonInviteClientTransaction::new(request, now, self.config.timers) {
            Ok(tx) => {
                self.tx = Some(if self.reliable {
                    tx.over_reliable_transport()
                } else {
                    tx
                });
                self.awaiting = true;
                self.pump(now);
            }
            // `new` checked a REGISTER of the same shape; this is not expected.
            Err(e) => self.refuse(500, format!("REGISTER not built: {e}")),
        }
    }

    /// Feeds a response. Returns false (and ignores it) when it is not ours.
    pub fn handle_response(&mut self, response: &SipMessage, now: Instant) -> bool {
        let Some(tx) = self.tx.as_mut() else {
            return false;
        };
        if !tx.handle_response(response, now) {
            return false;
        }
        self.pump(now);
        true
    }

    /// The transport to the registrar failed (`reason`: a TCP/TLS connection refused, reset,
    /// closed, a TLS handshake refused, a keep-alive unanswered). A REGISTER on its way fails
    /// at once as a 503 (RFC 3261 §8.1.3.1) and is retried after the back-off; a binding that
    /// holds, with nothing on its way, is refreshed on a new connection (RFC 5626 §4.4.1) at
    /// once, or [`FLOW_RECOVERY_MIN`] after the last success if that is later.
    pub fn handle_transport_error(&mut self, now: Instant, reason: &str) {
        if self.awaiting {
            match self.tx.as_mut() {
                Some(tx) => {
                    tx.transport_failed(reason);
                    self.pump(now);
                }
                None => {
                    self.awaiting = false;
                    self.fail(503, format!("transport error: {reason}"), None, now);
                }
            }
            return;
        }
        if self.state == RegistrationState::Registered && !self.unregistering {
            let earliest = self.registered_at.map_or(now, |t| t + FLOW_RECOVERY_MIN);
            let at = earliest.max(now);
            self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
        }
    }

    /// When `handle_timeout` next needs to run.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let tx = self.tx.as_ref().and_then(|t| t.poll_timeout());
        [tx, self.wake_at, self.bound_until]
            .into_iter()
            .flatten()
            .min()
    }

    /// Runs the transaction's timers, notes a lapsed binding, and sends a due refresh or retry.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.bound_until.is_some_and(|t| t <= now) {
            // The refreshes failed for the whole lifetime: the registrar has dropped us.
            self.bound_until = None;
            if self.state == RegistrationState::Registered {
                self.state = if self.awaiting {
                    RegistrationState::Registering
                } else {
                    RegistrationState::Retrying
                };
            }
        }
        if let Some(tx) = self.tx.as_mut() {
            tx.handle_timeout(now);
            self.pump(now);
        }
        if self.wake_at.is_some_and(|t| t <= now) && !self.awaiting {
            if self.state == RegistrationState::Retrying {
                self.state = RegistrationState::Registering;
            }
            self.send(now);
        }
    }

    /// Moves the transaction's datagrams out and acts on its events.
    fn pump(&mut self, now: Instant) {
        let Some(tx) = self.tx.as_mut() else {
            return;
        };
        while let Some(d) = tx.poll_transmit() {
            self.transmit.push_back(d);
        }
        let mut events = Vec::new();
        while let Some(ev) = tx.poll_event() {
            events.push(ev);
        }
        if tx.is_terminated() {
            self.tx = None;
        }
        for ev in events {
            match ev {
                TransactionEvent::Response(r) if r.status().is_some_and(|s| s >= 200) => {
                    self.awaiting = false;
                    self.on_final(&r, now);
                }
                TransactionEvent::Timeout => {
                    self.awaiting = false;
                    self.fail(408, "no response".into(), None, now);
                }
                TransactionEvent::TransportError(reason) => {
                    self.awaiting = false;
                    self.fail(503, format!("transport error: {reason}"), None, now);
                }
                _ => {}
            }
        }
    }

    fn on_final(&mut self, r: &SipMessage, now: Instant) {
        let status = r.status().unwrap_or_default();
        let reason = r.reason().unwrap_or_default().to_string();
        match status {
            200..=299 => self.on_success(r, now),
            401 | 407 => {
                let Some(auth) = self.auth.as_mut() else {
                    return self.refuse(status, "challenged, and no credentials are set".into());
                };
                match auth.handle_challenge(r) {
                    Ok(()) => self.send(now),
                    Err(e) => self.refuse(status, e.to_string()),
                }
            }
            403 if self.auth.as_ref().is_some_and(|a| a.has_challenge()) => {
                self.refuse(status, format!("credentials refused: {reason}"));
            }
            423 if !self.unregistering => {
                let min = r.header("Min-Expires").and_then(|v| check::expires(v).ok());
                match min {
                    Some(min)
                        if min > self.expires && self.interval_retries < MAX_INTERVAL_RETRIES =>
                    {
                        self.interval_retries += 1;
                        self.expires = min;
                        self.send(now);
                    }
                    _ => {
                        self.interval_retries = 0;
                        self.fail(
                            status,
                            format!("{reason} (no usable Min-Expires)"),
                            None,
                            now,
                        );
                    }
                }
            }
            _ => {
                // The parser has checked Retry-After's syntax (and Min-Expires' above).
                let retry_after = r
                    .header("Retry-After")
                    .and_then(|v| check::retry_after(v).ok())
                    .map(|s| Duration::from_secs(u64::from(s)));
                self.fail(status, reason, retry_after, now);
            }
        }
    }

    fn on_success(&mut self, r: &SipMessage, now: Instant) {
        self.failures = 0;
        self.interval_retries = 0;
        if self.unregistering {
            return self.finish_unregister();
        }
        let granted = r
            .contacts()
            .iter()
            .find(|c| same_contact(c.uri(), &self.contact_uri))
            .and_then(|c| c.param("expires").flatten())
            .and_then(|e| e.parse::<u32>().ok())
            .or(r.expires())
            .unwrap_or(self.expires);
        if granted == 0 {
            return self.fail(
                r.status().unwrap_or(200),
                "the registrar kept no binding for our contact".into(),
                None,
                now,
            );
        }
        self.bound_until = Some(now + Duration::from_secs(u64::from(granted)));
        self.registered_at = Some(now);
        self.wake_at = Some(now + refresh_delay(granted, &self.config.timers));
        self.state = RegistrationState::Registered;
        self.events
            .push_back(RegistrationEvent::Registered { expires: granted });
    }

    /// A failure worth retrying: report it and schedule the next attempt.
    fn fail(&mut self, status: u16, reason: String, retry_after: Option<Duration>, now: Instant) {
        if self.unregistering {
            self.events
                .push_back(RegistrationEvent::RegistrationFailed {
                    status,
                    reason,
                    retry_in: None,
                });
            return self.finish_unregister();
        }
        self.failures = self.failures.saturating_add(1);
        let backoff = retry_delay(self.failures, self.config.retry_base, self.config.retry_max);
        let wait = backoff.max(retry_after.unwrap_or_default().min(MAX_RETRY_AFTER));
        self.wake_at = Some(now + wait);
        if self.bound_until.is_none_or(|t| t <= now) {
            self.bound_until = None;
            self.state = RegistrationState::Retrying;
        }
        self.events
            .push_back(RegistrationEvent::RegistrationFailed {
                status,
                reason,
                retry_in: Some(wait),
            });
    }

    /// A failure not worth retrying (refused credentials).
    fn refuse(&mut self, status: u16, reason: String) {
        self.events
            .push_back(RegistrationEvent::RegistrationFailed {
                status,
                reason,
                retry_in: None,
            });
        if self.unregistering {
            return self.finish_unregister();
        }
        self.wake_at = None;
        self.bound_until = None;
        self.state = RegistrationState::Failed;
    }

    fn finish_unregister(&mut self) {
        self.unregistering = true;
        self.state = RegistrationState::Unregistered;
        self.wake_at = None;
        self.bound_until = None;
        self.awaiting = false;
        self.tx = None;
        self.events.push_back(RegistrationEvent::Unregistered);
    }

    /// The next datagram to send to [`next_hop`](Registration::next_hop).
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }

    /// The next event for the application.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<RegistrationEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::auth::{parse_authorization, AuthOutcome, DigestAuthenticator};
    use crate::sip::message::parse;
    use crate::sip::ResponseBuilder;

    const CONTACT: &str = "sip:alice@192.0.2.9:5060";

    fn config(expires: u32) -> RegistrationConfig {
        let mut c = RegistrationConfig::new("sip:alice@example.com", CONTACT, "192.0.2.9:5060");
        c.expires = expires;
        c.credentials = Some(Credentials::new("alice", "s3cret"));
        c
    }

    fn users(name: &str) -> Option<String> {
        (name == "alice").then(|| "s3cret".to_string())
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// What the registration sent (parsed) and reported, with the virtual time in ms.
    #[derive(Default)]
    struct Log {
        sent: Vec<(u64, SipMessage)>,
        events: Vec<(u64, RegistrationEvent)>,
    }

    impl Log {
        fn last_sent(&self) -> &SipMessage {
            &self.sent.last().expect("something was sent").1
        }

        fn take_events(&mut self) -> Vec<(u64, RegistrationEvent)> {
            std::mem::take(&mut self.events)
        }

        fn sent_at(&self) -> Vec<u64> {
            self.sent.iter().map(|(at, _)| *at).collect()
        }
    }

    fn drain(reg: &mut Registration, t0: Instant, now: Instant, log: &mut Log) {
        let at = (now - t0).as_millis() as u64;
        while let Some(d) = reg.poll_transmit() {
            log.sent.push((at, parse(&d).expect("our REGISTER parses")));
        }
        while let Some(e) = reg.poll_event() {
            log.events.push((at, e));
        }
    }

    /// Runs the registration's timers up to `until`, logging as it goes.
    fn run_until(reg: &mut Registration, t0: Instant, until: Instant, log: &mut Log) {
        while let Some(t) = reg.poll_timeout().filter(|t| *t <= until) {
            reg.handle_timeout(t);
            drain(reg, t0, t, log);
        }
    }

    /// The registrar's answer to `req`.
    fn reply(req: &SipMessage, status: u16, headers: &[(&str, &str)]) -> SipMessage {
        let mut b = ResponseBuilder::new(req.echo(), status).to_tag("reg1");
        for (n, v) in headers {
            b = b.header(n, v);
        }
        parse(&b.build()).unwrap()
    }

    fn feed(reg: &mut Registration, r: &SipMessage, t0: Instant, at: Instant, log: &mut Log) {
        assert!(reg.handle_response(r, at), "the response is ours");
        drain(reg, t0, at, log);
    }

    fn failed(status: u16, retry_in: Option<Duration>) -> RegistrationEvent {
        RegistrationEvent::RegistrationFailed {
            status,
            reason: String::new(),
            retry_in,
        }
    }

    /// Events with the reason text blanked, for comparing.
    fn shapes(events: Vec<(u64, RegistrationEvent)>) -> Vec<(u64, RegistrationEvent)> {
        events
            .into_iter()
            .map(|(at, e)| match e {
                RegistrationEvent::RegistrationFailed {
                    status, retry_in, ..
                } => (at, failed(status, retry_in)),
                other => (at, other),
            })
            .collect()
    }

    #[test]
    fn policies() {
        let t = Timers::default();
        assert_eq!(refresh_delay(3600, &t), secs(3568));
        assert_eq!(refresh_delay(120, &t), secs(88));
        assert_eq!(refresh_delay(60, &t), secs(30));
        assert_eq!(refresh_delay(1, &t), ms(500));
        let (base, max) = (secs(1), secs(300));
        let waits: Vec<u64> = (1..=11)
            .map(|n| retry_delay(n, base, max).as_secs())
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(retry_delay(u32::MAX, base, max), max);
    }

    #[test]
    fn registers_then_refreshes_before_expiry() {
        let t0 = Instant::now();
        let mut log = Log::default();
        let mut reg = Registration::new(config(600), t0).unwrap();
        drain(&mut reg, t0, t0, &mut log);
        assert_eq!(reg.state(), RegistrationState::Registering);
        let first = log.last_sent().clone();
        assert_eq!(first.method(), &Method::Register);
        assert_eq!(first.request_uri().unwrap().as_str(), "sip:example.com");
        assert_eq!(first.to().uri().as_str(), "sip:alice@example.com");
        assert_eq!(first.from().uri().as_str(), "sip:alice@example.com");
        assert!(first.from().tag().is_some());
        assert_eq!(first.contact().unwrap().uri().as_str(), CONTACT);
        assert_eq!(first.contact().unwrap().param("expires"), Some(Some("600")));
        assert_eq!(first.expires(), Some(600));
        assert_eq!(first.cseq().number, 1);
        assert!(first.header("Authorization").is_none());
        let hop = reg.next_hop().unwrap();
        assert_eq!((hop.host.as_str(), hop.port), ("example.com", None));

        // The registrar lists another device's binding too; ours is granted 600 s.
        let ok = reply(
            &first,
            200,
            &[(
                "Contact",
                "<sip:alice@198.51.100.1>;expires=30, <sip:alice@192.0.2.9>;expires=600",
            )],
        );
        feed(&mut reg, &ok, t0, t0 + ms(100), &mut log);
        assert_eq!(
            log.take_events(),
            [(100, RegistrationEvent::Registered { expires: 600 })]
        );
        assert_eq!(reg.state(), RegistrationState::Registered);
        assert_eq!(reg.registered_until(), Some(t0 + ms(100) + secs(600)));

        // Refresh 32 s before expiry: same Call-ID and tag, next CSeq, new branch.
        run_until(&mut reg, t0, t0 + ms(568_100), &mut log);
        assert_eq!(log.sent_at(), [0, 568_100]);
        let refresh = log.last_sent().clone();
        assert_eq!(refresh.call_id(), first.call_id());
        assert_eq!(refresh.from().tag(), first.from().tag());
        assert_eq!(refresh.cseq().number, 2);
        assert_ne!(refresh.top_via().branch(), first.top_via().branch());

        // This time the grant comes in the Expires header only.
        let ok = reply(&refresh, 200, &[("Expires", "120")]);
        feed(&mut reg, &ok, t0, t0 + secs(569), &mut log);
        assert_eq!(
            log.take_events(),
            [(569_000, RegistrationEvent::Registered { expires: 120 })]
        );
        run_until(&mut reg, t0, t0 + secs(657), &mut log);
        assert_eq!(log.sent_at(), [0, 568_100, 657_000]);
    }

    #[test]
    fn a_401_is_answered_and_later_refreshes_carry_credentials() {
        let t0 = Instant::now();
        let mut log = Log::default();
        let mut registrar = DigestAuthenticator::new("example.com", secs(30));
        let mut reg = Registration::new(config(60), t0).unwrap();
        drain(&mut reg, t0, t0, &mut log);
        let challenges = registrar.challenges(t0, false);
        let headers: Vec<(&str, &str)> = challenges
            .iter()
            .map(|c| ("WWW-Authenticate", c.as_str()))
            .collect();
        feed(
            &mut reg,
            &reply(log.last_sent(), 401, &headers),
            t0,
            t0 + ms(50),
            &mut log,
        );
        assert!(log.take_events().is_empty(), "a challenge is not a failure");
        let again = log.last_sent().clone();
        assert_eq!(log.sent_at(), [0, 50]);
        assert_eq!(again.cseq().number, 2);
        let auth = again.header("Authorization").expect("credentials");
        assert_eq!(
            parse_authorization(auth).unwrap().algorithm.as_deref(),
            Some("SHA-256")
        );
        assert_eq!(
            registrar.verify(auth, "REGISTER", t0 + ms(60), users),
            AuthOutcome::Authorized {
                username: "alice".into()
            }
        );
        feed(
            &mut reg,
            &reply(&again, 200, &[("Expires", "60")]),
            t0,
            t0 + ms(100),
            &mut log,
        );
        assert_eq!(
            log.take_events(),
            [(100, RegistrationEvent::Registered { expires: 60 })]
        );

        // The refresh at 30 s carries the credentials with nc=2; our registrar's nonces are
        // single-use, so it challenges again with stale=true, which is answered at once.
        run_until(&mut reg, t0, t0 + secs(31), &mut log);
        let refresh = log.last_sent().clone();
        let creds = parse_authorization(refresh.header("Authorization").unwrap()).unwrap();
        assert_eq!(creds.nc.as_deref(), Some("00000002"));
        assert_eq!(
            registrar.verify(
                refresh.header("Authorization").unwrap(),
                "REGISTER",
                t0 + secs(31),
                users
            ),
            AuthOutcome::Stale
        );
        let stale = registrar.challenges(t0 + secs(31), true);
        feed(
            &mut reg,
            &reply(&refresh, 401, &[("WWW-Authenticate", stale[0].as_str())]),
            t0,
            t0 + secs(31),
            &mut log,
        );
        let answer = log.last_sent().clone();
        assert_eq!(answer.cseq().number, 4);
        assert_eq!(
            registrar.verify(
                answer.header("Authorization").unwrap(),
                "REGISTER",
                t0 + secs(31),
                users
            ),
            AuthOutcome::Authorized {
                username: "alice".into()
            }
        );
        feed(
            &mut reg,
            &reply(&answer, 200, &[]),
            t0,
            t0 + secs(31),
            &mut log,
        );
        assert_eq!(
            log.take_events(),
            [(31_000, RegistrationEvent::Registered { expires: 60 })]
        );
    }

    #[test]
    fn a_407_through_an_outbound_proxy_is_answered_with_proxy_authorization() {
        let t0 = Instant::now();
        let mut log = Log::default();
        let mut cfg = config(3600);
        cfg.outbound_proxy = Some("<sip:192.0.2.50:5070;lr>".into());
        cfg.registrar = "sip:registrar.example.com".into();
        let mut reg = Registration::new(cfg, t0).unwrap();
        assert_eq!(
            reg.next_hop().unwrap().socket_addr(),
            Some("192.0.2.50:5070".parse().unwrap())
        );
        drain(&mut reg, t0, t0, &mut log);
        let first = log.last_sent().clone();
        assert_eq!(
            first.request_uri().unwrap().as_str(),
            "sip:registrar.example.com"
        );
        assert_eq!(first.routes()[0].raw(), "<sip:192.0.2.50:5070;lr>");
        let mut proxy = DigestAuthenticator::new("proxy", secs(30));
        let challenge = proxy.challenge(t0, false);
        feed(
            &mut reg,
            &reply(&first, 407, &[("Proxy-Authenticate", challenge.as_str())]),
            t0,
            t0 + ms(20),
            &mut log,
        );
        let again = log.last_sent().clone();
        assert!(again.header("Authorization").is_none());
        let value = again
            .header("Proxy-Authorization")
            .expect("proxy credentials");
        assert_eq!(
            proxy.verify(value, "REGISTER", t0 + ms(20), users),
            AuthOutcome::Authorized {
                username: "alice".into()
            }
        );
        assert_eq!(again.routes().len(), 1);
        feed(
            &mut reg,
            &reply(&again, 200, &[]),
            t0,
            t0 + ms(40),
            &mut log,
        );
        assert_eq!(
            log.take_events(),
            [(40, RegistrationEvent::Registered { expires: 3600 })]
        );
    }

    #[test]
    fn interval_too_brief_is_retried_with_min_expires() {
        let t0 = Instant::now();
        let mut log = Log::default();
        let mut reg = Registration::new(config(60), t0).unwrap();
        drain(&mut reg, t0, t0, &mut log);
        let brief = reply(log.last_sent(), 423, &[("Min-Expires", "1800")]);
        feed(&mut reg, &brief, t0, t0 + ms(10), &mut log);
        let again = log.last_sent().clone();
        assert_eq!(again.expires(), Some(1800));
        assert_eq!(
            again.contact().unwrap().param("expires"),
            Some(Some("1800"))
        );
        assert_eq!(reg.requested_expires(), 1800);
        feed(
            &mut reg,
            &reply(&again, 200, &[]),
            t0,
            t0 + ms(20),
            &mut log,
        );
        assert_eq!(
            log.take_events(),
            [(20, RegistrationEvent::Registered { expires: 1800 })]
        );
        // Refreshes keep asking for the larger value.
        run_until(&mut reg, t0, t0 + secs(1800), &mut log);
        assert_eq!(log.last_sent().expires(), Some(1800));

        // A 423 without a usable Min-Expires is a failure like any other.
        let mut reg = Registration::new(config(60), t0).unwrap();
        let mut log = Log::default();
        drain(&mut reg, t0, t0, &mut log);
        feed(
            &mut reg,
            &reply(log.last_sent(), 423, &[]),
            t0,
            t0,
            &mut log,
        );
        assert_eq!(shapes(log.take_events()), [(0, failed(423, Some(secs(1))))]);
    }

    #[test]
    fn lost_requests_time_out_and_are_retried() {
        let t0 = Instant::now();
        let mut log = Log::default();
        let mut reg = Registration::new(config(3600), t0).unwrap();
        drain(&mut reg, t0, t0, &mut log);
        run_until(&mut reg, t0, t0 + secs(32), &mut log);
        assert_eq!(reg.state(), RegistrationState::Retrying);
        run_until(&mut reg, t0, t0 + secs(33), &mut log);
        assert_eq!(reg.state(), RegistrationState::Registering);
        // Timer E (0.5 s doubling to T2) until timer F at 32 s, then the retry 1 s later.
        assert_eq!(
            log.sent_at(),
            [0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500, 33_000]
        );
        assert_eq!(
            shapes(log.take_events()),
            [(32_000, failed(408, Some(secs(1))))]
        );
        let retry = log.last_sent().clone();
        assert_eq!(retry.cseq().number, 2);
        assert_eq!(
            log.sent[0].1.cseq().number,
            log.sent[10].1.cseq().number,
            "retransmissions are the same request"
        );

        // Lost again: the next wait doubles.
        run_until(&mut reg, t0, t0 + secs(67), &mut log);
        assert_eq!(
            shapes(log.take_events()),
            [(65_000, failed(408, Some(secs(2))))]
        );
        assert_eq!(log.sent.last().unwrap().0, 67_000);

        // The network is back.
        let third = log.last_sent().clone();
        feed(
            &mut reg,
            &reply(&third, 200, &[]),
            t0,
            t0 + secs(68),
            &mut log,
        );
        assert_eq!(
            log.take_events(),
            [(68_000, RegistrationEvent::Registered { expires: 3600 })]
        );
        // A transport error later counts as a 503, and the back-off starts again from 1 s.
        reg.register_now(t0 + secs(100));
        reg.handle_transport_error(t0 + secs(100), "connection reset");
        drain(&mut reg, t0, t0 + secs(100), &mut log);
        assert_eq!(
            shapes(log.take_events()),
            [(100_000, failed(503, Some(secs(1))))]
        );
        assert_eq!(
            reg.state(),
            RegistrationState::Registered,
            "the old binding still holds"
        );
    }

    /// Over TCP/TLS a REGISTER goes out once (no timer E); a transport error fails it at once
    /// as a 503 that names the cause, and the retry follows the back-off. Once registered, a
    /// failed connection brings a refresh at once — but never sooner than
    /// `FLOW_RECOVERY_MIN` after the last success.
    #[test]
    fn over_a_connection_a_transport_error_fails_at_once_and_a_lost_flow_re_registers() {
        let t0 = Instant::now();
        let mut log = Log::default();
        let mut cfg = config(3600);
        cfg.transport = "TLS".into();
        let mut reg = Registration::new(cfg, t0).unwrap();
        drain(&mut reg, t0, t0, &mut log);
        run_until(&mut reg, t0, t0 + ms(200), &mut log);
        assert_eq!(log.sent_at(), [0], "no retransmission on a connection");
        reg.handle_transport_error(t0 + ms(200), "TLS handshake failed: UnknownIssuer");
        drain(&mut reg, t0, t0 + ms(200), &mut log);
        let events = log.take_events();
        assert_eq!(shapes(events.clone()), [(200, failed(503, Some(secs(1))))]);
        let RegistrationEvent::RegistrationFailed { reason, .. } = &events[0].1 else {
            unreachable!()
        };
        assert_eq!(
            reason,
            "transport error: TLS handshake failed: UnknownIssuer"
        );
        assert_eq!(reg.state(), RegistrationState::Retrying);
        // An error with nothing on its way and no binding changes nothing.
        reg.handle_transport_error(t0 + ms(300), "connection reset");
        drain(&mut reg, t0, t0 + ms(300), &mut log);
        assert!(log.take_events().is_empty());
        run_until(&mut reg, t0, t0 + ms(1200), &mut log);
        assert_eq!(log.sent_at(), [0, 1200], "the retry after 1 s");
        let second = log.last_sent().clone();
        feed(
            &mut reg,
            &reply(&second, 200, &[]),
            t0,
            t0 + ms(1300),
            &mut log,
        );
        assert_eq!(
            log.take_events(),
            [(1300, RegistrationEvent::Registered { expires: 3600 })]
        );
        // The connection dies at once (a registrar closing after every answer): the refresh
        // waits for FLOW_RECOVERY_MIN after the success.
        reg.handle_transport_error(t0 + ms(1400), "connection closed by the peer");
        drain(&mut reg, t0, t0 + ms(1400), &mut log);
        assert!(log.take_events().is_empty(), "the binding still holds");
        run_until(&mut reg, t0, t0 + secs(40), &mut log);
        assert_eq!(log.sent_at(), [0, 1200, 31_300]);
        let third = log.last_sent().clone();
        feed(
            &mut reg,
            &reply(&third, 200, &[]),
            t0,
            t0 + secs(32),
            &mut log,
        );
        // Later (a keep-alive unanswered after two minutes): the refresh goes out at once.
        reg.handle_transport_error(t0 + secs(200), "keep-alive unanswered");
        run_until(&mut reg, t0, t0 + secs(200), &mut log);
        assert_eq!(log.sent_at(), [0, 1200, 31_300, 200_000]);
        assert_eq!(reg.state(), RegistrationState::Registered);
    }

    #[test]
    fn failures_back_off_to_the_cap_and_honour_retry_after() {
        let t0 = Instant::now();
        let mut log = Log::default();
        let mut reg = Registration::new(config(3600), t0).unwrap();
        drain(&mut reg, t0, t0, &mut log);
        let mut now = t0;
        let mut waits = Vec::new();
        for _ in 0..11 {
            let req = log.last_sent().clone();
            feed(&mut reg, &reply(&req, 500, &[]), t0, now, &mut log);
            let events = log.take_events();
            let [(_, RegistrationEvent::RegistrationFailed { retry_in, .. })] = events.as_slice()
            else {
                panic!("one failure expected, got {events:?}");
            };
            let wait = retry_in.unwrap();
            waits.push(wait.as_secs());
            now += wait;
            run_until(&mut reg, t0, now, &mut log);
            assert_eq!(log.sent.last().unwrap().0, (now - t0).as_millis() as u64);
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);

        // A 503 with Retry-After waits at least that long, but not beyond an hour.
        let mut reg = Registration::new(config(3600), t0).unwrap();
        let mut log = Log::default();
        drain(&mut reg, t0, t0, &mut log);
        let busy = reply(
            log.last_sent(),
            503,
            &[("Retry-After", "120 (maintenance)")],
        );
        feed(&mut reg, &busy, t0, t0, &mut log);
        assert_eq!(
            shapes(log.take_events()),
            [(0, failed(503, Some(secs(120))))]
        );
        run_until(&mut reg, t0, t0 + secs(120), &mut log);
        let huge = reply(log.last_sent(), 503, &[("Retry-After", "4294967295")]);
        feed(&mut reg, &huge, t0, t0 + secs(120), &mut log);
        assert_eq!(
            shapes(log.take_events()),
            [(120_000, failed(503, Some(secs(3600))))]
        );
    }

    #[test]
    fn a_wrong_password_fails_once_and_stops() {
        let t0 = Instant::now();
        let mut log = Log::default();
        let mut cfg = config(3600);
        cfg.credentials = Some(Credentials::new("alice", "guess"));
        let mut registrar = DigestAuthenticator::new("example.com", secs(30));
        let mut reg = Registration::new(cfg, t0).unwrap();
        drain(&mut reg, t0, t0, &mut log);
        // The registrar challenges every REGISTER whose credentials do not check out, with a
        // fresh nonce each time.
        for _ in 0..2 {
            let req = log.last_sent().clone();
            let ok = req
                .header("Authorization")
                .is_some_and(|a| registrar.verify(a, "REGISTER", t0, users).is_authorized());
            assert!(!ok);
            let challenge = registrar.challenge(t0, false);
            reg.handle_response(
                &reply(&req, 401, &[("WWW-Authenticate", challenge.as_str())]),
                t0,
            );
            drain(&mut reg, t0, t0, &mut log);
        }
        assert_eq!(log.sent.len(), 2, "one answer to the challenge, no loop");
        assert_eq!(shapes(log.take_events()), [(0, failed(401, None))]);
        assert_eq!(reg.state(), RegistrationState::Failed);
        run_until(&mut reg, t0, t0 + secs(24 * 3600), &mut log);
        assert_eq!(log.sent.len(), 2, "nothing more is sent");

        // Fixed credentials and a manual retry register.
        reg.set_credentials(Some(Credentials::new("alice", "s3cret")));
        reg.register_now(t0 + secs(10));
        drain(&mut reg, t0, t0 + secs(10), &mut log);
        let req = log.last_sent().clone();
        let challenge = registrar.challenge(t0 + secs(10), false);
        feed(
            &mut reg,
            &reply(&req, 401, &[("WWW-Authenticate", challenge.as_str())]),
            t0,
            t0 + secs(10),
            &mut log,
        );
        let req = log.last_sent().clone();
        assert!(registrar
            .verify(
                req.header("Authorization").unwrap(),
                "REGISTER",
                t0 + secs(10),
                users
            )
            .is_authorized());
        feed(
            &mut reg,
            &reply(&req, 200, &[]),
            t0,
            t0 + secs(10),
            &mut log,
        );
        assert_eq!(reg.state(), RegistrationState::Registered);

        // Without credentials a challenge is final too.
        let mut cfg = config(3600);
        cfg.credentials = None;
        let mut reg = Registration::new(cfg, t0).unwrap();
        let mut log = Log::default();
        drain(&mut reg, t0, t0, &mut log);
        let challenge = registrar.challenge(t0, false);
        let r = reply(
            log.last_sent(),
            401,
            &[("WWW-Authenticate", challenge.as_str())],
        );
        feed(&mut reg, &r, t0, t0, &mut log);
        assert_eq!(shapes(log.take_events()), [(0, failed(401, None))]);
    }

    #[test]
    fn unregister_sends_expires_zero_and_answers_one_challenge() {
        let t0 = Instant::now();
        let mut log = Log::default();
        let mut registrar = DigestAuthenticator::new("example.com", secs(30));
        let mut reg = Registration::new(config(3600), t0).unwrap();
        drain(&mut reg, t0, t0, &mut log);
        feed(
            &mut reg,
            &reply(log.last_sent(), 200, &[]),
            t0,
            t0,
            &mut log,
        );
        log.take_events();

        reg.unregister(t0 + secs(5));
        drain(&mut reg, t0, t0 + secs(5), &mut log);
        assert_eq!(reg.state(), RegistrationState::Unregistering);
        let bye = log.last_sent().clone();
        assert_eq!(bye.expires(), Some(0));
        assert_eq!(bye.contact().unwrap().param("expires"), Some(Some("0")));
        assert_eq!(bye.cseq().number, 2);
        let challenge = registrar.challenge(t0, false);
        feed(
            &mut reg,
            &reply(&bye, 401, &[("WWW-Authenticate", challenge.as_str())]),
            t0,
            t0 + secs(5),
            &mut log,
        );
        let authed = log.last_sent().clone();
        assert_eq!(authed.expires(), Some(0));
        assert!(registrar
            .verify(
                authed.header("Authorization").unwrap(),
                "REGISTER",
                t0 + secs(5),
                users
            )
            .is_authorized());
        feed(
            &mut reg,
            &reply(&authed, 200, &[]),
            t0,
            t0 + secs(5),
            &mut log,
        );
        assert_eq!(log.take_events(), [(5000, RegistrationEvent::Unregistered)]);
        assert!(reg.is_terminated());
        assert_eq!(reg.poll_timeout(), None);
        reg.unregister(t0 + secs(6));
        reg.register_now(t0 + secs(6));
        drain(&mut reg, t0, t0 + secs(6), &mut log);
        assert_eq!(log.sent.len(), 3, "nothing after the end");
    }

    #[test]
    fn unregister_ends_even_without_an_answer() {
        let t0 = Instant::now();
        let mut log = Log::default();
        let mut reg = Registration::new(config(3600), t0).unwrap();
        drain(&mut reg, t0, t0, &mut log);
        // Unregistering while the first REGISTER is still unanswered abandons it.
        reg.unregister(t0 + secs(1));
        drain(&mut reg, t0, t0 + secs(1), &mut log);
        assert_eq!(log.last_sent().expires(), Some(0));
        run_until(&mut reg, t0, t0 + secs(100), &mut log);
        assert!(log.sent.iter().skip(1).all(|(_, m)| m.expires() == Some(0)));
        assert_eq!(
            shapes(log.take_events()),
            [
                (33_000, failed(408, None)),
                (33_000, RegistrationEvent::Unregistered)
            ]
        );
        assert!(reg.is_terminated());
    }

    #[test]
    fn a_binding_whose_refreshes_fail_lapses() {
        let t0 = Instant::now();
        let mut log = Log::default();
        let mut reg = Registration::new(config(60), t0).unwrap();
        drain(&mut reg, t0, t0, &mut log);
        feed(
            &mut reg,
            &reply(log.last_sent(), 200, &[]),
            t0,
            t0,
            &mut log,
        );
        // The refresh at 30 s is never answered; timer F would only fire at 62 s.
        run_until(&mut reg, t0, t0 + secs(59), &mut log);
        assert_eq!(reg.state(), RegistrationState::Registered);
        run_until(&mut reg, t0, t0 + secs(60), &mut log);
        assert_eq!(reg.state(), RegistrationState::Registering);
        assert_eq!(reg.registered_until(), None);
        run_until(&mut reg, t0, t0 + secs(62), &mut log);
        assert_eq!(reg.state(), RegistrationState::Retrying);
        assert_eq!(
            shapes(log.take_events()),
            [
                (0, RegistrationEvent::Registered { expires: 60 }),
                (62_000, failed(408, Some(secs(1))))
            ]
        );
        run_until(&mut reg, t0, t0 + secs(63), &mut log);
        assert_eq!(reg.state(), RegistrationState::Registering);
    }

    #[test]
    fn bad_settings_are_refused() {
        let t0 = Instant::now();
        let bad = |f: &dyn Fn(&mut RegistrationConfig)| {
            let mut c = config(60);
            f(&mut c);
            Registration::new(c, t0).is_err()
        };
        assert!(bad(&|c| c.aor = "tel:+15551234".into()));
        assert!(bad(&|c| c.aor = "alice".into()));
        assert!(bad(&|c| c.contact = "not a uri".into()));
        assert!(bad(&|c| c.registrar = "http://example.com".into()));
        assert!(bad(&|c| c.outbound_proxy = Some("<tel:1>".into())));
        assert!(bad(&|c| c.sent_by = "bad host:5060".into()));
        assert!(!bad(&|_| {}));
    }

    #[test]
    fn several_registrations_keep_apart() {
        let t0 = Instant::now();
        let mut a = Registration::new(config(60), t0).unwrap();
        let mut cfg = config(60);
        cfg.aor = "sip:bob@example.org".into();
        let mut b = Registration::new(cfg, t0).unwrap();
        assert_ne!(a.call_id(), b.call_id());
        assert_eq!(b.aor(), "sip:bob@example.org");
        let req_a = parse(&a.poll_transmit().unwrap()).unwrap();
        let req_b = parse(&b.poll_transmit().unwrap()).unwrap();
        assert_eq!(req_b.request_uri().unwrap().as_str(), "sip:example.org");
        let ok_a = reply(&req_a, 200, &[]);
        assert!(!b.matches(&ok_a) && a.matches(&ok_a));
        assert!(!b.handle_response(&ok_a, t0));
        assert!(a.handle_response(&ok_a, t0));
        assert!(b.handle_response(&reply(&req_b, 200, &[]), t0));
    }
}
