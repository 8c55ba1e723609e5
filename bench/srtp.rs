//! SRTP cost per packet: protect + unprotect (sender and receiver contexts, replay check on) of
//! an audio-sized (172 bytes: 12 header + 160 payload) and a video-sized (1,200 bytes) RTP
//! packet, per suite, against the plain copy a packet costs without SRTP. Criterion reports
//! packets/s (elements) and bytes/s for one core.
//!
//! Run: `cargo bench --bench srtp`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use roomkit_media::rtp::srtp::{SrtpKey, SrtpReceiver, SrtpSender, SrtpSuite};

fn packet(len: usize) -> Vec<u8> {
    let mut p = vec![0x5a; len];
    p[..12].copy_from_slice(&[0x80, 96, 0, 0, 0, 0, 0, 0, 0x11, 0x22, 0x33, 0x44]);
    p
}

fn srtp(c: &mut Criterion) {
    let mut g = c.benchmark_group("srtp_protect_unprotect");
    for len in [172usize, 1200] {
        g.throughput(Throughput::Bytes(len as u64));
        let mut plain = packet(len);
        let mut seq = 0u16;
        g.bench_with_input(BenchmarkId::new("plain_copy", len), &len, |b, _| {
            b.iter(|| {
                seq = seq.wrapping_add(1);
                plain[2..4].copy_from_slice(&seq.to_be_bytes());
                std::hint::black_box(plain.clone())
            })
        });
        for suite in SrtpSuite::ALL {
            let key = SrtpKey::from_os_rng(suite);
            let mut tx = SrtpSender::new(&key).unwrap();
            let mut rx = SrtpReceiver::new(&key).unwrap();
            let mut p = packet(len);
            let mut seq = 0u16;
            g.bench_with_input(BenchmarkId::new(suite.sdp_name(), len), &len, |b, _| {
                b.iter(|| {
                    seq = seq.wrapping_add(1);
                    p[2..4].copy_from_slice(&seq.to_be_bytes());
                    let protected = tx.protect_rtp(&p).unwrap();
                    std::hint::black_box(rx.unprotect_rtp(&protected).unwrap())
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, srtp);
criterion_main!(benches);
