#!/usr/bin/python3
"""Reading feedback's accuracy and latency on pocketsphinx-testdata's
librivox sentences (docs/BENCHMARKS.md "Reading feedback").

Against a running asrd (ASR_ENGINE=pocketsphinx), each sentence is streamed
in real time three times: against its transcription (every word should be
correct), against the transcription with its middle word replaced by
"window" (that word should be wrong, the others correct) and against the
transcription with a sentence added (those words should be pending while
reading and missing at the end). Feedback accuracy is the share of expected
words whose status is the right one, in the verification at stop, in the
last word_feedback of the stream, and from POST /v1/transcribe of the file.
The latency is, for the words of the first run that end correct, the time
from the word's end in the audio (its end_ms in the finals; real-time
streaming maps audio time to wall time) to the first partial or final that
shows it as non-pending.

    /usr/bin/python3 tools/bench_feedback.py http://127.0.0.1:8000 [label]
"""
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.parse

import requests
import websockets

D = "/usr/share/pocketsphinx/test/data/librivox"
EXTRA = "The quick brown fox jumps over the lazy dog."


def refs():
    out = {}
    with open(os.path.join(D, "transcription")) as f:
        for line in f:
            text, fid = line.rsplit("(", 1)
            out[fid.strip(" )\n")] = text.replace("<s>", "").replace("</s>", "").strip()
    return out


def pcm_of(fid):
    return subprocess.run(["sox", os.path.join(D, fid + ".wav"), "-t", "raw", "-r", "16000", "-c", "1", "-b", "16",
                           "-e", "signed-integer", "-L", "-"], check=True, capture_output=True).stdout


async def stream(ws_base, pcm, text):
    url = ws_base + "/v1/transcribe/stream?" + urllib.parse.urlencode({"sample_rate": 16000, "expected_text": text})
    got = []
    async with websockets.connect(url, max_size=None, ping_interval=None) as ws:
        await ws.recv()
        t0 = time.monotonic()

        async def reader():
            async for m in ws:
                got.append((time.monotonic() - t0, json.loads(m)))

        task = asyncio.create_task(reader())
        for k, i in enumerate(range(0, len(pcm), 3200)):
            await ws.send(pcm[i:i + 3200])
            await asyncio.sleep(max(0, t0 + (k + 1) * 0.1 - time.monotonic()))
        await ws.send(b"\0" * 32000)
        await ws.send(json.dumps({"type": "stop"}))
        await asyncio.wait_for(task, 300)
    return got


def right(name, words, k):
    n = len(words)
    if name == "exact":
        return ["correct"] * n, ["correct"] * n
    if name == "replaced":
        w = ["correct"] * n
        w[k] = "wrong"
        return w, w
    extra = len(EXTRA.split())
    return ["correct"] * n + ["pending"] * extra, ["correct"] * n + ["missing"] * extra


def main():
    base = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000"
    label = sys.argv[2] if len(sys.argv) > 2 else ""
    ws_base = base.replace("http://", "ws://")
    tally = {"stream": [0, 0], "verification": [0, 0], "rest": [0, 0]}
    lat = []
    rows = []
    for fid, ref in sorted(refs().items()):
        pcm = pcm_of(fid)
        words = ref.split()
        k = len(words) // 2
        texts = {"exact": ref, "replaced": " ".join(words[:k] + ["window"] + words[k + 1:]),
                 "extra": ref + ". " + EXTRA}
        for name, text in texts.items():
            want_stream, want_end = right(name, words, k)
            got = asyncio.run(stream(ws_base, pcm, text))
            fb = [(t, m) for t, m in got if "word_feedback" in m and m["type"] in ("partial", "final")]
            ver = [m for _, m in got if m["type"] == "verification"]
            last = [e["status"] for e in fb[-1][1]["word_feedback"]] if fb else []
            vst = [e["status"] for e in ver[0]["word_feedback"]] if ver else []
            r = requests.post(base + "/v1/transcribe?" + urllib.parse.urlencode({"expected_text": text}),
                              data=open(os.path.join(D, fid + ".wav"), "rb"),
                              headers={"Content-Type": "audio/wav"}, timeout=300).json()
            rst = [e["status"] for e in r.get("word_feedback", [])]
            for key, st, want in (("stream", last, want_stream), ("verification", vst, want_end), ("rest", rst, want_end)):
                tally[key][0] += sum(a == b for a, b in zip(st, want))
                tally[key][1] += len(want)
            rows.append((fid[-4:], name, "".join(s[0] if s != "missing" else "x" for s in vst),
                         ver[0]["text"] if ver else "(no verification)"))
            if name == "exact":
                # word ends from the finals' words, when they map one to one
                fw = [w for _, m in got if m["type"] == "final" for w in m.get("words", [])]
                if len(fw) == len(words):
                    for i in range(len(words)):
                        if vst and vst[i] != "correct":
                            continue
                        first = next((t for t, m in fb if m["word_feedback"][i]["status"] != "pending"), None)
                        if first is not None:
                            lat.append(first - fw[i]["end_ms"] / 1000.0)
    print("## %s" % label)
    for row in rows:
        print("  %s %-8s %-32s %s" % row)
    for key, (ok, n) in tally.items():
        print("feedback accuracy (%s): %.3f (%d/%d)" % (key, ok / n, ok, n))
    if lat:
        lat.sort()
        print("word end -> status: n %d, median %.2f s, p90 %.2f s, max %.2f s"
              % (len(lat), statistics.median(lat), lat[int(0.9 * (len(lat) - 1))], lat[-1]))


if __name__ == "__main__":
    main()
