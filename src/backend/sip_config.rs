//! The settings and the call-screening types of the SIP backends, shared by the backend handle
//! (`sip.rs`) and the user agent core that runs on the SIP thread (`sip_core.rs`).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::resilience::ResilienceConfig;
use crate::codec::voice::AppRate;
use crate::engine::dispatch::DEFAULT_QUEUE_LEN;
use crate::frame::{Delivery, VideoCodec};
use crate::sdp::AudioCodec;
use crate::sip::transaction::Timers;

/// TLS settings of a SIP backend (SIP over TLS, `sips:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipTlsConfig {
    /// Our certificate chain (PEM), for the TLS listener.
    pub cert: Option<PathBuf>,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// The CA certificates (PEM) the servers we call must chain to; `None`: the system's roots.
    pub ca: Option<PathBuf>,
    /// Check the certificates of the servers we call (default). **Off is unsafe**: any
    /// certificate for any name is accepted, which protects from nothing but passive
    /// listening; for tests against self-signed peers only.
    pub verify: bool,
}

impl Default for SipTlsConfig {
    fn default() -> Self {
        SipTlsConfig {
            cert: None,
            key: None,
            ca: None,
            verify: true,
        }
    }
}

/// How long TCP and TLS connections may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamTimeouts {
    /// A connection without traffic either way for this long is closed (default 10 min).
    pub idle: Duration,
    /// A TLS handshake, or a TCP connect, must finish within this (default 10 s).
    pub handshake: Duration,
    /// A message, once begun, must arrive whole within this (default 30 s): a slow-loris
    /// peer is cut.
    pub message: Duration,
    /// RFC 5626 §4.4.1 keep-alives on the connections this backend opens (to a registrar, a
    /// proxy, a callee): a CRLF CRLF ping about this often (each connection picks 80–100 %
    /// of it), default 120 s as the RFC recommends; zero turns them off. Connections we
    /// accepted are the peer's to keep alive (their pings are always answered).
    pub keepalive: Duration,
    /// A ping not answered (any bytes back count) within this closes the connection as dead
    /// (default 10 s, RFC 5626): what waits on it fails at once, and a registration
    /// re-registers on a new connection.
    pub keepalive_pong: Duration,
}

impl Default for StreamTimeouts {
    fn default() -> Self {
        StreamTimeouts {
            idle: Duration::from_secs(600),
            handshake: Duration::from_secs(10),
            message: Duration::from_secs(30),
            keepalive: crate::sip::keepalive::DEFAULT_INTERVAL,
            keepalive_pong: crate::sip::keepalive::DEFAULT_PONG_TIMEOUT,
        }
    }
}

/// Settings of a SIP backend. `Default` gives roomkit's defaults where they make sense here.
#[derive(Debug, Clone)]
pub struct SipBackendConfig {
    /// Where the SIP socket binds (UDP). Port 0 picks a free one (see `local_sip_addr()`).
    /// The address the SIP socket binds (UDP).
    pub local_sip_addr: SocketAddr,
    /// Where to listen for SIP over TCP; `None` (default): no TCP listener (TCP peers can
    /// still be called). Port 0 picks a free one (see `local_sip_stream_addr()`).
    pub local_sip_tcp_addr: Option<SocketAddr>,
    /// Where to listen for SIP over TLS; needs `tls.cert` and `tls.key`.
    pub local_sip_tls_addr: Option<SocketAddr>,
    /// TLS: our certificate, and how the servers we call are checked.
    pub tls: SipTlsConfig,
    /// Timeouts of TCP and TLS connections.
    pub stream_timeouts: StreamTimeouts,
    /// Where RTP sockets bind.
    pub local_rtp_ip: IpAddr,
    /// The address written in SDP and Contact when it differs from the bound one (NAT).
    pub advertised_ip: Option<IpAddr>,
    /// RTP port range (even ports; RTCP on the odd one above unless rtcp-mux).
    pub rtp_port_start: u16,
    /// The end of that range: an RTP port is used only when its RTCP port (+1) is at most this.
    pub rtp_port_end: u16,
    /// Audio codecs accepted, the offerer's order deciding among them.
    pub supported_codecs: Vec<AudioCodec>,
    /// Video codecs accepted (video backend only): H264 and/or VP8.
    pub supported_video_codecs: Vec<VideoCodec>,
    /// Most simultaneous calls (ringing and dialed included); 0 = no limit. Beyond it, new
    /// INVITEs get 503 Service Unavailable with `Retry-After`.
    pub max_sessions: usize,
    /// The `Retry-After` of that 503.
    pub retry_after: Duration,
    /// Overload control: when new INVITEs are refused with 503 because the SIP thread is
    /// behind, and the per-source rate limit.
    pub overload: OverloadConfig,
    /// Digest users (name → password) incoming INVITEs must authenticate as. Empty: no
    /// authentication.
    pub auth_users: HashMap<String, String>,
    /// The realm of the challenges sent to incoming INVITEs.
    pub auth_realm: String,
    /// What we answer 401/407 challenges with, as a client: registrations and dialed calls
    /// (each may override it).
    pub credentials: Option<SipCredentials>,
    /// An outbound proxy every dialed call and registration goes through (a loose route),
    /// unless the call or registration names its own.
    pub outbound_proxy: Option<SocketAddr>,
    /// The user part of our Contact and of the From of dialed calls.
    pub user: String,
    /// Session timers (RFC 4028): the interval in seconds we ask for when dialing and the
    /// longest we accept; 0 = we do not ask for one (we still honour a caller's).
    pub session_expires: u32,
    /// The shortest session interval we accept (at least 90 s).
    pub min_se: u32,
    /// How long a dialed call rings before it is cancelled, unless the dial says otherwise.
    pub ring_timeout: Duration,
    /// `Server`/`User-Agent` header and SDP `s=` line.
    pub user_agent: String,
    /// Ring time between 180 and 200 (CANCEL can arrive meanwhile).
    pub answer_after: Duration,
    /// SIP timer values (T1, T2, T4).
    pub timers: Timers,
    /// Latch each stream to the first source its packets come from (peers behind NAT, and
    /// senders whose source port differs from their SDP port). Off: only the SDP address.
    pub symmetric_rtp: bool,
    /// Largest RTP payload sent.
    pub mtu: usize,
    /// How received H.264 is delivered.
    pub delivery: Delivery,
    /// Hold non-key pictures back after loss until a key frame.
    pub wait_for_keyframe: bool,
    /// Nominal RTCP report interval.
    pub rtcp_interval: Duration,
    /// Offer and accept an RTX (RFC 4588) retransmission stream for video, with its own payload
    /// type and SSRC (only when NACK is on, as retransmissions answer NACKs). On by default;
    /// off, lost packets are re-sent as they were.
    pub video_rtx: bool,
    /// SRTP with SDES keys (RFC 4568) on audio and video: `Off` (default), `Optional` (offer
    /// RTP/AVP with crypto lines; answer SAVP with SRTP and plain offers plainly) or `Mandatory`
    /// (offer RTP/SAVP; refuse a plain offer with 488).
    pub srtp: crate::SrtpPolicy,
    /// The SRTP suites, in our order of preference: an offer lists exactly these, in this
    /// order (one `a=crypto` line each); an answer takes the first of them the offer has. No
    /// suite in common means no SRTP: a plain call when the policy and the offer allow one,
    /// else 488. Default [`SrtpSuite::ALL`](crate::SrtpSuite::ALL) (AES_CM_128_HMAC_SHA1_80,
    /// AEAD_AES_128_GCM, AES_CM_128_HMAC_SHA1_32). Should not be empty when `srtp` is on.
    pub srtp_suites: Vec<crate::SrtpSuite>,
    /// Loss recovery (NACK), pacing, audio jitter buffer, inactivity timeout and close linger:
    /// the settings every backend shares. NACK is also offered and accepted in SDP only when on.
    pub resilience: ResilienceConfig,
    /// Callback threads of the engine.
    pub callback_threads: usize,
    /// Events queued per callback thread before new ones are dropped (and counted), or 16 per
    /// live session of the thread when that is more.
    pub callback_queue: usize,
    /// Threads for RTP I/O: 0 (default) one thread per stream, sleeping on its own sockets
    /// (lowest latency for a few calls); N > 0 N shared threads, each waiting in `epoll` on the
    /// sockets of many streams (for many sessions).
    pub io_threads: usize,
    /// The PCM rate of `send_audio` and of received audio frames. `Auto` (default): 16 kHz when
    /// the call negotiated a wideband codec (G.722, Opus), 8 kHz otherwise (G.711). The engine
    /// converts between it and the codec's rate.
    pub audio_sample_rate: AppRate,
    /// Offer and accept forward error correction on video: ULPFEC (RFC 5109) in RED (RFC
    /// 2198), `a=rtpmap:123 red/90000` and `a=rtpmap:122 ulpfec/90000` in our offers. When both
    /// sides agree, our video carries FEC sized from the peer's reported loss and the RTT, and
    /// lost packets of theirs are rebuilt before a NACK would ask. Off by default.
    pub video_fec: bool,
    /// How long an incoming call the invite filter deferred ([`CallDecision::Defer`]) waits for
    /// `decide_call` before it is refused with 408 (Request Timeout). Default 20 s.
    pub decision_timeout: Duration,
    /// ICE (RFC 8445) on DTLS-SRTP streams: our offers and answers carry `a=ice-ufrag`/`pwd`
    /// and a host candidate (the stream's socket), and the stream runs a full agent when the
    /// peer has ICE too. Only with `dtls_srtp` on. Off by default.
    pub ice: bool,
    /// DTLS-SRTP (RFC 5763/5764): `Off` (default), `Optional` (offer our fingerprint beside
    /// the SDES policy's proto; take DTLS-SRTP when an offer has a fingerprint) or
    /// `Mandatory` (offer `UDP/TLS/RTP/SAVPF`; refuse an offer without a fingerprint with
    /// 488). One ECDSA P-256 certificate is made per backend when it is on.
    pub dtls_srtp: crate::DtlsSrtpPolicy,
    /// A STUN server for server-reflexive candidates (with `ice` on): each call's media
    /// sockets ask it where they are seen from before the SDP is written (the SIP thread waits
    /// at most 500 ms: 3 requests at 0, 100 and 300 ms), and the answers are offered as `srflx`
    /// candidates beside the host ones. No answer: host candidates only, the call goes on (and
    /// the server is not asked again for 30 s).
    pub stun_server: Option<SocketAddr>,
    /// A TURN server (UDP, RFC 8656) for relayed candidates (with `ice` on): each call's media
    /// sockets allocate a relayed address on it with `turn_user`/`turn_password` (long-term
    /// credentials) before the SDP is written (the SIP thread waits at most 1.5 s), offered as
    /// `relay` candidates; the stream's transport then keeps the allocation and relays through
    /// it when ICE selects it. No allocation: no relayed candidate, the call goes on (and the
    /// server is not asked again for 30 s).
    pub turn_server: Option<SocketAddr>,
    /// The TURN username (long-term credentials).
    pub turn_user: String,
    /// The TURN password.
    pub turn_password: String,
    /// Offer only the relayed candidate when there is one (no host or srflx candidates): media
    /// always goes through the TURN server (WebRTC's `iceTransportPolicy: "relay"`).
    pub turn_relay_only: bool,
}

impl Default for SipBackendConfig {
    fn default() -> Self {
        SipBackendConfig {
            local_sip_addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 5060),
            local_sip_tcp_addr: None,
            local_sip_tls_addr: None,
            tls: SipTlsConfig::default(),
            stream_timeouts: StreamTimeouts::default(),
            local_rtp_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            advertised_ip: None,
            rtp_port_start: 10000,
            rtp_port_end: 20000,
            supported_codecs: AudioCodec::defaults(),
            supported_video_codecs: vec![VideoCodec::H264],
            max_sessions: 0,
            retry_after: Duration::from_secs(10),
            overload: OverloadConfig::default(),
            auth_users: HashMap::new(),
            auth_realm: "roomkit".into(),
            credentials: None,
            outbound_proxy: None,
            user: "roomkit".into(),
            session_expires: 1800,
            min_se: 90,
            ring_timeout: Duration::from_secs(60),
            user_agent: "roomkit-media".into(),
            answer_after: Duration::ZERO,
            timers: Timers::default(),
            symmetric_rtp: true,
            mtu: 1200,
            delivery: Delivery::AccessUnit,
            wait_for_keyframe: true,
            rtcp_interval: Duration::from_secs(5),
            video_rtx: true,
            srtp: crate::SrtpPolicy::Off,
            srtp_suites: crate::SrtpSuite::ALL.to_vec(),
            resilience: ResilienceConfig::default(),
            callback_threads: 1,
            callback_queue: DEFAULT_QUEUE_LEN,
            io_threads: 0,
            audio_sample_rate: AppRate::Auto,
            video_fec: false,
            decision_timeout: Duration::from_secs(20),
            ice: false,
            dtls_srtp: crate::DtlsSrtpPolicy::Off,
            stun_server: None,
            turn_server: None,
            turn_user: String::new(),
            turn_password: String::new(),
            turn_relay_only: false,
        }
    }
}

/// A user name and password for digest authentication (MD5 or SHA-256, `qop=auth`).
#[derive(Clone, PartialEq, Eq)]
pub struct SipCredentials {
    /// The authentication user name (often the AOR's user part).
    pub username: String,
    /// The password (never printed by `Debug`).
    pub password: String,
}

impl SipCredentials {
    /// Credentials from a user name and password.
    pub fn new(username: &str, password: &str) -> SipCredentials {
        SipCredentials {
            username: username.to_string(),
            password: password.to_string(),
        }
    }
}

impl std::fmt::Debug for SipCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SipCredentials")
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// What the invite filter sees of a new call (before any port is taken).
#[derive(Debug, Clone)]
pub struct IncomingCall {
    /// The INVITE's Call-ID.
    pub call_id: String,
    /// From URI.
    pub caller: String,
    /// To URI.
    pub callee: String,
    /// The display name of From, when it has one.
    pub caller_display_name: Option<String>,
    /// `X-` headers as (name, value), sorted.
    pub x_headers: Vec<(String, String)>,
    /// Where the INVITE came from.
    pub source: SocketAddr,
    /// The offer has an `m=video` line.
    pub offers_video: bool,
}

/// The invite filter's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallDecision {
    /// Go on with the call (authentication, limits and SDP are still checked).
    Accept,
    /// Refuse with this final status (300..=699; anything else becomes 603).
    Reject(u16),
    /// Decide later: the call is set up and rings (180) until
    /// [`decide_call`](crate::backend::SipVoiceBackend::decide_call) answers or refuses it by
    /// its Call-ID. A call still undecided after `decision_timeout` is refused with 408.
    Defer,
}

/// Overload control of a SIP backend (RFC 6357's local overload control: a server that is
/// behind refuses new work early and cheaply, so that what it accepts still completes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverloadConfig {
    /// New INVITEs are refused with 503 + `Retry-After` while the oldest input the SIP
    /// thread has not yet handled is older than this (its receive queue is backing up).
    /// In-dialog requests, ACK, CANCEL, BYE and retransmissions are always handled. Default
    /// 200 ms: well before a caller's first INVITE retransmission (T1, 500 ms) would add load.
    /// Zero turns the check off.
    pub max_backlog: Duration,
    /// The `Retry-After` of those 503s is drawn uniformly from 1 to this many seconds, so
    /// refused callers do not all come back at once. Default 4.
    pub retry_after_max_s: u32,
    /// Out-of-dialog requests (new INVITEs, OPTIONS, REGISTER, ...) accepted per second from
    /// one source IP address; beyond it they are answered 503 + `Retry-After` without any
    /// state kept. 0 (default) = no limit: behind a proxy every call comes from one address.
    pub source_rate: u32,
    /// Requests one source may send at once above `source_rate`; 0 = one second's worth.
    pub source_burst: u32,
    /// Most sources the limiter remembers (bounded memory under a spoofed flood); default 4096.
    pub source_table: usize,
}

impl Default for OverloadConfig {
    fn default() -> Self {
        OverloadConfig {
            max_backlog: Duration::from_millis(200),
            retry_after_max_s: 4,
            source_rate: 0,
            source_burst: 0,
            source_table: 4096,
        }
    }
}

/// Looks up the password of a user name for inbound digest authentication (`None`: no such
/// user). Runs on the SIP thread: it must return quickly.
pub type AuthResolver = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Sees every SIP message the backend receives (`outbound` false, before it is parsed) or sends
/// (`outbound` true, retransmissions included), with the peer's address. Runs on the SIP
/// thread: it must return quickly.
pub type SipTrace = Arc<dyn Fn(bool, &[u8], SocketAddr) + Send + Sync>;

/// Screens new INVITEs. Runs on the SIP thread: it must return quickly.
pub type InviteFilter = Arc<dyn Fn(&IncomingCall) -> CallDecision + Send + Sync>;

/// Snapshot of the signalling counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SipStats {
    /// Datagrams received on the SIP socket.
    pub received: u64,
    /// Requests answered with 400/416/505 by the parser's checks.
    pub rejected: u64,
    /// Datagrams dropped as unanswerable (garbage, bad responses, stray ACKs).
    pub dropped: u64,
    /// INVITEs that became calls (answered 200).
    pub calls_answered: u64,
    /// Calls that ended (any reason, either direction).
    pub calls_ended: u64,
    /// INVITEs refused with a final error (488, 503, 403, the filter...).
    pub calls_refused: u64,
    /// Those refused with 503 + Retry-After: no free session (`max_sessions`) or RTP port, or
    /// overload (a backlog on the SIP thread, or their source over its rate).
    pub calls_refused_overload: u64,
    /// Out-of-dialog requests (INVITEs included) answered 503 because their source address
    /// went over `OverloadConfig::source_rate`.
    pub requests_rate_limited: u64,
    /// Our BYEs that got no answer (timer F).
    pub bye_timeouts: u64,
    /// Our BYEs that got a final answer.
    pub byes_answered: u64,
    /// BYEs that could not be built or sent; 0 unless there is a bug.
    pub bye_failures: u64,
    /// Calls placed with `dial`.
    pub calls_dialed: u64,
    /// RTP ports of the pool found bound by something else (another program, or the kernel's
    /// pick for a port-0 socket when the range overlaps the ephemeral ports) and skipped.
    pub rtp_ports_busy: u64,
    /// TCP and TLS connections accepted or opened.
    pub connections_opened: u64,
    /// Connections closed for being idle.
    pub connections_idle_closed: u64,
    /// Connections cut for breaking a limit: headers over 64 KB, a body over 1 MB, no
    /// Content-Length, a message or handshake not finished in time, output the peer does not
    /// read.
    pub connections_cut: u64,
    /// TLS handshakes or records that failed (certificate refused, protocol error).
    pub tls_failures: u64,
    /// Connections refused (over the limit) or that could not be opened.
    pub connections_refused: u64,
    /// Messages for a TCP/TLS peer that could not be sent.
    pub stream_send_failures: u64,
    /// RFC 5626 keep-alive pings sent on connections this backend opened.
    pub keepalive_pings: u64,
    /// Connections closed because a keep-alive ping went unanswered.
    pub keepalive_failures: u64,
    /// The protocol version of the last TLS handshake that finished, either side (`TLSv1_3`,
    /// `TLSv1_2`); `None` before any.
    pub tls_version: Option<&'static str>,
    /// The cipher suite of that handshake (`TLS13_AES_256_GCM_SHA384`...).
    pub tls_cipher_suite: Option<&'static str>,
    /// Of `calls_refused_overload`, why (the rest are `requests_rate_limited` INVITEs): the
    /// SIP thread's input was backed up ...
    pub calls_refused_sip_backlog: u64,
    /// ... or the sessions being started off the SIP thread would have kept the call
    /// waiting `OverloadConfig::max_backlog` ...
    pub calls_refused_setup_queue: u64,
    /// ... or no session or RTP port was left (`max_sessions`, the port range, a media start
    /// that failed).
    pub calls_refused_capacity: u64,
    /// Media sockets that learnt their server-reflexive address from `stun_server`.
    pub srflx_gathered: u64,
    /// Media sockets whose STUN binding failed (no answer within 500 ms, an error answer, no
    /// route): they offered their host candidate only.
    pub srflx_failed: u64,
}
