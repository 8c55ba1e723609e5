//! The client side: answering 401/407 challenges for a user agent activity.

use std::fmt;

use super::parse::{parse_challenges, DigestChallenge};
use super::{DigestInput, MAX_CLIENT_REALMS, MAX_STALE_RETRIES};
use crate::sip::message::SipMessage;
use crate::sip::rng::SipRng;
use crate::sip::syntax::quoted;

/// The credentials line answering one challenge.
pub(super) fn credentials_value(input: &DigestInput<'_>, opaque: Option<&str>) -> String {
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
#[cfg(any(test, feature = "_internals"))]
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
        algorithm: super::DigestAlgorithm::Md5,
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
    #[cfg(any(test, feature = "_internals"))]
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
    #[cfg(any(test, feature = "_internals"))]
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
