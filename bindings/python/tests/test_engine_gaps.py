"""The engine features roomkit's API needed beyond the first release:

- ``disconnect(session, cause=, text=)`` puts an RFC 3326 ``Reason: Q.850``
  header on the BYE, which roomkit's own SIP backend (aiosipua) reads back;
- ``video.set_video_passthrough(session_id, enabled)`` delivers damaged
  pictures on that session only;
- ``register()`` against a real registrar (Kamailio, digest auth): the right
  password registers, a wrong one raises RuntimeError;
- ``on_audio_played`` reports played audio as roomkit's SIP backend does
  (``played_bytes`` / ``playback_buffer_ms`` / ``playback_ended``).

Counts are floors with margin: the machine may be loaded.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from roomkit.voice.base import VoiceSessionState

from conftest import native_threads, udp_pairs
from roomkit_media.backends import RTPVideoBackend, SIPVoiceBackend
from test_rtp_interop import RATE, paced_audio, tone
from test_sip_roomkit import LOOP, ours, ours_and_theirs, sip_uri, until

REPO = Path(__file__).resolve().parents[3]


# -- Reason on BYE -----------------------------------------------------------


async def reason_checks() -> None:
    before = set(native_threads())
    backend, them, answered, ended = await ours_and_theirs()
    uri, addr = sip_uri(them)
    session = await backend.dial(uri, "sip:us@127.0.0.1", addr, codec=0)
    await until(lambda: bool(answered))
    # A cause out of range is refused before anything is sent: the call stays up.
    for bad in (300, 0, -1, 70_000):
        try:
            await backend.disconnect(session, cause=bad)
            raise AssertionError(f"cause {bad} accepted")
        except ValueError:
            pass
    assert session.state == VoiceSessionState.ACTIVE and backend.get_session(session.id)
    # A line break in the text becomes a space (as roomkit); roomkit reads the Reason back.
    await backend.disconnect(session, cause=21, text="Call rejected\r\nby rule")
    assert session.state == VoiceSessionState.ENDED
    await until(lambda: ended == [answered[0].id])
    assert answered[0].metadata.get("bye_reason") == {
        "cause": 21,
        "text": "Call rejected  by rule",
    }, answered[0].metadata.get("bye_reason")
    await them.close()
    await backend.close()
    assert set(native_threads()) <= before, native_threads()


def test_disconnect_sends_the_q850_reason_roomkit_reads() -> None:
    asyncio.run(reason_checks())


# -- video passthrough -------------------------------------------------------


def damaged_picture(pt: int, seq: int, ts: int) -> list[bytes]:
    """One H.264 picture of two slices whose second loses its middle
    fragment: damaged, with a whole slice still to deliver."""

    def rtp(seq: int, marker: bool, payload: bytes) -> bytes:
        return struct.pack("!BBHII", 0x80, pt | (0x80 if marker else 0), seq & 0xFFFF, ts,
                           0x5EED0002) + payload

    slice_ = b"\x41" + b"\x55" * 199
    return [
        rtp(seq, False, slice_),
        rtp(seq + 1, False, b"\x5c\x81" + b"\x66" * 398),  # FU-A start
        # seq + 2, the middle fragment, is lost
        rtp(seq + 3, True, b"\x5c\x41" + b"\x66" * 398),  # FU-A end
    ]


async def passthrough_checks() -> None:
    before = set(native_threads())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        await feed_two_sessions(sender)
    assert set(native_threads()) <= before, native_threads()


async def feed_two_sessions(sender: socket.socket) -> None:
    sender.bind((LOOP, 0))
    me = sender.getsockname()
    backend = RTPVideoBackend(local_addr=(LOOP, 0), video_local_addr=(LOOP, 0))
    got: dict[str, list[Any]] = {}
    backend.video.on_video_received(lambda s, f: got.setdefault(s.id, []).append(f))
    meta = {"remote_addr": me, "video_remote_addr": me}
    on = await backend.connect("room", "on", "av", metadata=dict(meta))
    off = await backend.connect("room", "off", "av", metadata=dict(meta))
    backend.video.set_video_passthrough(on.id, True)
    backend.video.set_video_passthrough("no-such-session", True)  # ignored, as roomkit
    dests = [backend.video.get_session(s.id).metadata["video_local_addr"] for s in (on, off)]
    for i in range(10):
        for dest in dests:
            for p in damaged_picture(96, 1000 + i * 4, i * 3000):
                sender.sendto(p, (dest[0], dest[1]))
        await asyncio.sleep(0.02)
    # Each picture waits for its lost packet up to the NACK deadline first.
    await until(lambda: len(got.get(on.id, [])) >= 3, 5.0)
    frames = got[on.id]
    assert all(f.metadata["complete"] is False and not f.keyframe for f in frames)

    def dropped() -> int:
        st = backend.stats(off)["video"]
        return int(st["rtp_frames_dropped_incomplete"] + st["rtp_frames_dropped_gated"])

    # The other session counts them as dropped once their NACK deadline has passed.
    await until(lambda: dropped() >= 5, 5.0)
    assert off.id not in got, "the session without passthrough got damaged pictures"
    await backend.close()


def test_passthrough_delivers_damaged_pictures_on_its_session_only() -> None:
    asyncio.run(passthrough_checks())


# -- register() against Kamailio ---------------------------------------------

MODULES = "/usr/lib/x86_64-linux-gnu/kamailio/modules/"
PASSWORD = "s3cret-pw"


def udp_bound(port: int) -> bool:
    """Whether some process bound UDP ``port`` (read from /proc/net/udp)."""
    suffix = f":{port:04X}"
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()  # "sl local_address rem_address ..."
            if len(fields) > 1 and fields[1].endswith(suffix):
                return True
    return False


class Kamailio:
    """Kamailio as a registrar (the repository's tests/kamailio/proxy.cfg), on
    a free loopback port, bounded by ``timeout``. Missing, it FAILS the test."""

    def __init__(self, seconds: int = 60) -> None:
        assert shutil.which("kamailio"), "kamailio is required (Debian: apt-get install kamailio)"
        self.dir = tempfile.TemporaryDirectory(prefix="rkm-py-kamailio-")
        (self.port,) = udp_pairs(1)
        cfg = (
            (REPO / "tests/kamailio/proxy.cfg")
            .read_text()
            .replace("@PORT@", str(self.port))
            .replace("@RUNDIR@", self.dir.name)
            .replace("@MODULES@", MODULES)
            .replace("@PASSWORD@", PASSWORD)
            .replace("@ALGORITHM@", "MD5")
        )
        path = Path(self.dir.name) / "kamailio.cfg"
        path.write_text(cfg)
        self.log = Path(self.dir.name) / "kamailio.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                ["timeout", "-k", "10", str(seconds), "kamailio", "-DD", "-E", "-m", "64",
                 "-M", "8", "-f", str(path), "-P", str(Path(self.dir.name) / "k.pid")],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                start_new_session=True,
            )
        deadline = time.monotonic() + 20
        while not udp_bound(self.port):
            assert time.monotonic() < deadline, f"kamailio did not start: {self.log.read_text()}"
            assert self.proc.poll() is None, f"kamailio exited: {self.log.read_text()}"
            time.sleep(0.05)

    def saved(self) -> list[str]:
        return [l for l in self.log.read_text().splitlines() if "RKM: saved" in l]

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        self.proc.wait(15)
        self.dir.cleanup()


async def register_checks(k: Kamailio) -> None:
    before = set(native_threads())
    backend = ours(SIPVoiceBackend)
    await backend.start()
    await backend.register((LOOP, k.port), username="alice", password=PASSWORD, expires=60)
    # Kamailio logs the binding just after its 200.
    await until(lambda: any("alice@127.0.0.1" in l for l in k.saved()), 5.0)
    try:
        await backend.register((LOOP, k.port), username="bob", password="wrong", expires=60)
        raise AssertionError("a wrong password registered")
    except RuntimeError as e:
        assert "401" in str(e) or "403" in str(e), e
    assert not any("bob@" in l for l in k.saved())
    await backend.close()
    assert set(native_threads()) <= before, native_threads()


def test_register_with_kamailio_digest_auth() -> None:
    k = Kamailio()
    try:
        asyncio.run(register_checks(k))
    finally:
        k.stop()


# -- on_audio_played ---------------------------------------------------------


async def played_checks() -> None:
    before = set(native_threads())
    backend, them, answered, _ = await ours_and_theirs()
    assert backend.supports_playback_callback
    uri, addr = sip_uri(them)
    session = await backend.dial(uri, "sip:us@127.0.0.1", addr, codec=0)
    assert session.metadata["output_sample_rate"] == RATE
    played: list[tuple[Any, Any, float]] = []
    unsubscribe = backend.on_audio_played(
        lambda s, f: played.append((s, f, time.monotonic()))
    )

    # 1 s of speech and a short tail (10 ms): 50 whole packets, then the tail padded.
    pcm = tone(1.01)
    start = time.monotonic()
    await backend.send_audio(session, paced_audio(pcm))
    packet = RATE // 50 * 2
    frames = [f for _, f, _ in played]
    assert all(s is session for s, _, _ in played)
    assert frames[-1].metadata["playback_ended"] is True and frames[-1].data == b""
    sent = frames[:-1]
    assert not any(f.metadata["playback_ended"] for f in sent)
    assert all(len(f.data) == packet and f.sample_rate == RATE for f in sent)
    assert sum(f.metadata["played_bytes"] for f in sent) == len(pcm)
    assert sent[-1].metadata["played_bytes"] == len(pcm) % packet  # the padded tail
    assert b"".join(f.data for f in sent)[: len(pcm)] == pcm
    # Paced: the far end never has much more than the lead (20 ms) and a packet
    # queued; the end comes once the last packet has played (~1.02 s in).
    buffered = [f.metadata["playback_buffer_ms"] for f in sent]
    assert 0 < max(buffered) <= 200, buffered
    assert played[-1][2] - start >= 0.9
    assert frames[-1].metadata["playback_buffer_ms"] <= 200

    # A barge-in: cancel_audio reports the end at once (buffer 0), and nothing follows.
    played.clear()
    task = asyncio.ensure_future(backend.send_audio(session, paced_audio(tone(3.0))))
    await until(lambda: len(played) >= 5)
    assert await backend.cancel_audio(session)
    await task
    ends = [f for _, f, _ in played if f.metadata["playback_ended"]]
    assert len(ends) == 1 and ends[0].metadata["playback_buffer_ms"] == 0.0
    assert played[-1][1] is ends[0]
    count = len(played)
    await asyncio.sleep(0.1)
    assert len(played) == count

    # Unsubscribed: no more reports.
    unsubscribe()
    await backend.send_audio(session, paced_audio(tone(0.1)))
    assert len(played) == count
    await backend.disconnect(session)
    await them.close()
    await backend.close()
    assert set(native_threads()) <= before, native_threads()


def test_on_audio_played_reports_as_roomkit() -> None:
    asyncio.run(played_checks())
