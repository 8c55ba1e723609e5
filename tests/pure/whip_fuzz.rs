//! The `whip` fuzz target's checks (`tests/fuzz_support/whip.rs`) on the test run: arbitrary
//! bytes, and real requests (Chromium's captured offer POSTed, preflight, DELETE) cut anywhere.

use proptest::prelude::*;

use crate::fuzz_support::whip::requests;

fn post(offer: &str, auth: &str) -> Vec<u8> {
    format!(
        "POST /whip HTTP/1.1\r\nContent-Type: application/sdp\r\n{auth}Content-Length: {}\r\n\r\n{offer}",
        offer.len()
    )
    .into_bytes()
}

#[test]
fn real_requests_in_a_row() {
    let chromium = include_str!("../data/chromium-offer.sdp");
    // The head of Chromium's offer, within the fuzz limits (1 KiB bodies); the fake sessions
    // take an even-length offer and refuse an odd one.
    let (even, odd) = (&chromium[..900], &chromium[..901]);
    let mut data = vec![1u8];
    data.extend(b"OPTIONS /whip HTTP/1.1\r\nOrigin: http://x\r\n\r\n");
    data.extend(post(even, "Authorization: Bearer t0ken\r\n"));
    data.extend(post(even, ""));
    // The scheme in any case (the fuzzer's first find was the check's, not the endpoint's).
    data.extend(post(even, "Authorization: BearEr t0ken\r\n"));
    data.extend(post(odd, "Authorization: Bearer t0ken\r\n"));
    data.extend(b"DELETE /whip/s1 HTTP/1.1\r\nAuthorization: Bearer t0ken\r\n\r\n");
    data.extend(b"PATCH /whep/s1 HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    data.extend(
        b"PATCH /whep/s1 HTTP/1.1\r\nAuthorization: Bearer t0ken\r\nContent-Length: 3\r\n\r\nabc",
    );
    // Eight requests a connection at most: the ninth (over the 1 KiB limit) is never read.
    data.extend(post(chromium, "Authorization: Bearer t0ken\r\n"));
    assert_eq!(
        requests(&data),
        vec![204, 201, 401, 201, 400, 200, 401, 405]
    );
    // Alone, the whole offer is refused by size.
    let mut big = vec![1u8];
    big.extend(post(chromium, "Authorization: Bearer t0ken\r\n"));
    assert_eq!(requests(&big), vec![413]);
    for cut in (0..data.len()).step_by(97) {
        let _ = requests(&data[..cut]);
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes(data in prop::collection::vec(any::<u8>(), 0..3000)) {
        let _ = requests(&data);
    }
}
