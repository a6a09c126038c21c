"""Refused and accepted WebSocket upgrades (docs/API.md "Streaming": query
parameters, API keys, allowed origins, 404/409/503)."""
import asyncio
import base64
import hashlib

import pytest
import requests

import asrd_harness as h
from asrd_harness import WS, arun


@pytest.mark.parametrize("query", ["?sample_rate=7999", "?sample_rate=96001", "?sample_rate=abc", "?sample_rate=",
                                   "?sample_rate=0", "?encoding=mp3", "?encoding=pcm_f32le"])
def test_bad_parameter_400(server, query):
    r = h.raw_upgrade(server.port, query)
    h.assert_json_error(r, 400)
    status, _ = h.ws_refusal_status(server.stream_url, query)
    assert status == 400


@pytest.mark.parametrize("rate", [8000, 16000, 32000, 48000])
def test_supported_rates(server, rate):
    async def go():
        w, s = await WS.open_session(server.stream_url, "?sample_rate=%d&encoding=pcm_s16le" % rate)
        # 100 ms at this rate
        await w.send_bytes(b"\0" * (rate * 2 // 10))
        a = await w.answers(1)
        after = await w.stop()
        return s, a, after, w.close_code

    s, a, after, code = arun(go())
    assert s["sample_rate"] == rate, s
    assert s["limits"]["max_audio_rate_bytes_per_sec"] == 4 * rate, s   # 2x real time
    assert a[-1]["type"] == "partial" and a[-1]["sequence"] == 1
    assert after[-1]["type"] == "final" and after[-1]["end_ms"] == 100, after
    assert code == 1000


@pytest.mark.parametrize("rate", [11025, 22050, 44100, 96000])
def test_other_rates_are_resampled(server, rate):
    """Rates the VAD does not take (44.1 kHz is what browsers capture) are
    resampled to 16 kHz: a second of silence ends about a second in (the
    resampler holds back its filter delay, up to ~60 ms at 96 kHz)."""
    async def go():
        w, s = await WS.open_session(server.stream_url, "?sample_rate=%d" % rate)
        for _ in range(10):
            await w.send_bytes(b"\0" * (rate // 10 * 2))
        a = await w.answers(10)
        after = await w.stop()
        return s, a, after, w.close_code

    s, a, after, code = arun(go())
    assert s["sample_rate"] == rate, s
    assert s["limits"]["max_audio_rate_bytes_per_sec"] == 4 * rate, s
    assert [x["sequence"] for x in a if x["type"] == "partial"] == list(range(1, 11))
    assert after[-1]["type"] == "final" and 900 <= after[-1]["end_ms"] <= 1000, after
    assert code == 1000


def test_accept_header(server):
    key = base64.b64encode(b"0123456789abcdef").decode()
    r = h.raw_upgrade(server.port, headers={"Sec-WebSocket-Key": key})
    assert r.status == 101, r
    want = base64.b64encode(hashlib.sha1(
        (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
    assert r.headers.get("sec-websocket-accept") == want, r.headers
    assert r.headers.get("upgrade", "").lower() == "websocket", r.headers


def test_unknown_session_404(server):
    r = h.raw_upgrade(server.port, "?session_id=no-such-session-0123456789")
    h.assert_json_error(r, 404, "SESSION_NOT_FOUND")
    status, _ = h.ws_refusal_status(server.stream_url, "?session_id=nope")
    assert status == 404


def test_session_busy_409(server):
    async def go():
        w, s = await WS.open_session(server.stream_url)
        r = await asyncio.get_running_loop().run_in_executor(
            None, h.raw_upgrade, server.port, "?session_id=" + s["session_id"])
        # the first connection is untouched
        await w.send_bytes(h.silence(100))
        a = await w.answers(1)
        after = await w.stop()
        return r, a, after, w.close_code

    r, a, after, code = arun(go())
    h.assert_json_error(r, 409, "SESSION_BUSY")
    assert a[-1]["type"] == "partial" and a[-1]["sequence"] == 1
    assert code == 1000


def test_api_keys(start_server):
    srv = start_server(ASR_API_KEYS="k1,k2")
    # refused: no key, wrong key in each place
    for query, headers in [("", None),
                           ("", {"Authorization": "Bearer nope"}),
                           ("", {"Authorization": "Bearer k3"}),
                           ("", {"X-API-Key": "k12"}),
                           ("?api_key=wrong", None),
                           ("?api_key=", None)]:
        r = h.raw_upgrade(srv.port, query, headers)
        h.assert_json_error(r, 401)
    status, _ = h.ws_refusal_status(srv.stream_url)
    assert status == 401

    # accepted: each of the three places
    async def ok(query, headers):
        w, s = await WS.open_session(srv.stream_url, query, headers)
        await w.stop()
        return s, w.close_code

    for query, headers in [("", {"Authorization": "Bearer k1"}),
                           ("", {"X-API-Key": "k2"}),
                           ("?api_key=k1", None),
                           ("?sample_rate=16000&api_key=k2", None)]:
        s, code = arun(ok(query, headers))
        assert s["type"] == "session" and code == 1000, (query, headers)

    # REST is guarded too; health and metrics stay open
    wav = h.read_bytes("speech16k.wav")
    r = requests.post(srv.http + "/v1/transcribe", data=wav,
                      headers={"Content-Type": "audio/wav"}, timeout=30)
    h.assert_json_error(r, 401)
    r = requests.post(srv.http + "/v1/transcribe", data=wav,
                      headers={"Content-Type": "audio/wav", "Authorization": "Bearer k2"},
                      timeout=30)
    assert r.status_code == 200, r.text
    assert requests.get(srv.http + "/v1/health", timeout=10).status_code == 200
    assert requests.get(srv.http + "/v1/metrics", timeout=10).status_code == 200
    assert requests.get(srv.http + "/metrics", timeout=10).status_code == 200


def test_allowed_origins(start_server):
    """docs/API.md "Authentication": with ASR_ALLOWED_ORIGINS set, an upgrade
    whose Origin is not listed is refused with 403 ORIGIN_NOT_ALLOWED (and
    counted under requests.by_route.stream.403); listed origins and requests
    without Origin pass; REST is not concerned."""
    srv = start_server(ASR_ALLOWED_ORIGINS="https://app.example.com, http://localhost:3000")
    m0 = srv.metrics()
    refused = 0
    for origin in ["https://evil.example.com", "http://app.example.com", "https://app.example.com:443",
                   "https://app.example.com.evil.example", "null"]:
        r = h.raw_upgrade(srv.port, "", {"Origin": origin})
        h.assert_json_error(r, 403, "ORIGIN_NOT_ALLOWED")
        refused += 1
    status, _ = h.ws_refusal_status(srv.stream_url, "", {"Origin": "https://evil.example.com"})
    assert status == 403
    refused += 1
    m1 = srv.metrics()
    assert h.metric(m1, "requests.by_route.stream.403", 0) - h.metric(m0, "requests.by_route.stream.403", 0) \
        == refused, m1["requests"]
    assert h.metric(m1, "sessions.total", 0) == h.metric(m0, "sessions.total", 0), m1.get("sessions")

    # listed (either entry, spaces around it ignored, case of scheme and
    # host not significant), or no Origin at all (not a browser)
    for headers in [{"Origin": "https://app.example.com"}, {"Origin": "http://localhost:3000"},
                    {"Origin": "HTTPS://App.Example.com"}, None]:
        r = h.raw_upgrade(srv.port, "", headers)
        assert r.status == 101, (headers, r)

    async def ok(headers):
        w, s = await WS.open_session(srv.stream_url, "", headers)
        await w.stop()
        return s, w.close_code

    for headers in [{"Origin": "https://app.example.com"}, None]:
        s, code = arun(ok(headers))
        assert s["type"] == "session" and code == 1000, headers

    # the allowlist guards the WebSocket endpoint only
    r = requests.post(srv.http + "/v1/transcribe", data=h.read_bytes("speech16k.wav"),
                      headers={"Content-Type": "audio/wav", "Origin": "https://evil.example.com"}, timeout=30)
    assert r.status_code == 200, r.text


def test_allowed_origins_star_and_default(server, start_server):
    """`*` lets every Origin through, and so does the default (empty: off)."""
    srv = start_server(ASR_ALLOWED_ORIGINS="*")
    for s in (srv, server):
        for origin in ["https://evil.example.com", "null"]:
            r = h.raw_upgrade(s.port, "", {"Origin": origin})
            assert r.status == 101, (origin, r)
        status, _ = h.ws_refusal_status(s.stream_url, "", {"Origin": "https://evil.example.com"})
        assert status == 101


def test_session_limit_503(start_server):
    srv = start_server(ASR_MAX_SESSIONS_PER_WORKER=2)

    async def go():
        w1, s1 = await WS.open_session(srv.stream_url)
        w2, s2 = await WS.open_session(srv.stream_url)
        loop = asyncio.get_running_loop()
        r = await loop.run_in_executor(None, h.raw_upgrade, srv.port, "")
        st, hdrs = await loop.run_in_executor(None, h.ws_refusal_status, srv.stream_url, "", None)
        health = await loop.run_in_executor(None, srv.health)
        # the open sessions still work
        await w1.send_bytes(h.silence(100))
        a1 = await w1.answers(1)
        await w1.stop()
        await w2.stop()
        return r, st, hdrs, health, a1

    r, st, hdrs, health, a1 = arun(go())
    h.assert_json_error(r, 503)
    ra = r.headers.get("retry-after")
    assert ra is not None and ra.isdigit(), "503 without a Retry-After in seconds: %r" % r.headers
    assert st == 503 and hdrs.get("Retry-After"), (st, hdrs)
    # every slot held by a live session: new clients get 503, and health
    # says so (docs/API.md "GET /v1/health")
    assert health["status"] == "degraded" and health["degraded"] == ["session_limit"], health
    assert health["active_sessions"] == 2, health
    assert health["capacity"]["max_sessions"] == 2, health
    assert health["capacity"]["free_sessions"] == 0, health
    assert a1[-1]["type"] == "partial"

    # ended sessions free their places
    async def again():
        w, s = await WS.open_session(srv.stream_url)
        await w.stop()
        return w.close_code

    def third_ok():
        try:
            return arun(again(), 10) == 1000
        except Exception:
            return False
    h.poll(third_ok, 5, 0.2, desc="a new session after two ended")
    h.poll(lambda: srv.health()["capacity"]["free_sessions"] == 2, 5, desc="free_sessions back to 2")


def test_health_during_streaming(server):
    async def go():
        w, s = await WS.open_session(server.stream_url)
        hl = await asyncio.get_running_loop().run_in_executor(None, server.health)
        await w.stop()
        return hl

    hl = arun(go())
    assert hl["status"] == "ok" and hl["active_sessions"] >= 1, hl
