//! `roomkit_media._native`: the engine's RTP backends for Python.
//!
//! The pure-Python layer (`python/roomkit_media/`) subclasses roomkit's ABCs and calls this
//! module. Two rules hold here:
//!
//! - **The engine's threads never take the GIL.** Its callbacks only push an owned [`Event`] into
//!   a bounded [`EventQueue`] and, when the queue goes from idle to armed, write an eventfd. The
//!   asyncio loop watches that fd (`loop.add_reader`) and calls [`RtpCore::drain`], which hands
//!   back a batch of plain tuples; Python builds roomkit's frames from them on the loop thread.
//!   A full queue drops the event and counts it ([`RtpCore::dropped`]); the engine never waits.
//! - **Every engine call releases the GIL** (`py.detach`), so a send or a connect on one thread
//!   never stalls Python threads, and `close()` can join the engine's threads while they finish
//!   pushing their last events.
#![forbid(unsafe_op_in_unsafe_fn)]

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use pyo3::exceptions::{PyKeyError, PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use roomkit_media::backend::{
    ConnectOptions, MediaBackend, RtpBackendConfig, RtpVideoBackend, RtpVoiceBackend, SessionInfo,
    SessionStats,
};
use roomkit_media::codec::testclip::TestClip;
use roomkit_media::metrics::STREAM_COUNTERS;
use roomkit_media::{Delivery, Error, VideoCodec};

mod sip;
use uuid::Uuid;

/// Events one drain hands back at most when Python asks for more.
const DRAIN_LIMIT: usize = 4096;

/// What an engine callback thread hands to the loop: owned data, no Python object.
pub(crate) enum Event {
    Audio {
        id: Uuid,
        pcm: Vec<i16>,
        sample_rate: u32,
        rtp_timestamp: u32,
        payload_type: u8,
        concealed: bool,
    },
    Video {
        id: Uuid,
        data: Vec<u8>,
        codec: &'static str,
        timestamp_ms: f64,
        rtp_timestamp: u32,
        keyframe: bool,
        sequence: u64,
        complete: bool,
    },
    Dtmf {
        id: Uuid,
        digit: char,
        duration_ms: u32,
    },
    Ended {
        id: Uuid,
        reason: &'static str,
    },
    Keyframe {
        id: Uuid,
        fir: bool,
    },
    /// SIP: an incoming call was answered (the session as the engine describes it, and its
    /// roomkit session id).
    Call(Box<SessionInfo>, String),
    /// SIP: a new INVITE waits for the application's invite filter (deferred).
    Invite {
        call_id: String,
        caller: String,
        callee: String,
        caller_display_name: Option<String>,
        x_headers: Vec<(String, String)>,
        source: (String, u16),
        offers_video: bool,
    },
    /// SIP: a message received or sent (the trace).
    Trace {
        outbound: bool,
        peer: (String, u16),
        data: Vec<u8>,
    },
    /// SIP: a dialed call moved on.
    CallState {
        id: Uuid,
        state: &'static str,
        status: u16,
        reason: String,
    },
    /// SIP: a registration moved on.
    Registration {
        id: u64,
        state: &'static str,
        status: u16,
        reason: String,
        expires: u32,
    },
}

/// A bounded queue from the engine's callback threads to the asyncio loop, with an eventfd that
/// is readable while events wait. `armed` makes one write per burst, not one per event.
pub(crate) struct EventQueue {
    tx: Sender<Event>,
    rx: Receiver<Event>,
    wake: File,
    armed: AtomicBool,
    dropped: AtomicU64,
}

impl EventQueue {
    pub(crate) fn new(capacity: usize) -> std::io::Result<EventQueue> {
        // SAFETY: eventfd takes no pointer; the result is checked before use.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor that nothing else owns; the File closes it once.
        let wake = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
        Ok(EventQueue {
            tx,
            rx,
            wake,
            armed: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
        })
    }

    /// Called on engine threads: never blocks, never touches Python.
    pub(crate) fn push(&self, event: Event) {
        self.push_or_full(event);
    }

    /// As `push`, saying whether the event went in (false: the queue was full, counted).
    pub(crate) fn push_or_full(&self, event: Event) -> bool {
        match self.tx.try_send(event) {
            Ok(()) => {
                self.arm();
                true
            }
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }

    /// Makes the fd readable unless it already is.
    fn arm(&self) {
        if !self.armed.swap(true, Ordering::SeqCst) {
            // A full eventfd counter (2^64 - 2) cannot happen: one write per disarm.
            let _ = (&self.wake).write(&1u64.to_ne_bytes());
        }
    }

    /// Called on the loop: clears the fd, then takes up to `max` events. Events pushed after the
    /// clear re-arm it; if more than `max` wait, the fd is re-armed for the next turn.
    fn take(&self, max: usize) -> Vec<Event> {
        let mut buf = [0u8; 8];
        let _ = (&self.wake).read(&mut buf);
        self.armed.store(false, Ordering::SeqCst);
        let batch: Vec<Event> = self.rx.try_iter().take(max).collect();
        if !self.rx.is_empty() {
            self.arm();
        }
        batch
    }
}

/// The engine backend behind a core: the video one wraps the voice one, and every session
/// operation goes through the voice backend's engine.
enum Backend {
    Voice(RtpVoiceBackend),
    Video(RtpVideoBackend),
}

impl Voice for Backend {
    type Engine = RtpVoiceBackend;

    fn voice(&self) -> &RtpVoiceBackend {
        match self {
            Backend::Voice(b) => b,
            Backend::Video(b) => b,
        }
    }
}

/// A core's engine backend, seen through the voice backend every session call goes through
/// (a video backend wraps one).
pub(crate) trait Voice: Send + Sync + 'static {
    type Engine: MediaBackend;

    fn voice(&self) -> &Self::Engine;
}

/// The session calls that are the same on every backend, as [`MediaCore`] makes them.
trait Media: Send + Sync {
    fn send_audio(&self, id: Uuid, pcm: &[i16]) -> roomkit_media::Result<()>;
    fn send_dtmf(&self, id: Uuid, digit: char, duration_ms: u32) -> roomkit_media::Result<()>;
    fn send_video_at(&self, id: Uuid, data: &[u8], at_ms: Option<f64>)
        -> roomkit_media::Result<()>;
    fn set_video_passthrough(&self, id: Uuid, enabled: bool) -> roomkit_media::Result<()>;
    fn request_keyframe(&self, id: Uuid, fir: bool) -> roomkit_media::Result<()>;
    fn stats(&self, id: Uuid) -> roomkit_media::Result<SessionStats>;
}

impl<B: Voice> Media for B {
    fn send_audio(&self, id: Uuid, pcm: &[i16]) -> roomkit_media::Result<()> {
        self.voice().send_audio(id, pcm)
    }

    fn send_dtmf(&self, id: Uuid, digit: char, duration_ms: u32) -> roomkit_media::Result<()> {
        self.voice().send_dtmf(id, digit, duration_ms)
    }

    fn send_video_at(
        &self,
        id: Uuid,
        data: &[u8],
        at_ms: Option<f64>,
    ) -> roomkit_media::Result<()> {
        self.voice().send_video_at(id, data, at_ms)
    }

    fn set_video_passthrough(&self, id: Uuid, enabled: bool) -> roomkit_media::Result<()> {
        self.voice().set_video_passthrough(id, enabled)
    }

    fn request_keyframe(&self, id: Uuid, fir: bool) -> roomkit_media::Result<()> {
        if fir {
            self.voice().request_keyframe_fir(id)
        } else {
            self.voice().request_keyframe(id)
        }
    }

    fn stats(&self, id: Uuid) -> roomkit_media::Result<SessionStats> {
        self.voice().stats(id)
    }
}

fn closed() -> PyErr {
    PyRuntimeError::new_err("backend is closed")
}

/// A subclass's handle on the backend its [`MediaCore`] owns: it lives until the base's
/// `close`, after which every call fails with "backend is closed".
pub(crate) struct Handle<B>(Weak<B>);

impl<B: Voice> Handle<B> {
    pub(crate) fn backend(&self) -> PyResult<Arc<B>> {
        self.0.upgrade().ok_or_else(closed)
    }

    /// Runs `f` on the voice backend with the GIL released.
    pub(crate) fn call<R: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&B::Engine) -> roomkit_media::Result<R> + Send,
    ) -> PyResult<R> {
        let b = self.backend()?;
        py.detach(|| f(b.voice())).map_err(err)
    }
}

/// The base class of `RtpCore` and `SipCore`: it owns the engine backend (until `close`) and
/// the event queue, and has the methods that are the same on both.
#[pyclass(module = "roomkit_media._native", subclass, frozen)]
pub(crate) struct MediaCore {
    backend: RwLock<Option<Arc<dyn Media>>>,
    queue: Arc<EventQueue>,
}

impl MediaCore {
    /// The base owning `backend`, and the handle its subclass keeps.
    pub(crate) fn new<B: Voice>(backend: B, queue: Arc<EventQueue>) -> (MediaCore, Handle<B>) {
        let backend = Arc::new(backend);
        let handle = Handle(Arc::downgrade(&backend));
        let media: Arc<dyn Media> = backend;
        let base = MediaCore {
            backend: RwLock::new(Some(media)),
            queue,
        };
        (base, handle)
    }

    /// Runs `f` on the backend with the GIL released.
    fn call<R: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&dyn Media) -> roomkit_media::Result<R> + Send,
    ) -> PyResult<R> {
        let b = self
            .backend
            .read()
            .map_err(|_| PyRuntimeError::new_err("backend lock poisoned"))?
            .clone()
            .ok_or_else(closed)?;
        py.detach(|| f(&*b)).map_err(err)
    }
}

#[pymethods]
impl MediaCore {
    /// The fd that is readable while events wait (for `loop.add_reader`).
    fn wake_fd(&self) -> i32 {
        self.queue.wake.as_raw_fd()
    }

    /// Events dropped because the queue was full.
    fn dropped(&self) -> u64 {
        self.queue.dropped.load(Ordering::Relaxed)
    }

    /// Takes up to `max` waiting events as tuples (`"audio"`, `"video"`, `"dtmf"`, `"ended"`,
    /// `"keyframe"`; SIP adds `"call"`, `"call_state"`, `"registration"`, `"invite"` and
    /// `"trace"`), then the session id and the event's fields.
    #[pyo3(signature = (max = 256))]
    fn drain<'py>(&self, py: Python<'py>, max: usize) -> PyResult<Vec<Bound<'py, PyAny>>> {
        drain(py, &self.queue, max)
    }

    /// Sends s16le mono PCM at the session's PCM rate, as 20 ms packets, all at once.
    fn send_audio(&self, py: Python<'_>, session: &str, pcm: &[u8]) -> PyResult<()> {
        let id = session_id(session)?;
        let samples = pcm_samples(pcm)?;
        self.call(py, |b| b.send_audio(id, &samples))
    }

    /// Sends a DTMF digit as RFC 4733 events.
    fn send_dtmf(
        &self,
        py: Python<'_>,
        session: &str,
        digit: char,
        duration_ms: u32,
    ) -> PyResult<()> {
        let id = session_id(session)?;
        self.call(py, |b| b.send_dtmf(id, digit, duration_ms))
    }

    /// Sends one picture (H.264 Annex-B or one raw NAL; one VP8 frame); `timestamp_ms` None:
    /// the session clock.
    #[pyo3(signature = (session, data, timestamp_ms=None))]
    fn send_video(
        &self,
        py: Python<'_>,
        session: &str,
        data: &[u8],
        timestamp_ms: Option<f64>,
    ) -> PyResult<()> {
        let id = session_id(session)?;
        self.call(py, |b| b.send_video_at(id, data, timestamp_ms))
    }

    /// Video passthrough for one session, at once: every picture delivered (damaged ones
    /// with `complete` False), no wait for a keyframe; False restores the backend's settings.
    fn set_video_passthrough(&self, py: Python<'_>, session: &str, enabled: bool) -> PyResult<()> {
        let id = session_id(session)?;
        self.call(py, |b| b.set_video_passthrough(id, enabled))
    }

    /// Asks the far end for a key frame (PLI, or FIR with `fir=True`).
    #[pyo3(signature = (session, fir=false))]
    fn request_keyframe(&self, py: Python<'_>, session: &str, fir: bool) -> PyResult<()> {
        let id = session_id(session)?;
        self.call(py, |b| b.request_keyframe(id, fir))
    }

    /// The session's RTP counters, named as in the metrics without `rkm_`:
    /// `{"audio": {"rtp_packets_sent": n, ...}, "video": {...} or None}`.
    fn stats<'py>(&self, py: Python<'py>, session: &str) -> PyResult<Bound<'py, PyDict>> {
        let id = session_id(session)?;
        let s = self.call(py, |b| b.stats(id))?;
        stats_dict(py, &s)
    }

    /// Ends every session (a SIP backend hangs its calls up with BYE and stops its SIP
    /// thread) and joins the engine's threads (GIL released). Idempotent.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let taken = self
            .backend
            .write()
            .map_err(|_| PyRuntimeError::new_err("backend lock poisoned"))?
            .take();
        py.detach(move || drop(taken));
        Ok(())
    }
}

pub(crate) fn err(e: Error) -> PyErr {
    match e {
        Error::InvalidArgument(m) => PyValueError::new_err(m),
        Error::NotFound(m) => PyKeyError::new_err(m),
        Error::Io(what, e) => PyOSError::new_err(format!("{what}: {e}")),
        other => PyRuntimeError::new_err(other.to_string()),
    }
}

pub(crate) fn addr(host_port: (String, u16)) -> PyResult<SocketAddr> {
    let (host, port) = host_port;
    (host.as_str(), port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| PyValueError::new_err(format!("cannot resolve address ({host:?}, {port})")))
}

pub(crate) fn session_id(id: &str) -> PyResult<Uuid> {
    Uuid::parse_str(id).map_err(|_| PyKeyError::new_err(format!("no session {id:?}")))
}

pub(crate) fn host_port(a: SocketAddr) -> (String, u16) {
    (a.ip().to_string(), a.port())
}

/// One RTP backend of the engine (voice, or voice + video) and its event queue; the media
/// methods are [`MediaCore`]'s.
#[pyclass(module = "roomkit_media._native", extends = MediaCore, frozen)]
struct RtpCore {
    backend: Handle<Backend>,
}

#[pymethods]
impl RtpCore {
    /// Starts an engine backend (its callback thread) with roomkit's settings.
    #[new]
    #[pyo3(signature = (
        *, video, local_addr, remote_addr, payload_type, clock_rate, dtmf_payload_type,
        rtcp_interval, video_local_addr, video_remote_addr, video_payload_type, video_clock_rate,
        video_codec = "h264", delivery = "nal_unit", queue_len = 8192, symmetric_rtp = false,
        io_threads = 0
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        video: bool,
        local_addr: (String, u16),
        remote_addr: Option<(String, u16)>,
        payload_type: u8,
        clock_rate: u32,
        dtmf_payload_type: Option<u8>,
        rtcp_interval: f64,
        video_local_addr: (String, u16),
        video_remote_addr: Option<(String, u16)>,
        video_payload_type: u8,
        video_clock_rate: u32,
        video_codec: &str,
        delivery: &str,
        queue_len: usize,
        symmetric_rtp: bool,
        io_threads: usize,
    ) -> PyResult<PyClassInitializer<RtpCore>> {
        let video_codec = match video_codec {
            "h264" => VideoCodec::H264,
            "vp8" => VideoCodec::Vp8,
            other => return Err(PyValueError::new_err(format!("video_codec {other:?}"))),
        };
        let delivery = match delivery {
            "nal_unit" => Delivery::NalUnit,
            "access_unit" => Delivery::AccessUnit,
            other => return Err(PyValueError::new_err(format!("delivery {other:?}"))),
        };
        if !(rtcp_interval.is_finite() && rtcp_interval > 0.0) {
            return Err(PyValueError::new_err("rtcp_interval must be above 0"));
        }
        let cfg = RtpBackendConfig {
            local_addr: addr(local_addr)?,
            remote_addr: remote_addr.map(addr).transpose()?,
            payload_type,
            clock_rate,
            dtmf_payload_type,
            rtcp_interval: Duration::from_secs_f64(rtcp_interval),
            video_local_addr: addr(video_local_addr)?,
            video_remote_addr: video_remote_addr.map(addr).transpose()?,
            video_payload_type,
            video_clock_rate,
            video_codec,
            delivery,
            latch_to_first_source: symmetric_rtp,
            io_threads,
            ..RtpBackendConfig::default()
        };
        let queue = Arc::new(EventQueue::new(queue_len).map_err(PyOSError::new_err)?);
        let backend = py
            .detach(|| -> roomkit_media::Result<Backend> {
                Ok(if video {
                    Backend::Video(RtpVideoBackend::new(cfg)?)
                } else {
                    Backend::Voice(RtpVoiceBackend::new(cfg)?)
                })
            })
            .map_err(err)?;
        wire(backend.voice(), &queue, |_| {});
        let (base, backend) = MediaCore::new(backend, queue);
        Ok(PyClassInitializer::from(base).add_subclass(RtpCore { backend }))
    }

    /// Creates a session; returns its id, PCM rate and local addresses.
    #[pyo3(signature = (room_id, participant_id, remote_addr=None, video_remote_addr=None, metadata=None))]
    fn connect<'py>(
        &self,
        py: Python<'py>,
        room_id: String,
        participant_id: String,
        remote_addr: Option<(String, u16)>,
        video_remote_addr: Option<(String, u16)>,
        metadata: Option<HashMap<String, String>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let options = ConnectOptions {
            remote_addr: remote_addr.map(addr).transpose()?,
            video_remote_addr: video_remote_addr.map(addr).transpose()?,
            metadata: metadata.unwrap_or_default(),
            ..ConnectOptions::default()
        };
        let info = self
            .backend
            .call(py, |b| b.connect(&room_id, &participant_id, options))?;
        let d = PyDict::new(py);
        d.set_item("id", info.id.to_string())?;
        d.set_item("sample_rate", info.audio.sample_rate)?;
        d.set_item("local_addr", host_port(info.audio.local_addr))?;
        d.set_item("local_rtcp_addr", host_port(info.audio.local_rtcp_addr))?;
        if let Some(v) = &info.video {
            d.set_item("video_local_addr", host_port(v.local_addr))?;
            d.set_item("video_local_rtcp_addr", host_port(v.local_rtcp_addr))?;
        }
        Ok(d)
    }

    /// Ends a session (its video too).
    fn disconnect(&self, py: Python<'_>, session: &str) -> PyResult<()> {
        let id = session_id(session)?;
        self.backend.call(py, |b| b.disconnect(id))
    }

    /// Points a session's media at new remote addresses (`None` keeps a stream's).
    #[pyo3(signature = (session, remote_addr=None, video_remote_addr=None))]
    fn update_remote(
        &self,
        py: Python<'_>,
        session: &str,
        remote_addr: Option<(String, u16)>,
        video_remote_addr: Option<(String, u16)>,
    ) -> PyResult<()> {
        let id = session_id(session)?;
        let audio = remote_addr.map(addr).transpose()?;
        let video = video_remote_addr.map(addr).transpose()?;
        self.backend.call(py, |b| b.update_remote(id, audio, video))
    }
}

/// A session as a dict: `id`, `room_id`, `participant_id`, `metadata` (the engine's, text
/// values), `sample_rate` (PCM), `clock_rate`, `payload_type`, `local_addr`, `remote_addr`, and
/// `video` (`None`, or a dict of `metadata`, `local_addr`, `remote_addr`, `payload_type`,
/// `clock_rate`).
pub(crate) fn info_dict<'py>(py: Python<'py>, info: &SessionInfo) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("id", info.id.to_string())?;
    d.set_item("room_id", &info.room_id)?;
    d.set_item("participant_id", &info.participant_id)?;
    d.set_item("metadata", info.metadata.clone())?;
    d.set_item("sample_rate", info.audio.sample_rate)?;
    d.set_item("clock_rate", info.audio.clock_rate)?;
    d.set_item("payload_type", info.audio.payload_type)?;
    d.set_item("local_addr", host_port(info.audio.local_addr))?;
    d.set_item("local_rtcp_addr", host_port(info.audio.local_rtcp_addr))?;
    d.set_item("remote_addr", host_port(info.audio.remote_addr))?;
    match &info.video {
        Some(v) => {
            let vd = PyDict::new(py);
            vd.set_item("metadata", info.video_metadata.clone())?;
            vd.set_item("local_addr", host_port(v.local_addr))?;
            vd.set_item("local_rtcp_addr", host_port(v.local_rtcp_addr))?;
            vd.set_item("remote_addr", host_port(v.remote_addr))?;
            vd.set_item("payload_type", v.payload_type)?;
            vd.set_item("clock_rate", v.clock_rate)?;
            d.set_item("video", vd)?;
        }
        None => d.set_item("video", py.None())?,
    }
    Ok(d)
}

/// s16le bytes as samples.
pub(crate) fn pcm_samples(pcm: &[u8]) -> PyResult<Vec<i16>> {
    if !pcm.len().is_multiple_of(2) {
        return Err(PyValueError::new_err("PCM must be whole 16-bit samples"));
    }
    Ok(pcm
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect())
}

/// A session's RTP counters, named as in the metrics without `rkm_`:
/// `{"audio": {"rtp_packets_sent": n, ...}, "video": {...} or None}`.
pub(crate) fn stats_dict<'py>(
    py: Python<'py>,
    s: &roomkit_media::backend::SessionStats,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (key, stream) in [("audio", Some(&s.audio)), ("video", s.video.as_ref())] {
        match stream {
            Some(st) => {
                let m = PyDict::new(py);
                for c in STREAM_COUNTERS {
                    m.set_item(c.name.trim_start_matches("rkm_"), (c.get)(st))?;
                }
                d.set_item(key, m)?;
            }
            None => d.set_item(key, py.None())?,
        }
    }
    Ok(d)
}

/// Registers the engine callbacks of a backend: each only moves an owned [`Event`] into `queue`.
/// `on_end` runs first on the callback thread for every session that ends.
pub(crate) fn wire<B: MediaBackend>(
    b: &B,
    queue: &Arc<EventQueue>,
    on_end: impl Fn(&SessionInfo) + Send + Sync + 'static,
) {
    let q = queue.clone();
    b.on_audio_received(move |id, f| {
        // A frame the engine did not decode (pcm empty) has no roomkit AudioFrame.
        if f.pcm.is_empty() {
            return;
        }
        q.push(Event::Audio {
            id,
            pcm: f.pcm.clone(),
            sample_rate: f.sample_rate,
            rtp_timestamp: f.rtp_timestamp,
            payload_type: f.payload_type,
            concealed: f.concealed,
        });
    });
    let q = queue.clone();
    b.on_video_received(move |id, f| {
        q.push(Event::Video {
            id,
            data: f.data.clone(),
            codec: f.codec.as_str(),
            timestamp_ms: f.timestamp_ms,
            rtp_timestamp: f.rtp_timestamp,
            keyframe: f.keyframe,
            sequence: f.sequence,
            complete: f.complete,
        });
    });
    let q = queue.clone();
    b.on_dtmf_received(move |id, d| {
        q.push(Event::Dtmf {
            id,
            digit: d.digit,
            duration_ms: d.duration_ms,
        });
    });
    let q = queue.clone();
    b.on_client_disconnected(move |info| {
        on_end(info);
        q.push(Event::Ended {
            id: info.id,
            reason: info.end_reason.map_or("unknown", |r| r.as_str()),
        });
    });
    let q = queue.clone();
    b.on_keyframe_requested(move |id, kind| {
        q.push(Event::Keyframe {
            id,
            fir: matches!(kind, roomkit_media::backend::KeyframeRequest::Fir),
        });
    });
}

/// Takes up to `max` waiting events as tuples (`"audio"`, `"video"`, `"dtmf"`, `"ended"`,
/// `"keyframe"`, `"call"`, `"call_state"`, `"registration"`, then the session id and fields).
pub(crate) fn drain<'py>(
    py: Python<'py>,
    queue: &EventQueue,
    max: usize,
) -> PyResult<Vec<Bound<'py, PyAny>>> {
    let mut out = Vec::new();
    for ev in queue.take(max.clamp(1, DRAIN_LIMIT)) {
        let t = match ev {
            Event::Audio {
                id,
                pcm,
                sample_rate,
                rtp_timestamp,
                payload_type,
                concealed,
            } => {
                let bytes: Vec<u8> = pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
                (
                    "audio",
                    id.to_string(),
                    PyBytes::new(py, &bytes),
                    sample_rate,
                    rtp_timestamp,
                    payload_type,
                    concealed,
                )
                    .into_pyobject(py)?
                    .into_any()
            }
            Event::Video {
                id,
                data,
                codec,
                timestamp_ms,
                rtp_timestamp,
                keyframe,
                sequence,
                complete,
            } => (
                "video",
                id.to_string(),
                PyBytes::new(py, &data),
                codec,
                timestamp_ms,
                rtp_timestamp,
                keyframe,
                sequence,
                complete,
            )
                .into_pyobject(py)?
                .into_any(),
            Event::Dtmf {
                id,
                digit,
                duration_ms,
            } => ("dtmf", id.to_string(), digit.to_string(), duration_ms)
                .into_pyobject(py)?
                .into_any(),
            Event::Ended { id, reason } => ("ended", id.to_string(), reason)
                .into_pyobject(py)?
                .into_any(),
            Event::Keyframe { id, fir } => ("keyframe", id.to_string(), fir)
                .into_pyobject(py)?
                .into_any(),
            Event::Call(info, key) => ("call", info.id.to_string(), info_dict(py, &info)?, key)
                .into_pyobject(py)?
                .into_any(),
            Event::Invite {
                call_id,
                caller,
                callee,
                caller_display_name,
                x_headers,
                source,
                offers_video,
            } => {
                let d = PyDict::new(py);
                d.set_item("call_id", call_id)?;
                d.set_item("caller", caller)?;
                d.set_item("callee", callee)?;
                d.set_item("caller_display_name", caller_display_name)?;
                d.set_item("x_headers", x_headers)?;
                d.set_item("source", source)?;
                d.set_item("offers_video", offers_video)?;
                ("invite", py.None(), d).into_pyobject(py)?.into_any()
            }
            Event::Trace {
                outbound,
                peer,
                data,
            } => ("trace", py.None(), outbound, peer, PyBytes::new(py, &data))
                .into_pyobject(py)?
                .into_any(),
            Event::CallState {
                id,
                state,
                status,
                reason,
            } => ("call_state", id.to_string(), state, status, reason)
                .into_pyobject(py)?
                .into_any(),
            Event::Registration {
                id,
                state,
                status,
                reason,
                expires,
            } => ("registration", id, state, status, reason, expires)
                .into_pyobject(py)?
                .into_any(),
        };
        out.push(t);
    }
    Ok(out)
}

/// `count` H.264 pictures (Annex-B) of a small decodable test clip, key picture first, with
/// whether each is a key picture: real video for tests without an encoder.
#[pyfunction]
#[pyo3(signature = (count, width=64, height=48, gop=10))]
fn test_clip<'py>(
    py: Python<'py>,
    count: usize,
    width: usize,
    height: usize,
    gop: u32,
) -> Vec<(Bound<'py, PyBytes>, bool)> {
    let mut clip = TestClip::new(width, height, gop);
    (0..count)
        .map(|_| {
            let (data, key) = clip.next_picture();
            (PyBytes::new(py, &data), key)
        })
        .collect()
}

/// The native half of roomkit_media.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<MediaCore>()?;
    m.add_class::<RtpCore>()?;
    m.add_class::<sip::SipCore>()?;
    m.add_function(wrap_pyfunction!(test_clip, m)?)?;
    Ok(())
}
