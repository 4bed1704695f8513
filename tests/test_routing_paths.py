"""Candidate paths: exact enumeration against brute force, ranking, caching, trees."""

from __future__ import annotations

import itertools
import random

import networkx as nx
import pytest
from routing_nets import network

from stemflow.network import LinkState
from stemflow.routing.paths import (
    candidate_paths,
    path_index,
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


def brute_two_relay(net, s, t):
    idx = path_index(net)
    return [idx.path((s, u, v, t)) for u, v in itertools.permutations(net.datacenters, 2)
            if s not in (u, v) and t not in (u, v)]


@pytest.mark.parametrize("n", [4, 7])
def test_full_mesh_gives_direct_every_one_relay_and_the_k_best_two_relay_paths(n):
    net = mesh(n)
    s, t = "d0", "d1"
    k = 5
    paths = candidate_paths(net, s, t, k_paths=k, rank="rtt")
    hops = [p.hops for p in paths]
    assert (s, t) in hops
    assert sorted(h for h in hops if len(h) == 3) == sorted(
        (s, v, t) for v in net.datacenters if v not in (s, t))
    two = [p for p in paths if len(p.hops) == 4]
    brute = sorted(brute_two_relay(net, s, t), key=lambda p: p.rtt_ms)
    assert len(two) == min(k, len(brute))
    assert sorted(p.rtt_ms for p in two) == pytest.approx([p.rtt_ms for p in brute[:len(two)]])
    assert len(set(hops)) == len(hops)
    assert [p.rtt_ms for p in paths] == sorted(p.rtt_ms for p in paths)


def test_bottleneck_ranking_keeps_the_widest_two_relay_paths():
    net = mesh(7)
    two = [p for p in candidate_paths(net, "d2", "d5", k_paths=4, rank="bottleneck")
           if len(p.hops) == 4]
    widest = sorted((p.bottleneck_mbps for p in brute_two_relay(net, "d2", "d5")), reverse=True)
    assert sorted((p.bottleneck_mbps for p in two), reverse=True) == widest[:4]


def test_path_metrics_are_sums_and_minimums():
    net = mesh(5)
    p = path_index(net).path(("d0", "d3", "d1"))
    links = [net.links[("d0", "d3")], net.links[("d3", "d1")]]
    assert p.rtt_ms == sum(x.rtt_ms for x in links)
    assert p.bottleneck_mbps == min(net.capacity_mbps("d0", "d3"), net.capacity_mbps("d3", "d1"))
    assert p.delay_ms == p.rtt_ms / 2


def test_all_simple_paths_match_networkx_on_a_sparse_graph():
    net = network({("a", "b"): (10, 100), ("b", "c"): (10, 100), ("a", "c"): (30, 100),
                   ("c", "d"): (10, 100), ("b", "d"): (50, 100), ("d", "a"): (5, 100)})
    ours = {p.hops for p in candidate_paths(net, "a", "d", all_simple=True)}
    theirs = {tuple(p) for p in nx.all_simple_paths(net.graph, "a", "d")}
    assert ours == theirs
    # missing links are skipped, not invented
    assert {p.hops for p in candidate_paths(net, "a", "d")} <= theirs


def test_paths_are_cached_per_snapshot():
    net = mesh(6)
    first = candidate_paths(net, "d0", "d4")
    assert candidate_paths(net, "d0", "d4") is first
    assert path_index(net) is path_index(net)
    slower = net.with_links({("d0", "d4"): LinkState(999.0, 100.0)})
    assert path_index(slower) is not path_index(net)
    assert candidate_paths(slower, "d0", "d4")[-1].hops == ("d0", "d4")


def test_max_relays_limits_the_candidates():
    net = mesh(6)
    assert [p.hops for p in candidate_paths(net, "d0", "d1", max_relays=0)] == [("d0", "d1")]
    assert {len(p.hops) for p in candidate_paths(net, "d0", "d1", max_relays=1)} == {2, 3}
    deep = candidate_paths(net, "d0", "d1", max_relays=3, k_paths=0)
    assert max(len(p.hops) for p in deep) == 5


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
