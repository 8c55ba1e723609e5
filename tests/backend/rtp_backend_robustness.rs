//! A slow application and a hostile network: a callback that sleeps does not stop reception,
//! and garbage, truncated packets and strangers are dropped and counted while the session keeps
//! working.

use crate::support;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::unbounded;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use roomkit_media::backend::{RtpBackendConfig, RtpVideoBackend};
use roomkit_media::codec::h264::{H264Packetizer, PacketizationMode};
use roomkit_media::codec::{Packetizer, PayloadList};
use roomkit_media::prelude::*;
use roomkit_media::rtp::packet::write_rtp_header;
use support::rtp::{h264_picture, loopback_config, meta, pair, recv_n, wait_until, Pair};

#[test]
fn a_sleeping_callback_does_not_stop_reception() {
    let cfg = RtpBackendConfig {
        callback_queue: 4,
        ..RtpBackendConfig::default()
    };
    let Pair {
        a, b, a_id, b_id, ..
    } = pair(cfg);
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    b.on_video_received(move |_, _| {
        c.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(100));
    });
    let t0 = Instant::now();
    for i in 0..40 {
        a.send_video(a_id, &h264_picture(i % 10 == 0, 4000, i))
            .unwrap();
    }
    // The pacer spreads the burst over a few tens of milliseconds.
    assert!(wait_until(Duration::from_secs(1), || a
        .stats(a_id)
        .unwrap()
        .video
        .unwrap()
        .pacer_queued
        == 0));
    let packets = a.stats(a_id).unwrap().video.unwrap().packets_sent;
    // 40 pictures at 100 ms each would take 4 s to call back; reception must not wait for them
    // (3 s leaves a loaded machine room and still tells the two apart).
    assert!(
        wait_until(Duration::from_secs(3), || b
            .stats(b_id)
            .unwrap()
            .video
            .unwrap()
            .packets_received
            == packets),
        "received {:?} of {packets}",
        b.stats(b_id).unwrap().video.map(|v| v.packets_received)
    );
    assert!(t0.elapsed() < Duration::from_secs(3));
    let st = b.stats(b_id).unwrap().video.unwrap();
    assert_eq!(st.frames, 40, "all pictures assembled");
    assert!(st.frames_dropped_slow_callback > 0, "{st:?}");
    assert!(calls.load(Ordering::SeqCst) < 40);
}

/// An RTP video sender outside the engine: our packetizer plus hand-written headers.
struct RawSender {
    sock: UdpSocket,
    seq: u16,
    ssrc: u32,
    pk: H264Packetizer,
    list: PayloadList,
}

impl RawSender {
    fn send_picture(&mut self, to: SocketAddr, pic: &[u8], ts: u32) {
        self.list.clear();
        self.pk.packetize(pic, &mut self.list).unwrap();
        for i in 0..self.list.len() {
            let mut h = [0u8; 12];
            write_rtp_header(&mut h, 96, self.list.marker(i), self.seq, ts, self.ssrc);
            self.seq = self.seq.wrapping_add(1);
            let mut d = h.to_vec();
            self.list.copy_payload(i, pic, &mut d);
            self.sock.send_to(&d, to).unwrap();
        }
    }
}

#[test]
fn garbage_truncation_and_strangers_are_counted_and_survived() {
    let cfg = loopback_config(RtpBackendConfig {
        rtcp_mux: true,
        ..RtpBackendConfig::default()
    });
    let b = RtpVideoBackend::new(cfg).unwrap();
    let (tx, frames) = unbounded();
    b.on_video_received(move |_, f| {
        let _ = tx.send(f.clone());
    });
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let s = b.connect("room", "p", meta(peer_addr, peer_addr)).unwrap();
    let video = s.video.clone().unwrap().local_addr;
    let audio = s.audio.local_addr;
    let mut raw = RawSender {
        sock: peer,
        seq: 1000,
        ssrc: 0x1234_5678,
        pk: H264Packetizer::new(1200, PacketizationMode::NonInterleaved),
        list: PayloadList::new(),
    };

    // 1. Deterministic bad input from the right address.
    let truncated_rtp: &[u8] = &[0x80, 96, 0, 1, 0, 0]; // 6 of 12 header bytes
    let truncated_rtcp: &[u8] = &[0x80, 200, 0, 6, 0, 0, 0, 1]; // SR claiming 28 bytes
    let bad_version: &[u8] = &[0x40, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0x65];
    let oversize = vec![0x80u8; 3000]; // larger than a receive slot
    for d in [truncated_rtp, truncated_rtcp, bad_version, &oversize[..]] {
        raw.sock.send_to(d, video).unwrap();
        raw.sock.send_to(d, audio).unwrap();
    }
    assert!(wait_until(Duration::from_secs(2), || {
        let st = b.stats(s.id).unwrap();
        st.audio.malformed == 4 && st.video.unwrap().malformed == 4
    }));

    // 2. The same and random datagrams from a stranger: counted as unexpected, nothing else.
    let mut rng = SmallRng::seed_from_u64(42);
    let mut buf = vec![0u8; 1500];
    for i in 0..1000 {
        let n = rng.random_range(0..buf.len());
        rng.fill(&mut buf[..n]);
        stranger
            .send_to(&buf[..n], if i % 2 == 0 { video } else { audio })
            .unwrap();
    }
    assert!(wait_until(Duration::from_secs(3), || {
        let st = b.stats(s.id).unwrap();
        st.audio.unexpected_source + st.video.unwrap().unexpected_source == 1000
    }));

    // 3. Random datagrams, truncated copies of real packets and random RTP headers from the right
    // address: whatever they are, no panic, and the thread keeps serving.
    for i in 0..2000 {
        let n = rng.random_range(0..buf.len());
        rng.fill(&mut buf[..n]);
        if i % 3 == 0 && n > 2 {
            buf[0] = 0x80; // version 2: reaches the RTP/RTCP parsers
            buf[1] = if i % 2 == 0 { 96 } else { 200 + (i % 7) as u8 };
        }
        let dest = if i % 4 == 0 { audio } else { video };
        raw.sock.send_to(&buf[..n], dest).unwrap();
    }
    let key = h264_picture(true, 5000, 9);
    let mut cut = Vec::new();
    cut.extend_from_slice(&key[..40]);
    for len in 0..40 {
        raw.sock.send_to(&cut[..len], video).unwrap();
    }

    // 4. Then real video from the right address: delivered, bit-exact.
    std::thread::sleep(Duration::from_millis(50));
    let before = frames.len();
    raw.send_picture(video, &key, 90_000);
    raw.send_picture(video, &h264_picture(false, 3000, 10), 93_000);
    let got = recv_n(&frames, before + 2, Duration::from_secs(3));
    let tail: Vec<_> = got.iter().rev().take(2).rev().collect();
    assert_eq!(tail.len(), 2, "the session stopped delivering");
    assert_eq!(tail[0].data, key);
    assert!(tail[0].keyframe);
    let st = b.stats(s.id).unwrap();
    let v = st.video.unwrap();
    assert!(v.malformed > 4, "{v:?}");
    eprintln!("audio {:?}\nvideo {v:?}", st.audio);
    b.disconnect(s.id).unwrap();
}

#[test]
fn latching_follows_the_first_source_and_refuses_others() {
    let cfg = loopback_config(RtpBackendConfig {
        latch_to_first_source: true,
        rtcp_mux: true,
        ..RtpBackendConfig::default()
    });
    let b = RtpVideoBackend::new(cfg).unwrap();
    let (tx, frames) = unbounded();
    b.on_video_received(move |_, f| {
        let _ = tx.send(f.clone());
    });
    // Configured with an address nobody sends from (a NAT would rewrite it).
    let nowhere: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let s = b.connect("room", "p", meta(nowhere, nowhere)).unwrap();
    let video = s.video.clone().unwrap().local_addr;
    let mut raw = RawSender {
        sock: UdpSocket::bind("127.0.0.1:0").unwrap(),
        seq: 1,
        ssrc: 7,
        pk: H264Packetizer::new(1200, PacketizationMode::NonInterleaved),
        list: PayloadList::new(),
    };
    raw.send_picture(video, &h264_picture(true, 2000, 1), 0);
    assert_eq!(recv_n(&frames, 1, Duration::from_secs(2)).len(), 1);
    let latched = b
        .get_video_session(s.id)
        .unwrap()
        .video
        .unwrap()
        .remote_addr;
    assert_eq!(latched, raw.sock.local_addr().unwrap());
    let mut other = RawSender {
        sock: UdpSocket::bind("127.0.0.1:0").unwrap(),
        seq: 1,
        ssrc: 8,
        pk: H264Packetizer::new(1200, PacketizationMode::NonInterleaved),
        list: PayloadList::new(),
    };
    other.send_picture(video, &h264_picture(true, 2000, 2), 0);
    assert!(wait_until(Duration::from_secs(2), || b
        .stats(s.id)
        .unwrap()
        .video
        .unwrap()
        .unexpected_source
        >= 2));
    assert!(frames.recv_timeout(Duration::from_millis(100)).is_err());
}
