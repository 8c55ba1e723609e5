//! `roomkit-media recv`: receives one RTP video stream on an `RtpVideoBackend` session and writes
//! it to a file (Annex-B or IVF).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use roomkit_media::backend::rtp::{RtpBackendConfig, RtpVideoBackend};
use roomkit_media::backend::{
    CongestionConfig, NackConfig, ResilienceConfig, SessionId, StreamStats,
};
use roomkit_media::prelude::*;
use roomkit_media::SrtpSuite;
use roomkit_media::{VideoCodec, VideoFrame};

use crate::args::{payload_type, resolve, rtx_payload_type, FecArgs, SrtpKeyArgs};
use crate::link;
use crate::media_file::{codec_arg, video_codec, VideoSink};
use crate::progress::{Progress, Stats};

/// `recv --listen HOST:PORT --out FILE`.
#[derive(clap::Args, Debug)]
pub struct RecvArgs {
    /// Where to receive the RTP (port 0: any free port, printed on stderr).
    #[arg(long, value_name = "HOST:PORT", value_parser = resolve)]
    pub listen: SocketAddr,
    /// The file to write: Annex-B H.264, or IVF for VP8.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// The stream's codec [default: vp8 for `.ivf`, else h264].
    #[arg(long, value_name = "h264|vp8", value_parser = video_codec)]
    pub codec: Option<VideoCodec>,
    /// RTP payload type of the video.
    #[arg(long, value_name = "N", default_value_t = 96, value_parser = payload_type)]
    pub pt: u8,
    /// Stop after this many pictures (0: no limit).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub frames: u64,
    /// Stop after this long without a packet.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0, allow_negative_numbers = true,
          value_parser = positive_seconds)]
    pub timeout: f64,
    /// Payload type of RFC 4588 retransmissions (absent: repairs come as the original packets).
    #[arg(long, value_name = "N", value_parser = payload_type)]
    pub rtx_pt: Option<u8>,
    /// Do not ask for lost packets again.
    #[arg(long)]
    pub no_nack: bool,
    /// RTCP on the RTP port (RFC 5761) instead of the next one.
    #[arg(long)]
    pub rtcp_mux: bool,
    /// Congestion control: report every packet's arrival to the sender (transport-wide
    /// feedback), for a `send --cc` or `send --ladder`.
    #[arg(long)]
    pub cc: bool,
    #[command(flatten)]
    pub srtp: SrtpKeyArgs,
    #[command(flatten)]
    pub fec: FecArgs,
}

/// `--timeout`: more than 0 and at most a day.
fn positive_seconds(v: &str) -> Result<f64, String> {
    match v.parse::<f64>() {
        Ok(s) if s > 0.0 && s <= 86_400.0 => Ok(s),
        Ok(s) => Err(format!("{s} is outside (0, 86400] seconds")),
        Err(_) => Err(format!("`{v}` is not a valid number")),
    }
}

pub fn run(args: &RecvArgs) -> Result<Stats, String> {
    let listen = args.listen;
    let out = &args.out;
    let codec = codec_arg(args.codec, out);
    let pt = args.pt;
    let max_frames = args.frames;
    let idle = Duration::from_secs_f64(args.timeout);
    let rtx = rtx_payload_type(args.rtx_pt, pt)?;
    let mut sink = VideoSink::create(out, codec)?;

    let cfg = RtpBackendConfig {
        video_local_addr: listen,
        // We do not know the sender in advance: follow the first source that sends to us (and
        // send our RTCP reports back there).
        video_remote_addr: Some(listen),
        latch_to_first_source: true,
        video_payload_type: pt,
        video_codec: codec,
        // The writer below drains a channel, so the callback never blocks; a deep queue covers
        // bursts of small pictures.
        callback_queue: 8192,
        rtx_payload_type: rtx,
        rtcp_mux: args.rtcp_mux,
        video_fec: args.fec.config(),
        resilience: ResilienceConfig {
            nack: NackConfig {
                enabled: !args.no_nack,
                ..NackConfig::default()
            },
            congestion: CongestionConfig {
                enabled: args.cc,
                ..CongestionConfig::default()
            },
            ..ResilienceConfig::default()
        },
        ..RtpBackendConfig::default()
    };
    let (backend, session) = link::open(cfg, &listen, args.srtp.keys()?)?;
    let video = session
        .video
        .as_ref()
        .ok_or("the session has no video stream")?;
    eprintln!("listening on {}", video.local_addr);

    let (tx, rx) = crossbeam_channel::unbounded::<VideoFrame>();
    backend.on_video_received(move |_, frame| {
        let _ = tx.send(frame.clone());
    });

    let mut stats = Stats {
        srtp: session
            .video
            .as_ref()
            .and_then(|v| v.srtp_suite)
            .map(SrtpSuite::sdp_name),
        ..Stats::default()
    };
    let mut progress = Progress::new();
    let mut last_packet = Instant::now();
    let mut seen_packets = 0;
    let mut done = false;
    while !done {
        if let Ok(frame) = rx.recv_timeout(Duration::from_millis(50)) {
            done = write_frame(&frame, &mut sink, &mut stats, max_frames)?;
        }
        while let (false, Ok(frame)) = (done, rx.try_recv()) {
            done = write_frame(&frame, &mut sink, &mut stats, max_frames)?;
        }
        let s = video_stats(&backend, session.id)?;
        if s.packets_received != seen_packets {
            seen_packets = s.packets_received;
            last_packet = Instant::now();
        }
        fill(&mut stats, &s);
        progress.update("recv", &stats);
        done |= last_packet.elapsed() >= idle;
    }
    let s = video_stats(&backend, session.id)?;
    fill(&mut stats, &s);
    link::close(&backend, session.id);
    // Pictures already delivered when we stopped still go to the file (up to --frames).
    while let Ok(frame) = rx.try_recv() {
        if write_frame(&frame, &mut sink, &mut stats, max_frames)? {
            break;
        }
    }
    sink.finish()?;
    progress.done();
    Ok(stats)
}

fn video_stats(backend: &RtpVideoBackend, id: SessionId) -> Result<StreamStats, String> {
    let s = backend.stats(id).map_err(|e| e.to_string())?;
    s.video
        .ok_or_else(|| "the session has no video stream".to_string())
}

fn fill(stats: &mut Stats, v: &StreamStats) {
    stats.packets = v.packets_received;
    stats.bytes = v.bytes_received;
    stats.lost = v.lost.max(0) as u64;
    stats.dropped_frames =
        v.frames_dropped_incomplete + v.frames_dropped_gated + v.frames_dropped_slow_callback;
    stats.recovery(v);
    // A receiver's own estimator has nothing of ours to estimate (we send no media): its start
    // bitrate would only mislead.
    stats.cc_target_bps = 0;
    stats.cc_pacer_rate_bps = 0;
}

/// Writes one delivered picture; returns true once `max` (if non-zero) pictures are written.
fn write_frame(
    f: &VideoFrame,
    sink: &mut VideoSink,
    stats: &mut Stats,
    max: u64,
) -> Result<bool, String> {
    if max != 0 && stats.frames >= max {
        return Ok(true);
    }
    sink.write(&f.data, (f.timestamp_ms * 90.0).round() as u64)?;
    stats.frames += 1;
    stats.keyframes += u64::from(f.keyframe);
    Ok(max != 0 && stats.frames >= max)
}
