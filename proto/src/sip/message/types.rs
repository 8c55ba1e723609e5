//! What a SIP message is once it has passed every check: the method, URIs, addresses, Via
//! values, header fields and the message itself, with typed accessors over raw text kept for
//! echoing.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use ezk_sip_types::uri::{SipUri, SipUriUserPart};

use super::parse::{parse, request_uri};
use crate::sip::check;
use crate::sip::syntax::{self, find_param, Param, RawNameAddr};

/// A SIP method. Known methods have their own variant; the token must match exactly
/// (methods are case-sensitive, and `INVITEX` is not `INVITE`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// INVITE
    Invite,
    /// ACK
    Ack,
    /// BYE
    Bye,
    /// CANCEL
    Cancel,
    /// OPTIONS
    Options,
    /// REGISTER
    Register,
    /// INFO
    Info,
    /// UPDATE
    Update,
    /// PRACK
    Prack,
    /// MESSAGE
    Message,
    /// REFER
    Refer,
    /// NOTIFY
    Notify,
    /// SUBSCRIBE
    Subscribe,
    /// PUBLISH
    Publish,
    /// Any other token (an extension method; a UAS answers 501 or 405).
    Other(String),
}

impl Method {
    /// Maps a method token to a `Method`, comparing exactly.
    pub fn from_token(token: &str) -> Method {
        match token {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            "REGISTER" => Method::Register,
            "INFO" => Method::Info,
            "UPDATE" => Method::Update,
            "PRACK" => Method::Prack,
            "MESSAGE" => Method::Message,
            "REFER" => Method::Refer,
            "NOTIFY" => Method::Notify,
            "SUBSCRIBE" => Method::Subscribe,
            "PUBLISH" => Method::Publish,
            other => Method::Other(other.to_string()),
        }
    }

    /// The method token as it goes on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Info => "INFO",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Message => "MESSAGE",
            Method::Refer => "REFER",
            Method::Notify => "NOTIFY",
            Method::Subscribe => "SUBSCRIBE",
            Method::Publish => "PUBLISH",
            Method::Other(s) => s,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A URI as written, typed by `ezk-sip-types` when its scheme is `sip` or `sips`. Other schemes
/// (`tel:`, `urn:`, ...) are kept as raw text.
#[derive(Debug, Clone)]
pub struct Uri {
    raw: String,
    sip: Option<SipUri>,
}

impl Uri {
    /// Parses a URI. A `sip`/`sips` URI must be well-formed; any other scheme only needs to
    /// look like `scheme:rest`.
    pub fn parse(raw: &str) -> Result<Uri, &'static str> {
        let scheme = syntax::uri_scheme(raw).ok_or("URI without a scheme")?;
        let sip = if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
            Some(SipUri::from_str(raw).map_err(|_| "malformed SIP URI")?)
        } else {
            None
        };
        Ok(Uri {
            raw: raw.to_string(),
            sip,
        })
    }

    /// The URI exactly as received.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The scheme (`sip`, `sips`, `tel`, ...), as written.
    pub fn scheme(&self) -> &str {
        self.raw.split(':').next().unwrap_or_default()
    }

    /// True for `sip:` and `sips:` URIs.
    pub fn is_sip(&self) -> bool {
        self.sip.is_some()
    }

    /// The typed SIP URI, when the scheme is `sip`/`sips`.
    #[cfg(any(test, feature = "_internals"))]
    pub fn sip(&self) -> Option<&SipUri> {
        self.sip.as_ref()
    }

    /// The user part: percent-decoded for SIP URIs, the subscriber number for `tel:`.
    pub fn user(&self) -> Option<String> {
        match &self.sip {
            Some(uri) => match &uri.user_part {
                SipUriUserPart::Empty => None,
                SipUriUserPart::User(u) => Some(u.to_string()),
                SipUriUserPart::UserPw(up) => Some(up.user.to_string()),
            },
            None => {
                let rest = self.raw.split_once(':')?.1;
                let number = rest.split(';').next().unwrap_or_default();
                (!number.is_empty()).then(|| number.to_string())
            }
        }
    }

    /// The host of a SIP URI (IPv6 in brackets).
    pub fn host(&self) -> Option<String> {
        self.sip.as_ref().map(|u| u.host_port.host.to_string())
    }

    /// The port of a SIP URI, when given.
    pub fn port(&self) -> Option<u16> {
        self.sip.as_ref().and_then(|u| u.host_port.port)
    }

    /// A URI parameter of a SIP URI: `Some(None)` for a flag such as `lr`, `Some(Some(v))` for
    /// `name=v`.
    pub fn param(&self, name: &str) -> Option<Option<String>> {
        let uri = self.sip.as_ref()?;
        uri.uri_params
            .get(name)
            .map(|p| p.value.as_ref().map(|v| v.to_string()))
    }

    /// This URI as the Request-URI of a request we send to it, e.g. a dialog's remote target
    /// taken from a Contact (RFC 3261 §12.2.1.1). RFC 3261 §19.1.5 and the table of §19.1.1
    /// allow neither headers nor a `method` parameter in a Request-URI, so both are removed;
    /// every other part is kept as written. The result passes the same check as a Request-URI
    /// we receive; a URI that cannot (not `sip`/`sips`, malformed) gives the reason.
    pub fn request_target(&self) -> Result<Uri, &'static str> {
        if self.sip.is_none() {
            return Err("not a sip or sips URI");
        }
        // After the scheme and the userinfo (which ends at the only unescaped '@'), the host,
        // port and parameters hold neither '?' nor '@': the first '?' starts the headers.
        let colon = self.raw.find(':').map_or(0, |i| i + 1);
        let host_at = self.raw[colon..].find('@').map_or(colon, |i| colon + i + 1);
        let end = self.raw[host_at..]
            .find('?')
            .map_or(self.raw.len(), |i| host_at + i);
        let mut pieces = self.raw[host_at..end].split(';');
        let mut text = String::with_capacity(end);
        text.push_str(&self.raw[..host_at]);
        text.push_str(pieces.next().unwrap_or_default());
        for param in pieces {
            let name = param.split('=').next().unwrap_or_default();
            if !name.eq_ignore_ascii_case("method") {
                text.push(';');
                text.push_str(param);
            }
        }
        request_uri(&text).map_err(|f| f.reason)
    }

    /// True when a SIP URI carries `?header=value` parts.
    pub fn has_headers(&self) -> bool {
        self.sip
            .as_ref()
            .is_some_and(|u| !u.header_params.is_empty())
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// A From/To/Contact/Route value: optional display name, URI and header parameters.
#[derive(Debug, Clone)]
pub struct NameAddr {
    raw: String,
    display_name: Option<String>,
    uri: Uri,
    params: Vec<Param>,
}

impl NameAddr {
    /// Parses one name-addr or addr-spec value with the strict rules (check 5).
    pub fn parse(raw: &str) -> Result<NameAddr, &'static str> {
        let RawNameAddr {
            display_name,
            uri,
            params,
        } = syntax::parse_name_addr(raw)?;
        let uri = Uri::parse(uri)?;
        if let Some(exp) = find_param(&params, "expires").and_then(|p| p.value.as_deref()) {
            check::expires(exp)?;
        }
        Ok(NameAddr {
            raw: raw.trim().to_string(),
            display_name,
            uri,
            params,
        })
    }

    /// The value as received (unfolded).
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// The display name, unquoted and unescaped.
    pub fn display_name(&self) -> Option<&str> {
        self.display_name.as_deref()
    }

    /// The address.
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// The `tag` parameter (never empty).
    pub fn tag(&self) -> Option<&str> {
        syntax::tag(&self.params)
    }

    /// A header parameter: `Some(None)` for a flag, `Some(Some(v))` for `name=v`.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        find_param(&self.params, name).map(|p| p.value.as_deref())
    }

    /// All header parameters in order.
    #[cfg(any(test, feature = "_internals"))]
    pub fn params(&self) -> &[Param] {
        &self.params
    }
}

/// One Via value.
#[derive(Debug, Clone)]
pub struct Via {
    pub(super) raw: String,
    // Read only by its accessor, which exists for tests and `_internals`.
    #[cfg_attr(not(any(test, feature = "_internals")), allow(dead_code))]
    pub(super) transport: String,
    pub(super) host: String,
    pub(super) port: Option<u16>,
    pub(super) params: Vec<Param>,
}

impl Via {
    /// The value as received.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// The transport (`UDP`, `TCP`, `TLS`, or any token).
    #[cfg(any(test, feature = "_internals"))]
    pub fn transport(&self) -> &str {
        &self.transport
    }

    /// The sent-by host (IPv6 in brackets).
    #[cfg(any(test, feature = "_internals"))]
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The sent-by port, when given.
    #[cfg(any(test, feature = "_internals"))]
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// `host[:port]` as sent.
    pub fn sent_by(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.clone(),
        }
    }

    /// The `branch` parameter.
    pub fn branch(&self) -> Option<&str> {
        self.param("branch").flatten()
    }

    /// True when the branch carries the RFC 3261 magic cookie `z9hG4bK`.
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch()
            .is_some_and(|b| b.starts_with("z9hG4bK") && b.len() > 7)
    }

    /// The `received` parameter.
    #[cfg(any(test, feature = "_internals"))]
    pub fn received(&self) -> Option<&str> {
        self.param("received").flatten()
    }

    /// The `rport` parameter: `Some(None)` when the client asked for it, `Some(Some(p))` when a
    /// proxy filled it in.
    #[cfg(any(test, feature = "_internals"))]
    pub fn rport(&self) -> Option<Option<u16>> {
        self.param("rport")
            .map(|v| v.and_then(|p| p.parse::<u16>().ok()))
    }

    /// A Via parameter.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        find_param(&self.params, name).map(|p| p.value.as_deref())
    }
}

/// The CSeq header: sequence number and method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    /// Sequence number (below 2^31).
    pub number: u32,
    /// Method the sequence number belongs to.
    pub method: Method,
}

/// One header line: its name as written, the lowercase full name (compact forms expanded) and
/// the unfolded value.
#[derive(Debug, Clone)]
pub struct HeaderField {
    pub(super) name: String,
    pub(super) canonical: Cow<'static, str>,
    pub(super) value: String,
}

impl HeaderField {
    /// The name as it appeared in the message.
    #[cfg(any(test, feature = "_internals"))]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The lowercase full name (`v` becomes `via`).
    #[cfg(any(test, feature = "_internals"))]
    pub fn canonical_name(&self) -> &str {
        &self.canonical
    }

    /// The value with line folding replaced by single spaces and outer whitespace trimmed.
    #[cfg(any(test, feature = "_internals"))]
    pub fn value(&self) -> &str {
        &self.value
    }
}

/// The raw header text a response has to copy from its request (RFC 3261 §8.2.6.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EchoHeaders {
    /// Every Via header value, in order, as received (one entry per Via line).
    pub via: Vec<String>,
    /// The From value.
    pub from: Option<String>,
    /// The To value.
    pub to: Option<String>,
    /// The Call-ID value.
    pub call_id: Option<String>,
    /// The CSeq value.
    pub cseq: Option<String>,
    /// Whether the To value already carries a `tag` parameter.
    pub to_has_tag: bool,
}

impl EchoHeaders {
    /// True when a copied value holds a CR (it can only be a bare one: line ends are gone).
    pub(super) fn contains_bare_cr(&self) -> bool {
        self.via
            .iter()
            .chain(&self.from)
            .chain(&self.to)
            .chain(&self.call_id)
            .chain(&self.cseq)
            .any(|v| v.contains('\r'))
    }
}

/// Start-line-specific content.
#[derive(Debug, Clone)]
pub enum MessageKind {
    /// A request with its method and Request-URI.
    Request {
        /// The method.
        method: Method,
        /// The Request-URI (always `sip`/`sips`: other schemes are refused with 416).
        uri: Uri,
    },
    /// A response with its status code and reason phrase.
    Response {
        /// Status code, 100..=699.
        status: u16,
        /// Reason phrase (possibly empty).
        reason: String,
    },
}

/// A datagram that passed framing and every strict check.
#[derive(Debug, Clone)]
pub struct SipMessage {
    pub(super) kind: MessageKind,
    pub(super) headers: Vec<HeaderField>,
    pub(super) body: Vec<u8>,
    pub(super) echo: EchoHeaders,
    pub(super) vias: Vec<Via>,
    pub(super) from: NameAddr,
    pub(super) to: NameAddr,
    pub(super) call_id: String,
    pub(super) cseq: CSeq,
    pub(super) contacts: Vec<NameAddr>,
    pub(super) routes: Vec<NameAddr>,
    pub(super) record_routes: Vec<NameAddr>,
    // Read only by its accessor, which exists for tests and `_internals`.
    #[cfg_attr(not(any(test, feature = "_internals")), allow(dead_code))]
    pub(super) max_forwards: Option<u8>,
    pub(super) expires: Option<u32>,
}

/// Why a datagram was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// A request we can answer: send `status` built from `echo` (see
    /// [`Rejection::response`]).
    Reject(Box<Rejection>),
    /// Nothing can be answered (a response, an ACK, or too little to address a reply): drop it
    /// and count it.
    Drop {
        /// What was wrong.
        reason: String,
    },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Reject(r) => write!(f, "rejected with {}: {}", r.status, r.reason),
            ParseError::Drop { reason } => write!(f, "dropped: {reason}"),
        }
    }
}

impl std::error::Error for ParseError {}

/// A request that fails a check but can still be answered
/// ([`ResponseBuilder::rejection`](crate::sip::ResponseBuilder::rejection) builds the answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Status to answer with: 400, 416 or 505.
    pub status: u16,
    /// What was wrong (used as a Warning text in logs, not sent as the reason phrase).
    pub reason: String,
    /// The request's method token as written.
    pub method: String,
    /// The raw headers the answer copies.
    pub echo: EchoHeaders,
}

impl SipMessage {
    /// Parses and checks one datagram; see [`parse`].
    pub fn parse(datagram: &[u8]) -> Result<SipMessage, ParseError> {
        parse(datagram)
    }

    /// Request or response specifics.
    #[cfg(any(test, feature = "_internals"))]
    pub fn kind(&self) -> &MessageKind {
        &self.kind
    }

    /// True for requests.
    pub fn is_request(&self) -> bool {
        matches!(self.kind, MessageKind::Request { .. })
    }

    /// The method of a request, or the CSeq method of a response.
    pub fn method(&self) -> &Method {
        match &self.kind {
            MessageKind::Request { method, .. } => method,
            MessageKind::Response { .. } => &self.cseq.method,
        }
    }

    /// The Request-URI of a request.
    pub fn request_uri(&self) -> Option<&Uri> {
        match &self.kind {
            MessageKind::Request { uri, .. } => Some(uri),
            MessageKind::Response { .. } => None,
        }
    }

    /// The status code of a response.
    pub fn status(&self) -> Option<u16> {
        match &self.kind {
            MessageKind::Response { status, .. } => Some(*status),
            MessageKind::Request { .. } => None,
        }
    }

    /// The reason phrase of a response.
    pub fn reason(&self) -> Option<&str> {
        match &self.kind {
            MessageKind::Response { reason, .. } => Some(reason),
            MessageKind::Request { .. } => None,
        }
    }

    /// Every Via value, topmost first (comma-separated values count separately).
    #[cfg(any(test, feature = "_internals"))]
    pub fn vias(&self) -> &[Via] {
        &self.vias
    }

    /// The topmost Via.
    pub fn top_via(&self) -> &Via {
        // `build` refuses messages without a Via.
        &self.vias[0]
    }

    /// The From header.
    pub fn from(&self) -> &NameAddr {
        &self.from
    }

    /// The To header.
    pub fn to(&self) -> &NameAddr {
        &self.to
    }

    /// The Call-ID.
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// The CSeq.
    pub fn cseq(&self) -> &CSeq {
        &self.cseq
    }

    /// The first Contact address.
    pub fn contact(&self) -> Option<&NameAddr> {
        self.contacts.first()
    }

    /// All Contact addresses (empty for `Contact: *`).
    pub fn contacts(&self) -> &[NameAddr] {
        &self.contacts
    }

    /// Route values in order.
    pub fn routes(&self) -> &[NameAddr] {
        &self.routes
    }

    /// Record-Route values in order.
    pub fn record_routes(&self) -> &[NameAddr] {
        &self.record_routes
    }

    /// Max-Forwards, when present.
    #[cfg(any(test, feature = "_internals"))]
    pub fn max_forwards(&self) -> Option<u8> {
        self.max_forwards
    }

    /// Expires, when present.
    pub fn expires(&self) -> Option<u32> {
        self.expires
    }

    /// Content-Type, when present.
    pub fn content_type(&self) -> Option<&str> {
        self.header("content-type")
    }

    /// The body (exactly Content-Length bytes when that header is present).
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The raw text responses must copy.
    pub fn echo(&self) -> &EchoHeaders {
        &self.echo
    }

    /// The first value of a header, by full or compact name, any case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_values(name).next()
    }

    /// Every value of a header, by full or compact name, any case, in message order.
    pub fn header_values<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> + 'a {
        let canonical = syntax::canonical_name(name);
        self.headers
            .iter()
            .filter(move |h| h.canonical == canonical)
            .map(|h| h.value.as_str())
    }

    /// Every header line in message order.
    #[cfg(any(test, feature = "_internals"))]
    pub fn headers(&self) -> &[HeaderField] {
        &self.headers
    }

    /// `X-` headers as (name as written, value) pairs.
    pub fn x_headers(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.headers
            .iter()
            .filter(|h| h.canonical.starts_with("x-"))
            .map(|h| (h.name.as_str(), h.value.as_str()))
    }
}
