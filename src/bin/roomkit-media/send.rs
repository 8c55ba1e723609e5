//! `roomkit-media send`: sends a video file as RTP from an `RtpVideoBackend` session, paced at
//! `--fps`. Each picture leaves in one `sendmmsg`, its bytes handed to the kernel by scatter-gather.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use roomkit_media::backend::rtp::RtpBackendConfig;
use roomkit_media::backend::{PacerConfig, ResilienceConfig};
use roomkit_media::codec::h264::DEFAULT_MTU;
use roomkit_media::prelude::*;

use crate::args::{rtx_arg, Args, Spec};
use crate::link;
use crate::media_file::{codec_arg, read_pictures};
use crate::progress::{Progress, Stats};

pub const SPEC: Spec = Spec {
    options: &[
        "to",
        "pt",
        "mtu",
        "fps",
        "codec",
        "rtx-pt",
        "linger",
        "pace-max-kbps",
        "bind",
    ],
    switches: &["no-pacing", "rtcp-mux"],
};

pub fn run(args: &Args) -> Result<Stats, String> {
    let to = args.addr("to")?.ok_or("send needs --to HOST:PORT")?;
    let [file] = args.positionals.as_slice() else {
        return Err("send needs exactly one FILE".into());
    };
    let path = PathBuf::from(file);
    let codec = codec_arg(args.get("codec"), &path)?;
    let pt: u8 = args.num("pt", 96)?;
    if pt > 127 {
        return Err(format!("--pt: {pt} is not an RTP payload type (0-127)"));
    }
    let mtu: usize = args.num("mtu", DEFAULT_MTU)?;
    if !(64..=65000).contains(&mtu) {
        return Err(format!("--mtu: {mtu} is outside 64-65000"));
    }
    let fps: f64 = args.num("fps", 30.0)?;
    if !(0.0..=1000.0).contains(&fps) {
        return Err(format!("--fps: {fps} is outside 0-1000"));
    }
    let pictures = read_pictures(&path, codec)?;
    let rtx = rtx_arg(args, pt)?;
    let linger: f64 = args.num("linger", 1.0)?;
    if !(0.0..=60.0).contains(&linger) {
        return Err(format!("--linger: {linger} is outside 0-60 seconds"));
    }
    let mut pacer = PacerConfig {
        enabled: args.get("no-pacing").is_none(),
        ..PacerConfig::default()
    };
    if let Some(kbps) = args.get("pace-max-kbps") {
        let kbps: f64 = kbps
            .parse()
            .ok()
            .filter(|k: &f64| *k >= 64.0)
            .ok_or_else(|| format!("--pace-max-kbps: `{kbps}` is not a rate of at least 64"))?;
        pacer.max_rate = Some(kbps * 1000.0 / 8.0);
    }

    // Where our video RTP binds (RTCP on the next port without rtcp-mux): any port unless
    // `--bind` names one, for peers and relays that must know it in advance.
    let any: SocketAddr = match args.addr("bind")? {
        Some(a) => a,
        None if to.is_ipv4() => (Ipv4Addr::UNSPECIFIED, 0).into(),
        None => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let cfg = RtpBackendConfig {
        video_local_addr: any,
        video_remote_addr: Some(to),
        video_payload_type: pt,
        video_codec: codec,
        mtu,
        rtx_payload_type: rtx,
        resilience: ResilienceConfig {
            pacer,
            close_linger: Duration::from_secs_f64(linger),
            ..ResilienceConfig::default()
        },
        rtcp_mux: args.get("rtcp-mux").is_some(),
        ..RtpBackendConfig::default()
    };
    let (backend, session) = link::open(cfg, &to)?;

    let mut stats = Stats::default();
    let mut progress = Progress::new();
    // Timestamps advance at --fps (30 when sending as fast as possible), so receivers see the
    // intended frame rate whatever the pacing.
    let frame_ms = 1000.0 / if fps > 0.0 { fps } else { 30.0 };
    let start = Instant::now();
    for (i, (picture, key)) in pictures.iter().enumerate() {
        if fps > 0.0 {
            let due = start + Duration::from_secs_f64(i as f64 / fps);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        match backend.send_video_at(session.id, picture, Some(i as f64 * frame_ms)) {
            Ok(()) => {
                stats.frames += 1;
                stats.keyframes += u64::from(*key);
            }
            Err(e) => {
                eprintln!("roomkit-media: picture {i} not sent: {e}");
                stats.dropped_frames += 1;
            }
        }
        if let Some(v) = backend.stats(session.id).ok().and_then(|s| s.video) {
            stats.packets = v.packets_sent;
            stats.bytes = v.bytes_sent;
        }
        progress.update("send", &stats);
    }
    if let Some(v) = backend.stats(session.id).ok().and_then(|s| s.video) {
        stats.packets = v.packets_sent;
        stats.bytes = v.bytes_sent;
        stats.recovery(&v);
    }
    link::close(&backend, session.id);
    progress.done();
    Ok(stats)
}
