"""Network-coding bounds for multicast sessions whose run did not record them.

Owns one fallback: when a results directory has throughput rows of a session but no
`bound_mbps` row for it, the bound is recomputed by the routing core (`session_bound_mbps`: the
min over sinks of the max-flow, over the effective hop capacities) from the run's own scenario —
the file named in its manifest (`scenario_source`) with the manifest's `set` overrides applied.
Recomputed rows carry `bound_source = recomputed`; recorded ones `recorded`. Nothing else here
touches the routing core.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from stemflow.analysis.load import read_manifest, session_ids

from stemflow.network import NetworkState
from stemflow.routing import demands_from_scenario
from stemflow.routing.paths import path_index
from stemflow.routing.unicast import session_bound_mbps
from stemflow.scenario import ScenarioError, load_scenario

BOUND = "bound_mbps"
SCENARIO_KEYS = ("scenario_source", "source")
"""Manifest keys that may name the scenario file a run used."""


def _measured_sessions(run: pd.DataFrame) -> set[str]:
    thr = run[run["metric"] == "throughput_mbps"]
    return set(session_ids(thr))


def recompute_bounds(results_dir: str, run: pd.DataFrame) -> tuple[list[dict], str | None]:
    """Bound rows for the sessions with throughput rows of one results dir, or why it cannot.

    Only sessions without a recorded bound are recomputed; a one-subscriber session's bound is
    its max-flow, the point where the multicast curve starts.
    """
    want = _measured_sessions(run) - set(session_ids(run[run["metric"] == BOUND]))
    if not want:
        return [], None
    manifest = read_manifest(Path(results_dir))
    source = next((manifest[k] for k in SCENARIO_KEYS if isinstance(manifest.get(k), str)), None)
    if source is None or not Path(source).exists():
        return [], f"{results_dir}: its manifest names no readable scenario file"
    try:
        scenario = load_scenario(source)
        overrides = manifest.get("set") or {}
        if overrides:
            scenario = scenario.with_updates(overrides)
    except (ScenarioError, KeyError, IndexError, TypeError) as e:
        return [], f"{results_dir}: cannot rebuild its scenario ({e})"
    net = NetworkState.from_scenario(scenario)
    index = path_index(net)
    first = run.iloc[0]
    rows = []
    for d in demands_from_scenario(scenario, net):
        if d.session in want:
            rows.append({**{c: first[c] for c in run.columns if c not in ("session", "strategy", "metric",
                                                                        "value", "unit", "workload")},
                         "session": d.session, "strategy": "", "workload": "", "metric": BOUND,
                         "value": session_bound_mbps(index, d), "unit": "Mbit/s",
                         "bound_source": "recomputed"})
    return rows, None


def add_missing_bounds(df: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """`df` with recomputed bound rows added where a session has none; notes on failures.

    Only scenarios with a multicast session (more than one subscriber in some run) are looked at:
    the bound is drawn only on multicast figures.
    """
    notes: list[str] = []
    extra: list[dict] = []
    thr = df[df["metric"] == "throughput_mbps"]
    per = thr.assign(sid=session_ids(thr)).groupby(["results_dir", "strategy", "sid"]).size()
    multi = set(df.loc[df["results_dir"].isin({d for (d, _, _), n in per.items() if n > 1}), "scenario"])
    for results_dir, run in df[df["scenario"].isin(multi)].groupby("results_dir", sort=False):
        rows, why = recompute_bounds(str(results_dir), run)
        extra += rows
        if why:
            notes.append(why)
    out = df.assign(bound_source=(df["metric"] == BOUND).map({True: "recorded", False: ""}))
    if extra:
        out = pd.concat([out, pd.DataFrame(extra)], ignore_index=True)
    return out, notes
