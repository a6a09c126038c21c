// The page at / in a real browser: Debian's chromium (/usr/bin/chromium)
// driven by playwright-core, headless, with a fake microphone that plays a
// WAV made here (espeak-ng, or pocketsphinx's goforward.raw through sox, at
// 48 kHz as Chromium captures: the page's AudioWorklet resamples it to
// 16 kHz). docs/API.md "Browsers: CORS, tokens and the page".
//
//   - live transcription: the transcript appears (mock engine), and is the
//     right one with pocketsphinx ("go forward ten meters");
//   - a file through the page's upload to POST /v1/audio/transcriptions;
//   - reading practice: the words' statuses, or the page's "not available
//     on this server" when the server has no reading feedback;
//   - another origin's page calls REST and the stream through CORS with a
//     token its own backend minted; a third origin is refused;
//   - a screenshot of the page after a session: build/artifacts/web-session.png.
//
// Nothing is downloaded: the browser is the system's, the test pages come
// from a local server. Each test starts its own asrd (ASRD_BIN).
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const { chromium } = require('playwright-core');
const { ROOT, BIN, sleep, freePort, request, startServer: startAsrd } = require('./asrd');

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = path.join(ROOT, 'build', 'artifacts');
const GOFORWARD = '/usr/share/pocketsphinx/test/data/goforward.raw';
const KEY = 'browser-test-key';
const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'asrd-web-'));

// One worker, sessions in memory, the mock at 20 ms (the page's tests).
const startServer = (extra = {}) => startAsrd({ ASR_WORKERS: '1', ASR_REDIS_URL: 'memory', ASR_MOCK_LATENCY_MS: '20',
                                                 ...extra });

// The fake microphone's recordings, 48 kHz mono 16-bit, with silence around
// the speech so that utterances end.
function makeWav(name, source) {
  const out = path.join(TMP, name);
  if (source === 'espeak') {
    const raw = path.join(TMP, 'espeak.wav');
    execFileSync('espeak-ng', ['-v', 'en', '-s', '150', '-w', raw, 'hello world, this is a speech test']);
    execFileSync('sox', [raw, '-r', '48000', '-c', '1', '-b', '16', out, 'pad', '0.5', '1.5']);
  } else {
    execFileSync('sox', ['-t', 'raw', '-r', '16000', '-e', 'signed', '-b', '16', '-c', '1', source,
                         '-r', '48000', '-c', '1', '-b', '16', out, 'pad', '0.5', '1.5']);
  }
  return out;
}

const wavSeconds = (file) => (fs.statSync(file).size - 44) / (48000 * 2);

// A fresh headless Chromium with an empty profile whose microphone plays wav
// once (%noloop) and is granted without asking.
async function browser(wav) {
  const profile = fs.mkdtempSync(path.join(TMP, 'profile-'));
  const args = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--use-fake-ui-for-media-stream'];
  if (wav) args.push('--use-fake-device-for-media-stream', `--use-file-for-fake-audio-capture=${wav}%noloop`);
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM, headless: true, args, viewport: { width: 1000, height: 900 },
  });
  const errors = [];
  ctx.on('weberror', (e) => errors.push(String(e.error())));
  return { ctx, errors, page: ctx.pages()[0] || await ctx.newPage() };
}

// Start, let the recording play, Stop, and wait for the server's close.
async function liveSession(page, seconds) {
  await page.click('#live-btn');
  await page.waitForFunction(() => document.querySelector('#live-status').textContent === 'Listening…',
    null, { timeout: 15000 });
  await sleep(seconds * 1000 + 500);
  await page.click('#live-btn');
  await page.waitForFunction(() => {
    const b = document.querySelector('#live-btn');
    return b.textContent === 'Start' && !b.disabled;
  }, null, { timeout: 60000 });
}

async function engineBuiltIn(name) {
  return execFileSync(BIN, ['--help']).toString().includes(`ASR_ENGINE=${name}`);
}

test.before(() => {
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} is missing: scripts/deps.sh test installs Debian's chromium`);
  fs.mkdirSync(ARTIFACTS, { recursive: true });
});
test.after(() => fs.rmSync(TMP, { recursive: true, force: true }));

test('the page shows the transcript of the microphone (mock engine), screenshot kept', async () => {
  const wav = makeWav('speech48k.wav', 'espeak');
  const srv = await startServer();
  const { ctx, page, errors } = await browser(wav);
  try {
    await page.goto(`${srv.base}/`);
    assert.equal(await page.title(), 'asrd');
    await page.waitForFunction(() => document.querySelector('#server').textContent.startsWith('Server ok'));
    const seen = { partial: false };
    await page.click('#live-btn');
    await page.waitForFunction(() => document.querySelector('#live-status').textContent === 'Listening…',
      null, { timeout: 15000 });
    // partials first: words of the open utterance
    await page.waitForFunction(() => document.querySelector('#partial').textContent.trim() !== '' ||
      document.querySelectorAll('#finals li').length > 0, null, { timeout: 15000 });
    seen.partial = true;
    await sleep(wavSeconds(wav) * 1000);
    await page.click('#live-btn');
    await page.waitForFunction(() => document.querySelector('#live-status').textContent === 'Done.',
      null, { timeout: 30000 });
    const finals = await page.$$eval('#finals li', (lis) => lis.map((li) => li.textContent));
    assert.ok(seen.partial);
    assert.ok(finals.length >= 1 && finals.every((t) => t.trim().length > 0), JSON.stringify(finals));
    assert.equal(await page.textContent('#partial'), '');
    const m = await srv.metrics();
    assert.ok(m.sessions.total >= 1 && m.finals.total >= 1, JSON.stringify(m.sessions));
    // the worklet sent 16 kHz PCM in 100 ms chunks: 3200 bytes each but the last
    assert.ok(m.chunks.accepted >= 10 && m.bytes_in.total <= m.chunks.accepted * 3200, JSON.stringify(m.chunks));
    assert.ok(m.audio_ms_in.total >= (wavSeconds(wav) - 0.5) * 1000, `${m.audio_ms_in.total} ms of audio`);
    await page.screenshot({ path: path.join(ARTIFACTS, 'web-session.png'), fullPage: true });
    assert.deepEqual(errors, []);
  } finally {
    await ctx.close();
    await srv.stop();
  }
});

test('real words through the page: pocketsphinx hears "go forward ten meters"', async (t) => {
  if (!(await engineBuiltIn('pocketsphinx')) || !fs.existsSync(GOFORWARD)) {
    t.skip('pocketsphinx or its test recording is not installed');
    return;
  }
  const wav = makeWav('goforward48k.wav', GOFORWARD);
  const srv = await startServer({ ASR_ENGINE: 'pocketsphinx', ASR_INFERENCE_THREADS: '1' });
  const { ctx, page } = await browser(wav);
  try {
    await page.goto(`${srv.base}/`);
    await liveSession(page, wavSeconds(wav));
    const finals = await page.$$eval('#finals li', (lis) => lis.map((li) => li.textContent));
    assert.equal(finals.join(' '), 'go forward ten meters');
    await page.screenshot({ path: path.join(ARTIFACTS, 'web-session-pocketsphinx.png'), fullPage: true });
  } finally {
    await ctx.close();
    await srv.stop();
  }
});

test('a file through the page to POST /v1/audio/transcriptions, with a key traded for a token', async () => {
  const srv = await startServer({ ASR_API_KEYS: KEY });
  const { ctx, page } = await browser(null);
  try {
    await page.goto(`${srv.base}/`);
    await page.waitForFunction(() => document.querySelector('#server').textContent.startsWith('Server ok'));
    const available = !(await page.$('#upload.unavailable'));
    if (!available) {
      // a server without the route: the page says so
      assert.match(await page.textContent('#upload'), /not available on this server/);
      return;
    }
    await page.setInputFiles('#file', path.join(ROOT, 'tests', 'data', 'generated', 'speech16k.wav'));
    // without the key: the route's refusal, shown
    await page.click('#upload-btn');
    await page.waitForFunction(() => /401/.test(document.querySelector('#upload-status').textContent));
    await page.click('#access summary');
    await page.fill('#key', KEY);
    await page.selectOption('#format', 'verbose_json');
    await page.click('#upload-btn');
    await page.waitForFunction(() => document.querySelector('#upload-status').textContent === 'Done.',
      null, { timeout: 30000 });
    const out = JSON.parse(await page.textContent('#upload-out'));
    assert.ok(out.text && out.text.length > 0 && Array.isArray(out.segments), JSON.stringify(out));
    const m = await srv.metrics();
    assert.equal(m.auth.tokens_issued, 1);
    assert.equal(m.requests.by_route.audio_transcriptions['200'], 1);
    assert.equal(m.requests.by_route.audio_transcriptions['401'], 1);
  } finally {
    await ctx.close();
    await srv.stop();
  }
});

// Whether the server takes a config message (reading feedback).
async function hasReadingFeedback(srv) {
  const WebSocket = require('ws');
  const ws = new WebSocket(`ws://127.0.0.1:${srv.port}/v1/transcribe/stream`);
  const answer = await new Promise((resolve, reject) => {
    ws.on('message', (d) => {
      const m = JSON.parse(d.toString());
      if (m.type === 'session') ws.send(JSON.stringify({ type: 'config', expected_text: 'a b' }));
      else resolve(m);
    });
    ws.on('error', reject);
  });
  ws.terminate();
  return answer.type === 'config';
}

test('reading practice colours the words as they are judged (or says it is not available)', async (t) => {
  const ps = (await engineBuiltIn('pocketsphinx')) && fs.existsSync(GOFORWARD);
  if (!ps) {
    t.skip('pocketsphinx or its test recording is not installed');
    return;
  }
  const wav = makeWav('goforward48k-read.wav', GOFORWARD);
  const srv = await startServer({ ASR_ENGINE: 'pocketsphinx', ASR_INFERENCE_THREADS: '1' });
  const { ctx, page } = await browser(wav);
  try {
    const supported = await hasReadingFeedback(srv);
    await page.goto(`${srv.base}/`);
    await page.fill('#expected', 'Go forward ten meters, then stop.');
    await page.click('#read-btn');
    if (!supported) {
      await page.waitForFunction(() => /not available on this server/.test(
        document.querySelector('#read-status').textContent), null, { timeout: 15000 });
      return;
    }
    await page.waitForFunction(() => document.querySelector('#read-status').textContent === 'Listening…',
      null, { timeout: 15000 });
    await sleep(wavSeconds(wav) * 1000 + 500);
    await page.click('#read-btn');
    await page.waitForFunction(() => /Score/.test(document.querySelector('#score').textContent),
      null, { timeout: 60000 });
    const words = await page.$$eval('#words > span', (s) => s.map((e) => [e.firstChild.textContent, e.className]));
    assert.deepEqual(words.map((w) => w[0].replace(/[^a-z]/gi, '').toLowerCase()),
      ['go', 'forward', 'ten', 'meters', 'then', 'stop']);
    const st = Object.fromEntries(words.map((w) => [w[0].replace(/[^a-z]/gi, '').toLowerCase(), w[1]]));
    for (const w of ['go', 'forward', 'ten', 'meters']) assert.equal(st[w], 'w correct', w);
    assert.equal(st.then, 'w missing'); // never reached: the speaker stopped
    assert.equal(st.stop, 'w missing');
    await page.screenshot({ path: path.join(ARTIFACTS, 'web-reading.png'), fullPage: true });
  } finally {
    await ctx.close();
    await srv.stop();
  }
});

// ---- another origin --------------------------------------------------------------

// The second origin's page: it got a token from its own backend (never the
// key) and calls asrd's REST route and stream across origins. Results go to
// window.result for the test to read.
function otherPage(asrd, token, pcmUrl) {
  return `<!doctype html><meta charset="utf-8"><title>other origin</title><script>
const ASRD = ${JSON.stringify(asrd)}, TOKEN = ${JSON.stringify(token)};
async function rest(tok) {
  try {
    const wav = await (await fetch('/speech.wav')).arrayBuffer();
    const r = await fetch(ASRD + '/v1/transcribe', { method: 'POST', body: wav,
      headers: { 'Content-Type': 'audio/wav', Authorization: 'Bearer ' + tok } });
    return { status: r.status, body: await r.json(), requestId: r.headers.get('X-Request-Id') };
  } catch (e) { return { failed: String(e) }; }
}
function stream(tok) {
  return new Promise(async (resolve) => {
    const pcm = new Uint8Array(await (await fetch(${JSON.stringify(pcmUrl)})).arrayBuffer());
    const ws = new WebSocket(ASRD.replace('http', 'ws') + '/v1/transcribe/stream?sample_rate=16000&token=' + tok);
    ws.binaryType = 'arraybuffer';
    const msgs = [];
    ws.onmessage = (e) => {
      const m = JSON.parse(e.data);
      msgs.push(m.type);
      if (m.type === 'session') {
        for (let i = 0; i < pcm.length; i += 3200) ws.send(pcm.slice(i, i + 3200));
        ws.send('{"type":"stop"}');
      }
    };
    ws.onclose = (e) => resolve({ code: e.code, msgs });
  });
}
window.run = async () => ({ rest: await rest(TOKEN), stream: await stream(TOKEN),
                            badToken: await rest(TOKEN.slice(0, -2) + 'AA') });
</script><p>another origin</p>`;
}

async function pageServer(html) {
  const port = await freePort();
  const wav = fs.readFileSync(path.join(ROOT, 'tests', 'data', 'generated', 'speech16k.wav'));
  const pcm = fs.readFileSync(path.join(ROOT, 'tests', 'data', 'generated', 'speech16k.pcm')).subarray(0, 32000 * 2);
  const s = http.createServer((req, res) => {
    if (req.url === '/speech.wav') res.end(wav);
    else if (req.url === '/speech.pcm') res.end(pcm);
    else res.end(html(port));
  });
  await new Promise((r) => s.listen(port, '127.0.0.1', r));
  return { origin: `http://127.0.0.1:${port}`, close: () => new Promise((r) => s.close(r)) };
}

test('another origin calls REST and the stream through CORS with a token; a third origin cannot', async () => {
  // the origins are known before asrd starts: two ports taken now
  let tokenForPage = null;
  const srvBox = {};
  const second = await pageServer(() => otherPage(srvBox.base, tokenForPage, '/speech.pcm'));
  const third = await pageServer(() => otherPage(srvBox.base, tokenForPage, '/speech.pcm'));
  const srv = await startServer({ ASR_API_KEYS: KEY, ASR_CORS_ORIGINS: second.origin });
  srvBox.base = srv.base;
  // the second origin's backend mints the token with the key (server to server)
  const r = await request('POST', `${srv.base}/v1/auth/token`, {
    headers: { Authorization: `Bearer ${KEY}`, 'Content-Type': 'application/json' }, body: '{"expires_in":60}' });
  assert.equal(r.status, 200, r.body.toString());
  tokenForPage = JSON.parse(r.body).token;
  const { ctx, page } = await browser(null);
  try {
    const m0 = await srv.metrics();
    await page.goto(`${second.origin}/`);
    const res = await page.evaluate(() => window.run());
    assert.equal(res.rest.status, 200, JSON.stringify(res.rest));
    assert.ok(res.rest.body.text.length > 0, JSON.stringify(res.rest.body));
    assert.match(res.rest.requestId, /^[0-9a-f]{32}$/); // an exposed header
    assert.equal(res.stream.code, 1000, JSON.stringify(res.stream));
    assert.equal(res.stream.msgs[0], 'session');
    assert.ok(res.stream.msgs.includes('final'), JSON.stringify(res.stream.msgs));
    // a refusal is readable across origins too
    assert.equal(res.badToken.status, 401);
    assert.equal(res.badToken.body.error.code, 'TOKEN_INVALID');

    await page.goto(`${third.origin}/`);
    const refused = await page.evaluate(() => window.run());
    assert.match(refused.rest.failed, /TypeError/); // the browser refused: no readable answer
    assert.equal(refused.stream.code, 1006);        // the upgrade was refused (403)
    assert.deepEqual(refused.stream.msgs, []);
    const m1 = await srv.metrics();
    assert.ok(m1.cors.preflights - m0.cors.preflights >= 1, JSON.stringify(m1.cors));
    assert.ok(m1.cors.refused - m0.cors.refused >= 1, JSON.stringify(m1.cors));
    assert.equal(m1.requests.by_route.stream['403'], 1);
    assert.equal(m1.sessions.total - m0.sessions.total, 1);
  } finally {
    await ctx.close();
    await srv.stop();
    await second.close();
    await third.close();
  }
});
