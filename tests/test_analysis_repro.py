"""The reproduction command end to end, in sim-only quick mode, with the real simulator."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
REPRODUCE = REPO / "papers" / "stemflow-infocom17-demo" / "reproduce.py"

pytestmark = pytest.mark.slow


def test_reproduce_quick_sim_only(tmp_path: Path) -> None:
    if importlib.util.find_spec("stemflow.sim.__main__") is None:
        pytest.fail("the simulator (python -m stemflow.sim) is not installed")
    env = {k: v for k, v in os.environ.items() if k not in ("STEMFLOW_EMU", "STEMFLOW_SIM_MODULE")}
    report = tmp_path / "report" / "REPORT.md"
    done = subprocess.run([sys.executable, str(REPRODUCE), "--quick", "--no-progress", "--out",
                           str(tmp_path / "out"), "--report", str(report)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    text = report.read_text()
    for heading in ("## The claim", "## Table I: the paper's numbers beside ours",
                    "## Parameters and where each comes from", "## What matched, what did not, and why",
                    "### Gain vs parallel connections per hop (P)", "### Gain vs TCP window cap",
                    "### Gain vs random loss", "### Multicast vs unicast for the Fig. 1 broadcast",
                    "## Fig. 1: a live video broadcast across five datacenters", "## Commands"):
        assert heading in text
    assert "emulation: not requested" in text

    tables = tmp_path / "out" / "analysis" / "tables"
    strategies = pd.read_csv(tables / "strategies.csv")
    t1 = strategies[(strategies["scenario"] == "table1-us-east-asia-east")
                    & strategies["config"].isna()].set_index("strategy")
    assert {"direct", "multipath"} <= set(t1.index)
    # The report's Table I row for direct throughput carries the simulated value, as printed.
    direct = t1.loc["direct", "throughput_mbps"]
    assert f"| direct TCP throughput (Mbit/s) | 181.0 | {direct:,.1f} |" in text
    gain_p = pd.read_csv(tables / "gain-relay.parallel.csv")
    assert sorted(gain_p["relay.parallel"].unique()) == [1, 4, 16]
    for name in ("gain-tcp.rwnd_bytes", "gain-loss", "multicast"):
        assert (tables / f"{name}.csv").exists(), name
    for line in text.splitlines():
        if line.startswith("!["):
            target = line[line.index("](") + 2:-1]
            assert (report.parent / target).exists(), target


def test_emulated_sessions_failing_delivery_are_left_out(tmp_path: Path) -> None:
    import importlib.util as iu

    from stemflow.results import metric_row, write_manifest, write_results

    sys.path.insert(0, str(REPRODUCE.parent))
    try:
        spec = iu.spec_from_file_location("reproduce_under_test", REPRODUCE)
        mod = iu.module_from_spec(spec)
        sys.modules[spec.name] = mod  # dataclasses look their module up
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(REPRODUCE.parent))
        sys.modules.pop("reproduce_under_test", None)
    raw = tmp_path / "raw"
    rows = [metric_row("r", "emu", "t1", st, se, "bulk", m, 1.0)
            for st in ("direct", "multipath") for se, m in (("bulk-1GB", "throughput_mbps"),
                                                            ("msg-1KB", "rr_latency_ms"))]
    write_results(raw / "results.csv", rows)
    delivery = [{"strategy": st, "session": se, "received": 10 if ok else 9, "expected": 10, "in_order": ok,
                 "duplicates": 0, "missing_first": []}
                for st, se, ok in (("direct", "bulk-1GB", True), ("multipath", "bulk-1GB", False),
                                   ("multipath", "msg-1KB", True))]
    write_manifest(raw / "manifest.json", {"mode": "emu", "rate_scale": 0.25, "delivery": delivery})
    kept, dropped = mod.checked_copy(raw, tmp_path / "checked")
    assert kept == 3
    assert dropped == ["multipath bulk-1GB (9/10 delivered, in order: False, duplicates: 0)"]
    out = pd.read_csv(tmp_path / "checked" / "results.csv")
    assert not ((out["strategy"] == "multipath") & (out["session"] == "bulk-1GB")).any()
