"""Emulated multicast against the simulator, by rate scale: how far down F must go on this host.

Runs the Fig. 1 broadcast (`scenarios/fig1-broadcast-5dc.yaml`, strategy `multicast`: every relay
replicates, trees cross every link) in the emulator at each rate scale F, then the simulator on
the very scenario file the emulator wrote, and writes the section "## Emulated multicast by rate
scale" of docs/benchmarks.md. Per F: the bulk session's throughput per subscriber (median over
subscribers, emulated / simulated), the live stream's deadline misses, whether every frame of
the (reliable) bulk session arrived in order, and how busy the machine's CPUs were while the
emulation ran (from /proc/stat, sampled every second). Run as root:

    sudo .venv/bin/python benchmarks/multicast_emu.py [--rate-scale 0.1 0.05 0.025] [--write]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from docpage import write_section

from stemflow.results import read_results
from stemflow.scenario import load_scenario

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "scenarios" / "fig1-broadcast-5dc.yaml"
STRATEGY = "multicast"
SAMPLE_S = 1.0
BUSY_WINDOW_S = 5
"""CPU busy share is reported as the mean over the run and the highest over any 5 s."""


def cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def emulate(scale: float, out: Path) -> tuple[list[float], int]:
    """Run the emulation; return the CPU busy share of each second and its exit code."""
    cmd = [sys.executable, "-m", "stemflow.emu", str(SCENARIO), "--strategy", STRATEGY,
           "--rate-scale", f"{scale:g}", "--out", str(out)]
    busy: list[float] = []
    with open(out.with_suffix(".log"), "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        last = cpu_times()
        while proc.poll() is None:
            time.sleep(SAMPLE_S)
            now = cpu_times()
            busy.append((now[0] - last[0]) / max(1, now[1] - last[1]))
            last = now
    return busy, proc.returncode


def simulate(out: Path) -> Path:
    dest = out.parent / (out.name + "-sim")
    subprocess.run([sys.executable, "-m", "stemflow.sim", str(out / "scenario-emulated.yaml"),
                    "--strategy", STRATEGY, "--out", str(dest), "--no-plots", "--quiet"],
                   check=True, cwd=ROOT, capture_output=True)
    return dest


def medians(results: Path) -> tuple[float, float]:
    """(bulk throughput per subscriber, live deadline-miss ratio): medians over subscribers."""
    df = read_results(results)
    bulk = df[(df.workload == "bulk") & (df.metric == "throughput_mbps")]["value"]
    live = df[(df.workload == "stream") & (df.metric == "deadline_miss_ratio")]["value"]
    return statistics.median(bulk), statistics.median(live)


def measure(scale: float, tmp: Path) -> dict:
    out = tmp / f"f{scale:g}"
    busy, code = emulate(scale, out)
    if code != 0 or not (out / "results.csv").exists():
        raise SystemExit(f"emulation at F={scale:g} failed (exit {code}); log: {out.with_suffix('.log')}")
    sim = simulate(out)
    emu_bulk, emu_live = medians(out)
    sim_bulk, sim_live = medians(sim)
    bulk = {x.id for x in load_scenario(SCENARIO).sessions if x.workload.type == "bulk"}
    delivery = [c for c in json.loads((out / "manifest.json").read_text()).get("delivery", [])
                if c["session"] in bulk]  # a live stream may drop frames by design
    lost = [c["expected"] - c["received"] for c in delivery]
    windows = [statistics.mean(busy[i:i + BUSY_WINDOW_S])
               for i in range(max(1, len(busy) - BUSY_WINDOW_S + 1))]
    return {"scale": scale, "emu_mbps": emu_bulk, "sim_mbps": sim_bulk, "emu_miss": emu_live,
            "sim_miss": sim_live, "lost_max": max(lost, default=0),
            "in_order": all(c["in_order"] and not c["duplicates"] for c in delivery),
            "busy_mean": statistics.mean(busy) if busy else 0.0, "busy_peak": max(windows, default=0.0),
            "wall_s": len(busy) * SAMPLE_S}


def render(rows: list[dict], load: str) -> str:
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    lines = [
        "## Emulated multicast by rate scale", "",
        f"`benchmarks/multicast_emu.py`, {date}, {platform.node()} ({os.cpu_count()} cores, kernel "
        f"{platform.release()}); load average {load}. `scenarios/fig1-broadcast-5dc.yaml` under "
        "`multicast` (every relay replicates; the plan's trees cross every link), emulated with every "
        "rate, the window cap and the live stream's bitrate times F, then simulated on the scenario "
        "file the emulator wrote. Throughput: the 1 GB file-share session per subscriber, median of "
        "the four subscribers, in the scaled units. Deadline misses: the live stream, median over "
        "subscribers. CPU busy: all cores, mean over the emulation (set-up and tear-down "
        f"included) and highest over any {BUSY_WINDOW_S} s.", "",
        "| F | emu Mbit/s | sim Mbit/s | emu / sim | live misses emu | live misses sim "
        "| file-share frames lost (worst subscriber) | in order | CPU busy mean / peak | wall s |",
        "|---:|---:|---:|---:|---:|---:|---:|---|---|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['scale']:g} | {r['emu_mbps']:.1f} | {r['sim_mbps']:.1f} | "
            f"{r['emu_mbps'] / r['sim_mbps']:.2f} | {r['emu_miss']:.1%} | {r['sim_miss']:.1%} | "
            f"{r['lost_max']} | {'yes' if r['in_order'] else '**no**'} | "
            f"{r['busy_mean']:.0%} / {r['busy_peak']:.0%} | {r['wall_s']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rate-scale", type=float, nargs="+", default=[0.1, 0.05, 0.025])
    p.add_argument("--write", action="store_true", help="rewrite the section in docs/benchmarks.md")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        p.error("needs root (the emulator builds network namespaces)")
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="multicast-emu-") as t:
        rows = []
        for scale in args.rate_scale:
            rows.append(measure(scale, Path(t)))
            print(json.dumps(rows[-1]), flush=True)
    section = render(rows, f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    print(section)
    if args.write:
        write_section("## Emulated multicast by rate scale", section)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
