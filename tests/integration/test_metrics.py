"""GET /v1/health, GET /v1/metrics, GET /metrics: fields and counters."""
import re

import requests

import asrd_harness as h
from asrd_harness import WS, arun

NUM = (int, float)


def is_num(v):
    return isinstance(v, NUM) and not isinstance(v, bool)


def test_health_fields(server):
    r = requests.get(server.http + "/v1/health", timeout=10)
    assert r.status_code == 200
    assert r.headers.get("Content-Type", "").startswith("application/json")
    doc = r.json()
    assert doc["status"] == "ok", doc
    assert isinstance(doc["active_sessions"], int), doc
    assert isinstance(doc["worker_id"], str) and doc["worker_id"], doc
    assert is_num(doc["uptime_s"]) and doc["uptime_s"] >= 0, doc
    cap = doc["capacity"]
    assert isinstance(cap["max_sessions"], int) and isinstance(cap["free_sessions"], int), doc
    assert 0 <= cap["free_sessions"] <= cap["max_sessions"], doc


def test_worker_id_setting(start_server):
    # ASR_WORKER_ID is a prefix: worker i is <prefix><i>
    srv = start_server(ASR_WORKER_ID="it-worker-")
    assert srv.health()["worker_id"] == "it-worker-0"

    async def go():
        w, s = await WS.open_session(srv.stream_url)
        await w.stop()
        return s
    assert arun(go())["worker_id"] == "it-worker-0"


def test_metrics_fields(server):
    r = requests.get(server.http + "/v1/metrics", timeout=10)
    assert r.status_code == 200
    assert r.headers.get("Content-Type", "").startswith("application/json")
    m = r.json()
    for k in ("connections.active", "sessions.active", "sessions.total", "chunks.total",
              "requests.total", "bytes_in.total", "partials.dropped"):
        v = h.metric(m, k)
        assert isinstance(v, int) and not isinstance(v, bool) and v >= 0, (k, v)
    for k in ("chunks.per_sec", "requests.per_sec"):
        v = h.metric(m, k)
        assert is_num(v) and v >= 0, (k, v)
    assert isinstance(m.get("errors"), dict), m
    for code, v in m["errors"].items():
        assert isinstance(code, str) and isinstance(v, int), m["errors"]
    for k in ("latency_ms.chunk", "latency_ms.rest"):
        lat = h.metric(m, k)
        assert isinstance(lat, dict), (k, m)
        for p in ("p50", "p95", "p99"):
            assert is_num(lat.get(p)) and lat[p] >= 0, (k, lat)
        assert lat["p50"] <= lat["p95"] <= lat["p99"], (k, lat)


def test_counters_match(start_server):
    srv = start_server()
    m0 = srv.metrics()
    assert h.metric(m0, "chunks.total") == 0, m0
    assert h.metric(m0, "sessions.total") == 0, m0
    assert h.metric(m0, "sessions.active") == 0, m0
    assert m0["errors"].get("INVALID_AUDIO", 0) == 0, m0

    async def go():
        w, s = await WS.open_session(srv.stream_url)
        for _ in range(7):
            await w.send_bytes(h.silence(100))
        await w.answers(7)
        m1 = srv.metrics()
        await w.send_bytes(b"\0\0\0")
        await w.answers(1)
        await w.stop()
        return m1

    m1 = arun(go())
    assert h.metric(m1, "chunks.total") == 7, m1
    assert h.metric(m1, "sessions.active") == 1, m1
    assert h.metric(m1, "sessions.total") == 1, m1
    assert h.metric(m1, "bytes_in.total") >= 7 * 3200, m1
    assert h.metric(m1, "latency_ms.chunk.p50") >= 15, m1       # mock latency 20 ms
    m2 = h.poll(lambda: (lambda m: h.metric(m, "sessions.active") == 0 and m)(srv.metrics()),
                5, desc="sessions.active back to 0")
    assert m2["errors"].get("INVALID_AUDIO") == 1, m2["errors"]
    assert sum(v for k, v in m2["errors"].items() if k != "total") == 1, m2["errors"]
    assert h.metric(m2, "sessions.total") == 1, m2

    # REST requests count
    r0 = h.metric(srv.metrics(), "requests.total")
    wav = h.read_bytes("speech16k.wav")
    for _ in range(3):
        r = requests.post(srv.http + "/v1/transcribe", data=wav,
                          headers={"Content-Type": "audio/wav"}, timeout=30)
        assert r.status_code == 200
    m3 = srv.metrics()
    # 3 transcriptions, plus the metrics request itself if it counts
    assert 3 <= h.metric(m3, "requests.total") - r0 <= 4, (r0, m3)
    assert h.metric(m3, "latency_ms.rest.p50") > 0, m3


def test_error_counters_by_code(start_server):
    srv = start_server()

    async def go():
        w, s = await WS.open_session(srv.stream_url)
        await w.send_text("nope")                       # INVALID_MESSAGE
        await w.next()
        await w.send_bytes(b"\0" * 70000)               # CHUNK_TOO_LARGE
        await w.send_bytes(b"")                         # INVALID_AUDIO
        await w.answers(2)
        await w.send_json({"type": "audio_chunk", "data": "AAAA", "sequence": 1})  # OUT_OF_ORDER
        await w.answers(1)
        await w.stop()
    arun(go())
    m = srv.metrics()
    errs = {k: v for k, v in m["errors"].items() if v and k != "total"}
    assert errs == {"INVALID_MESSAGE": 1, "CHUNK_TOO_LARGE": 1, "INVALID_AUDIO": 1,
                    "OUT_OF_ORDER": 1}, m["errors"]


def test_prometheus_text(server):
    r = requests.get(server.http + "/metrics", timeout=10)
    assert r.status_code == 200
    assert r.headers.get("Content-Type", "").startswith("text/plain"), r.headers
    names = set()
    for line in r.text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        assert m, "not exposition format: %r" % line
        float(m.group(3))
        names.add(m.group(1))
    assert names and all(n.startswith("asrd_") for n in names), sorted(names)


def test_prometheus_passes_promtool(start_server):
    """GET /metrics after real traffic (a stream with errors, a REST call) is
    accepted by Prometheus' own linter (promtool from Debian's prometheus)."""
    import shutil, subprocess
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: scripts/deps.sh installs Debian's prometheus package"
    srv = start_server()
    wav = open(h.GEN_DIR + "/speech16k.wav", "rb").read()
    r = requests.post(srv.http + "/v1/transcribe", data=wav, headers={"Content-Type": "audio/wav"}, timeout=30)
    assert r.status_code == 200, r.text

    async def go():
        w, _ = await WS.open_session(srv.stream_url)
        await w.send_bytes(b"\x00" * 3200)
        await w.send_bytes(b"\x00" * 3)
        await w.stop()
    arun(go(), 30)
    text = requests.get(srv.http + "/metrics", timeout=10).text
    assert "asrd_chunk_latency_seconds_bucket" in text
    p = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
    assert p.returncode == 0, (p.stdout + p.stderr).decode()


def test_engine_backlog_pauses_reading_losslessly(start_server):
    """Without ASR_SHED_LOAD, chunks past ASR_MAX_PENDING_CHUNKS are not refused:
    the socket stops being read (counted as a read pause) and every chunk still
    gets its partial, in order."""
    srv = start_server(ASR_MAX_PENDING_CHUNKS=2, ASR_MOCK_LATENCY_MS=200)
    c = h.silence(100)

    async def go():
        w, _ = await WS.open_session(srv.stream_url)
        for _ in range(12):
            await w.send_bytes(c)
        msgs = await w.answers(12, 30)
        await w.stop()
        return msgs
    msgs = arun(go(), 60)
    assert [m["sequence"] for m in msgs] == list(range(1, 13)), h.short(msgs)
    assert all(m["type"] == "partial" for m in msgs), h.short(msgs)
    m = srv.metrics()
    assert h.metric(m, "backpressure.read_pauses") >= 1, m.get("backpressure")
    assert h.metric(m, "errors.total") == 0, m["errors"]
    assert "asrd_read_pauses_total" in requests.get(srv.http + "/metrics", timeout=10).text


def _get_raw(port, path, sock=None):
    """One HTTP/1.1 request on a raw socket (kept open); returns (sock, head, body)."""
    import socket
    s = sock or socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path).encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        assert chunk, data
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    n = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
    while len(body) < n:
        chunk = s.recv(65536)
        assert chunk
        body += chunk
    return s, head, body


def test_process_figures_are_fresh_and_follow_connections(start_server):
    """RSS and open fds are read on the thread pool; each metrics request
    waits for a fresh reading, so a scrape sees the connections open right
    now (not the last tick's), in both formats."""
    import json
    srv = start_server()
    s0, head, body = _get_raw(srv.port, "/v1/metrics")  # fds0 counts s0's connection
    fds0 = h.metric(json.loads(body), "process.open_fds")
    assert fds0 > 0
    socks = [_get_raw(srv.port, "/v1/health")[0] for _ in range(40)]  # each accepted and answered
    s, head, body = _get_raw(srv.port, "/v1/metrics", s0)
    m = json.loads(body)
    assert h.metric(m, "process.open_fds") == fds0 + 40, (fds0, m["process"])
    assert h.metric(m, "process.rss_bytes") > 0
    s, head, body = _get_raw(srv.port, "/metrics", socks[1])
    assert re.search(rb'asrd_process_open_fds\{worker="w0"\} %d\n' % (fds0 + 40), body), body
    for s in socks:
        s.close()
    s0.close()  # requests' own connection below takes its place in the count
    import time
    deadline = time.time() + 10
    while True:
        m = requests.get(srv.http + "/v1/metrics", timeout=10).json()
        if h.metric(m, "process.open_fds") == fds0 or time.time() > deadline:
            break
        time.sleep(0.05)
    assert h.metric(m, "process.open_fds") == fds0, m["process"]


def test_metrics_requests_closed_early_or_pipelined(start_server):
    """Scrapes whose client leaves before the answer (the answer waits for
    the thread pool) are dropped quietly; pipelined scrapes are answered in
    order; the worker stays healthy."""
    import socket
    srv = start_server()
    for _ in range(30):
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\nGET /v1/metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        s.close()
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    s.sendall(b"GET /v1/metrics HTTP/1.1\r\nHost: x\r\n\r\nGET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
              b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    heads = re.findall(rb"HTTP/1.1 (\d+) [^\r]*\r\n((?:[^\r]+\r\n)*)\r\n", data)
    assert [c for c, _ in heads] == [b"200", b"200", b"200"], data[:500]
    assert b"application/json" in heads[0][1] and b"text/plain" in heads[1][1], heads
    assert srv.health()["status"] == "ok"
    m = requests.get(srv.http + "/v1/metrics", timeout=10).json()
    by = m["requests"]["by_route"]
    assert by["metrics_prom"].get("200", 0) >= 1 and by["metrics_json"].get("200", 0) >= 1, by
    assert srv.proc.poll() is None


def test_loop_figures(start_server):
    """loop.iterations counts event loop turns, loop.busy_ms is the work per
    turn (waiting for events left out), loop.utilization the share of the
    last second spent working: near 0 on an idle server."""
    import time
    srv = start_server()
    time.sleep(2.2)  # two ticks: utilization is measured over a whole second
    m0 = requests.get(srv.http + "/v1/metrics", timeout=10).json()
    loop = m0["loop"]
    assert isinstance(loop["iterations"], int) and loop["iterations"] > 0, loop
    assert 0 <= loop["utilization"] < 0.5, loop
    assert loop["busy_ms"]["count"] == loop["iterations"], loop
    assert 0 <= loop["busy_ms"]["p50"] <= loop["busy_ms"]["p99"] < 1000, loop

    async def go():
        w, _ = await WS.open_session(srv.stream_url)
        for _ in range(20):       # one at a time: each is read in a turn of its own
            await w.send_bytes(b"\x00" * 3200)
            await w.answers(1)
        await w.stop()
    arun(go(), 30)
    m1 = requests.get(srv.http + "/v1/metrics", timeout=10).json()
    assert m1["loop"]["iterations"] >= m0["loop"]["iterations"] + 20, (m0["loop"], m1["loop"])
    assert m1["loop"]["busy_ms"]["count"] == m1["loop"]["iterations"], m1["loop"]
    text = requests.get(srv.http + "/metrics", timeout=10).text
    assert re.search(r'^asrd_loop_iterations_total\{worker="w0"\} \d+$', text, re.M), text
    assert re.search(r'^asrd_loop_busy_seconds_count\{worker="w0"\} \d+$', text, re.M)
    assert re.search(r'^asrd_loop_utilization\{worker="w0"\} [0-9.e-]+$', text, re.M)
