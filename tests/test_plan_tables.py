"""Forwarding-table compilation and the validator that tests and the controller share."""

from __future__ import annotations

import pytest

from stemflow.network import LinkState, NetworkState
from stemflow.routing.demand import Demand
from stemflow.routing.plan import (
    LOCAL,
    PathFlow,
    Plan,
    PlanError,
    RelayTable,
    Replicate,
    SessionPlan,
    Split,
    TreeFlow,
    capacity_problems,
    compile_tables,
    table_problems,
    validate_plan,
)
from stemflow.scenario import TcpSettings

DCS = ("a", "b", "c", "d")


def mesh(rtt_ms: float = 10.0, bandwidth_mbps: float = 100.0) -> NetworkState:
    links = {(x, y): LinkState(rtt_ms, bandwidth_mbps) for x in DCS for y in DCS if x != y}
    # A huge window: capacity = bandwidth, so the numbers below are easy to check.
    return NetworkState(DCS, links, {}, {}, TcpSettings(rwnd_bytes=1e12), parallel=1)


def unicast(sid: str = "s", src: str = "a", dst: str = "d") -> Demand:
    return Demand(sid, src, (dst,), "pub", ("sub",))


def test_paths_compile_to_splits_that_follow_the_rates():
    d = unicast()
    sp = SessionPlan("s", 100.0, (PathFlow(("a", "b", "d"), 70.0), PathFlow(("a", "c", "d"), 30.0)))
    tables = compile_tables({"s": sp}, [d])
    assert tables["a"].entries[("s", 0)] == Split((("b", 0.7), ("c", 0.3)))
    assert tables["d"].entries[("s", 0)] == Replicate((LOCAL,))
    assert tables["a"].ingress["s"] == ((0, 1.0),)
    assert table_problems(tables, [d]) == []


def test_crossing_paths_do_not_compile_into_a_loop():
    # b->c on one path and c->b on the other: summing per hop would loop b <-> c.
    d = unicast()
    sp = SessionPlan("s", 20.0, (PathFlow(("a", "b", "c", "d"), 10.0),
                                 PathFlow(("a", "c", "b", "d"), 10.0)))
    tables = compile_tables({"s": sp}, [d])
    assert table_problems(tables, [d]) == []
    b_entry = tables["b"].entries[("s", 0)]
    assert "c" not in b_entry.next_hops or "b" not in tables["c"].entries[("s", 0)].next_hops


def test_trees_compile_to_replicate_with_local_delivery_and_ingress_weights():
    d = Demand("m", "a", ("b", "c", "d"), "pub", ("x", "y", "z"), multicast=True)
    t1 = TreeFlow((("a", "b"), ("b", "c"), ("b", "d")), 30.0)
    t2 = TreeFlow((("a", "c"), ("a", "d"), ("c", "b")), 10.0)
    tables = compile_tables({"m": SessionPlan("m", 40.0, trees=(t1, t2))}, [d])
    assert tables["a"].ingress["m"] == ((1, 0.75), (2, 0.25))
    assert tables["b"].entries[("m", 1)] == Replicate(("c", "d", LOCAL))
    assert tables["c"].entries[("m", 2)] == Replicate(("b", LOCAL))
    assert table_problems(tables, [d]) == []


def test_validator_finds_a_loop():
    d = unicast()
    tables = {
        "a": RelayTable("a", 1, {("s", 0): Split((("b", 1.0),))}, {"s": ((0, 1.0),)}),
        "b": RelayTable("b", 1, {("s", 0): Split((("a", 1.0),))}),
    }
    problems = table_problems(tables, [d])
    assert any("loop a -> b -> a" in p for p in problems)
    assert any("never reached" in p for p in problems)


def test_validator_finds_bad_split_and_dead_end():
    d = unicast()
    tables = {
        "a": RelayTable("a", 1, {("s", 0): Split((("b", 0.6), ("d", 0.6)))}, {"s": ((0, 1.0),)}),
        "d": RelayTable("d", 1, {("s", 0): Replicate((LOCAL,))}),
    }
    problems = table_problems(tables, [d])
    assert any("splits 1.200000" in p for p in problems)
    assert any("relay b is reached but has no entry" in p for p in problems)


def test_validator_finds_an_unreached_subscriber_of_a_tree():
    d = Demand("m", "a", ("b", "c"), "pub", ("x", "y"), multicast=True)
    tables = compile_tables({"m": SessionPlan("m", 5.0, trees=(TreeFlow((("a", "b"),), 5.0),))}, [d])
    assert any("subscribers at c are never reached" in p for p in table_problems(tables, [d]))


def test_capacity_check_flags_overload_and_validate_raises():
    net, d = mesh(bandwidth_mbps=100.0), unicast()
    sp = SessionPlan("s", 150.0, (PathFlow(("a", "d"), 150.0),))
    plan = Plan("t", {"s": sp}, compile_tables({"s": sp}, [d]))
    assert capacity_problems(plan, net) == ["link a->d carries 150.000 Mbit/s over its capacity 100.000"]
    with pytest.raises(PlanError, match="over its capacity"):
        validate_plan(plan, net, [d])
    ok = SessionPlan("s", 100.0, (PathFlow(("a", "d"), 100.0),))
    validate_plan(Plan("t", {"s": ok}, compile_tables({"s": ok}, [d])), net, [d])
