//! What the Python package (roomkit's API) needs of the engine, end to end on loopback:
//! `hangup_with` puts an RFC 3326 `Reason: Q.850` header on the BYE of an answered call and on
//! the CANCEL of a call being dialled, and refuses a text that would break the header; per-session
//! video passthrough delivers damaged pictures on the session that asked for it only.

use crate::support;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use crossbeam_channel::unbounded;
use roomkit_media::backend::{DialOptions, RtpBackendConfig, RtpVideoBackend, SipVideoBackend};
use roomkit_media::engine::SessionInfo;
use roomkit_media::prelude::*;
use roomkit_media::sip::reason::parse_reason;
use roomkit_media::Error;
use support::rtp::{collect, loopback_config, meta};
use support::sip::*;

const T: Duration = Duration::from_secs(5);

#[test]
fn bye_carries_the_q850_reason_and_bad_text_is_refused() {
    let be = SipVideoBackend::new(config(107)).unwrap();
    let (tx, calls) = unbounded::<SessionInfo>();
    be.on_call(move |s| {
        let _ = tx.send(s.clone());
    });
    let ua = RawUa::new(start(&be));
    let mut leg = Leg::new();
    ua.establish(&mut leg, "", &offer(40100, None, "sendrecv"));
    let info = calls.recv_timeout(T).unwrap();
    // A text that would end the header line is refused, and the call stays up.
    let bad = be.hangup_with(info.id, Some(16), Some("bye\r\nX-Injected: 1"));
    assert!(matches!(bad, Err(Error::InvalidArgument(_))), "{bad:?}");
    assert!(matches!(
        be.hangup_with(info.id, Some(300), None),
        Err(Error::InvalidArgument(_))
    ));
    assert!(be.get_session(info.id).is_some(), "the call is still up");
    let text = r#"Call "rejected" \ by rule"#;
    be.hangup_with(info.id, Some(21), Some(text)).unwrap();
    let bye = ua.expect_request("BYE", T);
    let reason = parse_reason(&header(&bye, "Reason").expect("a Reason header")).unwrap();
    assert_eq!(reason.protocol, "Q.850");
    assert_eq!(reason.cause, Some(21));
    assert_eq!(reason.text.as_deref(), Some(text));
    assert!(header(&bye, "X-Injected").is_none());
    ua.ok_to(&bye);
    assert!(be.hangup_with(info.id, Some(16), None).is_err(), "gone");
}

/// A provisional response to `req` with a To tag.
fn ringing(req: &str) -> String {
    let mut out = String::from("SIP/2.0 180 Ringing\r\n");
    for l in req.lines() {
        let lower = l.to_ascii_lowercase();
        if lower.starts_with("to:") {
            out.push_str(l);
            out.push_str(";tag=ring1\r\n");
        } else if ["via:", "from:", "call-id:", "cseq:"]
            .iter()
            .any(|h| lower.starts_with(h))
        {
            out.push_str(l);
            out.push_str("\r\n");
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

#[test]
fn cancel_of_a_dialled_call_carries_the_reason() {
    let be = dialer(107);
    let callee = UdpSocket::bind("127.0.0.1:0").unwrap();
    let ua = RawUa {
        target: be.local_sip_addr().unwrap(),
        sock: callee,
    };
    ua.sock
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let s = be
        .dial(&format!("sip:bob@{}", ua.addr()), DialOptions::default())
        .unwrap();
    let invite = ua.expect_request("INVITE", T);
    ua.send(&ringing(&invite));
    // Hang up once the 180 is in (a CANCEL is only sent after a provisional response).
    let deadline = Instant::now() + T;
    while be.call_state(s).is_some_and(|p| p.status != 180) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    be.hangup_with(s, Some(31), None).unwrap();
    let cancel = ua.expect_request("CANCEL", T);
    let reason = parse_reason(&header(&cancel, "Reason").expect("a Reason header")).unwrap();
    assert_eq!(
        (reason.protocol.as_str(), reason.cause),
        ("Q.850", Some(31))
    );
    assert_eq!(reason.text, None);
}

/// RTP packets of one H.264 picture of two slices whose second loses its middle fragment: a
/// damaged picture that still has a whole slice to deliver.
fn damaged_picture(pt: u8, seq: u16, ts: u32) -> Vec<Vec<u8>> {
    let rtp = |seq: u16, marker: bool, payload: &[u8]| {
        let mut p = vec![0x80, pt | if marker { 0x80 } else { 0 }];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&0x5eed_0001u32.to_be_bytes());
        p.extend_from_slice(payload);
        p
    };
    let mut slice = vec![0x41]; // a non-IDR slice, whole
    slice.resize(200, 0x55);
    let fu = |header: u8| {
        let mut p = vec![0x5c, header]; // FU-A of a non-IDR slice
        p.resize(400, 0x66);
        p
    };
    vec![
        rtp(seq, false, &slice),
        rtp(seq.wrapping_add(1), false, &fu(0x81)), // start
        // seq + 2, the middle fragment, is lost
        rtp(seq.wrapping_add(3), true, &fu(0x41)), // end
    ]
}

#[test]
fn passthrough_delivers_damaged_pictures_on_its_session_only() {
    let be = RtpVideoBackend::new(loopback_config(RtpBackendConfig::default())).unwrap();
    let rx = collect(&be);
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let me: SocketAddr = sender.local_addr().unwrap();
    let on = be.connect("room", "on", meta(me, me)).unwrap();
    let off = be.connect("room", "off", meta(me, me)).unwrap();
    be.set_video_passthrough(on.id, true).unwrap();
    let (on_v, off_v) = (on.video.clone().unwrap(), off.video.clone().unwrap());
    // Ten damaged pictures, none a keyframe, to each session.
    for i in 0..10u16 {
        for dest in [on_v.local_addr, off_v.local_addr] {
            for p in damaged_picture(on_v.payload_type, 1000 + i * 4, u32::from(i) * 3000) {
                sender.send_to(&p, dest).unwrap();
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Each picture waits for its lost packet up to the NACK deadline, then goes on damaged.
    let mut on_frames = Vec::new();
    let deadline = Instant::now() + T;
    while on_frames.len() < 3 && Instant::now() < deadline {
        if let Ok((id, f)) = rx.video.recv_timeout(Duration::from_millis(100)) {
            assert_eq!(id, on.id, "a picture on the session without passthrough");
            on_frames.push(f);
        }
    }
    assert!(
        on_frames.len() >= 3,
        "damaged pictures delivered: {}",
        on_frames.len()
    );
    assert!(on_frames.iter().all(|f| !f.complete && !f.keyframe));
    assert!(on_frames.iter().all(|f| !f.data.is_empty()));
    // The other session dropped them all, counted.
    assert!(wait_until(T, || {
        let st = be.stats(off.id).unwrap().video.unwrap();
        st.frames_dropped_incomplete + st.frames_dropped_gated >= 5
    }));
    assert!(rx.video.try_iter().all(|(id, _)| id == on.id));
    assert!(matches!(
        be.set_video_passthrough(roomkit_media::engine::SessionId::new_v4(), true),
        Err(Error::NotFound(_))
    ));
}
