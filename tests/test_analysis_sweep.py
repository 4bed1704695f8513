"""Tests of the sweep grammar, wildcard expansion and validation (no simulator needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from stemflow.analysis.__main__ import main
from stemflow.analysis.sweep import SweepError, SweepPoint, grid, parse_spec, sim_command, validate

from stemflow.scenario import load_scenario

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
TABLE1 = SCENARIOS / "table1-us-east-asia-east.yaml"


def test_parse_spec_values() -> None:
    assert parse_spec("relay.parallel=1,2,4") == ("relay.parallel", [1, 2, 4])
    assert parse_spec("links.*.loss=0,1e-3") == ("links.*.loss", [0, 0.001])
    assert parse_spec("tcp.rwnd=4 MB,8 MB") == ("tcp.rwnd", ["4 MB", "8 MB"])
    for bad in ("relay.parallel", "=1,2", "relay.parallel="):
        with pytest.raises(SweepError, match="expected FIELD=V1,V2"):
            parse_spec(bad)


def test_grid_is_factorial_with_labels() -> None:
    pts = grid(["relay.parallel=1,2", "tcp.rwnd_bytes=1000000,2000000"])
    assert [dict(p.updates) for p in pts] == [
        {"relay.parallel": 1, "tcp.rwnd_bytes": 1000000}, {"relay.parallel": 1, "tcp.rwnd_bytes": 2000000},
        {"relay.parallel": 2, "tcp.rwnd_bytes": 1000000}, {"relay.parallel": 2, "tcp.rwnd_bytes": 2000000}]
    assert pts[0].name == "relay.parallel=1__tcp.rwnd_bytes=1000000"
    with pytest.raises(SweepError, match="swept twice"):
        grid(["relay.parallel=1", "relay.parallel=2"])


def test_wildcard_sweep_validates_and_sets_every_link() -> None:
    s = load_scenario(TABLE1)
    validate(s, [SweepPoint({"links.*.loss": 0.001})])
    assert all(ln.loss == 0.001 for ln in s.with_updates({"links.*.loss": 0.001}).links)
    assert "links.*.loss=0.001" in sim_command(str(TABLE1), {"links.*.loss": 0.001}, "out")


def test_validate_rejects_unknown_fields_and_values() -> None:
    s = load_scenario(TABLE1)
    validate(s, [SweepPoint({"relay.parallel": 8})])
    with pytest.raises(SweepError, match="relay.paralel"):
        validate(s, [SweepPoint({"relay.paralel": 8})])
    with pytest.raises(SweepError, match="relay.parallel"):
        validate(s, [SweepPoint({"relay.parallel": 0})])
    with pytest.raises(SweepError, match="not a list"):
        validate(s, [SweepPoint({"relay.*": 1})])


def test_sweep_cli_bad_field_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rc = main(["sweep", str(TABLE1), "--sweep", "relay.paralel=1,2", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1


@pytest.mark.slow
def test_sweep_cli_runs_the_simulator_and_plots_the_gain(tmp_path: Path) -> None:
    rc = main(["sweep", str(TABLE1), "--sweep", "relay.parallel=1,3", "--out", str(tmp_path / "s"),
               "--no-progress"])
    assert rc == 0
    import json

    import pandas as pd

    for p in (1, 3):
        manifest = json.loads((tmp_path / "s" / f"relay.parallel={p}" / "manifest.json").read_text())
        assert manifest["sweep"] == {"relay.parallel": p} and manifest["parallel"] == p
    gain = pd.read_csv(tmp_path / "s" / "analysis" / "tables" / "gain-relay.parallel.csv")
    mp = gain[gain["strategy"] == "multipath"].set_index("relay.parallel")["gain"]
    assert mp[3] > 2 * mp[1]  # three connections on the relay hop carry well over twice one
    figs = tmp_path / "s" / "analysis" / "figures"
    assert (figs / "gain-relay.parallel-table1-us-east-asia-east-sim.png").exists()
