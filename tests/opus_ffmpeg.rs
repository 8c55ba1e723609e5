//! Opus against ffmpeg, at the codec level: packets ffmpeg's libopus encoder writes (in an Ogg
//! Opus file, RFC 7845) go through our decoder, and packets from our encoder, written as Ogg
//! Opus here, are decoded by ffmpeg, with both its libopus decoder and its own independent
//! `opus` decoder. Each side checks the tone's frequency and level, and the two decodings of one
//! file are compared sample by sample.
//!
//! A missing ffmpeg skips the test, except under CI (`CI=true`), where it fails.

mod common;

use std::path::Path;

use common::{have_peers, run, TempDir};
use roomkit_media::codec::opus::{
    parse_packet, OpusApplication, OpusDecoder, OpusEncoder, OPUS_RTP_CLOCK_RATE,
};
use roomkit_media::codec::tone::{db, level_at, rms, zero_crossing_frequency, Sine};

const RATE: u32 = 48_000;
const FRAME: usize = 960;

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

fn ffmpeg(args: &[&str]) {
    let mut all = vec!["-nostdin", "-v", "error", "-y"];
    all.extend_from_slice(args);
    run(60, "ffmpeg", &all);
}

fn read_s16le(p: &Path) -> Vec<i16> {
    let bytes = std::fs::read(p).expect("read s16le");
    bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

fn write_s16le(p: &Path, pcm: &[i16]) {
    let bytes: Vec<u8> = pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
    std::fs::write(p, bytes).expect("write s16le");
}

/// Ogg framing (RFC 3533) and the Opus headers in it (RFC 7845), enough to carry one mono or
/// stereo Opus stream each way.
mod ogg {
    /// The Ogg CRC: polynomial 0x04c11db7, MSB first, no reflection, initial value 0.
    fn crc(data: &[u8]) -> u32 {
        let mut crc = 0u32;
        for &b in data {
            crc ^= u32::from(b) << 24;
            for _ in 0..8 {
                crc = if crc & 0x8000_0000 != 0 {
                    (crc << 1) ^ 0x04c1_1db7
                } else {
                    crc << 1
                };
            }
        }
        crc
    }

    /// The packets of the first logical stream in an Ogg file, each page's CRC checked.
    pub fn read_packets(file: &[u8]) -> Vec<Vec<u8>> {
        let mut packets = Vec::new();
        let mut partial = Vec::new();
        let mut at = 0;
        while at < file.len() {
            let page = &file[at..];
            assert!(
                page.len() >= 27 && &page[..4] == b"OggS",
                "no Ogg page at {at}"
            );
            let nseg = usize::from(page[26]);
            let table = &page[27..27 + nseg];
            let body_len: usize = table.iter().map(|&l| usize::from(l)).sum();
            let page_len = 27 + nseg + body_len;
            assert!(page.len() >= page_len, "truncated Ogg page at {at}");
            let mut check = page[..page_len].to_vec();
            check[22..26].fill(0);
            let stored = u32::from_le_bytes(page[22..26].try_into().unwrap());
            assert_eq!(crc(&check), stored, "Ogg CRC of the page at {at}");
            let mut body = &page[27 + nseg..page_len];
            for &l in table {
                let (seg, rest) = body.split_at(usize::from(l));
                partial.extend_from_slice(seg);
                body = rest;
                // A segment shorter than 255 bytes ends its packet.
                if l < 255 {
                    packets.push(std::mem::take(&mut partial));
                }
            }
            at += page_len;
        }
        packets
    }

    /// The pre-skip field of an OpusHead packet (samples at 48 kHz to drop at the start).
    pub fn pre_skip(head: &[u8]) -> usize {
        assert!(
            head.len() >= 19 && &head[..8] == b"OpusHead",
            "not an OpusHead"
        );
        usize::from(u16::from_le_bytes([head[10], head[11]]))
    }

    /// Writes an Ogg Opus file: the two header pages, then one page per audio packet with the
    /// granule position (48 kHz samples, pre-skip included) at its end.
    pub struct Writer {
        out: Vec<u8>,
        serial: u32,
        seq: u32,
    }

    impl Writer {
        pub fn new(channels: u8, pre_skip: u16, input_rate: u32) -> Writer {
            let mut w = Writer {
                out: Vec::new(),
                serial: 0x5eed_0b05,
                seq: 0,
            };
            let mut head = b"OpusHead".to_vec();
            head.push(1); // version
            head.push(channels);
            head.extend_from_slice(&pre_skip.to_le_bytes());
            head.extend_from_slice(&input_rate.to_le_bytes());
            head.extend_from_slice(&0i16.to_le_bytes()); // output gain
            head.push(0); // channel mapping family 0: mono or stereo
            w.page(&head, 0, 0x02);
            let vendor = b"roomkit-media test";
            let mut tags = b"OpusTags".to_vec();
            tags.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
            tags.extend_from_slice(vendor);
            tags.extend_from_slice(&0u32.to_le_bytes()); // no comments
            w.page(&tags, 0, 0);
            w
        }

        pub fn packet(&mut self, packet: &[u8], granule: u64, last: bool) {
            self.page(packet, granule, if last { 0x04 } else { 0 });
        }

        fn page(&mut self, packet: &[u8], granule: u64, flags: u8) {
            let mut lacing = vec![255u8; packet.len() / 255];
            lacing.push((packet.len() % 255) as u8);
            assert!(lacing.len() <= 255, "packet too large for one page");
            let start = self.out.len();
            self.out.extend_from_slice(b"OggS");
            self.out.push(0);
            self.out.push(flags);
            self.out.extend_from_slice(&granule.to_le_bytes());
            self.out.extend_from_slice(&self.serial.to_le_bytes());
            self.out.extend_from_slice(&self.seq.to_le_bytes());
            self.out.extend_from_slice(&[0; 4]); // CRC, filled in below
            self.out.push(lacing.len() as u8);
            self.out.extend_from_slice(&lacing);
            self.out.extend_from_slice(packet);
            let c = crc(&self.out[start..]);
            self.out[start + 22..start + 26].copy_from_slice(&c.to_le_bytes());
            self.seq += 1;
        }

        pub fn finish(self) -> Vec<u8> {
            self.out
        }
    }
}

/// The tone checks both directions apply: after the first 100 ms, the tone has its frequency
/// and level and carries nearly all the power.
fn assert_tone(what: &str, pcm: &[i16], freq: f64, amplitude: f64) {
    let steady = &pcm[5 * FRAME..pcm.len() - 2 * FRAME];
    let level = level_at(steady, RATE, freq);
    let f = zero_crossing_frequency(steady, RATE).expect("a tone");
    let share = level * level / 2.0 / (rms(steady) * rms(steady));
    println!(
        "{what}: {f:.2} Hz, level {:+.2} dB, tone power {:.1} %",
        db(level, amplitude),
        share * 100.0
    );
    assert!((f - freq).abs() < 2.0, "{what}: frequency {f}");
    assert!(db(level, amplitude).abs() < 1.0, "{what}: level {level}");
    assert!(share > 0.97, "{what}: tone power share {share}");
}

/// Signal-to-difference ratio of two decodings of the same stream, in dB.
fn agreement_db(a: &[i16], b: &[i16]) -> f64 {
    let n = a.len().min(b.len());
    let diff: Vec<i16> = a[..n]
        .iter()
        .zip(&b[..n])
        .map(|(&x, &y)| x.saturating_sub(y))
        .collect();
    db(rms(&a[..n]), rms(&diff).max(1e-3))
}

#[test]
fn ffmpeg_libopus_packets_decode_here() {
    if !have_peers(&["ffmpeg"]) {
        return;
    }
    let dir = TempDir::new("opus-in");
    let (raw, opus_file, theirs) = (
        dir.path("tone.raw"),
        dir.path("tone.opus"),
        dir.path("theirs.raw"),
    );
    write_s16le(
        &raw,
        &Sine::new(1000.0, RATE, 10_000.0).take(2 * RATE as usize),
    );
    ffmpeg(&[
        "-f",
        "s16le",
        "-ar",
        "48000",
        "-ac",
        "1",
        "-i",
        s(&raw),
        "-c:a",
        "libopus",
        "-b:a",
        "32k",
        "-application",
        "voip",
        "-frame_duration",
        "20",
        s(&opus_file),
    ]);
    ffmpeg(&[
        "-c:a",
        "libopus",
        "-i",
        s(&opus_file),
        "-f",
        "s16le",
        "-ac",
        "1",
        s(&theirs),
    ]);

    let packets = ogg::read_packets(&std::fs::read(&opus_file).expect("read ogg"));
    assert!(packets.len() > 100, "{} packets", packets.len());
    let pre_skip = ogg::pre_skip(&packets[0]);
    assert!(packets[1].starts_with(b"OpusTags"));
    let mut dec = OpusDecoder::new(RATE, 1).unwrap();
    let mut ours = Vec::new();
    for p in &packets[2..] {
        let info = parse_packet(p).expect("ffmpeg's packet parses");
        assert_eq!(info.samples_48k, FRAME, "20 ms frames");
        assert_eq!(dec.decode(p, &mut ours).unwrap(), FRAME);
    }
    let ours = ours.split_off(pre_skip);
    assert_tone("ffmpeg libopus -> our decoder", &ours, 1000.0, 10_000.0);
    // ffmpeg decoded the same file with its libopus: both decodings agree closely.
    let agree = agreement_db(&read_s16le(&theirs), &ours);
    println!("our decoding vs ffmpeg's libopus decoding of its file: {agree:.1} dB");
    assert!(agree > 40.0, "decodings differ: {agree:.1} dB");
}

#[test]
fn our_packets_decode_in_ffmpeg() {
    if !have_peers(&["ffmpeg"]) {
        return;
    }
    let dir = TempDir::new("opus-out");
    let mut enc = OpusEncoder::new(RATE, 1, OpusApplication::Voip).unwrap();
    let pre_skip = enc.lookahead().unwrap();
    let mut sine = Sine::new(440.0, RATE, 8000.0);
    let frames = 100;
    let mut w = ogg::Writer::new(1, pre_skip as u16, RATE);
    let mut packets = Vec::new();
    for i in 0..frames {
        let mut pkt = Vec::new();
        enc.encode(&sine.take(FRAME), &mut pkt).unwrap();
        let granule = ((i + 1) * FRAME) as u64;
        w.packet(&pkt, granule, i + 1 == frames);
        packets.push(pkt);
    }
    let ogg_path = dir.path("ours.opus");
    std::fs::write(&ogg_path, w.finish()).expect("write ogg");
    // Our own reader gets back exactly what was written (checks the writer's framing and CRC).
    assert_eq!(
        ogg::read_packets(&std::fs::read(&ogg_path).unwrap())[2..],
        packets[..]
    );

    let mut decodings = Vec::new();
    for decoder in ["libopus", "opus"] {
        let out = dir.path(&format!("{decoder}.raw"));
        ffmpeg(&[
            "-c:a",
            decoder,
            "-i",
            s(&ogg_path),
            "-f",
            "s16le",
            "-ac",
            "1",
            s(&out),
        ]);
        let pcm = read_s16le(&out);
        // Every sample the stream holds, less the pre-skip (the granule of the last page).
        assert_eq!(pcm.len(), frames * FRAME - pre_skip, "{decoder}: length");
        assert_tone(
            &format!("our encoder -> ffmpeg {decoder}"),
            &pcm,
            440.0,
            8000.0,
        );
        decodings.push(pcm);
    }
    let mut dec = OpusDecoder::new(RATE, 1).unwrap();
    let mut ours = Vec::new();
    for p in &packets {
        dec.decode(p, &mut ours).unwrap();
    }
    let ours = ours.split_off(pre_skip);
    // ffmpeg's libopus decodes our packets as we do. (Its own `opus` decoder is a separate
    // implementation, with its own resampler from the speech layer's rate to 48 kHz, so its
    // samples are not expected to match ours one for one; the tone checks above cover it.)
    let agree = agreement_db(&decodings[0], &ours);
    println!("our decoding vs ffmpeg libopus decoding of our packets: {agree:.1} dB");
    assert!(agree > 40.0, "decodings differ: {agree:.1} dB");
    assert_eq!(OPUS_RTP_CLOCK_RATE, RATE);
}
