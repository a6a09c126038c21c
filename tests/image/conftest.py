"""Fixtures of the container image test (tests/image, `make image-test`).

The image is built before pytest runs (tests/image/run.sh); the tests only
run it. A hard per-test deadline as in tests/integration (Debian's pytest
has no pytest-timeout), and every container started is removed at teardown
whatever happened.
"""
import os
import signal
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))

DEFAULT_TEST_TIMEOUT = 120


def pytest_configure(config):
    config.addinivalue_line("markers", "timeout(seconds): per-test deadline (default 120)")


class TestTimeout(Exception):
    pass


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
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
