#!/usr/bin/python3
"""Memory a client controls, measured from outside: the worker's RSS
(/proc/<pid>/status VmRSS, sampled every 20 ms; the pid from GET
/v1/metrics) while

  uploads    N concurrent POST /v1/transcribe of an M MB 16 kHz mono WAV
             (looped speech), or of FILE sent as CONTENT_TYPE, each on its
             own connection; prints the statuses, the RSS before, at its
             peak, and 2 s after;
  fragments  N WebSocket connections that each send the first fragments of
             a text message (BYTES in all, default 87,000: just under the
             default message cap) and never finish it, pinging every 10 s;
             prints the RSS before and after, and the close codes received.

    /usr/bin/python3 tools/bench_inflight.py uploads   http://127.0.0.1:18300 10 24
    /usr/bin/python3 tools/bench_inflight.py uploads   http://127.0.0.1:18300 3 0 long.ogg audio/ogg
    /usr/bin/python3 tools/bench_inflight.py fragments http://127.0.0.1:18300 300 [BYTES] [HOLD_S]

The budget figures (GET /v1/metrics "memory") are printed when the server
has them. Run against one worker (ASR_WORKERS=1).
"""
import base64
import http.client
import json
import os
import select
import socket
import struct
import sys
import threading
import time
import urllib.parse
import urllib.request

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def metrics(base):
    return json.load(urllib.request.urlopen(base + "/v1/metrics", timeout=30))


def rss_of(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class Sampler(threading.Thread):
    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop_ = pid, 0, False

    def run(self):
        while not self.stop_:
            self.peak = max(self.peak, rss_of(self.pid))
            time.sleep(0.02)


def wav_of(mb):
    pcm = open(os.path.join(REPO, "tests/data/generated/speech16k.pcm"), "rb").read()
    n = mb * 1000 * 1000 - 44
    n -= n % 2
    data = (pcm * (n // len(pcm) + 1))[:n]
    return (b"RIFF" + struct.pack("<I", 36 + n) + b"WAVE" + b"fmt " +
            struct.pack("<IHHIIHH", 16, 1, 1, 16000, 32000, 2, 16) + b"data" + struct.pack("<I", n) + data)


def budget(m):
    b = m.get("memory")
    return json.dumps(b) if b else "(no memory figures)"


def uploads(base, n, mb, path=None, ctype="audio/wav"):
    u = urllib.parse.urlsplit(base)
    body = open(path, "rb").read() if path else wav_of(mb)
    pid = metrics(base)["workers"][0]["pid"]
    before = rss_of(pid)
    s = Sampler(pid)
    s.start()
    results = [None] * n

    def one(i):
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=300)
        t0 = time.monotonic()
        try:
            c.request("POST", "/v1/transcribe", body=body, headers={"Content-Type": ctype})
            r = c.getresponse()
            d = r.read()
            results[i] = (r.status, time.monotonic() - t0, d[:120])
        except OSError as e:
            results[i] = ("error", time.monotonic() - t0, repr(e))
        finally:
            c.close()
    ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.monotonic() - t0
    time.sleep(2)
    s.stop_ = True
    s.join()
    after = rss_of(pid)
    by = {}
    for st, _, _ in results:
        by[st] = by.get(st, 0) + 1
    print("%d uploads of %.1f MB in %.1f s: statuses %s" % (n, len(body) / 1e6, wall, by))
    for st, dt, d in results:
        if st != 200:
            print("  %s after %.2f s: %r" % (st, dt, d))
            break
    print("worker RSS: before %.1f MB, peak %.1f MB, 2 s after %.1f MB" % (before / 1e6, s.peak / 1e6, after / 1e6))
    print("memory figures: %s" % budget(metrics(base)))


def ws_connect(host, port):
    s = socket.create_connection((host, port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(("GET /v1/transcribe/stream HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % key).encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            raise OSError("closed during the upgrade")
        buf += d
    assert buf.startswith(b"HTTP/1.1 101"), buf[:100]
    return s


def frame(payload, opcode, fin):
    n = len(payload)
    b0 = (0x80 if fin else 0) | opcode
    if n < 126:
        head = bytes([b0, 0x80 | n])
    elif n < 65536:
        head = bytes([b0, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([b0, 0x80 | 127]) + n.to_bytes(8, "big")
    key = b"\0\0\0\0"  # a zero mask: the payload as it is
    return head + key + payload


def close_code(buf):
    """The code of the first close frame in server bytes buf, or None."""
    i = 0
    while i + 2 <= len(buf):
        op, ln = buf[i] & 0x0f, buf[i + 1] & 0x7f
        j = i + 2
        if ln == 126:
            ln, j = int.from_bytes(buf[j:j + 2], "big"), j + 2
        elif ln == 127:
            ln, j = int.from_bytes(buf[j:j + 8], "big"), j + 8
        if j + ln > len(buf):
            return None
        if op == 0x8:
            return int.from_bytes(buf[j:j + 2], "big") if ln >= 2 else 1005
        i = j + ln
    return None


def fragments(base, n, total, hold):
    u = urllib.parse.urlsplit(base)
    pid = metrics(base)["workers"][0]["pid"]
    before = rss_of(pid)
    socks, got = [], {}
    piece = b"x" * 1000
    for i in range(n):
        s = ws_connect(u.hostname, u.port)
        got[s] = b""
        sent, first = 0, True
        try:
            while sent < total:
                k = min(len(piece), total - sent)
                s.sendall(frame(piece[:k], 0x1 if first else 0x0, False))
                first, sent = False, sent + k
        except OSError:
            pass  # closed by the server (its close frame is read below)
        socks.append(s)
    t_end = time.monotonic() + hold
    next_ping = time.monotonic() + 10
    while time.monotonic() < t_end:
        if time.monotonic() >= next_ping:
            for s in socks:
                try:
                    s.sendall(frame(b"", 0x9, True))
                except OSError:
                    pass
            next_ping += 10
        r, _, _ = select.select(socks, [], [], 0.5)
        for s in r:
            try:
                d = s.recv(65536)
            except OSError:
                d = b""
            if d:
                got[s] += d
    after = rss_of(pid)
    codes = {}
    for s in socks:
        c = close_code(got[s])
        codes[c] = codes.get(c, 0) + 1
    print("%d connections, %d bytes of an unfinished message each, held %d s" % (n, total, hold))
    print("close codes received: %s" % codes)
    print("worker RSS: before %.1f MB, after %.1f MB: +%.1f MB (%.1f KB per connection)" %
          (before / 1e6, after / 1e6, (after - before) / 1e6, (after - before) / 1e3 / n))
    print("memory figures: %s" % budget(metrics(base)))
    for s in socks:
        s.close()


def main():
    what, base = sys.argv[1], sys.argv[2]
    if what == "uploads":
        uploads(base, int(sys.argv[3]) if len(sys.argv) > 3 else 10, int(sys.argv[4]) if len(sys.argv) > 4 else 24,
                sys.argv[5] if len(sys.argv) > 5 else None, sys.argv[6] if len(sys.argv) > 6 else "audio/wav")
    elif what == "fragments":
        fragments(base, int(sys.argv[3]) if len(sys.argv) > 3 else 300,
                  int(sys.argv[4]) if len(sys.argv) > 4 else 87000, int(sys.argv[5]) if len(sys.argv) > 5 else 15)
    else:
        sys.exit(__doc__)


main()
