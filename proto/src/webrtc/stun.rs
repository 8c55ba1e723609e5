//! A STUN Binding client (RFC 8489 section 6.2.1, over UDP) for server-reflexive candidates: one
//! request to a STUN server, answered with the address the server saw us from
//! (XOR-MAPPED-ADDRESS). Sans-IO: the caller passes the transaction id (random bytes it made),
//! the time and every datagram it received, and sends what [`StunBinding::poll_transmit`] gives.
//!
//! `is`'s STUN codec is not used here: it reads ICE connectivity checks, and refuses a Binding
//! response without MESSAGE-INTEGRITY, which a plain STUN server never adds (there are no
//! credentials). So the request (a bare 20-byte header, as RFC 8489 allows) and the response are
//! read and written here; no attribute is trusted beyond the mapped address.
//!
//! Retransmissions: RFC 8489 starts at an RTO of 500 ms and sends up to 7 times (39.5 s), which
//! is for a client with nothing else to do. A call waits on this before its SDP can be written,
//! so the schedule is short and bounded by [`BindingConfig`]: by default 3 sends (at 0, 100 and
//! 300 ms) and an answer no later than 500 ms after the first. A server that does not answer in
//! that time leaves the stream with its host candidate only.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

/// The STUN magic cookie (RFC 8489 section 5).
const MAGIC: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
const HEADER_LEN: usize = 20;
const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;
const BINDING_ERROR: u16 = 0x0111;
const ATTR_MAPPED_ADDRESS: u16 = 0x0001;
const ATTR_ERROR_CODE: u16 = 0x0009;
const ATTR_XOR_MAPPED_ADDRESS: u16 = 0x0020;
/// The most attributes read from one response (a real server sends about six).
const MAX_ATTRIBUTES: usize = 32;

/// How long and how often a Binding request is tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BindingConfig {
    /// The wait after the first send; each later wait doubles.
    pub first_rto: Duration,
    /// The most requests sent (the first included).
    pub max_sends: u32,
    /// No answer this long after the first send: the binding has failed.
    pub budget: Duration,
}

impl Default for BindingConfig {
    fn default() -> BindingConfig {
        BindingConfig {
            first_rto: Duration::from_millis(100),
            max_sends: 3,
            budget: Duration::from_millis(500),
        }
    }
}

/// Where a binding stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindingOutcome {
    /// Waiting for an answer.
    Pending,
    /// The server saw us from this address: our server-reflexive candidate.
    Mapped(SocketAddr),
    /// No answer within the budget.
    TimedOut,
    /// The server answered with an error response (its ERROR-CODE; 0 when it had none).
    Refused(u16),
}

/// What [`StunBinding::handle_datagram`] did with a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindingInput {
    /// Our server's answer to our request: the outcome is settled.
    Answer,
    /// Not for us (another sender, another transaction, not a Binding response, a malformed
    /// message, or an answer after the outcome was settled): dropped and counted.
    Dropped,
}

/// What a binding sent and dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BindingCounters {
    /// Requests sent (retransmissions included).
    pub requests_sent: u64,
    /// Datagrams dropped (see [`BindingInput::Dropped`]).
    pub dropped: u64,
}

/// One STUN Binding transaction with one server.
#[derive(Clone, Debug)]
pub struct StunBinding {
    server: SocketAddr,
    transaction_id: [u8; 12],
    config: BindingConfig,
    /// When the first request goes (or went) out.
    started: Instant,
    /// When the next request goes out; `None` once none is left to send.
    next_send: Option<Instant>,
    sends: u32,
    outcome: BindingOutcome,
    counters: BindingCounters,
}

impl StunBinding {
    /// A binding with `server`; its first request is due at `now`. `transaction_id` must be
    /// random (RFC 8489 section 6: it is what tells the server's answer from a forged one).
    pub fn new(
        server: SocketAddr,
        transaction_id: [u8; 12],
        config: BindingConfig,
        now: Instant,
    ) -> StunBinding {
        StunBinding {
            server,
            transaction_id,
            config,
            started: now,
            next_send: (config.max_sends > 0).then_some(now),
            sends: 0,
            outcome: BindingOutcome::Pending,
            counters: BindingCounters::default(),
        }
    }

    /// The server asked.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// The request to send to [`StunBinding::server`] now, if one is due.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<[u8; HEADER_LEN]> {
        self.handle_timeout(now);
        if self.outcome != BindingOutcome::Pending || self.next_send.is_none_or(|t| now < t) {
            return None;
        }
        self.sends += 1;
        self.counters.requests_sent += 1;
        self.next_send = (self.sends < self.config.max_sends).then(|| {
            let doubled = 2u32.saturating_pow(self.sends - 1);
            now + (self.config.first_rto)
                .checked_mul(doubled)
                .unwrap_or(self.config.budget)
        });
        Some(encode_request(&self.transaction_id))
    }

    /// When [`StunBinding::handle_timeout`] or [`StunBinding::poll_transmit`] next has work:
    /// the next send or the end of the budget. `None` once the outcome is settled.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.outcome != BindingOutcome::Pending {
            return None;
        }
        let deadline = self.started + self.config.budget;
        Some(self.next_send.map_or(deadline, |t| t.min(deadline)))
    }

    /// Time passes: past the budget without an answer, the binding has timed out.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.outcome == BindingOutcome::Pending
            && now.saturating_duration_since(self.started) >= self.config.budget
        {
            self.outcome = BindingOutcome::TimedOut;
            self.next_send = None;
        }
    }

    /// A datagram that arrived on the socket the requests went from. Only a well-formed Binding
    /// response from the server with our transaction id settles the outcome.
    pub fn handle_datagram(&mut self, from: SocketAddr, datagram: &[u8]) -> BindingInput {
        let answer = (from == self.server && self.outcome == BindingOutcome::Pending)
            .then(|| decode_response(datagram, &self.transaction_id))
            .flatten();
        match answer {
            Some(outcome) => {
                self.outcome = outcome;
                self.next_send = None;
                BindingInput::Answer
            }
            None => {
                self.counters.dropped += 1;
                BindingInput::Dropped
            }
        }
    }

    /// Where the binding stands.
    pub fn outcome(&self) -> BindingOutcome {
        self.outcome
    }

    /// Requests sent and datagrams dropped so far.
    pub fn counters(&self) -> BindingCounters {
        self.counters
    }
}

/// A Binding request with no attributes (RFC 8489 section 5: type, length 0, cookie, id).
fn encode_request(transaction_id: &[u8; 12]) -> [u8; HEADER_LEN] {
    let mut b = [0u8; HEADER_LEN];
    b[..2].copy_from_slice(&BINDING_REQUEST.to_be_bytes());
    b[4..8].copy_from_slice(&MAGIC);
    b[8..].copy_from_slice(transaction_id);
    b
}

/// Reads a Binding response to our transaction: `Mapped` from a success response (its
/// XOR-MAPPED-ADDRESS, or the old MAPPED-ADDRESS of an RFC 3489 server), `Refused` from an error
/// response. `None` for anything else or anything malformed.
fn decode_response(b: &[u8], transaction_id: &[u8; 12]) -> Option<BindingOutcome> {
    let header = b.get(..HEADER_LEN)?;
    let kind = u16::from_be_bytes([header[0], header[1]]);
    let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if header[4..8] != MAGIC
        || header[8..] != transaction_id[..]
        || len % 4 != 0
        || b.len() != HEADER_LEN + len
    {
        return None;
    }
    let (mut xor_mapped, mut mapped, mut error) = (None, None, None);
    let mut rest = &b[HEADER_LEN..];
    for _ in 0..MAX_ATTRIBUTES {
        if rest.is_empty() {
            break;
        }
        let head = rest.get(..4)?;
        let typ = u16::from_be_bytes([head[0], head[1]]);
        let alen = usize::from(u16::from_be_bytes([head[2], head[3]]));
        let value = rest.get(4..4 + alen)?;
        // Values are padded to 4 bytes; the padding may be missing only at the very end.
        let padded = (4 + alen + 3) & !3;
        rest = rest.get(padded..).unwrap_or(&[]);
        match typ {
            ATTR_XOR_MAPPED_ADDRESS if xor_mapped.is_none() => {
                xor_mapped = read_address(value, Some(transaction_id));
            }
            ATTR_MAPPED_ADDRESS if mapped.is_none() => mapped = read_address(value, None),
            ATTR_ERROR_CODE if error.is_none() && value.len() >= 4 => {
                error = Some(u16::from(value[2] & 0x07) * 100 + u16::from(value[3]));
            }
            _ => {}
        }
    }
    match kind {
        BINDING_SUCCESS => xor_mapped.or(mapped).map(BindingOutcome::Mapped),
        BINDING_ERROR => Some(BindingOutcome::Refused(error.unwrap_or(0))),
        _ => None,
    }
}

/// A (XOR-)MAPPED-ADDRESS value: reserved byte, family, port, address. With `xor`, the port
/// and address are XORed with the cookie (and the transaction id for IPv6's last 12 bytes).
/// The TURN client (`turn.rs`) reads its XOR-RELAYED- and XOR-PEER-ADDRESS values with it too.
pub(super) fn read_address(v: &[u8], xor: Option<&[u8; 12]>) -> Option<SocketAddr> {
    let mut key = [0u8; 16];
    if let Some(id) = xor {
        key[..4].copy_from_slice(&MAGIC);
        key[4..].copy_from_slice(id);
    }
    let port = u16::from_be_bytes([v.get(2)? ^ key[0], v.get(3)? ^ key[1]]);
    let ip = match v[1] {
        0x01 if v.len() == 8 => {
            let mut a = [0u8; 4];
            for (i, o) in a.iter_mut().enumerate() {
                *o = v[4 + i] ^ key[i];
            }
            IpAddr::V4(Ipv4Addr::from(a))
        }
        0x02 if v.len() == 20 => {
            let mut a = [0u8; 16];
            for (i, o) in a.iter_mut().enumerate() {
                *o = v[4 + i] ^ key[i];
            }
            IpAddr::V6(Ipv6Addr::from(a))
        }
        _ => return None,
    };
    // A server that maps us to nowhere is not believed.
    (port != 0 && !ip.is_unspecified()).then_some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 5769 section 2.2, the IPv4 sample response (its transaction id, 192.0.2.1:32853).
    const RFC5769_V4: [u8; 80] = [
        0x01, 0x01, 0x00, 0x3c, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6,
        0x86, 0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76,
        0x65, 0x63, 0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1,
        0x12, 0xa6, 0x43, 0x00, 0x08, 0x00, 0x14, 0x2b, 0x91, 0xf5, 0x99, 0xfd, 0x9e, 0x90, 0xc3,
        0x8c, 0x74, 0x89, 0xf9, 0x2a, 0xf9, 0xba, 0x53, 0xf0, 0x6b, 0xe7, 0xd7, 0x80, 0x28, 0x00,
        0x04, 0xc0, 0x7d, 0x4c, 0x96,
    ];
    /// RFC 5769 section 2.3, the IPv6 sample response (2001:db8:1234:5678:11:2233:4455:6677
    /// port 32853).
    const RFC5769_V6: [u8; 92] = [
        0x01, 0x01, 0x00, 0x48, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6,
        0x86, 0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76,
        0x65, 0x63, 0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x14, 0x00, 0x02, 0xa1, 0x47, 0x01,
        0x13, 0xa9, 0xfa, 0xa5, 0xd3, 0xf1, 0x79, 0xbc, 0x25, 0xf4, 0xb5, 0xbe, 0xd2, 0xb9, 0xd9,
        0x00, 0x08, 0x00, 0x14, 0xa3, 0x82, 0x95, 0x4e, 0x4b, 0xe6, 0x7b, 0xf1, 0x17, 0x84, 0xc9,
        0x7c, 0x82, 0x92, 0xc2, 0x75, 0xbf, 0xe3, 0xed, 0x41, 0x80, 0x28, 0x00, 0x04, 0xc8, 0xfb,
        0x0b, 0x4c,
    ];
    const RFC5769_ID: [u8; 12] = [
        0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
    ];

    fn server() -> SocketAddr {
        "198.51.100.1:3478".parse().unwrap()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_request_is_a_bare_binding_header_with_our_id() {
        let t0 = Instant::now();
        let mut b = StunBinding::new(server(), RFC5769_ID, BindingConfig::default(), t0);
        let req = b.poll_transmit(t0).unwrap();
        assert_eq!(&req[..8], &[0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42]);
        assert_eq!(&req[8..], &RFC5769_ID);
        assert!(b.poll_transmit(t0).is_none(), "one send per due time");
    }

    #[test]
    fn rfc5769_responses_give_the_mapped_address() {
        for (bytes, want) in [
            (&RFC5769_V4[..], "192.0.2.1:32853"),
            (
                &RFC5769_V6[..],
                "[2001:db8:1234:5678:11:2233:4455:6677]:32853",
            ),
        ] {
            let t0 = Instant::now();
            let mut b = StunBinding::new(server(), RFC5769_ID, BindingConfig::default(), t0);
            b.poll_transmit(t0).unwrap();
            assert_eq!(b.handle_datagram(server(), bytes), BindingInput::Answer);
            assert_eq!(b.outcome(), BindingOutcome::Mapped(want.parse().unwrap()));
            assert_eq!(b.poll_timeout(), None);
            assert!(
                b.poll_transmit(t0 + ms(200)).is_none(),
                "settled: no more sends"
            );
            // The same answer again (a retransmission's) is dropped, the outcome kept.
            assert_eq!(b.handle_datagram(server(), bytes), BindingInput::Dropped);
            assert_eq!(b.counters().dropped, 1);
        }
    }

    #[test]
    fn answers_to_other_transactions_or_from_other_senders_are_dropped() {
        let t0 = Instant::now();
        let mut id = RFC5769_ID;
        id[11] ^= 1;
        let mut b = StunBinding::new(server(), id, BindingConfig::default(), t0);
        b.poll_transmit(t0).unwrap();
        assert_eq!(
            b.handle_datagram(server(), &RFC5769_V4),
            BindingInput::Dropped
        );
        let mut b = StunBinding::new(server(), RFC5769_ID, BindingConfig::default(), t0);
        let elsewhere = "198.51.100.9:3478".parse().unwrap();
        assert_eq!(
            b.handle_datagram(elsewhere, &RFC5769_V4),
            BindingInput::Dropped
        );
        assert_eq!(b.outcome(), BindingOutcome::Pending);
        assert_eq!(b.counters().dropped, 1);
    }

    #[test]
    fn an_error_response_refuses() {
        let t0 = Instant::now();
        let mut b = StunBinding::new(server(), RFC5769_ID, BindingConfig::default(), t0);
        let mut m = vec![0x01, 0x11, 0x00, 0x08];
        m.extend_from_slice(&MAGIC);
        m.extend_from_slice(&RFC5769_ID);
        m.extend_from_slice(&[0x00, 0x09, 0x00, 0x04, 0x00, 0x00, 0x04, 0x00]);
        assert_eq!(b.handle_datagram(server(), &m), BindingInput::Answer);
        assert_eq!(b.outcome(), BindingOutcome::Refused(400));
    }

    #[test]
    fn retransmits_double_and_the_budget_ends_it() {
        let t0 = Instant::now();
        let mut b = StunBinding::new(server(), RFC5769_ID, BindingConfig::default(), t0);
        let mut sent_at = Vec::new();
        let mut now = t0;
        // Virtual time, driven by poll_timeout as the engine does; bounded.
        for _ in 0..20 {
            if b.poll_transmit(now).is_some() {
                sent_at.push(now - t0);
            }
            match b.poll_timeout() {
                Some(t) => now = t,
                None => break,
            }
            b.handle_timeout(now);
        }
        assert_eq!(sent_at, vec![ms(0), ms(100), ms(300)]);
        assert_eq!(b.outcome(), BindingOutcome::TimedOut);
        assert_eq!(now - t0, ms(500));
        assert_eq!(b.counters().requests_sent, 3);
        // A late answer changes nothing.
        assert_eq!(
            b.handle_datagram(server(), &RFC5769_V4),
            BindingInput::Dropped
        );
        assert_eq!(b.outcome(), BindingOutcome::TimedOut);
    }

    #[test]
    fn malformed_and_truncated_responses_never_panic_and_are_dropped() {
        let t0 = Instant::now();
        let mut b = StunBinding::new(server(), RFC5769_ID, BindingConfig::default(), t0);
        // Every prefix, and every single-byte change, of a valid response.
        for n in 0..RFC5769_V4.len() {
            assert_eq!(
                b.handle_datagram(server(), &RFC5769_V4[..n]),
                BindingInput::Dropped
            );
        }
        for i in 0..RFC5769_V4.len() {
            for x in [0x01u8, 0x80, 0xff] {
                let mut m = RFC5769_V4;
                m[i] ^= x;
                let mut b = StunBinding::new(server(), RFC5769_ID, BindingConfig::default(), t0);
                let _ = b.handle_datagram(server(), &m);
                if let BindingOutcome::Mapped(a) = b.outcome() {
                    assert!(a.port() != 0 && !a.ip().is_unspecified());
                }
            }
        }
        // An attribute whose length runs past the message.
        let mut m = RFC5769_V4;
        m[22] = 0x7f;
        let mut b = StunBinding::new(server(), RFC5769_ID, BindingConfig::default(), t0);
        assert_eq!(b.handle_datagram(server(), &m), BindingInput::Dropped);
        // A success response without any mapped address.
        let mut m = vec![0x01, 0x01, 0x00, 0x00];
        m.extend_from_slice(&MAGIC);
        m.extend_from_slice(&RFC5769_ID);
        assert_eq!(b.handle_datagram(server(), &m), BindingInput::Dropped);
        assert_eq!(b.outcome(), BindingOutcome::Pending);
    }
}
