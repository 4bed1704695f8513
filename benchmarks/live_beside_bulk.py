"""Live beside bulk on loopback: a 5 Mbit/s live stream of 30 frames/s through two relays that
also carry a bulk session at full speed.

Publisher -> relay a -> relay b -> subscriber, for both sessions (P=4 bulk connections between
the relays). Every publisher and subscriber is its own process; the live frames carry their
send time (CLOCK_MONOTONIC, shared by every process on the machine), so their one-way latency
is measured at the subscriber. Three phases per repetition, in one overlay:
  1. bulk alone: its goodput (64 KiB reliable messages, publisher flat out);
  2. live alone: the live frames' one-way latency (p50, p99);
  3. both: the live frames' latency and the bulk goodput while they share the relays.
Targets (issue 12): bulk adds <= 2 ms to the live p99; bulk keeps >= 90% of its rate alone.
`--baseline TREE` runs the same phases with the `stemflow` of another source tree (e.g. a git
worktree of the commit before credit flow control) in the same run, for a ratio.

Usage: python benchmarks/live_beside_bulk.py [--reps 3] [--baseline TREE] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import inspect
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from dataplane import PY, Procs, read_line
from docpage import write_section

ROOT = Path(__file__).resolve().parent.parent
LIVE_MBPS = 5.0
LIVE_FPS = 30
LIVE_FRAME_BYTES = int(LIVE_MBPS * 1e6 / 8 / LIVE_FPS)  # 20 833 B
LIVE_S = 6.0
BULK_BYTES = 64 << 10
BULK_LEAD_S = 1.0
"""The bulk session runs this long before the live frames start, so its queues are full."""
IDLE_S = 2.0


# -- workers (separate processes) -------------------------------------------------------------------


async def _wait_planned(status: str, topic: str) -> None:
    import urllib.request

    while True:
        with urllib.request.urlopen(status, timeout=5) as r:
            if any(s["id"] == topic and s["rate_mbps"] for s in json.load(r)["sessions"]):
                break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)


async def worker(role: str, addr: str, status: str, run_s: float) -> dict:
    from stemflow.client import connect

    c = await connect(addr)
    if role in ("live-sub", "bulk-sub"):
        sub = await c.subscribe(role.split("-")[0])
        print("ready", flush=True)
        lat_ms: list[float] = []
        n = nbytes = 0
        first = last = 0
        while True:
            try:
                m = await asyncio.wait_for(sub.__anext__(), IDLE_S if n else 60)
            except (TimeoutError, StopAsyncIteration):
                break
            now = time.monotonic_ns()
            first = first or now
            last = now
            n += 1
            nbytes += len(m.data)
            if role == "live-sub":
                lat_ms.append((now - int.from_bytes(m.data[:8], "big")) / 1e6)
        await c.close()
        return {"count": n, "bytes": nbytes, "span_s": (last - first) / 1e9, "lat_ms": lat_ms}
    topic = role.split("-")[0]
    if topic == "live":
        # A baseline tree's client may predate stated rates (then its controller plans a live
        # session without one, as that tree did).
        rate = ({"max_rate_mbps": LIVE_MBPS * 2}
                if "max_rate_mbps" in inspect.signature(c.open_stream).parameters else {})
        stream = c.open_stream("live", reliable=False, delay_sensitive=True, **rate)
    else:
        stream = c.open_stream("bulk")
    await stream.drain()
    await _wait_planned(status, topic)
    sent = 0
    t0 = time.monotonic()
    if topic == "live":
        frame = bytearray(LIVE_FRAME_BYTES)
        while time.monotonic() - t0 < run_s:
            frame[:8] = time.monotonic_ns().to_bytes(8, "big")
            await stream.write(bytes(frame))
            sent += 1
            await asyncio.sleep(max(0.0, t0 + sent / LIVE_FPS - time.monotonic()))
    else:
        data = bytes(BULK_BYTES)
        while time.monotonic() - t0 < run_s:
            for _ in range(16):
                stream.send(data)
            sent += 16
            await stream.drain()
    await c.close()
    return {"sent": sent}


# -- the harness -------------------------------------------------------------------------------------


def start_overlay(procs: Procs, tmp: Path) -> tuple[dict[str, str], str]:
    scenario = tmp / "live.yaml"
    scenario.write_text("name: live-beside-bulk\ndatacenters: [{name: a}, {name: b}]\nlinks:\n"
                        "  - {a: a, b: b, rtt_ms: 1, bandwidth_mbps: 100000}\n"
                        "clients: []\nsessions: []\n")
    ctl = procs.start("controller", [PY, "-m", "stemflow.cli", "controller", "--listen",
                                     "127.0.0.1:0", "--status", "127.0.0.1:0", "--strategy",
                                     "shortest", "--scenario", str(scenario), "--log-level",
                                     "WARNING"])
    port = read_line(ctl, "controller listening").rsplit(":", 1)[1]
    status = read_line(ctl, "controller status").split()[-1]
    addr = {}
    for dc in ("a", "b"):
        p = procs.start(f"relay-{dc}", [PY, "-m", "stemflow.cli", "relay", "--dc", dc, "--listen",
                                        "127.0.0.1:0", "--controller", f"127.0.0.1:{port}",
                                        "--parallel", "4", "--log-level", "WARNING"])
        addr[dc] = read_line(p, f"relay {dc} listening").split()[-1]
    time.sleep(1.5)
    return addr, status


def spawn(procs: Procs, role: str, addr: str, status: str, run_s: float):
    return procs.start(role, [PY, str(Path(__file__).resolve()), "--worker", role, addr, status,
                              str(run_s)])


def result(p, procs: Procs | None = None, name: str = "") -> dict:
    out, _ = p.communicate(timeout=180)
    lines = out.decode().strip().splitlines()
    if not lines:
        log = (procs.tmp / f"{name}.log").read_text()[-2000:] if procs and name else ""
        raise RuntimeError(f"worker {name or p.args} printed no result (exit {p.returncode}): {log}")
    return json.loads(lines[-1])


def phase(procs: Procs, addr: dict[str, str], status: str, live: bool, bulk: bool) -> dict:
    subs, pubs = {}, {}
    bulk_s = LIVE_S + 2 * BULK_LEAD_S if live else LIVE_S
    if bulk:
        subs["bulk"] = spawn(procs, "bulk-sub", addr["b"], status, 0)
        read_line(subs["bulk"], "ready")
        pubs["bulk"] = spawn(procs, "bulk-pub", addr["a"], status, bulk_s)
    if live:
        subs["live"] = spawn(procs, "live-sub", addr["b"], status, 0)
        read_line(subs["live"], "ready")
        if bulk:
            time.sleep(BULK_LEAD_S)
        pubs["live"] = spawn(procs, "live-pub", addr["a"], status, LIVE_S)
    for name, p in pubs.items():
        result(p, procs, f"{name}-pub")
    out = {}
    if bulk:
        s = result(subs["bulk"], procs, "bulk-sub")
        out["bulk_gbps"] = s["bytes"] * 8 / 1e9 / max(s["span_s"], 1e-9)
    if live:
        s = result(subs["live"], procs, "live-sub")
        lat = sorted(s["lat_ms"])
        out["live_frames"] = len(lat)
        out["live_p50_ms"] = statistics.median(lat)
        out["live_p99_ms"] = lat[int(0.99 * (len(lat) - 1))]
    return out


def bench(tmp: Path, tree: Path) -> dict:
    procs = Procs(tmp)
    procs.tree = tree
    try:
        addr, status = start_overlay(procs, tmp)
        alone = phase(procs, addr, status, live=False, bulk=True)
        quiet = phase(procs, addr, status, live=True, bulk=False)
        both = phase(procs, addr, status, live=True, bulk=True)
    finally:
        procs.close()
    return {"bulk_alone_gbps": alone["bulk_gbps"], "live_alone_p50_ms": quiet["live_p50_ms"],
            "live_alone_p99_ms": quiet["live_p99_ms"], "live_beside_p50_ms": both["live_p50_ms"],
            "live_beside_p99_ms": both["live_p99_ms"], "bulk_beside_gbps": both["bulk_gbps"],
            "live_frames": both["live_frames"],
            "added_p99_ms": both["live_p99_ms"] - quiet["live_p99_ms"],
            "bulk_kept": both["bulk_gbps"] / alone["bulk_gbps"]}


ROWS = [("bulk alone, Gbit/s", "bulk_alone_gbps", "{:.2f}"),
        ("bulk beside live, Gbit/s", "bulk_beside_gbps", "{:.2f}"),
        ("bulk keeps (beside / alone)", "bulk_kept", "{:.2f}"),
        ("live alone, p50 / p99 ms", ("live_alone_p50_ms", "live_alone_p99_ms"), "{:.2f} / {:.2f}"),
        ("live beside bulk, p50 / p99 ms", ("live_beside_p50_ms", "live_beside_p99_ms"),
         "{:.2f} / {:.2f}"),
        ("bulk adds to live p99, ms", "added_p99_ms", "{:+.2f}")]


def cell(reps: list[dict], key, fmt: str) -> str:
    keys = key if isinstance(key, tuple) else (key,)
    med = [statistics.median(r[k] for r in reps) for k in keys]
    text = fmt.format(*med)
    if len(reps) > 1 and len(keys) == 1:
        vals = [r[keys[0]] for r in reps]
        text += f" ({fmt.format(min(vals))} – {fmt.format(max(vals))})"
    return text


def render(results: dict[str, list[dict]], reps: int) -> str:
    names = list(results)
    lines = [f"Measured {datetime.date.today().isoformat()} on {platform.machine()}, "
             f"{os.cpu_count()} cores, Python {platform.python_version()}, load "
             f"{os.getloadavg()[0]:.1f} at the end; `python benchmarks/live_beside_bulk.py "
             f"--reps {reps}`{' --baseline TREE' if len(names) > 1 else ''}. A {LIVE_MBPS:g} "
             f"Mbit/s live stream ({LIVE_FPS} frames/s of {LIVE_FRAME_BYTES} B, delay-sensitive, "
             f"unreliable) and a reliable bulk session (64 KiB messages, publisher flat out), "
             f"both a -> b through two relays on loopback, every client its own process. Medians "
             f"of {reps} repetitions (range in brackets). Targets: bulk adds <= 2 ms to the live "
             f"p99, bulk keeps >= 0.90 of its rate alone.", "",
             "| row | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for label, key, fmt in ROWS:
        lines.append(f"| {label} | " + " | ".join(cell(results[n], key, fmt) for n in names) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if argv[:1] == ["--worker"]:
        role, addr, status, run_s = argv[1:5]
        print(json.dumps(asyncio.run(worker(role, addr, status, float(run_s)))), flush=True)
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--baseline", type=Path, help="another source tree, measured in the same run")
    ap.add_argument("--write", action="store_true", help="write docs/benchmarks.md's section")
    args = ap.parse_args(argv)
    trees = {"this tree": ROOT}
    if args.baseline:
        trees = {f"baseline ({args.baseline.name})": args.baseline.resolve(), **trees}
    results: dict[str, list[dict]] = {n: [] for n in trees}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.reps):
            for name, tree in trees.items():
                d = Path(tmp) / f"{i}-{len(results[name])}-{tree.name}"
                d.mkdir()
                r = bench(d, tree)
                results[name].append(r)
                print(f"rep {i + 1}/{args.reps} {name}: " + json.dumps(
                    {k: round(v, 3) for k, v in r.items()}), file=sys.stderr, flush=True)
    text = render(results, args.reps)
    print(text)
    if args.write:
        write_section("## Live beside bulk", "## Live beside bulk\n\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
