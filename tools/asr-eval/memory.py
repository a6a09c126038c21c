#!/usr/bin/python3
"""Memory of a running asrd instance: RSS and PSS (proportional set size:
shared pages divided among the processes that map them) of the master, each
worker and the private redis-server, from /proc/<pid>/smaps_rollup.

    tools/asr-eval/memory.py <master pid> [--json]

RSS counts shared pages in every process that maps them; PSS does not, so
the instance's real footprint is the sum of PSS."""
import json
import os
import sys


def rollup(pid):
    out = {}
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[0].endswith(":") and parts[2] == "kB":
                out[parts[0][:-1]] = int(parts[1]) * 1024
    return out


def children(pid):
    kids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
            ppid = int(st[st.rindex(")") + 2:].split()[1])
            if ppid == pid:
                with open("/proc/%s/comm" % d) as f:
                    kids.append((int(d), f.read().strip()))
        except (OSError, ValueError):
            pass
    return sorted(kids)


def main():
    master = int(sys.argv[1])
    rows = [("master", master)] + [(comm, pid) for pid, comm in children(master)]
    res = []
    for name, pid in rows:
        r = rollup(pid)
        res.append({"process": name, "pid": pid, "rss_mib": r.get("Rss", 0) / 2**20,
                    "pss_mib": r.get("Pss", 0) / 2**20,
                    "private_mib": (r.get("Private_Clean", 0) + r.get("Private_Dirty", 0)) / 2**20})
    total = {"process": "total", "rss_mib": sum(x["rss_mib"] for x in res),
             "pss_mib": sum(x["pss_mib"] for x in res), "private_mib": sum(x["private_mib"] for x in res)}
    if "--json" in sys.argv:
        print(json.dumps(res + [total]))
        return
    for x in res + [total]:
        print("%-14s %7s  rss %7.1f MiB  pss %7.1f MiB  private %7.1f MiB" %
              (x["process"], x.get("pid", ""), x["rss_mib"], x["pss_mib"], x["private_mib"]))


if __name__ == "__main__":
    main()
