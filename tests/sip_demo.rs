//! `roomkit-media demo` runs a loopback SIP audio + video call, exits 0 and reports that media
//! flowed both ways.

mod common;

use std::time::Duration;

#[test]
fn demo_call_reports_media_both_ways() {
    let child = common::spawn(60, common::bin().to_str().unwrap(), &["demo"]);
    let out = common::wait_bounded(child, Duration::from_secs(60));
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
    assert!(json.contains("\"synthetic_video\":true"), "{json}");
    assert!(
        text.contains("synthetic"),
        "the output says the video is synthetic"
    );
}
