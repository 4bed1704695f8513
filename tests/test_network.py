"""Network state: hop capacities from the TCP models, the derived Internet path, snapshots."""

import pytest

from stemflow.network import NetworkState
from stemflow.scenario import parse_scenario

BASE = {
    "name": "n",
    "datacenters": [{"name": "east"}, {"name": "mid"}, {"name": "west"}],
    "links": [
        {"a": "east", "b": "west", "rtt": "180 ms", "bandwidth": "5 Gbit/s"},
        {"a": "east", "b": "mid", "rtt": "60 ms", "bandwidth": "5 Gbit/s"},
        {"a": "mid", "b": "west", "rtt": "120 ms", "bandwidth": "300 Mbit/s", "loss": "0%"},
    ],
    "clients": [{"name": "ce", "datacenter": "east", "access": {"rtt": "1 ms"}},
                {"name": "cw", "datacenter": "west", "access": {"rtt": "1 ms"}}],
    "tcp": {"rwnd": "4 MiB"},
    "relay": {"parallel": 4},
    "sessions": [{"id": "s", "publisher": "ce", "subscribers": ["cw"],
                  "workload": {"type": "bulk", "size": "1 GB"}}],
}


def test_hop_capacity_is_p_windows_over_rtt_capped_by_bandwidth():
    net = NetworkState.from_scenario(parse_scenario(BASE))
    east_west = net.hop_rate("east", "west")
    assert east_west.limited_by == "window"
    assert east_west.rate_mbps == pytest.approx(4 * 4 * 2**20 * 8 / 0.180 / 1e6)
    mid_west = net.hop_rate("mid", "west")
    assert (mid_west.limited_by, mid_west.rate_mbps) == ("bandwidth", 300.0)
    assert net.graph["mid"]["west"]["capacity_mbps"] == 300.0


def test_direct_path_defaults_to_access_plus_lowest_rtt_overlay_route():
    net = NetworkState.from_scenario(parse_scenario(BASE))
    path = net.internet_path("ce", "cw")
    assert path.rtt_ms == pytest.approx(1 + 180 + 1)
    assert net.direct_rate("ce", "cw").rate_mbps == pytest.approx(4 * 2**20 * 8 / 0.182 / 1e6)


def test_explicit_internet_path_wins():
    s = parse_scenario({**BASE, "internet": [{"a": "ce", "b": "cw", "rtt": "250 ms",
                                               "bandwidth": "1 Gbit/s", "loss": "1%"}]})
    net = NetworkState.from_scenario(s)
    assert net.internet_path("cw", "ce").rtt_ms == 250.0
    assert net.direct_rate("ce", "cw").limited_by == "loss"


def test_snapshots_are_values():
    net = NetworkState.from_scenario(parse_scenario(BASE))
    worse = net.with_links({("east", "west"): net.links[("east", "west")].__class__(400.0, 5000.0)})
    assert worse.capacity_mbps("east", "west") < net.capacity_mbps("east", "west")
    assert net.links[("east", "west")].rtt_ms == 180.0
    assert "mid" not in net.without("mid").datacenters
    assert all("mid" not in e for e in net.without("mid").links)
