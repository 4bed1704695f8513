"""Plan time of the routing core: candidate paths + LP build + solve, by size and solver.

Synthetic full meshes with realistic RTTs: datacenters at random (seeded) places on the globe,
RTT = 2 x great-circle distance x 1.4 (route inflation) / 200 km/ms + 2 ms, each directed link
2-10 Gbit/s, CUBIC with a 4.13 MB window and P = 4 (as in the shipped scenarios), so long hops
are window-limited. Sessions are bulk transfers between random distinct pairs; multicast
sessions have 10 subscribers (fewer when there are fewer datacenters).

Each plan starts from a fresh network snapshot, so candidate paths are computed, not cached.
Multipath runs in each `RoutingOptions.fairness` configuration (exact, fast, auto), and exact
also with the max-min engine of `BEFORE` (its `fairshare.py` loaded from git), so the speed-up
is measured on the same machine in the same run. Writes the section "## Routing core" of
docs/benchmarks.md and the raw numbers to benchmarks/results/routing.csv.
Run: `.venv/bin/python benchmarks/routing.py` (~10 minutes).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import importlib.util
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from docpage import DOC, write_section

from stemflow.network import LinkState, NetworkState
from stemflow.routing import Demand, RoutingOptions, make_plan, unicast
from stemflow.routing.registry import AUTO_EXACT_UP_TO, FAST_FAIR_LEVELS, FAST_MAX_PATHS
from stemflow.scenario import TcpSettings

ROOT = Path(__file__).resolve().parents[1]
CSV = ROOT / "benchmarks" / "results" / "routing.csv"
SECTION = "## Routing core"

DATACENTERS = (5, 10, 20, 40)
SESSIONS = (10, 100, 1000)
MULTICAST_SESSIONS = (1, 10)
SUBSCRIBERS = 10
REPS = 3
REPEAT_UNDER_S = 60.0
"""Cells slower than this run once; every cell of this run was under it, so all are medians."""
SKIP_AFTER_S = 10.0
"""A configuration that took longer than this at a smaller size is not run at larger ones."""
FIBRE_KM_PER_MS = 200.0
ROUTE_INFLATION = 1.4
"""Terrestrial routes are ~1.4x the great-circle distance; with 2 ms of end processing this
puts us-east1 <-> asia-east1 (12 300 km) at ~174 ms against the measured 182.5 ms."""
TCP = TcpSettings(rwnd_bytes=4.13e6)


BEFORE = "6bbc208"
"""The commit before best-route pricing and reduced-cost fixing sped up the exact solver
(05272c7); `multipath exact (before)` runs its `stemflow/routing/fairshare.py`."""
BEFORE_SIZES = ((20, 1000), (40, 100), (40, 1000))
"""Where the old engine is timed (HiGHS only): enough to show the speed-up, ~3 minutes."""


def _spaced(n: int) -> str:
    return f"{n:,}".replace(",", " ")


@dataclass(frozen=True)
class Config:
    name: str
    strategy: str
    options: dict
    note: str
    before: bool = False
    """Run with the max-min engine of `BEFORE`."""


CONFIGS = (
    Config("multipath exact", "multipath", {"fairness": "exact"},
           "all candidates (direct, every 1-relay, 8 two-relay), exact max-min"),
    Config("multipath exact (before)", "multipath", {"fairness": "exact"},
           f"the same with the max-min engine of commit {BEFORE}, before best-route pricing and "
           "reduced-cost fixing (HiGHS, "
           + ", ".join(f"{n} x {m}" for n, m in BEFORE_SIZES) + " only)", before=True),
    Config("multipath fast", "multipath", {"fairness": "fast"},
           f"{FAST_MAX_PATHS} candidates per pair, {FAST_FAIR_LEVELS} max-min levels then "
           "throughput"),
    Config("multipath auto", "multipath", {"fairness": "auto"},
           f"the default: exact up to {_spaced(AUTO_EXACT_UP_TO)} commodity x link pairs, fast "
           "above (-> says which ran)"),
)


@contextlib.contextmanager
def max_min_engine_of(commit: str) -> Iterator[None]:
    """Plan with `stemflow/routing/fairshare.py` as it was at `commit` (read with git)."""
    source = subprocess.run(["git", "show", f"{commit}:stemflow/routing/fairshare.py"], cwd=ROOT,
                            check=True, capture_output=True, text=True).stdout
    name = f"fairshare_{commit}"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    current: Callable = unicast.max_min_fair
    unicast.max_min_fair = module.max_min_fair
    try:
        yield
    finally:
        unicast.max_min_fair = current
        del sys.modules[name]


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


def run_cell(n: int, demands: list[Demand], strategy: str, options: RoutingOptions,
             seed: int) -> list[dict]:
    rows = []
    for rep in range(REPS):
        net = synthetic_network(n, seed)
        t0 = time.perf_counter()
        plan = make_plan(net, demands, strategy, options, validate=False)
        wall = time.perf_counter() - t0
        rates = [sp.rate_mbps for sp in plan.sessions.values()]
        st = plan.stats
        rows.append({"rep": rep, "ran": st.config.split(" (")[0], "paths_s": st.paths_s,
                     "build_s": st.build_s, "solve_s": st.solve_s, "total_s": st.total_s,
                     "wall_s": wall, "min_rate_mbps": min(rates),
                     "total_rate_mbps": sum(rates), "load_1min": os.getloadavg()[0]})
        if wall > REPEAT_UNDER_S:
            break
    return rows


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.node()}, {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}"


def measure(solvers: tuple[str, ...], quick: bool) -> list[dict]:
    sizes_n = DATACENTERS[:2] if quick else DATACENTERS
    sizes_m = SESSIONS[:2] if quick else SESSIONS
    results: list[dict] = []
    slow: dict[tuple[str, str], list[tuple[int, int]]] = {}

    def too_slow(key: tuple[str, str], n: int, m: int) -> bool:
        return any(n >= n0 and m >= m0 for n0, m0 in slow.get(key, []))

    def record(key, label, strategy, solver, n, m, subs, rows):
        base = {"config": label, "strategy": strategy, "solver": solver, "datacenters": n,
                "sessions": m, "subscribers": subs}
        if rows is None:
            results.append({**base, "status": f"skipped (> {SKIP_AFTER_S:.0f} s at a smaller size)"})
            return
        for r in rows:
            results.append({**base, **r, "status": "ok"})
        med = statistics.median(r["total_s"] for r in rows)
        if med > SKIP_AFTER_S:
            slow.setdefault(key, []).append((n, m))
        print(f"{label:>24} {solver:>5} {n:3d} DCs x {m:5d} sessions: {med:8.3f} s "
              f"(paths {statistics.median(r['paths_s'] for r in rows):.3f}, "
              f"ran {rows[0]['ran']})", flush=True)

    for solver in solvers:
        for cfg in CONFIGS:
            if cfg.before and solver != "highs":
                continue
            key = (cfg.name, solver)
            for n in sizes_n:
                for m in sizes_m:
                    if cfg.before and (n, m) not in BEFORE_SIZES:
                        continue
                    if too_slow(key, n, m):
                        record(key, cfg.name, cfg.strategy, solver, n, m, 1, None)
                        continue
                    options = RoutingOptions(solver=solver, bounds=False, time_limit_s=600,
                                             **cfg.options)
                    demands = unicast_demands(synthetic_network(n, n).datacenters, m, m)
                    with (max_min_engine_of(BEFORE) if cfg.before else contextlib.nullcontext()):
                        rows = run_cell(n, demands, cfg.strategy, options, n)
                    record(key, cfg.name, cfg.strategy, solver, n, m, 1, rows)
        key = ("multicast", solver)
        for n in sizes_n:
            for m in MULTICAST_SESSIONS:
                subs = min(SUBSCRIBERS, n - 1)
                if too_slow(key, n, m):
                    record(key, "multicast", "multicast", solver, n, m, subs, None)
                    continue
                options = RoutingOptions(solver=solver, bounds=False, time_limit_s=600,
                                         fairness="exact")
                demands = multicast_demands(synthetic_network(n, n).datacenters, m, SUBSCRIBERS, m)
                rows = run_cell(n, demands, "multicast", options, n)
                record(key, "multicast", "multicast", solver, n, m, subs, rows)
    return results


def write_csv(results: list[dict], stamp: str, where: str) -> None:
    CSV.parent.mkdir(parents=True, exist_ok=True)
    fields = ["date", "machine", "config", "strategy", "solver", "datacenters", "sessions",
              "subscribers", "rep", "ran", "paths_s", "build_s", "solve_s", "total_s", "wall_s",
              "min_rate_mbps", "total_rate_mbps", "load_1min", "status"]
    with CSV.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in results:
            w.writerow({"date": stamp, "machine": where, **r})


def read_csv() -> tuple[str, str, list[dict]]:
    """The results of the last run, as `measure` returned them, with its date and machine."""
    with CSV.open() as f:
        rows = list(csv.DictReader(f))
    numeric = ("paths_s", "build_s", "solve_s", "total_s", "wall_s", "min_rate_mbps",
               "total_rate_mbps", "load_1min")
    results = []
    for r in rows:
        out: dict = {k: v for k, v in r.items() if k not in ("date", "machine")}
        for k in ("datacenters", "sessions", "subscribers"):
            out[k] = int(r[k])
        if r["status"] == "ok":
            out["rep"] = int(r["rep"])
            out.update({k: float(r[k]) for k in numeric})
        results.append(out)
    return rows[0]["date"], rows[0]["machine"], results


def _cells(results: list[dict]) -> dict[tuple, dict]:
    cells: dict[tuple, list[dict]] = {}
    for r in results:
        cells.setdefault((r["config"], r["solver"], r["datacenters"], r["sessions"]), []).append(r)
    out = {}
    for key, rows in cells.items():
        ok = [r for r in rows if r["status"] == "ok"]
        if not ok:
            out[key] = {"text": "skipped", "subs": rows[0]["subscribers"]}
            continue
        med = {k: statistics.median(r[k] for r in ok)
               for k in ("paths_s", "build_s", "solve_s", "total_s", "min_rate_mbps",
                         "total_rate_mbps")}
        out[key] = {**med, "reps": len(ok), "subs": ok[0]["subscribers"],
                    "ran": "/".join(sorted({r["ran"] for r in ok}))}
    return out


def section(results: list[dict], stamp: str, where: str) -> str:
    cells = _cells(results)
    loads = [r["load_1min"] for r in results if r.get("load_1min") not in (None, "")]
    load = (f"; 1-minute load average {min(loads):.1f}-{max(loads):.1f} during the run (a "
            "shared machine: other work ran alongside)" if loads else "")
    lines = [SECTION, "",
             f"`benchmarks/routing.py`, {stamp}, {where}{load}. Plan time = candidate paths + LP "
             "build + solve (`PlanStats`), from a fresh network snapshot each time (no cached "
             f"paths); median of {REPS} runs (one run where a plan took over "
             f"{REPEAT_UNDER_S:.0f} s). "
             "Bounds (a max-flow per pair) are not computed here. Raw numbers: "
             "`benchmarks/results/routing.csv`.", "",
             "Configurations: " + "; ".join(f"**{c.name}**: {c.note}" for c in CONFIGS)
             + "; **multicast**: tree packing with column generation (up to 16 priced trees per "
             f"session), {SUBSCRIBERS} subscribers per session.", "",
             "| configuration | solver | DCs | sessions | paths s | build s | solve s | "
             "**total s** | min rate Mbit/s | total Gbit/s |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for (cfg, solver, n, m), c in sorted(cells.items(), key=lambda kv: (
            kv[0][0] == "multicast", kv[0][0], kv[0][1], kv[0][2], kv[0][3])):
        label = f"{cfg} ({c['subs']} subs)" if cfg == "multicast" else cfg
        if cfg == "multipath auto" and c.get("ran"):
            label += f" -> {c['ran']}"
        if "text" in c:
            lines.append(f"| {label} | {solver} | {n} | {m} | | | | {c['text']} | | |")
            continue
        lines.append(f"| {label} | {solver} | {n} | {m} | {c['paths_s']:.3f} | {c['build_s']:.3f} "
                     f"| {c['solve_s']:.3f} | **{c['total_s']:.3f}** | {c['min_rate_mbps']:.0f} "
                     f"| {c['total_rate_mbps'] / 1e3:.1f} |")
    lines += ["", *verdict(cells), "", *notes(cells), ""]
    return "\n".join(lines) + "\n"


def _total(cells: dict[tuple, dict], key: tuple) -> str:
    c = cells.get(key)
    return f"{c['total_s']:.2f} s" if c and "total_s" in c else "not measured"


def _rate(cells: dict[tuple, dict], key: tuple, field: str) -> str:
    c = cells.get(key)
    return f"{c[field]:.0f}" if c and field in c else "?"


def notes(cells: dict[tuple, dict]) -> list[str]:
    """What the numbers mean; the figures quoted are this run's, except where a note says
    "diagnostic" (an instrumented run of the solver, with its date)."""
    big = ("highs", 40, 1000)
    exact = _total(cells, ("multipath exact", *big))
    before = _total(cells, ("multipath exact (before)", *big))
    fast = _total(cells, ("multipath fast", *big))
    auto = cells.get(("multipath auto", *big), {})
    cbc_fast = _total(cells, ("multipath fast", "cbc", 40, 1000))
    paths = cells.get(("multipath fast", "cbc", 40, 1000), {}).get("paths_s")
    speedups = []
    for n, m in BEFORE_SIZES:
        new, old = (cells.get((cfg, "highs", n, m), {}).get("total_s")
                    for cfg in ("multipath exact", "multipath exact (before)"))
        if new and old:
            speedups.append(f"{n} x {m}: {old:.2f} -> {new:.2f} s ({old / new:.1f}x)")
    switched = sorted((n, m) for (cfg, solver, n, m), c in cells.items()
                      if cfg == "multipath auto" and solver == "highs" and c.get("ran") == "fast")
    return [
        "Notes:",
        "- The paths column counts candidate enumeration and column-generation pricing (with "
        "HiGHS, pricing runs after every LP, which is why it grows with the number of LPs). "
        "Enumeration alone -- every 1-relay path and the best 2-relay paths of each pair, "
        "scored with numpy, for the ~730 distinct pairs of 40 x 1 000 -- is the CBC rows' "
        + (f"{paths:.2f} s" if paths is not None else "figure")
        + " (the issue measured 2.3 s for networkx k-shortest paths); most of that is "
        "building ~34 000 path objects in Python.",
        f"- Exact max-min fairness is a sequence of LPs, one per fair level plus pricing rounds. "
        f"40 x 1 000 with HiGHS: {exact}, against {before} with the engine of {BEFORE} in this "
        f"run (HiGHS, exact, by size: {'; '.join(speedups) or 'not measured'}). Diagnostic runs "
        "of this cell (2026-11-27): before, 31 levels and 123 LPs, every improving candidate "
        "joining at each pricing round, so ~22 600 of the ~34 000 candidate paths ended in the "
        "model, 0.1-5 s per warm re-solve, two of them falling back to the interior point "
        "method after 10 000 simplex iterations; now the same 31 levels and 122 LPs, but each "
        "round adds only the best improving path of each pair (~6 300 columns in the model: "
        "this alone halved the time), and after each level the paths with a negative reduced "
        "cost are fixed at 0 (~3 800 columns) or dropped from the pool, since no later level "
        "can use them (reduced-cost fixing: halved it again). Minimum rate "
        f"{_rate(cells, ('multipath exact', *big), 'min_rate_mbps')} Mbit/s now, "
        f"{_rate(cells, ('multipath exact (before)', *big), 'min_rate_mbps')} before.",
        "- Exact at this size is ill-conditioned past its first levels (diagnostic, "
        "2026-11-27): the lowest ~915 of the 1 000 sorted rates agree to 1e-6 between the two "
        "engines, but higher levels move by up to 0.3% between them, and by up to 3% in the old "
        "engine alone when the slack that frozen rates keep (`FREEZE_SLACK`, 1e-7) is set to "
        "1e-9; at 1e-9 the two engines agree within 1.1e-6. In the LP of one level, letting "
        "every frozen commodity fall 0.001 Mbit/s short of its level lets one session rise "
        "from 1 554 to 3 000 Mbit/s. The upper levels here are as much the tolerance's as the "
        "network's; the max-min property tests (small overlays, an independent LP) pass for "
        "both engines.",
        f"- `fairness=\"fast\"` (`multipath fast`): {FAST_MAX_PATHS} candidates per pair, "
        f"{FAST_FAIR_LEVELS} max-min levels, then throughput, at most 0.01% of it traded for "
        f"shorter routes. 40 x 1 000: {fast} with HiGHS, {cbc_fast} with CBC. Fewer "
        "candidates lower the floor: minimum rate "
        f"{_rate(cells, ('multipath fast', *big), 'min_rate_mbps')} Mbit/s against exact's "
        f"{_rate(cells, ('multipath exact', *big), 'min_rate_mbps')}. CBC gets all candidates "
        "up front and solves three LPs; HiGHS starts from the fastest and widest path of each "
        "pair and prices the others in.",
        f"- `fairness=\"auto\"` (the default) runs exact up to {_spaced(AUTO_EXACT_UP_TO)} commodity "
        "x link pairs and fast above (threshold and its measurements: `AUTO_EXACT_UP_TO` in "
        "`stemflow/routing/registry.py`; up to it exact took at most 0.54 s). In this run it "
        "chose fast at " + (", ".join(f"{n} x {m}" for n, m in switched) or "no size")
        + f"; 40 x 1 000: {_total(cells, ('multipath auto', *big))}"
        + (f" ({auto['ran']})" if auto.get("ran") else "") + ". The threshold was measured with "
        "HiGHS; CBC's exact is slower at the same size. `stemflow plan` prints which ran "
        "(`fairness` line), scenarios can force either (`routing: {fairness: exact}`).",
        "- HiGHS is driven through highspy directly (matrix built once, changed in place, "
        "each re-solve starting from the last basis); PuLP's HiGHS interface adds columns and "
        "rows one at a time in Python and rebuilds the model for every solve, and progressive "
        "filling re-solves tens to hundreds of times. CBC is driven through PuLP, rebuilt "
        "for each LP.",
        "- Multicast time is mostly tree pricing (the Takahashi-Matsuyama heuristic in Python; "
        "Edmonds' arborescence via networkx when every datacenter is a sink, as at 10 DCs).",
    ]


def verdict(cells: dict[tuple, dict]) -> list[str]:
    """The targets, checked against the numbers just measured."""
    out = ["Targets (issue 2): 40 DCs x 1 000 sessions multipath <= 1 s including candidate paths; "
           "multicast with 10 subscribers <= 0.5 s."]
    for cfg in (c.name for c in CONFIGS):
        c = cells.get((cfg, "highs", 40, 1000))
        if c and "total_s" in c:
            ok = "met" if c["total_s"] <= 1.0 else "missed"
            out.append(f"- {cfg}, HiGHS, 40 x 1 000: {c['total_s']:.2f} s, target {ok}.")
    for m in MULTICAST_SESSIONS:
        c = cells.get(("multicast", "highs", 40, m))
        if c and "total_s" in c:
            ok = "met" if c["total_s"] <= 0.5 else "missed"
            out.append(f"- multicast, HiGHS, 40 DCs, {m} session(s) x {c['subs']} subscribers: "
                       f"{c['total_s']:.2f} s, target {ok}.")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--solvers", default="highs,cbc", help="comma-separated: highs,cbc")
    ap.add_argument("--quick", action="store_true", help="small sizes only; no files written")
    ap.add_argument("--from-csv", action="store_true",
                    help="rewrite the doc section from benchmarks/results/routing.csv, no runs")
    args = ap.parse_args()
    if args.from_csv:
        stamp, where, results = read_csv()
        write_section(SECTION, section(results, stamp, where))
        return
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    where = machine()
    results = measure(tuple(args.solvers.split(",")), args.quick)
    if args.quick:
        return
    write_csv(results, stamp, where)
    write_section(SECTION, section(results, stamp, where))
    print(f"wrote {CSV.relative_to(ROOT)} and the '{SECTION}' section of {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
