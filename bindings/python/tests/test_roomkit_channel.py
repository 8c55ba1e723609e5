"""Our RTPVideoBackend inside roomkit itself: RoomKit + AudioVideoChannel, as in
roomkit's test_av_backend_calls.py (there on a mocked SIP backend), here on real
RTP with roomkit's aiortp backend as the far end. The call and its video are
reported started once each on ``kit.join``, audio from the far end reaches the
channel's pipeline, and leaving ends the video once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from roomkit import AudioVideoChannel, HookExecution, HookTrigger, RoomKit
from roomkit.video.backends import RTPVideoBackend as TheirVideo
from roomkit.voice.stt.mock import MockSTTProvider
from roomkit.voice.tts.mock import MockTTSProvider

from conftest import udp_pairs
from roomkit_media.backends import RTPVideoBackend
from test_rtp_interop import paced_audio, tone

ROOM = "room-1"
LOOP = "127.0.0.1"


async def until(ready: Callable[[], bool], seconds: float = 5.0) -> None:
    async with asyncio.timeout(seconds):
        while not ready():
            await asyncio.sleep(0.01)
    for _ in range(10):
        await asyncio.sleep(0)


async def channel_call() -> None:
    a, av_port, b, bv = udp_pairs(4)
    ours = RTPVideoBackend(
        local_addr=(LOOP, b),
        remote_addr=(LOOP, a),
        video_local_addr=(LOOP, bv),
        video_remote_addr=(LOOP, av_port),
    )
    theirs = TheirVideo(
        local_addr=(LOOP, a),
        remote_addr=(LOOP, b),
        video_local_addr=(LOOP, av_port),
        video_remote_addr=(LOOP, bv),
    )
    kit = RoomKit()
    av = AudioVideoChannel("av", stt=MockSTTProvider(), tts=MockTTSProvider(), backend=ours)
    kit.register_channel(av)
    await kit.create_room(room_id=ROOM)
    await kit.attach_channel(ROOM, "av")
    fired: dict[str, list[str]] = {"call": [], "video_started": [], "video_ended": []}
    for trigger, key in (
        (HookTrigger.ON_SESSION_STARTED, "call"),
        (HookTrigger.ON_VIDEO_SESSION_STARTED, "video_started"),
        (HookTrigger.ON_VIDEO_SESSION_ENDED, "video_ended"),
    ):

        async def record(event: Any, ctx: Any, key: str = key) -> None:
            fired[key].append(event.session.id)

        kit.hook(trigger, execution=HookExecution.ASYNC)(record)

    # The channel wired our backend as roomkit's own: audio and video callbacks.
    heard: list[int] = []
    previous = ours.audio_received_callback
    assert previous is not None

    def tap(session: Any, frame: Any) -> None:
        heard.append(len(frame.data))
        previous(session, frame)

    session = await kit.join(ROOM, "av", participant_id="caller")
    ours.on_audio_received(tap)
    await until(lambda: bool(fired["call"]) and bool(fired["video_started"]))
    assert fired["call"] == [session.id]
    assert fired["video_started"] == [session.id]
    assert session.id in av._session_bindings

    other = await theirs.connect(ROOM, "us", "av")
    await theirs.send_audio(other, paced_audio(tone(0.5)))
    await until(lambda: sum(heard) >= 8000 * 2 // 5)  # 0.2 s of the 0.5 s arrived

    await kit.leave(session)
    await until(lambda: bool(fired["video_ended"]))
    assert fired["video_ended"] == [session.id]
    assert ours.get_session(session.id) is None
    await theirs.close()
    await ours.close()
    await kit.close()
    assert fired["call"] == [session.id] and fired["video_ended"] == [session.id]


def test_audio_video_channel_drives_our_backend() -> None:
    asyncio.run(channel_call())
