//! `SipVoiceBackend` and `SipVideoBackend`: a SIP user agent whose calls become engine sessions.
//!
//! `new` checks the configuration and starts the callback threads; `start` binds the SIP socket
//! and starts the SIP thread ([`SipTransport`]), which runs the call core. Register callbacks in
//! between, and no call can be answered before they are in place. Sessions live on a
//! [`MediaEngine`] like the RTP backends', so every session operation is the shared
//! [`MediaBackend`] one. `SipVideoBackend` is the voice backend with video negotiation switched
//! on (composition: `Deref` to the voice backend).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};

use crossbeam_channel::{unbounded, Sender};
use parking_lot::{Mutex, RwLock};

use super::api::{sealed, MediaBackend};
use super::sip_config::{CallDecision, IncomingCall, SipBackendConfig, SipStats};
use super::sip_core::{Command, Shared, SipCore, SipCounters, SipEvent};
use crate::engine::dispatch::Dispatcher;
use crate::engine::{
    EngineConfig, MediaEngine, MediaSocket, PortPool, SessionId, SessionInfo, SipTransport,
    StopSignal,
};
use crate::error::{Error, Result};

/// The SIP thread and the handles to reach it, once the backend is started.
struct Running {
    transport: SipTransport,
    wake: StopSignal,
    commands: Sender<Command>,
}

/// SIP audio calls. Video offers are answered `m=video 0`.
pub struct SipVoiceBackend {
    // Field order is drop order: the SIP thread stops (sending BYEs, closing sessions) before
    // the SIP callback thread and the engine go.
    running: OnceLock<Running>,
    /// Held while starting, so two concurrent `start` calls cannot both bind.
    starting: Mutex<()>,
    dispatcher: Arc<Dispatcher<SipEvent>>,
    shared: Arc<Shared>,
    with_video: bool,
    cfg: SipBackendConfig,
}

impl std::fmt::Debug for SipVoiceBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SipVoiceBackend")
            .field("sip", &self.local_sip_addr())
            .field("video", &self.with_video)
            .finish_non_exhaustive()
    }
}

impl SipVoiceBackend {
    /// Checks the configuration and starts the callback threads. Nothing is bound yet: register
    /// the callbacks, then call [`SipVoiceBackend::start`].
    pub fn new(cfg: SipBackendConfig) -> Result<SipVoiceBackend> {
        Self::build(cfg, false)
    }

    fn build(cfg: SipBackendConfig, with_video: bool) -> Result<SipVoiceBackend> {
        if cfg.supported_codecs.is_empty() {
            return Err(Error::InvalidArgument(
                "supported_codecs must name at least one codec".into(),
            ));
        }
        let pool = PortPool::new(cfg.rtp_port_start, cfg.rtp_port_end)?;
        let engine = MediaEngine::new(EngineConfig {
            callback_threads: cfg.callback_threads,
            callback_queue: cfg.callback_queue,
        })?;
        let shared = Arc::new(Shared {
            engine,
            pool,
            counters: SipCounters::default(),
            views: RwLock::new(HashMap::new()),
            filter: RwLock::new(None),
            on_call: RwLock::new(None),
        });
        let s = shared.clone();
        let dispatcher = Arc::new(
            Dispatcher::new(
                1,
                cfg.callback_queue.max(64),
                "rkm-sip-cb",
                Arc::new(move |ev: SipEvent| match ev {
                    SipEvent::Call(info) => {
                        let cb = s.on_call.read().clone();
                        if let Some(cb) = cb {
                            cb(&info);
                        }
                    }
                }),
            )
            .map_err(|e| Error::Io("starting the SIP callback thread".into(), e))?,
        );
        Ok(SipVoiceBackend {
            running: OnceLock::new(),
            starting: Mutex::new(()),
            dispatcher,
            shared,
            with_video,
            cfg,
        })
    }

    /// Binds the SIP socket and starts the SIP thread: from now on calls are answered, with the
    /// callbacks registered so far. Returns the bound address (the port chosen when the
    /// configuration asked for port 0). Fails with [`Error::State`] when already started.
    pub fn start(&self) -> Result<SocketAddr> {
        let _guard = self.starting.lock();
        if self.running.get().is_some() {
            return Err(Error::State("the SIP backend is already started".into()));
        }
        let sock = MediaSocket::bind(self.cfg.local_sip_addr)
            .map_err(|e| Error::Io(format!("binding SIP {}", self.cfg.local_sip_addr), e))?;
        let local = sock.local_addr();
        let (tx, rx) = unbounded();
        let cname = format!("{}@roomkit-media", uuid::Uuid::new_v4().simple());
        let core = SipCore::new(
            self.cfg.clone(),
            self.with_video,
            self.shared.clone(),
            rx,
            self.dispatcher.clone(),
            local,
            cname,
        );
        let transport = SipTransport::spawn(sock, "rkm-sip", core)
            .map_err(|e| Error::Io("starting the SIP thread".into(), e))?;
        let running = Running {
            wake: transport.signal(),
            transport,
            commands: tx,
        };
        // Cannot fail: `starting` is held and `running` was empty.
        let _ = self.running.set(running);
        Ok(local)
    }

    /// Whether [`SipVoiceBackend::start`] has run.
    pub fn is_started(&self) -> bool {
        self.running.get().is_some()
    }

    /// The configuration in use.
    pub fn config(&self) -> &SipBackendConfig {
        &self.cfg
    }

    /// The address the SIP socket is bound to; `None` before `start`.
    pub fn local_sip_addr(&self) -> Option<SocketAddr> {
        self.running.get().map(|r| r.transport.local_addr())
    }

    /// The RTP port pool (free count goes back to capacity when every call has ended).
    pub fn port_pool(&self) -> &PortPool {
        &self.shared.pool
    }

    /// Signalling counters.
    pub fn sip_stats(&self) -> SipStats {
        self.shared.counters.snapshot()
    }

    /// Screens new INVITEs before any port is taken (replaces an earlier filter). Runs on the
    /// SIP thread: it must return quickly.
    pub fn set_invite_filter<F>(&self, f: F)
    where
        F: Fn(&IncomingCall) -> CallDecision + Send + Sync + 'static,
    {
        *self.shared.filter.write() = Some(Arc::new(f));
    }

    /// A call was answered (200 sent): metadata has `caller`, `callee`, `caller_display_name`,
    /// `call_id`, `has_video`, `video_codec`, `room_id` and the `X-` headers. Runs on the SIP
    /// callback thread.
    pub fn on_call<F>(&self, f: F)
    where
        F: Fn(&SessionInfo) + Send + Sync + 'static,
    {
        *self.shared.on_call.write() = Some(Arc::new(f));
    }

    /// Ends a call: its media closes now (firing `on_client_disconnected`), and the SIP thread
    /// sends BYE (retransmitted until answered or timer F) or, while ringing, a 480. The same
    /// as [`MediaBackend::disconnect`].
    pub fn hangup(&self, session: SessionId) -> Result<()> {
        let running = self
            .running
            .get()
            .filter(|_| self.shared.views.read().contains_key(&session))
            .ok_or_else(|| Error::NotFound(format!("call with session {session}")))?;
        let _ = self.shared.engine.disconnect(session);
        let _ = running.commands.send(Command::Hangup(session));
        running.wake.wake();
        Ok(())
    }

    /// The Call-ID of a session's call.
    pub fn call_id(&self, session: SessionId) -> Option<String> {
        self.shared
            .views
            .read()
            .get(&session)
            .map(|v| v.call_id.clone())
    }

    /// True while the far end holds the call (what we send is discarded).
    pub fn is_held(&self, session: SessionId) -> bool {
        self.shared
            .engine
            .session(session)
            .is_ok_and(|s| s.is_held())
    }
}

impl sealed::Engine for SipVoiceBackend {
    fn engine(&self) -> &MediaEngine {
        &self.shared.engine
    }

    fn end_session(&self, session: SessionId) -> Result<()> {
        self.hangup(session)
    }
}

impl MediaBackend for SipVoiceBackend {}

/// SIP audio + video calls: INVITEs with a usable `m=video` get a video stream with the same
/// session id; others are audio-only calls (`has_video=false`). Everything else is
/// [`SipVoiceBackend`]'s (through `Deref`) and [`MediaBackend`]'s.
#[derive(Debug)]
pub struct SipVideoBackend {
    voice: SipVoiceBackend,
}

impl Deref for SipVideoBackend {
    type Target = SipVoiceBackend;

    fn deref(&self) -> &SipVoiceBackend {
        &self.voice
    }
}

impl SipVideoBackend {
    /// Checks the configuration and starts the callback threads; calls are answered from
    /// [`SipVoiceBackend::start`] on.
    pub fn new(cfg: SipBackendConfig) -> Result<SipVideoBackend> {
        if cfg.supported_video_codecs.is_empty() {
            return Err(Error::InvalidArgument(
                "supported_video_codecs must name at least one codec (H264, VP8)".into(),
            ));
        }
        Ok(SipVideoBackend {
            voice: SipVoiceBackend::build(cfg, true)?,
        })
    }
}

impl sealed::Engine for SipVideoBackend {
    fn engine(&self) -> &MediaEngine {
        &self.voice.shared.engine
    }

    fn end_session(&self, session: SessionId) -> Result<()> {
        self.voice.hangup(session)
    }
}

impl MediaBackend for SipVideoBackend {}
