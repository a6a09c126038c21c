#!/usr/bin/python3
"""Samples a running asrd every INTERVAL seconds for DURATION seconds: the
worker's RSS and open descriptors from GET /v1/metrics (process.rss_bytes,
process.open_fds: the answering worker's are read fresh for every request),
with the streams attached and the chunk rate beside them. Writes one CSV row
per sample and, at the end, the least-squares slope of RSS and of open fds
(per hour and per minute) over the samples after --skip seconds, for the
whole window and for each half (a leak grows in both halves; warm-up shows
as a slope that falls).

    /usr/bin/python3 tools/soak_sample.py http://127.0.0.1:18400 --duration 1800 \\
        --interval 10 --skip 120 --csv soak.csv

Run it beside a load (tools/asrd-load, docs/LOAD.md) against one worker
(ASR_WORKERS=1); the figures are that worker's.
"""
import argparse
import json
import sys
import time
import urllib.request


def metrics(base):
    with urllib.request.urlopen(base + "/v1/metrics", timeout=30) as r:
        return json.load(r)


def slope(points):
    """Least-squares slope of (t, y) points, in y per second; 0 for < 2 points."""
    n = len(points)
    if n < 2:
        return 0.0
    mt = sum(t for t, _ in points) / n
    my = sum(y for _, y in points) / n
    den = sum((t - mt) ** 2 for t, _ in points)
    return sum((t - mt) * (y - my) for t, y in points) / den if den else 0.0


def describe(name, pts, unit_scale, unit):
    if len(pts) < 2:
        return "%s: too few samples" % name
    half = len(pts) // 2
    s_all, s1, s2 = slope(pts), slope(pts[:half + 1]), slope(pts[half:])
    ys = [y for _, y in pts]
    return ("%s: first %.1f, last %.1f, min %.1f, max %.1f %s; slope %+.2f %s/h (%+.3f %s/min); "
            "first half %+.2f %s/h, second half %+.2f %s/h"
            % (name, ys[0] / unit_scale, ys[-1] / unit_scale, min(ys) / unit_scale, max(ys) / unit_scale, unit,
               s_all * 3600 / unit_scale, unit, s_all * 60 / unit_scale, unit,
               s1 * 3600 / unit_scale, unit, s2 * 3600 / unit_scale, unit))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("base", help="http://HOST:PORT of the server")
    ap.add_argument("--duration", type=float, default=1800)
    ap.add_argument("--interval", type=float, default=10)
    ap.add_argument("--skip", type=float, default=0, help="seconds at the start left out of the slopes")
    ap.add_argument("--csv", default=None, help="write the samples here (default stdout)")
    a = ap.parse_args()
    out = open(a.csv, "w") if a.csv else sys.stdout
    out.write("t_s,rss_bytes,open_fds,sessions_attached,chunks_per_s,connections_active\n")
    t0 = time.monotonic()
    rss, fds = [], []
    k = 0
    while True:
        due = t0 + k * a.interval
        now = time.monotonic()
        if due > t0 + a.duration:
            break
        if due > now:
            time.sleep(due - now)
        try:
            m = metrics(a.base)
        except OSError as e:
            print("sample %d: %s" % (k, e), file=sys.stderr)
            k += 1
            continue
        t = time.monotonic() - t0
        w = m["process"]
        out.write("%.1f,%d,%d,%d,%.1f,%d\n" % (t, w["rss_bytes"], w["open_fds"], m["sessions"]["attached"],
                                              m["chunks"]["per_sec"], m["connections"]["active"]))
        out.flush()
        if t >= a.skip:
            rss.append((t, w["rss_bytes"]))
            fds.append((t, w["open_fds"]))
        k += 1
    if a.csv:
        out.close()
    print("samples: %d every %.0f s, %.0f s in the slopes (the first %.0f s left out)"
          % (k, a.interval, (rss[-1][0] - rss[0][0]) if len(rss) > 1 else 0, a.skip))
    print(describe("RSS", rss, 1024.0, "KiB"))
    print(describe("open fds", fds, 1.0, "fds"))


main()
