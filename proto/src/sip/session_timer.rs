//! Session timers (RFC 4028): the `Session-Expires` and `Min-SE` headers, who refreshes and
//! when, the 422 rule, and a small timer object a dialog owner drives.
//!
//! The side named by `refresher` sends a refresh (re-INVITE or UPDATE carrying
//! `Session-Expires`) at half the interval; the other side sends BYE if no refresh has arrived
//! by `interval − min(32 s, interval/3)` (RFC 4028 §10), and the refresher itself sends BYE when
//! the interval passes without a successful refresh. The interval restarts from every 2xx to a
//! refresh (or to the INVITE that set it up).

use std::time::{Duration, Instant};

use super::check;
use super::extensions::supports;
use super::message::SipMessage;
use super::syntax::{find_param, parse_params};

/// The smallest session interval RFC 4028 allows (§4, §5).
pub const MIN_SE_FLOOR: u32 = 90;

/// The option tag of the extension.
pub const TIMER_OPTION_TAG: &str = "timer";

/// Which side refreshes the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresher {
    /// The side that sent the INVITE (`refresher=uac`).
    Uac,
    /// The side that answered it (`refresher=uas`).
    Uas,
}

impl Refresher {
    /// The parameter value.
    pub fn as_str(self) -> &'static str {
        match self {
            Refresher::Uac => "uac",
            Refresher::Uas => "uas",
        }
    }
}

/// A `Session-Expires` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionExpires {
    /// The session interval in seconds.
    pub interval: u32,
    /// The `refresher` parameter, when present.
    pub refresher: Option<Refresher>,
}

impl SessionExpires {
    /// Parses `delta-seconds *(;se-params)`. An unknown `refresher` value is malformed; other
    /// parameters are ignored.
    pub fn parse(value: &str) -> Result<SessionExpires, &'static str> {
        let v = value.trim();
        let digits = v.find([';', ' ', '\t']).unwrap_or(v.len());
        let interval = check::expires(&v[..digits])
            .map_err(|_| "Session-Expires is not a number of seconds")?;
        let params = parse_params(&v[digits..])?;
        let refresher = match find_param(&params, "refresher").map(|p| p.value.as_deref()) {
            None => None,
            Some(Some(r)) if r.eq_ignore_ascii_case("uac") => Some(Refresher::Uac),
            Some(Some(r)) if r.eq_ignore_ascii_case("uas") => Some(Refresher::Uas),
            Some(_) => return Err("refresher is neither uac nor uas"),
        };
        Ok(SessionExpires {
            interval,
            refresher,
        })
    }

    /// The header value, e.g. `1800;refresher=uac`.
    pub fn to_header_value(self) -> String {
        match self.refresher {
            Some(r) => format!("{};refresher={}", self.interval, r.as_str()),
            None => self.interval.to_string(),
        }
    }

    /// The `Session-Expires` of a message (full or compact `x` name): `Ok(None)` when absent.
    pub fn of(msg: &SipMessage) -> Result<Option<SessionExpires>, &'static str> {
        let mut values = msg.header_values("Session-Expires");
        let Some(first) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err("more than one Session-Expires");
        }
        SessionExpires::parse(first).map(Some)
    }
}

/// Reads a message's `Min-SE` (`delta-seconds *(;generic-param)`): `Ok(None)` when absent.
pub fn min_se_of(msg: &SipMessage) -> Result<Option<u32>, &'static str> {
    let Some(value) = msg.header("Min-SE") else {
        return Ok(None);
    };
    let v = value.trim();
    let digits = v.find([';', ' ', '\t']).unwrap_or(v.len());
    let secs = check::expires(&v[..digits]).map_err(|_| "Min-SE is not a number of seconds")?;
    parse_params(&v[digits..])?;
    Ok(Some(secs))
}

/// Our session-timer settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTimerPolicy {
    /// The interval we ask for, and the longest we accept (seconds).
    pub interval: u32,
    /// The shortest interval we accept (at least [`MIN_SE_FLOOR`]).
    pub min_se: u32,
}

impl Default for SessionTimerPolicy {
    /// 1800 s asked for (RFC 4028's recommendation), 90 s the least accepted.
    fn default() -> Self {
        SessionTimerPolicy {
            interval: 1800,
            min_se: MIN_SE_FLOOR,
        }
    }
}

/// What a UAS does with the session-timer headers of an INVITE (or UPDATE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UasSessionTimer {
    /// Answer 422 with `Min-SE: min_se`: the interval asked for is below our minimum.
    TooSmall {
        /// Our minimum, for the `Min-SE` header of the 422.
        min_se: u32,
    },
    /// Accept with this interval: put `Session-Expires` in the 2xx, and `Require: timer` when
    /// `require_timer` (the UAC refreshes, so it must understand the extension).
    Use {
        /// The negotiated value, refresher resolved.
        session_expires: SessionExpires,
        /// Whether the 2xx needs `Require: timer`.
        require_timer: bool,
    },
}

/// The UAS rules of RFC 4028 §9 for a received INVITE/UPDATE. A malformed `Session-Expires`
/// or `Min-SE` is an error (answer 400).
///
/// - Asked-for interval below our `min_se`: 422 when the UAC supports `timer` (it can retry);
///   otherwise we cannot refuse and use our minimum ourselves as refresher.
/// - Accepted interval: the smaller of the asked-for one and ours, never below the request's
///   `Min-SE` or 90 s. Without `Session-Expires` in the request, ours.
/// - Refresher: the request's choice; else the UAC when it supports `timer` (the side that
///   asked for timers does the work), else us.
pub fn uas_session_timer(
    request: &SipMessage,
    policy: &SessionTimerPolicy,
) -> Result<UasSessionTimer, &'static str> {
    let asked = SessionExpires::of(request)?;
    let their_min = min_se_of(request)?.unwrap_or(0);
    let uac_supports = supports(request, TIMER_OPTION_TAG);
    let our_min = policy.min_se.max(MIN_SE_FLOOR);
    let floor = their_min.max(MIN_SE_FLOOR);
    let interval = match asked {
        Some(se) if se.interval < our_min && uac_supports => {
            return Ok(UasSessionTimer::TooSmall { min_se: our_min });
        }
        Some(se) if se.interval < our_min => our_min,
        Some(se) => se.interval.min(policy.interval.max(our_min)).max(floor),
        None => policy.interval.max(our_min).max(floor),
    };
    let refresher = match asked.and_then(|se| se.refresher) {
        // A UAC that does not support the extension cannot be made to refresh.
        Some(Refresher::Uac) if uac_supports => Refresher::Uac,
        Some(_) => Refresher::Uas,
        None if uac_supports => Refresher::Uac,
        None => Refresher::Uas,
    };
    Ok(UasSessionTimer::Use {
        session_expires: SessionExpires {
            interval,
            refresher: Some(refresher),
        },
        require_timer: refresher == Refresher::Uac,
    })
}

/// After a 422 to our INVITE: the interval to ask for next (the response's `Min-SE`, when it
/// is above what we asked), or `None` when the 422 gives nothing usable (give up).
pub fn uac_retry_after_422(response: &SipMessage, asked: u32) -> Option<u32> {
    let min = min_se_of(response).ok().flatten()?;
    (min > asked).then_some(min)
}

/// The session timer a UAC runs after the 2xx to its INVITE or refresh: `None` when the 2xx has
/// no (valid) `Session-Expires` (RFC 4028 §7.2: no session expiration). A missing refresher
/// means the UAC.
pub fn uac_session_timer(response: &SipMessage) -> Option<SessionExpires> {
    let se = SessionExpires::of(response).ok().flatten()?;
    Some(SessionExpires {
        interval: se.interval.max(MIN_SE_FLOOR),
        refresher: Some(se.refresher.unwrap_or(Refresher::Uac)),
    })
}

/// What a [`SessionTimer`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionTimerAction {
    /// Send a session refresh now (re-INVITE or UPDATE with `Session-Expires`).
    Refresh,
    /// The session expired without a refresh: send BYE.
    Expired,
}

/// The session timer of one dialog.
#[derive(Debug, Clone)]
pub struct SessionTimer {
    interval: Duration,
    we_refresh: bool,
    refresh_at: Option<Instant>,
    expire_at: Option<Instant>,
}

impl SessionTimer {
    /// Starts the timer when the 2xx that negotiated `session_expires` was sent or received.
    /// `we_are` is our role in the dialog (the INVITE's sender is the UAC).
    pub fn new(session_expires: SessionExpires, we_are: Refresher, now: Instant) -> SessionTimer {
        let mut t = SessionTimer {
            interval: Duration::ZERO,
            we_refresh: false,
            refresh_at: None,
            expire_at: None,
        };
        t.refreshed(session_expires, we_are, now);
        t
    }

    /// A refresh succeeded (its 2xx was sent or received): restart with the values it carried.
    pub fn refreshed(&mut self, session_expires: SessionExpires, we_are: Refresher, now: Instant) {
        let interval = Duration::from_secs(u64::from(session_expires.interval.max(MIN_SE_FLOOR)));
        self.interval = interval;
        self.we_refresh = session_expires.refresher.unwrap_or(Refresher::Uac) == we_are;
        if self.we_refresh {
            self.refresh_at = Some(now + interval / 2);
            self.expire_at = Some(now + interval);
        } else {
            self.refresh_at = None;
            self.expire_at = Some(now + interval - (interval / 3).min(Duration::from_secs(32)));
        }
    }

    /// True when this side sends the refreshes.
    #[cfg(any(test, feature = "_internals"))]
    pub fn we_refresh(&self) -> bool {
        self.we_refresh
    }

    /// The session interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// When `handle_timeout` next needs to run.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.refresh_at.or(self.expire_at)
    }

    /// What is due at `now`, if anything. After `Refresh` the timer waits for
    /// [`refreshed`](SessionTimer::refreshed) until the expiry; after `Expired` it stops.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<SessionTimerAction> {
        if self.refresh_at.is_some_and(|t| t <= now) {
            self.refresh_at = None;
            return Some(SessionTimerAction::Refresh);
        }
        if self.refresh_at.is_none() && self.expire_at.is_some_and(|t| t <= now) {
            self.expire_at = None;
            return Some(SessionTimerAction::Expired);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::parse;

    fn invite(extra: &str) -> SipMessage {
        parse(
            format!(
                "INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKst\r\n\
From: <sip:alice@example.com>;tag=a\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: st@x\r\n\
CSeq: 1 INVITE\r\n\
{extra}Content-Length: 0\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap()
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn headers_parse_strictly() {
        assert_eq!(
            SessionExpires::parse("1800;refresher=uac").unwrap(),
            SessionExpires {
                interval: 1800,
                refresher: Some(Refresher::Uac)
            }
        );
        assert_eq!(
            SessionExpires::parse(" 90 ; refresher = UAS ; x=y").unwrap(),
            SessionExpires {
                interval: 90,
                refresher: Some(Refresher::Uas)
            }
        );
        assert_eq!(SessionExpires::parse("600").unwrap().refresher, None);
        for bad in [
            "",
            "abc",
            "-5",
            "600;refresher=both",
            "600;refresher",
            "4294967296",
            "600 junk",
        ] {
            assert!(SessionExpires::parse(bad).is_err(), "{bad:?}");
        }
        let se = SessionExpires {
            interval: 1800,
            refresher: Some(Refresher::Uas),
        };
        assert_eq!(SessionExpires::parse(&se.to_header_value()).unwrap(), se);
        // Compact form `x`.
        let m = invite("x: 300;refresher=uac\r\nMin-SE: 120\r\n");
        assert_eq!(SessionExpires::of(&m).unwrap().unwrap().interval, 300);
        assert_eq!(min_se_of(&m), Ok(Some(120)));
        assert_eq!(
            min_se_of(&invite("Min-SE: lots\r\n")).map_err(|_| ()),
            Err(())
        );
        assert!(SessionExpires::of(&invite("Session-Expires: 100\r\nx: 200\r\n")).is_err());
    }

    #[test]
    fn uas_rules() {
        let policy = SessionTimerPolicy {
            interval: 1800,
            min_se: 300,
        };
        // Too small, and the UAC can retry: 422 with our minimum.
        assert_eq!(
            uas_session_timer(
                &invite("Supported: timer\r\nSession-Expires: 120\r\n"),
                &policy
            ),
            Ok(UasSessionTimer::TooSmall { min_se: 300 })
        );
        // Too small but the UAC knows nothing of timers: we refresh at our minimum.
        assert_eq!(
            uas_session_timer(&invite("Session-Expires: 120\r\n"), &policy),
            Ok(UasSessionTimer::Use {
                session_expires: SessionExpires {
                    interval: 300,
                    refresher: Some(Refresher::Uas)
                },
                require_timer: false
            })
        );
        // Too long is cut to ours; the UAC's refresher choice is kept, so Require: timer.
        assert_eq!(
            uas_session_timer(
                &invite("k: timer\r\nx: 7200;refresher=uac\r\nMin-SE: 600\r\n"),
                &policy
            ),
            Ok(UasSessionTimer::Use {
                session_expires: SessionExpires {
                    interval: 1800,
                    refresher: Some(Refresher::Uac)
                },
                require_timer: true
            })
        );
        // The request's Min-SE is a floor we never go under.
        assert_eq!(
            uas_session_timer(
                &invite("Supported: timer\r\nSession-Expires: 7200\r\nMin-SE: 3600\r\n"),
                &policy
            ),
            Ok(UasSessionTimer::Use {
                session_expires: SessionExpires {
                    interval: 3600,
                    refresher: Some(Refresher::Uac)
                },
                require_timer: true
            })
        );
        // Nothing asked, UAC without support: we refresh with our interval.
        assert_eq!(
            uas_session_timer(&invite(""), &policy),
            Ok(UasSessionTimer::Use {
                session_expires: SessionExpires {
                    interval: 1800,
                    refresher: Some(Refresher::Uas)
                },
                require_timer: false
            })
        );
        assert!(uas_session_timer(&invite("Session-Expires: soon\r\n"), &policy).is_err());
    }

    #[test]
    fn uac_rules() {
        let too_small = parse(
            b"SIP/2.0 422 Session Interval Too Small\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKst\r\n\
From: <sip:alice@example.com>;tag=a\r\n\
To: <sip:bob@example.com>;tag=b\r\n\
Call-ID: st@x\r\nCSeq: 1 INVITE\r\nMin-SE: 600\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(uac_retry_after_422(&too_small, 90), Some(600));
        assert_eq!(uac_retry_after_422(&too_small, 600), None, "no progress");
        let ok = |se: &str| {
            parse(
                format!(
                    "SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKst\r\n\
From: <sip:alice@example.com>;tag=a\r\n\
To: <sip:bob@example.com>;tag=b\r\n\
Call-ID: st@x\r\nCSeq: 1 INVITE\r\n{se}Content-Length: 0\r\n\r\n"
                )
                .as_bytes(),
            )
            .unwrap()
        };
        assert_eq!(uac_session_timer(&ok("")), None);
        assert_eq!(
            uac_session_timer(&ok("Session-Expires: 600;refresher=uas\r\n")),
            Some(SessionExpires {
                interval: 600,
                refresher: Some(Refresher::Uas)
            })
        );
        assert_eq!(
            uac_session_timer(&ok("Session-Expires: 600\r\n"))
                .unwrap()
                .refresher,
            Some(Refresher::Uac)
        );
    }

    #[test]
    fn refresher_refreshes_at_half_and_gives_up_at_the_interval() {
        let t0 = Instant::now();
        let se = SessionExpires {
            interval: 1800,
            refresher: Some(Refresher::Uac),
        };
        let mut t = SessionTimer::new(se, Refresher::Uac, t0);
        assert!(t.we_refresh());
        assert_eq!(t.poll_timeout(), Some(t0 + secs(900)));
        assert_eq!(t.handle_timeout(t0 + secs(899)), None);
        assert_eq!(
            t.handle_timeout(t0 + secs(900)),
            Some(SessionTimerAction::Refresh)
        );
        // The refresh is answered: the interval restarts from there.
        t.refreshed(se, Refresher::Uac, t0 + secs(901));
        assert_eq!(t.poll_timeout(), Some(t0 + secs(1801)));
        t.handle_timeout(t0 + secs(1801));
        // This time the refresh is never answered.
        assert_eq!(t.poll_timeout(), Some(t0 + secs(2701)));
        assert_eq!(
            t.handle_timeout(t0 + secs(2701)),
            Some(SessionTimerAction::Expired)
        );
        assert_eq!(t.poll_timeout(), None);
    }

    #[test]
    fn the_other_side_hangs_up_a_little_before_expiry() {
        let t0 = Instant::now();
        let se = SessionExpires {
            interval: 1800,
            refresher: Some(Refresher::Uac),
        };
        let mut t = SessionTimer::new(se, Refresher::Uas, t0);
        assert!(!t.we_refresh());
        // interval − min(32, interval/3) = 1768 s.
        assert_eq!(t.poll_timeout(), Some(t0 + secs(1768)));
        assert_eq!(
            t.handle_timeout(t0 + secs(1768)),
            Some(SessionTimerAction::Expired)
        );
        // A short interval: 90 − 30.
        let short = SessionExpires {
            interval: 90,
            refresher: Some(Refresher::Uas),
        };
        let t = SessionTimer::new(short, Refresher::Uac, t0);
        assert_eq!(t.poll_timeout(), Some(t0 + secs(60)));
        assert_eq!(t.interval(), secs(90));
    }
}
