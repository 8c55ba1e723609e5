//! ICE and DTLS-SRTP in offers and answers (RFC 5763, RFC 5764 §8, RFC 8842, RFC 8839): the
//! policies, the transport lines we write beside our media, and what both sides agreed to per
//! stream ([`NegotiatedTransport`]), which becomes the stream core's
//! [`IceDtlsParams`](crate::webrtc::IceDtlsParams).
//!
//! - DTLS-SRTP keys a stream when our policy is not off and the peer's m-line has a usable
//!   `a=fingerprint` and `a=setup`; it is preferred to SDES when an m-line carries both. It
//!   needs `a=rtcp-mux` (one socket per stream carries RTP, RTCP, DTLS and STUN).
//! - ICE is only ever used with DTLS-SRTP (the stream core runs the agent beside the
//!   handshake): it is agreed when our policy is not off and the peer sent `a=ice-ufrag`/`pwd`.
//! - BUNDLE (RFC 9143) only when [`LocalMedia::bundle`] says the host can run one transport for
//!   audio and video: we then offer `a=group:BUNDLE 0 1`, `a=mid` and the MID header extension
//!   beside ICE, and accept an offered group that holds the audio and the video m-line we take,
//!   both keyed by DTLS-SRTP. A bundled video stream runs on the audio stream's transport (the
//!   audio port, credentials, candidates and DTLS role in both m-lines, as browsers write
//!   them); [`NegotiatedTransport::bundle`] says so. Otherwise an offered group is declined by
//!   leaving it out of the answer (RFC 9143 §7.3.3 lets the answerer do that), and a declined
//!   offer of ours leaves every m-line its own transport.

use std::fmt;
use std::net::SocketAddr;

use super::extmap::{extmap_id, ExtMap};
use super::local::LocalMedia;
use super::model::MediaDescription;
use super::transport::{Fingerprint, IceCredentials, SetupRole};
use crate::rtp::hdrext::{DEFAULT_MID_ID, MID_URI};
use crate::webrtc::{Candidate, DtlsIdentity, IceConfig, IceDtlsParams, IceParams, MemberRoute};

/// Whether a call uses ICE (RFC 8445) on its DTLS-SRTP streams.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum IcePolicy {
    /// No ICE attributes written; a peer's are ignored (DTLS goes to the `c=`/`m=` address).
    #[default]
    Off,
    /// A full agent: our host (and server-reflexive) candidates, connectivity checks.
    On,
    /// An ICE-lite agent (RFC 8445 §2.5, `a=ice-lite`): host candidates, answers checks only.
    /// What servers with a public address (WHIP) use.
    Lite,
}

/// Whether a call uses DTLS-SRTP (RFC 5763/5764), beside the SDES policy (`SrtpPolicy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DtlsSrtpPolicy {
    /// No `a=fingerprint` written; `UDP/TLS/RTP/SAVP(F)` offers refused (SIP: 488).
    #[default]
    Off,
    /// Offer the fingerprint beside the SDES policy's proto (`RTP/AVP` or `RTP/SAVP` with its
    /// crypto lines): a peer may take DTLS-SRTP, SDES or plain RTP. Answer an offered
    /// fingerprint with DTLS-SRTP, anything else as the SDES policy says.
    Optional,
    /// Only DTLS-SRTP: offer `UDP/TLS/RTP/SAVPF`; refuse an offer or answer without a
    /// fingerprint (SIP: 488).
    Mandatory,
}

impl DtlsSrtpPolicy {
    /// The policy's name on the command line (`off`, `optional`, `mandatory`).
    pub fn as_str(self) -> &'static str {
        match self {
            DtlsSrtpPolicy::Off => "off",
            DtlsSrtpPolicy::Optional => "optional",
            DtlsSrtpPolicy::Mandatory => "mandatory",
        }
    }

    /// Reads a policy name, case-insensitively.
    pub fn from_name(name: &str) -> Option<DtlsSrtpPolicy> {
        [
            DtlsSrtpPolicy::Off,
            DtlsSrtpPolicy::Optional,
            DtlsSrtpPolicy::Mandatory,
        ]
        .into_iter()
        .find(|p| p.as_str().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for DtlsSrtpPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The proto of DTLS-SRTP m-lines we offer (RFC 5764 §8).
pub const DTLS_PROTO: &str = "UDP/TLS/RTP/SAVPF";

/// Whether an m-line's proto is DTLS-SRTP's `UDP/TLS/RTP/SAVP` or `UDP/TLS/RTP/SAVPF`.
pub fn is_dtls_proto(proto: &str) -> bool {
    proto.eq_ignore_ascii_case("UDP/TLS/RTP/SAVP") || proto.eq_ignore_ascii_case(DTLS_PROTO)
}

/// Our candidates on one stream's socket, as written in our SDP.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamCandidates {
    /// Host candidates: the socket's address (never an unspecified one).
    pub host: Vec<SocketAddr>,
    /// Server-reflexive candidates and their bases.
    pub srflx: Vec<(SocketAddr, SocketAddr)>,
    /// Relayed candidates (a TURN allocation's address) and their bases.
    pub relayed: Vec<(SocketAddr, SocketAddr)>,
}

impl StreamCandidates {
    /// The candidates of a socket on `local` (our SDP address and the stream's port), with the
    /// server-reflexive address a STUN server reported for it, if any.
    pub fn of(local: SocketAddr, srflx: Option<SocketAddr>) -> StreamCandidates {
        let usable = !local.ip().is_unspecified() && local.port() != 0;
        StreamCandidates {
            host: usable.then_some(local).into_iter().collect(),
            srflx: srflx
                .filter(|_| usable)
                .map(|s| (s, local))
                .into_iter()
                .collect(),
            relayed: Vec::new(),
        }
    }

    /// The same with the relayed address a TURN server allocated for the socket, if any.
    pub fn with_relayed(mut self, relayed: Option<SocketAddr>) -> StreamCandidates {
        if let (Some(r), Some(&base)) = (relayed, self.host.first()) {
            self.relayed.push((r, base));
        }
        self
    }

    /// The `a=candidate` lines (without `a=`).
    fn lines(&self) -> Vec<String> {
        let host = self
            .host
            .iter()
            .filter_map(|a| Candidate::host(*a, is::Protocol::Udp).ok());
        let srflx = self
            .srflx
            .iter()
            .filter_map(|(a, base)| Candidate::server_reflexive(*a, *base, is::Protocol::Udp).ok());
        let relayed = self
            .relayed
            .iter()
            .filter_map(|(a, base)| Candidate::relayed(*a, *base, is::Protocol::Udp).ok());
        host.chain(srflx)
            .chain(relayed)
            .map(|c| c.to_sdp_string())
            .collect()
    }
}

/// What both sides agreed to for one stream's DTLS-SRTP (and ICE).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NegotiatedTransport {
    /// ICE, when both sides wrote credentials.
    pub ice: Option<NegotiatedIce>,
    /// The peer's fingerprints: its certificate must hash to one.
    pub remote_fingerprints: Vec<Fingerprint>,
    /// We are the DTLS client (our `a=setup` is `active`).
    pub dtls_client: bool,
    /// The m-line's `a=mid`, when the offer had one (echoed in the answer).
    pub mid: Option<String>,
    /// The BUNDLE group this stream is in, when both sides agreed to one.
    pub bundle: Option<NegotiatedBundle>,
}

/// What a BUNDLE group both sides agreed to says about one stream (RFC 9143).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NegotiatedBundle {
    /// The group's mids, in the answer's order (the first names the m-line whose transport the
    /// group shares, RFC 9143 §7.3.1).
    pub group: Vec<String>,
    /// The ID of the MID header extension ([`MID_URI`]) on this stream, when both sides mapped
    /// it: our packets carry the mid under it, and the peer's may.
    pub mid_ext: Option<u8>,
}

/// The mids our offers give audio and video when they offer BUNDLE.
pub const AUDIO_MID: &str = "0";
pub const VIDEO_MID: &str = "1";

/// The ICE half of [`NegotiatedTransport`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NegotiatedIce {
    /// Our agent is ICE-lite.
    pub lite: bool,
    /// Our agent nominates (RFC 8445 §6.1.1).
    pub controlling: bool,
    pub local_credentials: IceCredentials,
    pub local_candidates: StreamCandidates,
    pub remote_credentials: IceCredentials,
    /// The peer's candidates; its `c=`/`m=` address when it listed none.
    pub remote_candidates: Vec<Candidate>,
}

impl NegotiatedTransport {
    /// What the stream core needs to run this transport, presenting `identity` (the one whose
    /// fingerprint our SDP carried).
    pub fn params(&self, identity: &DtlsIdentity) -> IceDtlsParams {
        IceDtlsParams {
            ice: self.ice.as_ref().map(|ice| IceParams {
                config: IceConfig {
                    lite: ice.lite,
                    controlling: ice.controlling,
                    credentials: ice.local_credentials.clone(),
                },
                host_candidates: ice.local_candidates.host.clone(),
                srflx_candidates: ice.local_candidates.srflx.clone(),
                remote_credentials: ice.remote_credentials.clone(),
                remote_candidates: ice.remote_candidates.clone(),
                relay: None,
            }),
            identity: identity.clone(),
            remote_fingerprints: self.remote_fingerprints.clone(),
            dtls_client: self.dtls_client,
        }
    }

    /// The `a=` lines (without `a=`) our side writes for this transport, with `setup` as our
    /// role: `a=mid`, ICE credentials and candidates, fingerprint, setup, rtcp-mux excluded
    /// (the media writer adds it).
    pub(crate) fn lines(&self, fingerprint: &Fingerprint, setup: SetupRole) -> Vec<String> {
        let mut lines = Vec::new();
        if let Some(mid) = &self.mid {
            lines.push(format!("mid:{mid}"));
        }
        if let Some(id) = self.bundle.as_ref().and_then(|b| b.mid_ext) {
            lines.push(format!("extmap:{id} {MID_URI}"));
        }
        if let Some(ice) = &self.ice {
            lines.extend(ice_lines(&ice.local_credentials, &ice.local_candidates));
        }
        lines.push(format!("fingerprint:{fingerprint}"));
        lines.push(format!("setup:{}", setup.as_str()));
        lines
    }

    /// The group's mids when this stream is bundled: what the session's `a=group:BUNDLE` says.
    pub fn bundle_group(&self) -> &[String] {
        self.bundle.as_ref().map_or(&[], |b| &b.group)
    }

    /// Our role as written in our SDP.
    pub fn our_setup(&self) -> SetupRole {
        if self.dtls_client {
            SetupRole::Active
        } else {
            SetupRole::Passive
        }
    }
}

fn ice_lines(credentials: &IceCredentials, candidates: &StreamCandidates) -> Vec<String> {
    let mut lines = vec![
        format!("ice-ufrag:{}", credentials.ufrag),
        format!("ice-pwd:{}", credentials.pwd),
    ];
    lines.extend(candidates.lines());
    lines
}

/// What an offer of ours said about transport, kept to read the answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OfferedTransport {
    pub dtls_srtp: DtlsSrtpPolicy,
    /// `Off` when no ICE attributes were offered.
    pub ice: IcePolicy,
    pub ice_credentials: IceCredentials,
    /// Our `a=setup` in the offer: `actpass` in a first offer, the established role after.
    pub setup: SetupRole,
    /// In a re-offer: the ICE role our agent already has (it does not change mid-call);
    /// `None` in a first offer, where RFC 8445 §6.1.1 decides.
    pub controlling: Option<bool>,
    pub audio_candidates: StreamCandidates,
    pub video_candidates: StreamCandidates,
    /// BUNDLE offered: `a=mid` ([`AUDIO_MID`], [`VIDEO_MID`]) and the MID extension on each
    /// m-line, `a=group:BUNDLE` in the session (each m-line still has its own port, RFC 9143
    /// §7.2.1, for a peer that declines).
    pub bundle: bool,
}

impl LocalMedia {
    /// The DTLS-SRTP policy in effect: off without a certificate fingerprint to announce (an
    /// offer then has no DTLS; an answer under a mandatory policy refuses every stream).
    pub(crate) fn dtls_policy(&self) -> DtlsSrtpPolicy {
        match &self.dtls_fingerprint {
            Some(_) => self.dtls_srtp,
            None => DtlsSrtpPolicy::Off,
        }
    }

    /// Our candidates for the stream on `port`.
    fn candidates(&self, port: u16, video: bool) -> StreamCandidates {
        let (srflx, relayed) = if video {
            (self.video_srflx, self.video_relayed)
        } else {
            (self.audio_srflx, self.audio_relayed)
        };
        let mut c =
            StreamCandidates::of(SocketAddr::new(self.local_ip, port), srflx).with_relayed(relayed);
        if self.relay_only && !c.relayed.is_empty() {
            c.host.clear();
            c.srflx.clear();
        }
        c
    }

    /// What a first offer says about transport; `None` when DTLS-SRTP is off.
    pub(crate) fn offered_transport(&self) -> Option<OfferedTransport> {
        let dtls_srtp = self.dtls_policy();
        if dtls_srtp == DtlsSrtpPolicy::Off {
            return None;
        }
        Some(OfferedTransport {
            dtls_srtp,
            ice: self.ice,
            ice_credentials: self.ice_credentials.clone(),
            setup: SetupRole::ActPass,
            controlling: None,
            audio_candidates: self.candidates(self.audio_port, false),
            video_candidates: self.candidates(self.video_port, true),
            bundle: self.bundle && self.ice != IcePolicy::Off,
        })
    }
}

impl OfferedTransport {
    /// The `a=` lines of one offered stream (ICE when offered, fingerprint, setup).
    pub(crate) fn lines(&self, fingerprint: &Fingerprint, video: bool) -> Vec<String> {
        let mut lines = Vec::new();
        if self.bundle {
            lines.push(format!("mid:{}", offered_mid(video)));
            lines.push(format!("extmap:{DEFAULT_MID_ID} {MID_URI}"));
        }
        if self.ice != IcePolicy::Off {
            let candidates = if video {
                &self.video_candidates
            } else {
                &self.audio_candidates
            };
            lines.extend(ice_lines(&self.ice_credentials, candidates));
        }
        lines.push(format!("fingerprint:{fingerprint}"));
        lines.push(format!("setup:{}", self.setup.as_str()));
        lines
    }

    /// The session-level lines of the offer (`a=ice-lite`, `a=group:BUNDLE` of audio and, when
    /// offered, video).
    pub(crate) fn session_lines(&self, video: bool) -> Vec<String> {
        let group: Vec<String> = if self.bundle {
            let mids = if video {
                &[AUDIO_MID, VIDEO_MID][..]
            } else {
                &[AUDIO_MID][..]
            };
            mids.iter().map(|m| m.to_string()).collect()
        } else {
            Vec::new()
        };
        super::transport::session_lines(self.ice == IcePolicy::Lite, &group)
    }

    /// Reads what an answered stream agreed to: `Ok(None)` when the answer did not take
    /// DTLS-SRTP (plain or SDES, as the SDES policy decides), an error when it must have.
    pub(crate) fn answered(
        &self,
        m: &MediaDescription,
        rtcp_mux: bool,
        video: bool,
    ) -> Result<Option<NegotiatedTransport>, String> {
        let t = &m.transport;
        if t.fingerprints.is_empty() {
            return if self.dtls_srtp == DtlsSrtpPolicy::Mandatory || is_dtls_proto(&m.proto) {
                Err("no a=fingerprint in the answer and DTLS-SRTP is mandatory".into())
            } else {
                Ok(None)
            };
        }
        if !rtcp_mux {
            return Err("DTLS-SRTP answered without a=rtcp-mux".into());
        }
        // RFC 4145: no a=setup means active.
        let theirs = t.setup.unwrap_or(SetupRole::Active);
        let dtls_client = SetupRole::we_are_client(self.setup, theirs)
            .ok_or_else(|| format!("a=setup:{} cannot answer ours", theirs.as_str()))?;
        let ice = negotiated_ice(m, self.ice, |lite| {
            (
                // The offerer controls unless it is lite and the answerer is not.
                self.controlling.unwrap_or(!lite || t.ice_lite),
                self.ice_credentials.clone(),
                if video {
                    self.video_candidates.clone()
                } else {
                    self.audio_candidates.clone()
                },
            )
        });
        Ok(Some(NegotiatedTransport {
            ice,
            remote_fingerprints: t.fingerprints.clone(),
            dtls_client,
            mid: self.bundle.then(|| offered_mid(video).to_string()),
            bundle: None,
        }))
    }
}

fn offered_mid(video: bool) -> &'static str {
    if video {
        VIDEO_MID
    } else {
        AUDIO_MID
    }
}

/// Joins an audio and a video stream that both sides put in one BUNDLE group (`group`, the
/// answer's): the video stream takes the audio stream's transport (agent, credentials,
/// candidates, DTLS role and peer) and keeps its mid; each keeps the MID extension ID its
/// m-line maps (`audio_ext`, `video_ext`). The engine runs the two streams over one socket.
pub(crate) fn join_bundle(
    audio: &mut NegotiatedTransport,
    video: &mut NegotiatedTransport,
    group: Vec<String>,
    (audio_ext, video_ext): (Option<u8>, Option<u8>),
) {
    audio.bundle = Some(NegotiatedBundle {
        group: group.clone(),
        mid_ext: audio_ext,
    });
    *video = NegotiatedTransport {
        mid: video.mid.take(),
        bundle: Some(NegotiatedBundle {
            group,
            mid_ext: video_ext,
        }),
        ..audio.clone()
    };
}

/// The BUNDLE group of `groups` (a description's) that holds both `audio_mid` and `video_mid`,
/// reduced to those two in the group's order; `None` when no group holds both.
pub(crate) fn group_of(
    groups: &[Vec<String>],
    audio_mid: &str,
    video_mid: &str,
) -> Option<Vec<String>> {
    let group = groups
        .iter()
        .find(|g| g.iter().any(|m| m == audio_mid) && g.iter().any(|m| m == video_mid))?;
    Some(
        group
            .iter()
            .filter(|m| *m == audio_mid || *m == video_mid)
            .cloned()
            .collect(),
    )
}

impl super::answer::Negotiation {
    /// How a [`Bundle`](crate::webrtc::Bundle) tells the audio and the video stream apart,
    /// when they are bundled: each m-line's mid, MID extension ID and payload types (audio
    /// with telephone-event; video with RTX, RED and ULPFEC). `None` without a group.
    pub fn bundle_routes(&self) -> Option<(MemberRoute, MemberRoute)> {
        if !self.bundled() {
            return None;
        }
        let v = self.video.as_ref()?;
        let route = |t: Option<&NegotiatedTransport>, pts: Vec<u8>, video: bool| MemberRoute {
            mid: t.and_then(|t| t.mid.clone()),
            mid_ext: t.and_then(|t| t.bundle.as_ref()).and_then(|b| b.mid_ext),
            payload_types: pts,
            remote_ssrcs: Vec::new(),
            video,
        };
        let a = &self.audio;
        let audio_pts = std::iter::once(a.pt).chain(a.dtmf_pt).collect();
        let video_pts = std::iter::once(v.pt)
            .chain(v.rtx_pt)
            .chain(v.fec.iter().flat_map(|(red, fec)| [*red, *fec]))
            .collect();
        Some((
            route(a.transport.as_ref(), audio_pts, false),
            route(v.transport.as_ref(), video_pts, true),
        ))
    }
}

/// An offer whose `a=bundle-only` m-lines (port 0, RFC 9143 §6) are given their BUNDLE
/// group's address and transport attributes (those of the group's first m-line with a port),
/// so that answering takes them as bundled streams; `None` when there is nothing to resolve or
/// we do not bundle (they are then refused as port-0 m-lines are).
pub(crate) fn resolve_bundle_only(
    offer: &super::model::SessionDescription,
    local: &LocalMedia,
) -> Option<super::model::SessionDescription> {
    if !local.bundle || !offer.media.iter().any(|m| m.bundle_only && m.port == 0) {
        return None;
    }
    let mid_of = |m: &MediaDescription| m.transport.mid.clone();
    let mut resolved = offer.clone();
    for group in &offer.bundle {
        let Some(tagged) = group.iter().find_map(|mid| {
            offer
                .media
                .iter()
                .find(|m| m.port != 0 && mid_of(m).as_ref() == Some(mid))
        }) else {
            continue;
        };
        for m in resolved.media.iter_mut() {
            let in_group = mid_of(m).is_some_and(|mid| group.contains(&mid));
            if m.bundle_only && m.port == 0 && in_group {
                m.port = tagged.port;
                m.connection = tagged.connection;
                m.rtcp = None;
                m.transport = super::transport::TransportAttrs {
                    mid: m.transport.mid.take(),
                    ..tagged.transport.clone()
                };
            }
        }
    }
    Some(resolved)
}

/// The MID extension's ID in `extmaps` when it fits the one-byte header form we write (1–14).
pub(crate) fn mid_ext_id(extmaps: &[ExtMap]) -> Option<u8> {
    extmap_id(extmaps, MID_URI).filter(|id| (1..=14).contains(id))
}

/// ICE for one stream when both sides do it (our `policy` is not off and the peer wrote
/// credentials on `m`): `ours` gives our role, credentials and candidates, told whether we are
/// lite; the peer's side comes from `m`. Offerer and answerer both build it here.
fn negotiated_ice(
    m: &MediaDescription,
    policy: IcePolicy,
    ours: impl FnOnce(bool) -> (bool, IceCredentials, StreamCandidates),
) -> Option<NegotiatedIce> {
    let remote = m
        .transport
        .ice
        .as_ref()
        .filter(|_| policy != IcePolicy::Off)?;
    let lite = policy == IcePolicy::Lite;
    let (controlling, local_credentials, local_candidates) = ours(lite);
    Some(NegotiatedIce {
        lite,
        controlling,
        local_credentials,
        local_candidates,
        remote_credentials: remote.clone(),
        remote_candidates: remote_candidates(m),
    })
}

/// The peer's candidates: those it listed, else its default address as a host candidate.
fn remote_candidates(m: &MediaDescription) -> Vec<Candidate> {
    if !m.transport.candidates.is_empty() {
        return m.transport.candidates.clone();
    }
    m.rtp_addr()
        .and_then(|a| Candidate::host(a, is::Protocol::Udp).ok())
        .into_iter()
        .collect()
}

/// How we answer one offered stream's transport: DTLS-SRTP (with ICE or not) and the lines to
/// write, `Ok(None)` for SDES or plain RTP (crypto.rs decides), or why the stream cannot be
/// taken. `port` is our port for the stream; `keep` the transport already running in the call
/// (a re-offer keeps our credentials and role: no ICE restart, no new handshake); `controlling`
/// the ICE role this call already has (a stream's own, or the audio's for video added later),
/// which a re-offer from the other side does not change.
pub(crate) fn answer_transport(
    m: &MediaDescription,
    local: &LocalMedia,
    port: u16,
    video: bool,
    keep: Option<&NegotiatedTransport>,
    controlling: Option<bool>,
) -> Result<Option<(NegotiatedTransport, Vec<String>)>, String> {
    let policy = local.dtls_policy();
    let t = &m.transport;
    let dtls_proto = is_dtls_proto(&m.proto);
    let Some(fingerprint) = local
        .dtls_fingerprint
        .as_ref()
        .filter(|_| policy != DtlsSrtpPolicy::Off)
    else {
        return if local.dtls_srtp == DtlsSrtpPolicy::Mandatory {
            // Never a plain call under a mandatory policy, even misconfigured.
            Err("DTLS-SRTP is mandatory and no certificate fingerprint is configured".into())
        } else if dtls_proto {
            Err(format!("{} offered and DTLS-SRTP is off", m.proto))
        } else {
            Ok(None)
        };
    };
    let refuse = |why: String| {
        if dtls_proto || policy == DtlsSrtpPolicy::Mandatory {
            Err(why)
        } else {
            Ok(None)
        }
    };
    if t.fingerprints.is_empty() {
        return refuse(format!(
            "{} stream offered without a=fingerprint and DTLS-SRTP is mandatory",
            m.kind.as_str()
        ));
    }
    if !(local.rtcp_mux && m.rtcp_mux) {
        return refuse("DTLS-SRTP offered without a=rtcp-mux".into());
    }
    let ours = match keep {
        // A re-offer with actpass (or the role the peer had) keeps the association we run.
        Some(k) => k.our_setup(),
        None => match t.setup {
            Some(SetupRole::ActPass) => local.dtls_answer_setup,
            offered => match SetupRole::answer(offered) {
                Some(role) => role,
                None => return refuse("a=setup:holdconn offered".into()),
            },
        },
    };
    let dtls_client = ours == SetupRole::Active;
    let kept = keep.and_then(|k| k.ice.as_ref());
    let ice = negotiated_ice(m, local.ice, |lite| {
        (
            // In a new call the answerer controls only when it is full and the offerer lite;
            // in a running one the role stays.
            controlling.unwrap_or(!lite && t.ice_lite),
            kept.map_or_else(
                || local.ice_credentials.clone(),
                |k| k.local_credentials.clone(),
            ),
            kept.map_or_else(
                || local.candidates(port, video),
                |k| k.local_candidates.clone(),
            ),
        )
    });
    let negotiated = NegotiatedTransport {
        ice,
        remote_fingerprints: t.fingerprints.clone(),
        dtls_client,
        mid: t.mid.clone(),
        bundle: None,
    };
    let lines = negotiated.lines(fingerprint, ours);
    Ok(Some((negotiated, lines)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_names() {
        for p in [
            DtlsSrtpPolicy::Off,
            DtlsSrtpPolicy::Optional,
            DtlsSrtpPolicy::Mandatory,
        ] {
            assert_eq!(DtlsSrtpPolicy::from_name(p.as_str()), Some(p));
        }
        assert_eq!(DtlsSrtpPolicy::from_name("ON"), None);
        assert!(is_dtls_proto("udp/tls/rtp/savpf") && is_dtls_proto("UDP/TLS/RTP/SAVP"));
        assert!(!is_dtls_proto("RTP/SAVPF"));
    }

    #[test]
    fn candidates_skip_unspecified_addresses() {
        let c = StreamCandidates::of("0.0.0.0:4000".parse().unwrap(), None);
        assert!(c.host.is_empty() && c.lines().is_empty());
        let c = StreamCandidates::of(
            "192.0.2.1:4000".parse().unwrap(),
            Some("203.0.113.9:61000".parse().unwrap()),
        );
        let lines = c.lines();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].contains("192.0.2.1 4000 typ host"), "{lines:?}");
        // The related address is not disclosed (the ICE library writes a placeholder).
        assert!(
            lines[1].contains("203.0.113.9 61000 typ srflx"),
            "{lines:?}"
        );
        // A TURN allocation's address: a relayed candidate, based on the host one.
        let c = c.with_relayed(Some("198.51.100.4:50000".parse().unwrap()));
        assert_eq!(c.relayed.len(), 1);
        let lines = c.lines();
        assert!(
            lines[2].contains("198.51.100.4 50000 typ relay"),
            "{lines:?}"
        );
    }
}
