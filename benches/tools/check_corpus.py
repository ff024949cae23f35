#!/usr/bin/env python3
"""Independent check of a gen_corpus capture (small ones: it is pure Python), sharing no code
with wsnoop or flate2: TCP sequence numbers exact and in order, the handshake's accept value,
every frame parsed, client frames masked and server frames not, permessage-deflate messages
inflated with Python's zlib (context takeover), every text message valid UTF-8 JSON, nothing
left over. Prints what it counted.

    benches/tools/check_corpus.py FILE.pcap
"""
import base64, collections, hashlib, json, struct, sys, zlib

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def streams(path):
    with open(path, "rb") as f:
        magic = struct.unpack("<I", f.read(24)[:4])[0]
        assert magic in (0xA1B2C3D4, 0xA1B23C4D), "little-endian classic pcap expected"
        data, nxt = collections.defaultdict(bytearray), {}
        while h := f.read(16):
            incl = struct.unpack("<IIII", h)[2]
            p = f.read(incl)
            assert p[12:14] == b"\x08\x00", "IPv4 over Ethernet expected"
            ip = p[14:]
            ihl = (ip[0] & 15) * 4
            tcp = ip[ihl : struct.unpack(">H", ip[2:4])[0]]
            key = (ip[12:16], tcp[0:2], ip[16:20], tcp[2:4])
            seq = struct.unpack(">I", tcp[4:8])[0]
            flags, payload = tcp[13], tcp[(tcp[12] >> 4) * 4 :]
            if flags & 2:  # SYN
                nxt[key] = (seq + 1) & 0xFFFFFFFF
                continue
            if payload:
                assert nxt[key] == seq, f"sequence {seq} where {nxt[key]} was next"
                data[key] += payload
                nxt[key] = (seq + len(payload)) & 0xFFFFFFFF
            if flags & 1:  # FIN
                nxt[key] = (nxt[key] + 1) & 0xFFFFFFFF
    return data


def main(path):
    data = streams(path)
    stats = collections.Counter()
    keys = {}
    # Client streams (to port 8080) first, so their keys are known when the 101s are checked.
    for key, b in sorted(data.items(), key=lambda kv: kv[0][3] != struct.pack(">H", 8080)):
        client = key[3] == struct.pack(">H", 8080)
        end = b.index(b"\r\n\r\n") + 4
        head, b = bytes(b[:end]), b[end:]
        fields = dict(l.split(b": ", 1) for l in head.split(b"\r\n")[1:] if b": " in l)
        conn = (key[0], key[1], key[2], key[3]) if client else (key[2], key[3], key[0], key[1])
        if client:
            keys[conn] = fields[b"Sec-WebSocket-Key"]
        else:
            want = base64.b64encode(hashlib.sha1(keys[conn] + GUID).digest())
            assert fields[b"Sec-WebSocket-Accept"] == want, "accept mismatch"
            stats["handshakes"] += 1
        z, msg, i = zlib.decompressobj(-15), None, 0
        while i < len(b):
            b0, b1 = b[i], b[i + 1]
            i += 2
            fin, rsv1, op, masked, n = b0 >> 7, (b0 >> 6) & 1, b0 & 15, b1 >> 7, b1 & 127
            assert masked == client, "client frames masked, server frames not"
            if n == 126:
                n = struct.unpack(">H", b[i : i + 2])[0]
                i += 2
            elif n == 127:
                n = struct.unpack(">Q", b[i : i + 8])[0]
                i += 8
            mask = b[i : i + 4] if masked else None
            i += 4 if masked else 0
            payload = bytes(b[i : i + n])
            i += n
            assert len(payload) == n, "truncated frame"
            if mask and n:
                m = (mask * (n // 4 + 1))[:n]
                payload = (int.from_bytes(payload, "big") ^ int.from_bytes(m, "big")).to_bytes(n, "big")
            stats["frames"] += 1
            if op >= 8:
                stats[{8: "close", 9: "ping", 10: "pong"}[op]] += 1
                continue
            if op != 0:
                assert msg is None, "new message inside a fragmented one"
                msg, compressed, text = bytearray(), bool(rsv1), op == 1
            msg += payload
            if fin:
                out = z.decompress(bytes(msg) + b"\x00\x00\xff\xff") if compressed else bytes(msg)
                if text:
                    json.loads(out.decode("utf-8"))
                stats["text" if text else "binary"] += 1
                stats["compressed"] += compressed
                stats["messages"] += 1
                msg = None
            else:
                stats["fragments"] += 1
        assert i == len(b) and msg is None, "bytes left over"
    print(f"{path}: OK: {len(data) // 2} connections,", ", ".join(f"{v} {k}" for k, v in sorted(stats.items())))


if __name__ == "__main__":
    main(sys.argv[1])
