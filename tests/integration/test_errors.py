"""Every streaming error code of docs/API.md, provoked once, and the rules
for sequence numbers around refused chunks."""
import asyncio
import json

import pytest

import asrd_harness as h
from asrd_harness import WS, arun, of_type


def check_error(e, code, sequence=None, has_sequence=True):
    assert e["type"] == "error", e
    assert e.get("code") == code, "expected %s, got %r" % (code, e)
    assert isinstance(e.get("message"), str) and e["message"], e
    if has_sequence:
        assert e.get("sequence") == sequence, "expected sequence %r: %r" % (sequence, e)
    else:
        assert "sequence" not in e, "an invalid message takes no number: %r" % e


def test_invalid_message(server):
    bad = [
        "this is not json",
        "[1, 2, 3]",
        '{"type": "no_such_type"}',
        '{"no_type": 1}',
        json.dumps({"type": "audio_chunk", "data": h.b64(h.silence(100)), "sequence": "x"}),
        json.dumps({"type": "audio_chunk", "data": 12345}),
        json.dumps({"type": "audio_chunk"}),
        json.dumps({"type": 7}),
    ]

    async def go():
        w, s = await WS.open_session(server.stream_url)
        got = []
        for text in bad:
            await w.send_text(text)
            got.append(await w.next(10))
        # none of them took a number: the next chunk is 1
        await w.send_bytes(h.silence(100))
        nxt = await w.next(10)
        after = await w.stop()
        return got, nxt, after, w.close_code

    got, nxt, after, code = arun(go())
    for text, e in zip(bad, got):
        assert e["type"] == "error", (text, e)
        check_error(e, "INVALID_MESSAGE", has_sequence=False)
    assert nxt["type"] == "partial" and nxt["sequence"] == 1, nxt
    assert [m["type"] for m in after] == ["final"] and code == 1000, (after, code)


def test_invalid_audio(server):
    async def go():
        w, s = await WS.open_session(server.stream_url)
        got = []
        # bad base64
        await w.send_json({"type": "audio_chunk", "data": "@@not base64@@"})
        got += await w.answers(1)
        # odd byte count, binary
        await w.send_bytes(h.silence(100) + b"\0")
        got += await w.answers(1)
        # empty binary frame
        await w.send_bytes(b"")
        got += await w.answers(1)
        # odd byte count in base64
        await w.send_json({"type": "audio_chunk", "data": h.b64(b"\0\0\0")})
        got += await w.answers(1)
        # empty base64 data
        await w.send_json({"type": "audio_chunk", "data": ""})
        got += await w.answers(1)
        # refused chunks took numbers 1..5: the next is 6
        await w.send_bytes(h.silence(100))
        got += await w.answers(1)
        after = await w.stop()
        return got, after, w.close_code

    got, after, code = arun(go())
    errs = of_type(got, "error")
    assert len(errs) == 5, h.short(got)
    for i, e in enumerate(errs):
        check_error(e, "INVALID_AUDIO", i + 1)
    assert of_type(got, "partial")[0]["sequence"] == 6
    assert [m["type"] for m in after] == ["final"] and code == 1000


def test_chunk_too_large_and_precedence(server):
    async def go():
        w, s = await WS.open_session(server.stream_url)
        max_chunk = s["limits"]["max_chunk_bytes"]
        assert 70000 > max_chunk and 70001 < s["limits"]["max_message_bytes"], s
        got = []
        await w.send_bytes(b"\0" * 70000)        # too large
        got += await w.answers(1)
        await w.send_bytes(b"\0" * 70001)        # odd and too large: INVALID_AUDIO wins
        got += await w.answers(1)
        await w.send_bytes(b"\0" * max_chunk)    # exactly the limit passes
        got += await w.answers(1)
        await w.send_bytes(h.silence(100))
        got += await w.answers(1)
        after = await w.stop()
        return got, after, w.close_code

    got, after, code = arun(go())
    answers = [m for m in got if h.is_answer(m)]
    check_error(answers[0], "CHUNK_TOO_LARGE", 1)
    check_error(answers[1], "INVALID_AUDIO", 2)
    assert answers[2]["type"] == "partial" and answers[2]["sequence"] == 3, answers[2]
    assert answers[3]["type"] == "partial" and answers[3]["sequence"] == 4, answers[3]
    assert code == 1000


def test_out_of_order(server):
    c = h.silence(100)

    async def go():
        w, s = await WS.open_session(server.stream_url)
        got = []
        for _ in range(3):
            await w.send_bytes(c)
        got += await w.answers(3)
        # equal to last, lower than last
        await w.send_json({"type": "audio_chunk", "data": h.b64(c), "sequence": 3})
        got += await w.answers(1)
        await w.send_json({"type": "audio_chunk", "data": h.b64(c), "sequence": 1})
        got += await w.answers(1)
        # OUT_OF_ORDER wins over INVALID_AUDIO
        await w.send_json({"type": "audio_chunk", "data": "@@bad@@", "sequence": 2})
        got += await w.answers(1)
        # last did not move: the next chunk without sequence is 4
        await w.send_bytes(c)
        got += await w.answers(1)
        await w.send_json({"type": "audio_chunk", "data": h.b64(c)})
        got += await w.answers(1)
        # and an explicit 6 after 5 is fine
        await w.send_json({"type": "audio_chunk", "data": h.b64(c), "sequence": 6})
        got += await w.answers(1)
        after = await w.stop()
        return got, after, w.close_code

    got, after, code = arun(go())
    answers = [m for m in got if h.is_answer(m)]
    assert [a["sequence"] for a in answers] == [1, 2, 3, 3, 1, 2, 4, 5, 6], h.short(got)
    check_error(answers[3], "OUT_OF_ORDER", 3)
    check_error(answers[4], "OUT_OF_ORDER", 1)
    check_error(answers[5], "OUT_OF_ORDER", 2)
    for a in answers[6:]:
        assert a["type"] == "partial", a
    assert after[-1]["type"] == "final" and after[-1]["sequence"] == 6, after
    assert code == 1000


def test_out_of_order_is_sent_at_once(server):
    """OUT_OF_ORDER is not held behind pending answers (fine points): with
    chunks pending, its error may come before their partials, and the other
    answers still keep sequence order."""
    c = h.silence(100)

    async def go():
        w, s = await WS.open_session(server.stream_url)
        for _ in range(5):
            await w.send_bytes(c)
        await w.send_json({"type": "audio_chunk", "data": h.b64(c), "sequence": 1})
        got = await w.answers(6, 15)
        await w.stop()
        return got

    got = arun(go())
    ooo = [m for m in got if m["type"] == "error"]
    assert len(ooo) == 1, h.short(got)
    check_error(ooo[0], "OUT_OF_ORDER", 1)
    assert [m["sequence"] for m in of_type(got, "partial")] == [1, 2, 3, 4, 5]


@pytest.mark.slow
def test_rate_limited(start_server):
    """32000 B/s (bucket of 2 s = 64000 bytes): a flood far faster than real
    time gets RATE_LIMITED; refused chunks take no tokens."""
    srv = start_server(ASR_MAX_AUDIO_RATE_BYTES_PER_SEC=32000,
                       ASR_RATE_ABUSE_THRESHOLD=1000000, ASR_MOCK_LATENCY_MS=5)
    c = h.silence(100)  # 3200 bytes

    async def go():
        w, s = await WS.open_session(srv.stream_url)
        assert s["limits"]["max_audio_rate_bytes_per_sec"] == 32000, s
        # 60 chunks = 192000 bytes at once: 3x the bucket
        for _ in range(60):
            await w.send_bytes(c)
        flood = await w.answers(60, 20)
        # refused for other reasons: no tokens taken either
        await asyncio.sleep(2.2)     # the bucket refills completely (64000)
        got = []
        for _ in range(5):
            await w.send_bytes(b"\0" * 12801)      # odd: INVALID_AUDIO
        await w.send_bytes(b"\0" * 32000)
        await w.send_bytes(b"\0" * 30000)          # 62000 of the 64000
        got += await w.answers(7, 10)
        await w.send_bytes(b"\0" * 32000)          # about 2000 left
        got += await w.answers(1, 10)
        # RATE_LIMITED chunks took nothing: after 1.1 s (2000 + 35200) a
        # 32000-byte chunk passes
        await asyncio.sleep(1.1)
        await w.send_bytes(b"\0" * 32000)
        got += await w.answers(1, 10)
        after = await w.stop()
        return flood, got, after, w.close_code

    flood, got, after, code = arun(go(), 60)
    answers = [m for m in flood if h.is_answer(m)]
    assert [a["sequence"] for a in answers] == list(range(1, 61)), h.short(flood)
    limited = [a for a in answers if a["type"] == "error"]
    assert limited, "no RATE_LIMITED in a 3x-bucket flood"
    for e in limited:
        check_error(e, "RATE_LIMITED", e["sequence"])
    accepted = [a for a in answers if a["type"] == "partial"]
    # the bucket (64000 = 20 chunks) plus what refilled while sending
    assert len(accepted) >= 20, "only %d of 60 chunks passed a full bucket" % len(accepted)
    ans = [m for m in got if h.is_answer(m)]
    assert [a["sequence"] for a in ans] == list(range(61, 70)), h.short(got)
    for e in ans[:5]:
        check_error(e, "INVALID_AUDIO", e["sequence"])
    assert ans[5]["type"] == "partial" and ans[6]["type"] == "partial", \
        "refused INVALID_AUDIO chunks took tokens: %s" % h.short(ans)
    check_error(ans[7], "RATE_LIMITED", 68)
    assert ans[8]["type"] == "partial", "RATE_LIMITED chunks took tokens: %r" % ans[8]
    assert code == 1000


def test_model_error(start_server):
    srv = start_server(ASR_MOCK_ERROR_RATE=1)
    chunks = h.chunks_of(h.speech_pcm())[:5]

    async def go():
        w, s = await WS.open_session(srv.stream_url)
        for c in chunks:
            await w.send_bytes(c)
        got = await w.answers(5, 15)
        after = await w.stop()
        return got, after, w.close_code

    got, after, code = arun(go())
    answers = [m for m in got if h.is_answer(m)]
    assert [a["sequence"] for a in answers] == [1, 2, 3, 4, 5]
    for a in answers:
        check_error(a, "MODEL_ERROR", a["sequence"])
    assert not of_type(got + after, "partial")
    assert len(of_type(after, "final")) == 1, h.short(after)
    assert code == 1000


def test_server_busy(start_server):
    srv = start_server(ASR_SHED_LOAD=1, ASR_MAX_PENDING_CHUNKS=1, ASR_MOCK_LATENCY_MS=500)
    c = h.silence(100)

    async def go():
        w, s = await WS.open_session(srv.stream_url)
        for _ in range(10):
            await w.send_bytes(c)
        got = await w.answers(10, 30)
        after = await w.stop(20)
        return got, after, w.close_code

    got, after, code = arun(go(), 60)
    answers = [m for m in got if h.is_answer(m)]
    assert [a["sequence"] for a in answers] == list(range(1, 11)), h.short(got)
    busy = [a for a in answers if a["type"] == "error"]
    assert busy, "no SERVER_BUSY with 10 chunks, 1 pending allowed, 500 ms each"
    for e in busy:
        check_error(e, "SERVER_BUSY", e["sequence"])
    assert of_type(answers, "partial"), "every chunk was shed"
    assert not [m for m in after if h.is_answer(m)], h.short(after)
    assert len(of_type(after, "final")) == 1 and code == 1000
