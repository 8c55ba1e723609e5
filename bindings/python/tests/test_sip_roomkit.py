"""Our SIP backends against roomkit's own (aiosipua) SIPVoiceBackend, over real
signalling on loopback, in one asyncio loop.

roomkit's test_av_backend_calls.py drives a mocked SIP backend with fake
INVITEs; here the same assertions hold with roomkit's ``SIPVoiceBackend.dial``
calling our ``SIPVideoBackend`` inside ``RoomKit`` + ``AudioVideoChannel``, and
with our backend calling itself for the calls with video (roomkit's dial offers
audio only). Then our ``dial`` calls roomkit's backend. Audio goes both ways,
either side hangs up, and ``close()`` leaves no engine thread. Every count is a
floor with margin: the machine may be loaded.
"""

from __future__ import annotations

import asyncio
import math
import random
import socket
import struct
from collections.abc import Callable
from typing import Any

from roomkit import AudioVideoChannel, HookExecution, HookTrigger, RoomKit
from roomkit.voice.backends import SIPVoiceBackend as TheirSip
from roomkit.voice.base import AudioChunk, VoiceSessionState
from roomkit.voice.stt.mock import MockSTTProvider
from roomkit.voice.tts.mock import MockTTSProvider

from conftest import native_threads, udp_pairs
from roomkit_media.backends import SIPVideoBackend, SIPVoiceBackend
from test_rtp_interop import RATE, TONE_HZ, frequency, paced_audio, tone

ROOM = "room-1"
LOOP = "127.0.0.1"


def rtp_range(size: int = 16) -> dict[str, int]:
    """A private RTP port range, free when chosen (roomkit binds its ports
    without looking, and other programs share the machine)."""
    for _ in range(100):
        start = random.randrange(20000, 60000, 2)
        held = []
        try:
            for port in range(start, start + size):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                held.append(s)
                s.bind((LOOP, port))
            return {"rtp_port_start": start, "rtp_port_end": start + size}
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError("no free RTP port range on loopback")


def ours(cls: type = SIPVideoBackend, **kw: Any) -> Any:
    (port,) = udp_pairs(1)
    return cls(local_sip_addr=(LOOP, port), local_rtp_ip=LOOP, **rtp_range(), **kw)


async def theirs() -> TheirSip:
    (port,) = udp_pairs(1)
    b = TheirSip(local_sip_addr=(LOOP, port), local_rtp_ip=LOOP, **rtp_range())
    await b.start()
    return b


async def until(ready: Callable[[], bool], seconds: float = 5.0) -> None:
    async with asyncio.timeout(seconds):
        while not ready():
            await asyncio.sleep(0.01)
    for _ in range(10):
        await asyncio.sleep(0)


async def room_answering_calls(backend: Any) -> tuple[RoomKit, AudioVideoChannel, dict]:
    """As roomkit's test: the call is joined to the room from on_call."""
    kit = RoomKit()
    av = AudioVideoChannel("av", stt=MockSTTProvider(), tts=MockTTSProvider(), backend=backend)
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

    @backend.on_call
    async def join(session: Any) -> None:
        await kit.join(ROOM, "av", session=session)

    return kit, av, fired


def sip_uri(backend: Any, user: str = "bot") -> tuple[str, tuple[str, int]]:
    addr = getattr(backend, "local_sip_addr", None) or backend._local_sip_addr
    return f"sip:{user}@{addr[0]}:{addr[1]}", (addr[0], addr[1])


async def roomkit_calls_ours() -> None:
    before = set(native_threads())
    backend = ours()
    await backend.start()
    kit, av, fired = await room_answering_calls(backend)
    heard = bytearray()
    backend.subscribe_audio_received(lambda s, f: heard.extend(f.data))
    traces: list[Any] = []
    backend.set_trace_emitter(traces.append)
    them = await theirs()
    uri, addr = sip_uri(backend)
    their_call = await them.dial(
        uri, "sip:caller@127.0.0.1", addr, extra_headers={"X-Session-ID": "session-1"}
    )

    # The call is reported once, under roomkit's id, with roomkit's metadata.
    await until(lambda: bool(fired["call"]))
    assert fired["call"] == ["session-1"]
    assert "session-1" in av._session_bindings
    session = backend.get_session("session-1")
    m = session.metadata
    assert session.state == VoiceSessionState.ACTIVE
    assert m["backend"] == "sip" and m["call_id"] == their_call.metadata["call_id"]
    # Header names as they came (aiosipua writes X-Session-Id).
    assert {k.lower(): v for k, v in m["x_headers"].items()} == {"x-session-id": "session-1"}
    assert m["input_sample_rate"] == m["output_sample_rate"] == m["codec_sample_rate"] == 8000
    assert m["has_video"] is False and m["caller"].startswith("sip:caller@")
    assert session.participant_id == "session-1"  # roomkit: X-Session-ID, else the caller
    assert backend.get_codec_rate("session-1") == 8000
    # roomkit's ProtocolTrace for the INVITE in and the 200 out, on the loop.
    await until(lambda: any(t.summary.startswith("SIP/2.0 200") for t in traces))
    invite = next(t for t in traces if t.summary.startswith("INVITE "))
    assert invite.direction == "inbound" and invite.protocol == "sip"
    assert invite.metadata["call_id"] == m["call_id"]
    ok = next(t for t in traces if t.summary.startswith("SIP/2.0 200"))
    assert ok.direction == "outbound"
    backend.set_trace_emitter(None)

    # A second INVITE naming the live session id is refused (486), as roomkit does.
    try:
        await them.dial(uri, "sip:other@127.0.0.1", addr,
                        extra_headers={"X-Session-ID": "session-1"}, timeout=5)
        raise AssertionError("a duplicate X-Session-ID was answered")
    except RuntimeError:
        pass

    # Audio both ways: their tone reaches us, ours reaches them.
    got = bytearray()
    them.on_audio_received(lambda s, f: got.extend(f.data))
    await asyncio.gather(
        them.send_audio(their_call, paced_audio(tone(1.0))),
        backend.send_audio(session, paced_audio(tone(1.0))),
    )
    await until(lambda: len(heard) >= RATE and len(got) >= RATE)  # >= 0.5 s of 1 s each
    assert abs(frequency(bytes(heard[-RATE:])) - TONE_HZ) < 20
    assert abs(frequency(bytes(got[-RATE:])) - TONE_HZ) < 20

    # Their BYE ends the call: the channel unbinds it, no video was ever reported.
    await them.disconnect(their_call)
    await until(lambda: "session-1" not in av._session_bindings)
    assert session.state == VoiceSessionState.ENDED
    # aiosipua's hang-up sends RTCP BYE and SIP BYE together: whichever the engine
    # sees first names the end.
    assert session.metadata["end_reason"] in ("remote_hangup", "rtcp_bye")
    assert fired["video_started"] == fired["video_ended"] == []
    await kit.close()
    await them.close()
    await backend.close()
    assert set(native_threads()) <= before, native_threads()


async def video_call_ended_by(side: str) -> None:
    """A call with video (ours calling ours): the call and its video are
    reported once each; a BYE (callee side) or the channel (caller side) ends
    the video once."""
    before = set(native_threads())
    callee = ours()
    caller = ours()
    await callee.start()
    await caller.start()
    kit, av, fired = await room_answering_calls(callee)
    uri, addr = sip_uri(callee)
    out = await caller.dial(uri, "sip:caller@127.0.0.1", addr,
                            extra_headers={"X-Session-ID": "session-1"})
    assert out.id == out.metadata["call_id"] and out.metadata["direction"] == "outbound"
    assert caller.video.get_session(out.id) is not None
    await until(lambda: bool(fired["call"] and fired["video_started"]))
    assert fired["call"] == ["session-1"] and fired["video_started"] == ["session-1"]
    assert callee.video.get_session("session-1") is not None
    session = callee.get_session("session-1")
    assert session.metadata["has_video"] is True

    if side == "bye":
        await caller.disconnect(out)
    else:
        await av.disconnect_session(session, ROOM)
    await until(lambda: bool(fired["video_ended"]))
    assert fired["video_ended"] == ["session-1"]
    assert "session-1" not in av._session_bindings
    assert callee.video.get_session("session-1") is None
    await kit.close()
    await caller.close()
    await callee.close()
    assert fired["call"] == ["session-1"] and fired["video_ended"] == ["session-1"]
    assert set(native_threads()) <= before, native_threads()


async def wide_chunks(seconds: float) -> Any:
    """The test tone as 20 ms AudioChunks at 16 kHz, paced."""
    n = int(16000 * seconds)
    pcm = struct.pack(
        f"<{n}h", *(int(12000 * math.sin(2 * math.pi * TONE_HZ * i / 16000)) for i in range(n))
    )
    for i in range(0, len(pcm), 640):
        yield AudioChunk(data=pcm[i : i + 640], sample_rate=16000)
        await asyncio.sleep(0.02)


async def ours_and_theirs() -> tuple[Any, TheirSip, list[Any], list[str]]:
    """Our SIP voice backend, started, and roomkit's own, which records the calls it answers
    and the ids of those that end."""
    backend = ours(SIPVoiceBackend)
    await backend.start()
    them = await theirs()
    answered: list[Any] = []
    them.on_call(answered.append)
    ended: list[str] = []
    them.on_client_disconnected(lambda s: ended.append(s.id))
    return backend, them, answered, ended


async def ours_calls_roomkit() -> None:
    before = set(native_threads())
    # roomkit's defaults (G.722 first): dial(codec=0) offers PCMU alone, as roomkit's
    # dial does (its far end has no G.722 without aiortp[g722]).
    backend, them, answered, their_end = await ours_and_theirs()
    ready: list[str] = []
    backend.on_session_ready(lambda s: ready.append(s.id))
    uri, addr = sip_uri(them)
    session = await backend.dial(uri, "sip:us@127.0.0.1", addr, room_id="r", codec=0)
    assert session.metadata["audio_codec"] == "PCMU"
    assert session.id == session.metadata["call_id"] and session.room_id == "r"
    assert ready == [session.id]  # before dial returned, as roomkit
    await until(lambda: bool(answered))
    their_session = answered[0]
    assert their_session.metadata["call_id"] == session.id

    heard = bytearray()
    got = bytearray()
    backend.on_audio_received(lambda s, f: heard.extend(f.data))
    them.on_audio_received(lambda s, f: got.extend(f.data))
    rate = session.metadata["output_sample_rate"]
    assert rate == their_session.metadata["codec_sample_rate"]
    await asyncio.gather(
        them.send_audio(their_session, tone(1.0)),
        backend.send_audio(session, paced_audio(tone(1.0))),
    )
    await until(lambda: len(heard) >= rate and len(got) >= RATE)

    # Chunks at 16 kHz on this 8 kHz call are resampled, not played an octave low.
    before_wide = len(got)
    await backend.send_audio(session, wide_chunks(0.6))
    await until(lambda: len(got) - before_wide >= RATE * 2 * 3 // 10)  # >= 0.3 s of 0.6 s
    assert abs(frequency(bytes(got[-RATE // 2:])) - TONE_HZ) < 25

    # Our hang-up reaches them as a BYE.
    await backend.disconnect(session)
    assert session.state == VoiceSessionState.ENDED
    await until(lambda: their_end == [their_session.id])
    await them.close()
    await backend.close()
    assert set(native_threads()) <= before, native_threads()


async def a_refused_dial_raises() -> None:
    before = set(native_threads())
    backend = ours(SIPVoiceBackend)
    await backend.start()
    them = await theirs()
    them.set_invite_filter(lambda call: (403, "Forbidden"))
    uri, addr = sip_uri(them)
    try:
        await backend.dial(uri, "sip:us@127.0.0.1", addr, timeout=5)
        raise AssertionError("a refused call returned")
    except RuntimeError as e:
        assert "403" in str(e)
    await them.close()
    await backend.close()
    assert set(native_threads()) <= before, native_threads()


async def invite_filter_decides() -> None:
    """roomkit's filter contract on our backend: sync or async, ``None``
    answers, ``(status, reason)`` refuses; an undecided call gets 408."""
    before = set(native_threads())
    backend = ours(SIPVoiceBackend, decision_timeout=1.0)
    await backend.start()
    seen: list[Any] = []

    async def slow_lookup(call: Any) -> tuple[int, str] | None:
        seen.append(call)
        tenant = call.x_headers.get("X-Tenant") or call.x_headers.get("X-Tenant".title())
        if tenant == "never":
            await asyncio.sleep(30)  # a lookup that hangs: the engine gives up with 408
        await asyncio.sleep(0.2)  # a database, say
        return None if tenant == "acme" else (404, "Not Found")

    backend.set_invite_filter(slow_lookup)
    answered: list[Any] = []
    backend.on_call(answered.append)
    them = await theirs()
    uri, addr = sip_uri(backend)
    call = await them.dial(uri, "sip:a@127.0.0.1", addr, extra_headers={"X-Tenant": "acme"})
    assert answered and answered[0].metadata["call_id"] == call.metadata["call_id"]
    assert seen[0].call_id == call.metadata["call_id"] and seen[0].caller.startswith("sip:a@")
    for tenant, status in (("other", "404"), ("never", "408")):
        start = asyncio.get_running_loop().time()
        try:
            await them.dial(uri, "sip:a@127.0.0.1", addr, extra_headers={"X-Tenant": tenant},
                            timeout=10)
            raise AssertionError(f"tenant {tenant} was answered")
        except RuntimeError as e:
            assert status in str(e), e
        if tenant == "never":
            assert asyncio.get_running_loop().time() - start >= 0.9
    # A sync filter, and removing it.
    backend.set_invite_filter(lambda call: (403, "Forbidden"))
    try:
        await them.dial(uri, "sip:a@127.0.0.1", addr, timeout=5)
        raise AssertionError("refused call answered")
    except RuntimeError as e:
        assert "403" in str(e)
    backend.set_invite_filter(None)
    await them.dial(uri, "sip:a@127.0.0.1", addr, timeout=5)
    assert len(answered) == 2
    await them.close()
    await backend.close()
    assert set(native_threads()) <= before, native_threads()


async def auth_resolver_checks() -> None:
    """roomkit's resolver on our backend: roomkit's dial with the right digest
    credentials is answered, a wrong password refused (403)."""
    from aiosipua import SipDigestAuth

    before = set(native_threads())
    backend = ours(SIPVoiceBackend)
    await backend.start()
    asked: list[str] = []

    def lookup(user: str) -> str | None:
        asked.append(user)
        return "s3cret" if user == "alice" else None

    assert not backend.has_auth()
    backend.set_auth_resolver(lookup)
    assert backend.has_auth()
    them = await theirs()
    uri, addr = sip_uri(backend)
    call = await them.dial(uri, "sip:alice@127.0.0.1", addr,
                           auth=SipDigestAuth("alice", "s3cret"), timeout=10)
    # roomkit's dial returns on the 200; our session is announced through the loop bridge,
    # which may run just after it.
    await until(lambda: backend.get_session(call.metadata["call_id"]) is not None)
    assert asked[-1] == "alice"
    try:
        await them.dial(uri, "sip:alice@127.0.0.1", addr,
                        auth=SipDigestAuth("alice", "guess"), timeout=10)
        raise AssertionError("a wrong password was answered")
    except RuntimeError as e:
        assert "403" in str(e), e
    await them.close()
    await backend.close()
    assert set(native_threads()) <= before, native_threads()


def test_the_auth_resolver_supplies_passwords() -> None:
    asyncio.run(auth_resolver_checks())


def test_the_invite_filter_decides_later() -> None:
    asyncio.run(invite_filter_decides())


def test_roomkit_dials_our_sip_backend() -> None:
    asyncio.run(roomkit_calls_ours())


def test_a_video_call_ended_by_bye_reports_its_video_once() -> None:
    asyncio.run(video_call_ended_by("bye"))


def test_a_video_call_the_channel_ends_reports_its_video_once() -> None:
    asyncio.run(video_call_ended_by("channel"))


def test_our_dial_calls_roomkit() -> None:
    asyncio.run(ours_calls_roomkit())


def test_a_refused_dial_raises_runtime_error() -> None:
    asyncio.run(a_refused_dial_raises())
