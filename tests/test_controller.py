"""The sans-IO controller: events in, versioned tables out; the same object sim and relays drive."""

from __future__ import annotations

import networkx as nx
import pytest

from stemflow.controller import (
    Controller,
    Heartbeat,
    Interest,
    LinkReport,
    PlanComputed,
    PlanFailed,
    Problem,
    PushTable,
    RelayDead,
    RelayJoined,
    Report,
    Tick,
    interests_of,
    withdrawn,
)
from stemflow.network import LinkState, NetworkState
from stemflow.routing import RoutingOptions, register
from stemflow.routing.demand import Demand
from stemflow.routing.plan import PathFlow, Plan, SessionPlan, compile_tables, table_problems
from stemflow.scenario import Priority, TcpSettings


@register("test-min-rtt")
def min_rtt(net: NetworkState, demands, options: RoutingOptions) -> Plan:
    """One min-RTT path per session at 1 Mbit/s: enough to see where traffic goes."""
    sessions = {}
    for d in demands:
        hops = tuple(nx.shortest_path(net.graph, d.source, d.sinks[0], weight="rtt_ms"))
        sessions[d.session] = SessionPlan(d.session, 1.0, (PathFlow(hops, 1.0),))
    return Plan("test-min-rtt", sessions, compile_tables(sessions, demands))


# a -- 100 ms -- c directly, or a -- 10 -- b -- 10 -- c through relay b.
LINKS = {("a", "c"): 100.0, ("a", "b"): 10.0, ("b", "c"): 10.0}


def network() -> NetworkState:
    links = {}
    for (x, y), rtt in LINKS.items():
        links[(x, y)] = links[(y, x)] = LinkState(rtt, 1000.0)
    return NetworkState(("a", "b", "c"), links, {}, {}, TcpSettings(), parallel=4)


def started(**kw) -> Controller:
    c = Controller(network(), strategy="test-min-rtt", **kw)
    for r in ("a", "b", "c"):
        c.handle(Heartbeat(r), 0.0)  # unknown relays' heartbeats are ignored
        c.handle(RelayJoined(r, f"{r}:1"), 0.0)
    return c


def opened(c: Controller, d: Demand, now: float) -> list:
    """Open a session the way relays tell of it: each relay's interest, at once."""
    return c.handle_all(interests_of(d), now)


def tables(actions) -> dict:
    return {a.relay: a.table for a in actions if isinstance(a, PushTable)}


def test_session_open_pushes_valid_versioned_tables_to_every_live_relay():
    c = started()
    d = Demand("s", "a", ("c",), "p", ("q",))
    actions = opened(c, d, 0.5)
    assert isinstance(actions[0], PlanComputed) and actions[0].reason == "interest in s changed"
    pushed = tables(actions)
    assert set(pushed) == {"a", "b", "c"}
    assert {t.version for t in pushed.values()} == {c.version}
    assert table_problems(pushed, [d]) == []
    assert c.plan.sessions["s"].paths[0].hops == ("a", "b", "c")


def test_small_measurement_changes_do_not_replan_and_big_ones_wait_for_the_interval():
    c = started(min_replan_interval_s=1.0)
    opened(c, Demand("s", "a", ("c",), "p", ("q",)), 0.0)
    v = c.version
    assert c.handle(LinkReport("a", "b", rtt_ms=11.0), 0.1) == []  # +10%: noise
    assert c.handle(LinkReport("b", "c", rtt_ms=500.0), 0.2) == []  # big, but too soon
    later = c.handle(Tick(), 1.1)
    assert c.version == v + 1 and later[0].reason == "link b->c changed"
    assert c.plan.sessions["s"].paths[0].hops == ("a", "c")


def test_a_silent_relay_is_declared_dead_and_routed_around():
    c = started(heartbeat_timeout_s=2.0)
    opened(c, Demand("s", "a", ("c",), "p", ("q",)), 0.0)
    for t in (1.0, 2.0):
        c.handle(Heartbeat("a"), t)
        c.handle(Heartbeat("c"), t)
    actions = c.handle(Tick(), 2.5)
    assert RelayDead("b") in actions
    assert c.plan.sessions["s"].paths[0].hops == ("a", "c")
    assert "b" not in tables(actions)


def test_relays_keep_no_stale_entries_after_a_session_closes():
    c = started()
    d = Demand("s", "a", ("c",), "p", ("q",))
    opened(c, d, 0.0)
    pushed = tables(c.handle_all(withdrawn(d), 0.1))
    assert all(not t.entries and not t.ingress for t in pushed.values())


def test_interest_from_relays_becomes_a_multicast_session():
    c = started()
    c.handle(Interest("a", "video", publishers=1, subscribers=0,
                      priority=Priority.DELAY_SENSITIVE), 0.0)
    assert "video" not in c.sessions  # no subscriber yet
    c.handle(Interest("b", "video", publishers=0, subscribers=2), 0.0)
    c.handle(Interest("c", "video", publishers=0, subscribers=1), 0.0)
    d = c.sessions["video"]
    assert (d.source, d.sinks, d.multicast, d.delay_sensitive) == ("a", ("b", "c"), True, True)
    c.handle(Interest("b", "video", publishers=0, subscribers=0), 0.0)
    assert c.sessions["video"].sinks == ("c",)


@pytest.mark.parametrize("strategy", ["no-such-strategy"])
def test_unknown_strategy_fails_loudly_when_planning(strategy):
    c = Controller(network(), strategy=strategy)
    for r in ("a", "b", "c"):
        c.handle(RelayJoined(r), 0.0)
    (failed,) = opened(c, Demand("s", "a", ("c",), "p", ("q",)), 0.0)
    assert isinstance(failed, PlanFailed) and "unknown strategy" in failed.error


def test_status_is_json_ready():
    import json

    c = started()
    opened(c, Demand("s", "a", ("c",), "p", ("q",)), 0.0)
    st = json.loads(json.dumps(c.status()))
    assert st["plan"]["paths"]["s"][0]["hops"] == ["a", "b", "c"]
    assert {ln["src"] for ln in st["links"]} == {"a", "b", "c"}


def test_queueing_under_load_does_not_move_routes_but_a_lasting_change_does():
    c = started(min_replan_interval_s=0.0, rtt_filter_s=10.0, heartbeat_timeout_s=1e9)
    opened(c, Demand("s", "a", ("c",), "p", ("q",)), 0.0)
    c.handle(LinkReport("a", "b", rtt_ms=10.0), 0.5)
    v = c.version
    # our own traffic queues on a->b: the measured RTT triples for a few seconds
    for t in (1.0, 2.0, 3.0, 4.0):
        assert c.handle(LinkReport("a", "b", rtt_ms=300.0), t) == []
    assert c.version == v and c.plan.sessions["s"].paths[0].hops == ("a", "b", "c")
    # the underlay itself got slower: every sample for 10 s says so, and the route moves
    for t in range(5, 13):
        c.handle(LinkReport("a", "b", rtt_ms=300.0), float(t))
    assert c.plan.sessions["s"].paths[0].hops == ("a", "c")


FAILS_LEFT = [1]


@register("test-fails-once")
def fails_once(net: NetworkState, demands, options: RoutingOptions) -> Plan:
    if FAILS_LEFT[0]:
        FAILS_LEFT[0] -= 1
        raise RuntimeError("solver crashed")
    return min_rtt(net, demands, options)


def test_a_failed_plan_is_retried_on_the_next_event():
    c = Controller(network(), strategy="test-fails-once", heartbeat_timeout_s=1e9)
    for r in ("a", "b", "c"):
        c.handle(RelayJoined(r), 0.0)
    (failed,) = opened(c, Demand("s", "a", ("c",), "p", ("q",)), 0.1)
    assert isinstance(failed, PlanFailed) and "solver crashed" in failed.error
    assert c.plan.sessions == {}
    assert c.handle(Tick(), 0.2) == []  # retries wait for the re-plan interval: no tight loop
    actions = c.handle(Tick(), 1.2)
    assert actions and actions[0].reason.startswith("retry after a failed plan")
    assert c.plan.sessions["s"].paths[0].hops == ("a", "b", "c")


def test_a_relay_of_an_unconfigured_datacenter_becomes_part_of_the_overlay():
    c = Controller(NetworkState((), {}, {}, {}, TcpSettings()), strategy="test-min-rtt",
                   heartbeat_timeout_s=1e9)
    c.handle(RelayJoined("x", "x:1"), 0.0)
    c.handle(RelayJoined("y", "y:1"), 0.0)
    c.handle(LinkReport("x", "y", rtt_ms=20.0), 0.0)
    opened(c, Demand("s", "x", ("y",), "p", ("q",)), 0.0)
    assert c.net.datacenters == ("x", "y")
    assert c.plan.sessions["s"].paths[0].hops == ("x", "y")


def test_a_topic_published_at_several_relays_is_one_session_per_ingress_relay():
    c = started()
    c.handle(Interest("a", "chat", publishers=1, subscribers=1), 0.0)
    assert "chat" not in c.sessions  # its own subscribers are the ingress relay's business
    c.handle(Interest("a", "chat", publishers=1, subscribers=0), 0.0)
    c.handle(Interest("b", "chat", publishers=2, subscribers=0), 0.0)
    actions = c.handle(Interest("c", "chat", publishers=0, subscribers=1), 0.0)
    assert {n: (d.source, d.sinks, d.wire_topic) for n, d in c.sessions.items()} == {
        "chat@a": ("a", ("c",), "chat"), "chat@b": ("b", ("c",), "chat")}
    pushed = tables(actions)
    assert table_problems(pushed, list(c.sessions.values())) == []
    # both ingress relays' routes travel under the topic, with ids of their own
    ids = {r for t in pushed.values() for (topic, r) in t.entries if topic == "chat"}
    assert pushed["a"].ingress["chat"][0][0] != pushed["b"].ingress["chat"][0][0]
    assert ids == {pushed[x].ingress["chat"][0][0] for x in ("a", "b")}
    c.handle(Interest("a", "chat", publishers=0, subscribers=0), 0.0)
    assert set(c.sessions) == {"chat"}  # one publishing relay again: named after the topic


def test_a_route_keeps_its_id_until_it_changes_and_a_new_route_gets_a_fresh_one():
    c = started(min_replan_interval_s=0.0)
    opened(c, Demand("s", "a", ("c",), "p", ("q",)), 0.0)
    first = c.plan.tables["a"].ingress["s"][0][0]
    c.handle(LinkReport("a", "b", rtt_ms=10.5), 0.1)
    opened(c, Demand("t", "b", ("c",), "p", ("q",)), 0.2)  # a re-plan
    assert c.plan.tables["a"].ingress["s"][0][0] == first  # same route, same id
    c.handle(LinkReport("b", "c", rtt_ms=500.0), 0.3)  # s moves to a -> c
    assert c.plan.sessions["s"].paths[0].hops == ("a", "c")
    moved = c.plan.tables["a"].ingress["s"][0][0]
    assert moved != first
    assert ("s", first) not in c.plan.tables["a"].entries  # dropped: relays keep it a while


def test_the_controller_process_takes_the_scenarios_routing_settings(tmp_path):
    from stemflow.controller_server import make_controller, parse_args

    path = tmp_path / "s.yaml"
    path.write_text("name: two\ndatacenters: [{name: a}, {name: b}]\n"
                    "links: [{a: a, b: b, rtt_ms: 10, bandwidth_mbps: 100}]\n"
                    "clients: []\nsessions: []\nrouting: {fairness: exact}\n")
    ctl = make_controller(parse_args(["--listen", "127.0.0.1:0", "--scenario", str(path)]))
    assert ctl.options.fairness == "exact"
    assert make_controller(parse_args(["--listen", "127.0.0.1:0"])).options.fairness == "auto"


def test_a_failed_plan_does_not_discard_the_relays_declared_dead_with_it():
    FAILS_LEFT[0] = 0
    c = Controller(network(), strategy="test-fails-once", heartbeat_timeout_s=1.0)
    for r in ("a", "b", "c"):
        c.handle(RelayJoined(r), 0.0)
    opened(c, Demand("s", "a", ("c",), "p", ("q",)), 0.0)
    c.handle_all([Heartbeat("a"), Heartbeat("c")], 1.0)
    FAILS_LEFT[0] = 1
    actions = c.handle(Tick(), 1.5)
    assert [type(a) for a in actions] == [RelayDead, PlanFailed]
    assert actions[0].relay == "b"


@register("test-zero-for-bulk")
def zero_for_bulk(net: NetworkState, demands, options: RoutingOptions) -> Plan:
    """What a max-min strategy does when a first-placed session took the links: bulk gets 0."""
    plan = min_rtt(net, [d for d in demands if d.delay_sensitive], options)
    zero = {d.session: SessionPlan(d.session, 0.0) for d in demands if not d.delay_sensitive}
    return Plan("test-zero-for-bulk", {**plan.sessions, **zero}, {})


def test_a_session_left_at_rate_zero_still_gets_a_best_effort_route():
    c = Controller(network(), strategy="test-zero-for-bulk", heartbeat_timeout_s=1e9)
    for r in ("a", "b", "c"):
        c.handle(RelayJoined(r), 0.0)
    live = Demand("live", "a", ("c",), "p", ("q",), priority=Priority.DELAY_SENSITIVE)
    bulk = Demand("bulk", "a", ("c",), "p", ("q",))
    pushed = tables(c.handle_all(interests_of(live) + interests_of(bulk), 0.0))
    assert c.plan.sessions["bulk"].rate_mbps == 0.0  # the plan stays honest about its share
    assert [w for _, w in pushed["a"].ingress["bulk"]] == [1.0]  # but frames have a way
    assert table_problems(pushed, [live, bulk]) == []


def test_a_delay_sensitive_session_without_a_stated_rate_gets_the_default_cap():
    from stemflow.controller import DEFAULT_DELAY_SENSITIVE_RATE_MBPS

    c = started()
    c.handle(Interest("a", "v", 1, 0, Priority.DELAY_SENSITIVE), 0.0)
    c.handle(Interest("c", "v", 0, 1), 0.0)
    assert c.sessions["v"].max_rate_mbps == DEFAULT_DELAY_SENSITIVE_RATE_MBPS
    c.handle(Interest("a", "v", 1, 0, Priority.DELAY_SENSITIVE, max_rate_mbps=80.0,
                      latency_budget_ms=150.0), 0.1)
    d = c.sessions["v"]
    assert (d.max_rate_mbps, d.latency_budget_ms) == (80.0, 150.0)
    c.handle(Interest("a", "b", 1, 0), 0.2)
    c.handle(Interest("c", "b", 0, 1), 0.2)
    assert c.sessions["b"].max_rate_mbps == float("inf")  # bulk: no cap


def test_a_topic_nobody_else_subscribes_to_is_marked_unrouted_at_its_publisher():
    c = started()
    actions = c.handle(Interest("a", "lonely", publishers=1, subscribers=1), 0.0)
    assert tables(actions)["a"].ingress["lonely"] == ()


def test_reports_are_parsed_here_and_malformed_items_are_problems_not_exceptions():
    c = started(heartbeat_timeout_s=1e9)
    body = {"links": [{"peer": "b", "rtt_ms": 12.0, "min_rtt_ms": 11.0, "loss": 0.0},
                      {"peer": "c", "rtt_ms": -1.0}, {"rtt_ms": 3}, "junk"],
            "interest": [{"topic": "t", "publishers": 1, "subscribers": 0, "max_rate_mbps": 5},
                         {"topic": "x", "publishers": "many", "subscribers": 0},
                         {"topic": "y", "publishers": 1, "subscribers": 0, "priority": "urgent"},
                         [1, 2]]}
    actions = c.handle(Report("a", body), 1.0)
    problems = [a.message for a in actions if isinstance(a, Problem)]
    assert len(problems) == 6, problems
    assert any("-1.0 is out of range" in p for p in problems), problems
    assert c.net.links[("a", "b")].rtt_ms == 11.0  # the kernel's minimum RTT wins
    assert c.net.links[("a", "c")].rtt_ms == 100.0  # a negative RTT is refused: the link keeps its own
    assert c.interest["t"]["a"].max_rate_mbps == 5.0
    c.handle(Report("a", {"interest": []}), 1.1)
    assert "t" not in c.interest or "a" not in c.interest["t"]  # no longer named: withdrawn
    assert [type(a) for a in c.handle(Report("a", ["not", "an", "object"]), 1.2)] == [Problem]
