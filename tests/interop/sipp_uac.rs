//! Our UAC (`dial` on a SIP backend) against sipp as the far end (scenarios in
//! `tests/sipp/uas/`): 180 then 200, 183 with SDP then 200 (early media), 486, a 302 to another
//! sipp, 401 and 407 challenges (sipp checks the digest), no answer (CANCEL after the ring
//! time, 487), and a re-INVITE from the far end that holds us. Each test checks the progress
//! the application saw and that sipp's scenario passed (exit 0).

use crate::support;

use std::time::Duration;

use crossbeam_channel::{unbounded, Receiver};
use roomkit_media::backend::{
    CallProgress, CallState, DialOptions, SessionId, SipCredentials, SipVideoBackend,
};
use roomkit_media::prelude::*;
use support::peers;
use support::sip::{dialer, h264_picture, wait_ended, wait_until};
use support::sipp::{scenario, Sipp};

const T: Duration = Duration::from_secs(10);

/// sipp waiting as the far end with `tests/sipp/uas/NAME`.
fn far_end(name: &str, extra: &[&str]) -> Sipp {
    let s = Sipp::spawn(&scenario(&format!("uas/{name}")), None, extra);
    s.wait_listening();
    s
}

/// A dialing backend and the progress of its calls.
fn phone(slot: u16) -> (SipVideoBackend, Receiver<(SessionId, CallProgress)>) {
    let be = dialer(slot);
    let (tx, rx) = unbounded();
    be.on_call_state(move |s, p| {
        let _ = tx.send((s, p.clone()));
    });
    (be, rx)
}

/// The progress of call `s` until it settles (answered, failed or ended).
fn settle(rx: &Receiver<(SessionId, CallProgress)>, s: SessionId) -> Vec<CallProgress> {
    let mut seen = Vec::new();
    while let Ok((id, p)) = rx.recv_timeout(T) {
        if id != s {
            continue;
        }
        let done = matches!(
            p.state,
            CallState::Answered | CallState::Failed | CallState::Ended
        );
        seen.push(p);
        if done {
            return seen;
        }
    }
    panic!("call {s} never settled: {seen:?}");
}

fn states(p: &[CallProgress]) -> Vec<(CallState, u16)> {
    p.iter().map(|p| (p.state, p.status)).collect()
}

fn passed(sipp: Sipp) {
    if let Err(e) = sipp.wait(Duration::from_secs(60)) {
        panic!("{e}");
    }
}

#[test]
fn ringing_then_answered_then_we_hang_up() {
    if !peers::have_peers(&["sipp"]) {
        return;
    }
    let (be, rx) = phone(20);
    let far = far_end("ringing_then_answer.xml", &[]);
    let s = be
        .dial(&format!("sip:bob@{}", far.addr()), DialOptions::default())
        .unwrap();
    let p = settle(&rx, s);
    // sipp's 100 Trying shows as Trying again; what matters is the order of the rest.
    let steps: Vec<(CallState, u16)> = states(&p).into_iter().filter(|st| st.1 != 100).collect();
    assert_eq!(
        steps,
        [
            (CallState::Trying, 0),
            (CallState::Ringing, 180),
            (CallState::Answered, 200)
        ]
    );
    let info = be.get_video_session(s).expect("an A/V session");
    assert_eq!(info.video.unwrap().remote_addr.port(), far.media_port + 2);
    for i in 0..3 {
        be.send_video(s, &h264_picture(i == 0, 2000, i)).unwrap();
    }
    assert!(be.stats(s).unwrap().video.unwrap().packets_sent >= 3);
    be.hangup(s).unwrap();
    assert!(wait_ended(&be, s, T));
    passed(far);
    assert!(wait_until(T, || be.sip_stats().byes_answered == 1));
}

#[test]
fn early_media_before_the_answer() {
    if !peers::have_peers(&["sipp"]) {
        return;
    }
    let (be, rx) = phone(21);
    let far = far_end("early_media_then_answer.xml", &[]);
    let s = be
        .dial(&format!("sip:bob@{}", far.addr()), DialOptions::default())
        .unwrap();
    // The session exists (media flows) from the 183 on, before the answer.
    let early = loop {
        let (id, p) = rx.recv_timeout(T).expect("progress");
        if id == s && p.state != CallState::Trying {
            break p;
        }
    };
    assert_eq!((early.state, early.status), (CallState::EarlyMedia, 183));
    assert!(be.get_session(s).is_some(), "media before the answer");
    be.send_audio(s, &[0; 160]).unwrap();
    let p = settle(&rx, s);
    assert_eq!(states(&p), [(CallState::Answered, 200)]);
    be.hangup(s).unwrap();
    assert!(wait_ended(&be, s, T));
    passed(far);
}

#[test]
fn busy_fails_with_486_and_frees_the_ports() {
    if !peers::have_peers(&["sipp"]) {
        return;
    }
    let (be, rx) = phone(22);
    let far = far_end("busy.xml", &[]);
    let s = be
        .dial(&format!("sip:bob@{}", far.addr()), DialOptions::default())
        .unwrap();
    let last = settle(&rx, s).pop().unwrap();
    assert_eq!((last.state, last.status), (CallState::Failed, 486));
    assert_eq!(last.reason, "Busy Here");
    assert!(be.get_session(s).is_none());
    assert!(be.hangup(s).is_err(), "nothing left to hang up");
    assert_eq!(be.port_pool().available(), be.port_pool().capacity());
    passed(far);
}

#[test]
fn a_redirect_to_another_sipp_is_followed() {
    if !peers::have_peers(&["sipp"]) {
        return;
    }
    let (be, rx) = phone(23);
    let second = far_end("ringing_then_answer.xml", &[]);
    let target = format!("sip:bob2@{}", second.addr());
    let first = far_end("redirect.xml", &["-set", "target", &target]);
    let s = be
        .dial(&format!("sip:bob@{}", first.addr()), DialOptions::default())
        .unwrap();
    let last = settle(&rx, s).pop().unwrap();
    assert_eq!((last.state, last.status), (CallState::Answered, 200));
    passed(first);
    be.hangup(s).unwrap();
    assert!(wait_ended(&be, s, T));
    passed(second);
}

fn challenged(slot: u16, scenario_name: &str) {
    let (be, rx) = phone(slot);
    let far = far_end(scenario_name, &[]);
    let s = be
        .dial(
            &format!("sip:bob@{}", far.addr()),
            DialOptions {
                credentials: Some(SipCredentials::new("alice", "secret")),
                ..DialOptions::default()
            },
        )
        .unwrap();
    let last = settle(&rx, s).pop().unwrap();
    assert_eq!((last.state, last.status), (CallState::Answered, 200));
    be.hangup(s).unwrap();
    assert!(wait_ended(&be, s, T));
    passed(far);
}

#[test]
fn a_401_challenge_is_answered() {
    if !peers::have_peers(&["sipp"]) {
        return;
    }
    challenged(24, "challenge_401.xml");
}

#[test]
fn a_407_challenge_is_answered() {
    if !peers::have_peers(&["sipp"]) {
        return;
    }
    challenged(25, "challenge_407.xml");
}

#[test]
fn no_answer_is_cancelled_after_the_ring_time() {
    if !peers::have_peers(&["sipp"]) {
        return;
    }
    let (be, rx) = phone(26);
    let far = far_end("no_answer.xml", &[]);
    let s = be
        .dial(
            &format!("sip:bob@{}", far.addr()),
            DialOptions {
                ring_timeout: Some(Duration::from_secs(2)),
                ..DialOptions::default()
            },
        )
        .unwrap();
    let p = settle(&rx, s);
    assert!(p.iter().any(|p| p.state == CallState::Ringing), "{p:?}");
    let last = p.last().unwrap();
    assert_eq!((last.state, last.status), (CallState::Failed, 487), "{p:?}");
    assert!(last.reason.contains("no answer within 2 s"), "{last:?}");
    passed(far);
}

#[test]
fn a_reinvite_from_the_far_end_holds_us() {
    if !peers::have_peers(&["sipp"]) {
        return;
    }
    let (be, rx) = phone(27);
    let far = far_end("reinvite_from_far_end.xml", &[]);
    let s = be
        .dial(&format!("sip:bob@{}", far.addr()), DialOptions::default())
        .unwrap();
    let last = settle(&rx, s).pop().unwrap();
    assert_eq!(last.state, CallState::Answered);
    assert!(!be.is_held(s));
    assert!(wait_until(T, || be.is_held(s)), "the far end held us");
    let sent = be.stats(s).unwrap().audio.packets_sent;
    be.send_audio(s, &[0; 800]).unwrap();
    assert_eq!(
        be.stats(s).unwrap().audio.packets_sent,
        sent,
        "held: nothing sent"
    );
    // Then it hangs up.
    let ended = wait_ended(&be, s, T);
    passed(far);
    assert!(ended);
}

/// The command line's `call` to a busy far end: the progress events on stdout, the reason on
/// stderr, a failing exit code, and no usage text (only bad arguments print that).
#[test]
fn the_cli_call_to_a_busy_phone_fails_with_the_reason() {
    if !peers::have_peers(&["sipp"]) {
        return;
    }
    let far = far_end("busy.xml", &[]);
    let call = peers::spawn(
        60,
        peers::bin().to_str().unwrap(),
        &["call", &format!("sip:bob@{}", far.addr()), "--seconds", "2"],
    );
    let out = peers::wait_bounded(call, Duration::from_secs(60));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("486"), "{stderr}");
    assert!(
        !stderr.contains("usage:") && !stdout.contains("usage:"),
        "{stderr}"
    );
    passed(far);
}
