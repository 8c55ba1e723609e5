//! RTCP: building and parsing the compound packets a media stream exchanges (RFC 3550 sender and
//! receiver reports, SDES CNAME and BYE; RFC 4585 PLI and generic NACK; RFC 5104 FIR; transport-wide
//! CC feedback and REMB, whose formats live in `twcc.rs` and `remb.rs`), the
//! report interval, and NTP time conversions.
//!
//! The wire format is handled by `rtcp-types`. Builders append to a caller-owned `Vec<u8>`, one
//! packet after another, so a compound is built without the crate's boxed compound builder and a
//! reused vector does not reallocate. Parsing returns our own [`RtcpEvent`]s, detached from the
//! input buffer, so the I/O thread can hand them to other threads.

use std::fmt;
use std::time::{Duration, Instant};
#[cfg(any(test, feature = "_internals"))]
use std::time::{SystemTime, UNIX_EPOCH};

use rand::Rng;
use rtcp_types::prelude::*;
use rtcp_types::{
    Bye, Compound, Fir, FirBuilder, Nack, NackBuilder, Packet, PayloadFeedback, Pli,
    ReceiverReport, ReportBlock, ReportBlockBuilder, RtcpParseError, Sdes, SdesChunk, SdesItem,
    SenderReport, TransportFeedback,
};

/// RTCP packet type of a sender report.
#[cfg(any(test, feature = "_internals"))]
pub const PT_SR: u8 = 200;
/// RTCP packet type of a receiver report.
#[cfg(any(test, feature = "_internals"))]
pub const PT_RR: u8 = 201;
/// RTCP packet type of payload-specific feedback (RFC 4585 PSFB).
#[cfg(any(test, feature = "_internals"))]
pub const PT_PSFB: u8 = 206;

/// At most this many report blocks fit one SR or RR (the 5-bit count field).
const MAX_BLOCKS_PER_PACKET: usize = 31;
/// The largest and smallest cumulative loss the 24-bit signed field can carry.
const CUMULATIVE_LOST_MAX: i32 = 0x7f_ffff;
const CUMULATIVE_LOST_MIN: i32 = -0x80_0000;

/// One reception report block: how a receiver sees one source (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReportBlockData {
    /// The source this block is about.
    pub ssrc: u32,
    /// Fraction of packets lost since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// Packets expected minus packets received since the start; negative with duplicates.
    /// Clamped to the 24-bit signed range on the wire.
    pub cumulative_lost: i32,
    /// Highest sequence number received, with the wrap count in the upper 16 bits.
    pub ext_highest_seq: u32,
    /// Interarrival jitter, in RTP timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP time of the last SR received from the source; 0 if none.
    pub lsr: u32,
    /// Time between receiving that SR and sending this block, in 1/65536 s; 0 if none.
    pub dlsr: u32,
}

/// The sender-info part of a sender report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SenderInfo {
    /// Wall-clock time of the report, 64-bit NTP.
    pub ntp: u64,
    /// The RTP timestamp corresponding to `ntp`.
    pub rtp_ts: u32,
    /// Packets sent since the stream started.
    pub packet_count: u32,
    /// Payload octets sent since the stream started.
    pub octet_count: u32,
}

/// One Full Intra Request entry (RFC 5104 §4.3.1): the source asked to send a key frame, and the
/// request's sequence number, which repeats on retransmission so that duplicates can be ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirRequest {
    /// The media source that should send a decoder refresh point.
    pub ssrc: u32,
    /// Command sequence number.
    pub seq: u8,
}

/// What a received RTCP packet says, detached from the received bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtcpEvent {
    /// A sender report: the sender's clocks and counters, and its reception reports.
    SenderReport {
        ssrc: u32,
        ntp: u64,
        rtp_ts: u32,
        packets: u32,
        octets: u32,
        reports: Vec<ReportBlockData>,
    },
    /// A receiver report.
    ReceiverReport {
        ssrc: u32,
        reports: Vec<ReportBlockData>,
    },
    /// The canonical name of a source (one event per SDES chunk that carries a CNAME).
    Sdes { ssrc: u32, cname: String },
    /// Sources leaving the session.
    Bye {
        ssrcs: Vec<u32>,
        reason: Option<String>,
    },
    /// Picture Loss Indication: `media_ssrc` should send a key frame.
    Pli { sender_ssrc: u32, media_ssrc: u32 },
    /// Full Intra Request for the sources listed.
    Fir {
        sender_ssrc: u32,
        requests: Vec<FirRequest>,
    },
    /// Generic NACK: the receiver misses these sequence numbers of `media_ssrc`.
    Nack {
        sender_ssrc: u32,
        media_ssrc: u32,
        lost: Vec<u16>,
    },
    /// Transport-wide congestion control feedback (RTPFB FMT 15): when each packet arrived.
    TransportCc(super::twcc::TwccFeedback),
    /// RFC 8888 congestion control feedback (RTPFB FMT 11): per source, which packets arrived
    /// and when.
    Ccfb(super::ccfb::Ccfb),
    /// A receiver's estimate of the path's bitrate (REMB, PSFB FMT 15 with the `REMB` identifier).
    Remb(super::remb::Remb),
    /// A well-formed packet we do not act on (APP, XR, other feedback formats, unknown types).
    Other { packet_type: u8, format: u8 },
}

/// Why RTCP could not be parsed or built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtcpError {
    /// The datagram ends before the header or the length a packet announces.
    Truncated {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        got: usize,
    },
    /// A packet's version field is not 2.
    BadVersion(u8),
    /// A packet is internally inconsistent.
    Malformed {
        /// Byte offset of the packet inside the compound.
        offset: usize,
        /// Its RTCP packet type.
        packet_type: u8,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The values given cannot be encoded (too long a CNAME or BYE reason, no NACK entries...).
    Unencodable(String),
}

impl fmt::Display for RtcpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RtcpError::Truncated { needed, got } => {
                write!(f, "truncated RTCP: {needed} bytes needed, {got} available")
            }
            RtcpError::BadVersion(v) => write!(f, "RTCP version {v} (only version 2 exists)"),
            RtcpError::Malformed {
                offset,
                packet_type,
                reason,
            } => write!(
                f,
                "malformed RTCP packet type {packet_type} at byte {offset}: {reason}"
            ),
            RtcpError::Unencodable(why) => write!(f, "cannot build RTCP: {why}"),
        }
    }
}

impl std::error::Error for RtcpError {}

/// Turns an error of `rtcp-types` about the packet at `offset` into ours.
fn parse_error(e: RtcpParseError, offset: usize, packet_type: u8) -> RtcpError {
    let reason = match e {
        RtcpParseError::UnsupportedVersion(v) => return RtcpError::BadVersion(v),
        RtcpParseError::Truncated { .. } => "shorter than its contents require",
        RtcpParseError::TooLarge { .. } => "longer than its contents",
        RtcpParseError::InvalidPadding => "invalid padding",
        RtcpParseError::SdesValueTooLarge { .. }
        | RtcpParseError::SdesPrivContentTruncated { .. }
        | RtcpParseError::SdesPrivPrefixTooLarge { .. } => "invalid SDES item",
        _ => "inconsistent contents",
    };
    RtcpError::Malformed {
        offset,
        packet_type,
        reason,
    }
}

fn encode_cumulative_lost(lost: i32) -> u32 {
    (lost.clamp(CUMULATIVE_LOST_MIN, CUMULATIVE_LOST_MAX) as u32) & 0xff_ffff
}

fn decode_cumulative_lost(raw: u32) -> i32 {
    // Sign-extend the 24-bit two's complement value.
    ((raw << 8) as i32) >> 8
}

fn block_from_wire(b: &ReportBlock<'_>) -> ReportBlockData {
    ReportBlockData {
        ssrc: b.ssrc(),
        fraction_lost: b.fraction_lost(),
        cumulative_lost: decode_cumulative_lost(b.cumulative_lost()),
        ext_highest_seq: b.extended_sequence_number(),
        jitter: b.interarrival_jitter(),
        lsr: b.last_sender_report_timestamp(),
        dlsr: b.delay_since_last_sender_report_timestamp(),
    }
}

fn block_to_wire(b: &ReportBlockData) -> ReportBlockBuilder {
    ReportBlock::builder(b.ssrc)
        .fraction_lost(b.fraction_lost)
        .cumulative_lost(encode_cumulative_lost(b.cumulative_lost))
        .extended_sequence_number(b.ext_highest_seq)
        .interarrival_jitter(b.jitter)
        .last_sender_report_timestamp(b.lsr)
        .delay_since_last_sender_report_timestamp(b.dlsr)
}

/// Parses a compound RTCP datagram (or a single reduced-size packet, RFC 5506) into events.
/// A datagram with any malformed packet is rejected whole, as RFC 3550 A.2 suggests; every
/// length is checked, and no input panics.
#[cfg(any(test, feature = "_internals"))]
pub fn parse_compound(data: &[u8]) -> Result<Vec<RtcpEvent>, RtcpError> {
    let mut events = Vec::new();
    parse_compound_into(data, &mut events)?;
    Ok(events)
}

/// Like [`parse_compound`], appending to `events`; returns how many events were added. On
/// error `events` is left as it was.
pub fn parse_compound_into(data: &[u8], events: &mut Vec<RtcpEvent>) -> Result<usize, RtcpError> {
    let before = events.len();
    let result = parse_all(data, events);
    if result.is_err() {
        events.truncate(before);
    }
    result.map(|()| events.len() - before)
}

fn parse_all(data: &[u8], events: &mut Vec<RtcpEvent>) -> Result<(), RtcpError> {
    let compound = Compound::parse(data).map_err(|e| match e {
        RtcpParseError::Truncated { expected, actual } => RtcpError::Truncated {
            needed: expected,
            got: actual,
        },
        other => parse_error(other, 0, data.get(1).copied().unwrap_or(0)),
    })?;
    let mut offset = 0;
    for item in compound {
        // `Compound::parse` checked that every length field stays inside `data`.
        let header = data.get(offset..offset + 4).ok_or(RtcpError::Truncated {
            needed: offset + 4,
            got: data.len(),
        })?;
        let packet_type = header[1];
        let len = 4 * (usize::from(u16::from_be_bytes([header[2], header[3]])) + 1);
        let raw = data.get(offset..offset + len).ok_or(RtcpError::Truncated {
            needed: offset + len,
            got: data.len(),
        })?;
        let packet = item.map_err(|e| parse_error(e, offset, packet_type))?;
        push_event(&packet, raw, offset, events)?;
        offset += len;
    }
    Ok(())
}

/// The feedback control information of a feedback packet: after the 12-byte common part,
/// before any padding.
fn fci(raw: &[u8], offset: usize) -> Result<&[u8], RtcpError> {
    let pad = if raw[0] & 0x20 != 0 {
        raw.last().map_or(0, |&p| usize::from(p))
    } else {
        0
    };
    raw.len()
        .checked_sub(pad)
        .and_then(|end| raw.get(12..end))
        .ok_or(RtcpError::Malformed {
            offset,
            packet_type: raw[1],
            reason: "padding overlaps the feedback header",
        })
}

fn push_event(
    packet: &Packet<'_>,
    raw: &[u8],
    offset: usize,
    events: &mut Vec<RtcpEvent>,
) -> Result<(), RtcpError> {
    let packet_type = packet.type_();
    let format = packet.count();
    match packet {
        Packet::Sr(sr) => events.push(sender_report(sr)),
        Packet::Rr(rr) => events.push(receiver_report(rr)),
        Packet::Sdes(sdes) => sdes_events(sdes, events),
        Packet::Bye(bye) => events.push(bye_event(bye)),
        Packet::PayloadFeedback(fb) => {
            let event = match format {
                // PLI carries no FCI (RFC 4585 §6.3.1); anything there is ignored.
                1 => RtcpEvent::Pli {
                    sender_ssrc: fb.sender_ssrc(),
                    media_ssrc: fb.media_ssrc(),
                },
                4 => {
                    let fir = Fir::parse(fci(raw, offset)?)
                        .map_err(|e| parse_error(e, offset, packet_type))?;
                    RtcpEvent::Fir {
                        sender_ssrc: fb.sender_ssrc(),
                        requests: fir
                            .entries()
                            .map(|e| FirRequest {
                                ssrc: e.ssrc(),
                                seq: e.sequence(),
                            })
                            .collect(),
                    }
                }
                super::remb::FMT_AFB => {
                    match super::remb::parse_fci(fb.sender_ssrc(), fci(raw, offset)?) {
                        Ok(Some(remb)) => RtcpEvent::Remb(remb),
                        Ok(None) => RtcpEvent::Other {
                            packet_type,
                            format,
                        },
                        Err(reason) => {
                            return Err(RtcpError::Malformed {
                                offset,
                                packet_type,
                                reason,
                            })
                        }
                    }
                }
                _ => RtcpEvent::Other {
                    packet_type,
                    format,
                },
            };
            events.push(event);
        }
        Packet::TransportFeedback(fb) if format == 1 => {
            let nack =
                Nack::parse(fci(raw, offset)?).map_err(|e| parse_error(e, offset, packet_type))?;
            events.push(RtcpEvent::Nack {
                sender_ssrc: fb.sender_ssrc(),
                media_ssrc: fb.media_ssrc(),
                lost: nack.entries().collect(),
            });
        }
        Packet::TransportFeedback(fb) if format == super::twcc::FMT_TWCC => {
            let feedback =
                super::twcc::parse_fci(fb.sender_ssrc(), fb.media_ssrc(), fci(raw, offset)?)
                    .map_err(|reason| RtcpError::Malformed {
                        offset,
                        packet_type,
                        reason,
                    })?;
            events.push(RtcpEvent::TransportCc(feedback));
        }
        Packet::TransportFeedback(fb) if format == super::ccfb::FMT_CCFB => {
            // The first block's SSRC sits where other feedback has its media SSRC.
            let body = fci(raw, offset)?;
            let mut whole = fb.media_ssrc().to_be_bytes().to_vec();
            whole.extend_from_slice(body);
            let feedback = super::ccfb::parse_body(fb.sender_ssrc(), &whole).map_err(|reason| {
                RtcpError::Malformed {
                    offset,
                    packet_type,
                    reason,
                }
            })?;
            events.push(RtcpEvent::Ccfb(feedback));
        }
        _ => events.push(RtcpEvent::Other {
            packet_type,
            format,
        }),
    }
    Ok(())
}

fn sender_report(sr: &SenderReport<'_>) -> RtcpEvent {
    RtcpEvent::SenderReport {
        ssrc: sr.ssrc(),
        ntp: sr.ntp_timestamp(),
        rtp_ts: sr.rtp_timestamp(),
        packets: sr.packet_count(),
        octets: sr.octet_count(),
        reports: sr.report_blocks().map(|b| block_from_wire(&b)).collect(),
    }
}

fn receiver_report(rr: &ReceiverReport<'_>) -> RtcpEvent {
    RtcpEvent::ReceiverReport {
        ssrc: rr.ssrc(),
        reports: rr.report_blocks().map(|b| block_from_wire(&b)).collect(),
    }
}

fn sdes_events(sdes: &Sdes<'_>, events: &mut Vec<RtcpEvent>) {
    for chunk in sdes.chunks() {
        if let Some(cname) = chunk_cname(chunk) {
            events.push(RtcpEvent::Sdes {
                ssrc: chunk.ssrc(),
                cname,
            });
        }
    }
}

fn chunk_cname(chunk: &SdesChunk<'_>) -> Option<String> {
    // Only CNAME items are read: `value()` of a PRIV item can index past the item in rtcp-types.
    chunk
        .items()
        .find(|item| item.type_() == SdesItem::CNAME)
        .map(|item| String::from_utf8_lossy(item.value()).into_owned())
}

fn bye_event(bye: &Bye<'_>) -> RtcpEvent {
    RtcpEvent::Bye {
        ssrcs: bye.ssrcs().collect(),
        reason: bye
            .reason()
            .map(|r| String::from_utf8_lossy(r).into_owned()),
    }
}

/// Appends one packet from an `rtcp-types` builder to `out`; returns its length.
fn append<W: RtcpPacketWriter>(out: &mut Vec<u8>, packet: &W) -> Result<usize, RtcpError> {
    let size = packet
        .calculate_size()
        .map_err(|e| RtcpError::Unencodable(e.to_string()))?;
    let start = out.len();
    out.resize(start + size, 0);
    match packet.write_into(&mut out[start..]) {
        Ok(n) => {
            out.truncate(start + n);
            Ok(n)
        }
        Err(e) => {
            out.truncate(start);
            Err(RtcpError::Unencodable(e.to_string()))
        }
    }
}

/// Runs `build`, and if it fails removes whatever it appended, so `out` holds only whole
/// packets. Returns the number of bytes appended.
fn all_or_nothing(
    out: &mut Vec<u8>,
    build: impl FnOnce(&mut Vec<u8>) -> Result<(), RtcpError>,
) -> Result<usize, RtcpError> {
    let start = out.len();
    match build(out) {
        Ok(()) => Ok(out.len() - start),
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

/// Appends receiver reports for the blocks beyond the first 31 (RFC 3550 §6.4.2: further blocks
/// go into RR packets after the first report).
fn append_extra_rrs(
    out: &mut Vec<u8>,
    ssrc: u32,
    blocks: &[ReportBlockData],
) -> Result<(), RtcpError> {
    for group in blocks.chunks(MAX_BLOCKS_PER_PACKET) {
        let rr = group.iter().fold(ReceiverReport::builder(ssrc), |b, rb| {
            b.add_report_block(block_to_wire(rb))
        });
        append(out, &rr)?;
    }
    Ok(())
}

/// Appends a sender report with up to 31 report blocks, followed by receiver reports for any
/// further blocks. Returns the number of bytes appended.
pub fn build_sr(
    out: &mut Vec<u8>,
    ssrc: u32,
    info: &SenderInfo,
    reports: &[ReportBlockData],
) -> Result<usize, RtcpError> {
    all_or_nothing(out, |out| {
        let (first, rest) = reports.split_at(reports.len().min(MAX_BLOCKS_PER_PACKET));
        let sr = first.iter().fold(
            SenderReport::builder(ssrc)
                .ntp_timestamp(info.ntp)
                .rtp_timestamp(info.rtp_ts)
                .packet_count(info.packet_count)
                .octet_count(info.octet_count),
            |b, rb| b.add_report_block(block_to_wire(rb)),
        );
        append(out, &sr)?;
        append_extra_rrs(out, ssrc, rest)
    })
}

/// Appends a receiver report (several if there are more than 31 blocks; an empty one if there are
/// none). Returns the number of bytes appended.
pub fn build_rr(
    out: &mut Vec<u8>,
    ssrc: u32,
    reports: &[ReportBlockData],
) -> Result<usize, RtcpError> {
    all_or_nothing(out, |out| {
        if reports.is_empty() {
            append(out, &ReceiverReport::builder(ssrc)).map(drop)
        } else {
            append_extra_rrs(out, ssrc, reports)
        }
    })
}

/// Appends an SDES packet with one chunk holding the CNAME of `ssrc` (at most 255 bytes).
pub fn build_sdes_cname(out: &mut Vec<u8>, ssrc: u32, cname: &str) -> Result<usize, RtcpError> {
    let sdes = Sdes::builder()
        .add_chunk(SdesChunk::builder(ssrc).add_item(SdesItem::builder(SdesItem::CNAME, cname)));
    append(out, &sdes)
}

/// Appends the regular compound report of a stream: an SR when `sender` is given (we sent media
/// since the last report), an RR otherwise, then SDES with our CNAME. RFC 3550 §6.1 requires every
/// compound to start this way; feedback ([`build_pli`], [`build_nack`]...) and [`build_bye`] are
/// appended after it. Returns the number of bytes appended; on error nothing is appended.
pub fn build_report(
    out: &mut Vec<u8>,
    ssrc: u32,
    sender: Option<&SenderInfo>,
    reports: &[ReportBlockData],
    cname: &str,
) -> Result<usize, RtcpError> {
    all_or_nothing(out, |out| {
        match sender {
            Some(info) => build_sr(out, ssrc, info, reports)?,
            None => build_rr(out, ssrc, reports)?,
        };
        build_sdes_cname(out, ssrc, cname).map(drop)
    })
}

/// Appends a BYE for `ssrc`, with an optional reason of at most 255 bytes.
pub fn build_bye(out: &mut Vec<u8>, ssrc: u32, reason: Option<&str>) -> Result<usize, RtcpError> {
    let bye = Bye::builder().add_source(ssrc).reason(reason.unwrap_or(""));
    append(out, &bye)
}

/// Appends a Picture Loss Indication (RFC 4585 PSFB, FMT 1) asking `media_ssrc` for a key frame.
pub fn build_pli(out: &mut Vec<u8>, sender_ssrc: u32, media_ssrc: u32) -> Result<usize, RtcpError> {
    let pli = Pli::builder();
    let fb = PayloadFeedback::builder(&pli)
        .sender_ssrc(sender_ssrc)
        .media_ssrc(media_ssrc);
    append(out, &fb)
}

/// Appends a Full Intra Request (RFC 5104 PSFB, FMT 4) for `media_ssrc`. `seq` is the command
/// sequence number: increase it for each new request, repeat it when retransmitting one.
pub fn build_fir(
    out: &mut Vec<u8>,
    sender_ssrc: u32,
    media_ssrc: u32,
    seq: u8,
) -> Result<usize, RtcpError> {
    let fir = FirBuilder::default().add_ssrc(media_ssrc, seq);
    // RFC 5104 §4.3.1.2: the media source field of a FIR is unused and set to 0; the target is in
    // the FCI entry.
    let fb = PayloadFeedback::builder(&fir)
        .sender_ssrc(sender_ssrc)
        .media_ssrc(0);
    append(out, &fb)
}

/// Appends a generic NACK (RFC 4585 RTPFB, FMT 1) listing the `lost` sequence numbers of
/// `media_ssrc`, packed as PID + bitmask pairs. Duplicates are allowed; an empty list is an error.
pub fn build_nack(
    out: &mut Vec<u8>,
    sender_ssrc: u32,
    media_ssrc: u32,
    lost: &[u16],
) -> Result<usize, RtcpError> {
    if lost.is_empty() {
        return Err(RtcpError::Unencodable(
            "a NACK needs at least one sequence number".into(),
        ));
    }
    let nack = lost
        .iter()
        .fold(NackBuilder::default(), |b, &seq| b.add_rtp_sequence(seq));
    let fb = TransportFeedback::builder(&nack)
        .sender_ssrc(sender_ssrc)
        .media_ssrc(media_ssrc);
    append(out, &fb)
}

/// Round-trip time from a report block about one of our streams (RFC 3550 §6.4.1): arrival time
/// minus LSR minus DLSR. `None` when the block refers to no SR, or the figures are inconsistent
/// (the result would be negative).
pub fn round_trip_time(block: &ReportBlockData, arrival_ntp: u64) -> Option<Duration> {
    if block.lsr == 0 {
        return None;
    }
    let since_sr = ntp_short(arrival_ntp).wrapping_sub(block.lsr);
    // A gap of more than half the 16.16 range means the arrival precedes the SR.
    if since_sr > 0x8000_0000 {
        return None;
    }
    since_sr.checked_sub(block.dlsr).map(ntp_short_to_duration)
}

/// When to send the next RTCP report: RFC 3550 §6.3 simplified for two-party sessions. Each
/// interval is the nominal one multiplied by a random factor in [0.5, 1.5), so that peers do not
/// synchronise; the first report comes after half an interval. Pure: times are passed in and
/// randomness comes from the caller's generator.
#[derive(Debug, Clone)]
pub struct RtcpInterval {
    nominal: Duration,
    next_due: Instant,
}

impl RtcpInterval {
    /// The nominal interval RFC 3550 recommends (and its minimum).
    pub const DEFAULT_NOMINAL: Duration = Duration::from_secs(5);

    /// Starts the schedule at `now`: the first report is due after half a randomised interval.
    pub fn new<R: Rng + ?Sized>(nominal: Duration, now: Instant, rng: &mut R) -> Self {
        let first = Self::randomised(nominal, rng) / 2;
        RtcpInterval {
            nominal,
            next_due: now + first,
        }
    }

    /// The nominal interval.
    #[cfg(any(test, feature = "_internals"))]
    pub fn nominal(&self) -> Duration {
        self.nominal
    }

    /// When the next report is due.
    pub fn next_due(&self) -> Instant {
        self.next_due
    }

    /// True when a report is due at `now`.
    pub fn is_due(&self, now: Instant) -> bool {
        now >= self.next_due
    }

    /// Records that a report went out at `now` and schedules the next one.
    pub fn on_sent<R: Rng + ?Sized>(&mut self, now: Instant, rng: &mut R) {
        self.next_due = now + Self::randomised(self.nominal, rng);
    }

    /// If a report is due at `now`, schedules the next one and returns true: the caller sends a
    /// report exactly when this says so.
    pub fn poll<R: Rng + ?Sized>(&mut self, now: Instant, rng: &mut R) -> bool {
        if self.is_due(now) {
            self.on_sent(now, rng);
            true
        } else {
            false
        }
    }

    /// `nominal` times a random factor in [0.5, 1.5).
    pub fn randomised<R: Rng + ?Sized>(nominal: Duration, rng: &mut R) -> Duration {
        nominal.mul_f64(rng.random_range(0.5..1.5))
    }
}

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
pub const NTP_UNIX_OFFSET_SECS: u64 = 2_208_988_800;

/// 64-bit NTP time (32.32 fixed point seconds since 1900) of a moment given as the time since the
/// Unix epoch. The seconds wrap modulo 2^32 as the NTP era does (next in 2036).
pub fn ntp_from_unix(since_epoch: Duration) -> u64 {
    let secs = since_epoch.as_secs().wrapping_add(NTP_UNIX_OFFSET_SECS) & 0xffff_ffff;
    let frac = (u64::from(since_epoch.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// 64-bit NTP time of a `SystemTime` value the caller read; times before 1970 give the epoch.
#[cfg(any(test, feature = "_internals"))]
pub fn ntp_from_system_time(t: SystemTime) -> u64 {
    ntp_from_unix(t.duration_since(UNIX_EPOCH).unwrap_or_default())
}

/// The time since the Unix epoch of an NTP time in the current era (inverse of
/// [`ntp_from_unix`], to the nanosecond); NTP times before 1970 give zero.
#[cfg(any(test, feature = "_internals"))]
pub fn ntp_to_unix(ntp: u64) -> Duration {
    let Some(secs) = (ntp >> 32).checked_sub(NTP_UNIX_OFFSET_SECS) else {
        return Duration::ZERO;
    };
    let nanos = ((ntp & 0xffff_ffff) * 1_000_000_000 + (1 << 31)) >> 32;
    Duration::from_secs(secs) + Duration::from_nanos(nanos)
}

/// The middle 32 bits of an NTP time (16.16 seconds), as LSR and RTT arithmetic use them.
pub fn ntp_short(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// A 16.16 fixed-point number of seconds (DLSR, RTT) as a `Duration`.
pub fn ntp_short_to_duration(v: u32) -> Duration {
    Duration::from_nanos((u64::from(v) * 1_000_000_000) >> 16)
}

/// A `Duration` as 16.16 fixed-point seconds, saturating at the largest value.
#[cfg(any(test, feature = "_internals"))]
pub fn duration_to_ntp_short(d: Duration) -> u32 {
    let units = d.as_nanos() * 65536 / 1_000_000_000;
    u32::try_from(units).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn block(ssrc: u32) -> ReportBlockData {
        ReportBlockData {
            ssrc,
            fraction_lost: 25,
            cumulative_lost: -3,
            ext_highest_seq: 0x0001_0005,
            jitter: 123,
            lsr: 0xaabb_ccdd,
            dlsr: 65536,
        }
    }

    fn info() -> SenderInfo {
        SenderInfo {
            ntp: 0xe000_0000_8000_0000,
            rtp_ts: 90_000,
            packet_count: 10,
            octet_count: 12_000,
        }
    }

    #[test]
    fn sr_with_blocks_and_cname_round_trips() {
        let mut out = Vec::new();
        let n = build_report(
            &mut out,
            0x1234,
            Some(&info()),
            &[block(1), block(2)],
            "alice@example",
        )
        .unwrap();
        assert_eq!(n, out.len());
        assert_eq!(out[1], PT_SR);
        let ev = parse_compound(&out).unwrap();
        assert_eq!(
            ev,
            vec![
                RtcpEvent::SenderReport {
                    ssrc: 0x1234,
                    ntp: 0xe000_0000_8000_0000,
                    rtp_ts: 90_000,
                    packets: 10,
                    octets: 12_000,
                    reports: vec![block(1), block(2)],
                },
                RtcpEvent::Sdes {
                    ssrc: 0x1234,
                    cname: "alice@example".into()
                },
            ]
        );
    }

    #[test]
    fn rr_round_trips_and_empty_rr_is_valid() {
        let mut out = Vec::new();
        build_report(&mut out, 7, None, &[], "c").unwrap();
        assert_eq!(out[1], PT_RR);
        assert_eq!(
            parse_compound(&out).unwrap(),
            vec![
                RtcpEvent::ReceiverReport {
                    ssrc: 7,
                    reports: vec![]
                },
                RtcpEvent::Sdes {
                    ssrc: 7,
                    cname: "c".into()
                }
            ]
        );
        out.clear();
        build_rr(&mut out, 7, &[block(9)]).unwrap();
        assert_eq!(
            parse_compound(&out).unwrap(),
            vec![RtcpEvent::ReceiverReport {
                ssrc: 7,
                reports: vec![block(9)]
            }]
        );
    }

    #[test]
    fn more_than_31_blocks_spill_into_extra_rrs() {
        let blocks: Vec<_> = (0..70).map(block).collect();
        let mut out = Vec::new();
        build_sr(&mut out, 5, &info(), &blocks).unwrap();
        let ev = parse_compound(&out).unwrap();
        assert_eq!(ev.len(), 3);
        let mut all = Vec::new();
        for e in ev {
            match e {
                RtcpEvent::SenderReport { reports, .. }
                | RtcpEvent::ReceiverReport { reports, .. } => all.extend(reports),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(all, blocks);
    }

    #[test]
    fn cumulative_lost_is_24_bit_signed() {
        for (given, expect) in [
            (0, 0),
            (-1, -1),
            (5_000_000, 5_000_000),
            (i32::MAX, CUMULATIVE_LOST_MAX),
            (i32::MIN, CUMULATIVE_LOST_MIN),
        ] {
            let mut b = block(1);
            b.cumulative_lost = given;
            let mut out = Vec::new();
            build_rr(&mut out, 1, &[b]).unwrap();
            match &parse_compound(&out).unwrap()[0] {
                RtcpEvent::ReceiverReport { reports, .. } => {
                    assert_eq!(reports[0].cumulative_lost, expect)
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn bye_with_and_without_reason() {
        let mut out = Vec::new();
        build_rr(&mut out, 3, &[]).unwrap();
        build_bye(&mut out, 3, Some("call ended")).unwrap();
        build_bye(&mut out, 4, None).unwrap();
        let ev = parse_compound(&out).unwrap();
        assert_eq!(
            ev[1..],
            [
                RtcpEvent::Bye {
                    ssrcs: vec![3],
                    reason: Some("call ended".into())
                },
                RtcpEvent::Bye {
                    ssrcs: vec![4],
                    reason: None
                }
            ]
        );
    }

    #[test]
    fn pli_fir_nack_round_trip() {
        let mut out = Vec::new();
        build_pli(&mut out, 1, 2).unwrap();
        build_fir(&mut out, 1, 2, 77).unwrap();
        build_nack(&mut out, 1, 2, &[100, 101, 105, 116, 117, 200]).unwrap();
        let ev = parse_compound(&out).unwrap();
        assert_eq!(
            ev,
            vec![
                RtcpEvent::Pli {
                    sender_ssrc: 1,
                    media_ssrc: 2
                },
                RtcpEvent::Fir {
                    sender_ssrc: 1,
                    requests: vec![FirRequest { ssrc: 2, seq: 77 }]
                },
                RtcpEvent::Nack {
                    sender_ssrc: 1,
                    media_ssrc: 2,
                    lost: vec![100, 101, 105, 116, 117, 200]
                },
            ]
        );
        // 100..=116 share one PID+BLP pair; 117 and 200 need one each.
        assert_eq!(out.len(), 12 + 20 + (12 + 3 * 4));
    }

    #[test]
    fn nack_wire_format() {
        let mut out = Vec::new();
        build_nack(&mut out, 0x0a0b0c0d, 0x01020304, &[1000, 1002, 1016]).unwrap();
        assert_eq!(
            out,
            [
                0x81, 205, 0, 3, 0x0a, 0x0b, 0x0c, 0x0d, 1, 2, 3, 4, // header, SSRCs
                0x03, 0xe8, 0x80, 0x02, // PID 1000, BLP bits 1 and 15
            ]
        );
        assert!(build_nack(&mut out, 1, 2, &[]).is_err());
    }

    #[test]
    fn nack_across_sequence_wrap() {
        let mut out = Vec::new();
        build_nack(&mut out, 1, 2, &[65534, 65535, 0, 1]).unwrap();
        match &parse_compound(&out).unwrap()[0] {
            RtcpEvent::Nack { lost, .. } => {
                let mut l = lost.clone();
                l.sort_unstable();
                assert_eq!(l, [0, 1, 65534, 65535]);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn fir_media_field_is_zero() {
        let mut out = Vec::new();
        build_fir(&mut out, 9, 0xdead_beef, 1).unwrap();
        assert_eq!(&out[..4], &[0x84, 206, 0, 4]);
        assert_eq!(&out[8..12], &[0, 0, 0, 0]);
        assert_eq!(&out[12..16], &0xdead_beef_u32.to_be_bytes());
    }

    #[test]
    fn padded_nack_ignores_padding() {
        // A NACK with 4 bytes of padding: the padding must not become a bogus entry.
        let pkt = [
            0xa1, 205, 0, 4, 0, 0, 0, 1, 0, 0, 0, 2, 0x00, 0x10, 0x00, 0x00, 0, 0, 0, 4,
        ];
        assert_eq!(
            parse_compound(&pkt).unwrap(),
            vec![RtcpEvent::Nack {
                sender_ssrc: 1,
                media_ssrc: 2,
                lost: vec![16]
            }]
        );
    }

    #[test]
    fn unknown_and_app_are_other() {
        // APP packet: header, SSRC, name, no data.
        let app = [0x80, 204, 0, 2, 0, 0, 0, 1, b'a', b'b', b'c', b'd'];
        // Unknown type 210, empty body.
        let unknown = [0x80, 210, 0, 0];
        // PSFB FMT 15 (application layer feedback, REMB).
        let afb = [0x8f, 206, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0];
        let mut all = Vec::new();
        all.extend_from_slice(&app);
        all.extend_from_slice(&unknown);
        all.extend_from_slice(&afb);
        assert_eq!(
            parse_compound(&all).unwrap(),
            vec![
                RtcpEvent::Other {
                    packet_type: 204,
                    format: 0
                },
                RtcpEvent::Other {
                    packet_type: 210,
                    format: 0
                },
                RtcpEvent::Other {
                    packet_type: 206,
                    format: 15
                },
            ]
        );
    }

    #[test]
    fn sdes_without_cname_gives_no_event() {
        let mut out = Vec::new();
        let sdes = Sdes::builder().add_chunk(
            SdesChunk::builder(5)
                .add_item(SdesItem::builder(SdesItem::NAME, "Alice"))
                .add_item(SdesItem::builder(SdesItem::CNAME, "a@h")),
        );
        append(&mut out, &sdes).unwrap();
        let sdes2 = Sdes::builder()
            .add_chunk(SdesChunk::builder(6).add_item(SdesItem::builder(SdesItem::TOOL, "x")));
        append(&mut out, &sdes2).unwrap();
        assert_eq!(
            parse_compound(&out).unwrap(),
            vec![RtcpEvent::Sdes {
                ssrc: 5,
                cname: "a@h".into()
            }]
        );
    }

    #[test]
    fn truncated_and_bad_input_is_rejected() {
        let mut good = Vec::new();
        build_report(&mut good, 1, Some(&info()), &[block(2)], "cname").unwrap();
        build_pli(&mut good, 1, 2).unwrap();
        // Packet boundaries: SR with one block, SDES, PLI.
        let boundaries = [52, good.len() - 12, good.len()];
        for cut in 0..good.len() {
            let r = parse_compound(&good[..cut]);
            if boundaries.contains(&cut) {
                assert!(r.is_ok(), "cut at {cut}");
            } else {
                assert!(r.is_err(), "cut at {cut}");
            }
        }
        assert!(matches!(
            parse_compound(&[]),
            Err(RtcpError::Truncated { .. })
        ));

        let mut v1 = good.clone();
        v1[0] = (v1[0] & 0x3f) | 0x40;
        assert_eq!(parse_compound(&v1), Err(RtcpError::BadVersion(1)));
        // Version 0 in the second packet is caught too.
        let second = 28 + 24;
        let mut v0 = good.clone();
        v0[second] &= 0x3f;
        assert!(parse_compound(&v0).is_err());

        // SR claiming two blocks while holding one.
        let mut count = good.clone();
        count[0] = 0x82;
        assert!(matches!(
            parse_compound(&count),
            Err(RtcpError::Malformed {
                offset: 0,
                packet_type: PT_SR,
                ..
            })
        ));

        // Trailing bytes that are not a packet.
        let mut trailing = good.clone();
        trailing.extend_from_slice(&[0x80, 201]);
        assert!(parse_compound(&trailing).is_err());

        // Padding on a packet that is not the last.
        let mut pad = good.clone();
        pad[0] |= 0x20;
        assert!(parse_compound(&pad).is_err());

        // FIR whose FCI is shorter than one entry.
        let fir = [0x84, 206, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0];
        assert!(matches!(
            parse_compound(&fir),
            Err(RtcpError::Malformed {
                packet_type: PT_PSFB,
                ..
            })
        ));

        // Padding count that eats into the feedback header.
        let pli_pad = [0xa1, 206, 0, 2, 0, 0, 0, 1, 0, 0, 0, 8];
        assert!(parse_compound(&pli_pad).is_ok());
        let fir_pad = [0xa4, 206, 0, 3, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 16];
        assert!(parse_compound(&fir_pad).is_err());
    }

    #[test]
    fn transport_cc_and_remb_in_a_compound() {
        let mut out = Vec::new();
        build_rr(&mut out, 5, &[]).unwrap();
        let arrivals = [Some(70_000), None, Some(71_000)];
        assert_eq!(
            crate::rtp::twcc::build(&mut out, 5, 6, 100, 3, &arrivals).unwrap(),
            3
        );
        crate::rtp::remb::build(&mut out, 5, 1_000_000, &[6]).unwrap();
        let events = parse_compound(&out).unwrap();
        assert_eq!(events.len(), 3);
        match &events[1] {
            RtcpEvent::TransportCc(fb) => {
                assert_eq!((fb.sender_ssrc, fb.media_ssrc, fb.base_seq), (5, 6, 100));
                assert_eq!(fb.arrivals, arrivals);
            }
            other => panic!("{other:?}"),
        }
        match &events[2] {
            RtcpEvent::Remb(r) => assert_eq!((r.bitrate_bps, &r.ssrcs[..]), (1_000_000, &[6][..])),
            other => panic!("{other:?}"),
        }
        // Feedback announcing more statuses than its chunks carry makes the compound an error,
        // as a bad FIR does.
        let mut bad = Vec::new();
        crate::rtp::twcc::build(&mut bad, 5, 6, 100, 3, &arrivals).unwrap();
        bad[14..16].copy_from_slice(&40u16.to_be_bytes());
        assert!(matches!(
            parse_compound(&bad),
            Err(RtcpError::Malformed {
                packet_type: 205,
                ..
            })
        ));
        // Application-layer feedback that is not REMB stays `Other`.
        let mut afb = vec![0x8f, 206, 0, 3, 0, 0, 0, 5, 0, 0, 0, 0];
        afb.extend_from_slice(b"ABCD");
        assert_eq!(
            parse_compound(&afb).unwrap(),
            vec![RtcpEvent::Other {
                packet_type: 206,
                format: 15
            }]
        );
    }

    #[test]
    fn parse_into_leaves_events_alone_on_error() {
        let mut events = vec![RtcpEvent::Other {
            packet_type: 1,
            format: 0,
        }];
        let mut good = Vec::new();
        build_rr(&mut good, 1, &[]).unwrap();
        let mut bad = good.clone();
        bad.extend_from_slice(&[0x81, 201, 0, 1, 0, 0]);
        // The first (valid) RR is not left behind when a later packet is bad.
        let mut bad_late = good.clone();
        bad_late.extend_from_slice(&[0x82, 201, 0, 1, 0, 0, 0, 1]);
        assert!(parse_compound_into(&bad, &mut events).is_err());
        assert!(parse_compound_into(&bad_late, &mut events).is_err());
        assert_eq!(events.len(), 1);
        assert_eq!(parse_compound_into(&good, &mut events), Ok(1));
        assert_eq!(events.len(), 2);
    }

    #[test]
    fn build_errors_leave_buffer_unchanged() {
        let mut out = vec![1, 2, 3];
        let long = "x".repeat(256);
        assert!(matches!(
            build_report(&mut out, 1, Some(&info()), &[block(1)], &long),
            Err(RtcpError::Unencodable(_))
        ));
        assert!(build_bye(&mut out, 1, Some(&long)).is_err());
        assert_eq!(out, [1, 2, 3]);
        let ok = "y".repeat(255);
        assert!(build_sdes_cname(&mut out, 1, &ok).is_ok());
        assert!(build_bye(&mut out, 1, Some(&ok)).is_ok());
        assert!(parse_compound(&out[3..]).is_ok());
    }

    #[test]
    fn error_messages() {
        let e = RtcpError::Malformed {
            offset: 8,
            packet_type: 200,
            reason: "invalid padding",
        };
        assert_eq!(
            e.to_string(),
            "malformed RTCP packet type 200 at byte 8: invalid padding"
        );
        assert!(RtcpError::Truncated { needed: 8, got: 4 }
            .to_string()
            .contains("8 bytes needed"));
        assert!(RtcpError::BadVersion(3).to_string().contains("version 3"));
        assert!(RtcpError::Unencodable("x".into()).to_string().contains('x'));
    }

    #[test]
    fn interval_is_randomised_and_first_is_sooner() {
        let mut rng = StdRng::seed_from_u64(1);
        let t0 = Instant::now();
        let nominal = RtcpInterval::DEFAULT_NOMINAL;
        for _ in 0..200 {
            let iv = RtcpInterval::new(nominal, t0, &mut rng);
            let first = iv.next_due() - t0;
            assert!(first >= nominal / 4 && first < nominal * 3 / 4, "{first:?}");
        }
        let mut iv = RtcpInterval::new(nominal, t0, &mut rng);
        assert!(!iv.is_due(t0));
        assert!(!iv.poll(t0, &mut rng));
        let due = iv.next_due();
        assert!(iv.poll(due, &mut rng));
        let gap = iv.next_due() - due;
        assert!(gap >= nominal / 2 && gap < nominal * 3 / 2, "{gap:?}");
        assert!(!iv.poll(due, &mut rng));
        let (mut lo, mut hi) = (nominal, Duration::ZERO);
        for _ in 0..1000 {
            let d = RtcpInterval::randomised(nominal, &mut rng);
            lo = lo.min(d);
            hi = hi.max(d);
        }
        // Spread over most of [2.5 s, 7.5 s).
        assert!(lo < Duration::from_millis(2700) && hi > Duration::from_millis(7300));
        assert_eq!(iv.nominal(), nominal);
    }

    #[test]
    fn ntp_conversions() {
        assert_eq!(ntp_from_unix(Duration::ZERO), NTP_UNIX_OFFSET_SECS << 32);
        assert_eq!(
            ntp_from_unix(Duration::from_millis(1500)),
            ((NTP_UNIX_OFFSET_SECS + 1) << 32) | 0x8000_0000
        );
        // 2024-01-01T00:00:00Z is 1704067200 Unix, 3913056000 NTP.
        let t = UNIX_EPOCH + Duration::from_secs(1_704_067_200);
        assert_eq!(ntp_from_system_time(t) >> 32, 3_913_056_000);
        assert_eq!(
            ntp_from_system_time(UNIX_EPOCH - Duration::from_secs(5)),
            NTP_UNIX_OFFSET_SECS << 32
        );
        for nanos in [0u64, 1, 999_999_999, 123_456_789] {
            let d = Duration::from_secs(1_704_067_200) + Duration::from_nanos(nanos);
            let back = ntp_to_unix(ntp_from_unix(d));
            let diff = back.abs_diff(d);
            assert!(diff <= Duration::from_nanos(1), "{nanos}: {diff:?}");
        }
        assert_eq!(ntp_to_unix(5), Duration::ZERO);
        assert_eq!(ntp_short(0x1122_3344_5566_7788), 0x3344_5566);
        assert_eq!(
            ntp_short_to_duration(0x0001_8000),
            Duration::from_millis(1500)
        );
        assert_eq!(
            duration_to_ntp_short(Duration::from_millis(1500)),
            0x0001_8000
        );
        assert_eq!(
            duration_to_ntp_short(Duration::from_secs(1 << 20)),
            u32::MAX
        );
    }

    #[test]
    fn rtt_from_report_block() {
        let sr_sent = ntp_from_unix(Duration::from_secs(1000));
        let mut b = block(1);
        b.lsr = ntp_short(sr_sent);
        b.dlsr = duration_to_ntp_short(Duration::from_millis(250));
        let arrival = ntp_from_unix(Duration::from_millis(1_000_400));
        let rtt = round_trip_time(&b, arrival).unwrap();
        assert!(rtt.abs_diff(Duration::from_millis(150)) < Duration::from_micros(50));
        // DLSR longer than the elapsed time: inconsistent.
        b.dlsr = duration_to_ntp_short(Duration::from_millis(500));
        assert_eq!(round_trip_time(&b, arrival), None);
        // Arrival before the SR.
        b.dlsr = 0;
        assert_eq!(
            round_trip_time(&b, ntp_from_unix(Duration::from_secs(999))),
            None
        );
        b.lsr = 0;
        assert_eq!(round_trip_time(&b, arrival), None);
    }
}
