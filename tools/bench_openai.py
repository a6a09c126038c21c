#!/usr/bin/python3
"""The OpenAI-compatible route's overhead over POST /v1/transcribe
(docs/BENCHMARKS.md, "OpenAI-compatible route: overhead over REST"): the same
files sent both ways, one request at a time on a keep-alive connection, the
two routes alternating so that both see the same host; prints p50/p90/p99
latency per route and file and the difference, twice: as the client saw it
(request sent to answer read; the form is encoded once beforehand, so the
client's own encoding is not counted), and as the server logged it (its
`request` line's duration_ms: from the request's first byte to the answer
queued).

The server runs one worker with the mock engine at ASR_MOCK_LATENCY_MS
(default 0 here: the engine costs nothing, so what is left is decoding,
the session, the form and the answer). Files: the test suite's espeak-ng
speech (tests/data/generated, tests/integration/run.sh --gen-only), the
26 s conversation, and both as WebM/Opus made by ffmpeg when it is there.

    /usr/bin/python3 tools/bench_openai.py [build/release/asrd] [requests per route and file]
"""
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import json

import requests
from urllib3.filepost import encode_multipart_formdata

binary = sys.argv[1] if len(sys.argv) > 1 else "build/release/asrd"
n = int(sys.argv[2]) if len(sys.argv) > 2 else 300
latency = os.environ.get("ASR_MOCK_LATENCY_MS", "0")
GEN = "tests/data/generated"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(q * len(v)))]


files = [("speech 2.3 s WAV", os.path.join(GEN, "speech16k.wav"), "audio/wav"),
         ("conversation 26 s WAV", os.path.join(GEN, "conversation16k.wav"), "audio/wav")]
tmp = tempfile.mkdtemp(prefix="asrd-bench-")
if shutil.which("ffmpeg"):
    for name, path, _ in list(files):
        out = os.path.join(tmp, os.path.basename(path) + ".webm")
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", path, "-ar", "48000", "-c:a", "libopus",
                        "-b:a", "32k", "-f", "webm", out], check=True)
        files.append((name.replace("WAV", "WebM/Opus"), out, "audio/webm"))

port = free_port()
env = {k: v for k, v in os.environ.items() if not k.startswith("ASR_")}
env.update(ASR_HOST="127.0.0.1", ASR_PORT=str(port), ASR_WORKERS="1", ASR_REDIS_URL="memory",
           ASR_LOG_LEVEL="info", ASR_LOG_FORMAT="json", ASR_MOCK_LATENCY_MS=latency)
logpath = os.path.join(tmp, "asrd.log")
log = open(logpath, "w")
proc = subprocess.Popen([binary], env=env, stderr=log)


def server_ms(path, since):
    """duration_ms of the POST request lines for path logged after byte offset since."""
    out = []
    with open(logpath) as f:
        f.seek(since)
        for line in f:
            try:
                j = json.loads(line)
            except ValueError:
                continue
            if j.get("msg") == "request" and j.get("method") == "POST" and j.get("path") == path:
                out.append(float(j["duration_ms"]))
    return out


def row(name, route, v):
    print("%-28s %-14s %8.2f %8.2f %8.2f %8.2f" % (name, route, pct(v, .5), pct(v, .9), pct(v, .99),
                                                statistics.mean(v)))


def diff(name, a, b):
    print("%-28s %-14s %8.2f %8.2f %8.2f %8.2f" % (
        name, "openai - rest", pct(a, .5) - pct(b, .5), pct(a, .9) - pct(b, .9), pct(a, .99) - pct(b, .99),
        statistics.mean(a) - statistics.mean(b)))

base = "http://127.0.0.1:%d" % port
try:
    for _ in range(200):
        try:
            if requests.get(base + "/v1/health", timeout=1).status_code == 200:
                break
        except requests.ConnectionError:
            time.sleep(0.05)
    print("asrd %s, mock engine latency %s ms, %d requests per route and file, one at a time" % (binary, latency, n))
    print("%-28s %-14s %8s %8s %8s %8s" % ("file", "route", "p50 ms", "p90 ms", "p99 ms", "mean ms"))
    s = requests.Session()
    for name, path, ctype in files:
        data = open(path, "rb").read()
        form, form_type = encode_multipart_formdata({"model": "whisper-1",
                                                     "file": (os.path.basename(path), data, ctype)})
        lat = {"rest": [], "openai": []}
        log.flush()
        since = os.path.getsize(logpath)
        for i in range(n + 10):
            for route in ("rest", "openai") if i % 2 == 0 else ("openai", "rest"):
                t0 = time.perf_counter()
                if route == "rest":
                    r = s.post(base + "/v1/transcribe", data=data, headers={"Content-Type": ctype}, timeout=60)
                else:
                    r = s.post(base + "/v1/audio/transcriptions", data=form, headers={"Content-Type": form_type},
                               timeout=60)
                ms = (time.perf_counter() - t0) * 1000
                assert r.status_code == 200, r.text
                if i >= 10:  # warm-up
                    lat[route].append(ms)
        time.sleep(0.5)  # the last log lines
        srv = {"rest": server_ms("/v1/transcribe", since)[20:], "openai": server_ms("/v1/audio/transcriptions", since)[20:]}
        for route in ("rest", "openai"):
            row(name, route + " (client)", lat[route])
        diff(name, lat["openai"], lat["rest"])
        for route in ("rest", "openai"):
            row(name, route + " (server)", srv[route])
        diff(name, srv["openai"], srv["rest"])
finally:
    proc.terminate()
    proc.wait(10)
    shutil.rmtree(tmp, ignore_errors=True)
