"""Many hosts, for real: three asrd hosts, a Redis host and an HAProxy host,
each a network namespace with its own address on one bridge
(netns_cluster.py), clients in the root namespace going through HAProxy
(deploy/haproxy.cfg, faster checks). What a client sees when a host is
killed, cut off, or added (docs/API.md "Resuming a session", deploy/README.md
"What a client sees when a host goes away").

Clients behave as a real client must (test_balancer.Client): keep every
chunk, and on a dropped connection (1006), a close 1001, or an answer that
does not come (a cut link sends no FIN: STALL_S without a message while
chunks are owed) reconnect through the balancer with ?session_id=, retrying
on 409/502/503/504, and resend from last_sequence + 1. check_session()
(test_balancer) asserts docs/API.md's rules over the whole session: every
chunk answered in order, finals neither lost nor repeated, each final the
words of its partials.

Skipped (with the reason) when not root or when `ip netns`/veth pairs are
unavailable. Every namespace, veth, route and process is removed at
teardown, also when a test fails or times out (test_cleanup_leaves_nothing
checks it).

Jobs (docs/API.md "Jobs"): the hosts share one queue in the Redis host; a
host killed while it runs a job leaves a lease that runs out, and a
surviving host takes the run over and finishes it once.
"""
import asyncio
import time

import pytest
import requests

import asrd_harness as h
import jobs_util as ju
import netns_cluster as nc
from asrd_harness import arun, of_type
from test_balancer import (BOUNDS_TOL_MS, HEARTBEAT_S, Client, bounds, check_like_control,
                           check_session, control_run, final_keys, finals_of, session_chunks, total_ms)

REASON = nc.unavailable()
pytestmark = [pytest.mark.needs_redis, pytest.mark.slow,
              pytest.mark.skipif(REASON is not None, reason=REASON or "")]

SLOW = h.is_sanitized() or bool(h.WRAPPER)
N_CLIENTS = 9
STALL_S = 1.5                       # no message this long while chunks are owed: dead link
KILL_AT = 45                        # as test_balancer: late in the second utterance
CUT_AT = 30


@pytest.fixture
def cluster():
    made = []

    def make(n_asrd=3, running=None, **env):
        c = nc.Cluster(n_asrd, running)
        made.append(c)
        c.build()
        c.start(**env)
        return c
    try:
        yield make
    finally:
        errors = []
        for c in made:
            try:
                c.destroy()
            except Exception as e:
                errors.append(repr(e))
            left = c.leftovers()
            if left:
                errors.append("left behind: %r" % left)
        assert not errors, errors


class NetClient(Client):
    """test_balancer's client plus what a client needs on a real network:
    a connection that goes silent (no FIN: a cut link) is given up after
    STALL_S and resumed like a dropped one."""
    stall_s = STALL_S * (3 if SLOW else 1)


def host_of(conn):
    return conn.session["worker_id"].split("-")[0]


async def start_clients(clients, stagger=0.05):
    """Starts them one by one (leastconn sees each connection before the
    next choice) and returns the tasks."""
    tasks = []
    for c in clients:
        tasks.append(asyncio.ensure_future(c.run()))
        await asyncio.sleep(stagger)
    return tasks


async def wait_answers(clients, tasks, n, timeout=30):
    deadline = time.monotonic() + timeout
    while not all(c.n_answers >= n for c in clients):
        for t in tasks:
            if t.done():
                t.result()
        assert time.monotonic() < deadline, "clients did not reach %d answers: %r" % (
            n, [c.n_answers for c in clients])
        await asyncio.sleep(0.01)


def by_host(clients):
    out = {}
    for c in clients:
        out.setdefault(host_of(c.conns[0]), []).append(c)
    return out


def check_moved(c, control, audio_ms, n):
    """A session that moved once: the same utterances as an uninterrupted
    run, in about the same places, and nothing lost or repeated."""
    finals = check_session(c, n, audio_ms)
    spoken, ref = finals_of(finals), finals_of(control)
    assert len(spoken) == len(ref), "%s: %r vs control %r" % (c.name, bounds(spoken), bounds(ref))
    for got, want in zip(bounds(spoken), bounds(ref)):
        assert abs(got[0] - want[0]) <= BOUNDS_TOL_MS and abs(got[1] - want[1]) <= BOUNDS_TOL_MS, \
            "%s: utterance %r far from the control run's %r" % (c.name, got, want)


# --------------------------------------------------------------------------

@pytest.mark.timeout(90)
def test_streams_spread_over_hosts(cluster):
    cl = cluster()
    chunks = session_chunks()
    n, audio_ms = len(chunks), total_ms(chunks)
    clients = [NetClient("client%d" % i, cl.stream_url, chunks) for i in range(N_CLIENTS)]

    async def go():
        control = asyncio.ensure_future(control_run(
            "ws://%s:%d/v1/transcribe/stream" % (cl.asrd_hosts[0].ip, nc.ASRD_PORT), chunks))
        tasks = await start_clients(clients)
        await asyncio.gather(*tasks)
        return await control
    control = arun(go(), 70)
    spread = by_host(clients)
    # leastconn over staggered connects: 3 each when every connect is seen
    # before the next choice; at least 2 each in any case
    assert sorted(spread) == ["h1", "h2", "h3"] and all(len(v) >= 2 for v in spread.values()), \
        {k: len(v) for k, v in spread.items()}
    for c in clients:
        assert len(c.conns) == 1, (c.name, [x.close_code for x in c.conns])
        finals = check_session(c, n, audio_ms)
        check_like_control(c, control)
        assert final_keys(finals) == final_keys(of_type(control, "final")), c.name
    # the store saw every session go: nothing left active anywhere
    for host in cl.asrd_hosts:
        h.poll(lambda: host.health()[1]["active_sessions"] == 0, 10, desc="%s: no session left" % host.name)
    print("spread: %r" % {k: [c.name for c in v] for k, v in spread.items()})


@pytest.mark.timeout(120)
def test_host_killed_mid_stream_sessions_resume_on_other_hosts(cluster):
    cl = cluster()
    chunks = session_chunks()
    n, audio_ms = len(chunks), total_ms(chunks)
    clients = [NetClient("client%d" % i, cl.stream_url, chunks) for i in range(N_CLIENTS)]
    victim = cl.asrd_hosts[0]

    async def go():
        control = asyncio.ensure_future(control_run(
            "ws://%s:%d/v1/transcribe/stream" % (cl.asrd_hosts[2].ip, nc.ASRD_PORT), chunks))
        tasks = await start_clients(clients)
        await wait_answers(clients, tasks, KILL_AT)
        t = time.monotonic()
        await asyncio.get_running_loop().run_in_executor(None, victim.kill9)
        await asyncio.gather(*tasks)
        return t, await control
    t_kill, control = arun(go(), 100)
    spread = by_host(clients)
    moved = spread.get("h1", [])
    assert len(moved) >= 2 and len(spread) == 3, {k: len(v) for k, v in spread.items()}
    delays = []
    for c in clients:
        if c not in moved:
            assert len(c.conns) == 1, (c.name, [x.close_code for x in c.conns])
            assert final_keys(check_session(c, n, audio_ms)) == final_keys(of_type(control, "final"))
            continue
        assert len(c.conns) == 2, (c.name, [(x.close_code, x.close_reason) for x in c.conns])
        dropped, resumed = c.conns
        assert dropped.close_code == 1006, (c.name, dropped.close_code, dropped.close_reason)
        s = resumed.session
        assert s["resumed"] is True and host_of(resumed) in ("h2", "h3"), s
        # claimable once the dead workers' heartbeat expired: 409 before
        assert c.retries.get(409), (c.name, c.retries)
        delay = resumed.t_open - t_kill
        delays.append(round(delay, 2))
        assert 1.0 <= delay <= HEARTBEAT_S + (8 if SLOW else 3), (c.name, delay)
        check_like_control(c, control, upto=s["last_sequence"])
        check_moved(c, control, audio_ms, n)
    print("kill -9 h1: %d sessions moved, resumed after %r s" % (len(moved), delays))
    for host in cl.asrd_hosts[1:]:
        h.poll(lambda: host.health()[1]["active_sessions"] == 0, 10, desc="%s: no session left" % host.name)


@pytest.mark.timeout(150)
def test_host_link_cut_sessions_claimed_and_not_fought_over(cluster):
    """h1's link goes down (no RST, no FIN: its processes run on) for longer
    than the store heartbeat: its sessions become claimable and move; when
    the link comes back, h1 finds its sessions owned elsewhere (NOT_OWNER /
    release) and drops them, and the moved streams go on undisturbed."""
    cl = cluster()
    chunks = session_chunks() * 2                     # ~18 s of audio, ~12 s at 1.5x
    n, audio_ms = len(chunks), total_ms(chunks)
    clients = [NetClient("client%d" % i, cl.stream_url, chunks) for i in range(N_CLIENTS)]
    victim = cl.asrd_hosts[0]
    seen = {}

    async def go():
        control = asyncio.ensure_future(control_run(
            "ws://%s:%d/v1/transcribe/stream" % (cl.asrd_hosts[2].ip, nc.ASRD_PORT), chunks))
        tasks = await start_clients(clients)
        await wait_answers(clients, tasks, CUT_AT)
        on_h1 = [c for c in clients if host_of(c.conns[0]) == "h1"]
        seen["on_h1"] = [c.session_id for c in on_h1]
        victim.cut()
        t_cut = time.monotonic()
        seen["t_cut"] = t_cut
        # every session of h1 moves; h1 has been dead to Redis for longer
        # than the heartbeat (its alive key is gone)
        deadline = time.monotonic() + (40 if SLOW else 20)
        while not all(len(c.conns) >= 2 for c in on_h1):
            for t in tasks:
                if t.done():
                    t.result()
            assert time.monotonic() < deadline, [len(c.conns) for c in on_h1]
            await asyncio.sleep(0.05)
        seen["moved_after"] = round(time.monotonic() - t_cut, 2)
        seen["alive_key"] = cl.redis_cmd("EXISTS", "asrd:worker:h1-0:alive")
        # (the resume can come before HEARTBEAT_S after the cut: the key
        # expires HEARTBEAT_S after the last beat, up to 1 s before the cut)
        # the cut lasts longer than the heartbeat in any case
        left = HEARTBEAT_S + 1.0 - (time.monotonic() - t_cut)
        if left > 0:
            await asyncio.sleep(left)
        seen["cut_for"] = round(time.monotonic() - t_cut, 2)
        victim.restore()
        seen["t_restore"] = time.monotonic()
        # h1 sees Redis again and learns it lost them: it drops its copies
        loop = asyncio.get_running_loop()

        def h1_let_go():
            try:
                m = victim.metrics(timeout=1)
            except (requests.RequestException, ValueError):
                return None
            # How h1 ends them varies: NOT_OWNER on its next update or the
            # release notice ("moved"), or, when the balancer's socket still
            # held the audio sent during the cut, that burst trips the rate
            # limit first ("policy", close 1008 to nobody). Either way its
            # delete of a record it no longer owns changes nothing.
            return m["sessions"]["active"] == 0 and sum(m["sessions"]["ended"].values()) >= len(on_h1) and m
        m = None
        deadline = time.monotonic() + (30 if SLOW else 15)
        while m is None or m is False:
            m = await loop.run_in_executor(None, h1_let_go)
            if m:
                break
            assert time.monotonic() < deadline, "h1 did not drop its moved sessions: %r" % (
                (await loop.run_in_executor(None, victim.metrics))["sessions"],)
            await asyncio.sleep(0.2)
        seen["h1_sessions"] = m["sessions"]
        seen["h1_store"] = m["store"]
        seen["let_go_after"] = round(time.monotonic() - seen["t_restore"], 2)
        # the records still live (streams go on) are the new owners', not h1's
        seen["owners"] = [cl.redis_cmd("HGET", "asrd:session:" + sid, "owner") for sid in seen["on_h1"]]
        await asyncio.gather(*tasks)
        return await control
    control = arun(go(), 140)
    moved = [c for c in clients if c.session_id in seen["on_h1"]]
    assert len(moved) >= 2, seen
    assert seen["alive_key"] == 0, "h1's heartbeat key still there after the cut: %r" % seen
    for c in clients:
        if c not in moved:
            assert len(c.conns) == 1, (c.name, [(x.close_code, x.close_reason) for x in c.conns])
            assert final_keys(check_session(c, n, audio_ms)) == final_keys(of_type(control, "final"))
            continue
        # one stall, one resume elsewhere, and nothing after: h1's return did
        # not take the session back or disturb it
        assert len(c.conns) == 2, (c.name, [(x.close_code, x.close_reason) for x in c.conns])
        assert c.conns[0].close_reason == "stalled", (c.name, c.conns[0].close_code, c.conns[0].close_reason)
        assert host_of(c.conns[1]) in ("h2", "h3") and c.conns[1].session["resumed"], c.conns[1].session
        check_moved(c, control, audio_ms, n)
    # while they still streamed, their records were owned by the new hosts
    # (None: that session had already ended)
    assert all(o is None or o.split("-")[0] in ("h2", "h3") for o in seen["owners"]), seen["owners"]
    print("link cut h1 for %.2f s: %d sessions moved within %.2f s of the cut (heartbeat %.0f s); "
          "h1 let go %.2f s after the link came back: %r, store %r" % (
              seen["cut_for"], len(moved), seen["moved_after"], HEARTBEAT_S, seen["let_go_after"],
              seen["h1_sessions"]["ended"], seen["h1_store"]))


@pytest.mark.timeout(120)
def test_host_added_under_load_takes_new_sessions(cluster):
    cl = cluster(n_asrd=4, running=3)
    new_host = cl.asrd_hosts[3]
    h.poll(lambda: cl.lb_states_are(["h4"], "DOWN"), 10, desc="haproxy: h4 DOWN before it runs")
    chunks = session_chunks()
    n, audio_ms = len(chunks), total_ms(chunks)
    load = [NetClient("load%d" % i, cl.stream_url, chunks * 2) for i in range(6)]
    fresh = [NetClient("new%d" % i, cl.stream_url, chunks) for i in range(6)]

    async def go():
        tasks = await start_clients(load)
        await wait_answers(load, tasks, 20)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, new_host.start_asrd)
        t = time.monotonic()
        while not cl.lb_states_are(["h4"], "UP"):
            assert time.monotonic() - t < 10, cl.lb_states()
            await asyncio.sleep(0.05)
        up_after = time.monotonic() - t
        tasks += await start_clients(fresh)
        await asyncio.gather(*tasks)
        return up_after
    up_after = arun(go(), 100)
    assert {host_of(c.conns[0]) for c in load} == {"h1", "h2", "h3"}
    for c in load:
        assert len(c.conns) == 1, (c.name, [x.close_code for x in c.conns])
        check_session(c, 2 * n, 2 * audio_ms)
    on_new = [c for c in fresh if host_of(c.conns[0]) == "h4"]
    # leastconn: h4 has no connection, the others two each, so the first
    # new sessions go to h4
    assert len(on_new) >= 2, [host_of(c.conns[0]) for c in fresh]
    for c in fresh:
        assert len(c.conns) == 1, (c.name, [x.close_code for x in c.conns])
        check_session(c, n, audio_ms)
    m = new_host.metrics()
    assert m["sessions"]["total"] == len(on_new), m["sessions"]
    print("h4 UP in HAProxy %.2f s after it started; new sessions by host: %r" % (
        up_after, [host_of(c.conns[0]) for c in fresh]))


@pytest.mark.timeout(60)
@pytest.mark.timeout(150)
def test_jobs_on_a_dead_host_are_reclaimed_and_finish_once(cluster):
    """Six jobs of 60 s of audio on a slow mock (about 4 s each), one run at a time per host,
    a 2 s lease; h1 killed -9 while it runs one: every job completes, each
    exactly once (one run per job across the hosts), and the one h1 held
    was taken over by a surviving host (its second attempt)."""
    lease_s = 2
    cl = cluster(ASR_JOB_LEASE_S=lease_s, ASR_JOB_CONCURRENCY=1, ASR_MOCK_LATENCY_MS=1000)
    victim, others = cl.asrd_hosts[0], cl.asrd_hosts[1:]
    ids = [ju.submit(victim, ju.distinct_wav(200 + i, seconds=60)).json()["id"] for i in range(6)]

    def victim_run():
        for line in victim.log_lines():
            if line.get("msg") == "job run started":
                return line["run"]
        return None
    held = h.poll(victim_run, 30 * h.WRAP_SLOW, desc="h1 runs a job")
    t_kill = time.monotonic()
    victim.kill9()
    finals = [ju.wait_final(others[0], i, timeout=120) for i in ids]
    assert all(f["status"] == "completed" for f in finals), [(f["id"], f["status"]) for f in finals]
    took_over = [f for f in finals if f["attempts"] > 1]
    assert took_over and all(f["attempts"] == 2 for f in took_over), [(f["id"], f["attempts"]) for f in finals]
    print("kill -9 h1 (running run %s): %d job(s) taken over, all %d done %.1f s later" % (
        held, len(took_over), len(finals), time.monotonic() - t_kill))
    # one run per job across the surviving hosts (h1's counts died with it)
    ms = [o.metrics()["jobs"] for o in others]
    completed = sum(m["runs"]["completed"] for m in ms)
    reclaimed = sum(m["runs"]["reclaimed"] for m in ms)
    assert reclaimed >= 1, [m["runs"] for m in ms]
    assert completed <= len(ids), [m["runs"] for m in ms]  # never a run finished twice
    for o in others:
        h.poll(lambda: o.metrics()["jobs"]["queue"]["pending"] == 0, 10, desc="%s: nothing pending" % o.name)


def test_cleanup_leaves_nothing_even_after_a_failure():
    """A cluster torn down after a failure in the middle of a test leaves no
    namespace, veth, route or process behind."""
    cl = nc.Cluster(2)
    pids = []
    try:
        cl.build()
        cl.start()
        pids = [p for host in cl.hosts for p in nc.netns_pids(host.ns)]
        assert len(pids) >= 4, pids        # redis, haproxy, 2 x asrd master + worker
        raise RuntimeError("a test failing here")
    except RuntimeError:
        pass
    finally:
        cl.destroy()
    assert cl.leftovers() == []
    for p in pids:
        assert h.pid_gone(p), "process %d survived the teardown" % p
