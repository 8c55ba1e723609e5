//! Forward error correction in SIP calls: with `video_fec` on both sides, RED and ULPFEC are
//! offered and agreed, and a call between two of our backends whose video crosses a lossy path
//! (`roomkit-media netsim`) carries FEC, sized from the callee's reports (so little of it on this
//! short path, where NACK repairs in time), and everything arrives.

use crate::support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crossbeam_channel::unbounded;
use roomkit_media::backend::{DialOptions, SipBackendConfig, SipVideoBackend};
use roomkit_media::prelude::*;
use support::netsim::{Netsim, Path};
use support::sip::{config, dial_ok, sip_addr, start};

const T: Duration = Duration::from_secs(5);

/// A video backend with FEC that takes media from the SDP address only (so a test can re-point
/// its video through a relay).
fn backend(slot: u16) -> SipVideoBackend {
    SipVideoBackend::new(SipBackendConfig {
        symmetric_rtp: false,
        video_fec: true,
        user: format!("user{slot}"),
        ..config(slot)
    })
    .unwrap()
}

#[test]
fn video_of_a_sip_call_with_fec_carries_ulpfec_and_arrives() {
    let callee = backend(60);
    let (ctx, calls) = unbounded();
    callee.on_call(move |s| {
        let _ = ctx.send(s.id);
    });
    let (vtx, pictures) = unbounded::<Vec<u8>>();
    callee.on_video_received(move |_, f| {
        let _ = vtx.send(f.data.to_vec());
    });
    start(&callee);
    let caller = backend(61);
    start(&caller);
    let call = dial_ok(
        &caller,
        &format!("sip:room@{}", sip_addr(&callee)),
        DialOptions::default(),
    );
    let callee_id = calls.recv_timeout(T).expect("the call reaches the callee");
    let ours = caller.get_video_session(call).expect("the call has video");
    let callee_video = ours.video.as_ref().unwrap().remote_addr;

    // Caller video → netsim → callee, and the callee's RTCP back the same way.
    let mut path = Netsim::start(
        &[format!("127.0.0.1:0={callee_video}")],
        &Path::lossy(5.0, 11),
        60,
    );
    let (listen, via) = path.pipes[0];
    caller.update_remote(call, None, Some(listen)).unwrap();
    callee.update_remote(callee_id, None, Some(via)).unwrap();

    let sent: Vec<Vec<u8>> = (0..120u32)
        .map(|i| support::h264_picture(i % 30 == 0, if i % 30 == 0 { 12_000 } else { 3_000 }, i))
        .collect();
    for p in &sent {
        caller.send_video(call, p).unwrap();
        std::thread::sleep(Duration::from_millis(33));
    }
    let index: HashMap<&[u8], usize> = sent
        .iter()
        .enumerate()
        .map(|(i, p)| (p.as_slice(), i))
        .collect();
    let mut got = HashSet::new();
    while let Ok(p) = pictures.recv_timeout(Duration::from_secs(2)) {
        let i = index
            .get(p.as_slice())
            .unwrap_or_else(|| panic!("a picture that was not sent ({} bytes)", p.len()));
        got.insert(*i);
        if got.len() == sent.len() {
            break;
        }
    }
    let tx = caller.stats(call).unwrap().video.unwrap();
    let rx = callee.stats(callee_id).unwrap().video.unwrap();
    let netsim = path.stop();
    eprintln!(
        "delivered {}/{}; caller fec_sent {} retransmitted {}; callee fec_received {} \
         fec_recovered {} fec_unrecoverable {} nack_sent {}; netsim {netsim}",
        got.len(),
        sent.len(),
        tx.fec_sent,
        tx.retransmitted,
        rx.fec_received,
        rx.fec_recovered,
        rx.fec_unrecoverable,
        rx.nack_sent,
    );
    assert!(tx.fec_sent > 0, "FEC agreed and sent");
    assert!(rx.fec_received > 0, "FEC arrived and was understood");
    // FEC and NACK together; real-time deadlines on a loaded machine: 90 %, not all.
    assert!(
        got.len() * 10 >= sent.len() * 9,
        "nearly every picture arrives: {}/{}",
        got.len(),
        sent.len()
    );
    caller.hangup(call).unwrap();
}
