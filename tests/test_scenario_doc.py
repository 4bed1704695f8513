"""docs/scenario.md is the schema's own account of itself, and the tutorial's scenario runs."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from stemflow.scenario import Scenario, load_scenario
from stemflow.scenario_doc import _models, main, render

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = ROOT / "docs" / "scenario-tutorial.md"


def test_docs_scenario_md_is_up_to_date():
    """Regenerate with `stemflow scenario-doc --out docs/scenario.md` when this fails."""
    assert (ROOT / "docs" / "scenario.md").read_text() == render()


def test_every_field_has_a_description_and_appears():
    text = render()
    for model in _models(Scenario):
        assert f"## {model.__name__}" in text
        for name, info in model.model_fields.items():
            if not info.exclude:
                assert info.description, f"{model.__name__}.{name} has no docstring"
                assert f"`{name}`" in text


def test_units_and_defaults_are_shown():
    text = render()
    assert "| `rwnd` / `rwnd_bytes` | number | bytes | `6291456` |" in text
    assert "| `rtt` / `rtt_ms` | number | ms | required |" in text
    assert "| `parallel` | integer |  | `4` |" in text


def test_cli_writes_the_file(tmp_path):
    out = tmp_path / "scenario.md"
    assert main(["--out", str(out)]) == 0
    assert out.read_text() == render()


def _yaml_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", TUTORIAL.read_text(), re.S)


def test_the_tutorials_steps_add_up_to_its_whole_file():
    *steps, whole = _yaml_blocks()
    merged: dict = {}
    for block in steps:
        merged.update(yaml.safe_load(block))
    assert merged == yaml.safe_load(whole)


def test_the_tutorials_scenario_loads_and_simulates(tmp_path, capsys):
    from stemflow.sim.__main__ import main as sim

    (tmp_path / "data").symlink_to(ROOT / "scenarios" / "data")
    path = tmp_path / "tutorial-4dc.yaml"
    path.write_text(_yaml_blocks()[-1])
    s = load_scenario(path)
    assert len(s.datacenters) == 4 and {x.kind for x in s.sessions} == {"unicast", "multicast"}
    assert sim([str(path), "--out", str(tmp_path / "out"), "--no-plots", "--quiet"]) == 0
