"""A throwaway redis-server for the tests that need a shared session store:
started on a free loopback port with no persistence, stoppable and
restartable on the same port (Redis restart tests)."""
import shutil
import socket
import subprocess
import tempfile

import asrd_harness as h


class RedisServer:
    def __init__(self):
        self.port = h.free_port()
        self.dir = tempfile.mkdtemp(prefix="asrd-redis-")
        self.proc = None

    @property
    def url(self):
        return "redis://127.0.0.1:%d" % self.port

    def start(self, timeout=10.0):
        exe = shutil.which("redis-server")
        assert exe, "redis-server is not installed (scripts/deps.sh installs it)"
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.dir, "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        h.poll(self.ping, timeout, desc="redis-server answering PING")
        return self

    def ping(self):
        try:
            return self.cmd("PING") == "+PONG"
        except OSError:
            return False

    def cmd(self, *args):
        """One command over RESP; returns the first reply line (str)."""
        parts = ["*%d\r\n" % len(args)]
        for a in args:
            a = str(a)
            parts.append("$%d\r\n%s\r\n" % (len(a.encode()), a))
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            s.sendall("".join(parts).encode())
            data = b""
            while not data.endswith(b"\r\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            return data.decode(errors="replace").split("\r\n")[0]

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
