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
    let offer = include_str!("../data/chromium-offer.sdp");
    let mut data = vec![1u8];
    data.extend(b"OPTIONS /whip HTTP/1.1\r\nOrigin: http://x\r\n\r\n");
    data.extend(post(offer, "Authorization: Bearer t0ken\r\n"));
    data.extend(post(offer, ""));
    // The scheme in any case (the fuzzer's first find was the check's, not the endpoint's).
    data.extend(post(offer, "Authorization: BearEr t0ken\r\n"));
    data.extend(b"DELETE /whip/s1 HTTP/1.1\r\nAuthorization: Bearer t0ken\r\n\r\n");
    data.extend(b"PATCH /whep/s1 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc");
    requests(&data);
    for cut in (0..data.len()).step_by(97) {
        requests(&data[..cut]);
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes(data in prop::collection::vec(any::<u8>(), 0..3000)) {
        requests(&data);
    }
}
