//! The `Digest` parameter lists of `WWW-Authenticate`/`Proxy-Authenticate` (challenges) and
//! `Authorization`/`Proxy-Authorization` (credentials). Fed network data: every count is bounded
//! and nothing here panics.

use super::{AuthError, DigestAlgorithm, MAX_AUTH_ITEMS, MAX_AUTH_PARAMS};
use crate::sip::syntax::{is_token_char, take_quoted};

/// One `scheme name=value, ...` element of an authentication header, before interpretation.
/// Names are lowercased; quoted values are unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct AuthItem {
    scheme: String,
    params: Vec<(String, String)>,
}

impl AuthItem {
    pub(super) fn param(&self, name: &str) -> Option<&str> {
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
