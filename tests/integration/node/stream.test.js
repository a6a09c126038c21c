// One full binary-mode streaming session with the espeak-ng audio, driven by
// the `ws` client: session, partials 1..N in order, final, close 1000
// (docs/API.md "Streaming"). Starts its own asrd (ASRD_BIN) on a free port.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const path = require('node:path');
const WebSocket = require('ws');

const ROOT = path.resolve(__dirname, '..', '..', '..');
const BIN = path.resolve(ROOT, process.env.ASRD_BIN || 'build/release/asrd');
const PCM = path.join(ROOT, 'tests', 'data', 'generated', 'speech16k.pcm');
const CHUNK = 3200; // 100 ms of 16 kHz s16 mono

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function get(url) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { timeout: 1000, agent: false }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Resolves like p, or rejects after ms; the timer never outlives p.
function withTimeout(p, ms, what) {
  let t;
  const timer = new Promise((_, reject) => {
    t = setTimeout(() => reject(new Error(`timeout (${ms} ms): ${what}`)), ms);
  });
  return Promise.race([p, timer]).finally(() => clearTimeout(t));
}

async function startServer() {
  const port = await freePort();
  const env = { ...process.env, ASR_HOST: '127.0.0.1', ASR_PORT: String(port),
                ASR_MOCK_LATENCY_MS: '20' };
  if (BIN.includes('asan')) {
    env.ASAN_OPTIONS = 'detect_leaks=1:abort_on_error=0';
    env.UBSAN_OPTIONS = 'print_stacktrace=1:halt_on_error=1';
  }
  const proc = spawn(BIN, [], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  const exited = new Promise((resolve) => proc.on('exit', (code, sig) => resolve({ code, sig })));
  const deadline = Date.now() + 10000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`asrd exited ${proc.exitCode}: ${stderr}`);
    try {
      const r = await get(`http://127.0.0.1:${port}/v1/health`);
      if (r.status === 200) break;
    } catch (e) { /* not up yet */ }
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`asrd did not answer /v1/health in 10 s: ${stderr}`);
    }
    await sleep(50);
  }
  return { port, proc, exited, stderr: () => stderr };
}

async function stopServer(srv) {
  const t0 = Date.now();
  srv.proc.kill('SIGTERM');
  let r;
  try {
    r = await withTimeout(srv.exited, 10000, 'asrd exit after SIGTERM');
  } catch (e) {
    srv.proc.kill('SIGKILL');
    throw e;
  }
  if (process.env.ASRD_DEBUG) console.log(`stop took ${Date.now() - t0} ms`);
  for (const m of ['ERROR: AddressSanitizer', 'runtime error:', 'LeakSanitizer']) {
    assert.ok(!srv.stderr().includes(m), `server stderr has ${m}:\n${srv.stderr()}`);
  }
  assert.equal(r.code, 0, `asrd exit ${r.code} signal ${r.sig}:\n${srv.stderr().slice(-2000)}`);
}

test('ws client: full binary streaming session', { timeout: 60000 }, async () => {
  const srv = await startServer();
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
    await stopServer(srv);
  }
});
