// The live app's page: picks the role (broadcast or watch) and the gateway, binds the controls
// and draws the statistics. The work is broadcaster.js's and viewer.js's; the wire is
// stemflow.js's and chunk.js's.
//
// URL parameters (all optional): role=broadcast|watch, channel, gateways=ws://…,ws://… (the
// list to pick the nearest from; default /gateways.json), mode=server (watch through the
// gateway that served this page, the broadcaster's, instead of the nearest: the server-based
// baseline), resolution=640x360, bitrate=<kbit/s>, gop=<frames>, source=camera|pattern.

import { connect } from "/stemflow.js";
import { BITRATES_KBPS, Broadcaster, CODEC, DEFAULT_GOP_FRAMES, RESOLUTIONS } from "./broadcaster.js";
import { percentile } from "./qoe.js";
import { Viewer } from "./viewer.js";

const STATS_INTERVAL_MS = 250;
const VIEWER_STALE_MS = 6000;      // a viewer silent for three reports is gone from the list
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const state = { role: null, conn: null, broadcaster: null, viewer: null };
window.live = state;

async function gatewayList(mode) {
  if (mode === "server") return [`ws://${location.host}/ws`];
  if (params.get("gateways")) return params.get("gateways").split(",");
  try { return (await (await fetch("/gateways.json")).json()).gateways; } catch (_) { return [`ws://${location.host}/ws`]; }
}

function ms(v) { return v === null || v === undefined ? "–" : `${v < 10 ? v.toFixed(1) : Math.round(v)} ms`; }

function showStats(rows) {
  const dl = $("stats");
  dl.replaceChildren();
  for (const [k, v, bad] of rows) {
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = v; if (bad) dd.className = "bad";
    dl.append(dt, dd);
  }
}

function connStatus(s) {
  const c = $("conn");
  c.classList.toggle("down", s.state !== "connected");
  c.replaceChildren(Object.assign(document.createElement("span"), { className: "dot" }),
    s.state === "connected" ? `via ${s.dc} · RTT ${ms(s.rttMs)}` : s.state);
}

async function open(role, channel) {
  const mode = params.get("mode") === "server" ? "server" : "nearest";
  state.role = role;
  state.conn = await connect(await gatewayList(role === "watch" ? mode : "nearest"), { onStatus: connStatus });
  connStatus({ state: "connected", dc: state.conn.dc, rttMs: state.conn.rttMs });
  $("start").hidden = true; $("studio").hidden = false;
  $("channel-name").textContent = channel;
  if (role === "broadcast") await broadcast(channel);
  else await watch(channel, mode);
  document.body.dataset.ready = "1";
}

async function broadcast(channel) {
  const [w, h] = RESOLUTIONS[params.get("resolution")] || RESOLUTIONS["640x360"];
  const bitrateKbps = Number(params.get("bitrate")) || 2000;
  $("picture").hidden = true;
  $("viewers-title").textContent = "Viewers";
  for (const r of Object.keys(RESOLUTIONS)) $("resolution").add(new Option(r, r, false, r === `${w}x${h}`));
  for (const b of new Set([...BITRATES_KBPS, bitrateKbps].sort((a, b) => a - b))) {
    $("bitrate").add(new Option(b >= 1000 ? `${b / 1000} Mbit/s` : `${b} kbit/s`, b, false, b === bitrateKbps));
  }
  const b = state.broadcaster = new Broadcaster(state.conn, channel, { width: w, height: h, bitrateKbps,
    gopFrames: Number(params.get("gop")) || DEFAULT_GOP_FRAMES, source: params.get("source") || "camera" });
  await b.start();
  $("preview").srcObject = b.stream;
  $("resolution").onchange = (e) => { const [rw, rh] = RESOLUTIONS[e.target.value]; b.reconfigure({ width: rw, height: rh }); };
  $("bitrate").onchange = (e) => b.reconfigure({ bitrateKbps: Number(e.target.value) });
  let last = { t: performance.now(), bytes: 0 };
  setInterval(() => {
    const c = b.counters, t = performance.now();
    const kbps = (c.bytes - last.bytes) * 8 / (t - last.t);
    last = { t, bytes: c.bytes };
    showStats([
      ["Codec", `${CODEC.toUpperCase()} ${b.width}×${b.height} @ ${b.bitrateKbps} kbit/s`],
      ["Sending", `${Math.round(kbps)} kbit/s`],
      ["Frames sent", c.sent], ["Skipped at encoder", c.skipped, c.skipped > 0],
      ["Encode p50 / p95", `${ms(percentile(b.encodeMs, 0.5))} / ${ms(percentile(b.encodeMs, 0.95))}`],
      ["Key frames", c.keyFrames], ["Key-frame requests", `${c.keyRequests} (${c.keyDeferred} deferred)`],
    ]);
    const now = performance.now();
    const list = [...b.viewers.values()].filter((v) => now - v.at < VIEWER_STALE_MS);
    $("viewers").replaceChildren(...list.map((v) => {
      const li = document.createElement("li");
      li.append(Object.assign(document.createElement("span"), { textContent: `${v.viewer} `, className: "who" }),
        Object.assign(document.createElement("span"), { className: "where",
          textContent: `via ${v.dc}${v.mode === "server" ? " (server-based)" : ""} · glass-to-glass ${ms(v.g2gP50Ms)}` }));
      return li;
    }));
    if (!list.length) $("viewers").replaceChildren(Object.assign(document.createElement("li"), { textContent: "No viewers yet" }));
  }, STATS_INTERVAL_MS);
}

async function watch(channel, mode) {
  $("preview").hidden = true; $("controls").hidden = true;
  $("live-badge").textContent = "WATCHING"; $("live-badge").classList.add("watching");
  $("viewers-title").hidden = true;
  const v = state.viewer = new Viewer(state.conn, channel, $("picture"), { mode });
  await v.start();
  let last = { t: performance.now(), bytes: 0 };
  setInterval(() => {
    const s = v.summary(), t = performance.now();
    const kbps = (v.qoe.bytes - last.bytes) * 8 / (t - last.t);
    last = { t, bytes: v.qoe.bytes };
    $("overlay").hidden = s.decoded > 0 && !v.needKey;
    showStats([
      ["Watching via", `${s.dc}${mode === "server" ? " (server-based)" : " (nearest)"}`],
      ["Picture", s.width ? `${s.width}×${s.height}` : "–"],
      ["Receiving", `${Math.round(kbps)} kbit/s`],
      ["Glass-to-glass", ms(s.g2gMs)],
      ["  p50 / p95", `${ms(s.g2gP50Ms)} / ${ms(s.g2gP95Ms)}`],
      ["First picture after", ms(s.firstPictureAfterMs)],
      ["Frames received", s.received], ["Frames decoded", s.decoded],
      ["Dropped / lost", `${s.dropped} / ${s.lost}`, s.lost > 0],
      ["Freezes", `${s.freezes} (${(100 * s.freezeRatio).toFixed(2)} %)`, s.freezes > 0],
      ["Key-frame requests", s.keyRequests],
    ]);
  }, STATS_INTERVAL_MS);
}

async function main() {
  const role = params.get("role");
  const channel = params.get("channel") || "demo";
  $("start-channel").value = channel;
  $("start-form").onsubmit = (e) => {
    e.preventDefault();
    const q = new URLSearchParams(location.search);
    q.set("role", e.submitter.value); q.set("channel", $("start-channel").value.trim() || "demo");
    location.search = q.toString();
  };
  if (role !== "broadcast" && role !== "watch") { document.body.dataset.ready = "1"; return; }
  try {
    await open(role, channel);
  } catch (e) {
    $("start").hidden = false; $("studio").hidden = true;
    $("start-status").textContent = `Cannot start: ${e.message}`;
    document.body.dataset.error = e.message;
    document.body.dataset.ready = "1";
  }
}

main();
