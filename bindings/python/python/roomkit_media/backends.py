"""roomkit's RTP backends on the roomkit-media engine.

Drop-in replacements for ``roomkit.voice.backends.RTPVoiceBackend`` and
``roomkit.video.backends.RTPVideoBackend``: the same base classes, keyword
arguments, coroutines and callbacks, with roomkit's own ``VoiceSession``,
``VideoSession``, ``AudioFrame``, ``VideoFrame`` and ``DTMFEvent`` objects. The
media runs on the engine's native threads; every callback runs on the asyncio
loop (see :mod:`roomkit_media._bridge`).

Switching a roomkit program over is a change of import::

    # from roomkit.video.backends import RTPVideoBackend
    from roomkit_media.backends import RTPVideoBackend
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from roomkit.video.backends.av import AudioVideoBackend, CallVideoBackend
from roomkit.video.base import VideoChunk, VideoSession, VideoSessionState
from roomkit.video.video_frame import VideoFrame
from roomkit.voice.audio_frame import AudioFrame
from roomkit.voice.backends.base import PlaybackErrors, VoiceBackend
from roomkit.voice.base import AudioChunk, VoiceCapability, VoiceSession, VoiceSessionState
from roomkit.voice.pipeline.dtmf.base import DTMFEvent

from roomkit_media import _native
from roomkit_media._bridge import LoopBridge, call

__all__ = ["RTPVideoBackend", "RTPVoiceBackend"]

logger = logging.getLogger("roomkit_media.rtp")

#: How far outbound audio streams may run ahead of real time, seconds: enough
#: to ride over a late chunk, little enough for a barge-in to cut quickly.
AUDIO_LEAD = 0.06

#: End reasons that a local call caused: they need no report (roomkit reports
#: no end the application asked for).
_LOCAL_ENDS = frozenset({"local_hangup", "shutdown"})


def _host_port(addr: Any) -> tuple[str, int]:
    host, port = addr
    return (str(host), int(port))


class RTPVoiceBackend(VoiceBackend):
    """Audio over RTP on the native engine (roomkit's ``RTPVoiceBackend``).

    Takes roomkit's keyword arguments with roomkit's defaults. ``port_allocator``
    is not supported (the engine binds the configured address, port 0: any free
    port). Extras, keyword-only: ``queue_len`` (events held for the loop before
    new ones are dropped and counted).

    Differences from roomkit: RTP sessions the remote end closes (RTCP BYE) or
    lets go silent are reported through ``on_client_disconnected``; the
    received ``AudioFrame.sample_rate`` is the decoded rate (16000 for G.722,
    where roomkit labels it 8000); streamed audio is paced to real time.
    """

    _VIDEO = False

    def __init__(
        self,
        *,
        local_addr: tuple[str, int] = ("0.0.0.0", 0),  # nosec B104
        remote_addr: tuple[str, int] | None = None,
        payload_type: int = 0,
        clock_rate: int = 8000,
        dtmf_payload_type: int = 101,
        rtcp_interval: float = 5.0,
        port_allocator: Any | None = None,
        **native: Any,
    ) -> None:
        if port_allocator is not None:
            raise NotImplementedError("roomkit_media: port_allocator is not supported yet")
        self._local_addr = local_addr
        self._remote_addr = remote_addr
        self._payload_type = payload_type
        self._clock_rate = clock_rate
        self._core = _native.RtpCore(
            video=self._VIDEO,
            local_addr=_host_port(local_addr),
            remote_addr=None if remote_addr is None else _host_port(remote_addr),
            payload_type=payload_type,
            clock_rate=clock_rate,
            dtmf_payload_type=dtmf_payload_type,
            rtcp_interval=rtcp_interval,
            video_local_addr=_host_port(native.pop("video_local_addr", ("0.0.0.0", 0))),
            video_remote_addr=native.pop("video_remote_addr", None),
            video_payload_type=native.pop("video_payload_type", 96),
            video_clock_rate=native.pop("video_clock_rate", 90000),
            **native,
        )
        self._bridge = LoopBridge(self._core, self._on_event)
        self._audio_received_callback: Callable[..., Any] | None = None
        self._session_ready_callbacks: list[Callable[..., Any]] = []
        self._barge_in_callbacks: list[Callable[..., Any]] = []
        self._dtmf_callbacks: list[Callable[..., Any]] = []
        self._disconnect_callbacks: list[Callable[..., Any]] = []
        self._sessions: dict[str, VoiceSession] = {}
        self._playback: dict[str, asyncio.Task[None]] = {}
        self._closed = False

    # -- identity -------------------------------------------------------------

    @property
    def name(self) -> str:
        return "RTP"

    @property
    def capabilities(self) -> VoiceCapability:
        return VoiceCapability.DTMF_SIGNALING | VoiceCapability.INTERRUPTION

    # -- sessions -------------------------------------------------------------

    async def connect(
        self,
        room_id: str,
        participant_id: str,
        channel_id: str,
        *,
        metadata: dict[str, Any] | None = None,
    ) -> VoiceSession:
        if self._closed:
            raise RuntimeError("backend is closed")
        metadata = dict(metadata or {})
        remote = metadata.pop("remote_addr", None) or self._remote_addr
        if remote is None:
            raise ValueError(
                "remote_addr must be provided either in RTPVoiceBackend() "
                "constructor or via metadata['remote_addr'] in connect()"
            )
        video_remote = self._video_remote(metadata)
        self._bridge.attach()
        # Binding sockets and starting a session's threads: off the loop.
        info = await asyncio.to_thread(
            self._core.connect,
            room_id,
            participant_id,
            _host_port(remote),
            None if video_remote is None else _host_port(video_remote),
            None,
        )
        session = VoiceSession(
            id=info["id"],
            room_id=room_id,
            participant_id=participant_id,
            channel_id=channel_id,
            state=VoiceSessionState.ACTIVE,
            provider_session_id=info["id"],
            metadata={
                "payload_type": self._payload_type,
                "clock_rate": self._clock_rate,
                "remote_addr": remote,
                "backend": "rtp",
                "local_addr": info["local_addr"],
                "input_sample_rate": info["sample_rate"],
                "output_sample_rate": info["sample_rate"],
                **metadata,
            },
        )
        self._sessions[session.id] = session
        # As roomkit: the socket is up, so the session is ready before connect returns.
        for cb in list(self._session_ready_callbacks):
            call(cb, session)
        self._video_started(session, info, video_remote)
        return session

    def _video_remote(self, metadata: dict[str, Any]) -> Any:
        return None

    def _video_started(self, session: VoiceSession, info: dict[str, Any], remote: Any) -> None:
        pass

    def _video_ended(self, session_id: str) -> None:
        pass

    async def disconnect(self, session: VoiceSession) -> None:
        await self.cancel_audio(session)
        if self._sessions.pop(session.id, None) is None:
            return
        self._video_ended(session.id)
        session.state = VoiceSessionState.ENDED
        try:
            await asyncio.to_thread(self._core.disconnect, session.id)
        except (KeyError, RuntimeError):
            pass  # the engine already ended it (remote BYE, timeout) or is closed

    def get_session(self, session_id: str) -> VoiceSession | None:
        return self._sessions.get(session_id)

    def list_sessions(self, room_id: str) -> list[VoiceSession]:
        return [s for s in self._sessions.values() if s.room_id == room_id]

    async def close(self) -> None:
        """End every session, stop the loop hook and join the engine's threads.

        No callback runs after this returns."""
        for session in list(self._sessions.values()):
            await self.disconnect(session)
        self._closed = True
        self._bridge.detach()
        await asyncio.to_thread(self._core.close)

    def stats(self, session: VoiceSession) -> dict[str, Any]:
        """The session's RTP counters (not in roomkit): ``{"audio": {...}, "video": ...}``."""
        return self._core.stats(session.id)

    def update_remote(
        self,
        session: VoiceSession,
        remote_addr: tuple[str, int] | None = None,
        video_remote_addr: tuple[str, int] | None = None,
    ) -> None:
        """Point a session's RTP at new remote addresses; ``None`` keeps a
        stream's (not in roomkit). RTCP follows, at port + 1."""
        self._core.update_remote(
            session.id,
            None if remote_addr is None else _host_port(remote_addr),
            None if video_remote_addr is None else _host_port(video_remote_addr),
        )
        if remote_addr is not None:
            session.metadata["remote_addr"] = remote_addr
        video = getattr(self, "video", None)
        video_session = None if video is None else video.get_session(session.id)
        if video_remote_addr is not None and video_session is not None:
            video_session.metadata["video_remote_addr"] = video_remote_addr

    @property
    def events_dropped(self) -> int:
        """Engine events dropped because the loop fell behind (not in roomkit)."""
        return self._core.dropped()

    # -- events from the engine, on the loop ----------------------------------

    def _on_event(self, event: tuple[Any, ...]) -> None:
        kind, sid = event[0], event[1]
        session = self._sessions.get(sid)
        if session is None:
            return
        if kind == "audio":
            cb = self._audio_received_callback
            if cb is not None:
                _, _, pcm, rate, rtp_ts, pt, concealed = event
                frame = AudioFrame(
                    data=pcm,
                    sample_rate=rate,
                    metadata={"rtp_timestamp": rtp_ts, "payload_type": pt, "concealed": concealed},
                )
                call(cb, session, frame)
        elif kind == "dtmf":
            dtmf = DTMFEvent(digit=event[2], duration_ms=float(event[3]))
            for cb in list(self._dtmf_callbacks):
                call(cb, session, dtmf)
        elif kind == "ended":
            if event[2] in _LOCAL_ENDS:
                return
            self._sessions.pop(sid, None)
            session.metadata["end_reason"] = event[2]
            session.state = VoiceSessionState.ENDED
            self._video_ended(sid)
            for cb in list(self._disconnect_callbacks):
                call(cb, session)
        else:
            self._on_video_event(session, event)

    def _on_video_event(self, session: VoiceSession, event: tuple[Any, ...]) -> None:
        pass

    # -- DTMF -----------------------------------------------------------------

    def send_dtmf(self, session: VoiceSession, digit: str, duration_ms: int = 160) -> None:
        if session.id not in self._sessions:
            logger.warning("send_dtmf: no RTP session for %s", session.id)
            return
        self._core.send_dtmf(session.id, digit, int(duration_ms))

    # -- outbound audio -------------------------------------------------------

    def send_audio_sync(self, session: VoiceSession, chunk: AudioChunk) -> None:
        """Send one chunk now (the engine queues it; never blocks)."""
        if session.id in self._sessions and chunk.data:
            self._core.send_audio(session.id, chunk.data)

    async def send_audio(
        self,
        session: VoiceSession,
        audio: bytes | AsyncIterator[AudioChunk],
    ) -> None:
        if session.id not in self._sessions:
            logger.warning("send_audio: no RTP session for %s", session.id)
            return
        with PlaybackErrors(logger, "Error sending audio for session %s", session.id) as play:
            if isinstance(audio, bytes | bytearray | memoryview):
                await asyncio.to_thread(self._core.send_audio, session.id, bytes(audio))
                return
            task = asyncio.ensure_future(self._stream(session, play.watch(audio)))
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

    async def _stream(self, session: VoiceSession, chunks: AsyncIterator[AudioChunk]) -> None:
        """Send chunks as they come, never more than AUDIO_LEAD ahead of real time."""
        rate = session.metadata.get("output_sample_rate", self._clock_rate)
        start = time.monotonic()
        sent = 0.0  # seconds of audio sent
        async for chunk in chunks:
            if not chunk.data:
                continue
            ahead = start + sent - time.monotonic() - AUDIO_LEAD
            if ahead > 0:
                await asyncio.sleep(ahead)
            self._core.send_audio(session.id, chunk.data)
            sent += len(chunk.data) / 2 / rate
        rest = start + sent - time.monotonic()
        if rest > 0:
            await asyncio.sleep(rest)

    async def cancel_audio(self, session: VoiceSession) -> bool:
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
        """Log transcription text (no UI channel in RTP mode)."""
        logger.info("[%s] %s", "User" if role == "user" else "Assistant", text)

    # -- callbacks ------------------------------------------------------------

    def on_audio_received(self, callback: Callable[..., Any]) -> None:
        self._audio_received_callback = callback

    def on_session_ready(self, callback: Callable[..., Any]) -> None:
        self._session_ready_callbacks.append(callback)

    def on_barge_in(self, callback: Callable[..., Any]) -> None:
        self._barge_in_callbacks.append(callback)

    def on_dtmf_received(self, callback: Callable[..., Any]) -> None:
        """Register a callback for inbound DTMF digits (RFC 4733): ``(session, DTMFEvent)``."""
        self._dtmf_callbacks.append(callback)

    def on_client_disconnected(self, callback: Callable[..., Any]) -> Callable[[], None]:
        """Called with the session when the remote end ends it (RTCP BYE, RTP timeout)."""
        self._disconnect_callbacks.append(callback)

        def unsubscribe() -> None:
            if callback in self._disconnect_callbacks:
                self._disconnect_callbacks.remove(callback)

        return unsubscribe


class RTPVideoBackend(RTPVoiceBackend, AudioVideoBackend):
    """Audio and video over RTP on the native engine (roomkit's ``RTPVideoBackend``).

    Extras, keyword-only: ``video_codec`` (``"h264"`` or ``"vp8"``) and
    ``delivery`` (``"nal_unit"``, roomkit's one NAL per frame, or
    ``"access_unit"``, one Annex-B picture per frame). ``video_port_allocator``
    is not supported.
    """

    _VIDEO = True

    def __init__(
        self,
        *,
        video_local_addr: tuple[str, int] = ("0.0.0.0", 0),  # nosec B104
        video_remote_addr: tuple[str, int] | None = None,
        video_payload_type: int = 96,
        video_clock_rate: int = 90000,
        video_port_allocator: Any | None = None,
        **kwargs: Any,
    ) -> None:
        if video_port_allocator is not None:
            raise NotImplementedError("roomkit_media: video_port_allocator is not supported yet")
        self._video_remote_addr = video_remote_addr
        self._video_payload_type = video_payload_type
        self._video_clock_rate = video_clock_rate
        self._frame_sequences: dict[str, int] = {}
        super().__init__(
            video_local_addr=video_local_addr,
            video_remote_addr=None if video_remote_addr is None else _host_port(video_remote_addr),
            video_payload_type=video_payload_type,
            video_clock_rate=video_clock_rate,
            **kwargs,
        )
        self._video = _NativeVideo(self)

    @property
    def name(self) -> str:
        return "RTP-AV"

    @property
    def video(self) -> _NativeVideo:
        """The video of each call, over its parallel video RTP session."""
        return self._video

    def _video_remote(self, metadata: dict[str, Any]) -> Any:
        remote = metadata.pop("video_remote_addr", None) or self._video_remote_addr
        if remote is None:
            raise ValueError(
                "video_remote_addr must be provided either in RTPVideoBackend() "
                "constructor or via metadata['video_remote_addr'] in connect()"
            )
        return remote

    def _video_started(self, session: VoiceSession, info: dict[str, Any], remote: Any) -> None:
        self._frame_sequences[session.id] = 0
        self._video._started(
            VideoSession(
                id=session.id,
                room_id=session.room_id,
                participant_id=session.participant_id,
                channel_id=session.channel_id,
                state=VideoSessionState.ACTIVE,
                provider_session_id=session.id,
                metadata={
                    "payload_type": self._video_payload_type,
                    "clock_rate": self._video_clock_rate,
                    "video_remote_addr": remote,
                    "backend": "rtp-av",
                    "video_local_addr": info.get("video_local_addr"),
                },
            )
        )

    def _video_ended(self, session_id: str) -> None:
        self._frame_sequences.pop(session_id, None)
        self._video._ended(session_id)

    def _on_video_event(self, session: VoiceSession, event: tuple[Any, ...]) -> None:
        if event[0] == "keyframe":
            video_session = self._video.get_session(session.id)
            if video_session is not None:
                for cb in list(self._video._keyframe_callbacks):
                    call(cb, video_session)
            return
        _, sid, data, codec, ts_ms, rtp_ts, keyframe, _native_seq, complete = event
        if not self._video._has_consumers():
            return
        seq = self._frame_sequences.get(sid, 0)
        self._frame_sequences[sid] = seq + 1
        frame = VideoFrame(
            data=data,
            codec=codec,
            timestamp_ms=ts_ms,
            keyframe=keyframe,
            sequence=seq,
            metadata={"rtp_timestamp": rtp_ts, "complete": complete},
        )
        self._video._deliver(sid, frame)

    async def close(self) -> None:
        await super().close()
        self._video._forget()
        self._frame_sequences.clear()


class _NativeVideo(CallVideoBackend):
    """The video of an :class:`RTPVideoBackend`'s calls."""

    _owner: RTPVideoBackend

    def __init__(self, owner: RTPVideoBackend) -> None:
        super().__init__(owner)
        self._keyframe_callbacks: list[Callable[..., Any]] = []

    async def send_video(
        self,
        session: VideoSession,
        video: bytes | AsyncIterator[VideoChunk],
    ) -> None:
        """Send pictures: bytes (one Annex-B picture or NAL, on the session
        clock) or a stream of ``VideoChunk`` (each at its ``timestamp_ms``)."""
        core = self._owner._core
        if self.get_session(session.id) is None:
            logger.warning("send_video: no video session for %s", session.id)
            return
        if isinstance(video, bytes | bytearray | memoryview):
            await asyncio.to_thread(core.send_video, session.id, bytes(video), None)
            return
        async for chunk in video:
            core.send_video(session.id, chunk.data, chunk.timestamp_ms)

    def send_video_sync(self, session: VideoSession, frame: VideoFrame) -> None:
        """Send one frame now, from any thread (the engine queues it)."""
        if self.get_session(session.id) is not None:
            self._owner._core.send_video(session.id, frame.data, frame.timestamp_ms)

    def request_keyframe(self, session: VideoSession) -> None:
        """Ask the remote sender for a key frame (RTCP PLI)."""
        if self.get_session(session.id) is not None:
            self._owner._core.request_keyframe(session.id)

    def on_keyframe_requested(self, callback: Callable[..., Any]) -> None:
        """Called with the video session when the remote end asks for a key
        frame (PLI or FIR): make the encoder emit one (not in roomkit)."""
        self._keyframe_callbacks.append(callback)
