//! SIP over TLS from an independent TLS stack: Kamailio 5.6 (its tls module, OpenSSL) as the
//! edge proxy in front of `serve --sip-tls` (`tests/kamailio/relay.cfg`). Debian's sipp 3.6.1 is
//! built without TLS (`-t l1` is refused), so sipp calls Kamailio over UDP and Kamailio relays
//! over TLS, verifying our certificate against the test CA, as a proxy in front of a media
//! server is deployed. A/V calls, an SRTP call whose ACK and BYE follow the recorded route to
//! our `;transport=tls` Contact, and a small load all complete; serve reports every call as TLS,
//! and Kamailio's own `tls.list` shows the established connection to our TLS port.

use crate::sip_tls::{count, finish, serve};
use crate::support;
use crate::support::peers::listening_port;

use support::kamailio::{Kamailio, RelayTls};
use support::sipp;
use support::tls::Pki;

#[test]
fn sipp_calls_serve_through_kamailio_over_tls() {
    if !support::peers::have_peers(&["sipp"]) {
        return;
    }
    let pki = Pki::new("kamailio-tls");
    let (cert, key) = (pki.path("cert.pem"), pki.path("key.pem"));
    let mut args = pki.serve_tls_args(Some("optional"));
    args.extend(["--max-calls".into(), "13".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (child, first, lines) = serve("38000-38599", &args);
    let tls = listening_port(&first, "sip_tls");
    let target = format!("sip:127.0.0.1:{tls};transport=tls");
    let relay_tls = RelayTls {
        cert: cert.clone(),
        key: key.clone(),
        ca: pki.path("ca.pem"),
    };
    let Some(k) = Kamailio::relay(&target, &relay_tls, 150) else {
        return;
    };

    sipp::run(&sipp::scenario("av_call.xml"), &k.addr(), &["-d", "500"]);
    // Kamailio's view of the hop: an established TLS connection with our TLS port at one end.
    let list = k.rpc("tls.list");
    assert!(
        list.contains(&format!("port: {tls}")) && list.contains("state: established"),
        "tls.list: {list}\n{}",
        k.log()
    );
    assert!(
        list.contains("TLSv1.3") || list.contains("TLSv1.2"),
        "{list}"
    );

    sipp::run(&sipp::scenario("audio_only.xml"), &k.addr(), &["-d", "200"]);
    // RTP/SAVP with SDES keys; ACK and BYE carry the route set Kamailio recorded (one entry for
    // its UDP side, one for its TLS side) and reach our Contact over TLS.
    sipp::run(
        &sipp::scenario("proxy/srtp_av_call_routed.xml"),
        &k.addr(),
        &["-d", "500"],
    );
    // Ten calls, five at a time, all over Kamailio's TLS connection(s) to us.
    sipp::run(
        &sipp::scenario("audio_only.xml"),
        &k.addr(),
        &["-d", "300", "-m", "10", "-r", "20", "-l", "5"],
    );

    let lines = finish(child, lines);
    let calls: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("\"event\":\"call\""))
        .collect();
    assert_eq!(calls.len(), 13, "{lines:?}");
    assert_eq!(count(&lines, "hangup"), 13, "{lines:?}");
    assert!(
        calls.iter().all(|l| l.contains("\"transport\":\"tls\"")),
        "{calls:?}"
    );
    // The SRTP call: both streams keyed, the others plain RTP.
    let secure: Vec<&&String> = calls
        .iter()
        .filter(|l| l.contains("\"room_id\":\"secure-room\""))
        .collect();
    assert_eq!(secure.len(), 1, "{calls:?}");
    assert!(
        secure[0].contains("\"audio_srtp\":\"AES_CM_128_HMAC_SHA1_80\""),
        "{}",
        secure[0]
    );
    let session = secure[0]
        .split("\"session\":\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap();
    assert!(
        lines.iter().any(|l| l.contains("\"event\":\"video_ready\"")
            && l.contains(session)
            && l.contains("\"srtp\":\"AES_CM_128_HMAC_SHA1_80\"")),
        "{lines:?}"
    );
    assert_eq!(
        calls
            .iter()
            .filter(|l| l.contains("\"audio_srtp\":null"))
            .count(),
        12,
        "{calls:?}"
    );

    // Kamailio relayed every INVITE over TLS, got the answers back over TLS, and
    // loose-routed the SRTP call's BYE to our `;transport=tls` Contact.
    let script = k.script_lines();
    let relayed = script
        .iter()
        .filter(|l| l.starts_with(&format!("relay INVITE to {target}")))
        .count();
    assert!(relayed >= 13, "{script:?}"); // retransmissions are logged again
    assert!(
        script
            .iter()
            .any(|l| l.starts_with("reply 200 INVITE from") && l.contains(" over tls ")),
        "{script:?}"
    );
    assert!(
        script.iter().any(|l| l.starts_with(&format!(
            "loose-routed BYE to sip:roomkit@127.0.0.1:{tls};transport=tls"
        ))),
        "{script:?}"
    );
}
