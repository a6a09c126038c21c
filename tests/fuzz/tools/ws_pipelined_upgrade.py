#!/usr/bin/python3
"""docs/FUZZING.md finding 6 against a running asrd over TCP:
    /usr/bin/python3 tests/fuzz/tools/ws_pipelined_upgrade.py PORT
sends an upgrade and 1 MB of keepalive frames then a stop, once after waiting
for the 101 ("apart": final and close expected) and once in one write
("together": with the bug, no final and no close until the idle timeout)."""
import socket, json, struct, sys, time
PORT = int(sys.argv[1])
def frame(op, payload):
    n = len(payload)
    h = bytes([0x80 | op]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n))
    return h + b"\0\0\0\0" + payload
HEAD = (b"GET /v1/transcribe/stream HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
ka = json.dumps({"type": "keepalive", "pad": "x" * 2970}).encode()
BODY = frame(1, ka) * (1000 * 1024 // len(ka)) + frame(1, b'{"type":"stop"}')
def run(together, wait):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    s.connect(("127.0.0.1", PORT))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
    if together:
        s.sendall(HEAD + BODY)
    else:
        s.sendall(HEAD); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
        s.recv(4096); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        s.sendall(BODY)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
    s.settimeout(wait)
    got, t0 = b"", time.time()
    try:
        while True:
            d = s.recv(65536)
            if not d: break
            got += d
    except socket.timeout:
        pass
    print("%s: final=%s, closed by the server after %.1f s%s" % ("together" if together else "apart   ",
          b'"final"' in got, time.time() - t0, "" if time.time() - t0 < wait else " (no: timed out)"))
    s.close()
run(False, 15)
run(True, 15)
