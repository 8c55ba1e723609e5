//! WHIP (RFC 9725) and WHEP (draft-ietf-wish-whep) as pure decisions: an HTTP request in, the
//! response out. What a POSTed offer turns into (a session and its SDP answer) and what DELETE
//! ends are asked of the caller through [`WhipSessions`]; the engine puts this behind its HTTP
//! server (`engine/http.rs`) and the SIP video backend behind [`WhipSessions`].
//!
//! - `POST /whip` (`/whep`) with `Content-Type: application/sdp`: 201 Created, the answer as the
//!   body, `Location: /whip/<id>` (`/whep/<id>`), the resource of the session.
//! - `DELETE` on a resource: 200, the session ends; an unknown one 404.
//! - `OPTIONS`: a CORS preflight answer (any origin, the methods, `Authorization` and
//!   `Content-Type` allowed), so a page served from another origin can publish. Every answer
//!   carries `Access-Control-Allow-Origin: *` and exposes `Location` to the page's script.
//! - With a token configured, POST and DELETE need `Authorization: Bearer <token>` (401 and
//!   `WWW-Authenticate: Bearer` otherwise); preflights never carry credentials, so they pass.
//! - 415 for another content type, 405 for other methods. PATCH (trickle ICE, ICE restart) gets
//!   405 as RFC 9725 §4.3.1 asks of a server that supports neither: the answer carries all our
//!   candidates (ICE-lite), and the offer is taken with the candidates it has.

use std::collections::HashMap;

use crate::http::{Request, Response};

/// Which of the two endpoints a session came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WhipKind {
    /// Ingest: the client sends media to us.
    Whip,
    /// Egress: we send media to the client.
    Whep,
}

impl WhipKind {
    /// The endpoint's path (`/whip`, `/whep`).
    pub fn path(self) -> &'static str {
        match self {
            WhipKind::Whip => "/whip",
            WhipKind::Whep => "/whep",
        }
    }
}

impl std::fmt::Display for WhipKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.path()[1..])
    }
}

/// Why a session could not be made from an offer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CreateError {
    /// The offer is unusable (no common codec, no ICE/DTLS, bad SDP): 400 with this text.
    Rejected(String),
    /// The server cannot take a session now (overload, shutting down): 503 with this text.
    Unavailable(String),
}

/// What the endpoint asks of whoever runs the sessions.
pub trait WhipSessions {
    /// Opens a session from a client's SDP offer: its id (made of URL-safe characters) and
    /// our SDP answer.
    fn create(&mut self, kind: WhipKind, offer: &str) -> Result<(String, String), CreateError>;
    /// Ends the session of that id.
    fn delete(&mut self, kind: WhipKind, id: &str);
}

/// The endpoint's settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WhipConfig {
    /// The bearer token POST and DELETE must carry; none: open to all.
    pub token: Option<String>,
    /// Whether `/whep` is served (else it is an unknown path).
    pub whep: bool,
}

/// The WHIP/WHEP endpoint: its settings and the resources it created (so DELETE can end only
/// those, at the path they were given).
#[derive(Debug, Default)]
pub struct WhipEndpoint {
    config: WhipConfig,
    resources: HashMap<String, WhipKind>,
}

const ENDPOINT_METHODS: &str = "OPTIONS, POST";
const RESOURCE_METHODS: &str = "OPTIONS, DELETE";

impl WhipEndpoint {
    /// An endpoint with those settings and no resource.
    pub fn new(config: WhipConfig) -> WhipEndpoint {
        WhipEndpoint {
            config,
            resources: HashMap::new(),
        }
    }

    /// Answers `req` if its path is the endpoint's or one of its resources'; `None` for any
    /// other path (the server routes it elsewhere).
    pub fn handle(&mut self, req: &Request, sessions: &mut dyn WhipSessions) -> Option<Response> {
        let (kind, resource) = self.route(&req.path)?;
        Some(cors(self.answer(req, kind, resource, sessions)))
    }

    /// Forgets a resource whose session ended by itself (hangup, consent expired), so a later
    /// DELETE of it gets 404.
    pub fn forget(&mut self, id: &str) {
        self.resources.remove(id);
    }

    /// The resources alive, with their kind.
    pub fn resources(&self) -> impl Iterator<Item = (&str, WhipKind)> {
        self.resources.iter().map(|(id, k)| (id.as_str(), *k))
    }

    fn route<'a>(&self, path: &'a str) -> Option<(WhipKind, Option<&'a str>)> {
        for kind in [WhipKind::Whip, WhipKind::Whep] {
            if kind == WhipKind::Whep && !self.config.whep {
                continue;
            }
            let Some(rest) = path.strip_prefix(kind.path()) else {
                continue;
            };
            if rest.is_empty() || rest == "/" {
                return Some((kind, None));
            }
            if let Some(id) = rest.strip_prefix('/') {
                return Some((kind, Some(id)));
            }
        }
        None
    }

    fn answer(
        &mut self,
        req: &Request,
        kind: WhipKind,
        resource: Option<&str>,
        sessions: &mut dyn WhipSessions,
    ) -> Response {
        let methods = match resource {
            None => ENDPOINT_METHODS,
            Some(_) => RESOURCE_METHODS,
        };
        if req.method == "OPTIONS" {
            let r = Response::empty(204)
                .with_header("Access-Control-Allow-Methods", methods)
                .with_header(
                    "Access-Control-Allow-Headers",
                    "Authorization, Content-Type, If-Match",
                )
                .with_header("Access-Control-Max-Age", "600");
            return match resource {
                None => r.with_header("Accept-Post", "application/sdp"),
                Some(_) => r,
            };
        }
        let known = match (req.method.as_str(), resource) {
            ("POST", None) | ("DELETE", Some(_)) => true,
            ("PATCH", Some(_)) => false,
            _ => return Response::text(405, "method not allowed\n").with_header("Allow", methods),
        };
        if !self.authorized(req) {
            return Response::text(401, "bearer token required\n")
                .with_header("WWW-Authenticate", "Bearer");
        }
        if !known {
            // PATCH: no trickle ICE, no ICE restart (RFC 9725 §4.3.1).
            return Response::text(405, "trickle ICE and ICE restarts are not supported\n")
                .with_header("Allow", methods);
        }
        match resource {
            Some(id) => {
                if self.resources.get(id) != Some(&kind) {
                    return Response::text(404, "no such session\n");
                }
                self.resources.remove(id);
                sessions.delete(kind, id);
                Response::empty(200)
            }
            None => self.create(req, kind, sessions),
        }
    }

    fn create(
        &mut self,
        req: &Request,
        kind: WhipKind,
        sessions: &mut dyn WhipSessions,
    ) -> Response {
        let sdp_type = req
            .header("content-type")
            .and_then(|t| t.split(';').next())
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/sdp"));
        if !sdp_type {
            return Response::text(415, "an SDP offer (application/sdp) is expected\n")
                .with_header("Accept-Post", "application/sdp");
        }
        let Ok(offer) = std::str::from_utf8(&req.body) else {
            return Response::text(400, "the offer is not UTF-8\n");
        };
        if offer.trim().is_empty() {
            return Response::text(400, "empty offer\n");
        }
        match sessions.create(kind, offer) {
            Ok((id, answer)) => {
                let location = format!("{}/{id}", kind.path());
                self.resources.insert(id, kind);
                Response::new(201, "application/sdp", answer).with_header("Location", location)
            }
            Err(CreateError::Rejected(why)) => Response::text(400, &format!("{why}\n")),
            Err(CreateError::Unavailable(why)) => Response::text(503, &format!("{why}\n")),
        }
    }

    fn authorized(&self, req: &Request) -> bool {
        let Some(token) = &self.config.token else {
            return true;
        };
        let given = req
            .header("authorization")
            .and_then(|v| {
                let (scheme, t) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then_some(t.trim())
            })
            .unwrap_or("");
        // Compared in time independent of where they first differ.
        given.len() == token.len()
            && given
                .bytes()
                .zip(token.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

/// Headers every answer carries, so a page on another origin may read it (and its Location).
fn cors(r: Response) -> Response {
    r.with_header("Access-Control-Allow-Origin", "*")
        .with_header("Access-Control-Expose-Headers", "Location")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Fake {
        made: Vec<(WhipKind, String)>,
        deleted: Vec<(WhipKind, String)>,
        fail: Option<CreateError>,
    }

    impl WhipSessions for Fake {
        fn create(&mut self, kind: WhipKind, offer: &str) -> Result<(String, String), CreateError> {
            if let Some(e) = self.fail.clone() {
                return Err(e);
            }
            self.made.push((kind, offer.to_string()));
            Ok((format!("s{}", self.made.len()), "v=0\r\nanswer\r\n".into()))
        }
        fn delete(&mut self, kind: WhipKind, id: &str) {
            self.deleted.push((kind, id.to_string()));
        }
    }

    fn req(method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Request {
        Request {
            method: method.into(),
            path: path.into(),
            query: String::new(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.as_bytes().to_vec(),
            peer: None,
        }
    }

    const SDP: (&str, &str) = ("Content-Type", "application/sdp");

    fn endpoint(token: Option<&str>, whep: bool) -> WhipEndpoint {
        WhipEndpoint::new(WhipConfig {
            token: token.map(str::to_string),
            whep,
        })
    }

    fn assert_cors(r: &Response) {
        assert_eq!(r.header("Access-Control-Allow-Origin"), Some("*"));
        assert_eq!(r.header("Access-Control-Expose-Headers"), Some("Location"));
    }

    #[test]
    fn post_creates_a_resource_and_delete_ends_it() {
        let (mut e, mut s) = (endpoint(None, false), Fake::default());
        let r = e
            .handle(&req("POST", "/whip", &[SDP], "v=0\r\noffer\r\n"), &mut s)
            .unwrap();
        assert_eq!(r.status, 201);
        assert_eq!(r.header("Content-Type"), Some("application/sdp"));
        assert_eq!(r.header("Location"), Some("/whip/s1"));
        assert_eq!(r.body, b"v=0\r\nanswer\r\n");
        assert_cors(&r);
        assert_eq!(
            s.made,
            vec![(WhipKind::Whip, "v=0\r\noffer\r\n".to_string())]
        );
        assert_eq!(
            e.resources().collect::<Vec<_>>(),
            vec![("s1", WhipKind::Whip)]
        );

        let r = e
            .handle(&req("DELETE", "/whip/s1", &[], ""), &mut s)
            .unwrap();
        assert_eq!(r.status, 200);
        assert_cors(&r);
        assert_eq!(s.deleted, vec![(WhipKind::Whip, "s1".to_string())]);
        // Gone now; and a resource is only reachable under the endpoint that made it.
        assert_eq!(
            e.handle(&req("DELETE", "/whip/s1", &[], ""), &mut s)
                .unwrap()
                .status,
            404
        );
        assert_eq!(
            e.handle(&req("DELETE", "/whip/nope", &[], ""), &mut s)
                .unwrap()
                .status,
            404
        );
        assert_eq!(s.deleted.len(), 1);
    }

    #[test]
    fn whep_is_served_only_when_enabled_and_keeps_its_resources_apart() {
        let mut s = Fake::default();
        assert!(endpoint(None, false)
            .handle(&req("POST", "/whep", &[SDP], "v=0"), &mut s)
            .is_none());
        let mut e = endpoint(None, true);
        let r = e
            .handle(&req("POST", "/whep", &[SDP], "v=0"), &mut s)
            .unwrap();
        assert_eq!((r.status, r.header("Location")), (201, Some("/whep/s1")));
        assert_eq!(s.made[0].0, WhipKind::Whep);
        assert_eq!(
            e.handle(&req("DELETE", "/whip/s1", &[], ""), &mut s)
                .unwrap()
                .status,
            404
        );
        assert_eq!(
            e.handle(&req("DELETE", "/whep/s1", &[], ""), &mut s)
                .unwrap()
                .status,
            200
        );
    }

    #[test]
    fn other_paths_are_not_ours() {
        let (mut e, mut s) = (endpoint(None, true), Fake::default());
        for p in ["/", "/metrics", "/whipx", "/wh"] {
            assert!(
                e.handle(&req("POST", p, &[SDP], "v=0"), &mut s).is_none(),
                "{p}"
            );
        }
        assert_eq!(
            e.handle(&req("POST", "/whip/", &[SDP], "v=0"), &mut s)
                .unwrap()
                .status,
            201
        );
    }

    #[test]
    fn preflight_answers_cors_without_credentials() {
        let (mut e, mut s) = (endpoint(Some("T"), true), Fake::default());
        let r = e.handle(&req("OPTIONS", "/whip", &[], ""), &mut s).unwrap();
        assert_eq!(r.status, 204);
        assert_cors(&r);
        assert_eq!(
            r.header("Access-Control-Allow-Methods"),
            Some("OPTIONS, POST")
        );
        let allowed = r.header("Access-Control-Allow-Headers").unwrap();
        assert!(allowed.contains("Authorization") && allowed.contains("Content-Type"));
        assert_eq!(r.header("Accept-Post"), Some("application/sdp"));
        let r = e
            .handle(&req("OPTIONS", "/whep/x", &[], ""), &mut s)
            .unwrap();
        assert_eq!(r.status, 204);
        assert_eq!(
            r.header("Access-Control-Allow-Methods"),
            Some("OPTIONS, DELETE")
        );
    }

    #[test]
    fn a_configured_token_is_required_for_post_and_delete() {
        let (mut e, mut s) = (endpoint(Some("secret"), false), Fake::default());
        for auth in [
            None,
            Some("Bearer wrong"),
            Some("Bearer secre"),
            Some("Basic secret"),
        ] {
            let mut h = vec![SDP];
            if let Some(a) = auth {
                h.push(("Authorization", a));
            }
            let r = e.handle(&req("POST", "/whip", &h, "v=0"), &mut s).unwrap();
            assert_eq!(r.status, 401, "{auth:?}");
            assert_eq!(r.header("WWW-Authenticate"), Some("Bearer"));
            assert_cors(&r);
        }
        assert!(s.made.is_empty());
        let ok = [SDP, ("authorization", "bearer secret")];
        assert_eq!(
            e.handle(&req("POST", "/whip", &ok, "v=0"), &mut s)
                .unwrap()
                .status,
            201
        );
        assert_eq!(
            e.handle(&req("DELETE", "/whip/s1", &[], ""), &mut s)
                .unwrap()
                .status,
            401
        );
        let auth = [("Authorization", "Bearer secret")];
        assert_eq!(
            e.handle(&req("DELETE", "/whip/s1", &auth, ""), &mut s)
                .unwrap()
                .status,
            200
        );
    }

    #[test]
    fn wrong_content_type_methods_bodies_and_failures() {
        let (mut e, mut s) = (endpoint(None, false), Fake::default());
        for ct in [None, Some("text/plain"), Some("application/json")] {
            let h: Vec<_> = ct.map(|c| ("Content-Type", c)).into_iter().collect();
            let r = e.handle(&req("POST", "/whip", &h, "v=0"), &mut s).unwrap();
            assert_eq!(r.status, 415, "{ct:?}");
        }
        let with_params = [("content-type", "Application/SDP; charset=utf-8")];
        assert_eq!(
            e.handle(&req("POST", "/whip", &with_params, "v=0"), &mut s)
                .unwrap()
                .status,
            201
        );
        assert_eq!(
            e.handle(&req("POST", "/whip", &[SDP], " \r\n"), &mut s)
                .unwrap()
                .status,
            400
        );
        let mut bad = req("POST", "/whip", &[SDP], "");
        bad.body = vec![0xff, 0xfe];
        assert_eq!(e.handle(&bad, &mut s).unwrap().status, 400);

        for (m, p, allow) in [
            ("GET", "/whip", "OPTIONS, POST"),
            ("PUT", "/whip", "OPTIONS, POST"),
            ("DELETE", "/whip", "OPTIONS, POST"),
            ("POST", "/whip/s1", "OPTIONS, DELETE"),
            ("GET", "/whip/s1", "OPTIONS, DELETE"),
            ("PATCH", "/whip/s1", "OPTIONS, DELETE"),
        ] {
            let r = e.handle(&req(m, p, &[SDP], "v=0"), &mut s).unwrap();
            assert_eq!((r.status, r.header("Allow")), (405, Some(allow)), "{m} {p}");
            assert_cors(&r);
        }

        s.fail = Some(CreateError::Rejected("no common codec".into()));
        let r = e
            .handle(&req("POST", "/whip", &[SDP], "v=0"), &mut s)
            .unwrap();
        assert_eq!(
            (r.status, r.body.as_slice()),
            (400, &b"no common codec\n"[..])
        );
        s.fail = Some(CreateError::Unavailable("busy".into()));
        assert_eq!(
            e.handle(&req("POST", "/whip", &[SDP], "v=0"), &mut s)
                .unwrap()
                .status,
            503
        );
        assert_eq!(e.resources().count(), 1);
        e.forget("s1");
        assert_eq!(
            e.handle(&req("DELETE", "/whip/s1", &[], ""), &mut s)
                .unwrap()
                .status,
            404
        );
    }

    use proptest::prelude::*;

    proptest! {
        /// Whatever arrives, the answer is one of the endpoint's statuses and carries CORS, and
        /// only a POST with an SDP body and the token reaches the sessions.
        #[test]
        fn any_request_gets_a_cors_answer(
            method in prop_oneof![Just("POST".to_string()), Just("DELETE".to_string()), Just("OPTIONS".to_string()), Just("PATCH".to_string()), "[A-Z]{1,8}"],
            path in prop_oneof![Just("/whip".to_string()), Just("/whep/s1".to_string()), "/wh[a-z/0-9]{0,8}"],
            ctype in prop::option::of(prop_oneof![Just("application/sdp".to_string()), "[a-z/;= ]{0,20}"]),
            auth in prop::option::of(prop_oneof![Just("Bearer t".to_string()), "[ -~]{0,12}"]),
            body in prop::collection::vec(any::<u8>(), 0..40),
        ) {
            let mut e = endpoint(Some("t"), true);
            let mut s = Fake::default();
            let mut h = Vec::new();
            if let Some(c) = ctype { h.push(("Content-Type".to_string(), c)); }
            let authorized = auth.as_deref() == Some("Bearer t");
            if let Some(a) = auth { h.push(("Authorization".to_string(), a)); }
            let r = Request { method: method.clone(), path, headers: h, body, ..Request::default() };
            if let Some(resp) = e.handle(&r, &mut s) {
                prop_assert!([200, 201, 204, 400, 401, 404, 405, 415].contains(&resp.status), "{}", resp.status);
                prop_assert_eq!(resp.header("Access-Control-Allow-Origin"), Some("*"));
                prop_assert!(s.made.is_empty() || (authorized && method == "POST"));
            }
        }
    }
}
