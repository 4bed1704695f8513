"""The workload registry: a kind declared in one module outside the package runs end to end."""

from __future__ import annotations

from dataclasses import replace

import pytest
import toy_workload
from stemflow.emu.run import SessionReports, rows_for, scaled_scenario
from stemflow.emu.workload import answered, schedule
from stemflow.sim.runner import run_strategy

from stemflow.routing import demands_from_scenario
from stemflow.scenario import ScenarioError, WorkloadSpec, parse_scenario
from stemflow.workloads import UnknownWorkload, get_kind, register, workload_types

INSTANT_SLOW_START = 1e9
"""An initial window this large ends slow start at once: the pace alone sets the rate."""
RATE_MBPS = 50.0
SIZE = "25 MB"  # 4 s at 50 Mbit/s: the last byte's propagation (~25 ms) is under 1% of it


def _scenario(workload):
    return parse_scenario({
        "name": "toy", "datacenters": [{"name": "x"}, {"name": "y"}],
        "links": [{"a": "x", "b": "y", "rtt_ms": 40, "bandwidth_mbps": 1000}],
        "clients": [{"name": "cx", "datacenter": "x"}, {"name": "cy", "datacenter": "y"}],
        "internet": [{"a": "cx", "b": "cy", "rtt_ms": 50, "bandwidth_mbps": 1000}],
        "tcp": {"rwnd": "64 MB"}, "parameters": {"initial_window_segments": INSTANT_SLOW_START},
        "sessions": [{"id": "p", "publisher": "cx", "subscribers": ["cy"], "workload": workload}]})


def test_a_workload_registered_from_a_test_module_runs_through_the_simulator():
    s = _scenario({"type": "paced", "size": SIZE, "rate": f"{RATE_MBPS} Mbit/s"})
    assert isinstance(s.sessions[0].workload, toy_workload.PacedWorkload)
    assert demands_from_scenario(s)[0].max_rate_mbps == RATE_MBPS  # its cap reached routing
    for strategy in ("direct", "shortest"):
        run = run_strategy(s, strategy, 1, "t")
        assert not run.unfinished
        got = {r.metric: r for r in run.rows if r.session == "p"}
        assert {"completion_s", "throughput_mbps", "mean_rate_mbps"} <= set(got)
        assert all(r.workload == "paced" for r in got.values())
        assert got["mean_rate_mbps"].value == pytest.approx(RATE_MBPS, rel=0.01)
        if strategy != "direct":
            assert got["planned_rate_mbps"].value == pytest.approx(RATE_MBPS)


def test_the_emulator_sends_scales_and_reads_a_registered_workload():
    s = _scenario({"type": "paced", "size_bytes": 4 * toy_workload.CHUNK_BYTES, "rate_mbps": 8})
    plan = schedule(s.sessions[0])
    assert len(plan) == 4 and plan[1].due_s == pytest.approx(toy_workload.CHUNK_BYTES * 8 / 8e6)
    assert not answered(s.sessions[0])
    assert scaled_scenario(s, 0.5).sessions[0].workload.rate_mbps == 4
    report = SessionReports(s.sessions[0], {}, [{"subscriber": "cy", "first_pub_t": 1.0, "last_t": 3.5}])
    rows = rows_for([report], "r", "toy", "shortest")
    assert [(r.session, r.workload, r.metric, r.value) for r in rows] == [("p", "paced", "completion_s", 2.5)]


def test_an_unknown_type_names_the_known_ones():
    with pytest.raises(ScenarioError, match=r"sessions\.0\.workload\.type: unknown workload 'telegram'; "
                                            r"known: bulk, chat, messages, paced, stream"):
        _scenario({"type": "telegram"})
    assert {"bulk", "messages", "stream", "paced"} <= set(workload_types())


def test_a_kind_field_error_names_the_field():
    with pytest.raises(ScenarioError, match=r"sessions\.0\.workload\.rate_mbps: required field is missing"):
        _scenario({"type": "paced", "size": SIZE})


def test_a_kind_names_itself_by_its_models_type_literal():
    class Nameless(WorkloadSpec):
        size_bytes: float

    with pytest.raises(UnknownWorkload, match="needs a field `type: Literal"):
        replace(get_kind("paced"), spec=Nameless)


def test_a_kind_must_declare_defined_metrics_and_record_only_those():
    toy = get_kind("paced")
    with pytest.raises(UnknownWorkload, match="undefined metrics"):
        register(replace(toy, metrics=("joy_per_s",)))
    with pytest.raises(UnknownWorkload, match="does not declare"):
        toy.check_metric("frame_delay_ms")
    undeclared = replace(toy, metrics=("completion_s",))
    register(undeclared)
    try:
        with pytest.raises(UnknownWorkload, match="'throughput_mbps', which it does not declare"):
            run_strategy(_scenario({"type": "paced", "size": SIZE, "rate_mbps": RATE_MBPS}),
                         "shortest", 1, "t")
    finally:
        register(toy)
