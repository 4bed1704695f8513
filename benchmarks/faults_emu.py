"""A relay killed on Table I's multipath route, emulated and simulated on the same scaled scenario.

Runs `python -m stemflow.emu scenarios/table1-relay-fault.yaml` (every rate and the TCP window cap
times F, the 1 GB transfer times S) `--runs` times, each followed by `python -m stemflow.sim` on
the very scenario file that emulator run wrote, and writes the section "## Faults: a relay killed
on Table I's multipath route" of docs/benchmarks.md: per run, the time until the controller
re-planned and the bytes delivered in both drivers with their ratio (issue 15 target: within
±15%), bytes lost, resumption and dip, and the load average before and after; and the timeline
figure of the first run (docs/figures/faults-table1-relay-fault.{png,pdf,svg}). Run as root:

    sudo .venv/bin/python benchmarks/faults_emu.py [--rate-scale 0.1] [--size-scale 0.1] [--runs 3]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pandas as pd
from docpage import write_section
from stemflow.analysis.timeline import fault_marks, timeline_figure, timeline_table

from stemflow.figure_style import save
from stemflow.results import read_results
from stemflow.workloads.bulk import BULK_CHUNK_BYTES

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Faults: a relay killed on Table I's multipath route"
SCENARIO = ROOT / "scenarios" / "table1-relay-fault.yaml"
FIGURES = ROOT / "docs" / "figures"
SESSION = "bulk-1GB"
FAULT = "fault 0: relay us-central1 killed"
TOLERANCE = 0.15
GAVE_UP = re.compile(r"gave up (\d+) frames of a reliable stream")
"""How an egress relay logs the frames of a reliable stream it stopped waiting for."""
SOLVE = re.compile(r"plan v\d+ \(multipath\): .*?, ([\d.]+) s; relay us-central1 left")
"""The controller's log line of the plan that answered the kill, with its solve time."""


def run_once(out: Path, f: float, s: float) -> dict:
    """One emulated run and the simulation of the scenario it wrote; the load around them."""
    load_before = os.getloadavg()[0]
    emu = subprocess.run([sys.executable, "-m", "stemflow.emu", str(SCENARIO), "--rate-scale", repr(f),
                          "--size-scale", repr(s), "--out", str(out / "emu")],
                         capture_output=True, text=True)
    if not (out / "emu" / "results.csv").exists():
        sys.exit(f"emulation failed (exit {emu.returncode}): {emu.stderr.strip()[-2000:]}")
    simulate(out)
    (out / "load.txt").write_text(f"{load_before} {os.getloadavg()[0]}\n")
    return read_run(out)


def simulate(out: Path) -> None:
    """The simulator on the scenario file the emulator run in `out` wrote (deterministic)."""
    shutil.rmtree(out / "sim", ignore_errors=True)
    subprocess.run([sys.executable, "-m", "stemflow.sim", str(out / "emu" / "scenario-emulated.yaml"),
                    "--out", str(out / "sim"), "--no-plots", "--quiet"], check=True)


def read_run(out: Path) -> dict:
    """What one run left in `out` (emu/, sim/, load.txt), read back."""
    solve = [float(m.group(1)) for log in (out / "emu" / "logs").glob("*/controller.out")
             for m in SOLVE.finditer(log.read_text(errors="replace"))]
    relay_logs = [log.read_text(errors="replace") for log in (out / "emu" / "logs").glob("*/relay-*.out")]
    given_up = sum(int(m.group(1)) for text in relay_logs for m in GAVE_UP.finditer(text))
    when = sorted(_stamp(ln) for text in relay_logs for ln in text.splitlines() if GAVE_UP.search(ln))
    plans = [_stamp(ln) for log in (out / "emu" / "logs").glob("*/controller.out")
             for ln in log.read_text(errors="replace").splitlines() if SOLVE.search(ln)]
    before, after = (float(x) for x in (out / "load.txt").read_text().split())
    return {"emu": read_results(out / "emu"), "sim": read_results(out / "sim"), "load": (before, after),
            "given_up": given_up, "solve_s": solve[0] if solve else float("nan"),
            "given_up_s": (when[0] - plans[0], when[-1] - plans[0]) if when and plans else None}


def _stamp(line: str) -> float:
    """A log line's time (its asctime prefix), in seconds since the epoch."""
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def value(df: pd.DataFrame, session: str, metric: str) -> float:
    v = df[(df["session"] == session) & (df["metric"] == metric)]["value"]
    return float(v.iloc[0]) if len(v) else float("nan")


def section(runs: list[dict], f: float, s: float) -> str:
    after = f"{SESSION} after fault 0"
    lines = [
        SECTION, "",
        f"`benchmarks/faults_emu.py`, {time.strftime('%Y-%m-%d')}, {platform.node()} "
        f"({os.cpu_count()} cores, kernel {platform.release()}): `scenarios/table1-relay-fault.yaml` "
        f"(Table I's overlay, the 1 GB transfer under `multipath`, the relay in us-central1 killed "
        f"2 s into the run) with every rate and the TCP window cap times F = {f:g} and the "
        f"transfer times S = {s:g}; the simulator ran the scenario file each emulator run wrote. "
        "Re-plan: kill to the controller's first plan that answers it (emu: from the controller's "
        "log, which also gives that plan's solve time; sim: simulated time, no solve time "
        "charged). Lost: emu, messages that never arrived; "
        "sim, what was on the wire into the relay and the share of the split dropped before new "
        "tables arrived. Load average (1 min) before / after each run.", "",
        "| run | re-plan emu (ms) | of which solving (ms) | re-plan sim (ms) | delivered emu (MB) | "
        "delivered sim (MB) | "
        "emu / sim | lost emu (MB) | lost sim (MB) | frames given up by relays (emu) | "
        "resumed emu / sim (s) | dip emu / sim (Mbit/s) | load |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for i, r in enumerate(runs, 1):
        e, m = r["emu"], r["sim"]
        de, dm = value(e, SESSION, "delivered_bytes"), value(m, SESSION, "delivered_bytes")
        lines.append(
            f"| {i} | {1e3 * value(e, FAULT, 'fault_replan_s'):.1f} | {1e3 * r['solve_s']:.0f} | "
            f"{1e3 * value(m, FAULT, 'fault_replan_s'):.1f} | {de / 1e6:.2f} | {dm / 1e6:.2f} | "
            f"{de / dm:.3f} | {value(e, after, 'fault_lost_bytes') / 1e6:.2f} | "
            f"{value(m, after, 'fault_lost_bytes') / 1e6:.2f} | {r['given_up']} | "
            f"{value(e, after, 'fault_resume_s'):.2f} / {value(m, after, 'fault_resume_s'):.2f} | "
            f"{value(e, after, 'fault_dip_mbps'):.0f} / {value(m, after, 'fault_dip_mbps'):.0f} | "
            f"{r['load'][0]:.2f} / {r['load'][1]:.2f} |")
    ratios = [value(r["emu"], SESSION, "delivered_bytes") / value(r["sim"], SESSION, "delivered_bytes")
              for r in runs]
    replans = [value(r["emu"], FAULT, "fault_replan_s") / value(r["sim"], FAULT, "fault_replan_s")
               for r in runs]
    met = lambda xs: sum(abs(x - 1) <= TOLERANCE for x in xs)  # noqa: E731
    given_up_mb = [r["given_up"] * BULK_CHUNK_BYTES / 1e6 for r in runs]
    lost_mb = [value(r["emu"], after, "fault_lost_bytes") / 1e6 for r in runs]
    spans = ", ".join(f"{r['given_up_s'][0]:.1f}-{r['given_up_s'][1]:.1f} s" for r in runs if r["given_up_s"])
    lines += [
        "",
        f"Bytes delivered, emulated / simulated: {', '.join(f'{x:.3f}' for x in ratios)} "
        f"(±{TOLERANCE:.0%}: met in {met(ratios)} of {len(runs)} runs). Time to re-plan, emulated / "
        f"simulated: {', '.join(f'{x:.2f}' for x in replans)} (±{TOLERANCE:.0%}: met in "
        f"{met(replans)} of {len(runs)} runs). Completion of the transfer, emulated / simulated: "
        + ", ".join(f"{value(r['emu'], SESSION, 'completion_s'):.2f} s / "
                    f"{value(r['sim'], SESSION, 'completion_s'):.2f} s" for r in runs)
        + ": the emulated transfer is slower and uneven before and after the fault (the timeline "
        "figure), a gap this benchmark does not explain; issue 12's multicast benchmark shows the "
        "same shortfall of emulated bulk rates on this machine.", "",
        "Loss. Emulated loss is the frames the egress relays gave up \"(a relay left)\" times the "
        f"{BULK_CHUNK_BYTES // 1024} KiB bulk message, "
        f"{', '.join(f'{x:.2f}' for x in given_up_mb)} MB, against "
        f"{', '.join(f'{x:.2f}' for x in lost_mb)} MB that never arrived"
        + (f" (given up {spans} after the controller's plan that answered the kill)" if spans else "")
        + ". With end-to-end acknowledgements (the relays' default) the publisher sends again what "
        "the dead relay held or was sent into it, and the simulator models that resend (sim/faults.py: "
        "the transfer grows by what was lost and ends later). Re-plan time. The simulator charges "
        "no solve time: the "
        "emulated re-plan is the simulated one (half us-central1's round trip to the controller in "
        "us-west1) plus the solve time in the column beside it plus the processes' own delays.",
    ]
    if any(math.isnan(value(r["emu"], after, "fault_dip_mbps")) for r in runs):
        lines[-1] += (" 'nan' resumption and dip: the emulated session had not delivered its first "
                      "byte when the relay was killed, so there is no rate before the fault.")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rate-scale", type=float, default=0.1)
    p.add_argument("--size-scale", type=float, default=0.1)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path("/tmp/faults-emu"))
    p.add_argument("--reuse", action="store_true",
                   help="write the section from the runs already in --out (no emulation)")
    p.add_argument("--resimulate", action="store_true",
                   help="with --reuse: run the simulator again on each run's scenario (after a "
                        "change to the simulator; the emulated runs stay as they were)")
    a = p.parse_args()
    dirs = [a.out / f"run-{i}" for i in range(1, a.runs + 1)]
    if a.resimulate:
        if not a.reuse:
            p.error("--resimulate needs --reuse")
        for d in dirs:
            simulate(d)
    runs = ([read_run(d) for d in dirs] if a.reuse else
            [run_once(d, a.rate_scale, a.size_scale) for d in dirs])
    both = pd.concat([runs[0]["emu"], runs[0]["sim"]], ignore_index=True)
    fig = timeline_figure(timeline_table(both), fault_marks(both),
                          f"table1-relay-fault, rates x{a.rate_scale:g}, transfer x{a.size_scale:g}")
    save(fig, FIGURES, "faults-table1-relay-fault")
    text = section(runs, a.rate_scale, a.size_scale)
    write_section(SECTION, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
