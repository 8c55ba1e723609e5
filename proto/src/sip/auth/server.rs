//! The server side: issuing single-use, expiring nonces and checking credentials against them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::parse::parse_authorization;
use super::{DigestAlgorithm, DigestInput, MAX_OUTSTANDING_NONCES};
use crate::sip::rng::SipRng;
use crate::sip::syntax::quoted;

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
    #[cfg(any(test, feature = "_internals"))]
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
    #[cfg(any(test, feature = "_internals"))]
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
    #[cfg(any(test, feature = "_internals"))]
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// Number of nonces issued and not yet used or expired (for tests and stats).
    #[cfg(any(test, feature = "_internals"))]
    pub fn outstanding(&self) -> usize {
        self.nonces.len()
    }

    /// A fresh MD5 challenge: the value of a `WWW-Authenticate` header for a 401.
    #[cfg(any(test, feature = "_internals"))]
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
