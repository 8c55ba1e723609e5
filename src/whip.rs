//! WHIP (RFC 9725) and WHEP endpoints over a SIP video backend: a browser, OBS or GStreamer
//! POSTs an SDP offer to `/whip` (publish) or `/whep` (play) and gets 201, our answer and a
//! `Location` to DELETE when it is done. Each session is an ordinary session of the backend
//! ([`SipVoiceBackend::accept_offer`]): the same callbacks, stats, recording and hangup as a SIP
//! call's.
//!
//! What each request gets is decided by the pure `WhipEndpoint` of roomkit-media-proto (CORS
//! preflight, bearer token, 415/404/405); it runs on the engine's small HTTP server, HTTPS when
//! given a certificate and key.
//!
//! [`SipVoiceBackend::accept_offer`]: crate::backend::SipVoiceBackend::accept_offer

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use roomkit_media_proto::webrtc::{CreateError, WhipEndpoint, WhipSessions};
pub use roomkit_media_proto::webrtc::{WhipConfig, WhipKind};

use crate::backend::{SessionId, SipVideoBackend};
use crate::engine::http::{self, HttpServer, Response};
use crate::error::{Error, Result};

/// A running WHIP (and, when configured, WHEP) endpoint. Dropping it (or [`WhipServer::stop`])
/// stops taking offers; the sessions it made go on until hung up or DELETEd before that.
#[derive(Debug)]
pub struct WhipServer {
    http: HttpServer,
}

/// The sessions of one request: the backend (upgraded from the server's weak reference for
/// the request only, so the server never keeps it alive) and the client's address.
struct Sessions<'a> {
    backend: &'a SipVideoBackend,
    client: SocketAddr,
}

impl WhipSessions for Sessions<'_> {
    fn create(
        &mut self,
        kind: WhipKind,
        offer: &str,
    ) -> std::result::Result<(String, String), CreateError> {
        match self.backend.accept_offer(offer, kind, self.client) {
            Ok((session, answer)) => Ok((session.to_string(), answer)),
            Err(Error::Unsupported(why) | Error::InvalidArgument(why)) => {
                Err(CreateError::Rejected(why))
            }
            Err(e) => Err(CreateError::Unavailable(e.to_string())),
        }
    }

    fn delete(&mut self, _kind: WhipKind, id: &str) {
        if let Ok(session) = id.parse::<SessionId>() {
            // Already ended (the peer left, the backend stopped): nothing more to do.
            let _ = self.backend.hangup(session);
        }
    }
}

impl WhipServer {
    /// Listens on `addr` (port 0: any free port) for WHIP (and WHEP when `config.whep`)
    /// requests, making sessions on `backend`; HTTPS with `tls` (PEM certificate chain and
    /// key files).
    pub fn start(
        addr: SocketAddr,
        tls: Option<(&Path, &Path)>,
        config: WhipConfig,
        backend: &Arc<SipVideoBackend>,
    ) -> Result<WhipServer> {
        let tls = tls.map(|(c, k)| http::tls_config(c, k)).transpose()?;
        let endpoint = Mutex::new(WhipEndpoint::new(config));
        let backend: Weak<SipVideoBackend> = Arc::downgrade(backend);
        let http = HttpServer::start(addr, tls, "rkm-whip", move |req| {
            let Some(backend) = backend.upgrade() else {
                return Response::text(503, "shutting down\n");
            };
            let mut endpoint = endpoint.lock();
            // Forget resources whose sessions ended by themselves, so the table stays as
            // large as the live sessions.
            let ended: Vec<String> = endpoint
                .resources()
                .filter(|(id, _)| {
                    id.parse::<SessionId>()
                        .map_or(true, |s| backend.call_id(s).is_none())
                })
                .map(|(id, _)| id.to_string())
                .collect();
            for id in ended {
                endpoint.forget(&id);
            }
            let mut sessions = Sessions {
                backend: &backend,
                client: req
                    .peer
                    .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
            };
            endpoint
                .handle(req, &mut sessions)
                .unwrap_or_else(|| Response::text(404, "not found\n"))
        })?;
        Ok(WhipServer { http })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.http.local_addr()
    }

    /// The endpoint URL of `kind` (`http://ADDR/whip`, `https://...` over TLS).
    pub fn url(&self, kind: WhipKind) -> String {
        self.http.url(kind.path())
    }

    /// Stops taking requests and closes the socket.
    pub fn stop(&mut self) {
        self.http.stop();
    }
}
