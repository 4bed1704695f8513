// The messaging app: rooms are topics ("chat/<room>"), a message is one reliable Stemflow
// message whose metadata says who sent it and what it is (text, or a file with its name and
// type) and whose body is the text or the file's bytes. Owns the page: joining, rooms, the
// timeline, the composer, progress bars. Everything on the wire is stemflow.js's.

import { connect, NOTICE } from "/stemflow.js";

const HISTORY = 100;                  // past messages asked for when joining a room
const MAX_FILE_BYTES = 10 * 1024 * 1024;
const INLINE_IMAGES = new Set(["image/png", "image/jpeg", "image/gif", "image/webp"]);
// Only raster images show inline; anything else is offered as a download of opaque bytes, so a
// sender's HTML or SVG never runs in this page's origin.
const GROUP_MS = 5 * 60 * 1000;       // consecutive messages of one sender within this share a header
const COLORS = ["#2f6feb", "#d6336c", "#0ca678", "#f08c00", "#7048e8", "#1098ad", "#e8590c", "#5c940d"];

const $ = (id) => document.getElementById(id);
const enc = new TextEncoder();
const dec = new TextDecoder();
const params = new URLSearchParams(location.search);

const state = {
  conn: null, name: "", rooms: new Map(), active: null, nonce: 0,
  log: [],   // every message shown, for people reading the page's state (and the tests)
};
window.chat = state;

function color(name) {
  let h = 0;
  for (const c of name) h = (h * 31 + c.codePointAt(0)) >>> 0;
  return COLORS[h % COLORS.length];
}

function initials(name) {
  return name.split(/\s+/).filter(Boolean).slice(0, 2).map((w) => w[0].toUpperCase()).join("") || "?";
}

function avatar(name) {
  const a = document.createElement("span");
  a.className = "avatar"; a.textContent = initials(name); a.style.background = color(name);
  return a;
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function size(n) {  // SI units, as file managers show them
  if (n < 1000) return `${n} B`;
  if (n < 1e6) return `${(n / 1e3).toFixed(1)} kB`;
  return `${(n / 1e6).toFixed(1)} MB`;
}

function clock(ms) { return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }); }

function latencyText(ms) { return ms < 10 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`; }

async function gatewayList() {
  if (params.get("gateways")) return params.get("gateways").split(",");
  try {
    const r = await fetch("/gateways.json");
    return (await r.json()).gateways;
  } catch (_) {
    return [`ws://${location.host}/ws`];
  }
}

// -- rooms ----------------------------------------------------------------------------------------

function roomItem(room) {
  const li = el("li");
  li.dataset.room = room.name;
  const label = el("span");
  label.append(el("span", "hash", "#"), room.name);
  room.badge = el("span", "unread"); room.badge.hidden = true;
  li.append(label, room.badge);
  li.onclick = () => show(room.name);
  $("room-list").append(li);
  return li;
}

async function join(name) {
  if (state.rooms.has(name)) return show(name);
  const timeline = el("div", "timeline"); timeline.dataset.room = name;
  $("timelines").append(timeline);
  const room = { name, topic: `chat/${name}`, timeline, unread: 0, last: null, pending: new Map(), incoming: new Map() };
  state.rooms.set(name, room);
  room.item = roomItem(room);
  show(name);
  room.sub = await state.conn.subscribe(room.topic, (m) => received(room, m), {
    history: HISTORY,
    onProgress: (p) => incomingProgress(room, p),
    onNotice: (n) => noticed(room, n),
  });
}

function show(name) {
  state.active = name;
  for (const r of state.rooms.values()) {
    r.timeline.hidden = r.name !== name;
    r.item.classList.toggle("active", r.name === name);
  }
  const room = state.rooms.get(name);
  room.unread = 0; room.badge.hidden = true;
  $("room-title").textContent = `# ${name}`;
  $("message-input").placeholder = `Message #${name}`;
  room.timeline.scrollTop = room.timeline.scrollHeight;
  $("message-input").focus();
}

function system(room, text) {
  room.timeline.append(el("div", "system", text));
  room.last = null;
}

function noticed(room, n) {
  if (n.kind === NOTICE.HISTORY_UNAVAILABLE) system(room, `Earlier messages are not available here (${n.text})`);
  else if (n.kind === NOTICE.GAP) system(room, n.count ? `${n.count} messages could not be delivered` : "Some messages may be missing");
}

// -- the timeline ---------------------------------------------------------------------------------

function messageRow(room, who, sentMs) {
  const near = room.timeline.scrollHeight - room.timeline.scrollTop - room.timeline.clientHeight < 80;
  const first = !room.last || room.last.who !== who || sentMs - room.last.sentMs > GROUP_MS;
  const row = el("div", `msg${first ? " first" : ""}`);
  const av = el("div", "avatar-col"); av.append(avatar(who));
  const main = el("div", "msg-main");
  const head = el("div", "msg-head");
  main.append(head);
  row.append(av, main);
  room.timeline.append(row);
  room.last = { who, sentMs };
  if (near) requestAnimationFrame(() => { room.timeline.scrollTop = room.timeline.scrollHeight; });
  return { row, head, main };
}

function fillHead(head, who, dc, sentMs) {
  head.replaceChildren(el("span", "msg-name", who), el("span", "dc", dc), el("span", "msg-time", clock(sentMs)));
}

function progressBar(parent) {
  const bar = el("div", "progress"); const fill = el("div"); bar.append(fill); parent.append(bar);
  return (fraction) => { fill.style.width = `${Math.round(100 * fraction)}%`; };
}

function fileView(parent, meta, blobUrl, loaded) {
  if (INLINE_IMAGES.has(meta.mime) && blobUrl) {
    const img = el("img", "msg-image"); img.src = blobUrl; img.alt = meta.filename; img.dataset.filename = meta.filename;
    parent.append(img);
    return null;
  }
  const card = el("div", "file-card");
  const ext = (meta.filename.split(".").pop() || "file").slice(0, 4).toUpperCase();
  const info = el("div", "file-info");
  info.append(el("div", "file-name", meta.filename), el("div", "file-size", size(meta.size)));
  card.append(el("div", "file-icon", ext), info);
  if (blobUrl) {
    const a = el("a", "", "Download"); a.href = blobUrl; a.download = meta.filename; card.append(a);
  }
  parent.append(card);
  return loaded ? null : progressBar(info);
}

function parseMeta(raw) {
  try { return JSON.parse(raw); } catch (_) { return null; }
}

function received(room, m) {
  const meta = parseMeta(m.meta);
  if (!meta || typeof meta.name !== "string") return;
  const entry = { room: room.name, id: m.id, name: meta.name, kind: meta.kind, dc: m.dc, latencyMs: m.latencyMs,
                  history: m.history, size: m.data.length, text: meta.kind === "text" ? dec.decode(m.data) : null,
                  filename: meta.filename || null };
  state.log.push(entry);
  const mine = meta.nonce && room.pending.get(meta.nonce);
  let view = mine || room.incoming.get(m.id);
  room.pending.delete(meta.nonce); room.incoming.delete(m.id);
  if (!view) view = messageRow(room, meta.name, m.sentMs);
  fillHead(view.head, meta.name, m.dc, m.sentMs);
  if (meta.kind === "text") {
    if (!view.body) { view.body = el("div", "msg-body", entry.text); view.main.append(view.body); }
  } else {
    const type = INLINE_IMAGES.has(meta.mime) ? meta.mime : "application/octet-stream";
    const url = URL.createObjectURL(new Blob([m.data], { type }));
    entry.url = url;
    if (view.file) view.file.remove();
    view.file = el("div", "msg-file"); view.main.append(view.file);
    fileView(view.file, meta, url, true);
  }
  const noteText = m.history ? "earlier" : `${meta.kind === "text" ? "delivered in" : "received in"} ${latencyText(m.latencyMs)}`;
  const noteTitle = m.history ? "from the room's history" : `sent from ${m.dc}; measured from send to delivery here`;
  if (view.uploading) {
    // Our own file came back (its gateway keeps it from the first fragment on) before the overlay
    // accepted all of it: the bar goes on following the acknowledgements, the latency comes after.
    view.delivered = { text: noteText, title: noteTitle };
  } else {
    finishNote(view, noteText, noteTitle);
  }
  if (!view.aside) { view.aside = el("span", "msg-aside"); view.main.prepend(view.aside); }
  view.aside.textContent = m.history ? `${m.dc} · earlier` : `${m.dc} · ${latencyText(m.latencyMs)}`;
  view.aside.title = noteTitle;
  view.row.dataset.id = m.id;
  if (room.name !== state.active) { room.unread++; room.badge.textContent = room.unread; room.badge.hidden = false; }
}

function finishNote(view, text, title) {
  const note = view.note || el("span", "msg-meta");
  note.className = "msg-meta latency";
  note.textContent = text;
  note.title = title;
  view.head.append(note);
  view.note = note;
}

function incomingProgress(room, p) {
  const meta = parseMeta(p.meta);
  if (!meta || (meta.nonce && room.pending.has(meta.nonce))) return;  // our own upload shows its own bar
  let view = room.incoming.get(p.id);
  if (!view) {
    view = messageRow(room, meta.name, Date.now());
    fillHead(view.head, meta.name, p.dc, Date.now());
    view.note = el("span", "msg-meta pending"); view.head.append(view.note);
    view.file = el("div", "msg-file"); view.main.append(view.file);
    view.setProgress = fileView(view.file, { ...meta, size: p.total }, null, false);
    room.incoming.set(p.id, view);
  }
  view.note.textContent = `receiving ${Math.round((100 * p.received) / p.total)}%`;
  if (view.setProgress) view.setProgress(p.received / p.total);
}

// -- sending --------------------------------------------------------------------------------------

function sendText(room, text) {
  const nonce = `${Date.now()}-${state.nonce++}`;
  const meta = { name: state.name, kind: "text", nonce };
  const view = messageRow(room, state.name, Date.now());
  fillHead(view.head, state.name, state.conn.dc, Date.now());
  view.body = el("div", "msg-body", text); view.main.append(view.body);
  view.note = el("span", "msg-meta pending", "sending…"); view.head.append(view.note);
  room.pending.set(nonce, view);
  state.conn.publish(room.topic, enc.encode(text), { delaySensitive: true, meta })
    .catch((e) => { view.note.textContent = `not sent: ${e.message}`; });
}

async function sendFile(room, file) {
  if (file.size > MAX_FILE_BYTES) {
    system(room, `${file.name} is ${size(file.size)}; files up to ${size(MAX_FILE_BYTES)} can be sent`);
    return;
  }
  const nonce = `${Date.now()}-${state.nonce++}`;
  const meta = { name: state.name, kind: "file", filename: file.name, mime: file.type, size: file.size, nonce };
  const view = messageRow(room, state.name, Date.now());
  fillHead(view.head, state.name, state.conn.dc, Date.now());
  view.note = el("span", "msg-meta pending", "uploading 0%"); view.head.append(view.note);
  view.file = el("div", "msg-file"); view.main.append(view.file);
  const setProgress = fileView(view.file, meta, null, false);
  room.pending.set(nonce, view);
  view.uploading = true;
  try {
    await state.conn.publish(room.topic, file, {
      meta,
      onProgress: (sent, total) => {
        if (!view.note.classList.contains("pending")) return;
        view.note.textContent = `uploading ${Math.round((100 * sent) / total)}%`;
        setProgress(sent / total);
      },
    });
    view.uploading = false;
    if (view.delivered) finishNote(view, view.delivered.text, view.delivered.title);
  } catch (e) {
    view.uploading = false;
    view.note.textContent = `not sent: ${e.message}`;
  }
}

// -- wiring ---------------------------------------------------------------------------------------

function status(s) {
  const box = $("conn-status");
  const room = state.rooms.get(state.active);
  if (room && box.dataset.state === "reconnecting" && s.state === "connected") {
    system(room, `Reconnected through datacenter ${s.dc}`);
  } else if (room && box.dataset.state === "connected" && s.state === "reconnecting") {
    system(room, `Lost the gateway in datacenter ${box.dataset.dc}; reconnecting…`);
  }
  box.classList.toggle("reconnecting", s.state !== "connected");
  const dot = el("span", "dot");
  if (s.state === "connected") box.replaceChildren(dot, `${s.dc} · ${latencyText(s.rttMs)} to gateway`);
  else if (s.state === "reconnecting") box.replaceChildren(dot, "reconnecting…");
  else box.replaceChildren(dot, "offline");
  box.dataset.state = s.state;
  box.dataset.dc = s.dc || "";
}

async function start(name, room) {
  $("join-status").textContent = "Finding the closest datacenter…";
  $("join-button").disabled = true;
  try {
    state.conn = await connect(await gatewayList(), { onStatus: status });
  } catch (e) {
    $("join-status").textContent = `Cannot connect: ${e.message}`;
    $("join-button").disabled = false;
    return;
  }
  state.name = name;
  status({ state: "connected", dc: state.conn.dc, rttMs: state.conn.rttMs });
  $("me-name").textContent = name;
  $("me-avatar").replaceWith(Object.assign(avatar(name), { id: "me-avatar" }));
  $("join").hidden = true; $("app").hidden = false;
  await join(room);
  document.body.dataset.ready = "1";
}

$("join-form").onsubmit = (e) => {
  e.preventDefault();
  start($("join-name").value.trim(), $("join-room").value.trim().replace(/^#/, ""));
};

$("add-room").onsubmit = (e) => {
  e.preventDefault();
  const name = $("add-room-name").value.trim().replace(/^#/, "");
  $("add-room-name").value = "";
  if (name) join(name);
};

$("composer").onsubmit = (e) => {
  e.preventDefault();
  const input = $("message-input");
  const text = input.value.trim();
  if (!text || !state.active) return;
  input.value = "";
  sendText(state.rooms.get(state.active), text);
};

$("message-input").onkeydown = (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("composer").requestSubmit(); }
};

$("attach").onclick = () => $("file-input").click();
$("file-input").onchange = () => {
  for (const f of $("file-input").files) sendFile(state.rooms.get(state.active), f);
  $("file-input").value = "";
};

const main = document.querySelector(".room");
main.addEventListener("dragover", (e) => { e.preventDefault(); $("drop-hint").hidden = false; });
main.addEventListener("dragleave", () => { $("drop-hint").hidden = true; });
main.addEventListener("drop", (e) => {
  e.preventDefault(); $("drop-hint").hidden = true;
  for (const f of e.dataTransfer.files) sendFile(state.rooms.get(state.active), f);
});

if (params.get("name")) {
  $("join-name").value = params.get("name");
  if (params.get("room")) $("join-room").value = params.get("room");
  start(params.get("name"), $("join-room").value);
}
