"""Type stubs of the compiled module roomkit_media._native (src/lib.rs)."""

from typing import Any

class RtpCore:
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
    ) -> None: ...
    def wake_fd(self) -> int: ...
    def dropped(self) -> int: ...
    def drain(self, max: int = 256) -> list[tuple[Any, ...]]: ...
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
    def send_audio(self, session: str, pcm: bytes) -> None: ...
    def send_dtmf(self, session: str, digit: str, duration_ms: int) -> None: ...
    def send_video(self, session: str, data: bytes, timestamp_ms: float | None = None) -> None: ...
    def request_keyframe(self, session: str, fir: bool = False) -> None: ...
    def stats(self, session: str) -> dict[str, dict[str, int] | None]: ...
    def close(self) -> None: ...

def test_clip(
    count: int, width: int = 64, height: int = 48, gop: int = 10
) -> list[tuple[bytes, bool]]: ...
