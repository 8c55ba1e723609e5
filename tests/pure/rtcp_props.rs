//! Property tests for the RTP/RTCP wire code: what we build parses back to the same values, and
//! no byte sequence from the network makes the parsers panic.

use std::collections::BTreeSet;

use proptest::prelude::*;
use roomkit_media::rtp::packet::{classify_muxed, parse_rtp, write_rtp_header, MuxedKind};
use roomkit_media::rtp::receiver::ReceiverStats;
use roomkit_media::rtp::rtcp::{
    build_bye, build_fir, build_nack, build_pli, build_report, parse_compound, FirRequest,
    ReportBlockData, RtcpEvent, SenderInfo,
};

fn report_block() -> impl Strategy<Value = ReportBlockData> {
    (
        any::<u32>(),
        any::<u8>(),
        -0x80_0000i32..=0x7f_ffff,
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(
            |(ssrc, fraction_lost, cumulative_lost, ext_highest_seq, jitter, lsr, dlsr)| {
                ReportBlockData {
                    ssrc,
                    fraction_lost,
                    cumulative_lost,
                    ext_highest_seq,
                    jitter,
                    lsr,
                    dlsr,
                }
            },
        )
}

fn sender_info() -> impl Strategy<Value = SenderInfo> {
    (any::<u64>(), any::<u32>(), any::<u32>(), any::<u32>()).prop_map(
        |(ntp, rtp_ts, packet_count, octet_count)| SenderInfo {
            ntp,
            rtp_ts,
            packet_count,
            octet_count,
        },
    )
}

/// A compound with one of every packet type we build, for mutation.
fn rich_compound() -> Vec<u8> {
    let blocks: Vec<ReportBlockData> = (0..3)
        .map(|i| ReportBlockData {
            ssrc: i,
            fraction_lost: 10,
            cumulative_lost: -5,
            ext_highest_seq: 70000,
            jitter: 30,
            lsr: 0x1234_5678,
            dlsr: 0x0001_0000,
        })
        .collect();
    let info = SenderInfo {
        ntp: 0xe000_0000_1234_5678,
        rtp_ts: 1,
        packet_count: 2,
        octet_count: 3,
    };
    let mut out = Vec::new();
    build_report(&mut out, 0xabcd, Some(&info), &blocks, "user@host.example").unwrap();
    build_pli(&mut out, 0xabcd, 0x1111).unwrap();
    build_fir(&mut out, 0xabcd, 0x1111, 9).unwrap();
    build_nack(&mut out, 0xabcd, 0x1111, &[5, 6, 9, 40, 41, 60000]).unwrap();
    build_bye(&mut out, 0xabcd, Some("bye now")).unwrap();
    out
}

/// One RTCP packet with a plausible header (version 2, a known type, a length field matching
/// the body) and arbitrary contents, so the per-type parsers see the bytes.
fn plausible_packet() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(vec![200u8, 201, 202, 203, 204, 205, 206, 207, 210]),
        0u8..32,
        any::<bool>(),
        (0usize..40).prop_flat_map(|words| prop::collection::vec(any::<u8>(), words * 4)),
    )
        .prop_map(|(pt, count, padding, body)| {
            let mut p = vec![0x80 | count | if padding { 0x20 } else { 0 }, pt];
            p.extend_from_slice(&((body.len() / 4) as u16).to_be_bytes());
            p.extend_from_slice(&body);
            p
        })
}

#[derive(Debug, Clone)]
enum Mutation {
    Set(usize, u8),
    Xor(usize, u8),
    Truncate(usize),
    Insert(usize, u8),
    Remove(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<usize>(), 1u8..=255).prop_map(|(i, b)| Mutation::Xor(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Remove),
    ]
}

fn apply(data: &mut Vec<u8>, m: &Mutation) {
    if data.is_empty() {
        return;
    }
    let len = data.len();
    match *m {
        Mutation::Set(i, b) => data[i % len] = b,
        Mutation::Xor(i, b) => data[i % len] ^= b,
        Mutation::Truncate(i) => data.truncate(i % len),
        Mutation::Insert(i, b) => data.insert(i % (len + 1), b),
        Mutation::Remove(i) => {
            data.remove(i % len);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn rtp_header_round_trips(
        pt in 0u8..128,
        marker in any::<bool>(),
        seq in any::<u16>(),
        ts in any::<u32>(),
        ssrc in any::<u32>(),
        payload in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut h = [0u8; 12];
        write_rtp_header(&mut h, pt, marker, seq, ts, ssrc);
        let mut pkt = h.to_vec();
        pkt.extend_from_slice(&payload);
        let (meta, range) = parse_rtp(&pkt).unwrap();
        prop_assert_eq!(meta.payload_type, pt);
        prop_assert_eq!(meta.marker, marker);
        prop_assert_eq!(meta.sequence, seq);
        prop_assert_eq!(meta.timestamp, ts);
        prop_assert_eq!(meta.ssrc, ssrc);
        prop_assert_eq!(&pkt[range], &payload[..]);
        // RTP payload types outside 64..=95 never look like RTCP on a muxed port.
        if !(64..=95).contains(&pt) {
            prop_assert_eq!(classify_muxed(&pkt), MuxedKind::Rtp);
        }
    }

    #[test]
    fn report_round_trips(
        ssrc in any::<u32>(),
        sender in prop::option::of(sender_info()),
        blocks in prop::collection::vec(report_block(), 0..70),
        cname in "[ -~]{0,255}",
    ) {
        let mut out = vec![0xee];
        let n = build_report(&mut out, ssrc, sender.as_ref(), &blocks, &cname).unwrap();
        prop_assert_eq!(n + 1, out.len());
        prop_assert_eq!(classify_muxed(&out[1..]), MuxedKind::Rtcp);
        let events = parse_compound(&out[1..]).unwrap();
        let mut got_blocks = Vec::new();
        let mut saw_sdes = false;
        for (i, ev) in events.into_iter().enumerate() {
            match ev {
                RtcpEvent::SenderReport { ssrc: s, ntp, rtp_ts, packets, octets, reports } => {
                    prop_assert_eq!(i, 0);
                    let info = sender.unwrap();
                    prop_assert_eq!(s, ssrc);
                    prop_assert_eq!((ntp, rtp_ts, packets, octets),
                        (info.ntp, info.rtp_ts, info.packet_count, info.octet_count));
                    got_blocks.extend(reports);
                }
                RtcpEvent::ReceiverReport { ssrc: s, reports } => {
                    prop_assert!(i > 0 || sender.is_none());
                    prop_assert_eq!(s, ssrc);
                    got_blocks.extend(reports);
                }
                RtcpEvent::Sdes { ssrc: s, cname: c } => {
                    prop_assert_eq!(s, ssrc);
                    prop_assert_eq!(&c, &cname);
                    saw_sdes = true;
                }
                other => prop_assert!(false, "unexpected {:?}", other),
            }
        }
        prop_assert!(saw_sdes);
        prop_assert_eq!(got_blocks, blocks);
    }

    #[test]
    fn bye_round_trips(ssrc in any::<u32>(), reason in "[ -~]{0,255}") {
        let mut out = Vec::new();
        build_report(&mut out, ssrc, None, &[], "x").unwrap();
        build_bye(&mut out, ssrc, Some(&reason)).unwrap();
        let events = parse_compound(&out).unwrap();
        let expect_reason = if reason.is_empty() { None } else { Some(reason.clone()) };
        prop_assert_eq!(
            events.last().unwrap(),
            &RtcpEvent::Bye { ssrcs: vec![ssrc], reason: expect_reason }
        );
    }

    #[test]
    fn feedback_round_trips(sender in any::<u32>(), media in any::<u32>(), seq in any::<u8>()) {
        let mut out = Vec::new();
        build_pli(&mut out, sender, media).unwrap();
        build_fir(&mut out, sender, media, seq).unwrap();
        prop_assert_eq!(
            parse_compound(&out).unwrap(),
            vec![
                RtcpEvent::Pli { sender_ssrc: sender, media_ssrc: media },
                RtcpEvent::Fir { sender_ssrc: sender, requests: vec![FirRequest { ssrc: media, seq }] },
            ]
        );
    }

    #[test]
    fn nack_round_trips(
        sender in any::<u32>(),
        media in any::<u32>(),
        base in any::<u16>(),
        offsets in prop::collection::vec(0u16..80, 1..60),
        scattered in prop::collection::vec(any::<u16>(), 0..40),
    ) {
        // A dense cluster (sharing bitmasks, possibly across the wrap) plus scattered losses.
        let lost: Vec<u16> = offsets
            .iter()
            .map(|o| base.wrapping_add(*o))
            .chain(scattered.iter().copied())
            .collect();
        let mut out = Vec::new();
        build_nack(&mut out, sender, media, &lost).unwrap();
        let events = parse_compound(&out).unwrap();
        prop_assert_eq!(events.len(), 1);
        match &events[0] {
            RtcpEvent::Nack { sender_ssrc, media_ssrc, lost: got } => {
                prop_assert_eq!((*sender_ssrc, *media_ssrc), (sender, media));
                let want: BTreeSet<u16> = lost.iter().copied().collect();
                let got_set: BTreeSet<u16> = got.iter().copied().collect();
                prop_assert_eq!(got.len(), got_set.len(), "no sequence number twice");
                prop_assert_eq!(got_set, want);
            }
            other => prop_assert!(false, "unexpected {:?}", other),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn random_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Ok((_, range)) = parse_rtp(&data) {
            prop_assert!(range.start <= range.end && range.end <= data.len());
        }
        let _ = parse_compound(&data);
        let _ = classify_muxed(&data);
    }

    #[test]
    fn random_rtp_like_bytes_never_panic(
        first in any::<u8>(),
        rest in prop::collection::vec(any::<u8>(), 0..80),
    ) {
        // Force version 2 so the CSRC, extension and padding paths are reached.
        let mut data = vec![0x80 | (first & 0x3f)];
        data.extend_from_slice(&rest);
        if let Ok((_, range)) = parse_rtp(&data) {
            prop_assert!(range.start >= 12 && range.start <= range.end && range.end <= data.len());
        }
    }

    #[test]
    fn plausible_rtcp_never_panics(packets in prop::collection::vec(plausible_packet(), 1..5)) {
        let data: Vec<u8> = packets.concat();
        let _ = parse_compound(&data);
    }

    #[test]
    fn mutated_compound_never_panics(mutations in prop::collection::vec(mutation(), 1..8)) {
        let mut data = rich_compound();
        for m in &mutations {
            apply(&mut data, m);
        }
        let _ = parse_compound(&data);
    }
}

proptest! {
    #[test]
    fn receiver_stats_stay_consistent(
        packets in prop::collection::vec((any::<u16>(), any::<u32>(), any::<u32>()), 1..300),
        start in any::<u16>(),
        small_steps in any::<bool>(),
    ) {
        let mut st = ReceiverStats::new(1);
        let mut seq = start;
        for (step, ts, arrival) in packets {
            // Mostly small moves (loss, reorder, duplicates), sometimes anything at all.
            seq = if small_steps { seq.wrapping_add(step % 8).wrapping_sub(2) } else { step };
            st.on_packet(seq, ts, arrival, 100);
            let rb = st.report_block(u64::from(arrival) << 16);
            prop_assert!((-0x80_0000..=0x7f_ffff).contains(&rb.cumulative_lost));
            prop_assert!(st.expected() >= 1);
            prop_assert!(st.received() >= st.duplicates());
        }
        prop_assert!(st.jitter().is_finite() && st.jitter() >= 0.0);
    }
}

#[test]
fn the_rich_compound_parses() {
    let events = parse_compound(&rich_compound()).unwrap();
    assert_eq!(events.len(), 6);
    assert!(matches!(events[0], RtcpEvent::SenderReport { .. }));
    assert!(matches!(events[5], RtcpEvent::Bye { .. }));
}
