//! Sessions and the engine that owns them: the part every backend (RTP now, SIP later) shares.
//!
//! A session is an audio stream and, optionally, a video stream with the same id. The engine keeps
//! the registry, the callback registry and the dispatcher threads; backends decide only where the
//! addresses come from (configuration and metadata, or SDP).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;

use crossbeam_channel::{unbounded, Sender};
use parking_lot::{Mutex, RwLock};

use super::dispatch::{Dispatcher, DEFAULT_QUEUE_LEN};
use super::event::{
    dispatch_key, Callbacks, EndReason, EngineEvent, KeyframeRequest, SessionId, SessionInfo,
    StreamEndReason,
};
use super::io_pool::IoPool;
use super::stats::{SessionStats, StreamStats, StreamTotals};
use super::stream::{MediaStream, RtpSockets, StreamConfig};
use crate::error::{Error, Result};
use crate::frame::VideoChunk;
use crate::metrics::{BackendMetrics, LiveGauges};

/// What a new session is made of.
#[derive(Debug, Clone)]
pub struct SessionSpec {
    pub room_id: String,
    pub participant_id: String,
    pub metadata: HashMap<String, String>,
    pub video_metadata: HashMap<String, String>,
    pub audio: StreamConfig,
    pub video: Option<StreamConfig>,
}

/// Sockets bound before a session is created (see [`MediaEngine::create_session_bound`]).
#[derive(Debug)]
pub struct BoundMedia {
    /// The audio stream's sockets.
    pub audio: RtpSockets,
    /// The video stream's sockets, when the session has video.
    pub video: Option<RtpSockets>,
}

/// A live session: its description and its streams, and every operation an application can do
/// on it. The backends look a session up and call these, so each operation is written once.
/// Its video stream may come and go during the session (a SIP re-INVITE adding or removing
/// video).
#[derive(Debug)]
pub struct MediaSession {
    info: RwLock<Arc<SessionInfo>>,
    audio: MediaStream,
    video: RwLock<Option<Arc<MediaStream>>>,
    /// The far end put the call on hold (SIP): what we would send is discarded.
    held: AtomicBool,
    /// The peer is meant to send us media: while it is not (a SIP call we hold, or `inactive`),
    /// its silence does not end the session (its RTCP BYE still does).
    expects_media: AtomicBool,
}

impl MediaSession {
    /// The description given to callbacks.
    pub fn info(&self) -> Arc<SessionInfo> {
        self.info.read().clone()
    }

    /// The description with the streams' current remote addresses (latching or a re-INVITE
    /// may have moved them since the session was created).
    pub fn current_info(&self) -> SessionInfo {
        let mut info = (*self.info()).clone();
        info.audio = self.audio.info();
        info.video = self.video().map(|v| v.info());
        info
    }

    /// The audio stream.
    pub fn audio(&self) -> &MediaStream {
        &self.audio
    }

    /// The video stream, when the session has one.
    pub fn video(&self) -> Option<Arc<MediaStream>> {
        self.video.read().clone()
    }

    /// Counters of both streams.
    pub fn stats(&self) -> SessionStats {
        SessionStats {
            audio: self.audio.stats(),
            video: self.video().map(|v| v.stats()),
        }
    }

    /// The video stream, or the error every video operation on an audio-only session gives.
    pub fn video_stream(&self) -> Result<Arc<MediaStream>> {
        self.video()
            .ok_or_else(|| Error::State(format!("session {} has no video", self.info().id)))
    }

    /// Whether the far end holds the session: sending is suspended (calls succeed, nothing goes out).
    pub fn is_held(&self) -> bool {
        self.held.load(Ordering::Relaxed)
    }

    /// Whether the peer is meant to send us media (see [`Self::set_expects_media`]).
    pub fn expects_media(&self) -> bool {
        self.expects_media.load(Ordering::Relaxed)
    }

    /// Says whether the peer is meant to send us media now (true when the session starts);
    /// while it is not, silence does not end the session.
    pub fn set_expects_media(&self, expects: bool) {
        self.expects_media.store(expects, Ordering::Relaxed);
    }

    /// Suspends (`true`) or resumes sending, as a hold or resume from the far end asks.
    pub fn set_held(&self, held: bool) {
        self.held.store(held, Ordering::Relaxed);
    }

    /// Sends one picture; `timestamp_ms` is its presentation time (`None`: the session clock).
    pub fn send_video(&self, picture: &[u8], timestamp_ms: Option<f64>) -> Result<()> {
        let v = self.video_stream()?;
        if self.is_held() {
            return Ok(());
        }
        v.send_video(picture, timestamp_ms)
    }

    /// Sends pictures in order, each with its own timestamp.
    pub fn send_video_chunks(&self, chunks: impl IntoIterator<Item = VideoChunk>) -> Result<()> {
        let v = self.video_stream()?;
        for c in chunks {
            if !self.is_held() {
                v.send_video(&c.data, c.timestamp_ms)?;
            }
        }
        Ok(())
    }

    /// Sends 16-bit PCM as 20 ms packets of the session's audio codec.
    pub fn send_audio(&self, pcm: &[i16]) -> Result<()> {
        self.send_audio_at(pcm, None)
    }

    /// Sends 16-bit PCM at `rate_hz` (`None`: the session's PCM rate) as 20 ms packets of the
    /// session's audio codec.
    pub fn send_audio_at(&self, pcm: &[i16], rate_hz: Option<u32>) -> Result<()> {
        if self.is_held() {
            return Ok(());
        }
        self.audio.send_audio_at(pcm, rate_hz)
    }

    /// Sends one frame the application encoded itself, lasting `duration_ms`.
    pub fn send_audio_payload(&self, payload: &[u8], duration_ms: u32) -> Result<()> {
        if self.is_held() {
            return Ok(());
        }
        self.audio.send_audio_payload(payload, duration_ms)
    }

    /// Queues a DTMF digit as RFC 4733 telephone events.
    pub fn send_dtmf(&self, digit: char, duration_ms: u32) -> Result<()> {
        if self.is_held() {
            return Ok(());
        }
        self.audio.send_dtmf(digit, duration_ms)
    }

    /// Asks the far end's video sender for a key frame.
    pub fn request_keyframe(&self, kind: KeyframeRequest) -> Result<()> {
        self.video_stream()?.request_keyframe(kind);
        Ok(())
    }

    /// Video passthrough on the session's video stream (see
    /// [`MediaBackend::set_video_passthrough`](crate::backend::MediaBackend::set_video_passthrough)).
    pub fn set_video_passthrough(&self, on: bool) -> Result<()> {
        self.video_stream()?.set_video_passthrough(on);
        Ok(())
    }

    /// Points the streams at new remote RTP addresses; RTCP follows (the same address with
    /// rtcp-mux, the next port otherwise). `None` leaves a stream where it is.
    pub fn update_remote(
        &self,
        audio: Option<SocketAddr>,
        video: Option<SocketAddr>,
    ) -> Result<()> {
        let v = match video {
            Some(a) => Some((self.video_stream()?, a)),
            None => None,
        };
        let point = |s: &MediaStream, rtp: SocketAddr| {
            let info = s.info();
            let rtcp = if info.local_rtcp_addr == info.local_addr {
                rtp
            } else {
                SocketAddr::new(rtp.ip(), rtp.port().wrapping_add(1))
            };
            s.set_remote(rtp, rtcp);
        };
        if let Some(a) = audio {
            point(&self.audio, a);
        }
        if let Some((s, a)) = v {
            point(&s, a);
        }
        Ok(())
    }

    /// Whether the peer has left every stream of the session (RTCP BYE or silence on each).
    pub fn peer_gone(&self) -> bool {
        self.audio.peer_gone() && self.video().is_none_or(|v| v.peer_gone())
    }

    /// Stops and joins both streams' threads (video first, as roomkit closes it first).
    fn close(&self) {
        if let Some(v) = self.video.write().take() {
            v.close();
        }
        self.audio.close();
    }

    /// Asks the streams' threads to stop without joining them ([`MediaStream::begin_close`]).
    fn begin_close(&self) {
        if let Some(v) = &*self.video.read() {
            v.begin_close();
        }
        self.audio.begin_close();
    }
}

/// The most shared I/O threads an engine starts.
pub const MAX_IO_THREADS: usize = 1024;

/// Engine-wide settings.
#[derive(Debug, Clone, Copy)]
pub struct EngineConfig {
    /// Callback threads (at least 1).
    pub callback_threads: usize,
    /// Events each callback thread may have queued before new ones are dropped (at least: a
    /// thread with many live sessions may queue `dispatch::EVENTS_PER_KEY` per session).
    pub callback_queue: usize,
    /// How streams do their I/O: 0 (default) one thread per stream, sleeping in `ppoll` on its
    /// own sockets (lowest latency for a few calls); N > 0 N shared threads, each waiting in
    /// `epoll` on the sockets of many streams (see `io_pool`).
    pub io_threads: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            callback_threads: 1,
            callback_queue: DEFAULT_QUEUE_LEN,
            io_threads: 0,
        }
    }
}

/// What the engine does after it ended a session on its own (the peer left): a SIP backend
/// hangs the call up. Runs on the engine's liveness thread; it must not wait for long.
pub type EndHook = Arc<dyn Fn(SessionId, EndReason) + Send + Sync>;

type Sessions = RwLock<HashMap<SessionId, Arc<MediaSession>>>;

/// What the metrics need beyond the live sessions: counts, and the RTP counters of the streams
/// that ended (so the sums never go down when a session ends).
///
/// A stream's counters move from "live" to `retired` while the sessions' write lock is held
/// (`end_session`) or, for a video stream removed alone, while `retired` is held; a scrape
/// holds the read lock and then `retired` while it sums, so it sees each stream exactly once.
/// What a closing stream still counts (its linger) is added when it has closed.
#[derive(Debug, Default)]
struct EngineTotals {
    started: AtomicU64,
    ended: AtomicU64,
    /// `[audio, video]`.
    retired: Mutex<[StreamTotals; 2]>,
}

impl EngineTotals {
    /// Moves a session's streams, read as `stats`, to the retired sums.
    fn retire(retired: &mut [StreamTotals; 2], stats: &SessionStats) {
        retired[0].add(&stats.audio);
        if let Some(v) = &stats.video {
            retired[1].add(v);
        }
    }

    /// Adds what a session's streams counted between `before` and `after`.
    fn retire_growth(&self, before: &SessionStats, after: &SessionStats) {
        let mut r = self.retired.lock();
        r[0].add_growth(&before.audio, &after.audio);
        if let (Some(b), Some(a)) = (&before.video, &after.video) {
            r[1].add_growth(b, a);
        }
    }
}

/// Work for the liveness thread.
enum Liveness {
    /// A stream of the session reported its peer gone, for this reason.
    StreamEnded(SessionId, StreamEndReason),
    Stop,
}

/// Sessions, callbacks and dispatcher threads. Dropping the engine disconnects every session
/// (joining their threads, closing their sockets) and then joins the dispatcher threads.
///
/// Liveness: when a stream reports its peer gone (RTCP BYE, or nothing for the inactivity
/// timeout) and every stream of the session is in that state, the engine ends the session on
/// its liveness thread, with [`EndReason::RtcpBye`] or [`EndReason::RtpTimeout`] after the
/// stream that went last, then runs the [`EndHook`]. A BYE on one stream alone (a peer that
/// dropped its video) does not end the call, and silence does not end a session whose peer is
/// not meant to send (see [`MediaSession::set_expects_media`]). Ending a session joins its stream threads and
/// posts to the callback threads, so it never runs on either: a callback thread only forwards
/// the stream's report.
pub struct MediaEngine {
    dispatcher: Arc<Dispatcher<EngineEvent>>,
    /// The shared I/O threads (`io_threads` > 0); each stream on them holds a reference too.
    io_pool: Option<Arc<IoPool>>,
    callbacks: Arc<Callbacks>,
    sessions: Arc<Sessions>,
    end_hook: Arc<RwLock<Option<EndHook>>>,
    liveness: Option<(Sender<Liveness>, JoinHandle<()>)>,
    totals: Arc<EngineTotals>,
}

impl std::fmt::Debug for MediaEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaEngine")
            .field("sessions", &self.sessions.read().len())
            .finish_non_exhaustive()
    }
}

impl MediaEngine {
    /// Starts the dispatcher threads.
    pub fn new(cfg: EngineConfig) -> Result<MediaEngine> {
        let callbacks = Arc::new(Callbacks::default());
        let cb = callbacks.clone();
        // One message per stream report at most (a stream reports BYE once, silence once per
        // inactivity timeout): the queue cannot grow faster than streams exist.
        let (tx, rx) = unbounded::<Liveness>();
        let reports = tx.clone();
        let dispatcher = Dispatcher::new(
            cfg.callback_threads,
            cfg.callback_queue,
            "rkm-callback",
            Arc::new(move |ev: EngineEvent| {
                let ended = match &ev {
                    EngineEvent::StreamEnded(id, e) => Some((*id, e.reason.clone())),
                    _ => None,
                };
                // The application hears of the stream first, then of the session's end.
                cb.deliver(ev);
                if let Some((id, reason)) = ended {
                    let _ = reports.send(Liveness::StreamEnded(id, reason));
                }
            }),
        )
        .map_err(|e| Error::Io("starting callback threads".into(), e))?;
        let dispatcher = Arc::new(dispatcher);
        let io_pool = match cfg.io_threads {
            0 => None,
            n if n > MAX_IO_THREADS => {
                return Err(Error::InvalidArgument(format!(
                    "io_threads = {n} is more than {MAX_IO_THREADS}"
                )))
            }
            n => Some(IoPool::new(n).map_err(|e| Error::Io("starting the I/O threads".into(), e))?),
        };
        let sessions: Arc<Sessions> = Arc::default();
        let end_hook: Arc<RwLock<Option<EndHook>>> = Arc::default();
        let totals: Arc<EngineTotals> = Arc::default();
        let (d, s, h, t) = (
            Arc::downgrade(&dispatcher),
            Arc::downgrade(&sessions),
            end_hook.clone(),
            totals.clone(),
        );
        let thread = std::thread::Builder::new()
            .name("rkm-liveness".into())
            .spawn(move || {
                for msg in rx {
                    let Liveness::StreamEnded(id, why) = msg else {
                        break;
                    };
                    reap(&d, &s, &h, &t, id, why);
                }
            })
            .map_err(|e| Error::Io("starting the liveness thread".into(), e))?;
        Ok(MediaEngine {
            dispatcher,
            io_pool,
            callbacks,
            sessions,
            end_hook,
            liveness: Some((tx, thread)),
            totals,
        })
    }

    /// Sets what runs after the engine ended a session because its peer left (replacing any
    /// earlier hook).
    pub fn set_end_hook(&self, f: impl Fn(SessionId, EndReason) + Send + Sync + 'static) {
        *self.end_hook.write() = Some(Arc::new(f));
    }

    /// The callback registry.
    pub fn callbacks(&self) -> &Callbacks {
        &self.callbacks
    }

    /// Opens the streams of a new session and announces it (session ready, then video session
    /// ready). On any failure nothing is left open.
    pub fn create_session(&self, spec: SessionSpec) -> Result<Arc<SessionInfo>> {
        let id = uuid::Uuid::new_v4();
        let audio = RtpSockets::bind(spec.audio.local_addr, spec.audio.rtcp_mux)?;
        let video = match &spec.video {
            Some(v) => Some(RtpSockets::bind(v.local_addr, v.rtcp_mux)?),
            None => None,
        };
        self.create_session_bound(id, spec, BoundMedia { audio, video })
    }

    /// Creates session `id` on sockets bound beforehand (a SIP call binds them before writing
    /// its SDP, and chooses its id when the call starts). `spec.video` and `bound.video` must
    /// agree; an id already in use is an error. On any failure nothing is left open.
    pub fn create_session_bound(
        &self,
        id: SessionId,
        spec: SessionSpec,
        bound: BoundMedia,
    ) -> Result<Arc<SessionInfo>> {
        self.create_session_with(id, spec, bound, None)
    }

    /// Creates session `id` as one BUNDLE group (RFC 9143): audio and video share the audio
    /// sockets (`bound.video`, if any, is closed), one ICE/DTLS transport run with `params`
    /// (the streams' own `ice_dtls` and `srtp` are not used) and one SRTP session; `routes`
    /// tell the two streams' packets apart (see `MediaStream::open_bundle`).
    pub fn create_session_bundled(
        &self,
        id: SessionId,
        spec: SessionSpec,
        bound: BoundMedia,
        params: crate::webrtc::IceDtlsParams,
        routes: (crate::webrtc::MemberRoute, crate::webrtc::MemberRoute),
    ) -> Result<Arc<SessionInfo>> {
        self.create_session_with(id, spec, bound, Some((params, routes)))
    }

    #[allow(clippy::type_complexity)]
    fn create_session_with(
        &self,
        id: SessionId,
        mut spec: SessionSpec,
        bound: BoundMedia,
        bundle: Option<(
            crate::webrtc::IceDtlsParams,
            (crate::webrtc::MemberRoute, crate::webrtc::MemberRoute),
        )>,
    ) -> Result<Arc<SessionInfo>> {
        if self.sessions.read().contains_key(&id) {
            return Err(Error::State(format!("session {id} exists already")));
        }
        spec.audio.session = id;
        if let Some((params, routes)) = bundle {
            let mut v = spec.video.take().ok_or_else(|| {
                Error::InvalidArgument("a BUNDLE group needs a video stream".into())
            })?;
            v.session = id;
            let (audio, video) = MediaStream::open_bundle(
                spec.audio.clone(),
                v,
                &params,
                routes,
                bound.audio,
                self.dispatcher.clone(),
                self.io_pool.as_ref(),
            )?;
            drop(bound.video);
            return self.register(id, spec, audio, Some(video));
        }
        let audio = MediaStream::open_bound(
            spec.audio.clone(),
            bound.audio,
            self.dispatcher.clone(),
            self.io_pool.as_ref(),
        )?;
        let video = match (spec.video.take(), bound.video) {
            (Some(mut v), Some(sockets)) => {
                v.session = id;
                // `audio` is dropped (closed) if this fails.
                Some(MediaStream::open_bound(
                    v,
                    sockets,
                    self.dispatcher.clone(),
                    self.io_pool.as_ref(),
                )?)
            }
            (None, None) => None,
            _ => {
                return Err(Error::InvalidArgument(
                    "video stream settings and video sockets must come together".into(),
                ))
            }
        };
        self.register(id, spec, audio, video)
    }

    /// Records a session whose streams are open and announces it (session ready, then video
    /// session ready).
    fn register(
        &self,
        id: SessionId,
        spec: SessionSpec,
        audio: MediaStream,
        video: Option<MediaStream>,
    ) -> Result<Arc<SessionInfo>> {
        let audio_info = audio.info();
        let mut metadata = spec.metadata;
        // The PCM rate send_audio takes and audio frames carry, for applications that read
        // metadata (the C API's session callbacks).
        metadata.insert("sample_rate".into(), audio_info.sample_rate.to_string());
        let info = Arc::new(SessionInfo {
            id,
            room_id: spec.room_id,
            participant_id: spec.participant_id,
            metadata,
            audio: audio_info,
            video: video.as_ref().map(MediaStream::info),
            video_metadata: spec.video_metadata,
            end_reason: None,
        });
        let has_video = video.is_some();
        let session = Arc::new(MediaSession {
            info: RwLock::new(info.clone()),
            audio,
            video: RwLock::new(video.map(Arc::new)),
            held: AtomicBool::new(false),
            expects_media: AtomicBool::new(true),
        });
        {
            let mut sessions = self.sessions.write();
            if sessions.contains_key(&id) {
                return Err(Error::State(format!("session {id} exists already")));
            }
            sessions.insert(id, session.clone());
        }
        self.totals.started.fetch_add(1, Ordering::Relaxed);
        let key = dispatch_key(id);
        self.dispatcher.key_added(key);
        self.dispatcher
            .post_wait(key, EngineEvent::SessionReady(info.clone()));
        if has_video {
            self.dispatcher
                .post_wait(key, EngineEvent::VideoSessionReady(info.clone()));
        }
        Ok(info)
    }

    /// Gives live session `id` a video stream on sockets bound beforehand (a re-INVITE added
    /// video) and announces it (video session ready). Fails when the session has video.
    pub fn add_video(
        &self,
        id: SessionId,
        mut cfg: StreamConfig,
        sockets: RtpSockets,
        video_metadata: HashMap<String, String>,
    ) -> Result<Arc<SessionInfo>> {
        let session = self.session(id)?;
        if session.video().is_some() {
            return Err(Error::State(format!("session {id} has video already")));
        }
        cfg.session = id;
        let stream = Arc::new(MediaStream::open_bound(
            cfg,
            sockets,
            self.dispatcher.clone(),
            self.io_pool.as_ref(),
        )?);
        let mut info = (*session.info()).clone();
        info.video = Some(stream.info());
        info.video_metadata = video_metadata;
        let info = Arc::new(info);
        *session.video.write() = Some(stream);
        *session.info.write() = info.clone();
        self.dispatcher.post_wait(
            dispatch_key(id),
            EngineEvent::VideoSessionReady(info.clone()),
        );
        Ok(info)
    }

    /// Ends live session `id`'s video stream (a re-INVITE removed video): its thread stops
    /// (RTCP BYE is sent) and its sockets close; the session goes on with audio.
    pub fn remove_video(&self, id: SessionId) -> Result<()> {
        let session = self.session(id)?;
        let (stream, before) = {
            let mut retired = self.totals.retired.lock();
            let Some(stream) = session.video.write().take() else {
                return Ok(());
            };
            let before = stream.stats();
            retired[1].add(&before);
            (stream, before)
        };
        stream.close();
        self.totals.retired.lock()[1].add_growth(&before, &stream.stats());
        let mut info = (*session.info()).clone();
        info.video = None;
        info.video_metadata.clear();
        *session.info.write() = Arc::new(info);
        Ok(())
    }

    /// Delivers a DTMF digit that arrived outside RTP (a SIP INFO) to the `dtmf` callback, in
    /// order with the session's other events. A full callback queue drops it (returns false).
    pub fn post_dtmf(&self, id: SessionId, event: crate::frame::DtmfEvent) -> bool {
        self.dispatcher
            .post(dispatch_key(id), EngineEvent::Dtmf(id, event))
            .is_ok()
    }

    /// The live session `id`.
    pub fn session(&self, id: SessionId) -> Result<Arc<MediaSession>> {
        self.sessions
            .read()
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("session {id}")))
    }

    /// Descriptions of the live sessions in `room_id` (every room when `None`).
    pub fn list(&self, room_id: Option<&str>) -> Vec<SessionInfo> {
        let mut v: Vec<_> = self
            .sessions
            .read()
            .values()
            .filter(|s| room_id.is_none_or(|r| s.info().room_id == r))
            .map(|s| s.current_info())
            .collect();
        v.sort_by_key(|s| s.id);
        v
    }

    /// Ends session `id` as the application asked ([`EndReason::LocalHangup`]); see
    /// [`Self::disconnect_with`].
    pub fn disconnect(&self, id: SessionId) -> Result<()> {
        self.disconnect_with(id, EndReason::LocalHangup)
    }

    /// Starts ending session `id` without waiting: its streams' threads are asked to stop
    /// (and send RTCP BYE) but not joined. [`disconnect_with`](Self::disconnect_with) still
    /// has to follow; closing many sessions, asking them all first lets their threads wind
    /// down side by side instead of one after another. No effect on an unknown session.
    pub fn begin_disconnect(&self, id: SessionId) {
        let session = self.sessions.read().get(&id).cloned();
        if let Some(s) = session {
            s.begin_close();
        }
    }

    /// Ends session `id`: stops and joins its threads (each sends RTCP BYE), closes its sockets
    /// and fires the disconnected callback, with `reason`, after the session's last frames.
    pub fn disconnect_with(&self, id: SessionId, reason: EndReason) -> Result<()> {
        end_session(&self.sessions, &self.totals, &self.dispatcher, id, reason)
    }

    /// The metrics of this engine's sessions: counts, RTP counters summed over every stream
    /// (live and ended) per media kind, and gauges over the live streams. Locks each live
    /// stream briefly, as [`MediaSession::stats`] does; nothing is counted per packet for it.
    pub fn metrics(&self) -> BackendMetrics {
        let mut m = BackendMetrics {
            sessions_started: self.totals.started.load(Ordering::Relaxed),
            sessions_ended: self.totals.ended.load(Ordering::Relaxed),
            ..BackendMetrics::default()
        };
        let sessions = self.sessions.read();
        let retired = self.totals.retired.lock();
        let mut live: [StreamTotals; 2] = Default::default();
        let mut gauges: [LiveGauges; 2] = Default::default();
        let mut add = |k: usize, s: &StreamStats| {
            live[k].add(s);
            gauges[k].add(s);
        };
        for s in sessions.values() {
            let st = s.stats();
            m.sessions += 1;
            add(0, &st.audio);
            if let Some(v) = &st.video {
                m.video_sessions += 1;
                add(1, v);
            }
        }
        for k in 0..2 {
            live[k].merge(&retired[k]);
        }
        m.streams = live;
        m.live = gauges;
        m
    }
}

/// Removes, closes and announces session `id`.
fn end_session(
    sessions: &Sessions,
    totals: &EngineTotals,
    dispatcher: &Dispatcher<EngineEvent>,
    id: SessionId,
    reason: EndReason,
) -> Result<()> {
    let (session, before) = {
        let mut map = sessions.write();
        let session = map
            .remove(&id)
            .ok_or_else(|| Error::NotFound(format!("session {id}")))?;
        let before = session.stats();
        EngineTotals::retire(&mut totals.retired.lock(), &before);
        (session, before)
    };
    totals.ended.fetch_add(1, Ordering::Relaxed);
    // `close` takes the video stream out of the session: keep it to read what it counted last.
    let video = session.video();
    session.close();
    let after = SessionStats {
        audio: session.audio().stats(),
        video: video.map(|v| v.stats()),
    };
    totals.retire_growth(&before, &after);
    let mut info = (*session.info()).clone();
    info.end_reason = Some(reason);
    drop(session);
    dispatcher.post_wait(dispatch_key(id), EngineEvent::Disconnected(Arc::new(info)));
    dispatcher.key_removed(dispatch_key(id));
    Ok(())
}

/// The liveness thread's work for one stream report: ends the session when the peer has left
/// every stream of it, then runs the end hook.
fn reap(
    dispatcher: &Weak<Dispatcher<EngineEvent>>,
    sessions: &Weak<Sessions>,
    hook: &RwLock<Option<EndHook>>,
    totals: &EngineTotals,
    id: SessionId,
    why: StreamEndReason,
) {
    let (Some(dispatcher), Some(sessions)) = (dispatcher.upgrade(), sessions.upgrade()) else {
        return;
    };
    let reason = match why {
        StreamEndReason::RemoteBye { .. } => EndReason::RtcpBye,
        StreamEndReason::Inactive { .. } => EndReason::RtpTimeout,
        StreamEndReason::TransportFailed(_) => EndReason::TransportFailed,
    };
    let gone = sessions
        .read()
        .get(&id)
        .is_some_and(|s| s.peer_gone() && (reason != EndReason::RtpTimeout || s.expects_media()));
    if !gone {
        return;
    }
    if end_session(&sessions, totals, &dispatcher, id, reason).is_ok() {
        let hook = hook.read().clone();
        if let Some(hook) = hook {
            hook(id, reason);
        }
    }
}

impl Drop for MediaEngine {
    fn drop(&mut self) {
        if let Some((tx, thread)) = self.liveness.take() {
            let _ = tx.send(Liveness::Stop);
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
        let ids: Vec<SessionId> = self.sessions.read().keys().copied().collect();
        for id in ids {
            let _ = self.disconnect_with(id, EndReason::Shutdown);
        }
        // The dispatcher threads drain what is queued and are joined when the last reference
        // (this one: the streams holding the others are closed) goes.
    }
}
