#!/usr/bin/env python3
"""Send one RateLimiter.Check to a running cpstored and hex-dump both frames.

Written with the standard library only, to show that the protocol needs
nothing cpstore-specific: docs/protocol.md quotes its output.

usage: scripts/wire-dump.py [HOST:PORT] [KEY]
"""
import socket
import struct
import sys

MAGIC = b"\xc5\x70"
VERSION = 1
REQUEST = 1
RATE_LIMITER_CHECK = 0x0201
HEADER = struct.Struct(">2sBBHHIIIB3s")


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field_bytes(num, data):
    return varint(num << 3 | 2) + varint(len(data)) + data


def field_varint(num, value):
    return varint(num << 3) + varint(value)


def hexdump(data):
    lines = []
    for off in range(0, len(data), 16):
        chunk = data[off:off + 16]
        hexes = " ".join(f"{b:02x}" for b in chunk)
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{off:08x}  {hexes:<47}  |{text}|")
    return "\n".join(lines)


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise SystemExit("connection closed by the server")
        buf += chunk
    return buf


def main():
    addr = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:7300"
    key = sys.argv[2] if len(sys.argv) > 2 else "demo:user:42"
    host, port = addr.rsplit(":", 1)

    # RateLimitCheckRequest{key, limit: 10, window_ms: 60000, cost: 1}
    payload = (field_bytes(1, key.encode()) + field_varint(2, 10) +
               field_varint(3, 60000) + field_varint(4, 1))
    header = HEADER.pack(MAGIC, VERSION, REQUEST, 0, RATE_LIMITER_CHECK,
                         1, 1000, len(payload), 0, b"\0\0\0")
    request = header + payload

    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(request)
        head = recv_exact(sock, HEADER.size)
        fields = HEADER.unpack(head)
        body = recv_exact(sock, fields[7])

    print("request:")
    print(hexdump(request))
    print("response:")
    print(hexdump(head + body))
    print(f"response type={fields[2]} method=0x{fields[4]:04x} "
          f"request_id={fields[5]} status={fields[8]} length={fields[7]}")


if __name__ == "__main__":
    main()
