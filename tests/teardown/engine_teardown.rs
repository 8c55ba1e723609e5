//! Engine I/O threads and sockets come and go without leaking threads or descriptors, and a
//! thread blocked in a receive is woken and joined quickly.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support;

use roomkit_media::engine::socket::{poll_readable, Wait};
use roomkit_media::engine::{IoThread, MediaSocket, RecvBatch};
use support::process::{settle, steady, SERIAL};

fn lo() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// The receive loop the engine's stream threads use: poll on socket + waker, drain in batches.
fn receive_loop(
    sock: MediaSocket,
    counter: Arc<AtomicU64>,
) -> impl FnOnce(roomkit_media::engine::StopSignal) {
    move |stop| {
        let mut batch = RecvBatch::new(16, 2048);
        let mut ready = [false; 2];
        let fds = [std::os::fd::AsRawFd::as_raw_fd(&sock), stop.wake_fd()];
        while !stop.is_stopped() {
            if poll_readable(&fds, &mut ready, Duration::from_millis(100)).is_err() {
                break;
            }
            if ready[0] {
                let n = batch.recv(&sock, Wait::No).unwrap_or(0);
                counter.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
    }
}

#[test]
fn two_hundred_create_stop_cycles_leave_no_threads_or_fds() {
    let _g = SERIAL.lock();
    let (threads0, fds0) = steady();
    let tx = MediaSocket::bind(lo()).unwrap();
    for i in 0..200 {
        let sock = MediaSocket::bind(lo()).unwrap();
        let addr = sock.local_addr();
        let count = Arc::new(AtomicU64::new(0));
        let mut t =
            IoThread::spawn(format!("t-rx-{i}"), receive_loop(sock, count.clone())).unwrap();
        tx.send_to(b"x", addr).unwrap();
        let deadline = Instant::now() + Duration::from_secs(2);
        while count.load(Ordering::Relaxed) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(200));
        }
        assert_eq!(count.load(Ordering::Relaxed), 1, "cycle {i}");
        t.stop();
    }
    drop(tx);
    let (t, f) = settle(threads0, fds0);
    assert_eq!(t, threads0, "threads leaked");
    assert_eq!(f, fds0, "descriptors leaked");
}

/// Threads asked to stop all together and then joined one by one (how the SIP backend's reaper
/// closes a batch of sessions): every one ends, and `stop` after `request_stop` is harmless.
#[test]
fn threads_asked_to_stop_together_are_all_joined() {
    let _g = SERIAL.lock();
    let (threads0, fds0) = steady();
    let mut threads: Vec<IoThread> = (0..100)
        .map(|i| {
            let sock = MediaSocket::bind(lo()).unwrap();
            let count = Arc::new(AtomicU64::new(0));
            IoThread::spawn(format!("t-batch-{i}"), receive_loop(sock, count)).unwrap()
        })
        .collect();
    for t in &threads {
        t.request_stop();
    }
    for t in &mut threads {
        t.stop();
    }
    drop(threads);
    let (t, f) = settle(threads0, fds0);
    assert_eq!(t, threads0, "threads leaked");
    assert_eq!(f, fds0, "descriptors leaked");
}

#[test]
fn polling_thread_is_woken_and_joined_quickly() {
    let _g = SERIAL.lock();
    let sock = MediaSocket::bind(lo()).unwrap();
    let count = Arc::new(AtomicU64::new(0));
    // A poll timeout far longer than the test: only the waker can end it in time.
    let mut t = IoThread::spawn("t-wake".into(), move |stop| {
        let fds = [std::os::fd::AsRawFd::as_raw_fd(&sock), stop.wake_fd()];
        let mut ready = [false; 2];
        while !stop.is_stopped() {
            let _ = poll_readable(&fds, &mut ready, Duration::from_secs(3600));
            count.fetch_add(1, Ordering::Relaxed);
        }
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let t0 = Instant::now();
    t.stop();
    // Without the waker the poll would last an hour; 2 s is room for a loaded machine.
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "stop took {:?}",
        t0.elapsed()
    );
}

#[test]
fn thread_blocked_in_recvmmsg_is_woken_by_shutdown() {
    let _g = SERIAL.lock();
    let sock = Arc::new(MediaSocket::bind(lo()).unwrap());
    let s = sock.clone();
    let h = std::thread::spawn(move || {
        // No read timeout: without the wake-up this would block forever.
        let mut batch = RecvBatch::new(8, 2048);
        let r = batch.recv(&s, Wait::ForOne);
        (r, batch.get(0).data.len())
    });
    std::thread::sleep(Duration::from_millis(50));
    let t0 = Instant::now();
    sock.wake_receivers();
    let (r, len) = h.join().unwrap();
    // Without the wake-up the receive would block for ever; 2 s is room for a loaded machine.
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "wake took {:?}",
        t0.elapsed()
    );
    assert!(r.unwrap() >= 1);
    assert_eq!(len, 0);
}
