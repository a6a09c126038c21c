"""Dropped (detached, resumable) sessions have their own window, bounds and
per-address accounting (docs/API.md "Resuming a session"), so that clients
that connect and reset cannot fill the session cap.

Before: each dropped session stayed resumable for ASR_IDLE_TIMEOUT_S (300 s)
and counted toward ASR_MAX_SESSIONS_PER_WORKER; with a cap of 50 and a
per-address connection limit of 10, 60 connect-then-reset clients took all
50 slots, every later client got 503 SESSION_LIMIT, and /v1/health said
"ok"."""
import asyncio

import pytest
import websockets

import asrd_harness as h
from asrd_harness import WS, arun


async def open_from(url, ip, query=""):
    """A session from a chosen loopback source address (127.0.0.0/8 is all
    loopback): the server sees ip as the client's address."""
    conn = await websockets.connect(url + query, max_size=None, ping_interval=None, close_timeout=5,
                                    open_timeout=10, local_addr=(ip, 0))
    w = WS(conn)
    first = await w.next(10)
    assert first["type"] == "session", first
    return w, first


async def drop(url, ip="127.0.0.1"):
    """Connects, then resets the connection (no close frame): a detached session."""
    w, s = await open_from(url, ip)
    w.abort()
    await asyncio.sleep(0.01)            # the transport closes the socket on the loop
    return s["session_id"]


async def resume_status(url, sid):
    """101 (resumed) or the HTTP status of the refusal."""
    try:
        w, s = await WS.open_session(url, "?session_id=" + sid)
    except Exception as e:
        for code in ("404", "409", "503"):
            if code in str(e):
                return int(code)
        raise
    assert s["resumed"] is True
    await w.stop()
    return 101


async def wait_detached(srv, n, timeout=5.0):
    """Polls without blocking the client's event loop."""
    last = None
    for _ in range(int(timeout / 0.05)):
        last = h.metric(srv.metrics(), "sessions.detached")
        if last == n:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("%d detached not reached (last %r)" % (n, last))


def test_connect_then_reset_clients_do_not_fill_the_session_cap(start_server):
    """The reported case: cap 50, 10 connections per address, 60 clients
    that connect and reset. Every later client still gets a session."""
    srv = start_server(ASR_MAX_SESSIONS_PER_WORKER=50, ASR_MAX_CONNECTIONS_PER_IP=10)

    async def go():
        for _ in range(60):
            try:
                await drop(srv.stream_url)
            except websockets.InvalidStatusCode as e:
                assert e.status_code == 503, e
        await asyncio.sleep(0.3)
        ok, refused = 0, 0
        live = []
        for i in range(20):
            try:                                  # other clients, other addresses
                w, s = await open_from(srv.stream_url, "127.0.1.%d" % (1 + i))
                live.append(w)
                ok += 1
            except Exception as e:
                assert "503" in str(e), e
                refused += 1
        for w in live:
            await w.stop()
        return ok, refused

    ok, refused = arun(go(), 60)
    print("after 60 connect-then-reset clients: %d of 20 new clients served, %d refused" % (ok, refused))
    assert ok == 20 and refused == 0, (ok, refused)
    m = srv.metrics()
    assert h.metric(m, "sessions.detached") <= 10         # the per-address bound
    assert h.metric(m, "sessions.ended.evicted") >= 50


def test_detached_session_expires_after_the_resume_timeout(start_server):
    srv = start_server(ASR_RESUME_TIMEOUT_S=1, ASR_IDLE_TIMEOUT_S=300)

    async def go():
        w, s = await WS.open_session(srv.stream_url)
        assert s["limits"]["resume_timeout_s"] == 1 and s["limits"]["idle_timeout_s"] == 300, s
        sid = s["session_id"]
        w.abort()
        await wait_detached(srv, 1)
        await asyncio.sleep(2.0)
        return await resume_status(srv.stream_url, sid)
    assert arun(go(), 20) == 404
    m = srv.metrics()
    assert h.metric(m, "sessions.ended.expired") == 1
    assert h.metric(m, "sessions.detached") == 0


def test_a_live_client_evicts_the_oldest_detached_session_at_the_cap(start_server):
    srv = start_server(ASR_MAX_SESSIONS_PER_WORKER=4, ASR_MAX_DETACHED_PER_IP=0)

    async def go():
        ids = [await drop(srv.stream_url, "127.0.0.%d" % (10 + i)) for i in range(4)]
        await wait_detached(srv, 4)
        w, s = await WS.open_session(srv.stream_url)         # at the cap: the oldest gives way
        got = [await resume_status(srv.stream_url, sid) for sid in ids]
        await w.stop()
        return got
    got = arun(go(), 30)
    assert got == [404, 101, 101, 101], got
    m = srv.metrics()
    assert h.metric(m, "sessions.evicted_for_room") == 1
    assert h.metric(m, "sessions.ended.evicted") == 1


def test_live_sessions_at_the_cap_make_health_degraded(start_server):
    srv = start_server(ASR_MAX_SESSIONS_PER_WORKER=3)

    async def go():
        live = [(await WS.open_session(srv.stream_url))[0] for _ in range(3)]
        code, body = srv.get_json("/v1/health")
        r = h.raw_upgrade(srv.port)
        h.assert_json_error(r, 503, "SESSION_LIMIT")
        for w in live:
            await w.stop()
        return code, body
    code, body = arun(go(), 30)
    assert code == 200 and body["status"] == "degraded" and body["degraded"] == ["session_limit"], body
    h.poll(lambda: srv.get_json("/v1/health")[1]["status"] == "ok", 5, desc="ok again")


def test_per_address_bound_evicts_that_address_oldest(start_server):
    srv = start_server(ASR_MAX_DETACHED_PER_IP=2)

    async def go():
        a = [await drop(srv.stream_url, "127.0.0.2") for _ in range(3)]
        other = await drop(srv.stream_url, "127.0.0.3")
        await wait_detached(srv, 3)
        return [await resume_status(srv.stream_url, sid) for sid in a + [other]]
    got = arun(go(), 30)
    assert got == [404, 101, 101, 101], got


def test_worker_bound_evicts_the_oldest_and_health_says_so(start_server):
    srv = start_server(ASR_MAX_DETACHED_SESSIONS=3, ASR_MAX_DETACHED_PER_IP=0)

    async def go():
        ids = [await drop(srv.stream_url) for _ in range(4)]
        await wait_detached(srv, 3)
        code, body = srv.get_json("/v1/health")
        got = [await resume_status(srv.stream_url, sid) for sid in ids]
        return code, body, got
    code, body, got = arun(go(), 30)
    assert got == [404, 101, 101, 101], got
    assert code == 200 and body["status"] == "degraded" and body["degraded"] == ["detached_limit"], body
    assert body["detached_sessions"] == 3 and body["workers"][0]["detached_sessions"] == 3, body
    assert srv.get_json("/v1/health")[1]["status"] == "ok"
