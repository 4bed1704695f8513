"""The `multipath` strategy: max-min fair multi-commodity flow over every overlay path.

Owns the grouping of demands into commodities, the routes each starts with (the fastest path
for unicast, shortest-path and widest trees for multicast), the notes on sessions it cannot
route as asked, and the assembly of the allocation into session plans with their bounds. The
allocation is `fairshare`'s, the pricing of new paths `pricing`'s, of new multicast trees
`tree_pricing`'s (for the `multicast` strategy).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence

from stemflow.network import Edge, NetworkState
from stemflow.routing.approx import split_plan
from stemflow.routing.demand import Demand
from stemflow.routing.fairshare import Commodity, FairShare, Route, max_min_fair
from stemflow.routing.paths import (
    PathIndex,
    path_index,
    shortest_path_tree,
    tree_delay_ms,
    widest_tree,
)
from stemflow.routing.plan import PathFlow, Plan, PlanStats, SessionPlan, TreeFlow, compile_tables
from stemflow.routing.pricing import PathPricing, PricedCommodity
from stemflow.routing.registry import RoutingOptions, register
from stemflow.routing.tree_pricing import PricedTree, TreePricing
from stemflow.routing.warmstart import congestion_paths

DELAY_SENSITIVE_WEIGHT = 1000.0
"""How much more a delay-sensitive session's delay counts when routes are chosen among equally
fair allocations: enough that it always gets the fastest routes before bulk traffic does."""


def class_rank(d: Demand) -> int:
    """Order in which classes are served: delay-sensitive (0) before bulk (1)."""
    return 0 if d.delay_sensitive else 1


def group_demands(demands: Sequence[Demand]) -> list[list[int]]:
    """Indices of demands that routing cannot tell apart, grouped (first-seen order).

    Same source, sink set, kind, cap, class and budget: max-min fair rates are unique, so such
    sessions get equal rates and can share one LP row.
    """
    groups: dict[tuple, list[int]] = {}
    for i, d in enumerate(demands):
        key = (d.source, tuple(sorted(set(d.sinks))), d.multicast, d.max_rate_mbps, d.priority,
               d.latency_budget_ms)
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def within_budget(delays_ms: Sequence[float], budget_ms: float | None) -> list[int]:
    """Indices of the routes that meet a one-way latency budget.

    When none does, the fastest alone is kept: the session is still served, and the simulator
    reports its missed deadlines, rather than being silently given rate 0.
    """
    if budget_ms is None or not delays_ms:
        return list(range(len(delays_ms)))
    ok = [i for i, dl in enumerate(delays_ms) if dl <= budget_ms]
    return ok or [min(range(len(delays_ms)), key=delays_ms.__getitem__)]


def initial_trees(net: NetworkState, d: Demand) -> list[tuple[Edge, ...]]:
    """The shortest-path tree and the widest tree of a multicast demand, within its budget."""
    sinks = [t for t in d.sinks if t != d.source]
    trees = list(dict.fromkeys([shortest_path_tree(net, d.source, sinks),
                                widest_tree(net, d.source, sinks)]))
    delays = [tree_delay_ms(net, t, d.source, sinks) for t in trees]
    return [trees[i] for i in within_budget(delays, d.latency_budget_ms)]


SeedPaths = Mapping[tuple[str, str], Sequence[tuple[str, ...]]]
"""Paths to start each (source, sink) pair's LP with, besides its fastest: the last plan's, when
re-planning (`planner.Planner`); without them, those of `warmstart.congestion_paths`."""


def fair_plan(net: NetworkState, demands: Sequence[Demand], options: RoutingOptions,
              strategy: str, price_trees: bool = False,
              seeds: SeedPaths | None = None, previous_config: str = "") -> Plan:
    """Max-min fair allocation over every path (and the given trees), assembled into a `Plan`.

    Unicast demands start with their fastest path and the `seeds` of their pair (without seeds,
    the paths of `warmstart.congestion_paths`) and get more by path pricing over the whole
    overlay; multicast demands the shortest-path and widest trees, and with `price_trees` more
    by tree pricing over the whole overlay (`tree_pricing`). Exact or fast is
    `options.fairness`'s choice for this many commodities and links (with hysteresis after
    `previous_config`); the plan's `stats.config` says which ran, `notes` which sessions could
    not be routed as asked, `unproven` whose trees pricing could not prove optimal.
    """
    t0 = time.perf_counter()
    groups = group_demands(demands)
    options, config = options.configured(len(groups), len(net.links), previous_config)
    if options.fixed_splits:
        return split_plan(net, demands, options, strategy, config)
    links = sorted(net.links)
    rtt = [net.links[e].rtt_ms for e in links]
    pricing = PathPricing(net.datacenters, links, rtt, [])
    trees = TreePricing(net.datacenters, links, rtt, [])
    commodities: list[Commodity] = []
    routes: list[Route] = []
    notes: dict[str, str] = {}
    fastest: dict[str, dict[str, tuple[str, ...] | None]] = {}
    if not seeds:
        seeds = congestion_paths(pricing, [net.capacity_mbps(*e) for e in links],
                                 _pair_sessions(demands))
    for g, members in enumerate(groups):
        d = demands[members[0]]
        c = Commodity(size=len(members), cap_mbps=d.max_rate_mbps, rank=class_rank(d),
                      delay_weight=DELAY_SENSITIVE_WEIGHT if d.delay_sensitive else 1.0)
        commodities.append(c)
        if d.multicast:
            sinks = [t for t in d.sinks if t != d.source]
            first = [Route(g, edges, tree_delay_ms(net, edges, d.source, sinks))
                     for edges in initial_trees(net, d)]
            routes += first
            budget = d.latency_budget_ms
            if budget is not None and min(r.delay_ms for r in first) > budget:
                for i in members:
                    notes[demands[i].session] = (
                        f"no tree meets its latency budget of {budget:g} ms (the shortest-path "
                        f"tree reaches its farthest sink in {first[0].delay_ms:.1f} ms); routed "
                        "over the shortest-path tree")
            elif price_trees:
                trees.commodities.append(PricedTree(g, d.source, tuple(sinks), budget,
                                                    c.delay_weight, options.trees_per_session))
            continue
        sink = d.sinks[0]
        if d.source not in fastest:
            fastest[d.source] = pricing.fastest(d.source, net.datacenters)
        hops = (d.source,) if sink == d.source else fastest[d.source].get(sink)
        if hops is None:
            for i in members:
                notes[demands[i].session] = f"no overlay path from {d.source} to {sink}"
            continue
        first = pricing.path_route(g, hops)
        routes.append(first)
        budget = d.latency_budget_ms
        room = (options.max_paths or math.inf) - 1
        for old in seeds.get((d.source, sink), ()):
            if room <= 0:
                break
            again = pricing.path_route(g, old) if all(
                e in net.links for e in zip(old, old[1:], strict=False)) else None
            if again is not None and again.edges != first.edges and (
                    budget is None or again.delay_ms <= budget):
                routes.append(again)
                room -= 1
        if budget is not None and first.delay_ms > budget:
            for i in members:
                notes[demands[i].session] = (
                    f"no path meets its latency budget of {budget:g} ms (the fastest, "
                    f"{' -> '.join(hops)}, takes {first.delay_ms:.1f} ms one way); routed over "
                    "the fastest")
            continue
        if len(hops) > 1:
            pricing.commodities.append(PricedCommodity(g, d.source, sink, budget, c.delay_weight))
    paths_s = time.perf_counter() - t0
    capacity = {e: net.capacity_mbps(*e) for e in links}
    share = max_min_fair(commodities, routes, capacity, options.solver, options.time_limit_s,
                         (), options.fair_levels, pricing, options.max_paths,
                         trees if trees.commodities else None)
    sessions = assemble(net, demands, groups, share, options)
    stats = PlanStats(share.solver, paths_s + share.price_s, share.build_s, share.solve_s, config)
    unproven = {demands[i].session: why for g, why in trees.unproven.items() for i in groups[g]}
    return Plan(strategy, sessions, compile_tables(sessions, demands), stats, notes=notes,
                unproven=unproven)


def _pair_sessions(demands: Sequence[Demand]) -> dict[tuple[str, str], int]:
    """Unicast sessions per (source, sink) pair, for `warmstart.congestion_paths`."""
    out: dict[tuple[str, str], int] = {}
    for d in demands:
        if not d.multicast and d.sinks[0] != d.source:
            pair = (d.source, d.sinks[0])
            out[pair] = out.get(pair, 0) + 1
    return out


def assemble(net: NetworkState, demands: Sequence[Demand], groups: Sequence[Sequence[int]],
             share: FairShare, options: RoutingOptions) -> dict[str, SessionPlan]:
    """Per-session plans from a commodity allocation: each member gets 1/n of every route."""
    per_group: list[list[tuple[Route, float]]] = [[] for _ in groups]
    for r, v in zip(share.routes, share.route_mbps, strict=True):
        if v > 0:
            per_group[r.commodity].append((r, float(v)))
    index = path_index(net)
    sessions: dict[str, SessionPlan] = {}
    for g, members in enumerate(groups):
        n = len(members)
        for i in members:
            d = demands[i]
            used = per_group[g]
            if d.multicast:
                trees = tuple(TreeFlow(r.edges, v / n) for r, v in used)
                plan = SessionPlan(d.session, float(share.rate_mbps[g]), trees=trees)
            else:
                paths = tuple(PathFlow(r.hops or (d.source,), v / n) for r, v in used)
                plan = SessionPlan(d.session, float(share.rate_mbps[g]), paths=paths)
            sessions[d.session] = _with_bound(plan, d, index, options)
    return sessions


def _with_bound(plan: SessionPlan, d: Demand, index: PathIndex,
                options: RoutingOptions) -> SessionPlan:
    if not options.bounds:
        return plan
    return SessionPlan(plan.session, plan.rate_mbps, plan.paths, plan.trees,
                       session_bound_mbps(index, d), plan.via_internet)


def session_bound_mbps(index: PathIndex, d: Demand) -> float:
    """The most this session could get alone: its cap, and the max-flow to each of its sinks.

    For a multicast session this is the network-coding bound (min over sinks of the max-flow,
    Ahlswede et al. 2000); for a unicast session it is the max-flow to its one sink.
    """
    flow = index.multicast_bound_mbps(d.source, d.sinks)
    bound = min(flow, d.max_rate_mbps)
    return bound if math.isfinite(bound) else 0.0


@register("multipath")
def multipath(net: NetworkState, demands: Sequence[Demand], options: RoutingOptions) -> Plan:
    """Multipath: path-based multi-commodity flow, max-min fair over every overlay path.

    Each unicast session starts with its fastest path; column generation then adds, between
    LP solves, the cheapest path under the LP's dual prices over the whole overlay (a shortest
    path; with a latency budget, the cheapest path that meets it), until none improves the LP
    (`pricing`). A session no path reaches, or whose budget no path meets, is named in
    `Plan.notes` (the latter is still served over its fastest path). Delay-sensitive sessions are
    filled first; bulk sessions share what remains; capped sessions stop at their cap. A
    multicast session, if any, is routed over its shortest-path and widest trees (the
    `multicast` strategy packs more). Large problems get the fast configuration unless
    `options.fairness` says "exact" (`RoutingOptions.configured`).

    References
    ----------
    Multi-commodity flow in path form: Ahuja, Magnanti, Orlin, "Network Flows", 1993, ch. 17.
    Max-min fairness by progressive filling with LPs: Nace & Pioro, IEEE COMST 10(4), 2008.

    Example
    -------
    >>> plan = multipath(net, demands, RoutingOptions())          # doctest: +SKIP
    >>> plan.sessions["bulk-1GB"].paths[0].hops                   # doctest: +SKIP
    ('us-east1', 'us-west1', 'asia-east1')
    """
    return fair_plan(net, demands, options, "multipath")
