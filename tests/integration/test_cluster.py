"""Many workers, one service: worker processes on one port, the
Redis session store, resume on another worker, a dead worker's sessions, a
Redis restart, the global session limit, rolling restart.

Every test runs against a real redis-server started here and real asrd
processes; clients are Python websockets/requests."""
import asyncio
import os
import signal
import subprocess
import threading
import time

import pytest
import requests

import asrd_harness as h
from asrd_harness import WS, arun, of_type, is_answer
from redis_fixture import RedisServer
from asrd_harness import worker_pids

pytestmark = pytest.mark.needs_redis

CH = h.CHUNK_BYTES


@pytest.fixture
def redis():
    r = RedisServer().start()
    try:
        yield r
    finally:
        r.cleanup()


def store_env(redis, prefix, **extra):
    env = {"ASR_REDIS_URL": redis.url, "ASR_WORKER_ID": prefix, "ASR_MOCK_LATENCY_MS": 20,
           "ASR_ENDPOINTING_MS": 300}
    env.update(extra)
    return env


def speech_chunks(n):
    pcm = h.speech_pcm()
    chunks = h.chunks_of(pcm)
    return [chunks[i % len(chunks)] for i in range(n)]


async def stream(w, chunks, start_seq=1):
    """Sends chunks with explicit sequence numbers (JSON) and reads one
    answer per chunk. Returns the messages."""
    got = []
    for i, c in enumerate(chunks):
        await w.send_json({"type": "audio_chunk", "sequence": start_seq + i, "data": h.b64(c)})
        got += await w.answers(1, timeout=20)
    return got


def finals_key(msgs):
    return [(m["start_ms"], m["end_ms"]) for m in of_type(msgs, "final")]


# ---------------------------------------------------------------------------


def test_resume_on_another_instance_keeps_the_transcript(redis, start_server):
    """A session dropped on A resumes on B: resumed, last_sequence, the
    finals of the whole session come once each, in order, and the
    transcript equals an uninterrupted run of the same audio."""
    a = start_server(**store_env(redis, "A"))
    b = start_server(**store_env(redis, "B"))
    chunks = speech_chunks(60)

    async def control():
        w, _ = await WS.open_session(a.stream_url)
        got = await stream(w, chunks)
        got += await w.stop(timeout=20)
        return got

    async def moved():
        w, s = await WS.open_session(a.stream_url)
        assert s["worker_id"] == "A0"
        got = await stream(w, chunks[:35])
        await asyncio.sleep(1.3)        # a snapshot is written at most once a second
        w.abort()                       # dropped: no close handshake
        await asyncio.sleep(0.3)
        w2, s2 = await WS.open_session(b.stream_url, "?session_id=" + s["session_id"])
        assert s2["resumed"] is True and s2["worker_id"] == "B0", s2
        last = s2["last_sequence"]
        assert 1 <= last <= 35, s2
        got = [m for m in got if m.get("sequence", 0) <= last or m["type"] == "final"]
        got += await stream(w2, chunks[last:], start_seq=last + 1)
        got += await w2.stop(timeout=20)
        assert w2.close_code == 1000
        return got, last

    ctl = arun(control(), 90)
    got, last = arun(moved(), 90)
    text = lambda msgs: " ".join(m["text"] for m in of_type(msgs, "final") if m["text"])
    print("moved:", finals_key(got), text(got))
    print("control:", finals_key(ctl), text(ctl))
    # The VAD on B starts from A's position but not from its adaptive noise
    # model or the partial frame A carried, so utterance edges may move by a
    # few frames; no utterance may be lost, split or repeated.
    fk, ck = finals_key(got), finals_key(ctl)
    assert len(fk) == len(ck), (fk, ck)
    for (s1, e1), (s2, e2) in zip(fk, ck):
        assert abs(s1 - s2) <= 90 and abs(e1 - e2) <= 90, (fk, ck)
    assert fk == sorted(fk) and all(fk[i][1] < fk[i + 1][0] for i in range(len(fk) - 1)), fk
    assert len(text(got).split()) >= 0.8 * len(text(ctl).split()), (text(got), text(ctl))
    # the old owner let go of it
    h.poll(lambda: h.metric(a.metrics(), "sessions.ended.moved") == 1, 5, desc="A released the session")
    assert h.metric(b.metrics(), "sessions.resumed") == 1


def test_resume_of_an_attached_session_is_busy_everywhere(redis, start_server):
    a = start_server(**store_env(redis, "A"))
    b = start_server(**store_env(redis, "B"))

    async def go():
        w, s = await WS.open_session(a.stream_url)
        r = h.raw_upgrade(b.port, "?session_id=" + s["session_id"])
        h.assert_json_error(r, 409, "SESSION_BUSY")
        r = h.raw_upgrade(b.port, "?session_id=" + "0" * 32)
        h.assert_json_error(r, 404, "SESSION_NOT_FOUND")
        await w.stop()
        # ended by stop: gone everywhere (the record is deleted once the
        # close handshake has completed on A, a moment after our close)
        h.poll(lambda: h.raw_upgrade(b.port, "?session_id=" + s["session_id"]).status == 404, 5,
               desc="the ended session gone from the store")
    arun(go())


def test_global_session_limit_across_instances(redis, start_server):
    """ASR_MAX_GLOBAL_SESSIONS holds across processes under concurrent
    creates: exactly the limit is admitted, the rest get 503."""
    limit = 12
    servers = [start_server(**store_env(redis, p, ASR_MAX_GLOBAL_SESSIONS=limit)) for p in ("A", "B", "C")]
    results = []
    lock = threading.Lock()

    def one(srv):
        r = h.raw_upgrade(srv.port)
        with lock:
            results.append(r)

    threads = [threading.Thread(target=one, args=(servers[i % 3],)) for i in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    ok = [r for r in results if r.status == 101]
    refused = [r for r in results if r.status == 503]
    assert len(results) == 30
    assert len(ok) == limit, [r.status for r in results]
    assert len(refused) == 30 - limit
    for r in refused:
        assert r.json()["error"]["code"] == "SESSION_LIMIT"
        assert "retry-after" in {k.lower() for k in r.headers}
    refused_metric = sum(h.metric(s.metrics(), "sessions.refused") for s in servers)
    assert refused_metric == 30 - limit


def record_written(redis, session_id):
    """The `last` write time of a session's record in Redis ("" if none)."""
    return subprocess.run(["redis-cli", "-p", str(redis.port), "HGET", "asrd:session:" + session_id, "last"],
                          capture_output=True, text=True, timeout=10).stdout.strip()


def test_snapshot_interval_spaces_the_store_writes(redis, start_server):
    """ASR_SNAPSHOT_INTERVAL_S=4: a session streaming in real time has its
    record rewritten every 4 s instead of every second."""
    writes = {}
    for every in (1, 4):
        srv = start_server(**store_env(redis, "S%d" % every, ASR_SNAPSHOT_INTERVAL_S=every))

        async def go():
            w, s = await WS.open_session(srv.stream_url)
            seen = set()
            for _ in range(80):         # 8 s of silence (no final to write at once)
                await w.send_bytes(b"\0" * CH)
                await asyncio.sleep(0.1)
                seen.add(record_written(redis, s["session_id"]))
            await w.stop(timeout=20)
            return len(seen)
        writes[every] = arun(go(), 60)
        srv.stop()
    assert writes[1] >= 6 and writes[4] <= 3, writes


def test_killed_worker_sessions_resume_elsewhere(redis, start_server):
    """kill -9 of a whole instance: its session is claimable on another once
    the dead worker's heartbeat expires (3 s), with the finals it had sent."""
    a = start_server(**store_env(redis, "A"))
    b = start_server(**store_env(redis, "B"))
    chunks = speech_chunks(50)

    async def go():
        w, s = await WS.open_session(a.stream_url)
        got = await stream(w, chunks[:30])
        await asyncio.sleep(1.3)
        a.kill9()
        t0 = time.monotonic()
        while True:
            try:
                w2, s2 = await WS.open_session(b.stream_url, "?session_id=" + s["session_id"])
                break
            except Exception as e:  # 409 until the heartbeat expires
                assert "409" in str(e), e
                assert time.monotonic() - t0 < 10, "never became claimable"
                await asyncio.sleep(0.25)
        waited = time.monotonic() - t0
        assert s2["resumed"] is True and s2["worker_id"] == "B0"
        last = s2["last_sequence"]
        assert 25 <= last <= 30, s2       # at most ~1 s of answers behind
        more = await stream(w2, chunks[last:], start_seq=last + 1)
        more += await w2.stop(timeout=20)
        assert w2.close_code == 1000
        before = [k for k in finals_key(got)]
        after = finals_key(more)
        assert not set(before) & set(after), "a final sent before the kill came again"
        assert before + after == sorted(before + after)
        return waited

    waited = arun(go(), 90)
    assert waited <= 5.0, "claimable after %.1f s (heartbeat bound 3 s)" % waited


def test_redis_restart_is_survived(redis, start_server):
    """Redis goes away mid-stream: streams continue, nothing blocks; with
    ASR_STORE_REQUIRED=1 new sessions get 503 STORE_UNAVAILABLE until Redis
    is back; then the store reconnects and sessions are stored again."""
    a = start_server(**store_env(redis, "A", ASR_STORE_REQUIRED=1))
    # /v1/health answers before the store's first connect is done; with the
    # store required a session opened before that is 503
    h.poll(lambda: h.metric(a.metrics(), "store.available") == 1, 10, desc="store up")
    chunks = speech_chunks(40)

    async def go():
        w, s = await WS.open_session(a.stream_url)
        await stream(w, chunks[:10])
        redis.stop()
        t0 = time.monotonic()
        got = await stream(w, chunks[10:30], start_seq=11)   # keeps going, in real time or faster
        assert len([m for m in got if is_answer(m)]) == 20
        assert time.monotonic() - t0 < 15
        r = h.raw_upgrade(a.port)
        h.assert_json_error(r, 503, "STORE_UNAVAILABLE")
        code, health = a.get_json("/v1/health")
        h.poll(lambda: h.metric(a.metrics(), "store.available") == 0, 5, desc="store down in metrics")
        redis.start()
        h.poll(lambda: h.metric(a.metrics(), "store.available") == 1, 15, desc="store back in metrics")
        # new sessions are admitted again (a client retries a 503 after Retry-After)
        h.poll(lambda: h.raw_upgrade(a.port).status == 101, 5, interval=0.3, desc="new sessions admitted")
        w2, s2 = await WS.open_session(a.stream_url)
        await stream(w2, chunks[:3])
        await w2.stop()
        await stream(w, chunks[30:40], start_seq=31)
        await w.stop()
        assert w.close_code == 1000 and w2.close_code == 1000
    arun(go(), 90)
    m = a.metrics()
    assert h.metric(m, "store.errors") >= 1
    assert h.metric(m, "store.reconnects") >= 1


def test_store_not_required_serves_locally_and_reconciles(redis, start_server):
    """Without ASR_STORE_REQUIRED a new session is served while Redis is
    down and registered once it is back (then resumable elsewhere)."""
    a = start_server(**store_env(redis, "A"))
    b = start_server(**store_env(redis, "B"))

    async def go():
        redis.stop()
        h.poll(lambda: h.metric(a.metrics(), "store.available") == 0, 5, desc="store down")
        w, s = await WS.open_session(a.stream_url)
        await stream(w, speech_chunks(5))
        redis.start()
        h.poll(lambda: h.metric(a.metrics(), "store.available") == 1, 15, desc="store back")
        await stream(w, speech_chunks(15)[5:], start_seq=6)
        await asyncio.sleep(1.3)
        w.abort()
        await asyncio.sleep(0.3)
        w2, s2 = await WS.open_session(b.stream_url, "?session_id=" + s["session_id"])
        assert s2["resumed"] is True and s2["last_sequence"] >= 10
        await w2.stop()
    arun(go(), 60)


@pytest.mark.parametrize("store_answers", [False, True], ids=["store_gives_up", "store_answers"])
@pytest.mark.parametrize("resume", [False, True], ids=["new", "claim"])
def test_drain_while_an_upgrade_waits_for_the_store(redis, start_server, resume, store_answers):
    """docs/API.md "Connecting": a drain that begins while an upgrade waits
    for the store (Redis stopped, so the create, or the claim of another
    instance's session, hangs) answers that upgrade 503 DRAINING once the
    store replies, whether Redis comes back in time or the op times out
    (1 s), and the worker exits 0. (The drain used to free the waiting new
    session under its pending upgrade, which then used it: the worker died
    of SIGSEGV; and a claim completing during the drain attached a session
    that no 1001 would end.)"""
    srv = start_server(**store_env(redis, "dw"))
    query = ""
    if resume:
        other = start_server(**store_env(redis, "do"))

        async def detached_elsewhere():
            w, s = await WS.open_session(other.stream_url)
            await stream(w, speech_chunks(3))
            w.abort()
            return s["session_id"]
        query = "?session_id=" + arun(detached_elsewhere(), 30)
        h.poll(lambda: h.metric(other.metrics(), "sessions.attached") == 0, 5, desc="detached on the other")
    h.poll(lambda: h.metric(srv.metrics(), "store.available") == 1, 10, desc="store up")
    redis.proc.send_signal(signal.SIGSTOP)
    try:
        with h.RawConn(srv.port, 15) as c:
            c.send(h.build_request("GET", "/v1/transcribe/stream" + query, h.upgrade_headers()))
            time.sleep(0.3)           # the request waits for Redis
            srv.terminate()           # the drain begins meanwhile
            time.sleep(0.3)
            if store_answers:         # within the store's 1 s op timeout
                redis.proc.send_signal(signal.SIGCONT)
            r = c.read_response()
        h.assert_json_error(r, 503, "DRAINING")
    finally:
        redis.proc.send_signal(signal.SIGCONT)
    srv.stop()  # exit status 0
    if store_answers and not resume:
        # the record created for the refused session is deleted again
        h.poll(lambda: redis.cmd("KEYS", "asrd:session:*").startswith("*0"), 5, desc="no session record left")


def test_workers_share_one_port_and_restart(start_server):
    """ASR_WORKERS=2: both workers accept on one port, metrics cover both,
    a worker killed with -9 is replaced, and the service keeps answering."""
    srv = start_server(ASR_WORKERS=2)
    seen = set()
    deadline = time.monotonic() + 10
    while len(seen) < 2 and time.monotonic() < deadline:
        s = requests.Session()
        seen.add(s.get(srv.http + "/v1/health", timeout=5).json()["worker_id"])
        s.close()
    assert seen == {"w0", "w1"}, seen
    time.sleep(1.2)  # workers publish their counters each second
    m = srv.metrics()
    assert sorted(x["worker_id"] for x in m["workers"]) == ["w0", "w1"]
    before = worker_pids(srv.proc.pid)
    assert len(before) == 2
    os.kill(before[0], signal.SIGKILL)
    h.poll(lambda: len(set(worker_pids(srv.proc.pid)) - set(before)) == 1 and
           len(worker_pids(srv.proc.pid)) == 2, 10, desc="the dead worker replaced")
    for _ in range(20):
        assert requests.get(srv.http + "/v1/health", timeout=5).status_code == 200
    assert any("worker died, restarting" in line.get("msg", "") for line in srv.log_lines())


def test_sighup_rolling_restart_refuses_nothing(start_server):
    """SIGHUP replaces every worker while clients keep connecting: no
    request fails, and the workers' pids all change. (Under ASan this failed
    about one run in eight until http_conn_drain stopped closing a connection
    whose response was queued but not yet written.)"""
    srv = start_server(ASR_WORKERS=2)
    before = set(worker_pids(srv.proc.pid))
    stop = threading.Event()
    failures, count = [], [0]

    def hammer():
        while not stop.is_set():
            try:
                r = requests.get(srv.http + "/v1/health", timeout=5, headers={"Connection": "close"})
                if r.status_code != 200:
                    failures.append(r.status_code)
                count[0] += 1
            except requests.RequestException as e:
                failures.append(repr(e))

    ts = [threading.Thread(target=hammer) for _ in range(3)]
    for t in ts:
        t.start()
    time.sleep(0.5)
    os.kill(srv.proc.pid, signal.SIGHUP)
    h.poll(lambda: not (set(worker_pids(srv.proc.pid)) & before) and len(worker_pids(srv.proc.pid)) == 2,
           15, desc="all workers replaced")
    time.sleep(0.5)
    stop.set()
    for t in ts:
        t.join(10)
    assert count[0] > 20
    assert failures == [], failures[:5]
