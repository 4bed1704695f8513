"""Exact or fast max-min fairness: the automatic choice by size, forcing either one, and that the
choice is visible (plan stats, `stemflow plan`, the simulator's manifest) and settable from a
scenario."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml
from routing_nets import demand, network

from stemflow.routing import RoutingOptions, make_plan, registry
from stemflow.routing.cli import main as plan_main
from stemflow.scenario import ScenarioError, parse_scenario

ROOT = Path(__file__).parent.parent


def test_auto_switches_at_the_threshold():
    limit = registry.AUTO_EXACT_UP_TO
    links = 100
    at, above = limit // links, limit // links + 1
    exact, label = RoutingOptions().configured(at, links)
    assert (exact.max_paths, exact.fair_levels) == (None, None)
    assert label.startswith("exact (auto:")
    fast, label = RoutingOptions().configured(above, links)
    assert (fast.max_paths, fast.fair_levels) == (registry.FAST_MAX_PATHS, registry.FAST_FAIR_LEVELS)
    assert label.startswith("fast (auto:") and f"{above} commodities x {links} links" in label


def test_forced_configurations_ignore_size_and_keep_the_callers_knobs():
    big = registry.AUTO_EXACT_UP_TO + 1
    options, label = RoutingOptions(fairness="exact").configured(big, 1)
    assert (options.max_paths, options.fair_levels, label) == (None, None, "exact")
    options, label = RoutingOptions(fairness="fast").configured(1, 1)
    assert (options.max_paths, options.fair_levels, label) == (8, 2, "fast")
    options, label = RoutingOptions(fairness="fast", max_paths=4).configured(1, 1)
    assert (options.max_paths, options.fair_levels) == (4, 2)
    assert label == "custom: max_paths=4, fair_levels=2"


def three_levels():
    """Max-min levels 1 (x->y), 2 (p->q), then 5 for three sessions sharing a->b->c. Filling
    stopped after two levels gives the rest to throughput: a->b and b->c get 8, a->c only 2."""
    net = network({("x", "y"): (10, 1), ("p", "q"): (10, 2), ("a", "b"): (10, 10),
                   ("b", "c"): (10, 10)})
    demands = [demand("xy", "x", "y"), demand("pq", "p", "q"), demand("ac", "a", "c"),
               demand("ab", "a", "b"), demand("bc", "b", "c")]
    return net, demands


def rates(plan):
    return {s: sp.rate_mbps for s, sp in plan.sessions.items()}


EXACT_RATES = {"xy": 1, "pq": 2, "ac": 5, "ab": 5, "bc": 5}
FAST_RATES = {"xy": 1, "pq": 2, "ac": 2, "ab": 8, "bc": 8}


def test_plan_follows_and_records_the_automatic_choice(monkeypatch):
    net, demands = three_levels()
    size = 5 * len(net.links)  # five commodities
    monkeypatch.setattr(registry, "AUTO_EXACT_UP_TO", size)
    plan = make_plan(net, demands, "multipath")
    assert rates(plan) == pytest.approx(EXACT_RATES, rel=1e-6)
    assert plan.stats.config == f"exact (auto: 5 commodities x 4 links <= {size})"
    monkeypatch.setattr(registry, "AUTO_EXACT_UP_TO", size - 1)
    plan = make_plan(net, demands, "multipath")
    assert rates(plan) == pytest.approx(FAST_RATES, rel=1e-6)
    assert plan.stats.config == f"fast (auto: 5 commodities x 4 links > {size - 1})"


def test_forcing_exact_on_a_big_case_still_gives_exact(monkeypatch):
    monkeypatch.setattr(registry, "AUTO_EXACT_UP_TO", 0)  # every case is big
    net, demands = three_levels()
    plan = make_plan(net, demands, "multipath", RoutingOptions(fairness="exact"))
    assert rates(plan) == pytest.approx(EXACT_RATES, rel=1e-6)
    assert plan.stats.config == "exact"
    plan = make_plan(net, demands, "multicast", RoutingOptions(fairness="exact"))
    assert plan.stats.config == "exact"
    assert make_plan(net, demands, "shortest").stats.config == ""


def test_forcing_fast_on_a_small_case_gives_fast():
    net, demands = three_levels()
    plan = make_plan(net, demands, "multipath", RoutingOptions(fairness="fast"))
    assert rates(plan) == pytest.approx(FAST_RATES, rel=1e-6)
    assert plan.stats.config == "fast"


def scenario_data(fairness: str | None) -> dict:
    data = yaml.safe_load((ROOT / "scenarios" / "gcp-8-regions.yaml").read_text())
    for key in ("rtt_csv", "bandwidth_csv"):
        data["mesh"][key] = str(ROOT / "scenarios" / data["mesh"][key])
    if fairness is not None:
        data["routing"] = {"fairness": fairness}
    return data


def test_a_scenario_sets_fairness_and_rejects_unknown_values():
    assert parse_scenario(scenario_data(None)).routing.fairness == "auto"
    assert parse_scenario(scenario_data("fast")).routing.fairness == "fast"
    with pytest.raises(ScenarioError, match=r"routing\.fairness: .*'exact', 'fast' or 'auto'"):
        parse_scenario(scenario_data("quick"))
    bad = scenario_data("fast")
    bad["routing"]["levels"] = 2
    with pytest.raises(ScenarioError, match=r"routing\.levels: unknown key"):
        parse_scenario(bad)


def test_stemflow_plan_prints_the_configuration_the_scenario_forces(tmp_path, capsys):
    path = tmp_path / "gcp-fast.yaml"
    path.write_text(yaml.safe_dump(scenario_data("fast")))
    assert plan_main([str(path)]) == 0
    assert "\nfairness  fast\n" in capsys.readouterr().out + "\n"
    assert plan_main([str(path), "--fairness", "exact", "--json"]) == 0
    assert '"config": "exact"' in capsys.readouterr().out
    assert plan_main([str(ROOT / "scenarios" / "gcp-8-regions.yaml")]) == 0
    assert "fairness  exact (auto: 56 commodities x 56 links" in capsys.readouterr().out


def test_the_simulator_routes_with_the_scenarios_fairness():
    from stemflow.sim.runner import run_strategy

    for fairness in ("fast", "exact"):
        scenario = parse_scenario(scenario_data(fairness))
        run = run_strategy(scenario, "multipath", scenario.seed, "test")
        assert set(run.configs) == {fairness} and run.configs[fairness] >= 1
    assert math.isfinite(run.sim_end_s)
