"""The paper's Table I in the simulator: the fitted rows and the direct latency within ±10%; the
Stemflow latency is the model's own prediction (no fitted parameter), checked against its parts.

The paper's "Stemflow" row is the `shortest` strategy: one min-latency overlay path with P persistent
connections per hop (papers/stemflow-infocom17-demo/MODEL.md). The scenario also has relays in three
more GCP regions, which `multipath` may use and `shortest` does not."""

from __future__ import annotations

import pytest
from stemflow.sim.runner import run_strategy

from stemflow.network import NetworkState
from stemflow.routing import demands_from_scenario, make_plan
from stemflow.scenario import load_scenario

PAPER = {  # Liu & Li, Stemflow demo abstract, Table I
    ("direct", "throughput_mbps"): 181.0,
    ("shortest", "throughput_mbps"): 516.0,
    ("direct", "rr_latency_ms"): 395.9,
    ("shortest", "rr_latency_ms"): 468.5,
}
TOLERANCE = 0.10
SCENARIO = "scenarios/table1-us-east-asia-east.yaml"


@pytest.fixture(scope="module")
def table1():
    s = load_scenario(SCENARIO)
    out = {}
    for strategy in ("direct", "shortest", "multipath"):
        run = run_strategy(s, strategy, s.seed, "test")
        for r in run.rows:
            out[(strategy, r.metric, r.session)] = r.value
    return out


WITHIN_TOLERANCE = sorted(k for k in PAPER if k != ("shortest", "rr_latency_ms"))
"""The Stemflow latency is not among them: with the controller in us-west1 the model predicts
369.7 ms against the paper's 468.5 ms (0.79; papers/stemflow-infocom17-demo/MODEL.md)."""


@pytest.mark.parametrize("key", WITHIN_TOLERANCE)
def test_table1_within_ten_percent(table1, key):
    strategy, metric = key
    session = "bulk-1GB" if metric == "throughput_mbps" else "msg-1KB"
    assert table1[(strategy, metric, session)] == pytest.approx(PAPER[key], rel=TOLERANCE)


def test_stemflow_latency_is_the_exchange_plus_each_ends_round_trip_to_the_controller(table1):
    """Handshake to the relay once, then each way: access, the 182.5 ms hop, two relays, access;
    the set-up of each direction's session: us-east1 64 ms and asia-east1 120 ms from us-west1."""
    s = load_scenario(SCENARIO)
    assert s.controller.datacenter == "us-west1"
    one_way = 0.5 + 182.5 / 2 + 2 * s.relay.processing_delay_ms + 0.5
    assert table1[("shortest", "rr_latency_ms", "msg-1KB")] == pytest.approx(
        1.0 + 2 * one_way + 64.0 + 120.0, abs=0.01)


def test_the_scenario_carries_the_papers_table1_and_what_was_fitted():
    """The quick start prints these beside the simulated numbers; they must be the paper's."""
    ref = load_scenario(SCENARIO).reference
    got = {(v.strategy, v.metric): v.value for v in ref.values}
    assert got == PAPER
    fitted = {(v.strategy, v.metric): v.fitted_by for v in ref.values}
    assert fitted[("direct", "rr_latency_ms")] is None  # the model's predictions, unfitted
    assert fitted[("shortest", "rr_latency_ms")] is None
    assert fitted[("direct", "throughput_mbps")] == "tcp.rwnd"


def test_table1_uses_the_real_gcp_rtt():
    s = load_scenario(SCENARIO)
    rtts = {(ln.a, ln.b): ln.rtt_ms for ln in s.links}
    assert rtts[("us-east1", "asia-east1")] == 182.5


def test_table1_has_relays_in_other_real_gcp_regions():
    s = load_scenario(SCENARIO)
    assert {dc.name for dc in s.datacenters} == {"us-east1", "us-central1", "us-west1", "asia-northeast1",
                                                 "asia-east1"}


def test_shortest_plan_uses_the_direct_overlay_hop():
    """The paper's Stemflow relays over the min-RTT overlay path, here the one 182.5 ms hop."""
    s = load_scenario(SCENARIO)
    net = NetworkState.from_scenario(s)
    plan = make_plan(net, demands_from_scenario(s, net), "shortest")
    assert set(plan.sessions) == {"msg-1KB", "bulk-1GB"}
    for sp in plan.sessions.values():
        assert [p.hops for p in sp.paths] == [("us-east1", "asia-east1")]


def test_multipath_over_more_relays_is_at_least_shortest(table1):
    assert table1[("multipath", "throughput_mbps", "bulk-1GB")] >= \
        table1[("shortest", "throughput_mbps", "bulk-1GB")]


def test_stemflow_gain_comes_from_parallel_connections():
    """With one connection per relay hop, relaying over the same path gains nothing on throughput."""
    s = load_scenario(SCENARIO).with_updates({"relay.parallel": 1})
    direct = next(r.value for r in run_strategy(s, "direct", 1, "t").rows
                  if r.metric == "throughput_mbps" and r.session == "bulk-1GB")
    relayed = next(r.value for r in run_strategy(s, "shortest", 1, "t").rows
                   if r.metric == "throughput_mbps" and r.session == "bulk-1GB")
    assert relayed == pytest.approx(direct, rel=0.05)


def test_no_gain_regime_gives_about_one():
    """Uniform VM-level bandwidth, big windows, no loss: relaying cannot add bandwidth."""
    s = load_scenario("scenarios/no-gain-uniform.yaml")
    rates = {st: [r.value for r in run_strategy(s, st, 1, "t").rows if r.metric == "throughput_mbps"]
             for st in ("direct", "multipath")}
    gain = sum(rates["multipath"]) / sum(rates["direct"])
    assert gain == pytest.approx(1.0, abs=0.05)
