"""Start-up configuration: bad settings exit 2 naming the variable; --help."""
import subprocess

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
