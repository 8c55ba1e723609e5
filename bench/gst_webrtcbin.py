#!/usr/bin/python3
"""A browser-like WebRTC peer made of GStreamer's webrtcbin (libnice full ICE agent, OpenSSL
DTLS, libsrtp), for the interop test of our ICE + DTLS-SRTP streams
(tests/interop/webrtcbin.rs).

It offers one sendrecv PCMU audio m-line (BUNDLE, rtcp-mux), gathering on 127.0.0.1 only, prints
the offer once ICE gathering is complete as `offer <SDP in hex>`, reads `answer <SDP in hex>` from stdin, and then
sends PCMU while counting the RTP packets it decrypts. With --answer it is the other way: it reads
`offer <SDP in hex>` from stdin, answers it (webrtcbin is then the controlled ICE agent) and
prints `answer <SDP in hex>` once gathering is complete. After --seconds it prints one line:
`received N ice <state> errors N ...`.

DTLS uses webrtcbin's own certificate (RSA 2048); the offer names its fingerprint.
"""

import argparse
import os
import sys
import threading

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("Nice", "0.1")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC, Nice  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument(
        "--answer",
        action="store_true",
        help="read an offer from stdin and answer it instead of offering",
    )
    a = ap.parse_args()
    ours, theirs = ("answer", "offer") if a.answer else ("offer", "answer")
    Gst.init(None)
    p = Gst.parse_launch(
        "webrtcbin name=w bundle-policy=max-bundle "
        "audiotestsrc is-live=true samplesperbuffer=160 ! audio/x-raw,rate=8000,channels=1 "
        "! mulawenc ! rtppcmupay pt=0 "
        "! capsfilter name=caps caps=application/x-rtp,media=audio,encoding-name=PCMU,"
        "payload=0,clock-rate=8000"
    )
    w = p.get_by_name("w")
    # Loopback only: libnice gathers on the addresses it is given, none else.
    addr = Nice.Address.new()
    addr.set_from_string("127.0.0.1")
    # (Both objects are held to the end: the bindings drop a reference too many otherwise.)
    ice = w.get_property("ice-agent")
    agent = ice.get_property("agent")
    agent.add_local_address(addr)
    sink = w.request_pad_simple("sink_%u")
    p.get_by_name("caps").get_static_pad("src").link(sink)
    loop = GLib.MainLoop()
    received = [0]
    errors = []
    offered = [False]

    def on_pad(_w, pad):
        if pad.direction != Gst.PadDirection.SRC:
            return
        bin_ = Gst.parse_bin_from_description(
            "rtppcmudepay ! fakesink name=sink signal-handoffs=true sync=false", True
        )
        p.add(bin_)
        bin_.get_by_name("sink").connect(
            "handoff", lambda *_: received.__setitem__(0, received[0] + 1)
        )
        bin_.sync_state_with_parent()
        pad.link(bin_.get_static_pad("sink"))

    def on_local(promise, _data):
        reply = promise.get_reply()
        desc = reply.get_value(ours) if reply is not None else None
        if desc is None:
            errors.append(f"no {ours}: {reply}")
            GLib.idle_add(loop.quit)
            return
        w.emit("set-local-description", desc, None)

    def on_negotiation_needed(_w):
        if not a.answer:
            w.emit("create-offer", None, Gst.Promise.new_with_change_func(on_local, None))

    def on_remote_set(_promise, _data):
        w.emit("create-answer", None, Gst.Promise.new_with_change_func(on_local, None))

    def on_gathering(_w, _pspec):
        if w.get_property("ice-gathering-state") != GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            return
        if offered[0]:
            return
        offered[0] = True
        sdp = w.get_property("local-description").sdp.as_text()
        print(ours, sdp.encode().hex(), flush=True)
        if not a.answer:
            threading.Thread(target=read_remote, daemon=True).start()

    def read_remote():
        line = sys.stdin.readline().split()
        if len(line) != 2 or line[0] != theirs:
            errors.append(f"no {theirs}")
            GLib.idle_add(loop.quit)
            return
        text = bytes.fromhex(line[1]).decode()

        def apply():
            _res, msg = GstSdp.SDPMessage.new_from_text(text)
            kind = GstWebRTC.WebRTCSDPType.OFFER if a.answer else GstWebRTC.WebRTCSDPType.ANSWER
            desc = GstWebRTC.WebRTCSessionDescription.new(kind, msg)
            then = Gst.Promise.new_with_change_func(on_remote_set, None) if a.answer else None
            w.emit("set-remote-description", desc, then)
            return False

        GLib.idle_add(apply)

    def on_message(_bus, msg):
        if msg.type == Gst.MessageType.ERROR:
            err, dbg = msg.parse_error()
            errors.append(f"{err.message} ({dbg})".replace("\n", " "))
            loop.quit()

    w.connect("pad-added", on_pad)
    w.connect("on-negotiation-needed", on_negotiation_needed)
    w.connect("notify::ice-gathering-state", on_gathering)
    bus = p.get_bus()
    bus.add_signal_watch()
    bus.connect("message", on_message)
    GLib.timeout_add(int(a.seconds * 1000), loop.quit)
    p.set_state(Gst.State.PLAYING)
    if a.answer:
        threading.Thread(target=read_remote, daemon=True).start()
    loop.run()
    state = w.get_property("ice-connection-state").value_nick
    p.set_state(Gst.State.NULL)
    print("received", received[0], "ice", state, "errors", len(errors), " | ".join(errors), flush=True)
    sys.stdout.flush()
    # Leave without tearing down the bindings' view of webrtcbin's ICE objects.
    os._exit(1 if errors else 0)


if __name__ == "__main__":
    main()
