//! Ogg framing (RFC 3533) and the Opus headers in it (RFC 7845), enough to carry one mono or
//! stereo Opus stream each way: for the Opus interop test and bench/opus.rs (which includes
//! this file by path), so both read and write Ogg Opus the same way.

/// The Ogg CRC: polynomial 0x04c11db7, MSB first, no reflection, initial value 0.
fn crc(data: &[u8]) -> u32 {
    let mut crc = 0u32;
    for &b in data {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The packets of a single-stream Ogg file, in order, each page's CRC checked.
pub fn read_packets(file: &[u8]) -> Vec<Vec<u8>> {
    let mut packets = Vec::new();
    let mut partial = Vec::new();
    let mut at = 0;
    while at < file.len() {
        let page = &file[at..];
        assert!(
            page.len() >= 27 && &page[..4] == b"OggS",
            "no Ogg page at {at}"
        );
        let nseg = usize::from(page[26]);
        let table = &page[27..27 + nseg];
        let body_len: usize = table.iter().map(|&l| usize::from(l)).sum();
        let page_len = 27 + nseg + body_len;
        assert!(page.len() >= page_len, "truncated Ogg page at {at}");
        let mut check = page[..page_len].to_vec();
        check[22..26].fill(0);
        let stored = u32::from_le_bytes(page[22..26].try_into().unwrap());
        assert_eq!(crc(&check), stored, "Ogg CRC of the page at {at}");
        let mut body = &page[27 + nseg..page_len];
        for &l in table {
            let (seg, rest) = body.split_at(usize::from(l));
            partial.extend_from_slice(seg);
            body = rest;
            // A segment shorter than 255 bytes ends its packet.
            if l < 255 {
                packets.push(std::mem::take(&mut partial));
            }
        }
        at += page_len;
    }
    packets
}

/// The pre-skip field of an OpusHead packet (samples at 48 kHz to drop at the start).
pub fn pre_skip(head: &[u8]) -> usize {
    assert!(
        head.len() >= 19 && &head[..8] == b"OpusHead",
        "not an OpusHead"
    );
    usize::from(u16::from_le_bytes([head[10], head[11]]))
}

/// Writes an Ogg Opus file: the two header pages, then one page per audio packet with the
/// granule position (48 kHz samples, pre-skip included) at its end.
pub struct Writer {
    out: Vec<u8>,
    serial: u32,
    seq: u32,
}

impl Writer {
    pub fn new(channels: u8, pre_skip: u16, input_rate: u32) -> Writer {
        let mut w = Writer {
            out: Vec::new(),
            serial: 0x5eed_0b05,
            seq: 0,
        };
        let mut head = b"OpusHead".to_vec();
        head.push(1); // version
        head.push(channels);
        head.extend_from_slice(&pre_skip.to_le_bytes());
        head.extend_from_slice(&input_rate.to_le_bytes());
        head.extend_from_slice(&0i16.to_le_bytes()); // output gain
        head.push(0); // channel mapping family 0: mono or stereo
        w.page(&head, 0, 0x02);
        let vendor = b"roomkit-media test";
        let mut tags = b"OpusTags".to_vec();
        tags.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
        tags.extend_from_slice(vendor);
        tags.extend_from_slice(&0u32.to_le_bytes()); // no comments
        w.page(&tags, 0, 0);
        w
    }

    pub fn packet(&mut self, packet: &[u8], granule: u64, last: bool) {
        self.page(packet, granule, if last { 0x04 } else { 0 });
    }

    fn page(&mut self, packet: &[u8], granule: u64, flags: u8) {
        let mut lacing = vec![255u8; packet.len() / 255];
        lacing.push((packet.len() % 255) as u8);
        assert!(lacing.len() <= 255, "packet too large for one page");
        let start = self.out.len();
        self.out.extend_from_slice(b"OggS");
        self.out.push(0);
        self.out.push(flags);
        self.out.extend_from_slice(&granule.to_le_bytes());
        self.out.extend_from_slice(&self.serial.to_le_bytes());
        self.out.extend_from_slice(&self.seq.to_le_bytes());
        self.out.extend_from_slice(&[0; 4]); // CRC, filled in below
        self.out.push(lacing.len() as u8);
        self.out.extend_from_slice(&lacing);
        self.out.extend_from_slice(packet);
        let c = crc(&self.out[start..]);
        self.out[start + 22..start + 26].copy_from_slice(&c.to_le_bytes());
        self.seq += 1;
    }

    pub fn finish(self) -> Vec<u8> {
        self.out
    }
}
