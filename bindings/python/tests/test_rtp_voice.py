"""Our RTPVoiceBackend against roomkit's own (aiortp) RTPVoiceBackend: a paced
stream that cancel_audio (barge-in) stops, and an RTCP BYE reported as an end."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from roomkit.voice.backends import RTPVoiceBackend as TheirVoice
from roomkit.voice.base import AudioChunk

from conftest import native_threads, udp_pairs
from roomkit_media.backends import RTPVoiceBackend
from test_rtp_interop import RATE, frequency, tone

LOOP = "127.0.0.1"


async def chunks(pcm: bytes) -> AsyncIterator[AudioChunk]:
    """The whole stream at once, as a fast TTS would: the backend paces it."""
    step = RATE // 50 * 2
    for i in range(0, len(pcm), step):
        yield AudioChunk(data=pcm[i : i + step], sample_rate=RATE)


async def barge_in() -> None:
    before = set(native_threads())
    a, b = udp_pairs(2)
    theirs = TheirVoice(local_addr=(LOOP, a), remote_addr=(LOOP, b))
    ours = RTPVoiceBackend(local_addr=(LOOP, b), remote_addr=(LOOP, a))
    heard = bytearray()
    theirs.on_audio_received(lambda s, f: heard.extend(f.data))
    ended: list[str] = []
    ours.on_client_disconnected(lambda s: ended.append(s.metadata.get("end_reason", "")))
    mine = await ours.connect("room", "them", "voice")
    other = await theirs.connect("room", "us", "voice")

    start = time.monotonic()
    play = asyncio.ensure_future(ours.send_audio(mine, chunks(tone(3.0))))
    await asyncio.sleep(0.5)
    assert ours.is_playing(mine)
    # Paced, not burst: what the time so far allows (20 ms a packet, plus the lead) went out,
    # not 3 s (150 packets). Bounded by the time that really passed: a loaded loop oversleeps.
    sent = ours.stats(mine)["audio"]["rtp_packets_sent"]
    elapsed = time.monotonic() - start
    assert 10 <= sent <= (elapsed + 0.1) / 0.020 + 5 and sent < 150, (sent, elapsed)
    assert await ours.cancel_audio(mine) is True
    await asyncio.wait_for(play, 1.0)  # ends quietly, no CancelledError
    assert not ours.is_playing(mine)
    stopped = ours.stats(mine)["audio"]["rtp_packets_sent"]
    await asyncio.sleep(0.5)
    assert ours.stats(mine)["audio"]["rtp_packets_sent"] == stopped  # nothing after the cut
    assert len(heard) >= RATE * 2 // 5  # at least 0.2 s arrived...
    assert abs(frequency(bytes(heard)) - 440.0) < 22.0  # ...and it is the tone

    # roomkit's close sends an RTCP BYE: ours reports the end (roomkit's never does).
    await theirs.close()
    deadline = time.monotonic() + 5
    while not ended and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert ended == ["rtcp_bye"] and ours.get_session(mine.id) is None
    assert mine.state.value == "ended"
    await ours.close()
    assert set(native_threads()) <= before


def test_cancel_audio_stops_a_paced_stream_and_bye_ends() -> None:
    asyncio.run(barge_in())
