//! The one-stream RTP session `send` and `recv` run on: an `RtpVideoBackend` session whose
//! video stream does the work.
//!
//! A backend session always has an audio stream too. These commands carry video only, so the
//! audio stream is bound to loopback and pointed at its own socket: its RTCP reports never leave
//! the host or reach the peer.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use roomkit_media::backend::{ConnectOptions, RtpBackendConfig, RtpVideoBackend};
use roomkit_media::backend::{SessionId, SessionInfo};
use roomkit_media::prelude::*;
use roomkit_media::SrtpKeys;

/// Opens the backend and its single session; the caller fills in the video fields of `cfg`.
/// `video_srtp`: the video stream's SRTP keys (`None`: plain RTP; the loopback audio stays
/// plain).
pub fn open(
    mut cfg: RtpBackendConfig,
    video_family: &SocketAddr,
    video_srtp: Option<SrtpKeys>,
) -> Result<(RtpVideoBackend, SessionInfo), String> {
    // The commands watch their own stream and end themselves (`recv --timeout`, the end of
    // the file): no inactivity timeout.
    cfg.resilience.inactivity_timeout = Duration::ZERO;
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
        .connect(
            "cli",
            "cli",
            ConnectOptions {
                video_srtp,
                ..ConnectOptions::default()
            },
        )
        .map_err(|e| e.to_string())?;
    backend
        .update_remote(info.id, Some(info.audio.local_addr), None)
        .map_err(|e| e.to_string())?;
    Ok((backend, info))
}

/// Ends the session (RTCP BYE, threads joined; a sender first lingers as its config says).
pub fn close(backend: &RtpVideoBackend, id: SessionId) {
    let _ = backend.disconnect(id);
}
