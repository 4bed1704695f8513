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

import matplotlib

matplotlib.use("Agg")
matplotlib.rcParams["svg.hashsalt"] = "stemflow"  # stable element ids: regenerated SVGs diff cleanly

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import ScalarFormatter  # noqa: E402
from stemflow.analysis.tables import BASELINE, PARITY_BAND, utilization_matrix  # noqa: E402

FORMATS = ("png", "svg")
DPI = 130

PARAM_AXES: dict[str, tuple[str, float]] = {
    "relay.parallel": ("parallel TCP connections per relay hop, P", 1.0),
    "tcp.rwnd_bytes": ("TCP window cap (MB)", 1e-6),
    "loss": ("random loss on every overlay link (%)", 100.0),
    "subscribers": ("subscribers of the multicast session", 1.0),
}
"""Swept parameter -> (axis label with unit, factor from the scenario's unit to the axis unit).
A parameter that ends in `.loss` uses the `loss` entry."""

LATENCY_LABELS = {
    "rr_latency_ms": "request-response latency (ms)",
    "latency_ms": "one-way latency (ms)",
}


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
    """Write the figure as `name.png` and `name.svg`; return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.{ext}" for ext in FORMATS]
    for p in paths:
        fig.savefig(p, dpi=DPI, bbox_inches="tight", metadata={"Date": None} if p.suffix == ".svg" else None)
    return paths


def _bars(ax, labels: Sequence[str], values: Sequence[float], notes: Sequence[str]) -> None:
    colors = ["0.55" if s == BASELINE else f"C{i}" for i, s in enumerate(labels)]
    bars = ax.bar(list(labels), list(values), color=colors)
    for b, note in zip(bars, notes, strict=True):
        if note:
            ax.annotate(note, (b.get_x() + b.get_width() / 2, b.get_height()), ha="center",
                        va="bottom", fontsize=8, xytext=(0, 2), textcoords="offset points")
    ax.set_xlabel("strategy")
    ax.tick_params(axis="x", labelrotation=20)


def strategy_figure(rows: pd.DataFrame, scenario: str, mode: str, config: str = "") -> Figure:
    """Throughput (with the ratio to direct) and 1 KB latency (with the delta) per strategy."""
    lat = next((m for m in LATENCY_LABELS if m in rows.columns and rows[m].notna().any()), None)
    panels = [p for p in ("throughput_mbps", lat) if p and p in rows.columns and rows[p].notna().any()]
    fig = Figure(figsize=(4.2 * max(1, len(panels)), 3.8), layout="constrained")
    axes = fig.subplots(1, max(1, len(panels)), squeeze=False)[0]
    for ax, metric in zip(axes, panels, strict=False):
        r = rows[rows[metric].notna()]
        if metric == "throughput_mbps":
            ratio = r.get("throughput_ratio", pd.Series(np.nan, index=r.index))
            notes = [f"{v:.0f}\n×{q:.2f}" if math.isfinite(q) else f"{v:.0f}"
                     for v, q in zip(r[metric], ratio, strict=True)]
            _bars(ax, list(r["strategy"]), list(r[metric]), notes)
            ax.set_ylabel("throughput (Mbit/s)")
            ax.set_title("bulk throughput", fontsize=10)
        else:
            delta = r.get(metric.removesuffix("_ms") + "_delta_ms", pd.Series(np.nan, index=r.index))
            notes = [f"{v:.1f}\n{d:+.1f}" if math.isfinite(d) else f"{v:.1f}"
                     for v, d in zip(r[metric], delta, strict=True)]
            _bars(ax, list(r["strategy"]), list(r[metric]), notes)
            ax.set_ylabel(LATENCY_LABELS[metric])
            ax.set_title("small-message latency", fontsize=10)
        ax.margins(y=0.2)
    fig.suptitle(title("Throughput and latency per strategy (annotations: vs direct)",
                       scenario, mode, config), fontsize=10)
    return fig


def gain_figure(gain: pd.DataFrame, param: str, scenario: str, mode: str) -> Figure:
    """Throughput gain over direct vs a swept parameter, one line per strategy (and other params)."""
    label, factor = param_axis(param)
    others = [c for c in gain.columns if c not in (param, "mode", "scenario", "strategy",
                                                   "throughput_mbps", "direct_mbps", "gain")]
    fig = Figure(figsize=(5.6, 4.0), layout="constrained")
    ax = fig.subplots()
    for (strategy, *rest), g in gain.groupby(["strategy", *others], sort=False):
        if strategy == BASELINE:
            continue
        g = g.sort_values(param)
        tag = ", ".join(f"{o}={v}" for o, v in zip(others, rest, strict=True))
        x = pd.to_numeric(g[param], errors="coerce") * factor
        ax.plot(x, g["gain"], marker="o", label=f"{strategy}" + (f" ({tag})" if tag else ""))
    ax.axhline(1.0, color="0.4", linestyle="--", linewidth=1, label="direct (gain 1)")
    x_all = pd.to_numeric(gain[param], errors="coerce") * factor
    if param == "relay.parallel":
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(x_all.dropna().unique()))
        ax.xaxis.set_major_formatter(ScalarFormatter())
    elif (x_all > 0).all() and x_all.max() / max(x_all.min(), 1e-12) >= 16:
        ax.set_xscale("log")
    ax.set_xlabel(label)
    ax.set_ylabel("throughput gain over direct (×)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.suptitle(title(f"Gain vs {param}", scenario, mode), fontsize=10)
    return fig


def multicast_figure(mc: pd.DataFrame, scenario: str, mode: str, session: str) -> Figure:
    """Per-subscriber rate vs number of subscribers, per strategy, with the network-coding bound."""
    fig = Figure(figsize=(5.6, 4.0), layout="constrained")
    ax = fig.subplots()
    for strategy, g in mc.groupby("strategy", sort=False):
        g = g.sort_values("n_subscribers")
        ax.plot(g["n_subscribers"], g["per_subscriber_mbps"], marker="o", label=str(strategy))
    if "bound_mbps" in mc.columns and mc["bound_mbps"].notna().any():
        b = mc.groupby("n_subscribers")["bound_mbps"].max().sort_index()
        ax.plot(b.index, b.to_numpy(), color="k", linestyle="--", marker="x",
                label="network-coding bound")
    ax.set_xlabel("number of subscribers")
    ax.set_ylabel("mean rate per subscriber (Mbit/s)")
    ax.set_xticks(sorted(mc["n_subscribers"].unique()))
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.suptitle(title(f"Multicast session {session}: rate per subscriber", scenario, mode), fontsize=10)
    return fig


def parity_figure(parity: pd.DataFrame, scenario: str) -> Figure:
    """Emu vs sim for each metric: points, the y = x line and the ±10% band."""
    metrics = list(dict.fromkeys(parity["metric"]))
    cols = min(3, len(metrics))
    nrows = math.ceil(len(metrics) / cols)
    fig = Figure(figsize=(4.0 * cols, 3.8 * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, cols, squeeze=False)).ravel()
    for ax, metric in zip(axes, metrics, strict=False):
        p = parity[parity["metric"] == metric]
        unit = str(p["unit"].iloc[0])
        for strategy, g in p.groupby("strategy", sort=False):
            ax.scatter(g["sim"], g["emu"], label=str(strategy), s=22, zorder=3)
        hi = float(np.nanmax([p["sim"].max(), p["emu"].max()])) * 1.15 or 1.0
        xs = np.linspace(0.0, hi, 50)
        ax.plot(xs, xs, color="k", linewidth=1, label="y = x")
        ax.fill_between(xs, xs * (1 - PARITY_BAND), xs * (1 + PARITY_BAND), color="0.8", alpha=0.6,
                        label=f"±{PARITY_BAND:.0%}")
        ax.set_xlim(0, hi)
        ax.set_ylim(0, hi)
        ax.set_xlabel(f"sim {metric} ({unit})")
        ax.set_ylabel(f"emu {metric} ({unit})")
        ax.legend(fontsize=7)
    for ax in axes[len(metrics):]:
        ax.set_visible(False)
    fig.suptitle(f"Sim vs emu parity\n{scenario} (sim and emu)", fontsize=10)
    return fig


def utilization_figure(util: pd.DataFrame, scenario: str, mode: str, config: str = "",
                       datacenters: Sequence[str] | None = None) -> Figure:
    """Heatmap of per-link utilization (from-datacenter x to-datacenter), one panel per strategy."""
    strategies = list(dict.fromkeys(util["strategy"]))
    fig = Figure(figsize=(4.3 * len(strategies), 4.3), layout="constrained")
    axes = fig.subplots(1, len(strategies), squeeze=False)[0]
    vmax = max(1.0, float(util["utilization"].max()))
    image = None
    for ax, strategy in zip(axes, strategies, strict=True):
        m = utilization_matrix(util[util["strategy"] == strategy], datacenters)
        image = ax.imshow(m.to_numpy(dtype=float), vmin=0.0, vmax=vmax, cmap="viridis")
        ax.set_xticks(range(len(m.columns)), list(m.columns), rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(len(m.index)), list(m.index), fontsize=7)
        ax.set_xlabel("to datacenter")
        ax.set_ylabel("from datacenter")
        ax.set_title(str(strategy), fontsize=9)
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                v = m.iat[i, j]
                if np.isfinite(v) and v > 0:
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6,
                            color="w" if v < 0.6 * vmax else "k")
    if image is not None:
        fig.colorbar(image, ax=list(axes), label="link utilization (carried / capacity, 1)")
    fig.suptitle(title("Per-link utilization", scenario, mode, config), fontsize=10)
    return fig


def solve_time_figure(solve: pd.DataFrame, source: str) -> Figure:
    """Decision time vs number of datacenters: a panel per configuration, a line per other size.

    Panels are the benchmark's `config` (else `strategy`) values; the x axis is `datacenters`
    (else the size with the most values); lines are the remaining labels and sizes.
    """
    stats = ("time_s", "time_min_s", "time_max_s", "repetitions", "time_column")
    dims = [c for c in solve.columns if c not in stats]
    numeric = [c for c in dims if pd.api.types.is_numeric_dtype(solve[c])]
    x = "datacenters" if "datacenters" in numeric else max(numeric, key=lambda c: solve[c].nunique())
    panel = next((c for c in ("config", "strategy") if c in dims), None)
    panels = list(dict.fromkeys(solve[panel])) if panel else [None]
    fig = Figure(figsize=(4.6 * len(panels), 4.2), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False, sharey=True)[0]
    for ax, name in zip(axes, panels, strict=True):
        part = solve[solve[panel] == name] if panel else solve
        lines = [c for c in dims if c not in (x, panel) and part[c].nunique() > 1
                 and part.groupby(x)[c].nunique().max() > 1]  # not a function of x
        groups = part.groupby(lines, sort=True) if lines else [((), part)]
        for key, g in groups:
            key = key if isinstance(key, tuple) else (key,)
            g = g.sort_values(x)
            label = ", ".join(f"{c}={v}" for c, v in zip(lines, key, strict=True)) or "time"
            err = [g["time_s"] - g["time_min_s"], g["time_max_s"] - g["time_s"]]
            ax.errorbar(g[x], g["time_s"], yerr=err, marker="o", capsize=2, label=label)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(part[x].unique()))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        if (part["time_s"] > 0).all():
            ax.set_yscale("log")
        ax.set_xlabel(f"{x} (count)")
        ax.set_title(str(name) if name is not None else "", fontsize=9)
        ax.legend(fontsize=6)
        ax.grid(alpha=0.3)
    column = str(solve["time_column"].iloc[0]) if "time_column" in solve.columns else "time"
    axes[0].set_ylabel(f"decision time, {column} (s)")
    fig.suptitle(f"Routing decision time vs size\n{source} (benchmark)", fontsize=10)
    return fig
