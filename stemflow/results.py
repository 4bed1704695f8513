"""The one results schema that the simulator and the emulator both write, and its writers.

Owns the tidy table (one measured value a row), the run manifest, and reading them back. Metric
names and units are defined here once; `docs/metrics.md` explains each.
"""

from __future__ import annotations

import csv
import json
import platform
import sys
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

COLUMNS = ("run_id", "mode", "scenario", "strategy", "session", "workload", "metric", "value",
           "unit", "t_s")

METRICS: dict[str, tuple[str, str]] = {
    "throughput_mbps": ("Mbit/s", "bytes delivered x 8 / completion time, per session and subscriber"),
    "completion_s": ("s", "publish of the first byte to delivery of the last, per subscriber"),
    "latency_ms": ("ms", "one-way: publish call to delivery at the subscriber"),
    "rr_latency_ms": ("ms", "request-response: send a message, receive the reply at the sender"),
    "text_latency_ms": ("ms", "chat: a text message's publish call to delivery at another member"),
    "image_latency_ms": ("ms", "chat: an image message's publish call to delivery at another member"),
    "frame_delay_ms": ("ms", "stream frame: capture at the publisher to delivery"),
    "deadline_miss_ratio": ("1", "share of stream frames delivered after their deadline or never"),
    "freeze_ratio": ("1", "video: time frozen (webrtc-stats freezes) over the time shown, per viewer"),
    "source_egress_mbps": ("Mbit/s", "video: rate the source datacenter sends for the session over "
                                     "inter-datacenter links (or direct connections)"),
    "link_utilization": ("1", "carried rate / effective capacity, per overlay link (session = a->b)"),
    "solve_s": ("s", "time the strategy took to decide a plan (paths + build + solve)"),
    "planned_rate_mbps": ("Mbit/s", "rate the plan gives the session"),
    "bound_mbps": ("Mbit/s", "max-flow (unicast) or network-coding (multicast) bound"),
    "mean_rate_mbps": ("Mbit/s", "bytes delivered x 8 / (last delivery - first byte sent): the rate "
                                 "once set-up (handshakes, controller) is over, per subscriber"),
    "delivered_bytes": ("B", "bytes a subscriber received of a session (runs with faults)"),
    "delivery_rate_mbps": ("Mbit/s", "a session's delivery rate at t_s, sampled (runs with faults)"),
    "fault_replan_s": ("s", "fault start to the controller's first plan after it (session = the "
                            "fault in words)"),
    "fault_resume_s": ("s", "fault start to the session's delivery running again (0: never stopped; "
                            "session = SESSION after fault N)"),
    "fault_lost_bytes": ("B", "bytes of the session a fault lost (session = SESSION after fault N)"),
    "fault_duplicated_bytes": ("B", "bytes of the session delivered twice after a fault"),
    "fault_dip_mbps": ("Mbit/s", "delivery rate before a fault minus the lowest while it acted"),
}

METRIC_NAMES: dict[str, str] = {
    "throughput_mbps": "throughput",
    "completion_s": "completion time",
    "latency_ms": "one-way latency",
    "rr_latency_ms": "request-response latency",
    "text_latency_ms": "text delivery latency",
    "image_latency_ms": "image delivery latency",
    "frame_delay_ms": "frame delay",
    "deadline_miss_ratio": "frames late or lost",
    "freeze_ratio": "time frozen",
    "source_egress_mbps": "source egress",
    "link_utilization": "link utilization",
    "solve_s": "plan time",
    "planned_rate_mbps": "planned rate",
    "bound_mbps": "upper bound on the rate",
    "mean_rate_mbps": "rate after set-up",
    "delivered_bytes": "bytes delivered",
    "delivery_rate_mbps": "delivery rate",
    "fault_replan_s": "time to re-plan",
    "fault_resume_s": "time to resume delivery",
    "fault_lost_bytes": "bytes lost",
    "fault_duplicated_bytes": "bytes duplicated",
    "fault_dip_mbps": "throughput dip",
}
"""Each metric in words, for tables and figure labels (a reader should never see `rr_latency_ms`)."""


def metric_label(metric: str) -> str:
    """'rr_latency_ms' -> 'request-response latency (ms)': the words and the unit of a metric."""
    unit = METRICS[metric][0] if metric in METRICS else ""
    name = METRIC_NAMES.get(metric, metric.replace("_", " "))
    return f"{name} ({unit})" if unit and unit != "1" else name


def column_label(column: str) -> str:
    """A table column in words: a metric with its unit, and the analysis's derived columns
    ('throughput_ratio' -> 'throughput (× direct)', 'rr_latency_delta_ms' -> 'request-response
    latency added vs direct (ms)'); anything else with spaces for underscores."""
    if column in METRICS:
        return metric_label(column)
    for suffix, words in (("_ratio", "{} (× direct)"), ("_gain_pct", "{} gain over direct (%)"),
                          ("_delta_ms", "{} added vs direct (ms)")):
        if column.endswith(suffix):
            base = column.removesuffix(suffix)
            metric = next((m for m in METRICS if m.rsplit("_", 1)[0] == base), None)
            if metric is not None:
                return words.format(METRIC_NAMES.get(metric, base.replace("_", " ")))
    return column.replace("_", " ")


@dataclass(frozen=True)
class Row:
    """One measured value."""

    run_id: str
    mode: str
    scenario: str
    strategy: str
    session: str
    workload: str
    metric: str
    value: float
    unit: str
    t_s: float = 0.0


class ResultsError(ValueError):
    pass


def metric_row(run_id: str, mode: str, scenario: str, strategy: str, session: str, workload: str,
               metric: str, value: float, t_s: float = 0.0) -> Row:
    """A row whose unit comes from the metric's definition (so units cannot drift)."""
    if metric not in METRICS:
        raise ResultsError(f"undefined metric {metric!r}; defined: {sorted(METRICS)}")
    return Row(run_id, mode, scenario, strategy, session, workload, metric, float(value),
               METRICS[metric][0], t_s)


def write_results(path: Path, rows: Iterable[Row]) -> None:
    """Write rows as CSV, with values printed reproducibly (repr of floats)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(COLUMNS)
        for r in rows:
            d = asdict(r)
            w.writerow([repr(d[c]) if isinstance(d[c], float) else d[c] for c in COLUMNS])


def versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for pkg in ("stemflow", "simpy", "pulp", "highspy", "networkx", "numpy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def write_manifest(path: Path, manifest: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")


def read_results(path: Path):  # -> pandas.DataFrame (pandas imported lazily: it is slow to load)
    """Read one results.csv (or a directory holding one) into a DataFrame, checking the schema."""
    import pandas as pd

    path = Path(path)
    if path.is_dir():
        path = path / "results.csv"
    if not path.exists():
        raise ResultsError(f"{path}: no such results file")
    df = pd.read_csv(path)
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ResultsError(f"{path}: missing columns {missing}; expected {list(COLUMNS)}")
    if df.empty:
        raise ResultsError(f"{path}: has no rows")
    return df
