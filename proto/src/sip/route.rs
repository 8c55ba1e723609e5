//! Where a request goes: its Request-URI and Route headers from a target and a route set
//! (RFC 3261 §12.2.1.1 inside a dialog, §8.1.2 for a route set preloaded with an outbound
//! proxy), and the next hop it is sent to.
//!
//! A route set whose first element carries `lr` is loose: the Request-URI is the target and the
//! route set becomes the Route headers. Otherwise the first element is a strict (RFC 2543)
//! router: it becomes the Request-URI, the rest of the route set follows as Route headers and
//! the target goes last. Either way the request is sent to the first element of the route set,
//! or to the target when the set is empty.

use std::net::{IpAddr, SocketAddr};

use super::message::{NameAddr, Uri};
use super::outbox::SipTransportKind;

/// The Request-URI and Route values of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutedRequest {
    /// The Request-URI.
    pub request_uri: String,
    /// The Route header values, in order (each one a name-addr such as `<sip:p1;lr>`).
    pub routes: Vec<String>,
}

/// Applies a route set to a request for `target` (RFC 3261 §12.2.1.1).
pub fn route_request(target: &str, route_set: &[NameAddr]) -> RoutedRequest {
    match route_set.split_first() {
        Some((first, rest)) if first.uri().param("lr").is_none() => {
            let mut routes: Vec<String> = rest.iter().map(|r| r.raw().to_string()).collect();
            routes.push(format!("<{target}>"));
            // The router's URI as a Request-URI may carry no headers or `method` (RFC 3261
            // §19.1.1); a URI beyond repair stays as written (dialogs refuse those up front).
            let uri = first.uri();
            let request_uri = uri
                .request_target()
                .map_or_else(|_| uri.as_str().to_string(), |u| u.as_str().to_string());
            RoutedRequest {
                request_uri,
                routes,
            }
        }
        _ => RoutedRequest {
            request_uri: target.to_string(),
            routes: route_set.iter().map(|r| r.raw().to_string()).collect(),
        },
    }
}

/// The address a request is sent to, read from a SIP URI (RFC 3263's inputs: host, port,
/// transport; name resolution is the caller's job).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextHop {
    /// Host name or IP address (IPv6 in brackets).
    pub host: String,
    /// The port, when the URI gives one.
    pub port: Option<u16>,
    /// The `transport` URI parameter (`udp`, `tcp`, `tls`...), lowercased, when given.
    pub transport: Option<String>,
    /// True for a `sips:` URI (TLS required).
    pub secure: bool,
}

impl NextHop {
    /// The next hop named by a `sip:`/`sips:` URI; `None` for other schemes (`tel:` cannot be
    /// sent to).
    pub fn from_uri(uri: &Uri) -> Option<NextHop> {
        let host = uri.host()?;
        if host.is_empty() {
            return None;
        }
        Some(NextHop {
            host,
            port: uri.port(),
            transport: uri
                .param("transport")
                .flatten()
                .map(|t| t.to_ascii_lowercase()),
            secure: uri.scheme().eq_ignore_ascii_case("sips"),
        })
    }

    /// The transport the URI asks for (`sips:`, `;transport=`), `None` when it names none.
    pub fn transport_kind(&self) -> Option<SipTransportKind> {
        SipTransportKind::from_uri_parts(self.secure, self.transport.as_deref())
    }

    /// The port to use: the URI's, else 5061 for TLS and 5060 otherwise.
    pub fn port_or_default(&self) -> u16 {
        self.port
            .unwrap_or(if self.secure || self.transport.as_deref() == Some("tls") {
                5061
            } else {
                5060
            })
    }

    /// The socket address when the host is an IP literal; `None` for a name to resolve.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        let host = self
            .host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(&self.host);
        let ip: IpAddr = host.parse().ok()?;
        Some(SocketAddr::new(ip, self.port_or_default()))
    }
}

/// The next hop of a request for `target` along `route_set`: the first route's URI (a loose
/// router's address, or the strict router that became the Request-URI), else the target.
/// `None` when that URI is not a SIP URI.
pub fn next_hop(target: &str, route_set: &[NameAddr]) -> Option<NextHop> {
    match route_set.first() {
        Some(first) => NextHop::from_uri(first.uri()),
        None => NextHop::from_uri(&Uri::parse(target).ok()?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(values: &[&str]) -> Vec<NameAddr> {
        values.iter().map(|v| NameAddr::parse(v).unwrap()).collect()
    }

    #[test]
    fn loose_route_set_becomes_route_headers() {
        let set = routes(&["<sip:p1.example.com:5070;lr>", "<sip:p2.example.com;lr>"]);
        let r = route_request("sip:bob@203.0.113.5:5062", &set);
        assert_eq!(r.request_uri, "sip:bob@203.0.113.5:5062");
        assert_eq!(
            r.routes,
            ["<sip:p1.example.com:5070;lr>", "<sip:p2.example.com;lr>"]
        );
        let hop = next_hop("sip:bob@203.0.113.5:5062", &set).unwrap();
        assert_eq!(
            (hop.host.as_str(), hop.port),
            ("p1.example.com", Some(5070))
        );
        assert_eq!(hop.socket_addr(), None, "a name needs resolving");
    }

    #[test]
    fn strict_router_takes_the_request_uri() {
        let set = routes(&["<sip:strict.example.com>", "<sip:p2.example.com;lr>"]);
        let r = route_request("sip:bob@203.0.113.5", &set);
        assert_eq!(r.request_uri, "sip:strict.example.com");
        assert_eq!(
            r.routes,
            ["<sip:p2.example.com;lr>", "<sip:bob@203.0.113.5>"]
        );
        assert_eq!(
            next_hop("sip:bob@203.0.113.5", &set).unwrap().host,
            "strict.example.com"
        );
    }

    #[test]
    fn without_routes_the_target_is_the_next_hop() {
        let hop = next_hop("sip:bob@[2001:db8::5]:5080;transport=UDP", &[]).unwrap();
        assert_eq!(hop.transport.as_deref(), Some("udp"));
        assert_eq!(
            hop.socket_addr(),
            Some("[2001:db8::5]:5080".parse().unwrap())
        );
        let tls = next_hop("sips:bob@192.0.2.4", &[]).unwrap();
        assert!(tls.secure);
        assert_eq!(tls.socket_addr(), Some("192.0.2.4:5061".parse().unwrap()));
        assert_eq!(next_hop("tel:+15551234", &[]), None);
        assert_eq!(next_hop("not a uri", &[]), None);
    }
}
