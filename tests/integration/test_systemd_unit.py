"""deploy/asrd.service: valid for systemd (systemd-analyze verify, when
installed), sandboxed, and stopping the way asrd drains.

asrd's master forwards SIGTERM to its workers; a worker that gets a second
SIGTERM while draining stops at once. So the unit must send SIGTERM to the
master only (KillMode=mixed), and wait longer than ASR_DRAIN_TIMEOUT_S
(TimeoutStopSec). The last two tests show why on the real binary, without
systemd: SIGTERM to the master alone (what KillMode=mixed does) drains every
open utterance with a final and close 1001; SIGTERM to every process of the
group at once (KillMode=control-group, the default, and also Ctrl-C in a
terminal, which signals the foreground process group) cuts them: a known
asrd issue (deploy/README.md "Known issues"), marked xfail until the
worker ignores the master's copy of a signal it already got.
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
@pytest.mark.xfail(reason="known issue: a worker takes the master's forwarded SIGTERM as a second "
                          "signal and stops without draining (KillMode=control-group, Ctrl-C)",
                   strict=False)
def test_sigterm_to_every_process_drains(start_server):
    """What KillMode=control-group does: the master and every worker get
    SIGTERM. The workers get theirs 100 ms before the master's copy arrives:
    when both reach a worker before it has handled the first, the kernel
    merges them into one and the drain happens (1 run in 5 here without the
    delay); a stop by systemd is that same race."""
    srv = start_server(ASR_WORKERS=2, ASR_MOCK_LATENCY_MS=1500)

    def kill_group():
        for pid in h.worker_pids(srv.proc.pid):
            os.kill(pid, signal.SIGTERM)
        time.sleep(0.1)
        os.kill(srv.proc.pid, signal.SIGTERM)
    res = open_utterances_then(srv, kill_group)
    srv.wait(20)
    for msgs, code in res:
        assert code == 1001, "closed %r without a drain: %s" % (code, h.short(msgs))
        assert of_type(msgs, "final") and of_type(msgs, "final")[-1]["text"], h.short(msgs)
