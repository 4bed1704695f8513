"""The rate solver: closed forms, and incremental updates that agree with solving from scratch."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stemflow.sim.fluid import RateSolver


def test_two_flows_share_one_bottleneck_equally():
    s = RateSolver()
    link = s.add_resource(100.0)
    a, b = s.add_flow([link], [1.0], math.inf), s.add_flow([link], [1.0], math.inf)
    s.solve()
    assert s.rate(a) == pytest.approx(50.0) and s.rate(b) == pytest.approx(50.0)


def test_a_capped_flow_leaves_the_rest_to_the_other():
    s = RateSolver()
    link = s.add_resource(100.0)
    a, b = s.add_flow([link], [1.0], math.inf), s.add_flow([link], [1.0], 30.0)
    s.solve()
    assert (s.rate(a), s.rate(b)) == pytest.approx((70.0, 30.0))


def test_a_path_is_limited_by_its_slowest_resource():
    s = RateSolver()
    hops = [s.add_resource(c) for c in (900.0, 300.0, 600.0)]
    f = s.add_flow(hops, [1.0, 1.0, 1.0], math.inf)
    s.solve()
    assert s.rate(f) == pytest.approx(300.0)


def test_split_weights_load_each_branch_by_its_share():
    """A session split 1/4 : 3/4 over two 100 Mbit/s paths is held by the 3/4 branch: 133.3."""
    s = RateSolver()
    left, right = s.add_resource(100.0), s.add_resource(100.0)
    f = s.add_flow([left, right], [0.25, 0.75], math.inf)
    s.solve()
    assert s.rate(f) == pytest.approx(100.0 / 0.75)
    assert s.load(right) == pytest.approx(100.0)


def test_max_min_classic_example():
    """Bertsekas & Gallager's example: a long flow over two links, one short flow on each."""
    s = RateSolver()
    l1, l2 = s.add_resource(1.0), s.add_resource(2.0)
    long_, short1, short2 = (s.add_flow([l1, l2], [1, 1], math.inf), s.add_flow([l1], [1], math.inf),
                             s.add_flow([l2], [1], math.inf))
    s.solve()
    assert (s.rate(long_), s.rate(short1), s.rate(short2)) == pytest.approx((0.5, 0.5, 1.5))


def test_leaving_an_unsaturated_link_is_a_local_update():
    s = RateSolver()
    link = s.add_resource(100.0)
    a = s.add_flow([link], [1.0], 10.0)
    s.solve()
    b = s.add_flow([link], [1.0], 20.0)
    assert s.solve() == {b}
    s.remove_flow(a)
    assert s.solve() == set()
    assert s.full_solves == 0 and s.rate(b) == 20.0


def _rates_from_scratch(capacities, flows):
    fresh = RateSolver()
    rs = [fresh.add_resource(c) for c in capacities]
    ids = [fresh.add_flow([rs[r] for r in res], w, cap) for res, w, cap in flows]
    fresh.solve()
    return [fresh.rate(i) for i in ids]


flow_spec = st.tuples(st.lists(st.integers(0, 5), min_size=1, max_size=3, unique=True),
                      st.floats(0.2, 1.0), st.one_of(st.just(math.inf), st.floats(1.0, 200.0)))


@settings(max_examples=80, deadline=None)
@given(capacities=st.lists(st.sampled_from([50.0, 100.0, 100.0, 300.0]) | st.floats(10.0, 500.0),
                          min_size=6, max_size=6),
       steps=st.lists(st.tuples(st.sampled_from(["add", "remove", "cap", "capacity", "route"]), flow_spec,
                                st.integers(0, 50), st.floats(1.0, 500.0)), min_size=1, max_size=25))
def test_incremental_updates_match_solving_from_scratch(capacities, steps):
    s = RateSolver()
    rs = [s.add_resource(c) for c in capacities]
    caps = list(capacities)
    live: dict[int, tuple[list[int], list[float], float]] = {}
    for op, (res, w, cap), pick, value in steps:
        if op == "add" or not live:
            f = s.add_flow([rs[r] for r in res], [w] * len(res), cap)
            live[f] = (res, [w] * len(res), cap)
        elif op == "remove":
            f = sorted(live)[pick % len(live)]
            s.remove_flow(f)
            del live[f]
        elif op == "route":
            f = sorted(live)[pick % len(live)]
            s.set_route(f, [rs[r] for r in res], [w] * len(res))
            live[f] = (res, [w] * len(res), live[f][2])
        elif op == "cap":
            f = sorted(live)[pick % len(live)]
            s.set_cap(f, value)
            live[f] = (live[f][0], live[f][1], value)
        else:
            r = pick % len(rs)
            s.set_capacity(rs[r], value)
            caps[r] = value
        s.solve()
        expected = _rates_from_scratch(caps, [live[f] for f in sorted(live)])
        got = [s.rate(f) for f in sorted(live)]
        assert got == pytest.approx(expected, rel=1e-6, abs=1e-6)
