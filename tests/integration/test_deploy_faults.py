"""Two findings of the deployment: new connections during a shutdown drain
with several workers (docs/internals/workers.md "Signals"), and the worker
count for ASR_WORKERS=0 (the CPUs this process may run on)."""
import os
import socket
import time

import pytest
import requests

import asrd_harness as h


def probe(port, timeout=1.0):
    """One GET /v1/health on a new connection: its status, or what went wrong."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except ConnectionRefusedError:
        return "refused"
    except socket.timeout:
        return "no answer"
    try:
        s.settimeout(timeout)
        s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while b"\r\n" not in data:
            d = s.recv(4096)
            if not d:
                return "closed"
            data += d
        return int(data.split(b" ")[1])
    except ConnectionResetError:
        return "reset"
    except socket.timeout:
        return "no answer"
    finally:
        s.close()


def test_drain_with_several_workers_answers_every_new_connection_503(start_server):
    """Two workers; one holds a request that has not finished arriving (it
    drains for seconds), the other has nothing and exits at once. Every new
    connection during the drain must get 503 "draining" from the one still
    there; before, the exited worker's socket stayed open in the master, so
    about half of them were queued with nobody to accept (no answer), then
    reset when the master exited."""
    srv = start_server(ASR_WORKERS=2, ASR_HANDSHAKE_TIMEOUT_S=4, ASR_DRAIN_TIMEOUT_S=10)
    h.poll(lambda: len(srv.metrics()["workers"]) == 2, 5, desc="two workers")
    slow = socket.create_connection(("127.0.0.1", srv.port))
    slow.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n")      # the head never ends
    time.sleep(0.3)
    srv.terminate()
    time.sleep(0.5)                                               # the idle worker has exited
    got = []
    t_end = time.monotonic() + 2.0
    while time.monotonic() < t_end:
        got.append(probe(srv.port))
        time.sleep(0.05)
    slow.close()
    assert srv.wait(10) == 0
    counts = {}
    for g in got:
        counts[g] = counts.get(g, 0) + 1
    print("new connections during the drain: %r" % counts)
    assert counts.get(503, 0) == len(got), counts


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs to restrict to 1")
def test_workers_0_counts_the_cpus_this_process_may_use(start_server):
    """ASR_WORKERS=0 under a CPU affinity of one CPU (taskset, a cpuset, a
    container's --cpuset-cpus) starts one worker, not one per host CPU."""
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(old)})
    try:
        srv = start_server(ASR_WORKERS=0)                         # inherits the affinity
    finally:
        os.sched_setaffinity(0, old)
    m = srv.metrics()
    assert len(m["workers"]) == 1, m["workers"]
    code, health = srv.get_json("/v1/health")
    assert health["capacity"]["max_sessions"] == 10000, health    # one worker's worth
