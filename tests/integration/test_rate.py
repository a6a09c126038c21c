"""The audio rate limit and the server's own holds (docs/API.md "Errors", the
rate-limit paragraph; docs/internals/backpressure.md "Receiving: pausing
reads"): time the server did not read a stream's socket is not charged to
its client."""
import asyncio
import time

import pytest

import asrd_harness as h
from asrd_harness import WS, arun


async def real_time(w, chunks, step=0.1):
    """Sends chunk i at start + i * step: a live microphone. A send the
    server holds back (it stopped reading) delays the chunks behind it,
    which then go as soon as they can, as a client's audio queue would."""
    t0 = time.monotonic()
    for i, c in enumerate(chunks):
        delay = t0 + i * step - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await w.send_bytes(c)


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_real_time_client_held_by_a_late_final_is_not_rate_limited(start_server):
    """mock-windowed on one pool thread, finals taking 7 s, no partial
    windows: the final of the first utterance is late, the 16 chunks behind
    it fill the session's pending bound and the server stops reading for
    about 5.4 s. The real-time client keeps sending; its audio waits in the
    kernel and arrives in one burst when reading resumes, more than the 4 s
    the default bucket holds (128000 bytes at 16 kHz). The burst is the
    server's doing: every chunk gets its partial, none RATE_LIMITED."""
    srv = start_server(ASR_ENGINE="mock-windowed", ASR_WORKERS=1, ASR_INFERENCE_THREADS=1,
                       ASR_WINDOW_MS=0, ASR_ADAPTIVE_WINDOW=0, ASR_MOCK_LATENCY_MS=7000,
                       ASR_MOCK_SLEEP=1)
    audio = h.silence(300) + h.speech_pcm() + h.silence(9000)
    chunks = h.chunks_of(audio)
    n = len(chunks)

    async def go():
        w, s = await WS.open_session(srv.stream_url)
        assert s["limits"]["max_audio_rate_bytes_per_sec"] == 64000, s
        sender = asyncio.ensure_future(real_time(w, chunks))
        got = await w.answers(n, 40)
        await sender
        got += await w.stop(20)
        return got, w.close_code

    got, code = arun(go(), 55)
    answers = [m for m in got if h.is_answer(m)]
    assert [a["sequence"] for a in answers] == list(range(1, n + 1)), h.short(got)
    refused = [a for a in answers if a["type"] == "error"]
    assert not refused, "a real-time client was refused: %s" % h.short(refused)
    assert any(m["type"] == "final" and m["text"] for m in got), h.short(got)
    assert code == 1000
    m = srv.metrics()
    # the scenario did hold the intake (else the test proves nothing)
    assert h.metric(m, "backpressure.read_pauses") >= 1, m.get("backpressure")
    assert h.metric(m, "errors.total") == 0, m["errors"]
