//! The metrics endpoint: `GET /metrics` on the engine's HTTP server (`http.rs`) answers 200 with
//! the text a closure renders, in the format the scraper's `Accept` asks for; any other path 404,
//! another method 405. The server bounds every connection (head size, timeouts).

use std::net::SocketAddr;

use crate::engine::http::{HttpServer, Request, Response};
pub use crate::engine::http::{IO_TIMEOUT, MAX_REQUEST};
use crate::error::Result;
use crate::metrics::MetricsFormat;

/// A running metrics endpoint. Dropping it (or [`MetricsServer::stop`]) stops its thread and
/// closes its socket.
#[derive(Debug)]
pub struct MetricsServer {
    http: HttpServer,
}

impl MetricsServer {
    /// Listens on `addr` (port 0: any free port, see [`Self::local_addr`]) and answers
    /// `GET /metrics` with what `render` returns, on a thread of its own.
    pub fn start(
        addr: SocketAddr,
        render: impl Fn(MetricsFormat) -> String + Send + Sync + 'static,
    ) -> Result<MetricsServer> {
        let http = HttpServer::start(addr, None, "rkm-metrics", move |r| {
            route(r, &render).unwrap_or_else(|| Response::text(404, "not found\n"))
        })?;
        Ok(MetricsServer { http })
    }

    /// The address the endpoint listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.http.local_addr()
    }

    /// Stops the thread and closes the socket.
    pub fn stop(&mut self) {
        self.http.stop();
    }
}

/// The answer to `/metrics`, `None` for another path: a handler to put on a server that also
/// serves other paths (`serve --whip` on the same address).
pub fn route(r: &Request, render: &dyn Fn(MetricsFormat) -> String) -> Option<Response> {
    if r.path != "/metrics" {
        return None;
    }
    Some(match r.method.as_str() {
        "GET" => {
            let format = MetricsFormat::from_accept(r.header("accept"));
            Response::new(200, format.content_type(), render(format))
        }
        _ => Response::text(405, "GET only\n").with_header("Allow", "GET"),
    })
}
