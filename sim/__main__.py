"""`python -m stemflow.sim SCENARIO` (and `stemflow sim`): simulate a scenario under each strategy.

Owns the command line: reading the scenario and `--set` overrides, running each strategy
(`sim.runner`), and writing what a run leaves behind — `results.csv` (simulated quantities only:
byte-identical for a scenario and a seed), `timings.csv` (the controller's wall-clock solve
times, same schema), `manifest.json`, plots — and the summary on stdout. A user mistake is one
line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from stemflow.sim.params import ModelParameters
from stemflow.sim.report import against_reference, reference_table, summarize, summary_table, write_plots
from stemflow.sim.runner import check_simulable, run_id, run_strategy

from stemflow.cli_args import ArgumentParser, add_version
from stemflow.faults import summary_lines
from stemflow.results import versions, write_manifest, write_results
from stemflow.routing.plan import PlanError
from stemflow.routing.registry import UnknownStrategy, get_strategy
from stemflow.scenario import Scenario, ScenarioError, load_scenario, parse_override
from stemflow.units import UnitError

PROGRESS_DELAY_S = 2.0
"""Show a progress bar only for runs that last longer than this (short runs stay quiet)."""
USAGE_ERROR = 2


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = ArgumentParser(prog="stemflow sim", description="Simulate a scenario under each strategy "
                                "(SimPy fluid model driving the real controller).")
    add_version(p)
    p.add_argument("scenario", help="scenario YAML file, or the name of a shipped one")
    p.add_argument("--out", type=Path, help="output directory (default: results/<scenario>/sim)")
    p.add_argument("--strategy", action="extend", nargs="+", metavar="NAME",
                   help="strategies to run (default: the scenario's list); 'module:function' works")
    p.add_argument("--seed", type=int, help="random seed (default: the scenario's)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="sets",
                   help="override a scenario field, e.g. relay.parallel=8, tcp.rwnd='8 MB', "
                        "controller.datacenter=us-west1, 'links.*.loss=0.001' ('*': every element "
                        "of a list); repeatable")
    p.add_argument("--no-plots", action="store_true", help="skip the figures (PNG and PDF)")
    p.add_argument("--quiet", action="store_true", help="no summary, no progress bar")
    return p.parse_args(argv)


def apply_sets(scenario: Scenario, sets: list[str]) -> tuple[Scenario, dict[str, Any]]:
    """Apply `KEY=VALUE` overrides in order (the grammar is `Scenario.with_updates`'s)."""
    applied: dict[str, Any] = {}
    for item in sets:
        key, value = parse_override(item)
        scenario = scenario.with_updates({key: value})
        applied[key] = value
    return scenario, applied


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        scenario = load_scenario(args.scenario)
        scenario, applied = apply_sets(scenario, args.sets)
        check_simulable(scenario)
        params = ModelParameters.from_scenario(scenario)
        return _run(args, scenario, applied, params)
    except (ScenarioError, UnitError, UnknownStrategy) as e:
        print(f"stemflow sim: error: {e}", file=sys.stderr)
        return USAGE_ERROR
    except PlanError as e:
        print(f"stemflow sim: a strategy produced an invalid plan: {e}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, scenario: Scenario, applied: dict[str, Any],
         params: ModelParameters) -> int:
    from tqdm import tqdm

    strategies = list(dict.fromkeys(args.strategy or scenario.strategies))
    for name in strategies:
        get_strategy(name)  # an unknown name fails here, before anything runs
    seed = scenario.seed if args.seed is None else args.seed
    out = args.out or Path("results") / scenario.name / "sim"
    rid = run_id(scenario, seed, strategies)
    rows, timings, stats = [], [], {}
    with tqdm(total=len(strategies) * len(scenario.sessions), desc=f"sim {scenario.name}", unit="session",
              delay=PROGRESS_DELAY_S, disable=args.quiet, file=sys.stderr, leave=False) as bar:
        for st in strategies:
            bar.set_postfix_str(st, refresh=False)
            r = run_strategy(scenario, st, seed, rid, on_session_done=lambda: bar.update(1))
            rows += r.rows
            timings += r.timings
            stats[st] = {"sim_end_s": r.sim_end_s, "fluid_events": r.fluid_events, "wall_s": r.wall_s,
                         "unfinished": r.unfinished, "plans_by_config": r.configs}
            if r.unfinished:
                print(f"stemflow sim: warning: under {st}, sessions never completed (no route in the "
                      f"plan): {', '.join(r.unfinished)}", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    write_results(out / "results.csv", rows)
    write_results(out / "timings.csv", timings)
    tcp, relay = scenario.tcp, scenario.relay
    write_manifest(out / "manifest.json", {
        "run_id": rid, "mode": "sim", "scenario": scenario.name, "scenario_source": scenario.source,
        "scenario_hash": scenario.digest(), "seed": seed, "strategies": strategies,
        "versions": versions(), "link_backend": "fluid model (sim)", "rate_scale": 1.0,
        "congestion_control": str(tcp.congestion_control), "rwnd_bytes": tcp.rwnd_bytes,
        "mss_bytes": tcp.mss_bytes, "parallel": relay.parallel,
        "relay_processing_delay_ms": relay.processing_delay_ms,
        "routing_fairness": scenario.routing.fairness,
        "model_parameters": params.as_dict(), "set": applied, "runs": stats,
        "reference": scenario.reference.model_dump() if scenario.reference else None,
        "files": {"results": "results.csv", "timings": "timings.csv (wall-clock solve_s)"},
    })
    model = (f"model: {tcp.congestion_control} rwnd {tcp.rwnd_bytes / 1e6:.3f} MB  P {relay.parallel}  "
             f"relay delay {relay.processing_delay_ms} ms  "
             + "  ".join(f"{k} {v:g}" for k, v in params.as_dict().items()))
    if not args.no_plots:
        write_plots(rows, strategies, out, scenario.name, caption=f"seed {seed}; {model}",
                    reference=scenario.reference)
    if not args.quiet:
        print(f"{scenario.name}  seed {seed}  run {rid}  ->  {out}")
        print(model)
        print(summary_table(summarize(rows, strategies)))
        if scenario.faults:
            print()
            print("\n".join(summary_lines(rows)))
        if scenario.reference:
            print()
            print(reference_table(against_reference(rows, scenario.reference), scenario.reference.source))
    return 0


if __name__ == "__main__":
    sys.exit(main())
