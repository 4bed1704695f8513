"""The approximate configuration: water-filling over fixed splits, and `auto` choosing it."""

from __future__ import annotations

import math
import random

import networkx as nx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from routing_nets import demand, mixed_demands, network, networks
from scipy.sparse import csr_matrix

from stemflow.routing import RoutingOptions, make_plan
from stemflow.routing.approx import split_water_fill
from stemflow.routing.fairshare import water_fill
from stemflow.routing.plan import _find_cycle
from stemflow.routing.registry import AUTO_FAST_UP_TO, AUTO_HYSTERESIS


def _usage(routes: list[list[int]], sizes: list[int], n_links: int) -> csr_matrix:
    rows = [k for k, r in enumerate(routes) for _ in r]
    cols = [e for r in routes for e in r]
    vals = [float(sizes[k]) for k, r in enumerate(routes) for _ in r]
    return csr_matrix((vals, (rows, cols)), shape=(len(routes), n_links))


def test_one_route_each_is_classic_water_filling():
    rng = random.Random(7)
    for _ in range(200):
        n_links, n = rng.randint(1, 6), rng.randint(1, 8)
        routes = [rng.sample(range(n_links), rng.randint(1, n_links)) for _ in range(n)]
        caps = [rng.choice([math.inf, 30.0, 80.0]) for _ in range(n)]
        capacity = [float(rng.choice([50, 100, 200])) for _ in range(n_links)]
        flow, rate = split_water_fill(_usage(routes, [1] * n, n_links), np.arange(n),
                                      np.ones(n), np.minimum(caps, 1e6), np.array(capacity),
                                      np.zeros(n, dtype=int))
        links = [(str(e), str(e + 1)) for e in range(n_links)]
        want = water_fill([tuple(links[e] for e in r) for r in routes], caps,
                          dict(zip(links, capacity, strict=True)))
        assert rate == pytest.approx(want, rel=1e-9)
        assert flow == pytest.approx(want, rel=1e-9)


def test_a_split_moves_to_its_open_route_when_the_other_fills():
    # A: 2 sessions split evenly over links 0 and 1; B: 1 session on link 0. Link 0 (60) fills
    # at rate 30 (A's 2 x 30 put 30 on each link, B 30); A's sessions then grow on link 1 alone,
    # whose 70 Mbit/s left give each of them 35 more.
    usage = _usage([[0], [1], [0]], [2, 2, 1], 2)
    flow, rate = split_water_fill(usage, np.array([0, 0, 1]), np.array([0.5, 0.5, 1.0]),
                                  np.array([1e6, 1e6]), np.array([60.0, 100.0]),
                                  np.array([0, 0]))
    assert rate == pytest.approx([65.0, 30.0])
    assert flow == pytest.approx([30.0, 100.0, 30.0])


def test_classes_fill_in_rank_order():
    usage = _usage([[0], [0]], [1, 1], 1)
    _, rate = split_water_fill(usage, np.array([0, 1]), np.ones(2), np.array([1e6, 1e6]),
                               np.array([100.0]), np.array([1, 0]))
    assert rate == pytest.approx([0.0, 100.0])


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_approx_plans_are_valid_and_never_above_the_exact_minimum(data):
    net = data.draw(networks(min_n=3, max_n=6))
    demands = data.draw(mixed_demands(net, max_sessions=6))
    approx = make_plan(net, demands, "multipath", RoutingOptions(fairness="approx"))  # validates
    exact = make_plan(net, demands, "multipath", RoutingOptions(fairness="exact"))
    assert approx.stats.config == "approx"
    if any(d.delay_sensitive for d in demands):
        return  # classes in order: the minimum over all of them compares nothing
    # One class: fixed splits restrict the exact problem, so its minimum bounds this one; and
    # every session rises from 0 with the rest until its split is blocked.
    low = min(p.rate_mbps for p in approx.sessions.values())
    assert low <= min(p.rate_mbps for p in exact.sessions.values()) * (1 + 1e-6) + 1e-6
    assert all(p.rate_mbps > 0 for p in approx.sessions.values())


def test_approx_honours_a_latency_budget_where_a_path_meets_it():
    net = network({("a", "b"): (10.0, 100.0), ("b", "c"): (10.0, 100.0),
                   ("a", "c"): (50.0, 100.0)}, symmetric=True)
    plan = make_plan(net, [demand("s", "a", "c", budget_ms=15.0)], "multipath",
                     RoutingOptions(fairness="approx"))
    assert all(p.hops == ("a", "b", "c") for p in plan.sessions["s"].paths)
    assert not plan.notes


def test_auto_turns_to_approx_above_the_fast_threshold_with_hysteresis():
    links = 1000
    at = AUTO_FAST_UP_TO // links
    auto = RoutingOptions()
    assert auto.configured(at + 1, links)[1].startswith("approx")
    assert auto.configured(at - 1, links)[1].startswith("fast")
    assert auto.configured(at + 1, links, previous="fast")[1].startswith("fast")
    assert auto.configured(int(at * (1 + AUTO_HYSTERESIS)) + 1, links,
                           previous="fast")[1].startswith("approx")
    assert auto.configured(at - 1, links, previous="approx")[1].startswith("approx")
    assert auto.configured(int(at * (1 - AUTO_HYSTERESIS)) - 1, links,
                           previous="approx")[1].startswith("fast")


def test_find_cycle_agrees_with_networkx():
    rng = random.Random(3)
    for _ in range(2000):
        n = rng.randint(2, 7)
        edges = sorted({(str(rng.randrange(n)), str(rng.randrange(n)))
                        for _ in range(rng.randint(1, 12))})
        edges = [e for e in edges if e[0] != e[1]]
        try:
            nx.find_cycle(nx.DiGraph(edges))
            has = True
        except nx.NetworkXNoCycle:
            has = False
        cycle = _find_cycle(edges)
        assert (cycle is not None) == has
        if cycle:
            assert all(e in edges for e in cycle)
            assert all(a[1] == b[0] for a, b in zip(cycle, cycle[1:] + cycle[:1], strict=True))
