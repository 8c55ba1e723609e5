//! Fuzz target `webrtc`: STUN and DTLS datagrams through our ICE agent and DTLS endpoint
//! (either DTLS engine, OpenSSL or dimpl); see `tests/fuzz_support/webrtc.rs` for what it drives
//! and checks.
#![no_main]

#[path = "../../tests/fuzz_support/mod.rs"]
mod fuzz_support;

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_support::webrtc::datagrams(data));
