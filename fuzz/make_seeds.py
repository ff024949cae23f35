#!/usr/bin/env python3
"""Seeds the fuzz corpora (fuzz/corpus/TARGET/, git-ignored) from the repository's captures.

- frame_decoder: the WebSocket byte stream of each direction of each fixture connection
  (after its HTTP head), in pieces of at most 4 KiB, behind a control byte.
- handshake: each fixture connection's request and response heads, in the target's format.
- pipeline: the packets of each capture (first 80), in the target's format (see harness.rs),
  with a few option bytes.
- pcap_file: the capture files themselves (those under 64 KiB) and truncated copies.

Standard library only; reads captures with fixtures/mangle/mangle.py's pcap reader.
Usage: python3 fuzz/make_seeds.py [CORPUS_DIR]
"""

import glob
import hashlib
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "fixtures", "mangle"))
import mangle  # noqa: E402

LINK_BITS = {1: 0, 101: 4, 0: 5, 113: 6, 276: 7}


def put(corpus, target, data):
    d = os.path.join(corpus, target)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def pipeline_input(pcap, config, port, limit=80):
    out = bytearray([config]) + struct.pack("!H", port)
    prev = None
    for r in pcap.records[:limit]:
        t = r.sec + r.frac / (1e9 if pcap.nano else 1e6)
        step = 0 if prev is None else min(199, max(0, int((t - prev) * 100)))
        prev = t
        data = r.data[:65535]
        out += bytes([step]) + struct.pack("!H", len(data)) + data
    return bytes(out)


def main(argv):
    corpus = argv[0] if argv else os.path.join(HERE, "corpus")
    captures = sorted(
        glob.glob(os.path.join(ROOT, "fixtures", "*.pcap"))
        + glob.glob(os.path.join(ROOT, "fixtures", "*.pcapng"))
        + glob.glob(os.path.join(ROOT, "fixtures", "pcapng", "*.pcapng"))
        + glob.glob(os.path.join(ROOT, "fixtures", "crafted", "*.pcap"))
        + glob.glob(os.path.join(ROOT, "fixtures", "mangle", "*.pcap"))
    )
    for path in captures:
        raw = open(path, "rb").read()
        if len(raw) <= 65536:
            put(corpus, "pcap_file", raw)
            put(corpus, "pcap_file", raw[: len(raw) // 2])
        if path.endswith(".pcapng"):
            continue
        try:
            pcap = mangle.Pcap.read(path)
        except SystemExit:
            continue  # a deliberately truncated variant
        bits = LINK_BITS.get(pcap.linktype)
        if bits is None:
            continue
        for config, port in [(bits | 0x08, 0), (bits | 0x40 | 0x08, 8080), (bits | 0x10 | 0x80, 0),
                             (bits | 0x20 | 0xC0 | 0x08, 0)]:
            put(corpus, "pipeline", pipeline_input(pcap, config, port))
    fixtures = [n for n in os.listdir(os.path.join(ROOT, "fixtures"))
                if n.endswith(".pcap") and os.path.exists(
                    os.path.join(ROOT, "fixtures", n[:-5] + ".expected.json"))]
    for name in sorted(fixtures):
        try:
            cap = mangle.Capture(name)
        except (AssertionError, SystemExit):
            continue
        for conn in cap.conns:
            c2s, s2c = conn.dirs["c2s"], conn.dirs["s2c"]
            req_end = c2s.stream.find(b"\r\n\r\n")
            resp_end = s2c.stream.find(b"\r\n\r\n")
            if req_end >= 0 and resp_end >= 0:
                req, resp = bytes(c2s.stream[: req_end + 4]), bytes(s2c.stream[: resp_end + 4])
                for method in range(5):
                    # control byte: method = control % 5, split = len * control / 256
                    total = len(req) + len(resp)
                    for control in range(method, 256, 5):
                        if total * control // 256 == len(req):
                            put(corpus, "handshake", bytes([control]) + req + resp)
                            break
            for half in (c2s, s2c):
                if not half.head_len:
                    continue
                stream = bytes(half.stream[half.head_len :])
                for i, off in enumerate(range(0, min(len(stream), 16384), 4096)):
                    put(corpus, "frame_decoder", bytes([(i * 37 + 5) & 0xFF]) + stream[off : off + 4096])
    for target in ("frame_decoder", "handshake", "pipeline", "pcap_file"):
        d = os.path.join(corpus, target)
        print(f"{target}: {len(os.listdir(d)) if os.path.isdir(d) else 0} seeds in {d}")


if __name__ == "__main__":
    main(sys.argv[1:])
