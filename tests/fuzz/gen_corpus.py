#!/usr/bin/python3
"""Writes the seed corpora of the fuzz targets into tests/fuzz/corpus/<target>/.

Run from the repository root: /usr/bin/python3 tests/fuzz/gen_corpus.py
Needs espeak-ng and sox (audio seeds), and cc + libsndfile for
tests/fuzz/tools/sfwrite.c (MP3, Opus, RF64, WAVEX seeds). The output is
deterministic except for what espeak-ng/sox/lame versions produce; the
committed files are what this wrote on Debian 12. Each seed is small (under
about 20 KB). The input layouts (flag bytes) are described at the top of
each tests/fuzz/fuzz_<target>.c.
"""
import base64
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
KEY = b"dGhlIHNhbXBsZSBub25jZQ=="


def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- audio material -----------------------------------------------------

TMP = tempfile.mkdtemp(prefix="asrd-fuzz-corpus-")


def run(*cmd, **kw):
    subprocess.run(cmd, check=True, **kw)


def make_audio():
    """Speech: 'hello' at 16 kHz mono s16, about 0.4 s, as raw bytes."""
    wav = os.path.join(TMP, "speech.wav")
    run("espeak-ng", "-w", wav, "hello there")
    raw = os.path.join(TMP, "speech16k.raw")
    # skip the leading silence, keep 0.4 s of voice
    run("sox", wav, "-r", "16000", "-c", "1", "-b", "16", "-e", "signed-integer", "-t", "raw", raw,
        "trim", "0.05", "0.4")
    with open(raw, "rb") as f:
        return f.read()


SPEECH = make_audio()            # 12800 bytes
SILENCE_100MS = b"\0" * 3200


def sox_file(name, out_args, seconds=0.25, effects=()):
    src = os.path.join(TMP, "src.raw")
    with open(src, "wb") as f:
        f.write(SPEECH)
    out = os.path.join(TMP, name)
    run("sox", "-t", "raw", "-r", "16000", "-c", "1", "-b", "16", "-e", "signed-integer", src,
        *out_args, out, "trim", "0", str(seconds), *effects)
    with open(out, "rb") as f:
        return f.read()


SFWRITE = os.path.join(TMP, "sfwrite")
run("cc", "-O1", os.path.join(os.path.dirname(os.path.abspath(__file__)), "tools", "sfwrite.c"),
    "-lsndfile", "-o", SFWRITE)


def sf_file(name, fmt_hex, rate, channels, pcm):
    out = os.path.join(TMP, name)
    subprocess.run([SFWRITE, out, fmt_hex, str(rate), str(channels)], input=pcm, check=True)
    with open(out, "rb") as f:
        return f.read()


AUDIO = {
    "wav_16k_mono_s16.wav": sox_file("a.wav", ["-t", "wav", "-r", "16000", "-c", "1", "-b", "16"], 0.2),
    "wav_44k_stereo_s16.wav": sox_file("b.wav", ["-t", "wav", "-r", "44100", "-c", "2", "-b", "16"], 0.05),
    "wav_8k_u8.wav": sox_file("c.wav", ["-t", "wav", "-r", "8000", "-c", "1", "-b", "8", "-e", "unsigned-integer"], 0.2),
    "wav_22k_float.wav": sox_file("d.wav", ["-t", "wav", "-r", "22050", "-c", "1", "-b", "32", "-e", "floating-point"], 0.05),
    "wav_16k_alaw.wav": sox_file("e.wav", ["-t", "wav", "-r", "16000", "-c", "1", "-e", "a-law"], 0.2),
    "wav_16k_imaadpcm.wav": sox_file("f.wav", ["-t", "wav", "-r", "16000", "-c", "1", "-e", "ima-adpcm"], 0.2),
    "flac_16k_mono.flac": sox_file("g.flac", ["-t", "flac", "-r", "16000", "-c", "1", "-b", "16"], 0.25),
    "flac_48k_stereo_24bit.flac": sox_file("h.flac", ["-t", "flac", "-r", "48000", "-c", "2", "-b", "24"], 0.05),
    "ogg_vorbis_16k.ogg": sox_file("i.ogg", ["-t", "vorbis", "-r", "16000", "-c", "1", "-C", "-1"], 0.25),
    "mp3_16k.mp3": sf_file("j.mp3", "230082", 16000, 1, SPEECH[:6400]),
    "opus_16k.opus": sf_file("k.opus", "200064", 16000, 1, SPEECH[:6400]),
    "rf64_16k.wav": sf_file("l.wav", "220002", 16000, 1, SPEECH[:3200]),
    "wavex_16k_2ch.wav": sf_file("m.wav", "130002", 16000, 2, SPEECH[:3200]),
}



def ff_file(name, out_args, seconds=0.3, rate=16000, channels=1):
    """SPEECH through Debian's ffmpeg into a container libsndfile cannot
    read (fuzz_media seeds)."""
    src = os.path.join(TMP, "src.raw")
    with open(src, "wb") as f:
        f.write(SPEECH)
    out = os.path.join(TMP, name)
    run("ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "s16le", "-ar", "16000", "-ac", "1", "-i", src,
        "-t", str(seconds), "-ar", str(rate), "-ac", str(channels), "-map_metadata", "-1", "-fflags", "+bitexact",
        *out_args, out)
    with open(out, "rb") as f:
        return f.read()


MEDIA = {}
if shutil.which("ffmpeg"):
    MEDIA = {
        "webm_opus_48k.webm": ff_file("n.webm", ["-c:a", "libopus", "-b:a", "16k", "-f", "webm"], rate=48000),
        "mkv_vorbis_stereo.mka": ff_file("o.mka", ["-c:a", "libvorbis", "-q:a", "0", "-f", "matroska"],
                                         rate=22050, channels=2),
        "m4a_aac_16k.m4a": ff_file("p.m4a", ["-c:a", "aac", "-b:a", "24k", "-f", "ipod"]),
        "mp4_aac_44k_stereo.mp4": ff_file("q.mp4", ["-c:a", "aac", "-b:a", "32k", "-f", "mp4"], 0.15,
                                          rate=44100, channels=2),
        "adts_aac_16k.aac": ff_file("r.aac", ["-c:a", "aac", "-b:a", "24k", "-f", "adts"]),
        "ogg_flac_16k.oga": ff_file("s.oga", ["-c:a", "flac", "-f", "ogg"], 0.1),
        "3gp_aac_8k.3gp": ff_file("t.3gp", ["-c:a", "aac", "-b:a", "12k", "-f", "3gp"], rate=8000),
    }
else:
    print("gen_corpus: no ffmpeg: fuzz_media seeds left as they are", file=sys.stderr)

# ---- fuzz_audio ---------------------------------------------------------
# byte 0: Content-Type index (fuzz_audio.c TYPES; 0 = none, 1 audio/wav, 3 audio/flac,
# 4 audio/ogg, 5 audio/mpeg, 6 octet-stream, 7 pcm 16k, 8 pcm 16k 2ch, 9 L16 16k,
# 10 L16 44.1k 2ch, 11 pcm 8k quoted, 12 pcm 384k 3ch, 13 pcm 1k, 14 text/plain),
# 0xff = Content-Type in the first line; byte 1: target rate, max, resample mode.
TYPE_OF = {".wav": 1, ".flac": 3, ".ogg": 4, ".mp3": 5, ".opus": 4}
for name, data in AUDIO.items():
    put("audio", name, bytes([TYPE_OF[os.path.splitext(name)[1]], 0]) + data)
put("audio", "sniff_wav_no_type", bytes([0, 0]) + AUDIO["wav_16k_mono_s16.wav"])
put("audio", "sniff_flac_octet_stream_8k", bytes([6, 1]) + AUDIO["flac_16k_mono.flac"])
put("audio", "flac_sent_as_wav", bytes([1, 0]) + AUDIO["flac_16k_mono.flac"])
put("audio", "wav_max_1s_target_48k", bytes([1, 4 | 2]) + AUDIO["wav_16k_mono_s16.wav"])
put("audio", "raw_pcm_16k", bytes([7, 0]) + SPEECH[:4000])
put("audio", "raw_pcm_16k_2ch", bytes([8, 0]) + SPEECH[:4000])
put("audio", "raw_l16_16k", bytes([9, 0]) + SPEECH[:4000])
put("audio", "raw_l16_44k_2ch", bytes([10, 0]) + SPEECH[:4000])
put("audio", "raw_pcm_8k_quoted", bytes([11, 0]) + SPEECH[:2000])
put("audio", "raw_pcm_384k_3ch", bytes([12, 0]) + SPEECH[:2400])
put("audio", "raw_pcm_1k", bytes([13, 0]) + SPEECH[:400])
put("audio", "raw_odd_length", bytes([7, 0]) + SPEECH[:401])
put("audio", "not_audio_text", bytes([14, 0]) + b"hello, this is not audio")
put("audio", "custom_type_pcm", bytes([0xff, 0]) + b"audio/pcm; charset=x; rate=22050; channels=2\n" + SPEECH[:2000])
put("audio", "custom_type_bad_param", bytes([0xff, 0]) + b"audio/L16;rate=16000;channels=0\n" + SPEECH[:200])
put("audio", "custom_type_container", bytes([0xff, 0]) + b"Audio/X-WAV ; q=1\n" + AUDIO["wav_8k_u8.wav"])
put("audio", "truncated_wav", bytes([1, 0]) + AUDIO["wav_16k_mono_s16.wav"][:700])
put("audio", "truncated_flac", bytes([3, 0]) + AUDIO["flac_16k_mono.flac"][:900])
put("audio", "truncated_ogg", bytes([4, 0]) + AUDIO["ogg_vorbis_16k.ogg"][:1500])
put("audio", "id3_only", bytes([5, 0]) + b"ID3\x03\x00\x00\x00\x00\x00\x10" + b"\0" * 16)
put("audio", "resample_16k_to_8k", bytes([0, 8 | 1 | (0 << 4)]) + SPEECH[:3200])
put("audio", "resample_44k_to_16k", bytes([0, 8 | 0 | (3 << 4)]) + SPEECH[:3200])
put("audio", "resample_1k_to_48k", bytes([0, 8 | 2 | (5 << 4)]) + SPEECH[:200])

# Files that lie (the input report) and the block decoder (byte 1 bits 4-6:
# blocks of 1, 7, 160, 1000, 4096, 16000 or 65536 samples).
def wav_claiming(pcm, data_size, riff_size=None, tail=b""):
    r = 36 + len(pcm) + len(tail) if riff_size is None else riff_size
    return (b"RIFF" + struct.pack("<I", r) + b"WAVE" + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, 16000, 32000, 2, 16)
            + b"data" + struct.pack("<I", data_size) + pcm + tail)


LIST_CHUNK = b"LIST" + struct.pack("<I", 18) + b"INFOISFT" + struct.pack("<I", 6) + b"asrd\0\0"
put("audio", "wav_header_says_less", bytes([1, 3 << 4]) + wav_claiming(SPEECH[:3200], 800, 36 + 800))
put("audio", "wav_header_says_less_riff_all", bytes([0, 4 << 4]) + wav_claiming(SPEECH[:3200], 800))
put("audio", "wav_cut_in_half", bytes([1, 5 << 4]) + wav_claiming(SPEECH[:3200], 3200)[:44 + 1600])
put("audio", "wav_list_after_data", bytes([1, 2 << 4]) + wav_claiming(SPEECH[:1600], 1600, tail=LIST_CHUNK))
put("audio", "wav_garbage_after_data", bytes([6, 6 << 4]) + wav_claiming(SPEECH[:1600], 1600) + b"\x01" * 300)
put("audio", "wav_empty_data_then_audio", bytes([1, 1 << 4]) + wav_claiming(SPEECH[:1600], 0))
put("audio", "wav_size_unknown_blocks", bytes([1, 7 << 4]) + wav_claiming(SPEECH[:1600], 0xffffffff, 0xffffffff))
fl = bytearray(AUDIO["flac_16k_mono.flac"])
fl[22:26] = struct.pack(">I", struct.unpack(">I", bytes(fl[22:26]))[0] * 2)  # STREAMINFO: twice the samples
put("audio", "flac_streaminfo_says_more", bytes([3, 5 << 4]) + bytes(fl))
put("audio", "rf64_blocks", bytes([0, 6 << 4]) + AUDIO["rf64_16k.wav"])
put("audio", "raw_pcm_blocks_44k_2ch", bytes([10, 2 << 4]) + SPEECH[:4000])

# ---- fuzz_http ----------------------------------------------------------
# byte 0: bits 0-3 write size (0 all, k: 2^(k-1)), bit 4 API keys and origins, bit 5 drain,
# bit 6 half-close, bit 7 small socket buffers.


def upgrade(query="?sample_rate=16000", extra="", key=KEY.decode(), version="13", path="/v1/transcribe/stream",
            method="GET"):
    h = f"{method} {path}{query} HTTP/1.1\r\nHost: asrd\r\n"
    if key is not None:
        h += f"Sec-WebSocket-Key: {key}\r\n"
    if version is not None:
        h += f"Sec-WebSocket-Version: {version}\r\n"
    return (h + "Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n" + extra + "\r\n").encode()


def frame(opcode, payload, fin=True, mask=b"\0\0\0\0", rsv=0):
    if isinstance(payload, str):
        payload = payload.encode()
    b0 = (0x80 if fin else 0) | rsv << 4 | opcode
    n = len(payload)
    if mask is None:
        mbit, key = 0, b""
    else:
        mbit, key = 0x80, mask
    if n < 126:
        h = bytes([b0, mbit | n])
    elif n < 65536:
        h = bytes([b0, mbit | 126]) + struct.pack(">H", n)
    else:
        h = bytes([b0, mbit | 127]) + struct.pack(">Q", n)
    if key:
        payload = bytes(c ^ key[i % 4] for i, c in enumerate(payload))
    return h + key + payload


def wav_of(pcm, rate=16000):
    return (b"RIFF" + struct.pack("<I", 36 + len(pcm)) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
            + b"data" + struct.pack("<I", len(pcm)) + pcm)


def http(name, data, flags=0):
    put("http", name, bytes([flags]) + data)


http("get_health", b"GET /v1/health HTTP/1.1\r\nHost: a\r\n\r\n")
http("head_health", b"HEAD /v1/health HTTP/1.1\r\nHost: a\r\n\r\n")
http("pipelined_metrics", b"GET /v1/metrics HTTP/1.1\r\nHost: a\r\n\r\nGET /metrics HTTP/1.1\r\nHost: a\r\n\r\n"
     b"GET /v1/health HTTP/1.1\r\nConnection: close\r\n\r\n")
http("http10_metrics", b"GET /metrics HTTP/1.0\r\n\r\n")
http("http10_keepalive", b"GET /v1/health HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /v1/health HTTP/1.0\r\n\r\n")
http("post_health_405", b"POST /v1/health HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET /v1/health HTTP/1.1\r\n\r\n")
http("not_found_404", b"GET /v2/nothing?x=1 HTTP/1.1\r\nX-Request-Id: my-id-42\r\n\r\n")
http("options_star", b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n")
http("transcribe_pcm", b"POST /v1/transcribe HTTP/1.1\r\nContent-Type: audio/pcm; rate=16000\r\nContent-Length: "
     + str(len(SPEECH[:3200])).encode() + b"\r\n\r\n" + SPEECH[:3200])
chunks = SPEECH[:1000]
http("transcribe_chunked_l16", b"POST /v1/transcribe HTTP/1.1\r\nContent-Type: audio/L16; rate=8000\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % 600 + chunks[:600] + b"\r\n" + b"%x;ext=1\r\n" % 400
     + chunks[600:] + b"\r\n0\r\nX-Trailer: t\r\n\r\n")
w = wav_of(SPEECH[:4800])
http("transcribe_wav", b"POST /v1/transcribe HTTP/1.1\r\nContent-Type: audio/wav\r\nContent-Length: "
     + str(len(w)).encode() + b"\r\n\r\n" + w + b"GET /v1/health HTTP/1.1\r\n\r\n")
http("transcribe_flac_sniffed", b"POST /v1/transcribe HTTP/1.1\r\nContent-Length: "
     + str(len(AUDIO["flac_16k_mono.flac"])).encode() + b"\r\n\r\n" + AUDIO["flac_16k_mono.flac"])
http("transcribe_empty_400", b"POST /v1/transcribe HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
http("transcribe_not_audio_415", b"POST /v1/transcribe HTTP/1.1\r\nContent-Type: audio/wav\r\nContent-Length: 5\r\n\r\nhello")
http("transcribe_no_rate_400", b"POST /v1/transcribe HTTP/1.1\r\nContent-Type: audio/pcm\r\nContent-Length: 4\r\n\r\nabcd")
http("transcribe_no_length_411", b"POST /v1/transcribe HTTP/1.1\r\nContent-Type: audio/wav\r\n\r\nabcd")
http("transcribe_too_large_413", b"POST /v1/transcribe HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n")
http("cl_and_te_400", b"POST /v1/transcribe HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n")
http("bad_request_line", b"GARBAGE\r\n\r\n")
http("headers_431", b"GET /v1/health HTTP/1.1\r\nX-Big: " + b"a" * 17000 + b"\r\n\r\n")
http("many_headers_431", b"GET /v1/health HTTP/1.1\r\n" + b"".join(b"H%d: v\r\n" % i for i in range(70)) + b"\r\n")
http("upgrade_and_stop", upgrade() + frame(1, '{"type":"stop"}'))
http("upgrade_8k_binary", upgrade("?sample_rate=8000&encoding=pcm_s16le") + frame(2, SPEECH[:1600])
     + frame(1, '{"type":"finalize"}') + frame(8, struct.pack(">H", 1000)))
http("upgrade_no_key_400", upgrade(key=None))
http("upgrade_bad_key_400", upgrade(key="c2hvcnQ="))
http("upgrade_bad_version_400", upgrade(version="8"))
http("upgrade_bad_rate_400", upgrade("?sample_rate=44100"))
http("upgrade_bad_encoding_400", upgrade("?encoding=opus"))
http("upgrade_unknown_session_404", upgrade("?session_id=0123456789abcdef0123456789abcdef"))
http("stream_not_upgrade_426", b"GET /v1/transcribe/stream HTTP/1.1\r\nHost: a\r\n\r\n")
http("stream_post_405", b"POST /v1/transcribe/stream HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
http("upgrade_on_health", b"GET /v1/health HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
http("connect_method", b"CONNECT asrd:80 HTTP/1.1\r\nHost: asrd:80\r\n\r\n")
http("keys_bearer", b"POST /v1/transcribe HTTP/1.1\r\nAuthorization: Bearer fuzzkey1\r\nContent-Type: audio/pcm; rate=16000\r\n"
     b"Content-Length: 4\r\n\r\nabcd", 0x10)
http("keys_x_api_key_upgrade", upgrade(extra="X-API-Key: fuzzkey2\r\n") + frame(1, '{"type":"stop"}'), 0x10)
http("keys_query_upgrade", upgrade("?api_key=fuzzkey1&sample_rate=48000"), 0x10)
http("keys_wrong_401", b"POST /v1/transcribe HTTP/1.1\r\nAuthorization: Bearer nope\r\nContent-Length: 1\r\n\r\nx", 0x10)
http("origin_allowed_upgrade", upgrade("?api_key=fuzzkey1", extra="Origin: HTTPS://fuzz.example\r\n")
     + frame(1, '{"type":"stop"}'), 0x10)
http("origin_refused_403", upgrade("?api_key=fuzzkey1", extra="Origin: https://evil.example\r\n"), 0x10)
http("split_1byte", b"GET /v1/health HTTP/1.1\r\nHost: a\r\nX-Request-Id: split\r\n\r\n", 0x01)
http("split_4byte_post", b"POST /v1/transcribe HTTP/1.1\r\nContent-Type: audio/pcm; rate=16000\r\nContent-Length: 8\r\n\r\n"
     b"\0\0\0\0\0\0\0\0", 0x03)
http("drain_idle", b"GET /v1/health HTTP/1.1\r\n\r\n", 0x20)
http("drain_mid_request", b"GET /v1/health HTTP/1.1\r\nHost: a\r\n\r\nGET /v1/metrics HTTP/1.1\r\n\r\n", 0x20 | 0x06)
http("half_close_post", b"POST /v1/transcribe HTTP/1.1\r\nContent-Type: audio/pcm; rate=16000\r\nContent-Length: 3200\r\n\r\n"
     + SPEECH[:3200], 0x40)
http("small_buffers_metrics", b"GET /v1/metrics HTTP/1.1\r\n\r\nGET /metrics HTTP/1.1\r\n\r\n", 0x80)
http("folded_header", b"GET /v1/health HTTP/1.1\r\nX-A: a\r\n b\r\n\r\n")
http("expect_continue", b"POST /v1/transcribe HTTP/1.1\r\nExpect: 100-continue\r\nContent-Type: audio/pcm; rate=16000\r\n"
     b"Content-Length: 2\r\n\r\n\0\0")

# Expect: 100-continue answered 100 or refused at once; a request cut by the
# client's half-close (bit 6) answered 400.
http("expect_continue_404", b"POST /v1/nowhere HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\nabcd")
http("expect_continue_405", b"PUT /v1/transcribe HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\nabcd")
http("expect_continue_413", b"POST /v1/transcribe HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 999999999\r\n\r\n")
http("expect_continue_401", b"POST /v1/transcribe HTTP/1.1\r\nExpect: 100-continue\r\nAuthorization: Bearer nope\r\n"
     b"Content-Length: 4\r\n\r\nabcd", 0x10)
http("expect_continue_key", b"POST /v1/transcribe HTTP/1.1\r\nExpect: 100-Continue\r\nX-API-Key: fuzzkey2\r\n"
     b"Content-Type: audio/pcm; rate=16000\r\nContent-Length: 3200\r\n\r\n" + SPEECH[:3200], 0x10 | 0x04)
http("expect_continue_chunked", b"POST /v1/transcribe HTTP/1.1\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n"
     b"Content-Type: audio/pcm; rate=16000\r\n\r\n" + b"%x\r\n" % 1600 + SPEECH[:1600] + b"\r\n0\r\n\r\n")
http("expect_http10", b"POST /v1/transcribe HTTP/1.0\r\nExpect: 100-continue\r\nContent-Type: audio/pcm; rate=16000\r\n"
     b"Content-Length: 2\r\n\r\n\0\0")
http("half_close_short_body", b"POST /v1/transcribe HTTP/1.1\r\nContent-Type: audio/pcm; rate=16000\r\n"
     b"Content-Length: 3200\r\n\r\n" + SPEECH[:100], 0x40)
http("half_close_in_head", b"POST /v1/transcribe HTTP/1.1\r\nContent-Ty", 0x40)
http("half_close_chunked_no_last", b"POST /v1/transcribe HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"4\r\nabcd\r\n", 0x40 | 0x02)

# ---- fuzz_http: browsers (CORS, access tokens, the page) ------------------
# Under bit 4: ASR_CORS_ORIGINS=https://fuzz.example and keys fuzzkey1,fuzzkey2;
# tests/fuzz/net.c's ASR_TOKEN_SECRET signs the tokens below (api/auth.h has
# the format), valid until 2100.
FUZZ_TOKEN_SECRET = b"fuzz token secret, sixteen bytes and more"


def token(key=b"fuzzkey1", scope=3, exp=4102444800):
    import hashlib
    import hmac
    payload = bytes([1]) + struct.pack(">Q", exp) + bytes([scope]) + hashlib.blake2b(key, digest_size=8).digest()
    mac = hmac.new(FUZZ_TOKEN_SECRET, payload, "sha256").digest()
    return "asrd1." + base64.urlsafe_b64encode(payload + mac).decode().rstrip("=")


http("cors_preflight", b"OPTIONS /v1/transcribe HTTP/1.1\r\nHost: asrd\r\nOrigin: https://fuzz.example\r\n"
     b"Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: authorization\r\n\r\n", 0x10)
http("cors_preflight_405", b"OPTIONS /v1/transcribe HTTP/1.1\r\nOrigin: https://fuzz.example\r\n"
     b"Access-Control-Request-Method: PUT\r\n\r\n", 0x10)
http("cors_refused_403", b"GET /v1/health HTTP/1.1\r\nOrigin: https://evil.example\r\n\r\n"
     b"GET /v1/health HTTP/1.1\r\nOrigin: HTTPS://FUZZ.EXAMPLE\r\n\r\n", 0x10)
http("cors_same_origin", b"GET /v1/health HTTP/1.1\r\nHost: asrd:8000\r\nOrigin: http://asrd:8000\r\n\r\n", 0x10)
MINT_BODY = b'{"scope":["stream","transcribe"],"expires_in":9}'
http("token_mint", b"POST /v1/auth/token HTTP/1.1\r\nOrigin: https://fuzz.example\r\nAuthorization: Bearer fuzzkey1\r\n"
     b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(MINT_BODY) + MINT_BODY, 0x10)
http("token_mint_no_keys", b"POST /v1/auth/token HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
http("token_rest", ("POST /v1/transcribe HTTP/1.1\r\nAuthorization: Bearer %s\r\nContent-Type: audio/pcm; rate=16000\r\n"
                    "Content-Length: 4\r\n\r\nabcd" % token()).encode(), 0x10)
http("token_scope_403", ("POST /v1/transcribe HTTP/1.1\r\nAuthorization: Bearer %s\r\nContent-Length: 1\r\n\r\nx"
                         % token(scope=1)).encode(), 0x10)
http("token_expired_401", ("POST /v1/transcribe HTTP/1.1\r\nX-API-Key: %s\r\nContent-Length: 1\r\n\r\nx"
                           % token(exp=1000)).encode(), 0x10)
http("token_upgrade", upgrade("?token=" + token(scope=1), extra="Origin: https://fuzz.example\r\n")
     + frame(1, '{"type":"stop"}'), 0x10)
http("page_index", b"GET / HTTP/1.1\r\nHost: asrd\r\n\r\nGET /app.js HTTP/1.1\r\nIf-None-Match: *\r\n\r\n")
http("page_escape", b"GET /../README.md HTTP/1.1\r\n\r\nGET /%2e%2e/x HTTP/1.1\r\n\r\nGET /.git/config HTTP/1.1\r\n\r\n")

# ---- fuzz_web -------------------------------------------------------------
# byte 0: 0 a URL path (files_map_path), 1 token bytes, 2 a token request body,
#         3 "Host\nOrigin" (http_origin_check).
web = {
    "path_root": b"\x00/",
    "path_app": b"\x00/app.js",
    "path_dir": b"\x00/sub/dir/",
    "path_dotdot": b"\x00/../etc/passwd",
    "path_hidden": b"\x00/a/.git/config",
    "path_pct": b"\x00/%2e%2e/x",
    "path_long": b"\x00/" + b"a" * 254,
    "token_like": b"\x01asrd1.AQAAAABrFkohAVaeWX4vIO2i0iWItG3jQLjas0f4CV5561nZnBmq_FUhvaftJHMlktg",
    "token_short": b"\x01asrd1.",
    "token_bytes": bytes([1, 0, 200, 3, 1, 7, 65, 66, 67, 68, 69, 70]),
    "token_bytes_expired": bytes([1, 2, 0, 0, 0, 70, 0, 1, 2, 3, 4, 5]),
    "request_empty": b"\x02",
    "request_ws": b"\x02 \r\n",
    "request_full": b'\x02{"scope":["stream","transcribe"],"expires_in":60}',
    "request_bad_scope": b'\x02{"scope":["admin"]}',
    "request_dup": b'\x02{"scope":["stream"],"scope":["stream"]}',
    "request_big_ttl": b'\x02{"expires_in":301}',
    "origin_same": b"\x03asr.example:8000\nhttp://asr.example:8000",
    "origin_listed": b"\x03x\nHTTPS://A.EXAMPLE",
    "origin_null": b"\x03x\nnull",
    "origin_other": b"\x03x\nhttps://a.example.evil",
    "origin_spaces": b"\x03 x:1 \n  https://x:1  ",
}
for name, data in web.items():
    put("web", name, data)

# ---- fuzz_ws ------------------------------------------------------------
# byte 0: bits 0-1 rate (none, 8000, 32000, 48000), bit 2 together, bit 3 shed load,
#         bits 4-7 write size; byte 1: bit 0 frame mode, bit 1 resume, bit 2 slow reader,
#         bit 3 small buffers, bit 4 half-close, bit 5 engine errors.


def ws(name, data, f0=0, f1=0):
    put("ws", name, bytes([f0, f1]) + data)


def rec(opcode, payload, fin=True, rsv=0, opt=0):
    """A frame record for frame mode (fuzz_ws.c)."""
    if isinstance(payload, str):
        payload = payload.encode()
    return bytes([(0x80 if fin else 0) | rsv << 4 | opcode, opt]) + struct.pack("<H", len(payload)) + payload


def chunk_json(pcm, seq=None):
    m = {"type": "audio_chunk", "data": base64.b64encode(pcm).decode()}
    if seq is not None:
        m["sequence"] = seq
    return json.dumps(m, separators=(",", ":"))


ws("stop", frame(1, '{"type":"stop"}'))
ws("binary_then_stop", frame(2, SILENCE_100MS) + frame(1, '{"type":"stop"}'))
ws("speech_binary_finalize", b"".join(frame(2, SPEECH[i:i + 3200]) for i in range(0, 6400, 3200))
   + frame(2, SILENCE_100MS) * 3 + frame(1, '{"type":"finalize"}') + frame(1, '{"type":"keepalive"}'))
ws("json_chunks_sequence", frame(1, chunk_json(SPEECH[:1600], 1)) + frame(1, chunk_json(SPEECH[1600:3200]))
   + frame(1, chunk_json(SPEECH[3200:4800], 5)) + frame(1, chunk_json(SILENCE_100MS[:640], 3)) + frame(1, '{"type":"stop"}'))
ws("invalid_messages", frame(1, "not json") + frame(1, "[1]") + frame(1, '{"type":"dance"}')
   + frame(1, '{"type":"audio_chunk","data":"@@@"}') + frame(1, '{"type":"audio_chunk"}')
   + frame(1, '{"type":"audio_chunk","data":"AAA="}') + frame(1, '{"type":"audio_chunk","data":"","sequence":-1}')
   + frame(1, '{"type":"stop","type":"stop"}') + frame(2, b"\x01") + frame(2, b""))
ws("fragmented_text", frame(1, '{"type":"aud', fin=False) + frame(0, 'io_chunk","data":"AAAA', fin=False)
   + frame(9, "ping in between") + frame(0, 'AAAA"}') + frame(1, '{"type":"stop"}'))
ws("fragmented_binary_masked", frame(2, SPEECH[:1000], fin=False, mask=b"\x12\x34\x56\x78")
   + frame(0, SPEECH[1000:2000], fin=False, mask=b"\x9a\xbc\xde\xf0") + frame(0, SPEECH[2000:3200], mask=b"\x01\x02\x03\x04"))
ws("ping_pong_close", frame(9, "hi") + frame(10, "unsolicited") + frame(8, struct.pack(">H", 1000) + b"bye"))
ws("close_no_code", frame(8, b""))
ws("close_1001_mid_speech", frame(2, SPEECH[:3200]) + frame(8, struct.pack(">H", 1001)))
ws("unmasked_frame", frame(1, '{"type":"stop"}', mask=None))
ws("rsv_bits", frame(1, '{"type":"stop"}', rsv=4))
ws("unknown_opcode", frame(3, "x"))
ws("control_too_long", frame(9, "p" * 126))
ws("fragmented_control", frame(9, "p", fin=False))
ws("continuation_first", frame(0, "x"))
ws("invalid_utf8_text", frame(1, b'{"type":"\xff\xfe"}'))
ws("message_too_big_1009", bytes([0x82, 0xff]) + struct.pack(">Q", 100000) + b"\0\0\0\0" + b"\0" * 64)
ws("rate_8k_together", frame(2, SPEECH[:1600]) + frame(1, '{"type":"stop"}'), f0=1 | 4)
ws("rate_48k_shed_pieces", b"".join(frame(2, SILENCE_100MS) for _ in range(5)) + frame(1, '{"type":"stop"}'), f0=3 | 8 | (4 << 4))
ws("split_1byte", frame(1, '{"type":"keepalive"}') + frame(1, '{"type":"stop"}'), f0=1 << 4)
ws("frames_speech", b"".join(rec(2, SPEECH[i:i + 1600]) for i in range(0, 8000, 1600))
   + rec(2, SILENCE_100MS) * 3 + rec(1, '{"type":"stop"}'), f1=1)
ws("frames_json", rec(1, chunk_json(SPEECH[:800], 2)) + rec(1, chunk_json(SPEECH[800:1600]))
   + rec(1, '{"type":"finalize"}') + rec(9, "") + rec(1, '{"type":"stop"}'), f1=1)
ws("frames_fragments_masked", rec(1, '{"type":', fin=False, opt=2) + rec(0, '"keepalive"}', opt=2)
   + rec(2, SPEECH[:800], fin=False, opt=2) + rec(9, "x") + rec(0, SPEECH[800:1600], opt=6) + rec(8, struct.pack(">H", 1000)), f1=1)
ws("frames_protocol_errors", rec(1, "x", opt=1) + rec(1, "y", rsv=2), f1=1)
ws("resume_binary", frame(2, SPEECH[:3200]) + frame(2, SPEECH[3200:6400]) + frame(1, '{"type":"stop"}'), f1=2)
ws("resume_frames", rec(2, SPEECH[:3200]) + rec(2, SPEECH[3200:6400]) + rec(1, chunk_json(SILENCE_100MS, 9))
   + rec(1, '{"type":"stop"}'), f1=1 | 2)
ws("slow_reader_speech", b"".join(rec(2, SPEECH[i:i + 640]) for i in range(0, 12800, 640)), f1=1 | 4)
ws("small_buffers_speech", b"".join(rec(2, SPEECH[i:i + 3200]) for i in range(0, 12800, 3200)) + rec(1, '{"type":"stop"}'),
   f1=1 | 8)
ws("half_close", frame(2, SPEECH[:3200]), f1=16)
# byte 1 bit 6: an 8 KiB message budget; messages in pieces past it close 1013
ws("budget_fragments_1013", rec(1, '{"type":"audio_chunk","data":"' + "A" * 4000, fin=False)
   + rec(0, "A" * 4000, fin=False) + rec(0, "A" * 4000 + '"}') + rec(1, '{"type":"stop"}'), f1=1 | 0x40)
ws("budget_small_fragments_pass", rec(2, SPEECH[:1600], fin=False) + rec(0, SPEECH[1600:3200])
   + rec(1, '{"type":"stop"}'), f1=1 | 0x40)
ws("budget_split_frame_1013", frame(2, SPEECH[:3200] * 3) + frame(1, '{"type":"stop"}'), f0=10 << 4, f1=0x40)
ws("frames_rate_limit_8k", rec(2, SPEECH[:1600], opt=15 << 4) + rec(1, '{"type":"stop"}'), f0=1, f1=1)
ws("frames_rate_limit_json", rec(1, chunk_json(SPEECH[:3200]), opt=12 << 4) + rec(1, '{"type":"finalize"}'), f0=1, f1=1)
ws("frames_backpressure", rec(2, SPEECH[:640], opt=10 << 4) + rec(9, "p") + rec(1, '{"type":"stop"}'), f1=1)
ws("frames_shed_load", rec(2, SPEECH[:640], opt=10 << 4) + rec(1, '{"type":"stop"}'), f0=8, f1=1)
ws("frames_slow_reader_many", rec(2, SPEECH[:320], opt=15 << 4) + rec(1, chunk_json(SPEECH[:320]), opt=15 << 4), f1=1 | 4 | 8)
ws("engine_errors", b"".join(rec(2, SPEECH[i:i + 1600]) for i in range(0, 12800, 1600)) + rec(1, '{"type":"stop"}'),
   f1=1 | 32)

# ---- fuzz_media ---------------------------------------------------------
# byte 0: bits 0-1 target rate (16000, 8000, 48000, 22050), bit 2 max_samples
# one second; the rest is the body, sniffed (no Content-Type).
for name, data in MEDIA.items():
    put("media", name, bytes([0]) + data)
if MEDIA:
    put("media", "webm_opus_to_8k_max_1s", bytes([1 | 4]) + MEDIA["webm_opus_48k.webm"])
    put("media", "webm_truncated", bytes([0]) + MEDIA["webm_opus_48k.webm"][:900])
    put("media", "m4a_truncated", bytes([0]) + MEDIA["m4a_aac_16k.m4a"][:1200])
    put("media", "adts_one_frame", bytes([2]) + MEDIA["adts_aac_16k.aac"][:400])
    put("media", "ebml_header_only", bytes([0]) + MEDIA["webm_opus_48k.webm"][:40])
    put("media", "ftyp_only", bytes([0]) + MEDIA["m4a_aac_16k.m4a"][:32])

# ---- fuzz_multipart -----------------------------------------------------
# byte 0: bit 0 form mode, bits 1-3 boundary (fuzz_multipart.c BOUNDARIES:
# 0 undici, 1 X-curl, 2 b), bit 4 raw mode: Content-Type on the first line.
# Form mode records: flags (1 filename, 2 Content-Type, 4 named "file"),
# name length, name, u16le data length, data.


def mp_body(boundary, parts, close=True):
    out = b""
    for headers, data in parts:
        out += b"--" + boundary + b"\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n" + data + b"\r\n"
    return out + (b"--" + boundary + b"--\r\n" if close else b"")


def cd(name, filename=None):
    v = b'Content-Disposition: form-data; name="' + name + b'"'
    return v + (b'; filename="' + filename + b'"' if filename else b"")


WAV_SEED = AUDIO["wav_16k_mono_s16.wav"][:1200]
UNDICI = b"----formdata-undici-0123456789"
put("multipart", "sdk_form", bytes([0 << 1]) + mp_body(UNDICI, [
    ([cd(b"file", b"speech.wav"), b"Content-Type: audio/wav"], WAV_SEED),
    ([cd(b"model")], b"whisper-1"), ([cd(b"response_format")], b"verbose_json"),
    ([cd(b"timestamp_granularities[]")], b"word"), ([cd(b"timestamp_granularities[]")], b"segment"),
    ([cd(b"stream")], b"true")]))
put("multipart", "curl_form_preamble", bytes([1 << 1]) + b"preamble\r\n" + mp_body(b"X-curl", [
    ([cd(b"file", b"a.mp3"), b"Content-Type: audio/mpeg"], b"ID3\x03\x00\x00\x00"), ([cd(b"model")], b"x")]) + b"epilogue")
put("multipart", "no_close_delimiter", bytes([2 << 1]) + mp_body(b"b", [([cd(b"model")], b"x")], close=False))
put("multipart", "nested_mixed", bytes([2 << 1]) + mp_body(b"b", [
    ([cd(b"files"), b"Content-Type: multipart/mixed; boundary=c"], mp_body(b"c", [([b"Content-Type: text/plain"], b"x")]))]))
put("multipart", "base64_part", bytes([2 << 1]) + mp_body(b"b", [
    ([cd(b"file", b"a.wav"), b"Content-Transfer-Encoding: base64"], b"UklGRg==")]))
put("multipart", "rfc2231_filename", bytes([2 << 1]) + mp_body(b"b", [
    ([b"Content-Disposition: form-data; name=\"file\"; filename*=UTF-8''%E2%82%AC.wav"], b"RIFF")]))
put("multipart", "lf_only", bytes([2 << 1]) + b"--b\nContent-Disposition: form-data; name=\"model\"\n\nx\n--b--\n")
put("multipart", "type_on_first_line", bytes([16]) + b"multipart/form-data; boundary=zz; charset=utf-8\n" +
    mp_body(b"zz", [([cd(b"model")], b"x")]))
put("multipart", "type_not_multipart", bytes([16]) + b"application/x-www-form-urlencoded\nmodel=x&file=y")


def rec(name, data, flags=0):
    return bytes([flags, len(name)]) + name + struct.pack("<H", len(data)) + data


put("multipart", "form_sdk_like", bytes([1 | 0 << 1]) + rec(b"", WAV_SEED[:600], 1 | 2 | 4) + rec(b"model", b"whisper-1") +
    rec(b"language", b"en") + rec(b"prompt", b"a hint"))
put("multipart", "form_binary_crlf_dashes", bytes([1 | 2 << 1]) + rec(b"", b"\r\n--c\r\n--\r\n\x00\xff--b-", 1 | 4) +
    rec(b"stream", b"true"))
put("multipart", "form_big_field", bytes([1 | 1 << 1]) + rec(b"prompt", b"p" * 600))
put("multipart", "form_empty_parts", bytes([1 | 3 << 1]) + rec(b"", b"", 4) + rec(b"a", b"") + rec(b"b", b"", 3))

# fuzz_http seeds of the OpenAI-compatible routes (they need mp_body).


def oa_post(path, parts, boundary=b"b", extra=b""):
    body = mp_body(boundary, parts)
    return (b"POST " + path + b" HTTP/1.1\r\nContent-Type: multipart/form-data; boundary=" + boundary + b"\r\n" + extra +
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


PCM_PART = ([cd(b"file", b"a.pcm"), b"Content-Type: audio/pcm; rate=16000"], SPEECH[:3200])
http("openai_transcribe_pcm", oa_post(b"/v1/audio/transcriptions", [PCM_PART, ([cd(b"model")], b"whisper-1")]) +
     b"GET /v1/models HTTP/1.1\r\n\r\n")
http("openai_verbose_words", oa_post(b"/v1/audio/transcriptions", [
    PCM_PART, ([cd(b"model")], b"x"), ([cd(b"response_format")], b"verbose_json"),
    ([cd(b"timestamp_granularities[]")], b"word"), ([cd(b"prompt")], b"a hint")]))
http("openai_stream", oa_post(b"/v1/audio/transcriptions", [PCM_PART, ([cd(b"model")], b"x"), ([cd(b"stream")], b"true")]) +
     b"GET /v1/health HTTP/1.1\r\n\r\n")
http("openai_srt_wav", oa_post(b"/v1/audio/transcriptions", [
    ([cd(b"file", b"a.wav"), b"Content-Type: audio/wav"], AUDIO["wav_16k_mono_s16.wav"]), ([cd(b"model")], b"x"),
    ([cd(b"response_format")], b"srt")]))
http("openai_missing_file", oa_post(b"/v1/audio/transcriptions", [([cd(b"model")], b"x")]))
http("openai_granularity_mix", oa_post(b"/v1/audio/transcriptions", [
    PCM_PART, ([cd(b"model")], b"x"), ([cd(b"timestamp_granularities[]")], b"word")]))
http("openai_not_a_form", b"POST /v1/audio/transcriptions HTTP/1.1\r\nContent-Type: application/json\r\n"
     b"Content-Length: 13\r\n\r\n{\"model\":\"x\"}")
http("openai_translations", oa_post(b"/v1/audio/translations", [PCM_PART, ([cd(b"model")], b"x")]))
http("openai_keys_bearer", oa_post(b"/v1/audio/transcriptions", [PCM_PART, ([cd(b"model")], b"x")],
                                   extra=b"Authorization: Bearer fuzzkey1\r\n"), 0x10)
http("openai_get_405", b"GET /v1/audio/transcriptions HTTP/1.1\r\n\r\n")
http("openai_http10_stream", oa_post(b"/v1/audio/transcriptions", [PCM_PART, ([cd(b"model")], b"x"),
                                                                   ([cd(b"stream")], b"true")]).replace(b"HTTP/1.1", b"HTTP/1.0"))

# ---- fuzz_stream_msg ----------------------------------------------------
msgs = {
    "stop": '{"type":"stop"}',
    "finalize": '{"type":"finalize"}',
    "keepalive_extra": '{"type":"keepalive","extra":[1,{"a":null}]}',
    "chunk_short": chunk_json(SPEECH[:64], 7),
    "chunk_long_fast_path": chunk_json(SPEECH[:2400], 12),
    "chunk_long_no_seq": chunk_json(SPEECH[:600]),
    "chunk_data_first": '{"data":"' + base64.b64encode(SPEECH[:300]).decode() + '","type":"audio_chunk","sequence":3}',
    "chunk_spaces": '{ "type" : "audio_chunk" , "data" :  "' + base64.b64encode(SPEECH[:300]).decode() + '" }',
    "chunk_escaped_data": '{"type":"audio_chunk","data":"' + base64.b64encode(SPEECH[:300]).decode().replace("/", "\\/") + '"}',
    "chunk_nested_data": '{"x":{"data":"AAAA"},"type":"audio_chunk","data":"' + base64.b64encode(SPEECH[:300]).decode() + '"}',
    "chunk_bad_b64_long": '{"type":"audio_chunk","data":"' + "@" * 400 + '"}',
    "chunk_seq_string": '{"type":"audio_chunk","data":"AAAA","sequence":"1"}',
    "chunk_seq_negative": '{"type":"audio_chunk","data":"AAAA","sequence":-5}',
    "chunk_seq_huge": '{"type":"audio_chunk","data":"AAAA","sequence":18446744073709551616}',
    "chunk_seq_float": '{"type":"audio_chunk","data":"AAAA","sequence":1.0}',
    "chunk_no_data": '{"type":"audio_chunk","sequence":1}',
    "duplicate_keys": '{"type":"stop","type":"finalize"}',
    "not_object": '["type","stop"]',
    "unknown_type": '{"type":"dance"}',
    "type_not_string": '{"type":1}',
    "nul_escape": '{"type":"st\\u0000op"}',
    "deep_nesting": '{"type":"stop","x":' + "[" * 300 + "]" * 300 + "}",
    "not_json": "hello",
    "config_text": '{"type":"config","expected_text":"He was not an ill-disposed young man."}',
    "config_text_escapes": '{"type":"config","expected_text":"Caf\\u00e9 \\"na\\u00efve\\" \\u2014 done"}',
    "config_reference": '{"type":"config","reference_id":"verse-1.1"}',
    "config_both": '{"type":"config","expected_text":"a","reference_id":"b"}',
    "config_neither": '{"type":"config"}',
    "config_not_string": '{"type":"config","expected_text":["a"]}',
    "config_with_data": '{"type":"config","data":"' + "A" * 400 + '","expected_text":"go forward"}',
}
for name, m in msgs.items():
    put("stream_msg", name, m)

# ---- fuzz_feedback -------------------------------------------------------
# byte 0: bit 0 at the end of the reading, bit 1 settled; the text, 0xff, the
# hypothesis (utterances separated by newlines)
fb = {
    "exact": (0, "go forward ten meters", "go forward\nten meters"),
    "at_end_missing": (1, "He was not an ill-disposed old man. He was rich.", "he was not an ill disposed he an man"),
    "restart": (0, "a b c d e f", "a b c d\nc d e f"),
    "repeated": (2, "the cat and the dog", "the the cat and dog"),
    "unicode": (1, "Caf\u00e9 na\u00efve \u00c5ngstr\u00f6m \ufb01ne STRASSE", "cafe naive angstrom fine stra\u00dfe"),
    "punct_only": (0, "-- ... !", "a"),
    "marks": (0, "e.\u0301 co\u00adoperate", "\u00e9 cooperate"),
}
for name, (flags, text, hyp) in fb.items():
    put("feedback", name, bytes([flags]) + text.encode() + b"\xff" + hyp.encode())

# ---- fuzz_base64 --------------------------------------------------------
# byte 0: bit 0 escape as JSON, bit 1 data first, bit 2 sequence, bit 3 pad past 256, bit 4 spaces
b64 = {
    "empty": (0, b""),
    "one_byte": (0, b"AA=="),
    "two_bytes": (4, b"AAA="),
    "three_bytes": (8, b"AAAA"),
    "pcm_long": (0, base64.b64encode(SPEECH[:1200])),
    "pcm_long_escaped": (1 | 2, base64.b64encode(SPEECH[:1200])),
    "non_canonical": (8, b"AB=="),
    "no_padding": (8, b"AAA"),
    "url_alphabet": (8, b"-_-_"),
    "whitespace": (1, b"AA AA"),
    "inner_padding": (8, b"AA==AAAA"),
    "newline_escaped": (1 | 16, b"AAAA\nAAAA"),
    "quote_raw": (0, b'AA"AA'),
    "all_symbols": (8, b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"),
}
for name, (fl, s) in b64.items():
    put("base64", name, bytes([fl]) + s)

# ---- fuzz_query ---------------------------------------------------------
# byte 0: bits 0-2 extra name (sample_rate, encoding, session_id, api_key, a, "", a=b, %41),
#         bits 3-5 its output size (1, 2, 3, 8, 16, 80, 256, 4096)
q = {
    "all_params": (0, "/v1/transcribe/stream?sample_rate=16000&encoding=pcm_s16le&session_id=0123456789abcdef0123456789abcdef&api_key=fuzzkey1"),
    "percent": (1 | 5 << 3, "/v1/transcribe/stream?encoding=pcm%5Fs16le&sample_rate=%31%36000"),
    "plus_and_bad_percent": (4 | 3 << 3, "/x?a=1+2%2&a=second&b=%zz%4"),
    "api_key_spaces": (3 | 6 << 3, "/?api_key=k2+with%20space"),
    "empty_values": (5 | 1 << 3, "/?&=&sample_rate&encoding=&"),
    "no_query": (0, "/v1/health"),
    "long_value": (2 | 0 << 3, "/?session_id=" + "a" * 200),
    "dup_and_eq": (6 | 4 << 3, "/?a=b=c&a=b&%41=1&A=2"),
    "question_in_query": (0, "/p?sample_rate=8000?x=1&?encoding=pcm_s16le"),
    "token_before_key": (3 | 6 << 3, "/v1/transcribe/stream?api_key=fuzzkey1&token=asrd1.AAAA"),
    "token_is_a_key": (0, "/?token=fuzzkey1&api_key=nope"),
}
for name, (sel, url) in q.items():
    put("query", name, bytes([sel]) + url.encode())

# ---- fuzz_jobreq -------------------------------------------------------
# byte 0: bits 0-1 parser (0 JSON, 1 multipart, 2 option), bits 2-4 the
# option's name or the multipart bound; multipart: Content-Type, '\n', body
jr = {
    "json_full": (0, '{"url":"https://a.example/x.wav","callback":"http://b/c","granularity":"segment",'
                     '"hint":"go forward","endpointing_ms":400,"metadata":"m1"}'),
    "json_url_only": (0, '{"url":"http://127.0.0.1:8000/a.wav"}'),
    "json_unknown": (0, '{"url":"http://a/b","model":"x"}'),
    "json_dup": (0, '{"url":"http://a/b","url":"http://a/c"}'),
    "json_not_object": (0, '["http://a/b"]'),
    "mp_two_files": (1 | 3 << 2, 'multipart/form-data; boundary=XyZ\n--XyZ\r\nContent-Disposition: form-data; '
                     'name="file"; filename="a.wav"\r\nContent-Type: audio/wav\r\n\r\nRIFF1\r\n--XyZ\r\n'
                     'Content-Disposition: form-data; name=file; filename="b.flac"\r\n\r\nfLaC2\r\n--XyZ\r\n'
                     'Content-Disposition: form-data; name="callback"\r\n\r\nhttp://x/y\r\n--XyZ--\r\n'),
    "mp_quoted_boundary": (1 | 1 << 2, 'multipart/form-data; charset=x; boundary="a b"\n--a b\r\n'
                           'Content-Disposition: form-data; name="file"\r\n\r\ndata\r\n--a b--'),
    "mp_no_end": (1, 'multipart/form-data; boundary=q\n--q\r\nContent-Disposition: form-data; name=a\r\n\r\nx'),
    "opt_callback": (2 | 0 << 2, "https://hooks.example/asrd?x=1"),
    "opt_granularity": (2 | 1 << 2, "segment"),
    "opt_hint": (2 | 2 << 2, "go forward ten meters"),
    "opt_endpointing": (2 | 3 << 2, "300"),
    "opt_metadata": (2 | 4 << 2, "order 4712"),
}
for name, (sel, text) in jr.items():
    put("jobreq", name, bytes([sel]) + text.encode())

shutil.rmtree(TMP)
for t in sorted(os.listdir(ROOT)):
    files = os.listdir(os.path.join(ROOT, t))
    big = max(os.path.getsize(os.path.join(ROOT, t, f)) for f in files)
    print(f"{t}: {len(files)} seeds, largest {big} bytes")
