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
    assert {"sessions", "links", "bound_mbps", "solve_s"} <= set(data)
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
