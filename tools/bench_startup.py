#!/usr/bin/python3
"""Start-up time of asrd: from fork/exec to the first accepted TCP connection
and to the first answered GET /v1/health. Runs the binary N times on a free
loopback port and prints min/median/max in ms.

    /usr/bin/python3 tools/bench_startup.py [build/release/asrd] [runs]
"""
import os, socket, statistics, subprocess, sys, time

binary = sys.argv[1] if len(sys.argv) > 1 else "build/release/asrd"
runs = int(sys.argv[2]) if len(sys.argv) > 2 else 20

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

conn_ms, health_ms = [], []
for _ in range(runs):
    port = free_port()
    env = dict(os.environ, ASR_HOST="127.0.0.1", ASR_PORT=str(port), ASR_LOG_LEVEL="warn")
    t0 = time.perf_counter()
    p = subprocess.Popen([binary], env=env, stderr=subprocess.DEVNULL)
    while True:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=1)
            break
        except OSError:
            if time.perf_counter() - t0 > 5: raise SystemExit("no listener after 5 s")
            time.sleep(0.0005)
    t1 = time.perf_counter()
    s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
    s.recv(4096)
    t2 = time.perf_counter()
    s.close()
    p.terminate(); p.wait(5)
    conn_ms.append((t1 - t0) * 1000); health_ms.append((t2 - t0) * 1000)

for name, v in (("first accepted connection", conn_ms), ("first /v1/health answer", health_ms)):
    print("%-26s min %.1f ms  median %.1f ms  max %.1f ms  (%d runs)" %
          (name, min(v), statistics.median(v), max(v), len(v)))
