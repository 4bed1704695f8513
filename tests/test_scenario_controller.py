"""Where the controller runs: the scenario's `controller` block and each relay's round trip to it."""

from __future__ import annotations

import pytest
from stemflow.sim.params import ModelParameters

from stemflow.controller_site import controller_rtts_ms
from stemflow.network import LinkState, NetworkState
from stemflow.scenario import ScenarioError, parse_scenario


def _rtts(s) -> dict[str, float]:
    return controller_rtts_ms(NetworkState.from_scenario(s), s.controller.datacenter)


def _line(controller: dict | None = None, **parameters: float):
    """x -- y -- z (no x -- z link): 30 ms and 50 ms."""
    data = {
        "name": "line", "datacenters": [{"name": d} for d in "xyz"],
        "links": [{"a": "x", "b": "y", "rtt_ms": 30, "bandwidth_mbps": 1000},
                  {"a": "y", "b": "z", "rtt_ms": 50, "bandwidth_mbps": 1000}],
        "clients": [{"name": "cx", "datacenter": "x"}, {"name": "cz", "datacenter": "z"}],
        "sessions": [{"id": "s", "publisher": "cx", "subscribers": ["cz"],
                      "workload": {"type": "bulk", "size": "1 MB"}}],
        "parameters": parameters,
    }
    if controller is not None:
        data["controller"] = controller
    return parse_scenario(data, source="line.yaml")


def test_by_default_the_controller_is_beside_every_relay():
    s = _line()
    assert s.controller.datacenter is None
    assert _rtts(s) == {"x": 0.0, "y": 0.0, "z": 0.0}


def test_a_relay_without_a_direct_link_reaches_the_controller_over_the_shortest_rtt_path():
    assert _rtts(_line({"datacenter": "z"})) == {"x": 80.0, "y": 50.0, "z": 0.0}


def test_a_shorter_path_through_another_relay_beats_a_slow_direct_link():
    s = _line({"datacenter": "z"})
    net = NetworkState.from_scenario(s)
    slow = net.with_links({("x", "z"): LinkState(500.0, 1000.0), ("z", "x"): LinkState(500.0, 1000.0)})
    assert controller_rtts_ms(slow, "z")["x"] == 80.0


def test_an_unknown_controller_datacenter_names_the_field_and_the_known_ones():
    with pytest.raises(ScenarioError) as e:
        _line({"datacenter": "mars"})
    assert "controller.datacenter" in str(e.value) and "'x', 'y', 'z'" in str(e.value)


@pytest.mark.parametrize("name", ["controller_rtt_ms", "controller_decision_ms"])
def test_the_removed_controller_parameters_say_what_to_write_instead(name):
    with pytest.raises(ScenarioError) as e:
        ModelParameters.from_scenario(_line(**{name: 10.0}))
    assert "controller: {datacenter: NAME}" in str(e.value)
