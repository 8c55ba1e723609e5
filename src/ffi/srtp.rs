//! SRTP keys handed over by C for an RTP session (`rkm_connect_options`).
//!
//! A key travels as text, the way SDES (RFC 4568) writes it: the suite's name and base64 of the
//! master key || salt. The base64 is decoded straight into an [`SrtpKey`], which zeroes itself
//! when dropped; the decoding buffer is zeroed too, and no message ever quotes a key.

use std::ffi::c_char;

use super::args::opt_str_arg;
use super::status::{Failure, FfiResult};
use crate::{SrtpKey, SrtpKeys, SrtpSuite};

/// The SRTP keys of one stream of an RTP session, as text in SDES's form, so keys a program
/// exchanged in its own signalling (or read from an `a=crypto` line) pass through unchanged.
///
/// All three NULL (what `rkm_connect_options_init` sets): plain RTP. Otherwise all three are
/// required. Strings are read during the call only; the library keeps its own copy of the keys,
/// zeroed when the session ends, and never logs them. Clearing the caller's strings is the
/// caller's business.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct rkm_srtp_keys {
    /// The suite, by its SDES name (case-sensitive, as in SDP): `"AES_CM_128_HMAC_SHA1_80"`,
    /// `"AES_CM_128_HMAC_SHA1_32"` or `"AEAD_AES_128_GCM"`.
    pub suite: *const c_char,
    /// The key we protect what we send with: base64 (standard alphabet, padded) of master key
    /// || master salt, 30 bytes for AES-CM (40 characters), 28 for GCM (40 characters with its
    /// padding); the `inline:` value of an `a=crypto` line, which may keep its `inline:` prefix
    /// (no `|lifetime` or `|MKI`).
    pub send_key: *const c_char,
    /// The key the peer protects what it sends with (what we unprotect with), in the same form.
    /// It may be the same as `send_key` when both ends share one key (each end's packets are
    /// then told apart by their SSRC).
    pub recv_key: *const c_char,
}

impl rkm_srtp_keys {
    /// No keys: plain RTP.
    pub(crate) const PLAIN: rkm_srtp_keys = rkm_srtp_keys {
        suite: std::ptr::null(),
        send_key: std::ptr::null(),
        recv_key: std::ptr::null(),
    };

    /// Whether any field is set (NULL everywhere means plain RTP).
    pub(crate) fn is_set(&self) -> bool {
        !(self.suite.is_null() && self.send_key.is_null() && self.recv_key.is_null())
    }
}

/// The keys `k` describes, `None` for plain RTP. `name` prefixes the messages
/// (`"opts.audio_srtp"`).
///
/// # Safety
/// Each pointer of `k` is NULL or a NUL-terminated string valid for the call.
pub(crate) unsafe fn srtp_keys_from_c(
    k: &rkm_srtp_keys,
    name: &str,
) -> FfiResult<Option<SrtpKeys>> {
    if !k.is_set() {
        return Ok(None);
    }
    let field = |p: *const c_char, f: &str| -> FfiResult<&str> {
        let full = format!("{name}.{f}");
        // SAFETY: forwarded from the caller's guarantee.
        unsafe { opt_str_arg(p, &full) }?.ok_or_else(|| {
            Failure::invalid(format!(
                "{full} is NULL; SRTP needs suite, send_key and recv_key (all NULL: plain RTP)"
            ))
        })
    };
    let suite = field(k.suite, "suite")?;
    let send = field(k.send_key, "send_key")?;
    let recv = field(k.recv_key, "recv_key")?;
    let suite = SrtpSuite::from_sdes_text(suite)
        .map_err(|why| Failure::invalid(format!("{name}.suite: {why}")))?;
    let key = |text: &str, f: &str| {
        SrtpKey::from_sdes_text(suite, text)
            .map_err(|why| Failure::invalid(format!("{name}.{f}: {why}")))
    };
    Ok(Some(SrtpKeys {
        send: key(send, "send_key")?,
        recv: key(recv, "recv_key")?,
    }))
}

#[cfg(test)]
mod tests {
    use std::ffi::CString;

    use super::*;

    // RFC 4568 §8.1's example key (30 bytes).
    const KEY: &str = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";

    fn parse(
        suite: Option<&str>,
        send: Option<&str>,
        recv: Option<&str>,
    ) -> FfiResult<Option<SrtpKeys>> {
        let c = |s: Option<&str>| s.map(|s| CString::new(s).unwrap());
        let (a, b, d) = (c(suite), c(send), c(recv));
        let p = |s: &Option<CString>| s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
        let k = rkm_srtp_keys {
            suite: p(&a),
            send_key: p(&b),
            recv_key: p(&d),
        };
        // SAFETY: the strings live until the end of this function.
        unsafe { srtp_keys_from_c(&k, "opts.audio_srtp") }
    }

    fn message(r: FfiResult<Option<SrtpKeys>>) -> String {
        let f = r.unwrap_err();
        assert_eq!(f.status, crate::ffi::rkm_status::RKM_ERR_INVALID_ARGUMENT);
        f.message
    }

    #[test]
    fn all_null_is_plain_rtp_and_complete_keys_are_read() {
        assert!(parse(None, None, None).unwrap().is_none());
        let keys = parse(
            Some("AES_CM_128_HMAC_SHA1_32"),
            Some(KEY),
            Some(&format!("inline:{KEY}")),
        )
        .unwrap()
        .unwrap();
        assert_eq!(keys.suite(), SrtpSuite::AesCm128HmacSha1_32);
        assert_eq!(keys.send, keys.recv);
        let gcm = "CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQ=="; // 28 bytes
        let keys = parse(Some("AEAD_AES_128_GCM"), Some(gcm), Some(gcm))
            .unwrap()
            .unwrap();
        assert_eq!(keys.suite(), SrtpSuite::AeadAes128Gcm);
    }

    #[test]
    fn incomplete_unknown_or_wrongly_sized_keys_are_refused_by_name() {
        let m = message(parse(None, Some(KEY), Some(KEY)));
        assert!(m.contains("opts.audio_srtp.suite is NULL"), "{m}");
        let m = message(parse(Some("AES_CM_128_HMAC_SHA1_80"), Some(KEY), None));
        assert!(m.contains("opts.audio_srtp.recv_key is NULL"), "{m}");
        let m = message(parse(Some("AES_CM_128_HMAC_SHA1_81"), Some(KEY), Some(KEY)));
        assert!(
            m.contains("opts.audio_srtp.suite: \"AES_CM_128_HMAC_SHA1_81\" is not an SRTP suite"),
            "{m}"
        );
        let m = message(parse(Some("AEAD_AES_128_GCM"), Some(KEY), Some(KEY)));
        assert!(
            m.contains("opts.audio_srtp.send_key") && m.contains("28 bytes"),
            "{m}"
        );
        let m = message(parse(
            Some("AES_CM_128_HMAC_SHA1_80"),
            Some(KEY),
            Some("AAAA"),
        ));
        assert!(
            m.contains("opts.audio_srtp.recv_key") && m.contains("30 bytes"),
            "{m}"
        );
        assert!(!m.contains(KEY), "a message quoted the key: {m}");
    }
}
