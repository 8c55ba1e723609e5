//! The checks behind the fuzz targets in `fuzz/`, shared with `tests/pure/fuzz_findings.rs` so that
//! every input the fuzzer found is replayed through exactly the code that found it.
//!
//! Each entry point takes raw fuzzer bytes, drives one part of the library the way the engine
//! does, and panics when a property breaks. The main one is "we accept what we send": every
//! message, description or packet we build from untrusted input must pass our own parser.
//! Time is virtual (one `Instant::now()` plus offsets), as the pure layers require.

#![allow(dead_code)]

pub mod congestion;
pub mod fec;
pub mod framing;
pub mod rtcp;
pub mod sdp;
pub mod sip;
pub mod srtp;
pub mod video;
pub mod voice;
pub mod webrtc;
pub mod whip;

/// Reads fuzzer bytes as a stream of small fields; past the end every read gives zeros, so any
/// input decodes to something.
#[derive(Debug, Clone)]
pub struct Cursor<'a> {
    data: &'a [u8],
}

impl<'a> Cursor<'a> {
    /// A cursor over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Cursor { data }
    }

    /// True when every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The next byte (0 past the end).
    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// The next two bytes, big-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    /// Up to `n` next bytes (fewer at the end).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }
}
