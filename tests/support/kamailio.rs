//! Kamailio, a real SIP server, started on a free loopback port, bounded by `timeout`, its log
//! (stderr) kept in a file the tests read: a registrar and record-routing proxy
//! (`tests/kamailio/proxy.cfg`), a load balancer whose dispatcher spreads calls over several
//! `serve` instances (`tests/kamailio/dispatcher.cfg`), or an edge proxy relaying calls to
//! `serve` over UDP, TCP or TLS (`tests/kamailio/relay.cfg`, its tls module on OpenSSL).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::peers::{self, TempDir};

/// Where Debian installs Kamailio's modules.
const MODULES: &str = "/usr/lib/x86_64-linux-gnu/kamailio/modules/";

/// A running Kamailio. Dropping it stops the whole process group (main process and children).
pub struct Kamailio {
    child: Option<Child>,
    pub port: u16,
    log: PathBuf,
    dir: TempDir,
}

impl Kamailio {
    /// Starts Kamailio with every user's password `password` and digest `algorithm` (`MD5` or
    /// `SHA-256`), for at most `secs` seconds. `None` (after saying why) when it is not installed
    /// outside CI.
    pub fn start(password: &str, algorithm: &str, secs: u32) -> Option<Kamailio> {
        if !peers::have_peers(&["kamailio"]) {
            return None;
        }
        let dir = TempDir::new("kamailio");
        let port = peers::free_udp_port();
        let cfg = config("proxy.cfg", &dir, port)
            .replace("@PASSWORD@", password)
            .replace("@ALGORITHM@", algorithm);
        Some(Kamailio::launch(dir, port, &cfg, secs))
    }

    /// Starts Kamailio as an edge proxy (`tests/kamailio/relay.cfg`): clients reach it over UDP
    /// on [`Kamailio::port`], and it relays every call to `target` (a URI such as
    /// `sip:127.0.0.1:PORT;transport=tls`), record-routing it. Its TLS listener presents
    /// `tls.cert`/`tls.key`, and as a TLS client it verifies the server's certificate against
    /// `tls.ca`. Needs Debian's kamailio-tls-modules (`tls.so`). `None` (after saying why) when
    /// Kamailio or its TLS module is missing outside CI.
    pub fn relay(target: &str, tls: &RelayTls, secs: u32) -> Option<Kamailio> {
        if !peers::have_peers(&["kamailio", "kamcmd"]) || !have_tls_module() {
            return None;
        }
        let dir = TempDir::new("kamailio-relay");
        let port = peers::free_udp_port();
        std::fs::write(dir.path("tls.cfg"), tls_config(tls)).unwrap();
        let cfg = config("relay.cfg", &dir, port)
            .replace("@TCP_PORT@", &free_tcp_port().to_string())
            .replace("@TLS_PORT@", &free_tcp_port().to_string())
            .replace("@TARGET@", target)
            .replace("@DEBUG@", "2")
            .replace("@CHILDREN@", "2")
            .replace("@LOG@", "L_INFO");
        Some(Kamailio::launch(dir, port, &cfg, secs))
    }

    /// Starts Kamailio as a load balancer (`tests/kamailio/dispatcher.cfg`): its dispatcher
    /// spreads new calls round-robin over `instances` (`serve`s' SIP ports on loopback), probes
    /// each with OPTIONS every `ping_secs`, and gives up on a probe or an INVITE after `fr_ms`
    /// (then the INVITE is retried on the next instance). `None` (after saying why) when it is
    /// not installed outside CI.
    pub fn dispatcher(
        instances: &[u16],
        ping_secs: u32,
        fr_ms: u32,
        secs: u32,
    ) -> Option<Kamailio> {
        if !peers::have_peers(&["kamailio"]) {
            return None;
        }
        let dir = TempDir::new("kamailio-dispatcher");
        let port = peers::free_udp_port();
        let list = dir.path("dispatcher.list");
        let lines: String = instances
            .iter()
            .map(|p| format!("1 sip:127.0.0.1:{p}\n"))
            .collect();
        std::fs::write(&list, lines).unwrap();
        let cfg = config("dispatcher.cfg", &dir, port)
            .replace("@ADDR@", "127.0.0.1")
            .replace("@LIST_FILE@", list.to_str().unwrap())
            .replace("@PING_INTERVAL@", &ping_secs.to_string())
            .replace("@FR_TIMER_MS@", &fr_ms.to_string())
            .replace("@FR_INV_TIMER_MS@", &(4 * fr_ms).to_string());
        Some(Kamailio::launch(dir, port, &cfg, secs))
    }

    /// Writes `cfg` into `dir` and runs Kamailio on it in the foreground, bounded by `secs`;
    /// returns once its UDP `port` is bound.
    fn launch(dir: TempDir, port: u16, cfg: &str, secs: u32) -> Kamailio {
        let cfg_path = dir.path("kamailio.cfg");
        std::fs::write(&cfg_path, cfg).unwrap();
        let log = dir.path("kamailio.log");
        let log_file = std::fs::File::create(&log).unwrap();
        // timeout runs Kamailio in a process group of its own and signals the whole group, so
        // Kamailio's children go with it.
        let child = Command::new("timeout")
            .args([
                "-k",
                "10",
                &secs.to_string(),
                "kamailio",
                "-DD",
                "-E",
                "-m",
                "64",
                "-M",
                "8",
            ])
            .arg("-f")
            .arg(&cfg_path)
            .arg("-P")
            .arg(dir.path("kamailio.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("start kamailio");
        let k = Kamailio {
            child: Some(child),
            port,
            log,
            dir,
        };
        assert!(
            peers::wait_udp_bound(port, Duration::from_secs(20)),
            "kamailio did not bind {port}:\n{}",
            k.log()
        );
        k
    }

    /// The answer of Kamailio's RPC command `cmd` (`tls.list`...), through kamcmd and the
    /// control socket of `relay.cfg`.
    pub fn rpc(&self, cmd: &str) -> String {
        let sock = format!("unix:{}", self.dir.path("ctl.sock").display());
        let out = peers::run(20, "kamcmd", &["-s", &sock, cmd]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Everything Kamailio logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The lines of the log our script wrote (tagged `RKM:`).
    pub fn script_lines(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter_map(|l| l.split_once("RKM: ").map(|(_, r)| r.to_string()))
            .collect()
    }

    /// Waits (bounded) until a script line contains every one of `needles`.
    pub fn wait_line(&self, needles: &[&str], limit: Duration) -> Option<String> {
        let start = Instant::now();
        loop {
            if let Some(l) = self
                .script_lines()
                .into_iter()
                .find(|l| needles.iter().all(|n| l.contains(n)))
            {
                return Some(l);
            }
            if start.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The PEM files of Kamailio's TLS side in [`Kamailio::relay`].
pub struct RelayTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// The tls module's own configuration: our certificate as a server; as a client, TLS 1.2 or
/// later and the peer's certificate checked against the test CA.
fn tls_config(tls: &RelayTls) -> String {
    format!(
        "[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\nrequire_certificate = no\n\
         certificate = {}\nprivate_key = {}\n\n\
         [client:default]\nmethod = TLSv1.2+\nverify_certificate = yes\nrequire_certificate = yes\n\
         ca_list = {}\n",
        tls.cert.display(),
        tls.key.display(),
        tls.ca.display()
    )
}

/// `tests/kamailio/NAME` with the values every configuration takes filled in.
fn config(name: &str, dir: &TempDir, port: u16) -> String {
    std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/kamailio")
            .join(name),
    )
    .unwrap_or_else(|e| panic!("tests/kamailio/{name}: {e}"))
    .replace("@PORT@", &port.to_string())
    .replace("@RUNDIR@", dir.0.to_str().unwrap())
    .replace("@MODULES@", MODULES)
}

/// Whether Kamailio's tls module is installed (Debian's kamailio-tls-modules); in CI its
/// absence fails the test.
fn have_tls_module() -> bool {
    if Path::new(MODULES).join("tls.so").exists() {
        return true;
    }
    if peers::in_ci() {
        panic!("Kamailio's tls module is missing (CI=true): install kamailio-tls-modules");
    }
    eprintln!(
        "SKIP: Kamailio's tls module is not installed (apt-get install kamailio-tls-modules)"
    );
    false
}

/// A TCP port free on loopback right now.
fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind probe listener")
        .port()
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let _ = peers::wait_bounded(child, Duration::from_secs(15));
        }
    }
}
