//! Fuzz target `whip`: see `tests/fuzz_support/whip.rs` for what it drives and checks.
#![no_main]

#[path = "../../tests/fuzz_support/mod.rs"]
mod fuzz_support;

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_support::whip::requests(data));
