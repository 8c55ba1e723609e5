//! JSON lines on stdout, as the commands print their events and statistics. Each line is a
//! `Serialize` struct, so escaping is serde_json's and the keys come out in field order (tests
//! and scripts read some lines by position).

use std::io::Write;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::Serialize;

/// One JSON line at a time, whole lines only, flushed at once (tests read them live).
#[derive(Clone)]
pub struct Out(Arc<Mutex<std::io::Stdout>>);

impl Out {
    /// Standard output, shared by the threads that print.
    pub fn stdout() -> Out {
        Out(Arc::new(Mutex::new(std::io::stdout())))
    }

    /// Prints `value` as one line of JSON.
    pub fn line(&self, value: &impl Serialize) {
        // Our structs hold strings, numbers and booleans only: serialising cannot fail.
        let text = serde_json::to_string(value).expect("a JSON line");
        let mut o = self.0.lock();
        let _ = writeln!(o, "{text}");
        let _ = o.flush();
    }
}

/// `x` rounded to `decimals` places, for the figures printed with a fixed precision (a
/// timestamp to 0.1 ms, a duration to 1 ms): the nearest `f64`, which JSON prints short.
pub fn rounded(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (x * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::rounded;

    #[test]
    fn rounding_prints_short() {
        assert_eq!(
            serde_json::to_string(&rounded(0.1 + 0.2, 1)).unwrap(),
            "0.3"
        );
        assert_eq!(serde_json::to_string(&rounded(2.0004, 3)).unwrap(), "2.0");
        assert_eq!(
            serde_json::to_string(&rounded(1234.5678, 2)).unwrap(),
            "1234.57"
        );
    }
}
