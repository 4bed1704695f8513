"""Table I in emulation: direct TCP vs Stemflow, emulated and simulated on the same scaled scenario.

Runs `python -m stemflow.emu` on the paper's Table I scenario with every rate and the TCP window
cap scaled by F (two shared cores carry about 1 Gbit/s of emulated traffic) and the bulk transfer
shortened by S, then `python -m stemflow.sim` on the very scenario file the emulator wrote (same
F, same S), and writes the section "## Table I in emulation" of docs/benchmarks.md: throughput
raw and unscaled (/ F), the 1 KB request-response latency, the gain over direct, the plan's rate
for the session, and whether every message arrived in order. Run as root:

    sudo .venv/bin/python benchmarks/table1_emu.py [--rate-scale 0.5] [--size-scale 0.25]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from stemflow.results import read_results

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
SECTION = "## Table I in emulation"
SCENARIO = ROOT / "scenarios" / "table1-us-east-asia-east.yaml"
STRATEGIES = ("direct", "multipath")
BULK, MESSAGE = "bulk-1GB", "msg-1KB"


def run(argv: list[str]) -> subprocess.CompletedProcess:
    print("+", " ".join(argv), flush=True)
    return subprocess.run(argv, capture_output=True, text=True)


def value(df, strategy: str, session: str, metric: str) -> float:
    rows = df[(df.strategy == strategy) & (df.session == session) & (df.metric == metric)]
    return float(rows["value"].median()) if len(rows) else float("nan")


def measure(out: Path, f: float, s: float) -> dict:
    emu_dir, sim_dir = out / "emu", out / "sim"
    strategies = [a for st in STRATEGIES for a in ("--strategy", st)]
    emu = run([sys.executable, "-m", "stemflow.emu", str(SCENARIO), "--rate-scale", repr(f),
               "--size-scale", repr(s), "--out", str(emu_dir), *strategies])
    if not (emu_dir / "results.csv").exists():
        raise SystemExit(f"emulation failed:\n{emu.stderr[-3000:]}")
    sim = run([sys.executable, "-m", "stemflow.sim", str(emu_dir / "scenario-emulated.yaml"),
               "--strategy", *STRATEGIES, "--out", str(sim_dir), "--no-plots", "--quiet"])
    if sim.returncode != 0:
        raise SystemExit(f"simulation failed:\n{sim.stderr[-3000:]}")
    e, m = read_results(emu_dir), read_results(sim_dir)
    manifest = json.loads((emu_dir / "manifest.json").read_text())
    return {"emu": e, "sim": m, "manifest": manifest, "problems": emu.stderr.strip()}


def section(r: dict, f: float, s: float) -> str:
    e, m, manifest = r["emu"], r["sim"], r["manifest"]
    t = {w: {st: value(w_df, st, BULK, "throughput_mbps") for st in STRATEGIES}
         for w, w_df in (("emu", e), ("sim", m))}
    lat = {w: {st: value(w_df, st, MESSAGE, "rr_latency_ms") for st in STRATEGIES}
           for w, w_df in (("emu", e), ("sim", m))}
    plan = value(m, "multipath", BULK, "planned_rate_mbps")
    gain = {w: t[w]["multipath"] / t[w]["direct"] for w in ("emu", "sim")}
    lost = [c for c in manifest["delivery"]
            if c["received"] != c["expected"] or not c["in_order"] or c["duplicates"]]
    lines = [
        SECTION, "",
        f"`benchmarks/table1_emu.py`, {time.strftime('%Y-%m-%d')}, {platform.node()} "
        f"({os.cpu_count()} cores, kernel {platform.release()}, link backend "
        f"{manifest['link_backend']}): `scenarios/table1-us-east-asia-east.yaml` with every rate "
        f"and the TCP window cap scaled by F = {f:g} and the 1 GB transfer shortened to "
        f"{s:g} GB; the simulator ran the scenario file the emulator wrote (same F and size). "
        "'unscaled' = rate / F. Latency: one 1 KB request-response exchange (median).", "",
        "| strategy | emu throughput (Mbit/s) | emu unscaled | sim throughput (Mbit/s) | "
        "sim unscaled | emu 1 KB RR (ms) | sim 1 KB RR (ms) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for st in STRATEGIES:
        lines.append(f"| {st} | {t['emu'][st]:.1f} | {t['emu'][st] / f:.1f} | "
                     f"{t['sim'][st]:.1f} | {t['sim'][st] / f:.1f} | {lat['emu'][st]:.1f} | "
                     f"{lat['sim'][st]:.1f} |")
    lines += [
        "",
        f"Gain of multipath over direct: emulated {gain['emu']:.2f}x, simulated "
        f"{gain['sim']:.2f}x (emulated / simulated = {gain['emu'] / gain['sim']:.2f}). "
        f"Multipath's emulated throughput is {t['emu']['multipath'] / plan:.0%} of the plan's "
        f"rate for the session ({plan:.1f} Mbit/s).",
    ]
    if lost:
        worst = ", ".join(f"{c['strategy']} {c['session']}: {c['received']}/{c['expected']} "
                          f"messages, in order {c['in_order']}" for c in lost)
        lines += ["", f"Delivery problems in this run (throughput counts delivered bytes only): "
                      f"{worst}."]
    else:
        lines += ["", "Every message arrived once and in order."]
    return "\n".join(lines) + "\n"


def write_section(text: str) -> None:
    """Replace (or append) our section, re-reading the file right before writing."""
    doc = DOC.read_text()
    start = doc.find(SECTION + "\n")
    if start < 0:
        doc = doc.rstrip("\n") + "\n\n" + text
    else:
        end = doc.find("\n## ", start + len(SECTION))
        doc = doc[:start] + text + ("" if end < 0 else "\n" + doc[end + 1:])
    DOC.write_text(doc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate-scale", type=float, default=0.5)
    ap.add_argument("--size-scale", type=float, default=0.25)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "table1-emu-bench")
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args()
    text = section(measure(a.out, a.rate_scale, a.size_scale), a.rate_scale, a.size_scale)
    print(text)
    if not a.no_write:
        write_section(text)


if __name__ == "__main__":
    main()
