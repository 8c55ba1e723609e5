//! Sessions come and go without leaking threads or descriptors, and dropping a backend with live
//! sessions joins everything it started.

use crate::support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use roomkit_media::backend::{RtpBackendConfig, RtpVideoBackend};
use roomkit_media::prelude::*;
use support::process::{settle, steady, threads_now, SERIAL};
use support::rtp::{h264_picture, loopback_config, meta};

#[test]
fn two_hundred_connect_disconnect_cycles_leak_nothing() {
    let _g = SERIAL.lock();
    let be = RtpVideoBackend::new(loopback_config(RtpBackendConfig::default())).unwrap();
    let disconnected = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let d = disconnected.clone();
    be.on_client_disconnected(move |_| {
        d.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    });
    // A peer to exchange a little media with, so the threads have really run.
    let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let m = meta(peer_addr, peer_addr);
    // One warm-up cycle so that lazily created process state (thread-locals, the RNG) exists.
    let s = be.connect("room", "p", &m).unwrap();
    be.disconnect(s.id).unwrap();
    let (threads0, fds0) = steady();
    for i in 0..200 {
        let s = be.connect("room", &format!("p{i}"), &m).unwrap();
        be.send_video(s.id, &h264_picture(true, 3000, i)).unwrap();
        be.send_audio(s.id, &[100i16; 160]).unwrap();
        be.disconnect(s.id).unwrap();
    }
    let (t, f) = settle(threads0, fds0);
    assert_eq!(t, threads0, "threads before/after");
    assert_eq!(f, fds0, "descriptors before/after");
    assert!(support::rtp::wait_until(
        Duration::from_secs(2),
        || disconnected.load(std::sync::atomic::Ordering::SeqCst) == 201
    ));
}

#[test]
fn dropping_a_backend_with_live_sessions_joins_everything() {
    let _g = SERIAL.lock();
    let (threads0, fds0) = steady();
    {
        let be = RtpVideoBackend::new(RtpBackendConfig {
            callback_threads: 3,
            ..loopback_config(RtpBackendConfig::default())
        })
        .unwrap();
        let m: HashMap<String, String> = meta(
            "127.0.0.1:9".parse().unwrap(),
            "127.0.0.1:11".parse().unwrap(),
        );
        for i in 0..10 {
            be.connect("room", &format!("p{i}"), &m).unwrap();
        }
        // 3 callback threads + the liveness thread + 2 receive threads per session.
        assert_eq!(threads_now(), threads0 + 3 + 1 + 20);
        let t0 = Instant::now();
        drop(be);
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "drop took {:?}",
            t0.elapsed()
        );
    }
    let (t, f) = settle(threads0, fds0);
    assert_eq!(t, threads0, "threads before/after");
    assert_eq!(f, fds0, "descriptors before/after");
}

/// With `io_threads` 2, 200 A/V sessions (400 streams, 800 sockets) run on a handful of threads,
/// exchange media, and leave nothing behind when they end and when the backend goes.
#[test]
fn two_hundred_sessions_on_two_io_threads_use_few_threads_and_leak_nothing() {
    let _g = SERIAL.lock();
    let (threads0, fds0) = steady();
    {
        let cfg = loopback_config(RtpBackendConfig {
            io_threads: 2,
            ..RtpBackendConfig::default()
        });
        let a = RtpVideoBackend::new(cfg.clone()).unwrap();
        let b = RtpVideoBackend::new(cfg).unwrap();
        let frames = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let f = frames.clone();
        b.on_video_received(move |_, _| {
            f.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        });
        let mut pairs = Vec::new();
        for i in 0..200 {
            let (sa, sb) = support::rtp::connect_each_other(&a, &b, meta, meta);
            pairs.push((sa.id, sb.id));
            a.send_video(sa.id, &h264_picture(true, 3000, i)).unwrap();
            a.send_audio(sa.id, &[100i16; 160]).unwrap();
        }
        // Per backend: 2 I/O threads, 1 callback thread, the liveness thread.
        let io_and_engine = threads_now() - threads0;
        assert!(
            io_and_engine <= 10,
            "{io_and_engine} threads for 200 sessions"
        );
        // Media flowed on the shared threads (a floor: the machine may be loaded).
        assert!(support::rtp::wait_until(Duration::from_secs(10), || {
            frames.load(std::sync::atomic::Ordering::Relaxed) >= 100
        }));
        // Half end one by one, the rest with their backends.
        for (sa, sb) in pairs.drain(..100) {
            a.disconnect(sa).unwrap();
            // A's RTCP BYE may have ended B's session already.
            let _ = b.disconnect(sb);
        }
        drop(a);
        drop(b);
    }
    let (t, f) = settle(threads0, fds0);
    assert_eq!(t, threads0, "threads before/after");
    assert_eq!(f, fds0, "descriptors before/after");
}
