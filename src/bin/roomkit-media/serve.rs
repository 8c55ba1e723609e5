//! `roomkit-media serve`: answers SIP audio + video calls and reports each event as one JSON line
//! on stdout (`call`, `video_ready`, `frame` at most once a second per call, `dtmf`, `hangup`,
//! and a closing `stats`). `--record DIR` writes each call's video (`.h264` or `.ivf`) and audio
//! (`.wav`, 16-bit mono at the codec's own rate: 8 kHz for G.711, 16 kHz for G.722, 48 kHz for
//! Opus); `--audio-codecs` limits the codecs accepted (default opus,G722,PCMU,PCMA); `--echo` sends received media back to the caller; `--hangup-after MS`
//! ends each call from our side that long after answering it. `--register sip:USER@HOST[:PORT]`
//! registers with that registrar (digest with `--auth-user`, default USER, and `--password`),
//! keeps the registration fresh, reports it (`registered`, `registration_failed`,
//! `unregistered`) and removes it on Ctrl-C.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use roomkit_media::backend::{AppRate, AudioCodec};
use roomkit_media::backend::{
    RegisterOptions, RegistrationEvent, SipBackendConfig, SipCredentials, SipVideoBackend,
};
use roomkit_media::backend::{SessionId, SessionInfo};
use roomkit_media::prelude::*;
use roomkit_media::VideoCodec;

use crate::args::{sip_media, Args, Spec};
use crate::media_file::VideoSink;
use crate::output::{js, Out};
use crate::signals;

pub const SPEC: Spec = Spec {
    options: &[
        "sip",
        "rtp-ip",
        "rtp-ports",
        "video-codecs",
        "audio-codecs",
        "record",
        "max-calls",
        "answer-after",
        "max-sessions",
        "hangup-after",
        "register",
        "auth-user",
        "password",
        "expires",
        "proxy",
        "audio-jitter",
        "inactivity",
    ],
    switches: &["echo", "quiet-frames", "no-pacing", "no-nack", "no-rtx"],
};

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
}

fn parse_ports(v: &str) -> Result<(u16, u16), String> {
    let (a, b) = v
        .split_once('-')
        .ok_or_else(|| format!("--rtp-ports: `{v}` is not A-B"))?;
    let p = |s: &str| {
        s.trim()
            .parse::<u16>()
            .map_err(|_| format!("--rtp-ports: `{s}` is not a port"))
    };
    let (a, b) = (p(a)?, p(b)?);
    if a >= b {
        return Err(format!("--rtp-ports: {a} is not below {b}"));
    }
    Ok((a, b))
}

fn parse_video_codecs(v: &str) -> Result<Vec<VideoCodec>, String> {
    v.split(',')
        .map(|c| {
            VideoCodec::from_name(c.trim())
                .ok_or_else(|| format!("--video-codecs: `{c}` is not H264 or VP8"))
        })
        .collect()
}

fn parse_audio_codecs(v: &str) -> Result<Vec<AudioCodec>, String> {
    v.split(',')
        .map(|c| {
            AudioCodec::from_name(c.trim())
                .ok_or_else(|| format!("--audio-codecs: `{c}` is not a codec name"))
        })
        .collect()
}

/// Runs until a signal, or until `--max-calls` calls have ended.
pub fn run(args: &Args) -> Result<ExitCode, crate::Failure> {
    let sip = args
        .addr("sip")?
        .ok_or_else(|| "serve needs --sip ADDR".to_string())?;
    if !args.positionals.is_empty() {
        return Err(format!(
            "serve takes no positional arguments (got `{}`)",
            args.positionals[0]
        )
        .into());
    }
    let register = match args.get("register") {
        Some(aor) => {
            let user = aor
                .strip_prefix("sip:")
                .and_then(|r| r.split_once('@'))
                .map(|(u, _)| u.to_string())
                .filter(|u| !u.is_empty())
                .ok_or_else(|| format!("--register: `{aor}` is not sip:USER@HOST[:PORT]"))?;
            let credentials = args
                .get("password")
                .map(|p| SipCredentials::new(args.get("auth-user").unwrap_or(&user), p));
            let expires: u32 = args.num("expires", 3600)?;
            if !(10..=86_400).contains(&expires) {
                return Err(format!("--expires: {expires} is outside 10..=86400").into());
            }
            Some((
                aor.to_string(),
                RegisterOptions {
                    credentials,
                    expires,
                    proxy: args.addr("proxy")?,
                    ..RegisterOptions::default()
                },
            ))
        }
        None => {
            for opt in ["auth-user", "password", "expires", "proxy"] {
                if args.get(opt).is_some() {
                    return Err(format!("--{opt} goes with --register").into());
                }
            }
            None
        }
    };
    let rtp_ip: IpAddr = match args.get("rtp-ip") {
        Some(v) => v
            .parse()
            .map_err(|_| format!("--rtp-ip: `{v}` is not an IP address"))?,
        None => sip.ip(),
    };
    let (rtp_start, rtp_end) = parse_ports(args.get("rtp-ports").unwrap_or("20000-30000"))?;
    let (resilience, video_rtx) = sip_media(args)?;
    let mut cfg = SipBackendConfig {
        local_sip_addr: sip,
        local_rtp_ip: rtp_ip,
        rtp_port_start: rtp_start,
        rtp_port_end: rtp_end,
        answer_after: Duration::from_millis(args.num("answer-after", 0u64)?),
        max_sessions: args.num("max-sessions", 0usize)?,
        callback_threads: 2,
        // Received audio at the codec's own rate, so a recording keeps all of it; echo sends it
        // back at the same rate.
        audio_sample_rate: AppRate::Codec,
        video_rtx,
        resilience,
        ..SipBackendConfig::default()
    };
    if let Some(v) = args.get("video-codecs") {
        cfg.supported_video_codecs = parse_video_codecs(v)?;
    }
    if let Some(v) = args.get("audio-codecs") {
        cfg.supported_codecs = parse_audio_codecs(v)?;
    }
    let record: Option<PathBuf> = args.get("record").map(PathBuf::from);
    if let Some(d) = &record {
        std::fs::create_dir_all(d).map_err(|e| format!("--record {}: {e}", d.display()))?;
    }
    let echo = args.get("echo").is_some();
    let frame_lines = args.get("quiet-frames").is_none();
    let max_calls: u64 = args.num("max-calls", 0)?;
    let hangup_after: Option<Duration> = args
        .get("hangup-after")
        .map(|_| args.num("hangup-after", 0u64).map(Duration::from_millis))
        .transpose()?;

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
        be.on_call(move |s: &SessionInfo| {
            answered.fetch_add(1, Ordering::Relaxed);
            let m = &s.metadata;
            let get = |k: &str| m.get(k).map_or("", String::as_str);
            let call_id = get("call_id").to_string();
            let mut log = CallLog {
                call_id: call_id.clone(),
                answered_at: Some(Instant::now()),
                ..CallLog::default()
            };
            if let Some(dir) = &rec {
                let base = safe_name(&call_id);
                if let Some(v) = &s.video {
                    let codec = v.codec.unwrap_or(VideoCodec::H264);
                    let ext = if codec == VideoCodec::Vp8 { "ivf" } else { "h264" };
                    log.video = VideoSink::create(&dir.join(format!("{base}.{ext}")), codec).ok();
                }
                log.audio = WavWriter::create(&dir.join(format!("{base}.wav")), s.audio.sample_rate).ok();
            }
            calls.lock().insert(s.id, log);
            out.line(&format!(
                "{{\"event\":\"call\",\"session\":\"{}\",\"call_id\":{},\"caller\":{},\"callee\":{},\"caller_display_name\":{},\"room_id\":{},\"has_video\":{},\"video_codec\":{},\"audio_pt\":{},\"audio_codec\":{},\"sample_rate\":{},\"audio_remote\":{}}}",
                s.id,
                js(&call_id),
                js(get("caller")),
                js(get("callee")),
                js(get("caller_display_name")),
                js(get("room_id")),
                get("has_video") == "true",
                js(get("video_codec")),
                s.audio.payload_type,
                js(get("audio_codec")),
                s.audio.sample_rate,
                js(&s.audio.remote_addr.to_string()),
            ));
        });
    }
    {
        let out = out.clone();
        be.on_video_session_ready(move |s| {
            let v = s.video.as_ref();
            out.line(&format!(
                "{{\"event\":\"video_ready\",\"session\":\"{}\",\"codec\":{},\"pt\":{},\"local\":{},\"remote\":{}}}",
                s.id,
                js(v.and_then(|v| v.codec).map_or("", |c| c.as_str())),
                v.map_or(0, |v| v.payload_type),
                js(&v.map_or(String::new(), |v| v.local_addr.to_string())),
                js(&v.map_or(String::new(), |v| v.remote_addr.to_string())),
            ));
        });
    }
    {
        let (out, calls, be2) = (out.clone(), calls.clone(), Arc::downgrade(&be));
        be.on_video_received(move |id, f| {
            let mut line = None;
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
                    line = Some(format!(
                        "{{\"event\":\"frame\",\"session\":\"{id}\",\"call_id\":{},\"frames\":{},\"keyframes\":{},\"bytes\":{},\"last_keyframe\":{},\"timestamp_ms\":{:.1}}}",
                        js(&log.call_id), log.frames, log.keyframes, log.bytes, f.keyframe, f.timestamp_ms
                    ));
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
            out.line(&format!(
                "{{\"event\":\"dtmf\",\"session\":\"{id}\",\"digit\":{},\"duration_ms\":{}}}",
                js(&ev.digit.to_string()),
                ev.duration_ms
            ));
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
            out.line(&format!(
                "{{\"event\":\"hangup\",\"session\":\"{}\",\"call_id\":{},\"reason\":{},\"frames\":{},\"keyframes\":{},\"video_bytes\":{},\"audio_frames\":{},\"dtmf\":{}}}",
                s.id,
                js(&log.call_id),
                js(s.end_reason.map_or("unknown", |r| r.as_str())),
                log.frames,
                log.keyframes,
                log.bytes,
                log.audio_frames,
                js(&log.dtmf)
            ));
            ended.fetch_add(1, Ordering::Relaxed);
        });
    }

    if let Some((aor, _)) = &register {
        let (out, aor) = (out.clone(), aor.clone());
        be.on_registration(move |_, ev| {
            let line = match ev {
                RegistrationEvent::Registered { expires } => format!(
                    "{{\"event\":\"registered\",\"aor\":{},\"expires\":{expires}}}",
                    js(&aor)
                ),
                RegistrationEvent::Failed {
                    status,
                    reason,
                    retry_in,
                } => format!(
                    "{{\"event\":\"registration_failed\",\"aor\":{},\"status\":{status},\"reason\":{},\"retry_in\":{}}}",
                    js(&aor),
                    js(reason),
                    retry_in.map_or("null".to_string(), |d| format!("{:.1}", d.as_secs_f64()))
                ),
                RegistrationEvent::Unregistered => {
                    format!("{{\"event\":\"unregistered\",\"aor\":{}}}", js(&aor))
                }
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
    out.line(&format!(
        "{{\"event\":\"listening\",\"sip\":{}}}",
        js(&local.to_string())
    ));
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
    // Dropping the backend ends live calls (BYE), removes the registration, joins every thread
    // and flushes the callbacks.
    let be = Arc::try_unwrap(be)
        .map_err(|_| crate::Failure::Runtime("backend still shared at exit".to_string()))?;
    drop(be);
    out.line(&format!(
        "{{\"event\":\"stats\",\"calls_answered\":{},\"calls_ended\":{},\"calls_refused\":{},\"sip_received\":{},\"sip_rejected\":{},\"sip_dropped\":{},\"bye_timeouts\":{},\"bye_failures\":{},\"seconds\":{:.3}}}",
        st.calls_answered,
        ended.load(Ordering::Relaxed),
        st.calls_refused,
        st.received,
        st.rejected,
        st.dropped,
        st.bye_timeouts,
        st.bye_failures,
        started.elapsed().as_secs_f64()
    ));
    let _ = answered;
    Ok(ExitCode::SUCCESS)
}
