"""Fixtures of the asrd integration suite.

- `server`: one asrd shared by the tests of a module, ASR_MOCK_LATENCY_MS=20.
- `start_server(**env)`: starts a server with its own settings for one test.
Every server is stopped with SIGTERM at teardown; it must exit 0 within 10 s
and (ASan builds) leave no sanitizer report on stderr.
"""
import signal

import pytest

import asrd_harness as h

DEFAULT_TEST_TIMEOUT = 120


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than a few seconds")
    config.addinivalue_line("markers", "needs_redis: needs a throwaway redis-server")
    config.addinivalue_line("markers", "timeout(seconds): per-test deadline (default 120)")


class TestTimeout(Exception):
    pass


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    """A hard per-test deadline (no pytest-timeout in Debian's pytest)."""
    m = item.get_closest_marker("timeout")
    secs = m.args[0] if m else DEFAULT_TEST_TIMEOUT

    def on_alarm(signum, frame):
        raise TestTimeout("test exceeded %s s" % secs)

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, secs)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="session", autouse=True)
def audio():
    h.ensure_audio()


@pytest.fixture(scope="module")
def server():
    srv = h.Server({"ASR_MOCK_LATENCY_MS": 20}, name="shared").start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def start_server():
    started = []

    def start(**env):
        env.setdefault("ASR_MOCK_LATENCY_MS", 20)
        srv = h.Server(env, name="own").start()
        started.append(srv)
        return srv

    yield start
    errors = []
    for srv in started:
        try:
            srv.stop()
        except AssertionError as e:
            errors.append(str(e))
    assert not errors, "\n".join(errors)
