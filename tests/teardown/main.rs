//! The tests that count the process's threads and descriptors around a teardown. They stay in a
//! binary of their own: the counts are process-wide, and under `cargo test` (threads, not a
//! process per test) the other areas' tests would move them. Within this binary they take turns
//! on `support::process::SERIAL`.

#[path = "../support/mod.rs"]
mod support;

mod engine_teardown;
mod rtp_backend_teardown;
mod sip_backend_teardown;
