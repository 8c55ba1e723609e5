//! `roomkit-media send`: sends a video file as RTP from an `RtpVideoBackend` session, paced at
//! `--fps`. Each picture leaves in one `sendmmsg`, its bytes handed to the kernel by scatter-gather.
//! With `--cc` the stream runs congestion control (the receiver must too: `recv --cc`); with
//! `--ladder` it sends one of several renditions of the clip, switching at key pictures to the
//! highest the estimate carries; `--stats-interval` prints the counters and the estimate as it goes.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use roomkit_media::backend::rtp::RtpBackendConfig;
use roomkit_media::backend::{PacerConfig, ResilienceConfig};
use roomkit_media::codec::h264::DEFAULT_MTU;
use roomkit_media::prelude::*;
use roomkit_media::SrtpSuite;
use roomkit_media::VideoCodec;

use serde::Serialize;

use crate::args::{
    at_least, payload_type, resolve, rtx_payload_type, within, CcArgs, FecArgs, SrtpKeyArgs,
};
use crate::ladder::{Ladder, HEADROOM};
use crate::link;
use crate::media_file::{codec_arg, video_codec};
use crate::output::{rounded, Out};
use crate::progress::{Progress, Stats};

/// `send --to HOST:PORT FILE`.
#[derive(clap::Args, Debug)]
pub struct SendArgs {
    /// Where to send the RTP.
    #[arg(long, value_name = "HOST:PORT", value_parser = resolve)]
    pub to: SocketAddr,
    /// The video: Annex-B H.264, or IVF VP8 (`.ivf`).
    #[arg(
        value_name = "FILE",
        required_unless_present = "ladder",
        conflicts_with = "ladder"
    )]
    pub file: Option<PathBuf>,
    /// Instead of FILE: renditions of one clip at different bitrates (the same pictures, key
    /// pictures at the same places), comma-separated. At each key picture `send` switches to the
    /// highest rendition whose mean bitrate (the file's bytes over its duration at --fps) is at
    /// most 0.85 × congestion control's target; a `switch` line says so. Turns --cc on.
    #[arg(long, value_name = "FILE,FILE,...", value_delimiter = ',')]
    pub ladder: Vec<PathBuf>,
    #[command(flatten)]
    pub cc: CcArgs,
    /// Print a `{"event":"stats",...}` line every SECONDS while sending (0: only the final line).
    #[arg(long, value_name = "SECONDS", default_value_t = 0.0, allow_negative_numbers = true,
          value_parser = within(0.0, 3600.0, " seconds"))]
    pub stats_interval: f64,
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

/// A line printed while sending: the counters so far (as in the final line), when, and the
/// rendition being sent.
#[derive(Serialize)]
struct Progressing<'a> {
    event: &'static str,
    t: f64,
    rendition: &'a str,
    #[serde(flatten)]
    stats: &'a Stats,
}

/// `--ladder` moved to another rendition at a key picture.
#[derive(Serialize)]
struct Switch<'a> {
    event: &'static str,
    t: f64,
    picture: usize,
    from: &'a str,
    to: &'a str,
    from_bps: u64,
    to_bps: u64,
    target_bps: u64,
}

/// The renditions, printed once at the start of `--ladder`.
#[derive(Serialize)]
struct LadderLine<'a> {
    event: &'static str,
    headroom: f64,
    renditions: Vec<RenditionLine<'a>>,
}

#[derive(Serialize)]
struct RenditionLine<'a> {
    file: &'a str,
    bps: u64,
}

pub fn run(args: &SendArgs) -> Result<Stats, String> {
    let to = args.to;
    let (pt, mtu, fps) = (args.pt, args.mtu, args.fps);
    // Timestamps advance at --fps (30 when sending as fast as possible), so receivers see the
    // intended frame rate whatever the pacing.
    let frame_ms = 1000.0 / if fps > 0.0 { fps } else { 30.0 };
    let (ladder, codec) = match &args.file {
        Some(path) => {
            let codec = codec_arg(args.codec, path);
            (Ladder::single(path, codec, frame_ms / 1000.0)?, codec)
        }
        None => {
            let codec = codec_arg(args.codec, &args.ladder[0]);
            (Ladder::open(&args.ladder, codec, frame_ms / 1000.0)?, codec)
        }
    };
    let cc = args.cc.config(!args.ladder.is_empty())?;
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
            congestion: cc,
            ..ResilienceConfig::default()
        },
        rtcp_mux: args.rtcp_mux,
        video_fec: args.fec.config(),
        ..RtpBackendConfig::default()
    };
    let (backend, session) = link::open(cfg, &to, args.srtp.keys()?)?;
    // The target congestion control last announced (the start bitrate until it speaks).
    let target = Arc::new(AtomicU64::new(cc.start_bps));
    let heard = target.clone();
    backend.on_target_bitrate(move |_, bps, _| heard.store(bps, Ordering::Relaxed));

    let out = Out::stdout();
    let multi = ladder.renditions.len() > 1;
    if multi {
        out.line(&LadderLine {
            event: "ladder",
            headroom: HEADROOM,
            renditions: ladder
                .renditions
                .iter()
                .map(|r| RenditionLine {
                    file: &r.name,
                    bps: r.bps,
                })
                .collect(),
        });
    }
    let mut stats = Stats {
        srtp: session
            .video
            .as_ref()
            .and_then(|v| v.srtp_suite)
            .map(SrtpSuite::sdp_name),
        ..Stats::default()
    };
    let mut progress = Progress::new();
    let interval =
        (args.stats_interval > 0.0).then(|| Duration::from_secs_f64(args.stats_interval));
    let start = Instant::now();
    let mut next_line = interval.map(|i| start + i);
    let mut current = ladder.pick(target.load(Ordering::Relaxed));
    for i in 0..ladder.len() {
        if fps > 0.0 {
            let due = start + Duration::from_secs_f64(i as f64 / fps);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        // Switch only where every rendition has a key picture (the GOPs are checked alike).
        if multi && i > 0 && ladder.renditions[0].pictures[i].1 {
            let target_bps = target.load(Ordering::Relaxed);
            let want = ladder.pick(target_bps);
            if want != current {
                let (from, to) = (&ladder.renditions[current], &ladder.renditions[want]);
                out.line(&Switch {
                    event: "switch",
                    t: rounded(start.elapsed().as_secs_f64(), 3),
                    picture: i,
                    from: &from.name,
                    to: &to.name,
                    from_bps: from.bps,
                    to_bps: to.bps,
                    target_bps,
                });
                stats.switches += 1;
                current = want;
            }
        }
        let (picture, key) = &ladder.renditions[current].pictures[i];
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
            stats.recovery(&v);
        }
        progress.update("send", &stats);
        if let (Some(at), Some(every)) = (next_line, interval) {
            let now = Instant::now();
            if now >= at {
                out.line(&Progressing {
                    event: "stats",
                    t: rounded(now.duration_since(start).as_secs_f64(), 3),
                    rendition: &ladder.renditions[current].name,
                    stats: &stats,
                });
                // The next line one interval on, skipping any a stall overran.
                let behind = now.duration_since(at).as_secs_f64() / every.as_secs_f64();
                next_line = Some(at + every.mul_f64(behind.floor() + 1.0));
            }
        }
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
