"""The Fig. 1 video broadcast's saved results: read, summarized over repetitions, rendered.

Owns the summary CSV that `benchmarks/broadcast_emu.py` appends to (one row per run, mode,
strategy and viewer) and what is read from it: medians and ranges over repetitions, the highest
bitrate each viewer sustains, the source's egress, the simulator-vs-emulation bands, the section
of docs/benchmarks.md and the report's figure. Nothing here runs an emulation, so the report
regenerates from the saved file in a second.
"""

from __future__ import annotations

import csv
import math
import statistics
from collections import defaultdict
from pathlib import Path

from stemflow import figure_style

HEADING = "## Emulated Fig. 1 video broadcast"
COLUMNS = ["date", "commit", "machine", "rep", "bitrate_mbps", "rate_scale", "seconds",
           "load_before", "load_after", "emu_wall_s", "mode", "strategy", "viewer",
           "propagation_ms", "frames", "p50_ms", "p95_ms", "freeze_ratio",
           "deadline_miss_ratio", "source_egress_mbps"]
NUMERIC = ("rep", "bitrate_mbps", "rate_scale", "seconds", "load_before", "load_after",
           "emu_wall_s", "propagation_ms", "frames", "p50_ms", "p95_ms", "freeze_ratio",
           "deadline_miss_ratio", "source_egress_mbps")
STRATEGIES = ("multicast", "shortest", "direct")
LABEL = {"multicast": "Stemflow trees (multicast)",
         "shortest": "unicast fan-out from the source relay (shortest)",
         "direct": "server-based: one TCP connection per viewer from the source (direct)"}
SHORT = {"multicast": "Stemflow trees", "shortest": "unicast fan-out", "direct": "server-based"}
FREEZE_MAX = 0.01
"""Issue 14: freeze ratio <= 1%."""
DEADLINE_MS = 400.0
"""The scenario's deadline: a frame later than this after capture is missed."""
TARGET_SLACK_MS = 50.0
"""Issue 14: frame delay p95 with trees within the one-way path propagation + 50 ms."""
RATE_BAND = 0.10
DELAY_BAND, DELAY_SLACK_MS = 0.05, 5.0


def load(path: Path) -> list[dict]:
    """The rows of the summary CSV, numbers as floats (NaN where a run measured nothing)."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k in NUMERIC:
            r[k] = float(r[k]) if r.get(k) not in ("", None) else math.nan
    return rows


def bitrates(rows: list[dict], mode: str | None = None) -> list[float]:
    """The bitrates measured (in `mode`: the simulator also runs past the emulation's top)."""
    return sorted({r["bitrate_mbps"] for r in rows if mode is None or r["mode"] == mode})


def common_bitrates(rows: list[dict]) -> list[float]:
    emu = set(bitrates(rows, "emu"))
    return [b for b in bitrates(rows, "sim") if b in emu]


def viewers(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(r["viewer"] for r in rows))


def sustains(r: dict) -> bool:
    """A viewer sustains a bitrate: freeze ratio <= 1% and frame delay p95 within the deadline."""
    return r["freeze_ratio"] <= FREEZE_MAX and r["p95_ms"] <= DEADLINE_MS


def by_run(rows: list[dict], mode: str) -> dict[tuple, dict]:
    """(rep, bitrate, strategy, viewer) -> row."""
    return {(r["rep"], r["bitrate_mbps"], r["strategy"], r["viewer"]): r for r in rows
            if r["mode"] == mode}


def values(rows: list[dict], mode: str, field: str, bitrate: float, strategy: str,
           viewer: str | None = None) -> list[float]:
    """`field` over repetitions (per run: the viewer's, or with no viewer the first viewer's row,
    which carries the session's egress)."""
    seen: dict[float, float] = {}
    for r in rows:
        if (r["mode"], r["bitrate_mbps"], r["strategy"]) != (mode, bitrate, strategy):
            continue
        if viewer is None or r["viewer"] == viewer:
            seen.setdefault(r["rep"], r[field])
    return [v for v in seen.values() if not math.isnan(v)]


def highest_sustained(rows: list[dict], mode: str, strategy: str, viewer: str,
                      upto: float = math.inf) -> list[float]:
    """Per repetition, the highest bitrate (up to `upto`) the viewer sustains with every lower
    one sustained too (0 when the lowest fails); the sweep's top when it sustains all of them."""
    runs = by_run(rows, mode)
    out = []
    for rep in sorted({k[0] for k in runs}):
        best = 0.0
        for b in bitrates(rows, mode):
            if b > upto:
                break
            r = runs.get((rep, b, strategy, viewer))
            if r is None or not sustains(r):
                break
            best = b
        out.append(best)
    return out


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else math.nan


def mr(xs: list[float], fmt: str = "{:.1f}") -> str:
    """Median (lowest–highest) over repetitions."""
    if not xs:
        return "–"
    m = fmt.format(med(xs))
    return m if len(xs) == 1 or min(xs) == max(xs) else \
        f"{m} ({fmt.format(min(xs))}–{fmt.format(max(xs))})"


def within_delay(emu: float, sim: float) -> bool:
    return abs(emu - sim) <= DELAY_BAND * sim + DELAY_SLACK_MS


def within_rate(emu: float, sim: float) -> bool:
    return abs(emu - sim) <= RATE_BAND * sim if sim else emu == 0


def parity(rows: list[dict]) -> dict[str, tuple[int, int]]:
    """Per quantity, (within the band, compared): emulated medians over repetitions against the
    simulator, p50 and p95 delay within ±5% + 5 ms, egress and sustained bitrate within ±10%."""
    out: dict[str, list[bool]] = defaultdict(list)
    for b in common_bitrates(rows):
        for s in STRATEGIES:
            for v in viewers(rows):
                for q in ("p50_ms", "p95_ms"):
                    e, m = values(rows, "emu", q, b, s, v), values(rows, "sim", q, b, s, v)
                    if e and m:
                        out[q].append(within_delay(med(e), med(m)))
            e, m = values(rows, "emu", "source_egress_mbps", b, s), \
                values(rows, "sim", "source_egress_mbps", b, s)
            if e and m:
                out["source_egress_mbps"].append(within_rate(med(e), med(m)))
    top = max(common_bitrates(rows), default=0.0)
    for s in STRATEGIES:
        for v in viewers(rows):
            e = highest_sustained(rows, "emu", s, v)
            m = highest_sustained(rows, "sim", s, v, upto=top)
            if e and m:
                out["highest_sustained_mbps"].append(within_rate(med(e), med(m)))
    return {k: (sum(x), len(x)) for k, x in out.items()}


def context(rows: list[dict]) -> dict:
    emu = [r for r in rows if r["mode"] == "emu"]
    dates = sorted({r["date"] for r in emu})
    return {"dates": f"{dates[0]} to {dates[-1]}" if dates else "–",
            "commits": ", ".join(sorted({r["commit"] for r in emu})),
            "machine": emu[0]["machine"] if emu else "–",
            "reps": int(max(r["rep"] for r in emu)) if emu else 0,
            "rate_scale": emu[0]["rate_scale"] if emu else math.nan,
            "seconds": emu[0]["seconds"] if emu else math.nan,
            "load": (min(r["load_before"] for r in emu), max(r["load_after"] for r in emu)),
            "wall": list({(r["rep"], r["bitrate_mbps"]): r["emu_wall_s"] for r in emu}.values())}


# -- tables --------------------------------------------------------------------------------------


def delay_table(rows: list[dict], bitrate: float) -> list[str]:
    lines = ["| strategy | viewer | propagation ms | p50 emu / sim ms | p95 emu / sim ms "
             "| p95 ≤ propagation + 50 ms (emu) | freeze ratio emu / sim | deadline misses emu / sim |",
             "|---|---|---:|---:|---:|---|---:|---:|"]
    for s in STRATEGIES:
        for v in viewers(rows):
            e = lambda q, s=s, v=v: values(rows, "emu", q, bitrate, s, v)  # noqa: E731
            m = lambda q, s=s, v=v: values(rows, "sim", q, bitrate, s, v)  # noqa: E731
            if not e("p95_ms"):
                lines.append(f"| {s} | {v} | | no frames | | | | |")
                continue
            prop = e("propagation_ms")[0]
            met = sum(1 for x in e("p95_ms") if x <= prop + TARGET_SLACK_MS)
            lines.append(
                f"| {s} | {v} | {prop:.1f} | {mr(e('p50_ms'))} / {med(m('p50_ms')):.1f} "
                f"| {mr(e('p95_ms'))} / {med(m('p95_ms')):.1f} | {met} of {len(e('p95_ms'))} runs "
                f"| {mr([100 * x for x in e('freeze_ratio')], '{:.2f}')}% / "
                f"{100 * med(m('freeze_ratio')):.2f}% "
                f"| {mr([100 * x for x in e('deadline_miss_ratio')], '{:.1f}')}% / "
                f"{100 * med(m('deadline_miss_ratio')):.1f}% |")
    return lines


def sustained_table(rows: list[dict]) -> list[str]:
    vs = viewers(rows)
    lines = ["| strategy | " + " | ".join(f"{v} emu / sim" for v in vs) + " |",
             "|---|" + "---:|" * len(vs)]
    for s in STRATEGIES:
        cells = [f"{mr(highest_sustained(rows, 'emu', s, v), '{:g}')} / "
                 f"{med(highest_sustained(rows, 'sim', s, v)):g}" for v in vs]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return lines


def egress_table(rows: list[dict]) -> list[str]:
    bs = bitrates(rows)
    lines = ["| strategy | " + " | ".join(f"{b:g} Mbit/s: emu / sim" for b in bs) + " |",
             "|---|" + "---:|" * len(bs)]
    for s in STRATEGIES:
        cells = [f"{mr(values(rows, 'emu', 'source_egress_mbps', b, s), '{:.0f}')} / "
                 f"{med(values(rows, 'sim', 'source_egress_mbps', b, s)):.0f}" for b in bs]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return lines


PARITY_NAMES = {"p50_ms": "frame delay p50 (±5% + 5 ms)", "p95_ms": "frame delay p95 (±5% + 5 ms)",
             "source_egress_mbps": "source egress (±10%)",
             "highest_sustained_mbps": "highest bitrate sustained (±10%)"}


def parity_lines(rows: list[dict]) -> list[str]:
    return [f"- {PARITY_NAMES[k]}: {n} of {t} within the band" for k, (n, t) in parity(rows).items()]


def benchmark_section(rows: list[dict]) -> str:
    c = context(rows)
    bs = bitrates(rows, "emu")
    sim_only = [b for b in bitrates(rows, "sim") if b not in bs]
    lines = [
        HEADING, "",
        f"`benchmarks/broadcast_emu.py --rate-scale {c['rate_scale']:g} --bitrates "
        f"{','.join(f'{b:g}' for b in bs)} --sim-bitrates {','.join(f'{b:g}' for b in sim_only)} "
        f"--reps {c['reps']} --seconds {c['seconds']:g} --write`, "
        f"{c['dates']}, {c['machine']}, commit {c['commits']}; load average {c['load'][0]:.1f} "
        f"to {c['load'][1]:.1f} (the emulations' own load and other engineers' jobs); each "
        f"emulation (three strategies) took {mr(c['wall'], '{:.0f}')} s. Saved summary: "
        "`benchmarks/results/fig1-video.csv`. `scenarios/fig1-video-5dc.yaml` (five GCP "
        "datacenters, measured RTTs and throughputs, window cap 4.13 MB, 4 parallel connections "
        "per relay hop): the `video` workload from us-west1 to viewers in us-east1, europe-west1, "
        f"asia-east1 and asia-southeast1, 30 frames/s, a key frame every 60, {c['seconds']:g} s, "
        "at each bitrate of the sweep (in the scenario's units). The emulation carries every rate, "
        f"the window cap and the bitrate times F = {c['rate_scale']:g} (so 400 Mbit/s is 4 Mbit/s "
        "per copy on the delay lines, what 2 shared cores can carry), with scripted viewers "
        "(stemflow.client through the real relays and controller); the simulator runs the "
        "scenario file each emulation wrote. Strategies: `multicast` (Stemflow's trees), "
        "`shortest` (unicast fan-out from the source datacenter's relay, one copy per viewer "
        "over the overlay), `direct` (server-based: one TCP connection per viewer from the "
        "source, over the Internet path). Delay: capture at the publisher to arrival at the "
        "viewer; propagation: half the RTT of the source's direct link to the viewer's "
        f"datacenter. A viewer *sustains* a bitrate when its freeze ratio is ≤ 1% and its frame "
        f"delay p95 ≤ the {DEADLINE_MS:.0f} ms deadline (and every lower bitrate too). Source "
        "egress: bytes out of us-west1 to the other datacenters over the session (emu: IP "
        "packets on the delay lines, divided by F; sim: the planned payload). Emulated values: "
        f"median (lowest–highest) of {c['reps']} runs; the simulator is deterministic, and also "
        f"ran at {', '.join(f'{b:g}' for b in sim_only)} Mbit/s, past what the emulation can "
        "carry here.", "",
        f"Frame delay at {bs[0]:g} Mbit/s:", "", *delay_table(rows, bs[0]), "",
        f"Highest bitrate each viewer sustains (Mbit/s, of the sweep; 0: not even the lowest; the "
        f"emulated sweep stops at {bs[-1]:g}, the simulated one at {bitrates(rows, 'sim')[-1]:g}):",
        "", *sustained_table(rows), "",
        "Source datacenter's egress (Mbit/s):", "", *egress_table(rows), "",
        "Simulator vs emulation (emulated medians):", "", *parity_lines(rows), "",
        "<details><summary>frame delay at every bitrate</summary>", ""]
    for b in bs[1:]:  # emulated bitrates
        lines += [f"At {b:g} Mbit/s:", "", *delay_table(rows, b), ""]
    lines += ["</details>", ""]
    return "\n".join(lines)


# -- the figure ----------------------------------------------------------------------------------


def worst_excess(rows: list[dict], mode: str, bitrate: float, strategy: str) -> list[float]:
    """Per repetition, the largest frame delay p95 above propagation over the viewers."""
    per: dict[float, float] = {}
    for r in rows:
        if (r["mode"], r["bitrate_mbps"], r["strategy"]) == (mode, bitrate, strategy) \
                and not math.isnan(r["p95_ms"]):
            per[r["rep"]] = max(per.get(r["rep"], -math.inf), r["p95_ms"] - r["propagation_ms"])
    return list(per.values())


def _plain_log_axis(ax, axis: str, ticks: list[float] | None = None,
                    subs: tuple[float, ...] = (1.0, 2.0, 5.0)) -> None:
    """A log axis labelled in plain numbers (10, 50, 400), not powers of ten."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    a = ax.xaxis if axis == "x" else ax.yaxis
    if ticks:
        a.set_ticks(ticks)
    else:
        a.set_major_locator(LogLocator(subs=subs))
    a.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    a.set_minor_formatter(NullFormatter())


def draw(rows: list[dict], out_dir: Path, stem: str) -> list[Path]:
    """Three panels: the worst viewer's p95 above propagation vs bitrate, the highest bitrate
    each viewer sustains, the source's egress vs bitrate; emulation solid (median, range bars),
    simulator dashed; one legend for all three."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    fig = figure_style.figure(figure_style.PAGE_IN, 2.7)
    ax_d, ax_s, ax_e = fig.subplots(1, 3)
    bs = bitrates(rows)
    for s in STRATEGIES:
        color = figure_style.strategy_color(s)
        for ax, get in ((ax_d, lambda m, b, s=s: worst_excess(rows, m, b, s)),
                        (ax_e, lambda m, b, s=s: values(rows, m, "source_egress_mbps", b, s))):
            e = [get("emu", b) for b in bs]
            ok = [i for i, x in enumerate(e) if x]
            ys = [med(e[i]) for i in ok]
            ax.errorbar([bs[i] for i in ok], ys,
                        yerr=[[y - min(e[i]) for i, y in zip(ok, ys, strict=True)],
                              [max(e[i]) - y for i, y in zip(ok, ys, strict=True)]],
                        color=color, marker="o", ms=3, lw=1.2, capsize=2)
            ax.plot(bs, [med(get("sim", b)) for b in bs], color=color, ls="--", lw=1)
    ax_d.axhline(TARGET_SLACK_MS, color="k", lw=0.8, ls=":")
    ax_d.text(bs[0], TARGET_SLACK_MS * 1.12, "target with trees: 50 ms", fontsize=6)
    ax_d.set(xscale="log", yscale="log", xlabel="video bitrate (Mbit/s)",
             ylabel="frame delay p95 above propagation,\nworst of the 4 viewers (ms)",
             title="(a) delay beyond propagation")
    ax_e.set(xscale="log", yscale="log", xlabel="video bitrate (Mbit/s)",
             ylabel="egress of the source datacenter (Mbit/s)",
             title="(c) source egress (us-west1)")
    for ax in (ax_d, ax_e):
        _plain_log_axis(ax, "x", bs)
    _plain_log_axis(ax_d, "y", subs=(1.0,))
    _plain_log_axis(ax_e, "y")
    vs = viewers(rows)
    top = bitrates(rows, "emu")[-1]
    ax_s.axhline(top, color="k", lw=0.6, ls=":")
    ax_s.text(len(vs) - 0.5, top * 1.02, "top of the emulated sweep", fontsize=6, ha="right",
              va="bottom")
    width = 0.8 / len(STRATEGIES)
    tallest = top
    for k, s in enumerate(STRATEGIES):
        xs = [i + (k - 1) * width for i in range(len(vs))]
        e = [highest_sustained(rows, "emu", s, v) for v in vs]
        ax_s.bar(xs, [med(x) for x in e], width, color=figure_style.strategy_color(s),
                 yerr=[[med(x) - min(x) for x in e], [max(x) - med(x) for x in e]], capsize=1.5,
                 error_kw={"lw": 0.8})
        sim = [med(highest_sustained(rows, "sim", s, v)) for v in vs]
        tallest = max(tallest, *sim, *(max(x) for x in e))
        ax_s.scatter(xs, sim, marker="_", color="k", s=50, linewidths=1.5, zorder=4)
    ax_s.set_xticks(range(len(vs)), [v.removeprefix("viewer-").replace("-", "-\n") for v in vs])
    ax_s.set(ylabel="highest bitrate with freeze ≤ 1%\nand p95 ≤ 400 ms (Mbit/s)",
             xlabel="viewer's region", ylim=(0, tallest * 1.15),
             title="(b) highest bitrate sustained")
    handles = [Patch(color=figure_style.strategy_color(s), label=LABEL[s]) for s in STRATEGIES]
    handles += [Line2D([], [], color="k", marker="o", ms=3, label="emulated: median, range of runs"),
                Line2D([], [], color="k", ls="--", label="simulated (line, or black tick on a bar)")]
    fig.legend(handles=handles, loc="outside lower center", ncol=2, frameon=False)
    return figure_style.save(fig, out_dir, stem)
