//! Property tests of the SIP stream framer (`proto/src/sip/framing.rs`): a stream built from messages,
//! keep-alive pings and filler CRLFs gives back exactly those messages and pings however it is
//! cut into reads, and arbitrary bytes give the same frames whole and cut (the fuzz target's
//! check, `tests/fuzz_support/framing.rs`).

use crate::fuzz_support;

use proptest::prelude::*;
use roomkit_media::sip::framing::{Frame, StreamFramer};

/// One piece of a stream.
#[derive(Debug, Clone)]
enum Piece {
    /// A message with extra headers and a body; `compact` writes Content-Length as `l`.
    Message {
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        compact: bool,
    },
    Ping,
    /// A lone CRLF before the next message.
    Filler,
}

fn piece() -> impl Strategy<Value = Piece> {
    let header = ("[A-Z][a-z-]{0,10}", "[ -~]{0,40}");
    prop_oneof![
        4 => (
            prop::collection::vec(header, 0..6),
            prop::collection::vec(any::<u8>(), 0..300),
            any::<bool>()
        )
            .prop_map(|(headers, body, compact)| Piece::Message {
                headers: headers
                    .into_iter()
                    .filter(|(n, _)| !n.eq_ignore_ascii_case("content-length") && n != "L")
                    .map(|(n, v)| (n, v.trim().to_string()))
                    .collect(),
                body,
                compact
            }),
        1 => Just(Piece::Ping),
        1 => Just(Piece::Filler),
    ]
}

fn message_bytes(headers: &[(String, String)], body: &[u8], compact: bool) -> Vec<u8> {
    let mut m = b"MESSAGE sip:a@example.com SIP/2.0\r\n".to_vec();
    for (n, v) in headers {
        m.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    let cl = if compact { "l" } else { "Content-Length" };
    m.extend_from_slice(format!("{cl}: {}\r\n\r\n", body.len()).as_bytes());
    m.extend_from_slice(body);
    m
}

/// The stream and the frames it must give. A Filler directly before a Ping would merge into
/// something else (CRLF CRLF CRLF is a ping then filler), so a Filler is written only before a
/// message.
fn build(pieces: &[Piece]) -> (Vec<u8>, Vec<Frame>) {
    let mut stream = Vec::new();
    let mut want = Vec::new();
    for (i, p) in pieces.iter().enumerate() {
        match p {
            Piece::Message {
                headers,
                body,
                compact,
            } => {
                let m = message_bytes(headers, body, *compact);
                stream.extend_from_slice(&m);
                want.push(Frame::Message(m));
            }
            Piece::Ping => {
                stream.extend_from_slice(b"\r\n\r\n");
                want.push(Frame::Ping);
            }
            Piece::Filler => {
                if matches!(pieces.get(i + 1), Some(Piece::Message { .. })) {
                    stream.extend_from_slice(b"\r\n");
                }
            }
        }
    }
    (stream, want)
}

proptest! {
    #[test]
    fn messages_come_back_however_the_stream_is_cut(
        pieces in prop::collection::vec(piece(), 1..12),
        cuts in prop::collection::vec(1usize..200, 1..20),
    ) {
        let (stream, want) = build(&pieces);
        let mut framer = StreamFramer::new();
        let mut got = Vec::new();
        let mut rest = &stream[..];
        let mut sizes = cuts.iter().cycle();
        while !rest.is_empty() {
            let n = (*sizes.next().unwrap()).min(rest.len());
            let (chunk, tail) = rest.split_at(n);
            rest = tail;
            framer.handle_input(chunk).unwrap();
            got.extend(std::iter::from_fn(|| framer.poll_frame()));
        }
        prop_assert_eq!(got, want);
        prop_assert!(!framer.is_mid_message());
    }

    #[test]
    fn arbitrary_bytes_frame_the_same_whole_and_cut(data in prop::collection::vec(any::<u8>(), 0..2000)) {
        fuzz_support::framing::stream(&data);
    }

    #[test]
    fn mutated_streams_frame_the_same_whole_and_cut(
        pieces in prop::collection::vec(piece(), 1..6),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        reads in prop::collection::vec(any::<u8>(), 0..15),
    ) {
        let (mut stream, _) = build(&pieces);
        for (i, b) in flips {
            if !stream.is_empty() {
                let at = i.index(stream.len());
                stream[at] = b;
            }
        }
        let mut data = vec![reads.len() as u8];
        data.extend_from_slice(&reads);
        data.extend_from_slice(&stream);
        fuzz_support::framing::stream(&data);
    }
}
