"""Plan time of the routing core against the engine of `BEFORE`, and re-planning after a change.

Synthetic full meshes with realistic RTTs: datacenters at random (seeded) places on the globe,
RTT = 2 x great-circle distance x 1.4 (route inflation) / 200 km/ms + 2 ms, each directed link
2-10 Gbit/s, CUBIC with a 4.13 MB window and P = 4 (as in the shipped scenarios), so long hops
are window-limited. Sessions are bulk transfers between random distinct pairs.

Rows, each a median of `REPS` plans from a fresh snapshot, in one run so that ratios compare like
with like on a shared machine:
- full plans of multipath, exact and fast, with today's engine and with the engine of `BEFORE`
  (run in a git worktree of that commit, in a subprocess, on the same meshes and sessions);
- re-plans by `stemflow.routing.planner.Planner` after one change (a session leaves, one joins,
  one link's capacity halves), `CHANGES` of them, against a full plan of the same state: p50 and
  p95 of re-plan / full;
- one plan each of the `SCALE` sizes with today's engine, in a subprocess stopped after
  `SCALE_BUDGET_S` (the time is then recorded as more than the budget), including the
  approximate configuration (`stemflow/routing/approx.py`).
Plan times are wall-clock and CPU time of the planning process (HiGHS runs on one thread), so a
busy machine shows as the gap between the two.
Writes the section "## Routing core" of docs/benchmarks.md and benchmarks/results/routing.csv.
Run: `.venv/bin/python benchmarks/routing.py` (~25 minutes on 2 busy cores).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from docpage import write_section

from stemflow.network import LinkState, NetworkState
from stemflow.routing import Demand, RoutingOptions, make_plan
from stemflow.routing.planner import Planner
from stemflow.scenario import TcpSettings

ROOT = Path(__file__).resolve().parents[1]
CSV = ROOT / "benchmarks" / "results" / "routing.csv"
SECTION = "## Routing core"
BEFORE = "c134f9e"
"""Today's engine when issue 17 started: candidates = direct, every 1-relay, 8 two-relay paths."""
FULL = ((20, 300, "exact"), (40, 1000, "exact"), (40, 1000, "fast"))
REPLAN = ((20, 300, "exact"), (40, 1000, "exact"), (40, 1000, "fast"))
SCALE = ((40, 1000, "approx"), (60, 3000, "fast"), (60, 3000, "approx"), (100, 10000, "approx"))
"""`approx` (fixed splits, no LP) also at 40 x 1 000, to compare its minimum rate with exact's.
The fast configuration at 100 x 10 000 did not finish within 300 s in the run of 2026-12-07
16:31 UTC; it is not repeated here (300 s of the run for a known answer)."""
SCALE_BUDGET_S = 300.0
"""A plan of a `SCALE` size is stopped after this long: issue 17 asks for 10 s at 100 x 10 000,
so 30x that says "far off" as well as a finished run would, and keeps the script's run time."""
REPS = 3
CHANGES = 6
FIBRE_KM_PER_MS = 200.0
ROUTE_INFLATION = 1.4
"""Terrestrial routes are ~1.4x the great-circle distance; with 2 ms of end processing this
puts us-east1 <-> asia-east1 (12 300 km) at ~174 ms against the measured 182.5 ms."""
TCP = TcpSettings(rwnd_bytes=4.13e6)

_RUNNER = """
import json, sys, time
sys.path[:0] = [sys.argv[1] + "/benchmarks", sys.argv[1]]
import routing as R
from stemflow.routing import RoutingOptions, make_plan
n, m, fairness, reps = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
out = []
for _ in range(reps):
    net = R.synthetic_network(n, n)
    demands = R.unicast_demands(net.datacenters, m, m)
    t0, c0 = time.perf_counter(), time.process_time()
    plan = make_plan(net, demands, "multipath",
                     RoutingOptions(bounds=False, time_limit_s=600, fairness=fairness),
                     validate=False)
    out.append({"s": time.perf_counter() - t0, "cpu": time.process_time() - c0,
                "min": min(p.rate_mbps for p in plan.sessions.values())})
print(json.dumps(out))
"""


def synthetic_network(n: int, seed: int) -> NetworkState:
    """A full mesh of n datacenters at random places; a new snapshot object every call."""
    rng = random.Random(seed)
    places = [(math.asin(rng.uniform(-0.8, 0.8)), math.radians(rng.uniform(-180, 180)))
              for _ in range(n)]
    names = [f"dc{i:02d}" for i in range(n)]
    links = {}
    for i, (la1, lo1) in enumerate(places):
        for j, (la2, lo2) in enumerate(places):
            if i < j:
                c = math.sin(la1) * math.sin(la2) + math.cos(la1) * math.cos(la2) * math.cos(lo1 - lo2)
                km = 6371.0 * math.acos(max(-1.0, min(1.0, c)))
                rtt = 2 * km * ROUTE_INFLATION / FIBRE_KM_PER_MS + 2.0
                links[(names[i], names[j])] = LinkState(rtt, rng.uniform(2000, 10000))
                links[(names[j], names[i])] = LinkState(rtt, rng.uniform(2000, 10000))
    return NetworkState(tuple(names), links, {}, tcp=TCP, parallel=4)


def unicast_demands(names: tuple[str, ...], m: int, seed: int) -> list[Demand]:
    rng = random.Random(seed)
    out = []
    for k in range(m):
        a, b = rng.sample(names, 2)
        out.append(Demand(f"u{k}", a, (b,), f"p{k}", (f"s{k}",), max_rate_mbps=10_000.0))
    return out


def multicast_demands(names: tuple[str, ...], m: int, subscribers: int, seed: int) -> list[Demand]:
    rng = random.Random(seed)
    out = []
    for k in range(m):
        src = rng.choice(names)
        sinks = rng.sample([d for d in names if d != src], min(subscribers, len(names) - 1))
        out.append(Demand(f"m{k}", src, tuple(sinks), f"p{k}",
                          tuple(f"s{k}-{i}" for i in range(len(sinks))), multicast=True,
                          max_rate_mbps=10_000.0))
    return out


def timed(n: int, m: int, fairness: str) -> dict:
    """Median plan time and minimum rate of `REPS` plans with today's engine."""
    runs = []
    for _ in range(REPS):
        net = synthetic_network(n, n)
        demands = unicast_demands(net.datacenters, m, m)
        t0, c0 = time.perf_counter(), time.process_time()
        plan = make_plan(net, demands, "multipath", options(fairness), validate=False)
        runs.append({"s": time.perf_counter() - t0, "cpu": time.process_time() - c0,
                     "min": min(p.rate_mbps for p in plan.sessions.values())})
    return summary(runs)


def timed_before(worktree: Path, n: int, m: int, fairness: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _RUNNER, str(worktree), str(n), str(m),
                          fairness, str(REPS)], capture_output=True, text=True, check=True,
                         cwd=worktree, env={**os.environ, "PYTHONPATH": str(worktree)})
    return summary(json.loads(out.stdout.strip().splitlines()[-1]))


def summary(runs: list[dict]) -> dict:
    times = [r["s"] for r in runs]
    return {"s": statistics.median(times), "lo": min(times), "hi": max(times),
            "cpu": statistics.median(r["cpu"] for r in runs),
            "min": statistics.median(r["min"] for r in runs), "load": os.getloadavg()[0]}


def timed_scale(n: int, m: int, fairness: str) -> dict:
    """One plan with today's engine in a subprocess, stopped after `SCALE_BUDGET_S`."""
    try:
        out = subprocess.run([sys.executable, "-c", _RUNNER, str(ROOT), str(n), str(m),
                              fairness, "1"], capture_output=True, text=True, check=True,
                             cwd=ROOT, timeout=SCALE_BUDGET_S)
    except subprocess.TimeoutExpired:
        return {"s": math.inf, "cpu": math.inf, "min": math.nan, "load": os.getloadavg()[0]}
    run = json.loads(out.stdout.strip().splitlines()[-1])[0]
    return {**run, "load": os.getloadavg()[0]}


def options(fairness: str) -> RoutingOptions:
    return RoutingOptions(bounds=False, time_limit_s=600, fairness=fairness)


def replans(n: int, m: int, fairness: str) -> dict:
    """Re-plan / full-plan time after each of `CHANGES` single changes."""
    net = synthetic_network(n, n)
    demands = unicast_demands(net.datacenters, m, m)
    rng = random.Random(n * m)
    planner = Planner(options=options(fairness), validate=False)
    planner.plan(net, demands)
    ratios, full_s, re_s = [], [], []
    for k in range(CHANGES):
        kind = ("leave", "join", "link")[k % 3]
        if kind == "leave":
            demands = demands[:-1]
        elif kind == "join":
            newcomer = unicast_demands(net.datacenters, 1, 10_000 + k)[0]
            demands = [*demands, replace(newcomer, session=f"j{k}")]
        else:
            e = rng.choice(sorted(net.links))
            st = net.links[e]
            net = net.with_links({e: LinkState(st.rtt_ms, st.bandwidth_mbps / 2, st.loss)})
        t0 = time.perf_counter()
        planner.plan(net, demands)
        t1 = time.perf_counter()
        make_plan(synthetic_copy(net), demands, "multipath", options(fairness), validate=False)
        t2 = time.perf_counter()
        re_s.append(t1 - t0)
        full_s.append(t2 - t1)
        ratios.append((t1 - t0) / (t2 - t1))
        print(f"  {n} x {m} {fairness}: {kind:5s} re-plan {t1 - t0:6.2f} s, full {t2 - t1:6.2f} s",
              flush=True)
    q = statistics.quantiles(ratios, n=20, method="inclusive")
    return {"p50": statistics.median(ratios), "p95": q[-1], "re_s": statistics.median(re_s),
            "full_s": statistics.median(full_s), "load": os.getloadavg()[0]}


def synthetic_copy(net: NetworkState) -> NetworkState:
    """The same state as a new snapshot object, so no per-snapshot cache is shared."""
    return NetworkState(net.datacenters, dict(net.links), {}, tcp=net.tcp, parallel=net.parallel)


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return f"{platform.node()}, {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}"


def run(baseline: Path | None = None) -> tuple[list[dict], list[dict], list[dict]]:
    """All rows; `baseline` is an existing checkout of `BEFORE` (else a temporary worktree)."""
    full, again, scale = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        tree = baseline or Path(tmp) / "before"
        if baseline is None:
            subprocess.run(["git", "worktree", "add", "--detach", str(tree), BEFORE], cwd=ROOT,
                           check=True, capture_output=True)
        try:
            for n, m, fairness in FULL:
                now, before = timed(n, m, fairness), timed_before(tree, n, m, fairness)
                full.append({"datacenters": n, "sessions": m, "fairness": fairness,
                             "now": now, "before": before})
                print(f"{n} x {m} {fairness}: now {now['s']:.2f} s (min {now['min']:.0f}), "
                      f"{BEFORE} {before['s']:.2f} s (min {before['min']:.0f})", flush=True)
        finally:
            if baseline is None:
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT,
                               check=False, capture_output=True)
    for n, m, fairness in REPLAN:
        again.append({"datacenters": n, "sessions": m, "fairness": fairness,
                      **replans(n, m, fairness)})
    for n, m, fairness in SCALE:
        scale.append({"datacenters": n, "sessions": m, "fairness": fairness,
                      **timed_scale(n, m, fairness)})
        print(f"{n} x {m} {fairness}: {scale[-1]['s']:.1f} s", flush=True)
    return full, again, scale


COLUMNS = ["date", "kind", "datacenters", "sessions", "fairness", "engine", "median_s", "min_s",
           "max_s", "cpu_s", "min_rate_mbps", "p50_ratio", "p95_ratio", "full_median_s",
           "load_1min"]


def write_csv(full: list[dict], again: list[dict], scale: list[dict], stamp: str) -> None:
    CSV.parent.mkdir(parents=True, exist_ok=True)
    with CSV.open("w", newline="") as f:
        w = csv.DictWriter(f, COLUMNS, restval="")
        w.writeheader()
        for r in full:
            for engine in ("now", "before"):
                c = r[engine]
                w.writerow({"date": stamp, "kind": "full", "datacenters": r["datacenters"],
                            "sessions": r["sessions"], "fairness": r["fairness"],
                            "engine": engine if engine == "now" else BEFORE, "median_s": c["s"],
                            "min_s": c["lo"], "max_s": c["hi"], "cpu_s": c["cpu"],
                            "min_rate_mbps": c["min"], "load_1min": c["load"]})
        for r in again:
            w.writerow({"date": stamp, "kind": "replan", "datacenters": r["datacenters"],
                        "sessions": r["sessions"], "fairness": r["fairness"], "engine": "now",
                        "median_s": r["re_s"], "p50_ratio": r["p50"], "p95_ratio": r["p95"],
                        "full_median_s": r["full_s"], "load_1min": r["load"]})
        for r in scale:
            w.writerow({"date": stamp, "kind": "scale", "datacenters": r["datacenters"],
                        "sessions": r["sessions"], "fairness": r["fairness"], "engine": "now",
                        "median_s": r["s"], "cpu_s": r["cpu"], "min_rate_mbps": r["min"],
                        "load_1min": r["load"]})


def read_csv() -> tuple[list[dict], list[dict], list[dict], str]:
    """The last run's rows, as `run` returned them, and its date."""
    full: dict[tuple, dict] = {}
    again, scale, stamp = [], [], ""
    with CSV.open() as f:
        for r in csv.DictReader(f):
            stamp = r["date"]
            key = {"datacenters": int(r["datacenters"]), "sessions": int(r["sessions"]),
                   "fairness": r["fairness"]}
            load = float(r["load_1min"])
            if r["kind"] == "replan":
                again.append({**key, "re_s": float(r["median_s"]), "p50": float(r["p50_ratio"]),
                              "p95": float(r["p95_ratio"]),
                              "full_s": float(r["full_median_s"]), "load": load})
            elif r["kind"] == "scale":
                scale.append({**key, "s": float(r["median_s"]), "cpu": float(r["cpu_s"]),
                              "min": float(r["min_rate_mbps"]), "load": load})
            else:
                cell = {"s": float(r["median_s"]), "lo": float(r["min_s"]),
                        "hi": float(r["max_s"]), "cpu": float(r["cpu_s"]),
                        "min": float(r["min_rate_mbps"]), "load": load}
                row = full.setdefault(tuple(key.values()), dict(key))
                row["now" if r["engine"] == "now" else "before"] = cell
    return list(full.values()), again, scale, stamp


def _met(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def verdict(full: list[dict], again: list[dict], scale: list[dict]) -> list[str]:
    """The issue's targets against this run's numbers."""
    out = ["Against the targets of issue 17 (speed as `c134f9e` time / time now, > 1: faster):"]
    for r in full:
        if r["datacenters"] != 40:
            continue
        a, b = r["now"], r["before"]
        speed, cpu = b["s"] / a["s"], b["cpu"] / a["cpu"]
        floor_ok = a["min"] >= b["min"] * (1 - 1e-6)
        target = 6.0 if r["fairness"] == "exact" else 1.0
        out.append(f"- {r['fairness']} max-min at 40 x 1 000, >= {target:g}x the speed of "
                   f"`{BEFORE}` with a minimum rate no lower: {_met(speed >= target and floor_ok)}"
                   f" — {speed:.2f}x wall-clock, {cpu:.2f}x CPU; minimum rate {a['min']:.0f} "
                   f"against {b['min']:.0f} Mbit/s."
                   + ("" if r["fairness"] == "exact" else
                      " (The issue names no factor for fast; 1x is what 'not slower' asks.)"))
    for r in again:
        if r["datacenters"] == 40:
            out.append(f"- re-plan after one change <= 10% of a full plan at p95: "
                       f"{_met(r['p95'] <= 0.10)} — p95 {r['p95']:.2f}, p50 {r['p50']:.2f} at "
                       f"40 x 1 000 {r['fairness']}.")
    exact_min = {r["datacenters"]: r["now"]["min"] for r in full if r["fairness"] == "exact"}
    for r in scale:
        if r["datacenters"] == 100:
            took = (f"{r['s']:.1f} s wall, {r['cpu']:.1f} s CPU" if math.isfinite(r["s"]) else
                    f"not finished after {SCALE_BUDGET_S:.0f} s")
            out.append(f"- 100 datacenters x 10 000 sessions, full plan <= 10 s: "
                       f"{_met(r['s'] <= 10.0)} — {r['fairness']}: {took}. Re-plans at this size: "
                       "not measured (this script re-plans at 20 and 40 datacenters only; the "
                       "approximate configuration keeps nothing between plans, so a re-plan "
                       "costs a full plan).")
        elif r["datacenters"] == 40 and r["fairness"] == "approx" and 40 in exact_min:
            out.append(f"- (not a target) approx at 40 x 1 000: minimum rate {r['min']:.0f} "
                       f"against exact's {exact_min[40]:.0f} Mbit/s "
                       f"({r['min'] / exact_min[40]:.2f}), in {r['s']:.2f} s.")
    out.append("- hysteresis in `auto`: done (`AUTO_HYSTERESIS`, 20% band; unit-tested).")
    return out


def _cell(c: dict) -> str:
    return f"{c['s']:.2f} ({c['lo']:.2f}-{c['hi']:.2f}) | {c['cpu']:.2f}"


def section(full: list[dict], again: list[dict], scale: list[dict], stamp: str) -> str:
    loads = ([r[e]["load"] for r in full for e in ("now", "before")] +
             [r["load"] for r in (*again, *scale)])
    lines = [
        SECTION, "",
        f"`benchmarks/routing.py`, {stamp}, {machine()}; 1-minute load average "
        f"{min(loads):.1f}-{max(loads):.1f} during the run (shared machine: other work ran "
        f"alongside). Multipath on synthetic full meshes, median of {REPS} plans from a fresh "
        f"snapshot (wall-clock range in brackets; CPU: median CPU time of the planning process, "
        f"which a busy machine inflates less), bounds not computed. `{BEFORE}` is the engine "
        "before issue 17 (candidates: direct, every 1-relay path, 8 two-relay paths), run from a "
        "git worktree of that commit in the same run, interleaved row by row. Now: every path, "
        "by column generation with shortest-path pricing, started from the paths of "
        "`stemflow/routing/warmstart.py`. Raw numbers: `benchmarks/results/routing.csv`.", "",
        f"| DCs x sessions | fairness | now s | now CPU s | {BEFORE} s | {BEFORE} CPU s | "
        f"speed now vs {BEFORE}, wall (CPU) | min rate now | min rate {BEFORE} |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in full:
        a, b = r["now"], r["before"]
        lines.append(f"| {r['datacenters']} x {r['sessions']} | {r['fairness']} | {_cell(a)} | "
                     f"{_cell(b)} | {b['s'] / a['s']:.2f}x ({b['cpu'] / a['cpu']:.2f}x) | "
                     f"{a['min']:.0f} | {b['min']:.0f} |")
    lines += ["", f"Re-plan by `Planner` after one change ({CHANGES} changes in turn: a session "
              "leaves, one joins, one link's capacity halves), against a full plan of the same "
              "state:", "",
              "| DCs x sessions | fairness | re-plan s (median) | full s (median) | "
              "re-plan / full p50 | p95 |", "|---|---|---:|---:|---:|---:|"]
    for r in again:
        lines.append(f"| {r['datacenters']} x {r['sessions']} | {r['fairness']} | "
                     f"{r['re_s']:.2f} | {r['full_s']:.2f} | {r['p50']:.2f} | {r['p95']:.2f} |")
    lines += ["", f"Larger overlays, one plan each with today's engine (stopped after "
              f"{SCALE_BUDGET_S:.0f} s); `approx` is max-min fair over fixed multiplicative-"
              "weights splits, without LPs (`stemflow/routing/approx.py`):", "",
              "| DCs x sessions | fairness | plan s | CPU s | min rate |", "|---|---|---:|---:|---:|"]
    for r in scale:
        done = math.isfinite(r["s"])
        lines.append(f"| {r['datacenters']} x {r['sessions']} | {r['fairness']} | "
                     + (f"{r['s']:.1f} | {r['cpu']:.1f} | {r['min']:.0f} |" if done else
                        f"> {SCALE_BUDGET_S:.0f} (stopped) | - | - |"))
    lines += ["", *verdict(full, again, scale), "", *EXACTNESS]
    return "\n".join(lines) + "\n"


EXACTNESS = [
    "How the exact answer is reached (`stemflow/routing/fairshare.py`, `pricing.py`): "
    "progressive filling with one LP per fairness level (max t, every free commodity's rate "
    ">= its size x t, frozen ones >= their level, links <= capacity). Each level's LP is solved "
    "by column generation over every overlay path: a unicast commodity starts with its fastest "
    "path and the paths a multiplicative-weights routing of every pair used "
    "(`warmstart.py`), and between solves each commodity's cheapest path under the link duals "
    "(Dijkstra from every source; with a latency budget, the cheapest path within it by Yen's "
    "enumeration) joins if its reduced cost is positive. Pricing stops only when no path of "
    "any length improves, so the duals are feasible for the LP over all paths and the level t* "
    "is optimal over all of them; the starting columns change how fast that point is reached, "
    "not where it is. Then every free commodity whose row has a positive dual, or "
    "that reached its cap, is frozen at t*: by complementary slackness none of them can get "
    "more while every other free one keeps t* (Nace & Pioro 2008, the dual test), and at least "
    "one is frozen per level (the size-weighted duals sum to 1). The frozen levels are the "
    "unique max-min fair rates, up to the freeze slack (1e-7) and HiGHS's tolerances. Routes "
    "fixed at 0 by reduced-cost fixing leave the HiGHS model but are priced with the rest from "
    "the row duals: an LP counts as optimal only when none of them improves it either "
    "(`fairshare._Columns.revive` puts those back); before that "
    "check, a 40 x 1 000 plan's rates depended on its starting columns "
    "by up to 2 Mbit/s of 1 380, and a re-plan after a join differed from a fresh plan by up to "
    "67 Mbit/s for one session (docs/routing.md). Checked "
    "by `tests/test_routing_allpaths.py` against an arc-based LP (no paths at all) filled "
    "with the textbook blocking test, on rings whose routes run up to the diameter.",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--report", action="store_true", help="only rewrite the section from the CSV")
    ap.add_argument("--baseline", type=Path, help=f"a checkout of {BEFORE} to time "
                    "(default: a temporary git worktree)")
    a = ap.parse_args()
    if a.report:
        full, again, scale, stamp = read_csv()
    else:
        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        full, again, scale = run(a.baseline)
    text = section(full, again, scale, stamp)
    print(text)
    if not a.no_write:
        if not a.report:
            write_csv(full, again, scale, stamp)
        write_section(SECTION, text)


if __name__ == "__main__":
    main()
