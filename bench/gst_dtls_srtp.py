#!/usr/bin/python3
"""A DTLS-SRTP peer made of GStreamer's dtlssrtpenc/dtlssrtpdec (OpenSSL DTLS, libsrtp), for
the interop test of our DTLS-SRTP streams without ICE (tests/interop/dtls_srtp_gstreamer.rs).

One UDP socket carries everything (DTLS, SRTP and SRTCP both ways, rtcp-mux): udpsink sends
from the socket udpsrc reads. PCMU at 8 kHz is sent to --to; what arrives is decrypted and
counted. Prints `port N` once bound, then at the end `received N errors N peer-cert 0|1 ...`
(one line). Exits after --seconds, or at once on a DTLS error.
"""

import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
from gi.repository import Gio, GLib, Gst  # noqa: E402,F401  (Gio: GSocket methods)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--to", required=True, help="ip:port to send to")
    ap.add_argument("--pem", required=True, help="certificate and key, PEM")
    ap.add_argument("--client", action="store_true", help="be the DTLS client")
    ap.add_argument("--port", type=int, default=0, help="our port (0: any)")
    ap.add_argument("--seconds", type=float, default=10.0)
    a = ap.parse_args()
    host, port = a.to.rsplit(":", 1)
    Gst.init(None)
    role = "true" if a.client else "false"
    p = Gst.parse_launch(
        f"udpsrc name=src address=127.0.0.1 port={a.port} ! dtlssrtpdec name=dec connection-id=rkm "
        "dec.rtp_src ! application/x-rtp,media=audio,clock-rate=8000,encoding-name=PCMU,payload=0 "
        "! rtppcmudepay ! fakesink name=sink signal-handoffs=true sync=false "
        "dec.rtcp_src ! fakesink sync=false async=false "
        "audiotestsrc is-live=true samplesperbuffer=160 ! audio/x-raw,rate=8000,channels=1 "
        "! mulawenc ! rtppcmupay pt=0 ! enc.rtp_sink_0 "
        f"dtlssrtpenc name=enc connection-id=rkm is-client={role} "
        f"! udpsink name=out host={host} port={port} sync=false async=false close-socket=false"
    )
    dec = p.get_by_name("dec")
    dec.set_property("pem", open(a.pem).read())
    # udpsrc opens its socket on the way to READY; udpsink must be given it before it opens
    # one of its own.
    src = p.get_by_name("src")
    src.set_state(Gst.State.READY)
    sock = src.get_property("used-socket")
    p.get_by_name("out").set_property("socket", sock)
    print("port", sock.get_local_address().get_port(), flush=True)
    received = [0]
    p.get_by_name("sink").connect("handoff", lambda *_: received.__setitem__(0, received[0] + 1))
    loop = GLib.MainLoop()
    errors = []

    def on_message(_bus, msg):
        if msg.type == Gst.MessageType.ERROR:
            err, dbg = msg.parse_error()
            errors.append(f"{err.message} ({dbg})")
            loop.quit()

    bus = p.get_bus()
    bus.add_signal_watch()
    bus.connect("message", on_message)
    GLib.timeout_add(int(a.seconds * 1000), loop.quit)
    p.set_state(Gst.State.PLAYING)
    loop.run()
    peer = dec.get_property("peer-pem") or ""
    p.set_state(Gst.State.NULL)
    # One line: packets decrypted, errors, whether the peer's certificate came.
    print(
        "received", received[0],
        "errors", len(errors),
        "peer-cert", 1 if peer else 0,
        " | ".join(errors).replace("\n", " "),
        flush=True,
    )
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
