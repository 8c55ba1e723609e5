//! An RTCP compound through our parser, and every event we can build back (SR, RR, SDES CNAME,
//! BYE, PLI, FIR, NACK) built with our own builders and parsed again: it must come back the same.

use std::collections::BTreeSet;

use roomkit_media::rtp::rtcp::{
    build_bye, build_fir, build_nack, build_pli, build_rr, build_sdes_cname, build_sr,
    parse_compound, RtcpEvent, SenderInfo,
};

/// Builds `event` with our builders; `None` for what they cannot express (several BYE sources or
/// FIR entries, other packet types), or refuse (an over-long text, an empty NACK).
fn rebuild(event: &RtcpEvent) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let built = match event {
        RtcpEvent::SenderReport {
            ssrc,
            ntp,
            rtp_ts,
            packets,
            octets,
            reports,
        } => {
            let info = SenderInfo {
                ntp: *ntp,
                rtp_ts: *rtp_ts,
                packet_count: *packets,
                octet_count: *octets,
            };
            build_sr(&mut out, *ssrc, &info, reports)
        }
        RtcpEvent::ReceiverReport { ssrc, reports } => build_rr(&mut out, *ssrc, reports),
        RtcpEvent::Sdes { ssrc, cname } => build_sdes_cname(&mut out, *ssrc, cname),
        RtcpEvent::Bye { ssrcs, reason } if ssrcs.len() == 1 => {
            build_bye(&mut out, ssrcs[0], reason.as_deref())
        }
        RtcpEvent::Pli {
            sender_ssrc,
            media_ssrc,
        } => build_pli(&mut out, *sender_ssrc, *media_ssrc),
        RtcpEvent::Fir {
            sender_ssrc,
            requests,
        } if requests.len() == 1 => {
            build_fir(&mut out, *sender_ssrc, requests[0].ssrc, requests[0].seq)
        }
        RtcpEvent::Nack {
            sender_ssrc,
            media_ssrc,
            lost,
        } => build_nack(&mut out, *sender_ssrc, *media_ssrc, lost),
        _ => return None,
    };
    built.ok().map(|_| out)
}

/// The parts of an event that must survive a rebuild: a NACK's list as a set (packing may
/// reorder and merge), a BYE without reason the same as one with an empty reason.
fn normalise(event: &RtcpEvent) -> RtcpEvent {
    match event {
        RtcpEvent::Nack {
            sender_ssrc,
            media_ssrc,
            lost,
        } => RtcpEvent::Nack {
            sender_ssrc: *sender_ssrc,
            media_ssrc: *media_ssrc,
            lost: lost
                .iter()
                .copied()
                .collect::<BTreeSet<u16>>()
                .into_iter()
                .collect(),
        },
        RtcpEvent::Bye { ssrcs, reason } => RtcpEvent::Bye {
            ssrcs: ssrcs.clone(),
            reason: reason.clone().filter(|r| !r.is_empty()),
        },
        other => other.clone(),
    }
}

/// Parses one compound; rebuilds and re-parses each event.
pub fn compound(data: &[u8]) {
    let Ok(events) = parse_compound(data) else {
        return;
    };
    for event in &events {
        let Some(bytes) = rebuild(event) else {
            continue;
        };
        let back = parse_compound(&bytes)
            .unwrap_or_else(|e| panic!("our RTCP for {event:?} does not parse: {e}"));
        let back: Vec<RtcpEvent> = back.iter().map(normalise).collect();
        assert_eq!(
            back,
            vec![normalise(event)],
            "rebuilt RTCP reads differently"
        );
    }
}
