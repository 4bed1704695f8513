"""Overlay trees and single-session bounds, computed per network snapshot.

Owns shortest-path (min-RTT) and widest (max-bottleneck) trees from a source, the hops of a
path inside a tree, a tree's delay, and the single-session max-flow and network-coding bounds
(cached per snapshot). It makes no allocation decision: `unicast`, `multicast` and `baselines`
do, and unicast paths are priced over the whole overlay by `pricing`, not drawn from a list.
"""

from __future__ import annotations

import heapq
import math
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import networkx as nx

from stemflow.network import Edge, NetworkState


@dataclass
class PathIndex:
    """One snapshot's overlay graph and the per-pair max-flows computed from it.

    Build it with `path_index(net)`, which returns the same index for the same snapshot object.
    """

    graph: nx.DiGraph
    _flows: dict[tuple[str, str], float] = field(default_factory=dict)

    @classmethod
    def build(cls, net: NetworkState) -> PathIndex:
        return cls(net.graph)

    def max_flow_mbps(self, source: str, sink: str) -> float:
        """Max-flow from source to sink over effective capacities: one session's upper bound.

        References: Ford & Fulkerson (1956); networkx's preflow-push implementation.
        """
        if source == sink:
            return math.inf
        key = (source, sink)
        if key not in self._flows:
            self._flows[key] = float(nx.maximum_flow_value(
                self.graph, source, sink, capacity="capacity_mbps"))
        return self._flows[key]

    def multicast_bound_mbps(self, source: str, sinks: Iterable[str]) -> float:
        """Network-coding bound: min over sinks of the source->sink max-flow.

        With network coding a multicast session achieves exactly this rate (Ahlswede, Cai, Li,
        Yeung, "Network information flow", IEEE Trans. Inf. Theory 46(4), 2000); tree packing
        without coding may fall short of it.
        """
        return min((self.max_flow_mbps(source, t) for t in sinks if t != source), default=math.inf)


_INDEXES: dict[int, tuple[weakref.ref, PathIndex]] = {}


def path_index(net: NetworkState) -> PathIndex:
    """The `PathIndex` of a snapshot, built once and reused while the snapshot lives.

    Snapshots are immutable values (`NetworkState.with_links` returns a new one), so caching by
    object identity is sound; the entry is dropped when the snapshot is garbage-collected.
    """
    key = id(net)
    hit = _INDEXES.get(key)
    if hit is not None and hit[0]() is net:
        return hit[1]
    index = PathIndex.build(net)
    _INDEXES[key] = (weakref.ref(net, lambda _r, k=key: _INDEXES.pop(k, None)), index)
    return index


# ---------------------------------------------------------------------------------------------
# Trees from a source: each is a parent map {node: parent}, pruned to the sinks.


def shortest_path_tree(net: NetworkState, source: str, sinks: Iterable[str],
                       weight: Mapping[Edge, float] | None = None) -> tuple[Edge, ...]:
    """Union of min-RTT paths from source to each sink (Dijkstra's tree, pruned to the sinks).

    `weight` replaces the RTT as edge length when given (used to perturb or price edges).
    """
    g = net.graph
    length = weight if weight is not None else {(a, b): d["rtt_ms"] for a, b, d in g.edges(data=True)}
    dist = {source: 0.0}
    parent: dict[str, str] = {}
    heap = [(0.0, source)]
    done: set[str] = set()
    while heap:
        d, u = heapq.heappop(heap)
        if u in done:
            continue
        done.add(u)
        for v in g.successors(u):
            nd = d + length[(u, v)]
            if nd < dist.get(v, math.inf):
                dist[v], parent[v] = nd, u
                heapq.heappush(heap, (nd, v))
    return _prune(parent, source, sinks)


def widest_tree(net: NetworkState, source: str, sinks: Iterable[str]) -> tuple[Edge, ...]:
    """Max-bottleneck paths from source to each sink, ties broken by RTT, as one tree.

    A Dijkstra variant that settles nodes in order of decreasing path bottleneck; the paths it
    finds form a tree (a maximum-bottleneck arborescence).
    References: Pollack, "The maximum capacity through a network", Oper. Res. 8(5), 1960.
    """
    g = net.graph
    best = {source: (math.inf, 0.0)}
    parent: dict[str, str] = {}
    heap = [(-math.inf, 0.0, source)]
    done: set[str] = set()
    while heap:
        negw, rtt, u = heapq.heappop(heap)
        if u in done:
            continue
        done.add(u)
        for v in g.successors(u):
            data = g.edges[u, v]
            w = min(-negw, data["capacity_mbps"])
            r = rtt + data["rtt_ms"]
            bw, br = best.get(v, (-1.0, math.inf))
            if w > bw or (w == bw and r < br):
                best[v], parent[v] = (w, r), u
                heapq.heappush(heap, (-w, r, v))
    return _prune(parent, source, sinks)


def widest_path(net: NetworkState, source: str, sink: str) -> tuple[str, ...]:
    """The max-bottleneck path from source to sink (ties: least RTT)."""
    return tree_path(widest_tree(net, source, [sink]), source, sink)


def _prune(parent: Mapping[str, str], source: str, sinks: Iterable[str]) -> tuple[Edge, ...]:
    edges: set[Edge] = set()
    for t in sinks:
        node = t
        while node != source:
            if node not in parent:
                raise nx.NetworkXNoPath(f"no overlay path from {source} to {t}")
            edges.add((parent[node], node))
            node = parent[node]
    return tuple(sorted(edges))


def tree_path(edges: Iterable[Edge], source: str, sink: str) -> tuple[str, ...]:
    """The hops from source to sink inside a tree given by its edges."""
    parent = {b: a for a, b in edges}
    hops = [sink]
    while hops[-1] != source:
        hops.append(parent[hops[-1]])
    return tuple(reversed(hops))


def tree_delay_ms(net: NetworkState, edges: Iterable[Edge], source: str,
                  sinks: Iterable[str]) -> float:
    """One-way delay to the farthest sink through a tree (half the summed RTT of its path)."""
    edges = tuple(edges)
    worst = 0.0
    for t in sinks:
        if t == source:
            continue
        hops = tree_path(edges, source, t)
        worst = max(worst, sum(net.links[e].rtt_ms for e in zip(hops, hops[1:], strict=False)))
    return worst / 2.0
