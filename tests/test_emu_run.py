"""The emulator's pure parts: scaling a scenario, workload schedules, receipts, result rows."""

from __future__ import annotations

import pytest
from stemflow.emu.messages import HEADER, Message, encode
from stemflow.emu.run import SessionReports, check_delivery, rows_for, scaled_scenario, unscaled
from stemflow.emu.workload import Receipt, schedule

from stemflow.scenario import parse_scenario
from stemflow.workloads.bulk import BULK_CHUNK_BYTES


def scenario():
    return parse_scenario({
        "name": "s", "datacenters": [{"name": "A"}, {"name": "B"}],
        "links": [{"a": "A", "b": "B", "rtt_ms": 40, "bandwidth_mbps": 100}],
        "clients": [{"name": "ca", "datacenter": "A"}, {"name": "cb", "datacenter": "B"}],
        "tcp": {"rwnd_bytes": 4e6},
        "sessions": [
            {"id": "bulk", "publisher": "ca", "subscribers": ["cb"],
             "workload": {"type": "bulk", "size_bytes": 10 * BULK_CHUNK_BYTES + 5}},
            {"id": "msg", "publisher": "ca", "subscribers": ["cb"],
             "workload": {"type": "messages", "size_bytes": 1000, "count": 4, "rate_per_s": 10}},
            {"id": "video", "publisher": "cb", "subscribers": ["ca"],
             "workload": {"type": "stream", "bitrate_mbps": 8, "duration_s": 1,
                          "frame_interval_ms": 100}},
        ]})


def test_scaling_multiplies_rates_window_stream_bitrates_and_bulk_sizes_only():
    s = scenario()
    x = scaled_scenario(s, 0.5, 0.25)
    assert x.links[0].bandwidth_mbps == 50 and x.links[0].rtt_ms == 40
    assert x.clients[0].access.bandwidth_mbps == s.clients[0].access.bandwidth_mbps / 2
    assert x.tcp.rwnd_bytes == 2e6
    assert x.sessions[0].workload.size_bytes == pytest.approx(s.sessions[0].workload.size_bytes / 4)
    assert x.sessions[1].workload == s.sessions[1].workload  # 1 KB messages stay 1 KB
    assert x.sessions[2].workload.bitrate_mbps == 4  # a stream is load on the scaled links
    assert x.sessions[2].workload.frame_interval_ms == 100


def test_bulk_is_cut_into_chunks_that_add_up_to_its_size():
    plan = schedule(scenario().sessions[0])
    assert len(plan) == 11
    assert plan[-1].size_bytes == HEADER.size  # a 5-byte remainder still carries its header
    assert sum(m.size_bytes for m in plan[:-1]) == 10 * BULK_CHUNK_BYTES
    assert all(m.due_s == 0 for m in plan)


def test_messages_and_frames_are_spaced_by_their_rate():
    s = scenario()
    assert [m.due_s for m in schedule(s.sessions[1])] == pytest.approx([0, 0.1, 0.2, 0.3])
    frames = schedule(s.sessions[2])
    assert len(frames) == 10 and frames[0].size_bytes == 8e6 * 0.1 / 8


def test_receipt_notices_loss_reordering_and_duplicates():
    r = Receipt(expected=4)
    for seq in (0, 2, 1, 2):
        r.add(encode(Message(seq, 100, 0.0), now=0.0), now=0.01)
    assert (r.received, r.in_order, r.duplicates, r.missing()) == (3, False, 1, [3])
    assert r.delays_ms == pytest.approx([10.0] * 3)


def _reports():
    s = scenario()
    bulk = SessionReports(s.sessions[0], {"start_t": 0.0, "messages": 11, "unanswered": 0},
                          [{"subscriber": "cb", "expected": 11, "received": 11, "bytes": 1_000_000,
                            "in_order": True, "duplicates": 0, "first_pub_t": 1.0,
                            "last_t": 3.0, "delays_ms": []}])
    video = SessionReports(s.sessions[2], {"start_t": 0.0, "messages": 10, "unanswered": 0},
                           [{"subscriber": "ca", "expected": 10, "received": 8, "bytes": 0,
                             "in_order": True, "duplicates": 0, "first_pub_t": 0.0,
                             "last_t": 1.0, "delays_ms": [50.0] * 7 + [900.0]}])
    return [bulk, video]


def test_rows_measure_what_the_simulator_measures():
    rows = {(r.session, r.metric): r.value for r in rows_for(_reports(), "r", "s", "direct")}
    assert rows[("bulk", "completion_s")] == 2.0
    assert rows[("bulk", "throughput_mbps")] == pytest.approx(4.0)
    # one frame late (900 ms > 400 ms deadline) and two never arrived, of ten
    assert rows[("video", "deadline_miss_ratio")] == pytest.approx(0.3)
    halved = {(r.session, r.metric): r.value for r in unscaled(rows_for(_reports(), "r", "s",
                                                                         "direct"), 0.5)}
    assert halved[("bulk", "throughput_mbps")] == pytest.approx(8.0)
    assert halved[("bulk", "completion_s")] == 2.0


def test_delivery_check_names_what_went_wrong():
    bad = check_delivery({"delivery": [
        {"strategy": "m", "session": "s", "subscriber": "cb", "expected": 3, "received": 3,
         "in_order": True, "duplicates": 0, "missing_first": []},
        {"strategy": "m", "session": "t", "subscriber": "cb", "expected": 3, "received": 2,
         "in_order": False, "duplicates": 0, "missing_first": [1]},
    ]})
    assert len(bad) == 1 and "t -> cb: 2/3" in bad[0] and "[1]" in bad[0]

