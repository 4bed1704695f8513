"""The video workload under emulation: real controller, relays and scripted viewers on shaped
links; the rows have the simulator's schema, the frames' delays are physically plausible, and
the source's egress counts one copy per viewer under direct but one for the tree through B."""

from __future__ import annotations

import subprocess
from collections import defaultdict
from pathlib import Path

import pytest
from emu_support import emu_command, needs_emu

from stemflow.results import read_results

pytestmark = [pytest.mark.emu, pytest.mark.slow, needs_emu]

SCENARIO = """\
name: video-three-dc
datacenters: [{name: A}, {name: B}, {name: C}]
links:
  - {a: A, b: B, rtt: 20 ms, bandwidth: 40 Mbit/s}
  - {a: B, b: C, rtt: 20 ms, bandwidth: 40 Mbit/s}
  - {a: A, b: C, rtt: 60 ms, bandwidth: 40 Mbit/s}
clients:
  - {name: cam, datacenter: A}
  - {name: vb, datacenter: B}
  - {name: vc, datacenter: C}
tcp: {rwnd: 1 MB}
relay: {parallel: 2}
sessions:
  - {id: tv, publisher: cam, subscribers: [vb, vc], priority: delay-sensitive,
     workload: {type: video, bitrate: 2 Mbit/s, duration: 3 s, gop_frames: 30}}
strategies: [direct, multicast]
"""
RUN_TIMEOUT_S = 240
ONE_WAY_MS = {"tv/vb": 10.0, "tv/vc": 20.0}
"""Half the RTT of each viewer's shortest path from A (to C: through B, 40 ms against 60 ms)."""
EGRESS_MBPS = {"direct": 4.0, "multicast": 2.0}
"""Copies of the 2 Mbit/s video leaving A: one per viewer from the source's host; one on the tree
A -> B -> C. Counted on the wire (IP packets), so headers add a few percent."""


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    d = tmp_path_factory.mktemp("video")
    (d / "s.yaml").write_text(SCENARIO)
    out = d / "out"
    proc = subprocess.run(emu_command(str(d / "s.yaml"), "--out", str(out), "--serial"),
                          capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    return proc, out


def test_viewers_get_every_frame_within_a_plausible_delay_and_no_freeze(run):
    proc, out = run
    assert proc.returncode == 0, proc.stderr[-3000:]
    df = read_results(out / "results.csv")
    rows = df[df.workload == "video"]
    by = defaultdict(list)
    for r in rows.itertuples():
        by[(r.strategy, r.session, r.metric)].append(r.value)
    for strategy in ("direct", "multicast"):
        for viewer, one_way in ONE_WAY_MS.items():
            delays = sorted(by[(strategy, viewer, "frame_delay_ms")])
            assert len(delays) == 90, (strategy, viewer, len(delays))
            assert one_way <= delays[len(delays) // 2] < one_way + 50, (strategy, viewer, delays[:5])
            assert by[(strategy, viewer, "freeze_ratio")] == [0.0]
            assert by[(strategy, viewer, "deadline_miss_ratio")] == [0.0]
    assert set(rows.metric) == {"frame_delay_ms", "deadline_miss_ratio", "freeze_ratio",
                                "source_egress_mbps"}
    for strategy, mbps in EGRESS_MBPS.items():
        [egress] = by[(strategy, "tv", "source_egress_mbps")]
        assert mbps <= egress < mbps * 1.15, (strategy, egress)
