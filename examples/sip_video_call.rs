//! A SIP audio + video call handler: answers incoming calls, routes them by what they
//! negotiated, and logs every received video frame. The Rust twin of `sip_video_call.c`.
//!
//! - video calls: a key frame is requested at once, so the log starts at an IDR;
//! - audio-only calls: greeted with the DTMF digits `1#`;
//! - any call: `#` hangs up (BYE from our side), `*` asks for a key frame.
//!
//! Run: `cargo run --release --example sip_video_call -- [SIP_ADDR [RTP_IP [MAX_CALLS]]]`
//! (defaults `0.0.0.0:5060`, `0.0.0.0`, no limit). It stops after MAX_CALLS calls have ended.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use roomkit_media::backend::{SipBackendConfig, SipVideoBackend};
use roomkit_media::prelude::*;
use roomkit_media::VideoCodec;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let sip_addr: SocketAddr = args.next().as_deref().unwrap_or("0.0.0.0:5060").parse()?;
    let rtp_ip: IpAddr = args.next().as_deref().unwrap_or("0.0.0.0").parse()?;
    let max_calls: usize = args.next().map(|n| n.parse()).transpose()?.unwrap_or(0);

    let backend = Arc::new(SipVideoBackend::new(SipBackendConfig {
        local_sip_addr: sip_addr,
        local_rtp_ip: rtp_ip,
        rtp_port_start: 10000,
        rtp_port_end: 20000,
        supported_video_codecs: vec![VideoCodec::H264, VideoCodec::Vp8],
        ..SipBackendConfig::default()
    })?);
    // Callbacks hold the backend weakly: the backend owns its callbacks, so a strong reference
    // there would keep it alive forever.
    let weak: Weak<SipVideoBackend> = Arc::downgrade(&backend);
    let frames = Arc::new(AtomicU64::new(0));
    let ended = Arc::new(AtomicUsize::new(0));

    let w = weak.clone();
    backend.on_call(move |call| {
        let meta = |k: &str| call.metadata.get(k).map_or("", String::as_str);
        let has_video = call.video.is_some();
        println!(
            "call {} from {} to {} (room {}): video={}{}",
            call.id,
            meta("caller"),
            meta("callee"),
            call.room_id,
            if has_video { "yes" } else { "no" },
            if has_video {
                format!(" codec={}", meta("video_codec"))
            } else {
                String::new()
            }
        );
        let Some(b) = w.upgrade() else { return };
        let routed = if has_video {
            b.request_keyframe(call.id)
        } else {
            b.send_dtmf(call.id, '1', 120)
                .and_then(|()| b.send_dtmf(call.id, '#', 120))
        };
        if let Err(e) = routed {
            println!("  routing call {} failed: {e}", call.id);
        }
    });

    let f = frames.clone();
    backend.on_video_received(move |session, frame| {
        f.fetch_add(1, Ordering::Relaxed);
        println!(
            "video {:.8} codec={} size={} keyframe={} seq={} ts={:.1}ms",
            session.to_string(),
            frame.codec,
            frame.data.len(),
            frame.keyframe,
            frame.sequence,
            frame.timestamp_ms
        );
    });

    let w = weak.clone();
    backend.on_dtmf_received(move |session, ev| {
        println!(
            "dtmf {:.8} digit={} duration={}ms",
            session.to_string(),
            ev.digit,
            ev.duration_ms
        );
        let Some(b) = w.upgrade() else { return };
        let _ = match ev.digit {
            '#' => b.hangup(session),
            '*' => b.request_keyframe(session),
            _ => Ok(()),
        };
    });

    backend.on_keyframe_requested(|session, kind| {
        println!(
            "peer asks {:.8} for a key frame ({kind:?})",
            session.to_string()
        );
    });

    let (f, e) = (frames.clone(), ended.clone());
    backend.on_client_disconnected(move |session| {
        println!(
            "hangup {} ({} video frames received so far)",
            session.id,
            f.load(Ordering::Relaxed)
        );
        e.fetch_add(1, Ordering::Relaxed);
    });

    // Every callback is registered: start answering.
    let local = backend.start()?;
    println!("roomkit-media listening on {local}");
    while max_calls == 0 || ended.load(Ordering::Relaxed) < max_calls {
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "stopping: {} live call(s) hung up",
        backend.all_sessions().len()
    );
    // Dropping the backend hangs up live calls and joins every thread.
    drop(backend);
    Ok(())
}
