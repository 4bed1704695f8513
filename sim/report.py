"""What a person reads after a run: a summary table per strategy, ratios to `direct`, and plots.

Owns the summary (mean throughput, latency and completion time per strategy, each strategy's
ratio to the direct baseline), the comparison with a paper's numbers when the scenario carries
a `reference`, and the figures written next to the results: throughput per
strategy, latency per strategy, and the per-subscriber rates of multicast sessions. It reads
rows of the results schema and nothing else, so it works the same on any run's rows.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from stemflow.results import METRIC_NAMES, METRICS, Row, metric_label
from stemflow.scenario import Reference

DIRECT = "direct"


@dataclass(frozen=True)
class StrategySummary:
    """Means over a strategy's bulk deliveries, unicast sessions and multicast subscribers apart.

    A multicast session delivers to each subscriber at its own rate; averaging those with unicast
    sessions would give a number that describes neither, so they are two columns.
    """

    strategy: str
    unicast_mbps: float
    multicast_subscriber_mbps: float
    completion_s: float
    latency_ms: float
    latency_metric: str


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def _is_subscriber_row(r: Row) -> bool:
    """Rows of a multicast session are per subscriber: `session/subscriber`."""
    return "/" in r.session


def summarize(rows: Iterable[Row], strategies: Sequence[str]) -> list[StrategySummary]:
    """Per strategy: mean bulk throughput (unicast, multicast per subscriber), completion, latency."""
    by: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for r in rows:
        by[(r.strategy, r.workload, r.metric)].append(r.value)
        if r.workload == "bulk" and r.metric == "throughput_mbps":
            by[(r.strategy, "bulk", "multicast" if _is_subscriber_row(r) else "unicast")].append(r.value)
    out = []
    for st in strategies:
        rr = by.get((st, "messages", "rr_latency_ms"), [])
        one_way = by.get((st, "messages", "latency_ms"), [])
        lat, metric = (rr, "rr_latency_ms") if rr else (one_way, "latency_ms")
        if not lat:
            lat, metric = by.get((st, "stream", "frame_delay_ms"), []), "frame_delay_ms"
        out.append(StrategySummary(st, _mean(by.get((st, "bulk", "unicast"), [])),
                                   _mean(by.get((st, "bulk", "multicast"), [])),
                                   _mean(by.get((st, "bulk", "completion_s"), [])), _mean(lat), metric))
    return out


def _num(x: float, fmt: str) -> str:
    return "-" if math.isnan(x) else format(x, fmt)


def _ratio(x: float, b: float | None) -> str:
    return "-" if b is None or math.isnan(x) or math.isnan(b) or b == 0 else f"{x / b:.2f}x"


def summary_table(summaries: Sequence[StrategySummary]) -> str:
    """A plain-text table; ratios are to `direct` when it ran (latency as a difference too).

    The unicast and the multicast-per-subscriber throughput columns appear only when the run has
    sessions of that kind.
    """
    base = next((s for s in summaries if s.strategy == DIRECT), None)
    columns: list[tuple[str, int, str, str]] = []  # (heading, width, field, format)
    if any(not math.isnan(s.unicast_mbps) for s in summaries):
        columns.append(("unicast Mbit/s", 15, "unicast_mbps", ".1f"))
    if any(not math.isnan(s.multicast_subscriber_mbps) for s in summaries):
        columns.append(("multicast Mbit/s per subscriber", 32, "multicast_subscriber_mbps", ".1f"))
    columns.append(("completion s", 13, "completion_s", ".2f"))
    head = f"{'strategy':<12}" + "".join(f" {h:>{w}} {'vs direct':>9}" for h, w, _, _ in columns)
    head += f" {'latency ms':>11} {'vs direct':>16}"
    lines = [head, "-" * len(head)]
    for s in summaries:
        line = f"{s.strategy:<12}"
        for _, w, name, fmt in columns:
            x = getattr(s, name)
            line += f" {_num(x, fmt):>{w}} {_ratio(x, getattr(base, name) if base else None):>9}"
        lat_vs = "-"
        if base and not (math.isnan(s.latency_ms) or math.isnan(base.latency_ms)):
            lat_vs = f"{_ratio(s.latency_ms, base.latency_ms)} ({s.latency_ms - base.latency_ms:+.1f})"
        lines.append(f"{line} {_num(s.latency_ms, '.1f'):>11} {lat_vs:>16}")
    metric = next((s.latency_metric for s in summaries if not math.isnan(s.latency_ms)), "latency_ms")
    lines.append(f"(throughput and completion: mean over bulk sessions, a multicast session counted per "
                 f"subscriber; latency: mean {metric_label(metric)})")
    return "\n".join(lines)


@dataclass(frozen=True)
class ReferenceRow:
    """A published number beside the simulated one."""

    strategy: str
    session: str
    metric: str
    simulated: float
    paper: float
    fitted_by: str | None

    @property
    def ratio(self) -> float:
        return self.simulated / self.paper if self.paper else math.nan


def against_reference(rows: Iterable[Row], reference: Reference) -> list[ReferenceRow]:
    """Each reference value with the simulated mean of the same strategy, session and metric."""
    got: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for r in rows:
        got[(r.strategy, r.session, r.metric)].append(r.value)
    return [ReferenceRow(v.strategy, v.session, v.metric,
                         _mean(got.get((v.strategy, v.session, v.metric), [])), v.value, v.fitted_by)
            for v in reference.values]


def reference_table(compared: Sequence[ReferenceRow], source: str) -> str:
    """The paper's numbers beside ours, the ratio, and which rows a fitted parameter sets.

    Below the rows, for each strategy with the same metric and session as direct in the reference,
    the comparison the paper itself prints: throughput as a ratio, latency as a difference.
    """
    head = (f"{'strategy':<10} {'session':<10} {'metric':<32} {'simulated':>10} {'paper':>8} "
            f"{'sim/paper':>9}  set by a fitted parameter?")
    lines = [f"against the paper: {source}", head, "-" * len(head)]
    for c in compared:
        fitted = f"yes: {c.fitted_by}" if c.fitted_by else "no (the model's prediction)"
        lines.append(f"{c.strategy:<10} {c.session:<10} {metric_label(c.metric):<32} "
                     f"{_num(c.simulated, '.1f'):>10} {c.paper:>8.1f} {_num(c.ratio, '.2f'):>9}  {fitted}")
    base = {(c.session, c.metric): c for c in compared if c.strategy == DIRECT}
    for c in compared:
        b = base.get((c.session, c.metric))
        if c.strategy == DIRECT or b is None or math.isnan(c.simulated) or math.isnan(b.simulated):
            continue
        what = f"{c.strategy} vs direct, {METRIC_NAMES.get(c.metric, c.metric)}:"
        if METRICS.get(c.metric, ("",))[0] == "ms":
            lines.append(f"{what} {c.simulated - b.simulated:+.1f} ms simulated, "
                         f"{c.paper - b.paper:+.1f} ms in the paper")
        else:
            lines.append(f"{what} {c.simulated / b.simulated:.2f}x simulated, "
                         f"{c.paper / b.paper:.2f}x in the paper")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Figures


def _paper_values(reference: Reference | None, metric: str) -> dict[str, float]:
    """Strategy -> the paper's value of `metric`, where the reference gives one per strategy."""
    out: dict[str, list[float]] = defaultdict(list)
    for v in reference.values if reference else []:
        if v.metric == metric:
            out[v.strategy].append(v.value)
    return {st: vals[0] for st, vals in out.items() if len(vals) == 1}


def write_plots(rows: Sequence[Row], strategies: Sequence[str], out_dir: Path, title: str,
                caption: str = "", reference: Reference | None = None) -> list[Path]:
    """Throughput and latency per strategy, and multicast per-subscriber rates if any.

    `caption` (the model's parameters) is printed under each figure, so a figure never travels
    without the numbers that made it; a scenario's `reference` values are marked on the bars
    they correspond to.
    """
    from stemflow.figure_style import COLUMN_IN, PAGE_IN, PAPER_STYLE, figure, save, strategy_color

    written: list[Path] = []
    source = f"paper ({reference.source.split(',')[0]})" if reference else ""

    def finish(fig, stem: str) -> None:
        if caption:
            fig.text(0.5, -0.01, caption, ha="center", va="top", fontsize=5.5, wrap=True)
        written.extend(save(fig, out_dir, stem))

    values: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in rows:
        values[(r.strategy, r.metric if r.workload != "bulk" else f"bulk:{r.metric}")].append(r.value)

    fig = figure(COLUMN_IN, 2.6)
    ax = fig.subplots()
    tput = [_mean(values.get((st, "bulk:throughput_mbps"), [])) for st in strategies]
    base = tput[list(strategies).index(DIRECT)] if DIRECT in strategies else math.nan
    ax.bar(strategies, [0 if math.isnan(v) else v for v in tput],
           color=[strategy_color(st) for st in strategies])
    paper = _paper_values(reference, "throughput_mbps")
    for i, st in enumerate(strategies):
        pts = values.get((st, "bulk:throughput_mbps"), [])
        if len(pts) > 1:
            ax.scatter([i] * len(pts), pts, s=6, color="k", alpha=0.5, zorder=3,
                       label="one delivery" if i == 0 else None)
        if not math.isnan(tput[i]):
            note = f"{tput[i]:.0f}" + (f"\n×{tput[i] / base:.2f}" if base and not math.isnan(base) else "")
            ax.annotate(note, (i, tput[i]), ha="center", va="bottom", fontsize=6.5, xytext=(0, 1),
                        textcoords="offset points")
    marked = [(strategies.index(st), v) for st, v in paper.items() if st in strategies]
    if marked:
        ax.scatter(*zip(*marked, strict=True), label=source, **PAPER_STYLE)
    if marked or any(len(values.get((st, "bulk:throughput_mbps"), [])) > 1 for st in strategies):
        ax.legend(loc="upper left", frameon=False)
    ax.set_ylabel("bulk throughput (Mbit/s)")
    ax.set_title(f"{title}: throughput (bars: mean; ×: vs direct)")
    ax.margins(y=0.18)
    finish(fig, "throughput")

    metrics = [m for m in ("latency_ms", "rr_latency_ms", "frame_delay_ms")
               if any(values.get((st, m)) for st in strategies)]
    fig = figure(COLUMN_IN, 2.6)
    ax = fig.subplots()
    width = 0.8 / max(len(metrics), 1)
    for j, m in enumerate(metrics):
        ys = [_mean(values.get((st, m), [])) for st in strategies]
        xs = [i + (j - (len(metrics) - 1) / 2) * width for i in range(len(strategies))]
        ax.bar(xs, [0 if math.isnan(y) else y for y in ys], width=width, label=f"mean {metric_label(m)}",
               color=f"C{j}")
        marked = [(xs[strategies.index(st)], v) for st, v in _paper_values(reference, m).items()
                  if st in strategies]
        if marked:
            ax.scatter(*zip(*marked, strict=True), label=f"{source}: {METRIC_NAMES[m]}", **PAPER_STYLE)
    ax.set_xticks(range(len(strategies)), strategies)
    ax.set_ylabel("latency (ms)")
    ax.set_title(f"{title}: latency per strategy")
    if metrics:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=1, frameon=False)
    finish(fig, "latency")

    per_sub: dict[str, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        if r.metric == "mean_rate_mbps" and "/" in r.session:
            session, sub = r.session.split("/", 1)
            per_sub[session][sub][r.strategy] = r.value
    if per_sub:
        fig = figure(PAGE_IN, 2.2 * len(per_sub))
        axes = fig.subplots(len(per_sub), 1, squeeze=False)
        for ax, (session, subs) in zip(axes[:, 0], sorted(per_sub.items()), strict=True):
            names = sorted(subs)
            width = 0.8 / len(strategies)
            for j, st in enumerate(strategies):
                xs = [i + (j - (len(strategies) - 1) / 2) * width for i in range(len(names))]
                ax.bar(xs, [subs[n].get(st, 0.0) for n in names], width=width, label=st,
                       color=strategy_color(st))
            ax.set_xticks(range(len(names)), names)
            ax.set_ylabel(f"{METRIC_NAMES['mean_rate_mbps']} (Mbit/s)")
            ax.set_title(f"{title}: multicast session {session}, rate per subscriber")
            ax.legend(title="strategy", loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
        finish(fig, "multicast_rates")
    return written
