//! SRTP and SRTCP (RFC 3711; AES-GCM per RFC 7714) for one stream: a sending context that
//! protects every RTP and RTCP packet we emit, and a receiving context that unprotects what
//! arrives before anything parses it.
//!
//! The cryptography is webrtc-rs' `rtc-srtp` (pure Rust on ring); this file only chooses the
//! suites, holds the master keys and turns the crate's errors into the reasons a stream counts.
//! Our copies of the keys are zeroed on drop and never printed (`Debug` redacts them).
//!
//! Pure: no clock, no socket. Fresh keys come from a random source the caller passes in
//! ([`SrtpKey::generate`]); the engine and SIP layers pass the operating system's CSPRNG.

use std::fmt;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand::{CryptoRng, RngCore, TryRngCore};
use rtc_shared::replay_detector::{ReplayDetector, WrappedSlidingWindowDetector};
use rtc_srtp::context::Context;
use rtc_srtp::protection_profile::ProtectionProfile;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// How many packets back a receiver accepts an out-of-order packet (RFC 3711 §3.3.2). libsrtp
/// uses 128; ours is wider so that a NACK repair sent without RTX (the same sequence number, a
/// few hundred packets late at video rates) is not mistaken for a replay.
const REPLAY_WINDOW: usize = 1024;
/// The largest SRTCP index (31 bits).
const MAX_SRTCP_INDEX: u64 = 0x7fff_ffff;
/// The most sources whose replay windows a receiver keeps (media, RTX, a few SSRC changes);
/// only authenticated packets add one, so only the keyed peer can fill it.
const MAX_SOURCES: usize = 16;

/// The master key length of every suite SDES offers (AES-128); AES-256-GCM, which only DTLS-SRTP
/// negotiates (RFC 7714 §14.2), takes twice as much.
const MASTER_KEY_LEN: usize = 16;
/// Room for the longest master key || salt (AES-256-GCM: 32 + 12).
const MAX_KEY_SALT_LEN: usize = 44;
/// The longest base64 text read as a key: 30 bytes take 40 characters.
const MAX_KEY_BASE64: usize = 64;

/// An SRTP crypto suite, as SDES (RFC 4568 §6.2, RFC 7714 §12) names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SrtpSuite {
    /// AES-128 counter mode, 80-bit HMAC-SHA1 tag on RTP and RTCP.
    AesCm128HmacSha1_80,
    /// AES-128 counter mode, 32-bit tag on RTP; SRTCP keeps the 80-bit tag (RFC 4568 §6.2.2).
    AesCm128HmacSha1_32,
    /// AES-128 in Galois/counter mode, 16-byte tag (RFC 7714).
    AeadAes128Gcm,
    /// AES-256 in Galois/counter mode, 16-byte tag (RFC 7714). Negotiated by DTLS-SRTP only
    /// (every DTLS stack offers it first); not in [`SrtpSuite::ALL`], so SDES never offers or
    /// accepts it.
    AeadAes256Gcm,
}

impl SrtpSuite {
    /// Every suite, in our order of preference for offers and answers.
    pub const ALL: [SrtpSuite; 3] = [
        SrtpSuite::AesCm128HmacSha1_80,
        SrtpSuite::AeadAes128Gcm,
        SrtpSuite::AesCm128HmacSha1_32,
    ];

    /// The suite's name in an `a=crypto` line.
    pub fn sdp_name(self) -> &'static str {
        match self {
            SrtpSuite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            SrtpSuite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
            SrtpSuite::AeadAes128Gcm => "AEAD_AES_128_GCM",
            SrtpSuite::AeadAes256Gcm => "AEAD_AES_256_GCM",
        }
    }

    /// The suite an `a=crypto` line names, if we implement it (names are case-sensitive).
    pub fn from_sdp_name(name: &str) -> Option<SrtpSuite> {
        SrtpSuite::ALL.into_iter().find(|s| s.sdp_name() == name)
    }

    /// The suite an application or a user names (the SDES name, case-sensitive as in SDP);
    /// the error lists the names we know.
    pub fn from_sdes_text(name: &str) -> Result<SrtpSuite, String> {
        SrtpSuite::from_sdp_name(name).ok_or_else(|| {
            let names: Vec<&str> = SrtpSuite::ALL.iter().map(|s| s.sdp_name()).collect();
            format!(
                "{name:?} is not an SRTP suite (expected one of {})",
                names.join(", ")
            )
        })
    }

    /// An ordered list of suites from their SDES names separated by commas (blanks around a
    /// name are ignored), as the CLI's `--srtp-suites` and the C config's `srtp_suites` take it.
    /// An unknown name, a name given twice or an empty list is an error that says which.
    pub fn parse_list(list: &str) -> Result<Vec<SrtpSuite>, String> {
        let mut suites = Vec::new();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let suite = SrtpSuite::from_sdes_text(name)?;
            if suites.contains(&suite) {
                return Err(format!("SRTP suite {name} is listed twice"));
            }
            suites.push(suite);
        }
        if suites.is_empty() {
            return Err("no SRTP suite listed".to_string());
        }
        Ok(suites)
    }

    /// Master key length in bytes.
    pub fn key_len(self) -> usize {
        match self {
            SrtpSuite::AeadAes256Gcm => 2 * MASTER_KEY_LEN,
            _ => MASTER_KEY_LEN,
        }
    }

    /// Master salt length in bytes: 112 bits for AES-CM, 96 for GCM.
    pub fn salt_len(self) -> usize {
        match self {
            SrtpSuite::AeadAes128Gcm | SrtpSuite::AeadAes256Gcm => 12,
            _ => 14,
        }
    }

    /// Bytes SRTP adds to an RTP packet (the tag).
    pub fn rtp_overhead(self) -> usize {
        match self {
            SrtpSuite::AesCm128HmacSha1_80 => 10,
            SrtpSuite::AesCm128HmacSha1_32 => 4,
            SrtpSuite::AeadAes128Gcm | SrtpSuite::AeadAes256Gcm => 16,
        }
    }

    fn profile(self) -> ProtectionProfile {
        match self {
            SrtpSuite::AesCm128HmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
            SrtpSuite::AesCm128HmacSha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
            SrtpSuite::AeadAes128Gcm => ProtectionProfile::AeadAes128Gcm,
            SrtpSuite::AeadAes256Gcm => ProtectionProfile::AeadAes256Gcm,
        }
    }
}

impl fmt::Display for SrtpSuite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.sdp_name())
    }
}

/// A suite and its master key || master salt. Zeroed on drop; `Debug` shows the suite only.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SrtpKey {
    #[zeroize(skip)]
    suite: SrtpSuite,
    material: [u8; MAX_KEY_SALT_LEN],
    #[zeroize(skip)]
    len: usize,
}

impl SrtpKey {
    /// A key from master key || master salt, which must be exactly the suite's length.
    pub fn new(suite: SrtpSuite, key_and_salt: &[u8]) -> Result<SrtpKey, SrtpError> {
        let len = suite.key_len() + suite.salt_len();
        if key_and_salt.len() != len {
            return Err(SrtpError::BadKey);
        }
        let mut material = [0u8; MAX_KEY_SALT_LEN];
        material[..len].copy_from_slice(key_and_salt);
        Ok(SrtpKey {
            suite,
            material,
            len,
        })
    }

    /// A key as SDES carries it: base64 (standard alphabet, padded) of master key || master
    /// salt, the suite's exact length once decoded. The decoded copy is zeroed.
    pub fn from_base64(suite: SrtpSuite, text: &str) -> Result<SrtpKey, SrtpError> {
        // 30 bytes take 40 characters; anything much longer is not a key of ours.
        if text.is_empty() || text.len() > MAX_KEY_BASE64 {
            return Err(SrtpError::BadKey);
        }
        let mut material = STANDARD.decode(text).map_err(|_| SrtpError::BadKey)?;
        let key = SrtpKey::new(suite, &material);
        material.zeroize();
        key
    }

    /// A key an application or a user hands over as text: as [`SrtpKey::from_base64`] reads
    /// it, optionally after `inline:` (the key part of an `a=crypto` line without lifetime or
    /// MKI). The error says what was expected; it never quotes the key.
    pub fn from_sdes_text(suite: SrtpSuite, key: &str) -> Result<SrtpKey, String> {
        let text = key.strip_prefix("inline:").unwrap_or(key);
        SrtpKey::from_base64(suite, text).map_err(|_| {
            format!(
                "not base64 of {} bytes ({}-byte master key, {}-byte salt) as {suite} needs",
                suite.key_len() + suite.salt_len(),
                suite.key_len(),
                suite.salt_len()
            )
        })
    }

    /// A fresh key drawn from `rng`, which must be a cryptographically secure generator (the
    /// callers pass the operating system's, `rand::rngs::OsRng`).
    pub fn generate<R: RngCore + CryptoRng>(suite: SrtpSuite, rng: &mut R) -> SrtpKey {
        let len = suite.key_len() + suite.salt_len();
        let mut material = [0u8; MAX_KEY_SALT_LEN];
        rng.fill_bytes(&mut material[..len]);
        SrtpKey {
            suite,
            material,
            len,
        }
    }

    /// A fresh key from the operating system's CSPRNG (`getrandom`).
    pub fn from_os_rng(suite: SrtpSuite) -> SrtpKey {
        SrtpKey::generate(suite, &mut rand::rngs::OsRng.unwrap_err())
    }

    /// The suite this key is for.
    pub fn suite(&self) -> SrtpSuite {
        self.suite
    }

    /// Master key || master salt, as SDES carries it.
    pub fn key_and_salt(&self) -> &[u8] {
        &self.material[..self.len]
    }

    fn master_key(&self) -> &[u8] {
        &self.material[..self.suite.key_len()]
    }

    fn master_salt(&self) -> &[u8] {
        &self.material[self.suite.key_len()..self.len]
    }
}

impl fmt::Debug for SrtpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SrtpKey({}, <redacted>)", self.suite)
    }
}

impl PartialEq for SrtpKey {
    fn eq(&self, other: &Self) -> bool {
        self.suite == other.suite && self.key_and_salt() == other.key_and_salt()
    }
}

impl Eq for SrtpKey {}

/// The keys of one SRTP session: ours protects what we send, the peer's unprotects what we
/// receive (SDES: each side announces the key it sends with). Both use the same suite.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SrtpKeys {
    /// The key we protect outgoing RTP and RTCP with.
    pub send: SrtpKey,
    /// The key the peer protects its packets with.
    pub recv: SrtpKey,
}

impl SrtpKeys {
    /// The suite both keys use.
    pub fn suite(&self) -> SrtpSuite {
        self.send.suite()
    }
}

/// Why a packet could not be protected or unprotected. A receiver counts the reasons.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SrtpError {
    /// The authentication tag does not verify: tampered, or protected with another key.
    Auth,
    /// A packet already received (or older than the replay window).
    Replay,
    /// Too short or not an RTP/RTCP packet at all.
    Malformed,
    /// A key of the wrong length for its suite, or the two keys of a session disagree on it.
    BadKey,
    /// Protection failed (the 2^48 packet limit of one key, or a crypto error).
    Protect,
}

impl fmt::Display for SrtpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SrtpError::Auth => "SRTP authentication failed",
            SrtpError::Replay => "SRTP replayed packet",
            SrtpError::Malformed => "SRTP packet malformed",
            SrtpError::BadKey => "SRTP key has the wrong length for its suite",
            SrtpError::Protect => "SRTP protection failed",
        })
    }
}

impl std::error::Error for SrtpError {}

fn reason(e: rtc_shared::error::Error) -> SrtpError {
    use rtc_shared::error::Error as E;
    match e {
        E::SrtpSsrcDuplicated(..) | E::SrtcpSsrcDuplicated(..) => SrtpError::Replay,
        E::RtpFailedToVerifyAuthTag
        | E::RtcpFailedToVerifyAuthTag
        | E::ErrFailedToVerifyAuthTag => SrtpError::Auth,
        _ => SrtpError::Malformed,
    }
}

/// A context without the crate's replay protection: its detector starts its window at the
/// first packet *checked*, before authentication, so one forged packet with a far sequence
/// number would make the genuine stream look like replays. [`Replay`] checks after
/// authentication instead.
fn context(key: &SrtpKey) -> Result<Context, SrtpError> {
    let provider = rtc_crypto::default_provider().map_err(|_| SrtpError::Protect)?;
    Context::new(
        key.master_key(),
        key.master_salt(),
        key.suite().profile(),
        None,
        None,
        provider.crypto(),
    )
    .map_err(|_| SrtpError::BadKey)
}

/// Replay windows per source, fed only with authenticated packets.
#[derive(Default)]
struct Replay {
    windows: Vec<(u32, WrappedSlidingWindowDetector)>,
}

impl Replay {
    /// Whether `index` of `ssrc` is new; records it when it is.
    fn fresh(&mut self, ssrc: u32, index: u64, max: u64) -> bool {
        let at = match self.windows.iter().position(|(s, _)| *s == ssrc) {
            Some(at) => at,
            None => {
                if self.windows.len() >= MAX_SOURCES {
                    self.windows.remove(0);
                }
                self.windows
                    .push((ssrc, WrappedSlidingWindowDetector::new(REPLAY_WINDOW, max)));
                self.windows.len() - 1
            }
        };
        let window = &mut self.windows[at].1;
        if window.check(index) {
            window.accept();
            true
        } else {
            false
        }
    }
}

/// The smallest packets the crate is handed: an RTP fixed header, an RTCP header plus SSRC.
const RTP_HEADER_LEN: usize = 12;
const RTCP_HEADER_LEN: usize = 8;

/// One direction's SRTP state for a stream: protects what we send.
pub struct SrtpSender {
    suite: SrtpSuite,
    ctx: Context,
}

impl SrtpSender {
    /// A sending context keyed with our key.
    pub fn new(key: &SrtpKey) -> Result<SrtpSender, SrtpError> {
        Ok(SrtpSender {
            suite: key.suite(),
            ctx: context(key)?,
        })
    }

    /// The suite in use.
    pub fn suite(&self) -> SrtpSuite {
        self.suite
    }

    /// The SRTP packet for one RTP packet (header kept, payload encrypted, tag appended).
    pub fn protect_rtp(&mut self, rtp: &[u8]) -> Result<Vec<u8>, SrtpError> {
        if rtp.len() < RTP_HEADER_LEN || rtp[0] >> 6 != 2 {
            return Err(SrtpError::Malformed);
        }
        match self.ctx.encrypt_rtp(rtp) {
            Ok(p) => Ok(p.into()),
            Err(e) => Err(match reason(e) {
                SrtpError::Malformed => SrtpError::Malformed,
                _ => SrtpError::Protect,
            }),
        }
    }

    /// The SRTCP packet for one (compound) RTCP packet: encrypted, E-flag and index, tag.
    pub fn protect_rtcp(&mut self, rtcp: &[u8]) -> Result<Vec<u8>, SrtpError> {
        if rtcp.len() < RTCP_HEADER_LEN || rtcp[0] >> 6 != 2 {
            return Err(SrtpError::Malformed);
        }
        self.ctx
            .encrypt_rtcp(rtcp)
            .map(Vec::from)
            .map_err(|_| SrtpError::Protect)
    }
}

impl fmt::Debug for SrtpSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SrtpSender({}, <keys redacted>)", self.suite)
    }
}

/// One direction's SRTP state for a stream: authenticates, replay-checks and decrypts what
/// arrives. Every byte is untrusted: a bad packet is an error, never a panic.
pub struct SrtpReceiver {
    suite: SrtpSuite,
    key: SrtpKey,
    /// One context per source that has authenticated, oldest first (at most `MAX_SOURCES`).
    /// A context keeps state for every SSRC it is shown, authenticated or not; a packet from an
    /// unknown source is tried on a fresh context that is kept only if the packet
    /// authenticates, so forged packets with ever new SSRCs cost time, never memory.
    sources: Vec<(u32, Context)>,
    rtp_replay: Replay,
    rtcp_replay: Replay,
}

impl SrtpReceiver {
    /// A receiving context keyed with the peer's key, with replay protection.
    pub fn new(key: &SrtpKey) -> Result<SrtpReceiver, SrtpError> {
        // Checks the key once, so that a per-source context cannot fail later.
        context(key)?;
        Ok(SrtpReceiver {
            suite: key.suite(),
            key: key.clone(),
            sources: Vec::new(),
            rtp_replay: Replay::default(),
            rtcp_replay: Replay::default(),
        })
    }

    /// Runs `f` (a decryption) on the context of `ssrc`; a new source's context is kept only
    /// when `f` succeeds.
    fn decrypt(
        &mut self,
        ssrc: u32,
        f: impl FnOnce(&mut Context) -> Result<Vec<u8>, SrtpError>,
    ) -> Result<Vec<u8>, SrtpError> {
        if let Some((_, ctx)) = self.sources.iter_mut().find(|(s, _)| *s == ssrc) {
            return f(ctx);
        }
        let mut ctx = context(&self.key)?;
        let plain = f(&mut ctx)?;
        if self.sources.len() >= MAX_SOURCES {
            self.sources.remove(0);
        }
        self.sources.push((ssrc, ctx));
        Ok(plain)
    }

    /// How many sources have authenticated (at most `MAX_SOURCES`).
    #[cfg(test)]
    fn source_count(&self) -> usize {
        self.sources.len()
    }

    /// The RTP packet inside an SRTP packet, once its tag verifies and it is no replay.
    pub fn unprotect_rtp(&mut self, srtp: &[u8]) -> Result<Vec<u8>, SrtpError> {
        if srtp.len() < RTP_HEADER_LEN + self.suite.rtp_overhead() || srtp[0] >> 6 != 2 {
            return Err(SrtpError::Malformed);
        }
        let ssrc = u32::from_be_bytes([srtp[8], srtp[9], srtp[10], srtp[11]]);
        let plain = self.decrypt(ssrc, |ctx| {
            ctx.decrypt_rtp(srtp).map(Vec::from).map_err(reason)
        })?;
        // Authenticated: now whether it is new. The header is in the clear, checked above.
        let seq = u16::from_be_bytes([srtp[2], srtp[3]]);
        if !self
            .rtp_replay
            .fresh(ssrc, u64::from(seq), u64::from(u16::MAX))
        {
            return Err(SrtpError::Replay);
        }
        Ok(plain)
    }

    /// The RTCP packet inside an SRTCP packet, once its tag verifies and it is no replay.
    pub fn unprotect_rtcp(&mut self, srtcp: &[u8]) -> Result<Vec<u8>, SrtpError> {
        // Header and SSRC, the E-flag and index, and the tag (SRTCP keeps 80 bits with AES-CM).
        let tag = match self.suite {
            SrtpSuite::AeadAes128Gcm | SrtpSuite::AeadAes256Gcm => 16,
            _ => 10,
        };
        if srtcp.len() < RTCP_HEADER_LEN + 4 + tag || srtcp[0] >> 6 != 2 {
            return Err(SrtpError::Malformed);
        }
        // The E flag and index: before the tag with AES-CM, the last word with GCM (RFC 7714
        // §9.3 appends it after the tag-bearing ciphertext).
        let end = match self.suite {
            SrtpSuite::AeadAes128Gcm | SrtpSuite::AeadAes256Gcm => srtcp.len(),
            _ => srtcp.len() - tag,
        };
        let word = &srtcp[end - 4..end];
        // We never agree to unencrypted SRTCP (RFC 4568's UNENCRYPTED_SRTCP), and rtc-srtp's
        // AES-CM path returns a packet whose E flag is clear without checking its tag: such a
        // packet is refused here, as a forgery.
        if word[0] & 0x80 == 0 {
            return Err(SrtpError::Auth);
        }
        let ssrc = u32::from_be_bytes([srtcp[4], srtcp[5], srtcp[6], srtcp[7]]);
        let plain = self.decrypt(ssrc, |ctx| {
            ctx.decrypt_rtcp(srtcp).map(Vec::from).map_err(reason)
        })?;
        let index = u32::from_be_bytes([word[0], word[1], word[2], word[3]]) & 0x7fff_ffff;
        if !self
            .rtcp_replay
            .fresh(ssrc, u64::from(index), MAX_SRTCP_INDEX)
        {
            return Err(SrtpError::Replay);
        }
        Ok(plain)
    }
}

impl fmt::Debug for SrtpReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SrtpReceiver({}, <keys redacted>)", self.suite)
    }
}

/// How long the receive context of a replaced key still accepts packets after a re-key (RFC
/// 4568 §7.1.4: new keys arrive in an offer/answer while packets protected with the old ones
/// are still in flight). Long enough for any jitter buffer and path reordering we accept; short
/// so that a retired key stops being useful soon.
pub const REKEY_GRACE: Duration = Duration::from_secs(2);

/// Both directions of one stream, made from a session's keys; re-keyed in place when an
/// offer/answer brings new keys (the previous receive context lingers for [`REKEY_GRACE`]).
#[derive(Debug)]
pub struct SrtpSession {
    /// Protects what we send.
    pub tx: SrtpSender,
    /// Unprotects what we receive.
    pub rx: SrtpReceiver,
    /// The keys in use, to tell new ones from them.
    keys: SrtpKeys,
    /// The receive context of the key replaced last, and until when it is still tried.
    previous_rx: Option<(SrtpReceiver, Instant)>,
}

impl SrtpSession {
    /// Contexts for both directions; the two keys must be of the same suite.
    pub fn new(keys: &SrtpKeys) -> Result<SrtpSession, SrtpError> {
        if keys.send.suite() != keys.recv.suite() {
            return Err(SrtpError::BadKey);
        }
        Ok(SrtpSession {
            tx: SrtpSender::new(&keys.send)?,
            rx: SrtpReceiver::new(&keys.recv)?,
            keys: keys.clone(),
            previous_rx: None,
        })
    }

    /// The suite in use.
    pub fn suite(&self) -> SrtpSuite {
        self.tx.suite()
    }

    /// Takes new keys at `now` (a re-offer or its answer carried them): a new send key gets a
    /// new context at once; a new receive key too, while the old receive context keeps
    /// accepting what authenticates under it until `now + REKEY_GRACE`. Returns whether
    /// anything changed. On an error nothing changed.
    pub fn rekey(&mut self, keys: &SrtpKeys, now: Instant) -> Result<bool, SrtpError> {
        if keys.send.suite() != keys.recv.suite() {
            return Err(SrtpError::BadKey);
        }
        if *keys == self.keys {
            return Ok(false);
        }
        let tx = (keys.send != self.keys.send)
            .then(|| SrtpSender::new(&keys.send))
            .transpose()?;
        let rx = (keys.recv != self.keys.recv)
            .then(|| SrtpReceiver::new(&keys.recv))
            .transpose()?;
        if let Some(tx) = tx {
            self.tx = tx;
        }
        if let Some(rx) = rx {
            let old = std::mem::replace(&mut self.rx, rx);
            self.previous_rx = Some((old, now + REKEY_GRACE));
        }
        self.keys = keys.clone();
        Ok(true)
    }

    /// Unprotects an SRTP packet that arrived at `now`: with the current key, else (within the
    /// grace after a re-key) with the previous one.
    pub fn unprotect_rtp(&mut self, srtp: &[u8], now: Instant) -> Result<Vec<u8>, SrtpError> {
        match self.rx.unprotect_rtp(srtp) {
            Err(SrtpError::Auth) => match self.previous(now) {
                Some(old) => old.unprotect_rtp(srtp).map_err(|_| SrtpError::Auth),
                None => Err(SrtpError::Auth),
            },
            r => r,
        }
    }

    /// Unprotects an SRTCP packet that arrived at `now`, as [`unprotect_rtp`](Self::unprotect_rtp).
    pub fn unprotect_rtcp(&mut self, srtcp: &[u8], now: Instant) -> Result<Vec<u8>, SrtpError> {
        match self.rx.unprotect_rtcp(srtcp) {
            Err(SrtpError::Auth) => match self.previous(now) {
                Some(old) => old.unprotect_rtcp(srtcp).map_err(|_| SrtpError::Auth),
                None => Err(SrtpError::Auth),
            },
            r => r,
        }
    }

    /// The previous receive context while its grace lasts; dropped once it is over.
    fn previous(&mut self, now: Instant) -> Option<&mut SrtpReceiver> {
        if self
            .previous_rx
            .as_ref()
            .is_some_and(|(_, until)| now >= *until)
        {
            self.previous_rx = None;
        }
        self.previous_rx.as_mut().map(|(rx, _)| rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    // The master key and salt of RFC 3711 Appendix B.3; the packets are libsrtp's own known
    // answers for them (`srtp_validate`), which every libsrtp build checks.
    const B3_KEY_SALT: &str = "e1f97a0d3e018be0d64fa32c06de4139 0ec675ad498afeebb6960b3aabe6";
    const RTP_PLAIN: &str = "800f1234decafbadcafebabe abababababababababababababababab";
    const RTCP_PLAIN: &str = "81c8000bcafebabe abababababababababababababababab";
    // libsrtp's GCM known answer (`srtp_validate_gcm`): key 00..0f, salt a0..ab.
    const GCM_KEY_SALT: &str = "000102030405060708090a0b0c0d0e0f a0a1a2a3a4a5a6a7a8a9aaab";

    fn key(suite: SrtpSuite, hexed: &str) -> SrtpKey {
        SrtpKey::new(suite, &hex(hexed)).unwrap()
    }

    fn known_answer(suite: SrtpSuite, key_salt: &str, srtp: &str, srtcp: Option<&str>) {
        let k = key(suite, key_salt);
        let mut tx = SrtpSender::new(&k).unwrap();
        let mut rx = SrtpReceiver::new(&k).unwrap();
        let protected = tx.protect_rtp(&hex(RTP_PLAIN)).unwrap();
        assert_eq!(protected, hex(srtp), "{suite} SRTP");
        assert_eq!(rx.unprotect_rtp(&protected).unwrap(), hex(RTP_PLAIN));
        let protected = tx.protect_rtcp(&hex(RTCP_PLAIN)).unwrap();
        if let Some(srtcp) = srtcp {
            assert_eq!(protected, hex(srtcp), "{suite} SRTCP");
        }
        assert_eq!(rx.unprotect_rtcp(&protected).unwrap(), hex(RTCP_PLAIN));
    }

    #[test]
    fn aes_cm_80_known_answer() {
        known_answer(
            SrtpSuite::AesCm128HmacSha1_80,
            B3_KEY_SALT,
            "800f1234decafbadcafebabe 4e55dc4ce79978d88ca4d215949d2402 b78d6acc99ea179b8dbb",
            Some("81c8000bcafebabe 7128035be487b9bdbef89041f977a5a8 80000001 993e08cd54d6c1230798"),
        );
    }

    #[test]
    fn aes_cm_32_known_answer_and_srtcp_keeps_80_bit_tag() {
        // The same keystream; the RTP tag is the first 4 bytes of the 80-bit one.
        known_answer(
            SrtpSuite::AesCm128HmacSha1_32,
            B3_KEY_SALT,
            "800f1234decafbadcafebabe 4e55dc4ce79978d88ca4d215949d2402 b78d6acc",
            // SRTCP is unchanged by the RTP tag length (RFC 4568 §6.2.2).
            Some("81c8000bcafebabe 7128035be487b9bdbef89041f977a5a8 80000001 993e08cd54d6c1230798"),
        );
    }

    #[test]
    fn aead_aes_128_gcm_known_answer() {
        known_answer(
            SrtpSuite::AeadAes128Gcm,
            GCM_KEY_SALT,
            "800f1234decafbadcafebabe c5002ede04cfdd2eb91159e0880aa06e d2976826f796b201df3131a127e8a392",
            Some(
                "81c8000bcafebabe c98b8b5df0392a55852b6c21ac8e7025 c52c6fbea2b3b446ea31123ba88ce61e 80000001",
            ),
        );
    }

    fn rtp(seq: u16) -> Vec<u8> {
        let mut p = vec![0x80, 96, 0, 0, 0, 0, 0, 1, 0x11, 0x22, 0x33, 0x44];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&[seq as u8; 100]);
        p
    }

    fn pair(suite: SrtpSuite) -> (SrtpSender, SrtpReceiver) {
        let k = SrtpKey::from_os_rng(suite);
        (SrtpSender::new(&k).unwrap(), SrtpReceiver::new(&k).unwrap())
    }

    #[test]
    fn replay_is_rejected_and_reordering_within_the_window_is_not() {
        for suite in SrtpSuite::ALL {
            let (mut tx, mut rx) = pair(suite);
            let p: Vec<_> = (0..5).map(|s| tx.protect_rtp(&rtp(s)).unwrap()).collect();
            assert_eq!(rx.unprotect_rtp(&p[0]).unwrap(), rtp(0));
            assert_eq!(rx.unprotect_rtp(&p[2]).unwrap(), rtp(2));
            assert_eq!(rx.unprotect_rtp(&p[1]).unwrap(), rtp(1), "late but new");
            assert_eq!(rx.unprotect_rtp(&p[2]), Err(SrtpError::Replay));
            assert_eq!(rx.unprotect_rtp(&p[0]), Err(SrtpError::Replay));
            let c = tx.protect_rtcp(&hex(RTCP_PLAIN)).unwrap();
            assert!(rx.unprotect_rtcp(&c).is_ok());
            assert_eq!(rx.unprotect_rtcp(&c), Err(SrtpError::Replay), "{suite}");
        }
    }

    #[test]
    fn a_forged_packet_does_not_move_the_replay_window() {
        for suite in SrtpSuite::ALL {
            let k = SrtpKey::from_os_rng(suite);
            let mut rx = SrtpReceiver::new(&k).unwrap();
            // A forgery with a far sequence number (and index) arrives first: refused...
            let mut forger = SrtpSender::new(&k).unwrap();
            let mut forged = forger.protect_rtp(&rtp(40_000)).unwrap();
            let last = forged.len() - 1;
            forged[last] ^= 1;
            assert_eq!(rx.unprotect_rtp(&forged), Err(SrtpError::Auth));
            // ... and harmless: the genuine stream that follows is accepted.
            let mut tx = SrtpSender::new(&k).unwrap();
            for seq in 0..5 {
                let p = tx.protect_rtp(&rtp(seq)).unwrap();
                assert_eq!(rx.unprotect_rtp(&p).unwrap(), rtp(seq), "{suite} {seq}");
            }
        }
    }

    #[test]
    fn forged_packets_from_ever_new_sources_keep_no_state() {
        let k = SrtpKey::from_os_rng(SrtpSuite::AesCm128HmacSha1_80);
        let mut rx = SrtpReceiver::new(&k).unwrap();
        let mut tx = SrtpSender::new(&k).unwrap();
        let good = tx.protect_rtp(&rtp(1)).unwrap();
        for ssrc in 0..5_000u32 {
            let mut forged = good.clone();
            forged[8..12].copy_from_slice(&ssrc.to_be_bytes());
            assert_eq!(rx.unprotect_rtp(&forged), Err(SrtpError::Auth));
            forged[1] = 200; // an SRTCP sender report from the same made-up source
            assert!(rx.unprotect_rtcp(&forged).is_err());
        }
        assert_eq!(rx.source_count(), 0);
        assert_eq!(rx.unprotect_rtp(&good).unwrap(), rtp(1));
        let rtcp = tx.protect_rtcp(&hex(RTCP_PLAIN)).unwrap();
        assert!(rx.unprotect_rtcp(&rtcp).is_ok());
        // The RTCP's SSRC (0xcafebabe) is a source of its own; the media source stays.
        assert_eq!(rx.source_count(), 2);
    }

    #[test]
    fn tampered_and_wrongly_keyed_packets_are_rejected() {
        // AES-256-GCM too: DTLS-SRTP negotiates it although SDES does not.
        for suite in SrtpSuite::ALL.into_iter().chain([SrtpSuite::AeadAes256Gcm]) {
            let (mut tx, mut rx) = pair(suite);
            let (_, mut stranger) = pair(suite);
            let good = tx.protect_rtp(&rtp(7)).unwrap();
            for i in [1, 3, 8, 12, good.len() / 2, good.len() - 1] {
                let mut bad = good.clone();
                bad[i] ^= 0x01;
                assert_eq!(
                    rx.unprotect_rtp(&bad),
                    Err(SrtpError::Auth),
                    "{suite} byte {i}"
                );
            }
            assert_eq!(stranger.unprotect_rtp(&good), Err(SrtpError::Auth));
            // The tampering attempts did not burn the sequence number.
            assert_eq!(rx.unprotect_rtp(&good).unwrap(), rtp(7));

            let good = tx.protect_rtcp(&hex(RTCP_PLAIN)).unwrap();
            let mut bad = good.clone();
            bad[10] ^= 0x80;
            assert_eq!(rx.unprotect_rtcp(&bad), Err(SrtpError::Auth));
            // Any RTCP we like, claimed unencrypted (E flag clear) with a made-up tag: refused
            // (rtc-srtp alone would return it unauthenticated with AES-CM).
            let e_at = match suite {
                SrtpSuite::AeadAes128Gcm | SrtpSuite::AeadAes256Gcm => good.len() - 4,
                _ => good.len() - 14,
            };
            let mut unencrypted = hex(RTCP_PLAIN);
            unencrypted.extend_from_slice(&good[e_at..]);
            let e_at = unencrypted.len() - (good.len() - e_at);
            unencrypted[e_at] &= 0x7f;
            assert_eq!(
                rx.unprotect_rtcp(&unencrypted),
                Err(SrtpError::Auth),
                "{suite}"
            );
            assert_eq!(stranger.unprotect_rtcp(&good), Err(SrtpError::Auth));
            assert!(rx.unprotect_rtcp(&good).is_ok());
        }
    }

    #[test]
    fn short_and_garbage_input_is_malformed_not_a_panic() {
        for suite in SrtpSuite::ALL {
            let (_, mut rx) = pair(suite);
            for len in 0..64 {
                let junk = vec![0x80; len];
                assert!(rx.unprotect_rtp(&junk).is_err());
                assert!(rx.unprotect_rtcp(&junk).is_err());
            }
            assert_eq!(rx.unprotect_rtp(&[0u8; 40]), Err(SrtpError::Malformed));
        }
    }

    #[test]
    fn keys_have_exact_lengths_and_debug_redacts() {
        assert_eq!(
            SrtpKey::new(SrtpSuite::AesCm128HmacSha1_80, &[1; 29]),
            Err(SrtpError::BadKey)
        );
        assert_eq!(
            SrtpKey::new(SrtpSuite::AeadAes128Gcm, &[1; 30]),
            Err(SrtpError::BadKey)
        );
        let k = SrtpKey::new(SrtpSuite::AeadAes128Gcm, &[0xab; 28]).unwrap();
        let shown = format!("{k:?} {:?}", SrtpSender::new(&k).unwrap());
        assert!(!shown.contains("ab") && !shown.contains("171"), "{shown}");
        let keys = SrtpKeys {
            send: k.clone(),
            recv: SrtpKey::from_os_rng(SrtpSuite::AesCm128HmacSha1_80),
        };
        assert_eq!(SrtpSession::new(&keys).unwrap_err(), SrtpError::BadKey);
    }

    #[test]
    fn keys_read_from_sdes_text() {
        // RFC 4568 §8.1's example key: 30 bytes.
        const B64: &str = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";
        let cm80 = SrtpSuite::AesCm128HmacSha1_80;
        let k = SrtpKey::from_sdes_text(cm80, B64).unwrap();
        assert_eq!(k.suite(), SrtpSuite::AesCm128HmacSha1_80);
        assert_eq!(k.key_and_salt(), b"YS___semctl () {\t220;}\n}\nunles");
        let prefixed = SrtpKey::from_sdes_text(cm80, &format!("inline:{B64}"));
        assert_eq!(prefixed.unwrap().key_and_salt(), k.key_and_salt());
        // GCM takes 28 bytes: the same 30 are refused, and 28 accepted.
        let gcm = SrtpKey::from_sdes_text(SrtpSuite::AeadAes128Gcm, B64).unwrap_err();
        assert!(
            gcm.contains("28 bytes (16-byte master key, 12-byte salt)"),
            "{gcm}"
        );
        let k28 = STANDARD.encode([7u8; 28]);
        assert!(SrtpKey::from_sdes_text(SrtpSuite::AeadAes128Gcm, &k28).is_ok());

        assert_eq!(
            SrtpSuite::from_sdes_text("AES_CM_128_HMAC_SHA1_32"),
            Ok(SrtpSuite::AesCm128HmacSha1_32)
        );
        let unknown = SrtpSuite::from_sdes_text("aes_cm_128_hmac_sha1_80").unwrap_err();
        assert!(unknown.contains("not an SRTP suite") && unknown.contains("AEAD_AES_128_GCM"));
        for bad in [
            "",
            "inline:",
            "AAAA",
            "!!!!",
            &B64[..39],
            &format!("{B64}AAAA"),
            &format!("{B64}|2^20"),
            &format!("inline:inline:{B64}"),
            &"A".repeat(10_000),
        ] {
            let e = SrtpKey::from_sdes_text(cm80, bad).unwrap_err();
            assert!(e.contains("30 bytes"), "{bad:?}: {e}");
            // The message never quotes what it was given (a near-miss key is still a secret).
            assert!(bad.len() < 4 || !e.contains(&bad[..4]), "{e}");
        }
    }

    #[test]
    fn suite_names_round_trip() {
        for s in SrtpSuite::ALL {
            assert_eq!(SrtpSuite::from_sdp_name(s.sdp_name()), Some(s));
        }
        assert_eq!(SrtpSuite::from_sdp_name("aes_cm_128_hmac_sha1_80"), None);
        assert_eq!(SrtpSuite::from_sdp_name("F8_128_HMAC_SHA1_80"), None);
    }

    /// RFC 4568 §7.1.4 re-keying: the peer's new key is used at once, its old one still for
    /// `REKEY_GRACE` (packets in flight), never after; our send key changes only when ours does.
    #[test]
    fn a_rekeyed_session_accepts_the_old_key_only_for_the_grace() {
        let suite = SrtpSuite::AesCm128HmacSha1_80;
        let (ours, theirs_old, theirs_new) = (
            SrtpKey::from_os_rng(suite),
            SrtpKey::from_os_rng(suite),
            SrtpKey::from_os_rng(suite),
        );
        let keys = |recv: &SrtpKey| SrtpKeys {
            send: ours.clone(),
            recv: recv.clone(),
        };
        let t0 = Instant::now();
        let mut session = SrtpSession::new(&keys(&theirs_old)).unwrap();
        let mut peer_old = SrtpSender::new(&theirs_old).unwrap();
        let mut peer_new = SrtpSender::new(&theirs_new).unwrap();
        let mut peer_rx = SrtpReceiver::new(&ours).unwrap();
        assert!(session
            .unprotect_rtp(&peer_old.protect_rtp(&rtp(1)).unwrap(), t0)
            .is_ok());
        // The same keys again change nothing; a bad pair is refused and changes nothing.
        assert_eq!(session.rekey(&keys(&theirs_old), t0), Ok(false));
        let gcm = SrtpKey::from_os_rng(SrtpSuite::AeadAes128Gcm);
        assert_eq!(session.rekey(&keys(&gcm), t0), Err(SrtpError::BadKey));
        assert_eq!(session.rekey(&keys(&theirs_new), t0), Ok(true));
        // Our packets still go out under our (unchanged) key: the sender's context goes on.
        let mine = session.tx.protect_rtp(&rtp(7)).unwrap();
        assert_eq!(peer_rx.unprotect_rtp(&mine).unwrap(), rtp(7));
        // New key: accepted. An old-key packet still in flight: accepted within the grace.
        let new2 = peer_new.protect_rtp(&rtp(2)).unwrap();
        assert_eq!(session.unprotect_rtp(&new2, t0).unwrap(), rtp(2));
        let late = peer_old.protect_rtp(&rtp(3)).unwrap();
        let at = t0 + REKEY_GRACE - Duration::from_millis(1);
        assert_eq!(session.unprotect_rtp(&late, at).unwrap(), rtp(3));
        let rtcp = peer_old.protect_rtcp(&hex(RTCP_PLAIN)).unwrap();
        assert_eq!(session.unprotect_rtcp(&rtcp, at).unwrap(), hex(RTCP_PLAIN));
        // After the grace the old key is worthless.
        let later = peer_old.protect_rtp(&rtp(4)).unwrap();
        assert_eq!(
            session.unprotect_rtp(&later, t0 + REKEY_GRACE),
            Err(SrtpError::Auth)
        );
        let new5 = peer_new.protect_rtp(&rtp(5)).unwrap();
        assert_eq!(
            session.unprotect_rtp(&new5, t0 + REKEY_GRACE).unwrap(),
            rtp(5)
        );
        // Replays stay refused across the re-key.
        assert_eq!(
            session.unprotect_rtp(&new2, t0 + REKEY_GRACE),
            Err(SrtpError::Replay)
        );
    }

    #[test]
    fn suite_lists_keep_their_order_and_refuse_unknown_repeated_or_no_names() {
        use SrtpSuite::*;
        assert_eq!(
            SrtpSuite::parse_list(" AEAD_AES_128_GCM,AES_CM_128_HMAC_SHA1_32 ,"),
            Ok(vec![AeadAes128Gcm, AesCm128HmacSha1_32])
        );
        let all = SrtpSuite::ALL.map(SrtpSuite::sdp_name).join(",");
        assert_eq!(SrtpSuite::parse_list(&all), Ok(SrtpSuite::ALL.to_vec()));
        let e = SrtpSuite::parse_list("AES_CM_128_HMAC_SHA1_80,AES_256_CM_HMAC_SHA1_80");
        assert!(e
            .unwrap_err()
            .contains("\"AES_256_CM_HMAC_SHA1_80\" is not"));
        let e = SrtpSuite::parse_list("AEAD_AES_128_GCM,AEAD_AES_128_GCM").unwrap_err();
        assert!(e.contains("twice"), "{e}");
        assert!(SrtpSuite::parse_list(" , ").is_err());
    }
}
