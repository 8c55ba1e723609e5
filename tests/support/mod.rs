//! What the integration tests share: the real peers and the CLI (`peers`), sipp runs (`sipp`),
//! Kamailio (`kamailio`), RTP backend pairs (`rtp`), a raw SIP user agent (`sip`), the
//! process's thread and descriptor counts (`process`), Ogg files (`ogg`), and synthetic media.
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

/// A synthetic H.264 access unit in Annex-B with 4-byte start codes: SPS + PPS + IDR slice for a
/// key picture, one non-IDR slice otherwise. Slice bytes never contain 0x00, so no start code can
/// appear inside a NAL unit. `seed` makes pictures differ.
pub fn h264_picture(key: bool, slice_len: usize, seed: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity(slice_len + 32);
    if key {
        v.extend_from_slice(&[0, 0, 0, 1, 0x67, 0x42, 0xe0, 0x1f, 0x8c, 0x8d, 0x40, 0x50]);
        v.extend_from_slice(&[0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80]);
        v.extend_from_slice(&[0, 0, 0, 1, 0x65]);
    } else {
        v.extend_from_slice(&[0, 0, 0, 1, 0x41]);
    }
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(12345);
    for _ in 0..slice_len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        v.push((x as u8).max(1));
    }
    v
}
