//! DTLS-SRTP (RFC 5763, RFC 5764): str0m's sans-IO DTLS (`dimpl`, DTLS 1.2 and 1.3, ECDSA)
//! behind the contract of our other cores. The handshake's exported keys become an
//! [`SrtpKeys`] for `rtp::srtp` — the one SRTP implementation; nothing here protects media.
//!
//! - [`DtlsIdentity`]: an ECDSA P-256 certificate made per backend (rcgen on ring) and its
//!   `a=fingerprint` (SHA-256).
//! - [`DtlsEndpoint`]: one handshake. The peer's certificate is accepted only if it hashes to a
//!   fingerprint its SDP announced (RFC 8122 §5); otherwise the endpoint fails and reports no
//!   keys. Inputs: [`DtlsEndpoint::handle_input`] (a datagram the RFC 7983 classifier called
//!   DTLS), [`DtlsEndpoint::handle_timeout`]; outputs, drained after every input:
//!   [`DtlsEndpoint::poll_transmit`], [`DtlsEndpoint::poll_event`], then
//!   [`DtlsEndpoint::poll_timeout`]. No clock is read.
//!
//! What the peer sends is untrusted: a record dimpl cannot use is dropped inside it; a fatal
//! error (a handshake that cannot succeed) ends the endpoint with [`DtlsEvent::Failed`].

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use dimpl::{Config, Dtls, DtlsCertificate, Output, SrtpProfile};
use sha2::{Digest, Sha256, Sha384, Sha512};

use crate::rtp::srtp::{SrtpKey, SrtpKeys, SrtpSuite};
use crate::sdp::Fingerprint;

/// The largest datagram dimpl may hand us to send (its default MTU is smaller).
const MAX_DATAGRAM: usize = 2048;
/// The most datagrams we queue for the caller between two drains (a handshake flight is a few).
const MAX_QUEUED: usize = 64;

/// Our DTLS certificate and its fingerprint. One per backend: every session presents it.
#[derive(Clone)]
pub struct DtlsIdentity {
    certificate: DtlsCertificate,
    fingerprint: Fingerprint,
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
        let certificate = DtlsCertificate {
            certificate: cert.der().to_vec(),
            private_key: key.serialize_der(),
        };
        let fingerprint =
            fingerprint(&certificate.certificate, "sha-256").ok_or(DtlsError::Certificate)?;
        Ok(DtlsIdentity {
            certificate,
            fingerprint,
        })
    }

    /// Our `a=fingerprint` (SHA-256).
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }
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
    dtls: Dtls,
    client: bool,
    expected: Vec<Fingerprint>,
    peer_verified: bool,
    done: bool,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<DtlsEvent>,
    timeout: Option<Instant>,
    buf: Vec<u8>,
}

impl fmt::Debug for DtlsEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DtlsEndpoint")
            .field("client", &self.client)
            .field("peer_verified", &self.peer_verified)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl DtlsEndpoint {
    /// An endpoint presenting `identity`, the DTLS client when `client` (our `a=setup` is
    /// `active`, `sdp::SetupRole::we_are_client`), expecting a certificate that matches one of
    /// `peer_fingerprints` (the peer's `a=fingerprint` lines). A client sends its ClientHello
    /// at once (drain [`DtlsEndpoint::poll_transmit`]).
    pub fn new(
        identity: &DtlsIdentity,
        client: bool,
        peer_fingerprints: &[Fingerprint],
        now: Instant,
    ) -> DtlsEndpoint {
        let config = Arc::new(Config::default());
        // DTLS 1.2 or 1.3, whichever the peer speaks (the server senses it from the
        // ClientHello, the client offers both).
        let mut dtls = Dtls::new_auto(config, identity.certificate.clone(), now);
        let mut endpoint = DtlsEndpoint {
            dtls: {
                if client {
                    dtls.set_active(true);
                }
                dtls
            },
            client,
            expected: peer_fingerprints
                .iter()
                .filter(|f| fingerprint(&[], &f.algorithm).is_some())
                .cloned()
                .collect(),
            peer_verified: false,
            done: false,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            timeout: None,
            buf: vec![0; MAX_DATAGRAM],
        };
        if endpoint.expected.is_empty() {
            endpoint.fail(DtlsError::NoFingerprint);
        } else if client {
            // The ClientHello leaves on the first timeout; run it now.
            endpoint.handle_timeout(now);
        }
        endpoint
    }

    /// Whether we are the DTLS client.
    pub fn is_client(&self) -> bool {
        self.client
    }

    /// A datagram from the peer that the RFC 7983 classifier called DTLS (first byte 20–63).
    pub fn handle_input(&mut self, now: Instant, datagram: &[u8]) {
        if self.done {
            return;
        }
        // dimpl wants its clock refreshed before a packet at a new instant.
        if let Err(e) = self.dtls.handle_timeout(now) {
            return self.fail(DtlsError::Protocol(e.to_string()));
        }
        if let Err(e) = self.dtls.handle_packet(datagram) {
            return self.fail(DtlsError::Protocol(e.to_string()));
        }
        self.drain();
    }

    /// Runs retransmissions and the handshake's deadline.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.done {
            return;
        }
        if let Err(e) = self.dtls.handle_timeout(now) {
            return self.fail(DtlsError::Protocol(e.to_string()));
        }
        self.drain();
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
        if self.dtls.handle_timeout(now).is_ok() && self.dtls.close().is_ok() {
            self.drain();
        }
        self.done = true;
        self.events.clear();
    }

    /// When to call [`DtlsEndpoint::handle_timeout`] next; `None` once the endpoint is done.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.done {
            None
        } else {
            self.timeout
        }
    }

    /// Drains dimpl's outputs until it names its next timeout (its contract).
    fn drain(&mut self) {
        // Bounded: every output but the last is a record, an event or a resize, and dimpl
        // ends each cycle with a timeout.
        for _ in 0..1024 {
            match self.dtls.poll_output(&mut self.buf) {
                // Past the bound a record is dropped; DTLS retransmits its flights.
                Output::Packet(p) if self.transmits.len() < MAX_QUEUED => {
                    self.transmits.push_back(p.to_vec());
                }
                Output::BufferTooSmall { needed } => {
                    if needed > 64 * 1024 {
                        return self.fail(DtlsError::Protocol("record too large".into()));
                    }
                    self.buf.resize(needed, 0);
                }
                Output::Timeout(t) => {
                    self.timeout = Some(t);
                    return;
                }
                Output::Connected if !self.peer_verified => {
                    return self.fail(DtlsError::Incomplete);
                }
                Output::PeerCert(der) => {
                    let matches = self.expected.iter().any(|want| {
                        fingerprint(der, &want.algorithm).is_some_and(|got| got.hash == want.hash)
                    });
                    if !matches {
                        return self.fail(DtlsError::FingerprintMismatch);
                    }
                    self.peer_verified = true;
                }
                Output::KeyingMaterial(material, profile) => {
                    if !self.peer_verified {
                        return self.fail(DtlsError::Incomplete);
                    }
                    match srtp_keys(&material, profile, self.client) {
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

/// Splits RFC 5764 §4.2's exported material — client key, server key, client salt, server
/// salt — into the key we send with and the key we receive with.
fn srtp_keys(material: &[u8], profile: SrtpProfile, client: bool) -> Result<SrtpKeys, DtlsError> {
    let suite = match profile {
        SrtpProfile::AES128_CM_SHA1_80 => SrtpSuite::AesCm128HmacSha1_80,
        SrtpProfile::AEAD_AES_128_GCM => SrtpSuite::AeadAes128Gcm,
        SrtpProfile::AEAD_AES_256_GCM => SrtpSuite::AeadAes256Gcm,
        _ => return Err(DtlsError::UnsupportedProfile),
    };
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
        let c = srtp_keys(&m, SrtpProfile::AES128_CM_SHA1_80, true).unwrap();
        assert_eq!(
            c.send.key_and_salt(),
            [[1u8; 16].as_slice(), &[3; 14]].concat()
        );
        assert_eq!(
            c.recv.key_and_salt(),
            [[2u8; 16].as_slice(), &[4; 14]].concat()
        );
        let s = srtp_keys(&m, SrtpProfile::AES128_CM_SHA1_80, false).unwrap();
        assert_eq!(s.send, c.recv);
        assert_eq!(s.recv, c.send);
        assert_eq!(
            srtp_keys(&m[1..], SrtpProfile::AES128_CM_SHA1_80, true),
            Err(DtlsError::Incomplete)
        );
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
