"""The video workload: frames from the recorded trace, what a viewer can show, freezes, and the
same rows from the simulator and the emulator."""

from __future__ import annotations

import math

import pytest
from stemflow.emu.messages import encode
from stemflow.emu.run import SessionReports, rows_for
from stemflow.emu.workload import Receipt, schedule
from stemflow.sim.runner import run_strategy

from stemflow.scenario import ScenarioError, parse_scenario
from stemflow.workloads.video import VideoWorkload, frame_sizes, freeze_ratio, read_trace, shown_s

VIDEO = {"type": "video", "bitrate": "2 Mbit/s", "duration": "4 s", "gop_frames": 30}
VIEWERS = ["v1", "v2", "v3"]
PER_VIEWER = ("frame_delay_ms", "deadline_miss_ratio", "freeze_ratio")
INSTANT_SLOW_START = 1e9
"""An initial window this large ends slow start at once: frames are not held by the ramp."""


def _scenario(workload: dict):
    dcs = ["src", "hub", *[f"d{i}" for i in range(1, 4)]]
    links = [{"a": "src", "b": "hub", "rtt_ms": 20, "bandwidth_mbps": 1000}]
    links += [{"a": "hub", "b": f"d{i}", "rtt_ms": 10, "bandwidth_mbps": 1000} for i in range(1, 4)]
    links += [{"a": "src", "b": f"d{i}", "rtt_ms": 60, "bandwidth_mbps": 1000} for i in range(1, 4)]
    clients = [{"name": "cam", "datacenter": "src"}] + [
        {"name": v, "datacenter": f"d{i}"} for i, v in enumerate(VIEWERS, 1)]
    internet = [{"a": "cam", "b": v, "rtt_ms": 80, "bandwidth_mbps": 1000} for v in VIEWERS]
    return parse_scenario({
        "name": "video", "datacenters": [{"name": d} for d in dcs], "links": links, "clients": clients,
        "internet": internet, "tcp": {"rwnd": "64 MB"},
        "parameters": {"initial_window_segments": INSTANT_SLOW_START},
        "sessions": [{"id": "tv", "publisher": "cam", "subscribers": VIEWERS, "priority": "delay-sensitive",
                      "workload": workload}]})


def test_frames_follow_the_trace_and_average_the_bitrate():
    w = _scenario(VIDEO).sessions[0].workload
    assert isinstance(w, VideoWorkload) and w.frames == 120
    sizes = frame_sizes(w)
    assert sum(sizes) * 8 / w.duration_s == pytest.approx(2e6, rel=1e-3)
    keys, deltas = read_trace(w.trace)
    ratio = sizes[0] / sizes[1]
    assert ratio == pytest.approx(keys[0] / deltas[1], rel=1e-2)  # the trace's shape, scaled
    assert [m.due_s for m in schedule(_scenario(VIDEO).sessions[0])][:2] == [0.0, pytest.approx(1 / 30)]


def test_a_missing_trace_names_the_shipped_ones():
    with pytest.raises(ScenarioError, match=r"trace: .*no frame-size trace 'nope'.*vp8-640x360-fake-camera"):
        _scenario({**VIDEO, "trace": "nope"})


def test_a_lost_frame_hides_the_picture_until_the_next_key_frame_and_that_is_a_freeze():
    w = _scenario(VIDEO).sessions[0].workload
    on_time = [k / 30 + 0.05 for k in range(w.frames)]
    assert freeze_ratio(shown_s(w, on_time), 1 / 30) == 0.0
    lost = list(on_time)
    lost[40] = math.inf  # frames 40..59 cannot be decoded; 60 is a key frame
    shown = shown_s(w, lost)
    assert len(shown) == w.frames - 20
    assert freeze_ratio(shown, 1 / 30) == pytest.approx((21 / 30) / (119 / 30), rel=1e-6)
    assert freeze_ratio([], 1 / 30) == 1.0


def test_the_simulator_measures_each_viewer_and_the_sources_egress():
    s = _scenario(VIDEO)
    egress = {}
    for strategy in ("direct", "multicast"):
        run = run_strategy(s, strategy, 1, "t")
        assert not run.unfinished
        rows = [r for r in run.rows if r.workload == "video"]
        metrics = {(r.session, r.metric) for r in rows}
        for v in VIEWERS:
            assert {(f"tv/{v}", m) for m in PER_VIEWER} <= metrics
        per_viewer = {r.session: r.value for r in rows if r.metric == "freeze_ratio"}
        assert all(v == 0.0 for v in per_viewer.values()), per_viewer
        delays = [r.value for r in rows if r.metric == "frame_delay_ms"]
        assert len(delays) == 3 * 120 and min(delays) > 10
        assert {r.metric for r in rows} - {"planned_rate_mbps"} == {*PER_VIEWER, "source_egress_mbps"}
        egress[strategy] = next(r.value for r in rows if r.metric == "source_egress_mbps")
    assert egress["direct"] == pytest.approx(3 * 2.0)  # one copy per viewer
    assert egress["multicast"] < egress["direct"]     # a tree sends fewer copies out of the source


def test_the_emulator_reads_the_same_rows_from_receipts():
    s = _scenario(VIDEO).sessions[0]
    plan = schedule(s)
    subs = []
    for i, v in enumerate(VIEWERS):
        r = Receipt(len(plan))
        for m in plan:
            if i == 1 and m.seq == 40:
                continue  # viewer v2 loses frame 40
            r.add(encode(m, m.due_s), m.due_s + 0.03)
        subs.append({"subscriber": v, **r.report()})
    rows = rows_for([SessionReports(s, {}, subs)], "r", "video", "multicast")
    got = {(r.session, r.metric): r.value for r in rows if r.metric != "frame_delay_ms"}
    assert got[("tv/v1", "freeze_ratio")] == 0.0 and got[("tv/v1", "deadline_miss_ratio")] == 0.0
    assert got[("tv/v2", "freeze_ratio")] > 0.1
    assert got[("tv/v2", "deadline_miss_ratio")] == pytest.approx(1 / 120)
    delays = [r.value for r in rows if r.metric == "frame_delay_ms" and r.session == "tv/v1"]
    assert delays == pytest.approx([30.0] * 120)
