//! `roomkit-media serve`: answers SIP audio + video calls and reports each event as one JSON line
//! on stdout (`call`, `video_ready`, `frame` at most once a second per call, `dtmf`, `hangup`,
//! and a closing `stats`). `--record DIR` writes each call's video (`.h264` or `.ivf`) and audio
//! (`.wav`, 16-bit mono at the codec's own rate: 8 kHz for G.711, 16 kHz for G.722, 48 kHz for
//! Opus); `--audio-codecs` limits the codecs accepted (default opus,G722,PCMU,PCMA); `--echo` sends received media back to the caller; `--hangup-after MS`
//! ends each call from our side that long after answering it. `--register sip:USER@HOST[:PORT]`
//! registers with that registrar (digest with `--auth-user`, default USER, and `--password`),
//! keeps the registration fresh, reports it (`registered`, `registration_failed`,
//! `unregistered`) and removes it on Ctrl-C. `--whip ADDR` (with `--whep`, `--whip-token`)
//! takes WebRTC sessions over HTTP beside the SIP calls, as calls like the others.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use roomkit_media::backend::{AppRate, AudioCodec};
use roomkit_media::backend::{
    OverloadConfig, RegisterOptions, RegistrationEvent, SipBackendConfig, SipCredentials,
    SipTlsConfig, SipTransportKind, SipVideoBackend,
};
use roomkit_media::backend::{SessionId, SessionInfo};
use roomkit_media::metrics::{self, MetricsServer};
use roomkit_media::prelude::*;
use roomkit_media::whip::{WhipConfig, WhipKind, WhipServer};
use roomkit_media::VideoCodec;

use roomkit_media::DtlsSrtpPolicy;
use roomkit_media::SrtpSuite;
use serde::Serialize;

use crate::args::{port_range, resolve, within, SipMediaArgs};
use crate::media_file::VideoSink;
use crate::output::{rounded, Out};
use crate::signals;

/// `serve --sip ADDR`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Where to listen for SIP (UDP; port 0: any free port, printed in the `listening` line).
    #[arg(long, value_name = "ADDR", value_parser = resolve)]
    pub sip: SocketAddr,
    /// The IP our media binds and announces in SDP [default: the --sip address's].
    #[arg(long, value_name = "IP", value_parser = ip_addr)]
    pub rtp_ip: Option<IpAddr>,
    /// The RTP ports calls take theirs from.
    #[arg(long, value_name = "A-B", default_value = "20000-30000", value_parser = port_range)]
    pub rtp_ports: (u16, u16),
    /// Video codecs accepted, in order of preference [default: H264].
    #[arg(long, value_name = "H264,VP8", value_parser = parse_video_codecs)]
    pub video_codecs: Option<Codecs<VideoCodec>>,
    /// Audio codecs accepted, in order of preference [default: opus,G722,PCMU,PCMA].
    #[arg(long, value_name = "opus,G722,PCMU,PCMA", value_parser = parse_audio_codecs)]
    pub audio_codecs: Option<Codecs<AudioCodec>>,
    /// Write each call's video (`.h264` or `.ivf`) and audio (`.wav`) in this directory.
    #[arg(long, value_name = "DIR")]
    pub record: Option<PathBuf>,
    /// Send received media back to the caller.
    #[arg(long)]
    pub echo: bool,
    /// Exit after this many calls have ended (0: run until Ctrl-C).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub max_calls: u64,
    /// Ring this long before answering.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub answer_after: u64,
    /// Most calls at once; more are refused with 503 (0: no limit).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub max_sessions: usize,
    /// Overload control: refuse new calls with 503 while the SIP thread's oldest unhandled
    /// datagram is older than this (0: off).
    #[arg(long, value_name = "MS", default_value_t = 200)]
    pub overload_backlog: u64,
    /// Out-of-dialog requests accepted per second from one source address; more get 503
    /// (0: no limit).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub source_rate: u32,
    /// Hang each call up (BYE) this long after answering it.
    #[arg(long, value_name = "MS")]
    pub hangup_after: Option<u64>,
    /// No `frame` lines.
    #[arg(long)]
    pub quiet_frames: bool,
    /// Register with this registrar and keep the registration fresh.
    #[arg(long, value_name = "sip:USER@HOST[:PORT]", value_parser = aor)]
    pub register: Option<String>,
    /// User name for the registrar's digest challenge [default: USER of --register].
    #[arg(long, value_name = "U", requires = "register")]
    pub auth_user: Option<String>,
    /// Password for the registrar's digest challenge.
    #[arg(
        long,
        value_name = "P",
        requires = "register",
        allow_hyphen_values = true
    )]
    pub password: Option<String>,
    /// Registration lifetime asked for.
    #[arg(long, value_name = "S", requires = "register", value_parser = within(10u32, 86_400, " seconds"))]
    pub expires: Option<u32>,
    /// Send REGISTER through this proxy.
    #[arg(long, value_name = "HOST:PORT", requires = "register", value_parser = resolve)]
    pub proxy: Option<SocketAddr>,
    /// Also listen for SIP over TCP here.
    #[arg(long, value_name = "ADDR", value_parser = resolve)]
    pub sip_tcp: Option<SocketAddr>,
    /// Also listen for SIP over TLS here (with --tls-cert and --tls-key).
    #[arg(long, value_name = "ADDR", value_parser = resolve, requires_all = ["tls_cert", "tls_key"])]
    pub sip_tls: Option<SocketAddr>,
    /// Our TLS certificate chain (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// RFC 5626 keep-alive pings on the TCP/TLS connections we open (to the registrar), about
    /// every S seconds; 0: none. One unanswered for 10 s fails what waits on the connection.
    #[arg(long, value_name = "S", default_value_t = 120, value_parser = within(0u32, 3600, " seconds"))]
    pub sip_keepalive: u32,
    /// Serve Prometheus metrics on http://ADDR/metrics (port 0: any free port, printed in the
    /// `listening` line).
    #[arg(long, value_name = "ADDR", value_parser = resolve)]
    pub metrics: Option<SocketAddr>,
    /// The `instance` label of the metrics.
    #[arg(long, value_name = "NAME", default_value = roomkit_media::metrics::DEFAULT_INSTANCE, requires = "metrics")]
    pub metrics_instance: String,
    /// RTP I/O threads: N shared threads, each waiting in epoll on many calls' sockets (the
    /// default: one per core, what a server carries most calls with); 0 one thread per stream,
    /// the library's default, lowest latency for a few calls.
    #[arg(long, value_name = "N", default_value_t = cores(), value_parser = within(0usize, 1024, ""))]
    pub io_threads: usize,
    /// Take WebRTC publishers over WHIP (RFC 9725) at http://ADDR/whip (https:// with
    /// --tls-cert and --tls-key), beside SIP calls: each is a call like the others (the same
    /// JSON lines, --record, --echo), answered ICE-lite with DTLS-SRTP (so `--dtls-srtp off`
    /// becomes `optional`). Port 0: any free port; the URL is in the `listening` line.
    #[arg(long, value_name = "ADDR", value_parser = resolve)]
    pub whip: Option<SocketAddr>,
    /// Also serve WHEP players at /whep on the --whip address.
    #[arg(long, requires = "whip")]
    pub whep: bool,
    /// Require `Authorization: Bearer T` of WHIP/WHEP clients.
    #[arg(long, value_name = "T", requires = "whip")]
    pub whip_token: Option<String>,
    #[command(flatten)]
    pub media: SipMediaArgs,
}

/// A comma-separated list of codecs (a type of its own, so clap takes it as one value).
#[derive(Debug, Clone)]
pub struct Codecs<T>(pub Vec<T>);

/// The USER of `sip:USER@HOST[:PORT]`.
fn aor_user(aor: &str) -> Option<&str> {
    aor.strip_prefix("sip:")
        .and_then(|r| r.split_once('@'))
        .map(|(u, _)| u)
        .filter(|u| !u.is_empty())
}

/// `--register`: an address of record with a user.
fn aor(v: &str) -> Result<String, String> {
    aor_user(v)
        .map(|_| v.to_string())
        .ok_or_else(|| format!("`{v}` is not sip:USER@HOST[:PORT]"))
}

fn ip_addr(v: &str) -> Result<IpAddr, String> {
    v.parse().map_err(|_| format!("`{v}` is not an IP address"))
}

/// One JSON line of `serve`: `{"event":"<name>", ...fields in order}`.
#[derive(Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum Event<'a> {
    Listening {
        sip: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        sip_tcp: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        sip_tls: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        metrics: Option<String>,
        /// The WHIP endpoint URL.
        #[serde(skip_serializing_if = "Option::is_none")]
        whip: Option<String>,
        /// The WHEP endpoint URL.
        #[serde(skip_serializing_if = "Option::is_none")]
        whep: Option<String>,
    },
    Call {
        session: String,
        call_id: &'a str,
        caller: &'a str,
        callee: &'a str,
        caller_display_name: &'a str,
        room_id: &'a str,
        has_video: bool,
        video_codec: &'a str,
        audio_pt: u8,
        audio_codec: &'a str,
        sample_rate: u32,
        audio_remote: String,
        /// The SRTP suite of the audio stream; null: plain RTP.
        audio_srtp: Option<&'static str>,
        /// `udp`, `tcp` or `tls`.
        transport: &'a str,
    },
    VideoReady {
        session: String,
        codec: &'a str,
        pt: u8,
        local: String,
        remote: String,
        /// The SRTP suite of the video stream; null: plain RTP.
        srtp: Option<&'static str>,
    },
    Frame {
        session: String,
        call_id: String,
        frames: u64,
        keyframes: u64,
        bytes: u64,
        last_keyframe: bool,
        timestamp_ms: f64,
    },
    Dtmf {
        session: String,
        digit: String,
        duration_ms: u32,
    },
    Hangup {
        session: String,
        call_id: &'a str,
        reason: &'a str,
        frames: u64,
        keyframes: u64,
        video_bytes: u64,
        audio_frames: u64,
        dtmf: &'a str,
    },
    Registered {
        aor: &'a str,
        expires: u32,
    },
    RegistrationFailed {
        aor: &'a str,
        status: u16,
        reason: &'a str,
        /// Seconds, to 0.1 s; null when no retry is planned.
        retry_in: Option<f64>,
    },
    Unregistered {
        aor: &'a str,
    },
    Stats {
        calls_answered: u64,
        calls_ended: u64,
        calls_refused: u64,
        /// Of those, refused with 503 (full, no port, overload, source over its rate).
        calls_refused_overload: u64,
        requests_rate_limited: u64,
        sip_received: u64,
        sip_rejected: u64,
        sip_dropped: u64,
        bye_timeouts: u64,
        bye_failures: u64,
        seconds: f64,
        /// Why overload 503s were sent: the SIP thread behind, the setup queue, no room.
        calls_refused_sip_backlog: u64,
        calls_refused_setup_queue: u64,
        calls_refused_capacity: u64,
    },
}

/// A file name from a Call-ID (which may hold `@`, `/`, ...).
fn safe_name(call_id: &str) -> String {
    call_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A 16-bit mono PCM WAV whose sizes are patched in when it is closed.
struct WavWriter {
    file: BufWriter<File>,
    samples: u64,
}

impl WavWriter {
    fn create(path: &Path, rate: u32) -> std::io::Result<WavWriter> {
        let mut file = BufWriter::new(File::create(path)?);
        let mut h = Vec::with_capacity(44);
        h.extend_from_slice(b"RIFF");
        h.extend_from_slice(&36u32.to_le_bytes());
        h.extend_from_slice(b"WAVEfmt ");
        h.extend_from_slice(&16u32.to_le_bytes());
        h.extend_from_slice(&1u16.to_le_bytes()); // PCM
        h.extend_from_slice(&1u16.to_le_bytes()); // mono
        h.extend_from_slice(&rate.to_le_bytes());
        h.extend_from_slice(&(rate * 2).to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&16u16.to_le_bytes());
        h.extend_from_slice(b"data");
        h.extend_from_slice(&0u32.to_le_bytes());
        file.write_all(&h)?;
        Ok(WavWriter { file, samples: 0 })
    }

    fn write(&mut self, pcm: &[i16]) -> std::io::Result<()> {
        let mut b = Vec::with_capacity(pcm.len() * 2);
        for s in pcm {
            b.extend_from_slice(&s.to_le_bytes());
        }
        self.samples += pcm.len() as u64;
        self.file.write_all(&b)
    }

    fn finish(mut self) -> std::io::Result<()> {
        let data = (self.samples * 2).min(u32::MAX as u64 - 36) as u32;
        self.file.seek(SeekFrom::Start(4))?;
        self.file.write_all(&(36 + data).to_le_bytes())?;
        self.file.seek(SeekFrom::Start(40))?;
        self.file.write_all(&data.to_le_bytes())?;
        self.file.flush()
    }
}

/// What we keep per live call.
#[derive(Default)]
struct CallLog {
    call_id: String,
    frames: u64,
    keyframes: u64,
    bytes: u64,
    audio_frames: u64,
    dtmf: String,
    last_summary: Option<Instant>,
    video: Option<VideoSink>,
    audio: Option<WavWriter>,
    first_ts: Option<f64>,
    answered_at: Option<Instant>,
    /// `whip`/`whep` for a session whose offer came over HTTP; empty for a SIP call.
    signalling: String,
    video_codec: Option<VideoCodec>,
}

/// `--whep`: where a WHIP publisher's media goes: every WHEP player (for video, those that
/// agreed on the publisher's codec, as pictures are relayed as they are). None from another
/// session.
fn whep_players(
    calls: &HashMap<SessionId, CallLog>,
    from: SessionId,
    video: Option<VideoCodec>,
) -> Vec<SessionId> {
    if calls.get(&from).is_none_or(|l| l.signalling != "whip") {
        return Vec::new();
    }
    calls
        .iter()
        .filter(|(_, l)| l.signalling == "whep" && (video.is_none() || l.video_codec == video))
        .map(|(id, _)| *id)
        .collect()
}

/// The WHIP publishers (a new WHEP player, or one that lost pictures, needs their key frame).
fn whip_publishers(calls: &HashMap<SessionId, CallLog>) -> Vec<SessionId> {
    calls
        .iter()
        .filter(|(_, l)| l.signalling == "whip")
        .map(|(id, _)| *id)
        .collect()
}

fn parse_video_codecs(v: &str) -> Result<Codecs<VideoCodec>, String> {
    v.split(',')
        .map(|c| VideoCodec::from_name(c.trim()).ok_or_else(|| format!("`{c}` is not H264 or VP8")))
        .collect::<Result<_, _>>()
        .map(Codecs)
}

fn parse_audio_codecs(v: &str) -> Result<Codecs<AudioCodec>, String> {
    v.split(',')
        .map(|c| {
            AudioCodec::from_name(c.trim()).ok_or_else(|| format!("`{c}` is not a codec name"))
        })
        .collect::<Result<_, _>>()
        .map(Codecs)
}

/// Runs until a signal, or until `--max-calls` calls have ended.
pub fn run(args: &ServeArgs) -> Result<ExitCode, crate::Failure> {
    let sip = args.sip;
    let register = args.register.as_ref().map(|aor| {
        let user = aor_user(aor).expect("checked by clap");
        let credentials = args
            .password
            .as_ref()
            .map(|p| SipCredentials::new(args.auth_user.as_deref().unwrap_or(user), p));
        (
            aor.clone(),
            RegisterOptions {
                credentials,
                expires: args.expires.unwrap_or(3600),
                proxy: args.proxy,
                ..RegisterOptions::default()
            },
        )
    });
    let rtp_ip: IpAddr = args.rtp_ip.unwrap_or(sip.ip());
    let (rtp_start, rtp_end) = args.rtp_ports;
    let (resilience, video_rtx) = args.media.resilience()?;
    let mut cfg = SipBackendConfig {
        local_sip_addr: sip,
        local_sip_tcp_addr: args.sip_tcp,
        local_sip_tls_addr: args.sip_tls,
        tls: SipTlsConfig {
            cert: args.tls_cert.clone(),
            key: args.tls_key.clone(),
            ..SipTlsConfig::default()
        },
        local_rtp_ip: rtp_ip,
        rtp_port_start: rtp_start,
        rtp_port_end: rtp_end,
        answer_after: Duration::from_millis(args.answer_after),
        max_sessions: args.max_sessions,
        overload: OverloadConfig {
            max_backlog: Duration::from_millis(args.overload_backlog),
            source_rate: args.source_rate,
            ..OverloadConfig::default()
        },
        callback_threads: 2,
        io_threads: args.io_threads,
        // Received audio at the codec's own rate, so a recording keeps all of it; echo sends it
        // back at the same rate.
        audio_sample_rate: AppRate::Codec,
        video_rtx,
        video_fec: args.media.fec,
        resilience,
        srtp: args.media.srtp,
        srtp_suites: args.media.srtp_suites(),
        ice: args.media.ice,
        // WHIP clients need DTLS-SRTP, so the backend needs its certificate: at least
        // `optional` (SIP offers with a fingerprint get DTLS-SRTP too; plain ones stay plain).
        dtls_srtp: match args.media.dtls_srtp {
            DtlsSrtpPolicy::Off if args.whip.is_some() => DtlsSrtpPolicy::Optional,
            p => p,
        },
        stun_server: args.media.stun,
        turn_server: args.media.turn,
        turn_user: args.media.turn_user.clone(),
        turn_password: args.media.turn_password.clone(),
        turn_relay_only: args.media.turn_relay_only,
        ..SipBackendConfig::default()
    };
    cfg.stream_timeouts.keepalive = Duration::from_secs(u64::from(args.sip_keepalive));
    if let Some(Codecs(v)) = &args.video_codecs {
        cfg.supported_video_codecs = v.clone();
    }
    if let Some(Codecs(v)) = &args.audio_codecs {
        cfg.supported_codecs = v.clone();
    }
    let record: Option<PathBuf> = args.record.clone();
    if let Some(d) = &record {
        std::fs::create_dir_all(d).map_err(|e| format!("--record {}: {e}", d.display()))?;
    }
    let echo = args.echo;
    let frame_lines = !args.quiet_frames;
    let max_calls = args.max_calls;
    let hangup_after: Option<Duration> = args.hangup_after.map(Duration::from_millis);

    signals::install();
    let be =
        Arc::new(SipVideoBackend::new(cfg).map_err(|e| crate::Failure::Runtime(e.to_string()))?);
    let out = Out::stdout();
    let calls: Arc<Mutex<HashMap<SessionId, CallLog>>> = Arc::default();
    let ended = Arc::new(AtomicU64::new(0));
    let answered = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    {
        let (out, calls, rec, answered) =
            (out.clone(), calls.clone(), record.clone(), answered.clone());
        let be2 = Arc::downgrade(&be);
        be.on_call(move |s: &SessionInfo| {
            answered.fetch_add(1, Ordering::Relaxed);
            let m = &s.metadata;
            let get = |k: &str| m.get(k).map_or("", String::as_str);
            let call_id = get("call_id").to_string();
            let mut log = CallLog {
                call_id: call_id.clone(),
                answered_at: Some(Instant::now()),
                signalling: get("signalling").to_string(),
                video_codec: s.video.as_ref().and_then(|v| v.codec),
                ..CallLog::default()
            };
            if let Some(dir) = &rec {
                let base = safe_name(&call_id);
                if let Some(v) = &s.video {
                    let codec = v.codec.unwrap_or(VideoCodec::H264);
                    let ext = if codec == VideoCodec::Vp8 {
                        "ivf"
                    } else {
                        "h264"
                    };
                    log.video = VideoSink::create(&dir.join(format!("{base}.{ext}")), codec).ok();
                }
                log.audio =
                    WavWriter::create(&dir.join(format!("{base}.wav")), s.audio.sample_rate).ok();
            }
            let player = log.signalling == "whep";
            let publishers = {
                let mut calls = calls.lock();
                calls.insert(s.id, log);
                if player {
                    whip_publishers(&calls)
                } else {
                    Vec::new()
                }
            };
            // A new player starts decoding at the publishers' next key frame: ask for it now.
            if let Some(be) = be2.upgrade() {
                for p in publishers {
                    let _ = be.request_keyframe(p);
                }
            }
            out.line(&Event::Call {
                session: s.id.to_string(),
                call_id: &call_id,
                caller: get("caller"),
                callee: get("callee"),
                caller_display_name: get("caller_display_name"),
                room_id: get("room_id"),
                has_video: get("has_video") == "true",
                video_codec: get("video_codec"),
                audio_pt: s.audio.payload_type,
                audio_codec: get("audio_codec"),
                sample_rate: s.audio.sample_rate,
                audio_remote: s.audio.remote_addr.to_string(),
                audio_srtp: s.audio.srtp_suite.map(SrtpSuite::sdp_name),
                // SIP's transport, or `whip`/`whep` for a session whose offer came over HTTP.
                transport: m
                    .get("sip_transport")
                    .or_else(|| m.get("signalling"))
                    .map_or("", String::as_str),
            });
        });
    }
    {
        let out = out.clone();
        be.on_video_session_ready(move |s| {
            let v = s.video.as_ref();
            out.line(&Event::VideoReady {
                session: s.id.to_string(),
                codec: v.and_then(|v| v.codec).map_or("", |c| c.as_str()),
                pt: v.map_or(0, |v| v.payload_type),
                local: v.map_or(String::new(), |v| v.local_addr.to_string()),
                remote: v.map_or(String::new(), |v| v.remote_addr.to_string()),
                srtp: v.and_then(|v| v.srtp_suite).map(SrtpSuite::sdp_name),
            });
        });
    }
    {
        let (out, calls, be2) = (out.clone(), calls.clone(), Arc::downgrade(&be));
        be.on_video_received(move |id, f| {
            let mut line = None;
            let players = whep_players(&calls.lock(), id, Some(f.codec));
            if let Some(be) = be2.upgrade().filter(|_| !players.is_empty()) {
                for p in players {
                    let _ = be.send_video(p, &f.data);
                }
            }
            if let Some(log) = calls.lock().get_mut(&id) {
                log.frames += 1;
                log.keyframes += u64::from(f.keyframe);
                log.bytes += f.data.len() as u64;
                let first = *log.first_ts.get_or_insert(f.timestamp_ms);
                if let Some(sink) = log.video.as_mut() {
                    let pts = ((f.timestamp_ms - first).max(0.0) * 30.0 / 1000.0).round() as u64;
                    let _ = sink.write(&f.data, pts);
                }
                let due = log
                    .last_summary
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
                if frame_lines && due {
                    log.last_summary = Some(Instant::now());
                    line = Some(Event::Frame {
                        session: id.to_string(),
                        call_id: log.call_id.clone(),
                        frames: log.frames,
                        keyframes: log.keyframes,
                        bytes: log.bytes,
                        last_keyframe: f.keyframe,
                        timestamp_ms: rounded(f.timestamp_ms, 1),
                    });
                }
            }
            if let Some(l) = line {
                out.line(&l);
            }
            if echo {
                if let Some(be) = be2.upgrade() {
                    let _ = be.send_video(id, &f.data);
                }
            }
        });
    }
    {
        let (calls, be2) = (calls.clone(), Arc::downgrade(&be));
        be.on_audio_received(move |id, f| {
            let players = whep_players(&calls.lock(), id, None);
            if let Some(be) = be2.upgrade().filter(|_| !players.is_empty()) {
                for p in players {
                    let _ = be.send_audio_at(p, &f.pcm, f.sample_rate);
                }
            }
            if let Some(log) = calls.lock().get_mut(&id) {
                log.audio_frames += 1;
                if let Some(w) = log.audio.as_mut() {
                    let _ = w.write(&f.pcm);
                }
            }
            if echo {
                if let Some(be) = be2.upgrade() {
                    let _ = be.send_audio(id, &f.pcm);
                }
            }
        });
    }
    {
        let (out, calls) = (out.clone(), calls.clone());
        be.on_dtmf_received(move |id, ev| {
            if let Some(log) = calls.lock().get_mut(&id) {
                log.dtmf.push(ev.digit);
            }
            out.line(&Event::Dtmf {
                session: id.to_string(),
                digit: ev.digit.to_string(),
                duration_ms: ev.duration_ms,
            });
        });
    }
    {
        // A WHEP player that lost pictures (PLI/FIR) needs the publishers' next key frame.
        let (calls, be2) = (calls.clone(), Arc::downgrade(&be));
        be.on_keyframe_requested(move |id, _| {
            let publishers = {
                let calls = calls.lock();
                if calls.get(&id).is_some_and(|l| l.signalling == "whep") {
                    whip_publishers(&calls)
                } else {
                    Vec::new()
                }
            };
            if let Some(be) = be2.upgrade() {
                for p in publishers {
                    let _ = be.request_keyframe(p);
                }
            }
        });
    }
    {
        let (out, calls, ended) = (out.clone(), calls.clone(), ended.clone());
        be.on_client_disconnected(move |s| {
            let log = calls.lock().remove(&s.id);
            let Some(log) = log else {
                // A call refused or cancelled before it was answered.
                ended.fetch_add(1, Ordering::Relaxed);
                return;
            };
            if let Some(v) = log.video {
                let _ = v.finish();
            }
            if let Some(a) = log.audio {
                let _ = a.finish();
            }
            out.line(&Event::Hangup {
                session: s.id.to_string(),
                call_id: &log.call_id,
                reason: s.end_reason.map_or("unknown", |r| r.as_str()),
                frames: log.frames,
                keyframes: log.keyframes,
                video_bytes: log.bytes,
                audio_frames: log.audio_frames,
                dtmf: &log.dtmf,
            });
            ended.fetch_add(1, Ordering::Relaxed);
        });
    }

    if let Some((aor, _)) = &register {
        let (out, aor) = (out.clone(), aor.clone());
        be.on_registration(move |_, ev| {
            let line = match ev {
                RegistrationEvent::Registered { expires } => Event::Registered {
                    aor: &aor,
                    expires: *expires,
                },
                RegistrationEvent::Failed {
                    status,
                    reason,
                    retry_in,
                } => Event::RegistrationFailed {
                    aor: &aor,
                    status: *status,
                    reason,
                    retry_in: retry_in.map(|d| rounded(d.as_secs_f64(), 1)),
                },
                RegistrationEvent::Unregistered => Event::Unregistered { aor: &aor },
                _ => return,
            };
            out.line(&line);
        });
    }

    // Every callback is in place: calls may come now.
    let local = be
        .start()
        .map_err(|e| crate::Failure::Runtime(e.to_string()))?;
    eprintln!("serving SIP on {local}");
    let stream = |k| {
        be.local_sip_stream_addr(k)
            .map(|a: SocketAddr| a.to_string())
    };
    // The endpoint holds the backend weakly: it never keeps it alive past `run`.
    let metrics = match args.metrics {
        Some(addr) => {
            let (weak, name) = (Arc::downgrade(&be), args.metrics_instance.clone());
            let server = MetricsServer::start(addr, move |format| match weak.upgrade() {
                Some(be) => metrics::render(&[(name.as_str(), &*be)], format),
                None => String::new(),
            })
            .map_err(|e| crate::Failure::Runtime(format!("--metrics {addr}: {e}")))?;
            Some(server)
        }
        None => None,
    };
    let whip = match args.whip {
        Some(addr) => {
            let tls = args.tls_cert.as_deref().zip(args.tls_key.as_deref());
            let config = WhipConfig {
                token: args.whip_token.clone(),
                whep: args.whep,
            };
            let server = WhipServer::start(addr, tls, config, &be)
                .map_err(|e| crate::Failure::Runtime(format!("--whip {addr}: {e}")))?;
            Some(server)
        }
        None => None,
    };
    out.line(&Event::Listening {
        sip: local.to_string(),
        sip_tcp: stream(SipTransportKind::Tcp),
        sip_tls: stream(SipTransportKind::Tls),
        metrics: metrics.as_ref().map(|m| m.local_addr().to_string()),
        whip: whip.as_ref().map(|w| w.url(WhipKind::Whip)),
        whep: whip
            .as_ref()
            .filter(|_| args.whep)
            .map(|w| w.url(WhipKind::Whep)),
    });
    if let Some((aor, options)) = register {
        be.register(&aor, options)
            .map_err(|e| crate::Failure::Runtime(format!("--register {aor}: {e}")))?;
    }
    while !signals::stop_requested() {
        if max_calls > 0 && ended.load(Ordering::Relaxed) >= max_calls {
            break;
        }
        if let Some(limit) = hangup_after {
            // Calls we end ourselves (BYE from our side).
            let due: Vec<SessionId> = calls
                .lock()
                .iter()
                .filter(|(_, l)| l.answered_at.is_some_and(|t| t.elapsed() >= limit))
                .map(|(id, _)| *id)
                .collect();
            for id in due {
                if let Some(l) = calls.lock().get_mut(&id) {
                    l.answered_at = None;
                }
                let _ = be.hangup(id);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let st = be.sip_stats();
    // No scrape or WHIP request may hold the backend while it is dropped.
    drop(metrics);
    drop(whip);
    // Dropping the backend ends live calls (BYE), removes the registration, joins every thread
    // and flushes the callbacks.
    let be = Arc::try_unwrap(be)
        .map_err(|_| crate::Failure::Runtime("backend still shared at exit".to_string()))?;
    drop(be);
    out.line(&Event::Stats {
        calls_answered: st.calls_answered,
        calls_ended: ended.load(Ordering::Relaxed),
        calls_refused: st.calls_refused,
        calls_refused_overload: st.calls_refused_overload,
        requests_rate_limited: st.requests_rate_limited,
        sip_received: st.received,
        sip_rejected: st.rejected,
        sip_dropped: st.dropped,
        bye_timeouts: st.bye_timeouts,
        bye_failures: st.bye_failures,
        seconds: rounded(started.elapsed().as_secs_f64(), 3),
        calls_refused_sip_backlog: st.calls_refused_sip_backlog,
        calls_refused_setup_queue: st.calls_refused_setup_queue,
        calls_refused_capacity: st.calls_refused_capacity,
    });
    let _ = answered;
    Ok(ExitCode::SUCCESS)
}

/// The cores this process may run on (1 when the system cannot say).
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}
