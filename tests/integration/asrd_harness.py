"""Helpers for the asrd integration suite: start the real binary on a free
loopback port, talk to it over raw sockets, `requests` and Python
`websockets` (Debian 10.4, legacy asyncio API), load the espeak-ng audio.

Nothing here knows the server's internals: every assertion a test makes is
about docs/API.md behaviour.
"""
import asyncio
import base64
import glob
import json
import os
import re
import select
import shlex
import signal
import socket
import subprocess
import tempfile
import time

import requests
import websockets

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
GEN_DIR = os.path.join(REPO, "tests", "data", "generated")
RUN_SH = os.path.join(REPO, "tests", "integration", "run.sh")

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer")

SR = 16000
CHUNK_MS = 100
CHUNK_BYTES = SR * 2 * CHUNK_MS // 1000  # 3200: 100 ms of 16 kHz s16 mono


def asrd_bin():
    b = os.environ.get("ASRD_BIN", "build/release/asrd")
    if not os.path.isabs(b):
        b = os.path.join(REPO, b)
    return b


def is_sanitized(path=None):
    return "asan" in (path or asrd_bin())


def sanitizer_env():
    if not is_sanitized():
        return {}
    return {
        "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0",
        "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
    }


def check_sanitizer_output(text, what="server"):
    """Fails when a sanitizer reported something (only for sanitized builds)."""
    if not is_sanitized():
        return
    for m in SANITIZER_MARKERS:
        assert m not in text, "%s stderr has %r:\n%s" % (what, m, tail(text, 60))


# ASRD_WRAPPER: a command every server runs under, e.g. (make valgrind)
#   valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
#            --suppressions=tests/valgrind.supp
# valgrind's report goes to <server stderr>.vg.<pid> (one per process: the
# master and each forked worker) unless the wrapper gives --log-file, where
# %q{ASRD_SERVER_TAG} names the server. stop() fails on errors or definite
# leaks in them, as on a sanitizer report. Start and stop waits are
# WRAP_SLOW times longer.
WRAPPER = shlex.split(os.environ.get("ASRD_WRAPPER", ""))
WRAP_SLOW = 10 if WRAPPER else 1


def wrapper_argv(stderr_path):
    """(argv prefix, glob of the wrapper's report files) for one server."""
    if not WRAPPER:
        return [], None
    argv = list(WRAPPER)
    if os.path.basename(argv[0]) != "valgrind":
        return argv, None
    given = [a.split("=", 1)[1] for a in argv if a.startswith("--log-file=")]
    if not given:
        given = [stderr_path + ".vg.%p"]
        argv.insert(1, "--log-file=" + given[0])
    tag = os.path.basename(stderr_path)
    return argv, given[-1].replace("%q{ASRD_SERVER_TAG}", tag).replace("%p", "*")


def check_wrapper_output(pattern, what="server"):
    """Fails when a valgrind report of the server has errors or definite leaks."""
    for path in sorted(glob.glob(pattern)) if pattern else []:
        with open(path, errors="replace") as f:
            text = f.read()
        bad = re.search(r"ERROR SUMMARY: [1-9]|definitely lost: [1-9]", text)
        assert not bad, "%s: valgrind found problems (%s):\n%s" % (what, path, tail(text, 80))


def tail(text, n=40):
    return "\n".join(text.splitlines()[-n:])


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def base_env(extra=None):
    env = dict(os.environ)
    # a test's server must not inherit ASR_* settings of the shell running it
    for k in list(env):
        if k.startswith("ASR_"):
            del env[k]
    env.update(sanitizer_env())
    for k, v in (extra or {}).items():
        env[k] = str(v)
    return env


_LOG_DIR = None


def log_dir():
    global _LOG_DIR
    if _LOG_DIR is None:
        _LOG_DIR = tempfile.mkdtemp(prefix="asrd-it-")
    return _LOG_DIR


class Server:
    """One asrd process on 127.0.0.1:<free port>."""

    def __init__(self, env=None, name="asrd", own_group=False):
        self.port = free_port()
        # the parent of the private store's runtime directory (empty
        # ASR_REDIS_URL): one per server, so that stop() can tell that its
        # redis-server and directory are gone. Not named by the port alone:
        # a port comes back in a later test, and a server that was killed
        # (no clean exit) leaves its directory behind
        os.makedirs(log_dir(), exist_ok=True)
        self.runtime_dir = tempfile.mkdtemp(prefix="rt-%d-" % self.port, dir=log_dir())
        # one worker unless a test asks for more: this machine has several
        # cores, and most tests read one worker's counters
        self.env = {"ASR_HOST": "127.0.0.1", "ASR_PORT": self.port, "ASR_WORKERS": 1,
                    "ASR_RUNTIME_DIR": self.runtime_dir}
        self.env.update(env or {})
        self.name = name
        # own_group: the server leads a process group of its own (pgid =
        # its pid), so a test can signal the group as a terminal's Ctrl-C
        # or systemd does; otherwise it shares pytest's group
        self.own_group = own_group
        self.stderr_path = os.path.join(log_dir(), "%s-%d.stderr" % (name, self.port))
        self.stdout_path = os.path.join(log_dir(), "%s-%d.stdout" % (name, self.port))
        self.proc = None
        self.wrapper_logs = None
        self.exit_code = None
        self.checked = False
        self.term_sent = False

    # -- addresses
    @property
    def http(self):
        return "http://127.0.0.1:%d" % self.port

    @property
    def ws(self):
        return "ws://127.0.0.1:%d" % self.port

    @property
    def stream_url(self):
        return self.ws + "/v1/transcribe/stream"

    # -- life cycle
    def start(self, timeout=10.0):
        binary = asrd_bin()
        assert os.access(binary, os.X_OK), "no server binary at %s (set ASRD_BIN)" % binary
        self._err = open(self.stderr_path, "wb")
        self._out = open(self.stdout_path, "wb")
        wrap, self.wrapper_logs = wrapper_argv(self.stderr_path)
        env = base_env(self.env)
        env["ASRD_SERVER_TAG"] = os.path.basename(self.stderr_path)
        self.proc = subprocess.Popen(wrap + [binary], env=env, stdin=subprocess.DEVNULL,
                                     stdout=self._out, stderr=self._err, cwd=REPO,
                                     start_new_session=self.own_group)
        timeout *= WRAP_SLOW
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                self._close_files()
                raise AssertionError("server exited with %d before answering /v1/health:\n%s"
                                     % (rc, tail(self.stderr())))
            try:
                r = requests.get(self.http + "/v1/health", timeout=1)
                if r.status_code in (200, 503):
                    return self
                last = r.status_code
            except requests.RequestException as e:
                last = e
            time.sleep(0.05)
        self.kill()
        raise AssertionError("server did not answer /v1/health within %.0f s (last: %r):\n%s"
                             % (timeout, last, tail(self.stderr())))

    def _close_files(self):
        for f in (getattr(self, "_err", None), getattr(self, "_out", None)):
            if f and not f.closed:
                f.close()

    def stderr(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_lines(self):
        """stderr parsed as JSON log lines (lines that are not JSON are skipped)."""
        out = []
        for line in self.stderr().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def terminate(self):
        """Sends SIGTERM (once) without waiting."""
        if self.proc and self.proc.poll() is None and not self.term_sent:
            self.term_sent = True
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout=10.0):
        timeout *= WRAP_SLOW
        try:
            self.exit_code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            self._close_files()
            raise AssertionError("server did not exit within %.0f s of SIGTERM:\n%s"
                                 % (timeout, tail(self.stderr())))
        self._close_files()
        return self.exit_code

    def stop(self, timeout=10.0):
        """SIGTERM, wait, assert exit code 0 and a clean sanitizer report.
        Idempotent: the checks run once."""
        if self.proc is None or self.checked:
            return self.exit_code
        self.checked = True
        self.terminate()
        rc = self.wait(timeout)
        check_sanitizer_output(self.stderr(), "server :%d" % self.port)
        check_wrapper_output(self.wrapper_logs, "server :%d" % self.port)
        assert rc == 0, "server exited with %r after SIGTERM:\n%s" % (rc, tail(self.stderr()))
        self.check_store_gone(clean_exit=True)
        return rc

    def store_pids(self):
        """Live redis-servers of this server's private store (their process
        title names the socket, which is under runtime_dir)."""
        return store_pids(self.runtime_dir)

    def check_store_gone(self, clean_exit, timeout=5.0):
        """No redis-server of this server is left; after a clean exit its
        private runtime directory is gone too."""
        poll(lambda: not self.store_pids(), timeout, desc="the private redis-server gone")
        if clean_exit:
            left = os.listdir(self.runtime_dir) if os.path.isdir(self.runtime_dir) else []
            assert not left, "private runtime directory left behind: %r" % left

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.checked = True
        self._close_files()

    def kill9(self):
        """kill -9 of the whole instance: the master first (so it cannot
        start a replacement), then its workers; waits until they are gone.
        No SIGTERM/exit-code check at teardown afterwards."""
        master = self.proc.pid
        workers = worker_pids(master)
        assert workers, "asrd master %d has no worker process" % master
        os.kill(master, signal.SIGKILL)
        for p in workers:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(5)
        poll(lambda: all(pid_gone(p) for p in workers), 5, desc="killed workers gone")
        self.kill()
        self.check_store_gone(clean_exit=False)

    # -- HTTP shortcuts
    def get_json(self, path, **kw):
        r = requests.get(self.http + path, timeout=kw.pop("timeout", 10), **kw)
        return r.status_code, r.json()

    def health(self):
        code, body = self.get_json("/v1/health")
        assert code == 200, (code, body)
        return body

    def metrics(self):
        code, body = self.get_json("/v1/metrics")
        assert code == 200, (code, body)
        return body


def worker_pids(master_pid):
    """Children of an asrd master that are workers (not its private
    redis-server), from /proc."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                head, rest = f.read().rsplit(")", 1)
            fields = rest.split()
            if int(fields[1]) == master_pid and not head.endswith("(redis-server"):
                out.append(int(d))
        except (OSError, IndexError, ValueError):
            pass
    return out


def store_pids(runtime_dir):
    """Live (not zombie) redis-server processes whose command line names
    runtime_dir: the private stores started under it."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
            if "redis-server" in cmd and runtime_dir in cmd and not pid_gone(int(d)):
                out.append(int(d))
        except OSError:
            pass
    return out


def pid_gone(pid):
    """True once pid has exited (zombie or reaped)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def metric(m, dotted, default=None):
    cur = m
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return default
        cur = cur[part]
    return cur


def poll(fn, timeout=5.0, interval=0.05, desc="condition"):
    """Calls fn until it returns something truthy; returns that, or fails
    with the last value after timeout seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError("%s not reached within %.1f s (last: %r)" % (desc, timeout, last))
        time.sleep(interval)


# --------------------------------------------------------------------------
# audio

def gen_path(name):
    return os.path.join(GEN_DIR, name)


def ensure_audio():
    need = ["speech16k.pcm", "speech16k.wav", "speech44k_stereo.wav", "speech8k.wav",
            "silence16k.wav"]
    if all(os.path.exists(gen_path(n)) for n in need):
        return
    subprocess.run(["sh", RUN_SH, "--gen-only"], check=True, cwd=REPO, timeout=120)


def read_bytes(name):
    with open(gen_path(name), "rb") as f:
        return f.read()


def speech_pcm():
    """espeak-ng speech, 16 kHz mono s16le raw."""
    return read_bytes("speech16k.pcm")


def silence(ms, rate=SR):
    return b"\0" * (rate * 2 * ms // 1000)


def chunks_of(data, size=CHUNK_BYTES, pad=True):
    """Splits into size-byte chunks; the last one is padded with digital
    silence to size when pad is set."""
    out = [data[i:i + size] for i in range(0, len(data), size)]
    if pad and out and len(out[-1]) < size:
        out[-1] = out[-1] + b"\0" * (size - len(out[-1]))
    return out


def byteswap16(data):
    import array
    a = array.array("h")
    a.frombytes(data)
    a.byteswap()
    return a.tobytes()


def wav_info(data):
    """(rate, channels, frames) of a PCM WAV."""
    import io
    import wave
    with wave.open(io.BytesIO(data)) as w:
        return w.getframerate(), w.getnchannels(), w.getnframes()


def b64(data):
    return base64.b64encode(data).decode("ascii")


# --------------------------------------------------------------------------
# raw HTTP over a socket (for what requests cannot send or show)

class RawResponse:
    def __init__(self, status, reason, headers, body):
        self.status = status
        self.reason = reason
        self.headers = headers  # lower-case names
        self.body = body

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "<%d %s %r %r>" % (self.status, self.reason, self.headers, self.body[:300])


class RawConn:
    """An HTTP/1.1 client on a plain socket that keeps the bytes it read, so
    several requests can share it (keep-alive, pipelining)."""

    def __init__(self, port, timeout=10.0, rcvbuf=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.buf = b""
        self.timeout = timeout

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send(self, data):
        self.sock.sendall(data)

    def send_until_answer(self, head, body=b""):
        """Sends head then body, but stops sending as soon as the server
        starts answering (a server refusing an upload may answer early and
        close; writing on would turn its answer into a reset)."""
        data = head + body
        self.sock.setblocking(False)
        try:
            deadline = time.monotonic() + self.timeout
            while data and time.monotonic() < deadline:
                r, w, _ = select.select([self.sock], [self.sock], [], 0.5)
                if r:
                    break
                if w:
                    try:
                        n = self.sock.send(data[:65536])
                    except (BlockingIOError, InterruptedError):
                        continue
                    except (BrokenPipeError, ConnectionResetError):
                        break
                    data = data[n:]
        finally:
            self.sock.setblocking(True)
            self.sock.settimeout(self.timeout)
        return len(head) + len(body) - len(data)

    def _fill(self):
        try:
            d = self.sock.recv(65536)
        except ConnectionResetError:
            d = b""
        if not d:
            raise EOFError("connection closed by the server")
        self.buf += d

    def read_response(self, head_request=False):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        assert parts[0].startswith("HTTP/1."), "bad status line %r" % lines[0]
        status = int(parts[1])
        reason = parts[2] if len(parts) > 2 else ""
        headers = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            headers[k.strip().lower()] = v.strip()
        body = b""
        if head_request or status in (101, 204, 304) or 100 <= status < 200:
            return RawResponse(status, reason, headers, body)
        if "chunked" in headers.get("transfer-encoding", "").lower():
            while True:
                while b"\r\n" not in self.buf:
                    self._fill()
                size_line, self.buf = self.buf.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0], 16)
                while len(self.buf) < size + 2:
                    self._fill()
                body += self.buf[:size]
                self.buf = self.buf[size + 2:]
                if size == 0:
                    break
        elif "content-length" in headers:
            n = int(headers["content-length"])
            while len(self.buf) < n:
                self._fill()
            body, self.buf = self.buf[:n], self.buf[n:]
        else:
            # read to EOF
            try:
                while True:
                    self._fill()
            except EOFError:
                pass
            body, self.buf = self.buf, b""
        return RawResponse(status, reason, headers, body)

    def at_eof(self, timeout=5.0):
        """True when the server closed the connection (within timeout)."""
        self.sock.settimeout(timeout)
        try:
            d = self.sock.recv(65536)
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False
        finally:
            self.sock.settimeout(self.timeout)
        if d:
            self.buf += d
            return False
        return True


def build_request(method, path, headers=None, body=b"", host="127.0.0.1"):
    hs = [("Host", host)]
    hs += list((headers or {}).items())
    out = "%s %s HTTP/1.1\r\n" % (method, path)
    for k, v in hs:
        out += "%s: %s\r\n" % (k, v)
    return out.encode("latin-1") + b"\r\n" + body


def raw_request(port, method, path, headers=None, body=b"", timeout=10.0):
    with RawConn(port, timeout) as c:
        c.send_until_answer(build_request(method, path, headers), body)
        return c.read_response(head_request=(method == "HEAD"))


def upgrade_headers(extra=None):
    h = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        "Sec-WebSocket-Version": "13",
    }
    h.update(extra or {})
    return h


def raw_upgrade(port, query="", headers=None, timeout=10.0):
    """Attempts the WebSocket upgrade on a raw socket and returns the HTTP
    response (for a 101 the socket is closed right after)."""
    return raw_request(port, "GET", "/v1/transcribe/stream" + query, upgrade_headers(headers),
                       timeout=timeout)


def assert_json_error(resp, status, code=None):
    """docs/API.md: a refusal is an HTTP error with {"error":{"code","message"}}."""
    st = resp.status if isinstance(resp, RawResponse) else resp.status_code
    body = resp.body if isinstance(resp, RawResponse) else resp.content
    assert st == status, "expected HTTP %d, got %d: %r" % (status, st, body[:300])
    try:
        doc = json.loads(body.decode("utf-8"))
    except ValueError:
        raise AssertionError("HTTP %d body is not JSON: %r" % (st, body[:300]))
    assert isinstance(doc, dict) and isinstance(doc.get("error"), dict), doc
    assert isinstance(doc["error"].get("code"), str) and doc["error"]["code"], doc
    assert isinstance(doc["error"].get("message"), str), doc
    if code is not None:
        assert doc["error"]["code"] == code, "expected error code %s, got %r" % (code, doc)
    return doc


# --------------------------------------------------------------------------
# WebSocket client (Python websockets, legacy asyncio API)

def arun(coro, timeout=60.0):
    """Runs a coroutine with an overall deadline."""
    async def main():
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(main())


class Closed(Exception):
    pass


class WS:
    """A thin wrapper around a websockets client connection that records
    every message the server sent and how it closed."""

    def __init__(self, conn):
        self.conn = conn
        self.msgs = []
        self.close_code = None
        self.close_reason = None

    @classmethod
    async def connect(cls, url, query="", headers=None, timeout=10.0, **kw):
        conn = await websockets.connect(
            url + query, max_size=None, ping_interval=None, close_timeout=5,
            open_timeout=timeout, extra_headers=headers, **kw)
        return cls(conn)

    @classmethod
    async def open_session(cls, url, query="", headers=None, timeout=10.0):
        """Connects and reads the `session` message (returned with the WS)."""
        w = await cls.connect(url, query, headers, timeout)
        first = await w.next(timeout)
        assert first.get("type") == "session", "first message is not `session`: %r" % first
        return w, first

    async def send_bytes(self, data):
        await self.conn.send(bytes(data))

    async def send_json(self, obj):
        await self.conn.send(json.dumps(obj))

    async def send_text(self, text):
        await self.conn.send(text)

    async def next(self, timeout=10.0):
        """The next message as a dict; raises Closed when the server closed."""
        if self.close_code is not None:
            raise Closed(self.close_code)
        try:
            raw = await asyncio.wait_for(self.conn.recv(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError("no message within %.1f s; got so far: %s"
                                 % (timeout, short(self.msgs)))
        except websockets.ConnectionClosed as e:
            self.close_code = e.rcvd.code if e.rcvd is not None else 1006
            self.close_reason = e.rcvd.reason if e.rcvd is not None else ""
            raise Closed(self.close_code)
        assert isinstance(raw, str), "server sent a binary frame: %r" % raw[:50]
        msg = json.loads(raw)
        assert isinstance(msg, dict) and isinstance(msg.get("type"), str), msg
        self.msgs.append(msg)
        return msg

    async def until(self, pred, timeout=10.0):
        """Reads messages until pred(msg); returns the messages read (the
        matching one last)."""
        got = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("condition not met within %.1f s; got: %s"
                                     % (timeout, short(got)))
            try:
                m = await self.next(left)
            except Closed:
                raise AssertionError("closed (%s %r) before condition; got: %s"
                                     % (self.close_code, self.close_reason, short(got)))
            got.append(m)
            if pred(m):
                return got

    async def until_closed(self, timeout=10.0):
        """Reads until the server closes; returns the messages read."""
        got = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("not closed within %.1f s; got: %s" % (timeout, short(got)))
            try:
                got.append(await self.next(left))
            except Closed:
                return got

    async def answers(self, n, timeout=10.0):
        """Reads until n chunk answers (partial, or error carrying a
        sequence) arrived; returns all messages read."""
        cnt = [0]

        def pred(m):
            if is_answer(m):
                cnt[0] += 1
            return cnt[0] >= n
        if n <= 0:
            return []
        return await self.until(pred, timeout)

    async def stop(self, timeout=10.0):
        """Sends stop and reads to the close; returns the messages."""
        await self.send_json({"type": "stop"})
        return await self.until_closed(timeout)

    def abort(self):
        """Drops the TCP connection without a close handshake."""
        self.conn.transport.abort()

    async def close(self):
        try:
            await asyncio.wait_for(self.conn.close(), 6)
        except Exception:
            pass


def is_answer(m):
    return m["type"] == "partial" or (m["type"] == "error" and "sequence" in m)


def of_type(msgs, t):
    return [m for m in msgs if m["type"] == t]


def short(msgs, n=12):
    out = []
    for m in msgs[-n:]:
        d = {k: m[k] for k in ("type", "sequence", "code", "text") if k in m}
        out.append(d)
    pre = "... " if len(msgs) > n else ""
    return pre + json.dumps(out)


def ws_refusal_status(url, query="", headers=None):
    """Tries the upgrade with the websockets client; returns the HTTP status
    it was refused with (or 101 when it was accepted)."""
    async def go():
        try:
            w = await WS.connect(url, query, headers)
        except websockets.InvalidStatusCode as e:
            return e.status_code, e.headers
        await w.close()
        return 101, None
    return arun(go(), 20)


# --------------------------------------------------------------------------
# a raw WebSocket client on a plain socket (for misbehaving clients)

def ws_frame(payload, opcode=0x2, mask=True, fin=True):
    """One client frame (masked, as RFC 6455 requires of clients)."""
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head = bytes([b0, mbit | n])
    elif n < 65536:
        head = bytes([b0, mbit | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([b0, mbit | 127]) + n.to_bytes(8, "big")
    if not mask:
        return head + payload
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + key + masked


def ws_parse_frames(buf):
    """Parses server frames from buf: ([(opcode, payload)], rest)."""
    out = []
    while len(buf) >= 2:
        op = buf[0] & 0x0F
        n = buf[1] & 0x7F
        masked = buf[1] & 0x80
        pos = 2
        if n == 126:
            if len(buf) < 4:
                break
            n = int.from_bytes(buf[2:4], "big")
            pos = 4
        elif n == 127:
            if len(buf) < 10:
                break
            n = int.from_bytes(buf[2:10], "big")
            pos = 10
        if masked:
            pos += 4
        if len(buf) < pos + n:
            break
        out.append((op, buf[pos:pos + n]))
        buf = buf[pos + n:]
    return out, buf


def raw_ws_connect(port, query="", rcvbuf=None, timeout=10.0):
    """Completes the upgrade on a raw socket; returns the RawConn (its buf
    holds whatever came after the 101 head)."""
    c = RawConn(port, timeout, rcvbuf=rcvbuf)
    c.send(build_request("GET", "/v1/transcribe/stream" + query, upgrade_headers()))
    r = c.read_response()
    assert r.status == 101, r
    return c
