//! Teardown of the SIP backend, alone in its own test binary because it counts the process's
//! threads and descriptors: 1,000 calls one after another, ended both ways, leave none behind
//! and return every port, and dropping the backend ends live calls with BYE and joins its
//! threads.

use crate::support;

use std::time::{Duration, Instant};

use roomkit_media::backend::{
    CallState, DialOptions, OverloadConfig, SipBackendConfig, SipVideoBackend, SipVoiceBackend,
};
use roomkit_media::prelude::*;
use support::process::{fds_now, settle, steady, threads_now, SERIAL};
use support::sip::*;

const T: Duration = Duration::from_secs(5);

fn uri(be: &SipVoiceBackend) -> String {
    format!("sip:room@{}", sip_addr(be))
}

/// Calls placed one after another; 1,000 take about 8 s in a debug build here (2 cores under
/// other agents' builds), and the run stops at [`CALLS_BUDGET`] whatever the machine.
const CALLS: usize = 1000;
const CALLS_BUDGET: Duration = Duration::from_secs(120);

#[test]
fn a_thousand_sequential_calls_leave_no_threads_fds_or_ports_behind() {
    sequential_calls(15, 0, CALLS);
}

/// The same with the answering backend's RTP on 2 shared I/O threads (fewer calls: the point
/// is that streams leave a shared thread's table and their sockets close).
#[test]
fn sequential_calls_on_shared_io_threads_leave_nothing_behind() {
    sequential_calls(24, 2, 100);
}

/// `calls` calls one after another, ended both ways, through a backend whose RTP runs on
/// `io_threads` shared I/O threads (0: one per stream).
fn sequential_calls(slot: u16, io_threads: usize, calls: usize) {
    let _one = SERIAL.lock();
    let be = SipVideoBackend::new(SipBackendConfig {
        io_threads,
        ..config(slot)
    })
    .unwrap();
    let cap = be.port_pool().capacity();
    let uac = dialer(slot);
    let uac_cap = uac.port_pool().capacity();
    // One call first so lazily started threads exist in the baseline.
    start(&be);
    let c = dial_ok(&uac, &uri(&be), DialOptions::default());
    uac.hangup(c).unwrap();
    assert!(wait_until(T, || be.port_pool().available() == cap));
    assert!(wait_until(T, || uac.port_pool().available() == uac_cap));
    let (threads, fds) = (threads_now(), fds_now());
    let began = Instant::now();
    let mut placed = 0;
    while placed < calls && began.elapsed() < CALLS_BUDGET {
        let c = dial_ok(&uac, &uri(&be), DialOptions::default());
        let call_id = uac.call_id(c).expect("a live call has a Call-ID");
        if placed % 2 == 0 {
            uac.hangup(c).unwrap();
            assert!(wait_ended(&uac, c, T));
        } else {
            // The server may still be closing the previous call, so pick this call by its id.
            let id = be
                .all_sessions()
                .into_iter()
                .find(|s| be.call_id(s.id).as_deref() == Some(call_id.as_str()))
                .expect("the server holds the call just placed")
                .id;
            be.hangup(id).unwrap();
            assert!(wait_ended(&uac, c, T));
        }
        placed += 1;
    }
    // A machine too slow for all of them still proves the point with a fifth of them.
    assert!(
        placed >= calls / 5,
        "only {placed} calls in {CALLS_BUDGET:?}"
    );
    assert!(wait_until(T, || be.port_pool().available() == cap));
    assert!(wait_until(T, || uac.port_pool().available() == uac_cap));
    assert!(
        wait_until(T, || threads_now() <= threads),
        "threads {} > {threads}",
        threads_now()
    );
    assert!(
        wait_until(T, || fds_now() <= fds),
        "fds {} > {fds}",
        fds_now()
    );
    assert!(wait_until(T, || be.all_sessions().is_empty()));
    assert!(uac.all_sessions().is_empty());
    assert_eq!(be.sip_stats().calls_ended, placed as u64 + 1);
}

#[test]
fn drop_ends_live_calls_with_bye_and_joins() {
    let _one = SERIAL.lock();
    let threads = threads_now();
    let be = SipVoiceBackend::new(config(16)).unwrap();
    let ua = RawUa::new(start(&be));
    let mut leg = Leg::new();
    ua.establish(&mut leg, "", &offer(40000, None, "sendrecv"));
    drop(be);
    ua.expect_request("BYE", T);
    assert!(wait_until(T, || threads_now() <= threads));
}

/// 1,000 calls up at once, both ends' RTP on 2 shared I/O threads: the process gains a handful
/// of threads (not one per stream), and once the calls end (half hung up by each side) every
/// thread, descriptor and port is back. Voice calls, so that both ends' 2,000 ports fit in
/// 61000–64999, above the kernel's ephemeral range (no clash with sockets bound to port 0).
#[test]
fn a_thousand_concurrent_calls_on_shared_io_threads_leave_nothing_behind() {
    const CALLS: usize = 1000;
    let _one = SERIAL.lock();
    let end = |port_start: u16, user: &str| {
        SipVoiceBackend::new(SipBackendConfig {
            io_threads: 2,
            rtp_port_start: port_start,
            rtp_port_end: port_start + 1999,
            user: user.into(),
            // Waves of 100 INVITEs at once on a debug build and a loaded machine can back the
            // answerer's setup queue up past the overload limit, whose 503 would be right but
            // is not what this test is about (overload control has its own tests).
            overload: OverloadConfig {
                max_backlog: Duration::ZERO,
                ..OverloadConfig::default()
            },
            ..config(0)
        })
        .unwrap()
    };
    let (threads0, fds0) = steady();
    {
        let be = end(61000, "room");
        let uac = end(63000, "roomkit-caller");
        let (cap, uac_cap) = (be.port_pool().capacity(), uac.port_pool().capacity());
        assert!(cap >= CALLS && uac_cap >= CALLS);
        start(&be);
        start(&uac);
        let target = uri(&be);
        // Dialed in waves of 100 so that a burst does not overflow the SIP socket's buffer
        // (a lost INVITE would only be retransmitted, but slowly).
        let mut calls = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        for wave in 0..CALLS / 100 {
            let placed: Vec<_> = (0..100)
                .map(|_| uac.dial(&target, DialOptions::default()).unwrap())
                .collect();
            for &c in &placed {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                let p = uac.wait_call(c, left).expect("an answer");
                assert_eq!(
                    p.state,
                    CallState::Answered,
                    "wave {wave}: {p:?} {:?} {:?} free {} {}",
                    uac.sip_stats(),
                    be.sip_stats(),
                    uac.port_pool().available(),
                    be.port_pool().available()
                );
            }
            calls.extend(placed);
        }
        assert_eq!(uac.all_sessions().len(), CALLS);
        assert!(wait_until(T, || be.all_sessions().len() == CALLS));
        // 2 shared I/O threads per end and their few engine threads, not 2,000 stream threads.
        let grown = threads_now() - threads0;
        assert!(grown < 40, "{grown} threads for {CALLS} calls");
        for c in &calls {
            uac.send_audio(*c, &[100i16; 160]).unwrap();
        }
        // Half end from the caller's side, half (picked by Call-ID) from the answerer's.
        let theirs: std::collections::HashSet<String> = calls[CALLS / 2..]
            .iter()
            .map(|&c| uac.call_id(c).expect("a live call has a Call-ID"))
            .collect();
        for c in &calls[..CALLS / 2] {
            uac.hangup(*c).unwrap();
        }
        for s in be.all_sessions() {
            if be.call_id(s.id).is_some_and(|id| theirs.contains(&id)) {
                be.hangup(s.id).unwrap();
            }
        }
        let long = Duration::from_secs(30);
        // (The directory keeps only the latest finished calls' progress: count live ones.)
        assert!(
            wait_until(long, || uac.all_sessions().is_empty()
                && be.all_sessions().is_empty()),
            "calls left: {} dialed, {} answered",
            uac.all_sessions().len(),
            be.all_sessions().len()
        );
        assert!(wait_until(long, || be.port_pool().available() == cap));
        assert!(wait_until(long, || uac.port_pool().available() == uac_cap));
        assert!(
            wait_until(long, || be.sip_stats().calls_ended == CALLS as u64),
            "calls ended: {}; answering end {:?}; calling end {:?}",
            be.sip_stats().calls_ended,
            be.sip_stats(),
            uac.sip_stats()
        );
    }
    let (t, f) = settle(threads0, fds0);
    assert_eq!(t, threads0, "threads before/after");
    assert_eq!(f, fds0, "descriptors before/after");
}
