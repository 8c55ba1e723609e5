//! The live progress line (only when stderr is a terminal) and the final JSON stats line.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use serde::Serialize;

/// The counters `send` and `recv` report, printed at the end as one JSON line (in this order).
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct Stats {
    pub packets: u64,
    pub bytes: u64,
    pub frames: u64,
    pub keyframes: u64,
    pub lost: u64,
    pub dropped_frames: u64,
    /// Loss recovery: NACKs sent (`recv`) or received (`send`), packets re-sent, RTX packets
    /// received, and lost packets that a repair brought back.
    pub nack_sent: u64,
    pub nack_received: u64,
    pub retransmitted: u64,
    pub rtx_received: u64,
    pub recovered: u64,
    /// The SRTP suite (`null`: plain RTP), and SRTP packets dropped because they did not
    /// authenticate (a wrong key, tampering) or were replays.
    pub srtp: Option<&'static str>,
    pub srtp_auth_failed: u64,
    pub srtp_replayed: u64,
    /// Congestion control (`--cc`; zeros when off): the estimate and the pacer's rate (bit/s),
    /// pictures the sender dropped rather than queue them, feedback packets sent (`recv`) and
    /// used (`send`), and the renditions `send --ladder` switched between.
    pub cc_target_bps: u64,
    pub cc_pacer_rate_bps: u64,
    pub cc_pictures_dropped: u64,
    pub cc_feedback_sent: u64,
    pub cc_feedback_received: u64,
    pub switches: u64,
    /// Forward error correction (`--fec`): FEC packets sent (`send`) or received (`recv`), and
    /// lost packets rebuilt from them.
    pub fec_sent: u64,
    pub fec_received: u64,
    pub fec_recovered: u64,
}

impl Stats {
    /// Copies the loss-recovery, SRTP and congestion-control counters of a stream.
    pub fn recovery(&mut self, v: &roomkit_media::backend::StreamStats) {
        self.nack_sent = v.nack_sent;
        self.nack_received = v.nack_received;
        self.retransmitted = v.retransmitted;
        self.rtx_received = v.rtx_received;
        self.recovered = v.recovered;
        self.srtp_auth_failed = v.srtp_auth_failed;
        self.srtp_replayed = v.srtp_replayed;
        self.cc_target_bps = v.cc_target_bps;
        self.cc_pacer_rate_bps = v.cc_pacer_rate_bps;
        self.cc_pictures_dropped = v.cc_pictures_dropped;
        self.cc_feedback_sent = v.cc_feedback_sent;
        self.cc_feedback_received = v.cc_feedback_received;
        self.fec_sent = v.fec_sent;
        self.fec_received = v.fec_received;
        self.fec_recovered = v.fec_recovered;
    }
}

/// Redraws a status line on a terminal at most four times a second.
pub struct Progress {
    tty: bool,
    last: Option<Instant>,
}

impl Progress {
    pub fn new() -> Progress {
        Progress {
            tty: std::io::stderr().is_terminal(),
            last: None,
        }
    }

    pub fn update(&mut self, verb: &str, s: &Stats) {
        if !self.tty
            || self
                .last
                .is_some_and(|t| t.elapsed() < Duration::from_millis(250))
        {
            return;
        }
        self.last = Some(Instant::now());
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r{verb}: {} packets, {} KiB, {} frames ({} key), {} lost   ",
            s.packets,
            s.bytes / 1024,
            s.frames,
            s.keyframes,
            s.lost
        );
        let _ = err.flush();
    }

    pub fn done(&self) {
        if self.tty {
            eprintln!();
        }
    }
}
