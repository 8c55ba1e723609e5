//! `send --ladder`: renditions of one clip at several bitrates, and the choice among them that a
//! streaming server makes when congestion control tells it what the path carries.
//!
//! The renditions must be the same pictures encoded alike apart from the bitrate: as many
//! pictures, key pictures at the same places (the same GOP). The sender switches only at a key
//! picture, so a receiver always gets a whole GOP of one rendition and decodes it from its key
//! picture (each key picture must carry its parameter sets: libx264's `repeat-headers=1`).

use std::path::{Path, PathBuf};

use roomkit_media::VideoCodec;

use crate::media_file::read_pictures;

/// A rendition is chosen when its bitrate is at most this share of the target: room for key
/// pictures above the mean and for the estimate's swings.
pub const HEADROOM: f64 = 0.85;

/// One file of the ladder.
pub struct Rendition {
    /// Its file name, as the JSON lines show it.
    pub name: String,
    /// Its pictures, each with whether it is a key picture.
    pub pictures: Vec<(Vec<u8>, bool)>,
    /// Its mean bitrate: the file's bytes over its duration, bits per second.
    pub bps: u64,
}

/// The renditions, lowest bitrate first.
pub struct Ladder {
    pub renditions: Vec<Rendition>,
}

impl Ladder {
    /// One file sent as it is (no choice to make).
    pub fn single(path: &Path, codec: VideoCodec, picture_secs: f64) -> Result<Ladder, String> {
        Ok(Ladder {
            renditions: vec![Rendition::read(path, codec, picture_secs)?],
        })
    }

    /// Reads every rendition and checks they are one clip: the same number of pictures, key
    /// pictures at the same places. `picture_secs`: the time one picture stands for.
    pub fn open(paths: &[PathBuf], codec: VideoCodec, picture_secs: f64) -> Result<Ladder, String> {
        let mut renditions = paths
            .iter()
            .map(|p| Rendition::read(p, codec, picture_secs))
            .collect::<Result<Vec<_>, String>>()?;
        let first = renditions.first().ok_or("--ladder: no file")?;
        for r in &renditions[1..] {
            if r.pictures.len() != first.pictures.len() {
                return Err(format!(
                    "--ladder: {} has {} pictures and {} {}: renditions must be one clip",
                    r.name,
                    r.pictures.len(),
                    first.name,
                    first.pictures.len()
                ));
            }
            let keys = |x: &Rendition| x.pictures.iter().map(|p| p.1).collect::<Vec<_>>();
            if keys(r) != keys(first) {
                return Err(format!(
                    "--ladder: {} and {} have key pictures at different places: renditions \
                     need the same GOP",
                    r.name, first.name
                ));
            }
        }
        renditions.sort_by_key(|r| r.bps);
        Ok(Ladder { renditions })
    }

    /// Pictures per rendition.
    pub fn len(&self) -> usize {
        self.renditions[0].pictures.len()
    }

    /// The rendition for `target_bps`: the highest whose bitrate fits [`HEADROOM`] × the target,
    /// else the lowest.
    pub fn pick(&self, target_bps: u64) -> usize {
        let room = target_bps as f64 * HEADROOM;
        self.renditions
            .iter()
            .rposition(|r| r.bps as f64 <= room)
            .unwrap_or(0)
    }
}

impl Rendition {
    fn read(path: &Path, codec: VideoCodec, picture_secs: f64) -> Result<Rendition, String> {
        let pictures = read_pictures(path, codec)?;
        let bytes: usize = pictures.iter().map(|p| p.0.len()).sum();
        let secs = pictures.len() as f64 * picture_secs;
        Ok(Rendition {
            name: path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into(),
            ),
            bps: (bytes as f64 * 8.0 / secs).round() as u64,
            pictures,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendition(name: &str, bps: u64) -> Rendition {
        Rendition {
            name: name.into(),
            pictures: vec![(vec![0; 10], true), (vec![0; 5], false)],
            bps,
        }
    }

    #[test]
    fn picks_the_highest_rendition_that_fits_with_headroom() {
        let ladder = Ladder {
            renditions: vec![
                rendition("low", 500_000),
                rendition("mid", 1_000_000),
                rendition("high", 2_500_000),
            ],
        };
        // 0.85 × 1.2 Mbit/s = 1.02 Mbit/s: mid fits, high does not.
        assert_eq!(ladder.pick(1_200_000), 1);
        // 0.85 × 1.1 Mbit/s = 935 kbit/s: only low fits.
        assert_eq!(ladder.pick(1_100_000), 0);
        // Nothing fits: the lowest still goes.
        assert_eq!(ladder.pick(100_000), 0);
        assert_eq!(ladder.pick(3_000_000), 2);
        assert_eq!(ladder.len(), 2);
    }

    #[test]
    fn renditions_must_be_one_clip() {
        let dir = std::env::temp_dir().join(format!("rkm-ladder-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let au = |idr: bool, len: usize| {
            let mut v = vec![0, 0, 0, 1, if idr { 0x65 } else { 0x41 }];
            v.resize(5 + len, 0x88);
            v
        };
        let write = |name: &str, pics: &[(bool, usize)]| {
            let p = dir.join(name);
            let bytes: Vec<u8> = pics.iter().flat_map(|&(k, n)| au(k, n)).collect();
            std::fs::write(&p, bytes).unwrap();
            p
        };
        let small = write("small.h264", &[(true, 100), (false, 20), (false, 20)]);
        let big = write("big.h264", &[(true, 400), (false, 80), (false, 80)]);
        let short = write("short.h264", &[(true, 100), (false, 20)]);
        let shifted = write("shifted.h264", &[(true, 100), (true, 20), (false, 20)]);
        let secs = 1.0 / 30.0;
        let ladder = Ladder::open(&[big.clone(), small.clone()], VideoCodec::H264, secs).unwrap();
        assert_eq!(ladder.renditions[0].name, "small.h264");
        assert!(ladder.renditions[0].bps < ladder.renditions[1].bps);
        let e = Ladder::open(&[small.clone(), short], VideoCodec::H264, secs)
            .err()
            .unwrap();
        assert!(e.contains("one clip"), "{e}");
        let e = Ladder::open(&[small, shifted], VideoCodec::H264, secs)
            .err()
            .unwrap();
        assert!(e.contains("same GOP"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
