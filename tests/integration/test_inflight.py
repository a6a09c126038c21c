"""Memory a client controls, Expect: 100-continue, and files that lie
(docs/API.md "HTTP errors", "Close codes", "POST /v1/transcribe";
docs/HOSTILE_INPUT.md lists each case).

- The worker's upload budget (ASR_UPLOAD_MEMORY_BYTES: bodies being received
  and the decoding of uploads in flight) answers 503 SERVER_BUSY with
  Retry-After past its bound, before the body when its Content-Length cannot
  fit; the message budget (ASR_MESSAGE_MEMORY_BYTES: WebSocket messages
  reassembled from pieces) closes 1013. Both are figures in /v1/metrics
  (`memory`).
- Expect: 100-continue is answered 100 Continue as soon as the head is in,
  or with the final status at once (a limit, no such route or method, a bad
  key, the budget), without the body being read: real curl (Debian's) and
  raw sockets.
- A WAV whose header states less than follows, or more than is there, is
  answered 200 with an `input` object that says so; a body shorter than its
  Content-Length followed by a half-close is answered 400.
"""
import json
import os
import socket
import struct
import subprocess
import threading
import time

import pytest
import requests

import asrd_harness as h
from asrd_harness import WS, arun

SLOW = h.WRAP_SLOW
UPLOAD_LIMIT = 1000000
DECODE_RESERVE = 4 * 1024 * 1024  # CONFIG_UPLOAD_DECODE_BYTES
MESSAGE_LIMIT = 88000             # the derived ASR_MAX_MESSAGE_BYTES


def delta(m0, m1, key):
    return h.metric(m1, key, 0) - h.metric(m0, key, 0)


def wav(pcm, rate=16000, data_size=None, riff_size=None):
    n = len(pcm) if data_size is None else data_size
    r = 36 + len(pcm) if riff_size is None else riff_size
    return (b"RIFF" + struct.pack("<I", r) + b"WAVE" + b"fmt " +
            struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16) + b"data" + struct.pack("<I", n) + pcm)


def speech(seconds):
    pcm = h.speech_pcm()
    n = 32000 * seconds
    return (pcm * (n // len(pcm) + 1))[:n]


def post(srv, body, ctype="audio/wav", key=None):
    hs = {"Content-Type": ctype}
    if key:
        hs["X-API-Key"] = key
    return requests.post(srv.http + "/v1/transcribe", data=body, headers=hs, timeout=60 * SLOW)


def head_bytes(path="/v1/transcribe", length=None, extra=None, method="POST", version="1.1"):
    hs = "%s %s HTTP/%s\r\nHost: x\r\nContent-Type: audio/pcm; rate=16000\r\n" % (method, path, version)
    if length is not None:
        hs += "Content-Length: %d\r\n" % length
    for k, v in (extra or {}).items():
        hs += "%s: %s\r\n" % (k, v)
    return (hs + "\r\n").encode("latin-1")


def read_early(c, timeout=3.0):
    """What the server sends without any body having been sent: the bytes of
    one response head (or a 100 Continue), or None when it waits."""
    c.sock.settimeout(timeout * SLOW)
    try:
        while b"\r\n\r\n" not in c.buf:
            d = c.sock.recv(65536)
            if not d:
                break
            c.buf += d
    except socket.timeout:
        return None
    finally:
        c.sock.settimeout(c.timeout)
    return c.buf


# --------------------------------------------------------------------------
# Expect: 100-continue

@pytest.fixture(scope="module")
def srv():
    s = h.Server({"ASR_MAX_UPLOAD_BYTES": UPLOAD_LIMIT, "ASR_MOCK_LATENCY_MS": 5, "ASR_API_KEYS": "k1",
                  "ASR_HANDSHAKE_TIMEOUT_S": 5, "ASR_BODY_TIMEOUT_S": 5}, name="inflight").start()
    try:
        yield s
    finally:
        s.stop()


def test_expect_100_continue_with_curl(srv, tmp_path):
    """curl sends Expect: 100-continue for a body over 1 MB and waits for the
    100 (here up to 5 s, --expect100-timeout) before sending it: the server
    answers 100 at once, so the upload takes no longer than without Expect.
    Before, it ignored Expect and curl waited out its timeout. An Expect
    upload refused on its head gets the final status at once (401 here),
    and curl sends no body."""
    path = tmp_path / "up.pcm"
    body = speech(20)  # 640 kB; curl's own threshold is 1 MB, so Expect is set by hand
    path.write_bytes(body)

    def curl(*extra):
        out = subprocess.run(["/usr/bin/curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{time_total} %{size_upload}",
                              "--expect100-timeout", "5", "-H", "Content-Type: audio/pcm; rate=16000",
                              "--data-binary", "@" + str(path), *extra, srv.http + "/v1/transcribe"],
                             capture_output=True, timeout=60 * SLOW, check=True)
        code, t, sent = out.stdout.decode().split()
        return int(code), float(t), int(float(sent))
    code, t_expect, sent = curl("-H", "Expect: 100-continue", "-H", "Authorization: Bearer k1")
    assert code == 200 and sent == len(body), (code, sent)
    code, t_plain, _ = curl("-H", "Expect:", "-H", "Authorization: Bearer k1")
    assert code == 200
    assert t_expect < 2.5 * SLOW, "curl waited for a 100 Continue: %.2f s (without Expect %.2f s)" % (t_expect, t_plain)
    code, t, sent = curl("-H", "Expect: 100-continue", "-H", "Authorization: Bearer wrong")
    assert code == 401 and sent == 0 and t < 2.5 * SLOW, (code, t, sent)


def test_expect_100_continue_protocol(srv):
    """On a raw socket: the 100 comes before any body byte is sent, then the
    body's answer; refusals come at once instead of the 100, with
    Connection: close (the body was never read): a Content-Length over the
    upload limit (413), no such path (404), a wrong method (405 with Allow),
    a missing key (401). An HTTP/1.0 request's expectation is ignored, and
    so is one without a body."""
    m0 = srv.metrics()
    body = speech(2)
    with h.RawConn(srv.port, 20 * SLOW) as c:
        c.send(head_bytes(length=len(body), extra={"Expect": "100-continue", "X-API-Key": "k1"}))
        assert read_early(c) is not None
        r = c.read_response()
        assert r.status == 100 and r.reason == "Continue" and len(r.headers["x-request-id"]) == 32, r
        assert c.buf == b"", c.buf
        c.send(body)
        r = c.read_response()
        assert r.status == 200 and r.json()["duration_ms"] == 2000, r
        assert r.headers["connection"] == "keep-alive"
    for hb, status, code in (
            (head_bytes(length=UPLOAD_LIMIT + 1, extra={"Expect": "100-continue", "X-API-Key": "k1"}),
             413, "PAYLOAD_TOO_LARGE"),
            (head_bytes(path="/v1/nowhere", length=10, extra={"Expect": "100-continue"}), 404, "NOT_FOUND"),
            (head_bytes(method="PUT", length=10, extra={"Expect": "100-continue"}), 405, "METHOD_NOT_ALLOWED"),
            (head_bytes(length=10, extra={"Expect": "100-continue"}), 401, "UNAUTHORIZED"),
            (head_bytes(length=10, extra={"Expect": "100-continue", "X-API-Key": "k2"}), 401, "UNAUTHORIZED")):
        with h.RawConn(srv.port, 10 * SLOW) as c:
            c.send(hb)
            assert read_early(c) is not None, "no answer before the body to %r" % hb
            assert not c.buf.startswith(b"HTTP/1.1 100"), c.buf
            r = c.read_response()
            h.assert_json_error(r, status, code)
            assert r.headers["connection"] == "close", r.headers
            if status == 405:
                assert r.headers["allow"] == "POST", r.headers
            c.sock.shutdown(socket.SHUT_WR)
            assert c.at_eof(5 * SLOW)
    # HTTP/1.0: no 100; the answer comes once the body is sent
    with h.RawConn(srv.port, 10 * SLOW) as c:
        c.send(head_bytes(length=3200, version="1.0", extra={"Expect": "100-continue", "X-API-Key": "k1"}))
        assert read_early(c, 1.0) is None
        c.send(b"\0" * 3200)
        assert c.read_response().status == 200
    m1 = srv.metrics()
    assert delta(m0, m1, "requests.by_route.transcribe.401") == 2
    assert delta(m0, m1, "requests.by_route.transcribe.405") == 1
    assert delta(m0, m1, "requests.by_route.other.404") == 1


# --------------------------------------------------------------------------
# files that lie, a body cut by a half-close

def test_wav_header_states_less_than_follows(srv):
    """A WAV whose data chunk (and RIFF size) say 1 s while 30 s follow: the
    1 s is transcribed, and the answer says 29 s of bytes were not."""
    m0 = srv.metrics()
    pcm = speech(30)
    r = post(srv, wav(pcm, data_size=32000, riff_size=36 + 32000), key="k1")
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["duration_ms"] == 1000, doc
    assert doc["input"] == {"truncated": False, "declared_ms": 1000, "trailing_bytes": 29 * 32000}, doc
    # the same with a RIFF size that covers it all: still no chunk
    r = post(srv, wav(pcm, data_size=32000), key="k1")
    assert r.json()["input"]["trailing_bytes"] == 29 * 32000, r.text
    m1 = srv.metrics()
    assert delta(m0, m1, "rest.inputs.trailing") == 2
    assert delta(m0, m1, "rest.inputs.truncated") == 0


def test_wav_cut_in_half(srv):
    """A WAV cut in half: what is there is transcribed, and the answer says
    the file was cut and how long its header says it is."""
    m0 = srv.metrics()
    whole = wav(speech(4))
    r = post(srv, whole[:44 + 2 * 32000], key="k1")
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["duration_ms"] == 2000, doc
    assert doc["input"] == {"truncated": True, "declared_ms": 4000, "trailing_bytes": 0}, doc
    # whole: nothing to say
    r = post(srv, whole, key="k1")
    assert r.json()["input"] == {"truncated": False, "declared_ms": 4000, "trailing_bytes": 0}, r.text
    # raw PCM has no header: it states no length
    r = post(srv, speech(1), "audio/pcm; rate=16000", key="k1")
    assert r.json()["input"] == {"truncated": False, "declared_ms": None, "trailing_bytes": 0}, r.text
    m1 = srv.metrics()
    assert delta(m0, m1, "rest.inputs.truncated") == 1
    assert delta(m0, m1, "rest.inputs.trailing") == 0


def test_body_cut_by_half_close_is_answered(srv):
    """A body shorter than its Content-Length, then the client's half-close:
    400 BAD_REQUEST saying so, then the server closes (it used to close
    without a word). The same for a chunked body without its last chunk and
    for a head cut short."""
    m0 = srv.metrics()
    for data, why in ((head_bytes(length=100000) + b"\0" * 10000, "Content-Length"),
                      (b"POST /v1/transcribe HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"10\r\n0123456789abcdef\r\n", "last chunk"),
                      (b"POST /v1/transcribe HTTP/1.1\r\nHost: x\r\nContent-Le", "request head")):
        with h.RawConn(srv.port, 10 * SLOW) as c:
            c.send(data)
            c.sock.shutdown(socket.SHUT_WR)
            r = c.read_response()
            doc = h.assert_json_error(r, 400, "BAD_REQUEST")
            assert "request incomplete" in doc["error"]["message"] and why in doc["error"]["message"], doc
            assert r.headers["connection"] == "close"
            assert c.at_eof(5 * SLOW)
    m1 = srv.metrics()
    assert delta(m0, m1, "requests.by_route.other.400") == 3


# --------------------------------------------------------------------------
# the upload budget

def test_upload_budget_refuses_with_retry_after(start_server):
    """With the smallest budget allowed (the largest body + the decoding
    room), an upload being transcribed holds it: another one is answered 503
    SERVER_BUSY with Retry-After: 1 before its body is sent (Expect) or as
    soon as its head is in (no Expect; the answer reaches the client, which
    is still sending). Once the first is done, the same upload passes, and
    the budget's figures are back at 0."""
    srv = start_server(ASR_MAX_UPLOAD_BYTES=UPLOAD_LIMIT, ASR_UPLOAD_MEMORY_BYTES=UPLOAD_LIMIT + DECODE_RESERVE,
                       ASR_MOCK_LATENCY_MS=400)
    m0 = srv.metrics()
    assert h.metric(m0, "memory.uploads.limit") == UPLOAD_LIMIT + DECODE_RESERVE
    body = speech(30)  # 960 kB: 30 chunks, about a second with the mock at 400 ms
    first = {}
    t = threading.Thread(target=lambda: first.update(r=post(srv, body, "audio/pcm; rate=16000")))
    t.start()
    h.poll(lambda: h.metric(srv.metrics(), "memory.uploads.bytes", 0) > DECODE_RESERVE, 10 * SLOW,
           desc="the first upload holding the budget")
    with h.RawConn(srv.port, 10 * SLOW) as c:
        c.send(head_bytes(length=len(body), extra={"Expect": "100-continue"}))
        assert read_early(c) is not None
        r = c.read_response()
        h.assert_json_error(r, 503, "SERVER_BUSY")
        assert r.headers["retry-after"] == "1" and r.headers["connection"] == "close", r.headers
    r = post(srv, body, "audio/pcm; rate=16000")
    h.assert_json_error(r, 503, "SERVER_BUSY")
    assert r.headers["Retry-After"] == "1"
    t.join(60 * SLOW)
    assert first["r"].status_code == 200, first["r"].text
    r = post(srv, body, "audio/pcm; rate=16000")
    assert r.status_code == 200, r.text
    m1 = h.poll(lambda: (lambda m: m if h.metric(m, "memory.uploads.bytes") == 0 else None)(srv.metrics()),
                5 * SLOW, desc="the budget given back")
    assert delta(m0, m1, "memory.uploads.refused") == 2
    assert delta(m0, m1, "requests.by_route.transcribe.503") == 2
    assert h.metric(m1, "memory.uploads.peak") <= UPLOAD_LIMIT + DECODE_RESERVE


def test_upload_budget_setting_is_checked(start_server):
    """A budget that cannot hold the largest upload is refused at start."""
    env = h.base_env({"ASR_MAX_UPLOAD_BYTES": UPLOAD_LIMIT, "ASR_UPLOAD_MEMORY_BYTES": UPLOAD_LIMIT})
    out = subprocess.run([h.asrd_bin()], env=env, capture_output=True, timeout=10 * SLOW)
    assert out.returncode == 2 and b"ASR_UPLOAD_MEMORY_BYTES: 1000000 leaves no room" in out.stderr, out
    env = h.base_env({"ASR_MESSAGE_MEMORY_BYTES": MESSAGE_LIMIT})
    out = subprocess.run([h.asrd_bin()], env=env, capture_output=True, timeout=10 * SLOW)
    assert out.returncode == 2 and b"ASR_MESSAGE_MEMORY_BYTES: 88000 leaves no room" in out.stderr, out


# --------------------------------------------------------------------------
# the message budget

def test_message_budget_closes_1013(start_server):
    """Connections that leave fragmented messages unfinished hold the
    message budget; one whose message cannot grow in it is closed 1013 at
    once (reason "server busy: ..."), counted in memory.messages.refused and
    close_codes.1013. Its memory is given back, and a normal session still
    runs."""
    srv = start_server(ASR_MESSAGE_MEMORY_BYTES=2 * MESSAGE_LIMIT)
    m0 = srv.metrics()
    holders = []
    for _ in range(2):
        c = h.raw_ws_connect(srv.port, timeout=10 * SLOW)
        c.send(h.ws_frame(b"x" * 60000, opcode=0x1, fin=False))  # 60 kB of an unfinished message
        holders.append(c)
    # 2 x 64 KiB held; the third cannot have its 64 KiB
    c = h.raw_ws_connect(srv.port, timeout=10 * SLOW)
    c.send(h.ws_frame(b"x" * 60000, opcode=0x1, fin=False))
    buf = c.buf
    deadline = time.monotonic() + 5 * SLOW
    frames = []
    while time.monotonic() < deadline and not any(op == 0x8 for op, _ in frames):
        try:
            d = c.sock.recv(65536)
        except (socket.timeout, ConnectionResetError):
            break
        if not d:
            break
        buf += d
        frames, _ = h.ws_parse_frames(buf)
    closes = [p for op, p in frames if op == 0x8]
    assert closes, frames
    assert int.from_bytes(closes[0][:2], "big") == 1013 and b"server busy" in closes[0][2:], closes
    assert c.at_eof(5 * SLOW)
    c.close()
    m1 = h.poll(lambda: (lambda m: m if delta(m0, m, "close_codes.1013") == 1 else None)(srv.metrics()),
                5 * SLOW, desc="the 1013 counted")
    assert delta(m0, m1, "memory.messages.refused") == 1
    assert h.metric(m1, "memory.messages.bytes") == 2 * 65536
    for c in holders:
        c.close()
    h.poll(lambda: h.metric(srv.metrics(), "memory.messages.bytes") == 0, 5 * SLOW, desc="the budget given back")

    async def go():
        w, s = await WS.open_session(srv.stream_url, timeout=10 * SLOW)
        await w.send_bytes(h.silence(100))
        a = await w.answers(1, 10 * SLOW)
        await w.stop(10 * SLOW)
        return a
    assert arun(go(), 30 * SLOW)[-1]["type"] == "partial"
