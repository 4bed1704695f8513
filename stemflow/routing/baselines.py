"""The baselines the paper compares against: `direct`, `shortest` and `widest`.

Owns the three single-route strategies. `direct` is one TCP connection per subscriber over the
public Internet, no relays. `shortest` and `widest` route each session over one overlay path
(or, for multicast, one tree) and share each link's capacity max-min fairly among the sessions
on it (`fairshare.water_fill`), so their plans respect capacities like the optimizers' do.
Candidate routes come from `paths`; the TCP rate of the Internet path from `network`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import networkx as nx

from stemflow.network import Edge, NetworkState
from stemflow.routing.demand import Demand
from stemflow.routing.fairshare import water_fill
from stemflow.routing.paths import path_index, shortest_path_tree, tree_path, widest_tree
from stemflow.routing.plan import PathFlow, Plan, PlanStats, SessionPlan, TreeFlow, compile_tables
from stemflow.routing.registry import RoutingOptions, register
from stemflow.routing.unicast import session_bound_mbps

TreeFn = Callable[[NetworkState, str, Sequence[str]], tuple[Edge, ...]]


@register("direct")
def direct(net: NetworkState, demands: Sequence[Demand], options: RoutingOptions) -> Plan:
    """Direct TCP over the Internet path: the baseline without relays.

    The publisher opens one TCP connection to each subscriber (`NetworkState.direct_rate`). A
    multicast session's rate is that of its slowest subscriber: a reliable stream to several
    subscribers advances at the pace of the slowest, and a live one is received in full only at
    that rate. Each connection is modelled alone on its Internet path (the Internet is not
    shared with the overlay's links). No forwarding tables.
    """
    t0 = time.perf_counter()
    sessions = {}
    for d in demands:
        rate = min([net.direct_rate(d.publisher, s).rate_mbps for s in d.subscribers]
                   + [d.max_rate_mbps])
        sessions[d.session] = SessionPlan(d.session, rate, via_internet=True, bound_mbps=rate)
    return Plan("direct", sessions, {}, PlanStats("none", 0.0, time.perf_counter() - t0, 0.0))


def _single_route_plan(net: NetworkState, demands: Sequence[Demand], options: RoutingOptions,
                       strategy: str, tree_of: TreeFn) -> Plan:
    t0 = time.perf_counter()
    routes: list[tuple[Edge, ...] | None] = []
    for d in demands:
        sinks = [t for t in d.sinks if t != d.source]
        try:
            routes.append(tree_of(net, d.source, sinks))
        except nx.NetworkXNoPath:
            routes.append(None)
    paths_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    capacity = {e: net.capacity_mbps(*e) for e in net.links}
    caps = [d.max_rate_mbps if math.isfinite(d.max_rate_mbps) else math.inf for d in demands]
    rates = water_fill(routes, caps, capacity)
    solve_s = time.perf_counter() - t1
    index = path_index(net)
    sessions: dict[str, SessionPlan] = {}
    for d, edges, rate in zip(demands, routes, rates, strict=True):
        bound = session_bound_mbps(index, d) if options.bounds else None
        if edges is None:
            sessions[d.session] = SessionPlan(d.session, 0.0, bound_mbps=bound)
        elif d.multicast:
            sessions[d.session] = SessionPlan(d.session, float(rate),
                                              trees=(TreeFlow(edges, float(rate)),),
                                              bound_mbps=bound)
        else:
            hops = tree_path(edges, d.source, d.sinks[0])
            sessions[d.session] = SessionPlan(d.session, float(rate),
                                              paths=(PathFlow(hops, float(rate)),),
                                              bound_mbps=bound)
    stats = PlanStats("water-filling", paths_s, 0.0, solve_s)
    return Plan(strategy, sessions, compile_tables(sessions, demands), stats)


@register("shortest")
def shortest(net: NetworkState, demands: Sequence[Demand], options: RoutingOptions) -> Plan:
    """Each session on its min-RTT overlay path (multicast: the shortest-path tree).

    Sessions sharing a link get max-min fair shares of it (progressive filling).
    References: Dijkstra, Numer. Math. 1, 1959; Bertsekas & Gallager, "Data Networks", §6.5.2.
    """
    return _single_route_plan(net, demands, options, "shortest",
                              lambda n, s, ts: shortest_path_tree(n, s, ts))


@register("widest")
def widest(net: NetworkState, demands: Sequence[Demand], options: RoutingOptions) -> Plan:
    """Each session on its max-bottleneck overlay path (multicast: the widest tree).

    Sessions sharing a link get max-min fair shares of it (progressive filling).
    References: Pollack, Oper. Res. 8(5), 1960; Bertsekas & Gallager, "Data Networks", §6.5.2.
    """
    return _single_route_plan(net, demands, options, "widest", widest_tree)
