"""Faults under emulation: a relay killed by PID (and restarted), the controller stopped, a
link taken down and degraded, mid-transfer.

Three datacenters; the bulk session A -> C takes the direct link under `shortest`, so killing
the relay in B and stopping the controller for a while must interrupt nothing: every message
arrives once and in order, and the rows say when the controller re-planned. Taking the A-C link
down stalls the session until it is back (TCP resends what the cut held); degrading it to
10 Mbit/s slows it to that.
"""

from __future__ import annotations

import json
import subprocess

import pytest
from emu_support import emu_command, needs_emu

from stemflow.results import read_results

pytestmark = [pytest.mark.emu, needs_emu]

SCENARIO = """\
name: faults-three-dc
datacenters: [{name: A}, {name: B}, {name: C}]
links:
  - {a: A, b: B, rtt: 20 ms, bandwidth: 40 Mbit/s}
  - {a: B, b: C, rtt: 20 ms, bandwidth: 40 Mbit/s}
  - {a: A, b: C, rtt: 30 ms, bandwidth: 40 Mbit/s}
clients:
  - {name: ca, datacenter: A}
  - {name: cc, datacenter: C}
tcp: {rwnd: 256 kB}
relay: {parallel: 2}
controller: {datacenter: A}
sessions:
  - {id: bulk, publisher: ca, subscribers: [cc], workload: {type: bulk, size: 40 MB}}
strategies: [shortest]
faults:
  - {type: relay-kill, at: 3 s, relay: B, until: 5 s}
  - {type: controller-stop, at: 3.5 s, until: 4.1 s}
"""
RUN_TIMEOUT_S = 120


def test_relay_kill_and_controller_stop_interrupt_nothing_off_the_route(tmp_path):
    (tmp_path / "s.yaml").write_text(SCENARIO)
    out = tmp_path / "out"
    proc = subprocess.run(emu_command(str(tmp_path / "s.yaml"), "--out", str(out)),
                          capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-2000:]
    [check] = json.loads((out / "manifest.json").read_text())["delivery"]
    assert check["received"] == check["expected"] and check["in_order"] and not check["duplicates"]
    df = read_results(out)
    got = {(r.session, r.metric): r.value for r in df.itertuples() if r.metric != "delivery_rate_mbps"}
    # the controller hears the kill when B's control connection closes (10 ms away), and plans
    assert 0 < got[("fault 0: relay B killed", "fault_replan_s")] < 1.0
    # the restarted controller plans once the relays have re-registered (its 1 s start-up grace)
    assert 0.8 <= got[("fault 1: controller stopped", "fault_replan_s")] < 5.0
    for fault in (0, 1):
        assert got[("bulk after fault " + str(fault), "fault_resume_s")] <= 2.0
    assert got[("bulk", "delivered_bytes")] == pytest.approx(40e6, rel=0.01)
    assert (df["metric"] == "delivery_rate_mbps").sum() > 10
    # B was started again at 5 s, with the same command, and registered with the new controller
    log = (out / "logs" / "shortest" / "relay-B.out").read_text()
    assert log.count("registered with controller") == 2


LINK_SCENARIO = SCENARIO.replace(
    """faults:
  - {type: relay-kill, at: 3 s, relay: B, until: 5 s}
  - {type: controller-stop, at: 3.5 s, until: 4.1 s}
""", """faults:
  - {type: link-down, at: 3 s, until: 4 s, link: [A, C]}
  - {type: link-degrade, at: 6 s, until: 7 s, link: [A, C], bandwidth: 10 Mbit/s}
""").replace("size: 40 MB", "size: 30 MB")


def test_a_link_taken_down_and_degraded_under_emulation(tmp_path):
    (tmp_path / "s.yaml").write_text(LINK_SCENARIO)
    out = tmp_path / "out"
    proc = subprocess.run(emu_command(str(tmp_path / "s.yaml"), "--out", str(out)),
                          capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-2000:]
    [check] = json.loads((out / "manifest.json").read_text())["delivery"]
    assert check["received"] == check["expected"] and check["in_order"]  # TCP resends what the cut held
    df = read_results(out)
    got = {(r.session, r.metric): r.value for r in df.itertuples() if r.metric != "delivery_rate_mbps"}
    # down for 1 s: delivery stops, and resumes once the link is back (TCP's backed-off timer)
    assert 1.0 <= got[("bulk after fault 0", "fault_resume_s")] <= 1.0 + 3.0
    assert got[("bulk after fault 0", "fault_dip_mbps")] > 10
    rates = df[(df["metric"] == "delivery_rate_mbps")].sort_values("t_s")
    # degraded to 10 Mbit/s for 1 s: some 0.6 s of it runs at about that rate. The window slides
    # (5.6-7.8 s): fault times count from the publisher's connection, the rate bins from the run's
    # start, and on a loaded machine the two differ by a few hundred ms; 50 ms bins are bursty.
    near = rates[(rates["t_s"] >= 5.6) & (rates["t_s"] < 7.8)]
    window = max(1, round(0.6 / near["t_s"].diff().median()))
    during = near["value"].rolling(window).mean().min()
    assert during <= 10 * 1.3
