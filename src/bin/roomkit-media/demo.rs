//! `roomkit-media demo`: one SIP audio + video call on loopback between two of our own
//! `SipVideoBackend`s, one dialing and one answering, media both ways, then a report of what
//! arrived. Exit code 1 when media did not flow.
//!
//! The video is a real H.264 clip made on the fly by `codec::testclip` (a gradient with a square
//! sweeping across it: IDR pictures of I_PCM macroblocks every second, P pictures that code only
//! what moved), so the binary ships no clip and any decoder could play what arrives. Key pictures
//! are large enough to need FU-A fragments; P pictures go out in a few packets. Each received
//! picture is matched to the one sent by its bytes, which checks it arrived bit-exact and gives
//! its latency. The audio is a 440 Hz tone through the negotiated codec (Opus: both sides offer
//! opus, G.722, PCMU and PCMA), at the session's PCM rate (16 kHz on Opus and G.722).
//!
//! `--secure` runs the same call over SIP over TLS with SRTP (SDES) on both streams, the policy
//! mandatory on both sides (a plain answer is refused). The server's certificate is signed by a
//! CA made at start-up (`demo_pki.rs`), and the caller verifies it against that CA, as a real
//! client would against its roots. The report then names the TLS version and cipher suite, the
//! SIP transport and each stream's SRTP suite, and the demo fails if any of them is plain.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use roomkit_media::backend::SessionInfo;
use roomkit_media::backend::{
    CallState, DialOptions, SipBackendConfig, SipTlsConfig, SipTransportKind, SipVideoBackend,
};
use roomkit_media::codec::testclip::TestClip;
use roomkit_media::prelude::*;
use roomkit_media::{SrtpPolicy, SrtpSuite, VideoCodec};

use serde::Serialize;

use crate::args::within;
use crate::demo_pki::DemoPki;
use crate::output::{rounded, Out};
use crate::probe::{tone, Latencies};

/// `demo [--seconds S] [--secure]`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// How long media flows both ways.
    #[arg(long, value_name = "S", default_value_t = 2.0, allow_negative_numbers = true,
          value_parser = within(0.2, 60.0, " seconds"))]
    pub seconds: f64,
    /// Signalling over TLS (a certificate made at start-up, verified against its own CA) and
    /// SRTP on both streams, mandatory.
    #[arg(long)]
    pub secure: bool,
}

/// The closing JSON line.
#[derive(Serialize)]
struct Report<'a> {
    event: &'static str,
    video_codec: &'a str,
    pictures_sent: u32,
    setup_ms: f64,
    bye_answered: bool,
    /// `udp`, or `tls` with `--secure`.
    sip_transport: &'a str,
    /// The TLS version and cipher suite the call's connection negotiated; null without TLS.
    tls_version: Option<&'static str>,
    tls_cipher_suite: Option<&'static str>,
    server: SideReport,
    caller: SideReport,
    ok: bool,
}

/// What one side received, in the closing line.
#[derive(Serialize)]
struct SideReport {
    frames: u64,
    exact: u64,
    keyframes: u64,
    lost: i64,
    /// -1 when no picture arrived.
    latency_p50_ms: f64,
    audio_frames: u64,
    tone_hz: f64,
    /// The SRTP suite of each of this side's streams; null: plain RTP.
    audio_srtp: Option<&'static str>,
    video_srtp: Option<&'static str>,
}

const FPS: u32 = 30;
const KEY_EVERY: u32 = 30;

/// The clip: `count` pictures of 320×192 with a key picture every [`KEY_EVERY`].
fn clip(count: u32) -> Vec<Vec<u8>> {
    let mut gen = TestClip::new(320, 192, KEY_EVERY);
    (0..count).map(|_| gen.next_picture().0).collect()
}

/// A 64-bit FNV-1a hash: pictures are looked up by their bytes.
fn fingerprint(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// What one side received.
#[derive(Default)]
struct Seen {
    frames: u64,
    /// Pictures byte-identical to one that was sent.
    exact: u64,
    keyframes: u64,
    latencies: Latencies,
    audio_frames: u64,
    zero_crossings: u64,
    audio_samples: u64,
    last_sample: i16,
    sample_rate: u32,
}

impl Seen {
    fn audio(&mut self, pcm: &[i16], sample_rate: u32) {
        self.audio_frames += 1;
        self.sample_rate = sample_rate;
        for &s in pcm {
            if (s >= 0) != (self.last_sample >= 0) {
                self.zero_crossings += 1;
            }
            self.last_sample = s;
        }
        self.audio_samples += pcm.len() as u64;
    }

    fn tone_hz(&self) -> f64 {
        if self.audio_samples == 0 || self.sample_rate == 0 {
            return 0.0;
        }
        self.zero_crossings as f64 / 2.0 / (self.audio_samples as f64 / f64::from(self.sample_rate))
    }

    fn p50(&self) -> f64 {
        self.latencies.quantile(0.5).unwrap_or(f64::NAN)
    }
}

/// When each picture (by fingerprint) was handed to `send_video`.
type SendTimes = Arc<Mutex<HashMap<u64, Instant>>>;

fn on_frame(seen: &Mutex<Seen>, sent: &SendTimes, data: &[u8], key: bool) {
    let now = Instant::now();
    let mut s = seen.lock();
    s.frames += 1;
    s.keyframes += u64::from(key);
    // Only a picture identical to one that was sent counts as exact (and has a latency).
    if let Some(t) = sent.lock().get(&fingerprint(data)).copied() {
        s.exact += 1;
        s.latencies
            .push(now.saturating_duration_since(t).as_secs_f64() * 1000.0);
    }
}

/// The SRTP suite of a session's audio and video streams (None: plain, or no such stream).
fn srtp_suites(info: Option<&SessionInfo>) -> (Option<&'static str>, Option<&'static str>) {
    let audio = info.and_then(|s| s.audio.srtp_suite);
    let video = info.and_then(|s| s.video.as_ref()?.srtp_suite);
    (
        audio.map(SrtpSuite::sdp_name),
        video.map(SrtpSuite::sdp_name),
    )
}

pub fn run(args: &DemoArgs) -> Result<ExitCode, String> {
    let seconds = args.seconds;
    // Kept until the end: the backends read the files at start, the directory goes on drop.
    let pki = if args.secure {
        Some(DemoPki::new().map_err(|e| format!("making the demo's certificates: {e}"))?)
    } else {
        None
    };
    let srtp = if args.secure {
        SrtpPolicy::Mandatory
    } else {
        SrtpPolicy::Off
    };
    let be = SipVideoBackend::new(SipBackendConfig {
        local_sip_addr: "127.0.0.1:0".parse().expect("literal"),
        local_sip_tls_addr: pki
            .as_ref()
            .map(|_| "127.0.0.1:0".parse().expect("literal")),
        tls: SipTlsConfig {
            cert: pki.as_ref().map(DemoPki::cert),
            key: pki.as_ref().map(DemoPki::key),
            ..SipTlsConfig::default()
        },
        srtp,
        local_rtp_ip: [127, 0, 0, 1].into(),
        rtp_port_start: 47000,
        rtp_port_end: 47999,
        user_agent: "roomkit-media demo".into(),
        ..SipBackendConfig::default()
    })
    .map_err(|e| format!("starting the SIP backend: {e}"))?;
    let caller = SipVideoBackend::new(SipBackendConfig {
        local_sip_addr: "127.0.0.1:0".parse().expect("literal"),
        // The server's certificate must chain to the demo's CA: verified, as a real client does.
        tls: SipTlsConfig {
            ca: pki.as_ref().map(DemoPki::ca),
            verify: true,
            ..SipTlsConfig::default()
        },
        srtp,
        local_rtp_ip: [127, 0, 0, 1].into(),
        rtp_port_start: 48000,
        rtp_port_end: 48999,
        user: "demo".into(),
        user_agent: "roomkit-media demo caller".into(),
        ..SipBackendConfig::default()
    })
    .map_err(|e| format!("starting the caller: {e}"))?;

    let (at_server, at_caller) = (
        Arc::new(Mutex::new(Seen::default())),
        Arc::new(Mutex::new(Seen::default())),
    );
    let (sent_by_caller, sent_by_server): (SendTimes, SendTimes) = (Arc::default(), Arc::default());
    {
        let (seen, sent) = (at_server.clone(), sent_by_caller.clone());
        be.on_video_received(move |_, f| on_frame(&seen, &sent, &f.data, f.keyframe));
        let seen = at_server.clone();
        be.on_audio_received(move |_, f| seen.lock().audio(&f.pcm, f.sample_rate));
    }
    {
        let (seen, sent) = (at_caller.clone(), sent_by_server.clone());
        caller.on_video_received(move |_, f| on_frame(&seen, &sent, &f.data, f.keyframe));
        let seen = at_caller.clone();
        caller.on_audio_received(move |_, f| seen.lock().audio(&f.pcm, f.sample_rate));
    }
    let (call_tx, call_rx) = crossbeam_channel::bounded::<SessionInfo>(1);
    be.on_call(move |s| {
        let _ = call_tx.try_send(s.clone());
    });

    let udp = be
        .start()
        .map_err(|e| format!("starting the SIP backend: {e}"))?;
    let from = caller
        .start()
        .map_err(|e| format!("starting the caller: {e}"))?;
    let uri = if args.secure {
        let tls = be
            .local_sip_stream_addr(SipTransportKind::Tls)
            .ok_or("the SIP backend has no TLS listener")?;
        println!(
            "demo: SIP server on {udp} and TLS {tls} (certificate for 127.0.0.1 from a CA made at \
             start-up), SRTP mandatory; calling it from {from}, verifying against that CA"
        );
        format!("sip:demo@{tls};transport=tls")
    } else {
        println!("demo: SIP server on {udp}; calling it from {from}");
        format!("sip:demo@{udp}")
    };
    let setup = Instant::now();
    let call = caller
        .dial(&uri, DialOptions::default())
        .map_err(|e| format!("the call failed: {e}"))?;
    let answer = caller
        .wait_call(call, Duration::from_secs(10))
        .map_err(|e| format!("the call failed: {e}"))?;
    if answer.state != CallState::Answered {
        return Err(format!(
            "the call failed: {} {}",
            answer.status, answer.reason
        ));
    }
    let setup_ms = setup.elapsed().as_secs_f64() * 1000.0;
    let call_id = caller.call_id(call).unwrap_or_default();
    let info = call_rx
        .recv_timeout(Duration::from_secs(5))
        .map_err(|_| "the server never reported the call".to_string())?;
    let codec = info
        .metadata
        .get("video_codec")
        .cloned()
        .unwrap_or_default();
    println!(
        "demo: call {} up in {setup_ms:.1} ms: audio {} + video {}",
        call_id,
        info.metadata.get("audio_codec").map_or("?", String::as_str),
        if codec.is_empty() { "none" } else { &codec }
    );
    let pictures = (seconds * f64::from(FPS)) as u32;
    let clip = clip(pictures);
    println!(
        "demo: sending a {pictures}-picture H.264 clip (320x192, {} KB) and a 440 Hz tone, both ways, for {seconds} s",
        clip.iter().map(Vec::len).sum::<usize>() / 1024
    );

    let start = Instant::now();
    let (mut n_caller, mut n_server) = (0u64, 0u64);
    // Both sides have the same settings, so the same PCM rate.
    let rate = info.audio.sample_rate;
    let mut next_audio = start;
    let mut sent_pictures = 0u32;
    for i in 0..pictures {
        let due = start + Duration::from_secs_f64(f64::from(i) / f64::from(FPS));
        while Instant::now() < due {
            // Audio every 20 ms in between.
            if Instant::now() >= next_audio {
                let _ = caller.send_audio(call, &tone(&mut n_caller, rate));
                let _ = be.send_audio(info.id, &tone(&mut n_server, rate));
                next_audio += Duration::from_millis(20);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let p = &clip[i as usize];
        sent_by_caller.lock().insert(fingerprint(p), Instant::now());
        caller
            .send_video(call, p)
            .map_err(|e| format!("caller send_video: {e}"))?;
        sent_by_server.lock().insert(fingerprint(p), Instant::now());
        be.send_video(info.id, p)
            .map_err(|e| format!("server send_video: {e}"))?;
        sent_pictures += 1;
    }
    std::thread::sleep(Duration::from_millis(300));
    let transport = info
        .metadata
        .get("sip_transport")
        .cloned()
        .unwrap_or_default();
    // The caller opened the TLS connection: its handshake is in the caller's counters.
    let sip = caller.sip_stats();
    let (tls_version, tls_cipher_suite) = (sip.tls_version, sip.tls_cipher_suite);
    let srtp_at_server = srtp_suites(be.get_session(info.id).as_ref());
    let srtp_at_caller = srtp_suites(caller.get_session(call).as_ref());
    let plain = |s: Option<&str>| s.unwrap_or("none (plain RTP)").to_string();
    println!(
        "demo: SIP over {}{}; {}",
        transport.to_ascii_uppercase(),
        match (tls_version, tls_cipher_suite) {
            (Some(v), Some(c)) => format!(" ({v}, {c})"),
            _ => String::new(),
        },
        if srtp_at_server == (None, None) && srtp_at_caller == (None, None) {
            "media in plain RTP".to_string()
        } else {
            format!(
                "SRTP audio {}, video {} (caller: audio {}, video {})",
                plain(srtp_at_server.0),
                plain(srtp_at_server.1),
                plain(srtp_at_caller.0),
                plain(srtp_at_caller.1),
            )
        }
    );
    let server_stats = be.stats(info.id).map_err(|e| e.to_string())?;
    let caller_stats = caller.stats(call).map_err(|e| e.to_string())?;
    let byes = caller.sip_stats().byes_answered;
    caller.hangup(call).map_err(|e| e.to_string())?;
    // The server answers our BYE.
    let deadline = Instant::now() + Duration::from_secs(2);
    while caller.sip_stats().byes_answered == byes && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let answered = caller.sip_stats().byes_answered > byes;

    let mut ok = answered;
    if args.secure {
        // Secure means secure: TLS signalling and SRTP on all four streams, or the demo failed.
        let secured = transport == "tls"
            && tls_version.is_some()
            && [srtp_at_server, srtp_at_caller]
                .iter()
                .all(|(a, v)| a.is_some() && v.is_some());
        if !secured {
            println!("demo: the call was not secured  <-- TLS OR SRTP MISSING");
        }
        ok &= secured;
    }
    let keys_sent = u64::from(sent_pictures.div_ceil(KEY_EVERY));
    let mut report = Vec::new();
    for (name, seen, stats, (audio_srtp, video_srtp)) in [
        (
            "server (from caller)",
            &at_server,
            &server_stats,
            srtp_at_server,
        ),
        (
            "caller (from server)",
            &at_caller,
            &caller_stats,
            srtp_at_caller,
        ),
    ] {
        let s = seen.lock();
        let lost = stats.video.as_ref().map_or(0, |v| v.lost);
        let p50 = s.p50();
        let flowed = s.exact * 10 >= u64::from(sent_pictures) * 9
            && s.exact == s.frames
            && s.keyframes >= 1
            && s.audio_frames * 2 >= (seconds * 50.0) as u64
            && (s.tone_hz() - 440.0).abs() < 40.0;
        ok &= flowed;
        println!(
            "demo: {name}: {}/{} pictures ({} bit-exact), {}/{} key, {} RTP packets lost, latency p50 {:.2} ms; {} audio frames, tone ≈ {:.0} Hz{}",
            s.frames,
            sent_pictures,
            s.exact,
            s.keyframes,
            keys_sent,
            lost,
            p50,
            s.audio_frames,
            s.tone_hz(),
            if flowed { "" } else { "  <-- MEDIA DID NOT FLOW" }
        );
        report.push(SideReport {
            frames: s.frames,
            exact: s.exact,
            keyframes: s.keyframes,
            lost,
            latency_p50_ms: if p50.is_nan() { -1.0 } else { rounded(p50, 3) },
            audio_frames: s.audio_frames,
            tone_hz: rounded(s.tone_hz(), 1),
            audio_srtp,
            video_srtp,
        });
    }
    let [server, caller_side] = <[SideReport; 2]>::try_from(report)
        .ok()
        .expect("one report per side");
    Out::stdout().line(&Report {
        event: "demo",
        video_codec: if codec.is_empty() {
            VideoCodec::H264.as_str()
        } else {
            &codec
        },
        pictures_sent: sent_pictures,
        setup_ms: rounded(setup_ms, 2),
        bye_answered: answered,
        sip_transport: &transport,
        tls_version,
        tls_cipher_suite,
        server,
        caller: caller_side,
        ok,
    });
    drop(caller);
    drop(be);
    drop(pki);
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_pictures_are_distinct_and_keyed() {
        let c = clip(2 * KEY_EVERY);
        let prints: std::collections::HashSet<u64> = c.iter().map(|p| fingerprint(p)).collect();
        assert_eq!(prints.len(), c.len());
        assert_eq!(c[0][4] & 0x1f, 7, "a key picture starts with its SPS");
        assert_eq!(c[1][4] & 0x1f, 1, "then P pictures");
    }
}
