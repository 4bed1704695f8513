"""Chat text delivery beside path propagation, simulator and emulator side by side.

Reads the results of `stemflow sim` and `stemflow emu` on a chat scenario (scenarios/
fig1-chat-5dc.yaml, or a subset of it) and prints, per (member, member) pair, the p50 of
`text_latency_ms` in each mode beside the one-way propagation of the pair's min-RTT overlay path
(half its RTTs, access hops included) and the target `propagation + 20 ms`; then p50/p95/p99 per
size class and mode. The path is the `shortest` strategy's; compare runs of that strategy.

    python benchmarks/chat_latency.py SCENARIO SIM_DIR EMU_DIR [--strategy shortest]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import networkx as nx

from stemflow.network import NetworkState
from stemflow.results import read_results
from stemflow.scenario import ScenarioError, load_scenario

TARGET_MARGIN_MS = 20.0
"""The issue's target: text delivery p50 within the path's propagation plus 20 ms."""


def propagation_ms(net: NetworkState, publisher: str, subscriber: str) -> float:
    """One-way propagation of the min-RTT overlay path between two clients' datacenters."""
    a, b = net.clients[publisher], net.clients[subscriber]
    core = nx.shortest_path_length(net.graph, a.datacenter, b.datacenter, weight="rtt_ms")
    return (core + a.access.rtt_ms + b.access.rtt_ms) / 2


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenario")
    ap.add_argument("sim_dir", type=Path)
    ap.add_argument("emu_dir", type=Path)
    ap.add_argument("--strategy", default="shortest")
    args = ap.parse_args(argv)
    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as e:
        print(f"chat_latency: {e}", file=sys.stderr)
        return 2
    net = NetworkState.from_scenario(scenario)
    publisher = {s.id: s.publisher for s in scenario.sessions}
    frames = []
    for mode, d in (("sim", args.sim_dir), ("emu", args.emu_dir)):
        path = d / "results.csv"
        if not path.exists():
            print(f"chat_latency: {path}: no results; run stemflow {mode} first", file=sys.stderr)
            return 2
        df = read_results(path)
        frames.append(df[(df.strategy == args.strategy) & df.metric.str.endswith("_latency_ms")])
    import pandas as pd

    df = pd.concat(frames)
    df = df[df.session.str.partition("/")[0].isin(publisher.keys())]
    text = df[df.metric == "text_latency_ms"]
    p50 = text.groupby(["session", "mode"])["value"].median().unstack("mode")
    print(f"text delivery p50 (ms), strategy {args.strategy}, beside path propagation + "
          f"{TARGET_MARGIN_MS:g} ms")
    print(f"{'pair':34} {'prop':>6} {'sim':>7} {'emu':>7} {'emu-prop':>9} {'within':>6}")
    within = 0
    for label, row in p50.iterrows():
        session, _, sub = str(label).partition("/")
        prop = propagation_ms(net, publisher[session], sub)
        emu = row.get("emu", float("nan"))
        ok = bool(emu <= prop + TARGET_MARGIN_MS)  # False when emu delivered none (NaN)
        within += ok
        print(f"{label:34} {prop:6.1f} {row.get('sim', float('nan')):7.1f} {emu:7.1f} "
              f"{emu - prop:9.1f} {'yes' if ok else 'NO':>6}")
    print(f"{within}/{len(p50)} pairs within propagation + {TARGET_MARGIN_MS:g} ms (emu)")
    q = df.groupby(["metric", "mode"])["value"].quantile([0.5, 0.95, 0.99]).unstack().round(1)
    q["n"] = df.groupby(["metric", "mode"])["value"].count()
    print(q.to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
