// The viewer: live/<channel> -> WebCodecs VideoDecoder -> a canvas, with QoE measured (qoe.js).
// Owns what to decode: after joining, after a lost chunk (a gap in sequence numbers) or a decoder
// error, delta chunks are dropped until a key frame comes, and a key-frame request (like RTCP
// PLI) goes back to the broadcaster on live/<channel>/control, asked again every
// KEY_REQUEST_RETRY_MS while none arrives.

import { controlTopic, decodeChunk, encodeControl, videoTopic } from "./chunk.js";
import { Qoe } from "./qoe.js";

// A request crosses the overlay in a path's delay and the broadcaster serves one key frame per
// 500 ms; asking again after this long without one covers a lost request, not a slow answer.
const KEY_REQUEST_RETRY_MS = 600;
const REPORT_INTERVAL_MS = 2000;
const MAX_INFLIGHT = 64;           // chunks in the decoder whose capture times are kept: 2 s of video   // how often the viewer tells the broadcaster how it fares

export class Viewer {
  constructor(conn, channel, canvas, { id = crypto.randomUUID().slice(0, 8), mode = "nearest" } = {}) {
    Object.assign(this, { conn, channel, canvas, id, mode });
    this.ctx = canvas.getContext("2d");
    this.qoe = new Qoe();
    this.decoder = null; this.config = null;
    this.needKey = true; this.lastSequence = null; this.lastKeyRequestMs = -Infinity;
    this.inflight = new Map();     // chunk timestamp (sequence) -> {captureMs, encodeMs}
    this.subscribedMs = null; this.firstPictureAfterMs = null;
    this.width = 0; this.height = 0;
  }

  async start() {
    this.sub = await this.conn.subscribe(videoTopic(this.channel), (m) => this._chunk(m), {
      reliable: false,
      onNotice: () => this._wantKey("skipped"),
    });
    this.subscribedMs = this.conn.now();
    this._wantKey("join");
    this.timer = setInterval(() => this._tick(), KEY_REQUEST_RETRY_MS / 2);
    this.reporter = setInterval(() => this._report(), REPORT_INTERVAL_MS);
  }

  stop() {
    clearInterval(this.timer); clearInterval(this.reporter);
    if (this.sub) this.sub.unsubscribe();
    if (this.decoder && this.decoder.state !== "closed") this.decoder.close();
  }

  summary() {
    return { ...this.qoe.summary(this.conn.now()), firstPictureAfterMs: this.firstPictureAfterMs,
      width: this.width, height: this.height, dc: this.conn.dc, mode: this.mode };
  }

  _tick() {
    if (this.needKey && performance.now() - this.lastKeyRequestMs >= KEY_REQUEST_RETRY_MS) this._request("retry");
  }

  _wantKey(reason) {
    this.needKey = true;
    if (performance.now() - this.lastKeyRequestMs >= KEY_REQUEST_RETRY_MS / 2) this._request(reason);
  }

  _request(reason) {
    this.lastKeyRequestMs = performance.now();
    this.qoe.keyRequests++;
    this.conn.publish(controlTopic(this.channel), encodeControl({ kind: "keyframe", viewer: this.id, reason }),
      { reliable: true, delaySensitive: true }).catch(() => {});
  }

  _report() {
    const s = this.summary();
    this.conn.publish(controlTopic(this.channel), encodeControl({ kind: "report", viewer: this.id,
      g2gP50Ms: s.g2gP50Ms, decoded: s.decoded, freezes: s.freezes, mode: this.mode }),
    { reliable: true, delaySensitive: true }).catch(() => {});
  }

  _chunk(m) {
    const c = decodeChunk(m.data);
    if (!c) return;
    this.qoe.chunk(m.data.length);
    if (this.lastSequence !== null && c.sequence > this.lastSequence + 1) {
      this.qoe.lost += c.sequence - this.lastSequence - 1;
      this._wantKey("loss");
    }
    this.lastSequence = Math.max(this.lastSequence ?? 0, c.sequence);
    if (this.needKey && !c.key) { this.qoe.dropped++; return; }
    if (c.key) this._ensureDecoder(c);
    this.needKey = false;
    this.inflight.set(c.sequence, { captureMs: c.captureMs, encodeMs: c.encodeMs, arrivedMs: this.conn.now() });
    if (this.inflight.size > MAX_INFLIGHT) this.inflight.delete(this.inflight.keys().next().value);
    try {
      this.decoder.decode(new EncodedVideoChunk({ type: c.key ? "key" : "delta", timestamp: c.sequence, data: c.data }));
    } catch (_) {
      this._reset();
    }
  }

  _ensureDecoder(c) {
    const config = `${c.codec} ${c.width}x${c.height}`;
    if (this.decoder && this.decoder.state === "configured" && this.config === config) return;
    if (this.decoder && this.decoder.state !== "closed") this.decoder.close();
    this.decoder = new VideoDecoder({ output: (f) => this._show(f), error: () => this._reset() });
    this.decoder.configure({ codec: c.codec, codedWidth: c.width, codedHeight: c.height, optimizeForLatency: true });
    this.config = config;
    if (this.canvas.width !== c.width || this.canvas.height !== c.height) {
      this.canvas.width = c.width; this.canvas.height = c.height;
    }
  }

  _reset() {
    this.qoe.dropped += this.inflight.size;
    this.inflight.clear();
    this.config = null;
    this._wantKey("decoder error");
  }

  _show(frame) {
    const sequence = frame.timestamp;
    const info = this.inflight.get(sequence);
    this.inflight.delete(sequence);
    this.ctx.drawImage(frame, 0, 0, this.canvas.width, this.canvas.height);
    this.width = frame.displayWidth; this.height = frame.displayHeight;
    frame.close();
    if (!info) return;
    const shownMs = this.conn.now();
    if (this.firstPictureAfterMs === null) this.firstPictureAfterMs = shownMs - this.subscribedMs;
    this.qoe.displayed(sequence, info.captureMs, info.encodeMs, info.arrivedMs, shownMs);
  }
}
