"""Best-effort routes beneath a plan: a way through for sessions the strategy gave no share.

Owns one rule: every session with subscribers gets a route. A max-min fair strategy may leave a
session at rate 0 (its links are full of sessions placed first, or no candidate path met its
latency budget); without a route, its ingress relay could only hold its frames or drop them.
The route given here is the least-RTT path (unicast) or the tree of least-RTT paths to each
sink (multicast): frames then travel with whatever capacity the plan leaves, as TCP's own
fairness shares it, and the plan still reports the session's planned rate as 0.

The returned session plans exist only to compile tables: their rate (`BEST_EFFORT_WEIGHT`) is
a weight for table compilation, not a rate any link is planned to carry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import networkx as nx

from stemflow.network import NetworkState
from stemflow.routing.demand import Demand
from stemflow.routing.plan import PathFlow, SessionPlan, TreeFlow

BEST_EFFORT_WEIGHT = 1e-6
"""Rate given to a best-effort route for compiling it: positive (tables skip rate-0 routes),
and negligible beside any planned rate."""


def best_effort_sessions(net: NetworkState, demands: Sequence[Demand],
                         planned: Mapping[str, SessionPlan]) -> dict[str, SessionPlan]:
    """Session plans for the demands `planned` leaves without a route, where the overlay has one.

    Example: with a plan that gives `s` nothing, `best_effort_sessions(net, [d], {})["s"].paths`
    is the least-RTT path from `d.source` to `d.sinks[0]`.
    """
    out: dict[str, SessionPlan] = {}
    graph = None
    for d in demands:
        sp = planned.get(d.session)
        if sp is not None and (sp.via_internet or (sp.rate_mbps > 0 and (sp.paths or sp.trees))):
            continue
        if graph is None:
            graph = net.graph
        if d.source not in graph:
            continue
        tree = nx.single_source_dijkstra_path(graph, d.source, weight="rtt_ms")  # one tree
        if any(sink not in tree for sink in d.sinks):
            continue
        paths = [tree[sink] for sink in d.sinks]
        if d.multicast:
            edges = tuple(dict.fromkeys((a, b) for p in paths for a, b in zip(p, p[1:], strict=False)))
            out[d.session] = SessionPlan(d.session, BEST_EFFORT_WEIGHT,
                                         trees=(TreeFlow(edges, BEST_EFFORT_WEIGHT),))
        else:
            out[d.session] = SessionPlan(d.session, BEST_EFFORT_WEIGHT,
                                         (PathFlow(tuple(paths[0]), BEST_EFFORT_WEIGHT),))
    return out
