//! The one-stream RTP session `send` and `recv` run on: an `RtpVideoBackend` session whose
//! video stream does the work.
//!
//! A backend session always has an audio stream too. These commands carry video only, so the
//! audio stream is bound to loopback and pointed at its own socket: its RTCP reports never leave
//! the host or reach the peer.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use roomkit_media::backend::rtp::{RtpBackendConfig, RtpVideoBackend};
use roomkit_media::engine::{SessionId, SessionInfo};

/// Opens the backend and its single session; the caller fills in the video fields of `cfg`.
pub fn open(
    mut cfg: RtpBackendConfig,
    video_family: &SocketAddr,
) -> Result<(RtpVideoBackend, SessionInfo), String> {
    let loopback: IpAddr = if video_family.is_ipv4() {
        Ipv4Addr::LOCALHOST.into()
    } else {
        Ipv6Addr::LOCALHOST.into()
    };
    cfg.local_addr = SocketAddr::new(loopback, 0);
    // Replaced by the audio socket's own address right after connect, before any report is due.
    cfg.remote_addr = Some(SocketAddr::new(loopback, 9));
    let backend = RtpVideoBackend::new(cfg).map_err(|e| e.to_string())?;
    let info = backend
        .connect("cli", "cli", &HashMap::new())
        .map_err(|e| e.to_string())?;
    backend
        .update_remote(info.id, Some(info.audio.local_addr), None)
        .map_err(|e| e.to_string())?;
    Ok((backend, info))
}

/// How long a sender keeps answering NACKs after its last picture, idle, before it leaves.
const LINGER: Duration = Duration::from_secs(1);
/// The longest it waits for that quiet second.
const LINGER_MAX: Duration = Duration::from_secs(4);

/// Ends the session (RTCP BYE, threads joined). A sender first lingers until its stream has been
/// idle for a second, so the receiver can still have the last pictures' lost packets re-sent.
pub fn close(backend: &RtpVideoBackend, id: SessionId) {
    if let Some(video) = backend
        .engine()
        .session(id)
        .ok()
        .as_ref()
        .and_then(|s| s.video())
    {
        video.linger(LINGER, LINGER_MAX);
    }
    let _ = backend.disconnect(id);
}
