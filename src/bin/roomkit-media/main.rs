//! The roomkit-media command line: `demo`, `serve`, `call`, `send`, `recv` and `netsim`.
//! Exit codes: 0 success, 1 the media did not flow as asked (or a call failed), 2 bad arguments
//! or files. Only bad arguments print the usage text.

mod args;
mod call;
mod demo;
mod link;
mod media_file;
mod netsim;
mod output;
mod progress;
mod recv;
mod send;
mod serve;
mod signals;

use std::process::ExitCode;

const USAGE: &str = "\
usage:
  roomkit-media send --to HOST:PORT FILE [--codec h264|vp8] [--pt N] [--mtu N] [--fps N] [--rtx-pt N]
                     [--linger SECONDS] [--no-pacing] [--pace-max-kbps N] [--rtcp-mux] [--bind HOST:PORT]
  roomkit-media recv --listen HOST:PORT --out FILE [--codec h264|vp8] [--pt N] [--frames N] [--timeout SECONDS]
                     [--rtx-pt N] [--no-nack] [--rtcp-mux]
  roomkit-media serve --sip ADDR [--rtp-ip IP] [--rtp-ports A-B] [--video-codecs H264,VP8] [--audio-codecs opus,G722,PCMU,PCMA] [--record DIR] [--echo] [--max-calls N] [--answer-after MS] [--hangup-after MS]
                      [--register sip:USER@HOST[:PORT] [--auth-user U] --password P [--expires S] [--proxy HOST:PORT]]
                      [--no-pacing] [--no-nack] [--no-rtx] [--audio-jitter MS] [--inactivity S]
  roomkit-media demo [--seconds S]
  roomkit-media call sip:USER@HOST[:PORT] [--proxy HOST:PORT] [--auth-user U --password P] [--from URI]
                     [--video FILE] [--seconds S] [--fps N] [--ring-timeout S] [--audio-only]
                     [--no-pacing] [--no-nack] [--no-rtx] [--audio-jitter MS] [--inactivity S]
                     [--audio-codec opus|g722|pcmu|pcma]
  roomkit-media netsim --pipe LISTEN=TARGET[/BACK][@VIA] [--pipe ...] [--loss PCT] [--burst N] [--delay MS] [--jitter MS]
                       [--reorder PCT] [--reorder-ms MS] [--duplicate PCT] [--seed N] [--seconds S] [--idle S]
";

/// Why a command did not succeed.
#[derive(Debug)]
pub enum Failure {
    /// Bad arguments: the message and the usage text, exit code 2.
    Usage(String),
    /// The command ran and failed (a call refused, a port taken): the message, exit code 1.
    Runtime(String),
}

impl From<String> for Failure {
    fn from(msg: String) -> Failure {
        Failure::Usage(msg)
    }
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = argv.split_first() else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    let result = match cmd.as_str() {
        "-h" | "--help" | "help" => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        "send" => run_media(rest, &send::SPEC, send::run).map_err(Failure::from),
        "recv" => run_media(rest, &recv::SPEC, recv::run).map_err(Failure::from),
        "serve" => args::Args::parse(rest, &serve::SPEC)
            .map_err(Failure::from)
            .and_then(|a| serve::run(&a)),
        "demo" => args::Args::parse(rest, &demo::SPEC)
            .and_then(|a| demo::run(&a))
            .map_err(Failure::from),
        "call" => args::Args::parse(rest, &call::SPEC)
            .map_err(Failure::from)
            .and_then(|a| call::run(&a)),
        "netsim" => args::Args::parse(rest, &netsim::SPEC)
            .and_then(|a| netsim::run(&a))
            .map_err(Failure::from),
        other => Err(Failure::Usage(format!("unknown command `{other}`"))),
    };
    match result {
        Ok(code) => code,
        Err(Failure::Usage(msg)) => {
            eprintln!("roomkit-media: {msg}\n{USAGE}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(msg)) => {
            eprintln!("roomkit-media: {msg}");
            ExitCode::from(1)
        }
    }
}

/// Runs `send` or `recv`: bad arguments are exit code 2, and the stats line ends the output.
fn run_media(
    argv: &[String],
    spec: &args::Spec,
    f: fn(&args::Args) -> Result<progress::Stats, String>,
) -> Result<ExitCode, String> {
    let a = args::Args::parse(argv, spec)?;
    let stats = f(&a)?;
    println!("{}", stats.json());
    Ok(ExitCode::SUCCESS)
}
