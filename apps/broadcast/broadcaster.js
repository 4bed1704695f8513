// The broadcaster: camera (or a test pattern) -> WebCodecs VideoEncoder -> one live,
// delay-sensitive stemflow.js message per encoded chunk on live/<channel>. Owns capture, the
// encoder's configuration (codec, resolution, bitrate, key-frame interval), and how key-frame
// requests from viewers are honoured: at most one key frame per KEY_FRAME_MIN_INTERVAL_MS, a
// request inside that interval deferred to its end (never dropped), so a late joiner waits at
// most that long plus a path's delay.
//
// Codec: VP8. Debian's Chromium 156 encodes VP8, VP9, H.264 and AV1 in headless mode (all
// software); on its fake camera at 640x360, 30 frames/s, VP8's encode took p50 1.5 ms / p95 7.7
// ms a frame, against 2.5 / 13.1 (VP9), 1.4 / 10.1 (H.264) and 2.5 / 14.0 (AV1)
// (benchmarks/broadcast.py --codecs, docs/benchmarks.md). VP8 is also the one every WebCodecs
// decoder has.

import { controlTopic, decodeControl, encodeChunk, videoTopic } from "./chunk.js";

export const CODEC = "vp8";
export const FRAME_RATE = 30;
export const RESOLUTIONS = { "320x180": [320, 180], "640x360": [640, 360], "1280x720": [1280, 720] };
export const BITRATES_KBPS = [500, 1000, 2000, 4000, 8000];
// A key frame costs several delta frames; two a second at most keeps a storm of requests (many
// viewers joining, a lossy path) from multiplying the stream's rate, and still gives a late
// joiner a picture well within 1 s.
export const KEY_FRAME_MIN_INTERVAL_MS = 500;
// Without requests, a key frame every GOP frames (10 s): viewers ask for one when they need it.
export const DEFAULT_GOP_FRAMES = 300;
// Frames waiting in the encoder past which a new one is skipped: a live encoder that fell
// behind must not add delay by queueing.
const MAX_ENCODE_QUEUE = 2;
const TRACE_KEEP = 36000;          // chunk sizes kept for a trace: 20 minutes at 30 frames/s

/** A moving test pattern with noise, so the encoder meets high bitrates (the fake camera's
 * picture is too simple: VP8 makes 230 kbit/s of it when asked for 2 Mbit/s). The noise is in
 * blocks of PATTERN_BLOCK pixels: at 640x360 asked for 2 Mbit/s, VP8 sent 3.7 Mbit/s of noise
 * at full resolution, 2.5 in 4-pixel blocks, 2.03 in 8-pixel blocks. */
const PATTERN_BLOCK = 8;
const PATTERN_TILES = 4;           // noise pictures shown in turn: each frame differs from the last

function patternStream(width, height) {
  const canvas = document.createElement("canvas");
  canvas.width = width; canvas.height = height;
  const ctx = canvas.getContext("2d");
  const tiles = [];
  for (let i = 0; i < PATTERN_TILES; i++) {
    const tile = new OffscreenCanvas(Math.ceil(width / PATTERN_BLOCK), Math.ceil(height / PATTERN_BLOCK));
    const tctx = tile.getContext("2d");
    const img = tctx.createImageData(tile.width, tile.height);
    const words = new Uint32Array(img.data.buffer);
    for (let at = 0; at < words.length; at += 16384) crypto.getRandomValues(words.subarray(at, at + 16384));
    for (let k = 3; k < img.data.length; k += 4) img.data[k] = 255;
    tctx.putImageData(img, 0, 0);
    tiles.push(tile);
  }
  ctx.imageSmoothingEnabled = false;
  let n = 0;
  const timer = setInterval(() => {
    ctx.drawImage(tiles[n % tiles.length], 0, 0, width, height);
    ctx.fillStyle = "#0b1020c0"; ctx.fillRect(0, height / 3, width, height / 3);
    ctx.fillStyle = "#fff"; ctx.font = `${Math.round(height / 6)}px sans-serif`;
    ctx.fillText(`frame ${n}`, width / 10, height / 2 + height / 16);
    n++;
  }, 1000 / FRAME_RATE);
  const stream = canvas.captureStream(FRAME_RATE);
  stream.getVideoTracks()[0].addEventListener("ended", () => clearInterval(timer));
  return stream;
}

export class Broadcaster {
  constructor(conn, channel, { width, height, bitrateKbps, gopFrames = DEFAULT_GOP_FRAMES,
    source = "camera", onChunk = () => {} }) {
    Object.assign(this, { conn, channel, width, height, bitrateKbps, gopFrames, source, onChunk });
    this.topic = videoTopic(channel);
    this.stream = null; this.encoder = null; this.running = false;
    this.sequence = 0; this.sinceKey = Infinity; this.lastKeyMs = -Infinity;
    this.keyWanted = false; this.keyTimer = null;
    this.pending = new Map();      // frame timestamp -> {captureMs, t0}
    this.counters = { captured: 0, skipped: 0, sent: 0, keyFrames: 0, bytes: 0,
      keyRequests: 0, keyCoalesced: 0, keyDeferred: 0 };
    this.encodeMs = [];
    this.trace = [];               // {sequence, bytes, key, encodeMs}: the frame-size trace
    this.viewers = new Map();      // viewer id -> its latest report
  }

  async start() {
    this.stream = this.source === "pattern" ? patternStream(this.width, this.height)
      : await navigator.mediaDevices.getUserMedia({
        video: { width: this.width, height: this.height, frameRate: FRAME_RATE }, audio: false });
    this.track = this.stream.getVideoTracks()[0];
    this._configure();
    this.control = await this.conn.subscribe(controlTopic(this.channel), (m) => this._control(m), { reliable: true });
    this.running = true;
    this._pump(new MediaStreamTrackProcessor({ track: this.track }).readable.getReader());
  }

  /** New resolution or bitrate: the encoder is configured again and starts with a key frame. */
  reconfigure({ width = this.width, height = this.height, bitrateKbps = this.bitrateKbps }) {
    const resized = width !== this.width || height !== this.height;
    Object.assign(this, { width, height, bitrateKbps });
    if (resized) this.track.applyConstraints({ width, height }).catch(() => {});
    this._configure();
  }

  stop() {
    this.running = false;
    if (this.stream) for (const t of this.stream.getTracks()) t.stop();
    if (this.control) this.control.unsubscribe();
    if (this.encoder && this.encoder.state !== "closed") this.encoder.close();
  }

  _configure() {
    if (this.encoder && this.encoder.state !== "closed") this.encoder.close();
    this.pending.clear();
    this.encoder = new VideoEncoder({
      output: (chunk) => this._encoded(chunk),
      error: (e) => { this.error = String(e); },
    });
    this.encoder.configure({ codec: CODEC, width: this.width, height: this.height,
      bitrate: this.bitrateKbps * 1000, framerate: FRAME_RATE, latencyMode: "realtime" });
    this.sinceKey = Infinity;
  }

  async _pump(reader) {
    while (this.running) {
      const { value: frame, done } = await reader.read();
      if (done) return;
      const captureMs = this.conn.now();
      this.counters.captured++;
      if (this.encoder.state !== "configured" || this.encoder.encodeQueueSize > MAX_ENCODE_QUEUE) {
        this.counters.skipped++; frame.close(); continue;
      }
      const key = this.sinceKey >= this.gopFrames || this._keyDue();
      if (key) { this.sinceKey = 0; this.lastKeyMs = performance.now(); this.keyWanted = false; }
      this.sinceKey++;
      this.pending.set(frame.timestamp, { captureMs, t0: performance.now() });
      this.encoder.encode(frame, { keyFrame: key });
      frame.close();
    }
  }

  _keyDue() {
    return this.keyWanted && performance.now() - this.lastKeyMs >= KEY_FRAME_MIN_INTERVAL_MS;
  }

  _encoded(chunk) {
    const p = this.pending.get(chunk.timestamp);
    if (!p) return;
    this.pending.delete(chunk.timestamp);
    const encodeMs = performance.now() - p.t0;
    const data = new Uint8Array(chunk.byteLength);
    chunk.copyTo(data);
    const key = chunk.type === "key";
    const sequence = ++this.sequence;
    const body = encodeChunk({ key, width: this.width, height: this.height, sequence,
      captureMs: p.captureMs, encodeMs, targetKbps: this.bitrateKbps, codec: CODEC, data });
    this.conn.publish(this.topic, body, { reliable: false, delaySensitive: true });
    const c = this.counters;
    c.sent++; c.bytes += body.length; if (key) c.keyFrames++;
    this.encodeMs.push(encodeMs);
    if (this.encodeMs.length > 300) this.encodeMs.shift();
    this.trace.push({ sequence, bytes: data.length, key, encodeMs });
    if (this.trace.length > TRACE_KEEP) this.trace.shift();
    this.onChunk({ key, bytes: body.length, encodeMs });
  }

  _control(m) {
    const msg = decodeControl(m.data);
    if (!msg) return;
    if (msg.kind === "report") { this.viewers.set(msg.viewer, { ...msg, dc: m.dc, at: performance.now() }); return; }
    if (msg.kind !== "keyframe") return;
    this.counters.keyRequests++;
    if (this.keyWanted) { this.counters.keyCoalesced++; return; }  // served by the one waiting
    this.keyWanted = true;
    if (!this._keyDue()) this.counters.keyDeferred++;
  }
}
