"""Scenario loading: shipped files load, and each class of user mistake names its field."""

import copy
from pathlib import Path

import pytest
import yaml

from stemflow.scenario import ScenarioError, load_scenario, parse_scenario

SCENARIOS = sorted((Path(__file__).parent.parent / "scenarios").glob("*.yaml"))

GOOD = {
    "name": "t",
    "datacenters": [{"name": "east"}, {"name": "west"}, {"name": "asia"}],
    "links": [
        {"a": "east", "b": "west", "rtt": "60 ms", "bandwidth": "5 Gbit/s"},
        {"a": "west", "b": "asia", "rtt": "120 ms", "bandwidth": "5 Gbit/s"},
    ],
    "clients": [{"name": "ce", "datacenter": "east"}, {"name": "cw", "datacenter": "west"},
                {"name": "ca", "datacenter": "asia"}],
    "sessions": [{"id": "s", "publisher": "ce", "subscribers": ["ca"],
                  "workload": {"type": "bulk", "size": "1 GB"}}],
}


def bad(edit) -> ScenarioError:
    data = copy.deepcopy(GOOD)
    edit(data)
    with pytest.raises(ScenarioError) as info:
        parse_scenario(data, source="bad.yaml")
    return info.value


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_shipped_scenarios_load(path):
    s = load_scenario(path)
    assert s.sessions and len(s.datacenters) >= 2


def test_good_scenario_parses_units():
    s = parse_scenario(GOOD)
    assert s.links[0].rtt_ms == 60.0 and s.links[0].bandwidth_mbps == 5000.0
    assert s.sessions[0].workload.size_bytes == 1e9


def test_unknown_datacenter_in_a_link():
    e = bad(lambda d: d["links"][1].update(b="mars"))
    assert e.field == "links.1.b"
    assert "mars" in str(e) and "bad.yaml" in str(e)


def test_negative_rate():
    e = bad(lambda d: d["links"][0].update(bandwidth="-5 Gbit/s"))
    assert e.field == "links.0.bandwidth_mbps"
    assert "greater than 0" in e.problem


def test_multicast_session_without_subscribers():
    def edit(d):
        d["sessions"][0].update(kind="multicast", subscribers=[])
    e = bad(edit)
    assert e.field == "sessions.0.subscribers"
    assert "subscriber" in e.problem


def test_typo_in_a_key_is_rejected():
    e = bad(lambda d: d["sessions"][0].update(subscibers=["ca"]))
    assert e.field.startswith("sessions.0")
    assert "subscibers" in str(e) or "subscribers" in str(e)
    e = bad(lambda d: d["links"][0].update(bandwith="5 Gbit/s"))
    assert e.field == "links.0.bandwith"
    assert "unknown key" in e.problem


def test_overlay_that_is_not_connected():
    e = bad(lambda d: d["links"].pop(1))
    assert e.field == "links"
    assert "not connected" in e.problem and "asia" in e.problem


def test_bad_unit():
    e = bad(lambda d: d["links"][0].update(rtt="60 parsecs"))
    assert "rtt" in str(e) or "links.0" in str(e)
    assert "parsecs" in str(e)


def test_unreadable_and_malformed_files(tmp_path):
    with pytest.raises(ScenarioError, match="no such file"):
        load_scenario(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    with pytest.raises(ScenarioError, match="not valid YAML"):
        load_scenario(broken)
    listed = tmp_path / "list.yaml"
    listed.write_text(yaml.safe_dump([GOOD]))
    with pytest.raises(ScenarioError, match="mapping"):
        load_scenario(listed)


def test_misspelled_key_says_did_you_mean_and_not_missing():
    def edit(d):
        d["sessions"][0]["worklaod"] = d["sessions"][0].pop("workload")
    e = bad(edit)
    assert e.field == "sessions.0.worklaod"
    assert "did you mean 'workload'?" in e.problem
    assert "missing" not in e.problem and "more problems" not in e.problem
    e = bad(lambda d: d["links"][0].update(bandwith="5 Gbit/s"))
    assert "did you mean 'bandwidth'?" in e.problem


@pytest.mark.parametrize(("edit", "says"), [
    (lambda d: d["links"][0].update(rtt="0 ms"), "greater than 0"),
    (lambda d: d["links"][0].update(bandwidth="1e400 Gbit/s"), "finite"),
    (lambda d: (d["links"][0].pop("bandwidth"), d["links"][0].update(bandwidth_mbps=float("inf"))), "finite"),
    (lambda d: d["sessions"][0]["workload"].update(size="1e30 GB"), "larger than any real size"),
    (lambda d: d["sessions"][0]["workload"].update(size="10^30 GB"), "expected a size"),
    (lambda d: d["sessions"][0]["workload"].update(size="1 Mb"), "ambiguous"),
])
def test_absurd_quantities_are_rejected(edit, says):
    assert says in str(bad(edit))


def test_a_binary_file_is_one_clear_error(tmp_path):
    blob = tmp_path / "blob.yaml"
    blob.write_bytes(bytes(range(256)))
    with pytest.raises(ScenarioError, match="not a text file"):
        load_scenario(blob)


def test_overrides_take_wildcards_and_unit_strings():
    s = parse_scenario(copy.deepcopy(GOOD))
    t = s.with_updates({"links.*.loss": 0.001, "tcp.rwnd": "8 MB", "relay.parallel": 8})
    assert [ln.loss for ln in t.links] == [0.001, 0.001]
    assert t.tcp.rwnd_bytes == 8e6 and t.relay.parallel == 8
    for updates, says in (({"relay.paralel": 2}, "did you mean 'parallel'"),
                          ({"relay.*": 1}, "not a list"), ({"links.9.loss": 0}, "no index 9"),
                          ({"links.x.loss": 0}, "use an index")):
        with pytest.raises(ScenarioError, match=says):
            s.with_updates(updates)
