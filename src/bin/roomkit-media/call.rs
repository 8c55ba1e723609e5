//! `roomkit-media call sip:USER@HOST:PORT`: one outbound audio + video call (UAC). Sends a 440 Hz
//! tone and, with `--video FILE` (Annex-B H.264 or IVF VP8), the file's pictures in a loop at
//! `--fps`, for `--seconds`; then hangs up and prints one JSON line of what was sent and received.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use roomkit_media::backend::{SipCaller, SipCallerConfig};
use roomkit_media::codec::testclip::TestClip;
use roomkit_media::prelude::*;
use roomkit_media::VideoCodec;

use crate::args::{resolve, Args, Spec};
use crate::media_file::{codec_for_path, read_pictures};

pub const SPEC: Spec = Spec {
    options: &["video", "seconds", "fps"],
    switches: &[],
};

/// `host:port` of a `sip:[user@]host[:port][;params]` URI (port 5060 when absent).
fn uri_target(uri: &str) -> Result<String, String> {
    let rest = uri
        .strip_prefix("sip:")
        .ok_or_else(|| format!("`{uri}` is not a sip: URI"))?;
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let host = host.split([';', '?']).next().unwrap_or(host);
    if host.is_empty() {
        return Err(format!("`{uri}` has no host"));
    }
    let has_port = if host.starts_with('[') {
        host.contains("]:")
    } else {
        host.contains(':')
    };
    Ok(if has_port {
        host.to_string()
    } else {
        format!("{host}:5060")
    })
}

pub fn run(args: &Args) -> Result<ExitCode, String> {
    let [uri] = args.positionals.as_slice() else {
        return Err("call needs exactly one sip:USER@HOST:PORT".into());
    };
    let target: SocketAddr = resolve(&uri_target(uri)?)?;
    let seconds: f64 = args.num("seconds", 5.0)?;
    if !(0.1..=86_400.0).contains(&seconds) {
        return Err(format!("--seconds: {seconds} is outside 0.1..=86400"));
    }
    let fps: u32 = args.num("fps", 30)?;
    if !(1..=240).contains(&fps) {
        return Err(format!("--fps: {fps} is outside 1..=240"));
    }
    let video = match args.get("video") {
        Some(f) => {
            let codec = codec_for_path(Path::new(f));
            Some((codec, read_pictures(Path::new(f), codec)?))
        }
        // The built-in test clip: two seconds at --fps with a key picture each second, played
        // in a loop (the loop starts on a key picture, so the stream stays decodable).
        None => {
            let mut clip = TestClip::new(320, 192, fps);
            Some((
                VideoCodec::H264,
                (0..2 * fps).map(|_| clip.next_picture()).collect(),
            ))
        }
    };
    // The local address the kernel would use toward the target goes into our SDP.
    let local_ip = UdpSocket::bind(("0.0.0.0", 0))
        .and_then(|s| s.connect(target).map(|_| s))
        .and_then(|s| s.local_addr())
        .map_err(|e| format!("no route to {target}: {e}"))?
        .ip();
    let codec = video.as_ref().map_or(VideoCodec::H264, |(c, _)| *c);
    let caller = SipCaller::new(SipCallerConfig {
        local_ip,
        video_codecs: vec![codec],
        rtp_port_start: 30000,
        rtp_port_end: 32000,
        ..SipCallerConfig::default()
    })
    .map_err(|e| e.to_string())?;
    let (frames, keyframes, audio) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    {
        let (f, k) = (frames.clone(), keyframes.clone());
        caller.on_video_received(move |_, fr| {
            f.fetch_add(1, Ordering::Relaxed);
            k.fetch_add(u64::from(fr.keyframe), Ordering::Relaxed);
        });
        let a = audio.clone();
        caller.on_audio_received(move |_, _| {
            a.fetch_add(1, Ordering::Relaxed);
        });
    }
    let call = caller
        .call(uri, target)
        .map_err(|e| format!("call to {uri} failed: {e}"))?;
    eprintln!(
        "call {} answered: video {}",
        call.call_id,
        call.negotiation
            .video
            .as_ref()
            .map_or("refused", |v| v.codec.as_str())
    );
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(seconds);
    let (mut sent_pictures, mut n) = (0u64, 0u64);
    let mut next_audio = start;
    let mut next_picture = start;
    let has_video = call.negotiation.video.is_some();
    while Instant::now() < end {
        let now = Instant::now();
        if now >= next_audio {
            let pcm: Vec<i16> = (0..160)
                .map(|_| {
                    n += 1;
                    (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * n as f64 / 8000.0).sin()) as i16
                })
                .collect();
            let _ = caller.send_audio(call.session, &pcm);
            next_audio += Duration::from_millis(20);
        }
        if let (true, Some((_, pics))) = (has_video && now >= next_picture, video.as_ref()) {
            let (p, _) = &pics[(sent_pictures % pics.len() as u64) as usize];
            caller
                .send_video(call.session, p)
                .map_err(|e| format!("send_video: {e}"))?;
            sent_pictures += 1;
            next_picture += Duration::from_secs(1) / fps;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let stats = caller.stats(call.session).ok();
    let answered = caller.hangup(&call, Duration::from_secs(4));
    let lost = stats
        .as_ref()
        .and_then(|s| s.video.as_ref())
        .map_or(0, |v| v.lost);
    println!(
        "{{\"call_id\":\"{}\",\"has_video\":{has_video},\"pictures_sent\":{sent_pictures},\"frames_received\":{},\"keyframes_received\":{},\"audio_frames_received\":{},\"video_lost\":{lost},\"bye_answered\":{answered}}}",
        call.call_id,
        frames.load(Ordering::Relaxed),
        keyframes.load(Ordering::Relaxed),
        audio.load(Ordering::Relaxed)
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::uri_target;

    #[test]
    fn targets_from_uris() {
        assert_eq!(
            uri_target("sip:bob@127.0.0.1:5070").unwrap(),
            "127.0.0.1:5070"
        );
        assert_eq!(
            uri_target("sip:bob@example.com").unwrap(),
            "example.com:5060"
        );
        assert_eq!(
            uri_target("sip:10.0.0.1;transport=udp").unwrap(),
            "10.0.0.1:5060"
        );
        assert!(uri_target("tel:+123").is_err());
    }
}
