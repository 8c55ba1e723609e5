//! Congestion control cost per media packet, on one core:
//! - `sender`: the estimator's share of the send path — `on_packet_sent` for every packet plus
//!   one transport-wide feedback packet (parsed from its bytes, matched and run through the
//!   delay and loss controllers) every 50 packets, which is what a 2.5 Mbit/s video stream with
//!   feedback every 50 ms looks like;
//! - `receiver`: `TwccRecorder::on_packet` for every packet plus building that feedback;
//! - `both`: the two together;
//! - `stream_core/{off,on}`: the whole stream core, both ends on virtual time (`SimPair`, a clean
//!   20 ms path): a 10-packet picture every 33 ms sent, paced, received and reported, without and
//!   with congestion control (stamping, recording, feedback, estimator, picture admission), so
//!   the difference is what congestion control adds per media packet; `remb_abs_send_time` and
//!   `rfc8888` the same with the other two feedbacks (the receiver's own estimate and REMB, or
//!   RFC 8888 reports matched by SSRC and sequence number).
//!
//! Criterion reports packets/s (elements). Run: `cargo bench --bench congestion`.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use roomkit_media::rtp::bwe::{BandwidthEstimator, BweConfig};
use roomkit_media::rtp::config::{
    CcFeedback, CongestionParams, CoreConfig, MediaParams, VideoParams,
};
use roomkit_media::rtp::sim::{h264_picture, PathConfig, SimPair, SimPath};
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

    // The stream core with and without congestion control: packets per second of one picture
    // of 10 packets sent, delivered and reported on virtual time.
    let mut g = c.benchmark_group("congestion_stream_core");
    g.throughput(Throughput::Elements(10));
    for (name, on, feedback, abs) in [
        ("off", false, CcFeedback::TransportCc, None),
        ("on", true, CcFeedback::TransportCc, None),
        ("remb_abs_send_time", true, CcFeedback::Remb, Some(2)),
        ("rfc8888", true, CcFeedback::Ccfb, None),
    ] {
        let cfg = CoreConfig {
            media: MediaParams::Video(VideoParams {
                congestion: CongestionParams {
                    enabled: on,
                    feedback,
                    abs_send_time_id: abs,
                    bitrate: BweConfig {
                        start_bps: 5_000_000,
                        ..BweConfig::default()
                    },
                    ..CongestionParams::default()
                },
                ..VideoParams::default()
            }),
            ..CoreConfig::default()
        };
        let path = || SimPath::new(PathConfig::clean(Duration::from_millis(20)), 1);
        let mut pair = SimPair::new(Instant::now(), cfg.clone(), cfg, path(), path(), 1)
            .expect("a simulated pair");
        let picture = h264_picture(false, 10 * 1_150, 7);
        let frame = Duration::from_nanos(33_333_333);
        g.bench_function(name, |b| {
            b.iter(|| {
                pair.with_a(|c, now| c.send_video(now, &picture, None))
                    .expect("sending a picture");
                pair.run_for(frame);
                // The receiver's frames are not kept: only the cost matters here.
                pair.b.events.clear();
                pair.a.events.clear();
            })
        });
    }
    g.finish();
}

criterion_group!(benches, congestion);
criterion_main!(benches);
