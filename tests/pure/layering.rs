//! The layering rule of ARCHITECTURE.md, checked on the source: the pure layers (`codec`, `rtp`,
//! `sdp`, `sip`, and the `frame` and `error` modules they share) never import `engine`,
//! `backend` or `ffi` (not even in their unit tests), and outside their unit tests they open no
//! socket, start no thread and read no clock (time is passed in).
//!
//! While the pure layers live in the same crate as the engine, the compiler cannot refuse such an
//! import; this test does, naming the file and line. (Moving them into a crate of their own, as
//! quinn-proto is to quinn, would make it a build error instead.)

use std::fs;
use std::path::{Path, PathBuf};

/// The directories and files that make up the pure layers.
const PURE: &[&str] = &[
    "src/codec",
    "src/rtp",
    "src/sdp",
    "src/sip",
    "src/frame.rs",
    "src/error.rs",
    "src/netem.rs",
];

/// Modules a pure layer must not reach.
const FORBIDDEN_MODULES: &[&str] = &["engine", "backend", "ffi"];

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
/// the I/O rule (not from the import rule).
const IO_EXEMPT: &[&str] = &["src/rtp/sim.rs"];

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
/// `#[cfg(test)] mod name { ... }`). Unit tests may read the clock to get a start instant, but
/// may not import the engine either (the layer could not move to a crate of its own). Relies on
/// rustfmt's layout: the module's closing brace alone on a line at the module's indentation.
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

/// The files that are unit-test modules declared elsewhere as `#[cfg(test)] mod name;`: for a
/// declaration in `dir/mod.rs` the module is `dir/name.rs` (or `dir/name/mod.rs`), for one in
/// `dir/file.rs` it is `dir/file/name.rs`.
fn test_module_files(files: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for path in files {
        let Ok(text) = fs::read_to_string(path) else {
            continue;
        };
        let lines: Vec<&str> = text.lines().collect();
        for pair in lines.windows(2) {
            let decl = pair[1].trim();
            if pair[0].trim() != "#[cfg(test)]" || !decl.starts_with("mod ") || !decl.ends_with(';')
            {
                continue;
            }
            let name = decl["mod ".len()..decl.len() - 1].trim();
            let dir = if path
                .file_name()
                .is_some_and(|f| f == "mod.rs" || f == "lib.rs")
            {
                path.parent().unwrap().to_path_buf()
            } else {
                path.with_extension("")
            };
            out.push(dir.join(format!("{name}.rs")));
            out.push(dir.join(name).join("mod.rs"));
        }
    }
    out
}

/// Where `code` (one line) names a forbidden module: `crate::engine`, `super::super::backend`
/// (from a file one level down a layer), or `crate::{..., ffi, ...}` in a grouped import.
fn forbidden_import(code: &str, in_group: &mut bool) -> Option<&'static str> {
    let squashed: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    for m in FORBIDDEN_MODULES {
        for prefix in ["crate::", "super::super::"] {
            let path = format!("{prefix}{m}");
            if let Some(at) = squashed.find(&path) {
                let after = squashed[at + path.len()..].chars().next();
                if !after.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    return Some(m);
                }
            }
        }
    }
    // A grouped import `use crate::{a, engine::X};` may span lines: look at every name in it.
    if squashed.contains("usecrate::{") || squashed.contains("usesuper::super::{") {
        *in_group = true;
    }
    if *in_group {
        let inner = squashed.rsplit("::{").next().unwrap_or(&squashed);
        for name in inner.split([',', '{', '}', ';']) {
            let head = name.split("::").next().unwrap_or("");
            if let Some(m) = FORBIDDEN_MODULES.iter().find(|m| **m == head) {
                if squashed.contains(';') {
                    *in_group = false;
                }
                return Some(m);
            }
        }
        if squashed.contains(';') {
            *in_group = false;
        }
    }
    None
}

#[test]
fn pure_layers_import_neither_engine_nor_backend_nor_ffi_and_do_no_io() {
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
    let test_files = test_module_files(&files);
    let mut violations = Vec::new();
    for path in &files {
        let rel = path.strip_prefix(root).unwrap().to_str().unwrap();
        let text = fs::read_to_string(path).unwrap();
        // A unit-test module in a file of its own (`#[cfg(test)] mod tests;`) is a unit test
        // from its first line.
        let io_exempt = IO_EXEMPT.contains(&rel) || test_files.contains(path);
        let mut in_group = false;
        for (no, code, in_test) in code_lines(&text) {
            if let Some(m) = forbidden_import(&code, &mut in_group) {
                violations.push(format!(
                    "{rel}:{no}: a pure layer imports `{m}`: {}",
                    code.trim()
                ));
            }
            if io_exempt || in_test {
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
        "ARCHITECTURE.md: pure layers never import engine, backend or ffi, and do no I/O:\n{}",
        violations.join("\n")
    );
}

/// The checker itself catches each way of spelling the import.
#[test]
fn the_checker_sees_every_spelling() {
    let caught = |src: &str| {
        let mut in_group = false;
        code_lines(src)
            .iter()
            .any(|(_, code, _)| forbidden_import(code, &mut in_group).is_some())
    };
    assert!(caught("use crate::engine::MediaStream;"));
    assert!(caught("    let x = crate::backend::rtp::thing();"));
    assert!(caught("use super::super::ffi::status;"));
    assert!(caught("use crate::{frame::VideoCodec, engine::SessionId};"));
    assert!(caught(
        "use crate::{\n    error::Result,\n    backend::MediaBackend,\n};"
    ));
    assert!(!caught("use crate::frame::VideoCodec;"));
    assert!(!caught("use crate::engineering::Thing;"));
    assert!(!caught("// use crate::engine::MediaStream;"));
    assert!(!caught("use crate::{frame::VideoCodec, error::Result};"));
    // Unit tests of a pure layer are held to the import rule too.
    assert!(caught(
        "#[cfg(test)]\nmod tests {\n    use crate::engine::X;\n}"
    ));
    let lines = code_lines("fn a() {}\n#[cfg(test)]\nmod tests {\n    fn t() {}\n}\nfn b() {}");
    let in_test: Vec<bool> = lines.iter().map(|l| l.2).collect();
    assert_eq!(in_test, [false, true, true, true, true, false]);
}
