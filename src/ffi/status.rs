//! Status codes, the thread-local error message, and the panic boundary every entry point uses.
//!
//! Every `extern "C"` function of the crate runs its body through [`boundary`]: the body returns a
//! `Result`, a failure is turned into the function's error value (a status code, NULL, 0) with its
//! message stored for `rkm_last_error`, and a panic is caught there too, so it never unwinds into
//! C (which would abort the process).

use std::any::Any;
use std::cell::RefCell;
use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::Error;

/// The result of a call into the library. `RKM_OK` is 0; every other value is a failure whose
/// message `rkm_last_error()` returns on the same thread.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum rkm_status {
    /// Success.
    RKM_OK = 0,
    /// A pointer was NULL, a string was not UTF-8, or a value was out of range; the message
    /// names the argument.
    RKM_ERR_INVALID_ARGUMENT = 1,
    /// No session with that id exists on this backend (any more).
    RKM_ERR_NOT_FOUND = 2,
    /// The operating system refused something (binding a port, sending a packet).
    RKM_ERR_IO = 3,
    /// The call does not fit the object's state (for example, video on a session without video).
    RKM_ERR_STATE = 4,
    /// This kind of backend cannot do this (for example, video on a voice backend).
    RKM_ERR_UNSUPPORTED = 5,
    /// The library hit an internal bug and recovered; the message says where. Please report it.
    RKM_ERR_PANIC = 6,
    /// The caller's output buffer is too small; the message says how many bytes are needed.
    RKM_ERR_BUFFER_TOO_SMALL = 7,
}

/// Why an entry point failed: the status code it returns and the message `rkm_last_error` gives.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) status: rkm_status,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(status: rkm_status, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Failure {
        Failure::new(rkm_status::RKM_ERR_INVALID_ARGUMENT, message)
    }

    pub(crate) fn unsupported(message: impl Into<String>) -> Failure {
        Failure::new(rkm_status::RKM_ERR_UNSUPPORTED, message)
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        let status = match &e {
            Error::InvalidArgument(_) => rkm_status::RKM_ERR_INVALID_ARGUMENT,
            Error::NotFound(_) => rkm_status::RKM_ERR_NOT_FOUND,
            Error::State(_) => rkm_status::RKM_ERR_STATE,
            Error::Unsupported(_) => rkm_status::RKM_ERR_UNSUPPORTED,
            Error::Io(..) => rkm_status::RKM_ERR_IO,
            // Unreachable today: `Error` is `#[non_exhaustive]` and lives in roomkit-media-proto,
            // so the compiler asks for this arm. A new variant must get its status above.
            _ => rkm_status::RKM_ERR_STATE,
        };
        Failure::new(status, e.to_string())
    }
}

/// What an entry point body returns.
pub(crate) type FfiResult<T> = Result<T, Failure>;

/// The value an entry point returns to C when it fails with `status`.
pub(crate) trait FailureValue {
    fn failure_value(status: rkm_status) -> Self;
}

impl FailureValue for rkm_status {
    fn failure_value(status: rkm_status) -> Self {
        status
    }
}

impl<T> FailureValue for *mut T {
    fn failure_value(_: rkm_status) -> Self {
        std::ptr::null_mut()
    }
}

impl<T> FailureValue for *const T {
    fn failure_value(_: rkm_status) -> Self {
        std::ptr::null()
    }
}

impl FailureValue for usize {
    fn failure_value(_: rkm_status) -> Self {
        0
    }
}

impl FailureValue for () {
    fn failure_value(_: rkm_status) -> Self {}
}

thread_local! {
    /// The message of the last failure on this thread. Replaced (and the old text freed) by the
    /// next failure, so the pointer `rkm_last_error` hands out lives until then.
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Stores `message` as this thread's last error. Interior NUL bytes (which C could not see past)
/// become spaces.
pub(crate) fn set_last_error(message: &str) {
    let text = CString::new(message.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|slot| *slot.borrow_mut() = text);
}

fn panic_text(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "unknown panic payload"
    }
}

/// Runs the body of an entry point named `name`: a failure or a panic becomes the function's
/// error value, with the message recorded for `rkm_last_error`.
pub(crate) fn boundary<T: FailureValue>(name: &str, body: impl FnOnce() -> FfiResult<T>) -> T {
    // AssertUnwindSafe: after a panic nothing the body touched is used again by this call, and
    // the backends keep their shared state behind locks that do not poison (parking_lot), so a
    // later call sees consistent data.
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(v)) => v,
        Ok(Err(f)) => {
            set_last_error(&format!("{name}: {}", f.message));
            T::failure_value(f.status)
        }
        Err(payload) => {
            set_last_error(&format!(
                "{name}: internal error (panic): {}",
                panic_text(payload.as_ref())
            ));
            T::failure_value(rkm_status::RKM_ERR_PANIC)
        }
    }
}

/// The message of the last failed call made on the calling thread, as a NUL-terminated UTF-8
/// string; an empty string when no call has failed on this thread yet. A successful call does
/// not clear it, so read it right after the failing call.
///
/// The string belongs to the library: do not free it. It stays valid until the next failing
/// `rkm_` call on the same thread. Each thread has its own message.
#[no_mangle]
pub extern "C" fn rkm_last_error() -> *const c_char {
    boundary("rkm_last_error", || {
        Ok(LAST_ERROR.with(|slot| slot.borrow().as_ptr()))
    })
}

/// The library version (for example `"0.1.0"`), as a static NUL-terminated string: never freed,
/// valid for the life of the process, callable from any thread.
#[no_mangle]
pub extern "C" fn rkm_version() -> *const c_char {
    boundary("rkm_version", || {
        Ok(concat!(env!("CARGO_PKG_VERSION"), "\0")
            .as_ptr()
            .cast::<c_char>())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    fn last() -> String {
        // SAFETY: rkm_last_error returns a valid NUL-terminated string owned by this thread's
        // slot, and nothing fails between the call and the copy.
        unsafe { CStr::from_ptr(rkm_last_error()) }
            .to_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn a_failure_sets_the_message_and_the_status() {
        let s: rkm_status = boundary("f", || Err(Failure::invalid("x is NULL")));
        assert_eq!(s, rkm_status::RKM_ERR_INVALID_ARGUMENT);
        assert_eq!(last(), "f: x is NULL");
    }

    #[test]
    fn a_panic_becomes_rkm_err_panic_and_null() {
        let s: rkm_status = boundary("g", || panic!("boom"));
        assert_eq!(s, rkm_status::RKM_ERR_PANIC);
        assert!(last().contains("boom"), "{}", last());
        let p: *mut u8 = boundary("h", || panic!("{}", String::from("owned")));
        assert!(p.is_null());
        assert!(last().contains("owned"));
    }

    #[test]
    fn messages_are_per_thread_and_nul_safe() {
        let _: rkm_status = boundary("a", || Err(Failure::invalid("a\0b")));
        assert_eq!(last(), "a: a b");
        std::thread::spawn(|| assert_eq!(last(), ""))
            .join()
            .unwrap();
    }

    #[test]
    fn version_matches_the_crate() {
        // SAFETY: rkm_version returns a static NUL-terminated string.
        let v = unsafe { CStr::from_ptr(rkm_version()) };
        assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    }
}
