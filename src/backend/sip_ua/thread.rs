//! The SIP thread's side of the core: commands from the channel in, events out to the SIP
//! callback thread. Everything else is the core's.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use super::command::Command;
use super::events::{CallDirectory, SipCounters, SipEvent};
use super::overload::SipLoad;
use super::state::SipCore;
use crate::engine::dispatch::Dispatcher;
use crate::engine::event::dispatch_key;
use crate::engine::SipHandler;
use crate::sip::{Outbox, SipPeer};

/// Commands a wake-up processes at most before datagrams get their turn.
pub(super) const COMMANDS_PER_WAKE: usize = 256;

/// The core as the SIP transport thread drives it.
pub(crate) struct SipThread {
    pub core: SipCore,
    pub commands: Receiver<Command>,
    pub dispatcher: Arc<Dispatcher<SipEvent>>,
    /// What the backend handle reads about the calls; written here from the core's updates.
    directory: Arc<CallDirectory>,
    counters: Arc<SipCounters>,
    /// When a wake-up last left commands queued (the `now` it ran at): the next timeout is due
    /// then, a time already past when the I/O loop compares it with its clock, so the rest of
    /// the queue is taken on the loop's next turn even if nothing else wakes the thread.
    backlog: Option<Instant>,
}

impl SipThread {
    pub(crate) fn new(
        core: SipCore,
        commands: Receiver<Command>,
        dispatcher: Arc<Dispatcher<SipEvent>>,
        directory: Arc<CallDirectory>,
        counters: Arc<SipCounters>,
    ) -> SipThread {
        SipThread {
            core,
            commands,
            dispatcher,
            directory,
            counters,
            backlog: None,
        }
    }

    /// Applies the core's updates to the shared directory and counters, then hands its events
    /// to the SIP callback thread (in that order: a callback finds its call in the directory).
    /// No event may be lost (a call, its outcome, a registration's state), so a full queue is
    /// waited on.
    fn deliver(&mut self) {
        while let Some(u) = self.core.poll_update() {
            self.directory.apply(&u);
            self.counters.apply(&u);
        }
        while let Some(ev) = self.core.poll_event() {
            let key = match &ev {
                SipEvent::Call(info) => dispatch_key(info.id),
                SipEvent::CallState(s, _) => dispatch_key(*s),
                SipEvent::Registration(id, _) => *id,
            };
            if let Err(ev) = self.dispatcher.post(key, ev) {
                self.dispatcher.post_wait(key, ev);
            }
        }
    }

    fn take_commands(&mut self, now: Instant, out: &mut Outbox) {
        self.backlog = None;
        for _ in 0..COMMANDS_PER_WAKE {
            match self.commands.try_recv() {
                Ok(cmd) => self.core.handle_command(cmd, now, out),
                Err(_) => return,
            }
        }
        if !self.commands.is_empty() {
            self.backlog = Some(now);
        }
    }
}

impl SipThread {
    /// One turn of the core: `f` runs it, then what it queued in `out` goes to the trace hook
    /// (with the `inbound` datagram before it, when the turn handles one), and its updates and
    /// events are delivered. The hook is looked up once per turn.
    fn turn(
        &mut self,
        out: &mut Outbox,
        inbound: Option<(&[u8], SocketAddr)>,
        f: impl FnOnce(&mut Self, &mut Outbox),
    ) {
        let trace = self.core.hooks.trace.read().clone();
        if let (Some(t), Some((data, from))) = (&trace, inbound) {
            t(false, data, from);
        }
        let before = out.queued().len();
        f(self, out);
        if let Some(t) = trace {
            for (data, dest) in out.queued().iter().skip(before) {
                t(true, data, dest.addr);
            }
        }
        self.deliver();
    }
}

impl SipHandler for SipThread {
    fn on_datagram(&mut self, data: &[u8], from: SipPeer, now: Instant, out: &mut Outbox) {
        self.turn(out, Some((data, from.addr)), |s, out| {
            s.core.handle_datagram(data, from, now, out)
        });
    }

    fn on_transport_error(&mut self, dest: SipPeer, reason: &str, now: Instant, out: &mut Outbox) {
        self.turn(out, None, |s, out| {
            s.core.handle_transport_error(dest, reason, now, out)
        });
    }

    fn set_backlog(&mut self, backlog: Duration) {
        self.core.set_load(SipLoad { backlog });
    }

    fn on_wake(&mut self, now: Instant, out: &mut Outbox) {
        self.turn(out, None, |s, out| s.take_commands(now, out));
    }

    fn on_timeout(&mut self, now: Instant, out: &mut Outbox) {
        self.turn(out, None, |s, out| {
            if s.backlog.is_some() {
                s.take_commands(now, out);
            }
            s.core.handle_timeout(now, out);
        });
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        // The wake-up's own time, already past for the I/O loop, so the rest of the queue is
        // taken on its next turn (a fresh clock reading would serve too, now that the loop
        // asks before it reads its clock; this does not depend on that order).
        self.backlog
            .into_iter()
            .chain(self.core.poll_timeout())
            .min()
    }

    fn on_shutdown(&mut self, now: Instant, out: &mut Outbox) {
        self.turn(out, None, |s, out| {
            // Commands queued before the stop still count (an unregister, a hang-up).
            while let Ok(cmd) = s.commands.try_recv() {
                s.core.handle_command(cmd, now, out);
            }
            s.core.shutdown(now, out);
        });
    }

    fn is_lingering(&self) -> bool {
        self.core.is_lingering()
    }
}
