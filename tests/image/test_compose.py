"""compose.yaml, run for real with podman-compose (Debian 12's 1.0.3) and
podman's DNS for container names (netavark/aardvark-dns or the CNI dnsname
plugin): Redis with AOF, N asrd replicas, HAProxy finding them through DNS.
One command scales it; `podman stop` of the replica holding a stream drains
it (final, 1001) and the client resumes through HAProxy on another replica.

The file is run as shipped except for what this machine cannot take: the
asrd `ulimits` (left out when the hard RLIMIT_NOFILE here is below them: a
sandbox refuses to raise it) and HAProxy's published port (a free loopback
port instead of 8080). podman-compose 1.0.3 ignores `--scale` and reads
`deploy.replicas`, which compose.yaml takes from ASRD_REPLICAS.
"""
import asyncio
import os
import resource
import shutil
import subprocess
import tempfile
import time

import pytest
import requests
import yaml

import asrd_harness as h
from asrd_harness import WS, arun, of_type

PODMAN = os.environ.get("PODMAN", "podman")
COMPOSE = shutil.which("podman-compose")


def dns_plugin():
    return any(os.path.exists(p) for p in ("/usr/lib/cni/dnsname", "/usr/libexec/cni/dnsname",
                                            "/usr/lib/podman/aardvark-dns", "/usr/libexec/podman/aardvark-dns"))


pytestmark = [
    pytest.mark.skipif(COMPOSE is None, reason="podman-compose is not installed"),
    pytest.mark.skipif(not dns_plugin(), reason="no container DNS (dnsname CNI plugin or aardvark-dns)"),
]


class Project:
    def __init__(self):
        self.name = "asrdct%d" % os.getpid()
        self.dir = tempfile.mkdtemp(prefix="asrd-compose-")
        self.port = h.free_port()
        self.file = os.path.join(self.dir, "compose.yaml")
        with open(os.path.join(h.REPO, "compose.yaml")) as f:
            doc = yaml.safe_load(f)
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        for s in doc["services"].values():
            if isinstance(s.get("build"), dict):
                s["build"]["context"] = h.REPO
            lim = s.get("ulimits", {}).get("nofile", {})
            if lim and hard != resource.RLIM_INFINITY and lim.get("hard", 0) > hard:
                del s["ulimits"]
        doc["services"]["haproxy"]["ports"] = ["127.0.0.1:%d:8080" % self.port]
        with open(self.file, "w") as f:
            yaml.safe_dump(doc, f, sort_keys=False)
        self.replicas = 3

    @property
    def url(self):
        return "ws://127.0.0.1:%d/v1/transcribe/stream" % self.port

    def compose(self, *args, timeout=300):
        env = dict(os.environ, ASRD_REPLICAS=str(self.replicas), BUILDAH_FORMAT="docker")
        r = subprocess.run([COMPOSE, "-p", self.name, "-f", self.file] + list(args), env=env,
                           capture_output=True, text=True, timeout=timeout)
        return r

    def containers(self, service):
        r = subprocess.run([PODMAN, "ps", "--filter", "label=io.podman.compose.project=" + self.name,
                            "--filter", "label=com.docker.compose.service=" + service,
                            "--format", "{{.Names}} {{.ID}}"], capture_output=True, text=True, timeout=30)
        return dict(line.split() for line in r.stdout.splitlines() if line.strip())

    def prefixes_seen(self, n_requests):
        seen = set()
        for _ in range(n_requests):
            try:
                r = requests.get("http://127.0.0.1:%d/v1/health" % self.port, timeout=2)
                if r.status_code == 200:
                    seen.add(r.json()["worker_id"].rsplit("-", 1)[0])
            except requests.RequestException:
                pass
        return seen

    def down(self):
        self.replicas = max(self.replicas, 8)
        self.compose("down", timeout=180)
        # what podman-compose 1.0.3 leaves: containers past `replicas`,
        # the volume, the network
        r = subprocess.run([PODMAN, "ps", "-a", "--filter", "label=io.podman.compose.project=" + self.name,
                            "--format", "{{.Names}}"], capture_output=True, text=True, timeout=30)
        for n in r.stdout.split():
            subprocess.run([PODMAN, "rm", "-f", "-t", "0", n], capture_output=True, timeout=60)
        subprocess.run([PODMAN, "volume", "rm", "-f", self.name + "_redis-data"], capture_output=True, timeout=60)
        subprocess.run([PODMAN, "network", "rm", "-f", self.name + "_default"], capture_output=True, timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def project():
    p = Project()
    try:
        yield p
    finally:
        p.down()


@pytest.mark.timeout(400)
def test_compose_cluster_scales_and_drains_to_another_replica(project):
    t0 = time.monotonic()
    r = project.compose("up", "-d")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert len(project.containers("asrd")) == 3, project.containers("asrd")
    h.poll(lambda: len(project.prefixes_seen(6)) == 3, 60, 0.5, desc="HAProxy reaching 3 asrd replicas")
    t_up = time.monotonic() - t0
    # the Redis it runs is the AOF one
    redis = list(project.containers("redis"))[0]
    aof = subprocess.run([PODMAN, "exec", redis, "redis-cli", "config", "get", "appendonly"],
                         capture_output=True, text=True, timeout=30).stdout.split()
    assert aof == ["appendonly", "yes"], aof

    # one command scales it: 3 -> 5 replicas, HAProxy finds the new ones in DNS
    project.replicas = 5
    project.compose("up", "-d")      # 1.0.3 also complains about the 3 that exist
    assert len(project.containers("asrd")) == 5, project.containers("asrd")
    h.poll(lambda: len(project.prefixes_seen(10)) == 5, 60, 0.5, desc="HAProxy reaching 5 asrd replicas")

    # a stream through HAProxy; its replica is stopped; it resumes elsewhere
    chunks = h.chunks_of(h.speech_pcm())
    replicas = project.containers("asrd")

    async def go():
        w, s = await WS.open_session(project.url)
        for c in chunks[:14]:
            await w.send_bytes(c)
            await asyncio.sleep(0.1)
        await w.answers(14, 10)
        host = s["worker_id"].rsplit("-", 1)[0]
        name = [n for n, cid in replicas.items() if host.startswith(cid[:12])]
        assert name, (host, replicas)
        stop = subprocess.Popen([PODMAN, "stop", name[0]], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        msgs = await w.until_closed(45)
        w2, s2 = await WS.open_session(project.url, "?session_id=" + s["session_id"])
        for c in chunks[s2["last_sequence"]:]:
            await w2.send_bytes(c)
            await asyncio.sleep(0.1)
        end = await w2.stop(15)
        stop.wait(60)
        return s, w, msgs, s2, w2, end
    s, w, msgs, s2, w2, end = arun(go(), 120)
    assert (w.close_code, w.close_reason) == (1001, "server shutting down"), (w.close_code, h.short(msgs))
    assert of_type(msgs, "final")[-1]["text"], h.short(msgs)
    assert s2["resumed"] is True and s2["last_sequence"] == 14, s2
    assert s2["worker_id"].rsplit("-", 1)[0] != s["worker_id"].rsplit("-", 1)[0], (s, s2)
    assert w2.close_code == 1000 and [m["sequence"] for m in end if h.is_answer(m)] == \
        list(range(15, len(chunks) + 1)), h.short(end)
    print("compose: 3 replicas reachable through HAProxy %.1f s after `up`; scaled to 5; stream "
          "drained from %s and resumed on %s" % (t_up, s["worker_id"], s2["worker_id"]))
