//! Building outgoing SIP messages as bytes.
//!
//! Responses copy the request's raw Via, From, To, Call-ID and CSeq text ([`EchoHeaders`]); only
//! our To tag is added. Requests are assembled from text the caller (usually a dialog) supplies.
//! Every message gets a reason phrase (for responses) and a Content-Length.

use super::message::{EchoHeaders, Method, Rejection};
use super::rng::SipRng;

/// The standard reason phrase for a status code (RFC 3261 §21 and common extensions).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        380 => "Alternative Service",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        421 => "Extension Required",
        423 => "Interval Too Brief",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        485 => "Ambiguous",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        493 => "Undecipherable",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        _ => match status / 100 {
            1 => "Provisional",
            2 => "Success",
            3 => "Redirection",
            4 => "Client Error",
            5 => "Server Error",
            _ => "Global Failure",
        },
    }
}

// The free functions below draw once from a fresh OS-seeded `SipRng`, so the formats of tags,
// branches and Call-IDs are written once, in `rng.rs`.

/// A new Via branch: the RFC 3261 magic cookie followed by random characters.
#[cfg(any(test, feature = "_internals"))]
pub fn new_branch() -> String {
    SipRng::from_os().branch()
}

/// A new random tag for From/To.
#[cfg(any(test, feature = "_internals"))]
pub fn new_tag() -> String {
    SipRng::from_os().tag()
}

/// A new Call-ID, `random@host`.
pub fn new_call_id(host: &str) -> String {
    SipRng::from_os().call_id(host)
}

/// Header values supplied by the application must not be able to start new lines.
fn one_line(value: &str) -> String {
    value.replace(['\r', '\n'], " ")
}

fn finish(
    mut head: String,
    extra: &[(String, String)],
    body: Option<&(String, Vec<u8>)>,
) -> Vec<u8> {
    for (name, value) in extra {
        head.push_str(&one_line(name));
        head.push_str(": ");
        head.push_str(&one_line(value));
        head.push_str("\r\n");
    }
    match body {
        Some((content_type, bytes)) => {
            head.push_str("Content-Type: ");
            head.push_str(&one_line(content_type));
            head.push_str("\r\n");
            head.push_str(&format!("Content-Length: {}\r\n\r\n", bytes.len()));
            let mut out = head.into_bytes();
            out.extend_from_slice(bytes);
            out
        }
        None => {
            head.push_str("Content-Length: 0\r\n\r\n");
            head.into_bytes()
        }
    }
}

/// A `Retry-After` value: `120`, or `120 (overloaded)` with a comment.
pub fn retry_after_value(seconds: u32, comment: Option<&str>) -> String {
    let comment: String = comment
        .unwrap_or_default()
        .chars()
        .filter(|c| !matches!(c, '(' | ')' | '\\') && !c.is_control())
        .collect();
    let comment = comment.trim();
    if comment.is_empty() {
        seconds.to_string()
    } else {
        format!("{seconds} ({comment})")
    }
}

/// Builds a response to a request from the request's raw headers.
#[derive(Debug, Clone)]
pub struct ResponseBuilder<'a> {
    echo: &'a EchoHeaders,
    status: u16,
    reason: Option<String>,
    to_tag: Option<String>,
    extra: Vec<(String, String)>,
    body: Option<(String, Vec<u8>)>,
}

impl<'a> ResponseBuilder<'a> {
    /// A response with `status` and its standard reason phrase.
    pub fn new(echo: &'a EchoHeaders, status: u16) -> Self {
        ResponseBuilder {
            echo,
            status,
            reason: None,
            to_tag: None,
            extra: Vec::new(),
            body: None,
        }
    }

    /// The answer to a request our parser refused but can address: its status built from the
    /// request's raw headers (`505` also names the version we speak). Add our To tag and
    /// `Server` as for any response.
    pub fn rejection(r: &'a Rejection) -> Self {
        let b = ResponseBuilder::new(&r.echo, r.status);
        if r.status == 505 {
            b.header("Supported-Version", "SIP/2.0")
        } else {
            b
        }
    }

    /// Replaces the reason phrase (an empty one falls back to the standard phrase).
    #[cfg(any(test, feature = "_internals"))]
    pub fn reason(mut self, reason: &str) -> Self {
        let reason = one_line(reason).trim().to_string();
        self.reason = (!reason.is_empty()).then_some(reason);
        self
    }

    /// Our tag, appended to the request's To when it has none.
    // "To" is the header's name, not a conversion: the builder takes `self` like its siblings.
    #[allow(clippy::wrong_self_convention)]
    pub fn to_tag(mut self, tag: &str) -> Self {
        self.to_tag = Some(tag.to_string());
        self
    }

    /// `Contact: <uri>`.
    pub fn contact(self, uri: &str) -> Self {
        let value = format!("<{uri}>");
        self.header("Contact", &value)
    }

    /// `Server: ...`.
    pub fn server(self, product: &str) -> Self {
        self.header("Server", product)
    }

    /// `Retry-After: seconds [(comment)]` (RFC 3261 §20.33), for a 503 or 480 that tells the
    /// client when to come back. Parentheses and backslashes are dropped from the comment so it
    /// stays one well-formed comment.
    #[cfg(any(test, feature = "_internals"))]
    pub fn retry_after(self, seconds: u32, comment: Option<&str>) -> Self {
        let value = retry_after_value(seconds, comment);
        self.header("Retry-After", &value)
    }

    /// `WWW-Authenticate: ...` (a digest challenge).
    #[cfg(any(test, feature = "_internals"))]
    pub fn www_authenticate(self, challenge: &str) -> Self {
        self.header("WWW-Authenticate", challenge)
    }

    /// Any other header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.extra.push((name.to_string(), value.to_string()));
        self
    }

    /// A body with its Content-Type.
    pub fn body(mut self, content_type: &str, body: &[u8]) -> Self {
        self.body = Some((content_type.to_string(), body.to_vec()));
        self
    }

    /// The response datagram.
    pub fn build(self) -> Vec<u8> {
        let reason = self
            .reason
            .clone()
            .unwrap_or_else(|| reason_phrase(self.status).to_string());
        let mut head = String::with_capacity(512);
        head.push_str(&format!("SIP/2.0 {} {reason}\r\n", self.status));
        for via in &self.echo.via {
            head.push_str("Via: ");
            head.push_str(via);
            head.push_str("\r\n");
        }
        if let Some(from) = &self.echo.from {
            head.push_str("From: ");
            head.push_str(from);
            head.push_str("\r\n");
        }
        if let Some(to) = &self.echo.to {
            head.push_str("To: ");
            head.push_str(to);
            if let (false, Some(tag)) = (self.echo.to_has_tag, &self.to_tag) {
                head.push_str(";tag=");
                head.push_str(&one_line(tag));
            }
            head.push_str("\r\n");
        }
        if let Some(call_id) = &self.echo.call_id {
            head.push_str("Call-ID: ");
            head.push_str(call_id);
            head.push_str("\r\n");
        }
        if let Some(cseq) = &self.echo.cseq {
            head.push_str("CSeq: ");
            head.push_str(cseq);
            head.push_str("\r\n");
        }
        finish(head, &self.extra, self.body.as_ref())
    }
}

/// Builds a request (ours as UAC: INVITE, ACK, BYE, OPTIONS, CANCEL).
#[derive(Debug, Clone)]
pub struct RequestBuilder {
    method: Method,
    uri: String,
    via: Vec<String>,
    from: String,
    to: String,
    call_id: String,
    cseq: u32,
    max_forwards: u8,
    routes: Vec<String>,
    extra: Vec<(String, String)>,
    body: Option<(String, Vec<u8>)>,
}

impl RequestBuilder {
    /// A request for `method` to `request_uri`. From, To, Call-ID, CSeq and one Via must be
    /// set before building.
    pub fn new(method: Method, request_uri: &str) -> Self {
        RequestBuilder {
            method,
            uri: request_uri.to_string(),
            via: Vec::new(),
            from: String::new(),
            to: String::new(),
            call_id: String::new(),
            cseq: 1,
            max_forwards: 70,
            routes: Vec::new(),
            extra: Vec::new(),
            body: None,
        }
    }

    /// Adds a Via value, e.g. `SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK...;rport`.
    pub fn via(mut self, value: &str) -> Self {
        self.via.push(value.to_string());
        self
    }

    /// The full From value including `;tag=`.
    pub fn from(mut self, value: &str) -> Self {
        self.from = value.to_string();
        self
    }

    /// The full To value (with the remote tag inside a dialog).
    pub fn to(mut self, value: &str) -> Self {
        self.to = value.to_string();
        self
    }

    /// The Call-ID.
    pub fn call_id(mut self, value: &str) -> Self {
        self.call_id = value.to_string();
        self
    }

    /// The CSeq number (the method is the request's).
    pub fn cseq(mut self, number: u32) -> Self {
        self.cseq = number;
        self
    }

    /// Max-Forwards (70 unless set).
    #[cfg(any(test, feature = "_internals"))]
    pub fn max_forwards(mut self, hops: u8) -> Self {
        self.max_forwards = hops;
        self
    }

    /// Adds a Route value (`<sip:proxy;lr>`), in order.
    pub fn route(mut self, value: &str) -> Self {
        self.routes.push(value.to_string());
        self
    }

    /// `Contact: <uri>`.
    pub fn contact(self, uri: &str) -> Self {
        let value = format!("<{uri}>");
        self.header("Contact", &value)
    }

    /// Any other header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.extra.push((name.to_string(), value.to_string()));
        self
    }

    /// A body with its Content-Type.
    pub fn body(mut self, content_type: &str, body: &[u8]) -> Self {
        self.body = Some((content_type.to_string(), body.to_vec()));
        self
    }

    /// The request datagram.
    pub fn build(self) -> Vec<u8> {
        let mut head = String::with_capacity(512);
        head.push_str(&format!(
            "{} {} SIP/2.0\r\n",
            self.method,
            one_line(&self.uri)
        ));
        for via in &self.via {
            head.push_str(&format!("Via: {}\r\n", one_line(via)));
        }
        head.push_str(&format!("Max-Forwards: {}\r\n", self.max_forwards));
        for route in &self.routes {
            head.push_str(&format!("Route: {}\r\n", one_line(route)));
        }
        head.push_str(&format!("From: {}\r\n", one_line(&self.from)));
        head.push_str(&format!("To: {}\r\n", one_line(&self.to)));
        head.push_str(&format!("Call-ID: {}\r\n", one_line(&self.call_id)));
        head.push_str(&format!("CSeq: {} {}\r\n", self.cseq, self.method));
        finish(head, &self.extra, self.body.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::parse;

    const INVITE: &[u8] = b"INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.example.com;branch=z9hG4bK776asdhds , SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx\r\n\
Via: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKy;received=10.0.0.3\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@example.com>\r\n\
From: \"Al%41\" <sip:alice@example.com;transport=udp>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.example.com\r\n\
CSeq:   314159    INVITE\r\n\
Contact: <sip:alice@pc33.example.com>\r\n\
Content-Length: 0\r\n\r\n";

    #[test]
    fn response_copies_raw_headers_and_adds_tag() {
        let req = parse(INVITE).unwrap();
        let resp = ResponseBuilder::new(req.echo(), 200)
            .to_tag("abc")
            .contact("sip:us@192.0.2.9:5060")
            .body("application/sdp", b"v=0\r\n")
            .build();
        let text = String::from_utf8(resp.clone()).unwrap();
        assert!(text.starts_with("SIP/2.0 200 OK\r\n"));
        assert!(text.contains(
            "Via: SIP/2.0/UDP pc33.example.com;branch=z9hG4bK776asdhds , SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx\r\n"
        ));
        assert!(text
            .contains("From: \"Al%41\" <sip:alice@example.com;transport=udp>;tag=1928301774\r\n"));
        assert!(text.contains("To: Bob <sip:bob@example.com>;tag=abc\r\n"));
        assert!(text.contains("CSeq: 314159    INVITE\r\n"));
        assert!(text.ends_with("Content-Length: 5\r\n\r\nv=0\r\n"));
        let back = parse(&resp).unwrap();
        assert_eq!(back.status(), Some(200));
        assert_eq!(back.vias().len(), 3);
        assert_eq!(back.to().tag(), Some("abc"));
    }

    #[test]
    fn retry_after_is_well_formed() {
        assert_eq!(retry_after_value(120, None), "120");
        assert_eq!(retry_after_value(5, Some(" busy ")), "5 (busy)");
        assert_eq!(
            retry_after_value(5, Some("a) (b\\\r\nInjected: x")),
            "5 (a bInjected: x)"
        );
        let req = parse(INVITE).unwrap();
        let resp = ResponseBuilder::new(req.echo(), 503)
            .retry_after(30, Some("overloaded"))
            .build();
        let back = parse(&resp).unwrap();
        assert_eq!(back.header("Retry-After"), Some("30 (overloaded)"));
    }

    #[test]
    fn existing_to_tag_is_kept() {
        let mut echo = parse(INVITE).unwrap().echo().clone();
        echo.to = Some("<sip:bob@example.com>;tag=theirs".into());
        echo.to_has_tag = true;
        let text =
            String::from_utf8(ResponseBuilder::new(&echo, 481).to_tag("ours").build()).unwrap();
        assert!(text.contains("To: <sip:bob@example.com>;tag=theirs\r\n"));
        assert!(text.starts_with("SIP/2.0 481 Call/Transaction Does Not Exist\r\n"));
    }

    #[test]
    fn request_builder_round_trips() {
        let bytes = RequestBuilder::new(Method::Bye, "sip:alice@pc33.example.com")
            .via(&format!(
                "SIP/2.0/UDP 192.0.2.9:5060;branch={};rport",
                new_branch()
            ))
            .from("<sip:bob@example.com>;tag=abc")
            .to("\"Al\" <sip:alice@example.com>;tag=1928301774")
            .call_id("a84b4c76e66710@pc33.example.com")
            .cseq(7)
            .route("<sip:p1.example.com;lr>")
            .header("X-Evil", "a\r\nInjected: yes")
            .build();
        let msg = parse(&bytes).unwrap();
        assert_eq!(msg.method(), &Method::Bye);
        assert_eq!(msg.cseq().number, 7);
        assert!(msg.top_via().has_rfc3261_branch());
        assert_eq!(msg.routes().len(), 1);
        assert!(msg.header("Injected").is_none());
        assert_eq!(msg.max_forwards(), Some(70));
    }
}
