//! Digest tests: RFC vectors, both sides against each other, and the parser on odd input.

use std::time::{Duration, Instant};

use super::client::credentials_value;
use super::*;
use crate::sip::message::SipMessage;

fn nonce_of(challenge: &str) -> String {
    let start = challenge.find("nonce=\"").unwrap() + 7;
    challenge[start..start + 32].to_string()
}

fn users(name: &str) -> Option<String> {
    (name == "alice").then(|| "s3cret".to_string())
}

/// Seen while writing the `sip` fuzz target's digest check (our own credentials must verify):
/// values holding `"` or `\` (a realm from a peer's challenge, say) were written unescaped,
/// so our own Authorization did not parse.
#[test]
fn our_authorization_quotes_what_it_copies() {
    let mut auth = DigestAuthenticator::new("odd \"realm\" \\", Duration::from_secs(30));
    let now = Instant::now();
    let challenge = auth.challenge(now, false);
    let nonce = nonce_of(&challenge);
    let v = authorization_value(
        "al\"ice",
        "odd \"realm\" \\",
        "pw",
        "INVITE",
        "sip:a\"b@x",
        &nonce,
        1,
        "c\\n",
        Some("o\"p"),
    );
    let c = parse_authorization(&v).unwrap();
    assert_eq!(
        (c.username.as_str(), c.realm.as_str(), c.uri.as_str()),
        ("al\"ice", "odd \"realm\" \\", "sip:a\"b@x")
    );
    assert_eq!(c.opaque.as_deref(), Some("o\"p"));
    let pw = |u: &str| (u == "al\"ice").then(|| "pw".to_string());
    assert!(matches!(
        auth.verify(&v, "INVITE", now, pw),
        AuthOutcome::Authorized { .. }
    ));
}

#[test]
fn md5_matches_the_rfc1321_test_suite() {
    // The MD5 used for digests comes from the md-5 crate; these are RFC 1321's own vectors,
    // plus 55, 56 and 64 bytes, which straddle the one-block/two-block padding edge.
    let a55 = "a".repeat(55);
    let a56 = "a".repeat(56);
    let a64 = "a".repeat(64);
    let cases: [(&str, &str); 10] = [
        ("", "d41d8cd98f00b204e9800998ecf8427e"),
        ("a", "0cc175b9c0f1b6a831c399e269772661"),
        ("abc", "900150983cd24fb0d6963f7d28e17f72"),
        ("message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
        (
            "abcdefghijklmnopqrstuvwxyz",
            "c3fcd3d76192e4007dfb496cca67e13b",
        ),
        (
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
            "d174ab98d277d9f5a5611c2c9f419d9f",
        ),
        (
            "12345678901234567890123456789012345678901234567890123456789012345678901234567890",
            "57edf4a22be3c955ac49da2e2107b67a",
        ),
        (&a55, "ef1772b6dff9a122358552954ad0df65"),
        (&a56, "3b0c8ac703f828b04c6c197006d17218"),
        (&a64, "014842d480b571495a4a0363793f7367"),
    ];
    for (input, expected) in cases {
        let got = DigestAlgorithm::Md5.hash_hex(input.as_bytes());
        assert_eq!(got, expected, "MD5({input:?})");
    }
}

#[test]
fn rfc2617_example_response() {
    // The worked example of RFC 2617 §3.5 (HTTP GET, qop=auth).
    let r = digest_response(
        "Mufasa",
        "testrealm@host.com",
        "Circle Of Life",
        "GET",
        "/dir/index.html",
        "dcd98b7102dd2f0e8b11d0f600bfb0c093",
        Some(("00000001", "0a4f113b")),
    );
    assert_eq!(r, "6629fae49393a05397450978507c4ef1");
}

#[test]
fn parses_authorization_with_mixed_quoting() {
    let c = parse_authorization(
        "Digest username=\"bob\",realm=\"biloxi.com\", nonce=\"dcd98b\", \
         uri=\"sip:bob@biloxi.com\", qop=auth, nc=00000001, cnonce=\"0a4f113b\", \
         response=\"6629fae49393a05397450978507c4ef1\", opaque=\"5ccc069c\"",
    )
    .unwrap();
    assert_eq!(c.username, "bob");
    assert_eq!(c.qop.as_deref(), Some("auth"));
    assert_eq!(c.nc.as_deref(), Some("00000001"));
    assert_eq!(
        parse_authorization("NoOneKnowsThisScheme opaque-data=here"),
        Err(AuthError::NotDigest)
    );
    assert!(parse_authorization("Digest username=\"bob\"").is_err());
    assert!(parse_authorization("Digest username=\"bob").is_err());
}

#[test]
fn challenge_verify_single_use_and_expiry() {
    let t0 = Instant::now();
    let mut auth = DigestAuthenticator::new("roomkit", Duration::from_secs(30));
    let ch = auth.challenge(t0, false);
    assert!(ch.starts_with("Digest realm=\"roomkit\", nonce=\""));
    assert!(ch.contains("qop=\"auth\""));
    let nonce = nonce_of(&ch);
    let good = authorization_value(
        "alice",
        "roomkit",
        "s3cret",
        "INVITE",
        "sip:svc@h",
        &nonce,
        1,
        "c1",
        None,
    );
    assert_eq!(
        auth.verify(&good, "INVITE", t0, users),
        AuthOutcome::Authorized {
            username: "alice".into()
        }
    );
    // Single use: the same credentials again are stale.
    assert_eq!(auth.verify(&good, "INVITE", t0, users), AuthOutcome::Stale);

    // Expiry.
    let nonce = nonce_of(&auth.challenge(t0, false));
    let late = authorization_value(
        "alice",
        "roomkit",
        "s3cret",
        "INVITE",
        "sip:svc@h",
        &nonce,
        1,
        "c1",
        None,
    );
    assert_eq!(
        auth.verify(&late, "INVITE", t0 + Duration::from_secs(31), users),
        AuthOutcome::Stale
    );
    assert!(auth
        .challenge(t0 + Duration::from_secs(31), true)
        .ends_with("stale=true"));
    assert_eq!(auth.outstanding(), 1);
}

#[test]
fn wrong_password_user_or_method_is_rejected() {
    let t0 = Instant::now();
    let mut auth = DigestAuthenticator::new("roomkit", Duration::from_secs(30));
    let nonce = nonce_of(&auth.challenge(t0, false));
    let wrong = authorization_value(
        "alice",
        "roomkit",
        "guess",
        "INVITE",
        "sip:svc@h",
        &nonce,
        1,
        "c1",
        None,
    );
    assert!(matches!(
        auth.verify(&wrong, "INVITE", t0, users),
        AuthOutcome::Rejected(_)
    ));
    let right = authorization_value(
        "alice",
        "roomkit",
        "s3cret",
        "INVITE",
        "sip:svc@h",
        &nonce,
        1,
        "c1",
        None,
    );
    assert!(matches!(
        auth.verify(&right, "BYE", t0, users),
        AuthOutcome::Rejected(_)
    ));
    let stranger = authorization_value(
        "mallory",
        "roomkit",
        "x",
        "INVITE",
        "sip:svc@h",
        &nonce,
        1,
        "c1",
        None,
    );
    assert!(matches!(
        auth.verify(&stranger, "INVITE", t0, users),
        AuthOutcome::Rejected(_)
    ));
    // A failed attempt does not spend the nonce.
    assert_eq!(
        auth.verify(&right, "INVITE", t0, users),
        AuthOutcome::Authorized {
            username: "alice".into()
        }
    );
}

#[test]
fn nonce_table_is_bounded() {
    let t0 = Instant::now();
    let mut auth = DigestAuthenticator::new("r", Duration::from_secs(3600));
    for i in 0..(MAX_OUTSTANDING_NONCES as u64 + 10) {
        auth.challenge(t0 + Duration::from_millis(i), false);
    }
    assert_eq!(auth.outstanding(), MAX_OUTSTANDING_NONCES);
}

/// RFC 7616 §3.9.1: the same request answered with MD5 and with SHA-256.
fn rfc7616(algorithm: DigestAlgorithm) -> String {
    DigestInput {
        algorithm,
        username: "Mufasa",
        realm: "http-auth@example.org",
        password: "Circle of Life",
        method: "GET",
        uri: "/dir/index.html",
        nonce: "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
        cnonce: Some("f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"),
        nc: Some("00000001"),
    }
    .response()
}

#[test]
fn rfc7616_examples() {
    assert_eq!(
        rfc7616(DigestAlgorithm::Md5),
        "8ca523f5e9506fed4657c9700eebdbec"
    );
    assert_eq!(
        rfc7616(DigestAlgorithm::Sha256),
        "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    );
    // The -sess forms of the same inputs, computed independently (Python hashlib).
    assert_eq!(
        rfc7616(DigestAlgorithm::Md5Sess),
        "e783283f46242139c486a698fec7211d"
    );
    assert_eq!(
        rfc7616(DigestAlgorithm::Sha256Sess),
        "2fd51b3a77ad75bad6afad6003e818d767133c46d9e2749e7f5232ae1ea3efd7"
    );
    // RFC 2069 form (no qop) with SHA-256.
    let no_qop = DigestInput {
        algorithm: DigestAlgorithm::Sha256,
        username: "bob",
        realm: "biloxi.com",
        password: "zanzibar",
        method: "REGISTER",
        uri: "sip:biloxi.com",
        nonce: "abc123",
        cnonce: None,
        nc: None,
    };
    assert_eq!(
        no_qop.response(),
        "5d669f461995f591a16ea762c90ccc783f2c0640a13e3923d85b86637dc7068c"
    );
}

#[test]
fn algorithm_tokens() {
    assert_eq!(
        DigestAlgorithm::from_token("sha-256"),
        Some(DigestAlgorithm::Sha256)
    );
    assert_eq!(
        DigestAlgorithm::from_token("MD5-SESS"),
        Some(DigestAlgorithm::Md5Sess)
    );
    assert_eq!(DigestAlgorithm::from_token("SHA-512-256"), None);
    assert_eq!(DigestAlgorithm::from_token("AKAv1-MD5"), None);
}

#[test]
fn challenges_parse_with_quotes_escapes_and_lists() {
    let v = r#"Digest realm="a, \"quoted\" realm", nonce="n,1", qop="auth-int, auth", algorithm=SHA-256, stale=TRUE, opaque="o""#;
    let c = parse_challenges(v);
    assert_eq!(c.len(), 1);
    let c = c[0].clone().unwrap();
    assert_eq!(c.realm, "a, \"quoted\" realm");
    assert_eq!(c.nonce, "n,1");
    assert_eq!(c.algorithm, DigestAlgorithm::Sha256);
    assert!(c.qop_auth && c.stale);
    assert_eq!(c.opaque.as_deref(), Some("o"));

    // Two challenges in one value; an unknown algorithm does not spoil the other one.
    let two = parse_challenges(
        "Digest realm=r, nonce=abc+/==, algorithm=SHA-512-256, qop=auth, \
         Digest realm=r,nonce=def,qop=\"auth\"",
    );
    assert_eq!(two.len(), 2);
    assert!(matches!(two[0], Err(AuthError::Unsupported(_))));
    let second = two[1].clone().unwrap();
    assert_eq!(second.nonce, "def");
    assert_eq!(second.algorithm, DigestAlgorithm::Md5);
    assert!(!second.stale);

    // RFC 2069 challenge: no qop.
    let old = parse_challenges("Digest realm=\"r\", nonce=\"x\"")[0]
        .clone()
        .unwrap();
    assert!(!old.qop_auth);
    // qop offered but without auth.
    assert!(matches!(
        parse_challenges("Digest realm=r, nonce=x, qop=\"auth-int\"")[0],
        Err(AuthError::Unsupported(_))
    ));
    assert_eq!(
        parse_challenges("Basic realm=\"r\"")[0],
        Err(AuthError::NotDigest)
    );
    for bad in [
        "",
        "Digest realm=\"unterminated",
        "Digest realm=",
        "realm=x",
        "Digest realm=\"r\" nonce=\"x\"",
        "Digest =x",
        "Digest nonce=x",
        "\u{e9}\u{e9}=\"",
    ] {
        assert!(
            parse_challenges(bad).iter().all(|c| c.is_err()),
            "{bad:?} must not give a usable challenge"
        );
    }
}

#[test]
fn parameter_count_is_bounded() {
    let many = format!(
        "Digest realm=r, nonce=n{}",
        ", x=1".repeat(MAX_AUTH_PARAMS + 1)
    );
    assert_eq!(
        parse_challenges(&many)[0],
        Err(AuthError::Malformed("too many parameters"))
    );
}

fn challenge_response(status: u16, headers: &[(&str, &str)]) -> SipMessage {
    let mut text = format!(
        "SIP/2.0 {status} Unauthorized\r\n\
Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKreg1\r\n\
From: <sip:alice@example.com>;tag=f1\r\n\
To: <sip:alice@example.com>;tag=t1\r\n\
Call-ID: reg-1\r\n\
CSeq: 1 REGISTER\r\n"
    );
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("Content-Length: 0\r\n\r\n");
    crate::sip::message::parse(text.as_bytes()).unwrap()
}

#[test]
fn the_strongest_challenge_per_realm_is_chosen() {
    let r = challenge_response(
        401,
        &[
            (
                "WWW-Authenticate",
                "Digest realm=\"a\", nonce=\"1\", qop=\"auth\"",
            ),
            (
                "WWW-Authenticate",
                "Digest realm=\"a\", nonce=\"1\", qop=\"auth\", algorithm=SHA-256",
            ),
            (
                "WWW-Authenticate",
                "Digest realm=\"a\", nonce=\"1\", qop=\"auth\", algorithm=SHA-512-256",
            ),
        ],
    );
    let chosen = select_challenges(&r);
    assert_eq!(chosen.len(), 1);
    assert_eq!(chosen[0].0, ChallengeKind::Www);
    assert_eq!(chosen[0].1.algorithm, DigestAlgorithm::Sha256);

    // A 407 from two proxies: one challenge per realm, both answered.
    let r = challenge_response(
        407,
        &[
            (
                "Proxy-Authenticate",
                "Digest realm=\"p1\", nonce=\"x\", qop=auth",
            ),
            ("Proxy-Authenticate", "Digest realm=\"p2\", nonce=\"y\""),
        ],
    );
    let mut client = DigestClient::new(Credentials::new("alice", "pw"));
    client.handle_challenge(&r).unwrap();
    let headers = client.authorize("INVITE", "sip:bob@example.com");
    assert_eq!(headers.len(), 2);
    assert!(headers.iter().all(|(n, _)| *n == "Proxy-Authorization"));
    let p1 = parse_authorization(&headers[0].1).unwrap();
    assert_eq!(p1.realm, "p1");
    assert_eq!(p1.qop.as_deref(), Some("auth"));
    let p2 = parse_authorization(&headers[1].1).unwrap();
    assert_eq!((p2.realm.as_str(), p2.qop, p2.nc), ("p2", None, None));
    assert_eq!(
        p2.response,
        digest_response(
            "alice",
            "p2",
            "pw",
            "INVITE",
            "sip:bob@example.com",
            "y",
            None
        )
    );

    assert_eq!(
        DigestClient::new(Credentials::new("a", "b"))
            .handle_challenge(&challenge_response(401, &[])),
        Err(ChallengeError::Unsupported)
    );
}

#[test]
fn client_and_server_round_trip_with_sha256_and_md5() {
    let t0 = Instant::now();
    let users = |name: &str| (name == "alice").then(|| "s3cr\"et".to_string());
    for offer_sha in [true, false] {
        let mut server = DigestAuthenticator::new("room \"kit\"", Duration::from_secs(30));
        let values = if offer_sha {
            server.challenges(t0, false)
        } else {
            vec![server.challenge(t0, false)]
        };
        let headers: Vec<(&str, &str)> = values
            .iter()
            .map(|v| ("WWW-Authenticate", v.as_str()))
            .collect();
        let mut client = DigestClient::new(Credentials::new("alice", "s3cr\"et"));
        client
            .handle_challenge(&challenge_response(401, &headers))
            .unwrap();
        let auth = client.authorize("REGISTER", "sip:example.com");
        assert_eq!(auth.len(), 1);
        assert_eq!(auth[0].0, "Authorization");
        let creds = parse_authorization(&auth[0].1).unwrap();
        let expected = if offer_sha { "SHA-256" } else { "MD5" };
        assert_eq!(creds.algorithm.as_deref(), Some(expected));
        assert_eq!(creds.realm, "room \"kit\"");
        assert_eq!(creds.nc.as_deref(), Some("00000001"));
        assert_eq!(
            server.verify(&auth[0].1, "REGISTER", t0, users),
            AuthOutcome::Authorized {
                username: "alice".into()
            }
        );
        // The next request counts up and picks a new cnonce.
        let again =
            parse_authorization(&client.authorize("REGISTER", "sip:example.com")[0].1).unwrap();
        assert_eq!(again.nc.as_deref(), Some("00000002"));
        assert_ne!(again.cnonce, creds.cnonce);
        // The server's nonce is single-use.
        assert!(matches!(
            server.verify(
                &client.authorize("REGISTER", "sip:example.com")[0].1,
                "REGISTER",
                t0,
                users
            ),
            AuthOutcome::Stale
        ));
    }
}

#[test]
fn wrong_password_is_refused_not_retried() {
    let t0 = Instant::now();
    let mut server = DigestAuthenticator::new("r", Duration::from_secs(30));
    let mut client = DigestClient::new(Credentials::new("alice", "guess"));
    let first = challenge_response(401, &[("WWW-Authenticate", &server.challenge(t0, false))]);
    client.handle_challenge(&first).unwrap();
    let auth = client.authorize("REGISTER", "sip:r");
    assert!(matches!(
        server.verify(&auth[0].1, "REGISTER", t0, users),
        AuthOutcome::Rejected(_)
    ));
    // The server challenges again with a fresh nonce and no stale flag.
    let second = challenge_response(401, &[("WWW-Authenticate", &server.challenge(t0, false))]);
    assert_eq!(
        client.handle_challenge(&second),
        Err(ChallengeError::Rejected { realm: "r".into() })
    );
}

#[test]
fn stale_nonces_are_answered_a_bounded_number_of_times() {
    let stale = challenge_response(
        401,
        &[(
            "WWW-Authenticate",
            "Digest realm=\"r\", nonce=\"n\", qop=auth, stale=true",
        )],
    );
    let fresh = challenge_response(
        401,
        &[(
            "WWW-Authenticate",
            "Digest realm=\"r\", nonce=\"m\", qop=auth",
        )],
    );
    let mut client = DigestClient::new(Credentials::new("alice", "pw"));
    client.handle_challenge(&fresh).unwrap();
    for _ in 0..MAX_STALE_RETRIES {
        client.authorize("REGISTER", "sip:r");
        client.handle_challenge(&stale).unwrap();
    }
    client.authorize("REGISTER", "sip:r");
    assert_eq!(
        client.handle_challenge(&stale),
        Err(ChallengeError::TooManyStale { realm: "r".into() })
    );
}

#[test]
fn a_challenge_after_reused_credentials_is_a_nonce_expiry() {
    // REGISTER answered once (accepted), refreshed with the same nonce, then challenged
    // with a new nonce and no stale flag: answer it, and only a second refusal is final.
    let challenge = |nonce: &str| {
        challenge_response(
            401,
            &[(
                "WWW-Authenticate",
                &format!("Digest realm=\"r\", nonce=\"{nonce}\", qop=auth"),
            )],
        )
    };
    let mut client = DigestClient::new(Credentials::new("alice", "pw"));
    client.handle_challenge(&challenge("1")).unwrap();
    client.authorize("REGISTER", "sip:r");
    client.authorize("REGISTER", "sip:r");
    client.handle_challenge(&challenge("2")).unwrap();
    let creds = parse_authorization(&client.authorize("REGISTER", "sip:r")[0].1).unwrap();
    assert_eq!(
        (creds.nonce.as_str(), creds.nc.as_deref()),
        ("2", Some("00000001"))
    );
    assert!(matches!(
        client.handle_challenge(&challenge("3")),
        Err(ChallengeError::Rejected { .. })
    ));
}

#[test]
fn server_verifies_sha256_and_refuses_unknown_algorithms() {
    let t0 = Instant::now();
    let mut auth = DigestAuthenticator::new("roomkit", Duration::from_secs(30));
    let nonce = nonce_of(&auth.challenges(t0, false)[0]);
    let input = DigestInput {
        algorithm: DigestAlgorithm::Sha256,
        username: "alice",
        realm: "roomkit",
        password: "s3cret",
        method: "INVITE",
        uri: "sip:svc@h",
        nonce: &nonce,
        cnonce: Some("c"),
        nc: Some("00000001"),
    };
    let value = credentials_value(&input, None);
    let md5_claim = value.replace("algorithm=SHA-256", "algorithm=MD5");
    assert!(matches!(
        auth.verify(&md5_claim, "INVITE", t0, users),
        AuthOutcome::Rejected(_)
    ));
    let unknown = value.replace("algorithm=SHA-256", "algorithm=SHA-512-256");
    assert_eq!(
        auth.verify(&unknown, "INVITE", t0, users),
        AuthOutcome::Rejected("unsupported algorithm".into())
    );
    assert_eq!(
        auth.verify(&value, "INVITE", t0, users),
        AuthOutcome::Authorized {
            username: "alice".into()
        }
    );
}

proptest::proptest! {
    #[test]
    fn auth_parsers_never_panic(s in "\\PC{0,200}") {
        let _ = parse_challenges(&s);
        let _ = parse_authorization(&s);
        let _ = parse_challenges(&format!("Digest {s}"));
        let _ = parse_authorization(&format!("Digest {s}"));
    }
}
