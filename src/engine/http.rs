//! The engine's one small HTTP/1.1 server, blocking and bounded: metrics scrapes
//! (`metrics_http.rs`) and the WHIP/WHEP endpoints (`serve --whip`) are handlers on it. The
//! bytes are parsed and written by the pure `roomkit_media_proto::http`; what a request gets is
//! the handler's decision. Over TLS (rustls, ring's algorithms, as SIP over TLS) when given a
//! certificate and key.
//!
//! One accept thread; each connection gets a thread of its own, at most [`MAX_CONNECTIONS`] at
//! once (one more gets 503), so an idle browser pre-connection does not hold up a publish. Every
//! connection is bounded: its request head at most [`MAX_REQUEST`] bytes, its body at most
//! [`MAX_BODY`] (declared by `Content-Length`), reading the request and writing the answer each
//! within [`IO_TIMEOUT`]; one request per connection, closed after its answer.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use roomkit_media_proto::http::{parse_head, HeadError};
pub use roomkit_media_proto::http::{Request, Response};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

use crate::error::{Error, Result};

/// The largest request head accepted; a longer one gets 431.
pub const MAX_REQUEST: usize = 8 * 1024;

/// The largest request body accepted (an SDP offer is a few KiB); a longer one gets 413.
pub const MAX_BODY: usize = 64 * 1024;

/// How long a connection may take to send its request (TLS handshake included), or to take our
/// answer.
pub const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// Connections served at once; one more is answered 503 and closed.
pub const MAX_CONNECTIONS: usize = 16;

/// What answers a request.
pub type Handler = dyn Fn(&Request) -> Response + Send + Sync;

/// A running server. Dropping it (or [`HttpServer::stop`]) stops its accept thread and closes
/// its socket; connections being served finish within their timeouts.
pub struct HttpServer {
    addr: SocketAddr,
    tls: bool,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for HttpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpServer")
            .field("addr", &self.addr)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

/// A server configuration for HTTPS from a PEM certificate chain and key (the SIP TLS loader).
pub fn tls_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>> {
    crate::engine::sip_stream::server_config(cert, key).map_err(|e| {
        Error::Io(
            format!("loading {} and {}", cert.display(), key.display()),
            e,
        )
    })
}

impl HttpServer {
    /// Listens on `addr` (port 0: any free port, see [`Self::local_addr`]) and answers each
    /// request with `handler`; over TLS when `tls` is given. `name` names its threads.
    pub fn start(
        addr: SocketAddr,
        tls: Option<Arc<ServerConfig>>,
        name: &str,
        handler: impl Fn(&Request) -> Response + Send + Sync + 'static,
    ) -> Result<HttpServer> {
        let listener =
            TcpListener::bind(addr).map_err(|e| Error::Io(format!("binding HTTP {addr}"), e))?;
        let local = listener
            .local_addr()
            .map_err(|e| Error::Io("HTTP socket address".into(), e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handler: Arc<Handler> = Arc::new(handler);
        let is_tls = tls.is_some();
        let conn_name = format!("{name}-conn");
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let busy = Arc::new(AtomicUsize::new(0));
                for conn in listener.incoming() {
                    if flag.load(Ordering::Acquire) {
                        break;
                    }
                    let Ok(c) = conn else { continue };
                    if busy.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
                        busy.fetch_sub(1, Ordering::AcqRel);
                        // Plain text even on a TLS port: the client sees a closed connection.
                        let _ = answer_and_close(&mut Conn::Plain(c), &Response::empty(503));
                        continue;
                    }
                    let (handler, tls, busy2) = (handler.clone(), tls.clone(), busy.clone());
                    let spawned =
                        std::thread::Builder::new()
                            .name(conn_name.clone())
                            .spawn(move || {
                                let _ = serve_one(c, tls, &*handler);
                                busy2.fetch_sub(1, Ordering::AcqRel);
                            });
                    if spawned.is_err() {
                        busy.fetch_sub(1, Ordering::AcqRel);
                    }
                }
            })
            .map_err(|e| Error::Io("starting the HTTP thread".into(), e))?;
        Ok(HttpServer {
            addr: local,
            tls: is_tls,
            stop,
            thread: Some(thread),
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL of `path` on this server (`http://` or `https://`, the listening address; an
    /// unspecified address is given as loopback).
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}{path}", reachable(self.addr))
    }

    /// Stops the accept thread and closes the socket.
    pub fn stop(&mut self) {
        let Some(t) = self.thread.take() else {
            return;
        };
        self.stop.store(true, Ordering::Release);
        // Wake the blocking accept with a connection of our own.
        if TcpStream::connect_timeout(&reachable(self.addr), IO_TIMEOUT).is_ok() {
            let _ = t.join();
        }
        // If even that failed, the thread is left to end with the process rather than block
        // the caller forever.
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `addr` with an unspecified IP replaced by loopback of the same family.
fn reachable(mut addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    addr
}

/// A connection, plain or TLS.
enum Conn {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ServerConnection, TcpStream>>),
}

impl Conn {
    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => &s.sock,
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

/// Reads one request (head, then its body) and answers it.
fn serve_one(
    c: TcpStream,
    tls: Option<Arc<ServerConfig>>,
    handler: &Handler,
) -> std::io::Result<()> {
    c.set_read_timeout(Some(IO_TIMEOUT))?;
    c.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut c = match tls {
        None => Conn::Plain(c),
        Some(cfg) => {
            let tls = ServerConnection::new(cfg).map_err(std::io::Error::other)?;
            Conn::Tls(Box::new(StreamOwned::new(tls, c)))
        }
    };
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head = loop {
        match parse_head(&buf, MAX_REQUEST, MAX_BODY) {
            Ok(Some(h)) => break h,
            Ok(None) => {}
            Err(e @ HeadError::Malformed) => return answer_and_close(&mut c, &e.response()),
            Err(e) => return refuse(&mut c, &e.response()),
        }
        if Instant::now() >= deadline {
            return Ok(()); // too slow: drop it
        }
        // Never read past the head limit, so a flood is refused by size, not buffered.
        let room = (MAX_REQUEST - buf.len()).min(chunk.len());
        match c.read(&mut chunk[..room]) {
            Ok(0) => return Ok(()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(e),
        }
    };
    let mut request = head.request;
    let mut body = buf.split_off(head.head_len.min(buf.len()));
    body.truncate(head.body_len);
    while body.len() < head.body_len {
        if Instant::now() >= deadline {
            return Ok(());
        }
        let room = (head.body_len - body.len()).min(chunk.len());
        match c.read(&mut chunk[..room]) {
            Ok(0) => return Ok(()),
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(e),
        }
    }
    request.body = body;
    request.peer = c.tcp().peer_addr().ok();
    let response = handler(&request);
    answer_and_close(&mut c, &response)
}

/// Writes the answer and closes our side.
fn answer_and_close(c: &mut Conn, r: &Response) -> std::io::Result<()> {
    c.write_all(&r.to_bytes())?;
    c.flush()?;
    if let Conn::Tls(s) = c {
        s.conn.send_close_notify();
        let _ = s.flush();
    }
    Ok(())
}

/// Answers a request refused by size, then reads (a bounded amount of) what the client is still
/// sending, so that closing does not reset the connection before it has read the answer.
fn refuse(c: &mut Conn, r: &Response) -> std::io::Result<()> {
    answer_and_close(c, r)?;
    c.tcp().shutdown(Shutdown::Write)?;
    c.tcp().set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut left: usize = 64 * 1024;
    let mut sink = [0u8; 4096];
    while left > 0 {
        match c.tcp().read(&mut sink) {
            Ok(n) if n > 0 => left = left.saturating_sub(n),
            _ => break,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(addr: SocketAddr, request: &[u8]) -> String {
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(request).unwrap();
        let mut out = Vec::new();
        let _ = c.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn bodies_are_read_by_content_length_and_bounded() {
        let mut s = HttpServer::start("127.0.0.1:0".parse().unwrap(), None, "rkm-http-test", |r| {
            Response::text(200, &format!("{} {} {}", r.method, r.path, r.body.len()))
        })
        .unwrap();
        let a = s.local_addr();
        assert_eq!(s.url("/whip"), format!("http://{a}/whip"));
        let r = http(a, b"POST /x HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc");
        assert!(
            r.starts_with("HTTP/1.1 200 OK\r\n") && r.ends_with("POST /x 3"),
            "{r}"
        );
        // A body that arrives later than its head.
        let mut c = TcpStream::connect(a).unwrap();
        c.write_all(b"POST /y HTTP/1.1\r\nContent-Length: 4\r\n\r\nab")
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        c.write_all(b"cd").unwrap();
        let mut out = String::new();
        let _ = c.read_to_string(&mut out);
        assert!(out.ends_with("POST /y 4"), "{out}");
        let big = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert!(http(a, big.as_bytes()).starts_with("HTTP/1.1 413"));
        assert!(http(a, b"\x00\x01\r\n\r\n").starts_with("HTTP/1.1 400"));
        // An idle connection does not hold up the next one.
        let _idle = TcpStream::connect(a).unwrap();
        let t = Instant::now();
        assert!(http(a, b"GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 200"));
        assert!(t.elapsed() < IO_TIMEOUT, "{:?}", t.elapsed());
        s.stop();
        assert!(TcpStream::connect(a).is_err());
    }
}
