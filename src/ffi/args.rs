//! Checking what C hands us: NULL pointers, UTF-8, session ids, addresses, output buffers.
//!
//! Each helper names the argument in its error, so `rkm_last_error` tells the caller which one was
//! wrong.

use std::ffi::{c_char, CStr};
use std::net::{SocketAddr, ToSocketAddrs};

use super::status::{rkm_status, Failure, FfiResult};
use crate::engine::SessionId;

/// Bytes a session id takes in C: 36 characters of a hyphenated UUID and the terminating NUL.
pub const RKM_SESSION_ID_LEN: usize = 37;

/// A required C string argument, borrowed.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that stays valid and unmodified for `'a`.
pub(crate) unsafe fn str_arg<'a>(p: *const c_char, name: &str) -> FfiResult<&'a str> {
    if p.is_null() {
        return Err(Failure::invalid(format!("{name} is NULL")));
    }
    // SAFETY: not NULL, and the caller guarantees a NUL-terminated string living for 'a.
    let c = unsafe { CStr::from_ptr(p) };
    c.to_str()
        .map_err(|_| Failure::invalid(format!("{name} is not valid UTF-8")))
}

/// An optional C string argument: NULL gives `None`.
///
/// # Safety
/// As [`str_arg`].
pub(crate) unsafe fn opt_str_arg<'a>(p: *const c_char, name: &str) -> FfiResult<Option<&'a str>> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: forwarded from the caller's guarantee.
    unsafe { str_arg(p, name) }.map(Some)
}

/// A required pointer argument, borrowed.
///
/// # Safety
/// `p` is NULL or points to a valid, initialised `T` that is not mutated for `'a`.
pub(crate) unsafe fn ref_arg<'a, T>(p: *const T, name: &str) -> FfiResult<&'a T> {
    // SAFETY: the caller guarantees that a non-NULL `p` is valid for 'a.
    unsafe { p.as_ref() }.ok_or_else(|| Failure::invalid(format!("{name} is NULL")))
}

/// A required output pointer, borrowed mutably.
///
/// # Safety
/// `p` is NULL or points to writable memory for one `T` that nothing else uses for `'a`. The
/// memory need not be initialised: callers only ever overwrite it whole.
pub(crate) unsafe fn out_arg<'a, T>(p: *mut T, name: &str) -> FfiResult<&'a mut T> {
    // SAFETY: the caller guarantees that a non-NULL `p` is valid and exclusive for 'a.
    unsafe { p.as_mut() }.ok_or_else(|| Failure::invalid(format!("{name} is NULL")))
}

/// A required array argument of `len` elements. NULL is refused even with `len == 0`.
///
/// # Safety
/// `p` is NULL or points to `len` initialised `T`s that stay valid and unmodified for `'a`.
pub(crate) unsafe fn slice_arg<'a, T>(p: *const T, len: usize, name: &str) -> FfiResult<&'a [T]> {
    if p.is_null() {
        return Err(Failure::invalid(format!("{name} is NULL")));
    }
    if len > isize::MAX as usize / std::mem::size_of::<T>().max(1) {
        return Err(Failure::invalid(format!(
            "{name}: length {len} is too large"
        )));
    }
    // SAFETY: not NULL, length bounded as slices require, and the caller guarantees `len`
    // valid elements for 'a.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// A session id argument: the hyphenated UUID `rkm_connect` or a callback handed out.
///
/// # Safety
/// As [`str_arg`].
pub(crate) unsafe fn session_arg(p: *const c_char) -> FfiResult<SessionId> {
    // SAFETY: forwarded from the caller's guarantee.
    let s = unsafe { str_arg(p, "session_id") }?;
    SessionId::parse_str(s)
        .map_err(|_| Failure::invalid(format!("session_id {s:?} is not a session id")))
}

/// Parses `ip:port`, `[ipv6]:port` or `host:port` (resolved, first address).
pub(crate) fn parse_addr(s: &str, name: &str) -> FfiResult<SocketAddr> {
    if let Ok(a) = s.parse() {
        return Ok(a);
    }
    s.to_socket_addrs()
        .ok()
        .and_then(|mut it| it.next())
        .ok_or_else(|| Failure::invalid(format!("{name} = {s:?} is not an ip:port address")))
}

/// An optional address argument: NULL gives `None`.
///
/// # Safety
/// As [`str_arg`].
pub(crate) unsafe fn opt_addr_arg(p: *const c_char, name: &str) -> FfiResult<Option<SocketAddr>> {
    // SAFETY: forwarded from the caller's guarantee.
    match unsafe { opt_str_arg(p, name) }? {
        Some(s) => parse_addr(s, name).map(Some),
        None => Ok(None),
    }
}

/// Copies `text` and a terminating NUL into a caller's buffer of `cap` bytes.
///
/// # Safety
/// `out` is NULL or points to `cap` writable bytes.
pub(crate) unsafe fn write_c_string(
    text: &str,
    out: *mut c_char,
    cap: usize,
    name: &str,
) -> FfiResult<()> {
    if out.is_null() {
        return Err(Failure::invalid(format!("{name} is NULL")));
    }
    let need = text.len() + 1;
    if cap < need {
        return Err(Failure::new(
            rkm_status::RKM_ERR_BUFFER_TOO_SMALL,
            format!("{name} holds {cap} bytes, {need} are needed"),
        ));
    }
    // SAFETY: `out` has room for `cap >= text.len() + 1` bytes, and a Rust string cannot overlap
    // a buffer the caller lent us for writing.
    unsafe { std::ptr::copy_nonoverlapping(text.as_ptr().cast::<c_char>(), out, text.len()) };
    let end = out.wrapping_add(text.len());
    // SAFETY: `text.len() < cap`, so `end` is inside the caller's buffer.
    unsafe { end.write(0) };
    Ok(())
}

/// A session id as a NUL-terminated hyphenated UUID in a stack buffer, for handing to callbacks
/// without allocating.
pub(crate) struct SessionIdText([u8; RKM_SESSION_ID_LEN]);

impl SessionIdText {
    pub(crate) fn new(id: SessionId) -> SessionIdText {
        let mut buf = [0u8; RKM_SESSION_ID_LEN];
        id.hyphenated()
            .encode_lower(&mut buf[..RKM_SESSION_ID_LEN - 1]);
        SessionIdText(buf)
    }

    /// The NUL-terminated text; valid while `self` is.
    pub(crate) fn as_ptr(&self) -> *const c_char {
        self.0.as_ptr().cast()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_id_text_is_the_hyphenated_uuid() {
        let id = SessionId::new_v4();
        let t = SessionIdText::new(id);
        // SAFETY: the buffer ends with a NUL written by `new` (the array starts zeroed and the
        // UUID fills only the first 36 bytes).
        let s = unsafe { CStr::from_ptr(t.as_ptr()) };
        assert_eq!(s.to_str().unwrap(), id.hyphenated().to_string());
    }

    #[test]
    fn too_small_buffers_are_refused_before_writing() {
        let mut buf = [b'x' as c_char; 4];
        // SAFETY: `buf` has 4 writable bytes.
        let r = unsafe { write_c_string("abcd", buf.as_mut_ptr(), 4, "out") };
        assert_eq!(r.unwrap_err().status, rkm_status::RKM_ERR_BUFFER_TOO_SMALL);
        assert!(buf.iter().all(|&c| c == b'x' as c_char));
        // SAFETY: as above.
        unsafe { write_c_string("abc", buf.as_mut_ptr(), 4, "out") }.unwrap();
        assert_eq!(buf[3], 0);
    }

    #[test]
    fn addresses_parse_or_name_the_argument() {
        assert_eq!(
            parse_addr("127.0.0.1:5004", "a").unwrap(),
            "127.0.0.1:5004".parse().unwrap()
        );
        let e = parse_addr("nonsense", "remote_addr").unwrap_err();
        assert!(e.message.contains("remote_addr"));
    }
}
