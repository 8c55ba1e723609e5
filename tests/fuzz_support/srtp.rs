//! SRTP/SRTCP unprotect on untrusted bytes: under every suite, arbitrary input must be an error
//! or a packet, never a panic; and a packet we protected ourselves, then altered anywhere by the
//! fuzzer, must fail to unprotect (unless the alteration changed nothing).

use roomkit_media::rtp::srtp::{SrtpKey, SrtpReceiver, SrtpSender, SrtpSuite};

/// The first byte picks the suite and the mode, the rest is the packet.
pub fn unprotect(data: &[u8]) {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let suite = SrtpSuite::ALL[usize::from(head % 3)];
    let material = [0x5au8; 30];
    let key = SrtpKey::new(suite, &material[..suite.key_len() + suite.salt_len()]).unwrap();
    let mut rx = SrtpReceiver::new(&key).unwrap();
    match (head / 3) % 3 {
        // Raw bytes as SRTP, then as SRTCP.
        0 => {
            let _ = rx.unprotect_rtp(rest);
            let _ = rx.unprotect_rtp(rest);
            let _ = rx.unprotect_rtcp(rest);
            let _ = rx.unprotect_rtcp(rest);
        }
        // An RTP packet of ours, one byte flipped where the fuzzer says: never accepted.
        1 => {
            let mut tx = SrtpSender::new(&key).unwrap();
            let mut plain = vec![0x80, 0x60, 0x12, 0x34, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef];
            plain.extend_from_slice(rest.get(2..).unwrap_or_default());
            let mut protected = tx.protect_rtp(&plain).unwrap();
            let at = usize::from(u16::from_be_bytes([
                rest.first().copied().unwrap_or(0),
                rest.get(1).copied().unwrap_or(0),
            ])) % protected.len();
            protected[at] ^= rest.get(2).copied().unwrap_or(1).max(1);
            assert!(
                rx.unprotect_rtp(&protected).is_err(),
                "tampered SRTP accepted"
            );
        }
        // The same for RTCP.
        _ => {
            let mut tx = SrtpSender::new(&key).unwrap();
            let mut plain = vec![0x80, 0xc9, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef];
            plain.extend_from_slice(rest.get(2..).unwrap_or_default());
            let mut protected = tx.protect_rtcp(&plain).unwrap();
            let at = usize::from(rest.first().copied().unwrap_or(0)) % protected.len();
            // Any non-zero change of that byte (the E flag among them).
            protected[at] ^= rest.get(1).copied().unwrap_or(1).max(1);
            assert!(
                rx.unprotect_rtcp(&protected).is_err(),
                "tampered SRTCP accepted"
            );
        }
    }
}
