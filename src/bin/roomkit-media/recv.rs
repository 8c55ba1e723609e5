//! `roomkit-media recv`: receives one RTP video stream and writes it to a file (Annex-B or IVF).

use std::io::ErrorKind;
use std::net::UdpSocket;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use roomkit_media::codec::vp8::Vp8Depacketizer;
use roomkit_media::rtp::packet::parse_rtp;
use roomkit_media::rtp::video::{VideoReceiver, VideoReceiverConfig};
use roomkit_media::{VideoCodec, VideoFrame};
use socket2::{Domain, Protocol, Socket, Type};

use crate::args::{Args, Spec};
use crate::media_file::{codec_arg, VideoSink};
use crate::progress::{Progress, Stats};

pub const SPEC: Spec = Spec {
    options: &["listen", "out", "pt", "codec", "frames", "timeout"],
    switches: &[],
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
    let pt: Option<u8> = args.get("pt").map(|_| args.num("pt", 0)).transpose()?;
    let max_frames: u64 = args.num("frames", 0)?;
    let idle: f64 = args.num("timeout", 5.0)?;
    if !(idle > 0.0 && idle <= 86_400.0) {
        return Err(format!("--timeout: {idle} is outside (0, 86400] seconds"));
    }
    let idle = Duration::from_secs_f64(idle);

    let socket = open_socket(listen)?;
    let bound = socket
        .local_addr()
        .map_err(|e| format!("local address: {e}"))?;
    eprintln!("listening on {bound}");
    let mut sink = VideoSink::create(&out, codec, 30)?;

    let cfg = VideoReceiverConfig::default();
    let mut receiver = match codec {
        VideoCodec::H264 => VideoReceiver::h264(cfg),
        VideoCodec::Vp8 => VideoReceiver::new(cfg, Box::new(Vp8Depacketizer::new())),
    };
    let mut stats = Stats::default();
    let mut progress = Progress::new();
    let mut frames: Vec<VideoFrame> = Vec::new();
    let mut buf = vec![0u8; 65_536];
    let mut last_packet = Instant::now();
    let mut other = 0u64;

    loop {
        let now = Instant::now();
        if now.duration_since(last_packet) >= idle {
            break;
        }
        let mut wait = idle - now.duration_since(last_packet);
        if let Some(deadline) = receiver.next_deadline() {
            wait = wait.min(deadline.saturating_duration_since(now));
        }
        socket
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
            .map_err(|e| format!("socket: {e}"))?;
        match socket.recv(&mut buf) {
            Ok(n) => {
                last_packet = Instant::now();
                match parse_rtp(&buf[..n]) {
                    Ok((meta, range)) if pt.is_none_or(|p| p == meta.payload_type) => {
                        stats.packets += 1;
                        stats.bytes += n as u64;
                        receiver.push(meta, &buf[range], last_packet, &mut frames);
                    }
                    _ => other += 1,
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(format!("receive failed: {e}")),
        }
        receiver.poll(Instant::now(), &mut frames);
        if write_frames(&mut frames, &mut sink, &mut stats, max_frames)? {
            break;
        }
        progress.update("recv", &stats);
    }
    receiver.flush(Instant::now(), &mut frames);
    write_frames(&mut frames, &mut sink, &mut stats, max_frames)?;
    sink.finish()?;
    progress.done();

    let r = receiver.stats();
    stats.lost = r.reorder.lost;
    stats.dropped_frames = r.incomplete_dropped + r.gated_dropped;
    if other > 0 {
        eprintln!("roomkit-media: ignored {other} datagrams that were not RTP of the expected payload type");
    }
    Ok(stats)
}

/// Writes delivered frames; returns true once `max_frames` (if non-zero) have been written.
fn write_frames(
    frames: &mut Vec<VideoFrame>,
    sink: &mut VideoSink,
    stats: &mut Stats,
    max: u64,
) -> Result<bool, String> {
    for f in frames.drain(..) {
        if max != 0 && stats.frames >= max {
            break;
        }
        sink.write(&f.data, (f.timestamp_ms * 90.0).round() as u64)?;
        stats.frames += 1;
        stats.keyframes += u64::from(f.keyframe);
    }
    Ok(max != 0 && stats.frames >= max)
}

/// A UDP socket with a large receive buffer, so a burst of a big picture is not lost before we
/// read it.
fn open_socket(addr: std::net::SocketAddr) -> Result<UdpSocket, String> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
        .map_err(|e| format!("socket: {e}"))?;
    let _ = s.set_recv_buffer_size(8 << 20);
    s.bind(&addr.into())
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    Ok(s.into())
}
