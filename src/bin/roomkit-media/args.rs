//! A small, strict argument parser: `--name value` options, `--flag` switches and positionals.
//! Anything unknown or malformed is an error that names the offending argument.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::str::FromStr;
use std::time::Duration;

use roomkit_media::backend::{NackConfig, PacerConfig, ResilienceConfig};

/// The parsed arguments of one subcommand.
pub struct Args {
    /// Every value given per option, in order (most options take one; the last wins).
    options: HashMap<&'static str, Vec<String>>,
    pub positionals: Vec<String>,
}

/// What a subcommand accepts.
pub struct Spec {
    /// Options that take a value.
    pub options: &'static [&'static str],
    /// Options that take no value.
    pub switches: &'static [&'static str],
}

impl Args {
    /// Parses `argv` against `spec`.
    pub fn parse(argv: &[String], spec: &Spec) -> Result<Args, String> {
        let mut options = HashMap::new();
        let mut positionals = Vec::new();
        let mut it = argv.iter();
        while let Some(a) = it.next() {
            if let Some(name) = a.strip_prefix("--") {
                let (name, inline) = match name.split_once('=') {
                    Some((n, v)) => (n, Some(v.to_string())),
                    None => (name, None),
                };
                if let Some(&known) = spec.options.iter().find(|&&o| o == name) {
                    let value = match inline {
                        Some(v) => v,
                        None => it
                            .next()
                            .ok_or_else(|| format!("--{name} needs a value"))?
                            .clone(),
                    };
                    options.entry(known).or_insert_with(Vec::new).push(value);
                } else if let Some(&known) = spec.switches.iter().find(|&&s| s == name) {
                    if inline.is_some() {
                        return Err(format!("--{name} takes no value"));
                    }
                    // A switch is an option with an empty value.
                    options.insert(known, vec![String::new()]);
                } else {
                    return Err(format!("unknown option --{name}"));
                }
            } else {
                positionals.push(a.clone());
            }
        }
        Ok(Args {
            options,
            positionals,
        })
    }

    /// The raw value of `--name`, if given (the last one when repeated).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.options
            .get(name)
            .and_then(|v| v.last())
            .map(String::as_str)
    }

    /// Every value of a repeatable `--name`, in order.
    pub fn all(&self, name: &str) -> &[String] {
        self.options.get(name).map_or(&[], Vec::as_slice)
    }

    /// `--name` parsed as a `T`, or `default` when absent.
    pub fn num<T: FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{name}: `{v}` is not a valid number")),
        }
    }

    /// `--name` resolved as a socket address (`HOST:PORT`), if given.
    pub fn addr(&self, name: &str) -> Result<Option<SocketAddr>, String> {
        self.get(name)
            .map(|v| resolve(v).map_err(|e| format!("--{name}: {e}")))
            .transpose()
    }
}

/// Resolves `HOST:PORT` (numeric or a name such as `localhost`) to its first address.
pub fn resolve(v: &str) -> Result<SocketAddr, String> {
    v.to_socket_addrs()
        .map_err(|e| format!("`{v}` is not a usable HOST:PORT ({e})"))?
        .next()
        .ok_or_else(|| format!("`{v}` resolves to no address"))
}

/// `--rtx-pt N`: the RFC 4588 retransmission payload type of `send` and `recv` (absent: lost
/// packets are re-sent as they were). It must differ from the media payload type `pt`.
pub fn rtx_arg(args: &Args, pt: u8) -> Result<Option<u8>, String> {
    let Some(v) = args.get("rtx-pt") else {
        return Ok(None);
    };
    match v.parse::<u8>() {
        Ok(rtx) if rtx <= 127 && rtx != pt => Ok(Some(rtx)),
        _ => Err(format!(
            "--rtx-pt: `{v}` is not an RTP payload type (0-127) other than --pt {pt}"
        )),
    }
}

/// Loss recovery of a SIP call's media from `--no-nack`, `--no-pacing`, `--audio-jitter MS`
/// (0: deliver audio as it arrives) and `--inactivity S` (0: never end a call on silence), and
/// whether to offer RTX (`--no-rtx`). `call` and `serve` both take these (in their `Spec`s).
pub fn sip_media(args: &Args) -> Result<(ResilienceConfig, bool), String> {
    let d = ResilienceConfig::default();
    let inactivity: f64 = args.num("inactivity", d.inactivity_timeout.as_secs_f64())?;
    if !(0.0..=86_400.0).contains(&inactivity) {
        return Err(format!(
            "--inactivity: {inactivity} is outside 0..=86400 seconds"
        ));
    }
    let audio_jitter_ms: u32 = args.num("audio-jitter", d.audio_jitter_ms)?;
    if audio_jitter_ms > 1000 {
        return Err(format!(
            "--audio-jitter: {audio_jitter_ms} ms is more than the 1000 ms allowed"
        ));
    }
    let resilience = ResilienceConfig {
        nack: NackConfig {
            enabled: args.get("no-nack").is_none(),
            ..d.nack
        },
        pacer: PacerConfig {
            enabled: args.get("no-pacing").is_none(),
            ..d.pacer
        },
        audio_jitter_ms,
        inactivity_timeout: Duration::from_secs_f64(inactivity),
        ..d
    };
    Ok((resilience, args.get("no-rtx").is_none()))
}
