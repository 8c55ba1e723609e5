//! A TCP/TLS byte stream through the SIP stream framer: the fuzzer's bytes are cut into reads at
//! points the input itself chooses, and what comes out must not depend on where it was cut, must
//! respect the limits, and must account for no more bytes than went in. Every framed message
//! also goes through the strict parser (which must not panic on it).

use roomkit_media::sip::framing::{Frame, FrameLimits, FramingError, StreamFramer};
use roomkit_media::sip::parse;

/// Small limits, so the fuzzer reaches them with short inputs.
const LIMITS: FrameLimits = FrameLimits {
    max_headers: 512,
    max_body: 256,
};

/// Feeds `stream` in reads of the given sizes (cycled; 0 means one byte), returning the frames
/// and the first error.
pub fn frame(stream: &[u8], reads: &[u8]) -> (Vec<Frame>, Option<FramingError>) {
    let mut framer = StreamFramer::with_limits(LIMITS);
    let mut frames = Vec::new();
    let mut rest = stream;
    let mut sizes = reads.iter().cycle();
    while !rest.is_empty() {
        let n = sizes.next().map_or(rest.len(), |&s| usize::from(s.max(1)));
        let (chunk, tail) = rest.split_at(n.min(rest.len()));
        rest = tail;
        let result = framer.handle_input(chunk);
        frames.extend(std::iter::from_fn(|| framer.poll_frame()));
        if let Err(e) = result {
            assert!(!framer.is_mid_message());
            return (frames, Some(e));
        }
    }
    (frames, None)
}

/// The fuzz target: the first byte says how many of the next bytes are read sizes.
pub fn stream(data: &[u8]) {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let (reads, stream) = rest.split_at(usize::from(n % 16).min(rest.len()));
    let whole = frame(stream, &[]);
    let split = frame(stream, reads);
    assert_eq!(whole, split, "the frames depend on how the stream was cut");
    let mut used = 0;
    for f in &whole.0 {
        match f {
            Frame::Ping => used += 4,
            Frame::Message(m) => {
                used += m.len();
                let head = m
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .expect("header end")
                    + 4;
                assert!(head <= LIMITS.max_headers);
                assert!(m.len() - head <= LIMITS.max_body);
                assert!(!m.starts_with(b"\r\n"));
                let _ = parse(m);
            }
        }
    }
    assert!(used <= stream.len());
}
