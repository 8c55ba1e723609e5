//! SIP signalling: parsing behind strict checks, transactions, dialogs, UAS/UAC. Pure: time is
//! passed in.
//!
//! - [`message`]: one datagram in, a checked [`SipMessage`] or a [`ParseError`] (reject with a
//!   status, or drop) out; typed accessors over raw text kept for echoing.
//! - [`builder`]: responses that copy the request's raw headers, and our own requests.

pub mod builder;
mod check;
pub mod dialog;
pub mod message;
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
