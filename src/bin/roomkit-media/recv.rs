//! `roomkit-media recv`: receives one RTP video stream on an `RtpVideoBackend` session and writes
//! it to a file (Annex-B or IVF).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use roomkit_media::backend::rtp::{RtpBackendConfig, RtpVideoBackend};
use roomkit_media::backend::{NackConfig, ResilienceConfig, SessionId, StreamStats};
use roomkit_media::prelude::*;
use roomkit_media::VideoFrame;

use crate::args::{rtx_arg, Args, Spec};
use crate::link;
use crate::media_file::{codec_arg, VideoSink};
use crate::progress::{Progress, Stats};

pub const SPEC: Spec = Spec {
    options: &[
        "listen", "out", "pt", "codec", "frames", "timeout", "rtx-pt",
    ],
    switches: &["no-nack", "rtcp-mux"],
};

pub fn run(args: &Args) -> Result<Stats, String> {
    let listen = args
        .addr("listen")?
        .ok_or("recv needs --listen HOST:PORT")?;
    let out = PathBuf::from(args.get("out").ok_or("recv needs --out FILE")?);
    if !args.positionals.is_empty() {
        return Err(format!(
            "recv takes no positional arguments (got `{}`)",
            args.positionals[0]
        ));
    }
    let codec = codec_arg(args.get("codec"), &out)?;
    let pt: u8 = args.num("pt", 96)?;
    if pt > 127 {
        return Err(format!("--pt: {pt} is not an RTP payload type (0-127)"));
    }
    let max_frames: u64 = args.num("frames", 0)?;
    let idle: f64 = args.num("timeout", 5.0)?;
    if !(idle > 0.0 && idle <= 86_400.0) {
        return Err(format!("--timeout: {idle} is outside (0, 86400] seconds"));
    }
    let idle = Duration::from_secs_f64(idle);
    let rtx = rtx_arg(args, pt)?;
    let mut sink = VideoSink::create(&out, codec)?;

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
        rtcp_mux: args.get("rtcp-mux").is_some(),
        resilience: ResilienceConfig {
            nack: NackConfig {
                enabled: args.get("no-nack").is_none(),
                ..NackConfig::default()
            },
            ..ResilienceConfig::default()
        },
        ..RtpBackendConfig::default()
    };
    let (backend, session) = link::open(cfg, &listen)?;
    let video = session
        .video
        .as_ref()
        .ok_or("the session has no video stream")?;
    eprintln!("listening on {}", video.local_addr);

    let (tx, rx) = crossbeam_channel::unbounded::<VideoFrame>();
    backend.on_video_received(move |_, frame| {
        let _ = tx.send(frame.clone());
    });

    let mut stats = Stats::default();
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
