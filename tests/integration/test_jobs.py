"""Jobs (docs/API.md "Jobs"): submit, poll and results in every format,
progress events, cancel and purge, batches, URL audio, the callback
shorthand, deduplication and the result cache, Idempotency-Key, signed
webhooks with retries, rate and queue limits, expiry, a worker killed while
it runs a job, Redis restarted with AOF under a queue, and a worker retired
after N jobs. Servers use the mock engine; the queue is the private
redis-server unless a test starts its own Redis."""
import concurrent.futures
import json
import os
import signal
import socket
import subprocess
import time

import pytest
import requests

import asrd_harness as h
import jobs_util as ju

T = 30


@pytest.fixture
def receiver():
    r = ju.Receiver()
    yield r
    r.close()


@pytest.fixture
def aof_redis():
    r = ju.AofRedis().start()
    yield r
    r.cleanup()


def test_submit_poll_and_result_in_every_format(start_server):
    srv = start_server(ASR_WORKERS=2)
    body = h.read_bytes("conversation16k.wav")
    r = ju.submit(srv, body, headers={"X-Request-Id": "job-test-1"})
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["Location"] == "/v1/jobs/" + job["id"]
    assert job["status"] == "queued" and len(job["id"]) == 32
    assert job["content_hash"].startswith("sha256:") and len(job["content_hash"]) == 7 + 64
    assert job["created_at"].endswith("Z") and job["request_id"] == "job-test-1"
    # no result yet (or already: the mock is quick): 409 until it is there
    r = requests.get(srv.http + "/v1/jobs/%s/result" % job["id"], timeout=T)
    assert r.status_code in (200, 409), r.text
    if r.status_code == 409:
        assert r.json()["error"]["code"] == "JOB_NOT_COMPLETED"
    done = ju.wait_final(srv, job["id"])
    assert done["status"] == "completed", done
    assert done["attempts"] == 1 and done["progress"] == 1.0
    assert done["started_at"] and done["finished_at"] and done["run_ms"] >= 0 and done["wait_ms"] >= 0
    res = done["result"]
    assert res["text"] and len(res["segments"]) >= 3, res  # four sentences with pauses
    # the same transcript as POST /v1/transcribe gives
    sync = requests.post(srv.http + "/v1/transcribe", data=body, headers={"Content-Type": "audio/wav"}, timeout=T).json()
    assert sync == res
    assert res["input"] == {"truncated": False, "declared_ms": res["duration_ms"], "trailing_bytes": 0}, res
    base = srv.http + "/v1/jobs/%s/result" % job["id"]
    r = requests.get(base, timeout=T)
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json" and r.json() == res
    r = requests.get(base + "?format=text", timeout=T)
    assert r.headers["Content-Type"].startswith("text/plain") and r.text == res["text"] + "\n"
    r = requests.get(base + "?format=srt", timeout=T)
    assert r.headers["Content-Type"].startswith("application/x-subrip")
    cues = [c for c in r.text.strip().split("\n\n") if c]
    assert len(cues) == len(res["segments"])
    assert cues[0].split("\n")[0] == "1" and " --> " in cues[0].split("\n")[1] and "," in cues[0].split("\n")[1]
    r = requests.get(base + "?format=vtt", timeout=T)
    assert r.text.startswith("WEBVTT\n\n") and r.headers["Content-Type"].startswith("text/vtt")
    r = requests.get(base + "?format=verbose_json", timeout=T)
    vj = r.json()
    assert vj["task"] == "transcribe" and vj["text"] == res["text"] and len(vj["segments"]) == len(res["segments"])
    assert abs(vj["duration"] - res["duration_ms"] / 1000.0) < 0.002
    r = requests.get(base + "?format=docx", timeout=T)
    assert r.status_code == 400
    # two workers: the other's figures are up to a second old
    m = h.poll(lambda: (lambda m: m if m["submitted"] == 1 and m["runs"]["completed"] == 1 else None)(
        ju.metrics_jobs(srv)), 3, desc="the figures of both workers")
    assert m["new_runs"] == 1 and m["runs"]["real_time_factor"] > 0


def test_word_times_and_segment_granularity(start_server):
    srv = start_server(ASR_ENGINE="mock-windowed")
    body = h.read_bytes("speech16k.wav")
    words = ju.wait_final(srv, ju.submit(srv, body).json()["id"])
    seg = ju.wait_final(srv, ju.submit(srv, body, params={"granularity": "segment"}).json()["id"])
    assert words["content_hash"] != seg["content_hash"]  # granularity changes the output: another run
    assert seg["options"]["granularity"] == "segment"
    assert all("words" not in s for s in seg["result"]["segments"])
    if any("words" in s for s in words["result"]["segments"]):
        r = requests.get(srv.http + "/v1/jobs/%s/result?format=verbose_json" % words["id"], timeout=T)
        assert "words" in r.json()


def test_progress_as_server_sent_events(start_server):
    srv = start_server(ASR_MOCK_LATENCY_MS=400)
    body = ju.distinct_wav(0, seconds=60)
    job = ju.submit(srv, body).json()
    events = []
    with requests.get(srv.http + "/v1/jobs/%s/events" % job["id"], stream=True, timeout=T) as r:
        assert r.status_code == 200 and r.headers["Content-Type"] == "text/event-stream"
        ev = None
        for line in r.iter_lines(decode_unicode=True):
            if line.startswith("event: "):
                ev = line[7:]
            elif line.startswith("data: "):
                events.append((ev, json.loads(line[6:])))
    kinds = [e for e, _ in events]
    assert kinds[-1] == "completed", kinds
    assert "processing" in kinds, kinds
    progress = [d["progress"] for e, d in events if e == "processing"]
    assert progress == sorted(progress) and max(progress) > 0, progress
    assert "result" in events[-1][1] and "result" not in events[0][1]
    # a finished job: one event, then the end
    with requests.get(srv.http + "/v1/jobs/%s/events" % job["id"], stream=True, timeout=T) as r:
        lines = [l for l in r.iter_lines(decode_unicode=True) if l.startswith("event: ")]
    assert lines == ["event: completed"]
    assert requests.get(srv.http + "/v1/jobs/%s/events" % ("0" * 32), timeout=T).status_code == 404


def test_refusals_and_unknown_jobs(start_server):
    srv = start_server()
    r = ju.submit(srv, b"")
    h.assert_json_error(h.RawResponse(r.status_code, "", {}, r.content), 400, "BAD_REQUEST")
    r = ju.submit(srv, b"hello, not audio", ctype="audio/wav")
    assert r.status_code == 415 and r.json()["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
    r = ju.submit(srv, h.speech_pcm(), ctype="audio/pcm")
    assert r.status_code == 400 and "rate" in r.json()["error"]["message"]
    r = ju.submit(srv, h.read_bytes("speech16k.wav"), params={"granularity": "words"})
    assert r.status_code == 400 and "granularity" in r.json()["error"]["message"]
    r = ju.submit(srv, h.read_bytes("speech16k.wav"), params={"callback": "ftp://x/y"})
    assert r.status_code == 400
    r = ju.submit(srv, b'{"url":"http://a/b","model":"x"}', ctype="application/json")
    assert r.status_code == 400 and "model" in r.json()["error"]["message"]
    for path in ("/v1/jobs/" + "0" * 32, "/v1/jobs/" + "0" * 32 + "/result", "/v1/jobs/nothex", "/v1/jobs/x/y/z"):
        r = requests.get(srv.http + path, timeout=T)
        assert r.status_code == 404 and r.json()["error"]["code"] == "JOB_NOT_FOUND", (path, r.text)
    assert requests.delete(srv.http + "/v1/jobs/" + "0" * 32, timeout=T).status_code == 404
    r = requests.put(srv.http + "/v1/jobs/" + "0" * 32, timeout=T)
    assert r.status_code == 405 and r.headers["Allow"] == "GET, HEAD, DELETE"
    r = requests.get(srv.http + "/v1/jobs", timeout=T)
    assert r.status_code == 405 and r.headers["Allow"] == "POST"


def test_api_keys_and_owners(start_server):
    srv = start_server(ASR_API_KEYS="alpha,beta")
    body = h.read_bytes("speech16k.wav")
    assert ju.submit(srv, body).status_code == 401
    a = {"Authorization": "Bearer alpha"}
    job = ju.submit(srv, body, headers=a).json()
    ju.wait_final(srv, job["id"], headers=a)
    assert ju.get(srv, job["id"], {"X-API-Key": "beta"}).status_code == 404  # another key's job
    assert ju.get(srv, job["id"]).status_code == 401
    assert ju.get(srv, job["id"], {"X-API-Key": "alpha"}).status_code == 200


def test_memory_store_has_no_jobs(start_server):
    srv = start_server(ASR_REDIS_URL="memory")
    r = ju.submit(srv, h.read_bytes("speech16k.wav"))
    assert r.status_code == 503 and r.json()["error"]["code"] == "JOBS_UNAVAILABLE"


def redis_keys(port, pattern):
    """KEYS pattern of the Redis on port (redis-cli)."""
    r = subprocess.run(["redis-cli", "-p", str(port), "--raw", "KEYS", pattern], capture_output=True, text=True,
                       timeout=10)
    return [k for k in r.stdout.split() if k]


@pytest.mark.parametrize("sessions", ["memory", "private"])
def test_job_queue_on_a_redis_of_its_own(aof_redis, start_server, sessions):
    env = {"ASR_JOB_REDIS_URL": aof_redis.url}
    if sessions == "memory":
        env.update(ASR_REDIS_URL="memory", ASR_WORKERS=1)
    srv = start_server(**env)
    job = ju.submit(srv, h.read_bytes("speech16k.wav")).json()
    done = ju.wait_final(srv, job["id"])
    assert done["status"] == "completed" and done["result"]["text"], done
    assert redis_keys(aof_redis.port, "asrd:job:*") == ["asrd:job:" + job["id"]]
    # a stream on the same instance works, its session kept apart from the jobs' Redis

    async def stream():
        w, _ = await h.WS.open_session(srv.stream_url)
        await w.send_bytes(h.read_bytes("speech16k.pcm")[:3200])
        await w.until(lambda m: m["type"] == "partial")
        assert redis_keys(aof_redis.port, "asrd:session:*") == []
        await w.conn.close()
    h.arun(stream())


def test_cancel_a_queued_job_then_purge(start_server):
    srv = start_server(ASR_JOB_CONCURRENCY=0)  # nobody runs jobs: they stay queued
    job = ju.submit(srv, h.read_bytes("speech16k.wav")).json()
    assert ju.get(srv, job["id"]).json()["status"] == "queued"
    r = requests.delete(srv.http + "/v1/jobs/" + job["id"], timeout=T)
    assert r.status_code == 200 and r.json()["status"] == "canceled"
    v = ju.get(srv, job["id"]).json()
    assert v["status"] == "canceled" and v["finished_at"]
    assert requests.get(srv.http + "/v1/jobs/%s/result" % job["id"], timeout=T).status_code == 409
    h.poll(lambda: ju.metrics_jobs(srv)["queue"]["depth"] == 0 and ju.metrics_jobs(srv)["queue"]["spool_bytes"] == 0,
           5, desc="queue empty after the cancel")
    r = requests.delete(srv.http + "/v1/jobs/" + job["id"], timeout=T)
    assert r.status_code == 200 and r.json() == {"id": job["id"], "purged": True}
    assert ju.get(srv, job["id"]).status_code == 404


def test_cancel_a_running_job(start_server):
    srv = start_server(ASR_MOCK_LATENCY_MS=500)
    job = ju.submit(srv, ju.distinct_wav(1, seconds=90)).json()
    h.poll(lambda: ju.get(srv, job["id"]).json()["status"] == "processing", 10, desc="processing")
    r = requests.delete(srv.http + "/v1/jobs/" + job["id"], timeout=T)
    assert r.status_code == 200 and r.json()["status"] == "canceled"
    h.poll(lambda: ju.metrics_jobs(srv)["runs"]["abandoned"] == 1, 10, desc="the run stopped")
    assert ju.metrics_jobs(srv)["running"] == 0
    assert ju.get(srv, job["id"]).json()["status"] == "canceled"


def test_expiry(start_server):
    srv = start_server(ASR_JOB_TTL_S=2)
    job = ju.submit(srv, h.read_bytes("speech16k.wav")).json()
    assert ju.wait_final(srv, job["id"])["status"] == "completed"
    time.sleep(3.0)
    assert ju.get(srv, job["id"]).status_code == 404
    assert requests.get(srv.http + "/v1/jobs/%s/result" % job["id"], timeout=T).status_code == 404


def test_100_identical_submissions_make_one_engine_run(start_server):
    srv = start_server(ASR_WORKERS=2, ASR_MOCK_LATENCY_MS=100)
    body = ju.distinct_wav(2, seconds=20)

    retried = []

    def one(_):
        # as a client should: a 503 with Retry-After is sent again (a
        # loaded host, e.g. under the sanitizers, can make Redis miss the
        # queue's deadline for a burst)
        for _ in range(10):
            r = ju.submit(srv, body)
            if r.status_code != 503 or "Retry-After" not in r.headers:
                return r
            retried.append(r.json()["error"]["code"])
            time.sleep(float(r.headers["Retry-After"]))
        return r

    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as ex:
        answers = list(ex.map(one, range(100)))
    assert all(r.status_code in (200, 202) for r in answers), [r.status_code for r in answers]
    assert set(retried) <= {"JOBS_UNAVAILABLE"}, retried
    ids = [r.json()["id"] for r in answers]
    assert len(set(ids)) == 100
    finals = [ju.wait_final(srv, i) for i in ids]
    assert all(f["status"] == "completed" for f in finals)
    assert all(f["result"] == finals[0]["result"] for f in finals)
    assert sum(f["deduplicated"] or f["cached"] for f in finals) == 99
    time.sleep(1.2)  # the other worker's figures are published each second
    m = ju.metrics_jobs(srv)
    assert m["runs"]["completed"] == 1, m["runs"]
    # a submission whose answer came after the deadline may have joined too
    # before its retry: exactly 99 joins without retries, no fewer with them
    joins = m["dedup_joins"] + m["cache"]["hits"]
    assert m["new_runs"] == 1 and (joins == 99 if not retried else 99 <= joins <= 99 + len(retried)), (m, retried)
    # later: the cache answers at once, 200 and completed
    r = ju.submit(srv, body)
    assert r.status_code == 200 and r.json()["status"] == "completed" and r.json()["cached"] is True


def test_idempotency_key_replay_and_conflict(start_server):
    srv = start_server()
    body = h.read_bytes("speech16k.wav")
    k = {"Idempotency-Key": "order-4712"}
    first = ju.submit(srv, body, headers=k)
    assert first.status_code == 202
    again = ju.submit(srv, body, headers=k)
    assert again.status_code == 200 and again.headers.get("Idempotent-Replayed") == "true"
    assert again.json()["id"] == first.json()["id"]
    other = ju.submit(srv, ju.distinct_wav(3), headers=k)
    assert other.status_code == 422 and other.json()["error"]["code"] == "IDEMPOTENCY_CONFLICT"
    opts = ju.submit(srv, body, params={"metadata": "x"}, headers=k)  # same audio, other options
    assert opts.status_code == 422
    m = ju.metrics_jobs(srv)
    assert m["idempotent_replays"] == 1 and m["idempotency_conflicts"] == 2 and m["submitted"] == 1


def test_batch_of_five_files(start_server):
    srv = start_server()
    files = [("file", ("f%d.wav" % i, ju.distinct_wav(10 + i), "audio/wav")) for i in range(5)]
    r = requests.post(srv.http + "/v1/jobs", files=files, data={"granularity": "segment"}, timeout=T)
    assert r.status_code == 202, r.text
    b = r.json()
    assert r.headers["Location"] == "/v1/batches/" + b["id"]
    assert b["total"] == 5 and len(b["jobs"]) == 5
    assert all(j["batch_id"] == b["id"] and j["options"]["granularity"] == "segment" for j in b["jobs"])

    def done():
        g = requests.get(srv.http + "/v1/batches/" + b["id"], timeout=T).json()
        return g if g["done"] else None

    g = h.poll(done, 20, desc="batch done")
    assert g["total"] == 5 and g["counts"]["completed"] == 5, g
    assert [j["id"] for j in g["jobs"]] == [j["id"] for j in b["jobs"]]
    bad = requests.post(srv.http + "/v1/jobs", files=[("file", ("a.wav", b"not audio", "audio/wav"))], timeout=T)
    assert bad.status_code == 415 and "file 0" in bad.json()["error"]["message"]
    bad = requests.post(srv.http + "/v1/jobs", files=[("nofile", ("a.wav", b"x", "audio/wav"))], timeout=T)
    assert bad.status_code == 400


def test_url_audio(start_server, receiver):
    receiver.files["a.wav"] = h.read_bytes("speech16k.wav")
    srv = start_server(ASR_OUTBOUND_ALLOW_PRIVATE=1)
    body = json.dumps({"url": receiver.url("/audio/a.wav")})
    r = ju.submit(srv, body, ctype="application/json")
    assert r.status_code == 202 and r.json()["content_hash"] is None, r.text
    done = ju.wait_final(srv, r.json()["id"])
    assert done["status"] == "completed" and done["content_hash"], done
    # the same bytes uploaded: the cache that run filled answers
    up = ju.submit(srv, h.read_bytes("speech16k.wav")).json()
    assert up["status"] == "completed" and up["cached"] and up["content_hash"] == done["content_hash"]
    missing = ju.wait_final(srv, ju.submit(srv, json.dumps({"url": receiver.url("/audio/none.wav")}),
                                           ctype="application/json").json()["id"])
    assert missing["status"] == "error" and missing["error"]["code"] == "FETCH_FAILED", missing


def test_url_to_a_private_address_is_refused(start_server, receiver):
    receiver.files["a.wav"] = h.read_bytes("speech16k.wav")
    srv = start_server()
    r = ju.submit(srv, json.dumps({"url": receiver.url("/audio/a.wav")}), ctype="application/json")
    done = ju.wait_final(srv, r.json()["id"])
    assert done["status"] == "error" and done["error"]["code"] == "URL_NOT_ALLOWED", done
    assert ju.metrics_jobs(srv)["fetches"]["refused"] == 1


def test_callback_signed_delivered_once_and_retried_after_a_500(start_server, receiver):
    srv = start_server(ASR_OUTBOUND_ALLOW_PRIVATE=1, ASR_WEBHOOK_SECRET=ju.SECRET, ASR_WEBHOOK_RETRY_MS=200)
    job = ju.submit(srv, h.read_bytes("speech16k.wav"), params={"callback": receiver.url("/fail-once"),
                                                               "metadata": "m-1"}).json()
    h.poll(lambda: len(receiver.posts(job["id"])) >= 2, 10, desc="two attempts")
    time.sleep(1.0)
    posts = receiver.posts(job["id"])
    assert len(posts) == 2, [p[0] for p in posts]
    ids = set()
    for path, hd, body, _ in posts:
        assert hd["content-type"] == "application/json"
        assert ju.verify_signature(hd, body), hd
        assert abs(int(hd["webhook-timestamp"]) - time.time()) < 60
        ids.add(hd["webhook-id"])
        doc = json.loads(body)
        assert doc["type"] == "job.completed" and doc["data"]["status"] == "completed"
        assert doc["data"]["result"]["text"] and doc["data"]["options"]["metadata"] == "m-1"
    assert len(ids) == 1  # the same id on every attempt: the receiver can dedup
    assert posts[1][3] - posts[0][3] >= 0.15  # the retry waited
    v = ju.get(srv, job["id"]).json()
    assert v["webhook"] == {"url": receiver.url("/fail-once"), "status": "delivered", "attempts": 2}
    m = ju.metrics_jobs(srv)["webhooks"]
    assert m["delivered"] == 1 and m["retried"] == 1
    # a wrong secret does not verify
    assert not ju.verify_signature(posts[0][1], posts[0][2], secret="whsec_" + "QUJD")


def test_callback_4xx_stops_retries(start_server, receiver):
    srv = start_server(ASR_OUTBOUND_ALLOW_PRIVATE=1, ASR_WEBHOOK_RETRY_MS=100)
    job = ju.submit(srv, h.read_bytes("speech16k.wav"), params={"callback": receiver.url("/reject")}).json()
    h.poll(lambda: ju.get(srv, job["id"]).json().get("webhook", {}).get("status") == "rejected", 10,
           desc="webhook rejected")
    time.sleep(1.0)
    assert len(receiver.posts(job["id"])) == 1
    assert "webhook-signature" not in receiver.posts(job["id"])[0][1]  # no secret: unsigned
    assert ju.metrics_jobs(srv)["webhooks"]["rejected"] == 1


def test_callback_gives_up_after_max_attempts(start_server, receiver):
    srv = start_server(ASR_OUTBOUND_ALLOW_PRIVATE=1, ASR_WEBHOOK_RETRY_MS=50, ASR_WEBHOOK_MAX_ATTEMPTS=3)
    job = ju.submit(srv, h.read_bytes("speech16k.wav"), params={"callback": receiver.url("/fail")}).json()
    h.poll(lambda: ju.get(srv, job["id"]).json().get("webhook", {}).get("status") == "failed", 10, desc="gave up")
    assert len(receiver.posts(job["id"])) == 3
    m = ju.metrics_jobs(srv)["webhooks"]
    assert m["gave_up"] == 1 and m["retried"] == 2


def test_transcribe_with_callback_is_a_job(start_server, receiver):
    srv = start_server(ASR_OUTBOUND_ALLOW_PRIVATE=1)
    r = requests.post(srv.http + "/v1/transcribe", params={"callback": receiver.url("/ok")},
                      data=h.read_bytes("speech16k.wav"), headers={"Content-Type": "audio/wav"}, timeout=T)
    assert r.status_code == 202 and list(r.json()) == ["request_id"], r.text
    rid = r.json()["request_id"]
    h.poll(lambda: receiver.posts(rid), 10, desc="the callback")
    doc = json.loads(receiver.posts(rid)[0][2])
    assert doc["data"]["id"] == rid and doc["data"]["result"]["text"]
    assert ju.get(srv, rid).json()["status"] == "completed"


def test_rate_limit_429_with_retry_after(start_server):
    srv = start_server(ASR_RATE_PER_IP=1)
    codes = [ju.get(srv, "0" * 32) for _ in range(4)]
    assert [c.status_code for c in codes[:2]] == [404, 404]
    limited = [c for c in codes if c.status_code == 429]
    assert limited, [c.status_code for c in codes]
    assert limited[0].json()["error"]["code"] == "RATE_LIMITED" and int(limited[0].headers["Retry-After"]) >= 1
    time.sleep(1.1)
    assert ju.get(srv, "0" * 32).status_code == 404  # refilled
    assert ju.metrics_jobs(srv)["rate_limited"] >= 1


def test_rate_limit_per_key_is_shared_by_the_workers(start_server):
    srv = start_server(ASR_WORKERS=2, ASR_API_KEYS="k1,k2", ASR_RATE_PER_KEY=2)
    k1, k2 = {"X-API-Key": "k1"}, {"X-API-Key": "k2"}
    codes = []
    for _ in range(8):  # new connections: both workers answer, one bucket in Redis
        codes.append(requests.get(srv.http + "/v1/jobs/" + "0" * 32, headers=dict(k1, Connection="close"),
                                  timeout=T).status_code)
    assert codes.count(404) == 4 and codes.count(429) == 4, codes
    assert ju.get(srv, "0" * 32, k2).status_code == 404  # another key has its own bucket


def test_queue_full_503_with_retry_after(start_server):
    srv = start_server(ASR_JOB_CONCURRENCY=0, ASR_JOB_QUEUE_MAX=2)
    assert ju.submit(srv, ju.distinct_wav(20)).status_code == 202
    assert ju.submit(srv, ju.distinct_wav(21)).status_code == 202
    r = ju.submit(srv, ju.distinct_wav(22))
    assert r.status_code == 503 and r.json()["error"]["code"] == "QUEUE_FULL", r.text
    assert int(r.headers["Retry-After"]) >= 1
    assert ju.submit(srv, ju.distinct_wav(20)).status_code == 202  # a join needs no room
    h.poll(lambda: ju.metrics_jobs(srv)["queue"]["depth"] == 2, 5, desc="depth in the metrics")
    assert ju.metrics_jobs(srv)["refused_full"] == 1


@pytest.mark.timeout(60)
def test_a_job_waits_while_the_upload_memory_is_full(start_server):
    """Two uploads that stop half way hold the worker's upload memory, so the
    job cannot charge its decoding: it waits (still processing, keeping its
    lease, nothing given back) and completes once they are gone."""
    srv = start_server(ASR_WORKERS=1, ASR_MAX_UPLOAD_BYTES=1048576, ASR_UPLOAD_MEMORY_BYTES=5242880,
                       ASR_JOB_CONCURRENCY=1)
    holders = []
    for _ in range(2):
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        s.sendall(b"POST /v1/transcribe HTTP/1.1\r\nHost: x\r\nContent-Type: audio/wav\r\n"
                  b"Content-Length: 1000000\r\n\r\n" + b"\0" * 900000)
        holders.append(s)
    try:
        h.poll(lambda: srv.metrics()["memory"]["uploads"]["bytes"] >= 1800000, 10, desc="the uploads held")
        job = ju.submit(srv, h.read_bytes("speech16k.wav")).json()
        h.poll(lambda: ju.get(srv, job["id"]).json()["status"] == "processing", 10, desc="taken")
        time.sleep(2.5)            # two tries at its decoding meanwhile (1 s, then 2 s)
        j = ju.get(srv, job["id"]).json()
        assert j["status"] == "processing", j
        assert ju.metrics_jobs(srv)["runs"]["released"] == 0
    finally:
        for s in holders:
            s.close()
    done = ju.wait_final(srv, job["id"], timeout=30)
    assert done["status"] == "completed" and done["attempts"] == 1, done
    assert ju.metrics_jobs(srv)["runs"]["released"] == 0


def test_spool_full_503(start_server):
    srv = start_server(ASR_JOB_CONCURRENCY=0, ASR_JOB_SPOOL_MAX_MB=1)
    big = ju.distinct_wav(30, seconds=25)  # ~800 KB
    assert ju.submit(srv, big).status_code == 202
    r = ju.submit(srv, ju.distinct_wav(31, seconds=25))
    assert r.status_code == 503 and "spool" in r.json()["error"]["message"]


def worker_of_run(srv):
    """(worker id, pid) of the worker whose log says it started a run."""
    for line in srv.log_lines():
        if line.get("msg") == "job run started":
            wid = line["worker"]
            for w in srv.metrics()["workers"]:
                if w["worker_id"] == wid:
                    return wid, w["pid"]
    return None


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_kill9_of_the_worker_running_a_job(aof_redis, receiver, start_server):
    srv = start_server(ASR_REDIS_URL=aof_redis.url, ASR_WORKERS=2, ASR_JOB_LEASE_S=2, ASR_JOB_CONCURRENCY=1,
                       ASR_MOCK_LATENCY_MS=1000, ASR_OUTBOUND_ALLOW_PRIVATE=1, ASR_WEBHOOK_SECRET=ju.SECRET)
    job = ju.submit(srv, ju.distinct_wav(40, seconds=60), params={"callback": receiver.url("/ok")}).json()
    h.poll(lambda: ju.get(srv, job["id"]).json()["status"] == "processing", 10, desc="processing")
    wid, pid = h.poll(lambda: worker_of_run(srv), 5, desc="the worker running it")
    os.kill(pid, signal.SIGKILL)
    done = ju.wait_final(srv, job["id"], timeout=60)
    assert done["status"] == "completed" and done["attempts"] == 2, done
    time.sleep(2.0)
    posts = receiver.posts(job["id"])
    assert len(posts) == 1, posts  # one final webhook
    assert ju.verify_signature(posts[0][1], posts[0][2])
    assert json.loads(posts[0][2])["data"]["result"] == done["result"]
    m = ju.metrics_jobs(srv)
    assert m["runs"]["reclaimed"] == 1 and m["runs"]["completed"] == 1, m["runs"]
    h.poll(lambda: ju.metrics_jobs(srv)["queue"]["pending"] == 0, 5, desc="nothing pending")


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_redis_restarted_with_aof_mid_queue_loses_no_job(aof_redis, start_server):
    srv = start_server(ASR_REDIS_URL=aof_redis.url, ASR_JOB_CONCURRENCY=1, ASR_MOCK_LATENCY_MS=300)
    ids = [ju.submit(srv, ju.distinct_wav(50 + i, seconds=10)).json()["id"] for i in range(8)]
    h.poll(lambda: sum(ju.get(srv, i).json()["status"] == "completed" for i in ids) >= 1, 20, desc="a first job done")
    aof_redis.kill9()                 # mid-queue: one running, several waiting
    time.sleep(1.0)
    aof_redis.start()                 # same port, same AOF
    finals = [ju.wait_final(srv, i, timeout=60) for i in ids]
    assert all(f["status"] == "completed" for f in finals), [f["status"] for f in finals]
    h.poll(lambda: (lambda q: q["depth"] == 0 and q["pending"] == 0 and q["spool_bytes"] == 0)(
        ju.metrics_jobs(srv)["queue"]), 5, desc="an empty queue")


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_worker_retires_after_n_jobs(start_server):
    srv = start_server(ASR_WORKER_MAX_JOBS=3, ASR_JOB_CONCURRENCY=1, ASR_MOCK_LATENCY_MS=50)
    first_pid = srv.metrics()["workers"][0]["pid"]
    ids = [ju.submit(srv, ju.distinct_wav(60 + i)).json()["id"] for i in range(7)]
    finals = [ju.wait_final(srv, i, timeout=60) for i in ids]
    assert all(f["status"] == "completed" for f in finals), finals
    msgs = [l.get("msg") for l in srv.log_lines()]
    assert msgs.count("worker asked for a successor (job limit)") >= 2, msgs
    assert msgs.count("worker replaced") >= 2
    h.poll(lambda: srv.metrics()["workers"][0]["pid"] != first_pid, 10, desc="a new worker")
    assert all(f["attempts"] == 1 for f in finals)  # nothing was dropped and redone
