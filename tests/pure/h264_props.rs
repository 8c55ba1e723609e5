//! Property tests of the H.264 path: pictures → packetizer → RTP (sequence and timestamp wrap,
//! reordering, loss) → reorder window → depacketizer → pictures, and arbitrary input into the
//! receiving side.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};

use roomkit_media::codec::annexb::{nal_type, nal_units};
use roomkit_media::codec::h264::{H264Depacketizer, H264Packetizer, PacketizationMode};
use roomkit_media::codec::{Depacketizer, Packetizer, PayloadList, PictureBuf};
use roomkit_media::frame::{Delivery, VideoFrame};
use roomkit_media::rtp::video::{VideoReceiver, VideoReceiverConfig};
use roomkit_media::rtp::RtpMeta;

const TS_STEP: u32 = 3000;

/// A NAL unit that survives Annex-B framing: emulation prevention applied and a nonzero last byte,
/// as every real encoder's output has.
fn make_nal(rng: &mut StdRng, kind: u8, len: usize) -> Vec<u8> {
    let nri = if kind == 5 || kind == 7 || kind == 8 {
        3
    } else {
        rng.random_range(0..4u8)
    };
    let mut v = Vec::with_capacity(len);
    v.push((nri << 5) | kind);
    while v.len() < len {
        // Zeros are common in real slices; make them common here so start-code look-alikes are tried.
        let mut b: u8 = if rng.random_bool(0.3) {
            0
        } else {
            rng.random()
        };
        let n = v.len();
        if n >= 2 && v[n - 1] == 0 && v[n - 2] == 0 && b <= 3 {
            b = 3;
        }
        v.push(b);
    }
    if let Some(last) = v.last_mut() {
        if *last == 0 {
            *last = 0x80;
        }
    }
    v
}

fn make_picture(rng: &mut StdRng, keyframe: bool) -> Vec<Vec<u8>> {
    let mut nals = Vec::new();
    if keyframe {
        let (sps_len, pps_len) = (rng.random_range(1..30), rng.random_range(1..10));
        nals.push(make_nal(rng, 7, sps_len));
        nals.push(make_nal(rng, 8, pps_len));
    }
    let count = rng.random_range(1..4);
    for _ in 0..count {
        let kind = if keyframe {
            5
        } else {
            *[1u8, 1, 1, 6, 9, 2, 12, 19, 23].choose(rng).unwrap()
        };
        let len = if rng.random_bool(0.5) {
            rng.random_range(1..200)
        } else {
            rng.random_range(1..5000)
        };
        nals.push(make_nal(rng, kind, len));
    }
    nals
}

/// The picture as a sender would hand it over: mixed 3- and 4-byte start codes, stray trailing
/// zeros, or a bare NAL unit.
fn encode_input(rng: &mut StdRng, nals: &[Vec<u8>]) -> Vec<u8> {
    if nals.len() == 1 && rng.random_bool(0.3) {
        return nals[0].clone();
    }
    let mut v = Vec::new();
    for n in nals {
        if rng.random_bool(0.5) {
            v.extend_from_slice(&[0, 0, 1]);
        } else {
            v.extend_from_slice(&[0, 0, 0, 1]);
        }
        v.extend_from_slice(n);
        let zeros = rng.random_range(0..3);
        v.extend(std::iter::repeat_n(0, zeros));
    }
    v
}

fn canonical(nals: &[Vec<u8>]) -> Vec<u8> {
    let mut v = Vec::new();
    for n in nals {
        v.extend_from_slice(&[0, 0, 0, 1]);
        v.extend_from_slice(n);
    }
    v
}

struct Stream {
    /// The NAL units of each picture, by RTP timestamp.
    pictures: Vec<(u32, Vec<Vec<u8>>)>,
    packets: Vec<(RtpMeta, Vec<u8>)>,
}

fn make_stream(seed: u64, n_pictures: usize, mtu: usize, seq0: u16, ts0: u32) -> Stream {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut pk = H264Packetizer::new(mtu, PacketizationMode::NonInterleaved);
    let mut list = PayloadList::new();
    let mut seq = seq0;
    let mut pictures = Vec::new();
    let mut packets = Vec::new();
    for i in 0..n_pictures {
        let key = i == 0 || rng.random_bool(0.2);
        let nals = make_picture(&mut rng, key);
        let input = encode_input(&mut rng, &nals);
        let ts = ts0.wrapping_add(TS_STEP * i as u32);
        list.clear();
        pk.packetize(&input, &mut list).expect("packetize");
        for j in 0..list.len() {
            assert!(list.payload_len(j) <= mtu);
            assert_eq!(list.marker(j), j + 1 == list.len());
            let meta = RtpMeta {
                payload_type: 96,
                marker: list.marker(j),
                sequence: seq,
                timestamp: ts,
                ssrc: 0xdead_beef,
            };
            seq = seq.wrapping_add(1);
            packets.push((meta, list.payload(j, &input)));
        }
        pictures.push((ts, nals));
    }
    Stream { pictures, packets }
}

/// Shuffles within consecutive chunks, so no packet moves further than the reorder window spans.
/// The first packet stays first: the first packet to arrive starts the stream, and anything
/// before it would be late by definition.
fn shuffle_chunks<T>(rng: &mut StdRng, v: &mut [T], chunk: usize) {
    let Some((_, rest)) = v.split_first_mut() else {
        return;
    };
    for c in rest.chunks_mut(chunk.max(1)) {
        c.shuffle(rng);
    }
}

fn receiver(delivery: Delivery, wait: bool, incomplete: bool) -> VideoReceiver {
    VideoReceiver::h264(VideoReceiverConfig {
        delivery,
        wait_for_keyframe: wait,
        deliver_incomplete: incomplete,
        ..VideoReceiverConfig::default()
    })
}

fn run(rx: &mut VideoReceiver, packets: &[(RtpMeta, Vec<u8>)], step: Duration) -> Vec<VideoFrame> {
    let mut now = Instant::now();
    let mut out = Vec::new();
    for (i, (m, p)) in packets.iter().enumerate() {
        if i % 2 == 0 {
            rx.push(*m, p, now, &mut out);
        } else {
            rx.push_owned(*m, p.clone(), now, &mut out);
        }
        now += step;
        if rx.next_deadline().is_some_and(|d| d <= now) {
            rx.poll(now, &mut out);
        }
    }
    rx.flush(now + Duration::from_secs(1), &mut out);
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Without loss, whatever the reordering inside the window, the receiver hands back exactly
    /// the pictures sent, in order, with keyframe flags, sequence numbers and times right.
    #[test]
    fn round_trip_access_units(
        seed: u64,
        n in 1usize..10,
        mtu in 100usize..1500,
        back in 0u16..40,
        ts0: u32,
        chunk in 1usize..9,
    ) {
        let mut s = make_stream(seed, n, mtu, 65535 - back, ts0);
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
        shuffle_chunks(&mut rng, &mut s.packets, chunk);
        let mut rx = receiver(Delivery::AccessUnit, false, false);
        let out = run(&mut rx, &s.packets, Duration::ZERO);
        prop_assert_eq!(out.len(), s.pictures.len());
        for (i, (f, (ts, nals))) in out.iter().zip(&s.pictures).enumerate() {
            prop_assert_eq!(&f.data, &canonical(nals));
            prop_assert_eq!(f.rtp_timestamp, *ts);
            prop_assert_eq!(f.sequence, i as u64);
            prop_assert!(f.complete);
            prop_assert_eq!(f.keyframe, nals.iter().any(|n| nal_type(n[0]) == 5));
            let want_ms = (i as f64) * f64::from(TS_STEP) / 90.0;
            prop_assert!((f.timestamp_ms - want_ms).abs() < 1e-6);
        }
        let st = rx.stats();
        prop_assert_eq!(st.reorder.lost + st.incomplete_dropped + st.gated_dropped, 0);
    }

    /// The same with one frame per NAL unit: every NAL in order, keyframe = IDR/SPS/PPS.
    #[test]
    fn round_trip_nal_units(
        seed: u64,
        n in 1usize..10,
        mtu in 100usize..1500,
        back in 0u16..40,
        ts0: u32,
        chunk in 1usize..9,
    ) {
        let mut s = make_stream(seed, n, mtu, 65535 - back, ts0);
        let mut rng = StdRng::seed_from_u64(seed ^ 0xface);
        shuffle_chunks(&mut rng, &mut s.packets, chunk);
        let mut rx = receiver(Delivery::NalUnit, true, false);
        let out = run(&mut rx, &s.packets, Duration::ZERO);
        let sent: Vec<(u32, &Vec<u8>)> =
            s.pictures.iter().flat_map(|(ts, nals)| nals.iter().map(move |n| (*ts, n))).collect();
        prop_assert_eq!(out.len(), sent.len());
        for (i, (f, (ts, nal))) in out.iter().zip(&sent).enumerate() {
            prop_assert_eq!(&&f.data, nal);
            prop_assert_eq!(f.rtp_timestamp, *ts);
            prop_assert_eq!(f.sequence, i as u64);
            prop_assert_eq!(f.keyframe, matches!(nal_type(nal[0]), 5 | 7 | 8));
        }
    }

    /// With packets lost and reordered (some beyond the window, and time passing), nothing is ever
    /// invented or corrupted: whole pictures are exactly what was sent, broken ones carry only
    /// whole NAL units of their picture, in order.
    #[test]
    fn loss_never_corrupts(
        seed: u64,
        n in 1usize..12,
        mtu in 100usize..1500,
        back in 0u16..40,
        ts0: u32,
        chunk in 1usize..12,
        drop_pct in 0u32..30,
        per_nal: bool,
        wait: bool,
        incomplete: bool,
        step_ms in 0u64..15,
    ) {
        let mut s = make_stream(seed, n, mtu, 65535 - back, ts0);
        let mut rng = StdRng::seed_from_u64(seed ^ 0xd0d0);
        // The first packet is kept: a receiver cannot know what came before the first packet it
        // sees, so a loss there is not detectable and not what this property is about.
        let mut first = true;
        s.packets.retain(|_| std::mem::take(&mut first) || rng.random_range(0..100) >= drop_pct);
        shuffle_chunks(&mut rng, &mut s.packets, chunk);
        // Now and then a duplicate.
        if let Some(p) = s.packets.first().cloned() {
            let at = rng.random_range(0..s.packets.len());
            s.packets.insert(at, p);
        }
        let delivery = if per_nal { Delivery::NalUnit } else { Delivery::AccessUnit };
        let mut rx = receiver(delivery, wait, incomplete);
        let out = run(&mut rx, &s.packets, Duration::from_millis(step_ms));
        let by_ts: HashMap<u32, &Vec<Vec<u8>>> = s.pictures.iter().map(|(t, n)| (*t, n)).collect();
        let mut last_seq = None;
        for f in &out {
            let nals = by_ts.get(&f.rtp_timestamp).expect("a timestamp that was sent");
            prop_assert!(f.complete || incomplete);
            if per_nal {
                prop_assert!(nals.contains(&f.data));
            } else if f.complete {
                prop_assert_eq!(&f.data, &canonical(nals));
            } else {
                let got: Vec<Vec<u8>> = nal_units(&f.data).map(|r| f.data[r].to_vec()).collect();
                prop_assert_eq!(&f.data, &canonical(&got));
                let mut it = nals.iter();
                for g in &got {
                    prop_assert!(it.any(|n| n == g), "not an in-order subsequence");
                }
            }
            if let Some(prev) = last_seq {
                prop_assert_eq!(f.sequence, prev + 1);
            }
            last_seq = Some(f.sequence);
        }
    }

    /// Arbitrary payloads: the depacketizer never panics, and what it leaves in the picture is
    /// always whole NAL units behind 4-byte start codes, nothing else.
    #[test]
    fn depacketizer_arbitrary_payloads(
        packets in prop::collection::vec(
            (prop::collection::vec(any::<u8>(), 0..40), any::<bool>(), 0u8..8, 0u8..4),
            0..40,
        ),
    ) {
        let mut d = H264Depacketizer::new();
        let mut pic = PictureBuf::default();
        for (mut bytes, lost, first_kind, finish) in packets {
            // Bias the first byte towards the interesting packet types.
            if let Some(b) = bytes.first_mut() {
                let kinds = [24u8, 28, 28, 5, 1, 25, 29, 0];
                if first_kind < 6 {
                    *b = (*b & 0xe0) | kinds[first_kind as usize];
                }
            }
            d.push(&bytes, lost, &mut pic);
            if finish == 0 {
                d.finish(&mut pic);
                check_picture(&pic)?;
                pic.clear();
            }
        }
        d.finish(&mut pic);
        check_picture(&pic)?;
    }

    /// Arbitrary RTP headers and payloads into the whole receiver: no panic, frames well-formed.
    #[test]
    fn receiver_arbitrary_packets(
        packets in prop::collection::vec(
            (any::<u16>(), 0u32..4, any::<bool>(), 0u32..3,
             prop::collection::vec(any::<u8>(), 0..30), 0u64..50),
            0..60,
        ),
        per_nal: bool,
        incomplete: bool,
    ) {
        let delivery = if per_nal { Delivery::NalUnit } else { Delivery::AccessUnit };
        let mut rx = receiver(delivery, false, incomplete);
        let mut now = Instant::now();
        let mut out = Vec::new();
        for (seq_off, ts, marker, ssrc, mut payload, dt) in packets {
            if let Some(b) = payload.first_mut() {
                *b = (*b & 0xe0) | [1u8, 5, 24, 28, 28, 7][usize::from(*b) % 6];
            }
            let meta = RtpMeta {
                payload_type: 96,
                marker,
                sequence: 65530u16.wrapping_add(seq_off % 64),
                timestamp: ts.wrapping_mul(3000),
                ssrc,
            };
            rx.push(meta, &payload, now, &mut out);
            now += Duration::from_millis(dt);
            rx.poll(now, &mut out);
            let _ = rx.take_keyframe_request(now);
        }
        rx.flush(now, &mut out);
        for f in &out {
            prop_assert!(!f.data.is_empty());
            if !per_nal {
                let got: Vec<Vec<u8>> = nal_units(&f.data).map(|r| f.data[r].to_vec()).collect();
                prop_assert!(f.data.starts_with(&[0, 0, 0, 1]));
                prop_assert!(!got.is_empty());
            }
        }
    }

    /// Real packet streams with bytes flipped: no panic, and the receiver keeps going.
    #[test]
    fn mutated_streams_do_not_panic(
        seed: u64,
        n in 1usize..6,
        mtu in 100usize..800,
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>(), any::<u8>()), 0..20),
    ) {
        let mut s = make_stream(seed, n, mtu, 100, 0);
        for (pi, bi, x) in flips {
            let len = s.packets.len();
            let p = &mut s.packets[pi.index(len)].1;
            if !p.is_empty() {
                let at = bi.index(p.len());
                p[at] ^= x;
            }
        }
        let mut rx = receiver(Delivery::AccessUnit, true, false);
        let out = run(&mut rx, &s.packets, Duration::from_millis(1));
        for f in &out {
            prop_assert!(f.data.starts_with(&[0, 0, 0, 1]));
        }
    }
}

fn check_picture(pic: &PictureBuf) -> Result<(), TestCaseError> {
    let mut expect = Vec::new();
    let mut key = false;
    for r in &pic.units {
        prop_assert!(!r.is_empty());
        prop_assert!(r.start >= 4 && r.end <= pic.data.len());
        prop_assert_eq!(&pic.data[r.start - 4..r.start], &[0, 0, 0, 1]);
        key |= nal_type(pic.data[r.start]) == 5;
        expect.extend_from_slice(&[0, 0, 0, 1]);
        expect.extend_from_slice(&pic.data[r.clone()]);
    }
    prop_assert_eq!(&pic.data, &expect);
    prop_assert_eq!(pic.keyframe, key);
    Ok(())
}

/// Guards the loss property against passing vacuously: over a few seeds, lossy streams do produce
/// both whole pictures and flagged broken ones, and keyframe requests.
#[test]
fn lossy_streams_deliver_both_whole_and_broken_pictures() {
    let (mut whole, mut broken, mut requests) = (0, 0, 0);
    for seed in 0..20u64 {
        let mut s = make_stream(seed, 10, 600, 65530, u32::MAX - 7000);
        let mut rng = StdRng::seed_from_u64(seed);
        let mut first = true;
        s.packets
            .retain(|_| std::mem::take(&mut first) || rng.random_range(0..100) >= 10);
        let mut rx = receiver(Delivery::AccessUnit, false, true);
        for f in run(&mut rx, &s.packets, Duration::from_millis(2)) {
            if f.complete {
                whole += 1;
            } else {
                broken += 1;
            }
        }
        requests += u64::from(rx.take_keyframe_request(Instant::now() + Duration::from_secs(5)));
    }
    assert!(
        whole > 20 && broken > 5 && requests > 5,
        "{whole} {broken} {requests}"
    );
}
