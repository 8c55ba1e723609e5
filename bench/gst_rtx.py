#!/usr/bin/python3
"""GStreamer as a retransmission-capable H.264 peer: the independent implementation our engine is
measured and tested against on a lossy path. Also its forward error correction and
transport-wide congestion control, as a receiver.

  gst_rtx.py send --clip F --to HOST:PORT --rtcp-to HOST:PORT --rtcp-port N [--rtx-pt 97] [--log F]
                  [--twcc-id N]
  gst_rtx.py recv --port N --rtcp-port N --rtcp-to HOST:PORT --out F [--latency MS] [--rtx-pt 97]
                  [--log F] [--frames N] [--timeout S] [--no-retransmission]
                  [--fec-red-pt 123 --fec-ulpfec-pt 122] [--twcc-id N]

`send`: rtpbin with rtprtxsend as its auxiliary sender (RFC 4588, SSRC-multiplexed), the clip
paced in real time at 30 fps; NACKs arrive on --rtcp-port. `recv`: rtpbin with
do-retransmission (its jitterbuffer sends NACKs) and rtprtxreceive, RTCP sent to --rtcp-to; the
pictures are written Annex-B to --out. With --rtx-pt 0 neither side uses RTX (plain
retransmissions are still accepted by the receiver); --no-retransmission sends no NACK at all.
`recv --fec-red-pt R --fec-ulpfec-pt U`: ULPFEC in RED as webrtcbin sets it up, `rtpreddec` as
rtpbin's auxiliary receiver and `rtpulpfecdec` (on rtpbin's packet storage) as its FEC decoder,
with lost-packet events from the jitterbuffer; its JSON line then counts what it rebuilt.
`recv --twcc-id N`: the stream's caps carry `extmap-N` = the transport-wide sequence number, so
rtpbin's session answers packets stamped with it with transport-cc feedback (RTPFB 15).
`send --twcc-id N`: the payloader stamps that extension (rtphdrexttwcc) on every packet, and the
JSON line counts the samples of rtpbin's `twcc-stats` that the peer's feedback had filled.

Both write, with --log, one line per picture: `<monotonic seconds> <sha1 of its slice NAL units>`
(SPS/PPS excluded, since payloaders and parsers add or repeat them), which lets a harness match
pictures between processes on one machine (CLOCK_MONOTONIC is system-wide) for latency and
integrity.
"""

import argparse
import hashlib
import sys
import time

import gi

gi.require_version("Gst", "1.0")
from gi.repository import GLib, Gst  # noqa: E402

AVPF = 3  # GstRTPProfile: immediate feedback (NACK) allowed
TWCC_URI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"


def slice_hash(au: bytes) -> str:
    """sha1 over the VCL NAL units (types 1-5) of an Annex-B access unit, in order."""
    h = hashlib.sha1()
    i, n = 0, len(au)
    starts = []
    while i + 3 <= n:
        if au[i] == 0 and au[i + 1] == 0 and au[i + 2] == 1:
            starts.append(i + 3)
            i += 3
        else:
            i += 1
    for k, s in enumerate(starts):
        e = starts[k + 1] - 3 if k + 1 < len(starts) else n
        nal = au[s:e].rstrip(b"\x00") if k + 1 < len(starts) else au[s:e]
        if nal and 1 <= (nal[0] & 0x1F) <= 5:
            h.update(nal)
    return h.hexdigest()


def host_port(v):
    host, port = v.rsplit(":", 1)
    return host, int(port)


def pt_map(media_pt, rtx_pt):
    return Gst.Structure.new_from_string(
        "application/x-rtp-pt-map, %d=(uint)%d" % (media_pt, rtx_pt)
    )


def aux_bin(factory, media_pt, rtx_pt, session):
    """A bin around rtprtxsend/rtprtxreceive with the pads rtpbin expects for `session`."""
    b = Gst.Bin.new(None)
    e = Gst.ElementFactory.make(factory, None)
    e.set_property("payload-type-map", pt_map(media_pt, rtx_pt))
    if factory == "rtprtxsend":
        e.set_property("max-size-time", 1000)
    b.add(e)
    b.add_pad(Gst.GhostPad.new("sink_%d" % session, e.get_static_pad("sink")))
    b.add_pad(Gst.GhostPad.new("src_%d" % session, e.get_static_pad("src")))
    return b


class Log:
    def __init__(self, path):
        self.f = open(path, "w") if path else None
        self.count = 0

    def picture(self, au: bytes):
        self.count += 1
        if self.f:
            self.f.write("%.6f %s\n" % (time.monotonic(), slice_hash(au)))
            self.f.flush()


def run(pipeline, loop, timeout):
    bus = pipeline.get_bus()
    bus.add_signal_watch()

    def on_message(_, msg):
        if msg.type in (Gst.MessageType.EOS, Gst.MessageType.ERROR):
            if msg.type == Gst.MessageType.ERROR:
                err, dbg = msg.parse_error()
                print("gst error: %s (%s)" % (err, dbg), file=sys.stderr)
            loop.quit()

    bus.connect("message", on_message)
    GLib.timeout_add(int(timeout * 1000), loop.quit)
    pipeline.set_state(Gst.State.PLAYING)
    loop.run()
    pipeline.set_state(Gst.State.NULL)


def make_rtpbin(props):
    """rtpbin, created on its own so that its signals are connected before any session (and so
    any auxiliary element) exists: a session is made when its first pad is requested."""
    rtpbin = Gst.ElementFactory.make("rtpbin", "rtpbin")
    for k, v in props.items():
        rtpbin.set_property(k, v)
    return rtpbin


def send(a):
    host, port = host_port(a.to)
    rhost, rport = host_port(a.rtcp_to)
    rtpbin = make_rtpbin({"rtp-profile": AVPF})
    if a.rtx_pt:
        rtpbin.connect(
            "request-aux-sender", lambda _b, s: aux_bin("rtprtxsend", 96, a.rtx_pt, s)
        )
    p = Gst.parse_launch(
        "filesrc location=%s ! h264parse ! "
        "video/x-h264,stream-format=byte-stream,alignment=au,framerate=30/1 ! "
        "identity sync=true name=clock ! rtph264pay name=pay pt=96 mtu=1200 config-interval=-1 "
        "! capsfilter name=paycaps "
        "udpsink name=rtp_out host=%s port=%d sync=false async=false "
        "udpsink name=rtcp_out host=%s port=%d sync=false async=false "
        "udpsrc name=rtcp_in address=127.0.0.1 port=%d"
        % (a.clip, host, port, rhost, rport, a.rtcp_port)
    )
    if a.twcc_id:
        # The payloader stamps the extension the caps downstream name (rtphdrexttwcc).
        p.get_by_name("paycaps").set_property(
            "caps",
            Gst.Caps.from_string(
                "application/x-rtp,extmap-%d=(string)%s" % (a.twcc_id, TWCC_URI)
            ),
        )
    p.add(rtpbin)
    p.get_by_name("paycaps").link_pads("src", rtpbin, "send_rtp_sink_0")
    rtpbin.link_pads("send_rtp_src_0", p.get_by_name("rtp_out"), "sink")
    rtpbin.link_pads("send_rtcp_src_0", p.get_by_name("rtcp_out"), "sink")
    p.get_by_name("rtcp_in").link_pads("src", rtpbin, "recv_rtcp_sink_0")
    log = Log(a.log)

    def probe(_pad, info):
        buf = info.get_buffer()
        ok, m = buf.map(Gst.MapFlags.READ)
        if ok:
            log.picture(bytes(m.data))
            buf.unmap(m)
        return Gst.PadProbeReturn.OK

    p.get_by_name("clock").get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, probe)
    loop = GLib.MainLoop()

    # After the last picture, keep answering NACKs for a while before leaving.
    def on_eos(_, msg):
        if msg.type == Gst.MessageType.EOS:
            GLib.timeout_add(int(a.linger * 1000), loop.quit)
            return True
        return False

    p.get_bus().add_signal_watch()
    p.get_bus().connect("message", on_eos)
    # With --twcc-id: how often the session's transport-cc statistics, which only the peer's
    # feedback updates, showed packets it acknowledged (sampled every 100 ms).
    twcc = {"seen": 0, "last": None}

    def sample_twcc():
        st = rtpbin.emit("get-session", 0).get_property("twcc-stats")
        if st is not None:
            ok, n = st.get_uint("packets-recv")
            if ok and n > 0:
                twcc["seen"] += 1
                twcc["last"] = st.to_string()
        return True

    if a.twcc_id:
        GLib.timeout_add(100, sample_twcc)
    p.set_state(Gst.State.PLAYING)
    GLib.timeout_add(int(a.timeout * 1000), loop.quit)
    loop.run()
    p.set_state(Gst.State.NULL)
    if twcc["last"]:
        print("last twcc-stats: %s" % twcc["last"], file=sys.stderr)
    print('{"pictures":%d,"twcc_feedback_seen":%d}' % (log.count, twcc["seen"]))


def recv_aux_bin(a, session):
    """rtpbin's auxiliary receiver: rtprtxreceive and/or rtpreddec, chained, or None."""
    elements = []
    if a.rtx_pt:
        e = Gst.ElementFactory.make("rtprtxreceive", None)
        e.set_property("payload-type-map", pt_map(96, a.rtx_pt))
        elements.append(e)
    if a.fec_red_pt:
        e = Gst.ElementFactory.make("rtpreddec", "reddec")
        e.set_property("pt", a.fec_red_pt)
        elements.append(e)
    if not elements:
        return None
    b = Gst.Bin.new(None)
    for e in elements:
        b.add(e)
    for x, y in zip(elements, elements[1:]):
        x.link(y)
    b.add_pad(Gst.GhostPad.new("sink_%d" % session, elements[0].get_static_pad("sink")))
    b.add_pad(Gst.GhostPad.new("src_%d" % session, elements[-1].get_static_pad("src")))
    return b


def recv(a):
    rhost, rport = host_port(a.rtcp_to)
    rtpbin = make_rtpbin(
        {
            "latency": a.latency,
            "do-retransmission": not a.no_retransmission,
            "do-lost": bool(a.fec_red_pt),
            "rtp-profile": AVPF,
        }
    )
    h264_caps = (
        "application/x-rtp,media=video,clock-rate=90000,encoding-name=H264,payload=96"
        + (",extmap-%d=(string)%s" % (a.twcc_id, TWCC_URI) if a.twcc_id else "")
    )
    p = Gst.parse_launch(
        "udpsrc name=rtp_in address=127.0.0.1 port=%d buffer-size=8388608 "
        "caps=\"%s\" "
        "udpsrc name=rtcp_in address=127.0.0.1 port=%d "
        "udpsink name=rtcp_out host=%s port=%d sync=false async=false "
        "rtph264depay name=depay ! video/x-h264,stream-format=byte-stream,alignment=au ! "
        "appsink name=sink emit-signals=true sync=false"
        % (a.port, h264_caps, a.rtcp_port, rhost, rport)
    )
    depay = p.get_by_name("depay")

    def pt_caps(_b, _session, pt):
        if pt == 96:
            return Gst.Caps.from_string(h264_caps)
        if a.fec_red_pt and pt == a.fec_red_pt:
            return Gst.Caps.from_string(
                "application/x-rtp,media=video,clock-rate=90000,encoding-name=RED,payload=%d"
                % pt
            )
        if a.rtx_pt and pt == a.rtx_pt:
            return Gst.Caps.from_string(
                "application/x-rtp,media=video,clock-rate=90000,encoding-name=RTX,"
                "payload=%d,apt=96" % a.rtx_pt
            )
        return None

    rtpbin.connect("request-pt-map", pt_caps)
    rtpbin.connect("request-aux-receiver", lambda _b, s: recv_aux_bin(a, s))
    fecdec = []

    def fec_decoder(b, session):
        if not a.fec_red_pt:
            return None
        e = Gst.ElementFactory.make("rtpulpfecdec", None)
        e.set_property("storage", b.emit("get-internal-storage", session))
        e.set_property("pt", a.fec_ulpfec_pt)
        fecdec.append(e)
        return e

    rtpbin.connect("request-fec-decoder", fec_decoder)
    # The storage keeps nothing by default (size-time 0): the FEC decoder needs the packets
    # of the last second.
    rtpbin.connect(
        "new-storage", lambda _b, storage, _s: storage.set_property("size-time", Gst.SECOND)
    )

    def pad_added(_b, pad):
        if pad.get_name().startswith("recv_rtp_src_0_"):
            pad.link(depay.get_static_pad("sink"))

    rtpbin.connect("pad-added", pad_added)
    p.add(rtpbin)
    p.get_by_name("rtp_in").link_pads("src", rtpbin, "recv_rtp_sink_0")
    p.get_by_name("rtcp_in").link_pads("src", rtpbin, "recv_rtcp_sink_0")
    rtpbin.link_pads("send_rtcp_src_0", p.get_by_name("rtcp_out"), "sink")
    log = Log(a.log)
    out = open(a.out, "wb")
    loop = GLib.MainLoop()
    last = [time.monotonic()]

    def on_sample(sink):
        s = sink.emit("pull-sample")
        buf = s.get_buffer()
        ok, m = buf.map(Gst.MapFlags.READ)
        if ok:
            data = bytes(m.data)
            buf.unmap(m)
            out.write(data)
            log.picture(data)
        last[0] = time.monotonic()
        if a.frames and log.count >= a.frames:
            loop.quit()
        return Gst.FlowReturn.OK

    p.get_by_name("sink").connect("new-sample", on_sample)

    def idle():
        if log.count and time.monotonic() - last[0] > a.idle:
            loop.quit()
            return False
        return True

    GLib.timeout_add(100, idle)
    run(p, loop, a.timeout)
    out.close()
    reddec = p.get_by_name("reddec")
    print(
        '{"pictures":%d,"red_received":%d,"fec_recovered":%d,"fec_unrecovered":%d}'
        % (
            log.count,
            reddec.get_property("received") if reddec else 0,
            sum(e.get_property("recovered") for e in fecdec),
            sum(e.get_property("unrecovered") for e in fecdec),
        )
    )


def main():
    Gst.init(None)
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("send")
    s.add_argument("--clip", required=True)
    s.add_argument("--to", required=True)
    s.add_argument("--rtcp-to", required=True)
    s.add_argument("--rtcp-port", type=int, required=True)
    s.add_argument("--rtx-pt", type=int, default=97)
    s.add_argument("--log")
    s.add_argument("--linger", type=float, default=1.5)
    s.add_argument("--timeout", type=float, default=60)
    s.add_argument("--twcc-id", type=int, default=0)
    r = sub.add_parser("recv")
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--rtcp-port", type=int, required=True)
    r.add_argument("--rtcp-to", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--latency", type=int, default=200)
    r.add_argument("--rtx-pt", type=int, default=97)
    r.add_argument("--log")
    r.add_argument("--frames", type=int, default=0)
    r.add_argument("--idle", type=float, default=3)
    r.add_argument("--timeout", type=float, default=60)
    r.add_argument("--no-retransmission", action="store_true")
    r.add_argument("--fec-red-pt", type=int, default=0)
    r.add_argument("--fec-ulpfec-pt", type=int, default=122)
    r.add_argument("--twcc-id", type=int, default=0)
    a = ap.parse_args()
    send(a) if a.cmd == "send" else recv(a)


if __name__ == "__main__":
    main()
