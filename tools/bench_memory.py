#!/usr/bin/python3
"""RSS per live streaming session: opens N sessions against a running asrd,
streams one second of audio into each (so every per-session buffer exists),
keeps them open, and compares the server's process.rss_bytes (GET
/v1/metrics) before and after.

    /usr/bin/python3 tools/bench_memory.py http://127.0.0.1:8000 2000 [speech.pcm]
"""
import asyncio, json, sys, urllib.request
import websockets

base = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000"
n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
pcm = open(sys.argv[3], "rb").read()[:32000] if len(sys.argv) > 3 else bytes(32000)

def metrics():
    return json.load(urllib.request.urlopen(base + "/v1/metrics"))

async def one(url, ready):
    ws = await websockets.connect(url, max_size=None, ping_interval=None)
    await ws.recv()
    for i in range(0, len(pcm), 3200):
        await ws.send(pcm[i:i + 3200])
    got = 0
    while got < len(pcm) // 3200:
        m = json.loads(await ws.recv())
        if m["type"] in ("partial", "error"): got += 1
    ready.append(ws)

async def main():
    before = metrics()
    url = base.replace("http", "ws", 1) + "/v1/transcribe/stream"
    ready = []
    for i in range(0, n, 200):
        await asyncio.gather(*(one(url, ready) for _ in range(min(200, n - i))))
    await asyncio.sleep(1)
    after = metrics()
    rb, ra = before["process"]["rss_bytes"], after["process"]["rss_bytes"]
    print("sessions open: %d (server says %d attached)" % (len(ready), after["sessions"]["attached"]))
    print("RSS before %.1f MiB, after %.1f MiB: %.1f KiB per session" %
          (rb / 2**20, ra / 2**20, (ra - rb) / 1024 / max(1, len(ready))))
    await asyncio.gather(*(w.close() for w in ready))

asyncio.run(main())
