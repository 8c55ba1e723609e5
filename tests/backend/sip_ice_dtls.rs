//! ICE and DTLS-SRTP in SIP calls between two of our backends on loopback (issue 19): with
//! `ice` and `dtls_srtp: Mandatory` on both sides the call connects over `UDP/TLS/RTP/SAVPF`,
//! the streams key SRTP from the handshake and audio and video flow both ways; a plain offer to
//! a mandatory side gets 488; DTLS-SRTP optional against off still connects, in plain RTP;
//! DTLS-SRTP without ICE; hold and resume keep the transport; the CLI's `serve` and `call`.

use crate::support;

use std::io::{BufRead, BufReader};
use std::time::Duration;

use crossbeam_channel::unbounded;
use roomkit_media::backend::{CallState, DialOptions, SipBackendConfig, SipVideoBackend};
use roomkit_media::engine::SessionInfo;
use roomkit_media::prelude::*;
use roomkit_media::DtlsSrtpPolicy;
use support::peers;
use support::sip::*;

const T: Duration = Duration::from_secs(10);

/// Each test's ports, apart from the other SIP tests' and from each other's: the answering
/// backend on `config(70 + slot)` (56000 + 200 × slot, 200 ports), the caller on
/// 59100 + 100 × slot (100 ports).
fn caller(slot: u16, ice: bool, dtls_srtp: DtlsSrtpPolicy) -> SipVideoBackend {
    let start = 59100 + 100 * slot;
    let be = SipVideoBackend::new(SipBackendConfig {
        local_sip_addr: "127.0.0.1:0".parse().unwrap(),
        local_rtp_ip: [127, 0, 0, 1].into(),
        rtp_port_start: start,
        rtp_port_end: start + 99,
        user: "roomkit-caller".into(),
        ice,
        dtls_srtp,
        ..SipBackendConfig::default()
    })
    .unwrap();
    be.start().expect("the dialing backend starts");
    be
}

fn answerer(slot: u16, ice: bool, dtls_srtp: DtlsSrtpPolicy) -> SipVideoBackend {
    SipVideoBackend::new(SipBackendConfig {
        ice,
        dtls_srtp,
        ..config(70 + slot)
    })
    .unwrap()
}

fn uri(be: &SipVideoBackend) -> String {
    format!("sip:room@{}", sip_addr(be))
}

#[test]
fn a_plain_offer_to_a_mandatory_side_gets_488() {
    let be = answerer(0, true, DtlsSrtpPolicy::Mandatory);
    start(&be);
    let uac = caller(0, false, DtlsSrtpPolicy::Off);
    let call = uac.dial(&uri(&be), DialOptions::default()).unwrap();
    let p = uac.wait_call(call, T).expect("a final answer");
    assert_eq!((p.state, p.status), (CallState::Failed, 488), "{p:?}");
    assert!(wait_until(T, || be.port_pool().available()
        == be.port_pool().capacity()));
}

#[test]
fn optional_against_off_connects_in_plain_rtp() {
    let be = answerer(1, true, DtlsSrtpPolicy::Optional);
    let (tx, calls) = unbounded::<SessionInfo>();
    be.on_call(move |s| {
        let _ = tx.send(s.clone());
    });
    start(&be);
    let uac = caller(1, false, DtlsSrtpPolicy::Off);
    let call = dial_ok(&uac, &uri(&be), DialOptions::default());
    let info = calls.recv_timeout(T).expect("on_call");
    assert!(info.audio.srtp_suite.is_none(), "{info:?}");
    let ours = uac.get_session(call).unwrap();
    assert!(ours.audio.srtp_suite.is_none(), "{ours:?}");
    uac.hangup(call).unwrap();
    assert!(wait_ended(&uac, call, T));
}

/// ICE + DTLS-SRTP mandatory on both sides: the call connects over `UDP/TLS/RTP/SAVPF`, both
/// streams key SRTP from their handshakes, ICE selects a pair, and audio and video flow both
/// ways.
#[test]
fn ice_dtls_mandatory_call_carries_audio_and_video_both_ways() {
    secure_call(2, true, DtlsSrtpPolicy::Mandatory);
}

/// DTLS-SRTP without ICE (RFC 5763 alone, as SIP peers such as baresip `mediaenc=dtls_srtp`
/// do it), both sides optional: the offer's fingerprint is taken, the handshake runs to the
/// SDP addresses.
#[test]
fn dtls_without_ice_optional_call_carries_audio_and_video_both_ways() {
    secure_call(3, false, DtlsSrtpPolicy::Optional);
}

/// A call between two backends with `policy` (and ICE when `ice`) on both sides, on port slot
/// `slot`: both streams of both sides keyed by DTLS, media both ways. Floors, not exact
/// counts: media sent before the keys are agreed is held back (and counted), and the machine
/// may be loaded.
fn secure_call(slot: u16, ice: bool, policy: DtlsSrtpPolicy) {
    let be = answerer(slot, ice, policy);
    let (ctx, calls) = unbounded::<SessionInfo>();
    be.on_call(move |s| {
        let _ = ctx.send(s.clone());
    });
    let (vtx, be_video) = unbounded();
    be.on_video_received(move |_, f| {
        let _ = vtx.send(f.keyframe);
    });
    let (atx, be_audio) = unbounded();
    be.on_audio_received(move |_, f| {
        let _ = atx.send(f.pcm.len());
    });
    start(&be);
    let uac = caller(slot, ice, policy);
    let (uvtx, uac_video) = unbounded();
    uac.on_video_received(move |_, f| {
        let _ = uvtx.send(f.keyframe);
    });
    let (uatx, uac_audio) = unbounded();
    uac.on_audio_received(move |_, f| {
        let _ = uatx.send(f.pcm.len());
    });
    let dialed = std::time::Instant::now();
    let call = dial_ok(&uac, &uri(&be), DialOptions::default());
    let info = calls.recv_timeout(T).expect("on_call");
    assert!(info.video.is_some(), "{info:?}");

    // Both sides' streams are keyed by DTLS (SRTP from the handshake) over an ICE pair.
    let keyed = |stats: &roomkit_media::engine::SessionStats| {
        let v = stats.video.as_ref();
        stats.audio.dtls_state == 3 && v.is_some_and(|v| v.dtls_state == 3)
    };
    assert!(
        wait_until(T, || uac.stats(call).is_ok_and(|s| keyed(&s))
            && be.stats(info.id).is_ok_and(|s| keyed(&s))),
        "DTLS-SRTP keyed on both sides: {:?} / {:?}",
        uac.stats(call).map(|s| s.audio),
        be.stats(info.id).map(|s| s.audio)
    );
    // Reported, not asserted: how long from dialling until both sides' streams were keyed.
    eprintln!(
        "sip_ice_dtls (ice {ice}, {policy}): dial to keyed on both sides {:?}",
        dialed.elapsed()
    );

    // Media both ways, in bounded rounds until each side has heard enough of the other.
    let (mut pictures_at_be, mut pictures_at_uac, mut audio_at_be, mut audio_at_uac) =
        (0usize, 0usize, 0usize, 0usize);
    for i in 0..150u32 {
        let key = i % 15 == 0;
        uac.send_video(call, &h264_picture(key, 1500, i)).unwrap();
        be.send_video(info.id, &h264_picture(key, 1500, 1000 + i))
            .unwrap();
        uac.send_audio(call, &[500i16; 160]).unwrap();
        be.send_audio(info.id, &[-500i16; 160]).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        pictures_at_be += be_video.try_iter().count();
        pictures_at_uac += uac_video.try_iter().count();
        audio_at_be += be_audio.try_iter().count();
        audio_at_uac += uac_audio.try_iter().count();
        if pictures_at_be >= 20 && pictures_at_uac >= 20 && audio_at_be >= 20 && audio_at_uac >= 20
        {
            break;
        }
    }
    assert!(
        pictures_at_be >= 20 && pictures_at_uac >= 20,
        "pictures both ways: {pictures_at_be} at the answerer, {pictures_at_uac} at the caller"
    );
    eprintln!(
        "sip_ice_dtls (ice {ice}, {policy}): pictures {pictures_at_be} / {pictures_at_uac}, audio frames \
         {audio_at_be} / {audio_at_uac} (answerer / caller)"
    );
    assert!(
        audio_at_be >= 20 && audio_at_uac >= 20,
        "audio both ways: {audio_at_be} frames at the answerer, {audio_at_uac} at the caller"
    );

    // Hold and resume (two re-INVITEs): the transport stays (same fingerprints, role and ICE
    // credentials; no new handshake), and media flows again on it.
    uac.hold(call).unwrap();
    assert!(
        wait_until(T, || be.is_held(info.id)),
        "the hold re-INVITE was answered"
    );
    uac.resume(call).unwrap();
    assert!(
        wait_until(T, || !be.is_held(info.id)),
        "the resume was answered"
    );
    let (mut after_at_be, mut after_at_uac) = (0usize, 0usize);
    let _ = (be_video.try_iter().count(), uac_video.try_iter().count());
    for i in 0..150u32 {
        uac.send_video(call, &h264_picture(i % 15 == 0, 1500, 200 + i))
            .unwrap();
        be.send_video(info.id, &h264_picture(i % 15 == 0, 1500, 1200 + i))
            .unwrap();
        std::thread::sleep(Duration::from_millis(20));
        after_at_be += be_video.try_iter().count();
        after_at_uac += uac_video.try_iter().count();
        if after_at_be >= 10 && after_at_uac >= 10 {
            break;
        }
    }
    assert!(
        after_at_be >= 10 && after_at_uac >= 10,
        "pictures both ways after hold and resume: {after_at_be} / {after_at_uac}"
    );
    assert_eq!(uac.sip_stats().calls_ended, 0, "the call goes on");

    let (ours, theirs) = (uac.stats(call).unwrap(), be.stats(info.id).unwrap());
    let their_video = theirs.video.as_ref().unwrap();
    for s in [
        &ours.audio,
        ours.video.as_ref().unwrap(),
        &theirs.audio,
        their_video,
    ] {
        if ice {
            assert_eq!(s.ice_state, 3, "ICE connected: {s:?}");
            assert!(s.stun_accepted > 0 && s.ice_remote.is_some(), "{s:?}");
        } else {
            assert_eq!((s.ice_state, s.stun_accepted), (0, 0), "no ICE: {s:?}");
        }
        assert_eq!((s.srtp_auth_failed, s.stun_refused), (0, 0), "{s:?}");
        assert_eq!(s.dtls_state, 3, "still the first handshake's keys: {s:?}");
    }
    // With ICE both backends bundle (RFC 9143): video shares the audio socket, on both sides;
    // without ICE each stream keeps its own.
    for s in [
        uac.get_session(call).unwrap(),
        be.get_session(info.id).unwrap(),
    ] {
        let v = s.video.as_ref().unwrap();
        assert_eq!(
            v.local_addr == s.audio.local_addr,
            ice,
            "bundled iff ICE: {s:?}"
        );
    }
    // The application sees an SRTP suite on every stream (keyed by DTLS).
    let session = uac.get_session(call).unwrap();
    assert!(session.audio.srtp_suite.is_some(), "{session:?}");
    assert!(session.video.as_ref().unwrap().srtp_suite.is_some());
    uac.hangup(call).unwrap();
    assert!(wait_ended(&uac, call, T));
}

/// The CLI: `serve --ice --dtls-srtp mandatory --echo` and `call --ice --dtls-srtp mandatory`.
/// The caller's summary names the suite the handshake agreed on both streams, and its video
/// and tone come back from the echo.
#[test]
fn cli_call_to_serve_with_ice_and_dtls_srtp() {
    let flags = ["--ice", "--dtls-srtp", "mandatory"];
    let mut serve_args = vec!["--echo", "--max-calls", "1"];
    serve_args.extend_from_slice(&flags);
    let (mut serve, port) = peers::spawn_serve(60, "57400-57499", &serve_args);
    let uri = format!("sip:echo@127.0.0.1:{port}");
    let mut call_args = vec![
        "call",
        uri.as_str(),
        "--rtp-ports",
        "57500-57599",
        "--seconds",
        "2.5",
    ];
    call_args.extend_from_slice(&flags);
    // serve is listening once it has printed its first line.
    let mut lines = BufReader::new(serve.stdout.take().unwrap()).lines();
    assert!(lines.next().unwrap().unwrap().contains("listening"));
    let out = peers::run(60, peers::bin().to_str().unwrap(), &call_args);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}");
    let summary: serde_json::Value = text
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no summary: {text}"));
    for key in ["audio_srtp", "video_srtp"] {
        assert!(summary[key].is_string(), "{key} keyed by DTLS: {text}");
    }
    // 2.5 s at 30 fps is 75 pictures; the echo starts once the keys are agreed and a loaded
    // machine starts the media late: floors well below.
    assert!(summary["frames_received"].as_i64().unwrap() >= 20, "{text}");
    assert!(
        summary["audio_frames_received"].as_i64().unwrap() >= 30,
        "{text}"
    );
    let served = peers::wait_bounded(serve, Duration::from_secs(20));
    assert!(served.status.success());
}

/// Video added by a re-INVITE to an audio-only ICE + DTLS-SRTP call runs on a transport of its
/// own (its port, its handshake, its ICE checks), and its pictures arrive.
#[test]
fn video_added_to_an_ice_dtls_call_is_keyed_and_flows() {
    let be = answerer(4, true, DtlsSrtpPolicy::Mandatory);
    let (ctx, calls) = unbounded::<SessionInfo>();
    be.on_call(move |s| {
        let _ = ctx.send(s.clone());
    });
    let (ftx, frames) = unbounded();
    be.on_video_received(move |_, f| {
        let _ = ftx.send(f.keyframe);
    });
    start(&be);
    let uac = caller(4, true, DtlsSrtpPolicy::Mandatory);
    let call = dial_ok(
        &uac,
        &uri(&be),
        DialOptions {
            audio_only: true,
            ..DialOptions::default()
        },
    );
    let info = calls.recv_timeout(T).unwrap();
    assert!(info.video.is_none());
    uac.set_video(call, true).unwrap();
    assert!(wait_until(T, || be.get_video_session(info.id).is_some()));
    let keyed = |s: Option<roomkit_media::engine::SessionStats>| {
        s.and_then(|s| s.video)
            .is_some_and(|v| v.dtls_state == 3 && v.ice_state == 3)
    };
    assert!(
        wait_until(T, || keyed(uac.stats(call).ok())
            && keyed(be.stats(info.id).ok())),
        "the added video keyed: {:?}",
        be.stats(info.id).map(|s| s.video)
    );
    let mut got = 0usize;
    for i in 0..150u32 {
        uac.send_video(call, &h264_picture(i % 15 == 0, 1500, i))
            .unwrap();
        std::thread::sleep(Duration::from_millis(20));
        got += frames.try_iter().count();
        if got >= 10 {
            break;
        }
    }
    assert!(got >= 10, "pictures on the added video: {got}");
    // The audio's transport kept its handshake.
    assert_eq!(be.stats(info.id).unwrap().audio.dtls_state, 3);
    uac.hangup(call).unwrap();
    assert!(wait_ended(&uac, call, T));
}

/// A bundled call (ICE + DTLS-SRTP on both sides) that drops its video by re-INVITE: the video
/// member ends alone, audio goes on over the same socket and handshake.
#[test]
fn bundled_call_drops_video_and_audio_goes_on() {
    let be = answerer(5, true, DtlsSrtpPolicy::Mandatory);
    let (ctx, calls) = unbounded::<SessionInfo>();
    be.on_call(move |s| {
        let _ = ctx.send(s.clone());
    });
    let (atx, be_audio) = unbounded();
    be.on_audio_received(move |_, f| {
        let _ = atx.send(f.pcm.len());
    });
    start(&be);
    let uac = caller(5, true, DtlsSrtpPolicy::Mandatory);
    let call = dial_ok(&uac, &uri(&be), DialOptions::default());
    let info = calls.recv_timeout(T).expect("on_call");
    let bundled = |s: &SessionInfo| {
        s.video
            .as_ref()
            .is_some_and(|v| v.local_addr == s.audio.local_addr)
    };
    assert!(bundled(&info), "{info:?}");
    assert!(bundled(&uac.get_session(call).unwrap()));
    let keyed = |s: Option<roomkit_media::engine::SessionStats>| {
        s.is_some_and(|s| s.audio.dtls_state == 3 && s.audio.ice_state == 3)
    };
    assert!(wait_until(T, || keyed(uac.stats(call).ok())
        && keyed(be.stats(info.id).ok())));
    // Video flows first, so that each side knows the other's video source.
    for i in 0..15u32 {
        uac.send_video(call, &h264_picture(i == 0, 1500, i))
            .unwrap();
        be.send_video(info.id, &h264_picture(i == 0, 1500, 100 + i))
            .unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    uac.set_video(call, false).unwrap();
    assert!(
        wait_until(T, || be.get_video_session(info.id).is_none()),
        "video removed"
    );
    let _ = be_audio.try_iter().count();
    let mut got = 0usize;
    for _ in 0..150 {
        uac.send_audio(call, &[500i16; 160]).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        got += be_audio.try_iter().count();
        if got >= 20 {
            break;
        }
    }
    assert!(got >= 20, "audio after video went: {got}");
    let s = be.stats(info.id).unwrap();
    assert!(s.video.is_none());
    assert_eq!(
        (s.audio.dtls_state, s.audio.srtp_auth_failed),
        (3, 0),
        "{:?}",
        s.audio
    );
    uac.hangup(call).unwrap();
    assert!(wait_ended(&uac, call, T));
}
