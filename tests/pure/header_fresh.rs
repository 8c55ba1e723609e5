//! The checked-in C header must be what cbindgen makes from `src/ffi/` today.
//!
//! When this fails, regenerate the header and commit it:
//! `RKM_UPDATE_HEADER=1 cargo test --test header_fresh`.

use std::path::Path;

fn generate() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut out = Vec::new();
    cbindgen::Builder::new()
        // Only the C ABI module (and the files it declares): the rest of the crate is Rust API,
        // whose public constants must not leak into the header.
        .with_src(root.join("src/ffi/mod.rs"))
        .with_config(config)
        .generate()
        .expect("cbindgen could not generate the header")
        .write(&mut out);
    String::from_utf8(out).expect("the generated header is UTF-8")
}

#[test]
fn checked_in_header_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("include/roomkit_media.h");
    let fresh = generate();
    if std::env::var_os("RKM_UPDATE_HEADER").is_some() {
        std::fs::write(&path, &fresh).expect("writing include/roomkit_media.h");
        return;
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    if current == fresh {
        return;
    }
    let first_diff = current
        .lines()
        .zip(fresh.lines())
        .position(|(a, b)| a != b)
        .unwrap_or_else(|| current.lines().count().min(fresh.lines().count()));
    let line = |text: &str| {
        text.lines()
            .nth(first_diff)
            .unwrap_or("<end of file>")
            .to_owned()
    };
    panic!(
        "include/roomkit_media.h is stale: it differs from what src/ffi/ generates, first at \
         line {}:\n  checked in: {}\n  generated:  {}\nRegenerate it with \
         `RKM_UPDATE_HEADER=1 cargo test --test header_fresh` and commit the result.",
        first_diff + 1,
        line(&current),
        line(&fresh)
    );
}

/// The field names of the C struct `typedef struct { ... } name;` in the header, in order.
fn c_struct_fields(header: &str, name: &str) -> Vec<String> {
    let end = header
        .find(&format!("}} {name};"))
        .unwrap_or_else(|| panic!("{name} is not in the header"));
    let start = header[..end]
        .rfind("typedef struct {")
        .unwrap_or_else(|| panic!("{name} is not a typedef struct"));
    header[start..end]
        .lines()
        .skip(1)
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//"))
        .map(|l| {
            let decl = l
                .strip_suffix(';')
                .unwrap_or_else(|| panic!("odd line: {l}"));
            decl.rsplit(' ').next().unwrap_or(decl).to_owned()
        })
        .collect()
}

/// The field names of a Rust struct, in order, from its derived `Debug` output.
fn debug_fields(debug: &str) -> Vec<String> {
    let open = debug.find('{').expect("a struct with named fields");
    debug[open + 1..]
        .trim_end_matches('}')
        .split(", ")
        .map(|f| f.split(':').next().unwrap_or(f).trim().to_owned())
        .filter(|f| !f.is_empty())
        .collect()
}

/// C users see every counter the Rust API has, under the same name and in the same order. (The
/// `From` conversion in src/ffi/backend.rs keeps the Rust twin `rkm_stream_stats` complete at
/// compile time; this checks what a C compiler actually reads.)
#[test]
fn header_stream_stats_carries_every_stream_stats_field() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("include/roomkit_media.h");
    let header = std::fs::read_to_string(path).expect("include/roomkit_media.h");
    let c = c_struct_fields(&header, "rkm_stream_stats");
    let rust = debug_fields(&format!(
        "{:?}",
        roomkit_media::backend::StreamStats::default()
    ));
    assert!(
        !rust.is_empty(),
        "no fields read from StreamStats' Debug output"
    );
    let missing: Vec<_> = rust.iter().filter(|f| !c.contains(f)).collect();
    let extra: Vec<_> = c.iter().filter(|f| !rust.contains(f)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "rkm_stream_stats and StreamStats differ: not in C {missing:?}, not in Rust {extra:?}"
    );
    assert_eq!(
        c, rust,
        "rkm_stream_stats lists StreamStats' fields in another order"
    );
}
