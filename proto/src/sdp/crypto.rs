//! SDES (RFC 4568): the `a=crypto` attribute that carries an SRTP master key in the SDP, and the
//! policy that decides whether a call is offered and answered with SRTP.
//!
//! `a=crypto:<tag> <suite> inline:<base64 key||salt>[|<lifetime>][|<MKI>:<length>] [<params>]`
//!
//! The attribute comes from the network: it is read strictly. A line we cannot honour exactly
//! (an unknown suite, a key of the wrong length, several keys, an MKI, a session parameter such
//! as `UNENCRYPTED_SRTP` or `KDR`) is not an error of the whole description; it is simply not a
//! candidate, as RFC 4568 §6.1 asks of attributes we do not understand.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::rtp::srtp::{SrtpKey, SrtpSuite};

/// Whether a call uses SRTP (SDES keys), per backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SrtpPolicy {
    /// Plain RTP only: `a=crypto` lines are ignored and `RTP/SAVP` offers refused.
    #[default]
    Off,
    /// Offer `RTP/AVP(F)` with crypto lines (the peer may take either); answer `RTP/SAVP(F)`
    /// offers with SRTP and plain offers with plain RTP.
    Optional,
    /// Only SRTP: offer `RTP/SAVP(F)`; refuse plain offers (SIP: 488).
    Mandatory,
}

impl SrtpPolicy {
    /// The policy's name on the command line and in configuration (`off`, `optional`,
    /// `mandatory`).
    pub fn as_str(self) -> &'static str {
        match self {
            SrtpPolicy::Off => "off",
            SrtpPolicy::Optional => "optional",
            SrtpPolicy::Mandatory => "mandatory",
        }
    }

    /// Reads a policy name, case-insensitively.
    pub fn from_name(name: &str) -> Option<SrtpPolicy> {
        [SrtpPolicy::Off, SrtpPolicy::Optional, SrtpPolicy::Mandatory]
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for SrtpPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One usable `a=crypto` line: its tag and the key it announces. `Debug` redacts the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CryptoAttr {
    /// The tag (1 to 9 digits) an answer echoes.
    pub tag: u32,
    /// The suite and the master key || salt the writer sends with.
    pub key: SrtpKey,
    /// The key lifetime in packets, when given (we never send that many on one key).
    pub lifetime: Option<u64>,
}

/// Why an `a=crypto` value is not a candidate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CryptoError {
    /// Not `<tag> <suite> <key-params>`, or a tag that is not 1–9 digits.
    Syntax,
    /// A suite we do not implement.
    UnknownSuite,
    /// Not exactly one `inline:` key, or one that is not base64 of the suite's length.
    BadKey,
    /// An MKI, or session parameters: valid SDES we do not implement.
    Unsupported,
}

impl fmt::Display for CryptoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CryptoError::Syntax => "malformed a=crypto",
            CryptoError::UnknownSuite => "unknown SRTP suite",
            CryptoError::BadKey => "bad SDES key",
            CryptoError::Unsupported => "SDES MKI or session parameters not supported",
        })
    }
}

impl std::error::Error for CryptoError {}

/// Reads the value of one `a=crypto` attribute (what follows `crypto:`).
pub fn parse_crypto(value: &str) -> Result<CryptoAttr, CryptoError> {
    let mut fields = value.split([' ', '\t']).filter(|f| !f.is_empty());
    let tag = fields.next().ok_or(CryptoError::Syntax)?;
    let suite = fields.next().ok_or(CryptoError::Syntax)?;
    let key_params = fields.next().ok_or(CryptoError::Syntax)?;
    if fields.next().is_some() {
        return Err(CryptoError::Unsupported);
    }
    if tag.is_empty() || tag.len() > 9 || !tag.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CryptoError::Syntax);
    }
    let tag: u32 = tag.parse().map_err(|_| CryptoError::Syntax)?;
    let suite = SrtpSuite::from_sdp_name(suite).ok_or(CryptoError::UnknownSuite)?;
    if key_params.contains(';') {
        // Several keys are only told apart by MKI, which we do not do.
        return Err(CryptoError::Unsupported);
    }
    let inline = key_params
        .strip_prefix("inline:")
        .ok_or(CryptoError::BadKey)?;
    let mut parts = inline.split('|');
    let b64 = parts.next().unwrap_or_default();
    let key = SrtpKey::from_base64(suite, b64).map_err(|_| CryptoError::BadKey)?;
    let mut lifetime = None;
    for (i, part) in parts.enumerate() {
        if part.contains(':') {
            // <MKI value>:<length>
            return Err(CryptoError::Unsupported);
        }
        if i > 0 {
            return Err(CryptoError::Syntax);
        }
        lifetime = Some(parse_lifetime(part)?);
    }
    Ok(CryptoAttr { tag, key, lifetime })
}

/// A lifetime: decimal digits or `2^n` (RFC 4568 §6.1).
fn parse_lifetime(text: &str) -> Result<u64, CryptoError> {
    let value = match text.strip_prefix("2^") {
        Some(exp)
            if !exp.is_empty() && exp.len() <= 2 && exp.bytes().all(|b| b.is_ascii_digit()) =>
        {
            let exp: u32 = exp.parse().map_err(|_| CryptoError::Syntax)?;
            1u64.checked_shl(exp).filter(|_| exp < 64)
        }
        Some(_) => None,
        None if !text.is_empty()
            && text.len() <= 19
            && text.bytes().all(|b| b.is_ascii_digit()) =>
        {
            text.parse().ok()
        }
        None => None,
    };
    value.filter(|&v| v > 0).ok_or(CryptoError::Syntax)
}

/// The value of an `a=crypto` attribute announcing `key` under `tag` (no lifetime, no MKI).
pub fn format_crypto(tag: u32, key: &SrtpKey) -> String {
    format!(
        "{tag} {} inline:{}",
        key.suite().sdp_name(),
        STANDARD.encode(key.key_and_salt())
    )
}

/// The offered line an answer takes: the first of `ours` (in our order of preference) that the
/// offer has, the first line of that suite.
pub fn choose_crypto<'a>(offered: &'a [CryptoAttr], ours: &[SrtpSuite]) -> Option<&'a CryptoAttr> {
    ours.iter()
        .find_map(|suite| offered.iter().find(|c| c.key.suite() == *suite))
}

/// Our sending keys for one call: a fresh key per suite for audio and for video, drawn once, so
/// an offer can list every suite and an answer (or a re-answer) can take any, each with its own
/// key. Zeroed on drop with the keys; `Debug` redacts them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalKeys {
    audio: Vec<SrtpKey>,
    video: Vec<SrtpKey>,
}

impl LocalKeys {
    /// Keys from `rng`, which must be a cryptographically secure generator.
    pub fn generate<R: rand::RngCore + rand::CryptoRng>(rng: &mut R) -> LocalKeys {
        let mut draw = || {
            SrtpSuite::ALL
                .iter()
                .map(|s| SrtpKey::generate(*s, rng))
                .collect::<Vec<_>>()
        };
        let audio = draw();
        let video = draw();
        LocalKeys { audio, video }
    }

    /// Keys from the operating system's CSPRNG.
    pub fn from_os_rng() -> LocalKeys {
        use rand::TryRngCore as _;
        LocalKeys::generate(&mut rand::rngs::OsRng.unwrap_err())
    }

    /// Our key for a stream (audio or video) and a suite.
    pub fn key(&self, video: bool, suite: SrtpSuite) -> &SrtpKey {
        let keys = if video { &self.video } else { &self.audio };
        // Every suite has a key: `generate` draws one per entry of SrtpSuite::ALL, in order.
        let at = SrtpSuite::ALL.iter().position(|s| *s == suite).unwrap_or(0);
        &keys[at]
    }
}

/// What the SDP says about SRTP for one m-line when we answer it or read its answer: `None`
/// for plain RTP, else the tag and the keys of both directions.
pub(crate) fn negotiate_offered(
    proto: &str,
    offered: &[CryptoAttr],
    policy: SrtpPolicy,
    suites: &[SrtpSuite],
    keys: &LocalKeys,
    video: bool,
) -> Result<Option<(u32, crate::rtp::srtp::SrtpKeys)>, String> {
    let secure = is_secure_proto(proto);
    let chosen = choose_crypto(offered, suites);
    match (policy, secure, chosen) {
        (SrtpPolicy::Off, true, _) => Err(format!("{proto} offered and SRTP is off")),
        (SrtpPolicy::Off, false, _) => Ok(None),
        (_, true, None) => Err("no SRTP crypto suite in common".to_string()),
        (SrtpPolicy::Mandatory, false, _) => Err(format!("{proto} offered and SRTP is mandatory")),
        (SrtpPolicy::Optional, false, None) => Ok(None),
        (_, _, Some(c)) => Ok(Some((
            c.tag,
            crate::rtp::srtp::SrtpKeys {
                send: keys.key(video, c.key.suite()).clone(),
                recv: c.key.clone(),
            },
        ))),
    }
}

/// Whether an m-line's protocol is RTP over SRTP: `RTP/SAVP` or `RTP/SAVPF`.
pub fn is_secure_proto(proto: &str) -> bool {
    proto.eq_ignore_ascii_case("RTP/SAVP") || proto.eq_ignore_ascii_case("RTP/SAVPF")
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 4568 §8.1's example key (30 bytes).
    const KEY: &str = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";

    #[test]
    fn reads_the_rfc_example_and_writes_it_back() {
        let line = format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^20|1:4");
        assert_eq!(parse_crypto(&line), Err(CryptoError::Unsupported), "MKI");
        let c = parse_crypto(&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^20")).unwrap();
        assert_eq!(c.tag, 1);
        assert_eq!(c.lifetime, Some(1 << 20));
        assert_eq!(c.key.suite(), SrtpSuite::AesCm128HmacSha1_80);
        assert_eq!(
            format_crypto(1, &c.key),
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}")
        );
        let c = parse_crypto(&format!("7   AES_CM_128_HMAC_SHA1_32 inline:{KEY}|1048576")).unwrap();
        assert_eq!((c.tag, c.lifetime), (7, Some(1_048_576)));
        assert!(!format!("{c:?}").contains(KEY));
    }

    #[test]
    fn gcm_keys_are_28_bytes() {
        let key = SrtpKey::generate(SrtpSuite::AeadAes128Gcm, &mut rand::rng());
        let line = format_crypto(3, &key);
        assert!(line.starts_with("3 AEAD_AES_128_GCM inline:"));
        assert_eq!(parse_crypto(&line).unwrap().key, key);
        // A 30-byte AES-CM key under the GCM name is refused.
        assert_eq!(
            parse_crypto(&format!("3 AEAD_AES_128_GCM inline:{KEY}")),
            Err(CryptoError::BadKey)
        );
    }

    #[test]
    fn refuses_what_it_cannot_honour_exactly() {
        let bad = [
            ("", CryptoError::Syntax),
            ("1", CryptoError::Syntax),
            ("1 AES_CM_128_HMAC_SHA1_80", CryptoError::Syntax),
            ("x AES_CM_128_HMAC_SHA1_80 inline:AAAA", CryptoError::Syntax),
            (
                "1234567890 AES_CM_128_HMAC_SHA1_80 inline:AAAA",
                CryptoError::Syntax,
            ),
            (
                "1 F8_128_HMAC_SHA1_80 inline:AAAA",
                CryptoError::UnknownSuite,
            ),
            (
                "1 aes_cm_128_hmac_sha1_80 inline:AAAA",
                CryptoError::UnknownSuite,
            ),
            ("1 AES_CM_128_HMAC_SHA1_80 inline:AAAA", CryptoError::BadKey),
            ("1 AES_CM_128_HMAC_SHA1_80 inline:", CryptoError::BadKey),
            (
                "1 AES_CM_128_HMAC_SHA1_80 outline:AAAA",
                CryptoError::BadKey,
            ),
            ("1 AES_CM_128_HMAC_SHA1_80 inline:!!!!", CryptoError::BadKey),
        ];
        for (line, why) in bad {
            assert_eq!(parse_crypto(line), Err(why), "{line:?}");
        }
        let tails = [
            (format!("inline:{KEY}|2^99"), CryptoError::Syntax),
            (format!("inline:{KEY}|0"), CryptoError::Syntax),
            (format!("inline:{KEY}|2^"), CryptoError::Syntax),
            (format!("inline:{KEY}|2^20|2^20"), CryptoError::Syntax),
            (
                format!("inline:{KEY};inline:{KEY}"),
                CryptoError::Unsupported,
            ),
            (
                format!("inline:{KEY} UNENCRYPTED_SRTP"),
                CryptoError::Unsupported,
            ),
            (format!("inline:{KEY} KDR=1"), CryptoError::Unsupported),
            (format!("inline:{KEY}A"), CryptoError::BadKey),
        ];
        for (tail, why) in tails {
            let line = format!("1 AES_CM_128_HMAC_SHA1_80 {tail}");
            assert_eq!(parse_crypto(&line), Err(why), "{line:?}");
        }
    }

    #[test]
    fn the_answer_takes_our_first_suite_the_offer_has() {
        let line =
            |tag, suite| parse_crypto(&format_crypto(tag, &SrtpKey::from_os_rng(suite))).unwrap();
        let offered = vec![
            line(1, SrtpSuite::AesCm128HmacSha1_32),
            line(2, SrtpSuite::AeadAes128Gcm),
            line(3, SrtpSuite::AesCm128HmacSha1_80),
        ];
        assert_eq!(choose_crypto(&offered, &SrtpSuite::ALL).unwrap().tag, 3);
        assert_eq!(
            choose_crypto(&offered, &[SrtpSuite::AeadAes128Gcm])
                .unwrap()
                .tag,
            2
        );
        assert!(choose_crypto(&offered[..1], &[SrtpSuite::AeadAes128Gcm]).is_none());
    }

    #[test]
    fn policy_names() {
        for p in [SrtpPolicy::Off, SrtpPolicy::Optional, SrtpPolicy::Mandatory] {
            assert_eq!(SrtpPolicy::from_name(p.as_str()), Some(p));
        }
        assert_eq!(
            SrtpPolicy::from_name("MANDATORY"),
            Some(SrtpPolicy::Mandatory)
        );
        assert_eq!(SrtpPolicy::from_name("required"), None);
        assert!(is_secure_proto("RTP/SAVPF") && !is_secure_proto("RTP/AVP"));
    }
}
