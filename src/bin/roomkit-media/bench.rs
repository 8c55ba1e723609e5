//! `roomkit-media bench`: N concurrent audio + video sessions for S seconds, with a report of
//! what it cost and how media fared.
//!
//! Three set-ups: two RTP backends in this process joined on loopback (default, `--rtp`), two SIP
//! backends in this process, one dialling the other (`--sip`), or one SIP backend dialling a
//! `roomkit-media serve --echo` elsewhere (`--target sip:...`), which sends the media back. One
//! side sends, the other receives: in-process the receiver is the other backend and the latency
//! is one-way on one clock; against a target the media comes back and the latency is the round
//! trip. Sessions start at `--rate` per second, so the set-up rate is measured too.
//!
//! Media is shaped like a call's: 20 ms of G.711 every 20 ms, pictures at `--fps` with a key
//! picture every `--gop`, of the sizes a `--bitrate` implies (a key picture ten times a P
//! picture) or of the sizes of the access units of an H.264 `--clip`. Pictures are synthetic
//! (`codec::testclip::h264_picture`), each ending with a [`Stamp`]: who sent it, its number and
//! when, so the receiver computes its latency without any shared table.
//!
//! On a terminal a progress line is redrawn every second on stderr; the report is one JSON line on
//! stdout. The run is bounded: the ramp, a set-up wait of at most [`SETUP_WAIT`], S seconds of
//! media, a drain of at most [`DRAIN`]; Ctrl-C ends it early with the report of what ran.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use roomkit_media::backend::{
    AudioCodec, CallState, ConnectOptions, DialOptions, RtpBackendConfig, RtpVideoBackend,
    RtpVoiceBackend, SipBackendConfig, SipVideoBackend, SipVoiceBackend,
};
use roomkit_media::codec::testclip::h264_picture;
use roomkit_media::prelude::*;
use roomkit_media::VideoCodec;
use serde::Serialize;

use crate::args::{port_range, within};
use crate::media_file::read_pictures;
use crate::output::{rounded, Out};
use crate::probe::{tone, Latencies, Stamp};
use crate::{signals, Failure};

/// The longest wait for the last sessions to come up once all were started.
const SETUP_WAIT: Duration = Duration::from_secs(10);
/// The longest wait for media in flight once sending stops.
const DRAIN: Duration = Duration::from_secs(2);
/// Sends due longer ago than this are skipped (and counted) rather than sent in a burst.
const LATE: Duration = Duration::from_millis(100);
/// A key picture is this many times a P picture when the sizes come from `--bitrate`.
const KEY_RATIO: usize = 10;

/// `bench --sessions N --seconds S [...]`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Concurrent sessions (calls).
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = within(1usize, 20_000, ""))]
    pub sessions: usize,
    /// Seconds of media once the sessions are up.
    #[arg(long, value_name = "S", default_value_t = 10.0,
          value_parser = within(0.5, 86_400.0, " seconds"))]
    pub seconds: f64,
    /// Sessions started per second (the ramp).
    #[arg(long, value_name = "PER_S", default_value_t = 200.0,
          value_parser = within(1.0, 100_000.0, " sessions/s"))]
    pub rate: f64,
    /// Pictures per second per session.
    #[arg(long, default_value_t = 30, value_parser = within(1u32, 120, ""))]
    pub fps: u32,
    /// A key picture every this many pictures.
    #[arg(long, value_name = "PICTURES", default_value_t = 60, value_parser = within(1u32, 100_000, ""))]
    pub gop: u32,
    /// Video bit rate per session, which sets the picture sizes (a key picture is ten P pictures).
    #[arg(long, value_name = "KBIT_S", default_value_t = 300, value_parser = within(10u32, 50_000, " kbit/s"))]
    pub bitrate: u32,
    /// Take the picture sizes and key pictures from this Annex-B H.264 file instead, in order,
    /// looping (the pictures sent are synthetic, of those sizes).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["bitrate", "gop"])]
    pub clip: Option<PathBuf>,
    /// Audio only: sessions without a video stream.
    #[arg(long, conflicts_with = "video_only")]
    pub audio_only: bool,
    /// Video only: no audio is sent (the audio stream still exists).
    #[arg(long)]
    pub video_only: bool,
    /// Two RTP backends in this process (the default).
    #[arg(long, conflicts_with_all = ["sip", "target"])]
    pub rtp: bool,
    /// Two SIP backends in this process, one calling the other on loopback.
    #[arg(long, conflicts_with = "target")]
    pub sip: bool,
    /// Call a `roomkit-media serve --echo` at this URI; the latency is then the round trip.
    #[arg(long, value_name = "SIP_URI")]
    pub target: Option<String>,
    /// The address our SIP and RTP sockets take with `--target` (one the target can reach).
    #[arg(long, value_name = "IP", default_value = "127.0.0.1")]
    pub local_ip: std::net::IpAddr,
    /// Call churn: each session is closed this long after it came up and a new one starts in its
    /// place (at the ramp's rate), N staying up; for set-up under load and soaks.
    #[arg(long, value_name = "S", value_parser = within(0.1, 86_400.0, " seconds"))]
    pub hold: Option<f64>,
    /// Threads sending the sessions' media (each takes every K-th session), as an application
    /// would send from its own threads: a send packetizes and writes to the socket on the
    /// caller's thread.
    #[arg(long, value_name = "K", default_value_t = 2, value_parser = within(1usize, 64, ""))]
    pub senders: usize,
    /// The RTP ports of the SIP calls (`--sip`: halved between the two ends).
    #[arg(long, value_name = "A-B", default_value = "20000-59999", value_parser = port_range)]
    pub rtp_ports: (u16, u16),
    /// RTP I/O threads of each in-process backend: 0 one per stream (the engine's default);
    /// N shared threads waiting in epoll on many streams' sockets.
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = within(0usize, 1024, ""))]
    pub io_threads: usize,
}

/// The closing JSON line.
#[derive(Serialize)]
struct Report {
    event: &'static str,
    /// `rtp`, `sip` (both in-process) or `remote`.
    mode: &'static str,
    sessions: usize,
    seconds: f64,
    /// The window `cpu_cores` covers: from every session up to the last send (shorter when
    /// interrupted; from the start when interrupted during the ramp).
    media_seconds: f64,
    /// Sessions that came up over the run (more than `sessions` with `--hold`).
    sessions_up: u64,
    /// Sessions closed during the run by `--hold`.
    sessions_closed: u64,
    setup_failed: u64,
    /// Sessions that came up without the video they asked for (the far end, or a shortage of
    /// ports on either end, left it out: the engine then goes on audio-only); no pictures are
    /// sent on them.
    video_missing: u64,
    /// Sessions that ended before the run did, not closed by us (the far end hung up).
    ended_early: u64,
    /// Sessions up per second over the ramp, from the first start to the last answer.
    setup_rate: f64,
    setup_ms_p50: f64,
    setup_ms_p99: f64,
    video_sent: u64,
    video_delivered: u64,
    video_loss_pct: f64,
    keyframes_delivered: u64,
    /// Pictures that arrived without an intact stamp (damaged or not ours).
    video_unstamped: u64,
    audio_sent: u64,
    audio_delivered: u64,
    audio_loss_pct: f64,
    /// Audio frames the receiver concealed (a packet that did not arrive in time).
    audio_concealed: u64,
    /// Pictures and audio frames dropped at the receiving end because its callback queue was
    /// full (`rkm_rtp_events_dropped_slow_callback_total`, the sessions up at the end).
    events_dropped_slow_callback: u64,
    /// Sends skipped because a sending thread fell more than 100 ms behind.
    sends_late: u64,
    /// Sends the engine refused.
    send_errors: u64,
    /// `one_way` in-process (one clock at both ends), `round_trip` through an echo.
    latency: &'static str,
    latency_ms_p50: f64,
    latency_ms_p99: f64,
    latency_ms_max: f64,
    /// CPU time of the whole process (both ends in-process) over wall time while media flowed
    /// with every session up: 1.0 is one core busy.
    cpu_cores: f64,
    /// RSS when the media window began (every session up), to compare with `rss_mb` at its end.
    rss_mb_at_start: f64,
    rss_mb: f64,
    peak_rss_mb: f64,
    threads: u64,
    peak_threads: u64,
    interrupted: bool,
    ok: bool,
}

/// What the receiving side counts (callback threads) and the sender reads.
#[derive(Default)]
struct Counters {
    video_sent: AtomicU64,
    audio_sent: AtomicU64,
    video_delivered: AtomicU64,
    keyframes: AtomicU64,
    unstamped: AtomicU64,
    /// Sends skipped because their thread was more than [`LATE`] behind, and sends refused.
    late: AtomicU64,
    send_errors: AtomicU64,
    audio_delivered: AtomicU64,
    concealed: AtomicU64,
    /// All samples, and those since the last progress line.
    latency: Mutex<(Latencies, Latencies)>,
}

impl Counters {
    fn picture(&self, epoch: Instant, data: &[u8], key: bool) {
        let now_ns = epoch.elapsed().as_nanos() as u64;
        let Some(stamp) = Stamp::read(data) else {
            self.unstamped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        self.video_delivered.fetch_add(1, Ordering::Relaxed);
        self.keyframes.fetch_add(u64::from(key), Ordering::Relaxed);
        let ms = now_ns.saturating_sub(stamp.sent_ns) as f64 / 1e6;
        let mut l = self.latency.lock();
        l.0.push(ms);
        l.1.push(ms);
    }

    fn audio(&self, concealed: bool) {
        let c = if concealed {
            &self.concealed
        } else {
            &self.audio_delivered
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// A backend with or without video: the operations go through the voice half, which owns the
/// engine either way.
enum Rtp {
    Voice(RtpVoiceBackend),
    Video(RtpVideoBackend),
}

impl Rtp {
    fn new(cfg: RtpBackendConfig, video: bool) -> Result<Box<Rtp>, String> {
        let be = if video {
            RtpVideoBackend::new(cfg).map(|b| Box::new(Rtp::Video(b)))
        } else {
            RtpVoiceBackend::new(cfg).map(|b| Box::new(Rtp::Voice(b)))
        };
        be.map_err(|e| format!("starting an RTP backend: {e}"))
    }

    fn get(&self) -> &RtpVoiceBackend {
        match self {
            Rtp::Voice(b) => b,
            Rtp::Video(b) => b,
        }
    }
}

/// The same for SIP.
enum Sip {
    Voice(SipVoiceBackend),
    Video(SipVideoBackend),
}

impl Sip {
    fn new(cfg: SipBackendConfig, video: bool) -> Result<Box<Sip>, String> {
        let be = if video {
            SipVideoBackend::new(cfg).map(|b| Box::new(Sip::Video(b)))
        } else {
            SipVoiceBackend::new(cfg).map(|b| Box::new(Sip::Voice(b)))
        };
        be.map_err(|e| format!("starting a SIP backend: {e}"))
    }

    fn get(&self) -> &SipVoiceBackend {
        match self {
            Sip::Voice(b) => b,
            Sip::Video(b) => b,
        }
    }
}

/// The backends of a run: `tx` sends on every session, `rx` (in-process) receives.
enum Rig {
    Rtp {
        tx: Box<Rtp>,
        rx: Box<Rtp>,
    },
    Sip {
        tx: Box<Sip>,
        rx: Option<Box<Sip>>,
        uri: String,
    },
}

/// How a started session went, reported by the SIP callback thread.
enum Setup {
    Answered(SessionId),
    Failed(SessionId, String),
    Ended(SessionId),
}

/// What starting a session did.
enum Started {
    /// An RTP pair, up: the sending and the receiving end.
    Up { tx: SessionId, rx: SessionId },
    /// A call on its way.
    Dialled(SessionId),
}

/// A session media is sent on, as its sending thread holds it.
struct Live {
    id: SessionId,
    /// The in-process RTP receiving end, closed with it.
    rx: Option<SessionId>,
    /// The session's number in the run (what its pictures' stamps say).
    number: u32,
    /// 20 ms of the session's audio.
    pcm: Vec<i16>,
    pictures: u32,
}

/// What a sending thread hears from the main thread.
enum ToSender {
    /// A session is up: its first audio and picture are due at these times.
    Add {
        live: Live,
        audio_at: Option<Instant>,
        video_at: Option<Instant>,
    },
    /// The session with this number is over: the thread closes it, so no send races the close.
    Remove(u32),
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Audio,
    Video,
}

/// The process's CPU time (user + system), peak RSS, RSS and thread count.
#[derive(Clone, Copy)]
struct Usage {
    cpu: Duration,
    rss_kb: u64,
    peak_rss_kb: u64,
    threads: u64,
}

fn usage() -> Usage {
    // SAFETY: getrusage only writes the struct it is given, which is zeroed and ours.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Usage {
        cpu: tv(ru.ru_utime) + tv(ru.ru_stime),
        rss_kb: field("VmRSS:"),
        peak_rss_kb: field("VmHWM:"),
        threads: field("Threads:"),
    }
}

/// The pictures one GOP (or the clip) is made of: synthetic, of the chosen sizes, room left for
/// the stamp.
fn pictures(args: &BenchArgs) -> Result<Vec<(Vec<u8>, bool)>, String> {
    let floor = 40 + Stamp::LEN;
    let sizes: Vec<(usize, bool)> = match &args.clip {
        Some(path) => {
            let clip = read_pictures(path, VideoCodec::H264)?;
            if clip.is_empty() {
                return Err(format!("{} holds no H.264 picture", path.display()));
            }
            clip.iter().map(|(p, key)| (p.len(), *key)).collect()
        }
        None => {
            let gop = args.gop as usize;
            let gop_bytes = args.bitrate as usize * 1000 / 8 * gop / args.fps as usize;
            let p = gop_bytes / (gop - 1 + KEY_RATIO);
            (0..gop)
                .map(|i| (if i == 0 { p * KEY_RATIO } else { p }, i == 0))
                .collect()
        }
    };
    Ok(sizes
        .iter()
        .enumerate()
        .map(|(i, &(len, key))| (h264_picture(key, len.max(floor), i as u64), key))
        .collect())
}

/// Counts what `be` receives into `counters`.
fn listen(be: &impl MediaBackend, counters: &Arc<Counters>, epoch: Instant) {
    let c = counters.clone();
    be.on_video_received(move |_, f| c.picture(epoch, &f.data, f.keyframe));
    let c = counters.clone();
    be.on_audio_received(move |_, f| c.audio(f.concealed));
}

/// The SIP configuration of one end: G.711 µ-law only (the cheapest codec to code, as in the
/// figures), RTP ports from `ports`.
fn sip_config(
    ip: std::net::IpAddr,
    ports: (u16, u16),
    user: &str,
    io_threads: usize,
) -> SipBackendConfig {
    SipBackendConfig {
        io_threads,
        local_sip_addr: (ip, 0).into(),
        local_rtp_ip: ip,
        rtp_port_start: ports.0,
        rtp_port_end: ports.1,
        supported_codecs: vec![AudioCodec::Pcmu],
        user: user.into(),
        user_agent: "roomkit-media bench".into(),
        ..SipBackendConfig::default()
    }
}

/// The backends, started, with the receiver's callbacks and (SIP) the dialled calls' progress
/// wired to `counters` and `setups`.
fn build(
    args: &BenchArgs,
    video: bool,
    counters: &Arc<Counters>,
    epoch: Instant,
    setups: crossbeam_channel::Sender<Setup>,
) -> Result<Rig, Failure> {
    let runtime = |what: &str, e: String| Failure::Runtime(format!("{what}: {e}"));
    if !args.sip && args.target.is_none() {
        let cfg = RtpBackendConfig {
            local_addr: "127.0.0.1:0".parse().expect("literal"),
            video_local_addr: "127.0.0.1:0".parse().expect("literal"),
            io_threads: args.io_threads,
            ..RtpBackendConfig::default()
        };
        let tx = Rtp::new(cfg.clone(), video).map_err(Failure::Runtime)?;
        let rx = Rtp::new(cfg, video).map_err(Failure::Runtime)?;
        listen(rx.get(), counters, epoch);
        return Ok(Rig::Rtp { tx, rx });
    }
    let (lo, hi) = args.rtp_ports;
    // In-process, the two ends take a half of the range each, the upper half from an even port.
    let mid = lo + (((hi - lo) / 2) & !1);
    let tx_end = if args.target.is_some() { hi } else { mid - 1 };
    let tx = Sip::new(
        sip_config(args.local_ip, (lo, tx_end), "bench", args.io_threads),
        video,
    )
    .map_err(Failure::Runtime)?;
    tx.get().on_call_state(move |id, p| {
        let _ = setups.send(match p.state {
            CallState::Answered => Setup::Answered(id),
            CallState::Failed => Setup::Failed(id, format!("{} {}", p.status, p.reason)),
            CallState::Ended => Setup::Ended(id),
            _ => return,
        });
    });
    tx.get()
        .start()
        .map_err(|e| runtime("starting the calling SIP backend", e.to_string()))?;
    let (rx, uri) = match &args.target {
        Some(uri) => {
            listen(tx.get(), counters, epoch);
            (None, uri.clone())
        }
        None => {
            let rx = Sip::new(
                sip_config([127, 0, 0, 1].into(), (mid, hi), "answer", args.io_threads),
                video,
            )
            .map_err(Failure::Runtime)?;
            listen(rx.get(), counters, epoch);
            let addr = rx
                .get()
                .start()
                .map_err(|e| runtime("starting the answering SIP backend", e.to_string()))?;
            (Some(rx), format!("sip:answer@{addr}"))
        }
    };
    Ok(Rig::Sip { tx, rx, uri })
}

impl Rig {
    fn mode(&self) -> &'static str {
        match self {
            Rig::Rtp { .. } => "rtp",
            Rig::Sip { rx: Some(_), .. } => "sip",
            Rig::Sip { rx: None, .. } => "remote",
        }
    }

    /// Starts session `i`: RTP, both ends are made and joined now; SIP, the call is dialled and
    /// its answer comes through the setup channel.
    fn start(&self, i: usize, audio_only: bool) -> Result<Started, String> {
        match self {
            Rig::Rtp { tx, rx } => {
                let nowhere: std::net::SocketAddr = "127.0.0.1:9".parse().expect("literal");
                let (tx, rx) = (tx.get(), rx.get());
                let video_to = |s: &SessionInfo| s.video.as_ref().map(|v| v.local_addr);
                let a = tx
                    .connect(
                        "bench",
                        &format!("tx{i}"),
                        ConnectOptions::to(nowhere, Some(nowhere)),
                    )
                    .map_err(|e| e.to_string())?;
                let b = rx
                    .connect(
                        "bench",
                        &format!("rx{i}"),
                        ConnectOptions::to(a.audio.local_addr, video_to(&a)),
                    )
                    .map_err(|e| e.to_string())?;
                tx.update_remote(a.id, Some(b.audio.local_addr), video_to(&b))
                    .map_err(|e| e.to_string())?;
                Ok(Started::Up { tx: a.id, rx: b.id })
            }
            Rig::Sip { tx, uri, .. } => {
                let options = DialOptions {
                    audio_only,
                    ..DialOptions::default()
                };
                let id = tx.get().dial(uri, options).map_err(|e| e.to_string())?;
                Ok(Started::Dialled(id))
            }
        }
    }

    fn sender(&self) -> &(dyn Sender + Sync) {
        match self {
            Rig::Rtp { tx, .. } => tx.get(),
            Rig::Sip { tx, .. } => tx.get(),
        }
    }

    /// Events the receiving end's callback queues refused (a callback thread that could not
    /// keep up), summed over its live sessions.
    fn slow_callback_drops(&self) -> u64 {
        fn sum(be: &impl MediaBackend) -> u64 {
            be.all_sessions()
                .iter()
                .filter_map(|s| be.stats(s.id).ok())
                .map(|st| {
                    st.audio.frames_dropped_slow_callback
                        + st.video.map_or(0, |v| v.frames_dropped_slow_callback)
                })
                .sum()
        }
        match self {
            Rig::Rtp { rx, .. } => sum(rx.get()),
            Rig::Sip { rx: Some(rx), .. } => sum(rx.get()),
            Rig::Sip { tx, .. } => sum(tx.get()),
        }
    }

    /// Ends one session: ours (a SIP call with BYE) and, in-process RTP, the receiving end.
    fn close_one(&self, ours: SessionId, theirs: Option<SessionId>) {
        match self {
            Rig::Rtp { tx, rx } => {
                let _ = tx.get().disconnect(ours);
                if let Some(r) = theirs {
                    let _ = rx.get().disconnect(r);
                }
            }
            Rig::Sip { tx, .. } => {
                let _ = tx.get().hangup(ours);
            }
        }
    }

    /// Ends every session, waiting (bounded) for a SIP far end to answer the BYEs.
    fn close(&self, sessions: &HashMap<u32, (SessionId, Option<SessionId>)>) {
        let before = match self {
            Rig::Sip { tx, .. } => tx.get().sip_stats().byes_answered,
            Rig::Rtp { .. } => 0,
        };
        for &(ours, theirs) in sessions.values() {
            self.close_one(ours, theirs);
        }
        match self {
            Rig::Rtp { .. } => {}
            Rig::Sip { tx, .. } => {
                let deadline = Instant::now() + Duration::from_secs(5);
                while tx.get().sip_stats().byes_answered < before + sessions.len() as u64
                    && Instant::now() < deadline
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
}

/// The sending operations, the same on both kinds of backend.
trait Sender {
    fn audio(&self, id: SessionId, pcm: &[i16]) -> roomkit_media::Result<()>;
    fn video(&self, id: SessionId, picture: &[u8]) -> roomkit_media::Result<()>;
    fn pcm_rate(&self, id: SessionId) -> u32;
    fn has_video(&self, id: SessionId) -> bool;
}

impl<B: MediaBackend> Sender for B {
    fn audio(&self, id: SessionId, pcm: &[i16]) -> roomkit_media::Result<()> {
        self.send_audio(id, pcm)
    }
    fn video(&self, id: SessionId, picture: &[u8]) -> roomkit_media::Result<()> {
        self.send_video(id, picture)
    }
    fn pcm_rate(&self, id: SessionId) -> u32 {
        self.get_session(id).map_or(8000, |s| s.audio.sample_rate)
    }
    fn has_video(&self, id: SessionId) -> bool {
        self.get_session(id).is_some_and(|s| s.video.is_some())
    }
}

/// Redraws the progress line on a terminal, once a second.
struct Progress {
    tty: bool,
    start: Instant,
    last: Instant,
    last_cpu: Duration,
    last_video: u64,
    last_audio: u64,
    peak_threads: u64,
}

impl Progress {
    fn tick(&mut self, now: Instant, c: &Counters, started: usize, up: usize, failed: u64) {
        if now < self.last + Duration::from_secs(1) {
            return;
        }
        let u = usage();
        self.peak_threads = self.peak_threads.max(u.threads);
        let wall = now - self.last;
        let (video, audio) = (
            c.video_delivered.load(Ordering::Relaxed),
            c.audio_delivered.load(Ordering::Relaxed),
        );
        let window = std::mem::take(&mut c.latency.lock().1);
        if self.tty {
            let per_s = |n: u64| n as f64 / wall.as_secs_f64();
            let mut err = std::io::stderr().lock();
            let _ = write!(
                err,
                "\rbench: {:.0} s, {started} started, {up} up, {failed} failed | delivered/s: {:.0} pictures, {:.0} audio | latency p50 {:.2} ms p99 {:.2} ms | {:.2} cores, RSS {} MB, {} threads   ",
                (now - self.start).as_secs_f64(),
                per_s(video - self.last_video),
                per_s(audio - self.last_audio),
                window.quantile(0.5).unwrap_or(0.0),
                window.quantile(0.99).unwrap_or(0.0),
                (u.cpu.saturating_sub(self.last_cpu)).as_secs_f64() / wall.as_secs_f64(),
                u.rss_kb / 1024,
                u.threads,
            );
            let _ = err.flush();
        }
        (self.last, self.last_cpu, self.last_video, self.last_audio) = (now, u.cpu, video, audio);
    }
}

fn pct_lost(sent: u64, delivered: u64) -> f64 {
    if sent == 0 {
        return 0.0;
    }
    rounded(
        100.0 * sent.saturating_sub(delivered) as f64 / sent as f64,
        2,
    )
}

/// One sending thread: its sessions, and their sends in order of due time.
struct SendLoop<'a> {
    rig: &'a Rig,
    sender: &'a (dyn Sender + Sync),
    counters: &'a Counters,
    pictures: &'a [Vec<u8>],
    epoch: Instant,
    video_period: Duration,
    /// The thread's sessions by number, each removed when closed (a soak's millions of
    /// sessions leave nothing here).
    live: HashMap<u32, Live>,
    /// Due sends: when, session number, what. A closed session's are dropped as they come up.
    due: BinaryHeap<Reverse<(Instant, u32, Kind)>>,
    /// The picture being stamped and sent (reused: no allocation per picture).
    scratch: Vec<u8>,
}

const AUDIO_PERIOD: Duration = Duration::from_millis(20);
/// Shortest sleep of a sending thread between two passes: with many sessions a send is due
/// every few microseconds, and waking for each would cost more than the sends. Sends leave up
/// to this much after their time (each picture carries the time it really left).
const SEND_TICK: Duration = Duration::from_millis(1);

impl SendLoop<'_> {
    /// Sends until `stop`, taking in the sessions that come up from `new`.
    fn run(mut self, inbox: &crossbeam_channel::Receiver<ToSender>, stop: &AtomicBool) {
        loop {
            // Whatever was sent before the stop is read once more: no session is left unclosed.
            let stopping = stop.load(Ordering::Acquire);
            while let Ok(msg) = inbox.try_recv() {
                match msg {
                    ToSender::Add {
                        live,
                        audio_at,
                        video_at,
                    } => {
                        for (at, kind) in [(audio_at, Kind::Audio), (video_at, Kind::Video)] {
                            if let Some(t) = at {
                                self.due.push(Reverse((t, live.number, kind)));
                            }
                        }
                        self.live.insert(live.number, live);
                    }
                    ToSender::Remove(number) => {
                        // Its due sends are dropped as they come up.
                        if let Some(l) = self.live.remove(&number) {
                            self.rig.close_one(l.id, l.rx);
                        }
                    }
                }
            }
            if stopping {
                return;
            }
            let now = Instant::now();
            self.send_due(now);
            let mut wake = now + Duration::from_millis(5);
            if let Some(Reverse((when, ..))) = self.due.peek() {
                wake = wake.min(*when).max(now + SEND_TICK);
            }
            std::thread::sleep(wake.saturating_duration_since(Instant::now()));
        }
    }

    /// Sends what is due by `now`.
    fn send_due(&mut self, now: Instant) {
        let c = self.counters;
        while let Some(&Reverse((when, i, kind))) = self.due.peek() {
            if when > now {
                break;
            }
            self.due.pop();
            let Some(l) = self.live.get_mut(&i) else {
                continue;
            };
            let period = match kind {
                Kind::Audio => AUDIO_PERIOD,
                Kind::Video => self.video_period,
            };
            if now - when > LATE {
                // Behind: skip to now rather than send a burst.
                c.late.fetch_add(1, Ordering::Relaxed);
                self.due.push(Reverse((now + period, i, kind)));
                continue;
            }
            let ok = match kind {
                Kind::Audio => {
                    c.audio_sent.fetch_add(1, Ordering::Relaxed);
                    self.sender.audio(l.id, &l.pcm)
                }
                Kind::Video => {
                    let p = &mut self.scratch;
                    p.clear();
                    p.extend_from_slice(&self.pictures[l.pictures as usize % self.pictures.len()]);
                    Stamp {
                        session: l.number,
                        seq: l.pictures,
                        sent_ns: self.epoch.elapsed().as_nanos() as u64,
                    }
                    .write(p);
                    l.pictures += 1;
                    c.video_sent.fetch_add(1, Ordering::Relaxed);
                    self.sender.video(l.id, p)
                }
            };
            if let Err(e) = ok {
                // The first one says why; the count says how often.
                if c.send_errors.fetch_add(1, Ordering::Relaxed) == 0 {
                    eprintln!("bench: a send failed (counted in send_errors): {e}");
                }
            }
            self.due.push(Reverse((when + period, i, kind)));
        }
    }
}

/// The ramp and the sessions' set-up, on the main thread; media goes to the sending threads.
struct Ramp<'a> {
    args: &'a BenchArgs,
    rig: &'a Rig,
    /// The sessions up by number: ours and (in-process RTP) the receiving end.
    sessions: HashMap<u32, (SessionId, Option<SessionId>)>,
    /// How many sessions came up, and how many `--hold` closed.
    up_count: u32,
    closed: u64,
    /// With `--hold`: when each session is due to close, in order.
    expiries: std::collections::VecDeque<(Instant, u32)>,
    /// Calls dialled and not yet settled, with when.
    dialled: HashMap<SessionId, Instant>,
    setup_ms: Latencies,
    started: usize,
    next_start: Instant,
    failed: u64,
    video_missing: u64,
    ended: u64,
    last_up: Instant,
    tone_at: u64,
    senders: Vec<crossbeam_channel::Sender<ToSender>>,
}

impl Ramp<'_> {
    /// Session `id` is up since `now`, started at `since`: it goes to a sending thread.
    fn up(&mut self, id: SessionId, rx: Option<SessionId>, since: Instant, now: Instant) {
        self.setup_ms.push((now - since).as_secs_f64() * 1000.0);
        let i = self.up_count;
        self.up_count += 1;
        self.sessions.insert(i, (id, rx));
        if let Some(hold) = self.args.hold {
            self.expiries
                .push_back((now + Duration::from_secs_f64(hold), i));
        }
        self.last_up = now;
        // Spread the sessions' sends over the periods, whatever the ramp did.
        let phase = f64::from(i % self.args.sessions as u32) / self.args.sessions as f64;
        let spread = |p: Duration| now + p.mul_f64(phase);
        let video_period = Duration::from_secs_f64(1.0 / f64::from(self.args.fps));
        let rate = self.rig.sender().pcm_rate(id);
        // An answer may leave video out; sending pictures there would only fail.
        let video = !self.args.audio_only && self.rig.sender().has_video(id);
        if !self.args.audio_only && !video {
            self.video_missing += 1;
            if self.video_missing == 1 {
                eprintln!("bench: a session came up without video (counted in video_missing)");
            }
        }
        let n = ToSender::Add {
            live: Live {
                id,
                rx,
                number: i,
                pcm: tone(&mut self.tone_at, rate),
                pictures: 0,
            },
            audio_at: (!self.args.video_only).then(|| spread(AUDIO_PERIOD)),
            video_at: video.then(|| spread(video_period)),
        };
        let _ = self.senders[i as usize % self.senders.len()].send(n);
    }

    /// With `--hold`: closes the sessions whose time is up; each makes room for a new start.
    fn expire(&mut self, now: Instant) {
        while let Some(&(due, i)) = self.expiries.front() {
            if due > now {
                break;
            }
            self.expiries.pop_front();
            if self.sessions.remove(&i).is_some() {
                let _ = self.senders[i as usize % self.senders.len()].send(ToSender::Remove(i));
                self.closed += 1;
            }
        }
    }

    /// How many sessions the ramp has to start by now: N, plus, with `--hold`, one for each
    /// session closed or failed, so that N stay up.
    fn target(&self) -> usize {
        let replaced = if self.args.hold.is_some() {
            self.closed + self.failed
        } else {
            0
        };
        self.args.sessions + replaced as usize
    }

    /// Starts the sessions due by `now`.
    fn ramp(&mut self, now: Instant) {
        let gap = Duration::from_secs_f64(1.0 / self.args.rate);
        while self.started < self.target() && self.next_start <= now {
            let t = Instant::now();
            match self.rig.start(self.started, self.args.audio_only) {
                Ok(Started::Up { tx, rx }) => self.up(tx, Some(rx), t, Instant::now()),
                Ok(Started::Dialled(id)) => {
                    self.dialled.insert(id, t);
                }
                Err(e) => {
                    self.failed += 1;
                    if self.failed == 1 {
                        eprintln!("bench: session {} did not start: {e}", self.started);
                    }
                }
            }
            self.started += 1;
            self.next_start += gap;
        }
    }

    /// Takes in how the dialled calls went.
    fn settle(&mut self, setups: &crossbeam_channel::Receiver<Setup>) {
        while let Ok(ev) = setups.try_recv() {
            match ev {
                Setup::Answered(id) => {
                    if let Some(since) = self.dialled.remove(&id) {
                        self.up(id, None, since, Instant::now());
                    }
                }
                Setup::Failed(id, why) => {
                    self.dialled.remove(&id);
                    self.failed += 1;
                    if self.failed == 1 {
                        eprintln!("bench: a call failed (counted in setup_failed): {why}");
                    }
                }
                Setup::Ended(id) => {
                    // Not one we closed (those left `sessions` first).
                    if self.sessions.values().any(|&(ours, _)| ours == id) {
                        self.ended += 1;
                    }
                }
            }
        }
    }
}

pub fn run(args: &BenchArgs) -> Result<ExitCode, Failure> {
    let pictures: Vec<Vec<u8>> = pictures(args)
        .map_err(Failure::Usage)?
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    if let Some(t) = &args.target {
        if !t.starts_with("sip:") {
            return Err(Failure::Usage(format!("--target `{t}` is not a sip: URI")));
        }
    }
    signals::install();
    let epoch = Instant::now();
    let counters = Arc::new(Counters::default());
    let (setup_tx, setup_rx) = crossbeam_channel::unbounded::<Setup>();
    let rig = build(args, !args.audio_only, &counters, epoch, setup_tx)?;
    eprintln!(
        "bench: {} {} sessions at {}/s, then {} s of media ({}){}, {} sending threads; Ctrl-C stops early",
        args.sessions,
        rig.mode(),
        args.rate,
        args.seconds,
        match (args.audio_only, args.video_only) {
            (true, _) => "audio".to_string(),
            (_, true) => format!("video {} fps", args.fps),
            _ => format!("audio + video {} fps", args.fps),
        },
        match args.hold {
            Some(h) => format!(", each session replaced after {h} s"),
            None => String::new(),
        },
        args.senders,
    );
    let stop = AtomicBool::new(false);
    let (senders, inboxes): (Vec<_>, Vec<_>) = (0..args.senders)
        .map(|_| crossbeam_channel::unbounded::<ToSender>())
        .unzip();
    let mut ramp = Ramp {
        args,
        rig: &rig,
        sessions: HashMap::with_capacity(args.sessions),
        up_count: 0,
        closed: 0,
        expiries: Default::default(),
        dialled: HashMap::new(),
        setup_ms: Latencies::default(),
        started: 0,
        next_start: Instant::now(),
        failed: 0,
        video_missing: 0,
        ended: 0,
        last_up: epoch,
        tone_at: 0,
        senders,
    };
    let ramp_start = ramp.next_start;
    let cpu_at_epoch = usage().cpu;
    let mut progress = Progress {
        tty: std::io::stderr().is_terminal(),
        start: epoch,
        last: epoch,
        last_cpu: cpu_at_epoch,
        last_video: 0,
        last_audio: 0,
        peak_threads: 0,
    };
    // From when every session is up (or the set-up wait ran out): the instant, and the CPU time
    // and RSS then.
    let mut media: Option<(Instant, Usage)> = None;
    let mut interrupted = false;
    let seconds = Duration::from_secs_f64(args.seconds);
    std::thread::scope(|scope| {
        for inbox in &inboxes {
            let send_loop = SendLoop {
                rig: &rig,
                sender: rig.sender(),
                counters: &counters,
                pictures: &pictures,
                epoch,
                video_period: Duration::from_secs_f64(1.0 / f64::from(args.fps)),
                live: HashMap::new(),
                due: BinaryHeap::new(),
                scratch: Vec::new(),
            };
            let stop = &stop;
            std::thread::Builder::new()
                .name("bench-send".into())
                .spawn_scoped(scope, move || send_loop.run(inbox, stop))
                .expect("a sending thread");
        }
        loop {
            let now = Instant::now();
            if signals::stop_requested() {
                interrupted = true;
                break;
            }
            if media.is_some_and(|(start, _)| now >= start + seconds) {
                break;
            }
            ramp.expire(now);
            ramp.ramp(now);
            ramp.settle(&setup_rx);
            if media.is_none()
                && ramp.started >= args.sessions
                && (ramp.dialled.is_empty() || now >= ramp.next_start + SETUP_WAIT)
            {
                media = Some((now, usage()));
            }
            progress.tick(
                now,
                &counters,
                ramp.started,
                ramp.sessions.len(),
                ramp.failed,
            );
            let mut wake = now + Duration::from_millis(5);
            if ramp.started < ramp.target() {
                wake = wake.min(ramp.next_start);
            }
            if let Some(&(due, _)) = ramp.expiries.front() {
                wake = wake.min(due);
            }
            std::thread::sleep(wake.saturating_duration_since(Instant::now()));
        }
        stop.store(true, Ordering::Release);
    });
    // The media window ends with the last send; CPU over it, usage before the teardown.
    let stop = Instant::now();
    // Interrupted before every session was up: the whole run.
    let used = usage();
    let (media_start, at_start) = media.unwrap_or((
        epoch,
        Usage {
            cpu: cpu_at_epoch,
            rss_kb: 0,
            peak_rss_kb: 0,
            threads: 0,
        },
    ));
    let cores = (used.cpu.saturating_sub(at_start.cpu)).as_secs_f64()
        / (stop - media_start).as_secs_f64().max(1e-3);
    // Drain: until nothing more arrives for 300 ms, at most DRAIN.
    let deadline = stop + DRAIN;
    let delivered = || {
        counters.video_delivered.load(Ordering::Relaxed)
            + counters.audio_delivered.load(Ordering::Relaxed)
            + counters.concealed.load(Ordering::Relaxed)
    };
    let (mut seen, mut quiet_since) = (delivered(), Instant::now());
    while Instant::now() < deadline && quiet_since.elapsed() < Duration::from_millis(300) {
        std::thread::sleep(Duration::from_millis(50));
        let d = delivered();
        if d != seen {
            (seen, quiet_since) = (d, Instant::now());
        }
    }
    if progress.tty {
        eprintln!();
    }
    // Late answers still count as set up.
    ramp.settle(&setup_rx);
    let slow_callback = rig.slow_callback_drops();
    rig.close(&ramp.sessions);
    let c = &counters;
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let (video_sent, video_delivered) = (load(&c.video_sent), load(&c.video_delivered));
    let (audio_sent, audio_delivered) = (load(&c.audio_sent), load(&c.audio_delivered));
    let latency = c.latency.lock().0.clone();
    let ms = |x: Option<f64>| x.map_or(-1.0, |v| rounded(v, 3));
    let up = u64::from(ramp.up_count);
    let setup_span = (ramp.last_up - ramp_start).as_secs_f64();
    let ok = up > 0
        && (args.audio_only || video_delivered > 0)
        && (args.video_only || audio_delivered > 0);
    let report = Report {
        event: "bench",
        mode: rig.mode(),
        sessions: args.sessions,
        seconds: args.seconds,
        media_seconds: rounded((stop - media_start).as_secs_f64(), 2),
        sessions_up: up,
        sessions_closed: ramp.closed,
        setup_failed: ramp.failed,
        video_missing: ramp.video_missing,
        ended_early: ramp.ended,
        setup_rate: if setup_span > 0.0 {
            rounded(up as f64 / setup_span, 1)
        } else {
            0.0
        },
        setup_ms_p50: ms(ramp.setup_ms.quantile(0.5)),
        setup_ms_p99: ms(ramp.setup_ms.quantile(0.99)),
        video_sent,
        video_delivered,
        video_loss_pct: pct_lost(video_sent, video_delivered),
        keyframes_delivered: load(&c.keyframes),
        video_unstamped: load(&c.unstamped),
        audio_sent,
        audio_delivered,
        audio_loss_pct: pct_lost(audio_sent, audio_delivered),
        audio_concealed: load(&c.concealed),
        events_dropped_slow_callback: slow_callback,
        sends_late: load(&c.late),
        send_errors: load(&c.send_errors),
        latency: if rig.mode() == "remote" {
            "round_trip"
        } else {
            "one_way"
        },
        latency_ms_p50: ms(latency.quantile(0.5)),
        latency_ms_p99: ms(latency.quantile(0.99)),
        latency_ms_max: ms(latency.quantile(1.0)),
        cpu_cores: rounded(cores, 3),
        rss_mb_at_start: rounded(at_start.rss_kb as f64 / 1024.0, 1),
        rss_mb: rounded(used.rss_kb as f64 / 1024.0, 1),
        peak_rss_mb: rounded(used.peak_rss_kb as f64 / 1024.0, 1),
        threads: used.threads,
        peak_threads: progress.peak_threads.max(used.threads),
        interrupted,
        ok,
    };
    drop(ramp);
    drop(rig);
    Out::stdout().line(&report);
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
