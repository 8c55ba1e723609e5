//! Congestion control cost per media packet, on one core:
//! - `sender`: the estimator's share of the send path — `on_packet_sent` for every packet plus
//!   one transport-wide feedback packet (parsed from its bytes, matched and run through the
//!   delay and loss controllers) every 50 packets, which is what a 2.5 Mbit/s video stream with
//!   feedback every 50 ms looks like;
//! - `receiver`: `TwccRecorder::on_packet` for every packet plus building that feedback;
//! - `both`: the two together.
//!
//! Criterion reports packets/s (elements). Run: `cargo bench --bench congestion`.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use roomkit_media::rtp::bwe::{BandwidthEstimator, BweConfig};
use roomkit_media::rtp::twcc::{parse_fci, TwccRecorder};

/// Packets between two feedback packets.
const BATCH: u64 = 50;
/// Time between packets: 50 packets in 50 ms.
const GAP: Duration = Duration::from_millis(1);

/// A sender and a receiver joined by a perfect 20 ms path, stepping one batch at a time.
struct Pair {
    bwe: BandwidthEstimator,
    rec: TwccRecorder,
    t: Instant,
    seq: u16,
    buf: Vec<u8>,
}

impl Pair {
    fn new() -> Self {
        Pair {
            bwe: BandwidthEstimator::new(BweConfig::default()),
            rec: TwccRecorder::new(),
            t: Instant::now(),
            seq: 0,
            buf: Vec::with_capacity(1500),
        }
    }

    /// Receiver side of one batch: the feedback bytes it builds.
    fn receive(&mut self) {
        for _ in 0..BATCH {
            self.rec
                .on_packet(self.t + Duration::from_millis(20), self.seq);
            self.seq = self.seq.wrapping_add(1);
            self.t += GAP;
        }
        self.buf.clear();
        while self.rec.poll_feedback(&mut self.buf, 1, 2).is_some() {}
    }

    /// Both sides of one batch.
    fn both(&mut self) {
        let first = self.seq;
        for i in 0..BATCH {
            self.bwe
                .on_packet_sent(self.t + GAP * i as u32, first.wrapping_add(i as u16), 1200);
        }
        self.receive();
        let fb = parse_fci(1, 2, &self.buf[12..]).expect("our feedback parses");
        self.bwe
            .on_transport_feedback(self.t + Duration::from_millis(40), &fb);
        std::hint::black_box(self.bwe.target_bps());
    }
}

fn congestion(c: &mut Criterion) {
    let mut g = c.benchmark_group("congestion_per_packet");
    g.throughput(Throughput::Elements(BATCH));

    // The sender alone: the receiver's feedback bytes are made in criterion's untimed setup.
    let mut rx = Pair::new();
    let mut tx = Pair::new();
    g.bench_function("sender", |b| {
        b.iter_batched(
            || {
                rx.receive();
                rx.buf.clone()
            },
            |bytes| {
                let first = tx.seq;
                for i in 0..BATCH {
                    tx.bwe.on_packet_sent(
                        tx.t + GAP * i as u32,
                        first.wrapping_add(i as u16),
                        1200,
                    );
                }
                tx.seq = tx.seq.wrapping_add(BATCH as u16);
                tx.t += GAP * BATCH as u32;
                let fb = parse_fci(1, 2, &bytes[12..]).expect("our feedback parses");
                tx.bwe
                    .on_transport_feedback(tx.t + Duration::from_millis(40), &fb);
                std::hint::black_box(tx.bwe.target_bps())
            },
            BatchSize::SmallInput,
        )
    });

    let mut r = Pair::new();
    g.bench_function("receiver", |b| {
        b.iter(|| {
            r.receive();
            std::hint::black_box(r.buf.len())
        })
    });

    let mut both = Pair::new();
    g.bench_function("both", |b| b.iter(|| both.both()));
    g.finish();
}

criterion_group!(benches, congestion);
criterion_main!(benches);
