//! `RtpVoiceBackend` and `RtpVideoBackend`: RTP sessions whose addresses the application supplies
//! (configuration, overridden per session by connect metadata).
//!
//! Video is composition, not a copy: `RtpVideoBackend` wraps an `RtpVoiceBackend` whose sessions
//! carry a video stream too, and adds the video calls. Both run on one [`MediaEngine`], the same
//! engine the SIP backends create their sessions on.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use crate::codec::h264::PacketizationMode;
use crate::engine::dispatch::DEFAULT_QUEUE_LEN;
use crate::engine::{
    AudioParams, EngineConfig, KeyframeRequest, MediaEngine, MediaParams, SessionId, SessionInfo,
    SessionSpec, SessionStats, SourcePolicy, StreamConfig, VideoParams,
};
use crate::error::{Error, Result};
use crate::frame::{AudioFrame, Delivery, DtmfEvent, VideoChunk, VideoCodec, VideoFrame};

/// Settings of an RTP backend. `Default` gives roomkit's defaults.
#[derive(Debug, Clone)]
pub struct RtpBackendConfig {
    /// Where to bind audio RTP (port 0: any free port, per session).
    pub local_addr: SocketAddr,
    /// Where to send audio; `metadata["remote_addr"]` in connect overrides it.
    pub remote_addr: Option<SocketAddr>,
    /// Where to bind video RTP.
    pub video_local_addr: SocketAddr,
    /// Where to send video; `metadata["video_remote_addr"]` in connect overrides it.
    pub video_remote_addr: Option<SocketAddr>,
    /// Audio payload type: 0 PCMU (default) or 8 PCMA are encoded and decoded.
    pub payload_type: u8,
    pub clock_rate: u32,
    /// Telephone-event payload type; `None` disables DTMF.
    pub dtmf_payload_type: Option<u8>,
    pub video_payload_type: u8,
    pub video_clock_rate: u32,
    pub video_codec: VideoCodec,
    /// H.264 packetization mode used when sending.
    pub packetization_mode: PacketizationMode,
    /// Largest RTP payload sent, bytes.
    pub mtu: usize,
    /// One frame per picture (default) or per NAL unit.
    pub delivery: Delivery,
    /// After a loss, hold non-key pictures back until a key frame arrives.
    pub wait_for_keyframe: bool,
    /// Deliver damaged pictures flagged `complete: false` instead of dropping them.
    pub deliver_incomplete: bool,
    /// RTP and RTCP on one port (RFC 5761); otherwise RTCP uses port + 1.
    pub rtcp_mux: bool,
    /// Accept media from the first source seen instead of only from the remote address, and send
    /// back there (symmetric RTP for peers behind NAT).
    pub latch_to_first_source: bool,
    /// Nominal RTCP report interval.
    pub rtcp_interval: Duration,
    /// Callback threads.
    pub callback_threads: usize,
    /// Events queued per callback thread before new ones are dropped (and counted).
    pub callback_queue: usize,
    /// SDES CNAME; a random one per backend when `None`.
    pub cname: Option<String>,
}

impl Default for RtpBackendConfig {
    fn default() -> Self {
        let any: SocketAddr = ([0, 0, 0, 0], 0).into();
        RtpBackendConfig {
            local_addr: any,
            remote_addr: None,
            video_local_addr: any,
            video_remote_addr: None,
            payload_type: 0,
            clock_rate: 8000,
            dtmf_payload_type: Some(101),
            video_payload_type: 96,
            video_clock_rate: 90_000,
            video_codec: VideoCodec::H264,
            packetization_mode: PacketizationMode::NonInterleaved,
            mtu: 1200,
            delivery: Delivery::AccessUnit,
            wait_for_keyframe: true,
            deliver_incomplete: false,
            rtcp_mux: false,
            latch_to_first_source: false,
            rtcp_interval: Duration::from_secs(5),
            callback_threads: 1,
            callback_queue: DEFAULT_QUEUE_LEN,
            cname: None,
        }
    }
}

/// Reads an address from connect metadata: `ip:port`, `[ipv6]:port` or `host:port`.
fn metadata_addr(metadata: &HashMap<String, String>, key: &str) -> Result<Option<SocketAddr>> {
    let Some(v) = metadata.get(key) else {
        return Ok(None);
    };
    let bad = || Error::InvalidArgument(format!("metadata['{key}'] = {v:?} is not a host:port"));
    if let Ok(a) = v.parse() {
        return Ok(Some(a));
    }
    v.to_socket_addrs()
        .map_err(|_| bad())?
        .next()
        .map(Some)
        .ok_or_else(bad)
}

/// Audio RTP sessions with pre-configured endpoints.
pub struct RtpVoiceBackend {
    cfg: RtpBackendConfig,
    cname: String,
    with_video: bool,
    engine: MediaEngine,
}

impl std::fmt::Debug for RtpVoiceBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtpVoiceBackend")
            .field("video", &self.with_video)
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

impl RtpVoiceBackend {
    /// Starts the callback threads; sessions come with [`RtpVoiceBackend::connect`].
    pub fn new(cfg: RtpBackendConfig) -> Result<RtpVoiceBackend> {
        Self::build(cfg, false)
    }

    fn build(cfg: RtpBackendConfig, with_video: bool) -> Result<RtpVoiceBackend> {
        if cfg.clock_rate == 0 || cfg.video_clock_rate == 0 {
            return Err(Error::InvalidArgument(
                "clock_rate and video_clock_rate must be above 0".into(),
            ));
        }
        if cfg.payload_type > 127 || cfg.video_payload_type > 127 {
            return Err(Error::InvalidArgument(
                "payload_type and video_payload_type must be 0..=127".into(),
            ));
        }
        let engine = MediaEngine::new(EngineConfig {
            callback_threads: cfg.callback_threads,
            callback_queue: cfg.callback_queue,
        })?;
        let cname = cfg
            .cname
            .clone()
            .unwrap_or_else(|| format!("{}@roomkit-media", uuid::Uuid::new_v4().simple()));
        Ok(RtpVoiceBackend {
            cfg,
            cname,
            with_video,
            engine,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &RtpBackendConfig {
        &self.cfg
    }

    /// The engine under the backend (for components that create sessions themselves).
    pub fn engine(&self) -> &MediaEngine {
        &self.engine
    }

    fn stream_config(
        &self,
        media: MediaParams,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> StreamConfig {
        StreamConfig {
            media,
            local_addr: local,
            remote_addr: remote,
            remote_rtcp_addr: None,
            rtcp_mux: self.cfg.rtcp_mux,
            source_policy: if self.cfg.latch_to_first_source {
                SourcePolicy::LatchFirst
            } else {
                SourcePolicy::RemoteOnly
            },
            rtcp_interval: self.cfg.rtcp_interval,
            cname: self.cname.clone(),
            session: SessionId::nil(),
            ..Default::default()
        }
    }

    /// Creates a session: binds its sockets, starts its threads and fires `on_session_ready`
    /// (and `on_video_session_ready` on the video backend). `metadata["remote_addr"]` overrides
    /// the configured remote address.
    pub fn connect(
        &self,
        room_id: &str,
        participant_id: &str,
        metadata: &HashMap<String, String>,
    ) -> Result<SessionInfo> {
        let c = &self.cfg;
        // Every address is resolved before anything is opened, so a refused connect leaves
        // nothing behind.
        let video_remote = if self.with_video {
            Some(
                metadata_addr(metadata, "video_remote_addr")?
                    .or(c.video_remote_addr)
                    .ok_or_else(|| {
                        Error::InvalidArgument(
                            "video_remote_addr must be provided either in the RtpVideoBackend \
                             config or via metadata['video_remote_addr'] in connect()"
                                .into(),
                        )
                    })?,
            )
        } else {
            None
        };
        let remote = metadata_addr(metadata, "remote_addr")?
            .or(c.remote_addr)
            .ok_or_else(|| {
                Error::InvalidArgument(
                    "remote_addr must be provided either in the backend config or via \
                     metadata['remote_addr'] in connect()"
                        .into(),
                )
            })?;
        let audio = self.stream_config(
            MediaParams::Audio(AudioParams {
                payload_type: c.payload_type,
                clock_rate: c.clock_rate,
                dtmf_payload_type: c.dtmf_payload_type,
                ..Default::default()
            }),
            c.local_addr,
            remote,
        );
        let video = video_remote.map(|vr| {
            self.stream_config(
                MediaParams::Video(VideoParams {
                    payload_type: c.video_payload_type,
                    clock_rate: c.video_clock_rate,
                    codec: c.video_codec,
                    delivery: c.delivery,
                    wait_for_keyframe: c.wait_for_keyframe,
                    deliver_incomplete: c.deliver_incomplete,
                    mtu: c.mtu,
                    packetization_mode: c.packetization_mode,
                    ..Default::default()
                }),
                c.video_local_addr,
                vr,
            )
        });
        let mut meta = metadata.clone();
        meta.insert(
            "backend".into(),
            if self.with_video { "rtp-av" } else { "rtp" }.into(),
        );
        meta.insert("payload_type".into(), c.payload_type.to_string());
        meta.insert("clock_rate".into(), c.clock_rate.to_string());
        meta.insert("remote_addr".into(), remote.to_string());
        let video_meta = match video_remote {
            Some(vr) => HashMap::from([
                ("backend".to_string(), "rtp-av".to_string()),
                ("payload_type".into(), c.video_payload_type.to_string()),
                ("clock_rate".into(), c.video_clock_rate.to_string()),
                ("video_remote_addr".into(), vr.to_string()),
                ("video_codec".into(), c.video_codec.as_str().to_string()),
            ]),
            None => HashMap::new(),
        };
        let info = self.engine.create_session(SessionSpec {
            room_id: room_id.into(),
            participant_id: participant_id.into(),
            metadata: meta,
            video_metadata: video_meta,
            audio,
            video,
        })?;
        Ok((*info).clone())
    }

    /// Ends a session: joins its threads (sending RTCP BYE), closes its sockets and fires
    /// `on_client_disconnected`.
    pub fn disconnect(&self, session: SessionId) -> Result<()> {
        self.engine.disconnect(session)
    }

    /// Points a session's media at new remote addresses (as a re-INVITE does): `audio` and
    /// `video` are RTP addresses; RTCP follows (same port with rtcp-mux, port + 1 otherwise).
    pub fn update_remote(
        &self,
        session: SessionId,
        audio: Option<SocketAddr>,
        video: Option<SocketAddr>,
    ) -> Result<()> {
        let s = self.engine.session(session)?;
        let rtcp = |a: SocketAddr| {
            if self.cfg.rtcp_mux {
                a
            } else {
                SocketAddr::new(a.ip(), a.port().wrapping_add(1))
            }
        };
        if let Some(a) = audio {
            s.audio().set_remote(a, rtcp(a));
        }
        if let (Some(a), Some(v)) = (video, s.video()) {
            v.set_remote(a, rtcp(a));
        }
        Ok(())
    }

    /// The live session `session`.
    pub fn get_session(&self, session: SessionId) -> Option<SessionInfo> {
        self.engine.session(session).ok().map(|s| s.current_info())
    }

    /// Live sessions of a room.
    pub fn list_sessions(&self, room_id: &str) -> Vec<SessionInfo> {
        self.engine.list(Some(room_id))
    }

    /// Counters of a session.
    pub fn stats(&self, session: SessionId) -> Result<SessionStats> {
        Ok(self.engine.session(session)?.stats())
    }

    /// Sends 16-bit PCM as 20 ms G.711 packets (the last padded with silence), all at once: the
    /// caller paces real-time audio by calling with each block as it is captured.
    pub fn send_audio(&self, session: SessionId, pcm: &[i16]) -> Result<()> {
        self.engine.session(session)?.audio().send_audio(pcm)
    }

    /// Sends one frame the application encoded itself, lasting `duration_ms`, as one RTP packet:
    /// payload passthrough for audio formats other than G.711 (`payload_type` in the config).
    pub fn send_audio_payload(
        &self,
        session: SessionId,
        payload: &[u8],
        duration_ms: u32,
    ) -> Result<()> {
        self.engine
            .session(session)?
            .audio()
            .send_audio_payload(payload, duration_ms)
    }

    /// Sends a DTMF digit as RFC 4733 telephone events. Returns at once; the receive thread
    /// paces the packets (every 20 ms, then three end packets), and digits queue behind each other.
    pub fn send_dtmf(&self, session: SessionId, digit: char, duration_ms: u32) -> Result<()> {
        self.engine
            .session(session)?
            .audio()
            .send_dtmf(digit, duration_ms)
    }

    /// Received audio: decoded to PCM for G.711, passed through (`AudioFrame::payload`) otherwise.
    pub fn on_audio_received<F>(&self, f: F)
    where
        F: Fn(SessionId, &AudioFrame) + Send + Sync + 'static,
    {
        self.engine.callbacks().set_audio(f);
    }

    /// Received DTMF digits.
    pub fn on_dtmf_received<F>(&self, f: F)
    where
        F: Fn(SessionId, DtmfEvent) + Send + Sync + 'static,
    {
        self.engine.callbacks().set_dtmf(f);
    }

    /// A session was created.
    pub fn on_session_ready<F>(&self, f: F)
    where
        F: Fn(&SessionInfo) + Send + Sync + 'static,
    {
        self.engine.callbacks().set_session_ready(f);
    }

    /// A session ended.
    pub fn on_client_disconnected<F>(&self, f: F)
    where
        F: Fn(&SessionInfo) + Send + Sync + 'static,
    {
        self.engine.callbacks().set_disconnected(f);
    }
}

/// Audio and video RTP sessions: every session has a video stream with the same id. All of
/// [`RtpVoiceBackend`]'s calls are available through `Deref`.
#[derive(Debug)]
pub struct RtpVideoBackend {
    voice: RtpVoiceBackend,
}

impl Deref for RtpVideoBackend {
    type Target = RtpVoiceBackend;

    fn deref(&self) -> &RtpVoiceBackend {
        &self.voice
    }
}

impl RtpVideoBackend {
    /// Starts the callback threads; sessions come with [`RtpVideoBackend::connect`].
    pub fn new(cfg: RtpBackendConfig) -> Result<RtpVideoBackend> {
        Ok(RtpVideoBackend {
            voice: RtpVoiceBackend::build(cfg, true)?,
        })
    }

    /// Creates an audio + video session. The video remote address comes from
    /// `metadata["video_remote_addr"]`, else the config; with neither the call fails (naming
    /// `video_remote_addr`) before anything is opened.
    pub fn connect(
        &self,
        room_id: &str,
        participant_id: &str,
        metadata: &HashMap<String, String>,
    ) -> Result<SessionInfo> {
        self.voice.connect(room_id, participant_id, metadata)
    }

    /// The session `session`, if live (it always has video on this backend).
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

    fn video_of(&self, session: SessionId) -> Result<Arc<crate::engine::MediaSession>> {
        let s = self.voice.engine.session(session)?;
        if s.video().is_none() {
            return Err(Error::State(format!("session {session} has no video")));
        }
        Ok(s)
    }

    /// Sends one picture (Annex-B or one raw NAL for H.264, one frame for VP8), timestamped
    /// with the time since the session started. All its packets leave in one `sendmmsg`.
    pub fn send_video(&self, session: SessionId, picture: &[u8]) -> Result<()> {
        let s = self.video_of(session)?;
        s.video().map_or(Ok(()), |v| v.send_video(picture, None))
    }

    /// Sends one picture with the caller's presentation time in milliseconds (`None`: the
    /// session clock), without taking ownership of the bytes.
    pub fn send_video_at(
        &self,
        session: SessionId,
        picture: &[u8],
        timestamp_ms: Option<f64>,
    ) -> Result<()> {
        let s = self.video_of(session)?;
        s.video()
            .map_or(Ok(()), |v| v.send_video(picture, timestamp_ms))
    }

    /// Sends pictures in order, each with its own timestamp (`None`: the session clock).
    pub fn send_video_chunks<I>(&self, session: SessionId, chunks: I) -> Result<()>
    where
        I: IntoIterator<Item = VideoChunk>,
    {
        let s = self.video_of(session)?;
        let Some(v) = s.video() else { return Ok(()) };
        for c in chunks {
            v.send_video(&c.data, c.timestamp_ms)?;
        }
        Ok(())
    }

    /// Asks the remote sender for a key frame (RTCP PLI).
    pub fn request_keyframe(&self, session: SessionId) -> Result<()> {
        self.voice
            .engine
            .request_keyframe(session, KeyframeRequest::Pli)
    }

    /// Asks the remote sender for a key frame with a Full Intra Request (RFC 5104), for peers
    /// that ignore PLI.
    pub fn request_keyframe_fir(&self, session: SessionId) -> Result<()> {
        self.voice
            .engine
            .request_keyframe(session, KeyframeRequest::Fir)
    }

    /// Received video: the primary callback (one; setting it again replaces it).
    pub fn on_video_received<F>(&self, f: F)
    where
        F: Fn(SessionId, &VideoFrame) + Send + Sync + 'static,
    {
        self.voice.engine.callbacks().set_video(f);
    }

    /// Received video: an additional observer (several allowed; called with or without a
    /// primary callback, after it).
    pub fn add_video_tap<F>(&self, f: F)
    where
        F: Fn(SessionId, &VideoFrame) + Send + Sync + 'static,
    {
        self.voice.engine.callbacks().add_video_tap(f);
    }

    /// The video stream of a session is up.
    pub fn on_video_session_ready<F>(&self, f: F)
    where
        F: Fn(&SessionInfo) + Send + Sync + 'static,
    {
        self.voice.engine.callbacks().set_video_session_ready(f);
    }

    /// The remote asked for a key frame (PLI or FIR): make the encoder emit one.
    pub fn on_keyframe_requested<F>(&self, f: F)
    where
        F: Fn(SessionId, KeyframeRequest) + Send + Sync + 'static,
    {
        self.voice.engine.callbacks().set_keyframe(f);
    }
}
