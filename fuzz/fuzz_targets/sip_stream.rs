//! Fuzz target `sip_stream`: SIP over TCP/TLS through the stream framer; see
//! `tests/fuzz_support/framing.rs` for what it checks.
#![no_main]

#[path = "../../tests/fuzz_support/mod.rs"]
mod fuzz_support;

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_support::framing::stream(data));
