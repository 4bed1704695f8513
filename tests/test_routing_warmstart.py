"""Starting columns for unicast column generation (`warmstart.congestion_paths`)."""

from __future__ import annotations

from routing_nets import network

from stemflow.routing.pricing import PathPricing
from stemflow.routing.warmstart import congestion_paths


def _start(net, sessions, rounds=16):
    links = sorted(net.links)
    pricing = PathPricing(net.datacenters, links, [net.links[e].rtt_ms for e in links], [])
    return congestion_paths(pricing, [net.capacity_mbps(*e) for e in links], sessions, rounds)


def test_a_narrow_direct_link_sends_later_rounds_around_it() -> None:
    # a -> c is fast but narrow; the relays b and d are slower and wide.
    net = network({("a", "c"): (10.0, 10.0), ("a", "b"): (20.0, 1000.0),
                   ("b", "c"): (20.0, 1000.0), ("a", "d"): (30.0, 1000.0),
                   ("d", "c"): (30.0, 1000.0)})
    paths = _start(net, {("a", "c"): 5})[("a", "c")]
    assert paths[0] == ("a", "b", "c")  # lengths start at 1 / capacity: the wide path first
    assert set(paths) == {("a", "c"), ("a", "b", "c"), ("a", "d", "c")}


def test_one_round_gives_one_path_per_reachable_pair_and_none_to_the_others() -> None:
    net = network({("a", "b"): (10.0, 100.0), ("b", "a"): (10.0, 100.0),
                   ("b", "c"): (10.0, 100.0)})
    got = _start(net, {("a", "b"): 1, ("c", "a"): 1}, rounds=1)
    assert got == {("a", "b"): (("a", "b"),), ("c", "a"): ()}
