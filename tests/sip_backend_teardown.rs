//! Teardown of the SIP backend, alone in its own test binary because it counts the process's
//! threads and descriptors: 50 calls ended both ways leave none behind and return every port,
//! and dropping the backend ends live calls with BYE and joins its threads.

mod support;

use std::time::Duration;

use roomkit_media::backend::{SipCaller, SipCallerConfig, SipVideoBackend, SipVoiceBackend};
use roomkit_media::prelude::*;
use roomkit_media::VideoCodec;
use support::process::{fds_now, threads_now, SERIAL};
use support::sip::*;

const T: Duration = Duration::from_secs(5);

fn caller(slot: u16, video: bool) -> SipCaller {
    let start = 52000 + slot * 100;
    SipCaller::new(SipCallerConfig {
        video_codecs: if video {
            vec![VideoCodec::H264]
        } else {
            vec![]
        },
        rtp_port_start: start,
        rtp_port_end: start + 99,
        ..SipCallerConfig::default()
    })
    .unwrap()
}

fn uri(be: &SipVoiceBackend) -> String {
    format!("sip:room@{}", sip_addr(be))
}

#[test]
fn fifty_calls_leave_no_threads_fds_or_ports_behind() {
    let _one = SERIAL.lock();
    let be = SipVideoBackend::new(config(15)).unwrap();
    let cap = be.port_pool().capacity();
    let uac = caller(15, true);
    // One call first so lazily started threads exist in the baseline.
    let target = start(&be);
    let c = uac.call(&uri(&be), target).unwrap();
    assert!(uac.hangup(&c, T));
    assert!(wait_until(T, || be.port_pool().available() == cap));
    let (threads, fds) = (threads_now(), fds_now());
    for i in 0..50 {
        let c = uac.call(&uri(&be), sip_addr(&be)).unwrap();
        if i % 2 == 0 {
            assert!(uac.hangup(&c, T));
        } else {
            // The server may still be closing the previous call, so pick this call by its id.
            let id = be
                .all_sessions()
                .into_iter()
                .find(|s| be.call_id(s.id).as_deref() == Some(c.call_id.as_str()))
                .expect("the server holds the call just placed")
                .id;
            be.hangup(id).unwrap();
            assert!(uac.wait_remote_bye(&c, T));
        }
    }
    assert!(wait_until(T, || be.port_pool().available() == cap));
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
    assert_eq!(be.sip_stats().calls_ended, 51);
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
