"""Resume on the same server (docs/API.md "Resuming a session")."""
import asyncio
import time

import websockets

import asrd_harness as h
from asrd_harness import WS, arun, of_type
from test_stream import check_session_msg, check_utterance_texts


async def resume(url, session_id, extra="", timeout=5.0):
    """Reconnects with ?session_id=; a 409 right after a drop (the server may
    not have seen the drop yet) is retried for a few seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await WS.open_session(url, "?session_id=" + session_id + extra)
        except websockets.InvalidStatusCode as e:
            if e.status_code != 409 or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


def test_resume_after_drop(server):
    chunks = h.chunks_of(h.speech_pcm())

    async def go():
        w, s = await WS.open_session(server.stream_url)
        for c in chunks[:5]:
            await w.send_bytes(c)
        first = await w.answers(5)
        w.abort()
        w2, s2 = await resume(server.stream_url, s["session_id"])
        for c in chunks[5:10]:
            await w2.send_bytes(c)
        second = await w2.answers(5)
        # a JSON chunk with the next explicit number works too
        await w2.send_json({"type": "audio_chunk", "data": h.b64(chunks[10]), "sequence": 11})
        second += await w2.answers(1)
        after = await w2.stop()
        return s, first, s2, second, after, w2.close_code

    s, first, s2, second, after, code = arun(go(), 40)
    assert [p["sequence"] for p in of_type(first, "partial")] == [1, 2, 3, 4, 5]
    check_session_msg(s2, resumed=True, last_sequence=5)
    assert s2["session_id"] == s["session_id"], (s, s2)
    assert [p["sequence"] for p in of_type(second, "partial")] == list(range(6, 12)), \
        h.short(second)
    assert not of_type(second, "error"), h.short(second)
    # the utterance open at the drop continues: one final holding it all
    finals = of_type(after, "final")
    assert len(finals) == 1 and finals[0]["sequence"] <= 11, h.short(after)
    assert finals[0]["start_ms"] < 200, finals[0]
    check_utterance_texts(first + second + after)
    assert code == 1000
    # ended by stop: gone
    r = h.raw_upgrade(server.port, "?session_id=" + s["session_id"])
    h.assert_json_error(r, 404, "SESSION_NOT_FOUND")


def test_resume_sample_rate(server):
    async def go():
        w, s = await WS.open_session(server.stream_url, "?sample_rate=8000")
        await w.send_bytes(b"\0" * 1600)
        await w.answers(1)
        w.abort()
        loop = asyncio.get_running_loop()
        # a different rate is refused (retrying while the drop is unseen)
        deadline = time.monotonic() + 5
        while True:
            r = await loop.run_in_executor(None, h.raw_upgrade, server.port,
                                           "?session_id=%s&sample_rate=16000" % s["session_id"])
            if r.status != 409 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        # the same rate, and no rate, are fine
        w2, s2 = await resume(server.stream_url, s["session_id"], "&sample_rate=8000")
        w2.abort()
        w3, s3 = await resume(server.stream_url, s["session_id"])
        await w3.send_bytes(b"\0" * 1600)
        a = await w3.answers(1)
        after = await w3.stop()
        return r, s2, s3, a, after, w3.close_code

    r, s2, s3, a, after, code = arun(go(), 40)
    h.assert_json_error(r, 400)
    assert s2["resumed"] is True and s2["sample_rate"] == 8000 and s2["last_sequence"] == 1, s2
    assert s3["resumed"] is True and s3["sample_rate"] == 8000 and s3["last_sequence"] == 1, s3
    assert a[-1]["type"] == "partial" and a[-1]["sequence"] == 2, a
    assert after[-1]["type"] == "final" and after[-1]["end_ms"] == 200, after
    assert code == 1000


def test_resume_reports_refused_chunks_in_last_sequence(server):
    """last counts refused chunks too."""
    async def go():
        w, s = await WS.open_session(server.stream_url)
        await w.send_bytes(h.silence(100))
        await w.send_bytes(b"\0\0\0")                  # INVALID_AUDIO, number 2
        await w.send_json({"type": "audio_chunk", "data": h.b64(h.silence(100)),
                           "sequence": 7})
        await w.answers(3)
        w.abort()
        w2, s2 = await resume(server.stream_url, s["session_id"])
        await w2.send_bytes(h.silence(100))
        a = await w2.answers(1)
        await w2.stop()
        return s2, a

    s2, a = arun(go())
    assert s2["resumed"] is True and s2["last_sequence"] == 7, s2
    assert a[-1]["type"] == "partial" and a[-1]["sequence"] == 8, a


def test_finals_not_sent_again(server):
    """A final sent before the drop is not repeated after the resume."""
    audio = h.speech_pcm() + h.silence(1000)
    chunks = h.chunks_of(audio)

    async def go():
        w, s = await WS.open_session(server.stream_url)
        for c in chunks:
            await w.send_bytes(c)
            await asyncio.sleep(0.02)
        seen = {"partial": 0, "final": 0}

        def pred(m):
            if m["type"] in seen:
                seen[m["type"]] += 1
            return seen["partial"] >= len(chunks) and seen["final"] >= 1
        got = await w.until(pred, 30)
        w.abort()
        w2, s2 = await resume(server.stream_url, s["session_id"])
        after = await w2.stop()
        return got, s2, after, w2.close_code

    got, s2, after, code = arun(go(), 60)
    assert of_type(got, "final") and of_type(got, "final")[0]["text"], h.short(got)
    assert s2["last_sequence"] == len(chunks)
    assert [m["type"] for m in after] == ["final"], h.short(after)
    assert after[0]["text"] == "", "a final repeated after resume: %r" % after[0]
    assert code == 1000


def test_client_close_handshake_ends_the_session(server):
    """Only a dropped connection is resumable (docs/API.md "Resuming
    a session"): a session whose client completed a close handshake is gone,
    whatever code the client used, 1001 ("going away") included."""
    for code in (1000, 1001, 4000):
        async def go():
            w, s = await WS.open_session(server.stream_url)
            await w.send_bytes(h.silence(100))
            await w.answers(1)
            await asyncio.wait_for(w.conn.close(code=code), 6)
            return s
        s = arun(go(), 20)
        deadline = time.monotonic() + 5
        while True:  # the server frees the connection just after the handshake
            r = h.raw_upgrade(server.port, "?session_id=" + s["session_id"])
            if r.status == 404 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        h.assert_json_error(r, 404, "SESSION_NOT_FOUND")
