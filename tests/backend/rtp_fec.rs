//! Forward error correction on the plain RTP backends: two `RtpVideoBackend`s configured alike
//! with `video_fec` (no SDP: the payload types are configuration), video through
//! `roomkit-media netsim` at 5 % loss and 100 ms one way. At that RTT a NACK repair comes a
//! round trip late, so the sender protects at its full rate, and the receiver rebuilds lost
//! packets from FEC before it would ask for them.

use crate::support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use roomkit_media::backend::{FecConfig, RtpBackendConfig};
use roomkit_media::prelude::*;
use support::netsim::{Netsim, Path};
use support::rtp::{pair, Pair};

#[test]
fn rtp_backends_with_fec_rebuild_lost_packets_through_a_lossy_path() {
    let Pair {
        a,
        b,
        a_id,
        b_id,
        b_rx,
        ..
    } = pair(RtpBackendConfig {
        rtcp_mux: true,
        video_fec: Some(FecConfig::default()),
        rtcp_interval: Duration::from_millis(500),
        ..RtpBackendConfig::default()
    });
    // A's video → netsim → B, and B's RTCP (reports, NACKs) back the same way.
    let b_video = b.get_session(b_id).unwrap().video.unwrap().local_addr;
    let mut path = Netsim::start(
        &[format!("127.0.0.1:0={b_video}")],
        &Path {
            delay_ms: 100,
            ..Path::lossy(5.0, 17)
        },
        60,
    );
    let (listen, via) = path.pipes[0];
    a.update_remote(a_id, None, Some(listen)).unwrap();
    b.update_remote(b_id, None, Some(via)).unwrap();

    let sent: Vec<Vec<u8>> = (0..120u32)
        .map(|i| support::h264_picture(i % 30 == 0, if i % 30 == 0 { 12_000 } else { 3_000 }, i))
        .collect();
    for p in &sent {
        a.send_video(a_id, p).unwrap();
        std::thread::sleep(Duration::from_millis(33));
    }
    let index: HashMap<&[u8], usize> = sent
        .iter()
        .enumerate()
        .map(|(i, p)| (p.as_slice(), i))
        .collect();
    let mut got = HashSet::new();
    while let Ok((_, f)) = b_rx.video.recv_timeout(Duration::from_secs(2)) {
        let i = index
            .get(&f.data[..])
            .unwrap_or_else(|| panic!("a picture that was not sent ({} bytes)", f.data.len()));
        got.insert(*i);
        if got.len() == sent.len() {
            break;
        }
    }
    let tx = a.stats(a_id).unwrap().video.unwrap();
    let rx = b.stats(b_id).unwrap().video.unwrap();
    eprintln!(
        "delivered {}/{}; sender fec_sent {} packets_sent {} retransmitted {}; receiver \
         fec_received {} fec_recovered {} fec_unrecoverable {} nack_sent {} recovered {}; \
         netsim {}",
        got.len(),
        sent.len(),
        tx.fec_sent,
        tx.packets_sent,
        tx.retransmitted,
        rx.fec_received,
        rx.fec_recovered,
        rx.fec_unrecoverable,
        rx.nack_sent,
        rx.recovered,
        path.stop()
    );
    assert!(tx.fec_sent > 0, "the sender protected its video");
    assert!(rx.fec_received > 0, "FEC arrived and was understood");
    assert!(rx.fec_recovered > 0, "lost packets were rebuilt from FEC");
    assert_eq!(rx.malformed, 0);
    // FEC and NACK together; real-time deadlines on a loaded machine: 90 %, not all.
    assert!(
        got.len() * 10 >= sent.len() * 9,
        "nearly every picture arrives: {}/{}",
        got.len(),
        sent.len()
    );
}

#[test]
fn bad_fec_settings_are_refused_naming_the_field() {
    use roomkit_media::backend::RtpVideoBackend;
    let clash = RtpBackendConfig {
        video_fec: Some(FecConfig {
            red_payload_type: 96,
            ..FecConfig::default()
        }),
        ..RtpBackendConfig::default()
    };
    let e = RtpVideoBackend::new(clash).unwrap_err().to_string();
    assert!(e.contains("video_payload_type"), "{e}");
    let bad_id = RtpBackendConfig {
        transport_cc_id: 15,
        ..RtpBackendConfig::default()
    };
    let e = RtpVideoBackend::new(bad_id).unwrap_err().to_string();
    assert!(e.contains("transport_cc_id"), "{e}");
}
