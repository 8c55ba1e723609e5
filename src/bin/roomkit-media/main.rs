//! The roomkit-media command line: `demo`, `serve`, `call`, `send`, `recv`, `netsim` and `bench`, plus
//! `completions SHELL`. Exit codes: 0 success, 1 the media did not flow as asked (or a call
//! failed), 2 bad arguments or files. Only bad arguments print the usage line.

mod args;
mod bench;
mod call;
mod demo;
mod demo_pki;
mod ladder;
mod link;
mod media_file;
mod netsim;
mod output;
mod probe;
mod progress;
mod recv;
mod send;
mod serve;
mod signals;

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser, Subcommand};

/// Real-time audio and video over RTP, with SIP signalling.
#[derive(Parser, Debug)]
#[command(
    name = "roomkit-media",
    version,
    // Every option may be given again, the last one counting (scripts add to a base command
    // line); clap would refuse a repeat otherwise.
    args_override_self = true,
    arg_required_else_help = true,
    after_help = "Exit codes: 0 success, 1 the media did not flow or a call failed, \
                  2 bad arguments or files.\n\
                  `roomkit-media COMMAND --help` describes each command's options."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Send a video file (Annex-B H.264 or IVF VP8) as RTP.
    Send(send::SendArgs),
    /// Receive one RTP video stream into a file.
    Recv(recv::RecvArgs),
    /// Answer SIP audio + video calls; one JSON line per event.
    Serve(Box<serve::ServeArgs>),
    /// A SIP audio + video call on loopback between two of our own backends, with a report.
    Demo(demo::DemoArgs),
    /// Place one outbound SIP audio + video call.
    Call(call::CallArgs),
    /// Load and latency: N concurrent audio + video sessions for S seconds, with a report.
    Bench(bench::BenchArgs),
    /// Relay UDP between peers through a lossy, delaying, reordering path.
    Netsim(netsim::NetsimArgs),
    /// Print a shell completion script (e.g. `roomkit-media completions bash > /etc/bash_completion.d/roomkit-media`).
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
}

impl Command {
    /// The subcommand's name, to print the right usage line with an error found after parsing.
    fn name(&self) -> &'static str {
        match self {
            Command::Send(_) => "send",
            Command::Recv(_) => "recv",
            Command::Serve(_) => "serve",
            Command::Demo(_) => "demo",
            Command::Call(_) => "call",
            Command::Netsim(_) => "netsim",
            Command::Bench(_) => "bench",
            Command::Completions { .. } => "completions",
        }
    }
}

/// Why a command did not succeed.
#[derive(Debug)]
pub enum Failure {
    /// Bad arguments or files, found after parsing (a file that cannot be read, two options
    /// that disagree): the message and the command's usage line, exit code 2.
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
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Help and version go to stdout with exit code 0; errors to stderr with exit code 2.
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let name = cli.command.name();
    let result = match cli.command {
        Command::Send(a) => send::run(&a).map(print_stats).map_err(Failure::from),
        Command::Recv(a) => recv::run(&a).map(print_stats).map_err(Failure::from),
        Command::Serve(a) => serve::run(&a),
        Command::Demo(a) => demo::run(&a).map_err(Failure::from),
        Command::Call(a) => call::run(&a),
        Command::Netsim(a) => netsim::run(&a).map_err(Failure::from),
        Command::Bench(a) => bench::run(&a),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "roomkit-media",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(Failure::Usage(msg)) => {
            // Shown as clap shows its own errors: the message, then the command's usage.
            let mut root = Cli::command();
            root.build();
            let sub = root
                .find_subcommand_mut(name)
                .expect("every command is a subcommand");
            let _ = sub.error(ErrorKind::ValueValidation, msg).print();
            ExitCode::from(2)
        }
        Err(Failure::Runtime(msg)) => {
            eprintln!("roomkit-media: {msg}");
            ExitCode::from(1)
        }
    }
}

/// `send` and `recv` end with their statistics as one JSON line.
fn print_stats(stats: progress::Stats) -> ExitCode {
    output::Out::stdout().line(&stats);
    ExitCode::SUCCESS
}
