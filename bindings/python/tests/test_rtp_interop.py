"""Our RTPVideoBackend against roomkit's own (aiortp) RTPVideoBackend on loopback.

Both run on one asyncio loop: roomkit's media in Python on the loop, ours on
the engine's threads, bridged to the loop. Audio (a PCMU tone), H.264 pictures
(from the engine's test clip) and DTMF go both ways; a PLI from aiortp reaches
our counters and our keyframe callback. Every count is a floor with margin: the
machine may be loaded.
"""

from __future__ import annotations

import asyncio
import math
import struct
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from roomkit.video._annexb import nal_units
from roomkit.video.backends import RTPVideoBackend as TheirVideo
from roomkit.video.base import VideoChunk
from roomkit.voice.base import AudioChunk

from conftest import native_threads, udp_pairs
from roomkit_media import _native
from roomkit_media.backends import RTPVideoBackend

RATE = 8000
TONE_HZ = 440.0
SECONDS = 1.0
PICTURES = 30
LOOP = "127.0.0.1"


def tone(seconds: float, hz: float = TONE_HZ) -> bytes:
    n = int(RATE * seconds)
    return struct.pack(
        f"<{n}h", *(int(12000 * math.sin(2 * math.pi * hz * i / RATE)) for i in range(n))
    )


def frequency(pcm: bytes) -> float:
    """The tone's frequency from its zero crossings."""
    samples = struct.unpack(f"<{len(pcm) // 2}h", pcm)
    crossings = sum(1 for a, b in zip(samples, samples[1:], strict=False) if (a < 0) != (b < 0))
    return crossings / 2 / (len(samples) / RATE)


async def paced_audio(pcm: bytes) -> AsyncIterator[AudioChunk]:
    step = RATE // 50 * 2  # 20 ms
    for i in range(0, len(pcm), step):
        yield AudioChunk(data=pcm[i : i + step], sample_rate=RATE)
        await asyncio.sleep(0.02)


async def paced_video(pictures: list[tuple[bytes, bool]]) -> AsyncIterator[VideoChunk]:
    for i, (data, key) in enumerate(pictures):
        yield VideoChunk(data=data, codec="h264", timestamp_ms=i * 33.0, keyframe=key)
        await asyncio.sleep(0.033)


async def until(check: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(0.02)
    return check()


def raw_nal(data: bytes) -> bytes:
    """A delivered frame: one NAL unit without a start code, as aiortp delivers."""
    assert not data.startswith((b"\x00\x00\x01", b"\x00\x00\x00\x01"))
    return data


class Peer:
    """What one side received, recorded on the loop thread."""

    def __init__(self) -> None:
        self.audio = bytearray()
        self.audio_rates: set[int] = set()
        self.nals: list[bytes] = []
        self.keyframes = 0
        self.digits: list[str] = []
        self.threads: set[int] = set()

    def on_audio(self, session: Any, frame: Any) -> None:
        self.threads.add(threading.get_ident())
        self.audio += frame.data
        self.audio_rates.add(frame.sample_rate)

    def on_video(self, session: Any, frame: Any) -> None:
        self.threads.add(threading.get_ident())
        self.nals.append(raw_nal(frame.data))
        self.keyframes += frame.keyframe

    def on_dtmf(self, session: Any, event: Any) -> None:
        self.threads.add(threading.get_ident())
        self.digits.append(event.digit)


async def interop() -> None:
    before = set(native_threads())
    a, av, b, bv = udp_pairs(4)
    theirs = TheirVideo(
        local_addr=(LOOP, a),
        remote_addr=(LOOP, b),
        video_local_addr=(LOOP, av),
        video_remote_addr=(LOOP, bv),
    )
    ours = RTPVideoBackend(
        local_addr=(LOOP, b),
        remote_addr=(LOOP, a),
        video_local_addr=(LOOP, bv),
        video_remote_addr=(LOOP, av),
    )
    got_ours, got_theirs = Peer(), Peer()
    ready: list[str] = []
    video_ready: list[str] = []
    video_ended: list[str] = []
    keyframe_asked: list[str] = []
    ours.on_audio_received(got_ours.on_audio)
    ours.video.on_video_received(got_ours.on_video)
    ours.on_dtmf_received(got_ours.on_dtmf)
    ours.on_session_ready(lambda s: ready.append(s.id))
    ours.video.on_session_ready(lambda s: video_ready.append(s.id))
    ours.video.on_client_disconnected(lambda s: video_ended.append(s.id))
    ours.video.on_keyframe_requested(lambda s: keyframe_asked.append(s.id))
    theirs.on_audio_received(got_theirs.on_audio)
    theirs.video.on_video_received(got_theirs.on_video)
    theirs.on_dtmf_received(got_theirs.on_dtmf)

    mine = await ours.connect("room", "them", "av")
    # roomkit's order: the session is ready, its video too, before connect returns.
    assert ready == [mine.id] and video_ready == [mine.id]
    assert native_threads(), "the engine runs on its own threads"
    other = await theirs.connect("room", "us", "av")
    my_video = ours.video.get_session(mine.id)
    their_video = theirs.video.get_session(other.id)

    pictures = _native.test_clip(PICTURES)
    sent_nals = {n for data, _ in pictures for n in nal_units(data)}
    await asyncio.gather(
        ours.send_audio(mine, paced_audio(tone(SECONDS))),
        theirs.send_audio(other, paced_audio(tone(SECONDS, TONE_HZ * 2))),
        ours.video.send_video(my_video, paced_video(pictures)),
        theirs.video.send_video(their_video, paced_video(pictures)),
    )
    ours.send_dtmf(mine, "5")
    theirs.send_dtmf(other, "7")
    # roomkit 0.109's RTP video facet does not override request_keyframe (a
    # no-op); its transport, aiortp, does send a PLI.
    theirs._video_rtp_sessions[other.id].request_keyframe()

    half = int(RATE * SECONDS) * 2 // 2  # bytes of half the tone
    assert await until(
        lambda: len(got_ours.audio) >= half
        and len(got_theirs.audio) >= half
        and got_ours.keyframes >= 1
        and got_theirs.keyframes >= 1
        and "7" in got_ours.digits
        and "5" in got_theirs.digits
        and keyframe_asked,
        5.0,
    ), (
        len(got_ours.audio),
        len(got_theirs.audio),
        got_ours.digits,
        got_theirs.digits,
        (got_ours.keyframes, len(got_ours.nals)),
        (got_theirs.keyframes, len(got_theirs.nals)),
        keyframe_asked,
        ours.stats(mine)["video"],
    )

    # Audio both ways: the right tone at the right rate (floors, not exact counts).
    assert got_ours.audio_rates == {RATE} and got_theirs.audio_rates == {RATE}
    assert abs(frequency(bytes(got_theirs.audio)) - TONE_HZ) < TONE_HZ * 0.05
    assert abs(frequency(bytes(got_ours.audio)) - 2 * TONE_HZ) < 2 * TONE_HZ * 0.05
    # H.264 both ways: NAL units byte-identical to the ones sent, most of them there.
    for got in (got_ours, got_theirs):
        assert set(got.nals) <= sent_nals
        assert len(set(got.nals)) >= len(sent_nals) // 2
    # The PLI reached the engine's counters and our keyframe callback.
    stats = ours.stats(mine)
    assert stats["video"]["rtp_pli_received"] >= 1
    assert stats["audio"]["dtmf_received"] >= 1
    # Every callback ran on the loop thread.
    loop_thread = {threading.get_ident()}
    assert got_ours.threads == loop_thread
    assert ours.events_dropped == 0

    await theirs.close()
    late: list[str] = []
    ours.on_audio_received(lambda s, f: late.append("audio"))
    await ours.close()
    assert video_ended == [mine.id]
    assert mine.state.value == "ended"
    # close() joined the engine's threads, and no callback runs after it.
    assert set(native_threads()) <= before, native_threads()
    await asyncio.sleep(0.2)
    assert late == []


def test_both_ways_against_roomkit() -> None:
    asyncio.run(interop())
