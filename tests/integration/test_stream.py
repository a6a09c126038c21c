"""Streaming sessions (docs/API.md "Streaming"): binary and JSON chunks,
partials, speech_started, finals, stop, finalize, keepalive."""
import asyncio
import time

import asrd_harness as h
from asrd_harness import WS, arun, of_type

LEAD_SILENCE_MS = 300
TAIL_SILENCE_MS = 1000

EXPECTED_LIMITS = {
    # defaults (docs/API.md example and "max_audio_rate_bytes_per_sec defaults
    # to twice real time": 64000 at 16 kHz)
    "max_chunk_bytes": 65536,
    "max_message_bytes": 88000,
    "max_audio_rate_bytes_per_sec": 64000,
    "idle_timeout_s": 300,
    "resume_timeout_s": 60,
    "endpointing_ms": 300,
}


def now_ms():
    return int(time.time() * 1000)


def check_session_msg(s, sample_rate=16000, resumed=False, last_sequence=0, limits=None):
    assert s["type"] == "session"
    assert isinstance(s.get("session_id"), str) and s["session_id"], s
    assert isinstance(s.get("worker_id"), str) and s["worker_id"], s
    assert s.get("sample_rate") == sample_rate, s
    assert s.get("resumed") is resumed, s
    assert s.get("last_sequence") == last_sequence, s
    lim = s.get("limits")
    assert isinstance(lim, dict), s
    for k in EXPECTED_LIMITS:
        assert isinstance(lim.get(k), int) and not isinstance(lim.get(k), bool), (k, lim)
    if limits is not None:
        for k, v in limits.items():
            assert lim[k] == v, "limits.%s: expected %r, got %r" % (k, v, lim[k])
    assert lim["max_message_bytes"] >= (lim["max_chunk_bytes"] + 2) // 3 * 4, lim


def check_partial(p):
    assert isinstance(p.get("sequence"), int), p
    assert isinstance(p.get("text"), str), p
    assert isinstance(p.get("is_speech"), bool), p
    ts = p.get("timestamp")
    assert isinstance(ts, int) and abs(ts - now_ms()) < 600000, p
    lat = p.get("latency_ms")
    assert isinstance(lat, dict), p
    for k in ("queue", "inference", "total"):
        assert isinstance(lat.get(k), (int, float)) and not isinstance(lat.get(k), bool), p
        assert lat[k] >= 0, p
    assert lat["total"] >= lat["inference"], "latency total < inference: %r" % p
    assert lat["total"] >= lat["queue"], "latency total < queue: %r" % p


def check_final(f):
    for k in ("sequence", "start_ms", "end_ms", "timestamp"):
        assert isinstance(f.get(k), int) and not isinstance(f.get(k), bool), (k, f)
    assert isinstance(f.get("text"), str), f
    assert "  " not in f["text"] and f["text"] == f["text"].strip(), \
        "final text is not words joined by single spaces: %r" % f["text"]
    assert f["start_ms"] <= f["end_ms"], f


def words(text):
    return text.split()


def check_utterance_texts(msgs):
    """The words of the partials received since the previous final make up
    each final's text (the client concatenates partials; the mock's final is
    the whole utterance, words joined by single spaces)."""
    acc = []
    for m in msgs:
        if m["type"] == "partial":
            acc += words(m["text"])
        elif m["type"] == "final":
            assert words(m["text"]) == acc, \
                "final text %r != concatenated partials %r" % (m["text"], " ".join(acc))
            assert m["text"] == " ".join(acc)
            acc = []


async def stream_chunks(w, chunks, pace=0.025):
    for c in chunks:
        await w.send_bytes(c)
        if pace:
            await asyncio.sleep(pace)


def test_full_binary_session(server):
    """espeak speech + digital silence in 100 ms binary chunks, then stop."""
    audio = h.silence(LEAD_SILENCE_MS) + h.speech_pcm()
    audio = b"".join(h.chunks_of(audio)) + h.silence(TAIL_SILENCE_MS)
    chunks = h.chunks_of(audio)
    n = len(chunks)
    total_ms = len(audio) // 2 * 1000 // h.SR

    async def go():
        w, s = await WS.open_session(server.stream_url)
        check_session_msg(s, limits=EXPECTED_LIMITS)
        sender = asyncio.ensure_future(stream_chunks(w, chunks))
        # all partials, and the endpointing final (1.2 s of silence > 300 ms)
        seen = {"partials": 0, "finals": 0}

        def pred(m):
            if m["type"] == "partial":
                seen["partials"] += 1
            if m["type"] == "final":
                seen["finals"] += 1
            return seen["partials"] >= n and seen["finals"] >= 1
        before = await w.until(pred, 30)
        await sender
        after = await w.stop(10)
        return s, before, after, w.close_code, w.close_reason

    s, before, after, code, reason = arun(go(), 60)
    partials = of_type(before, "partial")
    assert [p["sequence"] for p in partials] == list(range(1, n + 1)), h.short(before, 50)
    for p in partials:
        check_partial(p)
    # the mock latency (20 ms) shows in inference
    assert max(p["latency_ms"]["inference"] for p in partials) >= 15, partials[:3]
    assert not of_type(before, "error"), of_type(before, "error")

    # speech_started: at least one, before the partial of its chunk
    started = of_type(before, "speech_started")
    assert started, "no speech_started for speech audio"
    for st in started:
        assert isinstance(st.get("sequence"), int) and 1 <= st["sequence"] <= n, st
        assert isinstance(st.get("offset_ms"), int), st
        assert isinstance(st.get("timestamp"), int), st
        i_st = before.index(st)
        i_p = [i for i, m in enumerate(before)
               if m["type"] == "partial" and m["sequence"] == st["sequence"]][0]
        assert i_st < i_p, "speech_started %r came after its partial" % st
        seq_start = (st["sequence"] - 1) * h.CHUNK_MS
        assert seq_start <= st["offset_ms"] <= seq_start + h.CHUNK_MS, st
    # the lead silence is silence: speech starts after it
    first = started[0]
    assert first["offset_ms"] >= LEAD_SILENCE_MS - 100, first
    assert all(p["text"] == "" for p in partials if p["sequence"] <= LEAD_SILENCE_MS // 100 - 1)
    assert any(p["is_speech"] for p in partials)
    assert not partials[0]["is_speech"], partials[0]

    # the endpointing final
    finals = of_type(before, "final")
    assert len(finals) >= 1
    for f in finals:
        check_final(f)
        assert f["text"], "endpointing final with empty text: %r" % f
        assert f["start_ms"] < f["end_ms"], f
        assert 1 <= f["sequence"] <= n, f
        # final.sequence is the chunk holding end_ms
        assert (f["sequence"] - 1) * h.CHUNK_MS <= f["end_ms"] <= f["sequence"] * h.CHUNK_MS, f
        # sent after endpointing_ms of silence (audio time)
        idx = before.index(f)
        answered = len([m for m in before[:idx] if m["type"] == "partial"])
        assert (answered + 1) * h.CHUNK_MS >= f["end_ms"] + EXPECTED_LIMITS["endpointing_ms"], \
            "final %r sent after only %d chunks" % (f, answered)
    assert finals[0]["start_ms"] >= LEAD_SILENCE_MS - 100, finals[0]
    assert finals[-1]["end_ms"] <= total_ms - EXPECTED_LIMITS["endpointing_ms"], finals[-1]
    check_utterance_texts(before)
    # no words in the tail of digital silence
    last_end = finals[-1]["end_ms"]
    for p in partials:
        if (p["sequence"] - 1) * h.CHUNK_MS >= last_end + 100:
            assert p["text"] == "", p
    assert partials[-1]["is_speech"] is False, partials[-1]

    # stop: exactly one more final, empty, at the end; close 1000
    assert [m["type"] for m in after] == ["final"], h.short(after)
    f = after[0]
    check_final(f)
    assert f["text"] == "", f
    assert f["sequence"] == n, f
    assert f["start_ms"] == f["end_ms"], f
    assert abs(f["end_ms"] - total_ms) <= 1, (f, total_ms)
    assert code == 1000, (code, reason)


def test_pure_silence_session(server):
    chunks = h.chunks_of(h.silence(2000))

    async def go():
        w, s = await WS.open_session(server.stream_url)
        check_session_msg(s)
        await stream_chunks(w, chunks)
        before = await w.answers(len(chunks), 20)
        after = await w.stop()
        return before, after, w.close_code

    before, after, code = arun(go())
    partials = of_type(before, "partial")
    assert [p["sequence"] for p in partials] == list(range(1, 21))
    for p in partials:
        check_partial(p)
        assert p["text"] == "", p
        assert p["is_speech"] is False, p
    assert not of_type(before, "speech_started")
    assert not of_type(before, "final")
    assert [m["type"] for m in after] == ["final"], h.short(after)
    assert after[0]["text"] == "" and after[0]["sequence"] == 20, after
    assert after[0]["start_ms"] == after[0]["end_ms"] == 2000, after
    assert code == 1000


def test_json_audio_chunks_and_explicit_sequence(server):
    pcm = h.speech_pcm()
    c = h.chunks_of(pcm)

    async def go():
        w, s = await WS.open_session(server.stream_url)
        # without sequence -> last + 1
        await w.send_json({"type": "audio_chunk", "data": h.b64(c[0])})
        m1 = await w.answers(1)
        # explicit 2, 3
        await w.send_json({"type": "audio_chunk", "data": h.b64(c[1]), "sequence": 2})
        await w.send_json({"type": "audio_chunk", "data": h.b64(c[2]), "sequence": 3})
        m2 = await w.answers(2)
        # a gap: 5 after 3
        await w.send_json({"type": "audio_chunk", "data": h.b64(c[3]), "sequence": 5})
        m3 = await w.answers(1)
        # binary after an explicit 5 -> 6; JSON without sequence -> 7
        await w.send_bytes(c[4])
        await w.send_json({"type": "audio_chunk", "data": h.b64(c[5])})
        m4 = await w.answers(2)
        after = await w.stop()
        return m1 + m2 + m3 + m4, after, w.close_code

    msgs, after, code = arun(go())
    partials = of_type(msgs, "partial")
    assert [p["sequence"] for p in partials] == [1, 2, 3, 5, 6, 7], h.short(msgs)
    for p in partials:
        check_partial(p)
    assert not of_type(msgs, "error"), h.short(msgs)
    finals = of_type(after, "final")
    assert len(finals) == 1 and finals[0]["sequence"] == 7, h.short(after)
    # speech was open at stop: the final holds it
    check_utterance_texts(msgs + after)
    assert code == 1000


def test_finalize_keeps_session_open(server):
    # 0.8 s of speech then 0.2 s of digital silence: an utterance is open
    # (less silence than endpointing_ms) and the audio ends quiet
    c = h.chunks_of(h.speech_pcm())[:8] + h.chunks_of(h.silence(200))

    async def go():
        w, s = await WS.open_session(server.stream_url)
        for x in c:
            await w.send_bytes(x)
        part = await w.answers(10, 15)
        await w.send_json({"type": "finalize"})
        fin1 = await w.until(lambda m: m["type"] == "final", 10)
        # keepalive is accepted silently; then a silent chunk: its partial is
        # the very next message (no second final, no error)
        await w.send_json({"type": "keepalive"})
        await w.send_bytes(h.silence(100))
        nxt = await w.next(10)
        # finalize with nothing open: one empty final
        await w.send_json({"type": "finalize"})
        fin2 = await w.until(lambda m: m["type"] == "final", 10)
        await w.send_json({"type": "keepalive"})
        await w.send_bytes(h.silence(100))
        nxt2 = await w.next(10)
        after = await w.stop()
        return part, fin1, nxt, fin2, nxt2, after, w.close_code

    part, fin1, nxt, fin2, nxt2, after, code = arun(go(), 60)
    assert [p["sequence"] for p in of_type(part, "partial")] == list(range(1, 11))
    assert not of_type(part, "final"), "final before finalize: %s" % h.short(part)
    # exactly one final, after the pending chunks' answers
    assert [m["type"] for m in fin1] == ["final"], h.short(fin1)
    f = fin1[-1]
    check_final(f)
    assert f["text"], f
    # (VAD frames are up to 30 ms: the last speech frame may reach past 800)
    assert f["start_ms"] < f["end_ms"] <= 900, f
    assert 1 <= f["sequence"] <= 9, f
    assert (f["sequence"] - 1) * h.CHUNK_MS <= f["end_ms"] <= f["sequence"] * h.CHUNK_MS, f
    check_utterance_texts(part + fin1)
    assert nxt["type"] == "partial" and nxt["sequence"] == 11, nxt
    assert nxt["text"] == "", nxt
    assert [m["type"] for m in fin2] == ["final"], h.short(fin2)
    f2 = fin2[0]
    check_final(f2)
    assert f2["text"] == "" and f2["sequence"] == 11, f2
    assert f2["start_ms"] == f2["end_ms"] == 1100, f2
    assert nxt2["type"] == "partial" and nxt2["sequence"] == 12, nxt2
    assert [m["type"] for m in after] == ["final"], h.short(after)
    assert after[0]["text"] == "" and after[0]["sequence"] == 12, after
    assert code == 1000


def test_keepalive_is_silent(server):
    async def go():
        w, s = await WS.open_session(server.stream_url)
        for _ in range(3):
            await w.send_json({"type": "keepalive"})
        await w.send_bytes(h.silence(100))
        m = await w.next(10)
        after = await w.stop()
        return m, after, w.close_code

    m, after, code = arun(go())
    assert m["type"] == "partial" and m["sequence"] == 1, m
    assert [x["type"] for x in after] == ["final"], after
    assert code == 1000


def test_stop_right_after_audio_answers_everything(server):
    """stop with chunks still pending: every chunk is answered, then one
    final, then close 1000."""
    chunks = h.chunks_of(h.speech_pcm())[:15]

    async def go():
        w, s = await WS.open_session(server.stream_url)
        for c in chunks:
            await w.send_bytes(c)
        await w.send_json({"type": "stop"})
        msgs = await w.until_closed(20)
        return msgs, w.close_code

    msgs, code = arun(go(), 40)
    assert [p["sequence"] for p in of_type(msgs, "partial")] == list(range(1, 16)), h.short(msgs)
    assert msgs[-1]["type"] == "final", h.short(msgs)
    assert len(of_type(msgs, "final")) == 1, h.short(msgs)
    f = msgs[-1]
    assert f["text"] and f["sequence"] <= 15, f
    check_utterance_texts(msgs)
    assert code == 1000


def read_strict_frames(data):
    """Parses server frames as RFC 6455 5.2 says they must be: FIN set (the
    server never fragments), RSV bits clear, unmasked, and the length in the
    minimal encoding. Returns [(opcode, payload)]; asserts on anything else."""
    out = []
    pos = 0
    while pos < len(data):
        assert len(data) - pos >= 2, "truncated frame head at %d" % pos
        b0, b1 = data[pos], data[pos + 1]
        assert b0 & 0x80, "frame at %d not final" % pos
        assert b0 & 0x70 == 0, "RSV bits set at %d" % pos
        assert not b1 & 0x80, "server frame masked at %d" % pos
        n = b1 & 0x7F
        pos += 2
        if n == 126:
            n = int.from_bytes(data[pos:pos + 2], "big")
            assert n >= 126, "16-bit length %d not minimal" % n
            pos += 2
        elif n == 127:
            n = int.from_bytes(data[pos:pos + 8], "big")
            assert n >= 65536 and n < 1 << 63, "64-bit length %d not minimal" % n
            pos += 8
        assert len(data) - pos >= n, "truncated payload at %d" % pos
        out.append((b0 & 0x0F, data[pos:pos + n]))
        pos += n
    return out


def test_server_frames_are_whole_and_minimal(start_server):
    """Every server frame, small and large (words pile up in partials to
    several KiB), has the shape RFC 6455 requires, read byte by byte from a
    raw socket, and every chunk gets its partial in order."""
    import json
    srv = start_server(ASR_MOCK_WORDS_PER_CHUNK=100, ASR_MAX_AUDIO_RATE_BYTES_PER_SEC=1 << 30)
    audio = h.speech_pcm() * 3
    chunks = h.chunks_of(audio)
    c = h.raw_ws_connect(srv.port)
    try:
        for ch in chunks:
            c.send(h.ws_frame(ch, opcode=0x2))
        c.send(h.ws_frame(b'{"type": "stop"}', opcode=0x1))
        data = c.buf
        while True:
            d = c.sock.recv(1 << 16)
            if not d:
                break
            data += d
    finally:
        c.close()
    frames = read_strict_frames(data)
    assert frames and frames[-1][0] == 0x8, frames[-3:]
    assert int.from_bytes(frames[-1][1][:2], "big") == 1000
    texts = [p for op, p in frames[:-1]]
    assert all(op == 0x1 for op, _ in frames[:-1]), [op for op, _ in frames]
    msgs = [json.loads(t) for t in texts]
    partials = [m for m in msgs if m["type"] == "partial"]
    assert [p["sequence"] for p in partials] == list(range(1, len(chunks) + 1))
    sizes = [len(t) for t in texts]
    assert min(sizes) < 126 <= max(sizes), sizes
    assert max(sizes) >= 4096, max(sizes)
    assert of_type(msgs, "final"), [m["type"] for m in msgs]
