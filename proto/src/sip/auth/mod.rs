//! HTTP digest authentication for SIP (RFC 3261 §22, RFC 2617, RFC 7616 with RFC 8760's SIP
//! use of SHA-256), both sides.
//!
//! - Shared (here): the `response` computation for MD5, MD5-sess, SHA-256 and SHA-256-sess
//!   ([`DigestInput`]) and the bounds on what is read or remembered.
//! - Parser (`parse.rs`): the `Digest` parameter lists of challenges and credentials (fed network
//!   data: quoted strings with escapes, commas inside quotes, several challenges in one value;
//!   bounded, never panics).
//! - Client (`client.rs`, [`DigestClient`]): answers `WWW-Authenticate` (401) and
//!   `Proxy-Authenticate` (407) challenges with `qop=auth`, a fresh cnonce per request and a
//!   nonce count per nonce, picks the strongest algorithm offered per realm, and tells a wrong
//!   password (a fresh challenge answered and challenged again without `stale=true`) from an
//!   expired nonce.
//! - Server (`server.rs`, [`DigestAuthenticator`]): issues nonces that expire after a
//!   configurable time and are accepted once: a second use, or an expired or unknown nonce, gets
//!   a fresh challenge with `stale=true`, while a wrong password gets a refusal (403). Time is
//!   passed in.

use std::fmt;

use md5::Md5;
use sha2::{Digest, Sha256};

mod client;
mod parse;
mod server;

#[cfg_attr(not(feature = "_internals"), allow(unused_imports))]
#[cfg(any(test, feature = "_internals"))]
pub use client::authorization_value;
#[cfg_attr(not(feature = "_internals"), allow(unused_imports))]
pub use client::{select_challenges, ChallengeError, ChallengeKind, Credentials, DigestClient};
#[cfg_attr(not(feature = "_internals"), allow(unused_imports))]
pub use parse::{parse_authorization, parse_challenges, DigestChallenge, DigestCredentials};
pub use server::{AuthOutcome, DigestAuthenticator};

/// Most nonces kept at once; beyond this the oldest are forgotten (their holders are simply
/// challenged again).
const MAX_OUTSTANDING_NONCES: usize = 4096;

/// Most challenges (or credentials) read from one header value.
const MAX_AUTH_ITEMS: usize = 16;

/// Most parameters read in one challenge or credentials.
const MAX_AUTH_PARAMS: usize = 32;

/// Most (header, realm) pairs a [`DigestClient`] remembers.
const MAX_CLIENT_REALMS: usize = 8;

/// How many times in a row a client answers `stale=true` challenges to credentials it has just
/// computed before it gives up (a server that keeps calling fresh nonces stale is broken).
const MAX_STALE_RETRIES: u32 = 2;

/// A digest hash algorithm (RFC 7616 §3.2 names; RFC 8760 brings SHA-256 to SIP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigestAlgorithm {
    /// `MD5` (RFC 2617; the default when a challenge names none).
    Md5,
    /// `MD5-sess`: HA1 also covers the nonce and cnonce.
    Md5Sess,
    /// `SHA-256` (RFC 7616, RFC 8760).
    Sha256,
    /// `SHA-256-sess`.
    Sha256Sess,
}

impl DigestAlgorithm {
    /// The algorithm named by an `algorithm=` token, compared without case; `None` when we do
    /// not implement it (e.g. `SHA-512-256`, `AKAv1-MD5`).
    pub fn from_token(token: &str) -> Option<DigestAlgorithm> {
        [
            DigestAlgorithm::Md5,
            DigestAlgorithm::Md5Sess,
            DigestAlgorithm::Sha256,
            DigestAlgorithm::Sha256Sess,
        ]
        .into_iter()
        .find(|a| a.as_str().eq_ignore_ascii_case(token))
    }

    /// The token as written in `algorithm=`.
    pub fn as_str(self) -> &'static str {
        match self {
            DigestAlgorithm::Md5 => "MD5",
            DigestAlgorithm::Md5Sess => "MD5-sess",
            DigestAlgorithm::Sha256 => "SHA-256",
            DigestAlgorithm::Sha256Sess => "SHA-256-sess",
        }
    }

    /// True for the `-sess` variants.
    pub fn is_session(self) -> bool {
        matches!(self, DigestAlgorithm::Md5Sess | DigestAlgorithm::Sha256Sess)
    }

    /// Preference when a server offers several: SHA-256 over MD5 (RFC 8760 §2.4 asks for the
    /// strongest supported), and the plain form over `-sess` for the same hash (fewer peers
    /// implement `-sess` correctly).
    fn preference(self) -> u8 {
        match self {
            DigestAlgorithm::Sha256 => 4,
            DigestAlgorithm::Sha256Sess => 3,
            DigestAlgorithm::Md5 => 2,
            DigestAlgorithm::Md5Sess => 1,
        }
    }

    /// The hash of `data` as lowercase hex.
    fn hash_hex(self, data: &[u8]) -> String {
        match self {
            DigestAlgorithm::Md5 | DigestAlgorithm::Md5Sess => hex(&Md5::digest(data)),
            DigestAlgorithm::Sha256 | DigestAlgorithm::Sha256Sess => hex(&Sha256::digest(data)),
        }
    }
}

impl fmt::Display for DigestAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Why an authentication header could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// Not a `Digest` header.
    NotDigest,
    /// The header is not a well-formed list of `name=value` pairs.
    Malformed(&'static str),
    /// A required parameter is missing.
    Missing(&'static str),
    /// A well-formed digest header asking for something we do not implement (an algorithm, or
    /// a `qop` list without `auth`).
    Unsupported(String),
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::NotDigest => f.write_str("authentication scheme is not Digest"),
            AuthError::Malformed(why) => write!(f, "malformed authentication header: {why}"),
            AuthError::Missing(p) => write!(f, "authentication header lacks {p}"),
            AuthError::Unsupported(what) => write!(f, "unsupported digest {what}"),
        }
    }
}

impl std::error::Error for AuthError {}

/// Everything a digest `response` is computed from.
#[derive(Debug, Clone, Copy)]
pub struct DigestInput<'a> {
    /// The hash algorithm.
    pub algorithm: DigestAlgorithm,
    /// The user name.
    pub username: &'a str,
    /// The realm of the challenge.
    pub realm: &'a str,
    /// The password.
    pub password: &'a str,
    /// The request's method (`REGISTER`, `INVITE`, ...).
    pub method: &'a str,
    /// The digest-uri: the Request-URI as sent.
    pub uri: &'a str,
    /// The server's nonce.
    pub nonce: &'a str,
    /// The client nonce (with `qop`, and for the `-sess` algorithms).
    pub cnonce: Option<&'a str>,
    /// The nonce count as 8 hex digits: `Some` selects `qop=auth`, `None` the RFC 2069 form.
    pub nc: Option<&'a str>,
}

impl DigestInput<'_> {
    /// The `response` value (RFC 7616 §3.4.1, with `qop=auth` when `nc` is given).
    pub fn response(&self) -> String {
        let alg = self.algorithm;
        let mut ha1 =
            alg.hash_hex(format!("{}:{}:{}", self.username, self.realm, self.password).as_bytes());
        if alg.is_session() {
            let cnonce = self.cnonce.unwrap_or_default();
            ha1 = alg.hash_hex(format!("{ha1}:{}:{cnonce}", self.nonce).as_bytes());
        }
        let ha2 = alg.hash_hex(format!("{}:{}", self.method, self.uri).as_bytes());
        match self.nc {
            Some(nc) => alg.hash_hex(
                format!(
                    "{ha1}:{}:{nc}:{}:auth:{ha2}",
                    self.nonce,
                    self.cnonce.unwrap_or_default()
                )
                .as_bytes(),
            ),
            None => alg.hash_hex(format!("{ha1}:{}:{ha2}", self.nonce).as_bytes()),
        }
    }
}

/// The MD5 digest `response` value. With `qop` (`Some((nc, cnonce))`) this is RFC 2617's
/// `qop=auth` form; without it, RFC 2069's.
#[cfg(any(test, feature = "_internals"))]
#[allow(clippy::too_many_arguments)]
pub fn digest_response(
    username: &str,
    realm: &str,
    password: &str,
    method: &str,
    uri: &str,
    nonce: &str,
    qop_auth: Option<(&str, &str)>,
) -> String {
    DigestInput {
        algorithm: DigestAlgorithm::Md5,
        username,
        realm,
        password,
        method,
        uri,
        nonce,
        cnonce: qop_auth.map(|(_, c)| c),
        nc: qop_auth.map(|(nc, _)| nc),
    }
    .response()
}

#[cfg(test)]
mod tests;
