//! The opaque `rkm_backend` and the calls on it: creation, sessions, sending, queries, freeing.

use std::ffi::c_char;

use super::args::{
    opt_addr_arg, opt_str_arg, out_arg, ref_arg, session_arg, slice_arg, str_arg, write_c_string,
    RKM_SESSION_ID_LEN,
};
use super::config::{rkm_rtp_config, rtp_config_from_c};
use super::srtp::{rkm_srtp_keys, srtp_keys_from_c};
use super::status::{boundary, rkm_status, Failure, FfiResult};
use crate::backend::{
    ConnectOptions, MediaBackend, RtpVideoBackend, RtpVoiceBackend, SipVideoBackend,
    SipVoiceBackend,
};
use crate::engine::event::Callbacks;
use crate::engine::{SessionInfo, StreamInfo, StreamStats};

/// The backends a `rkm_backend` can be.
pub(crate) enum BackendKind {
    RtpVoice(RtpVoiceBackend),
    RtpVideo(RtpVideoBackend),
    SipVoice(SipVoiceBackend),
    SipVideo(SipVideoBackend),
}

/// A backend: RTP or SIP, voice or video. Opaque to C: made by one of the `rkm_*_backend_new`
/// functions, used through a pointer, released with `rkm_backend_free`.
///
/// Every function taking a `rkm_backend *` may be called from any thread, concurrently, except
/// `rkm_backend_free`, which must be the last call on a backend.
pub struct rkm_backend {
    pub(crate) kind: BackendKind,
}

impl rkm_backend {
    /// The backend's session API, whether or not it runs yet.
    fn any(&self) -> &dyn MediaBackend {
        match &self.kind {
            BackendKind::RtpVoice(b) => b,
            BackendKind::RtpVideo(b) => b,
            BackendKind::SipVoice(b) => b,
            BackendKind::SipVideo(b) => b,
        }
    }

    /// The backend's session API; `RKM_ERR_STATE` for a SIP backend not started yet.
    pub(crate) fn api(&self) -> FfiResult<&dyn MediaBackend> {
        if let Some(sip) = self.sip_any() {
            if !sip.is_started() {
                return Err(Failure::new(
                    rkm_status::RKM_ERR_STATE,
                    "the SIP backend is not started (call rkm_backend_start)",
                ));
            }
        }
        Ok(self.any())
    }

    /// The callback registry: usable before a SIP backend starts, so that no event of the first
    /// call can come before its callback.
    pub(crate) fn callbacks(&self) -> &Callbacks {
        self.any().engine().callbacks()
    }

    pub(crate) fn has_video(&self) -> bool {
        matches!(
            self.kind,
            BackendKind::RtpVideo(_) | BackendKind::SipVideo(_)
        )
    }

    /// Fails with `RKM_ERR_UNSUPPORTED` on a voice backend.
    pub(crate) fn require_video(&self) -> FfiResult<()> {
        if self.has_video() {
            Ok(())
        } else {
            Err(no_video())
        }
    }

    /// The SIP backend, started or not; `None` for RTP backends.
    fn sip_any(&self) -> Option<&SipVoiceBackend> {
        match &self.kind {
            BackendKind::SipVoice(b) => Some(b),
            BackendKind::SipVideo(b) => Some(b),
            BackendKind::RtpVoice(_) | BackendKind::RtpVideo(_) => None,
        }
    }

    /// The SIP backend; `RKM_ERR_UNSUPPORTED` for RTP backends.
    pub(crate) fn sip(&self) -> FfiResult<&SipVoiceBackend> {
        self.sip_any()
            .ok_or_else(|| Failure::unsupported("this is not a SIP backend"))
    }

    fn connect(
        &self,
        room: &str,
        participant: &str,
        opts: ConnectOptions,
    ) -> FfiResult<SessionInfo> {
        Ok(match &self.kind {
            BackendKind::RtpVoice(b) => b.connect(room, participant, opts)?,
            BackendKind::RtpVideo(b) => b.connect(room, participant, opts)?,
            BackendKind::SipVoice(_) | BackendKind::SipVideo(_) => {
                return Err(Failure::unsupported(
                    "SIP backends receive calls (see rkm_on_call); rkm_connect is for RTP backends",
                ))
            }
        })
    }
}

/// The failure of a video call on a voice backend.
pub(crate) fn no_video() -> Failure {
    Failure::unsupported("a voice backend has no video")
}

/// Borrows the backend behind a C pointer.
///
/// # Safety
/// `b` is NULL or a pointer returned by a `rkm_*_backend_new` function and not yet freed.
pub(crate) unsafe fn backend_arg<'a>(b: *const rkm_backend) -> FfiResult<&'a rkm_backend> {
    // SAFETY: forwarded from the caller's guarantee.
    unsafe { ref_arg(b, "backend") }
}

fn new_backend(kind: FfiResult<BackendKind>) -> FfiResult<*mut rkm_backend> {
    Ok(Box::into_raw(Box::new(rkm_backend { kind: kind? })))
}

/// Creates an RTP voice backend (audio sessions only) from `cfg`, which is read during the call
/// only. Starts the callback threads; sessions come with `rkm_connect`.
///
/// Returns NULL on failure (a NULL or invalid `cfg`, threads that could not start), with the
/// reason in `rkm_last_error`. The caller owns the result and releases it with
/// `rkm_backend_free`. Any thread.
#[no_mangle]
pub extern "C" fn rkm_rtp_voice_backend_new(cfg: *const rkm_rtp_config) -> *mut rkm_backend {
    boundary("rkm_rtp_voice_backend_new", || {
        // SAFETY: the caller passes NULL or a pointer to a valid config.
        let cfg = unsafe { ref_arg(cfg, "cfg") }?;
        // SAFETY: the caller guarantees the config's strings are NULL or valid for the call.
        let c = unsafe { rtp_config_from_c(cfg) }?;
        new_backend(
            RtpVoiceBackend::new(c)
                .map(BackendKind::RtpVoice)
                .map_err(Into::into),
        )
    })
}

/// Creates an RTP video backend: every session carries audio and video with the same id.
/// Otherwise as `rkm_rtp_voice_backend_new`.
#[no_mangle]
pub extern "C" fn rkm_rtp_video_backend_new(cfg: *const rkm_rtp_config) -> *mut rkm_backend {
    boundary("rkm_rtp_video_backend_new", || {
        // SAFETY: the caller passes NULL or a pointer to a valid config.
        let cfg = unsafe { ref_arg(cfg, "cfg") }?;
        // SAFETY: the caller guarantees the config's strings are NULL or valid for the call.
        let c = unsafe { rtp_config_from_c(cfg) }?;
        new_backend(
            RtpVideoBackend::new(c)
                .map(BackendKind::RtpVideo)
                .map_err(Into::into),
        )
    })
}

/// Ends every session (RTP sessions send RTCP BYE, SIP calls are hung up with BYE), runs the
/// `client_disconnected` callback for each, joins every thread the backend started, closes its
/// sockets and frees it. NULL is a no-op.
///
/// Must be the last call on `b`, made once, and not from inside one of `b`'s callbacks. Callback
/// `user_data` must stay valid until this returns; afterwards no callback of `b` runs again.
#[no_mangle]
pub extern "C" fn rkm_backend_free(b: *mut rkm_backend) {
    boundary("rkm_backend_free", || {
        if !b.is_null() {
            // SAFETY: a non-NULL `b` came from Box::into_raw in a `*_new` function and, as the
            // caller promises, is freed once and used by nobody else any more.
            drop(unsafe { Box::from_raw(b) });
        }
        Ok(())
    })
}

/// Creates a session on an RTP backend, binds its sockets, starts its threads, runs
/// `session_ready` (and `video_session_ready` on a video backend), and writes its id (a
/// NUL-terminated UUID of `RKM_SESSION_ID_LEN - 1` characters) to `session_id_out`, which has
/// room for `session_id_cap` bytes (`RKM_SESSION_ID_LEN` is enough; less gives
/// `RKM_ERR_BUFFER_TOO_SMALL` before anything is opened).
///
/// `room_id` and `participant_id` are required. `remote_addr` and `video_remote_addr`
/// (`"ip:port"`) override the configured addresses; NULL uses the configuration, and an address
/// set in neither place is `RKM_ERR_INVALID_ARGUMENT`. `video_remote_addr` must be NULL on a
/// voice backend. SIP backends receive calls instead: `RKM_ERR_UNSUPPORTED`. For SRTP keys, use
/// `rkm_connect_with`.
///
/// Strings are read during the call only. Any thread, including a callback thread.
#[no_mangle]
pub extern "C" fn rkm_connect(
    b: *mut rkm_backend,
    room_id: *const c_char,
    participant_id: *const c_char,
    remote_addr: *const c_char,
    video_remote_addr: *const c_char,
    session_id_out: *mut c_char,
    session_id_cap: usize,
) -> rkm_status {
    boundary("rkm_connect", || {
        let opts = rkm_connect_options {
            remote_addr,
            video_remote_addr,
            ..CONNECT_DEFAULTS
        };
        // SAFETY: each pointer is NULL or valid for the call, as documented for C callers.
        unsafe {
            connect_from_c(
                b,
                room_id,
                participant_id,
                &opts,
                "",
                session_id_out,
                session_id_cap,
            )
        }
    })
}

/// Options of `rkm_connect_with`. Fill with `rkm_connect_options_init` first (NULL addresses,
/// plain RTP), then set what you need; fields may be added at the end in later versions, which
/// the `*_init` call fills. Strings are read during the call only.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct rkm_connect_options {
    /// Where audio is sent (`"ip:port"`), instead of the configured `remote_addr`. NULL: the
    /// configuration's.
    pub remote_addr: *const c_char,
    /// Where video is sent, instead of the configured `video_remote_addr` (video backends
    /// only). NULL: the configuration's.
    pub video_remote_addr: *const c_char,
    /// SRTP keys of the audio stream; all NULL (default): plain RTP.
    pub audio_srtp: rkm_srtp_keys,
    /// SRTP keys of the video stream (video backends only); all NULL (default): plain RTP.
    pub video_srtp: rkm_srtp_keys,
}

/// What `rkm_connect_options_init` writes.
const CONNECT_DEFAULTS: rkm_connect_options = rkm_connect_options {
    remote_addr: std::ptr::null(),
    video_remote_addr: std::ptr::null(),
    audio_srtp: rkm_srtp_keys::PLAIN,
    video_srtp: rkm_srtp_keys::PLAIN,
};

/// Fills `opts` with the defaults: the configured addresses, plain RTP. A NULL `opts` is
/// ignored (and recorded for `rkm_last_error`). Any thread.
#[no_mangle]
pub extern "C" fn rkm_connect_options_init(opts: *mut rkm_connect_options) {
    boundary("rkm_connect_options_init", || {
        // SAFETY: the caller passes NULL or writable storage for one options struct.
        let out = unsafe { out_arg(opts, "opts") }?;
        *out = CONNECT_DEFAULTS;
        Ok(())
    })
}

/// As `rkm_connect`, with the remote addresses and the streams' SRTP keys in `opts` (NULL: the
/// defaults of `rkm_connect_options_init`). With keys, the stream protects everything it sends
/// (RTP, RTX, RTCP) and drops what does not authenticate (`srtp_auth_failed`) or is replayed
/// (`srtp_replayed`), as on a SIP call with SDES; `rkm_session_info.audio_srtp`/`video_srtp`
/// name the suite. An unknown suite, a NULL key beside a suite, a key that is not base64 of the
/// suite's length, or video keys on a voice backend: `RKM_ERR_INVALID_ARGUMENT`, whose message
/// names the field (never the key). Any thread, including a callback thread.
#[no_mangle]
pub extern "C" fn rkm_connect_with(
    b: *mut rkm_backend,
    room_id: *const c_char,
    participant_id: *const c_char,
    opts: *const rkm_connect_options,
    session_id_out: *mut c_char,
    session_id_cap: usize,
) -> rkm_status {
    boundary("rkm_connect_with", || {
        // SAFETY: the caller passes NULL or a valid options struct.
        let opts = unsafe { opts.as_ref() }
            .copied()
            .unwrap_or(CONNECT_DEFAULTS);
        // SAFETY: each pointer is NULL or valid for the call, as documented for C callers.
        unsafe {
            connect_from_c(
                b,
                room_id,
                participant_id,
                &opts,
                "opts.",
                session_id_out,
                session_id_cap,
            )
        }
    })
}

/// `rkm_connect` and `rkm_connect_with`: `prefix` goes before the option names in messages.
///
/// # Safety
/// Every pointer, `opts`' included, is NULL or valid for the call; `session_id_out` has room
/// for `session_id_cap` bytes.
unsafe fn connect_from_c(
    b: *mut rkm_backend,
    room_id: *const c_char,
    participant_id: *const c_char,
    opts: &rkm_connect_options,
    prefix: &str,
    session_id_out: *mut c_char,
    session_id_cap: usize,
) -> FfiResult<rkm_status> {
    // SAFETY: forwarded from the caller's guarantee.
    let be = unsafe { backend_arg(b) }?;
    // SAFETY: as above.
    let room = unsafe { str_arg(room_id, "room_id") }?;
    // SAFETY: as above.
    let participant = unsafe { str_arg(participant_id, "participant_id") }?;
    // SAFETY: as above.
    let remote = unsafe { opt_addr_arg(opts.remote_addr, &format!("{prefix}remote_addr")) }?;
    let video_name = format!("{prefix}video_remote_addr");
    // SAFETY: as above.
    let video_remote = unsafe { opt_addr_arg(opts.video_remote_addr, &video_name) }?;
    if session_id_out.is_null() {
        return Err(Failure::invalid("session_id_out is NULL"));
    }
    if session_id_cap < RKM_SESSION_ID_LEN {
        return Err(Failure::new(
            rkm_status::RKM_ERR_BUFFER_TOO_SMALL,
            format!(
                "session_id_out holds {session_id_cap} bytes, \
                 {RKM_SESSION_ID_LEN} are needed"
            ),
        ));
    }
    if video_remote.is_some() && !be.has_video() {
        return Err(Failure::invalid(format!(
            "{video_name} given to a voice backend (it has no video)"
        )));
    }
    if opts.video_srtp.is_set() && !be.has_video() {
        return Err(Failure::invalid(format!(
            "{prefix}video_srtp given to a voice backend (it has no video)"
        )));
    }
    // SAFETY: as above.
    let srtp = unsafe { srtp_keys_from_c(&opts.audio_srtp, &format!("{prefix}audio_srtp")) }?;
    // SAFETY: as above.
    let video_srtp = unsafe { srtp_keys_from_c(&opts.video_srtp, &format!("{prefix}video_srtp")) }?;
    let opts = ConnectOptions {
        remote_addr: remote,
        video_remote_addr: video_remote,
        srtp,
        video_srtp,
        ..ConnectOptions::default()
    };
    let info = be.connect(room, participant, opts)?;
    let text = info.id.hyphenated().to_string();
    // SAFETY: `session_id_out` is not NULL and the caller lent `session_id_cap` bytes.
    unsafe { write_c_string(&text, session_id_out, session_id_cap, "session_id_out") }?;
    Ok(rkm_status::RKM_OK)
}

/// Ends a session: stops and joins its threads (RTCP BYE is sent; a SIP call is hung up with
/// BYE), closes its sockets, then runs `client_disconnected` after the session's last frames.
/// `RKM_ERR_NOT_FOUND` when no such session is live. Any thread, including a callback thread.
#[no_mangle]
pub extern "C" fn rkm_disconnect(b: *mut rkm_backend, session_id: *const c_char) -> rkm_status {
    boundary("rkm_disconnect", || {
        // SAFETY: each pointer is NULL or valid for the call.
        let be = unsafe { backend_arg(b) }?;
        // SAFETY: as above.
        let id = unsafe { session_arg(session_id) }?;
        be.api()?.disconnect(id)?;
        Ok(rkm_status::RKM_OK)
    })
}

/// Points a live session's media at new remote addresses (`"ip:port"`; NULL leaves that stream
/// as it is), as a re-INVITE would: RTCP follows (same port with rtcp-mux, port + 1 otherwise).
/// On a SIP call this moves the media until the far end's next re-INVITE moves it again. Any
/// thread.
#[no_mangle]
pub extern "C" fn rkm_update_remote(
    b: *mut rkm_backend,
    session_id: *const c_char,
    remote_addr: *const c_char,
    video_remote_addr: *const c_char,
) -> rkm_status {
    boundary("rkm_update_remote", || {
        // SAFETY: each pointer is NULL or valid for the call.
        let be = unsafe { backend_arg(b) }?;
        // SAFETY: as above.
        let id = unsafe { session_arg(session_id) }?;
        // SAFETY: as above.
        let audio = unsafe { opt_addr_arg(remote_addr, "remote_addr") }?;
        // SAFETY: as above.
        let video = unsafe { opt_addr_arg(video_remote_addr, "video_remote_addr") }?;
        if video.is_some() {
            be.require_video()?;
        }
        be.api()?.update_remote(id, audio, video)?;
        Ok(rkm_status::RKM_OK)
    })
}

/// Sends one picture on a session's video stream: H.264 as Annex-B (3- or 4-byte start codes)
/// or a single raw NAL unit, or one VP8 frame. It is timestamped with the time since the session
/// started, packetized to the MTU and sent before the call returns. `data` is read during the
/// call only. `RKM_ERR_UNSUPPORTED` on a voice backend, `RKM_ERR_STATE` on a session without
/// video. Any thread, including a callback thread.
#[no_mangle]
pub extern "C" fn rkm_send_video(
    b: *mut rkm_backend,
    session_id: *const c_char,
    data: *const u8,
    len: usize,
) -> rkm_status {
    boundary("rkm_send_video", || {
        // SAFETY: each pointer is NULL or valid for the call; `data` holds `len` bytes.
        let be = unsafe { backend_arg(b) }?;
        // SAFETY: as above.
        let id = unsafe { session_arg(session_id) }?;
        // SAFETY: as above.
        let picture = unsafe { slice_arg(data, len, "data") }?;
        be.require_video()?;
        be.api()?.send_video(id, picture)?;
        Ok(rkm_status::RKM_OK)
    })
}

/// As `rkm_send_video`, with the caller's presentation time `timestamp_ms` (finite, not
/// negative; RTP timestamps follow it at the video clock rate). `keyframe` is the caller's
/// statement about the picture; the packetizer finds key frames in the bitstream itself, so it
/// does not change what is sent.
#[no_mangle]
pub extern "C" fn rkm_send_video_chunk(
    b: *mut rkm_backend,
    session_id: *const c_char,
    data: *const u8,
    len: usize,
    timestamp_ms: f64,
    keyframe: bool,
) -> rkm_status {
    boundary("rkm_send_video_chunk", || {
        // SAFETY: each pointer is NULL or valid for the call; `data` holds `len` bytes.
        let be = unsafe { backend_arg(b) }?;
        // SAFETY: as above.
        let id = unsafe { session_arg(session_id) }?;
        // SAFETY: as above.
        let picture = unsafe { slice_arg(data, len, "data") }?;
        if !timestamp_ms.is_finite() || timestamp_ms < 0.0 {
            return Err(Failure::invalid(format!(
                "timestamp_ms = {timestamp_ms} is not a finite time >= 0"
            )));
        }
        // The packetizer finds key pictures in the bitstream itself; the flag is informative.
        let _ = keyframe;
        be.require_video()?;
        be.api()?.send_video_at(id, picture, Some(timestamp_ms))?;
        Ok(rkm_status::RKM_OK)
    })
}

/// Sends `samples` 16-bit mono PCM samples at the session's audio rate (the config's
/// `audio_sample_rate`: by default 16000 on G.722 and Opus, 8000 on G.711; the session's
/// `rkm_session_info.audio_sample_rate` says which), converted to the codec's rate and encoded as 20 ms
/// packets of the negotiated codec (PCMU, PCMA, G.722 or Opus; the last one padded with
/// silence), all at once: pace real-time audio by calling with each block as it is captured.
/// Other codecs: `RKM_ERR_UNSUPPORTED`, send them with `rkm_send_audio_payload`. `pcm` is read
/// during the call only. On a SIP call the far end holds, nothing is sent (and `RKM_OK`
/// returned). Any thread, including a callback thread.
#[no_mangle]
pub extern "C" fn rkm_send_audio(
    b: *mut rkm_backend,
    session_id: *const c_char,
    pcm: *const i16,
    samples: usize,
) -> rkm_status {
    boundary("rkm_send_audio", || {
        // SAFETY: each pointer is NULL or valid for the call; `pcm` holds `samples` samples.
        let be = unsafe { backend_arg(b) }?;
        // SAFETY: as above.
        let id = unsafe { session_arg(session_id) }?;
        // SAFETY: as above.
        let pcm = unsafe { slice_arg(pcm, samples, "pcm") }?;
        be.api()?.send_audio(id, pcm)?;
        Ok(rkm_status::RKM_OK)
    })
}

/// `rkm_send_audio` of PCM at `rate_hz` (8000, 12000, 16000, 24000, 32000 or 48000) rather than
/// the backend's `audio_sample_rate`: converted to the codec's rate; another rate is
/// `RKM_ERR_INVALID_ARGUMENT`. A change of rate between calls starts the converter afresh.
/// `pcm` is read during the call only. Any thread.
#[no_mangle]
pub extern "C" fn rkm_send_audio_at(
    b: *mut rkm_backend,
    session_id: *const c_char,
    pcm: *const i16,
    samples: usize,
    rate_hz: u32,
) -> rkm_status {
    boundary("rkm_send_audio_at", || {
        // SAFETY: each pointer is NULL or valid for the call; `pcm` holds `samples` samples.
        let be = unsafe { backend_arg(b) }?;
        // SAFETY: as above.
        let id = unsafe { session_arg(session_id) }?;
        // SAFETY: as above.
        let pcm = unsafe { slice_arg(pcm, samples, "pcm") }?;
        be.api()?.send_audio_at(id, pcm, rate_hz)?;
        Ok(rkm_status::RKM_OK)
    })
}

/// Sends one audio frame the application encoded itself, as is, as the payload of one RTP
/// packet lasting `duration_ms` (1 to 1000) on the stream's timeline: for codecs the engine
/// passes through, or G.711/G.722/Opus frames made elsewhere. `payload` is read during the call
/// only. On a SIP call the far end holds, nothing is sent (and `RKM_OK` returned). Any thread.
#[no_mangle]
pub extern "C" fn rkm_send_audio_payload(
    b: *mut rkm_backend,
    session_id: *const c_char,
    payload: *const u8,
    len: usize,
    duration_ms: u32,
) -> rkm_status {
    boundary("rkm_send_audio_payload", || {
        // SAFETY: each pointer is NULL or valid for the call; `payload` holds `len` bytes.
        let be = unsafe { backend_arg(b) }?;
        // SAFETY: as above.
        let id = unsafe { session_arg(session_id) }?;
        // SAFETY: as above.
        let payload = unsafe { slice_arg(payload, len, "payload") }?;
        be.api()?.send_audio_payload(id, payload, duration_ms)?;
        Ok(rkm_status::RKM_OK)
    })
}

/// Sends the DTMF digit `digit` (`0`-`9`, `*`, `#`, `A`-`D`) held for `duration_ms` as RFC 4733
/// telephone events. Returns at once; the packets are paced by the library and digits queue
/// behind each other. `RKM_ERR_UNSUPPORTED` when DTMF is disabled. Any thread.
#[no_mangle]
pub extern "C" fn rkm_send_dtmf(
    b: *mut rkm_backend,
    session_id: *const c_char,
    digit: c_char,
    duration_ms: u32,
) -> rkm_status {
    boundary("rkm_send_dtmf", || {
        // SAFETY: each pointer is NULL or valid for the call.
        let be = unsafe { backend_arg(b) }?;
        // SAFETY: as above.
        let id = unsafe { session_arg(session_id) }?;
        let digit = char::from(digit as u8);
        be.api()?.send_dtmf(id, digit, duration_ms)?;
        Ok(rkm_status::RKM_OK)
    })
}

/// Asks the remote video sender of a session for a key frame (RTCP PLI). Returns at once; the
/// session's receive thread sends it. Any thread, including a callback thread.
#[no_mangle]
pub extern "C" fn rkm_request_keyframe(
    b: *mut rkm_backend,
    session_id: *const c_char,
) -> rkm_status {
    boundary("rkm_request_keyframe", || {
        // SAFETY: each pointer is NULL or valid for the call.
        let be = unsafe { backend_arg(b) }?;
        // SAFETY: as above.
        let id = unsafe { session_arg(session_id) }?;
        be.require_video()?;
        be.api()?.request_keyframe(id)?;
        Ok(rkm_status::RKM_OK)
    })
}

/// Video passthrough for one session (roomkit's `set_video_passthrough`), effective at once on
/// its live video stream: `enabled` true delivers every picture assembled, damaged ones with
/// `complete` false, without waiting for a keyframe (as `deliver_incomplete` on and
/// `wait_for_keyframe` off, for this session only); false brings back the backend's settings.
/// `RKM_ERR_UNSUPPORTED` on a voice backend, `RKM_ERR_STATE` on a session without video. Any
/// thread, including a callback thread.
#[no_mangle]
pub extern "C" fn rkm_set_video_passthrough(
    b: *mut rkm_backend,
    session_id: *const c_char,
    enabled: bool,
) -> rkm_status {
    boundary("rkm_set_video_passthrough", || {
        // SAFETY: each pointer is NULL or valid for the call.
        let be = unsafe { backend_arg(b) }?;
        // SAFETY: as above.
        let id = unsafe { session_arg(session_id) }?;
        be.require_video()?;
        be.api()?.set_video_passthrough(id, enabled)?;
        Ok(rkm_status::RKM_OK)
    })
}

/// The number of live sessions (answered calls, on a SIP backend; 0 before it is started). 0 for
/// a NULL backend (recorded for `rkm_last_error`). Any thread.
#[no_mangle]
pub extern "C" fn rkm_session_count(b: *const rkm_backend) -> usize {
    boundary("rkm_session_count", || {
        // SAFETY: `b` is NULL or a live backend.
        let be = unsafe { backend_arg(b) }?;
        // A SIP backend that is not started has no sessions yet.
        Ok(be.any().all_sessions().len())
    })
}

/// Counters of one RTP stream. All start at 0 when the session is created; the `_ms`, `remote_`,
/// `pacer_queued`, `audio_jitter_depth_ms` and `audio_expected_loss_pct` fields are current values
/// rather than totals.
// The C twin of `StreamStats`: every field of it, in its order. The `From` conversion below names
// every field on both sides (so a field added to one struct only does not compile), and
// `tests/pure/header_fresh.rs` checks the header's field list against `StreamStats`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct rkm_stream_stats {
    /// RTP packets accepted, retransmissions included.
    pub packets_received: u64,
    /// RTP bytes accepted, headers included.
    pub bytes_received: u64,
    /// RTP packets sent, retransmissions included.
    pub packets_sent: u64,
    /// RTP bytes sent, headers included.
    pub bytes_sent: u64,
    /// Packets expected but not received (RFC 3550, before any recovery; negative with
    /// duplicates).
    pub lost: i64,
    /// Packets that arrived after a later-numbered one.
    pub reordered: u64,
    /// Packets received more than once.
    pub duplicates: u64,
    /// Interarrival jitter, milliseconds.
    pub jitter_ms: f64,
    /// Frames handed to the callbacks (pictures or NAL units; audio frames).
    pub frames: u64,
    /// Key frames among them.
    pub keyframes: u64,
    /// Pictures dropped because packets of them were lost.
    pub frames_dropped_incomplete: u64,
    /// Pictures held back until a key frame arrived.
    pub frames_dropped_gated: u64,
    /// Events dropped because a callback was too slow and its queue full.
    pub frames_dropped_slow_callback: u64,
    /// RTCP Picture Loss Indications sent.
    pub pli_sent: u64,
    /// RTCP Picture Loss Indications received.
    pub pli_received: u64,
    /// RTCP Full Intra Requests sent.
    pub fir_sent: u64,
    /// RTCP Full Intra Requests received.
    pub fir_received: u64,
    /// RTCP compound packets received.
    pub rtcp_received: u64,
    /// RTCP compound packets sent (reports, feedback, BYE).
    pub rtcp_sent: u64,
    /// Datagrams from an unexpected address (dropped).
    pub unexpected_source: u64,
    /// Datagrams that were not usable RTP/RTCP (dropped).
    pub malformed: u64,
    /// RTP packets with a payload type the stream does not carry (dropped).
    pub unknown_payload_type: u64,
    /// DTMF digits received.
    pub dtmf_received: u64,
    /// DTMF digits sent.
    pub dtmf_sent: u64,
    /// Sequence numbers we asked the peer to resend (RTCP NACK; each retry counts).
    pub nack_sent: u64,
    /// Sequence numbers the peer asked us to resend.
    pub nack_received: u64,
    /// Packets we resent because of a NACK (on the RTX stream when configured).
    pub retransmitted: u64,
    /// NACKed packets we did not resend: unknown, too old, resent too recently, or over the
    /// retransmission budget.
    pub retransmit_refused: u64,
    /// RTX packets received (RFC 4588).
    pub rtx_received: u64,
    /// Retransmissions of packets we already had (dropped).
    pub rtx_duplicates: u64,
    /// Lost packets that came back after a NACK, in time to be used.
    pub recovered: u64,
    /// Packets that came after their place in the stream was given up (dropped).
    pub late: u64,
    /// Audio frames the jitter buffer concealed or flagged lost.
    pub audio_concealed: u64,
    /// Audio packets that arrived after their frame had played (dropped).
    pub audio_late: u64,
    /// Audio packets the jitter buffer dropped to lower its delay or because it was full.
    pub audio_dropped: u64,
    /// The jitter buffer's current target delay, milliseconds (0 without a jitter buffer).
    pub audio_jitter_depth_ms: f64,
    /// Round-trip time from RTCP reports, milliseconds (0 until measured).
    pub rtt_ms: f64,
    /// Fraction of our packets the peer reports lost in its last report (0–1).
    pub remote_fraction_lost: f64,
    /// The peer's cumulative count of our packets lost.
    pub remote_cumulative_lost: i64,
    /// The interarrival jitter the peer reports for our packets, milliseconds.
    pub remote_jitter_ms: f64,
    /// Packets waiting in the pacer now.
    pub pacer_queued: u64,
    /// The last picture's pacing delay, milliseconds: from `rkm_send_video` to its last packet
    /// leaving.
    pub pacer_delay_ms: f64,
    /// The longest pacing delay of any picture, milliseconds.
    pub pacer_delay_max_ms: f64,
    /// RTCP BYEs received from the peer.
    pub bye_received: u64,
    /// Times the peer was silent for the inactivity timeout.
    pub inactivity_events: u64,
    /// Tail-loss probes sent: our last packet sent once more when no picture followed it, so a
    /// receiver that lost the end of the last picture can tell; not counted in `retransmitted`.
    pub tail_probes: u64,
    /// The packet loss (percent) the Opus encoder protects against with in-band FEC, from the
    /// peer's last receiver report; 0 before the first report and for codecs without FEC.
    pub audio_expected_loss_pct: u32,
    /// SRTP/SRTCP packets dropped because their authentication tag did not verify (tampered,
    /// or protected with another key).
    pub srtp_auth_failed: u64,
    /// SRTP/SRTCP packets dropped as replays.
    pub srtp_replayed: u64,
    /// ULPFEC packets sent (in RED) to protect our video.
    pub fec_sent: u64,
    /// ULPFEC packets received from the peer.
    pub fec_received: u64,
    /// Lost video packets rebuilt from ULPFEC before anyone asked for them again.
    pub fec_recovered: u64,
    /// ULPFEC packets given up with two or more of the packets they protect still missing.
    pub fec_unrecoverable: u64,
    /// Congestion control: the send-side bandwidth estimate, bits per second (0 when off).
    pub cc_target_bps: u64,
    /// The pacer's rate under congestion control, bits per second (0 when off).
    pub cc_pacer_rate_bps: u64,
    /// Whole pictures the sender dropped rather than queue more than the estimate carries.
    pub cc_pictures_dropped: u64,
    /// Transport-wide feedback packets we sent (as the receiver).
    pub cc_feedback_sent: u64,
    /// Transport-wide feedback packets from the peer the estimator used.
    pub cc_feedback_received: u64,
    /// Padding-only video packets received (the peer's bandwidth probes): counted in
    /// `packets_received`, never handed to picture assembly.
    pub padding_received: u64,
    /// ICE on a DTLS-SRTP stream: 0 off, 1 new, 2 checking, 3 connected, 4 disconnected,
    /// 5 consent expired (the stream ended).
    pub ice_state: u32,
    /// DTLS-SRTP: 0 off, 1 new, 2 connecting, 3 connected (SRTP keyed), 4 failed (the stream
    /// ended), 5 closed (by the peer: the stream ended; or by us).
    pub dtls_state: u32,
    /// Our side of the ICE-selected pair; empty before selection and without ICE.
    pub ice_local: rkm_addr_text,
    /// Where media goes on a DTLS-SRTP stream (the selected pair's remote with ICE).
    pub ice_remote: rkm_addr_text,
    /// STUN messages the ICE agent took (authenticated).
    pub stun_accepted: u64,
    /// STUN-range datagrams that did not parse (dropped).
    pub stun_malformed: u64,
    /// STUN messages refused (wrong credentials, bad integrity, no ICE on the stream).
    pub stun_refused: u64,
    /// DTLS records dropped (from a source no ICE check validated, or no handshake to take
    /// them).
    pub dtls_dropped: u64,
    /// Datagrams a DTLS-SRTP stream dropped on arrival (media before the keys or from another
    /// source than the selected remote, junk).
    pub transport_dropped: u64,
    /// Media we produced that never left because SRTP was not keyed yet (never sent in the
    /// clear).
    pub media_dropped_unkeyed: u64,
}

/// An address as a NUL-terminated `"ip:port"` string; empty when there is none.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct rkm_addr_text {
    /// `"ip:port"` (`"[ipv6]:port"`), NUL-terminated; all zero when there is no address.
    pub text: [c_char; RKM_ADDR_LEN],
}

impl Default for rkm_addr_text {
    fn default() -> Self {
        rkm_addr_text {
            text: [0; RKM_ADDR_LEN],
        }
    }
}

impl From<&StreamStats> for rkm_stream_stats {
    fn from(s: &StreamStats) -> Self {
        // No `..` on either side: a counter added to `StreamStats` or to `rkm_stream_stats`
        // alone is a compile error here, so C users cannot silently miss one.
        let StreamStats {
            packets_received,
            bytes_received,
            packets_sent,
            bytes_sent,
            lost,
            reordered,
            duplicates,
            jitter_ms,
            frames,
            keyframes,
            frames_dropped_incomplete,
            frames_dropped_gated,
            frames_dropped_slow_callback,
            pli_sent,
            pli_received,
            fir_sent,
            fir_received,
            rtcp_received,
            rtcp_sent,
            unexpected_source,
            malformed,
            unknown_payload_type,
            dtmf_received,
            dtmf_sent,
            nack_sent,
            nack_received,
            retransmitted,
            retransmit_refused,
            rtx_received,
            rtx_duplicates,
            recovered,
            late,
            audio_concealed,
            audio_late,
            audio_dropped,
            audio_jitter_depth_ms,
            rtt_ms,
            remote_fraction_lost,
            remote_cumulative_lost,
            remote_jitter_ms,
            pacer_queued,
            pacer_delay_ms,
            pacer_delay_max_ms,
            bye_received,
            inactivity_events,
            tail_probes,
            audio_expected_loss_pct,
            srtp_auth_failed,
            srtp_replayed,
            fec_sent,
            fec_received,
            fec_recovered,
            fec_unrecoverable,
            cc_target_bps,
            cc_pacer_rate_bps,
            cc_pictures_dropped,
            cc_feedback_sent,
            cc_feedback_received,
            padding_received,
            ice_state,
            dtls_state,
            ice_local,
            ice_remote,
            stun_accepted,
            stun_malformed,
            stun_refused,
            dtls_dropped,
            transport_dropped,
            media_dropped_unkeyed,
        } = *s;
        rkm_stream_stats {
            packets_received,
            bytes_received,
            packets_sent,
            bytes_sent,
            lost,
            reordered,
            duplicates,
            jitter_ms,
            frames,
            keyframes,
            frames_dropped_incomplete,
            frames_dropped_gated,
            frames_dropped_slow_callback,
            pli_sent,
            pli_received,
            fir_sent,
            fir_received,
            rtcp_received,
            rtcp_sent,
            unexpected_source,
            malformed,
            unknown_payload_type,
            dtmf_received,
            dtmf_sent,
            nack_sent,
            nack_received,
            retransmitted,
            retransmit_refused,
            rtx_received,
            rtx_duplicates,
            recovered,
            late,
            audio_concealed,
            audio_late,
            audio_dropped,
            audio_jitter_depth_ms,
            rtt_ms,
            remote_fraction_lost,
            remote_cumulative_lost,
            remote_jitter_ms,
            pacer_queued,
            pacer_delay_ms,
            pacer_delay_max_ms,
            bye_received,
            inactivity_events,
            tail_probes,
            audio_expected_loss_pct,
            srtp_auth_failed,
            srtp_replayed,
            fec_sent,
            fec_received,
            fec_recovered,
            fec_unrecoverable,
            cc_target_bps,
            cc_pacer_rate_bps,
            cc_pictures_dropped,
            cc_feedback_sent,
            cc_feedback_received,
            padding_received,
            ice_state,
            dtls_state,
            ice_local: rkm_addr_text {
                text: addr_field(ice_local),
            },
            ice_remote: rkm_addr_text {
                text: addr_field(ice_remote),
            },
            stun_accepted,
            stun_malformed,
            stun_refused,
            dtls_dropped,
            transport_dropped,
            media_dropped_unkeyed,
        }
    }
}

/// Counters of a session: audio always; video when `has_video` (otherwise `video` is zeroed).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct rkm_stats {
    /// The audio stream.
    pub audio: rkm_stream_stats,
    /// True when the session carries video.
    pub has_video: bool,
    /// The video stream; all zero without video.
    pub video: rkm_stream_stats,
}

/// Copies the counters of a live session into `*out` (a snapshot; call again for fresh values).
/// `RKM_ERR_NOT_FOUND` when no such session is live. Any thread.
#[no_mangle]
pub extern "C" fn rkm_session_stats(
    b: *const rkm_backend,
    session_id: *const c_char,
    out: *mut rkm_stats,
) -> rkm_status {
    boundary("rkm_session_stats", || {
        // SAFETY: each pointer is NULL or valid for the call; `out` is writable.
        let be = unsafe { backend_arg(b) }?;
        // SAFETY: as above.
        let id = unsafe { session_arg(session_id) }?;
        // SAFETY: as above.
        let out = unsafe { out_arg(out, "out") }?;
        let st = be.api()?.stats(id)?;
        *out = rkm_stats {
            audio: (&st.audio).into(),
            has_video: st.video.is_some(),
            video: st.video.as_ref().map(Into::into).unwrap_or_default(),
        };
        Ok(rkm_status::RKM_OK)
    })
}

/// Bytes an address takes in `rkm_session_addrs`, NUL included: enough for any
/// `"[ipv6%scope]:port"`.
pub const RKM_ADDR_LEN: usize = 64;

/// Where a session's streams send and receive, as NUL-terminated `"ip:port"` strings.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct rkm_session_addrs {
    /// Local audio RTP address (the port actually bound).
    pub local_addr: [c_char; RKM_ADDR_LEN],
    /// Local audio RTCP address (the RTP one with rtcp-mux, the next port otherwise).
    pub local_rtcp_addr: [c_char; RKM_ADDR_LEN],
    /// Where audio RTP is sent.
    pub remote_addr: [c_char; RKM_ADDR_LEN],
    /// True when the session carries video; the `video_*` fields are empty strings otherwise.
    pub has_video: bool,
    /// Local video RTP address.
    pub video_local_addr: [c_char; RKM_ADDR_LEN],
    /// Local video RTCP address.
    pub video_local_rtcp_addr: [c_char; RKM_ADDR_LEN],
    /// Where video RTP is sent.
    pub video_remote_addr: [c_char; RKM_ADDR_LEN],
}

fn addr_field(a: Option<std::net::SocketAddr>) -> [c_char; RKM_ADDR_LEN] {
    let mut out = [0 as c_char; RKM_ADDR_LEN];
    if let Some(a) = a {
        let text = a.to_string();
        for (o, b) in out.iter_mut().zip(text.bytes().take(RKM_ADDR_LEN - 1)) {
            *o = b as c_char;
        }
    }
    out
}

/// Copies the addresses of a live session into `*out`: the way to learn which ports a session
/// bound when the configuration asked for port 0. `RKM_ERR_NOT_FOUND` when no such session is
/// live. Any thread.
#[no_mangle]
pub extern "C" fn rkm_session_addresses(
    b: *const rkm_backend,
    session_id: *const c_char,
    out: *mut rkm_session_addrs,
) -> rkm_status {
    boundary("rkm_session_addresses", || {
        // SAFETY: each pointer is NULL or valid for the call; `out` is writable.
        let be = unsafe { backend_arg(b) }?;
        // SAFETY: as above.
        let id = unsafe { session_arg(session_id) }?;
        // SAFETY: as above.
        let out = unsafe { out_arg(out, "out") }?;
        let info = be
            .api()?
            .get_session(id)
            .ok_or_else(|| Failure::from(crate::Error::NotFound(format!("session {id}"))))?;
        let v: Option<&StreamInfo> = info.video.as_ref();
        *out = rkm_session_addrs {
            local_addr: addr_field(Some(info.audio.local_addr)),
            local_rtcp_addr: addr_field(Some(info.audio.local_rtcp_addr)),
            remote_addr: addr_field(Some(info.audio.remote_addr)),
            has_video: v.is_some(),
            video_local_addr: addr_field(v.map(|s| s.local_addr)),
            video_local_rtcp_addr: addr_field(v.map(|s| s.local_rtcp_addr)),
            video_remote_addr: addr_field(v.map(|s| s.remote_addr)),
        };
        Ok(rkm_status::RKM_OK)
    })
}

/// Writes the backend's metrics, in the Prometheus text exposition format (0.0.4), into `out`,
/// which has room for `cap` bytes, NUL-terminated. `instance` is the value of every sample's
/// `instance` label (NULL: `"rkm0"`); give each backend of a process its own. What is shown:
/// session counts, the RTP counters of every session (live and ended) summed per media kind
/// (`media="audio"` / `"video"`), round-trip time and jitter over the live streams, and on SIP
/// backends the signalling counters, 503 refusals and the call-setup histogram. No label names
/// a session, so the text does not grow with the number of calls.
///
/// `needed` (may be NULL) receives the bytes the text takes, NUL included, whatever the
/// outcome. When `cap` is smaller, nothing is written and `RKM_ERR_BUFFER_TOO_SMALL` is
/// returned; to ask for the size first, pass `out` NULL and `cap` 0 (the text may grow a
/// little before the next call: leave some room). Works on a SIP backend before
/// `rkm_backend_start` (everything is 0). Any thread; it locks each live stream briefly, as
/// `rkm_session_stats` does.
#[no_mangle]
pub extern "C" fn rkm_metrics_text(
    b: *const rkm_backend,
    instance: *const c_char,
    out: *mut c_char,
    cap: usize,
    needed: *mut usize,
) -> rkm_status {
    boundary("rkm_metrics_text", || {
        // SAFETY: `b` is NULL or a live backend.
        let be = unsafe { backend_arg(b) }?;
        // SAFETY: `instance` is NULL or a NUL-terminated string valid for the call.
        let instance = unsafe { opt_str_arg(instance, "instance") }?
            .unwrap_or(crate::metrics::DEFAULT_INSTANCE);
        let text = crate::metrics::render(
            &[(instance, be.any())],
            crate::metrics::MetricsFormat::Prometheus,
        );
        let need = text.len() + 1;
        // SAFETY: `needed` is NULL or points to a writable `size_t`.
        if let Some(n) = unsafe { needed.as_mut() } {
            *n = need;
        }
        if out.is_null() && cap == 0 {
            return Err(Failure::new(
                rkm_status::RKM_ERR_BUFFER_TOO_SMALL,
                format!("out holds 0 bytes, {need} are needed"),
            ));
        }
        // SAFETY: the caller lends `cap` writable bytes at `out` (NULL is refused).
        unsafe { write_c_string(&text, out, cap, "out") }?;
        Ok(rkm_status::RKM_OK)
    })
}
