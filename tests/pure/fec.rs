//! Forward error correction (RED + ULPFEC, `rtp::red` and `rtp::fec`): the `fec` fuzz target's
//! checks on random bytes.

use std::time::{Duration, Instant};

use roomkit_media::rtp::config::{CoreConfig, MediaParams, VideoParams};
use roomkit_media::rtp::fec::FecConfig;
use roomkit_media::rtp::sim::{play_clip, ClipReport, FileClip, PathConfig, SimPair, SimPath};
use roomkit_media::rtp::stats::StreamStats;

/// Plays a 300-picture, 30 fps video clip from A to B (`forward`; `back` carries B's RTCP and
/// NACKs) with `fec` or without, waiting `tail` after the last picture: the clip's report and
/// A's and B's stream stats.
fn play_video(
    fec: Option<FecConfig>,
    forward: PathConfig,
    back: PathConfig,
    tail: Duration,
    seed: u64,
) -> (ClipReport, StreamStats, StreamStats) {
    let cfg = CoreConfig {
        media: MediaParams::Video(VideoParams {
            fec,
            ..VideoParams::default()
        }),
        rtcp_interval: Duration::from_secs(1),
        ..CoreConfig::default()
    };
    let mut pair = SimPair::new(
        Instant::now(),
        cfg.clone(),
        cfg,
        SimPath::new(forward, seed * 2 + 1),
        SimPath::new(back, seed * 2 + 2),
        seed,
    )
    .unwrap();
    let clip = FileClip::new(300, 30, seed);
    let r = play_clip(&mut pair, &clip, tail);
    (r, pair.a.core.stats(), pair.b.core.stats())
}

mod fuzz_checks {
    use proptest::prelude::*;

    use crate::fuzz_support::fec::packets;

    proptest! {
        #[test]
        fn random_bytes_pass_the_fec_fuzz_checks(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            packets(&data);
        }
    }
}

mod one_way {
    //! A one-way path (nothing comes back: no NACK, no report) at 3 % random loss: FEC alone
    //! has to repair, and the same clip without it shows what it saves.
    use std::time::Duration;

    use roomkit_media::rtp::fec::FecConfig;
    use roomkit_media::rtp::sim::{ClipReport, PathConfig};
    use roomkit_media::rtp::stats::StreamStats;

    fn run(fec: Option<FecConfig>, seed: u64) -> (ClipReport, StreamStats, StreamStats) {
        let forward = PathConfig {
            loss: 0.03,
            ..PathConfig::clean(Duration::from_millis(20))
        };
        let nothing_back = PathConfig {
            loss: 1.0,
            ..PathConfig::clean(Duration::from_millis(20))
        };
        super::play_video(fec, forward, nothing_back, Duration::from_secs(2), seed)
    }

    #[test]
    fn fec_delivers_most_pictures_on_a_one_way_lossy_path() {
        for seed in [1, 2] {
            let (with, tx, rx) = run(Some(FecConfig::default()), seed);
            let (without, _, _) = run(None, seed);
            eprintln!(
                "seed {seed}: with FEC {}/{} intact (fec sent {}, received {}, recovered {}, \
                 unrecoverable {}, p95 {:?}); without {}/{}",
                with.intact,
                with.sent,
                tx.fec_sent,
                rx.fec_received,
                rx.fec_recovered,
                rx.fec_unrecoverable,
                with.latency(0.95),
                without.intact,
                without.sent
            );
            assert_eq!(with.corrupt, 0);
            assert!(with.in_order);
            assert!(
                with.intact * 10 >= with.sent * 9,
                "with FEC: {}",
                with.intact
            );
            assert!(
                without.intact + with.sent / 5 <= with.intact,
                "without FEC {} vs with {}",
                without.intact,
                with.intact
            );
            assert!(rx.fec_recovered > 0 && rx.fec_received > 0 && tx.fec_sent > 0);
        }
    }
}

mod sdp {
    //! `red/90000` and `ulpfec/90000` in offers and answers: agreed only when both sides want it.
    use std::net::IpAddr;

    use roomkit_media::sdp::{
        answer, build_offer, parse_answer, AnswerConfig, OfferConfig, SessionDescription,
    };

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// The (RED, ULPFEC) payload types a side agreed on.
    type Agreed = Option<(u8, u8)>;

    /// Offer with FEC or not, answer with FEC or not: what each side agreed and the texts.
    fn negotiate(offer_fec: bool, answer_fec: bool) -> (Agreed, Agreed, String, String) {
        let mut oc = OfferConfig::new(ip("192.0.2.1"), 4000, 4002);
        oc.local.video_fec = offer_fec;
        let offer = build_offer(&oc);
        let mut ac = AnswerConfig::new(ip("192.0.2.10"), 10000, 10002);
        ac.local.video_fec = answer_fec;
        let sd = SessionDescription::parse(offer.sdp.as_bytes()).unwrap();
        let a = answer(&sd, &ac).unwrap();
        let uac = parse_answer(&offer, a.sdp.as_bytes()).unwrap();
        (
            uac.video.unwrap().fec,
            a.negotiation.video.unwrap().fec,
            offer.sdp,
            a.sdp,
        )
    }

    #[test]
    fn fec_is_offered_and_agreed_only_when_both_sides_want_it() {
        let (uac, uas, offer, answer) = negotiate(true, true);
        assert!(offer.contains("a=rtpmap:123 red/90000\r\n"), "{offer}");
        assert!(offer.contains("a=rtpmap:122 ulpfec/90000\r\n"), "{offer}");
        assert!(answer.contains("a=rtpmap:123 red/90000\r\n"), "{answer}");
        assert!(answer.contains("a=rtpmap:122 ulpfec/90000\r\n"), "{answer}");
        let m = answer.lines().find(|l| l.starts_with("m=video")).unwrap();
        assert!(m.ends_with(" 123 122"), "{m}");
        assert_eq!((uac, uas), (Some((123, 122)), Some((123, 122))));

        let (uac, uas, _, answer) = negotiate(true, false);
        assert!(!answer.contains("red/90000"), "{answer}");
        assert_eq!((uac, uas), (None, None));

        let (uac, uas, offer, _) = negotiate(false, true);
        assert!(!offer.contains("ulpfec"), "{offer}");
        assert_eq!((uac, uas), (None, None));
    }
}

mod long_rtt {
    //! 300 ms RTT, 3 % random loss both ways, NACK on: FEC rebuilds most losses at once instead
    //! of a round trip later, so pictures wait less and fewer are lost to the key-picture gate.
    use std::time::Duration;

    use roomkit_media::rtp::fec::FecConfig;
    use roomkit_media::rtp::sim::{ClipReport, PathConfig};
    use roomkit_media::rtp::stats::StreamStats;

    fn run(fec: Option<FecConfig>, seed: u64) -> (ClipReport, StreamStats) {
        let path = PathConfig {
            loss: 0.03,
            ..PathConfig::clean(Duration::from_millis(150))
        };
        let (r, _, rx) = super::play_video(fec, path, path, Duration::from_secs(3), seed);
        (r, rx)
    }

    #[test]
    fn fec_with_nack_at_300_ms_rtt_delivers_with_less_delay() {
        for seed in [3, 4] {
            let (with, rx) = run(Some(FecConfig::default()), seed);
            let (without, _) = run(None, seed);
            eprintln!(
                "seed {seed}: FEC+NACK {}/{} intact, p50 {:?} p99 {:?} (recovered {}); \
                 NACK only {}/{}, p50 {:?} p99 {:?}",
                with.intact,
                with.sent,
                with.latency(0.5),
                with.latency(0.99),
                rx.fec_recovered,
                without.intact,
                without.sent,
                without.latency(0.5),
                without.latency(0.99),
            );
            assert_eq!(with.corrupt, 0);
            assert!(
                with.intact * 100 >= with.sent * 98,
                "with FEC: {}",
                with.intact
            );
            assert!(with.latency(0.99) < without.latency(0.99));
        }
    }
}
