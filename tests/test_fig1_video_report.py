"""The Fig. 1 video broadcast's saved results as read for docs/benchmarks.md and REPORT.md:
the highest bitrate sustained, the sim-vs-emu bands, and a section spliced in alone."""

from __future__ import annotations

import csv
import importlib.util as iu
import math
import sys
from pathlib import Path

from stemflow.analysis import fig1_video as fv

REPO = Path(__file__).resolve().parents[1]


def _row(mode: str, rep: int, bitrate: float, strategy: str, viewer: str, p95: float,
         freeze: float = 0.0, egress: float = math.nan) -> dict:
    r = dict.fromkeys(fv.COLUMNS, "")
    r.update(date="2026-12-07 20:00 UTC", commit="abc", machine="vm (2 cores)", rep=rep,
             bitrate_mbps=bitrate, rate_scale=0.01, seconds=10, load_before=1, load_after=2,
             emu_wall_s=80, mode=mode, strategy=strategy, viewer=viewer, propagation_ms=30.0,
             frames=300, p50_ms=p95 - 2, p95_ms=p95, freeze_ratio=freeze, deadline_miss_ratio=0.0,
             source_egress_mbps="" if math.isnan(egress) else egress)
    return r


def _rows() -> list[dict]:
    rows = []
    for mode, reps in (("emu", (1, 2)), ("sim", (1,))):
        for rep in reps:
            for b in (10.0, 20.0, 40.0):
                for s in fv.STRATEGIES:
                    # direct's far viewer breaks at 20 in run 2 (p95 beyond the deadline) and,
                    # in every run, froze at 40: an interval it cannot have sustained
                    far_p95 = 900.0 if (s == "direct" and mode == "emu" and rep == 2 and b == 20) else 90.0
                    far_freeze = 0.05 if (s == "direct" and b == 40) else 0.0
                    rows.append(_row(mode, rep, b, s, "viewer-near", 35.0, egress=2 * b * 1.05
                                     if mode == "emu" else 2 * b))
                    rows.append(_row(mode, rep, b, s, "viewer-far", far_p95, far_freeze))
    return rows


def _write(rows: list[dict], path: Path) -> Path:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fv.COLUMNS)
        w.writeheader()
        w.writerows(rows)
    return path


def test_highest_bitrate_sustained_is_the_last_of_an_unbroken_run_of_passes(tmp_path):
    rows = fv.load(_write(_rows(), tmp_path / "r.csv"))
    assert fv.highest_sustained(rows, "emu", "multicast", "viewer-far") == [40.0, 40.0]
    assert fv.highest_sustained(rows, "emu", "direct", "viewer-far") == [20.0, 10.0]
    assert fv.highest_sustained(rows, "sim", "direct", "viewer-far") == [20.0]
    par = fv.parity(rows)
    assert par["source_egress_mbps"] == (9, 9)  # +5% is inside ±10%
    assert par["highest_sustained_mbps"] == (5, 6)  # direct far: median 15 against 20
    section = fv.benchmark_section(rows)
    assert "| direct | 40 / 40 | 15 (10–20) / 20 |" in section.replace("viewer-near emu / sim | ", "")


def test_the_report_section_is_spliced_in_alone_with_its_figure(tmp_path):
    spec = iu.spec_from_file_location("fig1_video_under_test",
                                      REPO / "papers" / "stemflow-infocom17-demo" / "fig1_video.py")
    mod = iu.module_from_spec(spec)
    sys.modules[spec.name] = mod
    try:
        spec.loader.exec_module(mod)
        report = tmp_path / "REPORT.md"
        report.write_text("# R\n\n## Before\n\nkeep 1\n\n## Extensions\n\nkeep 2\n")
        results = _write(_rows(), tmp_path / "r.csv")
        assert mod.main(["--results", str(results), "--report", str(report)]) == 0
        first = report.read_text()
        assert mod.main(["--results", str(results), "--report", str(report)]) == 0
    finally:
        sys.modules.pop(spec.name, None)
    text = report.read_text()
    assert text == first  # replaced in place, not appended twice
    assert text.index("## Before") < text.index(mod.HEADING) < text.index("## Extensions")
    assert "keep 1" in text and "keep 2" in text
    for ext in ("png", "pdf", "svg"):
        assert (tmp_path / "figures" / f"{mod.STEM}.{ext}").stat().st_size > 1000
    assert b"/FontFile2" in (tmp_path / "figures" / f"{mod.STEM}.pdf").read_bytes()  # embedded
