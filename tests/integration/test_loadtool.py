"""tools/asrd-load against the real server (docs/LOAD.md).

Each test starts its own server, takes /v1/metrics itself before and after a
short, bounded run of the tool (--json), and checks the tool's counts against
the server's deltas: exactly where the protocol makes them exact (every chunk
gets one answer, every `stop` one final and a 1000 close, ...), as bounds
where it does not (a slow reader closed with 1008 loses what was queued for
it). The tool's own before/after reading (its "agreement" block) is checked
too, but the test does not rely on it.

The tool runs from a directory outside the tree, so it must find its default
audio next to its executable. Loads are small (<= 20 sessions, 3-4 s) so the
file stays well under a minute, also against the ASan build. The real-audio
scenarios run on mock-windowed (the windowed machinery of a real engine,
with fake words) with three short files.
"""
import json
import os
import re
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET

import pytest

import asrd_harness as h

MOCK_MS = 20          # the fixture's ASR_MOCK_LATENCY_MS


def load_bin():
    """asrd-load from the server's build directory (build/release or build/asan)."""
    return os.path.join(os.path.dirname(h.asrd_bin()), "asrd-load")


def run_load(srv, *args, timeout=60):
    """Runs asrd-load against srv with --json; returns (result, stdout)."""
    binary = load_bin()
    assert os.access(binary, os.X_OK), "no %s (make builds it next to asrd)" % binary
    with tempfile.TemporaryDirectory(prefix="asrd-load-") as d:
        out = os.path.join(d, "result.json")
        cmd = [binary, "--url", srv.ws, "--json", out, "--quiet", "--mock-latency-ms", str(MOCK_MS)]
        cmd += [str(a) for a in args]
        env = dict(os.environ)
        env.update(h.sanitizer_env())
        p = subprocess.run(cmd, cwd=d, env=env, capture_output=True, timeout=timeout)
        stdout = p.stdout.decode("utf-8", "replace")
        stderr = p.stderr.decode("utf-8", "replace")
        h.check_sanitizer_output(stderr, "asrd-load")
        assert p.returncode == 0, "asrd-load exited %d\n%s\n%s" % (p.returncode, stdout, h.tail(stderr))
        with open(out) as f:
            res = json.load(f)
    assert res["tool"] == "asrd-load" and res["format"] == 1, res.keys()
    return res, stdout


def settled_metrics(srv, m0, timeout=5.0):
    """/v1/metrics once every connection and session the run opened has
    ended on the server too (its counters of a session are complete then)."""
    def ready():
        m = srv.metrics()
        return (h.metric(m, "connections.active") <= h.metric(m0, "connections.active") and
                h.metric(m, "sessions.active") <= h.metric(m0, "sessions.active") and m)
    return h.poll(ready, timeout, interval=0.1, desc="server back to its connections and sessions")


def delta(m0, m1, path):
    return h.metric(m1, path, 0) - h.metric(m0, path, 0)


def check_latency(lat, n):
    """Percentiles are of n samples, ordered, and none is below the engine's
    own latency (an answer cannot come before the mock engine answered)."""
    assert lat["count"] == n, lat
    if n == 0:
        return
    assert MOCK_MS * 0.95 <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p999"] <= lat["max"], lat
    assert lat["mean"] <= lat["max"], lat


def check_agreement(run, expect_match=True):
    """The tool's own client/server comparison is present; all of it matches
    when expect_match."""
    ag = run.get("agreement")
    assert ag, "no agreement block in the result (did the tool read /v1/metrics?): %r" % run["server"]
    if expect_match:
        bad = {k: v for k, v in ag.items() if not v["match"]}
        assert not bad, "the tool's own client/server counts differ: %r" % bad
    return ag


def check_streaming_exact(res, m0, m1, sessions):
    """A clean streaming run: every count of the tool equals the server's
    delta over the run."""
    t = res["total"]
    assert t["connect_failures"] == 0, t["connect_errors"]
    assert t["sessions_opened"] == sessions == delta(m0, m1, "sessions.total"), (t["sessions_opened"], sessions)
    assert delta(m0, m1, "requests.by_route.stream.101") == sessions
    assert t["sessions_completed"] == sessions, t["close_codes"]
    assert t["close_codes"] == {"1000": sessions}, t["close_codes"]
    assert delta(m0, m1, "close_codes.1000") == sessions
    # every chunk sent reached the server and got exactly one answer, in order
    assert t["chunks_sent"] > 0
    assert t["chunks_sent"] == delta(m0, m1, "chunks.total"), (t["chunks_sent"], delta(m0, m1, "chunks.total"))
    assert t["chunks_skipped"] == 0 and t["chunks_blocked"] == 0, t
    errors = sum(t["errors"].values())
    assert errors == delta(m0, m1, "errors.total"), (t["errors"], m1["errors"])
    for code, n in t["errors"].items():
        assert n == delta(m0, m1, "errors." + code), (code, t["errors"], m1["errors"])
    assert t["answers"] == t["chunks_sent"], t
    assert t["partials"] + errors == t["answers"], t
    assert t["partial_msgs"] == t["partials"] == delta(m0, m1, "partials.total"), \
        (t["partial_msgs"], delta(m0, m1, "partials.total"))
    assert delta(m0, m1, "partials.dropped") == 0
    assert t["missing"] == 0 and t["out_of_order"] == 0 and t["unmatched"] == 0, t
    assert t["finals"] == delta(m0, m1, "finals.total"), (t["finals"], delta(m0, m1, "finals.total"))
    assert t["finals"] >= sessions      # at least the one `stop` gives
    check_latency(t["latency_ms"], t["answers"])
    assert t["added_ms"]["count"] == t["answers"]
    # the tool's own reading of the server agrees with the test's
    d = t["server"]["delta"]
    assert d["chunks_total"] == delta(m0, m1, "chunks.total")
    assert d["sessions_total"] == sessions
    assert d["close_codes"].get("1000") == sessions
    check_agreement(t)


def expect_chunks(res, sessions, seconds):
    """Chunks are sent on absolute deadlines: each session sends one per
    period from its first deadline (within one period of its `session`
    message) until the end, so the total is within a chunk per session of
    sessions * seconds / period."""
    t = res["total"]
    per = res["options"]["chunk_ms"] / 1000.0
    ideal = sessions * seconds / per
    assert sessions * (seconds / per - 2) <= t["chunks_sent"] <= ideal + sessions, (t["chunks_sent"], ideal)


@pytest.mark.timeout(60)
def test_sustained_binary_counts_match_server(start_server):
    srv = start_server()
    m0 = srv.metrics()
    with tempfile.TemporaryDirectory() as d:
        svg = os.path.join(d, "chart.svg")
        res, out = run_load(srv, "--sessions", 20, "--duration", 3, "--svg", svg)
        root = ET.parse(svg).getroot()          # well-formed, standalone
        assert root.tag.endswith("svg"), root.tag
        assert len(root.findall(".//{http://www.w3.org/2000/svg}polyline")) == 3   # p50 p90 p99
    m1 = settled_metrics(srv, m0)
    check_streaming_exact(res, m0, m1, 20)
    expect_chunks(res, 20, 3)
    t = res["total"]
    assert t["errors"] == {}, t["errors"]
    # default audio found from another directory (next to the executable)
    assert res["options"]["wav"].endswith("tests/data/generated/speech16k.wav"), res["options"]["wav"]
    assert res["options"]["mode"] == "binary"
    # one progress point a second, with the sessions streaming
    tl = res["timeline"]
    assert len(tl) >= 2 and max(p["sessions"] for p in tl) == 20, tl
    assert sum(p["answers"] for p in tl) <= t["answers"]
    # the table shows what the JSON holds
    assert re.search(r"^chunks\s+sent %d " % t["chunks_sent"], out, re.M), out
    assert "close codes   1000 20" in out, out
    assert "chunks %d/%d" % (t["chunks_sent"], t["chunks_sent"]) in out, out
    assert t["client_cpu_s"] > 0 and 0 < t["client_cpu_pct"] < 100, t
    # every session is a normal one here, counted as such
    assert t["normal_sessions"] == t["normal_completed"] == 20 and t["normal_chunks"] == t["chunks_sent"], t
    assert t["slow_sessions"] == t["flood_sessions"] == 0, t
    # the server sampled during the run (--metrics-interval 1): its fds
    # peaked with the 20 sessions open, and are back where they were
    fds0 = h.metric(m0, "process.open_fds")
    assert t["server_samples"] >= 2, t["server_samples"]
    assert t["server_fds_peak"] >= fds0 + 20, (t["server_fds_peak"], fds0)
    assert t["server"]["before"]["open_fds"] == t["server"]["after"]["open_fds"] == h.metric(m1, "process.open_fds")
    assert t["server_rss_peak"] >= max(t["server"]["before"]["rss_bytes"], t["server"]["after"]["rss_bytes"]) > 0
    assert any(p["rss_bytes"] > 0 and p["open_fds"] >= fds0 + 20 for p in tl), tl
    assert re.search(r"open fds %d -> %d \(peak %d\)" % (fds0, fds0, t["server_fds_peak"]), out), out


@pytest.mark.timeout(60)
def test_ramp_up_and_down(start_server):
    """With --ramp R every session streams R + D seconds from its own start:
    sessions leave in the order they came (a ramp-down, not one herd of
    stops), and all of them stream together for D seconds."""
    srv = start_server()
    m0 = srv.metrics()
    res, out = run_load(srv, "--sessions", 20, "--ramp", 2, "--duration", 1)
    m1 = settled_metrics(srv, m0)
    check_streaming_exact(res, m0, m1, 20)
    expect_chunks(res, 20, 3)              # each session: R + D = 3 s
    t = res["total"]
    assert t["wall_s"] >= 5 - 0.5, t["wall_s"]      # R up, D full, R down
    tl = res["timeline"]
    peak = max(range(len(tl)), key=lambda i: tl[i]["sessions"])
    assert tl[peak]["sessions"] == 20, tl
    assert any(0 < p["sessions"] < 20 for p in tl[:peak]), tl       # ramp-up
    assert any(0 < p["sessions"] < 20 for p in tl[peak + 1:]), tl   # ramp-down
    # the server's loop utilization was sampled (a fraction, not a percent)
    assert any(0 < p["loop_util"] < 1 for p in tl), tl
    assert 0 < t["server_loop_util_peak"] < 1, t["server_loop_util_peak"]


@pytest.mark.timeout(60)
def test_json_mode_with_model_errors(start_server):
    """JSON audio_chunk messages carrying their sequence; the engine fails
    some chunks: each failure is an `error` answer with that chunk's
    sequence, counted by code on both sides."""
    srv = start_server(ASR_MOCK_ERROR_RATE=0.1, ASR_MOCK_SEED=7)
    m0 = srv.metrics()
    res, out = run_load(srv, "--sessions", 10, "--duration", 3, "--mode", "json")
    m1 = settled_metrics(srv, m0)
    check_streaming_exact(res, m0, m1, 10)
    expect_chunks(res, 10, 3)
    t = res["total"]
    assert res["options"]["mode"] == "json"
    assert set(t["errors"]) == {"MODEL_ERROR"}, t["errors"]
    assert t["errors"]["MODEL_ERROR"] == delta(m0, m1, "errors.MODEL_ERROR") > 0
    assert "MODEL_ERROR %d" % t["errors"]["MODEL_ERROR"] in out, out


def server_caps_sndbuf(srv):
    """True when the server bounds the kernel send buffer of its WebSocket
    connections (ss shows the socket's sndbuf, "tb"): then a client that
    never reads fills it within seconds and must be closed with 1008. With
    the kernel's autotuning (up to tcp_wmem max, ~4 MB on loopback) it takes
    minutes."""
    c = h.raw_ws_connect(srv.port)
    try:
        time.sleep(0.1)
        p = subprocess.run(["ss", "-tmnH", "state", "established", "( sport = :%d )" % srv.port],
                           capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        c.close()
    tbs = [int(x) for x in re.findall(rb"\btb(\d+)", p.stdout)]
    return bool(tbs) and max(tbs) <= 256 * 1024


@pytest.mark.timeout(60)
def test_slow_readers(start_server):
    """Half of the sessions never read. The others must be answered fully
    and in time; the slow ones are either closed 1008 by the server (then
    counted on both sides the same) or read everything late at `stop`."""
    N = 10
    srv = start_server(ASR_MAX_SEND_QUEUE_BYTES=2048, ASR_SLOW_CLIENT_THRESHOLD=2)
    capped = server_caps_sndbuf(srv)
    m0 = srv.metrics()
    # 10 ms chunks: a partial every 10 ms per session, ~15 KB/s of answers a
    # slow reader leaves unread; with a small receive buffer (8 KiB) and the
    # server's send buffer bounded, its queue overflows after about 2.5 s
    res, out = run_load(srv, "--scenario", "slow-readers", "--sessions", N, "--slow-fraction", 0.5,
                        "--duration", 4, "--chunk-ms", 10, "--slow-rcvbuf", 8192, "--grace", 10)
    m1 = settled_metrics(srv, m0)
    t = res["total"]
    assert t["sessions_opened"] == N == delta(m0, m1, "sessions.total")
    assert t["slow_sessions"] == N // 2, t
    assert t["connect_failures"] == 0, t["connect_errors"]
    fast_chunks = t["chunks_sent"] - t["slow_chunks"]
    assert fast_chunks > 0 and t["slow_chunks"] > 0, t
    # the readers: every chunk answered, in order, nothing dropped
    assert t["answers"] == fast_chunks and t["missing"] == 0, t
    assert t["out_of_order"] == 0 and t["unmatched"] == 0, t
    check_latency(t["latency_ms"], t["answers"])
    # closes: the tool's count of slow readers the server closed is the
    # server's count of slow_client ends and of 1008 closes
    closed = delta(m0, m1, "sessions.ended.slow_client")
    assert t["slow_closed"] == closed == delta(m0, m1, "close_codes.1008"), \
        (t["slow_closed"], closed, m1["close_codes"])
    assert t["close_codes"].get("1000", 0) == delta(m0, m1, "close_codes.1000") == N - closed, \
        (t["close_codes"], m1["close_codes"])
    assert t["close_codes"].get("1008", 0) <= closed      # a reset may beat the close frame
    assert sum(t["close_codes"].values()) == N, t["close_codes"]
    assert t["sessions_completed"] == N - closed
    assert t["errors"] == {} and delta(m0, m1, "errors.total") == 0
    # every partial received was counted once: timed (readers) or late (slow)
    assert t["partial_msgs"] == t["partials"] + t["slow_answers"], t
    if capped:
        assert closed > 0, "the server bounds its send buffer, yet no slow reader was closed in 4 s"
    if closed == 0:
        # nobody was closed: everything is exact, the slow readers got all
        # their answers when they read again at `stop`
        assert t["chunks_sent"] == delta(m0, m1, "chunks.total")
        assert t["slow_answers"] == t["slow_chunks"], t
        assert delta(m0, m1, "partials.dropped") == 0
        assert t["partial_msgs"] == delta(m0, m1, "partials.total")
        assert t["finals"] == delta(m0, m1, "finals.total")
        check_agreement(t)
    else:
        # a 1008 stops the server reading (chunks in flight are never
        # counted) and discards what was queued (never received)
        assert fast_chunks <= delta(m0, m1, "chunks.total") <= t["chunks_sent"]
        assert t["slow_answers"] < t["slow_chunks"], t
        sent = delta(m0, m1, "partials.total") - delta(m0, m1, "partials.dropped")
        assert t["answers"] <= t["partial_msgs"] <= sent, (t["partial_msgs"], sent)
        assert t["finals"] <= delta(m0, m1, "finals.total")
        ag = check_agreement(t, expect_match=False)
        assert ag["close_1008"]["match"] and ag["close_1000"]["match"], ag
    assert "slow readers  %d slow sessions" % (N // 2) in out, out


@pytest.mark.timeout(60)
def test_churn_keeps_population(start_server):
    """Sessions of 0.5..1.5 s each, replaced as they end, for 4 s: many
    sessions pass through, each ends with its final and a 1000 close, and
    the population stays near the target."""
    srv = start_server()
    m0 = srv.metrics()
    res, out = run_load(srv, "--scenario", "churn", "--sessions", 10, "--churn-life", 1, "--duration", 4)
    m1 = settled_metrics(srv, m0)
    t = res["total"]
    n = t["sessions_opened"]
    # 4 s of 10 slots with lives of at most 1.5 s: at least 2 generations
    assert n >= 25, n
    check_streaming_exact(res, m0, m1, n)
    # sessions that connected as the run ended were stopped cleanly too:
    # nothing stays resumable on the server
    assert h.metric(m1, "sessions.active") == h.metric(m0, "sessions.active")
    # steady population: in every full second, nearly all slots streamed
    mid = [p["sessions"] for p in res["timeline"] if 1 <= p["t_s"] <= 4]
    assert mid and min(mid) >= 7 and max(mid) <= 10, res["timeline"]


@pytest.mark.timeout(60)
def test_rest_uploads(start_server):
    """--requests 6 over 3 clients: six POSTs of the WAV, each a 200 on
    both sides; uploads are not streaming sessions."""
    srv = start_server()
    m0 = srv.metrics()
    res, out = run_load(srv, "--scenario", "rest", "--rest-concurrency", 3, "--requests", 6, "--duration", 20)
    m1 = settled_metrics(srv, m0)
    t = res["total"]
    assert t["requests"] == 6 and t["request_failures"] == 0, t
    assert t["http_status"] == {"200": 6}, t["http_status"]
    assert t["request_errors"] == {}, t["request_errors"]
    assert delta(m0, m1, "requests.by_route.transcribe.200") == 6
    assert sum(h.metric(m1, "requests.by_route.transcribe", {}).values()) - \
        sum(h.metric(m0, "requests.by_route.transcribe", {}).values()) == 6
    assert delta(m0, m1, "latency_ms.rest.count") == 6
    assert delta(m0, m1, "sessions.total") == 0
    assert t["latency_ms"]["count"] == 6
    assert 0 < t["latency_ms"]["p50"] <= t["latency_ms"]["max"]
    ag = check_agreement(t)
    assert set(ag) == {"http_200"}, ag
    assert "http status   200 6" in out, out
    # --requests ends the run once they are answered, not at --duration
    assert t["wall_s"] < 15, t["wall_s"]


# ---- real audio (speech, speech-capacity) on mock-windowed -----------------

def windowed_server(start_server):
    """mock-windowed: decodes windows and finals on the inference pool, like
    pocketsphinx, with timings under the test's control."""
    return start_server(ASR_ENGINE="mock-windowed", ASR_INFERENCE_THREADS=2, ASR_WINDOW_MS=1000)


SPEECH_FILES = ["speech16k.wav", "speech8k.wav", "speech44k_stereo.wav"]   # 16 kHz, resampled from 8 and 44.1


@pytest.mark.timeout(60)
def test_speech_real_audio(start_server):
    """Three sessions stream three WAV files (two resampled) at real time,
    each file followed by a second of silence: every play gets its final,
    timed from the send of the chunk holding its end_ms; partials carry the
    server's latency_ms (windows: buffer > 0); the pool's figures come from
    /v1/metrics; --hyp writes "fileid<TAB>text" lines."""
    srv = windowed_server(start_server)
    m0 = srv.metrics()
    wavs = []
    for f in SPEECH_FILES:
        wavs += ["--wav", h.gen_path(f)]
    with tempfile.TemporaryDirectory() as d:
        hyp = os.path.join(d, "hyp.txt")
        res, out = run_load(srv, "--scenario", "speech", *wavs, "--duration", 1, "--hyp", hyp)
        with open(hyp) as f:
            hyp_lines = f.read().splitlines()
    m1 = settled_metrics(srv, m0)
    t = res["total"]
    # the streaming counts hold as for any scenario (a windowed engine
    # answers a chunk at once, so its partials' latency is not the mock's)
    assert t["sessions_opened"] == t["sessions_completed"] == 3 == delta(m0, m1, "sessions.total"), t
    assert t["close_codes"] == {"1000": 3} and t["connect_failures"] == 0, t
    assert t["chunks_sent"] == t["answers"] == delta(m0, m1, "chunks.total") > 0, t
    assert t["missing"] == t["out_of_order"] == t["unmatched"] == 0 and t["errors"] == {}, t
    check_agreement(t)
    sp = res["speech"]
    assert res["options"]["scenario"] == "speech" and res["options"]["files"] == 3
    assert [f["fileid"] for f in sp["files"]] == ["speech16k", "speech8k", "speech44k_stereo"], sp["files"]
    for f in sp["files"]:
        assert 2000 <= f["duration_ms"] <= 2600, f   # the same sentence at each rate
    sessions = sp["sessions"]
    assert [s["slot"] for s in sessions] == [0, 1, 2], sessions
    tot = sp["total"]
    for s in sessions:
        # session i starts with file i; one play (file + 1 s gap) covers
        # the 1 s asked for, and it is played to its end
        assert s["plays"][0]["fileid"] == sp["files"][s["slot"]]["fileid"], s["plays"]
        assert all(p["complete"] for p in s["plays"]), s["plays"]
        assert s["completed"] and s["errors"] == 0, s
        for p in s["plays"]:
            assert p["finals"] >= 1 and p["text"], p       # every play got its final, with words
            assert p["end_ms"] - p["speech_end_ms"] >= 1000, p
        lat = s["final_latency_ms"]
        assert lat["count"] == s["finals"] >= 1, s
        # from the chunk holding end_ms: the server waits for 300 ms of
        # silence after it (endpointing), then decodes the utterance
        assert 150 <= lat["p50"] <= lat["p95"] <= lat["max"] < 5000, lat
        assert s["partials"] > 0 and s["window_total_ms"]["count"] >= 1, s
        assert 0 < s["window_buffer_ms"]["p50"] <= s["window_total_ms"]["p50"], s
    assert tot["sessions"] == 3 and tot["plays_complete"] == tot["plays"] >= 3, tot
    assert tot["plays_without_final"] == 0 and tot["unmatched_finals"] == 0, tot
    assert tot["finals"] == sum(s["finals"] for s in sessions)
    assert tot["final_latency_ms"]["count"] == tot["finals"]
    # finals with speech and the empty ones after `stop` are all the server's finals
    assert tot["finals"] + tot["empty_finals"] == t["finals"] == delta(m0, m1, "finals.total"), (tot, t["finals"])
    # one partial per chunk, each with its latency_ms
    assert tot["partials"] == t["chunks_sent"] == tot["partial_total_ms"]["count"], (tot, t["chunks_sent"])
    assert tot["server_busy"] == 0, tot          # two threads, three streams: no window skipped
    pool = tot["pool"]
    assert pool["threads"] == 2 == h.metric(m1, "engine.pool.threads"), pool
    assert pool["real_time_factor"] >= 0 and pool["windows_skipped"] == 0, pool
    assert t["server"]["after"]["pool_threads"] == 2
    # the hypotheses: one line per file, the text of its play
    texts = {p["fileid"]: p["text"] for s in sessions for p in s["plays"]}
    assert hyp_lines == ["%s\t%s" % (f, texts[f]) for f in ("speech16k", "speech8k", "speech44k_stereo")], hyp_lines
    # the report: per session and overall, and the pool
    assert re.search(r"^final ms\s+p50 [0-9.]+ .* \(n=%d\)$" % tot["finals"], out, re.M), out
    assert re.search(r"^speech\s+3 sessions made 3 plays of 3 file\(s\)", out, re.M), out
    assert len(re.findall(r"^\s+[0-2] +1 +1 .* yes$", out, re.M)) == 3, out
    assert re.search(r"pool threads 2 ", out), out
    assert re.search(r"\"after\" read once the server settled: waited [0-9.]+ s", out), out


@pytest.mark.timeout(90)
def test_speech_capacity_search(start_server):
    """speech-capacity in JSON mode: 1, then 2 real-time streams, each step
    judged on its final latency p95; a threshold below any real final
    stops the search at its first step."""
    srv = windowed_server(start_server)
    wav = ["--wav", h.gen_path("speech16k.wav"), "--mode", "json", "--duration", 1]
    res, out = run_load(srv, "--scenario", "speech-capacity", *wav, "--capacity-max", 2)
    steps = res["steps"]
    assert [s["sessions_target"] for s in steps] == [1, 2], steps
    assert all(s["held"] and s["verdict"] == "held" for s in steps), [s["verdict"] for s in steps]
    assert res["capacity_sessions"] == 2
    sp = res["speech"]
    assert [s["sessions_target"] for s in sp["steps"]] == [1, 2]
    for st in sp["steps"]:
        assert st["held"] and st["finals"] >= st["sessions_target"], st
        assert 0 < st["final_latency_ms"]["p95"] <= res["options"]["final_p95_threshold_ms"] == 1500, st
    assert len(sp["sessions"]) == 3 and all(s["finals"] >= 1 for s in sp["sessions"]), sp["sessions"]
    assert re.search(r"^capacity\s+2 real-time streams held \(final p95 <= 1500 ms", out, re.M), out
    # a threshold no final can meet: the first step does not hold
    res, out = run_load(srv, "--scenario", "speech-capacity", *wav, "--final-p95-threshold-ms", 1)
    assert len(res["steps"]) == 1 and not res["steps"][0]["held"], res["steps"]
    assert res["steps"][0]["verdict"].startswith("final p95 "), res["steps"][0]["verdict"]
    assert res["capacity_sessions"] == 0
