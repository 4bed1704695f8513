"""The wheel carries what the README runs: the shipped scenarios, their data, LICENSE and NOTICE."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from stemflow.scenario import ScenarioError, find_scenario, load_scenario, shipped_scenarios

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(REPO)],
                   check=True, capture_output=True, timeout=300)
    [whl] = out.glob("stemflow-*.whl")
    return zipfile.ZipFile(whl)


def test_wheel_ships_every_scenario_and_its_data(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    for path in sorted((REPO / "scenarios").rglob("*")):
        if path.suffix in (".yaml", ".csv"):
            assert f"stemflow/scenarios/{path.relative_to(REPO / 'scenarios')}" in names


def test_wheel_carries_license_and_notice(wheel: zipfile.ZipFile) -> None:
    licenses = {Path(n).name for n in wheel.namelist() if "/licenses/" in n}
    assert {"LICENSE", "NOTICE"} <= licenses
    meta = next(n for n in wheel.namelist() if n.endswith("/METADATA"))
    assert "License-Expression: Apache-2.0" in wheel.read(meta).decode()


def test_notice_credits_the_source_of_the_shipped_data() -> None:
    notice = (REPO / "NOTICE").read_text()
    for csv in (REPO / "scenarios" / "data").glob("*.csv"):
        assert csv.name in notice
    assert "Skyplane" in notice and "Apache License" in notice


def test_a_shipped_scenario_is_found_by_name_from_anywhere(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no scenarios/ folder here, as after `pip install`
    assert "table1-us-east-asia-east" in shipped_scenarios()
    for name in ("table1-us-east-asia-east", "scenarios/table1-us-east-asia-east.yaml"):
        assert load_scenario(name).name == "table1-us-east-asia-east"
    with pytest.raises(ScenarioError, match="shipped: .*table1-us-east-asia-east"):
        find_scenario("tabel1")
