"""The emulated network a scenario becomes (pure planning; no namespaces are created)."""

from __future__ import annotations

from pathlib import Path

import pytest
from emu_support import two_dc
from stemflow.emu.links import (
    CheckedTCIntf,
    LinkBackendError,
    LinkShape,
    NetemLink,
    Shape,
    link_class,
    netem_available,
)
from stemflow.emu.topology import TopologyError, plan_topology

from stemflow.network import NetworkState
from stemflow.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]


def test_two_datacenters_make_relays_clients_controller_and_four_kinds_of_link():
    plan = plan_topology(two_dc(rate_mbps=80, rtt_ms=30), run_id="ab12")
    assert [h.role for h in plan.hosts] == ["relay", "relay", "client", "client", "controller"]
    assert all(h.name.startswith("sfab12") for h in plan.hosts)
    assert {k: len(plan.links_of(k)) for k in ("overlay", "access", "internet", "control")} == {
        "overlay": 1, "access": 2, "internet": 1, "control": 2}
    assert all(ln.shape is None for ln in plan.links_of("control"))
    overlay = plan.links_of("overlay")[0]
    assert overlay.shape == LinkShape.symmetric(80, 30)


def test_a_controller_in_a_datacenter_is_each_relays_round_trip_away():
    """Table I with the controller in us-west1: each relay's control link has its RTT to
    us-west1 (the simulator charges the same), and us-west1's relay is beside it (plain veth)."""
    s = load_scenario(ROOT / "scenarios" / "table1-us-east-asia-east.yaml")
    plan = plan_topology(s, rate_scale=0.5)
    label = {h.name: h.label for h in plan.hosts}
    shapes = {label[ln.b]: ln.shape for ln in plan.links_of("control")}
    assert shapes["us-west1"] is None
    assert shapes["us-east1"] == LinkShape.symmetric(0.0, 64.0)  # unlimited rate, scaled or not
    assert shapes["asia-east1"] == LinkShape.symmetric(0.0, 120.0)


def test_internet_link_has_the_networks_internet_path():
    s = two_dc(rate_mbps=80, rtt_ms=30)
    plan = plan_topology(s)
    path = NetworkState.from_scenario(s).internet_path("ca", "cb")
    shape = plan.links_of("internet")[0].shape
    assert shape.ab == Shape(path.bandwidth_mbps, path.rtt_ms / 2, path.loss)
    assert path.rtt_ms == pytest.approx(30 + 2 * 1.0)  # access hops of 1 ms RTT each side


def test_rate_scale_multiplies_every_rate_and_the_window_cap_only():
    s = two_dc(rate_mbps=80, rtt_ms=30)
    full, half = plan_topology(s, 1.0), plan_topology(s, 0.5)
    for a, b in zip(full.links, half.links, strict=True):
        if a.shape is None:
            continue
        assert b.shape.ab.rate_mbps == pytest.approx(a.shape.ab.rate_mbps * 0.5)
        assert b.shape.ab.delay_ms == a.shape.ab.delay_ms
    assert half.window_cap_bytes == int(s.tcp.rwnd_bytes * 0.5)
    with pytest.raises(TopologyError):
        plan_topology(s, 0.0)


def test_every_host_routes_to_each_neighbour_over_their_link():
    plan = plan_topology(two_dc())
    relay_a, client_a = plan.host("A"), plan.host("ca")
    routes = {dest: gw for dest, gw, _ in plan.routes(relay_a.name)}
    access = next(ln for ln in plan.links_of("access") if client_a.name in (ln.a, ln.b))
    assert routes[client_a.address] == (access.address_a if access.a == client_a.name
                                        else access.address_b)
    assert plan.host("B").address in routes
    # no host has a route to a non-neighbour: a client cannot reach the far relay directly
    client_routes = {dest for dest, _, _ in plan.routes(client_a.name)}
    assert plan.host("B").address not in client_routes


def test_a_mesh_has_a_link_per_datacenter_pair_with_directed_rates():
    s = load_scenario(ROOT / "scenarios" / "gcp-8-regions.yaml")
    plan = plan_topology(s, 0.5)
    n = len(s.datacenters)
    assert len(plan.links_of("overlay")) == n * (n - 1) // 2
    net = NetworkState.from_scenario(s)
    ln = next(ln for ln in plan.links_of("overlay") if ln.shape.ab != ln.shape.ba)
    a = next(h.label for h in plan.hosts if h.name == ln.a)
    b = next(h.label for h in plan.hosts if h.name == ln.b)
    assert ln.shape.ab.rate_mbps == pytest.approx(net.links[(a, b)].bandwidth_mbps * 0.5)
    assert ln.shape.ba.rate_mbps == pytest.approx(net.links[(b, a)].bandwidth_mbps * 0.5)


def test_forcing_an_unavailable_backend_is_an_error_not_a_silent_fallback():
    if netem_available():
        pytest.skip("this kernel has netem")
    with pytest.raises(LinkBackendError, match="no sch_netem"):
        link_class("netem")
    assert link_class("auto").backend == "userspace"
    with pytest.raises(LinkBackendError, match="unknown link backend"):
        link_class("wires")


def test_netem_link_asks_tc_for_rate_delay_loss_and_queue_per_direction():
    link = NetemLink.__new__(NetemLink)  # the parameter mapping only; no namespaces needed
    link.shape = LinkShape(Shape(100.0, 20.0, 0.01), Shape(50.0, 25.0))
    p = link._intf_params({"params1": {"ip": "10.0.0.1/30"}})
    assert p["params1"] == {"ip": "10.0.0.1/30", "bw": 100.0, "delay": "20ms", "loss": 1.0,
                            # in flight one way (250 kB) + a queue of one BDP (500 kB)
                            "max_queue_size": 750_000 // 1500}
    assert p["params2"]["bw"] == 50.0 and p["params2"]["delay"] == "25ms"
    assert "loss" not in p["params2"]
    assert p["cls1"] is p["cls2"] is CheckedTCIntf
