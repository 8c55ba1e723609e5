//! What the integration tests share: the real peers and the CLI (`peers`), sipp runs (`sipp`),
//! Kamailio (`kamailio`), RTP backend pairs (`rtp`), a raw SIP user agent (`sip`), the
//! process's thread and descriptor counts (`process`), Ogg files (`ogg`), test certificates (`tls`), and synthetic media.
//! Each test binary (`tests/*/main.rs`) compiles it whole, hence `dead_code`.
#![allow(dead_code)]

pub mod baresip;
pub mod kamailio;
pub mod netsim;
pub mod ogg;
pub mod peers;
pub mod process;
pub mod rtp;
pub mod sip;
pub mod sipp;
pub mod tls;

use std::time::{Duration, Instant};

/// Polls `cond` until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    cond()
}

/// A synthetic H.264 picture of `len` bytes: the crate's test-picture generator
/// ([`roomkit_media::codec::testclip::h264_picture`]) with the `u32` seeds these tests count in.
pub fn h264_picture(key: bool, len: usize, seed: u32) -> Vec<u8> {
    roomkit_media::codec::testclip::h264_picture(key, len, u64::from(seed))
}
