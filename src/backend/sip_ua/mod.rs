//! The SIP user agent of the SIP backends: incoming and dialed calls, registrations, on one
//! socket.
//!
//! Three layers, each testable alone:
//! - [`SipCore`] (`state.rs` holds it and the types its `impl` blocks share; the blocks are in
//!   `core.rs`, `uas.rs`, `dial.rs`, `call.rs` and `register.rs`): every transaction, dialog
//!   and registration, driven by datagrams, commands and time, writing datagrams to an outbox
//!   and queueing events and shared-state updates. No socket, thread, clock or random
//!   source of its own (a seeded [`SipRng`](crate::sip::SipRng) is passed in): tests and the
//!   fuzzer run it on virtual time, and a run replays byte for byte. How to drive it is
//!   written on the type.
//! - [`MediaHost`] (`host.rs`): what the core asks of the media side (bind ports before an
//!   SDP names them, start a session once negotiated, move or hold it, close it).
//!   [`EngineHost`] is the engine and the port pool; [`FakeMediaHost`] records the calls.
//! - `thread.rs`: the SIP transport thread feeding the core, applying its [`SharedUpdate`]s
//!   to the [`CallDirectory`] and [`SipCounters`] the backend handle (`sip.rs`) reads, and
//!   handing its events to the SIP callback thread. The backend handle talks to the core only
//!   through [`Command`]s.

mod call;
mod command;
mod core;
mod dial;
mod events;
/// The stateful fuzz harness (the `sip_ua` fuzz target drives [`fuzz::run`]).
#[cfg(any(test, feature = "_internals"))]
pub mod fuzz;
mod host;
mod ids;
mod metadata;
mod offer;
mod overload;
mod register;
mod reinvite;
mod state;
mod thread;
mod timers;
mod uas;

// Re-exports for the `_internals` API (fuzz targets, benches, tests); without the feature the
// crate itself may not need every name.
#[cfg_attr(not(feature = "_internals"), allow(unused_imports))]
pub use command::{Command, DialRequest, OfferRequest, RegisterRequest};
#[cfg_attr(not(feature = "_internals"), allow(unused_imports))]
pub use events::{
    CallDirectory, CallProgress, CallState, CallView, RegistrationEvent, RegistrationId,
    SharedUpdate, SipCounter, SipCounters, SipEvent,
};
#[cfg_attr(not(feature = "_internals"), allow(unused_imports))]
pub use host::{
    EngineHost, MediaChange, MediaError, MediaHost, MediaStart, Reservation, StartNotifier,
};
// Test scaffolding: compiled only for tests and the unstable `_internals` feature (the fuzzer).
#[cfg(any(test, feature = "_internals"))]
pub use host::{FakeHostState, FakeMediaHost, HostCall};
#[cfg_attr(not(feature = "_internals"), allow(unused_imports))]
pub use ids::{CallNo, ReservationId, TxId};
#[cfg_attr(not(feature = "_internals"), allow(unused_imports))]
pub use overload::SipLoad;
#[cfg_attr(not(feature = "_internals"), allow(unused_imports))]
pub use state::{SipCore, SipHooks, ALLOW, MAX_REGISTRATIONS, SUPPORTED};
pub(crate) use thread::SipThread;

#[cfg(test)]
mod replay_tests;
#[cfg(test)]
mod tests;
