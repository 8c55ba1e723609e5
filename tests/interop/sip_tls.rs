//! SIP over TCP and TLS with real peers: sipp (`-t t1`: this sipp has no TLS) drives
//! `serve --sip-tcp` through audio and A/V calls and a small load; baresip calls
//! `serve --sip-tls` over TLS, checking our certificate against the CA the test made.

use crate::support;

use std::io::{BufRead, BufReader};
use std::time::Duration;

use support::baresip::{have_modules, write_config, Media};
use support::peers::{self, listening_port, TempDir};
use support::tls::Pki;

/// `serve` with `extra`, its `listening` line, and a reader of the rest.
pub(crate) fn serve(
    rtp: &str,
    extra: &[&str],
) -> (
    std::process::Child,
    String,
    std::io::Lines<BufReader<std::process::ChildStdout>>,
) {
    let (mut child, _) = peers::spawn_serve(180, rtp, extra);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().expect("serve output").unwrap();
    assert!(first.contains("\"listening\""), "{first}");
    (child, first, lines)
}

pub(crate) fn finish(
    child: std::process::Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
) -> Vec<String> {
    let out = peers::wait_bounded(child, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "serve failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    lines.map_while(Result::ok).collect()
}

pub(crate) fn count(lines: &[String], event: &str) -> usize {
    let tag = format!("\"event\":\"{event}\"");
    lines.iter().filter(|l| l.contains(&tag)).count()
}

#[test]
fn sipp_over_tcp_audio_av_and_load() {
    if !peers::have_peers(&["sipp"]) {
        return;
    }
    let (child, first, lines) = serve(
        "37000-37599",
        &["--sip-tcp", "127.0.0.1:0", "--max-calls", "12"],
    );
    let tcp = listening_port(&first, "sip_tcp");
    let target = format!("127.0.0.1:{tcp}");
    support::sipp::run(
        &support::sipp::scenario("audio_only.xml"),
        &target,
        &["-t", "t1", "-d", "200"],
    );
    support::sipp::run(
        &support::sipp::scenario("av_call.xml"),
        &target,
        &["-t", "t1", "-d", "500"],
    );
    // Ten calls, five at a time, on sipp's one connection.
    support::sipp::run(
        &support::sipp::scenario("audio_only.xml"),
        &target,
        &["-t", "t1", "-d", "300", "-m", "10", "-r", "20", "-l", "5"],
    );
    let lines = finish(child, lines);
    assert_eq!(count(&lines, "call"), 12, "{lines:?}");
    assert!(
        lines
            .iter()
            .filter(|l| l.contains("\"event\":\"call\""))
            .all(|l| l.contains("\"transport\":\"tcp\"")),
        "{lines:?}"
    );
}

#[test]
fn baresip_calls_serve_over_tls() {
    if !peers::have_peers(&["baresip", "ffmpeg"]) || !have_modules(&["g711.so", "avcodec.so"]) {
        return;
    }
    let dir = TempDir::new("baresip-tls");
    let pki = Pki::new("baresip");
    let (conf, _) = baresip_tls_config(&dir, &pki, "40200-40299");
    let mut args = pki.serve_tls_args(None);
    args.extend(["--max-calls".into(), "1".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (child, first, lines) = serve("37600-37799", &args);
    let tls = listening_port(&first, "sip_tls");
    let dial = format!("/dial sip:test@127.0.0.1:{tls};transport=tls");
    let b = peers::spawn(
        60,
        "baresip",
        &["-4", "-f", conf.to_str().unwrap(), "-e", &dial, "-t", "5"],
    );
    let b_out = peers::wait_bounded(b, Duration::from_secs(60));
    let baresip = format!(
        "{}{}",
        String::from_utf8_lossy(&b_out.stdout),
        String::from_utf8_lossy(&b_out.stderr)
    );
    let lines = finish(child, lines);
    let call = lines
        .iter()
        .find(|l| l.contains("\"event\":\"call\""))
        .unwrap_or_else(|| panic!("no call: {lines:?}\n--- baresip ---\n{baresip}"));
    assert!(call.contains("\"transport\":\"tls\""), "{call}");
    assert_eq!(count(&lines, "hangup"), 1, "{lines:?}\n{baresip}");
    // baresip sends about 5 s of 30 fps video once the call is up (it stays up: the ACK reaches
    // our `sip:...;transport=tls` Contact); a loaded machine may start it late.
    let frames = hangup_frames(&lines);
    assert!(frames >= 30, "{frames} pictures: {lines:?}\n{baresip}");
}

/// baresip with a TLS listener (its SIP port + 1) and the test's certificate for 127.0.0.1;
/// `config` gets the TLS lines appended.
fn baresip_tls_config(dir: &TempDir, pki: &Pki, rtp: &str) -> (std::path::PathBuf, u16) {
    let media = Media::generate(dir, 12, "320x240", 30);
    let bport = peers::free_udp_port();
    let conf = write_config(
        dir,
        bport,
        rtp,
        &media,
        &support::baresip::template("accounts").replace("@SIP_PORT@", &bport.to_string()),
    );
    let mut config = std::fs::read_to_string(conf.join("config")).unwrap();
    config.push_str(&format!(
        "sip_certificate\t{}\nsip_cafile\t{}\n",
        pki.path("cert_and_key.pem").display(),
        pki.path("ca.pem").display()
    ));
    std::fs::write(conf.join("config"), config).unwrap();
    (conf, bport)
}

#[test]
fn our_call_reaches_baresip_over_tls_verified() {
    if !peers::have_peers(&["baresip", "ffmpeg"]) || !have_modules(&["g711.so", "avcodec.so"]) {
        return;
    }
    let dir = TempDir::new("baresip-tls-uas");
    let pki = Pki::new("baresip-uas");
    let (conf, bport) = baresip_tls_config(&dir, &pki, "40300-40399");
    // Without -e baresip answers calls itself.
    let baresip = peers::spawn(
        60,
        "baresip",
        &["-4", "-f", conf.to_str().unwrap(), "-t", "12"],
    );
    assert!(
        peers::wait_udp_bound(bport, Duration::from_secs(10)),
        "baresip listens"
    );
    let ca = pki.path("ca.pem");
    let support::baresip::OurCall {
        output: call,
        ours,
        theirs,
    } = support::baresip::call_baresip(
        baresip,
        &format!("sip:baresip@127.0.0.1:{};transport=tls", bport + 1),
        &[
            "--tls-ca",
            ca.to_str().unwrap(),
            "--audio-only",
            "--seconds",
            "2",
        ],
    );
    assert!(
        call.status.success()
            && ours.contains("\"transport\":\"tls\"")
            && ours.contains("\"bye_answered\":true"),
        "our call: {ours}{}\n--- baresip ---\n{theirs}",
        String::from_utf8_lossy(&call.stderr)
    );
}

/// The issue's secure call: baresip (its `srtp` module, `mediaenc=srtp-mand`) calls
/// `serve --sip-tls --srtp mandatory` over TLS; both streams are SRTP and the video it sends
/// arrives, decrypted, as pictures.
#[test]
fn baresip_calls_serve_over_tls_with_srtp_mandatory() {
    if !peers::have_peers(&["baresip", "ffmpeg"])
        || !have_modules(&["g711.so", "avcodec.so", "srtp.so"])
    {
        return;
    }
    let dir = TempDir::new("baresip-tls-srtp");
    let pki = Pki::new("baresip-srtp");
    let (conf, _) = baresip_tls_config(&dir, &pki, "40400-40499");
    let accounts = std::fs::read_to_string(conf.join("accounts")).unwrap();
    std::fs::write(
        conf.join("accounts"),
        accounts.replace("answermode=auto", "answermode=auto;mediaenc=srtp-mand"),
    )
    .unwrap();
    let config = std::fs::read_to_string(conf.join("config")).unwrap();
    std::fs::write(
        conf.join("config"),
        config.replacen(
            "module\t\t\tg711.so",
            "module\t\t\tg711.so\nmodule\t\t\tsrtp.so",
            1,
        ),
    )
    .unwrap();
    let mut args = pki.serve_tls_args(Some("mandatory"));
    args.extend(["--max-calls".into(), "1".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (child, first, lines) = serve("37800-37999", &args);
    let tls = listening_port(&first, "sip_tls");
    let dial = format!("/dial sip:test@127.0.0.1:{tls};transport=tls");
    let b = peers::spawn(
        60,
        "baresip",
        &["-4", "-f", conf.to_str().unwrap(), "-e", &dial, "-t", "6"],
    );
    let b_out = peers::wait_bounded(b, Duration::from_secs(60));
    let baresip = format!(
        "{}{}",
        String::from_utf8_lossy(&b_out.stdout),
        String::from_utf8_lossy(&b_out.stderr)
    );
    let lines = finish(child, lines);
    let call = lines
        .iter()
        .find(|l| l.contains("\"event\":\"call\""))
        .unwrap_or_else(|| panic!("no call: {lines:?}\n--- baresip ---\n{baresip}"));
    assert!(call.contains("\"transport\":\"tls\""), "{call}");
    assert!(
        call.contains("\"audio_srtp\":\"AES_CM_128_HMAC_SHA1_80\""),
        "{call}\n{baresip}"
    );
    let ready = lines
        .iter()
        .find(|l| l.contains("\"event\":\"video_ready\""))
        .unwrap_or_else(|| panic!("no video: {lines:?}\n{baresip}"));
    assert!(
        ready.contains("\"srtp\":\"AES_CM_128_HMAC_SHA1_80\""),
        "{ready}"
    );
    let frames = hangup_frames(&lines);
    eprintln!("baresip -> serve over TLS + SRTP: {frames} pictures");
    assert!(frames >= 30, "{lines:?}\n{baresip}");
}

/// The pictures `serve` received in the call, from its `hangup` line.
fn hangup_frames(lines: &[String]) -> u64 {
    let hangup = lines
        .iter()
        .find(|l| l.contains("\"event\":\"hangup\""))
        .unwrap_or_else(|| panic!("no hangup: {lines:?}"));
    hangup
        .split("\"frames\":")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}
