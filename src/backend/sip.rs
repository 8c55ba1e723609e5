//! `SipVoiceBackend` and `SipVideoBackend`: a SIP user agent server whose calls become engine
//! sessions.
//!
//! One SIP thread ([`SipTransport`]) runs the call core; sessions live on the same
//! [`MediaEngine`] the RTP backends use, so media, callbacks and teardown behave identically.
//! `SipVideoBackend` is the voice backend with video negotiation switched on (composition:
//! `Deref` to the voice backend, plus the video calls).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Deref;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{unbounded, Sender};
use parking_lot::RwLock;

use super::sip_core::{Command, Shared, SipCore, SipCounters, SipEvent};
use crate::engine::dispatch::{Dispatcher, DEFAULT_QUEUE_LEN};
use crate::engine::{
    EngineConfig, KeyframeRequest, MediaEngine, MediaSession, PortPool, SessionId, SessionInfo,
    SessionStats, SipTransport, StopSignal,
};
use crate::error::{Error, Result};
use crate::frame::{AudioFrame, Delivery, DtmfEvent, VideoChunk, VideoCodec, VideoFrame};
use crate::sdp::AudioCodec;
use crate::sip::transaction::Timers;

/// Settings of a SIP backend. `Default` gives roomkit's defaults where they make sense here.
#[derive(Debug, Clone)]
pub struct SipBackendConfig {
    /// Where the SIP socket binds (UDP). Port 0 picks a free one (see `local_sip_addr()`).
    pub local_sip_addr: SocketAddr,
    /// Where RTP sockets bind.
    pub local_rtp_ip: IpAddr,
    /// The address written in SDP and Contact when it differs from the bound one (NAT).
    pub advertised_ip: Option<IpAddr>,
    /// RTP port range (even ports; RTCP on the odd one above unless rtcp-mux).
    pub rtp_port_start: u16,
    pub rtp_port_end: u16,
    /// Audio codecs accepted, the offerer's order deciding among them.
    pub supported_codecs: Vec<AudioCodec>,
    /// Video codecs accepted (video backend only): H264 and/or VP8.
    pub supported_video_codecs: Vec<VideoCodec>,
    /// Most simultaneous calls (ringing included); 0 = no limit. Beyond it: 486 Busy Here.
    pub max_sessions: usize,
    /// Digest users (name → password). Empty: no authentication.
    pub auth_users: HashMap<String, String>,
    pub auth_realm: String,
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
    /// Callback threads of the engine.
    pub callback_threads: usize,
    /// Events queued per callback thread before new ones are dropped (and counted).
    pub callback_queue: usize,
}

impl Default for SipBackendConfig {
    fn default() -> Self {
        SipBackendConfig {
            local_sip_addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 5060),
            local_rtp_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            advertised_ip: None,
            rtp_port_start: 10000,
            rtp_port_end: 20000,
            supported_codecs: vec![AudioCodec::Pcmu, AudioCodec::Pcma],
            supported_video_codecs: vec![VideoCodec::H264],
            max_sessions: 0,
            auth_users: HashMap::new(),
            auth_realm: "roomkit".into(),
            user_agent: "roomkit-media".into(),
            answer_after: Duration::ZERO,
            timers: Timers::default(),
            symmetric_rtp: true,
            mtu: 1200,
            delivery: Delivery::AccessUnit,
            wait_for_keyframe: true,
            rtcp_interval: Duration::from_secs(5),
            callback_threads: 1,
            callback_queue: DEFAULT_QUEUE_LEN,
        }
    }
}

/// What the invite filter sees of a new call (before any port is taken).
#[derive(Debug, Clone)]
pub struct IncomingCall {
    pub call_id: String,
    /// From URI.
    pub caller: String,
    /// To URI.
    pub callee: String,
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
pub enum CallDecision {
    Accept,
    /// Refuse with this final status (300..=699; anything else becomes 603).
    Reject(u16),
}

/// Screens new INVITEs. Runs on the SIP thread: it must return quickly.
pub type InviteFilter = Arc<dyn Fn(&IncomingCall) -> CallDecision + Send + Sync>;

/// Snapshot of the signalling counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SipStats {
    pub received: u64,
    pub rejected: u64,
    pub dropped: u64,
    pub calls_answered: u64,
    pub calls_ended: u64,
    pub calls_refused: u64,
    pub bye_timeouts: u64,
    /// BYEs that could not be built or sent (see `SipCounters::bye_failures`); 0 unless a bug.
    pub bye_failures: u64,
}

impl SipStats {
    fn read(c: &SipCounters) -> SipStats {
        let g = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        SipStats {
            received: g(&c.received),
            rejected: g(&c.rejected),
            dropped: g(&c.dropped),
            calls_answered: g(&c.calls_answered),
            calls_ended: g(&c.calls_ended),
            calls_refused: g(&c.calls_refused),
            bye_timeouts: g(&c.bye_timeouts),
            bye_failures: g(&c.bye_failures),
        }
    }
}

/// SIP audio calls (UAS). Video offers are answered `m=video 0`.
pub struct SipVoiceBackend {
    // Field order is drop order: the SIP thread stops (sending BYEs, closing sessions) before
    // the SIP callback thread and the engine go.
    transport: SipTransport,
    wake: StopSignal,
    commands: Sender<Command>,
    _dispatcher: Arc<Dispatcher<SipEvent>>,
    shared: Arc<Shared>,
    cfg: SipBackendConfig,
}

impl std::fmt::Debug for SipVoiceBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SipVoiceBackend")
            .field("sip", &self.transport.local_addr())
            .finish_non_exhaustive()
    }
}

impl SipVoiceBackend {
    /// Binds the SIP socket and starts the SIP and callback threads.
    pub fn new(cfg: SipBackendConfig) -> Result<SipVoiceBackend> {
        Self::build(cfg, false)
    }

    fn build(cfg: SipBackendConfig, with_video: bool) -> Result<SipVoiceBackend> {
        if cfg.supported_codecs.is_empty() {
            return Err(Error::InvalidArgument(
                "supported_codecs must name at least one codec".into(),
            ));
        }
        let pool = PortPool::new(cfg.rtp_port_start, cfg.rtp_port_end)?;
        let engine = MediaEngine::new(EngineConfig {
            callback_threads: cfg.callback_threads,
            callback_queue: cfg.callback_queue,
        })?;
        let shared = Arc::new(Shared {
            engine,
            pool,
            counters: SipCounters::default(),
            views: RwLock::new(HashMap::new()),
            filter: RwLock::new(None),
            on_call: RwLock::new(None),
        });
        let s = shared.clone();
        let dispatcher = Arc::new(
            Dispatcher::new(
                1,
                cfg.callback_queue.max(64),
                "rkm-sip-cb",
                Arc::new(move |ev: SipEvent| match ev {
                    SipEvent::Call(info) => {
                        let cb = s.on_call.read().clone();
                        if let Some(cb) = cb {
                            cb(&info);
                        }
                    }
                }),
            )
            .map_err(|e| Error::Io("starting the SIP callback thread".into(), e))?,
        );
        let (tx, rx) = unbounded();
        let cname = format!("{}@roomkit-media", uuid::Uuid::new_v4().simple());
        // The core needs the bound address for Via/Contact; bind first, then hand it over.
        let sock = crate::engine::MediaSocket::bind(cfg.local_sip_addr)
            .map_err(|e| Error::Io(format!("binding SIP {}", cfg.local_sip_addr), e))?;
        let local = sock.local_addr();
        let core = SipCore::new(
            cfg.clone(),
            with_video,
            shared.clone(),
            rx,
            dispatcher.clone(),
            local,
            cname,
        );
        let transport = SipTransport::spawn(sock, "rkm-sip", core)
            .map_err(|e| Error::Io("starting the SIP thread".into(), e))?;
        Ok(SipVoiceBackend {
            wake: transport.signal(),
            transport,
            commands: tx,
            _dispatcher: dispatcher,
            shared,
            cfg,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &SipBackendConfig {
        &self.cfg
    }

    /// The address the SIP socket is bound to (the port actually chosen with port 0).
    pub fn local_sip_addr(&self) -> SocketAddr {
        self.transport.local_addr()
    }

    /// The engine under the backend.
    pub fn engine(&self) -> &MediaEngine {
        &self.shared.engine
    }

    /// The RTP port pool (free count goes back to capacity when every call has ended).
    pub fn port_pool(&self) -> &PortPool {
        &self.shared.pool
    }

    /// Signalling counters.
    pub fn sip_stats(&self) -> SipStats {
        SipStats::read(&self.shared.counters)
    }

    /// Screens new INVITEs before any port is taken (replaces an earlier filter).
    pub fn set_invite_filter<F>(&self, f: F)
    where
        F: Fn(&IncomingCall) -> CallDecision + Send + Sync + 'static,
    {
        *self.shared.filter.write() = Some(Arc::new(f));
    }

    /// A call was answered (200 sent): metadata has `caller`, `callee`, `caller_display_name`,
    /// `call_id`, `has_video`, `video_codec`, `room_id` and the `X-` headers.
    pub fn on_call<F>(&self, f: F)
    where
        F: Fn(&SessionInfo) + Send + Sync + 'static,
    {
        *self.shared.on_call.write() = Some(Arc::new(f));
    }

    /// Ends a call: its media closes now (firing `on_client_disconnected`), and the SIP thread
    /// sends BYE (retransmitted until answered or timer F) or, while ringing, a 480.
    pub fn hangup(&self, session: SessionId) -> Result<()> {
        if !self.shared.views.read().contains_key(&session) {
            return Err(Error::NotFound(format!("call with session {session}")));
        }
        let _ = self.shared.engine.disconnect(session);
        let _ = self.commands.send(Command::Hangup(session));
        self.wake.wake();
        Ok(())
    }

    /// Same as [`SipVoiceBackend::hangup`].
    pub fn disconnect(&self, session: SessionId) -> Result<()> {
        self.hangup(session)
    }

    /// The live session `session`.
    pub fn get_session(&self, session: SessionId) -> Option<SessionInfo> {
        self.shared
            .engine
            .session(session)
            .ok()
            .map(|s| s.current_info())
    }

    /// Live sessions of a room.
    pub fn list_sessions(&self, room_id: &str) -> Vec<SessionInfo> {
        self.shared.engine.list(Some(room_id))
    }

    /// Every live session.
    pub fn all_sessions(&self) -> Vec<SessionInfo> {
        self.shared.engine.list(None)
    }

    /// The Call-ID of a session's call.
    pub fn call_id(&self, session: SessionId) -> Option<String> {
        self.shared
            .views
            .read()
            .get(&session)
            .map(|v| v.call_id.clone())
    }

    /// True while the far end holds the call (we send nothing).
    pub fn is_held(&self, session: SessionId) -> bool {
        self.shared
            .views
            .read()
            .get(&session)
            .is_some_and(|v| v.held)
    }

    /// Counters of a session.
    pub fn stats(&self, session: SessionId) -> Result<SessionStats> {
        Ok(self.shared.engine.session(session)?.stats())
    }

    /// A session to send on, `None` while it is held.
    fn sendable(&self, session: SessionId) -> Result<Option<Arc<MediaSession>>> {
        let s = self.shared.engine.session(session)?;
        Ok((!self.is_held(session)).then_some(s))
    }

    /// Sends 16-bit PCM as 20 ms packets of the negotiated G.711 law (dropped while held).
    pub fn send_audio(&self, session: SessionId, pcm: &[i16]) -> Result<()> {
        match self.sendable(session)? {
            Some(s) => s.audio().send_audio(pcm),
            None => Ok(()),
        }
    }

    /// Sends one already-encoded audio frame of `duration_ms` in the negotiated format, as one
    /// packet (dropped while held): payload passthrough for codecs other than G.711.
    pub fn send_audio_payload(
        &self,
        session: SessionId,
        payload: &[u8],
        duration_ms: u32,
    ) -> Result<()> {
        match self.sendable(session)? {
            Some(s) => s.audio().send_audio_payload(payload, duration_ms),
            None => Ok(()),
        }
    }

    /// Sends a DTMF digit as RFC 4733 events with the negotiated payload type.
    pub fn send_dtmf(&self, session: SessionId, digit: char, duration_ms: u32) -> Result<()> {
        match self.sendable(session)? {
            Some(s) => s.audio().send_dtmf(digit, duration_ms),
            None => Ok(()),
        }
    }

    /// Received audio: decoded to PCM for G.711, passed through (`AudioFrame::payload`) otherwise.
    pub fn on_audio_received<F>(&self, f: F)
    where
        F: Fn(SessionId, &AudioFrame) + Send + Sync + 'static,
    {
        self.shared.engine.callbacks().set_audio(f);
    }

    /// Received DTMF digits.
    pub fn on_dtmf_received<F>(&self, f: F)
    where
        F: Fn(SessionId, DtmfEvent) + Send + Sync + 'static,
    {
        self.shared.engine.callbacks().set_dtmf(f);
    }

    /// A session was created (before the 200 is sent).
    pub fn on_session_ready<F>(&self, f: F)
    where
        F: Fn(&SessionInfo) + Send + Sync + 'static,
    {
        self.shared.engine.callbacks().set_session_ready(f);
    }

    /// A session ended (BYE either way, CANCEL, ACK timeout, hangup, drop).
    pub fn on_client_disconnected<F>(&self, f: F)
    where
        F: Fn(&SessionInfo) + Send + Sync + 'static,
    {
        self.shared.engine.callbacks().set_disconnected(f);
    }
}

/// SIP audio + video calls: INVITEs with a usable `m=video` get a video stream with the same
/// session id; others are audio-only calls (`has_video=false`).
#[derive(Debug)]
pub struct SipVideoBackend {
    voice: SipVoiceBackend,
}

impl Deref for SipVideoBackend {
    type Target = SipVoiceBackend;

    fn deref(&self) -> &SipVoiceBackend {
        &self.voice
    }
}

impl SipVideoBackend {
    /// Binds the SIP socket and starts the SIP and callback threads.
    pub fn new(cfg: SipBackendConfig) -> Result<SipVideoBackend> {
        if cfg.supported_video_codecs.is_empty() {
            return Err(Error::InvalidArgument(
                "supported_video_codecs must name at least one codec (H264, VP8)".into(),
            ));
        }
        Ok(SipVideoBackend {
            voice: SipVoiceBackend::build(cfg, true)?,
        })
    }

    /// The session `session` when it carries video.
    pub fn get_video_session(&self, session: SessionId) -> Option<SessionInfo> {
        self.voice
            .get_session(session)
            .filter(|s| s.video.is_some())
    }

    /// Live video sessions of a room.
    pub fn list_video_sessions(&self, room_id: &str) -> Vec<SessionInfo> {
        self.voice
            .list_sessions(room_id)
            .into_iter()
            .filter(|s| s.video.is_some())
            .collect()
    }

    fn video_of(&self, session: SessionId) -> Result<Option<Arc<MediaSession>>> {
        let s = self.voice.shared.engine.session(session)?;
        if s.video().is_none() {
            return Err(Error::State(format!("session {session} has no video")));
        }
        Ok((!self.voice.is_held(session)).then_some(s))
    }

    /// Sends one picture, timestamped from the session clock (dropped while held).
    pub fn send_video(&self, session: SessionId, picture: &[u8]) -> Result<()> {
        match self.video_of(session)? {
            Some(s) => s.video().map_or(Ok(()), |v| v.send_video(picture, None)),
            None => Ok(()),
        }
    }

    /// Sends pictures in order, each with its own timestamp.
    pub fn send_video_chunks<I>(&self, session: SessionId, chunks: I) -> Result<()>
    where
        I: IntoIterator<Item = VideoChunk>,
    {
        let Some(s) = self.video_of(session)? else {
            return Ok(());
        };
        let Some(v) = s.video() else { return Ok(()) };
        for c in chunks {
            v.send_video(&c.data, c.timestamp_ms)?;
        }
        Ok(())
    }

    /// Asks the far end for a key frame (RTCP PLI).
    pub fn request_keyframe(&self, session: SessionId) -> Result<()> {
        self.voice
            .shared
            .engine
            .request_keyframe(session, KeyframeRequest::Pli)
    }

    /// Received video: the primary callback.
    pub fn on_video_received<F>(&self, f: F)
    where
        F: Fn(SessionId, &VideoFrame) + Send + Sync + 'static,
    {
        self.voice.shared.engine.callbacks().set_video(f);
    }

    /// Received video: an additional observer.
    pub fn add_video_tap<F>(&self, f: F)
    where
        F: Fn(SessionId, &VideoFrame) + Send + Sync + 'static,
    {
        self.voice.shared.engine.callbacks().add_video_tap(f);
    }

    /// The video stream of a call is up.
    pub fn on_video_session_ready<F>(&self, f: F)
    where
        F: Fn(&SessionInfo) + Send + Sync + 'static,
    {
        self.voice
            .shared
            .engine
            .callbacks()
            .set_video_session_ready(f);
    }

    /// The far end asked for a key frame (PLI or FIR).
    pub fn on_keyframe_requested<F>(&self, f: F)
    where
        F: Fn(SessionId, KeyframeRequest) + Send + Sync + 'static,
    {
        self.voice.shared.engine.callbacks().set_keyframe(f);
    }
}
