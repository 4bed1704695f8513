"""TCP throughput models against values computed by hand from each formula's source."""

import math

import pytest

from stemflow.tcp import (
    connection_rate,
    cubic_mbps,
    loss_bound_mbps,
    mathis_mbps,
    parallel_rate,
    pftk_mbps,
    window_limit_mbps,
)

MIB = 2**20


def test_window_limit_4mib_at_182_5ms_is_183_9_mbps():
    # 4 * 2^20 B * 8 bit/B / 0.1825 s = 183.86 Mbit/s
    assert window_limit_mbps(4 * MIB, 182.5) == pytest.approx(183.9, abs=0.05)


def test_mathis_mss_1448_rtt_200ms_one_percent_loss_is_0_71_mbps():
    # 1448 * 8 / 0.2 * sqrt(3/2) / sqrt(0.01) = 0.7094 Mbit/s
    assert mathis_mbps(1448, 200, 0.01) == pytest.approx(0.71, abs=0.005)


def test_cubic_region_against_hand_value():
    # RFC 8312 §5.1: W = (0.4 * 3.7 / (4 * 0.3))^(1/4) * 0.1^(3/4) / 1e-4^(3/4) = 187.40 packets;
    # Reno-friendly W = 1.2247 / 0.01 = 122.5 packets, so CUBIC's wins:
    # 187.40 * 1448 * 8 / 0.1 s = 21.71 Mbit/s.
    assert cubic_mbps(1448, 100, 1e-4) == pytest.approx(21.71, abs=0.01)


def test_cubic_falls_back_to_reno_friendly_region_on_short_rtt():
    # RTT 10 ms, p = 1%: CUBIC's window is ~1 packet, Reno's 12.25; rate = Mathis = 14.19.
    assert cubic_mbps(1448, 10, 0.01) == pytest.approx(mathis_mbps(1448, 10, 0.01))
    assert cubic_mbps(1448, 10, 0.01) == pytest.approx(14.19, abs=0.01)


def test_pftk_against_hand_value():
    # b = 1 (Linux counts acked segments), T0 = RTT + 200 ms = 0.3 s, p = 1e-4, RTT 100 ms:
    # 1 / (0.1 sqrt(2e-4/3) + 0.3 * 3 sqrt(3e-4/8) * 1e-4 * (1 + 32e-8)) = 1223.9 pkt/s
    # = 14.18 Mbit/s; with the textbook b = 2 it was 10.03
    assert pftk_mbps(1448, 100, 1e-4) == pytest.approx(14.18, abs=0.01)
    assert pftk_mbps(1448, 100, 1e-4, b=2) == pytest.approx(10.03, abs=0.01)
    assert pftk_mbps(1448, 100, 1e-4, rwnd_bytes=64 * 1024) == pytest.approx(
        window_limit_mbps(64 * 1024, 100))


def test_no_loss_means_no_loss_bound():
    assert math.isinf(mathis_mbps(1448, 100, 0.0))
    assert math.isinf(cubic_mbps(1448, 100, 0.0))
    assert math.isinf(loss_bound_mbps("bbr", 1448, 100, 0.005))  # BBR ignores loss below 1%
    assert loss_bound_mbps("bbr", 1448, 100, 0.02) == pytest.approx(cubic_mbps(1448, 100, 0.02))


def test_parallel_connections_scale_window_and_loss_bounds_not_bandwidth():
    one = connection_rate("cubic", 182.5, 0.0, 4 * MIB, 1448)
    four = parallel_rate("cubic", 4, 182.5, 0.0, 4 * MIB, 1448)
    assert four.rate_mbps == pytest.approx(4 * one.rate_mbps)
    assert four.limited_by == "window"
    capped = parallel_rate("cubic", 4, 182.5, 0.0, 4 * MIB, 1448, bandwidth_mbps=500.0)
    assert (capped.limited_by, capped.rate_mbps) == ("bandwidth", 500.0)
    lossy = parallel_rate("reno", 8, 100, 0.01, 64 * MIB, 1448)
    assert lossy.limited_by == "loss"
    assert lossy.rate_mbps == pytest.approx(8 * pftk_mbps(1448, 100, 0.01))


def test_bbr_keeps_the_bottleneck_at_one_percent_loss_as_kernel_bbr_did():
    r = parallel_rate("bbr", 1, 250, 0.01, 64 * MIB, 1448, bandwidth_mbps=100.0)
    assert (r.limited_by, r.rate_mbps) == ("bandwidth", pytest.approx(99.0))


def test_bbr_keeps_the_bottleneck_minus_loss():
    r = parallel_rate("bbr", 1, 50, 0.005, 64 * MIB, 1448, bandwidth_mbps=1000.0)
    assert (r.limited_by, r.rate_mbps) == ("bandwidth", pytest.approx(995.0))
