//! A softphone's SIP from C: placing calls (`rkm_dial`, which returns at once; progress comes
//! to `rkm_on_call_state`), hold and resume, adding and removing video, and registrations with
//! a registrar.

use std::ffi::{c_char, c_void};
use std::sync::Arc;
use std::time::Duration;

use super::args::{
    opt_addr_arg, opt_str_arg, out_arg, session_arg, str_arg, write_c_string, SessionIdText,
    RKM_SESSION_ID_LEN,
};
use super::backend::{backend_arg, rkm_backend};
use super::callbacks::{c_text, UserData};
use super::config::audio_codec_list;
use super::status::{boundary, rkm_status, Failure, FfiResult};
use crate::backend::{
    CallProgress, CallState, DialOptions, RegisterOptions, RegistrationEvent, SipCredentials,
};
use crate::engine::SessionId;

/// Where a dialed call stands (see `rkm_on_call_state`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum rkm_call_state {
    /// The INVITE is on its way (or a 100 Trying came back).
    RKM_CALL_TRYING = 0,
    /// The far end is alerting (180, or a 18x without SDP).
    RKM_CALL_RINGING = 1,
    /// A 18x with an answer: the session's media runs before the call is answered.
    RKM_CALL_EARLY_MEDIA = 2,
    /// Answered (2xx): the session is an ordinary session now.
    RKM_CALL_ANSWERED = 3,
    /// The call did not happen: `status` says why (486 busy, 404, 408 no response, 487
    /// cancelled, 503 no ports...).
    RKM_CALL_FAILED = 4,
    /// The answered call ended (BYE from either side).
    RKM_CALL_ENDED = 5,
}

fn call_state_to_c(s: CallState) -> rkm_call_state {
    match s {
        CallState::Trying => rkm_call_state::RKM_CALL_TRYING,
        CallState::Ringing => rkm_call_state::RKM_CALL_RINGING,
        CallState::EarlyMedia => rkm_call_state::RKM_CALL_EARLY_MEDIA,
        CallState::Answered => rkm_call_state::RKM_CALL_ANSWERED,
        CallState::Failed => rkm_call_state::RKM_CALL_FAILED,
        CallState::Ended => rkm_call_state::RKM_CALL_ENDED,
    }
}

/// One step of a dialed call, as `rkm_on_call_state` sees it. Strings are valid only until the
/// callback returns.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct rkm_call_progress {
    /// The session id `rkm_dial` returned.
    pub session_id: *const c_char,
    pub state: rkm_call_state,
    /// The SIP status behind the step (180, 183, 200, 486...); 0 when none.
    pub status: u16,
    /// The reason phrase, or why the call failed or ended.
    pub reason: *const c_char,
}

/// Called for every step of every dialed call, in order per call. Pointers are valid only
/// during the call.
pub type rkm_call_state_cb =
    Option<unsafe extern "C" fn(user_data: *mut c_void, progress: *const rkm_call_progress)>;

/// Options of `rkm_dial`. Fill with `rkm_dial_options_init` first; NULL strings and 0 numbers
/// take the backend's configuration. Strings are read during `rkm_dial` only.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct rkm_dial_options {
    /// Send the INVITE through this proxy (`"ip:port"`), instead of the configured
    /// `outbound_proxy` or the target's host.
    pub proxy: *const c_char,
    /// Credentials for 401/407 challenges, instead of the configured client credentials.
    pub auth_user: *const c_char,
    pub auth_password: *const c_char,
    /// Our From URI (default: the first registration's AOR, else `sip:USER@our-address`).
    pub from: *const c_char,
    /// From's display name.
    pub display_name: *const c_char,
    /// Extra request headers, one `Name: value` per line (lines separated by `\n`).
    pub headers: *const c_char,
    /// On a video backend, offer audio only.
    pub audio_only: bool,
    /// How long the call may ring before it is cancelled, in milliseconds; 0: the backend's.
    pub ring_timeout_ms: u32,
    /// The session's room; default the Call-ID.
    pub room_id: *const c_char,
    /// The audio codecs this call offers, comma-separated, in order of preference (`"PCMU"`,
    /// names as in `rkm_sip_config.supported_codecs`); NULL: the configured ones.
    pub audio_codecs: *const c_char,
}

/// Fills `opts` with the defaults (everything from the backend's configuration). A NULL
/// `opts` is ignored (and recorded for `rkm_last_error`). Any thread.
#[no_mangle]
pub extern "C" fn rkm_dial_options_init(opts: *mut rkm_dial_options) {
    boundary("rkm_dial_options_init", || {
        // SAFETY: the caller passes NULL or writable storage for one options struct.
        let out = unsafe { out_arg(opts, "opts") }?;
        *out = rkm_dial_options {
            proxy: std::ptr::null(),
            auth_user: std::ptr::null(),
            auth_password: std::ptr::null(),
            from: std::ptr::null(),
            display_name: std::ptr::null(),
            headers: std::ptr::null(),
            audio_only: false,
            ring_timeout_ms: 0,
            room_id: std::ptr::null(),
            audio_codecs: std::ptr::null(),
        };
        Ok(())
    })
}

/// Credentials from an optional user and password pair (both or neither).
fn credentials(
    user: Option<&str>,
    password: Option<&str>,
    what: &str,
) -> FfiResult<Option<SipCredentials>> {
    match (user, password) {
        (Some(u), Some(p)) => Ok(Some(SipCredentials::new(u, p))),
        (None, None) => Ok(None),
        _ => Err(Failure::invalid(format!(
            "{what}.auth_user and {what}.auth_password go together"
        ))),
    }
}

/// `Name: value` lines into header pairs.
fn header_lines(text: &str) -> FfiResult<Vec<(String, String)>> {
    text.split('\n')
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').ok_or_else(|| {
                Failure::invalid(format!("opts.headers: {l:?} is not `Name: value`"))
            })?;
            Ok((n.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

/// The Rust options an `rkm_dial_options` describes.
///
/// # Safety
/// Every string field is NULL or a NUL-terminated string valid for the call.
unsafe fn dial_options_from_c(o: &rkm_dial_options) -> FfiResult<DialOptions> {
    // SAFETY: this function's caller guarantees the fields are NULL or valid C strings.
    let text = |p: *const c_char, name: &str| unsafe { opt_str_arg(p, name) };
    Ok(DialOptions {
        // SAFETY: as above.
        proxy: unsafe { opt_addr_arg(o.proxy, "opts.proxy") }?,
        credentials: credentials(
            text(o.auth_user, "opts.auth_user")?,
            text(o.auth_password, "opts.auth_password")?,
            "opts",
        )?,
        from: text(o.from, "opts.from")?.map(str::to_owned),
        display_name: text(o.display_name, "opts.display_name")?.map(str::to_owned),
        headers: match text(o.headers, "opts.headers")? {
            Some(h) => header_lines(h)?,
            None => Vec::new(),
        },
        audio_only: o.audio_only,
        ring_timeout: (o.ring_timeout_ms > 0)
            .then(|| Duration::from_millis(u64::from(o.ring_timeout_ms))),
        room_id: text(o.room_id, "opts.room_id")?.map(str::to_owned),
        audio_codecs: match text(o.audio_codecs, "opts.audio_codecs")? {
            Some(s) => audio_codec_list(s, "opts.audio_codecs")?,
            None => Vec::new(),
        },
    })
}

/// Places a call to `to` (`"sip:user@host[:port]"`) and returns at once: the new call's
/// session id is written into `session_id_out` (`session_id_cap` bytes,
/// `RKM_SESSION_ID_LEN` are enough). Progress arrives through `rkm_on_call_state`; from
/// `RKM_CALL_ANSWERED` (or early media) on, the session is an ordinary session
/// (`rkm_send_*`, stats, callbacks), and `rkm_disconnect` hangs it up (CANCEL while it rings).
/// `opts` may be NULL (defaults). `RKM_ERR_STATE` before `rkm_backend_start`,
/// `RKM_ERR_UNSUPPORTED` on an RTP backend, `RKM_ERR_INVALID_ARGUMENT` for an unusable URI.
/// Any thread, including a callback thread.
#[no_mangle]
pub extern "C" fn rkm_dial(
    b: *mut rkm_backend,
    to: *const c_char,
    opts: *const rkm_dial_options,
    session_id_out: *mut c_char,
    session_id_cap: usize,
) -> rkm_status {
    boundary("rkm_dial", || {
        // SAFETY: each pointer is NULL or valid for the call, as documented for C callers.
        let be = unsafe { backend_arg(b) }?;
        // SAFETY: as above.
        let to = unsafe { str_arg(to, "to") }?;
        let options = match opts.is_null() {
            true => DialOptions::default(),
            // SAFETY: not NULL, and the caller lends a valid options struct for the call.
            false => unsafe { dial_options_from_c(&*opts) }?,
        };
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
        let session = be.sip()?.dial(to, options)?;
        let text = session.hyphenated().to_string();
        // SAFETY: `session_id_out` is not NULL and the caller lent `session_id_cap` bytes.
        unsafe { write_c_string(&text, session_id_out, session_id_cap, "session_id_out") }?;
        Ok(rkm_status::RKM_OK)
    })
}

/// Registers `cb` for the progress of dialed calls, replacing any earlier one; NULL removes it.
/// It runs on the backend's SIP callback thread, in order per call; `user_data` must stay
/// usable from that thread until the callback is replaced or the backend freed. Inside it,
/// `rkm_send_*`, `rkm_disconnect` and the queries may be called; `rkm_backend_free` may not.
/// May be called before or after `rkm_backend_start`. `RKM_ERR_UNSUPPORTED` on an RTP backend.
#[no_mangle]
pub extern "C" fn rkm_on_call_state(
    b: *mut rkm_backend,
    cb: rkm_call_state_cb,
    user_data: *mut c_void,
) -> rkm_status {
    boundary("rkm_on_call_state", || {
        // SAFETY: `b` is NULL or a live backend.
        let be = unsafe { backend_arg(b) }?;
        let sip = be.sip()?;
        let ud = UserData::new(user_data);
        match cb {
            Some(f) => sip.on_call_state(move |session: SessionId, p: &CallProgress| {
                // Every field named (no `..`): a field added to `CallProgress` does not compile
                // until `rkm_call_progress` carries it too.
                let CallProgress {
                    state,
                    status,
                    reason,
                } = p;
                let id = SessionIdText::new(session);
                let reason = c_text(reason);
                let view = rkm_call_progress {
                    session_id: id.as_ptr(),
                    state: call_state_to_c(*state),
                    status: *status,
                    reason: reason.as_ptr(),
                };
                // SAFETY: the registrant declared `f` callable from the SIP callback thread
                // with its `user_data`; `view` and its strings outlive the call.
                unsafe { f(ud.get(), &view) }
            }),
            None => sip.on_call_state(|_, _| {}),
        }
        Ok(rkm_status::RKM_OK)
    })
}

fn hold(name: &str, b: *mut rkm_backend, session_id: *const c_char, on: bool) -> rkm_status {
    boundary(name, || {
        // SAFETY: each pointer is NULL or valid for the call.
        let be = unsafe { backend_arg(b) }?;
        // SAFETY: as above.
        let id = unsafe { session_arg(session_id) }?;
        let sip = be.sip()?;
        if on {
            sip.hold(id)?;
        } else {
            sip.resume(id)?;
        }
        Ok(rkm_status::RKM_OK)
    })
}

/// Puts the far end of an established SIP call on hold: a re-INVITE offering `sendonly`
/// (what we send still goes out). Returns at once. `RKM_ERR_NOT_FOUND` for no such call. Any
/// thread.
#[no_mangle]
pub extern "C" fn rkm_hold(b: *mut rkm_backend, session_id: *const c_char) -> rkm_status {
    hold("rkm_hold", b, session_id, true)
}

/// Takes the far end off hold: a re-INVITE offering `sendrecv`. As `rkm_hold`.
#[no_mangle]
pub extern "C" fn rkm_resume(b: *mut rkm_backend, session_id: *const c_char) -> rkm_status {
    hold("rkm_resume", b, session_id, false)
}

/// Adds video to an established SIP call (`on` true: a re-INVITE offering the backend's video
/// codecs; the session's video stream starts when the far end accepts, with
/// `video_session_ready`) or removes it (`on` false: the video stream stops, the call goes on).
/// Returns at once. `RKM_ERR_UNSUPPORTED` for adding video on a voice backend,
/// `RKM_ERR_NOT_FOUND` for no such call. Any thread.
#[no_mangle]
pub extern "C" fn rkm_set_video(
    b: *mut rkm_backend,
    session_id: *const c_char,
    on: bool,
) -> rkm_status {
    boundary("rkm_set_video", || {
        // SAFETY: each pointer is NULL or valid for the call.
        let be = unsafe { backend_arg(b) }?;
        // SAFETY: as above.
        let id = unsafe { session_arg(session_id) }?;
        be.sip()?.set_video(id, on)?;
        Ok(rkm_status::RKM_OK)
    })
}

/// Ends a SIP call saying why, as `rkm_disconnect` does, its BYE (or the CANCEL of a call
/// being dialled) carrying `Reason: Q.850;cause=N;text="..."` (RFC 3326). `cause` 0 sends no
/// `Reason` (and ignores `text`); `text` may be NULL. `RKM_ERR_INVALID_ARGUMENT`, the call left
/// up, for a cause above 127 or a text with a line break or another control character or over
/// 256 bytes. `RKM_ERR_NOT_FOUND` for no such call, `RKM_ERR_UNSUPPORTED` on an RTP backend.
/// Any thread.
#[no_mangle]
pub extern "C" fn rkm_hangup_with(
    b: *mut rkm_backend,
    session_id: *const c_char,
    cause: u16,
    text: *const c_char,
) -> rkm_status {
    boundary("rkm_hangup_with", || {
        // SAFETY: each pointer is NULL or valid for the call.
        let be = unsafe { backend_arg(b) }?;
        // SAFETY: as above.
        let id = unsafe { session_arg(session_id) }?;
        // SAFETY: as above.
        let text = unsafe { opt_str_arg(text, "text") }?;
        be.sip()?
            .hangup_with(id, (cause != 0).then_some(cause), text)?;
        Ok(rkm_status::RKM_OK)
    })
}

/// What happened to a registration.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum rkm_registration_state {
    /// The registrar accepted the binding (first time or refresh) for `expires` seconds.
    RKM_REGISTERED = 0,
    /// A REGISTER failed with `status`; another attempt follows in `retry_in_ms` (0: none
    /// will, the credentials were refused).
    RKM_REGISTRATION_FAILED = 1,
    /// The binding was removed (`rkm_unregister`, or the backend was freed).
    RKM_UNREGISTERED = 2,
}

/// A registration event, as `rkm_on_registration` sees it. `reason` is valid only until the
/// callback returns.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct rkm_registration_event {
    /// The id `rkm_register` returned.
    pub id: u64,
    pub state: rkm_registration_state,
    /// The SIP status of a failure (408: no answer); 200 when registered; 0 otherwise.
    pub status: u16,
    pub reason: *const c_char,
    /// Seconds the binding holds (`RKM_REGISTERED`).
    pub expires: u32,
    /// When the next attempt goes out after a failure, in milliseconds; 0 for none.
    pub retry_in_ms: u32,
}

/// Called for every registration event.
pub type rkm_registration_cb =
    Option<unsafe extern "C" fn(user_data: *mut c_void, event: *const rkm_registration_event)>;

/// Options of `rkm_register`. Fill with `rkm_register_options_init` first; strings are read
/// during `rkm_register` only.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct rkm_register_options {
    /// The registrar's Request-URI (`"sip:example.com"`); NULL: the AOR's host and port.
    pub registrar: *const c_char,
    /// Send REGISTERs through this proxy (`"ip:port"`) instead of the configured
    /// `outbound_proxy` or the registrar's host.
    pub proxy: *const c_char,
    /// Credentials instead of the configured client credentials.
    pub auth_user: *const c_char,
    pub auth_password: *const c_char,
    /// The lifetime asked for, in seconds; default 3600.
    pub expires: u32,
}

/// Fills `opts` with the defaults. A NULL `opts` is ignored (and recorded for
/// `rkm_last_error`). Any thread.
#[no_mangle]
pub extern "C" fn rkm_register_options_init(opts: *mut rkm_register_options) {
    boundary("rkm_register_options_init", || {
        // SAFETY: the caller passes NULL or writable storage for one options struct.
        let out = unsafe { out_arg(opts, "opts") }?;
        *out = rkm_register_options {
            registrar: std::ptr::null(),
            proxy: std::ptr::null(),
            auth_user: std::ptr::null(),
            auth_password: std::ptr::null(),
            expires: RegisterOptions::default().expires,
        };
        Ok(())
    })
}

/// Registers `aor` (`"sip:alice@example.com"`) with its registrar and writes the
/// registration's id into `id_out`. Returns at once; events arrive through
/// `rkm_on_registration`. The registration answers 401/407 challenges (MD5 or SHA-256), is
/// refreshed before it expires, retried with back-off after failures, and removed
/// (`Expires: 0`) by `rkm_unregister` or `rkm_backend_free`. `opts` may be NULL (defaults).
/// `RKM_ERR_STATE` before `rkm_backend_start`. Any thread.
#[no_mangle]
pub extern "C" fn rkm_register(
    b: *mut rkm_backend,
    aor: *const c_char,
    opts: *const rkm_register_options,
    id_out: *mut u64,
) -> rkm_status {
    boundary("rkm_register", || {
        // SAFETY: each pointer is NULL or valid for the call.
        let be = unsafe { backend_arg(b) }?;
        // SAFETY: as above.
        let aor = unsafe { str_arg(aor, "aor") }?;
        // SAFETY: as above.
        let id_out = unsafe { out_arg(id_out, "id_out") }?;
        let options = if opts.is_null() {
            RegisterOptions::default()
        } else {
            // SAFETY: not NULL, and the caller lends a valid options struct for the call.
            let o = unsafe { &*opts };
            // SAFETY: the caller guarantees the string fields are NULL or valid C strings.
            let text = |p: *const c_char, name: &str| unsafe { opt_str_arg(p, name) };
            if o.expires == 0 {
                return Err(Failure::invalid("opts.expires must be at least 1"));
            }
            RegisterOptions {
                registrar: text(o.registrar, "opts.registrar")?.map(str::to_owned),
                // SAFETY: as above.
                proxy: unsafe { opt_addr_arg(o.proxy, "opts.proxy") }?,
                credentials: credentials(
                    text(o.auth_user, "opts.auth_user")?,
                    text(o.auth_password, "opts.auth_password")?,
                    "opts",
                )?,
                expires: o.expires,
            }
        };
        *id_out = be.sip()?.register(aor, options)?;
        Ok(rkm_status::RKM_OK)
    })
}

/// Removes registration `id`: one REGISTER with `Expires: 0`, then `RKM_UNREGISTERED`.
/// `RKM_ERR_NOT_FOUND` for an unknown (or already removed) id. Any thread.
#[no_mangle]
pub extern "C" fn rkm_unregister(b: *mut rkm_backend, id: u64) -> rkm_status {
    boundary("rkm_unregister", || {
        // SAFETY: `b` is NULL or a live backend.
        let be = unsafe { backend_arg(b) }?;
        be.sip()?.unregister(id)?;
        Ok(rkm_status::RKM_OK)
    })
}

/// Registers `cb` for registration events, replacing any earlier one; NULL removes it. It runs
/// on the backend's SIP callback thread; `user_data` must stay usable from that thread until
/// the callback is replaced or the backend freed. May be called before or after
/// `rkm_backend_start`. `RKM_ERR_UNSUPPORTED` on an RTP backend.
#[no_mangle]
pub extern "C" fn rkm_on_registration(
    b: *mut rkm_backend,
    cb: rkm_registration_cb,
    user_data: *mut c_void,
) -> rkm_status {
    boundary("rkm_on_registration", || {
        // SAFETY: `b` is NULL or a live backend.
        let be = unsafe { backend_arg(b) }?;
        let sip = be.sip()?;
        let ud = UserData::new(user_data);
        let f = match cb {
            Some(f) => f,
            None => {
                sip.on_registration(|_, _| {});
                return Ok(rkm_status::RKM_OK);
            }
        };
        let deliver = Arc::new(move |id: u64, ev: &RegistrationEvent| {
            let (state, status, reason, expires, retry) = match ev {
                RegistrationEvent::Registered { expires } => (
                    rkm_registration_state::RKM_REGISTERED,
                    200,
                    String::new(),
                    *expires,
                    0,
                ),
                RegistrationEvent::Failed {
                    status,
                    reason,
                    retry_in,
                } => (
                    rkm_registration_state::RKM_REGISTRATION_FAILED,
                    *status,
                    reason.clone(),
                    0,
                    retry_in.map_or(0, |d| u32::try_from(d.as_millis()).unwrap_or(u32::MAX)),
                ),
                _ => (
                    rkm_registration_state::RKM_UNREGISTERED,
                    0,
                    String::new(),
                    0,
                    0,
                ),
            };
            let reason = c_text(&reason);
            let view = rkm_registration_event {
                id,
                state,
                status,
                reason: reason.as_ptr(),
                expires,
                retry_in_ms: retry,
            };
            // SAFETY: the registrant declared `f` callable from the SIP callback thread with
            // its `user_data`; `view` and its string outlive the call.
            unsafe { f(ud.get(), &view) }
        });
        sip.on_registration(move |id, ev| deliver(id, ev));
        Ok(rkm_status::RKM_OK)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lines_split_and_refuse_garbage() {
        assert_eq!(
            header_lines("X-A: 1\r\n\nX-B:two words\n").unwrap(),
            vec![
                ("X-A".to_string(), "1".to_string()),
                ("X-B".to_string(), "two words".to_string())
            ]
        );
        assert!(header_lines("no colon").is_err());
        assert!(credentials(Some("u"), None, "opts").is_err());
        assert_eq!(credentials(None, None, "opts").unwrap(), None);
    }
}
