"""REST (docs/API.md "REST"): POST /v1/transcribe and its refusals, HTTP/1.1
framing (chunked, keep-alive, limits)."""

import pytest
import requests

import asrd_harness as h

T = 30


def post(srv, body, ctype=None, **kw):
    headers = kw.pop("headers", {})
    if ctype:
        headers["Content-Type"] = ctype
    return requests.post(srv.http + "/v1/transcribe", data=body, headers=headers, timeout=T, **kw)


def check_ok(r, duration_ms=None, speech=True):
    assert r.status_code == 200, (r.status_code, r.text[:300])
    assert r.headers.get("Content-Type", "").startswith("application/json"), r.headers
    doc = r.json()
    assert isinstance(doc.get("text"), str), doc
    assert isinstance(doc.get("duration_ms"), int), doc
    assert isinstance(doc.get("segments"), list), doc
    if duration_ms is not None:
        assert abs(doc["duration_ms"] - duration_ms) <= 50, (doc["duration_ms"], duration_ms)
    prev_end = -1
    for seg in doc["segments"]:
        assert isinstance(seg.get("start_ms"), int) and isinstance(seg.get("end_ms"), int), seg
        assert isinstance(seg.get("text"), str), seg
        assert seg["start_ms"] < seg["end_ms"], seg
        assert seg["start_ms"] >= prev_end, doc["segments"]
        assert seg["end_ms"] <= doc["duration_ms"], (seg, doc["duration_ms"])
        prev_end = seg["end_ms"]
    if speech:
        assert doc["text"], "no text for speech: %r" % doc
        assert doc["segments"], "no segment for speech: %r" % doc
        assert "  " not in doc["text"] and doc["text"] == doc["text"].strip(), doc
    return doc


def wav_ms(name):
    rate, ch, frames = h.wav_info(h.read_bytes(name))
    return frames * 1000 // rate


@pytest.mark.parametrize("name", ["speech16k.wav", "speech44k_stereo.wav", "speech8k.wav"])
@pytest.mark.parametrize("ctype", ["audio/wav", None, "application/octet-stream"])
def test_transcribe_wav(server, name, ctype):
    r = post(server, h.read_bytes(name), ctype)
    check_ok(r, wav_ms(name))


def test_raw_pcm_matches_wav(server):
    wav = check_ok(post(server, h.read_bytes("speech16k.wav"), "audio/wav"))
    pcm = h.speech_pcm()
    ms = len(pcm) // 2 * 1000 // 16000
    raw = check_ok(post(server, pcm, "audio/pcm; rate=16000"), ms)
    l16 = check_ok(post(server, h.byteswap16(pcm), "audio/L16; rate=16000"), ms)
    assert raw["text"] == wav["text"], (raw, wav)
    assert l16["text"] == wav["text"], (l16, wav)
    assert raw["segments"] == wav["segments"] and l16["segments"] == wav["segments"]


def test_silence(server):
    doc = check_ok(post(server, h.read_bytes("silence16k.wav"), "audio/wav"), 2000, speech=False)
    assert doc["text"] == "" and doc["segments"] == [], doc
    doc = check_ok(post(server, h.silence(1000), "audio/pcm; rate=16000"), 1000, speech=False)
    assert doc["text"] == "" and doc["segments"] == [], doc


def test_empty_body_400(server):
    h.assert_json_error(post(server, b"", "audio/wav"), 400)
    h.assert_json_error(post(server, b""), 400)


@pytest.mark.parametrize("ctype", ["audio/pcm", "audio/L16", "audio/pcm; channels=1"])
def test_raw_pcm_without_rate_400(server, ctype):
    h.assert_json_error(post(server, h.silence(100), ctype), 400)


@pytest.mark.parametrize("ctype", [None, "application/octet-stream", "audio/wav", "text/plain",
                                   "audio/mpeg"])
def test_not_audio_415(server, ctype):
    garbage = bytes((i * 37 + 11) % 256 for i in range(5000))
    h.assert_json_error(post(server, garbage, ctype), 415)


def test_upload_limit_413(start_server):
    srv = start_server(ASR_MAX_UPLOAD_BYTES=100000)
    small = h.read_bytes("speech16k.wav")          # 72 KB
    big = h.read_bytes("speech44k_stereo.wav")     # 400 KB
    assert len(small) < 100000 < len(big)
    check_ok(post(srv, small, "audio/wav"))
    # Content-Length over the limit (raw socket: the server may answer
    # before reading the body)
    r = h.raw_request(srv.port, "POST", "/v1/transcribe",
                      {"Content-Type": "audio/wav", "Content-Length": str(len(big))}, big)
    h.assert_json_error(r, 413)
    # chunked, over the limit as sent
    body = b""
    for i in range(0, len(big), 8192):
        part = big[i:i + 8192]
        body += b"%x\r\n" % len(part) + part + b"\r\n"
    body += b"0\r\n\r\n"
    r = h.raw_request(srv.port, "POST", "/v1/transcribe",
                      {"Content-Type": "audio/wav", "Transfer-Encoding": "chunked"}, body)
    h.assert_json_error(r, 413)
    # the server is fine afterwards
    check_ok(post(srv, small, "audio/wav"))


def test_method_not_allowed_405(server):
    r = requests.get(server.http + "/v1/transcribe", timeout=T)
    h.assert_json_error(r, 405)
    r = requests.post(server.http + "/v1/health", data=b"x", timeout=T)
    h.assert_json_error(r, 405)


@pytest.mark.parametrize("path", ["/nope/", "/nope", "/v1/transcribe/nope", "/v2/transcribe"])
def test_unknown_path_404(server, path):
    # "/" is the page (test_web.py); a path no route has is one of its files, or 404
    h.assert_json_error(requests.get(server.http + path, timeout=T), 404)


def test_length_required_411(server):
    with h.RawConn(server.port) as c:
        c.send(b"POST /v1/transcribe HTTP/1.1\r\nHost: x\r\nContent-Type: audio/wav\r\n\r\n")
        r = c.read_response()
    h.assert_json_error(r, 411)


def test_chunked_upload(server):
    wav = h.read_bytes("speech16k.wav")
    ref = check_ok(post(server, wav, "audio/wav"))

    def gen():
        for i in range(0, len(wav), 5000):
            yield wav[i:i + 5000]
    r = requests.post(server.http + "/v1/transcribe", data=gen(),
                      headers={"Content-Type": "audio/wav"}, timeout=T)
    assert r.request.headers.get("Transfer-Encoding") == "chunked"
    doc = check_ok(r, wav_ms("speech16k.wav"))
    assert doc["text"] == ref["text"]


def test_header_too_large_431(server):
    big = "a" * 20000
    r = h.raw_request(server.port, "GET", "/v1/health", {"X-Big": big})
    h.assert_json_error(r, 431)
    # just under the limit is fine
    r = h.raw_request(server.port, "GET", "/v1/health", {"X-Big": "a" * 12000})
    assert r.status == 200, r


@pytest.mark.parametrize("line", [b"NOT A REQUEST\r\n\r\n",
                                  b"GET /v1/health HTTP/9.9 extra\r\n\r\n",
                                  b"\x00\x01\x02garbage\r\n\r\n"])
def test_malformed_request_400(server, line):
    with h.RawConn(server.port) as c:
        c.send(line)
        r = c.read_response()
    h.assert_json_error(r, 400)


def test_keep_alive_requests_session(server):
    wav = h.read_bytes("speech16k.wav")
    with requests.Session() as s:
        for i in range(3):
            r = s.get(server.http + "/v1/health", timeout=T)
            assert r.status_code == 200
            assert int(r.headers["Content-Length"]) == len(r.content)
            r = s.post(server.http + "/v1/transcribe", data=wav,
                       headers={"Content-Type": "audio/wav"}, timeout=T)
            assert r.status_code == 200
            assert int(r.headers["Content-Length"]) == len(r.content)
            r = s.get(server.http + "/v1/nope", timeout=T)
            assert r.status_code == 404
            assert int(r.headers["Content-Length"]) == len(r.content)


def test_keep_alive_raw_socket(server):
    pcm = h.silence(500)
    with h.RawConn(server.port) as c:
        # one after the other
        for _ in range(3):
            c.send(h.build_request("GET", "/v1/health"))
            r = c.read_response()
            assert r.status == 200 and "content-length" in r.headers, r
            assert r.json()["status"] == "ok"
        c.send(h.build_request("POST", "/v1/transcribe",
                               {"Content-Type": "audio/pcm; rate=16000",
                                "Content-Length": str(len(pcm))}, pcm))
        r = c.read_response()
        assert r.status == 200 and r.json()["duration_ms"] == 500, r
        # pipelined: two requests in one write, answered in order
        c.send(h.build_request("GET", "/v1/health") + h.build_request("GET", "/v1/nope"))
        r1 = c.read_response()
        r2 = c.read_response()
        assert r1.status == 200 and r2.status == 404, (r1, r2)
        h.assert_json_error(r2, 404)
        # an error answer does not end the connection
        c.send(h.build_request("GET", "/v1/health"))
        assert c.read_response().status == 200
        # Connection: close is honoured
        c.send(h.build_request("GET", "/v1/health", {"Connection": "close"}))
        assert c.read_response().status == 200
        assert c.at_eof(5), "the server kept the connection after Connection: close"


def test_http10_closes(server):
    with h.RawConn(server.port) as c:
        c.send(b"GET /v1/health HTTP/1.0\r\n\r\n")
        r = c.read_response()
        assert r.status == 200, r
        assert c.at_eof(5)
