"""roomkit's SIP backends on the engine's SIP user agent (``SipCore``).

Calls keep roomkit's identities and order: an incoming call's session id is
its ``X-Session-ID`` or its Call-ID (a second INVITE naming a live one gets
486, refused natively before any port is taken); once the engine has answered
it, ``on_call`` fires, then ``on_session_ready``, then the video facet's ready.
A dialed call's session id is its Call-ID; ``dial`` returns once it is
answered and fires the same callbacks first.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from roomkit.core.callbacks import subscribe_callback
from roomkit.models.trace import ProtocolTrace
from roomkit.video.backends.av import AudioVideoBackend
from roomkit.video.base import VideoSession, VideoSessionState
from roomkit.voice.base import VoiceSession, VoiceSessionState

from roomkit_media import _native
from roomkit_media._base import _NativeVideo, _NativeVoice, call, host_port

__all__ = ["IncomingInvite", "SIPVideoBackend", "SIPVoiceBackend"]

logger = logging.getLogger("roomkit_media.sip")

#: roomkit keyword arguments whose behaviour the engine has no twin of, with
#: roomkit's defaults: a different value warns that it is not applied.
_UNMATCHED = {
    "dtmf_payload_type": 101,
    "server_name": "-",
    "jitter_capacity": 32,
    "jitter_prefetch": 0,
    "skip_audio_gaps": True,
    "plc": True,
    "cn": False,
    "cn_payload_type": 13,
    "playout": False,
    "playout_max_delay_ms": 200,
    "duplicate_tx": False,
    "rtp_establishment_timeout": 60.0,
    "send_silence_on_answer": 0.0,
    "outbound_silence_fill": False,
    "pacer_prebuffer_ms": 80,
    "pacer_jitter_headroom_ms": 60,
}

@dataclass
class IncomingInvite:
    """A new INVITE as ``set_invite_filter``'s filter sees it: the fields of
    aiosipua's ``IncomingCall`` that a filter reads."""

    call_id: str
    caller: str
    callee: str
    caller_display_name: str | None = None
    x_headers: dict[str, str] = field(default_factory=dict)
    source_addr: tuple[str, int] = ("", 0)
    offers_video: bool = False

    @property
    def room_id(self) -> str | None:
        """``X-Room-ID``, when the caller sent one."""
        return self._header("x-room-id")

    @property
    def session_id(self) -> str | None:
        """``X-Session-ID``, when the caller sent one."""
        return self._header("x-session-id")

    def _header(self, name: str) -> str | None:
        return next((v for k, v in self.x_headers.items() if k.lower() == name), None)

    @classmethod
    def from_event(cls, d: dict[str, Any]) -> IncomingInvite:
        return cls(
            call_id=d["call_id"],
            caller=d["caller"],
            callee=d["callee"],
            caller_display_name=d["caller_display_name"],
            x_headers=dict(d["x_headers"]),
            source_addr=tuple(d["source"]),
            offers_video=d["offers_video"],
        )


#: How long ``register`` waits for the registrar's first answer (as roomkit).
REGISTER_WAIT = 5.0


class SIPVoiceBackend(_NativeVoice):
    """SIP calls on the native engine (roomkit's ``SIPVoiceBackend``).

    Takes roomkit's keyword arguments with roomkit's defaults. Those the engine
    has no twin of (``jitter_*``, ``plc``, ``cn``, ``playout*``,
    ``duplicate_tx``, ``pacer_*``, ...) warn when set to anything but their
    default. ``supported_codecs`` are payload types: 0 PCMU, 8 PCMA, 9 G.722,
    and ours, 111 Opus. Extras, keyword-only: ``audio_sample_rate`` (the PCM
    rate of every call; default: 16000 for G.722/Opus, 8000 for G.711),
    ``decision_timeout`` (seconds an INVITE waits for the invite filter before
    408; default 20) and ``queue_len``.

    ``dial(codec=...)`` offers that one codec, as roomkit. ``on_audio_played``
    reports each 20 ms packet of streamed audio as it is sent, with roomkit's
    ``played_bytes`` / ``playback_buffer_ms`` / ``playback_ended`` metadata.
    Differences from roomkit: the invite filter gets an
    :class:`IncomingInvite`, not aiosipua's call (it cannot answer or reject
    by itself: it returns its verdict); the trace emitter sees every SIP
    message, not only INVITE/200/BYE; ``disconnect``'s ``text`` keeps its
    quotes (escaped) where roomkit strips them.
    """

    _VIDEO = False

    def __init__(
        self,
        *,
        local_sip_addr: tuple[str, int] = ("0.0.0.0", 5060),  # nosec B104
        local_rtp_ip: str = "0.0.0.0",  # nosec B104
        advertised_ip: str | None = None,
        rtp_port_start: int = 10000,
        rtp_port_end: int = 20000,
        supported_codecs: list[int] | None = None,
        dtmf_payload_type: int = 101,
        user_agent: str | None = None,
        server_name: str = "-",
        jitter_capacity: int = 32,
        jitter_prefetch: int = 0,
        skip_audio_gaps: bool = True,
        plc: bool = True,
        cn: bool = False,
        cn_payload_type: int = 13,
        playout: bool = False,
        playout_max_delay_ms: int = 200,
        duplicate_tx: bool = False,
        symmetric_rtp: bool = False,
        rtp_inactivity_timeout: float = 30.0,
        rtp_establishment_timeout: float = 60.0,
        max_sessions: int = 0,
        auth_users: dict[str, str] | None = None,
        auth_realm: str = "roomkit",
        send_silence_on_answer: float = 0.0,
        outbound_silence_fill: bool = False,
        pacer_prebuffer_ms: float = 80,
        pacer_jitter_headroom_ms: float = 60,
        **native: Any,
    ) -> None:
        given = locals()
        for name, default in _UNMATCHED.items():
            if given[name] != default:
                warnings.warn(
                    f"roomkit_media: SIP {name}={given[name]!r} is not applied by the engine",
                    stacklevel=2,
                )
        self._auth_users = auth_users
        self._invite_filter: Callable[..., Any] | None = None
        self._auth_resolver: Callable[[str], str | None] | None = None
        self._trace_emitter: Callable[..., Any] | None = None
        self._supported_codecs = supported_codecs or [9, 0, 8]
        core = _native.SipCore(
            video=self._VIDEO,
            local_sip_addr=host_port(local_sip_addr),
            local_rtp_ip=local_rtp_ip,
            advertised_ip=advertised_ip,
            rtp_port_start=rtp_port_start,
            rtp_port_end=rtp_port_end,
            supported_codecs=self._supported_codecs,
            supported_video_codecs=native.pop("supported_video_codecs", None) or ["H264"],
            user_agent=user_agent,
            symmetric_rtp=symmetric_rtp,
            rtp_inactivity_timeout=rtp_inactivity_timeout,
            max_sessions=max_sessions,
            auth_users=auth_users,
            auth_realm=auth_realm,
            **native,
        )
        self._setup(core)
        self._on_call_callback: Callable[..., Any] | None = None
        # Pending dials and registrations: the engine's id -> their Future.
        self._dials: dict[str, asyncio.Future[tuple[str, int, str]]] = {}
        self._registrations: dict[Any, asyncio.Future[tuple[str, int, str]]] = {}
        # Outcomes that came before their waiter: the engine's answer may be
        # drained before the coroutine that dialed or registered resumes.
        self._early: dict[Any, tuple[str, int, str]] = {}
        self._filter_tasks: set[asyncio.Task[None]] = set()
        self._local_sip_addr: tuple[str, int] | None = None

    @property
    def name(self) -> str:
        return "SIP"

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Bind the SIP socket and answer calls from now on."""
        self._bridge.attach()
        self._local_sip_addr = await asyncio.to_thread(self._core.start)
        logger.info("SIP backend listening on %s:%d", *self._local_sip_addr)

    @property
    def local_sip_addr(self) -> tuple[str, int] | None:
        """The bound SIP ``(host, port)`` once started (not in roomkit)."""
        return self._local_sip_addr

    async def connect(
        self,
        room_id: str,
        participant_id: str,
        channel_id: str,
        *,
        metadata: dict[str, Any] | None = None,
    ) -> VoiceSession:
        """Return the call named by ``metadata["session_id"]`` (SIP sessions
        come from calls, not from ``connect``), as roomkit does."""
        session_id = (metadata or {}).get("session_id")
        session = None if session_id is None else self._sessions.get(session_id)
        if session is None:
            raise ValueError(
                "SIP sessions are created by incoming calls or dial(); "
                "pass metadata={'session_id': ...} of a live call"
            )
        session.room_id = room_id
        session.channel_id = channel_id
        return session

    async def disconnect(
        self, session: VoiceSession, *, cause: int | None = None, text: str | None = None
    ) -> None:
        """Hang up: BYE (CANCEL while dialing, 480 while ringing here).

        With a Q.850 ``cause`` (1 to 127, e.g. 16 normal clearing, 21 call
        rejected) the BYE or CANCEL carries an RFC 3326 ``Reason:
        Q.850;cause=N;text="..."`` header; ``text`` is ignored without a cause.
        Line breaks in ``text`` become spaces (as roomkit); quotes are escaped.
        ValueError, the call left up (its audio stopped), for a cause outside
        1..127 or a text over 256 bytes."""
        if self._sessions.get(session.id) is not session:
            return
        if text is not None:
            text = text.replace("\r", " ").replace("\n", " ").strip()
        nid = session.provider_session_id or session.id
        await self.cancel_audio(session)
        try:
            await asyncio.to_thread(self._core.hangup, nid, cause, text)
        except (KeyError, RuntimeError):
            pass  # the engine already ended it, or is closed
        self._drop_session(session)

    async def close(self) -> None:
        """Hang up every call, stop the SIP thread and join the engine's
        threads. No callback runs after this returns."""
        for session in list(self._sessions.values()):
            await self.disconnect(session)
        for task in list(self._filter_tasks):
            task.cancel()
        await self._close_core()
        for fut in [*self._dials.values(), *self._registrations.values()]:
            if not fut.done():
                fut.set_exception(RuntimeError("backend closed"))
        self._dials.clear()
        self._registrations.clear()

    # -- calls -----------------------------------------------------------------

    def _session_from(
        self,
        session_id: str,
        info: dict[str, Any],
        *,
        channel_id: str,
        participant_id: str,
        extra: dict[str, Any],
    ) -> VoiceSession:
        """roomkit's session of a call from the engine's description."""
        m = info["metadata"]
        rate = info["sample_rate"]
        metadata: dict[str, Any] = {
            "backend": "sip",
            "call_id": m.get("call_id", ""),
            "caller": m.get("caller", ""),
            "callee": m.get("callee", ""),
            "room_id": info["room_id"],
            "input_sample_rate": rate,
            "output_sample_rate": rate,
            "codec_sample_rate": rate,
            "has_video": info["video"] is not None,
            # Ours, beyond roomkit's keys.
            "direction": m.get("direction"),
            "audio_codec": m.get("audio_codec"),
            "payload_type": info["payload_type"],
            "clock_rate": info["clock_rate"],
            "remote_addr": info["remote_addr"],
            "local_addr": info["local_addr"],
            "sip_transport": m.get("sip_transport"),
            **extra,
        }
        session = VoiceSession(
            id=session_id,
            room_id=info["room_id"],
            participant_id=participant_id,
            channel_id=channel_id,
            state=VoiceSessionState.ACTIVE,
            provider_session_id=info["id"],
            metadata=metadata,
        )
        self._add_session(session)
        return session

    def _announce(self, session: VoiceSession, info: dict[str, Any]) -> None:
        """roomkit's order: the video held, then on_call, session_ready, video ready."""
        video = self._video
        v = info["video"]
        if video is not None and v is not None:
            vm = v["metadata"]
            video._add(
                VideoSession(
                    id=session.id,
                    room_id=session.room_id,
                    participant_id=session.participant_id,
                    channel_id=session.channel_id,
                    state=VideoSessionState.ACTIVE,
                    provider_session_id=info["id"],
                    metadata={
                        "backend": "sip-av",
                        "call_id": session.metadata["call_id"],
                        "video_codec": vm.get("video_codec", "").lower(),
                        "payload_type": v["payload_type"],
                        "clock_rate": v["clock_rate"],
                        "video_remote_addr": v["remote_addr"],
                        "video_local_addr": v["local_addr"],
                    },
                )
            )
        if self._on_call_callback is not None:
            call(self._on_call_callback, session)
        for cb in list(self._session_ready_callbacks):
            call(cb, session)
        if video is not None and v is not None:
            video._ready(session.id)

    def _on_other_event(self, event: tuple[Any, ...]) -> None:
        kind = event[0]
        if kind == "trace":
            self._emit_trace(event[2], tuple(event[3]), event[4])
        elif kind == "invite":
            self._screen(IncomingInvite.from_event(event[2]))
        elif kind == "call":
            _, _nid, info, session_id = event
            if self._closed or session_id in self._sessions:
                return
            m = info["metadata"]
            x_headers = {k: v for k, v in m.items() if k.lower().startswith("x-")}
            sid_header = next(
                (v for k, v in x_headers.items() if k.lower() == "x-session-id"), None
            )
            session = self._session_from(
                session_id,
                info,
                channel_id="voice",
                participant_id=sid_header or m.get("caller", ""),
                extra={
                    "caller_display_name": m.get("caller_display_name") or None,
                    "caller_user": m.get("caller_user"),
                    "x_headers": x_headers,
                },
            )
            self._announce(session, info)
        elif kind == "call_state":
            _, nid, state, status, reason = event
            if state in ("answered", "failed", "ended"):
                self._settle(self._dials, nid, (state, status, reason))
        elif kind == "registration":
            _, rid, state, status, reason, _expires = event
            self._settle(self._registrations, ("reg", rid), (state, status, reason))

    def _screen(self, invite: IncomingInvite) -> None:
        """Run the application's invite filter and pass its verdict on."""
        f = self._invite_filter
        try:
            verdict = None if f is None else f(invite)
        except Exception:
            logger.exception("SIP invite filter raised: refusing with 500")
            self._decide(invite.call_id, 500)
            return
        if inspect.isawaitable(verdict):
            task = asyncio.ensure_future(self._screen_later(invite, verdict))
            self._filter_tasks.add(task)
            task.add_done_callback(self._filter_tasks.discard)
        else:
            self._decide(invite.call_id, 200 if verdict is None else int(verdict[0]))

    async def _screen_later(self, invite: IncomingInvite, verdict: Any) -> None:
        try:
            result = await verdict
        except Exception:
            logger.exception("SIP invite filter raised: refusing with 500")
            result = (500, "Server Internal Error")
        self._decide(invite.call_id, 200 if result is None else int(result[0]))

    def _decide(self, call_id: str, status: int) -> None:
        if not 300 <= status <= 699 and status != 200:
            status = 603
        try:
            self._core.decide(call_id, status)
        except RuntimeError:
            pass  # closed meanwhile: the engine refused the call

    def _settle(self, waiting: dict[Any, Any], key: Any, outcome: tuple[str, int, str]) -> None:
        fut = waiting.get(key)
        if fut is None:
            if key not in self._early:
                if len(self._early) >= 256:  # outcomes nobody waits for
                    self._early.pop(next(iter(self._early)))
                self._early[key] = outcome
        elif not fut.done():
            fut.set_result(outcome)

    def _wait(
        self, waiting: dict[Any, Any], key: Any, timeout: float
    ) -> Any:
        """The outcome for `key`: already in, or awaited for `timeout` s."""
        fut = asyncio.get_running_loop().create_future()
        early = self._early.pop(key, None)
        if early is not None:
            fut.set_result(early)
        waiting[key] = fut
        return asyncio.wait_for(fut, timeout)

    async def dial(
        self,
        to_uri: str,
        from_uri: str,
        proxy_addr: tuple[str, int],
        *,
        room_id: str | None = None,
        channel_id: str = "voice",
        codec: int = 0,
        auth: Any | None = None,
        extra_headers: dict[str, str] | None = None,
        timeout: float = 30.0,
    ) -> VoiceSession:
        """Call ``to_uri`` through ``proxy_addr`` and wait for the answer.

        Raises RuntimeError when the call is refused or the backend is not
        started, TimeoutError when it is not answered within ``timeout``
        seconds (the call is then cancelled). ``auth``: an object with
        ``username`` and ``password`` (aiosipua's ``SipDigestAuth``)."""
        if self._local_sip_addr is None or self._closed:
            raise RuntimeError("SIPVoiceBackend.start() must be called before dial()")
        creds = None
        if auth is not None:
            creds = (str(auth.username), str(auth.password))
        nid, call_id = await asyncio.to_thread(
            self._core.dial,
            to_uri,
            from_uri,
            host_port(proxy_addr),
            list((extra_headers or {}).items()),
            room_id,
            # The engine cancels a little after us, if we could not.
            timeout + 5.0,
            False,
            creds,
            [codec],
        )
        try:
            state, status, reason = await self._wait(self._dials, nid, timeout)
        except TimeoutError:
            await asyncio.to_thread(self._hangup_quietly, nid)
            raise TimeoutError(f"SIP call to {to_uri} not answered within {timeout} s") from None
        finally:
            self._dials.pop(nid, None)
        info = None if state != "answered" else self._core.session(nid)
        if info is None:
            if state == "answered":
                state, status, reason = "ended", 0, "ended as it was answered"
            raise RuntimeError(f"SIP call to {to_uri} {state}: {status} {reason}".rstrip())
        session = self._session_from(
            call_id,
            info,
            channel_id=channel_id,
            participant_id=to_uri,
            extra={
                "caller": from_uri,
                "callee": to_uri,
                "direction": "outbound",
                "sip_answered_at": time.monotonic(),
            },
        )
        self._announce(session, info)
        return session

    def _hangup_quietly(self, nid: str) -> None:
        try:
            self._core.hangup(nid)
        except (KeyError, RuntimeError):
            pass

    async def register(
        self,
        registrar_addr: tuple[str, int],
        *,
        username: str,
        password: str,
        domain: str | None = None,
        expires: int = 300,
    ) -> None:
        """Register ``sip:username@domain`` with the registrar at
        ``registrar_addr`` (refreshed by the engine). RuntimeError when refused,
        TimeoutError without an answer in 5 s."""
        if self._local_sip_addr is None or self._closed:
            raise RuntimeError("SIPVoiceBackend.start() must be called before register()")
        host = domain or registrar_addr[0]
        rid = await asyncio.to_thread(
            self._core.register,
            f"sip:{username}@{host}",
            f"sip:{host}",
            host_port(registrar_addr),
            (username, password),
            int(expires),
        )
        try:
            state, status, reason = await self._wait(
                self._registrations, ("reg", rid), REGISTER_WAIT
            )
        finally:
            self._registrations.pop(("reg", rid), None)
        if state != "registered":
            raise RuntimeError(f"SIP registration failed: {status} {reason}".rstrip())

    def get_codec_rate(self, session_id: str) -> int | None:
        """The PCM rate of a call's audio, or None for an unknown call."""
        session = self._sessions.get(session_id)
        return None if session is None else session.metadata.get("codec_sample_rate")

    # -- callbacks and filters -------------------------------------------------

    def on_call(self, callback: Callable[..., Any]) -> Callable[..., Any]:
        """Called with the session of each answered call (incoming, and dialed
        before ``dial`` returns); sync or async; usable as a decorator."""
        self._on_call_callback = callback
        return callback

    def on_call_disconnected(self, callback: Callable[..., Any]) -> Callable[..., Any]:
        """Called with the session when the far end ends a call (the same list
        as ``on_client_disconnected``)."""
        self._disconnect_callbacks.append(callback)
        return callback

    @property
    def supports_playback_callback(self) -> bool:
        """``on_audio_played`` reports the audio sent (as roomkit's SIP backend)."""
        return True

    def on_audio_played(self, callback: Callable[..., Any]) -> Callable[[], None]:
        """Called with ``(session, AudioFrame)`` for each packet of audio sent
        and once at the end of each response (``playback_ended``), on the loop;
        sync or async. Returns an unsubscribe function."""
        return subscribe_callback(self._audio_played_callbacks, callback)

    def subscribe_audio_received(self, callback: Callable[..., Any]) -> Callable[[], None]:
        """Receive audio alongside the primary handler; returns unsubscribe."""
        self._audio_subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._audio_subscribers:
                self._audio_subscribers.remove(callback)

        return unsubscribe

    def has_auth(self) -> bool:
        """Whether incoming INVITEs are challenged."""
        return bool(self._auth_users) or self._auth_resolver is not None

    def set_auth_resolver(self, resolver: Callable[[str], str | None] | None) -> None:
        """Look up inbound digest passwords with ``resolver(username)`` (``None``:
        unknown user), before and instead of ``auth_users``, as roomkit. It runs
        on the engine's SIP thread (holding the GIL): keep it quick and
        synchronous, as roomkit's is. ``None`` removes it."""
        self._auth_resolver = resolver
        self._core.set_auth_resolver(resolver)

    def set_invite_filter(self, invite_filter: Callable[..., Any] | None) -> None:
        """Screen new INVITEs (after authentication, before the answer).

        ``invite_filter(call)`` gets an :class:`IncomingInvite` (``call_id``,
        ``caller``, ``callee``, ``x_headers``, ``room_id``, ``session_id``, ...),
        may be sync or async, and returns ``None`` to answer or
        ``(status, reason)`` to refuse; raising refuses with 500. The call
        rings meanwhile; one left undecided for ``decision_timeout`` seconds
        (a constructor extra, default 20) is refused with 408. ``None``
        removes the filter."""
        self._invite_filter = invite_filter
        self._core.set_filtering(invite_filter is not None)

    def set_trace_emitter(self, emitter: Callable[..., Any] | None) -> None:
        """Emit a roomkit ``ProtocolTrace`` for every SIP message received or
        sent (roomkit emits INVITE, 200 and BYE only; ours also shows
        provisional responses, ACKs, retransmissions and OPTIONS), on the loop.
        ``None`` stops the trace."""
        self._trace_emitter = emitter
        self._core.set_tracing(emitter is not None)

    def _emit_trace(self, outbound: bool, peer: tuple[str, int], data: bytes) -> None:
        emitter = self._trace_emitter
        if emitter is None:
            return
        text = data.decode("utf-8", "replace")
        summary = text.split("\r\n", 1)[0]
        call_id = next(
            (
                line.split(":", 1)[1].strip()
                for line in text.split("\r\n")
                if line.lower().startswith(("call-id:", "i:"))
            ),
            None,
        )
        session = next(
            (s for s in self._sessions.values() if s.metadata.get("call_id") == call_id), None
        )
        trace = ProtocolTrace(
            channel_id=session.channel_id if session is not None else "voice",
            direction="outbound" if outbound else "inbound",
            protocol="sip",
            summary=summary,
            raw=text,
            metadata={"call_id": call_id, "peer": peer},
            session_id=None if session is None else session.id,
            room_id=None if session is None else session.room_id,
        )
        try:
            emitter(trace)
        except Exception:
            logger.exception("SIP trace emitter failed")


class SIPVideoBackend(SIPVoiceBackend, AudioVideoBackend):
    """SIP calls with video on the native engine (roomkit's ``SIPVideoBackend``).

    INVITEs offering a usable ``m=video`` get a video stream, served by the
    ``video`` facet; others are audio calls. Dialed calls offer video.
    """

    _VIDEO = True

    def __init__(
        self,
        *,
        supported_video_codecs: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(supported_video_codecs=supported_video_codecs or ["H264"], **kwargs)
        self._video = _NativeVideo(self)

    @property
    def name(self) -> str:
        return "SIP-AV"

    @property
    def video(self) -> _NativeVideo:
        """The video of the calls that negotiated it."""
        return self._video
