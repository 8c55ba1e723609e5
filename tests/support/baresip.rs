//! baresip, headless, from the shared templates in `tests/data/baresip`, with its audio codec
//! modules chosen per test; and the 16-bit PCM WAV files it (and `serve --record`) write.

use std::path::{Path, PathBuf};

use super::peers::in_ci;

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

fn templates() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/baresip")
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
        let t = std::fs::read_to_string(templates().join(format!("{name}.template")))
            .expect("baresip template");
        let t = t
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
