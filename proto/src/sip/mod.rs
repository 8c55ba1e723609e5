//! SIP signalling: parsing behind strict checks, transactions, dialogs, UAS/UAC pieces. Pure:
//! time is passed in.
//!
//! - [`message`]: one datagram in, a checked [`SipMessage`] or a [`ParseError`] (reject with a
//!   status, or drop) out; typed accessors over raw text kept for echoing.
//! - [`builder`]: responses that copy the request's raw headers, and our own requests.
//! - [`transaction`]: the four RFC 3261 transactions (INVITE and non-INVITE, server and
//!   client), sans-IO: feed input with the time, drain transmits and events, wake at
//!   `poll_timeout`. The INVITE client transaction ACKs non-2xx finals and runs its CANCEL.
//! - [`dialog`]: tags, CSeq ordering, remote target, route set, in-dialog requests.
//! - [`route`]: Request-URI and Route headers from a target and a route set (loose and strict
//!   routing), and the next hop a request is sent to.
//! - [`auth`]: digest authentication, both sides: MD5 and SHA-256 (and `-sess`), `qop=auth`,
//!   expiring single-use nonces on the server, 401/407 answering on the client.
//! - [`register`]: a registration (one AOR binding) with refresh, back-off and unregistration.
//! - [`session_timer`]: RFC 4028 session timers: headers, negotiation, refresh/expiry timer.
//! - [`extensions`]: option tags (`Require`/`Supported`, 420 Bad Extension).
//! - [`info_dtmf`]: DTMF digits in INFO bodies.
//! - [`redirect`]: choosing the Contact a 3xx sends us to.
//! - [`framing`]: SIP over a byte stream (TCP, TLS): Content-Length framing with limits, and
//!   RFC 5626 keep-alive pings.
//! - [`keepalive`]: RFC 5626 keep-alives of a connection we opened: when to ping, when an
//!   unanswered ping means the connection is dead.
//! - [`outbox`]: the datagrams a sans-IO core wants sent, with their destinations.
//! - [`rate_limit`]: a token bucket per source address, with a bounded table.
//! - [`rng`]: [`SipRng`], the one seeded source of every random draw (tags, branches, nonces).

// A pure layer: any `unsafe` the engine needs lives in engine/ (or ffi/), never here.
#![forbid(unsafe_code)]

pub mod auth;
pub mod builder;
mod check;
pub mod dialog;
pub mod extensions;
pub mod framing;
pub mod info_dtmf;
pub mod keepalive;
pub mod message;
pub mod outbox;
pub mod rate_limit;
pub mod reason;
pub mod redirect;
pub mod register;
pub mod rng;
pub mod route;
pub mod session_timer;
mod syntax;
pub mod transaction;

// Re-exports for the `_internals` API (fuzz targets, benches, tests); without the feature the
// crate itself may not need every name.
#[cfg_attr(not(feature = "_internals"), allow(unused_imports))]
#[cfg(any(test, feature = "_internals"))]
pub use builder::{new_branch, new_tag};
#[cfg_attr(not(feature = "_internals"), allow(unused_imports))]
pub use builder::{new_call_id, reason_phrase, retry_after_value, RequestBuilder, ResponseBuilder};
#[cfg_attr(not(feature = "_internals"), allow(unused_imports))]
pub use message::{
    parse, CSeq, EchoHeaders, HeaderField, MessageKind, Method, NameAddr, ParseError, Rejection,
    SipMessage, Uri, Via, MAX_MESSAGE_SIZE,
};
pub use outbox::{ConnId, Outbox, SipPeer, SipTransportKind};
pub use rng::SipRng;
#[cfg_attr(not(feature = "_internals"), allow(unused_imports))]
pub use syntax::Param;
