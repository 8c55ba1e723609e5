//! The OpenSSL DTLS engine behind [`super::DtlsEndpoint`] ([`super::DtlsEngine::OpenSsl`]):
//! DTLS 1.2 through the safe `openssl` crate, with the records passed through memory instead of
//! a socket, so the endpoint keeps the sans-IO contract of the dimpl engine (datagrams in,
//! datagrams out, time passed in).
//!
//! Why a second engine: dimpl has no RSA, and the DTLS-SRTP peers we must reach (baresip's
//! `dtls_srtp`, GStreamer's DTLS elements) present RSA certificates. OpenSSL takes RSA and
//! ECDSA peers alike, as client or server.
//!
//! - I/O: [`Pipe`] is the `Read + Write` under the `SslStream`. Each write from OpenSSL is one
//!   datagram to send; each read hands OpenSSL one received datagram whole, or "would block"
//!   when none is queued. The MTU is set on the session (OpenSSL cannot ask a memory pipe).
//! - Trust: the verify callback accepts any chain whose leaf hashes to a fingerprint the peer's
//!   SDP announced (self-signed is the norm, RFC 8122), and the leaf is checked again after
//!   the handshake before any key leaves.
//! - Keys: `export_keying_material("EXTRACTOR-dtls_srtp")`, split by the one RFC 5764 §4.2
//!   splitter the dimpl engine uses too.
//! - Time: the safe crate has no `DTLSv1_handle_timeout`, and OpenSSL keeps its own
//!   retransmission timer on the WALL clock (it retransmits when it is driven after that timer
//!   expired). So the endpoint retransmits by itself, on the `now` passed in: it keeps the
//!   datagrams of the last flight OpenSSL wrote and sends them again, byte for byte, 1 s after
//!   the flight, then 2 s, 4 s... (60 s at most; the handshake gives up after 40 s). A copy the
//!   peer already had is a replayed record it drops (RFC 6347 §4.1.2.6); a lost one arrives. The
//!   last flight (the server's Finished) has no timer: when the peer's handshake records come
//!   again after we finished, it lost our last flight, and we send it again (rate-bounded).
//!   OpenSSL's own wall-clock retransmissions still happen when its timer expires while it is
//!   driven; they are ordinary DTLS retransmissions and harmless beside ours. Lossy handshakes
//!   therefore complete on virtual time too.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openssl::pkey::PKey;
use openssl::srtp::SrtpProfileId;
use openssl::ssl::{
    ErrorCode, Ssl, SslContext, SslMethod, SslOptions, SslStream, SslVerifyMode, SslVersion,
};
use openssl::x509::X509;

use super::dtls::{fingerprint_matches, srtp_keys, DtlsError, DtlsEvent, MAX_QUEUED};
use crate::rtp::srtp::SrtpSuite;
use crate::sdp::Fingerprint;

/// The datagram size OpenSSL fragments its handshake to (room for IP, UDP and TURN headers).
const MTU: u32 = 1200;
/// The profiles we offer (client) or pick from (server), in our order of preference: dimpl's
/// (AES-256-GCM first) so both engines agree, then the 32-bit tag older stacks still offer.
/// Every one is an `rtp::srtp` suite.
const SRTP_PROFILES: &str =
    "SRTP_AEAD_AES_256_GCM:SRTP_AEAD_AES_128_GCM:SRTP_AES128_CM_SHA1_80:SRTP_AES128_CM_SHA1_32";
/// Forward-secret suites only, ECDSA and RSA certificates alike (AEAD first, then the CBC
/// suites older stacks still pick).
const CIPHERS: &str = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:\
ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:\
ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:\
ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES256-SHA";
/// The first retransmission timeout and its ceiling (OpenSSL's and RFC 6347's values).
const FIRST_RTO: Duration = Duration::from_secs(1);
const MAX_RTO: Duration = Duration::from_secs(60);
/// After we finished, how often and how many times the peer's repeated flight makes us send
/// our last flight again.
const FINAL_RESEND_GAP: Duration = Duration::from_millis(250);
const FINAL_RESENDS: u32 = 8;
/// The whole handshake's limit (dimpl's default, so both engines give up alike).
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(40);
/// The largest record OpenSSL hands back as application data (we discard it; no data channel).
const READ_BUF: usize = 16 * 1024 + 512;

/// The OpenSSL context of one identity: our certificate and key, DTLS 1.2 or later, the
/// SRTP profiles, a certificate required from the peer. Made once per `DtlsIdentity`.
pub(super) fn context(certificate: &[u8], private_key: &[u8]) -> Result<SslContext, DtlsError> {
    let bad = |_| DtlsError::Certificate;
    let cert = X509::from_der(certificate).map_err(bad)?;
    let key = PKey::private_key_from_der(private_key).map_err(bad)?;
    let mut b = SslContext::builder(SslMethod::dtls()).map_err(bad)?;
    b.set_min_proto_version(Some(SslVersion::DTLS1_2))
        .map_err(bad)?;
    b.set_certificate(&cert).map_err(bad)?;
    b.set_private_key(&key).map_err(bad)?;
    b.check_private_key().map_err(bad)?;
    b.set_cipher_list(CIPHERS).map_err(bad)?;
    b.set_tlsext_use_srtp(SRTP_PROFILES).map_err(bad)?;
    // The MTU is ours to set: a memory pipe has none to query. No session tickets to keep.
    b.set_options(SslOptions::NO_QUERY_MTU | SslOptions::NO_TICKET);
    b.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
    Ok(b.build())
}

/// Whether a private key (PKCS#8 or traditional DER) is ECDSA P-256, the one kind dimpl signs
/// with.
pub(super) fn is_p256(private_key: &[u8]) -> bool {
    PKey::private_key_from_der(private_key)
        .ok()
        .and_then(|k| k.ec_key().ok())
        .and_then(|k| k.group().curve_name())
        == Some(openssl::nid::Nid::X9_62_PRIME256V1)
}

/// The datagrams between OpenSSL and the endpoint.
#[derive(Default)]
struct Pipe {
    incoming: VecDeque<Vec<u8>>,
    outgoing: VecDeque<Vec<u8>>,
    /// What OpenSSL wrote since the endpoint last looked (retransmissions included).
    written: Vec<Vec<u8>>,
}

impl io::Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.incoming.pop_front() {
            Some(d) => {
                // A datagram longer than OpenSSL's buffer cannot be a record it takes; its
                // head fails the record checks and OpenSSL drops it.
                let n = d.len().min(buf.len());
                buf[..n].copy_from_slice(&d[..n]);
                Ok(n)
            }
            None => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl io::Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // One write, one datagram. Past the bound it is dropped: DTLS retransmits its flights.
        if self.outgoing.len() < MAX_QUEUED {
            self.outgoing.push_back(buf.to_vec());
        }
        if self.written.len() < MAX_QUEUED {
            self.written.push(buf.to_vec());
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One DTLS association on OpenSSL.
pub(super) struct OpenSslDtls {
    stream: SslStream<Pipe>,
    client: bool,
    expected: Vec<Fingerprint>,
    /// Set by the verify callback when the peer's leaf certificate matched no fingerprint.
    mismatch: Arc<AtomicBool>,
    connected: bool,
    started: Instant,
    /// The datagrams of the last flight OpenSSL wrote, which our timer sends again.
    flight: Vec<Vec<u8>>,
    rto: Duration,
    /// When to send `flight` again (`None`: nothing sent yet).
    next: Option<Instant>,
    /// After the handshake: when we last sent our last flight again, and how many times.
    final_resent: Option<Instant>,
    final_resends: u32,
    buf: Vec<u8>,
}

impl OpenSslDtls {
    pub(super) fn new(
        context: &SslContext,
        client: bool,
        expected: &[Fingerprint],
        now: Instant,
    ) -> Result<OpenSslDtls, DtlsError> {
        let fail = |e: openssl::error::ErrorStack| DtlsError::Protocol(e.to_string());
        let mut ssl = Ssl::new(context).map_err(fail)?;
        ssl.set_mtu(MTU).map_err(fail)?;
        if client {
            ssl.set_connect_state();
        } else {
            ssl.set_accept_state();
        }
        let mismatch = Arc::new(AtomicBool::new(false));
        let (want, flag) = (expected.to_vec(), Arc::clone(&mismatch));
        ssl.set_verify_callback(
            SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT,
            move |_chain_ok, store| {
                // Only the leaf matters: no CA vouches for it, its fingerprint does (RFC 8122).
                if store.error_depth() != 0 {
                    return true;
                }
                let ok = store
                    .current_cert()
                    .and_then(|c| c.to_der().ok())
                    .is_some_and(|der| fingerprint_matches(&want, &der));
                if !ok {
                    flag.store(true, Ordering::Relaxed);
                }
                ok
            },
        );
        let stream = SslStream::new(ssl, Pipe::default()).map_err(fail)?;
        Ok(OpenSslDtls {
            stream,
            client,
            expected: expected.to_vec(),
            mismatch,
            connected: false,
            started: now,
            flight: Vec::new(),
            rto: FIRST_RTO,
            next: None,
            final_resent: None,
            final_resends: 0,
            buf: vec![0; READ_BUF],
        })
    }

    /// A datagram from the peer; any event it caused goes to `events`.
    pub(super) fn handle_input(
        &mut self,
        now: Instant,
        datagram: &[u8],
        events: &mut VecDeque<DtlsEvent>,
    ) {
        let was_connected = self.connected;
        self.stream.get_mut().incoming.push_back(datagram.to_vec());
        self.drive(events);
        if self.take_flight() {
            // A new flight (or OpenSSL's own retransmission): its timer starts afresh.
            self.rto = FIRST_RTO;
            self.next = Some(now + self.rto);
        } else if was_connected && matches!(datagram.first(), Some(20 | 22)) {
            // Handshake records after we finished: the peer is repeating its last flight
            // because ours did not reach it. Send ours again, bounded in rate and count.
            let due = self
                .final_resent
                .is_none_or(|t| now >= t + FINAL_RESEND_GAP);
            if due && self.final_resends < FINAL_RESENDS {
                self.final_resent = Some(now);
                self.final_resends += 1;
                self.resend();
            }
        }
    }

    /// Sends the last flight again when its timer is due; gives up after the handshake limit.
    pub(super) fn handle_timeout(&mut self, now: Instant, events: &mut VecDeque<DtlsEvent>) {
        if self.connected {
            return;
        }
        if now >= self.started + HANDSHAKE_LIMIT {
            events.push_back(DtlsEvent::Failed(DtlsError::Protocol(
                "handshake timed out".into(),
            )));
            return;
        }
        match self.next {
            // A client's first call sends the ClientHello; a server with nothing heard waits.
            None if self.client => {
                self.drive(events);
                if self.take_flight() {
                    self.next = Some(now + self.rto);
                }
            }
            None => {}
            Some(t) if now >= t => {
                self.resend();
                self.rto = (self.rto * 2).min(MAX_RTO);
                self.next = Some(now + self.rto);
            }
            Some(_) => {}
        }
    }

    /// Queues a `close_notify` once connected (OpenSSL writes it; it is not retransmitted);
    /// during the handshake there is nothing to say.
    pub(super) fn close(&mut self) {
        if self.connected {
            // A failure here only means no alert leaves: the association ends all the same.
            let _ = self.stream.shutdown();
        }
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        if self.connected {
            return None;
        }
        let limit = self.started + HANDSHAKE_LIMIT;
        Some(self.next.map_or(limit, |t| t.min(limit)))
    }

    pub(super) fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.stream.get_mut().outgoing.pop_front()
    }

    /// Whether OpenSSL wrote since the last look; if so, what it wrote is the flight to repeat.
    fn take_flight(&mut self) -> bool {
        let written = std::mem::take(&mut self.stream.get_mut().written);
        if written.is_empty() {
            return false;
        }
        self.flight = written;
        true
    }

    /// Queues the last flight again, byte for byte.
    fn resend(&mut self) {
        let pipe = self.stream.get_mut();
        for d in &self.flight {
            if pipe.outgoing.len() < MAX_QUEUED {
                pipe.outgoing.push_back(d.clone());
            }
        }
    }

    /// Runs OpenSSL on what is queued: the handshake until it needs more, then the records
    /// after it (a peer's retransmitted flight gets our last flight again; a close_notify
    /// closes).
    fn drive(&mut self, events: &mut VecDeque<DtlsEvent>) {
        if !self.connected {
            match self.stream.do_handshake() {
                Ok(()) => {
                    self.connected = true;
                    events.push_back(self.keys());
                }
                Err(e) if e.code() == ErrorCode::WANT_READ => {}
                Err(e) => {
                    let error = if self.mismatch.load(Ordering::Relaxed) {
                        DtlsError::FingerprintMismatch
                    } else {
                        DtlsError::Protocol(e.to_string())
                    };
                    events.push_back(DtlsEvent::Failed(error));
                    return;
                }
            }
        }
        if self.connected {
            // Bounded: each read consumes a record or reports that none is left.
            for _ in 0..MAX_QUEUED {
                match self.stream.ssl_read(&mut self.buf) {
                    // Application data: we carry no data channel.
                    Ok(_) => {}
                    Err(e) if e.code() == ErrorCode::WANT_READ => break,
                    Err(e) if e.code() == ErrorCode::ZERO_RETURN => {
                        events.push_back(DtlsEvent::Closed);
                        break;
                    }
                    Err(e) => {
                        events.push_back(DtlsEvent::Failed(DtlsError::Protocol(e.to_string())));
                        break;
                    }
                }
            }
        }
        // Whatever OpenSSL left unread is not a record it wants.
        self.stream.get_mut().incoming.clear();
    }

    /// The event of a finished handshake: the peer's certificate checked against its
    /// fingerprints once more, then the exported keys.
    fn keys(&self) -> DtlsEvent {
        let ssl = self.stream.ssl();
        let Some(der) = ssl.peer_certificate().and_then(|c| c.to_der().ok()) else {
            return DtlsEvent::Failed(DtlsError::Incomplete);
        };
        if !fingerprint_matches(&self.expected, &der) {
            return DtlsEvent::Failed(DtlsError::FingerprintMismatch);
        }
        let suite = match ssl.selected_srtp_profile().map(|p| p.id()) {
            Some(SrtpProfileId::SRTP_AES128_CM_SHA1_80) => SrtpSuite::AesCm128HmacSha1_80,
            Some(SrtpProfileId::SRTP_AES128_CM_SHA1_32) => SrtpSuite::AesCm128HmacSha1_32,
            Some(SrtpProfileId::SRTP_AEAD_AES_128_GCM) => SrtpSuite::AeadAes128Gcm,
            Some(SrtpProfileId::SRTP_AEAD_AES_256_GCM) => SrtpSuite::AeadAes256Gcm,
            Some(_) => return DtlsEvent::Failed(DtlsError::UnsupportedProfile),
            // The peer did not negotiate use_srtp: no keys to export.
            None => return DtlsEvent::Failed(DtlsError::Incomplete),
        };
        let mut material =
            zeroize::Zeroizing::new(vec![0u8; 2 * (suite.key_len() + suite.salt_len())]);
        if ssl
            .export_keying_material(&mut material, "EXTRACTOR-dtls_srtp", None)
            .is_err()
        {
            return DtlsEvent::Failed(DtlsError::Incomplete);
        }
        match srtp_keys(&material, suite, self.client) {
            Ok(keys) => DtlsEvent::Connected(keys),
            Err(e) => DtlsEvent::Failed(e),
        }
    }
}
