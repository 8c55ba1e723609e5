//! Teardown of the SIP backend, alone in its own test binary because it counts the process's
//! threads and descriptors: 1,000 calls one after another, ended both ways, leave none behind
//! and return every port, and dropping the backend ends live calls with BYE and joins its
//! threads.

use crate::support;

use std::time::{Duration, Instant};

use roomkit_media::backend::{DialOptions, SipVideoBackend, SipVoiceBackend};
use roomkit_media::prelude::*;
use support::process::{fds_now, threads_now, SERIAL};
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
    let _one = SERIAL.lock();
    let be = SipVideoBackend::new(config(15)).unwrap();
    let cap = be.port_pool().capacity();
    let uac = dialer(15);
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
    while placed < CALLS && began.elapsed() < CALLS_BUDGET {
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
    // A machine too slow for all of them still proves the point with a few hundred.
    assert!(placed >= 200, "only {placed} calls in {CALLS_BUDGET:?}");
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
