//! The session metadata of a call (what `on_call` and the session info carry), for incoming
//! and dialed calls alike.

use std::collections::HashMap;

use crate::sdp::Negotiation;
use crate::sip::SipTransportKind;

/// Who takes part in a call, as its metadata names them.
pub(super) struct Parties {
    pub call_id: String,
    pub caller: String,
    pub callee: String,
    pub caller_display_name: Option<String>,
    pub caller_user: Option<String>,
    pub x_headers: Vec<(String, String)>,
    pub room_id: String,
    /// `inbound` or `outbound`.
    pub direction: &'static str,
    /// What the call's signalling travels on.
    pub transport: SipTransportKind,
}

/// A display name as text: a quoted-string loses its quotes and escapes (RFC 3261 §25.1),
/// a token sequence stays as it is.
fn unquote(name: &str) -> String {
    let name = name.trim();
    let Some(inner) = name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) else {
        return name.to_string();
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

/// The session metadata of a call (roomkit's keys) and of its video session.
pub(super) fn call_metadata(
    p: &Parties,
    neg: &Negotiation,
) -> (HashMap<String, String>, HashMap<String, String>) {
    let mut meta: HashMap<String, String> = HashMap::new();
    meta.insert("backend".into(), "sip".into());
    meta.insert("direction".into(), p.direction.into());
    meta.insert("sip_transport".into(), p.transport.param().into());
    meta.insert("call_id".into(), p.call_id.clone());
    meta.insert("caller".into(), p.caller.clone());
    meta.insert("callee".into(), p.callee.clone());
    meta.insert(
        "caller_display_name".into(),
        unquote(p.caller_display_name.as_deref().unwrap_or_default()),
    );
    if let Some(u) = &p.caller_user {
        meta.insert("caller_user".into(), u.clone());
    }
    meta.insert("room_id".into(), p.room_id.clone());
    meta.insert("has_video".into(), neg.video.is_some().to_string());
    meta.insert("payload_type".into(), neg.audio.pt.to_string());
    meta.insert("clock_rate".into(), neg.audio.clock_rate.to_string());
    meta.insert("audio_codec".into(), neg.audio.codec.to_string());
    meta.insert("remote_addr".into(), neg.audio.remote.to_string());
    meta.insert(
        "video_codec".into(),
        neg.video
            .as_ref()
            .map_or(String::new(), |v| v.codec.as_str().to_string()),
    );
    for (n, v) in &p.x_headers {
        meta.insert(n.clone(), v.clone());
    }
    let mut video_meta = HashMap::new();
    if let Some(v) = &neg.video {
        video_meta.insert("backend".to_string(), "sip-av".to_string());
        video_meta.insert("call_id".into(), p.call_id.clone());
        video_meta.insert("video_codec".into(), v.codec.as_str().to_string());
        video_meta.insert("payload_type".into(), v.pt.to_string());
        video_meta.insert("clock_rate".into(), v.clock_rate.to_string());
        video_meta.insert("video_remote_addr".into(), v.remote.to_string());
    }
    (meta, video_meta)
}
