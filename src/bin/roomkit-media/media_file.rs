//! Reading and writing the video files `send` and `recv` work with: Annex-B H.264 (`.h264`) and
//! IVF VP8 (`.ivf`).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use roomkit_media::codec::annexb::{access_units, is_idr, nal_units};
use roomkit_media::codec::ivf::{IvfHeader, IvfReader, IvfWriter};
use roomkit_media::codec::vp8::is_vp8_keyframe;
use roomkit_media::VideoCodec;

/// The codec a file name implies: `.ivf` is VP8, everything else H.264.
pub fn codec_for_path(path: &Path) -> VideoCodec {
    match path.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("ivf") => VideoCodec::Vp8,
        _ => VideoCodec::H264,
    }
}

/// `--codec h264|vp8` (any case).
pub fn video_codec(v: &str) -> Result<VideoCodec, String> {
    VideoCodec::from_name(v).ok_or_else(|| format!("`{v}` is not h264 or vp8"))
}

/// The codec asked with `--codec`, or else the one the file name implies.
pub fn codec_arg(asked: Option<VideoCodec>, path: &Path) -> VideoCodec {
    asked.unwrap_or_else(|| codec_for_path(path))
}

/// A video file split into pictures, each with whether it is a key picture.
pub fn read_pictures(path: &Path, codec: VideoCodec) -> Result<Vec<(Vec<u8>, bool)>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let pictures: Vec<(Vec<u8>, bool)> = match codec {
        VideoCodec::H264 => access_units(&bytes)
            .map(|range| {
                let au = &bytes[range];
                let key = nal_units(au).any(|nal| is_idr(&au[nal]));
                (au.to_vec(), key)
            })
            .collect(),
        VideoCodec::Vp8 => {
            let reader =
                IvfReader::new(bytes.as_slice()).map_err(|e| format!("{}: {e}", path.display()))?;
            let mut out = Vec::new();
            for frame in reader {
                let (_, data) = frame.map_err(|e| format!("{}: {e}", path.display()))?;
                let key = is_vp8_keyframe(&data);
                out.push((data, key));
            }
            out
        }
        other => return Err(format!("no file format for {other} video")),
    };
    if pictures.is_empty() {
        return Err(format!(
            "{}: no {} pictures in the file",
            path.display(),
            codec.encoding_name()
        ));
    }
    Ok(pictures)
}

/// Where `recv` writes pictures: raw Annex-B, or IVF opened at the first key frame (its header
/// needs the picture size, which only a VP8 key frame carries).
pub enum VideoSink {
    AnnexB(BufWriter<File>),
    Ivf {
        file: Option<File>,
        writer: Option<IvfWriter<File>>,
    },
}

impl VideoSink {
    pub fn create(path: &Path, codec: VideoCodec) -> Result<VideoSink, String> {
        let file =
            File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(match codec {
            VideoCodec::H264 => VideoSink::AnnexB(BufWriter::new(file)),
            VideoCodec::Vp8 => VideoSink::Ivf {
                file: Some(file),
                writer: None,
            },
            other => return Err(format!("no file format for {other} video")),
        })
    }

    /// Writes one picture; `pts` counts in 1/90000 s.
    pub fn write(&mut self, data: &[u8], pts: u64) -> Result<(), String> {
        match self {
            VideoSink::AnnexB(w) => w.write_all(data).map_err(|e| format!("write: {e}")),
            VideoSink::Ivf { file, writer } => {
                if writer.is_none() {
                    let Some((w, h)) = vp8_size(data) else {
                        return Ok(()); // no key frame yet: nothing decodable to write
                    };
                    let f = file.take().expect("file kept until the writer exists");
                    let header = IvfHeader::vp8(w, h, 90_000);
                    *writer = Some(
                        IvfWriter::new_seekable(f, &header).map_err(|e| format!("write: {e}"))?,
                    );
                }
                let w = writer.as_mut().expect("writer created above");
                w.write_frame(pts, data).map_err(|e| format!("write: {e}"))
            }
        }
    }

    pub fn finish(self) -> Result<(), String> {
        match self {
            VideoSink::AnnexB(mut w) => w.flush().map_err(|e| format!("write: {e}")),
            VideoSink::Ivf { writer, .. } => match writer {
                Some(w) => w.finish().map(|_| ()).map_err(|e| format!("write: {e}")),
                None => Ok(()),
            },
        }
    }
}

/// Width and height from a VP8 key frame header (RFC 6386 §9.1), if `frame` is one.
fn vp8_size(frame: &[u8]) -> Option<(u16, u16)> {
    if frame.len() < 10 || !is_vp8_keyframe(frame) || frame[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let w = u16::from_le_bytes([frame[6], frame[7]]) & 0x3fff;
    let h = u16::from_le_bytes([frame[8], frame[9]]) & 0x3fff;
    Some((w, h))
}
