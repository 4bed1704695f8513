// stemflow.js: the browser's side of a Stemflow gateway. A plain ES module, no build step:
//
//   import { connect } from "/stemflow.js";
//   const sf = await connect(["ws://gw-a:8080/ws", "ws://gw-b:8080/ws"]);  // lowest RTT wins
//   await sf.subscribe("chat/general", (m) => show(m), { history: 100 });
//   await sf.publish("chat/general", new TextEncoder().encode("hi"), { delaySensitive: true });
//
// Owns the browser end of the gateway's WebSocket format (docs/gateway.md, "Operations"), the
// message envelope browsers put inside each relay message (ids, fragments, sender datacenter,
// send time: docs/gateway.md, "Envelope"), the choice of gateway by RTT, and reconnection:
// with backoff, to the next-best gateway, resuming each subscription from what it last saw and
// sending again every reliable fragment no gateway acknowledged. What the messages mean is the
// application's.

const OP = {
  HELLO: 0x01, PING: 0x02, SUBSCRIBE: 0x03, UNSUBSCRIBE: 0x04, PUBLISH: 0x05,
  WELCOME: 0x81, PONG: 0x82, MESSAGE: 0x83, ACK: 0x84, ERROR: 0x85, NOTICE: 0x86, SUBSCRIBED: 0x87,
};
const VERSION = 1;
const ENVELOPE_VERSION = 1;
export const NOTICE = { LIVE_DROPPED: 1, GAP: 2, HISTORY_UNAVAILABLE: 3 };
const MESSAGE_HISTORY = 0x02;  // MESSAGE flag; 0x01 (replayed) needs nothing here: ids drop duplicates
const MESSAGE_FILE = 0x04;     // MESSAGE flag: an envelope without body; GET the body from /files
const MESSAGE_TOPIC = 0x08;    // MESSAGE flag: u8 length + the topic it was published on (a pattern's)
const SUBSCRIBE_FILES_BY_HTTP = 0x02;

// A file leaves in fragments of this size: progress moves every 256 KiB, a text message never
// waits behind more than one fragment per hop, and the envelope (37 bytes
// plus datacenter name and metadata) costs little.
export const FRAGMENT_BYTES = 256 * 1024;
// Reliable bytes sent and not yet acknowledged (the gateway's own bound, MAX_INFLIGHT_BYTES).
const INFLIGHT_BYTES = 4 * 1024 * 1024;
// A live stream drops a message while this much is still queued on the socket.
const LIVE_QUEUE_BYTES = 1024 * 1024;
const ACK_GRACE_MS = 1000;       // an HTTP upload's answer may overtake its ACKs on the WebSocket
const RTT_PROBES = 3;            // pings per gateway when choosing; the minimum filters a stall
const CONNECT_TIMEOUT_MS = 5000;
const BACKOFF_START_MS = 250;    // first retry after a failed round; doubles up to the maximum
const BACKOFF_MAX_MS = 8000;     // the gateway keeps a topic's window 30 s: two rounds fit
const KEEPALIVE_MS = 5000;       // a gateway silent for two of these is treated as gone
// A resumed subscription asks for what its new gateway received since this long before the
// last message seen: other gateways receive the same message up to a path's delay apart.
const RESUME_MARGIN_MS = 5000;
const SEEN_KEEP_MS = 120000;     // ids of delivered messages kept to drop duplicates of a resume

const enc = new TextEncoder();
const dec = new TextDecoder();

function wallMs() { return performance.timeOrigin + performance.now(); }

// The gateway's HTTP address for /files, from its WebSocket URL.
function filesUrl(wsUrl, path) {
  const u = new URL(path, wsUrl);
  u.protocol = u.protocol === "wss:" ? "https:" : "http:";
  return u;
}

function toWsUrl(g) {
  const u = new URL(g, location.href);
  if (u.protocol === "http:") u.protocol = "ws:";
  if (u.protocol === "https:") u.protocol = "wss:";
  if (u.pathname === "/" || u.pathname === "") u.pathname = "/ws";
  return u.toString();
}

function concat(parts, total) {
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

async function toBytes(data) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (typeof data === "string") return enc.encode(data);
  if (data instanceof Blob) return new Uint8Array(await data.arrayBuffer());
  throw new TypeError("publish takes a Uint8Array, ArrayBuffer, Blob or string");
}

// -- the envelope -------------------------------------------------------------------------------

function encodeEnvelope(sender, number, index, count, total, sentMs, dc, meta, body) {
  const dcB = enc.encode(dc).subarray(0, 255), metaB = enc.encode(meta);
  const head = 37 + dcB.length + metaB.length;
  const buf = new Uint8Array(head + body.length);
  const v = new DataView(buf.buffer);
  buf[0] = ENVELOPE_VERSION; buf[1] = 0; buf.set(sender, 2);
  v.setUint32(10, number); v.setUint32(14, index); v.setUint32(18, count); v.setUint32(22, total);
  v.setFloat64(26, sentMs);
  buf[34] = dcB.length; buf.set(dcB, 35);
  v.setUint16(35 + dcB.length, metaB.length);
  buf.set(metaB, 37 + dcB.length);
  buf.set(body, head);
  return buf;
}

function decodeEnvelope(bytes) {
  if (bytes.length < 37 || bytes[0] !== ENVELOPE_VERSION) return null;
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dcLen = bytes[34];
  if (bytes.length < 37 + dcLen) return null;
  const metaLen = v.getUint16(35 + dcLen);
  const bodyAt = 37 + dcLen + metaLen;
  if (bytes.length < bodyAt) return null;
  const sender = Array.from(bytes.subarray(2, 10), (b) => b.toString(16).padStart(2, "0")).join("");
  return {
    sender, number: v.getUint32(10), index: v.getUint32(14), count: v.getUint32(18),
    total: v.getUint32(22), sentMs: v.getFloat64(26),
    dc: dec.decode(bytes.subarray(35, 35 + dcLen)),
    meta: dec.decode(bytes.subarray(37 + dcLen, bodyAt)), body: bytes.subarray(bodyAt),
  };
}

// -- one socket to one gateway ------------------------------------------------------------------

class Link {
  // A WebSocket after HELLO/WELCOME, with ping bookkeeping; `onFrame` gets every other message.
  static open(url, token) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      ws.binaryType = "arraybuffer";
      const timer = setTimeout(() => { ws.close(); reject(new Error(`${url}: no answer`)); }, CONNECT_TIMEOUT_MS);
      ws.onerror = () => { clearTimeout(timer); reject(new Error(`${url}: cannot connect`)); };
      ws.onclose = (e) => { clearTimeout(timer); reject(new Error(`${url}: closed (${e.code} ${e.reason})`)); };
      ws.onopen = () => {
        const info = token ? { library: "stemflow.js", token } : { library: "stemflow.js" };
        const hello = enc.encode(JSON.stringify(info));
        const m = new Uint8Array(2 + hello.length);
        m[0] = OP.HELLO; m[1] = VERSION; m.set(hello, 2);
        ws.send(m);
      };
      ws.onmessage = (e) => {
        const b = new Uint8Array(e.data);
        if (b[0] !== OP.WELCOME) return;
        clearTimeout(timer);
        resolve(new Link(url, ws, JSON.parse(dec.decode(b.subarray(1)))));
      };
    });
  }

  constructor(url, ws, welcome) {
    this.url = url; this.ws = ws; this.dc = welcome.dc;
    // Large messages go by HTTP to and from this gateway (docs/gateway.md, "Files").
    this.files = welcome.files && welcome.http_key ? { path: welcome.files, key: welcome.http_key } : null;
    this.pings = new Map(); this.nextPing = 1;
    this.rttMs = Infinity; this.offsetMs = welcome.gateway_ms - wallMs();
    this.onFrame = () => {}; this.onClose = () => {};
    this.lastHeard = wallMs();
    ws.onmessage = (e) => {
      this.lastHeard = wallMs();
      const b = new Uint8Array(e.data);
      if (b[0] === OP.PONG) return this._pong(b);
      this.onFrame(b);
    };
    ws.onclose = (e) => this.onClose(e);
    ws.onerror = () => {};
  }

  ping() {
    return new Promise((resolve, reject) => {
      const id = this.nextPing++;
      const m = new Uint8Array(5);
      m[0] = OP.PING; new DataView(m.buffer).setUint32(1, id);
      const timer = setTimeout(() => { this.pings.delete(id); reject(new Error("ping timeout")); }, CONNECT_TIMEOUT_MS);
      this.pings.set(id, { t0: wallMs(), resolve, timer });
      this.send(m);
    });
  }

  _pong(b) {
    const v = new DataView(b.buffer, b.byteOffset);
    const p = this.pings.get(v.getUint32(1));
    if (!p) return;
    this.pings.delete(v.getUint32(1)); clearTimeout(p.timer);
    const t1 = wallMs(), rtt = t1 - p.t0;
    if (rtt <= this.rttMs) {  // the fastest exchange gives the best clock offset estimate
      this.rttMs = rtt;
      this.offsetMs = v.getFloat64(5) - (p.t0 + rtt / 2);
    }
    p.resolve(rtt);
  }

  send(bytes) { if (this.ws.readyState === WebSocket.OPEN) this.ws.send(bytes); }
  get buffered() { return this.ws.bufferedAmount; }
  close(code = 1000, reason = "") { this.onClose = () => {}; this.ws.close(code, reason); }
}

async function probe(url, token) {
  const link = await Link.open(url, token);
  try {
    for (let i = 0; i < RTT_PROBES; i++) await link.ping();
  } catch (e) { link.close(); throw e; }
  return link;
}

// POST one message's body to the gateway's /files (docs/gateway.md, "Files"). Resolves when the
// relay accepted every fragment; rejects with `permanent` set when the gateway refused it (an
// HTTP status), without when the request was cut off (the gateway went).
function upload(link, params, blob) {
  return new Promise((resolve, reject) => {
    const u = filesUrl(link.url, link.files.path);
    u.searchParams.set("key", link.files.key);
    for (const [k, v] of Object.entries(params)) u.searchParams.set(k, String(v));
    const x = new XMLHttpRequest();
    x.open("POST", u);
    x.setRequestHeader("Content-Type", "application/octet-stream");
    x.onload = () => {
      if (x.status === 200) return resolve();
      const e = new Error(x.responseText.trim() || `HTTP ${x.status}`);
      e.permanent = true;
      reject(e);
    };
    x.onerror = () => reject(new Error("the upload was cut off"));
    x.send(blob);
  });
}

// -- the connection an application holds --------------------------------------------------------

/** Connect to the lowest-RTT gateway among `gateways` (ws:// or http:// URLs). `token`: the
 * credential a gateway started with --auth-key asks for (docs/security.md). */
export async function connect(gateways, { onStatus = () => {}, token = null } = {}) {
  const urls = [...new Set((Array.isArray(gateways) ? gateways : [gateways]).map(toWsUrl))];
  if (!urls.length) throw new Error("connect() needs at least one gateway");
  const tried = await Promise.allSettled(urls.map((u) => probe(u, token)));
  const ok = tried.filter((t) => t.status === "fulfilled").map((t) => t.value);
  if (!ok.length) throw new Error(`no gateway reachable among ${urls.join(", ")}`);
  ok.sort((a, b) => a.rttMs - b.rttMs);
  for (const l of ok.slice(1)) l.close();
  const rtts = new Map(ok.map((l) => [l.url, l.rttMs]));
  const ranking = [...urls].sort((a, b) => (rtts.get(a) ?? Infinity) - (rtts.get(b) ?? Infinity));
  return new Connection(ok[0], ranking, rtts, onStatus, token);
}

class Connection {
  constructor(link, ranking, rtts, onStatus, token) {
    this.ranking = ranking; this.rtts = rtts; this.onStatus = onStatus; this.token = token;
    this.sender = crypto.getRandomValues(new Uint8Array(8));
    this.nextNumber = 1; this.nextRequest = 1; this.nextSub = 1;
    this.subs = new Map();          // sub id -> Subscription
    this.unacked = new Map();       // request id -> {bytes, size, onAck}; resent after a reconnect
    this.inflight = 0; this.windowWaiters = [];
    this.closed = false; this.backoffMs = BACKOFF_START_MS;
    this.linkWaiters = [];          // uploads waiting for a reconnection
    this.uploadAcks = new Map();    // request id -> callback: a fragment of an HTTP upload accepted
    this.counters = { reconnects: 0, resent: 0, duplicates: 0, liveDropped: 0, gaps: 0 };
    this._use(link);
    this.keepalive = setInterval(() => this._keepalive(), KEEPALIVE_MS);
  }

  get dc() { return this.link ? this.link.dc : null; }
  get gatewayUrl() { return this.link ? this.link.url : null; }
  get rttMs() { return this.link ? this.link.rttMs : null; }
  get connected() { return !!this.link; }
  /** Gateway time now (ms): the clock message send times and latencies are measured in. */
  now() { return wallMs() + (this.link ? this.link.offsetMs : this.lastOffsetMs || 0); }

  _use(link) {
    this.link = link;
    this.lastOffsetMs = link.offsetMs;
    link.onFrame = (b) => this._frame(b);
    link.onClose = (e) => this._lost(e);
    this.onStatus({ state: "connected", url: link.url, dc: link.dc, rttMs: link.rttMs });
    for (const w of this.linkWaiters.splice(0)) w(link);
  }

  _lost(e) {
    if (!this.link) return;  // already reconnecting
    this.lastOffsetMs = this.link.offsetMs;
    const failed = this.link ? this.link.url : null;
    this.link = null;
    if (this.closed) return;
    this.onStatus({ state: "reconnecting", url: failed, code: e && e.code, reason: e && e.reason });
    this._reconnect(failed);
  }

  async _reconnect(failed) {
    // The next-best gateways first, the one that failed last; after a whole round, back off.
    const order = [...this.ranking.filter((u) => u !== failed), ...(failed ? [failed] : [])];
    while (!this.closed) {
      for (const url of order) {
        try {
          const link = await probe(url, this.token);
          if (this.closed) { link.close(); return; }
          this.counters.reconnects++;
          this.backoffMs = BACKOFF_START_MS;
          this._use(link);
          this._resume();
          return;
        } catch (_) { /* try the next one */ }
      }
      const wait = this.backoffMs * (0.5 + Math.random() / 2);
      this.backoffMs = Math.min(2 * this.backoffMs, BACKOFF_MAX_MS);
      await new Promise((r) => setTimeout(r, wait));
    }
  }

  _resume() {
    for (const sub of this.subs.values()) sub._resubscribe();
    for (const [, u] of [...this.unacked.entries()].sort((a, b) => a[0] - b[0])) {
      this.counters.resent++;
      this.link.send(u.bytes);
    }
  }

  async _keepalive() {
    const link = this.link;
    if (!link) return;
    if (wallMs() - link.lastHeard > 2 * KEEPALIVE_MS) { link.close(4000, "no answer"); this._lost(); return; }
    try { await link.ping(); } catch (_) { /* the next round decides */ }
  }

  _frame(b) {
    const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
    switch (b[0]) {
      case OP.MESSAGE: {
        const sub = this.subs.get(v.getUint32(1));
        if (!sub) break;
        let at = 14, topic = sub.topic;
        if (b[5] & MESSAGE_TOPIC) { topic = dec.decode(b.subarray(15, 15 + b[14])); at = 15 + b[14]; }
        sub._deliver(b[5], v.getFloat64(6), b.subarray(at), topic);
        break;
      }
      case OP.ACK: this._acked(v.getUint32(1), null); break;
      case OP.ERROR: this._acked(v.getUint32(1), dec.decode(b.subarray(5))); break;
      case OP.SUBSCRIBED: { const s = this.subs.get(v.getUint32(1)); if (s) s._confirmed(); break; }
      case OP.NOTICE: {
        const s = this.subs.get(v.getUint32(1));
        const n = { kind: b[5], count: v.getUint32(6), text: dec.decode(b.subarray(10)) };
        if (n.kind === NOTICE.GAP) this.counters.gaps += n.count || 1;
        if (n.kind === NOTICE.LIVE_DROPPED) this.counters.liveDropped += n.count;
        if (s) s.onNotice(n);
        break;
      }
      default: break;
    }
  }

  _acked(req, error) {
    const progress = this.uploadAcks.get(req);
    if (progress) { this.uploadAcks.delete(req); progress(); return; }
    const u = this.unacked.get(req);
    if (!u) return;
    this.unacked.delete(req);
    this.inflight -= u.size;
    while (this.windowWaiters.length && this.inflight < INFLIGHT_BYTES) this.windowWaiters.shift()();
    u.onAck(error);
  }

  _publishFrame(req, topic, flags, envelope) {
    const t = enc.encode(topic);
    const m = new Uint8Array(7 + t.length + envelope.length);
    m[0] = OP.PUBLISH; new DataView(m.buffer).setUint32(1, req); m[5] = flags; m[6] = t.length;
    m.set(t, 7); m.set(envelope, 7 + t.length);
    return m;
  }

  _fragments(data, meta) {
    const number = this.nextNumber++;
    const count = Math.max(1, Math.ceil(data.length / FRAGMENT_BYTES));
    const sentMs = this.now(), dc = this.dc || "";
    const id = `${Array.from(this.sender, (b) => b.toString(16).padStart(2, "0")).join("")}:${number}`;
    const frags = [];
    for (let i = 0; i < count; i++) {
      const body = data.subarray(i * FRAGMENT_BYTES, Math.min(data.length, (i + 1) * FRAGMENT_BYTES));
      frags.push(encodeEnvelope(this.sender, number, i, count, data.length, sentMs, dc, meta, body));
    }
    return { id, frags };
  }

  /**
   * Publish one message of any size. Reliable (default): resolves with the message id once the
   * overlay accepted every fragment (after reconnections if need be); `onProgress(sent, total)`
   * follows the fragments. Live (`reliable: false`): sent once, if the socket has room.
   * A reliable message over FRAGMENT_BYTES goes by HTTP POST when the gateway offers it
   * (`http: false` keeps it on the WebSocket).
   */
  async publish(topic, data, { reliable = true, delaySensitive = false, meta = "", onProgress, http = true } = {}) {
    const size = data instanceof Blob ? data.size : data.byteLength ?? data.length;
    if (http && reliable && size > FRAGMENT_BYTES && this.link && this.link.files && typeof data !== "string") {
      // By HTTP (docs/gateway.md, "Files"), as a Blob: Chromium uploads a Blob body far faster
      // than the same bytes given as a Uint8Array (about 0.15 s against 1.1 s for 10 MB when
      // this was written, on the loaded benchmark machine); a File is a Blob already.
      const blob = data instanceof Blob ? data : new Blob([data]);
      return this._publishHttp(topic, blob, typeof meta === "string" ? meta : JSON.stringify(meta),
                               delaySensitive, onProgress);
    }
    const bytes = await toBytes(data);
    const { id, frags } = this._fragments(bytes, typeof meta === "string" ? meta : JSON.stringify(meta));
    const flags = (reliable ? 1 : 0) | (delaySensitive ? 2 : 0);
    if (!reliable) {
      if (!this.link || this.link.buffered > LIVE_QUEUE_BYTES) { this.counters.liveDropped++; return id; }
      for (const f of frags) this.link.send(this._publishFrame(0, topic, flags, f));
      return id;
    }
    let acked = 0;
    const done = frags.map((f) => new Promise((resolve, reject) => {
      f.onAck = (error) => {
        if (error) return reject(new Error(`publish to ${topic}: ${error}`));
        acked++;
        if (onProgress) onProgress(Math.min(bytes.length, acked * FRAGMENT_BYTES), bytes.length);
        resolve();
      };
    }));
    for (const f of frags) {
      // Text (delay-sensitive, one fragment) does not queue behind a file's window.
      while (!delaySensitive && this.inflight > 0 && this.inflight + f.length > INFLIGHT_BYTES) {
        await new Promise((r) => this.windowWaiters.push(r));
      }
      const req = this.nextRequest++;
      const m = this._publishFrame(req, topic, flags, f);
      this.unacked.set(req, { bytes: m, size: f.length, onAck: f.onAck });
      this.inflight += f.length;
      if (this.link) this.link.send(m);
    }
    await Promise.all(done);
    return id;
  }

  // A large reliable message goes by HTTP POST to the gateway, which publishes its fragments;
  // if the gateway goes before it answered, the whole message is sent again on the next one
  // (same id: receivers drop what they already have).
  async _publishHttp(topic, blob, meta, delaySensitive, onProgress) {
    const number = this.nextNumber++;
    const sentMs = this.now();
    const sender = Array.from(this.sender, (b) => b.toString(16).padStart(2, "0")).join("");
    const params = { topic, sender, number, sent_ms: sentMs, meta, delay_sensitive: delaySensitive ? 1 : 0 };
    const count = Math.ceil(blob.size / FRAGMENT_BYTES);
    for (;;) {
      const link = this.link || await this._nextLink(null);
      // The gateway ACKs each fragment on the WebSocket as the relay accepts it: the progress.
      const first = this.nextRequest;
      this.nextRequest += count;
      let acked = 0, allAcked;
      const everyAck = new Promise((r) => { allAcked = r; });
      for (let i = 0; i < count; i++) {
        this.uploadAcks.set(first + i, () => {
          acked++;
          if (onProgress) onProgress(Math.min(blob.size, acked * FRAGMENT_BYTES), blob.size);
          if (acked === count) allAcked();
        });
      }
      try {
        await upload(link, { ...params, acks: first }, blob);
        // The answer says the relay has it all; its ACKs travel on the WebSocket and may come
        // a moment later: let the progress finish, but never wait on them long.
        await Promise.race([everyAck, new Promise((r) => setTimeout(r, ACK_GRACE_MS))]);
        return `${sender}:${number}`;
      } catch (e) {
        if (e.permanent || this.closed) throw new Error(`publish to ${topic}: ${e.message}`);
        this.counters.resent++;
        await this._nextLink(link);
      } finally {
        for (let i = 0; i < count; i++) this.uploadAcks.delete(first + i);
      }
    }
  }

  // The link in use once it is not `old` (after a reconnection).
  _nextLink(old) {
    if (this.link && this.link !== old) return Promise.resolve(this.link);
    return new Promise((r) => this.linkWaiters.push(r));
  }

  /**
   * Subscribe: `onMessage({topic, id, data, meta, dc, sentMs, latencyMs, history})` for every
   * whole message, in each sender's order, each once. `topic` may be a pattern (`chat.*`,
   * `chat.>`, NATS's wildcards); each message's `topic` is then the one it was published on. Options: `reliable` (default true),
   * `history` (the topic's last N messages first, as the relays keep them), `onProgress({id,
   * meta, dc, received, total})` while a large message arrives, `onNotice({kind, count, text})`,
   * `http` (default true: multi-fragment messages are fetched by HTTP GET when the gateway offers it).
   */
  async subscribe(topic, onMessage, { reliable = true, history = 0, onProgress = () => {}, onNotice = () => {}, http = true } = {}) {
    const sub = new Subscription(this, this.nextSub++, topic, onMessage, reliable, onProgress, onNotice);
    sub.http = http;
    this.subs.set(sub.id, sub);
    await sub._subscribe(history);
    return sub;
  }

  /** A publisher of many messages on one topic: live by default (drops when the socket is full). */
  openStream(topic, { reliable = false, delaySensitive = false } = {}) {
    return { send: (data, meta = "") => this.publish(topic, data, { reliable, delaySensitive, meta }) };
  }

  close() {
    this.closed = true;
    clearInterval(this.keepalive);
    if (this.link) this.link.close(1000, "closed by the application");
    this.link = null;
    this.onStatus({ state: "closed" });
  }
}

class Subscription {
  constructor(conn, id, topic, onMessage, reliable, onProgress, onNotice) {
    Object.assign(this, { conn, id, topic, onMessage, reliable, onProgress, onNotice });
    this.partial = new Map();   // message id -> {parts, have, bytes, env}
    this.fetching = new Set();  // message ids whose body is being fetched by HTTP
    this.seen = new Map();      // message id -> when delivered (to drop duplicates)
    this.lastReceivedMs = 0;    // gateway time of the newest message, for a resume
    this.subscribedMs = 0;
    this.waiting = null;
  }

  _subscribe(history) {
    return new Promise((resolve) => {
      this.waiting = resolve;
      this._sendSubscribe(history, 0);
    });
  }

  _sendSubscribe(history, sinceMs) {
    const t = enc.encode(this.topic);
    const m = new Uint8Array(16 + t.length);
    const v = new DataView(m.buffer);
    const byHttp = this.http && this.conn.link && this.conn.link.files ? SUBSCRIBE_FILES_BY_HTTP : 0;
    m[0] = OP.SUBSCRIBE; v.setUint32(1, this.id); m[5] = (this.reliable ? 1 : 0) | byHttp;
    v.setUint16(6, history); v.setFloat64(8, sinceMs); m.set(t, 16);
    if (this.conn.link) this.conn.link.send(m);
  }

  _confirmed() {
    if (!this.subscribedMs) this.subscribedMs = this.conn.now();
    if (this.waiting) { this.waiting(); this.waiting = null; }
  }

  _resubscribe() {
    const since = Math.max(this.lastReceivedMs, this.subscribedMs) - RESUME_MARGIN_MS;
    this._sendSubscribe(0, this.subscribedMs ? Math.max(since, 1) : 0);
  }

  _deliver(flags, receivedMs, payload, topic) {
    const env = decodeEnvelope(payload);
    if (!env) return;
    const history = (flags & MESSAGE_HISTORY) !== 0;
    if (!history) this.lastReceivedMs = Math.max(this.lastReceivedMs, receivedMs);
    const id = `${env.sender}:${env.number}`;
    if (this.seen.has(id)) { this.conn.counters.duplicates++; return; }
    if (flags & MESSAGE_FILE) return this._fetchFile(id, env, history, topic);
    let p = this.partial.get(id);
    if (!p) {
      if (env.count === 1) return this._complete(id, env, env.body, history, topic);
      p = { parts: new Array(env.count), have: 0, bytes: 0, env, topic, started: wallMs() };
      this.partial.set(id, p);
    }
    if (p.parts[env.index]) { this.conn.counters.duplicates++; return; }
    p.parts[env.index] = env.body.slice();
    p.have++; p.bytes += env.body.length;
    this.onProgress({ id, meta: env.meta, dc: env.dc, received: p.bytes, total: env.total });
    if (p.have === env.count) {
      this.partial.delete(id);
      this._complete(id, env, concat(p.parts, env.total), history, p.topic);
    }
  }

  async _fetchFile(id, env, history, topic) {
    // The gateway keeps the message's fragments and streams their bodies to a GET, as they come.
    const link = this.conn.link;
    if (this.fetching.has(id) || !link || !link.files) return;
    this.fetching.add(id);
    try {
      const u = filesUrl(link.url, `${link.files.path}/${encodeURIComponent(id)}`);
      u.searchParams.set("key", link.files.key);
      const resp = await fetch(u, { cache: "no-store" });
      if (!resp.ok) throw new Error(`${resp.status} ${await resp.text()}`);
      const reader = resp.body.getReader();
      const data = new Uint8Array(env.total);
      let at = 0;
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        if (at + value.length > data.length) throw new Error("more bytes than the envelope says");
        data.set(value, at); at += value.length;
        this.onProgress({ id, meta: env.meta, dc: env.dc, received: at, total: env.total });
      }
      if (at !== env.total) throw new Error(`${at} of ${env.total} bytes`);
      if (!this.seen.has(id)) this._complete(id, env, data, history, topic);
    } catch (e) {
      // Cut short (the gateway went, or dropped it): a resume on the next gateway announces it again.
      this.conn.counters.fileErrors = (this.conn.counters.fileErrors || 0) + 1;
      this.onNotice({ kind: NOTICE.GAP, count: 0, text: `file ${id} could not be fetched: ${e.message}` });
    } finally {
      this.fetching.delete(id);
    }
  }

  _complete(id, env, data, history, topic) {
    const t = wallMs();
    this.seen.set(id, t);
    for (const [k, at] of this.seen) { if (t - at > SEEN_KEEP_MS) this.seen.delete(k); else break; }
    for (const [k, p] of this.partial) { if (t - p.started > SEEN_KEEP_MS) this.partial.delete(k); }
    this.onMessage({
      topic: topic || this.topic, id, data, meta: env.meta, dc: env.dc, sentMs: env.sentMs, history,
      latencyMs: history ? null : this.conn.now() - env.sentMs,
    });
  }

  unsubscribe() {
    this.conn.subs.delete(this.id);
    const m = new Uint8Array(5);
    m[0] = OP.UNSUBSCRIBE; new DataView(m.buffer).setUint32(1, this.id);
    if (this.conn.link) this.conn.link.send(m);
  }
}
