//! `roomkit-media send`: sends a video file as RTP from an `RtpVideoBackend` session, paced at
//! `--fps`. Each picture leaves in one `sendmmsg`, its bytes handed to the kernel by scatter-gather.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use roomkit_media::backend::rtp::RtpBackendConfig;
use roomkit_media::backend::{PacerConfig, ResilienceConfig};
use roomkit_media::codec::h264::DEFAULT_MTU;
use roomkit_media::prelude::*;
use roomkit_media::SrtpSuite;
use roomkit_media::VideoCodec;

use crate::args::{
    at_least, payload_type, resolve, rtx_payload_type, within, FecArgs, SrtpKeyArgs,
};
use crate::link;
use crate::media_file::{codec_arg, read_pictures, video_codec};
use crate::progress::{Progress, Stats};

/// `send --to HOST:PORT FILE`.
#[derive(clap::Args, Debug)]
pub struct SendArgs {
    /// Where to send the RTP.
    #[arg(long, value_name = "HOST:PORT", value_parser = resolve)]
    pub to: SocketAddr,
    /// The video: Annex-B H.264, or IVF VP8 (`.ivf`).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The file's codec [default: vp8 for `.ivf`, else h264].
    #[arg(long, value_name = "h264|vp8", value_parser = video_codec)]
    pub codec: Option<VideoCodec>,
    /// RTP payload type of the video.
    #[arg(long, value_name = "N", default_value_t = 96, value_parser = payload_type)]
    pub pt: u8,
    /// Largest RTP packet, in bytes.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MTU, value_parser = within(64usize, 65_000, " bytes"))]
    pub mtu: usize,
    /// Pictures per second (0: as fast as possible; RTP timestamps still advance at 30 fps).
    #[arg(long, value_name = "N", default_value_t = 30.0, allow_negative_numbers = true,
          value_parser = within(0.0, 1000.0, ""))]
    pub fps: f64,
    /// Payload type of RFC 4588 retransmissions (absent: lost packets are re-sent as they were).
    #[arg(long, value_name = "N", value_parser = payload_type)]
    pub rtx_pt: Option<u8>,
    /// After the last picture, stay this long to answer NACKs.
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0, allow_negative_numbers = true,
          value_parser = within(0.0, 60.0, " seconds"))]
    pub linger: f64,
    /// Send each picture's packets at once instead of pacing them.
    #[arg(long)]
    pub no_pacing: bool,
    /// The most the pacer sends, in kbit/s (at least 64).
    #[arg(long, value_name = "N", value_parser = at_least(64.0, " kbit/s"))]
    pub pace_max_kbps: Option<f64>,
    /// RTCP on the RTP port (RFC 5761) instead of the next one.
    #[arg(long)]
    pub rtcp_mux: bool,
    #[command(flatten)]
    pub srtp: SrtpKeyArgs,
    #[command(flatten)]
    pub fec: FecArgs,
    /// Where our RTP binds [default: any port].
    #[arg(long, value_name = "HOST:PORT", value_parser = resolve)]
    pub bind: Option<SocketAddr>,
}

pub fn run(args: &SendArgs) -> Result<Stats, String> {
    let to = args.to;
    let path = &args.file;
    let codec = codec_arg(args.codec, path);
    let (pt, mtu, fps) = (args.pt, args.mtu, args.fps);
    let pictures = read_pictures(path, codec)?;
    let rtx = rtx_payload_type(args.rtx_pt, pt)?;
    let mut pacer = PacerConfig {
        enabled: !args.no_pacing,
        ..PacerConfig::default()
    };
    if let Some(kbps) = args.pace_max_kbps {
        pacer.max_rate = Some(kbps * 1000.0 / 8.0);
    }

    // Where our video RTP binds (RTCP on the next port without rtcp-mux): any port unless
    // `--bind` names one, for peers and relays that must know it in advance.
    let any: SocketAddr = match args.bind {
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
            close_linger: Duration::from_secs_f64(args.linger),
            ..ResilienceConfig::default()
        },
        rtcp_mux: args.rtcp_mux,
        video_fec: args.fec.config(),
        ..RtpBackendConfig::default()
    };
    let (backend, session) = link::open(cfg, &to, args.srtp.keys()?)?;

    let mut stats = Stats {
        srtp: session
            .video
            .as_ref()
            .and_then(|v| v.srtp_suite)
            .map(SrtpSuite::sdp_name),
        ..Stats::default()
    };
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
