#!/usr/bin/python3
"""How long a server takes to let go of a client that stopped reading
(docs/BENCHMARKS.md, "Faults probed from outside"). Not a test: it prints
figures for the binary in ASRD_BIN, before and after a change.

    ASRD_BIN=build/release/asrd /usr/bin/python3 tests/integration/bench_faults.py [cap_s] [env...]

The client upgrades on a raw socket, streams 100 ms chunks in real time and
never reads (a stuck reader thread; it answers no ping either). The figure
is the time from its first chunk until the server no longer counts the
session as attached (it detached or ended it), capped at cap_s (default
120). Extra KEY=VALUE arguments go to the server's environment;
BENCH_VANISHED_ONLY=1 runs only the second case.

Then the same for a client that vanishes without a FIN: the server runs in
a network namespace (netns_cluster.py) whose link is cut after 1.5 s of
streaming; the figure is from the cut to the server's `session detached`
or `session end` log line (root and iproute2 needed; skipped otherwise)."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import asyncio  # noqa: E402

import asrd_harness as h  # noqa: E402
import netns_cluster as nc  # noqa: E402


def stuck_reader(srv, rcvbuf, cap_s):
    chunk = h.chunks_of(h.speech_pcm())[0]
    c = h.raw_ws_connect(srv.port, rcvbuf=rcvbuf)
    t0 = time.monotonic()
    next_poll = 0
    try:
        while time.monotonic() - t0 < cap_s:
            try:
                c.sock.sendall(h.ws_frame(chunk))
            except OSError:
                pass
            if time.monotonic() >= next_poll:
                if h.metric(srv.metrics(), "sessions.attached") == 0:
                    return time.monotonic() - t0
                next_poll = time.monotonic() + 0.25
            time.sleep(0.1)
        return None
    finally:
        c.close()


def vanished(env, cap_s):
    cl = nc.Cluster(n_asrd=1, running=0)
    try:
        cl.build()
        host = cl.asrd_hosts[0]
        host.start_asrd(ASR_REDIS_URL="memory", ASR_STORE_REQUIRED=0, **env)
        url = "ws://%s:%d/v1/transcribe/stream" % (host.ip, nc.ASRD_PORT)
        chunk = h.chunks_of(h.speech_pcm())[0]

        async def go():
            w, s = await h.WS.open_session(url)
            for _ in range(15):
                await w.send_bytes(chunk)
                await asyncio.sleep(0.1)
            host.cut()
            t0 = time.monotonic()
            while time.monotonic() - t0 < cap_s:
                for ln in host.log_lines():
                    if ln.get("msg") in ("session detached", "session end") and \
                            ln.get("session_id") == s["session_id"]:
                        return time.monotonic() - t0
                await asyncio.sleep(0.1)
            return None
        return h.arun(go(), cap_s + 30)
    finally:
        cl.destroy()


def main():
    cap = float(sys.argv[1]) if len(sys.argv) > 1 else 120.0
    env = {"ASR_MOCK_LATENCY_MS": 20}
    for kv in sys.argv[2:]:
        k, _, v = kv.partition("=")
        env[k] = v
    h.ensure_audio()
    for rcvbuf in (() if os.environ.get("BENCH_VANISHED_ONLY") else (4096, None)):
        srv = h.Server(env, name="bench").start()
        try:
            took = stuck_reader(srv, rcvbuf, cap)
        finally:
            srv.stop()
        print("stuck reader, SO_RCVBUF %s: %s" % (rcvbuf or "default",
                                                  "not let go in %.0f s" % cap if took is None
                                                  else "let go after %.1f s" % took))
    if nc.unavailable() is None:
        took = vanished(env, cap)
        print("vanished without a FIN: %s" % ("not let go in %.0f s" % cap if took is None
                                               else "let go after %.1f s" % took))


if __name__ == "__main__":
    main()
