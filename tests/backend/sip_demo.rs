//! `roomkit-media demo` runs a loopback SIP audio + video call, exits 0 and reports that media
//! flowed both ways, every picture arriving bit-exact.

use crate::support;

use support::peers;

use std::time::Duration;

#[test]
fn demo_call_reports_media_both_ways() {
    let child = peers::spawn(60, peers::bin().to_str().unwrap(), &["demo"]);
    let out = peers::wait_bounded(child, Duration::from_secs(60));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = text
        .lines()
        .find(|l| l.starts_with("{\"event\":\"demo\""))
        .expect("demo JSON line");
    assert!(json.contains("\"ok\":true"), "{json}");
    // Every picture that arrived on either side is byte-identical to one that was sent.
    for side in ["server", "caller"] {
        let part = json.split(&format!("\"{side}\":")).nth(1).expect(side);
        let field = |k: &str| -> u64 {
            let v = part.split(&format!("\"{k}\":")).nth(1).expect(k);
            v[..v.find([',', '}']).unwrap()].parse().unwrap()
        };
        assert!(field("frames") > 0, "{json}");
        assert_eq!(field("exact"), field("frames"), "{json}");
    }
}
