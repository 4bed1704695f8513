"""`python -m stemflow.sim.sweep`: what the paper did not show — Stemflow's gain as its causes vary.

Owns the sweeps behind papers/stemflow-infocom17-demo/MODEL.md: the Table I scenario (relays in
us-east1, us-central1, us-west1, asia-northeast1, asia-east1) with one knob moved at a time — P
(relay.parallel, 1..16), the window cap (tcp.rwnd), random loss on the inter-region paths — each
under `shortest` (the paper's Stemflow: the one min-latency overlay path, here the direct
us-east1 -> asia-east1 hop) and `multipath` (every relay); and the no-gain scenario. For each point
it runs `direct` and the strategy and records the 1 GB throughput, the 1 KB request-response
latency and the gain (strategy / direct). Writes `gain.csv` (one row per point), `gain.md` (the
same as tables) and `gain.png`/`.pdf`/`.svg` into the output directory.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stemflow.sim.runner import run_strategy
from tqdm import tqdm

from stemflow.figure_style import PAGE_IN, figure, save, strategy_color
from stemflow.scenario import Scenario, load_scenario

TABLE1 = Path("scenarios/table1-us-east-asia-east.yaml")
NO_GAIN = Path("scenarios/no-gain-uniform.yaml")
STRATEGIES = ("shortest", "multipath")
"""The paper's Stemflow (one overlay path, P connections per hop), and what more relays add."""

PARALLEL = list(range(1, 17))
RWND_MB = [1, 2, 3, 4.333, 6, 8, 16, 32, 64]
LOSS = [0.0, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2]


@dataclass(frozen=True)
class Point:
    sweep: str
    value: float
    strategy: str
    direct_mbps: float
    stemflow_mbps: float
    direct_rr_ms: float
    stemflow_rr_ms: float

    @property
    def gain(self) -> float:
        return self.stemflow_mbps / self.direct_mbps


def _measure(s: Scenario, strategy: str) -> tuple[float, float, float, float]:
    out = {}
    for st in ("direct", strategy):
        for r in run_strategy(s, st, s.seed, "sweep").rows:
            out[(st, r.metric, r.session)] = r.value
    return (out[("direct", "throughput_mbps", "bulk-1GB")], out[(strategy, "throughput_mbps", "bulk-1GB")],
            out[("direct", "rr_latency_ms", "msg-1KB")], out[(strategy, "rr_latency_ms", "msg-1KB")])


def table1_points() -> Iterable[tuple[str, float, str, dict[str, Any]]]:
    """(sweep, value, strategy, scenario updates in `Scenario.with_updates`'s grammar)."""
    for strategy in STRATEGIES:
        for p in PARALLEL:
            yield "parallel", p, strategy, {"relay.parallel": p}
        for mb in RWND_MB:
            yield "rwnd_mb", mb, strategy, {"tcp.rwnd": f"{mb} MB"}
        for loss in LOSS:
            yield "loss", loss, strategy, {"links.*.loss": loss}


def run(out: Path, quiet: bool = False) -> list[Point]:
    table1 = load_scenario(TABLE1)
    specs = list(table1_points())
    points = []
    for sweep, value, strategy, updates in tqdm(specs, desc="sweep", unit="point", disable=quiet, delay=2.0,
                                                file=sys.stderr):
        points.append(Point(sweep, value, strategy, *_measure(table1.with_updates(updates), strategy)))
    no_gain = load_scenario(NO_GAIN)
    for p in (1, 4, 16):
        s = no_gain.with_updates({"relay.parallel": p})
        direct = [r.value for r in run_strategy(s, "direct", s.seed, "sweep").rows
                  if r.metric == "throughput_mbps"]
        stem = [r.value for r in run_strategy(s, "multipath", s.seed, "sweep").rows
                if r.metric == "throughput_mbps"]
        points.append(Point("no-gain parallel", p, "multipath", sum(direct) / len(direct),
                            sum(stem) / len(stem), float("nan"), float("nan")))
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(out / "gain.csv", points)
    (out / "gain.md").write_text(_markdown(points))
    _plot(out, points)
    return points


def _write_csv(path: Path, points: list[Point]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["sweep", "value", "strategy", "direct_mbps", "stemflow_mbps", "gain", "direct_rr_ms",
                    "stemflow_rr_ms"])
        for p in points:
            w.writerow([p.sweep, repr(p.value), p.strategy, f"{p.direct_mbps:.3f}", f"{p.stemflow_mbps:.3f}",
                        f"{p.gain:.4f}", f"{p.direct_rr_ms:.2f}", f"{p.stemflow_rr_ms:.2f}"])


def _markdown(points: list[Point]) -> str:
    lines = []
    for sweep in dict.fromkeys(p.sweep for p in points):
        rows = [p for p in points if p.sweep == sweep]
        lines += [f"### {sweep}", "", "| value | strategy | direct Mbit/s | strategy Mbit/s | gain | "
                  "direct RR ms | strategy RR ms |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {p.value:g} | {p.strategy} | {p.direct_mbps:.1f} | {p.stemflow_mbps:.1f} | "
                  f"{p.gain:.2f}x | {p.direct_rr_ms:.1f} | {p.stemflow_rr_ms:.1f} |" for p in rows]
        lines.append("")
    return "\n".join(lines)


def _plot(out: Path, points: list[Point]) -> None:
    sweeps = [("parallel", "P (connections per relay hop)", False),
              ("rwnd_mb", "window cap (MB)", True),
              ("loss", "random loss per packet,\ninter-region paths (0 at 1e-7)", True)]
    fig = figure(PAGE_IN, 2.4)
    axes = fig.subplots(1, 3, sharey=True)
    for ax, (name, label, logx) in zip(axes, sweeps, strict=True):
        for strategy, marker, label_ in (("shortest", "o", "shortest (the paper's Stemflow)"),
                                         ("multipath", "s", "multipath (relays in 5 regions)")):
            pts = [p for p in points if p.sweep == name and p.strategy == strategy]
            xs = [max(p.value, 1e-7) if name == "loss" else p.value for p in pts]
            ax.plot(xs, [p.gain for p in pts], marker=marker, ms=3, lw=1,
                    color=strategy_color(strategy), label=label_)
        if logx:
            ax.set_xscale("log")
        ax.axhline(1.0, color="0.5", lw=0.8)
        ax.set_yscale("log")
        ax.set_yticks([1, 2, 5, 10, 20], ["1", "2", "5", "10", "20"])
        ax.minorticks_off()
        ax.set_xlabel(label)
    axes[0].set_xticks([1, 2, 4, 8, 16], ["1", "2", "4", "8", "16"])
    axes[1].set_xticks([1, 2, 4, 8, 16, 32, 64], ["1", "2", "4", "8", "16", "32", "64"])
    axes[0].set_ylabel("throughput gain over direct TCP\n(1 GB transfer)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncol=2, frameon=False)
    save(fig, out, "gain")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m stemflow.sim.sweep", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("results/table1-us-east-asia-east/sweeps"))
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    points = run(args.out, args.quiet)
    if not args.quiet:
        print(_markdown(points))
    return 0


if __name__ == "__main__":
    sys.exit(main())
