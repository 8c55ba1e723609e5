"""What the RTP and SIP backends share: sessions, engine events, audio and video.

A session is roomkit's ``VoiceSession``; its ``provider_session_id`` is the
engine's session id (the same as ``id`` on RTP; SIP names a call after its
``X-Session-ID`` or Call-ID). Events come from the engine through
:class:`~roomkit_media._bridge.LoopBridge` and are handled here, on the loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from roomkit.video.backends.av import CallVideoBackend
from roomkit.video.base import VideoChunk, VideoSession
from roomkit.video.video_frame import VideoFrame
from roomkit.voice.audio_frame import AudioFrame
from roomkit.voice.backends._resample import build_streaming_resampler
from roomkit.voice.backends.base import PlaybackErrors, VoiceBackend
from roomkit.voice.base import AudioChunk, VoiceCapability, VoiceSession, VoiceSessionState
from roomkit.voice.pipeline.dtmf.base import DTMFEvent

from roomkit_media._bridge import LoopBridge, call

logger = logging.getLogger("roomkit_media")

#: How far outbound audio streams may run ahead of real time, seconds: enough
#: to ride over a late chunk, little enough for a barge-in to cut quickly (the
#: packet sent ahead and the one playing are all the caller still hears).
AUDIO_LEAD = 0.02

#: End reasons that a local call caused: they need no report (roomkit reports
#: no end the application asked for).
LOCAL_ENDS = frozenset({"local_hangup", "shutdown"})


def _same(data: bytes) -> bytes:
    return data


def host_port(addr: Any) -> tuple[str, int]:
    host, port = addr
    return (str(host), int(port))


class _NativeVoice(VoiceBackend):
    """The engine side of a roomkit voice backend (not for direct use)."""

    _core: Any
    #: The video facet, on the A/V backends.
    _video: _NativeVideo | None = None

    def _setup(self, core: Any) -> None:
        self._core = core
        self._bridge = LoopBridge(core, self._on_event)
        self._audio_received_callback: Callable[..., Any] | None = None
        self._audio_subscribers: list[Callable[..., Any]] = []
        self._session_ready_callbacks: list[Callable[..., Any]] = []
        self._barge_in_callbacks: list[Callable[..., Any]] = []
        self._dtmf_callbacks: list[Callable[..., Any]] = []
        self._disconnect_callbacks: list[Callable[..., Any]] = []
        self._sessions: dict[str, VoiceSession] = {}
        # The engine's session id -> the session.
        self._by_native: dict[str, VoiceSession] = {}
        self._playback: dict[str, asyncio.Task[None]] = {}
        self._frame_sequences: dict[str, int] = {}
        self._resamplers: dict[tuple[str, int], Callable[[bytes], bytes]] = {}
        self._audio_played_callbacks: list[Callable[..., Any]] = []
        # Per session: when the audio sent so far ends playing at the far end (monotonic s),
        # and a count bumped by each cancel_audio (a stream ends quietly if it moved).
        self._playback_until: dict[str, float] = {}
        self._playback_generation: dict[str, int] = {}
        self._closed = False

    # -- identity -------------------------------------------------------------

    @property
    def capabilities(self) -> VoiceCapability:
        return VoiceCapability.DTMF_SIGNALING | VoiceCapability.INTERRUPTION

    # -- sessions -------------------------------------------------------------

    def _add_session(self, session: VoiceSession) -> None:
        self._sessions[session.id] = session
        self._by_native[session.provider_session_id or session.id] = session

    def _drop_session(self, session: VoiceSession) -> bool:
        """Forget a session and end its video; False if it was already gone."""
        if self._sessions.get(session.id) is not session:
            return False
        del self._sessions[session.id]
        self._by_native.pop(session.provider_session_id or session.id, None)
        for key in [k for k in self._resamplers if k[0] == session.id]:
            del self._resamplers[key]
        self._playback_until.pop(session.id, None)
        self._playback_generation.pop(session.id, None)
        session.state = VoiceSessionState.ENDED
        if self._video is not None:
            self._frame_sequences.pop(session.id, None)
            self._video._ended(session.id)
        return True

    def _native_id(self, session_id: str) -> str:
        session = self._sessions.get(session_id)
        if session is None:
            raise KeyError(session_id)
        return session.provider_session_id or session_id

    def get_session(self, session_id: str) -> VoiceSession | None:
        return self._sessions.get(session_id)

    def list_sessions(self, room_id: str) -> list[VoiceSession]:
        return [s for s in self._sessions.values() if s.room_id == room_id]

    def stats(self, session: VoiceSession) -> dict[str, Any]:
        """The session's RTP counters (not in roomkit): ``{"audio": {...}, "video": ...}``."""
        return self._core.stats(self._native_id(session.id))

    @property
    def events_dropped(self) -> int:
        """Engine events dropped because the loop fell behind (not in roomkit)."""
        return self._core.dropped()

    async def _close_core(self) -> None:
        """Stop the loop hook and join the engine's threads: no callback after."""
        self._closed = True
        self._bridge.detach()
        await asyncio.to_thread(self._core.close)
        if self._video is not None:
            self._video._forget()
        self._frame_sequences.clear()

    # -- events from the engine, on the loop ----------------------------------

    def _on_event(self, event: tuple[Any, ...]) -> None:
        kind, nid = event[0], event[1]
        session = self._by_native.get(nid) if isinstance(nid, str) else None
        if session is None:
            self._on_other_event(event)
            return
        if kind == "audio":
            cb = self._audio_received_callback
            if cb is None and not self._audio_subscribers:
                return
            _, _, pcm, rate, rtp_ts, pt, concealed = event
            frame = AudioFrame(
                data=pcm,
                sample_rate=rate,
                metadata={"rtp_timestamp": rtp_ts, "payload_type": pt, "concealed": concealed},
            )
            if cb is not None:
                call(cb, session, frame)
            for sub in list(self._audio_subscribers):
                call(sub, session, frame)
        elif kind == "dtmf":
            dtmf = DTMFEvent(digit=event[2], duration_ms=float(event[3]))
            for cb in list(self._dtmf_callbacks):
                call(cb, session, dtmf)
        elif kind == "ended":
            if event[2] in LOCAL_ENDS:
                return
            session.metadata["end_reason"] = event[2]
            if self._drop_session(session):
                for cb in list(self._disconnect_callbacks):
                    call(cb, session)
        elif kind == "keyframe":
            video = self._video
            video_session = None if video is None else video.get_session(session.id)
            if video is not None and video_session is not None:
                for cb in list(video._keyframe_callbacks):
                    call(cb, video_session)
        elif kind == "video":
            self._on_video_frame(session, event)
        else:
            self._on_other_event(event)

    def _on_other_event(self, event: tuple[Any, ...]) -> None:
        """Events of no known session (SIP: calls, call progress, registrations)."""

    def _on_video_frame(self, session: VoiceSession, event: tuple[Any, ...]) -> None:
        video = self._video
        if video is None or not video._has_consumers():
            return
        _, _, data, codec, ts_ms, rtp_ts, keyframe, _native_seq, complete = event
        seq = self._frame_sequences.get(session.id, 0)
        self._frame_sequences[session.id] = seq + 1
        frame = VideoFrame(
            data=data,
            codec=codec,
            timestamp_ms=ts_ms,
            keyframe=keyframe,
            sequence=seq,
            metadata={"rtp_timestamp": rtp_ts, "complete": complete},
        )
        video._deliver(session.id, frame)

    # -- DTMF -----------------------------------------------------------------

    def send_dtmf(self, session: VoiceSession, digit: str, duration_ms: int = 160) -> None:
        if session.id not in self._sessions:
            logger.warning("send_dtmf: no session %s", session.id)
            return
        self._core.send_dtmf(self._native_id(session.id), digit, int(duration_ms))

    # -- outbound audio -------------------------------------------------------

    def send_audio_sync(self, session: VoiceSession, chunk: AudioChunk) -> None:
        """Send one chunk now (the engine queues it; never blocks). A chunk at
        another rate than the session's is resampled."""
        if session.id in self._sessions and chunk.data:
            rate = session.metadata.get("output_sample_rate", chunk.sample_rate)
            data = self._resampler(session.id, chunk.sample_rate, rate)(chunk.data)
            self._core.send_audio(self._native_id(session.id), data)
            self._notify_playback(session, data, paced=False)

    def _resampler(self, session_id: str, in_rate: int, out_rate: int) -> Callable[[bytes], bytes]:
        """roomkit's streaming resampler from ``in_rate`` to the session's
        rate, kept per session and input rate (stateful across chunks)."""
        if in_rate == out_rate:
            return _same
        key = (session_id, in_rate)
        r = self._resamplers.get(key)
        if r is None:
            r = self._resamplers[key] = build_streaming_resampler(in_rate, out_rate)
        return r

    async def send_audio(
        self,
        session: VoiceSession,
        audio: bytes | AsyncIterator[AudioChunk],
    ) -> None:
        if session.id not in self._sessions:
            logger.warning("send_audio: no session %s", session.id)
            return
        nid = self._native_id(session.id)
        with PlaybackErrors(logger, "Error sending audio for session %s", session.id) as play:
            if isinstance(audio, bytes | bytearray | memoryview):
                await asyncio.to_thread(self._core.send_audio, nid, bytes(audio))
                self._notify_playback(session, bytes(audio), paced=False)
                return
            task = asyncio.ensure_future(self._stream(session, nid, play.watch(audio)))
            self._playback[session.id] = task
            try:
                await task
            except asyncio.CancelledError:
                # cancel_audio() ends the stream quietly; the caller's own
                # cancellation propagates.
                me = asyncio.current_task()
                if not task.cancelled() or (me is not None and me.cancelling()):
                    raise
            finally:
                if self._playback.get(session.id) is task:
                    del self._playback[session.id]

    async def _stream(
        self, session: VoiceSession, nid: str, chunks: AsyncIterator[AudioChunk]
    ) -> None:
        """Send chunks as they come, in 20 ms packets each sent when due, never
        more than AUDIO_LEAD ahead of real time (the engine sends what it is
        handed at once: a long chunk would leave as a burst)."""
        rate = session.metadata.get("output_sample_rate", 8000)
        packet = rate // 50 * 2  # bytes of 20 ms
        start = time.monotonic()
        sent = 0.0  # seconds of audio sent
        held = b""  # less than one packet, waiting for the next chunk
        generation = self._playback_generation.get(session.id, 0)
        try:
            async for chunk in chunks:
                if not chunk.data:
                    continue
                data = held + self._resampler(session.id, chunk.sample_rate, rate)(chunk.data)
                whole = len(data) - len(data) % packet
                held = data[whole:]
                for i in range(0, whole, packet):
                    ahead = start + sent - time.monotonic() - AUDIO_LEAD
                    if ahead > 0:
                        await asyncio.sleep(ahead)
                    self._core.send_audio(nid, data[i : i + packet])
                    self._notify_playback(session, data[i : i + packet])
                    sent += 0.02
            if held:  # the engine pads the last packet with silence
                self._core.send_audio(nid, held)
                padded = held + bytes(packet - len(held))
                self._notify_playback(session, padded, played_bytes=len(held))
                sent += 0.02
            rest = start + sent - time.monotonic()
            if rest > 0:
                await asyncio.sleep(rest)
        finally:
            # The end of this response's playback, unless cancel_audio already said so.
            if self._playback_generation.get(session.id, 0) == generation:
                self._notify_playback(session, b"", ended=True)

    async def cancel_audio(self, session: VoiceSession) -> bool:
        # As roomkit's SIP backend: playback ends now, reported at once (every time).
        if session.id in self._sessions:
            self._playback_generation[session.id] = (
                self._playback_generation.get(session.id, 0) + 1
            )
            self._playback_until[session.id] = 0.0
            self._notify_playback(session, b"", ended=True)
        task = self._playback.pop(session.id, None)
        if task is None or task.done():
            return False
        task.cancel()
        return True

    def is_playing(self, session: VoiceSession) -> bool:
        task = self._playback.get(session.id)
        return task is not None and not task.done()

    async def send_transcription(
        self, session: VoiceSession, text: str, role: str = "user"
    ) -> None:
        """Log transcription text (no UI channel over RTP)."""
        logger.info("[%s] %s", "User" if role == "user" else "Assistant", text)

    def _notify_playback(
        self,
        session: VoiceSession,
        pcm: bytes,
        *,
        ended: bool = False,
        played_bytes: int | None = None,
        paced: bool = True,
    ) -> None:
        """Report audio handed to the engine to ``on_audio_played``, as roomkit's
        SIP backend does (its ``_notify_sip_playback``): the PCM sent, at the
        session's rate, with ``played_bytes`` (the speech in it: the padding of a
        last short packet is not), ``playback_buffer_ms`` (how much sent audio
        the far end has still to play; 0 for unpaced sends) and
        ``playback_ended`` (an empty frame at the end of a response, or when
        ``cancel_audio`` cuts it)."""
        if not self._audio_played_callbacks:
            return
        now = time.monotonic()
        until = self._playback_until.get(session.id, 0.0)
        rate = session.metadata.get("output_sample_rate", 8000)
        if pcm and paced:
            until = self._playback_until[session.id] = max(now, until) + len(pcm) / (rate * 2)
        frame = AudioFrame(
            data=pcm,
            sample_rate=rate,
            metadata={
                "played_bytes": len(pcm) if played_bytes is None else played_bytes,
                "playback_buffer_ms": max(0.0, (until - now) * 1000) if paced else 0.0,
                "playback_ended": ended,
            },
        )
        for cb in tuple(self._audio_played_callbacks):
            call(cb, session, frame)

    # -- callbacks ------------------------------------------------------------

    def on_audio_received(self, callback: Callable[..., Any]) -> None:
        self._audio_received_callback = callback

    def on_session_ready(self, callback: Callable[..., Any]) -> None:
        self._session_ready_callbacks.append(callback)

    def on_barge_in(self, callback: Callable[..., Any]) -> None:
        self._barge_in_callbacks.append(callback)

    def on_dtmf_received(self, callback: Callable[..., Any]) -> Any:
        """Register a callback for inbound DTMF digits (RFC 4733): ``(session, DTMFEvent)``."""
        self._dtmf_callbacks.append(callback)
        return callback

    def on_client_disconnected(self, callback: Callable[..., Any]) -> Callable[[], None]:
        """Called with the session when the remote end ends it."""
        self._disconnect_callbacks.append(callback)

        def unsubscribe() -> None:
            if callback in self._disconnect_callbacks:
                self._disconnect_callbacks.remove(callback)

        return unsubscribe


class _NativeVideo(CallVideoBackend):
    """The video of an A/V backend's calls (its ``video`` facet)."""

    _owner: Any

    def __init__(self, owner: Any) -> None:
        super().__init__(owner)
        self._keyframe_callbacks: list[Callable[..., Any]] = []

    def _native_id(self, session: VideoSession) -> str | None:
        if self.get_session(session.id) is None:
            return None
        try:
            return self._owner._native_id(session.id)
        except KeyError:
            return None

    async def send_video(
        self,
        session: VideoSession,
        video: bytes | AsyncIterator[VideoChunk],
    ) -> None:
        """Send pictures: bytes (one Annex-B picture or NAL, on the session
        clock) or a stream of ``VideoChunk`` (each at its ``timestamp_ms``)."""
        core = self._owner._core
        nid = self._native_id(session)
        if nid is None:
            logger.warning("send_video: no video session for %s", session.id)
            return
        if isinstance(video, bytes | bytearray | memoryview):
            await asyncio.to_thread(core.send_video, nid, bytes(video), None)
            return
        async for chunk in video:
            core.send_video(nid, chunk.data, chunk.timestamp_ms)

    def send_video_sync(self, session: VideoSession, frame: VideoFrame) -> None:
        """Send one frame now, from any thread (the engine queues it)."""
        nid = self._native_id(session)
        if nid is not None:
            self._owner._core.send_video(nid, frame.data, frame.timestamp_ms)

    def request_keyframe(self, session: VideoSession) -> None:
        """Ask the remote sender for a key frame (RTCP PLI)."""
        nid = self._native_id(session)
        if nid is not None:
            self._owner._core.request_keyframe(nid)

    def set_video_passthrough(self, session_id: str, enabled: bool = True) -> None:
        """Passthrough for one session, at once: every picture assembled is
        delivered, damaged ones with ``metadata["complete"]`` False, with no
        wait for a keyframe (for bridges whose far decoder recovers by itself);
        ``False`` brings back the backend's behaviour. Unknown sessions are
        ignored, as roomkit does."""
        session = self.get_session(session_id)
        nid = None if session is None else self._native_id(session)
        if nid is None:
            return
        try:
            self._owner._core.set_video_passthrough(nid, bool(enabled))
        except (KeyError, RuntimeError):
            pass  # ended meanwhile
        logger.info(
            "Video passthrough %s: session=%s", "enabled" if enabled else "disabled", session_id
        )

    def on_keyframe_requested(self, callback: Callable[..., Any]) -> None:
        """Called with the video session when the remote end asks for a key
        frame (PLI or FIR): make the encoder emit one (not in roomkit)."""
        self._keyframe_callbacks.append(callback)
