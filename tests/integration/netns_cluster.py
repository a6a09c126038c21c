"""Several hosts on one machine, for real: each host is a network namespace
with its own address, all plugged into one bridge (itself in a namespace of
its own), so that the hosts talk over veth links that a test can cut.
Used by test_netns_cluster.py.

    switch ns  (bridge br0)
      |- p0 <-> eth0  host "redis"  10.213.N.2   redis-server
      |- p1 <-> eth0  host "lb"     10.213.N.3   haproxy (deploy/haproxy.cfg)
      |- p2 <-> eth0  host "h1"     10.213.N.11  asrd (master + workers)
      |- ...          host "hK"     10.213.N.(10+K)
      `- pc <-> asrdtNNNNN (root namespace: the test's clients, 10.213.N.1)

The root namespace gets one veth and a route to the /24 (plus an
`unreachable` route for it, so that nothing meant for a test host can ever
leave through the default route); every other interface lives in a
namespace that is deleted at the end. Names carry the test process's pid, and
N is the first free /24 (claimed by adding its route), so runs of several
engineers on one machine do not collide; `sweep_stale()` removes what a
killed run left behind.

Needs root and `ip netns` (iproute2); `unavailable()` says why not. asrd
runs here without ASRD_WRAPPER (make valgrind): these tests are about hosts
and links, and valgrind's slowdown would only stretch their timings.
Every command is bounded in time; `Cluster.destroy()` kills every process in
every namespace (kill -9), deletes the namespaces, the veth and the routes,
and is safe to call twice or after a failed build.
"""
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

import requests

import asrd_harness as h

PREFIX = "asrdt"                 # namespaces asrdt<pid>-<name>, root veth asrdt<pid>
SUBNET_BASE = "10.213"           # 10.213.N.0/24, N free
REDIS_PORT = 6379
LB_PORT = 8080
ASRD_PORT = 8000
CMD_TIMEOUT = 10


def run(*args, timeout=CMD_TIMEOUT, check=True):
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(args), r.returncode, r.stderr.strip()))
    return r


def unavailable():
    """None when namespaces can be made here, else the reason (for a skip)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "ip (iproute2) is not installed"
    probe = "%s%d-probe" % (PREFIX, os.getpid())
    try:
        r = run("ip", "netns", "add", probe, check=False)
        if r.returncode != 0:
            return "`ip netns add` failed: %s" % r.stderr.strip()
        r = run("ip", "-n", probe, "link", "add", "v0", "type", "veth", "peer", "name", "v1", check=False)
        if r.returncode != 0:
            return "veth pairs unavailable: %s" % r.stderr.strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        return "`ip netns` unusable: %r" % e
    finally:
        run("ip", "netns", "del", probe, check=False)
    return None


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def netns_pids(ns):
    r = run("ip", "netns", "pids", ns, check=False)
    return [int(p) for p in r.stdout.split()] if r.returncode == 0 else []


def kill_netns_processes(ns, timeout=5.0):
    """kill -9 of every process in ns; waits until they are gone."""
    deadline = time.monotonic() + timeout
    while True:
        pids = netns_pids(ns)
        if not pids:
            return
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if time.monotonic() > deadline:
            raise RuntimeError("processes %r in %s survived kill -9" % (pids, ns))
        time.sleep(0.05)


def sweep_stale():
    """Removes namespaces, veths and routes of runs whose process is gone."""
    r = run("ip", "netns", "list", check=False)
    for line in r.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.fullmatch(PREFIX + r"(\d+)-.*", name)
        if m and not _pid_alive(int(m.group(1))):
            kill_netns_processes(name)
            run("ip", "netns", "del", name, check=False)
    r = run("ip", "-o", "link", "show", check=False)
    for m in re.finditer(r"^\d+: (" + PREFIX + r"(\d+))[@:]", r.stdout, re.M):
        if not _pid_alive(int(m.group(2))):
            run("ip", "link", "del", m.group(1), check=False)
    # an unreachable route of ours (metric 4000) with no address of a live
    # run in its subnet (the run's veth went with its process)
    r = run("ip", "route", "show", "type", "unreachable", check=False)
    for line in r.stdout.splitlines():
        m = re.match(r"unreachable (%s\.\d+\.0/24) .*metric 4000" % re.escape(SUBNET_BASE), line)
        if m and not run("ip", "-o", "addr", "show", "to", m.group(1), check=False).stdout.strip():
            run("ip", "route", "del", "unreachable", m.group(1), "metric", "4000", check=False)


class Proc:
    """A process started inside a namespace (`ip netns exec` execs it, so
    the pid is the program's own)."""

    def __init__(self, ns, argv, env, log_path):
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(["ip", "netns", "exec", ns] + argv, env=env,
                                     stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, cwd=h.REPO)

    def alive(self):
        return self.proc.poll() is None

    def text(self, n=40):
        try:
            with open(self.log_path, "rb") as f:
                return h.tail(f.read().decode("utf-8", "replace"), n)
        except OSError:
            return ""

    def signal(self, sig):
        if self.alive():
            self.proc.send_signal(sig)

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def close(self):
        if self.alive():
            self.proc.kill()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()


class Host:
    def __init__(self, cluster, name, ip, port_name):
        self.cluster = cluster
        self.name = name
        self.ip = ip
        self.ns = "%s%d-%s" % (PREFIX, os.getpid(), name)
        self.port_name = port_name      # its bridge port in the switch namespace
        self.procs = []

    def start(self, argv, env=None, tag=None):
        log = os.path.join(self.cluster.dir, "%s-%s-%d.log" % (self.name, tag or os.path.basename(argv[0]),
                                                                len(self.procs)))
        p = Proc(self.ns, argv, env if env is not None else h.base_env(), log)
        self.procs.append(p)
        return p

    def kill9(self):
        """The host dies: every process in it, kill -9, at once."""
        kill_netns_processes(self.ns)
        for p in self.procs:
            p.wait(5)

    def cut(self):
        """Its link goes down: nothing in or out, no RST, no FIN."""
        run("ip", "-n", self.cluster.switch, "link", "set", self.port_name, "down")

    def restore(self):
        run("ip", "-n", self.cluster.switch, "link", "set", self.port_name, "up")


class AsrdHost(Host):
    """One asrd instance (master + ASR_WORKERS workers) on ip:8000 with the
    worker id prefix `<name>-`."""

    def __init__(self, cluster, name, ip, port_name):
        super().__init__(cluster, name, ip, port_name)
        self.asrd = None

    @property
    def http(self):
        return "http://%s:%d" % (self.ip, ASRD_PORT)

    def start_asrd(self, **env):
        e = {"ASR_HOST": self.ip, "ASR_PORT": ASRD_PORT, "ASR_WORKERS": 1,
             "ASR_WORKER_ID": self.name + "-", "ASR_REDIS_URL": self.cluster.redis_url,
             "ASR_STORE_REQUIRED": 1, "ASR_MOCK_LATENCY_MS": 20, "ASR_ENDPOINTING_MS": 300}
        e.update(env)
        self.asrd = self.start([h.asrd_bin()], h.base_env(e), tag="asrd")
        deadline = time.monotonic() + 10 * h.WRAP_SLOW
        while True:
            assert self.asrd.alive(), "asrd on %s exited:\n%s" % (self.name, self.asrd.text())
            try:
                if requests.get(self.http + "/v1/health", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "asrd on %s not healthy:\n%s" % (self.name, self.asrd.text())
            time.sleep(0.05)

    def health(self, timeout=2):
        r = requests.get(self.http + "/v1/health", timeout=timeout)
        return r.status_code, r.json()

    def metrics(self, timeout=3):
        return requests.get(self.http + "/v1/metrics", timeout=timeout).json()

    def log_lines(self):
        import json
        out = []
        try:
            with open(self.asrd.log_path, "rb") as f:
                for line in f.read().decode("utf-8", "replace").splitlines():
                    try:
                        out.append(json.loads(line))
                    except ValueError:
                        pass
        except OSError:
            pass
        return out


class Cluster:
    """Builds the namespaces and links; `start()` runs Redis and HAProxy and
    asrd on the first `running` asrd hosts (the others are wired and listed
    in HAProxy, but start nothing until a test calls start_asrd)."""

    def __init__(self, n_asrd=3, running=None):
        self.n_asrd = n_asrd
        self.running = n_asrd if running is None else running
        self.pid = os.getpid()
        self.switch = "%s%d-sw" % (PREFIX, self.pid)
        self.root_if = "%s%d" % (PREFIX, self.pid)
        self.dir = tempfile.mkdtemp(prefix="asrd-netns-")
        self.net = None
        self.hosts = []
        self.redis = self.lb = None
        self.asrd_hosts = []
        self.haproxy = None
        self.redis_proc = None
        self._built = False

    # -- addresses
    def addr(self, last):
        return "%s.%d.%d" % (SUBNET_BASE, self.net, last)

    @property
    def redis_url(self):
        return "redis://%s:%d" % (self.redis.ip, REDIS_PORT)

    @property
    def stream_url(self):
        return "ws://%s:%d/v1/transcribe/stream" % (self.lb.ip, LB_PORT)

    @property
    def lb_http(self):
        return "http://%s:%d" % (self.lb.ip, LB_PORT)

    def _claim_subnet(self):
        for n in range(1, 255):
            r = run("ip", "route", "add", "unreachable", "%s.%d.0/24" % (SUBNET_BASE, n),
                    "metric", "4000", "proto", "static", check=False)
            if r.returncode == 0:
                self.net = n
                return
        raise RuntimeError("no free %s.N.0/24 for the test network" % SUBNET_BASE)

    # -- life cycle
    def build(self):
        self._built = True
        sweep_stale()
        self._claim_subnet()
        run("ip", "netns", "add", self.switch)
        run("ip", "-n", self.switch, "link", "set", "lo", "up")
        run("ip", "-n", self.switch, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", self.switch, "link", "set", "br0", "up")
        # the clients' way in, from the root namespace
        run("ip", "link", "add", self.root_if, "type", "veth", "peer", "name", "pc", "netns", self.switch)
        run("ip", "-n", self.switch, "link", "set", "pc", "master", "br0", "up")
        run("ip", "addr", "add", self.addr(1) + "/24", "dev", self.root_if)
        run("ip", "link", "set", self.root_if, "up")
        self.redis = self._host(Host, "redis", 2, "p0")
        self.lb = self._host(Host, "lb", 3, "p1")
        for i in range(1, self.n_asrd + 1):
            self.asrd_hosts.append(self._host(AsrdHost, "h%d" % i, 10 + i, "p%d" % (i + 1)))
        return self

    def _host(self, cls, name, last, port_name):
        host = cls(self, name, self.addr(last), port_name)
        run("ip", "netns", "add", host.ns)
        run("ip", "link", "add", "eth0", "netns", host.ns, "type", "veth", "peer", "name", port_name,
            "netns", self.switch)
        run("ip", "-n", self.switch, "link", "set", port_name, "master", "br0", "up")
        run("ip", "-n", host.ns, "addr", "add", host.ip + "/24", "dev", "eth0")
        run("ip", "-n", host.ns, "link", "set", "eth0", "up")
        run("ip", "-n", host.ns, "link", "set", "lo", "up")
        self.hosts.append(host)
        return host

    def start(self, **asrd_env):
        self.start_redis()
        for host in self.asrd_hosts[:self.running]:
            host.start_asrd(**asrd_env)
        self.start_haproxy(wait_up=[x.name for x in self.asrd_hosts[:self.running]])
        return self

    def start_redis(self):
        exe = shutil.which("redis-server")
        assert exe, "redis-server is not installed (scripts/deps.sh installs it)"
        self.redis_proc = self.redis.start(
            [exe, "--bind", self.redis.ip, "--port", str(REDIS_PORT), "--save", "", "--appendonly", "no",
             "--dir", self.dir, "--protected-mode", "no"], tag="redis")
        h.poll(lambda: self.redis_cmd("PING") == "PONG", 10, desc="redis-server answering PING")

    def redis_cmd(self, *args):
        """One command over RESP from the root namespace. Returns a simple
        string or error as str, an integer as int, a bulk string as str (nil:
        None); None also when Redis does not answer."""
        import socket
        parts = ["*%d\r\n" % len(args)]
        for a in args:
            a = str(a)
            parts.append("$%d\r\n%s\r\n" % (len(a.encode()), a))
        try:
            with socket.create_connection((self.redis.ip, REDIS_PORT), timeout=2) as s:
                s.sendall("".join(parts).encode())
                data = b""
                while True:
                    d = s.recv(65536)
                    if not d:
                        break
                    data += d
                    head, sep, rest = data.partition(b"\r\n")
                    if not sep:
                        continue
                    if head[:1] != b"$" or int(head[1:]) < 0 or len(rest) >= int(head[1:]) + 2:
                        break
        except OSError:
            return None
        head, _, rest = data.partition(b"\r\n")
        kind, body = head[:1], head[1:].decode(errors="replace")
        if kind == b":":
            return int(body)
        if kind == b"$":
            return None if int(body) < 0 else rest[:int(body)].decode(errors="replace")
        return body

    def start_haproxy(self, wait_up):
        from test_balancer import haproxy_test_cfg
        exe = shutil.which("haproxy")
        assert exe, "haproxy is not installed (scripts/deps.sh installs it)"
        with open(os.path.join(h.REPO, "deploy", "haproxy.cfg")) as f:
            text = f.read()
        sock = os.path.join(self.dir, "haproxy.sock")
        cfg = haproxy_test_cfg(text, [(x.name, ASRD_PORT) for x in self.asrd_hosts], LB_PORT, 8404, sock)
        # deploy/haproxy.cfg as the test copy makes it (checks every 200 ms,
        # fall 1, rise 1), with this network's addresses
        cfg = cfg.replace("bind 127.0.0.1:%d" % LB_PORT, "bind %s:%d" % (self.lb.ip, LB_PORT))
        for x in self.asrd_hosts:
            cfg = cfg.replace("server %s 127.0.0.1:%d" % (x.name, ASRD_PORT),
                              "server %s %s:%d" % (x.name, x.ip, ASRD_PORT))
        path = os.path.join(self.dir, "haproxy.cfg")
        with open(path, "w") as f:
            f.write(cfg)
        chk = run(exe, "-c", "-f", path, check=False)
        assert chk.returncode == 0, chk.stdout + chk.stderr
        self.haproxy_sock = sock
        self.haproxy = self.lb.start([exe, "-f", path, "-db"], tag="haproxy")
        h.poll(lambda: not self.haproxy.alive() or self.lb_states_are(wait_up, "UP"), 10,
               desc="haproxy with %r UP" % (wait_up,))
        assert self.haproxy.alive(), self.haproxy.text()

    def lb_states(self):
        """{server: (status, check_status)} from HAProxy's runtime API."""
        import socket
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(2)
                s.connect(self.haproxy_sock)
                s.sendall(b"show stat\n")
                data = b""
                while True:
                    d = s.recv(65536)
                    if not d:
                        break
                    data += d
        except OSError:
            return {}
        lines = data.decode().splitlines()
        if not lines or not lines[0].startswith("# "):
            return {}
        head = lines[0][2:].split(",")
        out = {}
        for ln in lines[1:]:
            row = dict(zip(head, ln.split(",")))
            if row.get("pxname") == "asrd" and row.get("svname") not in ("FRONTEND", "BACKEND"):
                out[row["svname"]] = (row["status"], row["check_status"])
        return out

    def lb_states_are(self, names, status):
        st = self.lb_states()
        return all(n in st and st[n][0] == status for n in names)

    def destroy(self):
        """Everything goes, whatever state it is in. Idempotent."""
        errors = []
        for host in self.hosts:
            try:
                kill_netns_processes(host.ns)
            except Exception as e:          # keep cleaning
                errors.append(repr(e))
            for p in host.procs:
                p.close()
        if self._built:
            for ns in [x.ns for x in self.hosts] + [self.switch]:
                run("ip", "netns", "del", ns, check=False)
            run("ip", "link", "del", self.root_if, check=False)
            if self.net is not None:
                run("ip", "route", "del", "unreachable", "%s.%d.0/24" % (SUBNET_BASE, self.net),
                    "metric", "4000", check=False)
            self._built = False
        shutil.rmtree(self.dir, ignore_errors=True)
        self.hosts = []
        if errors:
            raise RuntimeError("; ".join(errors))

    def leftovers(self):
        """What of this cluster still exists (for the cleanup test)."""
        out = []
        names = run("ip", "netns", "list", check=False).stdout
        out += [n for n in re.findall(r"^(\S+)", names, re.M) if n.startswith("%s%d-" % (PREFIX, self.pid))]
        if run("ip", "link", "show", self.root_if, check=False).returncode == 0:
            out.append(self.root_if)
        if self.net is not None and run("ip", "route", "show", "%s.%d.0/24" % (SUBNET_BASE, self.net),
                                        check=False).stdout.strip():
            out.append("route %s.%d.0/24" % (SUBNET_BASE, self.net))
        return out
