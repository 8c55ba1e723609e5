"""Our backends against roomkit's own public-signature snapshot (roomkit 0.109.0).

roomkit's ``api_signatures.describe`` reads only members of classes defined in
roomkit; here it also reads ours (``roomkit_media.*``), so an override of ours
that breaks a roomkit caller shows, as a change in roomkit itself would.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from roomkit.video.backends.base import VideoBackend
from roomkit.video.backends.av import AudioVideoBackend
from roomkit.voice.backends.base import VoiceBackend

from roomkit_0_109 import api_signatures
from roomkit_media.backends import (
    RTPVideoBackend,
    RTPVoiceBackend,
    SIPVideoBackend,
    SIPVoiceBackend,
)

SNAPSHOT = json.loads(
    (Path(__file__).parent / "roomkit_0_109" / "public_api_signatures.json").read_text()
)
OURS = {
    "roomkit.voice.backends.RTPVoiceBackend": RTPVoiceBackend,
    "roomkit.video.backends.RTPVideoBackend": RTPVideoBackend,
    "roomkit.voice.backends.SIPVoiceBackend": SIPVoiceBackend,
    "roomkit.video.backends.SIPVideoBackend": SIPVideoBackend,
}


@pytest.fixture(autouse=True)
def _count_our_classes(monkeypatch: pytest.MonkeyPatch) -> None:
    roomkit_only = api_signatures._is_roomkit

    def roomkit_or_ours(obj: object) -> bool:
        module = getattr(obj, "__module__", None) or ""
        return roomkit_only(obj) or module.startswith("roomkit_media")

    monkeypatch.setattr(api_signatures, "_is_roomkit", roomkit_or_ours)


@pytest.mark.parametrize("path", sorted(OURS))
def test_no_break_against_roomkit_snapshot(path: str) -> None:
    ours = api_signatures.describe(OURS[path])
    assert api_signatures.object_breaks(path, SNAPSHOT[path], ours) == []
    # Our own overrides were read (the check is not vacuous).
    assert ours["connect"] == SNAPSHOT[path]["connect"]
    assert "__init__" in ours


def test_every_class_we_replace_is_checked() -> None:
    assert set(SNAPSHOT) == set(OURS)


def test_isinstance_as_roomkit_av_tests() -> None:
    video = RTPVideoBackend(remote_addr=("127.0.0.1", 9), video_remote_addr=("127.0.0.1", 11))
    voice = RTPVoiceBackend(remote_addr=("127.0.0.1", 9))
    try:
        assert isinstance(video, AudioVideoBackend)
        assert not isinstance(video, VideoBackend)
        assert isinstance(video.video, VideoBackend)
        assert isinstance(voice, VoiceBackend)
        assert not isinstance(voice, AudioVideoBackend)
        assert video.name == "RTP-AV" and voice.name == "RTP"
    finally:
        video._core.close()
        voice._core.close()


def test_isinstance_of_the_sip_backends_as_roomkit_av_tests() -> None:
    video = SIPVideoBackend(local_sip_addr=("127.0.0.1", 0), local_rtp_ip="127.0.0.1")
    voice = SIPVoiceBackend(local_sip_addr=("127.0.0.1", 0), local_rtp_ip="127.0.0.1")
    try:
        assert isinstance(video, AudioVideoBackend)
        assert not isinstance(video, VideoBackend)
        assert isinstance(video.video, VideoBackend)
        assert isinstance(voice, VoiceBackend)
        assert not isinstance(voice, AudioVideoBackend)
        assert video.name == "SIP-AV" and voice.name == "SIP"
    finally:
        video._core.close()
        voice._core.close()


def test_a_break_in_ours_is_caught() -> None:
    class Broken(RTPVoiceBackend):
        async def connect(self, room_id, participant_id):  # type: ignore[override]
            raise NotImplementedError

        def send_dtmf(self, session, digit, duration_ms=100):  # type: ignore[override]
            raise NotImplementedError

    Broken.__module__ = "roomkit_media.broken"  # read as one of ours
    path = "roomkit.voice.backends.RTPVoiceBackend"
    breaks = api_signatures.object_breaks(path, SNAPSHOT[path], api_signatures.describe(Broken))
    assert any("connect" in b and "channel_id" in b for b in breaks), breaks
    assert any("send_dtmf" in b and "default" in b for b in breaks), breaks
