//! The SIP thread's side of the core: commands from the channel in, events out to the SIP
//! callback thread. Everything else is the core's.

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
    /// Hands the messages queued in `out` from `from` on to the trace hook, if one is set.
    fn trace_sent(&self, out: &Outbox, from: usize) {
        let trace = self.core.hooks.trace.read().clone();
        if let Some(t) = trace {
            for (data, dest) in out.queued().iter().skip(from) {
                t(true, data, dest.addr);
            }
        }
    }
}

impl SipHandler for SipThread {
    fn on_datagram(&mut self, data: &[u8], from: SipPeer, now: Instant, out: &mut Outbox) {
        let trace = self.core.hooks.trace.read().clone();
        if let Some(t) = trace {
            t(false, data, from.addr);
        }
        let before = out.queued().len();
        self.core.handle_datagram(data, from, now, out);
        self.trace_sent(out, before);
        self.deliver();
    }

    fn on_transport_error(&mut self, dest: SipPeer, reason: &str, now: Instant, out: &mut Outbox) {
        let before = out.queued().len();
        self.core.handle_transport_error(dest, reason, now, out);
        self.trace_sent(out, before);
        self.deliver();
    }

    fn set_backlog(&mut self, backlog: Duration) {
        self.core.set_load(SipLoad { backlog });
    }

    fn on_wake(&mut self, now: Instant, out: &mut Outbox) {
        let before = out.queued().len();
        self.take_commands(now, out);
        self.trace_sent(out, before);
        self.deliver();
    }

    fn on_timeout(&mut self, now: Instant, out: &mut Outbox) {
        let before = out.queued().len();
        if self.backlog.is_some() {
            self.take_commands(now, out);
        }
        self.core.handle_timeout(now, out);
        self.trace_sent(out, before);
        self.deliver();
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        // Not `Instant::now()`: the loop runs `on_timeout` when this is at or before the time
        // it read just before asking, which a fresh reading never is. The queue would then
        // wait for the next command, and every call timer with it.
        self.backlog
            .into_iter()
            .chain(self.core.poll_timeout())
            .min()
    }

    fn on_shutdown(&mut self, now: Instant, out: &mut Outbox) {
        let before = out.queued().len();
        // Commands queued before the stop still count (an unregister, a hang-up).
        while let Ok(cmd) = self.commands.try_recv() {
            self.core.handle_command(cmd, now, out);
        }
        self.core.shutdown(now, out);
        self.trace_sent(out, before);
        self.deliver();
    }

    fn is_lingering(&self) -> bool {
        self.core.is_lingering()
    }
}
