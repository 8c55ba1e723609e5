//! The live progress line (only when stderr is a terminal) and the final JSON stats line.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// The counters `send` and `recv` report.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub packets: u64,
    pub bytes: u64,
    pub frames: u64,
    pub keyframes: u64,
    pub lost: u64,
    pub dropped_frames: u64,
}

impl Stats {
    /// The one-line JSON summary printed at the end of a run.
    pub fn json(&self) -> String {
        format!(
            "{{\"packets\":{},\"bytes\":{},\"frames\":{},\"keyframes\":{},\"lost\":{},\"dropped_frames\":{}}}",
            self.packets, self.bytes, self.frames, self.keyframes, self.lost, self.dropped_frames
        )
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
