"""The simulator against closed forms: window limit, shared bottleneck, slowest hop, multicast."""

from __future__ import annotations

import pytest
from stemflow.sim.runner import run_strategy

from stemflow.routing import register
from stemflow.routing.plan import Plan, SessionPlan, compile_tables
from stemflow.scenario import load_scenario, parse_scenario
from stemflow.tcp import window_limit_mbps

INSTANT_SLOW_START = 1e9
"""An initial window this large ends slow start at once: the tests compare steady rates."""
BIG = "100 GB"
"""Large enough that one handshake and a few round trips are < 0.01% of the transfer."""


def _scenario(links, sessions, rwnd="4 MB", parallel=2, internet=(), access_rtt=1.0, **extra):
    dcs = sorted({x for ln in links for x in (ln["a"], ln["b"])})
    return parse_scenario({
        "name": "closed-form", "datacenters": [{"name": d} for d in dcs], "links": links,
        "clients": [{"name": f"c-{d}", "datacenter": d, "access": {"rtt_ms": access_rtt}} for d in dcs],
        "internet": list(internet), "tcp": {"rwnd": rwnd}, "relay": {"parallel": parallel},
        "parameters": {"initial_window_segments": INSTANT_SLOW_START, **extra}, "sessions": sessions,
    })


def _values(run, metric):
    return {r.session: r.value for r in run.rows if r.metric == metric}


def test_one_window_limited_connection_gives_rwnd_over_rtt():
    s = _scenario([{"a": "x", "b": "y", "rtt_ms": 100, "bandwidth_mbps": 10_000}],
                  [{"id": "t", "publisher": "c-x", "subscribers": ["c-y"],
                    "workload": {"type": "bulk", "size": BIG}}],
                  internet=[{"a": "c-x", "b": "c-y", "rtt_ms": 150, "bandwidth_mbps": 10_000}])
    rate = _values(run_strategy(s, "direct", 1, "t"), "throughput_mbps")["t"]
    assert rate == pytest.approx(window_limit_mbps(4e6, 150.0), rel=1e-3)  # 213.3 Mbit/s


def test_two_transfers_share_one_bottleneck():
    """Two direct transfers over one 100 Mbit/s Internet path, windows far above the BDP: 50 each."""
    sessions = [{"id": f"t{i}", "publisher": "c-x", "subscribers": ["c-y"],
                 "workload": {"type": "bulk", "size": "10 GB"}} for i in (1, 2)]
    s = _scenario([{"a": "x", "b": "y", "rtt_ms": 20, "bandwidth_mbps": 10_000}], sessions, rwnd="64 MB",
                  internet=[{"a": "c-x", "b": "c-y", "rtt_ms": 20, "bandwidth_mbps": 100}])
    rates = _values(run_strategy(s, "direct", 1, "t"), "mean_rate_mbps")
    assert rates["t1"] == pytest.approx(50.0, rel=1e-3) and rates["t2"] == pytest.approx(50.0, rel=1e-3)


def test_three_hop_relay_path_is_limited_by_its_slowest_hop():
    """A line a-b-c-d: the 120 ms hop's P x rwnd / RTT is the session's rate."""
    links = [{"a": "a", "b": "b", "rtt_ms": 30, "bandwidth_mbps": 10_000},
             {"a": "b", "b": "c", "rtt_ms": 120, "bandwidth_mbps": 10_000},
             {"a": "c", "b": "d", "rtt_ms": 60, "bandwidth_mbps": 10_000}]
    s = _scenario(links, [{"id": "t", "publisher": "c-a", "subscribers": ["c-d"],
                           "workload": {"type": "bulk", "size": BIG}}])
    rate = _values(run_strategy(s, "shortest", 1, "t"), "mean_rate_mbps")["t"]
    assert rate == pytest.approx(2 * window_limit_mbps(4e6, 120.0), rel=1e-3)  # 533.3 Mbit/s


def test_sessions_on_one_relay_hop_share_its_connections():
    sessions = [{"id": f"t{i}", "publisher": "c-x", "subscribers": ["c-y"],
                 "workload": {"type": "bulk", "size": BIG}} for i in (1, 2)]
    s = _scenario([{"a": "x", "b": "y", "rtt_ms": 100, "bandwidth_mbps": 10_000}], sessions)
    rates = _values(run_strategy(s, "shortest", 1, "t"), "mean_rate_mbps")
    hop = 2 * window_limit_mbps(4e6, 100.0)
    assert rates["t1"] == pytest.approx(hop / 2, rel=1e-3) and rates["t2"] == pytest.approx(hop / 2, rel=1e-3)


def test_a_multicast_session_reaches_every_subscriber_at_the_planned_rate():
    fig1 = load_scenario("scenarios/fig1-broadcast-5dc.yaml")
    share = fig1.session("file-share").model_dump()
    share["workload"] = {"type": "bulk", "size": "1 TB"}  # trees up to 4 hops: 0.3 s of propagation
    s = fig1.with_updates({"sessions": [share], "parameters.initial_window_segments": INSTANT_SLOW_START})
    run = run_strategy(s, "multicast", 1, "t")
    planned = _values(run, "planned_rate_mbps")["file-share"]
    per_sub = {k: v for k, v in _values(run, "mean_rate_mbps").items() if k.startswith("file-share/")}
    assert len(per_sub) == 4
    for sub, rate in per_sub.items():
        assert rate == pytest.approx(planned, rel=1e-3), sub


def test_a_request_response_over_relays_pays_each_ends_round_trip_to_the_controller():
    """Idle overlay, one 1 KB exchange, the controller in a third datacenter z (40 ms from x,
    80 ms from y): access + hop + access each way, plus each ingress relay's round trip to z."""
    links = [{"a": "x", "b": "y", "rtt_ms": 100, "bandwidth_mbps": 10_000},
             {"a": "x", "b": "z", "rtt_ms": 40, "bandwidth_mbps": 10_000},
             {"a": "y", "b": "z", "rtt_ms": 80, "bandwidth_mbps": 10_000}]
    s = _scenario(links, [{"id": "m", "publisher": "c-x", "subscribers": ["c-y"],
                           "workload": {"type": "messages", "size": "1 KB", "request_response": True}}],
                  initial_window_segments=10).with_updates({"controller.datacenter": "z"})
    rr = _values(run_strategy(s, "shortest", 1, "t"), "rr_latency_ms")["m"]
    handshake = 1.0  # the publisher's connection to its relay, once
    up, hop, down = 0.5, 50 + 2 * s.relay.processing_delay_ms, 0.5
    set_up_x, set_up_y = 40.0, 80.0  # report up, plan, table down: one round trip each
    assert rr == pytest.approx(handshake + 2 * (up + hop + down) + set_up_x + set_up_y, abs=0.01)


def test_without_a_controller_datacenter_a_session_set_up_costs_nothing():
    s = _scenario([{"a": "x", "b": "y", "rtt_ms": 100, "bandwidth_mbps": 10_000}],
                  [{"id": "m", "publisher": "c-x", "subscribers": ["c-y"],
                    "workload": {"type": "messages", "size": "1 KB", "request_response": True}}],
                  initial_window_segments=10)
    rr = _values(run_strategy(s, "shortest", 1, "t"), "rr_latency_ms")["m"]
    assert rr == pytest.approx(1.0 + 2 * (0.5 + 50 + 2 * s.relay.processing_delay_ms + 0.5), abs=0.01)


def test_a_relay_far_from_the_controller_still_gets_frames_after_its_table():
    """The egress relay y is farther from the controller (in x) than the frame's path: it has its
    table when the frame arrives (a frame never overtakes its table), so the message arrives."""
    links = [{"a": "x", "b": "y", "rtt_ms": 10, "bandwidth_mbps": 10_000}]
    s = _scenario(links, [{"id": "m", "publisher": "c-x", "subscribers": ["c-y"],
                           "workload": {"type": "messages", "size": "1 KB"}}],
                  initial_window_segments=10).with_updates({"controller.datacenter": "x"})
    one_way = _values(run_strategy(s, "shortest", 1, "t"), "latency_ms")["m"]
    assert one_way == pytest.approx(1.0 + 0.5 + 0 + 5 + 2 * s.relay.processing_delay_ms + 0.5, abs=0.01)


@register("test-no-route")
def _no_route(net, demands, options):
    """A strategy that routes nothing: every session gets rate 0, so no table entry."""
    sessions = {d.session: SessionPlan(d.session, 0.0) for d in demands}
    return Plan("test-no-route", sessions, compile_tables(sessions, demands))


@pytest.mark.timeout(60)
def test_a_session_the_strategy_gives_no_share_still_travels_best_effort():
    s = load_scenario("scenarios/table1-us-east-asia-east.yaml")
    run = run_strategy(s, "test-no-route", 1, "t")
    assert run.unfinished == []
    assert _values(run, "throughput_mbps")["bulk-1GB"] > 0 and _values(run, "rr_latency_ms")["msg-1KB"] > 0


@pytest.mark.parametrize("priority", ["bulk", "delay-sensitive"])
def test_a_message_behind_bulk_waits_for_the_unsent_socket_bytes_unless_delay_sensitive(priority):
    """A hop saturated by bulk: a 1 KB bulk-class message waits for TCP_NOTSENT_LOWAT bytes at one
    connection's rate; a delay-sensitive one has a connection of its own and waits for nothing."""
    sessions = [{"id": "bulk", "publisher": "c-x", "subscribers": ["c-y"],
                 "workload": {"type": "bulk", "size": BIG}},
                {"id": "m", "publisher": "c-x", "subscribers": ["c-y"], "start": "10 s",
                 "priority": priority, "workload": {"type": "messages", "size": "1 KB"}}]
    s = _scenario([{"a": "x", "b": "y", "rtt_ms": 100, "bandwidth_mbps": 10_000}], sessions)
    one_way = _values(run_strategy(s, "shortest", 1, "t"), "latency_ms")["m"]
    per_connection_mbps = window_limit_mbps(4e6, 100.0)  # 320 Mbit/s, 2 connections on the hop
    queued_ms = 131072 * 8 / (per_connection_mbps * 1e6) * 1e3 if priority == "bulk" else 0.0
    handshake, access, hop, relays = 1.0, 0.5, 50.0, 2 * s.relay.processing_delay_ms
    assert one_way == pytest.approx(handshake + access + relays + hop + queued_ms + access, abs=0.01)
