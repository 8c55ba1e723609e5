//! Metrics: a backend's counters rendered as Prometheus text (checked by a small parser of the
//! exposition format), summed over live and ended sessions so counters never go down, served
//! over HTTP by the library's endpoint (404/405/431, a silent client, stop), and scraped from
//! `roomkit-media serve --metrics` during a call placed by `roomkit-media call`.

use crate::support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use roomkit_media::backend::RtpBackendConfig;
use roomkit_media::metrics::{self, MetricsFormat, MetricsServer};
use roomkit_media::prelude::*;
use support::peers;
use support::rtp::{h264_picture, pair, recv_n};

/// Samples of one scrape: `name{labels}` (labels as written) → value.
type Samples = HashMap<String, f64>;

/// Parses the text exposition format strictly enough to catch what a scraper would refuse:
/// every sample belongs to the family of the `# TYPE` line before it (Prometheus 0.0.4 names
/// the family as its samples; OpenMetrics names a counter without `_total` and ends with
/// `# EOF`), names and labels are well formed, values are numbers, no sample repeats.
fn parse(text: &str, format: MetricsFormat) -> Samples {
    let valid_name = |n: &str| {
        !n.is_empty()
            && n.chars().enumerate().all(|(i, c)| {
                c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
            })
    };
    let mut family: Option<(String, String)> = None;
    let mut samples = Samples::new();
    let mut eof = false;
    for line in text.lines() {
        assert!(!eof, "text after # EOF: {line}");
        if line == "# EOF" {
            eof = true;
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, _) = rest.split_once(' ').expect("HELP has text");
            assert!(valid_name(name), "{line}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE has a kind");
            assert!(valid_name(name), "{line}");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            family = Some((name.to_string(), kind.to_string()));
            continue;
        }
        assert!(!line.starts_with('#'), "unknown comment {line}");
        let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.strip_suffix('}').expect("labels close")),
            None => (series, ""),
        };
        assert!(valid_name(name), "{line}");
        // Labels: k="v" pairs, values with \\ \" \n escapes only.
        let mut rest = labels;
        while !rest.is_empty() {
            let (k, v) = rest.split_once("=\"").expect("label=\"value\"");
            assert!(valid_name(k), "label name in {line}");
            let mut chars = v.char_indices();
            let end = loop {
                match chars.next().expect("label value closes") {
                    (_, '\\') => assert!(matches!(chars.next(), Some((_, '\\' | '"' | 'n')))),
                    (i, '"') => break i,
                    _ => {}
                }
            };
            rest = v[end + 1..].strip_prefix(',').unwrap_or(&v[end + 1..]);
        }
        let (fam, kind) = family.as_ref().expect("a sample after a TYPE line");
        let ok = match (kind.as_str(), format) {
            ("histogram", _) => ["_bucket", "_sum", "_count"]
                .iter()
                .any(|s| name == format!("{fam}{s}")),
            ("counter", MetricsFormat::OpenMetrics) => name == format!("{fam}_total"),
            _ => name == fam,
        };
        assert!(ok, "sample {name} outside its family {fam} ({kind})");
        assert!(
            samples.insert(series.to_string(), value).is_none(),
            "repeated {series}"
        );
    }
    assert_eq!(
        eof,
        format == MetricsFormat::OpenMetrics,
        "# EOF iff OpenMetrics"
    );
    samples
}

fn get(s: &Samples, key: &str) -> f64 {
    *s.get(key).unwrap_or_else(|| {
        panic!(
            "no sample {key} in {:?}",
            s.keys().take(8).collect::<Vec<_>>()
        )
    })
}

#[test]
fn rtp_counters_move_and_never_go_down_when_a_session_ends() {
    let p = pair(RtpBackendConfig::default());
    let before = parse(&p.a.metrics_text("a"), MetricsFormat::Prometheus);
    assert_eq!(get(&before, "rkm_sessions{instance=\"a\"}"), 1.0);
    assert_eq!(get(&before, "rkm_video_sessions{instance=\"a\"}"), 1.0);
    assert!(
        !before.keys().any(|k| k.starts_with("rkm_calls_")),
        "no SIP families on an RTP backend"
    );
    for i in 0..5 {
        p.a.send_video(p.a_id, &h264_picture(i == 0, 20_000, i))
            .unwrap();
    }
    p.a.send_audio(p.a_id, &[0i16; 1600]).unwrap();
    assert_eq!(recv_n(&p.b_rx.video, 5, Duration::from_secs(10)).len(), 5);
    let sent_key = "rkm_rtp_packets_sent_total{instance=\"a\",media=\"video\"}";
    // The pacer may still be sending: read the session first, the sums can only be larger.
    let st = p.a.stats(p.a_id).unwrap().video.unwrap();
    let a1 = parse(&p.a.metrics_text("a"), MetricsFormat::Prometheus);
    assert!(get(&a1, sent_key) >= st.packets_sent as f64 && st.packets_sent >= 5);
    assert!(
        get(
            &a1,
            "rkm_rtp_packets_sent_total{instance=\"a\",media=\"audio\"}"
        ) >= 5.0
    );
    let b1 = parse(&p.b.metrics_text("b"), MetricsFormat::Prometheus);
    assert!(
        get(
            &b1,
            "rkm_rtp_packets_received_total{instance=\"b\",media=\"video\"}"
        ) >= 5.0
    );
    assert_eq!(
        get(
            &b1,
            "rkm_rtp_frames_received_total{instance=\"b\",media=\"video\"}"
        ),
        5.0
    );
    assert!(
        get(
            &b1,
            "rkm_rtp_bytes_received_total{instance=\"b\",media=\"video\"}"
        ) > 100_000.0
    );

    // The session ends: its counts stay in the sums, the gauges drop.
    p.a.disconnect(p.a_id).unwrap();
    let a2 = parse(&p.a.metrics_text("a"), MetricsFormat::Prometheus);
    for (k, v) in &a1 {
        if k.contains("_total{") {
            assert!(a2[k] >= *v, "{k} went down: {v} -> {}", a2[k]);
        }
    }
    assert_eq!(get(&a2, "rkm_sessions{instance=\"a\"}"), 0.0);
    assert_eq!(get(&a2, "rkm_sessions_started_total{instance=\"a\"}"), 1.0);
    assert_eq!(get(&a2, "rkm_sessions_ended_total{instance=\"a\"}"), 1.0);
    assert!(
        get(&a2, "rkm_rtcp_sent_total{instance=\"a\",media=\"video\"}") >= 1.0,
        "BYE at least"
    );

    // Two backends in one scrape, each under its own instance; and OpenMetrics.
    let both = metrics::render(
        &[("a", &p.a as &dyn MediaBackend), ("b", &p.b)],
        MetricsFormat::OpenMetrics,
    );
    let om = parse(&both, MetricsFormat::OpenMetrics);
    // b's session may already have ended on a's RTCP BYE; it was started either way.
    assert_eq!(get(&om, "rkm_sessions_started_total{instance=\"b\"}"), 1.0);
    assert_eq!(om[sent_key], a2[sent_key]);
}

/// Sends `request` raw and returns the whole answer (the server closes after it).
fn http(addr: SocketAddr, request: &[u8]) -> String {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// GETs `/metrics` with an optional Accept header; returns (status line, headers, body).
fn scrape(addr: SocketAddr, accept: Option<&str>) -> (String, String, String) {
    let extra = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    let r = http(
        addr,
        format!("GET /metrics HTTP/1.1\r\nHost: x\r\n{extra}\r\n").as_bytes(),
    );
    let (head, body) = r.split_once("\r\n\r\n").expect("an HTTP answer");
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_string(), headers.to_string(), body.to_string())
}

#[test]
fn the_endpoint_answers_scrapes_and_bounds_everything_else() {
    let p = pair(RtpBackendConfig::default());
    let b = std::sync::Arc::new(p.b);
    let be = b.clone();
    let mut server = MetricsServer::start("127.0.0.1:0".parse().unwrap(), move |f| {
        metrics::render(&[("rkm0", &*be as &dyn MediaBackend)], f)
    })
    .unwrap();
    let addr = server.local_addr();
    let (status, headers, body) = scrape(addr, None);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        headers.contains("Content-Type: text/plain; version=0.0.4"),
        "{headers}"
    );
    assert!(headers.contains(&format!("Content-Length: {}", body.len())));
    assert_eq!(
        get(
            &parse(&body, MetricsFormat::Prometheus),
            "rkm_sessions{instance=\"rkm0\"}"
        ),
        1.0
    );
    // What Prometheus sends: OpenMetrics preferred.
    let (_, headers, body) = scrape(
        addr,
        Some("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
    );
    assert!(
        headers.contains("application/openmetrics-text; version=1.0.0"),
        "{headers}"
    );
    parse(&body, MetricsFormat::OpenMetrics);

    assert!(http(addr, b"GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
    assert!(http(addr, b"POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
    let huge = format!(
        "GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n",
        "a".repeat(metrics::MAX_REQUEST)
    );
    assert!(http(addr, huge.as_bytes()).starts_with("HTTP/1.1 431"));
    // A client that connects and says nothing holds the thread for the timeout at most.
    let silent = TcpStream::connect(addr).unwrap();
    let t = Instant::now();
    let (status, _, _) = scrape(addr, None);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(t.elapsed() < metrics::IO_TIMEOUT * 3, "{:?}", t.elapsed());
    drop(silent);
    // Garbage and a half-closed request are dropped without an answer or a stuck thread.
    let _ = http(addr, b"\x00\x01\x02\r\n\r\n");
    {
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(b"GET /met").unwrap();
    }
    assert_eq!(scrape(addr, None).0, "HTTP/1.1 200 OK");
    server.stop();
    assert!(TcpStream::connect(addr).is_err(), "the socket is closed");
    drop(b);
}

/// `serve --metrics` during a call from `roomkit-media call`: the call, its setup time and its
/// packets show up, and move between two scrapes.
#[test]
fn serve_metrics_are_scraped_during_a_call() {
    let (mut serve, port) = peers::spawn_serve(
        60,
        "39500-39549",
        &[
            "--echo",
            "--quiet-frames",
            "--max-calls",
            "1",
            "--metrics",
            "127.0.0.1:0",
            "--metrics-instance",
            "edge-1",
        ],
    );
    let mut lines = BufReader::new(serve.stdout.take().unwrap()).lines();
    let listening = lines.next().unwrap().unwrap();
    let addr: SocketAddr = listening
        .split("\"metrics\":\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("no metrics address in {listening}"))
        .parse()
        .unwrap();
    let idle = parse(&scrape(addr, None).2, MetricsFormat::Prometheus);
    assert_eq!(get(&idle, "rkm_sessions{instance=\"edge-1\"}"), 0.0);
    assert_eq!(
        get(&idle, "rkm_calls_answered_total{instance=\"edge-1\"}"),
        0.0
    );

    let uri = format!("sip:echo@127.0.0.1:{port}");
    let call = peers::spawn(
        60,
        peers::bin().to_str().unwrap(),
        &["call", &uri, "--seconds", "4", "--rtp-ports", "39550-39599"],
    );
    // Wait (bounded) for the call to be up, then scrape twice, a second apart.
    let key = "rkm_rtp_packets_received_total{instance=\"edge-1\",media=\"video\"}";
    let deadline = Instant::now() + Duration::from_secs(20);
    let first = loop {
        let s = parse(&scrape(addr, None).2, MetricsFormat::Prometheus);
        if get(&s, "rkm_sessions{instance=\"edge-1\"}") == 1.0 && get(&s, key) > 0.0 {
            break s;
        }
        assert!(Instant::now() < deadline, "the call never showed up");
        std::thread::sleep(Duration::from_millis(100));
    };
    std::thread::sleep(Duration::from_secs(1));
    let second = parse(&scrape(addr, None).2, MetricsFormat::Prometheus);
    assert_eq!(
        get(&second, "rkm_calls_answered_total{instance=\"edge-1\"}"),
        1.0
    );
    assert_eq!(get(&second, "rkm_video_sessions{instance=\"edge-1\"}"), 1.0);
    assert!(get(&second, key) > get(&first, key), "video packets move");
    let audio = "rkm_rtp_packets_sent_total{instance=\"edge-1\",media=\"audio\"}";
    assert!(
        get(&second, audio) > get(&first, audio),
        "echoed audio moves"
    );
    assert_eq!(
        get(
            &second,
            "rkm_call_setup_seconds_count{instance=\"edge-1\",direction=\"incoming\"}"
        ),
        1.0
    );
    assert_eq!(
        get(
            &second,
            "rkm_call_setup_seconds_bucket{instance=\"edge-1\",direction=\"incoming\",le=\"+Inf\"}"
        ),
        1.0
    );
    let out = peers::wait_bounded(call, Duration::from_secs(30));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let served = peers::wait_bounded(serve, Duration::from_secs(20));
    assert!(served.status.success());
}
