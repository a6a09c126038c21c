"""Hostile input: one kind of bad input per case, sent to the real
server over raw sockets where the libraries refuse to send it. Every case
asserts the exact answer docs/API.md / docs/API.md give (HTTP status and JSON
error code, or the WebSocket error code / close code), that /v1/metrics
counted it, and that the server still serves a normal streaming session
afterwards. docs/HOSTILE_INPUT.md lists every case with its answer.

Timeouts are small (ASR_HANDSHAKE_TIMEOUT_S=2, a 1 MB upload limit, a 4 KiB
header limit) so the module runs in well under a minute. Under a wrapper
(ASRD_WRAPPER, e.g. valgrind) waits are stretched by SLOW; the checks that
are about wall time keep their lower bounds and loosen only upper ones.
"""
import asyncio
import base64
import json
import os
import random
import select
import shutil
import socket
import struct
import subprocess
import threading
import time

import pytest
import requests
import websockets

import asrd_harness as h
from asrd_harness import WS, arun

WRAPPED = bool(h.WRAPPER)      # ASRD_WRAPPER, e.g. valgrind (make valgrind)
SLOW = h.WRAP_SLOW

HANDSHAKE_S = 2
UPLOAD_LIMIT = 1000000
HEADER_LIMIT = 4096
ENV = {
    "ASR_HANDSHAKE_TIMEOUT_S": HANDSHAKE_S,
    "ASR_BODY_TIMEOUT_S": HANDSHAKE_S,
    "ASR_MAX_UPLOAD_BYTES": UPLOAD_LIMIT,
    "ASR_MAX_HEADER_BYTES": HEADER_LIMIT,
    "ASR_MOCK_LATENCY_MS": 5,
}


@pytest.fixture(scope="module")
def srv():
    s = h.Server(ENV, name="hostile").start()
    try:
        yield s
    finally:
        s.stop()


# --------------------------------------------------------------------------
# helpers

def delta(m0, m1, key):
    return h.metric(m1, key, 0) - h.metric(m0, key, 0)


def stop_and_close(ws):
    """Sends stop and reads up to the server's close, which must be 1000;
    returns the messages that came after the stop."""
    ws.send(text('{"type":"stop"}'))
    code, after, eof = ws.close_code(5)
    ws.close()
    assert code == 1000, (code, after)
    return after


def assert_counted(srv, m0, expect):
    """expect: {dotted metric: increase}. Counters are bumped before the
    answer is written, except close codes and session ends, which are
    counted when the connection is freed: poll briefly."""
    last = {}

    def ok():
        m1 = srv.metrics()
        last["m"] = m1
        return all(delta(m0, m1, k) == v for k, v in expect.items())
    try:
        h.poll(ok, 5 * SLOW, 0.05, desc="metrics %r" % expect)
    except AssertionError:
        got = {k: delta(m0, last["m"], k) for k in expect}
        raise AssertionError("metrics: expected increases %r, got %r" % (expect, got))


def assert_serves(srv):
    """The server still answers HTTP and runs a normal streaming session:
    session message, a chunk answered by its partial, stop -> final + 1000."""
    assert srv.proc.poll() is None, "the server died"
    assert srv.health()["status"] == "ok"

    async def go():
        w, s = await WS.open_session(srv.stream_url, timeout=10 * SLOW)
        await w.send_bytes(h.silence(100))
        a = await w.answers(1, 10 * SLOW)
        after = await w.stop(10 * SLOW)
        return a, after, w.close_code

    a, after, code = arun(go(), 30 * SLOW)
    assert a[-1]["type"] == "partial" and a[-1]["sequence"] == 1, h.short(a)
    assert after[-1]["type"] == "final" and code == 1000, (h.short(after), code)


def exchange(port, data, timeout=5.0, count=None):
    """Sends raw bytes (stopping if the server answers early), then reads
    answers until the server closes, `count` answers came, or `timeout`
    passed. Returns (responses, closed): every HTTP response read and
    whether the server closed the connection."""
    c = h.RawConn(port, timeout * SLOW)
    try:
        c.send_until_answer(data)
        out = []
        while count is None or len(out) < count:
            try:
                out.append(c.read_response())
            except EOFError:
                return out, True
            except socket.timeout:
                return out, False
        return out, False
    finally:
        c.close()


def one_refusal(port, data, status, code, **kw):
    """Exactly one JSON error answer with Connection: close, then the server
    closes the connection (API.md: after 400/408/411/413/431)."""
    rs, closed = exchange(port, data, **kw)
    assert rs, "no answer to %r" % data[:200]
    h.assert_json_error(rs[0], status, code)
    assert rs[0].headers.get("connection") == "close", rs[0].headers
    rid = rs[0].headers.get("x-request-id", "")
    assert len(rid) == 32 and all(ch in "0123456789abcdef" for ch in rid), \
        "X-Request-Id %r is not a generated id" % rid
    assert len(rs) == 1, "bytes after the refused request were answered: %r" % rs[1:]
    assert closed, "the server kept the connection open after %d" % status
    return rs[0]


def req(head, body=b""):
    return head.encode("latin-1") + body if isinstance(head, str) else head + body


# --------------------------------------------------------------------------
# HTTP: malformed request lines and headers, smuggling shapes, limits

H = "Host: x\r\n"
POST_T = "POST /v1/transcribe HTTP/1.1\r\n" + H
CHUNKED = POST_T + "Transfer-Encoding: chunked\r\n"

BAD_REQUESTS = [
    # request line
    ("garbage_request_line", b"HELLO\r\n\r\n", 400, "BAD_REQUEST"),
    ("binary_request_line", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400, "BAD_REQUEST"),
    ("lowercase_method", b"get /v1/health HTTP/1.1\r\n" + H.encode() + b"\r\n", 400, "BAD_REQUEST"),
    ("space_in_target", b"GET /v1/he alth HTTP/1.1\r\n\r\n", 400, "BAD_REQUEST"),
    ("ctl_in_target", b"GET /v1/he\x01alth HTTP/1.1\r\n\r\n", 400, "BAD_REQUEST"),
    ("no_version_http09", b"GET /v1/health\r\n\r\n", 400, "BAD_REQUEST"),
    ("version_2_0", b"GET /v1/health HTTP/2.0\r\n\r\n", 400, "BAD_REQUEST"),
    ("version_9_9", b"GET /v1/health HTTP/9.9\r\n\r\n", 400, "BAD_REQUEST"),
    ("bad_version_token", b"GET /v1/health HTTX/1.1\r\n\r\n", 400, "BAD_REQUEST"),
    ("cr_without_lf", b"GET /v1/health HTTP/1.1\rHost: x\r\n\r\n", 400, "BAD_REQUEST"),
    # header lines
    ("header_without_colon", b"GET /v1/health HTTP/1.1\r\nHost\r\n\r\n", 400, "BAD_REQUEST"),
    ("nul_in_header_value", b"GET /v1/health HTTP/1.1\r\nX-A: a\x00b\r\n\r\n", 400, "BAD_REQUEST"),
    ("ctl_in_header_name", b"GET /v1/health HTTP/1.1\r\nX\x01Y: z\r\n\r\n", 400, "BAD_REQUEST"),
    ("space_in_header_name", b"GET /v1/health HTTP/1.1\r\nX Y: z\r\n\r\n", 400, "BAD_REQUEST"),
    ("space_before_colon", b"GET /v1/health HTTP/1.1\r\nHost : x\r\n\r\n", 400, "BAD_REQUEST"),
    ("obs_fold", b"GET /v1/health HTTP/1.1\r\nX-A: a\r\n b\r\n\r\n", 400, "BAD_REQUEST"),
    ("obs_fold_tab", b"GET /v1/health HTTP/1.1\r\nX-A: a\r\n\tb\r\n\r\n", 400, "BAD_REQUEST"),
    ("whitespace_before_first_header", b"GET /v1/health HTTP/1.1\r\n Host: x\r\n\r\n", 400, "BAD_REQUEST"),
    # request smuggling shapes
    ("content_length_and_chunked", req(POST_T + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                                       b"0\r\n\r\n"), 400, "BAD_REQUEST"),
    ("chunked_and_content_length", req(POST_T + "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
                                       b"0\r\n\r\n"), 400, "BAD_REQUEST"),
    ("duplicate_content_length_different", req(POST_T + "Content-Length: 4\r\nContent-Length: 5\r\n\r\n",
                                               b"abcde"), 400, "BAD_REQUEST"),
    ("duplicate_content_length_equal", req(POST_T + "Content-Length: 4\r\nContent-Length: 4\r\n\r\n",
                                           b"abcd"), 400, "BAD_REQUEST"),
    ("content_length_list", req(POST_T + "Content-Length: 4, 4\r\n\r\n", b"abcd"), 400, "BAD_REQUEST"),
    ("content_length_negative", req(POST_T + "Content-Length: -1\r\n\r\n"), 400, "BAD_REQUEST"),
    ("content_length_plus", req(POST_T + "Content-Length: +4\r\n\r\n", b"abcd"), 400, "BAD_REQUEST"),
    ("content_length_hex", req(POST_T + "Content-Length: 0x4\r\n\r\n", b"abcd"), 400, "BAD_REQUEST"),
    ("content_length_empty", req(POST_T + "Content-Length: \r\n\r\n"), 400, "BAD_REQUEST"),
    ("content_length_overflow", req(POST_T + "Content-Length: 99999999999999999999999\r\n\r\n"),
     400, "BAD_REQUEST"),
    ("content_length_obs_fold", req(POST_T + "Content-Length:\r\n 4\r\n\r\n", b"abcd"), 400, "BAD_REQUEST"),
    ("transfer_encoding_obs_fold", req(POST_T + "Transfer-Encoding:\r\n chunked\r\n\r\n", b"0\r\n\r\n"),
     400, "BAD_REQUEST"),
    ("transfer_encoding_space_before_colon", req(POST_T + "Transfer-Encoding : chunked\r\n\r\n",
                                                 b"0\r\n\r\n"), 400, "BAD_REQUEST"),
    ("transfer_encoding_chunked_not_last", req(POST_T + "Transfer-Encoding: chunked, gzip\r\n\r\n",
                                               b"0\r\n\r\n"), 400, "BAD_REQUEST"),
    ("transfer_encoding_gzip_chunked", req(POST_T + "Transfer-Encoding: gzip, chunked\r\n\r\n",
                                           b"0\r\n\r\n"), 400, "BAD_REQUEST"),
    ("transfer_encoding_identity", req(POST_T + "Transfer-Encoding: identity\r\n\r\n"), 400, "BAD_REQUEST"),
    ("transfer_encoding_twice", req(POST_T + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                                    b"0\r\n\r\n"), 400, "BAD_REQUEST"),
    ("transfer_encoding_xchunked", req(POST_T + "Transfer-Encoding: xchunked\r\nContent-Length: 3\r\n\r\n",
                                       b"abc"), 400, "BAD_REQUEST"),
    # bad chunk framing
    ("chunk_size_not_hex", req(CHUNKED + "\r\n", b"zz\r\nabc\r\n0\r\n\r\n"), 400, "BAD_REQUEST"),
    ("chunk_size_negative", req(CHUNKED + "\r\n", b"-1\r\nabc\r\n0\r\n\r\n"), 400, "BAD_REQUEST"),
    ("chunk_size_overflow", req(CHUNKED + "\r\n", b"FFFFFFFFFFFFFFFFFFFF\r\nabc\r\n"), 400, "BAD_REQUEST"),
    ("chunk_size_bare_lf", req(CHUNKED + "\r\n", b"4\nabcd\n0\n\n"), 400, "BAD_REQUEST"),
    ("chunk_data_longer_than_size", req(CHUNKED + "\r\n", b"4\r\nabcdXY0\r\n\r\n"), 400, "BAD_REQUEST"),
    ("chunk_data_shorter_than_size", req(CHUNKED + "\r\n", b"6\r\nabcd\r\n0\r\n\r\n"), 400, "BAD_REQUEST"),
    # limits
    ("post_without_length", req(POST_T + "\r\n"), 411, "LENGTH_REQUIRED"),
    ("content_length_over_upload_limit", req(POST_T + "Content-Length: %d\r\n\r\n" % (UPLOAD_LIMIT + 1)),
     413, "PAYLOAD_TOO_LARGE"),
    ("chunk_size_over_upload_limit", req(CHUNKED + "\r\n", b"7FFFFFFFFFFFFFFF\r\nabc"), 413, "PAYLOAD_TOO_LARGE"),
    ("target_over_header_limit", req("GET /" + "a" * (HEADER_LIMIT + 10) + " HTTP/1.1\r\n\r\n"),
     431, "HEADERS_TOO_LARGE"),
    ("header_over_header_limit", req("GET /v1/health HTTP/1.1\r\nX-A: " + "a" * (HEADER_LIMIT + 10) + "\r\n\r\n"),
     431, "HEADERS_TOO_LARGE"),
    ("headers_over_header_limit", req("GET /v1/health HTTP/1.1\r\n" +
                                      "".join("X-%d: %s\r\n" % (i, "v" * 100) for i in range(50)) + "\r\n"),
     431, "HEADERS_TOO_LARGE"),
    ("65_headers", req("GET /v1/health HTTP/1.1\r\n" + "".join("X-%d: y\r\n" % i for i in range(65)) + "\r\n"),
     431, "HEADERS_TOO_LARGE"),
]

@pytest.mark.parametrize("name,data,status,code", BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_bad_http_request(srv, name, data, status, code):
    """One refusal, a JSON error with Connection: close, the connection
    closed; a request pipelined behind it is never answered; counted in
    requests.by_route.other.<status> (refused before routing)."""
    m0 = srv.metrics()
    # a valid request behind the bad one must not be served (no desync)
    one_refusal(srv.port, data + b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n", status, code,
                timeout=HANDSHAKE_S + 3)
    assert_counted(srv, m0, {"requests.by_route.other.%d" % status: 1})
    assert_serves(srv)


def test_request_survivors(srv):
    """Odd but legal requests that are served, for contrast: bare LF line
    ends (RFC 9112 2.2 allows them), HTTP/1.0 without Host, 64 headers, a GET
    with a body, a chunked body with extensions and trailers, tab OWS, a
    header value with obs-text bytes."""
    ok = [
        b"GET /v1/health HTTP/1.1\nHost: x\n\n",
        b"GET /v1/health HTTP/1.0\r\n\r\n",
        req("GET /v1/health HTTP/1.1\r\n" + "".join("X-%d: y\r\n" % i for i in range(64)) + "\r\n"),
        req("GET /v1/health HTTP/1.1\r\nContent-Length: 3\r\n\r\n", b"abc"),
        b"GET /v1/health HTTP/1.1\r\nX-A:\tb\t\r\n\r\n",
        b"GET /v1/health HTTP/1.1\r\nX-A: \xff\xfe\r\n\r\n",
    ]
    m0 = srv.metrics()
    for data in ok:
        rs, _ = exchange(srv.port, data, count=1)
        assert len(rs) == 1 and rs[0].status == 200, (data, rs)
        assert rs[0].json()["status"] == "ok"
    # chunk extension and a trailer on a route without a body: 405 keeps the
    # connection, and the request behind it is answered
    data = req("POST /v1/health HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
               b"4;ext=1\r\nabcd\r\n0\r\nX-T: 1\r\n\r\nGET /v1/health HTTP/1.1\r\n\r\n")
    rs, _ = exchange(srv.port, data, count=2)
    assert [r.status for r in rs] == [405, 200], rs
    assert rs[0].headers.get("allow") == "GET, HEAD", rs[0].headers
    assert_counted(srv, m0, {"requests.by_route.health.200": len(ok) + 1, "requests.by_route.health.405": 1})
    assert_serves(srv)


def send_bytewise(port, data):
    """Sends one byte at a time (separate segments, so the server reads
    them apart); returns every response until the server closes or 2 s
    of silence."""
    c = h.RawConn(port, 2 * SLOW)
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        for i in range(len(data)):
            try:
                c.sock.sendall(data[i:i + 1])
            except OSError:
                break
            time.sleep(0.002)
        out = []
        while True:
            try:
                out.append(c.read_response())
            except (EOFError, socket.timeout):
                return out
    finally:
        c.close()


def test_framing_checks_across_reads(srv):
    """The checks that look at bytes the parser skips (the CRLF after chunk
    data, obs-fold, the protocol name) hold when every byte comes in its own
    read: a valid chunked request and the one behind it are served; a bad
    CRLF, a fold or HTTX split over reads is still a 400."""
    m0 = srv.metrics()
    ok = req("POST /v1/health HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
             b"4\r\nabcd\r\n3\r\nefg\r\n0\r\n\r\nGET /v1/health HTTP/1.1\r\n\r\n")
    assert [r.status for r in send_bytewise(srv.port, ok)] == [405, 200]
    for bad in (ok.replace(b"abcd\r\n", b"abcd\rX"), ok.replace(b"abcd\r\n", b"abcdX\n"),
                b"GET /v1/health HTTP/1.1\r\nX-A: a\r\n b\r\n\r\n",
                b"GET /v1/health HTTX/1.1\r\n\r\n"):
        rs = send_bytewise(srv.port, bad)
        assert len(rs) == 1, (bad, rs)
        h.assert_json_error(rs[0], 400, "BAD_REQUEST")
    assert_counted(srv, m0, {"requests.by_route.other.400": 4, "requests.by_route.health.405": 1,
                             "requests.by_route.health.200": 1})
    assert_serves(srv)


def test_chunked_trailer_is_not_a_header(srv):
    """A trailer field must not act as a request header (RFC 9110 6.5.1):
    raw PCM with its Content-Type only in the trailer is sniffed as an
    unknown body (415), not decoded as PCM."""
    pcm = h.silence(200)
    body = b"%x\r\n" % len(pcm) + pcm + b"\r\n0\r\nContent-Type: audio/pcm; rate=16000\r\n\r\n"
    m0 = srv.metrics()
    rs, _ = exchange(srv.port, req(CHUNKED + "\r\n", body), count=1)
    h.assert_json_error(rs[0], 415, "UNSUPPORTED_MEDIA_TYPE")
    # the same with the header where it belongs is transcribed
    rs, _ = exchange(srv.port, req(CHUNKED + "Content-Type: audio/pcm; rate=16000\r\n\r\n",
                                   body.replace(b"Content-Type: audio/pcm; rate=16000\r\n", b"")), count=1)
    assert rs[0].status == 200, rs[0]
    assert_counted(srv, m0, {"requests.by_route.transcribe.415": 1, "requests.by_route.transcribe.200": 1})


def test_upload_limit_is_inclusive(srv):
    """A body of exactly ASR_MAX_UPLOAD_BYTES is read (and refused only as
    not audio, 415); one byte more is 413 before the body is sent; a chunked
    body that grows past the limit is 413 as soon as it does."""
    m0 = srv.metrics()
    body = b"x" * UPLOAD_LIMIT
    rs, _ = exchange(srv.port, req(POST_T + "Content-Length: %d\r\n\r\n" % len(body), body), count=1)
    h.assert_json_error(rs[0], 415, "UNSUPPORTED_MEDIA_TYPE")
    # over the limit, announced: answered from the head alone
    c = h.RawConn(srv.port, 5 * SLOW)
    try:
        c.send(req(POST_T + "Content-Length: %d\r\n\r\n" % (UPLOAD_LIMIT + 1)))
        r = c.read_response()
        h.assert_json_error(r, 413, "PAYLOAD_TOO_LARGE")
        assert c.at_eof(5 * SLOW)
    finally:
        c.close()
    # over the limit, chunked in 100 kB chunks
    chunk = b"%x\r\n" % 100000 + b"y" * 100000 + b"\r\n"
    one_refusal(srv.port, req(CHUNKED + "\r\n", chunk * 11 + b"0\r\n\r\n"), 413, "PAYLOAD_TOO_LARGE")
    assert_counted(srv, m0, {"requests.by_route.transcribe.415": 1, "requests.by_route.other.413": 2})
    assert_serves(srv)


def wav_header(channels, rate, bits=16, data_len=3200, fmt=1):
    block = channels * bits // 8
    return (b"RIFF" + struct.pack("<I", 36 + data_len) + b"WAVE" + b"fmt " +
            struct.pack("<IHHIIHH", 16, fmt, channels, rate, rate * block, block, bits) +
            b"data" + struct.pack("<I", data_len))


@pytest.fixture(scope="module")
def containers(tmp_path_factory):
    """Real Ogg Vorbis and FLAC files of the test speech (sox), to break."""
    if not shutil.which("sox"):
        pytest.skip("sox is needed to make Ogg/FLAC files")
    d = tmp_path_factory.mktemp("containers")
    out = {}
    for ext in ("ogg", "flac"):
        path = str(d / ("speech." + ext))
        subprocess.run(["sox", h.gen_path("speech16k.wav"), path], check=True, timeout=60)
        with open(path, "rb") as f:
            out[ext] = f.read()
    return out


def garbage(n, seed=7):
    rnd = random.Random(seed)
    return bytes(rnd.getrandbits(8) for _ in range(n))


def corrupt(data, start=200, step=97):
    b = bytearray(data)
    for i in range(start, len(b), step):
        b[i] ^= 0x5A
    return bytes(b)


# (name, body maker (containers -> bytes), status, code); all sent as
# application/octet-stream, so the bytes decide (API.md "Content-Type handling")
UPLOADS = [
    ("ogg_truncated", lambda c: c["ogg"][:len(c["ogg"]) // 2], 400, "INVALID_AUDIO"),
    ("ogg_corrupted", lambda c: corrupt(c["ogg"]), 415, "UNSUPPORTED_MEDIA_TYPE"),
    ("ogg_headers_only", lambda c: c["ogg"][:300], 415, "UNSUPPORTED_MEDIA_TYPE"),
    ("oggs_then_garbage", lambda c: b"OggS" + garbage(4000), 415, "UNSUPPORTED_MEDIA_TYPE"),
    ("flac_truncated", lambda c: c["flac"][:len(c["flac"]) // 3], 400, "INVALID_AUDIO"),
    ("flac_magic_then_garbage", lambda c: b"fLaC" + garbage(4000), 415, "UNSUPPORTED_MEDIA_TYPE"),
    ("id3_then_garbage", lambda c: b"ID3\x03\x00\x00\x00\x00\x00\x10" + garbage(4000), 415,
     "UNSUPPORTED_MEDIA_TYPE"),
    ("mp3_sync_then_garbage", lambda c: b"\xff\xfb\x90\x00" + garbage(4000), 415, "UNSUPPORTED_MEDIA_TYPE"),
    ("riff_wave_then_garbage", lambda c: b"RIFF" + struct.pack("<I", 4000) + b"WAVE" + garbage(4000), 415,
     "UNSUPPORTED_MEDIA_TYPE"),
    ("wav_truncated_header", lambda c: h.read_bytes("speech16k.wav")[:30], 415, "UNSUPPORTED_MEDIA_TYPE"),
    ("wav_65_channels", lambda c: wav_header(65, 16000, data_len=13000) + b"\0" * 13000, 400, "INVALID_AUDIO"),
    ("wav_1000_channels", lambda c: wav_header(1000, 16000, data_len=32000) + b"\0" * 32000, 400,
     "INVALID_AUDIO"),
    ("wav_0_channels", lambda c: wav_header(0, 16000) + b"\0" * 3200, 415, "UNSUPPORTED_MEDIA_TYPE"),
    ("wav_rate_0", lambda c: wav_header(1, 0) + b"\0" * 3200, 415, "UNSUPPORTED_MEDIA_TYPE"),
    ("wav_rate_1", lambda c: wav_header(1, 1) + b"\0" * 3200, 400, "INVALID_AUDIO"),
    ("wav_rate_999999", lambda c: wav_header(1, 999999) + b"\0" * 3200, 400, "INVALID_AUDIO"),
    ("wav_unknown_format_tag", lambda c: wav_header(1, 16000, fmt=99) + b"\0" * 3200, 415,
     "UNSUPPORTED_MEDIA_TYPE"),
    ("wav_without_samples", lambda c: wav_header(1, 16000, data_len=0), 400, "INVALID_AUDIO"),
    ("random_bytes", lambda c: garbage(5000), 415, "UNSUPPORTED_MEDIA_TYPE"),
]


@pytest.mark.parametrize("name,make,status,code", UPLOADS, ids=[u[0] for u in UPLOADS])
def test_malformed_upload(srv, containers, name, make, status, code):
    """Broken and lying containers on POST /v1/transcribe: 400 INVALID_AUDIO
    for one that opens but breaks or states an unsupported layout, 415 for
    one that cannot be opened (API.md "Errors"); counted in
    requests.by_route.transcribe.<status>; the decoder thread survives (a
    well-formed upload right after is transcribed). Malformed Ogg goes
    through libsndfile's leaking error path (tests/valgrind.supp)."""
    m0 = srv.metrics()
    r = requests.post(srv.http + "/v1/transcribe", data=make(containers),
                      headers={"Content-Type": "application/octet-stream"}, timeout=30 * SLOW)
    h.assert_json_error(r, status, code)
    r = requests.post(srv.http + "/v1/transcribe", data=h.read_bytes("speech16k.wav"),
                      headers={"Content-Type": "audio/wav"}, timeout=30 * SLOW)
    assert r.status_code == 200 and r.json()["text"], r.text
    assert_counted(srv, m0, {"requests.by_route.transcribe.%d" % status: 1,
                             "requests.by_route.transcribe.200": 1})


def test_pipelined_bodies_do_not_accumulate(srv):
    """Bodies sent to routes that do not take one (405 keeps the connection)
    are freed: 30 pipelined 300 kB bodies on one connection leave RSS where
    it was (it grew by the sum of the bodies before the fix)."""
    rss0 = h.metric(srv.metrics(), "process.rss_bytes")
    body = b"z" * 300000
    one = req("POST /v1/health HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(body), body)
    c = h.RawConn(srv.port, 10 * SLOW)
    try:
        for _ in range(30):
            c.send(one)
            r = c.read_response()
            assert r.status == 405, r
    finally:
        c.close()
    grew = h.metric(srv.metrics(), "process.rss_bytes") - rss0
    # valgrind and ASan hold freed blocks back (quarantine); their leak checks cover this there
    if not WRAPPED and not h.is_sanitized():
        assert grew < 4000000, "RSS grew by %d bytes after 9 MB of refused bodies" % grew
    assert_serves(srv)


def test_upgrade_flag_does_not_replay_a_request(srv):
    """A request carrying Upgrade/Connection: upgrade to a plain route is
    answered normally; a byte the parser rejects after it is a 400 and the
    end of the connection. (It used to dispatch the previous request again
    and again: a one-packet CPU and log flood.)"""
    m0 = srv.metrics()
    data = (b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\r\n"
            b"\x81\x80abcd")
    rs, closed = exchange(srv.port, data, timeout=HANDSHAKE_S + 3)
    assert [r.status for r in rs] == [200, 400], rs
    h.assert_json_error(rs[1], 400, "BAD_REQUEST")
    assert rs[0].headers["x-request-id"] != rs[1].headers["x-request-id"], rs
    assert closed
    assert_counted(srv, m0, {"requests.by_route.health.200": 1, "requests.by_route.other.400": 1})
    assert_serves(srv)


def test_upgrade_with_unfinished_body_closes_after_its_answer(srv):
    """A request carrying Upgrade whose body has not all arrived is
    dispatched once its head is in (the rest may be another protocol). When
    the route answers it without upgrading, the rest of its body cannot be
    read as the next request: the answer says Connection: close and the
    server closes. (The body's tail used to complete the answered request a
    second time: a 404 for no request, keep-alive.)"""
    m0 = srv.metrics()
    c = h.RawConn(srv.port, 5 * SLOW)
    try:
        c.send(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: foo\r\n"
               b"Content-Length: 10\r\n\r\nabc")
        r = c.read_response()
        assert r.status == 200, r
        assert r.headers.get("connection") == "close", r.headers
        try:
            c.send(b"defghij")
            c.send(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        with pytest.raises(EOFError):
            extra = c.read_response()
            raise AssertionError("answered after the close: %r" % (extra,))
    finally:
        c.close()
    assert_counted(srv, m0, {"requests.by_route.health.200": 1, "requests.by_route.other.404": 0})
    assert_serves(srv)


# --------------------------------------------------------------------------
# slowloris and half-open sockets

def trickle(port, chunks, interval):
    """Sends chunks one per interval until the server answers (or closes);
    returns (response or None, seconds from connect to the answer)."""
    c = h.RawConn(port, 30 * SLOW)
    t0 = time.monotonic()
    try:
        for ch in chunks:
            try:
                c.sock.sendall(ch)
            except OSError:
                break
            if select.select([c.sock], [], [], interval)[0]:
                break
        took = time.monotonic() - t0
        try:
            return c.read_response(), took
        except EOFError:
            return None, took
    finally:
        c.close()


def test_slowloris(srv):
    """Header bytes trickled one per second, and a body trickled after a
    complete head: 408 TIMEOUT ASR_HANDSHAKE_TIMEOUT_S after the connection
    opened (not per byte), then close; a connection that sends nothing is
    closed silently. Meanwhile a normal session is not stalled."""
    head = b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 60 + b"\r\n\r\n"
    post = req(POST_T + "Content-Length: 50\r\n\r\n")
    results = {}

    def run(name, chunks):
        results[name] = trickle(srv.port, chunks, 1.0)

    def silent():
        c = h.RawConn(srv.port, 30 * SLOW)
        t0 = time.monotonic()
        try:
            closed = c.at_eof(HANDSHAKE_S + 5 * SLOW)
            results["silent"] = (closed, c.buf, time.monotonic() - t0)
        finally:
            c.close()

    m0 = srv.metrics()
    threads = [threading.Thread(target=run, args=("head", [bytes([b]) for b in head])),
               threading.Thread(target=run, args=("body", [post] + [b"x"] * 50)),
               threading.Thread(target=silent)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    assert_serves(srv)        # not stalled by the three above
    for t in threads:
        t.join(60)
    for name in ("head", "body"):
        r, took = results[name]
        assert r is not None, "%s trickle: no answer" % name
        h.assert_json_error(r, 408, "TIMEOUT")
        assert r.headers.get("connection") == "close"
        assert HANDSHAKE_S - 0.3 <= took <= HANDSHAKE_S + 2 * SLOW, \
            "%s trickle answered after %.2f s, timeout %d s" % (name, took, HANDSHAKE_S)
    closed, buf, took = results["silent"]
    assert closed and buf == b"", "a silent connection got %r / was not closed" % buf
    assert took >= HANDSHAKE_S - 0.3, took
    assert_counted(srv, m0, {"requests.by_route.other.408": 2})


def test_slow_steady_upload_is_not_cut(srv):
    """A body that keeps coming (1 KiB or more per ASR_BODY_TIMEOUT_S) is
    read to its end however long it takes: an upload of a few seconds on a
    slow link, longer than both the head and the body timeout, gets its
    transcript (it used to get 408 at the head deadline). A body that stalls
    gets 408 one body timeout after its last progress."""
    wav = h.read_bytes("speech16k.wav")
    head = (POST_T + "Content-Type: audio/wav\r\nContent-Length: %d\r\n\r\n" % len(wav)).encode()
    piece = 6000
    chunks = [head] + [wav[i:i + piece] for i in range(0, len(wav), piece)]
    interval = 0.4
    assert (len(chunks) - 1) * interval > HANDSHAKE_S + 1, "the upload must outlast both timeouts"
    m0 = srv.metrics()
    r, took = trickle(srv.port, chunks, interval)
    assert r is not None, "no answer"
    assert r.status == 200, (r.status, r.body[:200])
    assert took > HANDSHAKE_S + 1
    assert "text" in json.loads(r.body)

    # the same upload stalling after 3 pieces: 408 about one body timeout later
    stalled = chunks[:4]
    c = h.RawConn(srv.port, 30 * SLOW)
    try:
        for ch in stalled:
            c.sock.sendall(ch)
        t_last = time.monotonic()
        r3 = c.read_response()
        waited = time.monotonic() - t_last
    finally:
        c.close()
    h.assert_json_error(r3, 408, "TIMEOUT")
    assert HANDSHAKE_S - 0.3 <= waited <= HANDSHAKE_S + 2 * SLOW, waited
    assert_counted(srv, m0, {"requests.by_route.transcribe.200": 1})


def test_half_open_sockets(srv):
    """TCP half-close (the client shuts its sending side) after a complete
    request: the answer still comes, with Connection: close (a REST upload
    used to be dropped). Half-close before any request: closed, no answer.
    A WebSocket client that half-closes is a dropped connection: no close
    frame, the session stays resumable."""
    wav = h.read_bytes("speech16k.wav")
    m0 = srv.metrics()
    for data, slow in ((b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n", False),
                       (req(POST_T + "Content-Type: audio/wav\r\nContent-Length: %d\r\n\r\n" % len(wav), wav),
                        True)):
        c = h.RawConn(srv.port, 20 * SLOW)
        try:
            c.send(data)
            c.sock.shutdown(socket.SHUT_WR)
            r = c.read_response()
            assert r.status == 200, r
            if slow:   # answered after the EOF was seen (a health GET is answered before)
                assert r.headers.get("connection") == "close", r.headers
            assert c.at_eof(5 * SLOW)
        finally:
            c.close()
    c = h.RawConn(srv.port, 5 * SLOW)
    try:
        c.sock.shutdown(socket.SHUT_WR)
        assert c.at_eof(2 * SLOW) and c.buf == b""
    finally:
        c.close()

    ws = RawWS(srv.port)
    sid = ws.session["session_id"]
    ws.send(frame(h.silence(100)))
    assert ws.next_json()["type"] == "partial"
    ws.c.sock.shutdown(socket.SHUT_WR)
    frames, eof = ws.read_until_eof(5 * SLOW)
    ws.close()
    assert eof and not [p for op, p in frames if op == 0x8], frames
    assert_counted(srv, m0, {"requests.by_route.health.200": 1, "requests.by_route.transcribe.200": 1,
                             "close_codes.none": 1})

    async def resume():
        w, s = await WS.open_session(srv.stream_url, "?session_id=" + sid)
        await w.stop()
        return s
    s = arun(resume(), 20 * SLOW)
    assert s["resumed"] is True and s["last_sequence"] == 1, s
    assert_serves(srv)


def test_connection_cap(start_server):
    """More connections from one client than ASR_MAX_CONNECTIONS: each extra
    one gets the bare 503 CONNECTION_LIMIT with Retry-After: 1 and is closed
    (connections.refused counts them); the sessions already open are not
    disturbed, and a place freed is usable again."""
    cap = 5
    s = start_server(ASR_MAX_CONNECTIONS=cap, ASR_MOCK_LATENCY_MS=5)
    h.poll(lambda: h.metric(s.metrics(), "connections.active") == 1, 5 * SLOW, desc="idle server")
    m0 = s.metrics()

    async def go():
        ws = [await WS.open_session(s.stream_url, timeout=10 * SLOW) for _ in range(cap)]
        loop = asyncio.get_running_loop()
        refused = []
        for _ in range(3):
            refused.append(await loop.run_in_executor(None, read_refusal, s.port))
        for w, _ in ws:
            await w.send_bytes(h.silence(100))
        answers = [await w.answers(1, 10 * SLOW) for w, _ in ws]
        await ws[0][0].stop()
        # the freed place takes a new session
        w6 = None
        for _ in range(50):
            try:
                w6, _ = await WS.open_session(s.stream_url, timeout=5 * SLOW)
                break
            except (websockets.InvalidStatusCode, websockets.InvalidMessage, ConnectionError, EOFError,
                    AssertionError, OSError):
                await asyncio.sleep(0.1)
        assert w6 is not None, "no session after one of %d ended" % cap
        await w6.stop()
        for w, _ in ws[1:]:
            await w.stop()
        return refused, answers

    refused, answers = arun(go(), 60 * SLOW)
    for r in refused:
        h.assert_json_error(r, 503, "CONNECTION_LIMIT")
        assert r.headers.get("retry-after") == "1", r.headers
    for a in answers:
        assert a[-1]["type"] == "partial", a
    assert delta(m0, s.metrics(), "connections.refused") >= 3
    assert_serves(s)


def test_connection_cap_survives_clients_that_reset(start_server):
    """At the connection cap, clients that connect and reset at once are
    refused without harm. The refusal (503) is written before any protocol
    handler is installed; its write failing on the reset socket crashed the
    worker (a NULL handler), and every connection of the worker with it."""
    s = start_server(ASR_MAX_CONNECTIONS=2, ASR_MOCK_LATENCY_MS=5)
    held = h.RawConn(s.port, 5 * SLOW)
    try:
        held.send(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert held.read_response().status == 200
        for _ in range(20):
            c = socket.create_connection(("127.0.0.1", s.port))
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()
        time.sleep(0.5 * SLOW)
        # the worker that holds this connection is still the same one
        held.send(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert held.read_response().status == 200
    finally:
        held.close()
    assert_serves(s)


def test_connection_opened_before_drain_is_answered(start_server):
    """Connections accepted before SIGTERM whose first request comes while
    the server drains are answered (health: 503 "draining", Connection:
    close), not dropped as if they were idle keep-alive connections; an idle
    keep-alive connection is closed at once; the process then exits 0.
    (A new connection during the drain cannot read /v1/metrics, so the
    second early connection asks for it.)"""
    s = start_server(ASR_HANDSHAKE_TIMEOUT_S=8)
    fresh = h.RawConn(s.port, 10 * SLOW)
    keeper = h.RawConn(s.port, 10 * SLOW)
    idle = h.RawConn(s.port, 10 * SLOW)
    try:
        idle.send(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert idle.read_response().status == 200
        h.poll(lambda: h.metric(s.metrics(), "connections.active") == 4, 5 * SLOW, desc="all accepted")
        m0 = s.metrics()
        s.terminate()
        assert idle.at_eof(3 * SLOW), "an idle keep-alive connection outlived the drain"
        time.sleep(1.5)             # at least one drain tick passes
        fresh.send(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        r = fresh.read_response()
        assert r.status == 503 and r.json()["status"] == "draining", r
        assert r.headers.get("connection") == "close", r.headers
        assert fresh.at_eof(3 * SLOW)
        keeper.send(b"GET /v1/metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        r = keeper.read_response()
        assert r.status == 200, r
        assert delta(m0, r.json(), "requests.by_route.health.503") == 1
    finally:
        fresh.close()
        keeper.close()
        idle.close()
    assert s.wait(10) == 0


def test_connection_cap_per_client_address(start_server):
    """ASR_MAX_CONNECTIONS_PER_IP: one client address past its share is
    refused like the global cap (err.h TOO_MANY_CONNECTIONS, 503) while the
    process-wide cap is far away."""
    s = start_server(ASR_MAX_CONNECTIONS_PER_IP=3, ASR_MAX_CONNECTIONS=1000, ASR_HANDSHAKE_TIMEOUT_S=1)
    # no connection left over from start-up (they count for 127.0.0.1 too)
    h.poll(lambda: h.metric(s.metrics(), "connections.active") == 1, 5 * SLOW, desc="idle server")
    time.sleep(0.2)
    held = [h.RawConn(s.port, 5 * SLOW) for _ in range(3)]
    try:
        time.sleep(0.2)
        r = read_refusal(s.port)
        assert r.status == 503, r
        assert r.json()["error"]["code"] in ("TOO_MANY_CONNECTIONS", "CONNECTION_LIMIT"), r
    finally:
        for c in held:
            c.close()
    # the places are given back once the server has seen the closes
    h.poll(lambda: requests.get(s.http + "/v1/health", timeout=5).status_code == 200, 5 * SLOW,
           desc="the address admitted again")
    assert_serves(s)


def read_refusal(port):
    c = h.RawConn(port, 5 * SLOW)
    try:
        r = c.read_response()
        assert c.at_eof(5 * SLOW)
        return r
    finally:
        c.close()


# --------------------------------------------------------------------------
# bad upgrades

UPGRADES = [
    # (name, headers to change (None = remove), status, code)
    ("missing_key", {"Sec-WebSocket-Key": None}, 400, "BAD_REQUEST"),
    ("empty_key", {"Sec-WebSocket-Key": ""}, 400, "BAD_REQUEST"),
    ("short_key", {"Sec-WebSocket-Key": base64.b64encode(b"x" * 15).decode()}, 400, "BAD_REQUEST"),
    ("long_key", {"Sec-WebSocket-Key": base64.b64encode(b"x" * 20).decode()}, 400, "BAD_REQUEST"),
    ("unpadded_key", {"Sec-WebSocket-Key": base64.b64encode(b"x" * 16).decode().rstrip("=")}, 400, "BAD_REQUEST"),
    ("key_not_base64", {"Sec-WebSocket-Key": "!" * 24}, 400, "BAD_REQUEST"),
    ("missing_version", {"Sec-WebSocket-Version": None}, 400, "BAD_REQUEST"),
    ("version_8", {"Sec-WebSocket-Version": "8"}, 400, "BAD_REQUEST"),
    ("version_list", {"Sec-WebSocket-Version": "13, 8"}, 400, "BAD_REQUEST"),
    ("upgrade_without_connection", {"Connection": None}, 426, "UPGRADE_REQUIRED"),
    ("connection_without_upgrade", {"Upgrade": None}, 426, "UPGRADE_REQUIRED"),
    ("upgrade_not_websocket", {"Upgrade": "h2c"}, 426, "UPGRADE_REQUIRED"),
    ("connection_token_mismatch", {"Connection": "Upgradex"}, 426, "UPGRADE_REQUIRED"),
]


def upgrade_bytes(method="GET", changes=None, path="/v1/transcribe/stream"):
    hs = h.upgrade_headers()
    for k, v in (changes or {}).items():
        if v is None:
            hs.pop(k, None)
        else:
            hs[k] = v
    return h.build_request(method, path, hs)


@pytest.mark.parametrize("name,changes,status,code", UPGRADES, ids=[u[0] for u in UPGRADES])
def test_bad_upgrade(srv, name, changes, status, code):
    m0 = srv.metrics()
    rs, _ = exchange(srv.port, upgrade_bytes(changes=changes), count=1)
    h.assert_json_error(rs[0], status, code)
    if status == 426:
        assert rs[0].headers.get("upgrade", "").lower() == "websocket", rs[0].headers
    if name.startswith("version"):
        assert rs[0].headers.get("sec-websocket-version") == "13", rs[0].headers
    expect = {"sessions.total": 0}
    if status != 426:   # 426 is miscounted: test_426_is_counted_as_426
        expect["requests.by_route.stream.%d" % status] = 1
    assert_counted(srv, m0, expect)
    assert_serves(srv)


def test_426_is_counted_as_426(srv):
    m0 = srv.metrics()
    rs, _ = exchange(srv.port, upgrade_bytes(changes={"Connection": None}), count=1)
    h.assert_json_error(rs[0], 426, "UPGRADE_REQUIRED")
    assert_counted(srv, m0, {"requests.by_route.stream.426": 1})


def test_query_nul_byte(srv):
    """A query value that decodes to a NUL byte (%00) is invalid as a whole,
    never cut at the NUL: session_id=<id>%00junk does not resume <id> (404
    SESSION_NOT_FOUND, as for any id never issued), sample_rate and encoding
    are 400 BAD_REQUEST. The session stays resumable by its real id."""
    ws = RawWS(srv.port)
    sid = ws.session["session_id"]
    ws.close()  # dropped without a close frame: resumable
    h.poll(lambda: h.metric(srv.metrics(), "sessions.attached") == 0, 5 * SLOW, desc="session detached")
    m0 = srv.metrics()
    for query, status, code in [("?session_id=%s%%00junk" % sid, 404, "SESSION_NOT_FOUND"),
                                ("?session_id=%s%%00" % sid, 404, "SESSION_NOT_FOUND"),
                                ("?sample_rate=16000%00", 400, "BAD_REQUEST"),
                                ("?sample_rate=8000%0016000", 400, "BAD_REQUEST"),
                                ("?encoding=pcm_s16le%00", 400, "BAD_REQUEST"),
                                ("?encoding=pcm_s16le%00x&session_id=" + sid, 400, "BAD_REQUEST")]:
        r = h.raw_upgrade(srv.port, query)
        assert r.status != 101, "%s was accepted" % query
        h.assert_json_error(r, status, code)
    assert_counted(srv, m0, {"requests.by_route.stream.404": 2, "requests.by_route.stream.400": 4,
                             "requests.by_route.stream.101": 0, "sessions.resumed": 0, "sessions.total": 0})

    async def resume():
        w, s = await WS.open_session(srv.stream_url, "?session_id=" + sid)
        await w.stop()
        return s
    s = arun(resume(), 20 * SLOW)
    assert s["resumed"] is True and s["session_id"] == sid, s
    assert_serves(srv)


def test_query_nul_byte_in_api_key(start_server):
    """api_key=<key>%00junk is not the key <key>: 401."""
    s = start_server(ASR_API_KEYS="k1", ASR_MOCK_LATENCY_MS=5)
    for query in ("?api_key=k1%00junk", "?api_key=k1%00"):
        h.assert_json_error(h.raw_upgrade(s.port, query), 401, "UNAUTHORIZED")

    async def ok():
        w, _ = await WS.open_session(s.stream_url, "?api_key=k1")
        await w.stop()
        return w.close_code
    assert arun(ok(), 20 * SLOW) == 1000


def test_post_upgrade_405(srv):
    """An upgrade with POST: 405 with Allow: GET (and HEAD), no session."""
    m0 = srv.metrics()
    rs, _ = exchange(srv.port, upgrade_bytes("POST"), count=1)
    h.assert_json_error(rs[0], 405, "METHOD_NOT_ALLOWED")
    assert rs[0].headers.get("allow") == "GET, HEAD", rs[0].headers
    assert_counted(srv, m0, {"requests.by_route.stream.405": 1, "sessions.total": 0})
    assert_serves(srv)


# --------------------------------------------------------------------------
# WebSocket frames, built by hand

def frame(payload, opcode=0x2, fin=True, mask=True, rsv=0, length=None, ext=None):
    """A client frame. length overrides the encoded payload length; ext
    forces the 16-bit (126) or 64-bit (127) length form."""
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    mb = 0x80 if mask else 0
    if ext == 126 or (ext is None and 126 <= n < 65536):
        head = bytes([b0, mb | 126]) + n.to_bytes(2, "big")
    elif ext == 127 or (ext is None and n >= 65536):
        head = bytes([b0, mb | 127]) + n.to_bytes(8, "big")
    else:
        head = bytes([b0, mb | n])
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def text(s, **kw):
    return frame(s.encode("utf-8") if isinstance(s, str) else s, opcode=0x1, **kw)


def close_code_of(payload):
    return int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None


class RawWS:
    """A WebSocket session on a plain socket: the upgrade, the `session`
    message, then frames as the test builds them."""

    def __init__(self, port, query=""):
        self.c = h.raw_ws_connect(port, query, timeout=10 * SLOW)
        self.buf = self.c.buf
        self.eof = False
        first = self.next_frame(10 * SLOW)
        assert first and first[0] == 0x1, first
        self.session = json.loads(first[1])
        assert self.session["type"] == "session", self.session

    def send(self, data):
        try:
            self.c.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0 or self.eof:
            return False
        self.c.sock.settimeout(left)
        try:
            d = self.c.sock.recv(65536)
        except socket.timeout:
            return False
        except ConnectionResetError:
            d = b""
        if not d:
            self.eof = True
            return False
        self.buf += d
        return True

    def next_frame(self, timeout=5.0):
        """(opcode, payload), or None at EOF / timeout."""
        deadline = time.monotonic() + timeout
        while True:
            frames, rest = h.ws_parse_frames(self.buf)
            if frames:
                self.buf = self._after_first(self.buf)
                return frames[0]
            if not self._fill(deadline):
                return None

    @staticmethod
    def _after_first(buf):
        n = buf[1] & 0x7F
        pos = 2
        if n == 126:
            n, pos = int.from_bytes(buf[2:4], "big"), 4
        elif n == 127:
            n, pos = int.from_bytes(buf[2:10], "big"), 10
        return buf[pos + n:]

    def next_json(self, timeout=5.0):
        while True:
            f = self.next_frame(timeout * SLOW)
            assert f is not None, "no message (eof=%s)" % self.eof
            if f[0] == 0x1:
                return json.loads(f[1])
            assert f[0] == 0xA, "unexpected frame %r" % (f,)

    def read_until_eof(self, timeout=5.0):
        """All frames until the server closes the TCP connection."""
        deadline = time.monotonic() + timeout
        out = []
        while True:
            f = self.next_frame(max(0.0, deadline - time.monotonic()))
            if f is None:
                return out, self.eof
            out.append(f)

    def close_code(self, timeout=5.0):
        """Reads to the end; returns (close code or None, text messages, eof)."""
        frames, eof = self.read_until_eof(timeout * SLOW)
        closes = [p for op, p in frames if op == 0x8]
        msgs = [json.loads(p) for op, p in frames if op == 0x1]
        return (close_code_of(closes[0]) if closes else None), msgs, eof

    def close(self):
        self.c.close()


def assert_gone(srv, sid):
    r = h.raw_upgrade(srv.port, "?session_id=" + sid)
    h.assert_json_error(r, 404, "SESSION_NOT_FOUND")


S100 = h.silence(100)

# (name, bytes sent after the session message, close code expected)
PROTOCOL_ERRORS = [
    ("unmasked_binary", frame(S100, mask=False), 1002),
    ("unmasked_text", text('{"type":"keepalive"}', mask=False), 1002),
    ("rsv1", frame(S100, rsv=4), 1002),
    ("rsv2", frame(S100, rsv=2), 1002),
    ("rsv3", frame(S100, rsv=1), 1002),
    ("opcode_3", frame(b"x", opcode=0x3), 1002),
    ("opcode_7", frame(b"x", opcode=0x7), 1002),
    ("opcode_b", frame(b"x", opcode=0xB), 1002),
    ("opcode_f", frame(b"x", opcode=0xF), 1002),
    ("continuation_without_start", frame(S100, opcode=0x0), 1002),
    ("new_message_inside_fragmented", text('{"type":', fin=False) + text('"keepalive"}'), 1002),
    ("close_code_1005", frame((1005).to_bytes(2, "big"), opcode=0x8), 1002),
    ("close_code_999", frame((999).to_bytes(2, "big"), opcode=0x8), 1002),
    ("close_code_2000", frame((2000).to_bytes(2, "big"), opcode=0x8), 1002),
    ("text_invalid_utf8", text(b'{"type":"\xff"}'), 1007),
    ("text_truncated_utf8", text(b'{"type":"\xc3'), 1007),
    ("text_overlong_utf8", text(b'{"type":"\xc0\xaf"}'), 1007),
    ("text_surrogate_utf8", text(b'{"type":"\xed\xa0\x80"}'), 1007),
    ("text_invalid_utf8_across_fragments", text(b'{"type":"\xe2\x82', fin=False) + frame(b'"}', opcode=0), 1007),
    ("close_reason_invalid_utf8", frame(b"\x03\xe8\xff", opcode=0x8), 1007),
]

# Errors wslay answers with a close frame without a status code (its frame
# parser's WSLAY_ERR_PROTO; a 1-byte close payload, which it takes for "no
# code"): ws.c writes the 1002 itself (fail_protocol).
FRAME_LEVEL_ERRORS = [
    ("fragmented_ping", frame(b"x", opcode=0x9, fin=False), 1002),
    ("ping_126_bytes", frame(b"p" * 126, opcode=0x9), 1002),
    ("close_126_bytes", frame(b"\x03\xe8" + b"r" * 124, opcode=0x8), 1002),
    ("length_msb_set", frame(b"", length=2 ** 63, ext=127)[:14] + b"\0" * 16, 1002),
    ("length_16bit_not_minimal", frame(b"\0\0", ext=126), 1002),
    ("length_64bit_not_minimal", frame(S100, ext=127), 1002),
    ("close_1_byte_payload", frame(b"\x03", opcode=0x8), 1002),
]
PROTOCOL_ERRORS += FRAME_LEVEL_ERRORS


def run_protocol_error(srv, data, want):
    m0 = srv.metrics()
    ws = RawWS(srv.port)
    sid = ws.session["session_id"]
    ws.send(data)
    code, msgs, eof = ws.close_code(5)
    ws.close()
    assert code == want, "expected close %d, got %r (eof=%s, msgs %s)" % (want, code, eof, h.short(msgs))
    assert eof, "the server did not end the connection"
    assert_counted(srv, m0, {"close_codes.other": 1, "sessions.ended.error": 1, "sessions.total": 1})
    assert_gone(srv, sid)
    assert_serves(srv)


@pytest.mark.parametrize("name,data,want", PROTOCOL_ERRORS, ids=[p[0] for p in PROTOCOL_ERRORS])
def test_ws_protocol_error(srv, name, data, want):
    """A frame the protocol forbids: close 1002 (1007 for invalid UTF-8),
    counted as close_codes.other and sessions.ended.error; the session is
    gone (404 on resume)."""
    run_protocol_error(srv, data, want)


@pytest.mark.parametrize("name,data", [p[:2] for p in FRAME_LEVEL_ERRORS], ids=[p[0] for p in FRAME_LEVEL_ERRORS])
def test_ws_protocol_error_after_messages(srv, name, data):
    """A frame-level error behind a ping and a chunk in the same write: the
    pong and the partial that were due may go out or not, but nothing
    follows the 1002, which comes whole, and the session is gone."""
    m0 = srv.metrics()
    ws = RawWS(srv.port)
    sid = ws.session["session_id"]
    ws.send(frame(b"hi", opcode=0x9) + frame(S100) + data)
    frames, eof = ws.read_until_eof(5 * SLOW)
    ws.close()
    ops = [op for op, _ in frames]
    assert eof and ops and ops[-1] == 0x8 and ops.count(0x8) == 1, frames
    assert close_code_of(frames[-1][1]) == 1002 and len(frames[-1][1]) == 2, frames[-1]
    assert set(ops[:-1]) <= {0x1, 0xA}, frames
    assert_counted(srv, m0, {"close_codes.other": 1, "sessions.ended.error": 1})
    assert_gone(srv, sid)


def test_ws_protocol_error_after_server_close(srv):
    """A frame-level error after the server's own close (1000 after stop):
    no second close frame; the connection ends, the session as stopped."""
    m0 = srv.metrics()
    ws = RawWS(srv.port)
    sid = ws.session["session_id"]
    ws.send(text('{"type":"stop"}'))
    f = None
    while f is None or f[0] != 0x8:
        f = ws.next_frame(5 * SLOW)
        assert f is not None, "no close frame"
    assert close_code_of(f[1]) == 1000, f
    ws.send(frame(b"x", opcode=0x9, fin=False))
    frames, eof = ws.read_until_eof(5 * SLOW)
    ws.close()
    assert eof and frames == [], frames
    assert_counted(srv, m0, {"close_codes.1000": 1, "close_codes.other": 0, "sessions.ended.stop": 1})
    assert_gone(srv, sid)


def test_ws_protocol_error_leaves_server_healthy(srv):
    """Whatever the close, the frame-level errors above never take the
    server down or leak the connection."""
    m0 = srv.metrics()
    for _, data, _ in FRAME_LEVEL_ERRORS:
        ws = RawWS(srv.port)
        ws.send(data)
        ws.read_until_eof(5 * SLOW)
        ws.close()
    h.poll(lambda: h.metric(srv.metrics(), "connections.active") == 1, 5 * SLOW, desc="connections released")
    assert delta(m0, srv.metrics(), "sessions.total") == len(FRAME_LEVEL_ERRORS)
    assert_serves(srv)


def test_ws_control_frames_inside_fragmented_message(srv):
    """Allowed: a ping (and an unsolicited pong) between the fragments of a
    text message is answered with a pong carrying its payload, and the
    message still counts as one audio_chunk; a fragmented binary message is
    one chunk; a 125-byte ping is echoed; empty fragments are fine."""
    m0 = srv.metrics()
    ws = RawWS(srv.port)
    msg = json.dumps({"type": "audio_chunk", "data": h.b64(S100)}).encode()
    ws.send(text(msg[:10], fin=False) + frame(b"ping-1", opcode=0x9) + frame(msg[10:20], opcode=0, fin=False)
            + frame(b"pong?", opcode=0xA) + frame(b"", opcode=0, fin=False) + frame(msg[20:], opcode=0))
    f = ws.next_frame(5 * SLOW)
    assert f == (0xA, b"ping-1"), f
    a = ws.next_json()
    assert a["type"] == "partial" and a["sequence"] == 1, a
    ws.send(frame(S100[:1000], fin=False) + frame(b"P" * 125, opcode=0x9) + frame(S100[1000:2000], opcode=0,
                                                                               fin=False)
            + frame(S100[2000:], opcode=0))
    assert ws.next_frame(5 * SLOW) == (0xA, b"P" * 125)
    a = ws.next_json()
    assert a["type"] == "partial" and a["sequence"] == 2, a
    msgs = stop_and_close(ws)
    assert [m["type"] for m in msgs] == ["final"], msgs
    assert_counted(srv, m0, {"chunks.total": 2, "close_codes.1000": 1, "errors.total": 0})
    assert_serves(srv)


def test_ws_close_inside_fragmented_message(srv):
    """A close frame between fragments is a normal client close: echoed
    with the client's code, the partial message is dropped."""
    m0 = srv.metrics()
    ws = RawWS(srv.port)
    ws.send(text('{"type":"audio_chunk",', fin=False) + frame((4000).to_bytes(2, "big") + b"bye", opcode=0x8))
    code, msgs, eof = ws.close_code(5)
    ws.close()
    assert code == 4000 and msgs == [] and eof, (code, msgs, eof)
    assert_counted(srv, m0, {"chunks.total": 0, "sessions.ended.stop": 1, "close_codes.other": 1,
                             "close_codes.none": 0})
    assert_serves(srv)


# (name, close payload the client sends, close_codes counter of the echo)
CLIENT_CLOSES = [
    ("code_1000", (1000).to_bytes(2, "big"), "close_codes.1000"),
    ("code_1001", (1001).to_bytes(2, "big") + b"going away", "close_codes.1001"),
    ("code_4000", (4000).to_bytes(2, "big"), "close_codes.other"),
    ("no_code", b"", "close_codes.other"),
]


@pytest.mark.parametrize("name,payload,counter", CLIENT_CLOSES, ids=[c[0] for c in CLIENT_CLOSES])
def test_ws_client_close_echo_is_counted(srv, name, payload, counter):
    """close_codes counts the close frames the server sent (API.md), the
    echo of a client's close included: under the echoed code (1005, a close
    without a code, is "other"), never as none."""
    m0 = srv.metrics()
    ws = RawWS(srv.port)
    ws.send(frame(payload, opcode=0x8))
    frames, eof = ws.read_until_eof(5 * SLOW)
    ws.close()
    assert eof and frames == [(0x8, payload)], frames
    assert_counted(srv, m0, {counter: 1, "close_codes.none": 0, "sessions.ended.stop": 1})
    assert_serves(srv)


def test_ws_huge_length_header(srv):
    """Frames announcing 2^62, 2^40, 2^31 and max+1 bytes (with a few bytes
    of payload): close 1009 at once, nothing allocated for them (RSS stays
    put), close_codes.1009 and sessions.ended.too_big count them."""
    m0 = srv.metrics()
    rss0 = h.metric(m0, "process.rss_bytes")
    sizes = [2 ** 62, 2 ** 40, 2 ** 31, 88001]
    for n in sizes:
        ws = RawWS(srv.port)
        ws.send(frame(b"", length=n)[:14] + b"\0" * 1000)
        code, msgs, eof = ws.close_code(5)
        ws.close()
        assert code == 1009 and eof, (n, code, msgs)
    m1 = srv.metrics()
    grew = h.metric(m1, "process.rss_bytes") - rss0
    assert grew < (64 if WRAPPED else 8) * 1024 * 1024, "RSS grew by %d bytes" % grew
    assert_counted(srv, m0, {"close_codes.1009": len(sizes), "sessions.ended.too_big": len(sizes)})
    assert_serves(srv)


def test_ws_fragmented_message_over_limit(srv):
    """The limit is on the message, not the frame: fragments adding up to
    more than max_message_bytes close 1009."""
    m0 = srv.metrics()
    ws = RawWS(srv.port)
    limit = ws.session["limits"]["max_message_bytes"]
    half = limit // 2 + 1
    ws.send(frame(b"\0" * half, fin=False) + frame(b"\0" * half, opcode=0))
    code, msgs, eof = ws.close_code(5)
    ws.close()
    assert code == 1009 and eof, (code, msgs)
    assert_counted(srv, m0, {"close_codes.1009": 1, "chunks.total": 0})
    assert_serves(srv)


def test_ws_message_at_and_over_limit(srv):
    """A binary message of exactly max_message_bytes is read (and refused
    as a chunk: CHUNK_TOO_LARGE, it is more than max_chunk_bytes); one byte
    more closes 1009. A text audio_chunk of exactly max_message_bytes
    (whitespace-padded JSON) is a chunk like any other; one byte more: 1009."""
    m0 = srv.metrics()
    ws = RawWS(srv.port)
    limit = ws.session["limits"]["max_message_bytes"]
    max_chunk = ws.session["limits"]["max_chunk_bytes"]
    assert limit > max_chunk
    ws.send(frame(b"\0" * limit))
    e = ws.next_json()
    assert e["type"] == "error" and e["code"] == "CHUNK_TOO_LARGE" and e["sequence"] == 1, e
    ws.send(frame(b"\0" * (limit + 1)))
    code, msgs, eof = ws.close_code(5)
    ws.close()
    assert code == 1009, (code, msgs)

    def padded(n):
        body = json.dumps({"type": "audio_chunk", "data": h.b64(b"\0" * max_chunk)})
        assert len(body) <= n
        return body[:-1] + " " * (n - len(body)) + "}"

    ws = RawWS(srv.port)
    ws.send(text(padded(limit)))
    a = ws.next_json(10)
    assert a["type"] == "partial" and a["sequence"] == 1, a
    ws.send(text(padded(limit + 1)))
    code, msgs, eof = ws.close_code(5)
    ws.close()
    assert code == 1009, (code, msgs)
    assert_counted(srv, m0, {"close_codes.1009": 2, "errors.CHUNK_TOO_LARGE": 1, "chunks.accepted": 1})
    assert_serves(srv)


# --------------------------------------------------------------------------
# messages: audio and JSON

def test_binary_garbage_as_audio(srv):
    """Random even-length bytes are PCM as far as anyone can tell: a
    partial. Odd byte counts are INVALID_AUDIO (docs/API.md), zero-length
    binary and empty base64 data are INVALID_AUDIO (empty chunk), a
    zero-length text message is INVALID_MESSAGE (not JSON). Refused chunks
    use up their sequence numbers; the invalid message takes none."""
    rnd = random.Random(4)
    garbage = bytes(rnd.getrandbits(8) for _ in range(3200))
    m0 = srv.metrics()

    async def go():
        w, s = await WS.open_session(srv.stream_url)
        got = []
        for data in (garbage, garbage[:3199], b"\x01", b""):
            await w.send_bytes(data)
            got += await w.answers(1)
        await w.send_json({"type": "audio_chunk", "data": ""})
        got += await w.answers(1)
        await w.send_text("")
        got.append(await w.next())
        await w.send_bytes(h.silence(10))
        got += await w.answers(1)
        after = await w.stop()
        return got, after, w.close_code

    got, after, code = arun(go(), 30 * SLOW)
    kinds = [(m["type"], m.get("code"), m.get("sequence")) for m in got if m["type"] != "speech_started"]
    assert kinds == [("partial", None, 1), ("error", "INVALID_AUDIO", 2), ("error", "INVALID_AUDIO", 3),
                     ("error", "INVALID_AUDIO", 4), ("error", "INVALID_AUDIO", 5),
                     ("error", "INVALID_MESSAGE", None), ("partial", None, 6)], kinds
    assert code == 1000
    assert_counted(srv, m0, {"errors.INVALID_AUDIO": 4, "errors.INVALID_MESSAGE": 1, "chunks.total": 6,
                             "chunks.accepted": 2})
    assert_serves(srv)


def test_data_not_base64(srv):
    """`data` that is not standard padded base64: INVALID_AUDIO with the
    chunk's sequence number (it takes a number; docs/API.md)."""
    bad = ["@@@@", "AA AA", "AAAA\n", "AAAA\\n", "AA==AA==", "AAA", "A", "____", "-_-_", "AAF=",
           "\u00c4\u00c4\u00c4\u00c4", "AAAA====", "=AAA", "A" * 400 + "\u00c4\u00c4\u00c4\u00c4",
           "AAAA" * 100 + "\u00ff\u00ff\u00ff\u00ff"]
    m0 = srv.metrics()

    async def go():
        w, s = await WS.open_session(srv.stream_url)
        got = []
        for d in bad:
            if d == "AAAA\\n":
                await w.send_text('{"type":"audio_chunk","data":"AAAA\\n"}')
            else:   # raw UTF-8, as a browser would send it
                await w.send_text(json.dumps({"type": "audio_chunk", "data": d}, ensure_ascii=False))
            got += await w.answers(1)
        after = await w.stop()
        return got, after

    got, after = arun(go(), 30 * SLOW)
    assert [(m["type"], m.get("code"), m.get("sequence")) for m in got] == \
        [("error", "INVALID_AUDIO", i + 1) for i in range(len(bad))], h.short(got, 20)
    assert_counted(srv, m0, {"errors.INVALID_AUDIO": len(bad)})
    assert_serves(srv)


D = h.b64(h.silence(10))
SEQUENCES = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1.5", "5.0", "1e2", '"3"', "true", "false",
             "null", "[1]", "{}", "-1", "-9223372036854775808", "18446744073709551616",
             "18446744073709551615", "9223372036854775808", "99999999999999999999999999"]


def test_sequence_hostile_values(srv):
    """`sequence` values that are not a non-negative integer jansson can
    hold: INVALID_MESSAGE without a sequence, `last` does not move. NaN and
    Infinity are not JSON; 1e999 overflows; 2^63 and above do not fit (the
    server numbers chunks in 63 bits of JSON integer). -0 is the integer 0:
    OUT_OF_ORDER carrying 0. 2^63 - 1 is accepted and the next binary chunk
    is 2^63."""
    m0 = srv.metrics()

    async def go():
        w, s = await WS.open_session(srv.stream_url)
        got = []
        for v in SEQUENCES:
            await w.send_text('{"type":"audio_chunk","data":"%s","sequence":%s}' % (D, v))
            got.append(await w.next())
        await w.send_text('{"type":"audio_chunk","data":"%s","sequence":-0}' % D)
        got.append(await w.next())
        await w.send_bytes(h.silence(10))       # last did not move: this is 1
        got += await w.answers(1)
        await w.send_text('{"type":"audio_chunk","data":"%s","sequence":9223372036854775807}' % D)
        got += await w.answers(1)
        await w.send_bytes(h.silence(10))
        got += await w.answers(1)
        after = await w.stop()
        return got, after, w.close_code

    got, after, code = arun(go(), 30 * SLOW)
    for v, m in zip(SEQUENCES, got):
        assert m["type"] == "error" and m["code"] == "INVALID_MESSAGE" and "sequence" not in m, (v, m)
    oo = got[len(SEQUENCES)]
    assert oo["code"] == "OUT_OF_ORDER" and oo["sequence"] == 0, oo
    tail = [(m["type"], m["sequence"]) for m in got[len(SEQUENCES) + 1:]]
    assert tail == [("partial", 1), ("partial", 2 ** 63 - 1), ("partial", 2 ** 63)], tail
    assert after[-1]["type"] == "final" and after[-1]["sequence"] == 2 ** 63 and code == 1000, after
    assert_counted(srv, m0, {"errors.INVALID_MESSAGE": len(SEQUENCES), "errors.OUT_OF_ORDER": 1})
    assert_serves(srv)


WRONG_TYPES = [
    # type
    '{"type":null}', '{"type":1}', '{"type":1.5}', '{"type":true}', '{"type":["stop"]}', '{"type":{"a":1}}',
    '{"type":""}', '{"type":"STOP"}', '{"type":"stop "}', '{"type":"stop\\u0000x"}', '{}',
    # data
    '{"type":"audio_chunk"}', '{"type":"audio_chunk","data":null}', '{"type":"audio_chunk","data":12}',
    '{"type":"audio_chunk","data":true}', '{"type":"audio_chunk","data":["AAAA"]}',
    '{"type":"audio_chunk","data":{"b64":"AAAA"}}',
    # not an object / not JSON
    '"stop"', 'null', '123', '[{"type":"stop"}]', '{"type":"stop"', '{"type":"stop"} x',
    "{'type':'stop'}", '{"type":"stop",}', '\ufeff{"type":"stop"}',
    # duplicate keys
    '{"type":"keepalive","type":"stop"}',
    '{"type":"audio_chunk","data":"%s","data":"%s"}' % (D, D),
]


def test_wrong_json_types(srv):
    """Every field with every wrong JSON type, non-objects, broken JSON and
    duplicate keys: INVALID_MESSAGE without a sequence; the session goes on
    (a stop after them still gets its final and 1000)."""
    m0 = srv.metrics()

    async def go():
        w, s = await WS.open_session(srv.stream_url)
        got = []
        for t in WRONG_TYPES:
            await w.send_text(t)
            got.append(await w.next())
        after = await w.stop()
        return got, after, w.close_code

    got, after, code = arun(go(), 30 * SLOW)
    for t, m in zip(WRONG_TYPES, got):
        assert m["type"] == "error" and m["code"] == "INVALID_MESSAGE" and "sequence" not in m, (t, m)
    assert [m["type"] for m in after] == ["final"] and code == 1000
    assert_counted(srv, m0, {"errors.INVALID_MESSAGE": len(WRONG_TYPES), "chunks.total": 0})
    assert_serves(srv)


def test_deeply_nested_json(srv):
    """87000 '[' (just under max_message_bytes), objects nested 14000 deep,
    and a keepalive carrying a 5000-deep array: INVALID_MESSAGE (jansson
    stops at depth 2048), no crash, no stall."""
    m0 = srv.metrics()
    msgs = ["[" * 87000, '{"a":' * 14000 + "1" + "}" * 14000,
            '{"type":"keepalive","x":' + "[" * 5000 + "]" * 5000 + "}",
            '{"type":"audio_chunk","data":"%s","x":%s}' % (D, "[" * 40000 + "]" * 40000)]

    async def go():
        w, s = await WS.open_session(srv.stream_url)
        limit = s["limits"]["max_message_bytes"]
        got = []
        for t in msgs:
            assert len(t) <= limit
            await w.send_text(t)
            got.append(await w.next(10 * SLOW))
        await w.send_bytes(h.silence(10))
        got += await w.answers(1)
        await w.stop()
        return got

    got = arun(go(), 30 * SLOW)
    for t, m in zip(msgs, got):
        assert m["type"] == "error" and m["code"] == "INVALID_MESSAGE" and "sequence" not in m, (t[:40], m)
    assert got[-1]["type"] == "partial" and got[-1]["sequence"] == 1
    assert_counted(srv, m0, {"errors.INVALID_MESSAGE": len(msgs)})
    assert_serves(srv)


def test_json_with_10k_keys(srv):
    """An audio_chunk with 10000 extra keys is still one chunk (unknown
    fields are ignored) and is answered at once; the same with one key
    duplicated is INVALID_MESSAGE."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    keys = ['"%s%s%s":0' % (a, b, c) for a in letters for b in letters for c in letters][:10000]
    ok = '{"type":"audio_chunk","data":"%s",%s}' % (D, ",".join(keys))
    dup = '{"type":"audio_chunk","data":"%s",%s,"zzz":1}' % (D, ",".join(keys[:-1] + ['"zzz":0']))
    m0 = srv.metrics()

    async def go():
        w, s = await WS.open_session(srv.stream_url)
        assert len(dup) <= s["limits"]["max_message_bytes"], len(dup)
        t0 = time.monotonic()
        await w.send_text(ok)
        a = await w.answers(1)
        took = time.monotonic() - t0
        await w.send_text(dup)
        e = await w.next()
        await w.stop()
        return a, e, took

    a, e, took = arun(go(), 30 * SLOW)
    assert a[-1]["type"] == "partial" and a[-1]["sequence"] == 1, a
    assert took < 2 * SLOW, "a 10k-key message took %.2f s" % took
    assert e["type"] == "error" and e["code"] == "INVALID_MESSAGE" and "sequence" not in e, e
    assert_counted(srv, m0, {"errors.INVALID_MESSAGE": 1, "chunks.total": 1})
    assert_serves(srv)


def test_zero_length_and_tiny_chunks(srv):
    """Zero-length chunks (binary and base64) are INVALID_AUDIO; a 2-byte
    chunk (one sample) is the smallest valid one; many of them in a burst
    are all answered in order."""
    m0 = srv.metrics()

    async def go():
        w, s = await WS.open_session(srv.stream_url)
        for _ in range(3):
            await w.send_bytes(b"")
        for _ in range(50):
            await w.send_bytes(b"\0\0")
        got = await w.answers(53, 20 * SLOW)
        after = await w.stop()
        return got, after

    got, after = arun(go(), 40 * SLOW)
    ans = [m for m in got if h.is_answer(m)]
    assert [a["sequence"] for a in ans] == list(range(1, 54))
    assert all(a["type"] == "error" and a["code"] == "INVALID_AUDIO" for a in ans[:3]), ans[:3]
    assert all(a["type"] == "partial" for a in ans[3:])
    assert after[-1]["type"] == "final"
    assert_counted(srv, m0, {"errors.INVALID_AUDIO": 3, "chunks.accepted": 50})
    assert_serves(srv)


# --------------------------------------------------------------------------
# text frames on ws.c's fast path (docs/internals/chunk-pipeline.md): a
# whole, final, masked text frame in one read is unmasked a word at a time
# and its UTF-8 checked by ws.c, not wslay. The answers must be wslay's: the
# cases put the edges where a word-wise loop could go wrong (a sequence
# across an 8-byte word boundary, an error in the last bytes after the last
# whole word, 7-bit and 16-bit lengths).

def chunk_json(ms=100, extra=""):
    return '{"type":"audio_chunk","data":"%s"%s}' % (h.b64(h.silence(ms)), extra)


# (name, payload of one text frame); each is invalid UTF-8 and closes 1007.
# The offsets are counted in the payload, which is unmasked in 8-byte words.
FAST_TEXT_INVALID = [
    ("bad_byte_last_of_word", b'{"type"\xff:"keepalive"}'),
    ("bad_byte_first_of_word", b'{"type":\xff"keepalive"}'),
    ("three_byte_cut_at_word_boundary", b'{"type"\xe2\x82:"keepalive"}'),
    ("four_byte_cut_at_word_boundary", b'{"type\xf0\x9f\x98":"keepalive"}'),
    ("overlong_across_words", b'{"type"\xc0\xaf:"keepalive"}'),
    ("surrogate_across_words", b'{"type\xed\xa0\x80":"keepalive"}'),
    ("above_10ffff_across_words", b'{"type\xf4\x90\x80\x80":"keepalive"}'),
    ("stray_continuation_after_valid", b'{"type":"keepalive","x":"\xc3\xa9\x80"}'),
    ("truncated_in_tail_bytes", b'{"type":"keepalive","x":"' + b"a" * 3 + b'"}\xc3'),
    ("truncated_at_end_16bit_length", b'{"type":"keepalive","x":"' + b"a" * 200 + b'"}\xf0\x9f\x98'),
    ("bad_byte_mid_16bit_length", b'{"type":"keepalive","x":"' + b"a" * 100 + b"\xfe" + b"a" * 100 + b'"}'),
]


@pytest.mark.parametrize("name,payload", FAST_TEXT_INVALID, ids=[c[0] for c in FAST_TEXT_INVALID])
def test_ws_fast_text_invalid_utf8(srv, name, payload):
    """Invalid UTF-8 wherever it sits relative to the unmasking words: close
    1007, counted as close_codes.other and sessions.ended.error, as wslay
    answers it."""
    run_protocol_error(srv, text(payload), 1007)


def test_ws_fast_text_valid_utf8_across_words(srv):
    """Valid 2-, 3- and 4-byte sequences at every offset around a word
    boundary (and U+10FFFF, U+FFFF, the last code points before the
    surrogates) are accepted: each audio_chunk is a chunk, answered in
    order, nothing closes."""
    m0 = srv.metrics()
    ws = RawWS(srv.port)
    chars = ["\u00e9", "\u20ac", "\U0001F600", "\U0010FFFF", "\uFFFF", "\uD7FF"]
    msgs = []
    for i, ch in enumerate(chars):
        for pad in range(8):
            msgs.append(chunk_json(10, ',"x":"%s%s"' % ("a" * pad, ch)))
    ws.send(b"".join(text(m.encode("utf-8")) for m in msgs))
    got = [ws.next_json(10) for _ in msgs]
    assert [(m["type"], m["sequence"]) for m in got] == [("partial", i + 1) for i in range(len(msgs))], h.short(got)
    after = stop_and_close(ws)
    assert [m["type"] for m in after] == ["final"], after
    assert_counted(srv, m0, {"chunks.accepted": len(msgs), "errors.total": 0, "close_codes.1000": 1})


def test_ws_fast_text_then_ping_in_one_write(srv):
    """A text chunk, a ping and another text chunk in one write (the fast
    path hands the ping and all after it to wslay), and a ping before two
    text chunks (wslay takes the whole read): each ping gets its pong, each
    chunk its partial, in order."""
    m0 = srv.metrics()
    ws = RawWS(srv.port)
    c = chunk_json()
    ws.send(text(c) + frame(b"ping-a", opcode=0x9) + text(c))
    ws.send(frame(b"ping-b", opcode=0x9) + text(c) + text(c))
    pongs, parts = [], []
    while len(parts) < 4:
        f = ws.next_frame(10 * SLOW)
        assert f is not None, (pongs, parts)
        if f[0] == 0xA:
            pongs.append(f[1])
        else:
            assert f[0] == 0x1, f
            parts.append(json.loads(f[1]))
    assert pongs == [b"ping-a", b"ping-b"], pongs
    assert [(m["type"], m["sequence"]) for m in parts] == [("partial", i) for i in range(1, 5)], h.short(parts)
    stop_and_close(ws)
    assert_counted(srv, m0, {"chunks.accepted": 4, "errors.total": 0})


def test_ws_fast_text_pipelined_behind_binary(srv):
    """Binary and text chunks mixed in one write, a keepalive among them,
    then a text frame split across two writes followed by whole ones: every
    chunk answered once, in order."""
    m0 = srv.metrics()
    ws = RawWS(srv.port)
    b = frame(h.silence(100))
    t = text(chunk_json())
    ws.send(b + t + text('{"type":"keepalive"}') + t + b + t)
    got = [ws.next_json(10) for _ in range(5)]
    assert [(m["type"], m["sequence"]) for m in got] == [("partial", i) for i in range(1, 6)], h.short(got)
    ws.send(t[:37])
    time.sleep(0.2 * SLOW)
    ws.send(t[37:] + t + b)
    got = [ws.next_json(10) for _ in range(3)]
    assert [(m["type"], m["sequence"]) for m in got] == [("partial", i) for i in range(6, 9)], h.short(got)
    stop_and_close(ws)
    assert_counted(srv, m0, {"chunks.accepted": 8, "errors.total": 0})


def test_ws_fast_text_invalid_behind_good_frames(srv):
    """Two chunks (binary, text) and then an audio_chunk with invalid UTF-8,
    all in one write: the first two reach the session, the third does not,
    and the connection closes 1007."""
    m0 = srv.metrics()
    ws = RawWS(srv.port)
    ws.send(frame(h.silence(100)) + text(chunk_json()) + text(chunk_json(100, ',"x":"\xff"').encode("latin-1")))
    code, msgs, eof = ws.close_code(5)
    ws.close()
    assert code == 1007 and eof, (code, msgs)
    assert_counted(srv, m0, {"chunks.total": 2, "close_codes.other": 1, "sessions.ended.error": 1})
    assert_serves(srv)


def test_ws_fast_text_at_and_over_a_small_limit(start_server):
    """With max_message_bytes below 64 KiB the cap is met by frames with a
    16-bit length, which the fast path takes: a text audio_chunk of exactly
    the cap is a chunk, one byte more closes 1009 (sessions.ended.too_big);
    the same for binary."""
    limit = 4000
    srv = start_server(ASR_MAX_MESSAGE_BYTES=limit, ASR_MOCK_LATENCY_MS=5)
    m0 = srv.metrics()

    def padded(n):
        body = chunk_json(50)
        assert len(body) <= n
        return body[:-1] + " " * (n - len(body)) + "}"

    ws = RawWS(srv.port)
    assert ws.session["limits"]["max_message_bytes"] == limit
    ws.send(text(padded(limit)) + frame(b"\0" * limit))
    got = [ws.next_json(10) for _ in range(2)]
    assert [(m["type"], m["sequence"]) for m in got] == [("partial", 1), ("partial", 2)], h.short(got)
    ws.send(text(padded(limit + 1)))
    code, msgs, eof = ws.close_code(5)
    ws.close()
    assert code == 1009 and eof, (code, msgs)

    ws = RawWS(srv.port)
    ws.send(frame(b"\0" * (limit + 1)))
    code, msgs, eof = ws.close_code(5)
    ws.close()
    assert code == 1009 and eof, (code, msgs)
    assert_counted(srv, m0, {"chunks.accepted": 2, "close_codes.1009": 2, "sessions.ended.too_big": 2})
    assert_serves(srv)
