//! The session API every backend shares: [`MediaBackend`].
//!
//! Sessions of all backends live on one kind of [`MediaEngine`], so every operation on a session
//! (sending, queries, statistics, callbacks) is written once, here, as a provided method. A
//! backend supplies only its engine and how a session ends (an RTP session just closes; a SIP
//! call also sends BYE).

use std::net::SocketAddr;

use crate::engine::{KeyframeRequest, MediaEngine, SessionId, SessionInfo, SessionStats};
use crate::error::Result;
use crate::frame::{AudioFrame, DtmfEvent, VideoChunk, VideoFrame};
use crate::rtp::bwe::RateReason;

pub(crate) mod sealed {
    use super::*;

    /// What a backend provides to the shared session API. Sealed: only this crate's backends
    /// implement [`MediaBackend`](super::MediaBackend).
    pub trait Engine {
        /// The engine the backend's sessions live on.
        fn engine(&self) -> &MediaEngine;

        /// Ends a session the application asked to end. RTP sessions close; SIP backends
        /// override this to hang the call up.
        fn end_session(&self, session: SessionId) -> Result<()> {
            self.engine().disconnect(session)
        }

        /// The signalling side of the metrics (SIP backends).
        fn sip_metrics(&self) -> Option<crate::metrics::SipMetrics> {
            None
        }
    }
}

/// The operations on sessions, the same on every backend (`RtpVoiceBackend`, `RtpVideoBackend`,
/// `SipVoiceBackend`, `SipVideoBackend`). Bring it into scope with
/// `use roomkit_media::backend::MediaBackend` (or `roomkit_media::prelude::*`).
///
/// Sessions are named by their [`SessionId`]. Video operations on a session without video fail
/// with [`Error::State`](crate::Error::State); operations on an ended session with
/// [`Error::NotFound`](crate::Error::NotFound). While the far end holds a SIP call, sending
/// succeeds but nothing goes out.
pub trait MediaBackend: sealed::Engine {
    /// Ends a session: its media threads stop (RTCP BYE is sent), its sockets close and
    /// `on_client_disconnected` runs after its last frames; a SIP call is hung up with BYE.
    fn disconnect(&self, session: SessionId) -> Result<()> {
        self.end_session(session)
    }

    /// The live session `session`, with its current remote addresses.
    fn get_session(&self, session: SessionId) -> Option<SessionInfo> {
        self.engine()
            .session(session)
            .ok()
            .map(|s| s.current_info())
    }

    /// The live session `session` when it carries video.
    fn get_video_session(&self, session: SessionId) -> Option<SessionInfo> {
        self.get_session(session).filter(|s| s.video.is_some())
    }

    /// Live sessions of a room.
    fn list_sessions(&self, room_id: &str) -> Vec<SessionInfo> {
        self.engine().list(Some(room_id))
    }

    /// Live sessions of a room that carry video.
    fn list_video_sessions(&self, room_id: &str) -> Vec<SessionInfo> {
        let mut v = self.list_sessions(room_id);
        v.retain(|s| s.video.is_some());
        v
    }

    /// Every live session.
    fn all_sessions(&self) -> Vec<SessionInfo> {
        self.engine().list(None)
    }

    /// What this backend shows in a metrics scrape: session counts, the RTP counters of every
    /// session (live and ended) summed per media kind, gauges over the live streams, and on
    /// SIP backends the signalling counters and the call-setup histogram. Reads the counters
    /// the backend keeps anyway; see [`crate::metrics`].
    fn metrics(&self) -> crate::metrics::BackendMetrics {
        let mut m = self.engine().metrics();
        m.sip = self.sip_metrics();
        m
    }

    /// This backend's metrics in the Prometheus text format (0.0.4), labelled
    /// `instance="<instance>"` (and `media="audio|video"` for RTP counters). For several
    /// backends in one scrape, or OpenMetrics, use [`crate::metrics::render`].
    fn metrics_text(&self, instance: &str) -> String
    where
        Self: Sized,
    {
        crate::metrics::render(
            &[(instance, self)],
            crate::metrics::MetricsFormat::Prometheus,
        )
    }

    /// Counters of a session.
    fn stats(&self, session: SessionId) -> Result<SessionStats> {
        Ok(self.engine().session(session)?.stats())
    }

    /// Points a session's media at new remote RTP addresses (`None` leaves a stream as it is);
    /// RTCP follows (the same port with rtcp-mux, port + 1 otherwise).
    fn update_remote(
        &self,
        session: SessionId,
        audio: Option<SocketAddr>,
        video: Option<SocketAddr>,
    ) -> Result<()> {
        self.engine().session(session)?.update_remote(audio, video)
    }

    /// Sends 16-bit mono PCM at the session's PCM rate (`SessionInfo.audio.sample_rate`, from the
    /// backend's `audio_sample_rate`) as 20 ms packets of the session's audio codec (PCMU, PCMA,
    /// G.722 or Opus; the last one padded with silence), all at once: pace real-time audio by
    /// calling with each block as it is captured.
    fn send_audio(&self, session: SessionId, pcm: &[i16]) -> Result<()> {
        self.engine().session(session)?.send_audio(pcm)
    }

    /// [`send_audio`](Self::send_audio) of PCM at `rate_hz` (8000, 12000, 16000, 24000, 32000
    /// or 48000), converted to the codec's rate whatever the backend's `audio_sample_rate`: for
    /// an application whose audio comes at several rates (TTS at 24 kHz, prompts at 8 kHz).
    /// Another rate is `Error::InvalidArgument`. A change of rate between calls starts the
    /// converter afresh.
    fn send_audio_at(&self, session: SessionId, pcm: &[i16], rate_hz: u32) -> Result<()> {
        self.engine()
            .session(session)?
            .send_audio_at(pcm, Some(rate_hz))
    }

    /// Sends one audio frame the application encoded itself, lasting `duration_ms`, as one RTP
    /// packet of the session's audio payload type (payload passthrough).
    fn send_audio_payload(
        &self,
        session: SessionId,
        payload: &[u8],
        duration_ms: u32,
    ) -> Result<()> {
        self.engine()
            .session(session)?
            .send_audio_payload(payload, duration_ms)
    }

    /// Sends a DTMF digit (`0-9`, `*`, `#`, `A-D`) as RFC 4733 telephone events. Returns at once;
    /// the packets are paced by the session's thread and digits queue behind each other.
    fn send_dtmf(&self, session: SessionId, digit: char, duration_ms: u32) -> Result<()> {
        self.engine()
            .session(session)?
            .send_dtmf(digit, duration_ms)
    }

    /// Sends one picture (H.264 Annex-B or one raw NAL unit; one VP8 frame), timestamped with
    /// the time since the session started.
    fn send_video(&self, session: SessionId, picture: &[u8]) -> Result<()> {
        self.send_video_at(session, picture, None)
    }

    /// Sends one picture with the caller's presentation time in milliseconds (`None`: the
    /// session clock).
    fn send_video_at(
        &self,
        session: SessionId,
        picture: &[u8],
        timestamp_ms: Option<f64>,
    ) -> Result<()> {
        self.engine()
            .session(session)?
            .send_video(picture, timestamp_ms)
    }

    /// Sends pictures in order, each with its own timestamp (`None`: the session clock).
    fn send_video_chunks<I>(&self, session: SessionId, chunks: I) -> Result<()>
    where
        I: IntoIterator<Item = VideoChunk>,
        Self: Sized,
    {
        self.engine().session(session)?.send_video_chunks(chunks)
    }

    /// Asks the far end's video sender for a key frame with an RTCP PLI.
    fn request_keyframe(&self, session: SessionId) -> Result<()> {
        self.request_keyframe_with(session, KeyframeRequest::Pli)
    }

    /// Asks for a key frame with a Full Intra Request (RFC 5104), for senders that ignore PLI.
    fn request_keyframe_fir(&self, session: SessionId) -> Result<()> {
        self.request_keyframe_with(session, KeyframeRequest::Fir)
    }

    /// Asks for a key frame with the RTCP message of your choice.
    fn request_keyframe_with(&self, session: SessionId, kind: KeyframeRequest) -> Result<()> {
        self.engine().session(session)?.request_keyframe(kind)
    }

    /// Video passthrough for one session (roomkit's `set_video_passthrough`), effective at once
    /// on its live stream: `true` delivers every picture assembled, damaged ones flagged
    /// `complete: false`, without waiting for a keyframe (the backend's `deliver_incomplete` on
    /// and `wait_for_keyframe` off, for this session only); `false` brings back the backend's
    /// settings from the next loss on. It applies to the session's current video stream: video
    /// added later by a SIP re-INVITE starts with the backend's settings.
    fn set_video_passthrough(&self, session: SessionId, enabled: bool) -> Result<()> {
        self.engine()
            .session(session)?
            .set_video_passthrough(enabled)
    }

    /// Received video: the primary callback (one; setting it again replaces it).
    fn on_video_received<F>(&self, f: F)
    where
        F: Fn(SessionId, &VideoFrame) + Send + Sync + 'static,
        Self: Sized,
    {
        self.engine().callbacks().set_video(f);
    }

    /// Received video: an additional observer (several allowed; called with or without a
    /// primary callback, after it).
    fn add_video_tap<F>(&self, f: F)
    where
        F: Fn(SessionId, &VideoFrame) + Send + Sync + 'static,
        Self: Sized,
    {
        self.engine().callbacks().add_video_tap(f);
    }

    /// Received audio: decoded to PCM where the engine has the codec, else passed through
    /// (`AudioFrame::payload`).
    fn on_audio_received<F>(&self, f: F)
    where
        F: Fn(SessionId, &AudioFrame) + Send + Sync + 'static,
        Self: Sized,
    {
        self.engine().callbacks().set_audio(f);
    }

    /// Received DTMF digits.
    fn on_dtmf_received<F>(&self, f: F)
    where
        F: Fn(SessionId, DtmfEvent) + Send + Sync + 'static,
        Self: Sized,
    {
        self.engine().callbacks().set_dtmf(f);
    }

    /// A session was created (for SIP, before the 200 OK is sent).
    fn on_session_ready<F>(&self, f: F)
    where
        F: Fn(&SessionInfo) + Send + Sync + 'static,
        Self: Sized,
    {
        self.engine().callbacks().set_session_ready(f);
    }

    /// The video stream of a session is up (after `on_session_ready`, same session id).
    fn on_video_session_ready<F>(&self, f: F)
    where
        F: Fn(&SessionInfo) + Send + Sync + 'static,
        Self: Sized,
    {
        self.engine().callbacks().set_video_session_ready(f);
    }

    /// A session ended, whoever ended it.
    fn on_client_disconnected<F>(&self, f: F)
    where
        F: Fn(&SessionInfo) + Send + Sync + 'static,
        Self: Sized,
    {
        self.engine().callbacks().set_disconnected(f);
    }

    /// The far end asked for a key frame (PLI or FIR): make the encoder emit one.
    fn on_keyframe_requested<F>(&self, f: F)
    where
        F: Fn(SessionId, KeyframeRequest) + Send + Sync + 'static,
        Self: Sized,
    {
        self.engine().callbacks().set_keyframe(f);
    }

    /// Congestion control (`ResilienceConfig::congestion`) moved its estimate of the session's
    /// video path by more than 5 %: the bitrate (bits per second) to point the encoder at, and
    /// why it moved.
    fn on_target_bitrate<F>(&self, f: F)
    where
        F: Fn(SessionId, u64, RateReason) + Send + Sync + 'static,
        Self: Sized,
    {
        self.engine().callbacks().set_target_bitrate(f);
    }
}
