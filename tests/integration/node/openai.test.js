// The official `openai` npm package against asrd, unchanged but for baseURL
// (docs/API.md "OpenAI-compatible API"): a WAV, an MP3 and a WebM/Opus file
// (made here by Debian's ffmpeg from pocketsphinx's test recording "go
// forward ten meters") in every response format, with word timestamps, and
// with stream: true through the SDK's event iterator; the SDK's own
// exceptions for a wrong key and for translations; models.list().
// Starts its own asrd (ASRD_BIN) with the pocketsphinx engine.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { OpenAI, toFile } = require('openai');
const { startServer } = require('./asrd');

const RAW = '/usr/share/pocketsphinx/test/data/goforward.raw';
const TEXT = 'go forward ten meters';
const KEY = 'sk-asrd-test-0123456789';

// One worker, sessions in memory, pocketsphinx with two inference threads.
const startPs = (extra) => startServer({ ASR_WORKERS: '1', ASR_REDIS_URL: 'memory', ASR_ENGINE: 'pocketsphinx',
                                         ASR_INFERENCE_THREADS: '2', ...extra });

// The recording as the files people upload, made at test time.
function makeMedia(dir) {
  const wav = path.join(dir, 'goforward.wav');
  const ff = (...args) => execFileSync('ffmpeg', ['-nostdin', '-loglevel', 'error', '-y', ...args]);
  ff('-f', 's16le', '-ar', '16000', '-ac', '1', '-i', RAW, wav);
  ff('-i', wav, '-c:a', 'libmp3lame', '-b:a', '64k', path.join(dir, 'goforward.mp3'));
  // what Chromium's MediaRecorder makes: Opus at 48 kHz in WebM
  ff('-i', wav, '-ar', '48000', '-c:a', 'libopus', '-b:a', '32k', '-f', 'webm', path.join(dir, 'goforward.webm'));
  return ['goforward.wav', 'goforward.mp3', 'goforward.webm'].map((f) => path.join(dir, f));
}

const words = (s) => s.toLowerCase().replace(/[^a-z ]/g, ' ').split(/\s+/).filter((w) => w);

test('openai SDK: transcriptions in every format, words, streaming, errors', { timeout: 180000 }, async (t) => {
  if (!fs.existsSync(RAW)) {
    t.skip(`no ${RAW} (Debian's pocketsphinx-testdata)`);
    return;
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'asrd-openai-'));
  const files = makeMedia(dir);
  const srv = await startPs({ ASR_API_KEYS: KEY });
  try {
    const client = new OpenAI({ apiKey: KEY, baseURL: `http://127.0.0.1:${srv.port}/v1`, maxRetries: 0 });

    const models = [];
    for await (const m of client.models.list()) models.push(m.id);
    assert.deepEqual(models, ['pocketsphinx']);

    for (const file of files) {
      const name = path.basename(file);
      const open = () => fs.createReadStream(file);

      const json = await client.audio.transcriptions.create({ file: open(), model: 'whisper-1' });
      assert.deepEqual(words(json.text), words(TEXT), `${name} json: ${JSON.stringify(json)}`);

      const text = await client.audio.transcriptions.create({ file: open(), model: 'whisper-1',
                                                             response_format: 'text' });
      assert.equal(typeof text, 'string');
      assert.deepEqual(words(text), words(TEXT), `${name} text`);

      const srt = await client.audio.transcriptions.create({ file: open(), model: 'whisper-1',
                                                            response_format: 'srt' });
      assert.match(srt, /^1\n\d\d:\d\d:\d\d,\d\d\d --> \d\d:\d\d:\d\d,\d\d\d\ngo forward ten meters\n/, `${name} srt`);

      const vtt = await client.audio.transcriptions.create({ file: open(), model: 'whisper-1',
                                                            response_format: 'vtt' });
      assert.match(vtt, /^WEBVTT\n\n\d\d:\d\d:\d\d\.\d\d\d --> \d\d:\d\d:\d\d\.\d\d\d\ngo forward ten meters\n/, `${name} vtt`);

      const vj = await client.audio.transcriptions.create({ file: open(), model: 'whisper-1',
                                                           response_format: 'verbose_json' });
      assert.equal(vj.task, 'transcribe');
      assert.equal(vj.language, 'english');
      assert.ok(Math.abs(vj.duration - 2.786) < 0.1, `${name} duration ${vj.duration}`);
      assert.deepEqual(words(vj.text), words(TEXT));
      assert.equal(vj.segments.length, 1);
      assert.equal(vj.segments[0].id, 0);
      assert.ok(vj.segments[0].start < vj.segments[0].end);
      assert.equal(vj.words, undefined, 'words only when asked');

      const vw = await client.audio.transcriptions.create({
        file: await toFile(fs.readFileSync(file), name), model: 'whisper-1', response_format: 'verbose_json',
        timestamp_granularities: ['word', 'segment'] });
      assert.deepEqual(vw.words.map((w) => w.word), words(TEXT), `${name} words: ${JSON.stringify(vw.words)}`);
      let prev = 0;
      for (const w of vw.words) {
        assert.ok(w.start >= prev && w.end > w.start && w.end <= vw.duration, JSON.stringify(w));
        prev = w.end;
      }
      assert.equal(vw.segments.length, 1);

      const wordsOnly = await client.audio.transcriptions.create({ file: open(), model: 'whisper-1',
        response_format: 'verbose_json', timestamp_granularities: ['word'] });
      assert.equal(wordsOnly.words.length, 4);
      assert.equal(wordsOnly.segments, undefined, 'segments only when asked (or by default)');

      const stream = await client.audio.transcriptions.create({ file: open(), model: 'whisper-1', stream: true });
      const deltas = [];
      let done = null;
      for await (const ev of stream) {
        if (ev.type === 'transcript.text.delta') deltas.push(ev.delta);
        else if (ev.type === 'transcript.text.done') done = ev;
        else assert.fail(`unexpected event ${JSON.stringify(ev)}`);
      }
      assert.ok(deltas.length >= 1, `${name}: no delta`);
      assert.ok(done, `${name}: no done event`);
      assert.equal(deltas.join(''), done.text, `${name}: deltas ${JSON.stringify(deltas)} vs done ${done.text}`);
      assert.deepEqual(words(done.text), words(TEXT));
    }

    // the SDK's exceptions
    const bad = new OpenAI({ apiKey: 'sk-wrong', baseURL: `http://127.0.0.1:${srv.port}/v1`, maxRetries: 0 });
    await assert.rejects(bad.audio.transcriptions.create({ file: fs.createReadStream(files[0]), model: 'whisper-1' }),
      (e) => e instanceof OpenAI.AuthenticationError && e.status === 401 && e.code === 'invalid_api_key');
    await assert.rejects(client.audio.translations.create({ file: fs.createReadStream(files[0]), model: 'whisper-1' }),
      (e) => e instanceof OpenAI.BadRequestError && /translat/i.test(e.message));
    await assert.rejects(client.audio.transcriptions.create({ file: fs.createReadStream(files[0]), model: 'whisper-1',
      response_format: 'json', timestamp_granularities: ['word'] }),
      (e) => e instanceof OpenAI.BadRequestError && e.param === 'timestamp_granularities[]');
    await assert.rejects(client.audio.transcriptions.create({
      file: await toFile(Buffer.from('this is not audio at all'), 'notes.txt'), model: 'whisper-1' }),
      (e) => e instanceof OpenAI.BadRequestError && e.code === 'invalid_file_format');
  } finally {
    await srv.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
