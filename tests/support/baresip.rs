//! baresip, the real softphone, headless: the media it plays (generated with ffmpeg) and its
//! configuration from the templates in `tests/data/baresip/`.

use std::path::{Path, PathBuf};

use super::peers::{self, TempDir};

/// What baresip plays in a call: an 8 kHz mono tone (`tone.wav`, 440 Hz) and an H.264 test
/// pattern at 30 fps (`video.mp4`, libx264 with a key picture every `gop` pictures).
pub struct Media {
    pub wav: PathBuf,
    pub mp4: PathBuf,
}

impl Media {
    /// Generates both files in `dir`, `seconds` long (longer than the call: the file source
    /// does not loop).
    pub fn generate(dir: &TempDir, seconds: u32, size: &str, gop: u32) -> Media {
        let media = Media {
            wav: dir.path("tone.wav"),
            mp4: dir.path("video.mp4"),
        };
        let t = seconds.to_string();
        peers::run(
            120,
            "ffmpeg",
            &[
                "-nostdin",
                "-v",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:sample_rate=8000",
                "-t",
                &t,
                "-ac",
                "1",
                "-c:a",
                "pcm_s16le",
                media.wav.to_str().unwrap(),
            ],
        );
        let src = format!("testsrc=size={size}:rate=30");
        let g = gop.to_string();
        peers::run(
            180,
            "ffmpeg",
            &[
                "-nostdin",
                "-v",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                &src,
                "-t",
                &t,
                "-pix_fmt",
                "yuv420p",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-g",
                &g,
                media.mp4.to_str().unwrap(),
            ],
        );
        media
    }
}

/// Writes a baresip configuration directory `dir/baresip` listening on `sip_port` with its RTP
/// in `rtp_ports` ("A-B"), playing `media`, with `accounts` (already filled in) as its account
/// file. Returns the directory, for `baresip -f`.
pub fn write_config(
    dir: &TempDir,
    sip_port: u16,
    rtp_ports: &str,
    media: &Media,
    accounts: &str,
) -> PathBuf {
    let conf = dir.path("baresip");
    std::fs::create_dir_all(&conf).unwrap();
    let config = template("config")
        .replace("@SIP_PORT@", &sip_port.to_string())
        .replace("@WAV@", media.wav.to_str().unwrap())
        .replace("@VIDEO@", media.mp4.to_str().unwrap())
        .replace("40000-40100", rtp_ports);
    std::fs::write(conf.join("config"), config).unwrap();
    std::fs::write(conf.join("accounts"), accounts).unwrap();
    conf
}

/// The text of `tests/data/baresip/NAME.template`.
pub fn template(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/baresip")
        .join(format!("{name}.template"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
