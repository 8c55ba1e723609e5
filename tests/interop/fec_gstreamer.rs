//! ULPFEC in RED against GStreamer's encoder: `rtpulpfecenc ! rtpredenc` protects an H.264 RTP
//! stream; we take its packets off a socket, unwrap the RED, and check that our parser and our
//! recovery rebuild every media packet each GStreamer FEC packet protects, byte for byte, and
//! that `FecReceiver` fed the stream minus some media packets hands back exactly those.

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use roomkit_media::rtp::fec::{parse_ulpfec, recover, FecReceiver};
use roomkit_media::rtp::packet::parse_rtp;
use roomkit_media::rtp::red::unwrap_red;

use crate::support::peers::{have_peers, spawn, wait_bounded};

const MEDIA_PT: u8 = 96;
const FEC_PT: u8 = 122;
const RED_PT: u8 = 123;

#[test]
fn gstreamer_ulpfec_in_red_is_parsed_and_rebuilds_lost_packets() {
    if !have_peers(&["gst-launch-1.0"]) {
        return;
    }
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let port = sock.local_addr().unwrap().port().to_string();
    let mtu = "400".to_string();
    let pipeline = format!(
        "videotestsrc num-buffers=60 ! video/x-raw,width=320,height=240,framerate=30/1 ! \
         x264enc tune=zerolatency key-int-max=30 ! rtph264pay pt={MEDIA_PT} mtu={mtu} ! \
         rtpulpfecenc pt={FEC_PT} percentage=50 ! rtpredenc pt={RED_PT} ! \
         udpsink host=127.0.0.1 port={port}"
    );
    let args: Vec<&str> = std::iter::once("-q")
        .chain(pipeline.split_whitespace())
        .collect();
    let gst = spawn(60, "gst-launch-1.0", &args);

    // Everything it sends, until it has exited and a quiet spell passed (bounded).
    let mut datagrams = Vec::new();
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut quiet = 0;
    while Instant::now() < deadline && quiet < 10 {
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => {
                quiet = 0;
                datagrams.push(buf[..n].to_vec());
            }
            Err(_) => quiet += 1,
        }
    }
    let out = wait_bounded(gst, Duration::from_secs(10));
    assert!(
        !datagrams.is_empty(),
        "gst-launch-1.0 sent nothing: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Unwrap RED: media by sequence number, FEC payloads with their SSRC, in arrival order.
    let mut media = BTreeMap::new();
    let mut fecs = Vec::new();
    let mut order = Vec::new();
    let mut inner = Vec::new();
    for d in &datagrams {
        let (meta, _) = parse_rtp(d).expect("GStreamer sends RTP");
        assert_eq!(meta.payload_type, RED_PT);
        match unwrap_red(d, &mut inner).expect("its RED parses") {
            MEDIA_PT => {
                media.insert(meta.sequence, inner.clone());
                order.push((false, inner.clone(), meta.ssrc));
            }
            FEC_PT => {
                let (_, payload) = parse_rtp(&inner).unwrap();
                fecs.push((meta.ssrc, inner[payload].to_vec()));
                order.push((true, fecs.last().unwrap().1.clone(), meta.ssrc));
            }
            other => panic!("unexpected RED block PT {other}"),
        }
    }
    assert!(fecs.len() >= 20, "{} FEC packets", fecs.len());

    // Each FEC packet: every packet it protects is rebuilt from the others exactly.
    let mut rebuilt = 0;
    let mut out = Vec::new();
    for (ssrc, payload) in &fecs {
        let f = parse_ulpfec(payload).expect("GStreamer's ULPFEC parses");
        let seqs: Vec<u16> = f.protected().collect();
        assert!(!seqs.is_empty());
        for &lost in &seqs {
            let present: Vec<&[u8]> = seqs
                .iter()
                .filter(|&&s| s != lost)
                .map(|s| media[s].as_slice())
                .collect();
            recover(&f, *ssrc, lost, &present, &mut out).expect("recovers");
            assert_eq!(out, media[&lost], "seq {lost} rebuilt byte for byte");
            rebuilt += 1;
        }
    }

    // The receiver, with every 7th media packet lost on the way.
    let mut rx = FecReceiver::new();
    let mut dropped = BTreeMap::new();
    let mut n_media = 0;
    for (is_fec, bytes, ssrc) in &order {
        if *is_fec {
            rx.handle_fec(*ssrc, bytes);
        } else {
            n_media += 1;
            if n_media % 7 == 0 {
                let seq = u16::from_be_bytes([bytes[2], bytes[3]]);
                dropped.insert(seq, bytes.clone());
                continue;
            }
            rx.handle_media(bytes);
        }
    }
    let mut got = 0;
    while let Some(p) = rx.poll_recovered() {
        let seq = u16::from_be_bytes([p[2], p[3]]);
        assert_eq!(
            Some(&p),
            dropped.get(&seq),
            "recovered seq {seq} is the lost packet"
        );
        got += 1;
    }
    eprintln!(
        "GStreamer: {} media, {} FEC packets; {rebuilt} single-loss rebuilds; receiver rebuilt \
         {got} of {} lost; {:?}",
        media.len(),
        fecs.len(),
        dropped.len(),
        rx.stats()
    );
    assert!(
        got * 10 >= dropped.len() * 9,
        "{got} of {} rebuilt",
        dropped.len()
    );
}
