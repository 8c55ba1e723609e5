//! The layering rule of ARCHITECTURE.md: the pure layers (`codec`, `rtp`, `sdp`, `sip`,
//! `netem`, and the `frame` and `error` modules they share) never import `engine`, `backend` or
//! `ffi`, and outside their unit tests they open no socket, start no thread and read no clock
//! (time is passed in).
//!
//! The import half is the compiler's: the pure layers are the crate roomkit-media-proto
//! (proto/), which does not depend on roomkit-media, so a path into the engine does not build.
//! This file checks that the manifest keeps it so, and checks the I/O half on the source, naming
//! the file and line (a pure crate could still call `Instant::now` or open a socket).

use std::fs;
use std::path::{Path, PathBuf};

/// The pure layers: the whole of roomkit-media-proto's source.
const PURE: &[&str] = &["proto/src"];

/// What only the engine may do: sockets, threads, the wall clock and the monotonic clock, files.
const IO_CALLS: &[&str] = &[
    "Instant::now",
    "SystemTime::now",
    "std::thread",
    "thread::spawn",
    "UdpSocket",
    "TcpStream",
    "TcpListener",
    "socket2",
    "libc::",
    "std::fs",
    "File::open",
    "File::create",
];

/// Test scaffolding inside a pure layer, compiled only for tests and `_internals`: exempt from
/// the I/O rule.
const IO_EXEMPT: &[&str] = &["proto/src/rtp/sim.rs"];

fn rust_files(root: &Path, rel: &str, out: &mut Vec<PathBuf>) {
    let path = root.join(rel);
    if path.is_file() {
        out.push(path);
        return;
    }
    let mut entries: Vec<_> = fs::read_dir(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        let rel = p.strip_prefix(root).unwrap().to_str().unwrap().to_string();
        if p.is_dir() || p.extension().is_some_and(|x| x == "rs") {
            rust_files(root, &rel, out);
        }
    }
}

/// The file's lines with `//` comments blanked: (1-based number, code, inside the body of a
/// `#[cfg(test)] mod name { ... }`). Unit tests may read the clock to get a start instant. Relies
/// on rustfmt's layout: the module's closing brace alone on a line at the module's indentation.
fn code_lines(text: &str) -> Vec<(usize, String, bool)> {
    let mut out = Vec::new();
    let mut test_end: Option<String> = None;
    let mut lines = text.lines().enumerate().peekable();
    while let Some((i, line)) = lines.next() {
        if test_end.is_none() && line.trim() == "#[cfg(test)]" {
            if let Some((_, next)) = lines.peek() {
                let body = next.trim_start();
                if body.starts_with("mod ") && body.ends_with('{') {
                    test_end = Some(format!("{}}}", &next[..next.len() - body.len()]));
                }
            }
        }
        let in_test = test_end.is_some();
        if test_end.as_deref() == Some(line) {
            test_end = None;
        }
        let code = match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        };
        out.push((i + 1, code.to_string(), in_test));
    }
    out
}

/// The files of the unit-test modules that `path` declares out of line (`#[cfg(test)]` then
/// `mod tests;`): their whole text is unit tests, as the body of an inline module is.
fn test_module_files(path: &Path) -> Vec<PathBuf> {
    let text = fs::read_to_string(path).unwrap();
    // A module declared in `mod.rs` or `lib.rs` sits beside it; one declared in `name.rs`, in `name/`.
    let dir = match path.file_stem().and_then(|s| s.to_str()) {
        Some("mod" | "lib") => path.parent().unwrap().to_path_buf(),
        _ => path.with_extension(""),
    };
    let mut out = Vec::new();
    let mut after_cfg_test = false;
    for line in text.lines().map(str::trim) {
        if after_cfg_test {
            if let Some(name) = line.strip_prefix("mod ").and_then(|l| l.strip_suffix(';')) {
                out.push(dir.join(format!("{name}.rs")));
                out.push(dir.join(name).join("mod.rs"));
            }
        }
        after_cfg_test = line == "#[cfg(test)]";
    }
    out
}

/// The crate boundary holds only while roomkit-media-proto depends on no crate of the engine's
/// side: not on roomkit-media (not even for its tests), and not on the I/O crates only the engine
/// uses.
#[test]
fn the_pure_crate_depends_on_neither_the_engine_nor_io_crates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = fs::read_to_string(root.join("proto/Cargo.toml")).unwrap();
    let mut violations = Vec::new();
    for (no, line) in manifest.lines().enumerate() {
        let name = line.split(['=', '.']).next().unwrap_or("").trim();
        if [
            "roomkit-media",
            "socket2",
            "libc",
            "crossbeam-channel",
            "parking_lot",
        ]
        .contains(&name)
        {
            violations.push(format!("proto/Cargo.toml:{}: {}", no + 1, line.trim()));
        }
    }
    assert!(
        violations.is_empty(),
        "ARCHITECTURE.md: the pure layers never reach the engine or do I/O:\n{}",
        violations.join("\n")
    );
}

#[test]
fn pure_layers_do_no_io() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for rel in PURE {
        rust_files(root, rel, &mut files);
    }
    assert!(
        files.len() > 20,
        "found only {} files: the layout moved?",
        files.len()
    );
    let test_files: Vec<PathBuf> = files.iter().flat_map(|f| test_module_files(f)).collect();
    let mut violations = Vec::new();
    for path in &files {
        let rel = path.strip_prefix(root).unwrap().to_str().unwrap();
        if IO_EXEMPT.contains(&rel) || test_files.contains(path) {
            continue;
        }
        let text = fs::read_to_string(path).unwrap();
        for (no, code, in_test) in code_lines(&text) {
            if in_test {
                continue;
            }
            for call in IO_CALLS {
                if code.contains(call) {
                    violations.push(format!(
                        "{rel}:{no}: a pure layer does I/O (`{call}`); pass it in instead: {}",
                        code.trim()
                    ));
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "ARCHITECTURE.md: pure layers do no I/O:\n{}",
        violations.join("\n")
    );
}

/// The unit-test exemption covers exactly the body of a `#[cfg(test)]` module.
#[test]
fn the_checker_sees_where_unit_tests_are() {
    let lines = code_lines("fn a() {}\n#[cfg(test)]\nmod tests {\n    fn t() {}\n}\nfn b() {}");
    let in_test: Vec<bool> = lines.iter().map(|l| l.2).collect();
    assert_eq!(in_test, [false, true, true, true, true, false]);
    let lines = code_lines("let t = Instant::now(); // Instant::now");
    assert_eq!(lines[0].1, "let t = Instant::now(); ");
}
