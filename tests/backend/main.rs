//! The back-end tests: RTP and SIP backends, the engine and the CLI over real loopback sockets,
//! in one process or against our own binary, with no outside peer. One binary for the area, so a
//! build links the crate and libopus once; each file is one module.

#[path = "../support/mod.rs"]
mod support;

mod av_congestion;
mod bench_cmd;
mod ice_dtls_socket;
mod liveness;
mod metrics;
mod netsim_bottleneck;
mod roomkit_gaps;
mod rtp_backend;
mod rtp_backend_impairment;
mod rtp_backend_robustness;
mod rtp_congestion;
mod rtp_fec;
mod rtp_srtp;
mod sip_backend;
mod sip_backend_rfc4475;
mod sip_congestion;
mod sip_demo;
mod sip_fec;
mod sip_ice_dtls;
mod sip_lossy;
mod sip_stun;
mod sip_tcp_tls;
mod stream_impairment;
mod whip;
