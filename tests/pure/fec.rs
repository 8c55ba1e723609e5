//! Forward error correction (RED + ULPFEC, `rtp::red` and `rtp::fec`): the `fec` fuzz target's
//! checks on random bytes.

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
    use std::time::{Duration, Instant};

    use roomkit_media::rtp::config::{CoreConfig, MediaParams, VideoParams};
    use roomkit_media::rtp::fec::FecConfig;
    use roomkit_media::rtp::sim::{play_clip, ClipReport, FileClip, PathConfig, SimPair, SimPath};
    use roomkit_media::rtp::stats::StreamStats;

    fn run(fec: Option<FecConfig>, seed: u64) -> (ClipReport, StreamStats, StreamStats) {
        let cfg = CoreConfig {
            media: MediaParams::Video(VideoParams {
                fec,
                ..VideoParams::default()
            }),
            rtcp_interval: Duration::from_secs(1),
            ..CoreConfig::default()
        };
        let forward = PathConfig {
            loss: 0.03,
            ..PathConfig::clean(Duration::from_millis(20))
        };
        let nothing_back = PathConfig {
            loss: 1.0,
            ..PathConfig::clean(Duration::from_millis(20))
        };
        let mut pair = SimPair::new(
            Instant::now(),
            cfg.clone(),
            cfg,
            SimPath::new(forward, seed * 2 + 1),
            SimPath::new(nothing_back, seed * 2 + 2),
            seed,
        )
        .unwrap();
        let clip = FileClip::new(300, 30, seed);
        let r = play_clip(&mut pair, &clip, Duration::from_secs(2));
        (r, pair.a.core.stats(), pair.b.core.stats())
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
