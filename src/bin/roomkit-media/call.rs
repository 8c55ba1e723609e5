//! `roomkit-media call sip:USER@HOST[:PORT]`: one outbound audio + video call (UAC), directly or
//! through a proxy (`--proxy HOST:PORT`), answering its digest challenges (`--auth-user`,
//! `--password`). Prints one JSON line per step of the call (`progress`: trying, ringing,
//! early_media, answered, failed, ended), sends a 440 Hz tone (offering opus, G.722, PCMU and PCMA,
//! or only `--audio-codec NAME`; the tone goes at the negotiated codec's rate) and, with
//! `--video FILE`
//! (Annex-B H.264 or IVF VP8), the file's pictures in a loop at `--fps`, for `--seconds`; then
//! hangs up and prints one JSON line of what was sent and received. A call that fails prints
//! why and exits 1. Video is paced and offers NACK and RTX unless `--no-pacing`, `--no-nack`,
//! `--no-rtx`.

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use roomkit_media::backend::{
    AppRate, AudioCodec, CallState, DialOptions, SipBackendConfig, SipCredentials, SipTlsConfig,
    SipVideoBackend,
};
use roomkit_media::codec::testclip::TestClip;
use roomkit_media::prelude::*;
use roomkit_media::{SrtpSuite, VideoCodec};

use serde::Serialize;

use crate::args::{port_range, resolve, within, SipMediaArgs};
use crate::media_file::{codec_for_path, read_pictures};
use crate::output::Out;
use crate::Failure;

/// `call sip:USER@HOST[:PORT]`.
#[derive(clap::Args, Debug)]
pub struct CallArgs {
    /// Whom to call.
    #[arg(value_name = "sip:USER@HOST[:PORT]", value_parser = sip_uri)]
    pub uri: String,
    /// Send the INVITE through this proxy.
    #[arg(long, value_name = "HOST:PORT", value_parser = resolve)]
    pub proxy: Option<SocketAddr>,
    /// User name for digest authentication (with --password).
    #[arg(long, value_name = "U", requires = "password")]
    pub auth_user: Option<String>,
    /// Password for digest authentication (with --auth-user).
    #[arg(
        long,
        value_name = "P",
        requires = "auth_user",
        allow_hyphen_values = true
    )]
    pub password: Option<String>,
    /// Our From URI [default: sip:AUTH-USER@DOMAIN when authenticating].
    #[arg(long, value_name = "URI")]
    pub from: Option<String>,
    /// Video to send in a loop (Annex-B H.264 or IVF VP8) [default: a built-in test clip].
    #[arg(long, value_name = "FILE")]
    pub video: Option<PathBuf>,
    /// How long the call lasts once answered.
    #[arg(long, value_name = "S", default_value_t = 5.0, allow_negative_numbers = true,
          value_parser = within(0.1, 86_400.0, " seconds"))]
    pub seconds: f64,
    /// Pictures per second.
    #[arg(long, value_name = "N", default_value_t = 30, value_parser = within(1u32, 240, ""))]
    pub fps: u32,
    /// Give up (CANCEL) when not answered in this long.
    #[arg(long, value_name = "S", default_value_t = 30.0, allow_negative_numbers = true,
          value_parser = within(0.5, 3600.0, " seconds"))]
    pub ring_timeout: f64,
    /// Offer audio only.
    #[arg(long)]
    pub audio_only: bool,
    /// The RTP ports the call takes its own from (ports in use are skipped).
    #[arg(long, value_name = "A-B", default_value = "30000-32000", value_parser = port_range)]
    pub rtp_ports: (u16, u16),
    /// The IP our media binds and announces in SDP [default: the address SIP leaves from, the
    /// one the kernel routes toward the first hop].
    #[arg(long, value_name = "IP")]
    pub rtp_ip: Option<std::net::IpAddr>,
    /// Offer only this audio codec [default: opus, g722, pcmu and pcma].
    #[arg(long, value_name = "opus|g722|pcmu|pcma", value_parser = engine_audio_codec)]
    pub audio_codec: Option<AudioCodec>,
    /// Trust the CA certificates of this PEM file for a TLS callee (`sips:` or
    /// `;transport=tls`) [default: the system's roots].
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// UNSAFE: accept any certificate from a TLS callee (tests with self-signed peers only).
    #[arg(long, conflicts_with = "tls_ca")]
    pub tls_no_verify: bool,
    #[command(flatten)]
    pub media: SipMediaArgs,
}

/// `--audio-codec`: a codec the engine codes itself.
fn engine_audio_codec(name: &str) -> Result<AudioCodec, String> {
    AudioCodec::from_name(name)
        .filter(AudioCodec::is_coded_by_engine)
        .ok_or_else(|| format!("`{name}` is not opus, g722, pcmu or pcma"))
}

/// The callee: a `sip:` URI with a host.
fn sip_uri(uri: &str) -> Result<String, String> {
    uri_target(uri).map(|_| uri.to_string())
}

/// One step of the call, as a JSON line.
#[derive(Serialize)]
struct Step<'a> {
    event: &'static str,
    state: &'a str,
    status: u16,
    reason: &'a str,
}

/// The closing JSON line: what was sent and what came back.
#[derive(Serialize)]
struct Summary<'a> {
    call_id: &'a str,
    /// `udp`, `tcp` or `tls`.
    transport: &'a str,
    audio_codec: &'a str,
    sample_rate: u32,
    has_video: bool,
    /// The SRTP suite per stream; null: plain RTP (or no video).
    audio_srtp: Option<&'static str>,
    video_srtp: Option<&'static str>,
    pictures_sent: u64,
    frames_received: u64,
    keyframes_received: u64,
    audio_frames_received: u64,
    video_lost: i64,
    bye_answered: bool,
    /// Where the audio went with ICE: the selected pair's remote (null without ICE, or before
    /// a pair was selected).
    audio_ice_remote: Option<String>,
}

/// `host:port` of a `sip:`/`sips:[user@]host[:port][;params]` URI (port 5060 when absent,
/// 5061 for `sips:` and `;transport=tls`).
fn uri_target(uri: &str) -> Result<String, String> {
    let (rest, tls) = match uri.strip_prefix("sips:") {
        Some(r) => (r, true),
        None => (
            uri.strip_prefix("sip:")
                .ok_or_else(|| format!("`{uri}` is not a sip: URI"))?,
            uri.to_ascii_lowercase().contains(";transport=tls"),
        ),
    };
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
    Ok(match (has_port, tls) {
        (true, _) => host.to_string(),
        (false, true) => format!("{host}:5061"),
        (false, false) => format!("{host}:5060"),
    })
}

pub fn run(args: &CallArgs) -> Result<ExitCode, Failure> {
    let uri = &args.uri;
    let target: SocketAddr = resolve(&uri_target(uri)?)?;
    let proxy = args.proxy;
    let (seconds, fps, ring) = (args.seconds, args.fps, args.ring_timeout);
    let credentials = match (&args.auth_user, &args.password) {
        (Some(u), Some(p)) => Some(SipCredentials::new(u, p)),
        // clap makes each of the two require the other.
        _ => None,
    };
    let audio_only = args.audio_only;
    let supported_codecs = match args.audio_codec.clone() {
        Some(codec) => vec![codec],
        None => AudioCodec::defaults(),
    };
    let video = match &args.video {
        Some(f) => {
            let codec = codec_for_path(f);
            Some((codec, read_pictures(f, codec)?))
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
    // The local address the kernel would use toward the first hop goes into Via, Contact, SDP.
    let first_hop = proxy.unwrap_or(target);
    let local_ip = UdpSocket::bind(("0.0.0.0", 0))
        .and_then(|s| s.connect(first_hop).map(|_| s))
        .and_then(|s| s.local_addr())
        .map_err(|e| Failure::Runtime(format!("no route to {first_hop}: {e}")))?
        .ip();
    // Our From: the authentication user at the domain we call, when we authenticate (proxies
    // check who is calling), else the default.
    let from = match (&args.from, &credentials) {
        (Some(f), _) => Some(f.clone()),
        (None, Some(c)) => {
            let host = uri_target(uri)?;
            let domain = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
            Some(format!("sip:{}@{domain}", c.username))
        }
        (None, None) => None,
    };
    let codec = video.as_ref().map_or(VideoCodec::H264, |(c, _)| *c);
    let (resilience, video_rtx) = args.media.resilience()?;
    let be = SipVideoBackend::new(SipBackendConfig {
        local_sip_addr: SocketAddr::new(local_ip, 0),
        local_rtp_ip: args.rtp_ip.unwrap_or(local_ip),
        rtp_port_start: args.rtp_ports.0,
        rtp_port_end: args.rtp_ports.1,
        supported_video_codecs: vec![codec],
        supported_codecs,
        // The tone is made at the codec's own rate.
        audio_sample_rate: AppRate::Codec,
        user: "roomkit-media".into(),
        video_rtx,
        video_fec: args.media.fec,
        resilience,
        srtp: args.media.srtp,
        srtp_suites: args.media.srtp_suites(),
        ice: args.media.ice,
        dtls_srtp: args.media.dtls_srtp,
        stun_server: args.media.stun,
        turn_server: args.media.turn,
        turn_user: args.media.turn_user.clone(),
        turn_password: args.media.turn_password.clone(),
        turn_relay_only: args.media.turn_relay_only,
        tls: SipTlsConfig {
            ca: args.tls_ca.clone(),
            verify: !args.tls_no_verify,
            ..SipTlsConfig::default()
        },
        ..SipBackendConfig::default()
    })
    .map_err(|e| Failure::Runtime(e.to_string()))?;
    let (frames, keyframes, audio) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let out = Out::stdout();
    // Set once the call's last `progress` line (ended or failed) is out, so the summary can
    // follow it: the summary is always the last line.
    let call_over = Arc::new(AtomicBool::new(false));
    {
        let (f, k) = (frames.clone(), keyframes.clone());
        be.on_video_received(move |_, fr| {
            f.fetch_add(1, Ordering::Relaxed);
            k.fetch_add(u64::from(fr.keyframe), Ordering::Relaxed);
        });
        let a = audio.clone();
        be.on_audio_received(move |_, _| {
            a.fetch_add(1, Ordering::Relaxed);
        });
        let out = out.clone();
        let over = call_over.clone();
        be.on_call_state(move |_, p| {
            out.line(&Step {
                event: "progress",
                state: p.state.as_str(),
                status: p.status,
                reason: &p.reason,
            });
            if matches!(p.state.as_str(), "ended" | "failed") {
                over.store(true, Ordering::Release);
            }
        });
    }
    be.start().map_err(|e| Failure::Runtime(e.to_string()))?;
    let call = be
        .dial(
            uri,
            DialOptions {
                proxy,
                credentials,
                from,
                audio_only,
                ring_timeout: Some(Duration::from_secs_f64(ring)),
                ..DialOptions::default()
            },
        )
        .map_err(|e| Failure::Runtime(format!("call to {uri} failed: {e}")))?;
    // The ring time, plus the CANCEL's own transaction.
    let settled = be
        .wait_call(
            call,
            Duration::from_secs_f64(ring) + Duration::from_secs(40),
        )
        .map_err(|e| Failure::Runtime(format!("call to {uri} failed: {e}")))?;
    if settled.state != CallState::Answered {
        return Err(Failure::Runtime(format!(
            "call to {uri} failed: {} {}",
            settled.status, settled.reason
        )));
    }
    let call_id = be.call_id(call).unwrap_or_default();
    let has_video = be.get_video_session(call).is_some();
    let session = be.get_session(call);
    let rate = session.as_ref().map_or(8000, |s| s.audio.sample_rate);
    let audio_codec = session
        .as_ref()
        .and_then(|s| s.metadata.get("audio_codec").cloned())
        .unwrap_or_default();
    let transport = session
        .as_ref()
        .and_then(|s| s.metadata.get("sip_transport").cloned())
        .unwrap_or_default();
    eprintln!(
        "call {call_id} answered: audio {audio_codec} at {rate} Hz, video {}",
        if has_video { codec.as_str() } else { "refused" }
    );
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(seconds);
    let (mut sent_pictures, mut n) = (0u64, 0u64);
    let mut next_audio = start;
    let mut next_picture = start;
    while Instant::now() < end {
        if be.call_state(call).is_some_and(|p| p.state.is_final()) {
            // The far end hung up.
            break;
        }
        let now = Instant::now();
        if now >= next_audio {
            let pcm: Vec<i16> = (0..rate / 50)
                .map(|_| {
                    n += 1;
                    let t = n as f64 / f64::from(rate);
                    (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16
                })
                .collect();
            let _ = be.send_audio(call, &pcm);
            next_audio += Duration::from_millis(20);
        }
        if let (true, Some((_, pics))) = (has_video && now >= next_picture, video.as_ref()) {
            let (p, _) = &pics[(sent_pictures % pics.len() as u64) as usize];
            if be.send_video(call, p).is_ok() {
                sent_pictures += 1;
            }
            next_picture += Duration::from_secs(1) / fps;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let stats = be.stats(call).ok();
    // Read again before hanging up: a DTLS-SRTP stream has its suite once its handshake is
    // done, after the answer.
    let session = be.get_session(call).or(session);
    let byes = be.sip_stats().byes_answered;
    let hung_up_here = be.hangup(call).is_ok();
    let deadline = Instant::now() + Duration::from_secs(4);
    while hung_up_here && be.sip_stats().byes_answered == byes && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let answered = hung_up_here && be.sip_stats().byes_answered > byes;
    // The SIP thread counts the answered BYE before the callback thread reports the call's
    // end: wait (bounded) for that report, so it comes before the summary.
    let deadline = Instant::now() + Duration::from_secs(2);
    while !call_over.load(Ordering::Acquire) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let lost = stats
        .as_ref()
        .and_then(|s| s.video.as_ref())
        .map_or(0, |v| v.lost);
    out.line(&Summary {
        call_id: &call_id,
        transport: &transport,
        audio_codec: &audio_codec,
        audio_srtp: session
            .as_ref()
            .and_then(|s| s.audio.srtp_suite)
            .map(SrtpSuite::sdp_name),
        video_srtp: session
            .as_ref()
            .and_then(|s| s.video.as_ref()?.srtp_suite)
            .map(SrtpSuite::sdp_name),
        sample_rate: rate,
        has_video,
        pictures_sent: sent_pictures,
        frames_received: frames.load(Ordering::Relaxed),
        keyframes_received: keyframes.load(Ordering::Relaxed),
        audio_frames_received: audio.load(Ordering::Relaxed),
        video_lost: lost,
        bye_answered: answered,
        audio_ice_remote: stats
            .as_ref()
            .and_then(|s| s.audio.ice_remote)
            .map(|a| a.to_string()),
    });
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
        assert_eq!(uri_target("sips:bob@10.0.0.1").unwrap(), "10.0.0.1:5061");
        assert_eq!(
            uri_target("sip:bob@10.0.0.1;transport=TLS").unwrap(),
            "10.0.0.1:5061"
        );
        assert!(uri_target("tel:+123").is_err());
    }
}
