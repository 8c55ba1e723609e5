//! Scale-out behind Kamailio: its dispatcher (`tests/kamailio/dispatcher.cfg`) spreads calls
//! round-robin over three `serve --echo` instances, probing each with OPTIONS every second. Our
//! `call` places 15 audio + video calls through it, one every 300 ms; once all are up, one
//! instance is killed (SIGKILL) and 15 more calls follow through the detection window:
//! - the first 15 reached every instance;
//! - calls on the two survivors go on (their media still flows both ways seconds after the
//!   kill) and end cleanly, their in-dialog requests routed by Kamailio's Record-Route to the
//!   instance that took them; the survivors' OPTIONS probes never failed;
//! - the calls on the dead instance are the only failures (nothing comes back once it died);
//! - every later call succeeds on a survivor: those Kamailio still sent to the dead instance
//!   before noticing were retried on the next one (failure_route), and once it noticed (a
//!   missed probe or a timed-out INVITE, within ping interval + transaction timeout) it sent no
//!   new call there.
//!
//! And an instance that is full (`--max-sessions`) answers 503, which Kamailio takes as "try
//! the next one": the caller never sees it.

use crate::support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use support::kamailio::Kamailio;
use support::peers;

/// OPTIONS probe interval (s) and transaction timeout (ms) of the test: a dead instance is
/// noticed within about their sum.
const PING_SECS: u32 = 1;
const FR_MS: u32 = 2000;
/// Calls placed before the kill, and after it.
const BEFORE: usize = 15;
const AFTER: usize = 15;
/// Time between two calls placed.
const GAP: Duration = Duration::from_millis(300);
/// How long the calls last once answered: the first ones span the kill by several seconds.
const LONG_CALL_SECS: &str = "14";
const SHORT_CALL_SECS: &str = "3";
/// Pictures per second each caller sends (and each instance echoes).
const FPS: u32 = 10;

/// One `serve --echo` instance, its JSON lines collected with the time each arrived.
struct Instance {
    /// `timeout`, which runs serve.
    child: Option<Child>,
    /// serve itself (the child of `timeout`); `None` once killed.
    pid: Option<u32>,
    port: u16,
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Instance {
    /// `serve --echo` with `extra` arguments.
    fn start(rtp_ports: &str, extra: &[&str]) -> Instance {
        let mut args = vec!["--echo"];
        args.extend_from_slice(extra);
        let (mut child, port) = peers::spawn_serve(150, rtp_ports, &args);
        let stdout = child.stdout.take().unwrap();
        let lines: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().push((Instant::now(), l));
            }
        });
        // Known before anything can fail, so that dropping the instance always ends serve.
        let pid = child_of(child.id());
        let i = Instance {
            child: Some(child),
            pid,
            port,
            lines,
        };
        assert!(i.pid.is_some(), "no serve process under timeout");
        assert!(
            support::wait_until(Duration::from_secs(30), || !i
                .events("listening")
                .is_empty()),
            "serve on {port} did not start"
        );
        i
    }

    /// The lines of event `kind`, with their arrival times.
    fn events(&self, kind: &str) -> Vec<(Instant, String)> {
        let tag = format!("\"event\":\"{kind}\"");
        self.lines
            .lock()
            .iter()
            .filter(|(_, l)| l.contains(&tag))
            .cloned()
            .collect()
    }

    /// The Call-IDs of the calls this instance answered.
    fn call_ids(&self) -> Vec<String> {
        self.events("call")
            .iter()
            .map(|(_, l)| text(l, "call_id"))
            .collect()
    }

    /// Whether this instance reported video of call `call_id` received after `t`.
    fn frames_after(&self, call_id: &str, t: Instant) -> bool {
        self.events("frame")
            .iter()
            .any(|(at, l)| *at > t && text(l, "call_id") == call_id)
    }

    /// SIGKILL to serve itself: no BYE, no goodbye, its sockets just close.
    fn kill_hard(&mut self) {
        if let Some(pid) = self.pid.take() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }

    fn everything(&self) -> String {
        let lines: Vec<String> = self.lines.lock().iter().map(|(_, l)| l.clone()).collect();
        lines.join("\n")
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill_hard();
        if let Some(c) = self.child.take() {
            let _ = peers::wait_bounded(c, Duration::from_secs(10));
        }
    }
}

/// The (first) child process of `pid`, from /proc.
fn child_of(pid: u32) -> Option<u32> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let list =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        if let Some(c) = list.split_whitespace().next().and_then(|c| c.parse().ok()) {
            return Some(c);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// A `call` placed through Kamailio.
struct Placed {
    child: Option<Child>,
    placed_at: Instant,
}

impl Drop for Placed {
    fn drop(&mut self) {
        // Only on a failed test: `timeout` passes the TERM on, and `call` hangs up.
        if let Some(c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let _ = peers::wait_bounded(c, Duration::from_secs(10));
        }
    }
}

/// What one `call` printed and how it exited.
struct Outcome {
    placed_at: Instant,
    ok: bool,
    /// The closing summary line (empty when the call failed before it).
    summary: String,
    all: String,
}

impl Outcome {
    fn call_id(&self) -> String {
        text(&self.summary, "call_id")
    }

    /// Whether our BYE got a final answer (from the instance, or Kamailio's 408 for a dead one).
    fn bye_answered(&self) -> bool {
        self.summary.contains("\"bye_answered\":true")
    }
}

/// Places `n` calls to `target`, one every [`GAP`], each lasting `seconds` once answered; the
/// `index`-th call of the test takes its RTP ports from a range of its own.
fn place(target: &str, n: usize, first_index: usize, seconds: &str) -> Vec<Placed> {
    (0..n)
        .map(|k| {
            if k > 0 {
                std::thread::sleep(GAP);
            }
            let base = 42000 + 20 * (first_index + k);
            let ports = format!("{base}-{}", base + 19);
            let child = peers::spawn(
                90,
                peers::bin().to_str().unwrap(),
                &[
                    "call",
                    target,
                    "--seconds",
                    seconds,
                    "--fps",
                    &FPS.to_string(),
                    "--rtp-ports",
                    &ports,
                ],
            );
            Placed {
                child: Some(child),
                placed_at: Instant::now(),
            }
        })
        .collect()
}

/// Waits (bounded) for every call to finish.
fn finish(calls: Vec<Placed>) -> Vec<Outcome> {
    calls
        .into_iter()
        .map(|mut p| {
            let out: Output = peers::wait_bounded(p.child.take().unwrap(), Duration::from_secs(60));
            let stdout = String::from_utf8_lossy(&out.stdout).to_string();
            let summary = stdout
                .lines()
                .rev()
                .find(|l| l.contains("\"bye_answered\""))
                .unwrap_or_default()
                .to_string();
            Outcome {
                placed_at: p.placed_at,
                ok: out.status.success(),
                summary,
                all: format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)),
            }
        })
        .collect()
}

/// A call that ended as calls end: hung up by the caller, whose BYE the instance that took it
/// answered, and the instance saw the end of the dialog.
///
/// `call` hangs up by closing its media (RTCP BYE, straight to the instance) before its SIP
/// thread sends the BYE (through Kamailio, one hop longer); the instance waits for that BYE
/// rather than sending its own across it (`sip_ua`'s grace after RTCP BYE).
fn assert_ended_cleanly(instance: &Instance, o: &Outcome, context: &str) {
    let id = o.call_id();
    let ended = o.all.contains("\"state\":\"ended\"");
    assert!(
        ended && o.bye_answered() && !o.all.contains("the far end hung up"),
        "{id} did not end cleanly:\n{}\n{context}",
        o.all
    );
    let seen = support::wait_until(Duration::from_secs(5), || {
        instance
            .events("hangup")
            .iter()
            .any(|(_, l)| text(l, "call_id") == id)
    });
    assert!(
        seen,
        "instance {} never saw {id} end:\n{context}",
        instance.port
    );
}

/// The string value of `"key":"..."` in a JSON line ("" when absent).
fn text(line: &str, key: &str) -> String {
    let tag = format!("\"{key}\":\"");
    line.split_once(&tag)
        .and_then(|(_, rest)| rest.split('"').next())
        .unwrap_or_default()
        .to_string()
}

/// The integer value of `"key":N` in a JSON line (-1 when absent).
fn number(line: &str, key: &str) -> i64 {
    let tag = format!("\"{key}\":");
    line.split_once(&tag)
        .and_then(|(_, rest)| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(-1)
}

#[test]
fn kamailio_dispatcher_spreads_calls_and_fails_over_when_an_instance_dies() {
    if !peers::have_peers(&["kamailio"]) {
        return;
    }
    let mut instances: Vec<Instance> = ["41000-41199", "41200-41399", "41400-41599"]
        .iter()
        .map(|r| Instance::start(r, &[]))
        .collect();
    let ports: Vec<u16> = instances.iter().map(|i| i.port).collect();
    let Some(k) = Kamailio::dispatcher(&ports, PING_SECS, FR_MS, 150) else {
        return;
    };
    let target = format!("sip:room@{}", k.addr());
    let dump = |instances: &[Instance]| -> String {
        let serves: Vec<String> = instances.iter().map(Instance::everything).collect();
        format!(
            "--- kamailio ---\n{}\n--- serves ---\n{}",
            k.script_lines().join("\n"),
            serves.join("\n---\n")
        )
    };

    // Phase 1: long calls, spread over the three instances.
    let long = place(&target, BEFORE, 0, LONG_CALL_SECS);
    let all_up = support::wait_until(Duration::from_secs(40), || {
        instances.iter().map(|i| i.call_ids().len()).sum::<usize>() >= BEFORE
    });
    assert!(all_up, "not every call was answered:\n{}", dump(&instances));
    let spread: Vec<usize> = instances.iter().map(|i| i.call_ids().len()).collect();
    // Round-robin gives 5 each; a probe answered late on a loaded machine can skip an instance
    // for a moment.
    assert!(
        spread.iter().all(|&n| n >= 2),
        "calls per instance {spread:?}:\n{}",
        dump(&instances)
    );
    // Media flows on every call before the kill.
    std::thread::sleep(Duration::from_secs(1));

    // Kill the middle instance while it carries calls.
    let dead = 1;
    let dead_port = instances[dead].port;
    let dead_calls = instances[dead].call_ids();
    let survivors_calls: Vec<(usize, String)> = instances
        .iter()
        .enumerate()
        .filter(|(n, _)| *n != dead)
        .flat_map(|(n, i)| i.call_ids().into_iter().map(move |c| (n, c)))
        .collect();
    let dead_uri = format!("127.0.0.1:{dead_port}");
    instances[dead].kill_hard();
    // After `kill` returned: the instance died before this instant (on a loaded machine,
    // starting `kill` alone can take a while).
    let killed_at = Instant::now();

    // Phase 2: short calls through the detection window and after it, while a watcher reads
    // Kamailio's log for the moment it marks the instance down.
    let (short, detected) = std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            k.wait_line(&["down", &dead_uri], Duration::from_secs(20))
                .map(|_| killed_at.elapsed())
        });
        let short = place(&target, AFTER, BEFORE, SHORT_CALL_SECS);
        (short, watcher.join().unwrap())
    });
    let short = finish(short);
    let long = finish(long);
    let script = k.script_lines();
    let context = format!(
        "{}\n--- calls ---\n{}",
        dump(&instances),
        long.iter()
            .chain(&short)
            .map(|o| o.all.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    let detection =
        detected.unwrap_or_else(|| panic!("Kamailio never marked {dead_uri} down:\n{context}"));
    let retried = script
        .iter()
        .filter(|l| l.starts_with("retry INVITE"))
        .count();
    let down = script
        .iter()
        .find(|l| l.starts_with("down") && l.contains(&dead_uri))
        .cloned()
        .unwrap_or_default();
    eprintln!(
        "dispatcher: calls per instance before the kill {spread:?}; the instance on {dead_uri} \
         was marked down {detection:?} after it was killed ({down}); {retried} INVITEs retried \
         on another instance"
    );
    // The probes of the survivors were answered all along (serve answers OPTIONS with 200).
    for (n, i) in instances.iter().enumerate().filter(|(n, _)| *n != dead) {
        let uri = format!("127.0.0.1:{}", i.port);
        assert!(
            !script
                .iter()
                .any(|l| l.starts_with("down") && l.contains(&uri)),
            "survivor {n} was marked down:\n{context}"
        );
    }
    // Calls placed in the first seconds after the kill met the instance still marked up:
    // nothing can notice the death sooner than a transaction timeout (FR_MS), and round-robin
    // gives it one call in three in the meantime. Kamailio retried those on a survivor.
    assert!(retried >= 1, "no INVITE was retried:\n{context}");
    // Marked down within a probe interval plus a transaction timeout, with margin for a
    // loaded machine.
    assert!(
        detection < Duration::from_secs(10),
        "detection took {detection:?}:\n{context}"
    );

    // The calls on the dead instance: nothing came back once it was killed. (Their BYE still
    // got a final answer: Kamailio's 408.)
    for o in &long {
        let id = o.call_id();
        assert!(
            o.ok,
            "a call failed before its summary:\n{}\n{context}",
            o.all
        );
        let before_kill = killed_at.duration_since(o.placed_at).as_secs_f64();
        if dead_calls.contains(&id) {
            // At most what was sent before the kill: the caller sends FPS pictures a second
            // from its answer on, which came after it was placed.
            let ceiling = (before_kill * f64::from(FPS)) as i64 + 2;
            assert!(
                number(&o.summary, "frames_received") <= ceiling,
                "{id} on the killed instance received more than {ceiling} pictures: {}",
                o.summary
            );
            continue;
        }
        // Every other call was on a survivor, and went on after the kill.
        let (n, _) = survivors_calls
            .iter()
            .find(|(_, c)| *c == id)
            .unwrap_or_else(|| panic!("call {id} on no instance:\n{context}"));
        assert_ended_cleanly(&instances[*n], o, &context);
        assert!(o.summary.contains("\"has_video\":true"), "{}", o.summary);
        // The instance still received its video three seconds after the kill (past detection),
        // and the caller got echoed pictures for the whole call, not just before the kill.
        assert!(
            instances[*n].frames_after(&id, killed_at + Duration::from_secs(3)),
            "no video of {id} at instance {n} after the kill:\n{context}"
        );
        let floor = (before_kill * f64::from(FPS)) as i64 + 2 * i64::from(FPS);
        assert!(
            number(&o.summary, "frames_received") >= floor,
            "{id} received too few echoed pictures (placed {before_kill:.1} s before the \
             kill, floor {floor}): {}",
            o.summary
        );
        assert!(
            number(&o.summary, "audio_frames_received") >= 200,
            "{}",
            o.summary
        );
    }
    assert!(!dead_calls.is_empty());

    // Every call placed after the kill succeeded on a survivor.
    for o in &short {
        let id = o.call_id();
        assert!(o.ok, "{}\n{context}", o.all);
        let n = (0..instances.len())
            .find(|&n| n != dead && instances[n].call_ids().contains(&id))
            .unwrap_or_else(|| panic!("{id} on no survivor:\n{context}"));
        assert_ended_cleanly(&instances[n], o, &context);
        assert!(o.summary.contains("\"has_video\":true"), "{}", o.summary);
        assert!(number(&o.summary, "frames_received") >= 10, "{}", o.summary);
        // Sent to the dead instance before Kamailio noticed: retried on the next one.
        let to_dead = script
            .iter()
            .any(|l| l.starts_with("dispatch INVITE") && l.contains(&id) && l.contains(&dead_uri));
        if to_dead {
            assert!(
                script
                    .iter()
                    .any(|l| l.starts_with("retry INVITE") && l.contains(&id)),
                "{id} went to the dead instance and was not retried:\n{context}"
            );
        }
    }
    // Once Kamailio marked the instance down, no new call went there.
    let down_at = script
        .iter()
        .position(|l| l.starts_with("down") && l.contains(&dead_uri))
        .unwrap();
    assert!(
        !script[down_at..]
            .iter()
            .any(|l| l.starts_with("dispatch INVITE") && l.contains(&dead_uri)),
        "a call went to {dead_uri} after it was marked down:\n{context}"
    );
    // Every in-dialog request of a survivor's call stayed with its instance.
    for (n, id) in &survivors_calls {
        let port = format!("127.0.0.1:{}", instances[*n].port);
        for l in script
            .iter()
            .filter(|l| l.starts_with("in-dialog") && l.contains(id.as_str()))
        {
            // Towards serve (its Contact user is roomkit), never to another instance.
            if l.contains("sip:roomkit@") {
                assert!(l.contains(&port), "{l} left instance {n}");
            }
        }
    }
}

/// An instance that is full answers 503 (`serve --max-sessions 1`): Kamailio retries the call on
/// the next instance instead of passing the refusal on, and the caller never sees it.
#[test]
fn kamailio_dispatcher_retries_a_call_a_full_instance_refuses() {
    if !peers::have_peers(&["kamailio"]) {
        return;
    }
    let full = Instance::start("41600-41699", &["--max-sessions", "1"]);
    let roomy = Instance::start("41700-41899", &[]);
    let Some(k) = Kamailio::dispatcher(&[full.port, roomy.port], PING_SECS, FR_MS, 90) else {
        return;
    };
    let target = format!("sip:room@{}", k.addr());
    // Round-robin gives each instance two of the four; the full one can hold only one.
    let calls = finish(place(&target, 4, 2 * (BEFORE + AFTER), "4"));
    let script = k.script_lines();
    let context = format!(
        "--- kamailio ---\n{}\n--- full ---\n{}\n--- roomy ---\n{}\n--- calls ---\n{}",
        script.join("\n"),
        full.everything(),
        roomy.everything(),
        calls
            .iter()
            .map(|o| o.all.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    for o in &calls {
        assert!(o.ok, "{}\n{context}", o.all);
        let id = o.call_id();
        let on = if full.call_ids().contains(&id) {
            &full
        } else {
            &roomy
        };
        assert_ended_cleanly(on, o, &context);
    }
    assert_eq!(full.call_ids().len(), 1, "{context}");
    assert_eq!(roomy.call_ids().len(), 3, "{context}");
    let full_uri = format!("127.0.0.1:{}", full.port);
    let refused = script
        .iter()
        .find(|l| l.starts_with("failed INVITE") && l.contains(&full_uri) && l.contains("(503)"))
        .unwrap_or_else(|| panic!("no 503 from the full instance:\n{context}"));
    let id = refused.split_whitespace().nth(3).unwrap_or_default();
    assert!(
        script
            .iter()
            .any(|l| l.starts_with("retry INVITE") && l.contains(id)),
        "{id} was not retried:\n{context}"
    );
}
