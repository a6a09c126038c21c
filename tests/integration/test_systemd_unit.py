"""deploy/asrd.service: valid for systemd (systemd-analyze verify, when
installed), sandboxed, and stopping the way asrd drains.

The unit sends SIGTERM to the master only (KillMode=mixed) and waits longer
than ASR_DRAIN_TIMEOUT_S (TimeoutStopSec). The last two tests run the real
binary without systemd: SIGTERM to the master alone (KillMode=mixed, and
podman/docker stop, where the master is PID 1) drains every open utterance
with a final and close 1001; so does SIGTERM to every process of the group
(KillMode=control-group, a terminal's Ctrl-C), since workers ignore
SIGTERM/SIGINT and drain only when their master tells them. Before that
change the second test failed 4 runs in 5 (a worker took the master's
forwarded SIGTERM as a second signal and stopped at once).
"""
import asyncio
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

import asrd_harness as h
from asrd_harness import WS, arun, of_type

UNIT = os.path.join(h.REPO, "deploy", "asrd.service")


def unit_settings():
    """[Service] as {key: [values]} (systemd allows repeated keys)."""
    out = {}
    section = None
    with open(UNIT) as f:
        for line in f:
            s = line.strip()
            if not s or s.startswith(("#", ";")):
                continue
            if s.startswith("["):
                section = s.strip("[]")
                continue
            k, _, v = s.partition("=")
            if section == "Service":
                out.setdefault(k.strip(), []).append(v.strip())
    return out


def seconds(v):
    m = re.fullmatch(r"(\d+)\s*(s|sec|min)?", v)
    assert m, v
    return int(m.group(1)) * (60 if m.group(2) == "min" else 1)


def test_unit_stops_the_way_asrd_drains():
    s = unit_settings()
    assert s["KillMode"] == ["mixed"], s["KillMode"]
    assert s.get("KillSignal", ["SIGTERM"]) == ["SIGTERM"]
    env = dict(kv.split("=", 1) for v in s["Environment"] for kv in v.split())
    drain = int(env.get("ASR_DRAIN_TIMEOUT_S", 30))
    assert seconds(s["TimeoutStopSec"][0]) >= drain + 10, (s["TimeoutStopSec"], drain)
    assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    # sandboxing the issue asks for
    for k, v in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("PrivateTmp", "yes"),
                 ("DynamicUser", "yes"), ("ProtectHome", "yes")):
        assert s.get(k) == [v], (k, s.get(k))


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_unit_verifies():
    """systemd-analyze verify and security --offline on a copy whose
    ExecStart is the binary under test (verify checks that it exists)."""
    d = tempfile.mkdtemp(prefix="asrd-unit-")
    try:
        with open(UNIT) as f:
            text = f.read().replace("/usr/local/bin/asrd", h.asrd_bin())
        path = os.path.join(d, "asrd.service")
        with open(path, "w") as f:
            f.write(text)
        r = subprocess.run(["systemd-analyze", "verify", path], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and not r.stderr.strip(), r.stdout + r.stderr
        r = subprocess.run(["systemd-analyze", "security", "--offline=true", "--threshold=20", path],
                           capture_output=True, text=True, timeout=60)
        m = re.search(r"Overall exposure level for asrd.service: ([0-9.]+)", r.stdout)
        assert m and float(m.group(1)) <= 2.0, r.stdout[-2000:] + r.stderr
    finally:
        shutil.rmtree(d, ignore_errors=True)


def open_utterances_then(srv, kill, n=4):
    """n sessions (spread over the workers) in the middle of an utterance,
    answers still owed (engine latency 1.5 s); kill(); returns each
    session's messages and close code."""
    async def go():
        ws = [(await WS.open_session(srv.stream_url))[0] for _ in range(n)]
        for ch in h.chunks_of(h.speech_pcm())[:12]:
            for w in ws:
                await w.send_bytes(ch)
            await asyncio.sleep(0.1)
        kill()
        out = []
        for w in ws:
            await w.until_closed(20)
            out.append((w.msgs, w.close_code))
        return out
    return arun(go(), 60)


@pytest.mark.timeout(60)
def test_sigterm_to_master_only_drains(start_server):
    """What KillMode=mixed does (and podman/docker stop: the master is PID 1)."""
    srv = start_server(ASR_WORKERS=2, ASR_MOCK_LATENCY_MS=1500)
    res = open_utterances_then(srv, lambda: os.kill(srv.proc.pid, signal.SIGTERM))
    for msgs, code in res:
        assert code == 1001, (code, h.short(msgs))
        assert [m["sequence"] for m in msgs if h.is_answer(m)] == list(range(1, 13)), h.short(msgs)
        assert of_type(msgs, "final")[-1]["text"], h.short(msgs)
    assert srv.wait(20) == 0


@pytest.mark.timeout(60)
def test_sigterm_to_every_process_drains(start_server):
    """What KillMode=control-group does: the master and every worker get
    SIGTERM; the workers 100 ms before the master, the order that cut
    sessions before workers ignored the group's signals (with both at
    once the kernel could merge them and hide it)."""
    srv = start_server(ASR_WORKERS=2, ASR_MOCK_LATENCY_MS=1500)

    def kill_group():
        # the workers only: systemd would also stop the private
        # redis-server, which costs the drain its store but not its finals
        for pid in h.worker_pids(srv.proc.pid):
            os.kill(pid, signal.SIGTERM)
        time.sleep(0.1)
        os.kill(srv.proc.pid, signal.SIGTERM)
    res = open_utterances_then(srv, kill_group)
    srv.wait(20)
    for msgs, code in res:
        assert code == 1001, "closed %r without a drain: %s" % (code, h.short(msgs))
        assert of_type(msgs, "final") and of_type(msgs, "final")[-1]["text"], h.short(msgs)
