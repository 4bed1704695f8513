"""The Fig. 1 video broadcast emulated over a bitrate sweep, beside the simulator on each run.

Runs `scenarios/fig1-video-5dc.yaml` (broadcaster in us-west1, viewers in four other GCP
regions; the `video` workload) in the emulator at rate scale F under each strategy it names
(`multicast`: Stemflow's trees; `shortest`: unicast fan-out from the source datacenter's relay,
one copy per viewer over the overlay; `direct`: server-based, one TCP connection per viewer from
the source over the Internet path), at each bitrate of `--bitrates` (the scenario's units; the
emulation carries them times F), `--reps` times, bitrates interleaved within each repetition.
After each emulation the simulator runs the very scenario file the emulator wrote. Each run's
per-viewer summary (frame delay p50 / p95, freeze ratio, deadline misses, source egress) is
appended to `--results` (CSV, written as the runs go, so an interrupted sweep keeps what it
measured); `--write` renders the section "## Emulated Fig. 1 video broadcast" of
docs/benchmarks.md from that file (`stemflow.analysis.fig1_video`). Run as root:

    sudo .venv/bin/python benchmarks/broadcast_emu.py [--rate-scale 0.01] [--bitrates 8,50,100,200,400]
        [--sim-bitrates 800,1600] [--reps 3] [--seconds 10] [--write]
    .venv/bin/python benchmarks/broadcast_emu.py --from-results --write   # render only
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import yaml
from docpage import write_section
from stemflow.analysis import fig1_video

from stemflow.results import read_results
from stemflow.scenario import load_scenario

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "scenarios" / "fig1-video-5dc.yaml"
RESULTS = ROOT / "benchmarks" / "results" / "fig1-video.csv"


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def run(cmd: list[str], log: Path) -> int:
    with log.open("w") as f:
        return subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT).returncode


def commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                         cwd=ROOT)
    return out.stdout.strip() or "unknown"


def variant(bitrate_mbps: float, seconds: float, out: Path) -> Path:
    """The scenario at `bitrate_mbps` for `seconds`, its measured-data paths made absolute."""
    data = yaml.safe_load(SCENARIO.read_text())
    for key in ("rtt_csv", "bandwidth_csv"):
        data["mesh"][key] = str((SCENARIO.parent / data["mesh"][key]).resolve())
    w = data["sessions"][0]["workload"]
    w["bitrate"], w["duration"] = f"{bitrate_mbps:g} Mbit/s", f"{seconds:g} s"
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


def summarize(results: Path, mode: str, meta: dict) -> list[dict]:
    """One row per strategy and viewer (and per strategy the source's egress, unscaled)."""
    df = read_results(results)
    df = df[df.workload == "video"]
    by: dict = defaultdict(list)
    for r in df.itertuples():
        by[(r.strategy, r.session, r.metric)].append(r.value)
    scale = meta["rate_scale"]
    scenario = load_scenario(SCENARIO)
    session = scenario.sessions[0]
    rtt = {frozenset((lk.a, lk.b)): lk.rtt_ms for lk in scenario.links}
    src = scenario.client(session.publisher).datacenter
    rows = []
    for strategy in sorted({k[0] for k in by}):
        egress = by.get((strategy, session.id, "source_egress_mbps"))
        for viewer in session.subscribers:
            label = f"{session.id}/{viewer}"
            d = by.get((strategy, label, "frame_delay_ms"), [])
            rows.append({
                **meta, "mode": mode, "strategy": strategy, "viewer": viewer,
                "propagation_ms": rtt[frozenset((src, scenario.client(viewer).datacenter))] / 2,
                "frames": len(d),
                "p50_ms": statistics.median(d) if d else "",
                "p95_ms": pct(d, 0.95) if d else "",
                "freeze_ratio": by.get((strategy, label, "freeze_ratio"), [""])[0],
                "deadline_miss_ratio": by.get((strategy, label, "deadline_miss_ratio"), [""])[0],
                "source_egress_mbps": egress[0] / scale if egress else "",
            })
    return rows


def append(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fig1_video.COLUMNS)
        if new:
            w.writeheader()
        w.writerows(rows)


def one_run(bitrate: float, rep: int, args: argparse.Namespace, rev: str) -> None:
    with tempfile.TemporaryDirectory(prefix="broadcast-emu-") as t:
        tdir = Path(t)
        scenario = variant(bitrate, args.seconds, tdir / "fig1-video-5dc.yaml")
        emu, sim = tdir / "emu", tdir / "sim"
        load_before = os.getloadavg()[0]
        t0 = time.monotonic()
        code = run([sys.executable, "-m", "stemflow.emu", str(scenario), "--rate-scale",
                    f"{args.rate_scale:g}", "--out", str(emu)], tdir / "emu.log")
        wall_s = time.monotonic() - t0
        if code != 0 or not (emu / "results.csv").exists():
            print((tdir / "emu.log").read_text()[-3000:], file=sys.stderr)
            raise SystemExit(f"benchmarks/broadcast_emu.py: the emulation failed (exit {code}) "
                             f"at {bitrate:g} Mbit/s")
        code = run([sys.executable, "-m", "stemflow.sim", str(emu / "scenario-emulated.yaml"),
                    "--out", str(sim), "--no-plots", "--quiet"], tdir / "sim.log")
        if code != 0:
            raise SystemExit("benchmarks/broadcast_emu.py: the simulation failed "
                             f"(exit {code}): {(tdir / 'sim.log').read_text()[-500:]}")
        meta = {"date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                "commit": rev, "machine": f"{platform.node()} ({os.cpu_count()} cores, kernel "
                f"{platform.release()})", "rep": rep, "bitrate_mbps": bitrate,
                "rate_scale": args.rate_scale, "seconds": args.seconds,
                "load_before": round(load_before, 1), "load_after": round(os.getloadavg()[0], 1),
                "emu_wall_s": round(wall_s)}
        append(args.results, summarize(emu / "results.csv", "emu", meta)
               + summarize(sim / "results.csv", "sim", meta))
        print(f"rep {rep} {bitrate:g} Mbit/s: emulated in {wall_s:.0f} s, load "
              f"{load_before:.1f} -> {os.getloadavg()[0]:.1f}", flush=True)


def sim_only(bitrate: float, args: argparse.Namespace, rev: str) -> None:
    """The simulator alone at `bitrate`, on the scenario as the emulator would write it (rates
    times F): past the bitrates 2 shared cores can emulate, where the strategies part."""
    from stemflow.emu.run import scaled_scenario, write_scenario
    with tempfile.TemporaryDirectory(prefix="broadcast-sim-") as t:
        tdir = Path(t)
        scenario = load_scenario(variant(bitrate, args.seconds, tdir / "fig1-video-5dc.yaml"))
        emulated = write_scenario(scaled_scenario(scenario, args.rate_scale), tdir / "scaled.yaml")
        code = run([sys.executable, "-m", "stemflow.sim", str(emulated), "--out", str(tdir / "sim"),
                    "--no-plots", "--quiet"], tdir / "sim.log")
        if code != 0:
            raise SystemExit("benchmarks/broadcast_emu.py: the simulation failed "
                             f"(exit {code}): {(tdir / 'sim.log').read_text()[-500:]}")
        meta = {"date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                "commit": rev, "machine": f"{platform.node()} ({os.cpu_count()} cores)", "rep": 1,
                "bitrate_mbps": bitrate, "rate_scale": args.rate_scale, "seconds": args.seconds,
                "load_before": "", "load_after": "", "emu_wall_s": ""}
        append(args.results, summarize(tdir / "sim" / "results.csv", "sim", meta))


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rate-scale", type=float, default=0.01)
    p.add_argument("--bitrates", default="8,50,100,200,400",
                   help="video bitrates in the scenario's units, Mbit/s, comma-separated")
    p.add_argument("--sim-bitrates", default="800,1600",
                   help="bitrates simulated only (past what the emulation can carry here)")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--seconds", type=float, default=10.0, help="each broadcast's length")
    p.add_argument("--results", type=Path, default=RESULTS, help="summary CSV (appended to)")
    p.add_argument("--from-results", action="store_true", help="run nothing; render --results")
    p.add_argument("--sim-only", action="store_true",
                   help="run only the --sim-bitrates simulations (no root), appending to --results")
    p.add_argument("--write", action="store_true", help="rewrite the section in docs/benchmarks.md")
    args = p.parse_args(argv)
    try:
        bitrates = [float(x) for x in args.bitrates.split(",") if x.strip()]
        sim_bitrates = [float(x) for x in args.sim_bitrates.split(",") if x.strip()]
    except ValueError:
        p.error(f"--bitrates must be numbers separated by commas, found {args.bitrates!r}")
    if args.sim_only and not args.from_results:
        for bitrate in sim_bitrates:
            sim_only(bitrate, args, commit())
    elif not args.from_results:
        if os.geteuid() != 0:
            p.error("needs root (the emulator builds network namespaces); or --from-results")
        rev = commit()
        for rep in range(1, args.reps + 1):
            for bitrate in bitrates:
                one_run(bitrate, rep, args, rev)
        for bitrate in sim_bitrates:
            sim_only(bitrate, args, rev)
    if not args.results.exists():
        p.error(f"no results at {args.results}")
    section = fig1_video.benchmark_section(fig1_video.load(args.results))
    print(section)
    if args.write:
        write_section(fig1_video.HEADING, section)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
