//! Our SIP user agent against sipp as the far end, over real sockets on loopback:
//! - REGISTER transactions per second: one backend keeps 64 registrations going through
//!   register/unregister cycles against a sipp registrar (`bench/sipp/registrar_cycle.xml`);
//!   every cycle is two REGISTER transactions.
//! - Outbound call setups per second: one backend dials sipp (`bench/sipp/answer_then_bye.xml`:
//!   180, 200, ACK, our BYE) with a bounded number of calls in flight; a setup is `dial` to
//!   `Answered`, and each call is hung up as soon as it is answered. Every answered call opens a
//!   real media session (sockets and a receive thread).
//!
//! Run: `cargo bench --bench sip_ua_load [-- REGISTER_CYCLES CALLS IN_FLIGHT]` (defaults 20000,
//! 5000, 50). Needs sipp. Prints one JSON line per measurement.
//!
//! Measured on the shared 2-core development machine (load about 2, sipp on the same cores):
//! 12,000–14,100 REGISTER transactions/s; 1,410–1,620 call setups/s with 50 in flight (p50
//! 15–16 ms, p99 30–37 ms), 2,600/s with 20 in flight (p50 7.4 ms).

use std::collections::HashMap;
use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::unbounded;
use parking_lot::Mutex;
use roomkit_media::backend::{
    CallState, DialOptions, RegisterOptions, RegistrationEvent, SessionId, SipBackendConfig,
    SipVoiceBackend,
};

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// sipp as a UAS with `scenario` for `calls` calls, on its own port.
fn sipp_uas(scenario: &str, calls: usize) -> (Child, u16) {
    let port = free_port();
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("bench/sipp")
        .join(scenario);
    let child = Command::new("timeout")
        .args(["-k", "10", "900", "sipp", "-sf"])
        .arg(&path)
        .args(["-i", "127.0.0.1", "-p", &port.to_string()])
        .args(["-mi", "127.0.0.1", "-mp", &free_port().to_string()])
        .args(["-m", &calls.to_string(), "-nostdin", "-timeout", "600s"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp (apt-get install sip-tester)");
    std::thread::sleep(Duration::from_millis(500));
    (child, port)
}

fn backend() -> SipVoiceBackend {
    SipVoiceBackend::new(SipBackendConfig {
        local_sip_addr: "127.0.0.1:0".parse().unwrap(),
        local_rtp_ip: [127, 0, 0, 1].into(),
        rtp_port_start: 20000,
        rtp_port_end: 29999,
        callback_queue: 8192,
        ..SipBackendConfig::default()
    })
    .expect("backend")
}

fn registrations(cycles: usize) {
    const AT_ONCE: usize = 64;
    let (mut sipp, port) = sipp_uas("registrar_cycle.xml", cycles);
    let be = backend();
    let (tx, rx) = unbounded();
    be.on_registration(move |id, ev| {
        let _ = tx.send((id, ev.clone()));
    });
    be.start().unwrap();
    let opts = RegisterOptions {
        expires: 600,
        ..RegisterOptions::default()
    };
    let start = Instant::now();
    let (mut started, mut done, mut failed) = (0usize, 0usize, 0usize);
    let mut aor = 0u64;
    let mut live = 0usize;
    while done + failed < cycles {
        while live < AT_ONCE && started < cycles {
            aor += 1;
            be.register(&format!("sip:user{aor}@127.0.0.1:{port}"), opts.clone())
                .unwrap();
            started += 1;
            live += 1;
        }
        let Ok((id, ev)) = rx.recv_timeout(Duration::from_secs(30)) else {
            eprintln!("registrations stalled at {done}");
            break;
        };
        match ev {
            RegistrationEvent::Registered { .. } => be.unregister(id).unwrap(),
            RegistrationEvent::Unregistered => {
                done += 1;
                live -= 1;
            }
            RegistrationEvent::Failed { retry_in: None, .. } => {
                failed += 1;
                live -= 1;
                let _ = be.unregister(id);
            }
            _ => {}
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{{\"bench\":\"register\",\"cycles\":{done},\"failed\":{failed},\"transactions\":{},\"seconds\":{secs:.2},\"transactions_per_s\":{:.0}}}",
        2 * done,
        (2 * done) as f64 / secs
    );
    drop(be);
    let _ = sipp.kill();
    let _ = sipp.wait();
}

fn call_setups(calls: usize, in_flight: usize) {
    let (mut sipp, port) = sipp_uas("answer_then_bye.xml", calls);
    let be = Arc::new(backend());
    let (tx, rx) = unbounded();
    be.on_call_state(move |s, p| {
        let _ = tx.send((s, p.state, p.status));
    });
    be.start().unwrap();
    let target = format!("sip:bench@127.0.0.1:{port}");
    let dialed: Arc<Mutex<HashMap<SessionId, Instant>>> = Arc::default();
    let mut setup_ms: Vec<f64> = Vec::with_capacity(calls);
    let (mut started, mut answered, mut failed) = (0usize, 0usize, 0usize);
    let mut live = 0usize;
    let start = Instant::now();
    while answered + failed < calls {
        while live < in_flight && started < calls {
            let opts = DialOptions {
                ring_timeout: Some(Duration::from_secs(30)),
                ..DialOptions::default()
            };
            let s = be.dial(&target, opts).unwrap();
            dialed.lock().insert(s, Instant::now());
            started += 1;
            live += 1;
        }
        let Ok((s, state, status)) = rx.recv_timeout(Duration::from_secs(30)) else {
            eprintln!("calls stalled at {answered}");
            break;
        };
        match state {
            CallState::Answered => {
                if let Some(t) = dialed.lock().remove(&s) {
                    setup_ms.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                answered += 1;
                live -= 1;
                let _ = be.hangup(s);
            }
            CallState::Failed => {
                eprintln!("call failed with {status}");
                dialed.lock().remove(&s);
                failed += 1;
                live -= 1;
            }
            _ => {}
        }
    }
    let secs = start.elapsed().as_secs_f64();
    setup_ms.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        setup_ms
            .get(((setup_ms.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!(
        "{{\"bench\":\"dial\",\"calls\":{answered},\"failed\":{failed},\"in_flight\":{in_flight},\"seconds\":{secs:.2},\"setups_per_s\":{:.0},\"setup_ms_p50\":{:.2},\"setup_ms_p99\":{:.2}}}",
        answered as f64 / secs,
        pct(0.5),
        pct(0.99)
    );
    // Let the BYEs finish before stopping.
    let deadline = Instant::now() + Duration::from_secs(30);
    while be.sip_stats().byes_answered + be.sip_stats().bye_timeouts < answered as u64
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(be);
    let _ = sipp.kill();
    let _ = sipp.wait();
}

fn main() {
    // `cargo bench` passes `--bench`; the numbers are the other arguments.
    let nums: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let cycles = nums.first().copied().unwrap_or(20_000);
    let calls = nums.get(1).copied().unwrap_or(5_000);
    let in_flight = nums.get(2).copied().unwrap_or(50);
    registrations(cycles);
    call_setups(calls, in_flight);
}
