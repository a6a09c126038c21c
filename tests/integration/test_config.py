"""Start-up configuration: bad settings exit 2 naming the variable; --help;
start-up refuses what cannot work (unknown engine or variable, no
redis-server for the default store, workers that cannot start)."""
import os
import subprocess
import tempfile
import time

import pytest

import asrd_harness as h


def run_bin(args=(), env=None, timeout=10):
    e = {"ASR_HOST": "127.0.0.1", "ASR_PORT": str(h.free_port())}
    e.update(env or {})
    try:
        p = subprocess.run([h.asrd_bin()] + list(args), env=h.base_env(e),
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError("asrd %r with %r still running after %d s" % (args, env, timeout))
    out = p.stdout.decode("utf-8", "replace")
    err = p.stderr.decode("utf-8", "replace")
    h.check_sanitizer_output(err, "asrd %r" % (args,))
    return p.returncode, out, err


@pytest.mark.parametrize("name,value", [
    ("ASR_PORT", "70000"),
    ("ASR_PORT", "abc"),
    ("ASR_VAD_MODE", "9"),
    ("ASR_VAD_FRAME_MS", "25"),
    ("ASR_MOCK_ERROR_RATE", "1.5"),
    ("ASR_ENDPOINTING_MS", "-1"),
    ("ASR_LOG_LEVEL", "loud"),
    ("ASR_WORKERS", "-1"),
    ("ASR_REDIS_URL", "http://127.0.0.1:6379"),
    ("ASR_REDIS_URL", "redis://127.0.0.1:99999"),
    ("ASR_MAX_CONNECTIONS_PER_IP", "x"),
])
def test_bad_setting_exits_2(name, value):
    rc, out, err = run_bin(env={name: value})
    assert rc == 2, "%s=%s: exit %r, stderr %r" % (name, value, rc, err[-500:])
    assert name in err, "stderr does not name %s: %r" % (name, err[-500:])


def test_help():
    rc, out, err = run_bin(["--help"])
    assert rc == 0, (rc, err[-500:])
    for name in ("ASR_PORT", "ASR_HOST", "ASR_MOCK_LATENCY_MS", "ASR_ENDPOINTING_MS",
                 "ASR_IDLE_TIMEOUT_S", "ASR_MAX_CHUNK_BYTES", "ASR_API_KEYS"):
        assert name in out, "--help does not list %s:\n%s" % (name, out[:2000])


def test_port_in_use_fails(start_server):
    srv = start_server()
    rc, out, err = run_bin(env={"ASR_PORT": str(srv.port)})
    assert rc != 0, "a second server started on a port in use"
    assert srv.health()["status"] == "ok"


# ---------------------------------------------------------------------------
# start-up refuses what cannot work


def run_instance(env, timeout=30):
    """Runs asrd with its own runtime directory; returns (rc, stderr,
    seconds, runtime dir)."""
    rt = tempfile.mkdtemp(prefix="rt-", dir=h.log_dir())
    e = {"ASR_RUNTIME_DIR": rt}
    e.update(env)
    t0 = time.monotonic()
    rc, out, err = run_bin(env=e, timeout=timeout)
    return rc, err, time.monotonic() - t0, rt


def assert_nothing_left(rt):
    h.poll(lambda: not h.store_pids(rt), 5, desc="no redis-server left")
    assert os.listdir(rt) == [], "left in the runtime directory: %r" % os.listdir(rt)


def test_unknown_engine_exits_2():
    rc, err, took, rt = run_instance({"ASR_ENGINE": "whisper"})
    assert rc == 2, (rc, err[-500:])
    assert 'ASR_ENGINE: unknown engine "whisper", allowed mock' in err, err[-500:]
    assert_nothing_left(rt)


def test_engine_not_built_in_exits_2():
    rc, err, took, rt = run_instance({"ASR_ENGINE": "pocketsphinx"})
    assert rc == 2, (rc, err[-500:])
    assert "ASR_ENGINE" in err and "not built into this binary" in err, err[-500:]


@pytest.mark.parametrize("name,hint", [
    ("ASR_API_KEY", "ASR_API_KEYS"),
    ("ASR_WORKER", "ASR_WORKERS"),
    ("ASR_PROT", "ASR_PORT"),
    ("ASR_MAX_SESSIONS", "ASR_MAX_SESSIONS_PER_WORKER"),
    ("ASR_NO_SUCH_THING", None),
])
def test_unknown_variable_exits_2_naming_it(name, hint):
    rc, out, err = run_bin(env={name: "1"})
    assert rc == 2, (rc, err[-500:])
    if hint:
        assert "%s is not a setting; did you mean %s?" % (name, hint) in err, err[-500:]
    else:
        assert "%s is not a setting (asrd --help lists them)" % name in err, err[-500:]


def test_memory_store_needs_one_worker():
    for workers in ("0", "2"):
        rc, out, err = run_bin(env={"ASR_REDIS_URL": "memory", "ASR_WORKERS": workers})
        assert rc == 2, (workers, rc, err[-500:])
        assert "ASR_REDIS_URL=memory" in err and "ASR_WORKERS=1" in err, err[-500:]


def test_missing_redis_server_exits_2_telling_how_to_run():
    rc, err, took, rt = run_instance({"ASR_REDIS_SERVER": "/nonexistent/redis-server"})
    assert rc == 2, (rc, err[-500:])
    for words in ("/nonexistent/redis-server", "apt-get install redis-server", "ASR_REDIS_URL=memory",
                  "ASR_WORKERS=1"):
        assert words in err, (words, err[-800:])


def test_redis_server_that_does_not_start_exits_1():
    rc, err, took, rt = run_instance({"ASR_REDIS_SERVER": "/bin/false"})
    assert rc == 1, (rc, err[-500:])
    assert "stopped at start: exit status 1" in err, err[-500:]
    assert_nothing_left(rt)


def test_engine_load_failure_stops_start_up_with_2():
    """A worker that exits 2 before it listens reported a configuration
    error: the master stops everything and exits 2 instead of restarting."""
    rc, err, took, rt = run_instance({"ASR_WORKERS": "2", "ASR_MOCK_LOAD_FAIL": "error"})
    assert rc == 2, (rc, err[-800:])
    assert 'engine "mock" failed to load' in err, err[-800:]
    assert "a configuration error" in err, err[-800:]
    assert err.count("worker started") <= 2, "a worker was restarted:\n" + err[-2000:]
    assert took < 10, took
    assert_nothing_left(rt)


@pytest.mark.timeout(60)
def test_crash_looping_workers_make_the_master_give_up():
    """Workers killed while loading, every time: the master gives up after
    5 deaths in a row of one slot (about 1.5 s of backoff) and exits 1."""
    rc, err, took, rt = run_instance({"ASR_WORKERS": "2", "ASR_MOCK_LOAD_FAIL": "crash"}, timeout=40)
    assert rc == 1, (rc, err[-800:])
    assert "died 5 times in a row before they listened (last: signal 9); giving up" in err, err[-800:]
    assert took < 15, "giving up took %.1f s" % took
    assert_nothing_left(rt)
