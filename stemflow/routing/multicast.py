"""The `multicast` strategy: pack several trees per multicast session, and the coding bound.

Owns the pricing of new multicast trees (a min-cost Steiner arborescence under link prices:
Edmonds' algorithm when every datacenter is a sink, the Takahashi-Matsuyama shortest-path
heuristic otherwise) and the strategy that packs them. The packing LP, max-min fair across
sessions, is `fairshare`'s; candidate paths for unicast sessions, which route as in `multipath`,
and the network-coding bound are `unicast`'s and `paths`'.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Mapping, Sequence

import networkx as nx

from stemflow.network import Edge, NetworkState
from stemflow.routing.demand import Demand
from stemflow.routing.fairshare import Pricer
from stemflow.routing.paths import tree_delay_ms
from stemflow.routing.plan import Plan
from stemflow.routing.registry import RoutingOptions, register
from stemflow.routing.unicast import fair_plan

TIE_BREAK_PER_MS = 1e-12
"""Added to each link's price per ms of RTT, so ties among free links favour short trees."""


def steiner_arborescence(graph: nx.DiGraph, weight: Mapping[Edge, float], source: str,
                         sinks: Sequence[str]) -> tuple[Edge, ...]:
    """A cheap directed tree from source reaching every sink (shortest-path heuristic).

    Grow the tree from the source; at each step attach the sink nearest to any tree node by a
    shortest path. Within a factor 2(1 - 1/k) of optimal on symmetric weights.

    References: H. Takahashi, A. Matsuyama, "An approximate solution for the Steiner problem in
    graphs", Math. Japonica 24, 1980.
    """
    in_tree = {source}
    edges: list[Edge] = []
    left = set(sinks) - in_tree
    while left:
        dist = dict.fromkeys(in_tree, 0.0)
        parent: dict[str, str] = {}
        heap = [(0.0, v) for v in in_tree]
        done: set[str] = set()
        reached = None
        while heap:
            d, u = heapq.heappop(heap)
            if u in done:
                continue
            done.add(u)
            if u in left:
                reached = u
                break
            for v in graph.successors(u):
                nd = d + weight[(u, v)]
                if nd < dist.get(v, math.inf):
                    dist[v], parent[v] = nd, u
                    heapq.heappush(heap, (nd, v))
        if reached is None:
            raise nx.NetworkXNoPath(f"no tree from {source} reaches {sorted(left)}")
        node = reached
        while node not in in_tree:
            edges.append((parent[node], node))
            in_tree.add(node)
            node = parent[node]
        left -= in_tree
    return tuple(sorted(edges))


def spanning_arborescence(graph: nx.DiGraph, weight: Mapping[Edge, float],
                          source: str) -> tuple[Edge, ...]:
    """The min-cost spanning arborescence rooted at source (Edmonds 1967; exact).

    When every datacenter is a sink, pricing trees this way makes column generation exact, and
    by Edmonds' branching theorem the fractional packing then reaches the min-cut bound.
    """
    g = nx.DiGraph()
    g.add_nodes_from(graph)
    g.add_weighted_edges_from((a, b, weight[(a, b)]) for a, b in graph.edges if b != source)
    tree = nx.minimum_spanning_arborescence(g, attr="weight", preserve_attrs=False)
    return tuple(sorted(tree.edges))


def tree_pricing(net: NetworkState, d: Demand,
                 options: RoutingOptions) -> tuple[Pricer, Callable[[tuple[Edge, ...]], float]]:
    """The pricing oracle of a multicast demand for column generation, and its delay function.

    The oracle returns the cheapest tree it finds under the given link prices, or None when
    that tree would exceed the demand's latency budget.
    """
    graph = net.graph
    sinks = tuple(t for t in d.sinks if t != d.source)
    broadcast = set(sinks) | {d.source} == set(graph.nodes)
    rtt = {(a, b): data["rtt_ms"] for a, b, data in graph.edges(data=True)}

    def delay_of(edges: tuple[Edge, ...]) -> float:
        return tree_delay_ms(net, edges, d.source, sinks)

    def price(prices: Mapping[Edge, float]) -> tuple[Edge, ...] | None:
        w = {e: prices.get(e, 0.0) + TIE_BREAK_PER_MS * r for e, r in rtt.items()}
        if broadcast:
            tree = spanning_arborescence(graph, w, d.source)
        else:
            tree = steiner_arborescence(graph, w, d.source, sinks)
        if d.latency_budget_ms is not None and delay_of(tree) > d.latency_budget_ms:
            return None
        return tree

    return price, delay_of


@register("multicast")
def multicast(net: NetworkState, demands: Sequence[Demand], options: RoutingOptions) -> Plan:
    """Multicast: pack several trees per multicast session by LP, max-min fair across sessions.

    Each multicast session starts with its shortest-path and widest trees; column generation
    then adds up to `trees_per_session` trees, each the cheapest Steiner arborescence under the
    link duals of the current LP (exact when every datacenter is a sink). Tree rates are the
    variables, each tree loads each of its links once, and sessions are max-min fair (classes
    in order). Unicast sessions route as in `multipath`. Each session's `bound_mbps` is the
    network-coding bound, min over its sinks of the max-flow; the gap to it is what coding, or
    more trees, could add.

    References
    ----------
    Fractional Steiner tree packing: K. Jain, M. Mahdian, M. Salavatipour, "Packing Steiner
    trees", SODA 2003. Column generation: Dantzig & Wolfe, Oper. Res. 8(1), 1960. Network
    coding bound: R. Ahlswede, N. Cai, S.-Y. R. Li, R. W. Yeung, "Network information flow",
    IEEE Trans. Inf. Theory 46(4), 2000. Edmonds, "Optimum branchings", J. Res. NBS 71B, 1967.
    """
    return fair_plan(net, demands, options, "multicast", tree_pricing)
