//! DTLS-SRTP (RFC 5763, RFC 5764) behind the contract of our other cores, on one of two
//! engines ([`DtlsEngine`]): OpenSSL (DTLS 1.2, RSA and ECDSA peers; `dtls_openssl.rs`), the
//! default, or str0m's sans-IO `dimpl` (DTLS 1.2 and 1.3, ECDSA only).
//! The handshake's exported keys become an [`SrtpKeys`] for `rtp::srtp` — the one SRTP
//! implementation; nothing here protects media.
//!
//! - [`DtlsIdentity`]: an ECDSA P-256 certificate made per backend (rcgen on ring) and its
//!   `a=fingerprint` (SHA-256); or any certificate and key given in DER (OpenSSL engine).
//! - [`DtlsEndpoint`]: one handshake. The peer's certificate is accepted only if it hashes to a
//!   fingerprint its SDP announced (RFC 8122 §5); otherwise the endpoint fails and reports no
//!   keys. Inputs: [`DtlsEndpoint::handle_input`] (a datagram the RFC 7983 classifier called
//!   DTLS), [`DtlsEndpoint::handle_timeout`]; outputs, drained after every input:
//!   [`DtlsEndpoint::poll_transmit`], [`DtlsEndpoint::poll_event`], then
//!   [`DtlsEndpoint::poll_timeout`]. No clock is read.
//!
//! What the peer sends is untrusted: a record the engine cannot use is dropped inside it; a
//! fatal error (a handshake that cannot succeed) ends the endpoint with [`DtlsEvent::Failed`].

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use dimpl::{Config, Dtls, DtlsCertificate, Output, SrtpProfile};
use openssl::ssl::SslContext;
use sha2::{Digest, Sha256, Sha384, Sha512};

use super::dtls_openssl::{self, OpenSslDtls};

use crate::rtp::srtp::{SrtpKey, SrtpKeys, SrtpSuite};
use crate::sdp::Fingerprint;

/// The largest datagram dimpl may hand us to send (its default MTU is smaller).
const MAX_DATAGRAM: usize = 2048;
/// The most datagrams we queue for the caller between two drains (a handshake flight is a few).
pub(super) const MAX_QUEUED: usize = 64;

/// Which DTLS implementation runs an endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DtlsEngine {
    /// OpenSSL (system library, DTLS 1.2): speaks to RSA and ECDSA peers, as client or server.
    /// Our endpoint resends its flights on the `now` passed in; OpenSSL also keeps a timer of
    /// its own on the wall clock (`dtls_openssl.rs`). The default: a peer's certificate type
    /// is unknown until its Certificate arrives, too late to change engines.
    #[default]
    OpenSsl,
    /// str0m's `dimpl` (pure Rust, DTLS 1.2 and 1.3): ECDSA peers only, every timer on the
    /// `now` passed in, no C library. Needs an ECDSA P-256 identity.
    Dimpl,
}

/// Our DTLS certificate and its fingerprint. One per backend: every session presents it.
#[derive(Clone)]
pub struct DtlsIdentity {
    certificate: DtlsCertificate,
    fingerprint: Fingerprint,
    /// The OpenSSL engine's context (certificate, key, profiles), made once.
    openssl: SslContext,
    /// Whether dimpl can sign with the key (ECDSA P-256).
    p256: bool,
}

impl fmt::Debug for DtlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The private key stays out of logs.
        f.debug_struct("DtlsIdentity")
            .field("fingerprint", &self.fingerprint.to_string())
            .finish_non_exhaustive()
    }
}

impl DtlsIdentity {
    /// A fresh self-signed ECDSA P-256 certificate (RFC 8827 §6.5: browsers accept any
    /// self-signed certificate whose fingerprint matches). Its validity dates are rcgen's fixed
    /// defaults: no clock is read, and no peer checks them (RFC 8122 trusts the fingerprint).
    pub fn generate() -> Result<DtlsIdentity, DtlsError> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|_| DtlsError::Certificate)?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
            .map_err(|_| DtlsError::Certificate)?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "roomkit-media");
        let cert = params
            .self_signed(&key)
            .map_err(|_| DtlsError::Certificate)?;
        DtlsIdentity::from_der(cert.der(), &key.serialize_der())
    }

    /// An identity from a DER certificate and its private key (PKCS#8 or the key type's own
    /// DER). Any key OpenSSL signs with (RSA, ECDSA) serves [`DtlsEngine::OpenSsl`];
    /// [`DtlsEngine::Dimpl`] needs ECDSA P-256. [`DtlsError::Certificate`] when OpenSSL cannot
    /// read the pair or the key does not match the certificate.
    pub fn from_der(certificate: &[u8], private_key: &[u8]) -> Result<DtlsIdentity, DtlsError> {
        let openssl = dtls_openssl::context(certificate, private_key)?;
        let fingerprint = fingerprint(certificate, "sha-256").ok_or(DtlsError::Certificate)?;
        Ok(DtlsIdentity {
            certificate: DtlsCertificate {
                certificate: certificate.to_vec(),
                private_key: private_key.to_vec(),
            },
            fingerprint,
            openssl,
            p256: dtls_openssl::is_p256(private_key),
        })
    }

    /// Our `a=fingerprint` (SHA-256).
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }
}

/// Whether a DER certificate hashes to one of `expected` (the peer's `a=fingerprint` lines).
pub(super) fn fingerprint_matches(expected: &[Fingerprint], der: &[u8]) -> bool {
    expected
        .iter()
        .any(|want| fingerprint(der, &want.algorithm).is_some_and(|got| got.hash == want.hash))
}

/// The hash of a DER certificate with the named function (`sha-256`, `sha-384`, `sha-512`);
/// `None` for a function we do not compute.
pub fn fingerprint(der: &[u8], algorithm: &str) -> Option<Fingerprint> {
    let hash: Vec<u8> = match algorithm {
        "sha-256" => Sha256::digest(der).iter().copied().collect(),
        "sha-384" => Sha384::digest(der).iter().copied().collect(),
        "sha-512" => Sha512::digest(der).iter().copied().collect(),
        _ => return None,
    };
    Some(Fingerprint {
        algorithm: algorithm.to_string(),
        hash,
    })
}

/// Why a DTLS endpoint failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DtlsError {
    /// Our certificate could not be made.
    Certificate,
    /// The peer's SDP announced no fingerprint we can check (none, or only unknown hashes).
    NoFingerprint,
    /// The peer's certificate does not match the fingerprint its SDP announced.
    FingerprintMismatch,
    /// The handshake ended without a certificate from the peer, or without SRTP keys.
    Incomplete,
    /// The peer chose an SRTP profile we do not have.
    UnsupportedProfile,
    /// The DTLS layer gave up (a fatal alert, a handshake timeout, a protocol error).
    Protocol(String),
}

impl fmt::Display for DtlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DtlsError::Certificate => f.write_str("could not make a DTLS certificate"),
            DtlsError::NoFingerprint => f.write_str("the peer announced no usable fingerprint"),
            DtlsError::FingerprintMismatch => {
                f.write_str("the peer's certificate does not match its fingerprint")
            }
            DtlsError::Incomplete => f.write_str("the DTLS handshake ended incomplete"),
            DtlsError::UnsupportedProfile => f.write_str("the peer chose an unknown SRTP profile"),
            DtlsError::Protocol(e) => write!(f, "DTLS failed: {e}"),
        }
    }
}

impl std::error::Error for DtlsError {}

/// What the application hears from a DTLS endpoint.
#[derive(Debug, PartialEq, Eq)]
pub enum DtlsEvent {
    /// The handshake is done and the peer proved its fingerprint: key the stream's SRTP with
    /// these (ours protect what we send).
    Connected(SrtpKeys),
    /// The endpoint is dead; no keys come from it.
    Failed(DtlsError),
    /// The peer closed the association (`close_notify`).
    Closed,
}

/// One DTLS-SRTP association.
pub struct DtlsEndpoint {
    engine: Engine,
    client: bool,
    expected: Vec<Fingerprint>,
    peer_verified: bool,
    done: bool,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<DtlsEvent>,
}

/// The engine's own state.
enum Engine {
    Dimpl {
        dtls: Box<Dtls>,
        timeout: Option<Instant>,
        buf: Vec<u8>,
    },
    OpenSsl(Box<OpenSslDtls>),
    /// Construction failed (the endpoint reported why and is done).
    None,
}

impl fmt::Debug for DtlsEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DtlsEndpoint")
            .field("engine", &self.engine())
            .field("client", &self.client)
            .field("peer_verified", &self.peer_verified)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl DtlsEndpoint {
    /// An endpoint on the default engine ([`DtlsEngine::OpenSsl`]) presenting `identity`, the
    /// DTLS client when `client` (our `a=setup` is `active`, `sdp::SetupRole::we_are_client`),
    /// expecting a certificate that matches one of `peer_fingerprints` (the peer's
    /// `a=fingerprint` lines). A client sends its ClientHello at once (drain
    /// [`DtlsEndpoint::poll_transmit`]).
    pub fn new(
        identity: &DtlsIdentity,
        client: bool,
        peer_fingerprints: &[Fingerprint],
        now: Instant,
    ) -> DtlsEndpoint {
        DtlsEndpoint::with_engine(
            DtlsEngine::default(),
            identity,
            client,
            peer_fingerprints,
            now,
        )
    }

    /// [`DtlsEndpoint::new`] on the given engine. [`DtlsEngine::Dimpl`] with an identity that
    /// is not ECDSA P-256 fails at once ([`DtlsError::Certificate`]).
    pub fn with_engine(
        engine: DtlsEngine,
        identity: &DtlsIdentity,
        client: bool,
        peer_fingerprints: &[Fingerprint],
        now: Instant,
    ) -> DtlsEndpoint {
        let expected: Vec<Fingerprint> = peer_fingerprints
            .iter()
            .filter(|f| fingerprint(&[], &f.algorithm).is_some())
            .cloned()
            .collect();
        let mut endpoint = DtlsEndpoint {
            engine: Engine::None,
            client,
            expected,
            peer_verified: false,
            done: false,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        };
        if endpoint.expected.is_empty() {
            endpoint.fail(DtlsError::NoFingerprint);
            return endpoint;
        }
        match engine {
            DtlsEngine::Dimpl if !identity.p256 => {
                endpoint.fail(DtlsError::Certificate);
                return endpoint;
            }
            DtlsEngine::Dimpl => {
                // DTLS 1.2 or 1.3, whichever the peer speaks (the server senses it from the
                // ClientHello, the client offers both).
                let config = Arc::new(Config::default());
                let mut dtls = Dtls::new_auto(config, identity.certificate.clone(), now);
                if client {
                    dtls.set_active(true);
                }
                endpoint.engine = Engine::Dimpl {
                    dtls: Box::new(dtls),
                    timeout: None,
                    buf: vec![0; MAX_DATAGRAM],
                };
            }
            DtlsEngine::OpenSsl => {
                match OpenSslDtls::new(&identity.openssl, client, &endpoint.expected, now) {
                    Ok(e) => endpoint.engine = Engine::OpenSsl(Box::new(e)),
                    Err(e) => {
                        endpoint.fail(e);
                        return endpoint;
                    }
                }
            }
        }
        if client {
            // The ClientHello leaves on the first timeout; run it now.
            endpoint.handle_timeout(now);
        }
        endpoint
    }

    /// Whether we are the DTLS client.
    pub fn is_client(&self) -> bool {
        self.client
    }

    /// The engine running this endpoint (`None` if it failed before one started).
    pub fn engine(&self) -> Option<DtlsEngine> {
        match self.engine {
            Engine::Dimpl { .. } => Some(DtlsEngine::Dimpl),
            Engine::OpenSsl(_) => Some(DtlsEngine::OpenSsl),
            Engine::None => None,
        }
    }

    /// A datagram from the peer that the RFC 7983 classifier called DTLS (first byte 20–63).
    pub fn handle_input(&mut self, now: Instant, datagram: &[u8]) {
        if self.done {
            return;
        }
        match &mut self.engine {
            Engine::Dimpl { dtls, .. } => {
                // dimpl wants its clock refreshed before a packet at a new instant.
                if let Err(e) = dtls.handle_timeout(now) {
                    return self.fail(DtlsError::Protocol(e.to_string()));
                }
                if let Err(e) = dtls.handle_packet(datagram) {
                    return self.fail(DtlsError::Protocol(e.to_string()));
                }
                self.drain();
            }
            Engine::OpenSsl(e) => {
                let mut events = VecDeque::new();
                e.handle_input(now, datagram, &mut events);
                self.take_openssl(events);
            }
            Engine::None => {}
        }
    }

    /// Runs retransmissions and the handshake's deadline.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.done {
            return;
        }
        match &mut self.engine {
            Engine::Dimpl { dtls, .. } => {
                if let Err(e) = dtls.handle_timeout(now) {
                    return self.fail(DtlsError::Protocol(e.to_string()));
                }
                self.drain();
            }
            Engine::OpenSsl(e) => {
                let mut events = VecDeque::new();
                e.handle_timeout(now, &mut events);
                self.take_openssl(events);
            }
            Engine::None => {}
        }
    }

    /// Moves the OpenSSL engine's datagrams and events to ours (a failure or a close ends
    /// the endpoint, as with dimpl).
    fn take_openssl(&mut self, events: VecDeque<DtlsEvent>) {
        if let Engine::OpenSsl(e) = &mut self.engine {
            while let Some(d) = e.poll_transmit() {
                if self.transmits.len() < MAX_QUEUED {
                    self.transmits.push_back(d);
                }
            }
        }
        for event in events {
            match event {
                DtlsEvent::Failed(error) => return self.fail(error),
                DtlsEvent::Closed => {
                    self.done = true;
                    self.events.push_back(DtlsEvent::Closed);
                    return;
                }
                DtlsEvent::Connected(keys) => {
                    self.peer_verified = true;
                    self.events.push_back(DtlsEvent::Connected(keys));
                }
            }
        }
    }

    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmits.pop_front()
    }

    #[must_use]
    pub fn poll_event(&mut self) -> Option<DtlsEvent> {
        self.events.pop_front()
    }

    /// Ends the association from our side: once connected a `close_notify` is queued (drain
    /// [`DtlsEndpoint::poll_transmit`]; it is not retransmitted), during the handshake it just
    /// stops. No event follows, and the endpoint is done.
    pub fn close(&mut self, now: Instant) {
        if self.done {
            return;
        }
        match &mut self.engine {
            Engine::Dimpl { dtls, .. } => {
                if dtls.handle_timeout(now).is_ok() && dtls.close().is_ok() {
                    self.drain();
                }
            }
            Engine::OpenSsl(e) => {
                e.close();
                self.take_openssl(VecDeque::new());
            }
            Engine::None => {}
        }
        self.done = true;
        self.events.clear();
    }

    /// When to call [`DtlsEndpoint::handle_timeout`] next; `None` once the endpoint is done.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.done {
            return None;
        }
        match &self.engine {
            Engine::Dimpl { timeout, .. } => *timeout,
            Engine::OpenSsl(e) => e.poll_timeout(),
            Engine::None => None,
        }
    }

    /// Drains dimpl's outputs until it names its next timeout (its contract).
    fn drain(&mut self) {
        let Engine::Dimpl { dtls, timeout, buf } = &mut self.engine else {
            return;
        };
        // Bounded: every output but the last is a record, an event or a resize, and dimpl
        // ends each cycle with a timeout.
        for _ in 0..1024 {
            match dtls.poll_output(buf) {
                // Past the bound a record is dropped; DTLS retransmits its flights.
                Output::Packet(p) if self.transmits.len() < MAX_QUEUED => {
                    self.transmits.push_back(p.to_vec());
                }
                Output::BufferTooSmall { needed } => {
                    if needed > 64 * 1024 {
                        return self.fail(DtlsError::Protocol("record too large".into()));
                    }
                    buf.resize(needed, 0);
                }
                Output::Timeout(t) => {
                    *timeout = Some(t);
                    return;
                }
                Output::Connected if !self.peer_verified => {
                    return self.fail(DtlsError::Incomplete);
                }
                Output::PeerCert(der) => {
                    if !fingerprint_matches(&self.expected, der) {
                        return self.fail(DtlsError::FingerprintMismatch);
                    }
                    self.peer_verified = true;
                }
                Output::KeyingMaterial(material, profile) => {
                    if !self.peer_verified {
                        return self.fail(DtlsError::Incomplete);
                    }
                    let keys = dimpl_suite(profile)
                        .and_then(|suite| srtp_keys(&material, suite, self.client));
                    match keys {
                        Ok(keys) => self.events.push_back(DtlsEvent::Connected(keys)),
                        Err(e) => return self.fail(e),
                    }
                }
                Output::CloseNotify => {
                    self.done = true;
                    self.events.push_back(DtlsEvent::Closed);
                    return;
                }
                // We carry no data channel: application data is not ours to take (nor is
                // anything a later dimpl may add). `Connected` with a verified peer is
                // followed by the keys.
                Output::ApplicationData(_) => {}
                _ => {}
            }
        }
    }

    fn fail(&mut self, error: DtlsError) {
        if !self.done {
            self.done = true;
            self.transmits.clear();
            self.events.push_back(DtlsEvent::Failed(error));
        }
    }
}

/// The `rtp::srtp` suite of a profile dimpl negotiated.
fn dimpl_suite(profile: SrtpProfile) -> Result<SrtpSuite, DtlsError> {
    match profile {
        SrtpProfile::AES128_CM_SHA1_80 => Ok(SrtpSuite::AesCm128HmacSha1_80),
        SrtpProfile::AEAD_AES_128_GCM => Ok(SrtpSuite::AeadAes128Gcm),
        SrtpProfile::AEAD_AES_256_GCM => Ok(SrtpSuite::AeadAes256Gcm),
        _ => Err(DtlsError::UnsupportedProfile),
    }
}

/// Splits RFC 5764 §4.2's exported material — client key, server key, client salt, server
/// salt — into the key we send with and the key we receive with (both engines).
pub(super) fn srtp_keys(
    material: &[u8],
    suite: SrtpSuite,
    client: bool,
) -> Result<SrtpKeys, DtlsError> {
    let (k, s) = (suite.key_len(), suite.salt_len());
    if material.len() != 2 * (k + s) {
        return Err(DtlsError::Incomplete);
    }
    let (client_key, rest) = material.split_at(k);
    let (server_key, rest) = rest.split_at(k);
    let (client_salt, server_salt) = rest.split_at(s);
    let key = |key: &[u8], salt: &[u8]| {
        let mut both = zeroize::Zeroizing::new(Vec::with_capacity(k + s));
        both.extend_from_slice(key);
        both.extend_from_slice(salt);
        SrtpKey::new(suite, &both).map_err(|_| DtlsError::Incomplete)
    };
    let client_side = key(client_key, client_salt)?;
    let server_side = key(server_key, server_salt)?;
    Ok(if client {
        SrtpKeys {
            send: client_side,
            recv: server_side,
        }
    } else {
        SrtpKeys {
            send: server_side,
            recv: client_side,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exported_material_splits_per_rfc_5764() {
        // 16-byte keys, 14-byte salts: client key 1s, server key 2s, client salt 3s, server
        // salt 4s.
        let mut m = vec![1u8; 16];
        m.extend([2u8; 16]);
        m.extend([3u8; 14]);
        m.extend([4u8; 14]);
        let suite = SrtpSuite::AesCm128HmacSha1_80;
        let c = srtp_keys(&m, suite, true).unwrap();
        assert_eq!(
            c.send.key_and_salt(),
            [[1u8; 16].as_slice(), &[3; 14]].concat()
        );
        assert_eq!(
            c.recv.key_and_salt(),
            [[2u8; 16].as_slice(), &[4; 14]].concat()
        );
        let s = srtp_keys(&m, suite, false).unwrap();
        assert_eq!(s.send, c.recv);
        assert_eq!(s.recv, c.send);
        assert_eq!(srtp_keys(&m[1..], suite, true), Err(DtlsError::Incomplete));
    }

    #[test]
    fn endpoints_and_identities_move_between_threads() {
        // The engine makes them on one thread and runs them on a stream's I/O thread; an
        // identity is shared by every session of a backend.
        fn send<T: Send>() {}
        fn shared<T: Send + Sync>() {}
        send::<DtlsEndpoint>();
        shared::<DtlsIdentity>();
    }

    #[test]
    fn identity_fingerprint_is_the_certificates_sha_256() {
        let id = DtlsIdentity::generate().unwrap();
        assert_eq!(id.fingerprint().algorithm, "sha-256");
        assert_eq!(id.fingerprint().hash.len(), 32);
        assert_eq!(
            fingerprint(&id.certificate.certificate, "sha-256").as_ref(),
            Some(id.fingerprint())
        );
        assert!(fingerprint(b"x", "md5").is_none());
        // Two backends, two certificates.
        assert_ne!(
            DtlsIdentity::generate().unwrap().fingerprint(),
            id.fingerprint()
        );
    }
}
