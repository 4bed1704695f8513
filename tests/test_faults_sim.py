"""Faults in the simulator: the controller learns of each as it would in reality, and the rows say
when it re-planned, when delivery resumed and what was lost."""

import copy

import pytest
from stemflow.sim.runner import run_strategy

from stemflow.controller import HEARTBEAT_TIMEOUT_S
from stemflow.faults import summary_lines
from stemflow.relay.server import HEARTBEAT_INTERVAL_S
from stemflow.scenario import parse_scenario

# a -> c is one hop of 60 ms or two of 10 ms via b: `shortest` takes b, the controller sits in a.
BASE = {
    "name": "faults",
    "datacenters": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
    "links": [{"a": "a", "b": "b", "rtt": "10 ms", "bandwidth": "400 Mbit/s"},
              {"a": "b", "b": "c", "rtt": "10 ms", "bandwidth": "400 Mbit/s"},
              {"a": "a", "b": "c", "rtt": "60 ms", "bandwidth": "400 Mbit/s"}],
    "clients": [{"name": "x", "datacenter": "a"}, {"name": "y", "datacenter": "c"}],
    "controller": {"datacenter": "a"},
    "sessions": [{"id": "bulk", "publisher": "x", "subscribers": ["y"],
                  "workload": {"type": "bulk", "size": "200 MB"}}],
    "strategies": ["shortest"],
}


def run(*faults):
    data = copy.deepcopy(BASE)
    data["faults"] = list(faults)
    s = parse_scenario(data, source="faults.yaml")
    rows = run_strategy(s, "shortest", 1, "r").rows
    return {(r.session, r.metric): r.value for r in rows if r.metric != "delivery_rate_mbps"}, rows


def test_a_killed_relay_is_routed_around_when_its_connection_closes():
    got, rows = run({"type": "relay-kill", "at": "2 s", "relay": "b"})
    # the controller hears RelayLeft half b's 10 ms round trip to it later, and plans at once
    assert got[("fault 0: relay b killed", "fault_replan_s")] == pytest.approx(0.005)
    resume = got[("bulk after fault 0", "fault_resume_s")]
    assert 0.005 < resume <= 2.0
    # what was on the wire into b (400 Mbit/s x 5 ms), and what a dropped into the dead
    # connection, as fast as x's 10 Gbit/s access hop brought it, until the new table (5 ms),
    # the publisher sends again (end-to-end acknowledgements): nothing lost, the transfer longer
    resent = 400e6 / 8 * 0.005 + 10e9 / 8 * 0.005
    assert got[("bulk after fault 0", "fault_lost_bytes")] == 0
    assert got[("bulk", "delivered_bytes")] == pytest.approx(200e6)
    unfaulted, _ = run()
    assert got[("bulk", "completion_s")] - unfaulted[("bulk", "completion_s")] >= resent * 8 / 400e6
    rates = [(r.t_s, r.value) for r in rows if r.metric == "delivery_rate_mbps"]
    assert any(v == 0 for t, v in rates if 2.0 <= t < 2.0 + resume)  # nothing arrived meanwhile
    assert got[("bulk after fault 0", "fault_dip_mbps")] > 0
    [line] = summary_lines(rows)
    assert line.startswith("shortest  fault 0: relay b killed: re-planned after 5 ms; bulk: resumed after ")
    assert ", lost 0.00 MB, dip " in line


def test_a_killed_relay_on_one_of_several_paths_costs_its_share_only():
    data = copy.deepcopy(BASE)
    data["links"][2]["rtt"] = "20 ms"  # a -> c direct is as good as via b: multipath uses both
    data["faults"] = [{"type": "relay-kill", "at": "2 s", "relay": "b"}]
    s = parse_scenario(data, source="faults.yaml")
    rows = run_strategy(s, "multipath", 1, "r").rows
    got = {(r.session, r.metric): r.value for r in rows if r.metric != "delivery_rate_mbps"}
    assert got[("bulk after fault 0", "fault_resume_s")] == 0.0  # the direct path kept delivering
    assert 0 < got[("bulk after fault 0", "fault_dip_mbps")] < 800
    assert got[("bulk after fault 0", "fault_lost_bytes")] == 0  # what the split sent into b is sent again


def test_a_partitioned_relay_is_declared_dead_by_missed_heartbeats():
    got, _ = run({"type": "partition", "at": "2 s", "until": "20 s", "datacenters": ["b"]})
    replan = got[("fault 0: partition of b", "fault_replan_s")]
    # either the heartbeat timeout, or a's report of its cut link to b (every second) comes first
    assert 0 < replan <= HEARTBEAT_TIMEOUT_S + HEARTBEAT_INTERVAL_S + 0.005
    assert got[("bulk after fault 0", "fault_resume_s")] <= 2.0
    assert ("bulk after fault 0", "fault_lost_bytes") not in got  # TCP holds what was in flight


def test_a_stopped_controller_does_not_interrupt_delivery():
    got, _ = run({"type": "controller-stop", "at": "1 s", "until": "3 s"})
    assert got[("bulk after fault 0", "fault_resume_s")] == 0.0
    assert got[("bulk after fault 0", "fault_dip_mbps")] == 0.0
    assert got[("bulk", "delivered_bytes")] == 200e6
    assert got[("fault 0: controller stopped", "fault_replan_s")] >= 2.0  # only once restarted


def test_a_link_down_is_seen_in_the_next_link_report():
    got, _ = run({"type": "link-down", "at": "2.1 s", "link": ["b", "c"], "until": "8 s"})
    replan = got[("fault 0: link b–c down", "fault_replan_s")]
    assert 0 < replan <= 1.0 + 0.005  # reports every second, half b's round trip to a
    # Known gap, as in reality: a cut link is reported as loss 1, whose modelled capacity is
    # small but not zero, so the plan keeps a share on it and the session waits for the link.
    assert 8 - 2.1 <= got[("bulk after fault 0", "fault_resume_s")] <= 8 - 2.1 + 1.0


def test_a_run_without_faults_has_no_fault_rows():
    s = parse_scenario(copy.deepcopy(BASE), source="faults.yaml")
    metrics = {r.metric for r in run_strategy(s, "shortest", 1, "r").rows}
    assert not {m for m in metrics if m.startswith("fault_") or m.startswith("deliver")}


def test_the_analysis_draws_the_timeline_with_the_faults_marked(tmp_path):
    import yaml
    from stemflow.analysis.load import load_results
    from stemflow.analysis.run import analyze
    from stemflow.analysis.timeline import fault_marks, timeline_table
    from stemflow.sim.__main__ import main as sim

    from stemflow.results import read_results

    data = copy.deepcopy(BASE)
    data["faults"] = [{"type": "relay-kill", "at": "2 s", "relay": "b", "until": "3 s"}]
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(data))
    assert sim([str(tmp_path / "s.yaml"), "--out", str(tmp_path / "sim"), "--no-plots", "--quiet"]) == 0
    df = read_results(tmp_path / "sim")
    marks = fault_marks(df)
    assert list(marks["fault"]) == ["fault 0: relay b killed"] and list(marks["at_s"]) == [2.0]
    assert marks["replan_at_s"].iloc[0] == pytest.approx(2.005)
    assert not timeline_table(df).empty
    out = analyze(load_results([tmp_path / "sim"]), tmp_path / "an", benchmark=None)
    assert {p.suffix for p in out.figures["faults-faults"]} >= {".png", ".pdf", ".svg"}
