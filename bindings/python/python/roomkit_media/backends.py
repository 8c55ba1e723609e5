"""roomkit's RTP and SIP backends on the roomkit-media engine.

Drop-in replacements for ``roomkit.voice.backends.RTPVoiceBackend`` /
``SIPVoiceBackend`` and ``roomkit.video.backends.RTPVideoBackend`` /
``SIPVideoBackend``: the same base classes, keyword arguments, coroutines and
callbacks, with roomkit's own ``VoiceSession``, ``VideoSession``,
``AudioFrame``, ``VideoFrame`` and ``DTMFEvent`` objects. The media runs on the
engine's native threads; every callback runs on the asyncio loop (see
:mod:`roomkit_media._bridge`).

Switching a roomkit program over is a change of import::

    # from roomkit.video.backends import RTPVideoBackend, SIPVideoBackend
    from roomkit_media.backends import RTPVideoBackend, SIPVideoBackend
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from roomkit.video.backends.av import AudioVideoBackend
from roomkit.video.base import VideoSession, VideoSessionState
from roomkit.voice.base import VoiceSession, VoiceSessionState

from roomkit_media import _native
from roomkit_media._base import _NativeVideo, _NativeVoice, call, host_port
from roomkit_media._sip import IncomingInvite, SIPVideoBackend, SIPVoiceBackend

__all__ = [
    "IncomingInvite",
    "RTPVideoBackend",
    "RTPVoiceBackend",
    "SIPVideoBackend",
    "SIPVoiceBackend",
]

logger = logging.getLogger("roomkit_media.rtp")


class RTPVoiceBackend(_NativeVoice):
    """Audio over RTP on the native engine (roomkit's ``RTPVoiceBackend``).

    Takes roomkit's keyword arguments with roomkit's defaults. ``port_allocator``
    is not supported (the engine binds the configured address, port 0: any free
    port). Extras, keyword-only: ``queue_len`` (events held for the loop before
    new ones are dropped and counted), ``symmetric_rtp`` (answer wherever a
    session's media first comes from, as aiortp's flag of that name; default
    False) and ``io_threads`` (0, the default: one I/O thread per stream; N: N
    shared threads, for many sessions).

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
        core = _native.RtpCore(
            video=self._VIDEO,
            local_addr=host_port(local_addr),
            remote_addr=None if remote_addr is None else host_port(remote_addr),
            payload_type=payload_type,
            clock_rate=clock_rate,
            dtmf_payload_type=dtmf_payload_type,
            rtcp_interval=rtcp_interval,
            video_local_addr=host_port(native.pop("video_local_addr", ("0.0.0.0", 0))),
            video_remote_addr=native.pop("video_remote_addr", None),
            video_payload_type=native.pop("video_payload_type", 96),
            video_clock_rate=native.pop("video_clock_rate", 90000),
            **native,
        )
        self._setup(core)

    # -- identity -------------------------------------------------------------

    @property
    def name(self) -> str:
        return "RTP"

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
            host_port(remote),
            None if video_remote is None else host_port(video_remote),
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
        self._add_session(session)
        # As roomkit: the socket is up, so the session is ready before connect returns.
        for cb in list(self._session_ready_callbacks):
            call(cb, session)
        self._video_started(session, info, video_remote)
        return session

    def _video_remote(self, metadata: dict[str, Any]) -> Any:
        return None

    def _video_started(self, session: VoiceSession, info: dict[str, Any], remote: Any) -> None:
        pass

    async def disconnect(self, session: VoiceSession) -> None:
        await self.cancel_audio(session)
        nid = session.provider_session_id or session.id
        if not self._drop_session(session):
            return
        try:
            await asyncio.to_thread(self._core.disconnect, nid)
        except (KeyError, RuntimeError):
            pass  # the engine already ended it (remote BYE, timeout) or is closed

    async def close(self) -> None:
        """End every session, stop the loop hook and join the engine's threads.

        No callback runs after this returns."""
        for session in list(self._sessions.values()):
            await self.disconnect(session)
        await self._close_core()

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
            None if remote_addr is None else host_port(remote_addr),
            None if video_remote_addr is None else host_port(video_remote_addr),
        )
        if remote_addr is not None:
            session.metadata["remote_addr"] = remote_addr
        video = getattr(self, "video", None)
        video_session = None if video is None else video.get_session(session.id)
        if video_remote_addr is not None and video_session is not None:
            video_session.metadata["video_remote_addr"] = video_remote_addr

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
        super().__init__(
            video_local_addr=video_local_addr,
            video_remote_addr=None if video_remote_addr is None else host_port(video_remote_addr),
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
