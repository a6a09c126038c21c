"""Browsers: the page at / (static files), CORS and access tokens (docs/API.md
"Browsers: CORS, tokens and the page"). Every refusal is checked for its
status, its code and its count in /v1/metrics. The browser itself (Chromium
through playwright-core) is tests/integration/node/web.test.js."""
import asyncio
import base64
import json
import os
import subprocess
import time

import pytest
import requests

import asrd_harness as h
import jobs_util as ju
from asrd_harness import WS, arun

KEY = "web-test-key-1"
SECRET = "a token secret shared by the instances"
WEB = os.path.join(h.REPO, "web")


def mint(srv, key=KEY, body=b"{}", headers=None):
    hs = {"Content-Type": "application/json"}
    if key is not None:
        hs["Authorization"] = "Bearer " + key
    hs.update(headers or {})
    return requests.post(srv.http + "/v1/auth/token", data=body, headers=hs, timeout=10)


def token(srv, key=KEY, **fields):
    r = mint(srv, key, json.dumps(fields).encode())
    assert r.status_code == 200, r.text
    return r.json()["token"]


def rest(srv, tok=None, headers=None):
    hs = {"Content-Type": "audio/wav"}
    if tok:
        hs["Authorization"] = "Bearer " + tok
    hs.update(headers or {})
    return requests.post(srv.http + "/v1/transcribe", data=h.read_bytes("speech16k.wav"), headers=hs, timeout=30)


def openai(srv, tok=None):
    hs = {"Authorization": "Bearer " + tok} if tok else {}
    files = {"file": ("speech.wav", h.read_bytes("speech16k.wav"), "audio/wav")}
    return requests.post(srv.http + "/v1/audio/transcriptions", files=files, data={"model": "x"}, headers=hs,
                         timeout=30)


def delta(m1, m0, name):
    return h.metric(m1, name, 0) - h.metric(m0, name, 0)


# --------------------------------------------------------------------------
# the page

def test_page_is_served_with_types_and_revalidation(server):
    """GET / is web/index.html; the scripts and the stylesheet have their
    types; answers carry an ETag and Cache-Control: no-cache, and the same
    ETag in If-None-Match gets 304 without a body."""
    m0 = server.metrics()
    r = requests.get(server.http + "/", timeout=10)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    assert r.headers["Cache-Control"] == "no-cache"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    with open(os.path.join(WEB, "index.html"), "rb") as f:
        assert r.content == f.read()
    assert b'src="app.js"' in r.content
    for name, ctype in [("app.js", "text/javascript; charset=utf-8"), ("worklet.js", "text/javascript; charset=utf-8"),
                        ("style.css", "text/css; charset=utf-8"), ("index.html", "text/html; charset=utf-8")]:
        r = requests.get(server.http + "/" + name, timeout=10)
        assert r.status_code == 200 and r.headers["Content-Type"] == ctype, (name, r.status_code, r.headers)
        etag = r.headers["ETag"]
        r2 = requests.get(server.http + "/" + name, headers={"If-None-Match": etag}, timeout=10)
        assert r2.status_code == 304 and r2.content == b"" and r2.headers["ETag"] == etag, (name, r2.headers)
        assert "Content-Length" not in r2.headers
    r = h.raw_request(server.port, "HEAD", "/app.js")
    assert r.status == 200 and r.body == b"" and int(r.headers["content-length"]) > 0
    m1 = server.metrics()
    assert delta(m1, m0, "requests.by_route.web.200") == 6
    assert delta(m1, m0, "requests.by_route.web.304") == 4


@pytest.mark.parametrize("path", [
    "/../README.md", "/..%2fREADME.md", "/%2e%2e/README.md", "/web/../README.md", "/./index.html",
    "//etc/passwd", "/.gitignore", "/%2Fetc%2Fpasswd", "/index.html%00.js", "/../../../../etc/passwd",
    "/nope.js", "/app.js/", "/\\..\\README.md",
])
def test_page_paths_do_not_escape(server, path):
    """Paths outside the rules (dots, percent-encoding, hidden files) or
    outside web/ are 404, sent as raw bytes so that no client tidies them."""
    r = h.raw_request(server.port, "GET", path)
    h.assert_json_error(r, 404, "NOT_FOUND")
    assert b"root:" not in r.body


def test_page_symlink_out_of_the_directory(start_server, tmp_path):
    """A link inside ASR_WEB_DIR that points outside it is not followed; one
    that stays inside is."""
    d = tmp_path / "web"
    d.mkdir()
    (d / "index.html").write_text("<p>mine</p>")
    (d / "inside.html").symlink_to("index.html")
    (d / "outside.txt").symlink_to("/etc/passwd")
    (d / "up").symlink_to("..")
    (tmp_path / "secret.txt").write_text("secret")
    srv = start_server(ASR_WEB_DIR=str(d))
    assert requests.get(srv.http + "/", timeout=10).text == "<p>mine</p>"
    assert requests.get(srv.http + "/inside.html", timeout=10).text == "<p>mine</p>"
    for p in ["/outside.txt", "/up/secret.txt"]:
        r = requests.get(srv.http + p, timeout=10)
        assert r.status_code == 404 and b"secret" not in r.content and b"root:" not in r.content, p
    # what counts is where a path really leads: back inside is inside
    assert requests.get(srv.http + "/up/web/index.html", timeout=10).text == "<p>mine</p>"


def test_page_off_and_bad_dir(start_server):
    """ASR_WEB_DIR=off serves no page; a directory that does not exist stops
    the start with exit 2 and names the setting."""
    srv = start_server(ASR_WEB_DIR="off")
    h.assert_json_error(h.raw_request(srv.port, "GET", "/"), 404, "NOT_FOUND")
    env = h.base_env({"ASR_PORT": h.free_port(), "ASR_WORKERS": 1, "ASR_REDIS_URL": "memory",
                      "ASR_WEB_DIR": "/nonexistent/asrd-web"})
    p = subprocess.run([h.asrd_bin()], env=env, capture_output=True, timeout=30)
    assert p.returncode == 2, p
    assert b"ASR_WEB_DIR" in p.stderr, p.stderr


# --------------------------------------------------------------------------
# CORS

APP = "https://app.example"


def preflight(srv, path, origin, method="POST", req_headers="authorization, content-type"):
    hs = {"Origin": origin, "Access-Control-Request-Method": method}
    if req_headers:
        hs["Access-Control-Request-Headers"] = req_headers
    return h.raw_request(srv.port, "OPTIONS", path, hs)


def test_cors_off_by_default(server):
    """Without ASR_CORS_ORIGINS nothing says a browser may read an answer
    from another origin: a preflight is 405 (or 404), answers have no CORS
    headers, and requests from any origin are served as before."""
    r = preflight(server, "/v1/transcribe", APP)
    h.assert_json_error(r, 405, "METHOD_NOT_ALLOWED")
    assert not any(k.startswith("access-control") for k in r.headers), r.headers
    r = rest(server, headers={"Origin": APP})
    assert r.status_code == 200
    assert "Access-Control-Allow-Origin" not in r.headers and "Vary" not in r.headers


def test_cors_preflight_and_answers(start_server):
    """A listed origin: the preflight is 204 with the route's methods, the
    headers a page may send and Max-Age; the answer names the origin and the
    headers the page may read; errors too, so that the page can read them."""
    srv = start_server(ASR_CORS_ORIGINS="http://localhost:3000, " + APP, ASR_CORS_MAX_AGE_S=120,
                       ASR_API_KEYS=KEY)
    m0 = srv.metrics()
    for path, method in [("/v1/transcribe", "POST"), ("/v1/auth/token", "POST"),
                         ("/v1/audio/transcriptions", "POST"), ("/v1/health", "GET"), ("/app.js", "GET"),
                         ("/v1/health", "HEAD")]:
        r = preflight(srv, path, APP, method)
        assert r.status == 204, (path, r)
        assert r.headers["access-control-allow-origin"] == APP
        assert r.headers["access-control-allow-methods"] == ("GET, HEAD" if method in ("GET", "HEAD") else method)
        allow = [x.strip().lower() for x in r.headers["access-control-allow-headers"].split(",")]
        assert {"authorization", "content-type", "x-api-key", "x-request-id"} <= set(allow)
        assert r.headers["access-control-max-age"] == "120"
        assert r.headers["vary"] == "Origin"
        assert "content-length" not in r.headers and r.body == b""
    r = rest(srv, KEY, headers={"Origin": APP})
    assert r.status_code == 200
    assert r.headers["Access-Control-Allow-Origin"] == APP
    assert r.headers["Vary"] == "Origin"
    exposed = [x.strip() for x in r.headers["Access-Control-Expose-Headers"].split(",")]
    assert "X-Request-Id" in exposed and "Retry-After" in exposed
    r = rest(srv, None, headers={"Origin": APP})
    h.assert_json_error(r, 401, "UNAUTHORIZED")
    assert r.headers["Access-Control-Allow-Origin"] == APP
    m1 = srv.metrics()
    assert delta(m1, m0, "cors.preflights") == 6
    assert delta(m1, m0, "requests.by_route.transcribe.204") == 1
    assert delta(m1, m0, "cors.refused") == 0


def test_cors_refusals(start_server):
    """Another origin gets 403 ORIGIN_NOT_ALLOWED without a CORS header,
    preflight or not, and its request does nothing (the transcription is
    never run); a method the path lacks is 405; a path nothing serves is
    404. The server's own origin (its Host) is not refused."""
    srv = start_server(ASR_CORS_ORIGINS=APP, ASR_API_KEYS=KEY)
    m0 = srv.metrics()
    evil = "https://evil.example"
    for origin in [evil, "http://app.example", "https://app.example:443", "null", APP + ".evil.example"]:
        r = preflight(srv, "/v1/transcribe", origin)
        h.assert_json_error(r, 403, "ORIGIN_NOT_ALLOWED")
        assert not any(k.startswith("access-control") for k in r.headers), r.headers
    r = rest(srv, KEY, headers={"Origin": evil})
    h.assert_json_error(r, 403, "ORIGIN_NOT_ALLOWED")
    assert "Access-Control-Allow-Origin" not in r.headers
    r = mint(srv, KEY, headers={"Origin": evil})
    h.assert_json_error(r, 403, "ORIGIN_NOT_ALLOWED")
    r = requests.post(srv.http + "/v1/audio/transcriptions", files={"file": ("a.wav", b"RIFF", "audio/wav")},
                      data={"model": "x"}, headers={"Origin": evil, "Authorization": "Bearer " + KEY}, timeout=10)
    assert r.status_code == 403 and r.json()["error"]["code"] == "origin_not_allowed", r.text
    r = h.raw_request(srv.port, "GET", "/", {"Origin": evil})
    h.assert_json_error(r, 403, "ORIGIN_NOT_ALLOWED")
    m1 = srv.metrics()
    assert delta(m1, m0, "cors.refused") == 9
    assert delta(m1, m0, "requests.by_route.transcribe.403") == 6
    assert delta(m1, m0, "rest.chunks") == 0 and delta(m1, m0, "auth.tokens_issued") == 0

    r = preflight(srv, "/v1/transcribe", APP, "PUT")
    h.assert_json_error(r, 405, "METHOD_NOT_ALLOWED")
    assert r.headers["allow"] == "POST" and "access-control-allow-methods" not in r.headers
    # a path no route has may be one of the page's files: GET (and HEAD) only
    r = preflight(srv, "/v1/nothing", APP, "POST")
    h.assert_json_error(r, 405, "METHOD_NOT_ALLOWED")
    assert r.headers["allow"] == "GET, HEAD"

    # the server's own page: its Origin's host and port are the Host header
    own = "http://127.0.0.1:%d" % srv.port
    r = rest(srv, KEY, headers={"Origin": own})
    assert r.status_code == 200 and "Access-Control-Allow-Origin" not in r.headers
    with h.RawConn(srv.port) as c:
        c.send_until_answer(h.build_request("GET", "/v1/transcribe/stream?api_key=" + KEY,
                                            h.upgrade_headers({"Origin": own}), host="127.0.0.1:%d" % srv.port))
        assert c.read_response().status == 101


def test_cors_list_guards_the_stream_unless_allowed_origins_is_set(start_server):
    """The WebSocket takes ASR_CORS_ORIGINS as its Origin list when
    ASR_ALLOWED_ORIGINS is empty; ASR_ALLOWED_ORIGINS, when set, is the list
    (docs/API.md "Allowed origins")."""
    srv = start_server(ASR_CORS_ORIGINS=APP)
    h.assert_json_error(h.raw_upgrade(srv.port, "", {"Origin": "https://evil.example"}), 403, "ORIGIN_NOT_ALLOWED")
    assert h.raw_upgrade(srv.port, "", {"Origin": APP}).status == 101
    assert h.raw_upgrade(srv.port, "", None).status == 101
    srv2 = start_server(ASR_CORS_ORIGINS=APP, ASR_ALLOWED_ORIGINS="https://streams.example")
    h.assert_json_error(h.raw_upgrade(srv2.port, "", {"Origin": APP}), 403, "ORIGIN_NOT_ALLOWED")
    assert h.raw_upgrade(srv2.port, "", {"Origin": "https://streams.example"}).status == 101
    # an upgrade is not refused by the CORS layer: the stream's own list decides
    r = preflight(srv2, "/v1/transcribe/stream", "https://streams.example", "GET")
    h.assert_json_error(r, 403, "ORIGIN_NOT_ALLOWED")


def test_cors_star(start_server):
    srv = start_server(ASR_CORS_ORIGINS="*")
    r = preflight(srv, "/v1/transcribe", "https://any.example")
    assert r.status == 204 and r.headers["access-control-allow-origin"] == "*"
    assert "vary" not in r.headers
    r = rest(srv, headers={"Origin": "null"})
    assert r.status_code == 200 and r.headers["Access-Control-Allow-Origin"] == "*"


# --------------------------------------------------------------------------
# tokens

def test_token_minted_and_used_everywhere(start_server):
    """An API key mints a token (POST /v1/auth/token); the token is accepted
    as Bearer on REST and the OpenAI route and as ?token= on the stream."""
    srv = start_server(ASR_API_KEYS="other-key," + KEY, ASR_TOKEN_TTL_S=120)
    m0 = srv.metrics()
    now = time.time()
    r = mint(srv)
    assert r.status_code == 200, r.text
    assert r.headers["Cache-Control"] == "no-store"
    j = r.json()
    assert set(j) == {"token", "expires_at", "expires_in", "scope"}
    assert j["token"].startswith("asrd1.") and len(j["token"]) == 73
    assert j["expires_in"] == 120 and abs(j["expires_at"] - (now + 120)) <= 3
    assert j["scope"] == ["stream", "transcribe"]
    tok = j["token"]
    assert rest(srv, tok).status_code == 200
    assert openai(srv, tok).status_code == 200
    assert requests.get(srv.http + "/v1/models", headers={"Authorization": "Bearer " + tok},
                        timeout=10).status_code == 200

    async def stream():
        w, s = await WS.open_session(srv.stream_url, "?token=" + tok)
        for c in h.chunks_of(h.speech_pcm())[:5]:
            await w.send_bytes(c)
        msgs = await w.stop()
        return w.close_code, msgs
    code, msgs = arun(stream())
    assert code == 1000 and h.of_type(msgs, "final"), msgs
    # X-API-Key carries a token too; and the key still works as it did
    assert rest(srv, headers={"X-API-Key": tok}).status_code == 200
    assert rest(srv, KEY).status_code == 200
    # a narrower scope and a shorter life on request
    r = mint(srv, body=b'{"scope":["stream"],"expires_in":30}')
    assert r.status_code == 200 and r.json()["scope"] == ["stream"] and r.json()["expires_in"] == 30
    m1 = srv.metrics()
    assert delta(m1, m0, "auth.tokens_issued") == 2
    assert delta(m1, m0, "requests.by_route.auth_token.200") == 2


def test_token_mint_refusals(start_server):
    srv = start_server(ASR_API_KEYS=KEY, ASR_TOKEN_TTL_S=60)
    m0 = srv.metrics()
    h.assert_json_error(mint(srv, None), 401, "UNAUTHORIZED")
    h.assert_json_error(mint(srv, "wrong"), 401, "UNAUTHORIZED")
    tok = token(srv)
    doc = h.assert_json_error(mint(srv, tok), 401, "UNAUTHORIZED")
    assert "token cannot mint" in doc["error"]["message"]
    for body in [b"{", b"[]", b'{"scope":[]}', b'{"scope":["admin"]}', b'{"scope":"stream"}',
                 b'{"expires_in":0}', b'{"expires_in":61}', b'{"expires_in":"10"}', b'{"scope":["stream"],"scope":[]}']:
        h.assert_json_error(mint(srv, body=body), 400, "BAD_REQUEST")
    r = h.raw_request(srv.port, "GET", "/v1/auth/token")
    h.assert_json_error(r, 405, "METHOD_NOT_ALLOWED")
    m1 = srv.metrics()
    assert delta(m1, m0, "auth.refused.unauthorized") == 3
    assert delta(m1, m0, "auth.tokens_issued") == 1
    assert delta(m1, m0, "requests.by_route.auth_token.400") == 9


def test_token_mint_without_keys(start_server):
    """With auth off anyone may mint (a page works the same either way);
    such a token is refused by a server that has keys."""
    srv = start_server(ASR_TOKEN_SECRET=SECRET)
    tok = token(srv, key=None)
    assert rest(srv, tok).status_code == 200
    assert rest(srv, "asrd1.garbage").status_code == 200  # nothing is looked at
    srv2 = start_server(ASR_TOKEN_SECRET=SECRET, ASR_API_KEYS=KEY)
    h.assert_json_error(rest(srv2, tok), 401, "TOKEN_INVALID")


def flip(tok, i):
    c = tok[i]
    return tok[:i] + ("B" if c == "A" else "A") + tok[i + 1:]


def test_bad_tokens_are_401_token_invalid(start_server):
    """A token that is not one of this server's (malformed, altered, signed
    with another secret) is 401 TOKEN_INVALID on every route; something that
    is neither a key nor a token is 401 UNAUTHORIZED."""
    srv = start_server(ASR_API_KEYS=KEY)
    m0 = srv.metrics()
    tok = token(srv)
    bad = ["asrd1.", "asrd1.nope", flip(tok, 20), flip(tok, 70), tok[:-1], tok + "A"]
    for b in bad:
        h.assert_json_error(rest(srv, b), 401, "TOKEN_INVALID")
        h.assert_json_error(h.raw_upgrade(srv.port, "?token=" + b), 401, "TOKEN_INVALID")
        r = openai(srv, b)
        assert r.status_code == 401 and r.json()["error"]["code"] == "token_invalid", r.text
    h.assert_json_error(rest(srv, "not-a-token"), 401, "UNAUTHORIZED")
    h.assert_json_error(h.raw_upgrade(srv.port, "?token=not-a-token"), 401, "UNAUTHORIZED")
    status, _ = h.ws_refusal_status(srv.stream_url, "?token=" + flip(tok, 30))
    assert status == 401
    m1 = srv.metrics()
    assert delta(m1, m0, "auth.refused.token_invalid") == 3 * len(bad) + 1
    assert delta(m1, m0, "auth.refused.unauthorized") == 2
    assert delta(m1, m0, "sessions.total") == 0


def test_expired_token_is_401_token_expired(start_server):
    srv = start_server(ASR_API_KEYS=KEY)
    m0 = srv.metrics()
    j = mint(srv, body=b'{"expires_in":1}').json()
    assert rest(srv, j["token"]).status_code == 200
    h.poll(lambda: time.time() >= j["expires_at"] + 0.05, 5, desc="the token's expiry")
    h.assert_json_error(rest(srv, j["token"]), 401, "TOKEN_EXPIRED")
    h.assert_json_error(h.raw_upgrade(srv.port, "?token=" + j["token"]), 401, "TOKEN_EXPIRED")
    r = openai(srv, j["token"])
    assert r.status_code == 401 and r.json()["error"]["code"] == "token_expired", r.text
    m1 = srv.metrics()
    assert delta(m1, m0, "auth.refused.token_expired") == 3


def test_token_scope_is_403(start_server):
    srv = start_server(ASR_API_KEYS=KEY)
    m0 = srv.metrics()
    stream_only = token(srv, scope=["stream"])
    files_only = token(srv, scope=["transcribe"])
    h.assert_json_error(rest(srv, stream_only), 403, "TOKEN_SCOPE")
    r = openai(srv, stream_only)
    assert r.status_code == 403 and r.json()["error"]["code"] == "token_scope", r.text
    h.assert_json_error(h.raw_upgrade(srv.port, "?token=" + files_only), 403, "TOKEN_SCOPE")
    assert h.raw_upgrade(srv.port, "?token=" + stream_only).status == 101
    assert rest(srv, files_only).status_code == 200
    m1 = srv.metrics()
    assert delta(m1, m0, "auth.refused.token_scope") == 3


def test_tokens_hold_where_the_secret_is_shared(start_server):
    """Instances with the same ASR_TOKEN_SECRET (and key) accept each other's
    tokens; without ASR_TOKEN_SECRET each instance makes up its own, and its
    tokens are TOKEN_INVALID elsewhere; a token whose key is removed from
    ASR_API_KEYS is TOKEN_INVALID."""
    a = start_server(ASR_API_KEYS=KEY, ASR_TOKEN_SECRET=SECRET)
    b = start_server(ASR_API_KEYS=KEY + ",k2", ASR_TOKEN_SECRET=SECRET)
    c = start_server(ASR_API_KEYS=KEY)
    d = start_server(ASR_API_KEYS=KEY)
    assert rest(b, token(a)).status_code == 200
    assert rest(a, token(b)).status_code == 200
    h.assert_json_error(rest(a, token(c)), 401, "TOKEN_INVALID")
    h.assert_json_error(rest(d, token(c)), 401, "TOKEN_INVALID")
    assert rest(c, token(c)).status_code == 200
    e = start_server(ASR_API_KEYS="k2", ASR_TOKEN_SECRET=SECRET)
    h.assert_json_error(rest(e, token(a)), 401, "TOKEN_INVALID")
    assert rest(e, token(b, key="k2")).status_code == 200


def test_random_secret_is_shared_by_the_workers(start_server):
    """Without ASR_TOKEN_SECRET the key is made once, in the master, so every
    worker of the instance accepts the tokens any of them minted."""
    srv = start_server(ASR_API_KEYS=KEY, ASR_WORKERS=2)
    seen = set()

    async def one(tok):
        w, s = await WS.open_session(srv.stream_url, "?token=" + tok)
        await w.close()
        return s["worker_id"]

    deadline = time.monotonic() + 30
    while len(seen) < 2 and time.monotonic() < deadline:
        seen.add(arun(one(token(srv))))
    assert len(seen) == 2, seen


def test_token_secret_too_short_stops_the_start():
    env = h.base_env({"ASR_PORT": h.free_port(), "ASR_WORKERS": 1, "ASR_REDIS_URL": "memory",
                      "ASR_TOKEN_SECRET": "short"})
    p = subprocess.run([h.asrd_bin()], env=env, capture_output=True, timeout=30)
    assert p.returncode == 2 and b"ASR_TOKEN_SECRET" in p.stderr, p


def test_prometheus_has_the_counters(start_server):
    srv = start_server(ASR_API_KEYS=KEY, ASR_CORS_ORIGINS=APP)
    rest(srv, "asrd1.x")
    preflight(srv, "/v1/transcribe", APP)
    text = requests.get(srv.http + "/metrics", timeout=10).text
    assert 'asrd_auth_refused_total{worker="w0",cause="token_invalid"} 1' in text, text
    assert 'asrd_cors_preflights_total{worker="w0"} 1' in text
    assert "asrd_auth_tokens_issued_total" in text and "asrd_cors_refused_total" in text


# --------------------------------------------------------------------------
# Expect: 100-continue meets tokens and CORS: the early answer says what the
# full request would have got (docs/API.md "Expect: 100-continue")

def early_answer(srv, path="/v1/transcribe", headers=None):
    """Sends only a head with Expect: 100-continue and a 3200-byte body
    announced; returns the response the server sends before any body byte."""
    hs = "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: audio/pcm; rate=16000\r\nContent-Length: 3200\r\n" \
         "Expect: 100-continue\r\n" % path
    for k, v in (headers or {}).items():
        hs += "%s: %s\r\n" % (k, v)
    with h.RawConn(srv.port, 10 * h.WRAP_SLOW) as c:
        c.send((hs + "\r\n").encode("latin-1"))
        return c.read_response()


def test_expect_continue_with_tokens_and_cors(start_server):
    """Before the body is sent: a token of another scope is 403 TOKEN_SCOPE
    and a forged one 401 TOKEN_INVALID (counted by cause, also in the OpenAI
    route's shape), a valid token gets 100 Continue; an Origin
    ASR_CORS_ORIGINS does not list is 403 ORIGIN_NOT_ALLOWED at once; a
    listed origin's refusal carries Access-Control-Allow-Origin."""
    srv = start_server(ASR_API_KEYS=KEY, ASR_CORS_ORIGINS=APP)
    stream_only = token(srv, scope=["stream"])
    files = token(srv, scope=["transcribe"])
    m0 = srv.metrics()
    r = early_answer(srv, headers={"Authorization": "Bearer " + stream_only})
    h.assert_json_error(r, 403, "TOKEN_SCOPE")
    assert r.headers["connection"] == "close"
    h.assert_json_error(early_answer(srv, headers={"X-API-Key": flip(files, 30)}), 401, "TOKEN_INVALID")
    r = early_answer(srv, "/v1/audio/transcriptions", {"Authorization": "Bearer " + stream_only})
    assert r.status == 403 and r.json()["error"]["code"] == "token_scope", r
    assert early_answer(srv, headers={"Authorization": "Bearer " + files}).status == 100
    r = early_answer(srv, headers={"Origin": "https://evil.example", "Authorization": "Bearer " + files})
    h.assert_json_error(r, 403, "ORIGIN_NOT_ALLOWED")
    assert "access-control-allow-origin" not in r.headers
    r = early_answer(srv, headers={"Origin": APP})
    h.assert_json_error(r, 401, "UNAUTHORIZED")
    assert r.headers["access-control-allow-origin"] == APP
    m1 = srv.metrics()
    assert delta(m1, m0, "auth.refused.token_scope") == 2
    assert delta(m1, m0, "auth.refused.token_invalid") == 1
    assert delta(m1, m0, "auth.refused.unauthorized") == 1
    assert delta(m1, m0, "cors.refused") == 1


# --------------------------------------------------------------------------
# jobs from a page: CORS on the job routes, tokens where keys are

def test_job_from_a_cors_origin_with_a_token(start_server):
    """A page on a listed origin submits a job with a token: the preflights of
    POST /v1/jobs (Idempotency-Key allowed) and of /v1/jobs/<id> (GET,
    DELETE) are 204, the 202 names the origin and exposes Location; the job
    is the minting key's (readable with the key, not another key); a
    stream-only token is 403 TOKEN_SCOPE (also before the body: Expect:
    100-continue), an unlisted origin 403 ORIGIN_NOT_ALLOWED, submitting
    nothing."""
    srv = start_server(ASR_API_KEYS=KEY + ",another-key", ASR_CORS_ORIGINS=APP)
    r = preflight(srv, "/v1/jobs", APP, "POST", "authorization, content-type, idempotency-key")
    assert r.status == 204, r
    assert r.headers["access-control-allow-methods"] == "POST"
    allow = [x.strip().lower() for x in r.headers["access-control-allow-headers"].split(",")]
    assert "idempotency-key" in allow
    r = preflight(srv, "/v1/jobs/" + "0" * 32, APP, "DELETE")
    assert r.status == 204, r
    assert r.headers["access-control-allow-methods"] == "GET, HEAD, DELETE"
    assert r.headers["access-control-allow-origin"] == APP

    tok = token(srv, scope=["transcribe"])
    page = {"Authorization": "Bearer " + tok, "Origin": APP}
    m0 = srv.metrics()
    r = ju.submit(srv, h.read_bytes("speech16k.wav"), headers=dict(page, **{"Idempotency-Key": "page-1"}))
    assert r.status_code == 202, r.text
    assert r.headers["Access-Control-Allow-Origin"] == APP
    exposed = [x.strip() for x in r.headers["Access-Control-Expose-Headers"].split(",")]
    assert "Location" in exposed
    job = r.json()
    assert r.headers["Location"] == "/v1/jobs/" + job["id"]
    assert ju.wait_final(srv, job["id"], headers=page)["status"] == "completed"
    r = ju.get(srv, job["id"], page)
    assert r.headers["Access-Control-Allow-Origin"] == APP
    assert ju.get(srv, job["id"], {"X-API-Key": KEY}).status_code == 200          # the minting key's job
    assert ju.get(srv, job["id"], {"X-API-Key": "another-key"}).status_code == 404

    stream_only = token(srv, scope=["stream"])
    r = ju.submit(srv, h.read_bytes("speech16k.wav"), headers={"Authorization": "Bearer " + stream_only,
                                                               "Origin": APP})
    h.assert_json_error(h.RawResponse(r.status_code, "", {}, r.content), 403, "TOKEN_SCOPE")
    assert r.headers["Access-Control-Allow-Origin"] == APP
    h.assert_json_error(early_answer(srv, "/v1/jobs", {"Authorization": "Bearer " + stream_only}), 403,
                        "TOKEN_SCOPE")
    assert early_answer(srv, "/v1/jobs", {"Authorization": "Bearer " + tok}).status == 100
    r = ju.get(srv, job["id"], {"Authorization": "Bearer " + stream_only})
    assert r.status_code == 403 and r.json()["error"]["code"] == "TOKEN_SCOPE"
    r = ju.submit(srv, h.read_bytes("speech16k.wav"), headers={"Authorization": "Bearer " + tok,
                                                               "Origin": "https://evil.example"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "ORIGIN_NOT_ALLOWED"
    r = requests.delete(srv.http + "/v1/jobs/" + job["id"], headers=page, timeout=10)
    assert r.status_code == 200 and r.headers["Access-Control-Allow-Origin"] == APP
    m1 = srv.metrics()
    assert delta(m1, m0, "jobs.submitted") == 1
    assert delta(m1, m0, "auth.refused.token_scope") == 3
    assert delta(m1, m0, "requests.by_route.jobs.202") == 1
