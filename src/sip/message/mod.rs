//! SIP messages: one datagram in, a checked [`SipMessage`] or a [`ParseError`] out.
//!
//! Framing (start line, header lines, folding, Content-Length, body) and the strict checks that
//! RFC 3261's grammar asks for but no SIP crate does (see `check`) are ours; SIP URIs and Via hosts are typed with `ezk-sip-types`.
//! The raw text of Via, From, To, Call-ID and CSeq is kept so that responses copy it verbatim
//! (RFC 3261 §8.2.6.2) instead of re-serialising typed values.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use ezk_sip_types::uri::{SipUri, SipUriUserPart};

use super::check::{self, StartLine, StartLineError};
use super::syntax::{self, find_param, Param, RawNameAddr};

/// Largest datagram we look at; anything bigger is dropped unread.
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024;

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
    pub fn params(&self) -> &[Param] {
        &self.params
    }
}

/// One Via value.
#[derive(Debug, Clone)]
pub struct Via {
    raw: String,
    transport: String,
    host: String,
    port: Option<u16>,
    params: Vec<Param>,
}

impl Via {
    /// The value as received.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// The transport (`UDP`, `TCP`, `TLS`, or any token).
    pub fn transport(&self) -> &str {
        &self.transport
    }

    /// The sent-by host (IPv6 in brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The sent-by port, when given.
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
    pub fn received(&self) -> Option<&str> {
        self.param("received").flatten()
    }

    /// The `rport` parameter: `Some(None)` when the client asked for it, `Some(Some(p))` when a
    /// proxy filled it in.
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
    name: String,
    canonical: Cow<'static, str>,
    value: String,
}

impl HeaderField {
    /// The name as it appeared in the message.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The lowercase full name (`v` becomes `via`).
    pub fn canonical_name(&self) -> &str {
        &self.canonical
    }

    /// The value with line folding replaced by single spaces and outer whitespace trimmed.
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
    fn contains_bare_cr(&self) -> bool {
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
    kind: MessageKind,
    headers: Vec<HeaderField>,
    body: Vec<u8>,
    echo: EchoHeaders,
    vias: Vec<Via>,
    from: NameAddr,
    to: NameAddr,
    call_id: String,
    cseq: CSeq,
    contacts: Vec<NameAddr>,
    contact_wildcard: bool,
    routes: Vec<NameAddr>,
    record_routes: Vec<NameAddr>,
    max_forwards: Option<u8>,
    expires: Option<u32>,
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

/// A request that fails a check but can still be answered ([`ResponseBuilder::rejection`](super::ResponseBuilder::rejection)
/// builds the answer).
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

struct Framed<'a> {
    start: &'a str,
    headers: Vec<HeaderField>,
    body: &'a [u8],
    /// First framing problem found (the message is still scanned for echo headers).
    error: Option<&'static str>,
}

fn find_head_end(data: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < data.len() {
        if data[i] == b'\n' {
            if data.get(i + 1) == Some(&b'\n') {
                return Some((i + 1, i + 2));
            }
            if data.get(i + 1) == Some(&b'\r') && data.get(i + 2) == Some(&b'\n') {
                return Some((i + 1, i + 3));
            }
        }
        i += 1;
    }
    None
}

fn split_head<'a>(head: &'a str, body: &'a [u8], mut error: Option<&'static str>) -> Framed<'a> {
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let start = lines.next().unwrap_or_default();
    let mut headers: Vec<HeaderField> = Vec::with_capacity(16);
    // (name, value) of the header being assembled, to allow folded continuation lines.
    let mut current: Option<(String, String)> = None;
    let flush = |current: &mut Option<(String, String)>, headers: &mut Vec<HeaderField>| {
        if let Some((name, mut value)) = current.take() {
            let end = value.trim_end().len();
            value.truncate(end);
            headers.push(HeaderField {
                canonical: syntax::canonical_name(&name),
                name,
                value,
            });
        }
    };
    for line in lines {
        if line.is_empty() {
            continue;
        }
        // A CR that does not end the line could be read as a line end by a peer (and by us, in
        // whatever we echo); continuation lines get the same check as the line they continue.
        if line.contains('\r') {
            error.get_or_insert("bare CR in header line");
        }
        if line.starts_with([' ', '\t']) {
            match current.as_mut() {
                Some((_, value)) => {
                    let trimmed_len = value.trim_end().len();
                    value.truncate(trimmed_len);
                    if !value.is_empty() {
                        value.push(' ');
                    }
                    value.push_str(line.trim_start());
                }
                None => {
                    error.get_or_insert("continuation line without a header");
                }
            }
            continue;
        }
        flush(&mut current, &mut headers);
        let Some(colon) = line.find(':') else {
            error.get_or_insert("header line without ':'");
            continue;
        };
        let name = line[..colon].trim_end_matches([' ', '\t']);
        if !syntax::is_token(name) {
            error.get_or_insert("header name is not a token");
            continue;
        }
        current = Some((name.to_string(), line[colon + 1..].trim_start().to_string()));
    }
    flush(&mut current, &mut headers);
    Framed {
        start,
        headers,
        body,
        error,
    }
}

fn count(headers: &[HeaderField], canonical: &str) -> usize {
    headers.iter().filter(|h| h.canonical == canonical).count()
}

fn first<'a>(headers: &'a [HeaderField], canonical: &str) -> Option<&'a HeaderField> {
    headers.iter().find(|h| h.canonical == canonical)
}

/// Whether a raw To value has a tag, by the same definition as [`NameAddr::tag`]. A To we cannot
/// read has none we could honour: the request is refused, and the answer gets our tag.
fn raw_has_tag(to: &str) -> bool {
    syntax::parse_name_addr(to).is_ok_and(|n| syntax::tag(&n.params).is_some())
}

fn echo_of(headers: &[HeaderField]) -> EchoHeaders {
    let value = |n: &str| first(headers, n).map(|h| h.value.clone());
    let to = value("to");
    EchoHeaders {
        via: headers
            .iter()
            .filter(|h| h.canonical == "via")
            .map(|h| h.value.clone())
            .collect(),
        from: value("from"),
        to_has_tag: to.as_deref().is_some_and(raw_has_tag),
        to,
        call_id: value("call-id"),
        cseq: value("cseq"),
    }
}

/// A failed check, before we know whether it can be answered.
struct Failure {
    status: u16,
    reason: &'static str,
}

fn bad(reason: &'static str) -> Failure {
    Failure {
        status: 400,
        reason,
    }
}

fn single<'a>(
    headers: &'a [HeaderField],
    name: &'static str,
    what: &'static str,
) -> Result<&'a str, Failure> {
    match count(headers, name) {
        1 => Ok(first(headers, name)
            .map(|h| h.value.as_str())
            .unwrap_or_default()),
        _ => Err(bad(what)),
    }
}

fn name_addr_list(values: &[&HeaderField]) -> Result<Vec<NameAddr>, Failure> {
    let mut out = Vec::new();
    for h in values {
        for part in syntax::split_list(&h.value).map_err(bad)? {
            out.push(NameAddr::parse(part).map_err(bad)?);
        }
    }
    Ok(out)
}

/// Parses and checks one datagram.
///
/// Leading CRLFs (keep-alives) are skipped. Without a Content-Length the body is the rest of the
/// datagram; with one, a shorter body is refused and extra trailing octets are ignored.
pub fn parse(datagram: &[u8]) -> Result<SipMessage, ParseError> {
    if datagram.len() > MAX_MESSAGE_SIZE {
        return Err(ParseError::Drop {
            reason: format!("datagram of {} bytes exceeds the size cap", datagram.len()),
        });
    }
    let skip = datagram
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    let data = &datagram[skip..];
    if data.is_empty() {
        return Err(ParseError::Drop {
            reason: "empty datagram (keep-alive)".into(),
        });
    }
    let (head_bytes, body, mut error) = match find_head_end(data) {
        Some((head_end, body_start)) => (&data[..head_end], &data[body_start..], None),
        None => (
            data,
            &data[data.len()..],
            Some("no blank line after the headers"),
        ),
    };
    let head_owned;
    let head: &str = match std::str::from_utf8(head_bytes) {
        Ok(s) => s,
        Err(_) => {
            error.get_or_insert("header section is not UTF-8");
            head_owned = String::from_utf8_lossy(head_bytes).into_owned();
            &head_owned
        }
    };
    let framed = split_head(head, body, error);
    let echo = echo_of(&framed.headers);
    let start = check::start_line(framed.start);
    let request_method = match &start {
        Ok(StartLine::Request { method, .. }) => Some(method.to_string()),
        Err(StartLineError::Request(_) | StartLineError::RequestVersion) => Some(
            framed
                .start
                .split([' ', '\t'])
                .next()
                .unwrap_or_default()
                .to_string(),
        ),
        _ => None,
    };
    match build(framed, start, echo.clone()) {
        Ok(msg) => Ok(msg),
        Err(failure) => {
            // An answer copies Via, From, To, Call-ID and CSeq verbatim; one of them holding a
            // bare CR would carry it into our answer, where it could end a line for the peer.
            let answerable = request_method
                .as_deref()
                .is_some_and(|m| m != "ACK" && !m.is_empty())
                && !echo.via.is_empty()
                && !echo.contains_bare_cr();
            if answerable {
                Err(ParseError::Reject(Box::new(Rejection {
                    status: failure.status,
                    reason: failure.reason.to_string(),
                    method: request_method.unwrap_or_default(),
                    echo,
                })))
            } else {
                Err(ParseError::Drop {
                    reason: failure.reason.to_string(),
                })
            }
        }
    }
}

fn build(
    framed: Framed<'_>,
    start: Result<StartLine<'_>, StartLineError>,
    echo: EchoHeaders,
) -> Result<SipMessage, Failure> {
    let start = start.map_err(|e| match e {
        StartLineError::RequestVersion => Failure {
            status: 505,
            reason: "SIP version not supported",
        },
        StartLineError::Request(r) | StartLineError::Other(r) => bad(r),
    })?;
    if let Some(e) = framed.error {
        return Err(bad(e));
    }
    let h = &framed.headers;

    // Check 7: the core headers are present, and the single-valued ones are not repeated.
    if count(h, "via") == 0 {
        return Err(bad("missing Via"));
    }
    let from = single(h, "from", "missing or repeated From")?;
    let to = single(h, "to", "missing or repeated To")?;
    let call_id = single(h, "call-id", "missing or repeated Call-ID")?;
    let cseq_text = single(h, "cseq", "missing or repeated CSeq")?;
    if call_id.is_empty() || call_id.bytes().any(|b| b.is_ascii_whitespace()) {
        return Err(bad("malformed Call-ID"));
    }
    for (name, what) in [
        ("content-length", "repeated Content-Length"),
        ("max-forwards", "repeated Max-Forwards"),
        ("content-type", "repeated Content-Type"),
        ("expires", "repeated Expires"),
        ("date", "repeated Date"),
    ] {
        if count(h, name) > 1 {
            return Err(bad(what));
        }
    }

    // Via values, comma-separated ones counted one by one.
    let mut vias = Vec::new();
    for field in h.iter().filter(|f| f.canonical == "via") {
        for part in syntax::split_list(&field.value).map_err(bad)? {
            let v = syntax::parse_via(part).map_err(bad)?;
            vias.push(Via {
                raw: part.to_string(),
                transport: v.transport,
                host: v.host,
                port: v.port,
                params: v.params,
            });
        }
    }

    // Check 3: CSeq.
    let (cseq_number, cseq_method) = check::cseq(cseq_text).map_err(bad)?;
    if let StartLine::Request { method, .. } = &start {
        if *method != cseq_method {
            return Err(bad("CSeq method differs from the request method"));
        }
    }

    // Check 5: addresses.
    let from = single_name_addr(from)?;
    let to = single_name_addr(to)?;
    let contact_fields: Vec<&HeaderField> = h.iter().filter(|f| f.canonical == "contact").collect();
    let contact_wildcard = contact_fields.len() == 1 && contact_fields[0].value == "*";
    let contacts = if contact_wildcard {
        Vec::new()
    } else {
        name_addr_list(&contact_fields)?
    };
    let routes = name_addr_list(
        &h.iter()
            .filter(|f| f.canonical == "route")
            .collect::<Vec<_>>(),
    )?;
    let record_routes = name_addr_list(
        &h.iter()
            .filter(|f| f.canonical == "record-route")
            .collect::<Vec<_>>(),
    )?;

    // Check 3 and 6: scalar bounds and Date.
    let max_forwards = first(h, "max-forwards")
        .map(|f| check::max_forwards(&f.value))
        .transpose()
        .map_err(bad)?;
    let expires = first(h, "expires")
        .map(|f| check::expires(&f.value))
        .transpose()
        .map_err(bad)?;
    for f in h.iter().filter(|f| f.canonical == "retry-after") {
        check::retry_after(&f.value).map_err(bad)?;
    }
    for f in h.iter().filter(|f| f.canonical == "min-expires") {
        check::expires(&f.value).map_err(bad)?;
    }
    if let Some(f) = first(h, "date") {
        check::date(&f.value).map_err(bad)?;
    }

    // Check 4: Content-Length and the body.
    let body = match first(h, "content-length") {
        Some(f) => {
            let len = check::content_length(&f.value).map_err(bad)?;
            if framed.body.len() < len {
                return Err(bad("body shorter than Content-Length"));
            }
            &framed.body[..len]
        }
        None => framed.body,
    };

    // Check 2: the Request-URI (last, so that 416 is only given to otherwise sound requests).
    let kind = match start {
        StartLine::Request { method, uri } => MessageKind::Request {
            method: Method::from_token(method),
            uri: request_uri(uri)?,
        },
        StartLine::Response { code, reason } => MessageKind::Response {
            status: code,
            reason: reason.to_string(),
        },
    };

    let call_id = call_id.to_string();
    let cseq = CSeq {
        number: cseq_number,
        method: Method::from_token(cseq_method),
    };
    let body = body.to_vec();
    Ok(SipMessage {
        kind,
        body,
        headers: framed.headers,
        echo,
        vias,
        from,
        to,
        call_id,
        cseq,
        contacts,
        contact_wildcard,
        routes,
        record_routes,
        max_forwards,
        expires,
    })
}

/// Check 2: a Request-URI we serve: a well-formed `sip`/`sips` URI (416 for other schemes), not
/// in `<>`, without whitespace, control characters or headers. The same rule decides whether a
/// URI we were given can be the Request-URI of a request we send ([`Uri::request_target`]).
fn request_uri(text: &str) -> Result<Uri, Failure> {
    if text.starts_with('<') {
        return Err(bad("Request-URI enclosed in <>"));
    }
    if text
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(bad("whitespace in Request-URI"));
    }
    let scheme = syntax::uri_scheme(text).ok_or(bad("Request-URI without a scheme"))?;
    if !(scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips")) {
        return Err(Failure {
            status: 416,
            reason: "Request-URI scheme is not sip or sips",
        });
    }
    let uri = Uri::parse(text).map_err(bad)?;
    if uri.has_headers() {
        return Err(bad("headers in the Request-URI"));
    }
    Ok(uri)
}

fn single_name_addr(value: &str) -> Result<NameAddr, Failure> {
    let parts = syntax::split_list(value).map_err(bad)?;
    if parts.len() != 1 {
        return Err(bad("From/To must hold exactly one address"));
    }
    let addr = NameAddr::parse(parts[0]).map_err(bad)?;
    // `;tag` alone (or `tag=""`) says "in a dialog" without naming one: the typed value would
    // read as a new call while the sender meant an existing one (RFC 3261 §25.1: tag-param =
    // "tag" EQUAL token, and a token is never empty).
    if addr.param("tag").is_some() && addr.tag().is_none() {
        return Err(bad("tag parameter without a value"));
    }
    Ok(addr)
}

impl SipMessage {
    /// Parses and checks one datagram; see [`parse`].
    pub fn parse(datagram: &[u8]) -> Result<SipMessage, ParseError> {
        parse(datagram)
    }

    /// Request or response specifics.
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

    /// True for `Contact: *` (a REGISTER removing all bindings).
    pub fn is_contact_wildcard(&self) -> bool {
        self.contact_wildcard
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

#[cfg(test)]
mod tests {
    use super::*;

    const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/rfc4475/");

    fn corpus(name: &str) -> Vec<u8> {
        std::fs::read(format!("{CORPUS}{name}")).expect("RFC 4475 corpus in tests/data")
    }

    fn invite(extra: &str, body: &str) -> Vec<u8> {
        format!(
            "INVITE sip:bob@example.com SIP/2.0\r\n\
             Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc;rport\r\n\
             From: \"Alice\" <sip:alice@example.com>;tag=a1\r\n\
             To: <sip:bob@example.com>\r\n\
             Call-ID: c1@example.com\r\n\
             CSeq: 1 INVITE\r\n\
             Max-Forwards: 70\r\n\
             {extra}\r\n{body}"
        )
        .into_bytes()
    }

    fn reject_status(data: &[u8]) -> Option<u16> {
        match parse(data) {
            Err(ParseError::Reject(r)) => Some(r.status),
            _ => None,
        }
    }

    #[test]
    fn tortuous_invite_is_fully_typed() {
        let m = parse(&corpus("wsinv.dat")).unwrap();
        assert_eq!(m.method(), &Method::Invite);
        assert_eq!(m.from().display_name(), Some("J Rosenberg \\\""));
        assert_eq!(m.from().tag(), Some("98asjd8"));
        assert_eq!(m.to().tag(), Some("1918181833n"));
        assert_eq!(m.vias().len(), 3);
        assert_eq!(m.vias()[1].branch(), Some("z9hG4bK9ikj8"));
        assert_eq!(m.vias()[2].host(), "192.168.255.111");
        assert_eq!(m.max_forwards(), Some(68));
        assert_eq!(m.cseq().number, 9);
        assert_eq!(
            m.contact().unwrap().display_name(),
            Some("Quoted string \"\"")
        );
        assert_eq!(m.contact().unwrap().param("q"), Some(Some("0.33")));
        assert_eq!(m.body().len(), 150);
        assert_eq!(
            m.header("newfangledheader"),
            Some("newfangled value continued newfangled value")
        );
        assert_eq!(m.header("Subject"), Some(""));
        assert_eq!(m.routes().len(), 1);
        assert_eq!(
            m.echo().to.as_deref(),
            Some("sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n")
        );
    }

    #[test]
    fn display_name_rules_hold_even_with_a_blank_line() {
        let mut data = corpus("baddn.dat");
        data.extend_from_slice(b"\r\n\r\n");
        assert_eq!(reject_status(&data), Some(400));
    }

    #[test]
    fn methods_match_exactly() {
        let data = String::from_utf8(invite("Content-Length: 0\r\n", "")).unwrap();
        let prefixed = data.replace("INVITE sip", "INVITEX sip");
        assert_eq!(reject_status(prefixed.as_bytes()), Some(400));
        let lower = data
            .replace("INVITE sip", "invite sip")
            .replace("1 INVITE", "1 invite");
        let m = parse(lower.as_bytes()).unwrap();
        assert_eq!(m.method(), &Method::Other("invite".into()));
        let unknown = data
            .replace("INVITE sip", "FOO sip")
            .replace("1 INVITE", "1 FOO");
        assert_eq!(parse(unknown.as_bytes()).unwrap().method().as_str(), "FOO");
    }

    #[test]
    fn content_length_is_enforced() {
        assert_eq!(
            reject_status(&invite("Content-Length: 10\r\n", "short")),
            Some(400)
        );
        let m = parse(&invite("Content-Length: 5\r\n", "hello, trailing")).unwrap();
        assert_eq!(m.body(), b"hello");
        let m = parse(&invite("", "no length header")).unwrap();
        assert_eq!(m.body(), b"no length header");
        assert_eq!(
            reject_status(&invite("Content-Length: 0x10\r\n", "")),
            Some(400)
        );
        assert_eq!(
            reject_status(&invite("Content-Length: 0\r\nl: 0\r\n", "")),
            Some(400)
        );
    }

    #[test]
    fn scalar_bounds() {
        assert_eq!(
            reject_status(&invite("Max-Forwards: 256\r\n", "")),
            Some(400)
        );
        assert_eq!(
            reject_status(&invite("Expires: 4294967296\r\n", "")),
            Some(400)
        );
        assert!(parse(&invite("Expires: 4294967295\r\n", "")).is_ok());
        assert_eq!(
            reject_status(&invite("Date: Sat, 15 Oct 2005 04:44:56 PST\r\n", "")),
            Some(400)
        );
    }

    #[test]
    fn non_sip_header_uris_fall_back_to_raw_text() {
        let data = String::from_utf8(invite("", "")).unwrap().replace(
            "To: <sip:bob@example.com>",
            "To: <tel:+1-201-555-0123;phone-context=example.com>",
        );
        let m = parse(data.as_bytes()).unwrap();
        assert!(!m.to().uri().is_sip());
        assert_eq!(m.to().uri().scheme(), "tel");
        assert_eq!(m.to().uri().user().as_deref(), Some("+1-201-555-0123"));
        assert_eq!(m.from().uri().user().as_deref(), Some("alice"));
        assert_eq!(m.from().uri().host().as_deref(), Some("example.com"));
    }

    #[test]
    fn compact_and_extension_headers() {
        let m = parse(&invite(
            "X-Room-ID: r1\r\nx-tenant: t\r\nc: application/sdp\r\n",
            "",
        ))
        .unwrap();
        assert_eq!(m.content_type(), Some("application/sdp"));
        assert_eq!(m.header("i"), Some("c1@example.com"));
        let x: Vec<_> = m.x_headers().collect();
        assert_eq!(x, vec![("X-Room-ID", "r1"), ("x-tenant", "t")]);
        assert_eq!(m.top_via().rport(), Some(None));
        assert_eq!(m.top_via().sent_by(), "192.0.2.1:5060");
    }

    #[test]
    fn unanswerable_messages_are_dropped() {
        assert!(matches!(parse(b"\r\n\r\n"), Err(ParseError::Drop { .. })));
        assert!(matches!(
            parse(&vec![b'a'; MAX_MESSAGE_SIZE + 1]),
            Err(ParseError::Drop { .. })
        ));
        let ack = String::from_utf8(invite("Content-Length: 9\r\n", ""))
            .unwrap()
            .replace("INVITE", "ACK");
        assert!(matches!(
            parse(ack.as_bytes()),
            Err(ParseError::Drop { .. })
        ));
        let no_via = String::from_utf8(invite("Content-Length: 9\r\n", ""))
            .unwrap()
            .replace(
                "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc;rport\r\n",
                "",
            );
        assert!(matches!(
            parse(no_via.as_bytes()),
            Err(ParseError::Drop { .. })
        ));
        assert!(matches!(
            parse(b"\x00\x01garbage"),
            Err(ParseError::Drop { .. })
        ));
    }

    #[test]
    fn request_targets_pass_the_request_uri_check() {
        let target = |raw: &str| {
            Uri::parse(raw)
                .unwrap()
                .request_target()
                .map(|u| u.as_str().to_string())
        };
        assert_eq!(
            target("sip:a@h.example;method=BYE;maddr=192.0.2.1?Subject=x"),
            Ok("sip:a@h.example;maddr=192.0.2.1".into())
        );
        assert_eq!(
            target("sips:[2001:db8::1]:5061"),
            Ok("sips:[2001:db8::1]:5061".into())
        );
        assert_eq!(target("sip:h.example;METHOD"), Ok("sip:h.example".into()));
        assert!(target("tel:+15551234567").is_err());
    }

    /// The request-URI check moved out of the start line; it still refuses the same things.
    #[test]
    fn request_uri_whitespace_and_controls_are_400() {
        let data = String::from_utf8(invite("", "")).unwrap();
        for bad in ["sip:bob@exa\tmple.com", "sip:bob@exa\u{1}mple.com"] {
            let t = data.replace(
                "INVITE sip:bob@example.com SIP",
                &format!("INVITE {bad} SIP"),
            );
            assert_eq!(reject_status(t.as_bytes()), Some(400), "{bad:?}");
        }
    }

    #[test]
    fn rejection_answers_copy_the_request() {
        let data = String::from_utf8(invite("", ""))
            .unwrap()
            .replace("SIP/2.0\r\n", "SIP/3.0\r\n");
        let Err(ParseError::Reject(r)) = parse(data.as_bytes()) else {
            panic!("expected a rejection");
        };
        assert_eq!(r.status, 505);
        let text = String::from_utf8(
            crate::sip::ResponseBuilder::rejection(&r)
                .to_tag("x")
                .server("roomkit")
                .build(),
        )
        .unwrap();
        assert!(text.starts_with("SIP/2.0 505 Version Not Supported\r\n"));
        assert!(text.contains("To: <sip:bob@example.com>;tag=x\r\n"));
        assert!(text.contains("Server: roomkit\r\n"));
        assert!(parse(text.as_bytes()).is_ok());
    }
}
