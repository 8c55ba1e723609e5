//! HTTP digest authentication for SIP (RFC 3261 §22, RFC 2617, RFC 7616 with RFC 8760's SIP
//! use of SHA-256), both sides.
//!
//! - Shared: the `Digest` parameter-list parser (fed network data: quoted strings with escapes,
//!   commas inside quotes, several challenges in one value; bounded, never panics) and the
//!   `response` computation for MD5, MD5-sess, SHA-256 and SHA-256-sess.
//! - Client ([`DigestClient`]): answers `WWW-Authenticate` (401) and `Proxy-Authenticate` (407)
//!   challenges with `qop=auth`, a fresh cnonce per request and a nonce count per nonce, picks
//!   the strongest algorithm offered per realm, and tells a wrong password (a fresh challenge
//!   answered and challenged again without `stale=true`) from an expired nonce.
//! - Server ([`DigestAuthenticator`]): issues nonces that expire after a configurable time and
//!   are accepted once: a second use, or an expired or unknown nonce, gets a fresh challenge
//!   with `stale=true`, while a wrong password gets a refusal (403). Time is passed in.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::md5::md5_hex;
use super::message::SipMessage;
use super::rng::SipRng;
use super::syntax::{is_token_char, quoted, take_quoted};

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
            DigestAlgorithm::Md5 | DigestAlgorithm::Md5Sess => md5_hex(data),
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

/// One `scheme name=value, ...` element of an authentication header, before interpretation.
/// Names are lowercased; quoted values are unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AuthItem {
    scheme: String,
    params: Vec<(String, String)>,
}

impl AuthItem {
    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn is_digest(&self) -> bool {
        self.scheme.eq_ignore_ascii_case("Digest")
    }
}

fn token_len(s: &str) -> usize {
    s.bytes().take_while(|&b| is_token_char(b)).count()
}

/// Splits an authentication header value into its challenges (or credentials). RFC 3261 puts
/// one per header line, but the HTTP list form (`Digest a=1, Digest b=2`) is read too: after a
/// comma, a token followed by `=` is a parameter and a token followed by whitespace starts the
/// next scheme. Empty list elements are skipped (HTTP's `#rule`).
fn parse_auth_items(value: &str) -> Result<Vec<AuthItem>, AuthError> {
    let mut items: Vec<AuthItem> = Vec::new();
    let mut s = value.trim_start();
    while !s.is_empty() {
        if let Some(after) = s.strip_prefix(',') {
            s = after.trim_start();
            continue;
        }
        let len = token_len(s);
        if len == 0 {
            return Err(AuthError::Malformed(
                "expected a scheme or a parameter name",
            ));
        }
        let name = &s[..len];
        let after_name = s[len..].trim_start();
        let Some(after_eq) = after_name.strip_prefix('=') else {
            // A new scheme.
            if items.len() == MAX_AUTH_ITEMS {
                return Err(AuthError::Malformed("too many challenges"));
            }
            items.push(AuthItem {
                scheme: name.to_string(),
                params: Vec::new(),
            });
            s = after_name;
            continue;
        };
        let item = items
            .last_mut()
            .ok_or(AuthError::Malformed("parameter before the scheme"))?;
        if item.params.len() == MAX_AUTH_PARAMS {
            return Err(AuthError::Malformed("too many parameters"));
        }
        let rest = after_eq.trim_start();
        let (param_value, rest) = if rest.starts_with('"') {
            take_quoted(rest).map_err(AuthError::Malformed)?
        } else {
            // Unquoted: a token, or the base64-ish text some servers put in a nonce.
            let len = rest
                .bytes()
                .take_while(|b| !matches!(b, b',' | b' ' | b'\t' | b'"'))
                .count();
            if len == 0 {
                return Err(AuthError::Malformed("empty parameter value"));
            }
            (rest[..len].to_string(), &rest[len..])
        };
        item.params.push((name.to_ascii_lowercase(), param_value));
        s = rest.trim_start();
        if !s.is_empty() && !s.starts_with(',') {
            return Err(AuthError::Malformed("parameters not separated by ','"));
        }
    }
    Ok(items)
}

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
    /// `response` (hex digest)
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

/// Parses an `Authorization` (or `Proxy-Authorization`) value.
pub fn parse_authorization(value: &str) -> Result<DigestCredentials, AuthError> {
    let v = value.trim_start();
    if !v[..token_len(v)].eq_ignore_ascii_case("Digest") {
        return Err(AuthError::NotDigest);
    }
    let items = parse_auth_items(v)?;
    let item = match items.as_slice() {
        [one] => one,
        _ => return Err(AuthError::Malformed("more than one set of credentials")),
    };
    let get = |name: &str| item.param(name).map(str::to_string);
    let creds = DigestCredentials {
        username: get("username").ok_or(AuthError::Missing("username"))?,
        realm: get("realm").ok_or(AuthError::Missing("realm"))?,
        nonce: get("nonce").ok_or(AuthError::Missing("nonce"))?,
        uri: get("uri").ok_or(AuthError::Missing("uri"))?,
        response: get("response").ok_or(AuthError::Missing("response"))?,
        algorithm: get("algorithm"),
        cnonce: get("cnonce"),
        opaque: get("opaque"),
        qop: get("qop"),
        nc: get("nc"),
    };
    if creds.qop.is_some() && (creds.cnonce.is_none() || creds.nc.is_none()) {
        return Err(AuthError::Missing("cnonce/nc with qop"));
    }
    Ok(creds)
}

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


/// The credentials line answering one challenge.
fn credentials_value(input: &DigestInput<'_>, opaque: Option<&str>) -> String {
    let mut v = format!(
        "Digest username={}, realm={}, nonce={}, uri={}, response=\"{}\", algorithm={}",
        quoted(input.username),
        quoted(input.realm),
        quoted(input.nonce),
        quoted(input.uri),
        input.response(),
        input.algorithm
    );
    if let Some(cnonce) = input.cnonce {
        v.push_str(&format!(", cnonce={}", quoted(cnonce)));
    }
    if let Some(nc) = input.nc {
        v.push_str(&format!(", qop=auth, nc={nc}"));
    }
    if let Some(o) = opaque {
        v.push_str(&format!(", opaque={}", quoted(o)));
    }
    v
}

/// Builds an MD5 `qop=auth` Authorization value answering a challenge (what a test, or a
/// client that handles one challenge by hand, sends). [`DigestClient`] does the whole job.
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
    let input = DigestInput {
        algorithm: DigestAlgorithm::Md5,
        username,
        realm,
        password,
        method,
        uri,
        nonce,
        cnonce: Some(cnonce),
        nc: Some(&nc),
    };
    credentials_value(&input, opaque)
}

/// Which header carried a challenge, and so which header answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChallengeKind {
    /// `WWW-Authenticate` in a 401, answered with `Authorization`.
    Www,
    /// `Proxy-Authenticate` in a 407, answered with `Proxy-Authorization`.
    Proxy,
}

impl ChallengeKind {
    /// The challenge header's name.
    pub fn challenge_header(self) -> &'static str {
        match self {
            ChallengeKind::Www => "WWW-Authenticate",
            ChallengeKind::Proxy => "Proxy-Authenticate",
        }
    }

    /// The name of the header that answers it.
    pub fn credentials_header(self) -> &'static str {
        match self {
            ChallengeKind::Www => "Authorization",
            ChallengeKind::Proxy => "Proxy-Authorization",
        }
    }
}

/// A `Digest` challenge we can answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestChallenge {
    /// `realm`
    pub realm: String,
    /// `nonce`
    pub nonce: String,
    /// `opaque`, echoed back unchanged.
    pub opaque: Option<String>,
    /// `algorithm` (MD5 when absent).
    pub algorithm: DigestAlgorithm,
    /// True when the `qop` list offers `auth`; false for an RFC 2069 challenge without `qop`.
    pub qop_auth: bool,
    /// `stale=true`: the previous credentials were right but their nonce had expired.
    pub stale: bool,
}

impl DigestChallenge {
    fn from_item(item: &AuthItem) -> Result<DigestChallenge, AuthError> {
        if !item.is_digest() {
            return Err(AuthError::NotDigest);
        }
        let algorithm = match item.param("algorithm") {
            None => DigestAlgorithm::Md5,
            Some(a) => DigestAlgorithm::from_token(a.trim())
                .ok_or_else(|| AuthError::Unsupported(format!("algorithm {a}")))?,
        };
        let qop_auth = match item.param("qop") {
            None => false,
            Some(list) => {
                if !list
                    .split(',')
                    .any(|q| q.trim().eq_ignore_ascii_case("auth"))
                {
                    return Err(AuthError::Unsupported(format!("qop {list}")));
                }
                true
            }
        };
        Ok(DigestChallenge {
            realm: item
                .param("realm")
                .ok_or(AuthError::Missing("realm"))?
                .to_string(),
            nonce: item
                .param("nonce")
                .ok_or(AuthError::Missing("nonce"))?
                .to_string(),
            opaque: item.param("opaque").map(str::to_string),
            algorithm,
            qop_auth,
            stale: item
                .param("stale")
                .is_some_and(|s| s.eq_ignore_ascii_case("true")),
        })
    }
}

/// Parses one `WWW-Authenticate`/`Proxy-Authenticate` value. Every challenge in it comes back
/// in order, each parsed or refused on its own (an unknown algorithm next to a usable one does
/// not spoil the usable one); a value that does not parse at all is one error.
pub fn parse_challenges(value: &str) -> Vec<Result<DigestChallenge, AuthError>> {
    match parse_auth_items(value) {
        Ok(items) => items.iter().map(DigestChallenge::from_item).collect(),
        Err(e) => vec![Err(e)],
    }
}

/// The challenges of a 401/407 we would answer: per realm, the strongest supported algorithm
/// (SHA-256 over MD5); the first offered wins a tie. Non-digest and unsupported challenges are
/// skipped. The result is in the order the realms first appear.
pub fn select_challenges(response: &SipMessage) -> Vec<(ChallengeKind, DigestChallenge)> {
    let mut chosen: Vec<(ChallengeKind, DigestChallenge)> = Vec::new();
    for kind in [ChallengeKind::Www, ChallengeKind::Proxy] {
        for value in response.header_values(kind.challenge_header()) {
            for challenge in parse_challenges(value).into_iter().flatten() {
                let known = chosen
                    .iter()
                    .position(|(k, c)| *k == kind && c.realm == challenge.realm);
                match known {
                    Some(i)
                        if challenge.algorithm.preference()
                            > chosen[i].1.algorithm.preference() =>
                    {
                        chosen[i].1 = challenge;
                    }
                    None if chosen.len() < MAX_CLIENT_REALMS => chosen.push((kind, challenge)),
                    _ => {}
                }
            }
        }
    }
    chosen
}

/// A user name and password for digest authentication.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name (often the AOR's user part, sometimes a separate auth id).
    pub username: String,
    /// The password.
    pub password: String,
}

impl Credentials {
    /// Credentials from a user name and password.
    pub fn new(username: &str, password: &str) -> Credentials {
        Credentials {
            username: username.to_string(),
            password: password.to_string(),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// Why a client cannot answer a 401/407.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChallengeError {
    /// The response offers no digest challenge we implement (or carries none at all).
    Unsupported,
    /// Credentials computed from this realm's previous challenge were challenged again without
    /// `stale=true`: the user name or password is wrong.
    Rejected {
        /// The realm that refused us.
        realm: String,
    },
    /// The server keeps answering fresh credentials with `stale=true`.
    TooManyStale {
        /// The realm.
        realm: String,
    },
}

impl fmt::Display for ChallengeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChallengeError::Unsupported => f.write_str("no digest challenge we can answer"),
            ChallengeError::Rejected { realm } => {
                write!(f, "credentials rejected by realm \"{realm}\"")
            }
            ChallengeError::TooManyStale { realm } => {
                write!(f, "realm \"{realm}\" keeps calling fresh nonces stale")
            }
        }
    }
}

impl std::error::Error for ChallengeError {}

/// How a remembered challenge has been used since it arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChallengeUse {
    /// Not answered yet.
    Fresh,
    /// Answered by exactly one request: a new challenge now (unless stale) means the
    /// credentials were refused.
    AnsweredOnce,
    /// Answered by more than one request, so the first answer was accepted; a new challenge
    /// only means the nonce expired.
    Reused,
}

#[derive(Debug, Clone)]
struct RealmState {
    kind: ChallengeKind,
    challenge: DigestChallenge,
    /// Requests answered with this nonce so far (the next `nc` is this plus one).
    nc: u32,
    used: ChallengeUse,
    stale_retries: u32,
}

/// The client side of digest authentication for one user agent activity (a registration, or
/// one call and its in-dialog requests).
///
/// Feed every 401/407 to [`handle_challenge`](DigestClient::handle_challenge); when it says
/// `Ok`, resend the request (new CSeq, new branch) with the headers from
/// [`authorize`](DigestClient::authorize), which every later request also carries (pre-emptive
/// credentials, nonce count increasing).
///
/// Loop safety: a challenge arriving right after the first answer to the previous challenge of
/// the same realm means the credentials were refused ([`ChallengeError::Rejected`]) unless it
/// says `stale=true`, and stale retries are bounded. A challenge after credentials that were
/// already used more than once (a registration refresh, a BYE after an authenticated INVITE) is
/// a nonce expiry and is answered.
#[derive(Debug, Clone)]
pub struct DigestClient {
    credentials: Credentials,
    realms: Vec<RealmState>,
    /// Draws the cnonces.
    rng: SipRng,
}

impl DigestClient {
    /// A client that authenticates with `credentials`, its cnonces drawn from the OS.
    pub fn new(credentials: Credentials) -> DigestClient {
        DigestClient::with_rng(credentials, SipRng::from_os())
    }

    /// A client whose cnonces come from `rng` (a sans-IO core's, so its runs replay).
    pub fn with_rng(credentials: Credentials, rng: SipRng) -> DigestClient {
        DigestClient {
            credentials,
            realms: Vec::new(),
            rng,
        }
    }

    /// The credentials in use.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// Learns the challenges of a 401 or 407 response. `Ok` means: send the request again with
    /// [`authorize`](DigestClient::authorize)'s headers.
    pub fn handle_challenge(&mut self, response: &SipMessage) -> Result<(), ChallengeError> {
        let chosen = select_challenges(response);
        if chosen.is_empty() {
            return Err(ChallengeError::Unsupported);
        }
        // Judge every realm before changing anything, so a refusal leaves the state as it was.
        for (kind, challenge) in &chosen {
            if let Some(state) = self.state(*kind, &challenge.realm) {
                if state.used == ChallengeUse::AnsweredOnce {
                    if !challenge.stale {
                        return Err(ChallengeError::Rejected {
                            realm: challenge.realm.clone(),
                        });
                    }
                    if state.stale_retries >= MAX_STALE_RETRIES {
                        return Err(ChallengeError::TooManyStale {
                            realm: challenge.realm.clone(),
                        });
                    }
                }
            }
        }
        for (kind, challenge) in chosen {
            let stale_retries = match self.state(kind, &challenge.realm) {
                Some(s) if s.used == ChallengeUse::AnsweredOnce => s.stale_retries + 1,
                _ => 0,
            };
            self.realms
                .retain(|s| !(s.kind == kind && s.challenge.realm == challenge.realm));
            if self.realms.len() >= MAX_CLIENT_REALMS {
                self.realms.remove(0);
            }
            self.realms.push(RealmState {
                kind,
                challenge,
                nc: 0,
                used: ChallengeUse::Fresh,
                stale_retries,
            });
        }
        Ok(())
    }

    fn state(&self, kind: ChallengeKind, realm: &str) -> Option<&RealmState> {
        self.realms
            .iter()
            .find(|s| s.kind == kind && s.challenge.realm == realm)
    }

    /// True once a challenge has been learned (requests then carry credentials).
    pub fn has_challenge(&self) -> bool {
        !self.realms.is_empty()
    }

    /// The credential headers for a request about to be sent: `(header name, value)` pairs, one
    /// per remembered realm, each with the next nonce count and a fresh cnonce. `uri` is the
    /// Request-URI exactly as it will be sent. Empty before any challenge.
    pub fn authorize(&mut self, method: &str, uri: &str) -> Vec<(&'static str, String)> {
        let mut out = Vec::with_capacity(self.realms.len());
        for state in &mut self.realms {
            state.nc = state.nc.saturating_add(1);
            state.used = match state.used {
                ChallengeUse::Fresh => ChallengeUse::AnsweredOnce,
                _ => ChallengeUse::Reused,
            };
            let c = &state.challenge;
            let nc = format!("{:08x}", state.nc);
            let cnonce = self.rng.hex(16);
            let input = DigestInput {
                algorithm: c.algorithm,
                username: &self.credentials.username,
                realm: &c.realm,
                password: &self.credentials.password,
                method,
                uri,
                nonce: &c.nonce,
                cnonce: (c.qop_auth || c.algorithm.is_session()).then_some(cnonce.as_str()),
                nc: c.qop_auth.then_some(nc.as_str()),
            };
            out.push((
                state.kind.credentials_header(),
                credentials_value(&input, c.opaque.as_deref()),
            ));
        }
        out
    }
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
    /// Wrong user, password, realm, or an algorithm we do not implement: refuse (403).
    Rejected(String),
}

impl AuthOutcome {
    /// True for [`AuthOutcome::Authorized`].
    pub fn is_authorized(&self) -> bool {
        matches!(self, AuthOutcome::Authorized { .. })
    }
}

/// Server-side digest state: the realm and the outstanding nonces.
#[derive(Debug)]
pub struct DigestAuthenticator {
    realm: String,
    nonce_ttl: Duration,
    opaque: String,
    nonces: HashMap<String, Instant>,
    /// Draws the nonces and the opaque value.
    rng: SipRng,
}

impl DigestAuthenticator {
    /// An authenticator for `realm` whose nonces are valid for `nonce_ttl`, drawn from the OS.
    pub fn new(realm: &str, nonce_ttl: Duration) -> Self {
        DigestAuthenticator::with_rng(realm, nonce_ttl, SipRng::from_os())
    }

    /// An authenticator whose nonces come from `rng` (a sans-IO core's, so its runs replay).
    pub fn with_rng(realm: &str, nonce_ttl: Duration, mut rng: SipRng) -> Self {
        DigestAuthenticator {
            realm: realm.to_string(),
            nonce_ttl,
            opaque: rng.hex(8),
            nonces: HashMap::new(),
            rng,
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

    /// A fresh MD5 challenge: the value of a `WWW-Authenticate` header for a 401.
    pub fn challenge(&mut self, now: Instant, stale: bool) -> String {
        let nonce = self.issue_nonce(now);
        self.challenge_value(&nonce, DigestAlgorithm::Md5, stale)
    }

    /// Fresh challenges offering SHA-256 and then MD5 over one nonce: one `WWW-Authenticate`
    /// header each, in that order of preference (RFC 8760 §2.4). Clients that know SHA-256 pick
    /// it; older ones answer the MD5 one.
    pub fn challenges(&mut self, now: Instant, stale: bool) -> Vec<String> {
        let nonce = self.issue_nonce(now);
        [DigestAlgorithm::Sha256, DigestAlgorithm::Md5]
            .into_iter()
            .map(|a| self.challenge_value(&nonce, a, stale))
            .collect()
    }

    fn issue_nonce(&mut self, now: Instant) -> String {
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
        let nonce = self.rng.hex(16);
        self.nonces.insert(nonce.clone(), now);
        nonce
    }

    fn challenge_value(&self, nonce: &str, algorithm: DigestAlgorithm, stale: bool) -> String {
        let mut v = format!(
            "Digest realm={}, nonce=\"{nonce}\", opaque=\"{}\", algorithm={algorithm}, qop=\"auth\"",
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

    /// Checks an Authorization value (MD5, MD5-sess, SHA-256 or SHA-256-sess) for a request
    /// with `method`. `password_for` looks a user's password up (None for unknown users).
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
        let algorithm = match creds.algorithm.as_deref() {
            None => DigestAlgorithm::Md5,
            Some(a) => match DigestAlgorithm::from_token(a) {
                Some(a) => a,
                None => return AuthOutcome::Rejected("unsupported algorithm".into()),
            },
        };
        let nc = match creds.qop.as_deref() {
            None => None,
            Some(q) if q.eq_ignore_ascii_case("auth") => creds.nc.as_deref(),
            Some(_) => return AuthOutcome::Rejected("unsupported qop".into()),
        };
        let Some(password) = password_for(&creds.username) else {
            return AuthOutcome::Rejected("unknown user".into());
        };
        let expected = DigestInput {
            algorithm,
            username: &creds.username,
            realm: &self.realm,
            password: &password,
            method,
            uri: &creds.uri,
            nonce: &creds.nonce,
            cnonce: creds.cnonce.as_deref(),
            nc,
        }
        .response();
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

    /// RFC 7616 §3.9.1: the same request answered with MD5 and with SHA-256.
    fn rfc7616(algorithm: DigestAlgorithm) -> String {
        DigestInput {
            algorithm,
            username: "Mufasa",
            realm: "http-auth@example.org",
            password: "Circle of Life",
            method: "GET",
            uri: "/dir/index.html",
            nonce: "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            cnonce: Some("f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"),
            nc: Some("00000001"),
        }
        .response()
    }

    #[test]
    fn rfc7616_examples() {
        assert_eq!(
            rfc7616(DigestAlgorithm::Md5),
            "8ca523f5e9506fed4657c9700eebdbec"
        );
        assert_eq!(
            rfc7616(DigestAlgorithm::Sha256),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
        // The -sess forms of the same inputs, computed independently (Python hashlib).
        assert_eq!(
            rfc7616(DigestAlgorithm::Md5Sess),
            "e783283f46242139c486a698fec7211d"
        );
        assert_eq!(
            rfc7616(DigestAlgorithm::Sha256Sess),
            "2fd51b3a77ad75bad6afad6003e818d767133c46d9e2749e7f5232ae1ea3efd7"
        );
        // RFC 2069 form (no qop) with SHA-256.
        let no_qop = DigestInput {
            algorithm: DigestAlgorithm::Sha256,
            username: "bob",
            realm: "biloxi.com",
            password: "zanzibar",
            method: "REGISTER",
            uri: "sip:biloxi.com",
            nonce: "abc123",
            cnonce: None,
            nc: None,
        };
        assert_eq!(
            no_qop.response(),
            "5d669f461995f591a16ea762c90ccc783f2c0640a13e3923d85b86637dc7068c"
        );
    }

    #[test]
    fn algorithm_tokens() {
        assert_eq!(
            DigestAlgorithm::from_token("sha-256"),
            Some(DigestAlgorithm::Sha256)
        );
        assert_eq!(
            DigestAlgorithm::from_token("MD5-SESS"),
            Some(DigestAlgorithm::Md5Sess)
        );
        assert_eq!(DigestAlgorithm::from_token("SHA-512-256"), None);
        assert_eq!(DigestAlgorithm::from_token("AKAv1-MD5"), None);
    }

    #[test]
    fn challenges_parse_with_quotes_escapes_and_lists() {
        let v = r#"Digest realm="a, \"quoted\" realm", nonce="n,1", qop="auth-int, auth", algorithm=SHA-256, stale=TRUE, opaque="o""#;
        let c = parse_challenges(v);
        assert_eq!(c.len(), 1);
        let c = c[0].clone().unwrap();
        assert_eq!(c.realm, "a, \"quoted\" realm");
        assert_eq!(c.nonce, "n,1");
        assert_eq!(c.algorithm, DigestAlgorithm::Sha256);
        assert!(c.qop_auth && c.stale);
        assert_eq!(c.opaque.as_deref(), Some("o"));

        // Two challenges in one value; an unknown algorithm does not spoil the other one.
        let two = parse_challenges(
            "Digest realm=r, nonce=abc+/==, algorithm=SHA-512-256, qop=auth, \
             Digest realm=r,nonce=def,qop=\"auth\"",
        );
        assert_eq!(two.len(), 2);
        assert!(matches!(two[0], Err(AuthError::Unsupported(_))));
        let second = two[1].clone().unwrap();
        assert_eq!(second.nonce, "def");
        assert_eq!(second.algorithm, DigestAlgorithm::Md5);
        assert!(!second.stale);

        // RFC 2069 challenge: no qop.
        let old = parse_challenges("Digest realm=\"r\", nonce=\"x\"")[0]
            .clone()
            .unwrap();
        assert!(!old.qop_auth);
        // qop offered but without auth.
        assert!(matches!(
            parse_challenges("Digest realm=r, nonce=x, qop=\"auth-int\"")[0],
            Err(AuthError::Unsupported(_))
        ));
        assert_eq!(
            parse_challenges("Basic realm=\"r\"")[0],
            Err(AuthError::NotDigest)
        );
        for bad in [
            "",
            "Digest realm=\"unterminated",
            "Digest realm=",
            "realm=x",
            "Digest realm=\"r\" nonce=\"x\"",
            "Digest =x",
            "Digest nonce=x",
            "\u{e9}\u{e9}=\"",
        ] {
            assert!(
                parse_challenges(bad).iter().all(|c| c.is_err()),
                "{bad:?} must not give a usable challenge"
            );
        }
    }

    #[test]
    fn parameter_count_is_bounded() {
        let many = format!(
            "Digest realm=r, nonce=n{}",
            ", x=1".repeat(MAX_AUTH_PARAMS + 1)
        );
        assert_eq!(
            parse_challenges(&many)[0],
            Err(AuthError::Malformed("too many parameters"))
        );
    }

    fn challenge_response(status: u16, headers: &[(&str, &str)]) -> SipMessage {
        let mut text = format!(
            "SIP/2.0 {status} Unauthorized\r\n\
Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKreg1\r\n\
From: <sip:alice@example.com>;tag=f1\r\n\
To: <sip:alice@example.com>;tag=t1\r\n\
Call-ID: reg-1\r\n\
CSeq: 1 REGISTER\r\n"
        );
        for (name, value) in headers {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        text.push_str("Content-Length: 0\r\n\r\n");
        crate::sip::message::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn the_strongest_challenge_per_realm_is_chosen() {
        let r = challenge_response(
            401,
            &[
                (
                    "WWW-Authenticate",
                    "Digest realm=\"a\", nonce=\"1\", qop=\"auth\"",
                ),
                (
                    "WWW-Authenticate",
                    "Digest realm=\"a\", nonce=\"1\", qop=\"auth\", algorithm=SHA-256",
                ),
                (
                    "WWW-Authenticate",
                    "Digest realm=\"a\", nonce=\"1\", qop=\"auth\", algorithm=SHA-512-256",
                ),
            ],
        );
        let chosen = select_challenges(&r);
        assert_eq!(chosen.len(), 1);
        assert_eq!(chosen[0].0, ChallengeKind::Www);
        assert_eq!(chosen[0].1.algorithm, DigestAlgorithm::Sha256);

        // A 407 from two proxies: one challenge per realm, both answered.
        let r = challenge_response(
            407,
            &[
                (
                    "Proxy-Authenticate",
                    "Digest realm=\"p1\", nonce=\"x\", qop=auth",
                ),
                ("Proxy-Authenticate", "Digest realm=\"p2\", nonce=\"y\""),
            ],
        );
        let mut client = DigestClient::new(Credentials::new("alice", "pw"));
        client.handle_challenge(&r).unwrap();
        let headers = client.authorize("INVITE", "sip:bob@example.com");
        assert_eq!(headers.len(), 2);
        assert!(headers.iter().all(|(n, _)| *n == "Proxy-Authorization"));
        let p1 = parse_authorization(&headers[0].1).unwrap();
        assert_eq!(p1.realm, "p1");
        assert_eq!(p1.qop.as_deref(), Some("auth"));
        let p2 = parse_authorization(&headers[1].1).unwrap();
        assert_eq!((p2.realm.as_str(), p2.qop, p2.nc), ("p2", None, None));
        assert_eq!(
            p2.response,
            digest_response(
                "alice",
                "p2",
                "pw",
                "INVITE",
                "sip:bob@example.com",
                "y",
                None
            )
        );

        assert_eq!(
            DigestClient::new(Credentials::new("a", "b"))
                .handle_challenge(&challenge_response(401, &[])),
            Err(ChallengeError::Unsupported)
        );
    }

    #[test]
    fn client_and_server_round_trip_with_sha256_and_md5() {
        let t0 = Instant::now();
        let users = |name: &str| (name == "alice").then(|| "s3cr\"et".to_string());
        for offer_sha in [true, false] {
            let mut server = DigestAuthenticator::new("room \"kit\"", Duration::from_secs(30));
            let values = if offer_sha {
                server.challenges(t0, false)
            } else {
                vec![server.challenge(t0, false)]
            };
            let headers: Vec<(&str, &str)> = values
                .iter()
                .map(|v| ("WWW-Authenticate", v.as_str()))
                .collect();
            let mut client = DigestClient::new(Credentials::new("alice", "s3cr\"et"));
            client
                .handle_challenge(&challenge_response(401, &headers))
                .unwrap();
            let auth = client.authorize("REGISTER", "sip:example.com");
            assert_eq!(auth.len(), 1);
            assert_eq!(auth[0].0, "Authorization");
            let creds = parse_authorization(&auth[0].1).unwrap();
            let expected = if offer_sha { "SHA-256" } else { "MD5" };
            assert_eq!(creds.algorithm.as_deref(), Some(expected));
            assert_eq!(creds.realm, "room \"kit\"");
            assert_eq!(creds.nc.as_deref(), Some("00000001"));
            assert_eq!(
                server.verify(&auth[0].1, "REGISTER", t0, users),
                AuthOutcome::Authorized {
                    username: "alice".into()
                }
            );
            // The next request counts up and picks a new cnonce.
            let again =
                parse_authorization(&client.authorize("REGISTER", "sip:example.com")[0].1).unwrap();
            assert_eq!(again.nc.as_deref(), Some("00000002"));
            assert_ne!(again.cnonce, creds.cnonce);
            // The server's nonce is single-use.
            assert!(matches!(
                server.verify(
                    &client.authorize("REGISTER", "sip:example.com")[0].1,
                    "REGISTER",
                    t0,
                    users
                ),
                AuthOutcome::Stale
            ));
        }
    }

    #[test]
    fn wrong_password_is_refused_not_retried() {
        let t0 = Instant::now();
        let mut server = DigestAuthenticator::new("r", Duration::from_secs(30));
        let mut client = DigestClient::new(Credentials::new("alice", "guess"));
        let first = challenge_response(401, &[("WWW-Authenticate", &server.challenge(t0, false))]);
        client.handle_challenge(&first).unwrap();
        let auth = client.authorize("REGISTER", "sip:r");
        assert!(matches!(
            server.verify(&auth[0].1, "REGISTER", t0, users),
            AuthOutcome::Rejected(_)
        ));
        // The server challenges again with a fresh nonce and no stale flag.
        let second = challenge_response(401, &[("WWW-Authenticate", &server.challenge(t0, false))]);
        assert_eq!(
            client.handle_challenge(&second),
            Err(ChallengeError::Rejected { realm: "r".into() })
        );
    }

    #[test]
    fn stale_nonces_are_answered_a_bounded_number_of_times() {
        let stale = challenge_response(
            401,
            &[(
                "WWW-Authenticate",
                "Digest realm=\"r\", nonce=\"n\", qop=auth, stale=true",
            )],
        );
        let fresh = challenge_response(
            401,
            &[(
                "WWW-Authenticate",
                "Digest realm=\"r\", nonce=\"m\", qop=auth",
            )],
        );
        let mut client = DigestClient::new(Credentials::new("alice", "pw"));
        client.handle_challenge(&fresh).unwrap();
        for _ in 0..MAX_STALE_RETRIES {
            client.authorize("REGISTER", "sip:r");
            client.handle_challenge(&stale).unwrap();
        }
        client.authorize("REGISTER", "sip:r");
        assert_eq!(
            client.handle_challenge(&stale),
            Err(ChallengeError::TooManyStale { realm: "r".into() })
        );
    }

    #[test]
    fn a_challenge_after_reused_credentials_is_a_nonce_expiry() {
        // REGISTER answered once (accepted), refreshed with the same nonce, then challenged
        // with a new nonce and no stale flag: answer it, and only a second refusal is final.
        let challenge = |nonce: &str| {
            challenge_response(
                401,
                &[(
                    "WWW-Authenticate",
                    &format!("Digest realm=\"r\", nonce=\"{nonce}\", qop=auth"),
                )],
            )
        };
        let mut client = DigestClient::new(Credentials::new("alice", "pw"));
        client.handle_challenge(&challenge("1")).unwrap();
        client.authorize("REGISTER", "sip:r");
        client.authorize("REGISTER", "sip:r");
        client.handle_challenge(&challenge("2")).unwrap();
        let creds = parse_authorization(&client.authorize("REGISTER", "sip:r")[0].1).unwrap();
        assert_eq!(
            (creds.nonce.as_str(), creds.nc.as_deref()),
            ("2", Some("00000001"))
        );
        assert!(matches!(
            client.handle_challenge(&challenge("3")),
            Err(ChallengeError::Rejected { .. })
        ));
    }

    #[test]
    fn server_verifies_sha256_and_refuses_unknown_algorithms() {
        let t0 = Instant::now();
        let mut auth = DigestAuthenticator::new("roomkit", Duration::from_secs(30));
        let nonce = nonce_of(&auth.challenges(t0, false)[0]);
        let input = DigestInput {
            algorithm: DigestAlgorithm::Sha256,
            username: "alice",
            realm: "roomkit",
            password: "s3cret",
            method: "INVITE",
            uri: "sip:svc@h",
            nonce: &nonce,
            cnonce: Some("c"),
            nc: Some("00000001"),
        };
        let value = credentials_value(&input, None);
        let md5_claim = value.replace("algorithm=SHA-256", "algorithm=MD5");
        assert!(matches!(
            auth.verify(&md5_claim, "INVITE", t0, users),
            AuthOutcome::Rejected(_)
        ));
        let unknown = value.replace("algorithm=SHA-256", "algorithm=SHA-512-256");
        assert_eq!(
            auth.verify(&unknown, "INVITE", t0, users),
            AuthOutcome::Rejected("unsupported algorithm".into())
        );
        assert_eq!(
            auth.verify(&value, "INVITE", t0, users),
            AuthOutcome::Authorized {
                username: "alice".into()
            }
        );
    }

    proptest::proptest! {
        #[test]
        fn auth_parsers_never_panic(s in "\\PC{0,200}") {
            let _ = parse_challenges(&s);
            let _ = parse_authorization(&s);
            let _ = parse_challenges(&format!("Digest {s}"));
            let _ = parse_authorization(&format!("Digest {s}"));
        }
    }
}
