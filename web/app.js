// asrd's page (docs/API.md "The page at /"): live transcription from the
// microphone, reading practice with word-by-word feedback, and file upload
// to the OpenAI-compatible route. No framework, no build step. Every URL is
// relative to the page, so it also works behind a proxy under a path prefix.

const $ = (id) => document.getElementById(id);
const route = (path) => new URL(path, document.baseURI);

function say(el, text, isError = false) {
  el.textContent = text;
  el.classList.toggle('error', isError);
}

// The message of an error answer: {"error":{"code","message"}} (asrd) or
// OpenAI's {"error":{"message","type","code"}}.
async function failure(r) {
  let j = null;
  try { j = await r.json(); } catch { /* not JSON */ }
  const e = j && j.error;
  const code = e && (e.code || e.type);
  return `${r.status}${code ? ' ' + code : ''}: ${(e && e.message) || r.statusText || 'refused'}`;
}

// ---- access: an API key traded for a short-lived token ------------------------

let token = null; // {value, expiresAt (Unix s), key}

// The token to send, or null when no key was given (a server without keys).
// A token is reused until 30 s before it expires.
async function credential() {
  const key = $('key').value.trim();
  if (!key) return null;
  if (token && token.key === key && token.expiresAt - 30 > Date.now() / 1000) return token.value;
  const r = await fetch(route('v1/auth/token'), {
    method: 'POST',
    headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
    body: '{}',
  });
  if (!r.ok) throw new Error(`the key was refused (${await failure(r)})`);
  const j = await r.json();
  token = { value: j.token, expiresAt: j.expires_at, key };
  return token.value;
}

// ---- the microphone as 16 kHz PCM chunks (worklet.js) --------------------------

class Mic {
  async start(onChunk) {
    this.media = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: true },
    });
    this.ctx = new AudioContext();
    // made after awaits: a browser may hold it suspended until told again
    if (this.ctx.state === 'suspended') await this.ctx.resume();
    await this.ctx.audioWorklet.addModule(route('worklet.js'));
    this.node = new AudioWorkletNode(this.ctx, 'pcm16k');
    this.stopped = new Promise((resolve) => {
      this.node.port.onmessage = (e) => (e.data === 'stopped' ? resolve() : onChunk(e.data));
    });
    this.ctx.createMediaStreamSource(this.media).connect(this.node);
    this.node.connect(this.ctx.destination); // silent: the worklet writes no output
  }

  // Flushes the last partial chunk, then releases the device.
  async stop() {
    if (!this.node) return;
    this.node.port.postMessage('stop');
    await Promise.race([this.stopped, new Promise((r) => setTimeout(r, 500))]);
    this.media.getTracks().forEach((t) => t.stop());
    await this.ctx.close();
    this.node = null;
  }
}

// ---- a streaming session --------------------------------------------------------

// Opens GET /v1/transcribe/stream. A refused upgrade shows in a browser as a
// bare close (1006), so the route is asked over plain HTTP first: it checks
// the Origin and the credential before it wants an upgrade (426), and a
// refusal there comes with its code and message.
async function openStream(onMessage, onClose) {
  const tok = await credential();
  const url = route('v1/transcribe/stream');
  url.searchParams.set('sample_rate', '16000');
  if (tok) url.searchParams.set('token', tok);
  const probe = await fetch(url);
  if (probe.status !== 426) throw new Error(await failure(probe));
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  const ws = new WebSocket(url);
  ws.binaryType = 'arraybuffer';
  ws.onmessage = (e) => { if (typeof e.data === 'string') onMessage(JSON.parse(e.data)); };
  ws.onclose = (e) => onClose(e);
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = () => reject(new Error('the stream could not be opened'));
  });
  ws.onerror = null;
  return ws;
}

function closeText(e) {
  if (e.code === 1000) return 'Done.';
  return `Closed: ${e.code}${e.reason ? ' ' + e.reason : ''}.`;
}

// One session from Start to the server's close: the microphone's chunks go
// out as binary messages; Stop sends {"type":"stop"} after the last chunk.
class Session {
  constructor(btn, status, onMessage, onOpen) {
    this.btn = btn;
    this.status = status;
    this.onMessage = onMessage;
    this.onOpen = onOpen || ((s) => s.listen());
    this.ws = null;
    this.mic = null;
  }

  busy() { return this.ws !== null; }

  async start() {
    this.btn.disabled = true;
    say(this.status, 'Connecting…');
    try {
      this.ws = await openStream((m) => this.message(m), (e) => this.closed(e));
      this.btn.setAttribute('aria-pressed', 'true');
      this.btn.textContent = 'Stop';
    } catch (err) {
      this.ws = null;
      say(this.status, `Could not start: ${err.message}`, true);
    }
    this.btn.disabled = false;
  }

  // Starts the microphone (after the session message, or once a reading
  // session's text is accepted).
  async listen() {
    try {
      this.mic = new Mic();
      await this.mic.start((pcm) => { if (this.ws && this.ws.readyState === 1) this.ws.send(pcm); });
      say(this.status, 'Listening…');
    } catch (err) {
      say(this.status, `No microphone: ${err.message}`, true);
      this.stop();
    }
  }

  message(m) {
    if (m.type === 'session') this.onOpen(this);
    else if (m.type === 'error') say(this.status, `${m.code}: ${m.message}`, true);
    this.onMessage(m, this);
  }

  async stop() {
    this.btn.disabled = true;
    say(this.status, 'Finishing…');
    if (this.mic) await this.mic.stop();
    this.mic = null;
    if (this.ws && this.ws.readyState === 1) this.ws.send('{"type":"stop"}');
  }

  closed(e) {
    if (this.mic) this.mic.stop();
    this.mic = null;
    this.ws = null;
    this.btn.setAttribute('aria-pressed', 'false');
    this.btn.textContent = 'Start';
    this.btn.disabled = false;
    // an error shown (a refusal, a server without a feature) stays: it says why
    if (!this.status.classList.contains('error')) say(this.status, closeText(e), e.code !== 1000);
  }

  toggle() { return this.busy() ? this.stop() : this.start(); }
}

// ---- live transcription ---------------------------------------------------------

let words = []; // the open utterance's words so far (partials)

function liveMessage(m) {
  if (m.type === 'partial') {
    if (m.text) words.push(m.text);
    $('partial').textContent = words.join(' ');
    $('tentative').textContent = m.tentative || '';
  } else if (m.type === 'final') {
    if (m.text) {
      const li = document.createElement('li');
      li.textContent = m.text;
      $('finals').append(li);
    }
    words = [];
    $('partial').textContent = '';
    $('tentative').textContent = '';
  }
}

const live = new Session($('live-btn'), $('live-status'), liveMessage);
$('live-btn').addEventListener('click', () => {
  if (!live.busy()) {
    $('finals').textContent = '';
    words = [];
  }
  live.toggle();
});

// ---- reading practice -----------------------------------------------------------

const STATUS_TEXT = {
  correct: 'correct', minor_mistake: 'minor mistake', wrong: 'wrong', missing: 'missing', pending: 'not read yet',
};

// word_feedback: one entry per expected word, {word, status[, heard]}.
function showWords(fb) {
  const box = $('words');
  if (box.children.length !== fb.length) {
    box.textContent = '';
    for (let i = 0; i < fb.length; i++) box.append(document.createElement('span'), ' ');
  }
  const spans = box.children; // one per word (the spaces are text nodes)
  fb.forEach((w, i) => {
    const s = spans[i];
    s.className = `w ${w.status}`;
    s.textContent = w.word;
    const what = STATUS_TEXT[w.status] || w.status;
    s.title = w.heard && w.status !== 'correct' ? `${what}: heard “${w.heard}”` : what;
    if (w.status !== 'correct' && w.status !== 'pending') {
      const sr = document.createElement('span');
      sr.className = 'sr';
      sr.textContent = ` (${s.title})`;
      s.append(sr);
    }
  });
  const done = fb.filter((w) => w.status !== 'pending').length;
  const right = fb.filter((w) => w.status === 'correct').length;
  say($('score'), `${done} of ${fb.length} words read, ${right} correct.`);
}

function readingMessage(m, s) {
  if (m.type === 'config') {
    s.configured = true;
    s.listen();
  } else if (m.type === 'error' && !s.configured) {
    // A server without reading feedback refuses the config message as a
    // message of an unknown type; any other refusal (an empty or too long
    // text) is shown as it is.
    if (m.code === 'INVALID_MESSAGE' && /unknown/i.test(m.message || ''))
      say(s.status, 'Reading feedback is not available on this server.', true);
    if (s.ws) s.ws.close(1000);
  } else if ((m.type === 'partial' || m.type === 'final') && m.word_feedback) {
    showWords(m.word_feedback);
  } else if (m.type === 'verification') {
    if (m.word_feedback) showWords(m.word_feedback);
    const pct = Math.round((m.score || 0) * 100);
    say($('score'), `Score: ${pct} % of the words correct.`);
  } else if (m.type === 'verification_error') {
    say($('score'), `No final check: ${m.message || m.code}.`);
  }
}

const reading = new Session($('read-btn'), $('read-status'), readingMessage, (s) => {
  s.configured = false;
  s.ws.send(JSON.stringify({ type: 'config', expected_text: $('expected').value }));
});
$('read-btn').addEventListener('click', () => {
  if (!reading.busy()) {
    if (!$('expected').value.trim()) {
      say($('read-status'), 'Type the text to read first.', true);
      return;
    }
    $('words').textContent = '';
    say($('score'), '');
  }
  reading.toggle();
});

// ---- a file to POST /v1/audio/transcriptions -------------------------------------

async function upload() {
  const file = $('file').files[0];
  const status = $('upload-status');
  if (!file) {
    say(status, 'Choose a file first.', true);
    return;
  }
  const btn = $('upload-btn');
  btn.disabled = true;
  say(status, 'Transcribing…');
  $('upload-out').textContent = '';
  try {
    const tok = await credential();
    const form = new FormData();
    form.append('file', file);
    form.append('model', 'asrd');
    form.append('response_format', $('format').value);
    const r = await fetch(route('v1/audio/transcriptions'), {
      method: 'POST',
      headers: tok ? { Authorization: `Bearer ${tok}` } : {},
      body: form,
    });
    if (r.status === 404) throw new Error('not available on this server');
    if (!r.ok) throw new Error(await failure(r));
    const text = await r.text();
    const fmt = $('format').value;
    $('upload-out').textContent = fmt === 'json' || fmt === 'verbose_json' ? JSON.stringify(JSON.parse(text), null, 2) : text;
    say(status, 'Done.');
  } catch (err) {
    say(status, err.message, true);
  }
  btn.disabled = false;
}
$('upload-btn').addEventListener('click', upload);

// ---- what this server offers ------------------------------------------------------

function unavailable(section, why) {
  section.classList.add('unavailable');
  const p = document.createElement('p');
  p.className = 'status error';
  p.textContent = why;
  section.append(p);
}

async function discover() {
  try {
    const r = await fetch(route('v1/health'));
    const j = await r.json();
    say($('server'), `Server ${j.status}: ${j.active_sessions} active session${j.active_sessions === 1 ? '' : 's'}.`);
  } catch {
    say($('server'), 'The server does not answer.', true);
  }
  // A route that exists answers a method it lacks with 405; a missing one is 404.
  try {
    const r = await fetch(route('v1/audio/transcriptions'), { method: 'HEAD' });
    if (r.status === 404) unavailable($('upload'), 'File transcription (POST /v1/audio/transcriptions) is not available on this server.');
  } catch { /* the health line says it */ }
  if (!window.AudioWorkletNode || !navigator.mediaDevices) {
    const why = 'This browser cannot capture audio here (it needs AudioWorklet and a secure context: https or localhost).';
    unavailable($('live'), why);
    unavailable($('reading'), why);
  }
}

discover();
