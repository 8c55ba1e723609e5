//! HTTP digest authentication for SIP (RFC 3261 §22, RFC 2617), MD5 with `qop=auth`.
//!
//! The server side issues nonces that expire after a configurable time and are accepted once:
//! a second use, or an expired or unknown nonce, gets a fresh challenge with `stale=true`, while
//! a wrong password gets a refusal (403). Time is passed in.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use rand::Rng;

use super::md5::md5_hex;
use super::syntax::{is_token_char, quoted, take_quoted};

/// Most nonces kept at once; beyond this the oldest are forgotten (their holders are simply
/// challenged again).
const MAX_OUTSTANDING_NONCES: usize = 4096;

/// The parameters of a `Digest` Authorization header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DigestCredentials {
    /// `username`
    pub username: String,
    /// `realm`
    pub realm: String,
    /// `nonce`
    pub nonce: String,
    /// `uri` (the digest-uri)
    pub uri: String,
    /// `response` (32 hex digits)
    pub response: String,
    /// `algorithm`, when given
    pub algorithm: Option<String>,
    /// `cnonce`, required with `qop`
    pub cnonce: Option<String>,
    /// `opaque`, when given
    pub opaque: Option<String>,
    /// `qop`, when given
    pub qop: Option<String>,
    /// `nc` (nonce count, 8 hex digits), required with `qop`
    pub nc: Option<String>,
}

/// Why an Authorization header could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// Not a `Digest` header.
    NotDigest,
    /// The header is not a well-formed list of `name=value` pairs.
    Malformed(&'static str),
    /// A required parameter is missing.
    Missing(&'static str),
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::NotDigest => f.write_str("authorization scheme is not Digest"),
            AuthError::Malformed(why) => write!(f, "malformed authorization: {why}"),
            AuthError::Missing(p) => write!(f, "authorization lacks {p}"),
        }
    }
}

impl std::error::Error for AuthError {}

/// Parses an `Authorization` (or `Proxy-Authorization`) value.
pub fn parse_authorization(value: &str) -> Result<DigestCredentials, AuthError> {
    let v = value.trim();
    let scheme_len = v.bytes().take_while(|&b| is_token_char(b)).count();
    if !v[..scheme_len].eq_ignore_ascii_case("Digest") {
        return Err(AuthError::NotDigest);
    }
    let mut rest = v[scheme_len..].trim_start();
    let mut creds = DigestCredentials::default();
    let (mut user, mut realm, mut nonce, mut uri, mut response) = (None, None, None, None, None);
    while !rest.is_empty() {
        let name_len = rest.bytes().take_while(|&b| is_token_char(b)).count();
        if name_len == 0 {
            return Err(AuthError::Malformed("expected a parameter name"));
        }
        let name = rest[..name_len].to_ascii_lowercase();
        rest = rest[name_len..].trim_start();
        rest = rest
            .strip_prefix('=')
            .ok_or(AuthError::Malformed("parameter without '='"))?
            .trim_start();
        let value = if rest.starts_with('"') {
            let (v, after) = take_quoted(rest).map_err(AuthError::Malformed)?;
            rest = after;
            v
        } else {
            let len = rest
                .bytes()
                .take_while(|&b| is_token_char(b) || b == b'/' || b == b':')
                .count();
            if len == 0 {
                return Err(AuthError::Malformed("empty parameter value"));
            }
            let v = rest[..len].to_string();
            rest = &rest[len..];
            v
        };
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix(',') {
            rest = after.trim_start();
            if rest.is_empty() {
                return Err(AuthError::Malformed("trailing comma"));
            }
        } else if !rest.is_empty() {
            return Err(AuthError::Malformed("parameters not separated by ','"));
        }
        match name.as_str() {
            "username" => user = Some(value),
            "realm" => realm = Some(value),
            "nonce" => nonce = Some(value),
            "uri" => uri = Some(value),
            "response" => response = Some(value),
            "algorithm" => creds.algorithm = Some(value),
            "cnonce" => creds.cnonce = Some(value),
            "opaque" => creds.opaque = Some(value),
            "qop" => creds.qop = Some(value),
            "nc" => creds.nc = Some(value),
            _ => {}
        }
    }
    creds.username = user.ok_or(AuthError::Missing("username"))?;
    creds.realm = realm.ok_or(AuthError::Missing("realm"))?;
    creds.nonce = nonce.ok_or(AuthError::Missing("nonce"))?;
    creds.uri = uri.ok_or(AuthError::Missing("uri"))?;
    creds.response = response.ok_or(AuthError::Missing("response"))?;
    if creds.qop.is_some() && (creds.cnonce.is_none() || creds.nc.is_none()) {
        return Err(AuthError::Missing("cnonce/nc with qop"));
    }
    Ok(creds)
}

/// The digest `response` value. With `qop` (`Some((nc, cnonce))`) this is RFC 2617's
/// `qop=auth` form; without it, RFC 2069's.
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
    let ha1 = md5_hex(format!("{username}:{realm}:{password}").as_bytes());
    let ha2 = md5_hex(format!("{method}:{uri}").as_bytes());
    match qop_auth {
        Some((nc, cnonce)) => md5_hex(format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}").as_bytes()),
        None => md5_hex(format!("{ha1}:{nonce}:{ha2}").as_bytes()),
    }
}

/// Builds an Authorization value answering a challenge (what a UAC, or a test, sends).
#[allow(clippy::too_many_arguments)]
pub fn authorization_value(
    username: &str,
    realm: &str,
    password: &str,
    method: &str,
    uri: &str,
    nonce: &str,
    nc: u32,
    cnonce: &str,
    opaque: Option<&str>,
) -> String {
    let nc = format!("{nc:08x}");
    let response = digest_response(
        username,
        realm,
        password,
        method,
        uri,
        nonce,
        Some((&nc, cnonce)),
    );
    // The values come from the challenge (the network) and the configuration: quoted so that a
    // `"` or `\` in them cannot end or break the parameter.
    let mut v = format!(
        "Digest username={}, realm={}, nonce={}, uri={}, response=\"{response}\", algorithm=MD5, \
         cnonce={}, qop=auth, nc={nc}",
        quoted(username),
        quoted(realm),
        quoted(nonce),
        quoted(uri),
        quoted(cnonce),
    );
    if let Some(o) = opaque {
        v.push_str(&format!(", opaque={}", quoted(o)));
    }
    v
}

/// Outcome of checking a request's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// Credentials are right; the nonce is now spent.
    Authorized {
        /// Who authenticated.
        username: String,
    },
    /// Right password but an expired, reused or unknown nonce: challenge again with
    /// `stale=true` (401).
    Stale,
    /// Wrong user, password, realm or algorithm: refuse (403).
    Rejected(String),
}

/// Server-side digest state: the realm and the outstanding nonces.
#[derive(Debug)]
pub struct DigestAuthenticator {
    realm: String,
    nonce_ttl: Duration,
    opaque: String,
    nonces: HashMap<String, Instant>,
}

fn random_hex(bytes: usize) -> String {
    let mut rng = rand::rng();
    (0..bytes)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

impl DigestAuthenticator {
    /// An authenticator for `realm` whose nonces are valid for `nonce_ttl`.
    pub fn new(realm: &str, nonce_ttl: Duration) -> Self {
        DigestAuthenticator {
            realm: realm.to_string(),
            nonce_ttl,
            opaque: random_hex(8),
            nonces: HashMap::new(),
        }
    }

    /// The realm.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// Number of nonces issued and not yet used or expired (for tests and stats).
    pub fn outstanding(&self) -> usize {
        self.nonces.len()
    }

    /// A fresh challenge: the value of a `WWW-Authenticate` header for a 401.
    pub fn challenge(&mut self, now: Instant, stale: bool) -> String {
        self.forget_expired(now);
        if self.nonces.len() >= MAX_OUTSTANDING_NONCES {
            if let Some(oldest) = self
                .nonces
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(n, _)| n.clone())
            {
                self.nonces.remove(&oldest);
            }
        }
        let nonce = random_hex(16);
        self.nonces.insert(nonce.clone(), now);
        let mut v = format!(
            "Digest realm={}, nonce=\"{nonce}\", opaque=\"{}\", algorithm=MD5, qop=\"auth\"",
            quoted(&self.realm),
            self.opaque
        );
        if stale {
            v.push_str(", stale=true");
        }
        v
    }

    fn forget_expired(&mut self, now: Instant) {
        let ttl = self.nonce_ttl;
        self.nonces
            .retain(|_, issued| now.saturating_duration_since(*issued) < ttl);
    }

    /// Checks an Authorization value for a request with `method`. `password_for` looks a user's
    /// password up (None for unknown users).
    pub fn verify(
        &mut self,
        authorization: &str,
        method: &str,
        now: Instant,
        password_for: impl Fn(&str) -> Option<String>,
    ) -> AuthOutcome {
        let creds = match parse_authorization(authorization) {
            Ok(c) => c,
            Err(e) => return AuthOutcome::Rejected(e.to_string()),
        };
        if creds.realm != self.realm {
            return AuthOutcome::Rejected("wrong realm".into());
        }
        if creds
            .algorithm
            .as_deref()
            .is_some_and(|a| !a.eq_ignore_ascii_case("MD5"))
        {
            return AuthOutcome::Rejected("unsupported algorithm".into());
        }
        let qop = match creds.qop.as_deref() {
            None => None,
            Some(q) if q.eq_ignore_ascii_case("auth") => Some((
                creds.nc.as_deref().unwrap_or_default(),
                creds.cnonce.as_deref().unwrap_or_default(),
            )),
            Some(_) => return AuthOutcome::Rejected("unsupported qop".into()),
        };
        let Some(password) = password_for(&creds.username) else {
            return AuthOutcome::Rejected("unknown user".into());
        };
        let expected = digest_response(
            &creds.username,
            &self.realm,
            &password,
            method,
            &creds.uri,
            &creds.nonce,
            qop,
        );
        if !constant_time_eq(
            expected.as_bytes(),
            creds.response.to_ascii_lowercase().as_bytes(),
        ) {
            return AuthOutcome::Rejected("wrong credentials".into());
        }
        // The digest is right; now the nonce must be one we issued, fresh and unused.
        match self.nonces.remove(&creds.nonce) {
            Some(issued) if now.saturating_duration_since(issued) < self.nonce_ttl => {
                AuthOutcome::Authorized {
                    username: creds.username,
                }
            }
            _ => AuthOutcome::Stale,
        }
    }
}

/// Compares two byte strings without an early exit, so timing does not reveal the prefix match.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nonce_of(challenge: &str) -> String {
        let start = challenge.find("nonce=\"").unwrap() + 7;
        challenge[start..start + 32].to_string()
    }

    fn users(name: &str) -> Option<String> {
        (name == "alice").then(|| "s3cret".to_string())
    }

    /// Seen while writing the `sip` fuzz target's digest check (our own credentials must verify):
    /// values holding `"` or `\` (a realm from a peer's challenge, say) were written unescaped,
    /// so our own Authorization did not parse.
    #[test]
    fn our_authorization_quotes_what_it_copies() {
        let mut auth = DigestAuthenticator::new("odd \"realm\" \\", Duration::from_secs(30));
        let now = Instant::now();
        let challenge = auth.challenge(now, false);
        let nonce = nonce_of(&challenge);
        let v = authorization_value(
            "al\"ice",
            "odd \"realm\" \\",
            "pw",
            "INVITE",
            "sip:a\"b@x",
            &nonce,
            1,
            "c\\n",
            Some("o\"p"),
        );
        let c = parse_authorization(&v).unwrap();
        assert_eq!(
            (c.username.as_str(), c.realm.as_str(), c.uri.as_str()),
            ("al\"ice", "odd \"realm\" \\", "sip:a\"b@x")
        );
        assert_eq!(c.opaque.as_deref(), Some("o\"p"));
        let pw = |u: &str| (u == "al\"ice").then(|| "pw".to_string());
        assert!(matches!(
            auth.verify(&v, "INVITE", now, pw),
            AuthOutcome::Authorized { .. }
        ));
    }

    #[test]
    fn rfc2617_example_response() {
        // The worked example of RFC 2617 §3.5 (HTTP GET, qop=auth).
        let r = digest_response(
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            Some(("00000001", "0a4f113b")),
        );
        assert_eq!(r, "6629fae49393a05397450978507c4ef1");
    }

    #[test]
    fn parses_authorization_with_mixed_quoting() {
        let c = parse_authorization(
            "Digest username=\"bob\",realm=\"biloxi.com\", nonce=\"dcd98b\", \
             uri=\"sip:bob@biloxi.com\", qop=auth, nc=00000001, cnonce=\"0a4f113b\", \
             response=\"6629fae49393a05397450978507c4ef1\", opaque=\"5ccc069c\"",
        )
        .unwrap();
        assert_eq!(c.username, "bob");
        assert_eq!(c.qop.as_deref(), Some("auth"));
        assert_eq!(c.nc.as_deref(), Some("00000001"));
        assert_eq!(
            parse_authorization("NoOneKnowsThisScheme opaque-data=here"),
            Err(AuthError::NotDigest)
        );
        assert!(parse_authorization("Digest username=\"bob\"").is_err());
        assert!(parse_authorization("Digest username=\"bob").is_err());
    }

    #[test]
    fn challenge_verify_single_use_and_expiry() {
        let t0 = Instant::now();
        let mut auth = DigestAuthenticator::new("roomkit", Duration::from_secs(30));
        let ch = auth.challenge(t0, false);
        assert!(ch.starts_with("Digest realm=\"roomkit\", nonce=\""));
        assert!(ch.contains("qop=\"auth\""));
        let nonce = nonce_of(&ch);
        let good = authorization_value(
            "alice",
            "roomkit",
            "s3cret",
            "INVITE",
            "sip:svc@h",
            &nonce,
            1,
            "c1",
            None,
        );
        assert_eq!(
            auth.verify(&good, "INVITE", t0, users),
            AuthOutcome::Authorized {
                username: "alice".into()
            }
        );
        // Single use: the same credentials again are stale.
        assert_eq!(auth.verify(&good, "INVITE", t0, users), AuthOutcome::Stale);

        // Expiry.
        let nonce = nonce_of(&auth.challenge(t0, false));
        let late = authorization_value(
            "alice",
            "roomkit",
            "s3cret",
            "INVITE",
            "sip:svc@h",
            &nonce,
            1,
            "c1",
            None,
        );
        assert_eq!(
            auth.verify(&late, "INVITE", t0 + Duration::from_secs(31), users),
            AuthOutcome::Stale
        );
        assert!(auth
            .challenge(t0 + Duration::from_secs(31), true)
            .ends_with("stale=true"));
        assert_eq!(auth.outstanding(), 1);
    }

    #[test]
    fn wrong_password_user_or_method_is_rejected() {
        let t0 = Instant::now();
        let mut auth = DigestAuthenticator::new("roomkit", Duration::from_secs(30));
        let nonce = nonce_of(&auth.challenge(t0, false));
        let wrong = authorization_value(
            "alice",
            "roomkit",
            "guess",
            "INVITE",
            "sip:svc@h",
            &nonce,
            1,
            "c1",
            None,
        );
        assert!(matches!(
            auth.verify(&wrong, "INVITE", t0, users),
            AuthOutcome::Rejected(_)
        ));
        let right = authorization_value(
            "alice",
            "roomkit",
            "s3cret",
            "INVITE",
            "sip:svc@h",
            &nonce,
            1,
            "c1",
            None,
        );
        assert!(matches!(
            auth.verify(&right, "BYE", t0, users),
            AuthOutcome::Rejected(_)
        ));
        let stranger = authorization_value(
            "mallory",
            "roomkit",
            "x",
            "INVITE",
            "sip:svc@h",
            &nonce,
            1,
            "c1",
            None,
        );
        assert!(matches!(
            auth.verify(&stranger, "INVITE", t0, users),
            AuthOutcome::Rejected(_)
        ));
        // A failed attempt does not spend the nonce.
        assert_eq!(
            auth.verify(&right, "INVITE", t0, users),
            AuthOutcome::Authorized {
                username: "alice".into()
            }
        );
    }

    #[test]
    fn nonce_table_is_bounded() {
        let t0 = Instant::now();
        let mut auth = DigestAuthenticator::new("r", Duration::from_secs(3600));
        for i in 0..(MAX_OUTSTANDING_NONCES as u64 + 10) {
            auth.challenge(t0 + Duration::from_millis(i), false);
        }
        assert_eq!(auth.outstanding(), MAX_OUTSTANDING_NONCES);
    }
}
