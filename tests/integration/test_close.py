"""Close codes (docs/API.md "Close codes", "Idle timeout and resume",
"Slow readers")."""
import asyncio
import socket
import time

import pytest
import websockets

import asrd_harness as h
from asrd_harness import WS, arun, of_type


async def resume_status(url, session_id):
    try:
        w = await WS.connect(url, "?session_id=" + session_id)
    except websockets.InvalidStatusCode as e:
        return e.status_code
    await w.close()
    return 101


def assert_resume_404(srv, session_id):
    r = h.raw_upgrade(srv.port, "?session_id=" + session_id)
    h.assert_json_error(r, 404, "SESSION_NOT_FOUND")


@pytest.mark.slow
def test_idle_timeout_closes_1000(start_server):
    srv = start_server(ASR_IDLE_TIMEOUT_S=1)
    speech = h.chunks_of(h.speech_pcm())[:3]

    async def with_speech():
        w, s = await WS.open_session(srv.stream_url)
        assert s["limits"]["idle_timeout_s"] == 1, s
        for c in speech:
            await w.send_bytes(c)
        t0 = time.monotonic()
        msgs = await w.until_closed(15)
        return s, msgs, w.close_code, w.close_reason, time.monotonic() - t0

    async def without_audio():
        w, s = await WS.open_session(srv.stream_url)
        t0 = time.monotonic()
        msgs = await w.until_closed(15)
        return s, msgs, w.close_code, w.close_reason, time.monotonic() - t0

    async def kept_alive(kind):
        # every client message resets the idle timer, refused ones included
        w, s = await WS.open_session(srv.stream_url)
        t_end = time.monotonic() + 3.0
        while time.monotonic() < t_end:
            if kind == "keepalive":
                await w.send_json({"type": "keepalive"})
            else:
                await w.send_text("not json")
            await asyncio.sleep(0.3)
        assert w.close_code is None and w.conn.open, "closed despite %s" % kind
        msgs = await w.stop()
        return msgs, w.close_code

    async def go():
        return await asyncio.gather(with_speech(), without_audio(),
                                    kept_alive("keepalive"), kept_alive("invalid"))

    (s1, m1, c1, r1, d1), (s2, m2, c2, r2, d2), (m3, c3), (m4, c4) = arun(go(), 60)
    # with speech: the open utterance's final, then 1000 "idle timeout"
    assert [m["type"] for m in m1 if not h.is_answer(m) and m["type"] != "speech_started"] \
        == ["final"], h.short(m1)
    assert m1[-1]["type"] == "final" and m1[-1]["text"], h.short(m1)
    assert (c1, r1) == (1000, "idle timeout"), (c1, r1)
    assert d1 >= 0.9, "closed after %.2f s, idle timeout is 1 s" % d1
    # without audio: an empty final
    assert [m["type"] for m in m2] == ["final"] and m2[0]["text"] == "", h.short(m2)
    assert m2[0]["sequence"] == 0, m2
    assert (c2, r2) == (1000, "idle timeout"), (c2, r2)
    assert d2 >= 0.9, d2
    # kept alive by keepalive / by refused messages, then closed by stop
    assert c3 == 1000 and m3[-1]["type"] == "final"
    assert c4 == 1000 and m4[-1]["type"] == "final"
    assert all(m["code"] == "INVALID_MESSAGE" for m in of_type(m4, "error"))
    # a session ended by idle timeout is gone
    assert_resume_404(srv, s1["session_id"])
    assert_resume_404(srv, s2["session_id"])


def test_message_too_big_closes_1009(server):
    async def go():
        w, s = await WS.open_session(server.stream_url)
        assert 100000 > s["limits"]["max_message_bytes"]
        await w.send_bytes(b"\0" * 2)
        await w.answers(1)
        await w.send_bytes(b"\0" * 100000)
        msgs = await w.until_closed(10)
        return s, msgs, w.close_code

    s, msgs, code = arun(go())
    assert code == 1009, (code, h.short(msgs))
    assert_resume_404(server, s["session_id"])


def test_text_message_too_big_closes_1009(server):
    async def go():
        w, s = await WS.open_session(server.stream_url)
        big = h.b64(b"\0" * 70000)   # 93336 characters of base64 > 88000
        await w.send_json({"type": "audio_chunk", "data": big})
        msgs = await w.until_closed(10)
        return msgs, w.close_code

    msgs, code = arun(go())
    assert code == 1009, (code, h.short(msgs))


@pytest.mark.slow
def test_rate_abuse_closes_1008(start_server):
    srv = start_server(ASR_MAX_AUDIO_RATE_BYTES_PER_SEC=32000, ASR_RATE_ABUSE_THRESHOLD=5,
                       ASR_MOCK_LATENCY_MS=5)
    c = h.silence(100)

    async def go():
        w, s = await WS.open_session(srv.stream_url)

        async def flood():
            try:
                for _ in range(400):
                    await w.send_bytes(c)
                    await asyncio.sleep(0)
            except websockets.ConnectionClosed:
                pass
        f = asyncio.ensure_future(flood())
        msgs = await w.until_closed(20)
        await f
        return s, msgs, w.close_code

    s, msgs, code = arun(go(), 40)
    assert code == 1008, (code, h.short(msgs))
    limited = [m for m in msgs if m["type"] == "error" and m["code"] == "RATE_LIMITED"]
    assert limited, "closed 1008 without any RATE_LIMITED first: %s" % h.short(msgs)
    answers = [m for m in msgs if h.is_answer(m)]
    assert [a["sequence"] for a in answers] == list(range(1, len(answers) + 1))
    assert_resume_404(srv, s["session_id"])


def test_sigterm_closes_1001_after_final(start_server):
    srv = start_server()
    speech = h.chunks_of(h.speech_pcm())[:10]

    async def go():
        w, s = await WS.open_session(srv.stream_url)
        for c in speech:
            await w.send_bytes(c)
        first = await w.answers(10, 15)
        srv.terminate()
        msgs = await w.until_closed(10)
        return first, msgs, w.close_code

    first, msgs, code = arun(go(), 40)
    assert not of_type(first, "final")
    finals = of_type(msgs, "final")
    assert len(finals) == 1, h.short(msgs)
    assert finals[0]["text"], "the open utterance's final is empty: %r" % finals[0]
    assert code == 1001, (code, h.short(msgs))
    srv.stop()   # exits 0 within 10 s


def test_slow_reader_closed_1008(start_server):
    """A client that never reads: partials are dropped (partials.dropped > 0)
    and, after ASR_SLOW_CLIENT_THRESHOLD overflows in a row, the connection
    is closed with 1008.

    Best effort on the close code: the client reads nothing while flooding,
    so the server's close frame sits behind many partials; when the server
    resets the TCP connection instead of waiting, the close frame may be lost.
    The test asserts the drop count (deterministic), that the server ends the
    connection, and that a close frame, if one arrives, says 1008."""
    srv = start_server(ASR_MAX_SEND_QUEUE_SIZE=4, ASR_SLOW_CLIENT_THRESHOLD=3,
                       ASR_MOCK_LATENCY_MS=0)
    m0 = srv.metrics()
    assert h.metric(m0, "partials.dropped") == 0, m0
    c = h.raw_ws_connect(srv.port, rcvbuf=2048, timeout=2.0)
    frame = h.ws_frame(b"\0\0")      # one sample per chunk: a partial per 6 bytes sent
    batch = frame * 200
    dropped = 0
    server_closed = False
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            try:
                c.sock.sendall(batch)
            except socket.timeout:
                pass                      # the server stopped reading us: fine
            except (BrokenPipeError, ConnectionResetError):
                server_closed = True
                break
            dropped = h.metric(srv.metrics(), "partials.dropped", 0)
            if dropped > 0:
                break
        assert dropped > 0, "no partial dropped in 30 s for a client that never reads"
        # keep going until the server ends the connection
        while not server_closed and time.monotonic() < deadline + 10:
            try:
                c.sock.sendall(batch)
            except socket.timeout:
                time.sleep(0.1)
            except (BrokenPipeError, ConnectionResetError):
                server_closed = True
            if h.metric(srv.metrics(), "connections.active", 1) <= h.metric(m0, "connections.active", 1):
                server_closed = True
        # now read what is left and look for the close frame
        data = c.buf
        c.sock.settimeout(5)
        try:
            while True:
                d = c.sock.recv(1 << 20)
                if not d:
                    break
                data += d
        except (ConnectionResetError, socket.timeout):
            pass
    finally:
        c.close()
    frames, _ = h.ws_parse_frames(data)
    closes = [p for op, p in frames if op == 0x8]
    assert server_closed or closes, "the server kept a client that never reads"
    if closes:
        code = int.from_bytes(closes[0][:2], "big")
        assert code == 1008, "slow reader closed with %d" % code
    else:
        # the close frame was lost behind the unread partials: the server's
        # own count of close codes (not in docs/API.md, used when present)
        m1 = srv.metrics()
        if "close_codes" in m1:
            assert h.metric(m1, "close_codes.1008", 0) > h.metric(m0, "close_codes.1008", 0), \
                "no close frame seen and close_codes.1008 did not grow: %r" % m1["close_codes"]
    h.poll(lambda: h.metric(srv.metrics(), "connections.active") <=
           h.metric(m0, "connections.active"), 10, desc="connection released")


def test_send_timeout_closes_a_stuck_writer(start_server):
    """ASR_SEND_TIMEOUT_S: with the queue limits out of reach, a client that
    never reads is still ended once the server's pending write has made no
    progress for the timeout (sessions.ended.slow_client, a "send timeout"
    log line), and no partial was dropped on the way."""
    srv = start_server(ASR_SEND_TIMEOUT_S=1, ASR_MAX_SEND_QUEUE_BYTES=67108864,
                       ASR_MAX_SEND_QUEUE_SIZE=1000000, ASR_SLOW_CLIENT_THRESHOLD=1000000,
                       ASR_MOCK_LATENCY_MS=0, ASR_MOCK_WORDS_PER_CHUNK=20,
                       ASR_MAX_AUDIO_RATE_BYTES_PER_SEC=1073741824)
    m0 = srv.metrics()
    c = h.raw_ws_connect(srv.port, rcvbuf=2048, timeout=1.0)
    batch = h.ws_frame(b"\0" * 320) * 100
    deadline = time.monotonic() + 30
    ended = False
    try:
        while time.monotonic() < deadline and not ended:
            try:
                c.sock.sendall(batch)
            except socket.timeout:
                time.sleep(0.2)           # the server stopped reading us
            except (BrokenPipeError, ConnectionResetError):
                pass
            ended = h.metric(srv.metrics(), "sessions.ended.slow_client", 0) > \
                h.metric(m0, "sessions.ended.slow_client", 0)
    finally:
        c.close()
    assert ended, "a client that never reads was kept for 30 s with ASR_SEND_TIMEOUT_S=1"
    assert h.metric(srv.metrics(), "partials.dropped") == 0, "the queue policy acted, not the timeout"
    assert any(l.get("msg") == "send timeout" for l in srv.log_lines())


@pytest.mark.skip(reason="1011 (internal error) cannot be provoked from outside in v1")
def test_close_1011():
    pass


@pytest.mark.skip(reason="1013 (overloaded after upgrade) cannot be provoked on a single "
                         "worker in v1: limits known before the upgrade answer 503")
def test_close_1013():
    pass


def test_sigterm_with_idle_keepalive_connection(start_server):
    """Draining: /v1/health answers 503 "draining" (or the idle connection is
    closed), and an idle keep-alive HTTP client does not hold the process:
    it exits 0 within a few seconds, well inside the 10 s a supervisor (and
    this harness) waits."""
    srv = start_server()
    with h.RawConn(srv.port) as c:
        c.send(h.build_request("GET", "/v1/health"))
        assert c.read_response().status == 200
        t0 = time.monotonic()
        srv.terminate()
        time.sleep(0.2)
        try:
            c.send(h.build_request("GET", "/v1/health"))
            r = c.read_response()
        except (EOFError, BrokenPipeError, ConnectionResetError):
            r = None
        if r is not None:
            assert r.status == 503, r
            assert r.json()["status"] == "draining", r
        rc = srv.wait(10)
        took = time.monotonic() - t0
    assert rc == 0, rc
    assert took < 5, "SIGTERM to exit took %.1f s with one idle keep-alive connection" % took
