//! What the integration tests share: the real peers and the CLI (`peers`), sipp runs (`sipp`),
//! Kamailio (`kamailio`), RTP backend pairs (`rtp`), a raw SIP user agent (`sip`), the
//! process's thread and descriptor counts (`process`), Ogg files (`ogg`), test certificates (`tls`, RSA ones in `rsa`), and synthetic media.
//! Each test binary (`tests/*/main.rs`) compiles it whole, hence `dead_code`.
#![allow(dead_code)]

pub mod baresip;
pub mod kamailio;
pub mod netsim;
pub mod ogg;
pub mod peers;
pub mod process;
pub mod rsa;
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

/// Sends 120 synthetic H.264 pictures (a 12 000-byte key picture every 30, 3 000-byte others)
/// through `send` at about 30 a second, then takes what arrived from `next` (`None`: nothing
/// more came) until every picture is in. Returns how many were sent and how many distinct ones
/// arrived bit-exact; a picture that was not sent fails the test.
pub fn send_pictures_and_count(
    mut send: impl FnMut(&[u8]),
    mut next: impl FnMut() -> Option<Vec<u8>>,
) -> (usize, usize) {
    let sent: Vec<Vec<u8>> = (0..120u32)
        .map(|i| h264_picture(i % 30 == 0, if i % 30 == 0 { 12_000 } else { 3_000 }, i))
        .collect();
    for p in &sent {
        send(p);
        std::thread::sleep(Duration::from_millis(33));
    }
    let index: std::collections::HashMap<&[u8], usize> = sent
        .iter()
        .enumerate()
        .map(|(i, p)| (p.as_slice(), i))
        .collect();
    let mut got = std::collections::HashSet::new();
    while let Some(p) = next() {
        let i = index
            .get(p.as_slice())
            .unwrap_or_else(|| panic!("a picture that was not sent ({} bytes)", p.len()));
        got.insert(*i);
        if got.len() == sent.len() {
            break;
        }
    }
    (sent.len(), got.len())
}
