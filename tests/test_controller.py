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
    PushTable,
    RelayDead,
    RelayJoined,
    SessionClosed,
    SessionOpened,
    Tick,
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


def tables(actions) -> dict:
    return {a.relay: a.table for a in actions if isinstance(a, PushTable)}


def test_session_open_pushes_valid_versioned_tables_to_every_live_relay():
    c = started()
    d = Demand("s", "a", ("c",), "p", ("q",))
    actions = c.handle(SessionOpened(d), 0.5)
    assert isinstance(actions[0], PlanComputed) and actions[0].reason == "session s opened"
    pushed = tables(actions)
    assert set(pushed) == {"a", "b", "c"}
    assert {t.version for t in pushed.values()} == {c.version}
    assert table_problems(pushed, [d]) == []
    assert c.plan.sessions["s"].paths[0].hops == ("a", "b", "c")


def test_small_measurement_changes_do_not_replan_and_big_ones_wait_for_the_interval():
    c = started(min_replan_interval_s=1.0)
    c.handle(SessionOpened(Demand("s", "a", ("c",), "p", ("q",))), 0.0)
    v = c.version
    assert c.handle(LinkReport("a", "b", rtt_ms=11.0), 0.1) == []  # +10%: noise
    assert c.handle(LinkReport("b", "c", rtt_ms=500.0), 0.2) == []  # big, but too soon
    later = c.handle(Tick(), 1.1)
    assert c.version == v + 1 and later[0].reason == "link b->c changed"
    assert c.plan.sessions["s"].paths[0].hops == ("a", "c")


def test_a_silent_relay_is_declared_dead_and_routed_around():
    c = started(heartbeat_timeout_s=2.0)
    c.handle(SessionOpened(Demand("s", "a", ("c",), "p", ("q",))), 0.0)
    for t in (1.0, 2.0):
        c.handle(Heartbeat("a"), t)
        c.handle(Heartbeat("c"), t)
    actions = c.handle(Tick(), 2.5)
    assert RelayDead("b") in actions
    assert c.plan.sessions["s"].paths[0].hops == ("a", "c")
    assert "b" not in tables(actions)


def test_relays_keep_no_stale_entries_after_a_session_closes():
    c = started()
    c.handle(SessionOpened(Demand("s", "a", ("c",), "p", ("q",))), 0.0)
    pushed = tables(c.handle(SessionClosed("s"), 0.1))
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
    with pytest.raises(ValueError, match="unknown strategy"):
        c.handle(SessionOpened(Demand("s", "a", ("c",), "p", ("q",))), 0.0)


def test_status_is_json_ready():
    import json

    c = started()
    c.handle(SessionOpened(Demand("s", "a", ("c",), "p", ("q",))), 0.0)
    st = json.loads(json.dumps(c.status()))
    assert st["plan"]["paths"]["s"][0]["hops"] == ["a", "b", "c"]
    assert {ln["src"] for ln in st["links"]} == {"a", "b", "c"}


def test_queueing_under_load_does_not_move_routes_but_a_lasting_change_does():
    c = started(min_replan_interval_s=0.0, rtt_filter_s=10.0, heartbeat_timeout_s=1e9)
    c.handle(SessionOpened(Demand("s", "a", ("c",), "p", ("q",))), 0.0)
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
    with pytest.raises(RuntimeError):
        c.handle(SessionOpened(Demand("s", "a", ("c",), "p", ("q",))), 0.1)
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
    c.handle(SessionOpened(Demand("s", "x", ("y",), "p", ("q",))), 0.0)
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
    c.handle(SessionOpened(Demand("s", "a", ("c",), "p", ("q",))), 0.0)
    first = c.plan.tables["a"].ingress["s"][0][0]
    c.handle(LinkReport("a", "b", rtt_ms=10.5), 0.1)
    c.handle(SessionOpened(Demand("t", "b", ("c",), "p", ("q",))), 0.2)  # a re-plan
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
