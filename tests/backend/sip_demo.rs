//! `roomkit-media demo` runs a loopback SIP audio + video call, exits 0 and reports that media
//! flowed both ways, every picture arriving bit-exact; `demo --secure` does the same over TLS
//! signalling (a certificate verified against the demo's own CA) with SRTP on both streams.

use crate::support;

use support::peers;

use std::time::Duration;

/// Runs `demo` with `args`, checks it passed and that every picture that arrived on either side
/// is byte-identical to one that was sent, and returns its JSON line.
fn demo(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["demo"];
    all.extend_from_slice(args);
    let child = peers::spawn(60, peers::bin().to_str().unwrap(), &all);
    let out = peers::wait_bounded(child, Duration::from_secs(60));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = text
        .lines()
        .find(|l| l.starts_with("{\"event\":\"demo\""))
        .expect("demo JSON line");
    let json: serde_json::Value = serde_json::from_str(line).expect("demo JSON");
    assert_eq!(json["ok"], true, "{json}");
    let sent = json["pictures_sent"].as_u64().expect("pictures_sent");
    for side in ["server", "caller"] {
        let s = &json[side];
        let (frames, exact) = (s["frames"].as_u64().unwrap(), s["exact"].as_u64().unwrap());
        // Floors with margin: a loaded machine may delay, but media must have arrived.
        assert!(frames * 3 >= sent * 2, "{side}: {frames}/{sent}: {json}");
        assert_eq!(exact, frames, "{side}: {json}");
        assert!(s["keyframes"].as_u64().unwrap() >= 1, "{json}");
        assert!(s["audio_frames"].as_u64().unwrap() >= 30, "{json}");
    }
    json
}

#[test]
fn demo_call_reports_media_both_ways() {
    let json = demo(&[]);
    assert_eq!(json["sip_transport"], "udp", "{json}");
    assert!(json["tls_version"].is_null(), "{json}");
    for side in ["server", "caller"] {
        assert!(json[side]["audio_srtp"].is_null(), "{json}");
        assert!(json[side]["video_srtp"].is_null(), "{json}");
    }
}

#[test]
fn secure_demo_runs_over_tls_and_srtp() {
    let json = demo(&["--secure"]);
    assert_eq!(json["sip_transport"], "tls", "{json}");
    let version = json["tls_version"].as_str().expect("a TLS version");
    assert!(version.starts_with("TLSv1_"), "{json}");
    assert!(json["tls_cipher_suite"].as_str().is_some(), "{json}");
    for side in ["server", "caller"] {
        for stream in ["audio_srtp", "video_srtp"] {
            let suite = json[side][stream].as_str();
            assert!(
                suite.is_some_and(|s| s.starts_with("AES")),
                "{side} {stream}: {json}"
            );
        }
    }
}
