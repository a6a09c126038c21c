"""Dead and stuck peers are found by ping and pong (docs/API.md "Ping and
pong"): the server pings every ASR_PING_INTERVAL_S and takes a pong missing
ASR_PING_TIMEOUT_S after its ping for a dead or stuck peer. The connection
is dropped and the session is detached, resumable, so both cases are found
within interval + timeout of the peer's last pong.

Before the pings, a client that stopped reading was found only when the
kernel buffers filled (about 55 s with the small partials; one with a
default receive buffer was not closed in 110 s), and one that vanished
without a FIN only by the idle timeout (300 s)."""
import asyncio
import json
import socket
import time

import pytest

import asrd_harness as h
import netns_cluster as nc
from asrd_harness import WS, arun

PING_I, PING_T = 1, 1
BOUND = PING_I + PING_T
SLACK = 1.0 * h.WRAP_SLOW           # a loop tick, the poll, a busy machine


def ping_env(**extra):
    env = {"ASR_PING_INTERVAL_S": PING_I, "ASR_PING_TIMEOUT_S": PING_T, "ASR_MOCK_LATENCY_MS": 20}
    env.update(extra)
    return env


def test_live_idle_client_answering_pings_is_kept(start_server):
    """A client that sends nothing but answers pings (every WebSocket
    library does) stays connected for several intervals."""
    srv = start_server(**ping_env())

    async def go():
        w, s = await WS.open_session(srv.stream_url)
        await asyncio.sleep(4 * BOUND)
        await w.send_bytes(h.chunks_of(h.speech_pcm())[0])
        await w.answers(1)
        await w.stop()
        assert w.close_code == 1000
    arun(go(), 30)
    m = srv.metrics()
    assert h.metric(m, "liveness.pings") >= 4, m["liveness"]
    assert h.metric(m, "liveness.pongs") >= 4, m["liveness"]
    assert h.metric(m, "liveness.ping_timeouts") == 0


class StuckReader:
    """A raw WebSocket client: it answers pings while it reads, then stops
    reading (a stuck reader thread) but keeps sending audio."""

    def __init__(self, port, rcvbuf=None):
        self.c = h.raw_ws_connect(port, rcvbuf=rcvbuf)
        self.msgs, self.pongs = [], 0
        self.buf = self.c.buf
        self.c.sock.settimeout(0.05)

    def pump(self, seconds, chunk=None):
        """Reads (answering pings) for seconds, sending chunk every 100 ms."""
        end = time.monotonic() + seconds
        next_send = 0
        while time.monotonic() < end:
            if chunk is not None and time.monotonic() >= next_send:
                self.c.sock.sendall(h.ws_frame(chunk))
                next_send = time.monotonic() + 0.1
            try:
                d = self.c.sock.recv(65536)
            except socket.timeout:
                continue
            if not d:
                raise EOFError("closed while reading")
            self.buf += d
            frames, self.buf = h.ws_parse_frames(self.buf)
            for op, payload in frames:
                if op == 0x9:
                    self.c.sock.sendall(h.ws_frame(payload, opcode=0xA))
                    self.pongs += 1
                elif op == 0x1:
                    self.msgs.append(json.loads(payload))

    def send_only(self, seconds, chunk, stop):
        """Sends a chunk every 100 ms, reads nothing, until stop() or the
        connection fails; returns the time it failed (or None)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end and not stop():
            try:
                self.c.sock.sendall(h.ws_frame(chunk))
            except OSError:
                return time.monotonic()
            time.sleep(0.1)
        return None


@pytest.mark.parametrize("rcvbuf", [4096, None], ids=["small_rcvbuf", "default_rcvbuf"])
def test_client_that_stops_reading_is_dropped_within_the_bound_and_resumes(start_server, rcvbuf):
    srv = start_server(**ping_env())
    chunk = h.chunks_of(h.speech_pcm())[0]
    cl = StuckReader(srv.port, rcvbuf)
    cl.pump(2.5, chunk)                      # reads and answers: kept
    session = cl.msgs[0]
    assert session["type"] == "session", cl.msgs[:2]
    assert cl.pongs >= 1
    assert h.metric(srv.metrics(), "liveness.ping_timeouts") == 0
    t_stop = time.monotonic()                # its last pong was sent before this
    found = {}

    def detected():
        if h.metric(srv.metrics(), "liveness.ping_timeouts") == 1:
            found.setdefault("t", time.monotonic())
            return True
        return False
    cl.send_only(BOUND + 10, chunk, detected)   # keeps sending: inbound audio does not hide it
    assert "t" in found, "a client that stopped reading was not dropped in %d s" % (BOUND + 10)
    took = found["t"] - t_stop
    print("stuck reader (rcvbuf %s) dropped %.2f s after it stopped reading (bound %d s)" % (rcvbuf, took, BOUND))
    assert took <= BOUND + SLACK, took
    cl.c.close()
    lines = srv.log_lines()
    assert any(l.get("msg") == "peer not answering pings" for l in lines)
    assert any(l.get("msg") == "session detached" and l.get("session_id") == session["session_id"] for l in lines)

    async def resume():
        w, s = await WS.open_session(srv.stream_url, "?session_id=" + session["session_id"])
        assert s["resumed"] is True, s
        await w.stop()
    arun(resume(), 20)


NETNS = nc.unavailable()


@pytest.mark.skipif(NETNS is not None, reason=NETNS or "")
@pytest.mark.timeout(90)
def test_client_that_vanishes_without_a_fin_is_dropped_within_the_bound(start_server):
    """The server runs in a network namespace behind a link the test cuts:
    the client's packets stop, with no FIN and no RST. The server finds the
    dead peer from the missing pong and keeps the session resumable; once
    the link is back the client resumes it."""
    cl = nc.Cluster(n_asrd=1, running=0)
    try:
        cl.build()
        host = cl.asrd_hosts[0]
        host.start_asrd(ASR_REDIS_URL="memory", ASR_STORE_REQUIRED=0, **ping_env())
        url = "ws://%s:%d/v1/transcribe/stream" % (host.ip, nc.ASRD_PORT)
        chunk = h.chunks_of(h.speech_pcm())[0]

        async def go():
            w, s = await WS.open_session(url)
            await w.send_bytes(chunk)
            await w.answers(1)
            await asyncio.sleep(1.5)                  # pings answered meanwhile
            host.cut()
            t_cut = time.time()
            deadline = time.monotonic() + BOUND + 10
            found = None
            while time.monotonic() < deadline and found is None:
                await asyncio.sleep(0.1)
                for l in host.log_lines():
                    if l.get("msg") == "session detached" and l.get("session_id") == s["session_id"]:
                        found = l
            assert found, "the vanished client's session was not detached in %d s" % (BOUND + 10)
            # the log line's wall clock: when the server let the connection go
            ts = found["ts"]
            detached = time.mktime(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone \
                + float("0" + ts[19:23])
            took = detached - t_cut
            w.abort()
            host.restore()
            w2, s2 = await WS.open_session(url, "?session_id=" + s["session_id"])
            assert s2["resumed"] is True and s2["last_sequence"] == 1, s2
            await w2.stop()
            return took

        took = arun(go(), 60)
        print("vanished client dropped %.2f s after the link was cut (bound %d s)" % (took, BOUND))
        assert took <= BOUND + SLACK, took
        m = host.metrics()
        assert h.metric(m, "liveness.ping_timeouts") == 1
        assert any(l.get("msg") == "peer not answering pings" for l in host.log_lines())
    finally:
        cl.destroy()
