//! The interop tests: our CLI and backends against real peers (ffmpeg, GStreamer, sipp, baresip,
//! Kamailio, tshark, coturn). Each test returns early when its peer is not installed (and fails in
//! CI). One binary for the area, so a build links the crate and libopus once; each file is one
//! module.

#[path = "../support/mod.rs"]
mod support;

mod baresip;
mod baresip_dtls;
mod baresip_srtp;
mod cli;
mod dtls_gstreamer;
mod dtls_srtp_gstreamer;
mod fec_gstreamer;
mod g711_ffmpeg;
mod g722_ffmpeg;
mod gst_fec_twcc;
mod interop_h264;
mod interop_vp8;
mod kamailio;
mod kamailio_dispatcher;
mod kamailio_tls;
mod ladder;
mod lossy_path;
mod nat;
mod opus_ffmpeg;
mod sip_cli;
mod sip_tls;
mod sipp;
mod sipp_uac;
mod srtp_peers;
mod testclip_ffmpeg;
mod tshark_secure;
mod turn_coturn;
mod webrtcbin;
mod whip_chromium;
mod wideband_baresip;
mod wideband_ffmpeg;
