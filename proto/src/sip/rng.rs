//! The random draws of the SIP layers (tags, branches, Call-IDs, nonces, cnonces, SDP session
//! ids, retry jitter) from one generator the caller owns.
//!
//! A sans-IO core given a [`SipRng`] makes no other random draw, so a run fed the same inputs
//! with the same seed writes the same bytes: tests replay, fuzz findings reproduce. Production
//! seeds it from the operating system ([`SipRng::from_os`]), which keeps tags, branches and
//! digest nonces as unpredictable as before; tests pass a fixed seed ([`SipRng::seeded`]).

use rand::distr::Alphanumeric;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A seedable generator for everything random a SIP core puts on the wire. It is the
/// standard cryptographic generator, since digest nonces must not be guessable.
#[derive(Clone)]
pub struct SipRng(StdRng);

impl std::fmt::Debug for SipRng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the state: it would give the nonces away.
        f.write_str("SipRng")
    }
}

impl SipRng {
    /// A generator seeded from the operating system (production).
    pub fn from_os() -> SipRng {
        SipRng(StdRng::from_os_rng())
    }

    /// A generator whose draws depend only on `seed` (tests, replays).
    pub fn seeded(seed: u64) -> SipRng {
        SipRng(StdRng::seed_from_u64(seed))
    }

    /// A generator for a part that draws on its own (a registration, a digest client), seeded
    /// from this one: still determined by the first seed, and independent of the order in
    /// which the parts later draw.
    pub fn fork(&mut self) -> SipRng {
        SipRng::seeded(self.0.random())
    }

    /// A new From/To tag.
    pub fn tag(&mut self) -> String {
        self.token(12)
    }

    /// A new Via branch: the RFC 3261 magic cookie followed by random characters.
    pub fn branch(&mut self) -> String {
        format!("z9hG4bK{}", self.token(16))
    }

    /// A new Call-ID, `random@host`.
    pub fn call_id(&mut self, host: &str) -> String {
        format!("{}@{host}", self.token(20))
    }

    /// `bytes` random bytes in lowercase hex (nonces, cnonces, opaque values).
    pub fn hex(&mut self, bytes: usize) -> String {
        (0..bytes)
            .map(|_| format!("{:02x}", self.0.random::<u8>()))
            .collect()
    }

    /// A uniformly drawn `u32` (SDP session ids).
    pub fn next_u32(&mut self) -> u32 {
        self.0.random()
    }

    /// A uniformly drawn `u64`.
    pub fn next_u64(&mut self) -> u64 {
        self.0.random()
    }

    /// Fills `buf` with random bytes (a version 4 UUID's, say).
    pub fn fill(&mut self, buf: &mut [u8]) {
        self.0.fill(buf);
    }

    /// `len` alphanumeric characters.
    fn token(&mut self, len: usize) -> String {
        (&mut self.0)
            .sample_iter(&Alphanumeric)
            .take(len)
            .map(char::from)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_replays_and_forks_differ() {
        let mut a = SipRng::seeded(7);
        let mut b = SipRng::seeded(7);
        assert_eq!(a.tag(), b.tag());
        assert_eq!(a.branch(), b.branch());
        assert_eq!(a.hex(8), b.hex(8));
        let (mut fa, mut fb) = (a.fork(), b.fork());
        assert_eq!(fa.call_id("h"), fb.call_id("h"));
        assert_ne!(fa.tag(), a.tag());
        let branch = SipRng::from_os().branch();
        assert!(branch.starts_with("z9hG4bK") && branch.len() == 23);
    }
}
