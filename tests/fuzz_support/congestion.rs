//! Congestion feedback from untrusted bytes: the fuzzer's bytes read as transport-wide CC
//! feedback, as a REMB message, as an RFC 8888 (CCFB) report, as an RFC 8285 header extension
//! block and as RTP packets a REMB receiver estimates from. What parses must rebuild with our
//! builders and parse back the same, and feeding it to an estimator must keep the target inside
//! its bounds.

use std::time::{Duration, Instant};

use roomkit_media::rtp::bwe::remote::{ReceiveEstimator, SendClock};
use roomkit_media::rtp::bwe::{BandwidthEstimator, BweConfig};
use roomkit_media::rtp::{ccfb, hdrext, remb, twcc};

/// Runs every check on `data`.
pub fn feedback(data: &[u8]) {
    transport_cc(data);
    remb_message(data);
    header_extension(data);
    ccfb_report(data);
    remb_receiver(data);
}

fn ccfb_report(data: &[u8]) {
    let Ok(fb) = ccfb::parse_body(5, data) else {
        return;
    };
    let mut out = Vec::new();
    let n =
        ccfb::build(&mut out, 5, &fb.blocks, fb.report_timestamp).expect("parsed CCFB rebuilds");
    assert_eq!(n, out.len());
    let back = ccfb::parse_body(5, &out[8..]).expect("our CCFB parses");
    assert_eq!(back, fb);
    // The estimator takes it, whatever it says, and stays in bounds.
    let cfg = BweConfig::default();
    let mut bwe = BandwidthEstimator::new(cfg);
    let t0 = Instant::now();
    for b in fb.blocks.iter().take(4) {
        for i in 0..b.metrics.len().min(2_000) {
            let seq = b.begin_seq.wrapping_add(i as u16);
            bwe.on_rtp_sent(t0 + Duration::from_millis(i as u64), b.ssrc, seq, 1200);
        }
    }
    bwe.on_ccfb(t0 + Duration::from_secs(1), &fb);
    bwe.on_ccfb(t0 + Duration::from_secs(2), &back);
    assert!((cfg.min_bps..=cfg.max_bps).contains(&bwe.target_bps()));
}

/// The bytes as a run of RTP packets (split at every 0xff byte) a REMB receiver estimates from,
/// on both of its clocks.
fn remb_receiver(data: &[u8]) {
    let cfg = BweConfig::default();
    for clock in [SendClock::AbsSendTime(2), SendClock::RtpTimestamp(90_000)] {
        let mut e = ReceiveEstimator::new(cfg, clock);
        let t0 = Instant::now();
        for (i, packet) in data.split(|&b| b == 0xff).enumerate() {
            let now = t0 + Duration::from_millis(7 * i as u64);
            e.on_packet(now, packet);
            if i % 4 == 3 {
                if let Some(bps) = e.poll(now) {
                    assert!((cfg.min_bps..=cfg.max_bps).contains(&bps));
                }
            }
        }
        assert!((cfg.min_bps..=cfg.max_bps).contains(&e.estimate_bps()));
    }
}

fn transport_cc(data: &[u8]) {
    let Ok(fb) = twcc::parse_fci(1, 2, data) else {
        return;
    };
    assert!(fb.arrivals.len() <= twcc::MAX_STATUS_COUNT);
    if fb.arrivals.is_empty() {
        return;
    }
    let mut out = Vec::new();
    let n = twcc::build(&mut out, 1, 2, fb.base_seq, fb.fb_count, &fb.arrivals)
        .expect("parsed feedback rebuilds");
    assert!(n >= 1 && n <= fb.arrivals.len());
    assert_eq!(out.len() % 4, 0);
    assert!(out.len() <= 12 + twcc::MAX_FCI_BYTES + 3);
    let back = twcc::parse_fci(1, 2, &out[12..]).expect("our feedback parses");
    assert_eq!((back.base_seq, back.fb_count), (fb.base_seq, fb.fb_count));
    assert_eq!(back.arrivals.len(), n);
    // Arrivals come back exactly (they are whole 250 µs steps), measured from the first
    // received: the reference time may differ.
    let rel = |a: &[Option<i64>]| {
        let first = a.iter().flatten().next().copied().unwrap_or(0);
        a.iter().map(|x| x.map(|t| t - first)).collect::<Vec<_>>()
    };
    assert_eq!(rel(&back.arrivals), rel(&fb.arrivals[..n]));

    // The estimator takes it, whatever it says, and stays in bounds.
    let cfg = BweConfig::default();
    let mut bwe = BandwidthEstimator::new(cfg);
    let t0 = Instant::now();
    for i in 0..fb.arrivals.len() {
        let seq = fb.base_seq.wrapping_add(i as u16);
        bwe.on_packet_sent(t0 + Duration::from_millis(i as u64), seq, 1200);
    }
    bwe.on_transport_feedback(t0 + Duration::from_secs(1), &fb);
    bwe.on_transport_feedback(t0 + Duration::from_secs(2), &back);
    assert!((cfg.min_bps..=cfg.max_bps).contains(&bwe.target_bps()));
}

fn remb_message(data: &[u8]) {
    let Ok(Some(r)) = remb::parse_fci(3, data) else {
        return;
    };
    let mut out = Vec::new();
    remb::build(&mut out, 3, r.bitrate_bps, &r.ssrcs).expect("parsed REMB rebuilds");
    let back = remb::parse_fci(3, &out[12..])
        .expect("our REMB parses")
        .expect("and is REMB");
    assert_eq!(back.ssrcs, r.ssrcs);
    // 18 bits of mantissa: the rebuilt rate is the same or rounded down a little.
    assert!(back.bitrate_bps <= r.bitrate_bps);
    assert!(r.bitrate_bps - back.bitrate_bps <= r.bitrate_bps >> 17);
}

fn header_extension(data: &[u8]) {
    let [p0, p1, block @ ..] = data else {
        return;
    };
    let profile = u16::from_be_bytes([*p0, *p1]);
    let elements: Vec<hdrext::ExtElement<'_>> = hdrext::elements(profile, block).collect();
    let mut out = Vec::new();
    if hdrext::write_block(&mut out, &elements).is_err() {
        return;
    }
    let written = u16::from_be_bytes([out[0], out[1]]);
    let back: Vec<_> = hdrext::elements(written, &out[4..]).collect();
    assert_eq!(back, elements);
}
