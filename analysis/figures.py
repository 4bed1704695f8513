"""Figures drawn from the tables of `analysis.tables`: one function per kind, each returns a Figure.

Owns the look of every plot (labelled axes with units, legends, scenario and mode in the title)
and saving a figure as PNG and SVG. It computes nothing beyond unit scaling for display; the
numbers come from `tables`. Figures are built with `matplotlib.figure.Figure` on the Agg canvas,
never through pyplot's global state, so plotting is safe in worker processes and tests.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, ScalarFormatter
from stemflow.analysis.tables import BASELINE, PARITY_BAND, utilization_matrix

from stemflow.figure_style import COLUMN_IN, PAGE_IN, PAPER_STYLE, figure, strategy_color
from stemflow.figure_style import save as _save
from stemflow.results import METRICS, metric_label

Reference = dict[tuple[str, str], float]
"""(strategy, metric) -> a published value to mark beside ours."""

PARAM_AXES: dict[str, tuple[str, float]] = {
    "relay.parallel": ("parallel TCP connections per relay hop, P", 1.0),
    "tcp.rwnd_bytes": ("TCP window cap (MB)", 1e-6),
    "tcp.rwnd": ("TCP window cap (MB)", 1e-6),
    "loss": ("random loss on every overlay link (%)", 100.0),
    "subscribers": ("subscribers of the multicast session", 1.0),
}
"""Swept parameter -> (axis label with unit, factor from the scenario's unit to the axis unit).
A parameter that ends in `.loss` uses the `loss` entry."""

LATENCY_LABELS = {m: metric_label(m) for m in ("rr_latency_ms", "latency_ms")}


def param_axis(param: str) -> tuple[str, float]:
    if param in PARAM_AXES:
        return PARAM_AXES[param]
    if param.endswith("loss"):
        return PARAM_AXES["loss"]
    return (param, 1.0)


def title(what: str, scenario: str, mode: str, config: str = "") -> str:
    extra = f" [{config}]" if config else ""
    return f"{what}\n{scenario} ({mode}){extra}"


def save(fig: Figure, out_dir: Path, name: str) -> list[Path]:
    """Write the figure as `name.png`, `name.pdf` (fonts embedded) and `name.svg`; return the paths."""
    return _save(fig, out_dir, name)


def _bars(ax, labels: Sequence[str], values: Sequence[float], notes: Sequence[str],
          paper: Sequence[float]) -> None:
    bars = ax.bar(list(labels), list(values), color=[strategy_color(s) for s in labels])
    for b, note, p in zip(bars, notes, paper, strict=True):
        if note:  # above the bar, or above the paper's tick where that is higher
            top = max(b.get_height(), p) if math.isfinite(p) else b.get_height()
            ax.annotate(note, (b.get_x() + b.get_width() / 2, top), ha="center",
                        va="bottom", fontsize=6.5, xytext=(0, 3), textcoords="offset points")
    marked = [(i, v) for i, v in enumerate(paper) if math.isfinite(v)]
    if marked:
        ax.scatter(*zip(*marked, strict=True), label="the paper", **PAPER_STYLE)
    ax.tick_params(axis="x", labelrotation=25)


def strategy_figure(rows: pd.DataFrame, scenario: str, mode: str, config: str = "",
                    reference: Reference | None = None) -> Figure:
    """Throughput (with the ratio to direct) and 1 KB latency (with the delta) per strategy.

    `reference`: published values, drawn as black ticks on the bars they correspond to.
    """
    reference = reference or {}
    lat = next((m for m in LATENCY_LABELS if m in rows.columns and rows[m].notna().any()), None)
    panels = [p for p in ("throughput_mbps", lat) if p and p in rows.columns and rows[p].notna().any()]
    fig = figure(PAGE_IN if len(panels) > 1 else COLUMN_IN, 2.6)
    axes = fig.subplots(1, max(1, len(panels)), squeeze=False)[0]
    for ax, metric in zip(axes, panels, strict=False):
        r = rows[rows[metric].notna()]
        paper = [reference.get((st, metric), math.nan) for st in r["strategy"]]
        if metric == "throughput_mbps":
            ratio = r.get("throughput_ratio", pd.Series(np.nan, index=r.index))
            notes = [f"{v:.0f}\n×{q:.2f}" if math.isfinite(q) else f"{v:.0f}"
                     for v, q in zip(r[metric], ratio, strict=True)]
            _bars(ax, list(r["strategy"]), list(r[metric]), notes, paper)
            ax.set_ylabel("throughput (Mbit/s)")
            ax.set_title("bulk throughput (annotated: × direct)")
        else:
            delta = r.get(metric.removesuffix("_ms") + "_delta_ms", pd.Series(np.nan, index=r.index))
            notes = [f"{v:.1f}\n{d:+.1f}" if math.isfinite(d) else f"{v:.1f}"
                     for v, d in zip(r[metric], delta, strict=True)]
            _bars(ax, list(r["strategy"]), list(r[metric]), notes, paper)
            ax.set_ylabel(LATENCY_LABELS[metric])
            ax.set_title("small-message latency (annotated: ms vs direct)")
        ax.margins(y=0.22)
    if any(math.isfinite(v) for v in reference.values()):  # one key, clear of every bar's note
        handles, labels = axes[0].get_legend_handles_labels()
        if not handles and len(axes) > 1:
            handles, labels = axes[1].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", frameon=False)
    fig.suptitle(title("Throughput and latency per strategy", scenario, mode, config))
    return fig


def _loss_axis(ax, x: pd.Series) -> None:
    """Loss spans 0 and several decades: linear up to the smallest loss swept, log above."""
    positive = x[x > 0]
    if positive.empty:
        return
    ax.set_xscale("symlog", linthresh=float(positive.min()), linscale=0.5)
    ticks = sorted(x.dropna().unique())
    ax.set_xlim(min(ticks), max(ticks) * 1.6)
    ax.set_xticks(ticks)
    ax.minorticks_off()
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def gain_figure(gain: pd.DataFrame, param: str, scenario: str, mode: str) -> Figure:
    """Throughput gain over direct vs a swept parameter, one line per strategy (and other params)."""
    label, factor = param_axis(param)
    others = [c for c in gain.columns if c not in (param, "mode", "scenario", "strategy",
                                                   "throughput_mbps", "direct_mbps", "gain")]
    fig = figure(COLUMN_IN, 2.6)
    ax = fig.subplots()
    for (strategy, *rest), g in gain.groupby(["strategy", *others], sort=False):
        if strategy == BASELINE:
            continue
        g = g.sort_values(param)
        tag = ", ".join(f"{o}={v}" for o, v in zip(others, rest, strict=True))
        x = pd.to_numeric(g[param], errors="coerce") * factor
        ax.plot(x, g["gain"], marker="o", ms=3.5, linestyle="-" if len(g) > 1 else "none",
                color=strategy_color(str(strategy)), label=f"{strategy}" + (f" ({tag})" if tag else ""))
    ax.axhline(1.0, color="0.4", linestyle="--", linewidth=1, label="direct (gain 1)")
    x_all = pd.to_numeric(gain[param], errors="coerce") * factor
    if param == "relay.parallel" or param.startswith("tcp.rwnd"):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(x_all.dropna().unique()))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
    elif param.endswith("loss"):
        _loss_axis(ax, x_all)
    elif (x_all > 0).all() and x_all.max() / max(x_all.min(), 1e-12) >= 16:
        ax.set_xscale("log")
    ax.set_xlabel(label)
    ax.set_ylabel("throughput gain over direct (×)")
    ax.set_ylim(bottom=0)
    ax.legend(frameon=False)
    ax.grid(alpha=0.3)
    fig.suptitle(title(f"Gain vs {label.split(' (')[0]}", scenario, mode))
    return fig


def multicast_figure(mc: pd.DataFrame, scenario: str, mode: str, session: str) -> Figure:
    """Per-subscriber rate vs number of subscribers, per strategy, with the network-coding bound."""
    fig = figure(COLUMN_IN, 2.6)
    ax = fig.subplots()
    for strategy, g in mc.groupby("strategy", sort=False):
        g = g.sort_values("n_subscribers")
        ax.plot(g["n_subscribers"], g["per_subscriber_mbps"], marker="o", ms=3.5, label=str(strategy),
                color=strategy_color(str(strategy)), linestyle="-" if len(g) > 1 else "none")
    if "bound_mbps" in mc.columns and mc["bound_mbps"].notna().any():
        b = mc.groupby("n_subscribers")["bound_mbps"].max().sort_index()
        ax.plot(b.index, b.to_numpy(), color="k", linestyle="--", marker="x",
                label="network-coding bound")
    ax.set_xlabel("number of subscribers")
    ax.set_ylabel("mean rate per subscriber (Mbit/s)")
    ax.set_xticks(sorted(mc["n_subscribers"].unique()))
    ax.set_ylim(bottom=0)
    ax.legend(frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.grid(alpha=0.3)
    fig.suptitle(title(f"Multicast session {session}: rate per subscriber", scenario, mode))
    return fig


def parity_figure(parity: pd.DataFrame, scenario: str) -> Figure:
    """Emu vs sim for each metric: points, the y = x line and the ±10% band."""
    metrics = list(dict.fromkeys(parity["metric"]))
    cols = min(3, len(metrics))
    nrows = math.ceil(len(metrics) / cols)
    fig = figure(COLUMN_IN * cols * 0.9, 2.8 * nrows)
    axes = np.atleast_1d(fig.subplots(nrows, cols, squeeze=False)).ravel()
    for ax, metric in zip(axes, metrics, strict=False):
        p = parity[parity["metric"] == metric]
        unit = str(p["unit"].iloc[0])
        for strategy, g in p.groupby("strategy", sort=False):
            ax.scatter(g["sim"], g["emu"], label=str(strategy), s=14, zorder=3,
                       color=strategy_color(str(strategy)))
        hi = float(np.nanmax([p["sim"].max(), p["emu"].max()])) * 1.15 or 1.0
        xs = np.linspace(0.0, hi, 50)
        ax.plot(xs, xs, color="k", linewidth=1, label="y = x")
        ax.fill_between(xs, xs * (1 - PARITY_BAND), xs * (1 + PARITY_BAND), color="0.8", alpha=0.6,
                        label=f"±{PARITY_BAND:.0%}")
        ax.set_xlim(0, hi)
        ax.set_ylim(0, hi)
        words = metric_label(metric) if metric in METRICS else f"{metric} ({unit})"
        ax.set_xlabel(f"simulated {words}")
        ax.set_ylabel(f"emulated {words}")
        ax.legend(frameon=False, fontsize=6)
    for ax in axes[len(metrics):]:
        ax.set_visible(False)
    fig.suptitle(f"Simulation vs emulation: {scenario}")
    return fig


def utilization_figure(util: pd.DataFrame, scenario: str, mode: str, config: str = "",
                       datacenters: Sequence[str] | None = None) -> Figure:
    """Heatmap of per-link utilization (from-datacenter x to-datacenter), one panel per strategy.

    Every panel has the same rows and columns in the same order (every datacenter any strategy
    uses, in order of first appearance), so panels compare cell by cell.
    """
    strategies = list(dict.fromkeys(util["strategy"]))
    names = list(datacenters) if datacenters else list(dict.fromkeys([*util["src"], *util["dst"]]))
    cols = min(3, len(strategies))
    nrows = math.ceil(len(strategies) / cols)
    side = 0.32 * len(names) + 1.2
    fig = figure(min(PAGE_IN, side * cols + 0.8), side * nrows + 0.5)
    axes = np.atleast_1d(fig.subplots(nrows, cols, squeeze=False)).ravel()
    vmax = max(1.0, float(util["utilization"].max()))
    image = None
    for ax, strategy in zip(axes, strategies, strict=False):
        m = utilization_matrix(util[util["strategy"] == strategy], names)
        image = ax.imshow(m.to_numpy(dtype=float), vmin=0.0, vmax=vmax, cmap="viridis")
        ax.set_xticks(range(len(m.columns)), list(m.columns), rotation=60, ha="right", fontsize=6)
        ax.set_yticks(range(len(m.index)), list(m.index), fontsize=6)
        ax.set_xlabel("to datacenter")
        ax.set_ylabel("from datacenter")
        ax.set_title(str(strategy))
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                v = m.iat[i, j]
                if np.isfinite(v) and v > 0:
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=5,
                            color="w" if v < 0.6 * vmax else "k")
    for ax in axes[len(strategies):]:
        ax.set_visible(False)
    if image is not None:
        fig.colorbar(image, ax=list(axes[:len(strategies)]), shrink=0.8,
                     label="link utilization (carried / capacity)")
    fig.suptitle(f"Per-link utilization: {scenario} ({mode})" + (f" [{config}]" if config else ""))
    return fig


PANEL_WORDS = {"full": "full plan", "replan": "re-plan after one change",
               "scale": "full plan, larger overlays"}
"""benchmarks/routing.py's kinds of run, in words."""
LABEL_WORDS = {("fairness", "exact"): "exact max-min", ("fairness", "fast"): "fast max-min",
               ("fairness", "approx"): "approximate (no LP)", ("engine", "now"): "this engine"}
"""benchmarks/routing.py's label values, in words; an engine named by a commit reads "engine of X"."""


def _label_words(column: str, value: object) -> str:
    words = LABEL_WORDS.get((column, str(value)))
    if words is not None:
        return words
    return f"engine of {value}" if column == "engine" else f"{column} {value}"


def solve_time_figure(solve: pd.DataFrame, source: str) -> Figure:
    """Decision time vs number of datacenters: a panel per configuration, a line per other size.

    Panels are the benchmark's `config` (else `strategy`) values, in a grid of two columns; the
    x axis is `datacenters` (else the size with the most values); lines are the remaining labels
    and sizes, each with one colour in every panel and one legend for the figure.
    """
    stats = ("time_s", "time_min_s", "time_max_s", "repetitions", "time_column")
    dims = [c for c in solve.columns if c not in stats]
    numeric = [c for c in dims if pd.api.types.is_numeric_dtype(solve[c])]
    x = "datacenters" if "datacenters" in numeric else max(numeric, key=lambda c: solve[c].nunique())
    panel = next((c for c in ("config", "strategy", "kind") if c in dims), None)
    panels = list(dict.fromkeys(solve[panel])) if panel else [None]
    lines = [c for c in dims if c not in (x, panel) and solve[c].nunique() > 1
             and solve.groupby([x, *([panel] if panel else [])])[c].nunique().max() > 1]
    labels = sorted({", ".join(_label_words(c, v) for c, v in zip(lines, key if isinstance(key, tuple)
                                                                  else (key,), strict=True)) or "time"
                     for key, _ in (solve.groupby(lines, sort=True) if lines else [((), solve)])})
    colors = {label: f"C{i % 10}" for i, label in enumerate(labels)}
    cols = len(panels) if len(panels) <= 3 else 2
    nrows = math.ceil(len(panels) / cols)
    fig = figure(PAGE_IN if cols > 1 else COLUMN_IN, 2.3 * nrows + 0.8)
    axes = np.atleast_1d(fig.subplots(nrows, cols, squeeze=False, sharey=True)).ravel()
    handles: dict[str, Any] = {}
    for ax, name in zip(axes, panels, strict=False):
        part = solve[solve[panel] == name] if panel else solve
        groups = part.groupby(lines, sort=True) if lines else [((), part)]
        for key, g in groups:
            key = key if isinstance(key, tuple) else (key,)
            g = g.sort_values(x)
            label = ", ".join(_label_words(c, v) for c, v in zip(lines, key, strict=True)) or "time"
            err = [g["time_s"] - g["time_min_s"], g["time_max_s"] - g["time_s"]]
            h = ax.errorbar(g[x], g["time_s"], yerr=err, marker="o", ms=3, capsize=2, color=colors[label],
                            linestyle="-" if len(g) > 1 else "none", label=label)
            handles.setdefault(label, h)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(part[x].unique()))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        if (part["time_s"] > 0).all():
            ax.set_yscale("log")
        ax.set_xlabel(f"{x} (count)")
        ax.set_title(PANEL_WORDS.get(str(name), str(name)) if name is not None else "")
        ax.grid(alpha=0.3)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    column = str(solve["time_column"].iloc[0]) if "time_column" in solve.columns else "time"
    words = {"total_s": "paths + build + solve", "solve_s": "solver only",
             "median_s": "median of repetitions"}.get(column, column)
    for ax in axes[::cols]:
        ax.set_ylabel("decision time (s)")
    fig.legend([handles[k] for k in labels if k in handles], [k for k in labels if k in handles],
               loc="outside lower center", ncol=min(3, len(handles)), frameon=False)
    fig.suptitle(f"Routing decision time ({words}) vs size")
    return fig
