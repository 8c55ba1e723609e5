//! The state of the user agent core, in one place: [`SipCore`] itself and the types its
//! `impl` blocks share (transactions, calls, dialed legs, registrations). `core.rs`, `uas.rs`,
//! `dial.rs`, `call.rs` and `register.rs` each add behaviour to [`SipCore`] and import their
//! types from here, never from one another.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::RwLock;

use super::command::DialRequest;
use super::events::{CallState, SharedUpdate, SipEvent};
use super::host::MediaHost;
use super::ids::{CallNo, ReservationId, TxId};
use super::reinvite::Reinvites;
use super::timers::TimerQueue;
use crate::backend::sip_config::{InviteFilter, SipBackendConfig};
use crate::engine::SessionId;
use crate::sdp::{Answer, AnswerConfig, Offer};
use crate::sip::auth::{DigestAuthenticator, DigestClient};
use crate::sip::dialog::{Dialog, DialogId};
use crate::sip::register::Registration;
use crate::sip::session_timer::{SessionExpires, SessionTimer};
use crate::sip::transaction::{
    InviteClientTransaction, InviteServerTransaction, NonInviteClientTransaction,
    NonInviteServerTransaction, TransactionKey,
};
use crate::sip::{EchoHeaders, SipPeer, SipRng};

/// Methods we answer, for `Allow`.
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE";
/// Option tags we support, for `Supported`.
pub const SUPPORTED: &str = "timer";
/// Most registrations one backend keeps.
pub const MAX_REGISTRATIONS: usize = 64;

/// What the application registers for the core to consult (on the SIP thread).
///
/// This one stays shared rather than arriving as a [`Command`](super::Command): it is the
/// application's own callback, which it may set from any thread at any time (before the SIP
/// thread exists too), and the core only reads it and publishes nothing through it: an input
/// the core consults, not state it owns.
#[derive(Default)]
pub struct SipHooks {
    /// Screens new INVITEs before any port is taken.
    pub filter: RwLock<Option<InviteFilter>>,
    /// Looks up inbound digest passwords, before (and instead of) `auth_users`.
    pub resolver: RwLock<Option<crate::backend::sip_config::AuthResolver>>,
    /// Sees every SIP message received and sent (`SipThread`).
    pub trace: RwLock<Option<crate::backend::sip_config::SipTrace>>,
}

/// Our answer to a server transaction's request, and what the INVITE ones need to answer.
// Transactions live in a map and are few per call; boxing the INVITE one buys nothing.
#[allow(clippy::large_enum_variant)]
pub(super) enum ServerTx {
    Invite {
        tx: InviteServerTransaction,
        echo: EchoHeaders,
        /// Our To tag for every response of this INVITE.
        tag: String,
        /// The call this INVITE belongs to, once there is one.
        call: Option<CallNo>,
        /// The INVITE's Record-Route values, copied into 1xx/2xx (RFC 3261 §12.1.1).
        record_route: Vec<String>,
    },
    NonInvite(NonInviteServerTransaction),
}

pub(super) struct ServerEntry {
    pub key: TransactionKey,
    pub dest: SipPeer,
    pub tx: ServerTx,
    /// The request's Request-URI was a `sips:` URI: our Contact in the answer must be one too
    /// (RFC 3261 §12.1.1).
    pub sips: bool,
}

/// Why we sent a non-INVITE request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ClientKind {
    Bye,
}

pub(super) struct ClientEntry {
    pub dest: SipPeer,
    pub tx: NonInviteClientTransaction,
    pub kind: ClientKind,
    /// The Call-ID of the dialog a BYE of ours closes (its entry in `closing`).
    pub closes: Option<String>,
}

/// One of our INVITEs (initial or re-INVITE) and the call it belongs to.
pub(super) struct InviteEntry {
    pub dest: SipPeer,
    pub tx: InviteClientTransaction,
    pub call: CallNo,
    pub reinvite: bool,
}

/// A client transaction a response may belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ClientRef {
    NonInvite(TxId),
    Invite(TxId),
}

/// What a timer wakes up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum TimerKey {
    Server(TxId),
    Client(TxId),
    Invite(TxId),
    Call(CallNo),
    /// A registration, by the application's [`RegistrationId`](super::RegistrationId).
    Registration(u64),
}

/// The user agent core of one backend: every transaction, call and registration, with no
/// socket, thread, clock or random source of its own, and no shared state but the
/// application's INVITE filter it reads ([`SipHooks`]).
///
/// # How to drive it
///
/// Its methods are of four kinds:
/// - **getters** (`call_count`, `transaction_count`, `registration_count`, `is_lingering`):
///   read only, callable at any time.
/// - **set-up**: [`listen_on`](SipCore::listen_on) for each TCP/TLS listener, before the
///   first input.
/// - **inputs from the network and the clock**, `handle_*`:
///   [`handle_datagram`](SipCore::handle_datagram) for each datagram (or, on TCP/TLS, each
///   framed message, with the [`SipPeer`] naming its connection) received,
///   [`handle_transport_error`](SipCore::handle_transport_error) when a TCP/TLS connection
///   failed (refused, handshake refused, reset, closed, keep-alive unanswered; with the reason
///   the user will read), and
///   [`handle_timeout`](SipCore::handle_timeout) once the instant [`poll_timeout`] gave has
///   been reached.
/// - **commands**, what the application asks: [`handle_command`](SipCore::handle_command)
///   (dial, hang up, hold, video, register, unregister) and
///   [`shutdown`](SipCore::shutdown).
/// - **outputs**, `poll_*`: [`poll_update`](SipCore::poll_update) (changes for the shared
///   call directory and counters), [`poll_event`](SipCore::poll_event) (what the
///   application's callbacks hear) and [`poll_timeout`] (when to call `handle_timeout`).
///   Messages to send go into the [`Outbox`](crate::sip::Outbox) each input is given (a
///   TCP/TLS destination without a connection asks the I/O side to open one), and
///   media work goes to the [`MediaHost`] synchronously.
///
/// After **any** input or command, the caller:
/// 1. sends what the outbox holds, in order;
/// 2. drains `poll_update` until `None` and applies each to the shared state;
/// 3. drains `poll_event` until `None` (after the updates, so a callback finds its call in
///    the directory);
/// 4. asks `poll_timeout` last (the input may have moved it) and sleeps until then or the
///    next datagram or command, whichever comes first.
///
/// Every input carries `now`, and `now` never goes backwards from one call to the next
/// (an [`Instant`] from a monotonic clock, or a virtual one in tests). Calling
/// `handle_timeout` early is harmless (nothing is due yet); calling it late only delays
/// what was due.
///
/// Every random draw (tags, branches, nonces, SDP session ids, jitter, session ids of
/// incoming calls) comes from the [`SipRng`] given to [`new`](SipCore::new): with the same
/// seed, inputs and times, a run sends the same bytes.
///
/// [`poll_timeout`]: SipCore::poll_timeout
pub struct SipCore {
    pub(super) cfg: SipBackendConfig,
    pub(super) with_video: bool,
    pub(super) host: Box<dyn MediaHost>,
    pub(super) hooks: Arc<SipHooks>,
    /// Every random draw of the core (tags, branches, nonces, SDP session ids, jitter).
    pub(super) rng: SipRng,
    /// Our TCP and TLS ports, when the engine listens there.
    pub(super) tcp_port: Option<u16>,
    pub(super) tls_port: Option<u16>,
    /// Our `host:port` for Via and Contact on UDP (see `sent_by_on` for the others).
    pub(super) sent_by: String,
    /// The host part of `sent_by` (the address written in SDP when none is configured).
    pub(super) host_ip: IpAddr,
    /// Checks incoming requests' credentials; made on first need (`authenticate`).
    pub(super) auth: Option<DigestAuthenticator>,
    pub(super) next_id: u64,
    pub(super) servers: HashMap<TxId, ServerEntry>,
    pub(super) server_index: HashMap<TransactionKey, TxId>,
    pub(super) clients: HashMap<TxId, ClientEntry>,
    // The maps the core iterates (`invites` when a call ends, `calls` and `registrations` at
    // shutdown and when matching responses) are ordered: what a replay sends, and in which
    // order, must not depend on a hasher's random seed.
    pub(super) invites: BTreeMap<TxId, InviteEntry>,
    pub(super) client_index: HashMap<TransactionKey, ClientRef>,
    pub(super) calls: BTreeMap<CallNo, Call>,
    pub(super) call_index: HashMap<String, CallNo>,
    pub(super) by_session: HashMap<SessionId, CallNo>,
    pub(super) registrations: BTreeMap<u64, RegEntry>,
    /// Dialogs we sent BYE in, by Call-ID, with that BYE's transaction: until it ends the
    /// dialog still exists for the peer, and a BYE of its own crossing ours is answered 200
    /// (RFC 3261 §15.1.2), not 481.
    pub(super) closing: HashMap<String, (DialogId, TxId)>,
    /// The To tags of 2xx forks we ACKed and ended, per INVITE transaction (one BYE each).
    pub(super) ended_forks: HashMap<TxId, Vec<String>>,
    /// INVITE transactions of calls that ended while they were unanswered (a re-INVITE that
    /// only got a provisional response has no timer of its own): cancelled at the end of the
    /// current input, so they end too.
    pub(super) orphan_invites: Vec<TxId>,
    pub(super) timers: TimerQueue<TimerKey>,
    pub(super) events: VecDeque<SipEvent>,
    /// Changes for the directory and counters other threads read.
    pub(super) updates: VecDeque<SharedUpdate>,
    pub(super) stopping: bool,
    /// The load the SIP thread reported, and the per-source rate limit.
    pub(super) overload: super::overload::Overload,
    /// Sessions the host is starting off the SIP thread, with when each was handed over
    /// (overload control reads the oldest) and, once their call has ended meanwhile, why: the
    /// host closes them when they report.
    pub(super) starting: super::overload::PendingStarts,
}

impl std::fmt::Debug for SipCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SipCore")
            .field("sent_by", &self.sent_by)
            .field("calls", &self.calls.len())
            .field("registrations", &self.registrations.len())
            .finish_non_exhaustive()
    }
}

/// Where a call stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Incoming: sessions exist, 180 sent; the 200 goes out at `answer_at`.
    Ringing { answer_at: Instant },
    /// Outgoing: our INVITE awaits its final response.
    Dialing,
    /// 200 sent or received: the dialog is confirmed.
    Confirmed,
}

/// A call's media as signalling sees it.
#[derive(Debug)]
pub(super) struct CallMedia {
    /// Ports bound for the call whose media has not started.
    pub reservation: Option<ReservationId>,
    /// The session's media runs (the host must close it).
    pub started: bool,
    /// The host is starting the session's media off the SIP thread
    /// ([`MediaHost::start_deferred`](super::MediaHost::start_deferred)): no 200 until it
    /// reports.
    pub starting: bool,
    /// The description we last sent and what it agreed to.
    pub local: Option<Answer>,
    /// Our ports and codecs, for answering new offers.
    pub answer_cfg: AnswerConfig,
    /// Our offer in an outgoing re-INVITE, awaiting its answer.
    pub pending_offer: Option<Offer>,
}

/// The user part of our Contact when the application named none.
pub(super) const DEFAULT_CONTACT_USER: &str = "roomkit";

/// One call and everything released with it.
pub(super) struct Call {
    pub no: CallNo,
    pub call_id: String,
    pub session: SessionId,
    pub outgoing: bool,
    pub phase: Phase,
    /// The dialog (an outgoing call has one from its first tagged response).
    pub dialog: Option<Dialog>,
    /// Where requests go when the dialog's next hop names no IP address: where the INVITE
    /// came from, or where ours went.
    pub peer: SipPeer,
    /// The server transaction of the INVITE we answer now (initial or re-INVITE).
    pub invite_tx: Option<TxId>,
    pub media: CallMedia,
    /// The session timer, when one was negotiated.
    pub timer: Option<SessionTimer>,
    /// Incoming, until answered: the session timer the 200 will carry, and its headers.
    pub uas_timer: Option<(SessionExpires, Vec<(&'static str, String)>)>,
    /// The session as announced (an incoming call's `on_call`).
    pub info: Option<std::sync::Arc<crate::engine::SessionInfo>>,
    /// Our re-INVITEs: the one in progress and what waits for the next.
    pub reinvite: Reinvites,
    /// Our first INVITE, while dialing.
    pub uac: Option<Box<UacLeg>>,
    /// The ACK we sent for the 2xx of our INVITE transaction `.0` (sent again when the 2xx
    /// is retransmitted).
    pub ack: Option<(TxId, Vec<u8>, SipPeer)>,
    /// Credentials a dialed call learned; in-dialog requests carry them too.
    pub auth: Option<DigestClient>,
    /// The user part of our Contact.
    pub contact_user: String,
    /// The dialog was set up with a `sips:` Request-URI, so our Contact says `sips:` (RFC 3261
    /// §8.1.1.8, §12.1.1); otherwise a TLS call's Contact is `sip:...;transport=tls`.
    pub sips: bool,
    /// The last progress reported (dialed calls).
    pub last_state: Option<CallState>,
    /// The peer left the media with RTCP BYE: when we send BYE ourselves unless the peer's
    /// BYE, which may take a longer path through proxies, ends the call first.
    pub bye_after_media_left: Option<Instant>,
    /// When the call began: its INVITE arrived, or `dial` was handled. Its setup time is
    /// measured from here.
    pub began: Instant,
    /// Incoming, while ringing: the invite filter deferred the decision; the 200 waits for
    /// `Command::Decide`, and the ringing deadline is when the call is refused (408).
    pub deferred: bool,
}

impl Call {
    /// A call in `phase` with no dialog, transaction, timer or re-INVITE yet: what an incoming
    /// and a dialed call have in common. The caller sets what only its side has.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        no: CallNo,
        call_id: String,
        session: SessionId,
        outgoing: bool,
        phase: Phase,
        peer: SipPeer,
        media: CallMedia,
        began: Instant,
    ) -> Call {
        Call {
            began,
            no,
            call_id,
            session,
            outgoing,
            phase,
            dialog: None,
            peer,
            invite_tx: None,
            media,
            timer: None,
            uas_timer: None,
            info: None,
            reinvite: Reinvites::default(),
            uac: None,
            ack: None,
            auth: None,
            contact_user: DEFAULT_CONTACT_USER.into(),
            sips: false,
            last_state: None,
            bye_after_media_left: None,
            deferred: false,
        }
    }

    /// When the call's own timer (ringing, dial timeout, retry, session timer) is due.
    pub(super) fn deadline(&self) -> Option<Instant> {
        let ring = match self.phase {
            // While the media starts, the 200 waits for the host's report, not for a timer.
            Phase::Ringing { .. } if self.media.starting => None,
            Phase::Ringing { answer_at } => Some(answer_at),
            _ => None,
        };
        let dial = self.uac.as_ref().and_then(|u| u.deadline());
        [
            ring,
            dial,
            self.reinvite.retry_at,
            self.timer.as_ref().and_then(SessionTimer::poll_timeout),
            self.bye_after_media_left,
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// A dialed call until its INVITE has a final answer.
#[derive(Debug)]
pub(super) struct UacLeg {
    pub request: DialRequest,
    /// The INVITE client transaction of the latest INVITE.
    pub invite_tx: TxId,
    pub from_tag: String,
    pub cseq: u32,
    /// The Request-URI and first hop of the latest INVITE (a 3xx changes them).
    pub target: String,
    pub hop: SipPeer,
    pub offer: Offer,
    pub redirected: bool,
    pub attempts: u32,
    /// The session interval we ask for (a 422 raises it); `None`: no session timer asked.
    pub session_expires: Option<u32>,
    /// When to give up ringing and CANCEL.
    pub ring_deadline: Instant,
    /// Why we cancelled, once we did.
    pub cancelled: Option<String>,
}

impl UacLeg {
    /// When the dial gives up (no more once it cancelled: the transaction bounds the rest).
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.cancelled.is_none().then_some(self.ring_deadline)
    }
}

/// One registration and where its REGISTERs go.
pub(super) struct RegEntry {
    pub reg: Registration,
    pub dest: SipPeer,
}

/// True for a `sips:` URI (a request to it must reach its target over TLS hop by hop, and our
/// Contact in its dialog is `sips:` too).
pub(super) fn is_sips(uri: &str) -> bool {
    uri.trim_start()
        .get(..5)
        .is_some_and(|s| s.eq_ignore_ascii_case("sips:"))
}
