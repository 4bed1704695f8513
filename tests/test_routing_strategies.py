"""Routing strategies: optimality against max-flow, capacities, max-min fairness, tree packing
against the network-coding bound, valid tables, and the baselines' contracts."""

from __future__ import annotations

import math

import networkx as nx
import pulp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from routing_nets import demand, mixed_demands, network, networks, unicast_demands

from stemflow.routing import RoutingOptions, make_plan
from stemflow.routing.plan import capacity_problems, table_problems

STRATEGIES = ["direct", "shortest", "widest", "multipath", "multicast"]
EXACT = RoutingOptions(fairness="exact")
PROPERTY = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def max_flow(net, a, b) -> float:
    return nx.maximum_flow_value(net.graph, a, b, capacity="capacity_mbps")


# ---------------------------------------------------------------------------------------------
# Optimality and feasibility on random instances


@PROPERTY
@given(st.data())
def test_single_session_multipath_reaches_max_flow_with_all_simple_paths(data):
    net = data.draw(networks())
    a, b = data.draw(st.lists(st.sampled_from(net.datacenters), min_size=2, max_size=2,
                              unique=True))
    plan = make_plan(net, [demand("s", a, b)], "multipath", EXACT)
    sp = plan.sessions["s"]
    assert sp.rate_mbps == pytest.approx(max_flow(net, a, b), rel=1e-6)
    assert sp.bound_mbps == pytest.approx(max_flow(net, a, b), rel=1e-9)
    assert sum(p.rate_mbps for p in sp.paths) == pytest.approx(sp.rate_mbps, rel=1e-9)


@PROPERTY
@given(st.data(), st.sampled_from(STRATEGIES))
def test_no_plan_puts_a_link_over_capacity_and_tables_validate(data, strategy):
    net = data.draw(networks())
    demands = data.draw(mixed_demands(net))
    plan = make_plan(net, demands, strategy, validate=False)
    assert capacity_problems(plan, net) == []
    assert table_problems(plan.tables, demands) == []
    for d in demands:
        sp = plan.sessions[d.session]
        assert 0 <= sp.rate_mbps <= d.max_rate_mbps * (1 + 1e-9)
        routed = sum(p.rate_mbps for p in sp.paths) + sum(t.rate_mbps for t in sp.trees)
        if not sp.via_internet:
            assert routed == pytest.approx(sp.rate_mbps, rel=1e-6, abs=1e-6)
        if sp.rate_mbps > 0 and not sp.via_internet:
            routes = plan.tables[d.source].ingress[d.session]
            assert sum(w for _, w in routes) == pytest.approx(1.0)


def _gainer(net, demands, plan, paths_of) -> str | None:
    """A session that an independent LP can raise without lowering any session that has no
    more than it (the definition of max-min fairness), or None."""
    rate = {d.session: plan.sessions[d.session].rate_mbps for d in demands}
    for s in demands:
        x_s = rate[s.session]
        if x_s >= s.max_rate_mbps * (1 - 1e-6):
            continue
        prob = pulp.LpProblem("gain", pulp.LpMaximize)
        flow = {(d.session, i): prob.add_variable(f"f_{d.session}_{i}", lowBound=0)
                for d in demands for i in range(len(paths_of[d.session]))}
        total = {d.session: pulp.lpSum(flow[(d.session, i)]
                                       for i in range(len(paths_of[d.session])))
                 for d in demands}
        prob += total[s.session]
        for d in demands:
            if math.isfinite(d.max_rate_mbps):
                prob += total[d.session] <= d.max_rate_mbps
            if d.session != s.session and rate[d.session] <= x_s * (1 + 1e-9):
                prob += total[d.session] >= rate[d.session] * (1 - 1e-7)
        for (a, b) in net.links:
            users = [flow[(d.session, i)] for d in demands
                     for i, p in enumerate(paths_of[d.session]) if (a, b) in zip(p, p[1:], strict=False)]
            if users:
                prob += pulp.lpSum(users) <= net.capacity_mbps(a, b)
        prob.solve(pulp.HiGHS(msg=False))
        if pulp.value(prob.objective) > x_s * (1 + 1e-5) + 1e-6:
            return s.session
    return None


@PROPERTY
@given(st.data())
def test_multipath_is_max_min_fair(data):
    net = data.draw(networks(max_n=5))
    demands = data.draw(unicast_demands(net, max_sessions=4))
    plan = make_plan(net, demands, "multipath", EXACT)
    paths_of = {d.session: list(nx.all_simple_paths(net.graph, d.source, d.sinks[0]))
                for d in demands}
    assert _gainer(net, demands, plan, paths_of) is None


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_multipath_is_max_min_fair_over_many_levels(data):
    # Enough sessions for several fair levels, so routes fixed at 0 after one level (their
    # reduced cost says no later level can use them) must not be needed by a later one.
    net = data.draw(networks(min_n=4, max_n=6))
    demands = data.draw(unicast_demands(net, max_sessions=12))
    plan = make_plan(net, demands, "multipath", EXACT)
    paths_of = {d.session: list(nx.all_simple_paths(net.graph, d.source, d.sinks[0]))
                for d in demands}
    assert _gainer(net, demands, plan, paths_of) is None


def test_the_fairness_check_can_fail():
    # Two sessions on one 100 Mbit/s link: 30/70 is feasible but not max-min fair.
    net = network({("a", "b"): (10, 100)})
    demands = [demand("s0", "a", "b"), demand("s1", "a", "b")]
    plan = make_plan(net, demands, "multipath")
    assert [plan.sessions[s].rate_mbps for s in ("s0", "s1")] == pytest.approx([50, 50])
    from dataclasses import replace
    skewed = replace(plan, sessions={"s0": replace(plan.sessions["s0"], rate_mbps=30.0),
                                     "s1": replace(plan.sessions["s1"], rate_mbps=70.0)})
    assert _gainer(net, demands, skewed, {"s0": [["a", "b"]], "s1": [["a", "b"]]}) == "s0"


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_cbc_and_highs_agree(data):
    net = data.draw(networks(max_n=5))
    demands = data.draw(mixed_demands(net, max_sessions=3))
    rates = {}
    for solver in ("highs", "cbc"):
        plan = make_plan(net, demands, "multipath", RoutingOptions(solver=solver))
        assert plan.stats.solver == solver
        rates[solver] = [plan.sessions[d.session].rate_mbps for d in demands]
    assert rates["cbc"] == pytest.approx(rates["highs"], rel=1e-5, abs=1e-4)


@PROPERTY
@given(st.data())
def test_truncated_filling_keeps_the_floor_and_carries_at_least_as_much(data):
    net = data.draw(networks(max_n=5))
    demands = data.draw(unicast_demands(net, max_sessions=5))
    exact = make_plan(net, demands, "multipath")
    fast = make_plan(net, demands, "multipath", RoutingOptions(fair_levels=1))
    low = min(sp.rate_mbps for sp in exact.sessions.values())
    assert min(sp.rate_mbps for sp in fast.sessions.values()) == pytest.approx(low, rel=1e-5)
    total = sum(sp.rate_mbps for sp in exact.sessions.values())
    assert sum(sp.rate_mbps for sp in fast.sessions.values()) >= total * (1 - 2e-4)


# ---------------------------------------------------------------------------------------------
# Multicast: tree packing against the network-coding bound


@PROPERTY
@given(st.data())
def test_tree_packing_never_exceeds_the_network_coding_bound(data):
    net = data.draw(networks())
    src = data.draw(st.sampled_from(net.datacenters))
    others = [d for d in net.datacenters if d != src]
    sinks = data.draw(st.lists(st.sampled_from(others), min_size=2, max_size=len(others),
                               unique=True))
    plan = make_plan(net, [demand("m", src, sinks)], "multicast")
    sp = plan.sessions["m"]
    bound = min(max_flow(net, src, t) for t in sinks)
    assert sp.bound_mbps == pytest.approx(bound)
    assert sp.rate_mbps <= bound * (1 + 1e-6)
    assert sp.rate_mbps > 0


@PROPERTY
@given(st.data())
def test_broadcast_tree_packing_reaches_the_bound(data):
    # Every datacenter a sink: by Edmonds' branching theorem, spanning arborescences pack up to
    # the min over sinks of the max-flow, and pricing them is exact (min-cost arborescence).
    net = data.draw(networks(max_n=5))
    src = data.draw(st.sampled_from(net.datacenters))
    sinks = [d for d in net.datacenters if d != src]
    sp = make_plan(net, [demand("m", src, sinks)], "multicast").sessions["m"]
    assert sp.rate_mbps == pytest.approx(sp.bound_mbps, rel=1e-6)


def test_butterfly_shows_the_coding_gap():
    # Ahlswede et al.'s butterfly: coding delivers 2 units to both sinks, trees only 1.5.
    unit = 100.0
    edges = [("s", "a"), ("s", "b"), ("a", "t1"), ("b", "t2"), ("a", "c"), ("b", "c"),
             ("c", "d"), ("d", "t1"), ("d", "t2")]
    links = {e: (10.0, unit) for e in edges}
    links.update({(b, a): (10.0, 1e-3) for a, b in edges})  # reverse hops exist, nearly empty
    net = network(links)
    sp = make_plan(net, [demand("m", "s", ["t1", "t2"])], "multicast").sessions["m"]
    assert sp.bound_mbps == pytest.approx(2 * unit, rel=1e-4)
    assert sp.rate_mbps == pytest.approx(1.5 * unit, rel=1e-3)
    assert len(sp.trees) >= 2


def test_multicast_packs_more_than_one_tree_on_the_fig1_shape():
    # A source with two disjoint ways to each of two sinks: one tree gets 100, two get 200.
    net = network({("s", "x"): (10, 100), ("s", "y"): (10, 100), ("x", "t1"): (10, 100),
                   ("x", "t2"): (10, 100), ("y", "t1"): (10, 100), ("y", "t2"): (10, 100),
                   ("t1", "s"): (10, 100), ("t2", "s"): (10, 100)})
    d = [demand("m", "s", ["t1", "t2"])]
    assert make_plan(net, d, "shortest").sessions["m"].rate_mbps == pytest.approx(100)
    sp = make_plan(net, d, "multicast").sessions["m"]
    assert sp.rate_mbps == pytest.approx(200)
    assert len(sp.trees) == 2


# ---------------------------------------------------------------------------------------------
# Classes, budgets and the baselines


def triangle():
    # a->b direct: fast (20 ms) but narrow (100); via c: slow (2 x 100 ms) but wide (400).
    return network({("a", "b"): (20, 100), ("a", "c"): (100, 400), ("c", "b"): (100, 400),
                    ("b", "a"): (20, 100), ("c", "a"): (100, 400), ("b", "c"): (100, 400)})


def test_latency_budget_excludes_slow_paths():
    net = triangle()
    free = make_plan(net, [demand("s", "a", "b")], "multipath").sessions["s"]
    assert free.rate_mbps == pytest.approx(500)
    tight = make_plan(net, [demand("s", "a", "b", budget_ms=50)], "multipath").sessions["s"]
    assert tight.rate_mbps == pytest.approx(100)
    assert [p.hops for p in tight.paths] == [("a", "b")]


def test_delay_sensitive_sessions_are_placed_first_and_on_fast_paths():
    net = triangle()
    demands = [demand("bulk", "a", "b"), demand("live", "a", "b", cap=80, delay_sensitive=True)]
    plan = make_plan(net, demands, "multipath")
    live, bulk = plan.sessions["live"], plan.sessions["bulk"]
    assert live.rate_mbps == pytest.approx(80)
    assert [p.hops for p in live.paths] == [("a", "b")]  # the fast path, bulk takes the rest
    assert bulk.rate_mbps == pytest.approx(420)


def test_direct_uses_only_the_internet_path():
    net = triangle()
    demands = [demand("u", "a", "b"), demand("m", "a", ["b", "c"])]
    plan = make_plan(net, demands, "direct")
    assert plan.tables == {}
    assert plan.link_load() == {}
    for d in demands:
        sp = plan.sessions[d.session]
        assert sp.via_internet and not sp.paths and not sp.trees
        expected = min(net.direct_rate(d.publisher, s).rate_mbps for s in d.subscribers)
        assert sp.rate_mbps == pytest.approx(expected)


def test_shortest_and_widest_pick_their_paths_and_share_links_fairly():
    net = triangle()
    one = [demand("s", "a", "b")]
    assert make_plan(net, one, "shortest").sessions["s"].paths[0].hops == ("a", "b")
    assert make_plan(net, one, "widest").sessions["s"].paths[0].hops == ("a", "c", "b")
    two = [demand("s0", "a", "b"), demand("s1", "a", "b", cap=150), demand("s2", "c", "b")]
    plan = make_plan(net, two, "widest")
    rates = [plan.sessions[s].rate_mbps for s in ("s0", "s1", "s2")]
    # All three cross c->b (400): a fair third each, under s1's cap of 150.
    assert rates == pytest.approx([400 / 3] * 3)


def test_a_session_whose_sinks_share_its_datacenter_is_delivered_locally():
    net = triangle()
    d = [demand("m", "a", ["a", "b"]), demand("u", "a", "a", cap=50)]
    plan = make_plan(net, d, "multipath")
    assert plan.sessions["u"].rate_mbps == pytest.approx(50)
    assert plan.sessions["m"].rate_mbps > 0


def test_truncated_filling_still_gives_delay_sensitive_sessions_the_fast_route():
    net = triangle()
    demands = [demand("bulk", "a", "b"), demand("live", "a", "b", cap=80, delay_sensitive=True)]
    plan = make_plan(net, demands, "multipath", RoutingOptions(fair_levels=1))
    assert [p.hops for p in plan.sessions["live"].paths] == [("a", "b")]
    assert plan.sessions["bulk"].rate_mbps == pytest.approx(420, rel=1e-4)
