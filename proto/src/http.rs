//! The bytes of HTTP/1.1 that the engine's small HTTP server (metrics scrapes, WHIP/WHEP)
//! needs, pure: a request head parsed from what arrived so far, with its body length bounded,
//! and a response written out. No socket here; `engine/http.rs` reads and writes them.
//!
//! Deliberately small: one request per connection (the server answers `Connection: close`),
//! bodies only by `Content-Length` (a chunked body gets 411), no header folding. Every length
//! comes from the network and is checked before it is used.

// A pure layer: no `unsafe`, no socket.
#![forbid(unsafe_code)]

/// A parsed request: its head, and its body once the server has read it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, ... as sent (methods are case-sensitive).
    pub method: String,
    /// The path of the request target, without its query.
    pub path: String,
    /// The query after `?` (empty when none).
    pub query: String,
    /// The header fields in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body (`Content-Length` bytes).
    pub body: Vec<u8>,
    /// Where it came from (set by the server that read it).
    pub peer: Option<std::net::SocketAddr>,
}

impl Request {
    /// The first header field of that name (case-insensitive), trimmed.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why a request head is refused; [`HeadError::response`] is the answer to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadError {
    /// No blank line within the head limit.
    TooLarge,
    /// Not an HTTP/1.x request line or header.
    Malformed,
    /// `Content-Length` above the body limit.
    BodyTooLarge,
    /// A body without `Content-Length` (e.g. chunked).
    LengthRequired,
}

impl HeadError {
    /// The error answer for it.
    pub fn response(self) -> Response {
        let (status, text) = match self {
            HeadError::TooLarge => (431, "request head too large\n"),
            HeadError::Malformed => (400, "bad request\n"),
            HeadError::BodyTooLarge => (413, "request body too large\n"),
            HeadError::LengthRequired => (411, "Content-Length required\n"),
        };
        Response::text(status, text)
    }
}

/// A request head found in `buf`: the request (body still empty), where the head ends, and how
/// many body bytes follow it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// The request, without its body.
    pub request: Request,
    /// The length of the head, its blank line included.
    pub head_len: usize,
    /// The declared body length (at most the `max_body` it was parsed with).
    pub body_len: usize,
}

/// Parses the request head at the start of `buf` (what has arrived so far). `Ok(None)`: the head
/// is not complete yet and `buf` is below `max_head`, read more. Bodies longer than `max_body`
/// are refused from their `Content-Length` before any of them is read.
pub fn parse_head(buf: &[u8], max_head: usize, max_body: usize) -> Result<Option<Head>, HeadError> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() >= max_head {
            Err(HeadError::TooLarge)
        } else {
            Ok(None)
        };
    };
    let head_len = end + 4;
    if head_len > max_head {
        return Err(HeadError::TooLarge);
    }
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| HeadError::Malformed)?;
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let (method, target, version) = (
        first.next().unwrap_or(""),
        first.next().unwrap_or(""),
        first.next().unwrap_or(""),
    );
    let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphabetic());
    if !token(method) || !target.starts_with('/') || !version.starts_with("HTTP/1.") {
        return Err(HeadError::Malformed);
    }
    let mut headers = Vec::new();
    for line in lines {
        let (k, v) = line.split_once(':').ok_or(HeadError::Malformed)?;
        if k.is_empty() || k.contains([' ', '\t']) {
            return Err(HeadError::Malformed);
        }
        headers.push((k.to_string(), v.trim().to_string()));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let request = Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers,
        body: Vec::new(),
        peer: None,
    };
    if request.header("transfer-encoding").is_some() {
        return Err(HeadError::LengthRequired);
    }
    let body_len = match request.header("content-length") {
        None => 0,
        Some(v) => {
            let n: u64 = v.parse().map_err(|_| HeadError::Malformed)?;
            if n > max_body as u64 {
                return Err(HeadError::BodyTooLarge);
            }
            n as usize
        }
    };
    Ok(Some(Head {
        request,
        head_len,
        body_len,
    }))
}

/// An answer: status, header fields, body. `Content-Length` and `Connection: close` are added
/// when it is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header fields other than `Content-Length` and `Connection`.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A response with a body of that content type.
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: body.into(),
        }
    }

    /// A plain-text response.
    pub fn text(status: u16, body: &str) -> Response {
        Response::new(status, "text/plain; charset=utf-8", body)
    }

    /// A response with no body.
    pub fn empty(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header field.
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The first header field of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The response as sent on the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        for (k, v) in &self.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.body.len()
        ));
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// The reason phrase of the status codes this crate answers with.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_is_parsed_with_its_body_length() {
        let raw = b"POST /whip?x=1 HTTP/1.1\r\nHost: a\r\ncontent-type: application/sdp\r\nContent-Length: 5\r\n\r\nv=0\r\n";
        let h = parse_head(raw, 1024, 64).unwrap().unwrap();
        assert_eq!(h.request.method, "POST");
        assert_eq!(h.request.path, "/whip");
        assert_eq!(h.request.query, "x=1");
        assert_eq!(h.request.header("Content-Type"), Some("application/sdp"));
        assert_eq!(h.body_len, 5);
        assert_eq!(&raw[h.head_len..], b"v=0\r\n");
    }

    #[test]
    fn incomplete_oversized_and_hostile_heads() {
        assert_eq!(parse_head(b"GET /metrics HTTP/1.1\r\n", 1024, 0), Ok(None));
        assert_eq!(parse_head(&[b'a'; 100], 100, 0), Err(HeadError::TooLarge));
        let long = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(200));
        assert_eq!(
            parse_head(long.as_bytes(), 100, 0),
            Err(HeadError::TooLarge)
        );
        for bad in [
            &b"\x00\x01\x02\r\n\r\n"[..],
            b"GET metrics HTTP/1.1\r\n\r\n",
            b"GET / SIP/2.0\r\n\r\n",
            b"GET / HTTP/1.1\r\nno colon\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: \xff\r\n\r\n",
        ] {
            assert_eq!(
                parse_head(bad, 1024, 64),
                Err(HeadError::Malformed),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse_head(b"POST / HTTP/1.1\r\nContent-Length: 65\r\n\r\n", 1024, 64),
            Err(HeadError::BodyTooLarge)
        );
        assert_eq!(
            parse_head(
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                1024,
                64
            ),
            Err(HeadError::LengthRequired)
        );
        assert_eq!(HeadError::TooLarge.response().status, 431);
    }

    #[test]
    fn a_response_is_written_with_its_length() {
        let r = Response::new(201, "application/sdp", "v=0\r\n").with_header("Location", "/whip/1");
        let s = String::from_utf8(r.to_bytes()).unwrap();
        assert_eq!(
            s,
            "HTTP/1.1 201 Created\r\nContent-Type: application/sdp\r\nLocation: /whip/1\r\nContent-Length: 5\r\nConnection: close\r\n\r\nv=0\r\n"
        );
        assert!(String::from_utf8(Response::empty(204).to_bytes())
            .unwrap()
            .starts_with("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n"));
    }

    use proptest::prelude::*;

    proptest! {
        /// Arbitrary bytes never panic, and what is reported stays inside the buffer and the
        /// limits.
        #[test]
        fn arbitrary_bytes_are_bounded(buf in prop::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(Some(h)) = parse_head(&buf, 256, 64) {
                prop_assert!(h.head_len <= buf.len() && h.head_len <= 256);
                prop_assert!(h.body_len <= 64);
            }
        }

        /// A request parses back whole, and every shorter prefix of its head asks for more.
        #[test]
        fn a_request_parses_back_from_any_prefix(
            method in "[A-Z]{3,7}",
            path in "/[a-z0-9/]{0,20}",
            headers in prop::collection::vec(("[A-Z][a-z-]{0,10}", "[!-~][ -~]{0,30}[!-~]"), 0..5),
            body in prop::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut raw = format!("{method} {path} HTTP/1.1\r\n");
            let headers: Vec<_> = headers
                .into_iter()
                .filter(|(k, _)| !k.eq_ignore_ascii_case("content-length")
                    && !k.eq_ignore_ascii_case("transfer-encoding"))
                .collect();
            for (k, v) in &headers {
                raw.push_str(&format!("{k}: {v}\r\n"));
            }
            raw.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
            let mut bytes = raw.clone().into_bytes();
            bytes.extend_from_slice(&body);
            for cut in 0..raw.len() {
                prop_assert_eq!(parse_head(&bytes[..cut], 4096, 64), Ok(None));
            }
            let h = parse_head(&bytes, 4096, 64).unwrap().unwrap();
            prop_assert_eq!(h.head_len, raw.len());
            prop_assert_eq!(h.body_len, body.len());
            prop_assert_eq!(&h.request.method, &method);
            prop_assert_eq!(&h.request.path, &path);
            for (k, v) in &headers {
                prop_assert!(h.request.headers.contains(&(k.clone(), v.clone())));
            }
        }
    }
}
