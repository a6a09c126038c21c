// One full binary-mode streaming session with the espeak-ng audio, driven by
// the `ws` client: session, partials 1..N in order, final, close 1000
// (docs/API.md "Streaming"). Starts its own asrd (ASRD_BIN) on a free port.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const WebSocket = require('ws');
const { ROOT, sleep, startServer } = require('./asrd');

const PCM = path.join(ROOT, 'tests', 'data', 'generated', 'speech16k.pcm');
const CHUNK = 3200; // 100 ms of 16 kHz s16 mono


// Resolves like p, or rejects after ms; the timer never outlives p.
function withTimeout(p, ms, what) {
  let t;
  const timer = new Promise((_, reject) => {
    t = setTimeout(() => reject(new Error(`timeout (${ms} ms): ${what}`)), ms);
  });
  return Promise.race([p, timer]).finally(() => clearTimeout(t));
}

test('ws client: full binary streaming session', { timeout: 60000 }, async () => {
  const srv = await startServer({ ASR_MOCK_LATENCY_MS: '20' });
  try {
    let audio = Buffer.concat([Buffer.alloc(CHUNK * 5), fs.readFileSync(PCM)]);
    const pad = (CHUNK - (audio.length % CHUNK)) % CHUNK;
    audio = Buffer.concat([audio, Buffer.alloc(pad), Buffer.alloc(CHUNK * 12)]);
    const chunks = [];
    for (let i = 0; i < audio.length; i += CHUNK) chunks.push(audio.subarray(i, i + CHUNK));
    const n = chunks.length;

    const ws = new WebSocket(`ws://127.0.0.1:${srv.port}/v1/transcribe/stream?sample_rate=16000`);
    const msgs = [];
    let onMsg = () => {};
    const closed = new Promise((resolve, reject) => {
      ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() }));
      ws.on('error', reject);
    });
    ws.on('message', (data, isBinary) => {
      assert.equal(isBinary, false, 'server sent a binary frame');
      const m = JSON.parse(data.toString());
      msgs.push(m);
      onMsg();
    });
    const waitFor = (pred, ms, what) => new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`timeout waiting for ${what}; got ${JSON.stringify(msgs.slice(-5))}`)), ms);
      onMsg = () => { if (pred()) { clearTimeout(t); onMsg = () => {}; resolve(); } };
      onMsg();
    });
    await withTimeout(new Promise((resolve, reject) => {
      ws.on('open', resolve); ws.on('error', reject);
    }), 10000, 'WebSocket open');
    await waitFor(() => msgs.length >= 1, 10000, 'session');
    const s = msgs[0];
    assert.equal(s.type, 'session');
    assert.equal(typeof s.session_id, 'string');
    assert.equal(s.sample_rate, 16000);
    assert.equal(s.resumed, false);
    assert.equal(s.last_sequence, 0);
    assert.equal(typeof s.limits.max_chunk_bytes, 'number');

    for (const c of chunks) {
      ws.send(c, { binary: true });
      await sleep(25);
    }
    const count = (t) => msgs.filter((m) => m.type === t).length;
    await waitFor(() => count('partial') >= n && count('final') >= 1, 30000, 'partials and final');
    const before = msgs.length;
    ws.send(JSON.stringify({ type: 'stop' }));
    const { code, reason } = await withTimeout(closed, 15000, 'close after stop');
    assert.equal(code, 1000, `close ${code} ${reason}`);

    const partials = msgs.filter((m) => m.type === 'partial');
    assert.deepEqual(partials.map((p) => p.sequence), Array.from({ length: n }, (_, i) => i + 1));
    for (const p of partials) {
      assert.equal(typeof p.text, 'string');
      assert.equal(typeof p.is_speech, 'boolean');
      assert.ok(p.latency_ms.total >= p.latency_ms.inference);
    }
    assert.ok(msgs.some((m) => m.type === 'speech_started'), 'no speech_started');
    assert.equal(msgs.filter((m) => m.type === 'error').length, 0);
    const finals = msgs.slice(0, before).filter((m) => m.type === 'final');
    assert.ok(finals.length >= 1);
    const words = partials.map((p) => p.text).filter((t) => t).join(' ').split(/ +/).filter((w) => w);
    assert.deepEqual(finals.map((f) => f.text).join(' ').split(' '), words);
    for (const f of finals) assert.ok(f.text.length > 0 && f.start_ms < f.end_ms, JSON.stringify(f));
    const tail = msgs.slice(before);
    assert.deepEqual(tail.map((m) => m.type), ['final']);
    assert.equal(tail[0].text, '');
    assert.equal(tail[0].sequence, n);
    assert.equal(tail[0].start_ms, tail[0].end_ms);
  } finally {
    await srv.stop();
  }
});
