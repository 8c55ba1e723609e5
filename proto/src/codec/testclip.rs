//! Test pictures. [`TestClip`] is a tiny H.264 encoder, so the demo and tests carry real,
//! decodable video without shipping a binary clip; [`h264_picture`] makes pictures that only look
//! like H.264 to a packetizer, of any size, for the tests and benchmarks of transport.
//!
//! It writes Constrained Baseline streams in which every coded macroblock is `I_PCM` (raw
//! samples, no prediction or transform): key pictures are IDR slices of I_PCM macroblocks, and
//! the pictures between them are P slices that code only the macroblocks that changed, skipping
//! the rest. Any H.264 decoder plays the result. The picture is a still gradient with a bright
//! square sweeping across it, so every picture differs from the last while P pictures stay small.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::codec::annexb::{NAL_IDR, NAL_PPS, NAL_SPS};

/// A synthetic H.264 access unit of `len` bytes (at least one byte of slice) in Annex-B with
/// 4-byte start codes: SPS, PPS and an IDR slice when `key`, one P slice otherwise, the slice
/// filled with bytes drawn from `seed` (never zero, so no start code appears inside). Unlike
/// [`TestClip`] it does not decode; it is for tests and benchmarks that need pictures of a given
/// size and check what arrives byte for byte. The SPS is 8 bytes and the PPS 4, so a key
/// picture's IDR NAL unit starts at byte 24 and a P picture's slice at byte 4.
pub fn h264_picture(key: bool, len: usize, seed: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 32);
    if key {
        v.extend_from_slice(&[
            0,
            0,
            0,
            1,
            0x60 | NAL_SPS,
            0x42,
            0xe0,
            0x1f,
            0x8c,
            0x8d,
            0x40,
            0x50,
        ]);
        v.extend_from_slice(&[0, 0, 0, 1, 0x60 | NAL_PPS, 0xce, 0x3c, 0x80]);
        v.extend_from_slice(&[0, 0, 0, 1, 0x60 | NAL_IDR]);
    } else {
        v.extend_from_slice(&[0, 0, 0, 1, 0x40 | 1]);
    }
    let mut rng = SmallRng::seed_from_u64(seed);
    let target = len.max(v.len() + 1);
    while v.len() < target {
        v.push(rng.random_range(1..=255));
    }
    v
}

/// A generator of test pictures, Annex-B, one access unit per call.
#[derive(Debug, Clone)]
pub struct TestClip {
    mb_w: usize,
    mb_h: usize,
    gop: u32,
    index: u32,
    idr_id: u32,
    previous: Option<Vec<u8>>,
}

impl TestClip {
    /// A clip of `width` × `height` pixels (rounded up to whole macroblocks, at least one) with an
    /// IDR picture every `gop` pictures (at least 1).
    pub fn new(width: usize, height: usize, gop: u32) -> TestClip {
        TestClip {
            mb_w: width.div_ceil(16).clamp(1, 256),
            mb_h: height.div_ceil(16).clamp(1, 256),
            gop: gop.max(1),
            index: 0,
            idr_id: 0,
            previous: None,
        }
    }

    /// The next picture: SPS + PPS + IDR slice for a key picture, one P slice otherwise. Returns
    /// the Annex-B bytes and whether the picture is a key picture.
    pub fn next_picture(&mut self) -> (Vec<u8>, bool) {
        let key = self.index.is_multiple_of(self.gop);
        let samples = self.draw(self.index);
        let mut out = Vec::new();
        if key {
            put_nal(&mut out, 0x60 | NAL_SPS, &self.sps());
            put_nal(&mut out, 0x60 | NAL_PPS, &pps());
            put_nal(&mut out, 0x60 | NAL_IDR, &self.idr_slice(&samples));
            self.idr_id = (self.idr_id + 1) % 2;
        } else {
            let previous = self.previous.take().unwrap_or_default();
            put_nal(&mut out, 0x40 | 1, &self.p_slice(&samples, &previous));
        }
        self.previous = Some(samples);
        self.index += 1;
        (out, key)
    }

    fn mbs(&self) -> usize {
        self.mb_w * self.mb_h
    }

    /// The 384 samples (256 luma, 64 Cb, 64 Cr) of every macroblock of picture `n`, in raster
    /// order, all within 16..=235 so the PCM bytes never contain a start-code prefix.
    fn draw(&self, n: u32) -> Vec<u8> {
        let (w, h) = (self.mb_w * 16, self.mb_h * 16);
        let side = (h / 3).max(8);
        let box_x = (n as usize * 4) % (w + side);
        let box_y = (h - side) / 2;
        let mut out = Vec::with_capacity(self.mbs() * 384);
        for my in 0..self.mb_h {
            for mx in 0..self.mb_w {
                for y in 0..16 {
                    for x in 0..16 {
                        let (px, py) = (mx * 16 + x, my * 16 + y);
                        let inside =
                            px + side >= box_x && px < box_x && py >= box_y && py < box_y + side;
                        let luma = if inside { 235 } else { 16 + ((px + py) % 160) };
                        out.push(luma as u8);
                    }
                }
                let cb = 16 + ((mx * 24) % 200) as u8;
                let cr = 16 + ((my * 40) % 200) as u8;
                out.extend(std::iter::repeat_n(cb, 64));
                out.extend(std::iter::repeat_n(cr, 64));
            }
        }
        out
    }

    fn sps(&self) -> Vec<u8> {
        let mut b = BitWriter::default();
        b.bits(66, 8); // profile_idc: Baseline
        b.bits(0b1100_0000, 8); // constraint_set0/1: Constrained Baseline
        b.bits(31, 8); // level_idc 3.1
        b.ue(0); // seq_parameter_set_id
        b.ue(0); // log2_max_frame_num_minus4: frame_num is 4 bits
        b.ue(2); // pic_order_cnt_type 2: output order = decoding order
        b.ue(1); // max_num_ref_frames
        b.bit(false); // gaps_in_frame_num_value_allowed_flag
        b.ue(self.mb_w as u32 - 1);
        b.ue(self.mb_h as u32 - 1);
        b.bit(true); // frame_mbs_only_flag
        b.bit(true); // direct_8x8_inference_flag
        b.bit(false); // frame_cropping_flag
        b.bit(false); // vui_parameters_present_flag
        b.finish()
    }

    fn idr_slice(&self, samples: &[u8]) -> Vec<u8> {
        let mut b = BitWriter::default();
        b.ue(0); // first_mb_in_slice
        b.ue(7); // slice_type: I, and every slice of the picture is
        b.ue(0); // pic_parameter_set_id
        b.bits(0, 4); // frame_num
        b.ue(self.idr_id); // idr_pic_id: differs between consecutive IDR pictures
        b.bit(false); // no_output_of_prior_pics_flag
        b.bit(false); // long_term_reference_flag
        b.se(0); // slice_qp_delta
        for mb in samples.chunks(384) {
            b.ue(25); // mb_type I_PCM in an I slice
            b.pcm(mb);
        }
        b.finish()
    }

    fn p_slice(&self, samples: &[u8], previous: &[u8]) -> Vec<u8> {
        let mut b = BitWriter::default();
        b.ue(0); // first_mb_in_slice
        b.ue(5); // slice_type: P, and every slice of the picture is
        b.ue(0); // pic_parameter_set_id
        b.bits(self.index % self.gop % 16, 4); // frame_num: counts from the IDR picture
        b.bit(false); // num_ref_idx_active_override_flag
        b.bit(false); // ref_pic_list_modification_flag_l0
        b.bit(false); // adaptive_ref_pic_marking_mode_flag
        b.se(0); // slice_qp_delta
        let mut skipped = 0u32;
        for (i, mb) in samples.chunks(384).enumerate() {
            if previous.get(i * 384..(i + 1) * 384) == Some(mb) {
                skipped += 1;
                continue;
            }
            b.ue(skipped); // mb_skip_run before this macroblock
            skipped = 0;
            b.ue(30); // mb_type I_PCM in a P slice (5 inter types come first)
            b.pcm(mb);
        }
        if skipped > 0 {
            b.ue(skipped);
        }
        b.finish()
    }
}

fn pps() -> Vec<u8> {
    let mut b = BitWriter::default();
    b.ue(0); // pic_parameter_set_id
    b.ue(0); // seq_parameter_set_id
    b.bit(false); // entropy_coding_mode_flag: CAVLC
    b.bit(false); // bottom_field_pic_order_in_frame_present_flag
    b.ue(0); // num_slice_groups_minus1
    b.ue(0); // num_ref_idx_l0_default_active_minus1
    b.ue(0); // num_ref_idx_l1_default_active_minus1
    b.bit(false); // weighted_pred_flag
    b.bits(0, 2); // weighted_bipred_idc
    b.se(0); // pic_init_qp_minus26
    b.se(0); // pic_init_qs_minus26
    b.se(0); // chroma_qp_index_offset
    b.bit(false); // deblocking_filter_control_present_flag
    b.bit(false); // constrained_intra_pred_flag
    b.bit(false); // redundant_pic_cnt_present_flag
    b.finish()
}

/// Appends a start code, the NAL header and the RBSP with emulation prevention bytes inserted
/// (H.264 7.4.1: no `00 00 0x` with x ≤ 3 may appear inside a NAL unit).
fn put_nal(out: &mut Vec<u8>, header: u8, rbsp: &[u8]) {
    out.extend_from_slice(&[0, 0, 0, 1, header]);
    let mut zeros = 0;
    for &byte in rbsp {
        if zeros >= 2 && byte <= 3 {
            out.push(3);
            zeros = 0;
        }
        out.push(byte);
        zeros = if byte == 0 { zeros + 1 } else { 0 };
    }
}

/// Writes an RBSP bit by bit, most significant bit first.
#[derive(Default)]
struct BitWriter {
    bytes: Vec<u8>,
    acc: u8,
    n: u8,
}

impl BitWriter {
    fn bit(&mut self, b: bool) {
        self.acc = (self.acc << 1) | u8::from(b);
        self.n += 1;
        if self.n == 8 {
            self.bytes.push(self.acc);
            self.acc = 0;
            self.n = 0;
        }
    }

    fn bits(&mut self, value: u32, count: u32) {
        for i in (0..count).rev() {
            self.bit(value >> i & 1 == 1);
        }
    }

    /// Unsigned Exp-Golomb code.
    fn ue(&mut self, value: u32) {
        let v = u64::from(value) + 1;
        let len = 64 - v.leading_zeros();
        for _ in 1..len {
            self.bit(false);
        }
        for i in (0..len).rev() {
            self.bit(v >> i & 1 == 1);
        }
    }

    /// Signed Exp-Golomb code.
    fn se(&mut self, value: i32) {
        let mapped = if value > 0 {
            2 * value as u32 - 1
        } else {
            2 * value.unsigned_abs()
        };
        self.ue(mapped);
    }

    /// pcm_alignment_zero_bits, then the samples as whole bytes.
    fn pcm(&mut self, samples: &[u8]) {
        while self.n != 0 {
            self.bit(false);
        }
        self.bytes.extend_from_slice(samples);
    }

    /// rbsp_trailing_bits: a one bit, then zero bits to the byte boundary.
    fn finish(mut self) -> Vec<u8> {
        self.bit(true);
        while self.n != 0 {
            self.bit(false);
        }
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::annexb::{is_idr, nal_units};

    #[test]
    fn synthetic_pictures() {
        let k = h264_picture(true, 1000, 1);
        assert_eq!(k.len(), 1000);
        assert_eq!(&k[..5], &[0, 0, 0, 1, 0x67]);
        assert_eq!(&k[20..25], &[0, 0, 0, 1, 0x65]);
        assert!(k[25..].iter().all(|&b| b != 0));
        let types: Vec<u8> = nal_units(&k).map(|r| k[r.start] & 0x1f).collect();
        assert_eq!(types, vec![7, 8, 5]);
        assert_eq!(&h264_picture(false, 100, 1)[..5], &[0, 0, 0, 1, 0x41]);
        assert_ne!(h264_picture(false, 100, 1), h264_picture(false, 100, 2));
        assert_eq!(h264_picture(false, 100, 1), h264_picture(false, 100, 1));
        assert_eq!(
            h264_picture(true, 0, 1).len(),
            26,
            "at least one byte of slice"
        );
    }

    #[test]
    fn exp_golomb_codes() {
        let code = |v: u32| {
            let mut b = BitWriter::default();
            b.ue(v);
            b.finish()
        };
        assert_eq!(code(0), vec![0b1100_0000]); // "1" + stop bit
        assert_eq!(code(1), vec![0b0101_0000]); // "010" + stop bit
        assert_eq!(code(4), vec![0b0010_1100]); // "00101" + stop bit
    }

    #[test]
    fn key_pictures_carry_parameter_sets_and_p_pictures_are_smaller() {
        let mut clip = TestClip::new(64, 48, 5);
        let (first, key) = clip.next_picture();
        assert!(key);
        let types: Vec<u8> = nal_units(&first).map(|r| first[r.start] & 0x1f).collect();
        assert_eq!(types, vec![7, 8, 5]);
        assert!(nal_units(&first).any(|r| is_idr(&first[r])));
        let (second, key) = clip.next_picture();
        assert!(!key);
        assert!(second.len() < first.len());
        for _ in 0..3 {
            clip.next_picture();
        }
        assert!(
            clip.next_picture().1,
            "every fifth picture is a key picture"
        );
    }

    #[test]
    fn no_start_code_inside_a_nal() {
        let mut clip = TestClip::new(96, 64, 3);
        for _ in 0..6 {
            let (pic, _) = clip.next_picture();
            let nals: Vec<_> = nal_units(&pic).collect();
            let payload: usize = nals.iter().map(|r| r.len()).sum();
            // Three or one NAL units, each preceded by a 4-byte start code and nothing else.
            assert_eq!(payload + 4 * nals.len(), pic.len());
        }
    }
}
