//! Our ICE agent (RFC 8445): str0m's sans-IO agent (`is`) behind the contract of our other
//! cores, plus consent freshness (RFC 7675), which that agent does not track by itself.
//!
//! Inputs: [`IceAgent::handle_input`] (a datagram the RFC 7983 classifier called STUN, with
//! the addresses it came from and to), [`IceAgent::handle_timeout`]. Outputs, drained after
//! every input: [`IceAgent::poll_transmit`], [`IceAgent::poll_event`], then
//! [`IceAgent::poll_timeout`]. Time never goes backwards; nothing here reads a clock.
//!
//! Full agents run checks and keep checking the selected pair; a lite agent (servers, RFC 8445
//! §2.5) only answers. Consent: a full agent holds it while its checks on the selected pair are
//! answered, a lite agent while the peer's checks keep arriving on it; 30 s without that
//! ([`CONSENT_TIMEOUT`]) and [`IceEvent::ConsentExpired`] is reported once, after which
//! [`IceAgent::may_send`] is false: media must stop (RFC 7675 §5.1).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use is::stun::{StunMessage, StunPacket};
use is::{Candidate, IceAgentEvent, IceConnectionState, IceCreds, Protocol};

use crate::sdp::IceCredentials;

/// RFC 7675 §5.1: consent is lost 30 s after the last authenticated sign of it.
pub const CONSENT_TIMEOUT: Duration = Duration::from_secs(30);

/// What an agent is configured with.
#[derive(Clone, Debug)]
pub struct IceConfig {
    /// ICE-lite (RFC 8445 §2.5): answer checks, never send them. Always controlled.
    pub lite: bool,
    /// The controlling side nominates (the offerer, unless it is lite and the peer is not).
    pub controlling: bool,
    /// Our `a=ice-ufrag`/`a=ice-pwd`; [`IceConfig::random_credentials`] makes fresh ones.
    pub credentials: IceCredentials,
}

impl IceConfig {
    /// Fresh random credentials (RFC 8445 §5.3: at least 24 bits of ufrag, 128 of password).
    pub fn random_credentials() -> IceCredentials {
        let c = IceCreds::new();
        IceCredentials {
            ufrag: c.ufrag,
            pwd: c.pass,
        }
    }
}

/// The pair media goes on: our address (a host candidate's, or the base of a reflexive one)
/// and the peer's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SelectedPair {
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

/// The agent's connection state, as the application sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IceState {
    /// No checks yet (no remote credentials or candidates).
    New,
    Checking,
    /// A pair is selected and usable.
    Connected,
    /// Checks on every pair went unanswered; it may come back.
    Disconnected,
}

/// What the application hears from an agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IceEvent {
    State(IceState),
    /// Media goes on this pair from now on (it may change later, as nomination moves).
    Selected(SelectedPair),
    /// RFC 7675: no consent for [`CONSENT_TIMEOUT`]; media must stop.
    ConsentExpired,
}

/// A datagram the agent wants sent: from `source` (one of our candidates' bases) to
/// `destination`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IceTransmit {
    pub source: SocketAddr,
    pub destination: SocketAddr,
    pub payload: Vec<u8>,
}

/// What the agent did with a datagram it was handed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IceInput {
    /// A check or a response for us, authenticated.
    Accepted,
    /// Not a STUN message we can read (counted by the caller as a drop).
    Malformed,
    /// Readable, but not for us or not authentic (wrong credentials, bad integrity, a method
    /// we do not serve).
    Refused,
}

/// Counters of what arrived, for the stream's statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IceCounters {
    pub accepted: u64,
    pub malformed: u64,
    pub refused: u64,
}

/// One ICE agent for one bundled transport (one component: RTP and RTCP are muxed).
#[derive(Debug)]
pub struct IceAgent {
    agent: is::IceAgent,
    lite: bool,
    credentials: IceCredentials,
    state: IceState,
    selected: Option<SelectedPair>,
    /// When consent was last seen on the selected pair; `None` before a pair is selected.
    consent_at: Option<Instant>,
    consent_expired: bool,
    events: VecDeque<IceEvent>,
    counters: IceCounters,
    now: Option<Instant>,
}

impl IceAgent {
    pub fn new(config: IceConfig) -> IceAgent {
        let mut agent = is::IceAgent::new(IceCreds {
            ufrag: config.credentials.ufrag.clone(),
            pass: config.credentials.pwd.clone(),
        });
        agent.set_ice_lite(config.lite);
        agent.set_controlling(config.controlling && !config.lite);
        IceAgent {
            agent,
            lite: config.lite,
            credentials: config.credentials,
            state: IceState::New,
            selected: None,
            consent_at: None,
            consent_expired: false,
            events: VecDeque::new(),
            counters: IceCounters::default(),
            now: None,
        }
    }

    /// Our credentials, for `a=ice-ufrag`/`a=ice-pwd`.
    pub fn local_credentials(&self) -> &IceCredentials {
        &self.credentials
    }

    pub fn is_lite(&self) -> bool {
        self.lite
    }

    pub fn controlling(&self) -> bool {
        self.agent.controlling()
    }

    /// Adds a host candidate on `addr` (UDP); returns its `a=candidate` line value (without
    /// `a=`), or `None` if the agent refused it (a duplicate, an unusable address).
    pub fn add_host_candidate(&mut self, addr: SocketAddr) -> Option<Candidate> {
        let c = Candidate::host(addr, Protocol::Udp).ok()?;
        self.agent.add_local_candidate(c).cloned()
    }

    /// Adds a server-reflexive candidate: `addr` as a STUN server saw us, on the host address
    /// `base` (full agents only; a lite agent has host candidates alone).
    pub fn add_srflx_candidate(&mut self, addr: SocketAddr, base: SocketAddr) -> Option<Candidate> {
        let c = Candidate::server_reflexive(addr, base, Protocol::Udp).ok()?;
        self.agent.add_local_candidate(c).cloned()
    }

    /// Adds a relayed candidate: `addr` the TURN server allocated for us, reached from our
    /// host address `base` (full agents only). Checks from it leave with `addr` as their
    /// source: the caller wraps them for the TURN server.
    pub fn add_relayed_candidate(
        &mut self,
        addr: SocketAddr,
        base: SocketAddr,
    ) -> Option<Candidate> {
        let c = Candidate::relayed(addr, base, Protocol::Udp).ok()?;
        self.agent.add_local_candidate(c).cloned()
    }

    /// Our candidates, for the SDP.
    pub fn local_candidates(&self) -> Vec<Candidate> {
        self.agent.local_candidates().collect()
    }

    /// The peer's credentials and candidates, from its description (`sdp::TransportAttrs`).
    pub fn set_remote(&mut self, credentials: &IceCredentials, candidates: &[Candidate]) {
        self.agent.set_remote_credentials(IceCreds {
            ufrag: credentials.ufrag.clone(),
            pass: credentials.pwd.clone(),
        });
        for c in candidates {
            self.add_remote_candidate(c.clone());
        }
    }

    /// One more remote candidate (trickle, RFC 8838).
    pub fn add_remote_candidate(&mut self, candidate: Candidate) {
        if candidate.proto() == Protocol::Udp {
            self.agent.add_remote_candidate(candidate);
        }
    }

    /// A datagram that came from `source` to our `destination`, classified as STUN.
    pub fn handle_input(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        datagram: &[u8],
    ) -> IceInput {
        let now = self.advance(now);
        let Ok(message) = StunMessage::parse(datagram) else {
            self.counters.malformed += 1;
            return IceInput::Malformed;
        };
        let consent = if self.lite {
            message.is_binding_request()
        } else {
            message.is_successful_binding_response()
        };
        let packet = StunPacket {
            proto: Protocol::Udp,
            source,
            destination,
            message,
        };
        if !self.agent.handle_packet(now, packet) {
            self.counters.refused += 1;
            return IceInput::Refused;
        }
        self.counters.accepted += 1;
        self.collect(now);
        // An authenticated check or answer on the pair media uses renews consent.
        if consent
            && !self.consent_expired
            && self
                .selected
                .is_some_and(|p| p.remote == source && p.local == destination)
        {
            self.consent_at = Some(now);
        }
        IceInput::Accepted
    }

    /// Runs the agent's timers (checks, retransmissions, keep-alives) and consent.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.advance(now);
        self.agent.handle_timeout(now);
        self.collect(now);
        if let Some(at) = self.consent_at {
            if !self.consent_expired && now >= at + CONSENT_TIMEOUT {
                self.consent_expired = true;
                self.events.push_back(IceEvent::ConsentExpired);
            }
        }
    }

    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<IceTransmit> {
        let t = self.agent.poll_transmit()?;
        Some(IceTransmit {
            source: t.source,
            destination: t.destination,
            payload: t.contents.to_vec(),
        })
    }

    #[must_use]
    pub fn poll_event(&mut self) -> Option<IceEvent> {
        self.events.pop_front()
    }

    /// When to call [`IceAgent::handle_timeout`] next; `None` before the first call of it.
    #[must_use]
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        let agent = self.agent.poll_timeout();
        let consent = match (self.consent_at, self.consent_expired) {
            (Some(at), false) => Some(at + CONSENT_TIMEOUT),
            _ => None,
        };
        match (agent, consent) {
            (Some(a), Some(c)) => Some(a.min(c)),
            (a, c) => a.or(c),
        }
    }

    pub fn state(&self) -> IceState {
        self.state
    }

    /// The pair media goes on, once one is selected.
    pub fn selected(&self) -> Option<SelectedPair> {
        self.selected
    }

    /// Whether media may be sent: a pair is selected and consent holds (RFC 7675).
    pub fn may_send(&self) -> bool {
        self.selected.is_some() && !self.consent_expired
    }

    pub fn counters(&self) -> IceCounters {
        self.counters
    }

    /// Time never goes backwards: an earlier `now` than one already seen is taken as that one.
    fn advance(&mut self, now: Instant) -> Instant {
        let now = self.now.map_or(now, |seen| seen.max(now));
        self.now = Some(now);
        now
    }

    /// Turns the agent's events into ours.
    fn collect(&mut self, now: Instant) {
        while let Some(e) = self.agent.poll_event() {
            match e {
                IceAgentEvent::IceConnectionStateChange(s) => {
                    let state = match s {
                        IceConnectionState::New => IceState::New,
                        IceConnectionState::Checking => IceState::Checking,
                        IceConnectionState::Connected | IceConnectionState::Completed => {
                            IceState::Connected
                        }
                        IceConnectionState::Disconnected => IceState::Disconnected,
                    };
                    if state != self.state {
                        self.state = state;
                        self.events.push_back(IceEvent::State(state));
                    }
                }
                IceAgentEvent::NominatedSend {
                    source,
                    destination,
                    ..
                } => {
                    let pair = SelectedPair {
                        local: source,
                        remote: destination,
                    };
                    if self.selected != Some(pair) {
                        self.selected = Some(pair);
                        // Nomination itself was an authenticated exchange on the pair.
                        if !self.consent_expired {
                            self.consent_at = Some(now);
                        }
                        self.events.push_back(IceEvent::Selected(pair));
                    }
                }
                IceAgentEvent::IceRestart(_) | IceAgentEvent::DiscoveredRecv { .. } => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use is::Sha1HmacProvider as _;

    /// The bytes of an RFC 5769 listing (hex pairs, blanks ignored).
    fn hex(text: &str) -> Vec<u8> {
        text.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    /// RFC 5769 §2: the short-term password of the first three vectors.
    const PASSWORD: &[u8] = b"VOkJxbRl1RmTxUk/WvJxBt";

    fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 20] {
        is::DefaultSha1HmacProvider.sha1_hmac(key, parts)
    }

    /// RFC 5769 §2.1, §2.2 and §2.3 read through the agent's STUN parser: integrity checks with
    /// the vectors' password and fails with another, and the XOR-mapped addresses decode to
    /// what the RFC states.
    #[test]
    fn rfc_5769_vectors() {
        let request = hex("00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
             80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
             00 24 00 04 6e 00 01 ff 80 29 00 08 93 2f f9 b1 51 26 3b 36
             00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
             00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
             80 28 00 04 e5 7a 3b cf");
        let m = StunMessage::parse(&request).unwrap();
        assert!(m.is_binding_request());
        assert_eq!(m.split_username(), Some(("evtj", "h6vY")));
        assert_eq!(m.prio(), Some(0x6e00_01ff));
        assert_eq!(m.ice_controlled(), Some(0x932f_f9b1_5126_3b36));
        // (The agent does not keep the SOFTWARE attribute: it reads what ICE needs.)
        assert!(m.verify(PASSWORD, hmac));
        assert!(!m.verify(b"VOkJxbRl1RmTxUk/WvJxBu", hmac));

        let v4 = hex("01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
             80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
             00 20 00 08 00 01 a1 47 e1 12 a6 43
             00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7
             80 28 00 04 c0 7d 4c 96");
        let m = StunMessage::parse(&v4).unwrap();
        assert!(m.is_successful_binding_response());
        assert_eq!(m.mapped_address(), Some("192.0.2.1:32853".parse().unwrap()));
        assert!(m.verify(PASSWORD, hmac));

        let v6 = hex("01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
             80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
             00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9
             00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41
             80 28 00 04 c8 fb 0b 4c");
        let m = StunMessage::parse(&v6).unwrap();
        assert_eq!(
            m.mapped_address(),
            Some(
                "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
                    .parse()
                    .unwrap()
            )
        );
        assert!(m.verify(PASSWORD, hmac));

        // One bit changed in the signed part: the integrity check fails (or the fingerprint
        // refuses the message outright).
        let mut bad = request.clone();
        bad[30] ^= 0x01;
        if let Ok(m) = StunMessage::parse(&bad) {
            assert!(!m.verify(PASSWORD, hmac));
        }
    }

    /// Garbage, truncations and a well-formed check with someone else's credentials are
    /// counted, never accepted, never a panic.
    #[test]
    fn bad_input_is_counted_not_accepted() {
        let now = Instant::now();
        let mut agent = IceAgent::new(IceConfig {
            lite: true,
            controlling: false,
            credentials: IceConfig::random_credentials(),
        });
        let here: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let there: SocketAddr = "10.0.0.2:6000".parse().unwrap();
        agent.add_host_candidate(here).unwrap();
        agent.handle_timeout(now);
        let request = hex("00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
             80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
             00 24 00 04 6e 00 01 ff 80 29 00 08 93 2f f9 b1 51 26 3b 36
             00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
             00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
             80 28 00 04 e5 7a 3b cf");
        for n in 0..request.len() {
            assert_eq!(
                agent.handle_input(now, there, here, &request[..n]),
                IceInput::Malformed
            );
        }
        assert_eq!(
            agent.handle_input(now, there, here, &request),
            IceInput::Refused
        );
        let c = agent.counters();
        assert_eq!(
            (c.accepted, c.malformed, c.refused),
            (0, request.len() as u64, 1)
        );
        assert_eq!(agent.selected(), None);
        assert!(!agent.may_send());
    }
}
