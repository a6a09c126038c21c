"""Several asrd hosts behind a real HAProxy (deploy/haproxy.cfg) and nginx
(deploy/nginx.conf), sharing one real Redis: what a client sees when a host
dies (kill -9) or drains (SIGTERM) mid-stream, and whether the balancer's
health check takes a draining host out of rotation (docs/API.md "Resuming
a session", "Close codes", GET /v1/health).

Each test starts its own redis-server, two asrd instances ("hosts": one
master + one worker each, worker id prefixes hA and hB) and a balancer whose
configuration is the deploy/ file with loopback ports substituted and faster
health checks. Clients are Python websockets behaving as a real client must:
each keeps every chunk it sent; on a dropped connection (1006) or close
1001 it reconnects through the balancer with ?session_id=, retrying on
409/502/503/504 and connection errors, and resends from last_sequence + 1.

The mock engine is deterministic per session (its words depend on the
session's chunks only), so an uninterrupted session through the balancer
must match a control session on one server message for message. A session
that moved host is compared by properties instead: its engine state starts
afresh on the new host (the words after the move differ) and the VAD restarts
there (utterance bounds may move by a few VAD frames).
"""
import asyncio
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest
import requests
import websockets

import asrd_harness as h
from redis_fixture import RedisServer
from asrd_harness import WS, arun, of_type

pytestmark = [pytest.mark.needs_redis, pytest.mark.slow]

DEPLOY = os.path.join(h.REPO, "deploy")
SLOW = h.is_sanitized()

N_CLIENTS = 8
PACE_S = 1.0 / 15           # 1.5x real time: inside the 2x rate limit
# kill/drain once every client has this many answers: the kill late in the
# second utterance (2 s after the first final, so that only the periodic
# snapshot can explain a recent last_sequence; the clients started first
# are already in its endpointing silence), the drain in its middle
KILL_AT = 45
DRAIN_AT = 38
HEARTBEAT_S = 3.0           # a dead worker's sessions are claimable after this
RESUME_WINDOW_S = 15.0      # how long a client keeps retrying a resume
# Utterance bounds after a move vs the control run. The VAD restarts on the
# new host: bounds move by up to a VAD frame or two, and an utterance whose
# endpointing silence had begun when the state was stored ends at the
# stored offset (up to ASR_ENDPOINTING_MS after its last speech). Far
# tighter than an utterance lost, merged or shifted by resent audio.
BOUNDS_TOL_MS = 300 + 60


# --------------------------------------------------------------------------
# audio: three utterances, each the espeak sentence then 700 ms of silence

def session_chunks():
    one = b"".join(h.chunks_of(h.speech_pcm())) + h.silence(700)
    return h.chunks_of(one * 3)


def total_ms(chunks):
    return sum(len(c) for c in chunks) // 2 * 1000 // h.SR


# --------------------------------------------------------------------------
# processes: redis-server, haproxy, nginx

def haproxy_test_cfg(text, backends, port, stats_port, sock, check_ms=200):
    """deploy/haproxy.cfg made runnable here: loopback binds on free ports,
    the `server` lines replaced by `backends` [(name, port)] with the same
    options, checks every check_ms with fall 1 rise 1, a stats socket at
    sock, no chroot/user/daemon/syslog, a small maxconn. Everything else
    stays as shipped."""
    out = []
    section = None
    servers_done = False
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            out.append(line)
            continue
        tok = s.split()
        if not line[0].isspace():
            section = tok[0] + (" " + tok[1] if len(tok) > 1 else "")
            out.append(line)
            if tok[0] == "global":
                out.append("    stats socket %s mode 600 level admin" % sock)
                out.append("    log stderr format raw local0 info")
            continue
        kw = tok[0]
        if section == "global" and kw in ("log", "chroot", "user", "group", "daemon"):
            continue
        if section == "global" and s.startswith("stats socket"):
            continue
        if section == "global" and kw == "maxconn":
            out.append("    maxconn 1000")      # the FD limit here may be low
            continue
        if kw == "bind":
            bport = stats_port if section == "listen stats" else port
            out.append("    bind 127.0.0.1:%d" % bport)
            continue
        if kw == "default-server":
            opts = " ".join(tok[1:])
            opts = re.sub(r"\binter \S+", "inter %dms" % check_ms, opts)
            opts = re.sub(r"\bfall \d+", "fall 1", opts)
            opts = re.sub(r"\brise \d+", "rise 1", opts)
            opts = re.sub(r"\bslowstart \S+", "", opts)   # both hosts equal from the start
            out.append("    default-server " + opts)
            continue
        if kw == "timeout" and len(tok) > 1 and tok[1] == "check":
            out.append("    timeout check 1s")
            continue
        if kw == "server" and section.startswith("backend"):
            if not servers_done:
                for name, bport in backends:
                    out.append("    server %s 127.0.0.1:%d %s" % (name, bport, " ".join(tok[3:])))
                servers_done = True
            continue
        out.append(line)
    assert servers_done, "no `server` line in a backend of deploy/haproxy.cfg"
    return "\n".join(out) + "\n"


class HAProxy:
    def __init__(self, backends):
        self.backends = backends
        self.port = h.free_port()
        self.stats_port = h.free_port()
        self.dir = tempfile.mkdtemp(prefix="asrd-bal-haproxy-")
        self.sock = os.path.join(self.dir, "admin.sock")
        self.cfg = os.path.join(self.dir, "haproxy.cfg")
        self.log_path = os.path.join(self.dir, "haproxy.log")
        self.proc = None

    @property
    def stream_url(self):
        return "ws://127.0.0.1:%d/v1/transcribe/stream" % self.port

    @property
    def http(self):
        return "http://127.0.0.1:%d" % self.port

    def start(self):
        exe = shutil.which("haproxy")
        assert exe, "haproxy is not installed (scripts/deps.sh installs it)"
        with open(os.path.join(DEPLOY, "haproxy.cfg")) as f:
            text = f.read()
        with open(self.cfg, "w") as f:
            f.write(haproxy_test_cfg(text, self.backends, self.port, self.stats_port, self.sock))
        chk = subprocess.run([exe, "-c", "-f", self.cfg], capture_output=True, text=True)
        assert chk.returncode == 0, "test copy of deploy/haproxy.cfg is invalid:\n%s%s" % (
            chk.stdout, chk.stderr)
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([exe, "-f", self.cfg, "-db"], stdout=self.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        names = [n for n, _ in self.backends]
        h.poll(lambda: self.proc.poll() is not None or self.all_up(names), 10,
               desc="haproxy up with every backend UP")
        assert self.proc.poll() is None, "haproxy exited:\n" + self.log_text()
        return self

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return h.tail(f.read().decode("utf-8", "replace"), 40)
        except OSError:
            return ""

    def command(self, cmd):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect(self.sock)
            s.sendall(cmd.encode() + b"\n")
            data = b""
            while True:
                d = s.recv(65536)
                if not d:
                    break
                data += d
        return data.decode()

    def servers(self):
        """{server name: "show stat" row as a dict} for backend asrd."""
        try:
            text = self.command("show stat")
        except OSError:
            return {}
        lines = text.splitlines()
        if not lines or not lines[0].startswith("# "):
            return {}
        head = lines[0][2:].split(",")
        out = {}
        for ln in lines[1:]:
            row = dict(zip(head, ln.split(",")))
            if row.get("pxname") == "asrd" and row.get("svname") not in ("FRONTEND", "BACKEND"):
                out[row["svname"]] = row
        return out

    def all_up(self, names):
        rows = self.servers()
        return all(n in rows and rows[n]["status"] == "UP" and
                   rows[n]["check_status"].startswith("L7OK") for n in names)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)   # -db: hard stop
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if getattr(self, "log", None):
            self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def nginx_test_cfg(text, backends, port, prefix):
    """deploy/nginx.conf made runnable here: one worker, loopback listen on a
    free port, the upstream's servers replaced by `backends` with the same
    parameters, pid and logs under prefix, no user switch."""
    out = []
    servers_done = False
    in_upstream = False
    for line in text.splitlines():
        s = line.strip()
        tok = s.split()
        if not tok or s.startswith("#"):
            out.append(line)
            continue
        if tok[0] == "upstream":
            in_upstream = True
        elif in_upstream and s == "}":
            in_upstream = False
        if tok[0] in ("user", "pid"):
            continue
        if tok[0] == "worker_processes":
            out.append("worker_processes 1;")
            out.append("pid %s/nginx.pid;" % prefix)
            continue
        if tok[0] == "access_log":
            out.append("    access_log %s/access.log %s" % (prefix, " ".join(tok[2:])))
            continue
        if tok[0] == "error_log":
            out.append("    error_log %s/error.log info;" % prefix)
            continue
        if tok[0] == "listen":     # the address only; its parameters stay
            rest = " ".join(tok[2:]) if not tok[1].endswith(";") else ""
            out.append("        listen 127.0.0.1:%d%s" % (port, " " + rest if rest else ";"))
            continue
        if in_upstream and tok[0] == "server":
            if not servers_done:
                for _, bport in backends:
                    out.append("        server 127.0.0.1:%d %s" % (bport, " ".join(tok[2:])))
                servers_done = True
            continue
        out.append(line)
    assert servers_done, "no `server` line in the upstream of deploy/nginx.conf"
    return "\n".join(out) + "\n"


class Nginx:
    def __init__(self, backends):
        self.backends = backends
        self.port = h.free_port()
        self.dir = tempfile.mkdtemp(prefix="asrd-bal-nginx-")
        self.cfg = os.path.join(self.dir, "nginx.conf")
        self.proc = None

    @property
    def stream_url(self):
        return "ws://127.0.0.1:%d/v1/transcribe/stream" % self.port

    def start(self):
        exe = shutil.which("nginx")
        assert exe, "nginx is not installed (scripts/deps.sh installs nginx-light)"
        with open(os.path.join(DEPLOY, "nginx.conf")) as f:
            text = f.read()
        with open(self.cfg, "w") as f:
            f.write(nginx_test_cfg(text, self.backends, self.port, self.dir))
        args = [exe, "-p", self.dir, "-c", self.cfg, "-e", os.path.join(self.dir, "error.log")]
        chk = subprocess.run(args + ["-t"], capture_output=True, text=True)
        assert chk.returncode == 0, "test copy of deploy/nginx.conf is invalid:\n" + chk.stderr
        self.out = open(os.path.join(self.dir, "stderr.log"), "wb")
        self.proc = subprocess.Popen(args + ["-g", "daemon off;"], stdout=self.out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

        def up():
            assert self.proc.poll() is None, "nginx exited: " + self.log_text()
            try:
                return requests.get("http://127.0.0.1:%d/v1/health" % self.port,
                                    timeout=1).status_code == 200
            except requests.RequestException:
                return False
        h.poll(up, 10, desc="nginx answering /v1/health")
        return self

    def log_text(self):
        out = ""
        for n in ("stderr.log", "error.log"):
            try:
                with open(os.path.join(self.dir, n), "rb") as f:
                    out += h.tail(f.read().decode("utf-8", "replace"), 20)
            except OSError:
                pass
        return out

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)   # graceful
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if getattr(self, "out", None):
            self.out.close()
        shutil.rmtree(self.dir, ignore_errors=True)


# --------------------------------------------------------------------------
# hosts

def host_env(redis, prefix, **extra):
    env = {"ASR_REDIS_URL": redis.url, "ASR_WORKERS": 1, "ASR_WORKER_ID": prefix,
           "ASR_MOCK_LATENCY_MS": 20, "ASR_ENDPOINTING_MS": 300}
    env.update(extra)
    return env


@pytest.fixture
def redis():
    r = RedisServer().start()
    try:
        yield r
    finally:
        r.cleanup()


@pytest.fixture
def stack(redis, start_server):
    """Two hosts hA, hB sharing redis, behind haproxy."""
    started = []

    def make(**extra):
        a = start_server(**host_env(redis, "hA", **extra))
        b = start_server(**host_env(redis, "hB", **extra))
        lb = HAProxy([("hA", a.port), ("hB", b.port)]).start()
        started.append(lb)
        return a, b, lb

    try:
        yield make
    finally:
        for lb in started:
            lb.stop()


# --------------------------------------------------------------------------
# a client that survives host loss

RETRY_STATUS = (409, 502, 503, 504)


class Conn:
    """One WebSocket connection of a session: its `session` message and
    every later message, with arrival times (time.monotonic())."""

    def __init__(self, session, t_open):
        self.session = session
        self.t_open = t_open
        self.msgs = []
        self.times = []
        self.close_code = None
        self.close_reason = None
        self.t_close = None
        self.stop_sent = False

    def answers(self):
        return [m for m in self.msgs if h.is_answer(m)]

    def answered(self):
        return [m["sequence"] for m in self.answers()]


class Client:
    stall_s = None                  # a connection silent this long is given up (None: never)

    def __init__(self, name, url, chunks):
        self.name = name
        self.url = url
        self.chunks = chunks        # every chunk, kept for resends
        self.conns = []
        self.retries = {}           # why a connect attempt failed -> count
        self.session_id = None

    @property
    def n_answers(self):
        """Answers received so far, all connections together."""
        return sum(len(c.answered()) for c in self.conns)

    def _retry(self, why):
        self.retries[why] = self.retries.get(why, 0) + 1

    async def _connect(self):
        if self.session_id is None:
            w, s = await WS.open_session(self.url)
            return w, s
        q = "?session_id=" + self.session_id
        deadline = time.monotonic() + RESUME_WINDOW_S * (2 if SLOW else 1)
        while True:
            try:
                return await WS.open_session(self.url, q, timeout=5)
            except websockets.InvalidStatusCode as e:
                if e.status_code not in RETRY_STATUS:
                    raise AssertionError("%s: resume refused with HTTP %d" % (self.name, e.status_code))
                self._retry(e.status_code)
            except (OSError, asyncio.TimeoutError, websockets.InvalidHandshake,
                    websockets.ConnectionClosed, h.Closed) as e:
                self._retry(type(e).__name__)
            if time.monotonic() > deadline:
                raise AssertionError("%s: no resume within %.0f s (retries: %r)"
                                     % (self.name, RESUME_WINDOW_S, self.retries))
            await asyncio.sleep(0.2)

    async def _send(self, w, conn, first_seq):
        try:
            for c in self.chunks[first_seq - 1:]:
                await w.conn.send(c)
                await asyncio.sleep(PACE_S)
            await w.conn.send(json.dumps({"type": "stop"}))
            conn.stop_sent = True
        except websockets.ConnectionClosed:
            pass

    async def run(self):
        """Streams the whole session, reconnecting as often as needed."""
        while True:
            w, s = await self._connect()
            conn = Conn(s, time.monotonic())
            self.conns.append(conn)
            if self.session_id is None:
                self.session_id = s["session_id"]
                first = 1
            else:
                assert s["session_id"] == self.session_id, (self.name, s)
                first = s["last_sequence"] + 1
            sender = asyncio.ensure_future(self._send(w, conn, first))
            try:
                while True:
                    try:
                        raw = await asyncio.wait_for(w.conn.recv(), self.stall_s)
                    except asyncio.TimeoutError:
                        conn.close_code, conn.close_reason = 1006, "stalled"
                        conn.t_close = time.monotonic()
                        w.abort()
                        break
                    except websockets.ConnectionClosed as e:
                        conn.close_code = e.rcvd.code if e.rcvd is not None else 1006
                        conn.close_reason = e.rcvd.reason if e.rcvd is not None else ""
                        conn.t_close = time.monotonic()
                        break
                    conn.msgs.append(json.loads(raw))
                    conn.times.append(time.monotonic())
            finally:
                if not sender.done():
                    sender.cancel()
                    try:
                        await sender
                    except asyncio.CancelledError:
                        pass
            if conn.close_code == 1000 and conn.stop_sent:
                return self
            assert conn.close_code in (1001, 1006), \
                "%s: closed %r %r" % (self.name, conn.close_code, conn.close_reason)


async def run_clients(clients, trigger_at, trigger, stagger=0.05):
    """Starts the clients (staggered, so that leastconn sees each one's
    connection before choosing for the next), calls trigger() once every
    client has trigger_at answers, and waits for them all."""
    tasks = []
    for c in clients:
        tasks.append(asyncio.ensure_future(c.run()))
        await asyncio.sleep(stagger)
    t_trigger = None
    while t_trigger is None:
        done = [t for t in tasks if t.done()]
        for t in done:
            t.result()          # a client that failed early: raise now
        if all(c.n_answers >= trigger_at for c in clients):
            trigger()
            t_trigger = time.monotonic()
        await asyncio.sleep(0.01)
    await asyncio.gather(*tasks)
    return t_trigger


# --------------------------------------------------------------------------
# checks

def finals_of(msgs, nonempty=True):
    return [m for m in of_type(msgs, "final") if m["text"] or not nonempty]


def final_keys(finals):
    return [(f["text"], f["start_ms"], f["end_ms"], f["sequence"]) for f in finals]


def bounds(finals):
    return [(f["start_ms"], f["end_ms"]) for f in finals]


def check_session(c, n_chunks, audio_ms):
    """What must hold for every client, moved or not: docs/API.md's
    sequence and final rules over the whole session."""
    name = c.name
    last = c.conns[-1]
    assert last.close_code == 1000 and last.stop_sent, (name, last.close_code)
    # -- answers: each connection answers its chunks in order, exactly once
    for i, conn in enumerate(c.conns):
        first = conn.session["last_sequence"] + 1
        got = conn.answered()
        assert got == list(range(first, first + len(got))), \
            "%s conn %d: answers not %d, %d, ...: %r" % (name, i, first, first + 1, got)
        assert not [m for m in conn.answers() if m["type"] == "error"], \
            "%s conn %d: %s" % (name, i, h.short(conn.msgs))
        if i + 1 < len(c.conns):
            # the next connection resumes where the stored state ends: no
            # answer the client never saw (would be a lost partial), and no
            # final that the next connection does not know of
            nxt = c.conns[i + 1].session["last_sequence"]
            assert nxt <= (got[-1] if got else first - 1), \
                "%s: resumed at last_sequence %d but conn %d answered only up to %r" % (
                    name, nxt, i, got[-1:] or None)
            for f in of_type(conn.msgs, "final"):
                assert f["sequence"] <= nxt, \
                    "%s: final %r sent before the drop is not in the stored state (last_sequence %d)" \
                    % (name, f, nxt)
    assert c.conns[-1].answered()[-1:] == [n_chunks] or \
        (c.conns[-1].session["last_sequence"] == n_chunks and not c.conns[-1].answered()), \
        "%s: last chunk %d not answered: %s" % (name, n_chunks, h.short(c.conns[-1].msgs))
    # -- the latest partial per sequence is what the client keeps
    latest = {}
    for conn in c.conns:
        for m in conn.msgs:
            if m["type"] == "partial":
                latest[m["sequence"]] = m["text"]
    assert sorted(latest) == list(range(1, n_chunks + 1)), "%s: chunks without a partial" % name
    # -- finals over the whole session
    finals = [f for conn in c.conns for f in of_type(conn.msgs, "final")]
    assert finals and finals[-1] is last.msgs[-1], \
        "%s: the session does not end with a final: %s" % (name, h.short(last.msgs))
    end = finals[-1]
    assert (end["text"], end["start_ms"], end["end_ms"], end["sequence"]) == \
        ("", audio_ms, audio_ms, n_chunks), "%s: the stop's final: %r" % (name, end)
    seqs = [f["sequence"] for f in finals]
    assert seqs == sorted(set(seqs)), "%s: final sequences not increasing: %r" % (name, seqs)
    spoken = [f for f in finals if f["text"]]
    b = bounds(spoken)
    assert len(set(b)) == len(b), "%s: a final repeated: %r" % (name, b)
    prev_end = -1
    for f in spoken:
        assert prev_end <= f["start_ms"] < f["end_ms"] <= audio_ms, \
            "%s: final bounds overlap or run backwards: %r" % (name, b)
        assert f["sequence"] == math.ceil(f["end_ms"] / 100), \
            "%s: final.sequence is not the chunk holding end_ms: %r" % (name, f)
        prev_end = f["end_ms"]
    # -- each final is the words of its chunks' partials, none lost or doubled
    prev = 0
    for f in finals:
        words = " ".join(latest[s] for s in range(prev + 1, f["sequence"] + 1) if latest[s])
        assert f["text"] == words, "%s: final %r is not its partials %r" % (name, f["text"], words)
        prev = f["sequence"]
    return finals


async def control_run(url, chunks):
    """One uninterrupted session on one server: the reference."""
    w, s = await WS.open_session(url)
    for ch in chunks:
        await w.send_bytes(ch)
        await asyncio.sleep(PACE_S)
    await w.send_json({"type": "stop"})
    await w.until_closed(30)
    assert w.close_code == 1000
    return w.msgs


def check_like_control(c, control, upto=None):
    """The first connection's partials (up to sequence upto) are the
    control run's, word for word."""
    ctl_partials = {m["sequence"]: m["text"] for m in of_type(control, "partial")}
    for conn in c.conns[:1]:
        for m in of_type(conn.msgs, "partial"):
            if upto is None or m["sequence"] <= upto:
                assert m["text"] == ctl_partials[m["sequence"]], \
                    "%s: partial %d differs from the control run: %r vs %r" % (
                        c.name, m["sequence"], m["text"], ctl_partials[m["sequence"]])


def host_of(conn):
    return conn.session["worker_id"][:2]


def split_by_host(clients):
    on_a = [c for c in clients if host_of(c.conns[0]) == "hA"]
    on_b = [c for c in clients if host_of(c.conns[0]) == "hB"]
    assert len(on_a) + len(on_b) == len(clients), [c.conns[0].session for c in clients]
    assert len(on_a) >= 2 and len(on_b) >= 2, \
        "leastconn did not spread %d sessions over both hosts: %d on hA, %d on hB" % (
            len(clients), len(on_a), len(on_b))
    return on_a, on_b


def wait_no_sessions(srv):
    """The store counts the whole service: once every session stopped,
    nothing is left (the dead host's sessions were claimed, then ended)."""
    h.poll(lambda: srv.health()["active_sessions"] == 0, 10,
           desc="active_sessions 0 on the surviving host")


# --------------------------------------------------------------------------
# tests

@pytest.mark.timeout(90)
def test_host_killed_sessions_resume_on_the_other_host(stack):
    host_a, host_b, lb = stack()
    chunks = session_chunks()
    n, audio_ms = len(chunks), total_ms(chunks)
    clients = [Client("client%d" % i, lb.stream_url, chunks) for i in range(N_CLIENTS)]

    async def go():
        control = asyncio.ensure_future(control_run(host_b.stream_url, chunks))
        t_kill = await run_clients(clients, KILL_AT, lambda: host_a.kill9())
        return t_kill, await control

    t_kill, control = arun(go(), 80)
    on_a, on_b = split_by_host(clients)
    ctl_finals = finals_of(control)
    assert len(ctl_finals) == 3, h.short(control)

    for c in on_b:
        # never touched: exactly what one server gives
        assert len(c.conns) == 1, (c.name, [x.close_code for x in c.conns])
        finals = check_session(c, n, audio_ms)
        check_like_control(c, control)
        assert final_keys(finals) == final_keys(of_type(control, "final")), \
            "%s: finals differ from the control run" % c.name

    resume_delays = []
    for c in on_a:
        assert len(c.conns) == 2, "%s: expected one drop and one resume, got closes %r" % (
            c.name, [x.close_code for x in c.conns])
        dropped, resumed = c.conns
        assert dropped.close_code == 1006, (c.name, dropped.close_code, dropped.close_reason)
        s = resumed.session
        assert s["resumed"] is True and s["session_id"] == c.session_id, s
        assert host_of(resumed) == "hB", "%s resumed on %r" % (c.name, s["worker_id"])
        # snapshots at most a second apart: everything answered 1.5 s
        # before the kill is in the stored state
        old = [m["sequence"] for m, t in zip(dropped.msgs, dropped.times)
               if h.is_answer(m) and t < t_kill - 1.5]
        assert not old or s["last_sequence"] >= old[-1], \
            "%s: snapshot too old: last_sequence %d, answered %d 1.5 s before the kill" % (
                c.name, s["last_sequence"], old[-1])
        # claimable only once the dead worker's heartbeat expired (409 before)
        delay = resumed.t_open - t_kill
        resume_delays.append(round(delay, 2))
        assert c.retries.get(409), "%s: resumed %.2f s after the kill without a 409 first (%r)" % (
            c.name, delay, c.retries)
        assert 1.0 <= delay <= HEARTBEAT_S + (8 if SLOW else 3), \
            "%s: resumed %.2f s after the kill (heartbeat %.0f s)" % (c.name, delay, HEARTBEAT_S)
        check_like_control(c, control, upto=s["last_sequence"])
        finals = check_session(c, n, audio_ms)
        # the utterances themselves survive the move: as many as the control
        # run has, in about the same places
        spoken = finals_of(finals)
        assert len(spoken) == len(ctl_finals), "%s: %r vs control %r" % (
            c.name, bounds(spoken), bounds(ctl_finals))
        for got, ref in zip(bounds(spoken), bounds(ctl_finals)):
            assert abs(got[0] - ref[0]) <= BOUNDS_TOL_MS and abs(got[1] - ref[1]) <= BOUNDS_TOL_MS, \
                "%s: utterance %r far from the control run's %r" % (c.name, got, ref)
    print("kill -9: %d sessions moved; resumed after %r s; retries %r; "
          "answered before the drop / last_sequence %r" % (
              len(on_a), resume_delays, [c.retries for c in on_a],
              [(c.conns[0].answered()[-1], c.conns[1].session["last_sequence"]) for c in on_a]))
    wait_no_sessions(host_b)


@pytest.mark.timeout(90)
def test_host_drained_sessions_resume_at_once(stack):
    host_a, host_b, lb = stack()
    chunks = session_chunks()
    n, audio_ms = len(chunks), total_ms(chunks)
    clients = [Client("client%d" % i, lb.stream_url, chunks) for i in range(N_CLIENTS)]

    async def go():
        control = asyncio.ensure_future(control_run(host_b.stream_url, chunks))
        t_term = await run_clients(clients, DRAIN_AT, host_a.terminate)
        return t_term, await control

    t_term, control = arun(go(), 80)
    on_a, on_b = split_by_host(clients)
    ctl_all = of_type(control, "final")

    for c in on_b:
        assert len(c.conns) == 1, (c.name, [x.close_code for x in c.conns])
        check_session(c, n, audio_ms)
        check_like_control(c, control)
        assert final_keys(of_type(c.conns[0].msgs, "final")) == final_keys(ctl_all), c.name

    for c in on_a:
        assert len(c.conns) == 2, "%s: expected one drain and one resume, got closes %r" % (
            c.name, [x.close_code for x in c.conns])
        drained, resumed = c.conns
        assert drained.close_code == 1001, (c.name, drained.close_code, drained.close_reason)
        # the open utterance's final comes after every answer; only chunks
        # that arrived during the drain may follow, refused without a
        # number (docs/API.md: "the session is closing: no more audio")
        msgs = drained.msgs
        fin = max(i for i, m in enumerate(msgs) if m["type"] == "final")
        assert msgs[fin]["text"] and not [m for m in msgs[fin:] if h.is_answer(m)], \
            "%s: no final for the open utterance before 1001: %s" % (c.name, h.short(msgs))
        assert all(m["type"] == "error" and m["code"] == "INVALID_MESSAGE" for m in msgs[fin + 1:]), \
            "%s: after the drain's final: %s" % (c.name, h.short(msgs[fin + 1:]))
        s = resumed.session
        assert s["resumed"] is True and s["session_id"] == c.session_id, s
        assert host_of(resumed) == "hB", "%s resumed on %r" % (c.name, s["worker_id"])
        # the drain stored the final state: resume exactly after the last
        # answer, at once (no 409 wait for a heartbeat)
        assert s["last_sequence"] == drained.answered()[-1], (c.name, s, drained.answered()[-3:])
        assert not c.retries.get(409), "%s: 409 after a drain (%r)" % (c.name, c.retries)
        delay = resumed.t_open - drained.t_close
        assert delay < (3.0 if SLOW else 1.5), "%s: resume took %.2f s after 1001 (%r)" % (
            c.name, delay, c.retries)
        check_like_control(c, control)
        finals = check_session(c, n, audio_ms)
        # finals before the drain are the control run's
        before = of_type(drained.msgs, "final")[:-1]
        assert final_keys(before) == final_keys(ctl_all[:len(before)]), c.name
        # the drain ends one utterance early: the control's, plus at most one
        assert len(finals_of(control)) <= len(finals_of(finals)) <= len(finals_of(control)) + 1, \
            (c.name, bounds(finals_of(finals)), bounds(finals_of(control)))
    print("drain: %d sessions moved; resumed %r s after their 1001; retries %r" % (
        len(on_a), [round(c.conns[1].t_open - c.conns[0].t_close, 3) for c in on_a],
        [c.retries for c in on_a]))
    # the drained host exits 0 once its sessions are gone (checked again,
    # with the sanitizer report, at teardown)
    host_a.stop(15)
    wait_no_sessions(host_b)


def uuid_like(s):
    return re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", s or "")


@pytest.mark.timeout(60)
def test_draining_host_leaves_rotation(stack):
    host_a, host_b, lb = stack()
    # X-Request-Id: set by haproxy when absent, kept when the client sent one
    r = requests.get(lb.http + "/v1/health", timeout=5)
    assert r.status_code == 200 and uuid_like(r.headers.get("X-Request-Id")), r.headers
    r = requests.get(lb.http + "/v1/health", headers={"X-Request-Id": "client-id-42"}, timeout=5)
    assert r.headers.get("X-Request-Id") == "client-id-42", r.headers

    # A REST upload in progress on hA keeps it draining for as long as we
    # like (in-flight requests finish; the body has to arrive within
    # ASR_HANDSHAKE_TIMEOUT_S, 10 s by default).
    holder = h.RawConn(host_a.port, timeout=5)
    holder.send(h.build_request("POST", "/v1/transcribe", {
        "Content-Type": "audio/pcm; rate=16000", "Content-Length": "320000"}) + b"\0" * 3200)
    time.sleep(0.2)
    host_a.terminate()
    t_term = time.monotonic()
    time.sleep(0.1)
    # the draining host itself: 503 {"status":"draining"} (docs/API.md "GET /v1/health")
    try:
        rr = requests.get(host_a.http + "/v1/health", timeout=1)
        direct = (rr.status_code, rr.text)
    except requests.RequestException as e:
        direct = ("no answer", repr(e))
    # haproxy marks it down (checks every 200 ms, fall 1)
    seen = {}

    def a_down():
        row = lb.servers().get("hA")
        if row and row["status"] != "UP":
            seen.update(row)
            return True
        return False
    h.poll(a_down, 5, desc="haproxy marking the draining host down")
    t_down = time.monotonic() - t_term

    # new sessions meanwhile: every one on hB, none refused
    async def sessions():
        out = []
        for _ in range(6):
            w, s = await WS.open_session(lb.stream_url)
            for ch in h.chunks_of(h.speech_pcm())[:3]:
                await w.send_bytes(ch)
            msgs = await w.stop(15)
            out.append((s, msgs, w.close_code))
        return out
    got = arun(sessions(), 40)
    still_draining = host_a.proc.poll() is None
    holder.close()
    for s, msgs, code in got:
        assert s["worker_id"].startswith("hB"), \
            "a new session landed on the draining host: %r" % s
        assert code == 1000 and [m["sequence"] for m in msgs if h.is_answer(m)] == [1, 2, 3], \
            (code, h.short(msgs))
    assert still_draining, "hA exited before the new sessions were made: the drain was not held"
    host_a.stop(15)
    print("drain: hA down after %.2f s, check %s/%s; direct /v1/health: %r" % (
        t_down, seen.get("check_status"), seen.get("check_code"), direct))
    # why it left: its health check answered 503 (not a timeout, not refused)
    assert direct[0] == 503 and json.loads(direct[1]).get("status") == "draining", \
        "a draining host must answer GET /v1/health with 503 {\"status\":\"draining\"}, got %r" % (direct,)
    assert seen["check_status"] == "L7STS" and seen["check_code"] == "503", \
        "haproxy took hA out for %s/%s, not for its 503" % (seen["check_status"], seen["check_code"])


@pytest.mark.timeout(60)
def test_nginx_config_streams_and_resumes(redis, start_server):
    """deploy/nginx.conf, run for real: upgrade through it, drop the
    connection, resume through it (any host), finish with close 1000."""
    a = start_server(**host_env(redis, "hA"))
    b = start_server(**host_env(redis, "hB"))
    ng = Nginx([("hA", a.port), ("hB", b.port)]).start()
    try:
        chunks = h.chunks_of(h.speech_pcm())
        c = Client("nginx", ng.stream_url, chunks)

        async def go():
            w, s = await WS.open_session(ng.stream_url, headers={"X-Request-Id": "ng-rid-7"})
            rid = w.conn.response_headers.get("X-Request-Id")
            for ch in chunks[:8]:
                await w.send_bytes(ch)
            first = await w.answers(8, 15)
            w.abort()
            c.session_id = s["session_id"]
            await c.run()       # resumes (retrying a 409 until the drop is seen)
            return rid, s, first

        rid, s, first = arun(go(), 40)
        assert rid == "ng-rid-7"
        resumed = c.conns[0]
        assert resumed.session["resumed"] is True, resumed.session
        assert resumed.session["last_sequence"] == 8, resumed.session
        assert resumed.close_code == 1000
        ans = resumed.answered()
        assert ans == list(range(9, len(chunks) + 1)), ans
        assert of_type(resumed.msgs, "final")[-1]["end_ms"] == total_ms(chunks)
    finally:
        ng.stop()
