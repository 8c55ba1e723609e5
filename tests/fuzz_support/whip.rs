//! HTTP requests as the engine's server reads them, through the WHIP/WHEP endpoint
//! (`http::parse_head`, `webrtc::WhipEndpoint`): arbitrary bytes are refused or answered, never
//! a panic; every answer is one of the endpoint's statuses, carries CORS, and is written as a
//! response our own head check reads back; only an authorized POST with an SDP body reaches
//! the sessions.

use roomkit_media::http::{parse_head, Request};
use roomkit_media::webrtc::{CreateError, WhipConfig, WhipEndpoint, WhipKind, WhipSessions};

/// Sessions that take every other offer and count what they were asked.
#[derive(Default)]
struct Sessions {
    made: usize,
    asked: usize,
}

impl WhipSessions for Sessions {
    fn create(&mut self, _: WhipKind, offer: &str) -> Result<(String, String), CreateError> {
        self.asked += 1;
        if offer.len().is_multiple_of(2) {
            self.made += 1;
            Ok((format!("s{}", self.made), "v=0\r\n".into()))
        } else {
            Err(CreateError::Rejected("odd".into()))
        }
    }
    fn delete(&mut self, _: WhipKind, _: &str) {}
}

/// The limits of `engine/http.rs`, small enough for the fuzzer to cross them.
const MAX_HEAD: usize = 2048;
const MAX_BODY: usize = 1024;

/// One connection's bytes; several requests in a row against one endpoint (the resources made
/// by one are there for the next).
pub fn requests(data: &[u8]) {
    let mut endpoint = WhipEndpoint::new(WhipConfig {
        token: Some("t0ken".into()),
        whep: data.first().is_some_and(|b| b & 1 == 1),
    });
    let mut sessions = Sessions::default();
    let mut rest = data.get(1..).unwrap_or_default();
    for _ in 0..8 {
        let head = match parse_head(rest, MAX_HEAD, MAX_BODY) {
            Ok(Some(h)) => h,
            Ok(None) => return,
            Err(e) => {
                check_written(&e.response().to_bytes());
                return;
            }
        };
        assert!(head.head_len <= rest.len() && head.head_len <= MAX_HEAD);
        assert!(head.body_len <= MAX_BODY);
        let body_end = (head.head_len + head.body_len).min(rest.len());
        let request = Request {
            body: rest[head.head_len..body_end].to_vec(),
            ..head.request
        };
        let asked = sessions.asked;
        if let Some(r) = endpoint.handle(&request, &mut sessions) {
            assert!(
                [200, 201, 204, 400, 401, 404, 405, 415, 503].contains(&r.status),
                "{}",
                r.status
            );
            assert_eq!(r.header("Access-Control-Allow-Origin"), Some("*"));
            if sessions.asked > asked {
                assert_eq!(request.method, "POST");
                // The scheme is case-insensitive (RFC 9110 §11.1), the token exact.
                let auth = request.header("authorization").unwrap_or_default();
                let (scheme, token) = auth.split_once(' ').unwrap_or_default();
                assert!(scheme.eq_ignore_ascii_case("bearer"), "{auth}");
                assert_eq!(token.trim(), "t0ken", "{auth}");
            }
            check_written(&r.to_bytes());
        }
        rest = &rest[body_end..];
    }
}

/// A response we write starts with a status line and has its head's end.
fn check_written(bytes: &[u8]) {
    assert!(bytes.starts_with(b"HTTP/1.1 "));
    assert!(bytes.windows(4).any(|w| w == b"\r\n\r\n"));
}
