//! Callback registration: C function pointers plus `user_data`, wrapped as the engine's Rust
//! callbacks.
//!
//! Callbacks run on the backend's callback threads (never on a socket thread). Everything they
//! receive by pointer lives on the calling Rust frame and is valid only until they return.

use std::ffi::{c_char, c_void, CString};
use std::sync::Arc;

use super::args::SessionIdText;
use super::backend::{backend_arg, rkm_backend};
use super::status::{boundary, rkm_status, FfiResult};
use crate::engine::event::{
    AudioCallback, DtmfCallback, KeyframeCallback, SessionCallback, TargetBitrateCallback,
    VideoCallback,
};
use crate::engine::{EndReason, KeyframeRequest, SessionId, SessionInfo};
use crate::frame::{AudioFrame, DtmfEvent, VideoCodec, VideoFrame};
use crate::rtp::bwe::RateReason;

/// The application's `user_data`, handed back to its callbacks.
///
/// Registering a callback is the C caller's promise that `user_data` may be used from the
/// callback threads, which is what makes these impls sound.
#[derive(Clone, Copy)]
pub(crate) struct UserData(*mut c_void);

// SAFETY: the library never dereferences the pointer; it only passes it back to the caller's
// callback, and the caller has declared (by registering) that this is fine from any thread.
unsafe impl Send for UserData {}
// SAFETY: as for Send; the pointer is only copied, never used through a shared reference.
unsafe impl Sync for UserData {}

impl UserData {
    pub(crate) fn new(p: *mut c_void) -> UserData {
        UserData(p)
    }

    /// The pointer. A method, so closures capture the whole `UserData` (which is Send) rather
    /// than its raw-pointer field.
    pub(crate) fn get(self) -> *mut c_void {
        self.0
    }
}

/// A string for a callback argument; NUL bytes (impossible in ids and addresses, possible in
/// names taken from the network) become spaces.
pub(crate) fn c_text(s: &str) -> CString {
    CString::new(s.replace('\0', " ")).unwrap_or_default()
}

/// A received video frame, as the `video_received` callback sees it. Every pointer in it is
/// valid only until the callback returns: copy what you keep.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct rkm_video_frame {
    /// The frame: an Annex-B access unit, one raw NAL unit (`RKM_DELIVERY_NAL_UNIT`), or a VP8
    /// frame.
    pub data: *const u8,
    /// Bytes at `data`.
    pub len: usize,
    /// `"h264"` or `"vp8"`.
    pub codec: *const c_char,
    /// Presentation time in milliseconds since the session's first video packet (the RTP
    /// timestamp unwrapped and divided by the clock rate).
    pub timestamp_ms: f64,
    /// The RTP timestamp as it arrived.
    pub rtp_timestamp: u32,
    /// An IDR (H.264) or key frame (VP8) is in this frame.
    pub keyframe: bool,
    /// Frames delivered on this session before this one (starts at 0).
    pub sequence: u64,
    /// False only when the backend delivers damaged pictures (`deliver_incomplete`) and this
    /// one lost packets.
    pub complete: bool,
}

/// Received audio, decoded to 16-bit PCM at `sample_rate` (PCMU, PCMA, G.722 and Opus; the
/// config's `audio_sample_rate` decides the rate). `pcm` is valid only until the callback
/// returns.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct rkm_audio_frame {
    /// Interleaved samples, native endianness.
    pub pcm: *const i16,
    /// Samples at `pcm` (all channels together).
    pub samples: usize,
    /// Samples per second (per channel).
    pub sample_rate: u32,
    /// Channels (1 for the codecs the engine decodes).
    pub channels: u16,
    /// The RTP timestamp of the packet the audio came in.
    pub rtp_timestamp: u32,
    /// The RTP payload type the audio came with.
    pub payload_type: u8,
    /// The RTP payload as it arrived. For PCMU, PCMA, G.722 and Opus `pcm` holds it decoded;
    /// for any other format `samples` is 0 and this is the only copy, for the application's
    /// own decoder.
    pub payload: *const u8,
    /// Bytes at `payload`.
    pub payload_len: usize,
    /// True when the jitter buffer made this audio up for a lost or late packet (`pcm` then
    /// holds concealment, `payload` is empty). Always false without a jitter buffer.
    pub concealed: bool,
}

/// A session, as the `session_ready`, `video_session_ready` and `client_disconnected` callbacks
/// see it. Every string is NUL-terminated and valid only until the callback returns.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct rkm_session_info {
    /// The session id (`RKM_SESSION_ID_LEN - 1` characters), as the other calls take it.
    pub session_id: *const c_char,
    /// The room given to `rkm_connect` (for SIP calls: `X-Room-ID`, else the Call-ID).
    pub room_id: *const c_char,
    /// The participant given to `rkm_connect` (for SIP calls: the caller).
    pub participant_id: *const c_char,
    /// Local audio RTP address, `"ip:port"`.
    pub local_addr: *const c_char,
    /// Where audio RTP is sent.
    pub remote_addr: *const c_char,
    /// True when the session carries video.
    pub has_video: bool,
    /// Local video RTP address; NULL without video.
    pub video_local_addr: *const c_char,
    /// Where video RTP is sent; NULL without video.
    pub video_remote_addr: *const c_char,
    /// The PCM rate of `rkm_send_audio` and of received audio frames on this session (the
    /// config's `audio_sample_rate` applied to the session's codec; the clock rate for codecs
    /// the library passes through).
    pub audio_sample_rate: u32,
    /// Why the session ended (`client_disconnected` only): an `RKM_END_*` value;
    /// `RKM_END_NONE` in the other callbacks.
    pub end_reason: rkm_end_reason,
    /// The SRTP suite of the audio stream (`"AES_CM_128_HMAC_SHA1_80"`,
    /// `"AES_CM_128_HMAC_SHA1_32"`, `"AEAD_AES_128_GCM"`, static strings); NULL: plain RTP.
    pub audio_srtp: *const c_char,
    /// The SRTP suite of the video stream; NULL: plain RTP or no video.
    pub video_srtp: *const c_char,
}

/// Why a session ended: one of the `RKM_END_*` values (a plain integer: later versions may add
/// values, which a program should treat as "ended for another reason").
pub type rkm_end_reason = u32;

/// The session has not ended.
pub const RKM_END_NONE: rkm_end_reason = 0;
/// The application ended it (`rkm_disconnect`, `rkm_sip_hangup`...).
pub const RKM_END_LOCAL_HANGUP: rkm_end_reason = 1;
/// The far end hung up the SIP call (BYE, or CANCEL before the answer).
pub const RKM_END_REMOTE_HANGUP: rkm_end_reason = 2;
/// Nothing arrived from the peer for the inactivity timeout.
pub const RKM_END_RTP_TIMEOUT: rkm_end_reason = 3;
/// The peer left every stream, the last with RTCP BYE.
pub const RKM_END_RTCP_BYE: rkm_end_reason = 4;
/// The backend was freed with the session still up.
pub const RKM_END_SHUTDOWN: rkm_end_reason = 5;
/// Signalling failed (no answer to our request, session timer expired...).
pub const RKM_END_ERROR: rkm_end_reason = 6;
/// The media transport failed: a DTLS-SRTP handshake that failed, or ICE consent expired.
pub const RKM_END_TRANSPORT_FAILED: rkm_end_reason = 7;

/// The C value of an end reason.
fn end_reason_to_c(r: Option<EndReason>) -> rkm_end_reason {
    match r {
        None => RKM_END_NONE,
        Some(EndReason::LocalHangup) => RKM_END_LOCAL_HANGUP,
        Some(EndReason::RemoteHangup) => RKM_END_REMOTE_HANGUP,
        Some(EndReason::RtpTimeout) => RKM_END_RTP_TIMEOUT,
        Some(EndReason::RtcpBye) => RKM_END_RTCP_BYE,
        Some(EndReason::Shutdown) => RKM_END_SHUTDOWN,
        Some(EndReason::Error) => RKM_END_ERROR,
        Some(EndReason::TransportFailed) => RKM_END_TRANSPORT_FAILED,
    }
}

/// Which RTCP message asked for a key frame.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum rkm_keyframe_kind {
    /// Picture Loss Indication (RFC 4585).
    RKM_KEYFRAME_PLI = 0,
    /// Full Intra Request (RFC 5104).
    RKM_KEYFRAME_FIR = 1,
}

/// Why congestion control's target bitrate changed.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum rkm_rate_reason {
    /// The start bitrate: no feedback yet.
    RKM_RATE_INITIAL = 0,
    /// The delay-based estimate (rising, or cut because queues grow on the path).
    RKM_RATE_DELAY = 1,
    /// The loss-based bound (more than 10 % of packets lost).
    RKM_RATE_LOSS = 2,
    /// The receiver's REMB.
    RKM_RATE_REMB = 3,
    /// A probe (a short burst above the estimate) showed the path carries more.
    RKM_RATE_PROBE = 4,
}

/// Called when congestion control moved its estimate of a session's video path by more than
/// 5 %: `bps` is the bitrate (bits per second) to point the encoder at. `session_id` is valid
/// only during the call.
pub type rkm_target_bitrate_cb = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        session_id: *const c_char,
        bps: u64,
        reason: rkm_rate_reason,
    ),
>;

/// Called with each received video frame (see `rkm_video_frame`). `session_id` and `frame` are
/// valid only during the call.
pub type rkm_video_received_cb = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        session_id: *const c_char,
        frame: *const rkm_video_frame,
    ),
>;

/// Called with each block of received audio (one RTP packet's worth). Pointers are valid only
/// during the call.
pub type rkm_audio_received_cb = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        session_id: *const c_char,
        frame: *const rkm_audio_frame,
    ),
>;

/// Called once per received DTMF digit (`0`-`9`, `*`, `#`, `A`-`D`), when it ends.
pub type rkm_dtmf_received_cb = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        session_id: *const c_char,
        digit: c_char,
        duration_ms: u32,
    ),
>;

/// Called when a session has been created (before any of its media is delivered).
pub type rkm_session_ready_cb =
    Option<unsafe extern "C" fn(user_data: *mut c_void, info: *const rkm_session_info)>;

/// Called when a session's video stream is up (right after `session_ready`, on video sessions).
pub type rkm_video_session_ready_cb =
    Option<unsafe extern "C" fn(user_data: *mut c_void, info: *const rkm_session_info)>;

/// Called when a session has ended (after its last media), whoever ended it.
pub type rkm_client_disconnected_cb =
    Option<unsafe extern "C" fn(user_data: *mut c_void, info: *const rkm_session_info)>;

/// Called when the remote asks for a key frame: make your encoder emit one.
pub type rkm_keyframe_requested_cb = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        session_id: *const c_char,
        kind: rkm_keyframe_kind,
    ),
>;

/// The strings of an `rkm_session_info`, owned while the callback runs.
struct SessionInfoText {
    id: SessionIdText,
    room: CString,
    participant: CString,
    local: CString,
    remote: CString,
    video_local: Option<CString>,
    video_remote: Option<CString>,
    end_reason: rkm_end_reason,
    sample_rate: u32,
    audio_srtp: *const c_char,
    video_srtp: *const c_char,
}

/// The static C name of an SRTP suite; NULL for plain RTP.
fn srtp_name(s: Option<crate::SrtpSuite>) -> *const c_char {
    match s {
        None => std::ptr::null(),
        Some(crate::SrtpSuite::AesCm128HmacSha1_80) => c"AES_CM_128_HMAC_SHA1_80".as_ptr(),
        Some(crate::SrtpSuite::AesCm128HmacSha1_32) => c"AES_CM_128_HMAC_SHA1_32".as_ptr(),
        Some(crate::SrtpSuite::AeadAes128Gcm) => c"AEAD_AES_128_GCM".as_ptr(),
        Some(crate::SrtpSuite::AeadAes256Gcm) => c"AEAD_AES_256_GCM".as_ptr(),
    }
}

impl SessionInfoText {
    fn new(s: &SessionInfo) -> SessionInfoText {
        // Every field named (no `..`): a field added to `SessionInfo` does not compile until it
        // is either given to C here or listed as left out on purpose. Left out: the metadata
        // (SIP details reach C through `rkm_call_info`). Of each stream C gets the RTP
        // addresses and the audio PCM rate here; `rkm_session_addresses` has the RTCP ones.
        let SessionInfo {
            id,
            room_id,
            participant_id,
            metadata: _,
            audio,
            video,
            video_metadata: _,
            end_reason,
        } = s;
        SessionInfoText {
            id: SessionIdText::new(*id),
            room: c_text(room_id),
            participant: c_text(participant_id),
            local: c_text(&audio.local_addr.to_string()),
            remote: c_text(&audio.remote_addr.to_string()),
            video_local: video.as_ref().map(|v| c_text(&v.local_addr.to_string())),
            video_remote: video.as_ref().map(|v| c_text(&v.remote_addr.to_string())),
            end_reason: end_reason_to_c(*end_reason),
            sample_rate: audio.sample_rate,
            audio_srtp: srtp_name(audio.srtp_suite),
            video_srtp: srtp_name(video.as_ref().and_then(|v| v.srtp_suite)),
        }
    }

    /// The C view; borrows `self`.
    fn view(&self) -> rkm_session_info {
        rkm_session_info {
            session_id: self.id.as_ptr(),
            room_id: self.room.as_ptr(),
            participant_id: self.participant.as_ptr(),
            local_addr: self.local.as_ptr(),
            remote_addr: self.remote.as_ptr(),
            has_video: self.video_local.is_some(),
            video_local_addr: self
                .video_local
                .as_ref()
                .map_or(std::ptr::null(), |c| c.as_ptr()),
            video_remote_addr: self
                .video_remote
                .as_ref()
                .map_or(std::ptr::null(), |c| c.as_ptr()),
            end_reason: self.end_reason,
            audio_sample_rate: self.sample_rate,
            audio_srtp: self.audio_srtp,
            video_srtp: self.video_srtp,
        }
    }
}

fn codec_name(c: VideoCodec) -> *const c_char {
    match c {
        VideoCodec::H264 => c"h264".as_ptr(),
        VideoCodec::Vp8 => c"vp8".as_ptr(),
        // Unreachable today: `VideoCodec` is `#[non_exhaustive]` and lives in
        // roomkit-media-proto, so the compiler asks for this arm. A new codec must be named above.
        _ => c"unknown".as_ptr(),
    }
}

type SessionFn = unsafe extern "C" fn(*mut c_void, *const rkm_session_info);

/// Wraps a session-event C callback.
fn session_callback(cb: Option<SessionFn>, user_data: *mut c_void) -> Option<SessionCallback> {
    let ud = UserData(user_data);
    cb.map(|f| {
        Arc::new(move |s: &SessionInfo| {
            let text = SessionInfoText::new(s);
            let view = text.view();
            // SAFETY: the registrant declared `f` callable from the callback threads with its
            // `user_data`; `view` and the strings it points to outlive the call.
            unsafe { f(ud.get(), &view) }
        }) as SessionCallback
    })
}

/// Runs `register` on the backend `b`: the common frame of every `rkm_on_*` function.
fn register(
    name: &str,
    b: *mut rkm_backend,
    register: impl FnOnce(&rkm_backend) -> FfiResult<()>,
) -> rkm_status {
    boundary(name, || {
        // SAFETY: `b` is NULL or a live backend, as every caller of rkm_on_* promises.
        let be = unsafe { backend_arg(b) }?;
        register(be)?;
        Ok(rkm_status::RKM_OK)
    })
}

/// Registers `cb` for received video frames, replacing any earlier one; NULL `cb` removes it.
/// `cb` runs on a callback thread of the backend with `user_data`, which must stay usable from
/// that thread until the callback is replaced or the backend freed. Inside it, `rkm_send_*`,
/// `rkm_request_keyframe`, `rkm_connect` and `rkm_disconnect` may be called; `rkm_backend_free`
/// may not. A slow callback delays the session's later events, never the sockets (events beyond
/// the queue are dropped and counted). `RKM_ERR_UNSUPPORTED` on a voice backend.
#[no_mangle]
pub extern "C" fn rkm_on_video_received(
    b: *mut rkm_backend,
    cb: rkm_video_received_cb,
    user_data: *mut c_void,
) -> rkm_status {
    register("rkm_on_video_received", b, |be| {
        be.require_video()?;
        let ud = UserData(user_data);
        let wrapped = cb.map(|f| {
            Arc::new(move |id: SessionId, fr: &VideoFrame| {
                let sid = SessionIdText::new(id);
                let view = rkm_video_frame {
                    data: fr.data.as_ptr(),
                    len: fr.data.len(),
                    codec: codec_name(fr.codec),
                    timestamp_ms: fr.timestamp_ms,
                    rtp_timestamp: fr.rtp_timestamp,
                    keyframe: fr.keyframe,
                    sequence: fr.sequence,
                    complete: fr.complete,
                };
                // SAFETY: the registrant declared `f` callable from the callback threads with
                // its `user_data`; `sid`, `view` and the frame bytes outlive the call.
                unsafe { f(ud.get(), sid.as_ptr(), &view) }
            }) as VideoCallback
        });
        *be.callbacks().video.write() = wrapped;
        Ok(())
    })
}

/// Registers `cb` for received audio (decoded PCM), replacing any earlier one; NULL removes it.
/// Threads, `user_data` and what may be called inside: as `rkm_on_video_received`.
#[no_mangle]
pub extern "C" fn rkm_on_audio_received(
    b: *mut rkm_backend,
    cb: rkm_audio_received_cb,
    user_data: *mut c_void,
) -> rkm_status {
    register("rkm_on_audio_received", b, |be| {
        let ud = UserData(user_data);
        let wrapped = cb.map(|f| {
            Arc::new(move |id: SessionId, fr: &AudioFrame| {
                let sid = SessionIdText::new(id);
                let view = rkm_audio_frame {
                    pcm: fr.pcm.as_ptr(),
                    samples: fr.pcm.len(),
                    sample_rate: fr.sample_rate,
                    channels: fr.channels,
                    rtp_timestamp: fr.rtp_timestamp,
                    payload_type: fr.payload_type,
                    payload: fr.payload.as_ptr(),
                    payload_len: fr.payload.len(),
                    concealed: fr.concealed,
                };
                // SAFETY: as in rkm_on_video_received: `f` is callable here and every pointer
                // outlives the call.
                unsafe { f(ud.get(), sid.as_ptr(), &view) }
            }) as AudioCallback
        });
        *be.callbacks().audio.write() = wrapped;
        Ok(())
    })
}

/// Registers `cb` for received DTMF digits, replacing any earlier one; NULL removes it. Threads,
/// `user_data` and what may be called inside: as `rkm_on_video_received`.
#[no_mangle]
pub extern "C" fn rkm_on_dtmf_received(
    b: *mut rkm_backend,
    cb: rkm_dtmf_received_cb,
    user_data: *mut c_void,
) -> rkm_status {
    register("rkm_on_dtmf_received", b, |be| {
        let ud = UserData(user_data);
        let wrapped = cb.map(|f| {
            Arc::new(move |id: SessionId, ev: DtmfEvent| {
                let sid = SessionIdText::new(id);
                // DTMF digits are ASCII, so the cast keeps them.
                let digit = ev.digit as u8 as c_char;
                // SAFETY: as in rkm_on_video_received.
                unsafe { f(ud.get(), sid.as_ptr(), digit, ev.duration_ms) }
            }) as DtmfCallback
        });
        *be.callbacks().dtmf.write() = wrapped;
        Ok(())
    })
}

/// Registers `cb` for new sessions, replacing any earlier one; NULL removes it. Threads,
/// `user_data` and what may be called inside: as `rkm_on_video_received`.
#[no_mangle]
pub extern "C" fn rkm_on_session_ready(
    b: *mut rkm_backend,
    cb: rkm_session_ready_cb,
    user_data: *mut c_void,
) -> rkm_status {
    register("rkm_on_session_ready", b, |be| {
        let wrapped = session_callback(cb, user_data);
        *be.callbacks().session_ready.write() = wrapped;
        Ok(())
    })
}

/// Registers `cb` for sessions whose video stream is up, replacing any earlier one; NULL removes
/// it. `RKM_ERR_UNSUPPORTED` on a voice backend. Otherwise as `rkm_on_video_received`.
#[no_mangle]
pub extern "C" fn rkm_on_video_session_ready(
    b: *mut rkm_backend,
    cb: rkm_video_session_ready_cb,
    user_data: *mut c_void,
) -> rkm_status {
    register("rkm_on_video_session_ready", b, |be| {
        be.require_video()?;
        let wrapped = session_callback(cb, user_data);
        *be.callbacks().video_session_ready.write() = wrapped;
        Ok(())
    })
}

/// Registers `cb` for ended sessions, replacing any earlier one; NULL removes it. It also runs
/// for the sessions `rkm_backend_free` ends, before that returns. Otherwise as
/// `rkm_on_video_received`.
#[no_mangle]
pub extern "C" fn rkm_on_client_disconnected(
    b: *mut rkm_backend,
    cb: rkm_client_disconnected_cb,
    user_data: *mut c_void,
) -> rkm_status {
    register("rkm_on_client_disconnected", b, |be| {
        let wrapped = session_callback(cb, user_data);
        *be.callbacks().disconnected.write() = wrapped;
        Ok(())
    })
}

/// Registers `cb` for key frame requests from the remote (RTCP PLI or FIR), replacing any
/// earlier one; NULL removes it. `RKM_ERR_UNSUPPORTED` on a voice backend. Otherwise as
/// `rkm_on_video_received`.
#[no_mangle]
pub extern "C" fn rkm_on_keyframe_requested(
    b: *mut rkm_backend,
    cb: rkm_keyframe_requested_cb,
    user_data: *mut c_void,
) -> rkm_status {
    register("rkm_on_keyframe_requested", b, |be| {
        be.require_video()?;
        let ud = UserData(user_data);
        let wrapped = cb.map(|f| {
            Arc::new(move |id: SessionId, kind: KeyframeRequest| {
                let sid = SessionIdText::new(id);
                let kind = match kind {
                    KeyframeRequest::Pli => rkm_keyframe_kind::RKM_KEYFRAME_PLI,
                    KeyframeRequest::Fir => rkm_keyframe_kind::RKM_KEYFRAME_FIR,
                    // Unreachable today (a `#[non_exhaustive]` enum of roomkit-media-proto): any
                    // other request still asks for a keyframe, which is what a PLI says.
                    _ => rkm_keyframe_kind::RKM_KEYFRAME_PLI,
                };
                // SAFETY: as in rkm_on_video_received.
                unsafe { f(ud.get(), sid.as_ptr(), kind) }
            }) as KeyframeCallback
        });
        *be.callbacks().keyframe.write() = wrapped;
        Ok(())
    })
}

/// Registers `cb` for congestion control's target bitrate (`resilience.congestion` on), called
/// whenever the estimate moves by more than 5 %, replacing any earlier one; NULL removes it.
/// `RKM_ERR_UNSUPPORTED` on a voice backend. Otherwise as `rkm_on_video_received`.
#[no_mangle]
pub extern "C" fn rkm_on_target_bitrate(
    b: *mut rkm_backend,
    cb: rkm_target_bitrate_cb,
    user_data: *mut c_void,
) -> rkm_status {
    register("rkm_on_target_bitrate", b, |be| {
        be.require_video()?;
        let ud = UserData(user_data);
        let wrapped = cb.map(|f| {
            Arc::new(move |id: SessionId, bps: u64, reason: RateReason| {
                let sid = SessionIdText::new(id);
                let reason = match reason {
                    RateReason::Initial => rkm_rate_reason::RKM_RATE_INITIAL,
                    RateReason::Delay => rkm_rate_reason::RKM_RATE_DELAY,
                    RateReason::Loss => rkm_rate_reason::RKM_RATE_LOSS,
                    RateReason::Remb => rkm_rate_reason::RKM_RATE_REMB,
                    RateReason::Probe => rkm_rate_reason::RKM_RATE_PROBE,
                };
                // SAFETY: as in rkm_on_video_received.
                unsafe { f(ud.get(), sid.as_ptr(), bps, reason) }
            }) as TargetBitrateCallback
        });
        *be.callbacks().target_bitrate.write() = wrapped;
        Ok(())
    })
}
