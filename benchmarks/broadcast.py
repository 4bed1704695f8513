"""Live broadcast on loopback: a Chromium broadcaster on gateway a (relay a), a Chromium viewer on
gateway b (relay b), the controller routing with the multicast strategy; glass-to-glass delay
and freezes over a long run.

The broadcaster encodes VP8 with WebCodecs at `--resolution`, `--bitrate` kbit/s, 30 frames/s,
from the noise test pattern (`source=pattern`: Chromium's fake camera is so simple that VP8
makes about a tenth of 2 Mbit/s of it, so it could not load the path at the rate asked). Per
frame the viewer measures glass-to-glass = display (drawn on its canvas) − capture (the frame
read from the track), both in gateway time (one machine, so the clocks agree up to the
offset estimate's error, well under a millisecond on loopback), and the broadcaster stamps its
encoder's own time for the frame (encode call to output). The row is the p95 over frames of
(glass-to-glass − encode time), beside the p50s and the raw glass-to-glass; freezes are
webrtc-stats' (apps/broadcast/qoe.js). The first `SETTLE_S` are not counted (the controller plans
the session, the decoder starts).

`--record-trace PATH` writes the broadcaster's frame-size trace (sequence, bytes, key,
encode_ms) as CSV: the `video` workload's trace (stemflow/workloads/traces/) was recorded so.

`--codecs` instead compares the WebCodecs encoders of this Chromium on its fake camera, one page,
no overlay: for each codec, `CODEC_FRAMES` frames at 640x360, 2 Mbit/s asked, 30 frames/s,
realtime mode, a key frame every 60; per frame the time from `encode()` to its output; `--reps`
rounds, codecs interleaved. It is why the broadcaster uses VP8 (section "Browser video encoders").

Usage: python benchmarks/broadcast.py [--seconds 120] [--reps 1] [--bitrate 2000]
          [--resolution 640x360] [--source pattern|camera] [--gop 300] [--record-trace PATH] [--write]
       python benchmarks/broadcast.py --codecs [--reps 3] [--write]
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the loopback process helpers the tests use
sys.path.insert(0, str(Path(__file__).parent))

from browsers import WAIT_MS, Browsers  # noqa: E402
from docpage import write_section  # noqa: E402
from gatewaynet import Gateways  # noqa: E402
from relaynet import Overlay  # noqa: E402

CAMERA_ARGS = ("--use-fake-device-for-media-stream=fps=30", "--use-fake-ui-for-media-stream")
SETTLE_S = 5.0
"""Seconds after the first picture not measured: route planning and the decoder's start."""
TARGET_P95_MS = 30.0
"""Issue 14: glass-to-glass p95 minus the encoder's time, loopback, two relays."""
POLL_S = 1.0
CODECS = {"VP8": "vp8", "VP9": "vp09.00.10.08", "H.264": "avc1.42001f", "AV1": "av01.0.04M.08"}
"""WebCodecs codec strings: VP9 profile 0 level 1.0 8-bit, H.264 constrained baseline level 3.1,
AV1 main profile level 3.0 8-bit: the plainest profile of each that covers 640x360 at 30/s."""
CODEC_FRAMES = 240
ENCODE_PROBE = """async ([codec, frames]) => {
  const s = await navigator.mediaDevices.getUserMedia({video: {width: 640, height: 360, frameRate: 30}});
  const track = s.getVideoTracks()[0];
  const reader = new MediaStreamTrackProcessor({track}).readable.getReader();
  const times = [], t0s = new Map(); let bytes = 0, error = null;
  const enc = new VideoEncoder({output: (c) => { times.push(performance.now() - t0s.get(c.timestamp));
                                                 bytes += c.byteLength; },
                                error: (e) => { error = String(e); }});
  enc.configure({codec, width: 640, height: 360, bitrate: 2e6, framerate: 30, latencyMode: "realtime"});
  const start = performance.now();
  for (let n = 0; n < frames; n++) {
    const {value} = await reader.read();
    t0s.set(value.timestamp, performance.now());
    enc.encode(value, {keyFrame: n % 60 === 0}); value.close();
  }
  await enc.flush(); enc.close(); track.stop();
  return {error, times, kbps: bytes * 8 / (performance.now() - start)};
}"""


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def run_once(seconds: float, bitrate: int, resolution: str, source: str, gop: int,
             trace: Path | None) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="stemflow-bench-live-"))
    o = Overlay(tmp, ["a", "b"], "multicast", builtin=True)
    g = browsers = None
    try:
        g = Gateways(o, ["a", "b"])
        browsers = Browsers(CAMERA_ARGS)
        q = f"channel=bench&resolution={resolution}&bitrate={bitrate}&gop={gop}&source={source}"
        studio = browsers.open(f"{g.url['a']}/live/?role=broadcast&gateways={g.ws_url('a')}&{q}")
        viewer = browsers.open(f"{g.url['b']}/live/?role=watch&gateways={g.ws_url('b')}&{q}")
        viewer.wait_for_function("window.live.viewer.qoe.decoded > 0", timeout=WAIT_MS)
        time.sleep(SETTLE_S)
        start = viewer.evaluate("""() => { const v = window.live.viewer;
            return {n: v.qoe.delays.length, freezes: v.qoe.freezes, freezeMs: v.qoe.freezeMs,
                    lost: v.qoe.lost, dropped: v.qoe.dropped, bytes: v.qoe.bytes, t: performance.now()}; }""")
        sent0 = studio.evaluate("({...window.live.broadcaster.counters})")
        for _ in tqdm(range(int(seconds / POLL_S)), desc="broadcast", unit="s", leave=False):
            time.sleep(POLL_S)
        end = viewer.evaluate("""(n) => { const v = window.live.viewer;
            return {delays: v.qoe.delays.slice(n), freezes: v.qoe.freezes, freezeMs: v.qoe.freezeMs,
                    lost: v.qoe.lost, dropped: v.qoe.dropped, bytes: v.qoe.bytes, t: performance.now()}; }""",
                              start["n"])
        sent1 = studio.evaluate("({...window.live.broadcaster.counters})")
        if trace is not None:
            rows = studio.evaluate("window.live.broadcaster.trace")
            with trace.open("w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["sequence", "bytes", "key", "encode_ms"])
                for r in rows:
                    w.writerow([r["sequence"], r["bytes"], int(r["key"]), f"{r['encodeMs']:.2f}"])
    finally:
        if browsers is not None:
            browsers.close()
        if g is not None:
            g.close()
        o.close()
        shutil.rmtree(tmp, ignore_errors=True)
    d = end["delays"]
    elapsed_s = (end["t"] - start["t"]) / 1000
    g2g = [x["g2gMs"] for x in d]
    net = [x["g2gMs"] - x["encodeMs"] for x in d]
    enc = [x["encodeMs"] for x in d]
    transit = [x["transitMs"] for x in d]
    decode = [x["decodeMs"] for x in d]
    return {
        "frames": len(d), "fps": len(d) / elapsed_s,
        "received_kbps": (end["bytes"] - start["bytes"]) * 8 / elapsed_s / 1000,
        "g2g_p50": pct(g2g, 0.5), "g2g_p95": pct(g2g, 0.95), "g2g_max": max(g2g),
        "net_p50": pct(net, 0.5), "net_p95": pct(net, 0.95),
        "enc_p50": pct(enc, 0.5), "enc_p95": pct(enc, 0.95),
        "transit_p50": pct(transit, 0.5), "transit_p95": pct(transit, 0.95),
        "decode_p50": pct(decode, 0.5), "decode_p95": pct(decode, 0.95),
        "freezes": end["freezes"] - start["freezes"], "freeze_ms": end["freezeMs"] - start["freezeMs"],
        "lost": end["lost"] - start["lost"], "dropped": end["dropped"] - start["dropped"],
        "skipped_at_encoder": sent1["skipped"] - sent0["skipped"],
        "key_frames": sent1["keyFrames"] - sent0["keyFrames"], "elapsed_s": elapsed_s,
    }


def codecs(reps: int, write: bool) -> int:
    """Encode time of each WebCodecs encoder on the fake camera (the --codecs table)."""
    import http.server
    import threading

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    browsers = Browsers(CAMERA_ARGS)
    got: dict[str, list[dict]] = {name: [] for name in CODECS}
    load_before = os.getloadavg()[0]
    try:
        page = browsers.pw.chromium.launch(executable_path=shutil.which("chromium"), headless=True,
                                           args=browsers.args).new_page()
        page.goto(f"http://127.0.0.1:{srv.server_address[1]}/")  # getUserMedia needs http(s)
        for _ in tqdm(range(reps), desc="codec rounds", leave=False):
            for name, codec in CODECS.items():
                got[name].append(page.evaluate(ENCODE_PROBE, [codec, CODEC_FRAMES]))
    finally:
        browsers.close()
        srv.shutdown()
    rows = ["| codec (WebCodecs string) | encode p50 (ms) | encode p95 (ms) | sent (kbit/s, 2000 asked) "
            "| errors |", "|---|---:|---:|---:|---|"]
    for name, runs in got.items():
        p50 = [pct(r["times"], 0.5) for r in runs]
        p95 = [pct(r["times"], 0.95) for r in runs]
        kbps = [r["kbps"] for r in runs]
        errors = "; ".join(sorted({r["error"] for r in runs if r["error"]})) or "none"
        rows.append(f"| {name} (`{CODECS[name]}`) | {spread(p50)} | {spread(p95)} | {spread(kbps, '{:.0f}')} "
                    f"| {errors} |")
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = "\n".join([
        "## Browser video encoders", "",
        f"`benchmarks/broadcast.py --codecs --reps {reps}`, {date}, {platform.node()} "
        f"({os.cpu_count()} cores, {cpu}), Debian's Chromium headless, software encoders; "
        f"load average {load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after. Chromium's fake camera, 640x360, 30 frames/s, 2 Mbit/s asked, "
        f"realtime mode, a key frame every 60; {CODEC_FRAMES} frames per codec per round, codecs "
        f"interleaved; median of {reps} rounds (lowest–highest). Encode time: `encode()` to the chunk's "
        "output. The fake camera's picture is simple, so no encoder reaches the rate asked.", "", *rows, ""])
    print(section)
    if write:
        write_section("## Browser video encoders", section)
    return 0


def run_line(r: dict) -> str:
    return (f"{r['frames']} frames at {r['fps']:.1f}/s, {r['received_kbps']:.0f} kbit/s; glass-to-glass "
            f"p50 {r['g2g_p50']:.1f} p95 {r['g2g_p95']:.1f} ms; minus encode p95 {r['net_p95']:.1f} ms; "
            f"encode p95 {r['enc_p95']:.1f} ms; transit p95 {r['transit_p95']:.1f} ms; decode p95 "
            f"{r['decode_p95']:.1f} ms; freezes {r['freezes']} ({r['freeze_ms']:.0f} ms), lost {r['lost']}")


def ok(r: dict) -> bool:
    return r["net_p95"] <= TARGET_P95_MS and r["freezes"] == 0


def med(runs: list[dict], key: str, fmt: str = "{:.1f}") -> str:
    return spread([r[key] for r in runs], fmt)


def spread(xs: list[float], fmt: str = "{:.1f}") -> str:
    """The median and, over several runs, the lowest and highest."""
    if len(xs) == 1:
        return fmt.format(xs[0])
    return f"{fmt.format(statistics.median(xs))} ({fmt.format(min(xs))}–{fmt.format(max(xs))})"


def main() -> int:
    p = argparse.ArgumentParser(prog="benchmarks/broadcast.py")
    p.add_argument("--seconds", type=float, default=120.0)
    p.add_argument("--reps", type=int, default=1)
    p.add_argument("--bitrate", type=int, default=2000, help="kbit/s")
    p.add_argument("--resolution", default="640x360", choices=["320x180", "640x360", "1280x720"])
    p.add_argument("--source", default="pattern", choices=["pattern", "camera"])
    p.add_argument("--gop", type=int, default=300, help="frames between unrequested key frames")
    p.add_argument("--record-trace", type=Path, help="write the broadcaster's frame-size trace (CSV)")
    p.add_argument("--codecs", action="store_true", help="compare the browser's video encoders instead")
    p.add_argument("--write", action="store_true", help="rewrite the section in docs/benchmarks.md")
    args = p.parse_args()
    if shutil.which("chromium") is None:
        p.error("needs Debian's chromium (bash .ci/setup --tests)")
    if args.codecs:
        return codecs(args.reps, args.write)
    if args.seconds <= SETTLE_S or args.reps < 1:
        p.error(f"--seconds must exceed {SETTLE_S:.0f} and --reps be at least 1")
    load_before = os.getloadavg()[0]
    runs = []
    for rep in range(args.reps):
        runs.append(run_once(args.seconds, args.bitrate, args.resolution, args.source, args.gop,
                             args.record_trace if rep == 0 else None))
        print(f"run {rep + 1}/{args.reps}: {run_line(runs[-1])}", flush=True)
    load_after = os.getloadavg()[0]
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    net_p95 = statistics.median(r["net_p95"] for r in runs)
    freezes = statistics.median(r["freezes"] for r in runs)
    table = [
        "| row | measured | target | met? |", "|---|---:|---|---|",
        f"| glass-to-glass − encoder time, p95 (ms) | {med(runs, 'net_p95')} | ≤ {TARGET_P95_MS:.0f} ms "
        f"| {'yes' if net_p95 <= TARGET_P95_MS else 'no'} (median) |",
        f"| freezes in {args.seconds:.0f} s (webrtc-stats) | {med(runs, 'freezes', '{:.0f}')} "
        f"({med(runs, 'freeze_ms', '{:.0f}')} ms frozen) | none "
        f"| {'yes' if freezes == 0 else 'no'} (median) |",
        f"| glass-to-glass − encoder time, p50 (ms) | {med(runs, 'net_p50')} |  |  |",
        f"| glass-to-glass, p50 / p95 / max (ms) | {med(runs, 'g2g_p50')} / {med(runs, 'g2g_p95')} "
        f"/ {med(runs, 'g2g_max')} |  |  |",
        f"| encoder time, p50 / p95 (ms) | {med(runs, 'enc_p50')} / {med(runs, 'enc_p95')} |  |  |",
        f"| of which: encoded to the viewer page (overlay, gateways, both pages' sockets), p50 / p95 (ms) "
        f"| {med(runs, 'transit_p50')} / {med(runs, 'transit_p95')} |  |  |",
        f"| of which: in the viewer page to drawn (decoder, page), p50 / p95 (ms) "
        f"| {med(runs, 'decode_p50')} / {med(runs, 'decode_p95')} |  |  |",
        f"| frames displayed per second | {med(runs, 'fps')} | 30 |  |",
        f"| received bitrate (kbit/s) | {med(runs, 'received_kbps', '{:.0f}')} | {args.bitrate} |  |",
        f"| chunks lost / dropped / skipped at the encoder | {med(runs, 'lost', '{:.0f}')} / "
        f"{med(runs, 'dropped', '{:.0f}')} / {med(runs, 'skipped_at_encoder', '{:.0f}')} |  |  |",
    ]
    section = "\n".join([
        "## Live broadcast", "",
        f"`benchmarks/broadcast.py --seconds {args.seconds:.0f} --reps {args.reps} --bitrate {args.bitrate} "
        f"--resolution {args.resolution} --source {args.source}`, {date}, {platform.node()} "
        f"({os.cpu_count()} cores, {cpu}, kernel {platform.release()}, Chromium headless); load average "
        f"{load_before:.1f} before, {load_after:.1f} after. Loopback: broadcaster page → gateway a → "
        "relay a → relay b → gateway b → viewer page, multicast strategy; VP8 (WebCodecs, realtime), "
        f"30 frames/s, {args.resolution}, target {args.bitrate} kbit/s, source {args.source}; measured "
        f"over {args.seconds:.0f} s after {SETTLE_S:.0f} s from the first picture"
        + (f"; median of {args.reps} runs (lowest–highest)" if args.reps > 1 else "; one run")
        + ". Glass-to-glass is display on the viewer's canvas minus the frame's capture (read from the "
        "track), both in gateway time on one machine; the encoder time is each frame's own, subtracted "
        "per frame before the percentile. The 2 cores are shared by two Chromium processes (encode, "
        "decode), two gateways, two relays and the controller.", "", *table, "",
        f"Runs meeting both targets: {sum(ok(r) for r in runs)} of {len(runs)}. Per run:", "",
        *[f"- run {i}: {run_line(r)}" for i, r in enumerate(runs, 1)], ""])
    print(section)
    if args.write:
        write_section("## Live broadcast", section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
