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
