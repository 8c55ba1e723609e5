//! The 49 RFC 4475 torture messages sent over UDP to a running `SipVideoBackend`: none may stop
//! it, invalid ones never get a 2xx, and after every message a clean OPTIONS still gets its 200.

use crate::support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use roomkit_media::backend::SipVideoBackend;
use support::sip::*;

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/rfc4475")
}

/// The Call-ID of a message (full or compact header name), to tell this message's answers from
/// late retransmissions for earlier ones.
fn call_id(msg: &str) -> Option<String> {
    msg.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        let n = n.trim().to_ascii_lowercase();
        (n == "call-id" || n == "i").then(|| v.trim().to_string())
    })
}

#[test]
fn every_torture_message_leaves_the_backend_serving() {
    let dir = corpus_dir();
    let manifest = std::fs::read_to_string(dir.join("MANIFEST.tsv")).expect("MANIFEST.tsv");
    let mut cfg = config(20);
    cfg.answer_after = Duration::ZERO;
    let be = SipVideoBackend::new(cfg).unwrap();
    let ua = RawUa::new(start(&be));
    let mut sent = 0;
    for line in manifest
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let cols: Vec<&str> = line.split('\t').collect();
        let (file, class) = (cols[0], cols[2]);
        let bytes = std::fs::read(dir.join(file)).unwrap();
        ua.send_bytes(&bytes);
        sent += 1;
        // Whatever comes back within a moment; invalid messages must not be accepted.
        let end = Instant::now() + Duration::from_millis(150);
        while Instant::now() < end {
            if let Some(m) = ua.recv(Duration::from_millis(30)) {
                if class == "invalid" && call_id(&m) == call_id(&String::from_utf8_lossy(&bytes)) {
                    assert!(!m.starts_with("SIP/2.0 2"), "{file} (invalid) got {m}");
                }
            }
        }
        let leg = Leg::new();
        ua.send(&ua.request("OPTIONS", &leg, "", ""));
        let ok = ua.expect_status(200, "OPTIONS", Duration::from_secs(3));
        assert!(
            header(&ok, "Call-ID").unwrap() == leg.call_id,
            "after {file}"
        );
    }
    assert_eq!(sent, 49);
    let st = be.sip_stats();
    assert!(st.rejected + st.dropped > 0, "{st:?}");
}
