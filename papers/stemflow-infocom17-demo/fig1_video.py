"""REPORT.md's Fig. 1 section (the live video broadcast), from the saved emulation results.

Owns the section's wording and its figure; every number is read from the summary CSV that
`benchmarks/broadcast_emu.py` writes (`benchmarks/results/fig1-video.csv`), through
`stemflow.analysis.fig1_video`. `report.py` includes the section in a full regeneration; run
alone, this rewrites that one section of REPORT.md in place, leaving every other one as it is:

    python papers/stemflow-infocom17-demo/fig1_video.py [--results CSV] [--report PATH]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from stemflow.analysis import fig1_video as fv

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
RESULTS = REPO / "benchmarks" / "results" / "fig1-video.csv"
HEADING = "## Fig. 1: a live video broadcast across five datacenters"
STEM = "fig1-video-broadcast"
COMMAND = "python papers/stemflow-infocom17-demo/fig1_video.py"


def _min_sustained(rows: list[dict], mode: str, strategy: str) -> float:
    return min(fv.med(fv.highest_sustained(rows, mode, strategy, v)) for v in fv.viewers(rows))


def summary_table(rows: list[dict]) -> list[str]:
    bs = fv.bitrates(rows, "emu")
    lo, hi = bs[0], bs[-1]
    lines = [f"| architecture | p95 above propagation, worst viewer, at {lo:g} Mbit/s (ms) "
             "| highest freeze ratio, any viewer, bitrates it sustains "
             "| highest bitrate every viewer sustains (Mbit/s) "
             f"| source egress at {lo:g} / {hi:g} Mbit/s (Mbit/s) |",
             "|---|---:|---:|---:|---:|"]
    for s in fv.STRATEGIES:
        d_e = fv.worst_excess(rows, "emu", lo, s)
        d_s = fv.med(fv.worst_excess(rows, "sim", lo, s))
        sustained = [r["freeze_ratio"] for r in rows if r["mode"] == "emu" and r["strategy"] == s
                     and fv.sustains(r)]
        eg = [fv.med(fv.values(rows, "emu", "source_egress_mbps", b, s)) for b in (lo, hi)]
        eg_s = [fv.med(fv.values(rows, "sim", "source_egress_mbps", b, s)) for b in (lo, hi)]
        lines.append(
            f"| {fv.LABEL[s]} | {fv.mr(d_e)} (sim {d_s:.1f}) "
            f"| {100 * max(sustained, default=math.nan):.2f}% "
            f"| {_min_sustained(rows, 'emu', s):g} (sim {_min_sustained(rows, 'sim', s):g}) "
            f"| {eg[0]:.0f} / {eg[1]:.0f} (sim {eg_s[0]:.0f} / {eg_s[1]:.0f}) |")
    return lines


def disagreements(rows: list[dict]) -> list[str]:
    """Per strategy, the lowest common bitrate where the emulation (median of its runs) and the
    simulator disagree on whether some viewer sustains it, in words."""
    out = []
    for s in fv.STRATEGIES:
        for b in fv.common_bitrates(rows):
            split = []
            for v in fv.viewers(rows):
                e = [r for r in rows if (r["mode"], r["bitrate_mbps"], r["strategy"], r["viewer"])
                     == ("emu", b, s, v)]
                m = [r for r in rows if (r["mode"], r["bitrate_mbps"], r["strategy"], r["viewer"])
                     == ("sim", b, s, v)]
                if not e or not m:
                    continue
                e_ok = sum(fv.sustains(r) for r in e) * 2 > len(e)
                if e_ok != fv.sustains(m[0]):
                    split.append(f"{v.removeprefix('viewer-')} p95 "
                                 f"{fv.med([r['p95_ms'] for r in e]):.0f} / {m[0]['p95_ms']:.0f} ms, "
                                 f"freeze {100 * fv.med([r['freeze_ratio'] for r in e]):.1f}% / "
                                 f"{100 * m[0]['freeze_ratio']:.1f}%")
            if split:
                out.append(f"{fv.SHORT[s]} at {b:g} Mbit/s: {', '.join(split)}")
                break
    return out


def findings(rows: list[dict]) -> list[str]:
    bs = fv.bitrates(rows, "emu")
    sim_top = fv.bitrates(rows, "sim")[-1]
    out = []
    per = []
    for b in bs:
        trees = [r for r in rows if r["mode"] == "emu" and r["strategy"] == "multicast"
                 and r["bitrate_mbps"] == b]
        met = sum(1 for r in trees if r["p95_ms"] <= r["propagation_ms"] + fv.TARGET_SLACK_MS)
        frozen = max(r["freeze_ratio"] for r in trees)
        per.append(f"{b:g} Mbit/s: {met} of {len(trees)} (highest freeze ratio {100 * frozen:.1f}%)")
    out.append("- **Delay with trees.** Emulated (viewer, run) cases with a frame delay p95 within "
               f"the one-way propagation + {fv.TARGET_SLACK_MS:.0f} ms, per bitrate: "
               + "; ".join(per) + ".")
    same = all(fv.med(fv.values(rows, "sim", "source_egress_mbps", b, "multicast"))
               == fv.med(fv.values(rows, "sim", "source_egress_mbps", b, "shortest")) for b in bs)
    if same:
        out.append("- **Trees against unicast fan-out.** On these measured RTTs the plan's tree "
                   "from us-west1 is a star: each viewer region's lowest-delay path is its direct "
                   "link from the source, and at these bitrates no link is full, so the trees carry "
                   "what unicast fan-out carries, with the same egress. The two differ only where "
                   "a star cannot carry the rate.")
    top = {s: _min_sustained(rows, "emu", s) for s in fv.STRATEGIES}
    sim = {s: _min_sustained(rows, "sim", s) for s in fv.STRATEGIES}
    out.append("- **Highest bitrate.** In the emulation every viewer sustains up to "
               + ", ".join(f"{top[s]:g} Mbit/s with {fv.SHORT[s]}" for s in fv.STRATEGIES)
               + f" (the emulated sweep's top is {bs[-1]:g}); in the simulator, whose sweep goes "
               f"on to {sim_top:g}, up to "
               + ", ".join(f"{sim[s]:g} with {fv.SHORT[s]}" for s in fv.STRATEGIES)
               + ".")
    part = disagreements(rows)
    if part:
        out.append("- **Where the emulation and the simulator part** (a viewer sustained in one and "
                   "not the other; emulated, median of the runs, against simulated): "
                   + "; ".join(part) + ". Delay-sensitive frames cross each relay hop on one fast "
                   "connection of their own (docs/relays.md, `stemflow/relay/peers.py`), so a "
                   "live stream gets one window per round trip on a hop, as a single direct TCP "
                   "connection does, while the simulator's model gives the stream the hop's P "
                   "connections; why the emulated server-based case keeps up better than the "
                   "simulated one is not explained yet.")
    eg = {b: (fv.med(fv.values(rows, "emu", "source_egress_mbps", b, "multicast")),
              fv.med(fv.values(rows, "sim", "source_egress_mbps", b, "multicast"))) for b in bs}
    out.append("- **Egress.** The emulated egress counts IP packets on the wire (headers, relay "
               "framing and the overlay's own control traffic), the simulator the video's payload; "
               "under trees emulated / simulated is "
               + ", ".join(f"{e / s:.2f} at {b:g}" for b, (e, s) in eg.items() if s)
               + " Mbit/s. The fixed part weighs most at low bitrates, more so at the rate scale "
               "used: frames shrink by F, headers and control messages do not.")
    par = fv.parity(rows)
    out.append("- **Simulator beside the emulation** (emulated medians): "
               + "; ".join(f"{fv.PARITY_NAMES[k]}: {n} of {t} within the band"
                           for k, (n, t) in par.items()) + ".")
    return out


def section(results: Path, fig_dir: Path) -> list[str]:
    """The section's lines; the figure is written to `fig_dir` (PNG, PDF, SVG)."""
    lines = [HEADING, ""]
    if not results.exists():
        return [*lines, f"No saved results ({results}); run `sudo .venv/bin/python "
                "benchmarks/broadcast_emu.py --results benchmarks/results/fig1-video.csv`.", ""]
    rows = fv.load(results)
    c = fv.context(rows)
    fv.draw(rows, fig_dir, STEM)
    bs = fv.bitrates(rows, "emu")
    sim_only = [b for b in fv.bitrates(rows, "sim") if b not in bs]
    lines += [
        "The paper's Fig. 1 shows a video broadcast across five datacenters, streamed over "
        "inter-datacenter links with \"minimal perceived delay and no visual disruptions\". Here: "
        "`scenarios/fig1-video-5dc.yaml`, the broadcaster in us-west1 and viewers in us-east1, "
        "europe-west1, asia-east1 and asia-southeast1 (measured GCP RTTs and throughputs), the "
        "`video` workload (frame sizes from the browser's VP8 encoder, 30 frames/s, a key frame "
        f"every 2 s, {c['seconds']:g} s) at {', '.join(f'{b:g}' for b in bs)} Mbit/s "
        f"(simulated also at {', '.join(f'{b:g}' for b in sim_only)}), under "
        "three architectures: Stemflow's trees (`multicast`), unicast fan-out from the source "
        "datacenter's relay (`shortest`), and server-based delivery from the source, one TCP "
        "connection per viewer over the Internet path (`direct`). Emulated with the real "
        f"controller and relays at rate scale F = {c['rate_scale']:g} (rates, window cap and "
        "bitrate times F; delays unscaled; scripted viewers), "
        f"{c['reps']} runs per bitrate ({c['dates']}, {c['machine']}, 2 shared cores), and "
        "simulated on the scenario file each emulation wrote. A viewer sustains a bitrate when "
        f"its freeze ratio is ≤ 1% and its frame delay p95 ≤ {fv.DEADLINE_MS:.0f} ms (the "
        "deadline), at that bitrate and every lower one.", "",
        f"![Fig. 1 video broadcast: delay, highest bitrate sustained, source egress](figures/{STEM}.png)",
        "",
        "*Fig. 1 broadcast, emulated (solid, median and range of the runs) and simulated "
        "(dashed; multicast's dashed line lies under shortest's where the trees are stars).* "
        f"(PDF: `figures/{STEM}.pdf`, SVG: `figures/{STEM}.svg`)", "",
        *summary_table(rows), "",
        *findings(rows), "",
        "Per viewer and bitrate, with every run's median and range: \"Emulated Fig. 1 video "
        "broadcast\" in `docs/benchmarks.md`. This section is regenerated from the saved "
        f"results by `{COMMAND}` (seconds; the emulations themselves: `sudo .venv/bin/python "
        "benchmarks/broadcast_emu.py --results benchmarks/results/fig1-video.csv`, about "
        f"{sum(c['wall']) / 60:.0f} minutes).", ""]
    return lines


def splice(report: Path, lines: list[str], before: str = "## Extensions") -> None:
    """Replace this section in `report` (up to the next '## '), or insert it before `before`."""
    page = report.read_text()
    text = "\n".join(lines).rstrip("\n") + "\n\n"
    start = page.find(HEADING + "\n")
    if start >= 0:
        end = page.find("\n## ", start + len(HEADING))
        page = page[:start] + text + ("" if end < 0 else page[end + 1:])
    else:
        at = page.find(before + "\n")
        page = page + "\n" + text if at < 0 else page[:at] + text + page[at:]
    report.write_text(page)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", type=Path, default=RESULTS, help="summary CSV (default: %(default)s)")
    p.add_argument("--report", type=Path, default=HERE / "REPORT.md")
    a = p.parse_args(argv)
    if not a.results.exists():
        p.error(f"no results at {a.results}")
    if not a.report.exists():
        p.error(f"no report at {a.report}; run reproduce.py first")
    splice(a.report, section(a.results, a.report.parent / "figures"))
    print(f"wrote the Fig. 1 section of {a.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
