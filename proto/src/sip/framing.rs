//! SIP over a byte stream (TCP, TLS): the bytes of a connection in, whole messages out.
//!
//! On a stream nothing marks where a message ends but its Content-Length header, which RFC 3261
//! §18.3 makes mandatory there: a message without one cannot be framed, so the connection is
//! unusable and is cut. Between messages a peer may send CRLFs: a lone CRLF is filler (RFC 3261
//! §7.5) or the pong answering our ping, and is skipped; a double CRLF at a message boundary is
//! an RFC 5626 §4.4.1 keep-alive ping, answered with one CRLF ([`PONG`]).
//!
//! Every byte is untrusted: a header block larger than [`FrameLimits::max_headers`] or a
//! Content-Length above [`FrameLimits::max_body`] is a [`FramingError`]; after an error the
//! framer stays failed and the connection should be closed (and counted). How long a message
//! may take to arrive is the caller's business (it has the clock): [`StreamFramer::is_mid_message`]
//! says whether a message has started and not yet ended.
//!
//! Pure: no socket, no clock. The output does not depend on how the bytes were split into
//! reads (tested by splitting at every byte).

use std::collections::VecDeque;
use std::fmt;

/// What answers an RFC 5626 keep-alive ping.
pub const PONG: &[u8] = b"\r\n";

/// How much a peer may make us buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    /// Largest header block (start line, headers and the blank line), in bytes.
    pub max_headers: usize,
    /// Largest Content-Length accepted, in bytes.
    pub max_body: usize,
}

impl Default for FrameLimits {
    /// 64 KB of headers, 1 MB of body.
    fn default() -> Self {
        FrameLimits {
            max_headers: 64 * 1024,
            max_body: 1024 * 1024,
        }
    }
}

/// Why a stream can no longer be framed; the connection should be closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FramingError {
    /// The header block grew past the limit without ending.
    HeadersTooLarge,
    /// Content-Length announced more than the limit.
    BodyTooLarge(u64),
    /// A message without Content-Length (mandatory on streams, RFC 3261 §18.3).
    MissingContentLength,
    /// A Content-Length that is not a number, or two that disagree.
    BadContentLength,
}

impl fmt::Display for FramingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FramingError::HeadersTooLarge => f.write_str("SIP header block too large"),
            FramingError::BodyTooLarge(n) => write!(f, "SIP body too large ({n} bytes)"),
            FramingError::MissingContentLength => f.write_str("SIP message without Content-Length"),
            FramingError::BadContentLength => f.write_str("malformed Content-Length"),
        }
    }
}

impl std::error::Error for FramingError {}

/// One unit the stream carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A whole SIP message: header block and exactly Content-Length bytes of body.
    Message(Vec<u8>),
    /// An RFC 5626 keep-alive ping (CRLF CRLF): answer it with [`PONG`].
    Ping,
}

/// Cuts a byte stream into SIP messages. Feed it with [`handle_input`](Self::handle_input),
/// then drain [`poll_frame`](Self::poll_frame) until it gives `None`.
#[derive(Debug, Default)]
pub struct StreamFramer {
    limits: FrameLimits,
    /// Bytes received and not yet framed; a message (or CRLFs) starts at index 0.
    buf: Vec<u8>,
    /// How far `buf` has been searched for the end of the header block, so that a message
    /// trickling in byte by byte is not searched from its start each time.
    scanned: usize,
    /// The header block's length and the body's, once the header block is complete.
    sizes: Option<(usize, usize)>,
    frames: VecDeque<Frame>,
    failed: Option<FramingError>,
}

impl StreamFramer {
    /// A framer with the default limits.
    #[cfg(any(test, feature = "_internals"))]
    pub fn new() -> Self {
        Self::default()
    }

    /// A framer with the given limits.
    pub fn with_limits(limits: FrameLimits) -> Self {
        StreamFramer {
            limits,
            ..Self::default()
        }
    }

    /// Takes the next bytes of the stream. Frames complete by now are queued for
    /// [`poll_frame`](Self::poll_frame); an error means the stream cannot be framed any more
    /// (every later call returns it again), and the connection should be closed.
    pub fn handle_input(&mut self, bytes: &[u8]) -> Result<(), FramingError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        self.buf.extend_from_slice(bytes);
        let result = self.frame_all();
        if let Err(e) = &result {
            self.failed = Some(e.clone());
            self.buf = Vec::new();
        }
        result
    }

    /// The next complete frame, in stream order.
    #[must_use]
    pub fn poll_frame(&mut self) -> Option<Frame> {
        self.frames.pop_front()
    }

    /// True when a message has begun and not ended (a peer that stays so for long is stalling).
    /// CRLFs waiting between messages do not count.
    pub fn is_mid_message(&self) -> bool {
        self.failed.is_none() && self.buf.iter().any(|&b| b != b'\r' && b != b'\n')
    }

    /// Bytes buffered and not yet framed.
    #[cfg(any(test, feature = "_internals"))]
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Frames everything `buf` holds.
    fn frame_all(&mut self) -> Result<(), FramingError> {
        let mut start = 0;
        let result = loop {
            match self.frame_one(start) {
                Ok(Some(used)) => start += used,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        self.buf.drain(..start);
        self.scanned = self.scanned.saturating_sub(start);
        result
    }

    /// Frames one unit starting at `buf[start..]`; returns the bytes it used, or `None` when
    /// more bytes are needed.
    fn frame_one(&mut self, start: usize) -> Result<Option<usize>, FramingError> {
        let rest = &self.buf[start..];
        if self.sizes.is_none() {
            // At a message boundary: CRLFs first.
            if rest.starts_with(b"\r\n\r\n") {
                self.frames.push_back(Frame::Ping);
                self.scanned = start;
                return Ok(Some(4));
            }
            if rest.starts_with(b"\r\n") {
                if rest.len() == 2 || (rest.len() == 3 && rest[2] == b'\r') {
                    // Could still become a ping: wait for the next byte.
                    return Ok(None);
                }
                // A lone CRLF: filler or a pong.
                self.scanned = start;
                return Ok(Some(2));
            }
            if rest.is_empty() || rest == b"\r" {
                return Ok(None);
            }
            let from = self.scanned.max(start).saturating_sub(3).max(start) - start;
            match find_blank_line(rest, from) {
                Some(header_len) => {
                    if header_len > self.limits.max_headers {
                        return Err(FramingError::HeadersTooLarge);
                    }
                    let body = content_length(&rest[..header_len])?;
                    if body > self.limits.max_body as u64 {
                        return Err(FramingError::BodyTooLarge(body));
                    }
                    // `body` fits in usize: it is at most `max_body`.
                    self.sizes = Some((header_len, body as usize));
                }
                None => {
                    if rest.len() > self.limits.max_headers {
                        return Err(FramingError::HeadersTooLarge);
                    }
                    self.scanned = self.buf.len();
                    return Ok(None);
                }
            }
        }
        let Some((header_len, body_len)) = self.sizes else {
            return Ok(None);
        };
        let total = header_len + body_len;
        let rest = &self.buf[start..];
        if rest.len() < total {
            return Ok(None);
        }
        self.frames
            .push_back(Frame::Message(rest[..total].to_vec()));
        self.sizes = None;
        self.scanned = start + total;
        Ok(Some(total))
    }
}

/// The length of the header block (through its blank line), searching from `from`.
fn find_blank_line(data: &[u8], from: usize) -> Option<usize> {
    data.get(from..)?
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| from + i + 4)
}

/// The Content-Length of a header block (`Content-Length` or its compact form `l`, any case).
/// Folded lines (starting with a space or tab) continue the header above and are not names.
fn content_length(header_block: &[u8]) -> Result<u64, FramingError> {
    let mut found: Option<u64> = None;
    // Skip the start line.
    for line in header_block.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = trim(&line[..colon]);
        if !name.eq_ignore_ascii_case(b"content-length") && !name.eq_ignore_ascii_case(b"l") {
            continue;
        }
        let value = trim(&line[colon + 1..]);
        if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
            return Err(FramingError::BadContentLength);
        }
        let n = value
            .iter()
            .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
        if found.is_some_and(|f| f != n) {
            return Err(FramingError::BadContentLength);
        }
        found = Some(n);
    }
    found.ok_or(FramingError::MissingContentLength)
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| b != b' ' && b != b'\t');
    let end = s.iter().rposition(|&b| b != b' ' && b != b'\t');
    match (start, end) {
        (Some(a), Some(b)) => &s[a..=b],
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &[u8] = b"INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK1\r\n\
Call-ID: a@b\r\nCSeq: 1 INVITE\r\nContent-Length: 5\r\n\r\nhello";
    const OPTIONS: &[u8] = b"OPTIONS sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK2\r\nl:0\r\n\r\n";

    fn frames(f: &mut StreamFramer) -> Vec<Frame> {
        std::iter::from_fn(|| f.poll_frame()).collect()
    }

    fn feed_split(stream: &[u8], cut: usize) -> (Vec<Frame>, Result<(), FramingError>) {
        let mut f = StreamFramer::new();
        let mut out = Vec::new();
        let mut result = Ok(());
        for chunk in [&stream[..cut], &stream[cut..]] {
            result = f.handle_input(chunk);
            out.extend(frames(&mut f));
            if result.is_err() {
                break;
            }
        }
        (out, result)
    }

    #[test]
    fn one_message_whole() {
        let mut f = StreamFramer::new();
        f.handle_input(INVITE).unwrap();
        assert_eq!(frames(&mut f), vec![Frame::Message(INVITE.to_vec())]);
        assert!(!f.is_mid_message());
        assert_eq!(f.buffered(), 0);
    }

    #[test]
    fn split_at_every_byte_gives_the_same_frames() {
        let mut stream = b"\r\n".to_vec();
        stream.extend_from_slice(INVITE);
        stream.extend_from_slice(b"\r\n\r\n");
        stream.extend_from_slice(OPTIONS);
        stream.extend_from_slice(b"\r\n");
        stream.extend_from_slice(INVITE);
        let want = vec![
            Frame::Message(INVITE.to_vec()),
            Frame::Ping,
            Frame::Message(OPTIONS.to_vec()),
            Frame::Message(INVITE.to_vec()),
        ];
        for cut in 0..=stream.len() {
            let (got, result) = feed_split(&stream, cut);
            assert_eq!(result, Ok(()));
            assert_eq!(got, want, "cut at {cut}");
        }
        // And one byte at a time.
        let mut f = StreamFramer::new();
        let mut got = Vec::new();
        for b in &stream {
            f.handle_input(std::slice::from_ref(b)).unwrap();
            got.extend(frames(&mut f));
        }
        assert_eq!(got, want);
    }

    #[test]
    fn pipelined_messages_in_one_read() {
        let mut stream = Vec::new();
        for _ in 0..10 {
            stream.extend_from_slice(OPTIONS);
            stream.extend_from_slice(INVITE);
        }
        let mut f = StreamFramer::new();
        f.handle_input(&stream).unwrap();
        let got = frames(&mut f);
        assert_eq!(got.len(), 20);
        assert_eq!(got[19], Frame::Message(INVITE.to_vec()));
    }

    #[test]
    fn keepalive_ping_and_pong() {
        let mut f = StreamFramer::new();
        f.handle_input(b"\r\n\r\n").unwrap();
        assert_eq!(frames(&mut f), vec![Frame::Ping]);
        // A pong (lone CRLF) is skipped once the next message starts.
        f.handle_input(b"\r\n").unwrap();
        assert!(frames(&mut f).is_empty());
        assert!(!f.is_mid_message());
        f.handle_input(OPTIONS).unwrap();
        assert_eq!(frames(&mut f), vec![Frame::Message(OPTIONS.to_vec())]);
        // Three CRLFs: one ping, then a CRLF waiting.
        f.handle_input(b"\r\n\r\n\r\n").unwrap();
        assert_eq!(frames(&mut f), vec![Frame::Ping]);
        assert_eq!(f.buffered(), 2);
    }

    #[test]
    fn mid_message_is_reported_until_the_body_ends() {
        let mut f = StreamFramer::new();
        f.handle_input(&INVITE[..10]).unwrap();
        assert!(f.is_mid_message());
        f.handle_input(&INVITE[10..INVITE.len() - 1]).unwrap();
        assert!(f.is_mid_message());
        assert!(frames(&mut f).is_empty());
        f.handle_input(&INVITE[INVITE.len() - 1..]).unwrap();
        assert!(!f.is_mid_message());
        assert_eq!(frames(&mut f).len(), 1);
    }

    #[test]
    fn missing_content_length_is_an_error_that_stays() {
        let msg = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bKx\r\n\r\n";
        let mut f = StreamFramer::new();
        assert_eq!(f.handle_input(msg), Err(FramingError::MissingContentLength));
        assert_eq!(
            f.handle_input(OPTIONS),
            Err(FramingError::MissingContentLength)
        );
        assert!(frames(&mut f).is_empty());
        assert!(!f.is_mid_message());
    }

    #[test]
    fn bad_content_lengths() {
        for header in [
            "Content-Length: abc",
            "Content-Length: -1",
            "Content-Length:",
            "Content-Length: 1 2",
            "Content-Length: 99999999999999999999999",
        ] {
            let msg = format!("OPTIONS sip:a@b SIP/2.0\r\n{header}\r\n\r\n");
            let mut f = StreamFramer::new();
            assert_eq!(
                f.handle_input(msg.as_bytes()),
                Err(FramingError::BadContentLength),
                "{header}"
            );
        }
        // Two that disagree are ambiguous (request smuggling); two that agree are tolerated.
        let msg = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 0\r\nl: 3\r\n\r\nabc";
        assert_eq!(
            StreamFramer::new().handle_input(msg),
            Err(FramingError::BadContentLength)
        );
        let msg = b"OPTIONS sip:a@b SIP/2.0\r\nCONTENT-length :  3 \r\nL: 3\r\n\r\nabc";
        let mut f = StreamFramer::new();
        f.handle_input(msg).unwrap();
        assert_eq!(frames(&mut f), vec![Frame::Message(msg.to_vec())]);
    }

    #[test]
    fn folded_lines_are_not_header_names() {
        let msg = b"OPTIONS sip:a@b SIP/2.0\r\nSubject: x\r\n l: 99\r\nContent-Length: 0\r\n\r\n";
        let mut f = StreamFramer::new();
        f.handle_input(msg).unwrap();
        assert_eq!(frames(&mut f), vec![Frame::Message(msg.to_vec())]);
    }

    #[test]
    fn header_limit() {
        let limits = FrameLimits::default();
        // A header block that never ends is cut once it passes the limit, even byte by byte.
        let mut f = StreamFramer::new();
        f.handle_input(b"INVITE sip:a@b SIP/2.0\r\n").unwrap();
        let filler = vec![b'X'; 1000];
        let mut result = Ok(());
        let mut fed = 0;
        while result.is_ok() {
            result = f.handle_input(&filler);
            fed += filler.len();
            assert!(fed < limits.max_headers + 2 * filler.len());
        }
        assert_eq!(result, Err(FramingError::HeadersTooLarge));
        assert_eq!(f.buffered(), 0, "the buffer is freed");
        // A complete header block just over the limit is refused; one just under passes.
        for (size, ok) in [(limits.max_headers, true), (limits.max_headers + 1, false)] {
            let head = b"OPTIONS sip:a@b SIP/2.0\r\nl: 0\r\nX-Pad: ";
            let mut msg = head.to_vec();
            msg.resize(size - 4, b'p');
            msg.extend_from_slice(b"\r\n\r\n");
            let mut f = StreamFramer::new();
            assert_eq!(f.handle_input(&msg).is_ok(), ok, "{size}");
        }
    }

    #[test]
    fn body_limit_is_checked_before_the_body_arrives() {
        let max = FrameLimits::default().max_body;
        let msg = format!(
            "MESSAGE sip:a@b SIP/2.0\r\nContent-Length: {}\r\n\r\n",
            max + 1
        );
        let mut f = StreamFramer::new();
        assert_eq!(
            f.handle_input(msg.as_bytes()),
            Err(FramingError::BodyTooLarge(max as u64 + 1))
        );
        let msg = format!("MESSAGE sip:a@b SIP/2.0\r\nContent-Length: {max}\r\n\r\n");
        let mut f = StreamFramer::new();
        f.handle_input(msg.as_bytes()).unwrap();
        f.handle_input(&vec![b'b'; max]).unwrap();
        let Some(Frame::Message(m)) = f.poll_frame() else {
            panic!("no message")
        };
        assert_eq!(m.len(), msg.len() + max);
    }

    #[test]
    fn small_limits() {
        let mut f = StreamFramer::with_limits(FrameLimits {
            max_headers: 200,
            max_body: 4,
        });
        assert_eq!(f.handle_input(INVITE), Err(FramingError::BodyTooLarge(5)));
    }
}
