//! `roomkit-media send`: packetizes a video file and sends it as RTP, paced at `--fps`.

use std::net::UdpSocket;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use roomkit_media::codec::h264::{H264Packetizer, PacketizationMode, DEFAULT_MTU};
use roomkit_media::codec::vp8::Vp8Packetizer;
use roomkit_media::codec::{Packetizer, PayloadList};
use roomkit_media::rtp::packet::RTP_HEADER_LEN;
use roomkit_media::rtp::sender::RtpSender;
use roomkit_media::VideoCodec;

use crate::args::{Args, Spec};
use crate::media_file::{codec_arg, read_pictures};
use crate::progress::{Progress, Stats};

pub const SPEC: Spec = Spec {
    options: &["to", "pt", "mtu", "fps", "codec"],
    switches: &[],
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

    let bind = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
    let socket = UdpSocket::bind(bind).map_err(|e| format!("cannot open a UDP socket: {e}"))?;
    socket
        .connect(to)
        .map_err(|e| format!("cannot send to {to}: {e}"))?;

    let mut packetizer: Box<dyn Packetizer> = match codec {
        VideoCodec::H264 => Box::new(H264Packetizer::new(mtu, PacketizationMode::NonInterleaved)),
        VideoCodec::Vp8 => Box::new(Vp8Packetizer::new(mtu)),
    };
    let mut sender = RtpSender::new(pt, 90_000, &mut rand::rng());
    let mut payloads = PayloadList::new();
    let mut datagram = Vec::with_capacity(RTP_HEADER_LEN + mtu);
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
        payloads.clear();
        if let Err(e) = packetizer.packetize(picture, &mut payloads) {
            eprintln!("roomkit-media: picture {i} not sent: {e}");
            stats.dropped_frames += 1;
            continue;
        }
        let ts = sender.rtp_timestamp_for_ms(i as f64 * frame_ms);
        for p in 0..payloads.len() {
            datagram.clear();
            datagram.extend_from_slice(&sender.next_header(ts, payloads.marker(p)));
            payloads.copy_payload(p, picture, &mut datagram);
            sender.count_payload(payloads.payload_len(p));
            send_with_retry(&socket, &datagram)?;
            stats.packets += 1;
            stats.bytes += datagram.len() as u64;
        }
        stats.frames += 1;
        stats.keyframes += u64::from(*key);
        progress.update("send", &stats);
    }
    progress.done();
    Ok(stats)
}

/// Sends one datagram; a full socket buffer (ENOBUFS/EAGAIN when sending flat out) is waited out
/// briefly rather than losing the packet. An ICMP port-unreachable from an earlier packet is not
/// an error for a sender: the receiver may start later.
fn send_with_retry(socket: &UdpSocket, datagram: &[u8]) -> Result<(), String> {
    for _ in 0..1000 {
        match socket.send(datagram) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Ok(()),
            Err(e)
                if e.raw_os_error() == Some(libc::ENOBUFS)
                    || e.kind() == std::io::ErrorKind::WouldBlock =>
            {
                std::thread::sleep(Duration::from_micros(200));
            }
            Err(e) => return Err(format!("send failed: {e}")),
        }
    }
    Err("send failed: the socket stayed full for 200 ms".into())
}
