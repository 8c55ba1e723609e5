//! The process's threads and open descriptors, for the teardown tests. The counts are
//! process-wide: tests that use them take turns (`SERIAL`).

use std::time::{Duration, Instant};

/// Tests that count threads or descriptors hold this while they run.
pub static SERIAL: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

/// Threads of this process.
pub fn threads_now() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

/// Open descriptors of this process.
pub fn fds_now() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Waits (bounded) for the counts to come back down to `threads` and `fds`: the kernel reaps a
/// joined thread shortly after `join` returns. Returns the counts then.
pub fn settle(threads: usize, fds: usize) -> (usize, usize) {
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
pub fn steady() -> (usize, usize) {
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
