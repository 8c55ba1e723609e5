//! SIP signalling: parsing behind strict checks, transactions, dialogs, UAS/UAC. Pure: time is
//! passed in.
//!
//! - [`message`]: one datagram in, a checked [`SipMessage`] or a [`ParseError`] (reject with a
//!   status, or drop) out; typed accessors over raw text kept for echoing.
//! - [`builder`]: responses that copy the request's raw headers, and our own requests.
//! - [`transaction`]: INVITE and non-INVITE server transactions and our non-INVITE client
//!   transactions, sans-IO: feed input with the time, drain transmits and events, wake at
//!   `next_timeout`.
//! - [`dialog`]: tags, CSeq ordering, remote target, route set, in-dialog requests.
//! - [`auth`]: digest authentication (MD5, `qop=auth`, expiring single-use nonces).

pub mod auth;
pub mod builder;
mod check;
pub mod dialog;
mod md5;
pub mod message;
pub mod register;
pub mod route;
mod syntax;
pub mod transaction;

pub use builder::{
    new_branch, new_call_id, new_tag, reason_phrase, RequestBuilder, ResponseBuilder,
};
pub use message::{
    parse, CSeq, EchoHeaders, HeaderField, MessageKind, Method, NameAddr, ParseError, Rejection,
    SipMessage, Uri, Via, MAX_MESSAGE_SIZE,
};
pub use syntax::Param;
