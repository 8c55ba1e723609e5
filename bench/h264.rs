//! H.264 packetize and depacketize throughput on a generated 1080p clip (libx264, CRF 18), with
//! webrtc-rs's `rtp` crate measured in the same groups as the comparison, and a plain memcpy of
//! the same bytes in 1200-byte chunks as the physical reference. GStreamer's figure comes from
//! `bench/gst_throughput.sh` on the same clip.
//!
//! Run: `cargo bench --bench h264` (needs ffmpeg with libx264 to make the clip once).

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use roomkit_media::codec::annexb::access_units;
use roomkit_media::codec::h264::{H264Depacketizer, H264Packetizer, PacketizationMode};
use roomkit_media::codec::{Depacketizer, Packetizer, PayloadList, PictureBuf};
use roomkit_media::rtp::video::{VideoReceiver, VideoReceiverConfig};
use roomkit_media::rtp::RtpMeta;
use rtp::packetizer::{Depacketizer as _, Payloader as _};

const MTU: usize = 1200;

/// The clip shared with bench/gst_throughput.sh, made by bench/clip.sh on first use.
fn clip() -> Vec<u8> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench/clip.sh");
    let out = Command::new(&script)
        .output()
        .expect("bench/clip.sh runs (it needs ffmpeg with libx264)");
    assert!(
        out.status.success(),
        "bench/clip.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    std::fs::read(path).unwrap()
}

fn pictures(clip: &[u8]) -> Vec<&[u8]> {
    access_units(clip).map(|r| &clip[r]).collect()
}

/// Every payload of the clip, as (marker, bytes), in order.
fn payloads(pics: &[&[u8]]) -> Vec<Vec<(bool, Vec<u8>)>> {
    let mut p = H264Packetizer::new(MTU, PacketizationMode::NonInterleaved);
    let mut list = PayloadList::new();
    pics.iter()
        .map(|pic| {
            list.clear();
            p.packetize(pic, &mut list).unwrap();
            (0..list.len())
                .map(|i| (list.marker(i), list.payload(i, pic)))
                .collect()
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let clip = clip();
    let pics = pictures(&clip);
    let pays = payloads(&pics);
    let npackets: usize = pays.iter().map(Vec::len).sum();
    eprintln!(
        "clip: {} bytes, {} pictures, {} packets at MTU {MTU}",
        clip.len(),
        pics.len(),
        npackets
    );
    let bytes_pics: Vec<Bytes> = pics.iter().map(|p| Bytes::copy_from_slice(p)).collect();
    let bytes_pays: Vec<Vec<Bytes>> = pays
        .iter()
        .map(|ps| ps.iter().map(|(_, b)| Bytes::copy_from_slice(b)).collect())
        .collect();

    let mut g = c.benchmark_group("h264_1080p");
    g.throughput(Throughput::Bytes(clip.len() as u64));
    g.sample_size(30);

    g.bench_function("memcpy_1200B_chunks_to_buffer", |b| {
        // The physical reference: every byte of the clip read once and written once, into a
        // buffer as large as the clip, in datagram-sized pieces.
        let mut dst = vec![0u8; clip.len()];
        b.iter(|| {
            for (d, s) in dst.chunks_mut(MTU).zip(clip.chunks(MTU)) {
                d.copy_from_slice(s);
            }
            std::hint::black_box(&dst);
        })
    });

    g.bench_function("memcpy_1200B_chunks_to_one_datagram", |b| {
        let mut dst = vec![0u8; MTU];
        b.iter(|| {
            for chunk in clip.chunks(MTU) {
                dst[..chunk.len()].copy_from_slice(chunk);
                std::hint::black_box(&dst);
            }
        })
    });

    g.bench_function(
        BenchmarkId::new("packetize", "roomkit_scatter_gather"),
        |b| {
            let mut p = H264Packetizer::new(MTU, PacketizationMode::NonInterleaved);
            let mut list = PayloadList::new();
            b.iter(|| {
                for pic in &pics {
                    list.clear();
                    p.packetize(pic, &mut list).unwrap();
                    std::hint::black_box(list.len());
                }
            })
        },
    );

    g.bench_function(BenchmarkId::new("packetize", "roomkit_contiguous"), |b| {
        let mut p = H264Packetizer::new(MTU, PacketizationMode::NonInterleaved);
        let mut list = PayloadList::new();
        let mut datagram = Vec::with_capacity(MTU + 12);
        b.iter(|| {
            for pic in &pics {
                list.clear();
                p.packetize(pic, &mut list).unwrap();
                for i in 0..list.len() {
                    datagram.clear();
                    list.copy_payload(i, pic, &mut datagram);
                    std::hint::black_box(&datagram);
                }
            }
        })
    });

    g.bench_function(BenchmarkId::new("packetize", "webrtc_rs"), |b| {
        let mut p = rtp::codecs::h264::H264Payloader::default();
        b.iter(|| {
            for pic in &bytes_pics {
                std::hint::black_box(p.payload(MTU, pic).unwrap());
            }
        })
    });

    g.bench_function(BenchmarkId::new("depacketize", "roomkit"), |b| {
        let mut d = H264Depacketizer::new();
        let mut pic = PictureBuf::default();
        b.iter(|| {
            for ps in &pays {
                pic.clear();
                for (_, payload) in ps {
                    d.push(payload, false, &mut pic);
                }
                d.finish(&mut pic);
                std::hint::black_box(pic.data.len());
            }
        })
    });

    g.bench_function(
        BenchmarkId::new("depacketize", "roomkit_video_receiver"),
        |b| {
            // The whole receive pipeline: reorder window, depacketizer, picture assembly and a
            // VideoFrame per picture.
            let mut rx = VideoReceiver::h264(VideoReceiverConfig::default());
            let mut out = Vec::new();
            let mut seq = 0u16;
            let mut ts = 0u32;
            let now = Instant::now();
            b.iter(|| {
                for ps in &pays {
                    ts = ts.wrapping_add(3000);
                    for (marker, payload) in ps {
                        seq = seq.wrapping_add(1);
                        let meta = RtpMeta {
                            payload_type: 96,
                            marker: *marker,
                            sequence: seq,
                            timestamp: ts,
                            ssrc: 1,
                        };
                        rx.push(meta, payload, now, &mut out);
                    }
                    out.clear();
                }
            })
        },
    );

    g.bench_function(BenchmarkId::new("depacketize", "webrtc_rs"), |b| {
        let mut d = rtp::codecs::h264::H264Packet::default();
        b.iter(|| {
            for ps in &bytes_pays {
                for payload in ps {
                    std::hint::black_box(d.depacketize(payload).unwrap());
                }
            }
        })
    });

    g.bench_function(BenchmarkId::new("roundtrip", "roomkit"), |b| {
        // Packetize into contiguous datagrams and depacketize them again: the same work as
        // GStreamer's `rtph264pay ! rtph264depay`.
        let mut p = H264Packetizer::new(MTU, PacketizationMode::NonInterleaved);
        let mut d = H264Depacketizer::new();
        let mut list = PayloadList::new();
        let mut pic_out = PictureBuf::default();
        let mut datagram = Vec::with_capacity(MTU + 12);
        b.iter(|| {
            for pic in &pics {
                list.clear();
                p.packetize(pic, &mut list).unwrap();
                pic_out.clear();
                for i in 0..list.len() {
                    datagram.clear();
                    list.copy_payload(i, pic, &mut datagram);
                    d.push(&datagram, false, &mut pic_out);
                }
                d.finish(&mut pic_out);
                std::hint::black_box(pic_out.data.len());
            }
        })
    });

    g.bench_function(BenchmarkId::new("roundtrip", "webrtc_rs"), |b| {
        let mut p = rtp::codecs::h264::H264Payloader::default();
        let mut d = rtp::codecs::h264::H264Packet::default();
        b.iter(|| {
            for pic in &bytes_pics {
                for payload in p.payload(MTU, pic).unwrap() {
                    std::hint::black_box(d.depacketize(&payload).unwrap());
                }
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
