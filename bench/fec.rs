//! Forward error correction cost per media packet, on one core. A picture is 10 packets of
//! 1,200 bytes, protected at half an FEC packet per media packet (the rate without feedback,
//! and the most with it: the dearest case):
//! - `fec_per_packet/protect`: the sender's share — each media packet into `FecSender`, the FEC
//!   payloads built, and media and FEC wrapped in RED, as they leave;
//! - `fec_per_packet/recover`: the receiver's share — RED unwrapped, every media packet but one
//!   and the picture's FEC handed to `FecReceiver`, the lost one rebuilt;
//! - `fec_stream_core/{off,on}`: the whole stream core, both ends on virtual time (`SimPair`, a
//!   clean 20 ms path, no receiver reports so the rate stays at 0.5): a 10-packet picture every
//!   33 ms sent, paced, received, without and with FEC, so the difference is what FEC adds per
//!   media packet end to end.
//!
//! Criterion reports media packets/s (elements). Run: `cargo bench --bench fec`.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use roomkit_media::rtp::config::{CoreConfig, MediaParams, VideoParams};
use roomkit_media::rtp::fec::{FecConfig, FecReceiver, FecSender};
use roomkit_media::rtp::red::{unwrap_red, wrap_red};
use roomkit_media::rtp::sim::{h264_picture, PathConfig, SimPair, SimPath};

/// Media packets per picture.
const PACKETS: u16 = 10;
const RATE: f64 = 0.5;
const MEDIA_PT: u8 = 96;
const SSRC: u32 = 0x1234_5678;

/// Media packet `seq` of a picture: a 12-byte RTP header and 1,188 bytes of payload; the marker
/// on the picture's last packet.
fn media_packet(seq: u16, last: bool) -> Vec<u8> {
    let mut p = Vec::with_capacity(1200);
    p.push(0x80);
    p.push(MEDIA_PT | if last { 0x80 } else { 0 });
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq / PACKETS) * 3000).to_be_bytes());
    p.extend_from_slice(&SSRC.to_be_bytes());
    p.extend((0..1188u32).map(|i| (i as u8) ^ (seq as u8)));
    p
}

/// One picture's media packets from `first` on.
fn picture(first: u16) -> Vec<Vec<u8>> {
    (0..PACKETS)
        .map(|i| media_packet(first.wrapping_add(i), i + 1 == PACKETS))
        .collect()
}

/// The sender's work for one picture: FEC built and everything wrapped in RED (into `out`).
fn protect(tx: &mut FecSender, media: &[Vec<u8>], red: &mut Vec<u8>, out: &mut Vec<Vec<u8>>) {
    let cfg = FecConfig::default();
    out.clear();
    for (i, p) in media.iter().enumerate() {
        tx.add_media(p, i + 1 == media.len(), RATE);
        wrap_red(p, cfg.red_payload_type, red).expect("RED wraps");
        out.push(red.clone());
    }
    while let Some(payload) = tx.poll_fec() {
        // An FEC packet: the media's header under the ULPFEC payload type, then the payload.
        let mut fec = media[0][..12].to_vec();
        fec[1] = cfg.ulpfec_payload_type;
        fec.extend_from_slice(&payload);
        wrap_red(&fec, cfg.red_payload_type, red).expect("RED wraps");
        out.push(red.clone());
    }
}

fn fec(c: &mut Criterion) {
    let mut g = c.benchmark_group("fec_per_packet");
    g.throughput(Throughput::Elements(u64::from(PACKETS)));

    let mut tx = FecSender::new();
    let (mut red, mut out) = (Vec::new(), Vec::new());
    let mut first = 0u16;
    g.bench_function("protect", |b| {
        b.iter_batched(
            || {
                let p = picture(first);
                first = first.wrapping_add(PACKETS);
                p
            },
            |media| {
                protect(&mut tx, &media, &mut red, &mut out);
                std::hint::black_box(out.len())
            },
            BatchSize::SmallInput,
        )
    });

    // The receiver: each picture's RED packets made in criterion's untimed setup.
    let mut maker = FecSender::new();
    let mut rx = FecReceiver::new();
    let mut inner = Vec::new();
    let mut first = 0u16;
    let ulpfec_pt = FecConfig::default().ulpfec_payload_type;
    g.bench_function("recover", |b| {
        b.iter_batched(
            || {
                let media = picture(first);
                first = first.wrapping_add(PACKETS);
                let (mut red, mut out) = (Vec::new(), Vec::new());
                protect(&mut maker, &media, &mut red, &mut out);
                // The fourth media packet is lost on the way.
                out.remove(3);
                out
            },
            |packets| {
                for p in &packets {
                    match unwrap_red(p, &mut inner) {
                        Ok(pt) if pt == ulpfec_pt => rx.handle_fec_packet(&inner),
                        Ok(_) => rx.handle_media(&inner),
                        Err(_) => unreachable!("our RED unwraps"),
                    }
                }
                let mut rebuilt = 0;
                while let Some(p) = rx.poll_recovered() {
                    rebuilt += p.len();
                }
                assert!(rebuilt > 0, "the lost packet is rebuilt");
                std::hint::black_box(rebuilt)
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();

    // The stream core with and without FEC: media packets per second of one picture of 10
    // packets sent, delivered and handed out on virtual time.
    let mut g = c.benchmark_group("fec_stream_core");
    g.throughput(Throughput::Elements(u64::from(PACKETS)));
    for (name, fec) in [("off", None), ("on", Some(FecConfig::default()))] {
        let cfg = CoreConfig {
            media: MediaParams::Video(VideoParams {
                fec,
                ..VideoParams::default()
            }),
            // No receiver reports, however long criterion runs (each iteration is 33 ms of
            // virtual time): FEC stays at its rate without feedback (0.5).
            rtcp_interval: Duration::from_secs(100 * 365 * 86_400),
            ..CoreConfig::default()
        };
        let path = || SimPath::new(PathConfig::clean(Duration::from_millis(20)), 1);
        let mut pair = SimPair::new(Instant::now(), cfg.clone(), cfg, path(), path(), 1)
            .expect("a simulated pair");
        // Key pictures: a receiver waiting for one would ask for it (PLI), and its report in
        // that RTCP packet (no loss) would turn FEC off.
        let picture = h264_picture(true, usize::from(PACKETS) * 1_150, 7);
        let frame = Duration::from_nanos(33_333_333);
        g.bench_function(name, |b| {
            b.iter(|| {
                pair.with_a(|c, now| c.send_video(now, &picture, None))
                    .expect("sending a picture");
                pair.run_for(frame);
                pair.b.events.clear();
                pair.a.events.clear();
            })
        });
        if fec.is_some() {
            // Every picture was protected at the full rate, to the end: 5 FEC packets for each
            // 10 of media, a third of all it sent.
            let s = pair.with_a(|c, _| c.stats());
            assert!(
                s.fec_sent * 10 >= s.packets_sent * 3,
                "FEC on every picture: {} FEC for {} packets",
                s.fec_sent,
                s.packets_sent
            );
        }
    }
    g.finish();
}

criterion_group!(benches, fec);
criterion_main!(benches);
