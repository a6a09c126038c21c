"""Long REST uploads (docs/API.md "POST /v1/transcribe"): the whole file is
transcribed, however long the limits allow; an engine failure anywhere in it
fails the request with a JSON 5xx instead of a 200 that lacks audio."""

import math
import random
import socket
import struct
import time

import pytest
import requests

import asrd_harness as h


def speech_like(rate, ms, seed=1):
    """ms of a voiced tone (harmonics of a wobbling ~120 Hz pitch, below the
    Nyquist frequency of rate) with a little noise, s16le mono."""
    rnd = random.Random(seed)
    n = rate * ms // 1000
    nyq = rate / 2 * 0.9
    out = []
    for i in range(n):
        t = i / rate
        f0 = 120.0 + 20.0 * math.sin(2 * math.pi * 1.5 * t)
        s = 0.0
        k = 1
        while f0 * k < min(nyq, 3800) and k <= 30:
            g = 1.0 / k
            f = f0 * k
            if abs(f - 700) < 200 or abs(f - 1200) < 250:
                g *= 3
            s += g * math.sin(2 * math.pi * f * t + k)
            k += 1
        s *= 0.6 + 0.4 * math.sin(2 * math.pi * 4 * t)
        v = int(s * 3000 + rnd.gauss(0, 300))
        out.append(max(-32768, min(32767, v)))
    return struct.pack("<%dh" % n, *out)


def alternating(rate, seconds):
    """seconds of 0.5 s speech-like audio, 0.5 s digital silence, repeated:
    one utterance per second."""
    block = speech_like(rate, 500) + h.silence(500, rate)
    return block * seconds


def post_pcm(srv, pcm, rate, timeout=300):
    return requests.post(srv.http + "/v1/transcribe", data=pcm,
                         headers={"Content-Type": "audio/pcm; rate=%d" % rate}, timeout=timeout)


def check_every_second_has_text(r, seconds):
    assert r.status_code == 200, (r.status_code, r.text[:300])
    doc = r.json()
    assert abs(doc["duration_ms"] - seconds * 1000) <= 50, doc["duration_ms"]
    segs = doc["segments"]
    empty = [i for i, s in enumerate(segs) if not s["text"]]
    assert not empty, "%d of %d segments have no text, first at %r" % (
        len(empty), len(segs), segs[empty[0]])
    # one utterance per second of audio, each starting inside its second
    assert len(segs) == seconds, (len(segs), segs[:3], segs[-3:])
    for i, s in enumerate(segs):
        assert i * 1000 <= s["start_ms"] < i * 1000 + 500, (i, s)
    return doc


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_420s_upload_every_segment_has_text(start_server):
    srv = start_server(ASR_MOCK_LATENCY_MS=50)
    pcm = alternating(16000, 420)
    assert len(pcm) == 420 * 32000           # 13.4 MB, under the 25 MiB limit
    check_every_second_has_text(post_pcm(srv, pcm, 16000), 420)
