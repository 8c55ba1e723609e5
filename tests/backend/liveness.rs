//! Sessions end by themselves when the peer leaves: RTP backends close the session and report
//! why (`SessionInfo::end_reason`), SIP backends also hang the call up with BYE. Short
//! inactivity timeouts keep the tests quick.
//!
//! The rule under test: a stream whose peer sent RTCP BYE, or nothing for the inactivity
//! timeout, is dead; the session ends when all its streams are dead. A BYE on the video stream
//! alone leaves the session up.

use crate::support;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use crossbeam_channel::{unbounded, Receiver};
use roomkit_media::backend::{
    EndReason, ResilienceConfig, RtpBackendConfig, RtpVideoBackend, RtpVoiceBackend,
    SipVideoBackend, SipVoiceBackend,
};
use roomkit_media::engine::{SessionId, SessionInfo};
use roomkit_media::prelude::*;
use support::rtp::{collect, loopback_config, meta, pair};
use support::sip::{body, config, start, Leg, RawUa};

const T: Duration = Duration::from_secs(5);

fn short_timeout(ms: u64) -> ResilienceConfig {
    ResilienceConfig {
        inactivity_timeout: Duration::from_millis(ms),
        ..ResilienceConfig::default()
    }
}

/// The end reasons `on_client_disconnected` reports, by session.
fn ends(be: &impl MediaBackend) -> Receiver<(SessionId, Option<EndReason>)> {
    let (tx, rx) = unbounded();
    be.on_client_disconnected(move |s: &SessionInfo| {
        let _ = tx.send((s.id, s.end_reason));
    });
    rx
}

/// An RTCP receiver report with no blocks followed by a BYE, from `ssrc`.
fn rtcp_bye(ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 201, 0, 1];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0x81, 203, 0, 1]);
    p.extend_from_slice(&ssrc.to_be_bytes());
    p
}

/// One RTP packet of PCMU silence.
fn rtp_packet(ssrc: u32, seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0xff; 160]);
    p
}

#[test]
fn rtp_session_whose_peer_is_silent_ends_with_rtp_timeout() {
    let be = RtpVoiceBackend::new(loopback_config(RtpBackendConfig {
        resilience: short_timeout(400),
        ..RtpBackendConfig::default()
    }))
    .unwrap();
    let ended = ends(&be);
    // A peer that never sends anything.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let remote = silent.local_addr().unwrap();
    let s = be.connect("r", "p", meta(remote, remote)).unwrap();
    let (id, reason) = ended.recv_timeout(T).expect("the session ends by itself");
    assert_eq!((id, reason), (s.id, Some(EndReason::RtpTimeout)));
    assert!(be.get_session(s.id).is_none(), "the session is gone");
    assert!(be.disconnect(s.id).is_err(), "nothing left to disconnect");
}

#[test]
fn rtp_session_with_timeout_zero_stays_up() {
    let be = RtpVoiceBackend::new(loopback_config(RtpBackendConfig {
        resilience: short_timeout(0),
        ..RtpBackendConfig::default()
    }))
    .unwrap();
    let ended = ends(&be);
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let remote = silent.local_addr().unwrap();
    let s = be.connect("r", "p", meta(remote, remote)).unwrap();
    assert!(ended.recv_timeout(Duration::from_millis(800)).is_err());
    be.disconnect(s.id).unwrap();
    assert_eq!(
        ended.recv_timeout(T).unwrap(),
        (s.id, Some(EndReason::LocalHangup)),
        "the application's own disconnect says so"
    );
}

#[test]
fn peer_disconnect_ends_the_other_side_with_rtcp_bye() {
    let p = pair(RtpBackendConfig {
        resilience: short_timeout(0),
        ..RtpBackendConfig::default()
    });
    let a_ends = ends(&p.a);
    let b_ends = ends(&p.b);
    // Traffic both ways first, so each side knows the other's SSRC.
    for i in 0..3u32 {
        p.a.send_video(p.a_id, &support::h264_picture(i == 0, 500, i))
            .unwrap();
        p.b.send_video(p.b_id, &support::h264_picture(i == 0, 500, i))
            .unwrap();
        p.a.send_audio(p.a_id, &[0i16; 160]).unwrap();
        p.b.send_audio(p.b_id, &[0i16; 160]).unwrap();
    }
    std::thread::sleep(Duration::from_millis(100));
    p.a.disconnect(p.a_id).unwrap();
    assert_eq!(
        a_ends.recv_timeout(T).unwrap(),
        (p.a_id, Some(EndReason::LocalHangup))
    );
    assert_eq!(
        b_ends
            .recv_timeout(T)
            .expect("B ends when A said BYE on both streams"),
        (p.b_id, Some(EndReason::RtcpBye))
    );
    assert!(p.b.get_session(p.b_id).is_none());
}

#[test]
fn rtcp_bye_on_video_alone_keeps_the_session() {
    let be = RtpVideoBackend::new(loopback_config(RtpBackendConfig {
        resilience: short_timeout(0),
        ..RtpBackendConfig::default()
    }))
    .unwrap();
    let _rx = collect(&be);
    let ended = ends(&be);
    let audio_peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    let video_peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    let s = be
        .connect(
            "r",
            "p",
            meta(
                audio_peer.local_addr().unwrap(),
                video_peer.local_addr().unwrap(),
            ),
        )
        .unwrap();
    let audio_rtcp: SocketAddr = s.audio.local_rtcp_addr;
    let video_rtcp: SocketAddr = s.video.as_ref().unwrap().local_rtcp_addr;
    // The peer's RTCP comes from its RTP port + 1 (no rtcp-mux).
    let audio_peer_rtcp = bind_next(&audio_peer);
    let video_peer_rtcp = bind_next(&video_peer);
    video_peer_rtcp
        .send_to(&rtcp_bye(0x1111), video_rtcp)
        .unwrap();
    assert!(
        ended.recv_timeout(Duration::from_millis(700)).is_err(),
        "audio is still up: the session goes on"
    );
    assert!(be.get_session(s.id).is_some());
    audio_peer_rtcp
        .send_to(&rtcp_bye(0x2222), audio_rtcp)
        .unwrap();
    assert_eq!(
        ended.recv_timeout(T).expect("every stream said BYE"),
        (s.id, Some(EndReason::RtcpBye))
    );
}

#[test]
fn media_after_a_bye_brings_the_stream_back() {
    let be = RtpVideoBackend::new(loopback_config(RtpBackendConfig {
        resilience: short_timeout(0),
        ..RtpBackendConfig::default()
    }))
    .unwrap();
    let _rx = collect(&be);
    let ended = ends(&be);
    let audio_peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    let video_peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    let s = be
        .connect(
            "r",
            "p",
            meta(
                audio_peer.local_addr().unwrap(),
                video_peer.local_addr().unwrap(),
            ),
        )
        .unwrap();
    let audio_peer_rtcp = bind_next(&audio_peer);
    let video_peer_rtcp = bind_next(&video_peer);
    // Audio: BYE, then media again (a new source took over): the stream lives.
    audio_peer_rtcp
        .send_to(&rtcp_bye(0x2222), s.audio.local_rtcp_addr)
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    audio_peer
        .send_to(&rtp_packet(0x3333, 1), s.audio.local_addr)
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    video_peer_rtcp
        .send_to(&rtcp_bye(0x1111), s.video.as_ref().unwrap().local_rtcp_addr)
        .unwrap();
    assert!(
        ended.recv_timeout(Duration::from_millis(700)).is_err(),
        "audio came back after its BYE"
    );
    be.disconnect(s.id).unwrap();
}

fn bind_next(s: &UdpSocket) -> UdpSocket {
    let a = s.local_addr().unwrap();
    UdpSocket::bind(SocketAddr::new(a.ip(), a.port() + 1)).expect("port + 1 is free")
}

/// The audio port of an SDP body.
fn audio_port(sdp: &str) -> u16 {
    sdp.lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|l| l.split(' ').next())
        .and_then(|p| p.parse().ok())
        .expect("an m=audio line")
}

#[test]
fn sip_call_whose_peer_is_silent_is_hung_up_with_bye() {
    let mut cfg = config(40);
    cfg.resilience = short_timeout(600);
    let be = SipVoiceBackend::new(cfg).unwrap();
    let ended = ends(&be);
    let ua = RawUa::new(start(&be));
    let mut leg = Leg::new();
    // Media is offered on a port where nothing will ever send.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    ua.establish(&mut leg, "", &support::sip::offer(port, None, "sendrecv"));
    let (_, reason) = ended.recv_timeout(T).expect("the session ends by itself");
    assert_eq!(reason, Some(EndReason::RtpTimeout));
    let bye = ua.expect_request("BYE", T);
    assert!(bye.contains(&leg.call_id), "BYE of our call: {bye}");
    ua.ok_to(&bye);
    assert!(support::wait_until(T, || be.sip_stats().byes_answered == 1));
    assert!(support::wait_until(T, || be.port_pool().available()
        == be.port_pool().capacity()));
}

#[test]
fn sip_call_whose_peer_says_rtcp_bye_is_hung_up_with_bye() {
    let mut cfg = config(41);
    cfg.resilience = short_timeout(0);
    let be = SipVideoBackend::new(cfg).unwrap();
    let ended = ends(&be);
    let ua = RawUa::new(start(&be));
    let mut leg = Leg::new();
    let media = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = media.local_addr().unwrap().port();
    let ok = ua.establish(&mut leg, "", &support::sip::offer(port, None, "sendrecv"));
    // rtcp-mux is not offered: RTCP goes to the answer's audio port + 1, from ours + 1.
    let ours = SocketAddr::from(([127, 0, 0, 1], audio_port(body(&ok)) + 1));
    let rtcp = bind_next(&media);
    rtcp.send_to(&rtcp_bye(0x4444), ours).unwrap();
    let (_, reason) = ended.recv_timeout(T).expect("the session ends");
    assert_eq!(reason, Some(EndReason::RtcpBye));
    let bye = ua.expect_request("BYE", T);
    ua.ok_to(&bye);
    assert!(support::wait_until(T, || be.sip_stats().calls_ended == 1));
}

#[test]
fn sip_bye_from_the_peer_reports_remote_hangup() {
    let be = SipVideoBackend::new(config(42)).unwrap();
    let ended = ends(&be);
    let ua = RawUa::new(start(&be));
    let mut leg = Leg::new();
    ua.establish(&mut leg, "", &support::sip::offer(40010, None, "sendrecv"));
    leg.cseq += 1;
    leg.branch = format!("z9hG4bK{}", support::sip::token());
    ua.send(&ua.request("BYE", &leg, "", ""));
    ua.expect_status(200, "BYE", T);
    let (_, reason) = ended.recv_timeout(T).unwrap();
    assert_eq!(reason, Some(EndReason::RemoteHangup));
}

#[test]
fn sip_hangup_reports_local_hangup() {
    let be = SipVideoBackend::new(config(43)).unwrap();
    let ended = ends(&be);
    let (ctx, calls) = unbounded();
    be.on_call(move |s| {
        let _ = ctx.send(s.id);
    });
    let ua = RawUa::new(start(&be));
    let mut leg = Leg::new();
    ua.establish(&mut leg, "", &support::sip::offer(40020, None, "sendrecv"));
    let id = calls.recv_timeout(T).unwrap();
    be.hangup(id).unwrap();
    assert_eq!(
        ended.recv_timeout(T).unwrap(),
        (id, Some(EndReason::LocalHangup))
    );
    let bye = ua.expect_request("BYE", T);
    ua.ok_to(&bye);
}

#[test]
fn sip_call_whose_peer_is_not_meant_to_send_survives_its_silence() {
    let mut cfg = config(50);
    cfg.resilience = short_timeout(400);
    let be = SipVoiceBackend::new(cfg).unwrap();
    let ended = ends(&be);
    let (ctx, calls) = unbounded();
    be.on_call(move |s| {
        let _ = ctx.send(s.id);
    });
    let ua = RawUa::new(start(&be));
    let mut leg = Leg::new();
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    // The peer only receives (we send, it does not): its silence is expected.
    ua.establish(&mut leg, "", &support::sip::offer(port, None, "recvonly"));
    let id = calls.recv_timeout(T).unwrap();
    assert!(
        ended.recv_timeout(Duration::from_millis(1500)).is_err(),
        "a peer that is not meant to send is not timed out"
    );
    assert!(be.get_session(id).is_some());
    be.hangup(id).unwrap();
    let bye = ua.expect_request("BYE", T);
    ua.ok_to(&bye);
}
