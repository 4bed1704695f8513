"""The analysis pass: from a loaded DataFrame to every table and figure the data supports.

Owns the decision of what to produce, the file names in the output directory, and the account of
what was skipped and why (printed and written to `index.md`). Tables come from `tables`, figures
from `figures`; this module only routes the data between them and the disk.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from stemflow.analysis import figures, tables, timeline
from stemflow.analysis.bounds import add_missing_bounds

from stemflow.results import ResultsError

DEFAULT_BENCHMARK = Path("benchmarks/results/routing.csv")


@dataclass
class Outcome:
    """What one analysis pass wrote, the tables it computed, and what it skipped (with why)."""

    out_dir: Path
    written: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: dict[str, list[Path]] = field(default_factory=dict)

    def table(self, df: pd.DataFrame, name: str, title: str) -> None:
        self.tables[name] = df
        self.written += tables.write_table(df, self.out_dir / "tables", name, title)

    def figure(self, fig: figures.Figure, name: str) -> None:
        paths = figures.save(fig, self.out_dir / "figures", name)
        self.figures[name] = paths
        self.written += paths

    def skip(self, what: str, why: str) -> None:
        self.skipped.append(f"{what}: {why}")


def slug(*parts: str) -> str:
    text = "-".join(p for p in parts if p)
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "all"


def _strategies(out: Outcome, df: pd.DataFrame) -> None:
    t = tables.strategy_table(df)
    if t.empty:
        out.skip("strategy table", "no throughput, latency or solve-time rows")
        return
    out.table(t, "strategies", "Per strategy: mean throughput and latency, with ratio/delta to direct")
    if "throughput_mbps" not in t.columns and not any(m in t.columns for m in figures.LATENCY_LABELS):
        out.skip("strategy figures", "no throughput or latency rows")
        return
    if "throughput_ratio" not in t.columns or t["throughput_ratio"].isna().all():
        out.skip("ratio to direct", "no 'direct' strategy with throughput in the same scenario and mode")
    plain = t[t["config"] == ""]
    if len(plain) < len(t):
        out.skip("strategy figures of sweep points", "their tables are in strategies.md; the gain and "
                 "multicast figures plot them")
    for (mode, scenario), rows in plain.groupby(["mode", "scenario"], sort=False):
        out.figure(figures.strategy_figure(rows, scenario, mode, reference=_reference(df, scenario)),
                   slug("strategies", scenario, mode))


REFERENCE_COLUMN = "manifest.reference.values"
"""Where a run's manifest (sim or emu) carries the scenario's published numbers (JSON; see
Scenario.reference)."""


def _reference(df: pd.DataFrame, scenario: str) -> dict[tuple[str, str], float]:
    """(strategy, metric) -> published value for `scenario`, where one value per pair is given."""
    if REFERENCE_COLUMN not in df.columns:
        return {}
    texts = df.loc[df["scenario"] == scenario, REFERENCE_COLUMN].dropna().unique()
    found: dict[tuple[str, str], list[float]] = {}
    for v in json.loads(texts[0]) if len(texts) else []:
        found.setdefault((v["strategy"], v["metric"]), []).append(float(v["value"]))
    return {k: vals[0] for k, vals in found.items() if len(vals) == 1}


def _gains(out: Outcome, df: pd.DataFrame) -> None:
    params = [p for p in tables.swept_parameters(df) if p != tables.SUBSCRIBERS_PARAM]
    if not params:
        out.skip("gain vs swept parameters", "no sweep results (no run carries 'sweep' values in its "
                 "manifest that take two or more values)")
        return
    for param in params:
        g = tables.gain_table(df, param)
        if g.empty or g["gain"].isna().all():
            out.skip(f"gain vs {param}", "the sweep has no throughput rows of both direct and another "
                     "strategy")
            continue
        out.table(g, slug("gain", param), f"Throughput gain over direct vs {param}")
        for (mode, scenario), rows in g.groupby(["mode", "scenario"], sort=False):
            out.figure(figures.gain_figure(rows.drop(columns=["mode", "scenario"]), param, scenario, mode),
                       slug("gain", param, scenario, mode))


def _multicast(out: Outcome, df: pd.DataFrame) -> None:
    df, notes = add_missing_bounds(df)
    for note in notes:
        out.skip("network-coding bound", note)
    mc = tables.multicast_table(df)
    if mc.empty:
        out.skip("multicast rate vs subscribers", "no session with more than one subscriber has "
                 "throughput rows")
        return
    out.table(mc, "multicast", "Multicast: mean rate per subscriber vs number of subscribers")
    if mc["bound_mbps"].isna().all():
        out.skip("network-coding bound", "no 'bound_mbps' rows for the multicast sessions")
    for (mode, scenario, session), rows in mc.groupby(["mode", "scenario", "session"], sort=False):
        out.figure(figures.multicast_figure(rows, scenario, mode, session),
                   slug("multicast", scenario, mode, session))


def _parity(out: Outcome, df: pd.DataFrame) -> None:
    p = tables.parity_table(df)
    if p.empty:
        modes = sorted(df["mode"].unique())
        why = (f"only mode {modes} present; needs both sim and emu" if len(modes) < 2
               else "no scenario, strategy, session and metric measured in both sim and emu")
        out.skip("sim vs emu parity", why)
        return
    out.table(p, "parity", "Sim vs emu: the same values measured both ways (band ±10%)")
    for scenario, rows in p.groupby("scenario", sort=False):
        out.figure(figures.parity_figure(rows, scenario), slug("parity", scenario))


def _utilization(out: Outcome, df: pd.DataFrame) -> None:
    u = tables.utilization_table(df)
    if u.empty:
        out.skip("link utilization heatmap", "no 'link_utilization' rows with an 'a->b' link")
        return
    out.table(u, "link_utilization", "Mean utilization of each overlay link")
    plain = u[u["config"] == ""]
    if len(plain) < len(u):
        out.skip("utilization heatmaps of sweep points", "their values are in link_utilization.md")
    for (mode, scenario), rows in plain.groupby(["mode", "scenario"], sort=False):
        out.figure(figures.utilization_figure(rows, scenario, mode), slug("utilization", scenario, mode))


def _faults(out: Outcome, df: pd.DataFrame) -> None:
    rates = timeline.timeline_table(df)
    if rates.empty:
        out.skip("throughput timeline with faults", "no 'delivery_rate_mbps' rows (a run without faults)")
        return
    marks = timeline.fault_marks(df)
    out.table(df[df["metric"].str.startswith("fault_")][["mode", "scenario", "strategy", "session", "metric",
                                                         "value", "unit", "t_s"]],
              "faults", "What each fault did")
    for scenario, rows in rates.groupby("scenario", sort=False):
        out.figure(timeline.timeline_figure(rows, marks[marks["scenario"] == scenario], scenario),
                   slug("faults", scenario))


def _solve_times(out: Outcome, bench: Path | None) -> None:
    if bench is None or not bench.exists():
        out.skip("optimizer solve time vs size", f"no routing benchmark output at {bench}")
        return
    try:
        raw = pd.read_csv(bench, comment="#")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        out.skip("optimizer solve time vs size", f"{bench} is not a readable CSV ({type(e).__name__})")
        return
    s = tables.solve_time_table(raw)
    if s.empty:
        out.skip("optimizer solve time vs size", f"{bench} has no recognisable solve-time and size "
                 f"columns (found {list(raw.columns)})")
        return
    out.table(s, "solve_time", f"Routing decision time vs size (from {bench})")
    out.figure(figures.solve_time_figure(s, str(bench)), "solve_time")


PROGRESS_DELAY_S = 1.0
"""Show the progress bar only for passes longer than this (a small analysis stays quiet)."""


def analyze(df: pd.DataFrame, out_dir: Path, benchmark: Path | None = DEFAULT_BENCHMARK,
            progress: bool = False) -> Outcome:
    """Write every table and figure `df` (and the routing benchmark, if present) supports.

    `progress`: a bar on stderr, one step per kind of output (figures take most of the time).
    """
    from tqdm import tqdm

    if df.empty:
        raise ResultsError("no rows to analyze")
    out = Outcome(Path(out_dir))
    out.out_dir.mkdir(parents=True, exist_ok=True)
    steps = [("strategies", lambda: _strategies(out, df)), ("gains", lambda: _gains(out, df)),
             ("multicast", lambda: _multicast(out, df)), ("sim vs emu", lambda: _parity(out, df)),
             ("link utilization", lambda: _utilization(out, df)), ("faults", lambda: _faults(out, df)),
             ("solve time", lambda: _solve_times(out, benchmark)), ("index", lambda: write_index(out, df))]
    with tqdm(total=len(steps), desc="analyze", unit="step", disable=not progress, delay=PROGRESS_DELAY_S,
              file=sys.stderr, leave=False) as bar:
        for name, step in steps:
            bar.set_postfix_str(name, refresh=False)
            step()
            bar.update(1)
    return out


def write_index(out: Outcome, df: pd.DataFrame) -> Path:
    """`index.md`: the inputs, every table (inlined) and figure, and what was skipped and why."""
    runs = df.groupby(["results_dir", "mode", "scenario"], sort=False).size().reset_index(name="rows")
    lines = ["# Analysis", "", "## Inputs", "", tables.to_markdown(runs), "## Tables", ""]
    for name in out.tables:
        lines += [(out.out_dir / "tables" / f"{name}.md").read_text(), ""]
    lines += ["## Figures", ""]
    for name, paths in out.figures.items():
        png = next(p for p in paths if p.suffix == ".png")
        lines += [f"![{name}]({png.relative_to(out.out_dir).as_posix()})", ""]
    lines += ["## Skipped", ""]
    lines += [f"- {s}" for s in out.skipped] or ["- nothing"]
    path = out.out_dir / "index.md"
    path.write_text("\n".join(lines) + "\n")
    out.written.append(path)
    return path
