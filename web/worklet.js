// The microphone's audio as 16 kHz mono 16-bit PCM (pcm_s16le, what
// GET /v1/transcribe/stream takes), in 100 ms chunks posted to the page.
//
// The audio context runs at the device's rate (48 kHz, 44.1 kHz...). Each
// input sample goes through a low-pass FIR (a Blackman-windowed sinc cut at
// 7 kHz, below the 8 kHz Nyquist frequency of the output) and the output
// samples are taken every rate/16000 input samples, by linear interpolation
// between the two filtered samples around each one. At 48 kHz that is 63
// multiply-adds per input sample, about 3 million a second.

const OUT_RATE = 16000;
const CHUNK = OUT_RATE / 10; // 100 ms
const TAPS = 63;

function lowpass(cutoff) { // cutoff: cycles per input sample
  const h = new Float32Array(TAPS);
  const m = (TAPS - 1) / 2;
  let sum = 0;
  for (let n = 0; n < TAPS; n++) {
    const x = n - m;
    const sinc = x === 0 ? 2 * cutoff : Math.sin(2 * Math.PI * cutoff * x) / (Math.PI * x);
    const w = 0.42 - 0.5 * Math.cos((2 * Math.PI * n) / (TAPS - 1)) + 0.08 * Math.cos((4 * Math.PI * n) / (TAPS - 1));
    h[n] = sinc * w;
    sum += h[n];
  }
  for (let n = 0; n < TAPS; n++) h[n] /= sum; // unity gain at 0 Hz
  return h;
}

class Pcm16k extends AudioWorkletProcessor {
  constructor() {
    super();
    this.step = sampleRate / OUT_RATE;                // input samples per output sample
    this.h = this.step > 1 ? lowpass(7000 / sampleRate) : null;
    this.line = new Float32Array(TAPS * 2);           // the filter's delay line, written twice
    this.at = 0;                                      // where the next sample goes in it
    this.t = 0;                                       // index of the next input sample
    this.next = 0;                                    // position of the next output sample, in input samples
    this.prev = 0;                                    // the previous filtered sample
    this.out = new Int16Array(CHUNK);
    this.n = 0;
    this.stopped = false;
    this.port.onmessage = (e) => { if (e.data === 'stop') this.flush(true); };
  }

  filtered(x) {
    if (!this.h) return x;
    // Each sample is written at at and at + TAPS, so after at moves on the
    // last TAPS samples are one contiguous run: line[at .. at + TAPS - 1].
    this.line[this.at] = x;
    this.line[this.at + TAPS] = x;
    this.at = (this.at + 1) % TAPS;
    let y = 0;
    const base = this.at;
    for (let k = 0; k < TAPS; k++) y += this.h[k] * this.line[base + k];
    return y;
  }

  emit(v) {
    const s = v < -1 ? -1 : v > 1 ? 1 : v;
    this.out[this.n++] = s < 0 ? s * 0x8000 : s * 0x7fff;
    if (this.n === CHUNK) this.flush(false);
  }

  flush(last) {
    if (this.n) {
      const chunk = this.out.slice(0, this.n);
      this.port.postMessage(chunk.buffer, [chunk.buffer]);
      this.n = 0;
    }
    if (last) {
      this.stopped = true;
      this.port.postMessage('stopped');
    }
  }

  process(inputs) {
    if (this.stopped) return false;
    const ch = inputs[0] && inputs[0][0];
    if (!ch) return true;
    for (let i = 0; i < ch.length; i++) {
      const y = this.filtered(ch[i]);
      // output positions in (t - 1, t]: between the previous sample and this one
      while (this.next <= this.t) {
        const frac = this.next - (this.t - 1);
        this.emit(this.prev + (y - this.prev) * frac);
        this.next += this.step;
      }
      this.prev = y;
      this.t++;
    }
    return true;
  }
}

registerProcessor('pcm16k', Pcm16k);
