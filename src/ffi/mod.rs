//! The C ABI: `extern "C"` functions over [`crate::backend`], declared for C in
//! `include/roomkit_media.h` (generated from this module by cbindgen).
//!
//! The rules every function follows:
//! - It runs behind one panic boundary ([`status`]): a panic becomes `RKM_ERR_PANIC`, a failure a
//!   status code (or NULL / 0 for functions returning a pointer or a count), and in both cases
//!   `rkm_last_error()` gives the message on the calling thread.
//! - Every pointer is checked: NULL where a value is required is `RKM_ERR_INVALID_ARGUMENT`, and
//!   strings must be UTF-8.
//! - Pointers the caller passes in are borrowed for the call only; the library copies what it
//!   keeps. Pointers the library passes to callbacks are valid only during the callback.
//! - A backend is owned by the caller from `rkm_*_backend_new` to `rkm_backend_free`.
//!
//! Names are C names (`rkm_` prefix, snake case), so cbindgen emits them unchanged.
#![allow(non_camel_case_types)]
// The entry points are called from C, where `unsafe` means nothing; what they require of their
// pointers (NULL or valid for the call) is stated in each function's documentation and in the
// header, and NULL is checked. Marking them `unsafe fn` would change nothing for C callers.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

pub mod args;
pub mod backend;
pub mod callbacks;
pub mod config;
pub mod sip;
pub mod sip_phone;
pub mod srtp;
pub mod status;

pub use args::RKM_SESSION_ID_LEN;
pub use backend::{
    rkm_addr_text, rkm_backend, rkm_connect_options, rkm_session_addrs, rkm_stats,
    rkm_stream_stats, RKM_ADDR_LEN,
};
pub use callbacks::{
    rkm_audio_frame, rkm_audio_received_cb, rkm_client_disconnected_cb, rkm_dtmf_received_cb,
    rkm_end_reason, rkm_keyframe_kind, rkm_keyframe_requested_cb, rkm_rate_reason,
    rkm_session_info, rkm_session_ready_cb, rkm_target_bitrate_cb, rkm_video_frame,
    rkm_video_received_cb, rkm_video_session_ready_cb, RKM_END_ERROR, RKM_END_LOCAL_HANGUP,
    RKM_END_NONE, RKM_END_REMOTE_HANGUP, RKM_END_RTCP_BYE, RKM_END_RTP_TIMEOUT, RKM_END_SHUTDOWN,
    RKM_END_TRANSPORT_FAILED,
};
pub use config::{
    rkm_delivery, rkm_resilience, rkm_rtp_config, rkm_sip_config, RKM_DELIVERY_ACCESS_UNIT,
    RKM_DELIVERY_NAL_UNIT,
};
pub use sip::{rkm_call_cb, rkm_call_info};
pub use sip_phone::{
    rkm_call_progress, rkm_call_state, rkm_call_state_cb, rkm_dial_options, rkm_register_options,
    rkm_registration_cb, rkm_registration_event, rkm_registration_state,
};
pub use srtp::rkm_srtp_keys;
pub use status::rkm_status;
