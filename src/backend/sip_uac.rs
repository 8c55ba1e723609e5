//! `SipCaller`: a minimal outbound SIP user agent (UAC) for one audio + video call at a time.
//!
//! It exists so the library can call itself (the `demo` command, tests) and call other UASes:
//! INVITE with our offer (retransmitted at T1 doubling until a response, one digest retry),
//! ACK, then a small thread that answers the far end's BYE and re-ACKs retransmitted 200s; BYE
//! from our side is retransmitted until answered. Media runs on a [`MediaEngine`] like every
//! other backend's.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver};
use parking_lot::Mutex;

use super::api::{sealed, MediaBackend};
use crate::codec::h264::PacketizationMode;
use crate::engine::{
    AudioParams, EngineConfig, MediaEngine, MediaParams, PortPool, SessionId, SessionSpec,
    SourcePolicy, StreamConfig, VideoParams,
};
use crate::error::{Error, Result};
use crate::frame::{Delivery, VideoCodec};
use crate::sdp::{build_offer, parse_answer, Negotiation, OfferConfig};
use crate::sip::auth::authorization_value;
use crate::sip::dialog::Dialog;
use crate::sip::{
    new_branch, new_call_id, new_tag, Method, RequestBuilder, ResponseBuilder, SipMessage,
};

/// Settings of a [`SipCaller`].
#[derive(Debug, Clone)]
pub struct SipCallerConfig {
    /// Where our SIP and RTP sockets bind (an IP; ports are picked).
    pub local_ip: IpAddr,
    /// Video codecs to offer (empty: audio only).
    pub video_codecs: Vec<VideoCodec>,
    /// RTP ports for our side.
    pub rtp_port_start: u16,
    pub rtp_port_end: u16,
    /// `From` user.
    pub user: String,
    /// Digest credentials (user, password) used when challenged.
    pub credentials: Option<(String, String)>,
    /// Extra request headers (`X-Room-ID`, ...).
    pub headers: Vec<(String, String)>,
    /// How long to wait for the final response.
    pub invite_timeout: Duration,
    pub delivery: Delivery,
    pub mtu: usize,
}

impl Default for SipCallerConfig {
    fn default() -> Self {
        SipCallerConfig {
            local_ip: IpAddr::from([127, 0, 0, 1]),
            video_codecs: vec![VideoCodec::H264],
            rtp_port_start: 30000,
            rtp_port_end: 32000,
            user: "roomkit-caller".into(),
            credentials: None,
            headers: Vec::new(),
            invite_timeout: Duration::from_secs(10),
            delivery: Delivery::AccessUnit,
            mtu: 1200,
        }
    }
}

/// An established outgoing call.
pub struct SipCall {
    pub session: SessionId,
    pub call_id: String,
    pub negotiation: Negotiation,
}

impl std::fmt::Debug for SipCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SipCall")
            .field("session", &self.session)
            .field("call_id", &self.call_id)
            .finish_non_exhaustive()
    }
}

/// Calls the listener answers BYE for: Call-ID → (dialog, session, where the far end is).
type CallTable = Arc<Mutex<HashMap<String, (Arc<Mutex<Dialog>>, SessionId, SocketAddr)>>>;

/// What the listener thread saw.
#[derive(Debug)]
enum Heard {
    /// A final response to one of our BYEs.
    ByeAnswered,
    /// The far end ended the call.
    RemoteBye(String),
}

/// An outbound SIP user agent with its own engine.
pub struct SipCaller {
    cfg: SipCallerConfig,
    sock: Arc<UdpSocket>,
    stop: Arc<AtomicBool>,
    listener: Option<JoinHandle<()>>,
    heard: Receiver<Heard>,
    /// Calls the listener answers BYE for: Call-ID → (dialog, session).
    calls: CallTable,
    engine: Arc<MediaEngine>,
    pool: PortPool,
    leases: Mutex<HashMap<SessionId, Vec<crate::engine::PortLease>>>,
    /// Final responses the listener hands to `call` (the INVITE's).
    responses: Receiver<(SipMessage, SocketAddr)>,
}

impl std::fmt::Debug for SipCaller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SipCaller").finish_non_exhaustive()
    }
}

/// A `name="value"` (or `name=value`) parameter of a digest challenge.
fn challenge_param(challenge: &str, name: &str) -> Option<String> {
    let rest = challenge.strip_prefix("Digest").unwrap_or(challenge);
    rest.split(',').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

fn host_port(a: SocketAddr) -> String {
    match a {
        SocketAddr::V4(v) => v.to_string(),
        SocketAddr::V6(v) => format!("[{}]:{}", v.ip(), v.port()),
    }
}

impl SipCaller {
    /// Binds the SIP socket and starts the listener and callback threads.
    pub fn new(cfg: SipCallerConfig) -> Result<SipCaller> {
        let sock = UdpSocket::bind(SocketAddr::new(cfg.local_ip, 0))
            .map_err(|e| Error::Io("binding the caller's SIP socket".into(), e))?;
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .map_err(|e| Error::Io("socket timeout".into(), e))?;
        let sock = Arc::new(sock);
        let stop = Arc::new(AtomicBool::new(false));
        let (heard_tx, heard) = unbounded();
        let (resp_tx, responses) = unbounded();
        let calls: CallTable = Arc::default();
        let engine = Arc::new(MediaEngine::new(EngineConfig::default())?);
        let pool = PortPool::new(cfg.rtp_port_start, cfg.rtp_port_end)?;
        let (s, st, c, e) = (sock.clone(), stop.clone(), calls.clone(), engine.clone());
        let listener = std::thread::Builder::new()
            .name("rkm-sip-uac".into())
            .spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !st.load(Ordering::Acquire) {
                    let Ok((n, from)) = s.recv_from(&mut buf) else {
                        continue;
                    };
                    let Ok(msg) = SipMessage::parse(&buf[..n]) else {
                        continue;
                    };
                    if msg.is_request() {
                        if matches!(msg.method(), Method::Bye) {
                            let tag = new_tag();
                            let ok = ResponseBuilder::new(msg.echo(), 200).to_tag(&tag).build();
                            let _ = s.send_to(&ok, from);
                            let session = c.lock().remove(msg.call_id()).map(|(_, id, _)| id);
                            if let Some(id) = session {
                                let _ = e.disconnect(id);
                                let _ = heard_tx.send(Heard::RemoteBye(msg.call_id().into()));
                            }
                        } else if !matches!(msg.method(), Method::Ack) {
                            let tag = new_tag();
                            let r = ResponseBuilder::new(msg.echo(), 200).to_tag(&tag).build();
                            let _ = s.send_to(&r, from);
                        }
                        continue;
                    }
                    match msg.cseq().method {
                        Method::Bye if msg.status().is_some_and(|s| s >= 200) => {
                            let _ = heard_tx.send(Heard::ByeAnswered);
                        }
                        Method::Invite => {
                            // A retransmitted 200 of an established call: ACK it again.
                            let dialog = c.lock().get(msg.call_id()).map(|(d, _, _)| d.clone());
                            match dialog {
                                Some(d)
                                    if msg.status().is_some_and(|s| (200..300).contains(&s)) =>
                                {
                                    let sent_by = host_port(s.local_addr().unwrap_or(from));
                                    let ack =
                                        d.lock().ack(msg.cseq().number, &sent_by, "UDP").build();
                                    let _ = s.send_to(&ack, from);
                                }
                                _ => {
                                    let _ = resp_tx.send((msg, from));
                                }
                            }
                        }
                        _ => {}
                    }
                }
            })
            .map_err(|e| Error::Io("starting the caller thread".into(), e))?;
        Ok(SipCaller {
            cfg,
            sock,
            stop,
            listener: Some(listener),
            heard,
            calls,
            engine,
            pool,
            leases: Mutex::new(HashMap::new()),
            responses,
        })
    }

    /// Our SIP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.sock
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::new(self.cfg.local_ip, 0))
    }

    /// Calls `uri` (`sip:user@host:port`) at `target` and waits for the answer. On a 2xx the
    /// media session is up when this returns; other finals come back as `Error::State` naming
    /// the status.
    pub fn call(&self, uri: &str, target: SocketAddr) -> Result<SipCall> {
        let audio = self
            .acquire_port()
            .ok_or_else(|| Error::State("caller RTP ports exhausted".into()))?;
        let video = if self.cfg.video_codecs.is_empty() {
            None
        } else {
            self.acquire_port()
        };
        let mut oc = OfferConfig::new(
            self.cfg.local_ip,
            audio.port(),
            video.as_ref().map_or(0, |l| l.port()),
        );
        oc.video_codecs = self.cfg.video_codecs.clone();
        // The media streams code G.711 only until wideband audio reaches the engine.
        oc.audio_codecs = vec![crate::sdp::AudioCodec::Pcmu, crate::sdp::AudioCodec::Pcma];
        oc.session_id = rand::random::<u32>().into();
        oc.session_version = oc.session_id;
        let offer = build_offer(&oc);
        let local = self.local_addr();
        let sent_by = host_port(local);
        let call_id = new_call_id(&self.cfg.local_ip.to_string());
        let from = format!(
            "<sip:{}@{}>;tag={}",
            self.cfg.user,
            host_port(local),
            new_tag()
        );
        let contact = format!("sip:{}@{}", self.cfg.user, sent_by);
        let build = |cseq: u32, auth: Option<String>| {
            let mut b = RequestBuilder::new(Method::Invite, uri)
                .via(&format!(
                    "SIP/2.0/UDP {sent_by};branch={};rport",
                    new_branch()
                ))
                .from(&from)
                .to(&format!("<{uri}>"))
                .call_id(&call_id)
                .cseq(cseq)
                .contact(&contact)
                .header("User-Agent", "roomkit-media");
            for (n, v) in &self.cfg.headers {
                b = b.header(n, v);
            }
            if let Some(a) = auth {
                b = b.header("Authorization", &a);
            }
            b.body("application/sdp", offer.sdp.as_bytes()).build()
        };
        let mut cseq = 1;
        let mut invite = build(cseq, None);
        let mut authed = false;
        let deadline = Instant::now() + self.cfg.invite_timeout;
        let (resp, peer) = loop {
            let (resp, peer) = self.transact(&invite, target, deadline)?;
            let status = resp.status().unwrap_or(0);
            if status == 401 && !authed {
                if let (Some((user, pass)), Some(ch)) = (
                    self.cfg.credentials.as_ref(),
                    resp.header("WWW-Authenticate"),
                ) {
                    self.ack_failure(&invite, &resp, peer);
                    let realm = challenge_param(ch, "realm").unwrap_or_default();
                    let nonce = challenge_param(ch, "nonce").unwrap_or_default();
                    let opaque = challenge_param(ch, "opaque");
                    let value = authorization_value(
                        user,
                        &realm,
                        pass,
                        "INVITE",
                        uri,
                        &nonce,
                        1,
                        &new_tag(),
                        opaque.as_deref(),
                    );
                    cseq += 1;
                    invite = build(cseq, Some(value));
                    authed = true;
                    continue;
                }
            }
            break (resp, peer);
        };
        let status = resp.status().unwrap_or(0);
        let req = SipMessage::parse(&invite).map_err(|e| Error::State(e.to_string()))?;
        if !(200..300).contains(&status) {
            self.ack_failure(&invite, &resp, peer);
            return Err(Error::State(format!("call refused with {status}")));
        }
        let dialog = Dialog::uac(&req, &resp).map_err(|e| Error::State(format!("{e:?}")))?;
        let ack = dialog.ack(cseq, &sent_by, "UDP").build();
        let _ = self.sock.send_to(&ack, peer);
        let neg = parse_answer(&offer, resp.body()).map_err(|e| Error::State(e.to_string()))?;
        let spec = self.spec(
            &neg,
            &call_id,
            audio.port(),
            video.as_ref().map(|l| l.port()),
        );
        let info = match self.engine.create_session(spec) {
            Ok(i) => i,
            Err(e) => {
                // Tell the far end before giving up.
                let mut d = dialog;
                let bye = d.request(Method::Bye, &sent_by, "UDP").build();
                let _ = self.sock.send_to(&bye, peer);
                return Err(e);
            }
        };
        let mut held = vec![audio];
        held.extend(video.filter(|_| neg.video.is_some()));
        self.leases.lock().insert(info.id, held);
        let dialog = Arc::new(Mutex::new(dialog));
        self.calls
            .lock()
            .insert(call_id.clone(), (dialog.clone(), info.id, peer));
        Ok(SipCall {
            session: info.id,
            call_id,
            negotiation: neg,
        })
    }

    /// A pool port whose RTP and RTCP ports are free right now (busy ones go back to the end).
    fn acquire_port(&self) -> Option<crate::engine::PortLease> {
        let mut busy = Vec::new();
        for _ in 0..16 {
            let lease = self.pool.acquire()?;
            let free = |p: u16| UdpSocket::bind(SocketAddr::new(self.cfg.local_ip, p)).is_ok();
            if free(lease.port()) && free(lease.port().wrapping_add(1)) {
                return Some(lease);
            }
            busy.push(lease);
        }
        None
    }

    fn spec(
        &self,
        neg: &Negotiation,
        call_id: &str,
        audio_port: u16,
        video_port: Option<u16>,
    ) -> SessionSpec {
        let ip = self.cfg.local_ip;
        let cname = format!("{}@roomkit-media", new_tag());
        let a = &neg.audio;
        let audio = StreamConfig {
            media: MediaParams::Audio(AudioParams {
                payload_type: a.pt,
                clock_rate: a.clock_rate,
                dtmf_payload_type: a.dtmf_pt,
            }),
            local_addr: SocketAddr::new(ip, audio_port),
            remote_addr: a.remote,
            remote_rtcp_addr: Some(a.remote_rtcp),
            rtcp_mux: a.rtcp_mux,
            source_policy: SourcePolicy::RemoteOnly,
            rtcp_interval: Duration::from_secs(5),
            cname: cname.clone(),
            session: SessionId::nil(),
        };
        let video = match (&neg.video, video_port) {
            (Some(v), Some(port)) => Some(StreamConfig {
                media: MediaParams::Video(VideoParams {
                    payload_type: v.pt,
                    clock_rate: v.clock_rate,
                    codec: v.codec,
                    delivery: self.cfg.delivery,
                    wait_for_keyframe: true,
                    deliver_incomplete: false,
                    mtu: self.cfg.mtu,
                    packetization_mode: if v.packetization_mode == Some(0) {
                        PacketizationMode::SingleNal
                    } else {
                        PacketizationMode::NonInterleaved
                    },
                }),
                local_addr: SocketAddr::new(ip, port),
                remote_addr: v.remote,
                remote_rtcp_addr: Some(v.remote_rtcp),
                rtcp_mux: v.rtcp_mux,
                source_policy: SourcePolicy::RemoteOnly,
                rtcp_interval: Duration::from_secs(5),
                cname,
                session: SessionId::nil(),
            }),
            _ => None,
        };
        SessionSpec {
            room_id: call_id.to_string(),
            participant_id: "callee".into(),
            metadata: HashMap::from([
                ("backend".to_string(), "sip-uac".to_string()),
                ("call_id".into(), call_id.to_string()),
                ("has_video".into(), neg.video.is_some().to_string()),
            ]),
            video_metadata: HashMap::new(),
            audio,
            video,
        }
    }

    /// Sends `request` and retransmits it (T1 doubling to T2) until a final response comes.
    fn transact(
        &self,
        request: &[u8],
        target: SocketAddr,
        deadline: Instant,
    ) -> Result<(SipMessage, SocketAddr)> {
        let mut interval = Duration::from_millis(500);
        let mut next = Instant::now();
        let mut provisional = false;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::State("no final response (timeout)".into()));
            }
            if !provisional && now >= next {
                let _ = self.sock.send_to(request, target);
                next = now + interval;
                interval = (interval * 2).min(Duration::from_secs(4));
            }
            let wait = next.min(deadline).saturating_duration_since(now);
            if let Ok((resp, from)) = self
                .responses
                .recv_timeout(wait.max(Duration::from_millis(1)))
            {
                match resp.status() {
                    Some(s) if s < 200 => provisional = true,
                    Some(_) => return Ok((resp, from)),
                    None => {}
                }
            }
        }
    }

    /// The ACK for a non-2xx final: same branch as the INVITE, the response's To.
    fn ack_failure(&self, invite: &[u8], resp: &SipMessage, peer: SocketAddr) {
        let Ok(req) = SipMessage::parse(invite) else {
            return;
        };
        let uri = req
            .request_uri()
            .map(|u| u.as_str().to_string())
            .unwrap_or_default();
        let ack = RequestBuilder::new(Method::Ack, &uri)
            .via(req.top_via().raw())
            .from(req.echo().from.as_deref().unwrap_or_default())
            .to(resp.echo().to.as_deref().unwrap_or_default())
            .call_id(req.call_id())
            .cseq(req.cseq().number)
            .build();
        let _ = self.sock.send_to(&ack, peer);
    }

    /// Ends `call` with a BYE, retransmitted until answered (at most `timeout`), and closes its
    /// media. Returns whether the BYE was answered.
    pub fn hangup(&self, call: &SipCall, timeout: Duration) -> bool {
        self.bye(&call.call_id, call.session, timeout)
    }

    /// Closes the media of call `call_id` and sends its BYE until answered (at most `timeout`).
    fn bye(&self, call_id: &str, session: SessionId, timeout: Duration) -> bool {
        let removed = self.calls.lock().remove(call_id);
        let _ = self.engine.disconnect(session);
        self.leases.lock().remove(&session);
        let Some((dialog, _, remote)) = removed else {
            return false; // The far end hung up first.
        };
        let sent_by = host_port(self.local_addr());
        let bye = dialog.lock().request(Method::Bye, &sent_by, "UDP").build();
        while self.heard.try_recv().is_ok() {}
        let deadline = Instant::now() + timeout;
        let mut interval = Duration::from_millis(500);
        while Instant::now() < deadline {
            let _ = self.sock.send_to(&bye, remote);
            let wait = interval.min(deadline.saturating_duration_since(Instant::now()));
            if let Ok(Heard::ByeAnswered) = self.heard.recv_timeout(wait) {
                return true;
            }
            interval = (interval * 2).min(Duration::from_secs(4));
        }
        false
    }

    /// Waits until the far end ends `call` (its BYE arrived), at most `timeout`.
    pub fn wait_remote_bye(&self, call: &SipCall, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if !self.calls.lock().contains_key(&call.call_id) {
                self.leases.lock().remove(&call.session);
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            if let Ok(Heard::RemoteBye(cid)) = self.heard.recv_timeout(left) {
                if cid == call.call_id {
                    self.leases.lock().remove(&call.session);
                    return true;
                }
            }
        }
    }
}

impl sealed::Engine for SipCaller {
    fn engine(&self) -> &MediaEngine {
        &self.engine
    }

    /// Hangs the call up with BYE (waiting up to 4 s for the answer) and closes its media.
    fn end_session(&self, session: SessionId) -> Result<()> {
        let call_id = self
            .calls
            .lock()
            .iter()
            .find(|(_, (_, id, _))| *id == session)
            .map(|(cid, _)| cid.clone());
        match call_id {
            Some(call_id) => {
                self.bye(&call_id, session, Duration::from_secs(4));
                Ok(())
            }
            None => self.engine.disconnect(session),
        }
    }
}

impl MediaBackend for SipCaller {}

impl Drop for SipCaller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.listener.take() {
            let _ = h.join();
        }
    }
}
