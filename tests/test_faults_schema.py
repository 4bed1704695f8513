"""Faults in a scenario: each user mistake is one line naming its field; the timeline is ordered."""

import copy

import pytest

from stemflow.faults import describe, fault_edges, resumption, timeline
from stemflow.scenario import ScenarioError, parse_scenario

GOOD = {
    "name": "t",
    "datacenters": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
    "links": [{"a": "a", "b": "b", "rtt": "10 ms", "bandwidth": "1 Gbit/s"},
              {"a": "b", "b": "c", "rtt": "10 ms", "bandwidth": "1 Gbit/s"},
              {"a": "a", "b": "c", "rtt": "30 ms", "bandwidth": "1 Gbit/s"}],
    "clients": [{"name": "x", "datacenter": "a"}, {"name": "y", "datacenter": "c"}],
    "sessions": [{"id": "s", "publisher": "x", "subscribers": ["y"],
                  "workload": {"type": "bulk", "size": "100 MB"}}],
}


def scenario(*faults):
    data = copy.deepcopy(GOOD)
    data["faults"] = list(faults)
    return parse_scenario(data, source="f.yaml")


def error(*faults) -> str:
    with pytest.raises(ScenarioError) as info:
        scenario(*faults)
    return str(info.value)


def test_every_kind_loads_with_units():
    s = scenario({"type": "relay-kill", "at": "1 s", "relay": "b", "until": "3 s"},
                 {"type": "link-down", "at": "500 ms", "link": ["a", "c"], "until": "2 s"},
                 {"type": "link-degrade", "at": "4 s", "link": ["c", "a"], "bandwidth": "100 Mbit/s",
                  "rtt": "80 ms", "loss": "1%"},
                 {"type": "controller-stop", "at": "2 s", "until": "32 s"},
                 {"type": "partition", "at": "5 s", "until": "6 s", "datacenters": ["c"]})
    kill, down, degrade, stop, cut = s.faults
    assert (kill.at_s, kill.until_s, down.at_s) == (1.0, 3.0, 0.5)
    assert (degrade.bandwidth_mbps, degrade.rtt_ms, degrade.loss) == (100.0, 80.0, 0.01)
    assert stop.until_s == 32.0 and cut.datacenters == ["c"]
    assert describe(kill) == "relay b killed"
    assert describe(degrade) == "link c–a degraded (100 Mbit/s, 80 ms, 1.00% loss)"


@pytest.mark.parametrize("fault, message", [
    ({"type": "relay-kil", "at_s": 1, "relay": "b"},
     "f.yaml: faults.0.type: unknown fault type 'relay-kil' (did you mean 'relay-kill'?)"),
    ({"type": "relay-kill", "at_s": 1, "realy": "b"},
     "f.yaml: faults.0.realy: unknown key 'realy' (did you mean 'relay'?)"),
    ({"type": "relay-kill", "at_s": 1, "relay": "q"},
     "f.yaml: faults.0.relay: unknown datacenter 'q'; known: ['a', 'b', 'c']"),
    ({"type": "link-down", "at_s": 1, "link": ["a", "q"]},
     "f.yaml: faults.0.link.1: unknown datacenter 'q'; known: ['a', 'b', 'c']"),
    ({"type": "partition", "at_s": 1, "datacenters": ["a", "b", "c"]},
     "f.yaml: faults.0.datacenters: a partition needs datacenters on both sides of the cut"),
    ({"type": "link-degrade", "at_s": 1, "link": ["a", "b"]},
     "f.yaml: faults.0: a link-degrade needs at least one of 'bandwidth', 'rtt' or 'loss'"),
    ({"type": "relay-kill", "at": "5 s", "relay": "b", "until": "2 s"},
     "f.yaml: faults.0.until: ends at 2 s, not after it starts at 5 s"),
    ({"type": "relay-kill", "at": "1 parsec", "relay": "b"},
     "f.yaml: faults.0.at: unknown unit 'parsec'"),
    ({"type": "link-degrade", "at_s": 1, "link": ["a", "b"], "bandwith": "1 Mbit/s"},
     "f.yaml: faults.0.bandwith: unknown key 'bandwith' (did you mean 'bandwidth'?)"),
    ("kill b", "f.yaml: faults.0: expected a mapping that names its type"),
])
def test_mistakes_are_one_line_naming_the_field(fault, message):
    text = error(fault)
    assert text.startswith(message) and "\n" not in text


def test_a_link_that_does_not_exist():
    data = copy.deepcopy(GOOD)
    data["links"].pop()  # no a-c link
    data["faults"] = [{"type": "link-down", "at_s": 1, "link": ["a", "c"]}]
    with pytest.raises(ScenarioError, match=r"faults.0.link: no overlay link between 'a' and 'c'"):
        parse_scenario(data, source="f.yaml")


@pytest.mark.parametrize("first, second, what", [
    ({"type": "relay-kill", "at_s": 1, "relay": "b"},
     {"type": "relay-kill", "at_s": 3, "relay": "b"}, "relay"),
    ({"type": "link-down", "at_s": 1, "link": ["a", "b"], "until_s": 4},
     {"type": "link-degrade", "at_s": 3, "link": ["b", "a"], "loss": 0.1}, "link"),
    ({"type": "controller-stop", "at_s": 1, "until_s": 5},
     {"type": "controller-stop", "at_s": 4}, "controller"),
    ({"type": "partition", "at_s": 1, "datacenters": ["a"]},
     {"type": "partition", "at_s": 2, "until_s": 3, "datacenters": ["c"]}, "partition"),
])
def test_overlapping_faults_of_one_thing_are_refused(first, second, what):
    assert error(first, second).endswith(f"one at a time on the same {what}")


def test_faults_one_after_another_are_fine():
    s = scenario({"type": "relay-kill", "at_s": 1, "relay": "b", "until_s": 2},
                 {"type": "relay-kill", "at_s": 2, "relay": "b"},
                 {"type": "link-down", "at_s": 1, "link": ["a", "b"]})  # another thing at once
    assert len(s.faults) == 3


def test_timeline_orders_ends_before_starts_at_one_instant():
    s = scenario({"type": "relay-kill", "at_s": 2, "relay": "b", "until_s": 5},
                 {"type": "link-down", "at_s": 1, "link": ["a", "c"], "until_s": 2})
    assert [(e.at_s, e.index, e.starts) for e in timeline(s.faults)] == [
        (1.0, 1, True), (2.0, 1, False), (2.0, 0, True), (5.0, 0, False)]


def test_what_a_fault_touches():
    s = scenario({"type": "link-down", "at_s": 1, "link": ["c", "a"]},
                 {"type": "partition", "at_s": 2, "datacenters": ["b"]},
                 {"type": "relay-kill", "at_s": 3, "relay": "c"})
    edges = [("a", "b"), ("b", "a"), ("b", "c"), ("c", "b"), ("a", "c"), ("c", "a")]
    down, cut, kill = s.faults
    assert fault_edges(down, edges) == [("a", "c"), ("c", "a")]
    assert fault_edges(cut, edges) == [("a", "b"), ("b", "a"), ("b", "c"), ("c", "b")]
    assert fault_edges(kill, edges) == [("a", "c"), ("b", "c"), ("c", "a"), ("c", "b")]


def test_resumption_and_dip_from_samples():
    samples = [(0.0, 100.0), (1.0, 100.0), (1.5, 0.0), (2.0, 0.0), (2.5, 80.0), (3.0, 100.0)]
    assert resumption(samples, 1.2) == (1.3, 100.0)  # back at 2.5 s; fell to 0
    assert resumption([(0.0, 100.0), (1.0, 60.0), (2.0, 100.0)], 0.5) == (0.0, 40.0)  # never stopped
    assert resumption([(0.0, 100.0), (1.0, 0.0)], 0.5) == (None, 100.0)  # never came back
    late = [(0.0, 100.0), (1.0, 100.0), (1.8, 0.0), (1.9, 100.0)]
    assert resumption(late, 1.0)[0] == 0.0  # a gap 0.8 s after the fault is not its stall
    bursty = [(0.0, 100.0), (1.0, 0.0), (1.05, 100.0), (1.1, 0.0), (1.15, 0.0), (1.2, 100.0)]
    assert resumption(bursty, 1.0, min_stall=2)[0] == pytest.approx(0.2)  # one empty bin is rhythm


def test_faults_survive_the_round_trip_of_overrides():
    s = scenario({"type": "link-degrade", "at": "1 s", "link": ["a", "b"], "rtt": "50 ms"},
                 {"type": "relay-kill", "at": "2 s", "relay": "c", "until": "3 s"})
    again = s.with_updates({"faults.0.rtt_ms": 70})
    assert again.faults[0].rtt_ms == 70 and again.faults[0].loss is None
    assert again.faults[1] == s.faults[1]
