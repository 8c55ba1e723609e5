//! Sessions come and go without leaking threads or descriptors, and dropping a backend with live
//! sessions joins everything it started.

#[path = "rtp_backend_support/mod.rs"]
mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{h264_picture, loopback_config, meta};
use roomkit_media::backend::{RtpBackendConfig, RtpVideoBackend};

/// Thread and descriptor counts are process-wide: the tests here take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn threads_now() -> usize {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn fds_now() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Waits (bounded) for the counts to come back down: the kernel reaps joined threads shortly
/// after `join` returns.
fn settle(threads: usize, fds: usize) -> (usize, usize) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let (t, f) = (threads_now(), fds_now());
        if (t <= threads && f <= fds) || Instant::now() > deadline {
            return (t, f);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The counts once they stop moving (bounded): a thread joined a moment ago can still be listed
/// for a short while, and must not inflate a baseline.
fn steady() -> (usize, usize) {
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut last = (threads_now(), fds_now());
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let now = (threads_now(), fds_now());
        if now == last || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

#[test]
fn two_hundred_connect_disconnect_cycles_leak_nothing() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
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
    assert!(common::wait_until(Duration::from_secs(2), || disconnected
        .load(std::sync::atomic::Ordering::SeqCst)
        == 201));
}

#[test]
fn dropping_a_backend_with_live_sessions_joins_everything() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (threads0, fds0) = (threads_now(), fds_now());
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
        // 3 callback threads + 2 receive threads per session.
        assert_eq!(threads_now(), threads0 + 3 + 20);
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
