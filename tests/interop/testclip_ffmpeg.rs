//! The built-in test clip (I_PCM + P-skip H.264) is real H.264: ffmpeg decodes every picture of
//! it without a complaint, and consecutive pictures differ.

use crate::support;

use support::peers;

use peers::*;
use roomkit_media::codec::testclip::TestClip;
use std::process::Command;

#[test]
fn ffmpeg_decodes_every_test_picture() {
    if !have_peers(&["ffmpeg"]) {
        return;
    }
    let dir = TempDir::new("testclip");
    let path = dir.path("clip.h264");
    let mut clip = TestClip::new(160, 96, 15);
    let mut bytes = Vec::new();
    for _ in 0..45 {
        bytes.extend(clip.next_picture().0);
    }
    std::fs::write(&path, &bytes).unwrap();
    let out = Command::new("timeout")
        .args([
            "60",
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-i",
            path.to_str().unwrap(),
            "-f",
            "framemd5",
            "-",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.trim().is_empty(), "ffmpeg complained: {stderr}");
    let md5s = frame_md5s(&path, &[]);
    assert_eq!(md5s.len(), 45);
    assert!(
        md5s.windows(2).all(|w| w[0] != w[1]),
        "a picture repeats the one before it"
    );
}
