//! Forward error correction from untrusted bytes: the fuzzer's bytes read as a RED payload, as
//! an ULPFEC payload, as a stream of media and FEC packets into the receiver, and as packets we
//! protect ourselves. What parses must write back the same, the receiver must never panic and
//! hand out only RTP-shaped packets, and a group we protect must rebuild any one lost packet
//! exactly.

use roomkit_media::rtp::fec::{build_ulpfec, parse_ulpfec, recover, FecReceiver};
use roomkit_media::rtp::red::{parse_red, write_red};

use super::Cursor;

/// Runs every check on `data`.
pub fn packets(data: &[u8]) {
    red(data);
    ulpfec(data);
    receiver(data);
    protect_and_rebuild(data);
}

fn red(data: &[u8]) {
    let Ok(r) = parse_red(data) else { return };
    let blocks: Vec<(u8, u16, &[u8])> = r
        .redundant()
        .map(|b| (b.pt, b.ts_offset, &data[b.data.clone()]))
        .collect();
    let mut out = Vec::new();
    write_red(
        &blocks,
        r.primary.pt,
        &data[r.primary.data.clone()],
        &mut out,
    )
    .expect("what parses can be written");
    assert_eq!(out, data, "RED payload writes back the same");
}

fn ulpfec(data: &[u8]) {
    let Ok(f) = parse_ulpfec(data) else { return };
    let seqs: Vec<u16> = f.protected().collect();
    assert!(seqs.len() <= 48);
    assert!(seqs.iter().all(|&s| f.protects(s)));
    // With none of its packets present, a recovery is a packet of the announced length or an
    // error, never a panic.
    let mut out = Vec::new();
    if recover(&f, 7, f.sn_base, &[], &mut out).is_ok() {
        assert_eq!(out.len(), 12 + usize::from(f.length_recovery));
        assert_eq!(out[0] >> 6, 2);
    }
}

/// Records: `kind, seq_delta, len, bytes[len]`; kind bit 0 makes it an FEC payload, else a
/// media packet whose header the record's sequence number overwrites.
fn receiver(data: &[u8]) {
    let mut c = Cursor::new(data);
    let mut rx = FecReceiver::new();
    let mut seq = 0u16;
    let mut handed = 0u64;
    for _ in 0..512 {
        if c.is_empty() {
            break;
        }
        let kind = c.u8();
        seq = seq.wrapping_add(u16::from(c.u8()));
        let len = usize::from(c.u8());
        let body = c.bytes(len);
        if kind & 1 == 1 {
            rx.handle_fec(7, body);
        } else {
            let mut p = vec![0x80, 96, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7];
            p[2..4].copy_from_slice(&seq.to_be_bytes());
            p.extend_from_slice(body);
            rx.handle_media(&p);
        }
        while let Some(p) = rx.poll_recovered() {
            assert!(
                p.len() >= 12 && p[0] >> 6 == 2,
                "a rebuilt packet is RTP-shaped"
            );
            assert_eq!(&p[8..12], &[0, 0, 0, 7], "on the stream's SSRC");
            handed += 1;
        }
    }
    assert_eq!(handed, rx.stats().recovered);
}

/// `n, missing, then per packet: seq_step, len, bytes`: a group we protect, one packet lost.
fn protect_and_rebuild(data: &[u8]) {
    let mut c = Cursor::new(data);
    let n = usize::from(c.u8() % 12) + 1;
    let missing = usize::from(c.u8()) % n;
    let mut seq = c.u16();
    let mut media = Vec::new();
    for _ in 0..n {
        let mut p = vec![0x80 | (c.u8() & 0x3f), c.u8()];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(c.bytes(4));
        p.resize(8, 0);
        p.extend_from_slice(&[1, 2, 3, 4]);
        let len = usize::from(c.u8());
        p.extend_from_slice(c.bytes(len));
        media.push(p);
        seq = seq.wrapping_add(1 + u16::from(c.u8() % 4));
    }
    let refs: Vec<&[u8]> = media.iter().map(Vec::as_slice).collect();
    let mut fec = Vec::new();
    if build_ulpfec(&refs, &mut fec).is_err() {
        return; // spread over more than 48 sequence numbers
    }
    let f = parse_ulpfec(&fec).expect("what we build parses");
    let present: Vec<&[u8]> = refs
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != missing)
        .map(|(_, p)| *p)
        .collect();
    let lost_seq = u16::from_be_bytes([media[missing][2], media[missing][3]]);
    let mut out = Vec::new();
    recover(&f, 0x0102_0304, lost_seq, &present, &mut out).expect("one loss rebuilds");
    assert_eq!(out, media[missing], "the rebuilt packet is the lost one");
}
