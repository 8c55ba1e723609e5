#!/usr/bin/env python3
"""Writes the binary seed inputs of the h264_rx, vp8_rx and rtcp fuzz targets.

Usage: generate.py CORPUS_ROOT   (writes CORPUS_ROOT/<target>/seed-*)

The RTP targets read one configuration byte, then records of
`ctl, seq_delta, ts_step, dt_ms, len, payload[len]` (tests/fuzz_support/video.rs): ctl bit 0 is
the marker, ts_step is in units of 1500 (2 = next picture at 30 fps). The seeds are well-formed
streams the fuzzer mutates from: SPS/PPS in a STAP-A, an IDR in FU-A fragments, P slices, some
reordering; VP8 key and delta frames over several packets; a compound RTCP report and each
feedback packet we understand.
"""
import os
import struct
import sys


def record(payload, marker=False, seq_delta=1, ts_step=0, dt_ms=1, ctl_extra=0):
    ctl = (1 if marker else 0) | ctl_extra
    assert len(payload) <= 255
    return bytes([ctl, seq_delta & 0xFF, ts_step, dt_ms, len(payload)]) + payload


def nal(kind, size, nri=3):
    body = bytes(((i * 37 + 11) % 253) + 1 for i in range(size - 1))  # no zero bytes
    return bytes([(nri << 5) | kind]) + body


def stap_a(units):
    out = bytes([0x78])  # NRI 3, type 24
    for u in units:
        out += struct.pack(">H", len(u)) + u
    return out


def fu_a(unit, piece):
    header, body = unit[0], unit[1:]
    chunks = [body[i:i + piece] for i in range(0, len(body), piece)]
    out = []
    for i, c in enumerate(chunks):
        fu = header & 0x1F
        if i == 0:
            fu |= 0x80
        if i == len(chunks) - 1:
            fu |= 0x40
        out.append(bytes([(header & 0xE0) | 28, fu]) + c)
    return out


def h264_stream(reorder=False):
    recs = []
    recs.append(record(stap_a([nal(7, 12), nal(8, 5)]), ts_step=0))
    frags = fu_a(nal(5, 400), 150)
    for i, f in enumerate(frags):
        recs.append(record(f, marker=i == len(frags) - 1))
    for _ in range(3):
        recs.append(record(nal(1, 60, nri=2), marker=True, ts_step=2))
    # A picture of two slices, the second in fragments.
    recs.append(record(nal(1, 40, nri=2), ts_step=2))
    frags = fu_a(nal(1, 200, nri=2), 90)
    for i, f in enumerate(frags):
        recs.append(record(f, marker=i == len(frags) - 1))
    if reorder:
        # Swap two packets: sequence deltas +2, -1, +2 instead of +1, +1, +1.
        def with_delta(rec, delta):
            return rec[:1] + bytes([delta & 0xFF]) + rec[2:]

        a, b = recs[2], recs[3]
        recs[2], recs[3] = with_delta(b, 2), with_delta(a, -1)
        recs[4] = with_delta(recs[4], 2)
    return recs


def vp8_payload(start, keyframe, body_len, pid):
    desc = bytes([0x90 if start else 0x80, 0x80, 0x80 | (pid >> 8), pid & 0xFF])
    if not start:
        return desc + bytes((i % 250) + 1 for i in range(body_len))
    size0 = 100
    tag = (size0 << 5) | (0 if keyframe else 1) | (0 << 1) | (1 << 4)
    frame = struct.pack("<I", tag)[:3]
    if keyframe:
        frame += bytes([0x9D, 0x01, 0x2A]) + struct.pack("<HH", 320, 240)
    frame += bytes((i % 250) + 1 for i in range(body_len))
    return desc + frame


def vp8_stream():
    recs = []
    for pic in range(4):
        key = pic == 0
        parts = 3 if key else 2
        for p in range(parts):
            recs.append(record(
                vp8_payload(p == 0, key, 80, pic),
                marker=p == parts - 1,
                ts_step=2 if (p == 0 and pic > 0) else 0,
            ))
    return recs


def rtcp(pt, count, body):
    assert len(body) % 4 == 0
    return bytes([0x80 | count, pt]) + struct.pack(">H", len(body) // 4) + body


def block(ssrc):
    return struct.pack(">IB3sIIII", ssrc, 12, (5).to_bytes(3, "big"), 70000, 30, 0x12345678, 0x10000)


def sdes(ssrc, cname):
    chunk = struct.pack(">IBB", ssrc, 1, len(cname)) + cname
    chunk += b"\0" * (4 - len(chunk) % 4)
    return rtcp(202, 1, chunk)


def rtcp_seeds():
    sr = rtcp(200, 1, struct.pack(">IQIII", 0xABCD, 0xE000000012345678, 1, 2, 3) + block(0x1111))
    rr = rtcp(201, 1, struct.pack(">I", 0xABCD) + block(0x1111))
    pli = rtcp(206, 1, struct.pack(">II", 0xABCD, 0x1111))
    fir = rtcp(206, 4, struct.pack(">IIIB3x", 0xABCD, 0, 0x1111, 9))
    nack = rtcp(205, 1, struct.pack(">IIHH", 0xABCD, 0x1111, 40, 0b101))
    reason = b"bye now"
    bye_body = struct.pack(">IB", 0xABCD, len(reason)) + reason
    bye_body += b"\0" * (-len(bye_body) % 4)
    bye = rtcp(203, 1, bye_body)
    cname = sdes(0xABCD, b"user@host.example")
    return {
        "sr": sr + cname,
        "rr": rr + cname,
        "feedback": rr + cname + pli + fir + nack,
        "bye": rr + cname + bye,
    }


def main():
    root = sys.argv[1]
    seeds = {
        "h264_rx": {
            "au": bytes([0b0000]) + b"".join(h264_stream()),
            "au-gated-reordered": bytes([0b0010]) + b"".join(h264_stream(reorder=True)),
            "nal-incomplete-tight": bytes([0b1101]) + b"".join(h264_stream()),
        },
        "vp8_rx": {
            "frames": bytes([0b0000]) + b"".join(vp8_stream()),
            "frames-gated-tight": bytes([0b1010]) + b"".join(vp8_stream()),
        },
        "rtcp": rtcp_seeds(),
    }
    for target, files in seeds.items():
        d = os.path.join(root, target)
        os.makedirs(d, exist_ok=True)
        for name, data in files.items():
            with open(os.path.join(d, "seed-" + name), "wb") as f:
                f.write(data)


if __name__ == "__main__":
    main()
