//! Backend configuration as C structs, the `*_init` functions that fill their defaults, and the
//! conversion to the Rust configuration.

use std::ffi::c_char;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::args::{opt_str_arg, out_arg, parse_addr};
use super::status::{boundary, Failure, FfiResult};
use crate::backend::{
    CongestionConfig, FecConfig, ResilienceConfig, RtpBackendConfig, SipBackendConfig,
    SipCredentials,
};
use crate::codec::h264::PacketizationMode;
use crate::codec::voice::AppRate;
use crate::frame::{Delivery, VideoCodec};
use crate::sdp::AudioCodec;

/// How received H.264 video is handed to the `video_received` callback: one of the
/// `RKM_DELIVERY_*` values. A plain integer type, so any value a C program stores is defined
/// behaviour; an unknown one is refused with `RKM_ERR_INVALID_ARGUMENT` when the backend is made.
pub type rkm_delivery = u32;

/// One frame per picture: Annex-B with a 4-byte start code before every NAL unit, complete
/// pictures only, ready for a decoder. The default.
pub const RKM_DELIVERY_ACCESS_UNIT: rkm_delivery = 0;
/// One frame per NAL unit, raw (no start code), as roomkit's Python backend delivers.
pub const RKM_DELIVERY_NAL_UNIT: rkm_delivery = 1;

/// How a backend's sessions cope with a real network: loss recovery, pacing, the audio jitter
/// buffer and liveness. Part of `rkm_rtp_config` and `rkm_sip_config`, filled by their `*_init`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct rkm_resilience {
    /// Ask for lost video packets with RTCP NACK and hold pictures for them (RFC 4585); default
    /// true. SIP calls also need the peer to agree to `nack` in SDP.
    pub nack: bool,
    /// Spread each video picture's packets over time so a large key picture never leaves as
    /// one burst; default true.
    pub pacing: bool,
    /// A hard cap on the paced video rate in kbit/s (at least 64); 0 (default): no cap.
    pub pacing_max_kbps: u32,
    /// Audio jitter buffer depth in milliseconds; 0 (default) delivers packets as they arrive.
    /// More plays audio out in order every 20 ms and conceals lost frames (`concealed` in
    /// `rkm_audio_frame`).
    pub audio_jitter_ms: u32,
    /// The most the jitter buffer may adapt up to, ms; 0 (default): max(4 × depth, 200).
    pub audio_jitter_max_ms: u32,
    /// A stream whose peer sends nothing (RTP or RTCP) this long is dead; the session ends
    /// (`end_reason` `RKM_END_RTP_TIMEOUT`) once all its streams are. 0 never; default 30000.
    pub inactivity_timeout_ms: u32,
    /// When a session ends, keep answering the peer's NACKs until our video has been idle this
    /// long (at most four times as long); default 0 (close at once).
    pub close_linger_ms: u32,
    /// Send-side congestion control of video (transport-wide CC); default false. Both ends must
    /// run it (SIP calls negotiate it: `transport-cc` and `a=extmap`). See
    /// `rkm_on_target_bitrate` and the `cc_*` fields of `rkm_stream_stats`.
    pub congestion: bool,
    /// The estimate's floor, start and ceiling in kbit/s (defaults 50, 300, 10000); the start
    /// and ceiling are kept within the floor and the ceiling.
    pub congestion_min_kbps: u32,
    pub congestion_start_kbps: u32,
    pub congestion_max_kbps: u32,
}

/// The C view of the shared resilience settings.
fn resilience_to_c(r: &ResilienceConfig) -> rkm_resilience {
    let ms = |d: Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
    let kbps = |bps: u64| u32::try_from(bps / 1000).unwrap_or(u32::MAX);
    rkm_resilience {
        nack: r.nack.enabled,
        pacing: r.pacer.enabled,
        pacing_max_kbps: r
            .pacer
            .max_rate
            .map_or(0, |bytes| (bytes * 8.0 / 1000.0).round() as u32),
        audio_jitter_ms: r.audio_jitter_ms,
        audio_jitter_max_ms: r.audio_jitter_max_ms,
        inactivity_timeout_ms: ms(r.inactivity_timeout),
        close_linger_ms: ms(r.close_linger),
        congestion: r.congestion.enabled,
        congestion_min_kbps: kbps(r.congestion.min_bps),
        congestion_start_kbps: kbps(r.congestion.start_bps),
        congestion_max_kbps: kbps(r.congestion.max_bps),
    }
}

/// The shared resilience settings an `rkm_resilience` describes (field names under `cfg.`).
fn resilience_from_c(c: &rkm_resilience) -> FfiResult<ResilienceConfig> {
    let mut r = ResilienceConfig::default();
    r.nack.enabled = c.nack;
    r.pacer.enabled = c.pacing;
    r.pacer.max_rate = match c.pacing_max_kbps {
        0 => None,
        k if k < 64 => {
            return Err(Failure::invalid(format!(
                "cfg.resilience.pacing_max_kbps = {k} is below 64 (0: no cap)"
            )))
        }
        k => Some(f64::from(k) * 1000.0 / 8.0),
    };
    if c.audio_jitter_ms > 10_000 || c.audio_jitter_max_ms > 10_000 {
        return Err(Failure::invalid(
            "cfg.resilience.audio_jitter_ms and audio_jitter_max_ms must be at most 10000",
        ));
    }
    r.audio_jitter_ms = c.audio_jitter_ms;
    r.audio_jitter_max_ms = c.audio_jitter_max_ms;
    r.inactivity_timeout = Duration::from_millis(u64::from(c.inactivity_timeout_ms));
    r.close_linger = Duration::from_millis(u64::from(c.close_linger_ms));
    if c.congestion_min_kbps == 0 || c.congestion_max_kbps == 0 {
        return Err(Failure::invalid(
            "cfg.resilience.congestion_min_kbps and congestion_max_kbps must be above 0",
        ));
    }
    r.congestion = CongestionConfig {
        enabled: c.congestion,
        min_bps: u64::from(c.congestion_min_kbps) * 1000,
        start_bps: u64::from(c.congestion_start_kbps) * 1000,
        max_bps: u64::from(c.congestion_max_kbps) * 1000,
        ..CongestionConfig::default()
    };
    Ok(r)
}

/// Settings of an RTP backend (`rkm_rtp_voice_backend_new`, `rkm_rtp_video_backend_new`).
///
/// Always fill it with `rkm_rtp_config_init` first, then change the fields you need. The strings
/// are borrowed only during the `*_new` call: the backend copies what it keeps.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct rkm_rtp_config {
    /// Where each session binds audio RTP, `"ip:port"`; port 0 picks a free port per session.
    /// NULL: `"0.0.0.0:0"`.
    pub local_addr: *const c_char,
    /// Where audio is sent, `"ip:port"`, unless `rkm_connect` names another address. NULL: unset.
    pub remote_addr: *const c_char,
    /// Where each session binds video RTP (video backends). NULL: `"0.0.0.0:0"`.
    pub video_local_addr: *const c_char,
    /// Where video is sent, unless `rkm_connect` names another address. NULL: unset.
    pub video_remote_addr: *const c_char,
    /// Audio payload type: 0 (PCMU, default) or 8 (PCMA) are encoded and decoded by the library.
    pub payload_type: u8,
    /// Video payload type, default 96.
    pub video_payload_type: u8,
    /// Audio clock rate in Hz, default 8000.
    pub clock_rate: u32,
    /// Video clock rate in Hz, default 90000.
    pub video_clock_rate: u32,
    /// Largest RTP payload sent, in bytes; default 1200.
    pub mtu: u16,
    /// How received H.264 is delivered; default `RKM_DELIVERY_ACCESS_UNIT`.
    pub delivery: rkm_delivery,
    /// Threads that run the callbacks (at least 1; default 1). Events of one session always run
    /// on the same thread, in order.
    pub callback_threads: u32,
    /// Events each callback thread may have queued before new ones are dropped and counted in the
    /// stats (`frames_dropped_slow_callback`); default 512. A thread serving many sessions may
    /// queue 16 per live session when that is more.
    pub callback_queue: u32,
    /// RFC 4733 telephone-event payload type, default 101; -1 disables DTMF.
    pub dtmf_payload_type: i16,
    /// Video codec, `"H264"` (default when NULL) or `"VP8"`, case-insensitive.
    pub video_codec: *const c_char,
    /// H.264 packetization mode used when sending: 1 (default: STAP-A and FU-A) or 0 (single NAL
    /// units only; a NAL unit larger than `mtu` is then an error).
    pub packetization_mode: u8,
    /// After a loss, hold non-key pictures back until a key frame arrives; default true.
    pub wait_for_keyframe: bool,
    /// Deliver damaged pictures (with `complete` false) instead of dropping them; default false.
    pub deliver_incomplete: bool,
    /// RTP and RTCP on one port (RFC 5761); default false (RTCP on port + 1).
    pub rtcp_mux: bool,
    /// Accept media from the first source seen and send back there (peers behind NAT);
    /// default false (only from the remote address).
    pub latch_to_first_source: bool,
    /// Nominal RTCP report interval in milliseconds (at least 1); default 5000.
    pub rtcp_interval_ms: u32,
    /// RTCP SDES CNAME. NULL: a random one per backend.
    pub cname: *const c_char,
    /// Loss recovery, pacing, audio jitter buffer and liveness.
    pub resilience: rkm_resilience,
    /// RTX (RFC 4588) payload type for video retransmissions, both ways (96..=127, not the video
    /// payload type); -1 (default): lost packets are re-sent as they were.
    pub rtx_payload_type: i16,
    /// The audio codec on `payload_type`, by name: `"PCMU"`, `"PCMA"`, `"G722"`, `"opus"` (the
    /// engine codes these; a codec sets its own RTP clock, 48000 for Opus), or another
    /// `"name/clock"` passed through. NULL (default): the codec of the static payload type
    /// (0 PCMU, 8 PCMA, 9 G.722 are coded; others passed through).
    pub audio_codec: *const c_char,
    /// The PCM rate of `rkm_send_audio` and of received audio frames: 0 (default) 16000 for
    /// G.722 and Opus and 8000 for G.711; `RKM_AUDIO_RATE_CODEC` (1) the codec's own rate
    /// (8000, 16000 for G.722, 48000 for Opus); or 8000, 12000, 16000, 24000, 32000 or 48000.
    pub audio_sample_rate: u32,
    /// Threads for RTP I/O: 0 (default) one thread per stream (lowest latency for a few
    /// calls); N > 0 (at most 1024) N shared threads, each waiting in `epoll` on the sockets of
    /// many streams (for many sessions).
    pub io_threads: u32,
    /// Forward error correction on video, both ways: ULPFEC (RFC 5109) in RED (RFC 2198) on
    /// `fec_red_payload_type` / `fec_ulpfec_payload_type`; default false. There is no SDP here:
    /// both ends must be configured alike.
    pub video_fec: bool,
    /// RED payload type of `video_fec` (0..=127, apart from the others); default 123.
    pub fec_red_payload_type: u8,
    /// ULPFEC payload type of `video_fec`; default 122.
    pub fec_ulpfec_payload_type: u8,
    /// Header-extension ID (1..=14) of the transport-wide sequence number when
    /// `resilience.congestion` is on; both ends alike. Default 3.
    pub transport_cc_id: u8,
}

/// `audio_sample_rate` value: 16 kHz for G.722 and Opus, 8 kHz for G.711.
pub const RKM_AUDIO_RATE_AUTO: u32 = 0;
/// `audio_sample_rate` value: the codec's own rate (8 kHz G.711, 16 kHz G.722, 48 kHz Opus).
pub const RKM_AUDIO_RATE_CODEC: u32 = 1;

/// `srtp` value of `rkm_sip_config`: plain RTP only; an `RTP/SAVP` offer is refused.
pub const RKM_SRTP_OFF: u32 = 0;
/// `srtp` value: offer RTP/AVP with SDES crypto lines; answer SRTP offers with SRTP, plain ones
/// plainly.
pub const RKM_SRTP_OPTIONAL: u32 = 1;
/// `srtp` value: offer RTP/SAVP only; a plain offer is refused with 488.
pub const RKM_SRTP_MANDATORY: u32 = 2;

/// The SRTP policy an `srtp` field describes, checked.
fn srtp_policy_from_c(value: u32) -> FfiResult<crate::SrtpPolicy> {
    match value {
        RKM_SRTP_OFF => Ok(crate::SrtpPolicy::Off),
        RKM_SRTP_OPTIONAL => Ok(crate::SrtpPolicy::Optional),
        RKM_SRTP_MANDATORY => Ok(crate::SrtpPolicy::Mandatory),
        other => Err(Failure::invalid(format!(
            "cfg.srtp = {other}: expected RKM_SRTP_OFF, RKM_SRTP_OPTIONAL or RKM_SRTP_MANDATORY"
        ))),
    }
}

/// The audio rate setting an `audio_sample_rate` field describes, checked.
fn app_rate_from_c(value: u32, name: &str) -> FfiResult<AppRate> {
    let rate = match value {
        RKM_AUDIO_RATE_AUTO => AppRate::Auto,
        RKM_AUDIO_RATE_CODEC => AppRate::Codec,
        hz => AppRate::Hz(hz),
    };
    rate.validate()
        .map_err(|e| Failure::invalid(format!("{name}: {e}")))?;
    Ok(rate)
}

/// Fills `cfg` with the defaults (those of roomkit's RTP backends): any local address and port,
/// no remote addresses, PCMU at 8000 Hz, telephone events on 101, H.264 on 96 at 90000 Hz, MTU
/// 1200, access-unit delivery, one callback thread. A NULL `cfg` is ignored (and recorded for
/// `rkm_last_error`). Any thread.
#[no_mangle]
pub extern "C" fn rkm_rtp_config_init(cfg: *mut rkm_rtp_config) {
    boundary("rkm_rtp_config_init", || {
        // SAFETY: the caller passes NULL or a pointer to writable storage for one config.
        let out = unsafe { out_arg(cfg, "cfg") }?;
        let d = RtpBackendConfig::default();
        let fec = d.video_fec.unwrap_or_default();
        *out = rkm_rtp_config {
            local_addr: std::ptr::null(),
            remote_addr: std::ptr::null(),
            video_local_addr: std::ptr::null(),
            video_remote_addr: std::ptr::null(),
            payload_type: d.payload_type,
            video_payload_type: d.video_payload_type,
            clock_rate: d.clock_rate,
            video_clock_rate: d.video_clock_rate,
            mtu: u16::try_from(d.mtu).unwrap_or(u16::MAX),
            delivery: RKM_DELIVERY_ACCESS_UNIT,
            callback_threads: u32::try_from(d.callback_threads).unwrap_or(1),
            callback_queue: u32::try_from(d.callback_queue).unwrap_or(u32::MAX),
            dtmf_payload_type: d.dtmf_payload_type.map_or(-1, i16::from),
            video_codec: std::ptr::null(),
            packetization_mode: 1,
            wait_for_keyframe: d.wait_for_keyframe,
            deliver_incomplete: d.deliver_incomplete,
            rtcp_mux: d.rtcp_mux,
            audio_codec: std::ptr::null(),
            audio_sample_rate: RKM_AUDIO_RATE_AUTO,
            latch_to_first_source: d.latch_to_first_source,
            rtcp_interval_ms: u32::try_from(d.rtcp_interval.as_millis()).unwrap_or(u32::MAX),
            cname: std::ptr::null(),
            resilience: resilience_to_c(&d.resilience),
            rtx_payload_type: d.rtx_payload_type.map_or(-1, i16::from),
            io_threads: u32::try_from(d.io_threads).unwrap_or(0),
            video_fec: d.video_fec.is_some(),
            fec_red_payload_type: fec.red_payload_type,
            fec_ulpfec_payload_type: fec.ulpfec_payload_type,
            transport_cc_id: d.transport_cc_id,
        };
        Ok(())
    })
}

pub(crate) fn delivery_from_c(d: rkm_delivery) -> FfiResult<Delivery> {
    match d {
        RKM_DELIVERY_ACCESS_UNIT => Ok(Delivery::AccessUnit),
        RKM_DELIVERY_NAL_UNIT => Ok(Delivery::NalUnit),
        other => Err(Failure::invalid(format!(
            "delivery = {other} is not an RKM_DELIVERY_* value"
        ))),
    }
}

/// An optional address field, already read: `None` (NULL) gives `default`.
fn addr_or(text: Option<&str>, name: &str, default: SocketAddr) -> FfiResult<SocketAddr> {
    match text {
        Some(s) => parse_addr(s, name),
        None => Ok(default),
    }
}

/// An optional address field, already read: `None` (NULL) stays unset.
fn opt_addr(text: Option<&str>, name: &str) -> FfiResult<Option<SocketAddr>> {
    text.map(|s| parse_addr(s, name)).transpose()
}

/// Reads an optional string field of a config.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string valid for the call (what the `*_from_c` callers
/// guarantee for every string field).
unsafe fn field<'a>(p: *const c_char, name: &str) -> FfiResult<Option<&'a str>> {
    // SAFETY: forwarded from the caller's guarantee.
    unsafe { opt_str_arg(p, name) }
}

/// The Rust configuration an `rkm_rtp_config` describes.
///
/// # Safety
/// Every string field is NULL or a NUL-terminated string valid for the call.
pub(crate) unsafe fn rtp_config_from_c(c: &rkm_rtp_config) -> FfiResult<RtpBackendConfig> {
    // SAFETY: this function's caller guarantees every string field of `c` is NULL or a valid
    // C string for the call, and `text` is only given those fields.
    let text = |p: *const c_char, name: &str| unsafe { field(p, name) };
    let mut r = RtpBackendConfig::default();
    r.local_addr = addr_or(
        text(c.local_addr, "cfg.local_addr")?,
        "cfg.local_addr",
        r.local_addr,
    )?;
    r.video_local_addr = addr_or(
        text(c.video_local_addr, "cfg.video_local_addr")?,
        "cfg.video_local_addr",
        r.video_local_addr,
    )?;
    r.remote_addr = opt_addr(text(c.remote_addr, "cfg.remote_addr")?, "cfg.remote_addr")?;
    r.video_remote_addr = opt_addr(
        text(c.video_remote_addr, "cfg.video_remote_addr")?,
        "cfg.video_remote_addr",
    )?;
    r.payload_type = c.payload_type;
    r.video_payload_type = c.video_payload_type;
    r.clock_rate = c.clock_rate;
    r.video_clock_rate = c.video_clock_rate;
    if c.mtu < 64 {
        return Err(Failure::invalid(format!(
            "cfg.mtu = {} is too small (at least 64)",
            c.mtu
        )));
    }
    r.mtu = usize::from(c.mtu);
    r.delivery = delivery_from_c(c.delivery)?;
    if c.callback_threads == 0 {
        return Err(Failure::invalid("cfg.callback_threads must be at least 1"));
    }
    r.callback_threads = c.callback_threads as usize;
    if c.callback_queue == 0 {
        return Err(Failure::invalid("cfg.callback_queue must be at least 1"));
    }
    r.callback_queue = c.callback_queue as usize;
    r.dtmf_payload_type = match c.dtmf_payload_type {
        -1 => None,
        pt @ 0..=127 => Some(pt as u8),
        other => {
            return Err(Failure::invalid(format!(
                "cfg.dtmf_payload_type = {other} is not -1 or 0..=127"
            )))
        }
    };
    r.video_codec = match text(c.video_codec, "cfg.video_codec")? {
        None => VideoCodec::H264,
        Some(name) => VideoCodec::from_name(name).ok_or_else(|| {
            Failure::invalid(format!("cfg.video_codec = {name:?} is not H264 or VP8"))
        })?,
    };
    r.packetization_mode = match c.packetization_mode {
        0 => PacketizationMode::SingleNal,
        1 => PacketizationMode::NonInterleaved,
        other => {
            return Err(Failure::invalid(format!(
                "cfg.packetization_mode = {other} is not 0 or 1"
            )))
        }
    };
    r.wait_for_keyframe = c.wait_for_keyframe;
    r.deliver_incomplete = c.deliver_incomplete;
    r.rtcp_mux = c.rtcp_mux;
    r.latch_to_first_source = c.latch_to_first_source;
    if c.rtcp_interval_ms == 0 {
        return Err(Failure::invalid("cfg.rtcp_interval_ms must be at least 1"));
    }
    r.rtcp_interval = Duration::from_millis(u64::from(c.rtcp_interval_ms));
    r.cname = text(c.cname, "cfg.cname")?.map(str::to_owned);
    r.resilience = resilience_from_c(&c.resilience)?;
    r.rtx_payload_type = match c.rtx_payload_type {
        -1 => None,
        pt @ 96..=127 if pt != i16::from(c.video_payload_type) => Some(pt as u8),
        other => {
            return Err(Failure::invalid(format!(
                "cfg.rtx_payload_type = {other} is not -1 or 96..=127 apart from the video's"
            )))
        }
    };
    r.audio_codec = match text(c.audio_codec, "cfg.audio_codec")? {
        None => None,
        Some(name) => Some(AudioCodec::from_name(name).ok_or_else(|| {
            Failure::invalid(format!(
                "cfg.audio_codec = {name:?} is not a codec (PCMU, PCMA, G722, opus, name/clock)"
            ))
        })?),
    };
    r.audio_sample_rate = app_rate_from_c(c.audio_sample_rate, "cfg.audio_sample_rate")?;
    r.io_threads = c.io_threads as usize;
    // Payload types and the extension ID are checked where the backend is built, with the
    // Rust field names; the C names match them but for the `fec_` prefix.
    r.video_fec = c.video_fec.then(|| FecConfig {
        red_payload_type: c.fec_red_payload_type,
        ulpfec_payload_type: c.fec_ulpfec_payload_type,
        ..FecConfig::default()
    });
    r.transport_cc_id = c.transport_cc_id;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::MaybeUninit;

    fn defaults() -> rkm_rtp_config {
        let mut c = MaybeUninit::<rkm_rtp_config>::uninit();
        rkm_rtp_config_init(c.as_mut_ptr());
        // SAFETY: rkm_rtp_config_init wrote every field.
        unsafe { c.assume_init() }
    }

    #[test]
    fn defaults_convert_to_the_rust_defaults() {
        let c = defaults();
        // SAFETY: every string field of the defaults is NULL.
        let r = unsafe { rtp_config_from_c(&c) }.unwrap();
        let d = RtpBackendConfig::default();
        assert_eq!(r.local_addr, d.local_addr);
        assert_eq!(r.remote_addr, None);
        assert_eq!(r.payload_type, 0);
        assert_eq!(r.video_payload_type, 96);
        assert_eq!(r.video_clock_rate, 90_000);
        assert_eq!(r.mtu, 1200);
        assert_eq!(r.delivery, Delivery::AccessUnit);
        assert_eq!(r.dtmf_payload_type, Some(101));
        assert_eq!(r.rtcp_interval, d.rtcp_interval);
        assert_eq!(r.resilience, d.resilience);
        assert_eq!(r.rtx_payload_type, None);
        assert_eq!(r.video_fec, None);
        assert_eq!(r.transport_cc_id, d.transport_cc_id);
        let mut c = c;
        c.video_fec = true;
        c.fec_red_payload_type = 100;
        // SAFETY: as above.
        let r = unsafe { rtp_config_from_c(&c) }.unwrap();
        let fec = r.video_fec.unwrap();
        assert_eq!((fec.red_payload_type, fec.ulpfec_payload_type), (100, 122));
    }

    #[test]
    fn resilience_settings_convert_and_bad_ones_are_refused() {
        let mut c = defaults();
        c.resilience.nack = false;
        c.resilience.pacing_max_kbps = 2000;
        c.resilience.audio_jitter_ms = 60;
        c.resilience.inactivity_timeout_ms = 0;
        c.resilience.close_linger_ms = 1500;
        c.rtx_payload_type = 97;
        // SAFETY: every string field is NULL.
        let r = unsafe { rtp_config_from_c(&c) }.unwrap();
        assert!(!r.resilience.nack.enabled);
        assert_eq!(r.resilience.pacer.max_rate, Some(250_000.0));
        assert_eq!(r.resilience.audio_jitter_ms, 60);
        assert_eq!(r.resilience.inactivity_timeout, Duration::ZERO);
        assert_eq!(r.resilience.close_linger, Duration::from_millis(1500));
        assert_eq!(r.rtx_payload_type, Some(97));
        c.rtx_payload_type = 96;
        // SAFETY: as above.
        let e = unsafe { rtp_config_from_c(&c) }.unwrap_err();
        assert!(e.message.contains("rtx_payload_type"), "{}", e.message);
        let mut c = defaults();
        c.resilience.pacing_max_kbps = 10;
        // SAFETY: as above.
        let e = unsafe { rtp_config_from_c(&c) }.unwrap_err();
        assert!(e.message.contains("pacing_max_kbps"), "{}", e.message);
    }

    #[test]
    fn bad_values_name_their_field() {
        let mut c = defaults();
        c.delivery = 7;
        // SAFETY: string fields are NULL.
        let e = unsafe { rtp_config_from_c(&c) }.unwrap_err();
        assert!(e.message.contains("delivery"));
        let mut c = defaults();
        c.remote_addr = c"not an address".as_ptr();
        // SAFETY: remote_addr points to a static C string, the others are NULL.
        let e = unsafe { rtp_config_from_c(&c) }.unwrap_err();
        assert!(e.message.contains("cfg.remote_addr"), "{}", e.message);
    }
}

/// Settings of a SIP backend (`rkm_sip_voice_backend_new`, `rkm_sip_video_backend_new`).
///
/// Always fill it with `rkm_sip_config_init` first, then change the fields you need. The strings
/// are borrowed only during the `*_new` call; NULL in a string field means its default.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct rkm_sip_config {
    /// Where the SIP socket binds (UDP), `"ip:port"`; default `"0.0.0.0:5060"`. Port 0 picks a
    /// free port (read it back with `rkm_sip_local_addr`).
    pub local_sip_addr: *const c_char,
    /// Where RTP sockets bind, an IP address; default `"0.0.0.0"`.
    pub local_rtp_ip: *const c_char,
    /// The IP address written in SDP and Contact when it differs from the bound one (NAT).
    /// NULL (default): the bound address.
    pub advertised_ip: *const c_char,
    /// RTP port range, inclusive; default 10000-20000. Each stream takes an even port and the
    /// odd one above it for RTCP.
    pub rtp_port_start: u16,
    pub rtp_port_end: u16,
    /// Audio codecs offered and accepted, comma-separated, ours preferred first when we offer
    /// (the offerer's order decides when we answer). Default `"opus,G722,PCMU,PCMA"`: the four
    /// the engine encodes and decodes. Others are passed through undecoded:
    /// `name/clock[/channels]`.
    pub supported_codecs: *const c_char,
    /// Video codecs accepted by a video backend, comma-separated; default `"H264"`, also
    /// `"VP8"` or `"H264,VP8"`.
    pub supported_video_codecs: *const c_char,
    /// Most simultaneous calls (ringing and dialed included), 0 = no limit (default); beyond it
    /// callers get 503 Service Unavailable with `Retry-After`.
    pub max_sessions: u32,
    /// Digest authentication of incoming calls: with `auth_user` set, INVITEs must
    /// authenticate as that user with `auth_password`. NULL (default): no authentication.
    pub auth_user: *const c_char,
    pub auth_password: *const c_char,
    /// Digest realm; default `"roomkit"`.
    pub auth_realm: *const c_char,
    /// `Server`/`User-Agent` header and SDP session name; default `"roomkit-media"`.
    pub user_agent: *const c_char,
    /// Ring time between 180 Ringing and 200 OK in milliseconds; default 0.
    pub answer_after_ms: u32,
    /// Send media back to where the caller's media comes from (peers behind NAT); default true.
    pub symmetric_rtp: bool,
    /// Largest RTP payload sent, bytes; default 1200.
    pub mtu: u16,
    /// How received H.264 is delivered; default `RKM_DELIVERY_ACCESS_UNIT`.
    pub delivery: rkm_delivery,
    /// After a loss, hold non-key pictures back until a key frame arrives; default true.
    pub wait_for_keyframe: bool,
    /// Nominal RTCP report interval in milliseconds; default 5000.
    pub rtcp_interval_ms: u32,
    /// Threads that run the media callbacks (at least 1; default 1). `call` callbacks run on a
    /// separate SIP callback thread.
    pub callback_threads: u32,
    /// Events each callback thread may have queued before new ones are dropped; default 512 (or
    /// 16 per live session of the thread when that is more).
    pub callback_queue: u32,
    /// Our credentials as a client: what `rkm_register` and `rkm_dial` answer 401/407
    /// challenges with unless their options name others. NULL (default): none.
    pub client_auth_user: *const c_char,
    pub client_auth_password: *const c_char,
    /// An outbound proxy (`"ip:port"`) every dialed call and registration goes through,
    /// unless its options name another. NULL (default): none.
    pub outbound_proxy: *const c_char,
    /// The user part of our Contact and of dialed calls' From; default `"roomkit"`.
    pub user: *const c_char,
    /// Session timers: the interval in seconds asked for when dialing (0 = none; default
    /// 1800). Incoming calls' requests are honoured either way.
    pub session_expires: u32,
    /// How long a dialed call may ring before it is cancelled, in milliseconds; default 60000.
    pub ring_timeout_ms: u32,
    /// The `Retry-After` in seconds of the 503 sent beyond `max_sessions`; default 10.
    pub retry_after_s: u32,
    /// Loss recovery, pacing, audio jitter buffer and liveness (a call whose peer left is hung
    /// up with BYE). `nack` also decides whether NACK is offered and accepted in SDP.
    pub resilience: rkm_resilience,
    /// Offer and accept an RTX retransmission stream for video (RFC 4588, with `nack` only);
    /// default true.
    pub video_rtx: bool,
    /// The PCM rate of `rkm_send_audio` and of received audio frames: 0 (default) 16000 when
    /// the call negotiated G.722 or Opus and 8000 for G.711; `RKM_AUDIO_RATE_CODEC` (1) the
    /// codec's own rate (8000, 16000 for G.722, 48000 for Opus); or 8000, 12000, 16000, 24000,
    /// 32000 or 48000.
    pub audio_sample_rate: u32,
    /// SRTP with SDES keys on audio and video: `RKM_SRTP_OFF` (default), `RKM_SRTP_OPTIONAL`
    /// or `RKM_SRTP_MANDATORY`.
    pub srtp: u32,
    /// Where to listen for SIP over TCP (`"ip:port"`, port 0: any free one). NULL (default):
    /// no TCP listener (TCP peers can still be called: `;transport=tcp`).
    pub local_sip_tcp_addr: *const c_char,
    /// Where to listen for SIP over TLS; needs `tls_cert` and `tls_key`. NULL (default): none.
    pub local_sip_tls_addr: *const c_char,
    /// Our TLS certificate chain, a PEM file path. NULL (default): none.
    pub tls_cert: *const c_char,
    /// The private key of `tls_cert`, a PEM file path. NULL (default): none.
    pub tls_key: *const c_char,
    /// The CA certificates (PEM file path) the TLS servers we call must chain to. NULL
    /// (default): the system's root certificates.
    pub tls_ca: *const c_char,
    /// Check the certificates of the TLS servers we call; default true. **false is unsafe**
    /// (any certificate is accepted): for tests with self-signed peers only.
    pub tls_verify: bool,
    /// RFC 5626 keep-alive interval, in ms, on the TCP/TLS connections the backend opens
    /// (CRLF CRLF pings, each connection at 80–100 % of it; one unanswered for 10 s closes the
    /// connection and fails what waits on it). 0: no pings. Default 120000.
    pub sip_keepalive_ms: u32,
    /// The SRTP suites, comma-separated, in our order of preference: offers list exactly these
    /// in this order, answers take the first of them the offer has; no suite in common means
    /// no SRTP (488 when `srtp` is `RKM_SRTP_MANDATORY`). Names: `AES_CM_128_HMAC_SHA1_80`,
    /// `AES_CM_128_HMAC_SHA1_32`, `AEAD_AES_128_GCM`; an unknown or repeated name is
    /// `RKM_ERR_INVALID_ARGUMENT`. NULL (default): all three, in the order
    /// `"AES_CM_128_HMAC_SHA1_80,AEAD_AES_128_GCM,AES_CM_128_HMAC_SHA1_32"`.
    pub srtp_suites: *const c_char,
    /// Overload control: new INVITEs get 503 + `Retry-After` while the oldest SIP datagram not
    /// yet handled, or the oldest call whose session is still being started, is older than
    /// this many ms (in-dialog requests, ACK, CANCEL and BYE are always handled). 0: off.
    /// Default 200.
    pub overload_max_backlog_ms: u32,
    /// The `Retry-After` of those 503s, drawn from 1 to this many seconds; default 4.
    pub overload_retry_after_max_s: u32,
    /// Out-of-dialog requests accepted per second from one source IP address; beyond it they
    /// get a stateless 503 + `Retry-After`. 0 (default): no limit (behind a proxy every call
    /// comes from one address).
    pub source_rate_limit: u32,
    /// Requests one source may send at once above `source_rate_limit`; 0 (default): one
    /// second's worth.
    pub source_rate_burst: u32,
    /// Threads for RTP I/O: 0 (default) one thread per stream (lowest latency for a few
    /// calls); N > 0 (at most 1024) N shared threads, each waiting in `epoll` on the sockets of
    /// many streams (for many sessions).
    pub io_threads: u32,
    /// Offer and accept forward error correction on video (ULPFEC in RED, `red/90000` and
    /// `ulpfec/90000`): lost packets rebuilt without a round trip; default false.
    pub video_fec: bool,
    /// How long an incoming call that the invite filter deferred (`RKM_CALL_DEFER`) waits for
    /// `rkm_sip_decide_call` before it is refused with 408; 0 is refused
    /// (`RKM_ERR_INVALID_ARGUMENT`). Default 20000.
    pub decision_timeout_ms: u32,
    /// ICE on DTLS-SRTP streams (only with `dtls_srtp` on): offers and answers carry ICE
    /// credentials and the stream socket's host candidate, and the stream runs a full ICE
    /// agent with a peer that has ICE too. Default false.
    pub ice: bool,
    /// DTLS-SRTP on audio and video: `RKM_DTLS_SRTP_OFF` (default), `RKM_DTLS_SRTP_OPTIONAL`
    /// or `RKM_DTLS_SRTP_MANDATORY`. When on, the backend makes one ECDSA P-256 certificate at
    /// `rkm_sip_start`.
    pub dtls_srtp: u32,
    /// A STUN server, `"ip:port"`, for server-reflexive candidates (with `ice`): each call's
    /// media sockets ask it for their public address before the SDP is written (the SIP thread
    /// waits at most 500 ms) and offer it as a `srflx` candidate; no answer leaves the host
    /// candidate only. NULL (default): none.
    pub stun_server: *const c_char,
    /// A TURN server (UDP), `"ip:port"`, for relayed candidates (with `ice`): each call's media
    /// sockets allocate a relayed address on it with `turn_user`/`turn_password` before the
    /// SDP is written (the SIP thread waits at most 1.5 s) and offer it as a `relay`
    /// candidate; the call's transport relays through it when ICE selects it. NULL (default):
    /// none.
    pub turn_server: *const c_char,
    /// The TURN username (long-term credentials); NULL: empty.
    pub turn_user: *const c_char,
    /// The TURN password; NULL: empty.
    pub turn_password: *const c_char,
    /// Offer only the relayed candidate when there is one: media always goes through the TURN
    /// server. Default false.
    pub turn_relay_only: bool,
}

/// `dtls_srtp` value of `rkm_sip_config`: no DTLS-SRTP; a `UDP/TLS/RTP/SAVPF` offer is refused
/// with 488.
pub const RKM_DTLS_SRTP_OFF: u32 = 0;
/// `dtls_srtp` value: offer our certificate fingerprint beside what `srtp` offers (the peer may
/// take DTLS-SRTP, SDES or plain RTP); answer an offered fingerprint with DTLS-SRTP.
pub const RKM_DTLS_SRTP_OPTIONAL: u32 = 1;
/// `dtls_srtp` value: offer `UDP/TLS/RTP/SAVPF` only; an offer without a fingerprint is
/// refused with 488.
pub const RKM_DTLS_SRTP_MANDATORY: u32 = 2;

/// The DTLS-SRTP policy a `dtls_srtp` field describes, checked.
fn dtls_srtp_policy_from_c(value: u32) -> FfiResult<crate::DtlsSrtpPolicy> {
    match value {
        RKM_DTLS_SRTP_OFF => Ok(crate::DtlsSrtpPolicy::Off),
        RKM_DTLS_SRTP_OPTIONAL => Ok(crate::DtlsSrtpPolicy::Optional),
        RKM_DTLS_SRTP_MANDATORY => Ok(crate::DtlsSrtpPolicy::Mandatory),
        other => Err(Failure::invalid(format!(
            "cfg.dtls_srtp = {other}: expected RKM_DTLS_SRTP_OFF, RKM_DTLS_SRTP_OPTIONAL or \
             RKM_DTLS_SRTP_MANDATORY"
        ))),
    }
}

/// Fills `cfg` with the defaults (see each field). String fields get static strings that the
/// caller may replace; a NULL `cfg` is ignored (and recorded for `rkm_last_error`). Any thread.
#[no_mangle]
pub extern "C" fn rkm_sip_config_init(cfg: *mut rkm_sip_config) {
    boundary("rkm_sip_config_init", || {
        // SAFETY: the caller passes NULL or a pointer to writable storage for one config.
        let out = unsafe { out_arg(cfg, "cfg") }?;
        let d = SipBackendConfig::default();
        *out = rkm_sip_config {
            local_sip_addr: c"0.0.0.0:5060".as_ptr(),
            local_rtp_ip: c"0.0.0.0".as_ptr(),
            advertised_ip: std::ptr::null(),
            rtp_port_start: d.rtp_port_start,
            rtp_port_end: d.rtp_port_end,
            supported_codecs: c"opus,G722,PCMU,PCMA".as_ptr(),
            supported_video_codecs: c"H264".as_ptr(),
            max_sessions: u32::try_from(d.max_sessions).unwrap_or(u32::MAX),
            auth_user: std::ptr::null(),
            auth_password: std::ptr::null(),
            auth_realm: c"roomkit".as_ptr(),
            user_agent: c"roomkit-media".as_ptr(),
            answer_after_ms: u32::try_from(d.answer_after.as_millis()).unwrap_or(u32::MAX),
            symmetric_rtp: d.symmetric_rtp,
            mtu: u16::try_from(d.mtu).unwrap_or(u16::MAX),
            delivery: RKM_DELIVERY_ACCESS_UNIT,
            wait_for_keyframe: d.wait_for_keyframe,
            rtcp_interval_ms: u32::try_from(d.rtcp_interval.as_millis()).unwrap_or(u32::MAX),
            callback_threads: u32::try_from(d.callback_threads).unwrap_or(1),
            callback_queue: u32::try_from(d.callback_queue).unwrap_or(u32::MAX),
            client_auth_user: std::ptr::null(),
            client_auth_password: std::ptr::null(),
            outbound_proxy: std::ptr::null(),
            user: c"roomkit".as_ptr(),
            session_expires: d.session_expires,
            ring_timeout_ms: u32::try_from(d.ring_timeout.as_millis()).unwrap_or(u32::MAX),
            retry_after_s: u32::try_from(d.retry_after.as_secs()).unwrap_or(u32::MAX),
            resilience: resilience_to_c(&d.resilience),
            video_rtx: d.video_rtx,
            audio_sample_rate: RKM_AUDIO_RATE_AUTO,
            srtp: RKM_SRTP_OFF,
            local_sip_tcp_addr: std::ptr::null(),
            local_sip_tls_addr: std::ptr::null(),
            tls_cert: std::ptr::null(),
            tls_key: std::ptr::null(),
            tls_ca: std::ptr::null(),
            tls_verify: d.tls.verify,
            sip_keepalive_ms: u32::try_from(d.stream_timeouts.keepalive.as_millis())
                .unwrap_or(u32::MAX),
            srtp_suites: std::ptr::null(),
            overload_max_backlog_ms: u32::try_from(d.overload.max_backlog.as_millis())
                .unwrap_or(u32::MAX),
            overload_retry_after_max_s: d.overload.retry_after_max_s,
            source_rate_limit: d.overload.source_rate,
            source_rate_burst: d.overload.source_burst,
            io_threads: u32::try_from(d.io_threads).unwrap_or(0),
            video_fec: d.video_fec,
            decision_timeout_ms: u32::try_from(d.decision_timeout.as_millis()).unwrap_or(u32::MAX),
            ice: d.ice,
            dtls_srtp: RKM_DTLS_SRTP_OFF,
            stun_server: std::ptr::null(),
            turn_server: std::ptr::null(),
            turn_user: std::ptr::null(),
            turn_password: std::ptr::null(),
            turn_relay_only: false,
        };
        Ok(())
    })
}

/// A comma-separated list of audio codec names (`PCMU`, `G722`, `opus`, `name/clock`).
pub(crate) fn audio_codec_list(s: &str, what: &str) -> FfiResult<Vec<AudioCodec>> {
    list_items(s)
        .map(|name| {
            AudioCodec::from_name(name).ok_or_else(|| {
                Failure::invalid(format!(
                    "{what}: {name:?} is not a codec (PCMU, PCMA, name/clock)"
                ))
            })
        })
        .collect()
}

/// Splits a comma-separated list, trimming blanks and skipping empty items.
fn list_items(s: &str) -> impl Iterator<Item = &str> {
    s.split(',').map(str::trim).filter(|x| !x.is_empty())
}

/// Parses an IP address field.
fn parse_ip(s: &str, name: &str) -> FfiResult<IpAddr> {
    s.trim()
        .parse()
        .map_err(|_| Failure::invalid(format!("{name} = {s:?} is not an IP address")))
}

/// The Rust configuration an `rkm_sip_config` describes.
///
/// # Safety
/// Every string field is NULL or a NUL-terminated string valid for the call.
pub(crate) unsafe fn sip_config_from_c(c: &rkm_sip_config) -> FfiResult<SipBackendConfig> {
    // SAFETY: this function's caller guarantees every string field of `c` is NULL or a valid
    // C string for the call, and `text` is only given those fields.
    let text = |p: *const c_char, name: &str| unsafe { field(p, name) };
    let mut r = SipBackendConfig::default();
    r.local_sip_addr = addr_or(
        text(c.local_sip_addr, "cfg.local_sip_addr")?,
        "cfg.local_sip_addr",
        r.local_sip_addr,
    )?;
    if let Some(s) = text(c.local_rtp_ip, "cfg.local_rtp_ip")? {
        r.local_rtp_ip = parse_ip(s, "cfg.local_rtp_ip")?;
    }
    r.advertised_ip = match text(c.advertised_ip, "cfg.advertised_ip")? {
        Some(s) => Some(parse_ip(s, "cfg.advertised_ip")?),
        None => None,
    };
    if c.rtp_port_start > c.rtp_port_end {
        return Err(Failure::invalid(format!(
            "cfg.rtp_port_start {} is above cfg.rtp_port_end {}",
            c.rtp_port_start, c.rtp_port_end
        )));
    }
    r.rtp_port_start = c.rtp_port_start;
    r.rtp_port_end = c.rtp_port_end;
    if let Some(s) = text(c.supported_codecs, "cfg.supported_codecs")? {
        r.supported_codecs = audio_codec_list(s, "cfg.supported_codecs")?;
    }
    if let Some(s) = text(c.supported_video_codecs, "cfg.supported_video_codecs")? {
        r.supported_video_codecs = list_items(s)
            .map(|name| {
                VideoCodec::from_name(name).ok_or_else(|| {
                    Failure::invalid(format!(
                        "cfg.supported_video_codecs: {name:?} is not H264 or VP8"
                    ))
                })
            })
            .collect::<FfiResult<_>>()?;
    }
    r.max_sessions = c.max_sessions as usize;
    let user = text(c.auth_user, "cfg.auth_user")?;
    let password = text(c.auth_password, "cfg.auth_password")?;
    if let Some(user) = user {
        let password = password.ok_or_else(|| {
            Failure::invalid("cfg.auth_user is set but cfg.auth_password is NULL")
        })?;
        r.auth_users.insert(user.to_owned(), password.to_owned());
    }
    if let Some(s) = text(c.auth_realm, "cfg.auth_realm")? {
        r.auth_realm = s.to_owned();
    }
    if let Some(s) = text(c.user_agent, "cfg.user_agent")? {
        r.user_agent = s.to_owned();
    }
    r.answer_after = Duration::from_millis(u64::from(c.answer_after_ms));
    r.symmetric_rtp = c.symmetric_rtp;
    if c.mtu < 64 {
        return Err(Failure::invalid(format!(
            "cfg.mtu = {} is too small (at least 64)",
            c.mtu
        )));
    }
    r.mtu = usize::from(c.mtu);
    r.delivery = delivery_from_c(c.delivery)?;
    r.wait_for_keyframe = c.wait_for_keyframe;
    if c.rtcp_interval_ms == 0 {
        return Err(Failure::invalid("cfg.rtcp_interval_ms must be at least 1"));
    }
    r.rtcp_interval = Duration::from_millis(u64::from(c.rtcp_interval_ms));
    if c.callback_threads == 0 {
        return Err(Failure::invalid("cfg.callback_threads must be at least 1"));
    }
    r.callback_threads = c.callback_threads as usize;
    if c.callback_queue == 0 {
        return Err(Failure::invalid("cfg.callback_queue must be at least 1"));
    }
    r.callback_queue = c.callback_queue as usize;
    let user = text(c.client_auth_user, "cfg.client_auth_user")?;
    let password = text(c.client_auth_password, "cfg.client_auth_password")?;
    r.credentials = match (user, password) {
        (Some(u), Some(p)) => Some(SipCredentials::new(u, p)),
        (None, None) => None,
        (Some(_), None) => {
            return Err(Failure::invalid(
                "cfg.client_auth_user is set but cfg.client_auth_password is NULL",
            ))
        }
        (None, Some(_)) => {
            return Err(Failure::invalid(
                "cfg.client_auth_password is set but cfg.client_auth_user is NULL",
            ))
        }
    };
    if let Some(s) = text(c.outbound_proxy, "cfg.outbound_proxy")? {
        r.outbound_proxy = Some(parse_addr(s, "cfg.outbound_proxy")?);
    }
    if let Some(s) = text(c.user, "cfg.user")? {
        if s.is_empty()
            || !s
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.!~*'()".contains(c))
        {
            return Err(Failure::invalid(format!(
                "cfg.user = {s:?} is not a plain SIP user name"
            )));
        }
        r.user = s.to_owned();
    }
    r.session_expires = c.session_expires;
    if c.session_expires != 0 && c.session_expires < 90 {
        return Err(Failure::invalid(format!(
            "cfg.session_expires = {} is below 90 s (RFC 4028); 0 asks for none",
            c.session_expires
        )));
    }
    if c.ring_timeout_ms == 0 {
        return Err(Failure::invalid("cfg.ring_timeout_ms must be at least 1"));
    }
    r.ring_timeout = Duration::from_millis(u64::from(c.ring_timeout_ms));
    r.audio_sample_rate = app_rate_from_c(c.audio_sample_rate, "cfg.audio_sample_rate")?;
    r.io_threads = c.io_threads as usize;
    if c.decision_timeout_ms == 0 {
        return Err(Failure::invalid(
            "cfg.decision_timeout_ms must be at least 1",
        ));
    }
    r.decision_timeout = Duration::from_millis(u64::from(c.decision_timeout_ms));
    r.retry_after = Duration::from_secs(u64::from(c.retry_after_s.clamp(1, 3600)));
    r.overload.max_backlog = Duration::from_millis(u64::from(c.overload_max_backlog_ms));
    r.overload.retry_after_max_s = c.overload_retry_after_max_s.clamp(1, 3600);
    r.overload.source_rate = c.source_rate_limit;
    r.overload.source_burst = c.source_rate_burst;
    r.resilience = resilience_from_c(&c.resilience)?;
    r.video_rtx = c.video_rtx;
    r.video_fec = c.video_fec;
    r.srtp = srtp_policy_from_c(c.srtp)?;
    if let Some(s) = text(c.srtp_suites, "cfg.srtp_suites")? {
        r.srtp_suites = crate::SrtpSuite::parse_list(s)
            .map_err(|e| Failure::invalid(format!("cfg.srtp_suites = {s:?}: {e}")))?;
    }
    r.ice = c.ice;
    r.dtls_srtp = dtls_srtp_policy_from_c(c.dtls_srtp)?;
    if let Some(s) = text(c.stun_server, "cfg.stun_server")? {
        r.stun_server = Some(parse_addr(s, "cfg.stun_server")?);
    }
    if let Some(s) = text(c.turn_server, "cfg.turn_server")? {
        r.turn_server = Some(parse_addr(s, "cfg.turn_server")?);
    }
    if let Some(s) = text(c.turn_user, "cfg.turn_user")? {
        r.turn_user = s.to_owned();
    }
    if let Some(s) = text(c.turn_password, "cfg.turn_password")? {
        r.turn_password = s.to_owned();
    }
    r.turn_relay_only = c.turn_relay_only;
    if let Some(s) = text(c.local_sip_tcp_addr, "cfg.local_sip_tcp_addr")? {
        r.local_sip_tcp_addr = Some(parse_addr(s, "cfg.local_sip_tcp_addr")?);
    }
    if let Some(s) = text(c.local_sip_tls_addr, "cfg.local_sip_tls_addr")? {
        r.local_sip_tls_addr = Some(parse_addr(s, "cfg.local_sip_tls_addr")?);
    }
    let path = |p, name| text(p, name).map(|s| s.map(std::path::PathBuf::from));
    r.tls.cert = path(c.tls_cert, "cfg.tls_cert")?;
    r.tls.key = path(c.tls_key, "cfg.tls_key")?;
    r.tls.ca = path(c.tls_ca, "cfg.tls_ca")?;
    r.tls.verify = c.tls_verify;
    r.stream_timeouts.keepalive = Duration::from_millis(u64::from(c.sip_keepalive_ms));
    if r.tls.cert.is_some() != r.tls.key.is_some() {
        return Err(Failure::invalid("cfg.tls_cert and cfg.tls_key go together"));
    }
    if r.local_sip_tls_addr.is_some() && r.tls.cert.is_none() {
        return Err(Failure::invalid(
            "cfg.local_sip_tls_addr needs cfg.tls_cert and cfg.tls_key",
        ));
    }
    Ok(r)
}

#[cfg(test)]
mod sip_tests {
    use super::*;
    use std::mem::MaybeUninit;

    fn defaults() -> rkm_sip_config {
        let mut c = MaybeUninit::<rkm_sip_config>::uninit();
        rkm_sip_config_init(c.as_mut_ptr());
        // SAFETY: rkm_sip_config_init wrote every field.
        unsafe { c.assume_init() }
    }

    #[test]
    fn defaults_convert_to_the_rust_defaults() {
        // SAFETY: the string fields are static C strings or NULL.
        let r = unsafe { sip_config_from_c(&defaults()) }.unwrap();
        let d = SipBackendConfig::default();
        assert_eq!(r.local_sip_addr, d.local_sip_addr);
        assert_eq!(r.local_rtp_ip, d.local_rtp_ip);
        assert_eq!(r.supported_codecs, d.supported_codecs);
        assert_eq!(r.supported_video_codecs, d.supported_video_codecs);
        assert_eq!(r.auth_realm, d.auth_realm);
        assert_eq!(r.user_agent, d.user_agent);
        assert!(r.auth_users.is_empty());
        assert_eq!(r.rtp_port_start, d.rtp_port_start);
        assert_eq!(r.resilience, d.resilience);
        assert!(r.video_rtx);
        assert_eq!(r.srtp, crate::SrtpPolicy::Off);
        let mut c = defaults();
        c.srtp = RKM_SRTP_MANDATORY;
        // SAFETY: as above.
        let r = unsafe { sip_config_from_c(&c) }.unwrap();
        assert_eq!(r.srtp, crate::SrtpPolicy::Mandatory);
        c.srtp = 3;
        // SAFETY: as above.
        assert!(unsafe { sip_config_from_c(&c) }.is_err());
        assert_eq!(
            (r.local_sip_tcp_addr, r.local_sip_tls_addr, &r.tls),
            (None, None, &d.tls)
        );
        assert_eq!(r.stream_timeouts, d.stream_timeouts);
        c.srtp = RKM_SRTP_OFF;
        assert_eq!(
            (r.ice, r.dtls_srtp, r.stun_server),
            (false, d.dtls_srtp, None)
        );
        c.ice = true;
        c.dtls_srtp = RKM_DTLS_SRTP_MANDATORY;
        c.stun_server = c"192.0.2.1:3478".as_ptr();
        // SAFETY: as above.
        let r = unsafe { sip_config_from_c(&c) }.unwrap();
        assert!(r.ice);
        assert_eq!(r.dtls_srtp, crate::DtlsSrtpPolicy::Mandatory);
        assert_eq!(r.stun_server, Some("192.0.2.1:3478".parse().unwrap()));
        c.turn_server = c"192.0.2.2:3478".as_ptr();
        c.turn_user = c"u".as_ptr();
        c.turn_password = c"p".as_ptr();
        c.turn_relay_only = true;
        // SAFETY: as above.
        let r = unsafe { sip_config_from_c(&c) }.unwrap();
        assert_eq!(r.turn_server, Some("192.0.2.2:3478".parse().unwrap()));
        assert_eq!((&r.turn_user[..], &r.turn_password[..]), ("u", "p"));
        assert!(r.turn_relay_only);
        c.turn_server = c"turn".as_ptr();
        // SAFETY: as above.
        assert!(unsafe { sip_config_from_c(&c) }.is_err());
        c.turn_server = std::ptr::null();
        c.turn_user = std::ptr::null();
        c.turn_password = std::ptr::null();
        c.turn_relay_only = false;
        for (dtls, stun) in [(3, c"192.0.2.1:3478"), (RKM_DTLS_SRTP_OFF, c"stun")] {
            c.dtls_srtp = dtls;
            c.stun_server = stun.as_ptr();
            // SAFETY: as above.
            assert!(unsafe { sip_config_from_c(&c) }.is_err());
        }
        c.ice = false;
        c.dtls_srtp = RKM_DTLS_SRTP_OFF;
        c.stun_server = std::ptr::null();
        c.sip_keepalive_ms = 0;
        // SAFETY: as above.
        let r = unsafe { sip_config_from_c(&c) }.unwrap();
        assert!(
            r.stream_timeouts.keepalive.is_zero(),
            "0 turns keep-alives off"
        );
    }

    #[test]
    fn stream_transports_and_tls() {
        let mut c = defaults();
        c.local_sip_tcp_addr = c"127.0.0.1:5060".as_ptr();
        c.local_sip_tls_addr = c"127.0.0.1:5061".as_ptr();
        c.tls_cert = c"/etc/rkm/cert.pem".as_ptr();
        c.tls_key = c"/etc/rkm/key.pem".as_ptr();
        c.tls_ca = c"/etc/rkm/ca.pem".as_ptr();
        c.tls_verify = false;
        // SAFETY: static C strings.
        let r = unsafe { sip_config_from_c(&c) }.unwrap();
        assert_eq!(
            r.local_sip_tcp_addr,
            Some("127.0.0.1:5060".parse().unwrap())
        );
        assert_eq!(
            r.local_sip_tls_addr,
            Some("127.0.0.1:5061".parse().unwrap())
        );
        assert_eq!(
            r.tls.key.as_deref(),
            Some(std::path::Path::new("/etc/rkm/key.pem"))
        );
        assert!(!r.tls.verify);
        c.tls_key = std::ptr::null();
        // SAFETY: static C strings.
        let e = unsafe { sip_config_from_c(&c) }.unwrap_err();
        assert!(e.message.contains("tls_key"), "{}", e.message);
        c.tls_cert = std::ptr::null();
        // SAFETY: static C strings.
        let e = unsafe { sip_config_from_c(&c) }.unwrap_err();
        assert!(e.message.contains("local_sip_tls_addr"), "{}", e.message);
    }

    #[test]
    fn srtp_suites_default_to_all_and_take_an_ordered_list() {
        // SAFETY: the string fields are static C strings or NULL.
        let r = unsafe { sip_config_from_c(&defaults()) }.unwrap();
        assert_eq!(r.srtp_suites, crate::SrtpSuite::ALL);
        // The order the header documents for NULL is the default's.
        let mut c = defaults();
        c.srtp_suites =
            c"AES_CM_128_HMAC_SHA1_80,AEAD_AES_128_GCM,AES_CM_128_HMAC_SHA1_32".as_ptr();
        // SAFETY: static C strings.
        let r = unsafe { sip_config_from_c(&c) }.unwrap();
        assert_eq!(r.srtp_suites, crate::SrtpSuite::ALL);
        c.srtp_suites = c" AEAD_AES_128_GCM, AES_CM_128_HMAC_SHA1_32".as_ptr();
        // SAFETY: static C strings.
        let r = unsafe { sip_config_from_c(&c) }.unwrap();
        use crate::SrtpSuite::*;
        assert_eq!(r.srtp_suites, [AeadAes128Gcm, AesCm128HmacSha1_32]);
        for bad in [
            c"AES_CM_128_HMAC_SHA1_80,F8_128_HMAC_SHA1_80",
            c"",
            c"AEAD_AES_128_GCM,AEAD_AES_128_GCM",
        ] {
            c.srtp_suites = bad.as_ptr();
            // SAFETY: static C strings.
            let e = unsafe { sip_config_from_c(&c) }.unwrap_err();
            assert_eq!(
                e.status,
                crate::ffi::status::rkm_status::RKM_ERR_INVALID_ARGUMENT
            );
            assert!(e.message.starts_with("cfg.srtp_suites"), "{}", e.message);
        }
        c.srtp_suites = c"AES_CM_128_HMAC_SHA1_80,F8_128_HMAC_SHA1_80".as_ptr();
        // SAFETY: static C strings.
        let e = unsafe { sip_config_from_c(&c) }.unwrap_err();
        assert!(
            e.message
                .contains("\"F8_128_HMAC_SHA1_80\" is not an SRTP suite"),
            "{}",
            e.message
        );
    }

    #[test]
    fn lists_and_errors() {
        let mut c = defaults();
        c.supported_video_codecs = c" vp8 , H264,".as_ptr();
        c.auth_user = c"alice".as_ptr();
        c.auth_password = c"secret".as_ptr();
        // SAFETY: static C strings.
        let r = unsafe { sip_config_from_c(&c) }.unwrap();
        assert_eq!(
            r.supported_video_codecs,
            vec![VideoCodec::Vp8, VideoCodec::H264]
        );
        assert_eq!(
            r.auth_users.get("alice").map(String::as_str),
            Some("secret")
        );
        c.supported_video_codecs = c"H265".as_ptr();
        // SAFETY: static C strings.
        let e = unsafe { sip_config_from_c(&c) }.unwrap_err();
        assert!(e.message.contains("supported_video_codecs"));
        let mut c = defaults();
        c.rtp_port_start = 30000;
        c.rtp_port_end = 20000;
        // SAFETY: static C strings.
        assert!(unsafe { sip_config_from_c(&c) }.is_err());
    }
}
