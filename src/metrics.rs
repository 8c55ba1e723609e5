//! Prometheus metrics: the counters the backends already keep, rendered as text on demand.
//!
//! Nothing here counts per packet. A scrape reads each live session's [`StreamStats`] (one
//! short lock per stream, as [`MediaBackend::stats`] does), adds what the backend's ended
//! sessions left behind, the session counts, the SIP counters and the call-setup histogram, and
//! writes them in the Prometheus text format (0.0.4) or OpenMetrics 1.0. There is no global
//! registry: each backend keeps its own counters, so a process may embed the library twice, and
//! [`render`] takes the backends to show with the `instance` label each carries.
//!
//! Labels are the backend's instance name and, for RTP counters, the media kind (`audio`,
//! `video`); never a session id, so a scrape's size does not grow with the number of calls.
//!
//! [`StreamStats`]: crate::engine::stats::StreamStats

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::backend::MediaBackend;
use crate::engine::stats::StreamStats;
pub use crate::engine::stats::{StreamCounter, StreamTotals, STREAM_COUNTERS};

/// The HTTP endpoint (`serve --metrics`): a blocking responder on a thread of its own.
pub use crate::engine::metrics_http::{MetricsServer, IO_TIMEOUT, MAX_REQUEST};

/// The text format of a scrape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MetricsFormat {
    /// The Prometheus text exposition format 0.0.4 (what a scraper that asks for nothing else
    /// gets).
    #[default]
    Prometheus,
    /// OpenMetrics 1.0 text (counters named without `_total` in their metadata, `# EOF` at the
    /// end).
    OpenMetrics,
}

impl MetricsFormat {
    /// The HTTP `Content-Type` of this format.
    pub fn content_type(self) -> &'static str {
        match self {
            MetricsFormat::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            MetricsFormat::OpenMetrics => {
                "application/openmetrics-text; version=1.0.0; charset=utf-8"
            }
        }
    }

    /// The format an HTTP request's `Accept` header prefers: OpenMetrics when it names it,
    /// Prometheus text otherwise.
    pub fn from_accept(accept: Option<&str>) -> MetricsFormat {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => MetricsFormat::OpenMetrics,
            _ => MetricsFormat::Prometheus,
        }
    }
}

/// The instance name used when none is given (`serve --metrics`, the C API with NULL).
pub const DEFAULT_INSTANCE: &str = "rkm0";

/// Upper bounds of the call-setup histogram's buckets, seconds.
pub const SETUP_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A histogram of durations with the [`SETUP_BUCKETS`] bounds, updated with relaxed atomics
/// (one observation per call set up, never per packet).
#[derive(Debug, Default)]
pub struct SetupHistogram {
    /// Observations per bucket (not cumulative); the last one is `+Inf`.
    buckets: [AtomicU64; SETUP_BUCKETS.len() + 1],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl SetupHistogram {
    /// Records one call setup that took `d`.
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = SETUP_BUCKETS
            .iter()
            .position(|&b| s <= b)
            .unwrap_or(SETUP_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// A copy for rendering.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut buckets = [0u64; SETUP_BUCKETS.len() + 1];
        for (b, a) in buckets.iter_mut().zip(&self.buckets) {
            *b = a.load(Ordering::Relaxed);
        }
        HistogramSnapshot {
            buckets,
            count: self.count.load(Ordering::Relaxed),
            sum_seconds: self.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

/// A [`SetupHistogram`] read at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HistogramSnapshot {
    /// Observations per bucket of [`SETUP_BUCKETS`] (not cumulative), the last one beyond them.
    pub buckets: [u64; SETUP_BUCKETS.len() + 1],
    /// Observations.
    pub count: u64,
    /// Their sum, seconds.
    pub sum_seconds: f64,
}

/// What one backend shows in a scrape. Built by the backend (`MediaBackend::metrics`), written
/// by [`render`].
#[derive(Debug, Clone, Default)]
pub struct BackendMetrics {
    /// Live sessions.
    pub sessions: u64,
    /// Live sessions that carry video.
    pub video_sessions: u64,
    /// Sessions created since the backend started.
    pub sessions_started: u64,
    /// Sessions ended since the backend started.
    pub sessions_ended: u64,
    /// RTP counters of every stream, live and ended: `[audio, video]`.
    pub streams: [StreamTotals; 2],
    /// Round-trip time, jitter and remote loss over the live streams: `[audio, video]`.
    pub live: [LiveGauges; 2],
    /// Signalling, on SIP backends.
    pub sip: Option<SipMetrics>,
}

/// Gauges over the live streams of one media kind.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LiveGauges {
    /// Streams with a round-trip time measured.
    pub rtt_streams: u64,
    /// Sum of their round-trip times, seconds.
    pub rtt_sum: f64,
    /// The largest, seconds.
    pub rtt_max: f64,
    /// Live streams.
    pub streams: u64,
    /// Sum of their interarrival jitter, seconds.
    pub jitter_sum: f64,
    /// Sum of the loss fractions the peers report (0–1 each).
    pub remote_fraction_lost_sum: f64,
    /// Sum of the congestion-control estimates of the streams that run it, bits per second.
    pub cc_target_bps_sum: f64,
    /// Sum of their pacers' rates, bits per second.
    pub cc_pacer_rate_bps_sum: f64,
}

impl LiveGauges {
    /// Adds one live stream's current values.
    pub(crate) fn add(&mut self, s: &StreamStats) {
        self.streams += 1;
        self.jitter_sum += s.jitter_ms / 1e3;
        self.remote_fraction_lost_sum += s.remote_fraction_lost;
        self.cc_target_bps_sum += s.cc_target_bps as f64;
        self.cc_pacer_rate_bps_sum += s.cc_pacer_rate_bps as f64;
        if s.rtt_ms > 0.0 {
            self.rtt_streams += 1;
            self.rtt_sum += s.rtt_ms / 1e3;
            self.rtt_max = self.rtt_max.max(s.rtt_ms / 1e3);
        }
    }
}

/// The signalling side of a SIP backend.
#[derive(Debug, Clone, Default)]
pub struct SipMetrics {
    /// The counters of `SipBackend::sip_stats`.
    pub stats: crate::backend::SipStats,
    /// Free RTP ports in the backend's pool.
    pub ports_free: u64,
    /// Incoming calls: INVITE received → 200 sent.
    pub setup_incoming: HistogramSnapshot,
    /// Dialed calls: `dial` → 2xx received.
    pub setup_outgoing: HistogramSnapshot,
}

/// Renders the metrics of `backends`, each `(instance name, backend)`, in `format`. The names
/// become the `instance` label; give each backend its own.
pub fn render(backends: &[(&str, &dyn MediaBackend)], format: MetricsFormat) -> String {
    let snaps: Vec<(&str, BackendMetrics)> = backends
        .iter()
        .map(|(name, b)| (*name, b.metrics()))
        .collect();
    render_snapshots(&snaps, format)
}

/// Renders snapshots already taken (see [`render`]).
pub fn render_snapshots(snaps: &[(&str, BackendMetrics)], format: MetricsFormat) -> String {
    let mut w = Writer {
        out: String::with_capacity(16 * 1024),
        format,
    };
    let each = |f: &dyn Fn(&BackendMetrics) -> f64| -> Vec<(Labels, f64)> {
        snaps
            .iter()
            .map(|(n, m)| (Labels::instance(n), f(m)))
            .collect()
    };
    w.family(
        "rkm_sessions",
        Kind::Gauge,
        "Live sessions.",
        &each(&|m| m.sessions as f64),
    );
    w.family(
        "rkm_video_sessions",
        Kind::Gauge,
        "Live sessions that carry video.",
        &each(&|m| m.video_sessions as f64),
    );
    w.family(
        "rkm_sessions_started",
        Kind::Counter,
        "Sessions created.",
        &each(&|m| m.sessions_started as f64),
    );
    w.family(
        "rkm_sessions_ended",
        Kind::Counter,
        "Sessions ended.",
        &each(&|m| m.sessions_ended as f64),
    );
    let per_kind = |f: &dyn Fn(&BackendMetrics, usize) -> f64| -> Vec<(Labels, f64)> {
        let mut v = Vec::with_capacity(snaps.len() * 2);
        for (n, m) in snaps {
            for (k, kind) in ["audio", "video"].iter().enumerate() {
                v.push((Labels::media(n, kind), f(m, k)));
            }
        }
        v
    };
    for (i, c) in crate::engine::stats::STREAM_COUNTERS.iter().enumerate() {
        w.family(
            c.name,
            if c.monotonic {
                Kind::Counter
            } else {
                Kind::Gauge
            },
            c.help,
            &per_kind(&|m, k| m.streams[k].0[i] as f64),
        );
    }
    let mean = |sum: f64, n: u64| if n == 0 { 0.0 } else { sum / n as f64 };
    w.family(
        "rkm_rtp_rtt_mean_seconds",
        Kind::Gauge,
        "Mean round-trip time over the live streams that measured one.",
        &per_kind(&|m, k| mean(m.live[k].rtt_sum, m.live[k].rtt_streams)),
    );
    w.family(
        "rkm_rtp_rtt_max_seconds",
        Kind::Gauge,
        "Largest round-trip time of a live stream.",
        &per_kind(&|m, k| m.live[k].rtt_max),
    );
    w.family(
        "rkm_rtp_jitter_mean_seconds",
        Kind::Gauge,
        "Mean interarrival jitter of the live streams.",
        &per_kind(&|m, k| mean(m.live[k].jitter_sum, m.live[k].streams)),
    );
    w.family(
        "rkm_rtp_remote_fraction_lost_mean",
        Kind::Gauge,
        "Mean fraction of our packets the peers report lost (0-1), over the live streams.",
        &per_kind(&|m, k| mean(m.live[k].remote_fraction_lost_sum, m.live[k].streams)),
    );
    w.family(
        "rkm_rtp_cc_target_bitrate",
        Kind::Gauge,
        "Sum of the congestion-control estimates of the live streams that run it, bits per second.",
        &per_kind(&|m, k| m.live[k].cc_target_bps_sum),
    );
    w.family(
        "rkm_rtp_cc_pacer_bitrate",
        Kind::Gauge,
        "Sum of the pacer rates congestion control sets on the live streams, bits per second.",
        &per_kind(&|m, k| m.live[k].cc_pacer_rate_bps_sum),
    );

    let sips: Vec<(&str, &SipMetrics)> = snaps
        .iter()
        .filter_map(|(n, m)| m.sip.as_ref().map(|s| (*n, s)))
        .collect();
    if !sips.is_empty() {
        let sip = |f: &dyn Fn(&SipMetrics) -> u64| -> Vec<(Labels, f64)> {
            sips.iter()
                .map(|(n, s)| (Labels::instance(n), f(s) as f64))
                .collect()
        };
        type Read = dyn Fn(&SipMetrics) -> u64;
        let counters: [(&str, &str, &Read); 21] = [
            (
                "rkm_sip_datagrams_received",
                "SIP datagrams received.",
                &|s| s.stats.received,
            ),
            (
                "rkm_sip_requests_rejected",
                "Requests answered 400/416/505 by the parser's checks.",
                &|s| s.stats.rejected,
            ),
            (
                "rkm_sip_datagrams_dropped",
                "SIP datagrams dropped as unanswerable.",
                &|s| s.stats.dropped,
            ),
            ("rkm_calls_answered", "Incoming calls answered 200.", &|s| {
                s.stats.calls_answered
            }),
            ("rkm_calls_dialed", "Calls placed.", &|s| {
                s.stats.calls_dialed
            }),
            ("rkm_calls_ended", "Calls ended, either side.", &|s| {
                s.stats.calls_ended
            }),
            (
                "rkm_calls_refused",
                "INVITEs refused with a final error (any status).",
                &|s| s.stats.calls_refused,
            ),
            (
                "rkm_calls_refused_overload",
                "INVITEs refused with 503 (no free session or port, overload).",
                &|s| s.stats.calls_refused_overload,
            ),
            (
                "rkm_calls_refused_sip_backlog",
                "INVITEs refused with 503 while the SIP thread's input was backed up.",
                &|s| s.stats.calls_refused_sip_backlog,
            ),
            (
                "rkm_calls_refused_setup_queue",
                "INVITEs refused with 503 while the media sessions being started would delay them.",
                &|s| s.stats.calls_refused_setup_queue,
            ),
            (
                "rkm_calls_refused_capacity",
                "INVITEs refused with 503 for want of a session or RTP port.",
                &|s| s.stats.calls_refused_capacity,
            ),
            (
                "rkm_sip_requests_rate_limited",
                "Out-of-dialog requests answered 503 for their source's rate.",
                &|s| s.stats.requests_rate_limited,
            ),
            (
                "rkm_stun_srflx_gathered",
                "Media sockets that learnt their server-reflexive address from the STUN server.",
                &|s| s.stats.srflx_gathered,
            ),
            (
                "rkm_stun_srflx_failed",
                "Media sockets whose STUN binding failed (host candidate only).",
                &|s| s.stats.srflx_failed,
            ),
            (
                "rkm_rtp_ports_busy",
                "Pool RTP ports found bound by something else and skipped.",
                &|s| s.stats.rtp_ports_busy,
            ),
            (
                "rkm_sip_bye_timeouts",
                "Our BYEs that got no answer.",
                &|s| s.stats.bye_timeouts,
            ),
            (
                "rkm_sip_connections_opened",
                "SIP TCP/TLS connections accepted or opened.",
                &|s| s.stats.connections_opened,
            ),
            (
                "rkm_sip_connections_cut",
                "SIP connections cut for breaking a limit.",
                &|s| s.stats.connections_cut,
            ),
            (
                "rkm_sip_connections_refused",
                "SIP connections refused or that could not be opened.",
                &|s| s.stats.connections_refused,
            ),
            (
                "rkm_sip_tls_failures",
                "TLS handshakes or records that failed.",
                &|s| s.stats.tls_failures,
            ),
            (
                "rkm_sip_stream_send_failures",
                "SIP messages for a TCP/TLS peer that could not be sent.",
                &|s| s.stats.stream_send_failures,
            ),
        ];
        for (name, help, f) in counters {
            w.family(name, Kind::Counter, help, &sip(f));
        }
        w.family(
            "rkm_rtp_ports_free",
            Kind::Gauge,
            "Free RTP ports in the pool.",
            &sip(&|s| s.ports_free),
        );
        let mut hist = Vec::with_capacity(sips.len() * 2);
        for (n, s) in &sips {
            hist.push((Labels::direction(n, "incoming"), s.setup_incoming));
            hist.push((Labels::direction(n, "outgoing"), s.setup_outgoing));
        }
        w.histogram(
            "rkm_call_setup_seconds",
            "Call setup time: INVITE received to 200 sent (incoming), dial to 2xx received (outgoing).",
            &hist,
        );
    }
    if format == MetricsFormat::OpenMetrics {
        w.out.push_str("# EOF\n");
    }
    w.out
}

/// A metric family's type.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

/// The labels of one sample: the instance, and the media kind or call direction.
struct Labels<'a> {
    instance: &'a str,
    extra: Option<(&'static str, &'a str)>,
}

impl<'a> Labels<'a> {
    fn instance(instance: &'a str) -> Self {
        Labels {
            instance,
            extra: None,
        }
    }

    fn media(instance: &'a str, kind: &'a str) -> Self {
        Labels {
            instance,
            extra: Some(("media", kind)),
        }
    }

    fn direction(instance: &'a str, d: &'a str) -> Self {
        Labels {
            instance,
            extra: Some(("direction", d)),
        }
    }
}

/// Writes families in one format.
struct Writer {
    out: String,
    format: MetricsFormat,
}

impl Writer {
    /// `# HELP` and `# TYPE` for family `name` (its samples named `name` + `suffix`).
    fn header(&mut self, name: &str, kind: &str, suffix: &str, help: &str) {
        // Prometheus 0.0.4 names the family as its samples are named; OpenMetrics names a
        // counter without `_total`.
        let named = match self.format {
            MetricsFormat::Prometheus => suffix,
            MetricsFormat::OpenMetrics => "",
        };
        let _ = write!(self.out, "# HELP {name}{named} ");
        escape(&mut self.out, help, false);
        let _ = writeln!(self.out, "\n# TYPE {name}{named} {kind}");
    }

    fn family(&mut self, name: &str, kind: Kind, help: &str, samples: &[(Labels, f64)]) {
        let (type_name, suffix) = match kind {
            Kind::Counter => ("counter", "_total"),
            Kind::Gauge => ("gauge", ""),
        };
        self.header(name, type_name, suffix, help);
        for (labels, v) in samples {
            self.sample(name, suffix, labels, None, *v);
        }
    }

    fn histogram(&mut self, name: &str, help: &str, samples: &[(Labels, HistogramSnapshot)]) {
        self.header(name, "histogram", "", help);
        for (labels, h) in samples {
            let mut cumulative = 0u64;
            for (i, n) in h.buckets.iter().enumerate() {
                cumulative += n;
                let le = SETUP_BUCKETS
                    .get(i)
                    .map_or("+Inf".to_string(), |b| float(*b));
                self.sample(name, "_bucket", labels, Some(&le), cumulative as f64);
            }
            self.sample(name, "_sum", labels, None, h.sum_seconds);
            self.sample(name, "_count", labels, None, h.count as f64);
        }
    }

    fn sample(&mut self, name: &str, suffix: &str, l: &Labels, le: Option<&str>, v: f64) {
        let _ = write!(self.out, "{name}{suffix}{{instance=\"");
        escape(&mut self.out, l.instance, true);
        self.out.push('"');
        if let Some((k, val)) = l.extra {
            let _ = write!(self.out, ",{k}=\"");
            escape(&mut self.out, val, true);
            self.out.push('"');
        }
        if let Some(le) = le {
            let _ = write!(self.out, ",le=\"{le}\"");
        }
        let _ = writeln!(self.out, "}} {}", float(v));
    }
}

/// A sample value: integers without a fraction, others as Rust prints them (never an exponent).
fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// Escapes `\`, newline and (in label values) `"` as both formats require.
fn escape(out: &mut String, s: &str, quote: bool) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn congestion_control_counters_and_estimates_are_rendered() {
        let s = StreamStats {
            cc_target_bps: 1_200_000,
            cc_pacer_rate_bps: 1_200_000,
            cc_pictures_dropped: 7,
            cc_feedback_sent: 11,
            cc_feedback_received: 13,
            ..StreamStats::default()
        };
        let mut m = BackendMetrics::default();
        m.streams[1].add(&s);
        m.streams[1].add(&s);
        m.live[1].add(&s);
        let text = render_snapshots(&[("a", m)], MetricsFormat::Prometheus);
        for line in [
            "rkm_rtp_cc_pictures_dropped_total{instance=\"a\",media=\"video\"} 14\n",
            "rkm_rtp_cc_feedback_sent_total{instance=\"a\",media=\"video\"} 22\n",
            "rkm_rtp_cc_feedback_received_total{instance=\"a\",media=\"video\"} 26\n",
            "rkm_rtp_cc_feedback_sent_total{instance=\"a\",media=\"audio\"} 0\n",
            "rkm_rtp_cc_target_bitrate{instance=\"a\",media=\"video\"} 1200000\n",
            "rkm_rtp_cc_pacer_bitrate{instance=\"a\",media=\"video\"} 1200000\n",
            "# TYPE rkm_rtp_cc_target_bitrate gauge\n",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_bounded() {
        let h = SetupHistogram::default();
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(30));
        h.observe(Duration::from_secs(60));
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.buckets[0], 1);
        assert_eq!(s.buckets[5], 1, "30 ms falls in the 50 ms bucket");
        assert_eq!(
            s.buckets[SETUP_BUCKETS.len()],
            1,
            "60 s beyond the last bound"
        );
        let text = render_snapshots(
            &[(
                "a\"b",
                BackendMetrics {
                    sip: Some(SipMetrics {
                        setup_incoming: s,
                        ..SipMetrics::default()
                    }),
                    ..BackendMetrics::default()
                },
            )],
            MetricsFormat::Prometheus,
        );
        assert!(text.contains(
            "rkm_call_setup_seconds_bucket{instance=\"a\\\"b\",direction=\"incoming\",le=\"0.05\"} 2\n"
        ));
        assert!(text.contains(
            "rkm_call_setup_seconds_bucket{instance=\"a\\\"b\",direction=\"incoming\",le=\"+Inf\"} 3\n"
        ));
        assert!(text.contains("# TYPE rkm_calls_answered_total counter\n"));
        let om = render_snapshots(
            &[("x", BackendMetrics::default())],
            MetricsFormat::OpenMetrics,
        );
        assert!(om.contains(
            "# TYPE rkm_sessions_started counter\nrkm_sessions_started_total{instance=\"x\"} 0\n"
        ));
        assert!(om.ends_with("# EOF\n"));
        assert!(
            !om.contains("rkm_calls_answered"),
            "no SIP families on an RTP backend"
        );
    }
}
