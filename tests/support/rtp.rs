//! Helpers shared by the RTP backend tests: a connected pair of backends on loopback, channels
//! that collect what the callbacks saw, and synthetic H.264 pictures.

#[allow(unused_imports)]
pub use super::{h264_picture, wait_until};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver};
use roomkit_media::backend::{ConnectOptions, RtpBackendConfig, RtpVideoBackend};
use roomkit_media::engine::{KeyframeRequest, SessionId};
use roomkit_media::prelude::*;
use roomkit_media::{AudioFrame, DtmfEvent, VideoFrame};

/// What one backend's callbacks received.
pub struct Rx {
    pub video: Receiver<(SessionId, VideoFrame)>,
    pub audio: Receiver<(SessionId, AudioFrame)>,
    pub dtmf: Receiver<(SessionId, DtmfEvent)>,
    pub keyframe: Receiver<(SessionId, KeyframeRequest)>,
    pub ready: Receiver<SessionId>,
    pub video_ready: Receiver<SessionId>,
    pub disconnected: Receiver<SessionId>,
}

/// Registers every callback of `be`, each feeding a channel.
pub fn collect(be: &RtpVideoBackend) -> Rx {
    let (vt, video) = unbounded();
    let (at, audio) = unbounded();
    let (dt, dtmf) = unbounded();
    let (kt, keyframe) = unbounded();
    let (rt, ready) = unbounded();
    let (vrt, video_ready) = unbounded();
    let (xt, disconnected) = unbounded();
    be.on_video_received(move |id, f| {
        let _ = vt.send((id, f.clone()));
    });
    be.on_audio_received(move |id, f| {
        let _ = at.send((id, f.clone()));
    });
    be.on_dtmf_received(move |id, e| {
        let _ = dt.send((id, e));
    });
    be.on_keyframe_requested(move |id, k| {
        let _ = kt.send((id, k));
    });
    be.on_session_ready(move |s| {
        let _ = rt.send(s.id);
    });
    be.on_video_session_ready(move |s| {
        let _ = vrt.send(s.id);
    });
    be.on_client_disconnected(move |s| {
        let _ = xt.send(s.id);
    });
    Rx {
        video,
        audio,
        dtmf,
        keyframe,
        ready,
        video_ready,
        disconnected,
    }
}

pub struct Pair {
    pub a: RtpVideoBackend,
    pub b: RtpVideoBackend,
    pub a_id: SessionId,
    pub b_id: SessionId,
    pub a_rx: Rx,
    pub b_rx: Rx,
}

pub fn loopback_config(mut cfg: RtpBackendConfig) -> RtpBackendConfig {
    cfg.local_addr = "127.0.0.1:0".parse().unwrap();
    cfg.video_local_addr = "127.0.0.1:0".parse().unwrap();
    cfg
}

pub fn meta(audio: SocketAddr, video: SocketAddr) -> HashMap<String, String> {
    HashMap::from([
        ("remote_addr".to_string(), audio.to_string()),
        ("video_remote_addr".to_string(), video.to_string()),
    ])
}

/// Two backends with one session each, pointed at each other, callbacks collected.
pub fn pair(cfg: RtpBackendConfig) -> Pair {
    let cfg = loopback_config(cfg);
    let a = RtpVideoBackend::new(cfg.clone()).unwrap();
    let b = RtpVideoBackend::new(cfg).unwrap();
    let a_rx = collect(&a);
    let b_rx = collect(&b);
    connect_pair(a, b, a_rx, b_rx)
}

/// Like [`pair`], with no callbacks registered.
pub fn pair_without_callbacks(cfg: RtpBackendConfig) -> Pair {
    let cfg = loopback_config(cfg);
    let a = RtpVideoBackend::new(cfg.clone()).unwrap();
    let b = RtpVideoBackend::new(cfg).unwrap();
    let (_, video) = unbounded();
    let (_, audio) = unbounded();
    let (_, dtmf) = unbounded();
    let (_, keyframe) = unbounded();
    let (_, ready) = unbounded();
    let (_, video_ready) = unbounded();
    let (_, disconnected) = unbounded();
    let empty = || Rx {
        video: video.clone(),
        audio: audio.clone(),
        dtmf: dtmf.clone(),
        keyframe: keyframe.clone(),
        ready: ready.clone(),
        video_ready: video_ready.clone(),
        disconnected: disconnected.clone(),
    };
    let (ra, rb) = (empty(), empty());
    connect_pair(a, b, ra, rb)
}

fn connect_pair(a: RtpVideoBackend, b: RtpVideoBackend, a_rx: Rx, b_rx: Rx) -> Pair {
    let (sa, sb) = connect_each_other(&a, &b, meta, meta);
    Pair {
        a,
        b,
        a_id: sa.id,
        b_id: sb.id,
        a_rx,
        b_rx,
    }
}

/// Connects `a` and `b` to each other on loopback: A first, aimed at a placeholder; B aimed at
/// A; then A re-aimed at B. `a_options`/`b_options` turn the remote audio and video addresses into
/// that side's connect options (plain metadata, or options with keys). Returns both sessions.
pub fn connect_each_other<OA, OB>(
    a: &RtpVideoBackend,
    b: &RtpVideoBackend,
    a_options: impl FnOnce(SocketAddr, SocketAddr) -> OA,
    b_options: impl FnOnce(SocketAddr, SocketAddr) -> OB,
) -> (SessionInfo, SessionInfo)
where
    OA: Into<ConnectOptions>,
    OB: Into<ConnectOptions>,
{
    let placeholder: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let sa = a
        .connect("room-a", "alice", a_options(placeholder, placeholder))
        .unwrap();
    let sa_v = sa.video.clone().unwrap();
    let sb = b
        .connect(
            "room-b",
            "bob",
            b_options(sa.audio.local_addr, sa_v.local_addr),
        )
        .unwrap();
    a.update_remote(
        sa.id,
        Some(sb.audio.local_addr),
        Some(sb.video.clone().unwrap().local_addr),
    )
    .unwrap();
    (sa, sb)
}

/// Up to `n` items, waiting at most `timeout` in total.
pub fn recv_n<T>(rx: &Receiver<T>, n: usize, timeout: Duration) -> Vec<T> {
    let deadline = Instant::now() + timeout;
    let mut v = Vec::new();
    while v.len() < n {
        match rx.recv_deadline(deadline) {
            Ok(x) => v.push(x),
            Err(_) => break,
        }
    }
    v
}
