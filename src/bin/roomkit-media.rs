//! The roomkit-media command line.

fn main() {
    eprintln!("roomkit-media: no command yet");
    std::process::exit(2);
}
