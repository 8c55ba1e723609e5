#!/usr/bin/python3
"""GStreamer's srtpdec (libsrtp, the reference implementation) receiving our H.264 over SRTP.

  gst_srtp.py --suite S --key HEX --port N --out F [--timeout S] [--idle S]

udpsrc on 127.0.0.1:N ! srtpdec ! rtpjitterbuffer ! rtph264depay ! h264parse, the pictures written
Annex-B to F. srtpdec needs each stream's SSRC in its caps, which a receiver only learns from the
first packet: the `request-key` signal asks for the caps then, and this script answers with the
key and suite. It stops --idle seconds after the last picture (or at --timeout) and prints
`keyed <ssrcs> pictures <n>`.

S is an SDES suite name: AES_CM_128_HMAC_SHA1_80, AES_CM_128_HMAC_SHA1_32 or AEAD_AES_128_GCM.
(The packet-by-packet comparison with libsrtp needs no Python: the interop test runs
gst-launch-1.0 with RFC 4571 framing, rtpstreamdepay ! srtpenc|srtpdec ! rtpstreampay.)
"""

import argparse
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstApp", "1.0")
from gi.repository import Gst, GstApp  # noqa: E402,F401  (GstApp: appsink.try_pull_sample)

# SDES suite -> (rtp-cipher, rtp-auth, rtcp-cipher, rtcp-auth), the names srtpenc's properties
# and srtpdec's caps use. AES_CM_128_HMAC_SHA1_32 keeps the 80-bit tag on SRTCP (RFC 4568
# 6.2.2); GCM authenticates by itself (auth "null").
SUITES = {
    "AES_CM_128_HMAC_SHA1_80": ("aes-128-icm", "hmac-sha1-80", "aes-128-icm", "hmac-sha1-80"),
    "AES_CM_128_HMAC_SHA1_32": ("aes-128-icm", "hmac-sha1-32", "aes-128-icm", "hmac-sha1-80"),
    "AEAD_AES_128_GCM": ("aes-128-gcm", "null", "aes-128-gcm", "null"),
}


def key_caps(suite, key, ssrc):
    """srtpdec's caps for one stream: its SSRC, the key (hex, as caps strings write buffers) and
    the suite."""
    rc, ra, cc, ca = SUITES[suite]
    return Gst.Caps.from_string(
        "application/x-srtp, ssrc=(uint)%d, srtp-key=(buffer)%s, srtp-cipher=(string)%s, "
        "srtp-auth=(string)%s, srtcp-cipher=(string)%s, srtcp-auth=(string)%s"
        % (ssrc, key.hex(), rc, ra, cc, ca)
    )


def recv(args):
    key = bytes.fromhex(args.key)
    keyed = []

    def request_key(_el, ssrc):
        keyed.append(ssrc)
        return key_caps(args.suite, key, ssrc)

    pipe = Gst.parse_launch(
        "udpsrc name=src address=127.0.0.1 port=%d buffer-size=8388608 "
        'caps="application/x-srtp, media=(string)video, clock-rate=(int)90000, '
        'encoding-name=(string)H264, payload=(int)96" ! srtpdec name=dec ! '
        "rtpjitterbuffer latency=200 ! rtph264depay ! h264parse ! "
        "video/x-h264,stream-format=byte-stream,alignment=au ! appsink name=sink sync=false"
        % args.port
    )
    pipe.get_by_name("dec").connect("request-key", request_key)
    sink = pipe.get_by_name("sink")
    pipe.set_state(Gst.State.PLAYING)
    pictures = []
    start = time.monotonic()
    last = None
    while time.monotonic() - start < args.timeout:
        sample = sink.try_pull_sample(Gst.SECOND // 10)
        now = time.monotonic()
        if sample is None:
            if last is not None and now - last > args.idle:
                break
            continue
        last = now
        buf = sample.get_buffer()
        pictures.append(buf.extract_dup(0, buf.get_size()))
    pipe.set_state(Gst.State.NULL)
    with open(args.out, "wb") as f:
        for p in pictures:
            f.write(p)
    print("keyed %s pictures %d" % (",".join(str(s) for s in keyed), len(pictures)))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--suite", required=True, choices=sorted(SUITES))
    p.add_argument("--key", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--idle", type=float, default=2.0)
    args = p.parse_args()
    Gst.init(None)
    recv(args)


if __name__ == "__main__":
    main()
