"""A person-readable summary of an emulated run: per strategy and session, raw and unscaled.

Owns only the printing; the numbers are read back from the run's results files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stemflow.results import read_results

SHOWN = {"throughput_mbps": "Mbit/s", "completion_s": "s", "latency_ms": "ms",
         "rr_latency_ms": "ms", "frame_delay_ms": "ms", "deadline_miss_ratio": ""}


def summary_table(out: Path, rate_scale: float):  # -> pandas.DataFrame
    df = read_results(out / "results.csv")
    df = df[df.metric.isin(list(SHOWN))]
    df = df.assign(session=df["session"].str.split("/").str[0])  # all subscribers together
    g = df.groupby(["strategy", "session", "metric"], sort=False)["value"]
    table = g.median().rename("median").reset_index()
    table["unscaled"] = [v / rate_scale if m == "throughput_mbps" else v
                         for v, m in zip(table["median"], table["metric"], strict=True)]
    return table


def print_summary(out: Path, manifest: dict[str, Any]) -> None:
    f = manifest["rate_scale"]
    table = summary_table(out, f)
    print(f"\nemulated {manifest['scenario']} (link backend {manifest['link_backend']}, "
          f"rate scale {f:g}; 'unscaled' = rates / {f:g}); medians over messages and subscribers")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"results: {out / 'results.csv'} (unscaled: {out / 'results-unscaled.csv'})")
