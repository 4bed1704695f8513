"""Fault timelines: each session's delivery rate over time, with the faults marked on it.

Owns reading the rows a run with faults writes (`delivery_rate_mbps` samples, and the per-fault
rows of `stemflow.faults`) into one table per (mode, scenario, strategy), and the figure drawn
from it. Which faults there were and what they did is the drivers' (`stemflow.sim.faults`,
`stemflow.emu.faults`); this module only shows it.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from stemflow.figure_style import PAGE_IN, figure, strategy_color
from stemflow.results import metric_label

RATE = "delivery_rate_mbps"
REPLAN = "fault_replan_s"
MODE_STYLE = {"sim": "-", "emu": "--"}
"""Line style per mode, so that a simulated and an emulated run share one axis legibly."""


def timeline_table(df: pd.DataFrame) -> pd.DataFrame:
    """The sampled delivery rates: mode, scenario, strategy, session, t_s, rate (Mbit/s)."""
    rates = df[df["metric"] == RATE]
    return (rates[["mode", "scenario", "strategy", "session", "t_s", "value"]]
            .rename(columns={"value": "rate_mbps"}).sort_values(["mode", "strategy", "session", "t_s"])
            .reset_index(drop=True))


def fault_marks(df: pd.DataFrame) -> pd.DataFrame:
    """One row per fault and run: mode, scenario, strategy, the fault in words, its start and the
    controller's re-plan instant (from the `fault_replan_s` rows)."""
    f = df[df["metric"] == REPLAN]
    out = f[["mode", "scenario", "strategy", "session", "t_s"]].rename(
        columns={"session": "fault", "t_s": "at_s"})
    out["replan_at_s"] = f["t_s"].to_numpy() + f["value"].to_numpy()
    return out.reset_index(drop=True)


SMOOTH_S = 0.25
"""Rates are drawn as means over this long: an emulated window-limited TCP connection delivers
in bursts (one window per round trip), which at the 50 ms sampling step hide the faults' dips."""


def timeline_figure(rates: pd.DataFrame, marks: pd.DataFrame, scenario: str,
                    smooth_s: float = SMOOTH_S) -> Figure:
    """Delivery rate (Mbit/s, mean over `smooth_s`) against time since the start of the run (s),
    one line per strategy, session and mode; each fault a vertical line at its start, labelled
    in words, and a dotted one where the controller re-planned."""
    fig = figure(PAGE_IN, 3.1)
    ax = fig.add_subplot()
    for (mode, strategy, session), g in rates.groupby(["mode", "strategy", "session"], sort=True):
        step = float(g["t_s"].diff().median()) if len(g) > 1 else smooth_s
        window = max(1, round(smooth_s / step)) if step > 0 else 1
        smooth = g["rate_mbps"].rolling(window, min_periods=1, center=True).mean()
        ax.step(g["t_s"], smooth, where="post", color=strategy_color(strategy),
                linestyle=MODE_STYLE.get(mode, ":"), linewidth=1.1,
                label=f"{session}, {strategy} ({mode})")
    top = max(float(rates["rate_mbps"].max()), 1.0) if not rates.empty else 1.0
    top = max(line.get_ydata().max() for line in ax.lines) if ax.lines else top
    for i, m in enumerate(marks.drop_duplicates(["fault", "at_s", "mode"]).itertuples()):
        ax.axvline(m.at_s, color="k", linewidth=0.9)
        ax.axvline(m.replan_at_s, color="k", linewidth=0.8, linestyle=":")
        ax.annotate(f"{m.fault} ({m.mode}); dotted: re-planned {1e3 * (m.replan_at_s - m.at_s):.0f} ms later",
                    (m.at_s, top * (0.98 - 0.08 * i)), xytext=(4, 0), textcoords="offset points",
                    fontsize=6.5, va="top")
    ax.set_xlabel("time since the start of the run (s)")
    ax.set_ylabel(f"{metric_label(RATE)}, mean over {smooth_s * 1e3:.0f} ms")
    ax.set_ylim(0, top * 1.1)
    ax.set_title(f"Delivery rate through faults\n{scenario}")
    fig.legend(loc="outside lower center", ncol=3, frameon=False)  # below: the fault labels are at the top
    return fig
