"""Helpers of the job tests (docs/API.md "Jobs"): a webhook receiver (a small
HTTP server in the test), a redis-server with AOF that restarts on the same
port and data, audio that differs by content, and a poll until a job ends."""
import base64
import hashlib
import hmac
import http.server
import io
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import wave

import requests

import asrd_harness as h

FINAL = ("completed", "error", "canceled")
SECRET = "whsec_" + base64.b64encode(b"asrd test webhook secret!").decode()


class Receiver:
    """Records every POST; answers by path: /ok 200, /fail-once 500 the first
    time a job id is seen then 200, /reject 400, /fail 500 always, /audio/<n>
    serves the bytes registered under n (GET)."""

    def __init__(self):
        self.hits = []          # (path, headers dict lower-case, body bytes, time)
        self.seen = set()
        self.files = {}
        self.lock = threading.Lock()
        recv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                name = self.path.split("/audio/", 1)[-1]
                data = recv.files.get(name)
                if data is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "audio/wav")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                hd = {k.lower(): v for k, v in self.headers.items()}
                with recv.lock:
                    recv.hits.append((self.path, hd, body, time.monotonic()))
                    status = 200
                    if self.path.startswith("/reject"):
                        status = 400
                    elif self.path.startswith("/fail-once"):
                        key = json.loads(body)["data"]["id"]
                        if key not in recv.seen:
                            recv.seen.add(key)
                            status = 500
                    elif self.path.startswith("/fail"):
                        status = 500
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def posts(self, job_id=None):
        with self.lock:
            out = [x for x in self.hits]
        if job_id:
            out = [x for x in out if json.loads(x[2])["data"]["id"] == job_id]
        return out

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def verify_signature(headers, body, secret=SECRET):
    """The Standard Webhooks check: v1,base64(HMAC-SHA256(key, id.ts.body))."""
    key = base64.b64decode(secret[len("whsec_"):]) if secret.startswith("whsec_") else secret.encode()
    msg = ("%s.%s." % (headers["webhook-id"], headers["webhook-timestamp"])).encode() + body
    want = base64.b64encode(hmac.new(key, msg, hashlib.sha256).digest()).decode()
    sigs = [s.split(",", 1)[1] for s in headers["webhook-signature"].split() if s.startswith("v1,")]
    return want in sigs


class AofRedis:
    """redis-server with AOF (appendfsync always) on a free port, restartable
    with its data (kill -9 included)."""

    def __init__(self):
        self.port = h.free_port()
        self.dir = tempfile.mkdtemp(prefix="asrd-aof-")
        self.proc = None

    @property
    def url(self):
        return "redis://127.0.0.1:%d" % self.port

    def start(self):
        self.proc = subprocess.Popen(
            [shutil.which("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", self.dir, "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        h.poll(self.ping, 10, desc="redis-server answering PING")
        return self

    def ping(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def cleanup(self):
        self.kill9()
        shutil.rmtree(self.dir, ignore_errors=True)


def distinct_wav(n, seconds=None, base="speech16k.wav"):
    """A WAV that differs from every other n (its content hash): the base
    speech, then n+1 ms of silence (and repeated to about `seconds`)."""
    with wave.open(io.BytesIO(h.read_bytes(base))) as w:
        rate, frames = w.getframerate(), w.readframes(w.getnframes())
    data = frames
    if seconds:
        while len(data) < seconds * rate * 2:
            data += frames
    data += b"\0" * (2 * (n + 1) * rate // 1000)
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(data)
    return out.getvalue()


def submit(srv, body, ctype="audio/wav", params=None, headers=None, timeout=30):
    hd = {"Content-Type": ctype}
    hd.update(headers or {})
    return requests.post(srv.http + "/v1/jobs", data=body, params=params or {}, headers=hd, timeout=timeout)


def get(srv, job_id, headers=None):
    return requests.get(srv.http + "/v1/jobs/" + job_id, headers=headers or {}, timeout=10)


def wait_final(srv, job_id, timeout=30, headers=None):
    """The job once it is completed, error or canceled."""
    last = {}

    def done():
        nonlocal last
        r = get(srv, job_id, headers)
        if r.status_code == 503:     # Redis away (a restart test): ask again
            return None
        assert r.status_code == 200, (r.status_code, r.text)
        last = r.json()
        return last if last["status"] in FINAL else None

    return h.poll(done, timeout, 0.05, desc="job %s final" % job_id)


def metrics_jobs(srv):
    return srv.metrics()["jobs"]
