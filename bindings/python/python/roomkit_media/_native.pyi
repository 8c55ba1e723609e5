"""Type stubs of the compiled module roomkit_media._native (src/lib.rs, src/sip.rs)."""

from typing import Any

class MediaCore:
    """The base of both cores: the engine backend, its event queue and the session calls
    that are the same on RTP and SIP. Not created directly."""

    def wake_fd(self) -> int: ...
    def dropped(self) -> int: ...
    def drain(self, max: int = 256) -> list[tuple[Any, ...]]: ...
    def send_audio(self, session: str, pcm: bytes) -> None: ...
    def send_dtmf(self, session: str, digit: str, duration_ms: int) -> None: ...
    def send_video(self, session: str, data: bytes, timestamp_ms: float | None = None) -> None: ...
    def set_video_passthrough(self, session: str, enabled: bool) -> None: ...
    def request_keyframe(self, session: str, fir: bool = False) -> None: ...
    def stats(self, session: str) -> dict[str, dict[str, int] | None]: ...
    def close(self) -> None: ...

class RtpCore(MediaCore):
    """One engine RTP backend (voice, or voice + video) and its event queue."""

    def __init__(
        self,
        *,
        video: bool,
        local_addr: tuple[str, int],
        remote_addr: tuple[str, int] | None,
        payload_type: int,
        clock_rate: int,
        dtmf_payload_type: int | None,
        rtcp_interval: float,
        video_local_addr: tuple[str, int],
        video_remote_addr: tuple[str, int] | None,
        video_payload_type: int,
        video_clock_rate: int,
        video_codec: str = "h264",
        delivery: str = "nal_unit",
        queue_len: int = 8192,
        symmetric_rtp: bool = False,
        io_threads: int = 0,
    ) -> None: ...
    def connect(
        self,
        room_id: str,
        participant_id: str,
        remote_addr: tuple[str, int] | None = None,
        video_remote_addr: tuple[str, int] | None = None,
        metadata: dict[str, str] | None = None,
    ) -> dict[str, Any]: ...
    def disconnect(self, session: str) -> None: ...
    def update_remote(
        self,
        session: str,
        remote_addr: tuple[str, int] | None = None,
        video_remote_addr: tuple[str, int] | None = None,
    ) -> None: ...

def test_clip(
    count: int, width: int = 64, height: int = 48, gop: int = 10
) -> list[tuple[bytes, bool]]: ...

class SipCore(MediaCore):
    """One engine SIP backend (voice, or voice + video) and its event queue.

    ``drain`` also yields ``("call", id, info, roomkit_id)``,
    ``("call_state", id, state, status, reason)`` and
    ``("registration", reg_id, state, status, reason, expires)`` and, while
    filtering, ``("invite", None, {call_id, caller, callee, ...})``.
    """

    def __init__(
        self,
        *,
        video: bool,
        local_sip_addr: tuple[str, int],
        local_rtp_ip: str,
        advertised_ip: str | None,
        rtp_port_start: int,
        rtp_port_end: int,
        supported_codecs: list[int],
        supported_video_codecs: list[str],
        user_agent: str | None,
        symmetric_rtp: bool,
        rtp_inactivity_timeout: float,
        max_sessions: int,
        auth_users: dict[str, str] | None,
        auth_realm: str,
        audio_sample_rate: int | None = None,
        decision_timeout: float = 20.0,
        queue_len: int = 8192,
    ) -> None: ...
    def start(self) -> tuple[str, int]: ...
    def dial(
        self,
        to: str,
        from_uri: str | None = None,
        proxy: tuple[str, int] | None = None,
        headers: list[tuple[str, str]] | None = None,
        room_id: str | None = None,
        ring_timeout: float | None = None,
        audio_only: bool = False,
        credentials: tuple[str, str] | None = None,
        codecs: list[int] | None = None,
    ) -> tuple[str, str]: ...
    def set_filtering(self, on: bool) -> None: ...
    def set_tracing(self, on: bool) -> None: ...
    def set_auth_resolver(self, resolver: Any | None) -> None: ...
    def decide(self, call_id: str, status: int) -> None: ...
    def hangup(self, session: str, cause: int | None = None, text: str | None = None) -> None: ...
    def session(self, session: str) -> dict[str, Any] | None: ...
    def register(
        self,
        aor: str,
        registrar: str | None = None,
        proxy: tuple[str, int] | None = None,
        credentials: tuple[str, str] | None = None,
        expires: int = 3600,
    ) -> int: ...
    def unregister(self, registration: int) -> None: ...
