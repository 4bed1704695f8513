"""What a person reads after a run: a summary table per strategy, ratios to `direct`, and plots.

Owns the summary (mean throughput, latency and completion time per strategy, each strategy's
ratio to the direct baseline) and the figures written next to the results: throughput per
strategy, latency per strategy, and the per-subscriber rates of multicast sessions. It reads
rows of the results schema and nothing else, so it works the same on any run's rows.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from stemflow.results import Row

DIRECT = "direct"
FIGURE_FORMATS = ("png", "svg")


@dataclass(frozen=True)
class StrategySummary:
    """Means over a strategy's sessions (bulk transfers for throughput and completion)."""

    strategy: str
    throughput_mbps: float
    completion_s: float
    latency_ms: float
    latency_metric: str


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def summarize(rows: Iterable[Row], strategies: Sequence[str]) -> list[StrategySummary]:
    """Per strategy: mean bulk throughput and completion, mean request-response (else one-way) latency."""
    by: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for r in rows:
        by[(r.strategy, r.workload, r.metric)].append(r.value)
    out = []
    for st in strategies:
        rr = by.get((st, "messages", "rr_latency_ms"), [])
        one_way = by.get((st, "messages", "latency_ms"), [])
        lat, metric = (rr, "rr_latency_ms") if rr else (one_way, "latency_ms")
        if not lat:
            lat, metric = by.get((st, "stream", "frame_delay_ms"), []), "frame_delay_ms"
        out.append(StrategySummary(st, _mean(by.get((st, "bulk", "throughput_mbps"), [])),
                                   _mean(by.get((st, "bulk", "completion_s"), [])), _mean(lat), metric))
    return out


def summary_table(summaries: Sequence[StrategySummary]) -> str:
    """A plain-text table; ratios are to `direct` when it ran (latency as a difference too)."""
    base = next((s for s in summaries if s.strategy == DIRECT), None)

    def num(x: float, fmt: str) -> str:
        return "-" if math.isnan(x) else format(x, fmt)

    def ratio(x: float, b: float | None) -> str:
        return "-" if b is None or math.isnan(x) or math.isnan(b) or b == 0 else f"{x / b:.2f}x"

    head = (f"{'strategy':<12} {'throughput Mbit/s':>18} {'vs direct':>9} {'completion s':>13} "
            f"{'vs direct':>9} {'latency ms':>11} {'vs direct':>16}")
    lines = [head, "-" * len(head)]
    for s in summaries:
        lat_vs = "-"
        if base and not (math.isnan(s.latency_ms) or math.isnan(base.latency_ms)):
            lat_vs = f"{ratio(s.latency_ms, base.latency_ms)} ({s.latency_ms - base.latency_ms:+.1f})"
        lines.append(f"{s.strategy:<12} {num(s.throughput_mbps, '.1f'):>18} "
                     f"{ratio(s.throughput_mbps, base.throughput_mbps if base else None):>9} "
                     f"{num(s.completion_s, '.2f'):>13} "
                     f"{ratio(s.completion_s, base.completion_s if base else None):>9} "
                     f"{num(s.latency_ms, '.1f'):>11} {lat_vs:>16}")
    metric = next((s.latency_metric for s in summaries if not math.isnan(s.latency_ms)), "latency_ms")
    lines.append(f"(throughput and completion: bulk sessions; latency: mean {metric})")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Figures


def write_plots(rows: Sequence[Row], strategies: Sequence[str], out_dir: Path, title: str,
                caption: str = "") -> list[Path]:
    """Throughput and latency per strategy, and multicast per-subscriber rates if any.

    `caption` (the model's parameters) is printed under each figure, so a figure never travels
    without the numbers that made it.
    """
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "stemflow"  # stable ids: the same run, the same SVG bytes
    import matplotlib.pyplot as plt

    written: list[Path] = []

    def save(fig, stem: str) -> None:
        if caption:
            fig.text(0.5, -0.02, caption, ha="center", va="top", fontsize=7, wrap=True)
        for fmt in FIGURE_FORMATS:
            path = out_dir / f"{stem}.{fmt}"
            fig.savefig(path, dpi=120, bbox_inches="tight", metadata={"Date": None} if fmt == "svg" else None)
            written.append(path)
        plt.close(fig)

    values: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in rows:
        values[(r.strategy, r.metric if r.workload != "bulk" else f"bulk:{r.metric}")].append(r.value)

    fig, ax = plt.subplots(figsize=(6, 3.5))
    tput = [_mean(values.get((st, "bulk:throughput_mbps"), [])) for st in strategies]
    ax.bar(strategies, [0 if math.isnan(v) else v for v in tput], color="#4c72b0")
    for i, st in enumerate(strategies):
        pts = values.get((st, "bulk:throughput_mbps"), [])
        ax.scatter([i] * len(pts), pts, s=8, color="k", alpha=0.5, zorder=3)
        if not math.isnan(tput[i]):
            ax.annotate(f"{tput[i]:.0f}", (i, tput[i]), ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("bulk throughput (Mbit/s)")
    ax.set_title(f"{title}: throughput per strategy (bars: mean; dots: sessions)", fontsize=9)
    save(fig, "throughput")

    fig, ax = plt.subplots(figsize=(6, 3.5))
    metrics = [m for m in ("latency_ms", "rr_latency_ms", "frame_delay_ms")
               if any(values.get((st, m)) for st in strategies)]
    width = 0.8 / max(len(metrics), 1)
    for j, m in enumerate(metrics):
        ys = [_mean(values.get((st, m), [])) for st in strategies]
        xs = [i + (j - (len(metrics) - 1) / 2) * width for i in range(len(strategies))]
        ax.bar(xs, [0 if math.isnan(y) else y for y in ys], width=width, label=m)
    ax.set_xticks(range(len(strategies)), strategies)
    ax.set_ylabel("mean (ms)")
    ax.set_title(f"{title}: latency per strategy", fontsize=9)
    if metrics:
        ax.legend(fontsize=8)
    save(fig, "latency")

    per_sub: dict[str, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        if r.metric == "mean_rate_mbps" and "/" in r.session:
            session, sub = r.session.split("/", 1)
            per_sub[session][sub][r.strategy] = r.value
    if per_sub:
        fig, axes = plt.subplots(len(per_sub), 1, figsize=(7, 3 * len(per_sub)), squeeze=False)
        for ax, (session, subs) in zip(axes[:, 0], sorted(per_sub.items()), strict=True):
            names = sorted(subs)
            width = 0.8 / len(strategies)
            for j, st in enumerate(strategies):
                xs = [i + (j - (len(strategies) - 1) / 2) * width for i in range(len(names))]
                ax.bar(xs, [subs[n].get(st, 0.0) for n in names], width=width, label=st)
            ax.set_xticks(range(len(names)), names, fontsize=7)
            ax.set_ylabel("rate (Mbit/s)")
            ax.set_title(f"{title}: {session}, per-subscriber delivered rate", fontsize=9)
            ax.legend(fontsize=7)
        save(fig, "multicast_rates")
    return written
