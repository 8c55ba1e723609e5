//! Running sipp with a scenario from `tests/sipp/`: as a UAC towards a target, or as a UAS
//! waiting on a port of its own, bounded by `timeout`, on loopback, with its error and action
//! logs kept for the failure message. Exit status 0 means every step of the scenario matched.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::peers::{self, TempDir};

/// A scenario file of `tests/sipp/`.
pub fn scenario(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(name)
}

/// A sipp run in the background.
pub struct Sipp {
    child: Option<Child>,
    /// sipp's SIP port.
    pub port: u16,
    /// sipp's first RTP port (`-mp`).
    pub media_port: u16,
    scenario: PathBuf,
    dir: TempDir,
}

impl Sipp {
    /// Starts sipp with `scenario`: towards `target` (`ip:port`) as a UAC, or as a UAS waiting
    /// on its own port when `target` is `None`. `extra` adds arguments (`-s user`, `-au`...);
    /// without `-m`, one call.
    pub fn spawn(scenario: &Path, target: Option<&str>, extra: &[&str]) -> Sipp {
        let dir = TempDir::new("sipp");
        // sipp's own SIP port: `-p 0` means its default 5060, which parallel runs would share.
        let port = peers::free_udp_port();
        let media_port = peers::free_udp_port();
        let (sp, mp) = (port.to_string(), media_port.to_string());
        let err = dir.path("errors.log");
        let log = dir.path("log.log");
        let mut args: Vec<&str> = vec!["-sf", scenario.to_str().unwrap()];
        if let Some(t) = target {
            args.push(t);
        }
        args.extend_from_slice(&[
            "-i",
            "127.0.0.1",
            "-p",
            &sp,
            "-mi",
            "127.0.0.1",
            "-mp",
            &mp,
            "-nostdin",
            "-timeout",
            "60s",
            "-timeout_error",
            "-trace_err",
            "-error_file",
            err.to_str().unwrap(),
            "-trace_logs",
            "-log_file",
            log.to_str().unwrap(),
        ]);
        if !extra.contains(&"-s") && target.is_some() {
            args.extend_from_slice(&["-s", "service"]);
        }
        args.extend_from_slice(extra);
        if !extra.contains(&"-m") {
            args.extend_from_slice(&["-m", "1"]);
        }
        let child = Command::new("timeout")
            .args(["-k", "10", "90", "sipp"])
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run sipp");
        Sipp {
            child: Some(child),
            port,
            media_port,
            scenario: scenario.to_path_buf(),
            dir,
        }
    }

    /// `127.0.0.1:PORT` of sipp's SIP socket.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Waits until a UAS sipp listens (bounded).
    pub fn wait_listening(&self) {
        assert!(
            peers::wait_udp_bound(self.port, Duration::from_secs(20)),
            "sipp never bound {}",
            self.port
        );
    }

    /// Waits for sipp to finish (at most `limit`): `Ok` when every call passed, else why not.
    pub fn wait(self, limit: Duration) -> Result<(), String> {
        self.wait_log(limit).map(drop)
    }

    /// [`wait`](Self::wait), returning what the scenario's `<log>` actions wrote.
    pub fn wait_log(mut self, limit: Duration) -> Result<String, String> {
        let child = self.child.take().expect("running");
        let out = peers::wait_bounded(child, limit);
        if out.status.success() {
            return Ok(std::fs::read_to_string(self.dir.path("log.log")).unwrap_or_default());
        }
        Err(format!(
            "sipp {} failed ({}):\n{}\n--- errors ---\n{}\n--- log ---\n{}",
            self.scenario.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .join("\n"),
            std::fs::read_to_string(self.dir.path("errors.log")).unwrap_or_default(),
            std::fs::read_to_string(self.dir.path("log.log")).unwrap_or_default()
        ))
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let _ = peers::wait_bounded(child, Duration::from_secs(10));
        }
    }
}

/// Runs sipp with `scenario` against `target` to the end, panicking with its logs unless every
/// call passed.
pub fn run(scenario: &Path, target: &str, extra: &[&str]) {
    if let Err(e) = Sipp::spawn(scenario, Some(target), extra).wait(Duration::from_secs(100)) {
        panic!("{e}");
    }
}
