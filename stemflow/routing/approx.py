"""The approximate configuration: max-min fair rates over fixed traffic splits, without an LP.

Owns `split_plan` and `split_water_fill`. At 100 datacenters x 10 000 sessions the LPs of the
exact and fast configurations (a row per link and per commodity, about 10 000 of each) take
minutes; a controller re-plans every few seconds. Here each pair's sessions are split over the
paths of the multiplicative-weights routing of every pair (`warmstart.congestion_split`: each
path carries the share of the rounds that used it, an approximate maximum concurrent flow), a
multicast session takes its shortest-path tree, and progressive filling raises every session
over its fixed split together, freezing those whose split crosses a link that fills or that
reach their cap (water-filling, as for single paths in `fairshare.water_fill`). The rates are
max-min fair for these splits, not over every split: the exact configuration's minimum rate
is an upper bound on this one's, and `docs/benchmarks.md`, "Routing core", says how far below
it this lands.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from scipy.sparse import csr_matrix

from stemflow.network import NetworkState
from stemflow.routing.demand import Demand
from stemflow.routing.fairshare import FairShare, Route
from stemflow.routing.paths import tree_delay_ms
from stemflow.routing.plan import Plan, PlanStats, compile_tables
from stemflow.routing.pricing import PathPricing
from stemflow.routing.registry import RoutingOptions
from stemflow.routing.warmstart import congestion_split

SPLIT_ROUNDS = 64
SPLIT_STEP = 0.5
"""Rounds and step of the multiplicative-weights split (`warmstart.congestion_split`): more
rounds with a smaller step average closer to a maximum concurrent flow. At 40 x 1 000
(`benchmarks/routing.py` mesh, one run each) the minimum rate was 582, 795, 838 and 872 Mbit/s
with (16, 2), (32, 1), (64, 0.5) and (128, 0.25), against 1 139 exact; 64 rounds took 4.1 s
at 100 x 10 000 under cProfile on a loaded machine (load 8), and the rounds' cost is linear."""


def split_water_fill(usage: csr_matrix, group: np.ndarray, weight: np.ndarray,
                     caps_mbps: np.ndarray, capacity_mbps: np.ndarray,
                     ranks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Route and per-session commodity rates by progressive filling over fixed path sets.

    `usage[k, e]` is the load one Mbit/s per session on route k puts on link e (the sessions of
    its commodity `group[k]`, or 0 if it misses e); `weight[k]` is route k's share of its
    commodity's split. Every free commodity's rate rises together, each increment split over
    its routes that cross no full link, in proportion to their weights; a commodity freezes when
    every route of it crosses a full link, or at its cap. Classes fill in `ranks` order (one
    rank per commodity). A commodity without routes gets 0; one whose routes cross no link, its
    cap. Returns (aggregate Mbit/s of each route, per-session rate of each commodity).
    """
    n_comm = len(caps_mbps)
    n_routes = usage.shape[0]
    rate = np.zeros(n_comm)
    flow = np.zeros(n_routes)
    sizes = np.zeros(n_comm)
    remaining = np.asarray(capacity_mbps, dtype=float).copy()
    capacity = remaining.copy()
    caps = np.asarray(caps_mbps, dtype=float)
    has_route = np.bincount(group, minlength=n_comm) > 0
    crosses = np.bincount(group, weights=np.asarray(usage.sum(axis=1)).ravel(),
                          minlength=n_comm) > 0
    per_session = np.asarray(usage.max(axis=1).todense()).ravel()  # sessions of its commodity
    np.maximum.at(sizes, group, per_session)
    local = has_route & ~crosses & (caps > 0)
    if np.any(local & ~np.isfinite(caps)):
        raise ValueError("a session that crosses no link has an unbounded rate: give it a cap")
    rate[local] = caps[local]
    usage = usage.tocsr()
    usage_t = usage.T.tocsr()  # links x routes: which routes a full link closes
    t_ptr, t_idx = usage_t.indptr, usage_t.indices
    r_ptr, r_idx, r_val = usage.indptr, usage.indices, usage.data
    open_route = np.ones(n_routes, dtype=bool)
    full_link = np.zeros(len(capacity), dtype=bool)
    order = np.argsort(group, kind="stable")
    first = np.searchsorted(group[order], np.arange(n_comm + 1))

    def routes_of(g: int) -> np.ndarray:
        return order[first[g]:first[g + 1]]

    done = ~(crosses & (caps > 0))  # rate final (0, or the cap of a local commodity)
    for rank in np.unique(ranks):
        active = ~done & (ranks == rank)
        share = np.zeros(n_routes)
        for g in np.flatnonzero(active).tolist():
            if open_route[routes_of(g)].any():
                _reshare(share, routes_of(g), open_route, weight)
            else:  # every route crosses a link an earlier class filled
                active[g], done[g] = False, True
        users = usage_t @ share  # Mbit/s each link gains per unit of level
        free = remaining.copy()  # Mbit/s free on each link at level `ref`
        ref = np.zeros(len(capacity))
        level = 0.0  # the per-session rate of every active commodity of this rank
        since = np.zeros(n_routes)  # level at which each route's share last changed
        with np.errstate(divide="ignore", invalid="ignore"):
            room = np.where((users > 1e-12) & ~full_link, ref + free / users, np.inf)
        cap_min = float(caps[active].min(initial=np.inf))
        while active.any():
            cap_left = cap_min - level
            step = max(0.0, min(float(room.min(initial=np.inf)) - level, cap_left))
            level += step
            newly = np.flatnonzero(room <= level * (1 + 1e-12))
            full_link[newly] = True
            room[newly] = np.inf
            closing = np.unique(np.concatenate(
                [t_idx[t_ptr[e]:t_ptr[e + 1]] for e in newly.tolist()])) if newly.size else newly
            closing = closing[open_route[closing]]
            open_route[closing] = False
            touched = set(group[closing].tolist())
            if step >= cap_left:
                touched |= set(np.flatnonzero(active & (caps <= level * (1 + 1e-12))).tolist())
            for g in touched:
                if not active[g]:
                    continue
                mine = routes_of(g)
                before = share[mine].copy()
                flow[mine] += before * sizes[g] * (level - since[mine])
                since[mine] = level
                if caps[g] <= level * (1 + 1e-12) or not open_route[mine].any():
                    active[g], done[g] = False, True
                    rate[g] = min(level, caps[g])
                    share[mine] = 0.0
                else:
                    _reshare(share, mine, open_route, weight)
                for k, d in zip(mine.tolist(), (share[mine] - before).tolist(), strict=True):
                    if d:
                        links = r_idx[r_ptr[k]:r_ptr[k + 1]]
                        free[links] -= users[links] * (level - ref[links])
                        ref[links] = level
                        users[links] += d * r_val[r_ptr[k]:r_ptr[k + 1]]
                        with np.errstate(divide="ignore", invalid="ignore"):
                            room[links] = np.where((users[links] > 1e-12) & ~full_link[links],
                                                   level + free[links] / users[links], np.inf)
            if any(caps[g] <= cap_min for g in touched):  # the lowest cap may have frozen
                cap_min = float(caps[active].min(initial=np.inf))
        flow += share * sizes[group] * (level - since)
        remaining = np.maximum(free - users * (level - ref), 0.0)
    return flow, rate


def _reshare(share: np.ndarray, mine: np.ndarray, open_route: np.ndarray,
             weight: np.ndarray) -> None:
    """A commodity's increment split over its open routes in proportion to their weights."""
    w = np.where(open_route[mine], weight[mine], 0.0)
    share[mine] = w / w.sum() if w.sum() > 0 else 0.0


def split_plan(net: NetworkState, demands: Sequence[Demand], options: RoutingOptions,
               strategy: str, config: str) -> Plan:
    """A plan over fixed splits (see the module docstring); `config` labels it in the stats."""
    from stemflow.routing.unicast import (  # unicast dispatches here: import late
        _pair_sessions,
        assemble,
        class_rank,
        group_demands,
        initial_trees,
    )

    t0 = time.perf_counter()
    groups = group_demands(demands)
    links = sorted(net.links)
    row_of = {e: i for i, e in enumerate(links)}
    capacity = np.array([net.capacity_mbps(*e) for e in links], dtype=float)
    pricing = PathPricing(net.datacenters, links, [net.links[e].rtt_ms for e in links], [])
    split = congestion_split(pricing, capacity, _pair_sessions(demands), SPLIT_ROUNDS, SPLIT_STEP)
    routes: list[Route] = []
    share: list[float] = []
    notes: dict[str, str] = {}
    fastest: dict[str, dict[str, tuple[str, ...] | None]] = {}
    rows, cols, vals = [], [], []
    for g, members in enumerate(groups):
        d = demands[members[0]]
        if d.multicast:
            sinks = [t for t in d.sinks if t != d.source]
            tree = initial_trees(net, d)[0]
            options_of = [(Route(g, tree, tree_delay_ms(net, tree, d.source, sinks)), 1.0)]
        else:
            sink = d.sinks[0]
            if sink == d.source:
                options_of = [(Route(g, (), 0.0, (d.source,)), 1.0)]
            else:
                if d.source not in fastest:
                    fastest[d.source] = pricing.fastest(d.source, net.datacenters)
                hops = fastest[d.source].get(sink)
                if hops is None:
                    for i in members:
                        notes[demands[i].session] = f"no overlay path from {d.source} to {sink}"
                    continue
                budget = d.latency_budget_ms
                paths = [(pricing.path_route(g, p), w)
                         for p, w in split.get((d.source, sink), {}).items()]
                paths = [(r, w) for r, w in paths if budget is None or r.delay_ms <= budget]
                if not paths:
                    paths = [(pricing.path_route(g, hops), 1.0)]
                    if budget is not None:
                        for i in members:
                            notes[demands[i].session] = (
                                f"no path meets its latency budget of {budget:g} ms; routed "
                                "over the fastest")
                total = sum(w for _, w in paths)
                options_of = [(r, w / total) for r, w in paths]
        for r, w in options_of:
            for e in r.edges:
                rows.append(len(routes))
                cols.append(row_of[e])
                vals.append(float(len(members)))
            routes.append(r)
            share.append(w)
    usage = csr_matrix((vals, (rows, cols)), shape=(len(routes), len(links)))
    caps = np.array([demands[m[0]].max_rate_mbps for m in groups], dtype=float)
    ranks = np.array([class_rank(demands[m[0]]) for m in groups])
    big = 1e3 * (float(capacity.sum()) + 1.0)
    group = np.array([r.commodity for r in routes], dtype=np.int64)
    route_mbps, rate = split_water_fill(usage, group, np.array(share), np.minimum(caps, big),
                                        capacity, ranks)
    alloc = FairShare(routes, route_mbps, rate, "none")
    solve_s = time.perf_counter() - t0
    sessions = assemble(net, demands, groups, alloc, options)
    stats = PlanStats("none", solve_s, 0.0, 0.0, config)
    return Plan(strategy, sessions, compile_tables(sessions, demands), stats, notes=notes)

