//! SIP dialogs (RFC 3261 §12): the state two user agents share for a call — Call-ID and tags,
//! both CSeq spaces, the remote target and the route set — and the in-dialog requests built
//! from it.
//!
//! Header values for the requests we send are taken from the raw text we received (the INVITE's
//! From and To, the response's To), never re-serialised from typed values.

use std::fmt;

#[cfg(any(test, feature = "_internals"))]
use super::builder::new_branch;
use super::builder::RequestBuilder;
use super::message::{Method, NameAddr, SipMessage};
use super::rng::SipRng;
use super::route::{next_hop, route_request, NextHop, RoutedRequest};

/// Identifies a dialog: Call-ID plus both tags.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogId {
    /// The Call-ID.
    pub call_id: String,
    /// Our tag.
    pub local_tag: String,
    /// The peer's tag (empty for an RFC 2543 peer that sent none).
    pub remote_tag: String,
}

impl DialogId {
    /// True when a request from the peer belongs to this dialog (Call-ID, our tag in To, their
    /// tag in From).
    pub fn matches_request(&self, request: &SipMessage) -> bool {
        request.call_id() == self.call_id
            && request.to().tag() == Some(self.local_tag.as_str())
            && request.from().tag().unwrap_or_default() == self.remote_tag
    }
}

/// Why a request or response cannot create or continue a dialog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialogError {
    /// The dialog-creating message has no Contact (answer 400).
    MissingContact,
    /// The Contact cannot be the remote target: more than one, or not a SIP/SIPS URI that can be
    /// a Request-URI (answer 400, RFC 3261 §8.1.1.8).
    UnusableContact(&'static str),
    /// The first route is a strict router whose URI cannot be a Request-URI (answer 400).
    UnusableRoute(&'static str),
    /// A response without a To tag cannot create a dialog.
    MissingRemoteTag,
    /// A request whose CSeq is not above the last one seen from the peer (answer 500,
    /// RFC 3261 §12.2.2).
    CSeqOutOfOrder {
        /// Highest CSeq seen so far.
        last: u32,
        /// CSeq of the refused request.
        got: u32,
    },
    /// The message belongs to another dialog (answer 481).
    NotThisDialog,
}

impl DialogError {
    /// The status code to answer the offending request with.
    pub fn status(&self) -> u16 {
        match self {
            DialogError::MissingContact
            | DialogError::UnusableContact(_)
            | DialogError::UnusableRoute(_)
            | DialogError::MissingRemoteTag => 400,
            DialogError::CSeqOutOfOrder { .. } => 500,
            DialogError::NotThisDialog => 481,
        }
    }
}

impl fmt::Display for DialogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DialogError::MissingContact => f.write_str("no Contact to use as remote target"),
            DialogError::UnusableContact(why) => write!(f, "unusable Contact: {why}"),
            DialogError::UnusableRoute(why) => write!(f, "unusable strict route: {why}"),
            DialogError::MissingRemoteTag => f.write_str("response without a To tag"),
            DialogError::CSeqOutOfOrder { last, got } => {
                write!(f, "CSeq {got} is not above the last one, {last}")
            }
            DialogError::NotThisDialog => f.write_str("message belongs to another dialog"),
        }
    }
}

impl std::error::Error for DialogError {}

/// One dialog, from either side.
#[derive(Debug, Clone)]
pub struct Dialog {
    id: DialogId,
    /// Our From value in requests we send, tag included.
    local_party: String,
    /// Our To value in requests we send, the peer's tag included.
    remote_party: String,
    local_cseq: u32,
    remote_cseq: Option<u32>,
    remote_target: String,
    route_set: Vec<NameAddr>,
}

/// The remote target a message's Contact gives, if it has one (RFC 3261 §12.1.1, §12.1.2,
/// §12.2.2). §8.1.1.8 wants exactly one SIP or SIPS URI there; the in-dialog requests we build
/// from it must pass our own Request-URI check, so URI headers and `method` are dropped
/// ([`Uri::request_target`](super::message::Uri::request_target)) and anything still unusable is
/// refused now rather than discovered when a BYE has to go out.
fn contact_target(msg: &SipMessage) -> Result<Option<String>, DialogError> {
    match msg.contacts() {
        [] => Ok(None),
        [one] => one
            .uri()
            .request_target()
            .map(|u| Some(u.as_str().to_string()))
            .map_err(DialogError::UnusableContact),
        _ => Err(DialogError::UnusableContact("more than one Contact")),
    }
}

/// Checks the Request-URI a strict router first in `route_set` gets (RFC 3261 §12.2.1.1) when
/// the dialog is made, so that building a request from the dialog cannot fail later.
fn check_strict_route(route_set: &[NameAddr]) -> Result<(), DialogError> {
    match route_set.first() {
        Some(r) if r.uri().param("lr").is_none() => r
            .uri()
            .request_target()
            .map(|_| ())
            .map_err(DialogError::UnusableRoute),
        _ => Ok(()),
    }
}

impl Dialog {
    /// The dialog a UAS creates when it answers `invite` with a tag of its own (RFC 3261
    /// §12.1.1): the route set is the Record-Route list in order, the remote target is the
    /// INVITE's Contact.
    pub fn uas(invite: &SipMessage, local_tag: &str) -> Result<Dialog, DialogError> {
        let remote_target = contact_target(invite)?.ok_or(DialogError::MissingContact)?;
        let route_set = invite.record_routes().to_vec();
        check_strict_route(&route_set)?;
        let echo = invite.echo();
        let to = echo.to.clone().unwrap_or_default();
        Ok(Dialog {
            id: DialogId {
                call_id: invite.call_id().to_string(),
                local_tag: local_tag.to_string(),
                remote_tag: invite.from().tag().unwrap_or_default().to_string(),
            },
            local_party: format!("{to};tag={local_tag}"),
            remote_party: echo.from.clone().unwrap_or_default(),
            local_cseq: 0,
            remote_cseq: Some(invite.cseq().number),
            remote_target,
            route_set,
        })
    }

    /// The dialog a UAC creates from its own `request` and a 1xx/2xx `response` carrying a To
    /// tag (RFC 3261 §12.1.2): the route set is the response's Record-Route list reversed.
    pub fn uac(request: &SipMessage, response: &SipMessage) -> Result<Dialog, DialogError> {
        let remote_tag = response
            .to()
            .tag()
            .ok_or(DialogError::MissingRemoteTag)?
            .to_string();
        let remote_target = contact_target(response)?.ok_or(DialogError::MissingContact)?;
        let mut route_set = response.record_routes().to_vec();
        route_set.reverse();
        check_strict_route(&route_set)?;
        Ok(Dialog {
            id: DialogId {
                call_id: request.call_id().to_string(),
                local_tag: request.from().tag().unwrap_or_default().to_string(),
                remote_tag,
            },
            local_party: request.echo().from.clone().unwrap_or_default(),
            remote_party: response.echo().to.clone().unwrap_or_default(),
            local_cseq: request.cseq().number,
            remote_cseq: None,
            remote_target,
            route_set,
        })
    }

    /// Call-ID and tags.
    pub fn id(&self) -> &DialogId {
        &self.id
    }

    /// Where our in-dialog requests go (the peer's Contact URI).
    pub fn remote_target(&self) -> &str {
        &self.remote_target
    }

    /// The route set, in the order Route headers are written.
    pub fn route_set(&self) -> &[NameAddr] {
        &self.route_set
    }

    /// Where every in-dialog request we send goes (BYE, re-INVITE, INFO, the ACK for a 2xx):
    /// the first route of the route set, else the remote target (RFC 3261 §12.2.1.1). `None`
    /// when that is not a SIP URI.
    pub fn next_hop(&self) -> Option<NextHop> {
        next_hop(&self.remote_target, &self.route_set)
    }

    /// The last CSeq number we used.
    #[cfg(any(test, feature = "_internals"))]
    pub fn local_cseq(&self) -> u32 {
        self.local_cseq
    }

    /// The highest CSeq number seen from the peer.
    #[cfg(any(test, feature = "_internals"))]
    pub fn remote_cseq(&self) -> Option<u32> {
        self.remote_cseq
    }

    /// True when a request from the peer belongs to this dialog (Call-ID, our tag in To, their
    /// tag in From).
    pub fn matches_request(&self, request: &SipMessage) -> bool {
        self.id.matches_request(request)
    }

    /// True when a response to our request belongs to this dialog.
    pub fn matches_response(&self, response: &SipMessage) -> bool {
        response.call_id() == self.id.call_id
            && response.from().tag() == Some(self.id.local_tag.as_str())
            && response.to().tag().unwrap_or_default() == self.id.remote_tag
    }

    /// Accepts an in-dialog request from the peer: its CSeq must be above the last one (ACK and
    /// CANCEL reuse their INVITE's number and are exempt). A target-refresh request (re-INVITE,
    /// UPDATE) with a Contact moves the remote target; one with an unusable Contact is refused
    /// and leaves the dialog as it was.
    pub fn accept_request(&mut self, request: &SipMessage) -> Result<(), DialogError> {
        if !self.matches_request(request) {
            return Err(DialogError::NotThisDialog);
        }
        if matches!(request.method(), Method::Ack | Method::Cancel) {
            return Ok(());
        }
        let got = request.cseq().number;
        if let Some(last) = self.remote_cseq {
            if got <= last {
                return Err(DialogError::CSeqOutOfOrder { last, got });
            }
        }
        let new_target = if matches!(request.method(), Method::Invite | Method::Update) {
            contact_target(request)?
        } else {
            None
        };
        self.remote_cseq = Some(got);
        if let Some(target) = new_target {
            self.remote_target = target;
        }
        Ok(())
    }

    /// A 2xx to our own target-refresh request (re-INVITE, UPDATE) moves the remote target to
    /// its Contact (RFC 3261 §12.2.1.2). Responses of other dialogs change nothing.
    pub fn refresh_target(&mut self, response: &SipMessage) {
        if !self.matches_response(response)
            || !response.status().is_some_and(|s| (200..300).contains(&s))
        {
            return;
        }
        if let Some(c) = response.contact() {
            self.remote_target = c.uri().as_str().to_string();
        }
    }

    /// Takes the next local CSeq number.
    pub fn next_cseq(&mut self) -> u32 {
        self.local_cseq += 1;
        self.local_cseq
    }

    /// A new in-dialog request (BYE, re-INVITE, INFO, OPTIONS...) with the next CSeq, a fresh
    /// branch, and Request-URI/Route set from the remote target and route set (RFC 3261
    /// §12.2.1.1: loose routing when the first route has `lr`, strict routing otherwise).
    /// `sent_by` is our `host:port` for the Via, `transport` e.g. `UDP`.
    #[cfg(any(test, feature = "_internals"))]
    pub fn request(&mut self, method: Method, sent_by: &str, transport: &str) -> RequestBuilder {
        let cseq = self.next_cseq();
        self.request_with_cseq(method, cseq, sent_by, transport, &new_branch())
    }

    /// [`request`](Dialog::request) with the branch drawn from `rng` (a sans-IO core's).
    pub fn request_with_rng(
        &mut self,
        method: Method,
        sent_by: &str,
        transport: &str,
        rng: &mut SipRng,
    ) -> RequestBuilder {
        let cseq = self.next_cseq();
        self.request_with_cseq(method, cseq, sent_by, transport, &rng.branch())
    }

    /// The ACK for a 2xx to our INVITE with CSeq `invite_cseq` (same number, its own branch).
    #[cfg(any(test, feature = "_internals"))]
    pub fn ack(&self, invite_cseq: u32, sent_by: &str, transport: &str) -> RequestBuilder {
        self.request_with_cseq(Method::Ack, invite_cseq, sent_by, transport, &new_branch())
    }

    /// [`ack`](Dialog::ack) with the branch drawn from `rng` (a sans-IO core's).
    pub fn ack_with_rng(
        &self,
        invite_cseq: u32,
        sent_by: &str,
        transport: &str,
        rng: &mut SipRng,
    ) -> RequestBuilder {
        self.request_with_cseq(Method::Ack, invite_cseq, sent_by, transport, &rng.branch())
    }

    fn request_with_cseq(
        &self,
        method: Method,
        cseq: u32,
        sent_by: &str,
        transport: &str,
        branch: &str,
    ) -> RequestBuilder {
        let RoutedRequest {
            request_uri: uri,
            routes,
        } = route_request(&self.remote_target, &self.route_set);
        let mut b = RequestBuilder::new(method, &uri)
            .via(&format!(
                "SIP/2.0/{transport} {sent_by};branch={branch};rport"
            ))
            .from(&self.local_party)
            .to(&self.remote_party)
            .call_id(&self.id.call_id)
            .cseq(cseq);
        for r in &routes {
            b = b.route(r);
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::parse;

    fn invite(record_route: &str) -> SipMessage {
        parse(
            format!(
                "INVITE sip:bob@192.0.2.9 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKinv1\r\n\
{record_route}\
From: \"Alice\" <sip:alice@example.com>;tag=a1\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: call-1@x\r\n\
CSeq: 10 INVITE\r\n\
Contact: <sip:alice@192.0.2.1:5060;transport=udp>\r\n\
Content-Length: 0\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn uas_bye_goes_to_the_contact_with_raw_parties() {
        let mut d = Dialog::uas(&invite(""), "b1").unwrap();
        let bye = parse(&d.request(Method::Bye, "192.0.2.9:5060", "UDP").build()).unwrap();
        assert_eq!(
            bye.request_uri().unwrap().as_str(),
            "sip:alice@192.0.2.1:5060;transport=udp"
        );
        assert_eq!(bye.from().raw(), "<sip:bob@example.com>;tag=b1");
        assert_eq!(bye.to().raw(), "\"Alice\" <sip:alice@example.com>;tag=a1");
        assert_eq!(bye.call_id(), "call-1@x");
        assert_eq!(bye.cseq().number, 1);
        assert!(bye.top_via().has_rfc3261_branch());
        assert!(bye.routes().is_empty());
        let again = parse(&d.request(Method::Bye, "192.0.2.9:5060", "UDP").build()).unwrap();
        assert_eq!(again.cseq().number, 2);
        assert_ne!(again.top_via().branch(), bye.top_via().branch());
    }

    #[test]
    fn uas_keeps_record_route_order_for_loose_routing() {
        let rr = "Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n";
        let mut d = Dialog::uas(&invite(rr), "b1").unwrap();
        let bye = parse(&d.request(Method::Bye, "h:5060", "UDP").build()).unwrap();
        let routes: Vec<&str> = bye.routes().iter().map(|r| r.raw()).collect();
        assert_eq!(
            routes,
            ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
        );
        assert!(bye
            .request_uri()
            .unwrap()
            .as_str()
            .starts_with("sip:alice@"));
    }

    #[test]
    fn strict_route_moves_the_target_into_the_route_set() {
        let rr = "Record-Route: <sip:strict.example.com>\r\n";
        let mut d = Dialog::uas(&invite(rr), "b1").unwrap();
        let bye = parse(&d.request(Method::Bye, "h:5060", "UDP").build()).unwrap();
        assert_eq!(
            bye.request_uri().unwrap().as_str(),
            "sip:strict.example.com"
        );
        assert_eq!(
            bye.routes()[0].uri().as_str(),
            "sip:alice@192.0.2.1:5060;transport=udp"
        );
    }

    #[test]
    fn cseq_must_increase_and_reinvite_moves_the_target() {
        let inv = invite("");
        let mut d = Dialog::uas(&inv, "b1").unwrap();
        let req = |method: &str, cseq: u32, contact: &str| {
            parse(
                format!(
                    "{method} sip:bob@192.0.2.9 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK{method}{cseq}\r\n\
From: <sip:alice@example.com>;tag=a1\r\n\
To: <sip:bob@example.com>;tag=b1\r\n\
Call-ID: call-1@x\r\n\
CSeq: {cseq} {method}\r\n\
{contact}Content-Length: 0\r\n\r\n"
                )
                .as_bytes(),
            )
            .unwrap()
        };
        assert!(d.accept_request(&req("ACK", 10, "")).is_ok());
        assert_eq!(
            d.accept_request(&req("INFO", 10, "")),
            Err(DialogError::CSeqOutOfOrder { last: 10, got: 10 })
        );
        assert_eq!(
            d.accept_request(&req("INFO", 9, "")).unwrap_err().status(),
            500
        );
        d.accept_request(&req("INVITE", 11, "Contact: <sip:alice@198.51.100.7>\r\n"))
            .unwrap();
        assert_eq!(d.remote_target(), "sip:alice@198.51.100.7");
        assert_eq!(d.remote_cseq(), Some(11));
    }

    fn invite_with_contact(contact: &str, record_route: &str) -> Result<SipMessage, String> {
        parse(
            format!(
                "INVITE sip:bob@192.0.2.9 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKinv1\r\n\
{record_route}\
From: <sip:alice@example.com>;tag=a1\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: call-1@x\r\n\
CSeq: 10 INVITE\r\n\
{contact}\
Content-Length: 0\r\n\r\n"
            )
            .as_bytes(),
        )
        .map_err(|e| e.to_string())
    }

    /// RFC 3261 §8.1.1.8: exactly one SIP or SIPS URI; anything else cannot be a remote target.
    #[test]
    fn unusable_contacts_refuse_the_dialog_with_400() {
        for contact in [
            "Contact: <tel:+15551234567>\r\n",
            "Contact: <urn:service:sos>\r\n",
            "Contact: <sip:a@192.0.2.1>, <sip:b@192.0.2.2>\r\n",
            "Contact: <sip:a@192.0.2.1>\r\nContact: <sip:b@192.0.2.2>\r\n",
        ] {
            let invite = invite_with_contact(contact, "").unwrap();
            let err = Dialog::uas(&invite, "b1").unwrap_err();
            assert!(matches!(err, DialogError::UnusableContact(_)), "{contact}");
            assert_eq!(err.status(), 400);
        }
        let invite = invite_with_contact("", "").unwrap();
        assert_eq!(
            Dialog::uas(&invite, "b1").unwrap_err(),
            DialogError::MissingContact
        );
    }

    /// RFC 3261 §19.1.1 (table) and §19.1.5: no headers and no `method` in a Request-URI; every
    /// other part of the Contact stays as written.
    #[test]
    fn remote_target_drops_uri_headers_and_method() {
        let contact = "Contact: <sip:al?ce@192.0.2.1:5070;transport=udp;method=INVITE;lr?Subject=x&Priority=urgent>\r\n";
        let invite = invite_with_contact(contact, "").unwrap();
        let mut d = Dialog::uas(&invite, "b1").unwrap();
        assert_eq!(
            d.remote_target(),
            "sip:al?ce@192.0.2.1:5070;transport=udp;lr"
        );
        let bye = parse(&d.request(Method::Bye, "h:5060", "UDP").build()).unwrap();
        assert_eq!(bye.request_uri().unwrap().as_str(), d.remote_target());
    }

    #[test]
    fn strict_route_that_cannot_be_a_request_uri_refuses_the_dialog() {
        let rr = "Record-Route: <tel:+1555>\r\n";
        let invite = invite_with_contact("Contact: <sip:a@192.0.2.1>\r\n", rr).unwrap();
        let err = Dialog::uas(&invite, "b1").unwrap_err();
        assert!(matches!(err, DialogError::UnusableRoute(_)));
        assert_eq!(err.status(), 400);
        // The strict router's headers go; the BYE is one we accept.
        let rr = "Record-Route: <sip:strict.example.com?X=y>\r\n";
        let invite = invite_with_contact("Contact: <sip:a@192.0.2.1>\r\n", rr).unwrap();
        let mut d = Dialog::uas(&invite, "b1").unwrap();
        let bye = parse(&d.request(Method::Bye, "h:5060", "UDP").build()).unwrap();
        assert_eq!(
            bye.request_uri().unwrap().as_str(),
            "sip:strict.example.com"
        );
    }

    #[test]
    fn refresh_with_an_unusable_contact_is_refused_and_changes_nothing() {
        let mut d = Dialog::uas(&invite(""), "b1").unwrap();
        let reinvite = |cseq: u32, contact: &str| {
            parse(
                format!(
                    "INVITE sip:bob@192.0.2.9 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKre{cseq}\r\n\
From: <sip:alice@example.com>;tag=a1\r\n\
To: <sip:bob@example.com>;tag=b1\r\n\
Call-ID: call-1@x\r\n\
CSeq: {cseq} INVITE\r\n\
Contact: {contact}\r\n\
Content-Length: 0\r\n\r\n"
                )
                .as_bytes(),
            )
            .unwrap()
        };
        let before = d.remote_target().to_string();
        let err = d.accept_request(&reinvite(11, "<tel:+1555>")).unwrap_err();
        assert_eq!(err.status(), 400);
        assert_eq!(d.remote_target(), before);
        assert_eq!(d.remote_cseq(), Some(10));
        d.accept_request(&reinvite(11, "<sip:alice@198.51.100.7?Subject=x>"))
            .unwrap();
        assert_eq!(d.remote_target(), "sip:alice@198.51.100.7");
    }

    #[test]
    fn uac_reverses_record_route_and_uses_the_response_to() {
        let ours = parse(
            b"INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKout\r\n\
From: <sip:me@192.0.2.9>;tag=me1\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: out-1\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:me@192.0.2.9:5060>\r\n\
Content-Length: 0\r\n\r\n",
        )
        .unwrap();
        let ok = parse(
            b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKout\r\n\
Record-Route: <sip:p2.example.com;lr>\r\n\
Record-Route: <sip:p1.example.com;lr>\r\n\
From: <sip:me@192.0.2.9>;tag=me1\r\n\
To: <sip:bob@example.com>;tag=bob9\r\n\
Call-ID: out-1\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:bob@203.0.113.5>\r\n\
Content-Length: 0\r\n\r\n",
        )
        .unwrap();
        let mut d = Dialog::uac(&ours, &ok).unwrap();
        assert!(d.matches_response(&ok));
        let ack = parse(&d.ack(1, "192.0.2.9:5060", "UDP").build()).unwrap();
        assert_eq!(ack.cseq().number, 1);
        assert_eq!(ack.method(), &Method::Ack);
        assert_eq!(ack.routes()[0].raw(), "<sip:p1.example.com;lr>");
        let bye = parse(&d.request(Method::Bye, "192.0.2.9:5060", "UDP").build()).unwrap();
        assert_eq!(bye.cseq().number, 2);
        assert_eq!(bye.to().raw(), "<sip:bob@example.com>;tag=bob9");
        assert_eq!(bye.request_uri().unwrap().as_str(), "sip:bob@203.0.113.5");
    }

    #[test]
    fn a_2xx_to_our_reinvite_moves_the_target() {
        let ours = parse(
            b"INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKout\r\n\
From: <sip:me@192.0.2.9>;tag=me1\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: out-2\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:me@192.0.2.9:5060>\r\n\
Content-Length: 0\r\n\r\n",
        )
        .unwrap();
        let answer = |status: u16, tag: &str, contact: &str| {
            parse(
                format!(
                    "SIP/2.0 {status} X\r\n\
Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKout\r\n\
From: <sip:me@192.0.2.9>;tag=me1\r\n\
To: <sip:bob@example.com>;tag={tag}\r\n\
Call-ID: out-2\r\n\
CSeq: 2 INVITE\r\n\
Contact: <{contact}>\r\n\
Content-Length: 0\r\n\r\n"
                )
                .as_bytes(),
            )
            .unwrap()
        };
        let mut d = Dialog::uac(&ours, &answer(200, "b", "sip:bob@203.0.113.5")).unwrap();
        d.refresh_target(&answer(488, "b", "sip:bob@203.0.113.6"));
        d.refresh_target(&answer(200, "other", "sip:bob@203.0.113.7"));
        assert_eq!(d.remote_target(), "sip:bob@203.0.113.5");
        d.refresh_target(&answer(200, "b", "sip:bob@203.0.113.8:5070"));
        assert_eq!(d.remote_target(), "sip:bob@203.0.113.8:5070");
    }
}
