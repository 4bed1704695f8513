"""`stemflow plan`: every shipped scenario plans, --json is one object, mistakes exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from stemflow.routing.cli import main

ROOT = Path(__file__).parent.parent
SCENARIOS = sorted((ROOT / "scenarios").glob("*.yaml"))


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_plan_every_shipped_scenario(path, capsys):
    assert main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "sessions" in out and "time" in out


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_json_has_the_documented_keys(path, capsys):
    assert main([str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {"sessions", "links", "bound_mbps", "solve_s", "unrouted", "unproven"} <= set(data)
    for s in data["sessions"]:
        assert {"id", "rate_mbps"} <= set(s)
        assert ("paths" in s) != ("trees" in s)
        for p in s.get("paths", []):
            assert len(p["hops"]) >= 1 and p["rate_mbps"] >= 0
        for t in s.get("trees", []):
            assert all(len(e) == 2 for e in t["edges"])
    assert set(data["bound_mbps"]) == {s["id"] for s in data["sessions"]}
    for link in data["links"]:
        assert link["used_mbps"] <= link["capacity_mbps"] * (1 + 1e-6)


def test_every_strategy_and_solver_from_the_command_line(capsys):
    fig1 = str(ROOT / "scenarios" / "fig1-broadcast-5dc.yaml")
    for strategy in ("direct", "shortest", "widest", "multipath", "multicast"):
        assert main([fig1, "--strategy", strategy, "--json"]) == 0
        data = json.loads(capsys.readouterr().out)
        assert data["strategy"] == strategy
    assert main([fig1, "--solver", "cbc", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["solver"] == "cbc"
    gcp = str(ROOT / "scenarios" / "gcp-8-regions.yaml")
    assert main([gcp, "--strategy", "multipath", "--fair-levels", "1", "--max-paths", "3",
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert max(len(s["paths"]) for s in data["sessions"]) <= 3


def test_json_from_a_real_process_is_exactly_one_object():
    # The first HiGHS instance of a process prints a banner to fd 1; it must not leak.
    fig1 = ROOT / "scenarios" / "fig1-broadcast-5dc.yaml"
    run = subprocess.run([sys.executable, "-m", "stemflow.cli", "plan", str(fig1), "--json"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    json.loads(run.stdout)


def test_bad_scenario_exits_2_with_one_clear_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "scenarios" / "fig1-broadcast-5dc.yaml").read_text()
                   .replace("bandwidth_csv:", "bandwith_csv:"))
    assert main([str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "bandwith_csv" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_unknown_strategy_and_missing_file_exit_2(tmp_path):
    fig1 = ROOT / "scenarios" / "fig1-broadcast-5dc.yaml"
    for args in ([str(fig1), "--strategy", "fastest"], [str(tmp_path / "nope.yaml")]):
        run = subprocess.run([sys.executable, "-m", "stemflow.cli", "plan", *args],
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 2
        assert "Traceback" not in run.stderr and run.stderr.startswith("stemflow plan:")


def _sparse_scenario(tmp_path, budget_ms: float | None) -> str:
    """Four datacenters in a line a-b-c-d: the only route a->d crosses two relays, a 3 ms
    budget cannot be met."""
    import yaml

    session = {"id": "far", "publisher": "ca", "subscribers": ["cd"],
               "workload": {"type": "bulk", "size": "1 GB"}}
    if budget_ms is not None:
        session["latency_budget_ms"] = budget_ms
    data = {"name": "line", "datacenters": [{"name": n} for n in "abcd"],
            "links": [{"a": a, "b": b, "rtt_ms": 10, "bandwidth_mbps": 100}
                      for a, b in ("ab", "bc", "cd")],
            "clients": [{"name": "ca", "datacenter": "a"}, {"name": "cd", "datacenter": "d"}],
            "sessions": [session]}
    path = tmp_path / "line.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_strict_names_the_session_without_a_route_and_exits_1(tmp_path, capsys):
    path = _sparse_scenario(tmp_path, budget_ms=3)
    assert main([path]) == 0
    assert "session 'far': no path meets its latency budget of 3 ms" in capsys.readouterr().err
    assert main([path, "--strict"]) == 1
    capsys.readouterr()
    assert main([path, "--strict", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert set(data["unrouted"]) == {"far"}


def test_json_lists_every_link_used_or_not(tmp_path, capsys):
    path = _sparse_scenario(tmp_path, budget_ms=None)
    assert main([path, "--json", "--strict"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["links"]) == 6
    unused = [ln for ln in data["links"] if ln["used_mbps"] == 0]
    assert len(unused) == 3 and all(ln["capacity_mbps"] > 0 for ln in unused)
    assert data["unrouted"] == {}
    assert data["sessions"][0]["rate_mbps"] > 0
