//! SIP backends from C: creation, `rkm_backend_start`, the bound SIP address, `rkm_on_call`,
//! and the invite filter with its deferred decisions (`rkm_sip_decide_call`).

use std::ffi::{c_char, c_void, CString};
use std::sync::Arc;

use super::args::{ref_arg, str_arg, write_c_string};
use super::backend::{backend_arg, rkm_backend, BackendKind};
use super::callbacks::{c_text, UserData};
use super::config::{rkm_sip_config, sip_config_from_c};
use super::status::{boundary, rkm_status, Failure};
use crate::backend::{CallDecision, IncomingCall, SipVideoBackend, SipVoiceBackend};
use crate::engine::event::SessionCallback;
use crate::engine::SessionInfo;
use crate::frame::VideoCodec;

fn new_sip(name: &str, cfg: *const rkm_sip_config, video: bool) -> *mut rkm_backend {
    boundary(name, || {
        // SAFETY: the caller passes NULL or a pointer to a valid config.
        let cfg = unsafe { ref_arg(cfg, "cfg") }?;
        // SAFETY: the caller guarantees the config's strings are NULL or valid for the call.
        let c = unsafe { sip_config_from_c(cfg) }?;
        if video && c.supported_video_codecs.is_empty() {
            return Err(Failure::invalid(
                "cfg.supported_video_codecs names no codec",
            ));
        }
        let kind = if video {
            BackendKind::SipVideo(SipVideoBackend::new(c)?)
        } else {
            BackendKind::SipVoice(SipVoiceBackend::new(c)?)
        };
        Ok(Box::into_raw(Box::new(rkm_backend { kind })))
    })
}

/// Creates a SIP video backend (a user agent server) from `cfg`, which is read during the call
/// only. INVITEs offering audio and a supported video codec become audio + video sessions;
/// others become audio-only calls. Nothing is bound yet: register the callbacks, then call
/// `rkm_backend_start`.
///
/// Returns NULL on an invalid or NULL `cfg`, with the reason in `rkm_last_error`. The caller owns
/// the result and releases it with `rkm_backend_free`. Any thread.
#[no_mangle]
pub extern "C" fn rkm_sip_video_backend_new(cfg: *const rkm_sip_config) -> *mut rkm_backend {
    new_sip("rkm_sip_video_backend_new", cfg, true)
}

/// Creates a SIP voice backend: audio calls only (video offers are declined with `m=video 0`).
/// Otherwise as `rkm_sip_video_backend_new`.
#[no_mangle]
pub extern "C" fn rkm_sip_voice_backend_new(cfg: *const rkm_sip_config) -> *mut rkm_backend {
    new_sip("rkm_sip_voice_backend_new", cfg, false)
}

/// Starts a SIP backend: binds its SIP socket, starts its SIP and callback threads and installs
/// the callbacks registered so far; from then on calls are answered. `RKM_ERR_STATE` when it is
/// already started, `RKM_ERR_IO` when the address cannot be bound. Until a SIP backend is
/// started, the calls that need a running backend (sending, stats, `rkm_disconnect`,
/// `rkm_sip_local_addr`) return `RKM_ERR_STATE`. RTP backends are running from creation, so for
/// them this does nothing and returns `RKM_OK`. Any thread.
#[no_mangle]
pub extern "C" fn rkm_backend_start(b: *mut rkm_backend) -> rkm_status {
    boundary("rkm_backend_start", || {
        // SAFETY: `b` is NULL or a live backend.
        let be = unsafe { backend_arg(b) }?;
        if let Ok(sip) = be.sip() {
            sip.start()?;
        }
        Ok(rkm_status::RKM_OK)
    })
}

/// Writes the address the SIP socket is bound to (`"ip:port"`, with the port the system chose
/// when the configuration asked for port 0) into `out`, which has room for `cap` bytes
/// (`RKM_ADDR_LEN` is enough). `RKM_ERR_STATE` before `rkm_backend_start`,
/// `RKM_ERR_UNSUPPORTED` on an RTP backend. Any thread.
#[no_mangle]
pub extern "C" fn rkm_sip_local_addr(
    b: *const rkm_backend,
    out: *mut c_char,
    cap: usize,
) -> rkm_status {
    boundary("rkm_sip_local_addr", || {
        // SAFETY: `b` is NULL or a live backend.
        let be = unsafe { backend_arg(b) }?;
        let addr = be
            .sip()?
            .local_sip_addr()
            .ok_or_else(|| {
                Failure::new(
                    rkm_status::RKM_ERR_STATE,
                    "the SIP backend is not started (call rkm_backend_start)",
                )
            })?
            .to_string();
        // SAFETY: the caller lends `cap` writable bytes at `out` (NULL is refused).
        unsafe { write_c_string(&addr, out, cap, "out") }?;
        Ok(rkm_status::RKM_OK)
    })
}

/// An answered SIP call, as the `call` callback sees it. Every string is NUL-terminated and
/// valid only until the callback returns.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct rkm_call_info {
    /// The call's session id, as `rkm_send_*` and `rkm_disconnect` take it.
    pub session_id: *const c_char,
    /// The room: the `X-Room-ID` header when the caller sent one, else the Call-ID.
    pub room_id: *const c_char,
    /// The From URI (`sip:alice@example.com`).
    pub caller: *const c_char,
    /// The display name of From; empty when there is none.
    pub caller_display_name: *const c_char,
    /// The To URI.
    pub callee: *const c_char,
    /// The SIP Call-ID.
    pub call_id: *const c_char,
    /// True when video was negotiated (the session has a video stream).
    pub has_video: bool,
    /// `"h264"` or `"vp8"`; NULL when `has_video` is false.
    pub video_codec: *const c_char,
    /// The negotiated audio codec (`"PCMU"`, `"PCMA"`, ...).
    pub audio_codec: *const c_char,
    /// The `X-` headers of the INVITE, one `Name: value` per line, lines separated by `\n`;
    /// empty when there are none.
    pub x_headers: *const c_char,
}

/// Called when a SIP call has been answered (200 OK sent). Pointers are valid only during the
/// call.
pub type rkm_call_cb =
    Option<unsafe extern "C" fn(user_data: *mut c_void, info: *const rkm_call_info)>;

/// The strings of an `rkm_call_info`, owned while the callback runs.
struct CallText {
    session_id: CString,
    room_id: CString,
    caller: CString,
    caller_display_name: CString,
    callee: CString,
    call_id: CString,
    has_video: bool,
    video_codec: Option<CString>,
    audio_codec: CString,
    x_headers: CString,
}

impl CallText {
    fn new(s: &SessionInfo) -> CallText {
        let meta = |k: &str| c_text(s.metadata.get(k).map_or("", String::as_str));
        let mut x: Vec<(&String, &String)> = s
            .metadata
            .iter()
            .filter(|(k, _)| k.len() > 2 && k[..2].eq_ignore_ascii_case("x-"))
            .collect();
        x.sort();
        let x_headers: Vec<String> = x.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        let codec = s
            .video
            .as_ref()
            .and_then(|v| v.codec)
            .map(VideoCodec::as_str);
        CallText {
            session_id: c_text(&s.id.hyphenated().to_string()),
            room_id: c_text(&s.room_id),
            caller: meta("caller"),
            caller_display_name: meta("caller_display_name"),
            callee: meta("callee"),
            call_id: meta("call_id"),
            has_video: s.video.is_some(),
            video_codec: codec.map(c_text),
            audio_codec: meta("audio_codec"),
            x_headers: c_text(&x_headers.join("\n")),
        }
    }

    fn view(&self) -> rkm_call_info {
        rkm_call_info {
            session_id: self.session_id.as_ptr(),
            room_id: self.room_id.as_ptr(),
            caller: self.caller.as_ptr(),
            caller_display_name: self.caller_display_name.as_ptr(),
            callee: self.callee.as_ptr(),
            call_id: self.call_id.as_ptr(),
            has_video: self.has_video,
            video_codec: self
                .video_codec
                .as_ref()
                .map_or(std::ptr::null(), |c| c.as_ptr()),
            audio_codec: self.audio_codec.as_ptr(),
            x_headers: self.x_headers.as_ptr(),
        }
    }
}

/// Registers `cb` for answered SIP calls, replacing any earlier one; NULL removes it. It runs on
/// the backend's SIP callback thread (not a media callback thread), after `session_ready` and
/// `video_session_ready` were queued; `user_data` must stay usable from that thread until the
/// callback is replaced or the backend freed. Inside it, `rkm_send_*`, `rkm_request_keyframe`
/// and `rkm_disconnect` (hang up) may be called; `rkm_backend_free` may not. May be called
/// before or after `rkm_backend_start`. `RKM_ERR_UNSUPPORTED` on an RTP backend.
#[no_mangle]
pub extern "C" fn rkm_on_call(
    b: *mut rkm_backend,
    cb: rkm_call_cb,
    user_data: *mut c_void,
) -> rkm_status {
    boundary("rkm_on_call", || {
        // SAFETY: `b` is NULL or a live backend.
        let be = unsafe { backend_arg(b) }?;
        let ud = UserData::new(user_data);
        let wrapped = cb.map(|f| {
            Arc::new(move |s: &SessionInfo| {
                let text = CallText::new(s);
                let view = text.view();
                // SAFETY: the registrant declared `f` callable from the SIP callback thread with
                // its `user_data`; `view` and its strings outlive the call.
                unsafe { f(ud.get(), &view) }
            }) as SessionCallback
        });
        let sip = be.sip()?;
        match wrapped {
            Some(cb) => sip.on_call(move |info: &SessionInfo| cb(info)),
            // No "clear" on the Rust side: a callback that does nothing is the same.
            None => sip.on_call(|_: &SessionInfo| {}),
        }
        Ok(rkm_status::RKM_OK)
    })
}

/// What the invite filter returns to go on with a call (authentication, limits and SDP are
/// still checked).
pub const RKM_CALL_ACCEPT: i32 = 0;
/// What the invite filter returns to decide later with `rkm_sip_decide_call`: the call is set up
/// and rings (180) until then, or until `decision_timeout_ms`, when it is refused with 408.
pub const RKM_CALL_DEFER: i32 = 1;

/// A new INVITE, as the invite filter sees it (before any port is taken). Every string is
/// NUL-terminated and valid only until the filter returns.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct rkm_incoming_call {
    /// The SIP Call-ID: what `rkm_sip_decide_call` takes.
    pub call_id: *const c_char,
    /// The From URI.
    pub caller: *const c_char,
    /// The To URI.
    pub callee: *const c_char,
    /// The display name of From; empty when there is none.
    pub caller_display_name: *const c_char,
    /// The `X-` headers, one `Name: value` per line, separated by `\n`; empty when none.
    pub x_headers: *const c_char,
    /// Where the INVITE came from (`"ip:port"`).
    pub source: *const c_char,
    /// The offer has an `m=video` line.
    pub offers_video: bool,
}

/// Screens a new INVITE: returns `RKM_CALL_ACCEPT`, `RKM_CALL_DEFER`, or a final status
/// 300..=699 to refuse it (anything else refuses with 603).
pub type rkm_invite_filter_cb =
    Option<unsafe extern "C" fn(user_data: *mut c_void, call: *const rkm_incoming_call) -> i32>;

/// Registers `cb` to screen new INVITEs, replacing any earlier one; NULL removes it (every call
/// is accepted). It runs on the SIP thread and must return quickly: a decision that needs
/// longer returns `RKM_CALL_DEFER` and is given later with `rkm_sip_decide_call`. `user_data`
/// must stay usable from that thread until the filter is replaced or the backend freed. Inside
/// it, no `rkm_*` call may be made. `RKM_ERR_UNSUPPORTED` on an RTP backend. Any thread.
#[no_mangle]
pub extern "C" fn rkm_sip_set_invite_filter(
    b: *mut rkm_backend,
    cb: rkm_invite_filter_cb,
    user_data: *mut c_void,
) -> rkm_status {
    boundary("rkm_sip_set_invite_filter", || {
        // SAFETY: `b` is NULL or a live backend.
        let be = unsafe { backend_arg(b) }?;
        let sip = be.sip()?;
        let ud = UserData::new(user_data);
        match cb {
            Some(f) => sip.set_invite_filter(move |call: &IncomingCall| {
                let x: Vec<String> = call
                    .x_headers
                    .iter()
                    .map(|(n, v)| format!("{n}: {v}"))
                    .collect();
                let text = [
                    c_text(&call.call_id),
                    c_text(&call.caller),
                    c_text(&call.callee),
                    c_text(call.caller_display_name.as_deref().unwrap_or_default()),
                    c_text(&x.join("\n")),
                    c_text(&call.source.to_string()),
                ];
                let view = rkm_incoming_call {
                    call_id: text[0].as_ptr(),
                    caller: text[1].as_ptr(),
                    callee: text[2].as_ptr(),
                    caller_display_name: text[3].as_ptr(),
                    x_headers: text[4].as_ptr(),
                    source: text[5].as_ptr(),
                    offers_video: call.offers_video,
                };
                // A panic in the filter must not take the SIP thread down: it refuses the
                // call instead.
                let verdict = std::panic::catch_unwind(|| {
                    // SAFETY: the registrant declared `f` callable from the SIP thread with
                    // its `user_data`; `view` and its strings outlive the call.
                    unsafe { f(ud.get(), &view) }
                })
                .unwrap_or(500);
                call_decision(verdict)
            }),
            None => sip.set_invite_filter(|_: &IncomingCall| CallDecision::Accept),
        }
        Ok(rkm_status::RKM_OK)
    })
}

/// The filter's or the application's answer as a decision.
fn call_decision(v: i32) -> CallDecision {
    match v {
        RKM_CALL_ACCEPT => CallDecision::Accept,
        RKM_CALL_DEFER => CallDecision::Defer,
        // The SIP core answers 603 for anything that is not a 3xx–6xx status (0 here).
        s => CallDecision::Reject(u16::try_from(s).unwrap_or(0)),
    }
}

/// Decides a call the invite filter deferred, by its Call-ID: `status` 200 answers it (once its
/// media is up), 300..=699 refuses it with that status. A call no longer waiting (unknown,
/// decided, refused after `decision_timeout_ms`, cancelled by the caller) is left alone.
/// `RKM_ERR_INVALID_ARGUMENT` for another status or a NULL `call_id`, `RKM_ERR_STATE` before
/// `rkm_backend_start`, `RKM_ERR_UNSUPPORTED` on an RTP backend. Any thread, the SIP callback
/// thread included.
#[no_mangle]
pub extern "C" fn rkm_sip_decide_call(
    b: *mut rkm_backend,
    call_id: *const c_char,
    status: u16,
) -> rkm_status {
    boundary("rkm_sip_decide_call", || {
        // SAFETY: `b` is NULL or a live backend.
        let be = unsafe { backend_arg(b) }?;
        // SAFETY: the caller passes NULL or a NUL-terminated string.
        let call_id = unsafe { str_arg(call_id, "call_id") }?;
        let decision = match status {
            200 => CallDecision::Accept,
            300..=699 => CallDecision::Reject(status),
            _ => {
                return Err(Failure::invalid(format!(
                    "status {status}: 200 answers, 300..=699 refuses"
                )))
            }
        };
        be.sip()?.decide_call(call_id, decision)?;
        Ok(rkm_status::RKM_OK)
    })
}

/// Looks up the password of `user` for inbound digest authentication: writes it, NUL-terminated,
/// into `out` (`cap` bytes) and returns true, or returns false for an unknown user (the caller
/// is refused with 403). A password that does not fit in `cap` counts as unknown.
pub type rkm_auth_resolver_cb = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        user: *const c_char,
        out: *mut c_char,
        cap: usize,
    ) -> bool,
>;

/// The room an `rkm_auth_resolver_cb` gets for a password, NUL included.
const PASSWORD_CAP: usize = 512;

/// Registers `cb` to look up inbound digest passwords, instead of `auth_user`/`auth_password`
/// of the configuration (and turning authentication on); NULL removes it (the configured user,
/// if any, is checked again). It runs on the SIP thread and must return quickly; `user_data`
/// must stay usable from that thread until the resolver is replaced or the backend freed.
/// Inside it, no `rkm_*` call may be made. `RKM_ERR_UNSUPPORTED` on an RTP backend. Any thread.
#[no_mangle]
pub extern "C" fn rkm_sip_set_auth_resolver(
    b: *mut rkm_backend,
    cb: rkm_auth_resolver_cb,
    user_data: *mut c_void,
) -> rkm_status {
    boundary("rkm_sip_set_auth_resolver", || {
        // SAFETY: `b` is NULL or a live backend.
        let be = unsafe { backend_arg(b) }?;
        let sip = be.sip()?;
        let ud = UserData::new(user_data);
        match cb {
            Some(f) => sip.set_auth_resolver(move |user: &str| {
                let name = c_text(user);
                let mut buf = vec![0 as c_char; PASSWORD_CAP];
                let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    // SAFETY: the registrant declared `f` callable from the SIP thread with its
                    // `user_data`; `name` and `buf` (PASSWORD_CAP bytes) outlive the call.
                    unsafe { f(ud.get(), name.as_ptr(), buf.as_mut_ptr(), PASSWORD_CAP) }
                }))
                .unwrap_or(false);
                if !found {
                    return None;
                }
                // No NUL within the buffer: the password did not fit.
                let bytes: Vec<u8> = buf
                    .iter()
                    .take_while(|&&c| c != 0)
                    .map(|&c| c as u8)
                    .collect();
                (bytes.len() < PASSWORD_CAP)
                    .then(|| String::from_utf8(bytes).ok())
                    .flatten()
            }),
            None => sip.clear_auth_resolver(),
        }
        Ok(rkm_status::RKM_OK)
    })
}

/// Sees one SIP message: `outbound` false as it is received (before parsing), true as it is
/// sent (retransmissions included); `peer` is the other side's `"ip:port"`. `data` and `peer`
/// are valid only until the callback returns.
pub type rkm_sip_trace_cb = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        outbound: bool,
        peer: *const c_char,
        data: *const u8,
        len: usize,
    ),
>;

/// Registers `cb` to see every SIP message the backend receives and sends (a protocol trace),
/// replacing any earlier one; NULL removes it. It runs on the SIP thread and must return
/// quickly; `user_data` must stay usable from that thread until the trace is replaced or the
/// backend freed. Inside it, no `rkm_*` call may be made. `RKM_ERR_UNSUPPORTED` on an RTP
/// backend. Any thread.
#[no_mangle]
pub extern "C" fn rkm_sip_set_trace(
    b: *mut rkm_backend,
    cb: rkm_sip_trace_cb,
    user_data: *mut c_void,
) -> rkm_status {
    boundary("rkm_sip_set_trace", || {
        // SAFETY: `b` is NULL or a live backend.
        let be = unsafe { backend_arg(b) }?;
        let sip = be.sip()?;
        let ud = UserData::new(user_data);
        match cb {
            Some(f) => sip.set_sip_trace(move |outbound, data: &[u8], peer| {
                let peer = c_text(&peer.to_string());
                // A panic in the trace must not take the SIP thread down.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    // SAFETY: the registrant declared `f` callable from the SIP thread with its
                    // `user_data`; `peer` and `data` outlive the call.
                    unsafe { f(ud.get(), outbound, peer.as_ptr(), data.as_ptr(), data.len()) }
                }));
            }),
            None => sip.clear_sip_trace(),
        }
        Ok(rkm_status::RKM_OK)
    })
}
