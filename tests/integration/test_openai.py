"""The OpenAI-compatible API (docs/API.md "OpenAI-compatible API"):
POST /v1/audio/transcriptions with multipart/form-data as curl -F and the
SDKs send it, every response format, stream=true as server-sent events,
every refusal as OpenAI's error object with its status, translations
refused, GET /v1/models; the audio browsers and phones upload (WebM/Opus,
Ogg/Opus, MP4/M4A/AAC beside WAV/FLAC/MP3), made here by Debian's ffmpeg
from pocketsphinx's test recording, also through POST /v1/transcribe; the
curl -F examples of README.md run as written.

The official `openai` npm package is driven against the same routes by
tests/integration/node/openai.test.js."""
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile

import pytest
import requests

import asrd_harness as h

T = 60
URL = "/v1/audio/transcriptions"
GOFORWARD = "/usr/share/pocketsphinx/test/data/goforward.raw"
KEY = "sk-asrd-test-key"

needs_ffmpeg = pytest.mark.skipif(not shutil.which("ffmpeg"), reason="ffmpeg is not installed (scripts/deps.sh test)")
needs_ps = pytest.mark.skipif(not os.path.exists(GOFORWARD),
                              reason="pocketsphinx-testdata is not installed (scripts/deps.sh test)")


def wav():
    return h.read_bytes("speech16k.wav")


def post(srv, fields=None, files=None, headers=None, **kw):
    """A form as requests builds it (multipart/form-data with a random boundary)."""
    if files is None:
        files = {"file": ("speech.wav", wav(), "audio/wav")}
    if fields is None:
        fields = {"model": "whisper-1"}
    return requests.post(srv.http + URL, data=fields, files=files, headers=headers or {}, timeout=T, **kw)


def assert_oa_error(r, status, code=None, param=None):
    """OpenAI's error object: {"error":{"message","type","param","code"}}."""
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert r.headers.get("Content-Type", "").startswith("application/json"), r.headers
    doc = r.json()
    e = doc.get("error")
    assert isinstance(e, dict) and set(e) == {"message", "type", "param", "code"}, doc
    assert isinstance(e["message"], str) and e["message"], doc
    assert e["type"] == ("server_error" if status >= 500 else "invalid_request_error"), doc
    if code is not None:
        assert e["code"] == code, doc
    if param is not None:
        assert e["param"] == param, doc
    return e


def metrics_delta(srv, before, dotted):
    return h.metric(srv.metrics(), dotted, 0) - h.metric(before, dotted, 0)


# ---- answers ---------------------------------------------------------------------

def test_json_default_and_text(server):
    r = post(server)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    doc = r.json()
    assert list(doc) == ["text"] and doc["text"], doc
    rest = requests.post(server.http + "/v1/transcribe", data=wav(), headers={"Content-Type": "audio/wav"},
                         timeout=T).json()
    assert doc["text"] == rest["text"], (doc, rest)   # the same machinery, the same words
    r = post(server, {"model": "x", "response_format": "text"})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain"), r.headers
    assert r.text == doc["text"] + "\n"


def test_srt_vtt_verbose_json(server):
    r = post(server, {"model": "x", "response_format": "srt"})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/x-subrip")
    assert re.match(r"^1\n\d\d:\d\d:\d\d,\d{3} --> \d\d:\d\d:\d\d,\d{3}\n\S", r.text), r.text
    r = post(server, {"model": "x", "response_format": "vtt"})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/vtt")
    assert re.match(r"^WEBVTT\n\n\d\d:\d\d:\d\d\.\d{3} --> \d\d:\d\d:\d\d\.\d{3}\n\S", r.text), r.text
    r = post(server, {"model": "x", "response_format": "verbose_json"})
    doc = r.json()
    assert doc["task"] == "transcribe" and doc["language"] == "english", doc
    assert abs(doc["duration"] - h.wav_info(wav())[2] / 16000) < 0.05, doc
    assert doc["segments"] and "words" not in doc, doc
    s = doc["segments"][0]
    assert s["id"] == 0 and s["start"] < s["end"] and s["text"], s
    assert " ".join(x["text"] for x in doc["segments"]) == doc["text"]


def test_granularities_words_and_segments(start_server):
    srv = start_server(ASR_ENGINE="mock-windowed", ASR_WORKERS=1, ASR_REDIS_URL="memory")
    both = post(srv, [("model", "x"), ("response_format", "verbose_json"), ("timestamp_granularities[]", "word"),
                      ("timestamp_granularities[]", "segment")]).json()
    assert both["segments"] and both["words"], both
    assert [w["word"] for w in both["words"]] == both["text"].split(), both
    for w in both["words"]:
        assert set(w) == {"word", "start", "end"} and w["start"] <= w["end"] <= both["duration"], w
    words = post(srv, [("model", "x"), ("response_format", "verbose_json"),
                       ("timestamp_granularities[]", "word")]).json()
    assert "segments" not in words and words["words"] == both["words"], words
    segs = post(srv, [("model", "x"), ("response_format", "verbose_json"),
                      ("timestamp_granularities[]", "segment")]).json()
    assert "words" not in segs and segs["segments"] == both["segments"], segs


def sse_events(r):
    """Parses a text/event-stream body into its data objects."""
    assert r.status_code == 200, r.text[:300]
    assert r.headers["Content-Type"].startswith("text/event-stream"), r.headers
    assert r.headers.get("Transfer-Encoding") == "chunked", r.headers
    events = []
    for block in r.text.split("\n\n"):
        if not block.strip():
            continue
        lines = block.split("\n")
        assert all(l.startswith("data: ") for l in lines), block
        events.append(json.loads("".join(l[6:] for l in lines)))
    return events


def test_stream_deltas_then_done(server):
    plain = post(server).json()["text"]
    with requests.Session() as s:
        r = s.post(server.http + URL, data={"model": "x", "stream": "true"},
                   files={"file": ("a.wav", wav(), "audio/wav")}, timeout=T)
        ev = sse_events(r)
        assert ev[-1]["type"] == "transcript.text.done", ev
        deltas = [e for e in ev[:-1]]
        assert deltas and all(e["type"] == "transcript.text.delta" for e in deltas), ev
        assert "".join(e["delta"] for e in deltas) == ev[-1]["text"] == plain
        # the connection stays usable after a chunked answer (keep-alive)
        r2 = s.post(server.http + URL, data={"model": "x", "response_format": "text"},
                    files={"file": ("a.wav", wav(), "audio/wav")}, timeout=T)
        assert r2.status_code == 200 and r2.text == plain + "\n"


def test_stream_windowed_engine_sends_stable_words_early(start_server):
    """With a windowed engine the words that two windows agree on go out
    before the utterance's final: more deltas than utterances."""
    srv = start_server(ASR_ENGINE="mock-windowed", ASR_WORKERS=1, ASR_REDIS_URL="memory", ASR_WINDOW_MS=300,
                       ASR_MAX_UTTERANCE_MS=30000)
    long_wav = h.read_bytes("conversation16k.wav")
    ev = sse_events(post(srv, {"model": "x", "stream": "true"}, {"file": ("c.wav", long_wav, "audio/wav")}))
    done = ev[-1]
    assert done["type"] == "transcript.text.done", ev
    deltas = [e["delta"] for e in ev[:-1]]
    finals = post(srv, {"model": "x", "response_format": "verbose_json"},
                  {"file": ("c.wav", long_wav, "audio/wav")}).json()["segments"]
    assert len(deltas) > len(finals), (deltas, finals)
    assert done["text"] == " ".join(s["text"] for s in finals)
    assert "".join(deltas).split() == done["text"].split(), (deltas, done)


def test_stream_engine_failure_is_an_error_event(start_server):
    srv = start_server(ASR_MOCK_ERROR_RATE=1)
    ev = sse_events(post(srv, {"model": "x", "stream": "true"}))
    assert ev[-1]["type"] == "error", ev
    e = ev[-1]["error"]
    assert e["type"] == "server_error" and e["code"] == "model_error" and "engine failed" in e["message"], e
    # without stream: a 500 the SDKs raise as InternalServerError
    assert_oa_error(post(srv), 500, "model_error")


# ---- refusals ---------------------------------------------------------------------

def test_missing_file_and_model(server):
    assert_oa_error(post(server, {"model": "x"}, files={"other": ("a.wav", wav()[:1000], "audio/wav")}), 400,
                    "missing_file", "file")
    assert_oa_error(post(server, {"model": "x"}, files={"file": ("a.wav", b"", "audio/wav")}), 400, "empty_file")
    assert_oa_error(post(server, {"language": "en"}), 400, "missing_model", "model")


@pytest.mark.parametrize("fields,param", [
    ({"response_format": "xml"}, "response_format"),
    ({"temperature": "1.5"}, "temperature"),
    ({"temperature": "warm"}, "temperature"),
    ({"stream": "yes"}, "stream"),
    ({"language": "fr"}, "language"),
])
def test_bad_field_values(server, fields, param):
    fields = dict(fields, model="x")
    e = assert_oa_error(post(server, fields), 400, param=param)
    assert e["code"] in ("invalid_value", "unsupported_language"), e


@pytest.mark.parametrize("fields", [
    [("response_format", "json"), ("timestamp_granularities[]", "word")],
    [("timestamp_granularities[]", "segment")],                           # json is the default
    [("response_format", "text"), ("timestamp_granularities[]", "segment")],
    [("response_format", "verbose_json"), ("timestamp_granularities[]", "sentence")],
    [("response_format", "verbose_json"), ("stream", "true")],
    [("response_format", "srt"), ("stream", "true")],
])
def test_unsupported_granularity_and_format_mixes(server, fields):
    e = assert_oa_error(post(server, [("model", "x")] + fields), 400)
    assert e["param"] in ("timestamp_granularities[]", "response_format"), e


def test_bad_format_not_audio(server):
    before = server.metrics()
    e = assert_oa_error(post(server, files={"file": ("notes.txt", b"this is not audio at all " * 40, "text/plain")}),
                        400, "invalid_file_format", "file")
    assert "not" in e["message"]
    truncated = wav()[:30]   # a RIFF header cut short
    assert_oa_error(post(server, files={"file": ("a.wav", truncated, "audio/wav")}), 400, "invalid_file_format", "file")
    assert metrics_delta(server, before, "openai.refused.audio") == 2


def test_not_a_form(server):
    before = server.metrics()
    r = requests.post(server.http + URL, json={"model": "x", "file": "a.wav"}, timeout=T)
    assert "multipart/form-data" in assert_oa_error(r, 400, "invalid_form")["message"]
    r = requests.post(server.http + URL, data=b"", headers={"Content-Type": "multipart/form-data; boundary=b"},
                      timeout=T)
    assert_oa_error(r, 400, "invalid_form")
    body = b'--b\r\nContent-Disposition: form-data; name="model"\r\n\r\nx\r\n'   # no closing delimiter
    r = requests.post(server.http + URL, data=body, headers={"Content-Type": "multipart/form-data; boundary=b"},
                      timeout=T)
    assert "closing delimiter" in assert_oa_error(r, 400, "invalid_form")["message"]
    assert metrics_delta(server, before, "openai.refused.form") == 3


def test_too_large(start_server):
    srv = start_server(ASR_MAX_UPLOAD_BYTES=100000)
    big = h.read_bytes("speech44k_stereo.wav")      # 400 KB
    # the HTTP layer refuses the Content-Length before reading: OpenAI's shape all the same
    body = (b'--b\r\nContent-Disposition: form-data; name="model"\r\n\r\nx\r\n'
            b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n' + big + b"\r\n--b--\r\n")
    r = h.raw_request(srv.port, "POST", URL, {"Content-Type": "multipart/form-data; boundary=b",
                                              "Content-Length": str(len(body))}, body)
    assert r.status == 413, r
    e = json.loads(r.body)["error"]
    assert set(e) == {"message", "type", "param", "code"} and e["code"] == "payload_too_large", e
    # a field past its bound (16 KiB) is refused, the file is not bound by it
    assert_oa_error(post(srv, {"model": "x", "prompt": "p" * 20000}), 400, "field_too_large")
    assert post(srv, {"model": "x", "prompt": "a short hint"}).status_code == 200


def test_keys(start_server):
    srv = start_server(ASR_API_KEYS=KEY + ",other")
    e = assert_oa_error(post(srv), 401, "invalid_api_key")
    assert "Bearer" in e["message"]
    assert_oa_error(post(srv, headers={"Authorization": "Bearer sk-wrong"}), 401, "invalid_api_key")
    assert post(srv, headers={"Authorization": "Bearer " + KEY}).status_code == 200
    assert post(srv, headers={"X-API-Key": "other"}).status_code == 200
    assert_oa_error(requests.get(srv.http + "/v1/models", timeout=T), 401, "invalid_api_key")
    r = requests.get(srv.http + "/v1/models", headers={"Authorization": "Bearer " + KEY}, timeout=T)
    assert r.status_code == 200
    assert r.json() == {"object": "list", "data": [{"id": "mock", "object": "model", "created": 0,
                                                    "owned_by": "asrd"}]}
    m = srv.metrics()
    assert h.metric(m, "requests.by_route.audio_transcriptions.401") == 2
    assert h.metric(m, "requests.by_route.models.401") == 1


def test_translations_refused(server):
    r = requests.post(server.http + "/v1/audio/translations", data={"model": "x"},
                      files={"file": ("a.wav", wav(), "audio/wav")}, timeout=T)
    e = assert_oa_error(r, 400, "translation_not_supported")
    assert "/v1/audio/transcriptions" in e["message"]


def test_wrong_method_is_openai_shaped(server):
    r = requests.get(server.http + URL, timeout=T)
    assert_oa_error(r, 405, "method_not_allowed")
    assert r.headers["Allow"] == "POST"


def test_client_gone_mid_transcription_is_counted(start_server):
    srv = start_server(ASR_MOCK_LATENCY_MS=200)
    before = srv.metrics()
    body = (b'--b\r\nContent-Disposition: form-data; name="model"\r\n\r\nx\r\n'
            b'--b\r\nContent-Disposition: form-data; name="file"; filename="c.wav"\r\n\r\n' +
            h.read_bytes("conversation16k.wav") + b"\r\n--b--\r\n")
    s = socket.create_connection(("127.0.0.1", srv.port))
    s.sendall(h.build_request("POST", URL, {"Content-Type": "multipart/form-data; boundary=b",
                                            "Content-Length": str(len(body))}, body))
    h.poll(lambda: metrics_delta(srv, before, "rest.chunks") > 0, desc="transcription started")
    # a reset, not a FIN: a half-closed client is still answered (docs/API.md)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    h.poll(lambda: metrics_delta(srv, before, "rest.failed.aborted") == 1, desc="aborted counted")


# ---- the audio browsers and phones upload ------------------------------------------------

@pytest.fixture(scope="module")
def media():
    """goforward.raw ("go forward ten meters") in the containers people upload."""
    if not shutil.which("ffmpeg") or not os.path.exists(GOFORWARD):
        pytest.skip("needs ffmpeg and pocketsphinx-testdata (scripts/deps.sh test)")
    d = tempfile.mkdtemp(prefix="asrd-media-")
    src = os.path.join(d, "src.wav")

    def ff(*args):
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *args], check=True)

    ff("-f", "s16le", "-ar", "16000", "-ac", "1", "-i", GOFORWARD, src)
    out = {"wav": ("audio/wav", src)}
    specs = {
        "flac": ("audio/flac", ["-c:a", "flac"], "a.flac"),
        "mp3": ("audio/mpeg", ["-c:a", "libmp3lame", "-b:a", "64k"], "a.mp3"),
        "webm": ("audio/webm;codecs=opus", ["-ar", "48000", "-c:a", "libopus", "-b:a", "32k", "-f", "webm"], "a.webm"),
        "ogg_opus": ("audio/ogg", ["-ar", "48000", "-c:a", "libopus", "-b:a", "32k", "-f", "ogg"], "a.opus"),
        "m4a": ("audio/mp4", ["-c:a", "aac", "-b:a", "64k", "-f", "ipod"], "a.m4a"),
        "mp4_stereo_44k": ("video/mp4", ["-ar", "44100", "-ac", "2", "-c:a", "aac", "-b:a", "96k", "-f", "mp4"], "a.mp4"),
    }
    for name, (ctype, args, fn) in specs.items():
        path = os.path.join(d, fn)
        ff("-i", src, *args, path)
        out[name] = (ctype, path)
    yield out
    shutil.rmtree(d, ignore_errors=True)


@needs_ffmpeg
@needs_ps
@pytest.mark.slow
def test_uploaded_containers_transcribe(start_server, media):
    srv = start_server(ASR_ENGINE="pocketsphinx", ASR_WORKERS=1, ASR_REDIS_URL="memory")
    for name, (ctype, path) in media.items():
        data = open(path, "rb").read()
        r = post(srv, {"model": "whisper-1", "response_format": "verbose_json"},
                 {"file": (os.path.basename(path), data, ctype)})
        assert r.status_code == 200, (name, r.text)
        doc = r.json()
        assert doc["text"] == "go forward ten meters", (name, doc)
        assert abs(doc["duration"] - 2.786) < 0.1, (name, doc["duration"])
        # the same decoder behind POST /v1/transcribe, sniffed without a type
        rest = requests.post(srv.http + "/v1/transcribe", data=data, timeout=T)
        assert rest.status_code == 200 and rest.json()["text"] == "go forward ten meters", (name, rest.text)


# ---- README.md's curl -F examples, as written ---------------------------------------------

def readme_curl_examples():
    text = open(os.path.join(os.path.dirname(__file__), "..", "..", "README.md")).read()
    block = text.split("<!-- openai-curl-examples -->", 2)
    assert len(block) == 3, "README.md lost its <!-- openai-curl-examples --> markers"
    cmds = re.findall(r"^(curl .*?)(?<!\\)$", block[1], re.S | re.M)
    return [c.replace("\\\n", " ") for c in cmds]


@pytest.mark.skipif(not shutil.which("curl"), reason="curl is not installed")
def test_readme_curl_examples(start_server):
    srv = start_server()
    cmds = readme_curl_examples()
    assert len(cmds) >= 5, cmds
    d = tempfile.mkdtemp(prefix="asrd-readme-")
    try:
        shutil.copy(h.gen_path("speech16k.wav"), os.path.join(d, "speech.wav"))
        for cmd in cmds:
            cmd = cmd.replace("127.0.0.1:8000", "127.0.0.1:%d" % srv.port)
            p = subprocess.run(["/bin/sh", "-c", cmd + " --fail-with-body -sS"], cwd=d, capture_output=True,
                               timeout=T)
            assert p.returncode == 0, (cmd, p.stdout[-300:], p.stderr[-300:])
            assert p.stdout.strip(), cmd
    finally:
        shutil.rmtree(d, ignore_errors=True)
