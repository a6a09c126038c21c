"""Slow clients, floods and churn, proved on a small scale (the
full-scale runs are in docs/BENCHMARKS.md, "Slow clients, floods and churn").

Each test starts its own server, runs tools/asrd-load against it (the
binary next to ASRD_BIN, as test_loadtool.py finds it) and reads
/v1/metrics itself before and after. Every assertion is on counts the
protocol and the server's settings make exact, or on bounds derived from
those settings; none is on time. The loads are small (about 10 s each, at
most ~12,000 chunks/s for a few seconds) and smaller still against a
sanitizer build, so the file stays well under a minute per test on 2 cores.
Against a sanitizer build the RSS bounds are not checked: ASan's quarantine
keeps freed memory (up to 256 MiB) and its allocator never gives memory
back, so RSS there says nothing about the server's own bounds; every count,
and the fds, are checked all the same.

- slow readers: sessions that never read after `session` are all ended as
  slow_client (the server's 1008 decision), each with a 1008 close frame or,
  when the frame cannot leave (the peer reads nothing), a reset after the
  grace; the partials dropped for them are counted; the reading sessions
  lose nothing; the server's RSS stays under a bound derived from the
  send-queue settings, and its fds return to where they were.
- flood: sessions sending 10x faster than real time get RATE_LIMITED for
  what passes the token bucket (2 s of burst at twice real time), every chunk
  answered; with the default abuse threshold they are never closed (at 10x
  at most 4 refusals come in a row), with a threshold of 3 every one is
  closed 1008 (sessions.ended.policy). The other sessions lose nothing.
- churn: about 1,000 short sessions, twice against one server: every one
  completes, open fds after equal fds before, and RSS does not grow from
  the first round to the second.
"""
import pytest

import asrd_harness as h
from test_loadtool import delta, run_load, settled_metrics

SAN = h.is_sanitized()
KIB = 1024
MIB = 1024 * 1024


def fds(m):
    return h.metric(m, "process.open_fds")


def rss(m):
    return h.metric(m, "process.rss_bytes")


def check_normal_lossless(t, normal):
    """The sessions that read and stream in real time: all opened, every
    chunk answered once, in order, without an error, each ended with its
    final and a 1000 close."""
    assert t["connect_failures"] == 0, t["connect_errors"]
    assert t["normal_sessions"] == normal, t
    assert t["normal_chunks"] > 0, t
    assert t["answers"] == t["normal_chunks"], (t["answers"], t["normal_chunks"])
    assert t["missing"] == 0 and t["out_of_order"] == 0 and t["unmatched"] == 0, t
    assert t["normal_errors"] == 0, t["errors"]
    assert t["normal_completed"] == normal, t["close_codes"]


# ---- slow readers --------------------------------------------------------

SLOW, NORMAL = (30, 10) if SAN else (100, 20)
QUEUE_BYTES = 4096          # ASR_MAX_SEND_QUEUE_BYTES
QUEUE_SIZE = 64             # ASR_MAX_SEND_QUEUE_SIZE
THRESHOLD = 2               # ASR_SLOW_CLIENT_THRESHOLD


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_prove_slow_readers_all_closed_1008(start_server):
    """SLOW sessions that never read beside NORMAL that do, 10 ms chunks (a
    partial every 10 ms, ~15 KB/s a slow reader leaves unread). Once the
    kernel holds what it may (2 x 16 KiB server send buffer + the 8 KiB
    client receive buffer, ~3 s), each new partial overflows the 4 KiB queue;
    THRESHOLD overflows in a row close 1008. The send timeout is left at 30 s,
    so the queue policy is what closes them, within the 10 s run."""
    srv = start_server(ASR_MAX_SEND_QUEUE_BYTES=QUEUE_BYTES, ASR_MAX_SEND_QUEUE_SIZE=QUEUE_SIZE,
                       ASR_SLOW_CLIENT_THRESHOLD=THRESHOLD)
    m0 = srv.metrics()
    res, out = run_load(srv, "--scenario", "slow-readers", "--sessions", SLOW + NORMAL, "--slow-sessions", SLOW,
                        "--duration", 10, "--ramp", 1, "--chunk-ms", 10, "--slow-rcvbuf", 8192, "--grace", 10,
                        timeout=80)
    m1 = settled_metrics(srv, m0)
    t = res["total"]
    assert res["options"]["slow_count"] == SLOW
    assert t["slow_sessions"] == SLOW and t["sessions_opened"] == SLOW + NORMAL == delta(m0, m1, "sessions.total"), t
    check_normal_lossless(t, NORMAL)
    # every slow reader was ended by the server as too slow: the 1008
    # decision, counted once per session ...
    assert delta(m0, m1, "sessions.ended.slow_client") == SLOW, m1["sessions"]["ended"]
    assert delta(m0, m1, "sessions.ended.stop") == NORMAL, m1["sessions"]["ended"]
    # ... and on the wire a 1008 close frame, or (it cannot leave while the
    # peer reads nothing) a reset after the 2 s grace; never a 1000
    c1008, cnone = delta(m0, m1, "close_codes.1008"), delta(m0, m1, "close_codes.none")
    assert c1008 + cnone == SLOW, m1["close_codes"]
    assert delta(m0, m1, "close_codes.1000") == NORMAL, m1["close_codes"]
    # the client saw every slow session end before its `stop`
    assert t["slow_closed"] == SLOW, t
    assert sum(t["slow_close_codes"].values()) == SLOW and "1000" not in t["slow_close_codes"], t["slow_close_codes"]
    # the queue policy acted (overflows drop the oldest partial) and the
    # metrics count it: at least THRESHOLD drops per slow reader
    assert delta(m0, m1, "partials.dropped") >= THRESHOLD * SLOW, m1["partials"]
    # the tool's own reading of the server says the same
    d = t["server"]["delta"]
    assert d["slow_client_closes"] == SLOW and d["ended"].get("slow_client") == SLOW, d
    # memory: the queue is bounded by settings, so RSS grows by at most a
    # bounded amount per connection: the session (~15 KiB), what is committed
    # beyond the queue (16 KiB + one message), the queue's buffer (<= 4 x its
    # live records: 4 x 2 x QUEUE_BYTES payload + record headers), wslay's
    # frame buffers; 96 KiB per connection covers them with room, plus 4 MiB
    # of allocator slack. An unbounded queue would hold 10 s x 15 KB/s per
    # slow reader, 150 KB each.
    bound = 4 * MIB + (SLOW + NORMAL) * 96 * KIB
    assert t["server_samples"] >= 3, t["server_samples"]
    assert t["server_fds_peak"] >= fds(m0) + SLOW + NORMAL, (t["server_fds_peak"], fds(m0))
    if not SAN:
        assert t["server_rss_peak"] - rss(m0) <= bound, \
            "RSS grew %.1f MiB, bound %.1f MiB" % ((t["server_rss_peak"] - rss(m0)) / MIB, bound / MIB)
    # every descriptor is given back
    assert fds(m1) == fds(m0), (fds(m0), fds(m1))
    assert "the server ended %d sessions as slow_client" % SLOW in out, out


# ---- flood ---------------------------------------------------------------

FLOOD, FNORMAL = (2, 10) if SAN else (4, 20)
FACTOR = 10
RATE = 64000                # the default ASR_MAX_AUDIO_RATE_BYTES_PER_SEC at 16 kHz
CHUNK = 3200                # 100 ms at 16 kHz


def run_flood(srv, seconds):
    return run_load(srv, "--scenario", "flood", "--sessions", FLOOD + FNORMAL, "--flood-sessions", FLOOD,
                    "--flood-factor", FACTOR, "--duration", seconds, timeout=60)


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_prove_flood_rate_limited_others_unharmed(start_server):
    """FLOOD sessions at 10x real time beside FNORMAL: what passes the
    token bucket (2 s of burst, then twice real time) is accepted, the rest
    is refused RATE_LIMITED, every chunk gets its answer, nobody is closed
    (at 10x the bucket lets every 5th chunk through, so at most 4 refusals
    come in a row, below the abuse threshold of 20), and the other sessions
    lose nothing."""
    srv = start_server()
    m0 = srv.metrics()
    seconds = 5
    res, out = run_flood(srv, seconds)
    m1 = settled_metrics(srv, m0)
    t = res["total"]
    assert t["flood_sessions"] == FLOOD, t
    check_normal_lossless(t, FNORMAL)
    assert delta(m0, m1, "partials.dropped") == 0
    # flooders: every chunk answered, accepted or refused
    limited = t["flood_errors"].get("RATE_LIMITED", 0)
    assert set(t["flood_errors"]) == {"RATE_LIMITED"}, t["flood_errors"]
    assert t["flood_missing"] == 0 and t["flood_answers"] == t["flood_chunks"], t
    assert t["flood_partials"] + limited == t["flood_chunks"], t
    # the server refused exactly those, and nothing else
    assert delta(m0, m1, "errors.RATE_LIMITED") == limited == delta(m0, m1, "errors.total"), m1["errors"]
    # the limit: accepted audio <= the bucket (2 s at RATE) + RATE per second
    # streamed (each flooder streams at most `seconds` + one period)
    cap = FLOOD * (2 * RATE + RATE * (seconds + 1)) // CHUNK
    assert t["flood_partials"] <= cap, (t["flood_partials"], cap)
    # 10x sends 5 times what the limit allows: most chunks are refused
    assert limited >= t["flood_chunks"] // 2, (limited, t["flood_chunks"])
    # nobody was closed: no abuse at 10x with the default threshold
    assert t["flood_closed"] == 0 and t["flood_close_codes"] == {"1000": FLOOD}, t["flood_close_codes"]
    assert delta(m0, m1, "sessions.ended.policy") == 0
    assert delta(m0, m1, "close_codes.1000") == FLOOD + FNORMAL
    assert "flooders      %d sessions at 10.0x real time" % FLOOD in out, out


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_prove_flood_abuse_closed_1008(start_server):
    """With ASR_RATE_ABUSE_THRESHOLD=3 the same flood breaks the limit 4
    times in a row once the bucket is empty (~0.6 s in): every flooder is
    closed 1008 (ended as policy), after its refusals were answered; the
    other sessions lose nothing."""
    srv = start_server(ASR_RATE_ABUSE_THRESHOLD=3)
    m0 = srv.metrics()
    res, out = run_flood(srv, 4)
    m1 = settled_metrics(srv, m0)
    t = res["total"]
    assert t["flood_sessions"] == FLOOD, t
    check_normal_lossless(t, FNORMAL)
    assert t["flood_closed"] == FLOOD, t
    assert t["flood_close_codes"] == {"1008": FLOOD}, t["flood_close_codes"]
    assert delta(m0, m1, "sessions.ended.policy") == FLOOD, m1["sessions"]["ended"]
    assert delta(m0, m1, "close_codes.1008") == FLOOD, m1["close_codes"]
    assert delta(m0, m1, "close_codes.1000") == FNORMAL, m1["close_codes"]
    assert t["server"]["delta"]["policy_closes"] == FLOOD
    # each was refused at least the threshold's worth before the close
    assert t["flood_errors"].get("RATE_LIMITED", 0) >= 3 * FLOOD, t["flood_errors"]
    assert delta(m0, m1, "errors.RATE_LIMITED") == t["flood_errors"]["RATE_LIMITED"]


# ---- churn ---------------------------------------------------------------

CHURN_RATE, CHURN_S = (40, 10) if SAN else (100, 10)


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_prove_churn_no_fd_or_rss_growth(start_server):
    """Two rounds of ~CHURN_RATE x CHURN_S sessions (connect, `session`, a
    few chunks, stop, final, close; ~0.3 s each) against one server. After
    each round the server is back to its fds exactly; RSS after the second
    round is within 1 MiB of RSS after the first (what one round leaves is
    reused by the next, nothing accumulates), and the first round leaves at
    most 8 MiB (allocator high-water mark of ~CHURN_RATE/3 concurrent sessions)."""
    srv = start_server()
    m0 = srv.metrics()
    after = []
    for rnd in range(2):
        mb = srv.metrics()
        res, out = run_load(srv, "--scenario", "churn", "--sessions", 100, "--churn-rate", CHURN_RATE,
                            "--churn-life", 0.3, "--duration", CHURN_S, timeout=60)
        ma = settled_metrics(srv, mb)
        t = res["total"]
        n = t["sessions_opened"]
        # the rate was kept: ~CHURN_RATE a second
        assert n >= 0.9 * CHURN_RATE * CHURN_S, (rnd, n)
        assert t["connect_failures"] == 0, t["connect_errors"]
        assert t["sessions_completed"] == n == delta(mb, ma, "sessions.total"), t["close_codes"]
        assert delta(mb, ma, "close_codes.1000") == n
        assert t["missing"] == 0, t
        assert h.metric(ma, "sessions.active") == h.metric(m0, "sessions.active") == 0
        assert fds(ma) == fds(mb) == fds(m0), (rnd, fds(m0), fds(mb), fds(ma))
        assert t["server"]["after"]["open_fds"] == t["server"]["before"]["open_fds"], t["server"]
        after.append(rss(ma))
    if SAN:
        return
    assert after[0] - rss(m0) <= 8 * MIB, "first round left %.1f MiB" % ((after[0] - rss(m0)) / MIB)
    assert after[1] - after[0] <= 1 * MIB, \
        "RSS grew %.2f MiB from round 1 to round 2" % ((after[1] - after[0]) / MIB)
