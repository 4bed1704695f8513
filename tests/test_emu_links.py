"""Link accuracy of the emulation backends: RTT, one cubic flow's rate, random loss.

Acceptance (issue 5): ping RTT within 2% + 1 ms of the configured RTT; one cubic TCP flow at
>= 90% of a 50 and of a 200 Mbit/s link; measured loss within +-25% of a configured 1%.
Every packet is sent between emulated hosts; nothing leaves their namespaces.
"""

from __future__ import annotations

import pytest
from emu_support import emulation, needs_emu, two_dc
from stemflow.emu import measure
from stemflow.emu.links import netem_available

pytestmark = [pytest.mark.emu, needs_emu]

BACKENDS = [
    "userspace",
    pytest.param("netem", marks=pytest.mark.skipif(not netem_available(),
                                                   reason="this kernel has no sch_netem")),
]
RTT_MS = 40.0
FLOW_SECONDS = 6.0
TCP_EFFICIENCY = 1448 / 1500  # payload per packet on the wire with TCP timestamps


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rtt_ms", [5.0, 40.0, 180.0])
def test_ping_rtt_matches_configuration(backend, rtt_ms):
    with emulation(two_dc(rate_mbps=100, rtt_ms=rtt_ms), backend) as emu:
        r = measure.ping(emu, "A", "B", count=20, interval_s=0.05)
    assert r.received == r.sent
    assert abs(r.median_ms - rtt_ms) <= 0.02 * rtt_ms + 1.0, r


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rate_mbps", [50.0, 200.0])
def test_one_cubic_flow_fills_the_link(backend, rate_mbps):
    with emulation(two_dc(rate_mbps=rate_mbps, rtt_ms=RTT_MS), backend) as emu:
        t = measure.tcp_transfer(emu, "A", "B", seconds=FLOW_SECONDS, cc="cubic")
    # on-wire rate: what the link carried, counting headers; goodput is 96.5% of it at best
    assert t.throughput_mbps / TCP_EFFICIENCY >= 0.9 * rate_mbps, t
    assert t.throughput_mbps <= 1.01 * rate_mbps, f"faster than the link: {t}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_random_loss_matches_configuration(backend):
    loss = 0.01
    with emulation(two_dc(rate_mbps=100, rtt_ms=10, loss=loss), backend) as emu:
        r = measure.udp_loss(emu, "A", "B", count=30_000, rate_pps=10_000)
    # 300 expected losses: +-25% is about 4.3 standard deviations of the binomial count
    assert r.loss == pytest.approx(loss, rel=0.25), r


def test_the_scenarios_window_cap_limits_every_connection():
    """Window / RTT bounds one flow, as the models assume (Table I's direct result rests on it)."""
    window, rtt_s = 250_000, RTT_MS / 1e3
    with emulation(two_dc(rate_mbps=200, rtt_ms=RTT_MS, rwnd_bytes=window)) as emu:
        t = measure.tcp_transfer(emu, "A", "B", seconds=FLOW_SECONDS, cc="cubic")
    limit_mbps = window * 8 / rtt_s / 1e6  # 50 Mbit/s, a quarter of the link
    assert 0.85 * limit_mbps <= t.goodput_mbps <= 1.03 * limit_mbps, t
