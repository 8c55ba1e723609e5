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
