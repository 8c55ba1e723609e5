//! A tiny blocking HTTP/1.x responder for metrics scrapes: `GET /metrics` answers 200 with the
//! text a closure renders, anything else 404 (or 405 for another method). One thread serves one
//! connection at a time, which is what a scraper needs; every connection is bounded (request
//! head at most [`MAX_REQUEST`] bytes, read and write timeouts of [`IO_TIMEOUT`]) and closed
//! after its answer, so a stuck or hostile client holds the thread for at most the timeout.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::metrics::MetricsFormat;

/// The largest request head accepted; a longer one gets 431.
pub const MAX_REQUEST: usize = 8 * 1024;

/// How long a connection may take to send its request, or to take our answer.
pub const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// What renders a scrape in the format the scraper asked for.
pub type RenderFn = dyn Fn(MetricsFormat) -> String + Send + Sync;

/// A running metrics endpoint. Dropping it (or [`MetricsServer::stop`]) stops its thread and
/// closes its socket.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl MetricsServer {
    /// Listens on `addr` (port 0: any free port, see [`Self::local_addr`]) and answers
    /// `GET /metrics` with what `render` returns, on a thread of its own.
    pub fn start(
        addr: SocketAddr,
        render: impl Fn(MetricsFormat) -> String + Send + Sync + 'static,
    ) -> Result<MetricsServer> {
        let listener =
            TcpListener::bind(addr).map_err(|e| Error::Io(format!("binding metrics {addr}"), e))?;
        let local = listener
            .local_addr()
            .map_err(|e| Error::Io("metrics socket address".into(), e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let render: Box<RenderFn> = Box::new(render);
        let thread = std::thread::Builder::new()
            .name("rkm-metrics".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if flag.load(Ordering::Acquire) {
                        break;
                    }
                    if let Ok(c) = conn {
                        let _ = serve_one(c, &*render);
                    }
                }
            })
            .map_err(|e| Error::Io("starting the metrics thread".into(), e))?;
        Ok(MetricsServer {
            addr: local,
            stop,
            thread: Some(thread),
        })
    }

    /// The address the endpoint listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the thread (waiting for the connection it serves, at most [`IO_TIMEOUT`] twice)
    /// and closes the socket.
    pub fn stop(&mut self) {
        let Some(t) = self.thread.take() else {
            return;
        };
        self.stop.store(true, Ordering::Release);
        // Wake the blocking accept with a connection of our own.
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        if TcpStream::connect_timeout(&wake, IO_TIMEOUT).is_ok() {
            let _ = t.join();
        }
        // If even that failed, the thread is left to end with the process rather than block
        // the caller forever.
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Reads one request head and answers it.
fn serve_one(mut c: TcpStream, render: &RenderFn) -> std::io::Result<()> {
    c.set_read_timeout(Some(IO_TIMEOUT))?;
    c.set_write_timeout(Some(IO_TIMEOUT))?;
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut buf = vec![0u8; MAX_REQUEST];
    let mut len = 0;
    let head_len = loop {
        if let Some(end) = find_head_end(&buf[..len]) {
            break Some(end);
        }
        if len == buf.len() {
            break None;
        }
        if Instant::now() >= deadline {
            return Ok(()); // too slow: drop it
        }
        match c.read(&mut buf[len..]) {
            Ok(0) => return Ok(()),
            Ok(n) => len += n,
            Err(e) => return Err(e),
        }
    };
    let Some(head_len) = head_len else {
        respond(
            &mut c,
            "431 Request Header Fields Too Large",
            "text/plain",
            b"request too large\n",
        )?;
        // Read (a bounded amount of) what the client is still sending, so that closing does
        // not reset the connection before it has read the answer.
        c.shutdown(std::net::Shutdown::Write)?;
        c.set_read_timeout(Some(Duration::from_millis(200)))?;
        let mut left: usize = 64 * 1024;
        while left > 0 {
            match c.read(&mut buf) {
                Ok(n) if n > 0 => left = left.saturating_sub(n),
                _ => break,
            }
        }
        return Ok(());
    };
    let head = String::from_utf8_lossy(&buf[..head_len]);
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let (method, target) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
    let accept = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("accept"))
        .map(|(_, v)| v.trim().to_string());
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/metrics") => {
            let format = MetricsFormat::from_accept(accept.as_deref());
            let body = render(format);
            respond(&mut c, "200 OK", format.content_type(), body.as_bytes())
        }
        ("GET", _) => respond(&mut c, "404 Not Found", "text/plain", b"not found\n"),
        _ => respond(
            &mut c,
            "405 Method Not Allowed",
            "text/plain",
            b"GET only\n",
        ),
    }
}

/// Where the request head ends (after its blank line), if it has.
fn find_head_end(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

fn respond(c: &mut TcpStream, status: &str, ctype: &str, body: &[u8]) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    c.write_all(head.as_bytes())?;
    c.write_all(body)?;
    c.flush()
}
