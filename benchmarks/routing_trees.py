"""Multicast tree pricing: plan time and minimum rate against the engine of `BEFORE`.

The `multicast` strategy on the synthetic meshes of `benchmarks/routing.py` (full meshes, RTTs
from great-circle distance, CUBIC, P = 4), with multicast sessions from random sources to k
random sinks each. Rows, in one run so that ratios compare like with like on a shared machine:
- one exact minimum Steiner arborescence (`steiner.min_steiner_arborescence`) on a 40-node mesh
  under random link lengths, per terminal count k: median time of `TREE_REPS` trees;
- full plans (median of `REPS`), exact fairness, with today's engine (trees priced exactly,
  max-min fair over every tree) and with the engine of `BEFORE` (trees priced by the
  Takahashi-Matsuyama heuristic, at most 16 per session and 50 pricing rounds per LP), run in a
  git worktree of that commit, in a subprocess, on the same meshes and sessions: wall and CPU
  time, minimum and total rate, and the sessions today's plan names as not proven exact.
Writes the section "## Multicast tree pricing" of docs/benchmarks.md (its own section only) and
benchmarks/results/routing-trees.csv.
Run: `.venv/bin/python benchmarks/routing_trees.py` (a few minutes on 2 busy cores).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from docpage import write_section
from routing import machine

from stemflow.routing.steiner import min_steiner_arborescence, shortest_paths

ROOT = Path(__file__).resolve().parents[1]
CSV = ROOT / "benchmarks" / "results" / "routing-trees.csv"
SECTION = "## Multicast tree pricing"
BEFORE = "eaa1983"
"""main before exact tree pricing: heuristic trees, at most 16 per session."""
TREE_SIZES = (4, 6, 8, 10, 12)
TREE_REPS = 20
PLANS = ((10, 20, 4), (20, 50, 6), (40, 20, 10), (40, 50, 8), (40, 20, 14))
"""(datacenters, multicast sessions, sinks per session); 14 sinks is above the exact limit."""
REPS = 3

_RUNNER = """
import json, sys, time
sys.path[:0] = [sys.argv[1] + "/benchmarks", sys.argv[1]]
import routing as R
from stemflow.routing import RoutingOptions, make_plan
n, m, k, reps = (int(a) for a in sys.argv[2:6])
out = []
for _ in range(reps):
    net = R.synthetic_network(n, n)
    demands = R.multicast_demands(net.datacenters, m, k, m)
    t0, c0 = time.perf_counter(), time.process_time()
    plan = make_plan(net, demands, "multicast",
                     RoutingOptions(bounds=False, time_limit_s=600, fairness="exact"),
                     validate=False)
    rates = [p.rate_mbps for p in plan.sessions.values()]
    out.append({"s": time.perf_counter() - t0, "cpu": time.process_time() - c0,
                "min": min(rates), "sum": sum(rates),
                "trees": sum(len(p.trees) for p in plan.sessions.values()),
                "unproven": len(getattr(plan, "unproven", {}))})
print(json.dumps(out))
"""


def tree_times(n: int = 40) -> list[dict]:
    """Median time of one exact Steiner tree per terminal count, random lengths in [0, 1)."""
    rng = np.random.default_rng(17)
    rows = []
    for k in TREE_SIZES:
        times = []
        for _ in range(TREE_REPS):
            length = rng.random((n, n))
            np.fill_diagonal(length, np.inf)
            terms = rng.choice(np.arange(1, n), size=k, replace=False).tolist()
            t0 = time.perf_counter()
            tree = min_steiner_arborescence(length, 0, terms, paths=shortest_paths(length))
            times.append(time.perf_counter() - t0)
        rows.append({"k": k, "n": n, "ms": 1e3 * statistics.median(times),
                     "exact": bool(tree and tree.exact), "load": os.getloadavg()[0]})
        print(f"tree k={k}: {rows[-1]['ms']:.1f} ms", flush=True)
    return rows


def plans(tree: Path, n: int, m: int, k: int) -> dict:
    """Today's engine here and `BEFORE`'s in its worktree, same meshes and sessions."""
    out = {}
    for engine, where in (("now", ROOT), ("before", tree)):
        done = subprocess.run([sys.executable, "-c", _RUNNER, str(where), str(n), str(m),
                               str(k), str(REPS)], capture_output=True, text=True, check=True,
                              cwd=where, env={**os.environ, "PYTHONPATH": str(where)})
        runs = json.loads(done.stdout.strip().splitlines()[-1])
        out[engine] = {key: statistics.median(r[key] for r in runs)
                       for key in ("s", "cpu", "min", "sum", "trees", "unproven")}
        out[engine]["load"] = os.getloadavg()[0]
    return out


def run() -> tuple[list[dict], list[dict]]:
    trees = tree_times()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "before"
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), BEFORE], cwd=ROOT,
                       check=True, capture_output=True)
        try:
            for n, m, k in PLANS:
                rows.append({"datacenters": n, "sessions": m, "sinks": k,
                             **plans(tree, n, m, k)})
                now, before = rows[-1]["now"], rows[-1]["before"]
                print(f"{n} x {m} x {k}: now {now['s']:.2f} s min {now['min']:.1f}, "
                      f"{BEFORE} {before['s']:.2f} s min {before['min']:.1f}", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT,
                           check=False, capture_output=True)
    return trees, rows


def write_csv(trees: list[dict], rows: list[dict], stamp: str) -> None:
    CSV.parent.mkdir(parents=True, exist_ok=True)
    with CSV.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["date", "kind", "datacenters", "sessions", "sinks", "engine", "median_s",
                    "cpu_s", "min_rate_mbps", "sum_rate_mbps", "trees", "unproven",
                    "load_1min"])
        for t in trees:
            w.writerow([stamp, "tree", t["n"], "", t["k"], "now", f"{t['ms'] / 1e3:.6f}", "", "",
                        "", "", "" if t["exact"] else "heuristic", f"{t['load']:.2f}"])
        for r in rows:
            for engine in ("now", "before"):
                e = r[engine]
                w.writerow([stamp, "plan", r["datacenters"], r["sessions"], r["sinks"],
                            engine if engine == "now" else BEFORE, f"{e['s']:.4f}",
                            f"{e['cpu']:.4f}", f"{e['min']:.4f}", f"{e['sum']:.2f}",
                            e["trees"], e["unproven"], f"{e['load']:.2f}"])


def section(trees: list[dict], rows: list[dict], stamp: str) -> str:
    loads = [t["load"] for t in trees] + [r[e]["load"] for r in rows for e in ("now", "before")]
    out = [SECTION, "",
           f"`benchmarks/routing_trees.py`, run {stamp} on {machine()}, 1-minute load "
           f"{min(loads):.1f}-{max(loads):.1f}. The `multicast` strategy with trees priced "
           "exactly (minimum Steiner arborescences under the duals, `stemflow/routing/steiner.py`) "
           f"against the engine of {BEFORE} (Takahashi-Matsuyama trees, at most 16 per session), "
           "exact fairness, synthetic full meshes of `benchmarks/routing.py`, median of "
           f"{REPS} plans each; how the pricing works is in docs/routing.md.", "",
           "One exact tree on a 40-node mesh, random lengths (median of "
           f"{TREE_REPS}):", "",
           "| sinks k | ms per tree |", "|---:|---:|"]
    out += [f"| {t['k']} | {t['ms']:.1f}{'' if t['exact'] else ' (heuristic)'} |" for t in trees]
    out += ["", "| DCs x sessions x sinks | now s (CPU) | "
            f"{BEFORE} s (CPU) | min rate now / {BEFORE} | total now / {BEFORE} | trees now / "
            f"{BEFORE} | not proven exact |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        now, bef = r["now"], r["before"]
        out.append(f"| {r['datacenters']} x {r['sessions']} x {r['sinks']} | "
                   f"{now['s']:.2f} ({now['cpu']:.2f}) | {bef['s']:.2f} ({bef['cpu']:.2f}) | "
                   f"{now['min']:.1f} / {bef['min']:.1f} | {now['sum']:.0f} / {bef['sum']:.0f} | "
                   f"{now['trees']:.0f} / {bef['trees']:.0f} | {now['unproven']:.0f} |")
    out += ["", "A session with more sinks than `steiner.EXACT_TERMINALS` (10) is priced by the "
            "heuristic and named in the plan's `unproven`; its row is max-min fair over the "
            "trees found, not proven over every tree."]
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args()
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    trees, rows = run()
    text = section(trees, rows, stamp)
    print(text)
    if not a.no_write:
        write_csv(trees, rows, stamp)
        write_section(SECTION, text)


if __name__ == "__main__":
    main()
