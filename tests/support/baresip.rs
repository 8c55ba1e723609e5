//! baresip, the real softphone, headless: the media it plays (generated with ffmpeg), its
//! configuration from the templates in `tests/data/baresip/` (audio and video, or audio only
//! with chosen codec modules), and the 16-bit PCM WAV files it (and `serve --record`) write.

use std::path::{Path, PathBuf};

use super::peers::{self, in_ci, TempDir};

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
        peers::make_tone_wav(&media.wav, 440.0, 8000, 1, seconds);
        let t = seconds.to_string();
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

/// Where baresip's modules are installed (the templates' `module_path`).
const MODULE_DIR: &str = "/usr/lib/baresip/modules";

/// Checks that baresip has every module in `modules` (`g722.so`, `opus.so`, ...). Returns false
/// (after printing why) when the test should be skipped; panics under CI.
pub fn have_modules(modules: &[&str]) -> bool {
    for m in modules {
        if !Path::new(MODULE_DIR).join(m).exists() {
            if in_ci() {
                panic!("baresip module `{m}` is missing (CI=true): install baresip-core");
            }
            eprintln!("SKIP: baresip module `{m}` is not installed");
            return false;
        }
    }
    true
}

/// Writes an audio-only baresip configuration into `conf`: SIP on `sip_port`, the audio source
/// `wav`, the audio codecs `codec_modules` instead of G.711 (the first module is preferred),
/// and `extra` configuration lines. Video modules are left out.
pub fn write_audio_config(
    conf: &Path,
    sip_port: u16,
    wav: &Path,
    codec_modules: &[&str],
    extra: &[&str],
) {
    std::fs::create_dir_all(conf).unwrap();
    for name in ["config", "accounts"] {
        let t = template(name)
            .replace("@SIP_PORT@", &sip_port.to_string())
            .replace("@WAV@", wav.to_str().unwrap())
            .replace("@VIDEO@", "/nonexistent");
        let mut out = String::new();
        let mut replaced = false;
        for line in t.lines() {
            let module = line
                .strip_prefix("module")
                .filter(|_| !line.starts_with("module_"))
                .map(str::trim);
            match module {
                Some("g711.so") => {
                    for m in codec_modules {
                        out.push_str(&format!("module\t\t\t{m}\n"));
                    }
                    replaced = true;
                }
                Some("avcodec.so" | "avformat.so" | "fakevideo.so") => {}
                _ if line.starts_with("video_") || line.starts_with("avcodec_") => {}
                _ => {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        if name == "config" {
            assert!(replaced, "the config template no longer loads g711.so");
            for l in extra {
                out.push_str(l);
                out.push('\n');
            }
        }
        std::fs::write(conf.join(name), out).unwrap();
    }
}

/// A 16-bit PCM WAV file's rate, channel count and samples (interleaved).
pub struct Wav {
    pub rate: u32,
    pub channels: u16,
    pub samples: Vec<i16>,
}

impl Wav {
    /// The first channel.
    pub fn mono(&self) -> Vec<i16> {
        self.samples
            .iter()
            .step_by(usize::from(self.channels.max(1)))
            .copied()
            .collect()
    }
}

/// Reads a 16-bit PCM WAV file, walking its chunks (a `data` size of 0, from a writer that was
/// stopped, means "to the end").
pub fn read_wav(path: &Path) -> Wav {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        b.len() >= 12 && &b[..4] == b"RIFF" && &b[8..12] == b"WAVE",
        "not a WAV"
    );
    let (mut rate, mut channels, mut pos) = (0u32, 0u16, 12usize);
    while pos + 8 <= b.len() {
        let id = &b[pos..pos + 4];
        let mut len = u32::from_le_bytes(b[pos + 4..pos + 8].try_into().unwrap()) as usize;
        let body = pos + 8;
        if id == b"fmt " {
            channels = u16::from_le_bytes([b[body + 2], b[body + 3]]);
            rate = u32::from_le_bytes(b[body + 4..body + 8].try_into().unwrap());
        } else if id == b"data" {
            if len == 0 || body + len > b.len() {
                len = b.len() - body;
            }
            let samples = b[body..body + len]
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect();
            return Wav {
                rate,
                channels,
                samples,
            };
        }
        pos = body + len + (len & 1);
    }
    panic!("{}: no data chunk", path.display());
}

/// What happened when baresip dialled a recording `serve` ([`dial_recording_serve`]).
pub struct ServeCall {
    /// serve's JSON lines after its `listening` line.
    pub lines: Vec<String>,
    /// The `call` event among them.
    pub call: String,
    /// serve's `--record` directory.
    pub rec: PathBuf,
    /// baresip's stdout and stderr, for failure messages.
    pub baresip: String,
}

impl ServeCall {
    /// The first line of `event` (`"hangup"`, ...) serve printed, if any.
    pub fn event(&self, event: &str) -> Option<&String> {
        let key = format!("\"event\":\"{event}\"");
        self.lines.iter().find(|l| l.contains(&key))
    }

    /// The recorded files whose extension is `ext`.
    pub fn recorded(&self, ext: &str) -> Vec<PathBuf> {
        std::fs::read_dir(&self.rec)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == ext))
            .collect()
    }
}

/// Starts `serve --record` (one call, RTP ports `rtp_ports`) in `dir`, has baresip (configured
/// in `conf`) dial it and hang up after `seconds`, and waits for both. Panics unless serve
/// exited cleanly and reported the call.
pub fn dial_recording_serve(
    dir: &TempDir,
    conf: &Path,
    rtp_ports: &str,
    seconds: u32,
) -> ServeCall {
    dial_recording_serve_with(dir, conf, rtp_ports, seconds, &[])
}

/// [`dial_recording_serve`] with `extra` options for serve (`--srtp mandatory`, ...).
pub fn dial_recording_serve_with(
    dir: &TempDir,
    conf: &Path,
    rtp_ports: &str,
    seconds: u32,
    extra: &[&str],
) -> ServeCall {
    use std::io::{BufRead, BufReader};
    use std::time::Duration;

    let rec = dir.path("rec");
    let mut args = vec!["--record", rec.to_str().unwrap(), "--max-calls", "1"];
    args.extend_from_slice(extra);
    let (mut serve, port) = peers::spawn_serve(120, rtp_ports, &args);
    let sip = format!("127.0.0.1:{port}");
    let mut lines = BufReader::new(serve.stdout.take().unwrap()).lines();
    let first = lines.next().expect("serve output").unwrap();
    assert!(first.contains("listening"), "{first}");
    let dial = format!("/dial sip:test@{sip}");
    let secs = seconds.to_string();
    let b = peers::spawn(
        60,
        "baresip",
        &["-4", "-f", conf.to_str().unwrap(), "-e", &dial, "-t", &secs],
    );
    let b_out = peers::wait_bounded(b, Duration::from_secs(60));
    let out = peers::wait_bounded(serve, Duration::from_secs(30));
    let lines: Vec<String> = lines.map_while(Result::ok).collect();
    let baresip = format!(
        "{}{}",
        String::from_utf8_lossy(&b_out.stdout),
        String::from_utf8_lossy(&b_out.stderr)
    );
    assert!(
        out.status.success(),
        "serve failed: {}\n{first}\n{}\n--- baresip ---\n{baresip}",
        String::from_utf8_lossy(&out.stderr),
        lines.join("\n")
    );
    let call = lines
        .iter()
        .find(|l| l.contains("\"event\":\"call\""))
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "no call event:\n{first}\n{}\n--- baresip ---\n{baresip}",
                lines.join("\n")
            )
        });
    ServeCall {
        lines,
        call,
        rec,
        baresip,
    }
}

/// What came of our `call` to a baresip that answers it.
pub struct OurCall {
    /// Our process (its exit status and stderr).
    pub output: std::process::Output,
    /// Our JSON lines.
    pub ours: String,
    /// Everything baresip printed, once it has exited.
    pub theirs: String,
}

/// Runs our `call` to `uri` (with `extra` arguments) while `baresip` is up, then waits for baresip
/// to exit (its `-t` run time) and collects both sides' output.
pub fn call_baresip(baresip: std::process::Child, uri: &str, extra: &[&str]) -> OurCall {
    let mut args = vec!["call", uri];
    args.extend_from_slice(extra);
    let output = peers::run(40, peers::bin().to_str().unwrap(), &args);
    let ours = String::from_utf8_lossy(&output.stdout).to_string();
    let b_out = peers::wait_bounded(baresip, std::time::Duration::from_secs(60));
    let theirs = format!(
        "{}{}",
        String::from_utf8_lossy(&b_out.stdout),
        String::from_utf8_lossy(&b_out.stderr)
    );
    OurCall {
        output,
        ours,
        theirs,
    }
}

/// The received (decoded) frame rate of baresip's last status line (`efps=TX/RX`).
pub fn decoded_fps(out: &str) -> f64 {
    out.rsplit("efps=")
        .next()
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.split('/').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.0)
}
