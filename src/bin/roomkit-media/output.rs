//! JSON lines on stdout, as the long-running commands print their events.

use std::io::Write;
use std::sync::Arc;

use parking_lot::Mutex;

/// One JSON line at a time, whole lines only, flushed at once (tests read them live).
#[derive(Clone)]
pub struct Out(Arc<Mutex<std::io::Stdout>>);

impl Out {
    pub fn line(&self, s: &str) {
        let mut o = self.0.lock();
        let _ = writeln!(o, "{s}");
        let _ = o.flush();
    }
}

/// JSON string literal.
pub fn js(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

impl Out {
    /// Standard output, shared by the threads that print.
    pub fn stdout() -> Out {
        Out(Arc::new(Mutex::new(std::io::stdout())))
    }
}
