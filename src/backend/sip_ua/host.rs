//! The media side of SIP calls, behind the small trait the call core drives ([`MediaHost`]).
//!
//! The core decides *when* (ports before an offer or answer is written, media once a
//! negotiation is known, new remotes after a re-INVITE, close at hang-up); the host decides
//! *how*. [`EngineHost`] binds real sockets from the port pool and runs engine sessions;
//! [`FakeMediaHost`] hands out made-up ports and records what it was asked, so the core runs in
//! tests and under the fuzzer with no socket and no thread.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::webrtc::TurnClient;

use crossbeam_channel::{unbounded, Sender};
#[cfg(any(test, feature = "_internals"))]
use parking_lot::Mutex;

use super::super::resilience::ResilienceConfig;
use super::super::sip_config::SipBackendConfig;
use super::ids::ReservationId;
use crate::codec::h264::PacketizationMode;
use crate::codec::voice::AppRate;
#[cfg(any(test, feature = "_internals"))]
use crate::engine::event::StreamInfo;
use crate::engine::event::{EndReason, SessionInfo};
use crate::engine::{
    AudioParams, BoundMedia, MediaEngine, MediaParams, PortPool, RtpSockets, SessionId,
    SessionSpec, SourcePolicy, StreamConfig, VideoParams,
};
use crate::frame::{Delivery, DtmfEvent};
use crate::rtp::fec::FecConfig;
#[cfg(any(test, feature = "_internals"))]
use crate::sdp::Direction;
use crate::sdp::Negotiation;

/// Ports bound for a call before its SDP is written: they are the call's from now on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    /// Names the reservation in [`MediaHost::start`] and [`MediaHost::release`].
    pub id: ReservationId,
    /// The audio RTP port (RTCP on the next one unless rtcp-mux is agreed).
    pub audio_port: u16,
    /// The video RTP port, when video was asked for.
    pub video_port: Option<u16>,
    /// The audio socket's server-reflexive address, when a STUN server told it (ICE only).
    pub audio_srflx: Option<SocketAddr>,
    /// The video socket's server-reflexive address, likewise.
    pub video_srflx: Option<SocketAddr>,
    /// The audio socket's relayed address, when a TURN server allocated one (ICE only).
    pub audio_relayed: Option<SocketAddr>,
    /// The video socket's relayed address, likewise.
    pub video_relayed: Option<SocketAddr>,
}

/// Why the media side could not do what the core asked: the call is refused or failed with
/// `status` (503 for no ports, 500 otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaError {
    /// The SIP status that describes the failure.
    pub status: u16,
    /// What went wrong.
    pub reason: String,
}

impl MediaError {
    fn unavailable(reason: impl Into<String>) -> MediaError {
        MediaError {
            status: 503,
            reason: reason.into(),
        }
    }
}

/// What a call's media session is made of once its negotiation is known.
#[derive(Debug, Clone)]
pub struct MediaStart {
    /// The session id (chosen by the core: a dialed call has it before any media exists).
    pub session: SessionId,
    /// The reservation whose sockets the session uses; the host frees what it does not need
    /// (video sockets for a call that ended up audio-only).
    pub reservation: ReservationId,
    /// The agreed streams.
    pub negotiation: Negotiation,
    /// Room and participant as the application sees them.
    pub room_id: String,
    pub participant_id: String,
    pub metadata: HashMap<String, String>,
    pub video_metadata: HashMap<String, String>,
}

/// A change to a running session after a new offer/answer: `None` fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaChange {
    /// New audio RTP and RTCP addresses.
    pub audio_remote: Option<(SocketAddr, SocketAddr)>,
    /// New video RTP and RTCP addresses.
    pub video_remote: Option<(SocketAddr, SocketAddr)>,
    /// Whether sending is suspended (the far end holds the call).
    pub held: Option<bool>,
    /// Whether the far end is meant to send us media (not while we hold it, nor `inactive`).
    pub receiving: Option<bool>,
    /// New SRTP keys for the audio stream (RFC 4568 §7.1.4 re-keying): new contexts, the
    /// previous receive key still accepted briefly for packets in flight.
    pub audio_srtp: Option<crate::SrtpKeys>,
    /// New SRTP keys for the running video stream.
    pub video_srtp: Option<crate::SrtpKeys>,
}

impl MediaChange {
    /// The SRTP keys a new offer/answer (`new`, against `old`) changed on the streams that
    /// keep running; a video stream added now gets its keys with the stream.
    pub(super) fn rekeyed(old: &Negotiation, new: &Negotiation) -> MediaChange {
        let changed = |o: Option<&crate::SrtpKeys>, n: Option<&crate::SrtpKeys>| match (o, n) {
            (o, Some(n)) if o != Some(n) => Some(n.clone()),
            _ => None,
        };
        MediaChange {
            audio_srtp: changed(old.audio.srtp.as_ref(), new.audio.srtp.as_ref()),
            video_srtp: match (&old.video, &new.video) {
                (Some(o), Some(n)) => changed(o.srtp.as_ref(), n.srtp.as_ref()),
                _ => None,
            },
            ..MediaChange::default()
        }
    }
}

/// The media side as the SIP core sees it. Every method runs on the SIP thread and must not
/// block on the network.
pub trait MediaHost: Send {
    /// Binds sockets for a new call: audio always, video when `video`.
    fn reserve(&mut self, video: bool) -> Result<Reservation, MediaError>;
    /// Gives a reservation back (the call ended before its media started).
    fn release(&mut self, reservation: ReservationId);
    /// Starts the session's media on its reserved sockets and announces it to the
    /// application. On failure the reservation is gone too.
    fn start(&mut self, start: MediaStart) -> Result<Arc<SessionInfo>, MediaError>;
    /// [`start`](MediaHost::start) for an incoming call, which the host may finish off the
    /// SIP thread: `Ok(None)` says the outcome comes later, as
    /// [`Command::MediaStarted`](super::Command::MediaStarted) for
    /// [`SipCore::handle_command`](super::SipCore::handle_command). Until then the core sends
    /// no 200 and neither closes nor updates the session. By default, at once.
    fn start_deferred(
        &mut self,
        start: MediaStart,
    ) -> Result<Option<Arc<SessionInfo>>, MediaError> {
        self.start(start).map(Some)
    }
    /// Applies a renegotiation to a running session.
    fn update(&mut self, session: SessionId, change: MediaChange);
    /// A DTMF digit that arrived in SIP (INFO) for the application.
    fn dtmf(&mut self, session: SessionId, event: DtmfEvent);
    /// Ends a session's media (a call that ended, for `reason`); may finish after returning.
    fn close(&mut self, session: SessionId, reason: EndReason);
    /// Binds a video port for a running session that is adding video (its `video_port`; the
    /// audio port is 0). Given back with [`MediaHost::release`] or used by `add_video`.
    fn reserve_video(&mut self) -> Result<Reservation, MediaError>;
    /// Gives a running session the video stream `negotiation.video` on reserved ports.
    fn add_video(
        &mut self,
        session: SessionId,
        reservation: ReservationId,
        negotiation: &Negotiation,
        video_metadata: HashMap<String, String>,
    ) -> Result<(), MediaError>;
    /// Ends a running session's video stream; the session goes on with audio.
    fn remove_video(&mut self, session: SessionId);
    /// The fingerprint of the DTLS certificate our streams present, written in our SDP;
    /// `None` when the host runs no DTLS-SRTP (the SDP then offers and accepts none).
    fn dtls_fingerprint(&self) -> Option<crate::sdp::Fingerprint> {
        None
    }
}

/// How the engine host configures streams: the backend's media settings.
#[derive(Debug, Clone)]
struct StreamSettings {
    local_rtp_ip: IpAddr,
    symmetric_rtp: bool,
    rtcp_interval: Duration,
    mtu: usize,
    delivery: Delivery,
    wait_for_keyframe: bool,
    resilience: ResilienceConfig,
    cname: String,
    audio_sample_rate: AppRate,
    /// The backend's DTLS certificate, when DTLS-SRTP is on: every stream presents it.
    dtls_identity: Option<crate::webrtc::DtlsIdentity>,
    /// The STUN server each reservation's sockets ask for their server-reflexive address
    /// (with ICE and DTLS-SRTP on and a server configured).
    stun_server: Option<SocketAddr>,
    /// The TURN server and credentials each reservation's sockets allocate a relayed address
    /// with (with ICE and DTLS-SRTP on and a server configured).
    turn: Option<crate::webrtc::TurnConfig>,
}

/// A session to close (with its reason; only its video when `None`). Its ports go back to the
/// pool when its sockets close: each [`RtpSockets`] holds its lease.
type Reap = (SessionId, Option<EndReason>);

/// Gives a stream's ICE agent the TURN allocation made on its socket (`base`), when ICE was
/// negotiated: its relayed candidate is in our SDP.
fn hand_relay(
    params: &mut Option<crate::webrtc::IceDtlsParams>,
    client: Option<TurnClient>,
    base: SocketAddr,
) {
    if let (Some(ice), Some(client)) = (params.as_mut().and_then(|p| p.ice.as_mut()), client) {
        ice.relay = Some(crate::webrtc::RelayParams { client, base });
    }
}

/// How long a STUN server that answered none of a reservation's sockets is left alone.
const STUN_QUIET: Duration = Duration::from_secs(30);

/// Sessions the reaper closes together at most (see [`EngineHost::new`]).
const REAP_BATCH: usize = 256;

/// Where the setup worker reports a session it started (or could not start), for the SIP
/// thread: the backend queues it as a command and wakes the thread.
pub type StartNotifier = Box<dyn Fn(SessionId, Result<Arc<SessionInfo>, MediaError>) + Send>;

/// Sessions the setup worker started that the core has not closed yet: those left when the
/// host is dropped were never heard of by the core (it had stopped), and are closed then.
type Unclosed = Arc<parking_lot::Mutex<std::collections::HashSet<SessionId>>>;

/// Everything a session needs to start, prepared on the SIP thread (cheap); running it
/// (opening the streams, starting their threads) is the costly part.
struct SetupJob {
    session: SessionId,
    spec: SessionSpec,
    bound: BoundMedia,
    held: bool,
    expects_media: bool,
    /// A BUNDLE group both sides agreed to: the one transport's parameters and how the audio
    /// and video streams' packets are told apart.
    bundle: Option<(
        crate::webrtc::IceDtlsParams,
        (crate::webrtc::MemberRoute, crate::webrtc::MemberRoute),
    )>,
}

impl SetupJob {
    /// Creates the engine session (on failure its sockets close and their ports go back).
    fn run(self, engine: &MediaEngine) -> Result<Arc<SessionInfo>, MediaError> {
        let info = match self.bundle {
            Some((params, routes)) => {
                engine.create_session_bundled(self.session, self.spec, self.bound, params, routes)
            }
            None => engine.create_session_bound(self.session, self.spec, self.bound),
        }
        .map_err(|e| MediaError::unavailable(format!("media: {e}")))?;
        if let Ok(s) = engine.session(self.session) {
            s.set_held(self.held);
            s.set_expects_media(self.expects_media);
        }
        Ok(info)
    }
}

/// The production host: ports from the backend's pool, bound at once; sessions on the
/// backend's engine; closing on a reaper thread (joining stream threads takes a while under
/// load and must not hold up signalling).
pub struct EngineHost {
    engine: Arc<MediaEngine>,
    pool: PortPool,
    settings: StreamSettings,
    next_id: u64,
    reserved: HashMap<ReservationId, (Option<RtpSockets>, Option<RtpSockets>)>,
    reaper: Option<(Sender<Reap>, std::thread::JoinHandle<()>)>,
    /// The setup worker: incoming calls' sessions are started there, off the SIP thread.
    setup: Option<(Sender<SetupJob>, std::thread::JoinHandle<()>)>,
    unclosed: Unclosed,
    /// Where server-reflexive gathering is counted (the backend's signalling counters).
    counters: Option<Arc<super::SipCounters>>,
    /// Until when the STUN server is not asked (it answered none of the last gathering).
    stun_quiet_until: Option<std::time::Instant>,
    /// The TURN allocations of reservations not started yet (audio, video): a started
    /// stream's transport takes them over.
    relays: HashMap<ReservationId, (Option<TurnClient>, Option<TurnClient>)>,
    /// Until when the TURN server is not asked (none of the last allocations succeeded).
    turn_quiet_until: Option<std::time::Instant>,
}

impl std::fmt::Debug for EngineHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineHost")
            .field("reserved", &self.reserved.len())
            .finish_non_exhaustive()
    }
}

impl EngineHost {
    /// A host for the backend configured by `cfg`; `cname` is the RTCP CNAME of its streams.
    /// With `notify`, incoming calls' sessions start on a setup worker thread, which reports
    /// each through it; without, on the calling (SIP) thread.
    pub fn new(
        engine: Arc<MediaEngine>,
        pool: PortPool,
        cfg: &SipBackendConfig,
        cname: String,
        notify: Option<StartNotifier>,
        dtls_identity: Option<crate::webrtc::DtlsIdentity>,
    ) -> EngineHost {
        let (tx, rx) = unbounded::<Reap>();
        let e = engine.clone();
        // Without the reaper thread, sessions are closed inline on the SIP thread.
        let reaper = std::thread::Builder::new()
            .name("rkm-sip-reaper".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    // What is queued goes together: every session's threads are asked to stop
                    // first, so they wind down side by side, then each is joined. One at a time,
                    // each join would wait for its thread's turn on a busy machine, and
                    // sessions (and their ports) would pile up here under a high call rate.
                    let batch: Vec<Reap> = std::iter::once(first)
                        .chain(rx.try_iter().take(REAP_BATCH - 1))
                        .collect();
                    for (id, reason) in &batch {
                        if reason.is_some() {
                            e.begin_disconnect(*id);
                        }
                    }
                    for (id, reason) in batch {
                        close_now(&e, id, reason);
                    }
                }
            })
            .ok()
            .map(|h| (tx, h));
        let unclosed = Unclosed::default();
        // Without the setup thread, sessions start inline on the SIP thread.
        let setup = notify.and_then(|notify| {
            let (tx, rx) = unbounded::<SetupJob>();
            let (e, unclosed) = (engine.clone(), unclosed.clone());
            std::thread::Builder::new()
                .name("rkm-sip-setup".into())
                .spawn(move || {
                    for job in rx {
                        let session = job.session;
                        let result = job.run(&e);
                        if result.is_ok() {
                            unclosed.lock().insert(session);
                        }
                        notify(session, result);
                    }
                })
                .ok()
                .map(|h| (tx, h))
        });
        EngineHost {
            engine,
            pool,
            settings: StreamSettings {
                local_rtp_ip: cfg.local_rtp_ip,
                symmetric_rtp: cfg.symmetric_rtp,
                rtcp_interval: cfg.rtcp_interval,
                mtu: cfg.mtu,
                delivery: cfg.delivery,
                wait_for_keyframe: cfg.wait_for_keyframe,
                resilience: cfg.resilience.clone(),
                cname,
                audio_sample_rate: cfg.audio_sample_rate,
                dtls_identity,
                // ICE runs on DTLS-SRTP streams only: without it, nothing would use a srflx.
                stun_server: cfg
                    .stun_server
                    .filter(|_| cfg.ice && cfg.dtls_srtp != crate::DtlsSrtpPolicy::Off),
                turn: cfg
                    .turn_server
                    .filter(|_| cfg.ice && cfg.dtls_srtp != crate::DtlsSrtpPolicy::Off)
                    .map(|s| crate::webrtc::TurnConfig::new(s, &cfg.turn_user, &cfg.turn_password)),
            },
            next_id: 0,
            reserved: HashMap::new(),
            reaper,
            setup,
            unclosed,
            counters: None,
            stun_quiet_until: None,
            relays: HashMap::new(),
            turn_quiet_until: None,
        }
    }

    /// Counts server-reflexive gathering (`srflx_gathered`, `srflx_failed`) in `counters`.
    pub fn count_into(mut self, counters: Arc<super::SipCounters>) -> EngineHost {
        self.counters = Some(counters);
        self
    }

    /// A pool port whose RTP and RTCP ports bind now, the lease held by the sockets. Ports
    /// something else holds (another program; the kernel's pick for some port-0 socket when the
    /// range overlaps the ephemeral ports) are counted, skipped and go back to the end of the
    /// pool; every free port is tried once before the call fails.
    fn bind_port(&self) -> Result<RtpSockets, MediaError> {
        let mut busy = Vec::new();
        let mut last = None;
        for _ in 0..self.pool.capacity() {
            let Some(lease) = self.pool.acquire() else {
                break;
            };
            let addr = SocketAddr::new(self.settings.local_rtp_ip, lease.port());
            match RtpSockets::bind(addr, false) {
                Ok(s) => return Ok(s.hold(lease)),
                Err(e) => {
                    self.pool.count_busy();
                    last = Some(e.to_string());
                    busy.push(lease);
                }
            }
        }
        Err(MediaError::unavailable(match last {
            Some(e) => format!("media: no RTP port binds ({e})"),
            None => "no free RTP port".into(),
        }))
    }

    /// The server-reflexive address of each socket (in order) when a STUN server is
    /// configured; empty otherwise. Waits on this (the SIP) thread, at most the binding budget
    /// (500 ms) for all of them together; a failed binding leaves that socket's host candidate
    /// only, and is counted in `srflx_failed`. When none of a reservation's sockets got an
    /// answer, the server is not asked again for [`STUN_QUIET`] (those calls offer host
    /// candidates only, counted as failed): an unreachable server must not hold up every call's
    /// signalling.
    fn gather(&mut self, sockets: &[&crate::engine::MediaSocket]) -> Vec<Option<SocketAddr>> {
        let Some(server) = self.settings.stun_server else {
            return Vec::new();
        };
        let now = std::time::Instant::now();
        let (srflx, failed) = if self.stun_quiet_until.is_some_and(|t| now < t) {
            (vec![None; sockets.len()], sockets.len() as u64)
        } else {
            let g = crate::engine::stun_gather::gather_srflx(
                sockets,
                server,
                crate::webrtc::BindingConfig::default(),
            );
            let none = !g.srflx.is_empty() && g.srflx.iter().all(Option::is_none);
            self.stun_quiet_until = none.then(|| now + STUN_QUIET);
            (g.srflx, g.failed)
        };
        if let Some(c) = &self.counters {
            let gathered = srflx.iter().flatten().count() as u64;
            c.srflx_gathered.fetch_add(gathered, Ordering::Relaxed);
            c.srflx_failed.fetch_add(failed, Ordering::Relaxed);
        }
        srflx
    }

    /// A TURN allocation for each socket (in order) when a TURN server is configured; empty
    /// otherwise. Waits on this (the SIP) thread, at most
    /// [`turn_gather::DEFAULT_BUDGET`](crate::engine::turn_gather::DEFAULT_BUDGET) for all of
    /// them together; a failed allocation leaves that socket without a relayed candidate.
    /// When none succeeded, the server is not asked again for [`STUN_QUIET`].
    fn gather_relays(
        &mut self,
        sockets: &[&crate::engine::MediaSocket],
    ) -> Vec<Option<TurnClient>> {
        let Some(config) = &self.settings.turn else {
            return Vec::new();
        };
        let now = std::time::Instant::now();
        if self.turn_quiet_until.is_some_and(|t| now < t) {
            return Vec::new();
        }
        let got = crate::engine::turn_gather::gather_relayed(
            sockets,
            config,
            crate::engine::turn_gather::DEFAULT_BUDGET,
        );
        let none = !got.is_empty() && got.iter().all(Option::is_none);
        self.turn_quiet_until = none.then(|| now + STUN_QUIET);
        got
    }

    fn source_policy(&self) -> SourcePolicy {
        if self.settings.symmetric_rtp {
            SourcePolicy::LatchFirst
        } else {
            SourcePolicy::RemoteOnly
        }
    }

    fn audio_stream(
        &self,
        neg: &Negotiation,
        local: SocketAddr,
    ) -> Result<StreamConfig, MediaError> {
        let a = &neg.audio;
        let r = &self.settings.resilience;
        let ice_dtls = self.ice_dtls(a.transport.as_ref())?;
        Ok(r.stream(StreamConfig {
            media: MediaParams::Audio(r.audio(AudioParams {
                payload_type: a.pt,
                clock_rate: a.clock_rate,
                dtmf_payload_type: a.dtmf_pt,
                codec: a.codec.voice_codec(),
                app_rate: self.settings.audio_sample_rate,
                opus_max_playback_rate: a.opus.and_then(|o| o.max_playback_rate),
                ..Default::default()
            })),
            local_addr: local,
            remote_addr: a.remote,
            remote_rtcp_addr: Some(a.remote_rtcp),
            rtcp_mux: a.rtcp_mux,
            source_policy: self.source_policy(),
            rtcp_interval: self.settings.rtcp_interval,
            cname: self.settings.cname.clone(),
            session: SessionId::nil(),
            srtp: a.srtp.clone(),
            ice_dtls,
            ..Default::default()
        }))
    }

    fn video_stream(
        &self,
        neg: &Negotiation,
        local: SocketAddr,
    ) -> Result<Option<StreamConfig>, MediaError> {
        let Some(v) = neg.video.as_ref() else {
            return Ok(None);
        };
        let ice_dtls = self.ice_dtls(v.transport.as_ref())?;
        let r = &self.settings.resilience;
        // NACKs only to a peer that said it takes them, RTX only on the payload type agreed.
        let params = r.video(
            VideoParams {
                payload_type: v.pt,
                clock_rate: v.clock_rate,
                codec: v.codec,
                delivery: self.settings.delivery,
                wait_for_keyframe: self.settings.wait_for_keyframe,
                deliver_incomplete: false,
                mtu: self.settings.mtu,
                packetization_mode: if v.packetization_mode == Some(0) {
                    PacketizationMode::SingleNal
                } else {
                    PacketizationMode::NonInterleaved
                },
                ..Default::default()
            },
            v.nack,
            v.rtx_pt,
            // Congestion control and FEC only where offer and answer agreed on them.
            v.congestion(),
            v.fec.map(|(red, ulpfec)| FecConfig {
                red_payload_type: red,
                ulpfec_payload_type: ulpfec,
                ..FecConfig::default()
            }),
        );
        Ok(Some(r.stream(StreamConfig {
            media: MediaParams::Video(params),
            local_addr: local,
            remote_addr: v.remote,
            remote_rtcp_addr: Some(v.remote_rtcp),
            rtcp_mux: v.rtcp_mux,
            source_policy: self.source_policy(),
            rtcp_interval: self.settings.rtcp_interval,
            cname: self.settings.cname.clone(),
            session: SessionId::nil(),
            srtp: v.srtp.clone(),
            ice_dtls,
            ..Default::default()
        })))
    }
}

impl MediaHost for EngineHost {
    fn reserve(&mut self, video: bool) -> Result<Reservation, MediaError> {
        let audio = self.bind_port()?;
        let video = if video {
            // No video port left is not fatal: the call goes on audio-only.
            self.bind_port().ok()
        } else {
            None
        };
        self.next_id += 1;
        let mut sockets = vec![&audio.rtp];
        sockets.extend(video.as_ref().map(|v| &v.rtp));
        let srflx = self.gather(&sockets);
        let mut relays = self.gather_relays(&sockets).into_iter();
        let (audio_relay, video_relay) = (relays.next().flatten(), relays.next().flatten());
        let r = Reservation {
            id: ReservationId(self.next_id),
            audio_port: audio.local_addr().port(),
            video_port: video.as_ref().map(|s| s.local_addr().port()),
            audio_srflx: srflx.first().copied().flatten(),
            video_srflx: srflx.get(1).copied().flatten(),
            audio_relayed: audio_relay.as_ref().and_then(TurnClient::relayed),
            video_relayed: video_relay.as_ref().and_then(TurnClient::relayed),
        };
        if audio_relay.is_some() || video_relay.is_some() {
            self.relays.insert(r.id, (audio_relay, video_relay));
        }
        self.reserved.insert(r.id, (Some(audio), video));
        Ok(r)
    }

    fn reserve_video(&mut self) -> Result<Reservation, MediaError> {
        let video = self.bind_port()?;
        self.next_id += 1;
        let srflx = self.gather(&[&video.rtp]);
        let r = Reservation {
            id: ReservationId(self.next_id),
            audio_port: 0,
            video_port: Some(video.local_addr().port()),
            audio_srflx: None,
            video_srflx: srflx.first().copied().flatten(),
            audio_relayed: None,
            video_relayed: None,
        };
        self.reserved.insert(r.id, (None, Some(video)));
        Ok(r)
    }

    fn add_video(
        &mut self,
        session: SessionId,
        reservation: ReservationId,
        negotiation: &Negotiation,
        video_metadata: HashMap<String, String>,
    ) -> Result<(), MediaError> {
        let (_, video) = self
            .reserved
            .remove(&reservation)
            .ok_or_else(|| MediaError::unavailable("video ports were released"))?;
        let sockets = video.ok_or_else(|| MediaError::unavailable("no video port reserved"))?;
        let cfg = self
            .video_stream(negotiation, sockets.local_addr())?
            .ok_or_else(|| MediaError::unavailable("no video agreed"))?;
        self.engine
            .add_video(session, cfg, sockets, video_metadata)
            .map_err(|e| MediaError::unavailable(format!("media: {e}")))?;
        Ok(())
    }

    fn remove_video(&mut self, session: SessionId) {
        self.reap(session, None);
    }

    fn dtls_fingerprint(&self) -> Option<crate::sdp::Fingerprint> {
        Some(self.settings.dtls_identity.as_ref()?.fingerprint().clone())
    }

    fn release(&mut self, reservation: ReservationId) {
        self.reserved.remove(&reservation);
        // Unused allocations expire on the server (their lifetime, 10 minutes).
        self.relays.remove(&reservation);
    }

    fn start(&mut self, start: MediaStart) -> Result<Arc<SessionInfo>, MediaError> {
        self.prepare(start)?.run(&self.engine)
    }

    fn start_deferred(
        &mut self,
        start: MediaStart,
    ) -> Result<Option<Arc<SessionInfo>>, MediaError> {
        let job = self.prepare(start)?;
        match &self.setup {
            Some((tx, _)) => match tx.send(job) {
                Ok(()) => Ok(None),
                Err(e) => e.into_inner().run(&self.engine).map(Some),
            },
            None => job.run(&self.engine).map(Some),
        }
    }
    fn update(&mut self, session: SessionId, change: MediaChange) {
        let Ok(s) = self.engine.session(session) else {
            return;
        };
        if let Some((rtp, rtcp)) = change.audio_remote {
            s.audio().set_remote(rtp, rtcp);
        }
        if let (Some((rtp, rtcp)), Some(v)) = (change.video_remote, s.video()) {
            v.set_remote(rtp, rtcp);
        }
        if let Some(held) = change.held {
            s.set_held(held);
        }
        if let Some(receiving) = change.receiving {
            s.set_expects_media(receiving);
        }
        // A key that cannot be used leaves the stream as it was: its packets then fail
        // authentication and are counted, which is where a broken re-key shows.
        if let Some(keys) = &change.audio_srtp {
            let _ = s.audio().rekey_srtp(keys);
        }
        if let (Some(keys), Some(v)) = (&change.video_srtp, s.video()) {
            let _ = v.rekey_srtp(keys);
        }
    }

    fn dtmf(&mut self, session: SessionId, event: DtmfEvent) {
        let _ = self.engine.post_dtmf(session, event);
    }

    fn close(&mut self, session: SessionId, reason: EndReason) {
        // The application may have closed the media already (hang-up); that is fine.
        self.unclosed.lock().remove(&session);
        self.reap(session, Some(reason));
    }
}

impl EngineHost {
    /// What starting a session takes, from its reservation and negotiation: the cheap part,
    /// on the SIP thread.
    fn prepare(&mut self, start: MediaStart) -> Result<SetupJob, MediaError> {
        let (audio, video) = self
            .reserved
            .remove(&start.reservation)
            .ok_or_else(|| MediaError::unavailable("media ports were released"))?;
        let audio = audio.ok_or_else(|| MediaError::unavailable("no audio port reserved"))?;
        let (audio_relay, video_relay) = self.relays.remove(&start.reservation).unwrap_or_default();
        let neg = &start.negotiation;
        let mut audio_cfg = self.audio_stream(neg, audio.local_addr())?;
        hand_relay(&mut audio_cfg.ice_dtls, audio_relay, audio.local_addr());
        // BUNDLE: video runs on the audio socket and transport; its own port goes back.
        let bundle = match (neg.bundle_routes(), &audio_cfg.ice_dtls) {
            (Some(routes), Some(params)) => Some((params.clone(), routes)),
            _ => None,
        };
        let (video_cfg, video_sockets) = match (video, &neg.video) {
            (Some(_), Some(_)) if bundle.is_some() => {
                (self.video_stream(neg, audio.local_addr())?, None)
            }
            (Some(sockets), Some(_)) => {
                (self.video_stream(neg, sockets.local_addr())?, Some(sockets))
            }
            // Video reserved but not agreed: its ports go back now.
            _ => (None, None),
        };
        let mut video_cfg = video_cfg;
        if let (Some(cfg), Some(s)) = (video_cfg.as_mut(), video_sockets.as_ref()) {
            hand_relay(&mut cfg.ice_dtls, video_relay, s.local_addr());
        }
        let spec = SessionSpec {
            room_id: start.room_id,
            participant_id: start.participant_id,
            metadata: start.metadata,
            video_metadata: start.video_metadata,
            audio: audio_cfg,
            video: video_cfg,
        };
        let bound = BoundMedia {
            audio,
            video: video_sockets,
        };
        Ok(SetupJob {
            session: start.session,
            held: !neg.audio.direction.sends(),
            expects_media: neg.audio.direction.receives(),
            spec,
            bound,
            bundle,
        })
    }

    /// What a stream that agreed to DTLS-SRTP (and ICE) runs with: the negotiated transport
    /// and the backend's certificate. Without a certificate (DTLS-SRTP off in this backend's
    /// configuration, so never offered) such a stream is refused rather than run in the clear.
    fn ice_dtls(
        &self,
        transport: Option<&crate::sdp::NegotiatedTransport>,
    ) -> Result<Option<crate::webrtc::IceDtlsParams>, MediaError> {
        let Some(t) = transport else {
            return Ok(None);
        };
        match &self.settings.dtls_identity {
            Some(identity) => Ok(Some(t.params(identity))),
            None => Err(MediaError {
                status: 488,
                reason: "DTLS-SRTP agreed without a certificate".into(),
            }),
        }
    }

    /// Closes a session (`reason`) or only its video (`None`) on the reaper thread, inline
    /// without one.
    fn reap(&self, session: SessionId, reason: Option<EndReason>) {
        let inline = match &self.reaper {
            Some((tx, _)) => tx.send((session, reason)).err().map(|e| e.into_inner()),
            None => Some((session, reason)),
        };
        if let Some((id, reason)) = inline {
            close_now(&self.engine, id, reason);
        }
    }
}

/// Closes session `id` (with `reason`) or only its video (`None`).
fn close_now(engine: &MediaEngine, id: SessionId, reason: Option<EndReason>) {
    match reason {
        None => {
            let _ = engine.remove_video(id);
        }
        Some(reason) => {
            let _ = engine.disconnect_with(id, reason);
        }
    }
}

impl Drop for EngineHost {
    /// Lets the setup worker and then the reaper finish what is queued and joins them. A
    /// session the worker started after the core stopped listening is nobody's: closed here.
    fn drop(&mut self) {
        if let Some((tx, handle)) = self.setup.take() {
            drop(tx);
            let _ = handle.join();
        }
        let orphans: Vec<SessionId> = self.unclosed.lock().drain().collect();
        for session in orphans {
            self.reap(session, Some(EndReason::Shutdown));
        }
        if let Some((tx, handle)) = self.reaper.take() {
            drop(tx);
            let _ = handle.join();
        }
    }
}

/// What a [`FakeMediaHost`] was asked, in order.
#[cfg(any(test, feature = "_internals"))]
#[derive(Debug, Clone, PartialEq)]
pub enum HostCall {
    Reserve {
        video: bool,
        granted: Option<Reservation>,
    },
    Release(ReservationId),
    Start {
        session: SessionId,
        has_video: bool,
    },
    Update(SessionId, Box<MediaChange>),
    Dtmf(SessionId, DtmfEvent),
    Close(SessionId),
    AddVideo(SessionId),
    RemoveVideo(SessionId),
}

/// The record a [`FakeMediaHost`] keeps, readable while the core owns the host.
#[cfg(any(test, feature = "_internals"))]
#[derive(Debug, Default)]
pub struct FakeHostState {
    /// Every call, in order.
    pub calls: Vec<HostCall>,
    /// Reservations not yet started or released.
    pub reserved: HashMap<ReservationId, Reservation>,
    /// Sessions started and not closed, with their direction of audio (held or not).
    pub live: HashMap<SessionId, bool>,
    /// Live sessions that have a video stream.
    pub video: std::collections::HashSet<SessionId>,
    /// The SRTP keys each started session's audio and video streams were given.
    pub srtp: HashMap<SessionId, (Option<crate::SrtpKeys>, Option<crate::SrtpKeys>)>,
    /// Makes [`MediaHost::start_deferred`] report later, as a setup worker does: the outcome
    /// waits in `deferred` for the test to hand to the core.
    pub defer_start: bool,
    /// With `defer_start`: the outcomes of deferred starts not yet reported, in order (give
    /// them to the core as [`Command::MediaStarted`](super::Command::MediaStarted)).
    pub deferred: Vec<(SessionId, Result<Arc<SessionInfo>, MediaError>)>,
    /// The DTLS fingerprint the host says its streams present (`None`: no DTLS-SRTP).
    pub dtls_fingerprint: Option<crate::sdp::Fingerprint>,
}

/// A host without sockets: ports are counted, sessions are records. `capacity` bounds the
/// ports handed out at once (audio and video each take one), as a pool does.
#[cfg(any(test, feature = "_internals"))]
#[derive(Debug)]
pub struct FakeMediaHost {
    state: Arc<Mutex<FakeHostState>>,
    capacity: usize,
    next_id: u64,
    next_port: u16,
    /// Makes [`MediaHost::start`] fail (as a session whose threads cannot start would).
    pub fail_start: bool,
}

#[cfg(any(test, feature = "_internals"))]
impl FakeMediaHost {
    /// A host with room for `capacity` ports, and the handle to its record.
    pub fn new(capacity: usize) -> (FakeMediaHost, Arc<Mutex<FakeHostState>>) {
        let state = Arc::new(Mutex::new(FakeHostState::default()));
        (
            FakeMediaHost {
                state: state.clone(),
                capacity,
                next_id: 0,
                next_port: 20000,
                fail_start: false,
            },
            state,
        )
    }

    fn ports_in_use(st: &FakeHostState) -> usize {
        let reserved: usize = st
            .reserved
            .values()
            .map(|r| usize::from(r.audio_port != 0) + usize::from(r.video_port.is_some()))
            .sum();
        reserved + st.live.len() + st.video.len()
    }

    fn port(&mut self) -> u16 {
        self.next_port = if self.next_port >= 60000 {
            20000
        } else {
            self.next_port + 2
        };
        self.next_port
    }
}

#[cfg(any(test, feature = "_internals"))]
fn fake_stream(port: u16, remote: SocketAddr, pt: u8, clock_rate: u32) -> StreamInfo {
    let local = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port);
    StreamInfo {
        local_addr: local,
        local_rtcp_addr: local,
        remote_addr: remote,
        payload_type: pt,
        clock_rate,
        codec: None,
        sample_rate: clock_rate,
        srtp_suite: None,
    }
}

#[cfg(any(test, feature = "_internals"))]
impl MediaHost for FakeMediaHost {
    fn reserve(&mut self, video: bool) -> Result<Reservation, MediaError> {
        let need = 1 + usize::from(video);
        let in_use = FakeMediaHost::ports_in_use(&self.state.lock());
        if in_use + need > self.capacity {
            self.state.lock().calls.push(HostCall::Reserve {
                video,
                granted: None,
            });
            return Err(MediaError::unavailable("no free RTP port"));
        }
        self.next_id += 1;
        let r = Reservation {
            id: ReservationId(self.next_id),
            audio_port: self.port(),
            video_port: video.then(|| self.port()),
            audio_srflx: None,
            video_srflx: None,
            audio_relayed: None,
            video_relayed: None,
        };
        let mut st = self.state.lock();
        st.reserved.insert(r.id, r);
        st.calls.push(HostCall::Reserve {
            video,
            granted: Some(r),
        });
        Ok(r)
    }

    fn release(&mut self, reservation: ReservationId) {
        let mut st = self.state.lock();
        st.reserved.remove(&reservation);
        st.calls.push(HostCall::Release(reservation));
    }

    fn start(&mut self, start: MediaStart) -> Result<Arc<SessionInfo>, MediaError> {
        let mut st = self.state.lock();
        let r = st
            .reserved
            .remove(&start.reservation)
            .ok_or_else(|| MediaError::unavailable("media ports were released"))?;
        if self.fail_start || st.live.contains_key(&start.session) {
            return Err(MediaError::unavailable("media: start refused"));
        }
        let neg = &start.negotiation;
        let video = match (&neg.video, r.video_port) {
            (Some(v), Some(port)) => {
                let mut s = fake_stream(port, v.remote, v.pt, v.clock_rate);
                s.codec = Some(v.codec);
                s.srtp_suite = v.srtp.as_ref().map(crate::SrtpKeys::suite);
                Some(s)
            }
            _ => None,
        };
        let info = SessionInfo {
            id: start.session,
            room_id: start.room_id,
            participant_id: start.participant_id,
            metadata: start.metadata,
            audio: fake_stream(
                r.audio_port,
                neg.audio.remote,
                neg.audio.pt,
                neg.audio.clock_rate,
            ),
            video,
            video_metadata: start.video_metadata,
            end_reason: None,
        };
        st.live.insert(
            start.session,
            neg.audio.direction == Direction::SendRecv || neg.audio.direction.sends(),
        );
        if info.video.is_some() {
            st.video.insert(start.session);
        }
        st.srtp.insert(
            start.session,
            (
                neg.audio.srtp.clone(),
                neg.video.as_ref().and_then(|v| v.srtp.clone()),
            ),
        );
        st.calls.push(HostCall::Start {
            session: start.session,
            has_video: info.video.is_some(),
        });
        Ok(Arc::new(info))
    }

    fn start_deferred(
        &mut self,
        start: MediaStart,
    ) -> Result<Option<Arc<SessionInfo>>, MediaError> {
        if !self.state.lock().defer_start {
            return self.start(start).map(Some);
        }
        let session = start.session;
        let result = self.start(start);
        self.state.lock().deferred.push((session, result));
        Ok(None)
    }

    fn update(&mut self, session: SessionId, change: MediaChange) {
        let mut st = self.state.lock();
        if let (Some(held), Some(sends)) = (change.held, st.live.get_mut(&session)) {
            *sends = !held;
        }
        if let Some(keys) = st.srtp.get_mut(&session) {
            if let Some(audio) = &change.audio_srtp {
                keys.0 = Some(audio.clone());
            }
            if let Some(video) = &change.video_srtp {
                keys.1 = Some(video.clone());
            }
        }
        st.calls.push(HostCall::Update(session, Box::new(change)));
    }

    fn dtmf(&mut self, session: SessionId, event: DtmfEvent) {
        self.state.lock().calls.push(HostCall::Dtmf(session, event));
    }

    fn close(&mut self, session: SessionId, _reason: EndReason) {
        let mut st = self.state.lock();
        st.live.remove(&session);
        st.video.remove(&session);
        st.calls.push(HostCall::Close(session));
    }

    fn reserve_video(&mut self) -> Result<Reservation, MediaError> {
        if FakeMediaHost::ports_in_use(&self.state.lock()) + 1 > self.capacity {
            return Err(MediaError::unavailable("no free RTP port"));
        }
        self.next_id += 1;
        let r = Reservation {
            id: ReservationId(self.next_id),
            audio_port: 0,
            video_port: Some(self.port()),
            audio_srflx: None,
            video_srflx: None,
            audio_relayed: None,
            video_relayed: None,
        };
        self.state.lock().reserved.insert(r.id, r);
        Ok(r)
    }

    fn add_video(
        &mut self,
        session: SessionId,
        reservation: ReservationId,
        negotiation: &Negotiation,
        _video_metadata: HashMap<String, String>,
    ) -> Result<(), MediaError> {
        let mut st = self.state.lock();
        st.reserved
            .remove(&reservation)
            .filter(|r| r.video_port.is_some())
            .ok_or_else(|| MediaError::unavailable("no video port reserved"))?;
        if negotiation.video.is_none() || !st.live.contains_key(&session) {
            return Err(MediaError::unavailable("no video to add"));
        }
        if !st.video.insert(session) {
            return Err(MediaError::unavailable("video already there"));
        }
        if let Some(keys) = st.srtp.get_mut(&session) {
            keys.1 = negotiation.video.as_ref().and_then(|v| v.srtp.clone());
        }
        st.calls.push(HostCall::AddVideo(session));
        Ok(())
    }

    fn remove_video(&mut self, session: SessionId) {
        let mut st = self.state.lock();
        st.video.remove(&session);
        st.calls.push(HostCall::RemoveVideo(session));
    }

    fn dtls_fingerprint(&self) -> Option<crate::sdp::Fingerprint> {
        self.state.lock().dtls_fingerprint.clone()
    }
}
