//! What the subcommands share in their arguments: value parsers with range checks (clap calls
//! them while parsing, so a bad value is reported with the option's name and the usage line),
//! the congestion-control options of `send`, `call` and `serve`, and the loss-recovery options
//! of `call` and `serve`.

use std::fmt::{self, Display};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::Args;
use roomkit_media::backend::{
    CongestionConfig, FecConfig, NackConfig, PacerConfig, ResilienceConfig,
};
use roomkit_media::{DtlsSrtpPolicy, SrtpKey, SrtpKeys, SrtpPolicy, SrtpSuite};
use zeroize::Zeroizing;

/// Resolves `HOST:PORT` (numeric or a name such as `localhost`) to its first address.
pub fn resolve(v: &str) -> Result<SocketAddr, String> {
    v.to_socket_addrs()
        .map_err(|e| format!("`{v}` is not a usable HOST:PORT ({e})"))?
        .next()
        .ok_or_else(|| format!("`{v}` resolves to no address"))
}

/// `A-B`: the RTP ports a command takes its calls' ports from (`--rtp-ports`), `A` below `B`.
pub fn port_range(v: &str) -> Result<(u16, u16), String> {
    let (a, b) = v
        .split_once('-')
        .ok_or_else(|| format!("`{v}` is not A-B"))?;
    let p = |s: &str| {
        s.trim()
            .parse::<u16>()
            .map_err(|_| format!("`{s}` is not a port"))
    };
    let (a, b) = (p(a)?, p(b)?);
    if a >= b {
        return Err(format!("{a} is not below {b}"));
    }
    Ok((a, b))
}

/// A number in `lo..=hi`; `unit` ends the message (" seconds", " ms" or "").
///
/// Returns a closure so an option names its range where it is declared:
/// `#[arg(value_parser = within(0.0, 60.0, " seconds"))]`.
pub fn within<T>(
    lo: T,
    hi: T,
    unit: &'static str,
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    T: FromStr + PartialOrd + Display + Copy + Send + Sync + 'static,
{
    move |v: &str| {
        let n: T = v
            .parse()
            .map_err(|_| format!("`{v}` is not a valid number"))?;
        // `contains` is false for NaN, which is refused too.
        if (lo..=hi).contains(&n) {
            Ok(n)
        } else {
            Err(format!("{n} is outside {lo}..={hi}{unit}"))
        }
    }
}

/// A number of at least `lo`.
pub fn at_least(
    lo: f64,
    unit: &'static str,
) -> impl Fn(&str) -> Result<f64, String> + Clone + Send + Sync + 'static {
    move |v: &str| match v.parse::<f64>() {
        Ok(n) if n >= lo => Ok(n),
        _ => Err(format!("`{v}` is not a number of at least {lo}{unit}")),
    }
}

/// An RTP payload type, 0-127.
pub fn payload_type(v: &str) -> Result<u8, String> {
    within(0u8, 127, "")(v).map_err(|_| format!("`{v}` is not an RTP payload type (0-127)"))
}

/// `--rtx-pt N` of `send` and `recv` (absent: lost packets are re-sent as they were). RFC 4588
/// needs it to differ from the media payload type, a check across two options made here.
pub fn rtx_payload_type(rtx: Option<u8>, pt: u8) -> Result<Option<u8>, String> {
    match rtx {
        Some(r) if r == pt => Err(format!(
            "--rtx-pt: {r} is the media payload type (--pt {pt}); RTX needs its own"
        )),
        other => Ok(other),
    }
}

/// `--fec` of `send` and `recv`: ULPFEC in RED, on payload types (default RED 123, ULPFEC 122)
/// that both ends must be given alike, since no SDP agrees on them.
#[derive(Args, Debug, Clone, Default)]
pub struct FecArgs {
    /// Forward error correction on the video (ULPFEC in RED, payload types --fec-red-pt and
    /// --fec-ulpfec-pt): lost packets rebuilt without a round trip. Give it to both ends.
    #[arg(long)]
    pub fec: bool,
    /// RED payload type with --fec.
    #[arg(long, value_name = "N", default_value_t = FecConfig::default().red_payload_type,
          value_parser = payload_type)]
    pub fec_red_pt: u8,
    /// ULPFEC payload type with --fec.
    #[arg(long, value_name = "N", default_value_t = FecConfig::default().ulpfec_payload_type,
          value_parser = payload_type)]
    pub fec_ulpfec_pt: u8,
}

impl FecArgs {
    /// The backend's `video_fec` setting (its payload types checked when the backend starts).
    pub fn config(&self) -> Option<FecConfig> {
        self.fec.then(|| FecConfig {
            red_payload_type: self.fec_red_pt,
            ulpfec_payload_type: self.fec_ulpfec_pt,
            ..FecConfig::default()
        })
    }
}

/// Congestion control's options: `send`, `call` and `serve` take these.
#[derive(Args, Debug, Clone)]
pub struct CcArgs {
    /// Congestion control: stamp transport-wide sequence numbers, estimate the path's bandwidth
    /// from the receiver's feedback, pace at the estimate and drop whole pictures rather than
    /// queue more than two picture intervals. The receiver must run it too (`recv --cc`; in a
    /// SIP call, transport-cc is offered and runs when the peer accepts it).
    #[arg(long)]
    pub cc: bool,
    /// Congestion control's estimate before any feedback, in kbit/s.
    #[arg(long, value_name = "N", value_parser = at_least(64.0, " kbit/s"),
          default_value_t = CongestionConfig::default().start_bps as f64 / 1000.0)]
    pub cc_start_kbps: f64,
    /// The most congestion control's estimate may reach, in kbit/s.
    #[arg(long, value_name = "N", value_parser = at_least(64.0, " kbit/s"),
          default_value_t = CongestionConfig::default().max_bps as f64 / 1000.0)]
    pub cc_max_kbps: f64,
}

impl CcArgs {
    /// The congestion settings the flags ask for; `force` turns it on without `--cc` (a
    /// command that needs it, `send --ladder`).
    pub fn config(&self, force: bool) -> Result<CongestionConfig, String> {
        let c = CongestionConfig {
            enabled: self.cc || force,
            start_bps: (self.cc_start_kbps * 1000.0) as u64,
            max_bps: (self.cc_max_kbps * 1000.0) as u64,
            ..CongestionConfig::default()
        };
        if c.start_bps > c.max_bps {
            return Err(format!(
                "--cc-start-kbps {} is above --cc-max-kbps {}",
                c.start_bps / 1000,
                c.max_bps / 1000
            ));
        }
        Ok(c)
    }
}

/// Loss recovery of a SIP call's media: `call` and `serve` both take these.
#[derive(Args, Debug, Clone)]
pub struct SipMediaArgs {
    /// Do not pace video (a large key picture leaves in one burst).
    #[arg(long)]
    pub no_pacing: bool,
    /// Do not ask for lost video packets again (nor offer NACK in SDP).
    #[arg(long)]
    pub no_nack: bool,
    /// Do not offer or accept RTX (RFC 4588): lost packets are re-sent as they were.
    #[arg(long)]
    pub no_rtx: bool,
    /// Offer and accept forward error correction on video (ULPFEC in RED): lost packets rebuilt
    /// without a round trip, sized from the peer's reported loss and the RTT.
    #[arg(long)]
    pub fec: bool,
    /// Audio jitter buffer depth (0: deliver audio as it arrives).
    #[arg(long, value_name = "MS", default_value_t = ResilienceConfig::default().audio_jitter_ms,
          value_parser = within(0u32, 1000, " ms"))]
    pub audio_jitter: u32,
    /// End a call after this long without media (0: never end a call on silence).
    #[arg(long, value_name = "S", allow_negative_numbers = true,
          default_value_t = ResilienceConfig::default().inactivity_timeout.as_secs_f64(),
          value_parser = within(0.0, 86_400.0, " seconds"))]
    pub inactivity: f64,
    /// SRTP with SDES keys: off, optional (offer RTP/AVP with crypto lines, take either) or
    /// mandatory (RTP/SAVP only; a plain offer is refused with 488).
    #[arg(long, value_name = "off|optional|mandatory", default_value = "off",
          value_parser = srtp_policy)]
    pub srtp: SrtpPolicy,
    /// The SRTP suites, comma-separated, in order of preference: offers list exactly these, an
    /// answer takes the first of them the offer has; none in common means no SRTP (488 when
    /// mandatory). Names: AES_CM_128_HMAC_SHA1_80, AES_CM_128_HMAC_SHA1_32, AEAD_AES_128_GCM.
    /// Default: all three, AES_CM_128_HMAC_SHA1_80 first, then AEAD_AES_128_GCM.
    #[arg(long, value_name = "LIST", value_parser = srtp_suites)]
    pub srtp_suites: Option<SrtpSuites>,
    #[command(flatten)]
    pub cc: CcArgs,
    /// DTLS-SRTP (keys from a DTLS handshake on the media socket, checked against the peer's
    /// SDP fingerprint): off, optional (offer our fingerprint beside what --srtp offers; take
    /// DTLS-SRTP when the peer's offer has a fingerprint) or mandatory (UDP/TLS/RTP/SAVPF
    /// only; an offer without a fingerprint is refused with 488).
    #[arg(long, value_name = "off|optional|mandatory", default_value = "off",
          value_parser = dtls_srtp_policy)]
    pub dtls_srtp: DtlsSrtpPolicy,
    /// ICE on DTLS-SRTP streams (with --dtls-srtp optional or mandatory): offer and answer ICE
    /// credentials and our host candidate, and run connectivity checks with a peer that has
    /// ICE too. No BUNDLE: each stream has its own port.
    #[arg(long)]
    pub ice: bool,
    /// A STUN server for server-reflexive candidates (with --ice): each call's media sockets
    /// ask it for their public address (at most 0.5 s) and offer it as a `srflx` candidate.
    #[arg(long, value_name = "HOST:PORT", value_parser = resolve)]
    pub stun: Option<SocketAddr>,
    /// A TURN server (UDP) for relayed candidates (with --ice): each call's media sockets
    /// allocate a relayed address on it (at most 1.5 s) and offer it as a `relay` candidate.
    #[arg(long, value_name = "turn:HOST:PORT", value_parser = turn_server)]
    pub turn: Option<SocketAddr>,
    /// The TURN username (long-term credentials).
    #[arg(long, value_name = "USER", default_value = "", requires = "turn")]
    pub turn_user: String,
    /// The TURN password.
    #[arg(long, value_name = "PASSWORD", default_value = "", requires = "turn")]
    pub turn_password: String,
    /// Offer the relayed candidate alone (no host or srflx candidates): media always goes
    /// through the TURN server (WebRTC's `iceTransportPolicy: "relay"`).
    #[arg(long, requires = "turn")]
    pub turn_relay_only: bool,
}

/// `--turn turn:HOST:PORT` (the `turn:` scheme optional; UDP only).
fn turn_server(v: &str) -> Result<SocketAddr, String> {
    let hostport = v.strip_prefix("turn:").unwrap_or(v);
    let hostport = hostport.strip_suffix("?transport=udp").unwrap_or(hostport);
    resolve(hostport)
}

/// `--dtls-srtp off|optional|mandatory`.
fn dtls_srtp_policy(name: &str) -> Result<DtlsSrtpPolicy, String> {
    DtlsSrtpPolicy::from_name(name)
        .ok_or_else(|| format!("{name:?}: expected off, optional or mandatory"))
}

/// The `--srtp-suites` list, in order.
#[derive(Clone, Debug)]
pub struct SrtpSuites(pub Vec<SrtpSuite>);

/// `--srtp-suites NAME,NAME...`.
fn srtp_suites(list: &str) -> Result<SrtpSuites, String> {
    SrtpSuite::parse_list(list).map(SrtpSuites)
}

/// `--srtp off|optional|mandatory`.
fn srtp_policy(name: &str) -> Result<SrtpPolicy, String> {
    SrtpPolicy::from_name(name)
        .ok_or_else(|| format!("{name:?}: expected off, optional or mandatory"))
}

/// `send` and `recv`'s SRTP key: one pre-shared key, given as `SUITE:BASE64` on the command
/// line or in a file. Both ends take the same key and use it both ways (media one way, RTCP
/// the other): each end's packets carry their own SSRC, which SRTP mixes into the keystream.
#[derive(Args, Debug, Clone, Default)]
pub struct SrtpKeyArgs {
    /// Protect the stream with SRTP (RTP and RTCP) under this pre-shared key: the SDES suite
    /// name (AES_CM_128_HMAC_SHA1_80, AES_CM_128_HMAC_SHA1_32 or AEAD_AES_128_GCM), a colon,
    /// and base64 of master key and salt (30 bytes; 28 for GCM), as in SDP's
    /// `a=crypto:1 SUITE inline:BASE64`. Make one with `head -c 30 /dev/urandom | base64`.
    /// Other local users can read a command line: prefer --srtp-key-file.
    #[arg(long, value_name = "SUITE:BASE64", conflicts_with = "srtp_key_file")]
    pub srtp_key: Option<Secret>,
    /// As --srtp-key, read from FILE (one `SUITE:BASE64` line).
    #[arg(long, value_name = "FILE")]
    pub srtp_key_file: Option<PathBuf>,
}

/// Key text from the command line: cleared when dropped, and `Debug` does not show it.
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

impl From<String> for Secret {
    fn from(s: String) -> Secret {
        Secret(Zeroizing::new(s))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl SrtpKeyArgs {
    /// The session's keys (the same key both ways), or `None` for plain RTP. Errors name the
    /// option and never quote the key.
    pub fn keys(&self) -> Result<Option<SrtpKeys>, String> {
        let (text, origin) = match (&self.srtp_key, &self.srtp_key_file) {
            (Some(k), _) => (k.0.clone(), "--srtp-key".to_string()),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("--srtp-key-file: cannot read {}: {e}", path.display()))?;
                (
                    Zeroizing::new(text),
                    format!("--srtp-key-file {}", path.display()),
                )
            }
            (None, None) => return Ok(None),
        };
        let key = parse_srtp_key(text.trim()).map_err(|why| format!("{origin}: {why}"))?;
        Ok(Some(SrtpKeys {
            send: key.clone(),
            recv: key,
        }))
    }
}

/// `SUITE:BASE64` (the base64 may keep SDP's `inline:` prefix).
fn parse_srtp_key(text: &str) -> Result<SrtpKey, String> {
    let (suite, key) = text
        .split_once(':')
        .ok_or("expected SUITE:BASE64, such as AES_CM_128_HMAC_SHA1_80:<40 base64 characters>")?;
    let suite = SrtpSuite::from_sdes_text(suite)?;
    SrtpKey::from_sdes_text(suite, key).map_err(|why| format!("the key is {why}"))
}

impl SipMediaArgs {
    /// The SRTP suites to offer and accept, in order: `--srtp-suites`, else every suite.
    pub fn srtp_suites(&self) -> Vec<SrtpSuite> {
        match &self.srtp_suites {
            Some(SrtpSuites(list)) => list.clone(),
            None => SrtpSuite::ALL.to_vec(),
        }
    }

    /// The media's `ResilienceConfig`, and whether to offer RTX.
    pub fn resilience(&self) -> Result<(ResilienceConfig, bool), String> {
        let d = ResilienceConfig::default();
        let resilience = ResilienceConfig {
            nack: NackConfig {
                enabled: !self.no_nack,
                ..d.nack
            },
            pacer: PacerConfig {
                enabled: !self.no_pacing,
                ..d.pacer
            },
            audio_jitter_ms: self.audio_jitter,
            inactivity_timeout: Duration::from_secs_f64(self.inactivity),
            congestion: self.cc.config(false)?,
            ..d
        };
        Ok((resilience, !self.no_rtx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_refuse_what_is_outside_and_what_is_not_a_number() {
        let secs = within(0.0, 60.0, " seconds");
        assert_eq!(secs("0"), Ok(0.0));
        assert_eq!(secs("60"), Ok(60.0));
        assert_eq!(secs("61").unwrap_err(), "61 is outside 0..=60 seconds");
        assert!(secs("NaN").is_err());
        assert!(secs("soon").unwrap_err().contains("not a valid number"));
        assert_eq!(payload_type("127"), Ok(127));
        assert!(payload_type("128").is_err());
        assert!(rtx_payload_type(Some(96), 96).is_err());
        assert_eq!(rtx_payload_type(Some(97), 96), Ok(Some(97)));
        assert_eq!(rtx_payload_type(None, 96), Ok(None));
    }

    #[test]
    fn srtp_keys_read_as_suite_colon_base64() {
        const KEY: &str = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";
        let args = |k: &str| SrtpKeyArgs {
            srtp_key: Some(k.to_string().into()),
            srtp_key_file: None,
        };
        assert_eq!(SrtpKeyArgs::default().keys(), Ok(None));
        let keys = args(&format!("AES_CM_128_HMAC_SHA1_32:{KEY}"))
            .keys()
            .unwrap()
            .unwrap();
        assert_eq!(keys.suite(), SrtpSuite::AesCm128HmacSha1_32);
        assert_eq!(keys.send, keys.recv);
        assert!(args(&format!("AES_CM_128_HMAC_SHA1_80:inline:{KEY}\n"))
            .keys()
            .is_ok());
        for (bad, why) in [
            (KEY.to_string(), "expected SUITE:BASE64"),
            (
                format!("AES_CM_128_HMAC_SHA1_99:{KEY}"),
                "not an SRTP suite",
            ),
            (format!("AEAD_AES_128_GCM:{KEY}"), "not base64 of 28 bytes"),
            (format!("AES_CM_128_HMAC_SHA1_80:{}", &KEY[4..]), "30 bytes"),
        ] {
            let e = args(&bad).keys().unwrap_err();
            assert!(
                e.starts_with("--srtp-key: ") && e.contains(why),
                "{bad}: {e}"
            );
            assert!(!e.contains(&KEY[4..12]), "{e}");
        }
        assert!(!format!("{:?}", args(KEY)).contains(KEY));
        let missing = SrtpKeyArgs {
            srtp_key: None,
            srtp_key_file: Some("/nonexistent/key".into()),
        };
        assert!(missing
            .keys()
            .unwrap_err()
            .contains("--srtp-key-file: cannot read"));
    }
}
