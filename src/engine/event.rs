//! What the I/O threads tell the application, and the callbacks that receive it.
//!
//! Events travel from socket threads to dispatcher threads by value. The callbacks live in one
//! registry shared by every session of a backend, so registering a callback after sessions exist
//! takes effect for them too.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;

use crate::frame::{AudioFrame, DtmfEvent, VideoCodec, VideoFrame};
use crate::rtp::bwe::RateReason;

/// A session's identifier: a random (v4) UUID, shared by its audio and video streams.
pub type SessionId = uuid::Uuid;

pub use crate::rtp::stream::KeyframeRequest;

/// Which stream of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    Audio,
    Video,
}

/// Why a stream's peer is taken to be gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEndReason {
    /// Nothing (RTP or RTCP) arrived from the peer for the stream's inactivity timeout.
    Inactive { silent_for: Duration },
    /// The peer sent RTCP BYE.
    RemoteBye { reason: Option<String> },
    /// The stream's DTLS-SRTP transport failed: the handshake failed (a certificate not
    /// matching the SDP fingerprint...), the peer closed DTLS, or ICE consent expired.
    TransportFailed(crate::webrtc::TransportFailure),
}

/// A stream of a session whose peer has stopped (see [`EngineEvent::StreamEnded`]). When every
/// stream of the session is in that state the engine ends the session (see
/// [`MediaEngine`](super::MediaEngine)); a SIP backend then also hangs up with BYE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEnded {
    pub media: MediaKind,
    pub reason: StreamEndReason,
}

/// Why a session ended, as `on_client_disconnected` sees it in [`SessionInfo::end_reason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EndReason {
    /// The application ended it (`disconnect`, `hangup`).
    LocalHangup,
    /// The far end hung up the SIP call (BYE, or CANCEL before the answer).
    RemoteHangup,
    /// Nothing (RTP or RTCP) arrived from the peer on any stream for the inactivity timeout.
    RtpTimeout,
    /// The peer left every stream; the last one it left with RTCP BYE.
    RtcpBye,
    /// The backend shut down with the session still up.
    Shutdown,
    /// Signalling failed (no answer to our request, a session timer expired, the call could
    /// not go on).
    Error,
    /// The media transport failed: a DTLS-SRTP handshake that failed, or ICE consent expired.
    TransportFailed,
}

impl EndReason {
    /// A short name: `local_hangup`, `remote_hangup`, `rtp_timeout`, `rtcp_bye`, `shutdown`,
    /// `error`, `transport_failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::LocalHangup => "local_hangup",
            EndReason::RemoteHangup => "remote_hangup",
            EndReason::RtpTimeout => "rtp_timeout",
            EndReason::RtcpBye => "rtcp_bye",
            EndReason::Shutdown => "shutdown",
            EndReason::Error => "error",
            EndReason::TransportFailed => "transport_failed",
        }
    }
}

impl std::fmt::Display for EndReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where one stream of a session sends and receives, and what it carries.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamInfo {
    /// The local RTP address (the port actually bound).
    pub local_addr: SocketAddr,
    /// The local RTCP address: the RTP address with rtcp-mux, the next port otherwise.
    pub local_rtcp_addr: SocketAddr,
    /// Where RTP is sent (after latching, where it was first received from).
    pub remote_addr: SocketAddr,
    /// The negotiated RTP payload type.
    pub payload_type: u8,
    /// The RTP clock rate (timestamp units per second).
    pub clock_rate: u32,
    /// The video codec; `None` for audio.
    pub codec: Option<VideoCodec>,
    /// Audio: the PCM rate of `send_audio` and of received frames (the clock rate for formats
    /// the engine passes through). Video: the clock rate.
    pub sample_rate: u32,
    /// The SRTP suite protecting the stream; `None`: plain RTP.
    pub srtp_suite: Option<crate::rtp::srtp::SrtpSuite>,
}

/// A session as the application sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionInfo {
    /// The session's id, as every session operation takes it.
    pub id: SessionId,
    /// The room given to `connect` (SIP: `X-Room-ID`, the dial options' room, or the Call-ID).
    pub room_id: String,
    /// The participant given to `connect` (SIP: the other party's user name).
    pub participant_id: String,
    /// Descriptive values (`backend`, `payload_type`, `clock_rate`, `remote_addr`, ...), in the
    /// spirit of roomkit's session metadata.
    pub metadata: HashMap<String, String>,
    /// The audio stream (every session has one).
    pub audio: StreamInfo,
    /// Present when the session carries video.
    pub video: Option<StreamInfo>,
    /// The metadata of the video session (`backend`, `payload_type`, `clock_rate`,
    /// `video_remote_addr`); empty without video.
    pub video_metadata: HashMap<String, String>,
    /// Why the session ended: set in what `on_client_disconnected` receives, `None` while it
    /// lives.
    pub end_reason: Option<EndReason>,
}

/// One event on its way to the callbacks.
#[derive(Debug)]
pub enum EngineEvent {
    Video(SessionId, VideoFrame),
    Audio(SessionId, AudioFrame),
    Dtmf(SessionId, DtmfEvent),
    KeyframeRequested(SessionId, KeyframeRequest),
    /// Congestion control's new target for the session's video, bits per second, and why.
    TargetBitrate(SessionId, u64, RateReason),
    /// A stream's peer went silent for the inactivity timeout, or sent RTCP BYE. Posted once per
    /// stream and reason (inactivity again only after traffic resumed in between).
    StreamEnded(SessionId, StreamEnded),
    SessionReady(Arc<SessionInfo>),
    VideoSessionReady(Arc<SessionInfo>),
    Disconnected(Arc<SessionInfo>),
}

impl EngineEvent {
    /// The session the event belongs to: the key that keeps its events on one dispatcher thread.
    pub fn session(&self) -> SessionId {
        match self {
            EngineEvent::Video(id, _)
            | EngineEvent::Audio(id, _)
            | EngineEvent::Dtmf(id, _)
            | EngineEvent::KeyframeRequested(id, _)
            | EngineEvent::TargetBitrate(id, ..)
            | EngineEvent::StreamEnded(id, _) => *id,
            EngineEvent::SessionReady(s)
            | EngineEvent::VideoSessionReady(s)
            | EngineEvent::Disconnected(s) => s.id,
        }
    }
}

/// The dispatcher key of a session.
pub fn dispatch_key(id: SessionId) -> u64 {
    let v = id.as_u128();
    (v >> 64) as u64 ^ v as u64
}

pub type VideoCallback = Arc<dyn Fn(SessionId, &VideoFrame) + Send + Sync>;
pub type AudioCallback = Arc<dyn Fn(SessionId, &AudioFrame) + Send + Sync>;
pub type DtmfCallback = Arc<dyn Fn(SessionId, DtmfEvent) + Send + Sync>;
pub type SessionCallback = Arc<dyn Fn(&SessionInfo) + Send + Sync>;
pub type KeyframeCallback = Arc<dyn Fn(SessionId, KeyframeRequest) + Send + Sync>;
pub type StreamEndedCallback = Arc<dyn Fn(SessionId, &StreamEnded) + Send + Sync>;
pub type TargetBitrateCallback = Arc<dyn Fn(SessionId, u64, RateReason) + Send + Sync>;

/// The application's callbacks. Each slot holds at most one callback (setting replaces), except
/// video taps, of which there may be several.
#[derive(Default)]
pub struct Callbacks {
    pub(crate) video: RwLock<Option<VideoCallback>>,
    pub(crate) video_taps: RwLock<Vec<VideoCallback>>,
    pub(crate) audio: RwLock<Option<AudioCallback>>,
    pub(crate) dtmf: RwLock<Option<DtmfCallback>>,
    pub(crate) session_ready: RwLock<Option<SessionCallback>>,
    pub(crate) video_session_ready: RwLock<Option<SessionCallback>>,
    pub(crate) disconnected: RwLock<Option<SessionCallback>>,
    pub(crate) keyframe: RwLock<Option<KeyframeCallback>>,
    pub(crate) stream_ended: RwLock<Option<StreamEndedCallback>>,
    pub(crate) target_bitrate: RwLock<Option<TargetBitrateCallback>>,
}

impl std::fmt::Debug for Callbacks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Callbacks")
            .field("video_taps", &self.video_taps.read().len())
            .finish_non_exhaustive()
    }
}

impl Callbacks {
    /// Sets the primary received-video callback (replacing any earlier one).
    pub fn set_video(&self, f: impl Fn(SessionId, &VideoFrame) + Send + Sync + 'static) {
        *self.video.write() = Some(Arc::new(f));
    }

    /// Adds a video observer, called after the primary callback (or without one).
    pub fn add_video_tap(&self, f: impl Fn(SessionId, &VideoFrame) + Send + Sync + 'static) {
        self.video_taps.write().push(Arc::new(f));
    }

    /// Sets the received-audio callback.
    pub fn set_audio(&self, f: impl Fn(SessionId, &AudioFrame) + Send + Sync + 'static) {
        *self.audio.write() = Some(Arc::new(f));
    }

    /// Sets the received-DTMF callback.
    pub fn set_dtmf(&self, f: impl Fn(SessionId, DtmfEvent) + Send + Sync + 'static) {
        *self.dtmf.write() = Some(Arc::new(f));
    }

    /// Sets the session-ready callback.
    pub fn set_session_ready(&self, f: impl Fn(&SessionInfo) + Send + Sync + 'static) {
        *self.session_ready.write() = Some(Arc::new(f));
    }

    /// Sets the video-session-ready callback.
    pub fn set_video_session_ready(&self, f: impl Fn(&SessionInfo) + Send + Sync + 'static) {
        *self.video_session_ready.write() = Some(Arc::new(f));
    }

    /// Sets the session-ended callback (`SessionInfo::end_reason` says why).
    pub fn set_disconnected(&self, f: impl Fn(&SessionInfo) + Send + Sync + 'static) {
        *self.disconnected.write() = Some(Arc::new(f));
    }

    /// Sets the keyframe-requested callback.
    pub fn set_keyframe(&self, f: impl Fn(SessionId, KeyframeRequest) + Send + Sync + 'static) {
        *self.keyframe.write() = Some(Arc::new(f));
    }

    /// Sets the stream-ended callback: a stream's peer went silent or sent RTCP BYE. It runs on
    /// a callback thread; ending the session from inside it must not wait for that same thread
    /// (hand the work to another thread, as the SIP backends do with their own events).
    pub fn set_stream_ended(&self, f: impl Fn(SessionId, &StreamEnded) + Send + Sync + 'static) {
        *self.stream_ended.write() = Some(Arc::new(f));
    }

    /// Sets the target-bitrate callback (congestion control's estimate moved by more than 5 %).
    pub fn set_target_bitrate(
        &self,
        f: impl Fn(SessionId, u64, RateReason) + Send + Sync + 'static,
    ) {
        *self.target_bitrate.write() = Some(Arc::new(f));
    }

    /// Runs the callbacks for one event. Locks are held only to clone the `Arc`s, so a callback
    /// may register other callbacks without deadlocking.
    pub fn deliver(&self, ev: EngineEvent) {
        match ev {
            EngineEvent::Video(id, frame) => {
                let primary = self.video.read().clone();
                let taps = self.video_taps.read().clone();
                if let Some(cb) = primary {
                    cb(id, &frame);
                }
                for tap in taps {
                    tap(id, &frame);
                }
            }
            EngineEvent::Audio(id, frame) => {
                let cb = self.audio.read().clone();
                if let Some(cb) = cb {
                    cb(id, &frame);
                }
            }
            EngineEvent::Dtmf(id, ev) => {
                let cb = self.dtmf.read().clone();
                if let Some(cb) = cb {
                    cb(id, ev);
                }
            }
            EngineEvent::KeyframeRequested(id, kind) => {
                let cb = self.keyframe.read().clone();
                if let Some(cb) = cb {
                    cb(id, kind);
                }
            }
            EngineEvent::TargetBitrate(id, bps, reason) => {
                let cb = self.target_bitrate.read().clone();
                if let Some(cb) = cb {
                    cb(id, bps, reason);
                }
            }
            EngineEvent::StreamEnded(id, ended) => {
                let cb = self.stream_ended.read().clone();
                if let Some(cb) = cb {
                    cb(id, &ended);
                }
            }
            EngineEvent::SessionReady(s) => {
                let cb = self.session_ready.read().clone();
                if let Some(cb) = cb {
                    cb(&s);
                }
            }
            EngineEvent::VideoSessionReady(s) => {
                let cb = self.video_session_ready.read().clone();
                if let Some(cb) = cb {
                    cb(&s);
                }
            }
            EngineEvent::Disconnected(s) => {
                let cb = self.disconnected.read().clone();
                if let Some(cb) = cb {
                    cb(&s);
                }
            }
        }
    }
}
