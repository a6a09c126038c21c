// What the Node tests share: asrd (ASRD_BIN) started on a free port with the
// settings a test gives, waited for on /v1/health, and stopped with SIGTERM
// and a check of its exit status and, for sanitized builds, of its stderr;
// a small HTTP client. The ASR_* variables of the environment are not passed
// on: each test says what its server runs with.
'use strict';
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const http = require('node:http');
const net = require('node:net');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..', '..', '..');
const BIN = path.resolve(ROOT, process.env.ASRD_BIN || 'build/release/asrd');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

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

// One request without keep-alive: {status, headers, body (a Buffer)}.
function request(method, url, { headers = {}, body, timeout = 30000 } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, timeout, agent: false }, (res) => {
      const parts = [];
      res.on('data', (d) => parts.push(d));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(parts) }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(body);
  });
}

// asrd with these ASR_* settings (on top of ASR_HOST and ASR_PORT), once
// /v1/health answers 200 (within 20 s). stop() sends SIGTERM (SIGKILL after
// 10 s) and asserts a clean exit.
async function startServer(settings = {}) {
  const port = await freePort();
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('ASR_')) delete env[k];
  Object.assign(env, { ASR_HOST: '127.0.0.1', ASR_PORT: String(port) }, settings);
  if (BIN.includes('asan')) {
    env.ASAN_OPTIONS = 'detect_leaks=1:abort_on_error=0';
    env.UBSAN_OPTIONS = 'print_stacktrace=1:halt_on_error=1';
  }
  const proc = spawn(BIN, [], { env, cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  const exited = new Promise((resolve) => proc.on('exit', (code, sig) => resolve({ code, sig })));
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`asrd exited ${proc.exitCode}: ${stderr}`);
    try {
      const r = await request('GET', `${base}/v1/health`, { timeout: 1000 });
      if (r.status === 200) break;
    } catch { /* not up yet */ }
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`asrd did not answer /v1/health in 20 s: ${stderr}`);
    }
    await sleep(50);
  }
  return {
    port, base, proc,
    stderr: () => stderr,
    async metrics() { return JSON.parse((await request('GET', `${base}/v1/metrics`)).body); },
    async stop() {
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 10000);
      const { code, sig } = await exited;
      clearTimeout(t);
      for (const m of ['ERROR: AddressSanitizer', 'runtime error:', 'LeakSanitizer'])
        assert.ok(!stderr.includes(m), `server stderr has ${m}:\n${stderr.slice(-3000)}`);
      assert.equal(code, 0, `asrd exit ${code} signal ${sig}:\n${stderr.slice(-2000)}`);
    },
  };
}

module.exports = { ROOT, BIN, sleep, freePort, request, startServer };
