"""A small scenario end to end under emulation: real controller, relays and clients.

Three datacenters, a client at each; unicast (bulk, request-response messages, a stream) and
multicast (messages to two subscribers); the direct baseline and the multipath strategy. Checks
that every message reached every subscriber once and in order, and that `results.csv` and
`manifest.json` follow the schema.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from emu_support import emu_command, needs_emu
from stemflow.emu.delayline import EARLY_RELEASE_S

from stemflow.results import COLUMNS, METRICS, read_results

pytestmark = [pytest.mark.emu, needs_emu]

SCENARIO = """\
name: e2e-three-dc
datacenters: [{name: A}, {name: B}, {name: C}]
links:
  - {a: A, b: B, rtt: 20 ms, bandwidth: 40 Mbit/s}
  - {a: B, b: C, rtt: 20 ms, bandwidth: 40 Mbit/s}
  - {a: A, b: C, rtt: 30 ms, bandwidth: 40 Mbit/s}
clients:
  - {name: ca, datacenter: A}
  - {name: cb, datacenter: B}
  - {name: cc, datacenter: C}
tcp: {rwnd: 256 kB}
relay: {parallel: 2}
sessions:
  - {id: bulk, publisher: ca, subscribers: [cc], workload: {type: bulk, size: 3 MB}}
  - {id: rr, publisher: ca, subscribers: [cc], priority: delay-sensitive,
     workload: {type: messages, size: 1 KB, count: 5, request_response: true}}
  - {id: mc, publisher: ca, subscribers: [cb, cc],
     workload: {type: messages, size: 2 KB, count: 30, rate_per_s: 50}}
  - {id: video, publisher: cc, subscribers: [ca],
     workload: {type: stream, bitrate: 2 Mbit/s, duration: 1 s}}
strategies: [direct, multipath]
"""
RUN_TIMEOUT_S = 240


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    d = tmp_path_factory.mktemp("e2e")
    (d / "s.yaml").write_text(SCENARIO)
    out = d / "out"
    proc = subprocess.run(emu_command(str(d / "s.yaml"), "--out", str(out), "--serial"),
                          capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    return proc, out


def test_every_message_arrives_once_and_in_order(run):
    proc, out = run
    manifest = json.loads((out / "manifest.json").read_text())
    per = {(c["strategy"], c["session"], c["subscriber"]): c for c in manifest["delivery"]}
    assert {k[:2] for k in per} == {(st, s) for st in ("direct", "multipath")
                                    for s in ("bulk", "rr", "mc", "video")}
    assert ("multipath", "mc", "cb") in per and ("multipath", "mc", "cc") in per
    bad = {k: c for k, c in per.items()
           if c["received"] != c["expected"] or not c["in_order"] or c["duplicates"]}
    assert bad == {}, proc.stderr[-3000:]
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_results_follow_the_schema(run):
    _, out = run
    df = read_results(out)
    assert list(df.columns) == list(COLUMNS)
    assert set(df["mode"]) == {"emu"}
    assert set(df["strategy"]) == {"direct", "multipath"}
    assert set(df["metric"]) <= set(METRICS)
    for metric, unit in df[["metric", "unit"]].drop_duplicates().itertuples(index=False):
        assert METRICS[metric][0] == unit
    # a session with several subscribers has a row per subscriber, labelled as the simulator
    # labels it: "session/subscriber"
    assert set(df[df.session.str.startswith("mc")].session) == {"mc/cb", "mc/cc"}
    df = df.assign(session=df.session.str.split("/").str[0])
    got = df.groupby(["strategy", "session"])["metric"].apply(set).to_dict()
    for strategy in ("direct", "multipath"):
        assert {"throughput_mbps", "completion_s"} <= got[(strategy, "bulk")]
        assert got[(strategy, "rr")] == {"rr_latency_ms"}
        assert got[(strategy, "mc")] == {"latency_ms"}
        assert {"frame_delay_ms", "deadline_miss_ratio"} <= got[(strategy, "video")]
    mc = df[(df.session == "mc") & (df.strategy == "multipath")]
    assert len(mc) == 2 * 30  # one latency per message and subscriber
    manifest = json.loads((out / "manifest.json").read_text())
    for key in ("link_backend", "rate_scale", "kernel", "versions", "scenario_hash", "seed"):
        assert key in manifest
    unscaled = read_results(out / "results-unscaled.csv")
    assert len(unscaled) == len(df)


def test_latencies_are_physically_plausible(run):
    """Nothing arrives faster than the links' delays allow (each link may release a packet up
    to EARLY_RELEASE_S early: epoll's millisecond granularity, centred)."""
    _, out = run
    df = read_results(out)
    early_ms = EARLY_RELEASE_S * 1e3
    rr = df[(df.session == "rr") & (df.metric == "rr_latency_ms")]
    # ca -> cc -> ca: access, overlay, access, both ways; 6 link crossings (1 + 30 + 1 ms RTTs)
    assert rr["value"].min() >= 32 - 6 * early_ms
    mc = df[df.session.str.startswith("mc/") & (df.metric == "latency_ms")]
    # the nearer subscriber: ca -> cb, 3 link crossings of half of 1 + 20 + 1 ms
    assert mc["value"].min() >= (1 + 20 + 1) / 2 - 3 * early_ms


def test_the_controller_status_is_recorded_while_sessions_run(run):
    """`logs/STRATEGY/controller-status.jsonl`: the plan and the relays' counters over time, to
    explain an emulated rate after the run. The serial sessions take longer than one sample
    (each short session may fall between samples, so only the relays' reports are checked)."""
    _, out = run
    lines = (out / "logs" / "multipath" / "controller-status.jsonl").read_text().splitlines()
    samples = [json.loads(x) for x in lines]
    assert samples and all({"t_s", "status"} <= s.keys() for s in samples)
    assert set(samples[-1]["status"]["reports"]) == {"A", "B", "C"}
    assert all("counters" in r for r in samples[-1]["status"]["reports"].values())
