#!/usr/bin/python3
"""What asrd sessions cost the shared Redis (docs/SCALING.md): one asrd
worker with the Redis store, N real-time streams from tools/asrd-load, and
Redis's own figures before, during and after.

    tools/scaling_redis.py --sessions 1000 --duration 20
    tools/scaling_redis.py --sessions 200 --duration 10 --monitor 5 --json out.json

Starts a throwaway redis-server (AOF on, fsync every second, as compose.yaml
runs it) and asrd on free loopback ports, pinned like docs/BENCHMARKS.md
(asrd on core 0, the load tool on core 1, Redis unpinned), and reports:
- script calls (EVALSHA) and the commands run inside them, per session per
  minute of streaming, from INFO commandstats deltas;
- Redis CPU (INFO cpu delta) per call and per 1,000 sessions;
- memory per session: used_memory at steady state minus before, divided by
  the live sessions, and MEMORY USAGE of sample session hashes and of the
  worker's sorted set;
- optionally a MONITOR window (--monitor S): commands per second by name,
  top level and inside scripts ("lua"), at steady state.
Everything is bounded: the load tool runs ramp + duration + grace, and every
process started here is killed at the end.

    tools/scaling_redis.py --bench-scripts [--workers 1,10,100,250]

instead measures the store's own Lua scripts (taken from src/store/redis.c)
with redis-benchmark against a throwaway Redis, pipelined as asrd pipelines
them: `update` on 10,000 live sessions (400-byte snapshot), `create` +
`delete` without a global limit, and `create` with ASR_MAX_GLOBAL_SESSIONS
set while W worker ids are registered (its cost grows with W). Reported:
calls per second of one Redis core and Redis CPU per call.
"""
import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def cli(port, *args, timeout=10):
    r = subprocess.run(["redis-cli", "-p", str(port)] + [str(a) for a in args],
                       capture_output=True, text=True, timeout=timeout)
    return r.stdout


def info(port, section):
    out = {}
    for line in cli(port, "INFO", section).splitlines():
        if ":" in line and not line.startswith("#"):
            k, v = line.strip().split(":", 1)
            out[k] = v
    return out


def commandstats(port):
    out = {}
    for k, v in info(port, "commandstats").items():
        m = re.match(r"cmdstat_(.+)", k)
        if m:
            d = dict(x.split("=") for x in v.split(","))
            out[m.group(1)] = (int(d["calls"]), int(d["usec"]))
    return out


def redis_cpu(port):
    i = info(port, "cpu")
    return float(i["used_cpu_user"]) + float(i["used_cpu_sys"])


def proc_cpu(pids):
    tot = 0
    for p in pids:
        try:
            with open("/proc/%d/stat" % p) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            tot += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return tot / os.sysconf("SC_CLK_TCK")


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    return out


def start_redis(tmp, aof=True):
    """A throwaway redis-server on a free loopback port, AOF on and fsync
    every second (as compose.yaml runs it) unless aof is False; (process,
    port) once it answers."""
    port = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "yes" if aof else "no", "--appendfsync", "everysec", "--dir", tmp,
                              "--protected-mode", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        if cli(port, "PING").strip() == "PONG":
            break
        time.sleep(0.05)
    return redis, port


def start_asrd(a, tmp, rport, extra, pin=(), log="asrd.log"):
    """asrd on a free loopback port with the Redis store on rport and the
    settings in extra; (process, port) once it accepts connections."""
    aport = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASR_")}
    env.update({"ASR_HOST": "127.0.0.1", "ASR_PORT": str(aport), "ASR_WORKERS": "1",
                "ASR_WORKER_ID": "m-", "ASR_REDIS_URL": "redis://127.0.0.1:%d" % rport,
                "ASR_STORE_REQUIRED": "1", "ASR_LOG_LEVEL": "warn"})
    env.update(extra)
    asrd = subprocess.Popen(list(pin) + [os.path.join(a.bin, "asrd")], env=env, stdout=subprocess.DEVNULL,
                            stderr=open(os.path.join(tmp, log), "ab"))
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", aport), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    return asrd, aport


def stop(procs):
    for p in reversed(procs):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(40)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


def lua_scripts(rel="src/store/redis.c"):
    """{name: full script text} exactly as rel (src/store/redis.c, the
    session store, or src/store/jobs.c, the job queue) sends them
    (LUA_PRELUDE + body): the C string literals, concatenated."""
    if rel == "src/store/redis.c" and not os.path.exists(os.path.join(REPO, rel)):
        rel = "src/store_redis.c"                               # before the src/ layers
    with open(os.path.join(REPO, rel)) as f:
        src = f.read()

    def literals(text):
        out = []
        for m in re.finditer(r'"((?:[^"\\]|\\.)*)"', re.sub(r"/\*.*?\*/", "", text, flags=re.S)):
            out.append(m.group(1).encode().decode("unicode_escape"))
        return "".join(out)
    pre = src[src.index("#define LUA_PRELUDE"):]
    pre = pre[:pre.index("\n\n")]
    prelude = literals(pre)
    body = src[src.index("script_body[S__N] = {"):]
    body = body[:body.index("\n};")]
    out = {}
    parts = re.split(r"\[S_([A-Z_]+)\] =", body)
    for name, text in zip(parts[1::2], parts[2::2]):
        if not name.startswith("_"):                            # script_body[S__N] itself
            out[name.lower()] = prelude + literals(text)
    return out


def bench(port, args, n, clients=50, pipeline=16, keyspace=10000):
    """redis-benchmark of one command; (calls/s, Redis CPU us per call)."""
    cpu0 = redis_cpu(port)
    r = subprocess.run(["redis-benchmark", "-p", str(port), "-c", str(clients), "-n", str(n), "-P", str(pipeline),
                        "-r", str(keyspace), "-q"] + [str(a) for a in args],
                       capture_output=True, text=True, timeout=300)
    cpu1 = redis_cpu(port)
    m = re.findall(r"([0-9.]+) requests per second", r.stdout.replace("\r", "\n"))
    return (float(m[-1]) if m else None), round((cpu1 - cpu0) / n * 1e6, 1)


def bench_scripts(a):
    tmp = tempfile.mkdtemp(prefix="asrd-scaling-")
    redis, port = start_redis(tmp)
    try:
        sha = {}
        for name, text in lua_scripts().items():
            r = subprocess.run(["redis-cli", "-p", str(port), "-x", "SCRIPT", "LOAD"], input=text,
                               capture_output=True, text=True, timeout=10)
            sha[name] = r.stdout.strip()
            assert re.fullmatch(r"[0-9a-f]{40}", sha[name]), (name, r.stdout, r.stderr)
        blob = "x" * 400
        ttl = 300000
        res = {"command": " ".join(sys.argv), "redis": cli(port, "INFO", "server").split("redis_version:")[1].split()[0]}
        cli(port, "SET", "asrd:worker:m-0:alive", "1", "PX", 600000)
        mem0 = int(info(port, "memory")["used_memory"])
        # 10,000 sessions owned by m-0, then updates on random ones
        res["create_nolimit"] = bench(port, ["EVALSHA", sha["create"], 0, "asrd:", "m-0", "c__rand_int__", blob, ttl, 0],
                                      a.n, keyspace=10 ** 9)
        bench(port, ["EVALSHA", sha["create"], 0, "asrd:", "m-0", "__rand_int__", blob, ttl, 0], 40000)
        res["live_sessions"] = int(cli(port, "ZCARD", "asrd:worker:m-0:sessions").strip())
        res["used_memory_per_session"] = round((int(info(port, "memory")["used_memory"]) - mem0) /
                                               res["live_sessions"])
        one = cli(port, "EVALSHA", sha["update"], 0, "asrd:", "m-0", "000000000042", ttl, 1, 1, blob).strip()
        assert one == "0", "update of a live session answered %r" % one
        res["update_with_blob"] = bench(port, ["EVALSHA", sha["update"], 0, "asrd:", "m-0", "__rand_int__", ttl, 1, 1,
                                               blob], a.n)
        res["update_no_blob"] = bench(port, ["EVALSHA", sha["update"], 0, "asrd:", "m-0", "__rand_int__", ttl, 0, 0,
                                             ""], a.n)
        for w in [int(x) for x in a.workers.split(",")]:
            # w live worker ids with 10 sessions each (what count_active walks)
            for i in range(w):
                wid = "b%d-0" % i
                cli(port, "SET", "asrd:worker:%s:alive" % wid, "1", "PX", 600000)
                cli(port, "SADD", "asrd:workers", wid)
                cli(port, "ZADD", "asrd:worker:%s:sessions" % wid, *sum(([10 ** 13, "s%d_%d" % (i, k)]
                                                                          for k in range(10)), []))
            res["create_limit_%d_workers" % w] = bench(
                port, ["EVALSHA", sha["create"], 0, "asrd:", "m-0", "L__rand_int__", blob, ttl, 10 ** 9], a.n // 4,
                keyspace=10 ** 9)
            cli(port, "EVAL", "for _, w in ipairs(redis.call('SMEMBERS', 'asrd:workers')) do "
                "if string.sub(w, 1, 1) == 'b' then redis.call('SREM', 'asrd:workers', w) "
                "redis.call('DEL', 'asrd:worker:' .. w .. ':alive', 'asrd:worker:' .. w .. ':sessions') end end", 0)
        print(json.dumps(res, indent=2))
        if a.json:
            with open(a.json, "w") as f:
                json.dump(res, f, indent=2)
    finally:
        redis.kill()
        redis.wait(5)
        shutil.rmtree(tmp, ignore_errors=True)


def cmd_delta(c0, c1):
    """commandstats c1 - c0: {command: {"calls", "usec"}}, changed ones only."""
    out = {}
    for k, (c, u) in c1.items():
        b = c0.get(k, (0, 0))
        if c - b[0]:
            out[k] = {"calls": c - b[0], "usec": u - b[1]}
    return out


def scan(port, pattern):
    keys, cursor = [], "0"
    while True:
        r = cli(port, "SCAN", cursor, "MATCH", pattern, "COUNT", 1000).split()
        cursor, keys = r[0], keys + r[1:]
        if cursor == "0":
            return keys


def usage(port, pattern, n=20):
    """MEMORY USAGE of up to n keys matching pattern (a trailing "$": no
    further ':' after the pattern's last '*'): min, mean, max, count."""
    exact = pattern.endswith("$")
    keys = scan(port, pattern.rstrip("$"))
    if exact:
        stem = pattern.rstrip("$").rsplit("*", 1)[0]
        keys = [k for k in keys if ":" not in k[len(stem):]]
    u = [int(cli(port, "MEMORY", "USAGE", k, "SAMPLES", 0).strip() or 0) for k in keys[:n]]
    if not u:
        return {"keys": 0}
    return {"keys": len(keys), "min": min(u), "mean": round(sum(u) / len(u)), "max": max(u)}


def jobs_ready(aport, timeout=20):
    """The job routes answer: an unknown job is 404 once the queue's Redis
    answers (503 before)."""
    url = "http://127.0.0.1:%d/v1/jobs/00000000000000000000000000000000" % aport
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            urllib.request.urlopen(url, timeout=2)
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit("scaling_redis: the job routes of asrd did not come up")


class Window:
    """Redis's figures over a stretch of time: commandstats, CPU, used_memory,
    and with monitor=True the EVALSHA calls by script (a MONITOR running
    meanwhile: it costs Redis CPU, so CPU is not read from such a window)."""

    def __init__(self, port, tmp, monitor=False):
        self.port, self.tmp = port, tmp
        self.mon = None
        if monitor:
            self.mpath = os.path.join(tmp, "monitor-%d.txt" % time.monotonic_ns())
            self.mfile = open(self.mpath, "wb")
            self.mon = subprocess.Popen(["redis-cli", "-p", str(port), "MONITOR"], stdout=self.mfile)
            time.sleep(0.3)
        self.cmd0, self.cpu0 = commandstats(port), redis_cpu(port)
        self.mem0, self.t0 = int(info(port, "memory")["used_memory"]), time.monotonic()

    def end(self, names=None):
        cmd1, cpu1 = commandstats(self.port), redis_cpu(self.port)
        self.wall = time.monotonic() - self.t0
        self.cmd = cmd_delta(self.cmd0, cmd1)
        self.cpu = cpu1 - self.cpu0
        self.mem1 = int(info(self.port, "memory")["used_memory"])
        self.by_script = {}
        if self.mon:
            self.mon.send_signal(signal.SIGINT)
            try:
                self.mon.wait(5)
            except subprocess.TimeoutExpired:
                self.mon.kill()
                self.mon.wait(5)
            self.mfile.close()
            with open(self.mpath, errors="replace") as f:
                for line in f:
                    m = re.search(r'\] "(?:evalsha|EVALSHA)" "([0-9a-f]{40})"', line)
                    if m:
                        k = (names or {}).get(m.group(1), m.group(1)[:8])
                        self.by_script[k] = self.by_script.get(k, 0) + 1
        return self

    def calls(self):
        return sum(v["calls"] for v in self.cmd.values())

    def per_worker(self, workers):
        """The window's calls and Redis CPU per worker per second."""
        return {"wall_s": round(self.wall, 1),
                "calls_per_worker_per_s": {k: per(v["calls"], self.wall * workers) for k, v in self.cmd.items()},
                "redis_cpu_share_per_worker": round(self.cpu / (self.wall * workers), 4)}


def idle_window(port, tmp, seconds):
    """Redis's figures over `seconds` of an idle asrd (after 2 s to settle)."""
    time.sleep(2)
    w = Window(port, tmp)
    time.sleep(seconds)
    return w.end()


def run_load(a, args, tmp, name):
    out_json = os.path.join(tmp, name + ".json")
    cmd = [os.path.join(a.bin, "asrd-load"), "--scenario", "jobs", "--wav", a.job_wav,
           "--json", out_json] + [str(x) for x in args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    sys.stderr.write(r.stdout)
    if not os.path.exists(out_json):
        sys.exit("scaling_redis: asrd-load failed: %s" % r.stderr[-2000:])
    with open(out_json) as f:
        return " ".join(cmd), json.load(f)


def per(n, d):
    return round(n / d, 2) if d else None


def jobs_mode(a):
    """What jobs cost the shared Redis (docs/SCALING.md "Redis per job")."""
    names = {hashlib.sha1(t.encode()).hexdigest(): n for n, t in lua_scripts("src/store/jobs.c").items()}
    names.update({hashlib.sha1(t.encode()).hexdigest(): "session:" + n for n, t in lua_scripts().items()})
    tmp = tempfile.mkdtemp(prefix="asrd-scaling-")
    procs = []
    W = a.job_workers
    base_env = {"ASR_WORKERS": str(W), "ASR_JOB_QUEUE_MAX": "0", "ASR_JOB_SPOOL_MAX_MB": "0",
                "ASR_OUTBOUND_ALLOW_PRIVATE": "1", "ASR_ENGINE": "mock"}
    res = {"command": " ".join(sys.argv), "workers": W, "jobs": a.jobs, "wav": a.job_wav,
           "redis": None}
    try:
        redis, rport = start_redis(tmp, aof=not a.no_aof)
        procs.append(redis)
        res["aof"] = not a.no_aof
        res["redis"] = info(rport, "server")["redis_version"]
        # 1. the queue alone: nobody runs the jobs; submissions at a steady rate
        asrd, aport = start_asrd(a, tmp, rport, dict(base_env, ASR_JOB_CONCURRENCY="0"))
        procs.append(asrd)
        jobs_ready(aport)
        missing = [n for n in lua_scripts("src/store/jobs.c")
                   if cli(rport, "SCRIPT", "EXISTS", hashlib.sha1(lua_scripts("src/store/jobs.c")[n].encode())
                          .hexdigest()).strip() != "1"]
        res["scripts_not_recognised"] = missing   # the extraction gave another text than asrd loaded
        idle = idle_window(rport, tmp, a.idle)
        res["idle_no_runners"] = idle.per_worker(W)
        dur = max(1, round(a.jobs / a.rate))
        w = Window(rport, tmp, monitor=a.monitor_jobs)
        cmd, lj = run_load(a, ["--url", "http://127.0.0.1:%d" % aport, "--rate", a.rate, "--duration", dur,
                               "--connections", 16], tmp, "submit")
        w.end(names)
        q = int(cli(rport, "GET", "asrd:jobs:queued").strip() or 0)
        bg = idle.calls() / idle.wall * w.wall
        res["submit"] = {
            "load_command": cmd, "accepted": lj["accepted"], "refused_503": lj["refused_503"],
            "submit_ms_p50_p99": [lj["submit_ms"]["p50"], lj["submit_ms"]["p99"]],
            "queued_runs": q,
            "evalsha_per_submit": per(w.cmd.get("evalsha", {}).get("calls", 0) - idle.cmd.get("evalsha", {})
                                      .get("calls", 0) / idle.wall * w.wall, lj["accepted"]),
            "commands_per_submit_all_in": per(w.calls() - bg, lj["accepted"]),
            "top_commands": {k: per(v["calls"], lj["accepted"]) for k, v in
                             sorted(w.cmd.items(), key=lambda kv: -kv[1]["calls"])[:12]},
            "scripts_by_name": w.by_script,
            "redis_cpu_us_per_submit": None if a.monitor_jobs else
            round((w.cpu - idle.cpu / idle.wall * w.wall) / lj["accepted"] * 1e6, 1),
            "bytes_per_queued_job": per(w.mem1 - w.mem0, q),
            "spool_bytes_per_run": per(int(cli(rport, "GET", "asrd:jobs:spool_bytes").strip() or 0), q),
            "memory_usage": {k: usage(rport, "asrd:" + k) for k in ("job:*", "run:*$", "run:*:jobs",
                                                                      "run:*:audio", "runhash:*")},
            "queue_stream": int(cli(rport, "MEMORY", "USAGE", "asrd:jobs:queue", "SAMPLES", 0).strip() or 0),
        }
        stop([asrd])
        procs.remove(asrd)
        # 2. with runners: a burst of N jobs end to end, webhooks included
        cli(rport, "FLUSHALL")
        asrd, aport = start_asrd(a, tmp, rport, dict(base_env, ASR_JOB_CONCURRENCY=str(a.concurrency)))
        procs.append(asrd)
        jobs_ready(aport)
        idle = idle_window(rport, tmp, a.idle)
        res["idle_with_runners"] = idle.per_worker(W)
        w = Window(rport, tmp, monitor=a.monitor_jobs)
        cmd, lj = run_load(a, ["--url", "http://127.0.0.1:%d" % aport, "--count", a.jobs, "--connections", 32,
                               "--server-pid", asrd.pid], tmp, "burst")
        time.sleep(1)      # the last webhooks' outcomes written
        w.end(names)
        bg = idle.calls() / idle.wall * w.wall
        n = lj["done"]
        res["end_to_end"] = {
            "load_command": cmd, "done": n, "wall_s": round(w.wall, 1), "jobs_per_s": lj["jobs_per_s"],
            "evalsha_per_job": per(w.cmd.get("evalsha", {}).get("calls", 0) - idle.cmd.get("evalsha", {})
                                   .get("calls", 0) / idle.wall * w.wall, n),
            "commands_per_job_all_in": per(w.calls() - bg, n),
            "background_share_of_calls": per(bg, w.calls()),
            "top_commands": {k: per(v["calls"], n) for k, v in
                             sorted(w.cmd.items(), key=lambda kv: -kv[1]["calls"])[:16]},
            "scripts_by_name_per_job": {k: per(v, n) for k, v in sorted(w.by_script.items(), key=lambda kv: -kv[1])},
            "redis_cpu_us_per_job": None if a.monitor_jobs else
            round((w.cpu - idle.cpu / idle.wall * w.wall) / n * 1e6, 1),
            "bytes_per_finished_job": per(w.mem1 - w.mem0, n),
            "memory_usage": {k: usage(rport, "asrd:" + k) for k in ("job:*", "cache:*", "jobs:done:*")},
            "result_bytes_sample": [len(cli(rport, "HGET", k, "result").rstrip("\n"))
                                    for k in scan(rport, "asrd:job:*")[:5]],
            "left": {k: len(scan(rport, "asrd:" + k)) for k in ("run:*", "runhash:*", "job:*", "cache:*")},
        }
        text = json.dumps(res, indent=2)
        print(text)
        if a.json:
            with open(a.json, "w") as f:
                f.write(text + "\n")
    finally:
        stop(procs)
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench-scripts", action="store_true")
    ap.add_argument("--workers", default="1,10,100,250")
    ap.add_argument("-n", type=int, default=200000, help="--bench-scripts: calls per measurement")
    ap.add_argument("--sessions", type=int, default=1000)
    ap.add_argument("--ramp", type=int, default=5)
    ap.add_argument("--duration", type=int, default=20)
    ap.add_argument("--wav", default=os.path.join(REPO, "tests/data/generated/conversation16k.wav"))
    ap.add_argument("--monitor", type=float, default=0, help="seconds of MONITOR at steady state")
    ap.add_argument("--bin", default=os.path.join(REPO, "build/release"))
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--no-pin", action="store_true")
    ap.add_argument("--env", action="append", default=[], metavar="ASR_X=V",
                    help="a setting of the asrd measured (repeatable), e.g. ASR_SNAPSHOT_INTERVAL_S=3")
    ap.add_argument("--jobs", type=int, default=0, help="measure jobs instead: N submissions, then N run")
    ap.add_argument("--job-workers", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=2, help="--jobs: ASR_JOB_CONCURRENCY of the run phase")
    ap.add_argument("--rate", type=float, default=100, help="--jobs: submissions per second (queue phase)")
    ap.add_argument("--idle", type=float, default=10, help="--jobs: seconds of idle background measured")
    ap.add_argument("--job-wav", default=os.path.join(REPO, "tests/data/generated/speech16k.wav"))
    ap.add_argument("--no-aof", action="store_true", help="--jobs: Redis without its append-only file")
    ap.add_argument("--monitor-jobs", action="store_true",
                    help="--jobs: count script calls by name with MONITOR (no CPU figures then; MONITOR echoes "
                         "every upload, and Redis drops it past its output buffer limit: a few hundred jobs)")
    a = ap.parse_args()
    for exe in ("redis-server", "redis-cli", "redis-benchmark"):
        if not shutil.which(exe):
            sys.exit("scaling_redis: %s is not installed" % exe)
    if a.bench_scripts:
        return bench_scripts(a)
    if a.jobs:
        return jobs_mode(a)
    pin_s = [] if a.no_pin else ["taskset", "-c", "0"]
    pin_c = [] if a.no_pin else ["taskset", "-c", "1"]
    tmp = tempfile.mkdtemp(prefix="asrd-scaling-")
    procs = []
    try:
        redis, rport = start_redis(tmp)
        procs.append(redis)
        extra = {"ASR_MAX_SESSIONS_PER_WORKER": "20000", "ASR_MAX_CONNECTIONS": "20000"}
        extra.update(kv.split("=", 1) for kv in a.env)
        asrd, aport = start_asrd(a, tmp, rport, extra, pin_s)
        procs.append(asrd)
        time.sleep(1.5)            # the store connected and registered
        server_pids = [asrd.pid] + children(asrd.pid)
        base = {"cmd": commandstats(rport), "cpu": redis_cpu(rport),
                "mem": int(info(rport, "memory")["used_memory"]), "asrd_cpu": proc_cpu(server_pids),
                "t": time.monotonic()}
        out_json = os.path.join(tmp, "load.json")
        load_cmd = pin_c + [os.path.join(a.bin, "asrd-load"), "--url", "ws://127.0.0.1:%d" % aport,
                            "--scenario", "sustained", "--sessions", str(a.sessions), "--ramp", str(a.ramp),
                            "--duration", str(a.duration), "--wav", a.wav, "--quiet", "--json", out_json]
        load = subprocess.Popen(load_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        procs.append(load)
        # steady state: after the ramp, in the middle of the streaming
        time.sleep(a.ramp + a.duration / 2)
        mid_mem = int(info(rport, "memory")["used_memory"])
        live = 0
        sample = []
        cursor = "0"
        while True:
            r = cli(rport, "SCAN", cursor, "MATCH", "asrd:session:*", "COUNT", 1000).split()
            cursor, keys = r[0], r[1:]
            live += len(keys)
            sample += keys[:max(0, 20 - len(sample))]
            if cursor == "0":
                break
        usage = [int(cli(rport, "MEMORY", "USAGE", k, "SAMPLES", 0).strip() or 0) for k in sample]
        zset = int(cli(rport, "MEMORY", "USAGE", "asrd:worker:m-0:sessions", "SAMPLES", 0).strip() or 0)
        blob = [len(cli(rport, "HGET", k, "blob").rstrip("\n")) for k in sample[:5]]
        mon = {}
        if a.monitor > 0:
            mpath = os.path.join(tmp, "monitor.txt")
            with open(mpath, "wb") as f:
                m = subprocess.Popen(["redis-cli", "-p", str(rport), "MONITOR"], stdout=f)
                time.sleep(a.monitor)
                m.send_signal(signal.SIGINT)
                m.wait(5)
            with open(mpath, errors="replace") as f:
                for line in f:
                    mm = re.match(r'[0-9.]+ \[\d+ (lua|[0-9.:]+)\] "([A-Za-z]+)"', line)
                    if mm:
                        k = ("lua " if mm.group(1) == "lua" else "") + mm.group(2).upper()
                        mon[k] = mon.get(k, 0) + 1
            mon = {k: round(v / a.monitor, 1) for k, v in sorted(mon.items(), key=lambda kv: -kv[1])}
        _, err = load.communicate(timeout=a.ramp * 2 + a.duration + 60)
        end = {"cmd": commandstats(rport), "cpu": redis_cpu(rport), "asrd_cpu": proc_cpu(server_pids),
               "t": time.monotonic()}
        with open(out_json) as f:
            lj = json.load(f)
        stream_min = a.sessions * (a.ramp + a.duration) / 60.0   # each session streams R + D s
        dcmd = {}
        for k, (c, u) in end["cmd"].items():
            c0, u0 = base["cmd"].get(k, (0, 0))
            if c - c0:
                dcmd[k] = {"calls": c - c0, "usec": u - u0}
        ev = dcmd.get("evalsha", {"calls": 0, "usec": 0})
        wall = end["t"] - base["t"]
        res = {
            "command": " ".join(sys.argv),
            "settings": a.env,
            "load_command": " ".join(load_cmd),
            "sessions": a.sessions, "ramp_s": a.ramp, "duration_s": a.duration,
            "load": {k: lj["total"].get(k) for k in ("sessions_opened", "sessions_completed", "chunks_sent",
                                                      "answers", "finals", "missing", "connect_failures",
                                                      "errors", "server_loop_util_peak")},
            "latency_added_ms": {k: lj["total"]["added_ms"].get(k) for k in ("p50", "p99", "max")},
            "redis_calls": dcmd,
            "evalsha_per_session_min": round(ev["calls"] / stream_min, 1),
            "usec_per_evalsha": round(ev["usec"] / ev["calls"], 1) if ev["calls"] else None,
            "redis_cpu_s": round(end["cpu"] - base["cpu"], 2),
            "wall_s": round(wall, 1),
            "redis_cpu_share_per_1000_sessions": round((end["cpu"] - base["cpu"]) / wall * 1000 / a.sessions, 4),
            "asrd_cpu_s": round(end["asrd_cpu"] - base["asrd_cpu"], 2),
            "live_session_keys_mid": live,
            "used_memory_base": base["mem"], "used_memory_mid": mid_mem,
            "bytes_per_session_used_memory": round((mid_mem - base["mem"]) / live) if live else None,
            "memory_usage_session_hash": {"min": min(usage), "max": max(usage),
                                          "mean": round(sum(usage) / len(usage))} if usage else None,
            "memory_usage_worker_zset": zset,
            "zset_bytes_per_session": round(zset / live, 1) if live else None,
            "blob_bytes_sample": blob,
            "monitor_per_s": mon,
            "asrd_warnings": open(os.path.join(tmp, "asrd.log"), errors="replace").read().splitlines()[-8:],
        }
        text = json.dumps(res, indent=2)
        print(text)
        if a.json:
            with open(a.json, "w") as f:
                f.write(text + "\n")
        if err:
            sys.stderr.write(err.decode(errors="replace")[-2000:])
    finally:
        stop(procs)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
