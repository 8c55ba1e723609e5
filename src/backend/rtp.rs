//! `RtpVoiceBackend` and `RtpVideoBackend`: RTP sessions whose addresses the application supplies
//! (configuration, overridden per session by [`ConnectOptions`]).
//!
//! Video is composition, not a copy: `RtpVideoBackend` wraps an `RtpVoiceBackend` whose sessions
//! carry a video stream too. Both run on a [`MediaEngine`], as the SIP backends do, and share
//! every session operation through [`MediaBackend`].

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::ops::Deref;
use std::time::Duration;

use super::api::{sealed, MediaBackend};
use super::resilience::ResilienceConfig;
use crate::codec::h264::PacketizationMode;
use crate::codec::voice::AppRate;
use crate::engine::dispatch::DEFAULT_QUEUE_LEN;
use crate::engine::{
    AudioParams, EngineConfig, MediaEngine, MediaParams, SessionId, SessionInfo, SessionSpec,
    SourcePolicy, StreamConfig, VideoParams,
};
use crate::error::{Error, Result};
use crate::frame::{Delivery, VideoCodec};
use crate::rtp::config::{CcAgreement, DEFAULT_TRANSPORT_CC_ID};
use crate::rtp::fec::FecConfig;
use crate::sdp::AudioCodec;

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
    /// Audio payload type. The codecs of static types 0 (PCMU, default), 8 (PCMA) and 9 (G.722)
    /// are encoded and decoded; a dynamic type is passed through unless `audio_codec` names it.
    pub payload_type: u8,
    /// The RTP clock of the audio; a codec named in `audio_codec` sets its own instead.
    pub clock_rate: u32,
    /// Telephone-event payload type; `None` disables DTMF.
    pub dtmf_payload_type: Option<u8>,
    /// Video payload type (video backend only).
    pub video_payload_type: u8,
    /// The RTP clock of the video (90 kHz for H.264 and VP8).
    pub video_clock_rate: u32,
    /// The video codec sent and expected (video backend only).
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
    /// Events queued per callback thread before new ones are dropped (and counted), or 16 per
    /// live session of the thread when that is more.
    pub callback_queue: usize,
    /// Threads for RTP I/O: 0 (default) one thread per stream, sleeping on its own sockets
    /// (lowest latency for a few calls); N > 0 N shared threads, each waiting in `epoll` on the
    /// sockets of many streams (for many sessions).
    pub io_threads: usize,
    /// SDES CNAME; a random one per backend when `None`.
    pub cname: Option<String>,
    /// RTX (RFC 4588) payload type for video, both ways: our retransmissions go on it (with its
    /// own SSRC, `apt` = `video_payload_type`) and the peer's RTX packets of this type are
    /// repairs. `None` (default): lost packets are re-sent as they were.
    pub rtx_payload_type: Option<u8>,
    /// Loss recovery (NACK), pacing, audio jitter buffer, inactivity timeout and close linger:
    /// the settings every backend shares.
    pub resilience: ResilienceConfig,
    /// The audio codec on `payload_type`, for a dynamic type (Opus: `AudioCodec::Opus`, RTP
    /// clock 48000). The engine codes PCMU, PCMA, G.722 and Opus; other codecs are passed
    /// through. `None` (default): the codec of the static payload type, if the engine codes it.
    pub audio_codec: Option<AudioCodec>,
    /// The PCM rate of `send_audio` and of received frames on a stream the engine codes.
    /// `Auto` (default): 16 kHz for G.722 and Opus, 8 kHz for G.711.
    pub audio_sample_rate: AppRate,
    /// Forward error correction on video, both ways: ULPFEC (RFC 5109) in RED (RFC 2198) on the
    /// payload types given (`FecConfig::default()`: RED 123, ULPFEC 122, as GStreamer's
    /// `rtpredenc`/`rtpulpfecenc` examples use), sized from the peer's reported loss and the RTT.
    /// With no SDP, both ends must be configured alike. `None` (default): off.
    pub video_fec: Option<FecConfig>,
    /// The RTP header-extension ID (one-byte form, 1–14) of the transport-wide sequence number
    /// that congestion control (`resilience.congestion`) stamps and reads; both ends alike.
    /// Default 3 ([`DEFAULT_TRANSPORT_CC_ID`]).
    pub transport_cc_id: u8,
}

impl RtpBackendConfig {
    /// The audio RTP clock: `audio_codec`'s when set, else `clock_rate`.
    fn audio_clock_rate(&self) -> u32 {
        self.audio_codec
            .as_ref()
            .map_or(self.clock_rate, AudioCodec::clock_rate)
    }
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
            io_threads: 0,
            cname: None,
            rtx_payload_type: None,
            resilience: ResilienceConfig::default(),
            audio_codec: None,
            audio_sample_rate: AppRate::Auto,
            video_fec: None,
            transport_cc_id: DEFAULT_TRANSPORT_CC_ID,
        }
    }
}

/// What `connect` takes besides the room and participant: typed remote addresses, and
/// roomkit's metadata map, which may carry the same addresses as text (`remote_addr`,
/// `video_remote_addr`: `ip:port`, `[ipv6]:port` or `host:port`) and is kept as the session's
/// metadata. Precedence, per address: the typed field, then the metadata key, then the backend
/// configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectOptions {
    /// Where to send audio.
    pub remote_addr: Option<SocketAddr>,
    /// Where to send video (video backend).
    pub video_remote_addr: Option<SocketAddr>,
    /// roomkit-compatible metadata, copied into the session's metadata.
    pub metadata: HashMap<String, String>,
    /// SRTP keys for the audio stream (ours to send with, the peer's to receive with), for a
    /// session keyed by the application; `None`: plain RTP.
    pub srtp: Option<crate::SrtpKeys>,
    /// SRTP keys for the video stream (video backend); `None`: plain RTP.
    pub video_srtp: Option<crate::SrtpKeys>,
}

impl ConnectOptions {
    /// Options with typed addresses only.
    pub fn to(remote_addr: SocketAddr, video_remote_addr: Option<SocketAddr>) -> Self {
        ConnectOptions {
            remote_addr: Some(remote_addr),
            video_remote_addr,
            ..ConnectOptions::default()
        }
    }

    /// The audio remote address: typed, else from metadata.
    fn remote(&self) -> Result<Option<SocketAddr>> {
        match self.remote_addr {
            Some(a) => Ok(Some(a)),
            None => metadata_addr(&self.metadata, "remote_addr"),
        }
    }

    /// The video remote address: typed, else from metadata.
    fn video_remote(&self) -> Result<Option<SocketAddr>> {
        match self.video_remote_addr {
            Some(a) => Ok(Some(a)),
            None => metadata_addr(&self.metadata, "video_remote_addr"),
        }
    }
}

impl From<HashMap<String, String>> for ConnectOptions {
    fn from(metadata: HashMap<String, String>) -> Self {
        ConnectOptions {
            metadata,
            ..ConnectOptions::default()
        }
    }
}

impl From<&HashMap<String, String>> for ConnectOptions {
    fn from(metadata: &HashMap<String, String>) -> Self {
        metadata.clone().into()
    }
}

impl From<&ConnectOptions> for ConnectOptions {
    fn from(o: &ConnectOptions) -> Self {
        o.clone()
    }
}

/// RED and ULPFEC need payload types of their own: 0..=127, apart from each other, from the
/// video's and from RTX's (a receiver tells the streams apart by payload type alone).
fn check_fec_payload_types(f: &FecConfig, video: u8, rtx: Option<u8>) -> Result<()> {
    let (red, ulpfec) = (f.red_payload_type, f.ulpfec_payload_type);
    if red > 127 || ulpfec > 127 || red == ulpfec {
        return Err(Error::InvalidArgument(format!(
            "video_fec: RED {red} and ULPFEC {ulpfec} must be two payload types in 0..=127"
        )));
    }
    for (name, pt) in [
        ("video_payload_type", Some(video)),
        ("rtx_payload_type", rtx),
    ] {
        if pt.is_some_and(|pt| pt == red || pt == ulpfec) {
            return Err(Error::InvalidArgument(format!(
                "video_fec: RED {red} / ULPFEC {ulpfec} collide with {name}"
            )));
        }
    }
    Ok(())
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
        cfg.audio_sample_rate
            .validate()
            .map_err(Error::InvalidArgument)?;
        if !(1..=14).contains(&cfg.transport_cc_id) {
            return Err(Error::InvalidArgument(format!(
                "transport_cc_id = {} is not a one-byte header extension ID (1..=14)",
                cfg.transport_cc_id
            )));
        }
        if let Some(f) = &cfg.video_fec {
            check_fec_payload_types(f, cfg.video_payload_type, cfg.rtx_payload_type)?;
        }
        let engine = MediaEngine::new(EngineConfig {
            callback_threads: cfg.callback_threads,
            callback_queue: cfg.callback_queue,
            io_threads: cfg.io_threads,
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

    fn stream_config(
        &self,
        media: MediaParams,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> StreamConfig {
        self.cfg.resilience.stream(StreamConfig {
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
            ..StreamConfig::default()
        })
    }

    /// Creates a session: binds its sockets, starts its threads and fires `on_session_ready`
    /// (and `on_video_session_ready` on the video backend). `options` is a [`ConnectOptions`]
    /// or, as in roomkit, a metadata map (`&HashMap<String, String>`) whose `remote_addr` and
    /// `video_remote_addr` override the configured addresses. On a video backend, without a
    /// video remote address anywhere the call fails (naming `video_remote_addr`) before anything
    /// is opened.
    pub fn connect(
        &self,
        room_id: &str,
        participant_id: &str,
        options: impl Into<ConnectOptions>,
    ) -> Result<SessionInfo> {
        let options = options.into();
        let c = &self.cfg;
        // Every address is resolved before anything is opened, so a refused connect leaves
        // nothing behind.
        let video_remote = if self.with_video {
            Some(
                options
                    .video_remote()?
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
        let remote = options.remote()?.or(c.remote_addr).ok_or_else(|| {
            Error::InvalidArgument(
                "remote_addr must be provided either in the backend config or via \
                     metadata['remote_addr'] in connect()"
                    .into(),
            )
        })?;
        let mut audio = self.stream_config(
            MediaParams::Audio(c.resilience.audio(AudioParams {
                payload_type: c.payload_type,
                clock_rate: c.audio_clock_rate(),
                dtmf_payload_type: c.dtmf_payload_type,
                codec: c.audio_codec.as_ref().and_then(AudioCodec::voice_codec),
                app_rate: c.audio_sample_rate,
                ..AudioParams::default()
            })),
            c.local_addr,
            remote,
        );
        audio.srtp = options.srtp.clone();
        let video = video_remote.map(|vr| {
            self.stream_config(
                MediaParams::Video(c.resilience.video(
                    VideoParams {
                        payload_type: c.video_payload_type,
                        clock_rate: c.video_clock_rate,
                        codec: c.video_codec,
                        delivery: c.delivery,
                        wait_for_keyframe: c.wait_for_keyframe,
                        deliver_incomplete: c.deliver_incomplete,
                        mtu: c.mtu,
                        packetization_mode: c.packetization_mode,
                        ..Default::default()
                    },
                    true,
                    c.rtx_payload_type,
                    // Both ends are configured alike.
                    Some(CcAgreement::transport_cc(c.transport_cc_id)),
                    c.video_fec,
                )),
                c.video_local_addr,
                vr,
            )
        });
        let video = video.map(|mut v| {
            v.srtp = options.video_srtp.clone();
            v
        });
        let mut meta = options.metadata;
        meta.insert(
            "backend".into(),
            if self.with_video { "rtp-av" } else { "rtp" }.into(),
        );
        meta.insert("payload_type".into(), c.payload_type.to_string());
        meta.insert("clock_rate".into(), c.audio_clock_rate().to_string());
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
}

impl sealed::Engine for RtpVoiceBackend {
    fn engine(&self) -> &MediaEngine {
        &self.engine
    }
}

impl MediaBackend for RtpVoiceBackend {}

/// Audio and video RTP sessions: every session has a video stream with the same id.
/// [`RtpVoiceBackend`]'s own calls (`config`) are available through `Deref`.
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

    /// Creates an audio + video session (see [`RtpVoiceBackend::connect`]).
    pub fn connect(
        &self,
        room_id: &str,
        participant_id: &str,
        options: impl Into<ConnectOptions>,
    ) -> Result<SessionInfo> {
        self.voice.connect(room_id, participant_id, options)
    }
}

impl sealed::Engine for RtpVideoBackend {
    fn engine(&self) -> &MediaEngine {
        &self.voice.engine
    }
}

impl MediaBackend for RtpVideoBackend {}
