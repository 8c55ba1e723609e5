"""The native event queue: bounded, counted drops, eventfd wake-up, batches."""

from __future__ import annotations

import math
import select
import struct
import time

from conftest import native_threads, udp_pairs
from roomkit_media import _native

LOOP = "127.0.0.1"


def core(local: int, remote: int, queue_len: int) -> _native.RtpCore:
    return _native.RtpCore(
        video=False,
        local_addr=(LOOP, local),
        remote_addr=(LOOP, remote),
        payload_type=0,
        clock_rate=8000,
        dtmf_payload_type=101,
        rtcp_interval=5.0,
        video_local_addr=(LOOP, 0),
        video_remote_addr=None,
        video_payload_type=96,
        video_clock_rate=90000,
        queue_len=queue_len,
    )


def readable(fd: int) -> bool:
    return select.select([fd], [], [], 0)[0] == [fd]


def test_full_queue_drops_and_counts_and_the_fd_wakes() -> None:
    before = set(native_threads())
    a, b = udp_pairs(2)
    sender, receiver = core(a, b, 64), core(b, a, 4)
    try:
        sent = sender.connect("r", "p")["id"]
        receiver.connect("r", "p")
        fd = receiver.wake_fd()
        assert not readable(fd)  # nothing waits yet
        # 2 s of PCMU (100 frames) at once; nobody drains the receiver's queue of 4.
        n = 16000
        pcm = struct.pack(f"<{n}h", *(int(8000 * math.sin(i / 3)) for i in range(n)))
        sender.send_audio(sent, pcm)
        sent_at = time.monotonic()
        deadline = time.monotonic() + 10
        while receiver.dropped() < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert receiver.dropped() >= 20  # frames came on, the engine never waited
        # The sender paces the 2 s out: wait until nothing more comes (no new drop for 0.3 s
        # after the last frame's time), so that the drain below sees only what the queue kept.
        last = -1
        while time.monotonic() < deadline:
            now_dropped = receiver.dropped()
            if now_dropped == last and time.monotonic() - sent_at > 2.2:
                break
            last = now_dropped
            time.sleep(0.3)
        assert readable(fd)  # the fd is readable while events wait
        batch = receiver.drain(1000)
        assert 1 <= len(batch) <= 4 and {e[0] for e in batch} == {"audio"}
        kind, _sid, pcm, rate, _ts, pt, _concealed = batch[0]
        assert (rate, pt, len(pcm)) == (8000, 0, 320)  # 20 ms of s16le at 8 kHz
    finally:
        sender.close()
        receiver.close()
    assert set(native_threads()) <= before


def test_drain_takes_batches_and_rearms() -> None:
    a, b = udp_pairs(2)
    sender, receiver = core(a, b, 64), core(b, a, 1000)
    try:
        sent = sender.connect("r", "p")["id"]
        receiver.connect("r", "p")
        fd = receiver.wake_fd()
        sender.send_audio(sent, bytes(2 * 8000))  # 1 s: 50 frames
        select.select([fd], [], [], 10)
        time.sleep(0.5)  # more frames come in while the fd stays armed
        first = receiver.drain(3)
        assert len(first) == 3
        assert readable(fd)  # more wait: re-armed for the next turn
        receiver.drain(1000)
        assert receiver.dropped() == 0
    finally:
        sender.close()
        receiver.close()

