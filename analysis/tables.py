"""Tables computed from the tidy results: pure functions from a DataFrame to a DataFrame.

Owns every aggregation the figures and reports show: the per-strategy summary with ratios to
`direct`, gains over swept parameters, multicast rate per subscriber against the network-coding
bound, sim-vs-emu parity, per-link utilization, and the routing benchmark's solve times; and the
writing of a table as CSV and Markdown. Each function returns an empty DataFrame when its input
lacks the data; `analysis.run` decides what to say about that.

Aggregation rule: a metric is averaged over all rows (sessions, subscribers, runs) of a group, but
throughput is taken from bulk sessions and latency from message sessions when such sessions exist,
so a 25 Mbit/s live stream never dilutes the throughput of a 1 GB transfer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from stemflow.analysis.load import SWEEP_PREFIX, session_ids, sweep_columns

from stemflow.results import column_label

BASELINE = "direct"
MULTICAST = "multicast"
STRATEGY_ORDER = ("direct", "shortest", "widest", "multipath", "multicast")
GROUP = ["mode", "scenario", "config"]
PRIMARY_WORKLOAD = {
    "throughput_mbps": "bulk",
    "completion_s": "bulk",
    "latency_ms": "messages",
    "rr_latency_ms": "messages",
    "frame_delay_ms": "stream",
    "deadline_miss_ratio": "stream",
}
"""Metric -> the workload type whose rows define it, when rows of that workload exist."""
RATIO_METRICS = ("throughput_mbps",)
DELTA_METRICS = ("latency_ms", "rr_latency_ms")
DERIVED = {"throughput_mbps": ("throughput_ratio", "throughput_gain_pct"),
           "latency_ms": ("latency_delta_ms",), "rr_latency_ms": ("rr_latency_delta_ms",)}
SUMMARY_METRICS = ("throughput_mbps", "latency_ms", "rr_latency_ms", "frame_delay_ms",
                   "deadline_miss_ratio", "solve_s")
PLAN_METRICS = ("solve_s", "planned_rate_mbps", "bound_mbps")
"""Outputs of the routing core, the same code in sim and emu: not a parity measurement."""
SCALE_DEPENDENT = ("completion_s",)
"""Durations that stretch with the emulation's rate scale by no fixed factor (set-up and
propagation do not stretch), so they are not compared across scales."""
PARITY_BAND = 0.10
"""Sim and emu agree on a value when they differ by at most this share of the sim value."""


def strategy_sort_key(name: str) -> tuple[int, str]:
    return (STRATEGY_ORDER.index(name) if name in STRATEGY_ORDER else len(STRATEGY_ORDER), name)


def _sorted(df: pd.DataFrame, cols: Sequence[str]) -> pd.DataFrame:
    if df.empty or "strategy" not in df.columns:
        return df.reset_index(drop=True)
    order = df["strategy"].map(lambda s: strategy_sort_key(s)[0])
    return (df.assign(_o=order).sort_values([*cols, "_o", "strategy"], kind="stable")
            .drop(columns="_o").reset_index(drop=True))


def metric_rows(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The rows that define `metric` (see the module's aggregation rule)."""
    rows = df[df["metric"] == metric]
    want = PRIMARY_WORKLOAD.get(metric)
    if want and not rows.empty:
        kind = rows["workload"].str.split(n=1).str[0].str.split(":").str[0].str.lower()
        if (kind == want).any():
            rows = rows[kind == want]
    return rows


def _mean_by(df: pd.DataFrame, metric: str, by: list[str]) -> pd.Series:
    rows = metric_rows(df, metric)
    if rows.empty:
        return pd.Series(dtype=float, name=metric)
    return rows.groupby(by, dropna=False, sort=False)["value"].mean().rename(metric)


# ---------------------------------------------------------------------------------------------
# Per strategy


def strategy_table(df: pd.DataFrame) -> pd.DataFrame:
    """Mean of each summary metric per (mode, scenario, config, strategy), with ratios to direct.

    `throughput_ratio` is a strategy's throughput over direct's in the same group;
    `<latency>_delta_ms` is its latency minus direct's (the paper's Table I reports both).
    """
    by = [*GROUP, "strategy"]
    parts = [_mean_by(df, m, by) for m in SUMMARY_METRICS if (df["metric"] == m).any()]
    if not parts:
        return pd.DataFrame()
    table = pd.concat(parts, axis=1).reset_index()
    for m in SUMMARY_METRICS:
        if m not in table.columns:
            continue
        base = table[table["strategy"] == BASELINE].set_index(GROUP)[m]
        ref = table.set_index(GROUP).index.map(lambda k, b=base: b.get(k, np.nan))
        ref = np.asarray(ref, dtype=float)
        if m in RATIO_METRICS:
            table["throughput_ratio"] = table[m].to_numpy() / ref
            table["throughput_gain_pct"] = (table["throughput_ratio"] - 1.0) * 100.0
        elif m in DELTA_METRICS:
            table[m.removesuffix("_ms") + "_delta_ms"] = table[m].to_numpy() - ref
    order = [*by]
    for m in SUMMARY_METRICS:
        order += [c for c in (m, *DERIVED.get(m, ())) if c in table.columns]
    return _sorted(table[order], GROUP)


# ---------------------------------------------------------------------------------------------
# Sweeps


def swept_parameters(df: pd.DataFrame) -> list[str]:
    """Swept parameters (without the `sweep.` prefix) that take more than one value."""
    return [c.removeprefix(SWEEP_PREFIX) for c in sweep_columns(df)
            if df[c].dropna().astype(str).nunique() > 1]


def gain_table(df: pd.DataFrame, param: str) -> pd.DataFrame:
    """Throughput per strategy and its gain over direct at each value of a swept parameter.

    Other swept parameters are kept as columns, so a grid gives one curve per combination.
    """
    col = SWEEP_PREFIX + param
    if col not in df.columns:
        return pd.DataFrame()
    sub = df[df[col].notna()]
    others = [c for c in sweep_columns(sub) if c != col and sub[c].notna().any()]
    by = ["mode", "scenario", *others, col, "strategy"]
    thr = _mean_by(sub.fillna({c: "" for c in others}), "throughput_mbps", by)
    if thr.empty:
        return pd.DataFrame()
    t = thr.reset_index()
    keys = ["mode", "scenario", *others, col]
    base = t[t["strategy"] == BASELINE][[*keys, "throughput_mbps"]].rename(
        columns={"throughput_mbps": "direct_mbps"})
    t = t.merge(base, on=keys, how="left")
    t["gain"] = t["throughput_mbps"] / t["direct_mbps"]
    t = t.rename(columns={col: param, **{c: c.removeprefix(SWEEP_PREFIX) for c in others}})
    t[param] = _numeric_if_possible(t[param])
    return _sorted(t.sort_values(param, kind="stable"), ["mode", "scenario"])


def _numeric_if_possible(s: pd.Series) -> pd.Series:
    num = pd.to_numeric(s, errors="coerce")
    return num if num.notna().all() else s


# ---------------------------------------------------------------------------------------------
# Multicast


SUBSCRIBERS_PARAM = "subscribers"
"""Sweep label for the number of subscribers (a multicast sweep; not a gain-vs-parameter sweep)."""


def multicast_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per-subscriber rate vs number of subscribers, per strategy, with the network-coding bound.

    A session's rows are those whose `session` is its id or `id/subscriber`. The number of
    subscribers of a session in a run is the number of its throughput rows there (one per
    subscriber); a session counts when it has more than one subscriber in some run.
    `bound_mbps` is the bound the multicast strategy reported for the session at that point, or
    without it, the largest reported or recomputed (`bounds.add_missing_bounds`) one.
    """
    thr = metric_rows(df, "throughput_mbps")
    if thr.empty:
        return pd.DataFrame()
    thr = thr.assign(session=session_ids(thr))
    point = ["mode", "scenario", "config", "results_dir", "session"]
    per_run = (thr.groupby([*point, "run_id", "strategy"], sort=False)["value"]
               .agg(["mean", "min", "size"]).reset_index().rename(columns={"size": "n_subscribers"}))
    multi = per_run.groupby(["scenario", "session"])["n_subscribers"].transform("max")
    per_run = per_run[multi > 1]
    if per_run.empty:
        return pd.DataFrame()
    bound = df[df["metric"] == "bound_mbps"]
    if not bound.empty:
        bound = bound.assign(session=session_ids(bound), _mc=bound["strategy"] == MULTICAST)
        bound = bound[bound["_mc"] == bound.groupby(point)["_mc"].transform("max")]
        b = bound.groupby(point, sort=False)["value"].max().rename("bound_mbps").reset_index()
        per_run = per_run.merge(b, on=point, how="left")
    else:
        per_run["bound_mbps"] = np.nan
    out = (per_run.groupby(["mode", "scenario", "session", "n_subscribers", "strategy"], sort=False)
           .agg(per_subscriber_mbps=("mean", "mean"), slowest_subscriber_mbps=("min", "mean"),
                bound_mbps=("bound_mbps", "mean"))
           .reset_index())
    out["share_of_bound"] = out["per_subscriber_mbps"] / out["bound_mbps"]
    return _sorted(out.sort_values("n_subscribers", kind="stable"), ["mode", "scenario", "session"])


# ---------------------------------------------------------------------------------------------
# Sim vs emu


def parity_table(df: pd.DataFrame) -> pd.DataFrame:
    """Mean of each (scenario, config, strategy, session, metric) in sim and in emu, side by side.

    Only keys measured in both modes appear; the routing core's own outputs (`PLAN_METRICS`)
    do not, nor durations of emulated runs at a rate scale other than 1 (`SCALE_DEPENDENT`).
    Emulated rates are in the scenario's units already (`load.in_scenario_units`).
    `within_band` marks |emu - sim| <= 10% of sim.
    """
    modes = set(df["mode"].unique())
    if not {"sim", "emu"} <= modes:
        return pd.DataFrame()
    key = ["scenario", "config", "strategy", "session", "metric", "unit"]
    df = df[~df["metric"].isin(PLAN_METRICS)]
    if "run_rate_scale" in df.columns:
        df = df[~(df["metric"].isin(SCALE_DEPENDENT) & (df["run_rate_scale"] != 1.0))]
    means = df.groupby([*key, "mode"], sort=False)["value"].mean().unstack("mode")
    means = means.dropna(subset=["sim", "emu"]).reset_index()
    if means.empty:
        return pd.DataFrame()
    means = means[[*key, "sim", "emu"]]
    with np.errstate(divide="ignore", invalid="ignore"):
        means["emu_over_sim"] = means["emu"] / means["sim"]
    means["within_band"] = (means["emu"] - means["sim"]).abs() <= PARITY_BAND * means["sim"].abs()
    return _sorted(means, ["scenario", "config"])


# ---------------------------------------------------------------------------------------------
# Links


def parse_link(name: str) -> tuple[str, str] | None:
    a, sep, b = str(name).partition("->")
    return (a.strip(), b.strip()) if sep and a.strip() and b.strip() else None


def utilization_table(df: pd.DataFrame) -> pd.DataFrame:
    """Mean utilization of each overlay link, per (mode, scenario, config, strategy)."""
    rows = df[df["metric"] == "link_utilization"]
    if rows.empty:
        return pd.DataFrame()
    ends = rows["session"].map(parse_link)
    rows = rows[ends.notna()]
    if rows.empty:
        return pd.DataFrame()
    rows = rows.assign(src=ends[ends.notna()].str[0], dst=ends[ends.notna()].str[1])
    out = (rows.groupby([*GROUP, "strategy", "src", "dst"], sort=False)["value"].mean()
           .rename("utilization").reset_index())
    return _sorted(out, GROUP)


def utilization_matrix(util: pd.DataFrame, datacenters: Sequence[str] | None = None) -> pd.DataFrame:
    """One strategy's utilization as a datacenter x datacenter matrix (rows: from, columns: to)."""
    names = list(datacenters) if datacenters else list(dict.fromkeys([*util["src"], *util["dst"]]))
    m = pd.DataFrame(np.nan, index=names, columns=names)
    for r in util.itertuples():
        m.loc[r.src, r.dst] = r.utilization
    return m


# ---------------------------------------------------------------------------------------------
# Optimizer solve time


SIZE_HINTS = ("datacenters", "n_dcs", "dcs", "n_datacenters", "nodes", "sessions", "n_sessions",
              "subscribers", "size", "variables")
TIME_HINTS = ("total_s", "solve_s", "solve_time_s", "time_s", "median_s", "seconds")
"""Decision-time columns, best first: `total_s` (paths + build + solve) is what `solve_s` means
in the results schema; a benchmark's bare `solve_s` is the solver alone; `median_s` is
benchmarks/routing.py's median over repetitions (with `min_s`/`max_s` beside it)."""
LABEL_HINTS = ("config", "strategy", "kind", "solver", "formulation", "fairness", "engine")
OK_STATUS = "ok"


def solve_time_table(bench: pd.DataFrame) -> pd.DataFrame:
    """The routing benchmark's rows reduced to labels, sizes and decision time (seconds).

    The benchmark's layout is its own; this finds a time column (`TIME_HINTS`), the size columns
    among the numeric ones (`SIZE_HINTS`), the label columns (`LABEL_HINTS`), drops rows whose
    `status` is not 'ok', and averages repetitions. The time column used is kept in `time_column`.
    """
    if bench.empty:
        return pd.DataFrame()
    if {"metric", "value"} <= set(bench.columns) and (bench["metric"] == "solve_s").any():
        bench = bench[bench["metric"] == "solve_s"].rename(columns={"value": "solve_s"})
    if "status" in bench.columns:
        bench = bench[bench["status"].astype(str) == OK_STATUS]
    cols = {c.lower(): c for c in bench.columns}
    time_col = next((cols[h] for h in TIME_HINTS if h in cols
                     and pd.api.types.is_numeric_dtype(bench[cols[h]])), None)
    sizes = [cols[h] for h in SIZE_HINTS if h in cols and pd.api.types.is_numeric_dtype(bench[cols[h]])]
    if time_col is None or not sizes or bench.empty:
        return pd.DataFrame()
    labels = [cols[h] for h in LABEL_HINTS if h in cols]
    bench = bench[np.isfinite(bench[time_col].astype(float))]  # a size that did not finish
    if bench.empty:
        return pd.DataFrame()
    out = (bench.groupby([*labels, *sizes], sort=True)[time_col].agg(["mean", "min", "max", "size"])
           .reset_index())
    out = out.rename(columns={"mean": "time_s", "min": "time_min_s", "max": "time_max_s",
                              "size": "repetitions"})
    if time_col == cols.get("median_s") and {"min_s", "max_s"} <= cols.keys():
        # one row per configuration already: its own range, where it gives one
        ranges = bench.groupby([*labels, *sizes], sort=True)[[cols["min_s"], cols["max_s"]]].mean()
        lo, hi = ranges[cols["min_s"]].to_numpy(), ranges[cols["max_s"]].to_numpy()
        out["time_min_s"] = np.where(np.isfinite(lo), lo, out["time_min_s"])
        out["time_max_s"] = np.where(np.isfinite(hi), hi, out["time_max_s"])
    out["time_column"] = time_col
    return out


# ---------------------------------------------------------------------------------------------
# Writing


def format_value(v: object) -> str:
    if isinstance(v, bool | np.bool_):
        return "yes" if v else "no"
    if isinstance(v, int | np.integer):
        return str(int(v))
    if isinstance(v, float | np.floating):
        f = float(v)
        if math.isnan(f):
            return "–"
        if f == int(f) and abs(f) < 1e6:
            return str(int(f))
        a = abs(f)
        if a >= 100:
            return f"{f:.1f}"
        if a >= 1:
            return f"{f:.3g}" if a < 10 else f"{f:.2f}"
        return f"{f:.3g}"
    return str(v).replace("|", "\\|")


def to_markdown(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (no dependency on `tabulate`), its columns in words
    (`column_label`); the CSV beside it keeps the machine names."""
    cols = [column_label(str(c)) for c in df.columns]
    numeric = [pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])
               for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |",
             "|" + "|".join("---:" if n else ":---" for n in numeric) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(format_value(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def write_table(df: pd.DataFrame, out_dir: Path, name: str, title: str) -> list[Path]:
    """Write `name.csv` (full precision) and `name.md` (titled, rounded); return both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / f"{name}.csv", out_dir / f"{name}.md"
    df.to_csv(csv_path, index=False)
    md_path.write_text(f"### {title}\n\n{to_markdown(df)}")
    return [csv_path, md_path]
