"""The chat workload (`type: chat`): its seeded schedule, its size classes in both drivers, its
demand, and one-line errors for impossible parameters."""

from __future__ import annotations

import pytest
from stemflow.emu.run import SessionReports, rows_for
from stemflow.emu.workload import schedule
from stemflow.sim.runner import run_strategy

from stemflow.routing import demands_from_scenario
from stemflow.scenario import ScenarioError, load_scenario, parse_scenario
from stemflow.workloads.chat import IMAGE, TEXT, size_classes

RTT_MS = 40.0


def _scenario(workload: dict) -> object:
    return parse_scenario({
        "name": "chat-toy", "datacenters": [{"name": "x"}, {"name": "y"}],
        "links": [{"a": "x", "b": "y", "rtt_ms": RTT_MS, "bandwidth_mbps": 1000}],
        "clients": [{"name": "cx", "datacenter": "x"}, {"name": "cy", "datacenter": "y"}],
        "internet": [{"a": "cx", "b": "cy", "rtt_ms": 50, "bandwidth_mbps": 1000}],
        "sessions": [{"id": "room-cx", "publisher": "cx", "subscribers": ["cy"],
                      "priority": "delay-sensitive", "workload": {"type": "chat", **workload}}]})


def test_the_schedule_is_poisson_from_the_seed_with_the_size_mix():
    s = _scenario({"rate_per_s": 20, "duration": "50 s", "image_share": 0.25, "image_size": "100 KB",
                   "text_size": "300 B", "seed": 3})
    plan = schedule(s.sessions[0])
    assert plan == schedule(s.sessions[0])  # the same messages every time: sim and emu agree
    assert 900 < len(plan) < 1100  # 20/s for 50 s
    assert all(0 <= m.due_s < 50 for m in plan) and plan == sorted(plan, key=lambda m: m.due_s)
    classes = size_classes(s.sessions[0].workload)
    images = [m for m, c in zip(plan, classes, strict=True) if c == IMAGE]
    assert 0.2 < len(images) / len(plan) < 0.3
    assert {m.size_bytes for m in images} == {100_000}
    assert {m.size_bytes for m, c in zip(plan, classes, strict=True) if c == TEXT} == {300}
    other = _scenario({"rate_per_s": 20, "duration": "50 s", "seed": 4})
    assert [m.due_s for m in schedule(other.sessions[0])][:5] != [m.due_s for m in plan][:5]


def test_the_simulator_records_each_class_and_text_takes_about_the_propagation():
    s = _scenario({"rate_per_s": 2, "duration": "20 s", "image_share": 0.3, "seed": 1})
    run = run_strategy(s, "shortest", 1, "t")
    assert not run.unfinished
    by = {m: [r.value for r in run.rows if r.metric == m] for m in (TEXT, IMAGE)}
    n = len(schedule(s.sessions[0]))
    assert len(by[TEXT]) + len(by[IMAGE]) == n and by[IMAGE] and by[TEXT]
    text_p50 = sorted(by[TEXT])[len(by[TEXT]) // 2]
    assert RTT_MS / 2 <= text_p50 < RTT_MS / 2 + 20  # 200 B: propagation plus little
    assert min(by[IMAGE]) > text_p50  # 500 KB take longer than 200 B on the same path


def test_emulated_rows_are_classed_by_what_was_sent():
    s = _scenario({"rate_per_s": 5, "duration": "4 s", "image_share": 0.5, "seed": 2})
    plan = schedule(s.sessions[0])
    classes = size_classes(s.sessions[0].workload)
    sub = {"subscriber": "cy", "seqs": [m.seq for m in plan], "delays_ms": [10.0 + m.seq for m in plan]}
    rows = rows_for([SessionReports(s.sessions[0], {}, [sub])], "r", "chat-toy", "shortest")
    assert [(r.metric, r.value) for r in rows] == [(c, 10.0 + i) for i, c in enumerate(classes)]
    assert {r.workload for r in rows} == {"chat"}


def test_the_demand_covers_an_image_burst_not_only_the_mean():
    s = _scenario({"rate_per_s": 1, "image_share": 0.1, "image_size": "500 KB"})
    assert demands_from_scenario(s)[0].max_rate_mbps == pytest.approx(500_000 * 8 / 0.2 / 1e6)
    text_only = _scenario({"rate_per_s": 10, "image_share": 0, "text_size": "1 KB"})
    assert demands_from_scenario(text_only)[0].max_rate_mbps == pytest.approx(10 * 1000 * 8 / 1e6)


@pytest.mark.parametrize(("workload", "error"), [
    ({"image_size": "2 MB"}, "image_size: 2000000 bytes is more than one relay message"),
    ({"image_share": 1.5}, r"image_share: .*less than or equal to 1"),
    ({"rate_per_s": 0}, r"rate_per_s: .*greater than 0"),
    ({"rate_per_s": 1000, "duration": "1000 s"}, "at most 100000"),
])
def test_impossible_parameters_are_one_line_errors(workload, error):
    with pytest.raises(ScenarioError, match=error):
        _scenario(workload)


def test_the_shipped_fig1_scenario_has_two_rooms_over_five_regions():
    s = load_scenario("fig1-chat-5dc")
    dc = {c.name: c.datacenter for c in s.clients}
    rooms: dict[str, set[str]] = {}
    for x in s.sessions:
        assert x.workload.type == "chat"
        rooms.setdefault(x.workload.room, set()).update(dc[c] for c in [x.publisher, *x.subscribers])
    assert {r: len(d) for r, d in rooms.items()} == {"general": 5, "ops": 3}
