"""`stemflow plan SCENARIO`: compute one strategy's plan and show why it looks the way it does.

Owns the command line of the routing core: loading a scenario, picking the strategy and solver,
and rendering the plan for a person (per session its rate and routes, per link its effective
capacity, the bound that sets it and its utilization, each session's bound and gap, where the
time went) or as one JSON object for scripts. Decisions are `stemflow.routing`'s.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from typing import Any

from stemflow.network import NetworkState
from stemflow.routing import demands_from_scenario, make_plan
from stemflow.routing.demand import Demand
from stemflow.routing.plan import Plan, PlanError
from stemflow.routing.registry import FAIRNESS, SOLVERS, RoutingOptions, UnknownStrategy
from stemflow.scenario import Scenario, ScenarioError, load_scenario

DEFAULT_STRATEGY = "multipath"


def default_strategy(s: Scenario) -> str:
    """The last strategy the scenario lists that is not the direct baseline, or multipath."""
    overlay = [x for x in s.strategies if x != "direct"]
    return overlay[-1] if overlay else DEFAULT_STRATEGY


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stemflow plan", description=__doc__.splitlines()[0])
    p.add_argument("scenario", help="scenario YAML file")
    p.add_argument("--strategy", help="strategy name or package.module:function "
                   "(default: the scenario's last non-direct strategy, else multipath)")
    p.add_argument("--solver", choices=SOLVERS, default="highs", help="LP solver (default highs)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--all-links", action="store_true", help="list every link, not only used ones")
    p.add_argument("--fair-levels", type=int, default=None, metavar="N",
                   help="stop exact max-min filling after N levels, then maximize throughput "
                   "(faster at scale)")
    p.add_argument("--max-paths", type=int, default=None, metavar="N",
                   help="keep at most N candidate paths per datacenter pair (faster at scale)")
    p.add_argument("--fairness", choices=FAIRNESS, default=None,
                   help="exact max-min, the fast configuration, approx (fixed splits, no LP), "
                   "or auto by problem size "
                   "(default: the scenario's routing.fairness, itself auto by default)")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 when a session is left without a route or outside its budget")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        scenario = load_scenario(args.scenario)
        net = NetworkState.from_scenario(scenario)
        demands = demands_from_scenario(scenario, net)
        strategy = args.strategy or default_strategy(scenario)
        options = RoutingOptions(solver=args.solver, fair_levels=args.fair_levels,
                                 max_paths=args.max_paths,
                                 fairness=args.fairness or scenario.routing.fairness)
        plan = make_plan(net, demands, strategy, options)
    except ScenarioError as e:
        print(f"stemflow plan: {e}", file=sys.stderr)
        return 2
    except UnknownStrategy as e:
        print(f"stemflow plan: {e}", file=sys.stderr)
        return 2
    except PlanError as e:
        print(f"stemflow plan: strategy {strategy!r} produced an {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(plan_json(plan, net, demands, scenario.name)))
    else:
        print(render(plan, net, demands, scenario.name, args.all_links))
    problems = unrouted(plan, demands)
    for sid, why in problems.items():
        print(f"stemflow plan: session {sid!r}: {why}", file=sys.stderr)
    return 1 if problems and args.strict else 0


def unrouted(plan: Plan, demands: Sequence[Demand]) -> dict[str, str]:
    """Sessions the plan does not route as asked, and why: the strategy's own notes, and any
    session left at rate 0 without one (a strategy that says nothing is named here too)."""
    out = dict(plan.notes)
    for d in demands:
        sp = plan.sessions[d.session]
        if d.session not in out and sp.rate_mbps <= 0 and d.max_rate_mbps > 0:
            out[d.session] = f"rate 0 from strategy {plan.strategy!r}, which gave no reason"
    return out


def _links(plan: Plan, net: NetworkState, all_links: bool) -> list[dict[str, Any]]:
    load = plan.link_load()
    rows = []
    for (a, b) in sorted(net.links):
        used = load.get((a, b), 0.0)
        if used <= 0 and not all_links:
            continue
        hop = net.hop_rate(a, b)
        st = net.links[(a, b)]
        rows.append({"src": a, "dst": b, "capacity_mbps": hop.rate_mbps, "used_mbps": used,
                     "limited_by": hop.limited_by, "rtt_ms": st.rtt_ms,
                     "bandwidth_mbps": st.bandwidth_mbps, "loss": st.loss})
    return rows


def plan_json(plan: Plan, net: NetworkState, demands: Sequence[Demand],
              scenario: str) -> dict[str, Any]:
    """The plan as plain data: sessions with routes, every link (capacity, use, what sets the
    capacity, so a plan can be checked independently), bounds, unrouted sessions, sessions whose
    trees are not proven optimal, and times."""
    sessions = []
    for d in demands:
        sp = plan.sessions[d.session]
        entry: dict[str, Any] = {"id": d.session, "rate_mbps": sp.rate_mbps}
        if sp.via_internet:
            entry["via_internet"] = True
            entry["paths"] = []
        elif sp.trees or d.multicast:
            entry["trees"] = [{"edges": [list(e) for e in t.edges], "rate_mbps": t.rate_mbps}
                              for t in sp.trees]
        else:
            entry["paths"] = [{"hops": list(p.hops), "rate_mbps": p.rate_mbps} for p in sp.paths]
        sessions.append(entry)
    st = plan.stats
    return {
        "scenario": scenario,
        "strategy": plan.strategy,
        "solver": st.solver,
        "config": st.config,
        "sessions": sessions,
        "links": _links(plan, net, all_links=True),
        "unrouted": unrouted(plan, demands),
        "unproven": dict(plan.unproven),
        "bound_mbps": {d.session: plan.sessions[d.session].bound_mbps for d in demands},
        "solve_s": st.solve_s,
        "time_s": {"paths": st.paths_s, "build": st.build_s, "solve": st.solve_s,
                   "total": st.total_s},
    }


def _gap(rate: float, bound: float | None) -> str:
    if bound is None or not math.isfinite(bound) or bound <= 0:
        return ""
    return f"bound {bound:9.1f}  gap {100 * (bound - rate) / bound:5.1f}%"


def render(plan: Plan, net: NetworkState, demands: Sequence[Demand], scenario: str,
           all_links: bool = False) -> str:
    """The plan as text a person can read."""
    out = [f"scenario {scenario}  strategy {plan.strategy}  solver {plan.stats.solver}", "",
           "sessions (Mbit/s)"]
    width = max((len(d.session) for d in demands), default=4)
    for d in demands:
        sp = plan.sessions[d.session]
        kind = "multicast" if d.multicast else "unicast"
        out.append(f"  {d.session:<{width}}  {sp.rate_mbps:9.1f}  {kind:<9}  "
                   f"{_gap(sp.rate_mbps, sp.bound_mbps)}")
        if sp.via_internet:
            out.append(f"  {'':<{width}}  direct TCP over the Internet path, no relays")
        for p in sp.paths:
            out.append(f"  {'':<{width}}  {p.rate_mbps:9.1f}  path {' -> '.join(p.hops)}")
        for k, t in enumerate(sp.trees, start=1):
            edges = ", ".join(f"{a}->{b}" for a, b in t.edges) or "(local delivery)"
            out.append(f"  {'':<{width}}  {t.rate_mbps:9.1f}  tree {k}: {edges}")
    links = _links(plan, net, all_links)
    out += ["", "links (effective capacity = P TCP connections over the hop, capped by bandwidth)"
            if links else "links: none used"]
    if links:
        w = max(len(f"{r['src']} -> {r['dst']}") for r in links)
        out.append(f"  {'link':<{w}}  {'rtt ms':>7}  {'capacity':>9}  {'set by':<9}  "
                   f"{'used':>9}  util")
        for r in links:
            name = f"{r['src']} -> {r['dst']}"
            util = r["used_mbps"] / r["capacity_mbps"] if r["capacity_mbps"] else 0.0
            out.append(f"  {name:<{w}}  {r['rtt_ms']:7.1f}  {r['capacity_mbps']:9.1f}  "
                       f"{r['limited_by']:<9}  {r['used_mbps']:9.1f}  {100 * util:3.0f}%")
    st = plan.stats
    out += ["", f"time  paths {st.paths_s:.4f} s + build {st.build_s:.4f} s + solve "
                f"{st.solve_s:.4f} s = {st.total_s:.4f} s ({st.solver})"]
    if st.config:
        out.append(f"fairness  {st.config}")
    for sid, why in plan.unproven.items():
        out.append(f"not proven max-min fair over every tree: {sid}: {why}")
    return "\n".join(out)
