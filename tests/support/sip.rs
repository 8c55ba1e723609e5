//! Helpers for the SIP backend tests: a backend on loopback, a raw UDP user agent that writes
//! SIP by hand (to send exactly what a test needs, malformed included), and synthetic pictures.

#[allow(unused_imports)]
pub use super::{h264_picture, wait_until};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use roomkit_media::backend::{
    CallState, DialOptions, SessionId, SipBackendConfig, SipVideoBackend, SipVoiceBackend,
};

/// A loopback backend configuration with its own RTP port range (tests run in parallel
/// processes, so every test passes a different `slot`).
pub fn config(slot: u16) -> SipBackendConfig {
    let start = 42000 + slot * 200;
    SipBackendConfig {
        local_sip_addr: "127.0.0.1:0".parse().unwrap(),
        local_rtp_ip: [127, 0, 0, 1].into(),
        rtp_port_start: start,
        rtp_port_end: start + 199,
        ..SipBackendConfig::default()
    }
}

/// Starts `be` (call it once the test's callbacks are registered) and returns its SIP address.
pub fn start(be: &SipVoiceBackend) -> SocketAddr {
    be.start().expect("the SIP backend starts")
}

/// The SIP address of a started backend.
pub fn sip_addr(be: &SipVoiceBackend) -> SocketAddr {
    be.local_sip_addr().expect("the SIP backend is started")
}

/// A started video backend on loopback that places calls (our UAC), with its own RTP ports
/// (`slot` as for [`config`], from a range apart from the answering backends').
pub fn dialer(slot: u16) -> SipVideoBackend {
    let start = 52000 + slot * 100;
    let be = SipVideoBackend::new(SipBackendConfig {
        local_sip_addr: "127.0.0.1:0".parse().unwrap(),
        local_rtp_ip: [127, 0, 0, 1].into(),
        rtp_port_start: start,
        rtp_port_end: start + 99,
        user: "roomkit-caller".into(),
        ..SipBackendConfig::default()
    })
    .unwrap();
    be.start().expect("the dialing backend starts");
    be
}

/// Dials `uri` and waits (5 s at most) until the call is answered; returns its session.
pub fn dial_ok(be: &SipVoiceBackend, uri: &str, options: DialOptions) -> SessionId {
    let s = be.dial(uri, options).expect("dial");
    let p = be.wait_call(s, Duration::from_secs(5)).expect("an answer");
    assert_eq!(p.state, CallState::Answered, "{p:?}");
    s
}

/// Waits until dialed call `s` has ended (the far end hung up, or we did).
pub fn wait_ended(be: &SipVoiceBackend, s: SessionId, timeout: Duration) -> bool {
    wait_until(timeout, || {
        be.call_state(s)
            .is_some_and(|p| p.state == CallState::Ended)
    })
}

/// A UDP socket that speaks SIP by hand.
pub struct RawUa {
    pub sock: UdpSocket,
    pub target: SocketAddr,
}

static SEQ: AtomicU32 = AtomicU32::new(1);

/// A fresh token for branches, tags and Call-IDs.
pub fn token() -> String {
    format!(
        "{}x{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// An SDP offer from 127.0.0.1: audio PCMU + telephone-event on `audio_port`, and when
/// `video` is `Some((port, lines))`, an `m=video` line with those payload lines.
pub fn offer(audio_port: u16, video: Option<(u16, &str, &str)>, direction: &str) -> String {
    let mut s = format!(
        "v=0\r\no=test 1 1 IN IP4 127.0.0.1\r\ns=test\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {audio_port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na={direction}\r\n"
    );
    if let Some((port, fmt, attrs)) = video {
        s.push_str(&format!(
            "m=video {port} RTP/AVP {fmt}\r\n{attrs}a={direction}\r\n"
        ));
    }
    s
}

/// H.264 video attributes for PT 96.
pub const H264_ATTRS: &str =
    "a=rtpmap:96 H264/90000\r\na=fmtp:96 profile-level-id=42e01f;packetization-mode=1\r\n";
/// VP9 only: a codec we never accept.
pub const VP9_ATTRS: &str = "a=rtpmap:98 VP9/90000\r\n";

/// One dialog's worth of identifiers, for building requests by hand.
#[derive(Clone)]
pub struct Leg {
    pub call_id: String,
    pub from_tag: String,
    pub to_tag: Option<String>,
    pub cseq: u32,
    pub branch: String,
}

impl Leg {
    pub fn new() -> Leg {
        Leg {
            call_id: format!("{}@test", token()),
            from_tag: token(),
            to_tag: None,
            cseq: 1,
            branch: format!("z9hG4bK{}", token()),
        }
    }
}

impl Default for Leg {
    fn default() -> Self {
        Leg::new()
    }
}

impl RawUa {
    pub fn new(target: SocketAddr) -> RawUa {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        RawUa { sock, target }
    }

    pub fn addr(&self) -> SocketAddr {
        self.sock.local_addr().unwrap()
    }

    pub fn send(&self, msg: &str) {
        self.sock.send_to(msg.as_bytes(), self.target).unwrap();
    }

    pub fn send_bytes(&self, msg: &[u8]) {
        self.sock.send_to(msg, self.target).unwrap();
    }

    /// A request in `leg` with `method`, extra header lines (each ending CRLF) and a body.
    pub fn request(&self, method: &str, leg: &Leg, extra: &str, body: &str) -> String {
        let me = self.addr();
        let to_tag = leg
            .to_tag
            .as_ref()
            .map_or(String::new(), |t| format!(";tag={t}"));
        let ctype = if body.is_empty() {
            String::new()
        } else {
            "Content-Type: application/sdp\r\n".to_string()
        };
        format!(
            "{method} sip:service@{t} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={b};rport\r\n\
             Max-Forwards: 70\r\nFrom: \"Test Caller\" <sip:alice@{me}>;tag={ft}\r\n\
             To: <sip:service@{t}>{to_tag}\r\nCall-ID: {cid}\r\nCSeq: {cs} {method}\r\n\
             Contact: <sip:alice@{me}>\r\n{extra}{ctype}Content-Length: {len}\r\n\r\n{body}",
            t = self.target,
            b = leg.branch,
            ft = leg.from_tag,
            cid = leg.call_id,
            cs = leg.cseq,
            len = body.len()
        )
    }

    /// Opens a call the usual way: INVITE with `sdp` (and `extra` header lines), the 200 (its
    /// To tag goes into `leg`), ACK. Returns the 200.
    pub fn establish(&self, leg: &mut Leg, extra: &str, sdp: &str) -> String {
        self.send(&self.request("INVITE", leg, extra, sdp));
        let ok = self.expect_status(200, "INVITE", Duration::from_secs(5));
        leg.to_tag = to_tag(&ok);
        self.send(&self.request("ACK", leg, "", ""));
        ok
    }

    /// The next datagram, or `None` after `timeout`.
    pub fn recv(&self, timeout: Duration) -> Option<String> {
        let end = Instant::now() + timeout;
        let mut buf = vec![0u8; 65536];
        while Instant::now() < end {
            if let Ok((n, _)) = self.sock.recv_from(&mut buf) {
                return Some(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        None
    }

    /// Waits for a response with `status` whose CSeq method is `method` (skipping others).
    pub fn expect_status(&self, status: u16, method: &str, timeout: Duration) -> String {
        let end = Instant::now() + timeout;
        let mut seen = Vec::new();
        while Instant::now() < end {
            if let Some(m) = self.recv(Duration::from_millis(100)) {
                if m.starts_with(&format!("SIP/2.0 {status} "))
                    && cseq_method(&m).as_deref() == Some(method)
                {
                    return m;
                }
                seen.push(m.lines().next().unwrap_or_default().to_string());
            }
        }
        panic!("no {status} for {method} within {timeout:?}; saw {seen:?}");
    }

    /// Waits for a request with `method`.
    pub fn expect_request(&self, method: &str, timeout: Duration) -> String {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Some(m) = self.recv(Duration::from_millis(100)) {
                if m.starts_with(&format!("{method} ")) {
                    return m;
                }
            }
        }
        panic!("no {method} within {timeout:?}");
    }

    /// Answers a request with 200, copying its headers.
    pub fn ok_to(&self, req: &str) {
        let mut out = String::from("SIP/2.0 200 OK\r\n");
        for l in req.lines() {
            let lower = l.to_ascii_lowercase();
            if ["via:", "from:", "to:", "call-id:", "cseq:"]
                .iter()
                .any(|h| lower.starts_with(h))
            {
                out.push_str(l);
                out.push_str("\r\n");
            }
        }
        out.push_str("Content-Length: 0\r\n\r\n");
        self.send(&out);
    }
}

/// A header's value from a message (first occurrence, case-insensitive name).
pub fn header(msg: &str, name: &str) -> Option<String> {
    let want = format!("{}:", name.to_ascii_lowercase());
    msg.lines()
        .find(|l| l.to_ascii_lowercase().starts_with(&want))
        .map(|l| l[want.len()..].trim().to_string())
}

/// The method in a message's CSeq.
pub fn cseq_method(msg: &str) -> Option<String> {
    header(msg, "CSeq").and_then(|v| v.split_whitespace().nth(1).map(str::to_string))
}

/// The To tag of a response.
pub fn to_tag(msg: &str) -> Option<String> {
    let to = header(msg, "To")?;
    to.split(';')
        .find_map(|p| p.trim().strip_prefix("tag=").map(str::to_string))
}

/// The body after the blank line.
pub fn body(msg: &str) -> &str {
    msg.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}
