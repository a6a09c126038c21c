"""Many sessions at once, and clients that vanish."""
import asyncio
import resource

import pytest

import asrd_harness as h
from asrd_harness import WS, arun, of_type

N_SESSIONS = 200


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_200_concurrent_sessions(start_server):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1024 and hard >= 1024:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
    srv = start_server()
    chunks = h.chunks_of(h.speech_pcm())[:20]        # 2 s in 100 ms chunks
    m0 = srv.metrics()

    async def one(i):
        w, s = await WS.open_session(srv.stream_url, timeout=30)
        await asyncio.sleep((i % 10) * 0.01)
        for c in chunks:
            await w.send_bytes(c)
            await asyncio.sleep(0.05)
        await w.send_json({"type": "stop"})
        msgs = await w.until_closed(90)
        return s, msgs, w.close_code, w.close_reason

    async def go():
        return await asyncio.gather(*[one(i) for i in range(N_SESSIONS)], return_exceptions=True)

    results = arun(go(), 200)
    failures = [(i, r) for i, r in enumerate(results) if isinstance(r, BaseException)]
    assert not failures, "%d sessions failed, first: %r" % (len(failures), failures[0])
    ids = set()
    for s, msgs, code, reason in results:
        ids.add(s["session_id"])
        partials = of_type(msgs, "partial")
        assert [p["sequence"] for p in partials] == list(range(1, 21)), h.short(msgs)
        assert not of_type(msgs, "error"), h.short(msgs)
        assert msgs[-1]["type"] == "final" and msgs[-1]["sequence"] == 20, h.short(msgs)
        assert code == 1000, (code, reason)
    assert len(ids) == N_SESSIONS, "session ids are not unique"
    h.poll(lambda: h.metric(srv.metrics(), "sessions.total") -
           h.metric(m0, "sessions.total") == N_SESSIONS, 5,
           desc="sessions.total grown by %d" % N_SESSIONS)
    m1 = srv.metrics()
    assert h.metric(m1, "chunks.total") - h.metric(m0, "chunks.total") == 20 * N_SESSIONS, m1
    h.poll(lambda: h.metric(srv.metrics(), "sessions.active") == h.metric(m0, "sessions.active"),
           5, desc="sessions.active back to its start value")


@pytest.mark.slow
def test_disconnect_mid_stream(start_server):
    """A client that vanishes without a close handshake: its connection is
    released at once, its session once it can no longer be resumed
    (resume_timeout_s, here 1 s); another session is not disturbed."""
    srv = start_server(ASR_IDLE_TIMEOUT_S=1, ASR_RESUME_TIMEOUT_S=1)
    m0 = srv.metrics()
    c0, s0 = h.metric(m0, "connections.active"), h.metric(m0, "sessions.active")
    assert isinstance(c0, int) and isinstance(s0, int), m0
    chunks = h.chunks_of(h.speech_pcm())

    async def go():
        loop = asyncio.get_running_loop()
        stay, _ = await WS.open_session(srv.stream_url)
        gone, _ = await WS.open_session(srv.stream_url)

        def both_up():
            m = srv.metrics()
            return (h.metric(m, "connections.active") == c0 + 2 and
                    h.metric(m, "sessions.active") == s0 + 2 and m)
        m_both = await loop.run_in_executor(
            None, lambda: h.poll(both_up, 3, desc="two connections and sessions counted"))
        stop_feeding = asyncio.Event()

        async def feed():
            n = 0
            while not stop_feeding.is_set():
                await stay.send_bytes(h.silence(100))
                n += 1
                await asyncio.sleep(0.1)
            return n

        feeder = asyncio.ensure_future(feed())
        for c in chunks[:10]:
            await gone.send_bytes(c)
        await gone.answers(5)
        gone.abort()

        def conn_down():
            m = srv.metrics()
            return h.metric(m, "connections.active") == c0 + 1 and m
        m_conn = await loop.run_in_executor(
            None, lambda: h.poll(conn_down, 3, desc="connections.active down by one"))

        def sess_down():
            m = srv.metrics()
            return h.metric(m, "sessions.active") == s0 + 1 and m
        m_sess = await loop.run_in_executor(
            None, lambda: h.poll(sess_down, 6, desc="sessions.active down by one"))
        stop_feeding.set()
        n = await feeder
        await stay.answers(n, 10)
        after = await stay.stop()
        return m_both, m_conn, m_sess, n, stay.msgs, after, stay.close_code

    m_both, m_conn, m_sess, n, msgs, after, code = arun(go(), 60)
    assert h.metric(m_both, "connections.active") == c0 + 2, (m0, m_both)
    assert h.metric(m_both, "sessions.active") == s0 + 2, (m0, m_both)
    partials = of_type(msgs, "partial")
    assert [p["sequence"] for p in partials] == list(range(1, n + 1))
    assert after[-1]["type"] == "final" and code == 1000
    h.poll(lambda: h.metric(srv.metrics(), "sessions.active") == s0 and
           h.metric(srv.metrics(), "connections.active") == c0, 5, desc="all back to start")


def test_dropped_session_stays_counted_until_expiry(server):
    """Fine points: a dropped, still resumable session counts toward
    active_sessions; its connection does not count any more."""
    async def go():
        loop = asyncio.get_running_loop()
        h0 = await loop.run_in_executor(None, server.health)
        m0 = await loop.run_in_executor(None, server.metrics)
        w, s = await WS.open_session(server.stream_url)
        await w.send_bytes(h.silence(100))
        await w.answers(1)
        w.abort()
        c0 = h.metric(m0, "connections.active")
        await loop.run_in_executor(None, lambda: h.poll(
            lambda: h.metric(server.metrics(), "connections.active") == c0, 3,
            desc="connections.active back"))
        h1 = await loop.run_in_executor(None, server.health)
        # clean up: resume and stop
        w2, s2 = await WS.open_session(server.stream_url, "?session_id=" + s["session_id"])
        await w2.stop()
        return h0, h1

    h0, h1 = arun(go())
    assert h1["active_sessions"] == h0["active_sessions"] + 1, (h0, h1)
