"""Trees from a source: they reach every sink and respect their metric."""

from __future__ import annotations

import random

import networkx as nx
import pytest
from routing_nets import network

from stemflow.routing.paths import (
    shortest_path_tree,
    tree_delay_ms,
    widest_path,
    widest_tree,
)


def mesh(n: int, seed: int = 3):
    rng = random.Random(seed)
    names = [f"d{i}" for i in range(n)]
    return network({(a, b): (float(rng.randint(5, 200)), float(rng.choice([100, 200, 500, 900])))
                    for a in names for b in names if a != b})


def test_trees_reach_every_sink_and_respect_their_metric():
    net = mesh(6)
    sinks = ["d1", "d3", "d5"]
    spt = shortest_path_tree(net, "d0", sinks)
    wide = widest_tree(net, "d0", sinks)
    for tree in (spt, wide):
        g = nx.DiGraph(list(tree))
        assert all(nx.has_path(g, "d0", t) for t in sinks)
        assert all(g.in_degree(v) == 1 for v in g if v != "d0")  # an arborescence
    dist = nx.single_source_dijkstra_path_length(net.graph, "d0", weight="rtt_ms")
    assert tree_delay_ms(net, spt, "d0", sinks) == pytest.approx(max(dist[t] for t in sinks) / 2)
    best = max(min(net.capacity_mbps(a, b) for a, b in zip(p, p[1:], strict=False))
               for p in nx.all_simple_paths(net.graph, "d0", "d3"))
    hops = widest_path(net, "d0", "d3")
    assert min(net.capacity_mbps(a, b) for a, b in zip(hops, hops[1:], strict=False)) == best
